/*
 * tools.c - tool calls out of replies, and tool_choice grammars (see tools.h).
 *
 * The parser keeps the undecided bytes (pend) and decides from its start: in content, everything up to the first
 * call marker is content, except a tail that may be the start of a marker (or whitespace, which a following call
 * drops); in calls, one unit at a time (a <tool_call> block, a [TOOL_CALLS] list, a Llama 3 object, a DeepSeek
 * call) is parsed once the whole of it is there. A unit's JSON is delimited by bracket counting (value_len) and
 * then checked by jansson.
 */
#include "server/tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/schema.h"
#include "tokenizer/pyjson.h"

enum { ST_CONTENT, ST_CALLS, ST_TEXT, ST_DROP };
enum { P_NEED = -1, P_BAD = -2, P_NONE = -3 };
enum { MAX_NAME = 256, MAX_DEPTH = 256 };

static const char HERMES_OPEN[] = "<tool_call>", HERMES_CLOSE[] = "</tool_call>";
static const char MISTRAL_OPEN[] = "[TOOL_CALLS]";
static const char LLAMA_TAG[] = "<|python_tag|>";
static const char DS_CALLS_BEGIN[] = "<｜tool▁calls▁begin｜>", DS_CALLS_END[] = "<｜tool▁calls▁end｜>";
static const char DS_CALL_BEGIN[] = "<｜tool▁call▁begin｜>", DS_CALL_END[] = "<｜tool▁call▁end｜>";
static const char DS_SEP[] = "<｜tool▁sep｜>";

/* ---- output -------------------------------------------------------------------------------------------------- */

static void out_content(oai_tool_out *o, const char *s, size_t n)
{
    if (!n || o->oom)
        return;
    if (o->n_content + n + 1 > o->cap_content) {
        size_t cap = o->cap_content ? o->cap_content : 64;
        while (cap < o->n_content + n + 1)
            cap *= 2;
        char *c = realloc(o->content, cap);
        if (!c) {
            o->oom = true;
            return;
        }
        o->content = c;
        o->cap_content = cap;
    }
    memcpy(o->content + o->n_content, s, n);
    o->n_content += n;
    o->content[o->n_content] = 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* Takes name and args (malloc'd) into o. */
static void out_call(oai_tool_out *o, char *name, char *args)
{
    if (!o->oom && o->n_calls == o->cap_calls) {
        const size_t cap = o->cap_calls ? 2 * o->cap_calls : 4;
        oai_call *c = realloc(o->calls, cap * sizeof *c);
        if (c) {
            o->calls = c;
            o->cap_calls = cap;
        } else {
            o->oom = true;
        }
    }
    if (o->oom || !name || !args) {
        o->oom = true;
        free(name);
        free(args);
        return;
    }
    o->calls[o->n_calls++] = (oai_call){name, args};
}

void oai_tool_out_free(oai_tool_out *o)
{
    free(o->content);
    for (size_t i = 0; i < o->n_calls; i++) {
        free(o->calls[i].name);
        free(o->calls[i].args);
    }
    free(o->calls);
    memset(o, 0, sizeof *o);
}

/* ---- scanning ------------------------------------------------------------------------------------------------ */

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* Whether s[i..n) starts with lit: 1 yes, 0 no, P_NEED when it is a proper prefix of lit. */
static int starts(const char *s, size_t n, size_t i, const char *lit)
{
    const size_t l = strlen(lit), have = n - i;
    if (have >= l)
        return memcmp(s + i, lit, l) == 0;
    return memcmp(s + i, lit, have) == 0 ? P_NEED : 0;
}

/* Length of the JSON value at s[0..n) (no leading whitespace), by structure alone: brackets, strings, escapes;
 * a scalar ends at a delimiter. P_NEED when s ends inside it. */
static long value_len(const char *s, size_t n)
{
    if (n == 0)
        return P_NEED;
    if (s[0] != '{' && s[0] != '[' && s[0] != '"') {
        for (size_t i = 0; i < n; i++)
            if (is_ws(s[i]) || s[i] == ',' || s[i] == '}' || s[i] == ']')
                return i ? (long)i : P_BAD;
        return P_NEED;
    }
    int depth = 0;
    bool str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"') {
                str = false;
                if (depth == 0)
                    return (long)i + 1;
            }
            continue;
        }
        if (c == '"')
            str = true;
        else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH)
                return P_BAD;
        } else if (c == '}' || c == ']') {
            if (--depth <= 0)
                return depth == 0 ? (long)i + 1 : P_BAD;
        }
    }
    return P_NEED;
}

/* The JSON text of a value as arguments: a string holding JSON is taken for the JSON it holds (some models quote
 * their arguments), anything else as written. NULL if it is not valid JSON. */
static char *args_text(const char *s, size_t n)
{
    json_error_t je;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &je);
    if (!v)
        return NULL;
    char *r;
    if (json_is_string(v)) {
        json_t *inner = json_loadb(json_string_value(v), json_string_length(v), JSON_DECODE_ANY, &je);
        r = inner ? dup_n(json_string_value(v), json_string_length(v)) : dup_n(s, n);
        json_decref(inner);
    } else {
        r = dup_n(s, n);
    }
    json_decref(v);
    return r;
}

/* From the call object s[0..n) (complete, as value_len delimits it): its name and the raw text of its arguments
 * (the value under "arguments" or "parameters"; absent: {}). False when it is not such an object. */
static bool call_object(const char *s, size_t n, oai_tool_out *o)
{
    json_error_t je;
    json_t *v = json_loadb(s, n, 0, &je);
    json_t *name = json_object_get(v, "name");
    const bool ok = json_is_object(v) && json_is_string(name) && json_string_length(name) > 0 &&
                    json_string_length(name) <= MAX_NAME && strlen(json_string_value(name)) ==
                                                                json_string_length(name);
    char *nm = ok ? dup_n(json_string_value(name), json_string_length(name)) : NULL;
    json_decref(v);
    if (!ok)
        return false;
    /* the members' raw text: {"key": value, ...} */
    size_t i = skip_ws(s, n, 1);
    char *args = NULL;
    while (i < n && s[i] == '"') {
        const long kl = value_len(s + i, n - i);
        if (kl < 0)
            break;
        const bool want = (kl == 11 && !memcmp(s + i, "\"arguments\"", 11)) ||
                          (kl == 12 && !memcmp(s + i, "\"parameters\"", 12));
        i = skip_ws(s, n, i + (size_t)kl);
        if (i >= n || s[i] != ':')
            break;
        i = skip_ws(s, n, i + 1);
        const long vl = value_len(s + i, n - i);
        if (vl < 0)
            break;
        if (want && !args)
            args = args_text(s + i, (size_t)vl);
        i = skip_ws(s, n, i + (size_t)vl);
        if (i < n && s[i] == ',')
            i = skip_ws(s, n, i + 1);
    }
    out_call(o, nm, args ? args : dup_n("{}", 2));
    return true;
}

/* ---- units --------------------------------------------------------------------------------------------------- */

/* One unit of calls at s[0..n) (whitespace skipped): its length with its calls put into o, P_NEED, P_BAD, or
 * P_NONE when s does not begin one. final: nothing more will come. */
static long unit_hermes(const char *s, size_t n, bool final, oai_tool_out *o)
{
    const int m = starts(s, n, 0, HERMES_OPEN);
    if (m != 1)
        return m == P_NEED ? P_NEED : P_NONE;
    size_t i = skip_ws(s, n, strlen(HERMES_OPEN));
    if (i == n)
        return P_NEED;
    if (s[i] != '{')
        return P_BAD;
    const long vl = value_len(s + i, n - i);
    if (vl < 0)
        return vl;
    const size_t obj = i;
    i = skip_ws(s, n, i + (size_t)vl);
    const int c = i == n ? P_NEED : starts(s, n, i, HERMES_CLOSE);
    if (c == 0)
        return P_BAD;
    if (c == P_NEED && !(final && i == n))
        return P_NEED;
    if (!call_object(s + obj, (size_t)vl, o))
        return P_BAD;
    return (long)(c == 1 ? i + strlen(HERMES_CLOSE) : i);
}

static long unit_llama(const char *s, size_t n, oai_tool_out *o)
{
    size_t i = 0;
    const int t = starts(s, n, 0, LLAMA_TAG);
    if (t == P_NEED)
        return P_NEED;
    if (t == 1)
        i = skip_ws(s, n, strlen(LLAMA_TAG));
    if (i < n && s[i] == ';') /* between calls */
        i = skip_ws(s, n, i + 1);
    if (i == n)
        return P_NEED;
    if (s[i] != '{')
        return t == 1 ? P_BAD : P_NONE;
    const long vl = value_len(s + i, n - i);
    if (vl < 0)
        return vl;
    if (!call_object(s + i, (size_t)vl, o))
        return P_BAD;
    return (long)i + vl;
}

static long unit_mistral(const char *s, size_t n, oai_tool_out *o)
{
    size_t i = 0;
    const int t = starts(s, n, 0, MISTRAL_OPEN);
    if (t == P_NEED)
        return P_NEED;
    if (t == 1)
        i = skip_ws(s, n, strlen(MISTRAL_OPEN));
    if (i == n)
        return P_NEED;
    if (s[i] != '[' && s[i] != '{')
        return t == 1 ? P_BAD : P_NONE;
    const long vl = value_len(s + i, n - i);
    if (vl < 0)
        return vl;
    if (s[i] == '{')
        return call_object(s + i, (size_t)vl, o) ? (long)i + vl : P_BAD;
    json_error_t je;
    json_t *arr = json_loadb(s + i, (size_t)vl, 0, &je);
    const bool ok = json_is_array(arr) && json_array_size(arr) > 0;
    json_decref(arr);
    if (!ok)
        return P_BAD;
    /* each element's raw text */
    const size_t before = o->n_calls;
    size_t k = skip_ws(s, i + (size_t)vl, i + 1);
    while (k < i + (size_t)vl && s[k] == '{') {
        const long el = value_len(s + k, i + (size_t)vl - k);
        if (el < 0 || !call_object(s + k, (size_t)el, o))
            break;
        k = skip_ws(s, i + (size_t)vl, k + (size_t)el);
        if (k < i + (size_t)vl && s[k] == ',')
            k = skip_ws(s, i + (size_t)vl, k + 1);
    }
    if (k + 1 != i + (size_t)vl || s[k] != ']') { /* an element that is not a call: none of them are */
        while (o->n_calls > before) {
            o->n_calls--;
            free(o->calls[o->n_calls].name);
            free(o->calls[o->n_calls].args);
        }
        return P_BAD;
    }
    return (long)i + vl;
}

static const char *find_in(const char *s, size_t n, const char *lit)
{
    return n ? memmem(s, n, lit, strlen(lit)) : NULL;
}

static long unit_deepseek(const char *s, size_t n, oai_tool_out *o)
{
    int m;
    if ((m = starts(s, n, 0, DS_CALLS_BEGIN)) != 0)
        return m == 1 ? (long)strlen(DS_CALLS_BEGIN) : P_NEED;
    if ((m = starts(s, n, 0, DS_CALLS_END)) != 0)
        return m == 1 ? (long)strlen(DS_CALLS_END) : P_NEED;
    if ((m = starts(s, n, 0, DS_CALL_BEGIN)) != 1)
        return m == P_NEED ? P_NEED : P_NONE;
    size_t i = strlen(DS_CALL_BEGIN);
    const char *sep = find_in(s + i, n - i, DS_SEP);
    if (!sep)
        return n - i > 64 + strlen(DS_SEP) ? P_BAD : P_NEED; /* (a separator may start at 64 and not be whole) */
    if (sep - (s + i) > 64)
        return P_BAD;
    i = (size_t)(sep - s) + strlen(DS_SEP);
    const char *nl = memchr(s + i, '\n', n - i);
    if (!nl)
        return n - i > MAX_NAME ? P_BAD : P_NEED;
    const size_t name_at = i, name_len = (size_t)(nl - (s + i));
    if (name_len == 0 || name_len > MAX_NAME || memchr(s + name_at, 0, name_len))
        return P_BAD;
    i = name_len + name_at + 1;
    if ((m = starts(s, n, i, "```json")) != 1)
        return m == P_NEED ? P_NEED : P_BAD;
    i = skip_ws(s, n, i + 7);
    const long vl = value_len(s + i, n - i);
    if (vl < 0)
        return i == n ? P_NEED : vl;
    const size_t args_at = i;
    i = skip_ws(s, n, i + (size_t)vl);
    if ((m = i == n ? P_NEED : starts(s, n, i, "```")) != 1)
        return m == P_NEED ? P_NEED : P_BAD;
    i = skip_ws(s, n, i + 3);
    if ((m = i == n ? P_NEED : starts(s, n, i, DS_CALL_END)) != 1)
        return m == P_NEED ? P_NEED : P_BAD;
    char *args = args_text(s + args_at, (size_t)vl);
    if (!args)
        return P_BAD;
    out_call(o, dup_n(s + name_at, name_len), args);
    return (long)(i + strlen(DS_CALL_END));
}

static long unit(zl_chat_tool_format f, const char *s, size_t n, bool final, oai_tool_out *o)
{
    switch (f) {
    case ZL_TOOLFMT_LLAMA3: return unit_llama(s, n, o);
    case ZL_TOOLFMT_MISTRAL: return unit_mistral(s, n, o);
    case ZL_TOOLFMT_DEEPSEEK: return unit_deepseek(s, n, o);
    default: return unit_hermes(s, n, final, o);
    }
}

/* Where the first call marker of content s[0..n) starts (n: none), and *keep: how many bytes before n might
 * begin one (held back). */
static size_t marker_at(zl_chat_tool_format f, const char *s, size_t n, size_t *keep)
{
    const char *marks[2] = {NULL, NULL};
    switch (f) {
    case ZL_TOOLFMT_MISTRAL: marks[0] = MISTRAL_OPEN; break;
    case ZL_TOOLFMT_DEEPSEEK:
        marks[0] = DS_CALLS_BEGIN;
        marks[1] = DS_CALL_BEGIN;
        break;
    case ZL_TOOLFMT_LLAMA3: break; /* a call only opens the reply */
    default: marks[0] = HERMES_OPEN;
    }
    size_t at = n;
    *keep = 0;
    for (int k = 0; k < 2 && marks[k]; k++) {
        const char *m = find_in(s, n, marks[k]);
        if (m && (size_t)(m - s) < at)
            at = (size_t)(m - s);
        const size_t l = strlen(marks[k]);
        for (size_t p = l - 1; p > 0; p--)
            if (p <= n && p > *keep && !memcmp(s + n - p, marks[k], p)) {
                *keep = p;
                break;
            }
    }
    return at;
}

/* ---- the parser ---------------------------------------------------------------------------------------------- */

void oai_tools_init(oai_tool_parser *p, zl_chat_tool_format fmt, bool forced)
{
    memset(p, 0, sizeof *p);
    p->fmt = fmt;
    p->forced = forced;
    p->state = forced ? ST_CALLS : ST_CONTENT;
}

void oai_tools_free(oai_tool_parser *p)
{
    free(p->pend);
    p->pend = NULL;
    p->n_pend = p->cap_pend = 0;
}

static void drop(oai_tool_parser *p, size_t k)
{
    memmove(p->pend, p->pend + k, p->n_pend - k);
    p->n_pend -= k;
}

void oai_tools_feed(oai_tool_parser *p, const char *s, size_t n, bool final, oai_tool_out *out)
{
    if (p->oom) {
        out->oom = true;
        return;
    }
    if (p->n_pend + n + 1 > p->cap_pend) { /* never NULL, even for an empty feed */
        size_t cap = p->cap_pend ? p->cap_pend : 256;
        while (cap < p->n_pend + n + 1)
            cap *= 2;
        char *np = realloc(p->pend, cap);
        if (!np) {
            p->oom = out->oom = true;
            return;
        }
        p->pend = np;
        p->cap_pend = cap;
    }
    if (n)
        memcpy(p->pend + p->n_pend, s, n);
    p->n_pend += n;
    for (;;) {
        const char *b = p->pend;
        const size_t len = p->n_pend;
        if (p->state == ST_DROP) {
            p->n_pend = 0;
            return;
        }
        if (p->state == ST_TEXT) {
            out_content(out, b, len);
            p->n_pend = 0;
            return;
        }
        if (p->state == ST_CONTENT) {
            if (p->fmt == ZL_TOOLFMT_LLAMA3 && !p->started) {
                const size_t i = skip_ws(b, len, 0);
                if (i == len) {
                    if (final)
                        drop(p, len); /* whitespace alone */
                    return;
                }
                p->started = true;
                if (b[i] == '{' || starts(b, len, i, LLAMA_TAG) != 0) {
                    p->state = ST_CALLS; /* the whitespace stays, in case it is no call after all */
                    continue;
                }
            }
            size_t keep;
            const size_t at = marker_at(p->fmt, b, len, &keep);
            if (at < len) {
                size_t e = at;
                while (e > 0 && is_ws(b[e - 1]))
                    e--;
                out_content(out, b, e);
                drop(p, e); /* the whitespace stays: a call that does not parse gives it back as content */
                p->state = ST_CALLS;
                continue;
            }
            size_t e = final ? len : len - keep;
            if (!final)
                while (e > 0 && is_ws(b[e - 1]))
                    e--;
            out_content(out, b, e);
            drop(p, e);
            return;
        }
        /* ST_CALLS */
        const size_t i = skip_ws(b, len, 0);
        if (i == len) {
            if (final)
                drop(p, len);
            return;
        }
        const long u = unit(p->fmt, b + i, len - i, final, out);
        if (u == P_NEED && !final)
            return;
        if (u >= 0) {
            drop(p, i + (size_t)u);
            p->after_unit = true;
            continue;
        }
        /* not a unit: the calls are over; what follows is content (P_NONE: the whitespace before it dropped) or
         * was a call that does not parse (text, as it came). Under a tool_choice grammar the reply is calls only:
         * a last call cut short (max_tokens) is left out, not made content. */
        if (p->forced && u != P_NONE) {
            p->state = ST_DROP;
            continue;
        }
        if (u == P_NONE && p->after_unit)
            drop(p, i);
        p->state = u == P_NONE ? ST_CONTENT : ST_TEXT;
        if (u == P_NONE && p->fmt == ZL_TOOLFMT_LLAMA3)
            p->state = ST_TEXT; /* no second chance to open with a call */
    }
}

/* ---- grammars ------------------------------------------------------------------------------------------------ */

typedef struct sb {
    char *s;
    size_t n, cap;
    bool oom;
} sb;

static void sb_put(sb *b, const char *s)
{
    const size_t l = strlen(s);
    if (b->oom)
        return;
    if (b->n + l + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + l + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, l + 1);
    b->n += l;
}

/* s as a GBNF literal. */
static void sb_lit(sb *b, const char *s)
{
    sb_put(b, "\"");
    char e[8];
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            snprintf(e, sizeof e, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            snprintf(e, sizeof e, "\\x%02x", c);
        else
            snprintf(e, sizeof e, "%c", c);
        sb_put(b, e);
    }
    sb_put(b, "\"");
}

char *oai_tools_grammar(zl_chat_tool_format fmt, json_t *tools, const char *name, bool parallel, char *why,
                        size_t why_cap)
{
    const size_t n = json_array_size(tools);
    json_t **schemas = calloc(n ? n : 1, sizeof *schemas);
    sb h = {0};
    if (!schemas) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    const char *open = "", *close = "", *sep = "\n", *lead = "", *argkey = "\"arguments\": ", *tail = "}";
    switch (fmt) {
    case ZL_TOOLFMT_LLAMA3:
        argkey = "\"parameters\": ";
        sep = "; ";
        break;
    case ZL_TOOLFMT_MISTRAL:
        open = "[";
        close = "]";
        sep = ", ";
        break;
    case ZL_TOOLFMT_DEEPSEEK:
        open = DS_CALLS_BEGIN;
        close = DS_CALLS_END;
        lead = "<｜tool▁call▁begin｜>function<｜tool▁sep｜>";
        tail = "\n```<｜tool▁call▁end｜>";
        break;
    default:
        lead = "<tool_call>\n";
        tail = "}\n</tool_call>";
    }
    sb_put(&h, "root ::= ");
    sb_lit(&h, open);
    sb_put(&h, " call");
    if (parallel) {
        sb_put(&h, " ( ");
        sb_lit(&h, sep);
        sb_put(&h, " call )*");
    }
    sb_put(&h, " ");
    sb_lit(&h, close);
    sb_put(&h, "\ncall ::= ");
    sb_lit(&h, lead);
    sb_put(&h, " ( ");
    size_t alts = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_object_get(json_array_get(tools, i), "function");
        const char *fname = json_string_value(json_object_get(f, "name"));
        if (!fname || (name && strcmp(fname, name)))
            continue;
        json_t *params = json_object_get(f, "parameters");
        schemas[i] = json_is_object(params) ? params : NULL;
        char *q = zl_pyjson_string(fname, strlen(fname));
        if (!q) {
            h.oom = true;
            break;
        }
        char *pre;
        if (fmt == ZL_TOOLFMT_DEEPSEEK) {
            pre = malloc(strlen(fname) + 16);
            if (pre)
                snprintf(pre, strlen(fname) + 16, "%s\n```json\n", fname);
        } else {
            pre = malloc(strlen(q) + 32);
            if (pre)
                snprintf(pre, strlen(q) + 32, "{\"name\": %s, %s", q, argkey);
        }
        free(q);
        if (!pre) {
            h.oom = true;
            break;
        }
        char num[32];
        snprintf(num, sizeof num, " args%zu", i);
        if (alts++)
            sb_put(&h, " | ");
        sb_lit(&h, pre);
        sb_put(&h, num);
        free(pre);
    }
    sb_put(&h, " ) ");
    sb_lit(&h, tail);
    sb_put(&h, "\n");
    char *g = NULL;
    if (h.oom)
        snprintf(why, why_cap, "out of memory");
    else if (!alts && name)
        snprintf(why, why_cap, "tool_choice names the function '%.64s', which is not among the tools", name);
    else if (!alts)
        snprintf(why, why_cap, "tool_choice needs tools to call");
    else
        g = oai_schema_grammar_tools(schemas, n, h.s, why, why_cap);
    free(h.s);
    free(schemas);
    return g;
}

void oai_tools_call_id(zl_chat_tool_format fmt, uint64_t *rng, char *buf)
{
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const int len = fmt == ZL_TOOLFMT_MISTRAL ? 9 : 24;
    size_t o = 0;
    if (fmt != ZL_TOOLFMT_MISTRAL) {
        memcpy(buf, "call_", 5);
        o = 5;
    }
    for (int k = 0; k < len; k++) {
        uint64_t x = *rng += 0x9e3779b97f4a7c15ull; /* splitmix64 */
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        x ^= x >> 31;
        buf[o++] = al[x % (sizeof al - 1)];
    }
    buf[o] = 0;
}
