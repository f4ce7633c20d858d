/*
 * test_chat.c - chat template recognition and native rendering of every family.
 *
 * Expected prompts are what jinja2 renders from the real template texts (tests/data/chat/<name>.jinja ->
 * <name>.expected, made by tests/data/chat/make_expected.py; CONVS below must match the script's list).
 * Tests run with cwd = the repository root.
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
#include <time.h>

#include <jansson.h>

#include "tokenizer/chat.h"

typedef struct conv {
    size_t n;
    zl_chat_msg m[4];
} conv;

static const conv CONVS[] = {
    {1, {{.role = "user", .content = "Hi"}}},
    {2, {{.role = "system", .content = "You are terse."}, {.role = "user", .content = "What is 2+2?"}}},
    {3, {{.role = "user", .content = "Hello"}, {.role = "assistant", .content = "Hi! How can I help?"}, {.role = "user", .content = "Tell me a joke."}}},
    {1, {{.role = "user", .content = ""}}},
    {1, {{.role = "user", .content = "Ünïcödé 🦙 <b>tags</b> {{ not jinja }} \"quotes\" 'apos'\nnew line"}}},
    {1, {{.role = "assistant", .content = "I start."}}},
    {3, {{.role = "system", .content = "S1"}, {.role = "user", .content = "u"}, {.role = "system", .content = "S2 mid"}}},
    {4, {{.role = "system", .content = "Be brief."}, {.role = "user", .content = "Hello"}, {.role = "assistant", .content = "Hi!"}, {.role = "user", .content = "Again"}}},
    {4, {{.role = "system", .content = " Sys \n"}, {.role = "user", .content = "  padded \n"}, {.role = "assistant", .content = "\t answer \u3000\u00a0"}, {.role = "user", .content = "x\u2028"}}},
    {3, {{.role = "user", .content = "Q1"}, {.role = "assistant", .content = "<think>\nplan\n</think>\n\nA1"}, {.role = "user", .content = "Q2"}}},
    {2, {{.role = "user", .content = "Q"}, {.role = "assistant", .content = "<think>r</think>final"}}},
    {3,
     {{.role = "user", .content = "a</think>b"}, {.role = "assistant", .content = "\nx</think>y</think>\n\nz"}, {.role = "user", .content = "<tool_response>t</tool_response>"}}},
    {2, {{.role = "user", .content = "Hi"}, {.role = "assistant", .content = ""}}},
    {2, {{.role = "user", .content = "u1"}, {.role = "user", .content = "u2"}}},
    {3, {{.role = "system", .content = "Sys"}, {.role = "user", .content = "U"}, {.role = "assistant", .content = "A"}}},
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

/* One record of an .expected file: the rendering of CONVS[conv] (with the generation prompt when gen), or
 * text == NULL where the template raises. */
typedef struct record {
    const char *text;
    size_t len;
} record;

enum { MAX_RECORDS = 32 };

typedef struct expected {
    char *data;
    record rec[MAX_RECORDS][2];
} expected;

/* Reads a record file of n_convs conversations (each rendered without and with the generation prompt). */
static void load_records(const char *path, expected *x, long n_convs)
{
    size_t el;
    assert_true(n_convs <= MAX_RECORDS);
    x->data = slurp(path, &el);
    if (!x->data)
        fail_msg("%s: cannot read", path);
    bool seen[MAX_RECORDS][2] = {{false}};
    size_t pos = 0, records = 0;
    while (pos < el) {
        /* header "@@ conv=N gen=G len=L\n" or "@@ conv=N gen=G error\n" */
        const char *h = x->data + pos, *hend = memchr(h, '\n', el - pos);
        assert_non_null(hend);
        assert_true(strncmp(h, "@@ conv=", 8) == 0);
        char *q;
        long ci = strtol(h + 8, &q, 10);
        assert_true(strncmp(q, " gen=", 5) == 0);
        long gen = strtol(q + 5, &q, 10);
        assert_true(ci >= 0 && ci < n_convs && (gen == 0 || gen == 1) && !seen[ci][gen]);
        seen[ci][gen] = true;
        record *r = &x->rec[ci][gen];
        pos = (size_t)(hend - x->data) + 1;
        if (strncmp(q, " error", 6) == 0 && q + 6 == hend) {
            r->text = NULL;
        } else {
            assert_true(strncmp(q, " len=", 5) == 0);
            long len = strtol(q + 5, &q, 10);
            assert_ptr_equal(q, hend);
            assert_true(len >= 0 && pos + (size_t)len + 1 <= el);
            r->text = x->data + pos;
            r->len = (size_t)len;
            pos += (size_t)len + 1;
        }
        records++;
    }
    assert_int_equal(records, 2 * n_convs);
}

static void load_expected(const char *name, expected *x)
{
    char path[256];
    snprintf(path, sizeof path, "tests/data/chat/%s.expected", name);
    load_records(path, x, N_CONVS);
}

/* Renders every conversation with t and compares with want's records: the same bytes, or a refusal (ZL_EINVAL)
 * where the template raises. Where it raises and alt is given, zili's deliberate choice is alt's record instead
 * (Gemma 2 refuses system messages; zili folds them as Gemma 3 does). */
static void compare_renderings(const char *name, const zl_chat_tmpl *t, const expected *want, const expected *alt)
{
    zl_err e;
    size_t compared = 0, refused = 0;
    for (int ci = 0; ci < N_CONVS; ci++)
        for (int gen = 0; gen < 2; gen++) {
            const record *r = &want->rec[ci][gen];
            if (!r->text && alt && alt->rec[ci][gen].text)
                r = &alt->rec[ci][gen];
            char *got = NULL;
            const int rc = zl_chat_render(*t, CONVS[ci].m, CONVS[ci].n, gen != 0, &got, &e);
            if (!r->text) {
                if (rc != ZL_EINVAL)
                    fail_msg("%s conv %d gen %d: the template refuses it, zili rendered:\n%s\n", name, ci, gen,
                             got ? got : "(null)");
                assert_null(got);
                refused++;
                continue;
            }
            if (rc != ZL_OK)
                fail_msg("%s conv %d gen %d: refused (%s)", name, ci, gen, e.msg);
            if (strlen(got) != r->len || memcmp(got, r->text, r->len) != 0)
                fail_msg("%s conv %d gen %d:\n--- expected\n%.*s\n--- got\n%s\n", name, ci, gen, (int)r->len, r->text,
                         got);
            free(got);
            compared++;
        }
    assert_int_equal(compared + refused, 2 * N_CONVS);
    assert_true(compared >= N_CONVS); /* most conversations render in every family */
}

/* Detects tests/data/chat/<name>.jinja into *t. */
static void detect_file(const char *name, zl_chat_tmpl *t)
{
    char path[256];
    size_t tl;
    snprintf(path, sizeof path, "tests/data/chat/%s.jinja", name);
    char *tmpl_text = slurp(path, &tl);
    assert_non_null(tmpl_text);
    zl_err e;
    if (zl_chat_tmpl_detect(tmpl_text, tl, t, &e) != ZL_OK)
        fail_msg("%s: %s", name, e.msg);
    free(tmpl_text);
}

/* Detects tests/data/chat/<name>.jinja and compares every rendering with <name>.expected (alt: see above). */
static void check_template_alt(const char *name, zl_chat_kind kind, unsigned flags, const char *want_system,
                               const char *alt)
{
    zl_chat_tmpl t;
    detect_file(name, &t);
    assert_int_equal(t.kind, kind);
    assert_int_equal(t.flags, flags);
    assert_string_equal(t.default_system, want_system);

    expected want, other;
    load_expected(name, &want);
    if (alt)
        load_expected(alt, &other);
    compare_renderings(name, &t, &want, alt ? &other : NULL);
    free(want.data);
    if (alt)
        free(other.data);
}

static void check_template(const char *name, zl_chat_kind kind, unsigned flags, const char *want_system)
{
    check_template_alt(name, kind, flags, want_system, NULL);
}

/* The named template renders like the real one. */
static void check_named(const char *tmpl_name, const char *data_name)
{
    zl_chat_tmpl t;
    zl_err e;
    assert_int_equal(zl_chat_tmpl_from_name(tmpl_name, &t, &e), ZL_OK);
    expected want;
    load_expected(data_name, &want);
    compare_renderings(tmpl_name, &t, &want, NULL);
    free(want.data);
}

static void test_smollm2(void **st)
{
    (void)st;
    check_template("smollm2", ZL_TMPL_CHATML, 0,
                   "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}

static void test_qwen2_escaped_newlines(void **st)
{
    (void)st;
    check_template("qwen2", ZL_TMPL_CHATML, 0, "You are a helpful assistant.");
}

static void test_plain_chatml(void **st)
{
    (void)st;
    check_template("chatml", ZL_TMPL_CHATML, 0, "");
    check_named("chatml", "chatml");
}

static void test_qwen25(void **st)
{
    (void)st;
    check_template("qwen2.5", ZL_TMPL_CHATML, ZL_CHAT_TOOLS,
                   "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    check_named("qwen2.5", "qwen2.5");
}

static void test_qwen3(void **st)
{
    (void)st;
    check_template("qwen3", ZL_TMPL_QWEN3, ZL_CHAT_TOOLS, "");
    check_named("qwen3", "qwen3");
}

static void test_llama3(void **st)
{
    (void)st;
    check_template("llama3", ZL_TMPL_LLAMA3, ZL_CHAT_BOS, "");
    check_named("llama3", "llama3");
}

static void test_llama31(void **st)
{
    (void)st;
    check_template("llama3.1", ZL_TMPL_LLAMA3, ZL_CHAT_BOS | ZL_CHAT_LLAMA3_SYSTEM | ZL_CHAT_TOOLS, "");
    check_template("llama3.2", ZL_TMPL_LLAMA3, ZL_CHAT_BOS | ZL_CHAT_LLAMA3_SYSTEM | ZL_CHAT_TOOLS, "");
    check_named("llama3.1", "llama3.1");
}

static void test_gemma(void **st)
{
    (void)st;
    check_template("gemma3", ZL_TMPL_GEMMA, ZL_CHAT_BOS, "");
    check_template_alt("gemma2", ZL_TMPL_GEMMA, ZL_CHAT_BOS, "", "gemma3");
    check_named("gemma", "gemma3");
}

static void test_deepseek_r1(void **st)
{
    (void)st;
    check_template("deepseek-r1", ZL_TMPL_DEEPSEEK_R1, ZL_CHAT_BOS | ZL_CHAT_THINK_PROMPT | ZL_CHAT_TOOLS, "");
    check_named("deepseek-r1", "deepseek-r1");
}

static void test_deepseek_v3(void **st)
{
    (void)st;
    const unsigned v3 = ZL_CHAT_BOS | ZL_CHAT_DEEPSEEK_JOIN_SYSTEM | ZL_CHAT_DEEPSEEK_WHOLE_REPLY;
    check_template("deepseek-v3", ZL_TMPL_DEEPSEEK_R1, v3 | ZL_CHAT_TOOLS, "");
    check_named("deepseek-v3", "deepseek-v3");
    /* The R1 forms stay as they were. */
    zl_chat_tmpl t;
    detect_file("deepseek-r1", &t);
    assert_string_equal(zl_chat_tmpl_name(t), "deepseek-r1");
    detect_file("deepseek-v3", &t);
    assert_string_equal(zl_chat_tmpl_name(t), "deepseek-v3");
}

/* make_expected.py's strftime_now date for Mistral Small 3.2's template. */
static const char FIXED_DATE[] = "2025-06-20";

static void today(char out[16])
{
    const time_t now = time(NULL);
    struct tm tm;
    assert_non_null(localtime_r(&now, &tm));
    assert_int_equal(strftime(out, 16, "%Y-%m-%d", &tm), 10);
}

static void test_mistral_v7(void **st)
{
    (void)st;
    check_template("mistral-v7", ZL_TMPL_MISTRAL_V7, ZL_CHAT_BOS, "");
    check_named("mistral-v7", "mistral-v7");

    /* Small 3.2 (v7-tekken): its default system text, with the date's place, comes from the template. */
    zl_chat_tmpl t;
    detect_file("mistral-small-3.2", &t);
    assert_int_equal(t.kind, ZL_TMPL_MISTRAL_V7);
    assert_int_equal(t.flags, ZL_CHAT_BOS | ZL_CHAT_MISTRAL_NOSPACE | ZL_CHAT_MISTRAL_SYSTEM_FIRST);
    assert_string_equal(zl_chat_tmpl_name(t), "mistral-v7");
    static const char before_date[] = "Your knowledge base was last updated on 2023-10-01. The current date is ";
    assert_true(t.date_at >= strlen(before_date) && t.date_at < strlen(t.default_system));
    assert_memory_equal(t.default_system + t.date_at - strlen(before_date), before_date, strlen(before_date));
    static const char after_date[] = ".\n\nWhen you're not sure";
    assert_memory_equal(t.default_system + t.date_at, after_date, strlen(after_date));
    assert_string_equal(t.date, "");
    expected want;
    load_expected("mistral-small-3.2", &want);
    strcpy(t.date, FIXED_DATE);
    compare_renderings("mistral-small-3.2", &t, &want, NULL);

    /* No date set: today's, as strftime_now writes it; the rest of the prompt is the same. */
    t.date[0] = 0;
    char before[16], after[16], got_date[16] = "";
    today(before);
    char *got = NULL;
    zl_err e;
    assert_int_equal(zl_chat_render(t, CONVS[0].m, CONVS[0].n, true, &got, &e), ZL_OK);
    today(after);
    const record *r = &want.rec[0][1];
    const char *d = memmem(r->text, r->len, FIXED_DATE, strlen(FIXED_DATE));
    assert_non_null(d);
    const size_t at = (size_t)(d - r->text), dl = strlen(FIXED_DATE);
    assert_int_equal(strlen(got), r->len);
    assert_memory_equal(got, r->text, at);
    assert_memory_equal(got + at + dl, r->text + at + dl, r->len - at - dl);
    memcpy(got_date, got + at, dl);
    if (strcmp(got_date, before) != 0 && strcmp(got_date, after) != 0)
        fail_msg("date %s, today is %s", got_date, before);
    free(got);
    free(want.data);
}

static void test_mistral(void **st)
{
    (void)st;
    check_template("mistral-v0.2", ZL_TMPL_MISTRAL, ZL_CHAT_BOS, "");
    check_template("mistral-v3", ZL_TMPL_MISTRAL, ZL_CHAT_BOS | ZL_CHAT_MISTRAL_V3 | ZL_CHAT_MISTRAL_TRIM | ZL_CHAT_TOOLS, "");
    check_template("mistral-nemo", ZL_TMPL_MISTRAL,
                   ZL_CHAT_BOS | ZL_CHAT_MISTRAL_V3 | ZL_CHAT_MISTRAL_NOSPACE | ZL_CHAT_TOOLS, "");
    check_named("mistral", "mistral-v0.2");
    check_named("mistral-v3", "mistral-v3");
    check_named("mistral-nemo", "mistral-nemo");
}

/* The BOS text a caller must not double, and the family names zili info prints. */
static void test_bos_and_names(void **st)
{
    (void)st;
    static const struct {
        const char *name, *family, *bos;
    } cases[] = {
        {"chatml", "chatml", ""},         {"qwen2.5", "chatml", ""},
        {"qwen3", "qwen3", ""},           {"llama3", "llama3", "<|begin_of_text|>"},
        {"llama3.1", "llama3", "<|begin_of_text|>"}, {"gemma", "gemma", "<bos>"},
        {"deepseek-r1", "deepseek-r1", "<｜begin▁of▁sentence｜>"}, {"mistral", "mistral", "<s>"},
        {"mistral-v3", "mistral", "<s>"}, {"mistral-nemo", "mistral", "<s>"},
        {"deepseek-v3", "deepseek-v3", "<｜begin▁of▁sentence｜>"}, {"mistral-v7", "mistral-v7", "<s>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zl_chat_tmpl t;
        zl_err e;
        assert_int_equal(zl_chat_tmpl_from_name(cases[i].name, &t, &e), ZL_OK);
        assert_string_equal(zl_chat_tmpl_name(t), cases[i].family);
        assert_string_equal(zl_chat_tmpl_bos(t), cases[i].bos);
        char *out = NULL;
        zl_chat_msg m[] = {{.role = "user", .content = "x"}};
        assert_int_equal(zl_chat_render(t, m, 1, true, &out, &e), ZL_OK);
        assert_true(strncmp(out, cases[i].bos, strlen(cases[i].bos)) == 0);
        /* A tokenizer that adds BOS itself gets the prompt without the BOS text; one that does not keeps it. */
        const size_t full = strlen(out), nb = strlen(cases[i].bos);
        zl_chat_strip_bos(t, false, out);
        assert_int_equal(strlen(out), full);
        zl_chat_strip_bos(t, true, out);
        assert_int_equal(strlen(out), full - nb);
        zl_chat_strip_bos(t, true, out); /* only one BOS text is ever removed */
        assert_int_equal(strlen(out), full - nb);
        free(out);
    }
    /* Gemma 1's template has no bos_token: no BOS text. */
    const char *g1 = "{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] "
                     "| trim + '<end_of_turn>\\n' }}{% endfor %}";
    zl_chat_tmpl t;
    zl_err e;
    assert_int_equal(zl_chat_tmpl_detect(g1, strlen(g1), &t, &e), ZL_OK);
    assert_int_equal(t.kind, ZL_TMPL_GEMMA);
    assert_string_equal(zl_chat_tmpl_bos(t), "");
}

/* Markers of a family with forms zili does not render: refused, never rendered differently. */
static void test_unknown_variants(void **st)
{
    (void)st;
    static const char *const texts[] = {
        /* Llama 3.1-style system block with another knowledge date */
        "<|start_header_id|><|end_header_id|><|eot_id|> {{- \"Cutting Knowledge Date: March 2025\\n\" }}",
        /* ... or no date_string default */
        ("<|start_header_id|><|end_header_id|><|eot_id|> {{- \"Cutting Knowledge Date: December 2023\\n\" }}"
         "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}"),
        /* Gemma folding with template syntax in the separator */
        "<start_of_turn><end_of_turn>{%- set first_user_prefix = messages[0]['content'] + '{{x}}' -%}",
        /* DeepSeek with neither V3's forms nor the R1 think stripping, and the enable_thinking variant */
        "<｜User｜><｜Assistant｜><｜end▁of▁sentence｜>",
        "<｜User｜><｜Assistant｜><｜end▁of▁sentence｜>content.split('</think>')[-1] enable_thinking",
        /* R1's own template (system messages joined, as V3's) and V3-0324's (is_last_user): not rendered yet */
        "<｜User｜><｜Assistant｜><｜end▁of▁sentence｜>is_first_sp content.split('</think>')[-1]",
        ("<｜User｜><｜Assistant｜><｜end▁of▁sentence｜>"
         "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}"
         "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}} ns.is_last_user "
         "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"),
        /* Mistral v7 without its known forms, and Small 3 (2501)'s, which has no alternation check */
        "[SYSTEM_PROMPT] [INST] [/INST]",
        ("{%- set today = strftime_now(\"%Y-%m-%d\") %}{%- set default_system_message = \"A \" + today + \".\" %}"
         "{%- set system_message = default_system_message %}{{- '[SYSTEM_PROMPT]' + system_message + "
         "'[/SYSTEM_PROMPT]' }}{{- '[INST]' + message['content'] + '[/INST]' }}"),
        "[INST] [/INST] (message == user_messages[-1]) and system_message is defined",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        zl_chat_tmpl t;
        zl_err e;
        if (zl_chat_tmpl_detect(texts[i], strlen(texts[i]), &t, &e) != ZL_EUNSUPPORTED)
            fail_msg("variant %zu was accepted as %s", i, zl_chat_tmpl_name(t));
        assert_int_equal(t.kind, ZL_TMPL_NONE);
        assert_non_null(strstr(e.msg, "--chat-template"));
    }

    /* Mistral Small 3.2's template with its default system text changed: a date expression other than "today",
     * template syntax inside the text, the text cut off. Each is refused, never half-copied. */
    size_t tl;
    char *real = slurp("tests/data/chat/mistral-small-3.2.jinja", &tl);
    assert_non_null(real);
    static const struct {
        const char *from, *to;
    } edits[] = {
        {"\" + today + \"", "\" + today|upper + \""},
        {"Paris.\\n", "Paris {{ x }}.\\n"},
        {"the moment.\" %}", "the moment. %}"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *m = strstr(real, edits[i].from);
        assert_non_null(m);
        const size_t at = (size_t)(m - real), fl = strlen(edits[i].from), toll = strlen(edits[i].to);
        char *ed = malloc(tl - fl + toll + 1);
        assert_non_null(ed);
        memcpy(ed, real, at);
        memcpy(ed + at, edits[i].to, toll);
        memcpy(ed + at + toll, real + at + fl, tl - at - fl + 1);
        zl_chat_tmpl t;
        zl_err e;
        if (zl_chat_tmpl_detect(ed, strlen(ed), &t, &e) != ZL_EUNSUPPORTED)
            fail_msg("Mistral Small 3.2 edit %zu was accepted", i);
        assert_int_equal(t.kind, ZL_TMPL_NONE);
        assert_string_equal(t.default_system, "");
        free(ed);
    }
    free(real);
}

/* Python's str.strip() whitespace, and bytes that are not UTF-8, at the edges of trimmed (llama3) content. */
static void test_trim_edges(void **st)
{
    (void)st;
    zl_chat_tmpl t;
    zl_err e;
    assert_int_equal(zl_chat_tmpl_from_name("llama3", &t, &e), ZL_OK);
    static const struct {
        const char *in, *want;
    } cases[] = {
        {" \t\n\v\f\r\x1c\x1f a \xc2\x85\xe1\x9a\x80\xe2\x80\x8a\xe2\x80\xaf\xe2\x81\x9f\xe3\x80\x80", "a"},
        {"\xe2\x80\x8b" "a" "\xe2\x80\x8b", "\xe2\x80\x8b" "a" "\xe2\x80\x8b"}, /* U+200B is not whitespace */
        {"\x80 a \xe3\x80", "\x80 a \xe3\x80"},                                 /* broken UTF-8 stays */
        {" \xe3\x80\x80", ""},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zl_chat_msg m[] = {{.role = "user", .content = cases[i].in}};
        char *out = NULL;
        assert_int_equal(zl_chat_render(t, m, 1, false, &out, &e), ZL_OK);
        char want[128];
        snprintf(want, sizeof want, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>",
                 cases[i].want);
        assert_string_equal(out, want);
        free(out);
    }
}

static void test_unrecognised(void **st)
{
    (void)st;
    zl_chat_tmpl t;
    zl_err e;
    const char *vicuna = "{% for m in messages %}USER: {{ m['content'] }} ASSISTANT:{% endfor %}";
    assert_int_equal(zl_chat_tmpl_detect(vicuna, strlen(vicuna), &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(t.kind, ZL_TMPL_NONE);
    assert_int_equal(zl_chat_tmpl_detect("", 0, &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(zl_chat_tmpl_detect(NULL, 0, &t, &e), ZL_EUNSUPPORTED);
    /* Only one marker of a family. */
    assert_int_equal(zl_chat_tmpl_detect("<|im_start|>", 12, &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(zl_chat_tmpl_detect("<|start_header_id|><|eot_id|>", 29, &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(zl_chat_tmpl_detect("<start_of_turn>", 15, &t, &e), ZL_EUNSUPPORTED);
    /* The markers past the given length do not count. */
    const char *cut = "xx<start_of_turn><end_of_turn>";
    assert_int_equal(zl_chat_tmpl_detect(cut, 20, &t, &e), ZL_EUNSUPPORTED);
    assert_int_equal(zl_chat_tmpl_detect(cut, strlen(cut), &t, &e), ZL_OK);
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
    assert_int_equal(t.kind, ZL_TMPL_NONE);
    assert_non_null(strstr(e.msg, "longer than")); /* the specific reason, not "not recognised" */
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
    assert_non_null(strstr(e.msg, "mistral-nemo"));
    assert_non_null(strstr(e.msg, "mistral-v7"));
    assert_non_null(strstr(e.msg, "deepseek-v3"));
    assert_int_equal(zl_chat_tmpl_from_name(NULL, &t, &e), ZL_EINVAL);

    assert_int_equal(zl_chat_tmpl_from_name("chatml", &t, &e), ZL_OK);
    char *out = NULL;
    zl_chat_msg bad_role[] = {{.role = "ipython", .content = "x"}};
    assert_int_equal(zl_chat_render(t, bad_role, 1, true, &out, &e), ZL_EINVAL);
    assert_null(out);
    zl_chat_msg null_content[] = {{.role = "user", .content = NULL}};
    assert_int_equal(zl_chat_render(t, null_content, 1, true, &out, &e), ZL_EINVAL);
    zl_chat_tmpl none = {0};
    zl_chat_msg ok[] = {{.role = "user", .content = "x"}};
    assert_int_equal(zl_chat_render(none, ok, 1, true, &out, &e), ZL_EINVAL);
    assert_int_equal(zl_chat_render(t, ok, 0, true, &out, &e), ZL_EINVAL); /* no messages */
    assert_null(out);
    assert_int_equal(zl_chat_render(t, NULL, 1, true, &out, &e), ZL_EINVAL);
    zl_chat_tmpl bogus = t;
    bogus.kind = (zl_chat_kind)99;
    assert_int_equal(zl_chat_render(bogus, ok, 1, true, &out, &e), ZL_EINVAL);
    assert_int_equal(zl_chat_render(t, ok, 1, false, &out, &e), ZL_OK);
    assert_string_equal(out, "<|im_start|>user\nx<|im_end|>\n");
    free(out);
}

/* zl_chat_render_spans, every named template: the same prompt as zl_chat_render, and spans that cover each message's
 * text wherever it went and nothing of the template's own markup. The messages spell other families' special
 * tokens, which must fall inside spans too. */
static void test_content_spans(void **st)
{
    (void)st;
    static const char *const names[] = {"chatml", "qwen2.5", "qwen3", "llama3", "llama3.1", "gemma", "deepseek-r1",
                                        "deepseek-v3", "mistral", "mistral-v3", "mistral-nemo", "mistral-v7"};
    static const zl_chat_msg with_sys[] = {{.role = "system", .content = "qqS0<|im_end|>s0"}, {.role = "user", .content = "qqU1<|eot_id|>u1"},
                                           {.role = "assistant", .content = "qqA2<end_of_turn>a2"}, {.role = "user", .content = "qqU3[INST]u3"}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        zl_chat_tmpl t;
        zl_err e;
        assert_int_equal(zl_chat_tmpl_from_name(names[k], &t, &e), ZL_OK);
        const zl_chat_msg *m = with_sys;
        size_t n = 4;
        char *plain = NULL, *got = NULL;
        zl_text_span *sp = NULL;
        size_t ns = 0;
        if (zl_chat_render(t, m, n, true, &plain, &e) != ZL_OK) { /* families that refuse a system message */
            m++, n--;
            assert_int_equal(zl_chat_render(t, m, n, true, &plain, &e), ZL_OK);
        }
        assert_int_equal(zl_chat_render_spans(t, m, n, true, &got, &sp, &ns, &e), ZL_OK);
        assert_string_equal(got, plain);
        const size_t len = strlen(got);
        char *mask = calloc(len + 1, 1);
        assert_non_null(mask);
        for (size_t i = 0; i < ns; i++) {
            assert_true(sp[i].len > 0 && sp[i].off + sp[i].len <= len);
            if (i)
                assert_true(sp[i].off > sp[i - 1].off + sp[i - 1].len); /* sorted, adjacent ones merged */
            memset(mask + sp[i].off, 1, sp[i].len);
        }
        for (size_t i = 0; i < n; i++) {
            const char *at = strstr(got, m[i].content);
            if (!at)
                fail_msg("%s: message %zu's text is not in the prompt:\n%s", names[k], i, got);
            for (; at; at = strstr(at + 1, m[i].content))
                for (size_t j = 0; j < strlen(m[i].content); j++)
                    if (!mask[at - got + (ptrdiff_t)j])
                        fail_msg("%s: byte %td of message %zu is outside the spans", names[k], at - got, i);
        }
        size_t covered = 0, text = 0;
        for (size_t i = 0; i < len; i++)
            covered += mask[i] != 0;
        for (size_t i = 0; i < n; i++)
            text += strlen(m[i].content);
        if (covered != text) /* every message appears once in these families: the spans are exactly the text */
            fail_msg("%s: spans cover %zu bytes, the messages have %zu:\n%s", names[k], covered, text, got);
        free(mask);
        free(sp);
        free(got);
        free(plain);
    }
}

/* Qwen3 with the template's enable_thinking = false (ZL_CHAT_NO_THINKING): the reply opens with the empty block the
 * official template writes ('<think>\n\n</think>\n\n' after the generation prompt); nothing else changes. */
static void test_qwen3_no_thinking(void **st)
{
    (void)st;
    zl_chat_tmpl t;
    zl_err e;
    assert_int_equal(zl_chat_tmpl_from_name("qwen3", &t, &e), ZL_OK);
    const zl_chat_msg m[] = {{.role = "user", .content = "Hi"}};
    char *on, *off, *off_nogen;
    assert_int_equal(zl_chat_render(t, m, 1, true, &on, &e), ZL_OK);
    t.flags |= ZL_CHAT_NO_THINKING;
    assert_int_equal(zl_chat_render(t, m, 1, true, &off, &e), ZL_OK);
    assert_int_equal(zl_chat_render(t, m, 1, false, &off_nogen, &e), ZL_OK);
    const char *block = "<think>\n\n</think>\n\n";
    assert_int_equal(strlen(off), strlen(on) + strlen(block));
    assert_memory_equal(off, on, strlen(on));
    assert_string_equal(off + strlen(on), block);
    assert_null(strstr(off_nogen, "<think>")); /* no generation prompt, no block */
    free(on);
    free(off);
    free(off_nogen);
}

/* ---- tools --------------------------------------------------------------------------------------------------- */

/* One case of tests/data/chat/tools_cases.json as zl_chat_msg values (strings borrowed from the JSON). */
typedef struct tool_conv {
    zl_chat_msg m[8];
    zl_chat_call calls[8][4];
    size_t n;
} tool_conv;

static void tool_conv_from_json(json_t *msgs, tool_conv *c)
{
    c->n = json_array_size(msgs);
    assert_true(c->n <= 8);
    for (size_t i = 0; i < c->n; i++) {
        json_t *m = json_array_get(msgs, i), *content = json_object_get(m, "content");
        json_t *calls = json_object_get(m, "tool_calls"), *id = json_object_get(m, "tool_call_id");
        c->m[i] = (zl_chat_msg){.role = json_string_value(json_object_get(m, "role")),
                                .content = json_is_string(content) ? json_string_value(content) : NULL,
                                .tool_call_id = id ? json_string_value(id) : NULL};
        assert_true(json_array_size(calls) <= 4);
        for (size_t k = 0; k < json_array_size(calls); k++) {
            json_t *call = json_array_get(calls, k), *f = json_object_get(call, "function");
            c->calls[i][k] = (zl_chat_call){json_string_value(json_object_get(call, "id")),
                                            json_string_value(json_object_get(f, "name")),
                                            json_string_value(json_object_get(f, "arguments"))};
        }
        if (json_array_size(calls)) {
            c->m[i].calls = c->calls[i];
            c->m[i].n_calls = json_array_size(calls);
        }
    }
}

/* Every case of tools_cases.json, rendered by every template that has tools of its own (byte-identical to jinja2
 * with the tools) and by the generic way (identical to make_tools_expected.py's independent rewrite rendered by
 * jinja2); with and without spans the same text, and every span inside the prompt. */
static void test_tools_rendering(void **state)
{
    (void)state;
    static const char *const names[] = {"qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral-v3", "mistral-nemo",
                                        "deepseek-r1", "deepseek-v3", "smollm2", "qwen2", "chatml", "llama3",
                                        "gemma3", "mistral-v0.2", "mistral-v7"};
    size_t cl;
    char *cases_text = slurp("tests/data/chat/tools_cases.json", &cl);
    assert_non_null(cases_text);
    json_error_t je;
    json_t *root = json_loads(cases_text, 0, &je);
    free(cases_text);
    assert_non_null(root);
    char *tools = json_dumps(json_object_get(root, "tools"), JSON_COMPACT);
    json_t *cases = json_object_get(root, "cases");
    size_t compared = 0, refused = 0;
    for (size_t ni = 0; ni < sizeof names / sizeof names[0]; ni++) {
        zl_chat_tmpl t;
        detect_file(names[ni], &t);
        assert_int_equal((t.flags & ZL_CHAT_TOOLS) != 0, ni < 8);
        char path[256];
        snprintf(path, sizeof path, "tests/data/chat/%s.tools.expected", names[ni]);
        expected want;
        load_records(path, &want, (long)json_array_size(cases));
        for (size_t ci = 0; ci < json_array_size(cases); ci++) {
            json_t *cs = json_array_get(cases, ci);
            tool_conv c;
            tool_conv_from_json(json_object_get(cs, "messages"), &c);
            for (int gen = 0; gen < 2; gen++) {
                const zl_chat_opts o = {.add_assistant = gen != 0,
                                        .tools = json_is_true(json_object_get(cs, "tools")) ? tools : NULL};
                const record *r = &want.rec[ci][gen];
                char *got = NULL, *got2 = NULL;
                zl_text_span *sp = NULL;
                size_t nsp = 0;
                zl_err e;
                const int rc = zl_chat_render_opts(t, c.m, c.n, &o, &got, NULL, NULL, &e);
                if (!r->text) {
                    if (rc != ZL_EINVAL)
                        fail_msg("%s case %zu gen %d: the template refuses it, zili: %s", names[ni], ci, gen,
                                 got ? got : e.msg);
                    refused++;
                    continue;
                }
                if (rc != ZL_OK)
                    fail_msg("%s case %zu gen %d: refused (%s)", names[ni], ci, gen, e.msg);
                if (strlen(got) != r->len || memcmp(got, r->text, r->len) != 0)
                    fail_msg("%s case %zu gen %d:\n--- expected\n%.*s\n--- got\n%s\n", names[ni], ci, gen,
                             (int)r->len, r->text, got);
                assert_int_equal(zl_chat_render_opts(t, c.m, c.n, &o, &got2, &sp, &nsp, &e), ZL_OK);
                assert_string_equal(got, got2);
                for (size_t k = 0; k < nsp; k++)
                    assert_true(sp[k].off + sp[k].len <= strlen(got2) && (k == 0 || sp[k].off >= sp[k - 1].off +
                                                                                      sp[k - 1].len));
                if (o.tools) /* the tool names are the client's text */
                    assert_true(nsp > 0);
                free(got);
                free(got2);
                free(sp);
                compared++;
            }
        }
        free(want.data);
    }
    assert_true(compared >= 250);
    assert_true(refused >= 10);
    free(tools);
    json_decref(root);
}

/* Refusals of malformed tool input. */
static void test_tools_refusals(void **state)
{
    (void)state;
    zl_chat_tmpl t;
    zl_err e;
    char *out = NULL;
    assert_int_equal(zl_chat_tmpl_from_name("qwen2.5", &t, &e), ZL_OK);
    const zl_chat_msg u[] = {{.role = "user", .content = "x"}};
    static const char *const bad_tools[] = {"{}", "[1]", "[{\"type\": \"function\"}]",
                                            "[{\"function\": {\"name\": 3}}]", "[", "not json"};
    for (size_t i = 0; i < sizeof bad_tools / sizeof bad_tools[0]; i++) {
        const zl_chat_opts o = {.add_assistant = true, .tools = bad_tools[i]};
        assert_int_equal(zl_chat_render_opts(t, u, 1, &o, &out, NULL, NULL, &e), ZL_EINVAL);
        assert_null(out);
    }
    const zl_chat_opts none = {.add_assistant = true, .tools = "[]"}; /* an empty list is no tools */
    char *plain = NULL;
    assert_int_equal(zl_chat_render_opts(t, u, 1, &none, &out, NULL, NULL, &e), ZL_OK);
    assert_int_equal(zl_chat_render(t, u, 1, true, &plain, &e), ZL_OK);
    assert_string_equal(out, plain);
    free(out);
    free(plain);
    out = NULL;
    const zl_chat_call noname = {"call00001", NULL, "{}"};
    const zl_chat_msg a[] = {{.role = "user", .content = "x"}, {.role = "assistant", .calls = &noname, .n_calls = 1}};
    assert_int_equal(zl_chat_render(t, a, 2, true, &out, &e), ZL_EINVAL);
    const zl_chat_call ok = {"call00001", "f", "{}"};
    const zl_chat_msg user_calls[] = {{.role = "user", .content = "x", .calls = &ok, .n_calls = 1}};
    assert_int_equal(zl_chat_render(t, user_calls, 1, true, &out, &e), ZL_EINVAL);
    const zl_chat_msg null_content[] = {{.role = "tool", .content = NULL}};
    assert_int_equal(zl_chat_render(t, null_content, 1, true, &out, &e), ZL_EINVAL);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_qwen2_escaped_newlines),
        cmocka_unit_test(test_plain_chatml),
        cmocka_unit_test(test_qwen25),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_llama31),
        cmocka_unit_test(test_gemma),
        cmocka_unit_test(test_deepseek_r1),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_mistral_v7),
        cmocka_unit_test(test_deepseek_v3),
        cmocka_unit_test(test_bos_and_names),
        cmocka_unit_test(test_unknown_variants),
        cmocka_unit_test(test_trim_edges),
        cmocka_unit_test(test_unrecognised),
        cmocka_unit_test(test_system_literal_is_never_evaluated),
        cmocka_unit_test(test_by_name_and_bad_messages),
        cmocka_unit_test(test_content_spans),
        cmocka_unit_test(test_qwen3_no_thinking),
        cmocka_unit_test(test_tools_rendering),
        cmocka_unit_test(test_tools_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
