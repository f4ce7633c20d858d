/*
 * embedder.c - embeddings of whole inputs over zl_model_embed (embedder.h says how passes are cut).
 */
#include "engine/embedder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "engine/kvcache.h"

enum { MAX_SEQS = ZL_EMBED_MAX_SEQS, KV_BLOCK = 16, MAX_CTX_DEFAULT = 8192, MAX_TOKENS = 1 << 20 };

struct zl_embedder {
    const zl_model *model;
    zl_embedder_params p; /* resolved: n_ctx, n_batch, pooling set */
    int32_t dim;
    zl_cpu *cpu;
    zl_kv *kv; /* decoders only */
    zl_fwd *fwd;
    int32_t *tok, *pos, *seq; /* (n_batch) one pass's batch */
};

bool zl_model_can_embed(const zl_model *m)
{
    const zl_hparams *h = zl_model_hparams(m);
    return h->encoder || h->arch == ZL_ARCH_LLAMA || h->arch == ZL_ARCH_QWEN2 || h->arch == ZL_ARCH_QWEN3;
}

int zl_embedder_create(const zl_model *m, const zl_embedder_params *params, zl_embedder **out, zl_err *err)
{
    *out = NULL;
    zl_embedder_params p = *params;
    const zl_hparams *h = zl_model_hparams(m);
    if (!zl_model_can_embed(m))
        return zl_err_set(err, ZL_EUNSUPPORTED, "embeddings of architecture %s are not supported (bert, llama, "
                                 "qwen2, qwen3)", h->arch_name);
    if (p.n_ctx <= 0)
        p.n_ctx = h->n_ctx_train < MAX_CTX_DEFAULT ? h->n_ctx_train : MAX_CTX_DEFAULT;
    if (p.n_ctx <= 0 || p.n_ctx > MAX_TOKENS || (h->encoder && p.n_ctx > h->n_ctx_train))
        return zl_err_set(err, ZL_EINVAL, "input length %d out of range (1 .. %d)", p.n_ctx,
                                 h->encoder ? h->n_ctx_train : MAX_TOKENS);
    if (p.n_batch <= 0)
        p.n_batch = p.n_ctx > 1024 ? p.n_ctx : 1024;
    if (p.n_batch < p.n_ctx || p.n_batch > MAX_TOKENS)
        return zl_err_set(err, ZL_EINVAL, "batch of %d tokens out of range (%d .. %d)", p.n_batch, p.n_ctx,
                                 MAX_TOKENS);
    if (p.n_threads < 0 || p.n_threads > 1024)
        return zl_err_set(err, ZL_EINVAL, "thread count %d out of range (0 .. 1024)", p.n_threads);
    if (p.pooling == 0)
        p.pooling = (int)h->pooling;
    if (p.pooling < ZL_POOL_MEAN || p.pooling > ZL_POOL_LAST)
        return zl_err_set(err, ZL_EINVAL, "pooling %d is not mean (1), cls (2) or last (3)", p.pooling);

    zl_embedder *x = calloc(1, sizeof *x);
    if (!x)
        return zl_err_set(err, ZL_ENOMEM, "out of memory");
    x->model = m;
    x->p = p;
    x->dim = h->n_embd;
    int rc = ZL_OK;
    if (!(x->cpu = zl_cpu_create(p.n_threads))) {
        rc = zl_err_set(err, ZL_ENOMEM, "cannot create the CPU backend with %d threads", p.n_threads);
        goto fail;
    }
    /* Encoders run a pass at once; decoders in chunks of the model's prompt batch through the KV cache. */
    int32_t fwd_tokens = p.n_batch;
    if (!h->encoder) {
        const int32_t auto_batch = zl_model_auto_batch(m);
        fwd_tokens = auto_batch < p.n_batch ? auto_batch : p.n_batch;
        zl_kv_params kp = {.n_layer = h->n_layer,
                           .kv_dim = h->n_head_kv * h->head_dim,
                           .block_size = KV_BLOCK,
                           .n_blocks = (p.n_batch + KV_BLOCK - 1) / KV_BLOCK + MAX_SEQS, /* + each input's tail */
                           .max_seqs = MAX_SEQS,
                           .type = ZL_F16};
        if ((rc = zl_kv_create(&kp, &x->kv, err)) != ZL_OK)
            goto fail;
    }
    if ((rc = zl_fwd_create(m, fwd_tokens, &x->fwd, err)) != ZL_OK)
        goto fail;
    x->tok = malloc((size_t)p.n_batch * sizeof *x->tok);
    x->pos = malloc((size_t)p.n_batch * sizeof *x->pos);
    x->seq = malloc((size_t)p.n_batch * sizeof *x->seq);
    if (!x->tok || !x->pos || !x->seq) {
        rc = zl_err_set(err, ZL_ENOMEM, "out of memory for a batch of %d tokens", p.n_batch);
        goto fail;
    }
    *out = x;
    return ZL_OK;
fail:
    zl_embedder_free(x);
    return rc;
}

void zl_embedder_free(zl_embedder *x)
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

int32_t zl_embedder_dim(const zl_embedder *x) { return x->dim; }
int32_t zl_embedder_n_ctx(const zl_embedder *x) { return x->p.n_ctx; }
int zl_embedder_pooling(const zl_embedder *x) { return x->p.pooling; }

int zl_embed(zl_embedder *x, const int32_t *const *inputs, const size_t *lens, size_t n, float *out, zl_err *err)
{
    const int32_t n_vocab = zl_model_hparams(x->model)->n_vocab;
    if (n == 0 || !inputs || !lens || !out)
        return zl_err_set(err, ZL_EINVAL, "embed: no inputs");
    for (size_t i = 0; i < n; i++) { /* every input checked before anything runs */
        if (lens[i] == 0 || !inputs[i])
            return zl_err_set(err, ZL_EINVAL, "input %zu is empty", i);
        if (lens[i] > (size_t)x->p.n_ctx)
            return zl_err_set(err, ZL_ERANGE, "input %zu has %zu tokens, more than the limit of %d", i,
                                     lens[i], x->p.n_ctx);
        for (size_t j = 0; j < lens[i]; j++)
            if (inputs[i][j] < 0 || inputs[i][j] >= n_vocab)
                return zl_err_set(err, ZL_ERANGE, "input %zu: token %zu: id %d out of range (0 .. %d)", i, j,
                                         (int)inputs[i][j], n_vocab - 1);
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
        const int rc = zl_model_embed(x->model, x->cpu, x->kv, x->fwd, &b, ns, (zl_pooling)x->p.pooling,
                                      x->p.normalize, out + first * (size_t)x->dim, err);
        if (rc != ZL_OK)
            return rc;
    }
    return ZL_OK;
}
