/*
 * fuzz_tokenizer.c - libFuzzer harness for encoding and decoding with a real vocabulary.
 *
 * The vocabulary is loaded once, from ZILI_FUZZ_VOCAB or the path compiled in as ZL_FUZZ_VOCAB (`make fuzz`
 * builds this file twice: fuzz_tok_bpe over SmolLM2's byte-level BPE vocabulary, fuzz_tok_spm over the
 * SentencePiece one in tests/data/vocab). Each input is used three ways:
 *   1. as text: zl_tokenize with and without special tokens; every id must be in the vocabulary, and for
 *      byte-level BPE without specials detokenize(tokenize(s)) must give s back byte for byte (vocab.h) when
 *      every byte of s has a token;
 *   2. the ids from 1 through the streaming detokenizer, whose output must be valid UTF-8 (vocab.h);
 *   3. as raw little-endian int32 token ids (negative and huge included): zl_token_to_piece into buffers of
 *      exact small sizes, zl_detok_push and zl_detokenize, which must refuse ids out of range.
 * A broken property aborts with a message, so libFuzzer saves the input as a crash.
 *
 * tests/unit/test_fuzz_regress.c includes this file with ZL_FUZZ_REPLAY defined to replay saved inputs.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "tokenizer/vocab.h"

#include "fuzz_check.h"

/* Length of the valid UTF-8 sequence at s[0..n) (RFC 3629: no overlongs, no surrogates), or 0. */
static size_t fuzz_utf8_len(const unsigned char *s, size_t n)
{
    const unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

static bool fuzz_valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        const size_t l = fuzz_utf8_len((const unsigned char *)s + i, n - i);
        if (!l) return false;
        i += l;
    }
    return true;
}

/* Opens path and loads its vocabulary into *v; *f must stay open while *v is used (the vocab points into it). */
static int fuzz_load_vocab(const char *path, gguf_file **f, zl_vocab **v)
{
    zl_err err = {{0}};
    *f = NULL;
    *v = NULL;
    if (gguf_open(path, NULL, f, &err) != ZL_OK || zl_vocab_load(*f, v, &err) != ZL_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        gguf_close(*f);
        *f = NULL;
        return -1;
    }
    return 0;
}

/* Streams ids through a zl_detok; everything it emits must be valid UTF-8. */
static void fuzz_stream(const zl_vocab *v, size_t cap, const int32_t *ids, size_t n, bool special)
{
    char *buf = malloc(cap);
    FUZZ_CHECK(buf, "malloc");
    zl_detok d;
    zl_detok_init(&d, v, special);
    for (size_t i = 0; i < n; i++) {
        const int w = zl_detok_push(&d, ids[i], buf, cap);
        const bool in_range = ids[i] >= 0 && ids[i] < zl_vocab_n_tokens(v);
        if (!in_range) {
            FUZZ_CHECK(w == ZL_ERANGE, "zl_detok_push accepted an id out of range");
            continue;
        }
        FUZZ_CHECK(w >= 0 && (size_t)w <= cap, "zl_detok_push failed with room for any token");
        FUZZ_CHECK(fuzz_valid_utf8(buf, (size_t)w), "zl_detok_push emitted invalid UTF-8");
    }
    const int w = zl_detok_flush(&d, buf, cap);
    FUZZ_CHECK(w >= 0 && (size_t)w <= cap, "zl_detok_flush");
    FUZZ_CHECK(fuzz_valid_utf8(buf, (size_t)w), "zl_detok_flush emitted invalid UTF-8");
    free(buf);
}

/* Byte-level BPE: whether every byte of data has a token spelling its GPT-2 code point (bytes_to_unicode:
 * printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order). A byte without one
 * encodes to nothing (as in llama.cpp; SmolLM2 has no token for 0xF5..0xFF), so only such text round-trips. */
static bool fuzz_all_bytes_have_tokens(const zl_vocab *v, const uint8_t *data, size_t size)
{
    bool seen[256] = {false};
    for (size_t i = 0; i < size; i++)
        seen[data[i]] = true;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        const int cp = printable ? b : 256 + extra++;
        if (!seen[b])
            continue;
        char u[2];
        const size_t n = cp < 0x80 ? 1 : 2;
        if (n == 1)
            u[0] = (char)cp;
        else
            u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F));
        if (zl_vocab_find(v, u, n) < 0)
            return false;
    }
    return true;
}

static void fuzz_text(const zl_vocab *v, size_t cap, const uint8_t *data, size_t size, bool specials)
{
    int32_t *ids = NULL;
    size_t n = 0;
    zl_err err = {{0}};
    const int rc = zl_tokenize(v, (const char *)data, size, specials, specials, &ids, &n, &err);
    FUZZ_CHECK(rc == ZL_OK, "zl_tokenize refused text (any bytes are valid input)");
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < zl_vocab_n_tokens(v), "zl_tokenize produced an id out of range");
    char *text = NULL;
    FUZZ_CHECK(zl_detokenize(v, ids, n, specials, &text, &err) == ZL_OK, "zl_detokenize of zl_tokenize's ids");
    /* (zl_detokenize's result is NUL-terminated, so the round trip is checked on inputs without NUL bytes.) */
    if (!specials && zl_vocab_kind_of(v) == ZL_VOCAB_BPE && !memchr(data, 0, size) &&
        fuzz_all_bytes_have_tokens(v, data, size))
        FUZZ_CHECK(strlen(text) == size && memcmp(text, data, size) == 0,
                   "byte-level BPE: detokenize(tokenize(s)) != s");
    free(text);
    fuzz_stream(v, cap, ids, n, specials);
    free(ids);
}

static void fuzz_ids(const zl_vocab *v, size_t dcap, const uint8_t *data, size_t size)
{
    const size_t n = size / 4;
    if (n == 0)
        return;
    int32_t *ids = malloc(n * sizeof *ids);
    FUZZ_CHECK(ids, "malloc");
    memcpy(ids, data, n * sizeof *ids);
    bool all_in = true;
    for (size_t i = 0; i < n; i++) {
        const bool in = ids[i] >= 0 && ids[i] < zl_vocab_n_tokens(v);
        all_in = all_in && in;
        /* Exactly sized heap buffers: a write past cap is an ASan report. */
        const size_t cap = (size_t)(data[i % size] % 8);
        char *buf = malloc(cap ? cap : 1);
        FUZZ_CHECK(buf, "malloc");
        const int l = zl_token_to_piece(v, ids[i], (data[0] & 1) != 0, buf, cap);
        FUZZ_CHECK(in ? l >= 0 : l == ZL_ERANGE, "zl_token_to_piece: wrong result for the id's range");
        free(buf);
    }
    char *text = NULL;
    zl_err err = {{0}};
    const int rc = zl_detokenize(v, ids, n, (data[0] & 2) != 0, &text, &err);
    FUZZ_CHECK(all_in ? rc == ZL_OK : rc == ZL_ERANGE, "zl_detokenize: wrong result for the ids' range");
    free(text);
    fuzz_stream(v, dcap, ids, n, (data[0] & 4) != 0);
    free(ids);
}

/* cap: 3 * (zl_vocab_max_token_len(v) + 8), room for any one token (vocab.h), computed once by the caller. */
static void fuzz_tokenizer_input(const zl_vocab *v, size_t cap, const uint8_t *data, size_t size)
{
    fuzz_text(v, cap, data, size, false);
    fuzz_text(v, cap, data, size, true);
    fuzz_ids(v, cap, data, size);
    (void)zl_vocab_find(v, (const char *)data, size);
}

#ifndef ZL_FUZZ_REPLAY
#ifndef ZL_FUZZ_VOCAB
#define ZL_FUZZ_VOCAB "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif
static gguf_file *fuzz_file;
static zl_vocab *fuzz_vocab;
static size_t fuzz_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *p = getenv("ZILI_FUZZ_VOCAB");
    if (fuzz_load_vocab(p && *p ? p : ZL_FUZZ_VOCAB, &fuzz_file, &fuzz_vocab) != 0)
        abort();
    fuzz_cap = 3 * (zl_vocab_max_token_len(fuzz_vocab) + 8);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokenizer_input(fuzz_vocab, fuzz_cap, data, size);
    return 0;
}
#endif
