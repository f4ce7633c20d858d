/*
 * test_schema.c - JSON Schema to GBNF (server/schema.c): integer bounds as digit ranges, checked exhaustively
 * around each bound against the plain comparison; refusals of bounds no integer meets and of bounds on numbers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

static void test_refusals(void **st)
{
    (void)st;
    static const char *const bad[] = {
        "{\"type\": \"integer\", \"minimum\": 10, \"maximum\": 9}",
        "{\"type\": \"integer\", \"exclusiveMinimum\": 3, \"exclusiveMaximum\": 4}",
        "{\"type\": \"integer\", \"minimum\": \"1\"}",
        "{\"type\": \"number\", \"maximum\": 1}",
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
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
