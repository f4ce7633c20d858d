/*
 * attention.c - causal self-attention over the paged KV cache, shared by every model family.
 *
 * For token i of a batch (sequence s_i at position p_i) and query head h:
 *   score[t] = (q[i, h] . K[s_i, t, h / group]) * scale        for t in [0, p_i]
 *   att[i, h] = sum_t softmax(score)[t] * V[s_i, t, h / group]
 * with group = n_head / n_head_kv (grouped-query attention) and scale = m->kq_scale (1 / sqrt(head_dim) unless
 * the family scales q itself). Positions are walked block by block through the sequence's block table. Causality
 * needs no mask: a token reads only positions up to its own, and the batch wrote every position it reads before
 * attention runs. On a sliding-window layer (gemma3) t runs over [lo, p_i], lo = max(0, p_i - n_swa + 1), as
 * llama.cpp's SWA mask allows.
 *
 * The arithmetic is ggml's (llama.cpp without flash attention), so that logits agree with llama.cpp bit for bit
 * where the rest of the pass does. It depends on the CPU's vector width w (zl_cpu_simd_width: 16 with AVX-512,
 * 8 with AVX2, as a native ggml build) and on the batch, because llama.cpp multiplies a batch of one token with
 * ggml's vec_dot and a batch of 2+ tokens with tinyBLAS:
 *   - scores: the dot of the query and a K row. With an F16 cache the query is rounded to F16 first (ggml converts
 *     Q to K's type). One token: the traits' vec_dot (4 accumulators of w lanes); 2+ tokens: vec_dot_gemm (one
 *     accumulator of w lanes), when head_dim is a multiple of w.
 *   - softmax: zl_softmax (ggml's vector exp and partial sums; llama.cpp's row is padded with masked positions).
 *   - the weighted sum of V is a dot product over positions (ggml keeps V transposed): position t accumulates
 *     into lane t % L with a fused multiply-add, L = 4w for one token (then the four vectors are added
 *     (a0 + a2) + (a1 + a3)) or L = w for 2+ tokens, and the w lanes are summed in ggml's reduction tree. With an
 *     F16 cache the softmax weights are rounded to F16 first (ggml converts them to V's type). Positions past p_i
 *     (weight 0 in ggml's masked row) add exact zeros there, so the result does not depend on its padding.
 *   - sliding window: ggml's row holds every cached position, those before lo masked to -inf (weight exactly 0).
 *     The softmax's per-vector partial sums are grouped by cell index, so the scores keep their positions and the
 *     softmax starts at lo rounded down to a multiple of 16 (the masked vectors before it add exact zeros; those
 *     between it and lo are -inf here too); the weighted sum of V skips the masked positions (exact zeros). This
 *     is llama.cpp's arithmetic while its SWA cache holds position t in cell t, which it does until a sequence
 *     outgrows that cache (n_swa + n_ubatch cells, rounded up to 256, at most n_ctx).
 *
 * Threads: zl_attention_paged runs on the zl_cpu's pool, each (token, head) pair on one thread, writing only its
 * own head_dim slice of att and its own thread's scratch; the cache is only read. With an F16 cache on the avx512
 * sets, the query heads that share a KV head (up to 4) go to one thread together where that still leaves each
 * thread 4+ items (attend_group): K and V rows are then read and widened once for all of them, with each head's
 * arithmetic as above.
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
    /* F16: the kernel set's conversion (F16C where present; test_dtype proves it equal to the scalar one and to
     * numpy on every case); Q8_0 keeps the reference quantizer */
    const zl_from_float_fn store = p->type == ZL_F16 ? tr->from_float_act : tr->from_float;
    for (int32_t i = 0; i < b->n; i++) {
        const float *ki = k + (size_t)i * (size_t)p->kv_dim, *vi = v + (size_t)i * (size_t)p->kv_dim;
        void *kd = zl_kv_k(kv, il, b->seq[i], b->pos[i]), *vd = zl_kv_v(kv, il, b->seq[i], b->pos[i]);
        if (p->type == ZL_F32) {
            memcpy(kd, ki, (size_t)p->kv_dim * sizeof(float));
            if (!p->k_only)
                memcpy(vd, vi, (size_t)p->kv_dim * sizeof(float));
        } else {
            store(ki, kd, p->kv_dim);
            if (!p->k_only) /* MLA: V is the K row's latent, stored once */
                store(vi, vd, p->kv_dim);
        }
    }
}

#if defined(__x86_64__) || defined(__i386__)
#define ZL_ATT_AVX2_ROWS 1 /* attention_avx2.c is built only for x86 targets */
void zl_attn_fma_row_avx2(float *acc, const float *v, float w, int32_t n);
void zl_attn_fma_row_f16_avx2(float *acc, const uint16_t *v, float w, int32_t n);
void zl_attn_round_f16_avx2(float *x, int32_t n);
void zl_attn_v_lanes_f16_avx2(float *lanes, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                              size_t row_stride, const float *w, int32_t p0, int32_t p1);
void zl_f16_vec_dot_avx512(int64_t n, float *s, const void *x, const void *y); /* quant_avx512.c */
void zl_f16_vec_dot_gemm_avx512(int64_t n, float *s, const void *x, const void *y);
void zl_f16_dot_vec_rows_avx512(int64_t n, int g, int64_t n_rows, float *s, size_t s_stride, const void *k,
                                size_t k_stride, const float *q);
void zl_f16_dot_gemm_rows_avx512(int64_t n, int g, int64_t n_rows, float *s, size_t s_stride, const void *k,
                                 size_t k_stride, const float *q);
void zl_attn_v_lanes_f16_group_avx512(float *lanes, int g, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                                      size_t row_stride, const float *w, size_t w_stride, int32_t p0, int32_t p1);
#endif

static void fma_row(float *acc, const float *v, float w, int32_t n)
{
    for (int32_t c = 0; c < n; c++)
        acc[c] = fmaf(v[c], w, acc[c]);
}

/* out[c] = the lane sum of column c: lanes (n_acc * w, hd), n_acc 4 (vec_dot) or 1 (tinyBLAS), in the order of
 * ggml's reduction for w lanes:
 *   - w 16: _mm512_reduce_add_ps (halves, quarters, then pairs);
 *   - w 8, vec_dot: GGML_F32x8_REDUCE (two horizontal adds);
 *   - w 8, tinyBLAS: its hsum (movehl, then movehdup).
 * Columns go 16 at a time with the lanes read row-wise (contiguous), so the compiler keeps the columns in vectors;
 * each column still gets exactly these scalar additions in this order. A decode step reduces n_acc * w * hd floats per (token, head),
 * as many as the V accumulation itself at short contexts. */
enum { CB = 16 };

/* Columns c0 .. c0 + nc - 1 (nc <= CB); inlined with nc = CB for whole blocks, so those loops have a constant trip
 * count and are vectorized. */
static inline __attribute__((always_inline)) void reduce_cols(const float *const *row, int w, int n_acc,
                                                              int32_t c0, int nc, float *out)
{
    float v[16][CB];
    for (int l = 0; l < w; l++) {
        const float *r0 = row[l] + c0;
        if (n_acc == 4) { /* the 4 accumulators of vec_dot: (a0 + a2) + (a1 + a3) */
            const float *r1 = row[w + l] + c0, *r2 = row[2 * w + l] + c0, *r3 = row[3 * w + l] + c0;
            for (int j = 0; j < nc; j++)
                v[l][j] = (r0[j] + r2[j]) + (r1[j] + r3[j]);
        } else {
            for (int j = 0; j < nc; j++)
                v[l][j] = r0[j];
        }
    }
    float *o = out + c0;
    if (w == 16) {
        float h[8][CB];
        for (int l = 0; l < 8; l++)
            for (int j = 0; j < nc; j++)
                h[l][j] = v[l][j] + v[l + 8][j];
        for (int j = 0; j < nc; j++) {
            const float q0 = h[0][j] + h[4][j], q1 = h[1][j] + h[5][j];
            const float q2 = h[2][j] + h[6][j], q3 = h[3][j] + h[7][j];
            o[j] = (q0 + q2) + (q1 + q3);
        }
    } else {
        for (int j = 0; j < nc; j++) {
            const float t0 = v[0][j] + v[4][j], t1 = v[1][j] + v[5][j];
            const float t2 = v[2][j] + v[6][j], t3 = v[3][j] + v[7][j];
            o[j] = n_acc == 4 ? (t0 + t1) + (t2 + t3) : (t0 + t2) + (t1 + t3);
        }
    }
}

/* Zeros for the lanes no position reached (the same +0.0 a zeroed lane holds), up to this head size. */
enum { ZERO_ROW = 1024 };
static const float zero_row[ZERO_ROW];

/* The lane sums of lanes (n_acc * w rows of hd); used: NULL when every lane was written, else which were (the others
 * are read as zeros from zero_row, so they need no clearing and cost no memory traffic). */
static void reduce_lanes(const float *lanes, int32_t hd, int w, int n_acc, const bool *used, float *out)
{
    const float *row[ZL_ATT_MAX_LANES];
    for (int l = 0; l < n_acc * w; l++)
        row[l] = !used || used[l] ? lanes + (size_t)l * hd : zero_row;
    int32_t c0 = 0;
    for (; c0 + CB <= hd; c0 += CB)
        reduce_cols(row, w, n_acc, c0, CB, out);
    if (c0 < hd)
        reduce_cols(row, w, n_acc, c0, (int)(hd - c0), out);
}

typedef struct att_task {
    const zl_model *m;
    zl_kv *kv;
    zl_fwd *f;
    const zl_batch *b;
    int32_t il;
    const float *q;
    float *att;
    int width;  /* zl_cpu_simd_width(); 1 is treated as 8 (the portable path keeps the AVX2 order) */
    bool simd;  /* a vector kernel set is active (tinyBLAS's order exists only there) */
    int group;  /* query heads per item (attend_group when > 1; 1: attend_one only) */
    int32_t hdv; /* V width per head (hp.head_dim_v; head_dim but for MLA's latent) */
    int32_t vs;  /* slot of a block's first V row: block_size, or 0 in a k_only cache (V in the K rows) */
} att_task;

/* The first position token i attends to in this layer (sliding-window layers skip the older ones). */
static int32_t window_start(const att_task *t, int32_t n_ctx)
{
    const int32_t n_swa = t->m->layers[t->il].swa ? t->m->hp.n_swa : 0;
    return n_swa > 0 && n_ctx > n_swa ? n_ctx - n_swa : 0;
}

#ifdef ZL_ATT_AVX2_ROWS
/* Thread ith's table of KV head hk's V rows in each block of token i's sequence from position lo on (entries from
 * lo / bs), for the register kernels; elt: bytes per cache element. */
static const char **v_blocks(const att_task *t, int32_t i, int32_t hk, int32_t lo, int ith)
{
    const zl_kv_params *p = zl_kv_get_params(t->kv);
    const int32_t bs = p->block_size, n_ctx = t->b->pos[i] + 1;
    const size_t elt = p->type == ZL_F16 ? 2 : 4;
    int32_t n_blk;
    const int32_t *tab = zl_kv_seq_blocks(t->kv, t->b->seq[i], &n_blk);
    const char **blk = (const char **)t->f->v_blk + (size_t)ith * (size_t)t->f->blk_cap;
    for (int32_t k = lo / bs; k * bs < n_ctx; k++)
        blk[k] = zl_kv_block(t->kv, t->il, tab[k]) +
                 ((size_t)t->vs * p->kv_dim + (size_t)hk * t->m->hp.head_dim) * elt;
    return blk;
}
#endif

/* Which of n_lanes lanes positions [lo, n_ctx) reach, in buf; NULL when they reach every lane. */
static bool *lanes_reached(bool buf[ZL_ATT_MAX_LANES], int n_lanes, int32_t lo, int32_t n_ctx)
{
    if (n_ctx - lo >= n_lanes)
        return NULL;
    memset(buf, 0, ZL_ATT_MAX_LANES * sizeof *buf);
    for (int32_t p0 = lo; p0 < n_ctx; p0++)
        buf[p0 % n_lanes] = true;
    return buf;
}

/* One (token, head): scores into sc, softmax, weighted sum of V rows into o. */
static void attend_one(const att_task *t, int32_t i, int32_t h, int ith)
{
    const zl_hparams *hp = &t->m->hp;
    const zl_kv_params *p = zl_kv_get_params(t->kv);
    const int32_t hd = hp->head_dim, kv_dim = p->kv_dim, bs = p->block_size;
    const int32_t hk = h / (hp->n_head / hp->n_head_kv);
    const int32_t n_ctx = t->b->pos[i] + 1;
    const int32_t lo = window_start(t, n_ctx);                          /* first position attended to */
    const int32_t sm0 = lo & ~15;                                       /* first position of the softmax */
    const float scale = t->m->kq_scale;
    const int32_t hdv = t->hdv;
    const float *q = t->q + (size_t)i * (size_t)hp->n_head * hd + (size_t)h * hd;
    float *o = t->att + (size_t)i * (size_t)hp->n_head * hdv + (size_t)h * hdv;
    float *sc = t->f->scores + (size_t)ith * ZL_ATT_GROUP * (size_t)t->f->ctx_cap;
    float *vrow = t->f->v_row + (size_t)ith * hd;
    int32_t n_blk;
    const int32_t *tab = zl_kv_seq_blocks(t->kv, t->b->seq[i], &n_blk);
    const bool f16 = p->type == ZL_F16;
    const zl_type_traits *tr = zl_type_traits_get(p->type);
    const size_t elt = f16 ? 2 : 4;
    const int w = t->width;
    const bool simd = t->simd, gemm = simd && t->f->tok_gemm[i];
    const zl_vec_dot_fn kdot = gemm && tr->vec_dot_gemm && hd % tr->gemm_k == 0 ? tr->vec_dot_gemm
                                                                                      : tr->vec_dot;
    const int n_acc = gemm && hdv % 4 == 0 ? 1 : 4;
    const void *qv = q;
    if (f16) {
        void *qc = (char *)t->f->q_conv + (size_t)ith * (ZL_ATT_GROUP + 1) * hd * sizeof(float);
        tr->from_float_act(q, qc, hd); /* f16: the same halves as from_float, with F16C where present */
        qv = qc;
    }

    /* Scores, block by block: slot j of a block holds K at base + j*kv_dim, V at base + (bs + j)*kv_dim. */
    for (int32_t p0 = sm0; p0 < lo; p0++)
        sc[p0] = -INFINITY;
    for (int32_t t0 = lo - lo % bs; t0 < n_ctx; t0 += bs) {
        const char *base = zl_kv_block(t->kv, t->il, tab[t0 / bs]);
        const int32_t n = n_ctx - t0 < bs ? n_ctx - t0 : bs;
        for (int32_t j = t0 < lo ? lo - t0 : 0; j < n; j++) {
            const char *krow = base + ((size_t)j * kv_dim + (size_t)hk * hd) * elt;
            float s;
            kdot(hd, &s, krow, qv);
            sc[t0 + j] = s * scale;
        }
    }
    zl_softmax(sc + sm0, n_ctx - sm0);
    if (f16) { /* the weights as V's type, once per position (a software conversion per position cost 17% of pp512) */
#ifdef ZL_ATT_AVX2_ROWS
        if (simd)
            zl_attn_round_f16_avx2(sc + lo, n_ctx - lo);
        else
#endif
            for (int32_t p0 = lo; p0 < n_ctx; p0++)
                sc[p0] = zl_fp16_to_fp32(zl_fp32_to_fp16(sc[p0]));
    }

    /* Weighted sum of V rows, lane by lane (see the file header). */
    const int n_lanes = n_acc * w;
    float *lanes = t->f->v_lanes + (size_t)ith * ZL_ATT_GROUP * ZL_ATT_MAX_LANES * hd;
#ifdef ZL_ATT_AVX2_ROWS
    if (f16 && simd && hdv % 8 == 0 && n_ctx - lo >= 4 * n_lanes) {
        /* lane by lane, in registers (same bits); with fewer than ~4 positions per lane, zeroing the lanes and
         * adding row by row is as fast (and measurably faster for one-token decode at short contexts) */
        zl_attn_v_lanes_f16_avx2(lanes, n_lanes, hdv, v_blocks(t, i, hk, lo, ith), bs, (size_t)kv_dim * elt, sc, lo,
                                 n_ctx);
        reduce_lanes(lanes, hdv, w, n_acc, NULL, o);
        return;
    }
#endif
    /* fewer positions than lanes (short contexts): only the lanes they reach are cleared and read */
    bool used_buf[ZL_ATT_MAX_LANES];
    bool *used = hdv <= ZERO_ROW ? lanes_reached(used_buf, n_lanes, lo, n_ctx) : NULL;
    for (int l = 0; l < n_lanes; l++)
        if (!used || used[l])
            memset(lanes + (size_t)l * hdv, 0, (size_t)hdv * sizeof *lanes);
    for (int32_t t0 = lo - lo % bs; t0 < n_ctx; t0 += bs) {
        const char *base = zl_kv_block(t->kv, t->il, tab[t0 / bs]);
        const int32_t n = n_ctx - t0 < bs ? n_ctx - t0 : bs;
        for (int32_t j = t0 < lo ? lo - t0 : 0; j < n; j++) {
            const char *vp = base + ((size_t)(t->vs + j) * kv_dim + (size_t)hk * hd) * elt;
            const float wt = sc[t0 + j];
            float *acc = lanes + (size_t)((t0 + j) % n_lanes) * hdv;
#ifdef ZL_ATT_AVX2_ROWS
            if (f16 && simd) {
                zl_attn_fma_row_f16_avx2(acc, (const uint16_t *)vp, wt, hdv);
            } else if (simd && !f16) {
                zl_attn_fma_row_avx2(acc, (const float *)vp, wt, hdv);
            } else
#endif
            if (f16) {
                tr->to_float(vp, vrow, hdv);
                fma_row(acc, vrow, wt, hdv);
            } else {
                fma_row(acc, (const float *)vp, wt, hdv);
            }
        }
    }
    reduce_lanes(lanes, hdv, w, n_acc, used, o);
}

#ifdef ZL_ATT_AVX2_ROWS
/* Query heads h0 .. h0 + g - 1 of token i, which share one KV head (F16 cache, the avx512 sets), in the token's order
 * (vec_dot or tinyBLAS's, as attend_one): their scores from one pass over the K rows, each row widened once for the g
 * queries (zl_f16_dot_vec_rows_avx512 / zl_f16_dot_gemm_rows_avx512), each head's softmax as attend_one's, then the
 * weighted sum of V for the g heads in one pass, each V row slice widened once (zl_attn_v_lanes_f16_group_avx512,
 * attend_one's lanes side by side), and each head's lane sums. The same bits as attend_one, with K and V read once
 * per group instead of once per head. */
static void attend_group(const att_task *t, int32_t i, int32_t h0, int g, int ith)
{
    const zl_hparams *hp = &t->m->hp;
    const zl_kv_params *p = zl_kv_get_params(t->kv);
    const int32_t hd = hp->head_dim, kv_dim = p->kv_dim, bs = p->block_size;
    const int32_t hk = h0 / (hp->n_head / hp->n_head_kv);
    const int32_t n_ctx = t->b->pos[i] + 1;
    const int32_t lo = window_start(t, n_ctx), sm0 = lo & ~15;
    const bool gemm = t->f->tok_gemm[i];
    const int w = t->width, n_acc = gemm ? 1 : 4, n_lanes = n_acc * w;
    const size_t cap = (size_t)t->f->ctx_cap;
    float *sc = t->f->scores + (size_t)ith * ZL_ATT_GROUP * cap;
    const zl_type_traits *tr = zl_type_traits_get(ZL_F16);
    float *qc = (float *)t->f->q_conv + (size_t)ith * (ZL_ATT_GROUP + 1) * hd; /* hd floats: room for the halves */
    float *q32 = qc + hd;
    for (int k = 0; k < g; k++) { /* each query rounded to F16 as attend_one's, then widened back */
        tr->from_float_act(t->q + ((size_t)i * (size_t)hp->n_head + (size_t)(h0 + k)) * hd, qc, hd);
        tr->to_float(qc, q32 + (size_t)k * hd, hd);
    }
    int32_t n_blk;
    const int32_t *tab = zl_kv_seq_blocks(t->kv, t->b->seq[i], &n_blk);
    for (int32_t t0 = lo - lo % bs; t0 < n_ctx; t0 += bs) {
        const char *base = zl_kv_block(t->kv, t->il, tab[t0 / bs]);
        const int32_t n = n_ctx - t0 < bs ? n_ctx - t0 : bs, j0 = t0 < lo ? lo - t0 : 0;
        (gemm ? zl_f16_dot_gemm_rows_avx512 : zl_f16_dot_vec_rows_avx512)(
            hd, g, n - j0, sc + t0 + j0, cap, base + ((size_t)j0 * kv_dim + (size_t)hk * hd) * sizeof(uint16_t),
            (size_t)kv_dim * sizeof(uint16_t), q32);
    }
    const float scale = t->m->kq_scale;
    for (int k = 0; k < g; k++) {
        float *sk = sc + (size_t)k * cap;
        for (int32_t p0 = lo; p0 < n_ctx; p0++)
            sk[p0] *= scale;
        for (int32_t p0 = sm0; p0 < lo; p0++)
            sk[p0] = -INFINITY;
        zl_softmax(sk + sm0, n_ctx - sm0);
        zl_attn_round_f16_avx2(sk + lo, n_ctx - lo);
    }
    const int32_t hdv = t->hdv;
    float *lanes = t->f->v_lanes + (size_t)ith * ZL_ATT_GROUP * ZL_ATT_MAX_LANES * hd;
    zl_attn_v_lanes_f16_group_avx512(lanes, g, n_lanes, hdv, v_blocks(t, i, hk, lo, ith), bs,
                                     (size_t)kv_dim * sizeof(uint16_t), sc, cap, lo, n_ctx);
    bool used_buf[ZL_ATT_MAX_LANES];
    bool *used = lanes_reached(used_buf, n_lanes, lo, n_ctx); /* the kernel leaves the others unwritten */
    for (int k = 0; k < g; k++)
        reduce_lanes(lanes + (size_t)k * n_lanes * hdv, hdv, w, n_acc, used,
                     t->att + ((size_t)i * (size_t)hp->n_head + (size_t)(h0 + k)) * hdv);
}
#endif

static void att_worker(void *ctx, int ith, int nth)
{
    const att_task *t = ctx;
    const int32_t n_head = t->m->hp.n_head, g = t->group;
    const int64_t n_items = (int64_t)t->b->n * (n_head / g);
    /* Interleaved: neighbouring items have similar cost (same token, nearby tokens), so threads stay balanced. Each
     * item is g query heads of one token that share a KV head. */
    for (int64_t it = ith; it < n_items; it += nth) {
        const int32_t i = (int32_t)(it / (n_head / g)), h0 = (int32_t)(it % (n_head / g)) * g;
#ifdef ZL_ATT_AVX2_ROWS
        if (g > 1) {
            attend_group(t, i, h0, g, ith);
            continue;
        }
#endif
        for (int32_t h = h0; h < h0 + g; h++)
            attend_one(t, i, h, ith);
    }
}

void zl_attention_paged(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il,
                        const float *q, float *att)
{
    const int w = zl_cpu_simd_width();
    const zl_kv_params *kp = zl_kv_get_params(kv);
    att_task t = {.m = m, .kv = kv, .f = f, .b = b, .il = il, .q = q, .att = att, .width = w == 16 ? 16 : 8,
                  .simd = w > 1, .group = 1, .hdv = m->hp.head_dim_v > 0 ? m->hp.head_dim_v : m->hp.head_dim,
                  .vs = kp->k_only ? 0 : kp->block_size};
#ifdef ZL_ATT_AVX2_ROWS
    /* query heads that share a KV head go together (attend_group) where its kernels have the cache's orders, and
     * where that still leaves the threads several items each (a one-token decode of a model with one KV head keeps
     * a head per item) */
    const zl_type_traits *tr = zl_type_traits_get(zl_kv_get_params(kv)->type);
    const int32_t gq = m->hp.n_head / m->hp.n_head_kv;
    const int g = gq % 4 == 0 ? 4 : gq % 3 == 0 ? 3 : gq % 2 == 0 ? 2 : 1;
    if (zl_kv_get_params(kv)->type == ZL_F16 && tr->vec_dot_gemm == zl_f16_vec_dot_gemm_avx512 &&
        tr->vec_dot == zl_f16_vec_dot_avx512 && m->hp.head_dim % 64 == 0 && m->hp.head_dim <= ZERO_ROW &&
        t.hdv % 64 == 0 &&
        (int64_t)b->n * (m->hp.n_head / g) >= 4 * (int64_t)zl_cpu_n_threads(cpu))
        t.group = g;
#endif
    zl_pool_run(zl_cpu_pool(cpu), att_worker, &t);
}

void zl_attention_paged_mla(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *f, const zl_batch *b, int32_t il,
                            const float *q, float *att)
{
    zl_attention_paged(m, cpu, kv, f, b, il, q, att); /* the k_only cache and hp.head_dim_v make it MLA */
}
