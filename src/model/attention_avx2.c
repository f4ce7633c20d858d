/*
 * attention_avx2.c - the AVX2/FMA inner loop of the attention's weighted sum of V rows, and the rounding of the
 * softmax weights to F16 (see attention.c).
 * Compiled with -mavx2 -mfma; called only when the AVX2 kernel set is active (zl_cpu_kernels_name()).
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

void zl_attn_fma_row_avx2(float *acc, const float *v, float w, int32_t n);

/* acc[c] = fma(v[c], w, acc[c]) for c < n: one rounding per element, as the scalar fmaf fallback. */
void zl_attn_fma_row_avx2(float *acc, const float *v, float w, int32_t n)
{
    const __m256 wv = _mm256_set1_ps(w);
    int32_t c = 0;
    for (; c + 8 <= n; c += 8)
        _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(_mm256_loadu_ps(v + c), wv, _mm256_loadu_ps(acc + c)));
    for (; c < n; c++)
        acc[c] = fmaf(v[c], w, acc[c]);
}

void zl_attn_fma_row_f16_avx2(float *acc, const uint16_t *v, float w, int32_t n);

/* The same with V in F16 (widened exactly by F16C). */
void zl_attn_fma_row_f16_avx2(float *acc, const uint16_t *v, float w, int32_t n)
{
    const __m256 wv = _mm256_set1_ps(w);
    int32_t c = 0;
    for (; c + 8 <= n; c += 8) {
        const __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + c)));
        _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(vv, wv, _mm256_loadu_ps(acc + c)));
    }
    for (; c < n; c++)
        acc[c] = fmaf(_cvtsh_ss(v[c]), w, acc[c]);
}

void zl_attn_round_f16_avx2(float *x, int32_t n);

/* x[i] = the F16 value nearest x[i] (ties to even), widened back: F16C's conversion, which rounds finite values as
 * zl_fp32_to_fp16 does (subnormal halves included; F16C ignores MXCSR.FTZ on this conversion, and no one sets DAZ).
 * For softmax weights, which are finite. */
void zl_attn_round_f16_avx2(float *x, int32_t n)
{
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++)
        x[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

void zl_attn_v_lanes_f16_avx2(float *lanes, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                              size_t row_stride, const float *w, int32_t p0, int32_t p1);

/* The weighted sum of V rows in lanes, for an F16 cache: lanes[l * hd + c] = fma(V[p][c], w[p], ...) over the
 * positions p in [p0, p1) with p % n_lanes == l, in increasing order, from +0 (lanes no position reaches stay +0):
 * exactly what zl_attn_fma_row_f16_avx2 called position by position into zeroed lanes gives, but each lane's
 * 64-column slice sits in 8 registers while its positions stream past, instead of a load and a store of the
 * accumulators per position. V row p is at blk[p / bs] + (p % bs) * row_stride. hd % 8 == 0. */
void zl_attn_v_lanes_f16_avx2(float *lanes, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                              size_t row_stride, const float *w, int32_t p0, int32_t p1)
{
    /* Positions step by n_lanes = jq whole blocks + jr rows; lanes are visited from p0's lane on, so that their
     * first positions are p0, p0 + 1, ... (no division in the loops: they cost more than a short lane's work). */
    const int32_t jq = n_lanes / bs, jr = n_lanes % bs, l0 = p0 % n_lanes;
    for (int32_t c0 = 0; c0 < hd; c0 += 64) {
        const int nv = hd - c0 >= 64 ? 8 : (int)(hd - c0) / 8;
        int32_t fk = p0 / bs, fo = p0 % bs; /* block and row of the lane's first position */
        for (int i = 0; i < n_lanes; i++) {
            const int l = l0 + i < n_lanes ? l0 + i : l0 + i - n_lanes;
            __m256 acc[8];
            for (int k = 0; k < 8; k++)
                acc[k] = _mm256_setzero_ps();
            int32_t k = fk, o = fo;
            for (int32_t p = p0 + i; p < p1; p += n_lanes) {
                const uint16_t *v = (const uint16_t *)(const void *)(blk[k] + (size_t)o * row_stride) + c0;
                const __m256 wv = _mm256_set1_ps(w[p]);
                if (nv == 8) {
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++)
                        acc[q] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 8 * q))), wv,
                                                 acc[q]);
                } else {
                    for (int q = 0; q < nv; q++)
                        acc[q] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 8 * q))), wv,
                                                 acc[q]);
                }
                k += jq, o += jr;
                if (o >= bs)
                    k++, o -= bs;
            }
            float *out = lanes + (size_t)l * (size_t)hd + c0;
            for (int q = 0; q < nv; q++)
                _mm256_storeu_ps(out + 8 * q, acc[q]);
            if (++fo == bs)
                fk++, fo = 0;
        }
    }
}
