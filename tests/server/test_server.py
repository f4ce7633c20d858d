"""zili serve through the official openai SDK and plain HTTP (SSE framing, errors, disconnects, metrics).

Greedy results are compared between ways of asking (alone vs 16 at once, streamed vs whole), never against
values the server produced in the same way, so each test can fail."""
import concurrent.futures as cf
import http.client
import json
import os
import re
import signal
import socket
import time
import urllib.request

import openai
import pytest

from conftest import SLOW, Server, metrics

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "def fibonacci(n):",
    "List three colors:",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "Water boils at",
    "In 1492, Columbus",
    "My favourite programming language is",
    "Question: what is 12 times 12? Answer:",
    "Les fleurs du jardin sont",
    "The three laws of robotics are",
    "Photosynthesis is the process by which",
    "A haiku about autumn:",
    "SELECT name FROM users WHERE",
    "The best way to learn a language is",
    "Dear Sir or Madam, I am writing to",
]


def client(srv, key="none"):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=120 * SLOW)


def post_raw(srv, path, body, headers=None):
    """POST bytes; returns (status, headers, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def greedy_completion(srv, prompt, n=24, **kw):
    r = client(srv).completions.create(model="m", prompt=prompt, max_tokens=n, temperature=0,
                                       extra_body={"ignore_eos": True}, **kw)
    return r


# ---- basics ---------------------------------------------------------------------------------------------------

def test_health_models(server):
    h = json.loads(urllib.request.urlopen(server.url + "/health").read())
    assert h["status"] == "ok"
    models = client(server).models.list()
    assert models.data[0].id.endswith(".gguf")
    page = urllib.request.urlopen(server.url + "/").read().decode()
    assert "<html>" in page and "/v1/chat/completions" in page


def test_chat_completion(server):
    r = client(server).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        max_tokens=40, temperature=0)
    assert r.object == "chat.completion"
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert "Paris" in c.message.content
    assert c.finish_reason == "stop"
    assert r.usage.prompt_tokens > 10
    assert r.usage.completion_tokens >= 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_length(server):
    r = greedy_completion(server, PROMPTS[0], n=5)
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert r.usage.prompt_tokens == 5
    assert "Paris" in r.choices[0].text


def test_stream_equals_whole(server):
    whole = greedy_completion(server, PROMPTS[1], n=30).choices[0].text
    parts, usage, finish = [], None, None
    for ch in client(server).completions.create(model="m", prompt=PROMPTS[1], max_tokens=30, temperature=0,
                                                 stream=True, stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True}):
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            parts.append(c.text)
            finish = c.finish_reason or finish
    assert "".join(parts) == whole
    assert finish == "length"
    assert usage.completion_tokens == 30


def test_chat_stream(server):
    msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    whole = client(server).chat.completions.create(model="m", messages=msgs, max_tokens=30, temperature=0)
    parts, roles = [], []
    for ch in client(server).chat.completions.create(model="m", messages=msgs, max_tokens=30, temperature=0,
                                                      stream=True):
        assert ch.object == "chat.completion.chunk"
        for c in ch.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            if c.delta.content:
                parts.append(c.delta.content)
    assert roles[:1] == ["assistant"]
    assert "".join(parts) == whole.choices[0].message.content


def test_sse_framing(server):
    body = json.dumps({"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    status, headers, data = post_raw(server, "/v1/completions", body)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    text = data.decode()
    assert text.endswith("data: [DONE]\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["completion_tokens"] == 4
    assert all(o["usage"] is None for o in objs[:-1])
    assert objs[-2]["choices"][0]["finish_reason"] == "length"


def test_utf8_deltas(server):
    """Streamed deltas of a reply full of multibyte characters: each is valid UTF-8 (no U+FFFD from a split)
    and together they equal the whole reply."""
    msgs = [{"role": "user", "content": "Écris une phrase en chinois et des emojis: 你好世界 🌍🚀"}]
    whole = client(server).chat.completions.create(model="m", messages=msgs, max_tokens=48, temperature=0)
    text = whole.choices[0].message.content
    body = json.dumps({"messages": msgs, "max_tokens": 48, "temperature": 0, "stream": True}).encode()
    status, _, data = post_raw(server, "/v1/chat/completions", body)
    assert status == 200
    parts = []
    for e in data.decode("utf-8").split("\n\n"):
        if e.startswith("data: {"):
            d = json.loads(e[6:])["choices"]
            if d and d[0]["delta"].get("content"):
                parts.append(d[0]["delta"]["content"])
    assert "".join(parts) == text
    assert "\ufffd" not in text


def test_stop_strings(server):
    full = greedy_completion(server, PROMPTS[1], n=40).choices[0].text
    assert len(full) > 30
    stop = full[20:24]
    expect = full[:full.index(stop)]
    r = greedy_completion(server, PROMPTS[1], n=40, stop=["\u0001never", stop])
    assert r.choices[0].text == expect
    assert r.choices[0].finish_reason == "stop"
    parts = []
    for ch in client(server).completions.create(model="m", prompt=PROMPTS[1], max_tokens=40, temperature=0,
                                                 stop=stop, stream=True, extra_body={"ignore_eos": True}):
        parts += [c.text for c in ch.choices]
    assert "".join(parts) == expect


def test_seed(server):
    def run(seed):
        return client(server).completions.create(model="m", prompt=PROMPTS[1], max_tokens=24, temperature=1.0,
                                                  seed=seed, extra_body={"ignore_eos": True}).choices[0].text
    a, b, c = run(7), run(7), run(8)
    assert a == b
    assert a != c


def test_logprobs(server):
    r = client(server).chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=3, temperature=0, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs.content
    assert 1 <= len(lp) <= 3
    for t in lp:
        assert t.logprob <= 0
        assert len(t.top_logprobs) == 3
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
        assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5  # greedy: the chosen token is the top one


def test_tokenize_roundtrip(server):
    text = "Hello world, ça va? 你好"
    _, _, data = post_raw(server, "/tokenize", json.dumps({"content": text}).encode())
    toks = json.loads(data)["tokens"]
    assert toks[:2] == [19556, 905]  # "Hello", " world" in SmolLM2's vocabulary
    _, _, data = post_raw(server, "/detokenize", json.dumps({"tokens": toks}).encode())
    assert json.loads(data)["content"] == text


# ---- errors ---------------------------------------------------------------------------------------------------

def error_of(status, data):
    e = json.loads(data)["error"]
    assert set(e) >= {"message", "type", "param", "code"}
    return status, e


@pytest.mark.parametrize("body,param", [
    (b"{not json", None),
    (b"\xff\xfe{}", None),
    (b'{"prompt": "a\xc3"}', None),  # invalid UTF-8 inside a string
    (b"[1, 2]", None),
    (b'{"prompt": "hi", "n": 2}', "n"),
    (b'{"prompt": "hi", "max_tokens": 0}', "max_tokens"),
    (b'{"prompt": "hi", "max_tokens": "ten"}', "max_tokens"),
    (b'{"prompt": "hi", "temperature": 5}', "temperature"),
    (b'{"prompt": "hi", "logit_bias": {"49152": 1}}', "logit_bias"),
    (b'{"prompt": "hi", "logit_bias": {"abc": 1}}', "logit_bias"),
    (b'{"prompt": "hi", "stop": 3}', "stop"),
    (b'{"prompt": ["a", "b"]}', "prompt"),
    (b'{"prompt": [1, 99999]}', "prompt"),
    (b'{"max_tokens": 3}', "prompt"),
])
def test_bad_request(server, body, param):
    status, e = error_of(*post_raw(server, "/v1/completions", body)[::2])
    assert status == 400
    assert e["type"] == "invalid_request_error"
    assert e["param"] == param


def test_bad_chat(server):
    with pytest.raises(openai.BadRequestError) as ex:
        client(server).chat.completions.create(model="m", messages=[{"role": "function", "content": "x"}])
    assert "role" in str(ex.value)
    with pytest.raises(openai.BadRequestError):
        client(server).chat.completions.create(model="m", messages=[])


def test_prompt_too_long(server):
    with pytest.raises(openai.BadRequestError) as ex:
        client(server).completions.create(model="m", prompt="word " * 1500, max_tokens=4)
    assert "context" in str(ex.value)


def test_body_limit_and_routes(server):
    status, _, data = post_raw(server, "/v1/completions", b'{"prompt": "' + b"a" * 70000 + b'"}')
    assert status == 413
    error_of(status, data)
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", "/v1/nothing")
    r = c.getresponse()
    assert r.status == 404
    error_of(r.status, r.read())
    c.request("GET", "/v1/completions")
    r = c.getresponse()
    assert r.status == 405
    r.read()
    c.close()


def test_auth_and_full_queue(strict_server):
    s = strict_server
    m0 = metrics(s)  # the server is shared with other files' tests (test_ollama_api's key checks): count from here
    with pytest.raises(openai.AuthenticationError):
        client(s, "wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(s, "sekre").completions.create(model="m", prompt="hi", max_tokens=2)
    assert client(s, "sekret").models.list().data
    # health and metrics stay open
    assert urllib.request.urlopen(s.url + "/health").status == 200
    assert urllib.request.urlopen(s.url + "/metrics").status == 200
    status, headers, data = post_raw(s, "/v1/completions", b'{"prompt": "hi"}', {"Authorization": "Bearer sekret"})
    assert status == 503
    assert headers.get("Retry-After") == "1"
    error_of(status, data)
    m = metrics(s)
    for code, n in (("401", 2), ("503", 1)):
        k = 'zili_http_requests_total{code="%s"}' % code
        assert m[k] - m0.get(k, 0) == n


def test_slow_client_times_out(strict_server):
    s = socket.create_connection(("127.0.0.1", strict_server.port), timeout=30)
    t0 = time.time()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
    assert s.recv(100) == b""  # the server hangs up on a body that stops coming
    assert time.time() - t0 < 10
    s.close()


def test_n_refused(server):
    with pytest.raises(openai.BadRequestError) as ex:
        client(server).completions.create(model="m", prompt="hi", n=2, max_tokens=2)
    assert "one choice" in str(ex.value)


# ---- batching, disconnects, prefix cache ---------------------------------------------------------------------

def test_16_concurrent_equal_alone(server):
    alone = [greedy_completion(server, p, n=24).choices[0].text for p in PROMPTS]
    with cf.ThreadPoolExecutor(16) as ex:
        together = list(ex.map(lambda p: greedy_completion(server, p, n=24).choices[0].text, PROMPTS))
    for p, a, t in zip(PROMPTS, alone, together):
        assert t == a, p


def cut_stream(port, prompt):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    body = json.dumps({"prompt": prompt, "max_tokens": 400, "stream": True, "temperature": 0,
                       "ignore_eos": True}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while b"data: " not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.close()
    return b"data: " in got


def test_50_cut_streams_free_kv(server):
    with cf.ThreadPoolExecutor(16) as ex:
        ok = list(ex.map(lambda i: cut_stream(server.port, PROMPTS[i % len(PROMPTS)] + " %d" % i), range(50)))
    assert all(ok)
    deadline = time.time() + 30 * SLOW
    while time.time() < deadline:
        m = metrics(server)
        if m["zili_kv_blocks_used"] == 0 and m["zili_running_sequences"] == 0:
            break
        time.sleep(0.2)
    assert m["zili_kv_blocks_used"] == 0
    assert m["zili_running_sequences"] == 0
    assert m['zili_requests_finished_total{reason="cancelled"}'] >= 50
    assert m["zili_kv_blocks_used"] + m["zili_kv_blocks_cached"] + m["zili_kv_blocks_free"] == \
        m["zili_kv_blocks_total"]
    assert greedy_completion(server, PROMPTS[0], n=5).choices[0].finish_reason == "length"


def test_disconnect_during_prefill(server):
    """A client that hangs up while its long prompt is still being prefilled: cancelled, blocks back."""
    before = metrics(server)
    for stream in (True, False):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        body = json.dumps({"prompt": "count: " + " ".join(str(i) for i in range(150)), "max_tokens": 200,
                           "stream": stream, "ignore_eos": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.3)
        s.close()
    deadline = time.time() + 30 * SLOW
    while time.time() < deadline:
        m = metrics(server)
        done = m['zili_requests_finished_total{reason="cancelled"}'] - \
            before['zili_requests_finished_total{reason="cancelled"}']
        if done >= 2 and m["zili_kv_blocks_used"] == 0:
            break
        time.sleep(0.1)
    assert done == 2
    assert m["zili_kv_blocks_used"] == 0
    # neither ran to its 200 tokens
    assert m["zili_generated_tokens_total"] - before["zili_generated_tokens_total"] < 400


def ttft(srv, msgs):
    t0 = time.time()
    first = None
    usage = None
    for ch in client(srv).chat.completions.create(model="m", messages=msgs, max_tokens=4, temperature=0,
                                                   stream=True, stream_options={"include_usage": True}):
        if first is None and ch.choices and ch.choices[0].delta.content:
            first = time.time() - t0
        if ch.usage:
            usage = ch.usage
    return first, usage


def test_prefix_cache_hit(server):
    system = ("You are a meticulous assistant for a shipping company. " +
              " ".join("Rule %d: always check the manifest, the customs form and the weight of parcel %d." % (i, i)
                       for i in range(30)))
    before = metrics(server)
    t1, u1 = ttft(server, [{"role": "system", "content": system}, {"role": "user", "content": "Hello!"}])
    t2, u2 = ttft(server, [{"role": "system", "content": system}, {"role": "user", "content": "Good morning."}])
    after = metrics(server)
    assert u1.prompt_tokens > 500
    assert after["zili_prefix_cache_hits_total"] >= before["zili_prefix_cache_hits_total"] + 1
    assert u2.prompt_tokens_details.cached_tokens >= u1.prompt_tokens - 32
    print("prefix cache: TTFT %.3f s -> %.3f s, %d of %d prompt tokens cached" %
          (t1, t2, u2.prompt_tokens_details.cached_tokens, u2.prompt_tokens))
    assert t2 < t1


def test_sigterm_exits_zero():
    s = Server("--parallel", "2", "-c", "256", "--grace", "1")
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once upon a time", "max_tokens": 200,
                                                          "stream": True, "ignore_eos": True}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    r.read(10)
    s.proc.send_signal(signal.SIGTERM)
    rest = r.read()  # the stream ends (finished or cancelled) rather than hanging
    assert s.proc.wait(30 * SLOW) == 0
    s.log.close()
    assert isinstance(rest, bytes)
