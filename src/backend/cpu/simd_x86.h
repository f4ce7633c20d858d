/*
 * simd_x86.h - small inline helpers shared by the x86 kernel files (quant_avx2.c, quant_avx512.c, quant_vnni.c).
 * Include only from files compiled with AVX2 + F16C (the Makefile's per-file flags) and only on x86.
 */
#ifndef ZILI_BACKEND_CPU_SIMD_X86_H
#define ZILI_BACKEND_CPU_SIMD_X86_H

#include <immintrin.h>
#include <stdint.h>

/* One half -> float with F16C (the portable zl_fp16_to_fp32 branches; this is on every block's path). */
static inline float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* Sum of the 8 lanes in the pairing of ggml's AVX2 hsum_float_8 (the quantized dots' final step):
 * (hi128 + lo128), then 2 + 2, then 1 + 1. */
static inline float hsum8(__m256 v)
{
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

#endif
