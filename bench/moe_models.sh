#!/bin/sh
# moe_models.sh - the random-weight MoE models of the side-by-side benchmark, in real per-layer shapes, Q4_K_M, into
# models/bench/ (git-ignored; about 1.6 + 1.4 GB, plus F16 intermediates of 5.4 + 4.6 GB that are deleted after).
#   qwen3moe: Qwen3-30B-A3B's layer (2048 wide, 128 experts, 8 used, expert FF 768, 32 query / 4 KV heads of 128),
#             4 of its 48 layers
#   qwen2moe: Qwen1.5-MoE-A2.7B's layer (2048 wide, 60 experts, 4 used, expert FF 1408, shared expert FF 5632,
#             16 heads of 128), 4 of its 24 layers
#   deepseek2: DeepSeek-V2-Lite's layers (2048 wide, 64 routed + 2 shared experts, 6 used, expert FF 1408, dense FF
#             10944 in the leading layer, 16 heads, MLA with kv_lora_rank 512, no q_lora, nope 128 + rope 64, value
#             128; softmax gating without groups, no score bias, scaling 1), 4 of its 27 layers (1 dense + 3 MoE)
# ONLY=deepseek2 (or qwen3moe, qwen2moe) makes just that one.
# All with SmolLM2's 49152-token vocabulary (the real ones have 151936 / 151646 tokens: their output heads are
# about 3x larger). Then: python3 bench/side_by_side.py -m models/bench/qwen3moe-30b-a3b-4l-q4_k_m.gguf ...
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
V=models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p models/bench
make_model() { # name, gen_gguf.py arguments...
    name=$1; shift
    out=models/bench/$name-q4_k_m.gguf
    [ -f "$out" ] && return 0
    "$PY" tools/gen_gguf.py "$@" --n-embd 2048 --n-layer 4 --head-dim 128 --ctx 4096 --rope-base 1000000 --no-tied \
        --type f16 --vocab-from $V -o models/bench/$name-f16.gguf
    "$PY" tools/quantize_gguf.py models/bench/$name-f16.gguf "$out" q4_k_m
    rm -f models/bench/$name-f16.gguf
}
[ -n "$ONLY" ] && [ "$ONLY" != qwen3moe ] || make_model qwen3moe-30b-a3b-4l --arch qwen3moe --n-head 32 --n-head-kv 4 --n-ff 6144 --n-expert 128 \
    --n-expert-used 8 --n-ff-exp 768
[ -n "$ONLY" ] && [ "$ONLY" != qwen2moe ] || make_model qwen2moe-a2.7b-4l --arch qwen2moe --n-head 16 --n-head-kv 16 --n-ff 5632 --n-expert 60 \
    --n-expert-used 4 --n-ff-exp 1408 --n-ff-shexp 5632
[ -n "$ONLY" ] && [ "$ONLY" != deepseek2 ] || make_model deepseek2-v2-lite-4l --arch deepseek2 --n-head 16 --n-head-kv 16 --n-ff 10944 --n-expert 64 \
    --n-expert-used 6 --n-ff-exp 1408 --n-expert-shared 2 --n-dense-lead 1 --q-lora-rank 0 --kv-lora-rank 512 \
    --qk-nope 128 --qk-rope 64 --v-head 128 --gating softmax --n-group 0 --no-probs-bias --w-scale 1 --no-w-norm
