#!/usr/bin/env python3
"""Generate the quantization fixtures under tests/data/quant/ with gguf-py, numpy and llama.cpp.

gguf-py's quantize/dequantize are an implementation of ggml's reference quantizers independent of ours, so
tests/unit/test_dtype.c can compare zili's kernels against them byte for byte. gguf-py cannot quantize the
K-quants, so for those the bytes come from llama.cpp itself (llama_model_quantize through llama-cpp-python, on
a random F32 model from tools/gen_gguf.py whose first rows are replaced by the edge cases of make_k_input), and
from random bytes; tests/unit/test_kquant.c checks zili's from_float against llama.cpp's bytes and its to_float
against gguf-py's dequantize of both.

Files (all little-endian, no headers):
  input.f32              NBLK*32 float32 values: edge-case blocks first (see make_input), then random ones
  <type>.q               gguf.quants.quantize(input, type) bytes, for q4_0 q4_1 q5_0 q5_1 q8_0 f16 bf16
  <type>.deq.f32         gguf.quants.dequantize(<type>.q, type) as float32
  kinput.f32             NKROW*256 float32 values: rows of 256, edge cases first (see make_k_input)
  <type>.llama.q         llama.cpp's quantization of kinput (one row = one block of 256 or eight of 32), for
                         q2_K q3_K q4_K q5_K q6_K q5_0 q5_1 q4_0 q4_1 q8_0
  <type>.llama.deq.f32   gguf.quants.dequantize(<type>.llama.q) as float32
  <type>.rand.q          NRAND random blocks of each K-quant type (random bits, finite random fp16 scales)
  <type>.rand.deq.f32    gguf.quants.dequantize(<type>.rand.q) as float32
  xact.f32               NKROW*256 float32 activations (normal, per-row scales 10^[-2, 1])
  <act>.ggml.q           ggml's activation quantization of xact (quantize_row_q8_0 / q8_1 / q8_K of llama-cpp-python's
                         libggml-cpu, i.e. its x86 SIMD recipe), for q8_0 q8_1 q8_K
  <type>.ggml_dot.f32    NKROW float32: ggml_vec_dot_<type>_<act>(k*256, <type>.llama.q, <act>.ggml.q) for k = 1..NKROW,
                         bit for bit what llama.cpp computes on x86 (its CPU's AVX2 kernels)
  f16_cases.f32          float32 values probing float -> half rounding (ties, subnormals, overflow edge)
  f16_cases.f16          numpy's float16 of each (uint16 bits)
  f16_all.fnv            FNV-1a 64 (hex) of the float32 bits of numpy's float32 value of every half 0..65535

Run from the repository root: python3 tests/data/gen_quant_fixtures.py (needs llama-cpp-python for the
*.llama.* files; without it they are left as they are).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf.constants import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant")
QK = 32
NBLK = 41  # odd on purpose
QK_K = 256
NKROW = 15  # rows of kinput.f32 (one K-quant block each), odd on purpose
NRAND = 7   # random blocks per K-quant type
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


def make_k_input(rng):
    """NKROW rows of 256: the cases where the K-quant fits take unusual branches, then random rows."""
    rows = []
    rows.append(np.zeros(QK_K, np.float32))                        # all zero: every scale 0
    rows.append(np.full(QK_K, 0.75, np.float32))                  # positive constant (min clamped to 0)
    rows.append(np.full(QK_K, -0.5, np.float32))                  # negative constant (max == min)
    r = rng.normal(0, 0.01, QK_K).astype(np.float32)
    r[7] = 1000.0                                                 # one spike: other sub-blocks' scales round to 0
    rows.append(r)
    rows.append(-np.abs(rng.normal(0, 1, QK_K)).astype(np.float32))  # all negative
    rows.append(rng.normal(0, 1e-6, QK_K).astype(np.float32))     # tiny: subnormal fp16 scales
    rows.append(rng.normal(0, 3e3, QK_K).astype(np.float32))      # large
    r = rng.normal(0, 1, QK_K).astype(np.float32)
    r[:128] = 0.0                                                 # zero sub-blocks next to live ones
    rows.append(r)
    r = rng.normal(0, 1, QK_K).astype(np.float32)
    r[32:48] = 0.3                                                # one constant sub-block
    rows.append(r)
    rows.append(rng.uniform(1, 2, QK_K).astype(np.float32))       # all positive
    rows.append((np.arange(QK_K) % 16 - 8).astype(np.float32) * 0.5)  # a lattice: many rounding ties
    while len(rows) < NKROW:
        scale = float(np.exp(rng.uniform(-6, 3)))
        rows.append((rng.normal(0, 1, QK_K) * scale + rng.normal(0, 0.3 * scale)).astype(np.float32))
    return np.stack(rows).astype(np.float32)


# K-quant (and legacy) type -> (llama.cpp file type used with --pure, gguf type)
LLAMA_TYPES = {
    "q2_K": ("q2_k", T.Q2_K), "q3_K": ("q3_k_s", T.Q3_K), "q4_K": ("q4_k_s", T.Q4_K),
    "q5_K": ("q5_k_s", T.Q5_K), "q6_K": ("q6_k", T.Q6_K), "q5_0": ("q5_0", T.Q5_0), "q5_1": ("q5_1", T.Q5_1),
    "q4_0": ("q4_0", T.Q4_0), "q4_1": ("q4_1", T.Q4_1), "q8_0": ("q8_0", T.Q8_0),
}
K_TENSOR = "blk.0.attn_q.weight"  # 256 x 256 in the tiny preset: each row is one block of 256


def llama_fixtures(kx):
    """Quantizes kx with llama.cpp: writes it over the first rows of K_TENSOR in a random F32 model, quantizes the
    model --pure to each type and reads those rows back. Returns {name: bytes} or None without llama-cpp-python."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("gen_quant_fixtures.py: llama-cpp-python missing; *.llama.* fixtures not regenerated", file=sys.stderr)
        return None
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import quantize_gguf
    from gguf import GGUFReader
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.gguf")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_gguf.py"), "--preset", "tiny", "--type", "f32",
                        "--vocab-from", os.path.join(ROOT, "tests", "data", "vocab", "ggml-vocab-llama-spm.gguf"),
                        "-o", f32], check=True, stdout=subprocess.DEVNULL)
        r = GGUFReader(f32, "r+")
        t = next(t for t in r.tensors if t.name == K_TENSOR)
        t.data[:NKROW] = kx
        r.data.flush()
        del t, r
        for name, (ftype, qt) in LLAMA_TYPES.items():
            q = os.path.join(tmp, name + ".gguf")
            quantize_gguf.quantize(f32, q, ftype, pure=True)
            t = next(t for t in GGUFReader(q).tensors if t.name == K_TENSOR)
            assert t.tensor_type == qt, (name, t.tensor_type)
            row_bytes = quants.GGML_QUANT_SIZES[qt][1] * QK_K // quants.GGML_QUANT_SIZES[qt][0]
            out[name] = bytes(np.asarray(t.data).view(np.uint8).reshape(-1)[:NKROW * row_bytes])
    return out


# weight type -> activation type of its dot product (ggml's vec_dot_type)
DOT_ACT = {"q2_K": "q8_K", "q3_K": "q8_K", "q4_K": "q8_K", "q5_K": "q8_K", "q6_K": "q8_K", "q5_0": "q8_0",
           "q5_1": "q8_1", "q4_0": "q8_0", "q4_1": "q8_1", "q8_0": "q8_0"}
ACT_BLOCK = {"q8_0": (32, 34), "q8_1": (32, 36), "q8_K": (256, 292)}


def ggml_dot_fixtures(llama_bytes, xact):
    """ggml's own activation quantizers and dot kernels from llama-cpp-python's shared libraries (ctypes), on the
    llama.cpp-quantized rows. Returns ({act: bytes}, {type: float32 array}) or None when they cannot be loaded."""
    import ctypes
    try:
        import llama_cpp
    except ImportError:
        return None
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    try:
        ctypes.CDLL(os.path.join(lib, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        g = ctypes.CDLL(os.path.join(lib, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        print(f"gen_quant_fixtures.py: cannot load ggml ({e}); *.ggml* fixtures not regenerated", file=sys.stderr)
        return None
    g.ggml_cpu_init()  # fills the fp16 tables the kernels read
    n = xact.size
    acts = {}
    for act, (bs, ts) in ACT_BLOCK.items():
        out = np.zeros(n // bs * ts, np.uint8)
        getattr(g, "quantize_row_" + act)(xact.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                                          ctypes.c_int64(n))
        acts[act] = out
    dots = {}
    for name, data in llama_bytes.items():
        act = DOT_ACT[name]
        fn = getattr(g, f"ggml_vec_dot_{name}_{act}")
        w = np.frombuffer(data, np.uint8).copy()
        res = np.zeros(NKROW, np.float32)
        s = ctypes.c_float()
        for k in range(1, NKROW + 1):
            fn(ctypes.c_int(k * QK_K), ctypes.byref(s), ctypes.c_size_t(0), w.ctypes.data_as(ctypes.c_void_p),
               ctypes.c_size_t(0), acts[act].ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_int(1))
            res[k - 1] = s.value
        dots[name] = res
    return {a: bytes(v) for a, v in acts.items()}, dots


def random_k_blocks(rng, qt):
    """NRAND blocks of random bits whose fp16 scales (d, dmin) are finite: any other bit pattern is valid."""
    bs, ts = quants.GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, (NRAND, ts), dtype=np.uint8)
    halves = (rng.normal(0, 1, (NRAND, 2)) * np.exp(rng.uniform(-12, 2, (NRAND, 2)))).astype(np.float16)
    halves[0, :] = 0.0                                       # a zero-scale block
    h = halves.view(np.uint8).reshape(NRAND, 4)
    off = {T.Q2_K: 80, T.Q3_K: 108, T.Q4_K: 0, T.Q5_K: 0, T.Q6_K: 208}[qt]  # byte offset of d (dmin follows)
    n = 2 if qt == T.Q3_K or qt == T.Q6_K else 4
    b[:, off:off + n] = h[:, :n]
    return b


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
    for name, qt in (("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1), ("q8_0", T.Q8_0),
                     ("f16", T.F16), ("bf16", T.BF16)):
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

    # K-quants: their own RNG, so the fixtures above do not change
    krng = np.random.default_rng(20261122)
    kx = make_k_input(krng)
    kx.reshape(-1).tofile(os.path.join(OUT, "kinput.f32"))
    for name, qt in (("q2_K", T.Q2_K), ("q3_K", T.Q3_K), ("q4_K", T.Q4_K), ("q5_K", T.Q5_K), ("q6_K", T.Q6_K)):
        b = random_k_blocks(krng, qt)
        b.tofile(os.path.join(OUT, name + ".rand.q"))
        quants.dequantize(b, qt).astype(np.float32).reshape(-1).tofile(os.path.join(OUT, name + ".rand.deq.f32"))
    xact = (krng.normal(0, 1, (NKROW, QK_K)) * 10.0 ** krng.uniform(-2, 1, (NKROW, 1))).astype(np.float32)
    xact.reshape(-1).tofile(os.path.join(OUT, "xact.f32"))
    lq = llama_fixtures(kx)
    gd = ggml_dot_fixtures(lq, xact.reshape(-1)) if lq is not None else None
    if gd is not None:
        for act, data in gd[0].items():
            with open(os.path.join(OUT, act + ".ggml.q"), "wb") as f:
                f.write(data)
        for name, res in gd[1].items():
            res.tofile(os.path.join(OUT, name + ".ggml_dot.f32"))
    if lq is not None:
        for name, data in lq.items():
            qt = LLAMA_TYPES[name][1]
            with open(os.path.join(OUT, name + ".llama.q"), "wb") as f:
                f.write(data)
            deq = quants.dequantize(np.frombuffer(data, np.uint8).reshape(NKROW, -1), qt)
            deq.astype(np.float32).reshape(-1).tofile(os.path.join(OUT, name + ".llama.deq.f32"))


if __name__ == "__main__":
    main()
