#!/usr/bin/env python3
"""quantize_gguf.py - turn a GGUF model into Q4_K_M, Q5_K_M, Q6_K, Q8_0 (or another llama.cpp file type) with
llama.cpp's own quantizer, through llama-cpp-python's llama_model_quantize.

zili's model tests need K-quant files exactly as llama-quantize writes them (the same per-tensor type mix and
the same bytes), made from the random-weight models of tools/gen_gguf.py; llama-cpp-python bundles that code, so
no llama.cpp checkout is needed. Without an importance matrix llama.cpp uses ggml's reference quantizers, which
zili's from_float reproduces byte for byte (tests/unit/test_kquant.c checks this on fixtures made here).

Usage:
  tools/quantize_gguf.py in-f32.gguf out.gguf q4_k_m        # the usual mix (some tensors Q6_K, fallbacks ...)
  tools/quantize_gguf.py --pure in.gguf out.gguf q5_k_s     # every 2-D weight in the file type's base type
  tools/quantize_gguf.py --list                             # the file type names understood

The input should be F32, F16 or BF16 (llama.cpp refuses to requantize quantized tensors unless told to).
Exit status: 0 on success, 1 on a quantizer error, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys

# llama_ftype values (llama.h); names as llama-quantize spells them, lower case.
FTYPES = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
    "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15,
    "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "bf16": 32,
}


def quantize(src: str, dst: str, ftype: str, pure: bool = False, nthread: int = 0) -> None:
    """Quantizes GGUF file src into dst as llama.cpp file type ftype (a key of FTYPES). Raises RuntimeError
    when llama.cpp reports a failure, ImportError when llama-cpp-python is missing, KeyError on an unknown type."""
    import llama_cpp  # imported here so --help and --list work without it

    code = FTYPES[ftype.lower()]
    if not os.path.isfile(src):
        raise FileNotFoundError(src)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = code
    params.nthread = nthread
    params.pure = pure
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, {ftype}) failed with status {rc}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Quantize a GGUF model with llama.cpp (via llama-cpp-python).")
    p.add_argument("input", nargs="?")
    p.add_argument("output", nargs="?")
    p.add_argument("type", nargs="?", help="file type: " + ", ".join(FTYPES))
    p.add_argument("--pure", action="store_true", help="no mix: every 2-D weight gets the type's base type")
    p.add_argument("--threads", type=int, default=0, help="quantizer threads (0: llama.cpp's default)")
    p.add_argument("--list", action="store_true", help="print the file type names and exit")
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(FTYPES))
        return 0
    if not (a.input and a.output and a.type):
        p.print_usage(sys.stderr)
        return 2
    if a.type.lower() not in FTYPES:
        print(f"quantize_gguf.py: unknown type '{a.type}' (known: {', '.join(FTYPES)})", file=sys.stderr)
        return 2
    try:
        quantize(a.input, a.output, a.type, a.pure, a.threads)
    except ImportError:
        print("quantize_gguf.py: llama-cpp-python (llama_cpp) is not installed", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as e:
        print(f"quantize_gguf.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
