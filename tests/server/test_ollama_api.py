"""Ollama's API on zili serve (/api/*), through the official `ollama` Python client and raw HTTP.

Replies are checked against another way of asking the same server (the OpenAI routes at temperature 0, a stream
against the whole reply), against the model file itself (read with the gguf package), or against the clock, never
against values written down from an earlier run of the code under test."""
import http.client
import json
import os
import time

import gguf
import ollama
import openai
import pytest

from conftest import MODEL, SLOW, Server, healthy

STEM = os.path.basename(MODEL)[:-len(".gguf")]
NAME = STEM + ":latest"
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def oc(srv, **kw):
    return ollama.Client(host=srv.url, timeout=120 * SLOW, **kw)


def oai(srv, key="none"):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=120 * SLOW)


def request(srv, method, path, body=None, headers=None):
    """Raw HTTP: (status, headers with lower-case names, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120 * SLOW)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def gguf_fields():
    """The model file's scalar metadata, read with the gguf package (an independent GGUF reader)."""
    out = {}
    for name, field in gguf.GGUFReader(MODEL).fields.items():
        if len(field.types) == 1 and field.types[0] != gguf.GGUFValueType.ARRAY:
            v = field.contents()
            out[name] = v
    return out


MSGS = [{"role": "user", "content": "Name three fruits."}]


def test_chat_matches_openai_route(server):
    want = oai(server).chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=24)
    got = oc(server).chat(model=NAME, messages=MSGS, options={"temperature": 0, "num_predict": 24}, stream=False)
    assert got.message.role == "assistant"
    assert got.message.content == want.choices[0].message.content
    assert got.eval_count == want.usage.completion_tokens
    assert got.prompt_eval_count == want.usage.prompt_tokens
    assert got.done is True
    assert got.done_reason == ("length" if want.choices[0].finish_reason == "length" else "stop")
    assert got.model == NAME


def test_chat_stream_equals_whole(server):
    c = oc(server)
    opts = {"temperature": 0, "num_predict": 32}
    whole = c.chat(model=STEM, messages=MSGS, options=opts, stream=False)
    parts = list(c.chat(model=STEM, messages=MSGS, options=opts, stream=True))
    assert len(parts) >= 3
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count
    assert parts[-1].prompt_eval_count == whole.prompt_eval_count


def test_generate_matches_chat_and_completion(server):
    c = oc(server)
    opts = {"temperature": 0, "num_predict": 20}
    g = c.generate(model=NAME, prompt="Name three fruits.", options=opts)
    ch = oai(server).chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=20)
    assert g.response == ch.choices[0].message.content
    assert g.eval_count == ch.usage.completion_tokens
    # with a system message, as a two-message chat
    sys_msgs = [{"role": "system", "content": "You answer in French."}] + MSGS
    g2 = c.generate(model=NAME, system="You answer in French.", prompt="Name three fruits.", options=opts)
    ch2 = oai(server).chat.completions.create(model="m", messages=sys_msgs, temperature=0, max_tokens=20)
    assert g2.response == ch2.choices[0].message.content
    # raw: the prompt as written, a completion
    raw = c.generate(model=NAME, prompt="The capital of France is", raw=True, options=opts)
    cp = oai(server).completions.create(model="m", prompt="The capital of France is", temperature=0, max_tokens=20)
    assert raw.response == cp.choices[0].text
    assert raw.prompt_eval_count == cp.usage.prompt_tokens
    # streamed generate gives the same text
    parts = list(c.generate(model=NAME, prompt="Name three fruits.", options=opts, stream=True))
    assert "".join(p.response for p in parts) == g.response and parts[-1].done


def test_options_map_to_the_engine(server):
    c = oc(server)
    # stop: the reply ends before the stop string, as on the OpenAI route
    want = oai(server).chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=40, stop=["\n"])
    got = c.chat(model=NAME, messages=MSGS, options={"temperature": 0, "num_predict": 40, "stop": ["\n"]})
    assert got.message.content == want.choices[0].message.content and "\n" not in got.message.content
    # seed: the same seed gives the same sampled text; the OpenAI route agrees for the same seed and options
    kw = {"temperature": 1.0, "top_k": 40, "top_p": 0.9, "seed": 1234, "num_predict": 24, "repeat_penalty": 1.1}
    a = c.chat(model=NAME, messages=MSGS, options=kw).message.content
    b = c.chat(model=NAME, messages=MSGS, options=kw).message.content
    o = oai(server).chat.completions.create(model="m", messages=MSGS, temperature=1.0, top_p=0.9, seed=1234,
                                            max_tokens=24, extra_body={"top_k": 40, "repeat_penalty": 1.1})
    assert a == b == o.choices[0].message.content
    # options Ollama has and the engine does not (num_ctx, mirostat, ...) are ignored, as Ollama ignores them
    r = c.chat(model=NAME, messages=MSGS, options={"temperature": 0, "num_predict": 24, "num_ctx": 8192,
                                                   "mirostat": 2, "no_such_option": 1}, keep_alive="5m")
    assert r.message.content == c.chat(model=NAME, messages=MSGS,
                                       options={"temperature": 0, "num_predict": 24}).message.content
    # num_predict -1: the server's own limit (the reply ends by itself or at the limit, not at 0 tokens)
    r = c.generate(model=NAME, prompt="Say hi.", options={"temperature": 0, "num_predict": -1}, keep_alive=-1)
    assert r.done and r.eval_count > 0


def test_format_json_and_schema(server):
    """format "json" and a schema constrain the reply: replies that end by themselves parse (and validate); the
    others ran out of num_predict. The OpenAI route with the same seed gives the same text."""
    c = oc(server)
    ask = [{"role": "user", "content": "Describe a cat as JSON."}]
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    stopped = {"json": 0, "schema": 0}
    for seed in range(8):
        opts = {"temperature": 1, "seed": seed, "num_predict": 96}
        r = c.chat(model=NAME, messages=ask, format="json", options=opts)
        assert r.message.content.startswith("{"), r.message.content
        if r.done_reason == "stop":
            assert isinstance(json.loads(r.message.content), dict)
            stopped["json"] += 1
        if seed < 2:
            o = oai(server).chat.completions.create(model="m", messages=ask, temperature=1, seed=seed, max_tokens=96,
                                                    response_format={"type": "json_object"})
            assert o.choices[0].message.content == r.message.content
        g = c.generate(model=NAME, prompt="A person as JSON.", format=schema, options=opts)
        assert g.response.startswith("{"), g.response
        if g.done_reason == "stop":
            v = json.loads(g.response)
            assert set(v) == {"name", "age"} and isinstance(v["name"], str) and isinstance(v["age"], int)
            stopped["schema"] += 1
    assert stopped["json"] >= 1 and stopped["schema"] >= 1, stopped
    # a schema the converter cannot express is a 400 naming the keyword
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model=NAME, messages=MSGS, format={"type": "string", "pattern": "^a"})
    assert e.value.status_code == 400 and "pattern" in e.value.error


def test_list_ps_show_version(server):
    c = oc(server)
    fields = gguf_fields()
    arch = fields["general.architecture"]
    size = os.path.getsize(MODEL)
    models = c.list().models
    assert [m.model for m in models] == [NAME]
    m = models[0]
    assert m.size == size and m.details.format == "gguf" and m.details.family == arch
    assert m.details.quantization_level == {3: "Q4_1", 15: "Q4_K_M", 2: "Q4_0", 7: "Q8_0"}[fields["general.file_type"]]
    n_params = sum(int(t.n_elements) for t in gguf.GGUFReader(MODEL).tensors)
    assert m.details.parameter_size == "%.2fM" % (n_params / 1e6)
    assert abs(m.modified_at.timestamp() - os.path.getmtime(MODEL)) < 1
    ps = c.ps().models
    assert [p.model for p in ps] == [NAME] and ps[0].size == size and ps[0].context_length == 1024
    s = c.show(NAME)
    assert s.details.family == arch and s.details.format == "gguf"
    info = s.modelinfo
    assert info["general.architecture"] == arch
    assert info[arch + ".context_length"] == fields[arch + ".context_length"]
    assert info[arch + ".block_count"] == fields[arch + ".block_count"]
    assert info["general.parameter_count"] == n_params
    assert info["tokenizer.ggml.tokens"] is None  # arrays only with verbose
    assert s.template == fields["tokenizer.chat_template"]
    assert "completion" in s.capabilities
    v = c.show(NAME)  # the older spelling of the field: {"name": ...}
    st, _, body = request(server, "POST", "/api/show", {"name": STEM, "verbose": True})
    assert st == 200
    toks = json.loads(body)["model_info"]["tokenizer.ggml.tokens"]
    assert len(toks) == len(gguf.GGUFReader(MODEL).fields["tokenizer.ggml.tokens"].data) and v.template
    ver = request(server, "GET", "/api/version")
    assert ver[0] == 200 and json.loads(ver[2])["version"].count(".") == 2


def test_unknown_model(server):
    c = oc(server)
    for call in (lambda: c.chat(model="nope", messages=MSGS), lambda: c.generate(model="nope:7b", prompt="x"),
                 lambda: c.show("nope")):
        with pytest.raises(ollama.ResponseError) as e:
            call()
        assert e.value.status_code == 404
    assert e.value.error == "model 'nope' not found"
    st, _, body = request(server, "POST", "/api/chat", {"model": "x" + STEM, "messages": MSGS})
    assert st == 404 and json.loads(body) == {"error": "model 'x%s' not found" % STEM}


def test_load_request(server):
    # an empty chat or generate loads the model in Ollama and answers done at once
    r = oc(server).chat(model=NAME, messages=[])
    assert r.done and r.done_reason == "load" and r.message.content == ""
    r = oc(server).generate(model=NAME)
    assert r.done and r.done_reason == "load" and r.response == ""


def test_ndjson_framing_and_durations(server):
    body = {"model": NAME, "messages": MSGS, "options": {"temperature": 0, "num_predict": 16}}
    t0 = time.monotonic_ns()
    st, h, data = request(server, "POST", "/api/chat", body)
    wall = time.monotonic_ns() - t0
    assert st == 200 and h["content-type"] == "application/x-ndjson"
    assert h.get("transfer-encoding") == "chunked"
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    objs = [json.loads(line) for line in lines]  # every line one JSON object
    assert all(o["done"] is False and o["message"]["role"] == "assistant" for o in objs[:-1])
    last = objs[-1]
    assert last["done"] is True and last["done_reason"] == "length" and last["eval_count"] == 16
    for k in DURATIONS:
        assert isinstance(last[k], int) and last[k] >= 0
    assert 0 < last["total_duration"] <= wall
    assert last["prompt_eval_duration"] > 0 and last["eval_duration"] > 0
    assert last["prompt_eval_duration"] + last["eval_duration"] <= last["total_duration"]
    # created_at: RFC 3339 UTC, nanoseconds, non-decreasing over the stream
    stamps = [o["created_at"] for o in objs]
    assert all(len(s) == 30 and s.endswith("Z") and s[10] == "T" for s in stamps) and stamps == sorted(stamps)
    # stream false: one object, application/json, the same text
    body["stream"] = False
    st, h, data = request(server, "POST", "/api/chat", body)
    one = json.loads(data)
    assert st == 200 and h["content-type"].startswith("application/json")
    assert one["message"]["content"] == "".join(o["message"]["content"] for o in objs)
    for k in DURATIONS:
        assert isinstance(one[k], int)
    # generate's lines carry "response"
    st, _, data = request(server, "POST", "/api/generate", {"model": NAME, "prompt": "Hi",
                                                            "options": {"num_predict": 4, "temperature": 0}})
    objs = [json.loads(line) for line in data.splitlines()]
    assert st == 200 and all("response" in o for o in objs) and objs[-1]["done"] and objs[-1]["eval_count"] == 4


def test_tool_messages_accepted(server):
    # a conversation with an earlier call in Ollama's shape (arguments an object) and its result (tool_name)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                               "parameters": {"type": "object",
                                                              "properties": {"city": {"type": "string"}},
                                                              "required": ["city"]}}}]
    msgs = [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                              "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "18 C, sunny", "tool_name": "get_weather"}]
    r = oc(server).chat(model=NAME, messages=msgs, tools=tools, options={"temperature": 0, "num_predict": 24})
    want = oai(server).chat.completions.create(
        model="m", temperature=0, max_tokens=24, tools=tools,
        messages=[msgs[0], {"role": "assistant", "content": "", "tool_calls": [
            {"id": "get_weather", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
            {"role": "tool", "content": "18 C, sunny", "tool_call_id": "get_weather"}])
    assert r.done and r.message.content == (want.choices[0].message.content or "")
    calls = r.message.tool_calls or []
    assert [c.function.name for c in calls] == [c.function.name for c in want.choices[0].message.tool_calls or []]
    for c in calls:
        assert isinstance(c.function.arguments, dict)


WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather of a city",
                                             "parameters": {"type": "object",
                                                            "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}]


def few_shot_calls():
    """A conversation whose earlier answers are calls written out as text, so that SmolLM2 writes one too."""
    msgs = []
    for city in ("Paris", "Tokyo"):
        msgs.append({"role": "user", "content": "Weather in %s?" % city})
        msgs.append({"role": "assistant", "content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}'
                                                     '\n</tool_call>' % city})
    msgs.append({"role": "user", "content": "Weather in Rome?"})
    return msgs


def test_tool_calls_in_ollama_shape(server):
    msgs = few_shot_calls()
    opts = {"temperature": 0, "num_predict": 48}
    want = oai(server).chat.completions.create(model="m", messages=msgs, tools=WEATHER, temperature=0, max_tokens=48)
    want_calls = [(c.function.name, json.loads(c.function.arguments)) for c in want.choices[0].message.tool_calls]
    assert want_calls, "the model wrote no call on the OpenAI route: the test cannot check the Ollama shape"
    r = oc(server).chat(model=NAME, messages=msgs, tools=WEATHER, options=opts)
    assert [(c.function.name, dict(c.function.arguments)) for c in r.message.tool_calls] == want_calls
    assert r.message.content == (want.choices[0].message.content or "")
    # raw: arguments an object, an id, the call's index
    st, _, data = request(server, "POST", "/api/chat", {"model": NAME, "messages": msgs, "tools": WEATHER,
                                                        "options": opts, "stream": False})
    calls = json.loads(data)["message"]["tool_calls"]
    assert st == 200 and isinstance(calls[0]["function"]["arguments"], dict)
    assert calls[0]["id"].startswith("call_") and [c["function"]["index"] for c in calls] == list(range(len(calls)))
    # streamed: the same calls, each whole in one line
    parts = list(oc(server).chat(model=NAME, messages=msgs, tools=WEATHER, options=opts, stream=True))
    got = [(c.function.name, dict(c.function.arguments)) for p in parts for c in (p.message.tool_calls or [])]
    assert got == want_calls and parts[-1].done


BAD = [
    (b"{", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"model": "%s", "messages": "hi"}' % NAME.encode(), "messages"),
    (b'{"model": 7, "messages": []}', "model"),
    (b'{"messages": []}', "model"),
    (b'{"model": "%s", "messages": [], "stream": "yes"}' % NAME.encode(), "stream"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "options": []}' % NAME.encode(), "options"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": "hot"}}'
     % NAME.encode(), "temperature"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": "many"}}'
     % NAME.encode(), "num_predict"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 1000000000}}'
     % NAME.encode(), "num_predict"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 1e300}}'
     % NAME.encode(), "num_predict"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "format": 5}' % NAME.encode(), "format"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "format": "yaml"}' % NAME.encode(), "format"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "think": 3}' % NAME.encode(), "think"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "keep_alive": []}' % NAME.encode(),
     "keep_alive"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}' % NAME.encode(),
     "vision"),
    (b'{"model": "%s", "messages": [{"role": "wizard", "content": "x"}]}' % NAME.encode(), "role"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "\xff\xfe"}]}' % NAME.encode(), "JSON"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "tools": 1}' % NAME.encode(), "tools"),
    (b'{"model": "%s", "messages": [{"role": "user", "content": "x"}], "model": "y"}' % NAME.encode(), "JSON"),
]
BAD_GENERATE = [
    (b'{"model": "%s", "prompt": 5}' % NAME.encode(), "prompt"),
    (b'{"model": "%s", "prompt": "x", "system": []}' % NAME.encode(), "system"),
    (b'{"model": "%s", "prompt": "x", "raw": 1}' % NAME.encode(), "raw"),
    (b'{"model": "%s", "prompt": "x", "suffix": "y"}' % NAME.encode(), "suffix"),
    (b'{"model": "%s", "prompt": "x", "template": "{{ .Prompt }}"}' % NAME.encode(), "template"),
    (b'{"model": "%s", "prompt": "x", "context": [1, 2, 3]}' % NAME.encode(), "context"),
    (b'{"model": "%s", "prompt": "x", "images": ["aGk="]}' % NAME.encode(), "vision"),
    (b'{"model": "%s", "prompt": "%s"}' % (NAME.encode(), b"word " * 2000), "context"),
]


@pytest.mark.parametrize("path,body,words", [("/api/chat", b, w) for b, w in BAD] +
                         [("/api/generate", b, w) for b, w in BAD_GENERATE])
def test_bad_requests(server, path, body, words):
    st, h, data = request(server, "POST", path, body)
    assert st == 400, data
    err = json.loads(data)
    assert list(err) == ["error"] and isinstance(err["error"], str)
    assert words.lower() in err["error"].lower(), err


def test_embed_equals_openai_route(server):
    """/api/embed through the ollama client, and the older /api/embeddings: the vectors of /v1/embeddings."""
    texts = ["hello there", "the second input"]
    want = [d.embedding for d in oai(server).embeddings.create(model="m", input=texts, encoding_format="float").data]
    r = oc(server).embed(model=NAME, input=texts)
    assert [list(v) for v in r.embeddings] == want
    assert r.prompt_eval_count > 2 and r.total_duration > 0
    assert list(oc(server).embed(model=NAME, input=texts[1]).embeddings[0]) == want[1]
    st, _, data = request(server, "POST", "/api/embeddings", {"model": NAME, "prompt": texts[0]})
    assert st == 200 and json.loads(data)["embedding"] == want[0]


def test_routes_and_methods(server):
    assert request(server, "GET", "/api/chat")[0] == 405
    assert request(server, "POST", "/api/tags", {})[0] == 405
    for path, body in (("/api/embed", {"model": NAME, "input": 5}), ("/api/embeddings", {"model": NAME})):
        st, _, data = request(server, "POST", path, body)
        assert st == 400 and "must be a string" in json.loads(data)["error"]
    st, _, data = request(server, "POST", "/api/embed", {"model": "nope", "input": "hi"})
    assert st == 404 and json.loads(data)["error"] == "model 'nope' not found"
    st, _, data = request(server, "POST", "/api/pull", {"model": "llama3"})
    assert st == 501 and "pull" in json.loads(data)["error"]
    st, _, data = request(server, "GET", "/api/nothing")
    assert st == 404 and "error" in json.loads(data)
    # the chat page and the OpenAI routes are unchanged
    st, h, data = request(server, "GET", "/")
    assert st == 200 and h["content-type"].startswith("text/html")
    healthy(server)


def test_api_key_applies(strict_server):
    s = strict_server
    for method, path in (("GET", "/api/tags"), ("GET", "/api/version"), ("POST", "/api/chat")):
        st, _, data = request(s, method, path, {"model": NAME, "messages": MSGS} if method == "POST" else None)
        assert st == 401 and "API key" in json.loads(data)["error"]
    with pytest.raises(ollama.ResponseError) as e:
        oc(s).list()
    assert e.value.status_code == 401
    assert [m.model for m in oc(s, headers={"Authorization": "Bearer sekret"}).list().models] == [NAME]
    assert oc(s, headers={"Authorization": "Bearer wrong"}).ps  # a client with the wrong key
    with pytest.raises(ollama.ResponseError) as e:
        oc(s, headers={"Authorization": "Bearer wrong"}).ps()
    assert e.value.status_code == 401


def test_think_maps_to_the_template():
    """With Qwen3's template (forced on SmolLM2): think false renders the prompt as enable_thinking false does on
    the OpenAI route (the empty <think></think> block: more prompt tokens), and both routes reply alike."""
    s = Server("-c", "512", "--chat-template", "qwen3")
    try:
        c = oc(s)
        opts = {"temperature": 0, "num_predict": 12}
        off = c.chat(model=NAME, messages=MSGS, think=False, options=opts)
        on = c.chat(model=NAME, messages=MSGS, think=True, options=opts)
        plain = c.chat(model=NAME, messages=MSGS, options=opts)
        want = oai(s).chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=12,
                                              extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        assert off.prompt_eval_count == want.usage.prompt_tokens > on.prompt_eval_count == plain.prompt_eval_count
        assert off.message.content == want.choices[0].message.content
        assert on.message.content == plain.message.content
    finally:
        assert s.stop() == 0
