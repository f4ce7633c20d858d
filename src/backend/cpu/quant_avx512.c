/*
 * quant_avx512.c - the float kernels whose rounding depends on the vector width, in the order a ggml built for
 * an AVX-512 CPU uses (llama.cpp compiles for the host's widest ISA, so on such a CPU these are what it runs):
 *
 *   - F32 / F16 dot products: 4 accumulators of 16 floats over steps of 64, reduced (a0 + a2) + (a1 + a3) and
 *     then across the 16 lanes (see zl_reduce16 in quant.h), leftovers added after;
 *   - exp for softmax and SiLU: the same polynomial as the AVX2 version but finished with one fma and scalef;
 *   - softmax sums: per 16 values, reduced across lanes in float, accumulated in double.
 *
 * Compiled with -mavx512f -mavx512dq -mfma -mf16c (Makefile: files named *_avx512.c); called only when
 * zl_cpu_simd_width() is 16.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/quant.h"
#include "core/fp16.h"

#include "backend/cpu/simd_x86.h" /* h2f, hsum8 */

/* The lane order of _mm512_reduce_add_ps as GCC and clang implement it: halves, then quarters, then pairs. */
static inline float reduce16(__m512 v)
{
    const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 1), _mm512_castps512_ps256(v));
    const __m128 q = _mm_add_ps(_mm256_extractf128_ps(h, 1), _mm256_castps256_ps128(h));
    const __m128 p = _mm_add_ps(q, _mm_shuffle_ps(q, q, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(p) + _mm_cvtss_f32(_mm_shuffle_ps(p, p, _MM_SHUFFLE(1, 1, 1, 1)));
}

static inline float reduce4x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    a0 = _mm512_add_ps(a0, a2);
    a1 = _mm512_add_ps(a1, a3);
    return reduce16(_mm512_add_ps(a0, a1));
}

void zl_f32_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    float sum = reduce4x16(a0, a1, a2, a3);
    for (; i < n; i++) sum = fmaf(x[i], y[i], sum); /* ggml's float leftover loop, contracted */
    *s = sum;
}

static inline __m512 load_f16x16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

void zl_f16_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_f16x16(x + i), load_f16x16(y + i), a0);
        a1 = _mm512_fmadd_ps(load_f16x16(x + i + 16), load_f16x16(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_f16x16(x + i + 32), load_f16x16(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_f16x16(x + i + 48), load_f16x16(y + i + 48), a3);
    }
    double sum = reduce4x16(a0, a1, a2, a3);
    for (; i < n; i++) sum += (double)(zl_fp16_to_fp32(x[i]) * zl_fp16_to_fp32(y[i]));
    *s = (float)sum;
}

/* The 16-lane accumulation of llama.cpp's tinyBLAS (its matmul when a batch has two or more tokens): lane l
 * accumulates elements l, l + 16, ... with fma, then one reduce16. n must be a multiple of 16. */
void zl_f32_vec_dot_gemm_avx512(int64_t n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    __m512 a = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a);
    *s = reduce16(a);
}

void zl_f16_vec_dot_gemm_avx512(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 a = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) a = _mm512_fmadd_ps(load_f16x16(x + i), load_f16x16(y + i), a);
    *s = reduce16(a);
}

/* 4 F16 weight rows x nt tokens in tinyBLAS's order: s[t * s_stride + r] is zl_f16_vec_dot_gemm_avx512(row r,
 * token t) bit for bit (one accumulator per pair, fma over steps of 16, the same final reduction). Each weight vector
 * is converted once for nt uses, each token vector once for 4 (or, `wide`, not at all: the tokens come widened to
 * float). On Zen 4 the conversions compete with the fmas: 4 x 4 on F16 tokens ran at ~83% of the fma rate; 4 x 6
 * needs 10 conversions per 24 fmas, or 4 when wide. Wide tokens double the activation bytes streamed from L2 and
 * pay off only for rows up to ~4096 (ops.c). n % 16 == 0, 1 <= nt <= 6. */
static inline __attribute__((always_inline)) void f16_gemm_4xn(const int nt, const bool wide, int64_t n, float *s,
                                                               size_t s_stride, const void *vx, size_t bx,
                                                               const void *vy, size_t y_stride)
{
    const uint16_t *w[4];
    const char *y[6];
    for (int k = 0; k < 4; k++) w[k] = (const uint16_t *)(const void *)((const char *)vx + (size_t)k * bx);
    _Pragma("GCC unroll 6") for (int t = 0; t < nt; t++) y[t] = (const char *)vy + (size_t)t * y_stride;
    __m512 acc[4][6];
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
    {
        _Pragma("GCC unroll 6") for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < n; i += 16) {
        __m512 yv[6];
        _Pragma("GCC unroll 6") for (int t = 0; t < nt; t++) yv[t] =
            wide ? _mm512_loadu_ps((const float *)(const void *)y[t] + i)
                 : load_f16x16((const uint16_t *)(const void *)y[t] + i);
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
        {
            const __m512 wv = load_f16x16(w[r] + i);
            _Pragma("GCC unroll 6") for (int t = 0; t < nt; t++) acc[r][t] = _mm512_fmadd_ps(wv, yv[t], acc[r][t]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)
    {
        _Pragma("GCC unroll 6") for (int t = 0; t < nt; t++) s[(size_t)t * s_stride + (size_t)r] =
            reduce16(acc[r][t]);
    }
}

#define F16_GEMM_4XN(wide)                                                                                           \
    switch (nt) {                                                                                                    \
    case 1: f16_gemm_4xn(1, wide, n, s, s_stride, x, bx, y, y_stride); break;                                       \
    case 2: f16_gemm_4xn(2, wide, n, s, s_stride, x, bx, y, y_stride); break;                                       \
    case 3: f16_gemm_4xn(3, wide, n, s, s_stride, x, bx, y, y_stride); break;                                       \
    case 4: f16_gemm_4xn(4, wide, n, s, s_stride, x, bx, y, y_stride); break;                                       \
    case 5: f16_gemm_4xn(5, wide, n, s, s_stride, x, bx, y, y_stride); break;                                       \
    default: f16_gemm_4xn(6, wide, n, s, s_stride, x, bx, y, y_stride); break;                                      \
    }

void zl_f16_gemm_4xn_avx512(int64_t n, int nt, float *s, size_t s_stride, const void *x, size_t bx, const void *y,
                            size_t y_stride)
{
    F16_GEMM_4XN(false)
}

void zl_f16_gemm_4xn_wide_avx512(int64_t n, int nt, float *s, size_t s_stride, const void *x, size_t bx,
                                 const void *y, size_t y_stride)
{
    F16_GEMM_4XN(true)
}

void zl_f16_widen_avx512(const void *vx, float *y, int64_t n)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_f16x16(x + i));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

static inline __attribute__((always_inline)) void f16_dot_rows(const int g, int64_t n, int64_t n_rows, float *s,
                                                                size_t s_stride, const void *k, size_t k_stride,
                                                                const float *q)
{
    int64_t r = 0;
    for (; r + 2 <= n_rows; r += 2) { /* two rows share each query load */
        const uint16_t *k0 = (const uint16_t *)(const void *)((const char *)k + (size_t)r * k_stride);
        const uint16_t *k1 = (const uint16_t *)(const void *)((const char *)k0 + k_stride);
        __m512 a0[8], a1[8];
        _Pragma("GCC unroll 8") for (int h = 0; h < g; h++) a0[h] = a1[h] = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            const __m512 x0 = load_f16x16(k0 + i), x1 = load_f16x16(k1 + i);
            _Pragma("GCC unroll 8") for (int h = 0; h < g; h++)
            {
                const __m512 y = _mm512_loadu_ps(q + (size_t)h * (size_t)n + i);
                a0[h] = _mm512_fmadd_ps(x0, y, a0[h]);
                a1[h] = _mm512_fmadd_ps(x1, y, a1[h]);
            }
        }
        _Pragma("GCC unroll 8") for (int h = 0; h < g; h++)
        {
            s[(size_t)h * s_stride + (size_t)r] = reduce16(a0[h]);
            s[(size_t)h * s_stride + (size_t)r + 1] = reduce16(a1[h]);
        }
    }
    for (; r < n_rows; r++) {
        const uint16_t *k0 = (const uint16_t *)(const void *)((const char *)k + (size_t)r * k_stride);
        __m512 a0[8];
        _Pragma("GCC unroll 8") for (int h = 0; h < g; h++) a0[h] = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            const __m512 x0 = load_f16x16(k0 + i);
            _Pragma("GCC unroll 8") for (int h = 0; h < g; h++) a0[h] =
                _mm512_fmadd_ps(x0, _mm512_loadu_ps(q + (size_t)h * (size_t)n + i), a0[h]);
        }
        _Pragma("GCC unroll 8") for (int h = 0; h < g; h++) s[(size_t)h * s_stride + (size_t)r] = reduce16(a0[h]);
    }
}

void zl_f16_dot_gemm_rows_avx512(int64_t n, int g, int64_t n_rows, float *s, size_t s_stride, const void *k,
                                 size_t k_stride, const float *q)
{
    switch (g) {
    case 2: f16_dot_rows(2, n, n_rows, s, s_stride, k, k_stride, q); break;
    case 3: f16_dot_rows(3, n, n_rows, s, s_stride, k, k_stride, q); break;
    case 4: f16_dot_rows(4, n, n_rows, s, s_stride, k, k_stride, q); break;
    default: /* other group sizes, a query at a time */
        for (int h = 0; h < g; h++)
            f16_dot_rows(1, n, n_rows, s + (size_t)h * s_stride, s_stride, k, k_stride, q + (size_t)h * (size_t)n);
    }
}

/* zl_f16_vec_dot_avx512's order (4 accumulators over steps of 64, reduce4x16) for n_rows F16 rows x g widened
 * queries, as zl_f16_dot_gemm_rows_avx512. n % 64 == 0 (no leftover loop). */
static inline __attribute__((always_inline)) void f16_vec_rows(const int g, int64_t n, int64_t n_rows, float *s,
                                                                size_t s_stride, const void *k, size_t k_stride,
                                                                const float *q)
{
    for (int64_t r = 0; r < n_rows; r++) {
        const uint16_t *k0 = (const uint16_t *)(const void *)((const char *)k + (size_t)r * k_stride);
        __m512 a[4][4];
        _Pragma("GCC unroll 4") for (int h = 0; h < g; h++)
        {
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[h][j] = _mm512_setzero_ps();
        }
        for (int64_t i = 0; i < n; i += 64) {
            __m512 x[4];
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) x[j] = load_f16x16(k0 + i + 16 * j);
            _Pragma("GCC unroll 4") for (int h = 0; h < g; h++)
            {
                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) a[h][j] =
                    _mm512_fmadd_ps(x[j], _mm512_loadu_ps(q + (size_t)h * (size_t)n + i + 16 * j), a[h][j]);
            }
        }
        _Pragma("GCC unroll 4") for (int h = 0; h < g; h++) s[(size_t)h * s_stride + (size_t)r] =
            reduce4x16(a[h][0], a[h][1], a[h][2], a[h][3]);
    }
}

void zl_f16_dot_vec_rows_avx512(int64_t n, int g, int64_t n_rows, float *s, size_t s_stride, const void *k,
                                size_t k_stride, const float *q)
{
    switch (g) {
    case 2: f16_vec_rows(2, n, n_rows, s, s_stride, k, k_stride, q); break;
    case 3: f16_vec_rows(3, n, n_rows, s, s_stride, k, k_stride, q); break;
    case 4: f16_vec_rows(4, n, n_rows, s, s_stride, k, k_stride, q); break;
    default:
        for (int h = 0; h < g; h++)
            f16_vec_rows(1, n, n_rows, s + (size_t)h * s_stride, s_stride, k, k_stride, q + (size_t)h * (size_t)n);
    }
}

/* exp(x), 16 lanes: the Arm optimized-routines polynomial as ggml's AVX-512 build evaluates it. */
static inline __m512 exp16(__m512 x)
{
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 p_hi = _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f));
    const __m512 p_lo = _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f));
    const __m512 lin = _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f));
    const __m512 j = _mm512_fmadd_ps(_mm512_fmadd_ps(p_hi, u, p_lo), u, lin);
    const __m512 res = _mm512_scalef_ps(j, n);
    if (!big)
        return res;
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
    const __m512 sat = _mm512_mask_blend_ps(neg, _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(big, res, sat);
}

float zl_softmax_exp_avx512(float *x, int64_t n, float max)
{
    double sum = 0.0;
    int64_t i = 0;
    const __m512 mx = _mm512_set1_ps(max);
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
        _mm512_storeu_ps(x + i, e);
        sum += (double)reduce16(e);
    }
    if (i < n) { /* the rest as if padded with -inf (exp 0), as llama.cpp's padded, masked rows are */
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i);
        const __m512 e = exp16(_mm512_sub_ps(v, mx));
        _mm512_mask_storeu_ps(x + i, m, e);
        sum += (double)reduce16(e);
    }
    return (float)(1.0 / sum);
}

double zl_softmax_exp_full_avx512(float *x, int64_t n, float max)
{
    double sum = 0.0;
    const __m512 mx = _mm512_set1_ps(max);
    for (int64_t i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
        _mm512_storeu_ps(x + i, e);
        sum += (double)reduce16(e);
    }
    return sum;
}

void zl_silu_mul_avx512(float *y, const float *g, const float *u, int64_t n)
{
    int64_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
        const __m512 s = _mm512_div_ps(v, _mm512_add_ps(one, e));
        _mm512_storeu_ps(y + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float v = g[i];
        y[i] = (v / (1.0f + expf(-v))) * u[i];
    }
}

/* ---- one-token decode, 4 Q8_0 weight rows per call, with AVX-512 BW + VL + VNNI ----
 * zl_q8_0_vec_dot_avx2 of rows x + i bx (i < 4) against one activation row, bit for bit: rows 2p and 2p + 1 share
 * a 512-bit register, each in its own 256-bit half, so every lane sees vec_dot's operations in vec_dot's order.
 * |x| and y with x's sign are the bytes vpsignb gives (where x is 0 the product is 0 either way); vpdpbusd adds
 * the 4 products of a lane exactly, as vpmaddubsw + vpmaddwd do (|x| <= 128 and |y| <= 127 never saturate a pair
 * sum). The scale of each half is its row's d times the activation's d, and the fma is per lane. Only for
 * zl_cpu_kernels_name() "avx512vnni" (dtype.c has checked the CPU and OS). */
__attribute__((target("avx512bw,avx512vl,avx512vnni"))) void
zl_q8_0_vec_dot_rows4_avx512vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_0 *x0 = vx, *x1 = (const void *)((const char *)vx + bx),
                        *x2 = (const void *)((const char *)vx + 2 * bx),
                        *x3 = (const void *)((const char *)vx + 3 * bx);
    const zl_block_q8_0 *y = vy;
    const char *next = (const char *)vx + 4 * bx; /* the next group of rows (prefetch only: never read) */
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        _mm_prefetch(next + (size_t)b * 4 * sizeof(zl_block_q8_0), _MM_HINT_T0);
        _mm_prefetch(next + (size_t)b * 4 * sizeof(zl_block_q8_0) + 64, _MM_HINT_T0);
        const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)y[b].qs));
        /* the 4 rows' scales d_x * d_y (each one rounded product, as vec_dot's), then each pair's halves */
        const __m128i dx = _mm_setr_epi16((short)x0[b].d, (short)x1[b].d, (short)x2[b].d, (short)x3[b].d, 0, 0, 0, 0);
        const __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(dx), _mm_set1_ps(_cvtsh_ss(y[b].d))));
#define ROW_PAIR(a, c)                                                                                            \
    {                                                                                                             \
        const __m512i qx = _mm512_inserti64x4(                                                                    \
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x##a[b].qs)),                              \
            _mm256_loadu_si256((const __m256i *)x##c[b].qs), 1);                                                  \
        const __m512i sy = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(qx), zero, qy);                           \
        const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_abs_epi8(qx), sy));                  \
        const __m512 d = _mm512_permutexvar_ps(_mm512_setr_epi32(a, a, a, a, a, a, a, a, c, c, c, c, c, c, c, c), d4); \
        acc##a##c = _mm512_fmadd_ps(d, f, acc##a##c);                                                             \
    }
        ROW_PAIR(0, 1) ROW_PAIR(2, 3)
#undef ROW_PAIR
    }
    s[0] = hsum8(_mm512_castps512_ps256(acc01));
    s[1] = hsum8(_mm512_extractf32x8_ps(acc01, 1));
    s[2] = hsum8(_mm512_castps512_ps256(acc23));
    s[3] = hsum8(_mm512_extractf32x8_ps(acc23, 1));
}

/* zl_q5_0_vec_dot_avx2 of 4 rows against one activation row, bit for bit, in the layout of
 * zl_q8_0_vec_dot_rows4_avx512vnni: each 256-bit half holds one row's 32 codes q - 16 (low nibbles, then high ones,
 * with 0xf0 or-ed in where the fifth bit is clear: exactly the negative codes), so |q| and y with q's sign are
 * vpsignb's bytes and vpdpbusd's lane sums are vec_dot's. */
__attribute__((target("avx512bw,avx512vl,avx512vnni"))) void
zl_q5_0_vec_dot_rows4_avx512vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q5_0 *x0 = vx, *x1 = (const void *)((const char *)vx + bx),
                        *x2 = (const void *)((const char *)vx + 2 * bx),
                        *x3 = (const void *)((const char *)vx + 3 * bx);
    const zl_block_q8_0 *y = vy;
    const char *next = (const char *)vx + 4 * bx; /* the next group of rows (prefetch only: never read) */
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0f), f0 = _mm512_set1_epi8((char)0xf0);
    const __m512i shift = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4); /* 128-bit lanes: low nibbles, high nibbles */
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        _mm_prefetch(next + (size_t)b * 4 * sizeof(zl_block_q5_0), _MM_HINT_T0);
        _mm_prefetch(next + (size_t)b * 4 * sizeof(zl_block_q5_0) + 64, _MM_HINT_T0);
        const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)y[b].qs));
        const __m128i dx = _mm_setr_epi16((short)x0[b].d, (short)x1[b].d, (short)x2[b].d, (short)x3[b].d, 0, 0, 0, 0);
        const __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(_mm_cvtph_ps(dx), _mm_set1_ps(_cvtsh_ss(y[b].d))));
#define ROW_PAIR(a, c)                                                                                            \
    {                                                                                                             \
        const __m512i raw = _mm512_inserti64x4(                                                                   \
            _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x##a[b].qs))),    \
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x##c[b].qs)), 1);                        \
        uint32_t ha, hc;                                                                                          \
        memcpy(&ha, x##a[b].qh, 4);                                                                               \
        memcpy(&hc, x##c[b].qh, 4);                                                                               \
        const __mmask64 neg = _knot_mask64((__mmask64)ha | (__mmask64)hc << 32);                                  \
        const __m512i qx = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi64(raw, shift), m4),                   \
                                           _mm512_maskz_mov_epi8(neg, f0));                                       \
        const __m512i sy = _mm512_mask_sub_epi8(qy, neg, zero, qy);                                               \
        const __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_abs_epi8(qx), sy));                  \
        const __m512 d = _mm512_permutexvar_ps(_mm512_setr_epi32(a, a, a, a, a, a, a, a, c, c, c, c, c, c, c, c), d4); \
        acc##a##c = _mm512_fmadd_ps(d, f, acc##a##c);                                                             \
    }
        ROW_PAIR(0, 1) ROW_PAIR(2, 3)
#undef ROW_PAIR
    }
    s[0] = hsum8(_mm512_castps512_ps256(acc01));
    s[1] = hsum8(_mm512_extractf32x8_ps(acc01, 1));
    s[2] = hsum8(_mm512_castps512_ps256(acc23));
    s[3] = hsum8(_mm512_extractf32x8_ps(acc23, 1));
}
