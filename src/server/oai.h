/*
 * oai.h - OpenAI request bodies to engine requests, and the JSON pieces of OpenAI responses.
 *
 * oai_parse validates a /v1/chat/completions or /v1/completions body (already checked to be JSON by jansson,
 * which also rejects invalid UTF-8) and produces the prompt tokens and zl_req_params. Every refusal names the
 * parameter and why, for an OpenAI error body with status 400.
 *
 * Threads: pure functions over immutable model data; called from HTTP threads.
 */
#ifndef ZL_OAI_H
#define ZL_OAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h"
#include "tokenizer/chat.h"

typedef enum oai_kind { OAI_CHAT = 1, OAI_COMPLETION = 2 } oai_kind;

typedef struct oai_request {
    oai_kind kind;
    int32_t *prompt; /* malloc'd */
    size_t n_prompt;
    zl_req_params rp; /* stop strings point into root */
    zl_logit_bias *bias;
    bool stream, include_usage;
    bool no_thinking;   /* chat_template_kwargs.enable_thinking false (templates with the switch: qwen3) */
    bool reasoning_off; /* reasoning_format "none": a reasoning model's <think> text stays in content */
    char *grammar;      /* the grammar made from a json_schema (malloc'd; rp.grammar points to it) */
    bool reasoning_on;  /* reasoning_format "deepseek" / "auto": it goes to reasoning_content (server default: on) */
    bool logprobs;
    int32_t top_logprobs;
    /* tools (chat): the tools as JSON text for the template (malloc'd; NULL: none, or tool_choice "none") */
    char *tools_text;
    bool tools_on;       /* the reply is parsed for tool calls (server/tools.h), in tool_fmt */
    bool tools_forced;   /* tool_choice "required" or a named function: grammar (above) makes the reply calls */
    bool parallel_calls; /* parallel_tool_calls (default true): more than one call may come */
    zl_chat_tool_format tool_fmt;
    json_t *root;
} oai_request;

typedef struct oai_error {
    char msg[512];
    char param[64]; /* the offending parameter, or "" */
} oai_error;

/* The server's bounds on requests. */
typedef struct oai_limits {
    int32_t n_ctx;           /* the context per sequence: a prompt must leave one token for the reply */
    int32_t max_tokens;      /* max_tokens when a request sets none, and the most it may set (larger is lowered to
                              * it; the reply then ends with finish_reason "length") */
    bool special_in_content; /* chat message text may spell special tokens that become control tokens (trusted
                              * clients only); otherwise message text is always plain text */
} oai_limits;

/* Parses root (a JSON value; borrowed reference is taken by out on success). Returns ZL_OK, or ZL_EINVAL with
 * e filled. tmpl: the chat template for OAI_CHAT. */
int oai_parse(const zl_model *m, const zl_chat_tmpl *tmpl, oai_kind kind, json_t *root, const oai_limits *lim,
              uint64_t seed_default, oai_request *out, oai_error *e);
/* The HTTP body path without a socket: body[0..len) (any bytes) parsed as JSON the way the server does (duplicate
 * keys refused; jansson refuses invalid UTF-8), then oai_parse. A body that is not JSON, or not an object, is
 * ZL_EINVAL with e naming the line and column. Fuzzing and tests call this; serve.c calls the same steps. */
int oai_parse_body(const zl_model *m, const zl_chat_tmpl *tmpl, oai_kind kind, const char *body, size_t len,
                   const oai_limits *lim, uint64_t seed_default, oai_request *out, oai_error *e);
void oai_request_free(oai_request *r);

/* {"error": {"message", "type", "param", "code"}} as a malloc'd string (caller frees). */
char *oai_error_json(const char *message, const char *type, const char *param, const char *code);

/* A JSON string of arbitrary bytes: invalid UTF-8 becomes U+FFFD (jansson refuses invalid strings). */
json_t *oai_string(const char *s, size_t n);

/* Log-probability JSON for generated tokens: chat ({"content": [...]}) or completion (tokens / token_logprobs /
 * top_logprobs / text_offset) shape. Appends to *acc (an object built across calls; created when NULL). */
void oai_logprobs_append(const zl_model *m, oai_kind kind, const zl_token_logprob *lp, int32_t n, json_t **acc,
                         size_t *text_offset);

#endif
