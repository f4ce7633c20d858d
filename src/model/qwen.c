/*
 * qwen.c - the Qwen family: `qwen2` (Qwen2, Qwen2.5, DeepSeek-R1-Distill-Qwen) and `qwen3` (dense Qwen3): their
 * tensors and their forward pass.
 *
 *   x = token_embd[token]
 *   for each layer:
 *       q, k, v = Wq . rmsnorm(x) + bq, Wk . rmsnorm(x) + bk, Wv . rmsnorm(x) + bv
 *       q, k = rmsnorm_per_head(q) * q_norm, rmsnorm_per_head(k) * k_norm     (qwen3 only)
 *       x += Wo . attention(rope_neox(q), rope_neox(k), v)
 *       x += Wdown . (silu(Wgate . rmsnorm(x)) * (Wup . rmsnorm(x)))
 *   logits = output . rmsnorm(x)                      (only for tokens that ask for logits)
 *
 * The two differ from llama only where marked: qwen2 has Q/K/V biases (required here: every Qwen2 checkpoint has
 * them, so a file without them is broken); qwen3 has no biases (optional, as llama.cpp allows) but normalises
 * each head of Q and K with its own RMSNorm (gain of head_dim) after the bias and before RoPE, and its head width
 * may differ from n_embd / n_head (attention.key_length). Both rotate the pairs (i, i + n_rot/2) of each head
 * (NEOX RoPE; the converter does not permute Qwen's Q/K rows as it does llama's), over the whole head (llama.cpp
 * requires rope.dimension_count == head_dim). The attention scale is 1 / sqrt(head_dim).
 *
 * The arithmetic is llama.cpp's (src/models/qwen2.cpp, qwen3.cpp): the same ops in the same order, each op with
 * ggml's rounding (see ops.h and attention.c), so greedy generations agree token for token.
 *
 * The mixture-of-experts variants `qwen2moe` and `qwen3moe` bind and run this attention with moe.c's FFN.
 *
 * Threads: called by zl_model_forward on the thread that owns cpu, kv and f; the ops use cpu's pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "model/arch.h"

/* Binds the tensors of both variants; qk_norm selects qwen3 (per-head Q/K norms required, biases optional), else
 * qwen2 (Q/K/V biases required, no Q/K norms). moe: qwen3moe / qwen2moe, whose FFNs are moe.c's (qwen2moe's
 * output matrix is required: llama.cpp does not tie it). */
static int qwen_bind(zl_model *m, bool qk_norm, bool moe, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const int64_t d = h->n_embd, hd = h->head_dim, q_dim = (int64_t)h->n_head * h->head_dim;
    const int64_t kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    const bool bias_required = !qk_norm;
    int rc;

    if (moe && (rc = zl_moe_read_hparams(m, !qk_norm, err)) != ZL_OK)
        return rc;
    if (h->n_rot != h->head_dim)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: %s with rope.dimension_count %d != head width %d is not "
                          "supported", gguf_path(m->gguf), h->arch_name, h->n_rot, h->head_dim);
    if ((rc = zl_model_bind_matrix(m, "token_embd.weight", d, h->n_vocab, true, &m->tok_embd, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_vector(m, "output_norm.weight", d, true, &m->output_norm, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_matrix(m, "output.weight", d, h->n_vocab, moe && !qk_norm, &m->output, err)) != ZL_OK)
        return rc;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings (Qwen2.5 0.5B-3B, Qwen3 0.6B-4B) */

    m->layers = calloc((size_t)h->n_layer, sizeof *m->layers);
    if (!m->layers)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %d layers", gguf_path(m->gguf), h->n_layer);
    for (int32_t il = 0; il < h->n_layer; il++) {
        zl_layer *l = &m->layers[il];
#define MAT(suffix, ne0, ne1, field)                                                                                \
    do {                                                                                                            \
        if ((rc = zl_model_bind_layer_matrix(m, il, suffix, ne0, ne1, true, &l->field, err)) != ZL_OK)              \
            return rc;                                                                                              \
    } while (0)
#define VEC(suffix, n, req, field)                                                                                  \
    do {                                                                                                            \
        if ((rc = zl_model_bind_layer_vector(m, il, suffix, n, req, &l->field, err)) != ZL_OK)                      \
            return rc;                                                                                              \
    } while (0)
        VEC("attn_norm.weight", d, true, attn_norm);
        MAT("attn_q.weight", d, q_dim, wq);
        MAT("attn_k.weight", d, kv_dim, wk);
        MAT("attn_v.weight", d, kv_dim, wv);
        VEC("attn_q.bias", q_dim, bias_required, bq);
        VEC("attn_k.bias", kv_dim, bias_required, bk);
        VEC("attn_v.bias", kv_dim, bias_required, bv);
        if (qk_norm) {
            VEC("attn_q_norm.weight", hd, true, attn_q_norm);
            VEC("attn_k_norm.weight", hd, true, attn_k_norm);
        }
        MAT("attn_output.weight", q_dim, d, wo);
        VEC("ffn_norm.weight", d, true, ffn_norm);
        if (moe) {
            if ((rc = zl_moe_bind_ffn(m, il, err)) != ZL_OK)
                return rc;
            continue;
        }
        MAT("ffn_gate.weight", d, h->n_ff, w_gate);
        MAT("ffn_up.weight", d, h->n_ff, w_up);
        MAT("ffn_down.weight", h->n_ff, d, w_down);
#undef MAT
#undef VEC
    }
    return ZL_OK;
}

int zl_qwen2_bind(zl_model *m, zl_err *err) { return qwen_bind(m, false, false, err); }

int zl_qwen3_bind(zl_model *m, zl_err *err) { return qwen_bind(m, true, false, err); }

int zl_qwen2moe_bind(zl_model *m, zl_err *err) { return qwen_bind(m, false, true, err); }

int zl_qwen3moe_bind(zl_model *m, zl_err *err) { return qwen_bind(m, true, true, err); }

int zl_qwen_attention_block(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    const int32_t n = b->n;
    const int64_t q_dim = (int64_t)h->n_head * h->head_dim, kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    int rc;

    zl_rmsnorm_mt(cpu, f->xb, f->x, l->attn_norm, n, h->n_embd, h->norm_eps); /* xb: (n, n_embd) */
    zl_dump("attn_norm", il, f->xb, n, h->n_embd);
    /* q: (n, n_head * head_dim), k and v: (n, n_head_kv * head_dim) */
    if ((rc = zl_matmul_shared(cpu, 3, (const zl_tensor *const[]){&l->wq, &l->wk, &l->wv}, f->xb, n,
                               (float *const[]){f->q, f->k, f->v}, f->tok_gemm)) != ZL_OK)
        return rc;
    zl_block_add_bias(f->q, l->bq, n, q_dim);
    zl_block_add_bias(f->k, l->bk, n, kv_dim);
    zl_block_add_bias(f->v, l->bv, n, kv_dim);

    /* qwen3: each head of q and k normalised on its own (rows of head_dim), before RoPE. */
    if (l->attn_q_norm) {
        zl_rmsnorm_mt(cpu, f->q, f->q, l->attn_q_norm, (int64_t)n * h->n_head, h->head_dim, h->norm_eps);
        zl_rmsnorm_mt(cpu, f->k, f->k, l->attn_k_norm, (int64_t)n * h->n_head_kv, h->head_dim, h->norm_eps);
        zl_dump("Qcur_normed", il, f->q, n, q_dim);
        zl_dump("Kcur_normed", il, f->k, n, kv_dim);
    }

    zl_block_rope(h, cpu, f, f->cs, n);
    zl_dump("Qcur", il, f->q, n, q_dim);
    zl_dump("Kcur", il, f->k, n, kv_dim);
    zl_dump("Vcur", il, f->v, n, kv_dim);
    zl_kv_store(kv, b, il, f->k, f->v);
    zl_attention_paged(m, cpu, kv, f, b, il, f->q, f->att); /* att: (n, n_head * head_dim) */
    zl_dump("kqv_out", il, f->att, n, q_dim);

    if ((rc = zl_matmul_modes(cpu, &l->wo, f->att, n, f->xb2, f->tok_gemm)) != ZL_OK) /* xb2: (n, n_embd) */
        return rc;
    zl_dump("attn_out", il, f->xb2, n, h->n_embd);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("ffn_inp", il, f->x, n, h->n_embd);
    return ZL_OK;
}

int zl_qwen_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                    zl_err *err)
{
    const zl_hparams *h = &m->hp;
    int rc = ZL_OK;
    zl_dump_step();
    zl_block_embed(m, f, b); /* x: (n, n_embd), cs: (n, n_rot) */
    for (int32_t il = 0; il < h->n_layer && rc == ZL_OK; il++) {
        rc = zl_qwen_attention_block(m, cpu, kv, f, b, il);
        if (rc == ZL_OK)
            rc = zl_block_ffn_swiglu(m, cpu, f, b->n, il);
    }
    if (rc == ZL_OK)
        rc = zl_block_output(m, cpu, f, b, out);
    if (rc != ZL_OK)
        return zl_err_set(err, rc, "%s: forward pass failed: %s", gguf_path(m->gguf), zl_status_str(rc));
    return ZL_OK;
}
