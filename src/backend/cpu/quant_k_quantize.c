/*
 * quant_k_quantize.c - reference quantizers (from_float) of the K-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.
 *
 * These reproduce, byte for byte, ggml's reference quantizers (quantize_row_q*_K_ref: what llama-quantize
 * writes when it has no importance matrix). That requires doing the same float operations in the same order,
 * so the fitting loops below are written as plain left-to-right float arithmetic with contraction off; do not
 * "simplify" an expression such as (w * x) * l into w * (x * l). Rounding is ggml's: to nearest, ties to even,
 * through the 1.5 * 2^23 trick (round_even).
 *
 * Shape of every quantizer: for each super-block of 256 values, (1) fit a scale (and for the "x2" types a
 * minimum) per sub-block by a small search over candidate scales, (2) quantize those sub-block scales to 4, 6 or
 * 8 bits against one fp16 super-block scale, (3) requantize the values with the scales as stored, (4) pack bits
 * (layouts in quant.h).
 *
 * They are used by tests and tools, not on the inference path. n is a multiple of 256. Pure functions.
 */
#include "backend/cpu/quant.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/fp16.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* every a*b+c rounds twice, as in ggml's reference build */
#endif

#define GROUP_EPS 1e-15f /* a sub-block whose largest magnitude is below this is all zeros */

static int round_even(float v)
{
    const float t = v + 12582912.0f; /* 1.5 * 2^23: the rounded value lands in the low mantissa bits */
    int32_t bits;
    memcpy(&bits, &t, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The first value of largest magnitude (with its sign) and that magnitude. */
static float signed_amax(const float *x, int n, float *amax_out)
{
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            vmax = x[i];
        }
    }
    *amax_out = amax;
    return vmax;
}

/*
 * Symmetric fit with weights x^2 (ggml's make_qx_quants, rmse_type 1, no importance weights): quants
 * L in [0, 2 nmax - 1] (stored + nmax) and the returned scale minimise sum x^2 (x - scale (L - nmax))^2 over 19
 * candidate inverse scales -(nmax + 0.1 k) / max, k = -9..9.
 */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    const float vmax = signed_amax(x, n, &amax);
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / vmax;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = clampi(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / vmax;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = clampi(round_even(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(round_even(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/*
 * Symmetric fit for Q3_K (ggml's make_q3_quants with do_rmse): start from -nmax / max, then up to 5 passes of
 * coordinate descent that move one quant at a time when that improves the weighted (x^2) least-squares fit.
 * L in [0, 2 nmax - 1] (stored + nmax).
 */
static float fit_q3(int n, int nmax, const float *x, int8_t *L)
{
    float amax;
    const float vmax = signed_amax(x, n, &amax);
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)-nmax / vmax;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = clampi(round_even(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                const int nl = clampi(round_even(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/*
 * Affine fit x ~ scale * L - the_min with L in [0, nmax] (ggml's make_qkx2_quants): start from the range
 * (min clamped to <= 0), then try nstep + 1 candidate inverse scales (rmin + rdelta k + nmax) / (max - min), each
 * followed by a weighted least-squares solve for scale and min, keeping the one of least weighted error (absolute
 * with use_mad, squared otherwise). Returns scale; *the_min = -min >= 0.
 */
static float fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                        uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(round_even(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = clampi(round_even(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += weights[i] * diff;
            }
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Packs 256 2-bit quants: element 128 h + 32 k + l into bits 2k of qs[32 h + l] (Q2_K and Q3_K). */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *e = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)(e[0] | e[32] << 2 | e[64] << 4 | e[96] << 6);
        }
}

/* ---- Q2_K ---- */

void zl_q2_K_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q2_K *y = vy;
    uint8_t L[ZL_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_affine(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)round_even(iscale * scales[j]);
            y[b].d = zl_fp32_to_fp16(max_scale / 15.0f);
        } else {
            memset(y[b].scales, 0, sizeof y[b].scales);
            y[b].d = zl_fp32_to_fp16(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)(y[b].scales[j] | round_even(iscale * mins[j]) << 4);
            y[b].dmin = zl_fp32_to_fp16(max_min / 15.0f);
        } else {
            y[b].dmin = zl_fp32_to_fp16(0.0f);
        }
        const float d_all = zl_fp16_to_fp32(y[b].d), dmin_all = zl_fp16_to_fp32(y[b].dmin);
        for (int j = 0; j < 16; j++) {
            const float d = d_all * (float)(y[b].scales[j] & 0x0f);
            if (d == 0.0f) continue; /* keep the fit's quants, as ggml does */
            const float dm = dmin_all * (float)(y[b].scales[j] >> 4);
            for (int i = 0; i < 16; i++) L[16 * j + i] = (uint8_t)clampi(round_even((x[16 * j + i] + dm) / d), 0, 3);
        }
        pack_2bit(L, y[b].qs);
    }
}

/* ---- Q3_K ---- */

void zl_q3_K_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q3_K *y = vy;
    int8_t L[ZL_QK_K];
    float scales[16];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[b].scales, 0, sizeof y[b].scales);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                /* 6-bit signed scale stored + 32: low nibble in byte j (j < 8) or the high nibble of byte j - 8,
                 * top 2 bits at bit 2 (j / 4) of byte 8 + j % 4 */
                const int l = clampi((int8_t)round_even(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    y[b].scales[j] = (uint8_t)(l & 0x0f);
                else
                    y[b].scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                y[b].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[b].d = zl_fp32_to_fp16(1.0f / iscale);
        } else {
            y[b].d = zl_fp32_to_fp16(0.0f);
        }
        const float d_all = zl_fp16_to_fp32(y[b].d);
        for (int j = 0; j < 16; j++) {
            const int lo = j < 8 ? y[b].scales[j] & 0x0f : y[b].scales[j - 8] >> 4;
            const int sc = (lo | ((y[b].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
            const float d = d_all * (float)sc;
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clampi(round_even(x[16 * j + i] / d), -4, 3) + 4);
        }
        /* bit 2 of each quant goes to hmask: element j at bit j / 32 of hmask[j % 32] */
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        uint8_t low[ZL_QK_K];
        for (int j = 0; j < ZL_QK_K; j++) {
            int l = L[j];
            if (l > 3) {
                y[b].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                l -= 4;
            }
            low[j] = (uint8_t)l;
        }
        pack_2bit(low, y[b].qs);
    }
}

/* ---- Q4_K and Q5_K ---- */

/* Fits the 8 sub-blocks of 32 of one super-block with nmax levels and stores the 6-bit scales and minimums,
 * d and dmin; leaves the requantized quants in L. */
static void q45_fit_block(const float *x, int nmax, float rmin, int nstep, uint8_t *scales_out, uint16_t *d_out,
                          uint16_t *dmin_out, uint8_t L[ZL_QK_K])
{
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_affine(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)round_even(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)round_even(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0x0f) | (lm & 0x0f) << 4);
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = zl_fp32_to_fp16(max_scale / 63.0f);
    *dmin_out = zl_fp32_to_fp16(max_min / 63.0f);
    const float d_all = zl_fp16_to_fp32(*d_out), dmin_all = zl_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        if (j < 4) {
            sc = scales_out[j] & 63;
            m = scales_out[j + 4] & 63;
        } else {
            sc = (scales_out[j + 4] & 0x0f) | (scales_out[j - 4] >> 6) << 4;
            m = (scales_out[j + 4] >> 4) | (scales_out[j] >> 6) << 4;
        }
        const float d = d_all * (float)sc;
        if (d == 0.0f) continue;
        const float dm = dmin_all * (float)m;
        for (int i = 0; i < 32; i++) L[32 * j + i] = (uint8_t)clampi(round_even((x[32 * j + i] + dm) / d), 0, nmax);
    }
}

void zl_q4_K_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q4_K *y = vy;
    uint8_t L[ZL_QK_K];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        q45_fit_block(x, 15, -1.0f, 20, y[b].scales, &y[b].d, &y[b].dmin, L);
        for (int h = 0; h < 4; h++)
            for (int l = 0; l < 32; l++) y[b].qs[32 * h + l] = (uint8_t)(L[64 * h + l] | L[64 * h + 32 + l] << 4);
    }
}

void zl_q5_K_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q5_K *y = vy;
    uint8_t L[ZL_QK_K];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        q45_fit_block(x, 31, -0.5f, 15, y[b].scales, &y[b].d, &y[b].dmin, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int h = 0; h < 4; h++)
            for (int l = 0; l < 32; l++) {
                const int lo = L[64 * h + l], hi = L[64 * h + 32 + l];
                y[b].qs[32 * h + l] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
                y[b].qh[l] |= (uint8_t)((lo >> 4) << (2 * h) | (hi >> 4) << (2 * h + 1));
            }
    }
}

/* ---- Q6_K ---- */

void zl_q6_K_from_float_ref(const float *x, void *vy, int64_t n)
{
    zl_block_q6_K *y = vy;
    int8_t L[ZL_QK_K];
    float scales[16];
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        float max_scale = 0.0f, max_abs = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs < GROUP_EPS) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[b].d = zl_fp32_to_fp16(1.0f / iscale);
        for (int j = 0; j < 16; j++) {
            const int v = round_even(iscale * scales[j]);
            y[b].scales[j] = (int8_t)(v < 127 ? v : 127);
        }
        const float d_all = zl_fp16_to_fp32(y[b].d);
        for (int j = 0; j < 16; j++) {
            const float d = d_all * (float)y[b].scales[j];
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++) L[16 * j + i] = (int8_t)(clampi(round_even(x[16 * j + i] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *e = L + 128 * h + l;
                y[b].ql[64 * h + l] = (uint8_t)((e[0] & 0x0f) | (e[64] & 0x0f) << 4);
                y[b].ql[64 * h + 32 + l] = (uint8_t)((e[32] & 0x0f) | (e[96] & 0x0f) << 4);
                y[b].qh[32 * h + l] = (uint8_t)(e[0] >> 4 | (e[32] >> 4) << 2 | (e[64] >> 4) << 4 | (e[96] >> 4) << 6);
            }
    }
}
