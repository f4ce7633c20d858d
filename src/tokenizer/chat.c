/*
 * chat.c - chat template recognition and native rendering (see chat.h for the families).
 *
 * Recognition only searches the template text for fixed strings (memmem over the given length: linear, bounded by
 * the text). The few things it extracts (ChatML's default system prompt, Llama 3.1's default date, Gemma's
 * separator after a folded system message) must each sit alone inside one quoted string literal of bounded
 * length, with only simple escapes; ChatML's default also needs the template's test on messages[0]'s role.
 * Nothing from the template is ever evaluated. A template that has a family's markers but not the forms zili
 * renders is refused (ZL_EUNSUPPORTED) rather than rendered differently.
 *
 * Rendering follows each official template as jinja2 runs it (the .jinja and .expected files of tests/data/chat):
 * jinja's "trim" is Python's str.strip(), so trim() here strips the same Unicode whitespace.
 * Pure functions; no state.
 */
#include "tokenizer/chat.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/pyjson.h"

static const char IM_START[] = "<|im_start|>";
#define KNOWN_NAMES                                                                                            \
    "chatml, qwen2.5, qwen3, llama3, llama3.1, gemma, deepseek-r1, deepseek-v3, mistral, mistral-v3, "           \
    "mistral-nemo, mistral-v7"
static const char IM_END[] = "<|im_end|>";

/* Ways a template may test whether the conversation starts with a system message. */
static const char *const first_role_tests[] = {
    "messages[0]['role'] != 'system'", "messages[0]['role'] == 'system'", "messages[0][\"role\"] != \"system\"",
    "messages[0][\"role\"] == \"system\"", "messages[0].role != 'system'", "messages[0].role == 'system'",
    "messages[0].role != \"system\"", "messages[0].role == \"system\"",
};

static bool contains(const char *t, size_t n, const char *s)
{
    return memmem(t, n, s, strlen(s)) != NULL;
}

/* At t[i..n): a newline, real or written "\n" inside the literal; returns its length or 0. */
static size_t newline_at(const char *t, size_t n, size_t i)
{
    if (i < n && t[i] == '\n')
        return 1;
    if (i + 1 < n && t[i] == '\\' && t[i + 1] == 'n')
        return 2;
    return 0;
}

enum { NOT_FIXED = 0, FIXED = 1, TOO_LONG = 2 };

/* Tries to read q'<|im_start|>system\nTEXT<|im_end|>\n'q with the opening quote at t[p - 1].
 * FIXED: TEXT (unescaped) is in out. TOO_LONG: it is a fixed text, but does not fit in cap. */
static int fixed_system_at(const char *t, size_t n, size_t p, char *out, size_t cap)
{
    if (p == 0 || (t[p - 1] != '\'' && t[p - 1] != '"'))
        return NOT_FIXED;
    char q = t[p - 1];
    size_t i = p + strlen(IM_START) + strlen("system");
    size_t nl = newline_at(t, n, i);
    if (!nl)
        return NOT_FIXED;
    i += nl;
    size_t o = 0;
    bool too_long = false;
    while (i < n) {
        if (n - i >= strlen(IM_END) && memcmp(t + i, IM_END, strlen(IM_END)) == 0)
            break;
        char c = t[i];
        if (c == q || c == '{' || c == '}' || c == '%')
            return NOT_FIXED; /* the literal ends, or template syntax: not a fixed text */
        if (c == '\\') {
            if (i + 1 >= n)
                return NOT_FIXED;
            char e = t[i + 1];
            c = e == 'n' ? '\n' : e == 't' ? '\t' : (e == '\\' || e == '\'' || e == '"') ? e : 0;
            if (!c)
                return NOT_FIXED;
            i++;
        }
        if (o + 1 >= cap) { /* longer than we keep: scan on to see whether it is a fixed text at all */
            too_long = true;
            o = 0;
        }
        out[o++] = c;
        i++;
    }
    if (i >= n || (o == 0 && !too_long))
        return NOT_FIXED;
    i += strlen(IM_END);
    nl = newline_at(t, n, i);
    if (!nl || i + nl >= n || t[i + nl] != q)
        return NOT_FIXED;
    if (too_long)
        return TOO_LONG;
    out[o] = 0;
    return FIXED;
}

static int detect_chatml(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    /* Qwen3: reasoning split out of assistant turns, kept after the last user query. */
    if (contains(text, len, "</think>") && contains(text, len, "last_query_index") &&
        contains(text, len, "reasoning_content")) {
        out->kind = ZL_TMPL_QWEN3;
        return ZL_OK;
    }
    out->kind = ZL_TMPL_CHATML;

    char cand[ZL_CHAT_SYSTEM_MAX];
    const char *needle = "<|im_start|>system";
    size_t nl = strlen(needle);
    for (size_t p = 0; p + nl <= len;) {
        const char *m = memmem(text + p, len - p, needle, nl);
        if (!m)
            break;
        size_t at = (size_t)(m - text);
        int fx = fixed_system_at(text, len, at, cand, sizeof cand);
        if (fx == TOO_LONG)
            return zl_err_set(err, ZL_EUNSUPPORTED, "chat template: fixed system prompt longer than %d bytes",
                              ZL_CHAT_SYSTEM_MAX - 1);
        if (fx == FIXED) {
            if (out->default_system[0] && strcmp(out->default_system, cand) != 0)
                return zl_err_set(err, ZL_EUNSUPPORTED,
                                  "chat template: ChatML with two different fixed system prompts; name a template");
            memcpy(out->default_system, cand, strlen(cand) + 1);
        }
        p = at + nl;
    }
    if (out->default_system[0]) {
        bool tested = false;
        for (size_t k = 0; k < sizeof first_role_tests / sizeof first_role_tests[0] && !tested; k++)
            tested = contains(text, len, first_role_tests[k]);
        if (!tested) {
            memset(out, 0, sizeof *out);
            return zl_err_set(err, ZL_EUNSUPPORTED,
                              "chat template: ChatML with a fixed system prompt under a condition zili does not "
                              "recognise; name a template");
        }
    }
    return ZL_OK;
}

/* Reads the quoted literal whose opening quote is t[p - 1] (t[p] is its first character) into out (cap bytes, NUL
 * included), decoding \n, \t, \\ and quote escapes. Returns the index just past its closing quote, or 0 if it does
 * not close within cap - 1 characters, or holds template syntax or another escape. */
static size_t literal_at(const char *t, size_t n, size_t p, char *out, size_t cap)
{
    if (p == 0 || (t[p - 1] != '\'' && t[p - 1] != '"'))
        return 0;
    const char q = t[p - 1];
    size_t o = 0;
    for (size_t i = p; i < n; i++) {
        char c = t[i];
        if (c == q) {
            out[o] = 0;
            return i + 1;
        }
        if (c == '{' || c == '}' || c == '%')
            return 0;
        if (c == '\\') {
            if (i + 1 >= n)
                return 0;
            const char e = t[++i];
            c = e == 'n' ? '\n' : e == 't' ? '\t' : (e == '\\' || e == '\'' || e == '"') ? e : 0;
            if (!c)
                return 0;
        }
        if (o + 1 >= cap)
            return 0;
        out[o++] = c;
    }
    return 0;
}

/* The literal right after the first occurrence of prefix (which must end with its opening quote). */
static bool literal_after(const char *t, size_t n, const char *prefix, char *out, size_t cap)
{
    const char *m = memmem(t, n, prefix, strlen(prefix));
    return m && literal_at(t, n, (size_t)(m - t) + strlen(prefix), out, cap) != 0;
}

static int unsupported(zl_chat_tmpl *out, zl_err *err, const char *family, const char *what)
{
    memset(out, 0, sizeof *out);
    return zl_err_set(err, ZL_EUNSUPPORTED, "chat template: %s template %s; name one with --chat-template", family,
                      what);
}

static int detect_llama3(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    out->kind = ZL_TMPL_LLAMA3;
    if (!contains(text, len, "Cutting Knowledge Date"))
        return ZL_OK; /* Llama 3: messages only */
    /* 3.1 / 3.2 / 3.3: a system block with fixed lines and a date_string default. */
    if (!contains(text, len, "\"Cutting Knowledge Date: December 2023\\n\"") ||
        !contains(text, len, "\"Today Date: \" + date_string + \"\\n\\n\"") ||
        !literal_after(text, len, "set date_string = \"", out->date, sizeof out->date) || !out->date[0])
        return unsupported(out, err, "Llama 3", "with a system block zili does not know");
    out->flags |= ZL_CHAT_LLAMA3_SYSTEM;
    return ZL_OK;
}

static int detect_gemma(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    out->kind = ZL_TMPL_GEMMA;
    strcpy(out->sys_sep, "\n\n"); /* Gemma 3's; Gemma 2's template refuses system messages instead */
    if (contains(text, len, "first_user_prefix") &&
        !literal_after(text, len, "set first_user_prefix = messages[0]['content'] + '", out->sys_sep,
                       sizeof out->sys_sep))
        return unsupported(out, err, "Gemma", "folding the system message in a way zili does not know");
    return ZL_OK;
}

static int detect_deepseek(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    out->kind = ZL_TMPL_DEEPSEEK_R1;
    if (!contains(text, len, "</think>") && !contains(text, len, "is_last_user") && !contains(text, len, "thinking") &&
        contains(text, len, "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}") &&
        contains(text, len, "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}") &&
        contains(text, len, "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}")) {
        out->flags |= ZL_CHAT_DEEPSEEK_JOIN_SYSTEM | ZL_CHAT_DEEPSEEK_WHOLE_REPLY; /* V3 */
        return ZL_OK;
    }
    if (!contains(text, len, "content.split('</think>')[-1]") || contains(text, len, "enable_thinking") ||
        contains(text, len, "is_first_sp"))
        return unsupported(out, err, "DeepSeek", "other than V3's and the R1 distills'");
    if (contains(text, len, "'<｜Assistant｜><think>\\n'"))
        out->flags |= ZL_CHAT_THINK_PROMPT;
    return ZL_OK;
}

static int detect_mistral(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    out->kind = ZL_TMPL_MISTRAL;
    if (contains(text, len, "'[INST] ' + message['content'] + ' [/INST]'") &&
        contains(text, len, "message['content'] + eos_token") && !contains(text, len, "system_message"))
        return ZL_OK; /* v0.1 / v0.2 */
    if (!contains(text, len, "loop.last and system_message is defined"))
        return unsupported(out, err, "Mistral", "variant");
    out->flags |= ZL_CHAT_MISTRAL_V3;
    if (contains(text, len, "\"[INST] \" + message[\"content\"] + \"[/INST]\"")) {
        if (contains(text, len, "\" \" + message[\"content\"]|trim + eos_token"))
            out->flags |= ZL_CHAT_MISTRAL_TRIM;
        else if (!contains(text, len, "\" \" + message[\"content\"] + eos_token"))
            return unsupported(out, err, "Mistral v3", "variant");
        return ZL_OK;
    }
    if (contains(text, len, "\"[INST]\" + message[\"content\"] + \"[/INST]\"") &&
        contains(text, len, "{{- message[\"content\"] + eos_token")) {
        out->flags |= ZL_CHAT_MISTRAL_NOSPACE;
        return ZL_OK;
    }
    return unsupported(out, err, "Mistral v3", "variant");
}

/* Mistral v7: Large 2411's form, or Small 3.2's (default system text with the date, alternation check). */
static int detect_mistral_v7(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    out->kind = ZL_TMPL_MISTRAL_V7;
    if (contains(text, len, "'[INST] ' + message['content'] + '[/INST]'") &&
        contains(text, len, "'[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]'") &&
        contains(text, len, "' ' + message['content'] + eos_token") && !contains(text, len, "system_message") &&
        !contains(text, len, "system_prompt") && !contains(text, len, "loop_messages"))
        return ZL_OK; /* Large 2411: every message in order */
    if (!contains(text, len, "{{- '[SYSTEM_PROMPT]' + system_prompt + '[/SYSTEM_PROMPT]' }}") ||
        !contains(text, len, "{%- set system_prompt = messages[0]['content'] %}") ||
        !contains(text, len, "{%- set system_prompt = default_system_message %}") ||
        !contains(text, len, "(message[\"role\"] == \"user\") != (ns.index % 2 == 0)") ||
        !contains(text, len, "{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}") ||
        !contains(text, len, "{{- '[INST]' }}") || !contains(text, len, "{{- '[/INST]' }}") ||
        !contains(text, len, "{{- message['content'] + eos_token }}") ||
        !contains(text, len, "{%- set today = strftime_now(\"%Y-%m-%d\") %}"))
        return unsupported(out, err, "Mistral v7", "variant");
    /* The default: "A" + today + "B", both plain literals. */
    static const char prefix[] = "{%- set default_system_message = \"", mid[] = " + today + \"", end[] = " %}";
    const char *m = memmem(text, len, prefix, strlen(prefix));
    const size_t a_end = m ? literal_at(text, len, (size_t)(m - text) + strlen(prefix), out->default_system,
                                        sizeof out->default_system) : 0;
    if (!a_end || len - a_end < strlen(mid) || memcmp(text + a_end, mid, strlen(mid)) != 0)
        return unsupported(out, err, "Mistral v7", "with a default system message zili does not know");
    out->date_at = strlen(out->default_system);
    const size_t b_end = literal_at(text, len, a_end + strlen(mid), out->default_system + out->date_at,
                                    sizeof out->default_system - out->date_at);
    if (!b_end || len - b_end < strlen(end) || memcmp(text + b_end, end, strlen(end)) != 0)
        return unsupported(out, err, "Mistral v7", "with a default system message zili does not know");
    out->flags |= ZL_CHAT_MISTRAL_NOSPACE | ZL_CHAT_MISTRAL_SYSTEM_FIRST;
    return ZL_OK;
}

/* The system text Qwen2.5's and Qwen3's templates write the tools into (Qwen2.5 puts "\n\n" before it). */
static const char QWEN_TOOLS_HEAD[] = "# Tools\n\nYou may call one or more functions to assist with the user query."
                                      "\n\nYou are provided with function signatures within <tools></tools> XML "
                                      "tags:\n<tools>";
static const char QWEN_TOOLS_TAIL[] = "\n</tools>\n\nFor each function call, return a json object with function "
                                      "name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                                      "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
                                      "</tool_call>";

/* Whether a recognised template renders tools the way zili's renderer for its family does (ZL_CHAT_TOOLS): the
 * family's own tool markup, as the official texts of tests/data/chat write it. Templates with other tool texts
 * (Hermes 2 Pro's, say) get the generic rendering. */
static bool renders_tools(const zl_chat_tmpl *t, const char *text, size_t len)
{
    switch (t->kind) {
    case ZL_TMPL_CHATML:
    case ZL_TMPL_QWEN3:
        /* the head as the template's string literal spells it (escaped newlines) */
        return contains(text, len, "# Tools\\n\\nYou may call one or more functions to assist with the user "
                                   "query.\\n\\nYou are provided with function signatures within <tools></tools> "
                                   "XML tags:\\n<tools>") &&
               contains(text, len, "'\\n<tool_call>\\n{\"name\": \"'") == (t->kind == ZL_TMPL_CHATML) &&
               contains(text, len, "<tool_response>");
    case ZL_TMPL_LLAMA3:
        return (t->flags & ZL_CHAT_LLAMA3_SYSTEM) && contains(text, len, "tools_in_user_message") &&
               contains(text, len, "\"parameters\": ") && contains(text, len, "<|start_header_id|>ipython");
    case ZL_TMPL_MISTRAL:
        return (t->flags & ZL_CHAT_MISTRAL_V3) && contains(text, len, "[AVAILABLE_TOOLS]") &&
               contains(text, len, "[TOOL_CALLS]") && contains(text, len, "[TOOL_RESULTS]") &&
               contains(text, len, "\"call_id\": \"");
    case ZL_TMPL_DEEPSEEK_R1:
        return contains(text, len, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>") &&
               contains(text, len, "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>");
    default: return false;
    }
}

int zl_chat_tmpl_detect(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = ZL_OK;
    bool matched = true;
    if (text && contains(text, len, IM_START) && contains(text, len, IM_END))
        rc = detect_chatml(text, len, out, err);
    else if (text && contains(text, len, "<|start_header_id|>") && contains(text, len, "<|end_header_id|>") &&
             contains(text, len, "<|eot_id|>"))
        rc = detect_llama3(text, len, out, err);
    else if (text && contains(text, len, "<start_of_turn>") && contains(text, len, "<end_of_turn>"))
        rc = detect_gemma(text, len, out, err);
    else if (text && contains(text, len, "<｜User｜>") && contains(text, len, "<｜Assistant｜>") &&
             contains(text, len, "<｜end▁of▁sentence｜>"))
        rc = detect_deepseek(text, len, out, err);
    else if (text && contains(text, len, "[SYSTEM_PROMPT]") && contains(text, len, "[/SYSTEM_PROMPT]") &&
             contains(text, len, "[INST]") && contains(text, len, "[/INST]"))
        rc = detect_mistral_v7(text, len, out, err); /* before mistral: it has the same [INST] markers */
    else if (text && contains(text, len, "[INST]") && contains(text, len, "[/INST]"))
        rc = detect_mistral(text, len, out, err);
    else
        matched = false;
    if (!matched)
        return zl_err_set(err, ZL_EUNSUPPORTED, "chat template not recognised (known: %s); name one with "
                          "--chat-template", KNOWN_NAMES);
    if (rc != ZL_OK)
        memset(out, 0, sizeof *out); /* a refused template leaves no kind behind */
    else {
        if (out->kind != ZL_TMPL_CHATML && out->kind != ZL_TMPL_QWEN3 && contains(text, len, "bos_token"))
            out->flags |= ZL_CHAT_BOS;
        if (renders_tools(out, text, len))
            out->flags |= ZL_CHAT_TOOLS;
    }
    return rc;
}

typedef struct named_tmpl {
    const char *name;
    zl_chat_kind kind;
    unsigned flags;
    const char *default_system; /* chatml */
} named_tmpl;

/* What each official template renders as; names for --chat-template. */
static const named_tmpl NAMED[] = {
    {"chatml", ZL_TMPL_CHATML, 0, ""},
    {"qwen2.5", ZL_TMPL_CHATML, ZL_CHAT_TOOLS, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."},
    {"qwen3", ZL_TMPL_QWEN3, ZL_CHAT_TOOLS, ""},
    {"llama3", ZL_TMPL_LLAMA3, ZL_CHAT_BOS, ""},
    {"llama3.1", ZL_TMPL_LLAMA3, ZL_CHAT_BOS | ZL_CHAT_LLAMA3_SYSTEM | ZL_CHAT_TOOLS, ""},
    {"gemma", ZL_TMPL_GEMMA, ZL_CHAT_BOS, ""},
    {"deepseek-r1", ZL_TMPL_DEEPSEEK_R1, ZL_CHAT_BOS | ZL_CHAT_THINK_PROMPT | ZL_CHAT_TOOLS, ""},
    {"deepseek-v3", ZL_TMPL_DEEPSEEK_R1,
     ZL_CHAT_BOS | ZL_CHAT_DEEPSEEK_JOIN_SYSTEM | ZL_CHAT_DEEPSEEK_WHOLE_REPLY | ZL_CHAT_TOOLS, ""},
    {"mistral", ZL_TMPL_MISTRAL, ZL_CHAT_BOS, ""},
    {"mistral-v3", ZL_TMPL_MISTRAL, ZL_CHAT_BOS | ZL_CHAT_MISTRAL_V3 | ZL_CHAT_MISTRAL_TRIM | ZL_CHAT_TOOLS, ""},
    {"mistral-nemo", ZL_TMPL_MISTRAL, ZL_CHAT_BOS | ZL_CHAT_MISTRAL_V3 | ZL_CHAT_MISTRAL_NOSPACE | ZL_CHAT_TOOLS, ""},
    {"mistral-v7", ZL_TMPL_MISTRAL_V7, ZL_CHAT_BOS, ""},
};

int zl_chat_tmpl_from_name(const char *name, zl_chat_tmpl *out, zl_err *err)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; name && i < sizeof NAMED / sizeof NAMED[0]; i++) {
        if (strcmp(name, NAMED[i].name) != 0)
            continue;
        out->kind = NAMED[i].kind;
        out->flags = NAMED[i].flags;
        snprintf(out->default_system, sizeof out->default_system, "%s", NAMED[i].default_system);
        strcpy(out->date, "26 Jul 2024"); /* the 3.1 / 3.2 / 3.3 templates' default */
        strcpy(out->sys_sep, "\n\n");
        return ZL_OK;
    }
    return zl_err_set(err, ZL_EINVAL, "unknown chat template '%.64s' (known: %s)", name ? name : "(null)",
                      KNOWN_NAMES);
}

const char *zl_chat_tmpl_known_names(void) { return KNOWN_NAMES; }

const char *zl_chat_tmpl_name(zl_chat_tmpl t)
{
    switch (t.kind) {
    case ZL_TMPL_CHATML: return "chatml";
    case ZL_TMPL_QWEN3: return "qwen3";
    case ZL_TMPL_LLAMA3: return "llama3";
    case ZL_TMPL_GEMMA: return "gemma";
    case ZL_TMPL_DEEPSEEK_R1: return t.flags & ZL_CHAT_DEEPSEEK_WHOLE_REPLY ? "deepseek-v3" : "deepseek-r1";
    case ZL_TMPL_MISTRAL: return "mistral";
    case ZL_TMPL_MISTRAL_V7: return "mistral-v7";
    default: return "none";
    }
}

const char *zl_chat_tmpl_bos(zl_chat_tmpl t)
{
    if (!(t.flags & ZL_CHAT_BOS))
        return "";
    switch (t.kind) {
    case ZL_TMPL_LLAMA3: return "<|begin_of_text|>";
    case ZL_TMPL_GEMMA: return "<bos>";
    case ZL_TMPL_DEEPSEEK_R1: return "<｜begin▁of▁sentence｜>";
    case ZL_TMPL_MISTRAL:
    case ZL_TMPL_MISTRAL_V7: return "<s>";
    default: return "";
    }
}

void zl_chat_strip_bos(zl_chat_tmpl t, bool tokenizer_adds_bos, char *prompt)
{
    const char *bos = zl_chat_tmpl_bos(t);
    const size_t n = strlen(bos);
    if (!tokenizer_adds_bos || !prompt || n == 0 || strncmp(prompt, bos, n) != 0)
        return;
    memmove(prompt, prompt + n, strlen(prompt + n) + 1);
}

/* ---- output buffer ---------------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
    /* zl_chat_render_spans: the messages, and the output ranges copied from their content (merged when adjacent) */
    uintptr_t (*content)[2]; /* each message's content as [begin, end) addresses; NULL: no spans wanted */
    size_t n_msgs, last;     /* last: the message the previous copy came from (renderers go in order) */
    zl_text_span *spans;
    size_t n_spans, cap_spans;
} sbuf;

/* True if s[0..l) lies inside one of the messages' content strings. Compared as addresses (uintptr_t): the
 * renderers copy content through views into it (trimmed, split at "</think>"), never through copies. */
static bool from_content(sbuf *b, const char *s, size_t l)
{
    const uintptr_t p = (uintptr_t)s;
    if (b->last < b->n_msgs && p >= b->content[b->last][0] && p + l <= b->content[b->last][1])
        return true;
    for (size_t i = 0; i < b->n_msgs; i++)
        if (p >= b->content[i][0] && p + l <= b->content[i][1]) {
            b->last = i;
            return true;
        }
    return false;
}

static void note_span(sbuf *b, size_t off, size_t l)
{
    if (b->n_spans && b->spans[b->n_spans - 1].off + b->spans[b->n_spans - 1].len == off) {
        b->spans[b->n_spans - 1].len += l;
        return;
    }
    if (b->n_spans == b->cap_spans) {
        const size_t cap = b->cap_spans ? 2 * b->cap_spans : 16;
        zl_text_span *ns = realloc(b->spans, cap * sizeof *ns);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->spans = ns;
        b->cap_spans = cap;
    }
    b->spans[b->n_spans++] = (zl_text_span){off, l};
}

static void put_n(sbuf *b, const char *s, size_t l)
{
    if (b->oom)
        return;
    if (l > SIZE_MAX - b->n - 1) {
        b->oom = true;
        return;
    }
    if (b->n + l + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + l + 1)
            cap = cap > SIZE_MAX / 2 ? b->n + l + 1 : cap * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    if (b->content && l && from_content(b, s, l))
        note_span(b, b->n, l);
    memcpy(b->s + b->n, s, l);
    b->n += l;
    b->s[b->n] = 0;
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* Text from the client that is not a message's content (tool definitions, names, ids, arguments): a span always. */
static void put_text(sbuf *b, const char *s, size_t l)
{
    if (b->oom || !l)
        return;
    const size_t off = b->n;
    uintptr_t (*content)[2] = b->content;
    b->content = NULL; /* no address lookup: put_n would not find it */
    put_n(b, s, l);
    b->content = content;
    if (content && !b->oom)
        note_span(b, off, l);
}

static void put_cstr_text(sbuf *b, const char *s) { put_text(b, s, strlen(s)); }

/* Python's json.dumps(v) (indent >= 0: with that indent) as client text. */
static void put_pyjson(sbuf *b, const json_t *v, int indent)
{
    char *j = zl_pyjson_dumps(v, indent);
    if (!j) {
        b->oom = true;
        return;
    }
    put_cstr_text(b, j);
    free(j);
}

/* A call's arguments through tojson: the JSON the client's string holds, written back as Python writes it; a
 * string that is not JSON is written as a JSON string (what tojson does with a str). */
static void put_args_tojson(sbuf *b, const char *args)
{
    json_error_t je;
    json_t *v = json_loads(args, JSON_DECODE_ANY, &je);
    if (v) {
        put_pyjson(b, v, -1);
        json_decref(v);
        return;
    }
    char *q = zl_pyjson_string(args, strlen(args));
    if (!q) {
        b->oom = true;
        return;
    }
    put_cstr_text(b, q);
    free(q);
}

/* ---- string views, Python's strip ------------------------------------------------------------------------ */

typedef struct span {
    const char *p;
    size_t n;
} span;

static span span_of(const char *s) { return (span){s, strlen(s)}; }
static void put_span(sbuf *b, span s) { put_n(b, s.p, s.n); }

/* Python's str.isspace() for one code point (what str.strip() with no argument removes). */
static bool py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes the UTF-8 sequence at s[i..n) into *cp; returns its length, or 0 when it is not well formed. */
static size_t utf8_at(const char *s, size_t n, size_t i, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s + i;
    const size_t left = n - i;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t len = u[0] >= 0xf0 && u[0] < 0xf5 ? 4 : u[0] >= 0xe0 ? (u[0] < 0xf0 ? 3 : 0) : u[0] >= 0xc2 ? 2 : 0;
    if (!len || len > left)
        return 0;
    uint32_t c = u[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((u[k] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (u[k] & 0x3f);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* jinja's trim: Python's str.strip(). Bytes that are not well-formed UTF-8 are never stripped. */
static span trim(span s)
{
    uint32_t c;
    size_t l;
    while (s.n && (l = utf8_at(s.p, s.n, 0, &c)) && py_space(c)) {
        s.p += l;
        s.n -= l;
    }
    while (s.n) {
        size_t j = s.n - 1;
        while (j > 0 && s.n - j < 4 && ((unsigned char)s.p[j] & 0xc0) == 0x80)
            j--;
        l = utf8_at(s.p, s.n, j, &c);
        if (l != s.n - j || !py_space(c))
            break;
        s.n = j;
    }
    return s;
}

static span lstrip_nl(span s)
{
    while (s.n && s.p[0] == '\n') {
        s.p++;
        s.n--;
    }
    return s;
}

static span rstrip_nl(span s)
{
    while (s.n && s.p[s.n - 1] == '\n')
        s.n--;
    return s;
}

/* Last occurrence of needle in s, or NULL. Linear: memmem forward from each match. */
static const char *last_of(span s, const char *needle)
{
    const size_t nl = strlen(needle);
    const char *last = NULL;
    for (const char *m = s.p; (m = memmem(m, s.n - (size_t)(m - s.p), needle, nl)) != NULL; m += nl)
        last = m;
    return last;
}

/* Python's s.split(sep)[-1]: what follows the last sep (s itself when there is none). */
static span after_last(span s, const char *sep)
{
    const char *m = last_of(s, sep);
    if (!m)
        return s;
    const size_t off = (size_t)(m - s.p) + strlen(sep);
    return (span){s.p + off, s.n - off};
}

/* Python's s.split(sep)[0]. */
static span before_first(span s, const char *sep)
{
    const char *m = memmem(s.p, s.n, sep, strlen(sep));
    return m ? (span){s.p, (size_t)(m - s.p)} : s;
}

static bool starts_with(span s, const char *x) { return s.n >= strlen(x) && memcmp(s.p, x, strlen(x)) == 0; }
static bool ends_with(span s, const char *x)
{
    return s.n >= strlen(x) && memcmp(s.p + s.n - strlen(x), x, strlen(x)) == 0;
}

/* ---- renderers ---------------------------------------------------------------------------------------------- */

static bool is_role(const zl_chat_msg *m, const char *r) { return strcmp(m->role, r) == 0; }

static const char *msg_text(const zl_chat_msg *m) { return m->content ? m->content : ""; }

/* Qwen2.5's and Qwen3's tool list: QWEN_TOOLS_HEAD, each tool's JSON on a line, QWEN_TOOLS_TAIL. */
static void put_qwen_tools(sbuf *b, const json_t *tools)
{
    put(b, QWEN_TOOLS_HEAD);
    for (size_t k = 0; k < json_array_size(tools); k++) {
        put(b, "\n");
        put_pyjson(b, json_array_get(tools, k), -1);
    }
    put(b, QWEN_TOOLS_TAIL);
}

/* A run of tool results as Qwen writes them: "<|im_start|>user" before the first of a run, "<|im_end|>\n" after
 * the last. */
static void put_qwen_tool_result(sbuf *b, const zl_chat_msg *msgs, size_t n, size_t i)
{
    if (i == 0 || !is_role(&msgs[i - 1], "tool"))
        put(b, "<|im_start|>user");
    put(b, "\n<tool_response>\n");
    put(b, msg_text(&msgs[i]));
    put(b, "\n</tool_response>");
    if (i == n - 1 || !is_role(&msgs[i + 1], "tool"))
        put(b, "<|im_end|>\n");
}

/* One <tool_call> block's JSON line: {"name": "N", "arguments": A}, A as tojson writes it or as sent. */
static void put_hermes_call(sbuf *b, const zl_chat_call *c, bool args_as_sent)
{
    put(b, "<tool_call>\n{\"name\": \"");
    put_cstr_text(b, c->name);
    put(b, "\", \"arguments\": ");
    if (args_as_sent)
        put_cstr_text(b, c->arguments);
    else
        put_args_tojson(b, c->arguments);
    put(b, "}\n</tool_call>");
}

static void render_chatml(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, bool add_assistant,
                          const json_t *tools, sbuf *b)
{
    const bool sys0 = is_role(&msgs[0], "system");
    if (tools) { /* Qwen2.5 */
        put(b, "<|im_start|>system\n");
        put(b, sys0 ? msgs[0].content : t->default_system);
        put(b, "\n\n");
        put_qwen_tools(b, tools);
        put(b, "<|im_end|>\n");
    } else if (t->default_system[0] && !sys0) {
        put(b, "<|im_start|>system\n");
        put(b, t->default_system);
        put(b, "<|im_end|>\n");
    }
    for (size_t i = tools && sys0; i < n; i++) {
        const zl_chat_msg *m = &msgs[i];
        if (is_role(m, "tool")) {
            put_qwen_tool_result(b, msgs, n, i);
            continue;
        }
        if (is_role(m, "assistant") && m->n_calls) {
            put(b, "<|im_start|>assistant");
            if (m->content && m->content[0]) {
                put(b, "\n");
                put(b, m->content);
            }
            for (size_t k = 0; k < m->n_calls; k++) {
                put(b, "\n");
                put_hermes_call(b, &m->calls[k], false);
            }
            put(b, "<|im_end|>\n");
            continue;
        }
        put(b, IM_START);
        put(b, m->role);
        put(b, "\n");
        put(b, m->content);
        put(b, IM_END);
        put(b, "\n");
    }
    if (add_assistant)
        put(b, "<|im_start|>assistant\n");
}

/* Qwen3: an assistant turn after the last real user query (one not wrapped in <tool_response>) keeps its
 * reasoning as "<think>\nR\n</think>\n\n" when it is the last message or has reasoning; every other assistant turn
 * is only what follows its last "</think>". Calls follow as <tool_call> blocks, their arguments as sent. */
static void render_qwen3(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, bool add_assistant,
                         const json_t *tools, sbuf *b)
{
    const bool sys0 = is_role(&msgs[0], "system");
    if (tools) {
        put(b, "<|im_start|>system\n");
        if (sys0) {
            put(b, msgs[0].content);
            put(b, "\n\n");
        }
        put_qwen_tools(b, tools);
        put(b, "<|im_end|>\n");
    }
    size_t last_query = n - 1;
    for (size_t k = n; k-- > 0;) {
        span c = span_of(msg_text(&msgs[k]));
        if (is_role(&msgs[k], "user") && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
            last_query = k;
            break;
        }
    }
    for (size_t i = tools && sys0; i < n; i++) {
        const zl_chat_msg *m = &msgs[i];
        if (is_role(m, "system") || is_role(m, "user")) {
            put(b, IM_START);
            put(b, m->role);
            put(b, "\n");
            put(b, m->content);
            put(b, "<|im_end|>\n");
            continue;
        }
        if (is_role(m, "tool")) {
            put_qwen_tool_result(b, msgs, n, i);
            continue;
        }
        span content = span_of(msg_text(m)), reasoning = {"", 0};
        if (memmem(content.p, content.n, "</think>", 8)) {
            reasoning = lstrip_nl(after_last(rstrip_nl(before_first(content, "</think>")), "<think>"));
            content = lstrip_nl(after_last(content, "</think>"));
        }
        const bool has_content = content.n != 0; /* the template tests its content before the lstrip below */
        put(b, "<|im_start|>assistant\n");
        if (i > last_query && (i == n - 1 || reasoning.n)) {
            put(b, "<think>\n");
            put_span(b, rstrip_nl(lstrip_nl(reasoning)));
            put(b, "\n</think>\n\n");
            content = lstrip_nl(content);
        }
        put_span(b, content);
        for (size_t k = 0; k < m->n_calls; k++) {
            if (k > 0 || has_content)
                put(b, "\n");
            put_hermes_call(b, &m->calls[k], true);
        }
        put(b, "<|im_end|>\n");
    }
    if (add_assistant) {
        put(b, "<|im_start|>assistant\n");
        if (t->flags & ZL_CHAT_NO_THINKING) /* the template's enable_thinking = false: an empty reasoning block */
            put(b, "<think>\n\n</think>\n\n");
    }
}

static void llama3_header(sbuf *b, const char *role)
{
    put(b, "<|start_header_id|>");
    put(b, role);
    put(b, "<|end_header_id|>\n\n");
}

static int render_llama3(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, bool add_assistant,
                         const json_t *tools, sbuf *b, zl_err *err)
{
    size_t i = 0;
    if (t->flags & ZL_CHAT_LLAMA3_SYSTEM) {
        llama3_header(b, "system");
        if (tools)
            put(b, "Environment: ipython\n");
        put(b, "Cutting Knowledge Date: December 2023\nToday Date: ");
        put(b, t->date);
        put(b, "\n\n");
        if (is_role(&msgs[0], "system"))
            put_span(b, trim(span_of(msgs[i++].content)));
        put(b, "<|eot_id|>");
        if (tools) { /* tools_in_user_message: the list goes into the first message after the system one */
            if (i == n)
                return zl_err_set(err, ZL_EINVAL, "chat render: llama3: tools need a first user message to go in");
            llama3_header(b, "user");
            put(b, "Given the following functions, please respond with a JSON for a function call with its proper "
                   "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function "
                   "name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n");
            for (size_t k = 0; k < json_array_size(tools); k++) {
                put_pyjson(b, json_array_get(tools, k), 4);
                put(b, "\n\n");
            }
            put_span(b, trim(span_of(msg_text(&msgs[i++]))));
            put(b, "<|eot_id|>");
        }
    }
    for (; i < n; i++) {
        const zl_chat_msg *m = &msgs[i];
        if (m->n_calls) {
            if (m->n_calls != 1)
                return zl_err_set(err, ZL_EINVAL, "chat render: llama3: one tool call a message (message %zu has "
                                  "%zu; the template refuses more)", i, m->n_calls);
            llama3_header(b, "assistant");
            put(b, "{\"name\": \"");
            put_cstr_text(b, m->calls[0].name);
            put(b, "\", \"parameters\": ");
            put_args_tojson(b, m->calls[0].arguments);
            put(b, "}<|eot_id|>");
        } else if (is_role(m, "tool")) {
            /* the template's test `content is iterable` holds for a string, so it is written through tojson */
            llama3_header(b, "ipython");
            char *q = zl_pyjson_string(m->content, strlen(m->content));
            if (!q)
                return zl_err_set(err, ZL_ENOMEM, "chat render: out of memory");
            put_cstr_text(b, q);
            free(q);
            put(b, "<|eot_id|>");
        } else {
            llama3_header(b, m->role);
            put_span(b, trim(span_of(m->content)));
            put(b, "<|eot_id|>");
        }
    }
    if (add_assistant)
        llama3_header(b, "assistant");
    return ZL_OK;
}

/* User and assistant turns alternate, user first (other roles may take an assistant's place, as the templates'
 * own test lets them). Returns the index of the first message out of order, or n. */
static size_t first_unalternating(const zl_chat_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_role(&msgs[i], "user") != (i % 2 == 0))
            return i;
    return n;
}

static int render_gemma(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, bool add_assistant, sbuf *b,
                        zl_err *err)
{
    const char *sys = NULL;
    if (is_role(&msgs[0], "system")) {
        sys = msgs[0].content;
        msgs++;
        n--;
    }
    const size_t bad = first_unalternating(msgs, n);
    if (bad < n)
        return zl_err_set(err, ZL_EINVAL, "chat render: gemma: user and assistant turns must alternate (message %zu "
                          "is '%.32s')", bad + (sys != NULL), msgs[bad].role);
    for (size_t i = 0; i < n; i++) {
        put(b, "<start_of_turn>");
        put(b, is_role(&msgs[i], "assistant") ? "model" : msgs[i].role);
        put(b, "\n");
        if (i == 0 && sys) {
            put(b, sys);
            put(b, t->sys_sep);
        }
        put_span(b, trim(span_of(msgs[i].content)));
        put(b, "<end_of_turn>\n");
    }
    if (add_assistant)
        put(b, "<start_of_turn>model\n");
    return ZL_OK;
}

/* DeepSeek V3 / R1: as their templates, whose state (ns.is_first, ns.is_output_first) is never reset, so only
 * the first assistant message with calls opens <｜tool▁calls▁begin｜>, and only a second call closes it. */
static void render_deepseek(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, bool add_assistant, sbuf *b)
{
    if (t->flags & ZL_CHAT_DEEPSEEK_JOIN_SYSTEM) {
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            if (!is_role(&msgs[i], "system"))
                continue;
            if (!first)
                put(b, "\n\n");
            put(b, msgs[i].content);
            first = false;
        }
    } else {
        const char *sys = "";
        for (size_t i = 0; i < n; i++)
            if (is_role(&msgs[i], "system"))
                sys = msgs[i].content; /* the last one wins, written first */
        put(b, sys);
    }
    bool is_first = false, is_tool = false, output_first = true;
    for (size_t i = 0; i < n; i++) {
        const zl_chat_msg *m = &msgs[i];
        if (is_role(m, "user")) {
            is_tool = false;
            put(b, "<｜User｜>");
            put(b, m->content);
        } else if (is_role(m, "assistant") && !m->content) {
            is_tool = false;
            for (size_t k = 0; k < m->n_calls; k++) {
                put(b, is_first ? "\n<｜tool▁call▁begin｜>" : "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>");
                put(b, "function<｜tool▁sep｜>");
                put_cstr_text(b, m->calls[k].name);
                put(b, "\n```json\n");
                put_cstr_text(b, m->calls[k].arguments);
                put(b, "\n```<｜tool▁call▁end｜>");
                if (is_first)
                    put(b, "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
                is_first = true;
            }
        } else if (is_role(m, "assistant")) {
            span c = span_of(m->content);
            if (is_tool) {
                put(b, "<｜tool▁outputs▁end｜>");
                is_tool = false;
            } else {
                put(b, "<｜Assistant｜>");
                if (!(t->flags & ZL_CHAT_DEEPSEEK_WHOLE_REPLY))
                    c = after_last(c, "</think>");
            }
            put_span(b, c);
            put(b, "<｜end▁of▁sentence｜>");
        } else if (is_role(m, "tool")) {
            is_tool = true;
            put(b, output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "\n<｜tool▁output▁begin｜>");
            put(b, m->content);
            put(b, "<｜tool▁output▁end｜>");
            output_first = false;
        }
    }
    if (is_tool)
        put(b, "<｜tool▁outputs▁end｜>");
    if (add_assistant && !is_tool)
        put(b, t->flags & ZL_CHAT_THINK_PROMPT ? "<｜Assistant｜><think>\n" : "<｜Assistant｜>");
}

/* Mistral v3 / Nemo's tool list: each tool's function as {"type": "function", "function": {...}} with its keys in
 * order ("return" left out), string values written raw between quotes (the template does not escape them), others
 * through tojson. */
static void put_mistral_tools(sbuf *b, const json_t *tools, bool nospace)
{
    put(b, nospace ? "[AVAILABLE_TOOLS][" : "[AVAILABLE_TOOLS] [");
    for (size_t k = 0; k < json_array_size(tools); k++) {
        json_t *f = json_object_get(json_array_get(tools, k), "function");
        put(b, "{\"type\": \"function\", \"function\": {");
        const char *key;
        json_t *val;
        bool first = true;
        json_object_foreach(f, key, val) {
            if (!strcmp(key, "return"))
                continue;
            if (!first)
                put(b, ", ");
            first = false;
            put(b, "\"");
            put_cstr_text(b, key);
            if (json_is_string(val)) {
                put(b, "\": \"");
                put_text(b, json_string_value(val), json_string_length(val));
                put(b, "\"");
            } else {
                put(b, "\": ");
                put_pyjson(b, val, -1);
            }
        }
        put(b, "}}");
        put(b, k + 1 < json_array_size(tools) ? ", " : "]");
    }
    put(b, "[/AVAILABLE_TOOLS]");
}

static bool nine_chars(const char *id) { return id && strlen(id) == 9; }

static int render_mistral(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, const json_t *tools, sbuf *b,
                          zl_err *err)
{
    const bool v3 = t->flags & ZL_CHAT_MISTRAL_V3, nospace = t->flags & ZL_CHAT_MISTRAL_NOSPACE;
    const char *sys = NULL;
    if (v3 && is_role(&msgs[0], "system")) {
        sys = msgs[0].content;
        msgs++;
        n--;
    }
    const size_t skip = sys != NULL;
    /* user / assistant alternate, tool results and messages with calls aside */
    size_t turn = 0;
    const char *last_user = NULL;
    for (size_t i = 0; i < n; i++) {
        if (is_role(&msgs[i], "user"))
            last_user = msgs[i].content;
        if (is_role(&msgs[i], "tool") || msgs[i].n_calls)
            continue;
        if (is_role(&msgs[i], "user") != (turn++ % 2 == 0))
            return zl_err_set(err, ZL_EINVAL, "chat render: mistral: user and assistant turns must alternate (message "
                              "%zu is '%.32s')", i + skip, msgs[i].role);
    }
    for (size_t i = 0; i < n; i++) {
        const zl_chat_msg *m = &msgs[i];
        if (is_role(m, "system"))
            return zl_err_set(err, ZL_EINVAL, "chat render: mistral: a system message is only allowed %s (message "
                              "%zu)", v3 ? "first" : "in none of its turns", i + skip);
        if (is_role(m, "user")) {
            /* the template compares messages as values: every user message equal to the last one gets the tools */
            if (tools && !strcmp(m->content, last_user))
                put_mistral_tools(b, tools, nospace);
            put(b, v3 && nospace ? "[INST]" : "[INST] ");
            if (sys && i == n - 1) {
                put(b, sys);
                put(b, "\n\n");
            }
            put(b, m->content);
            put(b, v3 ? "[/INST]" : " [/INST]");
        } else if (m->n_calls) {
            put(b, nospace ? "[TOOL_CALLS][" : "[TOOL_CALLS] [");
            for (size_t k = 0; k < m->n_calls; k++) {
                if (!nine_chars(m->calls[k].id))
                    return zl_err_set(err, ZL_EINVAL, "chat render: mistral: tool call ids must be 9 characters "
                                      "(message %zu)", i + skip);
                put(b, "{\"name\": ");
                char *q = zl_pyjson_string(m->calls[k].name, strlen(m->calls[k].name));
                if (!q)
                    return zl_err_set(err, ZL_ENOMEM, "chat render: out of memory");
                put_cstr_text(b, q);
                free(q);
                put(b, ", \"arguments\": ");
                put_args_tojson(b, m->calls[k].arguments);
                put(b, ", \"id\": \"");
                put_cstr_text(b, m->calls[k].id);
                put(b, "\"}");
                put(b, k + 1 < m->n_calls ? ", " : "]</s>");
            }
        } else if (is_role(m, "tool")) {
            if (!nine_chars(m->tool_call_id))
                return zl_err_set(err, ZL_EINVAL, "chat render: mistral: a tool result's tool_call_id must be 9 "
                                  "characters (message %zu)", i + skip);
            put(b, nospace ? "[TOOL_RESULTS]{\"content\": " : "[TOOL_RESULTS] {\"content\": ");
            put(b, m->content);
            put(b, ", \"call_id\": \"");
            put_cstr_text(b, m->tool_call_id);
            put(b, "\"}[/TOOL_RESULTS]");
        } else if (!v3 || nospace) {
            put(b, m->content);
            put(b, "</s>");
        } else {
            put(b, " ");
            span c = span_of(m->content);
            put_span(b, t->flags & ZL_CHAT_MISTRAL_TRIM ? trim(c) : c);
            put(b, "</s>");
        }
    }
    return ZL_OK;
}

/* Today's local date as "%Y-%m-%d", what the template's strftime_now writes. */
static void put_today(sbuf *b)
{
    const time_t now = time(NULL);
    struct tm tm;
    char d[ZL_CHAT_DATE_MAX];
    if (now != (time_t)-1 && localtime_r(&now, &tm) && strftime(d, sizeof d, "%Y-%m-%d", &tm) > 0)
        put(b, d);
}

static int render_mistral_v7(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, sbuf *b, zl_err *err)
{
    const char *sp = t->flags & ZL_CHAT_MISTRAL_NOSPACE ? "" : " ";
    if (t->flags & ZL_CHAT_MISTRAL_SYSTEM_FIRST) {
        const bool sys = is_role(&msgs[0], "system");
        const size_t bad = first_unalternating(msgs + sys, n - sys);
        if (bad < n - sys)
            return zl_err_set(err, ZL_EINVAL, "chat render: mistral-v7: user and assistant turns must alternate "
                              "(message %zu is '%.32s')", bad + sys, msgs[bad + sys].role);
        put(b, "[SYSTEM_PROMPT]");
        if (sys) {
            put(b, msgs[0].content);
        } else {
            const size_t at = t->date_at < strlen(t->default_system) ? t->date_at : strlen(t->default_system);
            put_n(b, t->default_system, at);
            if (t->date[0])
                put(b, t->date);
            else
                put_today(b);
            put(b, t->default_system + at);
        }
        put(b, "[/SYSTEM_PROMPT]");
        msgs += sys;
        n -= sys;
    }
    for (size_t i = 0; i < n; i++) {
        const bool system = is_role(&msgs[i], "system"), user = is_role(&msgs[i], "user");
        put(b, system ? "[SYSTEM_PROMPT]" : user ? "[INST]" : "");
        put(b, sp);
        put(b, msgs[i].content);
        put(b, system ? "[/SYSTEM_PROMPT]" : user ? "[/INST]" : "</s>");
    }
    return ZL_OK;
}

static bool known_role(const char *r)
{
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0 ||
           strcmp(r, "tool") == 0;
}

int zl_chat_render(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out, zl_err *err)
{
    return zl_chat_render_spans(t, msgs, n, add_assistant, out, NULL, NULL, err);
}

int zl_chat_render_spans(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                         zl_text_span **spans, size_t *n_spans, zl_err *err)
{
    const zl_chat_opts o = {.add_assistant = add_assistant};
    return zl_chat_render_opts(t, msgs, n, &o, out, spans, n_spans, err);
}

zl_chat_tool_format zl_chat_tools_format(zl_chat_tmpl t)
{
    if (!(t.flags & ZL_CHAT_TOOLS))
        return ZL_TOOLFMT_HERMES;
    switch (t.kind) {
    case ZL_TMPL_LLAMA3: return ZL_TOOLFMT_LLAMA3;
    case ZL_TMPL_MISTRAL: return ZL_TOOLFMT_MISTRAL;
    case ZL_TMPL_DEEPSEEK_R1: return ZL_TOOLFMT_DEEPSEEK;
    default: return ZL_TOOLFMT_HERMES;
    }
}

/* The request's tools: NULL for none (absent, or an empty array), else a new reference to the array. */
static int parse_tools(const char *text, json_t **out, zl_err *err)
{
    *out = NULL;
    if (!text)
        return ZL_OK;
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v || !json_is_array(v)) {
        json_decref(v);
        return zl_err_set(err, ZL_EINVAL, "chat render: tools must be a JSON array");
    }
    for (size_t k = 0; k < json_array_size(v); k++) {
        json_t *f = json_object_get(json_array_get(v, k), "function");
        if (!json_is_object(f) || !json_is_string(json_object_get(f, "name"))) {
            json_decref(v);
            return zl_err_set(err, ZL_EINVAL, "chat render: tools[%zu] must be {\"type\": \"function\", "
                              "\"function\": {\"name\": ...}}", k);
        }
    }
    if (json_array_size(v) == 0)
        json_decref(v);
    else
        *out = v;
    return ZL_OK;
}

/* The generic way for templates without tools of their own: msgs rewritten as system / user / assistant text
 * (chat.h). The rewritten messages' strings are kept in *keep (each malloc'd; the caller frees them). */
static int generic_tools(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, const json_t *tools,
                         zl_chat_msg **out, size_t *n_out, char ***keep, size_t *n_keep)
{
    zl_chat_msg *m = calloc(n + 1, sizeof *m);
    char **k = calloc(n + 1, sizeof *k);
    size_t nm = 0, nk = 0;
    if (!m || !k) {
        free(m);
        free(k);
        return ZL_ENOMEM;
    }
    bool oom = false;
    size_t i = 0;
    if (tools) {
        /* Mistral v0.1 / v0.2 refuse system messages: the tools then open the first user message */
        const bool in_user = t->kind == ZL_TMPL_MISTRAL && !(t->flags & ZL_CHAT_MISTRAL_V3);
        const bool sys0 = is_role(&msgs[0], "system");
        sbuf b = {0};
        const zl_chat_msg *host = in_user ? (is_role(&msgs[0], "user") ? &msgs[0] : NULL) : sys0 ? &msgs[0] : NULL;
        if (host && !in_user) {
            put(&b, host->content);
            put(&b, "\n\n");
        }
        put_qwen_tools(&b, tools);
        if (host && in_user) {
            put(&b, "\n\n");
            put(&b, host->content);
        }
        oom |= b.oom;
        k[nk++] = b.s;
        m[nm++] = (zl_chat_msg){.role = in_user ? "user" : "system", .content = b.s ? b.s : ""};
        i = host != NULL;
    }
    for (; i < n; i++) {
        if (is_role(&msgs[i], "assistant") && msgs[i].n_calls) {
            sbuf b = {0};
            put(&b, msg_text(&msgs[i]));
            for (size_t c = 0; c < msgs[i].n_calls; c++) {
                if (c || msg_text(&msgs[i])[0])
                    put(&b, "\n");
                put_hermes_call(&b, &msgs[i].calls[c], true);
            }
            oom |= b.oom;
            k[nk++] = b.s;
            m[nm++] = (zl_chat_msg){.role = "assistant", .content = b.s ? b.s : ""};
        } else if (is_role(&msgs[i], "tool")) {
            sbuf b = {0};
            for (; i < n && is_role(&msgs[i], "tool"); i++) {
                if (b.n)
                    put(&b, "\n");
                put(&b, "<tool_response>\n");
                put(&b, msgs[i].content);
                put(&b, "\n</tool_response>");
            }
            i--;
            oom |= b.oom;
            k[nk++] = b.s;
            m[nm++] = (zl_chat_msg){.role = "user", .content = b.s ? b.s : ""};
        } else {
            m[nm++] = (zl_chat_msg){.role = msgs[i].role, .content = msgs[i].content};
        }
    }
    *out = m;
    *n_out = nm;
    *keep = k;
    *n_keep = nk;
    return oom ? ZL_ENOMEM : ZL_OK;
}

int zl_chat_render_opts(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, const zl_chat_opts *o, char **out,
                        zl_text_span **spans, size_t *n_spans, zl_err *err)
{
    *out = NULL;
    if (spans) {
        *spans = NULL;
        *n_spans = 0;
    }
    if (t.kind <= ZL_TMPL_NONE || t.kind > ZL_TMPL_MISTRAL_V7)
        return zl_err_set(err, ZL_EINVAL, "chat render: no template");
    if (n == 0 || !msgs)
        return zl_err_set(err, ZL_EINVAL, "chat render: no messages");
    bool tool_msgs = false;
    for (size_t i = 0; i < n; i++) {
        const zl_chat_msg *m = &msgs[i];
        if (!m->role || (!m->content && !(is_role(m, "assistant") && m->n_calls)))
            return zl_err_set(err, ZL_EINVAL, "chat render: message %zu has no role or content", i);
        if (!known_role(m->role))
            return zl_err_set(err, ZL_EINVAL, "chat render: message %zu has unknown role '%.32s'", i, m->role);
        if (m->n_calls && (!is_role(m, "assistant") || !m->calls))
            return zl_err_set(err, ZL_EINVAL, "chat render: message %zu: only assistant messages make tool calls", i);
        for (size_t k = 0; k < m->n_calls; k++)
            if (!m->calls[k].name || !m->calls[k].arguments)
                return zl_err_set(err, ZL_EINVAL, "chat render: message %zu: tool call %zu has no name or "
                                  "arguments", i, k);
        tool_msgs |= m->n_calls || is_role(m, "tool");
    }
    json_t *tools;
    int rc = parse_tools(o->tools, &tools, err);
    if (rc != ZL_OK)
        return rc;
    zl_chat_msg *gm = NULL;
    char **keep = NULL;
    size_t n_keep = 0;
    if (!(t.flags & ZL_CHAT_TOOLS) && (tools || tool_msgs)) {
        size_t gn;
        rc = generic_tools(&t, msgs, n, tools, &gm, &gn, &keep, &n_keep);
        json_decref(tools);
        tools = NULL;
        if (rc != ZL_OK) {
            rc = zl_err_set(err, ZL_ENOMEM, "chat render: out of memory");
            goto done;
        }
        msgs = gm;
        n = gn;
    }
    t.default_system[ZL_CHAT_SYSTEM_MAX - 1] = 0;
    t.date[ZL_CHAT_DATE_MAX - 1] = 0;
    t.sys_sep[ZL_CHAT_SEP_MAX - 1] = 0;
    sbuf b = {0};
    if (spans) {
        b.content = calloc(n, sizeof *b.content);
        if (!b.content) {
            rc = zl_err_set(err, ZL_ENOMEM, "chat render: out of memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            if (msgs[i].content) {
                b.content[i][0] = (uintptr_t)msgs[i].content;
                b.content[i][1] = b.content[i][0] + strlen(msgs[i].content);
            }
        b.n_msgs = n;
    }
    put(&b, zl_chat_tmpl_bos(t));
    const bool add = o->add_assistant;
    switch (t.kind) {
    case ZL_TMPL_CHATML: render_chatml(&t, msgs, n, add, tools, &b); break;
    case ZL_TMPL_QWEN3: render_qwen3(&t, msgs, n, add, tools, &b); break;
    case ZL_TMPL_LLAMA3: rc = render_llama3(&t, msgs, n, add, tools, &b, err); break;
    case ZL_TMPL_GEMMA: rc = render_gemma(&t, msgs, n, add, &b, err); break;
    case ZL_TMPL_DEEPSEEK_R1: render_deepseek(&t, msgs, n, add, &b); break;
    case ZL_TMPL_MISTRAL: rc = render_mistral(&t, msgs, n, tools, &b, err); break;
    case ZL_TMPL_MISTRAL_V7: rc = render_mistral_v7(&t, msgs, n, &b, err); break;
    default: break;
    }
    if (rc == ZL_OK && b.oom)
        rc = zl_err_set(err, ZL_ENOMEM, "chat render: out of memory");
    free(b.content);
    if (rc != ZL_OK) {
        free(b.s);
        free(b.spans);
        goto done;
    }
    *out = b.s;
    if (spans) {
        *spans = b.spans;
        *n_spans = b.n_spans;
    } else {
        free(b.spans);
    }
done:
    json_decref(tools);
    for (size_t i = 0; i < n_keep; i++)
        free(keep[i]);
    free(keep);
    free(gm);
    return rc;
}
