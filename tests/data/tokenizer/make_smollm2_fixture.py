#!/usr/bin/env python3
"""Writes smollm2.txt: SmolLM2's tokenization of a set of strings, as llama.cpp (llama-cpp-python) produces it.

Run from the repository root:  python3 tests/data/tokenizer/make_smollm2_fixture.py [model.gguf]
Line format: flags TAB escaped-text TAB ids, where flags is "ps" (parse_special) or "-", the text escapes
backslash, newline (\\n), tab (\\t), carriage return (\\r) and other control bytes (\\xHH), and ids are
space-separated. Encoded without BOS/EOS (SmolLM2 adds none anyway).
"""
import sys

import llama_cpp

MODEL = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"

CASES = [
    ("-", "Hello, we can use"),
    ("-", "The capital of France is"),
    ("-", "Hello world! 123"),
    ("-", "Café déjà vu."),
    ("-", "  multiple   spaces"),
    ("-", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
    ("-", "\n"),
    ("-", "\n\n\n"),
    ("-", " \t \n x"),
    ("-", "I'm sure they'll say it's what we've done, isn't it? I'd've"),
    ("-", "3.14159 + 2,718 = 12345678901234567890"),
    ("-", "def f(x):\n    return x ** 2  # square\n"),
    ("-", "int main(void) { printf(\"%d\\n\", 42); }"),
    ("-", "Привет, мир! Ελληνικά. 日本語のテキスト。 中文文本。 한국어"),
    ("-", "emoji: 🦙🚀👍🏽 and ✨ sparkles"),
    ("-", "ស្វាគមន៍ ⓐⓑⓒ ＡＢＣ ｆｕｌｌ"),
    ("-", "<|im_start|>user\nHi<|im_end|>"),
    ("ps", "<|im_start|>user\nHi<|im_end|>"),
    ("ps", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
           "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
    ("ps", "<|endoftext|>text<|endoftext|><|im_end|><|im_start|>"),
    ("ps", "<|im_start|><|im_start|>x<|im_end|"),
    ("-", "   leading and trailing   "),
    ("-", "a" * 300),
    ("-", "https://example.com/path?query=1&x=y#frag"),
    ("-", "MixedCASE camelCase snake_case kebab-case SCREAMING"),
]


def esc(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def main():
    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    with open("tests/data/tokenizer/smollm2.txt", "w", encoding="utf-8") as f:
        f.write("# SmolLM2-135M-Instruct tokenization by llama-cpp-python %s; see make_smollm2_fixture.py\n"
                % llama_cpp.__version__)
        for flags, text in CASES:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=(flags == "ps"))
            f.write("%s\t%s\t%s\n" % (flags, esc(text), " ".join(str(i) for i in ids)))


if __name__ == "__main__":
    main()
