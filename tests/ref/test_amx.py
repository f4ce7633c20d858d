"""test_amx.py - prompts on the AMX tiles (src/backend/cpu/amx.h) against zili's exact path (ZILI_EXACT=1, llama.cpp's
arithmetic, itself checked bit for bit against llama.cpp in test_llamacpp.py).

The tiles add the same products in another order (and the bf16 path rounds weights and activations to bf16), so
they are held to tolerances instead of bits. The scale of "close": llama.cpp's own two orders for the same weights
(repacked and not, both exact in zili) differ on these texts by 0.46% in Gemma 3 270M's perplexity and give
identical greedy text in 22 of 36 cases of the models that repack; a one-ulp difference upstream of an 8-bit
activation quantization flips roundings that grow through the layers.
  * perplexity of SmolLM2 and Gemma 3 270M over tests/data/ppl.txt at context 128: within 1% of the exact path's
    (the bound test_llamacpp.py holds zili to against llama.cpp). The random models' perplexities (around e^100)
    say nothing at this scale; their logits are checked against the float reference instead;
  * greedy 64 tokens on the four test prompts of the real models and of every random model the tiles take: the
    share identical to the exact path is printed; each case that differs must first differ at a near-tie, the
    exact path's margin against the tiles' token there (its top logit minus that token's, relative to max |logit|)
    at most NEAR_TIE, and at least half the cases must be identical;
  * the logits against our float reference are checked with the exact path's bounds in test_float_ref.py (its
    "amx" cases).

Where the CPU has no AMX (or the kernel refuses the tile permission) every test here is skipped, saying so.
"""
from __future__ import annotations

import functools
import os
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

PPL_TEXT = os.path.join(common.ROOT, "tests", "data", "ppl.txt")
PPL_CTX = 128
N_PREDICT = 64
# Each path is held to test_float_ref.py's DEFICIT against the float reference (3% of max|logit| for the 8-bit
# types; the random K-quant models' exact-path logits are off by up to 3.9% of max|logit| there), so two correct
# paths may rate each other's choice up to twice that apart.
NEAR_TIE = 0.06
TILE_TYPES = {"q4_0", "q4_1", "q5_0", "q8_0", "q4_k_m", "q5_k_m", "q6_k", "q3_k_m", "f16", "bf16"}


@functools.lru_cache(maxsize=1)
def amx_on() -> bool:
    common.skip_if_absent(common.smollm2())
    out = common.zili("info", "-m", common.SMOLLM2)
    return "+amx" in out


def need_amx():
    if not amx_on():
        pytest.skip("no AMX tiles here (CPU without AMX-INT8/BF16, tile permission refused, or ZILI_CPU set): "
                    "`zili info` reports no +amx kernels")


def real_models() -> list[common.TestModel]:
    return [common.smollm2(), common.gemma3_270m()]


def tile_models() -> list[common.TestModel]:
    """The real models and the random ones with some weight type the tiles take (Q2_K / Q3_K weights of the K-quant
    mixes stay on the exact kernels; F32 models have nothing for the tiles)."""
    return [common.smollm2(), common.gemma3_270m()] + [m for m in common.random_models() if m.wtype in TILE_TYPES]


def run_env(exact: bool, args: list[str]) -> str:
    old = os.environ.get("ZILI_EXACT")
    os.environ["ZILI_EXACT"] = "1" if exact else "0"
    try:
        return common.zili(*args)
    finally:
        if old is None:
            del os.environ["ZILI_EXACT"]
        else:
            os.environ["ZILI_EXACT"] = old


def perplexity(model: str, exact: bool) -> float:
    out = run_env(exact, ["perplexity", "-m", model, "-f", PPL_TEXT, "-c", str(PPL_CTX), "-b", str(PPL_CTX),
                          "-t", str(common.THREADS)])
    m = re.search(r"PPL = ([0-9.]+)\s*$", out)
    assert m, f"no 'PPL = ' last line in zili's output: {out[-300:]!r}"
    return float(m.group(1))


@pytest.mark.parametrize("model", real_models(), ids=str)
def test_perplexity_close_to_exact(model, zili_ready):
    need_amx()
    common.skip_if_absent(model)
    exact, tiles = perplexity(model.path, True), perplexity(model.path, False)
    delta = (tiles - exact) / exact
    print(f"perplexity {model.name} ctx {PPL_CTX}: amx {tiles:.4f}, exact {exact:.4f}, delta {delta:+.4%}")
    assert abs(delta) <= 0.01


def greedy(model: str, text: str, exact: bool) -> list[int]:
    return common.parse_ids(run_env(exact, ["run", "-m", model, "-p", text, "-n", str(N_PREDICT), "--temp", "0",
                                            "--ids", "-t", str(common.THREADS), "--ctx", "512"]))


def exact_margin(model: str, ids: list[int], alt: int) -> tuple[float, float]:
    """The exact path's logits after ids: (its top logit - its logit for alt, top - second), both relative to
    max |logit|."""
    out = os.path.join(common.MODELS, "amx-margin.f32")
    run_env(True, ["logits", "-m", model, "--token-ids", " ".join(map(str, ids)), "-o", out,
                   "-t", str(common.THREADS)])
    z = np.fromfile(out, dtype="<f4")
    os.unlink(out)
    row = z.reshape(len(ids), -1)[-1].astype(np.float64)
    top2 = np.sort(row)[-2:]
    scale = np.abs(row).max()
    return (row.max() - row[alt]) / scale, (top2[1] - top2[0]) / scale


def test_greedy_mostly_identical(zili_ready):
    need_amx()
    cases = same = 0
    notes, far = [], []
    for model in tile_models():
        if not os.path.exists(model.path):
            continue
        for p, text in enumerate(common.PROMPTS):
            cases += 1
            want, got = greedy(model.path, text, True), greedy(model.path, text, False)
            if got == want:
                same += 1
                continue
            k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            prompt_ids = common.zili_tokenize(model.path, text)
            if k < len(got) and k < len(want):
                margin, gap = exact_margin(model.path, prompt_ids + want[:k], got[k])
                if margin > NEAR_TIE:
                    far.append(f"{model.name} p{p} at token {k}: margin {margin:.3%}")
                notes.append(f"{model.name} p{p}: first differs at token {k}: exact {want[k]}, amx {got[k]}; exact "
                             f"path's margin against the amx token {margin:.3%} of max|logit| (its top-2 gap "
                             f"{gap:.3%})")
            else:
                notes.append(f"{model.name} p{p}: one stops at token {k} (exact {len(want)}, amx {len(got)} tokens)")
    for n in notes:
        print("  " + n)
    print(f"greedy {N_PREDICT} tokens, amx vs exact: {same}/{cases} identical ({same / max(cases, 1):.1%})")
    assert cases > 0
    assert not far, f"divergences that are no near-tie (margin > {NEAR_TIE:.0%}): {far}"
    assert same >= 0.5 * cases
