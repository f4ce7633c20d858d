#!/usr/bin/env python3
"""Generate the quantization fixtures under tests/data/quant/ with gguf-py and numpy.

gguf-py's quantize/dequantize are an implementation of ggml's reference quantizers independent of ours, so
tests/unit/test_dtype.c can compare zili's kernels against them byte for byte.

Files (all little-endian, no headers):
  input.f32              NBLK*32 float32 values: edge-case blocks first (see make_input), then random ones
  <type>.q               gguf.quants.quantize(input, type) bytes, for q4_0 q4_1 q8_0 f16 bf16
  <type>.deq.f32         gguf.quants.dequantize(<type>.q, type) as float32
  f16_cases.f32          float32 values probing float -> half rounding (ties, subnormals, overflow edge)
  f16_cases.f16          numpy's float16 of each (uint16 bits)
  f16_all.fnv            FNV-1a 64 (hex) of the float32 bits of numpy's float32 value of every half 0..65535

Run from the repository root: python3 tests/data/gen_quant_fixtures.py
"""
import os

import numpy as np
from gguf.constants import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant")
QK = 32
NBLK = 41  # odd on purpose


def make_input(rng):
    blocks = []
    blocks.append(np.zeros(QK, np.float32))  # all zeros: d = 0
    b = rng.normal(0, 0.01, QK).astype(np.float32)
    b[7] = 1000.0  # one large value
    blocks.append(b)
    blocks.append(-np.abs(rng.normal(0, 1, QK)).astype(np.float32))  # all negative
    blocks.append(np.full(QK, 0.75, np.float32))  # constant: q4_1 d = 0
    b = rng.normal(0, 1, QK).astype(np.float32)
    b[3] = -9.0  # largest magnitude negative: q4_0 d > 0
    blocks.append(b)
    # q8_0 ties: amax 127 gives d = 1, so x*id = x exactly and .5 values sit on rounding ties
    b = np.array([127.0, 2.5, -3.5, 0.5, -0.5, 1.5, -126.5, 4.49] + list(rng.uniform(-127, 127, QK - 8)), np.float32)
    blocks.append(b)
    blocks.append(rng.normal(0, 1e-6, QK).astype(np.float32))  # tiny: fp16 subnormal scales
    blocks.append(rng.normal(0, 3e4, QK).astype(np.float32))  # large, still finite in fp16
    b = rng.normal(0, 1, QK).astype(np.float32)
    b[0] = b[1] = 5.0  # repeated maximum
    b[2] = -5.0  # same magnitude, opposite sign (q4_0 keeps the first)
    blocks.append(b)
    while len(blocks) < NBLK:
        scale = float(np.exp(rng.uniform(-6, 3)))
        blocks.append((rng.normal(0, 1, QK) * scale + rng.normal(0, 0.3 * scale)).astype(np.float32))
    return np.concatenate(blocks).astype(np.float32)


def f16_cases(rng):
    vals = []
    # every half's neighbourhood at ties: the midpoint between consecutive halves, and one ulp either side
    h = np.arange(0, 0x7bff, dtype=np.uint16)
    sample = rng.choice(h, 400, replace=False)
    lo = sample.view(np.float16).astype(np.float64)
    hi = (sample + 1).view(np.float16).astype(np.float64)
    mid = ((lo + hi) / 2).astype(np.float32)  # exact in float32
    bits = mid.view(np.uint32)
    vals += list(mid) + list((bits + 1).view(np.float32)) + list((bits - 1).view(np.float32))
    vals += list(rng.normal(0, 1, 300).astype(np.float32))
    vals += list((rng.normal(0, 1, 200) * np.exp(rng.uniform(-25, 12, 200))).astype(np.float32))
    vals += list(np.float32([0.0, -0.0, 65504.0, 65519.996, 65520.0, 65536.0, 1e10, -1e10, np.inf, -np.inf,
                             2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -14, 2.0 ** -14 * 0.99999,
                             5.96e-8, 6.1e-5, 1e-30, -2.0 ** -25]))
    vals = np.array(vals, np.float32)
    vals = np.concatenate([vals, -vals])
    with np.errstate(over="ignore"):
        halves = vals.astype(np.float16)
    return vals, halves.view(np.uint16)


def fnv1a64(data: bytes) -> int:
    hsh = 0xCBF29CE484222325
    for byte in data:
        hsh ^= byte
        hsh = (hsh * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return hsh


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    x = make_input(rng)
    x.tofile(os.path.join(OUT, "input.f32"))
    for name, qt in (("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q8_0", T.Q8_0), ("f16", T.F16), ("bf16", T.BF16)):
        with np.errstate(over="ignore"):
            q = quants.quantize(x.reshape(1, -1), qt)
        q.tofile(os.path.join(OUT, name + ".q"))
        quants.dequantize(q, qt).astype(np.float32).reshape(-1).tofile(os.path.join(OUT, name + ".deq.f32"))
    vals, halves = f16_cases(rng)
    vals.tofile(os.path.join(OUT, "f16_cases.f32"))
    halves.astype("<u2").tofile(os.path.join(OUT, "f16_cases.f16"))
    allf = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    with open(os.path.join(OUT, "f16_all.fnv"), "w") as f:
        f.write("%016x\n" % fnv1a64(allf.view(np.uint32).astype("<u4").tobytes()))


if __name__ == "__main__":
    main()
