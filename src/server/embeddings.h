/*
 * embeddings.h - POST /v1/embeddings: OpenAI's embeddings request over the engine's embedder (engine/embedder.h).
 *
 * input: a string, a list of strings, a list of token ids, or a list of such lists (at most ZL_EMB_MAX_INPUTS);
 * strings are tokenized as llama.cpp's embedding tools do (special tokens added, special text not parsed).
 * encoding_format: "float" (default) or "base64" (the little-endian float32 bytes); dimensions: refused with a 400
 * unless it is the model's own width (no model served here is trained for truncation). The vectors are the file's
 * pooling (mean, CLS or last token), L2-normalized. usage: prompt_tokens = total_tokens = the inputs' tokens.
 *
 * Threads: requests are answered one at a time on one embedder (created on the first request, with its own
 * thread pool of the server's thread count), under the host's mutex.
 */
#ifndef ZL_SERVER_EMBEDDINGS_H
#define ZL_SERVER_EMBEDDINGS_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/embedder.h"
#include "model/model.h"

enum { ZL_EMB_MAX_INPUTS = 2048 };

typedef struct zl_emb_host {
    const zl_model *model;
    const char *model_id; /* as /v1/models lists it */
    int32_t n_ctx;        /* the longest input (the server's context, within the model's) */
    int32_t n_threads;
    pthread_mutex_t mu;
    zl_embedder *e; /* NULL until the first request */
} zl_emb_host;

void zl_emb_host_init(zl_emb_host *h, const zl_model *model, const char *model_id, int32_t n_ctx,
                      int32_t n_threads);
void zl_emb_host_free(zl_emb_host *h);

/* Answers one embeddings request (root: the parsed JSON object body): the response object (a new reference), or
 * NULL with *status (400, 500) and why[0..cap) (and *param: the offending field, or NULL) set. */
json_t *zl_emb_request(zl_emb_host *h, json_t *root, int *status, const char **param, char *why, size_t cap);

#endif
