/*
 * spm.c - SentencePiece-style BPE over token scores (tokenizer.ggml.model "llama"), as llama.cpp runs it.
 *
 * The fragment's spaces become U+2581 ("▁"), optionally with one prepended. Each UTF-8 character starts as a
 * symbol (a byte that is not well-formed UTF-8 is a one-byte symbol). Repeatedly, the adjacent pair whose
 * concatenation is a token with the highest score is merged (ties: leftmost first). Finally each symbol is
 * emitted as its token, or, when its text is not a token (only single characters can be), as the <0xXX> byte
 * tokens of its bytes (byte fallback); a byte without such a token becomes the unknown token, or nothing.
 *
 * Symbols are always contiguous slices of the escaped text, so a pair's text is a slice too.
 * Threads: all state is per call.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct sym {
    size_t start, n; /* n == 0: merged into the left neighbour */
    int32_t prev, next;
} sym;

typedef struct bigram {
    float score;
    int32_t left, right;
    size_t size;
} bigram;

typedef struct heap {
    bigram *v;
    size_t n, cap;
} heap;

static bool before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
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

static int try_pair(const zl_vocab *v, const char *buf, const sym *s, int32_t left, int32_t right, heap *h)
{
    if (left < 0 || right < 0)
        return ZL_OK;
    size_t size = s[left].n + s[right].n;
    int32_t id = zl_vocab_find_text(v, buf + s[left].start, size);
    if (id < 0)
        return ZL_OK;
    return heap_push(h, (bigram){v->score[id], left, right, size});
}

static int emit(const zl_vocab *v, const char *buf, const sym *s, zl_ids *out)
{
    int32_t id = zl_vocab_find_text(v, buf + s->start, s->n);
    if (id >= 0)
        return zl_ids_push(out, id);
    for (size_t k = 0; k < s->n; k++) {
        int32_t b = v->byte_tok[(unsigned char)buf[s->start + k]];
        if (b < 0)
            b = v->unk;
        if (b >= 0 && zl_ids_push(out, b))
            return ZL_ENOMEM;
    }
    return ZL_OK;
}

int zl_spm_encode(const zl_vocab *v, const char *text, size_t len, bool prefix_space, zl_ids *out, zl_err *err)
{
    static const char sp[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */
    size_t n_sp = prefix_space ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        n_sp += text[i] == ' ';
    if (len > (SIZE_MAX - 3) / 3)
        return zl_err_set(err, ZL_ENOMEM, "tokenize: text too long (%zu bytes)", len);
    size_t blen = len + 2 * n_sp + (prefix_space ? 1 : 0);
    char *buf = malloc(blen ? blen : 1);
    sym *s = malloc((blen ? blen : 1) * sizeof *s);
    heap h = {0};
    int rc = ZL_OK;
    if (!buf || !s) {
        rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory for %zu bytes", len);
        goto done;
    }
    size_t o = 0;
    if (prefix_space) {
        memcpy(buf, sp, 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + o, sp, 3);
            o += 3;
        } else {
            buf[o++] = text[i];
        }
    }

    int32_t ns = 0;
    for (size_t i = 0; i < o;) {
        size_t l = zl_utf8_valid_len((const unsigned char *)buf + i, o - i);
        if (l == 0)
            l = 1;
        s[ns] = (sym){i, l, ns - 1, -1};
        if (ns > 0)
            s[ns - 1].next = ns;
        ns++;
        i += l;
    }
    for (int32_t i = 1; i < ns; i++)
        if (try_pair(v, buf, s, i - 1, i, &h))
            goto oom;
    while (h.n > 0) {
        bigram g = heap_pop(&h);
        sym *l = &s[g.left], *r = &s[g.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != g.size)
            continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s[r->next].prev = g.left;
        if (try_pair(v, buf, s, l->prev, g.left, &h) || try_pair(v, buf, s, g.left, l->next, &h))
            goto oom;
    }
    for (int32_t i = ns > 0 ? 0 : -1; i >= 0; i = s[i].next)
        if (emit(v, buf, &s[i], out))
            goto oom;
    goto done;
oom:
    rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory");
done:
    free(h.v);
    free(s);
    free(buf);
    return rc;
}
