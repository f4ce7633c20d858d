/*
 * quant_k_ref.c - portable scalar kernels of the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and of their
 * activation type Q8_K: conversion to float, Q8_K's quantizer, and the dot products against Q8_K.
 * The weight types' reference quantizers are in quant_k_quantize.c.
 *
 * Numeric recipe, as ggml's:
 *   - to_float computes (d * sc) and (dmin * m) in float first, then d_sub * q - m_sub: the same roundings as
 *     ggml's dequantizers and gguf-py's (tests compare bit for bit).
 *   - Q8_K quantizes a super-block of 256 with iscale = -127 / (the first value of largest magnitude, signed),
 *     q = min(127, round-half-even(iscale * x)), d = 1 / iscale (a float, not fp16), and stores the sum of each
 *     16 quants. ggml uses this same function for activations on x86, so from_float_act = from_float.
 *   - a dot product sums (integer scale) x (integer product sums) over a super-block exactly in int32, then
 *     adds d_x * d_y * isum (and subtracts dmin_x * d_y * sum(m * bsums)) in float. The AVX2 versions keep the
 *     same integer sums but spread them over 8 float lanes, as ggml's x86 kernels do.
 * n is a multiple of 256 (callers check shapes); there is no error path. Pure functions, any thread.
 */
#include "backend/cpu/quant.h"

#include <math.h>
#include <string.h>

#include "core/fp16.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* a*b+c must round twice, as in ggml's scalar code and numpy */
#endif

/* Round to nearest, ties to even, for |v| < 2^22 (all callers; the quantizers bound their arguments): adding
 * 1.5 * 2^23 leaves the rounded integer in the low mantissa bits. ggml rounds the same way, and unlike lrintf
 * this has no undefined behaviour on NaN. */
static int round_even(float v)
{
    const float t = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* Scale and minimum of sub-block j (< 8) of a Q4_K / Q5_K block: 6 bits each. Sub-blocks 0-3 keep them in the
 * low 6 bits of bytes j and j + 4; sub-blocks 4-7 keep their low 4 bits in the nibbles of byte j + 4 and their
 * top 2 bits in the top bits of bytes j - 4 (scale) and j (minimum). */
static void k4_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* The 16 signed scales (sc - 32) of a Q3_K block; the packing is described in quant.h. */
static void q3_scales(const uint8_t *packed, int sc[16])
{
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? packed[j] & 0x0f : packed[j - 8] >> 4;
        const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | hi << 4) - 32;
    }
}

/* ---- unpacking to integer quants, element order (shared by to_float and the dots) ---- */

static void q2_unpack(const zl_block_q2_K *x, int q[ZL_QK_K])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) q[128 * h + 32 * k + l] = (x->qs[32 * h + l] >> (2 * k)) & 3;
}

static void q3_unpack(const zl_block_q3_K *x, int q[ZL_QK_K])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                const int e = 128 * h + 32 * k + l;
                const int hbit = (x->hmask[l] >> (4 * h + k)) & 1;
                q[e] = ((x->qs[32 * h + l] >> (2 * k)) & 3) - (hbit ? 0 : 4);
            }
}

static void q45_unpack(const uint8_t *qs, const uint8_t *qh, int q[ZL_QK_K])
{
    for (int h = 0; h < 4; h++)
        for (int l = 0; l < 32; l++) {
            q[64 * h + l] = qs[32 * h + l] & 0x0f;
            q[64 * h + 32 + l] = qs[32 * h + l] >> 4;
            if (qh) {
                q[64 * h + l] |= ((qh[l] >> (2 * h)) & 1) << 4;
                q[64 * h + 32 + l] |= ((qh[l] >> (2 * h + 1)) & 1) << 4;
            }
        }
}

static void q6_unpack(const zl_block_q6_K *x, int q[ZL_QK_K])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lo = x->ql[64 * h + l + 32 * (k & 1)];
                const int low4 = k < 2 ? lo & 0x0f : lo >> 4;
                const int high2 = (x->qh[32 * h + l] >> (2 * k)) & 3;
                q[128 * h + 32 * k + l] = (low4 | high2 << 4) - 32;
            }
}

/* ---- to_float ---- */

void zl_q2_K_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q2_K *x = vx;
    int q[ZL_QK_K];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, y += ZL_QK_K) {
        const float d = zl_fp16_to_fp32(x[b].d), dmin = zl_fp16_to_fp32(x[b].dmin);
        q2_unpack(&x[b], q);
        for (int s = 0; s < 16; s++) {
            const float dl = d * (float)(x[b].scales[s] & 0x0f);
            const float ml = dmin * (float)(x[b].scales[s] >> 4);
            for (int l = 0; l < 16; l++) y[16 * s + l] = dl * (float)q[16 * s + l] - ml;
        }
    }
}

void zl_q3_K_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q3_K *x = vx;
    int q[ZL_QK_K], sc[16];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, y += ZL_QK_K) {
        const float d = zl_fp16_to_fp32(x[b].d);
        q3_unpack(&x[b], q);
        q3_scales(x[b].scales, sc);
        for (int s = 0; s < 16; s++) {
            const float dl = d * (float)sc[s];
            for (int l = 0; l < 16; l++) y[16 * s + l] = dl * (float)q[16 * s + l];
        }
    }
}

/* Q4_K and Q5_K share scales and layout; qh is NULL for Q4_K. */
static void q45_to_float(uint16_t hd, uint16_t hdmin, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                         float *y)
{
    int q[ZL_QK_K];
    const float d = zl_fp16_to_fp32(hd), dmin = zl_fp16_to_fp32(hdmin);
    q45_unpack(qs, qh, q);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        k4_scale_min(s, scales, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) y[32 * s + l] = dl * (float)q[32 * s + l] - ml;
    }
}

void zl_q4_K_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q4_K *x = vx;
    for (int64_t b = 0; b < n / ZL_QK_K; b++, y += ZL_QK_K)
        q45_to_float(x[b].d, x[b].dmin, x[b].scales, x[b].qs, NULL, y);
}

void zl_q5_K_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q5_K *x = vx;
    for (int64_t b = 0; b < n / ZL_QK_K; b++, y += ZL_QK_K)
        q45_to_float(x[b].d, x[b].dmin, x[b].scales, x[b].qs, x[b].qh, y);
}

void zl_q6_K_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q6_K *x = vx;
    int q[ZL_QK_K];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, y += ZL_QK_K) {
        const float d = zl_fp16_to_fp32(x[b].d);
        q6_unpack(&x[b], q);
        for (int s = 0; s < 16; s++) {
            const float dl = d * (float)x[b].scales[s];
            for (int l = 0; l < 16; l++) y[16 * s + l] = dl * (float)q[16 * s + l];
        }
    }
}

/* ---- Q8_K ---- */

void zl_q8_K_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q8_K *x = vx;
    for (int64_t b = 0; b < n / ZL_QK_K; b++, y += ZL_QK_K)
        for (int j = 0; j < ZL_QK_K; j++) y[j] = x[b].d * (float)x[b].qs[j];
}

void zl_q8_K_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q8_K *y = vy;
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        float amax = 0.0f, vmax = 0.0f; /* the first value of largest magnitude, with its sign */
        for (int j = 0; j < ZL_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                vmax = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / vmax;
        for (int j = 0; j < ZL_QK_K; j++) {
            const int v = round_even(iscale * x[j]);
            y[b].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[b].qs[16 * s + l];
            y[b].bsums[s] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ---- dots against Q8_K ---- */

/* sum over l < len of a[l] * b[l] */
static int idot(const int *a, const int8_t *b, int len)
{
    int s = 0;
    for (int l = 0; l < len; l++) s += a[l] * b[l];
    return s;
}

/* The integer sums of one Q2_K block against one Q8_K block: s1 = sum sc (q . q8), s2 = sum m bsum. */
static void q2_sums(const zl_block_q2_K *x, const zl_block_q8_K *y, int *s1, int *s2)
{
    int q[ZL_QK_K];
    q2_unpack(x, q);
    int a = 0, m_sum = 0;
    for (int sb = 0; sb < 16; sb++) {
        a += (x->scales[sb] & 0x0f) * idot(q + 16 * sb, y->qs + 16 * sb, 16);
        m_sum += (x->scales[sb] >> 4) * y->bsums[sb];
    }
    *s1 = a;
    *s2 = m_sum;
}

/* sum_s (sc_s - 32) (q_s . q8_s) of one Q3_K block. */
static int q3_sum(const zl_block_q3_K *x, const zl_block_q8_K *y)
{
    int q[ZL_QK_K], sc[16];
    q3_unpack(x, q);
    q3_scales(x->scales, sc);
    int isum = 0;
    for (int sb = 0; sb < 16; sb++) isum += sc[sb] * idot(q + 16 * sb, y->qs + 16 * sb, 16);
    return isum;
}

/* sum_s sc_s ((q_s - 32) . q8_s) of one Q6_K block. */
static int q6_sum(const zl_block_q6_K *x, const zl_block_q8_K *y)
{
    int q[ZL_QK_K];
    q6_unpack(x, q);
    int isum = 0;
    for (int sb = 0; sb < 16; sb++) isum += x->scales[sb] * idot(q + 16 * sb, y->qs + 16 * sb, 16);
    return isum;
}

void zl_q2_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q2_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int isum, msum;
        q2_sums(&x[b], &y[b], &isum, &msum);
        const float d = y[b].d * zl_fp16_to_fp32(x[b].d);
        const float dmin = y[b].d * zl_fp16_to_fp32(x[b].dmin);
        sum += d * (float)isum - dmin * (float)msum;
    }
    *s = sum;
}

void zl_q3_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q3_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) sum += y[b].d * zl_fp16_to_fp32(x[b].d) * (float)q3_sum(&x[b], &y[b]);
    *s = sum;
}

/* The integer sums of one Q4_K / Q5_K block (qh NULL for Q4_K) against one Q8_K block: s1 = sum sc (q . q8),
 * s2 = sum m bsum. */
static void q45_sums(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const zl_block_q8_K *y,
                     int *s1, int *s2)
{
    int q[ZL_QK_K];
    q45_unpack(qs, qh, q);
    int a = 0, m_sum = 0;
    for (int sb = 0; sb < 8; sb++) {
        int sc, m;
        k4_scale_min(sb, scales, &sc, &m);
        a += sc * idot(q + 32 * sb, y->qs + 32 * sb, 32);
        m_sum += m * (y->bsums[2 * sb] + y->bsums[2 * sb + 1]);
    }
    *s1 = a;
    *s2 = m_sum;
}

/* One Q4_K / Q5_K super-block against one Q8_K block: d_x d_y sum(sc q p) - dmin_x d_y sum(m bsums). */
static float q45_block_dot(uint16_t hd, uint16_t hdmin, const uint8_t *scales, const uint8_t *qs,
                           const uint8_t *qh, const zl_block_q8_K *y)
{
    int isum, msum;
    q45_sums(scales, qs, qh, y, &isum, &msum);
    const float d = y->d * zl_fp16_to_fp32(hd);
    const float dmin = y->d * zl_fp16_to_fp32(hdmin);
    return d * (float)isum - dmin * (float)msum;
}

void zl_q4_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++)
        sum += q45_block_dot(x[b].d, x[b].dmin, x[b].scales, x[b].qs, NULL, &y[b]);
    *s = sum;
}

void zl_q5_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++)
        sum += q45_block_dot(x[b].d, x[b].dmin, x[b].scales, x[b].qs, x[b].qh, &y[b]);
    *s = sum;
}

void zl_q6_K_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) sum += y[b].d * zl_fp16_to_fp32(x[b].d) * (float)q6_sum(&x[b], &y[b]);
    *s = sum;
}

/* ---- llama.cpp's tiled K-quant order (its matmul for batches of 8+ tokens; see ops.c) ----
 * Per 256-block the exact integer sums s1 = sum_s sc_s (q_s . q8_s) and, for the types with minimums,
 * s2 = sum_s m_s bsum_s (the same integers as the dots above); then r = d * s1 (with minimums:
 * fma(-dmin, s2, d * s1)) and acc = fma(r, d8, acc), from acc = 0. */

static float tiled_step(float acc, uint16_t hd, const uint16_t *hdmin, int s1, int s2, float d8)
{
    const float r = zl_fp16_to_fp32(hd) * (float)s1;
    return fmaf(hdmin ? fmaf(-zl_fp16_to_fp32(*hdmin), (float)s2, r) : r, d8, acc);
}

void zl_q2_K_tiled_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q2_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int s1, s2;
        q2_sums(&x[b], &y[b], &s1, &s2);
        acc = tiled_step(acc, x[b].d, &x[b].dmin, s1, s2, y[b].d);
    }
    *s = acc;
}

void zl_q3_K_tiled_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q3_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) acc = tiled_step(acc, x[b].d, NULL, q3_sum(&x[b], &y[b]), 0, y[b].d);
    *s = acc;
}

void zl_q4_K_tiled_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int s1, s2;
        q45_sums(x[b].scales, x[b].qs, NULL, &y[b], &s1, &s2);
        acc = tiled_step(acc, x[b].d, &x[b].dmin, s1, s2, y[b].d);
    }
    *s = acc;
}

void zl_q5_K_tiled_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int s1, s2;
        q45_sums(x[b].scales, x[b].qs, x[b].qh, &y[b], &s1, &s2);
        acc = tiled_step(acc, x[b].d, &x[b].dmin, s1, s2, y[b].d);
    }
    *s = acc;
}

void zl_q6_K_tiled_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) acc = tiled_step(acc, x[b].d, NULL, q6_sum(&x[b], &y[b]), 0, y[b].d);
    *s = acc;
}
