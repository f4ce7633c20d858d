/*
 * ops.h - the CPU backend's operations used by the model forward passes.
 *
 * All activations are row-major float32: a batch of n tokens of width d is float[n * d]. A zl_cpu holds the
 * thread pool and a scratch buffer (for activations converted to a weight type's vec_dot_type); it is used by one
 * thread at a time (the one running the forward pass), which also takes part in the work.
 */
#ifndef ZL_CPU_OPS_H
#define ZL_CPU_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "core/threadpool.h"

typedef struct zl_cpu zl_cpu;

/* n_threads <= 0: all online CPUs. NULL on failure. */
zl_cpu *zl_cpu_create(int n_threads);
void zl_cpu_destroy(zl_cpu *cpu);
int zl_cpu_n_threads(const zl_cpu *cpu);
zl_pool *zl_cpu_pool(zl_cpu *cpu);

/* y[t, r] = sum_c w[r, c] * x[t, c] for t < n_tok, r < w->ne[1], c < w->ne[0].
 * x: (n_tok, w->ne[0]) float, y: (n_tok, w->ne[1]) float, no aliasing. Works for every supported weight type
 * (through the traits table); parallel over rows and tokens on all threads. Returns ZL_OK, ZL_ENOMEM if the
 * scratch buffer cannot grow, ZL_EUNSUPPORTED if w's type has no kernels, ZL_EINVAL on a bad shape. */
int zl_matmul(zl_cpu *cpu, const zl_tensor *w, const float *x, int64_t n_tok, float *y);
/* Per-token arithmetic modes: the size of the batch llama.cpp would multiply this token in. */
enum {
    ZL_MODE_ONE = 0,    /* a batch of one token: ggml's vec_dot */
    ZL_MODE_MULTI = 1,  /* 2+ tokens: tinyBLAS's float dots (F32/F16/BF16 weights; the traits' vec_dot_gemm) */
    ZL_MODE_MULTI8 = 2, /* 8+ tokens: also llama.cpp's tiled K-quant matmul for Q2_K..Q6_K weights (ops.c) */
    ZL_MODE_MASK = 0x0f,
    ZL_MODE_TAIL4 = 0x10, /* flag on MULTI / MULTI8: one of that batch's last n % 4 tokens, which llama.cpp's
                           * repacked matmul takes one at a time (Q4_K weights in the X16 layout, repack.h) */
};
/* zl_matmul with the arithmetic chosen per token by gemm[k], a ZL_MODE_* value. gemm NULL: llama.cpp's rule for
 * one batch of n_tok tokens (tinyBLAS when n_tok >= 2, tiled K-quant when n_tok >= 8), as zl_matmul does. */
int zl_matmul_modes(zl_cpu *cpu, const zl_tensor *w, const float *x, int64_t n_tok, float *y, const int8_t *gemm);
/* Whether weights of this type take llama.cpp's tiled K-quant matmul for ZL_MODE_MULTI8 tokens on this CPU (Q2_K ..
 * Q6_K on the vector sets). Its MUL_MAT_ID takes that path per expert, for an expert with 8+ routed rows. */
bool zl_matmul_tiled_type(uint32_t type);
/* zl_matmul_modes for n_w weights and the same x: ys[i] = ws[i] x. x is quantized once for the weights whose
 * activation type (and tile data) agree, instead of once per weight (Q, K, V; gate and up). Same results. */
int zl_matmul_shared(zl_cpu *cpu, int n_w, const zl_tensor *const *ws, const float *x, int64_t n_tok,
                     float *const *ys, const int8_t *gemm);

/* One matmul of zl_matmul_many: y = w x for n_tok rows of x, in the modes given (NULL: as zl_matmul). */
typedef struct zl_matmul_job {
    const zl_tensor *w;
    const float *x;
    int64_t n_tok;
    float *y;
    const int8_t *modes;
} zl_matmul_job;
/* n_jobs independent matmuls (no y overlapping another job's x or y) with zl_matmul_modes' results, the conversions
 * of all of them in one pool run and then all their chunks in another, so that small matmuls (a MoE layer's experts)
 * cost two dispatches instead of two each and keep every thread busy; jobs with the same x, n_tok and activation
 * type share one conversion (gate and up). Weights on the AMX tile path run one job at a time. */
int zl_matmul_many(zl_cpu *cpu, int n_jobs, const zl_matmul_job *jobs);

/* Row `row` of w, converted to float: y[0 .. w->ne[0]). (Embedding lookup.) w's type must have a to_float
 * (supported types and Q8_1) and w the row layout (the loader never repacks the embedding); otherwise y is
 * zero-filled. */
void zl_get_row(const zl_tensor *w, int64_t row, float *y);

/* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * g   for each of n_tok rows of width d. g may be NULL (no scale).
 * y may equal x. Arithmetic as ggml: squares in float summed in double, scale = 1/sqrtf(mean + eps) in float,
 * y = (x * scale) * g. */
void zl_rmsnorm(float *y, const float *x, const float *g, int64_t n_tok, int64_t d, float eps);

/* In place RoPE on one token's heads: x is (n_head, head_dim), rotating the first n_rot dims of each head at
 * position pos. freq[i] for i < n_rot/2 is the angle per position of pair i (theta_base^(-2i/n_rot), already
 * divided by any scaling factors); attn_factor scales cos/sin (YaRN magnitude, 1 otherwise).
 * neox = false: pairs are (2i, 2i+1) (llama GGUF layout); neox = true: pairs are (i, i + n_rot/2). */
void zl_rope(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, const float *freq,
             float attn_factor, bool neox);

/* The cos/sin table of one position exactly as ggml computes it (for bit-level agreement with llama.cpp):
 * for pair i < n_rot/2, theta_i = freq_scale * ((pos * b^i) / ff[i]) where b = freq_base^(-2/n_rot) and pos * b^i
 * is formed by repeated float multiplication, ff = freq_factors (NULL: all 1); cs[2i] = cos(theta_i) *
 * attn_factor, cs[2i+1] = sin(theta_i) * attn_factor. cs has n_rot floats. (No YaRN ramp: ext_factor 0.) */
void zl_rope_cos_sin(float *cs, int64_t n_rot, int64_t pos, float freq_base, float freq_scale,
                     const float *freq_factors, float attn_factor);
/* zl_rope with a precomputed table from zl_rope_cos_sin (shared by all heads of q and k at one position). */
void zl_rope_apply(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, const float *cs, bool neox);

/* y[i] = silu(g[i]) * u[i] for one row of n values (the exp is ggml's vector exp of the active width, applied
 * from the row's start as ggml's SwiGLU does). y may equal g or u. */
void zl_silu_mul(float *y, const float *g, const float *u, int64_t n);
/* y[i] = gelu_tanh(g[i]) * u[i] (GeGLU). As in ggml, gelu is evaluated on g rounded to fp16 and its result is
 * rounded to fp16 (ggml's table lookup), with gelu(g) = 0 for g <= -10 and g for g >= 10. */
void zl_gelu_mul(float *y, const float *g, const float *u, int64_t n);
/* In-place softmax over n values (max-subtracted; ggml's vector exp and its per-vector partial sums, added in
 * double, then one multiply by 1/sum). Values past n count as llama.cpp's masked padding (exp 0). */
void zl_softmax(float *x, int64_t n);
/* ggml's softmax of a row that is not padded (the MoE router's n_expert logits): the vector exp over the row's whole
 * vectors of the active width, expf over the rest, sums in double in that order, one multiply by 1/sum. */
void zl_softmax_unpadded(float *x, int64_t n);
/* y[i] += x[i]. */
void zl_add(float *y, const float *x, int64_t n);
/* The same ops over many rows on cpu's pool: rows split into one contiguous range per thread when the batch holds
 * at least ZL_ROWS_PARALLEL_MIN values (below that, the calling thread does it: a pool run costs more than the
 * work). Each row's arithmetic is the single-row op's, so results do not depend on the thread count. */
enum { ZL_ROWS_PARALLEL_MIN = 4096 };
void zl_rmsnorm_mt(zl_cpu *cpu, float *y, const float *x, const float *g, int64_t n_tok, int64_t d, float eps);
void zl_silu_mul_mt(zl_cpu *cpu, float *y, const float *g, const float *u, int64_t n_tok, int64_t d);
void zl_add_mt(zl_cpu *cpu, float *y, const float *x, int64_t n);
/* fn(ctx, i) for i in [0, n): on the pool in contiguous ranges when n * work_per_item >= ZL_ROWS_PARALLEL_MIN, else
 * in order on the calling thread. fn must not depend on which thread runs it. */
typedef void (*zl_item_fn)(void *ctx, int64_t i);
void zl_cpu_for(zl_cpu *cpu, int64_t n, int64_t work_per_item, zl_item_fn fn, void *ctx);
/* dot product of two float vectors */
float zl_dot_f32(const float *a, const float *b, int64_t n);

#endif
