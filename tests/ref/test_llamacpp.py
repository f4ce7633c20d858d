"""test_llamacpp.py - zili against llama.cpp (through llama-cpp-python): tokenization, greedy text, perplexity.

  * Tokenization: `zili tokenize` of every prompt and of the perplexity text equals llama.cpp's tokenizer (BOS as
    the vocabulary says, special tokens parsed), for the gpt2 vocabulary (SmolLM2) and the SentencePiece one.
  * Greedy: llama.cpp is fed exactly the prompt ids zili uses (so a tokenizer difference cannot hide or cause a
    divergence), evaluates them in one batch, then takes the argmax of the logits one token at a time, stopping at
    an end-of-generation token; the 64 tokens must be identical to `zili run --temp 0 --ids`. Printed per case:
    "tokens matched k/64" (k = length of the common prefix).
  * Batch logits: every logit of a 3-token, a 40-token and a 130-token batch (and a 1-token one for the mixtures of
    experts) of random ids equals llama.cpp's bit
    for bit (the multi-token float order and, for K-quant weights, the tiled matmul of batches of 8+; 130 tokens
    cross zili's batch of 128 while llama.cpp takes them in one micro-batch).
  * Repacked Q4_0 / Q4_K (the models with such matrices and no Q2_K, on an x86 CPU with AVX2, where zili repacks
    them as llama.cpp does): llama.cpp with its default repacking against zili's default, batch logits of 1, 3, 40, 43 and 130 tokens bit
    for bit and greedy text token for token (src/backend/cpu/repack.h). Every other test here runs zili with ZILI_NO_REPACK=1.
  * Perplexity (SmolLM2, Gemma 3 270M): llama-perplexity's method from llama.cpp's logits (whole text tokenized
    once, with BOS if the vocabulary adds it; chunks of CTX tokens, each evaluated from an empty cache with its first token
    replaced by BOS when the vocabulary adds it; positions CTX/2 .. CTX-2 scored with log-softmax); zili's
    `PPL = ` must be within 1%.

llama-cpp-python is required: if it cannot be imported every test here FAILS (it is not an optional extra).
llama.cpp runs on 2 threads without flash attention (its CPU default), F16 KV cache (its default), and without
weight repacking (llama-cli's --no-repack): repacked Q4_0/Q4_K/... weights use other kernels whose sums are
ordered differently; zili mirrors ggml's standard kernels (and its tiled K-quant matmul for batches of 8+ tokens,
see src/backend/cpu/ops.c). Greedy runs compute logits for the last token only,
as llama-cli does (so the output matmul has one row); perplexity asks for every row, as llama-perplexity does.
"""
from __future__ import annotations

import functools
import os
import re

import numpy as np
import pytest

import common

N_PREDICT = 64
PPL_CTX = 128
PPL_TEXT = os.path.join(common.DATA, "ppl.txt")

try:
    import llama_cpp
    IMPORT_ERROR = None
except ImportError as e:  # reported by every test, see the file comment
    llama_cpp = None
    IMPORT_ERROR = e


if llama_cpp is not None:
    common.no_repack(llama_cpp)


@pytest.fixture(autouse=True)
def zili_no_repack(request, monkeypatch):
    """zili in vec_dot's order (as llama.cpp without repacking) except in the tests of the repacked order; always in
    llama.cpp's arithmetic (ZILI_EXACT=1: no AMX tiles for prompts, whose sums are ordered otherwise)."""
    monkeypatch.setenv("ZILI_EXACT", "1")
    if "repacked" not in request.node.name:
        monkeypatch.setenv("ZILI_NO_REPACK", "1")


def test_reference_has_no_amx():
    """The reference is built without GGML_NATIVE and without AMX (scripts/setup.sh): llama.cpp's AMX matmul crashes
    on repacked weights in this version, and its AVX-512 results are the ones zili mirrors on every x86 CPU."""
    if llama_cpp is None:
        pytest.fail(f"llama-cpp-python is not importable ({IMPORT_ERROR}); pip install -r requirements-test.txt")
    info = llama_cpp.llama_print_system_info().decode()
    print(f"reference llama.cpp: {info.strip()}")
    assert "AMX" not in info, f"llama-cpp-python was built with AMX ({info.strip()}); rebuild it: scripts/setup.sh test"


@functools.lru_cache(maxsize=2)
def llama(path: str, logits_all: bool = False, repack: bool = False):
    if llama_cpp is None:
        pytest.fail(f"llama-cpp-python is not importable ({IMPORT_ERROR}); pip install -r requirements-test.txt")
    if repack:
        with common.repacking(llama_cpp):
            return llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=common.THREADS,
                                   n_threads_batch=common.THREADS, logits_all=logits_all, flash_attn=False,
                                   verbose=False)
    return llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=common.THREADS,
                           n_threads_batch=common.THREADS, logits_all=logits_all, flash_attn=False, verbose=False)


def is_eog(llm, tok: int) -> bool:
    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def last_logits(llm) -> np.ndarray:
    """The logits of the last evaluated token (llama-cpp-python keeps llm.scores only with logits_all)."""
    p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.array(np.ctypeslib.as_array(p, shape=(llm.n_vocab(),)), dtype=np.float64)


def llama_greedy(llm, prompt_ids: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    """The greedy continuation and the logits each token was chosen from (plus the one that chose EOG, if any)."""
    llm.reset()
    llm.eval(prompt_ids)
    out: list[int] = []
    rows: list[np.ndarray] = []
    while len(out) < n:
        row = last_logits(llm)
        rows.append(row)
        tok = int(np.argmax(row))
        if is_eog(llm, tok):
            break
        out.append(tok)
        if len(out) < n:
            llm.eval([tok])
    return out, rows


def llama_perplexity(llm, text: bytes, n_ctx: int) -> float:
    add_bos = llm._model.add_bos_token()
    bos = llm._model.token_bos()
    toks = llm.tokenize(text, add_bos=add_bos, special=False)
    n_chunk = len(toks) // n_ctx
    assert n_chunk > 0
    nll, count = 0.0, 0
    first = n_ctx // 2
    for c in range(n_chunk):
        chunk = toks[c * n_ctx:(c + 1) * n_ctx]
        if add_bos:
            chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[first:n_ctx - 1], dtype=np.float64)
        mx = logits.max(axis=1, keepdims=True)
        logp = logits - mx - np.log(np.exp(logits - mx).sum(axis=1, keepdims=True))
        nxt = np.asarray(toks[c * n_ctx + first + 1:(c + 1) * n_ctx])
        nll -= float(logp[np.arange(len(nxt)), nxt].sum())
        count += len(nxt)
    return float(np.exp(nll / count))


def vocab_models() -> list[common.TestModel]:
    """One model per vocabulary: SmolLM2 (gpt2 BPE), the SentencePiece random model and Gemma 3 (SentencePiece of
    262144 pieces, no space prefix, byte fallback, many special and user-defined tokens)."""
    return [common.smollm2()] + [m for m in common.random_models() if m.name == "spm-f32"] + [common.gemma3_270m()]


# Text that exercises a SentencePiece vocabulary's corners: CJK, emoji (byte fallback and multi-codepoint clusters),
# code with tabs and whitespace runs, leading/trailing spaces, CR LF, odd code points, special and user-defined
# tokens written in the text.
VARIED_TEXTS = [
    "你好，世界！这是一个测试。日本語のテキストも。",
    "emoji 😀🎉👍🏽 and 🇫🇷 flags",
    "def f(x):\n\tif x  >  0:\n        return    x ** 2\n\n\n   end  ",
    "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\n",
    "  leading spaces and trailing   ",
    "\n\n\nnewlines\r\n\r\ncrlf",
    "a\u00a0b\u200bc \x01\x7f \u00ff",
    "<table><tr><td>x</td></tr></table> <unused3> <mask>",
]


@pytest.mark.parametrize("model", vocab_models(), ids=str)
def test_tokenize_matches_llamacpp(model, zili_ready):
    common.skip_if_absent(model)
    llm = llama(model.path)
    texts = list(common.PROMPTS) + [open(PPL_TEXT, encoding="utf-8").read()]
    if model.name == "smollm2":
        texts.append("<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n")
    if model.name == "gemma3-270m":
        texts += VARIED_TEXTS
    bad = 0
    for t in texts:
        z = common.zili_tokenize(model.path, t)
        ref = llm.tokenize(t.encode(), add_bos=True, special=True)
        ok = z == ref
        bad += not ok
        print(f"{model.name}: {len(ref)} tokens {'match' if ok else 'DIFFER'}: {t[:40]!r}")
        if not ok:
            i = next((i for i, (a, b) in enumerate(zip(z, ref)) if a != b), min(len(z), len(ref)))
            print(f"  first difference at {i}: zili {z[i:i + 8]} llama.cpp {ref[i:i + 8]}")
    assert bad == 0


@pytest.mark.parametrize("prompt", range(len(common.PROMPTS)), ids=lambda i: f"p{i}")
@pytest.mark.parametrize("model", common.llamacpp_models(), ids=str)
def test_greedy_matches_llamacpp(model, prompt, zili_ready):
    common.skip_if_absent(model)
    text = common.PROMPTS[prompt]
    ids = common.zili_tokenize(model.path, text)
    llm = llama(model.path)
    ref, rows = llama_greedy(llm, ids, N_PREDICT)
    got = common.parse_ids(common.zili("run", "-m", model.path, "-p", text, "-n", str(N_PREDICT), "--temp", "0",
                                       "--ids", "-t", str(common.THREADS), "--ctx", "512"))
    k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    note = ""
    if got != ref and k < len(rows):
        # How close a call it was for llama.cpp: its logit for zili's choice (or for EOG, if zili stopped) against
        # its own best, relative to the largest |logit|. Tiny: a near-tie flipped by rounding; large: a real bug.
        row = rows[k]
        alt = got[k] if k < len(got) else None
        margin = (row.max() - row[alt]) / np.abs(row).max() if alt is not None else float("nan")
        note = (f" (zili {got[k:k + 6]}..., llama.cpp {ref[k:k + 6]}...; llama.cpp's margin against zili's token "
                f"{margin:.3%} of max|logit|)")
    print(f"{model.name} p{prompt}: tokens matched {k}/{len(ref)}{note}")
    assert got == ref
    if model.moe:  # the random mixtures of experts are seeded to talk, not to repeat one token (common.MOE_MODELS)
        assert len(set(ref)) >= 4, f"degenerate greedy text: {len(set(ref))} distinct tokens in {len(ref)}"


BATCH_LENGTHS = (3, 40, 130)


def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and flag in line.split() for line in f)
    except OSError:
        return False


@pytest.mark.parametrize("model", common.llamacpp_models(), ids=str)
def test_batch_logits_identical_to_llamacpp(model, zili_ready, tmp_path):
    """Every logit of a prompt batch, bit for bit: random ids (seeded) in one batch of 3 tokens (llama.cpp's
    multi-token float order) and one of 40 (its tiled K-quant matmul too), each from an empty cache. Greedy
    agreement only shows that the argmax survives; this shows the arithmetic is the same."""
    common.skip_if_absent(model)
    if model.wtype == "bf16" and not _cpu_has("avx512_bf16"):
        # zili mirrors llama.cpp's BF16 dots where it uses AVX512-BF16 (quant_bf16.c); its AVX-512F and AVX2 BF16
        # orders are not mirrored, so there the logits are close (greedy agrees) but not identical
        pytest.skip("this CPU has no AVX512-BF16: llama.cpp's BF16 order here is not mirrored bit for bit")
    # mixtures of experts also on 1 token (a decode step: every expert's rows by vec_dot)
    check_batch_logits(model, tmp_path, llama(model.path, logits_all=True), ((1,) if model.moe else ()) + BATCH_LENGTHS)


def check_batch_logits(model, tmp_path, llm, lengths) -> None:
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(11)
    out = tmp_path / "logits.f32"
    for n in lengths:
        ids = rng.integers(min(300, n_vocab - 1), n_vocab, n).tolist()
        llm.reset()
        llm.eval(ids)
        ref = np.asarray(llm.scores[:n], dtype=np.float32)
        common.zili("logits", "-m", model.path, "--token-ids", " ".join(map(str, ids)), "-o", str(out),
                    "-t", str(common.THREADS))
        z = np.fromfile(out, dtype="<f4")
        assert z.size == n * n_vocab, f"logits file has {z.size} floats, expected {n} x {n_vocab}"
        e = np.abs(z.reshape(n, n_vocab).astype(np.float64) - ref).max(axis=1)
        first = int(np.argmax(e > 0)) if (e > 0).any() else None
        print(f"{model.name} batch of {n}: first differing position {first}, max diff {e.max():.4g}, "
              f"max|logit| {np.abs(ref).max():.4g}")
        assert first is None, f"logits differ from position {first} (ids {ids[:first + 1]})"


def repacked_models() -> list[common.TestModel]:
    """The models whose repacked matrices zili mirrors: Q4_0, and the K-quant mixes with Q4_K but no Q2_K (which
    llama.cpp also repacks on AVX-512, in an order zili does not mirror). Not the mixtures of experts: llama.cpp
    repacks their 3-D Q4_K expert tensors too (its repacked MUL_MAT_ID), zili keeps them in the file's layout."""
    return [m for m in common.llamacpp_models() if m.wtype in ("q4_0", "q3_k_m", "q4_k_m") and not m.moe]


def skip_unless_repacking() -> None:
    if not common.zili_repacks():
        pytest.skip("zili repacks Q4_0 / Q4_K only with its x86 kernel sets from avx2 up (as llama.cpp, on AVX2 CPUs)")


@pytest.mark.parametrize("model", repacked_models(), ids=str)
def test_repacked_batch_logits_identical_to_llamacpp(model, zili_ready, tmp_path):
    """llama.cpp's repacked Q4_0 / Q4_K kernels (gemv for 1 token and a batch's last n % 4, gemm for the others)
    against zili's X16 layout: every logit of 1, 3, 40, 43 and 130 tokens bit for bit."""
    common.skip_if_absent(model)
    skip_unless_repacking()
    check_batch_logits(model, tmp_path, llama(model.path, logits_all=True, repack=True), (1, 3, 40, 43, 130))


@pytest.mark.parametrize("prompt", range(len(common.PROMPTS)), ids=lambda i: f"p{i}")
@pytest.mark.parametrize("model", repacked_models(), ids=str)
def test_repacked_greedy_matches_llamacpp(model, prompt, zili_ready):
    common.skip_if_absent(model)
    skip_unless_repacking()
    text = common.PROMPTS[prompt]
    ids = common.zili_tokenize(model.path, text)
    ref, _ = llama_greedy(llama(model.path, repack=True), ids, N_PREDICT)
    got = common.parse_ids(common.zili("run", "-m", model.path, "-p", text, "-n", str(N_PREDICT), "--temp", "0",
                                       "--ids", "-t", str(common.THREADS), "--ctx", "512"))
    k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    print(f"{model.name} p{prompt} repacked: tokens matched {k}/{len(ref)}")
    assert got == ref


@pytest.mark.parametrize("model", [common.smollm2(), common.gemma3_270m()], ids=str)
def test_perplexity_matches_llamacpp(model, zili_ready):
    common.skip_if_absent(model)
    llm = llama(model.path, logits_all=True)
    with open(PPL_TEXT, "rb") as f:
        ref = llama_perplexity(llm, f.read(), PPL_CTX)
    out = common.zili("perplexity", "-m", model.path, "-f", PPL_TEXT, "-c", str(PPL_CTX), "-b", str(PPL_CTX),
                      "-t", str(common.THREADS))
    m = re.search(r"PPL = ([0-9.]+)\s*$", out)
    assert m, f"no 'PPL = ' last line in zili's output: {out[-300:]!r}"
    got = float(m.group(1))
    delta = (got - ref) / ref
    print(f"perplexity {model.name} ctx {PPL_CTX}: zili {got:.4f}, llama.cpp {ref:.4f}, delta {delta:+.3%}")
    assert abs(delta) < 0.01
