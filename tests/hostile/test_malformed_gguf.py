"""Malformed GGUF files: each must make `zili info -m FILE` exit non-zero with one specific line on stderr.

The mixture-of-experts cases ("moe ...") start from the same model made a qwen3moe or qwen2moe (moe_spec).

Every case starts from a small valid llama model written byte by byte here (GgufSpec below: a 1-layer model with an
8-token SentencePiece vocabulary, all tensors F32), breaks exactly one thing, and checks that zili names the
problem: the exit status is 1 (not a signal), stderr is one line that matches the case's pattern, and there is no
sanitizer report. The valid base file itself must load (test_base_file_loads), so a case cannot pass because
the base was broken in some other way.

The binary is $ZILI (default build/zili); run it against an ASan build (make asan builds only the unit tests;
`make BUILD=build-asan OPT=... ` as in the Makefile's asan target builds build-asan/zili) to catch memory errors.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZILI = os.environ.get("ZILI", str(ROOT / "build" / "zili"))

# GGUF value types and the tensor types used here (the format's numbering).
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
T_F32, T_F16, T_Q4_0, T_Q8_0 = 0, 1, 2, 8

SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q",
              I64: "<q", F64: "<d"}


def gstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(vtype: int, v) -> bytes:
    if vtype == STR:
        return gstr(v)
    if vtype == ARR:
        etype, items = v
        return struct.pack("<IQ", etype, len(items)) + b"".join(value(etype, x) for x in items)
    return struct.pack(SCALAR_FMT[vtype], v)


@dataclasses.dataclass
class Tensor:
    name: str
    dims: list[int]
    ttype: int = T_F32
    offset: int | None = None  # None: placed after the previous one, aligned
    data: bytes | None = None  # None: zeros of the size dims and type give


@dataclasses.dataclass
class GgufSpec:
    """A GGUF file as lists of parts; build() lays it out. Every field can be changed to break the file."""
    magic: bytes = b"GGUF"
    version: int = 3
    kvs: list = dataclasses.field(default_factory=list)  # (key, vtype, value) or raw bytes
    tensors: list = dataclasses.field(default_factory=list)
    alignment: int = 32
    n_tensors: int | None = None  # header counts; None: the real ones
    n_kv: int | None = None
    truncate: int = 0  # bytes cut off the end

    def kv(self, key: str):
        return next(k for k in self.kvs if isinstance(k, tuple) and k[0] == key)

    def set_kv(self, key: str, vtype: int, v) -> None:
        self.kvs = [k for k in self.kvs if not (isinstance(k, tuple) and k[0] == key)] + [(key, vtype, v)]

    def drop_kv(self, key: str) -> None:
        self.kvs = [k for k in self.kvs if not (isinstance(k, tuple) and k[0] == key)]

    def tensor(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    def build(self) -> bytes:
        out = bytearray(self.magic + struct.pack("<I", self.version))
        out += struct.pack("<QQ", len(self.tensors) if self.n_tensors is None else self.n_tensors,
                           len(self.kvs) if self.n_kv is None else self.n_kv)
        for k in self.kvs:
            out += k if isinstance(k, bytes) else gstr(k[0]) + struct.pack("<I", k[1]) + value(k[1], k[2])
        datas, off = [], 0
        for t in self.tensors:
            n = 1
            for d in t.dims:
                n *= d
            size = {T_F32: 4 * n, T_F16: 2 * n, T_Q8_0: n // 32 * 34, T_Q4_0: n // 32 * 18}.get(t.ttype, 4 * n)
            data = t.data if t.data is not None else bytes(min(size, 1 << 20))
            if t.offset is None:
                off = (off + self.alignment - 1) // self.alignment * self.alignment if self.alignment > 0 else off
                t_off = off
            else:
                t_off = t.offset
            out += gstr(t.name) + struct.pack("<I", len(t.dims)) + b"".join(struct.pack("<Q", d) for d in t.dims)
            out += struct.pack("<IQ", t.ttype, t_off)
            if t_off + len(data) <= (1 << 24):  # an offset far past the end keeps no data
                datas.append((t_off, data))
                off = max(off, t_off + len(data))
        a = self.alignment if 0 < self.alignment < (1 << 24) else 32
        out += bytes((-len(out)) % a)
        section = bytearray(off)
        for t_off, data in datas:
            section[t_off:t_off + len(data)] = data
        out += section
        return bytes(out[:len(out) - self.truncate] if self.truncate else out)


N_EMBD, N_HEAD, N_FF, N_LAYER, N_CTX = 8, 2, 16, 1, 32
TOKENS = ["<unk>", "<s>", "</s>", "<0x41>", "\u2581a", "a", "b", "\u2581"]
TYPES = [2, 3, 3, 6, 1, 1, 1, 1]


def base_spec() -> GgufSpec:
    g = GgufSpec()
    g.kvs = [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, "malformed-base"),
        ("general.alignment", U32, 32),
        ("llama.context_length", U32, N_CTX),
        ("llama.embedding_length", U32, N_EMBD),
        ("llama.block_count", U32, N_LAYER),
        ("llama.feed_forward_length", U32, N_FF),
        ("llama.attention.head_count", U32, N_HEAD),
        ("llama.attention.head_count_kv", U32, N_HEAD),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.tokens", ARR, (STR, TOKENS)),
        ("tokenizer.ggml.scores", ARR, (F32, [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0])),
        ("tokenizer.ggml.token_type", ARR, (I32, TYPES)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
    ]
    d, v = N_EMBD, len(TOKENS)
    g.tensors = [Tensor("token_embd.weight", [d, v]), Tensor("output_norm.weight", [d])]
    for il in range(N_LAYER):
        g.tensors += [
            Tensor(f"blk.{il}.attn_norm.weight", [d]),
            Tensor(f"blk.{il}.attn_q.weight", [d, d]),
            Tensor(f"blk.{il}.attn_k.weight", [d, d]),
            Tensor(f"blk.{il}.attn_v.weight", [d, d]),
            Tensor(f"blk.{il}.attn_output.weight", [d, d]),
            Tensor(f"blk.{il}.ffn_norm.weight", [d]),
            Tensor(f"blk.{il}.ffn_gate.weight", [d, N_FF]),
            Tensor(f"blk.{il}.ffn_up.weight", [d, N_FF]),
            Tensor(f"blk.{il}.ffn_down.weight", [N_FF, d]),
        ]
    return g


N_EXPERT, N_EXPERT_USED, N_FF_EXP, N_FF_SHEXP = 4, 2, 16, 16


def moe_spec(arch: str = "qwen3moe") -> GgufSpec:
    """The base model as a mixture of experts: qwen3moe (per-head Q/K norms) or qwen2moe (Q/K/V biases, shared
    expert), with a router of N_EXPERT rows and 3-D expert tensors instead of the dense FFN."""
    g = base_spec()
    g.kvs = [(k.replace("llama.", f"{arch}.", 1), t, v) if k.startswith("llama.") else (k, t, v)
             for k, t, v in g.kvs]
    g.set_kv("general.architecture", STR, arch)
    g.set_kv(f"{arch}.expert_count", U32, N_EXPERT)
    g.set_kv(f"{arch}.expert_used_count", U32, N_EXPERT_USED)
    g.set_kv(f"{arch}.expert_feed_forward_length", U32, N_FF_EXP)
    d, hd = N_EMBD, N_EMBD // N_HEAD
    tensors = []
    for t in g.tensors:
        if ".ffn_gate." in t.name or ".ffn_up." in t.name or ".ffn_down." in t.name:
            continue
        tensors.append(t)
        b = t.name.rsplit(".", 2)[0]
        if t.name.endswith(".attn_v.weight") and arch == "qwen2moe":
            tensors += [Tensor(f"{b}.attn_q.bias", [d]), Tensor(f"{b}.attn_k.bias", [d]), Tensor(f"{b}.attn_v.bias", [d])]
        if t.name.endswith(".attn_v.weight") and arch == "qwen3moe":
            tensors += [Tensor(f"{b}.attn_q_norm.weight", [hd]), Tensor(f"{b}.attn_k_norm.weight", [hd])]
        if t.name.endswith(".ffn_norm.weight"):
            tensors += [Tensor(f"{b}.ffn_gate_inp.weight", [d, N_EXPERT]),
                        Tensor(f"{b}.ffn_gate_exps.weight", [d, N_FF_EXP, N_EXPERT]),
                        Tensor(f"{b}.ffn_up_exps.weight", [d, N_FF_EXP, N_EXPERT]),
                        Tensor(f"{b}.ffn_down_exps.weight", [N_FF_EXP, d, N_EXPERT])]
            if arch == "qwen2moe":
                tensors += [Tensor(f"{b}.ffn_gate_inp_shexp.weight", [d]),
                            Tensor(f"{b}.ffn_gate_shexp.weight", [d, N_FF_SHEXP]),
                            Tensor(f"{b}.ffn_up_shexp.weight", [d, N_FF_SHEXP]),
                            Tensor(f"{b}.ffn_down_shexp.weight", [N_FF_SHEXP, d])]
    if arch == "qwen2moe":
        g.set_kv(f"{arch}.expert_shared_feed_forward_length", U32, N_FF_SHEXP)
        tensors.append(Tensor("output.weight", [d, len(TOKENS)]))
    g.tensors = tensors
    return g


def mutate_moe(fn, arch: str = "qwen3moe"):
    g = moe_spec(arch)
    fn(g)
    return g.build()


def run_info(tmp_path: Path, data: bytes, name: str = "bad.gguf") -> subprocess.CompletedProcess:
    p = tmp_path / name
    p.write_bytes(data)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    return subprocess.run([ZILI, "info", "-m", str(p)], capture_output=True, text=True, errors="replace",
                          timeout=60, env=env)


def expect_error(tmp_path: Path, data: bytes, pattern: str) -> str:
    r = run_info(tmp_path, data)
    err = r.stderr
    assert r.returncode > 0, f"exit status {r.returncode} (negative: killed by a signal); stderr: {err!r}"
    assert "Sanitizer" not in err and "runtime error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert re.search(pattern, lines[0]), f"error {lines[0]!r} does not match {pattern!r}"
    return lines[0]


def test_base_file_loads(tmp_path):
    r = run_info(tmp_path, base_spec().build(), "base.gguf")
    assert r.returncode == 0, r.stderr
    assert "llama" in r.stdout


@pytest.mark.parametrize("arch", ["qwen3moe", "qwen2moe"])
def test_moe_base_file_loads(tmp_path, arch):
    r = run_info(tmp_path, moe_spec(arch).build(), "base.gguf")
    assert r.returncode == 0, r.stderr
    assert f"experts:         {N_EXPERT}, {N_EXPERT_USED} used per token" in r.stdout, r.stdout
    assert ("shared expert:   1, feed-forward 16" if arch == "qwen2moe" else "shared expert:   none") in r.stdout


def mutate(fn):
    g = base_spec()
    fn(g)
    return g.build()


def patch(data: bytes, off: int, fmt: str, v) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, v)
    return bytes(b)


BIG = 1 << 62


def _key_len_past_end(g: GgufSpec):
    g.kvs.insert(0, struct.pack("<Q", 60000) + b"k")


def _key_len_huge(g: GgufSpec):
    g.kvs.insert(0, struct.pack("<Q", BIG) + b"k")


def _str_len_huge(g: GgufSpec):
    g.kvs.append(gstr("general.description") + struct.pack("<IQ", STR, BIG) + b"x")


def _arr_len_huge(g: GgufSpec):
    g.kvs.append(gstr("general.tags") + struct.pack("<IIQ", ARR, U32, BIG) + struct.pack("<I", 7))


def _arr_str_elem_huge(g: GgufSpec):
    g.kvs.append(gstr("general.tags") + struct.pack("<IIQ", ARR, STR, 2) + gstr("ok") + struct.pack("<Q", BIG))


def _dup_tensor(g: GgufSpec):
    g.tensors.append(Tensor("output_norm.weight", [N_EMBD]))


def _overlap(g: GgufSpec):
    g.tensors[1].offset = 0  # output_norm on top of token_embd


def _misaligned(g: GgufSpec):
    g.tensors[1].offset = g.tensors[0].dims[0] * g.tensors[0].dims[1] * 4 + 4


def _past_end(g: GgufSpec):
    g.tensors[-1].offset = 1 << 40


def _dims_overflow(g: GgufSpec):
    g.tensors.append(Tensor("big.weight", [1 << 32, 1 << 32, 1 << 32], data=b""))


def _dims_overflow_2(g: GgufSpec):
    g.tensors.append(Tensor("big.weight", [3, (1 << 63) // 3 + 1], data=b""))


def _row_not_blocks(g: GgufSpec):
    t = g.tensor("blk.0.attn_q.weight")
    t.ttype, t.data = T_Q8_0, bytes(34 * 2)


def _byte_token(text: str):
    def f(g: GgufSpec):
        toks = list(TOKENS)
        toks[3] = text
        g.set_kv("tokenizer.ggml.tokens", ARR, (STR, toks))
    return f


CASES = {
    # header
    "bad magic": (lambda: patch(base_spec().build(), 0, "<4s", b"GGUX"), r"magic"),
    "version 1": (lambda: patch(base_spec().build(), 4, "<I", 1), r"version 1\b"),
    "version 4": (lambda: patch(base_spec().build(), 4, "<I", 4), r"version 4\b"),
    "version 0xffffffff": (lambda: patch(base_spec().build(), 4, "<I", 0xFFFFFFFF), r"version 4294967295"),
    "tensor count past the file": (lambda: patch(base_spec().build(), 8, "<Q", 1 << 20), r"tensor.*1048576"),
    "tensor count negative": (lambda: patch(base_spec().build(), 8, "<q", -1), r"tensor"),
    "kv count past the file": (lambda: patch(base_spec().build(), 16, "<Q", 1 << 20), r"(kv|key).*1048576"),
    "kv count negative": (lambda: patch(base_spec().build(), 16, "<q", -1), r"(kv|key)"),
    "empty file": (lambda: b"", r"(short|small|truncated|end of file|empty)"),
    "header only, cut": (lambda: base_spec().build()[:20], r"(short|small|truncated|end of file)"),
    # key/value section
    "key length huge": (lambda: mutate(_key_len_huge), r"kv 0: key length 4611686018427387904"),
    "key length past the file": (lambda: mutate(_key_len_past_end), r"kv 0: key.*60000.*(past|end)"),
    "string value length past the file": (lambda: mutate(_str_len_huge), r"general\.description"),
    "array length past the file": (lambda: mutate(_arr_len_huge), r"general\.tags"),
    "array string element past the file": (lambda: mutate(_arr_str_elem_huge), r"general\.tags"),
    "duplicate key": (lambda: mutate(lambda g: g.kvs.append(("llama.block_count", U32, 1))),
                      r"duplicate.*llama\.block_count"),
    "unknown value type": (lambda: mutate(lambda g: g.kvs.append(gstr("general.x") + struct.pack("<I", 13) + b"\0" * 8)),
                           r"general\.x.*type 13|type 13.*general\.x"),
    "unknown array element type": (
        lambda: mutate(lambda g: g.kvs.append(gstr("general.x") + struct.pack("<IIQ", ARR, 99, 1) + b"\0" * 8)),
        r"general\.x.*99|99.*general\.x"),
    "wrong type for a known key": (lambda: mutate(lambda g: g.set_kv("llama.block_count", STR, "one")),
                                   r"^zili: [^ ]*bad\.gguf: key 'llama\.block_count': expected an integer"),
    # alignment
    "alignment 0": (lambda: mutate(lambda g: g.set_kv("general.alignment", U32, 0)), r"alignment.*\b0\b"),
    "alignment not a power of two": (lambda: mutate(lambda g: g.set_kv("general.alignment", U32, 48)),
                                     r"alignment.*48"),
    "alignment huge": (lambda: mutate(lambda g: g.set_kv("general.alignment", U32, 1 << 31)),
                       r"alignment.*2147483648"),
    # tensor infos
    "tensor name length past the file": (
        lambda: patch(base_spec().build(), len(base_spec().build()) - 8 * 4 - 8, "<Q", 0), r"."),  # replaced below
    "duplicate tensor name": (lambda: mutate(_dup_tensor), r"duplicate.*output_norm\.weight"),
    "unknown tensor type": (lambda: mutate(lambda g: setattr(g.tensors[1], "ttype", 99)),
                            r"output_norm\.weight.*99|99.*output_norm\.weight"),
    "zero dimensions": (lambda: mutate(lambda g: setattr(g.tensors[1], "dims", [])),
                        r"output_norm\.weight"),
    "five dimensions": (lambda: mutate(lambda g: setattr(g.tensors[1], "dims", [8, 1, 1, 1, 1])),
                        r"output_norm\.weight.*(dim|5)"),
    "dimension product overflows 64 bits": (lambda: mutate(_dims_overflow), r"big\.weight"),
    "element count times type size overflows": (lambda: mutate(_dims_overflow_2), r"big\.weight"),
    "row not a multiple of the block size": (lambda: mutate(_row_not_blocks), r"blk\.0\.attn_q\.weight.*(block|32)"),
    "offset misaligned": (lambda: mutate(_misaligned), r"output_norm\.weight.*align"),
    "offsets overlapping": (lambda: mutate(_overlap), r"overlap"),
    "offset past the end": (lambda: mutate(_past_end), r"blk\.0\.ffn_down\.weight.*(past|end|beyond)"),
    "data one byte short": (lambda: mutate(lambda g: setattr(g, "truncate", 1)),
                            r"blk\.0\.ffn_down\.weight.*(past|end|beyond|short)"),
    # model metadata
    "block_count absurd": (lambda: mutate(lambda g: g.set_kv("llama.block_count", U32, 1 << 31)),
                           r"block_count.*2147483648"),
    "block_count zero": (lambda: mutate(lambda g: g.set_kv("llama.block_count", U32, 0)), r"block_count.*\b0\b"),
    "block_count more than the tensors": (lambda: mutate(lambda g: g.set_kv("llama.block_count", U32, 2)),
                                          r"blk\.1\..*missing"),
    "head_count not dividing": (lambda: mutate(lambda g: g.set_kv("llama.attention.head_count", U32, 3)),
                                r"head_count"),
    "embedding_length huge": (lambda: mutate(lambda g: g.set_kv("llama.embedding_length", U64, 1 << 40)),
                              r"embedding_length"),
    "missing general.architecture": (lambda: mutate(lambda g: g.drop_kv("general.architecture")),
                                     r"general\.architecture"),
    "unknown architecture": (lambda: mutate(lambda g: g.set_kv("general.architecture", STR, "gpt-9")),
                             r"gpt-9"),
    "rope scaling type unknown": (lambda: mutate(lambda g: g.set_kv("llama.rope.scaling.type", STR, "warp")),
                                  r"rope scaling.*warp"),
    "rope scaling factor negative": (lambda: mutate(lambda g: g.set_kv("llama.rope.scaling.factor", F32, -4.0)),
                                     r"rope scaling factor.*-4"),
    "rope attn_factor negative": (lambda: mutate(lambda g: g.set_kv("llama.rope.scaling.attn_factor", F32, -1.0)),
                                  r"attn_factor.*-1"),
    "sliding window negative": (lambda: mutate(lambda g: g.set_kv("llama.attention.sliding_window", I32, -8)),
                                r"sliding_window.*-8"),
    "missing embedding_length": (lambda: mutate(lambda g: g.drop_kv("llama.embedding_length")),
                                 r"llama\.embedding_length.*missing"),
    "missing tokens": (lambda: mutate(lambda g: g.drop_kv("tokenizer.ggml.tokens")), r"tokenizer\.ggml\.tokens"),
    "missing tokenizer model": (lambda: mutate(lambda g: g.drop_kv("tokenizer.ggml.model")),
                                r"tokenizer\.ggml\.model"),
    "scores shorter than tokens": (lambda: mutate(lambda g: g.set_kv("tokenizer.ggml.scores", ARR, (F32, [0.0]))),
                                   r"scores"),
    "token types shorter than tokens": (
        lambda: mutate(lambda g: g.set_kv("tokenizer.ggml.token_type", ARR, (I32, [1]))), r"token_type"),
    "bos id of the wrong type": (lambda: mutate(lambda g: g.set_kv("tokenizer.ggml.bos_token_id", STR, "1")),
                                 r"^zili: [^ ]*bad\.gguf: key 'tokenizer\.ggml\.bos_token_id': expected"),
    "add_bos_token of the wrong type": (
        lambda: mutate(lambda g: g.set_kv("tokenizer.ggml.add_bos_token", U32, 1)),
        r"^zili: [^ ]*bad\.gguf: key 'tokenizer\.ggml\.add_bos_token': expected"),
    "bos id out of the vocabulary": (lambda: mutate(lambda g: g.set_kv("tokenizer.ggml.bos_token_id", U32, 99)),
                                     r"bos.*99|99.*bos"),
    "missing required tensor": (lambda: mutate(lambda g: g.tensors.remove(g.tensor("blk.0.attn_q.weight"))),
                                r"blk\.0\.attn_q\.weight.*missing"),
    "tensor of the wrong shape": (lambda: mutate(lambda g: setattr(g.tensor("blk.0.ffn_up.weight"), "dims", [8, 8])),
                                  r"blk\.0\.ffn_up\.weight.*shape"),
    # mixtures of experts (qwen3moe / qwen2moe)
    "moe expert_count zero": (lambda: mutate_moe(lambda g: g.set_kv("qwen3moe.expert_count", U32, 0)),
                              r"qwen3moe\.expert_count = 0 out of range"),
    "moe expert_count missing": (lambda: mutate_moe(lambda g: g.drop_kv("qwen3moe.expert_count")),
                                 r"qwen3moe\.expert_count.*missing"),
    "moe expert_count absurd": (lambda: mutate_moe(lambda g: g.set_kv("qwen3moe.expert_count", U64, 1 << 40)),
                                r"qwen3moe\.expert_count = 1099511627776 out of range"),
    "moe expert_used_count zero": (lambda: mutate_moe(lambda g: g.set_kv("qwen3moe.expert_used_count", U32, 0)),
                                   r"qwen3moe\.expert_used_count = 0 out of range \(1 \.\. 4\)"),
    "moe expert_used_count above expert_count": (
        lambda: mutate_moe(lambda g: g.set_kv("qwen3moe.expert_used_count", U32, 5)),
        r"qwen3moe\.expert_used_count = 5 out of range \(1 \.\. 4\)"),
    "moe expert_used_count missing": (lambda: mutate_moe(lambda g: g.drop_kv("qwen3moe.expert_used_count")),
                                      r"qwen3moe\.expert_used_count.*missing"),
    "moe expert_feed_forward_length absurd": (
        lambda: mutate_moe(lambda g: g.set_kv("qwen3moe.expert_feed_forward_length", U64, 1 << 40)),
        r"expert_feed_forward_length = 1099511627776 out of range"),
    "moe expert_feed_forward_length per layer": (
        lambda: mutate_moe(lambda g: g.set_kv("qwen3moe.expert_feed_forward_length", ARR, (U32, [16]))),
        r"expert_feed_forward_length"),
    "moe expert tensor with one expert too few": (
        lambda: mutate_moe(lambda g: setattr(g.tensor("blk.0.ffn_up_exps.weight"), "dims", [N_EMBD, N_FF_EXP, 3])),
        r"blk\.0\.ffn_up_exps\.weight' has shape \(8, 16, 3\), expected \(8, 16, 4\)"),
    "moe expert tensor 2-D": (
        lambda: mutate_moe(lambda g: setattr(g.tensor("blk.0.ffn_gate_exps.weight"), "dims", [N_EMBD, N_FF_EXP])),
        r"blk\.0\.ffn_gate_exps\.weight' has shape \(8, 16\), expected \(8, 16, 4\)"),
    "moe down experts transposed": (
        lambda: mutate_moe(lambda g: setattr(g.tensor("blk.0.ffn_down_exps.weight"), "dims",
                                             [N_EMBD, N_FF_EXP, N_EXPERT])),
        r"blk\.0\.ffn_down_exps\.weight' has shape \(8, 16, 4\), expected \(16, 8, 4\)"),
    "moe expert tensor 4-D": (
        lambda: mutate_moe(lambda g: setattr(g.tensor("blk.0.ffn_up_exps.weight"), "dims",
                                             [N_EMBD, N_FF_EXP, N_EXPERT, 2])),
        r"blk\.0\.ffn_up_exps\.weight' has shape"),
    "moe router of the wrong shape": (
        lambda: mutate_moe(lambda g: setattr(g.tensor("blk.0.ffn_gate_inp.weight"), "dims", [N_EMBD, N_EXPERT + 1])),
        r"blk\.0\.ffn_gate_inp\.weight' has shape \(8, 5\), expected \(8, 4\)"),
    "moe router missing": (
        lambda: mutate_moe(lambda g: g.tensors.remove(g.tensor("blk.0.ffn_gate_inp.weight"))),
        r"blk\.0\.ffn_gate_inp\.weight.*missing"),
    "moe dense ffn left in": (
        lambda: mutate_moe(lambda g: g.tensors.append(Tensor("blk.0.ffn_up.weight", [N_EMBD, N_FF]))),
        r"blk\.0\.ffn_up\.weight.*not used"),
    "moe shared expert missing": (
        lambda: mutate_moe(lambda g: g.tensors.remove(g.tensor("blk.0.ffn_down_shexp.weight")), "qwen2moe"),
        r"blk\.0\.ffn_down_shexp\.weight.*missing"),
    "moe shared expert gate of the wrong shape": (
        lambda: mutate_moe(lambda g: setattr(g.tensor("blk.0.ffn_gate_inp_shexp.weight"), "dims", [N_EMBD, 2]),
                           "qwen2moe"),
        r"blk\.0\.ffn_gate_inp_shexp\.weight' has shape \(8, 2\), expected \(8, 1\)"),
    "moe qwen2moe without output.weight": (
        lambda: mutate_moe(lambda g: g.tensors.remove(g.tensor("output.weight")), "qwen2moe"),
        r"'output\.weight'.*missing"),
    "moe shared feed-forward absurd": (
        lambda: mutate_moe(lambda g: g.set_kv("qwen2moe.expert_shared_feed_forward_length", U32, 1 << 31),
                           "qwen2moe"),
        r"expert_shared_feed_forward_length = 2147483648 out of range"),
    "byte token <0x-1>": (lambda: mutate(_byte_token("<0x-1>")), r"<0x-1>"),
    "byte token <0xZZ>": (lambda: mutate(_byte_token("<0xZZ>")), r"<0xZZ>"),
    "byte token <0x100>": (lambda: mutate(_byte_token("<0x100>")), r"<0x100>"),
    "byte token empty": (lambda: mutate(_byte_token("")), r"token 3 \(''\) is a byte token"),
}
del CASES["tensor name length past the file"]


def _tensor_name_huge() -> bytes:
    g = base_spec()
    g.tensors = g.tensors[:1]
    data = bytearray(g.build())
    # the first tensor info starts right after the key/values: find its name and make the length huge
    at = bytes(data).index(gstr("token_embd.weight"))
    struct.pack_into("<Q", data, at, BIG)
    return bytes(data)


CASES["tensor name length past the file"] = (_tensor_name_huge, r"(tensor|name).*(length|past|end)")


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed(tmp_path, case):
    make, pattern = CASES[case]
    line = expect_error(tmp_path, make(), pattern)
    print(f"{case}: {line}")
