"""float_ref.py - our own float reference of the llama and qwen forward passes, in numpy, over dequantized GGUF weights.

This is the independent yardstick for zili's logits: weights are dequantized with gguf-py (gguf.quants), and all
activations stay in floating point (float64 by default) - no 8-bit activation quantization, no F16 KV cache - so
the difference between zili and this reference is what zili's (and llama.cpp's) deliberate approximations cost.

Architecture `llama` (Llama 2/3, SmolLM2, Mistral, TinyLlama):
    x = token_embd[tokens]                                        (n, n_embd)
    per block:  h = rmsnorm(x) * attn_norm
                q, k, v = h Wq^T, h Wk^T, h Wv^T                  (n, n_head|n_head_kv, head_dim)
                rope(q), rope(k)   rotating the ADJACENT pairs (2i, 2i+1) of each head by pos * base^(-2i/n_rot):
                                   GGUF conversion of llama checkpoints permutes Wq/Wk rows so that this
                                   "normal" rope layout is the one to apply (NEOX rotates (i, i + n_rot/2)).
                x += softmax(q k^T / sqrt(head_dim) + causal mask) v Wo^T   (query head h reads kv head
                     h // (n_head / n_head_kv): grouped-query attention)
                h = rmsnorm(x) * ffn_norm
                x += (silu(h Wg^T) * (h Wu^T)) Wd^T
    logits = (rmsnorm(x) * output_norm) Wout^T, Wout = output.weight, or token_embd.weight when tied.

Architectures `qwen2` (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen) and `qwen3` change the attention's q, k, v:
    q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv                (biases: qwen2; optional in qwen3)
    q, k = rmsnorm(q[head]) * attn_q_norm, rmsnorm(k[head]) * attn_k_norm   (qwen3: each head of head_dim alone)
    rope(q), rope(k)   rotating the pairs (i, i + n_rot/2) of each head (NEOX: Qwen's rows are not permuted)
and qwen3's head_dim (attention.key_length) may differ from n_embd / n_head.

Architecture `gemma3` (Gemma 3 text models):
    x = token_embd[tokens] * sqrt(n_embd)
    per block:  h = rmsnorm(x) * attn_norm; q, k, v as qwen3 (per-head Q/K norms, NEOX rope), the rope base
                rope.freq_base on global layers and rope.freq_base_swa (10000) on sliding-window layers
                x += rmsnorm(softmax(q k^T * attn_scale + mask) v Wo^T) * post_attention_norm
                h = rmsnorm(x) * ffn_norm
                x += rmsnorm((gelu_tanh(h Wg^T) * (h Wu^T)) Wd^T) * post_ffw_norm
    attn_scale = 1 / sqrt(head_dim); sliding-window layers (every layer but each sliding_window_pattern-th, 6 by
    default) also mask keys more than sliding_window - 1 positions back.

Architectures `qwen3moe` and `qwen2moe` (mixtures of experts) keep qwen3's / qwen2's attention and replace the FFN:
    h = rmsnorm(x) * ffn_norm
    p = softmax(h Wr^T)                                           (n, n_expert), Wr = ffn_gate_inp
    e_0 .. e_{k-1} = the k = expert_used_count largest p (ties to the lower index), w_j = p[e_j]
    qwen3moe: w_j /= sum_j w_j
    x += sum_j w_j (silu(h Wg[e_j]^T) * (h Wu[e_j]^T)) Wd[e_j]^T  (Wg, Wu, Wd: ffn_{gate,up,down}_exps)
    qwen2moe also: x += sigmoid(h . ffn_gate_inp_shexp) * (silu(h Wgs^T) * (h Wus^T)) Wds^T   (the shared expert)

Only the model file is read; nothing here depends on zili or llama.cpp.
"""
from __future__ import annotations

import numpy as np

import gguf


class FloatModel:
    """A GGUF llama / qwen2 / qwen3 model with every weight dequantized to float32 (computation in self.dtype)."""

    def __init__(self, path: str, dtype=np.float64):
        self.path = path
        self.dtype = dtype
        r = gguf.GGUFReader(path)
        self.meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("tokenizer.ggml.")
                     or k in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                              "tokenizer.ggml.add_bos_token", "tokenizer.ggml.model")}
        self.arch = self.meta["general.architecture"]
        if self.arch not in ("llama", "qwen2", "qwen3", "gemma3", "qwen2moe", "qwen3moe"):
            raise NotImplementedError(f"float_ref: architecture {self.arch!r} (llama, qwen2, qwen3, gemma3, "
                                      f"qwen2moe, qwen3moe only)")
        self.neox = self.arch in ("qwen2", "qwen3", "gemma3", "qwen2moe", "qwen3moe")
        a = self.arch
        self.n_embd = int(self.meta[f"{a}.embedding_length"])
        self.n_layer = int(self.meta[f"{a}.block_count"])
        self.n_head = int(self.meta[f"{a}.attention.head_count"])
        self.n_head_kv = int(self.meta.get(f"{a}.attention.head_count_kv", self.n_head))
        self.head_dim = int(self.meta.get(f"{a}.attention.key_length", self.n_embd // self.n_head))
        self.n_rot = int(self.meta.get(f"{a}.rope.dimension_count", self.head_dim))
        self.rope_base = float(self.meta.get(f"{a}.rope.freq_base", 10000.0))
        self.eps = float(self.meta[f"{a}.attention.layer_norm_rms_epsilon"])
        self.n_swa = int(self.meta.get(f"{a}.attention.sliding_window", 0)) if a in ("gemma3", "llama") else 0
        # gemma3: every 6th layer (by default) is global; llama (Mistral): every layer slides.
        pattern = int(self.meta.get(f"{a}.attention.sliding_window_pattern", 6)) if a == "gemma3" else 0
        self.swa = [self.n_swa > 0 and (pattern == 0 or i % pattern < pattern - 1) for i in range(self.n_layer)]
        self.rope_base_swa = float(self.meta.get(f"{a}.rope.freq_base_swa", 10000.0))
        # RoPE scaling (global layers only in gemma3): "linear" divides every angle by the factor; "yarn" divides
        # only the low-frequency pairs, with a linear ramp between, and scales cos/sin by 1 + 0.1 ln(factor)
        # (Peng et al. 2023, as Hugging Face's reference implements it); a factor without a type means linear.
        self.rope_type = str(self.meta.get(f"{a}.rope.scaling.type", ""))
        self.rope_factor = float(self.meta.get(f"{a}.rope.scaling.factor", 0.0))
        if not self.rope_type and self.rope_factor:
            self.rope_type = "linear"
        if self.rope_type not in ("", "none", "linear", "yarn"):
            raise NotImplementedError(f"float_ref: rope scaling {self.rope_type}")
        self.rope_orig_ctx = int(self.meta.get(f"{a}.rope.scaling.original_context_length",
                                               self.meta.get(f"{a}.context_length", 2048)))
        self.n_expert_used = int(self.meta.get(f"{a}.expert_used_count", 0))
        self.w: dict[str, np.ndarray] = {}
        for t in r.tensors:
            # gguf-py gives numpy order (n_out, n_in) for 2-D tensors, (n_expert, n_out, n_in) for 3-D ones.
            self.w[t.name] = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        self.n_vocab = self.w["token_embd.weight"].shape[0]
        self.out_w = self.w.get("output.weight", self.w["token_embd.weight"])
        self.rope_freqs = self.w.get("rope_freqs.weight")  # Llama 3.1: per-pair divisors of the angle

    def _mm(self, x: np.ndarray, name_or_w) -> np.ndarray:
        w = self.w[name_or_w] if isinstance(name_or_w, str) else name_or_w
        return x @ w.T.astype(self.dtype)

    def _rmsnorm(self, x: np.ndarray, name: str) -> np.ndarray:
        """Over the last axis (the whole row, or one head of a (n, heads, head_dim) array)."""
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.w[name].astype(self.dtype)

    def _proj(self, h: np.ndarray, name: str) -> np.ndarray:
        """h W^T (+ bias when the file has `name`.bias); name without the .weight suffix."""
        y = self._mm(h, name + ".weight")
        if name + ".bias" in self.w:
            y = y + self.w[name + ".bias"].astype(self.dtype)
        return y

    def _rope(self, x: np.ndarray, pos: np.ndarray, base: float | None = None, scaled: bool = True) -> np.ndarray:
        """x: (n, heads, head_dim); rotates pair i < n_rot/2 by pos * base^(-2i/n_rot) (scaled as the file says
        unless scaled=False). The pair is (2i, 2i+1) for llama and (i, i + n_rot/2) for NEOX (qwen2, qwen3,
        gemma3)."""
        half = self.n_rot // 2
        base = self.rope_base if base is None else base
        theta = base ** (-2.0 * np.arange(half, dtype=np.float64) / self.n_rot)
        mag = 1.0
        if scaled and self.rope_freqs is not None:
            theta = theta / self.rope_freqs.astype(np.float64)
        if scaled and self.rope_type == "linear":
            theta = theta / self.rope_factor
        elif scaled and self.rope_type == "yarn":
            f, orig = self.rope_factor, self.rope_orig_ctx

            def pair_of(rotations: float) -> float:  # the pair index that turns `rotations` times over orig
                return self.n_rot * np.log(orig / (rotations * 2 * np.pi)) / (2 * np.log(base))
            lo = max(np.floor(pair_of(32.0)), 0.0)
            hi = min(np.ceil(pair_of(1.0)), self.n_rot - 1.0)
            ramp = np.clip((np.arange(half) - lo) / max(hi - lo, 0.001), 0.0, 1.0)
            keep = 1.0 - ramp                      # 1: high frequency, extrapolated (unscaled)
            theta = theta / f * (1.0 - keep) + theta * keep
            mag = 1.0 + 0.1 * np.log(f)
        ang = pos.astype(np.float64)[:, None] * theta[None, :]          # (n, half)
        c, s = mag * np.cos(ang)[:, None, :], mag * np.sin(ang)[:, None, :]
        out = x.copy()
        i0 = np.arange(half) if self.neox else np.arange(0, self.n_rot, 2)
        i1 = i0 + half if self.neox else i0 + 1
        x0, x1 = x[..., i0], x[..., i1]
        out[..., i0] = x0 * c - x1 * s
        out[..., i1] = x0 * s + x1 * c
        return out

    def _swiglu(self, h: np.ndarray, wg: np.ndarray, wu: np.ndarray, wd: np.ndarray) -> np.ndarray:
        g, u = self._mm(h, wg), self._mm(h, wu)
        return self._mm(g / (1.0 + np.exp(-g)) * u, wd)

    def _moe(self, h: np.ndarray, b: str, sel: np.ndarray | None = None) -> np.ndarray:
        """The routed experts of qwen3moe / qwen2moe (and qwen2moe's shared expert) for the rows of h; sel: the
        experts to route each row to (n, k), or None to choose them here. The probabilities are kept in
        self.router_probs (one (n, n_expert) array per MoE layer of the last forward)."""
        logits = self._mm(h, b + "ffn_gate_inp.weight")
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        self.router_probs.append(p)
        if sel is None:
            sel = np.argsort(-p, axis=1, kind="stable")[:, : self.n_expert_used]
        wsel = np.take_along_axis(p, sel, axis=1)
        if self.arch == "qwen3moe":
            wsel = wsel / wsel.sum(axis=1, keepdims=True)
        out = np.zeros_like(h)
        wg, wu, wd = (self.w[b + f"ffn_{n}_exps.weight"] for n in ("gate", "up", "down"))
        for e in np.unique(sel):
            rows, slot = np.nonzero(sel == e)
            out[rows] += wsel[rows, slot][:, None] * self._swiglu(h[rows], wg[e], wu[e], wd[e])
        if b + "ffn_gate_inp_shexp.weight" in self.w:
            gate = 1.0 / (1.0 + np.exp(-(h @ self.w[b + "ffn_gate_inp_shexp.weight"].astype(self.dtype))))
            out += gate[:, None] * self._swiglu(h, self.w[b + "ffn_gate_shexp.weight"], self.w[b + "ffn_up_shexp.weight"],
                                                self.w[b + "ffn_down_shexp.weight"])
        return out

    def forward(self, tokens, pos0: int = 0, routing: list | None = None) -> np.ndarray:
        """Logits (n_tokens, n_vocab) of every position of one causal batch starting at position pos0. routing (MoE
        only): per layer, the (n_tokens, expert_used_count) experts to route to instead of the reference's own top k
        (a near-tie between the k-th and the next expert, which rounding decides, would otherwise change a token's
        experts and its logits by far more than any rounding)."""
        self.router_probs = []
        toks = np.asarray(tokens, dtype=np.int64)
        n = len(toks)
        hd, nh, nkv = self.head_dim, self.n_head, self.n_head_kv
        pos = np.arange(pos0, pos0 + n)
        x = self.w["token_embd.weight"][toks].astype(self.dtype)
        gemma = self.arch == "gemma3"
        if gemma:
            x = x * np.sqrt(self.n_embd)
        mask = np.triu(np.full((n, n), -np.inf), k=1)
        swa_mask = mask.copy()
        if self.n_swa:
            swa_mask[pos[:, None] - pos[None, :] >= self.n_swa] = -np.inf
        for i in range(self.n_layer):
            b = f"blk.{i}."
            h = self._rmsnorm(x, b + "attn_norm.weight")
            q = self._proj(h, b + "attn_q").reshape(n, nh, hd)
            k = self._proj(h, b + "attn_k").reshape(n, nkv, hd)
            v = self._proj(h, b + "attn_v").reshape(n, nkv, hd)
            if b + "attn_q_norm.weight" in self.w:
                q = self._rmsnorm(q, b + "attn_q_norm.weight")
                k = self._rmsnorm(k, b + "attn_k_norm.weight")
            local = gemma and self.swa[i]  # gemma3's sliding-window layers: their own base, unscaled
            base = self.rope_base_swa if local else self.rope_base
            q, k = self._rope(q, pos, base, not local), self._rope(k, pos, base, not local)
            grp = nh // nkv
            k = np.repeat(k, grp, axis=1)                                  # (n, nh, hd)
            v = np.repeat(v, grp, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + (swa_mask if self.swa[i] else mask)  # (nh, n, n)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            o = np.einsum("hqk,khd->qhd", s, v).reshape(n, nh * hd)
            a = self._mm(o, b + "attn_output.weight")
            x = x + (self._rmsnorm(a, b + "post_attention_norm.weight") if gemma else a)
            h = self._rmsnorm(x, b + "ffn_norm.weight")
            if b + "ffn_gate_inp.weight" in self.w:
                x = x + self._moe(h, b, None if routing is None else np.asarray(routing[i], dtype=np.int64))
                continue
            g = self._mm(h, b + "ffn_gate.weight")
            u = self._mm(h, b + "ffn_up.weight")
            if gemma:
                act = 0.5 * g * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g ** 3)))
                x = x + self._rmsnorm(self._mm(act * u, b + "ffn_down.weight"), b + "post_ffw_norm.weight")
            else:
                x = x + self._mm(g / (1.0 + np.exp(-g)) * u, b + "ffn_down.weight")
        return self._mm(self._rmsnorm(x, "output_norm.weight"), self.out_w)
