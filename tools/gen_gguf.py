#!/usr/bin/env python3
"""gen_gguf.py - writes random-weight GGUF models of a given architecture, shape and tensor type.

zili's tests and benchmarks need models of many shapes and types (every supported tensor type, vocabularies of
both tokenizer kinds, sizes that cannot be downloaded here). This tool makes them: the architecture's metadata and
tensor list, weights drawn from a seeded RNG, the tokenizer copied from an existing GGUF file. gguf-py (the `gguf`
package) does the byte-level writing and the block quantization; the shapes, metadata and weight statistics are
decided here.

Weight statistics (why the models are well-conditioned for greedy comparisons):
  * Every matrix W of shape (n_out, n_in) is N(0, 1/n_in): with RMS-normalised inputs of RMS 1, each projection
    output has RMS about 1 (attention scores q.k/sqrt(head_dim) have unit variance, so softmax is neither uniform
    nor one-hot). Attention and FFN outputs add O(1) to the residual stream per block, so after L blocks the
    residual RMS is about sqrt(L); nothing overflows F16 and no norm sees a near-zero input.
  * Token embeddings are N(0, 1/n_embd) (row norm about 1), small next to the O(1) block outputs: with tied
    embeddings the current token's own row would otherwise dominate its logits and the model would only repeat.
  * Output rows (token_embd when tied, output.weight otherwise) get a per-row log-normal scale exp(0.5 z):
    logits are then a scale mixture with a heavier tail than a Gaussian, so the top logit stands clear of the
    second more often. The output norm's gain is about LOGIT_SCALE (8), so logits have a standard deviation of
    about 8 and greedy choices rarely hinge on the last bits of a sum. Rows of control tokens (BOS/EOS/EOT...)
    are scaled by 0.25 so that random models rarely stop early.
  * Norm gains are uniform in [0.8, 1.2] (times LOGIT_SCALE for the output norm): not 1, so a kernel that forgets
    the gain is caught. That includes qwen3's per-head Q/K norms, which keep each head of q and k at RMS about 1.
  * Biases (qwen2's Q/K/V) are N(0, BIAS_SIGMA^2), BIAS_SIGMA = 0.5: large enough that a dropped or misplaced bias
    changes the greedy text, small next to the unit-RMS projection outputs they are added to.
Each tensor has its own RNG stream, seeded from (--seed, tensor name): the same seed gives the same underlying
weights whatever the --type, so models of different types differ only by their quantization.

Architectures live in ARCHS: each is a function returning the metadata and the tensor list for a config:
`llama`, `qwen2` (Q/K/V biases; llama.cpp runs it with NEOX rope) and `qwen3` (per-head Q/K RMSNorm, NEOX rope,
head_dim may differ from n_embd / n_head: --head-dim) and `gemma3` (per-head Q/K RMSNorm, norms after the attention
and FFN outputs, GeGLU, tied embeddings, sliding-window layers: --swa WINDOW, --swa-pattern N; llama.cpp scales its
embeddings by sqrt(n_embd), so the model draws them N(0, 1/n_embd^2) to keep the scaled rows at norm about 1), and
the mixtures of experts `qwen3moe` and `qwen2moe` (--n-expert, --n-expert-used, --n-ff-exp, --n-ff-shexp; see
moe_arch).
RoPE scaling as real files carry it: --rope-scaling linear|yarn with --rope-factor and --rope-orig-ctx writes the
rope.scaling.* keys (gemma3 applies them to its global layers only); --rope-freqs FACTOR writes Llama 3.1's
rope_freqs.weight (per-pair divisors of the angle, from Meta's published formula with low/high frequency factors 1
and 4 over --rope-orig-ctx, default 8192), which llama.cpp and zili apply with no scaling key.
gguf-py cannot write K-quants; tools/quantize_gguf.py makes them from an F32 model with llama.cpp's quantizer.

Usage: gen_gguf.py --preset tiny --type q4_0 --vocab-from models/SmolLM2-135M-Instruct.Q4_1.gguf -o out.gguf
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import zlib
from typing import Callable

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover - reported to the user, not a test
    sys.exit("gen_gguf.py: the 'gguf' Python package is missing (pip install gguf)")

GT = gguf.GGMLQuantizationType
TYPES = {
    "f32": (GT.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (GT.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (GT.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q4_0": (GT.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (GT.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
    "q8_0": (GT.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}

LOGIT_SCALE = 8.0        # target standard deviation of the logits
OUT_ROW_LOG_SIGMA = 0.5  # per-row log-normal scale of the output projection
CONTROL_ROW_SCALE = 0.25 # output rows of control tokens
BIAS_SIGMA = 0.5         # standard deviation of bias entries (qwen2's Q/K/V biases)
ROUTER_SCALE = 2.0       # MoE router rows (router logits of standard deviation about 2)

PRESETS = {
    # The test model: small enough that a numpy float64 reference runs in seconds.
    "tiny": dict(n_embd=256, n_layer=4, n_head=8, n_head_kv=4, n_ff=640, ctx=2048),
    # A bit larger, for kernel paths that only kick in past a size (tiling, threading).
    "small": dict(n_embd=512, n_layer=8, n_head=8, n_head_kv=2, n_ff=1408, ctx=4096),
    # SmolLM2-135M's shape.
    "smollm2-135m": dict(n_embd=576, n_layer=30, n_head=9, n_head_kv=3, n_ff=1536, ctx=8192, rope_base=100000.0),
    # Llama-3.2-1B's shape (for benchmarks; with --n-vocab 128256 about 2.5 GB in f16). Tied embeddings, as the
    # real model.
    "llama3.2-1b": dict(n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192, ctx=8192, rope_base=500000.0),
    # BGE-small-en-v1.5's shape (bert; --vocab-from ggml-vocab-bert-bge.gguf).
    "bge-small": dict(n_embd=384, n_layer=12, n_head=12, n_head_kv=12, n_ff=1536, ctx=512),
    # Llama-2-7B's shape (for benchmarks; about 13 GB in f16).
    "llama2-7b": dict(n_embd=4096, n_layer=32, n_head=32, n_head_kv=32, n_ff=11008, ctx=4096, tied=False),
}


@dataclasses.dataclass
class Config:
    arch: str = "llama"
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 8
    n_head_kv: int = 4
    n_ff: int = 640
    head_dim: int = 0          # 0: n_embd / n_head
    ctx: int = 2048
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tied: bool = True
    n_vocab: int = 0           # from the vocabulary file
    wtype: str = "q8_0"        # 2-D weights
    embd_type: str = ""        # token_embd ("" = same as wtype)
    seed: int = 1
    swa: int = 0               # gemma3: sliding window (0: none)
    swa_pattern: int = 0       # gemma3: every swa_pattern-th layer is global (0: llama.cpp's default, 6)
    rope_scaling: str = ""     # "linear" / "yarn": write rope.scaling.type and .factor
    rope_factor: float = 0.0
    rope_orig_ctx: int = 0     # rope.scaling.original_context_length (0: not written)
    rope_freqs: float = 0.0    # > 0: write rope_freqs.weight, Llama 3.1's scheme with this factor
    n_expert: int = 16         # qwen3moe / qwen2moe: experts per layer
    n_expert_used: int = 4     # experts each token is routed to
    n_ff_exp: int = 256        # expert feed-forward width (expert_feed_forward_length)
    n_ff_shexp: int = 512      # qwen2moe: the shared expert's width
    pooling: int = 0           # <arch>.pooling_type (1 mean, 2 cls, 3 last); 0: not written (bert: mean)
    # deepseek2 (multi-head latent attention; see deepseek2_arch)
    q_lora_rank: int = 128     # 0: no query compression (DeepSeek-V2-Lite: attn_q)
    kv_lora_rank: int = 128    # the latent each token's K and V come from
    qk_rope: int = 32          # rotated dims per head (shared by every head's key)
    qk_nope: int = 64          # unrotated dims per head
    v_head: int = 64           # value dims per head
    n_dense_lead: int = 1      # leading layers with a dense FFN (n_ff)
    n_expert_shared: int = 1   # shared experts (one SwiGLU of n_ff_exp * count)
    gating: str = "sigmoid"    # expert gating: sigmoid (V3) or softmax (V2)
    n_group: int = 4           # expert groups (0: none)
    n_group_used: int = 2      # groups each token's experts come from
    w_scale: float = 2.5       # routed scaling factor (expert_weights_scale)
    w_norm: bool = True        # expert_weights_norm
    probs_bias: bool = True    # exp_probs_b (score correction bias, V3)
    yarn_log_mul: float = 0.0  # rope.scaling.yarn_log_multiplier (0.1 * mscale_all_dim; 0: not written)

    @property
    def hd(self) -> int:
        return self.head_dim or self.n_embd // self.n_head


@dataclasses.dataclass
class TensorSpec:
    """One tensor to write. shape is numpy order (rows, cols) = (n_out, n_in); GGUF stores it reversed."""
    name: str
    shape: tuple[int, ...]
    kind: str                  # "norm", "bias", "matrix", "embd" (token_embd), "output", "router" (kept F32)
    gain: float = 1.0          # norms: centre of the gain


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary


@dataclasses.dataclass
class Vocab:
    """The tokenizer.* key-values of a GGUF file, kept as (value, type, sub_type) to be written back unchanged."""
    kvs: dict[str, tuple[object, gguf.GGUFValueType, gguf.GGUFValueType | None]]
    n_tokens: int
    control: np.ndarray        # bool per token: token_type == CONTROL


def pad_vocab(v: Vocab, n: int) -> Vocab:
    """The vocabulary grown to n tokens with control tokens "<|reserved_special_token_K|>" (as Llama 3 reserves
    hundreds), so that a benchmark model gets the embedding and output sizes of the model it imitates (Llama 3's
    128256) from any vocabulary file. The added tokens are never produced by the tokenizer's merges."""
    if n <= v.n_tokens:
        return v
    kvs = dict(v.kvs)
    extra = n - v.n_tokens
    toks, vt, sub = kvs["tokenizer.ggml.tokens"]
    kvs["tokenizer.ggml.tokens"] = (list(toks) + [f"<|reserved_special_token_{k}|>".encode() for k in range(extra)],
                                    vt, sub)
    if "tokenizer.ggml.token_type" in kvs:
        types, vt, sub = kvs["tokenizer.ggml.token_type"]
        kvs["tokenizer.ggml.token_type"] = (list(types) + [int(gguf.TokenType.CONTROL)] * extra, vt, sub)
    if "tokenizer.ggml.scores" in kvs:
        scores, vt, sub = kvs["tokenizer.ggml.scores"]
        kvs["tokenizer.ggml.scores"] = (list(scores) + [0.0] * extra, vt, sub)
    return Vocab(kvs, n, np.concatenate([v.control, np.ones(extra, dtype=bool)]))


def read_vocab(path: str) -> Vocab:
    r = gguf.GGUFReader(path)
    kvs = {}
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = f.types[1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = np.concatenate([f.parts[i] for i in f.data]).tolist() if f.data else []
            kvs[key] = (val, vt, sub)
        elif vt == gguf.GGUFValueType.STRING:
            kvs[key] = (bytes(f.parts[f.data[0]]), vt, None)
        else:
            kvs[key] = (f.parts[f.data[0]][0].item(), vt, None)
    if "tokenizer.ggml.tokens" not in kvs:
        raise SystemExit(f"gen_gguf.py: {path} has no tokenizer.ggml.tokens")
    n = len(kvs["tokenizer.ggml.tokens"][0])
    control = np.zeros(n, dtype=bool)
    if "tokenizer.ggml.token_type" in kvs:
        control = np.asarray(kvs["tokenizer.ggml.token_type"][0]) == int(gguf.TokenType.CONTROL)
    return Vocab(kvs, n, control)


# ---------------------------------------------------------------------------------------------------------------
# Architectures: metadata and tensor list


def dense_arch(cfg: Config, qkv_bias: bool = False, qk_norm: bool = False,
               always_head_dims: bool = False) -> tuple[dict[str, tuple[object, gguf.GGUFValueType]], list[TensorSpec]]:
    """The llama-style dense decoder under cfg.arch's key prefix, with the Qwen variations as options: Q/K/V biases
    (qwen2), per-head RMSNorm gains of Q and K (qwen3), key/value_length written even when they equal
    n_embd / n_head (qwen3's converter always writes them)."""
    a = cfg.arch
    u32, f32 = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32
    meta = {
        f"{a}.context_length": (cfg.ctx, u32),
        f"{a}.embedding_length": (cfg.n_embd, u32),
        f"{a}.block_count": (cfg.n_layer, u32),
        f"{a}.feed_forward_length": (cfg.n_ff, u32),
        f"{a}.attention.head_count": (cfg.n_head, u32),
        f"{a}.attention.head_count_kv": (cfg.n_head_kv, u32),
        f"{a}.rope.freq_base": (cfg.rope_base, f32),
        f"{a}.rope.dimension_count": (cfg.hd, u32),
        f"{a}.attention.layer_norm_rms_epsilon": (cfg.norm_eps, f32),
        f"{a}.vocab_size": (cfg.n_vocab, u32),
    }
    if cfg.rope_scaling:
        meta[f"{a}.rope.scaling.type"] = (cfg.rope_scaling, gguf.GGUFValueType.STRING)
        meta[f"{a}.rope.scaling.factor"] = (cfg.rope_factor, f32)
    if cfg.rope_orig_ctx and cfg.rope_scaling:
        meta[f"{a}.rope.scaling.original_context_length"] = (cfg.rope_orig_ctx, u32)
    if always_head_dims or (cfg.head_dim and cfg.head_dim != cfg.n_embd // cfg.n_head):
        meta[f"{a}.attention.key_length"] = (cfg.hd, u32)
        meta[f"{a}.attention.value_length"] = (cfg.hd, u32)
    E, F, V = cfg.n_embd, cfg.n_ff, cfg.n_vocab
    q, kv = cfg.n_head * cfg.hd, cfg.n_head_kv * cfg.hd
    ts = [TensorSpec("token_embd.weight", (V, E), "embd")]
    if cfg.rope_freqs:
        ts.append(TensorSpec("rope_freqs.weight", (cfg.hd // 2,), "rope_freqs"))
    for i in range(cfg.n_layer):
        b = f"blk.{i}."
        ts += [
            TensorSpec(b + "attn_norm.weight", (E,), "norm"),
            TensorSpec(b + "attn_q.weight", (q, E), "matrix"),
            TensorSpec(b + "attn_k.weight", (kv, E), "matrix"),
            TensorSpec(b + "attn_v.weight", (kv, E), "matrix"),
        ]
        if qkv_bias:
            ts += [
                TensorSpec(b + "attn_q.bias", (q,), "bias"),
                TensorSpec(b + "attn_k.bias", (kv,), "bias"),
                TensorSpec(b + "attn_v.bias", (kv,), "bias"),
            ]
        if qk_norm:
            ts += [
                TensorSpec(b + "attn_q_norm.weight", (cfg.hd,), "norm"),
                TensorSpec(b + "attn_k_norm.weight", (cfg.hd,), "norm"),
            ]
        ts += [
            TensorSpec(b + "attn_output.weight", (E, q), "matrix"),
            TensorSpec(b + "ffn_norm.weight", (E,), "norm"),
            TensorSpec(b + "ffn_gate.weight", (F, E), "matrix"),
            TensorSpec(b + "ffn_up.weight", (F, E), "matrix"),
            TensorSpec(b + "ffn_down.weight", (E, F), "matrix"),
        ]
    ts.append(TensorSpec("output_norm.weight", (E,), "norm", gain=LOGIT_SCALE))
    if not cfg.tied:
        ts.append(TensorSpec("output.weight", (V, E), "output"))
    return meta, ts


def llama_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """Llama (and Mistral: --swa WINDOW writes a sliding window that every layer uses, as Mistral 7B v0.1's)."""
    meta, ts = dense_arch(cfg)
    if cfg.swa:
        meta[f"{cfg.arch}.attention.sliding_window"] = (cfg.swa, gguf.GGUFValueType.UINT32)
    return meta, ts


def qwen2_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """Qwen2 / Qwen2.5 / DeepSeek-R1-Distill-Qwen: llama plus Q/K/V biases; llama.cpp applies NEOX RoPE to it."""
    if cfg.n_head * cfg.hd != cfg.n_embd:
        raise SystemExit(f"gen_gguf.py: qwen2 needs n_head * head_dim == n_embd (llama.cpp's attn_output shape), "
                         f"got {cfg.n_head} * {cfg.hd} != {cfg.n_embd}")
    return dense_arch(cfg, qkv_bias=True)


def qwen3_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """Qwen3 (dense): llama plus per-head RMSNorm of Q and K before RoPE (NEOX), no biases."""
    return dense_arch(cfg, qk_norm=True, always_head_dims=True)


def gemma3_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """Gemma 3 (text): qwen3's per-head Q/K norms, RMSNorms after attention and FFN outputs (post_attention_norm,
    post_ffw_norm), GeGLU, sliding-window layers. Always tied, as every published Gemma 3."""
    meta, ts = dense_arch(cfg, qk_norm=True, always_head_dims=True)
    u32 = gguf.GGUFValueType.UINT32
    if cfg.swa:
        meta[f"{cfg.arch}.attention.sliding_window"] = (cfg.swa, u32)
    if cfg.swa_pattern:
        meta[f"{cfg.arch}.attention.sliding_window_pattern"] = (cfg.swa_pattern, u32)
    out = []
    for t in ts:
        if t.kind == "embd":
            t = TensorSpec(t.name, t.shape, "embd_scaled")
        out.append(t)
        if t.name.endswith(".attn_output.weight"):
            out.append(TensorSpec(t.name.replace("attn_output", "post_attention_norm"), (cfg.n_embd,), "norm"))
        if t.name.endswith(".ffn_down.weight"):
            out.append(TensorSpec(t.name.replace("ffn_down", "post_ffw_norm"), (cfg.n_embd,), "norm"))
    return meta, out


def moe_arch(cfg: Config, shared: bool) -> tuple[dict, list[TensorSpec]]:
    """qwen3moe (qwen3's attention) and qwen2moe (qwen2's, with biases): every layer's dense FFN replaced by
    llama.cpp's routed one: the router ffn_gate_inp (n_expert rows; F32 whatever the type, as llama.cpp's quantizer
    leaves it), the experts as 3-D tensors ffn_{gate,up,down}_exps of (n_expert, n_ff_exp, n_embd) / (n_expert,
    n_embd, n_ff_exp), and for qwen2moe the shared expert ffn_{gate,up,down}_shexp of width n_ff_shexp with its
    gate vector ffn_gate_inp_shexp (1-D, so F32). Expert matrices have the statistics of the dense ones; the router
    rows are N(0, ROUTER_SCALE^2 / n_embd), so that a token's top experts stand apart from the rest."""
    a = cfg.arch
    u32 = gguf.GGUFValueType.UINT32
    meta, ts = dense_arch(cfg, qkv_bias=shared, qk_norm=not shared, always_head_dims=not shared)
    meta[f"{a}.expert_count"] = (cfg.n_expert, u32)
    meta[f"{a}.expert_used_count"] = (cfg.n_expert_used, u32)
    meta[f"{a}.expert_feed_forward_length"] = (cfg.n_ff_exp, u32)
    if shared:
        meta[f"{a}.expert_shared_feed_forward_length"] = (cfg.n_ff_shexp, u32)
    E, X, FE, FS = cfg.n_embd, cfg.n_expert, cfg.n_ff_exp, cfg.n_ff_shexp
    out = []
    for t in ts:
        if t.name.endswith((".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight")):
            continue
        out.append(t)
        if t.name.endswith(".ffn_norm.weight"):
            b = t.name[: -len("ffn_norm.weight")]
            out += [
                TensorSpec(b + "ffn_gate_inp.weight", (X, E), "router"),
                TensorSpec(b + "ffn_gate_exps.weight", (X, FE, E), "matrix"),
                TensorSpec(b + "ffn_up_exps.weight", (X, FE, E), "matrix"),
                TensorSpec(b + "ffn_down_exps.weight", (X, E, FE), "matrix"),
            ]
            if shared:
                out += [
                    TensorSpec(b + "ffn_gate_inp_shexp.weight", (E,), "router"),
                    TensorSpec(b + "ffn_gate_shexp.weight", (FS, E), "matrix"),
                    TensorSpec(b + "ffn_up_shexp.weight", (FS, E), "matrix"),
                    TensorSpec(b + "ffn_down_shexp.weight", (E, FS), "matrix"),
                ]
    return meta, out


def qwen3moe_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """Qwen3-MoE (Qwen3-30B-A3B's layout): qwen3's attention, routed experts with normalized weights."""
    return moe_arch(cfg, shared=False)


def qwen2moe_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """Qwen2-MoE / Qwen1.5-MoE: qwen2's attention (biases), routed experts plus a sigmoid-gated shared expert;
    llama.cpp requires a separate output.weight (--no-tied)."""
    if cfg.tied:
        raise SystemExit("gen_gguf.py: qwen2moe needs --no-tied (llama.cpp requires output.weight for it)")
    if cfg.n_head * cfg.hd != cfg.n_embd:
        raise SystemExit("gen_gguf.py: qwen2moe needs n_head * head_dim == n_embd")
    return moe_arch(cfg, shared=True)


def bert_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """BERT encoder (BGE, MiniLM): token + position + token-type embeddings with a LayerNorm, post-LayerNorm
    blocks with biases on every matrix, GELU FFN, bidirectional attention, no output head. Its embedding is pooled
    (--pooling; default mean)."""
    a = cfg.arch
    u32, f32 = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32
    if cfg.n_embd % cfg.n_head:
        raise SystemExit(f"gen_gguf.py: bert needs n_embd divisible by n_head")
    meta = {
        f"{a}.context_length": (cfg.ctx, u32),
        f"{a}.embedding_length": (cfg.n_embd, u32),
        f"{a}.block_count": (cfg.n_layer, u32),
        f"{a}.feed_forward_length": (cfg.n_ff, u32),
        f"{a}.attention.head_count": (cfg.n_head, u32),
        f"{a}.attention.layer_norm_epsilon": (1e-12, f32),
        f"{a}.attention.causal": (False, gguf.GGUFValueType.BOOL),
        f"{a}.pooling_type": (cfg.pooling or 1, u32),
        "tokenizer.ggml.token_type_count": (2, u32),
    }
    E, F, V = cfg.n_embd, cfg.n_ff, cfg.n_vocab
    ts = [TensorSpec("token_embd.weight", (V, E), "embd"),
          TensorSpec("token_types.weight", (2, E), "matrix"),
          TensorSpec("position_embd.weight", (cfg.ctx, E), "matrix"),
          TensorSpec("token_embd_norm.weight", (E,), "norm"),
          TensorSpec("token_embd_norm.bias", (E,), "bias")]
    for i in range(cfg.n_layer):
        b = f"blk.{i}."
        for m in ("attn_q", "attn_k", "attn_v", "attn_output"):
            ts += [TensorSpec(b + m + ".weight", (E, E), "matrix"), TensorSpec(b + m + ".bias", (E,), "bias")]
        ts += [
            TensorSpec(b + "attn_output_norm.weight", (E,), "norm"),
            TensorSpec(b + "attn_output_norm.bias", (E,), "bias"),
            TensorSpec(b + "ffn_up.weight", (F, E), "matrix"),
            TensorSpec(b + "ffn_up.bias", (F,), "bias"),
            TensorSpec(b + "ffn_down.weight", (E, F), "matrix"),
            TensorSpec(b + "ffn_down.bias", (E,), "bias"),
            TensorSpec(b + "layer_output_norm.weight", (E,), "norm"),
            TensorSpec(b + "layer_output_norm.bias", (E,), "bias"),
        ]
    return meta, ts


def deepseek2_arch(cfg: Config) -> tuple[dict, list[TensorSpec]]:
    """DeepSeek V2 / V3 (`deepseek2`) with multi-head latent attention, in the layout of llama.cpp's current
    converter: the query through a low-rank pair attn_q_a / attn_q_a_norm / attn_q_b (q_lora_rank; 0 writes attn_q,
    DeepSeek-V2-Lite), the shared latent and rope key through attn_kv_a_mqa (kv_lora_rank + qk_rope rows) and
    attn_kv_a_norm, and the key/value up-projections split per head into attn_k_b (n_head, kv_lora_rank, qk_nope)
    and attn_v_b (n_head, v_head, kv_lora_rank), 3-D, so that llama.cpp runs the absorbed (MLA) form with a cache of
    kv_lora_rank + qk_rope values per token. head_count_kv 1, key_length kv_lora_rank + qk_rope, value_length
    kv_lora_rank; key_length_mla / value_length_mla the decompressed head sizes. The first n_dense_lead layers have a
    dense FFN of n_ff; the others a router (ffn_gate_inp, F32), optionally exp_probs_b (F32), routed experts of
    n_ff_exp and n_expert_shared shared experts as one SwiGLU of n_ff_exp * n_expert_shared. attn_k_b / attn_v_b
    are written F16 for a quantized --type (F32 for --type f32; tools/quantize_gguf.py then quantizes them with the
    rest, as llama-quantize does); their entries are N(0, 1 / kv_lora_rank)."""
    a = cfg.arch
    u32, f32, b_ = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.BOOL
    H, E, V, F = cfg.n_head, cfg.n_embd, cfg.n_vocab, cfg.n_ff
    QL, KL, R, NP, VH = cfg.q_lora_rank, cfg.kv_lora_rank, cfg.qk_rope, cfg.qk_nope, cfg.v_head
    X, FE = cfg.n_expert, cfg.n_ff_exp
    FS = FE * cfg.n_expert_shared
    meta = {
        f"{a}.context_length": (cfg.ctx, u32),
        f"{a}.embedding_length": (E, u32),
        f"{a}.block_count": (cfg.n_layer, u32),
        f"{a}.feed_forward_length": (F, u32),
        f"{a}.leading_dense_block_count": (cfg.n_dense_lead, u32),
        f"{a}.attention.head_count": (H, u32),
        f"{a}.attention.head_count_kv": (1, u32),
        f"{a}.attention.q_lora_rank": (QL, u32),
        f"{a}.attention.kv_lora_rank": (KL, u32),
        f"{a}.attention.key_length": (KL + R, u32),
        f"{a}.attention.value_length": (KL, u32),
        f"{a}.attention.key_length_mla": (NP + R, u32),
        f"{a}.attention.value_length_mla": (VH, u32),
        f"{a}.attention.layer_norm_rms_epsilon": (cfg.norm_eps, f32),
        f"{a}.rope.dimension_count": (R, u32),
        f"{a}.rope.freq_base": (cfg.rope_base, f32),
        f"{a}.expert_count": (X, u32),
        f"{a}.expert_used_count": (cfg.n_expert_used, u32),
        f"{a}.expert_feed_forward_length": (FE, u32),
        f"{a}.expert_shared_count": (cfg.n_expert_shared, u32),
        f"{a}.expert_weights_scale": (cfg.w_scale, f32),
        f"{a}.expert_weights_norm": (cfg.w_norm, b_),
        f"{a}.expert_gating_func": (2 if cfg.gating == "sigmoid" else 1, u32),
        f"{a}.vocab_size": (V, u32),
    }
    if cfg.n_group > 1:
        meta[f"{a}.expert_group_count"] = (cfg.n_group, u32)
        meta[f"{a}.expert_group_used_count"] = (cfg.n_group_used, u32)
    if cfg.rope_scaling:
        meta[f"{a}.rope.scaling.type"] = (cfg.rope_scaling, gguf.GGUFValueType.STRING)
        meta[f"{a}.rope.scaling.factor"] = (cfg.rope_factor, f32)
        if cfg.rope_orig_ctx:
            meta[f"{a}.rope.scaling.original_context_length"] = (cfg.rope_orig_ctx, u32)
        if cfg.yarn_log_mul:
            meta[f"{a}.rope.scaling.yarn_log_multiplier"] = (cfg.yarn_log_mul, f32)
    ts = [TensorSpec("token_embd.weight", (V, E), "embd")]
    for i in range(cfg.n_layer):
        b = f"blk.{i}."
        ts.append(TensorSpec(b + "attn_norm.weight", (E,), "norm"))
        if QL > 0:
            ts += [TensorSpec(b + "attn_q_a.weight", (QL, E), "matrix"),
                   TensorSpec(b + "attn_q_a_norm.weight", (QL,), "norm"),
                   TensorSpec(b + "attn_q_b.weight", (H * (NP + R), QL), "matrix")]
        else:
            ts.append(TensorSpec(b + "attn_q.weight", (H * (NP + R), E), "matrix"))
        ts += [
            TensorSpec(b + "attn_kv_a_mqa.weight", (KL + R, E), "matrix"),
            TensorSpec(b + "attn_kv_a_norm.weight", (KL,), "norm"),
            TensorSpec(b + "attn_k_b.weight", (H, KL, NP), "mla_b"),
            TensorSpec(b + "attn_v_b.weight", (H, VH, KL), "mla_b"),
            TensorSpec(b + "attn_output.weight", (E, H * VH), "matrix"),
            TensorSpec(b + "ffn_norm.weight", (E,), "norm"),
        ]
        if i < cfg.n_dense_lead:
            ts += [TensorSpec(b + "ffn_gate.weight", (F, E), "matrix"),
                   TensorSpec(b + "ffn_up.weight", (F, E), "matrix"),
                   TensorSpec(b + "ffn_down.weight", (E, F), "matrix")]
            continue
        ts.append(TensorSpec(b + "ffn_gate_inp.weight", (X, E), "router"))
        if cfg.probs_bias:
            ts.append(TensorSpec(b + "exp_probs_b.bias", (X,), "probs_bias"))
        ts += [
            TensorSpec(b + "ffn_gate_exps.weight", (X, FE, E), "matrix"),
            TensorSpec(b + "ffn_up_exps.weight", (X, FE, E), "matrix"),
            TensorSpec(b + "ffn_down_exps.weight", (X, E, FE), "matrix"),
        ]
        if cfg.n_expert_shared > 0:
            ts += [TensorSpec(b + "ffn_gate_shexp.weight", (FS, E), "matrix"),
                   TensorSpec(b + "ffn_up_shexp.weight", (FS, E), "matrix"),
                   TensorSpec(b + "ffn_down_shexp.weight", (E, FS), "matrix")]
    ts.append(TensorSpec("output_norm.weight", (E,), "norm", gain=LOGIT_SCALE))
    if not cfg.tied:
        ts.append(TensorSpec("output.weight", (V, E), "output"))
    return meta, ts


ARCHS: dict[str, Callable[[Config], tuple[dict, list[TensorSpec]]]] = {
    "bert": bert_arch, "llama": llama_arch, "qwen2": qwen2_arch, "qwen3": qwen3_arch, "gemma3": gemma3_arch,
    "qwen3moe": qwen3moe_arch, "qwen2moe": qwen2moe_arch, "deepseek2": deepseek2_arch}


# ---------------------------------------------------------------------------------------------------------------
# Weights


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def llama3_rope_freqs(cfg: Config) -> np.ndarray:
    """Llama 3.1's per-pair divisors: 1 for wavelengths under orig_ctx / 4, the factor above orig_ctx, and a smooth
    blend between (low / high frequency factors 1 and 4)."""
    orig = cfg.rope_orig_ctx or 8192
    low_wavelen, high_wavelen = orig / 1.0, orig / 4.0
    out = []
    for i in range(cfg.hd // 2):
        wavelen = 2 * np.pi * cfg.rope_base ** (2 * i / cfg.hd)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(cfg.rope_freqs)
        else:
            smooth = (orig / wavelen - 1.0) / (4.0 - 1.0)
            out.append(1.0 / ((1 - smooth) / cfg.rope_freqs + smooth))
    return np.array(out, dtype=np.float32)


def make_weights(cfg: Config, spec: TensorSpec, control: np.ndarray) -> np.ndarray:
    """float32 values of one tensor, following the statistics in the file comment."""
    if spec.kind == "rope_freqs":
        return llama3_rope_freqs(cfg)
    rng = tensor_rng(cfg.seed, spec.name)
    if spec.kind == "norm":
        return (spec.gain * rng.uniform(0.8, 1.2, spec.shape)).astype(np.float32)
    if spec.kind == "probs_bias":  # deepseek2's score correction: small next to the sigmoid scores' spread
        return (0.05 * rng.standard_normal(spec.shape)).astype(np.float32)
    if spec.kind == "bias":
        return (BIAS_SIGMA * rng.standard_normal(spec.shape)).astype(np.float32)
    n_in = spec.shape[-1] if spec.kind != "mla_b" else cfg.kv_lora_rank
    w = rng.standard_normal(spec.shape, dtype=np.float32) / np.float32(np.sqrt(n_in))
    if spec.kind == "router":
        w *= np.float32(ROUTER_SCALE)
    if spec.kind == "embd_scaled":  # gemma3: the model multiplies the rows by sqrt(n_embd)
        w /= np.float32(np.sqrt(n_in))
    is_output = spec.kind == "output" or (spec.kind in ("embd", "embd_scaled") and cfg.tied)
    if is_output:
        row = np.exp(OUT_ROW_LOG_SIGMA * tensor_rng(cfg.seed, spec.name + "#rows").standard_normal(spec.shape[0]))
        row[control[: spec.shape[0]]] *= CONTROL_ROW_SCALE
        w *= row.astype(np.float32)[:, None]
    return w


def encode(w: np.ndarray, qt: GT) -> np.ndarray:
    """The bytes (or f32/f16 array) gguf-py writes for w in type qt."""
    if qt == GT.F32:
        return w.astype(np.float32)
    if qt == GT.F16:
        return w.astype(np.float16)
    return gguf.quants.quantize(w, qt)


def tensor_type(cfg: Config, spec: TensorSpec) -> GT:
    if spec.kind in ("norm", "bias", "rope_freqs", "router", "probs_bias"):
        return GT.F32
    if spec.kind == "mla_b":
        return GT.F32 if cfg.wtype == "f32" else GT.F16
    if spec.kind in ("embd", "embd_scaled"):
        return TYPES[cfg.embd_type or cfg.wtype][0]
    return TYPES[cfg.wtype][0]


def write_model(cfg: Config, vocab: Vocab, out: str, name: str) -> int:
    meta, specs = ARCHS[cfg.arch](cfg)
    w = gguf.GGUFWriter(out, cfg.arch)
    w.add_name(name)
    w.add_file_type(int(TYPES[cfg.wtype][1]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if cfg.pooling and cfg.arch != "bert":
        meta[f"{cfg.arch}.pooling_type"] = (cfg.pooling, gguf.GGUFValueType.UINT32)
    for key, (val, vt) in meta.items():
        w.add_key_value(key, val, vt)
    for key, (val, vt, sub) in vocab.kvs.items():
        w.add_key_value(key, val, vt, sub)

    # Declare every tensor first, then generate and write them one at a time: a multi-GB model never has to sit in
    # memory whole.
    for spec in specs:
        qt = tensor_type(cfg, spec)
        if len(spec.shape) >= 2 and qt not in (GT.F32, GT.F16):
            bs, ts = gguf.GGML_QUANT_SIZES[qt]
            if spec.shape[-1] % bs:
                raise SystemExit(f"gen_gguf.py: {spec.name}: row length {spec.shape[-1]} is not a multiple of the "
                                 f"{qt.name} block size {bs}")
            shape = gguf.quant_shape_to_byte_shape(spec.shape, qt)
            w.add_tensor_info(spec.name, shape, np.dtype(np.uint8), int(np.prod(shape)), raw_dtype=qt)
        else:
            dt = np.dtype(np.float16 if qt == GT.F16 else np.float32)
            w.add_tensor_info(spec.name, spec.shape, dt, int(np.prod(spec.shape)) * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    n_params = 0
    for spec in specs:
        data = encode(make_weights(cfg, spec, vocab.control), tensor_type(cfg, spec))
        w.write_tensor_data(data)
        n_params += int(np.prod(spec.shape))
    w.close()
    return n_params


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write a random-weight GGUF model.")
    p.add_argument("--arch", default="llama", choices=sorted(ARCHS))
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="shape to start from (default tiny)")
    p.add_argument("--n-embd", type=int)
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-head", type=int)
    p.add_argument("--n-head-kv", type=int)
    p.add_argument("--n-ff", type=int)
    p.add_argument("--head-dim", type=int, help="per-head dimension (default n_embd / n_head)")
    p.add_argument("--ctx", type=int, help="context_length metadata")
    p.add_argument("--rope-base", type=float)
    p.add_argument("--tied", dest="tied", action="store_true", default=None, help="output shares token_embd")
    p.add_argument("--no-tied", dest="tied", action="store_false", help="separate output.weight")
    p.add_argument("--type", default="q8_0", choices=sorted(TYPES), help="type of the 2-D weights")
    p.add_argument("--embd-type", choices=sorted(TYPES), help="type of token_embd (default: --type)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--swa", type=int, default=0,
                   help="sliding window (0: none): gemma3's SWA layers, every layer of a llama (Mistral) model")
    p.add_argument("--swa-pattern", type=int, default=0,
                   help="gemma3: every N-th layer attends globally (default: not written; llama.cpp uses 6)")
    p.add_argument("--rope-scaling", choices=("linear", "yarn"), help="write rope.scaling.type (and --rope-factor)")
    p.add_argument("--rope-factor", type=float, default=4.0, help="rope.scaling.factor (default 4)")
    p.add_argument("--rope-orig-ctx", type=int, default=0,
                   help="rope.scaling.original_context_length; with --rope-freqs, the context of its formula")
    p.add_argument("--rope-freqs", type=float, default=0.0, metavar="FACTOR",
                   help="write Llama 3.1's rope_freqs.weight with this factor (llama arch)")
    p.add_argument("--n-expert", type=int, default=16, help="qwen3moe / qwen2moe: experts per layer (default 16)")
    p.add_argument("--n-expert-used", type=int, default=4, help="experts per token (default 4)")
    p.add_argument("--n-ff-exp", type=int, default=256, help="expert feed-forward width (default 256)")
    p.add_argument("--n-ff-shexp", type=int, default=512, help="qwen2moe: shared expert width (default 512)")
    p.add_argument("--q-lora-rank", type=int, default=128, help="deepseek2: query rank (0: attn_q, V2-Lite)")
    p.add_argument("--kv-lora-rank", type=int, default=128, help="deepseek2: latent rank (default 128)")
    p.add_argument("--qk-rope", type=int, default=32, help="deepseek2: rotated dims per head (default 32)")
    p.add_argument("--qk-nope", type=int, default=64, help="deepseek2: unrotated dims per head (default 64)")
    p.add_argument("--v-head", type=int, default=64, help="deepseek2: value dims per head (default 64)")
    p.add_argument("--n-dense-lead", type=int, default=1, help="deepseek2: leading dense layers (default 1)")
    p.add_argument("--n-expert-shared", type=int, default=1, help="deepseek2: shared experts (default 1)")
    p.add_argument("--gating", choices=("sigmoid", "softmax"), default="sigmoid", help="deepseek2: expert gating")
    p.add_argument("--n-group", type=int, default=4, help="deepseek2: expert groups (0/1: none; default 4)")
    p.add_argument("--n-group-used", type=int, default=2, help="deepseek2: groups used per token (default 2)")
    p.add_argument("--w-scale", type=float, default=2.5, help="deepseek2: routed scaling factor (default 2.5)")
    p.add_argument("--no-w-norm", dest="w_norm", action="store_false", help="deepseek2: expert_weights_norm false")
    p.add_argument("--no-probs-bias", dest="probs_bias", action="store_false", help="deepseek2: no exp_probs_b")
    p.add_argument("--yarn-log-mul", type=float, default=0.0,
                   help="deepseek2: rope.scaling.yarn_log_multiplier (0.1 * mscale_all_dim; with --rope-scaling yarn)")
    p.add_argument("--vocab-from", required=True, metavar="FILE.gguf",
                   help="copy the tokenizer (all tokenizer.* keys) from this GGUF; n_vocab = its token count")
    p.add_argument("--n-vocab", type=int, default=0,
                   help="grow the vocabulary to this many tokens with reserved control tokens (benchmark shapes)")
    p.add_argument("--pooling", choices=("mean", "cls", "last"),
                   help="write <arch>.pooling_type (embedding models: bert, Qwen3-Embedding is qwen3 + last)")
    p.add_argument("--name", help="general.name (default: a description of the model)")
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args(argv)

    cfg = Config(arch=a.arch, **PRESETS[a.preset])
    for field in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff", "head_dim", "ctx", "rope_base", "tied"):
        v = getattr(a, field)
        if v is not None:
            setattr(cfg, field, v)
    cfg.wtype, cfg.embd_type, cfg.seed = a.type, a.embd_type or "", a.seed
    cfg.swa, cfg.swa_pattern = a.swa, a.swa_pattern
    cfg.rope_scaling, cfg.rope_factor = a.rope_scaling or "", a.rope_factor
    cfg.rope_orig_ctx, cfg.rope_freqs = a.rope_orig_ctx, a.rope_freqs
    cfg.n_expert, cfg.n_expert_used, cfg.n_ff_exp, cfg.n_ff_shexp = a.n_expert, a.n_expert_used, a.n_ff_exp, a.n_ff_shexp
    for f in ("q_lora_rank", "kv_lora_rank", "qk_rope", "qk_nope", "v_head", "n_dense_lead", "n_expert_shared",
              "gating", "n_group", "n_group_used", "w_scale", "w_norm", "probs_bias", "yarn_log_mul"):
        setattr(cfg, f, getattr(a, f))
    if cfg.arch == "deepseek2" and cfg.n_group > 1 and (cfg.n_expert % cfg.n_group or
                                                         not 0 < cfg.n_group_used < cfg.n_group):
        p.error("deepseek2: --n-group must divide --n-expert and --n-group-used be in 1 .. n_group - 1")
    if not 1 <= cfg.n_expert_used <= cfg.n_expert:
        p.error(f"--n-expert-used ({cfg.n_expert_used}) must be in 1 .. --n-expert ({cfg.n_expert})")
    if cfg.rope_scaling and not cfg.rope_factor >= 1.0:
        p.error(f"--rope-factor must be at least 1, got {cfg.rope_factor}")
    if cfg.rope_freqs and cfg.arch != "llama":
        p.error("--rope-freqs is Llama 3.1's scheme (llama arch only)")
    if cfg.arch == "gemma3" and not cfg.tied:
        p.error("gemma3 models are tied (--tied)")
    if cfg.n_head <= 0 or cfg.n_head_kv <= 0 or cfg.n_head % cfg.n_head_kv:
        p.error(f"n_head ({cfg.n_head}) must be a positive multiple of n_head_kv ({cfg.n_head_kv})")
    if not cfg.head_dim and cfg.n_embd % cfg.n_head:
        p.error(f"n_embd ({cfg.n_embd}) is not a multiple of n_head ({cfg.n_head}); give --head-dim")
    if cfg.hd % 2:
        p.error(f"head_dim ({cfg.hd}) must be even for RoPE")
    vocab = read_vocab(a.vocab_from)
    if a.n_vocab:
        if a.n_vocab < vocab.n_tokens:
            p.error(f"--n-vocab {a.n_vocab} is below the vocabulary's {vocab.n_tokens} tokens")
        vocab = pad_vocab(vocab, a.n_vocab)
    cfg.n_vocab = vocab.n_tokens
    cfg.pooling = {"mean": 1, "cls": 2, "last": 3}.get(a.pooling or "", 0)
    if cfg.arch == "bert":
        cfg.tied = False  # no output head: token_embd is not scaled as one
    name = a.name or (f"random {cfg.arch} {cfg.n_layer}x{cfg.n_embd} {cfg.wtype} seed {cfg.seed}")
    n = write_model(cfg, vocab, a.output, name)
    print(f"gen_gguf.py: wrote {a.output}: {cfg.arch}, {n / 1e6:.1f} M parameters, {cfg.wtype}, "
          f"vocab {cfg.n_vocab}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
