/*
 * quant_x16_vnni.c - Q4_0 weights in the X16 layout (repack.h) times Q8_0 activations, AVX-512 BW/VL/VNNI.
 *
 * One 32-bit lane per weight row: chunk j of a block (64 bytes, 16 rows x 4 code bytes) gives two code vectors, its
 * low nibbles (elements 4j .. 4j + 3 of each row) and its high nibbles (elements 16 + 4j ..), and each meets the
 * token's 4 activation bytes at the same elements broadcast to every lane: 8 VPDPBUSD per token and block sum
 * q * y exactly for 16 rows, started from -8 * sum(y) (zl_x16_aux) so that the total is sum (q - 8) * y. The float
 * step is llama.cpp's repacked one, acc = fma((float)isum, d_x * d_y, acc), one lane per row. Up to 8 tokens per
 * call share each block's unpacked codes. Same bits as zl_q4_0_x16_ref (unit test).
 *
 * Compiled with the *_vnni.c flags; called only when the avx512vnni kernel set is active (repack.c). Pure.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "backend/cpu/repack.h"

void zl_q4_0_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const zl_x16_aux *a, size_t a_stride, int nt);

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
    for (int t = 0; t < nt; t++)
        acc[t] = _mm512_setzero_ps();
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
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
        {
            const zl_block_q8_0 *yb = (const zl_block_q8_0 *)(const void *)(y + (size_t)t * y_stride) + b;
            const zl_x16_aux *ab = (const zl_x16_aux *)(const void *)(a + (size_t)t * a_stride) + b;
            __m512i i0 = _mm512_set1_epi32(ab->off);
            if (nt <= 2) { /* few chains: split each in two for latency */
                __m512i i1 = _mm512_setzero_si512();
                for (int j = 0; j < 8; j += 2) {
                    i0 = _mm512_dpbusd_epi32(i0, w[j], _mm512_set1_epi32(load_i32(yb->qs + 4 * j)));
                    i1 = _mm512_dpbusd_epi32(i1, w[j + 1], _mm512_set1_epi32(load_i32(yb->qs + 4 * j + 4)));
                }
                i0 = _mm512_add_epi32(i0, i1);
            } else {
                for (int j = 0; j < 8; j++)
                    i0 = _mm512_dpbusd_epi32(i0, w[j], _mm512_set1_epi32(load_i32(yb->qs + 4 * j)));
            }
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_mul_ps(dx, _mm512_set1_ps(ab->d)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        _mm512_storeu_ps(s + (size_t)t * s_stride, acc[t]);
}

void zl_q4_0_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const zl_x16_aux *a, size_t a_stride, int nt)
{
    const char *x = xg, *yy = y, *aa = (const char *)(const void *)a;
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

#endif
