#!/usr/bin/env python3
"""diverge.py - where do zili's logits first differ from llama.cpp's? A debugging aid, not a test.

    python3 tests/ref/diverge.py MODEL.gguf [--ids "1 2 3" | --prompt TEXT | --random N] [--trials K]

Evaluates the same token ids in one batch with `zili logits` and with llama.cpp (llama-cpp-python, 2 threads, no
flash attention, F16 KV cache, weights not repacked) and prints, per trial, the first position whose logits differ
at all, the largest difference, and the median over positions. With weights in an 8-bit-activation type (Q4_0/Q4_1/Q8_0) a single
one-ulp difference anywhere upstream of an activation quantization can flip one rounding, and that flip cascades
into a logit difference of the size of the quantization noise itself (1-2% of max|logit|; see test_float_ref.py),
so "first differing position" is the place to look for the op that is not bit-identical. Use gen_gguf.py
--n-layer 1 models to narrow it further.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--ids")
    p.add_argument("--prompt")
    p.add_argument("--random", type=int, default=64, help="random ids of this length (default)")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    import llama_cpp
    common.no_repack(llama_cpp)
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=2048, n_batch=2048, n_ubatch=2048, n_threads=common.THREADS,
                          logits_all=True, flash_attn=False, verbose=False)
    rng = np.random.default_rng(a.seed)
    n_vocab = llm.n_vocab()
    out = "/tmp/diverge.%d.f32" % os.getpid()
    for trial in range(a.trials if not (a.ids or a.prompt) else 1):
        if a.ids:
            ids = common.parse_ids(a.ids)
        elif a.prompt:
            ids = common.zili_tokenize(a.model, a.prompt)
        else:
            ids = rng.integers(min(300, n_vocab - 1), n_vocab, a.random).tolist()
        llm.reset()
        llm.eval(ids)
        ref = np.array(llm.scores[:len(ids)], dtype=np.float64)
        common.zili("logits", "-m", a.model, "--token-ids", " ".join(map(str, ids)), "-o", out,
                    "-t", str(common.THREADS))
        z = np.fromfile(out, dtype="<f4").reshape(len(ids), n_vocab).astype(np.float64)
        e = np.abs(z - ref).max(axis=1)
        first = int(np.argmax(e > 0)) if (e > 0).any() else None
        print(f"trial {trial}: {len(ids)} tokens, first differing position {first}, max diff {e.max():.4g} "
              f"(position {int(e.argmax())}), median {np.median(e):.3g}, max|logit| {np.abs(ref).max():.4g}")
        if first is not None:
            print(f"  ids up to it: {' '.join(map(str, ids[:first + 1]))}")
    os.unlink(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
