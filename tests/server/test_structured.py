"""Structured output: response_format json_object and GBNF grammars (the `grammar` field, as llama.cpp's server
takes it) constrain sampled text, json_schema replies validate; refusals for what is not supported. Tool calls: test_tools.py.
The grammar engine itself is tested in tests/unit/test_grammar.c."""
import json
import os
import re
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, SANITIZED, Server

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


def schema_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}}


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
    for schema, word in [({"type": "number", "multipleOf": 3}, "'multipleOf'"), ({"type": "string", "pattern": "a+"},
                         "'pattern'"), ({"allOf": [{}]}, "'allOf'"), ({"$ref": "#/$defs/x"}, "$ref"),
                         ({"type": "date"}, "'date'"), ({"type": "string", "format": "email"}, "'email'")]:
        msg = refused(srv, {"messages": ASK, "response_format": schema_format(schema)}, "response_format")
        assert word in msg, (word, msg)
    refused(srv, {"messages": ASK, "response_format": {"type": "xml"}}, "response_format")
    refused(srv, {"messages": ASK, "response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'},
            "response_format")
    # text is no constraint
    assert post(srv, {"messages": ASK, "max_tokens": 2, "response_format": {"type": "text"}})["choices"]


# ---- json_schema --------------------------------------------------------------------------------------------

DATE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def valid(v, sch, root):
    """A validator written here for the keywords the server supports (independent of its grammar)."""
    if sch is True or sch == {}:
        return True
    if "$ref" in sch:
        return valid(v, root["$defs"][sch["$ref"].split("/")[-1]], root)
    if "const" in sch:
        return v == sch["const"] and type(v) is type(sch["const"])
    if "enum" in sch:
        return any(v == e and type(v) is type(e) for e in sch["enum"])
    for key in ("anyOf", "oneOf"):
        if key in sch:
            return any(valid(v, s, root) for s in sch[key])
    types = sch.get("type")
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    return any(valid_type(v, t, sch, root) for t in types)


def valid_type(v, t, sch, root):
    if t == "null":
        return v is None
    if t == "boolean":
        return isinstance(v, bool)
    if t in ("integer", "number"):
        return (isinstance(v, int if t == "integer" else (int, float)) and not isinstance(v, bool) and
                v >= sch.get("minimum", v) and v <= sch.get("maximum", v) and
                v > sch.get("exclusiveMinimum", v - 1) and v < sch.get("exclusiveMaximum", v + 1))
    if t == "string":
        if not isinstance(v, str) or len(v) < sch.get("minLength", 0) or len(v) > sch.get("maxLength", 1 << 30):
            return False
        fmt = {"date": DATE, "time": TIME, "uuid": UUID}.get(sch.get("format"))
        if sch.get("format") == "date-time":
            return "T" in v and DATE.match(v.split("T")[0]) and TIME.match(v.split("T", 1)[1])
        return not fmt or bool(fmt.match(v))
    if t == "array":
        return (isinstance(v, list) and sch.get("minItems", 0) <= len(v) <= sch.get("maxItems", 1 << 30) and
                all(valid(x, sch.get("items", True), root) for x in v))
    if t == "object":
        if not isinstance(v, dict):
            return False
        props = sch.get("properties", {})
        if any(k not in v for k in sch.get("required", [])):
            return False
        if sch.get("additionalProperties") is False and any(k not in props for k in v):
            return False
        return all(valid(v[k], props[k], root) for k in v if k in props)
    return False


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
     "required": ["colour"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"},
                                      "at": {"type": "string", "format": "time"},
                                      "id": {"type": "string", "format": "uuid"}},
     "required": ["when", "at", "id"]},
    {"type": "object", "properties": {"stamp": {"type": "string", "format": "date-time"}}, "required": ["stamp"]},
    {"anyOf": [{"type": "number"}, {"type": "string", "minLength": 2, "maxLength": 5}]},
    {"type": "object", "properties": {"kind": {"const": "point"}, "x": {"type": "number"}, "y": {"type": "number"},
                                      "label": {"type": ["string", "null"]}},
     "required": ["kind", "x", "y"], "additionalProperties": False},
    {"$defs": {"pet": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                                        "legs": {"type": "integer"}}, "required": ["name"]}},
     "type": "object", "properties": {"pets": {"type": "array", "items": {"$ref": "#/$defs/pet"}, "maxItems": 3}},
     "required": ["pets"]},
    {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {
        "c": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}}, "required": ["c"]}}, "required": ["b"]},
        "note": {"type": "string", "maxLength": 16}}, "required": ["a"]},
    {"type": "object"},
    {"type": "object", "properties": {"year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                                      "delta": {"type": "integer", "exclusiveMinimum": -50, "exclusiveMaximum": 7},
                                      "n": {"type": "integer", "minimum": 12},
                                      "score": {"type": "number", "minimum": -1.5, "exclusiveMaximum": 2.25},
                                      "p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
     "required": ["year", "delta", "n", "score", "p"], "additionalProperties": False},
]


@pytest.mark.parametrize("k", range(len(SCHEMAS)))
def test_json_schema_replies_validate(srv, k):
    """Sampled replies (temperature 1) under each schema: every one that ends by itself parses and validates."""
    assert sample_schema(srv, SCHEMAS[k], 4 if SANITIZED else 10) >= 1, SCHEMAS[k]


def sample_schema(s, schema, seeds):
    """Replies under schema for seeds 0 .. seeds-1 at temperature 1: each that ends by itself must parse and
    validate; the others end with "length". Returns how many ended by themselves."""
    stopped = 0
    for seed in range(seeds):
        r = post(s, {"messages": ASK, "max_tokens": 160, "temperature": 1, "seed": seed,
                     "response_format": schema_format(schema)})
        c = r["choices"][0]
        if c["finish_reason"] == "stop":
            v = json.loads(c["message"]["content"])
            assert valid(v, schema, schema), (schema, c["message"]["content"])
            stopped += 1
        else:
            assert c["finish_reason"] == "length", c
    return stopped


GEMMA = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")


def test_json_schema_replies_validate_large_vocabulary():
    """The same schemas on Gemma 3 270M, whose vocabulary has 262,144 tokens: every reply that ends by itself
    parses and validates, and most do end."""
    s = Server("--parallel", "4", "-c", "1024", model=GEMMA)
    try:
        seeds = 2 if SANITIZED else 10
        stopped = sum(sample_schema(s, schema, seeds) for schema in SCHEMAS)
        assert stopped >= seeds * len(SCHEMAS) // 2, stopped
    finally:
        assert s.stop() == 0


def test_openai_sdk_parse_with_a_pydantic_model(srv):
    """The official SDK's chat.completions.parse(response_format=Model), unchanged: the reply parses into the
    model (the SDK sends a strict json_schema made from it)."""
    openai = pytest.importorskip("openai")
    pydantic = pytest.importorskip("pydantic")

    class Cat(pydantic.BaseModel):
        name: str
        age: int
        indoor: bool

    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none")
    for seed in range(3):
        r = client.chat.completions.parse(model="zili", messages=ASK, response_format=Cat, max_tokens=80, seed=seed,
                                          temperature=1)
        assert r.choices[0].finish_reason == "stop"
        assert isinstance(r.choices[0].message.parsed, Cat)
