"""Tool calling through the OpenAI API on SmolLM2 (whose template has no tools: zili shows them the generic way and
reads <tool_call> blocks back): tool_choice required / named / none / auto, parallel_tool_calls, streamed calls
equal to whole ones, a conversation with calls and results, refusals, and the official openai SDK unchanged.
The parsers of each family are tested on canned replies in tests/unit/test_tools.c, the rendering against jinja2
in tests/unit/test_chat.c."""
import json
import urllib.error
import urllib.request

import pytest

from conftest import Server
from test_structured import valid

WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "minLength": 1, "maxLength": 40},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer"}},
    "required": ["city", "unit"], "additionalProperties": False}
LOOKUP = {"type": "object", "properties": {"query": {"type": "string", "maxLength": 60},
                                           "tags": {"type": "array", "items": {"type": "string", "maxLength": 12},
                                                    "maxItems": 3}},
          "required": ["query"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "search", "description": "Search the web", "parameters": LOOKUP}}]
SCHEMAS = {"get_weather": WEATHER, "search": LOOKUP}
ASK = [{"role": "user", "content": "What is the weather in Paris today?"}]


@pytest.fixture(scope="module")
def srv():
    s = Server("--parallel", "4", "-c", "2048")
    yield s
    assert s.stop() == 0


def post(s, body):
    req = urllib.request.Request(s.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        if not body.get("stream"):
            return json.loads(r.read())
        return [json.loads(line[6:]) for line in r.read().decode().splitlines() if line.startswith("data: {")]


def refused(s, body, param):
    with pytest.raises(urllib.error.HTTPError) as e:
        post(s, body)
    assert e.value.code == 400
    err = json.loads(e.value.read())["error"]
    assert err["param"] == param, err
    return err["message"]


def check_calls(calls, names=SCHEMAS):
    assert calls, "no tool calls"
    for c in calls:
        assert c["type"] == "function" and c["id"].startswith("call_") and len(c["id"]) == 29
        f = c["function"]
        assert f["name"] in names, f
        args = json.loads(f["arguments"])
        assert valid(args, SCHEMAS[f["name"]], SCHEMAS[f["name"]]), f


def test_required_gives_valid_calls(srv):
    """tool_choice "required" at temperature 1, 10 seeds: every reply is calls (no content) whose arguments
    validate against the function's parameters; finish_reason "tool_calls" when the model stopped by itself."""
    stopped = 0
    for seed in range(10):
        r = post(srv, {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "temperature": 1, "seed": seed,
                       "max_tokens": 160})
        ch = r["choices"][0]
        assert ch["message"]["content"] is None, ch
        check_calls(ch["message"]["tool_calls"])
        assert ch["finish_reason"] in ("tool_calls", "length"), ch
        stopped += ch["finish_reason"] == "tool_calls"
    assert stopped >= 5, stopped


def test_named_and_not_parallel(srv):
    for seed in range(4):
        r = post(srv, {"messages": ASK, "tools": TOOLS, "seed": seed, "temperature": 1, "max_tokens": 160,
                       "tool_choice": {"type": "function", "function": {"name": "search"}},
                       "parallel_tool_calls": False})
        ch = r["choices"][0]
        check_calls(ch["message"]["tool_calls"], names={"search"})
        assert len(ch["message"]["tool_calls"]) == 1
        assert ch["finish_reason"] == "tool_calls", ch


def test_streamed_calls_equal_whole(srv):
    """The first delta of a call carries index, id, type and name; the next its arguments; together they are the
    call of the same request not streamed."""
    body = {"messages": ASK, "tools": TOOLS, "tool_choice": "required", "seed": 3, "temperature": 1,
            "max_tokens": 160}
    whole = post(srv, body)["choices"][0]
    chunks = post(srv, dict(body, stream=True))
    calls, finish, content = {}, None, ""
    for ch in chunks:
        c = ch["choices"][0]
        content += c["delta"].get("content") or ""
        finish = c["finish_reason"] or finish
        for tc in c["delta"].get("tool_calls") or []:
            if tc["index"] not in calls:
                assert tc["id"] and tc["type"] == "function" and tc["function"]["name"], tc
                calls[tc["index"]] = {"name": tc["function"]["name"], "arguments": ""}
            else:
                assert "id" not in tc and "name" not in tc["function"], tc
            calls[tc["index"]]["arguments"] += tc["function"]["arguments"]
    assert content == ""
    assert finish == whole["finish_reason"]
    assert [calls[i] for i in sorted(calls)] == [{"name": c["function"]["name"],
                                                  "arguments": c["function"]["arguments"]}
                                                 for c in whole["message"]["tool_calls"]]


def test_conversation_with_calls_and_results(srv):
    """A history with an assistant call (content null) and its result renders and gets an answer; auto and none
    leave text alone; "none" does not show the tools to the model (fewer prompt tokens)."""
    msgs = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                         "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"}]
    auto = post(srv, {"messages": msgs, "tools": TOOLS, "max_tokens": 24, "temperature": 0})
    none = post(srv, {"messages": msgs, "tools": TOOLS, "tool_choice": "none", "max_tokens": 24, "temperature": 0})
    for r in (auto, none):
        m = r["choices"][0]["message"]
        assert r["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
        assert m.get("tool_calls") or m["content"]
    assert "tool_calls" not in none["choices"][0]["message"]
    assert none["usage"]["prompt_tokens"] < auto["usage"]["prompt_tokens"] - 50


def test_refusals(srv):
    refused(srv, {"messages": ASK, "tools": {"a": 1}}, "tools")
    refused(srv, {"messages": ASK, "tools": [{"type": "retrieval"}]}, "tools")
    refused(srv, {"messages": ASK, "tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools")
    refused(srv, {"messages": ASK, "tools": [TOOLS[0], TOOLS[0]]}, "tools")
    refused(srv, {"messages": ASK, "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]},
            "tools")
    refused(srv, {"messages": ASK, "tool_choice": "required"}, "tool_choice")
    refused(srv, {"messages": ASK, "tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice")
    assert "nope" in refused(srv, {"messages": ASK, "tools": TOOLS,
                                   "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice")
    refused(srv, {"messages": ASK, "tools": TOOLS, "tool_choice": "required",
                  "response_format": {"type": "json_object"}}, "tool_choice")
    refused(srv, {"messages": ASK, "tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls")
    refused(srv, {"messages": ASK + [{"role": "assistant", "tool_calls": {"x": 1}}]}, "messages")
    refused(srv, {"messages": ASK + [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
            "messages")
    refused(srv, {"messages": ASK + [{"role": "tool", "tool_call_id": 5, "content": "x"}]}, "messages")
    refused(srv, {"messages": [{"role": "function", "content": "x"}]}, "messages")
    # still serving
    assert post(srv, {"messages": ASK, "max_tokens": 2})["choices"]


def test_openai_sdk_tools(srv):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused")
    r = client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required", seed=1, parallel_tool_calls=False,
                                       max_tokens=160)
    calls = r.choices[0].message.tool_calls
    assert calls and calls[0].function.name in SCHEMAS
    json.loads(calls[0].function.arguments)
    with client.chat.completions.stream(model="m", messages=ASK, tools=TOOLS, tool_choice="required", seed=1, parallel_tool_calls=False,
                                        max_tokens=160) as stream:
        final = stream.get_final_completion()
    got = [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls]
    assert got == [(c.function.name, c.function.arguments) for c in calls]


def test_openai_sdk_pydantic_tool(srv):
    """chat.completions.parse with a strict pydantic function tool: parsed_arguments is the model object."""
    openai = pytest.importorskip("openai")
    pydantic = pytest.importorskip("pydantic")

    class GetWeather(pydantic.BaseModel):
        city: str
        unit: str

    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused")
    r = client.chat.completions.parse(model="m", messages=ASK, tools=[openai.pydantic_function_tool(GetWeather)],
                                      tool_choice="required", seed=2, max_tokens=160,
                                      parallel_tool_calls=False)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "GetWeather"
    assert isinstance(call.function.parsed_arguments, GetWeather)
