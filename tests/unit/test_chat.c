/*
 * test_chat.c - chat template recognition and ChatML rendering.
 *
 * Expected prompts are what jinja2 renders from the real template texts (tests/data/chat/<name>.jinja ->
 * <name>.expected, made by tests/data/chat/make_expected.py; CONVS below must match the script's list).
 * Tests run with cwd = the repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat.h"

typedef struct conv {
    size_t n;
    zl_chat_msg m[4];
} conv;

static const conv CONVS[] = {
    {1, {{"user", "Hi"}}},
    {2, {{"system", "You are terse."}, {"user", "What is 2+2?"}}},
    {3, {{"user", "Hello"}, {"assistant", "Hi! How can I help?"}, {"user", "Tell me a joke."}}},
    {0, {{0}}},
    {1, {{"user", ""}}},
    {1, {{"user", "Ünïcödé 🦙 <b>tags</b> {{ not jinja }} \"quotes\" 'apos'\nnew line"}}},
    {1, {{"assistant", "I start."}}},
    {3, {{"system", "S1"}, {"user", "u"}, {"system", "S2 mid"}}},
};
enum { N_CONVS = sizeof CONVS / sizeof CONVS[0] };

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

/* Detects the template tests/data/chat/<name>.jinja and compares every rendering with <name>.expected. */
static void check_template(const char *name, const char *want_system)
{
    char path[256];
    size_t tl, el;
    snprintf(path, sizeof path, "tests/data/chat/%s.jinja", name);
    char *tmpl_text = slurp(path, &tl);
    assert_non_null(tmpl_text);
    snprintf(path, sizeof path, "tests/data/chat/%s.expected", name);
    char *exp = slurp(path, &el);
    assert_non_null(exp);

    zl_chat_tmpl t;
    zl_err e;
    assert_int_equal(zl_chat_tmpl_detect(tmpl_text, tl, &t, &e), ZL_OK);
    assert_int_equal(t.kind, ZL_TMPL_CHATML);
    assert_string_equal(zl_chat_tmpl_name(t), "chatml");
    assert_string_equal(t.default_system, want_system);

    size_t pos = 0, records = 0;
    while (pos < el) {
        /* header "@@ conv=N gen=G len=L\n" */
        const char *h = exp + pos, *hend = memchr(h, '\n', el - pos);
        assert_non_null(hend);
        assert_true(strncmp(h, "@@ conv=", 8) == 0);
        char *q;
        long ci = strtol(h + 8, &q, 10);
        assert_true(strncmp(q, " gen=", 5) == 0);
        long gen = strtol(q + 5, &q, 10);
        assert_true(strncmp(q, " len=", 5) == 0);
        long len = strtol(q + 5, &q, 10);
        assert_ptr_equal(q, hend);
        assert_true(ci >= 0 && ci < N_CONVS && len >= 0);
        pos = (size_t)(hend - exp) + 1;
        assert_true(pos + (size_t)len + 1 <= el);
        char *got = NULL;
        assert_int_equal(zl_chat_render(t, CONVS[ci].m, CONVS[ci].n, gen != 0, &got, &e), ZL_OK);
        if (strlen(got) != (size_t)len || memcmp(got, exp + pos, (size_t)len) != 0)
            fail_msg("%s conv %ld gen %ld:\n--- expected\n%.*s\n--- got\n%s\n", name, ci, gen, (int)len, exp + pos, got);
        free(got);
        pos += (size_t)len + 1;
        records++;
    }
    assert_int_equal(records, 2 * N_CONVS);
    free(tmpl_text);
    free(exp);
}

static void test_smollm2(void **st)
{
    (void)st;
    check_template("smollm2", "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}

static void test_qwen2_escaped_newlines(void **st)
{
    (void)st;
    check_template("qwen2", "You are a helpful assistant.");
}

static void test_plain_chatml(void **st)
{
    (void)st;
    check_template("chatml", "");
}

static void test_unrecognised(void **st)
{
    (void)st;
    zl_chat_tmpl t;
    zl_err e;
    const char *llama3 = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                         "{{ m['content'] }}<|eot_id|>{% endfor %}";
    assert_int_equal(zl_chat_tmpl_detect(llama3, strlen(llama3), &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(zl_chat_tmpl_detect("", 0, &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(zl_chat_tmpl_detect(NULL, 0, &t, &e), ZL_EUNSUPPORTED);
    /* Only one marker. */
    assert_int_equal(zl_chat_tmpl_detect("<|im_start|>", 12, &t, &e), ZL_EUNSUPPORTED);
}

static void test_system_literal_is_never_evaluated(void **st)
{
    (void)st;
    zl_chat_tmpl t;
    zl_err e;
    /* Template syntax inside the would-be default: not a fixed text, so no default. */
    const char *a = "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n{{ secret }}<|im_end|>\\n' }}"
                    "{% endif %}{{ '<|im_start|>' + m + '<|im_end|>' }}";
    assert_int_equal(zl_chat_tmpl_detect(a, strlen(a), &t, &e), ZL_OK);
    assert_string_equal(t.default_system, "");
    /* A system turn built from the message, not a fixed text. */
    const char *b = "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}";
    assert_int_equal(zl_chat_tmpl_detect(b, strlen(b), &t, &e), ZL_OK);
    assert_string_equal(t.default_system, "");
    /* A fixed text without the test on the first role: unknown semantics, refused. */
    const char *c = "{{ '<|im_start|>system\\nAlways.<|im_end|>\\n' }}{{ '<|im_start|>' }}";
    assert_int_equal(zl_chat_tmpl_detect(c, strlen(c), &t, &e), ZL_EUNSUPPORTED);
    /* Two different fixed texts: refused. */
    const char *d = "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nA<|im_end|>\\n' }}"
                    "{% else %}{{ '<|im_start|>system\\nB<|im_end|>\\n' }}{% endif %}";
    assert_int_equal(zl_chat_tmpl_detect(d, strlen(d), &t, &e), ZL_EUNSUPPORTED);
    /* Escapes are decoded; a truncated template (literal never closed) gives no default. */
    const char *f = "messages[0].role == \"system\" \"<|im_start|>system\\nIt\\'s \\\"fine\\\"<|im_end|>\\n\"";
    assert_int_equal(zl_chat_tmpl_detect(f, strlen(f), &t, &e), ZL_OK);
    assert_string_equal(t.default_system, "It's \"fine\"");
    assert_int_equal(zl_chat_tmpl_detect(f, strlen(f) - 1, &t, &e), ZL_OK);
    assert_string_equal(t.default_system, "");
    /* Longer than we keep: refused rather than rendered without it. */
    size_t big = ZL_CHAT_SYSTEM_MAX + 100;
    char *g = malloc(big + 200);
    int k = sprintf(g, "messages[0]['role'] != 'system' '<|im_start|>system\\n");
    memset(g + k, 'x', big);
    strcpy(g + k + big, "<|im_end|>\\n'");
    assert_int_equal(zl_chat_tmpl_detect(g, strlen(g), &t, &e), ZL_EUNSUPPORTED);
    free(g);
}

static void test_by_name_and_bad_messages(void **st)
{
    (void)st;
    zl_chat_tmpl t;
    zl_err e;
    assert_int_equal(zl_chat_tmpl_from_name("chatml", &t, &e), ZL_OK);
    assert_int_equal(t.kind, ZL_TMPL_CHATML);
    assert_string_equal(t.default_system, "");
    assert_int_equal(zl_chat_tmpl_from_name("jinja", &t, &e), ZL_EINVAL);
    assert_non_null(strstr(e.msg, "chatml"));
    assert_int_equal(zl_chat_tmpl_from_name(NULL, &t, &e), ZL_EINVAL);

    assert_int_equal(zl_chat_tmpl_from_name("chatml", &t, &e), ZL_OK);
    char *out = NULL;
    zl_chat_msg bad_role[] = {{"tool", "x"}};
    assert_int_equal(zl_chat_render(t, bad_role, 1, true, &out, &e), ZL_EINVAL);
    assert_null(out);
    zl_chat_msg null_content[] = {{"user", NULL}};
    assert_int_equal(zl_chat_render(t, null_content, 1, true, &out, &e), ZL_EINVAL);
    zl_chat_tmpl none = {0};
    zl_chat_msg ok[] = {{"user", "x"}};
    assert_int_equal(zl_chat_render(none, ok, 1, true, &out, &e), ZL_EINVAL);
    assert_int_equal(zl_chat_render(t, ok, 1, false, &out, &e), ZL_OK);
    assert_string_equal(out, "<|im_start|>user\nx<|im_end|>\n");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_qwen2_escaped_newlines),
        cmocka_unit_test(test_plain_chatml),
        cmocka_unit_test(test_unrecognised),
        cmocka_unit_test(test_system_literal_is_never_evaluated),
        cmocka_unit_test(test_by_name_and_bad_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
