"""common.py - what the reference tests share: where things are, the test models, and how to call zili.

Test models:
  * SmolLM2-135M-Instruct Q4_1 (a real model; gpt2 byte-level BPE vocabulary, no BOS), fetched by
    scripts/fetch_models.sh into models/.
  * Random-weight llama models written by tools/gen_gguf.py (preset tiny), one per tensor type, with the gpt2
    vocabulary of SmolLM2 (tied embeddings, 4 kv heads) and with the SentencePiece vocabulary of Llama 2 (BOS added;
    separate output matrix, 2 kv heads). They live in models/random/<hash of gen_gguf.py>/, so a change to the
    generator makes fresh ones instead of testing stale files.
  * Random-weight qwen2 and qwen3 models (gpt2 vocabulary of SmolLM2), Q8_0 and F16 each: qwen2 tied with 4 kv
    heads and untied with 2; qwen3 tied with head_dim 64 (so n_head * head_dim = 512 != n_embd = 256) and untied
    with 2 kv heads.

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

    def __str__(self) -> str:
        return self.name


# (name, tensor type, gen_gguf.py arguments) of the random Qwen-family models.
QWEN_MODELS = [
    ("qwen2-q8_0", "q8_0", ("--arch", "qwen2", "--seed", "3", "--tied")),
    ("qwen2-f16", "f16", ("--arch", "qwen2", "--seed", "5", "--no-tied", "--n-head-kv", "2")),
    ("qwen3-q8_0", "q8_0", ("--arch", "qwen3", "--seed", "4", "--tied", "--head-dim", "64")),
    ("qwen3-f16", "f16", ("--arch", "qwen3", "--seed", "6", "--no-tied", "--n-head-kv", "2")),
]


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
    for name, t, args in QWEN_MODELS:
        out.append(TestModel(name, os.path.join(d, f"{name}.gguf"), t,
                             ("--preset", "tiny", "--type", t, *args, "--vocab-from", SMOLLM2)))
    return out


def smollm2() -> TestModel:
    return TestModel("smollm2", SMOLLM2, "q4_1")


def all_models() -> list[TestModel]:
    return [smollm2()] + random_models()


def ensure_models(verbose: bool = True) -> None:
    """Fetches SmolLM2 and writes the random models that are missing (atomically: temp name, then rename)."""
    if not os.path.exists(SMOLLM2):
        subprocess.run([os.path.join(ROOT, "scripts", "fetch_models.sh"), MODELS], check=True)
    for m in random_models():
        if os.path.exists(m.path):
            continue
        os.makedirs(os.path.dirname(m.path), exist_ok=True)
        tmp = m.path + ".tmp"
        if verbose:
            print(f"generating {os.path.relpath(m.path, ROOT)}", file=sys.stderr)
        subprocess.run([sys.executable, GEN, *m.gen_args, "-o", tmp], check=True,
                       stderr=None if verbose else subprocess.DEVNULL)
        os.replace(tmp, m.path)


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
