/*
 * quant_avx2.c - AVX2 + FMA + F16C versions of the hot kernels of quant_ref.c.
 *
 * Compiled with -mavx2 -mfma -mf16c (the Makefile does this for *_avx2.c); dtype.c calls these only after
 * checking the CPU has all three. Each one equals its _ref twin up to the order float partial sums are added;
 * the activation quantizers are bit-identical to theirs. Lane structure follows ggml's AVX2 kernels (8 float
 * lanes, each holding the integer sums of 4 adjacent byte products, scaled and accumulated with FMA per block;
 * float dots in 4 x 8 accumulators with a double tail), which keeps our sums in llama.cpp's order on x86.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "core/fp16.h"

/* One half -> float with F16C (the portable zl_fp16_to_fp32 branches; this is on every block's path). */
static inline float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* Sum of the 8 lanes, in the pairing ggml uses: (hi128 + lo128), then 2 + 2, then 1 + 1. */
static inline float hsum8(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* Sum of 4 accumulators of 8 floats: (a0 + a2) + (a1 + a3), then 128-bit halves, then two horizontal adds. */
static inline float reduce4x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    const __m256 v = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

/* 16 bytes of packed nibbles -> 32 bytes in [0, 15]: low nibbles (elements 0..15), then high (16..31). */
static inline __m256i unpack_nibbles(const uint8_t *p)
{
    const __m128i b = _mm_loadu_si128((const __m128i *)p);
    const __m256i both = _mm256_insertf128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* u: bytes in [0, 255] (unsigned), s: signed bytes; 8 lanes of sum of 4 adjacent products, as floats. */
static inline __m256 dot_u8_s8(__m256i u, __m256i s)
{
    const __m256i pairs = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/* Both signed: move x's sign onto y so the unsigned x signed multiply applies. */
static inline __m256 dot_s8_s8(__m256i x, __m256i y)
{
    return dot_u8_s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* ---- float dots ---- */

void zl_f32_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    double sum = reduce4x8(a0, a1, a2, a3);
    for (; i < n; i++) sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

void zl_f16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), a3);
    }
    double sum = reduce4x8(a0, a1, a2, a3);
    for (; i < n; i++) sum += (double)(zl_fp16_to_fp32(x[i]) * zl_fp16_to_fp32(y[i]));
    *s = (float)sum;
}

void zl_f16_from_float_avx2(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) y[i] = zl_fp32_to_fp16(x[i]);
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

void zl_bf16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(x + i + 16), load_bf16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(x + i + 24), load_bf16x8(y + i + 24), a3);
    }
    double sum = reduce4x8(a0, a1, a2, a3);
    for (; i < n; i++) sum += (double)(zl_bf16_to_fp32(x[i]) * zl_bf16_to_fp32(y[i]));
    *s = (float)sum;
}

/* ---- quantized dots ---- */

void zl_q4_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const __m256 d = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256i qx = _mm256_sub_epi8(unpack_nibbles(x[b].qs), _mm256_set1_epi8(8));
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(d, dot_s8_s8(qx, qy), acc);
    }
    *s = hsum8(acc);
}

void zl_q4_1_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f; /* sum of m_x * s_y over blocks */
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        mins += h2f(x[b].m) * h2f(y[b].s);
        const __m256 d = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256i qx = unpack_nibbles(x[b].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(d, dot_u8_s8(qx, qy), acc);
    }
    *s = hsum8(acc) + mins;
}

void zl_q8_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q8_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const __m256 d = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(d, dot_s8_s8(qx, qy), acc);
    }
    *s = hsum8(acc);
}

/* ---- activation quantizers (bit-identical to the _act_ref versions) ---- */

/* Quantizes one block of 32 floats to q = round-half-even(x * 127/amax); returns d = amax/127 and the 32 int32
 * quants in four vectors (elements 0-7, 8-15, 16-23, 24-31). */
static inline float quantize_block_act(const float *x, __m256i q[4])
{
    __m256 v[4];
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_extractf128_ps(amax, 1), _mm256_castps256_ps128(amax));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax_s = _mm_cvtss_f32(m);
    const __m256 id = _mm256_set1_ps(amax_s != 0.0f ? 127.0f / amax_s : 0.0f);
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvtps_epi32(
            _mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return amax_s / 127.0f;
}

/* Packs four vectors of 8 int32 (each in [-127, 127]) into 32 int8 in element order. */
static inline void store_q8(int8_t *dst, const __m256i q[4])
{
    const __m256i a = _mm256_packs_epi32(q[0], q[1]); /* 0-3 8-11 | 4-7 12-15 */
    const __m256i b = _mm256_packs_epi32(q[2], q[3]); /* 16-19 24-27 | 20-23 28-31 */
    const __m256i c = _mm256_packs_epi16(a, b);       /* 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31 */
    const __m256i r = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, r);
}

static inline int hsum_i32x8(__m256i v)
{
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

void zl_q8_0_from_float_act_avx2(const float *x, void *vy, int64_t n)
{
    zl_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        __m256i q[4];
        y[b].d = zl_fp32_to_fp16(quantize_block_act(x, q));
        store_q8(y[b].qs, q);
    }
}

void zl_q8_1_from_float_act_avx2(const float *x, void *vy, int64_t n)
{
    zl_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++, x += ZL_QK) {
        __m256i q[4];
        const float d = quantize_block_act(x, q);
        const int isum = hsum_i32x8(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        y[b].d = zl_fp32_to_fp16(d);
        y[b].s = zl_fp32_to_fp16((float)isum * d);
        store_q8(y[b].qs, q);
    }
}

#endif
