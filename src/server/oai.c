/*
 * oai.c - OpenAI request validation and response pieces (see oai.h).
 *
 * Defaults follow OpenAI's API: temperature 1, top_p 1, no top_k / min_p, no penalties, max_tokens until the
 * end of generation or the context. `n` other than 1 is refused (one choice per request).
 */
#include "server/oai.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "sample/grammar.h"
#include "server/tools.h"
#include "server/schema.h"
#include "tokenizer/vocab.h"

static int fail(oai_error *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(oai_error *e, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    return ZL_EINVAL;
}

/* A number field in [lo, hi] (absent or null: *out unchanged). */
static int get_num(json_t *root, const char *key, double lo, double hi, float *out, oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return ZL_OK;
    if (!json_is_number(v))
        return fail(e, key, "'%s' must be a number", key);
    const double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return fail(e, key, "'%s' = %g is out of range [%g, %g]", key, d, lo, hi);
    *out = (float)d;
    return ZL_OK;
}

static int get_int(json_t *root, const char *key, long long lo, long long hi, long long *out, bool *present,
                   oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (present)
        *present = false;
    if (!v || json_is_null(v))
        return ZL_OK;
    if (!json_is_integer(v))
        return fail(e, key, "'%s' must be an integer", key);
    const long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(e, key, "'%s' = %lld is out of range [%lld, %lld]", key, x, lo, hi);
    *out = x;
    if (present)
        *present = true;
    return ZL_OK;
}

static int get_bool(json_t *root, const char *key, bool *out, oai_error *e)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return ZL_OK;
    if (!json_is_boolean(v))
        return fail(e, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return ZL_OK;
}

/* Message content: a string, or an array of {"type": "text", "text": ...} parts (joined). *out malloc'd. */
static int message_text(json_t *content, size_t i, char **out, oai_error *e)
{
    if (json_is_string(content)) {
        *out = strdup(json_string_value(content));
        return *out ? ZL_OK : fail(e, "messages", "out of memory");
    }
    if (!json_is_array(content))
        return fail(e, "messages", "messages[%zu].content must be a string or an array of text parts", i);
    size_t len = 0, j;
    json_t *part;
    json_array_foreach(content, j, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text))
            return fail(e, "messages", "messages[%zu].content[%zu]: only {\"type\": \"text\", \"text\": ...} parts "
                        "are supported", i, j);
        len += json_string_length(text);
    }
    char *s = malloc(len + 1);
    if (!s)
        return fail(e, "messages", "out of memory");
    size_t at = 0;
    json_array_foreach(content, j, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = 0;
    *out = s;
    return ZL_OK;
}

/* An assistant message's tool_calls into m->calls (malloc'd; names, ids and argument strings borrowed from the
 * request; arguments sent as an object are written out as JSON text, kept in keep). */
static int message_calls(json_t *calls, size_t i, zl_chat_msg *m, json_t **keep, oai_error *e)
{
    const size_t n = json_array_size(calls);
    if (n > 128)
        return fail(e, "messages", "messages[%zu]: %zu tool calls (at most 128)", i, n);
    zl_chat_call *c = calloc(n, sizeof *c);
    if (!c || !*keep) {
        free(c);
        return fail(e, "messages", "out of memory");
    }
    m->calls = c;
    m->n_calls = n;
    for (size_t k = 0; k < n; k++) {
        json_t *call = json_array_get(calls, k), *f = json_object_get(call, "function");
        json_t *id = json_object_get(call, "id"), *name = json_object_get(f, "name");
        json_t *args = json_object_get(f, "arguments");
        if (!json_is_object(f) || !json_is_string(name) || (id && !json_is_string(id) && !json_is_null(id)))
            return fail(e, "messages", "messages[%zu].tool_calls[%zu] must be {\"id\": ..., \"type\": "
                        "\"function\", \"function\": {\"name\": ..., \"arguments\": ...}}", i, k);
        c[k].id = json_string_value(id);
        c[k].name = json_string_value(name);
        if (json_is_string(args)) {
            c[k].arguments = json_string_value(args);
        } else if (!args || json_is_object(args)) {
            json_t *s = json_string_nocheck("{}");
            char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
            if (text) {
                json_string_set(s, text);
                free(text);
            }
            if (!s || json_array_append_new(*keep, s))
                return fail(e, "messages", "out of memory");
            c[k].arguments = json_string_value(s);
        } else {
            return fail(e, "messages", "messages[%zu].tool_calls[%zu].function.arguments must be a JSON string", i,
                        k);
        }
    }
    return ZL_OK;
}

static int chat_prompt(const zl_model *m, const zl_chat_tmpl *tmpl, json_t *root, bool special_in_content,
                       oai_request *out, oai_error *e)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return fail(e, "messages", "'messages' must be a non-empty array");
    const size_t n = json_array_size(msgs);
    if (n > 4096)
        return fail(e, "messages", "%zu messages (at most 4096)", n);
    zl_chat_msg *cm = calloc(n, sizeof *cm);
    char **texts = calloc(n, sizeof *texts);
    json_t *call_args = json_array(); /* arguments sent as objects, as JSON text (kept until rendered) */
    int rc = ZL_OK;
    if (!cm || !texts) {
        rc = fail(e, "messages", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(msgs, i);
        json_t *role = json_object_get(msg, "role");
        if (!json_is_object(msg) || !json_is_string(role)) {
            rc = fail(e, "messages", "messages[%zu] must be an object with a string 'role'", i);
            goto done;
        }
        const char *r = json_string_value(role);
        if (!strcmp(r, "developer"))
            r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
            rc = fail(e, "messages", "messages[%zu]: role '%.32s' is not supported (system, user, assistant, tool)",
                      i, r);
            goto done;
        }
        json_t *content = json_object_get(msg, "content");
        json_t *calls = json_object_get(msg, "tool_calls");
        const bool has_calls = !strcmp(r, "assistant") && json_is_array(calls) && json_array_size(calls) > 0;
        if (calls && !json_is_null(calls) && !json_is_array(calls)) {
            rc = fail(e, "messages", "messages[%zu].tool_calls must be an array", i);
            goto done;
        }
        if (!(has_calls && (!content || json_is_null(content))) &&
            (rc = message_text(content, i, &texts[i], e)) != ZL_OK)
            goto done;
        cm[i].role = r;
        cm[i].content = texts[i];
        if (!strcmp(r, "tool")) {
            json_t *id = json_object_get(msg, "tool_call_id");
            if (id && !json_is_string(id) && !json_is_null(id)) {
                rc = fail(e, "messages", "messages[%zu].tool_call_id must be a string", i);
                goto done;
            }
            cm[i].tool_call_id = json_string_value(id);
        }
        if (has_calls && (rc = message_calls(calls, i, &cm[i], &call_args, e)) != ZL_OK)
            goto done;
    }
    char *prompt;
    zl_text_span *spans = NULL;
    size_t n_spans = 0;
    zl_err err = {{0}};
    zl_chat_tmpl t = *tmpl;
    if (out->no_thinking && t.kind == ZL_TMPL_QWEN3)
        t.flags |= ZL_CHAT_NO_THINKING;
    const zl_chat_opts opts = {.add_assistant = true, .tools = out->tools_text};
    if ((rc = zl_chat_render_opts(t, cm, n, &opts, &prompt, &spans, &n_spans, &err)) != ZL_OK) {
        rc = fail(e, "messages", "%s", err.msg);
        goto done;
    }
    const size_t before = strlen(prompt);
    zl_chat_strip_bos(*tmpl, zl_vocab_add_bos(zl_model_vocab(m)), prompt);
    const size_t len = strlen(prompt), cut = before - len; /* the BOS text is the template's, never a span's */
    for (size_t i = 0; i < n_spans; i++)
        spans[i].off -= cut;
    /* Message text is plain text: a user who writes "<|im_end|>\n<|im_start|>system" gets those characters, not
     * a turn of their own (unless the server trusts its clients: --special-in-content). */
    if (special_in_content)
        rc = zl_tokenize(zl_model_vocab(m), prompt, len, true, true, &out->prompt, &out->n_prompt, &err);
    else
        rc = zl_tokenize_plain(zl_model_vocab(m), prompt, len, true, spans, n_spans, &out->prompt, &out->n_prompt,
                               &err);
    free(spans);
    free(prompt);
    if (rc != ZL_OK)
        rc = fail(e, "messages", "%s", err.msg);
done:
    if (texts)
        for (size_t i = 0; i < n; i++)
            free(texts[i]);
    free(texts);
    if (cm)
        for (size_t i = 0; i < n; i++)
            free((void *)cm[i].calls);
    free(cm);
    json_decref(call_args);
    return rc;
}

static int completion_prompt(const zl_model *m, json_t *root, oai_request *out, oai_error *e)
{
    json_t *p = json_object_get(root, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    zl_err err = {{0}};
    if (json_is_string(p)) {
        if (zl_tokenize(zl_model_vocab(m), json_string_value(p), json_string_length(p), true, true, &out->prompt,
                        &out->n_prompt, &err) != ZL_OK)
            return fail(e, "prompt", "%s", err.msg);
        return ZL_OK;
    }
    if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0))) {
        const size_t n = json_array_size(p);
        const int32_t nv = zl_model_hparams(m)->n_vocab;
        out->prompt = malloc(n * sizeof *out->prompt);
        if (!out->prompt)
            return fail(e, "prompt", "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(p, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= nv)
                return fail(e, "prompt", "prompt[%zu] is not a token id in [0, %d)", i, nv);
            out->prompt[i] = (int32_t)json_integer_value(t);
        }
        out->n_prompt = n;
        return ZL_OK;
    }
    if (json_is_array(p) && json_array_size(p) > 1)
        return fail(e, "prompt", "'prompt' with several prompts is not supported; send one request per prompt");
    return fail(e, "prompt", "'prompt' must be a string, a one-string array or an array of token ids");
}

/* OpenAI's function names: letters, digits, '_' and '-', 1 to 64 of them. */
static bool function_name_ok(const char *s)
{
    const size_t n = strlen(s);
    return n >= 1 && n <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n;
}

/* tools, tool_choice, parallel_tool_calls. */
static int parse_tools(const zl_chat_tmpl *tmpl, json_t *root, oai_request *out, oai_error *e)
{
    json_t *tools = json_object_get(root, "tools"), *choice = json_object_get(root, "tool_choice");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools))
            return fail(e, "tools", "'tools' must be an array of {\"type\": \"function\", \"function\": {...}}");
        if (json_array_size(tools) > 128)
            return fail(e, "tools", "%zu tools (at most 128)", json_array_size(tools));
        for (size_t i = 0; i < json_array_size(tools); i++) {
            json_t *t = json_array_get(tools, i), *type = json_object_get(t, "type");
            json_t *f = json_object_get(t, "function"), *name = json_object_get(f, "name");
            json_t *params = json_object_get(f, "parameters");
            if (!json_is_object(t) || (type && (!json_is_string(type) || strcmp(json_string_value(type), "function"))))
                return fail(e, "tools", "tools[%zu]: only {\"type\": \"function\", ...} tools are supported", i);
            if (!json_is_object(f) || !json_is_string(name) || !function_name_ok(json_string_value(name)))
                return fail(e, "tools", "tools[%zu].function.name must be 1 to 64 letters, digits, '_', '-' or '.'",
                            i);
            if (params && !json_is_object(params) && !json_is_null(params))
                return fail(e, "tools", "tools[%zu].function.parameters must be a JSON Schema object", i);
            for (size_t k = 0; k < i; k++)
                if (!strcmp(json_string_value(json_object_get(json_object_get(json_array_get(tools, k), "function"),
                                                              "name")),
                            json_string_value(name)))
                    return fail(e, "tools", "tools[%zu]: a second function named '%s'", i, json_string_value(name));
        }
    }
    const bool have = json_array_size(tools) > 0;
    enum { AUTO, NONE, REQUIRED, NAMED };
    int mode = AUTO;
    const char *named = NULL;
    if (json_is_string(choice)) {
        const char *c = json_string_value(choice);
        mode = !strcmp(c, "auto") ? AUTO : !strcmp(c, "none") ? NONE : !strcmp(c, "required") ? REQUIRED : -1;
        if (mode < 0)
            return fail(e, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or "
                        "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    } else if (choice && !json_is_null(choice)) {
        named = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        if (!json_is_object(choice) || !named)
            return fail(e, "tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or "
                        "{\"type\": \"function\", \"function\": {\"name\": ...}}");
        mode = NAMED;
    }
    if ((mode == REQUIRED || mode == NAMED) && !have)
        return fail(e, "tool_choice", "'tool_choice' %s needs 'tools'", mode == NAMED ? "naming a function" :
                    "\"required\"");
    bool parallel = true;
    int rc = get_bool(root, "parallel_tool_calls", &parallel, e);
    if (rc != ZL_OK)
        return rc;
    if (!have || mode == NONE) /* "none": the model is not shown the tools, and its reply is text */
        return ZL_OK;
    out->tools_text = json_dumps(tools, JSON_COMPACT);
    if (!out->tools_text)
        return fail(e, "tools", "out of memory");
    out->tools_on = true;
    out->tool_fmt = zl_chat_tools_format(*tmpl);
    out->parallel_calls = parallel;
    out->tools_forced = mode != AUTO;
    if (out->tools_forced) {
        if (out->rp.grammar)
            return fail(e, "tool_choice", "'tool_choice' %s and 'response_format' / 'grammar' together: give one",
                        mode == NAMED ? "naming a function" : "\"required\"");
        char why[256];
        if (!(out->grammar = oai_tools_grammar(out->tool_fmt, tools, named, parallel, why, sizeof why)))
            return fail(e, "tool_choice", "%s", why);
        out->rp.grammar = out->grammar;
        out->rp.grammar_len = strlen(out->grammar);
    }
    /* Mistral's [TOOL_CALLS] is a control token, which replies otherwise leave out */
    out->rp.special_text = out->tool_fmt == ZL_TOOLFMT_MISTRAL;
    return ZL_OK;
}

int oai_parse(const zl_model *m, const zl_chat_tmpl *tmpl, oai_kind kind, json_t *root, const oai_limits *lim,
              uint64_t seed_default, oai_request *out, oai_error *e)
{
    const int32_t n_ctx = lim->n_ctx;
    memset(out, 0, sizeof *out);
    out->kind = kind;
    e->msg[0] = e->param[0] = 0;
    if (!json_is_object(root))
        return fail(e, NULL, "the request body must be a JSON object");
    zl_req_params *rp = &out->rp;
    zl_req_params_init(rp);
    rp->sampling.seed = seed_default;
    int rc;
    long long v;
    bool present;
#define TRY(x)                                                                                                  \
    do {                                                                                                        \
        if ((rc = (x)) != ZL_OK)                                                                                \
            goto fail;                                                                                          \
    } while (0)

    json_t *model = json_object_get(root, "model");
    if (model && !json_is_string(model) && !json_is_null(model))
        TRY(fail(e, "model", "'model' must be a string"));
    TRY(get_int(root, "n", 1, 1 << 20, &v, &present, e));
    if (present && v != 1)
        TRY(fail(e, "n", "'n' = %lld: this server returns one choice per request (n = 1); send n requests", v));
    TRY(get_bool(root, "stream", &out->stream, e));
    json_t *ctk = json_object_get(root, "chat_template_kwargs");
    if (ctk && !json_is_null(ctk)) {
        if (!json_is_object(ctk))
            TRY(fail(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object"));
        bool thinking = true;
        TRY(get_bool(ctk, "enable_thinking", &thinking, e));
        out->no_thinking = !thinking;
    }
    /* OpenAI's reasoning_effort: the templates here have an on / off switch (Qwen3's enable_thinking), no levels,
     * so "none" turns thinking off and the levels leave it on; one that contradicts enable_thinking is refused. */
    json_t *effort = json_object_get(root, "reasoning_effort");
    if (effort && !json_is_null(effort)) {
        static const char *const levels[] = {"none", "minimal", "low", "medium", "high", "xhigh"};
        const char *lv = json_is_string(effort) ? json_string_value(effort) : "";
        size_t k = 0;
        while (k < sizeof levels / sizeof *levels && strcmp(lv, levels[k]))
            k++;
        if (k == sizeof levels / sizeof *levels)
            TRY(fail(e, "reasoning_effort", "'reasoning_effort' must be one of \"none\", \"minimal\", \"low\", "
                                            "\"medium\", \"high\", \"xhigh\""));
        const bool off = k == 0;
        const json_t *et = ctk && json_is_object(ctk) ? json_object_get(ctk, "enable_thinking") : NULL;
        if (et && json_is_boolean(et) && json_is_true(et) == off)
            TRY(fail(e, "reasoning_effort", "'reasoning_effort' \"%s\" contradicts chat_template_kwargs."
                                            "enable_thinking %s", lv, off ? "true" : "false"));
        out->no_thinking = off;
    }
    json_t *rf = json_object_get(root, "reasoning_format");
    if (rf && !json_is_null(rf)) {
        const char *fmt = json_is_string(rf) ? json_string_value(rf) : "";
        if (strcmp(fmt, "none") && strcmp(fmt, "deepseek") && strcmp(fmt, "auto"))
            TRY(fail(e, "reasoning_format", "'reasoning_format' must be \"none\", \"deepseek\" or \"auto\""));
        out->reasoning_off = !strcmp(fmt, "none");
        out->reasoning_on = !out->reasoning_off;
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            TRY(fail(e, "stream_options", "'stream_options' must be an object"));
        TRY(get_bool(so, "include_usage", &out->include_usage, e));
    }
    TRY(get_int(root, "max_tokens", 1, n_ctx, &v, &present, e));
    if (present)
        rp->max_tokens = (int32_t)v;
    TRY(get_int(root, "max_completion_tokens", 1, n_ctx, &v, &present, e));
    if (present)
        rp->max_tokens = (int32_t)v;
    if (lim->max_tokens > 0 && (rp->max_tokens <= 0 || rp->max_tokens > lim->max_tokens))
        rp->max_tokens = lim->max_tokens;
    TRY(get_num(root, "temperature", 0, 2, &rp->sampling.temp, e));
    TRY(get_num(root, "top_p", 0, 1, &rp->sampling.top_p, e));
    TRY(get_num(root, "min_p", 0, 1, &rp->sampling.min_p, e));
    TRY(get_num(root, "presence_penalty", -2, 2, &rp->sampling.presence_penalty, e));
    TRY(get_num(root, "frequency_penalty", -2, 2, &rp->sampling.frequency_penalty, e));
    TRY(get_num(root, "repeat_penalty", 0.01, 10, &rp->sampling.repeat_penalty, e));
    TRY(get_int(root, "top_k", 0, 1 << 20, &v, &present, e));
    if (present)
        rp->sampling.top_k = (int32_t)v;
    {
        json_t *sv = json_object_get(root, "seed");
        if (sv && !json_is_null(sv)) {
            /* The CLI's --seed rule too (tools/zili.c): -1 is random (the server's per-request seed), 0..2^63-1 */
            if (!json_is_integer(sv) || json_integer_value(sv) < -1)
                TRY(fail(e, "seed", "'seed' must be an integer in -1..9223372036854775807 (-1: random)"));
            if (json_integer_value(sv) >= 0)
                rp->sampling.seed = (uint64_t)json_integer_value(sv);
        }
    }
    TRY(get_bool(root, "ignore_eos", &rp->ignore_eos, e));

    /* Structured output: a GBNF grammar (llama.cpp's `grammar`), or response_format json_object (a built-in
     * grammar for one JSON object). The grammar is parsed at submit; its errors name the line and column. */
    json_t *gr = json_object_get(root, "grammar");
    if (gr && !json_is_null(gr)) {
        if (!json_is_string(gr))
            TRY(fail(e, "grammar", "'grammar' must be a string (GBNF)"));
        rp->grammar = json_string_value(gr);
        rp->grammar_len = json_string_length(gr);
    }
    json_t *rfmt = json_object_get(root, "response_format");
    if (rfmt && !json_is_null(rfmt)) {
        json_t *type = json_object_get(rfmt, "type");
        const char *tn = json_is_string(type) ? json_string_value(type) : NULL;
        if (!json_is_object(rfmt) || !tn)
            TRY(fail(e, "response_format", "'response_format' must be an object with a string 'type'"));
        if (!strcmp(tn, "json_object")) {
            if (rp->grammar)
                TRY(fail(e, "response_format", "'response_format' and 'grammar' together: give one"));
            rp->grammar = zl_grammar_json_object;
            rp->grammar_len = strlen(zl_grammar_json_object);
        } else if (!strcmp(tn, "json_schema")) {
            if (rp->grammar)
                TRY(fail(e, "response_format", "'response_format' and 'grammar' together: give one"));
            json_t *js = json_object_get(rfmt, "json_schema");
            json_t *sch = json_is_object(js) ? json_object_get(js, "schema") : NULL;
            if (!sch)
                TRY(fail(e, "response_format", "response_format json_schema needs 'json_schema': {'schema': ...}"));
            char why[256];
            if (!(out->grammar = oai_schema_grammar(sch, why, sizeof why)))
                TRY(fail(e, "response_format", "%s", why));
            rp->grammar = out->grammar;
            rp->grammar_len = strlen(out->grammar);
        } else if (strcmp(tn, "text")) {
            TRY(fail(e, "response_format", "response_format type '%.32s' is not one of text, json_object, json_schema",
                     tn));
        }
    }
    if (kind == OAI_CHAT)
        TRY(parse_tools(tmpl, root, out, e));

    json_t *stop = json_object_get(root, "stop");
    if (json_is_string(stop)) {
        if (json_string_length(stop) == 0)
            TRY(fail(e, "stop", "'stop' strings must not be empty"));
        rp->stop[rp->n_stop++] = json_string_value(stop);
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > ZL_REQ_MAX_STOP)
            TRY(fail(e, "stop", "at most %d stop strings", ZL_REQ_MAX_STOP));
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s) {
            if (!json_is_string(s) || json_string_length(s) == 0)
                TRY(fail(e, "stop", "stop[%zu] must be a non-empty string", i));
            if (strlen(json_string_value(s)) != json_string_length(s))
                TRY(fail(e, "stop", "stop[%zu] contains a NUL character", i));
            rp->stop[rp->n_stop++] = json_string_value(s);
        }
    } else if (stop && !json_is_null(stop)) {
        TRY(fail(e, "stop", "'stop' must be a string or an array of strings"));
    }

    json_t *lb = json_object_get(root, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb))
            TRY(fail(e, "logit_bias", "'logit_bias' must be an object of token id -> bias"));
        const size_t n = json_object_size(lb);
        const int32_t nv = zl_model_hparams(m)->n_vocab;
        if (n > (size_t)nv)
            TRY(fail(e, "logit_bias", "too many logit_bias entries"));
        out->bias = calloc(n ? n : 1, sizeof *out->bias);
        if (!out->bias)
            TRY(fail(e, "logit_bias", "out of memory"));
        const char *key;
        json_t *val;
        json_object_foreach(lb, key, val) {
            char *end;
            errno = 0;
            /* Digits only (an optional '-'): strtol alone would also take " 1" and "+1". */
            const bool digits = key[0] && strspn(key + (key[0] == '-'), "0123456789") == strlen(key + (key[0] == '-')) &&
                                key[key[0] == '-'];
            const long id = digits ? strtol(key, &end, 10) : 0;
            if (!digits || errno || end == key || *end)
                TRY(fail(e, "logit_bias", "logit_bias key '%.32s' is not a token id", key));
            if (id < 0 || id >= nv)
                TRY(fail(e, "logit_bias", "logit_bias: token id %ld is out of the vocabulary (0 .. %d)", id,
                         nv - 1));
            if (!json_is_number(val) || !(json_number_value(val) >= -100 && json_number_value(val) <= 100))
                TRY(fail(e, "logit_bias", "logit_bias[%ld] must be a number in [-100, 100]", id));
            const double b = json_number_value(val);
            out->bias[rp->n_bias].token = (int32_t)id;
            /* -100 bans the token, as OpenAI documents. */
            out->bias[rp->n_bias].bias = b <= -100 ? -INFINITY : (float)b;
            rp->n_bias++;
        }
        rp->bias = out->bias;
    }

    json_t *lp = json_object_get(root, "logprobs");
    if (kind == OAI_CHAT) {
        TRY(get_bool(root, "logprobs", &out->logprobs, e));
        TRY(get_int(root, "top_logprobs", 0, ZL_REQ_MAX_TOP_LOGPROBS, &v, &present, e));
        if (present) {
            if (!out->logprobs)
                TRY(fail(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true"));
            out->top_logprobs = (int32_t)v;
        }
    } else if (lp && !json_is_null(lp)) {
        if (json_is_boolean(lp)) {
            out->logprobs = json_is_true(lp);
        } else {
            TRY(get_int(root, "logprobs", 0, 5, &v, NULL, e));
            out->logprobs = true;
            out->top_logprobs = (int32_t)v;
        }
    }
    rp->logprobs = out->logprobs;
    rp->top_logprobs = out->top_logprobs;

    if (kind == OAI_CHAT)
        TRY(chat_prompt(m, tmpl, root, lim->special_in_content, out, e));
    else
        TRY(completion_prompt(m, root, out, e));
    if (out->n_prompt == 0)
        TRY(fail(e, kind == OAI_CHAT ? "messages" : "prompt", "the prompt is empty"));
    if (out->n_prompt >= (size_t)n_ctx)
        TRY(fail(e, kind == OAI_CHAT ? "messages" : "prompt",
                 "the prompt has %zu tokens; this server's context is %d tokens (one kept for the reply)",
                 out->n_prompt, n_ctx));
#undef TRY
    json_incref(root);
    out->root = root;
    return ZL_OK;
fail:
    oai_request_free(out);
    return rc;
}

int oai_parse_body(const zl_model *m, const zl_chat_tmpl *tmpl, oai_kind kind, const char *body, size_t len,
                   const oai_limits *lim, uint64_t seed_default, oai_request *out, oai_error *e)
{
    memset(out, 0, sizeof *out);
    e->msg[0] = e->param[0] = 0;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(e, NULL, "the body is not valid JSON (line %d, column %d): %s", je.line, je.column, je.text);
    const int rc = oai_parse(m, tmpl, kind, root, lim, seed_default, out, e);
    json_decref(root); /* out holds its own reference on success */
    return rc;
}

void oai_request_free(oai_request *r)
{
    free(r->prompt);
    free(r->bias);
    free(r->grammar);
    free(r->tools_text);
    if (r->root)
        json_decref(r->root);
    memset(r, 0, sizeof *r);
}

char *oai_error_json(const char *message, const char *type, const char *param, const char *code)
{
    json_t *err = json_object();
    json_object_set_new(err, "message", oai_string(message, strlen(message)));
    json_object_set_new(err, "type", json_string(type));
    json_object_set_new(err, "param", param && param[0] ? json_string(param) : json_null());
    json_object_set_new(err, "code", code ? json_string(code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* Length of the valid UTF-8 character at s[0..n), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    const unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

json_t *oai_string(const char *s, size_t n)
{
    char *buf = malloc(3 * n + 1);
    if (!buf)
        return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const size_t l = utf8_char((const unsigned char *)s + i, n - i);
        if (l == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, l);
            o += l;
            i += l;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j ? j : json_string("");
}

/* A log-probability as a JSON number: jansson has no -inf or NaN (json_real gives NULL and the key would vanish), so
 * a token the sampler had masked gets -9999.0, as OpenAI sends. */
static json_t *logprob_num(float x)
{
    return json_real(isfinite(x) ? (double)x : -9999.0);
}

static json_t *bytes_array(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

void oai_logprobs_append(const zl_model *m, oai_kind kind, const zl_token_logprob *lp, int32_t n, json_t **acc,
                         size_t *text_offset)
{
    const zl_vocab *v = zl_model_vocab(m);
    char piece[512];
    if (!*acc) {
        *acc = json_object();
        if (kind == OAI_CHAT) {
            json_object_set_new(*acc, "content", json_array());
        } else {
            json_object_set_new(*acc, "tokens", json_array());
            json_object_set_new(*acc, "token_logprobs", json_array());
            json_object_set_new(*acc, "top_logprobs", json_array());
            json_object_set_new(*acc, "text_offset", json_array());
        }
    }
    for (int32_t i = 0; i < n; i++) {
        int len = zl_token_to_piece(v, lp[i].token, false, piece, sizeof piece);
        if (len < 0)
            len = 0;
        if ((size_t)len > sizeof piece)
            len = (int)sizeof piece;
        if (kind == OAI_CHAT) {
            json_t *t = json_object();
            json_object_set_new(t, "token", oai_string(piece, (size_t)len));
            json_object_set_new(t, "logprob", logprob_num(lp[i].logprob));
            json_object_set_new(t, "bytes", bytes_array(piece, (size_t)len));
            json_t *top = json_array();
            for (int32_t k = 0; k < lp[i].n_top; k++) {
                char p2[512];
                int l2 = zl_token_to_piece(v, lp[i].top_token[k], false, p2, sizeof p2);
                if (l2 < 0)
                    l2 = 0;
                if ((size_t)l2 > sizeof p2)
                    l2 = (int)sizeof p2;
                json_t *o = json_object();
                json_object_set_new(o, "token", oai_string(p2, (size_t)l2));
                json_object_set_new(o, "logprob", logprob_num(lp[i].top_logprob[k]));
                json_object_set_new(o, "bytes", bytes_array(p2, (size_t)l2));
                json_array_append_new(top, o);
            }
            json_object_set_new(t, "top_logprobs", top);
            json_array_append_new(json_object_get(*acc, "content"), t);
        } else {
            json_array_append_new(json_object_get(*acc, "tokens"), oai_string(piece, (size_t)len));
            json_array_append_new(json_object_get(*acc, "token_logprobs"), logprob_num(lp[i].logprob));
            json_t *top = json_object();
            for (int32_t k = 0; k < lp[i].n_top; k++) {
                char p2[512];
                int l2 = zl_token_to_piece(v, lp[i].top_token[k], false, p2, sizeof p2 - 1);
                if (l2 < 0)
                    l2 = 0;
                if ((size_t)l2 > sizeof p2 - 1)
                    l2 = (int)sizeof p2 - 1;
                json_t *key = oai_string(p2, (size_t)l2);
                json_object_set_new(top, json_string_value(key), logprob_num(lp[i].top_logprob[k]));
                json_decref(key);
            }
            json_array_append_new(json_object_get(*acc, "top_logprobs"), top);
            json_array_append_new(json_object_get(*acc, "text_offset"), json_integer((json_int_t)*text_offset));
            *text_offset += (size_t)len;
        }
    }
}
