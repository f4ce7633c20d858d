"""Malformed deepseek2 (multi-head latent attention) files: each must make `zili info -m FILE` exit non-zero with one
specific line on stderr, as test_malformed_gguf.py's cases (whose file writer and checks this reuses).

The base (ds_spec) is test_malformed_gguf.py's small model made a deepseek2 of two layers: layer 0 dense, layer 1
routed (4 experts, 2 used, 2 groups of which 1 is used, sigmoid gating, exp_probs_b, one shared expert), with the
compressed query (q_lora_rank 4), a latent of 8 plus 4 rope dims and the split attn_k_b / attn_v_b. It must load
and `zili info` must print its MLA dims (test_ds_base_file_loads), so no case passes because the base was broken.
"""
from __future__ import annotations

import pytest

from test_malformed_gguf import (BOOL, F32, STR, U32, U64, GgufSpec, Tensor, base_spec, expect_error,
                                 run_info)

D, H, QL, KL, R, NOPE, VH = 8, 2, 4, 8, 4, 4, 4
N_EXP, N_USED, FF_EXP, N_LAYER = 4, 2, 16, 2
A = "deepseek2"


def ds_spec() -> GgufSpec:
    g = base_spec()
    g.kvs = [(k.replace("llama.", f"{A}.", 1), t, v) if k.startswith("llama.") else (k, t, v) for k, t, v in g.kvs]
    g.set_kv("general.architecture", STR, A)
    for key, vt, v in [
        ("block_count", U32, N_LAYER), ("attention.head_count", U32, H), ("attention.head_count_kv", U32, 1),
        ("attention.q_lora_rank", U32, QL), ("attention.kv_lora_rank", U32, KL),
        ("attention.key_length", U32, KL + R), ("attention.value_length", U32, KL),
        ("attention.key_length_mla", U32, NOPE + R), ("attention.value_length_mla", U32, VH),
        ("rope.dimension_count", U32, R), ("leading_dense_block_count", U32, 1),
        ("expert_count", U32, N_EXP), ("expert_used_count", U32, N_USED), ("expert_feed_forward_length", U32, FF_EXP),
        ("expert_shared_count", U32, 1), ("expert_weights_scale", F32, 2.5), ("expert_weights_norm", BOOL, True),
        ("expert_gating_func", U32, 2), ("expert_group_count", U32, 2), ("expert_group_used_count", U32, 1),
    ]:
        g.set_kv(f"{A}.{key}", vt, v)
    g.tensors = [t for t in g.tensors if not t.name.startswith("blk.")]
    g.tensors.append(Tensor("output.weight", [D, 8]))
    for il in range(N_LAYER):
        b = f"blk.{il}."
        g.tensors += [
            Tensor(b + "attn_norm.weight", [D]),
            Tensor(b + "attn_q_a.weight", [D, QL]),
            Tensor(b + "attn_q_a_norm.weight", [QL]),
            Tensor(b + "attn_q_b.weight", [QL, H * (NOPE + R)]),
            Tensor(b + "attn_kv_a_mqa.weight", [D, KL + R]),
            Tensor(b + "attn_kv_a_norm.weight", [KL]),
            Tensor(b + "attn_k_b.weight", [NOPE, KL, H]),
            Tensor(b + "attn_v_b.weight", [KL, VH, H]),
            Tensor(b + "attn_output.weight", [H * VH, D]),
            Tensor(b + "ffn_norm.weight", [D]),
        ]
        if il == 0:
            g.tensors += [Tensor(b + "ffn_gate.weight", [D, 16]), Tensor(b + "ffn_up.weight", [D, 16]),
                          Tensor(b + "ffn_down.weight", [16, D])]
            continue
        g.tensors += [
            Tensor(b + "ffn_gate_inp.weight", [D, N_EXP]),
            Tensor(b + "exp_probs_b.bias", [N_EXP]),
            Tensor(b + "ffn_gate_exps.weight", [D, FF_EXP, N_EXP]),
            Tensor(b + "ffn_up_exps.weight", [D, FF_EXP, N_EXP]),
            Tensor(b + "ffn_down_exps.weight", [FF_EXP, D, N_EXP]),
            Tensor(b + "ffn_gate_shexp.weight", [D, FF_EXP]),
            Tensor(b + "ffn_up_shexp.weight", [D, FF_EXP]),
            Tensor(b + "ffn_down_shexp.weight", [FF_EXP, D]),
        ]
    return g


def mutate_ds(fn):
    g = ds_spec()
    fn(g)
    return g.build()


def test_ds_base_file_loads(tmp_path):
    r = run_info(tmp_path, ds_spec().build(), "base.gguf")
    assert r.returncode == 0, r.stderr
    assert (f"MLA:             q_lora_rank {QL}, kv_lora_rank {KL}, key {NOPE + R} ({NOPE} + rope {R}), value {VH}; "
            f"cache {KL + R} per token and layer") in r.stdout, r.stdout
    assert f"experts:         {N_EXP}, {N_USED} used per token (weights normalized)" in r.stdout, r.stdout
    assert "sigmoid gating" in r.stdout and "routing:         2 groups, 1 used; weights scaled x2.5" in r.stdout
    assert "shared experts:  1, feed-forward 16; 1 leading dense layers" in r.stdout, r.stdout


def _kv(key: str, vt: int, v):
    return lambda g: g.set_kv(f"{A}.{key}", vt, v)


def _drop(key: str):
    return lambda g: g.drop_kv(f"{A}.{key}")


def _dims(name: str, dims: list[int]):
    def f(g: GgufSpec):
        g.tensor(name).dims = dims
    return f


def _remove(name: str):
    return lambda g: g.tensors.remove(g.tensor(name))


def _lite_with_q_a(g: GgufSpec):
    """q_lora_rank 0 (V2-Lite) but the compressed query's tensors and no attn_q."""
    g.set_kv(f"{A}.attention.q_lora_rank", U32, 0)


CASES = {
    "kv_lora_rank missing": (_drop("attention.kv_lora_rank"), r"kv_lora_rank' is missing"),
    "kv_lora_rank zero": (_kv("attention.kv_lora_rank", U32, 0), r"kv_lora_rank = 0 out of range"),
    "kv_lora_rank absurd": (_kv("attention.kv_lora_rank", U64, 1 << 40), r"kv_lora_rank = 1099511627776 out of range"),
    "kv_lora_rank not the key length": (_kv("attention.kv_lora_rank", U32, 6),
                                        r"key_length = kv_lora_rank \+ rope\.dimension_count"),
    "value_length not kv_lora_rank": (_kv("attention.value_length", U32, 4), r"value_length = kv_lora_rank"),
    "value_length above key_length": (_kv("attention.value_length", U32, 13), r"value_length = 13 out of range"),
    "head_count_kv not 1": (_kv("attention.head_count_kv", U32, 2), r"head_count_kv 1"),
    "key_length_mla missing (legacy attn_kv_b file)": (_drop("attention.key_length_mla"),
                                                      r"key_length_mla.*not supported"),
    "key_length_mla all rope": (_kv("attention.key_length_mla", U32, R), r"key_length_mla 4 leaves no unrotated"),
    "key_length_mla above the latent": (_kv("attention.key_length_mla", U32, 64), r"key_length_mla 64.*not supported"),
    "value_length_mla missing": (_drop("attention.value_length_mla"), r"value_length_mla' is missing"),
    "value_length_mla absurd": (_kv("attention.value_length_mla", U32, 1 << 20), r"value_length_mla = 1048576 out"),
    "q_lora_rank absurd": (_kv("attention.q_lora_rank", U32, 1 << 30), r"q_lora_rank = 1073741824 out of range"),
    "q_lora_rank 0 without attn_q": (_lite_with_q_a, r"attn_q\.weight"),
    "attn_q_a of the wrong shape": (_dims("blk.0.attn_q_a.weight", [D, QL + 1]), r"attn_q_a\.weight"),
    "attn_kv_a_mqa without the rope rows": (_dims("blk.0.attn_kv_a_mqa.weight", [D, KL]), r"attn_kv_a_mqa\.weight"),
    "attn_k_b 2-D": (_dims("blk.1.attn_k_b.weight", [NOPE, KL * H]), r"attn_k_b\.weight"),
    "attn_k_b one head short": (_dims("blk.1.attn_k_b.weight", [NOPE, KL, H - 1]), r"attn_k_b\.weight"),
    "attn_v_b transposed": (_dims("blk.0.attn_v_b.weight", [VH, KL, H]), r"attn_v_b\.weight"),
    "attn_v_b missing": (_remove("blk.1.attn_v_b.weight"), r"attn_v_b\.weight"),
    "attn_kv_a_norm missing": (_remove("blk.0.attn_kv_a_norm.weight"), r"attn_kv_a_norm\.weight"),
    "leading_dense_block_count above the layers": (_kv("leading_dense_block_count", U32, 3),
                                                   r"leading_dense_block_count = 3 out of range"),
    "dense layer without its ffn": (_kv("leading_dense_block_count", U32, 2), r"blk\.1\.ffn_gate\.weight"),
    "expert_shared_count missing": (_drop("expert_shared_count"), r"expert_shared_count' is missing"),
    "expert_shared_count absurd": (_kv("expert_shared_count", U32, 1 << 20), r"expert_shared_count = 1048576"),
    "expert_gating_func unknown": (_kv("expert_gating_func", U32, 3), r"expert_gating_func = 3 out of range"),
    "expert_weights_scale negative": (_kv("expert_weights_scale", F32, -1.0), r"expert_weights_scale = -1 out"),
    "expert_weights_scale NaN": (_kv("expert_weights_scale", F32, float("nan")), r"expert_weights_scale = nan out"),
    "expert_weights_norm not a bool": (_kv("expert_weights_norm", STR, "yes"), r"expert_weights_norm"),
    "expert groups not dividing the experts": (_kv("expert_group_count", U32, 3), r"expert groups 3 .*do not fit"),
    "expert groups used all": (_kv("expert_group_used_count", U32, 2), r"expert groups 2 \(used 2\)"),
    "expert groups absurd": (_kv("expert_group_count", U32, 1000), r"expert_group_count = 1000 out of range"),
    "exp_probs_b of the wrong length": (_dims("blk.1.exp_probs_b.bias", [N_EXP + 1]), r"exp_probs_b\.bias"),
    "shared expert missing": (_remove("blk.1.ffn_down_shexp.weight"), r"ffn_down_shexp\.weight"),
    "shared expert of the wrong width": (_dims("blk.1.ffn_gate_shexp.weight", [D, 2 * FF_EXP]),
                                         r"ffn_gate_shexp\.weight"),
    "yarn_log_multiplier negative": (_kv("rope.scaling.yarn_log_multiplier", F32, -0.5),
                                     r"yarn_log_multiplier = -0\.5 out of range"),
    "linear rope scaling": (lambda g: (g.set_kv(f"{A}.rope.scaling.type", STR, "linear"),
                                       g.set_kv(f"{A}.rope.scaling.factor", F32, 4.0)), r"linear RoPE scaling"),
    "rope dims all the key": (_kv("rope.dimension_count", U32, 12), r"rope|key_length"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_deepseek2(tmp_path, case):
    fn, pattern = CASES[case]
    line = expect_error(tmp_path, mutate_ds(fn), pattern)
    print(f"{case}: {line}")
