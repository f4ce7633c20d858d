/*
 * test_grammar.c - GBNF grammars (sample/grammar.h): which texts a grammar takes, whole and as prefixes, fed at
 * once and byte by byte (UTF-8 characters split between feeds), and which grammars are refused. The expected
 * verdicts are written out by hand from the grammars (and, for JSON, from RFC 8259).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sample/grammar.h"

static zl_grammar *parse(const char *text)
{
    zl_grammar *g = NULL;
    zl_err e;
    if (zl_grammar_parse(text, strlen(text), &g, &e) != ZL_OK)
        fail_msg("grammar refused: %s\n%s", e.msg, text);
    return g;
}

/* 1: a whole sentence; 0: not a sentence but every prefix may continue; -1: some byte is refused. */
static int verdict(const zl_grammar *g, const char *text, bool bytewise)
{
    zl_grammar_state *s = zl_grammar_state_new(g);
    assert_non_null(s);
    const size_t n = strlen(text);
    int v = 1;
    if (bytewise) {
        for (size_t i = 0; i < n && v > 0; i++) {
            const bool would = zl_grammar_would_accept(s, text + i, 1);
            const bool took = zl_grammar_accept(s, text + i, 1);
            assert_int_equal(would, took);
            if (!took)
                v = -1;
        }
    } else if (!zl_grammar_accept(s, text, n)) {
        v = -1;
    }
    if (v > 0 && !zl_grammar_can_end(s))
        v = 0;
    zl_grammar_state_free(s);
    return v;
}

static void expect(const zl_grammar *g, const char *text, int want)
{
    for (int bw = 0; bw < 2; bw++) {
        const int got = verdict(g, text, bw);
        if (got != want)
            fail_msg("[%s] (%s): %d, want %d", text, bw ? "byte by byte" : "at once", got, want);
    }
}

static void test_json_object(void **st)
{
    (void)st;
    zl_grammar *g = parse(zl_grammar_json_object);
    expect(g, "{}", 1);
    expect(g, "{\"a\": 1}", 1);
    expect(g, "{ \"k\" : true }\n", 1);
    expect(g, "{\"a\":[1,-2.5e+3,{\"b\":null},[]],\"c\":\"x\\\"y\\\\\\u00e9\\n\",\"d\":false}", 1);
    expect(g, "{\"caf\xc3\xa9\": \"\xe6\x97\xa5\xe6\x9c\xac\"}", 1);
    expect(g, "{\"a\":0}", 1);
    expect(g, "{\"a\":1", 0);   /* a prefix */
    expect(g, "{\"a\":\"x", 0);
    expect(g, "", 0);
    expect(g, "[]", -1);        /* the root is an object */
    expect(g, "{\"a\":}", -1);
    expect(g, "{\"a\":01}", -1);
    expect(g, "{'a':1}", -1);
    expect(g, "{\"a\":1,}", -1);
    expect(g, "{\"a\":tru}", -1);
    expect(g, "{\"a\":\"\x01\"}", -1); /* a control character in a string */
    expect(g, "{\"a\":\"\\q\"}", -1);  /* an unknown escape */
    expect(g, "{} x", -1);
    expect(g, "{}          ", -1);     /* at most 8 whitespace characters */
    expect(g, "{\"a\":\"\xff\"}", -1); /* not UTF-8 */
    /* must_end once the object and its whitespace are complete */
    zl_grammar_state *s = zl_grammar_state_new(g);
    assert_true(zl_grammar_accept(s, "{}", 2));
    assert_true(zl_grammar_can_end(s));
    assert_false(zl_grammar_must_end(s)); /* whitespace may still follow */
    assert_true(zl_grammar_accept(s, "        ", 8));
    assert_true(zl_grammar_must_end(s));
    assert_false(zl_grammar_would_accept(s, " ", 1));
    zl_grammar_state_free(s);
    /* the first byte of a character that cannot come (a space and then U+2xxx after the object) is refused */
    s = zl_grammar_state_new(g);
    assert_true(zl_grammar_accept(s, "{} ", 3));
    assert_false(zl_grammar_would_accept(s, "\xe2", 1));
    assert_true(zl_grammar_accept(s, "\n", 1));
    zl_grammar_state_free(s);
    /* a character split between feeds: not a sentence until it is complete */
    s = zl_grammar_state_new(g);
    assert_true(zl_grammar_accept(s, "{\"\xc3", 3));
    assert_false(zl_grammar_can_end(s));
    assert_true(zl_grammar_accept(s, "\xa9\":1}", 5));
    assert_true(zl_grammar_can_end(s));
    zl_grammar_state_free(s);
    zl_grammar_free(g);
}

static void test_notation(void **st)
{
    (void)st;
    zl_grammar *g = parse("# numbers joined by +\nroot ::= num (\"+\" num)*\nnum ::= [0-9]{2,3}\n");
    expect(g, "12", 1);
    expect(g, "123+45+678", 1);
    expect(g, "1", 0);
    expect(g, "12+", 0);
    expect(g, "1234", -1);
    expect(g, "12-3", -1);
    zl_grammar_free(g);

    g = parse("root ::= [^abc] . \"x\"? [a-cx-z]+ | \"\\u00e9\" \"\\x41\" \"\\n\"\n");
    expect(g, "dQb", 1);
    expect(g, "d\xe6\x97\xa5xyzab", 1);
    expect(g, "aQb", -1);
    expect(g, "dQ", 0);
    expect(g, "dQxq", -1);
    expect(g, "\xc3\xa9" "A\n", 1);
    zl_grammar_free(g);

    /* alternatives over lines, nested groups, {m}, {m,}, and an empty alternative */
    g = parse("root ::=\n  ( \"a\" ( \"b\" | \"c\" ){2} )\n  | \"x\"{3,} | \n");
    expect(g, "abc", 1);
    expect(g, "acc", 1);
    expect(g, "ab", 0);
    expect(g, "xxx", 1);
    expect(g, "xxxxxxx", 1);
    expect(g, "xx", 0);
    expect(g, "", 1);
    expect(g, "abcb", -1);
    zl_grammar_free(g);

    /* right recursion and rules used before their definition */
    g = parse("root ::= list\nlist ::= \"(\" item* \")\"\nitem ::= \"a\" | list\n");
    expect(g, "()", 1);
    expect(g, "(a(a())a)", 1);
    expect(g, "(a(a)", 0);
    expect(g, "(a))", -1);
    zl_grammar_free(g);
}

static void refused(const char *text, const char *why)
{
    zl_grammar *g = NULL;
    zl_err e;
    const int rc = zl_grammar_parse(text, strlen(text), &g, &e);
    if (rc != ZL_EINVAL || g)
        fail_msg("[%s] accepted", text);
    if (!strstr(e.msg, why))
        fail_msg("[%s]: '%s' does not say '%s'", text, e.msg, why);
}

static void test_refusals(void **st)
{
    (void)st;
    refused("root ::= other\n", "'other' is used but not defined");
    refused("start ::= \"a\"\n", "no rule named 'root'");
    refused("root ::= root \"a\" | \"b\"\n", "left recursion");
    refused("root ::= a\na ::= \"b\"? a \"c\"\n", "left recursion");
    refused("root ::= (\"a\"?)*\n", "left recursion");
    refused("root ::= \"abc\n", "literal is not closed");
    refused("root ::= [abc\n", "not closed");
    refused("root ::= \"\\q\"\n", "unknown escape");
    refused("root ::= \"a\"{3,2}\n", "maximum is below");
    refused("root ::= \"a\"{20000}\n", "above 10000");
    refused("root ::= \"a\"\nroot ::= \"b\"\n", "line 2");
    refused("root ::= ( \"a\"\n", "expected ')'");
    refused("root ::= *\n", "repetition without");
    refused("root ::= []\n", "empty character class");
    refused("root \"a\"\n", "expected '::='");
    refused("root ::= \"a\" )\n", "unexpected character");
    refused("root ::= \"\xc3\"\n", "invalid UTF-8");
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot read", path);
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    return b;
}

/* The same verdicts as llama.cpp's grammar engine (tests/data/grammar: its sample grammars json, json_arr, chess,
 * japanese and list, and grammars of each notation; verdicts recorded by make_expected.py from llama-cpp-python). */
static void test_llamacpp_verdicts(void **st)
{
    (void)st;
    json_error_t je;
    json_t *cases = json_load_file("tests/data/grammar/cases.json", 0, &je);
    json_t *want = json_load_file("tests/data/grammar/llamacpp.expected.json", 0, &je);
    assert_non_null(cases);
    assert_non_null(want);
    json_t *cs = json_object_get(cases, "cases"), *ws = json_object_get(want, "accepts");
    assert_int_equal(json_array_size(cs), json_array_size(ws));
    size_t n = 0, yes = 0;
    for (size_t i = 0; i < json_array_size(cs); i++) {
        json_t *c = json_array_get(cs, i), *file = json_object_get(c, "file");
        char *text;
        if (file) {
            char path[256];
            snprintf(path, sizeof path, "tests/data/grammar/%s", json_string_value(file));
            text = read_text(path);
        } else {
            text = strdup(json_string_value(json_object_get(c, "gbnf")));
        }
        zl_grammar *g;
        zl_err e;
        if (zl_grammar_parse(text, strlen(text), &g, &e) != ZL_OK)
            fail_msg("case %zu: %s", i, e.msg);
        json_t *strs = json_object_get(c, "strings"), *verdicts = json_array_get(ws, i);
        assert_int_equal(json_array_size(strs), json_array_size(verdicts));
        for (size_t k = 0; k < json_array_size(strs); k++) {
            const char *s = json_string_value(json_array_get(strs, k));
            zl_grammar_state *gs = zl_grammar_state_new(g);
            const bool ok = zl_grammar_accept(gs, s, strlen(s)) && zl_grammar_can_end(gs);
            zl_grammar_state_free(gs);
            if (ok != json_is_true(json_array_get(verdicts, k)))
                fail_msg("case %zu (%s): zili %s \"%s\", llama.cpp does not", i, file ? json_string_value(file) :
                         "inline", ok ? "accepts" : "refuses", s);
            n++;
            yes += ok;
        }
        zl_grammar_free(g);
        free(text);
    }
    assert_true(n >= 80 && yes > 20 && yes < n - 20);
    json_decref(cases);
    json_decref(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_object),
        cmocka_unit_test(test_notation),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_llamacpp_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
