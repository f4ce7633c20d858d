/*
 * attention_avx512.c - the weighted sum of V rows for several query heads that share a KV head (see attention.c's
 * attend_group), with 16-float vectors.
 * Compiled with -mavx512f; called only when an AVX-512 kernel set is active (zl_cpu_kernels_name()).
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

void zl_attn_v_lanes_f16_group_avx512(float *lanes, int g, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                                      size_t row_stride, const float *w, size_t w_stride, int32_t p0, int32_t p1);

/* For each head k < g (g <= 4), what zl_attn_v_lanes_f16_avx2 gives with the weights w + k * w_stride into the lanes
 * at lanes + k * n_lanes * hd: lane l, column c = fma(V[p][c], w_k[p], ...) over the positions p in [p0, p1) with
 * p % n_lanes == l, in increasing order, from +0; lanes no position reaches (fewer positions than lanes) are not
 * written. Each V row slice is widened once for the g heads (the per-element
 * arithmetic, one fused multiply-add per position, does not depend on the vector width). V row p is at
 * blk[p / bs] + (p % bs) * row_stride. hd % 16 == 0. */
static inline __attribute__((always_inline)) void v_lanes_group(const int g, float *lanes, int n_lanes, int32_t hd,
                                                                const char *const *blk, int32_t bs, size_t row_stride,
                                                                const float *w, size_t w_stride, int32_t p0,
                                                                int32_t p1)
{
    const int32_t jq = n_lanes / bs, jr = n_lanes % bs, l0 = p0 % n_lanes;
    const int n_reach = p1 - p0 < n_lanes ? (int)(p1 - p0) : n_lanes; /* lanes some position reaches */
    for (int32_t c0 = 0; c0 < hd; c0 += 64) {
        const int nv = hd - c0 >= 64 ? 4 : (int)(hd - c0) / 16;
        int32_t fk = p0 / bs, fo = p0 % bs; /* block and row of the lane's first position */
        for (int i = 0; i < n_reach; i++) {
            const int l = l0 + i < n_lanes ? l0 + i : l0 + i - n_lanes;
            __m512 acc[4][4];
            _Pragma("GCC unroll 4") for (int h = 0; h < g; h++)
            {
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) acc[h][q] = _mm512_setzero_ps();
            }
            int32_t k = fk, o = fo;
            for (int32_t p = p0 + i; p < p1; p += n_lanes) {
                const uint16_t *v = (const uint16_t *)(const void *)(blk[k] + (size_t)o * row_stride) + c0;
                if (nv == 4) {
                    __m512 vv[4];
                    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) vv[q] =
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(v + 16 * q)));
                    _Pragma("GCC unroll 4") for (int h = 0; h < g; h++)
                    {
                        const __m512 wv = _mm512_set1_ps(w[(size_t)h * w_stride + (size_t)p]);
                        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) acc[h][q] =
                            _mm512_fmadd_ps(vv[q], wv, acc[h][q]);
                    }
                } else {
                    for (int q = 0; q < nv; q++) {
                        const __m512 vv =
                            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(v + 16 * q)));
                        for (int h = 0; h < g; h++)
                            acc[h][q] = _mm512_fmadd_ps(vv, _mm512_set1_ps(w[(size_t)h * w_stride + (size_t)p]),
                                                        acc[h][q]);
                    }
                }
                k += jq, o += jr;
                if (o >= bs)
                    k++, o -= bs;
            }
            for (int h = 0; h < g; h++) {
                float *out = lanes + ((size_t)h * (size_t)n_lanes + (size_t)l) * (size_t)hd + c0;
                for (int q = 0; q < nv; q++)
                    _mm512_storeu_ps(out + 16 * q, acc[h][q]);
            }
            if (++fo == bs)
                fk++, fo = 0;
        }
    }
}

void zl_attn_v_lanes_f16_group_avx512(float *lanes, int g, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                                      size_t row_stride, const float *w, size_t w_stride, int32_t p0, int32_t p1)
{
    switch (g) {
    case 2: v_lanes_group(2, lanes, n_lanes, hd, blk, bs, row_stride, w, w_stride, p0, p1); break;
    case 3: v_lanes_group(3, lanes, n_lanes, hd, blk, bs, row_stride, w, w_stride, p0, p1); break;
    case 4: v_lanes_group(4, lanes, n_lanes, hd, blk, bs, row_stride, w, w_stride, p0, p1); break;
    default:
        for (int h = 0; h < g; h++)
            v_lanes_group(1, lanes + (size_t)h * (size_t)n_lanes * (size_t)hd, n_lanes, hd, blk, bs, row_stride,
                          w + (size_t)h * w_stride, w_stride, p0, p1);
    }
}
