/*
 * wpm.c - WordPiece (tokenizer.ggml.model "bert": BERT, BGE, MiniLM), as the Hugging Face BERT tokenizer runs it.
 *
 * 1. Normalise (BertNormalizer with clean_text, handle_chinese_chars, strip_accents, lowercase): drop NUL,
 *    U+FFFD and "other" characters (categories C* except \t \n \r), turn whitespace into word breaks, decompose
 *    (NFD) and drop non-spacing marks (Mn), lowercase.
 * 2. Split into words at whitespace; each punctuation character (Unicode P*, or ASCII non-alphanumeric printable)
 *    and each CJK ideograph is a word of its own (BertPreTokenizer).
 * 3. Each word is cut greedily into the longest tokens from its start. In the GGUF vocabulary (llama.cpp's
 *    conversion) a word-initial piece is stored as "▁piece" and a continuation ("##piece") as "piece", so the
 *    word is matched as "▁" + word. A word longer than 100 characters, or one with a position where no token
 *    matches, is the unknown token.
 *
 * Unicode properties come from utf8proc. Invalid UTF-8 bytes are dropped (as control characters would be).
 * Threads: all state is per call.
 */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

enum { WPM_MAX_WORD_CHARS = 100 };

typedef struct word_buf {
    char *s;     /* "▁" + the word's UTF-8 bytes */
    size_t n, cap;
    size_t n_chars;
    size_t *cut; /* byte offset of each character start in s (after the "▁"), n_chars + 1 entries */
    size_t cut_cap;
} word_buf;

static int wb_reserve(word_buf *w, size_t more)
{
    if (w->n + more + 1 > w->cap) {
        size_t cap = (w->n + more + 1) * 2;
        char *ns = realloc(w->s, cap);
        if (!ns)
            return ZL_ENOMEM;
        w->s = ns;
        w->cap = cap;
    }
    if (w->n_chars + 2 > w->cut_cap) {
        size_t cap = (w->n_chars + 2) * 2;
        size_t *nc = realloc(w->cut, cap * sizeof *nc);
        if (!nc)
            return ZL_ENOMEM;
        w->cut = nc;
        w->cut_cap = cap;
    }
    return ZL_OK;
}

static void wb_start(word_buf *w)
{
    memcpy(w->s, "\xE2\x96\x81", 3);
    w->n = 3;
    w->n_chars = 0;
    w->cut[0] = 3;
}

static int wb_add(word_buf *w, uint32_t cp)
{
    if (wb_reserve(w, 4))
        return ZL_ENOMEM;
    w->n += zl_utf8_encode(cp, w->s + w->n);
    w->cut[++w->n_chars] = w->n;
    return ZL_OK;
}

/* CJK ideographs (the ranges BERT pads with spaces). */
static bool is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_space(uint32_t c, utf8proc_category_t cat)
{
    return c == '\t' || c == '\n' || c == '\r' || c == ' ' || cat == UTF8PROC_CATEGORY_ZS ||
           (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0x2028 || c == 0x2029;
}

static bool is_other(utf8proc_category_t cat)
{
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CN ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

static bool is_punct(uint32_t c, utf8proc_category_t cat)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return true;
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

/* Appends the tokens of the word in w (w->n_chars >= 1) to out. */
static int encode_word(const zl_vocab *v, const word_buf *w, zl_ids *out)
{
    const size_t start = out->n;
    if (w->n_chars <= WPM_MAX_WORD_CHARS) {
        size_t i = 0; /* character index where the next piece starts */
        bool ok = true;
        while (i < w->n_chars) {
            size_t from = i == 0 ? 0 : w->cut[i]; /* the first piece includes the "▁" */
            size_t j = w->n_chars;
            int32_t id = -1;
            for (; j > i; j--) {
                if (w->cut[j] - from > zl_vocab_max_token_len(v))
                    continue;
                id = zl_vocab_find_text(v, w->s + from, w->cut[j] - from);
                if (id >= 0)
                    break;
            }
            if (id < 0) {
                ok = false;
                break;
            }
            if (zl_ids_push(out, id))
                return ZL_ENOMEM;
            i = j;
        }
        if (ok)
            return ZL_OK;
    }
    out->n = start;
    if (v->unk >= 0 && zl_ids_push(out, v->unk))
        return ZL_ENOMEM;
    return ZL_OK;
}

int zl_wpm_encode(const zl_vocab *v, const char *text, size_t len, zl_ids *out, zl_err *err)
{
    word_buf w = {0};
    int rc = ZL_OK;
    if (wb_reserve(&w, 8))
        goto oom;
    wb_start(&w);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t l = zl_utf8_valid_len(s + i, len - i);
        if (l == 0) { /* not UTF-8: dropped */
            i++;
            continue;
        }
        uint32_t c = zl_utf8_decode(s + i, l);
        i += l;
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
        bool brk = is_space(c, cat);
        if (!brk && (c == 0 || c == 0xFFFD || is_other(cat)))
            continue;
        if (brk) {
            if (w.n_chars && (rc = encode_word(v, &w, out)))
                goto done;
            wb_start(&w);
            continue;
        }
        /* NFD, marks dropped, lowercased: up to a few code points per input character */
        utf8proc_int32_t dec[32];
        int lb = 0;
        utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)c, dec, 32, UTF8PROC_DECOMPOSE, &lb);
        if (nd < 0 || nd > 32) {
            dec[0] = (utf8proc_int32_t)c;
            nd = 1;
        }
        for (utf8proc_ssize_t k = 0; k < nd; k++) {
            uint32_t d = (uint32_t)dec[k];
            utf8proc_category_t dc = utf8proc_category(dec[k]);
            if (dc == UTF8PROC_CATEGORY_MN)
                continue;
            d = (uint32_t)utf8proc_tolower((utf8proc_int32_t)d);
            if (is_punct(d, dc) || is_cjk(d)) {
                if (w.n_chars && (rc = encode_word(v, &w, out)))
                    goto done;
                wb_start(&w);
                if (wb_add(&w, d))
                    goto oom;
                if ((rc = encode_word(v, &w, out)))
                    goto done;
                wb_start(&w);
            } else if (wb_add(&w, d)) {
                goto oom;
            }
        }
    }
    if (w.n_chars)
        rc = encode_word(v, &w, out);
    goto done;
oom:
    rc = ZL_ENOMEM;
done:
    free(w.s);
    free(w.cut);
    if (rc == ZL_ENOMEM)
        return zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory");
    return rc;
}
