/*
 * engine.c - the request engine: one scheduler thread, continuous batching, chunked prefill, prefix caching,
 * preemption when the KV cache runs out (see engine.h for the contract).
 *
 * A request's life (the function behind each transition):
 *
 *   submitted --zl_engine_submit--> QUEUED --admit--> RUNNING --finish--> DONE (client drains, then releases)
 *                                     ^                  |
 *                                     +----preempt-------+   (KV full: youngest request gives back its blocks
 *                                                              and is recomputed later from its tokens)
 *
 * A running request r holds slot s (its KV sequence id). r->toks holds every token known for it (prompt, then
 * generated); r->n_done of them are in the KV cache. r->n_toks - r->n_done > 1 means prefill (a chunk of the
 * pending tokens goes into the next batch); == 1 means decode (the last sampled token goes in). When a batch
 * includes a request's last pending token, the batch returns its logits row and the request samples its next
 * token. Preemption frees the sequence and sets n_done = 0; the prefix cache usually still holds the blocks.
 *
 * One step (scheduler_step):
 *   1. retire cancelled requests (their KV blocks are freed here, before the batch is built);
 *   2. admit queued requests into free slots while the KV cache has room (prefix cache lookup first);
 *   3. build the batch: every decode token first, then prompt chunks, within n_batch tokens and the free KV
 *      blocks (evicting unused prefix blocks, then preempting the youngest running request if a decode needs it);
 *   4. forward; register newly filled blocks with the prefix cache;
 *   5. sample every request that got a logits row, detokenize, check stop strings / EOG / length, hand the text
 *      to the request's queue, retire finished requests.
 *
 * Threads and ownership:
 *   e->mu guards the queue (q_head..q_tail, q_len), e->stop and e->st (stats). Clients take it in submit and
 *   stats; the scheduler to take queued requests and update stats. It is never held while a request's lock is
 *   taken.
 *   r->mu guards the request's output (out, lp, finish, counters for the client). The scheduler appends; the
 *   client drains in zl_req_next.
 *   Everything else in zl_engine (KV, prefix cache, fwd scratch, slots, samplers, the scheduler-only fields of
 *   zl_req) belongs to the scheduler thread alone.
 *   r->refs counts the client's and the engine's hold; the last to let go frees r. r->cancel is atomic.
 */
#include "engine/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/dtype.h"
#include "engine/constrain.h"
#include "engine/prefix.h"

const double zl_engine_hist_bounds[ZL_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                                       1.0,   2.5,  5.0,   10.0, 30.0, 60.0, INFINITY};

struct zl_req {
    /* Set at submit, read-only afterwards. */
    int32_t n_prompt;
    zl_req_params p;
    char *stop[ZL_REQ_MAX_STOP];
    size_t stop_len[ZL_REQ_MAX_STOP];
    size_t stop_max;
    zl_logit_bias *bias;
    zl_grammar *grammar;      /* the request's grammar, NULL: none */
    zl_grammar_state *gstate; /* its position (the sampling thread's) */
    bool grammar_dead;        /* no token could continue the text (sampling thread; read by take_token) */
    atomic_int refs;
    atomic_bool cancel;

    /* Output queue, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *out;
    size_t out_len, out_cap;
    zl_token_logprob *lp;
    int32_t n_lp, lp_cap;
    zl_finish finish;
    bool finish_told;
    int32_t q_cached, q_gen;
    char error[256];

    /* Scheduler only. */
    zl_req *next;       /* queue link */
    int32_t slot;       /* KV sequence id while running, else -1 */
    int32_t *toks;      /* prompt then generated */
    int32_t n_toks, toks_cap;
    /* Log-probability records waiting for their token's text to be handed out (held back with it while it may
     * still turn out to be a stop string), each with where that text starts in text. */
    zl_token_logprob *lp_pend;
    size_t *lp_start;
    int32_t n_pend, pend_cap;
    int32_t n_done;     /* tokens of toks in the KV cache */
    int32_t n_reg;      /* full blocks registered with the prefix cache */
    int32_t n_gen;
    int32_t n_cached;   /* prompt tokens from the prefix cache at first admission */
    bool admitted_once;
    uint64_t order;     /* admission order; the largest is the youngest */
    zl_sampler *smp;
    zl_detok dt;
    char *text;         /* generated text so far (valid UTF-8) */
    size_t text_len, text_cap;
    size_t emitted;     /* bytes of text handed to the client */
    double t_submit, t_last;
};

struct zl_engine {
    const zl_model *m;
    zl_engine_params p;
    int32_t n_vocab;
    zl_cpu *cpu;
    zl_kv *kv;
    zl_fwd *fwd;
    zl_prefix *pc;
    int32_t *b_tok, *b_pos, *b_seq; /* n_batch */
    int8_t *b_want;
    int8_t *b_gemm; /* per token: ZL_MODE_* of its own prompt's batch (zl_batch.gemm) */
    float *logits;                  /* n_parallel rows of n_vocab */
    zl_req **slots;                 /* n_parallel */
    int32_t *blk;                   /* scratch block ids for lookups: ceil(n_ctx / block_size) */
    int32_t *row_slot;              /* per logits row: the slot it belongs to */
    int32_t *row_tok;               /* per logits row: the token sampled from it */
    zl_token_logprob *row_lp;       /* per logits row: its log-probabilities (requests that ask) */
    zl_sample_ws **ws;              /* sampling scratch, one per pool thread */
    int32_t **ids;                  /* the same: the tokens a grammar admits (n_vocab each) */
    int n_ws;
    int32_t *chunk;                 /* per slot: tokens in this step's batch */
    char *piece;                    /* detok output scratch */
    zl_token_text *tt;              /* every token's text, for grammars (constrain.h) */
    size_t piece_cap;
    uint64_t order;
    int32_t n_running;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    zl_req *q_head, *q_tail;
    int32_t q_len;
    bool stop;
    zl_engine_stats st;
    pthread_t thr;
    bool thr_started;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int32_t blocks_for(int32_t n, int32_t bs) { return (int32_t)(((int64_t)n + bs - 1) / bs); }

/* ------------------------------------------------------------------------------------------------------------ */
/* Parameters */

zl_engine_params zl_engine_default_params(void)
{
    zl_engine_params p = {.n_parallel = 16,
                          .n_ctx = 0,
                          .n_blocks = 0,
                          .kv_mem_bytes = 0,
                          .block_size = 16,
                          .n_batch = 256,
                          .n_threads = 0,
                          .max_queue = 256,
                          .kv_f16 = true,
                          .prefix_cache = true};
    return p;
}

void zl_req_params_init(zl_req_params *p)
{
    memset(p, 0, sizeof *p);
    p->sampling = (zl_sampler_params){.temp = 1.0f,
                                      .top_k = 0,
                                      .top_p = 1.0f,
                                      .min_p = 0.0f,
                                      .repeat_penalty = 1.0f,
                                      .repeat_last_n = 64,
                                      .presence_penalty = 0.0f,
                                      .frequency_penalty = 0.0f,
                                      .seed = 0};
    p->max_tokens = 0;
}

const zl_engine_params *zl_engine_get_params(const zl_engine *e) { return &e->p; }
const zl_model *zl_engine_model(const zl_engine *e) { return e->m; }

/* ------------------------------------------------------------------------------------------------------------ */
/* Requests: the client side */

static void req_free(zl_req *r)
{
    for (int i = 0; i < ZL_REQ_MAX_STOP; i++)
        free(r->stop[i]);
    free(r->bias);
    zl_grammar_state_free(r->gstate);
    zl_grammar_free(r->grammar);
    free(r->out);
    free(r->lp);
    free(r->lp_pend);
    free(r->lp_start);
    free(r->toks);
    free(r->text);
    zl_sampler_free(r->smp);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void req_unref(zl_req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        req_free(r);
}

void zl_req_cancel(zl_req *r) { atomic_store(&r->cancel, true); }

void zl_req_release(zl_req *r)
{
    if (!r)
        return;
    zl_req_cancel(r);
    req_unref(r);
}

void zl_req_chunk_free(zl_req_chunk *c)
{
    free(c->text);
    free(c->lp);
    c->text = NULL;
    c->lp = NULL;
}

int zl_req_next(zl_req *r, int timeout_ms, zl_req_chunk *out)
{
    memset(out, 0, sizeof *out);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&r->mu);
    while (r->out_len == 0 && r->n_lp == 0 && (r->finish == ZL_FINISH_NONE || r->finish_told) && timeout_ms != 0) {
        if (r->finish != ZL_FINISH_NONE)
            break;
        if (timeout_ms < 0)
            pthread_cond_wait(&r->cv, &r->mu);
        else if (pthread_cond_timedwait(&r->cv, &r->mu, &until) != 0)
            break;
    }
    int rc = ZL_OK;
    out->text = malloc(r->out_len + 1);
    if (!out->text) {
        rc = ZL_ENOMEM;
        goto done;
    }
    if (r->out_len)
        memcpy(out->text, r->out, r->out_len);
    out->text[r->out_len] = 0;
    out->len = r->out_len;
    r->out_len = 0;
    if (r->n_lp) {
        out->lp = r->lp;
        out->n_lp = r->n_lp;
        r->lp = NULL;
        r->n_lp = r->lp_cap = 0;
    }
    out->finish = r->finish;
    if (r->finish != ZL_FINISH_NONE)
        r->finish_told = true;
    out->n_prompt = r->n_prompt;
    out->n_cached = r->q_cached;
    out->n_gen = r->q_gen;
    snprintf(out->error, sizeof out->error, "%s", r->error);
done:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static bool valid_float(float f) { return !isnan(f) && f != INFINITY; }

int zl_engine_submit(zl_engine *e, const int32_t *prompt, size_t n, const zl_req_params *p, zl_req **out,
                     zl_err *err)
{
    *out = NULL;
    if (n == 0)
        return zl_err_set(err, ZL_ERANGE, "the prompt is empty");
    if (n >= (size_t)e->p.n_ctx)
        return zl_err_set(err, ZL_ERANGE,
                          "the prompt has %zu tokens, more than the context allows (%d, one kept for the reply)", n,
                          e->p.n_ctx - 1);
    for (size_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= e->n_vocab)
            return zl_err_set(err, ZL_ERANGE, "prompt token %zu: id %d out of range (vocabulary %d)", i, prompt[i],
                              e->n_vocab);
    if (p->n_stop < 0 || p->n_stop > ZL_REQ_MAX_STOP)
        return zl_err_set(err, ZL_EINVAL, "%d stop strings (at most %d)", p->n_stop, ZL_REQ_MAX_STOP);
    if (p->top_logprobs < 0 || p->top_logprobs > ZL_REQ_MAX_TOP_LOGPROBS)
        return zl_err_set(err, ZL_EINVAL, "top_logprobs %d out of range (0 .. %d)", p->top_logprobs,
                          ZL_REQ_MAX_TOP_LOGPROBS);
    if (p->n_bias < 0 || p->n_bias > e->n_vocab)
        return zl_err_set(err, ZL_EINVAL, "%d logit_bias entries (at most %d)", p->n_bias, e->n_vocab);
    for (int32_t i = 0; i < p->n_bias; i++) {
        if (p->bias[i].token < 0 || p->bias[i].token >= e->n_vocab)
            return zl_err_set(err, ZL_EINVAL, "logit_bias: token id %d out of range (vocabulary %d)",
                              p->bias[i].token, e->n_vocab);
        if (!valid_float(p->bias[i].bias))
            return zl_err_set(err, ZL_EINVAL, "logit_bias: token %d: bias is not a finite number",
                              p->bias[i].token);
    }
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return zl_err_set(err, ZL_EINVAL, "stop string %d is empty", i);

    zl_req *r = calloc(1, sizeof *r);
    if (!r)
        return zl_err_set(err, ZL_ENOMEM, "out of memory for a request");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->slot = -1;
    r->n_prompt = (int32_t)n;
    r->p = *p;
    int rc = zl_sampler_create_shared(&p->sampling, e->n_vocab, &r->smp, err);
    if (rc != ZL_OK) {
        req_free(r);
        return rc;
    }
    r->toks_cap = (int32_t)n + 64;
    r->toks = malloc((size_t)r->toks_cap * sizeof *r->toks);
    if (!r->toks)
        goto nomem;
    memcpy(r->toks, prompt, n * sizeof *prompt);
    r->n_toks = (int32_t)n;
    for (int32_t i = 0; i < p->n_stop; i++) {
        r->stop[i] = strdup(p->stop[i]);
        if (!r->stop[i])
            goto nomem;
        r->stop_len[i] = strlen(p->stop[i]);
        if (r->stop_len[i] > r->stop_max)
            r->stop_max = r->stop_len[i];
        r->p.stop[i] = r->stop[i];
    }
    if (p->n_bias) {
        r->bias = malloc((size_t)p->n_bias * sizeof *r->bias);
        if (!r->bias)
            goto nomem;
        memcpy(r->bias, p->bias, (size_t)p->n_bias * sizeof *r->bias);
    }
    r->p.bias = r->bias;
    r->p.grammar = NULL;
    if (p->grammar) {
        if ((rc = zl_grammar_parse(p->grammar, p->grammar_len, &r->grammar, err)) != ZL_OK) {
            req_free(r);
            return rc;
        }
        r->gstate = zl_grammar_state_new(r->grammar);
        if (!r->gstate)
            goto nomem;
    }
    zl_detok_init(&r->dt, zl_model_vocab(e->m), r->p.special_text);
    atomic_init(&r->refs, 2);
    atomic_init(&r->cancel, false);
    r->t_submit = now_s();

    pthread_mutex_lock(&e->mu);
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        req_free(r);
        return zl_err_set(err, ZL_EIO, "the engine is shutting down");
    }
    if (e->q_len >= e->p.max_queue) {
        const int32_t q = e->q_len;
        pthread_mutex_unlock(&e->mu);
        req_free(r);
        return zl_err_set(err, ZL_EFULL, "the queue is full (%d requests waiting)", q);
    }
    if (e->q_tail)
        e->q_tail->next = r;
    else
        e->q_head = r;
    e->q_tail = r;
    e->q_len++;
    e->st.queue_depth = e->q_len;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return ZL_OK;
nomem:
    req_free(r);
    return zl_err_set(err, ZL_ENOMEM, "out of memory for a request of %zu tokens", n);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Requests: the scheduler side */

int zl_engine_hist_bucket(double v)
{
    int i = 0;
    while (i < ZL_HIST_BUCKETS - 1 && v > zl_engine_hist_bounds[i])
        i++;
    return i;
}

static void hist_add(uint64_t *h, double *sum, uint64_t *count, double v)
{
    h[zl_engine_hist_bucket(v)]++;
    *sum += v;
    (*count)++;
}

/* Appends bytes to the client's queue (caller holds r->mu). */
static bool out_append(zl_req *r, const char *s, size_t n)
{
    if (n == 0)
        return true;
    if (r->out_len + n + 1 > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 256;
        while (cap < r->out_len + n + 1)
            cap *= 2;
        char *nb = realloc(r->out, cap);
        if (!nb)
            return false;
        r->out = nb;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
    return true;
}

/* Where the earliest stop string starts in text[from, len), or -1. */
static ptrdiff_t find_stop(const zl_req *r, size_t from, size_t *which)
{
    ptrdiff_t best = -1;
    for (int32_t i = 0; i < r->p.n_stop; i++) {
        const size_t avail = r->text_len - from;
        const size_t sl = r->stop_len[i];
        if (sl > avail)
            continue;
        const char *t = r->text + from;
        const char *hit = memmem(t, avail, r->stop[i], sl);
        if (hit && (best < 0 || hit - r->text < best)) {
            best = hit - r->text;
            *which = (size_t)i;
        }
    }
    return best;
}

/* Length of the longest suffix of text[from, len) that is a proper prefix of some stop string: text that might
 * still become a stop string and must be held back. */
static size_t stop_holdback(const zl_req *r, size_t from)
{
    const size_t avail = r->text_len - from;
    size_t best = 0;
    for (int32_t i = 0; i < r->p.n_stop; i++) {
        const size_t sl = r->stop_len[i];
        for (size_t k = (sl - 1 < avail ? sl - 1 : avail); k > best; k--)
            if (!memcmp(r->text + r->text_len - k, r->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* Queues r's log-probability record for a token whose text starts at text offset start (scheduler only). A
 * record that cannot be queued (out of memory) is dropped. */
static void lp_hold(zl_req *r, const zl_token_logprob *lp, size_t start)
{
    if (r->n_pend == r->pend_cap) {
        const int32_t cap = r->pend_cap ? 2 * r->pend_cap : 16;
        zl_token_logprob *nl = realloc(r->lp_pend, (size_t)cap * sizeof *nl);
        if (nl)
            r->lp_pend = nl;
        size_t *ns = nl ? realloc(r->lp_start, (size_t)cap * sizeof *ns) : NULL;
        if (ns)
            r->lp_start = ns;
        if (!nl || !ns)
            return;
        r->pend_cap = cap;
    }
    r->lp_pend[r->n_pend] = *lp;
    r->lp_start[r->n_pend++] = start;
}

/* Hands new text to the client. final: the request ends now (emit everything that is not cut by a stop).
 * lp (may be NULL): the log-probability record of the token just taken, whose text starts at lp_start. A record
 * goes out with the first byte of its token's text, so that the records always describe the text handed out:
 * those of tokens cut by a stop string never go out; at the end (final, no stop) all that are left do.
 * Returns true if a stop string was found (the text is cut before it). */
static bool emit_text(zl_req *r, bool final, const zl_token_logprob *lp, size_t lp_start)
{
    if (lp)
        lp_hold(r, lp, lp_start);
    size_t which = 0;
    const ptrdiff_t at = find_stop(r, r->emitted, &which);
    size_t upto;
    if (at >= 0)
        upto = (size_t)at;
    else if (final)
        upto = r->text_len;
    else
        upto = r->text_len - stop_holdback(r, r->emitted);
    int32_t n_out = 0; /* pending records to hand out, in order */
    while (n_out < r->n_pend && (r->lp_start[n_out] < upto || (final && at < 0)))
        n_out++;
    pthread_mutex_lock(&r->mu);
    bool ok = upto == r->emitted || out_append(r, r->text + r->emitted, upto - r->emitted);
    if (ok)
        r->emitted = upto;
    if (n_out && r->n_lp + n_out > r->lp_cap) {
        int32_t cap = r->lp_cap ? r->lp_cap : 16;
        while (cap < r->n_lp + n_out)
            cap *= 2;
        zl_token_logprob *nl = realloc(r->lp, (size_t)cap * sizeof *nl);
        if (nl) {
            r->lp = nl;
            r->lp_cap = cap;
        }
    }
    const int32_t n_copy = r->n_lp + n_out <= r->lp_cap ? n_out : r->lp_cap - r->n_lp;
    if (n_copy > 0) {
        memcpy(r->lp + r->n_lp, r->lp_pend, (size_t)n_copy * sizeof *r->lp);
        r->n_lp += n_copy;
    }
    r->q_gen = r->n_gen;
    r->q_cached = r->n_cached;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (at >= 0 || final) {
        r->n_pend = 0; /* the rest belongs to text that is never handed out */
    } else if (n_out) {
        memmove(r->lp_pend, r->lp_pend + n_out, (size_t)(r->n_pend - n_out) * sizeof *r->lp_pend);
        memmove(r->lp_start, r->lp_start + n_out, (size_t)(r->n_pend - n_out) * sizeof *r->lp_start);
        r->n_pend -= n_out;
    }
    return at >= 0;
}

static bool text_append(zl_req *r, const char *s, size_t n)
{
    if (r->text_len + n + 1 > r->text_cap) {
        size_t cap = r->text_cap ? r->text_cap : 256;
        while (cap < r->text_len + n + 1)
            cap *= 2;
        char *nb = realloc(r->text, cap);
        if (!nb)
            return false;
        r->text = nb;
        r->text_cap = cap;
    }
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = 0;
    return true;
}

/* Ends r: frees its sequence, posts the finish reason, drops the engine's hold. */
static void finish(zl_engine *e, zl_req *r, zl_finish why, const char *error)
{
    if (r->slot >= 0) {
        zl_kv_seq_free(e->kv, r->slot);
        e->slots[r->slot] = NULL;
        r->slot = -1;
        e->n_running--;
    }
    pthread_mutex_lock(&r->mu);
    r->finish = why;
    r->q_gen = r->n_gen;
    r->q_cached = r->n_cached;
    if (error)
        snprintf(r->error, sizeof r->error, "%s", error);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&e->mu);
    e->st.requests_finished[why]++;
    e->st.generated_tokens += (uint64_t)r->n_gen;
    e->st.running = e->n_running;
    pthread_mutex_unlock(&e->mu);
    req_unref(r);
}

/* Flushes the detokenizer and emits the rest of the text, then ends r with why (STOP if a stop string cuts the
 * flushed text). */
static void finish_with_text(zl_engine *e, zl_req *r, zl_finish why)
{
    int n = zl_detok_flush(&r->dt, e->piece, e->piece_cap);
    if (n > 0)
        text_append(r, e->piece, (size_t)n);
    if (emit_text(r, true, NULL, 0))
        why = ZL_FINISH_STOP;
    finish(e, r, why, NULL);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Engine */

static void *scheduler_main(void *arg);

int zl_engine_create(const zl_model *m, const zl_engine_params *params, zl_engine **out, zl_err *err)
{
    *out = NULL;
    zl_engine_params p = params ? *params : zl_engine_default_params();
    const zl_hparams *h = zl_model_hparams(m);
    if (p.n_ctx <= 0)
        p.n_ctx = h->n_ctx_train < 4096 ? h->n_ctx_train : 4096;
    if (p.n_ctx < 2 || p.n_ctx > (1 << 24))
        return zl_err_set(err, ZL_EINVAL, "engine: context %d out of range (2 .. %d)", p.n_ctx, 1 << 24);
    if (p.n_parallel <= 0 || p.n_parallel > 4096)
        return zl_err_set(err, ZL_EINVAL, "engine: parallel %d out of range (1 .. 4096)", p.n_parallel);
    if (p.block_size <= 0 || p.block_size > 1024)
        return zl_err_set(err, ZL_EINVAL, "engine: block size %d out of range (1 .. 1024)", p.block_size);
    if (p.n_batch <= 0)
        p.n_batch = 256;
    if (p.n_batch < p.n_parallel)
        p.n_batch = p.n_parallel;
    if (p.n_batch > (1 << 16))
        return zl_err_set(err, ZL_EINVAL, "engine: batch %d out of range (1 .. %d)", p.n_batch, 1 << 16);
    if (p.max_queue < 0)
        return zl_err_set(err, ZL_EINVAL, "engine: max queue %d is negative", p.max_queue);
    if (p.n_threads < 0 || p.n_threads > 1024)
        return zl_err_set(err, ZL_EINVAL, "engine: thread count %d out of range (0 .. 1024)", p.n_threads);
    const int64_t per_tok = (int64_t)h->n_layer * 2 * h->n_head_kv * h->head_dim * (p.kv_f16 ? 2 : 4);
    const int32_t min_blocks = blocks_for(p.n_ctx, p.block_size);
    if (p.n_blocks <= 0) {
        int64_t nb = (int64_t)min_blocks * p.n_parallel;
        if (p.kv_mem_bytes > 0)
            nb = p.kv_mem_bytes / (per_tok * p.block_size);
        if (nb > (1 << 22))
            nb = 1 << 22;
        p.n_blocks = (int32_t)nb;
    }
    if (p.n_blocks < min_blocks)
        return zl_err_set(err, ZL_EINVAL,
                          "engine: %d KV blocks of %d tokens cannot hold one context of %d tokens (need %d blocks, "
                          "%.1f MiB)",
                          p.n_blocks, p.block_size, p.n_ctx, min_blocks,
                          (double)min_blocks * (double)p.block_size * (double)per_tok / 1048576.0);

    zl_engine *e = calloc(1, sizeof *e);
    if (!e)
        return zl_err_set(err, ZL_ENOMEM, "engine: out of memory");
    e->m = m;
    e->p = p;
    e->n_vocab = h->n_vocab;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    int rc;
    e->cpu = zl_cpu_create(p.n_threads);
    if (!e->cpu) {
        rc = zl_err_set(err, ZL_ENOMEM, "engine: cannot create the CPU backend with %d threads", p.n_threads);
        goto fail;
    }
    zl_kv_params kp = {.n_layer = h->n_layer,
                       .kv_dim = h->n_head_kv * h->head_dim,
                       .k_only = h->n_lora_kv > 0,
                       .block_size = p.block_size,
                       .n_blocks = p.n_blocks,
                       .max_seqs = p.n_parallel,
                       .type = p.kv_f16 ? ZL_F16 : ZL_F32,
                       .prefault = p.kv_prefault};
    if ((rc = zl_kv_create(&kp, &e->kv, err)) != ZL_OK)
        goto fail;
    if ((rc = zl_fwd_create(m, p.n_batch, &e->fwd, err)) != ZL_OK)
        goto fail;
    if (p.prefix_cache && (rc = zl_prefix_create(e->kv, &e->pc, err)) != ZL_OK)
        goto fail;
    e->b_tok = malloc((size_t)p.n_batch * sizeof *e->b_tok);
    e->b_pos = malloc((size_t)p.n_batch * sizeof *e->b_pos);
    e->b_seq = malloc((size_t)p.n_batch * sizeof *e->b_seq);
    e->b_want = malloc((size_t)p.n_batch);
    e->b_gemm = malloc((size_t)p.n_batch);
    e->logits = malloc((size_t)p.n_parallel * (size_t)e->n_vocab * sizeof *e->logits);
    e->slots = calloc((size_t)p.n_parallel, sizeof *e->slots);
    e->blk = malloc((size_t)min_blocks * sizeof *e->blk);
    e->row_slot = malloc((size_t)p.n_parallel * sizeof *e->row_slot);
    e->row_tok = malloc((size_t)p.n_parallel * sizeof *e->row_tok);
    e->row_lp = malloc((size_t)p.n_parallel * sizeof *e->row_lp);
    e->n_ws = zl_cpu_n_threads(e->cpu);
    e->ws = calloc((size_t)e->n_ws, sizeof *e->ws);
    e->ids = calloc((size_t)e->n_ws, sizeof *e->ids); /* each made by its thread on first use */
    for (int i = 0; e->ws && i < e->n_ws; i++)
        if ((rc = zl_sample_ws_create(e->n_vocab, &e->ws[i], err)) != ZL_OK)
            goto fail;
    e->chunk = calloc((size_t)p.n_parallel, sizeof *e->chunk);
    e->piece_cap = 3 * (zl_vocab_max_token_len(zl_model_vocab(m)) + 8) + 64;
    e->piece = malloc(e->piece_cap);
    if (e->piece && (rc = zl_token_text_build(zl_model_vocab(m), e->n_vocab, &e->tt, err)) != ZL_OK)
        goto fail;
    if (!e->b_tok || !e->b_pos || !e->b_seq || !e->b_want || !e->b_gemm || !e->logits || !e->slots || !e->blk ||
        !e->row_slot || !e->row_tok || !e->row_lp || !e->ws || !e->ids || !e->chunk || !e->piece) {
        rc = zl_err_set(err, ZL_ENOMEM, "engine: out of memory for the batch (%d tokens, %d sequences)", p.n_batch,
                        p.n_parallel);
        goto fail;
    }
    e->st.kv_blocks_total = p.n_blocks;
    e->st.kv_blocks_free = p.n_blocks;
    if (pthread_create(&e->thr, NULL, scheduler_main, e) != 0) {
        rc = zl_err_set(err, ZL_ENOMEM, "engine: cannot start the scheduler thread");
        goto fail;
    }
    e->thr_started = true;
    *out = e;
    return ZL_OK;
fail:
    zl_engine_destroy(e);
    return rc;
}

void zl_engine_shutdown(zl_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thr_started) {
        pthread_join(e->thr, NULL);
        e->thr_started = false;
    }
}

void zl_engine_destroy(zl_engine *e)
{
    if (!e)
        return;
    zl_engine_shutdown(e);
    zl_prefix_destroy(e->pc);
    zl_fwd_destroy(e->fwd);
    zl_kv_destroy(e->kv);
    zl_cpu_destroy(e->cpu);
    free(e->b_tok);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_want);
    free(e->b_gemm);
    free(e->logits);
    free(e->slots);
    free(e->blk);
    free(e->row_slot);
    free(e->row_tok);
    free(e->row_lp);
    for (int i = 0; e->ws && i < e->n_ws; i++)
        zl_sample_ws_free(e->ws[i]);
    free(e->ws);
    for (int i = 0; e->ids && i < e->n_ws; i++)
        free(e->ids[i]);
    free(e->ids);
    free(e->chunk);
    free(e->piece);
    zl_token_text_free(e->tt);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

void zl_engine_stats_get(zl_engine *e, zl_engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Scheduler */

/* Blocks that could be made free now: free ones plus prefix blocks nobody else uses. */
static int32_t blocks_avail(const zl_engine *e)
{
    return zl_kv_n_free_blocks(e->kv) + (e->pc ? zl_prefix_n_evictable(e->pc) : 0);
}

static void queue_push_front(zl_engine *e, zl_req *r)
{
    pthread_mutex_lock(&e->mu);
    r->next = e->q_head;
    e->q_head = r;
    if (!e->q_tail)
        e->q_tail = r;
    e->q_len++;
    e->st.queue_depth = e->q_len;
    pthread_mutex_unlock(&e->mu);
}

static zl_req *queue_pop(zl_engine *e)
{
    pthread_mutex_lock(&e->mu);
    zl_req *r = e->q_head;
    if (r) {
        e->q_head = r->next;
        if (!e->q_head)
            e->q_tail = NULL;
        r->next = NULL;
        e->q_len--;
        e->st.queue_depth = e->q_len;
    }
    pthread_mutex_unlock(&e->mu);
    return r;
}

/* The youngest running request gives back its KV blocks and goes to the front of the queue. */
static void preempt(zl_engine *e, zl_req *r)
{
    zl_kv_seq_free(e->kv, r->slot);
    e->slots[r->slot] = NULL;
    e->chunk[r->slot] = 0;
    r->slot = -1;
    r->n_done = 0;
    r->n_reg = 0;
    e->n_running--;
    queue_push_front(e, r);
    pthread_mutex_lock(&e->mu);
    e->st.preemptions++;
    pthread_mutex_unlock(&e->mu);
}

static zl_req *youngest_running(const zl_engine *e)
{
    zl_req *y = NULL;
    for (int32_t s = 0; s < e->p.n_parallel; s++)
        if (e->slots[s] && (!y || e->slots[s]->order > y->order))
            y = e->slots[s];
    return y;
}

/* Takes queued requests into free slots while the cache has room for their pending tokens. Cancelled queued
 * requests are finished here. */
static void admit(zl_engine *e)
{
    const int32_t bs = e->p.block_size;
    while (e->n_running < e->p.n_parallel) {
        zl_req *r = queue_pop(e);
        if (!r)
            return;
        if (atomic_load(&r->cancel)) {
            finish(e, r, ZL_FINISH_CANCELLED, NULL);
            continue;
        }
        int32_t slot = 0;
        while (e->slots[slot])
            slot++;
        /* Prefix cache: whole blocks, and at least one token left to run (its logits give the next token). */
        int32_t n_hit = 0;
        if (e->pc) {
            n_hit = zl_prefix_lookup(e->pc, r->toks, r->n_toks - 1, e->blk, (r->n_toks - 1) / bs);
            if (n_hit > 0 && zl_kv_seq_attach(e->kv, slot, e->blk, n_hit, NULL) != ZL_OK)
                n_hit = 0;
        }
        /* Room for the whole pending run plus one block per running request, so admission does not
         * immediately force a preemption. */
        const int32_t need = blocks_for(r->n_toks + 1, bs) - n_hit + e->n_running;
        if (need > blocks_avail(e) && e->n_running > 0) {
            zl_kv_seq_free(e->kv, slot);
            queue_push_front(e, r);
            return;
        }
        e->slots[slot] = r;
        r->slot = slot;
        r->n_done = n_hit * bs;
        r->n_reg = n_hit;
        r->order = ++e->order;
        e->n_running++;
        pthread_mutex_lock(&e->mu);
        if (!r->admitted_once) {
            r->n_cached = n_hit * bs;
            e->st.prompt_tokens += (uint64_t)r->n_prompt;
            e->st.cached_prompt_tokens += (uint64_t)r->n_cached;
            e->st.prefix_lookups++;
            e->st.prefix_hits += n_hit > 0;
            hist_add(e->st.queue_hist, &e->st.queue_sum, &e->st.queue_count, now_s() - r->t_submit);
        }
        e->st.running = e->n_running;
        pthread_mutex_unlock(&e->mu);
        r->admitted_once = true;
    }
}

/* Log-probabilities of row (after bias) for the chosen token and the top n. */
static void fill_logprobs(const float *row, int32_t n_vocab, int32_t tok, int32_t n_top, zl_token_logprob *lp)
{
    float mx = -INFINITY;
    for (int32_t v = 0; v < n_vocab; v++)
        if (row[v] > mx)
            mx = row[v];
    double sum = 0;
    for (int32_t v = 0; v < n_vocab; v++)
        sum += exp((double)row[v] - mx);
    const double lse = mx + log(sum);
    memset(lp, 0, sizeof *lp);
    lp->token = tok;
    lp->logprob = (float)(row[tok] - lse);
    /* Top n by insertion into a small sorted list (n <= 20). */
    for (int32_t v = 0; v < n_vocab; v++) {
        const float x = row[v];
        if (lp->n_top == n_top && (n_top == 0 || x <= lp->top_logprob[n_top - 1]))
            continue;
        int32_t i = lp->n_top < n_top ? lp->n_top++ : n_top - 1;
        while (i > 0 && lp->top_logprob[i - 1] < x) {
            lp->top_logprob[i] = lp->top_logprob[i - 1];
            lp->top_token[i] = lp->top_token[i - 1];
            i--;
        }
        lp->top_logprob[i] = x;
        lp->top_token[i] = v;
    }
    for (int32_t i = 0; i < lp->n_top; i++)
        lp->top_logprob[i] = (float)(lp->top_logprob[i] - lse);
}

/* This step's sampling: every logits row's token (and log-probabilities), the rows shared out between the pool's
 * threads. Each row belongs to another request, so each sampler is used by one thread; each thread has its own
 * scratch. */
typedef struct sample_task {
    zl_engine *e;
    int32_t n_rows;
    atomic_int next;
    atomic_int constrained, masked; /* rows drawn under a grammar; those of them that needed the whole mask */
} sample_task;

/* Refused draws a grammar-constrained draw may test before it masks the row. */
#define GRAMMAR_TRIES 32

typedef struct grammar_ask {
    const zl_token_text *tt;
    zl_grammar_state *gs;
} grammar_ask;

static bool grammar_allows(void *ctx, int32_t tok)
{
    const grammar_ask *a = ctx;
    return zl_constrain_allows(a->tt, a->gs, tok);
}

static void sample_rows(void *arg, int ith, int nth)
{
    (void)nth;
    sample_task *t = arg;
    zl_engine *e = t->e;
    for (;;) {
        const int32_t i = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (i >= t->n_rows)
            break;
        zl_req *r = e->slots[e->row_slot[i]];
        float *row = e->logits + (size_t)i * (size_t)e->n_vocab;
        for (int32_t k = 0; k < r->p.n_bias; k++)
            row[r->bias[k].token] += r->bias[k].bias;
        int32_t tok;
        if (!r->gstate) {
            tok = zl_sampler_sample_ws(r->smp, row, e->ws[ith]);
        } else {
            /* a draw among the tokens the grammar takes, asking it about a few; when that does not settle it,
             * every token it takes is found (the vocabulary walked as a trie) and the draw is made among those */
            grammar_ask ask = {e->tt, r->gstate};
            tok = zl_sampler_sample_where(r->smp, row, e->ws[ith], grammar_allows, &ask, GRAMMAR_TRIES);
            atomic_fetch_add_explicit(&t->constrained, 1, memory_order_relaxed);
            if (tok < 0) {
                atomic_fetch_add_explicit(&t->masked, 1, memory_order_relaxed);
                if (!e->ids[ith])
                    e->ids[ith] = malloc((size_t)e->n_vocab * sizeof **e->ids);
                int32_t *ids = e->ids[ith];
                const int32_t n_ids = ids ? zl_constrain_allowed(e->tt, r->gstate, row, ids) : 0;
                if (n_ids > 0)
                    tok = zl_sampler_sample_among(r->smp, row, ids, n_ids, e->ws[ith]);
                if (ids && r->p.logprobs) /* reported from the masked row */
                    zl_constrain_apply(e->tt, ids, n_ids, row);
            }
            /* (take refuses only when every admitted logit was NaN and the lowest-id rule gave another token) */
            if (tok < 0 || !zl_constrain_take(e->tt, r->gstate, tok)) {
                r->grammar_dead = true;
                tok = 0;
            }
        }
        zl_sampler_accept(r->smp, tok);
        if (r->p.logprobs)
            fill_logprobs(row, e->n_vocab, tok, r->p.top_logprobs, &e->row_lp[i]);
        e->row_tok[i] = tok;
    }
}

/* Takes row i's sampled token into r: hands the text on, ends r when done. */
static void take_token(zl_engine *e, zl_req *r, int32_t i)
{
    const zl_vocab *voc = zl_model_vocab(e->m);
    const int32_t tok = e->row_tok[i];
    const zl_token_logprob *lp = &e->row_lp[i];
    if (r->grammar_dead) { /* the text so far goes out; the request ends as an error */
        emit_text(r, true, NULL, 0);
        finish(e, r, ZL_FINISH_ERROR, "the grammar admits no token after the text so far (no vocabulary token "
                                      "spells a continuation)");
        return;
    }
    const double t = now_s();
    pthread_mutex_lock(&e->mu);
    if (r->n_gen == 0)
        hist_add(e->st.ttft_hist, &e->st.ttft_sum, &e->st.ttft_count, t - r->t_submit);
    else
        hist_add(e->st.itl_hist, &e->st.itl_sum, &e->st.itl_count, t - r->t_last);
    pthread_mutex_unlock(&e->mu);
    r->t_last = t;
    r->n_gen++;
    if (r->n_toks == r->toks_cap) {
        const int32_t cap = r->toks_cap * 2;
        int32_t *nt = realloc(r->toks, (size_t)cap * sizeof *nt);
        if (!nt) {
            finish(e, r, ZL_FINISH_ERROR, "out of memory for the generated tokens");
            return;
        }
        r->toks = nt;
        r->toks_cap = cap;
    }
    r->toks[r->n_toks++] = tok;

    const size_t start = r->text_len; /* where this token's text goes */
    if (!r->p.ignore_eos && zl_vocab_is_eog(voc, tok)) {
        if (r->p.logprobs)
            emit_text(r, false, lp, start);
        finish_with_text(e, r, ZL_FINISH_STOP);
        return;
    }
    const int n = zl_detok_push(&r->dt, tok, e->piece, e->piece_cap);
    if (n > 0 && !text_append(r, e->piece, (size_t)n)) {
        finish(e, r, ZL_FINISH_ERROR, "out of memory for the generated text");
        return;
    }
    if (emit_text(r, false, r->p.logprobs ? lp : NULL, start)) {
        finish(e, r, ZL_FINISH_STOP, NULL);
        return;
    }
    if ((r->p.max_tokens > 0 && r->n_gen >= r->p.max_tokens) || r->n_toks >= e->p.n_ctx)
        finish_with_text(e, r, ZL_FINISH_LENGTH);
}

/* Publishes the KV gauges: used = held by running sequences, cached = held only by the prefix cache. */
static void publish_kv(zl_engine *e)
{
    const int32_t cached = e->pc ? zl_prefix_n_evictable(e->pc) : 0;
    pthread_mutex_lock(&e->mu);
    e->st.kv_blocks_free = zl_kv_n_free_blocks(e->kv);
    e->st.kv_blocks_cached = cached;
    e->st.kv_blocks_used = zl_kv_n_used_blocks(e->kv) - cached;
    e->st.running = e->n_running;
    pthread_mutex_unlock(&e->mu);
}

/* One scheduler step (see the file header). */
static void scheduler_step(zl_engine *e)
{
    const int32_t bs = e->p.block_size, np = e->p.n_parallel;

    for (int32_t s = 0; s < np; s++)
        if (e->slots[s] && atomic_load(&e->slots[s]->cancel))
            finish(e, e->slots[s], ZL_FINISH_CANCELLED, NULL);
    admit(e);
    if (e->n_running == 0)
        return;

    /* Decide each running request's chunk: decodes (1 pending token) first, then prompt chunks, oldest first,
     * within the token budget and the blocks that can be made free. */
    int32_t budget = e->p.n_batch, avail = blocks_avail(e), need_total = 0;
    for (int32_t s = 0; s < np; s++)
        e->chunk[s] = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (;;) {
            /* The oldest request of this pass that has no chunk yet. */
            zl_req *r = NULL;
            for (int32_t s = 0; s < np; s++) {
                zl_req *c = e->slots[s];
                if (!c || e->chunk[s] || (c->n_toks - c->n_done == 1) != (pass == 0) || c->n_toks == c->n_done)
                    continue;
                if (!r || c->order < r->order)
                    r = c;
            }
            if (!r || budget == 0)
                break;
            int32_t chunk = r->n_toks - r->n_done;
            if (chunk > budget)
                chunk = budget;
            const int32_t have = blocks_for(r->n_done, bs);
            int32_t need = blocks_for(r->n_done + chunk, bs) - have;
            while (need > avail - need_total) {
                if (pass == 1) {
                    /* A prompt chunk shrinks to what fits; none fits: it waits for this step. */
                    chunk = (have + avail - need_total) * bs - r->n_done;
                    need = chunk > 0 ? blocks_for(r->n_done + chunk, bs) - have : 0;
                    break;
                }
                /* A decode needs a block: the youngest request gives its blocks back. */
                zl_req *y = youngest_running(e);
                const bool self = y == r;
                preempt(e, y);
                avail = blocks_avail(e);
                if (self)
                    break;
            }
            if (r->slot < 0)
                continue;
            if (chunk <= 0) {
                e->chunk[r->slot] = -1; /* waits */
                continue;
            }
            e->chunk[r->slot] = chunk;
            need_total += need;
            budget -= chunk;
        }
    }
    if (e->pc && zl_kv_n_free_blocks(e->kv) < need_total)
        zl_prefix_evict(e->pc, need_total);

    /* Build the batch in slot order. */
    int32_t n = 0, n_rows = 0;
    for (int32_t s = 0; s < np; s++) {
        zl_req *r = e->slots[s];
        if (!r || e->chunk[s] <= 0)
            continue;
        for (int32_t i = 0; i < e->chunk[s]; i++) {
            const int32_t pos = r->n_done + i;
            e->b_tok[n] = r->toks[pos];
            e->b_pos[n] = pos;
            e->b_seq[n] = s;
            e->b_want[n] = pos == r->n_toks - 1;
            /* the mode of the batch llama.cpp would run this prompt in alone (all of it at once) */
            e->b_gemm[n] = pos >= r->n_prompt ? ZL_MODE_ONE
                           : r->n_prompt >= 8 ? ZL_MODE_MULTI8
                           : r->n_prompt >= 2 ? ZL_MODE_MULTI : ZL_MODE_ONE;
            if (e->b_gemm[n] != ZL_MODE_ONE && pos >= r->n_prompt - r->n_prompt % 4)
                e->b_gemm[n] |= ZL_MODE_TAIL4; /* one of its last n % 4 prompt tokens */
            if (e->b_want[n])
                e->row_slot[n_rows++] = s;
            n++;
        }
    }
    if (n == 0) {
        /* Every running request waits for blocks the others hold: the youngest makes room. */
        if (e->n_running > 1)
            preempt(e, youngest_running(e));
        return;
    }
    zl_err err = {{0}};
    const int rc = zl_model_forward(e->m, e->cpu, e->kv, e->fwd,
                                    &(zl_batch){.n = n, .token = e->b_tok, .pos = e->b_pos, .seq = e->b_seq,
                                                .logits = e->b_want, .gemm = e->b_gemm},
                                    e->logits, &err);
    if (rc == ZL_EFULL) {
        /* Cannot happen when the accounting above is right; recover by preempting rather than failing. */
        zl_req *y = youngest_running(e);
        if (y)
            preempt(e, y);
        return;
    }
    if (rc != ZL_OK) {
        for (int32_t s = 0; s < np; s++)
            if (e->slots[s] && e->chunk[s] > 0)
                finish(e, e->slots[s], ZL_FINISH_ERROR, err.msg);
        return;
    }
    for (int32_t s = 0; s < np; s++) {
        zl_req *r = e->slots[s];
        if (!r || e->chunk[s] <= 0)
            continue;
        r->n_done += e->chunk[s];
        const int32_t n_full = r->n_done / bs;
        if (e->pc && n_full > r->n_reg) {
            int32_t n_tab;
            const int32_t *tab = zl_kv_seq_blocks(e->kv, s, &n_tab);
            zl_prefix_insert(e->pc, r->toks, tab, n_full);
            r->n_reg = n_full;
        }
    }
    sample_task st = {.e = e, .n_rows = n_rows};
    atomic_init(&st.next, 0);
    atomic_init(&st.constrained, 0);
    atomic_init(&st.masked, 0);
    if (n_rows > 1)
        zl_pool_run(zl_cpu_pool(e->cpu), sample_rows, &st);
    else
        sample_rows(&st, 0, 1);
    for (int32_t i = 0; i < n_rows; i++)
        take_token(e, e->slots[e->row_slot[i]], i);
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    e->st.grammar_tokens += (uint64_t)atomic_load(&st.constrained);
    e->st.grammar_masks += (uint64_t)atomic_load(&st.masked);
    pthread_mutex_unlock(&e->mu);
    publish_kv(e);
}


static void *scheduler_main(void *arg)
{
    zl_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && e->q_len == 0 && e->n_running == 0)
            pthread_cond_wait(&e->cv, &e->mu);
        const bool stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        if (stop)
            break;
        scheduler_step(e);
        if (e->n_running == 0)
            publish_kv(e);
    }
    for (int32_t s = 0; s < e->p.n_parallel; s++)
        if (e->slots[s])
            finish(e, e->slots[s], ZL_FINISH_CANCELLED, NULL);
    for (zl_req *r; (r = queue_pop(e));)
        finish(e, r, ZL_FINISH_CANCELLED, NULL);
    publish_kv(e);
    return NULL;
}
