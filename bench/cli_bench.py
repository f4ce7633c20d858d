#!/usr/bin/env python3
"""cli_bench.py - single-sequence speed of llama.cpp (llama-cpp-python, weights read in, not mmap'd) on
SmolLM2: prompt and greedy decode tokens/s, to set beside `zili run --no-mmap` on the same prompt:

    /usr/bin/time -v python3 bench/cli_bench.py
    /usr/bin/time -v build/zili run -m models/SmolLM2-135M-Instruct.Q4_1.gguf --no-mmap -t 2 --temp 0 \\
        --ignore-eos -n 128 -p "$(python3 bench/cli_bench.py --print-prompt)"

A quick side-by-side, not a benchmark suite (issue 4 asks for one); the Python loop adds a little per token.
"""
import sys
import time

import numpy as np

PROMPT = ("Once upon a time, in a small village by the sea, there lived an old fisherman who every morning walked "
          "down to the harbour and")
MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

if "--print-prompt" in sys.argv:
    print(PROMPT)
    sys.exit(0)
import llama_cpp  # noqa: E402

llm = llama_cpp.Llama(model_path=MODEL, n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2, use_mmap=False,
                      flash_attn=False, verbose=False)
ids = llm.tokenize(PROMPT.encode(), add_bos=False)
for _ in range(2):  # the second run is reported (the first warms caches)
    llm.reset()
    t0 = time.time()
    llm.eval(ids)
    t1 = time.time()
    for _ in range(128):
        p = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        llm.eval([int(np.argmax(np.ctypeslib.as_array(p, shape=(llm.n_vocab(),))))])
    t2 = time.time()
print(f"llama.cpp: prompt {len(ids)} tokens {len(ids) / (t1 - t0):.1f} tok/s, decode 128 tokens {128 / (t2 - t1):.1f} tok/s")
