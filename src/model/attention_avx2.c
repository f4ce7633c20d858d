/*
 * attention_avx2.c - the AVX2/FMA inner loop of the attention's weighted sum of V rows (see attention.c).
 * Compiled with -mavx2 -mfma; called only when the AVX2 kernel set is active (zl_cpu_kernels_name()).
 */
#include <immintrin.h>
#include <math.h>
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
