/*
 * tok_internal.h - what the tokenizer's files share: the zl_vocab layout, UTF-8 helpers, the pre-tokenizer,
 * and the two segmentation algorithms (byte-level BPE in bpe.c, SentencePiece-style in spm.c).
 *
 * Invariants of a built zl_vocab (established by zl_vocab_build, never changed afterwards):
 *   - every token id in any field is -1 or in [0, n_tokens);
 *   - text[i] points into the owned blob and is len[i] bytes long (not NUL-terminated);
 *   - the text hash table holds every non-empty token text exactly once (duplicates are rejected at build);
 *   - merge entries name two existing tokens and the existing token of their concatenation;
 *   - compiled regexes are only read (pcre2_match with per-call match data), so sharing is safe.
 * Threads: a built vocab is immutable; all mutable state of an encode lives in the caller's stack or heap.
 */
#ifndef ZL_TOK_INTERNAL_H
#define ZL_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/vocab.h"

enum { ZL_PRE_MAX_REGEX = 6 };

/* Per-token flags (zl_vocab.flags). */
enum {
    ZL_TOKF_EOG = 1,     /* ends generation */
    ZL_TOKF_SPECIAL = 2, /* matched in raw text before segmentation (control, user-defined, unknown) */
    ZL_TOKF_LSTRIP = 4,  /* when cut out of raw text, the whitespace before it goes too */
    ZL_TOKF_RSTRIP = 8,  /* when cut out of raw text, the whitespace after it goes too */
};

typedef struct zl_merge {
    int32_t left, right; /* token ids of the pair; left == -1 marks an empty slot */
    int32_t rank;        /* position in tokenizer.ggml.merges: lower merges first */
    int32_t result;      /* token id of left's text followed by right's text */
} zl_merge;

struct zl_vocab {
    zl_vocab_kind kind;
    char model_name[16];
    char pre_name[64];
    int32_t n_tokens;

    char *blob;        /* all token texts, back to back */
    uint64_t *off;     /* n_tokens: start of text i in blob */
    uint32_t *len;     /* n_tokens */
    float *score;      /* n_tokens (0 when the file has none) */
    uint8_t *type;     /* n_tokens, zl_token_type */
    uint8_t *flags;    /* n_tokens, ZL_TOKF_* */

    int32_t *ht;       /* text -> id: open addressing, -1 empty; ht_mask + 1 slots */
    uint64_t ht_mask;

    zl_merge *merges;  /* (left, right) -> merge: open addressing; merge_mask + 1 slots (BPE only) */
    uint64_t merge_mask;

    int32_t *special;  /* ids matched in raw text, longest text first */
    int32_t n_special;

    /* BPE: byte b -> id of the token spelling b's mapped code point (-1 if none).
     * SPM: byte b -> id of the "<0xBB>" token (-1 if none). */
    int32_t byte_tok[256];
    /* BPE: mapped code point (< 324) -> byte, -1 if the code point is not a byte's image. */
    int16_t cp_byte[324];
    uint16_t byte_cp[256];

    pcre2_code *re[ZL_PRE_MAX_REGEX];
    int n_re;

    int32_t bos, eos, unk, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
};

static inline const char *zl_tok_text(const zl_vocab *v, int32_t id) { return v->blob + v->off[id]; }

/* ---- UTF-8 (utf8.c) ------------------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s[0..n) (1..4), or 0 if s does not start one (stray continuation
 * byte, overlong form, surrogate, > U+10FFFF, truncated). Never reads past s + n. n must be >= 1. */
size_t zl_utf8_valid_len(const unsigned char *s, size_t n);
/* Decodes the well-formed sequence of length l at s (as returned by zl_utf8_valid_len). */
uint32_t zl_utf8_decode(const unsigned char *s, size_t l);
/* Encodes cp (<= 0x10FFFF) into out (4 bytes room); returns the length. */
size_t zl_utf8_encode(uint32_t cp, char *out);
/* Bytes at the end of s[0..n) that form an incomplete but so far valid sequence prefix (0..3). */
size_t zl_utf8_incomplete_tail(const unsigned char *s, size_t n);

/* ---- growable id buffer ---------------------------------------------------------------------------------- */

typedef struct zl_ids {
    int32_t *v;
    size_t n, cap;
} zl_ids;

int zl_ids_push(zl_ids *b, int32_t id);

/* ---- lookup (vocab.c) ------------------------------------------------------------------------------------ */

int32_t zl_vocab_find_text(const zl_vocab *v, const char *text, size_t len);

/* ---- pre-tokenizer (pretok.c) ---------------------------------------------------------------------------- */

typedef struct zl_pretok_info {
    const char *name;
    const char *const *regex; /* NULL-terminated */
    bool ignore_merges;
    bool add_bos;
} zl_pretok_info;

/* Looks up a pre-tokenizer by tokenizer.ggml.pre name; NULL if unknown. */
const zl_pretok_info *zl_pretok_find(const char *name);
/* Compiles info's regexes into v->re. */
int zl_pretok_compile(zl_vocab *v, const zl_pretok_info *info, zl_err *err);

/* A piece of the input: bytes [off, off + len). valid == false: a single byte that is not well-formed UTF-8,
 * kept as its own piece and never shown to a regex. */
typedef struct zl_piece {
    size_t off, len;
    bool valid;
} zl_piece;

/* Splits text[0..len) into pieces with v's regex chain. *out: malloc'd (caller frees), *n_out entries. */
int zl_pretok_split(const zl_vocab *v, const char *text, size_t len, zl_piece **out, size_t *n_out, zl_err *err);

/* ---- segmentation ---------------------------------------------------------------------------------------- */

/* Byte-level BPE over one raw-text fragment (pre-tokenized inside). Appends ids to out. */
int zl_bpe_encode(const zl_vocab *v, const char *text, size_t len, zl_ids *out, zl_err *err);
/* SentencePiece-style encode of one raw-text fragment; prefix_space: prepend " " first. Appends ids to out. */
int zl_spm_encode(const zl_vocab *v, const char *text, size_t len, bool prefix_space, zl_ids *out, zl_err *err);

/* WordPiece encode of one raw-text fragment (normalised and split into words inside). Appends ids to out. */
int zl_wpm_encode(const zl_vocab *v, const char *text, size_t len, zl_ids *out, zl_err *err);

/* GPT-2 byte <-> code point map, filled into v at build. */
void zl_bpe_init_byte_map(zl_vocab *v);

#endif
