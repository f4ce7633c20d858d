/*
 * quant.h - quantized block layouts and the CPU kernels behind the dtype traits table.
 *
 * Block layouts are ggml's, byte for byte (a GGUF tensor's data is an array of these blocks; the sizes are
 * static_assert'ed below). Every kernel has a portable scalar version (quant_ref.c, suffix _ref) and, where it
 * pays, an AVX2+FMA+F16C version (quant_avx2.c, suffix _avx2) on x86 or a NEON version (quant_neon.c, suffix _neon
 * and _neon_dp) on AArch64, only called after a run-time CPU check (dtype.c picks the table once).
 *
 * Numeric recipe (why results track llama.cpp): a quantized dot product sums integer products per block and
 * multiplies the block sum by the two float scales; activations are quantized per 32-value block with
 * d = amax/127 (Q8_0 / Q8_1), or per 256-value super-block with d = max/-127 for the K-quants (Q8_K, which also
 * carries the sums of each 16 quants so a weight block's minimums cost one multiply per sub-block). The SIMD
 * versions differ from the scalar ones only in the order float partial sums are added; they follow ggml's x86
 * kernels lane for lane, because that is what llama.cpp runs on the machines we compare against.
 *
 * K-quant super-blocks (256 values) are split into sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K) values,
 * each with an integer scale (and for Q2_K / Q4_K / Q5_K an integer minimum) that multiplies the super-block's
 * fp16 d (dmin): x = d * sc * q - dmin * m.
 *
 * All kernels are pure functions of their arguments, callable from any thread.
 */
#ifndef ZL_CPU_QUANT_H
#define ZL_CPU_QUANT_H

#include <assert.h>
#include <stddef.h>
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

/* Q5_0: x = d * (q - 16), q in [0, 31]; the low 4 bits as in Q4_0, bit 4 of element j in bit j of qh
 * (little-endian 32-bit word). */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[ZL_QK / 2];
} zl_block_q5_0;

/* Q5_1: x = d * q + m, q in [0, 31], bits as in Q5_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[ZL_QK / 2];
} zl_block_q5_1;

#define ZL_QK_K 256 /* elements per K-quant super-block */

/* Q2_K: 16 sub-blocks of 16. scales[s]: low nibble the scale, high nibble the minimum of sub-block s;
 * x = d * (scales & 15) * q - dmin * (scales >> 4), q in [0, 3]. Element 128 h + 32 k + l (h < 2, k < 4, l < 32)
 * sits in bits 2k..2k+1 of qs[32 h + l]. */
typedef struct {
    uint8_t scales[ZL_QK_K / 16];
    uint8_t qs[ZL_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} zl_block_q2_K;

/* Q3_K: 16 sub-blocks of 16, signed 6-bit scales stored + 32 (low 4 bits: scales[s] or scales[s - 8] >> 4;
 * high 2 bits: scales[8 + s % 4] >> 2 (s / 4)); x = d * (sc - 32) * (q - 4 * !hbit), q 2 bits as in Q2_K, hbit of
 * element 32 k + l (k < 8) is bit k of hmask[l]. */
typedef struct {
    uint8_t hmask[ZL_QK_K / 8];
    uint8_t qs[ZL_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} zl_block_q3_K;

/* Q4_K: 8 sub-blocks of 32 with 6-bit scale and minimum packed in 12 bytes (see k4_scale_min in quant_k_ref.c);
 * x = d * sc * q - dmin * m, q in [0, 15]; element 64 h + l is the low nibble of qs[32 h + l], 64 h + 32 + l the
 * high one. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[ZL_QK_K / 2];
} zl_block_q4_K;

/* Q5_K: Q4_K plus a fifth bit: bit 2h of qh[l] for element 64 h + l, bit 2h + 1 for 64 h + 32 + l. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[ZL_QK_K / 8];
    uint8_t qs[ZL_QK_K / 2];
} zl_block_q5_K;

/* Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * sc * (q - 32), q in [0, 63]. For half h and l < 32:
 * element 128 h + 32 k + l has its low 4 bits in ql[64 h + l + 32 (k & 1)] (low nibble for k < 2, high for k >= 2)
 * and its high 2 bits in bits 2k..2k+1 of qh[32 h + l]. */
typedef struct {
    uint8_t ql[ZL_QK_K / 2];
    uint8_t qh[ZL_QK_K / 4];
    int8_t scales[ZL_QK_K / 16];
    uint16_t d;
} zl_block_q6_K;

/* Q8_K: the K-quants' activation type. x = d * q (d a float), bsums[s] = sum of qs[16 s .. 16 s + 15]. */
typedef struct {
    float d;
    int8_t qs[ZL_QK_K];
    int16_t bsums[ZL_QK_K / 16];
} zl_block_q8_K;

static_assert(sizeof(zl_block_q5_0) == 22, "q5_0 block layout");
static_assert(sizeof(zl_block_q5_1) == 24, "q5_1 block layout");
static_assert(sizeof(zl_block_q2_K) == 84, "q2_K block layout");
static_assert(sizeof(zl_block_q3_K) == 110, "q3_K block layout");
static_assert(sizeof(zl_block_q4_K) == 144, "q4_K block layout");
static_assert(sizeof(zl_block_q5_K) == 176, "q5_K block layout");
static_assert(sizeof(zl_block_q6_K) == 210, "q6_K block layout");
static_assert(sizeof(zl_block_q8_K) == 292, "q8_K block layout");
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

void zl_q5_0_to_float_ref(const void *x, float *y, int64_t n);
void zl_q5_0_from_float_ref(const float *x, void *y, int64_t n);
void zl_q5_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_0 */

void zl_q5_1_to_float_ref(const void *x, float *y, int64_t n);
void zl_q5_1_from_float_ref(const float *x, void *y, int64_t n);
void zl_q5_1_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_1 */

/* ---- K-quants: conversions and dots (quant_k_ref.c), reference quantizers (quant_k_quantize.c) ---- */

void zl_q2_K_to_float_ref(const void *x, float *y, int64_t n);
void zl_q2_K_from_float_ref(const float *x, void *y, int64_t n);
void zl_q2_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_K */

void zl_q3_K_to_float_ref(const void *x, float *y, int64_t n);
void zl_q3_K_from_float_ref(const float *x, void *y, int64_t n);
void zl_q3_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_K */

void zl_q4_K_to_float_ref(const void *x, float *y, int64_t n);
void zl_q4_K_from_float_ref(const float *x, void *y, int64_t n);
void zl_q4_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_K */

void zl_q5_K_to_float_ref(const void *x, float *y, int64_t n);
void zl_q5_K_from_float_ref(const float *x, void *y, int64_t n);
void zl_q5_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_K */

void zl_q6_K_to_float_ref(const void *x, float *y, int64_t n);
void zl_q6_K_from_float_ref(const float *x, void *y, int64_t n);
void zl_q6_K_vec_dot_ref(int64_t n, float *s, const void *x, const void *y); /* y: Q8_K */

/* llama.cpp's tiled K-quant order (its matmul for batches of 8+ tokens on x86; see ops.c): per block the exact
 * integer sums, then r = d * s1 (minus dmin * s2 in one fma where the type has minimums) and acc = fma(r, d8, acc). */
void zl_q2_K_tiled_dot_ref(int64_t n, float *s, const void *x, const void *y);
void zl_q3_K_tiled_dot_ref(int64_t n, float *s, const void *x, const void *y);
void zl_q4_K_tiled_dot_ref(int64_t n, float *s, const void *x, const void *y);
void zl_q5_K_tiled_dot_ref(int64_t n, float *s, const void *x, const void *y);
void zl_q6_K_tiled_dot_ref(int64_t n, float *s, const void *x, const void *y);

/* Q8_K's from_float is ggml's reference quantizer, which is also what ggml runs for activations on x86. */
void zl_q8_K_to_float_ref(const void *x, float *y, int64_t n);
void zl_q8_K_from_float_ref(const float *x, void *y, int64_t n);

/* ---- 4 rows x 2 / 3 / 4 / 8 tokens tiles (avx512vnni set only; the types are here for ops.c on every target) ---- */

/* What the Q4_0 / Q4_1 / Q5_0 / Q8_0 tiles need of the activations that depends on the tokens alone, made once per
 * matmul: per 32-block and group of 4 tokens (0-3, 4-7, ..), the 4 scales as floats, the 4 Q8_1 s as floats (Q4_1),
 * and the 4 tokens' bytes (plus 128, a sign-bit flip, for Q8_0 activations). Slots past the last token are zero. A
 * tile finds all its tokens' data for one block a fixed distance from one pointer per group. */
typedef struct zl_tile_aux4 {
    float d[4], s[4];
    uint8_t yu[4][32];
} zl_tile_aux4;
/* Fills slot j of the n / 32 blocks at g from activation row y (one token). */
typedef void (*zl_tile_aux_fn)(const void *y, zl_tile_aux4 *g, int j, int64_t n);
/* Zeroes slots j .. 3 of the n / 32 blocks at g (past the last token). Portable (quant_ref.c). */
void zl_tile_aux_pad(zl_tile_aux4 *g, int j, int64_t n);
/* 4 weight rows (bx bytes apart) x 2, 3, 4 or 8 tokens, the first at slot 0 of group a, the 5th at slot 0 of the
 * group a_stride bytes after a: s[t * s_stride + r] is vec_dot of row r and token t, bit for bit (the avx512vnni
 * set's zl_q4_0 / q4_1 / q5_0 / q8_0_vec_dot_vnni). */
typedef void (*zl_tile_fn)(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                           size_t a_stride);

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
void zl_q4_0_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q4_1_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q8_0_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
/* Four weight rows bx bytes apart against one activation row: s[i] = vec_dot of row i, bit for bit. */
void zl_q8_0_vec_dot_rows4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_q8_0_from_float_act_avx2(const float *x, void *y, int64_t n);
void zl_q8_1_from_float_act_avx2(const float *x, void *y, int64_t n);
void zl_q8_K_from_float_act_avx2(const float *x, void *y, int64_t n);
void zl_q5_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q5_0_vec_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q5_1_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q2_K_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q3_K_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q4_K_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q5_K_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q6_K_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
/* llama.cpp's tiled K-quant order for batches of 8+ tokens (see ops.c; exact integer block sums, float steps
 * per block as its AVX2 tile kernel); y: Q8_K. */
void zl_q2_K_tiled_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q3_K_tiled_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q4_K_tiled_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q5_K_tiled_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_q6_K_tiled_dot_avx2(int64_t n, float *s, const void *x, const void *y);
/* The same for 4 tokens (the zl_vec_dot4_fn shape): each token's result identical to the one-token version. */
void zl_q4_K_tiled_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q6_K_tiled_dot4_avx2(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
/* tinyBLAS's 8-lane accumulation (llama.cpp's float matmul for batches of 2+ tokens); n % 8 == 0. */
void zl_f32_vec_dot_gemm_avx2(int64_t n, float *s, const void *x, const void *y);
void zl_f16_vec_dot_gemm_avx2(int64_t n, float *s, const void *x, const void *y);
/* Softmax exp pass (x[i] = exp(x[i] - max) in place, returns 1/sum) and y = silu(g) * u with ggml's AVX2 exp. */
float zl_softmax_exp_avx2(float *x, int64_t n, float max);
/* exp(x - max) in place over the whole 8-float vectors of x (n a multiple of 8), returning their sum (vectors summed
 * in double in order); the unpadded softmax takes the rest with expf. */
double zl_softmax_exp_full_avx2(float *x, int64_t n, float max);
void zl_silu_mul_avx2(float *y, const float *g, const float *u, int64_t n);
/* zl_gelu_mul's steps for the first n & ~7 values (returned), looking up `table` (65537 entries). */
int64_t zl_gelu_mul_avx2(float *y, const float *g, const float *u, int64_t n, const uint16_t *table);

/* ---- AVX-512 F + DQ (quant_avx512.c): the width-dependent float kernels (see that file). ---- */
#define ZL_HAVE_AVX512_KERNELS 1
void zl_f32_vec_dot_avx512(int64_t n, float *s, const void *x, const void *y);
void zl_f16_vec_dot_avx512(int64_t n, float *s, const void *x, const void *y);
void zl_f32_vec_dot_gemm_avx512(int64_t n, float *s, const void *x, const void *y); /* n % 16 == 0 */
void zl_f16_vec_dot_gemm_avx512(int64_t n, float *s, const void *x, const void *y); /* n % 16 == 0 */
/* 4 weight rows (bx bytes apart) x nt tokens (1..6, y_stride bytes apart): s[t * s_stride + r] is
 * zl_f16_vec_dot_gemm_avx512 of row r and token t, bit for bit. n % 16 == 0. The tokens as F16 halves, or (wide)
 * those halves widened to float. */
void zl_f16_gemm_4xn_avx512(int64_t n, int nt, float *s, size_t s_stride, const void *x, size_t bx, const void *y,
                            size_t y_stride);
void zl_f16_gemm_4xn_wide_avx512(int64_t n, int nt, float *s, size_t s_stride, const void *x, size_t bx,
                                 const void *y, size_t y_stride);
/* y[i] = the float value of F16 half x[i] (exact), i < n. */
void zl_f16_widen_avx512(const void *x, float *y, int64_t n);
/* n_rows F16 rows (k_stride bytes apart) x g query vectors already widened to float (q + h * n, g <= 8, each the
 * float value of an F16 half): s[h * s_stride + r] is zl_f16_vec_dot_gemm_avx512 of row r and the halves of query h,
 * bit for bit; each row is converted once for the g queries. n % 16 == 0. */
void zl_f16_dot_gemm_rows_avx512(int64_t n, int g, int64_t n_rows, float *s, size_t s_stride, const void *k,
                                 size_t k_stride, const float *q);
/* The same in zl_f16_vec_dot_avx512's order. n % 64 == 0. */
void zl_f16_dot_vec_rows_avx512(int64_t n, int g, int64_t n_rows, float *s, size_t s_stride, const void *k,
                                size_t k_stride, const float *q);
/* zl_q8_0_vec_dot_rows4_avx2 with AVX-512 BW/VL/VNNI (a function-level target): the same bits; call only when the
 * "avx512vnni" kernel set is active. */
void zl_q8_0_vec_dot_rows4_avx512vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_q5_0_vec_dot_rows4_avx512vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
float zl_softmax_exp_avx512(float *x, int64_t n, float max);
double zl_softmax_exp_full_avx512(float *x, int64_t n, float max); /* as zl_softmax_exp_full_avx2, 16 wide */
void zl_silu_mul_avx512(float *y, const float *g, const float *u, int64_t n);

/* ---- VNNI (quant_vnni.c): AVX-512 F/BW/VL + VNNI versions of the 32-wide quantized dots, bit-identical to the
 * _avx2 ones (same int32 lane sums, same float steps per token); x86-64 only, call only when the CPU has them. ---- */
#if defined(__x86_64__)
#define ZL_HAVE_VNNI_KERNELS 1
void zl_q4_0_vec_dot_vnni(int64_t n, float *s, const void *x, const void *y);
void zl_q4_1_vec_dot_vnni(int64_t n, float *s, const void *x, const void *y);
void zl_q5_0_vec_dot_vnni(int64_t n, float *s, const void *x, const void *y);
void zl_q5_1_vec_dot_vnni(int64_t n, float *s, const void *x, const void *y);
void zl_q8_0_vec_dot_vnni(int64_t n, float *s, const void *x, const void *y);
void zl_q4_0_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q4_1_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q5_0_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q5_1_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q8_0_vec_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
/* quant_rows4_vnni.c: one-token decode, 4 weight rows bx bytes apart per call; s[i] is, bit for bit, what the
 * "avx512vnni" set's vec_dot gives for row i (zl_q4_0/q4_1_vec_dot_vnni, zl_q4_K/q6_K_vec_dot_avx2). */
void zl_q4_0_vec_dot_rows4_vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
/* The same for 8 rows (two quads sharing the activation's loads and scales): s[0..7]. */
void zl_q4_0_vec_dot_rows8_vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_q4_1_vec_dot_rows4_vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_q4_1_vec_dot_rows8_vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_q4_K_vec_dot_rows4_vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_q6_K_vec_dot_rows4_vnni(int64_t n, float *s, const void *x, size_t bx, const void *y);
void zl_tile_aux_q8_0(const void *y, zl_tile_aux4 *g, int j, int64_t n); /* for Q4_0, Q5_0 and Q8_0 weights */
void zl_tile_aux_q8_1(const void *y, zl_tile_aux4 *g, int j, int64_t n); /* for Q4_1 weights */
void zl_q4_0_tile2_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_0_tile3_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_0_tile4_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_0_tile8_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_1_tile2_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_1_tile3_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_1_tile4_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q4_1_tile8_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q5_0_tile2_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q5_0_tile3_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q5_0_tile4_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q5_0_tile8_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q8_0_tile2_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q8_0_tile3_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q8_0_tile4_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
void zl_q8_0_tile8_vnni(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,
                        size_t a_stride);
/* quant_tiled_vnni.c: zl_q4_K / q6_K_tiled_dot4_avx2 with VNNI, the same bits per token. */
void zl_q4_K_tiled_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q4_K_tiled_dot8_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q6_K_tiled_dot4_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
void zl_q6_K_tiled_dot8_vnni(int64_t n, float *s, size_t s_stride, const void *x, const void *y, size_t y_stride);
#endif

/* ---- AVX512-BF16 (quant_bf16.c): BF16 dots with VDPBF16PS in ggml's order for CPUs with that extension (their
 * rounding differs from the _avx2 BF16 dot's); x86-64 only, call only when the CPU has AVX512-BF16. ---- */
#if defined(__x86_64__)
#define ZL_HAVE_BF16_KERNELS 1
void zl_bf16_vec_dot_avx512bf16(int64_t n, float *s, const void *x, const void *y);
/* tinyBLAS's order (batches of 2+ tokens): one 16-lane accumulator over steps of 32; n % 32 == 0. */
void zl_bf16_vec_dot_gemm_avx512bf16(int64_t n, float *s, const void *x, const void *y);
#endif
#endif

/* ---- AArch64 NEON (quant_neon.c); _neon_dp kernels only when the CPU has the dot-product extension
 * (HWCAP_ASIMDDP), _neon ones on any AArch64 CPU. ---- */

#if defined(__aarch64__)
#define ZL_HAVE_NEON_KERNELS 1
void zl_f32_vec_dot_neon(int64_t n, float *s, const void *x, const void *y);
void zl_f16_vec_dot_neon(int64_t n, float *s, const void *x, const void *y);
/* tinyBLAS's 4-lane accumulation on ARM (F32 weights, batches of 2+ tokens); n % 4 == 0. */
void zl_f32_vec_dot_gemm_neon(int64_t n, float *s, const void *x, const void *y);
void zl_q8_0_from_float_act_neon(const float *x, void *y, int64_t n);
void zl_q8_1_from_float_act_neon(const float *x, void *y, int64_t n);
#define ZL_NEON_DOT_DECL(t)                                                                                    \
    void zl_##t##_vec_dot_neon(int64_t n, float *s, const void *x, const void *y);                             \
    void zl_##t##_vec_dot_neon_dp(int64_t n, float *s, const void *x, const void *y);
ZL_NEON_DOT_DECL(q4_0)
ZL_NEON_DOT_DECL(q4_1)
ZL_NEON_DOT_DECL(q5_0)
ZL_NEON_DOT_DECL(q5_1)
ZL_NEON_DOT_DECL(q8_0)
ZL_NEON_DOT_DECL(q2_K)
ZL_NEON_DOT_DECL(q3_K)
ZL_NEON_DOT_DECL(q4_K)
ZL_NEON_DOT_DECL(q5_K)
ZL_NEON_DOT_DECL(q6_K)
#undef ZL_NEON_DOT_DECL
#endif

#endif
