#!/usr/bin/env python3
"""Random-string tokenizer fixtures: ids from llama.cpp (llama-cpp-python, vocab only) for strings drawn from a
pool of tricky pieces (contractions, digits, whitespace runs, CJK, emoji, non-ASCII spaces, special-token text).

Run from the repository root:  python3 tests/data/tokenizer/make_random_fixture.py [shared_dir]
Writes tests/data/tokenizer/random/<vocab>.txt, one case a line: flags TAB hex(utf-8 text) TAB ids, where flags
is "ps" (parse_special) or "-"; no BOS/EOS. <vocab> is the ggml-vocab-<vocab>.gguf name, or "smollm2" for
models/SmolLM2-135M-Instruct.Q4_1.gguf.
"""
import os
import random
import sys

import llama_cpp

SHARED = sys.argv[1] if len(sys.argv) > 1 else "../shared"
VOCABS = ["baichuan", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "gpt-neox", "llama-spm", "mpt", "phi-3",
          "refact", "starcoder"]
POOL = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + [" "] * 12 +
        list("\n\n\t\r.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`") +
        ["'s", "'t", "'ll", "'re", "'ve", "'m", "'d", "'S", "'LL"] +
        list("éèàçñüößøåÆŒΩπλДжЯ日本語中文한국어ですกขคស្វ") +
        ["🦙", "🚀", "👍🏽", "\u200b", "\u00a0", "\u3000", "\u2003", "①", "½", "²", "٣", "—", "…", "«»"] +
        ["   ", "\n\n", "\t\t", " \n "])
SPECIAL = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|end|>", "<|user|>",
           "<|assistant|>", "<｜begin▁of▁sentence｜>"]


def cases(rng, n, pool):
    for _ in range(n):
        yield "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))


def write(name, path):
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    rng = random.Random(name)
    with open("tests/data/tokenizer/random/%s.txt" % name, "w", encoding="ascii") as f:
        for flags, pool, n in (("-", POOL, 80), ("ps", POOL + SPECIAL * 3, 40)):
            for s in cases(rng, n, pool):
                ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=(flags == "ps"))
                f.write("%s\t%s\t%s\n" % (flags, s.encode("utf-8").hex(), " ".join(map(str, ids))))


def main():
    for v in VOCABS:
        write(v, os.path.join(SHARED, "data/vocab/ggml-vocab-%s.gguf" % v))
    write("smollm2", "models/SmolLM2-135M-Instruct.Q4_1.gguf")


if __name__ == "__main__":
    main()
