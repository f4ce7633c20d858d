/* test_sampler.c - the sampling chain against hand-computed expectations and sampling statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "sample/sampler.h"

static zl_sampler_params neutral(void)
{
    zl_sampler_params p = {.temp = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f,
                           .repeat_last_n = 64, .presence_penalty = 0, .frequency_penalty = 0, .seed = 42};
    return p;
}

static zl_sampler *make(const zl_sampler_params *p, int32_t n)
{
    zl_sampler *s = NULL;
    zl_err e;
    assert_int_equal(zl_sampler_create(p, n, &s, &e), 0);
    return s;
}

static void test_greedy_argmax_and_ties(void **st)
{
    (void)st;
    zl_sampler_params p = neutral();
    p.temp = 0;
    zl_sampler *s = make(&p, 5);
    const float l1[5] = {0.1f, 3.0f, -2.0f, 2.9f, NAN};
    assert_int_equal(zl_sampler_sample(s, l1), 1);
    const float l2[5] = {1.0f, 5.0f, 5.0f, 0.0f, 5.0f};
    assert_int_equal(zl_sampler_sample(s, l2), 1); /* ties: lowest id */
    const float l3[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(zl_sampler_sample(s, l3), 0);
    zl_sampler_free(s);
}

static void test_bad_params(void **st)
{
    (void)st;
    zl_sampler *s = NULL;
    zl_err e;
    zl_sampler_params p = neutral();
    p.temp = -1;
    assert_int_equal(zl_sampler_create(&p, 10, &s, &e), ZL_EINVAL);
    p = neutral();
    p.top_p = 1.5f;
    assert_int_equal(zl_sampler_create(&p, 10, &s, &e), ZL_EINVAL);
    p = neutral();
    p.repeat_penalty = 0;
    assert_int_equal(zl_sampler_create(&p, 10, &s, &e), ZL_EINVAL);
    p = neutral();
    p.temp = NAN;
    assert_int_equal(zl_sampler_create(&p, 10, &s, &e), ZL_EINVAL);
    p = neutral();
    assert_int_equal(zl_sampler_create(&p, 0, &s, &e), ZL_EINVAL);
    assert_null(s);
}

/* With logits log(0.25) and log(0.75) at temp 1, token 1 is drawn with probability 0.75. 20000 draws: the
 * standard deviation of the frequency is sqrt(.75*.25/20000) = 0.003, so +-0.015 is a 5-sigma bound. */
static void test_distribution(void **st)
{
    (void)st;
    zl_sampler_params p = neutral();
    zl_sampler *s = make(&p, 2);
    const float l[2] = {logf(0.25f), logf(0.75f)};
    int ones = 0;
    for (int i = 0; i < 20000; i++)
        ones += zl_sampler_sample(s, l);
    assert_true(fabs(ones / 20000.0 - 0.75) < 0.015);
    zl_sampler_free(s);

    /* temp 0.5 squares the odds: p1 = .75^2 / (.75^2 + .25^2) = 0.9 */
    p.temp = 0.5f;
    s = make(&p, 2);
    ones = 0;
    for (int i = 0; i < 20000; i++)
        ones += zl_sampler_sample(s, l);
    assert_true(fabs(ones / 20000.0 - 0.9) < 0.012);
    zl_sampler_free(s);
}

static void test_seed_determinism(void **st)
{
    (void)st;
    float l[100];
    for (int i = 0; i < 100; i++)
        l[i] = sinf((float)i) * 2;
    zl_sampler_params p = neutral();
    int32_t a[50], b[50], c[50];
    zl_sampler *s = make(&p, 100);
    for (int i = 0; i < 50; i++) a[i] = zl_sampler_sample(s, l);
    zl_sampler_free(s);
    s = make(&p, 100);
    for (int i = 0; i < 50; i++) b[i] = zl_sampler_sample(s, l);
    zl_sampler_free(s);
    p.seed = 43;
    s = make(&p, 100);
    for (int i = 0; i < 50; i++) c[i] = zl_sampler_sample(s, l);
    zl_sampler_free(s);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

/* Filters: every drawn token must be in the allowed set, and every allowed token must appear. */
static void check_support(zl_sampler_params p, const float *l, int n, const int *allowed)
{
    zl_sampler *s = make(&p, n);
    int seen[16] = {0};
    for (int i = 0; i < 4000; i++) {
        int t = zl_sampler_sample(s, l);
        assert_true(t >= 0 && t < n);
        assert_true(allowed[t]);
        seen[t] = 1;
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(seen[i], allowed[i]);
    zl_sampler_free(s);
}

static void test_filters(void **st)
{
    (void)st;
    /* probabilities proportional to 8,4,2,1,1 (sum 16): .5 .25 .125 .0625 .0625 */
    const float l[5] = {logf(8), logf(4), logf(2), logf(1), logf(1)};
    zl_sampler_params p = neutral();
    p.top_k = 2;
    check_support(p, l, 5, (const int[]){1, 1, 0, 0, 0});
    p = neutral();
    p.top_p = 0.7f; /* .5 < .7 <= .75: keeps the first two */
    check_support(p, l, 5, (const int[]){1, 1, 0, 0, 0});
    p.top_p = 0.8f; /* needs .875: three */
    check_support(p, l, 5, (const int[]){1, 1, 1, 0, 0});
    p = neutral();
    p.min_p = 0.2f; /* keep p >= .2 * .5 = .1: three */
    check_support(p, l, 5, (const int[]){1, 1, 1, 0, 0});
    p.min_p = 0.6f; /* >= .3: one */
    check_support(p, l, 5, (const int[]){1, 0, 0, 0, 0});
}

static void test_penalties(void **st)
{
    (void)st;
    zl_sampler_params p = neutral();
    p.temp = 0;
    p.repeat_penalty = 2.0f; /* token 0: 3 -> 1.5 loses to token 1 at 2 */
    zl_sampler *s = make(&p, 3);
    const float l[3] = {3.0f, 2.0f, -1.0f};
    assert_int_equal(zl_sampler_sample(s, l), 0);
    zl_sampler_accept(s, 0);
    assert_int_equal(zl_sampler_sample(s, l), 1);
    zl_sampler_reset(s);
    assert_int_equal(zl_sampler_sample(s, l), 0);
    zl_sampler_free(s);

    p = neutral();
    p.temp = 0;
    p.frequency_penalty = 0.4f; /* two occurrences: 3 - 0.8 = 2.2 still wins; three: 3 - 1.2 = 1.8 loses */
    s = make(&p, 3);
    zl_sampler_accept(s, 0);
    zl_sampler_accept(s, 0);
    assert_int_equal(zl_sampler_sample(s, l), 0);
    zl_sampler_accept(s, 0);
    assert_int_equal(zl_sampler_sample(s, l), 1);
    zl_sampler_free(s);

    p = neutral();
    p.temp = 0;
    p.presence_penalty = 1.5f; /* once present: 3 - 1.5 = 1.5 < 2 */
    p.repeat_last_n = 2;       /* window of 2: after two other tokens, 0 is forgotten */
    s = make(&p, 3);
    zl_sampler_accept(s, 0);
    assert_int_equal(zl_sampler_sample(s, l), 1);
    zl_sampler_accept(s, 2);
    zl_sampler_accept(s, 2);
    assert_int_equal(zl_sampler_sample(s, l), 0);
    zl_sampler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_argmax_and_ties), cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_distribution),           cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_filters),                cmocka_unit_test(test_penalties),
    };
    return cmocka_run_group_tests_name("sampler", tests, NULL, NULL);
}
