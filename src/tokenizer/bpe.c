/*
 * bpe.c - byte-level BPE (GPT-2 style): the byte <-> code point map and the merge loop.
 *
 * Every byte of a pre-tokenized word starts as its own symbol, the token spelling that byte's mapped code point
 * (GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order).
 * Then, repeatedly, the adjacent pair whose merge has the lowest rank (earliest in tokenizer.ggml.merges) is
 * merged; among equal ranks the leftmost pair goes first. A symbol is always a token id, so a pair is looked up
 * as (left id, right id) in the merge table built at load.
 *
 * ignore_merges (Llama 3 style): a word that is itself a token is emitted whole, without merging.
 * A byte whose mapped code point is not a token produces nothing, as in llama.cpp.
 * Threads: all state is per call.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

void zl_bpe_init_byte_map(zl_vocab *v)
{
    for (int i = 0; i < 324; i++)
        v->cp_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = printable ? b : 256 + extra++;
        v->byte_cp[b] = (uint16_t)cp;
        v->cp_byte[cp] = (int16_t)b;
    }
}

typedef struct sym {
    int32_t id;         /* -1: no token (a byte without one, or merged into its left neighbour) */
    int32_t prev, next; /* the live chain; -1 at the ends */
} sym;

typedef struct bigram {
    int32_t rank, left, right;
    int32_t left_id, right_id; /* the symbols' ids when queued: a later mismatch means the pair is stale */
    int32_t result;
} bigram;

typedef struct heap {
    bigram *v;
    size_t n, cap;
} heap;

static bool before(const bigram *a, const bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(heap *h, bigram g)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bigram *nv = realloc(h->v, cap * sizeof *nv);
        if (!nv)
            return ZL_ENOMEM;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&g, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = g;
    return ZL_OK;
}

static bigram heap_pop(heap *h)
{
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
    return top;
}

static uint64_t pair_hash(int32_t l, int32_t r)
{
    uint64_t x = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static const zl_merge *find_merge(const zl_vocab *v, int32_t l, int32_t r)
{
    if (!v->merges)
        return NULL;
    for (uint64_t i = pair_hash(l, r) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const zl_merge *m = &v->merges[i];
        if (m->left < 0)
            return NULL;
        if (m->left == l && m->right == r)
            return m;
    }
}

/* Exposed for vocab.c's table building. */
uint64_t zl_bpe_pair_hash(int32_t l, int32_t r);
uint64_t zl_bpe_pair_hash(int32_t l, int32_t r) { return pair_hash(l, r); }

static int try_pair(const zl_vocab *v, const sym *s, int32_t left, heap *h)
{
    if (left < 0 || s[left].next < 0)
        return ZL_OK;
    int32_t right = s[left].next;
    const zl_merge *m = find_merge(v, s[left].id, s[right].id);
    if (!m)
        return ZL_OK;
    return heap_push(h, (bigram){m->rank, left, right, s[left].id, s[right].id, m->result});
}

/* Merges the word's bytes w[0..n) and appends the resulting ids. */
static int encode_word(const zl_vocab *v, const unsigned char *w, size_t n, sym *s, heap *h, zl_ids *out)
{
    /* A byte without a token keeps its place as a symbol with id -1: it never merges and is not emitted. */
    int32_t ns = (int32_t)n;
    for (int32_t i = 0; i < ns; i++)
        s[i] = (sym){v->byte_tok[w[i]], i - 1, i + 1 < ns ? i + 1 : -1};
    h->n = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        if (try_pair(v, s, i, h))
            return ZL_ENOMEM;
    while (h->n > 0) {
        bigram g = heap_pop(h);
        sym *l = &s[g.left], *r = &s[g.right];
        if (l->id != g.left_id || r->id != g.right_id || l->next != g.right)
            continue; /* stale: one side has changed since it was queued */
        l->id = g.result;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = g.left;
        r->id = -1;
        r->next = r->prev = -1;
        if (try_pair(v, s, l->prev, h) || try_pair(v, s, g.left, h))
            return ZL_ENOMEM;
    }
    for (int32_t i = ns > 0 ? 0 : -1; i >= 0; i = s[i].next) /* symbol 0 is never merged away */
        if (s[i].id >= 0 && zl_ids_push(out, s[i].id))
            return ZL_ENOMEM;
    return ZL_OK;
}

int zl_bpe_encode(const zl_vocab *v, const char *text, size_t len, zl_ids *out, zl_err *err)
{
    zl_piece *pieces = NULL;
    size_t np = 0;
    int rc = zl_pretok_split(v, text, len, &pieces, &np, err);
    if (rc)
        return rc;
    size_t maxw = 0;
    for (size_t i = 0; i < np; i++)
        if (pieces[i].len > maxw)
            maxw = pieces[i].len;
    sym *s = NULL;
    char *mapped = NULL;
    heap h = {0};
    if (maxw > 0) {
        s = malloc(maxw * sizeof *s);
        mapped = v->ignore_merges && maxw <= SIZE_MAX / 2 ? malloc(maxw * 2) : NULL;
        if (!s || (v->ignore_merges && !mapped)) {
            rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory for a %zu-byte word", maxw);
            goto done;
        }
    }
    for (size_t i = 0; i < np; i++) {
        const unsigned char *w = (const unsigned char *)text + pieces[i].off;
        size_t n = pieces[i].len;
        if (v->ignore_merges) {
            size_t m = 0;
            for (size_t k = 0; k < n; k++)
                m += zl_utf8_encode(v->byte_cp[w[k]], mapped + m);
            int32_t id = zl_vocab_find_text(v, mapped, m);
            if (id >= 0) {
                if (zl_ids_push(out, id)) {
                    rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory");
                    goto done;
                }
                continue;
            }
        }
        if (encode_word(v, w, n, s, &h, out)) {
            rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory");
            goto done;
        }
    }
done:
    free(h.v);
    free(s);
    free(mapped);
    free(pieces);
    return rc;
}
