/*
 * ollama.c - Ollama's REST API routes (ollama.h) over the engine: chat and generate (NDJSON streams or one
 * object), tags, ps, show, version.
 *
 * A generation request is rewritten into its OpenAI body (ollama_req.c), parsed by oai_parse and submitted like
 * any other; the reply's text goes through the same reasoning splitter (message.thinking) and tool-call parser
 * (message.tool_calls, Ollama's shape: arguments as an object) as the OpenAI routes'. A stream is one JSON object
 * per line (application/x-ndjson), the last with done: true, done_reason and the counts and durations in
 * nanoseconds. Durations are measured on the connection's thread: prompt_eval_duration from the submit to the
 * first generated token's arrival (queueing included), eval_duration from there to the end, total_duration from
 * the request head to the end; load_duration is 0 (the model is loaded before the server listens).
 *
 * Threads: everything here runs on the request's connection thread; a stream's state belongs to it until the
 * library calls stream_free.
 */
#include "server/ollama.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "server/cors.h"
#include "server/peer.h"
#include "server/reasoning.h"
#include "server/tools.h"
#include "tokenizer/vocab.h"
#include "zili.h"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* RFC 3339 in UTC with nanoseconds, as Ollama writes created_at ("2024-01-02T03:04:05.123456789Z"). */
static void rfc3339(const struct timespec *ts, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", date, ts->tv_nsec);
}

static json_t *now_json(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char b[64];
    rfc3339(&ts, b, sizeof b);
    return json_string(b);
}

bool ol_is_route(const char *url) { return !strncmp(url, "/api/", 5); }

/* ------------------------------------------------------------------------------------------------------------ */
/* Responses */

static enum MHD_Result send_text(const ol_host *h, struct MHD_Connection *c, int code, const char *type, char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    zl_cors_headers(r, h->cors);
    MHD_add_response_header(r, "Connection", "close"); /* one request per connection: see door.h */
    if (code == 503)
        MHD_add_response_header(r, "Retry-After", "1");
    const enum MHD_Result ret = MHD_queue_response(c, (unsigned)code, r);
    MHD_destroy_response(r);
    h->count_code(h->ctx, code);
    return ret;
}

static enum MHD_Result send_obj(const ol_host *h, struct MHD_Connection *c, int code, json_t *o)
{
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body)
        return MHD_NO;
    return send_text(h, c, code, "application/json; charset=utf-8", body);
}

/* Ollama's error body: {"error": "..."} */
static json_t *error_obj(const char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", oai_string(msg, strlen(msg)));
    return o;
}

static enum MHD_Result send_err(const ol_host *h, struct MHD_Connection *c, int code, const char *msg)
{
    return send_obj(h, c, code, error_obj(msg));
}

static enum MHD_Result not_found(const ol_host *h, struct MHD_Connection *c, const char *name)
{
    char msg[400];
    snprintf(msg, sizeof msg, "model '%.300s' not found", name);
    return send_err(h, c, 404, msg);
}

/* Whether the request's "model" names the served model; if not, *ret is the 400 or 404 sent. */
static bool model_served(const ol_host *h, struct MHD_Connection *c, const json_t *name, enum MHD_Result *ret)
{
    if (!json_is_string(name) || !json_string_length(name))
        *ret = send_err(h, c, 400, "'model' is required (the name of a model, a string)");
    else if (!ol_name_matches(h->model_id, json_string_value(name)))
        *ret = not_found(h, c, json_string_value(name));
    else
        return true;
    return false;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* /api/embed {model, input: a string or a list of them} -> {model, embeddings, durations, prompt_eval_count};
 * the older /api/embeddings {model, prompt} -> {embedding}. Both over /v1/embeddings' request (embeddings.c). */

static enum MHD_Result handle_embed(const ol_host *h, struct MHD_Connection *c, json_t *root, bool legacy,
                                    double t_start)
{
    json_t *name = json_object_get(root, "model");
    enum MHD_Result bad;
    if (!model_served(h, c, name, &bad))
        return bad;
    json_t *in = json_object_get(root, legacy ? "prompt" : "input");
    if (!json_is_string(in) && !(json_is_array(in) && !legacy))
        return send_err(h, c, 400, legacy ? "'prompt' must be a string" :
                                            "'input' must be a string or a list of strings");
    for (size_t i = 0; json_is_array(in) && i < json_array_size(in); i++)
        if (!json_is_string(json_array_get(in, i)))
            return send_err(h, c, 400, "'input' must be a string or a list of strings");
    json_t *req = json_object();
    json_object_set(req, "input", in);
    int status = 500;
    const char *param = NULL;
    char why[512] = "";
    json_t *r = zl_emb_request(h->emb, req, &status, &param, why, sizeof why);
    json_decref(req);
    if (!r)
        return send_err(h, c, status, why);
    json_t *data = json_object_get(r, "data"), *o = json_object();
    if (legacy) {
        json_object_set(o, "embedding", json_object_get(json_array_get(data, 0), "embedding"));
    } else {
        json_t *vs = json_array();
        for (size_t i = 0; i < json_array_size(data); i++)
            json_array_append(vs, json_object_get(json_array_get(data, i), "embedding"));
        json_object_set_new(o, "model", json_string(json_string_value(name)));
        json_object_set_new(o, "embeddings", vs);
        json_object_set_new(o, "total_duration", json_integer((json_int_t)((mono_s() - t_start) * 1e9)));
        json_object_set_new(o, "load_duration", json_integer(0));
        json_object_set(o, "prompt_eval_count", json_object_get(json_object_get(r, "usage"), "prompt_tokens"));
    }
    json_decref(r);
    return send_obj(h, c, 200, o);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* The model's description (tags, ps, show) */

static json_t *details_json(const ol_host *h)
{
    const gguf_file *f = zl_model_gguf(h->model);
    gguf_str arch = {"", 0};
    zl_err e = {{0}};
    gguf_get_str(f, "general.architecture", &arch, &e);
    int64_t ft = -1;
    if (!gguf_get_i64(f, "general.file_type", &ft, &e))
        ft = -1;
    char ps[32];
    ol_param_size((unsigned long long)zl_model_n_params(h->model), ps, sizeof ps);
    json_t *d = json_object();
    json_object_set_new(d, "parent_model", json_string(""));
    json_object_set_new(d, "format", json_string("gguf"));
    json_object_set_new(d, "family", oai_string(arch.ptr, arch.len));
    json_t *fams = json_array();
    json_array_append_new(fams, oai_string(arch.ptr, arch.len));
    json_object_set_new(d, "families", fams);
    json_object_set_new(d, "parameter_size", json_string(ps));
    json_object_set_new(d, "quantization_level", json_string(ol_file_type_name(ft)));
    return d;
}

/* The model as /api/tags and /api/ps list it (no digest: zili does not hash the file). */
static json_t *model_entry(const ol_host *h, bool ps)
{
    char name[300];
    ol_model_name(h->model_id, name, sizeof name);
    json_t *m = json_object();
    json_object_set_new(m, "name", oai_string(name, strlen(name)));
    json_object_set_new(m, "model", oai_string(name, strlen(name)));
    struct stat st;
    const bool have = stat(h->model_path, &st) == 0;
    if (!ps && have) {
        char b[64];
        rfc3339(&st.st_mtim, b, sizeof b);
        json_object_set_new(m, "modified_at", json_string(b));
    }
    json_object_set_new(m, "size", json_integer((json_int_t)gguf_file_size(zl_model_gguf(h->model))));
    json_object_set_new(m, "details", details_json(h));
    if (ps) {
        /* never unloaded: an expiry far in the future, as Ollama shows for keep_alive -1 */
        json_object_set_new(m, "expires_at", json_string("2318-01-01T00:00:00Z"));
        json_object_set_new(m, "size_vram", json_integer(0));
        json_object_set_new(m, "context_length", json_integer(h->lim->n_ctx));
    }
    return m;
}

static enum MHD_Result handle_list(const ol_host *h, struct MHD_Connection *c, bool ps)
{
    json_t *arr = json_array();
    json_array_append_new(arr, model_entry(h, ps));
    json_t *o = json_object();
    json_object_set_new(o, "models", arr);
    return send_obj(h, c, 200, o);
}

/* One GGUF metadata value as JSON; arrays only when verbose (else null, as Ollama shows the tokenizer's lists). */
static json_t *kv_json(const gguf_kv *kv, bool verbose)
{
    switch (kv->type) {
    case GGUF_T_UINT8: case GGUF_T_UINT16: case GGUF_T_UINT32: case GGUF_T_UINT64:
        return kv->v.u64 > (uint64_t)INT64_MAX ? json_real((double)kv->v.u64) : json_integer((json_int_t)kv->v.u64);
    case GGUF_T_INT8: case GGUF_T_INT16: case GGUF_T_INT32: case GGUF_T_INT64:
        return json_integer((json_int_t)kv->v.i64);
    case GGUF_T_FLOAT32: case GGUF_T_FLOAT64:
        return json_real(kv->v.f64);
    case GGUF_T_BOOL:
        return json_boolean(kv->v.u64 != 0);
    case GGUF_T_STRING:
        return oai_string(kv->v.str.ptr, kv->v.str.len);
    case GGUF_T_ARRAY: {
        if (!verbose)
            return json_null();
        json_t *a = json_array();
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            int64_t iv;
            float fv;
            if (kv->arr_type == GGUF_T_STRING) {
                const gguf_str s = gguf_arr_str(kv, i);
                json_array_append_new(a, oai_string(s.ptr ? s.ptr : "", s.len));
            } else if (kv->arr_type == GGUF_T_BOOL && gguf_arr_i64(kv, i, &iv)) {
                json_array_append_new(a, json_boolean(iv != 0));
            } else if (gguf_arr_i64(kv, i, &iv)) {
                json_array_append_new(a, json_integer((json_int_t)iv));
            } else if (gguf_arr_f32(kv, i, &fv)) {
                json_array_append_new(a, json_real(fv));
            } else {
                json_array_append_new(a, json_null());
            }
        }
        return a;
    }
    default:
        return json_null();
    }
}

static enum MHD_Result handle_show(const ol_host *h, struct MHD_Connection *c, json_t *root)
{
    json_t *name = json_object_get(root, "model");
    if (!name || json_is_null(name))
        name = json_object_get(root, "name"); /* the older spelling */
    if (!json_is_string(name) || !json_string_length(name))
        return send_err(h, c, 400, "'model' must be the name of a model (a string)");
    if (!ol_name_matches(h->model_id, json_string_value(name)))
        return not_found(h, c, json_string_value(name));
    json_t *vb = json_object_get(root, "verbose");
    if (vb && !json_is_null(vb) && !json_is_boolean(vb))
        return send_err(h, c, 400, "'verbose' must be true or false");
    const bool verbose = json_is_true(vb);
    const gguf_file *f = zl_model_gguf(h->model);
    json_t *info = json_object();
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char key[256];
        if (kv->key.len >= sizeof key)
            continue;
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = 0;
        if (strlen(key) != kv->key.len)
            continue;
        /* a key that is not UTF-8 is refused by jansson, which frees the value */
        json_object_set_new(info, key, kv_json(kv, verbose));
    }
    if (!json_object_get(info, "general.parameter_count"))
        json_object_set_new(info, "general.parameter_count", json_integer((json_int_t)zl_model_n_params(h->model)));
    gguf_str tmpl = {"", 0};
    zl_err e = {{0}};
    gguf_get_str(f, "tokenizer.chat_template", &tmpl, &e);
    char params[128];
    snprintf(params, sizeof params, "num_ctx %d\nnum_predict %d", h->lim->n_ctx, h->lim->max_tokens);
    char *mf = NULL;
    const size_t mf_len = strlen(h->model_path) + 256;
    if (!(mf = malloc(mf_len)))
        return send_err(h, c, 500, "out of memory");
    snprintf(mf, mf_len, "# Modelfile of the model zili serves\nFROM %s\nPARAMETER num_ctx %d\n", h->model_path,
             h->lim->n_ctx);
    json_t *o = json_object();
    json_object_set_new(o, "license", json_string(""));
    json_object_set_new(o, "modelfile", oai_string(mf, strlen(mf)));
    free(mf);
    json_object_set_new(o, "parameters", json_string(params));
    json_object_set_new(o, "template", oai_string(tmpl.ptr, tmpl.len));
    json_object_set_new(o, "details", details_json(h));
    json_object_set_new(o, "model_info", info);
    json_t *caps = json_array();
    json_array_append_new(caps, json_string("completion"));
    json_array_append_new(caps, json_string("tools"));
    if (h->tmpl->kind == ZL_TMPL_QWEN3 || h->tmpl->kind == ZL_TMPL_DEEPSEEK_R1)
        json_array_append_new(caps, json_string("thinking"));
    json_object_set_new(o, "capabilities", caps);
    struct stat st;
    if (stat(h->model_path, &st) == 0) {
        char b[64];
        rfc3339(&st.st_mtim, b, sizeof b);
        json_object_set_new(o, "modified_at", json_string(b));
    }
    return send_obj(h, c, 200, o);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Generation */

typedef struct ol_gen {
    const ol_host *h;
    struct MHD_Connection *conn;
    oai_request q;
    zl_req *req;
    bool chat;              /* /api/chat (message) or /api/generate (response) */
    bool http10, eof_seen;  /* the request's version; the client's end of file seen (peer_poll) */
    bool think_on;          /* a reasoning model's <think> text goes to "thinking" */
    bool first_seen;        /* a generated token has arrived (t_first set) */
    char *model;            /* the name the request gave, echoed in every object (malloc'd) */
    oai_think think;
    oai_tool_parser tools;  /* with q.tools_on */
    uint64_t id_rng;
    size_t n_calls;
    double t_start, t_submit, t_first;
    /* the whole reply (stream false): its content, thinking and calls so far */
    char *content, *thinking;
    size_t n_content, n_thinking;
    json_t *calls;
    /* a stream's bytes not yet handed to the library; done: the last line is queued */
    char *buf;
    size_t len, pos, cap;
    bool done;
} ol_gen;

static void gen_free(ol_gen *g)
{
    g->h->gen_end(g->h->ctx, g->t_start, g->req != NULL);
    if (g->req)
        zl_req_release(g->req);
    oai_request_free(&g->q);
    oai_tools_free(&g->tools);
    if (g->calls)
        json_decref(g->calls);
    free(g->model);
    free(g->content);
    free(g->thinking);
    free(g->buf);
    free(g);
}

/* Appends s[0..n) to a malloc'd string (*p, *len); false when out of memory. */
static bool append(char **p, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        char *np = realloc(*p, c);
        if (!np)
            return false;
        *p = np;
        *cap = c;
    }
    memcpy(*p + *len, s, n);
    *len += n;
    (*p)[*len] = 0;
    return true;
}

/* A tool call in Ollama's shape: {"id", "function": {"index", "name", "arguments": {...}}}. */
static json_t *call_json(ol_gen *g, const oai_call *c)
{
    char id[32];
    oai_tools_call_id(g->q.tool_fmt, &g->id_rng, id);
    json_t *args = json_loads(c->args, JSON_DECODE_ANY, NULL);
    if (!args)
        args = json_object();
    json_t *f = json_object();
    json_object_set_new(f, "index", json_integer((json_int_t)g->n_calls++));
    json_object_set_new(f, "name", oai_string(c->name, strlen(c->name)));
    json_object_set_new(f, "arguments", args);
    json_t *t = json_object();
    json_object_set_new(t, "id", json_string(id));
    json_object_set_new(t, "function", f);
    return t;
}

/* The pieces of one engine chunk after the reasoning splitter and the tool-call parser: content and thinking
 * (pointers into *scratch or the chunk, valid until the next call), and the calls completed (appended to calls,
 * created when NULL). */
typedef struct ol_piece {
    const char *content, *thinking;
    size_t n_content, n_thinking;
} ol_piece;

static void split_chunk(ol_gen *g, const zl_req_chunk *c, char **scratch, oai_tool_out *to, json_t **calls,
                        ol_piece *out)
{
    const bool final = c->finish != ZL_FINISH_NONE;
    *out = (ol_piece){c->text ? c->text : "", "", c->len, 0};
    free(*scratch);
    *scratch = NULL;
    if (g->think_on && (c->len || final) && (*scratch = malloc(2 * (c->len + 16)))) {
        oai_think_out t = {*scratch, *scratch + c->len + 16, 0, 0};
        oai_think_feed(&g->think, c->text ? c->text : "", c->len, final, &t);
        *out = (ol_piece){t.content, t.reasoning, t.n_content, t.n_reasoning};
    }
    oai_tool_out_free(to);
    *to = (oai_tool_out){0};
    if (g->q.tools_on && (out->n_content || final)) {
        oai_tools_feed(&g->tools, out->content, out->n_content, final, to);
        out->content = to->content ? to->content : "";
        out->n_content = to->n_content;
        for (size_t k = 0; k < to->n_calls; k++) {
            if (!*calls)
                *calls = json_array();
            json_array_append_new(*calls, call_json(g, &to->calls[k]));
        }
    }
}

/* The fields every object of a reply starts with. */
static json_t *head_obj(const ol_gen *g)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", oai_string(g->model, strlen(g->model)));
    json_object_set_new(o, "created_at", now_json());
    return o;
}

/* The text of an object: chat's message, or generate's response (+ thinking). calls: stolen. */
static void put_text(const ol_gen *g, json_t *o, const char *content, size_t n_content, const char *thinking,
                     size_t n_thinking, json_t *calls)
{
    if (g->chat) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("assistant"));
        json_object_set_new(m, "content", oai_string(content, n_content));
        if (n_thinking)
            json_object_set_new(m, "thinking", oai_string(thinking, n_thinking));
        if (calls)
            json_object_set_new(m, "tool_calls", calls);
        json_object_set_new(o, "message", m);
    } else {
        json_object_set_new(o, "response", oai_string(content, n_content));
        if (n_thinking)
            json_object_set_new(o, "thinking", oai_string(thinking, n_thinking));
        if (calls)
            json_decref(calls);
    }
}

static json_int_t ns(double s) { return s > 0 ? (json_int_t)(s * 1e9) : 0; }

/* done: true and the counts and durations of the finished request. */
static void put_done(ol_gen *g, json_t *o, const zl_req_chunk *c)
{
    const double t_end = mono_s();
    if (!g->first_seen)
        g->t_first = t_end;
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string(c->finish == ZL_FINISH_LENGTH ? "length" : "stop"));
    json_object_set_new(o, "total_duration", json_integer(ns(t_end - g->t_start)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(c->n_prompt));
    json_object_set_new(o, "prompt_eval_duration", json_integer(ns(g->t_first - g->t_submit)));
    json_object_set_new(o, "eval_count", json_integer(c->n_gen));
    json_object_set_new(o, "eval_duration", json_integer(ns(t_end - g->t_first)));
}

static void line_put(ol_gen *g, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return;
    if (!append(&g->buf, &g->len, &g->cap, s, strlen(s)) || !append(&g->buf, &g->len, &g->cap, "\n", 1))
        g->done = true; /* out of memory: end the stream */
    free(s);
}

static void note_first(ol_gen *g, const zl_req_chunk *c)
{
    if (!g->first_seen && c->n_gen > 0) {
        g->first_seen = true;
        g->t_first = mono_s();
    }
}

/* Waits for the next chunk and turns it into NDJSON lines in g->buf. Returns false when the client went away. */
static bool stream_fill(ol_gen *g)
{
    zl_req_chunk c;
    for (;;) {
        if (zl_req_next(g->req, 50, &c) != ZL_OK)
            return false;
        if (c.len || c.finish != ZL_FINISH_NONE)
            break;
        zl_req_chunk_free(&c);
        /* No keep-alive bytes exist in NDJSON, so this callback waits here rather than return empty-handed;
         * a half-closed client still reads, so only a failed socket ends the wait. */
        if (peer_poll(g->conn, &g->eof_seen) == PEER_GONE)
            return false;
    }
    note_first(g, &c);
    if (c.finish == ZL_FINISH_CANCELLED || c.finish == ZL_FINISH_ERROR) {
        line_put(g, error_obj(c.finish == ZL_FINISH_ERROR ? c.error
                                                          : "the request was cancelled (server shutting down)"));
        zl_req_chunk_free(&c);
        g->done = true;
        return true;
    }
    char *scratch = NULL;
    oai_tool_out to = {0};
    json_t *calls = NULL;
    ol_piece p;
    split_chunk(g, &c, &scratch, &to, &calls, &p);
    if (p.n_content || p.n_thinking || calls) {
        json_t *o = head_obj(g);
        put_text(g, o, p.content, p.n_content, p.thinking, p.n_thinking, calls);
        json_object_set_new(o, "done", json_false());
        line_put(g, o);
    }
    if (c.finish != ZL_FINISH_NONE) {
        json_t *o = head_obj(g);
        put_text(g, o, "", 0, "", 0, NULL);
        put_done(g, o, &c);
        line_put(g, o);
        g->done = true;
    }
    oai_tool_out_free(&to);
    free(scratch);
    zl_req_chunk_free(&c);
    return true;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    ol_gen *g = cls;
    while (g->pos == g->len) {
        g->pos = g->len = 0;
        if (g->done)
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

/* Waits for the whole reply and answers with one object. */
static enum MHD_Result reply_whole(ol_gen *g)
{
    const ol_host *h = g->h;
    size_t cap_c = 0, cap_t = 0;
    char *scratch = NULL;
    oai_tool_out to = {0};
    zl_req_chunk c;
    bool oom = false;
    for (;;) {
        if (zl_req_next(g->req, 50, &c) != ZL_OK) {
            c = (zl_req_chunk){0};
            c.finish = ZL_FINISH_ERROR;
            snprintf(c.error, sizeof c.error, "out of memory");
            break;
        }
        note_first(g, &c);
        if (c.finish == ZL_FINISH_CANCELLED || c.finish == ZL_FINISH_ERROR)
            break;
        if (c.len || c.finish != ZL_FINISH_NONE) {
            ol_piece p;
            split_chunk(g, &c, &scratch, &to, &g->calls, &p);
            oom |= !append(&g->content, &g->n_content, &cap_c, p.content, p.n_content) ||
                   !append(&g->thinking, &g->n_thinking, &cap_t, p.thinking, p.n_thinking);
        }
        if (c.finish != ZL_FINISH_NONE)
            break;
        zl_req_chunk_free(&c);
        const peer_state ps = peer_poll(g->conn, &g->eof_seen);
        if (ps == PEER_GONE || (ps == PEER_EOF && !probe_whole(g->conn, g->http10))) {
            oai_tool_out_free(&to);
            free(scratch);
            gen_free(g);
            return MHD_NO;
        }
    }
    oai_tool_out_free(&to);
    free(scratch);
    enum MHD_Result ret;
    if (c.finish == ZL_FINISH_ERROR || oom) {
        ret = send_err(h, g->conn, 500, oom ? "out of memory" : c.error);
    } else if (c.finish == ZL_FINISH_CANCELLED) {
        ret = send_err(h, g->conn, 503, "the server is shutting down");
    } else {
        json_t *o = head_obj(g);
        put_text(g, o, g->content ? g->content : "", g->n_content, g->thinking ? g->thinking : "", g->n_thinking,
                 g->calls);
        g->calls = NULL;
        put_done(g, o, &c);
        ret = send_obj(h, g->conn, 200, o);
    }
    zl_req_chunk_free(&c);
    gen_free(g);
    return ret;
}

/* An empty chat (no messages) or generate (no prompt) loads the model in Ollama: answered done at once. */
static bool is_load_request(json_t *root, bool chat)
{
    json_t *v = json_object_get(root, chat ? "messages" : "prompt");
    if (chat)
        return !v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0);
    return (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) &&
           !json_object_get(root, "system");
}

static enum MHD_Result handle_gen(const ol_host *h, struct MHD_Connection *c, json_t *root, bool chat, bool http10,
                                  double t_start)
{
    json_t *name = json_object_get(root, "model");
    enum MHD_Result bad;
    if (!model_served(h, c, name, &bad))
        return bad;
    if (h->draining(h->ctx))
        return send_err(h, c, 503, "the server is shutting down");
    char why[320];
    bool raw = false;
    json_t *oa = ol_to_openai(root, chat, h->lim->n_ctx, &raw, why, sizeof why);
    if (!oa)
        return send_err(h, c, 400, why);
    if (is_load_request(root, chat)) {
        json_decref(oa);
        json_t *o = json_object();
        json_object_set(o, "model", name);
        json_object_set_new(o, "created_at", now_json());
        if (chat) {
            json_t *m = json_object();
            json_object_set_new(m, "role", json_string("assistant"));
            json_object_set_new(m, "content", json_string(""));
            json_object_set_new(o, "message", m);
        } else {
            json_object_set_new(o, "response", json_string(""));
        }
        json_object_set_new(o, "done", json_true());
        json_object_set_new(o, "done_reason", json_string("load"));
        return send_obj(h, c, 200, o);
    }
    ol_gen *g = calloc(1, sizeof *g);
    if (!g || !(g->model = strdup(json_string_value(name)))) {
        free(g);
        json_decref(oa);
        return send_err(h, c, 500, "out of memory");
    }
    h->gen_begin(h->ctx);
    g->h = h;
    g->conn = c;
    g->chat = chat;
    g->http10 = http10;
    g->t_start = t_start;
    const oai_kind kind = raw ? OAI_COMPLETION : OAI_CHAT;
    oai_error oe;
    const uint64_t seed = (uint64_t)time(NULL) * 1000003u + atomic_fetch_add(h->seed_counter, 1);
    const int prc = oai_parse(h->model, h->tmpl, kind, oa, h->lim, seed, &g->q, &oe);
    json_decref(oa); /* g->q holds its own reference */
    if (prc != ZL_OK) {
        gen_free(g);
        char msg[640];
        snprintf(msg, sizeof msg, "%s%s", !strcmp(oe.param, "response_format") ? "format: " : "", oe.msg);
        return send_err(h, c, 400, msg);
    }
    const bool thinks = h->tmpl->kind == ZL_TMPL_QWEN3 ||
                        (h->tmpl->kind == ZL_TMPL_DEEPSEEK_R1 && !(h->tmpl->flags & ZL_CHAT_DEEPSEEK_WHOLE_REPLY));
    g->think_on = kind == OAI_CHAT && thinks && (h->reasoning || g->q.reasoning_on) && !g->q.reasoning_off;
    oai_think_init(&g->think, h->tmpl->kind == ZL_TMPL_DEEPSEEK_R1 && (h->tmpl->flags & ZL_CHAT_THINK_PROMPT));
    oai_tools_init(&g->tools, g->q.tool_fmt, g->q.tools_forced);
    g->id_rng = seed ^ 0x7f4a7c159e3779b9ull;
    zl_err err = {{0}};
    g->t_submit = mono_s();
    const int rc = zl_engine_submit(h->engine, g->q.prompt, g->q.n_prompt, &g->q.rp, &g->req, &err);
    if (rc != ZL_OK) {
        g->req = NULL;
        gen_free(g);
        const int code = rc == ZL_EFULL || rc == ZL_EIO ? 503 : rc == ZL_ENOMEM ? 500 : 400;
        return send_err(h, c, code, err.msg);
    }
    if (!g->q.stream)
        return reply_whole(g);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, g,
                                                               stream_free);
    if (!r) {
        gen_free(g);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
    zl_cors_headers(r, h->cors);
    MHD_add_response_header(r, "Connection", "close");
    const enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    h->count_code(h->ctx, 200);
    return ret;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Dispatch */

enum MHD_Result ol_handle(const ol_host *h, struct MHD_Connection *c, const char *url, const char *method,
                          const char *body, size_t len, bool too_large, bool authorized, bool http10,
                          double t_start)
{
    static const char *const k_manage[] = {"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete",
                                           "/api/blobs/"};
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    int route = 0; /* 1 chat, 2 generate, 3 show, 4 tags, 5 ps, 6 version, 7 embeddings, 8 management */
    if (!strcmp(url, "/api/chat"))
        route = 1;
    else if (!strcmp(url, "/api/generate"))
        route = 2;
    else if (!strcmp(url, "/api/show"))
        route = 3;
    else if (!strcmp(url, "/api/tags"))
        route = 4;
    else if (!strcmp(url, "/api/ps"))
        route = 5;
    else if (!strcmp(url, "/api/version"))
        route = 6;
    else if (!strcmp(url, "/api/embed") || !strcmp(url, "/api/embeddings"))
        route = 7;
    for (size_t i = 0; !route && i < sizeof k_manage / sizeof *k_manage; i++)
        if (!strncmp(url, k_manage[i], strlen(k_manage[i])) && (k_manage[i][strlen(k_manage[i]) - 1] == '/' ||
                                                                !url[strlen(k_manage[i])]))
            route = 8;
    if (!route)
        return send_err(h, c, 404, "no such route (Ollama's API here: /api/chat, /api/generate, /api/tags, "
                                   "/api/ps, /api/show, /api/version)");
    if (!authorized)
        return send_err(h, c, 401, "missing or wrong API key (Authorization: Bearer KEY)");
    if (route == 8)
        return send_err(h, c, 501, "this server serves the one model it was started with (-m); Ollama's model "
                                   "management (pull, push, create, copy, delete, blobs) is not supported");
    if (route >= 4 && route <= 6) {
        if (!get)
            return send_err(h, c, 405, "method not allowed: use GET");
        if (route == 6) {
            json_t *o = json_object();
            json_object_set_new(o, "version", json_string(ZILI_VERSION));
            return send_obj(h, c, 200, o);
        }
        return handle_list(h, c, route == 5);
    }
    if (!post)
        return send_err(h, c, 405, "method not allowed: use POST");
    if (too_large)
        return send_err(h, c, 413, "the request body is larger than the server's --max-body");
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char msg[320];
        snprintf(msg, sizeof msg, "the body is not valid JSON (line %d, column %d): %s", je.line, je.column,
                 je.text);
        return send_err(h, c, 400, msg);
    }
    enum MHD_Result ret;
    if (!json_is_object(root))
        ret = send_err(h, c, 400, "the request body must be a JSON object");
    else if (route == 3)
        ret = handle_show(h, c, root);
    else if (route == 7)
        ret = handle_embed(h, c, root, !strcmp(url, "/api/embeddings"), t_start);
    else
        ret = handle_gen(h, c, root, route == 1, http10, t_start);
    json_decref(root);
    return ret;
}
