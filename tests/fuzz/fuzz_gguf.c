/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader: arbitrary bytes -> gguf_open_memory(), then every kv
 * value, array element, string and tensor byte is read, so a bounds bug surfaces as a sanitizer report.
 *
 * `make fuzz` builds it with clang (-fsanitize=fuzzer,address,undefined) and runs it on the seeds written by
 * tests/fuzz/make_corpus.py; tests/unit/test_fuzz_regress.c includes this file with ZL_FUZZ_REPLAY defined to
 * replay the saved inputs of tests/fuzz/regress/gguf/.
 * The input is copied into an exactly-sized buffer by libFuzzer already, so any over-read is caught.
 * A file that parses is also handed to zl_vocab_load (odd vocabularies: byte tokens, special ids, merges), and a
 * vocabulary that loads encodes a fixed text and decodes every one of its tokens.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "format/gguf.h"
#include "tokenizer/vocab.h"

static uint64_t touch(const void *p, uint64_t n, uint64_t acc)
{
    const volatile uint8_t *b = p;
    for (uint64_t i = 0; i < n; i++) acc = acc * 31 + b[i];
    return acc;
}

/* Loads f's vocabulary, if it has one, and runs it both ways. */
static uint64_t fuzz_gguf_vocab(const gguf_file *f)
{
    zl_vocab *v = NULL;
    zl_err err;
    if (zl_vocab_load(f, &v, &err) != ZL_OK) return 0;
    static const char text[] = "Hello <s> world \xff\xfe <|im_end|> \xe2\x96\x81x <0x41>  \n\t123";
    int32_t *ids = NULL;
    size_t n = 0;
    uint64_t acc = 0;
    for (int special = 0; special < 2; special++) {
        if (zl_tokenize(v, text, sizeof text - 1, special, special, &ids, &n, &err) == ZL_OK) {
            char *out = NULL;
            if (zl_detokenize(v, ids, n, special, &out, &err) == ZL_OK) acc += out[0];
            free(out);
            free(ids);
        }
    }
    char piece[16];
    zl_detok d;
    zl_detok_init(&d, v, true);
    const size_t cap = 3 * (zl_vocab_max_token_len(v) + 8);
    char *buf = malloc(cap);
    for (int32_t id = -1; buf && id <= zl_vocab_n_tokens(v); id++) {
        acc += (uint64_t)zl_token_to_piece(v, id, id & 1, piece, sizeof piece);
        acc += (uint64_t)zl_detok_push(&d, id, buf, cap);
    }
    free(buf);
    zl_vocab_free(v);
    return acc;
}

static int fuzz_gguf_input(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    zl_err err;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f, &err) != ZL_OK) return 0;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        acc = touch(kv->key.ptr, kv->key.len, acc);
        if (gguf_find(f, "general.alignment")) acc++;
        if (kv->type == GGUF_T_STRING) acc = touch(kv->v.str.ptr, kv->v.str.len, acc);
        if (kv->type != GGUF_T_ARRAY) continue;
        for (uint64_t k = 0; k < kv->arr_n; k++) {
            if (kv->arr_type == GGUF_T_STRING) {
                const gguf_str s = gguf_arr_str(kv, k);
                acc = touch(s.ptr, s.len, acc);
            } else {
                int64_t v;
                float x;
                if (gguf_arr_i64(kv, k, &v)) acc += (uint64_t)v;
                if (gguf_arr_f32(kv, k, &x)) acc += x == x;
            }
        }
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        acc = touch(t->name.ptr, t->name.len, acc);
        acc = touch(t->data, t->size, acc);
        if (gguf_find_tensor(f, "token_embd.weight")) acc++;
    }
    acc += fuzz_gguf_vocab(f);
    uint32_t u32;
    float f32;
    gguf_str s;
    (void)gguf_get_u32(f, "general.alignment", &u32, &err);
    (void)gguf_get_f32(f, "general.alignment", &f32, &err);
    (void)gguf_get_str(f, "general.architecture", &s, &err);
    gguf_close(f);
    return acc == 42 ? 0 : 0; /* acc keeps the reads alive */
}

#ifndef ZL_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_gguf_input(data, size); }
#endif
