/*
 * grammar.c - GBNF parsing and matching (grammar.h).
 *
 * Representation. Every rule is a list of alternatives, each a sequence of elements, stored flat: a rule's
 * alternatives follow one another separated by G_ALT and the last is closed by G_END. Elements:
 *   G_CHAR c        one code point c, or the first item of a character class
 *   G_CHAR_NOT c    the first item of a negated class
 *   G_RANGE_UPPER c the item before it is the range [previous .. c]
 *   G_CHAR_ALT c    one more item of the same class
 *   G_ANY           any code point
 *   G_RULE r        a reference to rule r
 * Repetitions and groups become rules of their own at parse time (x* -> R ::= x R | ; x? -> R ::= x | ;
 * x{m,n} -> m copies then nested optionals), so the matcher knows only sequences and references.
 *
 * Matching. A stack is a list of element positions, the top the next thing to match; after `expand` every stack
 * has a character element on top, or is empty (the sentence may end there). A character takes each stack whose
 * top matches it to its next position, and expand follows references (pushing the caller's continuation, then
 * each alternative's first element). No left recursion (checked at parse) means expand always ends. Stacks are
 * kept in sets without duplicates; positions are 32-bit indices into the flat element array.
 */
#include "sample/grammar.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { G_END = 0, G_ALT, G_RULE, G_CHAR, G_CHAR_NOT, G_RANGE_UPPER, G_CHAR_ALT, G_ANY };

enum { MAX_ELEMS = 1 << 20, MAX_REPEAT = 10000, MAX_STACKS = 4096, MAX_DEPTH = 4096 };

typedef struct elem {
    uint32_t type, value;
} elem;

struct zl_grammar {
    elem *e;           /* every rule, flat */
    uint32_t *start;   /* rule r's first element */
    uint32_t n_rules, root;
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Parsing */

typedef struct evec {
    elem *v;
    size_t n, cap;
} evec;

typedef struct rule_def {
    char *name; /* NULL for generated rules */
    evec body;
    bool defined;
} rule_def;

typedef struct parser {
    const char *p, *begin, *end;
    rule_def *rules;
    size_t n_rules, cap_rules, total;
    int rc;
    zl_err *err;
} parser;

static bool failed(const parser *ps)
{
    return ps->rc != ZL_OK;
}

static void perr(parser *ps, const char *what)
{
    if (failed(ps))
        return;
    size_t line = 1, col = 1;
    for (const char *q = ps->begin; q < ps->p && q < ps->end; q++) {
        if (*q == '\n')
            line++, col = 1;
        else
            col++;
    }
    ps->rc = zl_err_set(ps->err, ZL_EINVAL, "grammar: line %zu, column %zu: %s", line, col, what);
}

static void push(parser *ps, evec *v, uint32_t type, uint32_t value)
{
    if (failed(ps))
        return;
    if (++ps->total > MAX_ELEMS) {
        perr(ps, "the grammar is too large (more than 1 M elements)");
        return;
    }
    if (v->n == v->cap) {
        const size_t cap = v->cap ? 2 * v->cap : 16;
        elem *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) {
            ps->rc = zl_err_set(ps->err, ZL_ENOMEM, "grammar: out of memory");
            return;
        }
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = (elem){type, value};
}

/* A new rule (name NULL: generated); returns its id, or UINT32_MAX on failure. */
static uint32_t new_rule(parser *ps, const char *name, size_t nl)
{
    if (failed(ps))
        return UINT32_MAX;
    if (ps->n_rules == ps->cap_rules) {
        const size_t cap = ps->cap_rules ? 2 * ps->cap_rules : 16;
        rule_def *nr = realloc(ps->rules, cap * sizeof *nr);
        if (!nr) {
            ps->rc = zl_err_set(ps->err, ZL_ENOMEM, "grammar: out of memory");
            return UINT32_MAX;
        }
        ps->rules = nr;
        ps->cap_rules = cap;
    }
    rule_def *r = &ps->rules[ps->n_rules];
    memset(r, 0, sizeof *r);
    if (name) {
        r->name = malloc(nl + 1);
        if (!r->name) {
            ps->rc = zl_err_set(ps->err, ZL_ENOMEM, "grammar: out of memory");
            return UINT32_MAX;
        }
        memcpy(r->name, name, nl);
        r->name[nl] = 0;
    } else {
        r->defined = true;
    }
    return (uint32_t)ps->n_rules++;
}

static uint32_t rule_id(parser *ps, const char *name, size_t nl)
{
    for (size_t i = 0; i < ps->n_rules; i++)
        if (ps->rules[i].name && strlen(ps->rules[i].name) == nl && !memcmp(ps->rules[i].name, name, nl))
            return (uint32_t)i;
    return new_rule(ps, name, nl);
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void skip_space(parser *ps, bool newline_ok)
{
    while (ps->p < ps->end) {
        const char c = *ps->p;
        if (c == ' ' || c == '\t' || (newline_ok && (c == '\n' || c == '\r'))) {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        } else {
            break;
        }
    }
}

static uint32_t utf8_decode(parser *ps)
{
    const unsigned char *s = (const unsigned char *)ps->p;
    const size_t left = (size_t)(ps->end - ps->p);
    const unsigned c = s[0];
    size_t n = c < 0x80 ? 1 : c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (!n || n > left) {
        perr(ps, "invalid UTF-8");
        return 0;
    }
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            perr(ps, "invalid UTF-8");
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    ps->p += n;
    return cp;
}

static uint32_t hex_digits(parser *ps, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (ps->p >= ps->end) {
            perr(ps, "a hex escape ends early");
            return 0;
        }
        const char c = *ps->p++;
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                                      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) {
            perr(ps, "a bad hex digit in an escape");
            return 0;
        }
        v = v * 16 + (uint32_t)d;
    }
    if (v > 0x10ffff)
        perr(ps, "an escape beyond U+10FFFF");
    return v;
}

/* One character of a literal or class (escapes included). */
static uint32_t parse_char(parser *ps)
{
    if (ps->p >= ps->end) {
        perr(ps, "unexpected end of the grammar");
        return 0;
    }
    if (*ps->p != '\\')
        return utf8_decode(ps);
    ps->p++;
    if (ps->p >= ps->end) {
        perr(ps, "an escape at the end of the grammar");
        return 0;
    }
    const char c = *ps->p++;
    switch (c) {
    case 'x': return hex_digits(ps, 2);
    case 'u': return hex_digits(ps, 4);
    case 'U': return hex_digits(ps, 8);
    case 't': return '\t';
    case 'r': return '\r';
    case 'n': return '\n';
    case '\\': case '"': case '[': case ']': case '-': case '^': return (uint32_t)(unsigned char)c;
    default: perr(ps, "an unknown escape"); return 0;
    }
}

static void parse_alternates(parser *ps, uint32_t rule, bool nested, int depth);

/* A generated rule holding sym (one symbol) as described by a repetition, appended to out as a reference. */
static void repeat(parser *ps, evec *out, size_t sym_start, long min, long max)
{
    if (failed(ps))
        return;
    evec sym = {0};
    for (size_t i = sym_start; i < out->n; i++)
        push(ps, &sym, out->v[i].type, out->v[i].value);
    out->n = sym_start;
    for (long k = 0; k < min; k++)
        for (size_t i = 0; i < sym.n; i++)
            push(ps, out, sym.v[i].type, sym.v[i].value);
    if (max < 0) { /* unbounded: R ::= sym R | (empty) */
        const uint32_t r = new_rule(ps, NULL, 0);
        if (r != UINT32_MAX) {
            evec *b = &ps->rules[r].body;
            for (size_t i = 0; i < sym.n; i++)
                push(ps, b, sym.v[i].type, sym.v[i].value);
            push(ps, b, G_RULE, r);
            push(ps, b, G_ALT, 0);
            push(ps, b, G_END, 0);
            push(ps, out, G_RULE, r);
        }
    } else if (max > min) { /* nested optionals: R1 ::= sym | ; Rk ::= sym R(k-1) | */
        uint32_t inner = UINT32_MAX;
        for (long k = 0; k < max - min && !failed(ps); k++) {
            const uint32_t r = new_rule(ps, NULL, 0);
            if (r == UINT32_MAX)
                break;
            evec *b = &ps->rules[r].body;
            for (size_t i = 0; i < sym.n; i++)
                push(ps, b, sym.v[i].type, sym.v[i].value);
            if (inner != UINT32_MAX)
                push(ps, b, G_RULE, inner);
            push(ps, b, G_ALT, 0);
            push(ps, b, G_END, 0);
            inner = r;
        }
        if (inner != UINT32_MAX)
            push(ps, out, G_RULE, inner);
    }
    free(sym.v);
}

static long parse_int(parser *ps)
{
    long v = 0;
    const char *s = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && v <= MAX_REPEAT)
        v = v * 10 + (*ps->p++ - '0');
    if (ps->p == s)
        perr(ps, "expected a number");
    else if (v > MAX_REPEAT)
        perr(ps, "a repetition bound above 10000");
    return v;
}

static void parse_sequence(parser *ps, evec *out, bool nested, int depth)
{
    size_t sym_start = out->n;
    bool have_sym = false;
    while (ps->p < ps->end && !failed(ps)) {
        const char c = *ps->p;
        if (c == '"') {
            ps->p++;
            sym_start = out->n;
            while (!failed(ps) && ps->p < ps->end && *ps->p != '"')
                push(ps, out, G_CHAR, parse_char(ps));
            if (ps->p >= ps->end) {
                perr(ps, "a literal is not closed");
                return;
            }
            ps->p++;
            have_sym = true;
        } else if (c == '[') {
            ps->p++;
            sym_start = out->n;
            uint32_t first = G_CHAR;
            if (ps->p < ps->end && *ps->p == '^')
                first = G_CHAR_NOT, ps->p++;
            bool any = false;
            while (!failed(ps) && ps->p < ps->end && *ps->p != ']') {
                push(ps, out, any ? G_CHAR_ALT : first, parse_char(ps));
                any = true;
                if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
                    ps->p++;
                    push(ps, out, G_RANGE_UPPER, parse_char(ps));
                }
            }
            if (ps->p >= ps->end) {
                perr(ps, "a character class is not closed");
                return;
            }
            if (!any) {
                perr(ps, "an empty character class");
                return;
            }
            ps->p++;
            have_sym = true;
        } else if (name_char(c)) {
            const char *s = ps->p;
            while (ps->p < ps->end && name_char(*ps->p))
                ps->p++;
            /* the next rule's definition starts here: this sequence is over */
            const char *q = ps->p;
            while (q < ps->end && (*q == ' ' || *q == '\t'))
                q++;
            if (q + 2 < ps->end && q[0] == ':' && q[1] == ':' && q[2] == '=') {
                ps->p = s;
                return;
            }
            sym_start = out->n;
            push(ps, out, G_RULE, rule_id(ps, s, (size_t)(ps->p - s)));
            have_sym = true;
        } else if (c == '(') {
            if (depth > 200) {
                perr(ps, "groups nested too deeply");
                return;
            }
            ps->p++;
            skip_space(ps, true);
            const uint32_t sub = new_rule(ps, NULL, 0);
            if (sub == UINT32_MAX)
                return;
            parse_alternates(ps, sub, true, depth + 1);
            if (failed(ps))
                return;
            if (ps->p >= ps->end || *ps->p != ')') {
                perr(ps, "expected ')'");
                return;
            }
            ps->p++;
            sym_start = out->n;
            push(ps, out, G_RULE, sub);
            have_sym = true;
        } else if (c == '.') {
            ps->p++;
            sym_start = out->n;
            push(ps, out, G_ANY, 0);
            have_sym = true;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (!have_sym) {
                perr(ps, "a repetition without anything before it");
                return;
            }
            ps->p++;
            long lo = 0, hi = -1;
            if (c == '+')
                lo = 1;
            else if (c == '?')
                hi = 1;
            else if (c == '{') {
                skip_space(ps, false);
                lo = parse_int(ps);
                hi = lo;
                skip_space(ps, false);
                if (ps->p < ps->end && *ps->p == ',') {
                    ps->p++;
                    skip_space(ps, false);
                    hi = ps->p < ps->end && *ps->p == '}' ? -1 : parse_int(ps);
                    skip_space(ps, false);
                }
                if (ps->p >= ps->end || *ps->p != '}') {
                    perr(ps, "expected '}'");
                    return;
                }
                ps->p++;
                if (hi >= 0 && hi < lo) {
                    perr(ps, "a repetition whose maximum is below its minimum");
                    return;
                }
            }
            repeat(ps, out, sym_start, lo, hi);
            have_sym = false; /* x** is not a thing */
        } else {
            return; /* '|', ')', a newline, or something the caller judges */
        }
        skip_space(ps, nested);
    }
}

static void parse_alternates(parser *ps, uint32_t rule, bool nested, int depth)
{
    evec body = {0};
    for (;;) {
        parse_sequence(ps, &body, nested, depth);
        if (!nested && !failed(ps)) { /* "\n  | more" continues the rule on the next line */
            const char *keep = ps->p;
            skip_space(ps, true);
            if (ps->p >= ps->end || *ps->p != '|')
                ps->p = keep;
        }
        if (failed(ps) || ps->p >= ps->end || *ps->p != '|')
            break;
        push(ps, &body, G_ALT, 0);
        ps->p++;
        skip_space(ps, true);
    }
    push(ps, &body, G_END, 0);
    if (failed(ps)) {
        free(body.v);
        return;
    }
    free(ps->rules[rule].body.v);
    ps->rules[rule].body = body;
}

static void parse_rules(parser *ps)
{
    skip_space(ps, true);
    while (ps->p < ps->end && !failed(ps)) {
        const char *s = ps->p;
        while (ps->p < ps->end && name_char(*ps->p))
            ps->p++;
        if (ps->p == s) {
            perr(ps, "expected a rule name");
            return;
        }
        const uint32_t r = rule_id(ps, s, (size_t)(ps->p - s));
        if (failed(ps))
            return;
        if (ps->rules[r].defined) {
            perr(ps, "a rule defined twice");
            return;
        }
        skip_space(ps, false);
        if (ps->end - ps->p < 3 || memcmp(ps->p, "::=", 3)) {
            perr(ps, "expected '::='");
            return;
        }
        ps->p += 3;
        skip_space(ps, true);
        ps->rules[r].defined = true;
        parse_alternates(ps, r, false, 0);
        if (failed(ps))
            return;
        if (ps->p < ps->end && *ps->p != '\n' && *ps->p != '\r' && !name_char(*ps->p)) {
            perr(ps, "unexpected character");
            return;
        }
        skip_space(ps, true);
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Checks after parsing: every rule defined, a root, no left recursion */

static bool is_sep(uint32_t t)
{
    return t == G_END || t == G_ALT;
}

/* nullable[r]: rule r derives the empty string (fixpoint). */
static void find_nullable(const zl_grammar *g, bool *nullable)
{
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < g->n_rules; r++) {
            if (nullable[r])
                continue;
            const elem *e = g->e + g->start[r];
            bool alt_ok = true;
            for (;; e++) {
                if (is_sep(e->type)) {
                    if (alt_ok) {
                        nullable[r] = changed = true;
                        break;
                    }
                    if (e->type == G_END)
                        break;
                    alt_ok = true;
                    continue;
                }
                if (e->type != G_RULE || !nullable[e->value])
                    alt_ok = false;
            }
        }
    }
}

/* DFS over "r can start with a reference to q (everything before it nullable)": a cycle is left recursion. */
static bool left_recursive(const zl_grammar *g, const bool *nullable, uint32_t r, uint8_t *mark, int depth)
{
    if (mark[r] == 1 || depth > MAX_DEPTH)
        return true;
    if (mark[r] == 2)
        return false;
    mark[r] = 1;
    const elem *e = g->e + g->start[r];
    bool at_start = true;
    for (;; e++) {
        if (is_sep(e->type)) {
            if (e->type == G_END)
                break;
            at_start = true;
            continue;
        }
        if (!at_start)
            continue;
        if (e->type == G_RULE) {
            if (left_recursive(g, nullable, e->value, mark, depth + 1))
                return true;
            at_start = nullable[e->value];
        } else {
            at_start = false;
        }
    }
    mark[r] = 2;
    return false;
}

int zl_grammar_parse(const char *text, size_t len, zl_grammar **out, zl_err *err)
{
    *out = NULL;
    parser ps = {.p = text, .begin = text, .end = text + len, .err = err, .rc = ZL_OK};
    if (!text && len)
        return zl_err_set(err, ZL_EINVAL, "grammar: NULL text");
    parse_rules(&ps);
    uint32_t root = UINT32_MAX;
    for (size_t i = 0; !failed(&ps) && i < ps.n_rules; i++) {
        if (!ps.rules[i].defined) {
            ps.rc = zl_err_set(err, ZL_EINVAL, "grammar: rule '%.64s' is used but not defined", ps.rules[i].name);
            break;
        }
        if (ps.rules[i].name && !strcmp(ps.rules[i].name, "root"))
            root = (uint32_t)i;
    }
    if (!failed(&ps) && root == UINT32_MAX)
        ps.rc = zl_err_set(err, ZL_EINVAL, "grammar: no rule named 'root'");
    zl_grammar *g = NULL;
    if (!failed(&ps)) {
        g = calloc(1, sizeof *g);
        size_t total = 0;
        for (size_t i = 0; i < ps.n_rules; i++)
            total += ps.rules[i].body.n;
        if (g) {
            g->e = malloc((total + 1) * sizeof *g->e);
            g->start = malloc(ps.n_rules * sizeof *g->start);
        }
        if (!g || !g->e || !g->start) {
            ps.rc = zl_err_set(err, ZL_ENOMEM, "grammar: out of memory");
        } else {
            size_t at = 0;
            for (size_t i = 0; i < ps.n_rules; i++) {
                g->start[i] = (uint32_t)at;
                memcpy(g->e + at, ps.rules[i].body.v, ps.rules[i].body.n * sizeof *g->e);
                at += ps.rules[i].body.n;
            }
            g->e[at] = (elem){G_END, 0};
            g->n_rules = (uint32_t)ps.n_rules;
            g->root = root;
            bool *nullable = calloc(ps.n_rules, sizeof *nullable);
            uint8_t *mark = calloc(ps.n_rules, 1);
            if (!nullable || !mark) {
                ps.rc = zl_err_set(err, ZL_ENOMEM, "grammar: out of memory");
            } else {
                find_nullable(g, nullable);
                for (uint32_t r = 0; r < g->n_rules && !failed(&ps); r++)
                    if (left_recursive(g, nullable, r, mark, 0)) {
                        const char *nm = NULL;
                        for (uint32_t q = r; q < g->n_rules && !nm; q++)
                            nm = mark[q] == 1 ? ps.rules[q].name : NULL;
                        ps.rc = zl_err_set(err, ZL_EINVAL, "grammar: left recursion (through rule '%.64s'): a rule "
                                           "reaches itself before matching a character", nm ? nm : "(a group)");
                    }
            }
            free(nullable);
            free(mark);
        }
    }
    for (size_t i = 0; i < ps.n_rules; i++) {
        free(ps.rules[i].name);
        free(ps.rules[i].body.v);
    }
    free(ps.rules);
    if (failed(&ps)) {
        zl_grammar_free(g);
        return ps.rc;
    }
    *out = g;
    return ZL_OK;
}

void zl_grammar_free(zl_grammar *g)
{
    if (!g)
        return;
    free(g->e);
    free(g->start);
    free(g);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Stack sets */

typedef struct sset {
    uint32_t *data; /* stack k: data[off[k] .. off[k] + len[k]), bottom first */
    size_t n_data, cap_data;
    uint32_t *off, *len;
    size_t n, cap;
    bool overflow; /* out of memory or past MAX_STACKS: treated as a rejection */
} sset;

static void sset_clear(sset *s)
{
    s->n_data = s->n = 0;
    s->overflow = false;
}

static void sset_free(sset *s)
{
    free(s->data);
    free(s->off);
    free(s->len);
    memset(s, 0, sizeof *s);
}

static void sset_add(sset *s, const uint32_t *stk, uint32_t n)
{
    for (size_t k = 0; k < s->n; k++)
        if (s->len[k] == n && (n == 0 || !memcmp(s->data + s->off[k], stk, n * sizeof *stk)))
            return;
    if (s->n >= MAX_STACKS) {
        s->overflow = true;
        return;
    }
    if (s->n == s->cap) {
        const size_t cap = s->cap ? 2 * s->cap : 16;
        uint32_t *no = realloc(s->off, cap * sizeof *no);
        if (no)
            s->off = no;
        uint32_t *nl = no ? realloc(s->len, cap * sizeof *nl) : NULL;
        if (nl)
            s->len = nl;
        if (!no || !nl) {
            s->overflow = true;
            return;
        }
        s->cap = cap;
    }
    if (n && s->n_data + n > s->cap_data) {
        size_t cap = s->cap_data ? s->cap_data : 256;
        while (cap < s->n_data + n)
            cap *= 2;
        uint32_t *nd = realloc(s->data, cap * sizeof *nd);
        if (!nd) {
            s->overflow = true;
            return;
        }
        s->data = nd;
        s->cap_data = cap;
    }
    if (n)
        memcpy(s->data + s->n_data, stk, n * sizeof *stk);
    s->off[s->n] = (uint32_t)s->n_data;
    s->len[s->n] = n;
    s->n_data += n;
    s->n++;
}

/* Follows references on top of stk[0..n) (a scratch buffer of MAX_DEPTH + 2 entries that expand may write past n)
 * until every resulting stack has a character element on top, or is empty; adds those to out. */
static void expand(const zl_grammar *g, uint32_t *stk, uint32_t n, sset *out, int depth)
{
    if (out->overflow)
        return;
    if (n == 0 || g->e[stk[n - 1]].type != G_RULE) {
        sset_add(out, stk, n);
        return;
    }
    if (n >= MAX_DEPTH || depth > MAX_DEPTH) {
        out->overflow = true;
        return;
    }
    const uint32_t p = stk[n - 1], r = g->e[p].value;
    uint32_t base = n - 1;
    const uint32_t saved = stk[base];
    if (!is_sep(g->e[p + 1].type))
        stk[base++] = p + 1; /* the caller's continuation */
    uint32_t a = g->start[r];
    for (;;) {
        if (is_sep(g->e[a].type)) {
            expand(g, stk, base, out, depth + 1); /* an empty alternative: straight to the continuation */
        } else {
            const uint32_t keep = stk[base];
            stk[base] = a;
            expand(g, stk, base + 1, out, depth + 1);
            stk[base] = keep;
        }
        while (!is_sep(g->e[a].type))
            a++;
        if (g->e[a].type == G_END)
            break;
        a++;
    }
    stk[n - 1] = saved;
}

/* Whether the character element at p matches cp; *next: the position after the whole element. */
static bool match_char(const zl_grammar *g, uint32_t p, uint32_t cp, uint32_t *next)
{
    const elem *e = g->e;
    if (e[p].type == G_ANY) {
        *next = p + 1;
        return true;
    }
    const bool neg = e[p].type == G_CHAR_NOT;
    bool found = false;
    uint32_t i = p;
    do {
        const uint32_t lo = e[i].value;
        uint32_t hi = lo;
        if (e[i + 1].type == G_RANGE_UPPER)
            hi = e[++i].value;
        found |= cp >= lo && cp <= hi;
        i++;
    } while (e[i].type == G_CHAR_ALT);
    *next = i;
    return found != neg;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* States */

/* A walk's position after the first d bytes of the current text (zl_grammar_walk_*). */
typedef struct walk_level {
    sset own;          /* the stacks, when this level ended a character */
    int src;           /* the level whose `own` holds this level's stacks; -1: the state's cur */
    unsigned char u[4];
    int nu;            /* bytes of an unfinished character */
} walk_level;

struct zl_grammar_state {
    const zl_grammar *g;
    sset cur;          /* the position */
    sset a, b;         /* scratch for would_accept / accept */
    uint32_t *stk;     /* MAX_DEPTH + 2 */
    unsigned char pend[4];
    int n_pend;        /* bytes of an unfinished UTF-8 character taken so far */
    walk_level *lv;    /* zl_grammar_walk_*: n_lv levels made so far (grown on demand) */
    int n_lv;
};

zl_grammar_state *zl_grammar_state_new(const zl_grammar *g)
{
    zl_grammar_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->g = g;
    s->stk = malloc((MAX_DEPTH + 2) * sizeof *s->stk);
    if (!s->stk) {
        free(s);
        return NULL;
    }
    /* the start: each of root's alternatives, with nothing after it */
    uint32_t a = g->start[g->root];
    for (;;) {
        if (is_sep(g->e[a].type)) {
            sset_add(&s->cur, s->stk, 0);
        } else {
            s->stk[0] = a;
            expand(g, s->stk, 1, &s->cur, 0);
        }
        while (!is_sep(g->e[a].type))
            a++;
        if (g->e[a].type == G_END)
            break;
        a++;
    }
    if (s->cur.overflow) {
        zl_grammar_state_free(s);
        return NULL;
    }
    return s;
}

void zl_grammar_state_free(zl_grammar_state *s)
{
    if (!s)
        return;
    sset_free(&s->cur);
    sset_free(&s->a);
    sset_free(&s->b);
    for (int i = 0; i < s->n_lv; i++)
        sset_free(&s->lv[i].own);
    free(s->lv);
    free(s->stk);
    free(s);
}

/* in -> out over one code point. */
static void step_cp(zl_grammar_state *s, const sset *in, uint32_t cp, sset *out)
{
    sset_clear(out);
    for (size_t k = 0; k < in->n && !out->overflow; k++) {
        const uint32_t n = in->len[k];
        if (n == 0)
            continue;
        const uint32_t *stk = in->data + in->off[k];
        uint32_t next;
        if (!match_char(s->g, stk[n - 1], cp, &next))
            continue;
        memcpy(s->stk, stk, (n - 1) * sizeof *stk);
        uint32_t m = n - 1;
        if (!is_sep(s->g->e[next].type))
            s->stk[m++] = next;
        expand(s->g, s->stk, m, out, 0);
    }
}

static bool expects_char(const sset *st)
{
    for (size_t k = 0; k < st->n; k++)
        if (st->len[k])
            return true;
    return false;
}

/* Whether the character element at p can match some code point in [lo, hi]. A negated class is taken to (it
 * could only fail if its items covered the whole range). */
static bool may_match_range(const zl_grammar *g, uint32_t p, uint32_t lo, uint32_t hi)
{
    const elem *e = g->e;
    if (e[p].type == G_ANY || e[p].type == G_CHAR_NOT)
        return true;
    for (uint32_t i = p;; i++) {
        const uint32_t a = e[i].value, b = e[i + 1].type == G_RANGE_UPPER ? e[++i].value : a;
        if (a <= hi && b >= lo)
            return true;
        if (e[i + 1].type != G_CHAR_ALT)
            return false;
    }
}

/* Some continuation of st can take a character that starts with the partial UTF-8 bytes u[0..nu). */
static bool may_continue(const zl_grammar *g, const sset *st, const unsigned char *u, int nu)
{
    const int need = u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : 2, missing = need - nu;
    uint32_t known = u[0] & (0x7f >> need);
    for (int k = 1; k < nu; k++)
        known = known << 6 | (u[k] & 0x3f);
    static const uint32_t k_min[5] = {0, 0, 0x80, 0x800, 0x10000}; /* the shortest form is the only one */
    uint32_t lo = known << (6 * missing), hi = lo | ((1u << (6 * missing)) - 1);
    lo = lo < k_min[need] ? k_min[need] : lo;
    hi = hi > 0x10ffff ? 0x10ffff : hi;
    if (lo > hi)
        return false;
    for (size_t k = 0; k < st->n; k++)
        if (st->len[k] && may_match_range(g, st->data[st->off[k] + st->len[k] - 1], lo, hi))
            return true;
    return false;
}

/* One byte c after the position (in, u[0..*nu)): the unfinished-character bytes updated in u / *nu; *res: the
 * stacks after it (in itself while a character is unfinished, else `out`, filled). False when c may not come. */
static bool take_byte(zl_grammar_state *s, const sset *in, unsigned char u[4], int *nu, unsigned char c, sset *out,
                      const sset **res)
{
    if (*nu == 0) {
        if (c < 0x80) {
            step_cp(s, in, c, out);
            *res = out;
            return !out->overflow && out->n > 0;
        }
        if (c < 0xc2 || c > 0xf4)
            return false; /* not a lead byte */
        u[(*nu)++] = c;
        *res = in;
        return true;
    }
    if ((c & 0xc0) != 0x80)
        return false;
    u[(*nu)++] = c;
    const int need = u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : 2;
    if (*nu < need) {
        *res = in;
        return true;
    }
    uint32_t cp = u[0] & (0x7f >> need);
    for (int k = 1; k < need; k++)
        cp = cp << 6 | (u[k] & 0x3f);
    *nu = 0;
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need == 4 && (cp < 0x10000 ||
                                                                                           cp > 0x10ffff)))
        return false;
    step_cp(s, in, cp, out);
    *res = out;
    return !out->overflow && out->n > 0;
}

/* Runs bytes through from s's position. On success the result is in *res (s->cur itself when no whole character
 * was taken) with the new unfinished-character bytes in pend / n_pend. */
static bool run(zl_grammar_state *s, const char *bytes, size_t n, const sset **res, unsigned char *pend,
                int *n_pend)
{
    const sset *cur = &s->cur;
    sset *bufs[2] = {&s->a, &s->b};
    int flip = 0;
    unsigned char u[4];
    int nu = s->n_pend;
    memcpy(u, s->pend, sizeof u);
    for (size_t i = 0; i < n; i++) {
        const sset *next;
        if (!take_byte(s, cur, u, &nu, (unsigned char)bytes[i], bufs[flip], &next))
            return false;
        if (next != cur) {
            cur = next;
            flip ^= 1;
        }
    }
    if (nu && !may_continue(s->g, cur, u, nu))
        return false;
    *res = cur;
    memcpy(pend, u, sizeof u);
    *n_pend = nu;
    return true;
}

bool zl_grammar_would_accept(zl_grammar_state *s, const char *bytes, size_t n)
{
    const sset *res;
    unsigned char pend[4];
    int np;
    return run(s, bytes, n, &res, pend, &np);
}

bool zl_grammar_accept(zl_grammar_state *s, const char *bytes, size_t n)
{
    const sset *res;
    unsigned char pend[4];
    int np;
    if (!run(s, bytes, n, &res, pend, &np))
        return false;
    if (res != &s->cur) { /* swap the result in as the position */
        sset *r = (sset *)res, t = s->cur;
        s->cur = *r;
        *r = t;
    }
    memcpy(s->pend, pend, sizeof pend);
    s->n_pend = np;
    return true;
}

static const sset *level_set(const zl_grammar_state *s, int d)
{
    const int src = s->lv[d].src;
    return src < 0 ? &s->cur : &s->lv[src].own;
}

bool zl_grammar_walk_start(zl_grammar_state *s)
{
    if (s->n_lv == 0) {
        s->lv = calloc(16, sizeof *s->lv);
        if (!s->lv)
            return false;
        s->n_lv = 16;
    }
    s->lv[0].src = -1;
    memcpy(s->lv[0].u, s->pend, sizeof s->pend);
    s->lv[0].nu = s->n_pend;
    return true;
}

bool zl_grammar_walk_push(zl_grammar_state *s, int depth, unsigned char c)
{
    if (depth < 0 || depth >= ZL_GRAMMAR_WALK_MAX || !s->lv)
        return false;
    if (depth + 1 >= s->n_lv) {
        const int n = s->n_lv * 2 > ZL_GRAMMAR_WALK_MAX + 1 ? ZL_GRAMMAR_WALK_MAX + 1 : s->n_lv * 2;
        walk_level *lv = realloc(s->lv, (size_t)n * sizeof *lv);
        if (!lv)
            return false;
        memset(lv + s->n_lv, 0, (size_t)(n - s->n_lv) * sizeof *lv);
        s->lv = lv;
        s->n_lv = n;
    }
    walk_level *from = &s->lv[depth], *to = &s->lv[depth + 1];
    const sset *in = level_set(s, depth), *res;
    memcpy(to->u, from->u, sizeof to->u);
    to->nu = from->nu;
    if (!take_byte(s, in, to->u, &to->nu, c, &to->own, &res))
        return false;
    to->src = res == in ? from->src : depth + 1;
    return true;
}

bool zl_grammar_walk_complete(const zl_grammar_state *s, int depth)
{
    const walk_level *l = &s->lv[depth];
    return !l->nu || may_continue(s->g, level_set(s, depth), l->u, l->nu);
}

void zl_grammar_first_bytes(const zl_grammar_state *s, bool first[256])
{
    memset(first, 0, 256 * sizeof *first);
    if (s->n_pend) { /* inside a character: only its continuation bytes */
        for (int b = 0x80; b < 0xc0; b++)
            first[b] = true;
        return;
    }
    bool wide = false; /* some top may take a code point >= 0x80 */
    for (size_t k = 0; k < s->cur.n; k++) {
        if (!s->cur.len[k])
            continue;
        const uint32_t p = s->cur.data[s->cur.off[k] + s->cur.len[k] - 1];
        uint32_t next;
        for (uint32_t c = 0; c < 0x80; c++)
            if (!first[c] && match_char(s->g, p, c, &next))
                first[c] = true;
        const elem *e = s->g->e;
        if (e[p].type == G_ANY || e[p].type == G_CHAR_NOT) {
            wide = true;
            continue;
        }
        for (uint32_t i = p;; i++) {
            const uint32_t hi = e[i + 1].type == G_RANGE_UPPER ? e[i + 1].value : e[i].value;
            wide |= hi >= 0x80;
            if (e[i + 1].type == G_RANGE_UPPER)
                i++;
            if (e[i + 1].type != G_CHAR_ALT)
                break;
        }
    }
    if (wide)
        for (int b = 0xc2; b <= 0xf4; b++)
            first[b] = true;
}

bool zl_grammar_can_end(const zl_grammar_state *s)
{
    if (s->n_pend)
        return false;
    for (size_t k = 0; k < s->cur.n; k++)
        if (s->cur.len[k] == 0)
            return true;
    return false;
}

bool zl_grammar_must_end(const zl_grammar_state *s)
{
    return s->n_pend == 0 && !expects_char(&s->cur);
}

/* ------------------------------------------------------------------------------------------------------------ */

/* One JSON object: RFC 8259's value syntax, whitespace between tokens bounded (a model could otherwise write
 * spaces forever), numbers bounded to 16 digits per part. */
const char zl_grammar_json_object[] =
    "root   ::= \"{\" ws ( member ( \",\" ws member )* )? \"}\" ws\n"
    "member ::= string \":\" ws value\n"
    "value  ::= object | array | string | number | ( \"true\" | \"false\" | \"null\" ) ws\n"
    "object ::= \"{\" ws ( member ( \",\" ws member )* )? \"}\" ws\n"
    "array  ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )* \"\\\"\" ws\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? ws\n"
    "ws     ::= [ \\t\\n]{0,8}\n";
