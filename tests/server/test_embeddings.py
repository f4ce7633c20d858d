"""POST /v1/embeddings (src/server/embeddings.c) through the OpenAI SDK and raw HTTP, on random-weight models that
tests/ref/test_embed_ref.py holds to llama.cpp: a bert encoder (served for embeddings only) and a qwen3 decoder
(last-token pooling). The server's vectors must equal `zili embed`'s bit for bit (the same embedder, whose
vectors tests/ref compares with llama.cpp's), alone or among 63 other inputs, in float and base64."""
import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import BIN, SLOW, Server
from test_server import client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
import test_embed_ref as ref  # noqa: E402  (the models and their generator)

TEXTS = ["x", "hello world", "Ünïcödé tëxt — 東京 and emoji 🙂 too", ref.LONG]


@pytest.fixture(scope="module")
def bert():
    s = Server("--parallel", "2", "-c", "512", model=ref.model_path("bert-small-f32"))
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def qwen3():
    s = Server("--parallel", "2", "-c", "512", model=ref.model_path("qwen3-embed-q8_0"))
    yield s
    assert s.stop() == 0


def cli_vectors(model, texts):
    out = subprocess.run([BIN, "embed", "-m", model, "-f", "/dev/stdin", "--json", "-c", "512"],
                         input="\n".join(texts) + "\n", capture_output=True, text=True, timeout=300 * SLOW)
    assert out.returncode == 0, out.stderr
    return np.array(json.loads(out.stdout)["data"], dtype=np.float32)


def post(srv, body, raw=False):
    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(srv.url + "/v1/embeddings", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300 * SLOW) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("which", ["bert", "qwen3"])
def test_sdk_float_and_base64_equal_cli(which, request):
    srv = request.getfixturevalue(which)
    model = ref.model_path("bert-small-f32" if which == "bert" else "qwen3-embed-q8_0")
    want = cli_vectors(model, TEXTS)
    c = client(srv)
    r = c.embeddings.create(model="m", input=TEXTS)
    got = np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)], dtype=np.float32)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert r.usage.prompt_tokens == r.usage.total_tokens > len(TEXTS)
    # the SDK asks for base64 itself when no format is given, and decodes it; ask explicitly over raw HTTP too
    code, j = post(srv, {"input": TEXTS, "encoding_format": "base64"})
    assert code == 200
    b64 = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in j["data"]])
    assert np.array_equal(b64, want)
    code, j = post(srv, {"input": TEXTS[1], "encoding_format": "float"})
    assert code == 200 and j["object"] == "list" and j["data"][0]["object"] == "embedding"
    assert np.array_equal(np.array(j["data"][0]["embedding"], dtype=np.float32), want[1])


def test_alone_equals_among_63_others(bert):
    others = ["passage %d: %s" % (i, "lorem ipsum dolor " * (i % 9)) for i in range(63)]
    code, alone = post(bert, {"input": TEXTS[2]})
    assert code == 200
    code, many = post(bert, {"input": others[:31] + [TEXTS[2]] + others[31:]})
    assert code == 200 and len(many["data"]) == 64
    assert [d["index"] for d in many["data"]] == list(range(64))
    assert many["data"][31]["embedding"] == alone["data"][0]["embedding"]


def test_token_arrays_equal_text(qwen3):
    with urllib.request.urlopen(urllib.request.Request(
            qwen3.url + "/tokenize", json.dumps({"content": TEXTS[1], "add_special": True,
                                                 "parse_special": False}).encode(),
            {"Content-Type": "application/json"}), timeout=60) as r:
        toks = json.loads(r.read())["tokens"]
    _, by_text = post(qwen3, {"input": TEXTS[1]})
    _, one = post(qwen3, {"input": toks})
    _, two = post(qwen3, {"input": [toks, toks[:1]]})
    assert one["data"][0]["embedding"] == by_text["data"][0]["embedding"]
    assert two["data"][0]["embedding"] == by_text["data"][0]["embedding"] and len(two["data"]) == 2
    assert one["usage"]["prompt_tokens"] == len(toks)


BAD = [
    ({}, "input"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": [[]]}, "input"),
    ({"input": 7}, "input"),
    ({"input": [1.5]}, "input"),
    ({"input": ["a", 3]}, "input"),
    ({"input": [-1]}, "input"),
    ({"input": [10 ** 9]}, "input"),
    ({"input": ["a"] * 2049}, "input"),
    ({"input": "word " * 2000}, "input"),  # longer than the 512 positions
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "a", "dimensions": 64}, "dimensions"),
    ({"input": "a", "model": 5}, "model"),
]


@pytest.mark.parametrize("body,param", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_are_400(bert, body, param):
    code, j = post(bert, body)
    assert code == 400, j
    assert j["error"]["param"] == param and j["error"]["message"]


def test_hostile_bodies_and_the_server_lives_on(bert):
    for raw in [b"{", b"[]", b'{"input": "\xff\xfe"}', b'{"input": "a", "input": "b"}']:
        code, j = post(bert, raw, raw=True)
        assert code == 400 and j["error"]["message"]
    code, j = post(bert, {"input": "still here"})
    assert code == 200 and len(j["data"][0]["embedding"]) == 256


def test_dimensions_equal_to_the_width_is_accepted(bert):
    code, j = post(bert, {"input": "a", "dimensions": 256})
    assert code == 200 and len(j["data"][0]["embedding"]) == 256


def test_encoder_refuses_generation(bert):
    req = urllib.request.Request(bert.url + "/v1/completions", json.dumps({"prompt": "hi"}).encode(),
                                 {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 400 and "embeddings" in json.loads(e.value.read())["error"]["message"]


def test_generative_model_embeds_too():
    """SmolLM2 (llama) embeds too: mean pooling of its final hidden states, as llama.cpp's --embedding does."""
    s = Server("--parallel", "2", "-c", "256")
    try:
        code, j = post(s, {"input": ["hello", "world"]})
        assert code == 200 and len(j["data"]) == 2 and j["data"][0]["embedding"] != j["data"][1]["embedding"]
    finally:
        assert s.stop() == 0
