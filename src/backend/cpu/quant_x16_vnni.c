/*
 * quant_x16_vnni.c - Q4_0 (Q4_K) weights in the X16 layout (repack.h) times Q8_0 (Q8_K) activations, AVX-512
 * BW/VL/VNNI.
 *
 * One 32-bit lane per weight row: chunk j of a block (64 bytes, 16 rows x 4 code bytes) gives two code vectors, its
 * low nibbles (elements 4j .. 4j + 3 of each row) and its high nibbles (elements 16 + 4j ..), and each meets the
 * token's 4 activation bytes at the same elements broadcast to every lane: 8 VPDPBUSD per token and block sum
 * q * y exactly for 16 rows, started from -8 * sum(y) (zl_x16_aux) so that the total is sum (q - 8) * y. The float
 * step is llama.cpp's repacked one, acc = fma((float)isum, d_x * d_y, acc), one lane per row. Up to 8 tokens per
 * call share each block's unpacked codes. Same bits as zl_x16_ref (unit test).
 *
 * Compiled with the *_vnni.c flags; called only when the avx512vnni kernel set is active (repack.c). Pure.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "backend/cpu/repack.h"

static inline int32_t load_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

enum { BLOCK_BYTES = 18 * ZL_X16_ROWS };

static inline __attribute__((always_inline)) void x16_body(const int nt, int64_t nb, float *s, size_t s_stride,
                                                           const char *xg, const char *y, size_t y_stride,
                                                           const char *a, size_t a_stride)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[8];
    _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = xg + (size_t)b * BLOCK_BYTES;
        _mm_prefetch(blk + 4 * BLOCK_BYTES, _MM_HINT_T0);
        _mm_prefetch(blk + 4 * BLOCK_BYTES + 64, _MM_HINT_T0);
        _mm_prefetch(blk + 4 * BLOCK_BYTES + 128, _MM_HINT_T0);
        _mm_prefetch(blk + 4 * BLOCK_BYTES + 192, _MM_HINT_T0);
        _mm_prefetch(blk + 4 * BLOCK_BYTES + 256, _MM_HINT_T0);
        const __m512 dx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)blk));
        __m512i w[8];
        for (int j = 0; j < 4; j++) {
            const __m512i raw = _mm512_loadu_si512((const void *)(blk + 32 + 64 * j));
            w[j] = _mm512_and_si512(raw, m4);
            w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
        }
        if (nt <= 2) {
            _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
            {
                const zl_block_q8_0 *yb = (const zl_block_q8_0 *)(const void *)(y + (size_t)t * y_stride) + b;
                const zl_x16_aux *ab = (const zl_x16_aux *)(const void *)(a + (size_t)t * a_stride) + b;
                __m512i i0 = _mm512_set1_epi32(ab->off), i1 = _mm512_setzero_si512(); /* few chains: two each */
                for (int j = 0; j < 8; j += 2) {
                    i0 = _mm512_dpbusd_epi32(i0, w[j], _mm512_set1_epi32(load_i32(yb->qs + 4 * j)));
                    i1 = _mm512_dpbusd_epi32(i1, w[j + 1], _mm512_set1_epi32(load_i32(yb->qs + 4 * j + 4)));
                }
                i0 = _mm512_add_epi32(i0, i1);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_mul_ps(dx, _mm512_set1_ps(ab->d)), acc[t]);
            }
        } else { /* the tokens' chains interleaved step by step (each a sequence of dependent VPDPBUSD) */
            const zl_block_q8_0 *yb[8];
            __m512i is[8];
            _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
            {
                yb[t] = (const zl_block_q8_0 *)(const void *)(y + (size_t)t * y_stride) + b;
                is[t] = _mm512_set1_epi32(((const zl_x16_aux *)(const void *)(a + (size_t)t * a_stride) + b)->off);
            }
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
            {
                _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) is[t] =
                    _mm512_dpbusd_epi32(is[t], w[j], _mm512_set1_epi32(load_i32(yb[t]->qs + 4 * j)));
            }
            _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
            {
                const zl_x16_aux *ab = (const zl_x16_aux *)(const void *)(a + (size_t)t * a_stride) + b;
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(dx, _mm512_set1_ps(ab->d)), acc[t]);
            }
        }
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) _mm512_storeu_ps(s + (size_t)t * s_stride, acc[t]);
}

void zl_q4_0_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs)
{
    (void)pairs; /* Q4_0: one order */
    const char *x = xg, *yy = y, *aa = a;
    switch (nt) {
    case 1: x16_body(1, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    case 2: x16_body(2, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    case 3: x16_body(3, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    case 4: x16_body(4, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    case 5: x16_body(5, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    case 6: x16_body(6, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    case 7: x16_body(7, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    default: x16_body(8, nb, s, s_stride, x, yy, y_stride, aa, a_stride); break;
    }
}

/* Q4_K: per 256-block, the 16 rows' scales and minimums unpacked per lane from the 3 scale words (as
 * k4_scale_min does per row), sub-block by sub-block 8 VPDPBUSD per token give sum q * y, multiplied by the lane's
 * scale and added (exact); the minimum terms in 4 VPDPWSSD of (min_s, min_s') word pairs against the token's
 * pairs of sub-block sums (zl_x16k_aux). Then llama.cpp's two fmas per block and the final acc - accm. */
enum { KBLOCK_BYTES = 144 * ZL_X16_ROWS };

static inline __attribute__((always_inline)) void x16k_body(const int nt, int64_t nb, float *s, size_t s_stride,
                                                            const char *xg, const char *y, size_t y_stride,
                                                            const char *a, size_t a_stride, const bool any_pairs,
                                                            unsigned pairs)
{
    if (!any_pairs) pairs = 0;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m6 = _mm512_set1_epi8(0x3f), m2 = _mm512_set1_epi8(0x03);
    const __m512i lo8 = _mm512_set1_epi32(0xff), w16 = _mm512_set1_epi32(0x00ff00ff);
    __m512 acc[4], accm[4];
    for (int t = 0; t < nt; t++)
        acc[t] = accm[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = xg + (size_t)b * KBLOCK_BYTES;
        for (int p = 0; p < KBLOCK_BYTES; p += 64)
            _mm_prefetch(blk + 2 * KBLOCK_BYTES + p, _MM_HINT_T0);
        const __m512 dx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)blk));
        const __m512 mx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 32)));
        const __m512i u0 = _mm512_loadu_si512((const void *)(blk + 64));
        const __m512i u1 = _mm512_loadu_si512((const void *)(blk + 128));
        const __m512i u2 = _mm512_loadu_si512((const void *)(blk + 192));
        const __m512i sc03 = _mm512_and_si512(u0, m6), mn03 = _mm512_and_si512(u1, m6);
        const __m512i sc47 = _mm512_or_si512(_mm512_and_si512(u2, m4),
                                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m2), 4));
        const __m512i mn47 =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m2), 4));
        const __m512i ml03 = _mm512_and_si512(mn03, w16), mh03 = _mm512_and_si512(_mm512_srli_epi32(mn03, 8), w16);
        const __m512i ml47 = _mm512_and_si512(mn47, w16), mh47 = _mm512_and_si512(_mm512_srli_epi32(mn47, 8), w16);
        __m512i mp[4]; /* gemm order: the minimums of sub-blocks 2c and 2c + 1 as a word pair per lane */
        if (any_pairs) {
            const __m512i even = _mm512_set4_epi32(0x800d800c, 0x80098008, 0x80058004, 0x80018000);
            const __m512i odd = _mm512_set4_epi32(0x800f800e, 0x800b800a, 0x80078006, 0x80038002);
            mp[0] = _mm512_shuffle_epi8(mn03, even);
            mp[1] = _mm512_shuffle_epi8(mn03, odd);
            mp[2] = _mm512_shuffle_epi8(mn47, even);
            mp[3] = _mm512_shuffle_epi8(mn47, odd);
        }
        __m512i isum[4];
        for (int t = 0; t < nt; t++)
            isum[t] = _mm512_setzero_si512();
        const char *qs = blk + 256;
        _Pragma("GCC unroll 8") for (int sb = 0; sb < 8; sb++)
        {
            const int c = sb / 2, hi = sb % 2;
            const __m512i scv = _mm512_and_si512(_mm512_srli_epi32(sb < 4 ? sc03 : sc47, 8 * (sb % 4)), lo8);
            __m512i w[8];
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
            {
                const __m512i raw = _mm512_loadu_si512((const void *)(qs + 64 * (8 * c + j)));
                w[j] = _mm512_and_si512(hi ? _mm512_srli_epi16(raw, 4) : raw, m4);
            }
            _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
            {
                const zl_block_q8_K *yb = (const zl_block_q8_K *)(const void *)(y + (size_t)t * y_stride) + b;
                const int8_t *yq = yb->qs + 64 * c + 32 * hi;
                __m512i p0 = _mm512_setzero_si512(), p1 = _mm512_setzero_si512();
                _Pragma("GCC unroll 4") for (int j = 0; j < 8; j += 2)
                {
                    p0 = _mm512_dpbusd_epi32(p0, w[j], _mm512_set1_epi32(load_i32(yq + 4 * j)));
                    p1 = _mm512_dpbusd_epi32(p1, w[j + 1], _mm512_set1_epi32(load_i32(yq + 4 * j + 4)));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(p0, p1), scv));
                if (any_pairs && hi && (pairs >> t & 1)) { /* llama.cpp's gemm order: both fmas per 64 values */
                    const zl_x16k_aux *ab = (const zl_x16k_aux *)(const void *)(a + (size_t)t * a_stride) + b;
                    const __m512i im = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mp[c], _mm512_set1_epi32(ab->bp[c]));
                    const __m512 dy = _mm512_set1_ps(ab->d);
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dx, dy), acc[t]);
                    accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(im), _mm512_mul_ps(mx, dy), accm[t]);
                    isum[t] = _mm512_setzero_si512();
                }
            }
        }
        for (int t = 0; t < nt; t++) {
            if (any_pairs && (pairs >> t & 1)) continue;
            const zl_x16k_aux *ab = (const zl_x16k_aux *)(const void *)(a + (size_t)t * a_stride) + b;
            __m512i im = _mm512_dpwssd_epi32(_mm512_setzero_si512(), ml03, _mm512_set1_epi32(ab->bs[0]));
            im = _mm512_dpwssd_epi32(im, mh03, _mm512_set1_epi32(ab->bs[1]));
            im = _mm512_dpwssd_epi32(im, ml47, _mm512_set1_epi32(ab->bs[2]));
            im = _mm512_dpwssd_epi32(im, mh47, _mm512_set1_epi32(ab->bs[3]));
            const __m512 dy = _mm512_set1_ps(ab->d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dx, dy), acc[t]);
            accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(im), _mm512_mul_ps(mx, dy), accm[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        _mm512_storeu_ps(s + (size_t)t * s_stride, _mm512_sub_ps(acc[t], accm[t]));
}

void zl_q4_K_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs)
{
    const char *x = xg, *yy = y, *aa = a;
    /* at most 4 tokens per pass: with 8 the per-token accumulators spilled (pp512 148 vs 167 t/s on 1B Q4_K_M) */
    for (int t0 = 0; t0 < nt; t0 += 4, pairs >>= 4) {
        float *st = s + (size_t)t0 * s_stride;
        const char *yt = yy + (size_t)t0 * y_stride, *at = aa + (size_t)t0 * a_stride;
        const int n = nt - t0 < 4 ? nt - t0 : 4;
        const unsigned p = pairs & 15u;
#define X16K(N)                                                                                                   \
    (p ? x16k_body(N, nb, st, s_stride, x, yt, y_stride, at, a_stride, true, p)                                   \
       : x16k_body(N, nb, st, s_stride, x, yt, y_stride, at, a_stride, false, 0))
        switch (n) {
        case 1: X16K(1); break;
        case 2: X16K(2); break;
        case 3: X16K(3); break;
        default: X16K(4); break;
        }
#undef X16K
    }
}

#endif
