/*
 * ops.c - the CPU backend's operations: matmul on any supported weight type, and the float ops of a forward
 * pass (rmsnorm, RoPE, GLU activations, softmax).
 *
 * Matmul is written once against the traits table. It first converts the activations to the weight type's
 * vec_dot_type into the zl_cpu scratch buffer (each token row once, in parallel), then hands out work chunks
 * from an atomic counter: for one token, a chunk is a run of weight rows; for several, a tile of rows x tokens,
 * visited row by row so a weight row stays in L1 while it is dotted with every token of the tile, and a row
 * chunk's tiles are consecutive so its rows stay in L2 across token tiles.
 *
 * The float ops mirror ggml's arithmetic where it changes results (see ops.h), because greedy generations are
 * meant to match llama.cpp token for token.
 *
 * Threads: a zl_cpu (its pool and scratch) is driven by one thread at a time; pool workers only read the
 * weights and the converted activations and write disjoint parts of y.
 */
#include "backend/cpu/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/err.h"
#include "core/fp16.h"
#include "backend/cpu/amx.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* keep ggml's separate roundings of a*b+c */
#endif

enum {
    TILE_ROWS = 16,        /* weight rows per tile when n_tok > 1 */
    TILE_TOKS = 16,        /* tokens per tile */
    F16_TILE_TOKS = 24,    /* tokens per tile for F16's 4 x 6 kernels */
    F16_TILE_ROWS = 64,    /* and weight rows */
    F16_WIDE_MAX = 4096,   /* F16 rows up to this long take the tokens widened to float */
    CONVERT_SERIAL = 8192, /* below this many activation values, convert on the calling thread */
    TILED_MIN_TOKENS = 8,  /* llama.cpp's tiled K-quant matmul takes batches of at least this many tokens */
};

struct zl_cpu {
    zl_pool *pool;
    int n_threads;
    void *scratch; /* converted activations, 64-byte aligned */
    size_t scratch_cap;
    zl_amx_ws *amx; /* the tile path's buffers (amx.h), created on first use */
    void *many;     /* zl_matmul_many's per-job arrays, kept between calls (many_arrays) */
    int many_cap;   /* jobs they hold */
};

zl_cpu *zl_cpu_create(int n_threads)
{
    zl_cpu *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return NULL;
    cpu->pool = zl_pool_create(n_threads);
    if (!cpu->pool) {
        free(cpu);
        return NULL;
    }
    cpu->n_threads = zl_pool_size(cpu->pool);
    return cpu;
}

void zl_cpu_destroy(zl_cpu *cpu)
{
    if (!cpu) return;
    zl_pool_destroy(cpu->pool);
    free(cpu->scratch);
    free(cpu->many);
    zl_amx_ws_free(cpu->amx);
    free(cpu);
}

int zl_cpu_n_threads(const zl_cpu *cpu)
{
    return cpu->n_threads;
}

zl_pool *zl_cpu_pool(zl_cpu *cpu)
{
    return cpu->pool;
}

static int scratch_reserve(zl_cpu *cpu, size_t bytes)
{
    if (bytes <= cpu->scratch_cap) return ZL_OK;
    if (bytes > SIZE_MAX - 63) return ZL_ENOMEM;
    size_t cap = (bytes + 63) & ~(size_t)63;
    if (cap < SIZE_MAX / 2 && cap < 2 * cpu->scratch_cap) cap = 2 * cpu->scratch_cap; /* amortise growth */
    void *p = aligned_alloc(64, cap);
    if (!p) return ZL_ENOMEM;
    free(cpu->scratch);
    cpu->scratch = p;
    cpu->scratch_cap = cap;
    return ZL_OK;
}

/* ---- matmul ---- */

/* Four weight rows bx bytes apart against one activation row: s[i] = vec_dot(row i, y) bit for bit. */
typedef void (*rows4_fn)(int64_t n, float *s, const void *x, size_t bx, const void *y);
/* Four weight rows against nt activation rows: s[t * s_stride + i] = vec_dot_gemm(row i, token t) bit for bit. */
typedef void (*tile4n_fn)(int64_t n, int nt, float *s, size_t s_stride, const void *x, size_t bx, const void *y,
                          size_t y_stride);
/* The Q4_0 / Q4_1 / Q5_0 / Q8_0 tiles of one type for this kernel set (all NULL: none). */
typedef struct tile_set {
    zl_tile_fn tile2, tile3, tile4, tile8;
    zl_tile_aux_fn aux; /* the per-token data they read, made once per token after conversion */
} tile_set;

typedef struct matmul_task {
    zl_vec_dot_fn vec_dot;
    zl_from_float_fn convert; /* activations -> vec_dot_type; NULL when x is used as is (F32) */
    const char *w;            /* weight rows, nb1 bytes apart */
    size_t nb1;
    int64_t ne0, ne1;
    const float *x;
    const char *xq; /* converted activations: token t at xq + t * xq_stride */
    size_t xq_stride;
    zl_vec_dot_fn vec_dot_gemm; /* NULL: every token uses vec_dot */
    zl_vec_dot4_fn vec_dot4;    /* vec_dot for 4 tokens at once (NULL: none; used only when vec_dot_gemm is NULL) */
    rows4_fn rows4;             /* vec_dot for 4 rows at once (NULL: none; set only where every token is in vec_dot
                                 * mode) */
    rows4_fn rows8;             /* the same for 8 rows (NULL: none; only with rows4), used for whole groups of 8 */
    tile_set tiles;             /* vec_dot for 4 rows x 2 / 3 / 4 / 8 tokens (tiles.tile4 NULL: none; set only
                                 * when no token uses gemm) */
    void *aux;                  /* per-token data: the X16 kernels' (token t at aux + t * aux_stride bytes), or the
                                 * tiles' (tokens 4g .. 4g + 3 in the zl_tile_aux4 rows at aux + 4g * aux_stride) */
    size_t aux_stride;          /* its bytes per token; 0: no per-token data */
    bool x16;                   /* the weights are in the X16 layout (repack.h): groups of 16 rows x 8 tokens */
    uint32_t x16_type;          /* their type (Q4_0, Q4_K) */
    int64_t x16_block;          /* its block size */
    zl_x16_fn x16_fn;           /* its kernel for 16-row groups (NULL: the reference); aux holds the repack.h aux
                                 * rows of that type */
    zl_vec_dot4_fn gemm4;       /* vec_dot_gemm for 4 tokens at once (NULL: none), for 4 tokens all in gemm mode */
    zl_vec_dot4_fn gemm8;       /* the same for 8 tokens (NULL: none; set only with gemm4) */
    tile4n_fn gemm4n;           /* vec_dot_gemm for 4 rows x 1..6 tokens (NULL: none), for tokens all in gemm mode */
    bool wide;                  /* gemm4n reads the tokens widened to float (xw) */
    float *xw;                  /* with wide: the converted F16 activations widened back to float, a row of ne0 per
                                 * token */
    const int8_t *modes;        /* per token: use vec_dot_gemm if modes[k] >= min_mode (NULL: all do) */
    int8_t min_mode;            /* 1: tinyBLAS (batches of 2+), 2: tiled K-quant (batches of 8+) */
    float *y;
    int64_t n_tok;
    int64_t chunk_rows, chunk_toks; /* chunk geometry */
    int64_t n_row_chunks, n_tok_chunks;
    atomic_llong next_chunk;
} matmul_task;

static inline void *aux_row(const matmul_task *t, int64_t k)
{
    return (char *)t->aux + (size_t)k * t->aux_stride;
}

/* The tiles' zl_tile_aux4 rows of the group of 4 tokens that holds token k. */
static inline zl_tile_aux4 *aux_group(const matmul_task *t, int64_t k)
{
    return aux_row(t, k - k % 4);
}

static void convert_rows(void *arg, int ith, int nth)
{
    matmul_task *t = arg;
    for (int64_t i = ith; i < t->n_tok; i += nth) {
        void *xq = (void *)(t->xq + (size_t)i * t->xq_stride);
        t->convert(t->x + i * t->ne0, xq, t->ne0);
#ifdef ZL_HAVE_AVX512_KERNELS
        if (t->wide)
            zl_f16_widen_avx512(xq, t->xw + i * t->ne0, t->ne0);
#endif
        if (t->aux && t->x16)
            zl_x16_aux_make(t->x16_type, xq, aux_row(t, i), t->ne0);
        else if (t->aux) {
            t->tiles.aux(xq, aux_group(t, i), (int)(i % 4), t->ne0);
            if (i == t->n_tok - 1 && i % 4 != 3)
                zl_tile_aux_pad(aux_group(t, i), (int)(i % 4) + 1, t->ne0);
        }
    }
}

/* Whether token k takes vec_dot_gemm (its mode reaches min_mode) rather than vec_dot. */
static inline bool uses_gemm(const matmul_task *t, int64_t k)
{
    return t->vec_dot_gemm && (!t->modes || (t->modes[k] & ZL_MODE_MASK) >= t->min_mode);
}

/* Whether tokens k .. k + m - 1 exist (below t1) and all take vec_dot_gemm. */
static inline bool all_gemm(const matmul_task *t, int64_t k, int64_t m, int64_t t1)
{
    if (k + m > t1) return false;
    for (int64_t i = k; i < k + m; i++)
        if (!uses_gemm(t, i)) return false;
    return true;
}

/* Rows r0 .. r1 (whole groups) x tokens t0 .. t1 of an X16 matrix: 8 tokens at a time per 16-row group. */
static void x16_chunk(const matmul_task *t, int64_t r0, int64_t r1, int64_t t0, int64_t t1)
{
    const int64_t nb = t->ne0 / t->x16_block;
    for (int64_t r = r0; r < r1;) {
        const int R = r + ZL_X16_ROWS <= t->ne1 ? ZL_X16_ROWS : 8;
        const char *g = t->w + (size_t)r * t->nb1;
        for (int64_t k = t0; k < t1; k += 8) {
            const int nt = t1 - k < 8 ? (int)(t1 - k) : 8;
            unsigned pairs = 0; /* Q4_K: the tokens in llama.cpp's 4-token gemm (its order per 64 values) */
            for (int i = 0; i < nt && t->x16_type == ZL_Q4_K; i++) {
                const int64_t j = k + i;
                const bool gemm = t->modes ? (t->modes[j] & ZL_MODE_MASK) >= ZL_MODE_MULTI &&
                                                 !(t->modes[j] & ZL_MODE_TAIL4)
                                           : j < t->n_tok - t->n_tok % 4;
                pairs |= (unsigned)gemm << i;
            }
            float *s = &t->y[k * t->ne1 + r];
            const char *xq = t->xq + (size_t)k * t->xq_stride;
            const void *a = aux_row(t, k);
            if (R == ZL_X16_ROWS && t->x16_fn)
                t->x16_fn(nb, s, (size_t)t->ne1, g, xq, t->xq_stride, a, t->aux_stride, nt, pairs);
            else
                zl_x16_ref(t->x16_type, nb, R, s, (size_t)t->ne1, g, xq, t->xq_stride, a, t->aux_stride, nt, pairs);
        }
        r += R;
    }
}

/* Chunk c of t: its rows x tokens (matmul_run's geometry). */
static void matmul_chunk(const matmul_task *t, int64_t c)
{
    const int64_t r0 = (c / t->n_tok_chunks) * t->chunk_rows;
    const int64_t t0 = (c % t->n_tok_chunks) * t->chunk_toks;
    const int64_t r1 = r0 + t->chunk_rows < t->ne1 ? r0 + t->chunk_rows : t->ne1;
    const int64_t t1 = t0 + t->chunk_toks < t->n_tok ? t0 + t->chunk_toks : t->n_tok;
    if (t->x16) {
        x16_chunk(t, r0, r1, t0, t1);
        return;
    }
    int64_t r = r0;
    if (t->gemm4n)
        for (; r + 4 <= r1; r += 4) {
            const char *w4 = t->w + (size_t)r * t->nb1;
            for (int64_t k = t0; k < t1;) {
                int m = 0; /* the run of gemm-mode tokens from k, up to 6 */
                while (m < 6 && k + m < t1 && uses_gemm(t, k + m)) m++;
                if (m) {
                    const void *yk = t->wide ? (const void *)(t->xw + k * t->ne0)
                                             : (const void *)(t->xq + (size_t)k * t->xq_stride);
                    t->gemm4n(t->ne0, m, &t->y[k * t->ne1 + r], (size_t)t->ne1, w4, t->nb1, yk,
                              t->wide ? (size_t)t->ne0 * sizeof(float) : t->xq_stride);
                    k += m;
                    continue;
                }
                for (int64_t i = 0; i < 4; i++)
                    t->vec_dot(t->ne0, &t->y[k * t->ne1 + r + i], w4 + (size_t)i * t->nb1,
                               t->xq + (size_t)k * t->xq_stride);
                k++;
            }
        }
    if (t->tiles.tile4)
        for (; r + 4 <= r1; r += 4) {
            const char *w4 = t->w + (size_t)r * t->nb1;
            int64_t k = t0;
            while (k + 4 <= t1) {
                const int step = k + 8 <= t1 ? 8 : 4;
                (step == 8 ? t->tiles.tile8 : t->tiles.tile4)(t->ne0, &t->y[k * t->ne1 + r], (size_t)t->ne1, w4,
                                                              t->nb1, aux_group(t, k), 4 * t->aux_stride);
                k += step;
            }
            if (t1 - k >= 2) { /* 2 or 3 tokens left */
                (t1 - k == 3 ? t->tiles.tile3 : t->tiles.tile2)(t->ne0, &t->y[k * t->ne1 + r], (size_t)t->ne1, w4,
                                                                t->nb1, aux_group(t, k), 4 * t->aux_stride);
                k = t1;
            }
            for (; k < t1; k++)
                if (t->rows4)
                    t->rows4(t->ne0, &t->y[k * t->ne1 + r], w4, t->nb1, t->xq + (size_t)k * t->xq_stride);
                else
                    for (int64_t i = 0; i < 4; i++)
                        t->vec_dot(t->ne0, &t->y[k * t->ne1 + r + i], w4 + (size_t)i * t->nb1,
                                   t->xq + (size_t)k * t->xq_stride);
        }
    if (t->rows8)
        for (; r + 8 <= r1; r += 8)
            for (int64_t k = t0; k < t1; k++)
                t->rows8(t->ne0, &t->y[k * t->ne1 + r], t->w + (size_t)r * t->nb1, t->nb1,
                         t->xq + (size_t)k * t->xq_stride);
    if (t->rows4)
        for (; r + 4 <= r1; r += 4)
            for (int64_t k = t0; k < t1; k++)
                t->rows4(t->ne0, &t->y[k * t->ne1 + r], t->w + (size_t)r * t->nb1, t->nb1,
                         t->xq + (size_t)k * t->xq_stride);
    for (; r < r1; r++) {
        const void *wr = t->w + (size_t)r * t->nb1;
        int64_t k = t0;
        if (t->vec_dot4)
            for (; k + 4 <= t1; k += 4)
                t->vec_dot4(t->ne0, &t->y[k * t->ne1 + r], (size_t)t->ne1, wr,
                            t->xq + (size_t)k * t->xq_stride, t->xq_stride);
        while (k < t1) {
            const int64_t m = t->gemm8 && all_gemm(t, k, 8, t1) ? 8 : t->gemm4 && all_gemm(t, k, 4, t1) ? 4 : 0;
            if (m) {
                (m == 8 ? t->gemm8 : t->gemm4)(t->ne0, &t->y[k * t->ne1 + r], (size_t)t->ne1, wr,
                                               t->xq + (size_t)k * t->xq_stride, t->xq_stride);
                k += m;
                continue;
            }
            const zl_vec_dot_fn dot = uses_gemm(t, k) ? t->vec_dot_gemm : t->vec_dot;
            dot(t->ne0, &t->y[k * t->ne1 + r], wr, t->xq + (size_t)k * t->xq_stride);
            k++;
        }
    }
}

static void matmul_chunks(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    matmul_task *t = arg;
    const int64_t n_chunks = t->n_row_chunks * t->n_tok_chunks;
    for (;;) {
        const int64_t c = atomic_fetch_add_explicit(&t->next_chunk, 1, memory_order_relaxed);
        if (c >= n_chunks) break;
        matmul_chunk(t, c);
    }
}

/* ---- llama.cpp's tiled K-quant matmul (ggml-cpu/tiled), for batches of 8+ tokens ----
 *
 * For Q2_K..Q6_K weights and a batch of at least 8 activation rows, ggml's x86 build multiplies in tiles instead
 * of with vec_dot. Per weight row and token its float arithmetic is: for each 256-block b in order, the exact
 * integer sums s1 = sum_s scale_s * (q_s . q8_s) (Q3_K: signed scales and codes, Q6_K: codes minus 32) and, for
 * the types with minimums (Q2_K, Q4_K, Q5_K), s2 = sum_s min_s * bsum_s; r = d * s1 (with minimums:
 * fma(-dmin, s2, d * s1)); then acc = fma(r, d8, acc) from acc = 0 (zl_qX_K_tiled_dot_ref in quant_k_ref.c).
 * That is its AVX2 kernel, which llama-cpp-python's native build runs on AVX-512 CPUs too (checked bit for bit
 * on Gemma 3 270M's Q4_K and Q6_K weights and on random Q2_K / Q3_K_M models); its AVX-512 VNNI kernel would
 * add r * d8 unfused. Q3_K's kernel adds 128 to the activations and subtracts the correction afterwards, and
 * Q6_K's works on codes + 32: both exact integer rewrites of the same s1. */

/* The tiled dot for weight type `type` on this CPU, or NULL where ggml has none. The AVX2 versions sum the same
 * integers with vector instructions; the float steps are the reference ones. */
static zl_vec_dot_fn tiled_dot(uint32_t type)
{
    const int width = zl_cpu_simd_width();
    if (width == 1)
        return NULL;
#ifdef ZL_HAVE_AVX2_KERNELS
    if (width >= 8)
        switch (type) {
        case ZL_Q2_K: return zl_q2_K_tiled_dot_avx2;
        case ZL_Q3_K: return zl_q3_K_tiled_dot_avx2;
        case ZL_Q4_K: return zl_q4_K_tiled_dot_avx2;
        case ZL_Q5_K: return zl_q5_K_tiled_dot_avx2;
        case ZL_Q6_K: return zl_q6_K_tiled_dot_avx2;
        default: return NULL;
        }
#endif
    switch (type) {
    case ZL_Q2_K: return zl_q2_K_tiled_dot_ref;
    case ZL_Q3_K: return zl_q3_K_tiled_dot_ref;
    case ZL_Q4_K: return zl_q4_K_tiled_dot_ref;
    case ZL_Q5_K: return zl_q5_K_tiled_dot_ref;
    case ZL_Q6_K: return zl_q6_K_tiled_dot_ref;
    default: return NULL;
    }
}

bool zl_matmul_tiled_type(uint32_t type) { return tiled_dot(type) != NULL; }

/* The tiled dot for 4 tokens at once (same results per token as tiled_dot's), or NULL. */
static zl_vec_dot4_fn tiled_dot4(uint32_t type)
{
#ifdef ZL_HAVE_AVX2_KERNELS
#ifdef ZL_HAVE_VNNI_KERNELS
    if ((type == ZL_Q4_K || type == ZL_Q6_K) && strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0)
        return type == ZL_Q4_K ? zl_q4_K_tiled_dot4_vnni : zl_q6_K_tiled_dot4_vnni;
#endif
    if (zl_cpu_simd_width() >= 8)
        switch (type) {
        case ZL_Q4_K: return zl_q4_K_tiled_dot4_avx2;
        case ZL_Q6_K: return zl_q6_K_tiled_dot4_avx2;
        default: return NULL;
        }
#endif
    (void)type;
    return NULL;
}

/* The tiled dot for 8 tokens at once (same results per token as tiled_dot's), or NULL. */
static zl_vec_dot4_fn tiled_dot8(uint32_t type)
{
#ifdef ZL_HAVE_VNNI_KERNELS
    if ((type == ZL_Q4_K || type == ZL_Q6_K) && strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0)
        return type == ZL_Q4_K ? zl_q4_K_tiled_dot8_vnni : zl_q6_K_tiled_dot8_vnni;
#endif
    (void)type;
    return NULL;
}

/* The 4-row kernel for one token in vec_dot mode on weights of type `type`, or NULL. Every x86 kernel set above
 * scalar computes Q8_0 / Q5_0 dots with the AVX2 kernel's bits (the AVX-512 VNNI ones are tested equal to it), so
 * a 4-row kernel with those bits may stand in for whichever vec_dot is active; the Q4_0, Q4_1, Q4_K and Q6_K ones
 * need the avx512vnni set's instructions. */
static rows4_fn rows4_dot(uint32_t type)
{
#ifdef ZL_HAVE_AVX2_KERNELS
    if (zl_cpu_simd_width() < 8)
        return NULL;
    const bool vnni = strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0;
    if (type == ZL_Q8_0)
        return vnni ? zl_q8_0_vec_dot_rows4_avx512vnni : zl_q8_0_vec_dot_rows4_avx2;
    if (type == ZL_Q5_0 && vnni)
        return zl_q5_0_vec_dot_rows4_avx512vnni;
#ifdef ZL_HAVE_VNNI_KERNELS
    if (vnni)
        switch (type) {
        case ZL_Q4_0: return zl_q4_0_vec_dot_rows4_vnni;
        case ZL_Q4_1: return zl_q4_1_vec_dot_rows4_vnni;
        case ZL_Q4_K: return zl_q4_K_vec_dot_rows4_vnni;
        case ZL_Q6_K: return zl_q6_K_vec_dot_rows4_vnni;
        default: break;
        }
#endif
#endif
    (void)type;
    return NULL;
}

/* The 8-row kernel that goes with a 4-row one (same bits per row), or NULL. */
static rows4_fn rows8_dot(rows4_fn rows4)
{
#ifdef ZL_HAVE_VNNI_KERNELS
    if (rows4 == zl_q4_0_vec_dot_rows4_vnni)
        return zl_q4_0_vec_dot_rows8_vnni;
    if (rows4 == zl_q4_1_vec_dot_rows4_vnni)
        return zl_q4_1_vec_dot_rows8_vnni;
#endif
    (void)rows4;
    return NULL;
}

/* The 4 rows x 2 / 3 / 4 / 8 tokens kernels on weights of type `type` for this kernel set (all NULL: none). */
static tile_set tile_dots(uint32_t type)
{
#ifdef ZL_HAVE_VNNI_KERNELS
    if (strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0)
        switch (type) {
        case ZL_Q4_0:
            return (tile_set){ zl_q4_0_tile2_vnni, zl_q4_0_tile3_vnni, zl_q4_0_tile4_vnni, zl_q4_0_tile8_vnni,
                               zl_tile_aux_q8_0 };
        case ZL_Q4_1:
            return (tile_set){ zl_q4_1_tile2_vnni, zl_q4_1_tile3_vnni, zl_q4_1_tile4_vnni, zl_q4_1_tile8_vnni,
                               zl_tile_aux_q8_1 };
        case ZL_Q5_0:
            return (tile_set){ zl_q5_0_tile2_vnni, zl_q5_0_tile3_vnni, zl_q5_0_tile4_vnni, zl_q5_0_tile8_vnni,
                               zl_tile_aux_q8_0 };
        case ZL_Q8_0:
            return (tile_set){ zl_q8_0_tile2_vnni, zl_q8_0_tile3_vnni, zl_q8_0_tile4_vnni, zl_q8_0_tile8_vnni,
                               zl_tile_aux_q8_0 };
        default: break;
        }
#endif
    (void)type;
    return (tile_set){ NULL, NULL, NULL, NULL, NULL };
}

int zl_matmul(zl_cpu *cpu, const zl_tensor *w, const float *x, int64_t n_tok, float *y)
{
    return zl_matmul_modes(cpu, w, x, n_tok, y, NULL);
}

/* Fills t for y = w x (kernels, modes; not the converted activations). Returns ZL_OK, or an error for a type
 * without kernels or a bad shape; *done is set when there is nothing to compute. */
static int matmul_setup(const zl_tensor *w, const float *x, int64_t n_tok, float *y, const int8_t *gemm,
                        matmul_task *t, bool *done)
{
    *done = false;
    const zl_type_traits *tr = zl_type_traits_get(w->type);
    if (!tr || !tr->supported) return ZL_EUNSUPPORTED;
    const int64_t ne0 = w->ne[0], ne1 = w->ne[1];
    size_t xrow;
    if (n_tok < 0 || ne1 < 0 || !zl_row_size(tr->vec_dot_type, ne0, &xrow) || ne0 % tr->block_size != 0)
        return ZL_EINVAL;
    if (n_tok == 0 || ne1 == 0) {
        *done = true;
        return ZL_OK;
    }

    memset(t, 0, sizeof *t);
    t->vec_dot = tr->vec_dot;
    t->w = w->data;
    t->nb1 = w->nb1;
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->x = x;
    t->y = y;
    t->n_tok = n_tok;
    if (w->layout == ZL_LAYOUT_X16) { /* llama.cpp's repacked order, for every token */
        if ((w->type != ZL_Q4_0 && w->type != ZL_Q4_K) || !zl_repack_fits(ne1)) return ZL_EINVAL;
        t->x16 = true;
        t->x16_type = w->type;
        t->x16_block = tr->block_size;
        t->x16_fn = zl_x16_kernel(w->type);
        t->convert = zl_type_traits_get(tr->vec_dot_type)->from_float_act;
        t->xq_stride = xrow;
        t->aux_stride = (size_t)(ne0 / tr->block_size) * zl_x16_aux_size(w->type);
        t->modes = gemm;
        return ZL_OK;
    }
    /* llama.cpp multiplies float weights by a batch of 2+ tokens with tinyBLAS, whose dot accumulates in one
     * vector instead of four (when the row length and row count suit it); its rounding is mirrored here. */
    if (tr->vec_dot_gemm && ne0 % tr->gemm_k == 0 && ne1 % 4 == 0 && (gemm || n_tok >= 2)) {
        t->vec_dot_gemm = tr->vec_dot_gemm;
        t->modes = gemm;
        t->min_mode = ZL_MODE_MULTI;
    }
#ifdef ZL_HAVE_AVX512_KERNELS
    /* F16 weights in tinyBLAS's order on an AVX-512 set: 4 rows x up to 6 tokens per call (same bits per pair).
     * Rows up to F16_WIDE_MAX long take the tokens' halves widened once for all rows (matmul_convert); longer ones
     * convert them in the kernel, where twice the activation bytes would outgrow L2 (slower on Zen 4). */
    if (t->vec_dot_gemm == zl_f16_vec_dot_gemm_avx512) {
        t->wide = ne0 <= F16_WIDE_MAX;
        t->gemm4n = t->wide ? zl_f16_gemm_4xn_wide_avx512 : zl_f16_gemm_4xn_avx512;
    }
#endif
    /* K-quant weights and 8+ tokens: llama.cpp's tiled matmul (above), for the tokens in multi-token mode. */
    if ((gemm || n_tok >= TILED_MIN_TOKENS) && tiled_dot(w->type)) {
        t->vec_dot_gemm = tiled_dot(w->type);
        t->gemm4 = tiled_dot4(w->type);
        t->gemm8 = t->gemm4 ? tiled_dot8(w->type) : NULL;
        t->modes = gemm;
        t->min_mode = ZL_MODE_MULTI8;
    }
    /* Modes that put every token in vec_dot mode (batched decode: llama.cpp would run each token alone): the
     * multi-token order is not used at all, so the vec_dot-mode kernels below may take the whole batch. */
    if (t->vec_dot_gemm && t->modes) {
        bool any = false;
        for (int64_t k = 0; k < n_tok && !any; k++)
            any = (t->modes[k] & ZL_MODE_MASK) >= t->min_mode;
        if (!any) {
            t->vec_dot_gemm = NULL;
            t->gemm4 = t->gemm8 = NULL;
            t->gemm4n = NULL;
            t->wide = false;
            t->modes = NULL;
        }
    }
    /* Several tokens all in vec_dot mode: 4 at a time where the type has such a kernel (same results), and 4 rows x
     * 2 / 3 / 4 / 8 tokens where it has that. */
    if (!t->vec_dot_gemm && n_tok >= 4)
        t->vec_dot4 = tr->vec_dot4;
    if (!t->vec_dot_gemm && n_tok >= 2)
        t->tiles = tile_dots(w->type);
    /* One token in vec_dot mode: 4 weight rows per call where the type has such a kernel (same results); also for
     * batches all in vec_dot mode without tiles or 4-token kernels (a token at a time: each weight row group
     * stays in L1 for the next), and for the one token the tiles leave over. */
    if (!t->vec_dot_gemm && (n_tok < 4 || t->tiles.tile4 || !t->vec_dot4))
        t->rows4 = rows4_dot(w->type);
    t->rows8 = rows8_dot(t->rows4);

    if (tr->vec_dot_type == ZL_F32) {
        t->xq = (const char *)x;
        t->xq_stride = (size_t)ne0 * sizeof(float);
    } else {
        t->convert = zl_type_traits_get(tr->vec_dot_type)->from_float_act;
        t->xq_stride = xrow;
        if (t->tiles.tile4)
            t->aux_stride = (size_t)(ne0 / tr->block_size) * (sizeof(zl_tile_aux4) / 4);
    }
    return ZL_OK;
}

/* Converts t's activations into the scratch buffer: the rows, then (for the tiles) their zl_tile_aux4 rows from
 * the next 64-byte boundary, then (for wide F16 tiles) the rows widened to float from the next. */
static int matmul_convert(zl_cpu *cpu, matmul_task *t)
{
    const int64_t n_tok = t->n_tok;
    const size_t xrow = t->xq_stride, aux_row_bytes = t->aux_stride;
    const size_t xw_row = t->wide ? (size_t)t->ne0 * sizeof(float) : 0;
    if ((uint64_t)n_tok > (SIZE_MAX / 4 - 64) / (xrow + aux_row_bytes + xw_row)) return ZL_ENOMEM;
    const size_t xq_bytes = ((size_t)n_tok * xrow + 63) & ~(size_t)63;
    const size_t aux_bytes = ((size_t)(n_tok + 3) / 4 * 4 * aux_row_bytes + 63) & ~(size_t)63; /* whole groups */
    const int rc = scratch_reserve(cpu, xq_bytes + aux_bytes + (size_t)n_tok * xw_row);
    if (rc != ZL_OK) return rc;
    t->xq = cpu->scratch;
    if (t->aux_stride)
        t->aux = (char *)cpu->scratch + xq_bytes;
    if (xw_row)
        t->xw = (float *)(void *)((char *)cpu->scratch + xq_bytes + aux_bytes);
    if (n_tok * t->ne0 < CONVERT_SERIAL || cpu->n_threads == 1)
        convert_rows(t, 0, 1);
    else
        zl_pool_run(cpu->pool, convert_rows, t);
    return ZL_OK;
}

/* Whether t may use the activations c converted: the same x made into the same type, with the tiles' per-token
 * rows and the widened rows where t needs them. */
static bool conversion_fits(const matmul_task *t, const matmul_task *c)
{
    return c->xq && t->convert == c->convert && t->x == c->x && t->n_tok == c->n_tok && t->ne0 == c->ne0 &&
           (!t->wide || c->xw) &&
           (!t->aux_stride || (c->aux && c->x16 == t->x16 &&
                               (t->x16 ? c->x16_type == t->x16_type : c->tiles.aux == t->tiles.aux)));
}

/* t's chunk geometry for nth threads; min_rows: the fewest rows in a chunk of a few tokens (0: none). */
static void matmul_geometry(matmul_task *t, int nth, int64_t min_rows)
{
    if (t->n_tok <= TILE_TOKS) {
        /* ~8 chunks per thread: small enough to balance a busy core, big enough to amortise the atomic (chunks of
         * TILE_ROWS rows x a few tokens take well under a microsecond, so the shared counter's cache line would
         * cross between the cores every few hundred nanoseconds). All the tokens in one chunk: each weight row is
         * read once. */
        int64_t rows = (t->ne1 + 8 * nth - 1) / (8 * nth);
        rows = rows > min_rows ? rows : min_rows < t->ne1 ? min_rows : t->ne1;
        rows = t->x16     ? (rows + 15) / 16 * 16 /* whole X16 groups */
               : t->rows8 ? (rows + 7) / 8 * 8
                          : (rows + 3) / 4 * 4; /* whole groups for the 4- or 8-row kernels */
        t->chunk_rows = rows < 4 ? 4 : rows;
        t->chunk_toks = t->n_tok;
    } else {
        t->chunk_rows = t->gemm4n ? F16_TILE_ROWS : TILE_ROWS;
        t->chunk_toks = t->gemm4n ? F16_TILE_TOKS : TILE_TOKS;
    }
    t->n_row_chunks = (t->ne1 + t->chunk_rows - 1) / t->chunk_rows;
    t->n_tok_chunks = (t->n_tok + t->chunk_toks - 1) / t->chunk_toks;
}

static void matmul_run(zl_cpu *cpu, matmul_task *t)
{
    const int nth = cpu->n_threads;
    matmul_geometry(t, nth, 0);
    atomic_init(&t->next_chunk, 0);
    if (nth == 1 || t->n_row_chunks * t->n_tok_chunks == 1)
        matmul_chunks(t, 0, 1);
    else
        zl_pool_run(cpu->pool, matmul_chunks, t);
}

int zl_matmul_modes(zl_cpu *cpu, const zl_tensor *w, const float *x, int64_t n_tok, float *y, const int8_t *gemm)
{
    return zl_matmul_shared(cpu, 1, &w, x, n_tok, &y, gemm);
}

/* Whether token k takes the tiles (a weight marked for them): a token of a multi-token prompt (llama.cpp's rule for
 * one batch when gemm is NULL). */
static bool tile_token(const int8_t *gemm, int64_t n_tok, int64_t k)
{
    return gemm ? (gemm[k] & ZL_MODE_MASK) >= ZL_MODE_MULTI : n_tok >= 2;
}

/* y = w x for a weight marked for the tiles: its multi-token-mode tokens on the tiles, the others (one-token mode:
 * decode) through the exact kernels, gathered into a batch of their own. ZL_EUNSUPPORTED: no token takes the tiles
 * (or they are not available), nothing done. */
static int matmul_tiles(zl_cpu *cpu, const zl_tensor *w, const float *x, int64_t n_tok, float *y, const int8_t *gemm)
{
    int64_t n_tiles = 0;
    for (int64_t k = 0; k < n_tok; k++) n_tiles += tile_token(gemm, n_tok, k);
    if (n_tiles == 0) return ZL_EUNSUPPORTED;
    if (n_tiles == n_tok) return zl_amx_matmul(cpu->pool, &cpu->amx, w, x, NULL, n_tok, y);
    const int64_t n_rest = n_tok - n_tiles, ne0 = w->ne[0], ne1 = w->ne[1];
    int64_t *idx = malloc((size_t)n_tok * sizeof *idx);
    float *xr = malloc((size_t)(n_rest * ne0) * sizeof(float)), *yr = malloc((size_t)(n_rest * ne1) * sizeof(float));
    int8_t *gr = malloc((size_t)n_rest);
    int rc = idx && xr && yr && gr ? ZL_OK : ZL_ENOMEM;
    if (rc == ZL_OK) {
        int64_t a = 0, b = 0; /* idx: the tile tokens from the front, the others from n_tiles on */
        for (int64_t k = 0; k < n_tok; k++)
            if (tile_token(gemm, n_tok, k)) {
                idx[a++] = k;
            } else {
                memcpy(xr + b * ne0, x + k * ne0, (size_t)ne0 * sizeof(float));
                gr[b] = gemm ? gemm[k] : ZL_MODE_ONE;
                idx[n_tiles + b++] = k;
            }
        rc = zl_amx_matmul(cpu->pool, &cpu->amx, w, x, idx, n_tiles, y);
    }
    if (rc == ZL_OK) {
        zl_tensor exact = *w;
        exact.tiles = 0;
        rc = zl_matmul_modes(cpu, &exact, xr, n_rest, yr, gr);
    }
    if (rc == ZL_OK)
        for (int64_t b = 0; b < n_rest; b++)
            memcpy(y + idx[n_tiles + b] * ne1, yr + b * ne1, (size_t)ne1 * sizeof(float));
    free(idx), free(xr), free(yr), free(gr);
    return rc;
}

int zl_matmul_shared(zl_cpu *cpu, int n_w, const zl_tensor *const *ws, const float *x, int64_t n_tok,
                     float *const *ys, const int8_t *gemm)
{
    matmul_task t, c; /* c: the task whose conversion is in the scratch buffer */
    memset(&c, 0, sizeof c);
    for (int i = 0; i < n_w; i++) {
        if (ws[i]->tiles && n_tok > 0) {
            const int rc = matmul_tiles(cpu, ws[i], x, n_tok, ys[i], gemm);
            if (rc == ZL_OK) continue;
            if (rc != ZL_EUNSUPPORTED) return rc;
        }
        bool done;
        int rc = matmul_setup(ws[i], x, n_tok, ys[i], gemm, &t, &done);
        if (rc != ZL_OK) return rc;
        if (done) continue;
        if (t.convert) {
            if (conversion_fits(&t, &c)) {
                t.xq = c.xq;
                t.aux = c.aux;
                t.xw = c.xw;
            } else {
                if ((rc = matmul_convert(cpu, &t)) != ZL_OK) return rc;
                c.xq = t.xq;
                c.aux = t.aux;
                c.xw = t.xw;
                c.convert = t.convert;
                c.x = t.x;
                c.n_tok = t.n_tok;
                c.ne0 = t.ne0;
                c.tiles = t.tiles;
                c.x16 = t.x16;
                c.x16_type = t.x16_type;
            }
        }
        matmul_run(cpu, &t);
    }
    return ZL_OK;
}

/* ---- many matmuls in one pool run (zl_matmul_many) ---- */

typedef struct many_task {
    matmul_task *ts;
    int n;                     /* tasks */
    const int64_t *first;      /* first[i]: task i's first chunk in the global numbering; first[n]: the total */
    const int64_t *conv_first; /* conv_first[i]: task i's first token to convert, the same way (0 of its own when it
                                * reuses another task's conversion) */
    atomic_llong next;         /* the next global chunk */
    atomic_llong next_conv;    /* the next token to convert */
} many_task;

/* The conversions of all tasks, a token at a time from an atomic counter (convert_rows' steps). */
static void many_convert(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    many_task *m = arg;
    const int64_t total = m->conv_first[m->n];
    int i = 0; /* items are taken in increasing order: each thread's task index only moves forward */
    for (;;) {
        const int64_t c = atomic_fetch_add_explicit(&m->next_conv, 1, memory_order_relaxed);
        if (c >= total) break;
        while (m->conv_first[i + 1] <= c) i++;
        const matmul_task *t = &m->ts[i];
        const int64_t k = c - m->conv_first[i];
        void *xq = (void *)(t->xq + (size_t)k * t->xq_stride);
        t->convert(t->x + k * t->ne0, xq, t->ne0);
#ifdef ZL_HAVE_AVX512_KERNELS
        if (t->wide)
            zl_f16_widen_avx512(xq, t->xw + k * t->ne0, t->ne0);
#endif
        if (t->aux && t->x16)
            zl_x16_aux_make(t->x16_type, xq, aux_row(t, k), t->ne0);
        else if (t->aux) {
            t->tiles.aux(xq, aux_group(t, k), (int)(k % 4), t->ne0);
            if (k == t->n_tok - 1 && k % 4 != 3)
                zl_tile_aux_pad(aux_group(t, k), (int)(k % 4) + 1, t->ne0);
        }
    }
}

static void many_chunks(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    many_task *m = arg;
    const int64_t total = m->first[m->n];
    int i = 0;
    for (;;) {
        const int64_t c = atomic_fetch_add_explicit(&m->next, 1, memory_order_relaxed);
        if (c >= total) break;
        while (m->first[i + 1] <= c) i++;
        matmul_chunk(&m->ts[i], c - m->first[i]);
    }
}

/* The scratch bytes of t's conversion: its rows, its tiles' aux rows (whole groups), its widened rows, each part
 * from a 64-byte boundary (matmul_convert's layout); 0 on overflow. */
static size_t conversion_bytes(const matmul_task *t, size_t *xq_bytes, size_t *aux_bytes)
{
    const size_t xw_row = t->wide ? (size_t)t->ne0 * sizeof(float) : 0;
    if ((uint64_t)t->n_tok > (SIZE_MAX / 8 - 64) / (t->xq_stride + t->aux_stride + xw_row)) return 0;
    *xq_bytes = ((size_t)t->n_tok * t->xq_stride + 63) & ~(size_t)63;
    *aux_bytes = ((size_t)(t->n_tok + 3) / 4 * 4 * t->aux_stride + 63) & ~(size_t)63;
    return *xq_bytes + *aux_bytes + (((size_t)t->n_tok * xw_row + 63) & ~(size_t)63);
}

/* The jobs one at a time (zl_matmul_shared for consecutive jobs on the same x). */
static int many_in_turn(zl_cpu *cpu, int n_jobs, const zl_matmul_job *jobs)
{
    for (int i = 0; i < n_jobs; i++) {
        const bool pair = i + 1 < n_jobs && jobs[i + 1].x == jobs[i].x && jobs[i + 1].n_tok == jobs[i].n_tok &&
                          jobs[i + 1].modes == jobs[i].modes;
        const zl_tensor *ws[2] = {jobs[i].w, pair ? jobs[i + 1].w : NULL};
        float *ys[2] = {jobs[i].y, pair ? jobs[i + 1].y : NULL};
        const int rc = zl_matmul_shared(cpu, pair ? 2 : 1, ws, jobs[i].x, jobs[i].n_tok, ys, jobs[i].modes);
        if (rc != ZL_OK) return rc;
        i += pair;
    }
    return ZL_OK;
}

/* Room in cpu->many for n jobs' arrays: one block, grown (doubling) and kept, so a decode step's calls allocate
 * nothing. Each array starts 8-byte aligned: the sizes before it are all multiples of 8. */
typedef struct many_arrays {
    matmul_task *ts;
    int64_t *first, *conv_first;
    size_t *off; /* each task's conversion in the scratch buffer */
    int *src;    /* the task whose conversion task i reads (i: its own) */
} many_arrays;

static size_t many_round8(size_t b)
{
    return (b + 7) & ~(size_t)7;
}

static int many_arrays_get(zl_cpu *cpu, int n, many_arrays *a)
{
    if (n > cpu->many_cap) {
        const int cap = n < 64 ? 64 : n > INT32_MAX / 2 ? n : 2 * n;
        const size_t c1 = (size_t)cap + 1;
        void *p = malloc(many_round8((size_t)cap * sizeof(matmul_task)) + 2 * c1 * sizeof(int64_t) +
                         c1 * sizeof(size_t) + c1 * sizeof(int));
        if (!p) return ZL_ENOMEM;
        free(cpu->many);
        cpu->many = p;
        cpu->many_cap = cap;
    }
    /* the block's layout, for many_cap jobs */
    const size_t c1 = (size_t)cpu->many_cap + 1;
    char *base = cpu->many;
    a->ts = (matmul_task *)(void *)base;
    base += many_round8((size_t)cpu->many_cap * sizeof(matmul_task));
    a->first = (int64_t *)(void *)base;
    a->conv_first = a->first + c1;
    a->off = (size_t *)(void *)(a->conv_first + c1);
    a->src = (int *)(void *)(a->off + c1);
    return ZL_OK;
}

int zl_matmul_many(zl_cpu *cpu, int n_jobs, const zl_matmul_job *jobs)
{
    if (n_jobs <= 0) return ZL_OK;
    for (int i = 0; i < n_jobs; i++)
        if (jobs[i].w->tiles && jobs[i].n_tok > 0) /* the AMX path has its own buffers and runs */
            return many_in_turn(cpu, n_jobs, jobs);
    many_arrays a;
    int rc = many_arrays_get(cpu, n_jobs, &a);
    if (rc != ZL_OK) return rc;
    matmul_task *ts = a.ts;
    int64_t *first = a.first, *conv_first = a.conv_first;
    size_t *off = a.off;
    int *src = a.src;
    int n = 0;
    size_t bytes = 0;
    /* Set up every task and lay out the conversions one after another; a task reads an earlier task's conversion
     * where it fits (conversion_fits, asked before the buffer exists: placeholders for the pointers it checks). */
    for (int j = 0; j < n_jobs && rc == ZL_OK; j++) {
        bool done;
        matmul_task *t = &ts[n];
        rc = matmul_setup(jobs[j].w, jobs[j].x, jobs[j].n_tok, jobs[j].y, jobs[j].modes, t, &done);
        if (rc != ZL_OK || done)
            continue;
        src[n] = n;
        for (int q = 0; q < n && t->convert; q++) {
            matmul_task c = ts[q];
            if (src[q] != q || !c.convert) continue;
            c.xq = (const char *)cpu; /* placeholders: non-NULL where c will have them */
            c.aux = c.aux_stride ? (void *)cpu : NULL;
            c.xw = c.wide ? (float *)(void *)cpu : NULL;
            if (conversion_fits(t, &c)) {
                src[n] = q;
                break;
            }
        }
        if (t->convert && src[n] == n) {
            size_t xq_bytes, aux_bytes;
            const size_t b = conversion_bytes(t, &xq_bytes, &aux_bytes);
            if (!b || bytes > SIZE_MAX / 4 - b) {
                rc = ZL_ENOMEM;
                break;
            }
            off[n] = bytes;
            bytes += b;
        }
        n++;
    }
    if (rc == ZL_OK && bytes)
        rc = scratch_reserve(cpu, bytes);
    if (rc == ZL_OK && n > 0) {
        /* ~8 chunks per thread over all the jobs of a few tokens, not per job (matmul_geometry's reason: a layer's
         * experts at one token would be 16 chunks of 48 rows each, a few microseconds apiece) */
        int64_t items = 0, values = 0, chunks = 0, few_rows = 0;
        for (int i = 0; i < n; i++)
            few_rows += ts[i].n_tok <= TILE_TOKS ? ts[i].ne1 : 0;
        const int64_t min_rows = few_rows / (8 * cpu->n_threads);
        for (int i = 0; i < n; i++) {
            matmul_task *t = &ts[i];
            conv_first[i] = items;
            if (t->convert && src[i] == i) {
                size_t xq_bytes, aux_bytes;
                conversion_bytes(t, &xq_bytes, &aux_bytes);
                char *base = (char *)cpu->scratch + off[i];
                t->xq = base;
                t->aux = t->aux_stride ? base + xq_bytes : NULL;
                t->xw = t->wide ? (float *)(void *)(base + xq_bytes + aux_bytes) : NULL;
                items += t->n_tok;
                values += t->n_tok * t->ne0;
            } else if (t->convert) {
                t->xq = ts[src[i]].xq;
                t->aux = ts[src[i]].aux;
                t->xw = ts[src[i]].xw;
            }
            matmul_geometry(t, cpu->n_threads, min_rows);
            first[i] = chunks;
            chunks += t->n_row_chunks * t->n_tok_chunks;
        }
        conv_first[n] = items;
        first[n] = chunks;
        many_task m = {.ts = ts, .n = n, .first = first, .conv_first = conv_first};
        atomic_init(&m.next_conv, 0);
        atomic_init(&m.next, 0);
        if (values < CONVERT_SERIAL || cpu->n_threads == 1)
            many_convert(&m, 0, 1);
        else
            zl_pool_run(cpu->pool, many_convert, &m);
        if (cpu->n_threads == 1 || chunks == 1)
            many_chunks(&m, 0, 1);
        else
            zl_pool_run(cpu->pool, many_chunks, &m);
    }
    return rc;
}

void zl_get_row(const zl_tensor *w, int64_t row, float *y)
{
    const zl_type_traits *tr = zl_type_traits_get(w->type);
    if (!tr || !tr->to_float || w->layout != ZL_LAYOUT_ROWS) { /* an X16 group has no readable row */
        memset(y, 0, (size_t)w->ne[0] * sizeof(float));
        return;
    }
    tr->to_float((const char *)w->data + (size_t)row * w->nb1, y, w->ne[0]);
}

/* ---- float ops ---- */

/* Row xr scaled by 1 / sqrt(sum / d + eps), then by g (when given). */
static void rms_scale(float *yr, const float *xr, const float *g, int64_t d, double sum, float eps)
{
    const float mean = (float)(sum / (double)d);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (g) {
        for (int64_t i = 0; i < d; i++) yr[i] = (xr[i] * scale) * g[i];
    } else {
        for (int64_t i = 0; i < d; i++) yr[i] = xr[i] * scale;
    }
}

/* ggml's order: each row's squares (rounded as floats) added one by one into a double. That chain is bound by the
 * addition's latency, so rows go 4 at a time, their 4 chains interleaved (each still in its own order). */
void zl_rmsnorm(float *y, const float *x, const float *g, int64_t n_tok, int64_t d, float eps)
{
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4) {
        const float *x0 = x + t * d, *x1 = x0 + d, *x2 = x1 + d, *x3 = x2 + d;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (int64_t i = 0; i < d; i++) {
            s0 += (double)(x0[i] * x0[i]);
            s1 += (double)(x1[i] * x1[i]);
            s2 += (double)(x2[i] * x2[i]);
            s3 += (double)(x3[i] * x3[i]);
        }
        rms_scale(y + t * d, x0, g, d, s0, eps);
        rms_scale(y + (t + 1) * d, x1, g, d, s1, eps);
        rms_scale(y + (t + 2) * d, x2, g, d, s2, eps);
        rms_scale(y + (t + 3) * d, x3, g, d, s3, eps);
    }
    for (; t < n_tok; t++) {
        const float *xr = x + t * d;
        double sum = 0.0;
        for (int64_t i = 0; i < d; i++) sum += (double)(xr[i] * xr[i]);
        rms_scale(y + t * d, xr, g, d, sum, eps);
    }
}

/* Rotates pair (a, b) of every head by (c, s). */
static void rotate_pairs(float *x, int64_t n_head, int64_t head_dim, int64_t ia, int64_t ib, float c, float s)
{
    for (int64_t h = 0; h < n_head; h++) {
        float *xh = x + h * head_dim;
        const float a = xh[ia], b = xh[ib];
        /* ggml's C++ is built with floating-point contraction (GCC's default outside ISO mode): the first
         * product of each line is fused with the sum, the second rounded on its own. */
        xh[ia] = fmaf(a, c, -(b * s));
        xh[ib] = fmaf(a, s, b * c);
    }
}

void zl_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, const float *freq,
             float attn_factor, bool neox)
{
    const int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        const float theta = (float)pos * freq[i];
        const float c = cosf(theta) * attn_factor, s = sinf(theta) * attn_factor;
        if (neox)
            rotate_pairs(x, n_head, head_dim, i, i + half, c, s);
        else
            rotate_pairs(x, n_head, head_dim, 2 * i, 2 * i + 1, c, s);
    }
}

void zl_rope_cos_sin(float *cs, int64_t n_rot, int64_t pos, float freq_base, float freq_scale,
                     const float *freq_factors, float attn_factor)
{
    const float step = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int64_t i = 0; i < n_rot / 2; i++) {
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        const float angle = freq_scale * (theta / ff);
        cs[2 * i] = cosf(angle) * attn_factor;
        cs[2 * i + 1] = sinf(angle) * attn_factor;
        theta *= step;
    }
}

void zl_rope_apply(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, const float *cs, bool neox)
{
    const int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        if (neox)
            rotate_pairs(x, n_head, head_dim, i, i + half, cs[2 * i], cs[2 * i + 1]);
        else
            rotate_pairs(x, n_head, head_dim, 2 * i, 2 * i + 1, cs[2 * i], cs[2 * i + 1]);
    }
}

void zl_silu_mul(float *y, const float *g, const float *u, int64_t n)
{
#ifdef ZL_HAVE_AVX512_KERNELS
    const int w = zl_cpu_simd_width();
    if (w == 16) {
        zl_silu_mul_avx512(y, g, u, n);
        return;
    }
    if (w == 8) {
        zl_silu_mul_avx2(y, g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        const float v = g[i];
        y[i] = (v / (1.0f + expf(-v))) * u[i];
    }
}

/* tanh-approximated gelu in float, with ggml's constants and operation order; ggml's build contracts
 * 1 + a*x*x into fma(a*x, x, 1) (its fp16 table differs in one entry without it). */
static float gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    const float coef_a = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * fmaf(coef_a * x, x, 1.0f)));
}

/* ggml evaluates gelu from a table indexed by fp16(v), holding fp16 results: entry h is
 * fp16(gelu_tanh(float(h))) for every half h. Built once per process (pthread_once), read-only afterwards; a
 * lookup costs far less than the tanhf it replaces (which was a quarter of Gemma 3's prompt time). */
static uint16_t g_gelu_table[(1 << 16) + 1]; /* + 1: padding for the vector kernel's 32-bit gathers */
static pthread_once_t g_gelu_once = PTHREAD_ONCE_INIT;

static void gelu_table_init(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        g_gelu_table[h] = zl_fp32_to_fp16(gelu_tanh(zl_fp16_to_fp32((uint16_t)h)));
}

void zl_gelu_mul(float *y, const float *g, const float *u, int64_t n)
{
    pthread_once(&g_gelu_once, gelu_table_init);
    int64_t i = 0;
#ifdef ZL_HAVE_AVX2_KERNELS
    if (zl_cpu_simd_width() >= 8) i = zl_gelu_mul_avx2(y, g, u, n, g_gelu_table);
#endif
    for (; i < n; i++) {
        const float v = g[i];
        float a;
        if (v <= -10.0f)
            a = 0.0f;
        else if (v >= 10.0f)
            a = v;
        else
            a = zl_fp16_to_fp32(g_gelu_table[zl_fp32_to_fp16(v)]);
        y[i] = a * u[i];
    }
}

void zl_softmax(float *x, int64_t n)
{
    if (n <= 0) return;
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
#ifdef ZL_HAVE_AVX512_KERNELS
    const int w = zl_cpu_simd_width();
    if (w == 16 || w == 8) {
        const float inv = w == 16 ? zl_softmax_exp_avx512(x, n, max) : zl_softmax_exp_avx2(x, n, max);
        for (int64_t i = 0; i < n; i++) x[i] *= inv;
        return;
    }
#endif
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += (double)x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void zl_softmax_unpadded(float *x, int64_t n)
{
    if (n <= 0) return;
    float max = x[0];
    for (int64_t i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    int64_t i = 0;
#ifdef ZL_HAVE_AVX512_KERNELS
    const int w = zl_cpu_simd_width();
    if (w == 16 || w == 8) {
        i = n - n % w;
        sum = w == 16 ? zl_softmax_exp_full_avx512(x, i, max) : zl_softmax_exp_full_avx2(x, i, max);
    }
#endif
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += (double)x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (i = 0; i < n; i++) x[i] *= inv;
}

void zl_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

typedef struct for_task {
    zl_item_fn fn;
    void *ctx;
    int64_t n;
} for_task;

static void for_worker(void *arg, int ith, int nth)
{
    const for_task *t = arg;
    const int64_t i0 = t->n * ith / nth, i1 = t->n * (ith + 1) / nth;
    for (int64_t i = i0; i < i1; i++)
        t->fn(t->ctx, i);
}

void zl_cpu_for(zl_cpu *cpu, int64_t n, int64_t work_per_item, zl_item_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (n == 1 || cpu->n_threads == 1 || n * work_per_item < ZL_ROWS_PARALLEL_MIN) {
        for (int64_t i = 0; i < n; i++)
            fn(ctx, i);
        return;
    }
    for_task t = {fn, ctx, n};
    zl_pool_run(cpu->pool, for_worker, &t);
}

typedef struct rows_args {
    float *y;
    const float *x, *g, *u;
    int64_t d, n; /* n: rows in all (zl_rmsnorm_mt) */
    float eps;
} rows_args;

static void rmsnorm_item(void *ctx, int64_t i) /* rows 4i .. 4i + 3 (fewer at the end) */
{
    const rows_args *a = ctx;
    const int64_t n = a->n - 4 * i < 4 ? a->n - 4 * i : 4;
    zl_rmsnorm(a->y + 4 * i * a->d, a->x + 4 * i * a->d, a->g, n, a->d, a->eps);
}

void zl_rmsnorm_mt(zl_cpu *cpu, float *y, const float *x, const float *g, int64_t n_tok, int64_t d, float eps)
{
    rows_args a = {.y = y, .x = x, .g = g, .d = d, .eps = eps, .n = n_tok};
    zl_cpu_for(cpu, (n_tok + 3) / 4, 4 * d, rmsnorm_item, &a);
}

static void silu_item(void *ctx, int64_t i)
{
    const rows_args *a = ctx;
    zl_silu_mul(a->y + i * a->d, a->g + i * a->d, a->u + i * a->d, a->d);
}

void zl_silu_mul_mt(zl_cpu *cpu, float *y, const float *g, const float *u, int64_t n_tok, int64_t d)
{
    rows_args a = {.y = y, .g = g, .u = u, .d = d};
    zl_cpu_for(cpu, n_tok, d, silu_item, &a);
}

static void add_item(void *ctx, int64_t i) /* item i: values [1024 i, 1024 (i + 1)) of d */
{
    const rows_args *a = ctx;
    const int64_t i0 = i * 1024, n = a->d - i0 < 1024 ? a->d - i0 : 1024;
    zl_add(a->y + i0, a->x + i0, n);
}

void zl_add_mt(zl_cpu *cpu, float *y, const float *x, int64_t n)
{
    rows_args a = {.y = y, .x = x, .d = n};
    zl_cpu_for(cpu, (n + 1023) / 1024, 1024, add_item, &a);
}

float zl_dot_f32(const float *a, const float *b, int64_t n)
{
    float s;
    zl_type_traits_get(ZL_F32)->vec_dot(n, &s, a, b);
    return s;
}
