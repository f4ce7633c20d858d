#!/usr/bin/env python3
"""soak.py - keep a zili server busy for a while with random, partly rude clients (not part of make test).

    python3 scripts/soak.py [--minutes 10] [--clients 16] [--url http://127.0.0.1:8080 | --model FILE]

Without --url it starts `build/zili serve` (ZILI overrides the binary) on a free port with --model (default
SmolLM2). Each client loops: a chat or text completion, streaming or not, with random max_tokens, temperature,
top_p, seed, stop and penalties; about one stream in five is cut after a few chunks. At the end it prints the
requests made, errors by kind, time-to-first-token and total latency percentiles, the server's resident memory
(VmRSS, and RssAnon: without the mmap'd weights) at the start and at the end, and the KV blocks still in use once the load stops (must be 0).
Exit status 1 if any request failed in a way a client is not allowed to see (5xx other than 503, broken
framing) or blocks stay in use.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A resident-memory field of /proc/PID/status in KiB: VmRSS (all), RssAnon (heap and stacks; not the
    mmap'd weights, which become resident as they are first read)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.errors: collections.Counter = collections.Counter()
        self.ttft: list[float] = []
        self.total: list[float] = []

    def add(self, ok_kind: str | None, ttft: float | None, total: float | None) -> None:
        with self.lock:
            self.requests += 1
            if ok_kind:
                self.errors[ok_kind] += 1
            if ttft is not None:
                self.ttft.append(ttft)
            if total is not None:
                self.total.append(total)


def one_request(host: str, port: int, rng: random.Random, st: Stats) -> None:
    chat = rng.random() < 0.7
    stream = rng.random() < 0.6
    body: dict = {"max_tokens": rng.choice([1, 8, 32, 64, 128]), "temperature": rng.choice([0, 0.3, 0.8, 1.2]),
                  "top_p": rng.choice([1.0, 0.9, 0.5]), "seed": rng.randrange(1 << 30), "stream": stream}
    if rng.random() < 0.3:
        body["stop"] = rng.choice(["\n", [".", "!"], "the"])
    if rng.random() < 0.2:
        body["presence_penalty"] = rng.uniform(-1, 1)
        body["frequency_penalty"] = rng.uniform(-1, 1)
    topic = rng.choice(["the sea", "prime numbers", "a lighthouse", "Rome", "bread", "rain in Paris"])
    if chat:
        path = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": f"Tell me something about {topic}."}]
    else:
        path = "/v1/completions"
        body["prompt"] = f"Here is a short story about {topic}:"
    cut = stream and rng.random() < 0.2
    t0 = time.time()
    ttft = None
    try:
        c = http.client.HTTPConnection(host, port, timeout=300)
        c.connect()
        sock = c.sock  # the server closes each connection after its reply, and http.client then lets go of it
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status == 503:
            r.read()
            st.add("503 (queue full, allowed)", None, None)
            return
        if r.status != 200:
            st.add(f"http {r.status}", None, None)
            return
        if not stream:
            data = json.loads(r.read())
            if "usage" not in data:
                st.add("no usage", None, None)
                return
            st.add(None, None, time.time() - t0)
            return
        chunks = 0
        done = False
        for raw in r:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line or line.startswith(":"):
                continue
            if not line.startswith("data: "):
                st.add("bad SSE line", None, None)
                return
            if line == "data: [DONE]":
                done = True
                break
            json.loads(line[6:])
            chunks += 1
            if ttft is None:
                ttft = time.time() - t0
            if cut and chunks >= 3:
                sock.shutdown(socket.SHUT_RDWR)
                c.close()
                st.add(None, ttft, None)
                return
        st.add(None if done else "stream without [DONE]", ttft, time.time() - t0)
    except (OSError, http.client.HTTPException, ValueError) as e:
        st.add(f"exception {type(e).__name__}", None, None)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--url")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serve-args", default="-c 1024 --kv-prefault",
                    help="extra zili serve options (default: KV pool resident from the start, so memory growth "
                         "seen here is not first use of KV pages)")
    a = ap.parse_args()

    proc = None
    if a.url:
        url = a.url.rstrip("/")
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        binary = os.environ.get("ZILI", os.path.join(ROOT, "build", "zili"))
        proc = subprocess.Popen([binary, "serve", "-m", a.model, "--port", str(port), "--parallel",
                                 str(a.clients), *a.serve_args.split()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
    host, port_s = url.split("//")[1].split(":")
    port = int(port_s)
    rss0 = rss_kib(proc.pid) if proc else -1
    anon0 = rss_kib(proc.pid, "RssAnon") if proc else -1

    st = Stats()
    stop_at = time.time() + a.minutes * 60

    def worker(i: int) -> None:
        rng = random.Random(a.seed * 1000 + i)
        while time.time() < stop_at:
            one_request(host, port, rng, st)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.clients)]
    for t in threads:
        t.start()
    samples = []  # (minute, RssAnon MiB) once a minute, to tell a plateau from steady growth
    t_start, k = stop_at - a.minutes * 60, 1
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if proc and k <= a.minutes and time.time() >= t_start + 60 * k:
            samples.append((k, rss_kib(proc.pid, "RssAnon") / 1024))
            k += 1
    for t in threads:
        t.join()
    time.sleep(2)
    rss1 = rss_kib(proc.pid) if proc else -1
    anon1 = rss_kib(proc.pid, "RssAnon") if proc else -1
    used = metric(url, "zili_kv_blocks_used")
    if proc:
        proc.terminate()
        proc.wait(30)

    bad = {k: v for k, v in st.errors.items() if "allowed" not in k}
    print(f"soak: {a.minutes:g} min, {a.clients} clients, {st.requests} requests, "
          f"{sum(bad.values())} errors {dict(bad) or ''}")
    for k, v in st.errors.items():
        if "allowed" in k:
            print(f"  {k}: {v}")
    print(f"  TTFT p50 {pct(st.ttft, 50):.3f} s, p99 {pct(st.ttft, 99):.3f} s; "
          f"total p50 {pct(st.total, 50):.3f} s, p99 {pct(st.total, 99):.3f} s")
    if proc:
        print(f"  server RSS: start {rss0 / 1024:.1f} MiB, end {rss1 / 1024:.1f} MiB; anonymous (without the "
              f"mapped weights): start {anon0 / 1024:.1f} MiB, end {anon1 / 1024:.1f} MiB")
        print("  anonymous MiB by minute: " + ", ".join(f"{m}: {v:.1f}" for m, v in samples))
    print(f"  KV blocks in use after the load: {used:g}")
    return 1 if bad or used != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
