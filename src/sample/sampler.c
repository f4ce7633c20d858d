/*
 * sampler.c - the sampling chain (see sampler.h for the order and the neutral values).
 *
 * Work is done on a candidate array (id, logit) owned by the sampler and sized n_vocab once, so sampling
 * allocates nothing. Stages shrink the candidate count n; "sorted" records whether cand[0..n) is in descending
 * logit order (top-k and top-p need it, the others do not).
 */
#include "sample/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
/* sampler_avx2.c: weights() for the first n & ~7 entries (returned). */
int32_t zl_sample_weights_avx2(const float *l, int32_t n, bool raw, float max, float temp, double *w);
#endif

typedef struct cand {
    int32_t id;
    float logit;
} cand;

struct zl_sample_ws {
    int32_t n_vocab;
    cand *cands; /* n_vocab */
    float *v;    /* n_vocab: the clean logits after the penalties (samplers with penalties) */
    double *w;   /* n_vocab: each candidate's zl_sample_weight, made once per draw */
};

struct zl_sampler {
    zl_sampler_params p;
    int32_t n_vocab;
    zl_sample_ws *own; /* zl_sampler_create's; NULL for zl_sampler_create_shared's */
    int32_t *hist;     /* ring of the last `window` accepted tokens */
    int32_t window;    /* capacity of hist (0 = penalties off) */
    int32_t hist_n, hist_head;
    int32_t *counts;   /* per-token count within the window, n_vocab (only when penalties are on) */
    uint64_t rng[4];   /* xoshiro256** state */
};

/* The history window for repeat_last_n = -1 ("all"): bounded so memory stays bounded. */
enum { ZL_SAMPLER_MAX_WINDOW = 1 << 20 };
/* zl_sampler_sample_where with min-p alone: candidates beyond the refusals it may walk before the threshold. */
enum { ZL_SAMPLER_MIN_P_SPAN = 256 };

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4])
{
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static bool penalties_on(const zl_sampler_params *p)
{
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f);
}

int zl_sample_ws_create(int32_t n_vocab, zl_sample_ws **out, zl_err *err)
{
    *out = NULL;
    if (n_vocab <= 0)
        return zl_err_set(err, ZL_EINVAL, "sampler: vocabulary size %d must be positive", n_vocab);
    zl_sample_ws *ws = calloc(1, sizeof *ws);
    if (ws) {
        ws->n_vocab = n_vocab;
        ws->cands = malloc((size_t)n_vocab * sizeof *ws->cands);
        ws->v = malloc((size_t)n_vocab * sizeof *ws->v);
        ws->w = malloc((size_t)n_vocab * sizeof *ws->w);
    }
    if (!ws || !ws->cands || !ws->v || !ws->w) {
        zl_sample_ws_free(ws);
        return zl_err_set(err, ZL_ENOMEM, "sampler: out of memory for %d candidates", n_vocab);
    }
    *out = ws;
    return ZL_OK;
}

void zl_sample_ws_free(zl_sample_ws *ws)
{
    if (!ws)
        return;
    free(ws->cands);
    free(ws->v);
    free(ws->w);
    free(ws);
}

static int sampler_create(const zl_sampler_params *p, int32_t n_vocab, bool own_ws, zl_sampler **out, zl_err *err)
{
    *out = NULL;
    if (n_vocab <= 0)
        return zl_err_set(err, ZL_EINVAL, "sampler: vocabulary size %d must be positive", n_vocab);
    if (!isfinite(p->temp) || p->temp < 0)
        return zl_err_set(err, ZL_EINVAL, "sampler: temperature %g must be a finite number >= 0", p->temp);
    if (!isfinite(p->top_p) || p->top_p < 0 || p->top_p > 1)
        return zl_err_set(err, ZL_EINVAL, "sampler: top_p %g must be in [0, 1]", p->top_p);
    if (!isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1)
        return zl_err_set(err, ZL_EINVAL, "sampler: min_p %g must be in [0, 1]", p->min_p);
    if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0)
        return zl_err_set(err, ZL_EINVAL, "sampler: repeat penalty %g must be a finite number > 0", p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || fabsf(p->presence_penalty) > 1e6f)
        return zl_err_set(err, ZL_EINVAL, "sampler: presence penalty %g out of range", p->presence_penalty);
    if (!isfinite(p->frequency_penalty) || fabsf(p->frequency_penalty) > 1e6f)
        return zl_err_set(err, ZL_EINVAL, "sampler: frequency penalty %g out of range", p->frequency_penalty);
    if (p->repeat_last_n < -1)
        return zl_err_set(err, ZL_EINVAL, "sampler: repeat_last_n %d must be >= -1", p->repeat_last_n);

    zl_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return zl_err_set(err, ZL_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    if (own_ws) {
        const int rc = zl_sample_ws_create(n_vocab, &s->own, err);
        if (rc != ZL_OK) {
            free(s);
            return rc;
        }
    }
    if (penalties_on(p)) {
        s->window = p->repeat_last_n < 0 || p->repeat_last_n > ZL_SAMPLER_MAX_WINDOW ? ZL_SAMPLER_MAX_WINDOW
                                                                                     : p->repeat_last_n;
        s->hist = malloc((size_t)s->window * sizeof *s->hist);
        s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    }
    if (s->window && (!s->hist || !s->counts)) {
        zl_sampler_free(s);
        return zl_err_set(err, ZL_ENOMEM, "sampler: out of memory for %d candidates", n_vocab);
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return ZL_OK;
}

int zl_sampler_create(const zl_sampler_params *p, int32_t n_vocab, zl_sampler **out, zl_err *err)
{
    return sampler_create(p, n_vocab, true, out, err);
}

int zl_sampler_create_shared(const zl_sampler_params *p, int32_t n_vocab, zl_sampler **out, zl_err *err)
{
    return sampler_create(p, n_vocab, false, out, err);
}

void zl_sampler_free(zl_sampler *s)
{
    if (!s)
        return;
    zl_sample_ws_free(s->own);
    free(s->hist);
    free(s->counts);
    free(s);
}

void zl_sampler_accept(zl_sampler *s, int32_t token)
{
    if (!s->window || token < 0 || token >= s->n_vocab)
        return;
    if (s->hist_n == s->window) { /* window full: the oldest token leaves, the new one takes its slot */
        s->counts[s->hist[s->hist_head]]--;
        s->hist[s->hist_head] = token;
        s->hist_head = (s->hist_head + 1) % s->window;
    } else {
        s->hist[(s->hist_head + s->hist_n) % s->window] = token;
        s->hist_n++;
    }
    s->counts[token]++;
}

void zl_sampler_reset(zl_sampler *s)
{
    if (s->window)
        memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
    s->hist_n = 0;
    s->hist_head = 0;
}

static int cmp_cand_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_cand_id(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Sift-down for a min-heap on (logit, then higher id counts as smaller so lower ids win ties). */
static bool cand_less(const cand *a, const cand *b)
{
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void heap_sift(cand *h, int32_t n, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_less(&h[l], &h[m])) m = l;
        if (r < n && cand_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        cand t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

/* Keeps the k best of cand[0..n) in cand[0..k), sorted descending. O(n log k). */
static void top_k_sorted(cand *c, int32_t n, int32_t k)
{
    for (int32_t i = k / 2 - 1; i >= 0; i--)
        heap_sift(c, k, i);
    for (int32_t i = k; i < n; i++) {
        if (cand_less(&c[0], &c[i])) {
            c[0] = c[i];
            heap_sift(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
}

/* A logit as the chain sees it: NaN and +inf count as -inf (-inf and finite values stay). */
static inline float clean(float l) { return l < INFINITY ? l : -INFINITY; }

/* l[i] as the chain sees it: clean(l[i]) for raw logits; as it is once cleaned and penalized (a penalty may take a
 * logit to +inf, which then counts). */
static inline float at(const float *l, int32_t i, bool raw) { return raw ? clean(l[i]) : l[i]; }

/* The largest at(l, i, raw) over n > 0 values, with 8 independent running maxima (one chain would be bound by the
 * compare's latency: most of a greedy step on a large vocabulary). */
static inline __attribute__((always_inline)) float max_of(const float *l, int32_t n, bool raw)
{
    float m[8];
    for (int k = 0; k < 8; k++)
        m[k] = -INFINITY;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            const float x = at(l, i + k, raw);
            m[k] = x > m[k] ? x : m[k];
        }
    for (; i < n; i++) {
        const float x = at(l, i, raw);
        m[0] = x > m[0] ? x : m[0];
    }
    float best = m[0];
    for (int k = 1; k < 8; k++)
        best = m[k] > best ? m[k] : best;
    return best;
}

/* The first i with at(l, i, raw) == v (v = max_of(l, n, raw): one exists). */
static int32_t first_equal(const float *l, int32_t n, bool raw, float v)
{
    for (int32_t i = 0; i < n; i++)
        if (at(l, i, raw) == v)
            return i;
    return 0;
}

/* The logits as the chain sees them: the caller's row (*raw: cleaned on reading) or, with penalties, a cleaned and
 * penalized copy in ws->v. */
static const float *chain_view(zl_sampler *s, const float *logits, zl_sample_ws *ws, bool *raw)
{
    const zl_sampler_params *p = &s->p;
    const int32_t n = s->n_vocab;
    *raw = !s->window;
    if (!s->window)
        return logits;
    /* Penalties, once per distinct token in the window. counts[t] is negated while t is done, then restored. */
    float *v = ws->v;
    for (int32_t i = 0; i < n; i++)
        v[i] = clean(logits[i]);
    for (int32_t j = 0; j < s->hist_n; j++) {
        const int32_t t = s->hist[(s->hist_head + j) % s->window];
        const int32_t cnt = s->counts[t];
        if (cnt <= 0)
            continue;
        float x = v[t];
        x = x <= 0 ? x * p->repeat_penalty : x / p->repeat_penalty;
        v[t] = x - (float)cnt * p->frequency_penalty - p->presence_penalty;
        s->counts[t] = -cnt;
    }
    for (int32_t j = 0; j < s->hist_n; j++) {
        const int32_t t = s->hist[(s->hist_head + j) % s->window];
        if (s->counts[t] < 0)
            s->counts[t] = -s->counts[t];
    }
    return v;
}

static bool has_filters(const zl_sampler *s)
{
    const zl_sampler_params *p = &s->p;
    return (p->top_k > 0 && p->top_k < s->n_vocab) || p->top_p < 1.0f || p->min_p > 0.0f;
}

/* w[i] = zl_sample_weight(at(l, i, raw), max, temp) over the whole vocabulary, 8 at a time where the CPU has
 * AVX2 (the same bits). */
static void weights(const float *l, int32_t n, bool raw, float max, float temp, double *w)
{
    int32_t i = 0;
#if defined(__x86_64__)
    static int avx2 = -1;
    if (avx2 < 0)
        avx2 = __builtin_cpu_supports("avx2");
    if (avx2)
        i = zl_sample_weights_avx2(l, n, raw, max, temp, w);
#endif
    for (; i < n; i++)
        w[i] = zl_sample_weight(at(l, i, raw), max, temp);
}

/* The first i whose running sum of w[0..i] passes r (n - 1 if rounding leaves none). */
static int32_t pick(const double *w, int32_t n, double r)
{
    double acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += w[i];
        if (r < acc)
            return i;
    }
    return n - 1;
}

/* Greedy, or a draw from the whole vocabulary: no candidate array. A draw leaves every token's weight in ws->w
 * and their sum in *total (0 when none was made). */
static int32_t draw_plain(zl_sampler *s, const float *l, bool raw, zl_sample_ws *ws, double *total_out)
{
    const zl_sampler_params *p = &s->p;
    const int32_t n = s->n_vocab;
    *total_out = 0;
    const float maxl = raw ? max_of(l, n, true) : max_of(l, n, false); /* each loop for its own case */
    if (p->temp <= 0) /* the lowest id of the maximum */
        return first_equal(l, n, raw, maxl);
    if (!isfinite(maxl)) /* every logit -inf (or a penalty's +inf): the lowest id, as the candidate path does */
        return 0;
    weights(l, n, raw, maxl, p->temp, ws->w);
    double total = 0;
    for (int32_t i = 0; i < n; i++)
        total += ws->w[i];
    *total_out = total;
    return pick(ws->w, n, rng_uniform(s->rng) * total);
}

/* Every token as a candidate (id order). */
static void fill_cands(const float *l, bool raw, int32_t n, cand *c)
{
    for (int32_t i = 0; i < n; i++) {
        c[i].id = i;
        c[i].logit = at(l, i, raw);
    }
}

/* The draw over candidates c[0..n) whose largest logit is maxl (finite): each weight once (w), summed and walked
 * in the same order. */
static int32_t draw_weighted(zl_sampler *s, const cand *c, int32_t n, float maxl, zl_sample_ws *ws)
{
    double total = 0;
    for (int32_t i = 0; i < n; i++) {
        ws->w[i] = zl_sample_weight(c[i].logit, maxl, s->p.temp);
        total += ws->w[i];
    }
    return c[pick(ws->w, n, rng_uniform(s->rng) * total)].id;
}

/* top-p, min-p, temperature and the draw over the candidates c[0..n) (sorted: in descending order already). */
static int32_t draw_tail(zl_sampler *s, cand *c, int32_t n, bool sorted, zl_sample_ws *ws)
{
    const zl_sampler_params *p = &s->p;
    if (p->top_p < 1.0f) {
        if (!sorted) {
            qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
            sorted = true;
        }
        /* each exp once (w), the same sums as a recomputing loop */
        double sum = 0;
        for (int32_t i = 0; i < n; i++) {
            ws->w[i] = zl_sample_weight(c[i].logit, c[0].logit, 1.0f);
            sum += ws->w[i];
        }
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += ws->w[i] / sum;
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

    /* Temperature, then draw. */
    float maxl = -INFINITY;
    for (int32_t i = 0; i < n; i++) if (c[i].logit > maxl) maxl = c[i].logit;
    if (!isfinite(maxl)) { /* every candidate is -inf: lowest id */
        int32_t best = c[0].id;
        for (int32_t i = 1; i < n; i++) if (c[i].id < best) best = c[i].id;
        return best;
    }
    return draw_weighted(s, c, n, maxl, ws);
}

static int32_t draw_filtered(zl_sampler *s, const float *l, bool raw, zl_sample_ws *ws)
{
    const zl_sampler_params *p = &s->p;
    int32_t n = s->n_vocab;
    cand *c = ws->cands;
    fill_cands(l, raw, n, c);
    bool sorted = false;
    if (p->top_k > 0 && p->top_k < n) {
        top_k_sorted(c, n, p->top_k);
        n = p->top_k;
        sorted = true;
    }
    return draw_tail(s, c, n, sorted, ws);
}

int32_t zl_sampler_sample(zl_sampler *s, const float *logits) { return zl_sampler_sample_ws(s, logits, s->own); }

int32_t zl_sampler_sample_ws(zl_sampler *s, const float *logits, zl_sample_ws *ws)
{
    bool raw;
    const float *l = chain_view(s, logits, ws, &raw);
    if (s->p.temp <= 0 || !has_filters(s)) {
        double total;
        return draw_plain(s, l, raw, ws, &total);
    }
    return draw_filtered(s, l, raw, ws);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Draws restricted to the tokens a test admits (zl_sampler_sample_where) */

/* First i in [lo, hi] with cum[i] - off > x (hi when none: rounding). */
static int32_t first_above(const double *cum, int32_t lo, int32_t hi, double off, double x)
{
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (cum[mid] - off > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A draw from the weights whose prefix sums are cum[0..n), without the tokens rm[0..k) (ascending, weights rw):
 * a uniform point of the remaining mass (total) located segment by segment between the removed tokens. -1 when
 * rounding leaves no token. */
static int32_t draw_without(zl_sampler *s, const double *cum, int32_t n, const int32_t *rm, const double *rw,
                            int k, double total)
{
    const double x = rng_uniform(s->rng) * total;
    double off = 0; /* mass of the removed tokens below the segment */
    for (int j = 0; j <= k; j++) {
        const int32_t lo = j ? rm[j - 1] + 1 : 0, hi = j < k ? rm[j] - 1 : n - 1;
        if (lo <= hi && cum[hi] - off > x)
            return first_above(cum, lo, hi, off, x);
        if (j < k)
            off += rw[j];
    }
    return -1;
}

int32_t zl_sampler_sample_where(zl_sampler *s, const float *logits, zl_sample_ws *ws, zl_token_ok ok, void *ctx,
                                int32_t tries)
{
    const zl_sampler_params *p = &s->p;
    const int32_t n = s->n_vocab;
    bool raw;
    const float *l = chain_view(s, logits, ws, &raw);
    tries = tries < 1 ? 1 : tries > ZL_SAMPLER_MAX_TRIES ? ZL_SAMPLER_MAX_TRIES : tries;

    if (p->temp > 0 && !has_filters(s)) {
        /* Rejection: draws from the same weights until one is admitted (the admitted tokens' distribution, as a
         * draw from the masked row would give), each refused token taken out of the later draws. */
        double total;
        int32_t tok = draw_plain(s, l, raw, ws, &total);
        if (ok(ctx, tok))
            return tok;
        if (!(total > 0))
            return -1;
        double *cum = ws->w, acc = 0;
        for (int32_t i = 0; i < n; i++) {
            acc += cum[i];
            cum[i] = acc;
        }
        int32_t rm[ZL_SAMPLER_MAX_TRIES];
        double rw[ZL_SAMPLER_MAX_TRIES], left = acc;
        int k = 0;
        for (;;) {
            /* tok joins the removed tokens, kept ascending */
            const double w = cum[tok] - (tok ? cum[tok - 1] : 0);
            int j = k++;
            while (j > 0 && rm[j - 1] > tok) {
                rm[j] = rm[j - 1];
                rw[j] = rw[j - 1];
                j--;
            }
            rm[j] = tok;
            rw[j] = w;
            left -= w;
            if (k >= tries || !(left > 0))
                return -1;
            tok = draw_without(s, cum, n, rm, rw, k, left);
            if (tok < 0)
                return -1;
            if (ok(ctx, tok))
                return tok;
        }
    }

    const bool top_k = p->top_k > 0 && p->top_k < n;
    int32_t tok;
    if (p->temp <= 0) {
        double total;
        tok = draw_plain(s, l, raw, ws, &total);
    } else {
        tok = draw_filtered(s, l, raw, ws);
    }
    if (ok(ctx, tok))
        return tok;
    if (p->temp > 0 && !top_k && p->top_p < 1.0f)
        return -1; /* top-p over the admitted tokens needs all of their mass */

    /* Greedy, top-k and min-p settle on the best candidates: the m best in descending order (the order the
     * masked row's candidates take), tested until the admitted ones that stage keeps are known. */
    const int32_t want = p->temp <= 0 ? 1 : top_k ? p->top_k : n; /* admitted candidates to collect */
    int64_t mm = (int64_t)(want < n ? want : 0) + tries + (p->temp > 0 && !top_k ? ZL_SAMPLER_MIN_P_SPAN : 0);
    const int32_t m = mm < n ? (int32_t)mm : n;
    cand *c = ws->cands;
    fill_cands(l, raw, n, c);
    top_k_sorted(c, n, m);
    int32_t got = 0, refused = 0;
    float thr = -INFINITY; /* min-p only: the admitted candidates at or above it */
    bool settled = m == n;
    for (int32_t i = 0; i < m; i++) {
        if (p->temp > 0 && !top_k && got > 0 && c[i].logit < thr) {
            settled = true;
            break;
        }
        if (c[i].id == tok || !ok(ctx, c[i].id)) { /* tok: the first draw, refused already */
            if (++refused > tries && got < want)
                return -1;
            continue;
        }
        if (got == 0 && p->temp > 0 && !top_k)
            thr = c[i].logit + logf(p->min_p);
        c[got++] = c[i];
        if (got == want) {
            settled = true;
            break;
        }
    }
    if (!settled || got == 0)
        return -1;
    if (p->temp <= 0)
        return c[0].id;
    if (!top_k) /* min-p alone keeps the candidates in id order */
        qsort(c, (size_t)got, sizeof *c, cmp_cand_id);
    return draw_tail(s, c, got, top_k, ws);
}

int32_t zl_sampler_sample_among(zl_sampler *s, const float *logits, const int32_t *ids, int32_t n_ids,
                                zl_sample_ws *ws)
{
    const zl_sampler_params *p = &s->p;
    if (n_ids <= 0)
        return 0;
    /* the candidates' logits as the chain sees them (penalties only on these) */
    cand *c = ws->cands;
    for (int32_t j = 0; j < n_ids; j++) {
        const int32_t t = ids[j];
        float x = clean(logits[t]);
        const int32_t cnt = s->window ? s->counts[t] : 0;
        if (cnt > 0) {
            x = x <= 0 ? x * p->repeat_penalty : x / p->repeat_penalty;
            x = x - (float)cnt * p->frequency_penalty - p->presence_penalty;
        }
        c[j].id = t;
        c[j].logit = x;
    }
    float maxl = -INFINITY;
    int32_t best = 0;
    for (int32_t j = 0; j < n_ids; j++)
        if (c[j].logit > maxl) { /* the first (lowest id) of the maximum */
            maxl = c[j].logit;
            best = c[j].id;
        }
    if (!isfinite(maxl) && !(maxl == INFINITY && p->temp <= 0))
        return 0; /* every candidate -inf: the whole-row draw's lowest id, as zl_sampler_sample_ws gives */
    if (p->temp <= 0)
        return best;
    if (!has_filters(s)) /* the whole-row draw's sums, without its zero terms */
        return draw_weighted(s, c, n_ids, maxl, ws);
    int32_t n = n_ids;
    bool sorted = false;
    if (p->top_k > 0 && p->top_k < s->n_vocab) {
        if (p->top_k < n) {
            top_k_sorted(c, n, p->top_k);
            n = p->top_k;
        } else {
            qsort(c, (size_t)n, sizeof *c, cmp_cand_desc);
        }
        sorted = true;
    }
    return draw_tail(s, c, n, sorted, ws);
}
