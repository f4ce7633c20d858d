/*
 * gemma3.c - the Gemma 3 family (`gemma3`, text models: Gemma 3 270M .. 27B): its hyperparameters, its tensors and
 * its forward pass.
 *
 *   x = token_embd[token] * sqrt(n_embd)
 *   for each layer:
 *       q, k, v = Wq . rmsnorm(x), Wk . rmsnorm(x), Wv . rmsnorm(x)
 *       q, k = rmsnorm_per_head(q) * q_norm, rmsnorm_per_head(k) * k_norm
 *       q, k = rope_neox(q), rope_neox(k)        (base rope.freq_base, or the local base on sliding-window layers)
 *       a = attention(q * attn_scale, k, v)      (sliding-window layers: the last n_swa positions only)
 *       x += rmsnorm(Wo . a) * post_attention_norm
 *       x += rmsnorm(Wdown . (gelu(Wgate . rmsnorm(x)) * (Wup . rmsnorm(x)))) * post_ffw_norm
 *   logits = token_embd . rmsnorm(x)            (tied, unless the file has output.weight; optional softcap)
 *
 * Layers: every n-th layer (n = attention.sliding_window_pattern, default 6; the layers il % n == n - 1) attends
 * to the whole context with RoPE base rope.freq_base (and its scaling); the others are sliding-window layers that
 * see the last attention.sliding_window positions, their own included, and rotate with rope.freq_base_swa
 * (default 10000, unscaled). A file without sliding_window has no SWA layers. attn_scale is
 * 1 / sqrt(head_dim), except for the 62-layer (27B) model: 1 / sqrt(n_embd / n_head) (Gemma's
 * query_pre_attn_scalar); q is scaled after RoPE and the attention itself scales its scores by 1 (kq_scale).
 * The embedding scale is sqrtf((float)n_embd) in float. gelu is the tanh approximation through ggml's fp16
 * table (zl_gelu_mul).
 *
 * The arithmetic is llama.cpp's (src/models/gemma3.cpp): the same ops in the same order, each op with ggml's
 * rounding, so greedy generations agree token for token.
 *
 * Threads: called by zl_model_forward on the thread that owns cpu, kv and f; the ops use cpu's pool.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "model/arch.h"

enum { DEFAULT_SWA_PATTERN = 6 };

/* Sliding window, its RoPE base, its layer pattern and the final-logit softcap, from the metadata. */
static int read_gemma3_hparams(zl_model *m, zl_err *err)
{
    zl_hparams *h = &m->hp;
    const gguf_file *f = m->gguf;
    const char *path = gguf_path(f);
    char key[128];
    zl_err e = {{0}};
    int rc;

    h->rope_theta_swa = 10000.0f;
    h->logit_softcap = 0.0f;
    if ((rc = zl_model_read_sliding_window(m, err)) != ZL_OK)
        return rc;

    snprintf(key, sizeof key, "%s.rope.freq_base_swa", h->arch_name);
    if (gguf_get_f32(f, key, &h->rope_theta_swa, &e)) {
        if (!(h->rope_theta_swa > 1.0f && h->rope_theta_swa < 1e12f))
            return zl_err_set(err, ZL_EFORMAT, "%s: %s %g out of range (1 .. 1e12)", path, key,
                              (double)h->rope_theta_swa);
    } else if (e.msg[0]) {
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
    }

    snprintf(key, sizeof key, "%s.final_logit_softcapping", h->arch_name);
    if (gguf_get_f32(f, key, &h->logit_softcap, &e)) {
        if (!(h->logit_softcap >= 0.0f && h->logit_softcap < 1e6f))
            return zl_err_set(err, ZL_EFORMAT, "%s: %s %g out of range (0 .. 1e6)", path, key,
                              (double)h->logit_softcap);
    } else if (e.msg[0]) {
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
    }
    return ZL_OK;
}

/* Marks the sliding-window layers: attention.sliding_window_pattern as an array (one flag per layer) or a number
 * n (layers il % n < n - 1 slide; 0: all of them), default 6. */
static int mark_swa_layers(zl_model *m, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const char *path = gguf_path(m->gguf);
    char key[128];
    zl_err e = {{0}};
    const gguf_kv *arr;
    int64_t pattern = DEFAULT_SWA_PATTERN;

    if (h->n_swa == 0)
        return ZL_OK;
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", h->arch_name);
    if (gguf_get_arr(m->gguf, key, &arr, &e)) {
        if (arr->arr_n != (uint64_t)h->n_layer)
            return zl_err_set(err, ZL_EFORMAT, "%s: %s has %llu entries, expected %d (one per layer)", path, key,
                              (unsigned long long)arr->arr_n, h->n_layer);
        for (int32_t il = 0; il < h->n_layer; il++) {
            int64_t flag;
            if (!gguf_arr_i64(arr, (uint64_t)il, &flag))
                return zl_err_set(err, ZL_EFORMAT, "%s: %s is not an array of bools or integers", path, key);
            m->layers[il].swa = flag != 0;
        }
        return ZL_OK;
    }
    e.msg[0] = '\0';
    if (!gguf_get_i64(m->gguf, key, &pattern, &e) && e.msg[0])
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
    if (pattern < 0 || pattern > INT32_MAX)
        return zl_err_set(err, ZL_EFORMAT, "%s: %s = %lld out of range", path, key, (long long)pattern);
    for (int32_t il = 0; il < h->n_layer; il++)
        m->layers[il].swa = pattern == 0 || il % pattern < pattern - 1;
    return ZL_OK;
}

int zl_gemma3_bind(zl_model *m, zl_err *err)
{
    zl_hparams *h = &m->hp;
    const int64_t d = h->n_embd, hd = h->head_dim, q_dim = (int64_t)h->n_head * h->head_dim;
    const int64_t kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    int rc;

    if (h->n_rot != h->head_dim)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: gemma3 with rope.dimension_count %d != head width %d is not "
                          "supported", gguf_path(m->gguf), h->n_rot, h->head_dim);
    if ((rc = read_gemma3_hparams(m, err)) != ZL_OK)
        return rc;
    /* q is scaled before attention (see the file header), so the scores are not scaled again. */
    m->kq_scale = 1.0f;

    if ((rc = zl_model_bind_matrix(m, "token_embd.weight", d, h->n_vocab, true, &m->tok_embd, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_vector(m, "output_norm.weight", d, true, &m->output_norm, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_matrix(m, "output.weight", d, h->n_vocab, false, &m->output, err)) != ZL_OK)
        return rc;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings (every published Gemma 3) */

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
#define VEC(suffix, n, field)                                                                                       \
    do {                                                                                                            \
        if ((rc = zl_model_bind_layer_vector(m, il, suffix, n, true, &l->field, err)) != ZL_OK)                     \
            return rc;                                                                                              \
    } while (0)
        VEC("attn_norm.weight", d, attn_norm);
        MAT("attn_q.weight", d, q_dim, wq);
        MAT("attn_k.weight", d, kv_dim, wk);
        MAT("attn_v.weight", d, kv_dim, wv);
        VEC("attn_q_norm.weight", hd, attn_q_norm);
        VEC("attn_k_norm.weight", hd, attn_k_norm);
        MAT("attn_output.weight", q_dim, d, wo);
        VEC("post_attention_norm.weight", d, attn_post_norm);
        VEC("ffn_norm.weight", d, ffn_norm);
        MAT("ffn_gate.weight", d, h->n_ff, w_gate);
        MAT("ffn_up.weight", d, h->n_ff, w_up);
        MAT("ffn_down.weight", h->n_ff, d, w_down);
        VEC("post_ffw_norm.weight", d, ffn_post_norm);
#undef MAT
#undef VEC
    }
    return mark_swa_layers(m, err);
}

/* The scale of q before attention: Gemma's query_pre_attn_scalar as llama.cpp derives it. */
float zl_gemma3_q_scale(const zl_hparams *h)
{
    if (h->n_layer == 62) /* Gemma 3 27B: n_embd / n_head (integer division), not head_dim */
        return 1.0f / sqrtf((float)(h->n_embd / h->n_head));
    return 1.0f / sqrtf((float)h->head_dim);
}

/* x = token_embd[token] * sqrt(n_embd); cs, cs_swa = each token's RoPE tables (global and sliding-window). */
static void embed(const zl_model *m, zl_fwd *f, const zl_batch *b)
{
    const zl_hparams *h = &m->hp;
    const float scale = sqrtf((float)h->n_embd);
    zl_block_embed(m, f, b); /* x: (n, n_embd), cs: (n, n_rot) */
    for (int64_t i = 0; i < (int64_t)b->n * h->n_embd; i++)
        f->x[i] *= scale;
    if (f->cs_swa)
        for (int32_t i = 0; i < b->n; i++)
            zl_rope_cos_sin(f->cs_swa + (size_t)i * (size_t)h->n_rot, h->n_rot, b->pos[i], h->rope_theta_swa, 1.0f,
                            NULL, m->rope_attn_factor);
    zl_dump("inp_scaled", -1, f->x, b->n, h->n_embd);
}

/* xb2 = the attention block of layer il before its post-norm, for the whole batch. */
static int attention_block(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    const int32_t n = b->n;
    const int64_t q_dim = (int64_t)h->n_head * h->head_dim, kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    const float *cs_all = l->swa ? f->cs_swa : f->cs;
    int rc;

    zl_rmsnorm_mt(cpu, f->xb, f->x, l->attn_norm, n, h->n_embd, h->norm_eps); /* xb: (n, n_embd) */
    zl_dump("attn_norm", il, f->xb, n, h->n_embd);
    /* q: (n, n_head * head_dim), k and v: (n, n_head_kv * head_dim) */
    if ((rc = zl_matmul_shared(cpu, 3, (const zl_tensor *const[]){&l->wq, &l->wk, &l->wv}, f->xb, n,
                               (float *const[]){f->q, f->k, f->v}, f->tok_gemm)) != ZL_OK)
        return rc;

    /* Each head of q and k normalised on its own (rows of head_dim), then rotated. */
    zl_rmsnorm_mt(cpu, f->q, f->q, l->attn_q_norm, (int64_t)n * h->n_head, h->head_dim, h->norm_eps);
    zl_rmsnorm_mt(cpu, f->k, f->k, l->attn_k_norm, (int64_t)n * h->n_head_kv, h->head_dim, h->norm_eps);
    zl_dump("Qcur_normed", il, f->q, n, q_dim);
    zl_dump("Kcur_normed", il, f->k, n, kv_dim);
    zl_block_rope(h, cpu, f, cs_all, n);
    zl_dump("Qcur", il, f->q, n, q_dim);
    zl_dump("Kcur", il, f->k, n, kv_dim);
    zl_dump("Vcur", il, f->v, n, kv_dim);
    const float qs = zl_gemma3_q_scale(h);
    for (int64_t i = 0; i < (int64_t)n * q_dim; i++)
        f->q[i] *= qs;

    zl_kv_store(kv, b, il, f->k, f->v);
    zl_attention_paged(m, cpu, kv, f, b, il, f->q, f->att); /* att: (n, n_head * head_dim), kq_scale 1 */
    zl_dump("kqv_out", il, f->att, n, q_dim);
    if ((rc = zl_matmul_modes(cpu, &l->wo, f->att, n, f->xb2, f->tok_gemm)) != ZL_OK) /* xb2: (n, n_embd) */
        return rc;
    zl_dump("attn_out", il, f->xb2, n, h->n_embd);
    return ZL_OK;
}

/* x += post_attention_norm(xb2) for n rows. */
static void attention_residual(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il)
{
    const zl_hparams *h = &m->hp;
    zl_rmsnorm_mt(cpu, f->xb2, f->xb2, m->layers[il].attn_post_norm, n, h->n_embd, h->norm_eps);
    zl_dump("attn_post_norm", il, f->xb2, n, h->n_embd);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("sa_out", il, f->x, n, h->n_embd);
}

/* Keeps the rows of x and xb2 whose tokens ask for logits, in order, as rows 0 .. n_out - 1 (llama.cpp drops the
 * others after the last layer's attention). Returns n_out. */
static int32_t keep_output_rows(const zl_model *m, zl_fwd *f, const zl_batch *b)
{
    const size_t d = (size_t)m->hp.n_embd;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n; i++) {
        if (!b->logits[i])
            continue;
        if (n_out != i) {
            memcpy(f->x + (size_t)n_out * d, f->x + (size_t)i * d, d * sizeof(float));
            memcpy(f->xb2 + (size_t)n_out * d, f->xb2 + (size_t)i * d, d * sizeof(float));
        }
        n_out++;
    }
    return n_out;
}

/* x += post_ffw_norm(GeGLU feed-forward block of layer il) for n rows; modes: each row's matmul arithmetic. */
static int ffn_block(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il, const int8_t *modes)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    int rc;
    zl_rmsnorm_mt(cpu, f->xb, f->x, l->ffn_norm, n, h->n_embd, h->norm_eps);
    zl_dump("ffn_norm", il, f->xb, n, h->n_embd);
    /* hb (gate) and hb2 (up): (n, n_ff) */
    if ((rc = zl_matmul_shared(cpu, 2, (const zl_tensor *const[]){&l->w_gate, &l->w_up}, f->xb, n,
                               (float *const[]){f->hb, f->hb2}, modes)) != ZL_OK)
        return rc;
    zl_gelu_mul(f->hb, f->hb, f->hb2, (int64_t)n * h->n_ff);
    zl_dump("ffn_geglu", il, f->hb, n, h->n_ff);
    if ((rc = zl_matmul_modes(cpu, &l->w_down, f->hb, n, f->xb2, modes)) != ZL_OK) /* xb2: (n, n_embd) */
        return rc;
    zl_dump("ffn_out", il, f->xb2, n, h->n_embd);
    zl_rmsnorm_mt(cpu, f->xb2, f->xb2, l->ffn_post_norm, n, h->n_embd, h->norm_eps);
    zl_dump("ffn_post_norm", il, f->xb2, n, h->n_embd);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("l_out", il, f->x, n, h->n_embd);
    return ZL_OK;
}

/* logits = output . rmsnorm(x) for the n_out rows kept by keep_output_rows (optionally soft-capped:
 * softcap * tanh(logits / softcap), as ggml's scale, tanh, scale). */
static int output(const zl_model *m, zl_cpu *cpu, zl_fwd *f, const zl_batch *b, float *out)
{
    const zl_hparams *h = &m->hp;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n; i++)
        n_out += b->logits[i] != 0;
    if (n_out == 0)
        return ZL_OK;
    zl_rmsnorm_mt(cpu, f->xb, f->x, m->output_norm, n_out, h->n_embd, h->norm_eps);
    zl_dump("result_norm", -1, f->xb, n_out, h->n_embd);
    const int rc = zl_matmul_modes(cpu, &m->output, f->xb, n_out, out, f->out_gemm); /* (n_out, n_vocab) */
    if (rc != ZL_OK)
        return rc;
    if (h->logit_softcap > 0.0f) {
        const float cap = h->logit_softcap, inv = 1.0f / cap;
        for (int64_t i = 0; i < (int64_t)n_out * h->n_vocab; i++)
            out[i] = tanhf(out[i] * inv) * cap;
    }
    zl_dump("result_output", -1, out, n_out, h->n_vocab);
    return ZL_OK;
}

int zl_gemma3_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                      zl_err *err)
{
    const zl_hparams *h = &m->hp;
    int rc = ZL_OK;
    zl_dump_step();
    embed(m, f, b);
    for (int32_t il = 0; il < h->n_layer && rc == ZL_OK; il++) {
        int32_t n = b->n;
        const int8_t *modes = f->tok_gemm;
        if ((rc = attention_block(m, cpu, kv, f, b, il)) != ZL_OK)
            break;
        if (il == h->n_layer - 1) { /* from here on, only the rows that ask for logits (as llama.cpp) */
            n = keep_output_rows(m, f, b);
            modes = f->out_gemm;
            if (n == 0)
                break;
        }
        attention_residual(m, cpu, f, n, il);
        rc = ffn_block(m, cpu, f, n, il, modes);
    }
    if (rc == ZL_OK)
        rc = output(m, cpu, f, b, out);
    if (rc != ZL_OK)
        return zl_err_set(err, rc, "%s: forward pass failed: %s", gguf_path(m->gguf), zl_status_str(rc));
    return ZL_OK;
}
