"""Reasoning text apart from the answer: with a reasoning family's template (Qwen3, DeepSeek R1), the reply's
<think>...</think> part goes to reasoning_content, streamed as its own deltas; reasoning_format "none" keeps it in
content; chat_template_kwargs.enable_thinking false opens Qwen3's reply with an empty block. SmolLM2 stands in for
the model (it writes no tags of its own), so what is checked is where the same greedy text lands.
The splitter itself is tested on canned replies split at every byte in tests/unit/test_reasoning.c."""
import json
import urllib.request

import pytest

from conftest import Server

MSG = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def r1():
    s = Server("--parallel", "2", "-c", "512", "--chat-template", "deepseek-r1")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def qwen3():
    s = Server("--parallel", "2", "-c", "512", "--chat-template", "qwen3")
    yield s
    assert s.stop() == 0


def chat(s, **extra):
    body = {"messages": MSG, "max_tokens": 12, "temperature": 0, **extra}
    req = urllib.request.Request(s.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        if not extra.get("stream"):
            return json.loads(r.read())
        events = [json.loads(line[6:]) for line in r.read().decode().splitlines()
                  if line.startswith("data: {")]
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    return "".join(d.get("reasoning_content", "") for d in deltas), "".join(d.get("content") or "" for d in deltas)


def test_r1_reply_inside_the_opened_block_is_reasoning(r1):
    """The R1 prompt opens <think>: a reply that never closes it is all reasoning; with reasoning_format none the
    same greedy text is all content."""
    m = chat(r1)["choices"][0]["message"]
    plain = chat(r1, reasoning_format="none")["choices"][0]["message"]
    assert plain["content"] and "reasoning_content" not in plain
    assert m["reasoning_content"] == plain["content"] and m["content"] == ""


def test_r1_streamed_split_equals_whole(r1):
    whole = chat(r1)["choices"][0]["message"]
    reasoning, content = chat(r1, stream=True)
    assert (reasoning, content) == (whole["reasoning_content"], whole["content"])


def test_qwen3_reply_without_a_block_is_content(qwen3):
    m = chat(qwen3)["choices"][0]["message"]
    assert m["content"] and "reasoning_content" not in m
    assert chat(qwen3, stream=True) == ("", m["content"])


def test_qwen3_enable_thinking_false_adds_the_empty_block(qwen3):
    def prompt_tokens(**extra):
        return chat(qwen3, max_tokens=1, **extra)["usage"]["prompt_tokens"]
    tok = urllib.request.Request(qwen3.url + "/tokenize", data=json.dumps({"content": "<think>\n\n</think>\n\n"})
                                 .encode(), headers={"Content-Type": "application/json"})
    n_block = len(json.loads(urllib.request.urlopen(tok, timeout=30).read())["tokens"])
    assert prompt_tokens(chat_template_kwargs={"enable_thinking": False}) == prompt_tokens() + n_block
    assert prompt_tokens(chat_template_kwargs={"enable_thinking": True}) == prompt_tokens()
    # OpenAI's reasoning_effort: "none" is the switch turned off, a level leaves it on (the template has no levels)
    assert prompt_tokens(reasoning_effort="none") == prompt_tokens() + n_block
    assert prompt_tokens(reasoning_effort="high") == prompt_tokens(reasoning_effort="minimal") == prompt_tokens()
    assert prompt_tokens(reasoning_effort="none", chat_template_kwargs={"enable_thinking": False}) == \
        prompt_tokens() + n_block


@pytest.mark.parametrize("body,param", [({"reasoning_format": "loud"}, "reasoning_format"),
                                        ({"chat_template_kwargs": []}, "chat_template_kwargs"),
                                        ({"chat_template_kwargs": {"enable_thinking": "no"}}, "enable_thinking"),
                                        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
                                        ({"reasoning_effort": 3}, "reasoning_effort"),
                                        ({"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}},
                                         "reasoning_effort")])
def test_bad_reasoning_parameters(qwen3, body, param):
    req = urllib.request.Request(qwen3.url + "/v1/chat/completions", data=json.dumps({"messages": MSG, **body})
                                 .encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400 and json.loads(e.value.read())["error"]["param"] == param
