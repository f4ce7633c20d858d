/*
 * quant_x16_avx2.c - Q4_0 (Q4_K) weights in the X16 layout (repack.h) times Q8_0 (Q8_K) activations, AVX2 + FMA +
 * F16C: the avx2 and avx512 kernel sets' version of quant_x16_vnni.c, for CPUs without AVX-512 VNNI (llama.cpp
 * repacks on every AVX2 CPU).
 *
 * One 32-bit lane per weight row, 8 rows per register, two registers per 16-row group. Without VPDPBUSD the
 * integer sums take VPMADDUBSW (unsigned codes times the token's signed bytes, adjacent products added in 16 bits)
 * summed in 16 bits over a whole 32-value block or sub-block (at most 32 * 15 * 127 = 60960 in magnitude split over
 * the two 16-bit halves of a lane, each at most 30480: no saturation), then VPMADDWD: by ones for Q4_0, and by the
 * row's sub-block scale in both halves for Q4_K, which makes the scale multiply free. The float steps are
 * quant_x16_vnni.c's, lane for lane: same bits (unit test against zl_x16_ref).
 *
 * Compiled with the *_avx2.c flags; called only when the avx2 or avx512 kernel set is active (repack.c). Pure.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "backend/cpu/repack.h"

static inline int32_t load_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

enum { BLOCK_BYTES = 18 * ZL_X16_ROWS, KBLOCK_BYTES = 144 * ZL_X16_ROWS };

/* Q4_0: tokens in passes of up to 4 (acc: 2 registers per token). */
static inline __attribute__((always_inline)) void x16_body(const int nt, int64_t nb, float *s, size_t s_stride,
                                                           const char *xg, const char *y, size_t y_stride,
                                                           const char *a, size_t a_stride)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[4][2];
    for (int t = 0; t < nt; t++)
        acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = xg + (size_t)b * BLOCK_BYTES;
        for (int p = 0; p < BLOCK_BYTES; p += 64)
            _mm_prefetch(blk + 4 * BLOCK_BYTES + p, _MM_HINT_T0);
        for (int h = 0; h < 2; h++) { /* rows 8h .. 8h + 7 (AVX2 has 16 registers: one half's codes at a time) */
            const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * h)));
            __m256i w[8]; /* chunk j's codes: j < 4 low nibbles, j >= 4 high */
            for (int j = 0; j < 4; j++) {
                const __m256i raw = load256(blk + 32 + 64 * j + 32 * h);
                w[j] = _mm256_and_si256(raw, m4);
                w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
            {
                const zl_block_q8_0 *yb = (const zl_block_q8_0 *)(const void *)(y + (size_t)t * y_stride) + b;
                const zl_x16_aux *ab = (const zl_x16_aux *)(const void *)(a + (size_t)t * a_stride) + b;
                __m256i s16 = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(load_i32(yb->qs)));
                for (int j = 1; j < 8; j++)
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(w[j],
                                                                     _mm256_set1_epi32(load_i32(yb->qs + 4 * j))));
                const __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(ab->off));
                acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, _mm256_set1_ps(ab->d)),
                                            acc[t][h]);
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        _mm256_storeu_ps(s + (size_t)t * s_stride, acc[t][0]);
        _mm256_storeu_ps(s + (size_t)t * s_stride + 8, acc[t][1]);
    }
}

void zl_q4_0_x16_avx2(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs)
{
    (void)pairs; /* Q4_0: one order */
    const char *x = xg, *yy = y, *aa = a;
    for (int t0 = 0; t0 < nt; t0 += 4) {
        float *st = s + (size_t)t0 * s_stride;
        const char *yt = yy + (size_t)t0 * y_stride, *at = aa + (size_t)t0 * a_stride;
        switch (nt - t0 < 4 ? nt - t0 : 4) {
        case 1: x16_body(1, nb, st, s_stride, x, yt, y_stride, at, a_stride); break;
        case 2: x16_body(2, nb, st, s_stride, x, yt, y_stride, at, a_stride); break;
        case 3: x16_body(3, nb, st, s_stride, x, yt, y_stride, at, a_stride); break;
        default: x16_body(4, nb, st, s_stride, x, yt, y_stride, at, a_stride); break;
        }
    }
}

/* Q4_K: per 256-block and half of the rows, the scales and minimums unpacked per lane from the 3 scale words (as
 * quant_x16_vnni.c), each sub-block's scale in both 16-bit halves of its lane for VPMADDWD; the minimum terms in
 * VPMADDWD of word pairs, (min_s, min_s') against the token's (b_s, b_s'), for either order. */
static inline __attribute__((always_inline)) void x16k_body(const int nt, int64_t nb, float *s, size_t s_stride,
                                                            const char *xg, const char *y, size_t y_stride,
                                                            const char *a, size_t a_stride, const bool any_pairs,
                                                            unsigned pairs)
{
    if (!any_pairs) pairs = 0;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m6 = _mm256_set1_epi8(0x3f), m2 = _mm256_set1_epi8(0x03);
    const __m256i lo8 = _mm256_set1_epi32(0xff), w16 = _mm256_set1_epi32(0x00ff00ff);
    const __m256i even = _mm256_set_epi32(0x800d800c, 0x80098008, 0x80058004, 0x80018000, 0x800d800c, 0x80098008,
                                          0x80058004, 0x80018000);
    const __m256i odd = _mm256_set_epi32(0x800f800e, 0x800b800a, 0x80078006, 0x80038002, 0x800f800e, 0x800b800a,
                                         0x80078006, 0x80038002);
    __m256 acc[2][2], accm[2][2];
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < 2; h++)
            acc[t][h] = accm[t][h] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const char *blk = xg + (size_t)b * KBLOCK_BYTES;
        for (int p = 0; p < KBLOCK_BYTES; p += 64)
            _mm_prefetch(blk + 2 * KBLOCK_BYTES + p, _MM_HINT_T0);
        for (int h = 0; h < 2; h++) { /* rows 8h .. 8h + 7 */
            const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * h)));
            const __m256 mx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(blk + 32 + 16 * h)));
            const __m256i u0 = load256(blk + 64 + 32 * h), u1 = load256(blk + 128 + 32 * h);
            const __m256i u2 = load256(blk + 192 + 32 * h);
            const __m256i sc03 = _mm256_and_si256(u0, m6), mn03 = _mm256_and_si256(u1, m6);
            const __m256i sc47 = _mm256_or_si256(
                _mm256_and_si256(u2, m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), m2), 4));
            const __m256i mn47 =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4),
                                _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), m2), 4));
            __m256i isum[2];
            for (int t = 0; t < nt; t++)
                isum[t] = _mm256_setzero_si256();
            const char *qs = blk + 256 + 32 * h;
            _Pragma("GCC unroll 8") for (int sb = 0; sb < 8; sb++)
            {
                const int c = sb / 2, hi = sb % 2;
                const __m256i sc = _mm256_and_si256(_mm256_srli_epi32(sb < 4 ? sc03 : sc47, 8 * (sb % 4)), lo8);
                const __m256i sc16 = _mm256_or_si256(sc, _mm256_slli_epi32(sc, 16)); /* in both halves */
                __m256i w[8];
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
                {
                    const __m256i raw = load256(qs + 64 * (8 * c + j));
                    w[j] = _mm256_and_si256(hi ? _mm256_srli_epi16(raw, 4) : raw, m4);
                }
                _Pragma("GCC unroll 2") for (int t = 0; t < nt; t++)
                {
                    const zl_block_q8_K *yb = (const zl_block_q8_K *)(const void *)(y + (size_t)t * y_stride) + b;
                    const int8_t *yq = yb->qs + 64 * c + 32 * hi;
                    __m256i s16 = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(load_i32(yq)));
                    for (int j = 1; j < 8; j++)
                        s16 = _mm256_add_epi16(s16,
                                               _mm256_maddubs_epi16(w[j], _mm256_set1_epi32(load_i32(yq + 4 * j))));
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(s16, sc16));
                    if (any_pairs && hi && (pairs >> t & 1)) { /* llama.cpp's gemm order: both fmas per 64 */
                        const zl_x16k_aux *ab = (const zl_x16k_aux *)(const void *)(a + (size_t)t * a_stride) + b;
                        const __m256i mp = _mm256_shuffle_epi8(c < 2 ? mn03 : mn47, c % 2 ? odd : even);
                        const __m256i im = _mm256_madd_epi16(mp, _mm256_set1_epi32(ab->bp[c]));
                        const __m256 dy = _mm256_set1_ps(ab->d);
                        acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dx, dy), acc[t][h]);
                        accm[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(im), _mm256_mul_ps(mx, dy), accm[t][h]);
                        isum[t] = _mm256_setzero_si256();
                    }
                }
            }
            const __m256i ml03 = _mm256_and_si256(mn03, w16);
            const __m256i mh03 = _mm256_and_si256(_mm256_srli_epi32(mn03, 8), w16);
            const __m256i ml47 = _mm256_and_si256(mn47, w16);
            const __m256i mh47 = _mm256_and_si256(_mm256_srli_epi32(mn47, 8), w16);
            for (int t = 0; t < nt; t++) {
                if (any_pairs && (pairs >> t & 1)) continue;
                const zl_x16k_aux *ab = (const zl_x16k_aux *)(const void *)(a + (size_t)t * a_stride) + b;
                __m256i im = _mm256_madd_epi16(ml03, _mm256_set1_epi32(ab->bs[0]));
                im = _mm256_add_epi32(im, _mm256_madd_epi16(mh03, _mm256_set1_epi32(ab->bs[1])));
                im = _mm256_add_epi32(im, _mm256_madd_epi16(ml47, _mm256_set1_epi32(ab->bs[2])));
                im = _mm256_add_epi32(im, _mm256_madd_epi16(mh47, _mm256_set1_epi32(ab->bs[3])));
                const __m256 dy = _mm256_set1_ps(ab->d);
                acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dx, dy), acc[t][h]);
                accm[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(im), _mm256_mul_ps(mx, dy), accm[t][h]);
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int h = 0; h < 2; h++)
            _mm256_storeu_ps(s + (size_t)t * s_stride + 8 * h, _mm256_sub_ps(acc[t][h], accm[t][h]));
}

void zl_q4_K_x16_avx2(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs)
{
    const char *x = xg, *yy = y, *aa = a;
    for (int t0 = 0; t0 < nt; t0 += 2, pairs >>= 2) {
        float *st = s + (size_t)t0 * s_stride;
        const char *yt = yy + (size_t)t0 * y_stride, *at = aa + (size_t)t0 * a_stride;
        const unsigned p = pairs & 3u;
        if (nt - t0 == 1)
            p ? x16k_body(1, nb, st, s_stride, x, yt, y_stride, at, a_stride, true, p)
              : x16k_body(1, nb, st, s_stride, x, yt, y_stride, at, a_stride, false, 0);
        else
            p ? x16k_body(2, nb, st, s_stride, x, yt, y_stride, at, a_stride, true, p)
              : x16k_body(2, nb, st, s_stride, x, yt, y_stride, at, a_stride, false, 0);
    }
}

#endif
