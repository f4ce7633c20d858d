/*
 * ollama.h - Ollama's REST API (/api/...) on the same engine as the OpenAI routes.
 *
 * Routes: POST /api/chat and POST /api/generate (NDJSON stream by default, one object with "stream": false),
 * GET /api/tags, GET /api/ps, POST /api/show, GET /api/version, POST /api/embed and the older /api/embeddings
 * (over /v1/embeddings' request, embeddings.c); Ollama's model-management routes (pull, push, create, copy, delete, blobs) answer 501:
 * the server serves the one model it was started with. Errors are Ollama's {"error": "..."} with the status.
 *
 * A chat or generate request is rewritten into the OpenAI request it means (messages, sampling options, format as
 * response_format, think as the reasoning switches, tools as they are) and parsed by oai_parse, so the same
 * prompt tokens and parameters reach the engine as from /v1/chat/completions: at temperature 0 the same tokens.
 *
 * Threads: ol_handle runs on a connection's thread; the host is read-only after the server starts.
 */
#ifndef ZL_OLLAMA_H
#define ZL_OLLAMA_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "engine/engine.h"
#include "server/embeddings.h"
#include "server/oai.h"
#include "tokenizer/chat.h"

/* What the Ollama routes borrow from the server (serve.c), set before the daemon starts. */
typedef struct ol_host {
    const zl_model *model;
    zl_engine *engine;
    const zl_chat_tmpl *tmpl;
    const char *model_id;   /* the file name, as /v1/models lists it */
    const char *model_path; /* as given with -m */
    const oai_limits *lim;
    bool reasoning;         /* --reasoning-format deepseek: a reasoning model's <think> text apart */
    const char *cors;       /* --cors ORIGIN, or NULL */
    atomic_uint_fast64_t *seed_counter;
    zl_emb_host *emb;       /* /api/embed and /api/embeddings (embeddings.c) */
    /* The server's bookkeeping: a reply's status code (for /metrics); a generation request begins (counted as
     * active until gen_end) and ends (t_start: its head complete, for the end-to-end latency; submitted: it
     * reached the engine); whether the server is shutting down. */
    void *ctx;
    void (*count_code)(void *ctx, int code);
    void (*gen_begin)(void *ctx);
    void (*gen_end)(void *ctx, double t_start, bool submitted);
    bool (*draining)(void *ctx);
} ol_host;

/* Whether url is one of Ollama's (it starts with "/api/"). */
bool ol_is_route(const char *url);

/* Answers one request to an /api/ route: method, the body body[0..len) (too_large: it was cut at --max-body),
 * authorized (the API key check passed, or there is none), http10 (an HTTP/1.0 request), t_start (its head
 * complete, CLOCK_MONOTONIC seconds). */
enum MHD_Result ol_handle(const ol_host *h, struct MHD_Connection *c, const char *url, const char *method,
                          const char *body, size_t len, bool too_large, bool authorized, bool http10,
                          double t_start);

/* The Ollama name of a model file: its file name without ".gguf", with ":latest" (written to out[0..cap)). */
void ol_model_name(const char *model_id, char *out, size_t cap);

/* Whether the request's model name names the served model: the file name, it without ".gguf", either with a
 * ":latest" tag; case-insensitive as Ollama's names are. */
bool ol_name_matches(const char *model_id, const char *name);

/* llama.cpp's file type (general.file_type) as Ollama writes the quantization level ("Q4_K_M"); "unknown" for
 * ids it does not know. */
const char *ol_file_type_name(long long ftype);

/* A parameter count as Ollama writes it: "134.52M", "1.2B", "7B", "500K" (out[0..cap)). */
void ol_param_size(unsigned long long n, char *out, size_t cap);

/* An Ollama chat or generate body (a JSON object) rewritten as the OpenAI body it means (a new reference; caller
 * decrefs), or NULL with why[0..cap) filled (a 400). chat: /api/chat (else /api/generate); *raw: a generate
 * request with "raw": true (a completion: the prompt as written, no template). Checks the Ollama fields' types
 * (options, format, think, keep_alive, images, num_predict against n_ctx) before oai_parse sees the rest. */
json_t *ol_to_openai(json_t *root, bool chat, int32_t n_ctx, bool *raw, char *why, size_t cap);

#endif
