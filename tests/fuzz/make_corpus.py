#!/usr/bin/env python3
"""make_corpus.py OUTDIR - writes the seed corpora of the fuzz harnesses in tests/fuzz/ into OUTDIR/<harness>/.

Seeds come from what the project already has: the tokenizer test strings of ../shared/data/vocab (*.inp) and
tests/data, the chat templates in tests/data/chat and in the vocabulary files, small GGUF files written with
gguf-py the way tools/gen_gguf.py writes models (plus the heads of the shared vocabulary files), and request
bodies shaped like the ones tests/server sends. OUTDIR is git-ignored (tests/fuzz/corpus/ by default); the
fuzzers add what they find to it. Re-running it rewrites the seeds and leaves the fuzzers' additions alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED_VOCAB = Path(os.environ.get("ZILI_SHARED_DIR", ROOT.parent / "shared")) / "data" / "vocab"
SEP = "\n__ggml_vocab_test__\n"


def put(out: Path, harness: str, data: bytes) -> None:
    d = out / harness
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def test_strings() -> list[str]:
    """Tokenizer test cases of every vocabulary, plus the text fixtures of tests/data."""
    cases: list[str] = []
    if SHARED_VOCAB.is_dir():
        for inp in sorted(SHARED_VOCAB.glob("*.inp")):
            cases += [c for c in inp.read_text(encoding="utf-8").split(SEP) if c]
    for p in [ROOT / "tests/data/tokenizer/smollm2.txt", ROOT / "tests/data/ppl.txt"]:
        if p.exists():
            text = p.read_text(encoding="utf-8", errors="surrogateescape")
            cases += [text[i:i + 400] for i in range(0, len(text), 400)]
    cases += ["<|im_start|>user\nhi<|im_end|>\n", "<s> [INST] hi [/INST]", "<0x41><0xZZ>", "\u2581\u2581x",
              "\U0001F600\u00e9\u4e2d\u6587", "<|endoftext|><|endoftext|>"]
    return sorted(set(cases))


def templates() -> list[bytes]:
    """Chat templates: tests/data/chat, and any tokenizer.chat_template stored in the vocabulary files (found by a
    byte search for the key, then read as GGUF's u32 type 8 + u64 length + bytes; gguf-py's reader is slow on
    vocabularies of 100k tokens)."""
    out = [p.read_bytes() for p in sorted((ROOT / "tests/data/chat").glob("*.jinja"))]
    files = sorted(SHARED_VOCAB.glob("*.gguf")) if SHARED_VOCAB.is_dir() else []
    files += [ROOT / "tests/data/vocab/ggml-vocab-llama-spm.gguf"]
    key = b"tokenizer.chat_template"
    for f in files:
        data = f.read_bytes()
        at = data.find(struct.pack("<Q", len(key)) + key)
        if at < 0:
            continue
        at += 8 + len(key)
        if struct.unpack_from("<I", data, at)[0] != 8:
            continue
        (n,) = struct.unpack_from("<Q", data, at + 4)
        out.append(data[at + 12:at + 12 + n])
    return out


def gguf_seeds() -> list[bytes]:
    """Small valid GGUF files (metadata of every value type, a few tensors) and heads of real files."""
    seeds: list[bytes] = []
    try:
        import gguf
    except ImportError:
        gguf = None
    if gguf is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for variant in range(3):
                path = Path(tmp) / f"s{variant}.gguf"
                w = gguf.GGUFWriter(str(path), "llama")
                w.add_name("fuzz seed")
                w.add_uint32("llama.block_count", 1)
                w.add_uint32("llama.context_length", 64)
                w.add_uint32("llama.embedding_length", 32)
                w.add_uint32("llama.feed_forward_length", 64)
                w.add_uint32("llama.attention.head_count", 2)
                w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
                w.add_bool("general.flag", True)
                w.add_int8("general.i8", -3)
                w.add_uint64("general.u64", 2**40)
                w.add_float64("general.f64", 0.5)
                w.add_array("general.ints", [1, 2, 3])
                w.add_array("general.strs", ["a", "bc", ""])
                w.add_string("tokenizer.ggml.model", "gpt2" if variant else "llama")
                w.add_array("tokenizer.ggml.tokens", ["<unk>", "<s>", "</s>", "<0x41>", "a", "b", "ab"])
                w.add_array("tokenizer.ggml.scores", [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -0.5])
                w.add_array("tokenizer.ggml.token_type", [2, 3, 3, 6, 1, 1, 1])
                if variant:
                    w.add_array("tokenizer.ggml.merges", ["a b"])
                rng = np.random.default_rng(variant)
                w.add_tensor("token_embd.weight", rng.standard_normal((7, 32), dtype=np.float32))
                w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
                if variant == 2:
                    q = gguf.quants.quantize(rng.standard_normal((2, 32), dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
                    w.add_tensor("blk.0.attn_q.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
                w.write_header_to_file()
                w.write_kv_data_to_file()
                w.write_tensors_to_file()
                w.close()
                seeds.append(path.read_bytes())
    for f in sorted(SHARED_VOCAB.glob("*.gguf"))[:6] if SHARED_VOCAB.is_dir() else []:
        seeds.append(f.read_bytes()[:4096])
    return seeds


def bodies(strings: list[str]) -> list[bytes]:
    msgs = [{"role": "user", "content": "Hello"}]
    reqs = [
        {"messages": msgs, "max_tokens": 8},
        {"model": "x", "messages": [{"role": "system", "content": "Be brief."}] + msgs, "temperature": 0.7,
         "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 3, "stop": ["\n", "."], "stream": True,
         "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
         "logit_bias": {"42": -100, "7": 3.5}, "presence_penalty": 0.5, "frequency_penalty": -0.5},
        {"prompt": "Once upon a time", "max_tokens": 4, "logprobs": 3, "echo": False},
        {"prompt": [1, 2, 3, 4], "max_tokens": 1, "ignore_eos": True, "repeat_penalty": 1.1},
        {"prompt": ["one"], "n": 1, "max_completion_tokens": 3},
        {"messages": msgs, "max_tokens": 0},
        {"messages": msgs, "max_tokens": 2**63},
        {"prompt": [-1, 49152, 2**31]},
    ]
    out = [json.dumps(r).encode() for r in reqs]
    for s in strings[:40]:
        out.append(json.dumps({"messages": [{"role": "user", "content": s}], "max_tokens": 4}).encode())
        out.append(json.dumps({"prompt": s}).encode())
    out += [b"", b"{", b"[" * 64, b'{"messages": [{"role": "user", "content": "x"}], "n": 1, "n": 2}',
            b'{"prompt": "\xff\xfe"}']
    return out


def http_heads() -> list[bytes]:
    """Request heads: sound ones, and the framings a server and a proxy could read two ways."""
    body = b'{"content":"hi"}'
    start = b"POST /tokenize HTTP/1.1\r\nHost: x\r\n"
    shapes = [b"Content-Length: 16\r\n", b"Content-Length: 16\r\nContent-Length: 5\r\n",
              b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\n",
              b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: chunked \r\n",
              b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999999\r\n",
              b"Content-Length : 1\r\n", b"X-A: a\r\n b\r\n", b"Expect: 100-continue\r\nContent-Length: 5000\r\n"]
    out = [start + s + b"\r\n" + body for s in shapes]
    out += [b"GET /health HTTP/1.0\n\n", b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n"]
    return out


def grammars() -> list[bytes]:
    """GBNF texts, each with a text to feed after a NUL byte."""
    return [
        b'root ::= "yes" | "no"\x00yes',
        b'root ::= num ("+" num)*\nnum ::= [0-9]{1,3}\x0012+345+6',
        b'root ::= obj\nobj ::= "{" ( [a-z]+ ":" val ( "," [a-z]+ ":" val )* )? "}"\nval ::= obj | [0-9]+\x00{a:{b:1},c:2}',
        b'root ::= [^"\\\\]* "\\"" . "\\u00e9"?\x00ab"x\xc3\xa9',
        b'root ::=\n  ( "a" | "b" ){2,}\n  | "c"?\x00abab',
        b'\x00{"a": [1, 2.5e3, true, null, "x\\u00e9"]}',
        b'\x00{"k":"v"}   ',
    ]


def tool_replies() -> list[tuple[int, bytes]]:
    """(format, reply) seeds for fuzz_tools: 0 Hermes, 1 Llama 3, 2 Mistral, 3 DeepSeek."""
    return [
        (0, b'Sure.\n<tool_call>\n{"name": "f", "arguments": {"a": "}\\"x"}}\n</tool_call>\n<tool_call>{"name": "g"}'),
        (0, b'<tool_call>{"name": "f", "arguments": "{\\"k\\": 1}"}'),
        (1, b' <|python_tag|>{"name": "f", "parameters": {"a": [1, {"b": null}]}}; {"name": "g", "parameters": {}}'),
        (2, b'ok [TOOL_CALLS] [{"name": "f", "arguments": {}, "id": "abcdefghi"}, {"name": "g", "arguments": {"x": 1}}]'),
        (3, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": 1}\n```"
            "<｜tool▁call▁end｜><｜tool▁calls▁end｜>".encode()),
    ]


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/fuzz/corpus"
    strings = test_strings()
    for s in strings:
        b = s.encode("utf-8", errors="surrogateescape")
        put(out, "tok_bpe", b)
        put(out, "tok_spm", b)
    for t in templates():
        put(out, "chat", t)
        for i in range(0, min(len(strings), 30), 3):
            msgs = [b"\x00user\x00" + strings[i].encode("utf-8", "surrogateescape"),
                    b"\x00assistant\x00" + strings[i + 1].encode("utf-8", "surrogateescape")]
            put(out, "chat", t + b"".join(msgs))
        # system first, alternating turns, reasoning in an assistant turn, whitespace to trim (every family's paths)
        put(out, "chat", t + b"\x00system\x00 Be brief. \x00user\x00 Hi\xe3\x80\x80\x00assistant\x00<think>\nr\n"
            b"</think>\n\nA\x00user\x00<tool_response>x</tool_response>")
    for g in gguf_seeds():
        put(out, "gguf", g)
    for b in bodies(strings):
        put(out, "oai", b)
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"enum": [1, "x", None]},
                                                      "maxItems": 3}, "d": {"type": "string", "format": "date"},
                                                "r": {"$ref": "#/$defs/n"}}, "required": ["a"],
              "additionalProperties": False, "$defs": {"n": {"anyOf": [{"type": "integer"}, {"const": "k"}]}}}
    for rf in ({"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}):
        put(out, "oai", json.dumps({"messages": [{"role": "user", "content": "hi"}], "response_format": rf}).encode())
    put(out, "oai", json.dumps({"prompt": "x", "grammar": 'root ::= [0-9]{1,3} ("," [0-9])*'}).encode())
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]
    conv = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "abcdefghi", "type": "function", "function": {"name": "get_weather", "arguments": "{\"a\": [1]}"}}]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "sunny"}]
    for choice in ("auto", "required", "none", {"type": "function", "function": {"name": "get_weather"}}):
        put(out, "oai", json.dumps({"messages": conv, "tools": tools, "tool_choice": choice}).encode())
    for fmt, reply in tool_replies():
        for forced in (0, 4):
            put(out, "tools", bytes([fmt | forced, len(reply) // 2 % 256]) + reply)
    put(out, "tools", b"\x00\x07" + json.dumps(tools).encode())
    for h in http_heads():
        put(out, "http", h)
    for g in grammars():
        put(out, "grammar", g)
    n = {d.name: len(list(d.iterdir())) for d in sorted(out.iterdir()) if d.is_dir()}
    print("make_corpus:", ", ".join(f"{k} {v}" for k, v in n.items()), "files in", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
