/*
 * attention.c - causal self-attention over the paged KV cache, shared by every model family.
 *
 * For token i of a batch (sequence s_i at position p_i) and query head h:
 *   score[t] = (q[i, h] . K[s_i, t, h / group]) * scale        for t in [0, p_i]
 *   att[i, h] = sum_t softmax(score)[t] * V[s_i, t, h / group]
 * with group = n_head / n_head_kv (grouped-query attention) and scale = 1 / sqrt(head_dim). Positions are walked
 * block by block through the sequence's block table. Causality needs no mask: a token reads only positions up
 * to its own, and the batch wrote every position it reads before attention runs.
 *
 * The arithmetic is ggml's (llama.cpp without flash attention), so that logits agree with llama.cpp bit for bit
 * where the rest of the pass does:
 *   - scores: the traits table's vec_dot of K's type, so with an F16 cache the query is rounded to F16 first
 *     (ggml converts Q to K's type for the K x Q product);
 *   - the weighted sum of V is a dot product over positions in ggml's lane order: position t accumulates into
 *     lane t % 32 with a fused multiply-add, and the 32 lanes are summed in ggml's reduction tree. With an F16
 *     cache the softmax weights are rounded to F16 first (ggml converts them to V's type). Positions past p_i
 *     (weight 0 in ggml's masked row) add exact zeros there, so the result does not depend on its padding.
 *
 * Threads: zl_attention_paged runs on the zl_cpu's pool, each (token, head) pair on one thread, writing only its
 * own head_dim slice of att and its own thread's scratch; the cache is only read.
 */
#include <math.h>
#include <string.h>
#include <stdbool.h>

#include "core/dtype.h"
#include "core/fp16.h"
#include "model/arch.h"

void zl_kv_store(zl_kv *kv, const zl_batch *b, int32_t il, const float *k, const float *v)
{
    const zl_kv_params *p = zl_kv_get_params(kv);
    const zl_type_traits *tr = zl_type_traits_get(p->type);
    for (int32_t i = 0; i < b->n; i++) {
        const float *ki = k + (size_t)i * (size_t)p->kv_dim, *vi = v + (size_t)i * (size_t)p->kv_dim;
        void *kd = zl_kv_k(kv, il, b->seq[i], b->pos[i]), *vd = zl_kv_v(kv, il, b->seq[i], b->pos[i]);
        if (p->type == ZL_F32) {
            memcpy(kd, ki, (size_t)p->kv_dim * sizeof(float));
            memcpy(vd, vi, (size_t)p->kv_dim * sizeof(float));
        } else {
            tr->from_float(ki, kd, p->kv_dim);
            tr->from_float(vi, vd, p->kv_dim);
        }
    }
}

void zl_attn_fma_row_avx2(float *acc, const float *v, float w, int32_t n);
void zl_attn_fma_row_f16_avx2(float *acc, const uint16_t *v, float w, int32_t n);

enum { LANES = 32 }; /* ggml's f32/f16 dot: 4 accumulators of 8 floats */

static void fma_row(float *acc, const float *v, float w, int32_t n)
{
    for (int32_t c = 0; c < n; c++)
        acc[c] = fmaf(v[c], w, acc[c]);
}

/* out[c] = the sum of lanes[0..32)[c] in the order of ggml's 4x8 reduction: (a0 + a2) + (a1 + a3) lane-wise
 * (a_j = lanes 8j..8j+7), then the two 128-bit halves, then two horizontal adds. */
static void reduce_lanes(const float *lanes, int32_t hd, float *out)
{
    for (int32_t c = 0; c < hd; c++) {
        float v[8];
        for (int l = 0; l < 8; l++) {
            const float a0 = lanes[(size_t)l * hd + c], a1 = lanes[(size_t)(8 + l) * hd + c];
            const float a2 = lanes[(size_t)(16 + l) * hd + c], a3 = lanes[(size_t)(24 + l) * hd + c];
            v[l] = (a0 + a2) + (a1 + a3);
        }
        const float t0 = v[0] + v[4], t1 = v[1] + v[5], t2 = v[2] + v[6], t3 = v[3] + v[7];
        out[c] = (t0 + t1) + (t2 + t3);
    }
}

typedef struct att_task {
    const zl_model *m;
    zl_kv *kv;
    zl_fwd *f;
    const zl_batch *b;
    int32_t il;
    const float *q;
    float *att;
    bool avx2;
} att_task;

/* One (token, head): scores into sc, softmax, weighted sum of V rows into o. */
static void attend_one(const att_task *t, int32_t i, int32_t h, int ith)
{
    const zl_hparams *hp = &t->m->hp;
    const zl_kv_params *p = zl_kv_get_params(t->kv);
    const int32_t hd = hp->head_dim, kv_dim = p->kv_dim, bs = p->block_size;
    const int32_t hk = h / (hp->n_head / hp->n_head_kv);
    const int32_t n_ctx = t->b->pos[i] + 1;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *q = t->q + (size_t)i * (size_t)hp->n_head * hd + (size_t)h * hd;
    float *o = t->att + (size_t)i * (size_t)hp->n_head * hd + (size_t)h * hd;
    float *sc = t->f->scores + (size_t)ith * (size_t)t->f->ctx_cap;
    float *vrow = t->f->v_row + (size_t)ith * hd;
    int32_t n_blk;
    const int32_t *tab = zl_kv_seq_blocks(t->kv, t->b->seq[i], &n_blk);
    const bool f16 = p->type == ZL_F16;
    const zl_type_traits *tr = zl_type_traits_get(p->type);
    const size_t elt = f16 ? 2 : 4;
    void *qc = (char *)t->f->q_conv + (size_t)ith * hd * sizeof(float);
    if (f16)
        tr->from_float(q, qc, hd);

    /* Scores, block by block: slot j of a block holds K at base + j*kv_dim, V at base + (bs + j)*kv_dim. */
    for (int32_t t0 = 0; t0 < n_ctx; t0 += bs) {
        const char *base = zl_kv_block(t->kv, t->il, tab[t0 / bs]);
        const int32_t n = n_ctx - t0 < bs ? n_ctx - t0 : bs;
        for (int32_t j = 0; j < n; j++) {
            const char *krow = base + ((size_t)j * kv_dim + (size_t)hk * hd) * elt;
            float s;
            if (f16)
                tr->vec_dot(hd, &s, krow, qc);
            else
                s = zl_dot_f32(q, (const float *)krow, hd);
            sc[t0 + j] = s * scale;
        }
    }
    zl_softmax(sc, n_ctx);

    /* Weighted sum of V rows, lane by lane (see the file header). */
    float *lanes = t->f->v_lanes + (size_t)ith * LANES * hd;
    memset(lanes, 0, (size_t)LANES * hd * sizeof *lanes);
    for (int32_t t0 = 0; t0 < n_ctx; t0 += bs) {
        const char *base = zl_kv_block(t->kv, t->il, tab[t0 / bs]);
        const int32_t n = n_ctx - t0 < bs ? n_ctx - t0 : bs;
        for (int32_t j = 0; j < n; j++) {
            const char *vp = base + ((size_t)(bs + j) * kv_dim + (size_t)hk * hd) * elt;
            const float w = f16 ? zl_fp16_to_fp32(zl_fp32_to_fp16(sc[t0 + j])) : sc[t0 + j];
            float *acc = lanes + (size_t)((t0 + j) % LANES) * hd;
            if (f16 && t->avx2) {
                zl_attn_fma_row_f16_avx2(acc, (const uint16_t *)vp, w, hd);
            } else if (f16) {
                tr->to_float(vp, vrow, hd);
                fma_row(acc, vrow, w, hd);
            } else if (t->avx2) {
                zl_attn_fma_row_avx2(acc, (const float *)vp, w, hd);
            } else {
                fma_row(acc, (const float *)vp, w, hd);
            }
        }
    }
    reduce_lanes(lanes, hd, o);
}

static void att_worker(void *ctx, int ith, int nth)
{
    const att_task *t = ctx;
    const int32_t n_head = t->m->hp.n_head;
    const int64_t n_items = (int64_t)t->b->n * n_head;
    /* Interleaved: neighbouring items have similar cost (same token, nearby tokens), so threads stay balanced. */
    for (int64_t it = ith; it < n_items; it += nth)
        attend_one(t, (int32_t)(it / n_head), (int32_t)(it % n_head), ith);
}

void zl_attention_paged(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il,
                        const float *q, float *att)
{
    att_task t = {.m = m, .kv = kv, .f = f, .b = b, .il = il, .q = q, .att = att,
                  .avx2 = strcmp(zl_cpu_kernels_name(), "avx2") == 0};
    zl_pool_run(zl_cpu_pool(cpu), att_worker, &t);
}
