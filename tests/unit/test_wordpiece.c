/*
 * test_wordpiece.c - the WordPiece tokenizer (wpm.c) on a small hand-made vocabulary: greedy longest pieces,
 * continuation pieces, unknown words (no piece fits, longer than 100 characters), the normaliser (case, accents,
 * control characters, punctuation and CJK split off), [CLS]/[SEP] with add_special, invalid UTF-8, decoding.
 * Expected ids are worked out by hand from the rules in wpm.c's header (the bert-bge vectors in
 * test_vocab_vectors.c check the same code against the Hugging Face tokenizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab.h"

enum { T_PAD, T_UNK, T_CLS, T_SEP, T_UN, T_AFF, T_ABLE, T_UNAFF, T_CAFE, T_BANG, T_COMMA, T_ZHONG, T_E, T_A, N_TOK };

static const char *const texts[N_TOK] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81un", "aff", "able", "\xE2\x96\x81unaff", "\xE2\x96\x81" "cafe",
    "\xE2\x96\x81!", "\xE2\x96\x81,", "\xE2\x96\x81\xE4\xB8\xAD", "e", "\xE2\x96\x81" "a"};

static zl_vocab *make_wpm(void)
{
    static gguf_str toks[N_TOK];
    static int32_t types[N_TOK];
    for (int i = 0; i < N_TOK; i++) {
        toks[i] = (gguf_str){texts[i], strlen(texts[i])};
        types[i] = i < T_UN ? (i == T_UNK ? ZL_TOKEN_UNKNOWN : ZL_TOKEN_CONTROL) : ZL_TOKEN_NORMAL;
    }
    zl_vocab_desc d;
    zl_vocab_desc_init(&d);
    d.name = "test-wpm";
    d.model = "bert";
    d.n_tokens = N_TOK;
    d.tokens = toks;
    d.types = types;
    d.unk = T_UNK;
    d.bos = T_CLS;
    d.eos = T_SEP;
    zl_vocab *v = NULL;
    zl_err e = {{0}};
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_OK);
    return v;
}

static void expect(const zl_vocab *v, const char *text, size_t len, bool add_special, const int32_t *want, size_t n)
{
    int32_t *ids = NULL;
    size_t nid = 0;
    zl_err e = {{0}};
    assert_int_equal(zl_tokenize(v, text, len, add_special, false, &ids, &nid, &e), ZL_OK);
    if (nid != n || (n && memcmp(ids, want, n * sizeof *ids))) {
        print_error("[%.*s]: got %zu ids:", (int)len, text, nid);
        for (size_t i = 0; i < nid; i++)
            print_error(" %d", ids[i]);
        print_error("\n");
        fail();
    }
    free(ids);
}

#define EXPECT(v, s, sp, ...)                                                                                      \
    do {                                                                                                           \
        static const int32_t w_[] = {__VA_ARGS__};                                                                 \
        expect(v, s, strlen(s), sp, w_, sizeof w_ / sizeof w_[0]);                                                 \
    } while (0)

static void test_pieces(void **st)
{
    (void)st;
    zl_vocab *v = make_wpm();
    assert_int_equal(zl_vocab_kind_of(v), ZL_VOCAB_WPM);
    EXPECT(v, "unaffable", false, T_UNAFF, T_ABLE); /* longest first piece wins over "un" + "aff" */
    EXPECT(v, "unable", false, T_UN, T_ABLE);
    EXPECT(v, "unx", false, T_UNK);                 /* one position without a piece: the whole word */
    EXPECT(v, "  UnAble\t\n a ", false, T_UN, T_ABLE, T_A);
    EXPECT(v, "caf\xC3\xA9", false, T_CAFE);        /* é: NFD, the accent dropped */
    EXPECT(v, "CAF\xC3\x89", false, T_CAFE);
    EXPECT(v, "ca\x01" "fe", false, T_CAFE);        /* control characters vanish */
    EXPECT(v, "ca\xFF" "fe", false, T_CAFE);        /* so do bytes that are not UTF-8 */
    EXPECT(v, "un,able!", false, T_UN, T_COMMA, T_UNK, T_BANG); /* a piece after punctuation starts a word: "able" has no word-initial token */
    EXPECT(v, "a\xE4\xB8\xAD" "a", false, T_A, T_ZHONG, T_A);
    EXPECT(v, "a", true, T_CLS, T_A, T_SEP);
    expect(v, "", 0, false, NULL, 0);
    zl_vocab_free(v);
}

static void test_long_word(void **st)
{
    (void)st;
    zl_vocab *v = make_wpm();
    char w[128] = "\0";
    strcpy(w, "un");
    for (int i = 0; i < 98; i++)
        strcat(w, "e"); /* 100 characters: un + e... */
    int32_t want[100];
    want[0] = T_UN;
    for (int i = 1; i < 99; i++)
        want[i] = T_E;
    expect(v, w, strlen(w), false, want, 99);
    strcat(w, "e"); /* 101: unknown */
    want[0] = T_UNK;
    expect(v, w, strlen(w), false, want, 1);
    zl_vocab_free(v);
}

static void test_decode(void **st)
{
    (void)st;
    zl_vocab *v = make_wpm();
    const int32_t ids[] = {T_CLS, T_UN, T_ABLE, T_A, T_SEP};
    char *s = NULL;
    zl_err e = {{0}};
    assert_int_equal(zl_detokenize(v, ids, 5, false, &s, &e), ZL_OK);
    assert_string_equal(s, " unable a");
    free(s);
    zl_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_long_word),
        cmocka_unit_test(test_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
