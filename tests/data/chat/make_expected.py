#!/usr/bin/env python3
"""Renders the conversations of tests/unit/test_chat.c with jinja2 from the template texts here, into
<template>.expected (the independent reference for zili's native ChatML renderer).

Run from the repository root: python3 tests/data/chat/make_expected.py
Templates: smollm2.jinja is tokenizer.chat_template of SmolLM2-135M-Instruct (copied from the GGUF file);
qwen2.jinja is Qwen2-Instruct's template (written with \\n escapes); chatml.jinja is plain ChatML.
Record format: a line "@@ conv=N gen=G len=L", then exactly L bytes of rendered text, then a newline.
The conversation list must stay identical to CONVS in test_chat.c.
"""
import jinja2

CONVS = [
    [("user", "Hi")],
    [("system", "You are terse."), ("user", "What is 2+2?")],
    [("user", "Hello"), ("assistant", "Hi! How can I help?"), ("user", "Tell me a joke.")],
    [],
    [("user", "")],
    [("user", "Ünïcödé 🦙 <b>tags</b> {{ not jinja }} \"quotes\" 'apos'\nnew line")],
    [("assistant", "I start.")],
    [("system", "S1"), ("user", "u"), ("system", "S2 mid")],
]

env = jinja2.Environment()
for name in ["smollm2", "qwen2", "chatml"]:
    tmpl = env.from_string(open("tests/data/chat/%s.jinja" % name, encoding="utf-8").read())
    with open("tests/data/chat/%s.expected" % name, "wb") as f:
        for i, conv in enumerate(CONVS):
            for gen in (0, 1):
                msgs = [{"role": r, "content": c} for r, c in conv]
                out = tmpl.render(messages=msgs, add_generation_prompt=bool(gen)).encode("utf-8")
                f.write(b"@@ conv=%d gen=%d len=%d\n" % (i, gen, len(out)) + out + b"\n")
