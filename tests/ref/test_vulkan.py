"""test_vulkan.py - whole models on the Vulkan backend (src/backend/vulkan/, through model/forward_dev.c) against
zili's CPU path (itself bit-identical to llama.cpp, test_llamacpp.py). In CI the device is Mesa's lavapipe, which
runs Vulkan compute on the CPU.

The device dequantizes weights to float and sums in float in its own order (no 8-bit activation quantization, an
online softmax), so it is held to tolerances, not bits:
  * perplexity over tests/data/ppl.txt at context 128 within 0.5% of the CPU path's, on SmolLM2, Gemma 3 270M and
    the random models of every weight type the device runs (their perplexities are near e^100: 0.5% of that is a
    mean log-likelihood within 0.005 nats);
  * greedy 32 tokens on the test prompts identical on at least 90% of the (model, prompt) cases; where one differs,
    the first differing token is printed;
  * --gpu-layers 0, half and all give perplexities within 0.5% of each other (the CPU layers then run through the
    same device interface on the CPU backend);
  * refusals: a model with a weight type the device lacks (Q2_K, Q3_K), and more layers than fit its memory: one
    line, exit status 1.

Lavapipe is slow (about 0.1 G multiply-adds per second here: a SmolLM2 token takes seconds), so by default the
tests run on a text of 1,200 characters at context 64, on SmolLM2 (perplexity only) and one random model per
(architecture, weight type) pair; ZILI_VK_FULL=1 adds Gemma 3 270M, SmolLM2's greedy cases and every random
model, for a machine with a real GPU or time to spare.

Without a Vulkan device (no libvulkan, no driver, or a build without glslc) every test is skipped, saying why.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

PPL_TEXT = os.path.join(common.ROOT, "tests", "data", "ppl.txt")
PPL_CHARS = 1200
PPL_CTX = 64
FULL = os.environ.get("ZILI_VK_FULL") == "1"
# one random model per (architecture, weight type) by default
QUICK = {"bpe-f32", "bpe-f16", "bpe-bf16", "bpe-q4_0", "bpe-q4_1", "bpe-q8_0", "qwen2-q8_0", "qwen3-f16",
         "qwen2-q4_k_m", "qwen2-q5_k_m", "qwen2-q6_k", "gemma3-q8_0", "gemma3-q5_0", "gemma3-q4_k_m"}
N_PREDICT = 32
VK_TYPES = {"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q8_0", "q4_k_m", "q5_k_m", "q6_k"}
DEV = "vulkan"

# Not yet run end to end (written at the end of a session): opt in with ZILI_VK_TESTS=1; skipped, never passed, else.
if os.environ.get("ZILI_VK_TESTS") != "1":
    pytest.skip("whole-model Vulkan tests not yet validated: set ZILI_VK_TESTS=1", allow_module_level=True)


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
    return [m for m in common.random_models() if m.wtype in VK_TYPES and (FULL or m.name in QUICK)]


def models() -> list[common.TestModel]:
    return [common.smollm2()] + ([common.gemma3_270m()] if FULL else []) + random_models()


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
                      "-t", str(common.THREADS), *extra)
    m = re.search(r"PPL = ([0-9.]+)\s*$", out)
    assert m, f"no 'PPL = ' last line in zili's output: {out[-300:]!r}"
    return float(m.group(1))


def greedy(model: str, text: str, *extra: str) -> list[int]:
    return common.parse_ids(common.zili("run", "-m", model, "-p", text, "-n", str(N_PREDICT), "--temp", "0", "--ids",
                                        "-t", str(common.THREADS), "--ctx", "256", *extra))


def test_device_listed(zili_ready):
    need_vulkan()
    line = vulkan_line()
    print(line)
    assert "MiB" in line or "GiB" in line


@pytest.mark.parametrize("model", models(), ids=str)
def test_perplexity_vulkan_vs_cpu(model, zili_ready):
    need_vulkan()
    common.skip_if_absent(model)
    cpu, dev = perplexity(model.path), perplexity(model.path, "--device", DEV)
    delta = (dev - cpu) / cpu
    print(f"perplexity {model.name} ctx {PPL_CTX}: vulkan {dev:.6g}, cpu {cpu:.6g}, delta {delta:+.4%}")
    assert abs(delta) <= 0.005


def test_greedy_vulkan_vs_cpu(zili_ready):
    need_vulkan()
    cases = same = 0
    notes = []
    for model in (models() if FULL else random_models()):
        if not os.path.exists(model.path):
            continue
        for p, text in enumerate(common.PROMPTS):
            cases += 1
            want, got = greedy(model.path, text), greedy(model.path, text, "--device", DEV)
            if got == want:
                same += 1
                continue
            k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            notes.append(f"{model.name} p{p}: first differs at token {k} of {N_PREDICT}")
    for n in notes:
        print("  " + n)
    print(f"greedy {N_PREDICT} tokens, vulkan vs cpu: {same}/{cases} identical ({same / max(cases, 1):.1%})")
    assert cases > 0
    assert same >= 0.9 * cases


def test_gpu_layers_same_perplexity(zili_ready):
    need_vulkan()
    model = common.smollm2() if FULL else next(m for m in common.random_models() if m.name == "qwen2-q8_0")
    common.skip_if_absent(model)
    n_layer = int(re.search(r"layers:\s+(\d+)", common.zili("info", "-m", model.path)).group(1))
    ppl = {n: perplexity(model.path, "--device", DEV, "--gpu-layers", str(n)) for n in (0, n_layer // 2, n_layer)}
    print("perplexity by --gpu-layers: " + ", ".join(f"{n}: {v:.4f}" for n, v in ppl.items()))
    lo, hi = min(ppl.values()), max(ppl.values())
    assert (hi - lo) / lo <= 0.005


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
