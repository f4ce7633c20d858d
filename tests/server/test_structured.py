"""Structured output: response_format json_object and GBNF grammars (the `grammar` field, as llama.cpp's server
takes it) constrain sampled text; refusals for what is not supported yet (json_schema, tools).
The grammar engine itself is tested in tests/unit/test_grammar.c."""
import json
import urllib.error
import urllib.request

import pytest

from conftest import Server

ASK = [{"role": "user", "content": "Describe a cat as a JSON object."}]


@pytest.fixture(scope="module")
def srv():
    s = Server("--parallel", "4", "-c", "1024")
    yield s
    assert s.stop() == 0


def post(s, body, path="/v1/chat/completions"):
    req = urllib.request.Request(s.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        if not body.get("stream"):
            return json.loads(r.read())
        text = ""
        for line in r.read().decode().splitlines():
            if line.startswith("data: {"):
                ch = json.loads(line[6:])["choices"][0]
                text += (ch.get("delta") or {}).get("content") or ch.get("text") or ""
        return text


def refused(s, body, param):
    with pytest.raises(urllib.error.HTTPError) as e:
        post(s, body)
    assert e.value.code == 400
    err = json.loads(e.value.read())["error"]
    if param:
        assert err["param"] == param, err
    return err["message"]


def test_json_object_replies_parse(srv):
    """20 sampled replies (temperature 1): each that ends by itself is one JSON object; the others ran out of
    max_tokens ("length") and are prefixes of one."""
    stopped = 0
    for seed in range(20):
        r = post(srv, {"messages": ASK, "max_tokens": 128, "temperature": 1, "seed": seed,
                       "response_format": {"type": "json_object"}})
        c = r["choices"][0]
        text = c["message"]["content"]
        assert text.startswith("{"), text
        if c["finish_reason"] == "stop":
            assert isinstance(json.loads(text), dict), text
            stopped += 1
        else:
            assert c["finish_reason"] == "length"
    assert stopped >= 3, stopped


@pytest.mark.parametrize("grammar,check", [
    ('root ::= "yes" | "no"', lambda t: t in ("yes", "no")),
    ("root ::= [0-9]{3}", lambda t: len(t) == 3 and t.isdigit()),
    ('root ::= "(" [a-z]+ ")" [ ]? "!"', lambda t: t.startswith("(") and t.endswith("!") and ")" in t),
])
def test_grammar_field(srv, grammar, check):
    for seed in range(4):
        r = post(srv, {"messages": ASK, "max_tokens": 48, "temperature": 1, "seed": seed, "grammar": grammar})
        c = r["choices"][0]
        assert c["finish_reason"] == "stop" and check(c["message"]["content"]), c


def test_grammar_on_completions_and_streamed(srv):
    body = {"prompt": "The answer is", "max_tokens": 16, "temperature": 1, "seed": 7, "grammar": "root ::= [0-9]+"}
    whole = post(srv, body, "/v1/completions")["choices"][0]["text"]
    assert whole.isdigit()
    assert post(srv, {**body, "stream": True}, "/v1/completions") == whole


def test_refusals(srv):
    msg = refused(srv, {"messages": ASK, "grammar": "root ::= other"}, None)
    assert "grammar" in msg and "'other'" in msg
    refused(srv, {"messages": ASK, "grammar": 5}, "grammar")
    refused(srv, {"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {}}}, "response_format")
    refused(srv, {"messages": ASK, "response_format": {"type": "xml"}}, "response_format")
    refused(srv, {"messages": ASK, "response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'},
            "response_format")
    refused(srv, {"messages": ASK, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools")
    # text is no constraint
    assert post(srv, {"messages": ASK, "max_tokens": 2, "response_format": {"type": "text"}})["choices"]
