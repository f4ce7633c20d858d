/*
 * constrain.c - token texts and grammar checks for constrained decoding (constrain.h).
 */
#include "engine/constrain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct zl_token_text {
    char *bytes;   /* every token's text, back to back */
    uint32_t *off; /* token i: bytes[off[i] .. off[i + 1]) */
    bool *eog;     /* ends generation */
    int32_t n;
};

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

int32_t zl_constrain_mask(const zl_token_text *t, zl_grammar_state *gs, float *row)
{
    bool first[256];
    zl_grammar_first_bytes(gs, first);
    const bool can_end = zl_grammar_can_end(gs);
    int32_t allowed = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (row[i] == -INFINITY)
            continue;
        const uint32_t a = t->off[i], b = t->off[i + 1];
        const bool ok = t->eog[i] ? can_end
                                  : b > a && first[(unsigned char)t->bytes[a]] &&
                                        zl_grammar_would_accept(gs, t->bytes + a, b - a);
        if (ok)
            allowed++;
        else
            row[i] = -INFINITY;
    }
    return allowed;
}
