/*
 * tools.h - tool calls out of a model's reply, and the grammars that make a reply a call (tool_choice).
 *
 * The parser reads the reply's text as it streams (chunks split anywhere, even inside a UTF-8 character or a
 * marker) and hands back content and complete calls. Each call is held until it is complete, then given whole
 * (name and arguments), so a stream and the whole reply give the same calls by construction. Formats
 * (zl_chat_tool_format): Hermes <tool_call>{...}</tool_call> blocks, Llama 3.1's bare {"name", "parameters"}
 * object at the start of the reply, Mistral's [TOOL_CALLS][...] list, DeepSeek's tool-call tokens. Text before
 * the first call is content (trailing whitespace dropped); text after the calls is content too. A call that does
 * not parse (bad JSON, no name, a block never closed) is given back as content, from its marker on, and nothing
 * after it is taken for a call. Arguments are the model's own JSON text, checked to be JSON.
 *
 * forced (tool_choice "required" or a named function): the reply is calls from its first byte (the grammar of
 * oai_tools_grammar made it so), so no start marker is needed (Mistral's control token [TOOL_CALLS] never comes
 * out of a grammar), and a last call cut short by max_tokens is left out rather than given back as content.
 *
 * Threads: a parser belongs to one request.
 */
#ifndef ZL_TOOLS_H
#define ZL_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/chat.h"

typedef struct oai_call {
    char *name; /* malloc'd, NUL-terminated */
    char *args; /* the arguments' JSON text, malloc'd, NUL-terminated */
} oai_call;

/* What one feed gave: appended to, never cleared by the parser. */
typedef struct oai_tool_out {
    char *content; /* malloc'd; n_content bytes (NUL-terminated) */
    size_t n_content, cap_content;
    oai_call *calls;
    size_t n_calls, cap_calls;
    bool oom;
} oai_tool_out;

typedef struct oai_tool_parser {
    zl_chat_tool_format fmt;
    int state;    /* content, calls or text (after a call that did not parse) */
    bool started; /* a byte other than whitespace has been seen (Llama 3's call only opens a reply) */
    bool after_unit; /* a unit of calls has been read (text after it loses its leading whitespace) */
    bool forced;  /* the reply is calls only (tool_choice): a last call cut short is dropped, not content */
    char *pend;   /* bytes not yet decided */
    size_t n_pend, cap_pend;
    bool oom;
} oai_tool_parser;

void oai_tools_init(oai_tool_parser *p, zl_chat_tool_format fmt, bool forced);
/* Feeds s[0..n); final: the reply is over (everything left is decided). */
void oai_tools_feed(oai_tool_parser *p, const char *s, size_t n, bool final, oai_tool_out *out);
void oai_tools_free(oai_tool_parser *p);
void oai_tool_out_free(oai_tool_out *o);

/* The GBNF grammar for a reply of calls only: to the function named `name`, or (name NULL) to any of tools (the
 * request's tools array), one call or (parallel) one or more. Arguments follow each function's parameters
 * schema (server/schema.h; what it cannot express allows any object). NULL with why filled when the name is not
 * among the tools or memory runs out. */
char *oai_tools_grammar(zl_chat_tool_format fmt, json_t *tools, const char *name, bool parallel, char *why,
                        size_t why_cap);

/* A new call id into buf (at least 32 bytes): "call_" and 24 letters and digits, or 9 letters and digits for
 * Mistral, whose templates refuse other ids. *rng: the request's state (any seed). */
void oai_tools_call_id(zl_chat_tool_format fmt, uint64_t *rng, char *buf);

#endif
