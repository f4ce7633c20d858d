/*
 * test_tools.c - tool calls out of canned replies of each family (server/tools.c): the calls and content, and the
 * same result for the reply fed whole, split at every byte, and byte by byte; tool_choice grammars accept the
 * calls they describe and refuse others.
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
#include "server/tools.h"

typedef struct want {
    zl_chat_tool_format fmt;
    bool forced;
    const char *reply;
    const char *content;   /* the content expected */
    int n_calls;
    const char *name[3];
    const char *args[3];
} want;

/* Runs the parser over reply cut at the given points (sorted, within the reply); the result into o. */
static void run(const want *w, const size_t *cuts, size_t n_cuts, oai_tool_out *o)
{
    oai_tool_parser p;
    oai_tools_init(&p, w->fmt, w->forced);
    memset(o, 0, sizeof *o);
    const size_t len = strlen(w->reply);
    size_t at = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        const size_t end = k < n_cuts ? cuts[k] : len;
        oai_tools_feed(&p, w->reply + at, end - at, k == n_cuts, o);
        at = end;
    }
    oai_tools_free(&p);
    assert_false(o->oom);
}

static void same(const oai_tool_out *a, const oai_tool_out *b, const char *reply, size_t cut)
{
    if (a->n_content != b->n_content || (a->n_content && memcmp(a->content, b->content, a->n_content)))
        fail_msg("reply %s cut at %zu: content '%.*s' vs whole '%.*s'", reply, cut, (int)a->n_content, a->content,
                 (int)b->n_content, b->content);
    assert_int_equal(a->n_calls, b->n_calls);
    for (size_t i = 0; i < a->n_calls; i++) {
        assert_string_equal(a->calls[i].name, b->calls[i].name);
        assert_string_equal(a->calls[i].args, b->calls[i].args);
    }
}

static void check(const want *w)
{
    oai_tool_out whole;
    run(w, NULL, 0, &whole);
    const char *content = whole.content ? whole.content : "";
    if (strcmp(content, w->content))
        fail_msg("reply %s: content '%s', want '%s'", w->reply, content, w->content);
    if ((int)whole.n_calls != w->n_calls)
        fail_msg("reply %s: %zu calls, want %d", w->reply, whole.n_calls, w->n_calls);
    for (int i = 0; i < w->n_calls; i++) {
        assert_string_equal(whole.calls[i].name, w->name[i]);
        assert_string_equal(whole.calls[i].args, w->args[i]);
    }
    const size_t len = strlen(w->reply);
    for (size_t c = 0; c <= len; c++) { /* two pieces, every split */
        oai_tool_out o;
        run(w, &c, 1, &o);
        same(&o, &whole, w->reply, c);
        oai_tool_out_free(&o);
    }
    size_t *all = malloc((len + 1) * sizeof *all); /* byte by byte */
    for (size_t c = 0; c < len; c++)
        all[c] = c + 1;
    oai_tool_out o;
    run(w, all, len ? len - 1 : 0, &o);
    same(&o, &whole, w->reply, (size_t)-1);
    oai_tool_out_free(&o);
    free(all);
    oai_tool_out_free(&whole);
}

static void test_hermes(void **state)
{
    (void)state;
    const want cases[] = {
        {ZL_TOOLFMT_HERMES, false, "Just text, no <tools>.", "Just text, no <tools>.", 0, {0}, {0}},
        {ZL_TOOLFMT_HERMES, false, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
         "</tool_call>", "", 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}},
        {ZL_TOOLFMT_HERMES, false, "Let me check.\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
         "<tool_call>\n{\"arguments\": {\"q\": \"}{\\\"\"}, \"name\": \"b\"}\n</tool_call>", "Let me check.", 2,
         {"a", "b"}, {"{}", "{\"q\": \"}{\\\"\"}"}},
        /* a block never closed: the object is complete, taken at the end */
        {ZL_TOOLFMT_HERMES, false, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}", "", 1, {"a"},
         {"{\"x\": 1}"}},
        /* cut inside the arguments: content from the marker on */
        {ZL_TOOLFMT_HERMES, false, "ok <tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": ",
         "ok <tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": ", 0, {0}, {0}},
        /* not JSON inside, and no name */
        {ZL_TOOLFMT_HERMES, false, "<tool_call>oops</tool_call> rest", "<tool_call>oops</tool_call> rest", 0, {0},
         {0}},
        {ZL_TOOLFMT_HERMES, false, "<tool_call>{\"arguments\": {}}</tool_call>", "<tool_call>{\"arguments\": {}}"
         "</tool_call>", 0, {0}, {0}},
        /* arguments quoted as a string holding JSON */
        {ZL_TOOLFMT_HERMES, false, "<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"k\\\": 2}\"}</tool_call>"
         " Done.", "Done.", 1, {"a"}, {"{\"k\": 2}"}},
        {ZL_TOOLFMT_HERMES, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"ü\": \"🦙\"}}\n</tool_call>", "",
         1, {"f"}, {"{\"ü\": \"🦙\"}"}},
        /* forced: a last call cut short (max_tokens) is left out, never made content */
        {ZL_TOOLFMT_HERMES, true, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
         "{\"name\": \"g\", \"argu", "", 1, {"f"}, {"{}"}},
        /* a marker's prefix at the end is content after all */
        {ZL_TOOLFMT_HERMES, false, "see <tool_ca", "see <tool_ca", 0, {0}, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]);
}

static void test_llama3(void **state)
{
    (void)state;
    const want cases[] = {
        {ZL_TOOLFMT_LLAMA3, false, " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", "", 1,
         {"get_weather"}, {"{\"city\": \"Oslo\"}"}},
        {ZL_TOOLFMT_LLAMA3, false, "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
         "\"arguments\": [1]}", "", 2, {"a", "b"}, {"{}", "[1]"}},
        {ZL_TOOLFMT_LLAMA3, false, "The answer is {\"name\": \"a\"}", "The answer is {\"name\": \"a\"}", 0, {0}, {0}},
        {ZL_TOOLFMT_LLAMA3, false, "{\"x\": 1} is JSON", "{\"x\": 1} is JSON", 0, {0}, {0}},
        {ZL_TOOLFMT_LLAMA3, false, "{\"name\": \"a\", \"parameters\": {}} and text", "and text", 1, {"a"}, {"{}"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]);
}

static void test_mistral(void **state)
{
    (void)state;
    const want cases[] = {
        {ZL_TOOLFMT_MISTRAL, false, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": [1, 2]}, \"id\": "
         "\"abcdefghi\"}, {\"name\": \"b\", \"arguments\": {}}]", "", 2, {"a", "b"}, {"{\"x\": [1, 2]}", "{}"}},
        {ZL_TOOLFMT_MISTRAL, false, "Sure. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}]", "Sure.", 1, {"a"},
         {"{}"}},
        {ZL_TOOLFMT_MISTRAL, true, "[{\"name\": \"a\", \"arguments\": {\"q\": \"]\"}}]", "", 1, {"a"},
         {"{\"q\": \"]\"}"}},
        {ZL_TOOLFMT_MISTRAL, false, "[TOOL_CALLS][{\"name\": \"a\"}, 3]", "[TOOL_CALLS][{\"name\": \"a\"}, 3]", 0,
         {0}, {0}},
        {ZL_TOOLFMT_MISTRAL, false, "[1, 2] plain", "[1, 2] plain", 0, {0}, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]);
}

static void test_deepseek(void **state)
{
    (void)state;
    const want cases[] = {
        {ZL_TOOLFMT_DEEPSEEK, false, "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
         "get_weather\n```json\n{\"city\": \"Rome\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function"
         "<｜tool▁sep｜>lookup\n```json\n{\"q\": \"x\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "I will look.",
         2, {"get_weather", "lookup"}, {"{\"city\": \"Rome\"}", "{\"q\": \"x\"}"}},
        {ZL_TOOLFMT_DEEPSEEK, false, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
         "{bad}\n```<｜tool▁call▁end｜>", "<｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{bad}\n```"
         "<｜tool▁call▁end｜>", 0, {0}, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]);
}

static bool grammar_takes(const char *g, const char *s)
{
    zl_grammar *gr;
    zl_err e;
    if (zl_grammar_parse(g, strlen(g), &gr, &e) != ZL_OK)
        fail_msg("grammar does not parse: %s\n%s", e.msg, g);
    zl_grammar_state *st = zl_grammar_state_new(gr);
    const bool ok = zl_grammar_accept(st, s, strlen(s)) && zl_grammar_can_end(st);
    zl_grammar_state_free(st);
    zl_grammar_free(gr);
    return ok;
}

static void test_grammars(void **state)
{
    (void)state;
    json_error_t je;
    json_t *tools = json_loads(
        "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"], \"additionalProperties\": "
        "false}}}, {\"type\": \"function\", \"function\": {\"name\": \"odd\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"n\": {\"type\": \"integer\"}, \"s\": {\"type\": \"string\", \"pattern\": \"a+\"}}}}}]",
        0, &je);
    assert_non_null(tools);
    char why[256];
    struct {
        zl_chat_tool_format fmt;
        const char *name;
        bool parallel;
        const char *yes, *no;
    } cases[] = {
        {ZL_TOOLFMT_HERMES, NULL, false, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\"}}\n"
         "</tool_call>", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"},
        {ZL_TOOLFMT_HERMES, NULL, true, "<tool_call>\n{\"name\": \"odd\", \"arguments\": {\"n\": 7}}\n</tool_call>\n"
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\"}}\n</tool_call>", "hello"},
        {ZL_TOOLFMT_HERMES, "odd", false, "<tool_call>\n{\"name\": \"odd\", \"arguments\": {}}\n</tool_call>",
         "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\"}}\n</tool_call>"},
        {ZL_TOOLFMT_LLAMA3, NULL, false, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"P\"}}",
         "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P\"}}"},
        {ZL_TOOLFMT_MISTRAL, NULL, true, "[{\"name\": \"odd\", \"arguments\": {}}, {\"name\": \"odd\", \"arguments\": "
         "{\"n\": 1}}]", "[]"},
        {ZL_TOOLFMT_DEEPSEEK, "get_weather", false, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
         "get_weather\n```json\n{\"city\": \"P\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "{}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *g = oai_tools_grammar(cases[i].fmt, tools, cases[i].name, cases[i].parallel, why, sizeof why);
        if (!g)
            fail_msg("case %zu: %s", i, why);
        if (!grammar_takes(g, cases[i].yes))
            fail_msg("case %zu: grammar refuses %s\n%s", i, cases[i].yes, g);
        if (grammar_takes(g, cases[i].no))
            fail_msg("case %zu: grammar takes %s", i, cases[i].no);
        /* what the grammar makes, the parser reads back as calls */
        oai_tool_parser p;
        oai_tool_out o = {0};
        oai_tools_init(&p, cases[i].fmt, true);
        oai_tools_feed(&p, cases[i].yes, strlen(cases[i].yes), true, &o);
        assert_true(o.n_calls >= 1);
        assert_int_equal(o.n_content, 0);
        oai_tools_free(&p);
        oai_tool_out_free(&o);
        free(g);
    }
    assert_null(oai_tools_grammar(ZL_TOOLFMT_HERMES, tools, "nope", false, why, sizeof why));
    assert_non_null(strstr(why, "nope"));
    json_decref(tools);

    char id[32];
    uint64_t rng = 1;
    oai_tools_call_id(ZL_TOOLFMT_MISTRAL, &rng, id);
    assert_int_equal(strlen(id), 9);
    oai_tools_call_id(ZL_TOOLFMT_HERMES, &rng, id);
    assert_int_equal(strlen(id), 29);
    assert_memory_equal(id, "call_", 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hermes),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_deepseek),
        cmocka_unit_test(test_grammars),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
