/*
 * embed.c - the public embeddings API (include/zili.h: zili_embedder, zili_embed) over zl_model_embed.
 *
 * An embedder owns a thread pool, the forward scratch for n_batch tokens and, for decoders (llama, qwen2, qwen3),
 * a paged KV cache for one pass of n_batch tokens over up to MAX_SEQS inputs, emptied after every pass. zili_embed
 * cuts its inputs into such passes in order (as many whole inputs as fit); since zl_model_embed computes each
 * token in the mode of its own input's length, a vector does not depend on how the inputs were grouped.
 *
 * Threads: one caller at a time per embedder; the ops use its pool.
 */
#include "zili.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "core/err.h"
#include "engine/kvcache.h"
#include "model/model.h"

enum { MAX_SEQS = 256, KV_BLOCK = 16, MAX_CTX_DEFAULT = 8192, MAX_TOKENS = 1 << 20 };

struct zili_embedder {
    const zili_model *model;
    zili_embedder_params p; /* resolved: n_ctx, n_batch, pooling set */
    int32_t dim;
    zl_cpu *cpu;
    zl_kv *kv; /* decoders only */
    zl_fwd *fwd;
    int32_t *tok, *pos, *seq; /* (n_batch) one pass's batch */
};

static int report(int rc, const zl_err *e, char *err, size_t err_len)
{
    if (rc != ZL_OK && err && err_len)
        snprintf(err, err_len, "%s", e->msg);
    return rc;
}

bool zili_model_is_encoder(const zili_model *m) { return zl_model_hparams(m->m)->encoder; }

int zili_model_pooling(const zili_model *m) { return (int)zl_model_hparams(m->m)->pooling; }

bool zili_model_can_embed(const zili_model *m)
{
    const zl_hparams *h = zl_model_hparams(m->m);
    return h->encoder || h->arch == ZL_ARCH_LLAMA || h->arch == ZL_ARCH_QWEN2 || h->arch == ZL_ARCH_QWEN3;
}

zili_embedder_params zili_embedder_default_params(void)
{
    return (zili_embedder_params){.pooling = ZILI_POOL_FILE, .normalize = true};
}

int zili_embedder_create(const zili_model *m, const zili_embedder_params *params, zili_embedder **out, char *err,
                         size_t err_len)
{
    zl_err e = {{0}};
    *out = NULL;
    zili_embedder_params p = params ? *params : zili_embedder_default_params();
    const zl_hparams *h = zl_model_hparams(m->m);
    if (!zili_model_can_embed(m))
        return report(zl_err_set(&e, ZL_EUNSUPPORTED, "%s: embeddings of architecture %s are not supported (bert, "
                                 "llama, qwen2, qwen3)", m->name, h->arch_name), &e, err, err_len);
    if (p.n_ctx <= 0)
        p.n_ctx = h->n_ctx_train < MAX_CTX_DEFAULT ? h->n_ctx_train : MAX_CTX_DEFAULT;
    if (p.n_ctx <= 0 || p.n_ctx > MAX_TOKENS || (h->encoder && p.n_ctx > h->n_ctx_train))
        return report(zl_err_set(&e, ZL_EINVAL, "input length %d out of range (1 .. %d)", p.n_ctx,
                                 h->encoder ? h->n_ctx_train : MAX_TOKENS), &e, err, err_len);
    if (p.n_batch <= 0)
        p.n_batch = p.n_ctx > 1024 ? p.n_ctx : 1024;
    if (p.n_batch < p.n_ctx || p.n_batch > MAX_TOKENS)
        return report(zl_err_set(&e, ZL_EINVAL, "batch of %d tokens out of range (%d .. %d)", p.n_batch, p.n_ctx,
                                 MAX_TOKENS), &e, err, err_len);
    if (p.n_threads < 0 || p.n_threads > 1024)
        return report(zl_err_set(&e, ZL_EINVAL, "thread count %d out of range (0 .. 1024)", p.n_threads), &e, err,
                      err_len);
    if (p.pooling == ZILI_POOL_FILE)
        p.pooling = (int)h->pooling;
    if (p.pooling < ZILI_POOL_MEAN || p.pooling > ZILI_POOL_LAST)
        return report(zl_err_set(&e, ZL_EINVAL, "pooling %d is not mean (1), cls (2) or last (3)", p.pooling), &e,
                      err, err_len);

    zili_embedder *x = calloc(1, sizeof *x);
    if (!x)
        return report(zl_err_set(&e, ZL_ENOMEM, "out of memory"), &e, err, err_len);
    x->model = m;
    x->p = p;
    x->dim = h->n_embd;
    int rc = ZL_OK;
    if (!(x->cpu = zl_cpu_create(p.n_threads))) {
        rc = zl_err_set(&e, ZL_ENOMEM, "cannot create the CPU backend with %d threads", p.n_threads);
        goto fail;
    }
    /* Encoders run a pass at once; decoders in chunks of the model's prompt batch through the KV cache. */
    int32_t fwd_tokens = p.n_batch;
    if (!h->encoder) {
        const int32_t auto_batch = zl_model_auto_batch(m->m);
        fwd_tokens = auto_batch < p.n_batch ? auto_batch : p.n_batch;
        zl_kv_params kp = {.n_layer = h->n_layer,
                           .kv_dim = h->n_head_kv * h->head_dim,
                           .block_size = KV_BLOCK,
                           .n_blocks = (p.n_batch + KV_BLOCK - 1) / KV_BLOCK + MAX_SEQS, /* + each input's tail */
                           .max_seqs = MAX_SEQS,
                           .type = ZL_F16};
        if ((rc = zl_kv_create(&kp, &x->kv, &e)) != ZL_OK)
            goto fail;
    }
    if ((rc = zl_fwd_create(m->m, fwd_tokens, &x->fwd, &e)) != ZL_OK)
        goto fail;
    x->tok = malloc((size_t)p.n_batch * sizeof *x->tok);
    x->pos = malloc((size_t)p.n_batch * sizeof *x->pos);
    x->seq = malloc((size_t)p.n_batch * sizeof *x->seq);
    if (!x->tok || !x->pos || !x->seq) {
        rc = zl_err_set(&e, ZL_ENOMEM, "out of memory for a batch of %d tokens", p.n_batch);
        goto fail;
    }
    *out = x;
    return ZILI_OK;
fail:
    zili_embedder_free(x);
    return report(rc, &e, err, err_len);
}

void zili_embedder_free(zili_embedder *x)
{
    if (!x)
        return;
    free(x->tok);
    free(x->pos);
    free(x->seq);
    zl_fwd_destroy(x->fwd);
    zl_kv_destroy(x->kv);
    zl_cpu_destroy(x->cpu);
    free(x);
}

int32_t zili_embedder_dim(const zili_embedder *x) { return x->dim; }
int32_t zili_embedder_n_ctx(const zili_embedder *x) { return x->p.n_ctx; }
int zili_embedder_pooling(const zili_embedder *x) { return x->p.pooling; }

int zili_embed(zili_embedder *x, const zili_token *const *inputs, const size_t *lens, size_t n, float *out,
               char *err, size_t err_len)
{
    zl_err e = {{0}};
    const int32_t n_vocab = zl_model_hparams(x->model->m)->n_vocab;
    if (n == 0 || !inputs || !lens || !out)
        return report(zl_err_set(&e, ZL_EINVAL, "embed: no inputs"), &e, err, err_len);
    for (size_t i = 0; i < n; i++) { /* every input checked before anything runs */
        if (lens[i] == 0 || !inputs[i])
            return report(zl_err_set(&e, ZL_EINVAL, "input %zu is empty", i), &e, err, err_len);
        if (lens[i] > (size_t)x->p.n_ctx)
            return report(zl_err_set(&e, ZL_ERANGE, "input %zu has %zu tokens, more than the limit of %d", i,
                                     lens[i], x->p.n_ctx), &e, err, err_len);
        for (size_t j = 0; j < lens[i]; j++)
            if (inputs[i][j] < 0 || inputs[i][j] >= n_vocab)
                return report(zl_err_set(&e, ZL_ERANGE, "input %zu: token %zu: id %d out of range (0 .. %d)", i, j,
                                         (int)inputs[i][j], n_vocab - 1), &e, err, err_len);
    }
    size_t i = 0;
    while (i < n) {
        int32_t nt = 0, ns = 0;
        const size_t first = i;
        while (i < n && ns < MAX_SEQS && (size_t)nt + lens[i] <= (size_t)x->p.n_batch) {
            for (size_t j = 0; j < lens[i]; j++) {
                x->tok[nt] = inputs[i][j];
                x->pos[nt] = (int32_t)j;
                x->seq[nt] = ns;
                nt++;
            }
            ns++;
            i++;
        }
        const zl_batch b = {.n = nt, .token = x->tok, .pos = x->pos, .seq = x->seq};
        const int rc = zl_model_embed(x->model->m, x->cpu, x->kv, x->fwd, &b, ns, (zl_pooling)x->p.pooling,
                                      x->p.normalize, out + first * (size_t)x->dim, &e);
        if (rc != ZL_OK)
            return report(rc, &e, err, err_len);
    }
    return ZILI_OK;
}
