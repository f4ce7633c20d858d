/*
 * quant.h - quantized block layouts and the CPU kernels behind the dtype traits table.
 *
 * Block layouts are ggml's, byte for byte (a GGUF tensor's data is an array of these blocks; the sizes are
 * static_assert'ed below). Every kernel has a portable scalar version (quant_ref.c, suffix _ref) and, where it
 * pays, an AVX2+FMA+F16C version (quant_avx2.c, suffix _avx2) that is only called after a run-time CPU check
 * (dtype.c picks the table once).
 *
 * Numeric recipe (why results track llama.cpp): a quantized dot product sums integer products per block and
 * multiplies the block sum by the two float scales; activations are quantized per 32-value block with
 * d = amax/127. The SIMD versions differ from the scalar ones only in the order float partial sums are added.
 *
 * All kernels are pure functions of their arguments, callable from any thread.
 */
#ifndef ZL_CPU_QUANT_H
#define ZL_CPU_QUANT_H

#include <assert.h>
#include <stdint.h>

#define ZL_QK 32 /* elements per block of the 32-wide legacy quant types */

/* Q4_0: x = d * (q - 8), q in [0, 15]; qs[j] holds element j (low nibble) and element j + 16 (high nibble). */
typedef struct {
    uint16_t d; /* fp16 scale */
    uint8_t qs[ZL_QK / 2];
} zl_block_q4_0;

/* Q4_1: x = d * q + m, q in [0, 15], same nibble order as Q4_0. */
typedef struct {
    uint16_t d; /* fp16 scale */
    uint16_t m; /* fp16 minimum */
    uint8_t qs[ZL_QK / 2];
} zl_block_q4_1;

/* Q8_0: x = d * q, q in [-127, 127]. */
typedef struct {
    uint16_t d;
    int8_t qs[ZL_QK];
} zl_block_q8_0;

/* Q8_1: like Q8_0 plus s = d * sum(q) (fp16), which lets a Q4_1 dot product apply the weight block's minimum
 * without a second pass. Only ever an activation type. */
typedef struct {
    uint16_t d;
    uint16_t s;
    int8_t qs[ZL_QK];
} zl_block_q8_1;

static_assert(sizeof(zl_block_q4_0) == 18, "q4_0 block layout");
static_assert(sizeof(zl_block_q4_1) == 20, "q4_1 block layout");
static_assert(sizeof(zl_block_q8_0) == 34, "q8_0 block layout");
static_assert(sizeof(zl_block_q8_1) == 36, "q8_1 block layout");

/* ---- scalar reference (quant_ref.c). Signatures are the traits' function types (dtype.h). ---- */

void zl_f32_to_float_ref(const void *x, float *y, int64_t n);
void zl_f32_from_float_ref(const float *x, void *y, int64_t n);
void zl_f32_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void zl_f16_to_float_ref(const void *x, float *y, int64_t n);
void zl_f16_from_float_ref(const float *x, void *y, int64_t n);
void zl_f16_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void zl_bf16_to_float_ref(const void *x, float *y, int64_t n);
void zl_bf16_from_float_ref(const float *x, void *y, int64_t n);
void zl_bf16_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void zl_q4_0_to_float_ref(const void *x, float *y, int64_t n);
void zl_q4_0_from_float_ref(const float *x, void *y, int64_t n);
void zl_q4_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_0 */

void zl_q4_1_to_float_ref(const void *x, float *y, int64_t n);
void zl_q4_1_from_float_ref(const float *x, void *y, int64_t n);
void zl_q4_1_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_1 */

void zl_q8_0_to_float_ref(const void *x, float *y, int64_t n);
void zl_q8_0_from_float_ref(const float *x, void *y, int64_t n);
void zl_q8_0_from_float_act_ref(const float *x, void *y, int64_t n);
void zl_q8_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_0 */

void zl_q8_1_to_float_ref(const void *x, float *y, int64_t n);
void zl_q8_1_from_float_ref(const float *x, void *y, int64_t n);
void zl_q8_1_from_float_act_ref(const float *x, void *y, int64_t n);

/* ---- AVX2 + FMA + F16C (quant_avx2.c); x86-64 only, call only when the CPU has all three. ---- */

#if defined(__x86_64__) || defined(__i386__)
#define ZL_HAVE_AVX2_KERNELS 1
void zl_f32_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_f16_from_float_avx2(const float *x, void *y, int64_t n);
void zl_f16_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_bf16_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q4_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q4_1_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q8_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q8_0_from_float_act_avx2(const float *x, void *y, int64_t n);
void zl_q8_1_from_float_act_avx2(const float *x, void *y, int64_t n);
#endif

#endif
