#!/usr/bin/env python3
"""Renders the conversations of tests/unit/test_chat.c with jinja2 from the real template texts here (sources in
SOURCE.md) into <template>.expected: the independent reference for zili's native renderers.

Run from the repository root: python3 tests/data/chat/make_expected.py
The environment is the one transformers' apply_chat_template uses (sandboxed, trim_blocks, lstrip_blocks,
raise_exception), with each model's own bos_token / eos_token, and no other variables (no tools, no date_string,
no strftime_now, no enable_thinking). Exception: Mistral Small 3.2's template calls strftime_now("%Y-%m-%d")
unconditionally (its default system message holds the current date), so for it alone strftime_now returns the fixed
date FIXED_DATE; test_chat.c renders that template with the same date.
Record format: a line "@@ conv=N gen=G len=L", then exactly L bytes of rendered text, then a newline; or, where the
template raises (e.g. roles that do not alternate), a line "@@ conv=N gen=G error".
The conversation list must stay identical to CONVS in test_chat.c.
"""
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONVS = [
    [("user", "Hi")],
    [("system", "You are terse."), ("user", "What is 2+2?")],
    [("user", "Hello"), ("assistant", "Hi! How can I help?"), ("user", "Tell me a joke.")],
    [("user", "")],
    [("user", "Ünïcödé 🦙 <b>tags</b> {{ not jinja }} \"quotes\" 'apos'\nnew line")],
    [("assistant", "I start.")],
    [("system", "S1"), ("user", "u"), ("system", "S2 mid")],
    [("system", "Be brief."), ("user", "Hello"), ("assistant", "Hi!"), ("user", "Again")],
    [("system", " Sys \n"), ("user", "  padded \n"), ("assistant", "\t answer \u3000\u00a0"), ("user", "x\u2028")],
    [("user", "Q1"), ("assistant", "<think>\nplan\n</think>\n\nA1"), ("user", "Q2")],
    [("user", "Q"), ("assistant", "<think>r</think>final")],
    [("user", "a</think>b"), ("assistant", "\nx</think>y</think>\n\nz"),
     ("user", "<tool_response>t</tool_response>")],
    [("user", "Hi"), ("assistant", "")],
    [("user", "u1"), ("user", "u2")],
    [("system", "Sys"), ("user", "U"), ("assistant", "A")],
]

# name -> (bos_token, eos_token) as the model defines them
TEMPLATES = {
    "chatml": ("", "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen2.5": ("", "<|im_end|>"),
    "qwen3": ("", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma2": ("<bos>", "<eos>"),
    "gemma3": ("<bos>", "<eos>"),
    "deepseek-r1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "mistral-v0.2": ("<s>", "</s>"),
    "mistral-v3": ("<s>", "</s>"),
    "mistral-nemo": ("<s>", "</s>"),
    "mistral-v7": ("<s>", "</s>"),
    "mistral-small-3.2": ("<s>", "</s>"),
    "deepseek-v3": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
}

FIXED_DATE = "2025-06-20"  # what strftime_now returns where a template needs it (see above); also in test_chat.c
# name -> extra variables for that template only
EXTRA = {
    "mistral-small-3.2": {"strftime_now": lambda fmt: FIXED_DATE if fmt == "%Y-%m-%d" else None},
}


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.globals["raise_exception"] = raise_exception
def write_record(f, i, gen, out):
    """One record: the rendering (bytes), or None where the template raised."""
    if out is None:
        f.write(b"@@ conv=%d gen=%d error\n" % (i, gen))
    else:
        f.write(b"@@ conv=%d gen=%d len=%d\n" % (i, gen, len(out)) + out + b"\n")


def main():
    for name, (bos, eos) in TEMPLATES.items():
        tmpl = env.from_string(open("tests/data/chat/%s.jinja" % name, encoding="utf-8").read())
        with open("tests/data/chat/%s.expected" % name, "wb") as f:
            for i, conv in enumerate(CONVS):
                for gen in (0, 1):
                    msgs = [{"role": r, "content": c} for r, c in conv]
                    try:
                        out = tmpl.render(messages=msgs, add_generation_prompt=bool(gen), bos_token=bos,
                                          eos_token=eos, **EXTRA.get(name, {})).encode("utf-8")
                    except jinja2.exceptions.TemplateError:
                        out = None
                    write_record(f, i, gen, out)


if __name__ == "__main__":
    main()
