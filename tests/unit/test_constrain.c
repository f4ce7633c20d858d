/* test_constrain.c - the tokens a grammar admits next: the vocabulary walked as a trie (zl_constrain_allowed)
 * against asking about every token on its own (zl_constrain_allows), on real vocabularies (SentencePiece with
 * byte tokens, byte-level BPE with partial UTF-8 pieces) along generations through several grammars. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/constrain.h"
#include "format/gguf.h"
#include "tokenizer/vocab.h"

static const char *const grammars[] = {
    /* JSON as response_format json_object gets it */
    NULL,
    /* nested repetition bounds, alternatives, a long literal */
    "root ::= \"{\\\"name\\\": \\\"\" [a-zA-Z ]{1,12} \"\\\", \\\"n\\\": \" [1-9] [0-9]{0,3} \"}\"\n",
    /* wide classes, negation, UTF-8 literals */
    "root ::= ( [α-ωА-я] | \"é\" | [^a-z\\x00-\\x1f\"] )+ \".\"\n",
    /* any character, then a choice of words */
    "root ::= . . . ( \" yes\" | \" no\" | \"日本語\" )\n",
};

/* Compares both ways at each step of a pseudo-random generation (some logits -inf, as a logit bias leaves them). */
static void walk_one(const char *vocab_path, const char *grammar, uint64_t seed, int steps, int *checked)
{
    zl_err e;
    gguf_file *f = NULL;
    if (gguf_open(vocab_path, NULL, &f, &e) != ZL_OK)
        fail_msg("%s", e.msg);
    zl_vocab *v = NULL;
    assert_int_equal(zl_vocab_load(f, &v, &e), ZL_OK);
    const int32_t n = zl_vocab_n_tokens(v);
    zl_token_text *tt = NULL;
    assert_int_equal(zl_token_text_build(v, n, &tt, &e), ZL_OK);
    zl_grammar *g = NULL;
    const char *text = grammar ? grammar : zl_grammar_json_object;
    if (zl_grammar_parse(text, strlen(text), &g, &e) != ZL_OK)
        fail_msg("%s", e.msg);
    zl_grammar_state *gs = zl_grammar_state_new(g);
    assert_non_null(gs);
    float *row = malloc((size_t)n * sizeof *row);
    int32_t *ids = malloc((size_t)n * sizeof *ids), *want = malloc((size_t)n * sizeof *want);
    assert_true(row && ids && want);
    uint64_t x = seed;
    for (int step = 0; step < steps; step++) {
        for (int32_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            row[i] = x % 10 == 0 ? -INFINITY : 0.0f;
        }
        int32_t nw = 0;
        for (int32_t i = 0; i < n; i++)
            if (row[i] != -INFINITY && zl_constrain_allows(tt, gs, i))
                want[nw++] = i;
        const int32_t got = zl_constrain_allowed(tt, gs, row, ids);
        if (got != nw)
            fail_msg("%s step %d: the walk admits %d tokens, one by one %d", vocab_path, step, got, nw);
        for (int32_t j = 0; j < nw; j++)
            if (ids[j] != want[j])
                fail_msg("%s step %d: entry %d is %d, want %d", vocab_path, step, j, ids[j], want[j]);
        (*checked)++;
        /* the next token: an admitted one with text, picked at random */
        int32_t pick = -1;
        for (int tries = 0; tries < 64 && nw > 0; tries++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            const int32_t t = want[x % (uint64_t)nw];
            if (!zl_vocab_is_eog(v, t)) {
                pick = t;
                break;
            }
        }
        if (pick < 0 || !zl_constrain_take(tt, gs, pick))
            break;
    }
    free(row);
    free(ids);
    free(want);
    zl_grammar_state_free(gs);
    zl_grammar_free(g);
    zl_token_text_free(tt);
    zl_vocab_free(v);
    gguf_close(f);
}

static const char *shared_dir(void)
{
    const char *s = getenv("ZILI_SHARED_DIR");
    return s && *s ? s : "../shared";
}

static void test_walk_matches_each(void **st)
{
    (void)st;
    char gpt2[1024];
    snprintf(gpt2, sizeof gpt2, "%s/data/vocab/ggml-vocab-gpt-2.gguf", shared_dir());
    const char *vocabs[] = {"tests/data/vocab/ggml-vocab-llama-spm.gguf", gpt2};
    int checked = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++)
        for (size_t gi = 0; gi < sizeof grammars / sizeof *grammars; gi++)
            walk_one(vocabs[vi], grammars[gi], 1 + vi * 16 + gi, 24, &checked);
    assert_true(checked > 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_walk_matches_each)};
    return cmocka_run_group_tests_name("constrain", tests, NULL, NULL);
}
