/*
 * vocab.h - the tokenizer: vocabulary from GGUF metadata, encoding text to token ids and decoding back.
 *
 * Supported tokenizer.ggml.model values: "gpt2" (byte-level BPE with merges; the pre-tokenizer regexes named by
 * tokenizer.ggml.pre), "llama" (SentencePiece-style BPE over scores, with byte fallback <0xXX> tokens) and
 * "bert" (WordPiece, wpm.c; [CLS] / [SEP] from tokenizer.ggml.cls_token_id / seperator_token_id are BOS / EOS).
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

typedef enum zl_vocab_kind { ZL_VOCAB_BPE = 1, ZL_VOCAB_SPM = 2, ZL_VOCAB_WPM = 3 } zl_vocab_kind;

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

/* What zl_vocab_load reads from the file, as plain arrays: the second way to build a vocab (unit tests, fuzzing,
 * other file formats). Everything is borrowed only for the call; the vocab copies what it keeps.
 * Special ids: ZL_VOCAB_ID_UNSET means "not in the file" (the model type's default applies: SentencePiece
 * bos 1, eos 2, unk 0; none for BPE), -1 means explicitly none. Flags: -1 unset (model/pre default), 0, 1. */
#define ZL_VOCAB_ID_UNSET (-2)
typedef struct zl_vocab_desc {
    const char *name;         /* for messages (file path) */
    const char *model;        /* tokenizer.ggml.model: "gpt2" or "llama" */
    const char *pre;          /* tokenizer.ggml.pre, NULL if absent */
    const char *general_name; /* general.name, NULL if absent (unused for now) */
    size_t n_tokens;
    const gguf_str *tokens;   /* n_tokens */
    const float *scores;      /* n_tokens or NULL */
    const int32_t *types;     /* n_tokens (zl_token_type values) or NULL = all normal */
    const gguf_str *merges;   /* n_merges "left right" strings (BPE) */
    size_t n_merges;
    int64_t bos, eos, unk, pad, eot, eom;
    int add_bos, add_eos, add_space_prefix;
} zl_vocab_desc;

/* Initialises d to "nothing set" (all ids ZL_VOCAB_ID_UNSET, flags -1, pointers NULL). */
void zl_vocab_desc_init(zl_vocab_desc *d);
/* Validates d and builds a vocab from it (same checks and defaults as zl_vocab_load). */
int zl_vocab_build(const zl_vocab_desc *d, zl_vocab **out, zl_err *err);

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
int32_t zl_vocab_unk(const zl_vocab *v);            /* -1 if none */
int32_t zl_vocab_eot(const zl_vocab *v);            /* end of turn ("<|im_end|>", ...), -1 if none */
bool zl_vocab_add_space_prefix(const zl_vocab *v);  /* SentencePiece: encoding prepends a space */
/* The token's type, or ZL_TOKEN_UNDEFINED when id is out of range. */
zl_token_type zl_vocab_token_type(const zl_vocab *v, int32_t id);
/* The token's stored text (byte-level BPE: in its mapped spelling), *len bytes, not NUL-terminated; NULL when id is
 * out of range. Borrowed from v. */
const char *zl_vocab_token_text(const zl_vocab *v, int32_t id, size_t *len);
/* Length in bytes of the longest token text. */
size_t zl_vocab_max_token_len(const zl_vocab *v);
/* Looks up the id of a token's exact text (e.g. "<|im_end|>"); -1 if absent. */
int32_t zl_vocab_find(const zl_vocab *v, const char *text, size_t len);

/* Encodes text[0..len) (any bytes; invalid UTF-8 is handled without reading out of bounds) into token ids.
 * add_special: prepend BOS / append EOS as the vocabulary says. parse_special: text of control/user-defined
 * tokens ("<|im_start|>") becomes those tokens; otherwise it is encoded as plain text.
 * On success *out is a malloc'd array of *n_out ids (caller frees; may be NULL when *n_out is 0). */
int zl_tokenize(const zl_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                int32_t **out, size_t *n_out, zl_err *err);

/* A byte range of a text. */
typedef struct zl_text_span {
    size_t off, len;
} zl_text_span;

/* zl_tokenize with parse_special true, except that special-token text overlapping any of the plain spans (sorted,
 * not overlapping: e.g. the message text inside a rendered chat prompt) is encoded as plain text there, as with
 * parse_special false. Where no span holds such text the ids are those of zl_tokenize(..., true, ...). */
int zl_tokenize_plain(const zl_vocab *v, const char *text, size_t len, bool add_special, const zl_text_span *plain,
                      size_t n_plain, int32_t **out, size_t *n_out, zl_err *err);

/* The bytes token id stands for when decoded (byte-level BPE unmapped, SentencePiece "▁" turned to space,
 * <0xXX> to its byte). Control tokens give their text only if `special` is true, else nothing.
 * Writes up to cap bytes into buf and returns the full length (so a return > cap means truncated),
 * or a negative ZL_ERANGE if id is out of range. */
int zl_token_to_piece(const zl_vocab *v, int32_t id, bool special, char *buf, size_t cap);

/* Streaming detokenizer: holds back incomplete UTF-8 sequences across token boundaries, so that what it emits
 * is always valid UTF-8 (bytes that can never complete a character are emitted as U+FFFD).
 * For SentencePiece vocabularies with add_space_prefix it drops the single leading space of the first piece that
 * follows a BOS token pushed into it (the space tokenization added), as llama.cpp does. A stream of generated
 * tokens (no BOS) is therefore emitted unchanged. The struct is the caller's; no allocation survives a call. */
typedef struct zl_detok {
    const zl_vocab *v;
    bool special;        /* render control tokens as text */
    bool strip_space;    /* drop one leading space from the next non-empty piece */
    unsigned char pend[8];
    size_t n_pend;
} zl_detok;

void zl_detok_init(zl_detok *d, const zl_vocab *v, bool special);
/* Appends the text of token id; writes complete characters to buf. Returns the number of bytes written (>= 0),
 * ZL_ERANGE if id is out of range or the output does not fit in cap (then nothing changes: retry with more room;
 * cap >= 3 * (zl_vocab_max_token_len(v) + 8) always fits), ZL_ENOMEM. */
int zl_detok_push(zl_detok *d, int32_t id, char *buf, size_t cap);
/* Flushes pending bytes at end of stream (as U+FFFD if incomplete). Returns bytes written. */
int zl_detok_flush(zl_detok *d, char *buf, size_t cap);

/* Whole-sequence detokenize into a malloc'd NUL-terminated string (caller frees): the exact bytes of the pieces
 * (not sanitised: byte tokens may form invalid UTF-8), so that detokenize(tokenize(s)) == s for byte-level BPE
 * when every byte of s has its token (a byte whose mapped code point is not in the vocabulary, e.g. 0xF5..0xFF
 * in SmolLM2's, encodes to nothing, as in llama.cpp).
 * SentencePiece with add_space_prefix: the leading space of the first non-empty piece (after a BOS) is dropped.
 * ZL_ERANGE if an id is out of range. */
int zl_detokenize(const zl_vocab *v, const int32_t *ids, size_t n, bool special, char **out, zl_err *err);
/* The same, with the text's length in *out_len (NULL: not wanted): a token may decode to a NUL byte (<0x00>), so
 * strlen would stop short. */
int zl_detokenize_n(const zl_vocab *v, const int32_t *ids, size_t n, bool special, char **out, size_t *out_len,
                    zl_err *err);

#endif
