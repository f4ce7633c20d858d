/*
 * test_tokenizer.c - the tokenizer on small vocabularies built in memory, with ids worked out by hand from the
 * BPE and SentencePiece rules: merge order, byte fallback, special tokens on/off, invalid UTF-8, embedded NULs,
 * empty and very long input, validation of malformed vocabularies, the streaming detokenizer across split
 * characters, and concurrent use of one vocabulary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab.h"

/* ---- a byte-level BPE vocabulary ------------------------------------------------------------------------- */

/* Token ids 0..255 spell the bytes 0..255 through GPT-2's byte map; then these. */
enum { T_AA = 256, T_BC, T_AB, T_ABC, T_AAAA, T_GA, T_IM_START, T_IM_END, T_TOOL, T_EOT, BPE_N };

static char bpe_text[BPE_N][16];
static gguf_str bpe_tokens[BPE_N];
static int32_t bpe_types[BPE_N];

/* GPT-2's bytes_to_unicode, written out from its definition (printable Latin-1 maps to itself, the rest to
 * U+0100 + index in byte order). */
static unsigned gpt2_cp(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
            k++;
    return 256 + k;
}

static void set_tok(int i, const char *s, int type)
{
    snprintf(bpe_text[i], sizeof bpe_text[i], "%s", s);
    bpe_tokens[i] = (gguf_str){bpe_text[i], strlen(bpe_text[i])};
    bpe_types[i] = type;
}

static zl_vocab *make_bpe(const char *pre, int add_bos)
{
    for (unsigned b = 0; b < 256; b++) {
        unsigned cp = gpt2_cp(b);
        char s[4] = {0};
        if (cp < 0x80)
            s[0] = (char)cp;
        else {
            s[0] = (char)(0xC0 | (cp >> 6));
            s[1] = (char)(0x80 | (cp & 0x3F));
        }
        set_tok((int)b, s, ZL_TOKEN_NORMAL);
    }
    set_tok(T_AA, "aa", ZL_TOKEN_NORMAL);
    set_tok(T_BC, "bc", ZL_TOKEN_NORMAL);
    set_tok(T_AB, "ab", ZL_TOKEN_NORMAL);
    set_tok(T_ABC, "abc", ZL_TOKEN_NORMAL);
    set_tok(T_AAAA, "aaaa", ZL_TOKEN_NORMAL);
    set_tok(T_GA, "\xC4\xA0" "a", ZL_TOKEN_NORMAL); /* "Ġa" */
    set_tok(T_IM_START, "<|im_start|>", ZL_TOKEN_CONTROL);
    set_tok(T_IM_END, "<|im_end|>", ZL_TOKEN_NORMAL); /* made control by its text */
    set_tok(T_TOOL, "<tool>", ZL_TOKEN_USER_DEFINED);
    set_tok(T_EOT, "<eot>", ZL_TOKEN_CONTROL);
    static const char *const merges[] = {"a a", "b c", "a b", "ab c", "aa aa", "\xC4\xA0 a"};
    static gguf_str m[6];
    for (int i = 0; i < 6; i++)
        m[i] = (gguf_str){merges[i], strlen(merges[i])};
    zl_vocab_desc d;
    zl_vocab_desc_init(&d);
    d.name = "test-bpe";
    d.model = "gpt2";
    d.pre = pre;
    d.n_tokens = BPE_N;
    d.tokens = bpe_tokens;
    d.types = bpe_types;
    d.merges = m;
    d.n_merges = 6;
    d.eos = T_EOT;
    d.bos = T_IM_START;
    d.add_bos = add_bos;
    zl_vocab *v = NULL;
    zl_err e;
    int rc = zl_vocab_build(&d, &v, &e);
    if (rc)
        fail_msg("build: %s", e.msg);
    return v;
}

static void expect_ids(const zl_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                       const int32_t *want, size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 99;
    zl_err e;
    assert_int_equal(zl_tokenize(v, text, len, add_special, parse_special, &ids, &n, &e), ZL_OK);
    if (n != n_want || (n && memcmp(ids, want, n * sizeof *ids) != 0)) {
        char got[512] = "", exp[512] = "";
        for (size_t i = 0; i < n && i < 40; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), " %d", ids[i]);
        for (size_t i = 0; i < n_want && i < 40; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), " %d", want[i]);
        fail_msg("[%.*s]: expected%s, got%s", (int)len, text, exp, got);
    }
    free(ids);
}

#define EXPECT(v, s, as, ps, ...)                                                                                  \
    do {                                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                                        \
        expect_ids(v, s, sizeof(s) - 1, as, ps, w_, sizeof w_ / sizeof w_[0]);                                     \
    } while (0)

static void roundtrip(const zl_vocab *v, const char *s, size_t n)
{
    int32_t *ids = NULL;
    size_t nid = 0;
    zl_err e;
    assert_int_equal(zl_tokenize(v, s, n, false, false, &ids, &nid, &e), ZL_OK);
    /* concatenated pieces, by length (the text may hold NULs) */
    char *buf = malloc(n + 64);
    size_t o = 0;
    for (size_t i = 0; i < nid; i++) {
        int l = zl_token_to_piece(v, ids[i], false, buf + o, n + 64 - o);
        assert_true(l >= 0 && o + (size_t)l <= n);
        o += (size_t)l;
    }
    assert_int_equal(o, n);
    assert_memory_equal(buf, s, n);
    free(buf);
    free(ids);
}

static void test_bpe_merges_by_rank(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    EXPECT(v, "ab", false, false, T_AB);
    EXPECT(v, "abc", false, false, 'a', T_BC);      /* "b c" (rank 1) beats "a b" (rank 2) */
    EXPECT(v, "aab", false, false, T_AA, 'b');      /* "a a" first; no "aa b" merge */
    EXPECT(v, "aaaaa", false, false, T_AAAA, 'a');  /* leftmost pairs first, then "aa aa" */
    EXPECT(v, " a", false, false, T_GA);            /* the space byte is spelled U+0120 */
    EXPECT(v, "a a", false, false, 'a', T_GA);      /* pre-tokenized into "a", " a" */
    EXPECT(v, "xy", false, false, 'x', 'y');
    EXPECT(v, "\n", false, false, 10);
    zl_vocab_free(v);
}

/* zl_tokenize_plain: special-token text inside a plain span is text; outside, and for user-defined tokens, it is a
 * token; the ids elsewhere are zl_tokenize's (ids worked out by hand as in test_bpe_special_tokens). */
static void test_bpe_plain_spans(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    /*                   0         1         2         3         4 */
    /*                   0123456789012345678901234567890123456789012345 */
    const char *text = "<|im_start|>ab<|im_end|>ab<tool><|im_start|>ab";
    const size_t len = strlen(text);
    zl_err e;
    int32_t *ids;
    size_t n;
    /* the middle "ab<|im_end|>ab<tool>" is message text */
    const zl_text_span mid[] = {{12, 20}};
    assert_int_equal(zl_tokenize_plain(v, text, len, false, mid, 1, &ids, &n, &e), ZL_OK);
    const int32_t want[] = {T_IM_START, T_AB, '<', '|', 'i', 'm', '_', 'e', 'n', 'd', '|', '>', T_AB, T_TOOL,
                            T_IM_START, T_AB};
    assert_int_equal(n, sizeof want / sizeof want[0]);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    /* a span that only overlaps the token's text still keeps it plain */
    const zl_text_span part[] = {{20, 1}};
    assert_int_equal(zl_tokenize_plain(v, text, len, false, part, 1, &ids, &n, &e), ZL_OK);
    assert_int_equal(ids[2], '<');
    free(ids);
    /* no spans, or empty ones: zl_tokenize with parse_special */
    const zl_text_span empty[] = {{5, 0}, {30, 0}};
    int32_t *ref;
    size_t n_ref;
    assert_int_equal(zl_tokenize(v, text, len, false, true, &ref, &n_ref, &e), ZL_OK);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(zl_tokenize_plain(v, text, len, false, k ? empty : NULL, k ? 2 : 0, &ids, &n, &e), ZL_OK);
        assert_int_equal(n, n_ref);
        assert_memory_equal(ids, ref, n * sizeof *ids);
        free(ids);
    }
    free(ref);
    /* spans past the text or out of order are refused */
    const zl_text_span past[] = {{40, 10}}, order[] = {{20, 4}, {10, 4}};
    assert_int_equal(zl_tokenize_plain(v, text, len, false, past, 1, &ids, &n, &e), ZL_EINVAL);
    assert_null(ids);
    assert_int_equal(zl_tokenize_plain(v, text, len, false, order, 2, &ids, &n, &e), ZL_EINVAL);
    zl_vocab_free(v);
}

static void test_bpe_special_tokens(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    /* parse_special: control text becomes the token */
    EXPECT(v, "<|im_start|>ab<|im_end|>", false, true, T_IM_START, T_AB, T_IM_END);
    /* not parsed: plain text ("<|" is punctuation, "im" letters, ...) */
    EXPECT(v, "<|im_start|>", false, false, '<', '|', 'i', 'm', '_', 's', 't', 'a', 'r', 't', '|', '>');
    /* user-defined tokens are cut out even without parse_special (Hugging Face added tokens) */
    EXPECT(v, "ab<tool>ab", false, false, T_AB, T_TOOL, T_AB);
    EXPECT(v, "<tool><tool>", false, true, T_TOOL, T_TOOL);
    /* add_special: no BOS for byte-level BPE unless the file asks */
    EXPECT(v, "ab", true, false, T_AB);
    assert_false(zl_vocab_add_bos(v));
    /* end of generation: the EOS id, and the "<|im_end|>" text, which also became a control token */
    assert_true(zl_vocab_is_eog(v, T_EOT));
    assert_true(zl_vocab_is_eog(v, T_IM_END));
    assert_int_equal(zl_vocab_token_type(v, T_IM_END), ZL_TOKEN_CONTROL);
    assert_false(zl_vocab_is_eog(v, T_AB));
    assert_false(zl_vocab_is_eog(v, -1));
    assert_false(zl_vocab_is_eog(v, BPE_N));
    assert_int_equal(zl_vocab_eot(v), T_IM_END);
    assert_int_equal(zl_vocab_find(v, "<tool>", 6), T_TOOL);
    assert_int_equal(zl_vocab_find(v, "<tool", 5), -1);
    zl_vocab_free(v);

    v = make_bpe("gpt-2", 1);
    EXPECT(v, "ab", true, false, T_IM_START, T_AB); /* add_bos_token = true; no EOS */
    zl_vocab_free(v);
}

static void test_bpe_bytes_nul_invalid_empty(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    /* invalid UTF-8: each bad byte is its own piece, encoded as its byte token */
    EXPECT(v, "\xff\xfe", false, false, 0xff, 0xfe);
    EXPECT(v, "a\xc3" "b", false, false, 'a', 0xc3, 'b');
    EXPECT(v, "\xed\xa0\x80", false, false, 0xed, 0xa0, 0x80); /* a surrogate is not UTF-8 */
    /* an embedded NUL is an ordinary byte */
    EXPECT(v, "a\0b", false, false, 'a', 0, 'b');
    /* valid multi-byte characters become their bytes' tokens */
    EXPECT(v, "é", false, false, 0xc3, 0xa9);
    /* empty input: no ids, NULL array allowed */
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    zl_err e;
    assert_int_equal(zl_tokenize(v, "", 0, false, false, &ids, &n, &e), ZL_OK);
    assert_int_equal(n, 0);
    free(ids);
    assert_int_equal(zl_tokenize(v, NULL, 0, true, true, &ids, &n, &e), ZL_OK);
    assert_int_equal(n, 0);
    free(ids);
    /* lossless for any bytes */
    unsigned char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (unsigned char)(i * 7 + 3);
    roundtrip(v, (const char *)all, sizeof all);
    static const char mixed[] = "a\0b\xff é \xf0\x9f\xa6\x99 \xf0\x9f";
    roundtrip(v, mixed, sizeof mixed - 1);
    zl_vocab_free(v);
}

static void test_long_inputs(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    size_t n = 1 << 20;
    char *s = malloc(n);
    memset(s, 'a', n);
    int32_t *ids = NULL;
    size_t nid = 0;
    zl_err e;
    /* one 1 MiB word: merges down to "aaaa" tokens */
    assert_int_equal(zl_tokenize(v, s, n, false, false, &ids, &nid, &e), ZL_OK);
    assert_int_equal(nid, n / 4);
    for (size_t i = 0; i < nid; i++)
        if (ids[i] != T_AAAA)
            fail_msg("id %zu is %d", i, ids[i]);
    free(ids);
    /* whitespace runs (backtracking in \s+(?!\S)) and long special-token-like text */
    memset(s, ' ', n);
    s[n - 1] = 'a';
    assert_int_equal(zl_tokenize(v, s, n, false, true, &ids, &nid, &e), ZL_OK);
    assert_int_equal(nid, n - 1); /* n - 2 spaces, then " a" */
    assert_int_equal(ids[nid - 1], T_GA);
    free(ids);
    for (size_t i = 0; i < n; i++)
        s[i] = "<|im_start|>"[i % 12];
    assert_int_equal(zl_tokenize(v, s, n, false, true, &ids, &nid, &e), ZL_OK);
    assert_true(nid >= n / 12);
    assert_int_equal(ids[0], T_IM_START);
    free(ids);
    free(s);
    zl_vocab_free(v);
}

static void test_pre_tokenizers_load(void **st)
{
    (void)st;
    const char *names[] = {"default", "gpt-2", "smollm", "starcoder", "refact", "falcon", "mpt", "deepseek-coder",
                           "deepseek-llm", "llama3", "llama-bpe", "qwen2", "command-r", "stablelm2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        zl_vocab *v = make_bpe(names[i], -1);
        assert_string_equal(zl_vocab_pre_name(v), names[i]);
        EXPECT(v, "ab", false, false, T_AB);
        zl_vocab_free(v);
    }
    /* Llama 3 adds BOS by default */
    zl_vocab *v = make_bpe("llama3", -1);
    assert_true(zl_vocab_add_bos(v));
    EXPECT(v, "ab", true, false, T_IM_START, T_AB);
    /* Llama 3's pattern keeps one leading non-letter with a word, splits digits by three */
    EXPECT(v, "123456a", false, false, '1', '2', '3', '4', '5', '6', 'a');
    zl_vocab_free(v);
    /* smollm: digits one by one */
    v = make_bpe("smollm", -1);
    EXPECT(v, "12", false, false, '1', '2');
    zl_vocab_free(v);
}

/* ---- a SentencePiece vocabulary -------------------------------------------------------------------------- */

enum { S_UNK = 0, S_BOS, S_EOS, S_BYTE0, S_SP = S_BYTE0 + 256, S_A, S_B, S_SPA, S_AB, S_SPAB, SPM_N };

static char spm_text[SPM_N][16];
static gguf_str spm_tokens[SPM_N];
static int32_t spm_types[SPM_N];
static float spm_scores[SPM_N];

static void set_spm(int i, const char *s, int type, float score)
{
    snprintf(spm_text[i], sizeof spm_text[i], "%s", s);
    spm_tokens[i] = (gguf_str){spm_text[i], strlen(spm_text[i])};
    spm_types[i] = type;
    spm_scores[i] = score;
}

static zl_vocab *make_spm(bool byte_tokens, int add_space_prefix)
{
    set_spm(S_UNK, "<unk>", ZL_TOKEN_UNKNOWN, 0);
    set_spm(S_BOS, "<s>", ZL_TOKEN_CONTROL, 0);
    set_spm(S_EOS, "</s>", ZL_TOKEN_CONTROL, 0);
    for (int b = 0; b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, byte_tokens ? "<0x%02X>" : "<x%02X>", b);
        set_spm(S_BYTE0 + b, t, byte_tokens ? ZL_TOKEN_BYTE : ZL_TOKEN_UNUSED, 0);
    }
    set_spm(S_SP, "\xE2\x96\x81", ZL_TOKEN_NORMAL, -1);
    set_spm(S_A, "a", ZL_TOKEN_NORMAL, -2);
    set_spm(S_B, "b", ZL_TOKEN_NORMAL, -3);
    set_spm(S_SPA, "\xE2\x96\x81" "a", ZL_TOKEN_NORMAL, -10);
    set_spm(S_AB, "ab", ZL_TOKEN_NORMAL, -1);
    set_spm(S_SPAB, "\xE2\x96\x81" "ab", ZL_TOKEN_NORMAL, -5);
    zl_vocab_desc d;
    zl_vocab_desc_init(&d);
    d.name = "test-spm";
    d.model = "llama";
    d.n_tokens = SPM_N;
    d.tokens = spm_tokens;
    d.types = spm_types;
    d.scores = spm_scores;
    d.add_space_prefix = add_space_prefix;
    zl_vocab *v = NULL;
    zl_err e;
    if (zl_vocab_build(&d, &v, &e))
        fail_msg("build: %s", e.msg);
    return v;
}

static void test_spm(void **st)
{
    (void)st;
    zl_vocab *v = make_spm(true, -1);
    assert_int_equal(zl_vocab_kind_of(v), ZL_VOCAB_SPM);
    assert_int_equal(zl_vocab_bos(v), S_BOS); /* defaults: bos 1, eos 2, unk 0 */
    assert_int_equal(zl_vocab_eos(v), S_EOS);
    assert_int_equal(zl_vocab_unk(v), S_UNK);
    assert_true(zl_vocab_add_bos(v));
    /* "▁ab": "ab" (-1) merges before "▁a" (-10), then "▁ab" (-5) */
    EXPECT(v, "ab", false, false, S_SPAB);
    EXPECT(v, "ab", true, false, S_BOS, S_SPAB);
    /* nothing merges in "▁ba" */
    EXPECT(v, "ba", false, false, S_SP, S_B, S_A);
    /* spaces are "▁"; "▁a" is a token */
    EXPECT(v, "b a", false, false, S_SP, S_B, S_SPA);
    /* byte fallback for characters that are not tokens, and for invalid bytes */
    EXPECT(v, "é", false, false, S_SP, S_BYTE0 + 0xC3, S_BYTE0 + 0xA9);
    EXPECT(v, "\xff", false, false, S_SP, S_BYTE0 + 0xFF);
    EXPECT(v, "a\0", false, false, S_SPA, S_BYTE0 + 0);
    /* special tokens: after one, the next fragment gets a space prefix again */
    EXPECT(v, "<s>ab</s>b", false, true, S_BOS, S_SPAB, S_EOS, S_SP, S_B);
    EXPECT(v, "", true, false, S_BOS);
    /* decoding: the prefix space after BOS is dropped */
    int32_t seq[] = {S_BOS, S_SPAB, S_SP, S_B, S_BYTE0 + 0xC3, S_BYTE0 + 0xA9};
    char *s = NULL;
    zl_err e;
    assert_int_equal(zl_detokenize(v, seq, 6, false, &s, &e), ZL_OK);
    assert_string_equal(s, "ab bé");
    free(s);
    assert_int_equal(zl_detokenize(v, seq, 6, true, &s, &e), ZL_OK);
    assert_string_equal(s, "<s>ab bé");
    free(s);
    zl_vocab_free(v);

    /* no byte tokens: unknown characters become <unk>; no space prefix */
    v = make_spm(false, 0);
    EXPECT(v, "aé", false, false, S_A, S_UNK, S_UNK);
    EXPECT(v, "ab", false, false, S_AB);
    zl_vocab_free(v);
}

/* ---- decoding -------------------------------------------------------------------------------------------- */

static void test_token_to_piece(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    char buf[16];
    assert_int_equal(zl_token_to_piece(v, -1, true, buf, sizeof buf), ZL_ERANGE);
    assert_int_equal(zl_token_to_piece(v, BPE_N, true, buf, sizeof buf), ZL_ERANGE);
    assert_int_equal(zl_token_to_piece(v, T_GA, false, buf, sizeof buf), 2);
    assert_memory_equal(buf, " a", 2);
    assert_int_equal(zl_token_to_piece(v, 0x0A, false, buf, sizeof buf), 1); /* "Ċ" is the newline byte */
    assert_int_equal(buf[0], '\n');
    assert_int_equal(zl_token_to_piece(v, T_IM_START, false, buf, sizeof buf), 0);
    assert_int_equal(zl_token_to_piece(v, T_IM_START, true, buf, sizeof buf), 12);
    assert_memory_equal(buf, "<|im_start|>", 12);
    assert_int_equal(zl_token_to_piece(v, T_TOOL, false, buf, sizeof buf), 6); /* user-defined: always */
    /* truncation reports the full length and writes only cap bytes */
    memset(buf, 'z', sizeof buf);
    assert_int_equal(zl_token_to_piece(v, T_IM_START, true, buf, 4), 12);
    assert_memory_equal(buf, "<|im", 4);
    assert_int_equal(buf[4], 'z');
    zl_vocab_free(v);
}

static void test_detok_streaming(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    zl_detok d;
    char out[64];
    zl_detok_init(&d, v, false);
    /* "é" = C3 A9 split over two tokens: nothing, then the whole character */
    assert_int_equal(zl_detok_push(&d, 0xC3, out, sizeof out), 0);
    assert_int_equal(zl_detok_push(&d, 0xA9, out, sizeof out), 2);
    assert_memory_equal(out, "é", 2);
    /* a 4-byte emoji byte by byte */
    const unsigned char llama[] = {0xF0, 0x9F, 0xA6, 0x99};
    for (int i = 0; i < 3; i++)
        assert_int_equal(zl_detok_push(&d, llama[i], out, sizeof out), 0);
    assert_int_equal(zl_detok_push(&d, llama[3], out, sizeof out), 4);
    assert_memory_equal(out, "\xF0\x9F\xA6\x99", 4);
    /* a byte that can never start a character: U+FFFD at once */
    assert_int_equal(zl_detok_push(&d, 0xFF, out, sizeof out), 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    /* an incomplete character interrupted by ASCII: U+FFFD then the ASCII */
    assert_int_equal(zl_detok_push(&d, 0xE2, out, sizeof out), 0);
    assert_int_equal(zl_detok_push(&d, T_AB, out, sizeof out), 5);
    assert_memory_equal(out, "\xEF\xBF\xBD" "ab", 5);
    /* control tokens are silent unless special */
    assert_int_equal(zl_detok_push(&d, T_IM_START, out, sizeof out), 0);
    /* pending at the end: flushed as U+FFFD */
    assert_int_equal(zl_detok_push(&d, 0xC3, out, sizeof out), 0);
    assert_int_equal(zl_detok_flush(&d, out, sizeof out), 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    assert_int_equal(zl_detok_flush(&d, out, sizeof out), 0);
    /* too small a buffer: ZL_ERANGE and nothing consumed */
    assert_int_equal(zl_detok_push(&d, T_TOOL, out, 3), ZL_ERANGE);
    assert_int_equal(zl_detok_push(&d, T_TOOL, out, sizeof out), 6);
    assert_int_equal(zl_detok_push(&d, -5, out, sizeof out), ZL_ERANGE);
    zl_detok_init(&d, v, true);
    assert_int_equal(zl_detok_push(&d, T_IM_START, out, sizeof out), 12);
    zl_vocab_free(v);

    /* SentencePiece: the space after BOS is dropped; a generated stream (no BOS) keeps its spaces */
    v = make_spm(true, -1);
    zl_detok_init(&d, v, false);
    assert_int_equal(zl_detok_push(&d, S_BOS, out, sizeof out), 0);
    assert_int_equal(zl_detok_push(&d, S_SPAB, out, sizeof out), 2);
    assert_memory_equal(out, "ab", 2);
    assert_int_equal(zl_detok_push(&d, S_SPA, out, sizeof out), 2);
    assert_memory_equal(out, " a", 2);
    zl_detok_init(&d, v, false);
    assert_int_equal(zl_detok_push(&d, S_SPA, out, sizeof out), 2);
    assert_memory_equal(out, " a", 2);
    zl_vocab_free(v);
}

/* ---- validation ------------------------------------------------------------------------------------------ */

static int build_spm_with(int tok, const char *text, int type, int64_t bos, const char *model, const char *pre)
{
    zl_vocab_free(make_spm(true, -1)); /* fills the arrays */
    char saved[16];
    memcpy(saved, spm_text[tok], sizeof saved);
    int saved_type = spm_types[tok];
    set_spm(tok, text, type, spm_scores[tok]);
    zl_vocab_desc d;
    zl_vocab_desc_init(&d);
    d.model = model;
    d.pre = pre;
    d.n_tokens = SPM_N;
    d.tokens = spm_tokens;
    d.types = spm_types;
    d.scores = spm_scores;
    d.bos = bos;
    zl_vocab *v = NULL;
    zl_err e = {{0}};
    int rc = zl_vocab_build(&d, &v, &e);
    zl_vocab_free(v);
    set_spm(tok, saved, saved_type, spm_scores[tok]);
    return rc;
}

static void test_validation(void **st)
{
    (void)st;
    int b = S_BYTE0 + 1;
    assert_int_equal(build_spm_with(b, "<0x01>", ZL_TOKEN_BYTE, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_OK);
    assert_int_equal(build_spm_with(b, "<0x1>", ZL_TOKEN_BYTE, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_EFORMAT);
    assert_int_equal(build_spm_with(b, "<0xZZ>", ZL_TOKEN_BYTE, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_EFORMAT);
    assert_int_equal(build_spm_with(b, "<0x-1>", ZL_TOKEN_BYTE, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_EFORMAT);
    assert_int_equal(build_spm_with(b, "<0x100>", ZL_TOKEN_BYTE, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_EFORMAT);
    /* a malformed byte text on a normal token is just text */
    assert_int_equal(build_spm_with(b, "<0x1>", ZL_TOKEN_NORMAL, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_OK);
    assert_int_equal(build_spm_with(b, "<0x01>", 9, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_EFORMAT);
    assert_int_equal(build_spm_with(b, "a", ZL_TOKEN_NORMAL, ZL_VOCAB_ID_UNSET, "llama", NULL), ZL_EFORMAT); /* dup */
    assert_int_equal(build_spm_with(b, "<0x01>", ZL_TOKEN_BYTE, SPM_N, "llama", NULL), ZL_EFORMAT);
    assert_int_equal(build_spm_with(b, "<0x01>", ZL_TOKEN_BYTE, -7, "llama", NULL), ZL_EFORMAT);
    assert_int_equal(build_spm_with(b, "<0x01>", ZL_TOKEN_BYTE, -1, "llama", NULL), ZL_OK); /* explicitly none */
    assert_int_equal(build_spm_with(b, "<0x01>", ZL_TOKEN_BYTE, 1, "ugm", NULL), ZL_EUNSUPPORTED);

    /* BPE: unknown pre-tokenizer, merges naming unknown tokens */
    zl_vocab_free(make_bpe("gpt-2", -1));
    zl_vocab_desc d;
    zl_vocab_desc_init(&d);
    d.model = "gpt2";
    d.pre = "no-such-pre";
    d.n_tokens = BPE_N;
    d.tokens = bpe_tokens;
    zl_vocab *v = NULL;
    zl_err e = {{0}};
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "no-such-pre"));
    d.pre = "gpt-2";
    gguf_str bad[] = {{"a zz", 4}};
    d.merges = bad;
    d.n_merges = 1;
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_EFORMAT);
    gguf_str nospace[] = {{"ab", 2}};
    d.merges = nospace;
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_EFORMAT);
    gguf_str noresult[] = {{"x y", 3}};
    d.merges = noresult;
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_EFORMAT);
    d.merges = NULL;
    d.n_merges = 0;
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_OK);
    zl_vocab_free(v);
    d.n_tokens = 0;
    assert_int_equal(zl_vocab_build(&d, &v, &e), ZL_EFORMAT);
    assert_null(v);
}

/* ---- threads --------------------------------------------------------------------------------------------- */

/* Worked out by hand: fragments [<|im_start|>] "aab abc aaaaa" \xff " é" [<tool>]; words "aab", " abc",
 * " aaaaa"; in " abc" the "b c" merge (rank 1) comes before "a b" (rank 2). */
static const char thread_text[] = "<|im_start|>aab abc aaaaa\xff é<tool>";
static const int32_t thread_want[] = {T_IM_START, T_AA, 'b', T_GA, T_BC, ' ', T_AAAA, 'a', 0xff, ' ', 0xc3, 0xa9,
                                      T_TOOL};

typedef struct job {
    const zl_vocab *v;
    int ok;
} job;

static void *worker(void *p)
{
    job *j = p;
    j->ok = 1;
    for (int it = 0; it < 300; it++) {
        int32_t *ids = NULL;
        size_t n = 0;
        zl_err e;
        if (zl_tokenize(j->v, thread_text, sizeof thread_text - 1, false, true, &ids, &n, &e) != ZL_OK ||
            n != sizeof thread_want / sizeof thread_want[0] || memcmp(ids, thread_want, sizeof thread_want) != 0)
            j->ok = 0;
        free(ids);
    }
    return NULL;
}

static void test_shared_between_threads(void **st)
{
    (void)st;
    zl_vocab *v = make_bpe("gpt-2", -1);
    expect_ids(v, thread_text, sizeof thread_text - 1, false, true, thread_want,
               sizeof thread_want / sizeof thread_want[0]);
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){v, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(jobs[i].ok);
    }
    zl_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_merges_by_rank),
        cmocka_unit_test(test_bpe_special_tokens),
        cmocka_unit_test(test_bpe_plain_spans),
        cmocka_unit_test(test_bpe_bytes_nul_invalid_empty),
        cmocka_unit_test(test_long_inputs),
        cmocka_unit_test(test_pre_tokenizers_load),
        cmocka_unit_test(test_spm),
        cmocka_unit_test(test_token_to_piece),
        cmocka_unit_test(test_detok_streaming),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_shared_between_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
