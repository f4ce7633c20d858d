/*
 * sampler_avx2.c - the sampler's candidate weights (zl_sample_weight, sampler.h) 8 at a time with AVX2: the same
 * float operations in the same order (no FMA), so the same bits as the scalar function.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

int32_t zl_sample_weights_avx2(const float *l, int32_t n, bool raw, float max, float temp, double *w);

int32_t zl_sample_weights_avx2(const float *l, int32_t n, bool raw, float max, float temp, double *w)
{
    const __m256 vmax = _mm256_set1_ps(max), vt = _mm256_set1_ps(temp), lo = _mm256_set1_ps(-87.0f);
    const __m256 magic = _mm256_set1_ps(12582912.0f), log2e = _mm256_set1_ps(1.44269504f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693145751953125f), ln2_lo = _mm256_set1_ps(1.428606765330187e-6f);
    const __m256 inf = _mm256_set1_ps(__builtin_inff()), ninf = _mm256_set1_ps(-__builtin_inff());
    const __m256 c[7] = {_mm256_set1_ps(1.0f / 720), _mm256_set1_ps(1.0f / 120), _mm256_set1_ps(1.0f / 24),
                         _mm256_set1_ps(1.0f / 6),   _mm256_set1_ps(0.5f),        _mm256_set1_ps(1.0f),
                         _mm256_set1_ps(1.0f)};
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(l + i);
        if (raw) /* NaN and +inf count as -inf: keep v where v < inf */
            v = _mm256_blendv_ps(ninf, v, _mm256_cmp_ps(v, inf, _CMP_LT_OQ));
        const __m256 x = _mm256_div_ps(_mm256_sub_ps(v, vmax), vt);
        const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GT_OQ);
        const __m256 xc = _mm256_blendv_ps(lo, x, keep);
        const __m256 k = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(xc, log2e), magic), magic);
        const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(k, ln2_hi)), _mm256_mul_ps(k, ln2_lo));
        __m256 p = c[0];
        for (int j = 1; j < 7; j++)
            p = _mm256_add_ps(_mm256_mul_ps(p, r), c[j]);
        const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)), 23);
        const __m256 y = _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
        _mm256_storeu_pd(w + i, _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
        _mm256_storeu_pd(w + i + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
    }
    return i;
}
