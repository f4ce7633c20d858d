/*
 * pyjson.c - Python json.dumps text of jansson values (see pyjson.h).
 */
#include "tokenizer/pyjson.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
    char *s;
    size_t n, cap;
    bool bad;
} out;

static void put_n(out *o, const char *s, size_t l)
{
    if (o->bad)
        return;
    if (o->n + l + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 128;
        while (cap < o->n + l + 1)
            cap *= 2;
        char *ns = realloc(o->s, cap);
        if (!ns) {
            o->bad = true;
            return;
        }
        o->s = ns;
        o->cap = cap;
    }
    memcpy(o->s + o->n, s, l);
    o->n += l;
    o->s[o->n] = 0;
}

static void put(out *o, const char *s) { put_n(o, s, strlen(s)); }

static void put_string(out *o, const char *s, size_t n)
{
    put(o, "\"");
    size_t run = 0; /* bytes written as themselves, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc)
            continue;
        put_n(o, s + run, i - run);
        put(o, esc);
        run = i + 1;
    }
    put_n(o, s + run, n - run);
    put(o, "\"");
}

/* Python's repr(float): the fewest significant digits that read back to d, fixed notation for decimal exponents
 * -4 .. 15 (always with a fraction: "1.0"), else d.ddde+XX. */
static void put_real(out *o, double d)
{
    if (isnan(d) || isinf(d)) { /* json.dumps writes these (jansson never parses them) */
        put(o, isnan(d) ? "NaN" : d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char e[40];
    for (int p = 0; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e: [-]d[.ddd]e[+-]XX */
    const char *q = e;
    char digits[24];
    size_t nd = 0;
    bool neg = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9' && nd < sizeof digits - 1)
            digits[nd++] = *q;
    const int x = *q == 'e' ? atoi(q + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    if (neg)
        put(o, "-");
    if (x >= -4 && x < 16) {
        if (x < 0) {
            put(o, "0.");
            for (int k = 0; k < -x - 1; k++)
                put(o, "0");
            put_n(o, digits, nd);
        } else {
            const size_t ip = (size_t)x + 1; /* integer digits */
            for (size_t k = 0; k < ip; k++)
                put_n(o, k < nd ? digits + k : "0", 1);
            put(o, ".");
            if (nd > ip)
                put_n(o, digits + ip, nd - ip);
            else
                put(o, "0");
        }
        return;
    }
    put_n(o, digits, 1);
    if (nd > 1) {
        put(o, ".");
        put_n(o, digits + 1, nd - 1);
    }
    char ex[16];
    snprintf(ex, sizeof ex, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
    put(o, ex);
}

static void newline(out *o, int indent, int level)
{
    put(o, "\n");
    for (int k = 0; k < indent * level; k++)
        put(o, " ");
}

static void dump(out *o, const json_t *v, int indent, int level)
{
    if (level > 256) {
        o->bad = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (json_object_size(v) == 0) {
            put(o, "{}");
            return;
        }
        put(o, "{");
        bool first = true;
        const char *k;
        json_t *val;
        /* jansson's iteration follows insertion order */
        json_object_foreach((json_t *)v, k, val) {
            if (!first)
                put(o, indent >= 0 ? "," : ", ");
            if (indent >= 0)
                newline(o, indent, level + 1);
            put_string(o, k, strlen(k));
            put(o, ": ");
            dump(o, val, indent, level + 1);
            first = false;
        }
        if (indent >= 0)
            newline(o, indent, level);
        put(o, "}");
        return;
    }
    case JSON_ARRAY: {
        if (json_array_size(v) == 0) {
            put(o, "[]");
            return;
        }
        put(o, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                put(o, indent >= 0 ? "," : ", ");
            if (indent >= 0)
                newline(o, indent, level + 1);
            dump(o, json_array_get(v, i), indent, level + 1);
        }
        if (indent >= 0)
            newline(o, indent, level);
        put(o, "]");
        return;
    }
    case JSON_STRING: put_string(o, json_string_value(v), json_string_length(v)); return;
    case JSON_INTEGER: {
        char b[32];
        snprintf(b, sizeof b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        put(o, b);
        return;
    }
    case JSON_REAL: put_real(o, json_real_value(v)); return;
    case JSON_TRUE: put(o, "true"); return;
    case JSON_FALSE: put(o, "false"); return;
    case JSON_NULL: put(o, "null"); return;
    }
}

char *zl_pyjson_dumps(const json_t *v, int indent)
{
    out o = {0};
    dump(&o, v, indent, 0);
    if (o.bad || !o.s) {
        free(o.s);
        return NULL;
    }
    return o.s;
}

char *zl_pyjson_string(const char *s, size_t n)
{
    out o = {0};
    put_string(&o, s, n);
    if (o.bad) {
        free(o.s);
        return NULL;
    }
    return o.s;
}
