/*
 * test_reasoning.c - the "<think>" splitter (server/reasoning.h) on canned replies: the whole reply at once
 * against the split written out by hand, and the same reply fed in two pieces at every byte and one byte at a
 * time, which must give the same reasoning and content.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/reasoning.h"

typedef struct acc {
    char r[4096], c[4096];
    size_t nr, nc;
} acc;

static void feed(oai_think *t, acc *a, const char *s, size_t n, bool final)
{
    char rb[4096], cb[4096];
    oai_think_out o = {rb, cb, 0, 0};
    assert_true(n + 16 <= sizeof rb);
    oai_think_feed(t, s, n, final, &o);
    assert_true(a->nr + o.n_reasoning <= sizeof a->r && a->nc + o.n_content <= sizeof a->c);
    memcpy(a->r + a->nr, rb, o.n_reasoning);
    memcpy(a->c + a->nc, cb, o.n_content);
    a->nr += o.n_reasoning;
    a->nc += o.n_content;
}

static void expect(const acc *a, const char *reasoning, const char *content, const char *what, size_t at)
{
    if (a->nr != strlen(reasoning) || memcmp(a->r, reasoning, a->nr) || a->nc != strlen(content) ||
        memcmp(a->c, content, a->nc))
        fail_msg("%s (split at %zu): reasoning [%.*s] content [%.*s], want [%s] [%s]", what, at, (int)a->nr, a->r,
                 (int)a->nc, a->c, reasoning, content);
}

static void check(const char *reply, bool inside, const char *reasoning, const char *content)
{
    const size_t n = strlen(reply);
    oai_think t;
    acc a;
    for (size_t cut = 0; cut <= n; cut++) { /* two pieces; cut == n: the whole reply, then an empty final feed */
        memset(&a, 0, sizeof a);
        oai_think_init(&t, inside);
        feed(&t, &a, reply, cut, false);
        feed(&t, &a, reply + cut, n - cut, true);
        expect(&a, reasoning, content, reply, cut);
    }
    memset(&a, 0, sizeof a);
    oai_think_init(&t, inside);
    for (size_t i = 0; i < n; i++)
        feed(&t, &a, reply + i, 1, false);
    feed(&t, &a, "", 0, true);
    expect(&a, reasoning, content, reply, (size_t)-1);
}

static void test_qwen3_style(void **st)
{
    (void)st;
    check("<think>\nLet me add.\n</think>\n\nThe answer is 4.", false, "\nLet me add.\n", "The answer is 4.");
    check("  \n<think>a</think>b", false, "a", "b");
    /* an empty reasoning block (enable_thinking false writes it into the prompt; a model may too) */
    check("<think>\n\n</think>\n\nHi", false, "\n\n", "Hi");
    /* no block: all content, as written, held whitespace included */
    check("Hello <think>x</think>", false, "", "Hello <think>x</think>");
    check("\n Hi", false, "", "\n Hi");
    check("<thinking>x", false, "", "<thinking>x");
    check("<thin", false, "", "<thin");
    check("", false, "", "");
}

static void test_deepseek_style(void **st)
{
    (void)st;
    /* the prompt opened the block */
    check("Hmm.</think>\n\nDone", true, "Hmm.", "Done");
    /* tag look-alikes inside the reasoning stay reasoning, including a false start right before the real tag */
    check("a </thin> b <</think>c", true, "a </thin> b <", "c");
    check("x<</</th</think>y", true, "x<</</th", "y");
    /* a reply that never closes its reasoning */
    check("still thinking </thi", true, "still thinking </thi", "");
    /* a second block after the first is content */
    check("r</think> c <think>d</think>", true, "r", "c <think>d</think>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_style),
        cmocka_unit_test(test_deepseek_style),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
