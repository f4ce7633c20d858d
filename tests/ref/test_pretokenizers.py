"""test_pretokenizers.py - every BPE pre-tokenizer zili knows, against llama.cpp, on multilingual text.

The shared vocabulary files cover only some pre-tokenizers (and their test vectors). The ones real models use most
(llama3 / llama-bpe for Llama 3, qwen2 / deepseek-r1-qwen for Qwen and the R1 distills, ...) need their own proof.
For each name zili's table knows (src/tokenizer/pretok.c), this writes a tiny random model (tools/gen_gguf.py,
1 layer of width 32) whose vocabulary is GPT-2's byte-level BPE vocabulary (../shared/data/vocab) with tokenizer.ggml.pre set to that
name, then tokenizes, with `zili tokenize` and with llama.cpp (llama-cpp-python, vocab only):
  * a fixed multilingual text (Chinese, Japanese, Korean, Thai, Khmer, Arabic digits, emoji with modifiers, code,
    contractions, runs of spaces, tabs and newlines, non-ASCII spaces) and
  * 20 random strings drawn from a pool of the same pieces.
The ids must be identical. On these texts the 25 names fall into 8 groups of different ids, one per distinct
regex set of pretok.c, so a name mapped to the wrong set fails. The merges were not trained for most of these splits, which does not matter: the test is
that zili's split (the regexes) and its BPE give llama.cpp's ids for the same vocabulary and name.
"""
from __future__ import annotations

import os
import random
import sys

import pytest

import common

sys.path.insert(0, os.path.join(common.ROOT, "tools"))
import gen_gguf  # noqa: E402

try:
    import llama_cpp
except ImportError:  # every test fails and says why
    llama_cpp = None

# zili's names (pretok.c), each also a name llama.cpp's loader knows.
PRE_NAMES = ["default", "gpt-2", "phi-2", "mpt", "olmo", "jais", "starcoder", "refact", "command-r", "smollm",
             "codeshell", "exaone", "falcon", "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe",
             "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "deepseek-coder", "deepseek-llm"]

TEXT = ("Hello world! I'm here, you're there; we'll see. DON'T SHOUT.\n"
        "北京欢迎你。今天天气很好，我们去公园吧！ 東京は日本の首都です。 안녕하세요, 세계! สวัสดีครับ ស្វាគមន៍\n"
        "Numbers: 1 12 123 1234 12345 3.14159 1,000,000 ٣٤٥ ½ ² ①\n"
        "Emoji: 🦙🚀 👍🏽 👨‍👩‍👧 ❤️\n"
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n-1) + fibonacci(n-2)\n\n"
        "\t\tindented\t\ttabs   and    spaces      \n\n\n  trailing  \u00a0nbsp\u3000ideographic\u2003em \u200bzw")

POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + [" "] * 12 +
        list("\n\n\t\r.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`") +
        ["'s", "'t", "'ll", "'re", "'ve", "'m", "'d", "'S", "'LL"] +
        list("éèàçñüößøåÆŒΩπλДжЯ日本語中文한국어ですกขคស្វ") +
        ["🦙", "🚀", "👍🏽", "\u200b", "\u00a0", "\u3000", "\u2003", "①", "½", "²", "٣", "—", "…", "«»"] +
        ["   ", "\n\n", "\t\t", " \n ", "123", "4567"])
N_RANDOM = 20
# GPT-2's vocabulary (50257 tokens): unlike SmolLM2's it merges digits ("123"), so the pre-tokenizers that differ
# only in how they split numbers (llama3's groups of three, qwen2's single digits, gpt-2's runs) give different ids.
GPT2_VOCAB = os.path.join(common.ROOT, "..", "shared", "data", "vocab", "ggml-vocab-gpt-2.gguf")


@pytest.fixture(scope="module")
def base_vocab():
    assert os.path.exists(GPT2_VOCAB), f"{GPT2_VOCAB} is missing (the shared test data)"
    return gen_gguf.read_vocab(GPT2_VOCAB)


def write_model(vocab, pre: str, path: str) -> None:
    kvs = dict(vocab.kvs)
    kvs["tokenizer.ggml.pre"] = (pre.encode(), gen_gguf.gguf.GGUFValueType.STRING, None)
    cfg = gen_gguf.Config(arch="llama", n_embd=32, n_layer=1, n_head=1, n_head_kv=1, n_ff=32, ctx=512, wtype="f16",
                          n_vocab=vocab.n_tokens)
    gen_gguf.write_model(cfg, gen_gguf.Vocab(kvs, vocab.n_tokens, vocab.control), path, f"pre-tokenizer {pre}")


def texts() -> list[str]:
    rng = random.Random(1234)
    return [TEXT] + ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(N_RANDOM)]


@pytest.mark.parametrize("pre", PRE_NAMES)
def test_pretokenizer_matches_llamacpp(pre, base_vocab, zili_ready, tmp_path):
    if llama_cpp is None:
        pytest.fail("llama-cpp-python is not importable; pip install -r requirements-test.txt")
    path = str(tmp_path / f"pre-{pre}.gguf")
    write_model(base_vocab, pre, path)
    info = common.zili("info", "-m", path)
    assert f"pre-tokenizer {pre}\n" in info, info[-400:]
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    bad = 0
    cases = texts()
    for t in cases:
        ref = llm.tokenize(t.encode(), add_bos=False, special=False)
        got = common.parse_ids(common.zili("tokenize", "-m", path, "--no-bos", "--no-special", stdin=t))
        if got != ref:
            bad += 1
            if bad <= 3:
                i = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
                print(f"{pre}: DIFFER on {t[:60]!r}: at {i}: zili {got[i:i + 6]} llama.cpp {ref[i:i + 6]}")
    print(f"{pre}: {len(cases) - bad}/{len(cases)} texts identical ({len(TEXT)} + random strings)")
    assert bad == 0
