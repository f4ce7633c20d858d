/*
 * quant_avx2.c - AVX2 + FMA + F16C versions of the hot kernels of quant_ref.c and quant_k_ref.c.
 *
 * Compiled with -mavx2 -mfma -mf16c (the Makefile does this for *_avx2.c); dtype.c calls these only after
 * checking the CPU has all three. Each one equals its _ref twin up to the order float partial sums are added;
 * the activation quantizers are bit-identical to theirs. Lane structure follows ggml's AVX2 kernels (8 float
 * lanes, each holding the integer sums of 4 adjacent byte products, scaled and accumulated with FMA per block;
 * float dots in 4 x 8 accumulators with a double tail), which keeps our sums in llama.cpp's order on x86.
 * Where ggml's C source writes `sum += a * b` in a file built with -march=native, GCC contracts it to one fused
 * multiply-add (seen in llama.cpp's libggml-cpu); we write fmaf there so the result is the same.
 *
 * K-quant dots: per super-block, integer products are summed in 8 int32 lanes, lane i holding bytes 4i..4i+3 of
 * each 32-value chunk times that chunk-half's sub-block scale (the scale of the first 16 values for lanes 0-3,
 * of the last 16 for lanes 4-7 when sub-blocks are 16 wide); the lanes are converted to float and accumulated
 * with d_x * d_y by FMA, and the minimum terms (d_y * dmin_x * sum m * bsums) go in as ggml adds them. Integer
 * sums are exact in any order, so only the float steps need to follow ggml's.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/fp16.h"

#include "backend/cpu/simd_x86.h" /* h2f, hsum8 */

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
    float sum = reduce4x8(a0, a1, a2, a3);
    for (; i < n; i++) sum = fmaf(x[i], y[i], sum); /* ggml's float leftover loop, contracted */
    *s = sum;
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
    float mins = 0.0f; /* sum of m_x * s_y over blocks, fused as in llama.cpp's build */
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        mins = fmaf(h2f(x[b].m), h2f(y[b].s), mins);
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

/* ---- four tokens per weight row: the dots above, with each weight block unpacked once ----
 * Per token, the same operations in the same order as the single-token kernel (so the results are identical); only
 * the weight loads, nibble unpacking and sign handling are shared. */

#define Y4(k) ((const void *)((const char *)vy + (size_t)(k) * y_stride))
/* The four token steps are written out (STEP4) so that the accumulators stay in registers. */
#define STEP4(STEP) STEP(0) STEP(1) STEP(2) STEP(3)

void zl_q4_0_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q4_0 *x = vx;
    const zl_block_q8_0 *y0 = Y4(0), *y1 = Y4(1), *y2 = Y4(2), *y3 = Y4(3);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const float dx = h2f(x[b].d);
        const __m256i qx = _mm256_sub_epi8(unpack_nibbles(x[b].qs), _mm256_set1_epi8(8));
        const __m256i ax = _mm256_sign_epi8(qx, qx);
#define Q4_0_STEP(k)                                                                                              \
    acc##k = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(y##k[b].d)),                                                 \
                             dot_u8_s8(ax, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y##k[b].qs), qx)), \
                             acc##k);
        STEP4(Q4_0_STEP)
#undef Q4_0_STEP
    }
    s[0] = hsum8(acc0);
    s[s_stride] = hsum8(acc1);
    s[2 * s_stride] = hsum8(acc2);
    s[3 * s_stride] = hsum8(acc3);
}

void zl_q4_1_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q4_1 *x = vx;
    const zl_block_q8_1 *y0 = Y4(0), *y1 = Y4(1), *y2 = Y4(2), *y3 = Y4(3);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    float mins0 = 0.0f, mins1 = 0.0f, mins2 = 0.0f, mins3 = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const float dx = h2f(x[b].d), mx = h2f(x[b].m);
        const __m256i qx = unpack_nibbles(x[b].qs);
#define Q4_1_STEP(k)                                                                                              \
    mins##k = fmaf(mx, h2f(y##k[b].s), mins##k);                                                                  \
    acc##k = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(y##k[b].d)),                                                 \
                             dot_u8_s8(qx, _mm256_loadu_si256((const __m256i *)y##k[b].qs)), acc##k);
        STEP4(Q4_1_STEP)
#undef Q4_1_STEP
    }
    s[0] = hsum8(acc0) + mins0;
    s[s_stride] = hsum8(acc1) + mins1;
    s[2 * s_stride] = hsum8(acc2) + mins2;
    s[3 * s_stride] = hsum8(acc3) + mins3;
}

void zl_q8_0_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q8_0 *x = vx;
    const zl_block_q8_0 *y0 = Y4(0), *y1 = Y4(1), *y2 = Y4(2), *y3 = Y4(3);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const float dx = h2f(x[b].d);
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i ax = _mm256_sign_epi8(qx, qx);
#define Q8_0_STEP(k)                                                                                              \
    acc##k = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(y##k[b].d)),                                                 \
                             dot_u8_s8(ax, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y##k[b].qs), qx)), \
                             acc##k);
        STEP4(Q8_0_STEP)
#undef Q8_0_STEP
    }
    s[0] = hsum8(acc0);
    s[s_stride] = hsum8(acc1);
    s[2 * s_stride] = hsum8(acc2);
    s[3 * s_stride] = hsum8(acc3);
}

#undef STEP4
#undef Y4

/* ---- four weight rows per activation row (one-token decode) ----
 * zl_q8_0_vec_dot_avx2 of rows x, x + bx, x + 2 bx, x + 3 bx against one activation row, each row with its own
 * accumulator and the same operations in the same order as vec_dot (so the bits are the same); the activation
 * block is loaded once for the 4 rows, and the next 4 rows are prefetched while these are summed. For matrices of
 * short rows (Gemma 3's 640-wide output matrix: 20 blocks) the per-row call and reduction overhead dominates
 * vec_dot. */
void zl_q8_0_vec_dot_rows4_avx2(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_0 *x0 = vx, *x1 = (const void *)((const char *)vx + bx),
                        *x2 = (const void *)((const char *)vx + 2 * bx),
                        *x3 = (const void *)((const char *)vx + 3 * bx);
    const zl_block_q8_0 *y = vy;
    const char *next = (const char *)vx + 4 * bx; /* the next group of rows (prefetch only: never read) */
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        _mm_prefetch(next + (size_t)b * 4 * sizeof(zl_block_q8_0), _MM_HINT_T0);
        _mm_prefetch(next + (size_t)b * 4 * sizeof(zl_block_q8_0) + 64, _MM_HINT_T0);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        /* the 4 rows' scales d_x * d_y, each the one rounded product vec_dot computes */
        const __m128i dx = _mm_setr_epi16((short)x0[b].d, (short)x1[b].d, (short)x2[b].d, (short)x3[b].d, 0, 0, 0, 0);
        const __m256 d4 = _mm256_castps128_ps256(_mm_mul_ps(_mm_cvtph_ps(dx), _mm_set1_ps(h2f(y[b].d))));
#define Q8_0_ROW(k)                                                                                               \
    {                                                                                                             \
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x##k[b].qs);                                       \
        acc##k = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(d4, _mm256_set1_epi32(k)),                               \
                                 dot_u8_s8(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx)), acc##k);          \
    }
        Q8_0_ROW(0) Q8_0_ROW(1) Q8_0_ROW(2) Q8_0_ROW(3)
#undef Q8_0_ROW
    }
    s[0] = hsum8(acc0);
    s[1] = hsum8(acc1);
    s[2] = hsum8(acc2);
    s[3] = hsum8(acc3);
}

/* 32 bits (little-endian) -> 32 bytes, byte j = 0xff if bit j is set, else 0. */
static inline __m256i bits_to_bytes(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    /* byte j takes source byte j / 8 (each 128-bit lane sees all 4 source bytes, as w is broadcast) */
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                          3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL); /* byte j tests bit j % 8 */
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)w), pick), bit);
    return _mm256_cmpeq_epi8(v, bit);
}

/* A Q5_0 block's 32 codes as signed bytes q - 16: the nibble with 0xf0 or-ed in where the fifth bit is clear. */
static inline __m256i q5_0_codes(const zl_block_q5_0 *x)
{
    const __m256i hi = _mm256_andnot_si256(bits_to_bytes(x->qh), _mm256_set1_epi8((char)0xf0));
    return _mm256_or_si256(unpack_nibbles(x->qs), hi);
}

void zl_q5_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_0 *x = vx;
    const zl_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const __m256 d = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256i qx = q5_0_codes(&x[b]);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(d, dot_s8_s8(qx, qy), acc);
    }
    *s = hsum8(acc);
}

/* zl_q5_0_vec_dot_avx2 for 4 tokens (see zl_q4_0_vec_dot4_avx2): per token the same operations in the same
 * order; the fifth-bit expansion, nibble unpacking and |q| are done once per weight block. */
void zl_q5_0_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q5_0 *x = vx;
    const zl_block_q8_0 *y0 = vy, *y1 = (const void *)((const char *)vy + y_stride),
                        *y2 = (const void *)((const char *)vy + 2 * y_stride),
                        *y3 = (const void *)((const char *)vy + 3 * y_stride);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        const float dx = h2f(x[b].d);
        const __m256i qx = q5_0_codes(&x[b]);
        const __m256i ax = _mm256_sign_epi8(qx, qx);
#define Q5_0_STEP(k)                                                                                              \
    acc##k = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(y##k[b].d)),                                                 \
                             dot_u8_s8(ax, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y##k[b].qs), qx)), \
                             acc##k);
        Q5_0_STEP(0) Q5_0_STEP(1) Q5_0_STEP(2) Q5_0_STEP(3)
#undef Q5_0_STEP
    }
    s[0] = hsum8(acc0);
    s[s_stride] = hsum8(acc1);
    s[2 * s_stride] = hsum8(acc2);
    s[3 * s_stride] = hsum8(acc3);
}

void zl_q5_1_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_1 *x = vx;
    const zl_block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        mins = fmaf(h2f(x[b].m), h2f(y[b].s), mins);
        const __m256i hi = _mm256_and_si256(bits_to_bytes(x[b].qh), _mm256_set1_epi8(0x10));
        const __m256i qx = _mm256_or_si256(unpack_nibbles(x[b].qs), hi);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(dot_u8_s8(qx, qy), _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), acc);
    }
    *s = hsum8(acc) + mins;
}

/* ---- K-quant dots against Q8_K ---- */

/* u: unsigned bytes, s: signed bytes; 16 int16 lanes, lane i = u[2i] s[2i] + u[2i+1] s[2i+1] (no saturation for
 * K-quant ranges: |u| <= 63, |s| <= 127). */
static inline __m256i maddubs(__m256i u, __m256i s)
{
    return _mm256_maddubs_epi16(u, s);
}

/* 8 int32 lanes: the int16 pair sums of p times the scale of the first 16 bytes (lanes 0-3) or of the last 16
 * (lanes 4-7). */
static inline __m256i scale_halves(__m256i p, int sc_lo, int sc_hi)
{
    const __m256i sc = _mm256_setr_m128i(_mm_set1_epi16((short)sc_lo), _mm_set1_epi16((short)sc_hi));
    return _mm256_madd_epi16(sc, p);
}

static inline __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* The integer sums sum_s sc_s (q_s . q8_s) of one Q2_K block in 8 int32 lanes. */
static inline __m256i q2_K_sumi(const zl_block_q2_K *x, const int8_t *q8)
{
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i bits = load32(x->qs + 32 * h);
        for (int k = 0; k < 4; k++) {
            const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
            const __m256i p = maddubs(q, load32(q8 + 128 * h + 32 * k));
            const int sb = 8 * h + 2 * k;
            sumi = _mm256_add_epi32(sumi, scale_halves(p, x->scales[sb] & 0x0f, x->scales[sb + 1] & 0x0f));
        }
    }
    return sumi;
}

/* Q2_K minimums against the activation sums: lane i = m[2i] bsums[2i] + m[2i+1] bsums[2i+1]. */
static inline __m256i q2_K_min_products(const zl_block_q2_K *x, const int16_t *bsums)
{
    const __m128i packed = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0f)));
    return _mm256_madd_epi16(mins, load32(bsums));
}

void zl_q2_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q2_K *x = vx;
    const zl_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = -y[b].d * h2f(x[b].dmin);
        const __m256i prod = q2_K_min_products(&x[b], y[b].bsums);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q2_K_sumi(&x[b], y[b].qs)), acc);
    }
    *s = hsum8(acc);
}

/* The integer sums sum_s (sc_s - 32) (q_s . q8_s) of one Q3_K block in 8 int32 lanes. */
static inline __m256i q3_K_sumi(const zl_block_q3_K *x, const int8_t *q8)
{
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4), zero = _mm256_setzero_si256();
    int sc[16];
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? x->scales[j] & 0x0f : x->scales[j - 8] >> 4;
        sc[j] = (lo | ((x->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
    }
    const __m256i hmask = load32(x->hmask);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i bits = load32(x->qs + 32 * h);
        for (int k = 0; k < 4; k++) {
            /* q = low 2 bits - (4 where the high bit is clear); the two parts are multiplied separately
             * because maddubs wants an unsigned operand */
            const __m256i ql = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
            const __m256i hbit = _mm256_and_si256(hmask, _mm256_set1_epi8((char)(1 << (4 * h + k))));
            const __m256i qh = _mm256_and_si256(_mm256_cmpeq_epi8(hbit, zero), four);
            const __m256i q8v = load32(q8 + 128 * h + 32 * k);
            const __m256i p = _mm256_sub_epi16(maddubs(ql, q8v), maddubs(qh, q8v));
            const int sb = 8 * h + 2 * k;
            sumi = _mm256_add_epi32(sumi, scale_halves(p, sc[sb], sc[sb + 1]));
        }
    }
    return sumi;
}

void zl_q3_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q3_K *x = vx;
    const zl_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q3_K_sumi(&x[b], y[b].qs)), acc);
    }
    *s = hsum8(acc);
}

/* Scales and minimums of the 8 sub-blocks of a Q4_K / Q5_K block (packing in quant.h / quant_k_ref.c). */
static inline void k4_scales_mins(const uint8_t *q, int sc[8], int m[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0x0f) | (q[j] >> 6) << 4;
        m[j + 4] = (q[j + 8] >> 4) | (q[j + 4] >> 6) << 4;
    }
}

/* 4 int32 lanes, lane i = m[2i] (bsums[4i] + bsums[4i+1]) + m[2i+1] (bsums[4i+2] + bsums[4i+3]): the minimum
 * terms of the 8 sub-blocks of 32, paired as ggml pairs them. */
static inline __m128i k4_min_products(const int m[8], const int16_t *bsums)
{
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums), b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    const __m128i per32 = _mm_hadd_epi16(b0, b1); /* sums of each 32 quants */
    const __m128i mins = _mm_setr_epi16((short)m[0], (short)m[1], (short)m[2], (short)m[3], (short)m[4], (short)m[5],
                                        (short)m[6], (short)m[7]);
    return _mm_madd_epi16(mins, per32);
}

/* 8 int32 lanes whose total is sum_s sc[s] * (q_s . q8_s) over the 8 sub-blocks of a Q4_K block (lane i: bytes
 * 4i..4i+3 of each 32-value chunk). */
static inline __m256i q4_K_sumi(const zl_block_q4_K *x, const int sc[8], const int8_t *q8)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 4; h++) {
        const __m256i bits = load32(x->qs + 32 * h);
        const __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        const __m256i pl = maddubs(lo, load32(q8 + 64 * h));
        const __m256i ph = maddubs(hi, load32(q8 + 64 * h + 32));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(scale_halves(pl, sc[2 * h], sc[2 * h]),
                                                       scale_halves(ph, sc[2 * h + 1], sc[2 * h + 1])));
    }
    return sumi;
}

/* The same for a Q5_K block (codes with their fifth bit). */
static inline __m256i q5_K_sumi(const zl_block_q5_K *x, const int sc[8], const int8_t *q8)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16), zero = _mm256_setzero_si256();
    const __m256i qh = load32(x->qh);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 4; h++) {
        const __m256i bits = load32(x->qs + 32 * h);
        const __m256i hlo = _mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << (2 * h))));
        const __m256i hhi = _mm256_and_si256(qh, _mm256_set1_epi8((char)(1 << (2 * h + 1))));
        const __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4),
                                           _mm256_andnot_si256(_mm256_cmpeq_epi8(hlo, zero), sixteen));
        const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                                           _mm256_andnot_si256(_mm256_cmpeq_epi8(hhi, zero), sixteen));
        const __m256i pl = maddubs(lo, load32(q8 + 64 * h));
        const __m256i ph = maddubs(hi, load32(q8 + 64 * h + 32));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(scale_halves(pl, sc[2 * h], sc[2 * h]),
                                                       scale_halves(ph, sc[2 * h + 1], sc[2 * h + 1])));
    }
    return sumi;
}

void zl_q4_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = -y[b].d * h2f(x[b].dmin);
        int sc[8], m[8];
        k4_scales_mins(x[b].scales, sc, m);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(k4_min_products(m, y[b].bsums)), acc_m);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q4_K_sumi(&x[b], sc, y[b].qs)), acc);
    }
    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    *s = hsum8(acc) + _mm_cvtss_f32(acc_m);
}

void zl_q5_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_K *x = vx;
    const zl_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = -y[b].d * h2f(x[b].dmin);
        int sc[8], m[8];
        k4_scales_mins(x[b].scales, sc, m);
        const __m128i prod = k4_min_products(m, y[b].bsums);
        __m128i t = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
        mins = fmaf(dmin, (float)_mm_cvtsi128_si32(t), mins); /* integer total: exact in any order */

        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q5_K_sumi(&x[b], sc, y[b].qs)), acc);
    }
    *s = hsum8(acc) + mins;
}

/* 8 int32 lanes whose total is sum_s scales[s] * ((q_s - 32) . q8_s) over the 16 sub-blocks of a Q6_K block.
 * The -32 offset is applied once per block through the activation sums (as current ggml does): lane i gets
 * 32 (sc[2i] bsums[2i] + sc[2i+1] bsums[2i+1]) subtracted; this fixes which lane holds which part of the integer
 * total, and so vec_dot's float result. */
static inline __m256i q6_K_sumi(const zl_block_q6_K *x, const zl_block_q8_K *y)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load32(y->bsums), sc16), 5);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = load32(x->ql + 64 * h), l1 = load32(x->ql + 64 * h + 32);
        const __m256i hb = load32(x->qh + 32 * h);
        const __m256i low[4] = { _mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                 _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                 _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4) };
        for (int k = 0; k < 4; k++) {
            const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m3), 4);
            const __m256i q = _mm256_or_si256(low[k], high); /* q + 32, in [0, 63] */
            const __m256i p = maddubs(q, load32(y->qs + 128 * h + 32 * k));
            const int sb = 8 * h + 2 * k;
            sumi = _mm256_add_epi32(sumi, scale_halves(p, x->scales[sb], x->scales[sb + 1]));
        }
    }
    return _mm256_sub_epi32(sumi, offset);
}

void zl_q6_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const float d = y[b].d * h2f(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q6_K_sumi(&x[b], &y[b])), acc);
    }
    *s = hsum8(acc);
}

/* ---- activation quantizers (bit-identical to the _act_ref versions) ---- */

/* Quantizes one block of 32 floats to q = round-half-even(x * 127/amax); returns d = amax/127 and the 32 int32
 * quants in four vectors (elements 0-7, 8-15, 16-23, 24-31). */
/* The largest of 8 lanes (none NaN). */
static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float quantize_block_act(const float *x, __m256i q[4])
{
    __m256 v[4];
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
    }
    const float amax_s = hmax8(amax);
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

/* Q8_K activations (the K-quants' vec_dot_type): zl_q8_K_from_float_ref's bytes, block for block. ggml's x86 build
 * quantizes with its scalar reference, whose steps are kept: the first value of largest magnitude v (its sign
 * included), iscale = -127 / v, q = round-half-even(iscale * x) capped at 127 (the magic-constant rounding equals
 * cvtps's default rounding on |iscale * x| <= 127-and-a-bit), d = 1 / iscale. A block holding a NaN or an infinity
 * goes to the reference, so even those come out the same. */
void zl_q8_K_from_float_act_avx2(const float *x, void *vy, int64_t n)
{
    zl_block_q8_K *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    for (int64_t b = 0; b < n / ZL_QK_K; b++, x += ZL_QK_K) {
        __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
        for (int j = 0; j < ZL_QK_K; j += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j));
            amax = _mm256_max_ps(amax, a);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ)); /* NaN or infinite */
        }
        if (_mm256_movemask_ps(bad)) {
            zl_q8_K_from_float_ref(x, &y[b], ZL_QK_K);
            continue;
        }
        const float amax_s = hmax8(amax);
        if (amax_s == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float vmax = amax_s;
        const __m256 am = _mm256_set1_ps(amax_s);
        for (int j = 0; j < ZL_QK_K; j += 8) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), am,
                                                             _CMP_EQ_OQ));
            if (hit) {
                vmax = x[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / vmax;
        const __m256 is = _mm256_set1_ps(iscale);
        const __m256i cap = _mm256_set1_epi32(127);
        for (int c = 0; c < ZL_QK_K / 32; c++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + 32 * c + 8 * k))),
                                        cap);
            store_q8(y[b].qs + 32 * c, q);
            y[b].bsums[2 * c] = (int16_t)hsum_i32x8(_mm256_add_epi32(q[0], q[1]));
            y[b].bsums[2 * c + 1] = (int16_t)hsum_i32x8(_mm256_add_epi32(q[2], q[3]));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ---- llama.cpp's tiled K-quant order (batches of 8+ tokens; see ops.c): per 256-block the exact integer sums
 * s1 (and s2 = sum of minimum times activation sums), r = d * s1 (Q4_K / Q5_K: fma(-dmin, s2, d * s1)), then
 * acc = fma(r, d8, acc). The integer sums are the vec_dot ones above added up in any order (exact); only these
 * float steps fix the result. ---- */

static inline int32_t k4_min_total(const int m[8], const int16_t *bsums)
{
    const __m128i p = k4_min_products(m, bsums);
    __m128i t = _mm_add_epi32(p, _mm_unpackhi_epi64(p, p));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(t);
}

void zl_q2_K_tiled_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q2_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const int32_t s1 = hsum_i32x8(q2_K_sumi(&x[b], y[b].qs));
        const int32_t s2 = hsum_i32x8(q2_K_min_products(&x[b], y[b].bsums));
        const float r = fmaf(-h2f(x[b].dmin), (float)s2, h2f(x[b].d) * (float)s1);
        acc = fmaf(r, y[b].d, acc);
    }
    *s = acc;
}

void zl_q3_K_tiled_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q3_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++)
        acc = fmaf(h2f(x[b].d) * (float)hsum_i32x8(q3_K_sumi(&x[b], y[b].qs)), y[b].d, acc);
    *s = acc;
}

void zl_q4_K_tiled_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int sc[8], m[8];
        k4_scales_mins(x[b].scales, sc, m);
        const int32_t s1 = hsum_i32x8(q4_K_sumi(&x[b], sc, y[b].qs)), s2 = k4_min_total(m, y[b].bsums);
        const float r = fmaf(-h2f(x[b].dmin), (float)s2, h2f(x[b].d) * (float)s1);
        acc = fmaf(r, y[b].d, acc);
    }
    *s = acc;
}

void zl_q5_K_tiled_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q5_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int sc[8], m[8];
        k4_scales_mins(x[b].scales, sc, m);
        const int32_t s1 = hsum_i32x8(q5_K_sumi(&x[b], sc, y[b].qs)), s2 = k4_min_total(m, y[b].bsums);
        const float r = fmaf(-h2f(x[b].dmin), (float)s2, h2f(x[b].d) * (float)s1);
        acc = fmaf(r, y[b].d, acc);
    }
    *s = acc;
}

void zl_q6_K_tiled_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y = vy;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        const int32_t s1 = hsum_i32x8(q6_K_sumi(&x[b], &y[b]));
        acc = fmaf(h2f(x[b].d) * (float)s1, y[b].d, acc);
    }
    *s = acc;
}

/* The tiled dots for 4 tokens (s[k * s_stride] for activation rows y + k * y_stride): each weight block's codes,
 * scales and minimums are unpacked once; per token the integer sums are the same exact integers and the float
 * steps the same as the one-token versions above, so the results are identical. */

#define TY4(k) ((const zl_block_q8_K *)(const void *)((const char *)vy + (size_t)(k) * y_stride))

void zl_q4_K_tiled_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y[4] = { TY4(0), TY4(1), TY4(2), TY4(3) };
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        int sc[8], m[8];
        k4_scales_mins(x[b].scales, sc, m);
        __m256i sumi[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                            _mm256_setzero_si256() };
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++) {
            const __m256i bits = load32(x[b].qs + 32 * h);
            const __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            const __m256i sl = _mm256_set1_epi16((short)sc[2 * h]), sh = _mm256_set1_epi16((short)sc[2 * h + 1]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i pl = _mm256_madd_epi16(sl, maddubs(lo, load32(y[k][b].qs + 64 * h)));
                const __m256i ph = _mm256_madd_epi16(sh, maddubs(hi, load32(y[k][b].qs + 64 * h + 32)));
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(pl, ph));
            }
        }
        const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const int32_t s1 = hsum_i32x8(sumi[k]), s2 = k4_min_total(m, y[k][b].bsums);
            acc[k] = fmaf(fmaf(-dmin, (float)s2, d * (float)s1), y[k][b].d, acc[k]);
        }
    }
    for (int k = 0; k < 4; k++) s[(size_t)k * s_stride] = acc[k];
}

void zl_q6_K_tiled_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y[4] = { TY4(0), TY4(1), TY4(2), TY4(3) };
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        __m256i sumi[4];
        /* codes are stored + 32: subtract 32 sum_s sc_s bsum_s per token (exact, like q6_K_sumi) */
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            sumi[k] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(_mm256_madd_epi16(load32(y[k][b].bsums), sc16), 5));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = load32(x[b].ql + 64 * h), l1 = load32(x[b].ql + 64 * h + 32);
            const __m256i hb = load32(x[b].qh + 32 * h);
            const __m256i low[4] = { _mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                     _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                     _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4) };
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * j), m3), 4);
                const __m256i q = _mm256_or_si256(low[j], high); /* q + 32, in [0, 63] */
                const int sb = 8 * h + 2 * j;
                const __m256i scv = _mm256_setr_m128i(_mm_set1_epi16(x[b].scales[sb]),
                                                      _mm_set1_epi16(x[b].scales[sb + 1]));
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    sumi[k] = _mm256_add_epi32(
                        sumi[k], _mm256_madd_epi16(scv, maddubs(q, load32(y[k][b].qs + 128 * h + 32 * j))));
            }
        }
        const float d = h2f(x[b].d);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) acc[k] = fmaf(d * (float)hsum_i32x8(sumi[k]), y[k][b].d, acc[k]);
    }
    for (int k = 0; k < 4; k++) s[(size_t)k * s_stride] = acc[k];
}

#undef TY4

#endif

/* ---- llama.cpp's tinyBLAS dot (batches of 2+ tokens): one 8-lane fma accumulator, then hsum8. ---- */

void zl_f32_vec_dot_gemm_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a);
    *s = hsum8(a);
}

void zl_f16_vec_dot_gemm_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m256 a = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) a = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a);
    *s = hsum8(a);
}

/* ---- exp for softmax and SiLU: the Arm optimized-routines polynomial as ggml's AVX2 build evaluates it ---- */

static inline __m256 exp8(__m256 x)
{
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const __m256 c = _mm256_cmp_ps(absn, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 p_hi = _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f));
    const __m256 p_lo = _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f));
    const __m256 j = _mm256_fmadd_ps(_mm256_fmadd_ps(p_hi, u, p_lo), u,
                                     _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(c))
        return _mm256_fmadd_ps(j, k, k);
    /* |n| > 126: scale in two steps (2^n would overflow the exponent field); |n| > 192: saturate */
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 d = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    const __m256 scaled = _mm256_blendv_ps(_mm256_fmadd_ps(k, j, k), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), c);
    return _mm256_blendv_ps(scaled, _mm256_mul_ps(s1, s1), d);
}

float zl_softmax_exp_avx2(float *x, int64_t n, float max)
{
    double sum = 0.0;
    int64_t i = 0;
    const __m256 mx = _mm256_set1_ps(max);
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
        _mm256_storeu_ps(x + i, e);
        sum += (double)hsum8(e);
    }
    if (i < n) { /* the rest as if padded with -inf (exp 0), as llama.cpp's padded, masked rows are */
        float tmp[8];
        for (int l = 0; l < 8; l++) tmp[l] = i + l < n ? x[i + l] : -INFINITY;
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(tmp), mx));
        _mm256_storeu_ps(tmp, e);
        for (int l = 0; i + l < n; l++) x[i + l] = tmp[l];
        sum += (double)hsum8(e);
    }
    return (float)(1.0 / sum);
}

double zl_softmax_exp_full_avx2(float *x, int64_t n, float max)
{
    double sum = 0.0;
    const __m256 mx = _mm256_set1_ps(max);
    for (int64_t i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
        _mm256_storeu_ps(x + i, e);
        sum += (double)hsum8(e);
    }
    return sum;
}

void zl_silu_mul_avx2(float *y, const float *g, const float *u, int64_t n)
{
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(g + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
        const __m256 s = _mm256_div_ps(v, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float v = g[i];
        y[i] = (v / (1.0f + expf(-v))) * u[i];
    }
}

int64_t zl_gelu_mul_avx2(float *y, const float *g, const float *u, int64_t n, const uint16_t *table)
{
    /* The scalar loop's steps 8 at a time: F16C's round-to-nearest-even conversion is the scalar one (test_dtype),
     * the table entries are gathered as 32-bit words at 2-byte steps (the table has one padding entry, so the
     * last index reads inside it) and masked to their low half. */
    int64_t i = 0;
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    const __m256i low16 = _mm256_set1_epi32(0xffff);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(g + i);
        const __m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        const __m256i e = _mm256_and_si256(_mm256_i32gather_epi32((const int *)table, idx, 2), low16);
        const __m128i e16 = _mm_packus_epi32(_mm256_castsi256_si128(e), _mm256_extracti128_si256(e, 1));
        __m256 a = _mm256_cvtph_ps(e16);
        a = _mm256_blendv_ps(a, v, _mm256_cmp_ps(v, hi, _CMP_GE_OQ));
        a = _mm256_andnot_ps(_mm256_cmp_ps(v, lo, _CMP_LE_OQ), a);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(a, _mm256_loadu_ps(u + i)));
    }
    return i;
}
