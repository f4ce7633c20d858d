"""common.py - what the reference tests share: where things are, the test models, and how to call zili.

Test models:
  * SmolLM2-135M-Instruct Q4_1 (a real model; gpt2 byte-level BPE vocabulary, no BOS), fetched by
    scripts/fetch_models.sh into models/.
  * Gemma 3 270M Q4_K_M (a real gemma3 model: sliding-window layers, GeGLU, SentencePiece vocabulary of 262144
    without a space prefix, BOS added), fetched by the same script. Only the llama.cpp tests use it (the float
    reference of its 262144 x 640 embedding would take gigabytes); they skip, saying so, when it is absent.
  * Random-weight llama models written by tools/gen_gguf.py (preset tiny), one per tensor type, with the gpt2
    vocabulary of SmolLM2 (tied embeddings, 4 kv heads) and with the SentencePiece vocabulary of Llama 2 (BOS added;
    separate output matrix, 2 kv heads). They live in models/random/<hash of gen_gguf.py>/, so a change to the
    generator makes fresh ones instead of testing stale files.
  * Random-weight qwen2 and qwen3 models (gpt2 vocabulary of SmolLM2) in Q8_0, F16, and the Q4_K_M, Q5_K_M and
    Q6_K mixes quantized by llama.cpp's own quantizer (tools/quantize_gguf.py), and the same for the Q2_K and Q3_K_M
    mixes, Q5_0 and Q5_1: tied with 4 kv heads and untied with 2; qwen3 also with head_dim 64 (so n_head * head_dim
    = 512 != n_embd = 256). See QWEN_MODELS.
  * Random-weight gemma3 models (SentencePiece vocabulary): Q8_0, and Q4_K_M, Q5_K_M, Q6_K, Q2_K, Q3_K_M, Q5_0 and
    Q5_1 quantized the same way, with sliding-window layers of window 16 (see GEMMA3_MODELS).
  * Random-weight mixtures of experts, qwen3moe and qwen2moe, in F16, Q8_0 and the Q4_K_M mix (see MOE_MODELS).
  * Random-weight Q8_0 models with RoPE scaling: YaRN (llama, qwen2), linear (llama, gemma3's global layers) and
    Llama 3.1's rope_freqs.weight (see ROPE_MODELS), and a llama model with a Mistral-style sliding window
    (MISTRAL_SWA; float reference only, llama.cpp ignores the window for this architecture).

`python3 tests/ref/common.py` fetches and generates whatever is missing (run_tests.sh does this first).
Environment: ZILI = path of the zili binary (default build/zili).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
SMOLLM2 = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA3 = os.path.join(MODELS, "gemma-3-270m-q4_k_m.gguf")
SPM_VOCAB = os.path.join(ROOT, "tests", "data", "vocab", "ggml-vocab-llama-spm.gguf")
GEN = os.path.join(ROOT, "tools", "gen_gguf.py")
DATA = os.path.join(ROOT, "tests", "data")
TYPES = ("f32", "f16", "bf16", "q4_0", "q4_1", "q8_0")
THREADS = 2


def zili_bin() -> str:
    return os.environ.get("ZILI", os.path.join(ROOT, "build", "zili"))


@dataclasses.dataclass(frozen=True)
class TestModel:
    name: str                 # short id used in test names, e.g. "bpe-q4_0"
    path: str
    wtype: str                # tensor type of the 2-D weights ("q4_1" for SmolLM2)
    gen_args: tuple = ()      # gen_gguf.py arguments; empty for downloaded models
    quantize: str = ""        # then tools/quantize_gguf.py to this file type (gen_args write F32)
    llamacpp: bool = True     # False: llama.cpp computes another model from this file (see MISTRAL_SWA)
    moe: bool = False         # a mixture of experts (MOE_MODELS, DEEPSEEK2_MODELS)
    mla: bool = False         # deepseek2 (multi-head latent attention; the float reference has no such model)

    def __str__(self) -> str:
        return self.name


# (name, tensor type, gen_gguf.py arguments, quantize_gguf.py file type or "") of the random Qwen-family models.
# The K-quant mixes are quantized from F32 by llama.cpp's own quantizer (tools/quantize_gguf.py), as llama-quantize
# writes them (Q4_K_M: Q4_K with Q6_K for the output / embedding and some attn_v / ffn_down; Q5_K_M: Q5_K with Q6_K
# the same way; Q6_K: all Q6_K); n_ff 512 so that every matrix row is a multiple of 256 and no fallback type is needed.
QWEN_KQ = ("--n-ff", "512")
QWEN_MODELS = [
    ("qwen2-q8_0", "q8_0", ("--arch", "qwen2", "--seed", "3", "--tied"), ""),
    ("qwen2-f16", "f16", ("--arch", "qwen2", "--seed", "5", "--no-tied", "--n-head-kv", "2"), ""),
    ("qwen3-q8_0", "q8_0", ("--arch", "qwen3", "--seed", "4", "--tied", "--head-dim", "64"), ""),
    ("qwen3-f16", "f16", ("--arch", "qwen3", "--seed", "6", "--no-tied", "--n-head-kv", "2"), ""),
    ("qwen2-q4_k_m", "q4_k_m", ("--arch", "qwen2", "--seed", "11", "--tied", *QWEN_KQ), "q4_k_m"),
    ("qwen2-q5_k_m", "q5_k_m", ("--arch", "qwen2", "--seed", "12", "--no-tied", "--n-head-kv", "2", *QWEN_KQ),
     "q5_k_m"),
    ("qwen2-q6_k", "q6_k", ("--arch", "qwen2", "--seed", "13", "--tied", *QWEN_KQ), "q6_k"),
    ("qwen3-q4_k_m", "q4_k_m", ("--arch", "qwen3", "--seed", "14", "--no-tied", "--n-head-kv", "2", *QWEN_KQ),
     "q4_k_m"),
    ("qwen3-q5_k_m", "q5_k_m", ("--arch", "qwen3", "--seed", "15", "--tied", "--head-dim", "64", *QWEN_KQ),
     "q5_k_m"),
    ("qwen3-q6_k", "q6_k", ("--arch", "qwen3", "--seed", "16", "--no-tied", "--n-head-kv", "2", *QWEN_KQ), "q6_k"),
    # the other types a file can carry: the Q2_K mix (Q2_K with Q3_K / Q4_K for some attn_v and ffn_down, Q6_K
    # output), the Q3_K_M mix (Q3_K with Q4_K / Q5_K), and Q5_0 / Q5_1 (with a Q6_K output or embedding)
    ("qwen2-q2_k", "q2_k", ("--arch", "qwen2", "--seed", "31", "--tied", *QWEN_KQ), "q2_k"),
    ("qwen2-q3_k_m", "q3_k_m", ("--arch", "qwen2", "--seed", "32", "--no-tied", "--n-head-kv", "2", *QWEN_KQ),
     "q3_k_m"),
    ("qwen2-q5_0", "q5_0", ("--arch", "qwen2", "--seed", "33", "--tied", *QWEN_KQ), "q5_0"),
    ("qwen2-q5_1", "q5_1", ("--arch", "qwen2", "--seed", "34", "--no-tied", "--n-head-kv", "2", *QWEN_KQ), "q5_1"),
    ("qwen3-q2_k", "q2_k", ("--arch", "qwen3", "--seed", "35", "--no-tied", "--n-head-kv", "2", *QWEN_KQ), "q2_k"),
    ("qwen3-q3_k_m", "q3_k_m", ("--arch", "qwen3", "--seed", "36", "--tied", "--head-dim", "64", *QWEN_KQ),
     "q3_k_m"),
    ("qwen3-q5_0", "q5_0", ("--arch", "qwen3", "--seed", "37", "--no-tied", "--n-head-kv", "2", *QWEN_KQ), "q5_0"),
    ("qwen3-q5_1", "q5_1", ("--arch", "qwen3", "--seed", "38", "--tied", "--head-dim", "64", *QWEN_KQ), "q5_1"),
]


# Random gemma3 models (SentencePiece vocabulary of the spm models): 6 layers with llama.cpp's default pattern (layers
# 0-4 slide, 5 is global), window 16 (shorter than every prompt + 64 generated tokens), 1 kv head of 64, n_ff 512
# (a multiple of 256, so that K-quants apply to every matrix). Q8_0 from gen_gguf.py; Q4_K_M (Q4_K, Q6_K and Q8_0
# for the embedding... as llama-quantize mixes them) from an F32 one through tools/quantize_gguf.py.
GEMMA3_SHAPE = ("--arch", "gemma3", "--n-layer", "6", "--n-head", "4", "--n-head-kv", "1", "--head-dim", "64",
                "--n-ff", "512", "--swa", "16", "--tied")
GEMMA3_MODELS = [
    ("gemma3-q8_0", "q8_0", ("--seed", "7"), ""),
    ("gemma3-q4_k_m", "q4_k_m", ("--seed", "8"), "q4_k_m"),
    ("gemma3-q5_k_m", "q5_k_m", ("--seed", "9"), "q5_k_m"),
    ("gemma3-q6_k", "q6_k", ("--seed", "10"), "q6_k"),
    ("gemma3-q2_k", "q2_k", ("--seed", "27"), "q2_k"),
    ("gemma3-q3_k_m", "q3_k_m", ("--seed", "28"), "q3_k_m"),
    ("gemma3-q5_0", "q5_0", ("--seed", "29"), "q5_0"),
    ("gemma3-q5_1", "q5_1", ("--seed", "30"), "q5_1"),
]
QUANTIZE = os.path.join(ROOT, "tools", "quantize_gguf.py")

# Random Q8_0 models with RoPE scaling as real files carry it (name, vocabulary, gen_gguf.py arguments). The original
# contexts are short (64, 128, 256) so that the prompts and their 64 generated tokens run past them and YaRN's ramp
# covers several pairs of the 32-wide heads.
ROPE_MODELS = [
    ("llama-yarn", "bpe", ("--seed", "21", "--tied", "--rope-scaling", "yarn", "--rope-factor", "4",
                           "--rope-orig-ctx", "64")),
    ("llama-linear", "spm", ("--seed", "23", "--no-tied", "--n-head-kv", "2", "--rope-scaling", "linear",
                             "--rope-factor", "4")),
    ("llama-rope-freqs", "bpe", ("--seed", "22", "--tied", "--rope-freqs", "8", "--rope-orig-ctx", "256")),
    ("qwen2-yarn", "bpe", ("--arch", "qwen2", "--seed", "24", "--tied", "--rope-scaling", "yarn", "--rope-factor", "4",
                           "--rope-orig-ctx", "128")),
    ("gemma3-linear", "spm", (*GEMMA3_SHAPE, "--seed", "25", "--rope-scaling", "linear", "--rope-factor", "8")),
]

# Random mixtures of experts (gpt2 vocabulary of SmolLM2; name, tensor type, gen_gguf.py arguments, quantize_gguf.py
# file type or ""): qwen3moe with 16 experts of which 4 are used (weights normalized), qwen2moe with 8 of which 2, plus
# its shared expert of 512 (llama.cpp requires its output.weight). Expert width 256, so that K-quants apply to every
# expert row; batches of 40 and 130 tokens route 8+ rows to some experts (llama.cpp's tiled K-quant MUL_MAT_ID) and
# fewer to others (vec_dot). llama.cpp's qwen3moe has no leading dense layers (every layer is routed), so none here.
MOE_Q3 = ("--arch", "qwen3moe", "--n-expert", "16", "--n-expert-used", "4", "--n-ff-exp", "256", "--no-tied")
MOE_Q2 = ("--arch", "qwen2moe", "--n-expert", "8", "--n-expert-used", "2", "--n-ff-exp", "256", "--n-ff-shexp", "512",
          "--no-tied")
# All untied: with tied embeddings these random models repeat one token from the first greedy step on (measured on
# qwen3moe, seeds 41 and 47); the seeds give 10-30 distinct tokens in each 64-token greedy reply (test_llamacpp.py
# requires 4+).
MOE_MODELS = [
    ("qwen3moe-f16", "f16", (*MOE_Q3, "--seed", "47", "--head-dim", "64"), ""),
    ("qwen3moe-q8_0", "q8_0", (*MOE_Q3, "--seed", "47", "--n-head-kv", "2"), ""),
    ("qwen3moe-q4_k_m", "q4_k_m", (*MOE_Q3, "--seed", "47"), "q4_k_m"),
    ("qwen2moe-f16", "f16", (*MOE_Q2, "--seed", "43"), ""),
    ("qwen2moe-q8_0", "q8_0", (*MOE_Q2, "--seed", "49", "--n-head-kv", "2"), ""),
    ("qwen2moe-q4_k_m", "q4_k_m", (*MOE_Q2, "--seed", "43"), "q4_k_m"),
]

# Random DeepSeek V2 / V3 models (deepseek2, multi-head latent attention): 4 layers, the first dense, then 16 experts of
# which 4 are used. V3's routing (sigmoid scores + exp_probs_b, 4 groups of which 2 are used, normalized weights times
# 2.5, one shared expert) on the F16 and Q4_K_M models, the F16 one with YaRN (factor 4 over 64 positions, the
# yarn_log_multiplier 0.1 of DeepSeek's mscale_all_dim 1) and a latent of 256 + 64 rope dims (multiples of 64: the
# grouped attention kernels); V2-Lite's (no query compression, softmax, no groups, no bias, no normalization, 2 shared
# experts) on the Q8_0 one (its attn_k_b / attn_v_b F16), and an F32 one (F32 attn_k_b: llama.cpp multiplies it by
# vec_dot whatever the batch, see deepseek2.c). Seeds chosen for talkative greedy text (test_llamacpp.py requires 4+ distinct tokens in 64).
DS_BASE = ("--arch", "deepseek2", "--n-expert", "16", "--n-expert-used", "4", "--n-ff-exp", "256", "--no-tied")
DEEPSEEK2_MODELS = [
    ("deepseek2-f16", "f16", (*DS_BASE, "--seed", "51", "--kv-lora-rank", "256", "--qk-rope", "64",
                              "--rope-scaling", "yarn", "--rope-factor", "4", "--rope-orig-ctx", "64",
                              "--yarn-log-mul", "0.1"), ""),
    ("deepseek2-q8_0", "q8_0", (*DS_BASE, "--seed", "52", "--q-lora-rank", "0", "--gating", "softmax", "--n-group",
                                "0", "--no-probs-bias", "--w-scale", "1", "--no-w-norm", "--n-expert-shared", "2"), ""),
    ("deepseek2-q4_k_m", "q4_k_m", (*DS_BASE, "--seed", "53"), "q4_k_m"),
    ("deepseek2-f32", "f32", (*DS_BASE, "--seed", "53"), ""),
]

# A llama model with a Mistral-style sliding window of 8 on every layer (llama.attention.sliding_window). llama.cpp
# ignores that key for the llama architecture (and its converters do not write it), so this one is checked against
# the float reference only, whose prompts (10-23 tokens) run past the window.
MISTRAL_SWA = ("--seed", "26", "--no-tied", "--n-head-kv", "2", "--swa", "8")


def _random_dir() -> str:
    with open(GEN, "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:10]
    return os.path.join(MODELS, "random", tag)


def random_models() -> list[TestModel]:
    d = _random_dir()
    out = []
    for t in TYPES:
        out.append(TestModel(f"bpe-{t}", os.path.join(d, f"bpe-{t}.gguf"), t,
                             ("--preset", "tiny", "--type", t, "--seed", "1", "--tied", "--vocab-from", SMOLLM2)))
    for t in TYPES:
        out.append(TestModel(f"spm-{t}", os.path.join(d, f"spm-{t}.gguf"), t,
                             ("--preset", "tiny", "--type", t, "--seed", "2", "--no-tied", "--n-head-kv", "2",
                              "--vocab-from", SPM_VOCAB)))
    for name, t, args, quant in QWEN_MODELS:
        out.append(TestModel(name, os.path.join(d, f"{name}.gguf"), t,
                             ("--preset", "tiny", "--type", "f32" if quant else t, *args, "--vocab-from", SMOLLM2),
                             quant))
    for name, t, args, quant in GEMMA3_MODELS:
        out.append(TestModel(name, os.path.join(d, f"{name}.gguf"), t,
                             ("--preset", "tiny", *GEMMA3_SHAPE, "--type", "f32" if quant else t, *args,
                              "--vocab-from", SPM_VOCAB), quant))
    for name, vocab, args in ROPE_MODELS:
        out.append(TestModel(name, os.path.join(d, f"{name}.gguf"), "q8_0",
                             ("--preset", "tiny", "--type", "q8_0", *args, "--vocab-from",
                              SMOLLM2 if vocab == "bpe" else SPM_VOCAB)))
    for name, t, args, quant in MOE_MODELS:
        out.append(TestModel(name, os.path.join(d, f"{name}.gguf"), t,
                             ("--preset", "tiny", "--type", "f32" if quant else t, *args, "--vocab-from", SMOLLM2),
                             quant, moe=True))
    for name, t, args, quant in DEEPSEEK2_MODELS:
        out.append(TestModel(name, os.path.join(d, f"{name}.gguf"), t,
                             ("--preset", "tiny", "--type", "f32" if quant else t, *args, "--vocab-from", SMOLLM2),
                             quant, moe=True, mla=True))
    out.append(TestModel("mistral-swa", os.path.join(d, "mistral-swa.gguf"), "q8_0",
                         ("--preset", "tiny", "--type", "q8_0", *MISTRAL_SWA, "--vocab-from", SPM_VOCAB),
                         llamacpp=False))
    return out


def smollm2() -> TestModel:
    return TestModel("smollm2", SMOLLM2, "q4_1")


def gemma3_270m() -> TestModel:
    return TestModel("gemma3-270m", GEMMA3, "q4_k_m")


def all_models() -> list[TestModel]:
    """SmolLM2 and the random models: every model the float reference checks (deepseek2 too: the float reference
    refuses what it does not know, so test_float_ref.py leaves the mla ones out)."""
    return [smollm2()] + random_models()


def llamacpp_models() -> list[TestModel]:
    """The models checked against llama.cpp: all_models() that llama.cpp runs as written, and Gemma 3 270M."""
    return [m for m in all_models() if m.llamacpp] + [gemma3_270m()]


def skip_if_absent(model: TestModel) -> None:
    """Skips (with the reason) a test of a downloaded model that is not there; SmolLM2 is always required."""
    if model.path == GEMMA3 and not os.path.exists(model.path):
        import pytest
        pytest.skip(f"{os.path.relpath(model.path, ROOT)} is absent (scripts/fetch_models.sh models fetches it)")


def ensure_models(verbose: bool = True) -> None:
    """Fetches the real models and writes the random models that are missing (atomically: temp name, then
    rename). SmolLM2 is required; Gemma 3 270M may stay absent (its tests then skip, saying so)."""
    if not os.path.exists(SMOLLM2) or not os.path.exists(GEMMA3):
        subprocess.run([os.path.join(ROOT, "scripts", "fetch_models.sh"), MODELS], check=False)
        if not os.path.exists(SMOLLM2):
            raise RuntimeError(f"could not fetch {SMOLLM2} (scripts/fetch_models.sh {MODELS})")
    for m in random_models():
        if os.path.exists(m.path):
            continue
        os.makedirs(os.path.dirname(m.path), exist_ok=True)
        tmp = f"{m.path}.{os.getpid()}.tmp"  # several test runs may generate at once
        if verbose:
            print(f"generating {os.path.relpath(m.path, ROOT)}", file=sys.stderr)
        subprocess.run([sys.executable, GEN, *m.gen_args, "-o", tmp], check=True,
                       stderr=None if verbose else subprocess.DEVNULL)
        if m.quantize:
            subprocess.run([sys.executable, QUANTIZE, tmp, tmp + ".q", m.quantize], check=True,
                           stdout=subprocess.DEVNULL, stderr=None if verbose else subprocess.DEVNULL)
            os.replace(tmp + ".q", tmp)
        os.replace(tmp, m.path)


def no_repack(llama_cpp) -> None:
    """Makes llama-cpp-python load models without weight repacking (llama-cli's --no-repack): repacked
    Q4_0/Q4_K/Q2_K/... weights use other kernels whose sums are ordered differently, and zili mirrors ggml's
    standard ones (run zili with ZILI_NO_REPACK=1 to compare). repacking(llama_cpp) turns it back on for the
    models loaded inside it. Idempotent."""
    if getattr(llama_cpp, "_zili_no_repack", False):
        return
    default = llama_cpp.llama_model_default_params

    def params():
        p = default()
        if hasattr(p, "use_extra_bufts") and not getattr(llama_cpp, "_zili_repack_on", False):
            p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = params
    llama_cpp.llama_cpp.llama_model_default_params = params
    llama_cpp._zili_no_repack = True


class repacking:
    """`with repacking(llama_cpp): llm = Llama(...)` loads with llama.cpp's default weight repacking, after
    no_repack(llama_cpp) turned it off for the rest."""

    def __init__(self, llama_cpp):
        self.llama_cpp = llama_cpp

    def __enter__(self):
        self.llama_cpp._zili_repack_on = True

    def __exit__(self, *exc):
        self.llama_cpp._zili_repack_on = False
        return False


def zili_repacks() -> bool:
    """Whether zili repacks Q4_0 and Q4_K matrices on this machine: with every x86 kernel set from avx2 up (a CPU
    with AVX2, FMA and F16C, as src/core/dtype.c checks them, and ZILI_CPU unset or avx2 / avx512 / avx512vnni)."""
    if os.environ.get("ZILI_CPU", "avx512vnni") not in ("avx2", "avx512", "avx512vnni"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return all(x in flags for x in ("avx2", "fma", "f16c"))


def zili(*args: str, stdin: str | None = None, timeout: float = 600) -> str:
    """Runs `zili ARGS`; returns stdout; raises with zili's stderr on a non-zero exit."""
    p = subprocess.run([zili_bin(), *args], input=stdin.encode() if stdin is not None else None,
                       capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"zili {' '.join(args)[:200]}: exit {p.returncode}: "
                             f"{p.stderr.decode(errors='replace').strip()[-2000:]}")
    return p.stdout.decode(errors="replace")


def parse_ids(s: str) -> list[int]:
    return [int(x) for x in s.split()]


def zili_tokenize(model: str, text: str) -> list[int]:
    return parse_ids(zili("tokenize", "-m", model, stdin=text))


PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "The three primary colors are",
]


if __name__ == "__main__":
    ensure_models()
