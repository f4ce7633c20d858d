/*
 * engine.h - the request engine: continuous batching over one model, one paged KV cache and one scheduler
 * thread.
 *
 * A client (an HTTP thread, a test) submits a request: prompt token ids plus generation parameters. The engine
 * queues it, gives it a sequence slot when one is free and the KV cache has room, runs its prompt in chunks
 * (chunked prefill) together with the decode tokens of every other running request, samples its tokens with its
 * own sampler, turns them into text (never splitting a UTF-8 character, holding back text that may be the start
 * of a stop string), and hands the text to the request's queue. The client pulls from that queue with
 * zl_req_next and may cancel at any time; a cancelled request's KV blocks are freed at the next step.
 *
 * Results do not depend on batching: the forward pass computes each token's row independently of the others in
 * the batch, so a greedy request gives the same tokens alone or among many.
 *
 * Threads: zl_engine_submit, zl_req_* and zl_engine_stats may be called from any thread. Only the scheduler
 * thread (started by zl_engine_create, joined by zl_engine_destroy) touches the model scratch, the KV cache, the
 * prefix cache and the samplers. A zl_req is shared by its client and the engine and freed when both have let go
 * (zl_req_release by the client; the engine lets go when the request finishes).
 */
#ifndef ZL_ENGINE_H
#define ZL_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/model.h"
#include "sample/sampler.h"

typedef struct zl_engine zl_engine;
typedef struct zl_req zl_req;

typedef struct zl_engine_params {
    int32_t n_parallel;   /* sequences running at once (default 16) */
    int32_t n_ctx;        /* most tokens (prompt + generated) one sequence may hold (default min(train, 4096)) */
    int32_t n_blocks;     /* KV blocks; 0: enough for n_ctx * n_parallel (capped by kv_mem_bytes if set) */
    int64_t kv_mem_bytes; /* if > 0 and n_blocks == 0: as many blocks as fit in this many bytes */
    int32_t block_size;   /* tokens per KV block (default 16) */
    int32_t n_batch;      /* most tokens per forward pass (default 256) */
    int32_t n_threads;    /* 0: all online CPUs */
    int32_t max_queue;    /* requests waiting for a slot before submit says ZL_EFULL (default 256) */
    bool kv_f16;          /* default true */
    bool prefix_cache;    /* share full prompt blocks between requests (default true) */
    bool kv_prefault;     /* make the whole KV pool resident at creation (default false: pages come on first use) */
} zl_engine_params;

zl_engine_params zl_engine_default_params(void);

/* Validates p, allocates the KV cache and scratch, and starts the scheduler thread. m is borrowed and must
 * outlive the engine. */
int zl_engine_create(const zl_model *m, const zl_engine_params *p, zl_engine **out, zl_err *err);
/* Cancels every request (their clients see ZL_FINISH_CANCELLED), joins the scheduler and frees everything the
 * engine owns. Requests the clients still hold stay valid until zl_req_release. */
void zl_engine_destroy(zl_engine *e);
/* Stops the engine without freeing it: every request ends with ZL_FINISH_CANCELLED, the scheduler is joined,
 * and later submits fail with ZL_EIO. For servers whose client threads may still hold the engine pointer;
 * zl_engine_destroy afterwards. Idempotent. */
void zl_engine_shutdown(zl_engine *e);
/* The parameters in effect (defaults filled in). */
const zl_engine_params *zl_engine_get_params(const zl_engine *e);
/* The model the engine runs (borrowed; immutable, so any thread may read its vocabulary). */
const zl_model *zl_engine_model(const zl_engine *e);

typedef struct zl_logit_bias {
    int32_t token;
    float bias; /* added to the token's logit; -INFINITY bans it */
} zl_logit_bias;

enum { ZL_REQ_MAX_STOP = 8, ZL_REQ_MAX_TOP_LOGPROBS = 20 };

typedef struct zl_req_params {
    zl_sampler_params sampling;
    int32_t max_tokens;        /* tokens to generate at most; <= 0: until end of generation or the context */
    const char *stop[ZL_REQ_MAX_STOP]; /* stop strings (copied at submit), n_stop of them */
    int32_t n_stop;
    bool ignore_eos;           /* keep going past end-of-generation tokens */
    const zl_logit_bias *bias; /* n_bias entries, copied at submit; ids checked against the vocabulary */
    int32_t n_bias;
    bool logprobs;             /* report each generated token's log-probability */
    int32_t top_logprobs;      /* and the top N alternatives (0 .. ZL_REQ_MAX_TOP_LOGPROBS) */
    const char *grammar;       /* GBNF (sample/grammar.h) the generated text must follow, grammar_len bytes; parsed
                                * at submit (a bad grammar is ZL_EINVAL); NULL: none */
    size_t grammar_len;
    bool special_text;         /* control tokens (other than the end-of-generation one) are written as their text
                                * (tool-call markers that are control tokens, Mistral's [TOOL_CALLS]) */
} zl_req_params;

void zl_req_params_init(zl_req_params *p);

/* Queues a request for prompt[0..n) (copied). ZL_EINVAL for bad parameters (message says which), ZL_ERANGE for
 * an empty prompt, one longer than the context or an id out of the vocabulary, ZL_EFULL when max_queue requests
 * already wait (retry later), ZL_EIO when the engine is shutting down. On success *out is the client's handle. */
int zl_engine_submit(zl_engine *e, const int32_t *prompt, size_t n, const zl_req_params *p, zl_req **out,
                     zl_err *err);

typedef enum zl_finish {
    ZL_FINISH_NONE = 0,   /* still running */
    ZL_FINISH_STOP,       /* end-of-generation token or a stop string */
    ZL_FINISH_LENGTH,     /* max_tokens or the context reached */
    ZL_FINISH_CANCELLED,  /* zl_req_cancel or engine shutdown */
    ZL_FINISH_ERROR,      /* the forward pass failed (message in error) */
} zl_finish;

/* One generated token's log-probability record. */
typedef struct zl_token_logprob {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_token[ZL_REQ_MAX_TOP_LOGPROBS];
    float top_logprob[ZL_REQ_MAX_TOP_LOGPROBS];
} zl_token_logprob;

/* What zl_req_next hands over: everything that arrived since the last call. */
typedef struct zl_req_chunk {
    char *text;              /* new text, NUL-terminated, valid UTF-8 (caller frees; may be "" ) */
    size_t len;
    zl_token_logprob *lp;    /* n_lp records for the tokens generated since the last call (caller frees) */
    int32_t n_lp;
    zl_finish finish;        /* != NONE: the request is over; this chunk holds its last text */
    int32_t n_prompt;        /* prompt tokens */
    int32_t n_cached;        /* prompt tokens taken from the prefix cache */
    int32_t n_gen;           /* tokens generated so far */
    char error[256];         /* with ZL_FINISH_ERROR */
} zl_req_chunk;

/* Waits up to timeout_ms (< 0: forever) for new text or the end, then moves what arrived into *out.
 * Returns ZL_OK with out filled (out->len may be 0 and finish NONE after a timeout), or ZL_ENOMEM.
 * After a chunk with finish != NONE, further calls return the same finish and no text. */
int zl_req_next(zl_req *r, int timeout_ms, zl_req_chunk *out);
void zl_req_chunk_free(zl_req_chunk *c);
/* Asks the engine to stop the request; its KV blocks are freed at the next scheduler step. Idempotent. */
void zl_req_cancel(zl_req *r);
/* The client lets go of r (cancelling it if still running). r must not be used afterwards. */
void zl_req_release(zl_req *r);

/* Counters and gauges for metrics; a consistent snapshot taken under the engine lock. */
enum { ZL_HIST_BUCKETS = 14 };
typedef struct zl_engine_stats {
    int32_t queue_depth, running;
    /* used: held by running sequences; cached: held only by the prefix cache (evictable); used + cached + free
     * = total */
    int32_t kv_blocks_used, kv_blocks_free, kv_blocks_total, kv_blocks_cached;
    uint64_t requests_finished[5]; /* by zl_finish */
    uint64_t prompt_tokens, generated_tokens, cached_prompt_tokens, prefix_hits, prefix_lookups;
    uint64_t preemptions, steps;
    /* tokens drawn under a grammar; those of them for which the whole vocabulary was checked (the row masked) */
    uint64_t grammar_tokens, grammar_masks;
    /* Histograms in seconds: bucket i counts observations <= zl_engine_hist_bounds[i]; the last is +Inf. */
    uint64_t ttft_hist[ZL_HIST_BUCKETS], itl_hist[ZL_HIST_BUCKETS];
    double ttft_sum, itl_sum;
    uint64_t ttft_count, itl_count;
    /* time from submit to the first admission into a sequence slot */
    uint64_t queue_hist[ZL_HIST_BUCKETS];
    double queue_sum;
    uint64_t queue_count;
} zl_engine_stats;

extern const double zl_engine_hist_bounds[ZL_HIST_BUCKETS];
/* The bucket of an observation of v seconds. */
int zl_engine_hist_bucket(double v);

void zl_engine_stats_get(zl_engine *e, zl_engine_stats *out);

#endif
