/*
 * quant_vnni.c - the 32-wide quantized dots (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with AVX-512 VNNI, bit-identical to
 * quant_avx2.c's.
 *
 * Compiled with AVX-512 F/DQ/BW/VL/VNNI flags (the Makefile does this for *_vnni.c); dtype.c calls these only
 * after checking the CPU has them and the OS saves ZMM state.
 *
 * Why the bits are the same: ggml's AVX2 dot (and so zl_*_vec_dot_avx2) sums, per 32-value block, the integer
 * products of bytes 4i..4i+3 into int32 lane i (maddubs + madd, no saturation for these ranges), converts the 8
 * lanes to float and accumulates them into one 8-lane float vector with acc = fma(dx * dy, lanes, acc), block by
 * block; the result is the horizontal sum of that vector (plus, for Q4_1 / Q5_1, the separately fused sum of
 * m_x * s_y). VPDPBUSD computes exactly those int32 lane sums (unsigned x signed bytes, groups of 4), and integer
 * sums are exact, so only the float steps must be kept: each (row, token) keeps its own 8 float lanes, fed one
 * fma per block in block order, with the same products dx * dy, and reduced with the same pairing. Where ggml
 * moves the weight's sign onto the activation (vpsignb: Q4_0, Q5_0, Q8_0), the same is done with a masked
 * negation, which wraps -(-128) to -128 exactly as vpsignb does, so even bytes the activation quantizer never
 * writes give the AVX2 kernels' results.
 *
 * What 512 bits buy:
 * - vec_dot4 (one weight row, 4 tokens): a zmm holds the same weight block twice, against two tokens' activation
 *   blocks; one VPDPBUSD, one conversion and one 16-lane fma serve two tokens, lanes 0-7 being token k's
 *   accumulator and 8-15 token k+1's. The 4 tokens' fp16 scales are converted together and multiplied by dx in
 *   one vector multiply (each lane the same single rounding as the scalar product).
 * - vec_dot (one token): a zmm holds two consecutive blocks for the integer part; their float lanes are then
 *   accumulated one block after the other (two 8-lane fmas), as the AVX2 kernel does.
 *
 * All functions are pure and callable from any thread.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/simd_x86.h" /* h2f, hsum8 */

static inline __m256 lo256(__m512 v)
{
    return _mm512_castps512_ps256(v);
}

static inline __m256 hi256(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline __m128i load128(const void *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

/* 32 bytes at a (low half) and 32 at b (high half). */
static inline __m512i load_pair(const void *a, const void *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1);
}

/* 128-bit lanes [lo nibbles, hi nibbles] of each half: a zmm of 16-byte nibble groups [p, p, q, q] becomes the 32
 * codes of p's block (elements 0-15, then 16-31) in the low half and of q's in the high half. */
static inline __m512i nibbles_of(__m512i groups)
{
    const __m512i shifted = _mm512_srlv_epi64(groups, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f));
}

/* One block's 16 bytes of nibbles -> its 32 codes in both 256-bit halves (for two tokens). */
static inline __m512i nibbles_dup(const uint8_t *qs)
{
    return nibbles_of(_mm512_broadcast_i32x4(load128(qs)));
}

/* Two blocks' nibbles -> block p's 32 codes in the low half, block q's in the high half. */
static inline __m512i nibbles_two(const uint8_t *p, const uint8_t *q)
{
    const __m512i both = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(load128(p)),
                                                                        load128(q), 1));
    return nibbles_of(_mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(1, 1, 0, 0)));
}

/* 16 bytes of nibbles -> 32 codes in [0, 15] (one block, 256 bits). */
static inline __m256i nibbles_one(const uint8_t *qs)
{
    const __m128i b = load128(qs);
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* y with x's sign moved onto it, as vpsignb(y, x) (where x is 0 the product is 0 either way). */
static inline __m512i sign_from(__m512i y, __mmask64 x_neg)
{
    return _mm512_mask_sub_epi8(y, x_neg, _mm512_setzero_si512(), y);
}

/* Signed x signed bytes as ggml multiplies them: |x| (unsigned) times y signed by x; int32 lanes of 4. */
static inline __m512i dot_s8_s8_x2(__m512i x, __m512i y)
{
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), sign_from(y, _mm512_movepi8_mask(x)));
}

static inline __m256i dot_s8_s8_x1(__m256i x, __m256i y)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* acc = fma(d_lo, lanes_lo, acc) then fma(d_hi, lanes_hi, acc): two consecutive blocks of one token, in order. */
static inline __m256 fma_two_blocks(float d_lo, float d_hi, __m512i sums, __m256 acc)
{
    const __m512 f = _mm512_cvtepi32_ps(sums);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d_lo), lo256(f), acc);
    return _mm256_fmadd_ps(_mm256_set1_ps(d_hi), hi256(f), acc);
}

/* ---- one token ---- */

void zl_q4_0_vec_dot_vnni(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    const int64_t nb = n / ZL_QK;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512i qx = _mm512_sub_epi8(nibbles_two(x[b].qs, x[b + 1].qs), _mm512_set1_epi8(8));
        const __m512i sums = dot_s8_s8_x2(qx, load_pair(y[b].qs, y[b + 1].qs));
        acc = fma_two_blocks(h2f(x[b].d) * h2f(y[b].d), h2f(x[b + 1].d) * h2f(y[b + 1].d), sums, acc);
    }
    if (b < nb) {
        const __m256i qx = _mm256_sub_epi8(nibbles_one(x[b].qs), _mm256_set1_epi8(8));
        const __m256 f = _mm256_cvtepi32_ps(dot_s8_s8_x1(qx, load256(y[b].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), f, acc);
    }
    *s = hsum8(acc);
}

void zl_q4_1_vec_dot_vnni(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    const int64_t nb = n / ZL_QK;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f; /* sum of m_x * s_y, fused, block by block */
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        mins = fmaf(h2f(x[b].m), h2f(y[b].s), mins);
        mins = fmaf(h2f(x[b + 1].m), h2f(y[b + 1].s), mins);
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nibbles_two(x[b].qs, x[b + 1].qs),
                                                 load_pair(y[b].qs, y[b + 1].qs));
        acc = fma_two_blocks(h2f(x[b].d) * h2f(y[b].d), h2f(x[b + 1].d) * h2f(y[b + 1].d), sums, acc);
    }
    if (b < nb) {
        mins = fmaf(h2f(x[b].m), h2f(y[b].s), mins);
        const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles_one(x[b].qs), load256(y[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(sums), acc);
    }
    *s = hsum8(acc) + mins;
}

void zl_q8_0_vec_dot_vnni(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q8_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    const int64_t nb = n / ZL_QK;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512i sums = dot_s8_s8_x2(load_pair(x[b].qs, x[b + 1].qs), load_pair(y[b].qs, y[b + 1].qs));
        acc = fma_two_blocks(h2f(x[b].d) * h2f(y[b].d), h2f(x[b + 1].d) * h2f(y[b + 1].d), sums, acc);
    }
    if (b < nb) {
        const __m256 f = _mm256_cvtepi32_ps(dot_s8_s8_x1(load256(x[b].qs), load256(y[b].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), f, acc);
    }
    *s = hsum8(acc);
}

/* Q5's fifth bits: qh of block p in mask bits 0-31, of block q in bits 32-63 (bit j = element j of its block). */
static inline __mmask64 fifth_bits(const uint8_t *p, const uint8_t *q)
{
    uint32_t a, b;
    memcpy(&a, p, sizeof a);
    memcpy(&b, q, sizeof b);
    return (__mmask64)a | (__mmask64)b << 32;
}

/* Q5_0 codes minus 16 as signed bytes: the nibble, less 16 where the fifth bit is clear. */
static inline __m512i q5_0_codes(__m512i nib, __mmask64 bits)
{
    return _mm512_mask_sub_epi8(nib, ~bits, nib, _mm512_set1_epi8(16));
}

/* Q5_1 codes: the nibble, plus 16 where the fifth bit is set. */
static inline __m512i q5_1_codes(__m512i nib, __mmask64 bits)
{
    return _mm512_mask_add_epi8(nib, bits, nib, _mm512_set1_epi8(16));
}

void zl_q5_0_vec_dot_vnni(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    const int64_t nb = n / ZL_QK;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512i qx = q5_0_codes(nibbles_two(x[b].qs, x[b + 1].qs), fifth_bits(x[b].qh, x[b + 1].qh));
        const __m512i sums = dot_s8_s8_x2(qx, load_pair(y[b].qs, y[b + 1].qs));
        acc = fma_two_blocks(h2f(x[b].d) * h2f(y[b].d), h2f(x[b + 1].d) * h2f(y[b + 1].d), sums, acc);
    }
    if (b < nb) {
        const __m256i nib = nibbles_one(x[b].qs);
        const __mmask32 clear = (__mmask32)~fifth_bits(x[b].qh, x[b].qh);
        const __m256i qx = _mm256_mask_sub_epi8(nib, clear, nib, _mm256_set1_epi8(16));
        const __m256 f = _mm256_cvtepi32_ps(dot_s8_s8_x1(qx, load256(y[b].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), f, acc);
    }
    *s = hsum8(acc);
}

void zl_q5_1_vec_dot_vnni(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    const int64_t nb = n / ZL_QK;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        mins = fmaf(h2f(x[b].m), h2f(y[b].s), mins);
        mins = fmaf(h2f(x[b + 1].m), h2f(y[b + 1].s), mins);
        const __m512i qx = q5_1_codes(nibbles_two(x[b].qs, x[b + 1].qs), fifth_bits(x[b].qh, x[b + 1].qh));
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, load_pair(y[b].qs, y[b + 1].qs));
        acc = fma_two_blocks(h2f(x[b].d) * h2f(y[b].d), h2f(x[b + 1].d) * h2f(y[b + 1].d), sums, acc);
    }
    if (b < nb) {
        mins = fmaf(h2f(x[b].m), h2f(y[b].s), mins);
        const __m256i nib = nibbles_one(x[b].qs);
        const __mmask32 set = (__mmask32)fifth_bits(x[b].qh, x[b].qh);
        const __m256i qx = _mm256_mask_add_epi8(nib, set, nib, _mm256_set1_epi8(16));
        const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qx, load256(y[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(sums), acc);
    }
    *s = hsum8(acc) + mins;
}

/* ---- four tokens per weight row ----
 * Token k's activation row starts y_stride bytes after token k-1's. Per token the operations are the one-token
 * kernels' (the same int32 lanes, the same dx * dy, one fma per block in block order, the same reduction). */

#define YROW(k) ((const void *)((const char *)vy + (size_t)(k) * y_stride))

/* The fp16 words at the start of block b of the 4 tokens' rows, 4 bytes each (Q8_0: d and two code bytes, the
 * latter unused; Q8_1: d, s), as floats: lanes 2k = d of token k, 2k + 1 = s of token k (Q8_1). */
static inline __m256 head_words4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3)
{
    uint32_t w0, w1, w2, w3;
    memcpy(&w0, p0, 4);
    memcpy(&w1, p1, 4);
    memcpy(&w2, p2, 4);
    memcpy(&w3, p3, 4);
    return _mm256_cvtph_ps(_mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3));
}

/* An fp16 value as 8 float lanes (vpbroadcastw + vcvtph2ps: no scalar round trip). */
static inline __m256 h2f_x8(uint16_t h)
{
    return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
}

/* [lane a x 8 | lane b x 8] of v. */
static inline __m512 spread2(__m256 v, int a, int b)
{
    const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(a)), _mm256_set1_epi32(b), 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(v));
}

static inline void store4(float *s, size_t s_stride, __m512 acc01, __m512 acc23)
{
    s[0] = hsum8(lo256(acc01));
    s[s_stride] = hsum8(hi256(acc01));
    s[2 * s_stride] = hsum8(lo256(acc23));
    s[3 * s_stride] = hsum8(hi256(acc23));
}

/* Shared body of the 4-token kernels. Per block: CODES(b) sets qx (the weight block's codes, duplicated in both
 * halves), SIGNED says whether they are signed (sign moved onto the activations) or unsigned; WITH_MINS and
 * MINS_STEP add the Q4_1/Q5_1 minimum terms; XT / YT are the weight and activation block types. */
#define DOT4_BODY(XT, YT, CODES, SIGNED, WITH_MINS, MINS_STEP)                                                         \
    const XT *x = vx;                                                                                                  \
    const YT *y0 = YROW(0), *y1 = YROW(1), *y2 = YROW(2), *y3 = YROW(3);                                               \
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;                                                                 \
    __m256 mins = _mm256_setzero_ps(); /* lanes 2k + 1: token k's fused sum of m_x * s_y */                            \
    for (int64_t b = 0; b < n / ZL_QK; b++) {                                                                          \
        __m512i qx = CODES(b);                                                                                         \
        __mmask64 neg = 0;                                                                                             \
        if (SIGNED) {                                                                                                  \
            neg = _mm512_movepi8_mask(qx);                                                                             \
            qx = _mm512_abs_epi8(qx);                                                                                  \
        }                                                                                                              \
        const __m256 hw = head_words4((const uint8_t *)&y0[b], (const uint8_t *)&y1[b], (const uint8_t *)&y2[b],       \
                                      (const uint8_t *)&y3[b]);                                                        \
        MINS_STEP(b)                                                                                                   \
        const __m256 d = _mm256_mul_ps(h2f_x8(x[b].d), hw); /* lanes 2k: dx * dy_k */                                  \
        __m512i a01 = load_pair(y0[b].qs, y1[b].qs), a23 = load_pair(y2[b].qs, y3[b].qs);                              \
        if (SIGNED) {                                                                                                  \
            a01 = sign_from(a01, neg);                                                                                 \
            a23 = sign_from(a23, neg);                                                                                 \
        }                                                                                                              \
        const __m512i s01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, a01);                                      \
        const __m512i s23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, a23);                                      \
        acc01 = _mm512_fmadd_ps(spread2(d, 0, 2), _mm512_cvtepi32_ps(s01), acc01);                                     \
        acc23 = _mm512_fmadd_ps(spread2(d, 4, 6), _mm512_cvtepi32_ps(s23), acc23);                                     \
    }                                                                                                                  \
    store4(s, s_stride, acc01, acc23);                                                                                 \
    if (WITH_MINS) {                                                                                                   \
        float m[8];                                                                                                    \
        _mm256_storeu_ps(m, mins);                                                                                     \
        for (int k = 0; k < 4; k++) s[k * s_stride] += m[2 * k + 1];                                                   \
    }

/* Q4_1 / Q5_1: mins_k = fma(m_x, s_y of token k, mins_k), in lanes 2k + 1 (where head_words4 put s_y). */
#define MINS_FMA(b) mins = _mm256_mask3_fmadd_ps(h2f_x8(x[b].m), hw, mins, 0xaa);
#define NO_MINS(b)

#define Q4_0_CODES(b) _mm512_sub_epi8(nibbles_dup(x[b].qs), _mm512_set1_epi8(8))
#define Q4_1_CODES(b) nibbles_dup(x[b].qs)
#define Q8_0_CODES(b) _mm512_broadcast_i64x4(load256(x[b].qs))
#define Q5_0_CODES(b) q5_0_codes(nibbles_dup(x[b].qs), fifth_bits(x[b].qh, x[b].qh))
#define Q5_1_CODES(b) q5_1_codes(nibbles_dup(x[b].qs), fifth_bits(x[b].qh, x[b].qh))

void zl_q4_0_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    DOT4_BODY(zl_block_q4_0, zl_block_q8_0, Q4_0_CODES, 1, 0, NO_MINS)
}

void zl_q4_1_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    DOT4_BODY(zl_block_q4_1, zl_block_q8_1, Q4_1_CODES, 0, 1, MINS_FMA)
}

void zl_q8_0_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    DOT4_BODY(zl_block_q8_0, zl_block_q8_0, Q8_0_CODES, 1, 0, NO_MINS)
}

void zl_q5_0_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    DOT4_BODY(zl_block_q5_0, zl_block_q8_0, Q5_0_CODES, 1, 0, NO_MINS)
}

void zl_q5_1_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    DOT4_BODY(zl_block_q5_1, zl_block_q8_1, Q5_1_CODES, 0, 1, MINS_FMA)
}

#undef Q4_0_CODES
#undef Q4_1_CODES
#undef Q8_0_CODES
#undef Q5_0_CODES
#undef Q5_1_CODES
#undef MINS_FMA
#undef NO_MINS
#undef DOT4_BODY
#undef YROW

#endif
