"""Batching invariance on mixtures of experts: an expert's K-quant rows take llama.cpp's tiled matmul when 8+ rows
of one micro-batch are routed to it (src/model/moe.c), so the engine must count a row's expert mates within its own
sequence, never across the step's other requests. Short prompts (and their decode tokens) run alone and in one step
with long prompts, whose tokens crowd the same experts, must get the same logprobs bit for bit. On the random
qwen3moe Q4_K_M model (16 experts, 4 used: a long prompt gives some experts 8+ rows) and qwen2moe Q8_0 (its shared
expert is an ordinary matmul in the row's mode); tests/ref/common.py makes both."""
import os

import pytest

from conftest import Server
from test_batch_invariance_kquant import alone_equals_batched, random_model


@pytest.mark.parametrize("model", [random_model("qwen3moe-q4_k_m.gguf"), random_model("qwen2moe-q8_0.gguf")],
                         ids=os.path.basename)
def test_moe_short_prompt_alone_equals_batched(model):
    if not os.path.exists(model):
        pytest.skip(f"{model} is absent (tests/ref/common.py makes it)")
    s = Server("--parallel", "6", "-c", "256", "--no-prefix-cache", model=model)
    try:
        alone_equals_batched(s, 4)
    finally:
        assert s.stop() == 0
