/*
 * schema.c - JSON Schema to GBNF (schema.h).
 *
 * Every schema node becomes a rule `sN` (N in the order nodes are met); the rules of JSON's building blocks
 * (ws, string, number, ..., value) are written once at the end. Objects keep their properties in the schema's
 * order, with commas placed by two rule chains over the properties k..n: aK (nothing written yet) and bK
 * (something written): a required property is written in both, an optional one may be skipped in both.
 */
#include "server/schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

enum { MAX_NESTING = 64 };

typedef struct gen {
    char *s;
    size_t n, cap;
    bool oom, failed;
    int next_rule;
    json_t *root; /* for $ref */
    char *why;
    size_t why_cap;
} gen;

static void put(gen *g, const char *fmt, ...)
{
    if (g->oom || g->failed)
        return;
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        const int k = vsnprintf(g->s ? g->s + g->n : NULL, g->s ? g->cap - g->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            g->oom = true;
            return;
        }
        if (g->s && g->n + (size_t)k < g->cap) {
            g->n += (size_t)k;
            return;
        }
        size_t cap = g->cap ? g->cap : 1024;
        while (cap <= g->n + (size_t)k)
            cap *= 2;
        char *ns = realloc(g->s, cap);
        if (!ns) {
            g->oom = true;
            return;
        }
        g->s = ns;
        g->cap = cap;
    }
}

static int refuse(gen *g, const char *fmt, const char *what)
{
    if (!g->failed)
        snprintf(g->why, g->why_cap, fmt, what);
    g->failed = true;
    return -1;
}

/* A GBNF literal of the bytes of s (quotes, backslashes and control bytes escaped). */
static void put_literal(gen *g, const char *s, size_t n)
{
    put(g, "\"");
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            put(g, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            put(g, "\\x%02x", c);
        else
            put(g, "%c", c);
    }
    put(g, "\"");
}

/* A JSON value written as a literal (enum and const values, property names), compact as json_dumps writes it. */
static void put_json_literal(gen *g, json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) {
        g->oom = true;
        return;
    }
    put_literal(g, t, strlen(t));
    free(t);
}

static int node(gen *g, json_t *sch, int depth);

static bool known_annotation(const char *k)
{
    static const char *const ok[] = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                     "$defs", "definitions", "deprecated", "readOnly", "writeOnly"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(k, ok[i]))
            return true;
    return false;
}

/* The keywords of sch each supported somewhere (the type-specific ones are read where they apply). */
static int check_keywords(gen *g, json_t *sch)
{
    static const char *const kw[] = {"type", "properties", "required", "additionalProperties", "enum", "const",
                                     "items", "minItems", "maxItems", "minLength", "maxLength", "format", "anyOf",
                                     "oneOf", "$ref", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    const char *k;
    json_t *v;
    json_object_foreach(sch, k, v) {
        bool ok = known_annotation(k);
        for (size_t i = 0; i < sizeof kw / sizeof kw[0] && !ok; i++)
            ok = !strcmp(k, kw[i]);
        if (!ok)
            return refuse(g, "json_schema keyword '%.64s' is not supported", k);
    }
    return 0;
}

static int get_count(gen *g, json_t *sch, const char *key, long dflt, long *out)
{
    json_t *v = json_object_get(sch, key);
    *out = dflt;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000)
        return refuse(g, "json_schema '%s' must be an integer in [0, 10000]", key);
    *out = (long)json_integer_value(v);
    return 0;
}

static void put_repeat(gen *g, long lo, long hi)
{
    if (hi < 0)
        put(g, "{%ld,}", lo);
    else
        put(g, "{%ld,%ld}", lo, hi);
}

static const char *const BOUNDS[] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
enum { INT_DIGITS = 16 }; /* the integer rule's longest: [1-9] [0-9]{0,15} */

/* Decimal strings lo and hi of n digits each, lo <= hi: a GBNF sequence for the n-digit strings between them. */
static void put_same_len(gen *g, const char *lo, const char *hi, size_t n)
{
    while (n && lo[0] == hi[0]) {
        put(g, "\"%c\" ", lo[0]);
        lo++;
        hi++;
        n--;
    }
    if (!n)
        return;
    char nines[INT_DIGITS + 1], zeros[INT_DIGITS + 1];
    memset(nines, '9', n - 1);
    memset(zeros, '0', n - 1);
    nines[n - 1] = zeros[n - 1] = 0;
    const bool lo_zeros = !strncmp(lo + 1, zeros, n - 1), hi_nines = !strncmp(hi + 1, nines, n - 1);
    char start = lo[0], end = hi[0];
    bool alt = false;
    put(g, "( ");
    if (!lo_zeros) { /* lo's first digit, then from the rest of lo up */
        put(g, "\"%c\" ", lo[0]);
        put_same_len(g, lo + 1, nines, n - 1);
        start++;
        alt = true;
    }
    if (!hi_nines)
        end--;
    if (start <= end) {
        put(g, alt ? "| " : "");
        put(g, start == end ? "\"%c\" " : "[%c-%c] ", start, end);
        if (n > 1)
            put(g, "[0-9]{%zu} ", n - 1);
        alt = true;
    }
    if (!hi_nines) { /* hi's first digit, then up to the rest of hi */
        put(g, alt ? "| " : "");
        put(g, "\"%c\" ", hi[0]);
        put_same_len(g, zeros, hi + 1, n - 1);
    }
    put(g, ") ");
}

/* The integers a .. b (0 <= a; b < 0: no bound) in decimal without leading zeros, as alternatives by length. */
static void put_nonneg(gen *g, long long a, long long b)
{
    char la[24], lb[24];
    const int da = snprintf(la, sizeof la, "%lld", a);
    const int db = b < 0 ? INT_DIGITS : snprintf(lb, sizeof lb, "%lld", b);
    bool alt = false;
    long long p = 1; /* 10^(len-1) */
    for (int k = 1; k < da; k++)
        p *= 10;
    put(g, "( ");
    for (int len = da; len <= db; len++, p *= 10) {
        const long long lo = len == da ? a : p, hi = b >= 0 && len == db ? b : p * 10 - 1;
        if (lo > hi)
            continue;
        char sl[24], sh[24];
        snprintf(sl, sizeof sl, "%lld", lo);
        snprintf(sh, sizeof sh, "%lld", hi);
        put(g, alt ? "| " : "");
        put_same_len(g, sl, sh, (size_t)len);
        alt = true;
    }
    put(g, ") ");
}

/* The tightest of sch's minimum / exclusiveMinimum (*lo, *lo_x: exclusive) and maximum / exclusiveMaximum: 1 when
 * it has some, 0 when none (lo / hi stay -inf / inf), -1 when one is not a number. */
static int read_bounds(gen *g, json_t *sch, double *lo, bool *lo_x, double *hi, bool *hi_x)
{
    *lo = -INFINITY, *hi = INFINITY;
    *lo_x = *hi_x = false;
    int any = 0;
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(sch, BOUNDS[k]);
        if (!v)
            continue;
        if (!json_is_number(v))
            return refuse(g, "json_schema '%s' must be a number", BOUNDS[k]);
        const double x = json_number_value(v);
        any = 1;
        if (k == 0 || k == 2) {
            if (x > *lo || (x == *lo && k == 2)) {
                *lo = x;
                *lo_x = k == 2;
            }
        } else if (x < *hi || (x == *hi && k == 3)) {
            *hi = x;
            *hi_x = k == 3;
        }
    }
    return any;
}

/* An integer rule with minimum / maximum / exclusiveMinimum / exclusiveMaximum: 1 when sch has none. */
static int integer_bounds(gen *g, json_t *sch, int r)
{
    const long long cap = 9999999999999999LL; /* INT_DIGITS nines */
    double blo, bhi;
    bool blo_x, bhi_x;
    const int any = read_bounds(g, sch, &blo, &blo_x, &bhi, &bhi_x);
    if (any <= 0)
        return any < 0 ? -1 : 1;
    long long lo = -cap, hi = cap;
    if (isfinite(blo)) { /* the least integer >= blo, or > blo */
        double c = ceil(blo);
        if (blo_x && c == blo)
            c += 1;
        lo = c > (double)cap ? cap + 1 : c < (double)-cap ? -cap : (long long)c;
    }
    if (isfinite(bhi)) { /* the greatest integer <= bhi, or < bhi */
        double f = floor(bhi);
        if (bhi_x && f == bhi)
            f -= 1;
        hi = f < (double)-cap ? -cap - 1 : f > (double)cap ? cap : (long long)f;
    }
    if (lo > hi)
        return refuse(g, "json_schema %s: no integer lies within its bounds (or beyond 16 digits)", "integer");
    put(g, "s%d ::= ( ", r);
    if (hi >= 0)
        put_nonneg(g, lo > 0 ? lo : 0, hi);
    if (lo < 0) {
        put(g, hi >= 0 ? "| \"-\" " : "\"-\" ");
        put_nonneg(g, hi < 0 ? -hi : 1, -lo);
    }
    put(g, ") ws\n");
    return 0;
}

/* Number bounds. A bound's magnitude is a decimal: its integer part and its fraction digits (no trailing zeros),
 * the shortest decimal that reads back as the schema's double (0.1 means 0.1). Numbers under bounds are written
 * without an exponent; each bound is met by digit ranges, as integers' are, and fractions compare digit by digit. */
enum { FRAC_TAIL = 15, FRAC_MAX = 40 }; /* digits a fraction may add past a bound's own; a bound's most */

typedef struct dec {
    long long ip;            /* integer part (< 10^INT_DIGITS) */
    char fr[FRAC_MAX + 1];   /* fraction digits */
} dec;

/* |x| as a dec; false when its integer part has more than INT_DIGITS digits or its fraction more than FRAC_MAX. */
static bool to_dec(double x, dec *d)
{
    char buf[40];
    x = fabs(x);
    for (int p = 1; p <= 17; p++) { /* the shortest that reads back */
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    char digits[20];
    int nd = 0;
    const char *c = buf;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            digits[nd++] = *c;
    const int e = *c == 'e' ? atoi(c + 1) : 0; /* x = d0.d1d2... * 10^e */
    if (e >= INT_DIGITS)
        return false;
    d->ip = 0;
    int k = 0;
    for (int i = 0; i <= e; i++)
        d->ip = d->ip * 10 + (i < nd ? digits[i] - '0' : 0);
    k = e >= 0 ? e + 1 : 0;
    int nf = 0;
    for (int i = e + 1; i < 0; i++) { /* zeros between the point and the first digit */
        if (nf >= FRAC_MAX)
            return false;
        d->fr[nf++] = '0';
    }
    for (; k < nd; k++) {
        if (nf >= FRAC_MAX)
            return false;
        d->fr[nf++] = digits[k];
    }
    while (nf > 0 && d->fr[nf - 1] == '0')
        nf--;
    d->fr[nf] = 0;
    return true;
}

static bool all_zero(const char *f)
{
    for (; *f; f++)
        if (*f != '0')
            return false;
    return true;
}

/* Whether the empty fraction (value 0) lies within: 0.lo <(=) 0 <(=) 0.hi, NULL for an open side. */
static bool zero_ok(const char *lo, bool lo_x, const char *hi, bool hi_x)
{
    return (!lo || (all_zero(lo) && !lo_x)) && (!hi || !hi_x || !all_zero(hi));
}

/* Non-empty digit strings t with 0.lo <(=) 0.t <(=) 0.hi (NULL: that side open), each at most about FRAC_TAIL
 * digits longer than the bounds. Returns whether it wrote anything (false: no such t, nothing written). */
static bool put_frac(gen *g, const char *lo, bool lo_x, const char *hi, bool hi_x)
{
    if (lo && !*lo && !lo_x)
        lo = NULL; /* t >= 0.000...: no constraint */
    if (hi && !*hi) { /* t <= 0.000... (or <): zeros only, or nothing */
        if (hi_x || lo)
            return false;
        put(g, "\"0\"{1,%d} ", FRAC_TAIL + 1);
        return true;
    }
    if (!lo && !hi) {
        put(g, "[0-9]{1,%d} ", FRAC_TAIL + 1);
        return true;
    }
    if (lo && !*lo && !hi) { /* t > 0.000...: a digit other than 0 somewhere */
        put(g, "\"0\"{0,%d} [1-9] [0-9]{0,%d} ", FRAC_TAIL, FRAC_TAIL);
        return true;
    }
    /* by the first digit: below / above a tight bound's digit nothing more is asked */
    const char fl = lo ? (*lo ? *lo : '0') : '0', fh = hi ? *hi : '9';
    const char *lr = lo ? (*lo ? lo + 1 : lo) : NULL, *hr = hi ? hi + 1 : NULL;
    const size_t mark = g->n;
    bool any = false;
    put(g, "( ");
    for (char d = fl; d <= fh; d++) {
        const bool tl = lo && d == fl, th = hi && d == fh;
        if (!tl && !th) { /* the free middle digits as one class */
            char e = d;
            while (e + 1 <= fh && !(hi && e + 1 == fh))
                e++;
            put(g, any ? "| " : "");
            put(g, d == e ? "\"%c\" [0-9]{0,%d} " : "[%c-%c] [0-9]{0,%d} ", d, e, FRAC_TAIL);
            any = true;
            d = e;
            continue;
        }
        const char *nlo = tl ? lr : NULL, *nhi = th ? hr : NULL;
        const bool nlx = tl && lo_x, nhx = th && hi_x;
        const size_t at = g->n;
        put(g, any ? "| " : "");
        put(g, "\"%c\" ", d);
        const bool zero = zero_ok(nlo, nlx, nhi, nhx);
        const size_t rest = g->n;
        put(g, "( ");
        const bool more = put_frac(g, nlo, nlx, nhi, nhx);
        if (more) {
            put(g, zero ? ")? " : ") ");
        } else {
            g->n = rest;
            if (!zero)
                g->n = at; /* no t starts with d */
        }
        any |= g->n > at;
    }
    if (!any) {
        g->n = mark;
        return false;
    }
    put(g, ") ");
    return true;
}

/* ( "." fraction )? or "." fraction for the fractions of put_frac; false (nothing written) when none fits. */
static bool put_frac_part(gen *g, const char *lo, bool lo_x, const char *hi, bool hi_x)
{
    const bool zero = zero_ok(lo, lo_x, hi, hi_x);
    const size_t at = g->n;
    put(g, "( \".\" ");
    if (put_frac(g, lo, lo_x, hi, hi_x)) {
        put(g, zero ? ")? " : ") ");
        return true;
    }
    g->n = at;
    return zero;
}

/* Magnitudes m with lo <(=) m <(=) hi (hi NULL: open), lo <= hi, as alternatives; whether it wrote any. */
static bool put_magnitude(gen *g, const dec *lo, bool lo_x, const dec *hi, bool hi_x)
{
    bool any = false;
    size_t at = g->n;
    const long long top = hi ? hi->ip : -1;
    /* the integer part of lo, with the fractions above lo's (and below hi's when it is hi's too) */
    put(g, "( \"%lld\" ", lo->ip);
    if (put_frac_part(g, lo->fr, lo_x, hi && hi->ip == lo->ip ? hi->fr : NULL, hi_x)) {
        put(g, ") ");
        any = true;
    } else {
        g->n = at;
    }
    if (hi && hi->ip == lo->ip)
        return any;
    /* the integer parts strictly between, any fraction */
    if (!hi || hi->ip > lo->ip + 1) {
        put(g, any ? "| " : "");
        put_nonneg(g, lo->ip + 1, hi ? top - 1 : -1);
        put(g, "( \".\" [0-9]{1,%d} )? ", INT_DIGITS);
        any = true;
    }
    if (hi) { /* hi's integer part, with the fractions below hi's */
        at = g->n;
        put(g, any ? "| " : "");
        put(g, "( \"%lld\" ", hi->ip);
        if (put_frac_part(g, NULL, false, hi->fr, hi_x)) {
            put(g, ") ");
            any = true;
        } else {
            g->n = at;
        }
    }
    return any;
}

/* A number rule with minimum / maximum / exclusiveMinimum / exclusiveMaximum: 1 when sch has none. */
static int number_bounds(gen *g, json_t *sch, int r)
{
    double lo, hi;
    bool lo_x, hi_x;
    const int any = read_bounds(g, sch, &lo, &lo_x, &hi, &hi_x);
    if (any <= 0)
        return any < 0 ? -1 : 1;
    if (lo > hi || (lo == hi && (lo_x || hi_x)))
        return refuse(g, "json_schema %s: no number lies within its bounds", "number");
    dec dlo, dhi;
    const bool lo_in = isinf(lo) || to_dec(lo, &dlo), hi_in = isinf(hi) || to_dec(hi, &dhi);
    if ((!lo_in && (lo > 0 || !isfinite(lo))) || (!hi_in && hi < 0))
        return refuse(g, "json_schema %s: a bound beyond 16 integer digits or 40 fraction digits", "number");
    if (!lo_in) /* a lower bound below -10^16: no bound within the digits numbers may have */
        lo = -INFINITY;
    if (!hi_in)
        hi = INFINITY;
    const size_t start = g->n;
    put(g, "s%d ::= ( ", r);
    bool alt = false;
    if (hi > 0 || (hi == 0 && !hi_x)) { /* the part >= 0 */
        const dec zero = {0, ""};
        const bool pos_lo = lo > 0 || (lo == 0 && lo_x);
        alt = put_magnitude(g, pos_lo ? &dlo : &zero, pos_lo && lo_x, isinf(hi) ? NULL : &dhi, hi_x);
    }
    if (lo < 0) { /* the part < 0: "-" and magnitudes from |min(hi, 0)| (0 itself excluded: no "-0") to |lo| */
        const dec zero = {0, ""};
        const bool neg_hi = hi < 0;
        const size_t at = g->n;
        put(g, alt ? "| \"-\" ( " : "\"-\" ( ");
        if (put_magnitude(g, neg_hi ? &dhi : &zero, neg_hi ? hi_x : true, isinf(lo) ? NULL : &dlo, lo_x)) {
            put(g, ") ");
            alt = true;
        } else {
            g->n = at;
        }
    }
    if (!alt) {
        g->n = start;
        return refuse(g, "json_schema %s: no number lies within its bounds", "number");
    }
    put(g, ") ws\n");
    return 0;
}

/* A rule for one type of sch (type_name), written as rule r. */
static int typed(gen *g, json_t *sch, const char *t, int r, int depth)
{
    if (!strcmp(t, "integer")) {
        const int b = integer_bounds(g, sch, r);
        if (b <= 0)
            return b;
    }
    if (!strcmp(t, "number")) {
        const int b = number_bounds(g, sch, r);
        if (b <= 0)
            return b;
    }
    if (!strcmp(t, "null") || !strcmp(t, "boolean") || !strcmp(t, "number") || !strcmp(t, "integer")) {
        put(g, "s%d ::= %s\n", r, t);
        return 0;
    }
    if (!strcmp(t, "string")) {
        json_t *f = json_object_get(sch, "format");
        if (f) {
            const char *fn = json_is_string(f) ? json_string_value(f) : "";
            if (strcmp(fn, "date") && strcmp(fn, "time") && strcmp(fn, "date-time") && strcmp(fn, "uuid"))
                return refuse(g, "json_schema format '%.64s' is not supported (date, time, date-time, uuid)", fn);
            put(g, "s%d ::= \"\\\"\" fmt-%s \"\\\"\" ws\n", r, fn);
            return 0;
        }
        long lo, hi;
        if (get_count(g, sch, "minLength", 0, &lo) || get_count(g, sch, "maxLength", -1, &hi))
            return -1;
        if (hi >= 0 && hi < lo)
            return refuse(g, "json_schema %s: maxLength is below minLength", "string");
        put(g, "s%d ::= \"\\\"\" char", r);
        put_repeat(g, lo, hi);
        put(g, " \"\\\"\" ws\n");
        return 0;
    }
    if (!strcmp(t, "array")) {
        long lo, hi;
        if (get_count(g, sch, "minItems", 0, &lo) || get_count(g, sch, "maxItems", -1, &hi))
            return -1;
        if (hi >= 0 && hi < lo)
            return refuse(g, "json_schema %s: maxItems is below minItems", "array");
        json_t *items = json_object_get(sch, "items");
        int item = -1;
        if (items && (item = node(g, items, depth + 1)) < 0)
            return -1;
        char it[32];
        snprintf(it, sizeof it, item < 0 ? "value" : "s%d", item);
        if (hi == 0) {
            put(g, "s%d ::= \"[\" ws \"]\" ws\n", r);
        } else if (lo == 0) {
            put(g, "s%d ::= \"[\" ws ( %s ( \",\" ws %s )", r, it, it);
            put_repeat(g, 0, hi < 0 ? -1 : hi - 1);
            put(g, " )? \"]\" ws\n");
        } else {
            put(g, "s%d ::= \"[\" ws %s ( \",\" ws %s )", r, it, it);
            put_repeat(g, lo - 1, hi < 0 ? -1 : hi - 1);
            put(g, " \"]\" ws\n");
        }
        return 0;
    }
    if (!strcmp(t, "object")) {
        json_t *props = json_object_get(sch, "properties"), *req = json_object_get(sch, "required");
        json_t *ap = json_object_get(sch, "additionalProperties");
        if (props && !json_is_object(props))
            return refuse(g, "json_schema '%s' must be an object", "properties");
        if (req && !json_is_array(req))
            return refuse(g, "json_schema '%s' must be an array of names", "required");
        if (ap && !json_is_boolean(ap))
            return refuse(g, "json_schema '%s' other than true / false is not supported", "additionalProperties");
        const size_t n = props ? json_object_size(props) : 0;
        if (n == 0 && !(ap && json_is_false(ap))) {
            put(g, "s%d ::= object\n", r);
            return 0;
        }
        for (size_t i = 0; req && i < json_array_size(req); i++) {
            json_t *name = json_array_get(req, i);
            if (!json_is_string(name) || !json_object_get(props, json_string_value(name)))
                return refuse(g, "json_schema 'required' names %.64s, which is not in 'properties'",
                              json_is_string(name) ? json_string_value(name) : "a non-string");
        }
        /* the value rule of each property, then the two chains */
        int *vr = calloc(n ? n : 1, sizeof *vr);
        bool *required = calloc(n ? n : 1, sizeof *required);
        const char **names = calloc(n ? n : 1, sizeof *names);
        if (!vr || !required || !names) {
            free(vr);
            free(required);
            free(names);
            g->oom = true;
            return -1;
        }
        size_t i = 0;
        const char *k;
        json_t *v;
        int rc = 0;
        json_object_foreach(props, k, v) {
            names[i] = k;
            for (size_t j = 0; req && j < json_array_size(req); j++)
                required[i] |= !strcmp(json_string_value(json_array_get(req, j)), k);
            if ((vr[i] = node(g, v, depth + 1)) < 0) {
                rc = -1;
                break;
            }
            i++;
        }
        for (i = 0; rc == 0 && i < n; i++) {
            /* kv: "name" ws ":" ws value */
            json_t *nm = json_string(names[i]);
            put(g, "s%d-kv%zu ::= ", r, i);
            put_json_literal(g, nm);
            json_decref(nm);
            put(g, " ws \":\" ws s%d\n", vr[i]);
            /* aK and bK over properties i..n-1: a = nothing written yet, b = something written */
            put(g, "s%d-a%zu ::= s%d-kv%zu s%d-b%zu", r, i, r, i, r, i + 1);
            put(g, required[i] ? "\n" : " | s%d-a%zu\n", r, i + 1);
            put(g, "s%d-b%zu ::= \",\" ws s%d-kv%zu s%d-b%zu", r, i, r, i, r, i + 1);
            put(g, required[i] ? "\n" : " | s%d-b%zu\n", r, i + 1);
        }
        if (rc == 0) {
            put(g, "s%d-a%zu ::= \"\"\ns%d-b%zu ::= \"\"\n", r, n, r, n);
            put(g, "s%d ::= \"{\" ws s%d-a0 \"}\" ws\n", r, r);
        }
        free(vr);
        free(required);
        free(names);
        return rc;
    }
    return refuse(g, "json_schema type '%.32s' is not one of null, boolean, number, integer, string, array, object",
                  t);
}

/* Writes the rule for sch; returns its number, or -1 (g->failed / g->oom set). */
static int node(gen *g, json_t *sch, int depth)
{
    if (g->failed || g->oom)
        return -1;
    if (depth > MAX_NESTING)
        return refuse(g, "json_schema nested deeper than %s levels (or a $ref cycle)", "64");
    const int r = g->next_rule++;
    if (json_is_true(sch) || (json_is_object(sch) && json_object_size(sch) == 0)) {
        put(g, "s%d ::= value\n", r);
        return r;
    }
    if (!json_is_object(sch))
        return refuse(g, "a json_schema %s must be an object or true", "node");
    if (check_keywords(g, sch))
        return -1;
    json_t *ref = json_object_get(sch, "$ref");
    if (ref) {
        const char *p = json_is_string(ref) ? json_string_value(ref) : "";
        const char *name = !strncmp(p, "#/$defs/", 8) ? p + 8 : !strncmp(p, "#/definitions/", 14) ? p + 14 : NULL;
        json_t *defs = json_object_get(g->root, !strncmp(p, "#/$defs/", 8) ? "$defs" : "definitions");
        json_t *target = name && json_is_object(defs) ? json_object_get(defs, name) : NULL;
        if (!target)
            return refuse(g, "json_schema $ref '%.64s' is not a '#/$defs/NAME' of this schema", p);
        const int t = node(g, target, depth + 1);
        if (t < 0)
            return -1;
        put(g, "s%d ::= s%d\n", r, t);
        return r;
    }
    json_t *c = json_object_get(sch, "const");
    if (c) {
        put(g, "s%d ::= ", r);
        put_json_literal(g, c);
        put(g, " ws\n");
        return r;
    }
    json_t *en = json_object_get(sch, "enum");
    if (en) {
        if (!json_is_array(en) || json_array_size(en) == 0)
            return refuse(g, "json_schema '%s' must be a non-empty array", "enum");
        put(g, "s%d ::= (", r);
        for (size_t i = 0; i < json_array_size(en); i++) {
            put(g, i ? " | " : " ");
            put_json_literal(g, json_array_get(en, i));
        }
        put(g, " ) ws\n");
        return r;
    }
    json_t *any = json_object_get(sch, "anyOf");
    if (!any)
        any = json_object_get(sch, "oneOf");
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            return refuse(g, "json_schema '%s' must be a non-empty array", "anyOf / oneOf");
        const size_t n = json_array_size(any);
        int *alt = malloc(n * sizeof *alt);
        if (!alt) {
            g->oom = true;
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if ((alt[i] = node(g, json_array_get(any, i), depth + 1)) < 0) {
                free(alt);
                return -1;
            }
        put(g, "s%d ::=", r);
        for (size_t i = 0; i < n; i++)
            put(g, "%s s%d", i ? " |" : "", alt[i]);
        put(g, "\n");
        free(alt);
        return r;
    }
    json_t *type = json_object_get(sch, "type");
    if (!type) {
        put(g, "s%d ::= value\n", r);
        return r;
    }
    if (json_is_string(type))
        return typed(g, sch, json_string_value(type), r, depth) ? -1 : r;
    if (!json_is_array(type) || json_array_size(type) == 0)
        return refuse(g, "json_schema '%s' must be a string or a non-empty array of them", "type");
    const size_t n = json_array_size(type);
    put(g, "s%d ::=", r);
    const int first = g->next_rule;
    g->next_rule += (int)n;
    for (size_t i = 0; i < n; i++)
        put(g, "%s s%d", i ? " |" : "", first + (int)i);
    put(g, "\n");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(type, i);
        if (!json_is_string(t))
            return refuse(g, "json_schema '%s' must be a string or a non-empty array of them", "type");
        if (typed(g, sch, json_string_value(t), first + (int)i, depth))
            return -1;
    }
    return r;
}

/* JSON's building blocks, as in sample/grammar.c's json object grammar, plus the formats. */
static const char k_blocks[] =
    "value   ::= object | array | string | number | boolean | null\n"
    "object  ::= \"{\" ws ( member ( \",\" ws member )* )? \"}\" ws\n"
    "member  ::= string \":\" ws value\n"
    "array   ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"
    "string  ::= \"\\\"\" char* \"\\\"\" ws\n"
    "char    ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ws\n"
    "number  ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? ws\n"
    "boolean ::= ( \"true\" | \"false\" ) ws\n"
    "null    ::= \"null\" ws\n"
    "ws      ::= [ \\t\\n]{0,8}\n"
    "fmt-date ::= [0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )\n"
    "fmt-time ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,6} )? "
    "( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n"
    "fmt-date-time ::= fmt-date \"T\" fmt-time\n"
    "fmt-uuid ::= [0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}\n";

char *oai_schema_grammar(json_t *schema, char *why, size_t why_cap)
{
    gen g = {.root = schema, .why = why, .why_cap = why_cap};
    why[0] = 0;
    put(&g, "root ::= s0\n");
    node(&g, schema, 0);
    put(&g, "%s", k_blocks);
    if (g.oom && !g.failed)
        snprintf(why, why_cap, "out of memory for the json_schema grammar");
    if (g.oom || g.failed) {
        free(g.s);
        return NULL;
    }
    return g.s;
}

char *oai_schema_grammar_tools(json_t *const *schemas, size_t n, const char *head, char *why, size_t why_cap)
{
    gen g = {.why = why, .why_cap = why_cap};
    why[0] = 0;
    put(&g, "%s", head);
    for (size_t i = 0; i < n; i++) {
        const size_t at = g.n;
        const int next = g.next_rule;
        int r = -1;
        if (schemas[i]) {
            g.root = schemas[i];
            r = node(&g, schemas[i], 0);
        }
        if (r < 0 && !g.oom) { /* no schema, or one outside what node() takes: any object */
            g.n = at;
            if (g.s)
                g.s[at] = 0;
            g.next_rule = next;
            g.failed = false;
            put(&g, "args%zu ::= object\n", i);
        } else {
            put(&g, "args%zu ::= s%d\n", i, r);
        }
    }
    put(&g, "%s", k_blocks);
    if (g.oom) {
        snprintf(why, why_cap, "out of memory for the tool-call grammar");
        free(g.s);
        return NULL;
    }
    return g.s;
}
