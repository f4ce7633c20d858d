"""Hostile HTTP clients against zili serve: slow drips, huge headers and bodies, broken JSON, wrong types, bad
token ids, absurd max_tokens, over-long prompts, hundreds of connect-and-drop cycles and a cancellation storm.

After each test the server must still answer /health, and every KV block must be back (zili_kv_blocks_used and
zili_running_sequences return to 0); the connect-and-drop test also checks that the server's anonymous memory stops
growing. Each test module uses its own server (module scope, a 2 s read timeout) so that a crash is attributed here.

ZILI_SANITIZED=1 (set by `make asan-server`, which runs these tests against an ASan + UBSan build of zili): the
load tests run fewer rounds with longer deadlines, and the memory check is not made (ASan's quarantine holds freed
memory on purpose); leaks are then caught by LeakSanitizer when the server exits, which fails the module's teardown.
"""
import concurrent.futures as cf
import json
import os
import random
import socket
import time
import urllib.request

import pytest

from conftest import SANITIZED, SLOW, Server, healthy, metrics

TIMEOUT_S = 2


@pytest.fixture(scope="module")
def srv():
    # --kv-prefault: the KV pool is resident from the start, so later growth of anonymous memory is not its pages
    s = Server("--parallel", "8", "-c", "512", "--max-body", "65536", "--timeout", str(TIMEOUT_S), "--kv-prefault")
    yield s
    assert s.stop() == 0, "zili serve did not exit cleanly"


def mem_kb(s):
    """(anonymous, file-backed) resident memory of the server in kB."""
    with open(f"/proc/{s.proc.pid}/status") as f:
        d = {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("RssAnon:", "RssFile:"))}
    return d["RssAnon"], d["RssFile"]


def raw(s, data, timeout=30, read=True):
    """Sends raw bytes on a fresh connection; returns (status or None, whole response)."""
    c = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    try:
        c.sendall(data)
        got = b""
        while read:
            try:
                chunk = c.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                head, _, body = got.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                        read = False
    finally:
        c.close()
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.") else None
    return status, got


def post(s, path, body, extra_headers=b""):
    if isinstance(body, str):
        body = body.encode()
    req = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n%s"
           b"Content-Length: %d\r\n\r\n" % (path.encode(), extra_headers, len(body))) + body
    status, got = raw(s, req)
    body = got.partition(b"\r\n\r\n")[2]
    return status, body


def error(s, path, body, param="any"):
    status, data = post(s, path, body)
    assert status == 400, (status, data[:300])
    e = json.loads(data)["error"]
    assert e["type"] == "invalid_request_error" and e["message"]
    if param != "any":
        assert e["param"] == param, e
    return e


# ---- slow and huge clients -------------------------------------------------------------------------------------

def test_slow_drip_body_is_cut_off(srv):
    """A body that arrives one byte at a time, each within the idle timeout, must not hold a connection forever."""
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    t0, closed = time.time(), False
    while time.time() - t0 < 6 * TIMEOUT_S:
        try:
            c.sendall(b" ")
            c.settimeout(TIMEOUT_S / 2)
            if c.recv(4096) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        # any response (e.g. 408) also counts as being let go
        closed = True
        break
    c.close()
    assert closed, "a slow-drip client kept its connection for %.0f s" % (time.time() - t0)
    healthy(srv)


def test_slow_drip_headers_idle_timeout(srv):
    """Headers that stop coming: the head deadline (here the read timeout, the lower of the two) frees the connection
    with a 408."""
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    t0 = time.time()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    reply = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        reply += b
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408 "), reply
    assert time.time() - t0 < 5 * TIMEOUT_S
    c.close()
    healthy(srv)


def test_huge_headers(srv):
    for n_headers, size in [(1, 200_000), (5000, 20)]:
        hdrs = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * size) for i in range(n_headers))
        status, _ = raw(srv, b"GET /health HTTP/1.1\r\nHost: x\r\n" + hdrs + b"\r\n")
        assert status in (None, 413, 431, 400), status
    healthy(srv)


def test_huge_bodies(srv):
    status, data = post(srv, "/v1/completions", b'{"prompt": "' + b"a" * 2_000_000 + b'"}')
    assert status == 413, status
    # declared far larger than sent, then the client goes away
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{\"prompt\":")
    c.close()
    # chunked, past the limit
    chunk = b"a" * 60000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    status, _ = raw(srv, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n" + body)
    assert status == 413, status
    healthy(srv)


# ---- malformed JSON and parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"prompt": "hi", "max_tokens": 4',           # truncated
    b'{"prompt": "hi', b"", b"{", b"nul", b"\x00\x01\x02",
    b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deeply nested (body under the 64 KiB limit? no: 200k)
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"prompt": "hi", "prompt": "again"}',          # duplicate keys
    b'{"prompt": "a\xff\xfeb"}',                     # invalid UTF-8
    b'{"prompt": "\xed\xa0\x80"}',                   # a UTF-8-encoded surrogate
    b'{"prompt": "hi\\ud800"}',                      # a lone surrogate escape
])
def test_malformed_json(srv, body):
    status, data = post(srv, "/v1/completions", body)
    assert status in (400, 413), (status, data[:200])
    json.loads(data)["error"]
    healthy(srv)


WRONG_TYPES = [
    ('{"prompt": 42}', "prompt"), ('{"prompt": {"a": 1}}', "prompt"), ('{"prompt": [1, "a"]}', "prompt"),
    ('{"prompt": [1.5]}', "prompt"), ('{"prompt": []}', "prompt"), ('{"prompt": null}', "prompt"),
    ('{"prompt": "hi", "temperature": "1"}', "temperature"), ('{"prompt": "hi", "top_p": []}', "top_p"),
    ('{"prompt": "hi", "top_k": 1.5}', "top_k"), ('{"prompt": "hi", "seed": "x"}', "seed"),
    ('{"prompt": "hi", "stream": "yes"}', "stream"), ('{"prompt": "hi", "stop": [1]}', "stop"),
    ('{"prompt": "hi", "stop": ["a\\u0000b"]}', None), ('{"prompt": "hi", "stop": [""]}', "stop"),
    ('{"prompt": "hi", "logit_bias": []}', "logit_bias"), ('{"prompt": "hi", "logit_bias": {"1": "x"}}', "logit_bias"),
    ('{"prompt": "hi", "logit_bias": {"1": 1e308}}', "logit_bias"), ('{"prompt": "hi", "n": "1"}', "n"),
    ('{"prompt": "hi", "stream_options": 3}', "stream_options"), ('{"prompt": "hi", "logprobs": 99}', "logprobs"),
    ('{"prompt": "hi", "model": 3}', "model"), ('{"prompt": "hi", "temperature": NaN}', None),
]


@pytest.mark.parametrize("body,param", WRONG_TYPES)
def test_wrong_types(srv, body, param):
    error(srv, "/v1/completions", body, param)


CHAT_WRONG = [
    '{"messages": "hi"}', '{"messages": [1]}', '{"messages": [{"role": "user"}]}',
    '{"messages": [{"role": "user", "content": 5}]}', '{"messages": [{"role": ["user"], "content": "x"}]}',
    '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}',
    '{"messages": [{"role": "user", "content": [{"type": "text"}]}]}',
    '{"messages": [{"role": "function", "content": "x"}]}', '{"messages": [{"role": "user", "content": "x"}], '
    '"top_logprobs": 3}',
]


@pytest.mark.parametrize("body", CHAT_WRONG)
def test_chat_wrong_shapes(srv, body):
    error(srv, "/v1/chat/completions", body)


@pytest.mark.parametrize("value", ["0", "-1", "9223372036854775807", "9223372036854775808", "18446744073709551616",
                                   "1e30", "513"])
def test_max_tokens_absurd(srv, value):
    for key in ("max_tokens", "max_completion_tokens"):
        error(srv, "/v1/completions", '{"prompt": "hi", "%s": %s}' % (key, value))
    healthy(srv)


def test_prompt_longer_than_context(srv):
    e = error(srv, "/v1/completions", json.dumps({"prompt": "word " * 2000}), "prompt")
    assert "context" in e["message"]
    e = error(srv, "/v1/completions", json.dumps({"prompt": [1] * 600}), "prompt")
    assert "context" in e["message"]
    e = error(srv, "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "x " * 2000}]}),
              "messages")
    assert "context" in e["message"]
    healthy(srv)


BAD_IDS = ["-1", "-2147483649", "49152", "2147483648", "9223372036854775807", "-9223372036854775808"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_token_ids(srv, bad):
    error(srv, "/detokenize", '{"tokens": [1, %s]}' % bad, "tokens")
    error(srv, "/v1/completions", '{"prompt": [1, %s]}' % bad, "prompt")
    error(srv, "/v1/completions", '{"prompt": "hi", "logit_bias": {"%s": 1}}' % bad, "logit_bias")
    error(srv, "/v1/chat/completions",
          '{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"%s": 1}}' % bad, "logit_bias")


@pytest.mark.parametrize("key", ["", " 1", "1 ", "0x10", "1e2", "+1", "99999999999999999999999", "1.0"])
def test_bad_logit_bias_keys(srv, key):
    error(srv, "/v1/completions", json.dumps({"prompt": "hi", "logit_bias": {key: 1}}), "logit_bias")


def test_tokenize_detokenize_types(srv):
    for body in ['{"content": 5}', '{"content": "x", "add_special": 1}', '{"tokens": "1"}', '{"tokens": [1.5]}',
                 '{"tokens": [null]}', '{}']:
        path = "/tokenize" if "content" in body or body == "{}" else "/detokenize"
        error(srv, path, body)
    status, data = post(srv, "/detokenize", '{"tokens": []}')
    assert status == 200 and json.loads(data)["content"] == ""
    healthy(srv)


# ---- disconnects ----------------------------------------------------------------------------------------------

def stream_and_drop(port, i, after_events=1):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    body = json.dumps({"prompt": "Tell me a long story about dragon number %d." % i, "max_tokens": 300,
                       "stream": True, "ignore_eos": True, "temperature": 1.0, "seed": i}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    got = b""
    while got.count(b"data: ") < after_events:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    s.close()
    return b"data: " in got


def test_300_connect_and_drop_mid_stream(srv):
    """300 streams cut after 1-5 events, in three rounds of 100: every one cancelled, every KV block back, and
    anonymous resident memory flat after the first round (which warms up scratch buffers and malloc arenas; the KV
    pool is resident from the start, --kv-prefault). Under a sanitizer: three rounds of 20, no memory check."""
    per_round = 20 if SANITIZED else 100
    healthy(srv)
    before = metrics(srv)
    mem = [mem_kb(srv)]
    for rnd in range(3):
        with cf.ThreadPoolExecutor(16) as ex:
            ok = list(ex.map(lambda i: stream_and_drop(srv.port, i, 1 + i % 5),
                             range(per_round * rnd, per_round * (rnd + 1))))
        assert all(ok)
        healthy(srv)
        mem.append(mem_kb(srv))
    m = healthy(srv)
    cancelled = m['zili_requests_finished_total{reason="cancelled"}'] - \
        before['zili_requests_finished_total{reason="cancelled"}']
    assert cancelled >= 3 * per_round - 10, cancelled
    print("resident kB (anon, file): start %s, after each round %s" % (mem[0], mem[1:]))
    if not SANITIZED:
        grown = mem[3][0] - mem[1][0]
        assert grown < 16 * 1024, f"anonymous memory grew {grown} kB over rounds 2-3: {mem}"


def test_cancellation_storm(srv):
    """64 clients at once (8 slots: most queue), each hanging up at a random moment: before the reply, in the
    queue, mid-stream, or mid-body of a non-streamed request."""
    rnd = random.Random(6)

    def one(i):
        stream = i % 3 != 0
        body = json.dumps({"prompt": "Storm %d: " % i + "rain " * rnd.randint(1, 200), "max_tokens": 200,
                           "stream": stream, "ignore_eos": True}).encode()
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        if i % 7 == 0:  # hang up half-way through the body
            s.sendall(head + body[:len(body) // 2])
        else:
            s.sendall(head + body)
        time.sleep(rnd.random() * 1.5)
        s.close()

    for _ in range(1 if SANITIZED else 2):
        with cf.ThreadPoolExecutor(64) as ex:
            list(ex.map(one, range(64)))
    healthy(srv, deadline_s=60)
    # and it still generates
    status, data = post(srv, "/v1/completions", '{"prompt": "Hello", "max_tokens": 3}')
    assert status == 200 and json.loads(data)["usage"]["completion_tokens"] == 3
