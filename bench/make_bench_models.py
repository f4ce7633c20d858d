#!/usr/bin/env python3
"""make_bench_models.py - the random-weight Llama-3.2-1B-shaped benchmark models, in F16, Q8_0, Q4_0 and Q4_K_M.

    python3 bench/make_bench_models.py [--out models/bench] [--types f16,q8_0,q4_0,q4_k_m]

Speed does not depend on weight values, so these stand in for Llama-3.2-1B-Instruct (which cannot be downloaded
here): its shape (2048 wide, 16 layers, 32 heads of 64 with 8 kv heads, feed-forward 8192, tied embeddings, rope base
500000) and its vocabulary size, 128256 (SmolLM2's byte-level BPE vocabulary grown with reserved control tokens,
tools/gen_gguf.py --n-vocab). F16 comes from tools/gen_gguf.py; the others are quantized from it by llama.cpp's own
quantizer (tools/quantize_gguf.py), so each carries the type mix llama-quantize writes (Q4_0 and Q4_K_M with a Q6_K
embedding/output, Q4_K_M with some Q6_K attn_v/ffn_down). Files already there are kept. About 2.5 GB (F16) + 1.3 +
0.7 + 0.8 GB of disk; a few minutes on 2 cores.

Then: python3 bench/side_by_side.py -m models/bench/llama3.2-1b-q4_0.gguf ... (or with no -m: every model found).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLLM2 = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
SHAPE = ("--preset", "llama3.2-1b", "--n-vocab", "128256", "--seed", "42", "--name", "random Llama-3.2-1B shape")
TYPES = ("f16", "q8_0", "q4_0", "q4_k_m")


def path_of(out: str, t: str) -> str:
    return os.path.join(out, f"llama3.2-1b-{t}.gguf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "bench"))
    ap.add_argument("--types", default=",".join(TYPES))
    a = ap.parse_args()
    types = [t for t in a.types.split(",") if t]
    bad = [t for t in types if t not in TYPES]
    if bad:
        ap.error(f"unknown type(s) {bad}; choose from {TYPES}")
    if not os.path.exists(SMOLLM2):
        sys.exit(f"make_bench_models: {SMOLLM2} is missing (scripts/fetch_models.sh models)")
    os.makedirs(a.out, exist_ok=True)
    f16 = path_of(a.out, "f16")
    made_f16 = not os.path.exists(f16)
    if made_f16:
        print(f"writing {f16}", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_gguf.py"), *SHAPE, "--type", "f16",
                        "--vocab-from", SMOLLM2, "-o", f16 + ".tmp"], check=True)
        os.replace(f16 + ".tmp", f16)
    for t in types:
        dst = path_of(a.out, t)
        if t == "f16" or os.path.exists(dst):
            continue
        print(f"writing {dst}", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quantize_gguf.py"), f16, dst + ".tmp", t],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(dst + ".tmp", dst)
    if "f16" not in types and made_f16:
        os.unlink(f16)
    for t in types:
        p = path_of(a.out, t)
        print(f"{p}: {os.path.getsize(p) / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
