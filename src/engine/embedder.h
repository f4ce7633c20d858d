/*
 * embedder.h - embeddings of whole inputs: pooled final hidden states (model/embed.c's zl_model_embed), many inputs
 * per pass. The public API (src/api/embed.c) and the server's /v1/embeddings (src/server/embeddings.c) both use it.
 *
 * An embedder owns a thread pool, the forward scratch for n_batch tokens and, for decoders (llama, qwen2, qwen3), a
 * paged KV cache for one pass over up to ZL_EMBED_MAX_SEQS inputs, emptied after every pass. zl_embed cuts its
 * inputs into such passes in order (as many whole inputs as fit); since zl_model_embed computes each token in the
 * mode of its own input's length, a vector does not depend on how the inputs were grouped.
 * Threads: one caller at a time per embedder.
 */
#ifndef ZL_ENGINE_EMBEDDER_H
#define ZL_ENGINE_EMBEDDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/model.h"

enum { ZL_EMBED_MAX_SEQS = 256 };

typedef struct zl_embedder_params {
    int32_t n_ctx;     /* the longest input in tokens (0: the model's context, at most 8192) */
    int32_t n_batch;   /* tokens per pass (0: max(n_ctx, 1024)); at least n_ctx */
    int32_t n_threads; /* 0: all online CPUs */
    int pooling;       /* 0: the file's pooling_type, else a zl_pooling */
    bool normalize;    /* L2-normalise each vector */
} zl_embedder_params;

typedef struct zl_embedder zl_embedder;

/* Whether the architecture can embed at all (bert, llama, qwen2, qwen3). */
bool zl_model_can_embed(const zl_model *m);
/* ZL_EUNSUPPORTED for an architecture that cannot embed, ZL_EINVAL for parameters out of range. */
int zl_embedder_create(const zl_model *m, const zl_embedder_params *p, zl_embedder **out, zl_err *err);
void zl_embedder_free(zl_embedder *e);
int32_t zl_embedder_dim(const zl_embedder *e);   /* floats per vector (n_embd) */
int32_t zl_embedder_n_ctx(const zl_embedder *e); /* the longest input */
int zl_embedder_pooling(const zl_embedder *e);   /* the pooling in use */
/* The vectors of n inputs (input i: lens[i] tokens at inputs[i], 1 .. n_ctx of them, ids in the vocabulary) into
 * out + i * dim. Every input is checked before anything runs: ZL_EINVAL for an empty one, ZL_ERANGE for one longer
 * than n_ctx or an id out of range. */
int zl_embed(zl_embedder *e, const int32_t *const *inputs, const size_t *lens, size_t n, float *out, zl_err *err);

#endif
