/*
 * repack.h - Q4_0 weights interleaved by rows, in llama.cpp's repacked arithmetic.
 *
 * On x86 CPUs with AVX2, llama.cpp stores every Q4_0 matrix whose row count is a multiple of 8 (used in a matrix
 * multiply, not the embedding lookup; a tied output matrix gets its own repacked copy) in groups of 8 interleaved
 * rows and multiplies it with other kernels than vec_dot (ggml-cpu's gemv / gemm for q4_0_8x8). Their arithmetic
 * per weight row and token: for each 32-block b in order, the exact integer isum = sum (q - 8) * y over the block,
 * then acc = fma((float)isum, d_x * d_y, acc) from acc = 0, where d_x * d_y is one float product. One accumulator
 * per (row, token) and no lane partial sums, so 16 rows fit in one vector: the reason it is faster.
 *
 * Q4_K (q4_K_8x8 with Q8_K activations) likewise: per 256-block b, the exact integers isum = sum over its 8
 * sub-blocks of scale_s * (q . y) and imin = sum of min_s * (sum of y over the sub-block), then
 * acc = fma((float)isum, d_x * d_y, acc) and accm = fma((float)imin, dmin_x * d_y, accm); the result is acc - accm.
 * That is its one-token kernel (gemv); its 4-token kernel (gemm, a batch's first n - n % 4 tokens) makes the two
 * fmas per 64 values, from the sums of sub-blocks 2c and 2c + 1.
 *
 * zili mirrors that with its x86 kernel sets from avx2 up (zl_repack_active): the model loader rewrites such
 * matrices in place into zili's own layout of 16-row groups (ZL_LAYOUT_X16, below), and ops.c multiplies them with
 * quant_x16_vnni.c's kernels (avx512vnni; Q4_0: 4096 products per 16 rows x 8 tokens x block in 64 VPDPBUSD) or
 * quant_x16_avx2.c's (avx2, avx512). The results are llama.cpp's with repacking on (its default) bit for bit;
 * `--no-repack` (ZILI_NO_REPACK=1) keeps vec_dot's order, llama.cpp's with --no-repack. Elsewhere (the scalar set,
 * ARM) nothing is repacked.
 *
 * Layout of one group of R rows (R = 16, or 8 for the last group when the row count is 16k + 8), each block the
 * R rows' blocks b in the same bytes (block b at b * R * block bytes from the group's start):
 *   Q4_0: R fp16 scales (row order), then for j = 0..3 the R rows' qs bytes 4j .. 4j + 3 (R x 4 bytes). Byte k of
 *         chunk j holds elements 4j + k (low nibble) and 16 + 4j + k (high).
 *   Q4_K: R fp16 d, R fp16 dmin, the 12 scale bytes as 3 words u0, u1, u2 each for the R rows (u0 of every row,
 *         then u1, then u2), then for c = 0..3 and j = 0..7 the R rows' qs bytes 32c + 4j .. + 3: byte k holds
 *         element 64c + 4j + k (low nibble, sub-block 2c) and 64c + 32 + 4j + k (high, sub-block 2c + 1).
 */
#ifndef ZL_CPU_REPACK_H
#define ZL_CPU_REPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { ZL_X16_ROWS = 16 };

/* Per Q8_0 activation block, made once per token when activations are converted: its scale as a float and -8
 * times the sum of its 32 codes (the Q4_0 offset, folded into the integer sum's start). */
typedef struct zl_x16_aux {
    float d;
    int32_t off;
} zl_x16_aux;

/* Per Q8_K activation super-block (for Q4_K weights): d, and the sums b0..b7 of its 8 sub-blocks of 32 as 16-bit
 * pairs (low half first) for the minimum terms: bs = {(b0, b2), (b1, b3), (b4, b6), (b5, b7)} for the whole block,
 * bp = {(b0, b1), (b2, b3), (b4, b5), (b6, b7)} per 64 values. */
typedef struct zl_x16k_aux {
    float d;
    int32_t bs[4];
    int32_t bp[4];
} zl_x16k_aux;

/* Whether matrices of `type` are repacked on this CPU's kernel set: Q4_0 and Q4_K with the avx2, avx512 and
 * avx512vnni sets (ZILI_NO_REPACK=1 in the environment turns it off). */
bool zl_repack_active(uint32_t type);
/* Whether a matrix of ne1 rows is repacked (llama.cpp's rule: a multiple of 8 rows). */
bool zl_repack_fits(int64_t ne1);
/* Rewrites ne1 rows of ne0 values of `type` (row_bytes each) in place into the X16 layout. tmp: 16 * row_bytes
 * bytes. */
void zl_repack_x16(uint32_t type, void *data, int64_t ne0, int64_t ne1, size_t row_bytes, void *tmp);

/* The per-token data of n values of activations y (Q8_0 for Q4_0, Q8_K for Q4_K): zl_x16_aux / zl_x16k_aux per
 * block, zl_x16_aux_size(type) bytes each. */
size_t zl_x16_aux_size(uint32_t type);
void zl_x16_aux_make(uint32_t type, const void *y, void *a, int64_t n);

/* One group of R rows (8 or 16) x nt tokens over nb blocks, the portable reference: s[t * s_stride + r] for token
 * t's activation row at y + t * y_stride (its aux at a + t * a_stride bytes). Q4_K only: bit t of pairs set takes
 * token t in llama.cpp's 4-token gemm order, one fma pair per 64 values (sub-blocks 2c and 2c + 1) instead of
 * per 256 (the gemv's); llama.cpp runs a batch's first n - n % 4 tokens so. */
void zl_x16_ref(uint32_t type, int64_t nb, int R, float *s, size_t s_stride, const void *xg, const void *y,
                size_t y_stride, const void *a, size_t a_stride, int nt, unsigned pairs);
/* The same for a group of 16 rows and 1 .. 8 tokens: quant_x16_vnni.c's with the avx512vnni set,
 * quant_x16_avx2.c's with avx2 and avx512. NULL where there is none (scalar, ARM). */
typedef void (*zl_x16_fn)(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                          const void *a, size_t a_stride, int nt, unsigned pairs);
zl_x16_fn zl_x16_kernel(uint32_t type);
/* The kernels behind it (x86 only; called only through zl_x16_kernel, which checks the kernel set). */
void zl_q4_0_x16_avx2(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs);
void zl_q4_K_x16_avx2(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs);
void zl_q4_0_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs);
void zl_q4_K_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const void *a, size_t a_stride, int nt, unsigned pairs);

#endif
