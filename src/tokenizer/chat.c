/*
 * chat.c - chat template recognition and native rendering (see chat.h for the families).
 *
 * Recognition only searches the template text for fixed strings; the one thing it extracts, a default system
 * prompt, must sit alone inside a single quoted string literal of bounded length, with only simple escapes, and
 * the template must test messages[0]'s role. Nothing from the template is ever evaluated.
 * Pure functions; no state.
 */
#include "tokenizer/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char IM_START[] = "<|im_start|>";
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

int zl_chat_tmpl_detect(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err)
{
    memset(out, 0, sizeof *out);
    if (!text || !contains(text, len, IM_START) || !contains(text, len, IM_END))
        return zl_err_set(err, ZL_EUNSUPPORTED,
                          "chat template not recognised (known: chatml); name one with --chat-template");
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

int zl_chat_tmpl_from_name(const char *name, zl_chat_tmpl *out, zl_err *err)
{
    memset(out, 0, sizeof *out);
    if (name && strcmp(name, "chatml") == 0) {
        out->kind = ZL_TMPL_CHATML;
        return ZL_OK;
    }
    return zl_err_set(err, ZL_EINVAL, "unknown chat template '%s' (known: chatml)", name ? name : "(null)");
}

const char *zl_chat_tmpl_name(zl_chat_tmpl t)
{
    switch (t.kind) {
    case ZL_TMPL_CHATML: return "chatml";
    default: return "none";
    }
}

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s)
{
    size_t l = strlen(s);
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
    memcpy(b->s + b->n, s, l + 1);
    b->n += l;
}

static bool known_role(const char *r)
{
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0;
}

int zl_chat_render(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out, zl_err *err)
{
    *out = NULL;
    if (t.kind != ZL_TMPL_CHATML)
        return zl_err_set(err, ZL_EINVAL, "chat render: no template");
    if (n && !msgs)
        return zl_err_set(err, ZL_EINVAL, "chat render: NULL messages");
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return zl_err_set(err, ZL_EINVAL, "chat render: message %zu has no role or content", i);
        if (!known_role(msgs[i].role))
            return zl_err_set(err, ZL_EINVAL, "chat render: message %zu has unknown role '%.32s'", i, msgs[i].role);
    }
    t.default_system[ZL_CHAT_SYSTEM_MAX - 1] = 0;
    sbuf b = {0};
    put(&b, "");
    if (n > 0 && t.default_system[0] && strcmp(msgs[0].role, "system") != 0) {
        put(&b, "<|im_start|>system\n");
        put(&b, t.default_system);
        put(&b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        put(&b, IM_START);
        put(&b, msgs[i].role);
        put(&b, "\n");
        put(&b, msgs[i].content);
        put(&b, IM_END);
        put(&b, "\n");
    }
    if (add_assistant)
        put(&b, "<|im_start|>assistant\n");
    if (b.oom) {
        free(b.s);
        return zl_err_set(err, ZL_ENOMEM, "chat render: out of memory");
    }
    *out = b.s;
    return ZL_OK;
}
