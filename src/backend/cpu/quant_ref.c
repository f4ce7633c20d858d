/*
 * quant_ref.c - portable scalar kernels for the dtype traits table: conversions to and from float and dot
 * products, for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1 (the K-quants are in quant_k_ref.c).
 *
 * These are the reference every SIMD kernel is tested against, and they follow ggml's numeric recipe:
 *   - quantizers (from_float) are ggml's reference quantizers: Q4_0 takes d = (the value of largest magnitude)
 *     / -8 and q = min(15, trunc(x/d + 8.5)); Q4_1 takes d = (max - min) / 15, m = min and
 *     q = min(15, trunc((x - min)/d + 0.5)); Q8_0 / Q8_1 take d = amax / 127 and q = round-half-away(x * (1/d)).
 *     The reciprocal is always of the float d, before d is rounded to fp16 for storage.
 *   - activation quantizers (from_float_act) follow ggml's SIMD recipe: q = round-half-even(x * (127/amax)).
 *   - float dot products accumulate in double; quantized ones sum integer products per block, then add
 *     (block sum x scales) in float.
 * n is always a multiple of the block size (the callers check shapes); there is no error path.
 */
#include "backend/cpu/quant.h"

#include <math.h>
#include <string.h>

#include "core/fp16.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* a*b+c must round twice, as in ggml and numpy (gcc: off in ISO C mode) */
#endif

/* ---- F32 ---- */

void zl_f32_to_float_ref(const void *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void zl_f32_from_float_ref(const float *x, void *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void zl_f32_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

/* ---- F16 ---- */

void zl_f16_to_float_ref(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = zl_fp16_to_fp32(x[i]);
}

void zl_f16_from_float_ref(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = zl_fp32_to_fp16(x[i]);
}

void zl_f16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(zl_fp16_to_fp32(x[i]) * zl_fp16_to_fp32(y[i]));
    *s = (float)sum;
}

/* ---- BF16 ---- */

void zl_bf16_to_float_ref(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    for (int64_t i = 0; i < n; i++) y[i] = zl_bf16_to_fp32(x[i]);
}

void zl_bf16_from_float_ref(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    for (int64_t i = 0; i < n; i++) y[i] = zl_fp32_to_bf16(x[i]);
}

void zl_bf16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(zl_bf16_to_fp32(x[i]) * zl_bf16_to_fp32(y[i]));
    *s = (float)sum;
}

/* ---- Q4_0 ---- */

void zl_q4_0_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q4_0 *x = vx;
    for (int64_t b = 0; b < n / ZL_QK; b++, y += ZL_QK) {
        const float d = zl_fp16_to_fp32(x[b].d);
        for (int j = 0; j < ZL_QK / 2; j++) {
            y[j] = (float)((x[b].qs[j] & 0x0f) - 8) * d;
            y[j + ZL_QK / 2] = (float)((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void zl_q4_0_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q4_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        float amax = 0.0f, vmax = 0.0f; /* the first value of largest magnitude, with its sign */
        for (int j = 0; j < ZL_QK; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                vmax = x[j];
            }
        }
        const float d = vmax / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = zl_fp32_to_fp16(d);
        for (int j = 0; j < ZL_QK / 2; j++) {
            int lo = (int)(int8_t)(x[j] * id + 8.5f);
            int hi = (int)(int8_t)(x[j + ZL_QK / 2] * id + 8.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void zl_q4_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        int isum = 0;
        for (int j = 0; j < ZL_QK / 2; j++) {
            isum += ((x[b].qs[j] & 0x0f) - 8) * y[b].qs[j];
            isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + ZL_QK / 2];
        }
        sum += (float)isum * zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d);
    }
    *s = sum;
}

/* ---- Q4_1 ---- */

void zl_q4_1_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q4_1 *x = vx;
    for (int64_t b = 0; b < n / ZL_QK; b++, y += ZL_QK) {
        const float d = zl_fp16_to_fp32(x[b].d);
        const float m = zl_fp16_to_fp32(x[b].m);
        for (int j = 0; j < ZL_QK / 2; j++) {
            y[j] = (float)(x[b].qs[j] & 0x0f) * d + m;
            y[j + ZL_QK / 2] = (float)(x[b].qs[j] >> 4) * d + m;
        }
    }
}

void zl_q4_1_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q4_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        float vmin = x[0], vmax = x[0];
        for (int j = 1; j < ZL_QK; j++) {
            if (x[j] < vmin) vmin = x[j];
            if (x[j] > vmax) vmax = x[j];
        }
        const float d = (vmax - vmin) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = zl_fp32_to_fp16(d);
        y[b].m = zl_fp32_to_fp16(vmin);
        for (int j = 0; j < ZL_QK / 2; j++) {
            int lo = (int)(int8_t)((x[j] - vmin) * id + 0.5f);
            int hi = (int)(int8_t)((x[j + ZL_QK / 2] - vmin) * id + 0.5f);
            lo = lo < 15 ? lo : 15;
            hi = hi < 15 ? hi : 15;
            y[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void zl_q4_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        int isum = 0;
        for (int j = 0; j < ZL_QK / 2; j++) {
            isum += (x[b].qs[j] & 0x0f) * y[b].qs[j];
            isum += (x[b].qs[j] >> 4) * y[b].qs[j + ZL_QK / 2];
        }
        /* sum_j (d_x q_j + m)(d_y p_j) = d_x d_y sum(q p) + m * (d_y sum(p)) = ... + m * s_y */
        sum += zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d) * (float)isum +
               zl_fp16_to_fp32(x[b].m) * zl_fp16_to_fp32(y[b].s);
    }
    *s = sum;
}

/* ---- Q5_0 and Q5_1 ---- */

/* The fifth bits of a Q5 block as one little-endian word: bit j belongs to element j. */
static uint32_t q5_high_bits(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void q5_store_high_bits(uint8_t qh[4], uint32_t bits)
{
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(bits >> (8 * k));
}

/* The 5-bit quant of element j of a Q5 block (unsigned, [0, 31]). */
static int q5_quant(const uint8_t *qs, uint32_t hbits, int j)
{
    const int lo = j < ZL_QK / 2 ? qs[j] & 0x0f : qs[j - ZL_QK / 2] >> 4;
    return lo | (int)((hbits >> j) & 1u) << 4;
}

void zl_q5_0_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q5_0 *x = vx;
    for (int64_t b = 0; b < n / ZL_QK; b++, y += ZL_QK) {
        const float d = zl_fp16_to_fp32(x[b].d);
        const uint32_t hb = q5_high_bits(x[b].qh);
        for (int j = 0; j < ZL_QK; j++) y[j] = (float)(q5_quant(x[b].qs, hb, j) - 16) * d;
    }
}

void zl_q5_0_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q5_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        float amax = 0.0f, vmax = 0.0f; /* the first value of largest magnitude, with its sign */
        for (int j = 0; j < ZL_QK; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                vmax = x[j];
            }
        }
        const float d = vmax / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = zl_fp32_to_fp16(d);
        uint32_t hb = 0;
        for (int j = 0; j < ZL_QK / 2; j++) {
            int lo = (int)(int8_t)(x[j] * id + 16.5f);
            int hi = (int)(int8_t)(x[j + ZL_QK / 2] * id + 16.5f);
            lo = lo < 31 ? lo : 31;
            hi = hi < 31 ? hi : 31;
            y[b].qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            hb |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + ZL_QK / 2);
        }
        q5_store_high_bits(y[b].qh, hb);
    }
}

void zl_q5_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const uint32_t hb = q5_high_bits(x[b].qh);
        int isum = 0;
        for (int j = 0; j < ZL_QK; j++) isum += (q5_quant(x[b].qs, hb, j) - 16) * y[b].qs[j];
        sum += (zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d)) * (float)isum;
    }
    *s = sum;
}

void zl_q5_1_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q5_1 *x = vx;
    for (int64_t b = 0; b < n / ZL_QK; b++, y += ZL_QK) {
        const float d = zl_fp16_to_fp32(x[b].d);
        const float m = zl_fp16_to_fp32(x[b].m);
        const uint32_t hb = q5_high_bits(x[b].qh);
        for (int j = 0; j < ZL_QK; j++) y[j] = (float)q5_quant(x[b].qs, hb, j) * d + m;
    }
}

void zl_q5_1_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q5_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        float vmin = x[0], vmax = x[0];
        for (int j = 1; j < ZL_QK; j++) {
            if (x[j] < vmin) vmin = x[j];
            if (x[j] > vmax) vmax = x[j];
        }
        const float d = (vmax - vmin) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = zl_fp32_to_fp16(d);
        y[b].m = zl_fp32_to_fp16(vmin);
        uint32_t hb = 0;
        for (int j = 0; j < ZL_QK / 2; j++) {
            /* (x - min) * id is in [0, 31] up to rounding, so + 0.5 truncated is in [0, 31] (no clamp in ggml) */
            const int lo = (int)(uint8_t)((x[j] - vmin) * id + 0.5f);
            const int hi = (int)(uint8_t)((x[j + ZL_QK / 2] - vmin) * id + 0.5f);
            y[b].qs[j] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
            hb |= (uint32_t)((lo >> 4) & 1) << j | (uint32_t)((hi >> 4) & 1) << (j + ZL_QK / 2);
        }
        q5_store_high_bits(y[b].qh, hb);
    }
}

void zl_q5_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const uint32_t hb = q5_high_bits(x[b].qh);
        int isum = 0;
        for (int j = 0; j < ZL_QK; j++) isum += q5_quant(x[b].qs, hb, j) * y[b].qs[j];
        sum += (zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d)) * (float)isum +
               zl_fp16_to_fp32(x[b].m) * zl_fp16_to_fp32(y[b].s);
    }
    *s = sum;
}

/* ---- Q8_0 and Q8_1 ---- */

static float block_amax(const float *x)
{
    float amax = 0.0f;
    for (int j = 0; j < ZL_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

void zl_q8_0_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q8_0 *x = vx;
    for (int64_t b = 0; b < n / ZL_QK; b++, y += ZL_QK) {
        const float d = zl_fp16_to_fp32(x[b].d);
        for (int j = 0; j < ZL_QK; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

void zl_q8_0_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        const float d = block_amax(x) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = zl_fp32_to_fp16(d);
        for (int j = 0; j < ZL_QK; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void zl_q8_0_from_float_act_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        const float amax = block_amax(x);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = zl_fp32_to_fp16(amax / 127.0f);
        for (int j = 0; j < ZL_QK; j++) y[b].qs[j] = (int8_t)rintf(x[j] * id); /* default mode: half to even */
    }
}

void zl_q8_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q8_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        int isum = 0;
        for (int j = 0; j < ZL_QK; j++) isum += x[b].qs[j] * y[b].qs[j];
        sum += (float)isum * (zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d));
    }
    *s = sum;
}

void zl_q8_1_to_float_ref(const void *vx, float *y, int64_t n)
{
    const zl_block_q8_1 *x = vx;
    for (int64_t b = 0; b < n / ZL_QK; b++, y += ZL_QK) {
        const float d = zl_fp16_to_fp32(x[b].d);
        for (int j = 0; j < ZL_QK; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

void zl_q8_1_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        const float d = block_amax(x) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int isum = 0;
        for (int j = 0; j < ZL_QK; j++) {
            y[b].qs[j] = (int8_t)roundf(x[j] * id);
            isum += y[b].qs[j];
        }
        y[b].d = zl_fp32_to_fp16(d);
        y[b].s = zl_fp32_to_fp16((float)isum * d);
    }
}

void zl_q8_1_from_float_act_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        const float amax = block_amax(x);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int isum = 0;
        for (int j = 0; j < ZL_QK; j++) {
            y[b].qs[j] = (int8_t)rintf(x[j] * id);
            isum += y[b].qs[j];
        }
        y[b].d = zl_fp32_to_fp16(d);
        y[b].s = zl_fp32_to_fp16((float)isum * d);
    }
}

void zl_tile_aux_pad(zl_tile_aux4 *g, int j, int64_t n)
{
    for (int64_t b = 0; b < n / ZL_QK; b++)
        for (int k = j; k < 4; k++) {
            g[b].d[k] = g[b].s[k] = 0.0f;
            memset(g[b].yu[k], 0, sizeof g[b].yu[k]);
        }
}
