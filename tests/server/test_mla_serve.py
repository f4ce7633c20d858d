"""The server on multi-head latent attention (deepseek2, src/model/deepseek2.c): its KV cache holds one latent row
per token and layer (kv_lora_rank + the rope dims, the cache's k_only mode), in paged blocks that the prefix cache
shares like any other. Random-weight models from tests/ref/common.py (DEEPSEEK2_MODELS); skipped, saying so, when
they are absent.

- Batching invariance: a short prompt run alone and in one step with long prompts gets the same logprobs, bit for
  bit (the MoE rows count their expert mates within their own sequence, and attention reads only its own blocks).
- Prefix cache: a second request sharing a long prefix hits cached latent blocks, and its logprobs equal those of
  a server that never caches; a hit that read a wrong block, or a block written in the wrong layout, would differ.
"""
import json
import os
import urllib.request

import pytest

from conftest import SLOW, Server
from test_batch_invariance_kquant import alone_equals_batched, random_model

MLA_MODELS = [random_model("deepseek2-q4_k_m.gguf"), random_model("deepseek2-f16.gguf")]


def need(model):
    if not os.path.exists(model):
        pytest.skip(f"{model} is absent (tests/ref/common.py makes it)")


@pytest.mark.parametrize("model", MLA_MODELS, ids=os.path.basename)
def test_mla_short_prompt_alone_equals_batched(model):
    need(model)
    s = Server("--parallel", "6", "-c", "256", "--no-prefix-cache", model=model)
    try:
        alone_equals_batched(s, 4)
    finally:
        assert s.stop() == 0


def complete(srv, prompt, n=6):
    body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 2}).encode()
    req = urllib.request.Request(srv.url + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300 * SLOW) as r:
        j = json.loads(r.read())
    ch = j["choices"][0]
    return (ch["text"], ch["logprobs"]["token_logprobs"]), j["usage"]


def metric(srv, name):
    with urllib.request.urlopen(srv.url + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


@pytest.mark.parametrize("model", MLA_MODELS[:1], ids=os.path.basename)
def test_mla_prefix_cache_hit_matches_uncached(model):
    need(model)
    prefix = " ".join("Item %d: the parcel weighs %d grams and goes to dock %d." % (i, 37 * i % 500, i % 7)
                      for i in range(12))
    tails = [" The first question is", " Another question entirely:"]
    cold = Server("--parallel", "2", "-c", "512", "--no-prefix-cache", model=model)
    try:
        want = [complete(cold, prefix + t)[0] for t in tails]
    finally:
        assert cold.stop() == 0
    warm = Server("--parallel", "2", "-c", "512", model=model)
    try:
        got0, u0 = complete(warm, prefix + tails[0])
        hits = metric(warm, "zili_prefix_cache_hits_total")
        got1, u1 = complete(warm, prefix + tails[1])
        assert metric(warm, "zili_prefix_cache_hits_total") >= hits + 1
        assert u0["prompt_tokens"] > 100
        # the shared prefix minus at most one partial block and the token that must be recomputed
        assert u1["prompt_tokens_details"]["cached_tokens"] >= u0["prompt_tokens"] - 48
        print("MLA prefix cache: %d of %d prompt tokens cached" % (u1["prompt_tokens_details"]["cached_tokens"], u1["prompt_tokens"]))
        assert [got0, got1] == want
    finally:
        assert warm.stop() == 0
