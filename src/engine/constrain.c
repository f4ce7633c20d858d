/*
 * constrain.c - token texts and grammar checks for constrained decoding (constrain.h).
 */
#include "engine/constrain.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct zl_token_text {
    char *bytes;   /* every token's text, back to back */
    uint32_t *off; /* token i: bytes[off[i] .. off[i + 1]) */
    bool *eog;     /* ends generation */
    int32_t n;
    /* The tokens with text that do not end generation, sorted by their bytes (a prefix first): their ids, their
     * texts in that order (sbytes[soff[k] .. soff[k + 1])), the length of the prefix each shares with the one
     * before it (0 for the first), and each token's place in the order (rank, -1: not in it). The mask walks
     * them as a trie, reading every array front to back. */
    int32_t *order, n_order, *rank;
    char *sbytes;
    uint32_t *soff;
    uint16_t *lcp;
    int32_t *eog_ids, n_eog; /* the tokens that end generation */
};

/* For the sort: the table being sorted (qsort has no context argument). Set by zl_token_text_build under the
 * build lock. */
static const zl_token_text *sort_table;
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static int cmp_text(const void *pa, const void *pb)
{
    const zl_token_text *t = sort_table;
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    const uint32_t la = t->off[a + 1] - t->off[a], lb = t->off[b + 1] - t->off[b];
    const int c = memcmp(t->bytes + t->off[a], t->bytes + t->off[b], la < lb ? la : lb);
    if (c)
        return c;
    return la != lb ? (la < lb ? -1 : 1) : (a < b ? -1 : a > b);
}

/* The sorted walk order and the shared-prefix lengths. */
static bool build_order(zl_token_text *t)
{
    t->order = malloc((size_t)(t->n ? t->n : 1) * sizeof *t->order);
    t->lcp = malloc((size_t)(t->n ? t->n : 1) * sizeof *t->lcp);
    if (!t->order || !t->lcp)
        return false;
    int32_t m = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (!t->eog[i] && t->off[i + 1] > t->off[i])
            t->order[m++] = i;
    t->n_order = m;
    pthread_mutex_lock(&sort_lock);
    sort_table = t;
    qsort(t->order, (size_t)m, sizeof *t->order, cmp_text);
    sort_table = NULL;
    pthread_mutex_unlock(&sort_lock);
    t->rank = malloc((size_t)(t->n ? t->n : 1) * sizeof *t->rank);
    t->soff = malloc(((size_t)m + 1) * sizeof *t->soff);
    t->sbytes = malloc(t->off[t->n] ? t->off[t->n] : 1);
    if (!t->rank || !t->soff || !t->sbytes)
        return false;
    for (int32_t i = 0; i < t->n; i++)
        t->rank[i] = -1;
    uint32_t at = 0;
    for (int32_t k = 0; k < m; k++) {
        const int32_t i = t->order[k];
        t->rank[i] = k;
        t->soff[k] = at;
        memcpy(t->sbytes + at, t->bytes + t->off[i], t->off[i + 1] - t->off[i]);
        at += t->off[i + 1] - t->off[i];
    }
    t->soff[m] = at;
    t->eog_ids = malloc((size_t)(t->n ? t->n : 1) * sizeof *t->eog_ids);
    if (!t->eog_ids)
        return false;
    for (int32_t i = 0; i < t->n; i++)
        if (t->eog[i])
            t->eog_ids[t->n_eog++] = i;
    for (int32_t k = 0; k < m; k++) {
        uint32_t l = 0;
        if (k > 0) {
            const int32_t a = t->order[k - 1], b = t->order[k];
            const uint32_t la = t->off[a + 1] - t->off[a], lb = t->off[b + 1] - t->off[b];
            const char *pa = t->bytes + t->off[a], *pb = t->bytes + t->off[b];
            while (l < la && l < lb && pa[l] == pb[l])
                l++;
        }
        t->lcp[k] = (uint16_t)(l > UINT16_MAX ? UINT16_MAX : l);
    }
    return true;
}

int zl_token_text_build(const zl_vocab *v, int32_t n_vocab, zl_token_text **out, zl_err *err)
{
    *out = NULL;
    zl_token_text *t = calloc(1, sizeof *t);
    size_t total = 0;
    char piece[1024];
    if (t) {
        t->n = n_vocab;
        t->off = malloc(((size_t)n_vocab + 1) * sizeof *t->off);
        t->eog = calloc((size_t)n_vocab, sizeof *t->eog);
    }
    if (!t || !t->off || !t->eog)
        goto nomem;
    for (int32_t i = 0; i < n_vocab; i++) {
        const int n = zl_token_to_piece(v, i, false, NULL, 0);
        total += n > 0 && n <= (int)sizeof piece ? (size_t)n : 0;
    }
    t->bytes = malloc(total ? total : 1);
    if (!t->bytes)
        goto nomem;
    size_t at = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        t->off[i] = (uint32_t)at;
        t->eog[i] = zl_vocab_is_eog(v, i);
        const int n = zl_token_to_piece(v, i, false, piece, sizeof piece);
        if (n > 0 && n <= (int)sizeof piece) {
            memcpy(t->bytes + at, piece, (size_t)n);
            at += (size_t)n;
        }
    }
    t->off[n_vocab] = (uint32_t)at;
    if (!build_order(t))
        goto nomem;
    *out = t;
    return ZL_OK;
nomem:
    zl_token_text_free(t);
    return zl_err_set(err, ZL_ENOMEM, "engine: out of memory for the token texts");
}

void zl_token_text_free(zl_token_text *t)
{
    if (!t)
        return;
    free(t->bytes);
    free(t->off);
    free(t->eog);
    free(t->order);
    free(t->rank);
    free(t->sbytes);
    free(t->soff);
    free(t->lcp);
    free(t->eog_ids);
    free(t);
}

bool zl_constrain_allows(const zl_token_text *t, zl_grammar_state *gs, int32_t tok)
{
    if (tok < 0 || tok >= t->n)
        return false;
    if (t->eog[tok])
        return zl_grammar_can_end(gs);
    const uint32_t a = t->off[tok], b = t->off[tok + 1];
    return b > a && zl_grammar_would_accept(gs, t->bytes + a, b - a);
}

bool zl_constrain_take(const zl_token_text *t, zl_grammar_state *gs, int32_t tok)
{
    if (tok < 0 || tok >= t->n)
        return false;
    if (t->eog[tok])
        return zl_grammar_can_end(gs);
    const uint32_t a = t->off[tok], b = t->off[tok + 1];
    return b > a && zl_grammar_accept(gs, t->bytes + a, b - a);
}

static int cmp_id(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Token by token (the walk's fallback when memory is short). */
static int32_t allowed_each(const zl_token_text *t, zl_grammar_state *gs, const float *row, int32_t *ids)
{
    int32_t n = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (row[i] != -INFINITY && zl_constrain_allows(t, gs, i))
            ids[n++] = i;
    return n;
}

int32_t zl_constrain_allowed(const zl_token_text *t, zl_grammar_state *gs, const float *row, int32_t *ids)
{
    const size_t words = ((size_t)t->n_order + 63) / 64;
    uint64_t *ok = calloc(words ? words : 1, sizeof *ok); /* bit k: the k-th token of the order may come */
    if (!ok || !zl_grammar_walk_start(gs)) {
        free(ok);
        return allowed_each(t, gs, row, ids);
    }
    /* The sorted tokens as a trie: depths 0 .. valid hold the positions along the last token's bytes; when its
     * first dead + 1 bytes could not come, neither can those of any token sharing them. */
    int32_t valid = 0, dead = -1, n_ok = 0;
    for (int32_t k = 0; k < t->n_order; k++) {
        const uint32_t l = t->lcp[k], len = t->soff[k + 1] - t->soff[k];
        if (dead >= 0 && l > (uint32_t)dead)
            continue;
        const unsigned char *bytes = (const unsigned char *)t->sbytes + t->soff[k];
        int32_t d = (int32_t)(l < (uint32_t)valid ? l : (uint32_t)valid);
        while ((uint32_t)d < len && zl_grammar_walk_push(gs, d, bytes[d]))
            d++;
        valid = d;
        dead = (uint32_t)d < len ? d : -1;
        if (dead < 0 && zl_grammar_walk_complete(gs, d)) {
            ok[k / 64] |= 1ull << (k % 64);
            n_ok++;
        }
    }
    const bool can_end = zl_grammar_can_end(gs);
    int32_t n = 0;
    if (n_ok < t->n / 64) { /* few: gathered from the bits, then put in id order */
        for (size_t w = 0; w < words; w++)
            for (uint64_t b = ok[w]; b; b &= b - 1) {
                const int32_t i = t->order[w * 64 + (size_t)__builtin_ctzll(b)];
                if (row[i] != -INFINITY)
                    ids[n++] = i;
            }
        if (can_end)
            for (int32_t j = 0; j < t->n_eog; j++)
                if (row[t->eog_ids[j]] != -INFINITY)
                    ids[n++] = t->eog_ids[j];
        qsort(ids, (size_t)n, sizeof *ids, cmp_id);
    } else {
        for (int32_t i = 0; i < t->n; i++) {
            const int32_t k = t->rank[i];
            if (row[i] != -INFINITY && (k >= 0 ? (ok[k / 64] >> (k % 64)) & 1 : t->eog[i] && can_end))
                ids[n++] = i;
        }
    }
    free(ok);
    return n;
}

void zl_constrain_apply(const zl_token_text *t, const int32_t *ids, int32_t n, float *row)
{
    int32_t j = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (j < n && ids[j] == i)
            j++;
        else
            row[i] = -INFINITY;
    }
}
