/*
 * quant_tiled_vnni.c - llama.cpp's tiled K-quant order (batches of 8+ tokens, see ops.c) for one Q4_K or Q6_K
 * weight row and 4 or 8 tokens at once, with AVX-512 BW/VL/VNNI; each token's result bit-identical to
 * zl_q4_K_tiled_dot_ref / zl_q6_K_tiled_dot_ref.
 *
 * The order fixes only the float steps per (row, token, 256-block): the exact integer totals
 * s1 = sum_j sc_j * (q_j . y_j) and s2 = sum_j m_j * (sum of y_j), then r = fma(-dmin, s2, d * s1) and
 * acc = fma(r, d8, acc) (Q6_K: s1 over codes - 32, acc = fma(d * s1, d8, acc)). The integers may be formed any
 * way, so they are formed wide here:
 *   - one register holds a 32-byte chunk's low nibbles (sub-block 2h) in its low half and high nibbles (2h + 1) in
 *     its high half, which is exactly the layout of the activation bytes 64h..64h+63: one maddubs and one VPDPWSSD
 *     (with sub-block 2h's scale in the low half, 2h + 1's in the high) per token cover 64 values;
 *   - Q6_K likewise puts two 32-value chunks (4 sub-blocks of 16) in one register, matching 64 consecutive
 *     activation bytes, and takes its -32 offset once per block from the activation sums;
 *   - the codes are unpacked once for the 4 tokens;
 *   - the 4 tokens' totals are reduced together (horizontal adds), and their float steps run in the 4 lanes of
 *     one vector, each lane the scalar operation.
 *
 * Each call prefetches the next row (the one after it in memory), as the one-token kernels do.
 *
 * Compiled with the *_vnni.c flags; called only when zl_cpu_kernels_name() is "avx512vnni" (ops.c). Pure.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "backend/cpu/simd_x86.h" /* h2f */

/* The 8 lanes' totals of 4 vectors: [sum a, sum b, sum c, sum d] (exact integer sums). */
static inline __m128i totals4(__m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

static inline __m256i fold512(__m512i v)
{
    return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

/* The 4 tokens' exact block totals from their 16-lane sums. */
static inline __m128i group_totals(const __m512i sum[4])
{
    return totals4(fold512(sum[0]), fold512(sum[1]), fold512(sum[2]), fold512(sum[3]));
}

/* Token 4g + k's result (lane k of acc[g]) to s[(4g + k) * s_stride]. */
static inline void store_groups(float *s, size_t s_stride, const __m128 acc[2], int nt)
{
    for (int g = 0; g < nt / 4; g++) {
        float out[4];
        _mm_storeu_ps(out, acc[g]);
        for (int k = 0; k < 4; k++)
            s[(size_t)(4 * g + k) * s_stride] = out[k];
    }
}

/* nt = 4 or 8 tokens (a compile-time constant at each call): the codes unpacked once for all of them; each group of
 * 4 tokens' totals reduced together and stepped in the 4 lanes of one vector. */
static inline __attribute__((always_inline)) void q4_K_tiled(const int nt, int64_t n, float *s, size_t s_stride,
                                                             const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q4_K *x = vx;
    const zl_block_q8_K *y[8];
#pragma GCC unroll 8
    for (int k = 0; k < nt; k++)
        y[k] = (const zl_block_q8_K *)(const void *)((const char *)vy + (size_t)k * y_stride);
    const __m512i m4 = _mm512_set1_epi8(0x0f), zero = _mm512_setzero_si512();
    /* per-word shift counts: 0 in the low half (low nibbles), 4 in the high half (high nibbles) */
    const __m512i shift = _mm512_inserti64x4(zero, _mm256_set1_epi16(4), 1);
    __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()}; /* lane k of acc[g]: token 4g + k */
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        { /* block b of the next row (rows are contiguous in a weight matrix; only prefetched, never read) */
            const char *nx = (const char *)(x + n / ZL_QK_K + b);
            _mm_prefetch(nx, _MM_HINT_T0);
            _mm_prefetch(nx + 64, _MM_HINT_T0);
            _mm_prefetch(nx + 128, _MM_HINT_T0);
            _mm_prefetch(nx + sizeof *x - 1, _MM_HINT_T0); /* points at most 64 apart: every line of the block */
        }
        /* scales and minimums, one byte each (see k4_unpack4 in quant_rows4_vnni.c for the bit layout) */
        uint32_t u0, u1, u2;
        memcpy(&u0, x[b].scales, 4);
        memcpy(&u1, x[b].scales + 4, 4);
        memcpy(&u2, x[b].scales + 8, 4);
        const uint64_t sc = (uint64_t)(u0 & 0x3f3f3f3fu) |
                            (uint64_t)((u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4) << 32;
        const uint64_t mn = (uint64_t)(u1 & 0x3f3f3f3fu) |
                            (uint64_t)(((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4) << 32;
        const __m512i scw = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        __m512i sum[8];
#pragma GCC unroll 8
        for (int k = 0; k < nt; k++)
            sum[k] = zero;
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++) {
            const __m512i codes = _mm512_and_si512(
                _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * h))),
                                  shift),
                m4);
            const __m512i idx =
                _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * h)), _mm256_set1_epi16((short)(2 * h + 1)), 1);
            const __m512i scv = _mm512_permutexvar_epi16(idx, scw);
#pragma GCC unroll 8
            for (int k = 0; k < nt; k++)
                sum[k] = _mm512_dpwssd_epi32(
                    sum[k], _mm512_maddubs_epi16(codes, _mm512_loadu_si512((const void *)(y[k][b].qs + 64 * h))),
                    scv);
        }
        /* s2: each minimum times the sum of its 32 activations (bsums 2j and 2j + 1) */
        const __m128i mb = _mm_cvtsi64_si128((long long)mn);
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mb, mb)); /* m0 m0 m1 m1 ... m7 m7 */
        const __m128 d = _mm_set1_ps(h2f(x[b].d)), mdmin = _mm_set1_ps(-h2f(x[b].dmin));
#pragma GCC unroll 2
        for (int g = 0; g < nt / 4; g++) {
            const zl_block_q8_K *const *yg = y + 4 * g;
            const __m128i s1 = group_totals(sum + 4 * g);
            __m256i p[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                p[k] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)yg[k][b].bsums), m16);
            const __m128i s2 = totals4(p[0], p[1], p[2], p[3]);
            const __m128 r = _mm_fmadd_ps(mdmin, _mm_cvtepi32_ps(s2), _mm_mul_ps(d, _mm_cvtepi32_ps(s1)));
            acc[g] = _mm_fmadd_ps(r, _mm_setr_ps(yg[0][b].d, yg[1][b].d, yg[2][b].d, yg[3][b].d), acc[g]);
        }
    }
    store_groups(s, s_stride, acc, nt);
}

void zl_q4_K_tiled_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    q4_K_tiled(4, n, s, s_stride, vx, vy, y_stride);
}

void zl_q4_K_tiled_dot8_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    q4_K_tiled(8, n, s, s_stride, vx, vy, y_stride);
}

/* Q6_K: per 128 values h, ql's 64 bytes give the low 4 bits of chunks 0, 1 (low nibbles) and 2, 3 (high nibbles);
 * qh's 32 bytes hold bits 4-5 of chunk c at bits 2c, 2c + 1. */
static inline __attribute__((always_inline)) void q6_K_tiled(const int nt, int64_t n, float *s, size_t s_stride,
                                                             const void *vx, const void *vy, size_t y_stride)
{
    const zl_block_q6_K *x = vx;
    const zl_block_q8_K *y[8];
#pragma GCC unroll 8
    for (int k = 0; k < nt; k++)
        y[k] = (const zl_block_q8_K *)(const void *)((const char *)vy + (size_t)k * y_stride);
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30), zero = _mm512_setzero_si512();
    const __m512i up = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);   /* chunks 0 | 1 */
    const __m512i down = _mm512_inserti64x4(zero, _mm256_set1_epi16(2), 1);                 /* chunks 2 | 3 */
    __m128 acc[2] = {_mm_setzero_ps(), _mm_setzero_ps()}; /* lane k of acc[g]: token 4g + k */
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        { /* block b of the next row, as for Q4_K */
            const char *nx = (const char *)(x + n / ZL_QK_K + b);
            _mm_prefetch(nx, _MM_HINT_T0);
            _mm_prefetch(nx + 64, _MM_HINT_T0);
            _mm_prefetch(nx + 128, _MM_HINT_T0);
            _mm_prefetch(nx + 192, _MM_HINT_T0);
            _mm_prefetch(nx + sizeof *x - 1, _MM_HINT_T0);
        }
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[b].scales));
        const __m512i scw = _mm512_castsi256_si512(sc16);
        __m512i sum[8];
#pragma GCC unroll 8
        for (int k = 0; k < nt; k++)
            sum[k] = zero;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512((const void *)(x[b].ql + 64 * h));
            const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h)));
            const __m512i c01 = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                                _mm512_and_si512(_mm512_sllv_epi16(hb, up), m30));
            const __m512i c23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                                _mm512_and_si512(_mm512_srlv_epi16(hb, down), m30));
            /* 128-bit lane i of chunk pair t's scales: sub-block 8h + 4t + i */
            const __m512i s01 = _mm512_permutexvar_epi16(
                _mm512_add_epi16(_mm512_set1_epi16((short)(8 * h)),
                                 _mm512_setr_epi32(0, 0, 0, 0, 0x00010001, 0x00010001, 0x00010001, 0x00010001,
                                                   0x00020002, 0x00020002, 0x00020002, 0x00020002, 0x00030003,
                                                   0x00030003, 0x00030003, 0x00030003)),
                scw);
            const __m512i s23 = _mm512_permutexvar_epi16(
                _mm512_add_epi16(_mm512_set1_epi16((short)(8 * h + 4)),
                                 _mm512_setr_epi32(0, 0, 0, 0, 0x00010001, 0x00010001, 0x00010001, 0x00010001,
                                                   0x00020002, 0x00020002, 0x00020002, 0x00020002, 0x00030003,
                                                   0x00030003, 0x00030003, 0x00030003)),
                scw);
#pragma GCC unroll 8
            for (int k = 0; k < nt; k++) {
                const int8_t *q8 = y[k][b].qs + 128 * h;
                sum[k] = _mm512_dpwssd_epi32(sum[k], _mm512_maddubs_epi16(c01, _mm512_loadu_si512((const void *)q8)),
                                             s01);
                sum[k] = _mm512_dpwssd_epi32(
                    sum[k], _mm512_maddubs_epi16(c23, _mm512_loadu_si512((const void *)(q8 + 64))), s23);
            }
        }
        const __m128 d = _mm_set1_ps(h2f(x[b].d));
#pragma GCC unroll 2
        for (int g = 0; g < nt / 4; g++) {
            const zl_block_q8_K *const *yg = y + 4 * g;
            __m256i p[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                p[k] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)yg[k][b].bsums), sc16);
            const __m128i s1 = _mm_sub_epi32(
                group_totals(sum + 4 * g),
                _mm_slli_epi32(totals4(p[0], p[1], p[2], p[3]), 5));
            acc[g] = _mm_fmadd_ps(_mm_mul_ps(d, _mm_cvtepi32_ps(s1)),
                                  _mm_setr_ps(yg[0][b].d, yg[1][b].d, yg[2][b].d, yg[3][b].d), acc[g]);
        }
    }
    store_groups(s, s_stride, acc, nt);
}

void zl_q6_K_tiled_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    q6_K_tiled(4, n, s, s_stride, vx, vy, y_stride);
}

void zl_q6_K_tiled_dot8_vnni(int64_t n, float *s, size_t s_stride, const void *vx, const void *vy, size_t y_stride)
{
    q6_K_tiled(8, n, s, s_stride, vx, vy, y_stride);
}


#endif
