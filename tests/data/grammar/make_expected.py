#!/usr/bin/env python3
"""Asks llama.cpp's grammar engine (llama-cpp-python, the reference build of scripts/setup.sh) which strings of
cases.json each grammar accepts, into llamacpp.expected.json; tests/unit/test_grammar.c requires zili's engine to
say the same of every string.

Run from the repository root with the test venv: .venv/bin/python tests/data/grammar/make_expected.py
A string is accepted when, tokenized by SmolLM2's vocabulary (models/, as `make test` fetches it), each of its
tokens passes llama.cpp's grammar sampler in turn and end-of-generation may follow the last one: the grammar's
language, independent of how the string is cut into tokens. The empty string: end-of-generation at once.
"""
import ctypes
import json
import math
import os

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "..", "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def tokenize(vocab, text):
    b = text.encode("utf-8")
    buf = (llama_cpp.llama_token * (len(b) + 8))()
    n = llama_cpp.llama_tokenize(vocab, b, len(b), buf, len(buf), False, False)
    assert n >= 0, text
    return list(buf[:n])


def allowed(smpl, tok):
    data = (llama_cpp.llama_token_data * 1)()
    data[0].id = tok
    data[0].logit = 0.0
    data[0].p = 0.0
    arr = llama_cpp.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
    return not math.isinf(data[0].logit)


def accepts(vocab, grammar, text):
    smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert smpl, "llama.cpp refused the grammar:\n" + grammar
    try:
        for t in tokenize(vocab, text):
            if not allowed(smpl, t):
                return False
            llama_cpp.llama_sampler_accept(smpl, t)
        return allowed(smpl, llama_cpp.llama_vocab_eos(vocab))
    finally:
        llama_cpp.llama_sampler_free(smpl)


def main():
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(MODEL.encode(), params)
    assert model, MODEL
    vocab = llama_cpp.llama_model_get_vocab(model)
    cases = json.load(open(os.path.join(HERE, "cases.json"), encoding="utf-8"))["cases"]
    out = []
    for c in cases:
        g = c.get("gbnf") or open(os.path.join(HERE, c["file"]), encoding="utf-8").read()
        out.append([accepts(vocab, g, s) for s in c["strings"]])
    llama_cpp.llama_model_free(model)
    with open(os.path.join(HERE, "llamacpp.expected.json"), "w", encoding="utf-8") as f:
        json.dump({"accepts": out}, f, indent=1)
        f.write("\n")
    print(sum(map(len, out)), "strings,", sum(map(sum, out)), "accepted")


if __name__ == "__main__":
    main()
