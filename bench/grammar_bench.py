#!/usr/bin/env python3
"""grammar_bench.py - what constrained decoding costs per token: zili serve's decode speed with a nested
json_schema against the same requests unconstrained, one client and 16 at once; and, side by side, llama.cpp's
grammar sampling (llama-cpp-python, the reference build of scripts/setup.sh) with and without the same schema.

  .venv/bin/python bench/grammar_bench.py                      # SmolLM2 (49,152-token vocabulary)
  .venv/bin/python bench/grammar_bench.py --model models/gemma-3-270m-q4_k_m.gguf   # 262,144 tokens
  .venv/bin/python bench/grammar_bench.py --no-llama           # zili only

Speed is completion tokens over the decode time (the time after the first token), summed over the requests of a
level. Unconstrained replies run to max_tokens (ignore_eos); constrained ones end where the JSON does, or at
max_tokens (the schema's long strings make that rare), so the two are compared per token. Not a test: numbers
depend on the machine.
"""
import argparse
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string", "maxLength": 80},
    "people": {"type": "array", "maxItems": 8, "items": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 6}},
        "required": ["name", "age", "tags"], "additionalProperties": False}},
    "summary": {"type": "string", "maxLength": 300}},
    "required": ["title", "people", "summary"], "additionalProperties": False}
ASK = [{"role": "user", "content": "Invent a story about a few people and describe it as JSON."}]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(url, body):
    """One streamed request: (completion tokens, seconds after the first content event)."""
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    first = None
    n = 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if line.startswith(b"data: {"):
                ch = json.loads(line[6:])
                if ch.get("usage"):
                    n = ch["usage"]["completion_tokens"]
                if ch["choices"] and ch["choices"][0]["delta"].get("content") and first is None:
                    first = time.perf_counter()
    return n, time.perf_counter() - (first or time.perf_counter())


def level(url, clients, per_client, max_tokens, constrained):
    body = {"messages": ASK, "max_tokens": max_tokens, "temperature": 1, "stream": True,
            "stream_options": {"include_usage": True}}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "story", "schema": SCHEMA}}
    else:
        body["ignore_eos"] = True
    jobs = [dict(body, seed=i) for i in range(clients * per_client)]
    with cf.ThreadPoolExecutor(clients) as ex:
        res = list(ex.map(lambda b: one(url, b), jobs))
    toks = sum(n - 1 for n, _ in res)
    secs = sum(t for _, t in res) / clients
    return toks / secs if secs > 0 else 0.0


def bench_zili(args):
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    proc = subprocess.Popen([args.bin, "serve", "-m", args.model, "--port", str(port), "--host", "127.0.0.1",
                             "--parallel", "16", "-c", "4096"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        level(url, 1, 1, 8, False)  # warm-up
        out = {}
        for clients in (1, 16):
            plain, cons = [], []
            for _ in range(args.repeat):  # interleaved, the median counts
                plain.append(level(url, clients, args.per_client, args.max_tokens, False))
                cons.append(level(url, clients, args.per_client, args.max_tokens, True))
            p, c = sorted(plain)[len(plain) // 2], sorted(cons)[len(cons) // 2]
            out[clients] = (p, c)
            print("zili  %2d client(s): plain %7.1f t/s, json_schema %7.1f t/s, ratio %.3f" % (clients, p, c, c / p),
                  flush=True)
        m = {}
        for line in urllib.request.urlopen(url + "/metrics", timeout=10).read().decode().splitlines():
            if line.startswith("zili_grammar_"):
                k, v = line.split()
                m[k] = float(v)
        toks, masks = m.get("zili_grammar_tokens_total", 0), m.get("zili_grammar_masks_total", 0)
        print("zili  grammar-constrained tokens %d, whole-vocabulary masks %d (%.2f%%)" %
              (toks, masks, 100 * masks / toks if toks else 0), flush=True)
        return out
    finally:
        proc.terminate()
        proc.wait()


def bench_llama(args):
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    llm = llama_cpp.Llama(args.model, n_ctx=4096, n_threads=os.cpu_count(), verbose=False, use_mmap=False)
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    prompt = "Invent a story about a few people and describe it as JSON.\n"
    res = {}
    for name, g in (("plain", None), ("json_schema", grammar)):
        rates = []
        for rep in range(args.repeat):
            first, n = None, 0
            for _ in llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=1, seed=rep, stream=True,
                                           grammar=g, logit_bias=None):
                n += 1
                if first is None:
                    first = time.perf_counter()
            rates.append((n - 1) / (time.perf_counter() - first) if n > 1 else 0.0)
        res[name] = sorted(rates)[len(rates) // 2]
    print("llama.cpp  1 client : plain %7.1f t/s, json_schema %7.1f t/s, ratio %.3f" %
          (res["plain"], res["json_schema"], res["json_schema"] / res["plain"]), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "zili"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-llama", action="store_true")
    args = ap.parse_args()
    print("model", os.path.basename(args.model), "| cpu", os.cpu_count(), "threads", flush=True)
    bench_zili(args)
    if not args.no_llama:
        bench_llama(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
