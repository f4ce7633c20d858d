/*
 * llama.c - the Llama family (Llama 2/3, SmolLM, Mistral-style dense models): its tensors and its forward pass.
 *
 *   x = token_embd[token]
 *   for each layer:
 *       x += Wo . attention(rope(Wq . rmsnorm(x)), rope(Wk . rmsnorm(x)), Wv . rmsnorm(x))
 *       x += Wdown . (silu(Wgate . rmsnorm(x)) * (Wup . rmsnorm(x)))
 *   logits = output . rmsnorm(x)                      (only for tokens that ask for logits)
 *
 * Everything runs on the whole batch at once (one matmul per weight per layer); only RoPE and the KV writes are
 * per token (each at its own position), and attention is per (token, head) over the token's own sequence.
 *
 * RoPE pairs: llama.cpp's converter permutes the Q and K rows of Hugging Face checkpoints so that the rotation
 * pairs adjacent dims (2i, 2i+1) of each head ("normal" RoPE), not (i, i + n_rot/2) as in the HF code.
 *
 * Threads: called by zl_model_forward on the thread that owns cpu, kv and f; the ops use cpu's pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "model/arch.h"

int zl_llama_bind(zl_model *m, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const int64_t d = h->n_embd, q_dim = (int64_t)h->n_head * h->head_dim;
    const int64_t kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    int rc;

    if ((rc = zl_model_bind_matrix(m, "token_embd.weight", d, h->n_vocab, true, &m->tok_embd, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_vector(m, "output_norm.weight", d, true, &m->output_norm, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_matrix(m, "output.weight", d, h->n_vocab, false, &m->output, err)) != ZL_OK)
        return rc;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings */
    if ((rc = zl_model_bind_vector(m, "rope_freqs.weight", h->n_rot / 2, false, &m->rope_freqs, err)) != ZL_OK)
        return rc;

    /* Mistral-style sliding window: when the file sets one, every layer attends to that many positions only.
     * (llama.cpp ignores this key for the llama architecture; the converters do not write it for Mistral.) */
    if ((rc = zl_model_read_sliding_window(m, err)) != ZL_OK)
        return rc;

    m->layers = calloc((size_t)h->n_layer, sizeof *m->layers);
    if (!m->layers)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %d layers", gguf_path(m->gguf), h->n_layer);
    for (int32_t il = 0; il < h->n_layer; il++) {
        zl_layer *l = &m->layers[il];
        l->swa = h->n_swa > 0;
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
        MAT("attn_output.weight", q_dim, d, wo);
        VEC("attn_q.bias", q_dim, false, bq);
        VEC("attn_k.bias", kv_dim, false, bk);
        VEC("attn_v.bias", kv_dim, false, bv);
        VEC("attn_output.bias", d, false, bo);
        VEC("ffn_norm.weight", d, true, ffn_norm);
        MAT("ffn_gate.weight", d, h->n_ff, w_gate);
        MAT("ffn_up.weight", d, h->n_ff, w_up);
        MAT("ffn_down.weight", h->n_ff, d, w_down);
#undef MAT
#undef VEC
    }
    return ZL_OK;
}

/* x += attention block of layer il, for the whole batch. */
static int attention_block(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    const int32_t n = b->n;
    const int64_t q_dim = (int64_t)h->n_head * h->head_dim, kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    int rc;

    zl_rmsnorm_mt(cpu, f->xb, f->x, l->attn_norm, n, h->n_embd, h->norm_eps); /* xb: (n, n_embd) */
    /* q: (n, n_head * head_dim), k and v: (n, n_head_kv * head_dim) */
    if ((rc = zl_matmul_shared(cpu, 3, (const zl_tensor *const[]){&l->wq, &l->wk, &l->wv}, f->xb, n,
                               (float *const[]){f->q, f->k, f->v}, f->tok_gemm)) != ZL_OK)
        return rc;
    zl_block_add_bias(f->q, l->bq, n, q_dim);
    zl_block_add_bias(f->k, l->bk, n, kv_dim);
    zl_block_add_bias(f->v, l->bv, n, kv_dim);

    zl_block_rope(h, cpu, f, f->cs, n);
    zl_dump("attn_norm", il, f->xb, n, h->n_embd);
    zl_dump("Qcur", il, f->q, n, q_dim);
    zl_dump("Kcur", il, f->k, n, kv_dim);
    zl_dump("Vcur", il, f->v, n, kv_dim);
    zl_kv_store(kv, b, il, f->k, f->v);
    zl_attention_paged(m, cpu, kv, f, b, il, f->q, f->att); /* att: (n, n_head * head_dim) */
    zl_dump("kqv_out", il, f->att, n, q_dim);

    if ((rc = zl_matmul_modes(cpu, &l->wo, f->att, n, f->xb2, f->tok_gemm)) != ZL_OK) /* xb2: (n, n_embd) */
        return rc;
    zl_block_add_bias(f->xb2, l->bo, n, h->n_embd);
    zl_dump("attn_out", il, f->xb2, n, h->n_embd);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("ffn_inp", il, f->x, n, h->n_embd);
    return ZL_OK;
}

int zl_llama_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                     zl_err *err)
{
    const zl_hparams *h = &m->hp;
    int rc = ZL_OK;
    zl_dump_step();
    zl_block_embed(m, f, b); /* x: (n, n_embd), cs: (n, n_rot) */
    for (int32_t il = 0; il < h->n_layer && rc == ZL_OK; il++) {
        rc = attention_block(m, cpu, kv, f, b, il);
        if (rc == ZL_OK)
            rc = zl_block_ffn_swiglu(m, cpu, f, b->n, il);
    }
    if (rc == ZL_OK)
        rc = zl_block_output(m, cpu, f, b, out);
    if (rc != ZL_OK)
        return zl_err_set(err, rc, "%s: forward pass failed: %s", gguf_path(m->gguf), zl_status_str(rc));
    return ZL_OK;
}
