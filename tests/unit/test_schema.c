/*
 * test_schema.c - JSON Schema to GBNF (server/schema.c): integer bounds as digit ranges, checked exhaustively
 * around each bound against the plain comparison; number bounds as digit-by-digit decimal ranges, checked the same
 * way on decimals; refusals of bounds nothing meets or beyond the digits numbers are written with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "server/schema.h"

static bool takes(const zl_grammar *g, const char *s)
{
    zl_grammar_state *st = zl_grammar_state_new(g);
    const bool ok = zl_grammar_accept(st, s, strlen(s)) && zl_grammar_can_end(st);
    zl_grammar_state_free(st);
    return ok;
}

static zl_grammar *compile(const char *schema_text)
{
    json_error_t je;
    json_t *sch = json_loads(schema_text, 0, &je);
    assert_non_null(sch);
    char why[256];
    char *text = oai_schema_grammar(sch, why, sizeof why);
    if (!text)
        fail_msg("%s: %s", schema_text, why);
    zl_grammar *g;
    zl_err e;
    if (zl_grammar_parse(text, strlen(text), &g, &e) != ZL_OK)
        fail_msg("%s: grammar does not parse: %s\n%s", schema_text, e.msg, text);
    free(text);
    json_decref(sch);
    return g;
}

static void test_integer_bounds(void **st)
{
    (void)st;
    static const struct {
        const char *kw;
        long long lo, hi; /* the integers meant; LLONG_MIN / MAX: unbounded */
    } cases[] = {
        {"\"minimum\": 0, \"maximum\": 9", 0, 9},
        {"\"minimum\": 7, \"maximum\": 123", 7, 123},
        {"\"minimum\": 1900, \"maximum\": 2100", 1900, 2100},
        {"\"minimum\": -17, \"maximum\": 305", -17, 305},
        {"\"minimum\": -1000, \"maximum\": -99", -1000, -99},
        {"\"exclusiveMinimum\": -50, \"exclusiveMaximum\": 7", -49, 6},
        {"\"minimum\": 1.5, \"maximum\": 20.5", 2, 20},
        {"\"minimum\": 12", 12, INT64_MAX},
        {"\"maximum\": -3", INT64_MIN, -3},
        {"\"minimum\": 0", 0, INT64_MAX},
        {"\"exclusiveMaximum\": 100", INT64_MIN, 99},
        {"\"minimum\": 5, \"maximum\": 5", 5, 5},
        {"\"minimum\": 990, \"maximum\": 10010", 990, 10010},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sch[256];
        snprintf(sch, sizeof sch, "{\"type\": \"integer\", %s}", cases[i].kw);
        zl_grammar *g = compile(sch);
        const long long lo = cases[i].lo, hi = cases[i].hi;
        long long probes[4096];
        size_t np = 0;
        const long long centres[] = {lo == INT64_MIN ? -5000 : lo, hi == INT64_MAX ? 5000 : hi, 0, 999, 1000, -1000};
        for (size_t c = 0; c < sizeof centres / sizeof centres[0]; c++)
            for (long long d = -300; d <= 300; d++)
                probes[np++] = centres[c] + d;
        for (size_t k = 0; k < np; k++) {
            char s[32];
            snprintf(s, sizeof s, "%lld", probes[k]);
            const bool want = probes[k] >= lo && probes[k] <= hi;
            if (takes(g, s) != want)
                fail_msg("%s: %s %s", sch, want ? "refuses" : "takes", s);
        }
        /* never leading zeros or "-0" */
        assert_false(takes(g, "007"));
        assert_false(takes(g, "-0"));
        if (hi == INT64_MAX)
            assert_true(takes(g, "9999999999999999"));
        zl_grammar_free(g);
    }
}

static bool lo_ok(double x, double lo, bool excl) { return excl ? x > lo : x >= lo; }
static bool hi_ok(double x, double hi, bool excl) { return excl ? x < hi : x <= hi; }

/* Number bounds: decimals around each bound and across the range, written with 0 to 5 fraction digits (trailing
 * zeros included), against the plain comparison of their values. */
static void test_number_bounds(void **st)
{
    (void)st;
    static const struct {
        const char *kw;
        double lo, hi;
        bool lo_x, hi_x;
    } cases[] = {
        {"\"minimum\": 0, \"maximum\": 1", 0, 1, false, false},
        {"\"minimum\": 0.5, \"maximum\": 2.25", 0.5, 2.25, false, false},
        {"\"exclusiveMinimum\": 0, \"exclusiveMaximum\": 1", 0, 1, true, true},
        {"\"minimum\": -1.5, \"maximum\": 3.75", -1.5, 3.75, false, false},
        {"\"exclusiveMinimum\": -2.5, \"maximum\": -0.125", -2.5, -0.125, true, false},
        {"\"minimum\": 0.1", 0.1, INFINITY, false, false},
        {"\"exclusiveMinimum\": 0", 0, INFINITY, true, false},
        {"\"maximum\": -0.05", -INFINITY, -0.05, false, false},
        {"\"exclusiveMaximum\": 12.5", -INFINITY, 12.5, false, true},
        {"\"minimum\": 3.14159, \"maximum\": 3.1416", 3.14159, 3.1416, false, false},
        {"\"minimum\": 99.99, \"exclusiveMaximum\": 1000", 99.99, 1000, false, true},
        {"\"minimum\": 0.001, \"maximum\": 0.002", 0.001, 0.002, false, false},
        {"\"minimum\": 7, \"maximum\": 7", 7, 7, false, false},
        {"\"minimum\": -0.75, \"exclusiveMaximum\": 0", -0.75, 0, false, true},
    };
    const double steps[] = {1, 0.1, 0.01, 0.001, 0.0001, 0.00001};
    int checked = 0, taken = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sch[256];
        snprintf(sch, sizeof sch, "{\"type\": \"number\", %s}", cases[i].kw);
        zl_grammar *g = compile(sch);
        const double lo = cases[i].lo, hi = cases[i].hi;
        const double centres[] = {isinf(lo) ? -3 : lo, isinf(hi) ? 3 : hi, 0, (isinf(lo) || isinf(hi)) ? 1 : (lo + hi) / 2};
        for (size_t c = 0; c < sizeof centres / sizeof centres[0]; c++)
            for (size_t si = 0; si < sizeof steps / sizeof steps[0]; si++)
                for (int k = -12; k <= 12; k++)
                    for (int digits = 0; digits <= 5; digits++) {
                        char v[64];
                        snprintf(v, sizeof v, "%.*f", digits, centres[c] + k * steps[si]);
                        if (v[0] == '-' && strtod(v, NULL) == 0)
                            continue; /* "-0", "-0.00": never written (checked below) */
                        const double x = strtod(v, NULL);
                        const bool want = (lo_ok(x, lo, cases[i].lo_x)) && (hi_ok(x, hi, cases[i].hi_x));
                        if (takes(g, v) != want)
                            fail_msg("%s: %s %s", sch, want ? "refuses" : "takes", v);
                        checked++;
                        taken += want;
                    }
        assert_false(takes(g, "-0"));
        assert_false(takes(g, "1e2"));
        assert_false(takes(g, "00.5"));
        assert_false(takes(g, "1."));
        zl_grammar_free(g);
    }
    assert_true(taken > 1000 && checked - taken > 1000);
}

static void test_refusals(void **st)
{
    (void)st;
    static const char *const bad[] = {
        "{\"type\": \"integer\", \"minimum\": 10, \"maximum\": 9}",
        "{\"type\": \"integer\", \"exclusiveMinimum\": 3, \"exclusiveMaximum\": 4}",
        "{\"type\": \"integer\", \"minimum\": \"1\"}",
        "{\"type\": \"number\", \"minimum\": 2, \"maximum\": 1}",
        "{\"type\": \"number\", \"exclusiveMinimum\": 1.5, \"maximum\": 1.5}",
        "{\"type\": \"number\", \"minimum\": 1e20}",
        "{\"type\": \"number\", \"maximum\": -1e20}",
        "{\"type\": \"number\", \"minimum\": 1e-60}",
        "{\"type\": \"number\", \"maximum\": true}",
        "{\"type\": \"integer\", \"minimum\": 1e20}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_error_t je;
        json_t *sch = json_loads(bad[i], 0, &je);
        char why[256];
        char *g = oai_schema_grammar(sch, why, sizeof why);
        if (g)
            fail_msg("%s: not refused", bad[i]);
        assert_true(why[0]);
        json_decref(sch);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_bounds),
        cmocka_unit_test(test_number_bounds),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
