"""test_embed_ref.py - zili's embeddings (`zili embed`) against llama.cpp's (llama-cpp-python's Llama.embed with
the same pooling) on random models from tools/gen_gguf.py: bert encoders (a small one, and BGE-small's shape) and
decoder embedding models (qwen3 with last-token pooling as Qwen3-Embedding, llama with mean pooling).

Each input's vector must have a cosine similarity of at least 0.9999 with llama.cpp's; inputs from one token (two
for bert: [CLS] [SEP] of the empty text) to about 100. The arithmetic is not mirrored bit for bit (bert.c's
attention is a plain float softmax), so the bound is on the cosine, not on the bits. A vector must also be the same,
bit for bit, whether its input is embedded alone or among 63 others.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import common

# The BGE WordPiece vocabulary: tests/data/vocab when it is there, else the shared data (../shared/data/vocab).
BGE_VOCAB = next((p for p in (os.path.join(common.DATA, "vocab", "ggml-vocab-bert-bge.gguf"),
                              os.path.join(common.ROOT, "..", "shared", "data", "vocab", "ggml-vocab-bert-bge.gguf"))
                  if os.path.exists(p)), os.path.join(common.DATA, "vocab", "ggml-vocab-bert-bge.gguf"))
COS_MIN = 0.9999

# name, gen_gguf.py arguments, vocabulary
MODELS = {
    "bert-small-f32": (("--arch", "bert", "--preset", "tiny", "--n-head-kv", "8", "--n-layer", "2", "--ctx", "512",
                        "--type", "f32", "--seed", "41"), BGE_VOCAB),
    "bert-small-q8_0": (("--arch", "bert", "--preset", "tiny", "--n-head-kv", "8", "--n-layer", "2", "--ctx", "512",
                         "--type", "q8_0", "--seed", "42"), BGE_VOCAB),
    "bge-small-f32": (("--arch", "bert", "--preset", "bge-small", "--type", "f32", "--seed", "43"), BGE_VOCAB),
    "qwen3-embed-f32": (("--arch", "qwen3", "--preset", "tiny", "--n-layer", "2", "--type", "f32", "--pooling",
                         "last", "--seed", "44"), common.SMOLLM2),
    "qwen3-embed-q8_0": (("--arch", "qwen3", "--preset", "tiny", "--type", "q8_0", "--pooling", "last", "--seed",
                          "45"), common.SMOLLM2),
    "llama-q8_0": (("--arch", "llama", "--preset", "tiny", "--n-layer", "2", "--type", "q8_0", "--seed", "46"),
                   common.SMOLLM2),
}

LONG = ("Retrieval systems embed every passage of a corpus once and each query at search time; the nearest "
        "passages by cosine similarity are handed to the reader. ") * 3
TEXTS = ["x", "hello world", "Ünïcödé tëxt — 東京 and emoji 🙂 too", LONG]

POOL_ID = {"mean": 1, "cls": 2, "last": 3}


def model_path(name: str) -> str:
    path = os.path.join(common._random_dir(), f"embed-{name}.gguf")
    if not os.path.exists(path):
        args, vocab = MODELS[name]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        subprocess.run([sys.executable, common.GEN, *args, "--vocab-from", vocab, "-o", tmp], check=True,
                       stderr=subprocess.DEVNULL)
        os.replace(tmp, path)
    return path


def zili_embed(path: str, texts: list[str], *args: str) -> tuple[np.ndarray, list[int]]:
    if len(texts) == 1:
        out = common.zili("embed", "-m", path, "-p", texts[0], "--json", "-t", str(common.THREADS), *args)
    else:
        assert all(t and "\n" not in t for t in texts)
        out = common.zili("embed", "-m", path, "-f", "/dev/stdin", "--json", "-t", str(common.THREADS), *args,
                          stdin="\n".join(texts) + "\n")
    j = json.loads(out)
    return np.array(j["data"], dtype=np.float64), j["n_tokens"]


_LLAMAS: dict = {}


def llama_embed(path: str, pooling: str, texts: list[str], normalize: bool = True) -> tuple[np.ndarray, list[int]]:
    import llama_cpp
    key = (path, pooling)
    if key not in _LLAMAS:
        _LLAMAS.clear()  # one model at a time
        _LLAMAS[key] = llama_cpp.Llama(model_path=path, embedding=True, pooling_type=POOL_ID[pooling], n_ctx=512,
                                       n_batch=512, n_ubatch=512, n_threads=common.THREADS, verbose=False)
    llm = _LLAMAS[key]
    n_tok = [len(llm.tokenize(t.encode(), add_bos=True, special=False)) for t in texts]
    return np.array(llm.embed(texts, normalize=normalize), dtype=np.float64), n_tok


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def check_against_llama(name: str, pooling: str, texts: list[str], *zargs: str) -> None:
    path = model_path(name)
    ref, ref_tok = llama_embed(path, pooling, texts)
    if len(texts) > 1 and texts[0] == "":
        z0, t0 = zili_embed(path, texts[:1], "--pooling", pooling, *zargs)  # -f skips empty lines
        z1, t1 = zili_embed(path, texts[1:], "--pooling", pooling, *zargs)
        z, z_tok = np.vstack([z0, z1]), t0 + t1
    else:
        z, z_tok = zili_embed(path, texts, "--pooling", pooling, *zargs)
    assert z_tok == ref_tok, f"token counts differ: zili {z_tok}, llama.cpp {ref_tok}"
    cos = cosines(z, ref)
    print(f"{name} {pooling}: tokens {z_tok} cosine min {cos.min():.9f}")
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert (cos >= COS_MIN).all(), f"{name} {pooling}: cosines {cos.tolist()} below {COS_MIN} (tokens {z_tok})"


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
# bert-small-q8_0 is not compared: gen_gguf.py writes token_types.weight in --type, and llama.cpp adds that row as it is
# (ggml binary_op: F32 + Q8_0 / F16 unsupported, an abort); converters keep it F32. zili reads any type. Not yet fixed in
# gen_gguf.py (it would rename every random model directory); the bert models compared are F32. The one below
# is used by zili's own batching test.
@pytest.mark.parametrize("name", ["bert-small-f32"])
def test_bert_small(name, pooling, zili_ready):
    check_against_llama(name, pooling, [""] + TEXTS)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_bge_small_shape(pooling, zili_ready):
    check_against_llama("bge-small-f32", pooling, [""] + TEXTS)


@pytest.mark.parametrize("name,pooling", [("qwen3-embed-f32", "last"), ("qwen3-embed-q8_0", "last"),
                                          ("qwen3-embed-f32", "mean"), ("llama-q8_0", "mean")])
def test_decoder(name, pooling, zili_ready):
    check_against_llama(name, pooling, TEXTS)


def test_file_pooling_is_used(zili_ready):
    """Without --pooling zili takes the file's pooling_type (last for this qwen3, mean for the bert), and says so."""
    for name, pooling in (("qwen3-embed-f32", "last"), ("bert-small-f32", "mean")):
        path = model_path(name)
        out = json.loads(common.zili("embed", "-m", path, "-p", TEXTS[1], "--json"))
        assert out["pooling"] == pooling
        ref, _ = llama_embed(path, pooling, TEXTS[1:2])
        assert cosines(np.array(out["data"]), ref)[0] >= COS_MIN


def test_raw_pooled_states(zili_ready):
    """--no-normalize: the pooled hidden states themselves, as llama.cpp's embed(normalize=False)."""
    path = model_path("bert-small-f32")
    z, _ = zili_embed(path, TEXTS, "--pooling", "mean", "--no-normalize")
    ref, _ = llama_embed(path, "mean", TEXTS, normalize=False)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)
    assert (cosines(z, ref) >= COS_MIN).all()


def test_pooling_discriminates(zili_ready):
    """The bound means something: another pooling's vectors are far from these (so a wrong pooling would fail)."""
    path = model_path("bert-small-f32")
    z, _ = zili_embed(path, TEXTS[1:], "--pooling", "mean")
    ref, _ = llama_embed(path, "cls", TEXTS[1:])
    assert (cosines(z, ref) < 0.999).all()


@pytest.mark.parametrize("name", ["bert-small-q8_0", "qwen3-embed-q8_0"])
def test_alone_or_batched_with_63(name, zili_ready):
    """An input's vector is the same bit for bit alone and among 63 others of other lengths."""
    path = model_path(name)
    rng = np.random.default_rng(7)
    words = LONG.split()
    others = [" ".join(words[: int(rng.integers(1, len(words)))]) for _ in range(63)]
    target = TEXTS[2]
    alone, _ = zili_embed(path, [target], "-c", "512", "-b", "512")
    batch, _ = zili_embed(path, others[:30] + [target] + others[30:], "-c", "512", "-b", "512")
    assert np.array_equal(alone[0], batch[30]), "the vector changed when batched"


def test_bad_options(zili_ready):
    path = model_path("bert-small-f32")
    for args, want in ((("--pooling", "max"), "--pooling"), (("-c", "100000"), "out of range"),
                       (("-c", "4", "-p", LONG), "more than the limit")):
        p = subprocess.run([common.zili_bin(), "embed", "-m", path, *(a for a in args),
                            *(() if "-p" in args else ("-p", "x"))], capture_output=True, text=True)
        assert p.returncode != 0 and want in p.stderr, (args, p.returncode, p.stderr)
    p = subprocess.run([common.zili_bin(), "embed", "-m", common.GEMMA3 if os.path.exists(common.GEMMA3) else path,
                        "-p", "x", "--bogus"], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown option" in p.stderr
