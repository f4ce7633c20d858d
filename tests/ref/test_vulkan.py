"""test_vulkan.py - whole models on the Vulkan backend (src/backend/vulkan/, through model/forward_dev.c). In CI the
device is Mesa's lavapipe, which runs Vulkan compute on the CPU.

What "right" means here. The device dequantizes weights to float and sums in float in its own order: no 8-bit
activation quantization (the CPU path quantizes activations to Q8 blocks as llama.cpp does, which puts its logits
2-5% of max|logit| away from our float64 reference on the quantized models), an online softmax, F16 K and V. So the
device is held to our float reference (float_ref.py, dequantized weights in float64) with bounds tighter than the
CPU path's, and to the CPU path only where the two should agree:
  * logits against the float reference on SmolLM2 and the random models of every weight type the device runs:
    at most VK_REL of max|logit| (measured: 0.02-0.08% on every model, SmolLM2 0.06%, where the CPU path is at
    1.7-5.2%); top-1 as test_float_ref.py (where the device's argmax differs, the reference rates its choice within
    VK_DEFICIT of its best; at least 95% agree or one position differs);
  * --gpu-layers 0 and half (the first layers then run through the same interface on the CPU backend, activations
    handed to the device between layers) against the float reference with test_float_ref.py's CPU bounds for the
    type; on an F32 model, where the CPU quantizes nothing, 0, half and all agree within VK_REL of each other;
  * perplexity of SmolLM2 over the first PPL_CHARS characters of tests/data/ppl.txt at context 64: within 1% of the
    CPU path's (the bound test_llamacpp.py holds zili to against llama.cpp). Measured: -0.87% (Vulkan 27.29, CPU
    27.53); the CPU path with F32 K and V (--kv-f32) gives 27.35, 0.23% from the device: most of the gap is the
    CPU path's own F16 rounding of Q and the softmax weights (llama.cpp's). The issue's 0.5% is not met against the
    default CPU path for that reason; the float-reference bound above is the stronger check. Random models'
    perplexities (near e^100) say nothing at this scale and are not compared;
  * greedy 32 tokens against the CPU path on the test prompts: where the two first differ, the float reference
    must rate the device's token its best or within VK_DEFICIT of it, and at least half the cases must be
    identical. The issue's 90% identical is not met against the CPU path: 9 of 12 default cases here (spm-q4_0
    twice, mistral-swa once, first differing at tokens 6-14), each where the CPU path, not the device, leaves
    the reference's choice;
  * refusals: a weight type the device lacks (Q2_K, Q3_K) and more layers than fit its memory: one line, exit 1.

Lavapipe is slow (about 0.1 G multiply-adds per second on one core: a SmolLM2 token takes most of a second), so by
default a subset runs: QUICK random models (one per architecture and weight type), two prompts each for greedy;
ZILI_VK_FULL=1 runs every random model, every prompt, Gemma 3 270M's perplexity and --gpu-layers on SmolLM2's
perplexity, for a machine with a real GPU or time to spare.

Without a Vulkan device (no libvulkan, no driver, or a build without glslc) every test is skipped, saying why.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

import numpy as np  # noqa: E402

from float_ref import FloatModel  # noqa: E402
from test_float_ref import DEFICIT, MIN_TOP1, REL_BOUND, compare  # noqa: E402

PPL_TEXT = os.path.join(common.ROOT, "tests", "data", "ppl.txt")
PPL_CHARS = 1200
PPL_CTX = 64
FULL = os.environ.get("ZILI_VK_FULL") == "1"
# one random model per (architecture, weight type) by default
QUICK = {"bpe-f32", "bpe-f16", "bpe-bf16", "bpe-q4_0", "bpe-q4_1", "bpe-q8_0", "qwen2-q8_0", "qwen3-f16",
         "qwen2-q4_k_m", "qwen2-q5_k_m", "qwen2-q6_k", "gemma3-q8_0", "gemma3-q5_0", "gemma3-q4_k_m", "mistral-swa",
         "llama-yarn"}
# greedy (16 s a case on lavapipe): one model per architecture, two prompts
GREEDY_QUICK = {"bpe-q8_0", "spm-q4_0", "qwen2-q4_k_m", "qwen3-f16", "gemma3-q4_k_m", "mistral-swa"}
N_PREDICT = 32
VK_TYPES = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q8_0", "q4_k_m", "q5_k_m", "q6_k"}
# Worst measured 0.078% of max|logit| (qwen3-f16; F16 K and V are the device's only rounding): about 3x that.
VK_REL = 0.0025
VK_DEFICIT = 0.0015
DEV = "vulkan"


@functools.lru_cache(maxsize=1)
def vulkan_line() -> str:
    out = subprocess.run([common.zili_bin(), "devices"], capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():
        if line.startswith("vulkan:0"):
            return line
    return "no Vulkan device: " + " | ".join(l for l in out.splitlines() if l.startswith("vulkan"))


def need_vulkan():
    line = vulkan_line()
    if not line.startswith("vulkan:0"):
        pytest.skip(line)


def random_models() -> list[common.TestModel]:
    return [m for m in common.random_models() if m.wtype in VK_TYPES and (FULL or m.name in QUICK) and not m.mla]


def by_name(name: str) -> common.TestModel:
    return next(m for m in common.random_models() if m.name == name)


@functools.lru_cache(maxsize=1)
def ppl_text() -> str:
    path = os.path.join(common.MODELS, "vk-ppl.txt")
    with open(PPL_TEXT, encoding="utf-8") as f:
        text = f.read()[:PPL_CHARS]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def perplexity(model: str, *extra: str) -> float:
    out = common.zili("perplexity", "-m", model, "-f", ppl_text(), "-c", str(PPL_CTX), "-b", str(PPL_CTX),
                      "-t", str(common.THREADS), *extra, timeout=1800)
    m = re.search(r"PPL = ([0-9.]+)\s*$", out)
    assert m, f"no 'PPL = ' last line in zili's output: {out[-300:]!r}"
    return float(m.group(1))


def greedy(model: str, text: str, *extra: str) -> list[int]:
    return common.parse_ids(common.zili("run", "-m", model, "-p", text, "-n", str(N_PREDICT), "--temp", "0", "--ids",
                                        "-t", str(common.THREADS), "--ctx", "256", *extra))


@functools.lru_cache(maxsize=2)
def float_model(path: str) -> FloatModel:
    return FloatModel(path)


def logits(model: str, text: str, out, *extra: str) -> tuple[list[int], np.ndarray]:
    ids = common.parse_ids(common.zili("logits", "-m", model, "-p", text, "-o", str(out), "-t", str(common.THREADS),
                                       *extra))
    n_vocab = float_model(model).n_vocab
    z = np.fromfile(out, dtype="<f4")
    assert z.size == len(ids) * n_vocab, f"logits file has {z.size} floats, expected {len(ids)} x {n_vocab}"
    z = z.reshape(len(ids), n_vocab).astype(np.float64)
    assert np.isfinite(z).all(), "non-finite logits"
    return ids, z


def n_layers(model: str) -> int:
    return int(re.search(r"layers:\s+(\d+)", common.zili("info", "-m", model)).group(1))


def test_device_listed(zili_ready):
    need_vulkan()
    line = vulkan_line()
    print(line)
    assert "MiB" in line or "GiB" in line


@pytest.mark.parametrize("prompt", range(3), ids=lambda i: f"p{i}")
@pytest.mark.parametrize("model", [common.smollm2()] + random_models(), ids=str)
def test_logits_vs_float_reference(model, prompt, zili_ready, tmp_path):
    need_vulkan()
    if prompt == 2 and not FULL and model.name != "smollm2":
        pytest.skip("third prompt of the random models with ZILI_VK_FULL=1 only")
    ids, z = logits(model.path, common.PROMPTS[prompt], tmp_path / "l.f32", "--device", DEV)
    c = compare(z, float_model(model.path).forward(ids))
    print(f"{model.name} p{prompt} vulkan ({len(ids)} tokens): max rel err {c['max_rel']:.4%} (bound {VK_REL:.2%}), "
          f"top-1 {c['top1']:.0%} [{c['agree']}], worst choice deficit {c['deficit']:.3%}")
    assert c["max_rel"] <= VK_REL
    assert c["deficit"] <= VK_DEFICIT
    assert c["top1"] >= 0.95 or c["n_differ"] <= 1


@pytest.mark.parametrize("name", ["bpe-f32", "qwen2-q8_0", "gemma3-q4_k_m"])
def test_gpu_layers(name, zili_ready, tmp_path):
    """The CPU backend's layers quantize activations as the CPU path does, so each split is held to the CPU
    path's bounds for its type; on F32 weights nothing is quantized and the splits agree with each other."""
    need_vulkan()
    model = by_name(name)
    n = n_layers(model.path)
    text = common.PROMPTS[1]
    got = {}
    ref = None
    for k in (0, n // 2, n):
        ids, z = logits(model.path, text, tmp_path / f"l{k}.f32", "--device", DEV, "--gpu-layers", str(k))
        if ref is None:  # the same prompt each time: one reference forward pass
            ref = float_model(model.path).forward(ids)
        c = compare(z, ref)
        rel = VK_REL if k == n else REL_BOUND[model.wtype]
        print(f"{name} --gpu-layers {k}/{n}: max rel err {c['max_rel']:.4%} (bound {rel:.2%}), top-1 {c['top1']:.0%} "
              f"[{c['agree']}], deficit {c['deficit']:.3%}")
        assert c["max_rel"] <= rel
        assert c["deficit"] <= (VK_DEFICIT if k == n else DEFICIT[model.wtype])
        assert c["top1"] >= MIN_TOP1[model.wtype] or c["n_differ"] <= 1
        got[k] = z
    if model.wtype == "f32":
        scale = float(np.abs(got[n]).max())
        for k in (0, n // 2):
            d = float(np.abs(got[k] - got[n]).max()) / scale
            print(f"{name} --gpu-layers {k} vs {n}: {d:.4%} of max|logit|")
            assert d <= VK_REL


def test_perplexity_vulkan_vs_cpu(zili_ready):
    need_vulkan()
    models = [common.smollm2()] + ([common.gemma3_270m()] if FULL else [])
    for model in models:
        common.skip_if_absent(model)
        cpu, dev = perplexity(model.path), perplexity(model.path, "--device", DEV)
        delta = (dev - cpu) / cpu
        print(f"perplexity {model.name} ({PPL_CHARS} chars, ctx {PPL_CTX}): vulkan {dev:.6g}, cpu {cpu:.6g}, "
              f"delta {delta:+.4%}")
        assert abs(delta) <= 0.01


def test_gpu_layers_perplexity(zili_ready):
    need_vulkan()
    if not FULL:
        pytest.skip("SmolLM2's perplexity at three splits (10 minutes on lavapipe) with ZILI_VK_FULL=1 only; "
                    "test_gpu_layers checks the splits' logits")
    model = common.smollm2()
    n = n_layers(model.path)
    ppl = {k: perplexity(model.path, "--device", DEV, "--gpu-layers", str(k)) for k in (0, n // 2, n)}
    print("perplexity by --gpu-layers: " + ", ".join(f"{k}: {v:.4f}" for k, v in ppl.items()))
    lo, hi = min(ppl.values()), max(ppl.values())
    assert (hi - lo) / lo <= 0.02


def test_greedy_vulkan_vs_cpu(zili_ready, tmp_path):
    """Where the two first differ, the float reference judges: the device's token must be its best there or within
    VK_DEFICIT of it (the CPU path, 2-5% off the reference, is the one that strays; it is not held to that)."""
    need_vulkan()
    cases = same = 0
    notes = []
    models = ([common.smollm2()] + random_models()) if FULL else [m for m in common.random_models()
                                                                 if m.name in GREEDY_QUICK]
    prompts = common.PROMPTS if FULL else common.PROMPTS[1:3]
    for model in models:
        for text in prompts:
            cases += 1
            want, got = greedy(model.path, text), greedy(model.path, text, "--device", DEV)
            if got == want:
                same += 1
                continue
            k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            if k >= min(len(got), len(want)):
                notes.append((model.name, text, k, 0.0, 0.0))  # one ended earlier: the same tokens up to there
                continue
            prompt_ids, _ = logits(model.path, text, tmp_path / "p.f32")
            r = float_model(model.path).forward(prompt_ids + got[:k])
            scale = float(np.abs(r).max())
            best = float(r[-1].max())
            notes.append((model.name, text, k, (best - r[-1][got[k]]) / scale, (best - r[-1][want[k]]) / scale))
    for name, text, k, dev, cpu in notes:
        print(f"  {name} {text[:20]!r}: first differs at token {k} of {N_PREDICT}; the float reference rates the "
              f"device's token {dev:.3%} and the CPU path's {cpu:.3%} of max|logit| below its best")
    print(f"greedy {N_PREDICT} tokens, vulkan vs cpu: {same}/{cases} identical ({same / max(cases, 1):.1%})")
    assert cases > 0
    assert same >= 0.5 * cases
    for name, text, k, dev, cpu in notes:
        assert dev <= VK_DEFICIT, f"{name} {text[:20]!r} token {k}: the device's choice is {dev:.3%} below the best"


def test_bench_on_device(zili_ready):
    """zili bench --device: one sequence (pp/tg) and batched decode through the serving engine (-s)."""
    need_vulkan()
    model = by_name("bpe-q8_0")
    r = json.loads(common.zili("bench", "-m", model.path, "-p", "16", "-n", "4", "-r", "1", "--json", "--device", DEV))
    print(r)
    assert r["device"] == DEV
    assert [x["test"] for x in r["results"]] == ["pp16", "tg4"]
    assert all(x["tokens_per_s"] > 0 for x in r["results"])
    out = common.zili("bench", "-m", model.path, "-p", "8", "-n", "3", "-r", "1", "-s", "1,2", "--device", DEV)
    print(out)
    assert re.search(r"^\|\s+2 \|", out, re.M), out


def refused(*args: str) -> str:
    r = subprocess.run([common.zili_bin(), *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr[-400:]!r}"
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"want one line, got {lines!r}"
    return lines[0]


def test_refuses_unsupported_type(zili_ready):
    need_vulkan()
    model = next((m for m in common.random_models() if m.wtype in ("q2_k", "q3_k_m")), None)
    if model is None or not os.path.exists(model.path):
        pytest.skip("no random Q2_K / Q3_K model generated")
    line = refused("run", "-m", model.path, "-p", "hi", "-n", "2", "--device", DEV)
    print(line)
    assert "cannot run" in line and ("q2_K" in line or "q3_K" in line)


def test_refuses_too_many_layers(zili_ready):
    need_vulkan()
    model = common.smollm2()
    common.skip_if_absent(model)
    env_old = os.environ.get("ZILI_DEVICE_MEMORY_MB")
    os.environ["ZILI_DEVICE_MEMORY_MB"] = "40"  # as if the device had 40 MiB
    try:
        line = refused("run", "-m", model.path, "-p", "hi", "-n", "2", "--device", DEV, "--gpu-layers", "30")
        print(line)
        assert "do not fit" in line
        # without --gpu-layers, as many as fit, with a note, and the run goes on
        out = common.zili("run", "-m", model.path, "-p", "hi", "-n", "2", "--temp", "0", "--device", DEV)
        assert out is not None
    finally:
        if env_old is None:
            del os.environ["ZILI_DEVICE_MEMORY_MB"]
        else:
            os.environ["ZILI_DEVICE_MEMORY_MB"] = env_old
