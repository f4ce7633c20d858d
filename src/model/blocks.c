/*
 * blocks.c - pieces of the forward pass that several model families share, each over the whole batch: the
 * embedding lookup with each token's RoPE table, bias rows, RoPE on q and k, the SwiGLU feed-forward block and the
 * output head. The family files (llama.c, qwen.c, gemma3.c) read top to bottom with these as named steps.
 *
 * Threads: as the forward passes that call them (the thread that owns cpu and f; the ops use cpu's pool).
 */
#include <string.h>

#include "core/dump.h"
#include "model/arch.h"

void zl_block_embed(const zl_model *m, zl_fwd *f, const zl_batch *b)
{
    const zl_hparams *h = &m->hp;
    for (int32_t i = 0; i < b->n; i++) {
        zl_get_row(&m->tok_embd, b->token[i], f->x + (size_t)i * (size_t)h->n_embd); /* x: (n, n_embd) */
        zl_model_rope_table(m, b->pos[i], f->cs + (size_t)i * (size_t)h->n_rot);   /* cs: (n, n_rot) */
    }
}

/* y[t] += bias for each of n rows of width d (bias may be NULL). */
void zl_block_add_bias(float *y, const float *bias, int32_t n, int64_t d)
{
    if (!bias)
        return;
    for (int32_t t = 0; t < n; t++)
        zl_add(y + (size_t)t * (size_t)d, bias, d);
}

typedef struct rope_args {
    const zl_hparams *h;
    zl_fwd *f;
    const float *cs;
} rope_args;

/* RoPE on token i's q and k. */
static void rope_item(void *ctx, int64_t i)
{
    const rope_args *a = ctx;
    const zl_hparams *h = a->h;
    const int64_t q_dim = (int64_t)h->n_head * h->head_dim, kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    const float *cs = a->cs + (size_t)i * (size_t)h->n_rot;
    zl_rope_apply(a->f->q + (size_t)i * (size_t)q_dim, h->n_head, h->head_dim, h->n_rot, cs, h->rope_neox);
    zl_rope_apply(a->f->k + (size_t)i * (size_t)kv_dim, h->n_head_kv, h->head_dim, h->n_rot, cs, h->rope_neox);
}

void zl_block_rope(const zl_hparams *h, zl_cpu *cpu, zl_fwd *f, const float *cs, int32_t n)
{
    const int64_t per_token = (int64_t)(h->n_head + h->n_head_kv) * h->head_dim;
    zl_cpu_for(cpu, n, per_token, rope_item, &(rope_args){h, f, cs});
}

/* x += SwiGLU feed-forward block of layer il, for the whole batch. */
int zl_block_ffn_swiglu(const zl_model *m, zl_cpu *cpu, zl_fwd *f, int32_t n, int32_t il)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    int rc;
    zl_rmsnorm_mt(cpu, f->xb, f->x, l->ffn_norm, n, h->n_embd, h->norm_eps);
    /* hb (gate) and hb2 (up): (n, n_ff) */
    if ((rc = zl_matmul_shared(cpu, 2, (const zl_tensor *const[]){&l->w_gate, &l->w_up}, f->xb, n,
                               (float *const[]){f->hb, f->hb2}, f->tok_gemm)) != ZL_OK)
        return rc;
    zl_dump("ffn_norm", il, f->xb, n, h->n_embd);
    zl_dump("ffn_gate", il, f->hb, n, h->n_ff);
    zl_dump("ffn_up", il, f->hb2, n, h->n_ff);
    zl_silu_mul_mt(cpu, f->hb, f->hb, f->hb2, n, h->n_ff);
    zl_dump("ffn_swiglu", il, f->hb, n, h->n_ff);
    if ((rc = zl_matmul_modes(cpu, &l->w_down, f->hb, n, f->xb2, f->tok_gemm)) != ZL_OK) /* xb2: (n, n_embd) */
        return rc;
    zl_dump("ffn_out", il, f->xb2, n, h->n_embd);
    zl_add_mt(cpu, f->x, f->xb2, (int64_t)n * h->n_embd);
    zl_dump("l_out", il, f->x, n, h->n_embd);
    return ZL_OK;
}

/* Final norm and output projection of the tokens that asked for logits, gathered into consecutive rows. */
int zl_block_output(const zl_model *m, zl_cpu *cpu, zl_fwd *f, const zl_batch *b, float *out)
{
    const zl_hparams *h = &m->hp;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n; i++)
        if (b->logits[i])
            memcpy(f->xb + (size_t)n_out++ * (size_t)h->n_embd, f->x + (size_t)i * (size_t)h->n_embd,
                   (size_t)h->n_embd * sizeof(float));
    if (n_out == 0)
        return ZL_OK;
    zl_rmsnorm_mt(cpu, f->xb, f->xb, m->output_norm, n_out, h->n_embd, h->norm_eps);
    zl_dump("result_norm", -1, f->xb, n_out, h->n_embd);
    if (f->hidden) { /* embeddings (zl_model_embed): the hidden states, no output head */
        memcpy(f->hidden, f->xb, (size_t)n_out * (size_t)h->n_embd * sizeof(float));
        return ZL_OK;
    }
    const int rc = zl_matmul_modes(cpu, &m->output, f->xb, n_out, out, f->out_gemm); /* out: (n_out, n_vocab) */
    zl_dump("result_output", -1, out, n_out, h->n_vocab);
    return rc;
}
