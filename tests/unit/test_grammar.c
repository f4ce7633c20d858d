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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_object),
        cmocka_unit_test(test_notation),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
