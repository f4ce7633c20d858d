/*
 * serve.c - `zili serve`: an OpenAI-compatible HTTP server over the request engine.
 *
 * HTTP is libmicrohttpd in thread-per-connection mode: each connection's thread parses and validates its
 * request, submits it to the engine (src/engine/engine.h) and then blocks on the request's queue, writing text
 * as it arrives (SSE for stream: true, one JSON body otherwise). HTTP threads never touch model state beyond the
 * immutable vocabulary (tokenize / detokenize). While it waits, a connection thread polls its socket: a client
 * that hangs up has its request cancelled, so its KV blocks are freed at the next scheduler step.
 *
 * Routes: GET / (chat page), GET /health, GET /metrics, GET /v1/models, GET /v1/models/{id},
 * POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings (embeddings.c; an encoder such as bert
 * serves only that), POST /tokenize, POST /detokenize, and Ollama's /api/...
 * (ollama.c). Errors use OpenAI's {"error": {...}} shape (Ollama's {"error": "..."} on /api/...). With an API key,
 * everything but /, /health and /metrics needs "Authorization: Bearer KEY". With --cors ORIGIN every reply allows that origin and OPTIONS preflights are answered (cors.c).
 *
 * Shutdown: SIGTERM / SIGINT are blocked in every thread and taken by sigwait in the main thread, which stops
 * accepting connections, lets running requests finish for a grace period, then cancels the rest, stops the
 * daemon (joining connection threads) and frees the engine and model.
 *
 * Threads: srv fields are set before the daemon starts and read-only afterwards, except the atomic counters.
 */
#include "server/serve.h"

#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "model/model.h"
#include "server/cors.h"
#include "server/door.h"
#include "server/oai.h"
#include "server/embeddings.h"
#include "server/ollama.h"
#include "server/page.h"
#include "server/peer.h"
#include "server/reasoning.h"
#include "server/tools.h"
#include "store/store.h"
#include "tokenizer/chat.h"
#include "tokenizer/vocab.h"

/* Status codes counted for /metrics. */
static const int k_codes[] = {200, 400, 401, 404, 405, 413, 500, 503};
enum { N_CODES = sizeof k_codes / sizeof k_codes[0] };

typedef struct srv {
    zl_model *model;
    zl_engine *engine;
    zl_chat_tmpl tmpl;
    char model_id[256];
    const char *api_key; /* NULL: open */
    const char *cors;    /* --cors ORIGIN ("*": any); NULL: no cross-origin headers */
    size_t max_body;
    double body_timeout; /* seconds a request body may take to arrive in full (--timeout) */
    struct MHD_Daemon *daemon;
    zl_door *door;
    bool reasoning; /* --reasoning-format deepseek (default): <think> text of reasoning models apart */
    oai_limits lim;
    time_t started;
    atomic_uint_fast64_t by_code[N_CODES];
    atomic_uint_fast64_t seed_counter;
    atomic_int active;     /* generation requests in flight */
    /* generation requests end to end, from their complete request head to the end of the reply (seconds; the sum
     * in microseconds), buckets as the engine's (zl_engine_hist_bounds) */
    atomic_uint_fast64_t e2e_hist[ZL_HIST_BUCKETS], e2e_sum_us, e2e_count;
    atomic_bool draining;  /* shutting down: new generation requests get 503 */
    ol_host ol;            /* what Ollama's routes (/api/..., ollama.c) borrow */
    zl_emb_host emb;       /* POST /v1/embeddings (embeddings.c) */
} srv;

/* Per-connection state: the request body as it arrives. */
typedef struct conn_ctx {
    char *body;
    size_t len, cap;
    bool too_large;
    double start; /* when the headers were complete (now_s) */
} conn_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void count_code(srv *s, int code)
{
    for (int i = 0; i < N_CODES; i++)
        if (k_codes[i] == code)
            atomic_fetch_add(&s->by_code[i], 1);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Responses */

static enum MHD_Result send_buf(srv *s, struct MHD_Connection *c, int code, const char *type, char *body,
                                bool owned, const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    zl_cors_headers(r, s->cors);
    /* One request per connection: the door (door.h) checks every request head before the library sees it. */
    MHD_add_response_header(r, "Connection", "close");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    count_code(s, code);
    return ret;
}

static enum MHD_Result send_json(srv *s, struct MHD_Connection *c, int code, json_t *j)
{
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body)
        return MHD_NO;
    return send_buf(s, c, code, "application/json", body, true, NULL);
}

static enum MHD_Result send_error(srv *s, struct MHD_Connection *c, int code, const char *msg, const char *param)
{
    const char *type = code == 401   ? "authentication_error"
                       : code == 404 ? "not_found_error"
                       : code == 503 ? "server_busy"
                       : code >= 500 ? "server_error"
                                     : "invalid_request_error";
    const char *ecode = code == 401 ? "invalid_api_key" : code == 413 ? "request_too_large" : NULL;
    char *body = oai_error_json(msg, type, param, ecode);
    if (!body)
        return MHD_NO;
    return send_buf(s, c, code, "application/json", body, true, code == 503 ? "1" : NULL);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Generation */

typedef struct gen {
    srv *s;
    struct MHD_Connection *conn;
    oai_request q;
    zl_req *req;
    char id[40];
    time_t created;
    /* Streaming state. */
    char *buf;
    size_t len, pos, cap;
    int phase; /* 0 before the first chunk, 1 streaming, 2 final events queued, 3 done */
    double last_out; /* when stream_fill last produced bytes (now_s) */
    bool http10, eof_seen; /* the request's version; the client's end of file seen (peer_poll) */
    bool think_on;         /* a reasoning model's <think> text goes to reasoning_content (think splits it) */
    oai_think think;
    oai_tool_parser tools; /* with q.tools_on: tool calls out of the content */
    uint64_t id_rng;       /* the call ids' state */
    size_t n_calls;        /* tool calls given so far */
    json_t *lp_acc;
    size_t text_offset;
    double t_start; /* the request head complete (conn_ctx.start), for the end-to-end latency */
} gen;

static void gen_free(gen *g)
{
    if (g->req) { /* a submitted request: its reply is over (written, or its client gone) */
        const double t = now_s() - g->t_start;
        atomic_fetch_add(&g->s->e2e_hist[zl_engine_hist_bucket(t)], 1);
        atomic_fetch_add(&g->s->e2e_sum_us, (uint_fast64_t)(t * 1e6));
        atomic_fetch_add(&g->s->e2e_count, 1);
        zl_req_release(g->req);
    }
    oai_request_free(&g->q);
    oai_tools_free(&g->tools);
    if (g->lp_acc)
        json_decref(g->lp_acc);
    free(g->buf);
    atomic_fetch_sub(&g->s->active, 1);
    free(g);
}

static const char *finish_name(const gen *g, zl_finish f)
{
    return f == ZL_FINISH_LENGTH ? "length" : g->n_calls ? "tool_calls" : "stop";
}

/* The calls of o as OpenAI's tool_calls: whole (id, type, function name and arguments) or, streamed, each as two
 * deltas' worth (first: index, id, type, name and "" arguments; then: index and the arguments). */
static json_t *tool_call_json(gen *g, const oai_call *c, size_t index, int part)
{
    json_t *t = json_object();
    json_t *f = json_object();
    if (part >= 0)
        json_object_set_new(t, "index", json_integer((json_int_t)index));
    if (part <= 0) {
        char id[32];
        oai_tools_call_id(g->q.tool_fmt, &g->id_rng, id);
        json_object_set_new(t, "id", json_string(id));
        json_object_set_new(t, "type", json_string("function"));
        json_object_set_new(f, "name", json_string(c->name));
    }
    json_object_set_new(f, "arguments", json_string(part == 0 ? "" : c->args));
    json_object_set_new(t, "function", f);
    return t;
}

static json_t *usage_json(const zl_req_chunk *c)
{
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(c->n_prompt));
    json_object_set_new(u, "completion_tokens", json_integer(c->n_gen));
    json_object_set_new(u, "total_tokens", json_integer(c->n_prompt + c->n_gen));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(c->n_cached));
    json_object_set_new(u, "prompt_tokens_details", d);
    return u;
}

static json_t *envelope(const gen *g, bool chunk)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(g->id));
    json_object_set_new(o, "object", json_string(g->q.kind == OAI_CHAT
                                                     ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                     : "text_completion"));
    json_object_set_new(o, "created", json_integer((json_int_t)g->created));
    json_object_set_new(o, "model", json_string(g->s->model_id));
    json_object_set_new(o, "system_fingerprint", json_string("zili"));
    return o;
}

/* One choice object. text may be NULL (chat role chunk / final chunk with an empty delta); reasoning (chat only,
 * may be NULL) becomes reasoning_content when it is not empty. */
static json_t *choice(const gen *g, bool stream, const char *text, size_t len, const char *reasoning, size_t rlen,
                      const char *finish, json_t *lp, bool role, json_t *calls)
{
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(0));
    if (g->q.kind == OAI_CHAT) {
        json_t *m = json_object();
        if (role || !stream)
            json_object_set_new(m, "role", json_string("assistant"));
        if (reasoning && rlen)
            json_object_set_new(m, "reasoning_content", oai_string(reasoning, rlen));
        if (text)
            json_object_set_new(m, "content", oai_string(text, len));
        else if (!stream)
            json_object_set_new(m, "content", json_null()); /* a reply of tool calls alone */
        if (calls)
            json_object_set_new(m, "tool_calls", calls);
        json_object_set_new(ch, stream ? "delta" : "message", m);
    } else {
        json_object_set_new(ch, "text", text ? oai_string(text, len) : json_string(""));
    }
    json_object_set_new(ch, "logprobs", lp ? lp : json_null());
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    return ch;
}

static void buf_put(gen *g, const char *s, size_t n)
{
    if (g->len + n > g->cap) {
        size_t cap = g->cap ? g->cap : 1024;
        while (cap < g->len + n)
            cap *= 2;
        char *nb = realloc(g->buf, cap);
        if (!nb)
            return;
        g->buf = nb;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, s, n);
    g->len += n;
}

static void sse_event(gen *g, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return;
    buf_put(g, "data: ", 6);
    buf_put(g, s, strlen(s));
    buf_put(g, "\n\n", 2);
    free(s);
}

static json_t *chunk_logprobs(gen *g, const zl_req_chunk *c)
{
    if (!g->q.logprobs || c->n_lp == 0)
        return NULL;
    json_t *acc = NULL;
    oai_logprobs_append(zl_engine_model(g->s->engine), g->q.kind, c->lp, c->n_lp, &acc, &g->text_offset);
    return acc;
}

/* Turns the next engine chunk into SSE events in g->buf. Returns false when the client went away. */
static bool stream_fill(gen *g)
{
    if (g->phase == 0) {
        if (g->q.kind == OAI_CHAT) {
            json_t *o = envelope(g, true);
            json_t *arr = json_array();
            json_array_append_new(arr, choice(g, true, "", 0, NULL, 0, NULL, NULL, true, NULL));
            json_object_set_new(o, "choices", arr);
            if (g->q.include_usage)
                json_object_set_new(o, "usage", json_null());
            sse_event(g, o);
        }
        g->phase = 1;
        return true;
    }
    if (g->phase == 2) {
        buf_put(g, "data: [DONE]\n\n", 14);
        g->phase = 3;
        return true;
    }
    zl_req_chunk c;
    for (;;) {
        if (zl_req_next(g->req, 50, &c) != ZL_OK)
            return false;
        if (c.len || c.n_lp || c.finish != ZL_FINISH_NONE)
            break;
        zl_req_chunk_free(&c);
        const peer_state ps = peer_poll(g->conn, &g->eof_seen);
        if (ps == PEER_GONE)
            return false;
        if (ps == PEER_EOF) { /* the reply is under way: a comment, which a closed peer answers with a reset */
            buf_put(g, ": are you there\n\n", 18);
            return true;
        }
        /* libmicrohttpd drops a connection that has been silent for its timeout once this callback returns, so
         * a stream that waits long (queued, long prefill) sends an SSE comment, which clients ignore. */
        if (now_s() - g->last_out > g->s->body_timeout / 4) {
            buf_put(g, ": waiting\n\n", 11);
            g->last_out = now_s();
            return true;
        }
    }
    g->last_out = now_s();
    if (c.finish == ZL_FINISH_CANCELLED || c.finish == ZL_FINISH_ERROR) {
        char *e = oai_error_json(c.finish == ZL_FINISH_ERROR ? c.error : "the request was cancelled (server "
                                 "shutting down)", "server_error", NULL, NULL);
        if (e) {
            buf_put(g, "data: ", 6);
            buf_put(g, e, strlen(e));
            buf_put(g, "\n\n", 2);
            free(e);
        }
        zl_req_chunk_free(&c);
        g->phase = 2;
        return true;
    }
    json_t *lp = chunk_logprobs(g, &c);
    const char *text = c.text, *reasoning = NULL;
    size_t tlen = c.len, rlen = 0;
    char *split = NULL;
    if (g->think_on && (c.len || c.finish != ZL_FINISH_NONE) && (split = malloc(2 * (c.len + 16)))) {
        oai_think_out to = {split, split + c.len + 16, 0, 0};
        oai_think_feed(&g->think, c.text, c.len, c.finish != ZL_FINISH_NONE, &to);
        text = to.content;
        tlen = to.n_content;
        reasoning = to.reasoning;
        rlen = to.n_reasoning;
        if (!tlen && rlen)
            text = NULL; /* a reasoning delta alone */
    }
    oai_tool_out calls = {0};
    if (g->q.tools_on && (tlen || c.finish != ZL_FINISH_NONE)) {
        oai_tools_feed(&g->tools, text ? text : "", text ? tlen : 0, c.finish != ZL_FINISH_NONE, &calls);
        text = calls.n_content ? calls.content : NULL;
        tlen = calls.n_content;
    }
    if (tlen || rlen || lp) {
        json_t *o = envelope(g, true);
        json_t *arr = json_array();
        json_array_append_new(arr, choice(g, true, text, tlen, reasoning, rlen, NULL, lp, false, NULL));
        json_object_set_new(o, "choices", arr);
        if (g->q.include_usage)
            json_object_set_new(o, "usage", json_null());
        sse_event(g, o);
    }
    for (size_t k = 0; k < calls.n_calls; k++, g->n_calls++)
        for (int part = 0; part < 2; part++) {
            json_t *o = envelope(g, true);
            json_t *arr = json_array(), *tc = json_array();
            json_array_append_new(tc, tool_call_json(g, &calls.calls[k], g->n_calls, part));
            json_array_append_new(arr, choice(g, true, NULL, 0, NULL, 0, NULL, NULL, false, tc));
            json_object_set_new(o, "choices", arr);
            if (g->q.include_usage)
                json_object_set_new(o, "usage", json_null());
            sse_event(g, o);
        }
    oai_tool_out_free(&calls);
    free(split);
    if (c.finish != ZL_FINISH_NONE) {
        json_t *o = envelope(g, true);
        json_t *arr = json_array();
        json_array_append_new(arr, choice(g, true, g->q.kind == OAI_CHAT ? NULL : "", 0, NULL, 0,
                                          finish_name(g, c.finish), NULL, false, NULL));
        json_object_set_new(o, "choices", arr);
        if (g->q.include_usage)
            json_object_set_new(o, "usage", json_null());
        sse_event(g, o);
        if (g->q.include_usage) {
            o = envelope(g, true);
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_json(&c));
            sse_event(g, o);
        }
        g->phase = 2;
    }
    zl_req_chunk_free(&c);
    return true;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    gen *g = cls;
    while (g->pos == g->len) {
        g->pos = g->len = 0;
        if (g->phase == 3)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_fill(g)) {
            zl_req_cancel(g->req);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = g->len - g->pos;
    if (n > max)
        n = max;
    memcpy(out, g->buf + g->pos, n);
    g->pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) { gen_free(cls); }

/* Waits for the whole reply and answers with one JSON body. */
static enum MHD_Result reply_whole(gen *g)
{
    srv *s = g->s;
    char *text = NULL;
    size_t len = 0;
    zl_req_chunk c;
    for (;;) {
        if (zl_req_next(g->req, 50, &c) != ZL_OK)
            break;
        if (c.len) {
            char *nt = realloc(text, len + c.len + 1);
            if (nt) {
                text = nt;
                memcpy(text + len, c.text, c.len);
                len += c.len;
                text[len] = 0;
            }
        }
        if (g->q.logprobs && c.n_lp)
            oai_logprobs_append(zl_engine_model(s->engine), g->q.kind, c.lp, c.n_lp, &g->lp_acc, &g->text_offset);
        if (c.finish != ZL_FINISH_NONE)
            break;
        zl_req_chunk_free(&c);
        const peer_state ps = peer_poll(g->conn, &g->eof_seen);
        if (ps == PEER_GONE || (ps == PEER_EOF && !probe_whole(g->conn, g->http10))) {
            free(text);
            gen_free(g);
            return MHD_NO;
        }
    }
    enum MHD_Result ret;
    if (c.finish == ZL_FINISH_CANCELLED || c.finish == ZL_FINISH_ERROR || c.finish == ZL_FINISH_NONE) {
        ret = c.finish == ZL_FINISH_ERROR ? send_error(s, g->conn, 500, c.error, NULL)
                                          : send_error(s, g->conn, 503, "the server is shutting down", NULL);
    } else {
        json_t *o = envelope(g, false);
        json_t *arr = json_array();
        json_t *lp = g->lp_acc;
        g->lp_acc = NULL;
        char *split = g->think_on ? malloc(2 * (len + 16)) : NULL;
        oai_think_out to = {split, split ? split + len + 16 : NULL, 0, 0};
        if (split) {
            oai_think_feed(&g->think, text ? text : "", len, true, &to);
        } else {
            to.content = text ? text : "";
            to.n_content = len;
        }
        oai_tool_out calls = {0};
        json_t *tc = NULL;
        const char *content = to.content;
        size_t n_content = to.n_content;
        if (g->q.tools_on) {
            oai_tools_feed(&g->tools, to.content, to.n_content, true, &calls);
            content = calls.n_content || !calls.n_calls ? (calls.content ? calls.content : "") : NULL;
            n_content = calls.n_content;
            if (calls.n_calls)
                tc = json_array();
            for (size_t k = 0; k < calls.n_calls; k++, g->n_calls++)
                json_array_append_new(tc, tool_call_json(g, &calls.calls[k], g->n_calls, -1));
        }
        json_array_append_new(arr, choice(g, false, content, n_content, to.reasoning, to.n_reasoning,
                                          finish_name(g, c.finish), lp, true, tc));
        oai_tool_out_free(&calls);
        free(split);
        json_object_set_new(o, "choices", arr);
        json_object_set_new(o, "usage", usage_json(&c));
        ret = send_json(s, g->conn, 200, o);
    }
    zl_req_chunk_free(&c);
    free(text);
    gen_free(g);
    return ret;
}

static enum MHD_Result handle_generate(srv *s, struct MHD_Connection *conn, oai_kind kind, json_t *root,
                                       bool http10, double t_start)
{
    if (atomic_load(&s->draining))
        return send_error(s, conn, 503, "the server is shutting down", NULL);
    gen *g = calloc(1, sizeof *g);
    if (!g)
        return send_error(s, conn, 500, "out of memory", NULL);
    atomic_fetch_add(&s->active, 1);
    g->s = s;
    g->conn = conn;
    g->http10 = http10;
    g->t_start = t_start;
    /* the reasoning families, unless the server or the request says "none" */
    const bool thinks = s->tmpl.kind == ZL_TMPL_QWEN3 ||
                        (s->tmpl.kind == ZL_TMPL_DEEPSEEK_R1 && !(s->tmpl.flags & ZL_CHAT_DEEPSEEK_WHOLE_REPLY));
    g->created = time(NULL);
    oai_error oe;
    const uint64_t seed = (uint64_t)time(NULL) * 1000003u + atomic_fetch_add(&s->seed_counter, 1);
    if (oai_parse(s->model, &s->tmpl, kind, root, &s->lim, seed, &g->q, &oe) != ZL_OK) {
        gen_free(g);
        return send_error(s, conn, 400, oe.msg, oe.param);
    }
    g->think_on = kind == OAI_CHAT && thinks && (s->reasoning || g->q.reasoning_on) && !g->q.reasoning_off;
    oai_think_init(&g->think, s->tmpl.kind == ZL_TMPL_DEEPSEEK_R1 && (s->tmpl.flags & ZL_CHAT_THINK_PROMPT));
    oai_tools_init(&g->tools, g->q.tool_fmt, g->q.tools_forced);
    g->id_rng = seed ^ 0x7f4a7c159e3779b9ull;
    zl_err err = {{0}};
    const int rc = zl_engine_submit(s->engine, g->q.prompt, g->q.n_prompt, &g->q.rp, &g->req, &err);
    if (rc != ZL_OK) {
        gen_free(g);
        if (rc == ZL_EFULL || rc == ZL_EIO)
            return send_error(s, conn, 503, err.msg, NULL);
        return send_error(s, conn, rc == ZL_ENOMEM ? 500 : 400, err.msg, NULL);
    }
    static atomic_uint_fast64_t id_counter;
    snprintf(g->id, sizeof g->id, "%s-%08lx%08llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl", (unsigned long)g->created,
             (unsigned long long)atomic_fetch_add(&id_counter, 1));
    if (!g->q.stream)
        return reply_whole(g);
    g->last_out = now_s();
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, g,
                                                               stream_free);
    if (!r) {
        gen_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    zl_cors_headers(r, s->cors);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    count_code(s, 200);
    return ret;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Other routes */

/* The served model as OpenAI's model object. */
static json_t *model_json(const srv *s)
{
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(s->model_id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer((json_int_t)s->started));
    json_object_set_new(m, "owned_by", json_string("zili"));
    /* The context one request may fill (prompt + reply), as the chat page shows its use. */
    json_object_set_new(m, "context_length", json_integer(s->lim.n_ctx));
    return m;
}

/* GET /v1/models/{id}: the model object when id is the served model's, else 404 (as OpenAI answers). */
static enum MHD_Result handle_model(srv *s, struct MHD_Connection *c, const char *id)
{
    if (strcmp(id, s->model_id)) {
        char msg[640];
        snprintf(msg, sizeof msg, "The model '%.300s' does not exist (this server serves '%s')", id, s->model_id);
        return send_error(s, c, 404, msg, "model");
    }
    return send_json(s, c, 200, model_json(s));
}

static enum MHD_Result handle_models(srv *s, struct MHD_Connection *c)
{
    json_t *arr = json_array();
    json_array_append_new(arr, model_json(s));
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", arr);
    return send_json(s, c, 200, o);
}

static enum MHD_Result handle_tokenize(srv *s, struct MHD_Connection *c, json_t *root)
{
    json_t *content = json_object_get(root, "content");
    if (!json_is_string(content))
        return send_error(s, c, 400, "'content' must be a string", "content");
    json_t *as = json_object_get(root, "add_special");
    if (as && !json_is_boolean(as))
        return send_error(s, c, 400, "'add_special' must be true or false", "add_special");
    json_t *ps = json_object_get(root, "parse_special");
    if (ps && !json_is_boolean(ps))
        return send_error(s, c, 400, "'parse_special' must be true or false", "parse_special");
    int32_t *ids;
    size_t n;
    zl_err err = {{0}};
    if (zl_tokenize(zl_model_vocab(s->model), json_string_value(content), json_string_length(content),
                    as && json_is_true(as), !ps || json_is_true(ps), &ids, &n, &err) != ZL_OK)
        return send_error(s, c, 400, err.msg, "content");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    json_t *o = json_object();
    json_object_set_new(o, "tokens", arr);
    return send_json(s, c, 200, o);
}

static enum MHD_Result handle_embeddings(srv *s, struct MHD_Connection *c, json_t *root)
{
    int status = 500;
    const char *param = NULL;
    char why[512] = "";
    json_t *o = zl_emb_request(&s->emb, root, &status, &param, why, sizeof why);
    return o ? send_json(s, c, 200, o) : send_error(s, c, status, why, param);
}

static enum MHD_Result handle_detokenize(srv *s, struct MHD_Connection *c, json_t *root)
{
    json_t *toks = json_object_get(root, "tokens");
    if (!json_is_array(toks))
        return send_error(s, c, 400, "'tokens' must be an array of token ids", "tokens");
    const size_t n = json_array_size(toks);
    const int32_t nv = zl_model_hparams(s->model)->n_vocab;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return send_error(s, c, 500, "out of memory", NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(toks, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= nv) {
            free(ids);
            char msg[128];
            snprintf(msg, sizeof msg, "tokens[%zu] is not a token id in [0, %d)", i, nv);
            return send_error(s, c, 400, msg, "tokens");
        }
        ids[i] = (int32_t)json_integer_value(t);
    }
    char *text;
    zl_err err = {{0}};
    size_t text_len = 0;
    const int rc = zl_detokenize_n(zl_model_vocab(s->model), ids, n, false, &text, &text_len, &err);
    free(ids);
    if (rc != ZL_OK)
        return send_error(s, c, 400, err.msg, "tokens");
    json_t *o = json_object();
    json_object_set_new(o, "content", oai_string(text, text_len));
    free(text);
    return send_json(s, c, 200, o);
}

/* Appends printf output to a growing string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        const int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return;
        b->p = np;
        b->cap = cap;
    }
}

/* A histogram labelled model="ID" (the id has no characters a label value would escape: see model_label). */
static void sb_hist(sbuf *b, const char *name, const char *help, const char *model, const uint64_t *h, double sum,
                    uint64_t count)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < ZL_HIST_BUCKETS; i++) {
        cum += h[i];
        if (i == ZL_HIST_BUCKETS - 1)
            sb_printf(b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model, (unsigned long long)cum);
        else
            sb_printf(b, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, zl_engine_hist_bounds[i],
                      (unsigned long long)cum);
    }
    sb_printf(b, "%s_sum{model=\"%s\"} %.6f\n%s_count{model=\"%s\"} %llu\n", name, model, sum, name, model,
              (unsigned long long)count);
}

/* The model id as a Prometheus label value: backslash, double quote and newline would need escapes, so they (and
 * other control bytes) become '_'. */
static void model_label(const char *id, char *out, size_t cap)
{
    size_t n = 0;
    for (; id[n] && n + 1 < cap; n++)
        out[n] = id[n] == '\\' || id[n] == '"' || (unsigned char)id[n] < 0x20 ? '_' : id[n];
    out[n] = 0;
}

static enum MHD_Result handle_metrics(srv *s, struct MHD_Connection *c)
{
    zl_engine_stats st;
    zl_engine_stats_get(s->engine, &st);
    sbuf b = {0};
    sb_printf(&b, "# HELP zili_http_requests_total HTTP responses by status code.\n"
                  "# TYPE zili_http_requests_total counter\n");
    for (int i = 0; i < N_CODES; i++)
        sb_printf(&b, "zili_http_requests_total{code=\"%d\"} %llu\n", k_codes[i],
                  (unsigned long long)atomic_load(&s->by_code[i]));
    static const char *fin[] = {"none", "stop", "length", "cancelled", "error"};
    sb_printf(&b, "# HELP zili_requests_finished_total Generation requests by how they ended.\n"
                  "# TYPE zili_requests_finished_total counter\n");
    for (int i = 1; i < 5; i++)
        sb_printf(&b, "zili_requests_finished_total{reason=\"%s\"} %llu\n", fin[i],
                  (unsigned long long)st.requests_finished[i]);
#define COUNTER(name, help, v)                                                                                  \
    sb_printf(&b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n", (unsigned long long)(v))
#define GAUGE(name, help, v)                                                                                    \
    sb_printf(&b, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %lld\n", (long long)(v))
    COUNTER("zili_prompt_tokens_total", "Prompt tokens of admitted requests.", st.prompt_tokens);
    COUNTER("zili_generated_tokens_total", "Generated tokens.", st.generated_tokens);
    COUNTER("zili_prefix_cache_hits_total", "Requests whose prompt started with cached KV blocks.", st.prefix_hits);
    COUNTER("zili_prefix_cache_lookups_total", "Prefix cache lookups.", st.prefix_lookups);
    COUNTER("zili_prefix_cache_hit_tokens_total", "Prompt tokens taken from the prefix cache.",
            st.cached_prompt_tokens);
    COUNTER("zili_preemptions_total", "Requests preempted for KV space (recomputed later).", st.preemptions);
    COUNTER("zili_grammar_tokens_total", "Tokens drawn under a grammar (json_schema, tools, grammar).",
            st.grammar_tokens);
    COUNTER("zili_grammar_masks_total", "Grammar-constrained draws that checked the whole vocabulary.",
            st.grammar_masks);
    COUNTER("zili_engine_steps_total", "Forward passes of the scheduler.", st.steps);
    GAUGE("zili_queue_depth", "Requests waiting for a sequence slot.", st.queue_depth);
    GAUGE("zili_running_sequences", "Requests running.", st.running);
    GAUGE("zili_kv_blocks_used", "KV blocks held by running sequences.", st.kv_blocks_used);
    GAUGE("zili_kv_blocks_cached", "KV blocks held only by the prefix cache (evictable).", st.kv_blocks_cached);
    GAUGE("zili_kv_blocks_free", "Free KV blocks.", st.kv_blocks_free);
    GAUGE("zili_kv_blocks_total", "KV blocks in the pool.", st.kv_blocks_total);
    const zl_door_stats ds = zl_door_get_stats(s->door);
    GAUGE("zili_connections_waiting", "Connections whose request head has not arrived yet.", ds.waiting);
    GAUGE("zili_connections_active", "Connections with a request in progress.", ds.active);
    COUNTER("zili_connections_refused_per_ip_total", "Connections refused (429): --max-conns-per-ip.", ds.refused_ip);
    COUNTER("zili_connections_refused_full_total", "Connections refused (503): --max-conns, none to shed.",
            ds.refused_full);
    COUNTER("zili_connections_shed_total", "Waiting connections closed to make room at --max-conns.", ds.shed);
    COUNTER("zili_header_timeouts_total", "Request heads that did not arrive within --header-timeout (408).",
            ds.head_timeouts);
    COUNTER("zili_bad_request_heads_total", "Request heads refused for their framing (400, 413, 431, 501, 505).",
            ds.bad_heads);
#undef COUNTER
#undef GAUGE
    char ml[sizeof s->model_id];
    model_label(s->model_id, ml, sizeof ml);
    sb_printf(&b, "# HELP zili_model_info The model served (its id as label).\n# TYPE zili_model_info gauge\n"
                  "zili_model_info{model=\"%s\"} 1\n", ml);
    sb_printf(&b, "# HELP zili_kv_usage_ratio KV blocks held by running sequences over the pool's blocks.\n"
                  "# TYPE zili_kv_usage_ratio gauge\nzili_kv_usage_ratio{model=\"%s\"} %.6f\n", ml,
              st.kv_blocks_total > 0 ? (double)st.kv_blocks_used / st.kv_blocks_total : 0.0);
    sb_hist(&b, "zili_time_to_first_token_seconds", "Time from submit to the first generated token.", ml,
            st.ttft_hist, st.ttft_sum, st.ttft_count);
    sb_hist(&b, "zili_inter_token_latency_seconds", "Time between consecutive tokens of a request.", ml,
            st.itl_hist, st.itl_sum, st.itl_count);
    sb_hist(&b, "zili_queue_time_seconds", "Time from submit to the request's first sequence slot.", ml,
            st.queue_hist, st.queue_sum, st.queue_count);
    uint64_t e2e[ZL_HIST_BUCKETS];
    for (int i = 0; i < ZL_HIST_BUCKETS; i++)
        e2e[i] = atomic_load(&s->e2e_hist[i]);
    sb_hist(&b, "zili_request_duration_seconds", "Generation requests end to end: request head to the reply's end.",
            ml, e2e, (double)atomic_load(&s->e2e_sum_us) * 1e-6, atomic_load(&s->e2e_count));
    if (!b.p)
        return send_error(s, c, 500, "out of memory", NULL);
    return send_buf(s, c, 200, "text/plain; version=0.0.4", b.p, true, NULL);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Dispatch */

/* The bookkeeping Ollama's routes share (ol_host). */
static void ol_count(void *ctx, int code) { count_code(ctx, code); }
static void ol_begin(void *ctx) { atomic_fetch_add(&((srv *)ctx)->active, 1); }
static void ol_end(void *ctx, double t_start, bool submitted)
{
    srv *s = ctx;
    if (submitted) {
        const double t = now_s() - t_start;
        atomic_fetch_add(&s->e2e_hist[zl_engine_hist_bucket(t)], 1);
        atomic_fetch_add(&s->e2e_sum_us, (uint_fast64_t)(t * 1e6));
        atomic_fetch_add(&s->e2e_count, 1);
    }
    atomic_fetch_sub(&s->active, 1);
}
static bool ol_draining(void *ctx) { return atomic_load(&((srv *)ctx)->draining); }

static bool authorized(srv *s, struct MHD_Connection *c)
{
    if (!s->api_key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7))
        return false;
    /* Compare in time independent of where the strings differ. */
    const char *k = h + 7;
    const size_t a = strlen(k), b = strlen(s->api_key);
    unsigned diff = a != b;
    for (size_t i = 0; i < a && i < b; i++)
        diff |= (unsigned char)(k[i] ^ s->api_key[i]);
    return diff == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    srv *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc)
            return MHD_NO;
        cc->start = now_s();
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) {
        /* libmicrohttpd's timeout is per read, so a client sending a byte a second would hold its connection (and
         * thread) forever: the whole body must arrive within the timeout. */
        if (now_s() - cc->start > s->body_timeout)
            return MHD_NO;
        if (!cc->too_large) {
            if (cc->len + *upload_size > s->max_body) {
                cc->too_large = true;
            } else {
                if (cc->len + *upload_size + 1 > cc->cap) {
                    size_t cap = cc->cap ? cc->cap : 4096;
                    while (cap < cc->len + *upload_size + 1)
                        cap *= 2;
                    char *nb = realloc(cc->body, cap);
                    if (!nb)
                        return MHD_NO;
                    cc->body = nb;
                    cc->cap = cap;
                }
                memcpy(cc->body + cc->len, upload, *upload_size);
                cc->len += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }

    const bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (s->cors && !strcmp(method, "OPTIONS"))
        return zl_cors_preflight(conn, s->cors);
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get)
            return send_error(s, conn, 405, "use GET", NULL);
        return send_buf(s, conn, 200, "text/html; charset=utf-8", (char *)zl_chat_page, false, NULL);
    }
    if (!strcmp(url, "/health")) {
        json_t *o = json_object();
        json_object_set_new(o, "status", json_string(atomic_load(&s->draining) ? "shutting_down" : "ok"));
        return send_json(s, conn, atomic_load(&s->draining) ? 503 : 200, o);
    }
    if (!strcmp(url, "/metrics"))
        return handle_metrics(s, conn);
    if (ol_is_route(url))
        return ol_handle(&s->ol, conn, url, method, cc->body, cc->len, cc->too_large, authorized(s, conn),
                         version && !strcmp(version, "HTTP/1.0"), cc->start);

    oai_kind kind = 0;
    int route = 0; /* 1 models, 2 generate, 3 tokenize, 4 detokenize, 5 one model (model_id), 6 embeddings */
    const char *model_id = !strncmp(url, "/v1/models/", 11) ? url + 11 : !strncmp(url, "/models/", 8) ? url + 8 : NULL;
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models"))
        route = 1;
    else if (model_id)
        route = 5;
    else if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions"))
        route = 2, kind = OAI_CHAT;
    else if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions"))
        route = 2, kind = OAI_COMPLETION;
    else if (!strcmp(url, "/v1/embeddings") || !strcmp(url, "/embeddings"))
        route = 6;
    else if (!strcmp(url, "/tokenize"))
        route = 3;
    else if (!strcmp(url, "/detokenize"))
        route = 4;
    if (!route)
        return send_error(s, conn, 404, "no such route", NULL);
    if (!authorized(s, conn))
        return send_error(s, conn, 401, "missing or wrong API key (Authorization: Bearer KEY)", NULL);
    if (route == 1 || route == 5) {
        if (!get)
            return send_error(s, conn, 405, "use GET", NULL);
        return route == 1 ? handle_models(s, conn) : handle_model(s, conn, model_id);
    }
    if (!post)
        return send_error(s, conn, 405, "use POST", NULL);
    if (cc->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", s->max_body);
        return send_error(s, conn, 413, msg, NULL);
    }
    json_error_t je;
    json_t *root = json_loadb(cc->body ? cc->body : "", cc->len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char msg[320];
        snprintf(msg, sizeof msg, "the body is not valid JSON (line %d, column %d): %s", je.line, je.column,
                 je.text);
        return send_error(s, conn, 400, msg, NULL);
    }
    enum MHD_Result ret;
    if (!json_is_object(root))
        ret = send_error(s, conn, 400, "the request body must be a JSON object", NULL);
    else if (route == 2 && zl_model_hparams(s->model)->encoder)
        ret = send_error(s, conn, 400, "this model only makes embeddings (POST /v1/embeddings)", NULL);
    else if (route == 6)
        ret = handle_embeddings(s, conn, root);
    else if (route == 2)
        ret = handle_generate(s, conn, kind, root, version && !strcmp(version, "HTTP/1.0"), cc->start);
    else if (route == 3)
        ret = handle_tokenize(s, conn, root);
    else
        ret = handle_detokenize(s, conn, root);
    json_decref(root);
    return ret;
}

/* The library's connection-start / -closed notifications: the door counts these connections against its limits. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    srv *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct sockaddr_storage *a = calloc(1, sizeof *a);
        if (!a)
            return;
        if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
            memcpy(a, ci->client_addr, sizeof(struct sockaddr_in));
        else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
            memcpy(a, ci->client_addr, sizeof(struct sockaddr_in6));
        zl_door_active_add(s->door, (const struct sockaddr *)a);
        *socket_ctx = a;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_ctx) {
        zl_door_active_remove(s->door, (const struct sockaddr *)*socket_ctx);
        free(*socket_ctx);
        *socket_ctx = NULL;
    }
}

/* The door's hand-over: the library owns fd from here on (and closes it when it cannot take it). */
static void hand_over(void *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
    srv *s = ctx;
    MHD_add_connection(s->daemon, fd, addr, len);
}

/* --host: an IPv4 or IPv6 literal, or a name resolved with getaddrinfo; a name with both kinds of address listens
 * on its first IPv4 one (localhost: 127.0.0.1), else its first IPv6 one. NULL, or why not (gai_strerror's words). */
static const char *resolve_host(const char *host, unsigned port, struct sockaddr_storage *out, socklen_t *len)
{
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    const int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        return gai_strerror(rc);
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *r = res; r; r = r->ai_next)
        if ((r->ai_family == AF_INET || r->ai_family == AF_INET6) && r->ai_addrlen <= sizeof *out &&
            (!pick || (pick->ai_family != AF_INET && r->ai_family == AF_INET)))
            pick = r;
    if (pick) {
        memcpy(out, pick->ai_addr, pick->ai_addrlen);
        *len = pick->ai_addrlen;
    }
    freeaddrinfo(res);
    return pick ? NULL : "no IPv4 or IPv6 address";
}

/* A listening TCP socket on addr (non-blocking); -1 with errno on failure. */
static int listen_on(const struct sockaddr_storage *addr, socklen_t len)
{
    const int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, 1024) != 0) {
        const int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    conn_ctx *cc = *con_cls;
    if (cc) {
        free(cc->body);
        free(cc);
        *con_cls = NULL;
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Command line */

static const char SERVE_USAGE[] =
    "usage: zili serve -m MODEL [options]\n"
    "  -m, --model FILE       GGUF model file\n"
    "      --host ADDR        address or name to listen on: IPv4, IPv6 (::1) or a name such as localhost (its\n"
    "                         first IPv4 address, else its first IPv6 one); default 127.0.0.1\n"
    "      --port N           TCP port (default 8080; 0 = any free port, printed on start)\n"
    "      --parallel N       sequences decoded together (default 16)\n"
    "  -c, --ctx N            tokens per sequence, prompt + reply (default min(model, 4096))\n"
    "      --kv-mem SIZE      KV cache memory, e.g. 512M or 2G (default: ctx x parallel)\n"
    "  -b, --batch N          tokens per forward pass (default 256)\n"
    "      --api-key KEY      require 'Authorization: Bearer KEY' (default: $ZILI_API_KEY, else open)\n"
    "      --cors ORIGIN      let pages from ORIGIN (or *: any) call the API: Access-Control-Allow-Origin on every\n"
    "                         reply, OPTIONS preflights answered (default: no cross-origin headers)\n"
    "      --max-queue N      requests waiting before 503 (default 256)\n"
    "      --max-body BYTES   largest request body (default 4 MiB)\n"
    "      --timeout S        idle connection timeout, and the most a request body may take, in seconds (default 60)\n"
    "      --header-timeout S the most a request head (request line and headers) may take from the connection's\n"
    "                         accept, in seconds (default 10, or --timeout when shorter)\n"
    "      --max-conns N      connections in all; at the limit the one waiting longest for its head is shed\n"
    "                         (default 1024)\n"
    "      --max-conns-per-ip N connections per client address (default 64; 0 = no limit, e.g. behind a proxy)\n"
    "      --max-tokens N     max_tokens of a request that sets none, and the most one may set (default 4096)\n"
    "      --reasoning-format F deepseek (default): Qwen3 / DeepSeek R1 <think> text goes to reasoning_content;\n"
    "                         none: it stays in content (a request's reasoning_format overrides)\n"
    "      --special-in-content chat message text may spell special tokens (\"<|im_start|>\"...) and they become\n"
    "                         control tokens (trusted clients only: a user could write system turns)\n"
    "      --grace S          seconds to let running requests finish on SIGTERM (default 5)\n"
    "      --no-prefix-cache  do not share prompt KV blocks between requests\n"
    "      --kv-prefault      make the whole KV pool resident at start (default: pages are taken as blocks are\n"
    "                         first used, so resident memory rises to the pool size and stays there)\n"
    "      --chat-template NAME use a named template instead of the model's: chatml, qwen2.5, qwen3,\n"
    "                         llama3, llama3.1, gemma, deepseek-r1, mistral, mistral-v3, mistral-nemo\n"
    "      --kv-f32           KV cache in F32 (default F16)\n"
    "      --exact            llama.cpp's arithmetic for prompts too: no AMX tiles (also ZILI_EXACT=1)\n"
    "  -t, --threads N        threads (default: all CPUs)\n"
    "  --device DEV           run on a device: cpu (default), vulkan, vulkan:N (see `zili devices`)\n"
    "  --gpu-layers N, -ngl N with --device: the last N layers on it, the rest on the CPU (default: all that fit)\n";

/* A usage error is one line on stderr (no usage text: that is --help's) and exit status 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("zili: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

static bool parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    const long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno || end == s || !(v > 0))
        return false;
    double mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B' || *end == 'b')
        end++;
    if (*end == 'B')
        end++;
    if (*end || v * mul > 1e15)
        return false;
    *out = (int64_t)(v * mul);
    return true;
}

int zl_serve_main(int argc, char **argv)
{
    const char *model_path = NULL, *host = "127.0.0.1", *tmpl_name = NULL, *api_key = getenv("ZILI_API_KEY"),
               *cors = NULL;
    long long port = 8080, timeout = 60, grace = 5, max_body = 4 << 20, head_timeout = 0, max_conns = 1024,
              max_per_ip = 64, max_tokens = 4096, v;
    bool special_in_content = false, reasoning = true;
    zl_engine_params ep = zl_engine_default_params();
    zl_model_opts mo = {.use_mmap = true, .gpu_layers = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(x) (!strcmp(a, x))
#define NEED()                                                                                                  \
    do {                                                                                                        \
        if (!val)                                                                                               \
            return usage_error("%s: missing value", a);                                                         \
        i++;                                                                                                    \
    } while (0)
#define INT(lo, hi, dst)                                                                                        \
    do {                                                                                                        \
        NEED();                                                                                                 \
        if (!parse_ll(val, lo, hi, &v))                                                                         \
            return usage_error("%s '%s': expected an integer in %lld..%lld", a, val, (long long)(lo),           \
                               (long long)(hi));                                                                \
        dst = v;                                                                                                \
    } while (0)
        if (IS("-h") || IS("--help")) {
            fputs(SERVE_USAGE, stdout);
            return 0;
        } else if (IS("-m") || IS("--model")) {
            NEED();
            model_path = val;
        } else if (IS("--host")) {
            NEED();
            host = val;
        } else if (IS("--port")) {
            INT(0, 65535, port);
        } else if (IS("--parallel") || IS("-np")) {
            INT(1, 4096, ep.n_parallel);
        } else if (IS("-c") || IS("--ctx")) {
            INT(2, 1 << 24, ep.n_ctx);
        } else if (IS("-b") || IS("--batch")) {
            INT(1, 1 << 16, ep.n_batch);
        } else if (IS("-t") || IS("--threads")) {
            INT(0, 1024, ep.n_threads);
        } else if (IS("--max-queue")) {
            INT(0, 1 << 20, ep.max_queue);
        } else if (IS("--max-body")) {
            INT(1024, 1LL << 30, max_body);
        } else if (IS("--timeout")) {
            INT(1, 86400, timeout);
        } else if (IS("--header-timeout")) {
            INT(1, 3600, head_timeout);
        } else if (IS("--max-conns")) {
            INT(1, 65536, max_conns);
        } else if (IS("--max-conns-per-ip")) {
            INT(0, 65536, max_per_ip);
        } else if (IS("--max-tokens")) {
            INT(1, 1 << 24, max_tokens);
        } else if (IS("--reasoning-format")) {
            NEED();
            if (strcmp(val, "none") && strcmp(val, "deepseek"))
                return usage_error("--reasoning-format '%s': expected none or deepseek", val);
            reasoning = !strcmp(val, "deepseek");
        } else if (IS("--device")) {
            NEED();
            mo.device = val;
        } else if (IS("--gpu-layers") || IS("-ngl")) {
            INT(0, 1 << 20, mo.gpu_layers);
        } else if (IS("--special-in-content")) {
            special_in_content = true;
        } else if (IS("--grace")) {
            INT(0, 3600, grace);
        } else if (IS("--kv-mem")) {
            NEED();
            if (!parse_size(val, &ep.kv_mem_bytes))
                return usage_error("--kv-mem '%s': expected a size above 0 and below 1e15 bytes, like 512M or 2G",
                                   val);
        } else if (IS("--api-key")) {
            NEED();
            api_key = val;
        } else if (IS("--cors")) {
            NEED();
            if (!val[0] || strpbrk(val, "\r\n"))
                return usage_error("--cors '%s': expected an origin like https://example.com, or *", val);
            cors = val;
        } else if (IS("--chat-template")) {
            NEED();
            tmpl_name = val;
        } else if (IS("--kv-prefault")) {
            ep.kv_prefault = true;
        } else if (IS("--no-prefix-cache")) {
            ep.prefix_cache = false;
        } else if (IS("--exact")) {
            mo.exact = true;
        } else if (IS("--kv-f32")) {
            ep.kv_f16 = false;
        } else {
            return usage_error("serve: unknown option '%s' (zili serve --help lists them)", a);
        }
#undef IS
#undef NEED
#undef INT
    }
    if (!model_path)
        return usage_error("serve: no model given (-m FILE)");
    char stored[PATH_MAX], why_not[1024];
    if (zl_store_resolve(model_path, stored, sizeof stored, why_not, sizeof why_not) != 0) {
        fprintf(stderr, "zili serve: %s\n", why_not);
        return 1;
    }
    const char *model_arg = model_path; /* the model's id: the name given (a stored NAME or the file's name) */
    model_path = stored;
    if (api_key && !api_key[0])
        api_key = NULL;
    struct sockaddr_storage addr;
    socklen_t addr_len = 0;
    const char *why = resolve_host(host, (unsigned)port, &addr, &addr_len);
    if (why)
        return usage_error("--host '%s': expected an IPv4 or IPv6 address or a name this machine resolves (%s)",
                           host, why);

    /* Signals go to sigwait below: block them before any thread exists, so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    srv *s = calloc(1, sizeof *s);
    if (!s)
        return 1;
    s->api_key = api_key;
    s->cors = cors;
    s->reasoning = reasoning;
    s->max_body = (size_t)max_body;
    s->body_timeout = (double)timeout;
    s->started = time(NULL);
    zl_err err = {{0}};
    if (zl_model_load(model_path, &mo, &s->model, &err) != ZL_OK) {
        fprintf(stderr, "zili serve: %s\n", err.msg);
        free(s);
        return 1;
    }
    if (zl_model_device_summary(s->model))
        fprintf(stderr, "zili serve: %s\n", zl_model_device_summary(s->model));
    const char *slash = strrchr(model_arg, '/');
    snprintf(s->model_id, sizeof s->model_id, "%s", slash ? slash + 1 : model_arg);
    int rc;
    if (tmpl_name) {
        rc = zl_chat_tmpl_from_name(tmpl_name, &s->tmpl, &err);
    } else {
        gguf_str ts;
        if (gguf_get_str(zl_model_gguf(s->model), "tokenizer.chat_template", &ts, NULL))
            rc = zl_chat_tmpl_detect(ts.ptr, ts.len, &s->tmpl, &err);
        else
            rc = zl_err_set(&err, ZL_EUNSUPPORTED, "the model has no chat template");
        if (rc != ZL_OK) {
            fprintf(stderr, "zili serve: %s; chat requests use plain ChatML\n", err.msg);
            rc = zl_chat_tmpl_from_name("chatml", &s->tmpl, &err);
        }
    }
    if (rc != ZL_OK) {
        fprintf(stderr, "zili serve: %s\n", err.msg);
        zl_model_free(s->model);
        free(s);
        return 2;
    }
    if (zl_engine_create(s->model, &ep, &s->engine, &err) != ZL_OK) {
        fprintf(stderr, "zili serve: %s\n", err.msg);
        zl_model_free(s->model);
        free(s);
        return 1;
    }
    const zl_engine_params *used = zl_engine_get_params(s->engine);
    s->lim = (oai_limits){.n_ctx = used->n_ctx, .max_tokens = (int32_t)max_tokens,
                          .special_in_content = special_in_content};
    s->ol = (ol_host){.model = s->model, .engine = s->engine, .tmpl = &s->tmpl, .model_id = s->model_id,
                      .model_path = model_path, .lim = &s->lim, .reasoning = reasoning, .cors = cors,
                      .seed_counter = &s->seed_counter, .ctx = s, .count_code = ol_count, .gen_begin = ol_begin,
                      .gen_end = ol_end, .draining = ol_draining};
    {
        const zl_hparams *hp = zl_model_hparams(s->model);
        int32_t emb_ctx = used->n_ctx; /* an encoder: within its trained positions; a decoder: at most 8192 */
        if (hp->encoder && emb_ctx > hp->n_ctx_train)
            emb_ctx = hp->n_ctx_train;
        if (!hp->encoder && emb_ctx > 8192)
            emb_ctx = 8192;
        zl_emb_host_init(&s->emb, s->model, s->model_id, emb_ctx, used->n_threads);
    }
    s->ol.emb = &s->emb;

    const int lfd = listen_on(&addr, addr_len);
    struct MHD_Daemon *d = NULL;
    if (lfd >= 0)
        d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                                 MHD_USE_NO_LISTEN_SOCKET,
                             0, NULL, NULL, on_request, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conns + 16, MHD_OPTION_NOTIFY_COMPLETED,
                             on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    s->daemon = d;
    if (head_timeout == 0) /* default: 10 s, or the idle timeout when that is shorter */
        head_timeout = timeout < 10 ? timeout : 10;
    const zl_door_params dp = {.max_conns = (int)max_conns, .max_per_ip = (int)max_per_ip,
                               .head_timeout = (double)head_timeout, .max_head = 16384,
                               .max_body = (uint64_t)max_body};
    if (lfd < 0 || !d || zl_door_start(lfd, &dp, hand_over, s, &s->door, &err) != ZL_OK) {
        const bool v6 = strchr(host, ':') != NULL;
        fprintf(stderr, "zili serve: cannot listen on %s%s%s:%lld: %s\n", v6 ? "[" : "", host, v6 ? "]" : "", port,
                lfd < 0 ? strerror(errno) : !d ? "the HTTP library did not start" : err.msg);
        if (d)
            MHD_stop_daemon(d);
        if (lfd >= 0 && !s->door)
            close(lfd);
        zl_emb_host_free(&s->emb);
        zl_engine_destroy(s->engine);
        zl_model_free(s->model);
        free(s);
        return 1;
    }
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    char bhost[NI_MAXHOST] = "?", bport[NI_MAXSERV] = "?";
    if (getsockname(lfd, (struct sockaddr *)&bound, &bl) == 0)
        getnameinfo((struct sockaddr *)&bound, bl, bhost, sizeof bhost, bport, sizeof bport,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    const bool v6 = bound.ss_family == AF_INET6;
    fprintf(stderr,
            "zili serve: %s on http://%s%s%s:%s (parallel %d, ctx %d, %d KV blocks of %d, batch %d, prefix cache %s%s)\n",
            s->model_id, v6 ? "[" : "", bhost, v6 ? "]" : "", bport, used->n_parallel, used->n_ctx, used->n_blocks, used->block_size,
            used->n_batch, used->prefix_cache ? "on" : "off", api_key ? ", API key required" : "");
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "zili serve: %s, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    atomic_store(&s->draining, true);
    zl_door_stop(s->door); /* no new connections */
    const double until = now_s() + (double)grace;
    while (atomic_load(&s->active) > 0 && now_s() < until)
        usleep(20000);
    zl_engine_shutdown(s->engine); /* whatever still runs ends as cancelled */
    /* Let the connection threads write the end of their replies before the daemon closes the sockets. */
    const double until2 = now_s() + 2.0;
    while (atomic_load(&s->active) > 0 && now_s() < until2)
        usleep(10000);
    MHD_stop_daemon(d);
    zl_door_free(s->door);
    zl_emb_host_free(&s->emb);
    zl_engine_destroy(s->engine);
    zl_model_free(s->model);
    free(s);
    fprintf(stderr, "zili serve: stopped\n");
    return 0;
}
