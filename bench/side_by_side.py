#!/usr/bin/env python3
"""side_by_side.py - zili and llama.cpp on the same model files, threads and lengths: llama-bench's ppN and tgN,
as tokens/s and as the ratio zili / llama.cpp, plus peak memory and each model's memory-bandwidth ceiling for tgN.

    python3 bench/side_by_side.py                              # SmolLM2, Gemma 3 270M, models/bench/* if there
                                                               # (the MoE ones from bench/moe_models.sh too)
    python3 bench/side_by_side.py -m a.gguf -m b.gguf -p 512 -n 128 -t 2 -r 3 --rounds 2 [--json out.json]

zili runs as `zili bench --json --no-mmap` (ZILI overrides build/zili). llama.cpp runs through llama-cpp-python
(the package on PyPI, which builds llama.cpp for this CPU) in a child process of this script, with its default
configuration (weights read in, not mapped; repacking of weights for this CPU on, flash attention off): ppN is one
llama_decode-driven eval of N random tokens (batch 512), tgN is N one-token evals from an empty cache, each after
one untimed warm-up, as llama-bench does. The two engines alternate, --rounds times (zili first in odd rounds,
llama.cpp first in even ones), and their repetitions are pooled, so a slow phase of a shared machine hits both.

Peak memory: zili's is the process's peak RSS; llama.cpp's is the child's peak RSS, which includes the Python
interpreter and numpy (about 30-40 MiB), so it is an upper bound. The tg ceiling is the memory read bandwidth of the
same thread count (`zili bench --membw`: 1 GiB, widest vector reads, best of 5; re-measured after each model and
the best value so far kept) divided by the weight bytes one token reads (every tensor, an untied token embedding
as one row, a mixture of experts' expert tensors as the share of its experts a token uses: zili bench's
active_weight_bytes). Make the MoE models with bench/moe_models.sh.

Not a test: numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = [os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                  os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")] + \
                 [os.path.join(ROOT, "models", "bench", f"llama3.2-1b-{t}.gguf")
                  for t in ("q4_0", "q4_k_m", "q8_0", "f16")] + \
                 [os.path.join(ROOT, "models", "bench", f"{m}-q4_k_m.gguf")  # bench/moe_models.sh
                  for m in ("qwen3moe-30b-a3b-4l", "qwen2moe-a2.7b-4l", "deepseek2-v2-lite-4l")]


def llama_worker(model: str, pp: int, tg: int, threads: int, reps: int) -> None:
    """Runs in a child process: prints one JSON line with the tokens/s of each repetition and peak RSS."""
    import random

    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=max(pp, tg) + 8, n_batch=512, n_ubatch=512, n_threads=threads,
                          n_threads_batch=threads, use_mmap=False, flash_attn=False, verbose=False)
    n_vocab = llm.n_vocab()
    rng = random.Random(1)
    ids = [rng.randrange(n_vocab) for _ in range(max(pp, 1))]
    bos = llm.tokenize(b"", add_bos=True)  # [BOS] when the vocabulary adds one, as zili bench does
    if bos:
        ids[0] = bos[0]
    gen = [rng.randrange(n_vocab) for _ in range(max(tg, 1))]
    out = {"pp": [], "tg": []}

    def run(test: str) -> float:
        llm.reset()  # n_tokens = 0: eval drops the cached positions from there on
        t0 = time.perf_counter()
        if test == "pp":
            llm.eval(ids[:pp])
            n = pp
        else:
            for t in gen[:tg]:
                llm.eval([t])
            n = tg
        return n / (time.perf_counter() - t0)

    for test, n in (("pp", pp), ("tg", tg)):
        if n == 0:
            continue
        run(test)  # warm-up
        out[test] = [run(test) for _ in range(reps)]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_zili(model: str, a) -> dict:
    binary = os.environ.get("ZILI", os.path.join(ROOT, "build", "zili"))
    r = subprocess.run([binary, "bench", "-m", model, "-p", str(a.p), "-n", str(a.n), "-t", str(a.t), "-r", str(a.r),
                        "--json", "--no-mmap"], capture_output=True, text=True, check=True)
    j = json.loads(r.stdout)
    # zili bench reports mean and sd per test; keep the mean once per repetition for pooling.
    out = {"pp": [], "tg": [], "peak_rss_mib": j["peak_rss_mib"]}
    for x in j["results"]:
        out[x["test"][:2]] += [x["tokens_per_s"]] * a.r
    return out


def run_llama(model: str, a) -> dict:
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--llama-worker", model, "-p", str(a.p), "-n",
                        str(a.n), "-t", str(a.t), "-r", str(a.r)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def weight_bytes_per_token(model: str) -> int:
    """The weight bytes one token reads (zili bench's active_weight_bytes): every tensor, an untied token embedding
    as one row, a mixture of experts' expert tensors (*_exps) as expert_used_count of expert_count experts."""
    import gguf
    rd = gguf.GGUFReader(model)
    names = {t.name: int(t.n_bytes) for t in rd.tensors}
    arch = bytes(rd.fields["general.architecture"].parts[-1]).decode()

    def key(k: str) -> int:
        f = rd.fields.get(f"{arch}.{k}")
        return int(f.parts[-1][0]) if f else 0

    n_expert, n_used = key("expert_count"), key("expert_used_count")
    total = 0
    for name, b in names.items():
        if n_expert and name.endswith("_exps.weight"):
            b = b // n_expert * n_used
        total += b
    if "output.weight" in names and "token_embd.weight" in names:
        emb = next(t for t in rd.tensors if t.name == "token_embd.weight")
        total -= names["token_embd.weight"] - names["token_embd.weight"] // int(emb.shape[-1])  # untied: one row
    return total


def read_bandwidth(threads: int) -> float:
    """Memory read bandwidth of `threads` threads, measured by `zili bench --membw` (1 GiB, widest vector reads)."""
    binary = os.environ.get("ZILI", os.path.join(ROOT, "build", "zili"))
    r = subprocess.run([binary, "bench", "--membw", "-t", str(threads), "--json"], capture_output=True, text=True,
                       check=True)
    return float(json.loads(r.stdout)["read_bytes_per_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", action="append", help="GGUF file (repeatable)")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-r", type=int, default=3, help="repetitions per engine per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="write all figures here")
    ap.add_argument("--llama-worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.llama_worker:
        llama_worker(a.llama_worker, a.p, a.n, a.t, a.r)
        return 0
    models = a.model or [m for m in DEFAULT_MODELS if os.path.exists(m)]
    bw = read_bandwidth(a.t)
    print(f"read bandwidth ({a.t} threads, zili bench --membw): {bw / 1e9:.1f} GB/s at the start; pp{a.p} tg{a.n}; "
          f"{a.r} repetitions x {a.rounds} rounds per engine\n")
    rows = []
    for model in models:
        z = {"pp": [], "tg": [], "peak_rss_mib": 0.0}
        ll = {"pp": [], "tg": [], "peak_rss_mib": 0.0}
        for rnd in range(a.rounds):
            order = [("zili", run_zili, z), ("llama", run_llama, ll)]
            for _, fn, acc in (order if rnd % 2 == 0 else order[::-1]):
                got = fn(model, a)
                acc["pp"] += got["pp"]
                acc["tg"] += got["tg"]
                acc["peak_rss_mib"] = max(acc["peak_rss_mib"], got["peak_rss_mib"])
        bw = max(bw, read_bandwidth(a.t))  # the best seen so far: a busy phase of the machine must not lower it
        wb = weight_bytes_per_token(model)
        ceiling = bw / wb
        for test, n in (("pp", a.p), ("tg", a.n)):
            if n == 0:
                continue
            zm, lm = statistics.mean(z[test]), statistics.mean(ll[test])
            rows.append({"model": os.path.basename(model), "test": f"{test}{n}", "zili": zm, "llama_cpp": lm,
                         "ratio": zm / lm, "zili_peak_rss_mib": z["peak_rss_mib"],
                         "llama_peak_rss_mib": ll["peak_rss_mib"], "model_mib": os.path.getsize(model) / 2**20,
                         "tg_ceiling": ceiling if test == "tg" else None})
    hdr = f"| {'model':34} | {'test':6} | {'zili t/s':>9} | {'llama.cpp t/s':>13} | {'ratio':>6} | " \
          f"{'tg ceiling':>10} | {'zili % ceil':>11} | {'peak MiB zili / llama.cpp (file)':>33} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for r in rows:
        ceil = f"{r['tg_ceiling']:.1f}" if r["tg_ceiling"] else "-"
        pct = f"{100 * r['zili'] / r['tg_ceiling']:.0f}%" if r["tg_ceiling"] else "-"
        mem = f"{r['zili_peak_rss_mib']:.0f} / {r['llama_peak_rss_mib']:.0f} ({r['model_mib']:.0f})"
        print(f"| {r['model'][:34]:34} | {r['test']:6} | {r['zili']:9.2f} | {r['llama_cpp']:13.2f} | "
              f"{r['ratio']:5.2f}x | {ceil:>10} | {pct:>11} | {mem:>33} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"bandwidth_bytes_per_s": bw, "threads": a.t, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
