/*
 * quant_neon.c - AArch64 NEON versions of the hot kernels of quant_ref.c and quant_k_ref.c.
 *
 * Compiled with -march=armv8.2-a+dotprod (the Makefile does this for *_neon.c on aarch64 targets); the body is
 * empty elsewhere. dtype.c picks one of two sets once at start-up: the _neon_dp kernels use the SDOT instruction
 * (vdotq_s32) and are only called when the kernel reports it (getauxval(AT_HWCAP) & HWCAP_ASIMDDP); the _neon
 * kernels use plain ARMv8.0 Advanced SIMD (widening multiplies and pairwise adds), for cores without it.
 *
 * Arithmetic follows ggml's ARM NEON kernels (what llama.cpp runs on the same machine), not its x86 ones:
 *   - float dots: 4 accumulators of 4 lanes (16 floats per step) with fused multiply-adds, reduced as
 *     (a0 + a2) + (a1 + a3) and then across lanes by vaddvq_f32; tinyBLAS (2+ tokens, F32 only on ARM without
 *     FP16 vector arithmetic) keeps one accumulator of 4 lanes.
 *   - 32-value quant blocks: blocks are taken in pairs, each pair member in its own float accumulator of 4 lanes;
 *     a block's integer products land in 4 int32 lanes and are converted to float lane by lane, so the lane
 *     grouping matters: with SDOT lane i holds bytes 4i..4i+3 of each 16-byte half, and ggml's plain-NEON
 *     replacement for it (vmull_s8 + vpaddlq_s16) puts bytes 2i, 2i+1, 8+2i, 9+2i in lane i; each set copies its
 *     own. ggml's C is built with GCC's default contraction, so its `acc + v * s` (vmlaq_n_f32) and scalar
 *     `sum += a * b` become fused multiply-adds; they are written as fmas here.
 *   - activation quantizers (Q8_0, Q8_1): d = amax / 127, q = round-half-even(x * (1 / d)). ggml's x86 kernels
 *     multiply by 127 / amax instead; the two differ in rare last-step roundings, so ARM activations can differ
 *     from x86 ones by one step in a few values (both are llama.cpp's behaviour on the respective machine).
 *   - K-quants (Q8_K activations, which ggml quantizes with its reference quantizer on ARM too): the integer sums
 *     of a super-block are exact in any order; only the few float steps per super-block follow ggml's NEON code.
 *
 * All kernels are pure functions of their arguments, callable from any thread.
 */
#include "backend/cpu/quant.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "core/fp16.h"

#define NEON_INLINE static inline __attribute__((always_inline))

/* acc + the products of a and b in 4 int32 lanes: with SDOT (dp) lane i sums bytes 4i..4i+3; without it lane i
 * sums bytes 2i, 2i+1, 8+2i, 9+2i (ggml's fallback grouping). The lane total is the same either way. */
NEON_INLINE int32x4_t idot(int32x4_t acc, int8x16_t a, int8x16_t b, const int dp)
{
    if (dp) return vdotq_s32(acc, a, b);
    const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t p1 = vmull_s8(vget_high_s8(a), vget_high_s8(b));
    return vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}

/* Exact integer dot of 16 byte pairs. */
NEON_INLINE int32_t idot16(int8x16_t a, int8x16_t b, const int dp)
{
    return vaddvq_s32(idot(vdupq_n_s32(0), a, b, dp));
}

/* ---- float dots ---- */

void zl_f32_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a2), vaddq_f32(a1, a3)));
    for (; i < n; i++) sum = fmaf(x[i], y[i], sum); /* ggml's float leftover loop, contracted */
    *s = sum;
}

void zl_f32_vec_dot_gemm_neon(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n; i += 4) acc = vfmaq_f32(acc, vld1q_f32(y + i), vld1q_f32(x + i));
    *s = vaddvq_f32(acc);
}

NEON_INLINE float32x4_t load_f16x4(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

void zl_f16_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, load_f16x4(x + i), load_f16x4(y + i));
        a1 = vfmaq_f32(a1, load_f16x4(x + i + 4), load_f16x4(y + i + 4));
        a2 = vfmaq_f32(a2, load_f16x4(x + i + 8), load_f16x4(y + i + 8));
        a3 = vfmaq_f32(a3, load_f16x4(x + i + 12), load_f16x4(y + i + 12));
    }
    double sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a2), vaddq_f32(a1, a3)));
    for (; i < n; i++) sum += (double)(zl_fp16_to_fp32(x[i]) * zl_fp16_to_fp32(y[i]));
    *s = (float)sum;
}

/* ---- activation quantizers ---- */

/* One block of 32: d = amax / 127 and the codes; returns the sum of the codes. */
NEON_INLINE int32_t quantize_block_q8(const float *x, float *d_out, int8_t *qs)
{
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; j++) {
        v[j] = vld1q_f32(x + 4 * j);
        amax = vmaxq_f32(amax, vabsq_f32(v[j]));
    }
    const float d = vmaxvq_f32(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int32x4_t sum = vdupq_n_s32(0);
    for (int j = 0; j < 8; j += 2) {
        const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
        const int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(v[j + 1], id));
        sum = vaddq_s32(sum, vaddq_s32(q0, q1));
        const int16x8_t q16 = vcombine_s16(vmovn_s32(q0), vmovn_s32(q1)); /* |q| <= 127: narrowing is exact */
        vst1_s8(qs + 4 * j, vmovn_s16(q16));
    }
    *d_out = d;
    return vaddvq_s32(sum);
}

void zl_q8_0_from_float_act_neon(const float *x, void *vy, int64_t n)
{
    zl_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        float d;
        quantize_block_q8(x + b * ZL_QK, &d, y[b].qs);
        y[b].d = zl_fp32_to_fp16(d);
    }
}

void zl_q8_1_from_float_act_neon(const float *x, void *vy, int64_t n)
{
    zl_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        float d;
        const int32_t sum = quantize_block_q8(x + b * ZL_QK, &d, y[b].qs);
        y[b].d = zl_fp32_to_fp16(d);
        y[b].s = zl_fp32_to_fp16(d * (float)sum);
    }
}

/* ---- 32-value blocks ---- */

/* 16 bytes of nibbles -> low nibbles (elements 0..15) and high nibbles (16..31), as bytes 0..15. */
NEON_INLINE void unpack_nibbles(const uint8_t *p, int8x16_t *lo, int8x16_t *hi)
{
    const uint8x16_t b = vld1q_u8(p);
    *lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0f)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
}

/* Bit j of the 32-bit word qh, for j = 0..31, as bytes 0 or 0x10: elements 0..15 in *lo, 16..31 in *hi. */
NEON_INLINE void fifth_bits(const uint8_t *qh4, int8x16_t *lo, int8x16_t *hi)
{
    static const uint8_t k_bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
    uint32_t qh;
    memcpy(&qh, qh4, sizeof qh);
    const uint8x16_t bits = vld1q_u8(k_bit);
    const uint8x8_t b0 = vdup_n_u8((uint8_t)qh), b1 = vdup_n_u8((uint8_t)(qh >> 8));
    const uint8x8_t b2 = vdup_n_u8((uint8_t)(qh >> 16)), b3 = vdup_n_u8((uint8_t)(qh >> 24));
    const uint8x16_t l = vtstq_u8(vcombine_u8(b0, b1), bits), h = vtstq_u8(vcombine_u8(b2, b3), bits);
    *lo = vreinterpretq_s8_u8(vandq_u8(l, vdupq_n_u8(0x10)));
    *hi = vreinterpretq_s8_u8(vandq_u8(h, vdupq_n_u8(0x10)));
}

/* The weight block's signed codes (elements 0..15, 16..31) for each type. */
NEON_INLINE void codes_q4_0(const zl_block_q4_0 *b, int8x16_t *lo, int8x16_t *hi)
{
    unpack_nibbles(b->qs, lo, hi);
    *lo = vsubq_s8(*lo, vdupq_n_s8(8));
    *hi = vsubq_s8(*hi, vdupq_n_s8(8));
}

NEON_INLINE void codes_q5_0(const zl_block_q5_0 *b, int8x16_t *lo, int8x16_t *hi)
{
    int8x16_t hl, hh;
    unpack_nibbles(b->qs, lo, hi);
    fifth_bits(b->qh, &hl, &hh);
    *lo = vsubq_s8(vorrq_s8(*lo, hl), vdupq_n_s8(16));
    *hi = vsubq_s8(vorrq_s8(*hi, hh), vdupq_n_s8(16));
}

NEON_INLINE void codes_q5_1(const zl_block_q5_1 *b, int8x16_t *lo, int8x16_t *hi)
{
    int8x16_t hl, hh;
    unpack_nibbles(b->qs, lo, hi);
    fifth_bits(b->qh, &hl, &hh);
    *lo = vorrq_s8(*lo, hl);
    *hi = vorrq_s8(*hi, hh);
}

/* Lanes of one block's integer dot as floats: idot of the two halves (ggml: vdot(vdot(0, lo), hi) for Q4_x,
 * vdot(0, lo) + vdot(0, hi) for Q5_x / Q8_0; the lane sums are the same integers either way). */
NEON_INLINE float32x4_t block_lanes(int8x16_t wl, int8x16_t wh, const int8_t *q8, const int dp)
{
    return vcvtq_f32_s32(idot(idot(vdupq_n_s32(0), wl, vld1q_s8(q8), dp), wh, vld1q_s8(q8 + 16), dp));
}

/* Scalar integer dot of one 32-block for the odd last block. */
NEON_INLINE int32_t block_isum(int8x16_t wl, int8x16_t wh, const int8_t *q8, const int dp)
{
    return idot16(wl, vld1q_s8(q8), dp) + idot16(wh, vld1q_s8(q8 + 16), dp);
}

NEON_INLINE void q4_0_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q4_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    const int64_t nb = n / ZL_QK;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        int8x16_t l0, h0, l1, h1;
        codes_q4_0(&x[b], &l0, &h0);
        codes_q4_0(&x[b + 1], &l1, &h1);
        const float d0 = zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d);
        const float d1 = zl_fp16_to_fp32(x[b + 1].d) * zl_fp16_to_fp32(y[b + 1].d);
        acc0 = vfmaq_n_f32(acc0, block_lanes(l0, h0, y[b].qs, dp), d0);
        acc1 = vfmaq_n_f32(acc1, block_lanes(l1, h1, y[b + 1].qs, dp), d1);
    }
    float sum = vaddvq_f32(acc0) + vaddvq_f32(acc1);
    for (; b < nb; b++) {
        int8x16_t l, h;
        codes_q4_0(&x[b], &l, &h);
        const int32_t isum = block_isum(l, h, y[b].qs, dp);
        sum = fmaf((float)isum * zl_fp16_to_fp32(x[b].d), zl_fp16_to_fp32(y[b].d), sum);
    }
    *s = sum;
}

NEON_INLINE void q4_1_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q4_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    const int64_t nb = n / ZL_QK;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    float summs = 0.0f;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        /* ggml: summs += m0 * s0 + m1 * s1, the first product fused with the second */
        summs += fmaf(zl_fp16_to_fp32(x[b].m), zl_fp16_to_fp32(y[b].s),
                      zl_fp16_to_fp32(x[b + 1].m) * zl_fp16_to_fp32(y[b + 1].s));
        int8x16_t l0, h0, l1, h1;
        unpack_nibbles(x[b].qs, &l0, &h0);
        unpack_nibbles(x[b + 1].qs, &l1, &h1);
        const float d0 = zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d);
        const float d1 = zl_fp16_to_fp32(x[b + 1].d) * zl_fp16_to_fp32(y[b + 1].d);
        acc0 = vfmaq_n_f32(acc0, block_lanes(l0, h0, y[b].qs, dp), d0);
        acc1 = vfmaq_n_f32(acc1, block_lanes(l1, h1, y[b + 1].qs, dp), d1);
    }
    float sum = vaddvq_f32(acc0) + vaddvq_f32(acc1) + summs;
    for (; b < nb; b++) {
        int8x16_t l, h;
        unpack_nibbles(x[b].qs, &l, &h);
        const int32_t isum = block_isum(l, h, y[b].qs, dp);
        sum += fmaf(zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d), (float)isum,
                    zl_fp16_to_fp32(x[b].m) * zl_fp16_to_fp32(y[b].s));
    }
    *s = sum;
}

NEON_INLINE void q5_0_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q5_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    const int64_t nb = n / ZL_QK;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        int8x16_t l0, h0, l1, h1;
        codes_q5_0(&x[b], &l0, &h0);
        codes_q5_0(&x[b + 1], &l1, &h1);
        const float d0 = zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d);
        const float d1 = zl_fp16_to_fp32(x[b + 1].d) * zl_fp16_to_fp32(y[b + 1].d);
        acc0 = vfmaq_n_f32(acc0, block_lanes(l0, h0, y[b].qs, dp), d0);
        acc1 = vfmaq_n_f32(acc1, block_lanes(l1, h1, y[b + 1].qs, dp), d1);
    }
    float sum = vaddvq_f32(acc0) + vaddvq_f32(acc1);
    for (; b < nb; b++) {
        int8x16_t l, h;
        codes_q5_0(&x[b], &l, &h);
        const int32_t isum = block_isum(l, h, y[b].qs, dp);
        sum = fmaf(zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d), (float)isum, sum);
    }
    *s = sum;
}

NEON_INLINE void q5_1_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q5_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    const int64_t nb = n / ZL_QK;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    float summs0 = 0.0f, summs1 = 0.0f;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        summs0 = fmaf(zl_fp16_to_fp32(x[b].m), zl_fp16_to_fp32(y[b].s), summs0);
        summs1 = fmaf(zl_fp16_to_fp32(x[b + 1].m), zl_fp16_to_fp32(y[b + 1].s), summs1);
        int8x16_t l0, h0, l1, h1;
        codes_q5_1(&x[b], &l0, &h0);
        codes_q5_1(&x[b + 1], &l1, &h1);
        const float d0 = zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d);
        const float d1 = zl_fp16_to_fp32(x[b + 1].d) * zl_fp16_to_fp32(y[b + 1].d);
        acc0 = vfmaq_n_f32(acc0, block_lanes(l0, h0, y[b].qs, dp), d0);
        acc1 = vfmaq_n_f32(acc1, block_lanes(l1, h1, y[b + 1].qs, dp), d1);
    }
    float sum = vaddvq_f32(acc0) + vaddvq_f32(acc1) + summs0 + summs1;
    for (; b < nb; b++) {
        int8x16_t l, h;
        codes_q5_1(&x[b], &l, &h);
        const int32_t isum = block_isum(l, h, y[b].qs, dp);
        sum += fmaf(zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d), (float)isum,
                    zl_fp16_to_fp32(x[b].m) * zl_fp16_to_fp32(y[b].s));
    }
    *s = sum;
}

NEON_INLINE void q8_0_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q8_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    const int64_t nb = n / ZL_QK;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        const float d0 = zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d);
        const float d1 = zl_fp16_to_fp32(x[b + 1].d) * zl_fp16_to_fp32(y[b + 1].d);
        acc0 = vfmaq_n_f32(acc0, block_lanes(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs, dp), d0);
        acc1 = vfmaq_n_f32(acc1, block_lanes(vld1q_s8(x[b + 1].qs), vld1q_s8(x[b + 1].qs + 16), y[b + 1].qs, dp), d1);
    }
    float sum = vaddvq_f32(acc0) + vaddvq_f32(acc1);
    for (; b < nb; b++) {
        const int32_t isum = block_isum(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs, dp);
        sum = fmaf((float)isum, zl_fp16_to_fp32(x[b].d) * zl_fp16_to_fp32(y[b].d), sum);
    }
    *s = sum;
}

/* ---- K-quants: exact integer super-block sums, then ggml's NEON float steps ---- */

/* Q4_K / Q5_K: the 8 6-bit scales and minimums (the format's packing of 8 pairs into 12 bytes). */
static void k4_scales_mins(const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0x0f) | ((q[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

/* sum over sub-blocks s of mins[s] * (bsums[2s] + bsums[2s + 1]) */
static int32_t k4_min_sum(const uint8_t *m, const int16_t *bsums)
{
    int32_t r = 0;
    for (int s = 0; s < 8; s++) r += m[s] * (bsums[2 * s] + bsums[2 * s + 1]);
    return r;
}

/* Sum of scale[s] * (codes of sub-block s . q8) for the 8 32-value sub-blocks held in c[16] (16 bytes each). */
NEON_INLINE int32_t k4_scaled_sum(const int8x16_t *c, const int8_t *q8, const uint8_t *sc, const int dp)
{
    int32_t r = 0;
    for (int s = 0; s < 8; s++) {
        const int32x4_t p = idot(idot(vdupq_n_s32(0), c[2 * s], vld1q_s8(q8 + 32 * s), dp), c[2 * s + 1],
                                 vld1q_s8(q8 + 32 * s + 16), dp);
        r += vaddvq_s32(p) * sc[s];
    }
    return r;
}

NEON_INLINE void q4_K_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ZL_QK_K; i++) {
        const float d = y[i].d * zl_fp16_to_fp32(x[i].d);
        const float dmin = y[i].d * zl_fp16_to_fp32(x[i].dmin);
        uint8_t sc[8], m[8];
        k4_scales_mins(x[i].scales, sc, m);
        sum = fmaf(-dmin, (float)k4_min_sum(m, y[i].bsums), sum); /* ggml: sumf -= dmin * mins, contracted */
        int8x16_t c[16];
        for (int h = 0; h < 4; h++) { /* element 64h + l: low nibble of qs[32h + l]; 64h + 32 + l: high */
            const uint8x16_t b0 = vld1q_u8(x[i].qs + 32 * h), b1 = vld1q_u8(x[i].qs + 32 * h + 16);
            c[4 * h + 0] = vreinterpretq_s8_u8(vandq_u8(b0, vdupq_n_u8(0x0f)));
            c[4 * h + 1] = vreinterpretq_s8_u8(vandq_u8(b1, vdupq_n_u8(0x0f)));
            c[4 * h + 2] = vreinterpretq_s8_u8(vshrq_n_u8(b0, 4));
            c[4 * h + 3] = vreinterpretq_s8_u8(vshrq_n_u8(b1, 4));
        }
        sum = fmaf(d, (float)k4_scaled_sum(c, y[i].qs, sc, dp), sum);
    }
    *s = sum;
}

NEON_INLINE void q5_K_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q5_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ZL_QK_K; i++) {
        const float d = y[i].d * zl_fp16_to_fp32(x[i].d);
        const float dmin = y[i].d * zl_fp16_to_fp32(x[i].dmin);
        uint8_t sc[8], m[8];
        k4_scales_mins(x[i].scales, sc, m);
        const int32_t mins = k4_min_sum(m, y[i].bsums);
        uint8x16_t qh0 = vld1q_u8(x[i].qh), qh1 = vld1q_u8(x[i].qh + 16);
        const uint8x16_t one = vdupq_n_u8(1), two = vdupq_n_u8(2), m4 = vdupq_n_u8(0x0f);
        int8x16_t c[16];
        for (int h = 0; h < 4; h++) { /* fifth bits: bit 2h of qh[l] (low nibbles), bit 2h + 1 (high) */
            const uint8x16_t b0 = vld1q_u8(x[i].qs + 32 * h), b1 = vld1q_u8(x[i].qs + 32 * h + 16);
            c[4 * h + 0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b0, m4), vshlq_n_u8(vandq_u8(qh0, one), 4)));
            c[4 * h + 1] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b1, m4), vshlq_n_u8(vandq_u8(qh1, one), 4)));
            c[4 * h + 2] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b0, 4), vshlq_n_u8(vandq_u8(qh0, two), 3)));
            c[4 * h + 3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b1, 4), vshlq_n_u8(vandq_u8(qh1, two), 3)));
            qh0 = vshrq_n_u8(qh0, 2);
            qh1 = vshrq_n_u8(qh1, 2);
        }
        const int32_t isum = k4_scaled_sum(c, y[i].qs, sc, dp);
        sum += fmaf(d, (float)isum, -(dmin * (float)mins)); /* ggml: sumf += d * sumi - dmin * mins, contracted */
    }
    *s = sum;
}

NEON_INLINE void q6_K_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(3);
    for (int64_t i = 0; i < n / ZL_QK_K; i++) {
        int32_t isum_mins = 0; /* codes are stored + 32: subtract 32 * scale * bsum afterwards */
        for (int j = 0; j < 16; j++) isum_mins += x[i].scales[j] * y[i].bsums[j];
        int32_t isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *q8 = y[i].qs + 128 * h, *sc = x[i].scales + 8 * h;
            const uint8x16_t hb0 = vld1q_u8(qh), hb1 = vld1q_u8(qh + 16);
            const uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16), l2 = vld1q_u8(ql + 32), l3 = vld1q_u8(ql + 48);
            int8x16_t c[8]; /* element 128h + 32k + 16p + r: c[2k + p] byte r */
            c[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(hb0, m3), 4)));
            c[1] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(hb1, m3), 4)));
            c[2] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l2, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb0, 2), m3), 4)));
            c[3] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l3, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb1, 2), m3), 4)));
            c[4] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb0, 4), m3), 4)));
            c[5] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb1, 4), m3), 4)));
            c[6] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l2, 4), vshlq_n_u8(vshrq_n_u8(hb0, 6), 4)));
            c[7] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l3, 4), vshlq_n_u8(vshrq_n_u8(hb1, 6), 4)));
            for (int k = 0; k < 8; k++) isum += idot16(c[k], vld1q_s8(q8 + 16 * k), dp) * sc[k];
        }
        /* ggml: sum += d_all * y.d * (isum - 32 * isum_mins), contracted */
        sum = fmaf(zl_fp16_to_fp32(x[i].d) * y[i].d, (float)(isum - 32 * isum_mins), sum);
    }
    *s = sum;
}

NEON_INLINE void q2_K_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q2_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t i = 0; i < n / ZL_QK_K; i++) {
        const float d = y[i].d * zl_fp16_to_fp32(x[i].d);
        const float dmin = -y[i].d * zl_fp16_to_fp32(x[i].dmin);
        int32_t mins = 0;
        for (int j = 0; j < 16; j++) mins += (x[i].scales[j] >> 4) * y[i].bsums[j];
        sum = fmaf(dmin, (float)mins, sum);
        int32_t isum = 0;
        for (int h = 0; h < 2; h++) { /* element 128h + 32k + l: bits 2k..2k+1 of qs[32h + l] */
            const uint8x16_t b0 = vld1q_u8(x[i].qs + 32 * h), b1 = vld1q_u8(x[i].qs + 32 * h + 16);
            const int8_t *q8 = y[i].qs + 128 * h;
            const uint8_t *sc = x[i].scales + 8 * h;
            for (int k = 0; k < 4; k++) {
                const int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(b0, vdupq_n_s8((int8_t)(-2 * k))), m3));
                const int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(b1, vdupq_n_s8((int8_t)(-2 * k))), m3));
                isum += idot16(c0, vld1q_s8(q8 + 32 * k), dp) * (sc[2 * k] & 15);
                isum += idot16(c1, vld1q_s8(q8 + 32 * k + 16), dp) * (sc[2 * k + 1] & 15);
            }
        }
        sum = fmaf(d, (float)isum, sum);
    }
    *s = sum;
}

NEON_INLINE void q3_K_dot(int64_t n, float *s, const void *vx, const void *vy, const int dp)
{
    const zl_block_q3_K *x = vx;
    const zl_block_q8_K *y = vy;
    float sum = 0.0f;
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    for (int64_t i = 0; i < n / ZL_QK_K; i++) {
        const float d = y[i].d * zl_fp16_to_fp32(x[i].d);
        int sc[16]; /* signed 6-bit scales */
        for (int j = 0; j < 16; j++) {
            const int low = j < 8 ? x[i].scales[j] & 15 : x[i].scales[j - 8] >> 4;
            const int high = (x[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            sc[j] = (low | (high << 4)) - 32;
        }
        const uint8x16_t hm0 = vld1q_u8(x[i].hmask), hm1 = vld1q_u8(x[i].hmask + 16);
        int32_t isum = 0;
        for (int h = 0; h < 2; h++) { /* element 32k + l (k = 4h + kk): 2 bits as Q2_K, minus 4 when bit k clear */
            const uint8x16_t b0 = vld1q_u8(x[i].qs + 32 * h), b1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int kk = 0; kk < 4; kk++) {
                const int k = 4 * h + kk;
                const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * kk)), hs = vdupq_n_s8((int8_t)(-k));
                const uint8x16_t n0 = vshlq_n_u8(vbicq_u8(one, vshlq_u8(hm0, hs)), 2);
                const uint8x16_t n1 = vshlq_n_u8(vbicq_u8(one, vshlq_u8(hm1, hs)), 2);
                const int8x16_t c0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(b0, sh), m3)), vreinterpretq_s8_u8(n0));
                const int8x16_t c1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(b1, sh), m3)), vreinterpretq_s8_u8(n1));
                const int8_t *q8 = y[i].qs + 32 * k;
                isum += idot16(c0, vld1q_s8(q8), dp) * sc[2 * k];
                isum += idot16(c1, vld1q_s8(q8 + 16), dp) * sc[2 * k + 1];
            }
        }
        sum = fmaf(d, (float)isum, sum);
    }
    *s = sum;
}

/* The exported kernels: each body above instantiated with and without SDOT. */
#define NEON_PAIR(name)                                                                                        \
    void zl_##name##_vec_dot_neon_dp(int64_t n, float *s, const void *x, const void *y)                       \
    {                                                                                                          \
        name##_dot(n, s, x, y, 1);                                                                             \
    }                                                                                                          \
    void zl_##name##_vec_dot_neon(int64_t n, float *s, const void *x, const void *y)                          \
    {                                                                                                          \
        name##_dot(n, s, x, y, 0);                                                                             \
    }

NEON_PAIR(q4_0)
NEON_PAIR(q4_1)
NEON_PAIR(q5_0)
NEON_PAIR(q5_1)
NEON_PAIR(q8_0)
NEON_PAIR(q2_K)
NEON_PAIR(q3_K)
NEON_PAIR(q4_K)
NEON_PAIR(q5_K)
NEON_PAIR(q6_K)

#endif
