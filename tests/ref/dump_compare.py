#!/usr/bin/env python3
"""dump_compare.py - which op first differs between zili and llama.cpp? A debugging aid, not a test.

    python3 tests/ref/dump_compare.py MODEL.gguf --prompt TEXT [-n STEPS] [--layers K]

Runs the prompt (one batch) and then STEPS greedy decode steps in llama.cpp (llama-cpp-python, 2 threads, no flash
attention, F16 KV cache, no weight repacking) with an eval callback that copies out its intermediate tensors, and
the same in `zili run` with ZILI_DUMP (see src/core/dump.h). Prints, step by step in graph order, each tensor that
is not bit-identical: how many elements differ and the largest difference. The first line printed is the op to
look at.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

# llama.cpp's graph names, in graph order (a name a model's graph lacks is skipped; gemma3 adds inp_scaled,
# attn_post_norm, sa_out, ffn_geglu and ffn_post_norm).
FIRST = ["inp_scaled"]
ORDER = ["attn_norm", "Qcur_normed", "Kcur_normed", "Qcur", "Kcur", "Vcur", "kqv_out", "attn_out", "attn_post_norm",
         "sa_out", "ffn_inp", "ffn_norm", "ffn_moe_logits", "ffn_moe_probs", "ffn_moe_weights", "ffn_gate", "ffn_up", "ffn_swiglu",
         "ffn_geglu", "ffn_moe_out", "ffn_shexp", "ffn_out", "ffn_post_norm",
         "l_out"]
FINAL = ["result_norm", "result_output"]


class GgmlTensor(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


def llama_dumps(model: str, ids: list[int], steps: int) -> tuple[list[dict], list[int]]:
    import llama_cpp
    want = re.compile(r"^(%s)-(\d+)$|^(%s)$" % ("|".join(ORDER), "|".join(FIRST + FINAL)))
    cur: dict = {}

    @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)
    def cb(tp, ask, _ud):
        t = GgmlTensor.from_address(tp)
        name = t.name.decode()
        m = want.match(name)
        if ask:
            return bool(m)
        if m and t.type == 0 and t.data:  # F32
            ne = list(t.ne)
            nb = list(t.nb)
            span = sum((ne[i] - 1) * nb[i] for i in range(4)) + 4
            buf = (ctypes.c_char * span).from_address(t.data)
            a = np.lib.stride_tricks.as_strided(np.frombuffer(buf, dtype=np.float32),
                                                shape=tuple(reversed(ne)), strides=tuple(reversed(nb)))
            key = (m.group(1), int(m.group(2))) if m.group(1) else (m.group(3), -1)
            cur[key] = np.array(a, dtype=np.float32)
        return True

    default = llama_cpp.llama_context_default_params

    def ctx_params():
        p = default()
        p.cb_eval = ctypes.cast(cb, type(p.cb_eval))
        p.cb_eval_user_data = None
        return p

    llama_cpp.llama_context_default_params = ctx_params
    llama_cpp.llama_cpp.llama_context_default_params = ctx_params
    common.no_repack(llama_cpp)
    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=common.THREADS,
                          n_threads_batch=common.THREADS, logits_all=False, flash_attn=False, verbose=False)
    out = []
    toks = []
    cur.clear()
    llm.eval(ids)
    out.append(dict(cur))
    for _ in range(steps):
        p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        tok = int(np.argmax(np.ctypeslib.as_array(p, shape=(llm.n_vocab(),))))
        toks.append(tok)
        cur.clear()
        llm.eval([tok])
        out.append(dict(cur))
    return out, toks


def zili_dumps(model: str, text: str, steps: int, d: str) -> None:
    env = dict(os.environ, ZILI_DUMP=d)
    subprocess.run([common.zili_bin(), "run", "-m", model, "-p", text, "-n", str(steps + 1), "--temp", "0", "--ids",
                    "-t", str(common.THREADS), "--ctx", "512"], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--prompt", required=True)
    p.add_argument("-n", type=int, default=4, help="decode steps after the prompt")
    p.add_argument("--all", action="store_true", help="print every tensor, not only differing ones")
    p.add_argument("--max-lines", type=int, default=40)
    a = p.parse_args()
    ids = common.zili_tokenize(a.model, a.prompt)
    ref, toks = llama_dumps(a.model, ids, a.n)
    d = tempfile.mkdtemp(prefix="zili-dump-")
    try:
        zili_dumps(a.model, a.prompt, a.n, d)
        lines = 0
        for step, tensors in enumerate(ref):
            layers = sorted({k[1] for k in tensors if k[1] >= 0})
            keys = [(n, -1) for n in FIRST] + [(n, il) for il in layers for n in ORDER] + [(n, -1) for n in FINAL]
            for key in keys:
                if key not in tensors:
                    continue
                path = os.path.join(d, f"{step}-{key[0]}-{key[1]}.f32")
                if not os.path.exists(path):
                    continue
                r = tensors[key].reshape(-1)
                z = np.fromfile(path, dtype="<f4")
                if key[0] == "result_output" and z.size != r.size:
                    r = r[-z.size:]
                if z.size != r.size:
                    print(f"step {step} {key[0]}-{key[1]}: sizes differ (zili {z.size}, llama.cpp {r.size})")
                    continue
                diff = np.abs(z.astype(np.float64) - r.astype(np.float64))
                nd = int((z != r).sum())
                if nd or a.all:
                    i = int(diff.argmax())
                    print(f"step {step} {key[0]}-{key[1]}: {nd}/{z.size} differ, max {diff.max():.3g} at {i} "
                          f"(zili {z[i]!r}, llama.cpp {r[i]!r})")
                    lines += 1
                    if lines >= a.max_lines:
                        return 0
        print("llama.cpp tokens:", toks)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
