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
 * zili mirrors that where its avx512vnni kernel set is active (zl_repack_q4_0_active): the model loader rewrites
 * such matrices in place into zili's own layout of 16-row groups (ZL_LAYOUT_Q4_0_X16, below), and ops.c multiplies
 * them with zl_q4_0_x16_vnni (4096 products per 16 rows x 8 tokens x block in 64 VPDPBUSD). The results are
 * llama.cpp's with repacking on (its default) bit for bit; `--no-repack` (ZILI_NO_REPACK=1) keeps vec_dot's
 * order, llama.cpp's with --no-repack. Elsewhere (scalar, avx2, avx512 sets, ARM) nothing is repacked.
 *
 * Layout of one group of R rows (R = 16, or 8 for the last group when the row count is 16k + 8), block b at
 * b * 18 * R bytes from the group's start: R fp16 scales (row order), then for j = 0..3 the R rows' qs bytes
 * 4j .. 4j + 3 (R x 4 bytes). Byte k of chunk j holds elements 4j + k (low nibble) and 16 + 4j + k (high).
 */
#ifndef ZL_CPU_REPACK_H
#define ZL_CPU_REPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { ZL_X16_ROWS = 16 };

/* Per activation block, made once per token when activations are converted: its scale as a float and -8 times
 * the sum of its 32 codes (the Q4_0 offset, folded into the integer sum's start). */
typedef struct zl_x16_aux {
    float d;
    int32_t off;
} zl_x16_aux;

/* Whether Q4_0 matrices are repacked on this CPU's kernel set (the avx512vnni set; ZILI_NO_REPACK=1 in the
 * environment turns it off). */
bool zl_repack_q4_0_active(void);
/* Whether a Q4_0 matrix of ne1 rows is repacked (llama.cpp's rule: a multiple of 8 rows). */
bool zl_repack_q4_0_fits(int64_t ne1);
/* Rewrites ne1 rows of ne0 Q4_0 values (row_bytes each) in place into the X16 layout. tmp: 16 * row_bytes bytes. */
void zl_repack_q4_0_x16(void *data, int64_t ne0, int64_t ne1, size_t row_bytes, void *tmp);

/* The zl_x16_aux rows of n values of Q8_0 activations y. */
void zl_x16_aux_q8_0(const void *y, zl_x16_aux *a, int64_t n);

/* One group of R rows (8 or 16) x nt tokens over nb blocks, the portable reference: s[t * s_stride + r] for
 * token t's Q8_0 row at y + t * y_stride (aux at a + t * a_stride bytes). */
void zl_q4_0_x16_ref(int64_t nb, int R, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                     const zl_x16_aux *a, size_t a_stride, int nt);
/* The same for a group of 16 rows and 1 .. 8 tokens (avx512vnni set only; NULL where not built). */
typedef void (*zl_x16_fn)(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                          const zl_x16_aux *a, size_t a_stride, int nt);
zl_x16_fn zl_q4_0_x16_kernel(void);

#endif
