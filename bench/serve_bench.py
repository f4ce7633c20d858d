#!/usr/bin/env python3
"""serve_bench.py - throughput and latency of zili serve (and, if installed, llama-cpp-python's server) under
1, 4, 16 and 64 concurrent streaming clients.

For each level, `clients` threads send streaming /v1/completions requests back to back (greedy, max_tokens
tokens) until `requests` are done, after one untimed warm-up request. Reported per level: aggregate generated
tokens/s over the wall time, time to first token (p50, p99), inter-token latency between consecutive SSE content
events (p50, p99), failed requests.

  python3 bench/serve_bench.py                           # starts build/zili serve on a free port
  python3 bench/serve_bench.py --url http://127.0.0.1:8080
  python3 bench/serve_bench.py --llama                   # also llama_cpp.server, same model, same machine
  python3 bench/serve_bench.py --repeat 3                # each level 3 times, interleaved; the median run counts

Not a test: numbers depend on the machine. Everything stays on loopback.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived",
    "The history of the Roman Empire begins with",
    "Here is a recipe for a simple tomato soup:",
    "The three most important inventions of the twentieth century are",
    "Dear diary, today I",
    "In a distant galaxy, a young pilot",
    "The best advice I ever received was",
    "Photosynthesis is the process by which",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url, proc, what, path="/v1/models", limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("%s exited with %d" % (what, proc.returncode))
        try:
            urllib.request.urlopen(url + path, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit("%s did not come up" % what)


def one_request(url, prompt, max_tokens, extra):
    """Streams one completion; returns (ok, n_events, ttft, [itl...])."""
    u = urllib.parse.urlparse(url)
    body = dict(prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True)
    body.update(extra)
    t0 = time.perf_counter()
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return False, 0, None, []
        buf, times, done = b"", [], False
        while not done:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf or b"\r\n\r\n" in buf:
                sep = b"\r\n\r\n" if (b"\r\n\r\n" in buf and (b"\n\n" not in buf or
                                                              buf.index(b"\r\n\r\n") < buf.index(b"\n\n"))) else b"\n\n"
                ev, buf = buf.split(sep, 1)
                line = ev.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                obj = json.loads(data)
                ch = obj.get("choices") or []
                if ch and ch[0].get("text"):
                    times.append(time.perf_counter())
        c.close()
    except (OSError, ValueError, http.client.HTTPException):
        return False, 0, None, []
    if not times:
        return True, 0, None, []
    return True, len(times), times[0] - t0, [b - a for a, b in zip(times, times[1:])]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def run_level(url, clients, n_requests, max_tokens, extra):
    lock = threading.Lock()
    next_i = [0]
    res = []

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= n_requests:
                    return
                next_i[0] += 1
            r = one_request(url, PROMPTS[i % len(PROMPTS)], max_tokens, extra)
            with lock:
                res.append(r)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as ex:
        for _ in range(clients):
            ex.submit(worker)
    wall = time.perf_counter() - t0
    ok = [r for r in res if r[0]]
    toks = sum(r[1] for r in ok)
    ttft = [r[2] for r in ok if r[2] is not None]
    itl = [x for r in ok for x in r[3]]
    return dict(clients=clients, requests=len(res), failed=len(res) - len(ok), tokens=toks, wall=wall,
                tps=toks / wall if wall > 0 else 0, ttft50=pct(ttft, 50), ttft99=pct(ttft, 99),
                itl50=pct(itl, 50), itl99=pct(itl, 99))


def print_row(r, note=""):
    print("%8d %9d %7d %8d %10.1f %9.3fs %9.3fs %8.1fms %8.1fms%s" % (
        r["clients"], r["requests"], r["failed"], r["tokens"], r["tps"], r["ttft50"], r["ttft99"], r["itl50"] * 1e3,
        r["itl99"] * 1e3, note), flush=True)


def bench(name, url, levels, max_tokens, extra, per_client, repeat=1):
    """Runs the levels in order, `repeat` times over (interleaved, so that a slow spell of a shared machine does not
    fall on one level only); returns per level the run of median throughput, with every run's tok/s in "runs"."""
    print("\n%s (%s), max_tokens %d%s" % (name, url, max_tokens,
                                          ", each level %d times interleaved" % repeat if repeat > 1 else ""))
    print("%8s %9s %7s %8s %10s %10s %10s %10s %10s" % ("clients", "requests", "failed", "tokens", "tok/s",
                                                          "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"))
    one_request(url, PROMPTS[0], 8, extra)  # untimed warm-up: the first request pages in a mapped model's weights
    runs = {n: [] for n in levels}
    for k in range(repeat):
        for n in levels:
            r = run_level(url, n, max(4, n * per_client), max_tokens, extra)
            runs[n].append(r)
            print_row(r, "   (pass %d)" % (k + 1) if repeat > 1 else "")
    rows = []
    for n in levels:
        rs = sorted(runs[n], key=lambda r: r["tps"])
        med = dict(rs[(len(rs) - 1) // 2])
        med["runs"] = [r["tps"] for r in runs[n]]
        med["failed"] = sum(r["failed"] for r in runs[n])
        rows.append(med)
    if repeat > 1:
        print("median run of each level (failed: all runs):")
        for r in rows:
            print_row(r)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="an already running zili serve (default: start build/zili)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "zili"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=2, help="requests per client at each level")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--llama", action="store_true", help="also benchmark llama_cpp.server on the same model")
    ap.add_argument("--llama-levels", help="client counts for llama_cpp.server (default: --levels); it serves one "
                    "request at a time, so its 64-client level takes over 12 minutes on 2 cores")
    ap.add_argument("--serve-args", default="", help="extra options for zili serve, e.g. '--batch 64'")
    ap.add_argument("--repeat", type=int, default=1, help="run every level this many times, interleaved, and report "
                    "each level's median run (the ratios use them)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    llama_levels = [int(x) for x in (a.llama_levels or a.levels).split(",")]
    results = {}
    procs = []
    try:
        url = a.url
        if not url:
            port = free_port()
            url = "http://127.0.0.1:%d" % port
            cmd = [a.bin, "serve", "-m", a.model, "--port", str(port), "--parallel", str(max(levels)), "-c", "1024",
                   "--max-queue", "1024"]
            if a.threads:
                cmd += ["-t", str(a.threads)]
            cmd += a.serve_args.split()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_up(url, p, "zili serve")
        results["zili"] = bench("zili serve", url, levels, a.max_tokens, {"ignore_eos": True}, a.per_client,
                                a.repeat)
        if a.llama:
            port = free_port()
            lurl = "http://127.0.0.1:%d" % port
            cmd = [sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--host", "127.0.0.1", "--port",
                   str(port), "--n_ctx", "2048", "--interrupt_requests", "False"]  # else a new request cuts the last
            if a.threads:
                cmd += ["--n_threads", str(a.threads)]
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_up(lurl, p, "llama_cpp.server")
            results["llama_cpp_server"] = bench("llama_cpp.server", lurl, llama_levels, a.max_tokens,
                                                {"ignore_eos": True}, a.per_client, a.repeat)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    z = {r["clients"]: r for r in results.get("zili", [])}
    if 1 in z and 16 in z and z[1]["tps"] > 0:
        print("\nzili: throughput at 16 clients / 1 client = %.2fx" % (z[16]["tps"] / z[1]["tps"]))
    l = {r["clients"]: r for r in results.get("llama_cpp_server", [])}
    if 16 in z and 16 in l and l[16]["tps"] > 0:
        print("zili / llama_cpp.server at 16 clients = %.2fx" % (z[16]["tps"] / l[16]["tps"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
