/*
 * bert.c - the BERT encoder (`bert`: BGE, MiniLM, all-MiniLM, e5 shapes): its tensors and its forward pass over
 * whole inputs, which makes embeddings only (no output head, no KV cache).
 *
 *   x = token_embd[token] + token_types[0] + position_embd[pos]      (every token has type 0)
 *   x = layernorm(x) * tok_norm + tok_norm_b
 *   for each layer:
 *       q, k, v = Wq . x + bq, Wk . x + bk, Wv . x + bv
 *       a = Wo . attention(q, k, v) + bo           bidirectional: each token sees every token of its own input
 *       x = layernorm(x + a) * attn_out_norm + attn_out_norm_b
 *       f = Wdown . gelu(Wup . x + b_up) + b_down
 *       x = layernorm(x + f) * layer_out_norm + layer_out_norm_b
 *   hidden = x                                      (pooled by zl_model_embed)
 *
 * The order of operations is llama.cpp's (src/models/bert.cpp: post-LayerNorm, GELU FFN, scale 1/sqrt(head_dim));
 * its arithmetic is not mirrored bit for bit (the attention here is a plain float softmax over the input's
 * tokens, the LayerNorm sums in double as ggml's norm), so embeddings agree with llama.cpp's to a cosine near 1,
 * not to the bit. Each token's matmuls run in the mode of its own input's length (zl_model_embed), so an input's
 * vector is the same alone or batched.
 *
 * Threads: called on the thread that owns cpu and f; the ops use cpu's pool.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "model/arch.h"

int zl_bert_bind(zl_model *m, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const int64_t d = h->n_embd;
    const char *path = gguf_path(m->gguf);
    int rc;
    if (h->n_head_kv != h->n_head || h->head_dim * h->n_head != h->n_embd)
        return zl_err_set(err, ZL_EFORMAT, "%s: bert needs head_count_kv == head_count and head width n_embd / "
                          "n_head (%d, %d, %d)", path, h->n_head, h->n_head_kv, h->head_dim);
    if ((rc = zl_model_bind_matrix(m, "token_embd.weight", d, h->n_vocab, true, &m->tok_embd, err)) != ZL_OK ||
        (rc = zl_model_bind_matrix(m, "position_embd.weight", d, h->n_ctx_train, true, &m->pos_embd, err)) != ZL_OK)
        return rc;
    const gguf_tensor *tt = gguf_find_tensor(m->gguf, "token_types.weight");
    if (tt && (rc = zl_model_bind_matrix(m, "token_types.weight", d, tt->ne[1] >= 1 ? (int64_t)tt->ne[1] : 1, true,
                                         &m->type_embd, err)) != ZL_OK)
        return rc;
    if ((rc = zl_model_bind_vector(m, "token_embd_norm.weight", d, true, &m->tok_norm, err)) != ZL_OK ||
        (rc = zl_model_bind_vector(m, "token_embd_norm.bias", d, true, &m->tok_norm_b, err)) != ZL_OK)
        return rc;

    m->layers = calloc((size_t)h->n_layer, sizeof *m->layers);
    if (!m->layers)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %d layers", path, h->n_layer);
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
        MAT("attn_q.weight", d, d, wq);
        MAT("attn_k.weight", d, d, wk);
        MAT("attn_v.weight", d, d, wv);
        VEC("attn_q.bias", d, bq);
        VEC("attn_k.bias", d, bk);
        VEC("attn_v.bias", d, bv);
        MAT("attn_output.weight", d, d, wo);
        VEC("attn_output.bias", d, bo);
        VEC("attn_output_norm.weight", d, attn_out_norm);
        VEC("attn_output_norm.bias", d, attn_out_norm_b);
        MAT("ffn_up.weight", d, h->n_ff, w_up);
        VEC("ffn_up.bias", h->n_ff, b_up);
        MAT("ffn_down.weight", h->n_ff, d, w_down);
        VEC("ffn_down.bias", d, b_down);
        VEC("layer_output_norm.weight", d, layer_out_norm);
        VEC("layer_output_norm.bias", d, layer_out_norm_b);
#undef MAT
#undef VEC
    }
    return ZL_OK;
}

int zl_bert_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, float *out,
                    zl_err *err)
{
    (void)cpu, (void)kv, (void)f, (void)b, (void)out;
    return zl_err_set(err, ZL_EUNSUPPORTED, "%s: bert is an embedding model: it has no output head and cannot "
                      "generate text", gguf_path(m->gguf));
}

/* y = (x - mean) / sqrt(var + eps) * g + bias for n rows of d (ggml's norm: sums in double). y may equal x. */
static void layernorm_rows(float *y, const float *x, const float *g, const float *bias, int64_t n, int64_t d,
                           float eps)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        double sum = 0.0;
        for (int64_t i = 0; i < d; i++)
            sum += (double)xr[i];
        const float mean = (float)(sum / (double)d);
        double sum2 = 0.0;
        for (int64_t i = 0; i < d; i++) {
            const float c = xr[i] - mean;
            yr[i] = c;
            sum2 += (double)(c * c);
        }
        const float scale = 1.0f / sqrtf((float)(sum2 / (double)d) + eps);
        for (int64_t i = 0; i < d; i++)
            yr[i] = yr[i] * scale * g[i] + bias[i];
    }
}

typedef struct att_args {
    const zl_model *m;
    zl_fwd *f;
    const int32_t *start, *len; /* per input: first token in the batch, token count */
    int32_t n_head;
    int rc;
} att_args;

/* Item (input s, head h): every query of input s attends over all of input s's tokens. */
static void att_item(void *ctx, int64_t item)
{
    att_args *a = ctx;
    const zl_hparams *hp = &a->m->hp;
    const int32_t s = (int32_t)(item / a->n_head), h = (int32_t)(item % a->n_head);
    const int32_t t0 = a->start[s], n = a->len[s], hd = hp->head_dim;
    const int64_t dim = (int64_t)hp->n_head * hd;
    float *w = malloc((size_t)n * sizeof *w);
    if (!w) {
        a->rc = ZL_ENOMEM; /* any thread's failure; the batch fails as a whole */
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        const float *q = a->f->q + (size_t)(t0 + i) * (size_t)dim + (size_t)h * (size_t)hd;
        for (int32_t j = 0; j < n; j++)
            w[j] = zl_dot_f32(q, a->f->k + (size_t)(t0 + j) * (size_t)dim + (size_t)h * (size_t)hd, hd) *
                   a->m->kq_scale;
        zl_softmax(w, n);
        float *o = a->f->att + (size_t)(t0 + i) * (size_t)dim + (size_t)h * (size_t)hd;
        memset(o, 0, (size_t)hd * sizeof *o);
        for (int32_t j = 0; j < n; j++) {
            const float *v = a->f->v + (size_t)(t0 + j) * (size_t)dim + (size_t)h * (size_t)hd;
            for (int32_t c = 0; c < hd; c++)
                o[c] += w[j] * v[c];
        }
    }
    free(w);
}

/* bias rows and, with g, y = gelu(y) in place (ggml's fp16 table GELU, zl_gelu_mul with u = 1) */
static void gelu_rows(float *y, const float *ones, int64_t n, int64_t d)
{
    for (int64_t t = 0; t < n; t++)
        zl_gelu_mul(y + t * d, y + t * d, ones, d);
}

int zl_bert_encode(const zl_model *m, zl_cpu *cpu, zl_fwd *f, const zl_batch *b, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const int32_t n = b->n;
    const int64_t d = h->n_embd;
    int rc = ZL_OK;
    int32_t n_seq = 0;
    for (int32_t i = 0; i < n; i++)
        if (b->seq[i] + 1 > n_seq)
            n_seq = b->seq[i] + 1;
    int32_t *start = calloc((size_t)n_seq, sizeof *start), *len = calloc((size_t)n_seq, sizeof *len);
    float *ones = malloc((size_t)h->n_ff * sizeof *ones);
    if (!start || !len || !ones) {
        rc = ZL_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < h->n_ff; i++)
        ones[i] = 1.0f;
    for (int32_t i = 0; i < n; i++) {
        if (b->pos[i] == 0)
            start[b->seq[i]] = i;
        len[b->seq[i]]++;
    }

    float *row = f->xb; /* x = tok + type[0] + pos, then LayerNorm */
    for (int32_t i = 0; i < n; i++) {
        float *x = f->x + (size_t)i * (size_t)d;
        zl_get_row(&m->tok_embd, b->token[i], x);
        if (m->type_embd.data) {
            zl_get_row(&m->type_embd, 0, row);
            zl_add(x, row, d);
        }
        zl_get_row(&m->pos_embd, b->pos[i], row);
        zl_add(x, row, d);
    }
    layernorm_rows(f->x, f->x, m->tok_norm, m->tok_norm_b, n, d, h->norm_eps);
    zl_dump("inp_norm", -1, f->x, n, d);

    for (int32_t il = 0; il < h->n_layer; il++) {
        const zl_layer *l = &m->layers[il];
        if ((rc = zl_matmul_shared(cpu, 3, (const zl_tensor *const[]){&l->wq, &l->wk, &l->wv}, f->x, n,
                                   (float *const[]){f->q, f->k, f->v}, f->tok_gemm)) != ZL_OK)
            goto done;
        zl_block_add_bias(f->q, l->bq, n, d);
        zl_block_add_bias(f->k, l->bk, n, d);
        zl_block_add_bias(f->v, l->bv, n, d);
        att_args aa = {m, f, start, len, h->n_head, ZL_OK};
        zl_cpu_for(cpu, (int64_t)n_seq * h->n_head, (int64_t)(n / (n_seq ? n_seq : 1)) * n * h->head_dim, att_item,
                   &aa);
        if ((rc = aa.rc) != ZL_OK)
            goto done;
        if ((rc = zl_matmul_modes(cpu, &l->wo, f->att, n, f->xb2, f->tok_gemm)) != ZL_OK)
            goto done;
        zl_block_add_bias(f->xb2, l->bo, n, d);
        zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * d);
        layernorm_rows(f->x, f->x, l->attn_out_norm, l->attn_out_norm_b, n, d, h->norm_eps);
        zl_dump("attn_out_norm", il, f->x, n, d);
        if ((rc = zl_matmul_modes(cpu, &l->w_up, f->x, n, f->hb, f->tok_gemm)) != ZL_OK)
            goto done;
        zl_block_add_bias(f->hb, l->b_up, n, h->n_ff);
        gelu_rows(f->hb, ones, n, h->n_ff);
        if ((rc = zl_matmul_modes(cpu, &l->w_down, f->hb, n, f->xb2, f->tok_gemm)) != ZL_OK)
            goto done;
        zl_block_add_bias(f->xb2, l->b_down, n, d);
        zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * d);
        layernorm_rows(f->x, f->x, l->layer_out_norm, l->layer_out_norm_b, n, d, h->norm_eps);
        zl_dump("l_out", il, f->x, n, d);
    }
done:
    free(start);
    free(len);
    free(ones);
    if (rc != ZL_OK)
        return zl_err_set(err, rc, "%s: encoder pass failed: %s", gguf_path(m->gguf), zl_status_str(rc));
    return ZL_OK;
}
