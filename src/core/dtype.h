/*
 * dtype.h - tensor element types and their traits table.
 *
 * Type ids are the ggml/GGUF ids, so a tensor's type field indexes this table directly. Every type the format
 * knows has its block size and block byte size here (the GGUF reader needs them to validate sizes even for types
 * zili cannot compute with); the types zili computes with also have conversion and dot-product kernels, and
 * matmul is written once against these function pointers.
 *
 * Quantized block layouts follow ggml exactly (static_assert'ed in dtype.c).
 */
#ifndef ZL_DTYPE_H
#define ZL_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum zl_dtype {
    ZL_F32 = 0,
    ZL_F16 = 1,
    ZL_Q4_0 = 2,
    ZL_Q4_1 = 3,
    ZL_Q5_0 = 6,
    ZL_Q5_1 = 7,
    ZL_Q8_0 = 8,
    ZL_Q8_1 = 9,
    ZL_Q2_K = 10,
    ZL_Q3_K = 11,
    ZL_Q4_K = 12,
    ZL_Q5_K = 13,
    ZL_Q6_K = 14,
    ZL_Q8_K = 15,
    ZL_IQ2_XXS = 16,
    ZL_IQ2_XS = 17,
    ZL_IQ3_XXS = 18,
    ZL_IQ1_S = 19,
    ZL_IQ4_NL = 20,
    ZL_IQ3_S = 21,
    ZL_IQ2_S = 22,
    ZL_IQ4_XS = 23,
    ZL_I8 = 24,
    ZL_I16 = 25,
    ZL_I32 = 26,
    ZL_I64 = 27,
    ZL_F64 = 28,
    ZL_IQ1_M = 29,
    ZL_BF16 = 30,
    ZL_TQ1_0 = 34,
    ZL_TQ2_0 = 35,
    ZL_MXFP4 = 39,
    ZL_NVFP4 = 40,
    ZL_Q1_0 = 41,
    ZL_DTYPE_COUNT = 42
} zl_dtype;

/* Converts n elements (n a multiple of block_size) of this type to float. */
typedef void (*zl_to_float_fn)(const void *x, float *y, int64_t n);
/* Converts n floats (n a multiple of block_size) to this type. For quantized types this is ggml's reference
 * quantizer, byte for byte (what llama-quantize writes; gguf-py's quantize agrees). */
typedef void (*zl_from_float_fn)(const float *x, void *y, int64_t n);
/* *s = dot(x, y) over n elements; x is of this type, y of vec_dot_type; n a multiple of both block sizes. */
typedef void (*zl_vec_dot_fn)(int64_t n, float *s, const void *x, const void *y);
/* One weight row x against 4 activation rows: s[k * s_stride] = dot(x, y + k * y_stride) for k = 0..3, each
 * bit-identical to vec_dot's result (the same operations per token; x's blocks are unpacked once for all 4). */
typedef void (*zl_vec_dot4_fn)(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);

typedef struct zl_type_traits {
    const char *name;     /* "q4_0", ... as ggml names them */
    int64_t block_size;   /* elements per block (1 for plain types) */
    size_t type_size;     /* bytes per block */
    bool supported;       /* true when the kernels below are set */
    zl_to_float_fn to_float;
    zl_from_float_fn from_float;
    zl_vec_dot_fn vec_dot;
    zl_dtype vec_dot_type; /* the type activations are converted to before vec_dot */
    /* How matmul converts activations to this type when it is some weight's vec_dot_type. For Q8_0 / Q8_1 this
     * is the recipe of ggml's SIMD activation quantizers (which llama.cpp runs on x86 and ARM): d = amax/127,
     * q = round-half-even(x * (127/amax)); it differs from from_float (q = round-half-away(x * (1/d))) in rare
     * last-step roundings. The scalar and AVX2 versions give identical bytes. Same as from_float otherwise. */
    zl_from_float_fn from_float_act;
    /* The dot llama.cpp's tinyBLAS computes when a matmul has 2+ tokens (F32 and F16: one accumulator of
     * simd-width lanes instead of four, then one lane reduction; BF16 with AVX512-BF16: one VDPBF16PS accumulator
     * instead of two); NULL where it is the same as vec_dot. Valid only for n a multiple of gemm_k. */
    zl_vec_dot_fn vec_dot_gemm;
    int64_t gemm_k;
    /* vec_dot for 4 tokens at once where a SIMD kernel has one (NULL otherwise); used for tokens in vec_dot mode. */
    zl_vec_dot4_fn vec_dot4;
} zl_type_traits;

/* Traits of type id t, or NULL if t is not a type the format defines. The returned kernels are the fastest
 * this CPU supports (chosen once; ZILI_CPU=scalar forces the portable reference, =avx2 / =avx512 cap x86
 * at that set, =avx512vnni or no variable takes the best x86 set, =neon picks AArch64's NEON set). On a CPU with
 * AVX512-BF16 the avx512vnni set dots BF16 weights with VDPBF16PS, as llama.cpp does there (=avx512 and below keep
 * the float-conversion BF16 dot). */
const zl_type_traits *zl_type_traits_get(uint32_t t);

/* The portable scalar reference traits (for tests of the SIMD kernels). NULL if unknown. */
const zl_type_traits *zl_type_traits_ref(uint32_t t);

/* Bytes of a row of n elements of type t. Returns false if t is unknown, n is negative or not a multiple of the
 * block size, or the size overflows. */
bool zl_row_size(uint32_t t, int64_t n, size_t *out);

/* Name of a type id ("q4_0"), or "unknown". */
const char *zl_type_name(uint32_t t);

/* Name of the kernel set in use ("scalar", "avx2", "avx512", "avx512vnni" (with the AVX512-BF16 BF16 dots where
 * the CPU has them), "neon", or "neon-nodot" on AArch64 CPUs without the dot-product instructions). */
const char *zl_cpu_kernels_name(void);
/* Floats per vector of the active kernel set: 16 (AVX-512), 8 (AVX2), 4 (NEON) or 1 (scalar). Float ops whose
 * rounding depends on it (exp, softmax sums, attention lane order) follow the same choice, as a native ggml build
 * does (on NEON only the dots do so far; see docs/ARCHITECTURE.md). */
int zl_cpu_simd_width(void);

#endif
