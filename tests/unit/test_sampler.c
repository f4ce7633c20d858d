/* test_sampler.c - the sampling chain against hand-computed expectations and sampling statistics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

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


/* ---- The chain written the plain way (one candidate array, each exp computed where it is used), as the
 * reference for the fast paths: the same seed must give the same tokens. ---- */
typedef struct ref_cand {
    int32_t id;
    float logit;
} ref_cand;

static int ref_cmp(const void *a, const void *b)
{
    const ref_cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The reference's RNG: the sampler's (xoshiro256** seeded by splitmix64), one uniform per draw. */
typedef struct ref_rng {
    uint64_t s[4];
} ref_rng;

static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void ref_seed(ref_rng *g, uint64_t x)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        g->s[i] = z ^ (z >> 31);
    }
}

static double ref_uniform(ref_rng *g)
{
    uint64_t *s = g->s;
    const uint64_t result = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return (double)(result >> 11) * 0x1.0p-53;
}

/* counts[t]: occurrences of t among the accepted tokens in the window (the caller keeps them). */
static int32_t ref_sample(const zl_sampler_params *p, ref_rng *g, const float *logits, int32_t n,
                          const int32_t *counts)
{
    ref_cand *c = malloc((size_t)n * sizeof *c);
    assert_non_null(c);
    for (int32_t i = 0; i < n; i++) {
        const float l = logits[i];
        c[i].id = i;
        c[i].logit = isfinite(l) || (isinf(l) && l < 0) ? l : -INFINITY;
        if (counts && counts[i] > 0) {
            float v = c[i].logit;
            v = v <= 0 ? v * p->repeat_penalty : v / p->repeat_penalty;
            c[i].logit = v - (float)counts[i] * p->frequency_penalty - p->presence_penalty;
        }
    }
    int32_t tok = -1;
    if (p->temp <= 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        tok = c[best].id;
        goto done;
    }
    if (p->top_k > 0 && p->top_k < n) {
        qsort(c, (size_t)n, sizeof *c, ref_cmp);
        n = p->top_k;
    }
    if (p->top_p < 1.0f) {
        qsort(c, (size_t)n, sizeof *c, ref_cmp);
        double sum = 0, cum = 0;
        for (int32_t i = 0; i < n; i++) sum += zl_sample_weight(c[i].logit, c[0].logit, 1.0f);
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += zl_sample_weight(c[i].logit, c[0].logit, 1.0f) / sum;
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        float maxl = -INFINITY;
        for (int32_t i = 0; i < n; i++) if (c[i].logit > maxl) maxl = c[i].logit;
        const float thr = maxl + logf(p->min_p);
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].logit >= thr) c[m++] = c[i];
        n = m > 0 ? m : 1;
    }
    float maxl = -INFINITY;
    for (int32_t i = 0; i < n; i++) if (c[i].logit > maxl) maxl = c[i].logit;
    if (!isfinite(maxl)) {
        tok = c[0].id;
        for (int32_t i = 1; i < n; i++) if (c[i].id < tok) tok = c[i].id;
        goto done;
    }
    double total = 0, acc = 0;
    for (int32_t i = 0; i < n; i++) total += zl_sample_weight(c[i].logit, maxl, p->temp);
    const double r = ref_uniform(g) * total;
    tok = c[n - 1].id;
    for (int32_t i = 0; i < n; i++) {
        acc += zl_sample_weight(c[i].logit, maxl, p->temp);
        if (r < acc) { tok = c[i].id; break; }
    }
done:
    free(c);
    return tok;
}

/* The fast paths (greedy and plain draws straight from the logits, the candidate path with penalties and
 * filters, own and shared scratch) give the reference's token at every step: random logits with NaN, +-inf,
 * ties and rows of -inf mixed in, 24 parameter sets, 60 steps each, the sampled tokens accepted (penalties). */
static void test_matches_reference(void **st)
{
    (void)st;
    enum { N = 1003, STEPS = 60 };
    static float l[N];
    static int32_t counts[N];
    zl_err e;
    zl_sample_ws *ws = NULL;
    assert_int_equal(zl_sample_ws_create(N, &ws, &e), 0);
    uint64_t x = 7;
    int checked = 0;
    for (int set = 0; set < 24; set++) {
        zl_sampler_params p = neutral();
        p.seed = 100 + (uint64_t)set;
        p.temp = (float[]){0.0f, 1.0f, 0.7f, 1.5f}[set % 4];
        p.top_k = (set / 4) % 3 == 1 ? 20 : 0;
        p.top_p = (set / 4) % 3 == 2 ? 0.9f : 1.0f;
        p.min_p = set % 5 == 1 ? 0.05f : 0.0f;
        const bool pen = set >= 12;
        if (pen) {
            p.repeat_penalty = 1.3f;
            p.frequency_penalty = 0.2f;
            p.presence_penalty = 0.5f;
            p.repeat_last_n = -1;
        }
        zl_sampler *own = NULL, *shared = NULL;
        assert_int_equal(zl_sampler_create(&p, N, &own, &e), 0);
        assert_int_equal(zl_sampler_create_shared(&p, N, &shared, &e), 0);
        ref_rng g;
        ref_seed(&g, p.seed);
        memset(counts, 0, sizeof counts);
        for (int step = 0; step < STEPS; step++) {
            for (int i = 0; i < N; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                l[i] = (float)((int64_t)(x % 4001) - 2000) / 200.0f; /* quarter-steps: ties happen */
                const unsigned k = (unsigned)(x >> 40) % 97;
                l[i] = k == 0 ? NAN : k == 1 ? INFINITY : k == 2 ? -INFINITY : l[i];
            }
            if (step % 17 == 5)
                for (int i = 0; i < N; i++)
                    l[i] = i % 3 ? -INFINITY : NAN; /* nothing finite */
            const int32_t want = ref_sample(&p, &g, l, N, pen ? counts : NULL);
            const int32_t a = zl_sampler_sample(own, l), b = zl_sampler_sample_ws(shared, l, ws);
            if (a != want || b != want)
                fail_msg("set %d step %d: reference %d, own scratch %d, shared %d", set, step, want, a, b);
            zl_sampler_accept(own, want);
            zl_sampler_accept(shared, want);
            if (pen)
                counts[want]++;
            checked++;
        }
        zl_sampler_free(own);
        zl_sampler_free(shared);
    }
    assert_int_equal(checked, 24 * STEPS);
    zl_sample_ws_free(ws);
}

/* zl_sampler_sample_where's admission test for the tests below: token t admitted when adm[t]. */
static bool admitted(void *ctx, int32_t t) { return ((const bool *)ctx)[t]; }

/* The old way: a draw; refused, the row masked and a second draw. */
static int32_t masked_draw(zl_sampler *s, const float *l, float *row, const bool *adm, int32_t n, zl_sample_ws *ws)
{
    const int32_t t = zl_sampler_sample_ws(s, l, ws);
    if (adm[t])
        return t;
    for (int32_t i = 0; i < n; i++)
        row[i] = adm[i] ? l[i] : -INFINITY;
    return zl_sampler_sample_ws(s, row, ws);
}

/* Greedy, top-k, top-p and min-p draws restricted to admitted tokens give the masked row's token at every step
 * (the same RNG use; where they cannot settle, zl_sampler_sample_among over the admitted ids does), over random logits with NaN / inf, admitted sets
 * from one token to nearly all, with and without penalties. */
static void test_where_matches_mask(void **st)
{
    (void)st;
    enum { N = 1003, STEPS = 160 };
    static float l[N], row[N];
    static bool adm[N];
    static int32_t ids[N];
    zl_err e;
    zl_sample_ws *ws = NULL;
    assert_int_equal(zl_sample_ws_create(N, &ws, &e), 0);
    uint64_t x = 11;
    int settled = 0, fell_back = 0;
    for (int set = 0; set < 20; set++) {
        zl_sampler_params p = neutral();
        p.seed = 500 + (uint64_t)set;
        p.temp = (float[]){0.0f, 1.0f, 0.7f, 1.5f}[set % 4];
        p.top_k = (set / 4) % 3 != 2 ? (set % 3 ? 20 : 1) : 0;
        p.top_p = (set / 4) % 3 == 1 ? 0.9f : (set % 7 == 3 ? 0.8f : 1.0f);
        p.min_p = set % 5 == 1 || (p.temp > 0 && p.top_k == 0 && p.top_p == 1.0f) ? 0.05f : 0.0f;
        const bool pen = set >= 10;
        if (pen) {
            p.repeat_penalty = 1.3f;
            p.frequency_penalty = 0.2f;
            p.presence_penalty = 0.5f;
            p.repeat_last_n = -1;
        }
        if (p.temp > 0 && p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0.0f)
            fail_msg("set %d is a plain draw (tested by distribution)", set);
        zl_sampler *a = NULL, *b = NULL;
        assert_int_equal(zl_sampler_create_shared(&p, N, &a, &e), 0);
        assert_int_equal(zl_sampler_create_shared(&p, N, &b, &e), 0);
        for (int step = 0; step < STEPS; step++) {
            const unsigned density = (unsigned[]){1, 3, 50, 500, 700, 850, 950, 1000}[step % 8]; /* per mille */
            bool any = false;
            for (int i = 0; i < N; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                l[i] = (float)((int64_t)(x % 4001) - 2000) / 200.0f;
                const unsigned k = (unsigned)(x >> 40) % 97;
                l[i] = k == 0 ? NAN : k == 1 ? INFINITY : k == 2 ? -INFINITY : l[i];
                adm[i] = (unsigned)(x >> 20) % 1000 < density;
                any |= adm[i] && isfinite(l[i]);
            }
            if (!any)
                continue;
            const int32_t want = masked_draw(a, l, row, adm, N, ws);
            int32_t got = zl_sampler_sample_where(b, l, ws, admitted, adm, 16);
            if (got < 0) { /* the fallback draws among the admitted ids, reading only those */
                fell_back++;
                int32_t n_ids = 0;
                for (int32_t i = 0; i < N; i++)
                    if (adm[i])
                        ids[n_ids++] = i;
                got = zl_sampler_sample_among(b, l, ids, n_ids, ws);
            } else {
                settled++;
                if (!adm[got])
                    fail_msg("set %d step %d: token %d not admitted", set, step, got);
            }
            if (got != want)
                fail_msg("set %d step %d (density %u/1000): masked row %d, restricted draw %d", set, step, density,
                         want, got);
            zl_sampler_accept(a, want);
            zl_sampler_accept(b, want);
        }
        zl_sampler_free(a);
        zl_sampler_free(b);
    }
    assert_true(settled > 500);
    assert_true(fell_back > 20); /* the fallbacks were exercised too */
    zl_sample_ws_free(ws);
}

/* A plain-temperature draw restricted to admitted tokens follows the masked row's distribution: frequencies over
 * many draws against p_i / (admitted mass), with the refused tokens holding most of the mass (most draws are
 * refused first, some fall back to the mask). */
static void test_where_distribution(void **st)
{
    (void)st;
    enum { N = 64, DRAWS = 60000 };
    float l[N], row[N];
    bool adm[N];
    double pr[N], za = 0;
    for (int i = 0; i < N; i++) {
        l[i] = (float)((i * 37) % 23) / 4.0f;
        adm[i] = i % 5 == 1;
        if (i == 9)
            l[i] = -INFINITY; /* admitted but impossible */
    }
    l[40] = 9.0f; /* refused, most of the mass */
    for (int i = 0; i < N; i++)
        za += adm[i] && isfinite(l[i]) ? exp(l[i]) : 0;
    for (int i = 0; i < N; i++)
        pr[i] = adm[i] && isfinite(l[i]) ? exp(l[i]) / za : 0;
    zl_sampler_params p = neutral();
    zl_sampler *s = make(&p, N);
    zl_err e;
    zl_sample_ws *ws = NULL;
    assert_int_equal(zl_sample_ws_create(N, &ws, &e), 0);
    static int hits[N];
    int fell_back = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t t = zl_sampler_sample_where(s, l, ws, admitted, adm, 4);
        if (t < 0) {
            fell_back++;
            for (int i = 0; i < N; i++)
                row[i] = adm[i] ? l[i] : -INFINITY;
            t = zl_sampler_sample_ws(s, row, ws);
        }
        assert_true(t >= 0 && t < N && adm[t] && t != 9);
        hits[t]++;
    }
    double tv = 0;
    for (int i = 0; i < N; i++)
        tv += fabs(hits[i] / (double)DRAWS - pr[i]);
    tv /= 2;
    if (tv > 0.01)
        fail_msg("total variation %.4f from the masked distribution", tv);
    assert_true(fell_back > 0 && fell_back < DRAWS);
    zl_sampler_free(s);
    zl_sample_ws_free(ws);
}

/* zl_sampler_sample_among over the admitted ids gives the masked row's token for every parameter set (plain
 * draws, filters, penalties), random logits with NaN / inf, admitted sets from one token to all. */
static void test_among_matches_mask(void **st)
{
    (void)st;
    enum { N = 1003, STEPS = 60 };
    static float l[N], row[N];
    static int32_t ids[N];
    zl_err e;
    zl_sample_ws *ws = NULL;
    assert_int_equal(zl_sample_ws_create(N, &ws, &e), 0);
    uint64_t x = 23;
    for (int set = 0; set < 24; set++) {
        zl_sampler_params p = neutral();
        p.seed = 900 + (uint64_t)set;
        p.temp = (float[]){0.0f, 1.0f, 0.7f, 1.5f}[set % 4];
        p.top_k = (set / 4) % 3 == 1 ? (set % 2 ? 20 : 2000) : 0;
        p.top_p = (set / 4) % 3 == 2 ? 0.9f : 1.0f;
        p.min_p = set % 5 == 1 ? 0.05f : 0.0f;
        if (set >= 12) {
            p.repeat_penalty = 1.3f;
            p.frequency_penalty = 0.2f;
            p.presence_penalty = 0.5f;
            p.repeat_last_n = -1;
        }
        zl_sampler *a = NULL, *b = NULL;
        assert_int_equal(zl_sampler_create_shared(&p, N, &a, &e), 0);
        assert_int_equal(zl_sampler_create_shared(&p, N, &b, &e), 0);
        for (int step = 0; step < STEPS; step++) {
            const unsigned density = (unsigned[]){1, 5, 100, 600, 1000}[step % 5];
            int32_t n_ids = 0;
            for (int32_t i = 0; i < N; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                l[i] = (float)((int64_t)(x % 4001) - 2000) / 200.0f;
                const unsigned k = (unsigned)(x >> 40) % 97;
                l[i] = k == 0 ? NAN : k == 1 ? INFINITY : k == 2 ? -INFINITY : l[i];
                const bool in = (unsigned)(x >> 20) % 1000 < density;
                row[i] = in ? l[i] : -INFINITY;
                if (in)
                    ids[n_ids++] = i;
            }
            const int32_t want = zl_sampler_sample_ws(a, row, ws);
            const int32_t got = zl_sampler_sample_among(b, l, ids, n_ids, ws);
            if (got != want)
                fail_msg("set %d step %d (%d ids): masked row %d, among the ids %d", set, step, n_ids, want, got);
            zl_sampler_accept(a, want);
            zl_sampler_accept(b, want);
        }
        zl_sampler_free(a);
        zl_sampler_free(b);
    }
    zl_sample_ws_free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_argmax_and_ties), cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_distribution),           cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_filters),                cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_matches_reference),      cmocka_unit_test(test_where_matches_mask),
        cmocka_unit_test(test_where_distribution),     cmocka_unit_test(test_among_matches_mask),
    };
    return cmocka_run_group_tests_name("sampler", tests, NULL, NULL);
}
