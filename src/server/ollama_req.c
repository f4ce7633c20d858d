/*
 * ollama_req.c - Ollama's request bodies as the OpenAI bodies they mean, and the names Ollama gives models
 * (ollama.h). Pure functions; the routes are in ollama.c.
 *
 * The rewrite (ol_to_openai):
 *   chat:     messages (images refused: no vision encoder; tool messages' tool_name kept as tool_call_id),
 *             tools as they are (the same shape as OpenAI's);
 *   generate: system + prompt as a two-message chat, or with raw a completion of the prompt as written; suffix,
 *             template and a non-empty context are refused (not supported here);
 *   both:     options.{temperature, top_p, top_k, min_p, seed, stop, repeat_penalty, presence_penalty,
 *             frequency_penalty} under their own names, options.num_predict as max_tokens (<= 0: the server's
 *             limit; more than the context: refused), other options ignored as Ollama ignores options it does not
 *             know; format "json" as response_format json_object, a schema object as json_schema; think false as
 *             enable_thinking false, true (or a level string) as reasoning_format deepseek; stream (default true);
 *             keep_alive checked for type and otherwise ignored (the model stays loaded).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/ollama.h"

static json_t *fail(char *why, size_t cap, json_t *o, const char *msg)
{
    snprintf(why, cap, "%s", msg);
    json_decref(o);
    return NULL;
}

/* Options copied under the same name; the ranges and types are oai_parse's, whose errors name the key. */
static const char *const k_same_options[] = {"temperature", "top_p", "top_k", "min_p", "seed", "stop",
                                             "repeat_penalty", "presence_penalty", "frequency_penalty"};

static bool copy_options(json_t *opts, json_t *o, int32_t n_ctx, char *why, size_t cap)
{
    if (!opts || json_is_null(opts))
        return true;
    if (!json_is_object(opts)) {
        snprintf(why, cap, "'options' must be an object");
        return false;
    }
    for (size_t i = 0; i < sizeof k_same_options / sizeof *k_same_options; i++) {
        json_t *v = json_object_get(opts, k_same_options[i]);
        if (v && !json_is_null(v))
            json_object_set(o, k_same_options[i], v);
    }
    json_t *np = json_object_get(opts, "num_predict");
    if (np && !json_is_null(np)) {
        if (!json_is_integer(np)) {
            snprintf(why, cap, "options.num_predict must be an integer");
            return false;
        }
        const json_int_t n = json_integer_value(np);
        if (n > n_ctx) {
            snprintf(why, cap, "options.num_predict = %lld is more than this server's context (%d tokens)",
                     (long long)n, n_ctx);
            return false;
        }
        if (n > 0) /* Ollama's -1 (no limit), -2 (fill the context) and 0: the server's own limit */
            json_object_set_new(o, "max_tokens", json_integer(n));
    }
    return true;
}

/* Ollama's messages as OpenAI's: images refused, tool_name kept as the tool result's tool_call_id. */
static json_t *copy_messages(json_t *msgs, char *why, size_t cap)
{
    if (!json_is_array(msgs)) {
        snprintf(why, cap, "'messages' must be an array of {\"role\": ..., \"content\": ...}");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            snprintf(why, cap, "messages[%zu] must be an object", i);
            json_decref(out);
            return NULL;
        }
        json_t *img = json_object_get(m, "images");
        if (img && !json_is_null(img) && !(json_is_array(img) && json_array_size(img) == 0)) {
            snprintf(why, cap, "messages[%zu].images: this model has no vision encoder (text only)", i);
            json_decref(out);
            return NULL;
        }
        json_t *c = json_copy(m); /* shallow */
        json_object_del(c, "images");
        json_object_del(c, "thinking"); /* earlier reasoning is not shown to the model again, as Ollama does */
        json_t *tn = json_object_get(c, "tool_name");
        if (json_is_string(tn) && !json_object_get(c, "tool_call_id"))
            json_object_set(c, "tool_call_id", tn);
        if (!json_object_get(c, "content") && !json_object_get(c, "tool_calls"))
            json_object_set_new(c, "content", json_string(""));
        json_array_append_new(out, c);
    }
    return out;
}

json_t *ol_to_openai(json_t *root, bool chat, int32_t n_ctx, bool *raw, char *why, size_t cap)
{
    *raw = false;
    why[0] = 0;
    json_t *o = json_object();
    json_t *v = json_object_get(root, "stream");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        return fail(why, cap, o, "'stream' must be true or false");
    json_object_set_new(o, "stream", json_boolean(!v || json_is_null(v) || json_is_true(v)));
    v = json_object_get(root, "keep_alive");
    if (v && !json_is_null(v) && !json_is_string(v) && !json_is_number(v))
        return fail(why, cap, o, "'keep_alive' must be a duration string (\"5m\") or a number of seconds");
    if (!copy_options(json_object_get(root, "options"), o, n_ctx, why, cap)) {
        json_decref(o);
        return NULL;
    }
    v = json_object_get(root, "format");
    if (json_is_string(v) && !strcmp(json_string_value(v), "json")) {
        json_t *rf = json_object();
        json_object_set_new(rf, "type", json_string("json_object"));
        json_object_set_new(o, "response_format", rf);
    } else if (json_is_object(v)) {
        json_t *rf = json_object(), *js = json_object();
        json_object_set(js, "schema", v);
        json_object_set_new(js, "name", json_string("format"));
        json_object_set_new(rf, "type", json_string("json_schema"));
        json_object_set_new(rf, "json_schema", js);
        json_object_set_new(o, "response_format", rf);
    } else if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0)) {
        return fail(why, cap, o, "'format' must be \"json\" or a JSON schema object");
    }
    v = json_object_get(root, "think");
    if (v && !json_is_null(v)) {
        if (json_is_false(v)) {
            json_t *k = json_object();
            json_object_set_new(k, "enable_thinking", json_false());
            json_object_set_new(o, "chat_template_kwargs", k);
        } else if (json_is_true(v) || json_is_string(v)) { /* gpt-oss's levels ("high", ...): thinking on */
            json_object_set_new(o, "reasoning_format", json_string("deepseek"));
        } else {
            return fail(why, cap, o, "'think' must be true, false or a level (\"low\", \"medium\", \"high\")");
        }
    }
    if (chat) {
        json_t *msgs = copy_messages(json_object_get(root, "messages"), why, cap);
        if (!msgs) {
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "messages", msgs);
        v = json_object_get(root, "tools");
        if (v && !json_is_null(v))
            json_object_set(o, "tools", v);
        return o;
    }
    json_t *prompt = json_object_get(root, "prompt"), *sys = json_object_get(root, "system");
    if (prompt && !json_is_null(prompt) && !json_is_string(prompt))
        return fail(why, cap, o, "'prompt' must be a string");
    if (sys && !json_is_null(sys) && !json_is_string(sys))
        return fail(why, cap, o, "'system' must be a string");
    v = json_object_get(root, "raw");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        return fail(why, cap, o, "'raw' must be true or false");
    *raw = json_is_true(v);
    v = json_object_get(root, "images");
    if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
        return fail(why, cap, o, "'images': this model has no vision encoder (text only)");
    v = json_object_get(root, "suffix");
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
        return fail(why, cap, o, "'suffix' (fill in the middle) is not supported by this server");
    v = json_object_get(root, "template");
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
        return fail(why, cap, o, "'template': this server renders the model's own chat template only");
    v = json_object_get(root, "context");
    if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
        return fail(why, cap, o, "'context' is not supported by this server: send the conversation to /api/chat");
    if (*raw) {
        json_object_set_new(o, "prompt", json_is_string(prompt) ? json_incref(prompt) : json_string(""));
        return o;
    }
    json_t *msgs = json_array();
    if (json_is_string(sys)) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("system"));
        json_object_set(m, "content", sys);
        json_array_append_new(msgs, m);
    }
    json_t *m = json_object();
    json_object_set_new(m, "role", json_string("user"));
    json_object_set_new(m, "content", json_is_string(prompt) ? json_incref(prompt) : json_string(""));
    json_array_append_new(msgs, m);
    json_object_set_new(o, "messages", msgs);
    return o;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Names */

void ol_model_name(const char *model_id, char *out, size_t cap)
{
    size_t n = strlen(model_id);
    if (n > 5 && !strcasecmp(model_id + n - 5, ".gguf"))
        n -= 5;
    snprintf(out, cap, "%.*s:latest", (int)n, model_id);
}

bool ol_name_matches(const char *model_id, const char *name)
{
    size_t n = strlen(name);
    if (n > 7 && !strcasecmp(name + n - 7, ":latest"))
        n -= 7;
    const size_t m = strlen(model_id);
    if (n == m && !strncasecmp(name, model_id, n))
        return true;
    return m > 5 && !strcasecmp(model_id + m - 5, ".gguf") && n == m - 5 && !strncasecmp(name, model_id, n);
}

const char *ol_file_type_name(long long t)
{
    /* llama.cpp's llama_ftype numbering (the values missing were removed types) */
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",    [7] = "Q8_0",    [8] = "Q5_0",
        [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S",
        [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K",   [19] = "IQ2_XXS", [20] = "IQ2_XS",
        [21] = "Q2_K_S", [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S",
        [27] = "IQ3_M",  [28] = "IQ2_S",  [29] = "IQ2_M",  [30] = "IQ4_XS", [31] = "IQ1_M",  [32] = "BF16",
        [36] = "TQ1_0",  [37] = "TQ2_0",
    };
    if (t < 0 || t >= (long long)(sizeof names / sizeof *names) || !names[t])
        return "unknown";
    return names[t];
}

void ol_param_size(unsigned long long n, char *out, size_t cap)
{
    if (n >= 1000000000ull) {
        const double b = (double)n / 1e9;
        if (n % 1000000000ull == 0)
            snprintf(out, cap, "%.0fB", b);
        else
            snprintf(out, cap, "%.1fB", b);
    } else if (n >= 1000000ull) {
        const double mm = (double)n / 1e6;
        if (n % 1000000ull == 0)
            snprintf(out, cap, "%.0fM", mm);
        else
            snprintf(out, cap, "%.2fM", mm);
    } else if (n >= 1000ull) {
        snprintf(out, cap, "%.0fK", (double)n / 1e3);
    } else {
        snprintf(out, cap, "%llu", n);
    }
}
