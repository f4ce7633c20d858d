/*
 * constrain.h - the token side of grammar-constrained decoding: every token's bytes, kept once per engine, and
 * the checks of sampled tokens against a request's grammar position (sample/grammar.h).
 *
 * The engine draws with zl_sampler_sample_where, which asks zl_constrain_allows about the tokens drawn (or, for
 * greedy and top-k, the best few) rather than the whole vocabulary; only when that does not settle the draw does
 * it find every token that may come (zl_constrain_allowed) and draw among them (zl_sampler_sample_among). End-of-generation tokens may come where the grammar can end;
 * tokens without text (control tokens) never may.
 *
 * Threads: the table is immutable after build; a grammar state is used by the thread sampling its request.
 */
#ifndef ZL_CONSTRAIN_H
#define ZL_CONSTRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "sample/grammar.h"
#include "tokenizer/vocab.h"

typedef struct zl_token_text zl_token_text;

int zl_token_text_build(const zl_vocab *v, int32_t n_vocab, zl_token_text **out, zl_err *err);
void zl_token_text_free(zl_token_text *t);

/* Whether tok may come next (gs unchanged). */
bool zl_constrain_allows(const zl_token_text *t, zl_grammar_state *gs, int32_t tok);
/* Takes tok into gs if it may come next (true); otherwise leaves gs as it was (false). An end-of-generation token
 * changes nothing. */
bool zl_constrain_take(const zl_token_text *t, zl_grammar_state *gs, int32_t tok);
/* The tokens that may come next, among those whose row entry is not -inf, in ascending order into ids (room for
 * n_vocab); returns how many. The vocabulary is walked as a trie (sorted at build), so each shared prefix is
 * matched once and a refused one rules out every token that starts with it. */
int32_t zl_constrain_allowed(const zl_token_text *t, zl_grammar_state *gs, const float *row, int32_t *ids);
/* row[i] = -inf for every token not among ids[0..n) (ascending). */
void zl_constrain_apply(const zl_token_text *t, const int32_t *ids, int32_t n, float *row);

#endif
