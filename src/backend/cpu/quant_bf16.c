/*
 * quant_bf16.c - BF16 x BF16 dot products with AVX512-BF16's VDPBF16PS, in the order a ggml built for a CPU with
 * that extension computes them (llama.cpp builds for the host, so on such a CPU this is what it runs).
 *
 * VDPBF16PS (_mm512_dpbf16_ps(acc, a, b)) takes 32 bf16 pairs and 16 float lanes: lane j becomes
 * acc_j + a[2j+1] b[2j+1], rounded, then that + a[2j] b[2j], rounded (each step one fused multiply-add, so the
 * exact bf16 product is added with a single rounding to nearest even), with bf16 inputs and the accumulator read as
 * zero when subnormal and subnormal results flushed to zero, whatever MXCSR says. Its rounding therefore differs
 * from the AVX2 / AVX-512F kernels' (convert to float, fma per element), which is why these kernels exist.
 *
 *   - vec_dot (one token): two accumulators over steps of 64 elements (the first takes elements i..i+31, the
 *     second i+32..i+63), each reduced across its 16 lanes with _mm512_reduce_add_ps and added to a double sum,
 *     the first then the second; the elements after the last whole 64 are added one by one as float products to
 *     that double sum.
 *   - vec_dot_gemm (llama.cpp's tinyBLAS for batches of 2+ tokens): one accumulator over steps of 32 elements,
 *     reduced with _mm512_reduce_add_ps; only for n a multiple of 32 (tinyBLAS declines other row lengths and the
 *     matmul falls back to vec_dot; ops.c checks gemm_k).
 *
 * _mm512_reduce_add_ps is the intrinsic ggml uses; its lane tree (upper 8 + lower 8, then 4 + 4, then lanes
 * (0 + 2) + (1 + 3)) comes from the compiler's header, the same in GCC and clang.
 *
 * Compiled with -mavx512f -mavx512bf16 -mavx512vl (Makefile: *_bf16.c, x86 only); dtype.c calls these only when
 * cpuid reports AVX512-BF16 and the OS saves ZMM state. Pure functions, callable from any thread.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>

#include "core/fp16.h"

/* 32 bf16 values as the instruction's operand (a bit cast; no conversion). */
static inline __m512bh load_bf16x32(const uint16_t *p)
{
    return (__m512bh)_mm512_loadu_si512((const void *)p);
}

void zl_bf16_vec_dot_avx512bf16(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 c1 = _mm512_setzero_ps(), c2 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        c1 = _mm512_dpbf16_ps(c1, load_bf16x32(x + i), load_bf16x32(y + i));
        c2 = _mm512_dpbf16_ps(c2, load_bf16x32(x + i + 32), load_bf16x32(y + i + 32));
    }
    double sum = 0.0;
    sum += (double)_mm512_reduce_add_ps(c1);
    sum += (double)_mm512_reduce_add_ps(c2);
    for (; i < n; i++) sum += (double)(zl_bf16_to_fp32(x[i]) * zl_bf16_to_fp32(y[i]));
    *s = (float)sum;
}

void zl_bf16_vec_dot_gemm_avx512bf16(int64_t n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx, *y = vy;
    __m512 c = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 32) c = _mm512_dpbf16_ps(c, load_bf16x32(x + i), load_bf16x32(y + i));
    *s = _mm512_reduce_add_ps(c);
}

#endif
