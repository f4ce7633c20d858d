/*
 * embed.c - the public embeddings API (include/zili.h: zili_embedder, zili_embed) over engine/embedder.h.
 */
#include "zili.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "core/err.h"
#include "engine/embedder.h"
#include "model/model.h"

struct zili_embedder {
    zl_embedder *e;
};

static int report(int rc, const zl_err *e, char *err, size_t err_len)
{
    if (rc != ZL_OK && err && err_len)
        snprintf(err, err_len, "%s", e->msg);
    return rc;
}

bool zili_model_is_encoder(const zili_model *m) { return zl_model_hparams(m->m)->encoder; }

int zili_model_pooling(const zili_model *m) { return (int)zl_model_hparams(m->m)->pooling; }

bool zili_model_can_embed(const zili_model *m) { return zl_model_can_embed(m->m); }

zili_embedder_params zili_embedder_default_params(void)
{
    return (zili_embedder_params){.pooling = ZILI_POOL_FILE, .normalize = true};
}

int zili_embedder_create(const zili_model *m, const zili_embedder_params *params, zili_embedder **out, char *err,
                         size_t err_len)
{
    zl_err e = {{0}};
    *out = NULL;
    const zili_embedder_params p = params ? *params : zili_embedder_default_params();
    const zl_embedder_params q = {.n_ctx = p.n_ctx, .n_batch = p.n_batch, .n_threads = p.n_threads,
                                  .pooling = p.pooling, .normalize = p.normalize};
    zili_embedder *x = calloc(1, sizeof *x);
    if (!x)
        return report(zl_err_set(&e, ZL_ENOMEM, "out of memory"), &e, err, err_len);
    const int rc = zl_embedder_create(m->m, &q, &x->e, &e);
    if (rc != ZL_OK) {
        free(x);
        return report(rc, &e, err, err_len);
    }
    *out = x;
    return ZILI_OK;
}

void zili_embedder_free(zili_embedder *x)
{
    if (!x)
        return;
    zl_embedder_free(x->e);
    free(x);
}

int32_t zili_embedder_dim(const zili_embedder *x) { return zl_embedder_dim(x->e); }
int32_t zili_embedder_n_ctx(const zili_embedder *x) { return zl_embedder_n_ctx(x->e); }
int zili_embedder_pooling(const zili_embedder *x) { return zl_embedder_pooling(x->e); }

int zili_embed(zili_embedder *x, const zili_token *const *inputs, const size_t *lens, size_t n, float *out,
               char *err, size_t err_len)
{
    zl_err e = {{0}};
    return report(zl_embed(x->e, inputs, lens, n, out, &e), &e, err, err_len);
}
