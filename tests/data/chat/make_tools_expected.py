#!/usr/bin/env python3
"""Renders the conversations with tools of tools_cases.json with jinja2 into <template>.tools.expected: the reference
for zili's tool rendering (tests/unit/test_chat.c, test_tools_rendering).

Run from the repository root: python3 tests/data/chat/make_tools_expected.py
Environment: make_expected.py's, plus transformers' own `tojson` filter (json.dumps with ensure_ascii=False and no
key sorting, which is what apply_chat_template installs), `tools` = the cases' tool list when a case says so.
Templates that render tools themselves (NATIVE) get the messages as OpenAI sends them, with each call's arguments
parsed into an object where the template passes them through tojson (ARGS_AS_OBJECT; a string that is not JSON
stays a string), as vLLM and llama.cpp hand them over. Where jinja2 fails on a null content (a TypeError, not the
template's own raise_exception) the content is rendered as "" instead, as zili does.
Templates without tools of their own (GENERIC) get zili's generic form, written here independently of the C code:
the tools in Qwen3's "# Tools" system text, calls as <tool_call> blocks, tool results as user messages.
Record format as make_expected.py's; conv=N is the case's index.
"""
import json

import jinja2

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_expected import EXTRA, TEMPLATES, env, write_record  # noqa: E402

NATIVE = ["qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral-v3", "mistral-nemo", "deepseek-r1", "deepseek-v3"]
ARGS_AS_OBJECT = {"qwen2.5", "llama3.1", "llama3.2", "mistral-v3", "mistral-nemo"}
GENERIC = ["smollm2", "qwen2", "chatml", "llama3", "gemma3", "mistral-v0.2", "mistral-v7"]


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env.filters["tojson"] = tojson

HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
        "function signatures within <tools></tools> XML tags:\n<tools>")
TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call>")


def native_messages(msgs, name):
    out = []
    for m in msgs:
        m = json.loads(json.dumps(m))
        for c in m.get("tool_calls", []):
            if name in ARGS_AS_OBJECT:
                try:
                    c["function"]["arguments"] = json.loads(c["function"]["arguments"])
                except ValueError:
                    pass
        out.append(m)
    return out


def generic_messages(msgs, tools, name):
    in_user = name == "mistral-v0.2"  # its template refuses system messages: the tools open the first user message
    out, i = [], 0
    if tools:
        text = HEAD + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + TAIL
        host_role = "user" if in_user else "system"
        if msgs[0]["role"] == host_role:
            text = text + "\n\n" + msgs[0]["content"] if in_user else msgs[0]["content"] + "\n\n" + text
            i = 1
        out.append({"role": host_role, "content": text})
    while i < len(msgs):
        m = msgs[i]
        if m["role"] == "assistant" and m.get("tool_calls"):
            text = m["content"] or ""
            for k, c in enumerate(m["tool_calls"]):
                if k or text:
                    text += "\n"
                text += ('<tool_call>\n{"name": "' + c["function"]["name"] + '", "arguments": ' +
                         c["function"]["arguments"] + "}\n</tool_call>")
            out.append({"role": "assistant", "content": text})
        elif m["role"] == "tool":
            parts = []
            while i < len(msgs) and msgs[i]["role"] == "tool":
                parts.append("<tool_response>\n" + msgs[i]["content"] + "\n</tool_response>")
                i += 1
            i -= 1
            out.append({"role": "user", "content": "\n".join(parts)})
        else:
            out.append({"role": m["role"], "content": m["content"]})
        i += 1
    return out


def render(tmpl, name, msgs, tools, gen):
    bos, eos = TEMPLATES[name]
    kw = dict(messages=msgs, add_generation_prompt=bool(gen), bos_token=bos, eos_token=eos, **EXTRA.get(name, {}))
    if tools:
        kw["tools"] = tools
    try:
        return tmpl.render(**kw)
    except jinja2.exceptions.TemplateError:
        raise
    except TypeError:
        for m in msgs:
            if m.get("content") is None:
                m["content"] = ""
        return tmpl.render(**kw)


def main():
    data = json.load(open("tests/data/chat/tools_cases.json", encoding="utf-8"))
    for name in NATIVE + GENERIC:
        tmpl = env.from_string(open("tests/data/chat/%s.jinja" % name, encoding="utf-8").read())
        with open("tests/data/chat/%s.tools.expected" % name, "wb") as f:
            for i, case in enumerate(data["cases"]):
                tools = data["tools"] if case["tools"] else None
                for gen in (0, 1):
                    if name in NATIVE:
                        msgs = native_messages(case["messages"], name)
                        t = tools
                    else:
                        msgs = generic_messages(case["messages"], tools, name)
                        t = None
                    try:
                        out = render(tmpl, name, msgs, t, gen).encode("utf-8")
                    except jinja2.exceptions.TemplateError:
                        out = None
                    write_record(f, i, gen, out)


if __name__ == "__main__":
    main()
