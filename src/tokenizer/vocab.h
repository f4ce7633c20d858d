/*
 * vocab.h - the tokenizer: vocabulary from GGUF metadata, encoding text to token ids and decoding back.
 *
 * Supported tokenizer.ggml.model values: "gpt2" (byte-level BPE with merges; the pre-tokenizer regexes named by
 * tokenizer.ggml.pre) and "llama" (SentencePiece-style BPE over scores, with byte fallback <0xXX> tokens).
 * Anything else is ZL_EUNSUPPORTED with a message naming the model and pre-tokenizer.
 *
 * A zl_vocab is immutable after load and may be shared by any number of threads.
 */
#ifndef ZL_VOCAB_H
#define ZL_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "format/gguf.h"

typedef struct zl_vocab zl_vocab;

typedef enum zl_vocab_kind { ZL_VOCAB_BPE = 1, ZL_VOCAB_SPM = 2 } zl_vocab_kind;

/* Token attribute, as tokenizer.ggml.token_type stores it. */
typedef enum zl_token_type {
    ZL_TOKEN_UNDEFINED = 0,
    ZL_TOKEN_NORMAL = 1,
    ZL_TOKEN_UNKNOWN = 2,
    ZL_TOKEN_CONTROL = 3,
    ZL_TOKEN_USER_DEFINED = 4,
    ZL_TOKEN_UNUSED = 5,
    ZL_TOKEN_BYTE = 6,
} zl_token_type;

/* Loads the vocabulary from f (which must stay open while the vocab is used: strings may point into it).
 * Validates: token count, types, scores/merges array lengths, special ids < n_tokens, byte tokens well-formed. */
int zl_vocab_load(const gguf_file *f, zl_vocab **out, zl_err *err);
void zl_vocab_free(zl_vocab *v);

zl_vocab_kind zl_vocab_kind_of(const zl_vocab *v);
int32_t zl_vocab_n_tokens(const zl_vocab *v);
const char *zl_vocab_model_name(const zl_vocab *v); /* "gpt2", "llama" */
const char *zl_vocab_pre_name(const zl_vocab *v);   /* tokenizer.ggml.pre or "default" */
int32_t zl_vocab_bos(const zl_vocab *v);            /* -1 if none */
int32_t zl_vocab_eos(const zl_vocab *v);            /* -1 if none */
bool zl_vocab_add_bos(const zl_vocab *v);           /* whether encoding with add_special prepends BOS */
bool zl_vocab_add_eos(const zl_vocab *v);
/* End of generation: EOS, EOT, or any other token the metadata marks as ending a turn. */
bool zl_vocab_is_eog(const zl_vocab *v, int32_t id);
/* Looks up the id of a token's exact text (e.g. "<|im_end|>"); -1 if absent. */
int32_t zl_vocab_find(const zl_vocab *v, const char *text, size_t len);

/* Encodes text[0..len) (any bytes; invalid UTF-8 is handled without reading out of bounds) into token ids.
 * add_special: prepend BOS / append EOS as the vocabulary says. parse_special: text of control/user-defined
 * tokens ("<|im_start|>") becomes those tokens; otherwise it is encoded as plain text.
 * On success *out is a malloc'd array of *n_out ids (caller frees; may be NULL when *n_out is 0). */
int zl_tokenize(const zl_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                int32_t **out, size_t *n_out, zl_err *err);

/* The bytes token id stands for when decoded (byte-level BPE unmapped, SentencePiece "▁" turned to space,
 * <0xXX> to its byte). Control tokens give their text only if `special` is true, else nothing.
 * Writes up to cap bytes into buf and returns the full length (so a return > cap means truncated),
 * or a negative ZL_ERANGE if id is out of range. */
int zl_token_to_piece(const zl_vocab *v, int32_t id, bool special, char *buf, size_t cap);

/* Streaming detokenizer: holds back incomplete UTF-8 sequences across token boundaries, so that what it emits
 * is always valid UTF-8 (bytes that can never complete a character are emitted as U+FFFD).
 * For SentencePiece vocabularies it drops the single leading space of the first piece after BOS, as llama.cpp
 * does when it detokenizes a generation. */
typedef struct zl_detok {
    const zl_vocab *v;
    bool special;        /* render control tokens as text */
    bool at_start;       /* no text emitted yet */
    unsigned char pend[8];
    size_t n_pend;
} zl_detok;

void zl_detok_init(zl_detok *d, const zl_vocab *v, bool special);
/* Appends the text of token id; writes complete characters to buf (cap >= 64 is always enough for one token's
 * piece plus pending bytes... if not, returns ZL_ERANGE). Returns number of bytes written (>= 0) or < 0. */
int zl_detok_push(zl_detok *d, int32_t id, char *buf, size_t cap);
/* Flushes pending bytes at end of stream (as U+FFFD if incomplete). Returns bytes written. */
int zl_detok_flush(zl_detok *d, char *buf, size_t cap);

/* Whole-sequence detokenize into a malloc'd NUL-terminated string (caller frees). */
int zl_detokenize(const zl_vocab *v, const int32_t *ids, size_t n, bool special, char **out, zl_err *err);

#endif
