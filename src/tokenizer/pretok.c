/*
 * pretok.c - pre-tokenizers: splitting raw text into words before byte-level BPE, by tokenizer.ggml.pre.
 *
 * A pre-tokenizer is a chain of regexes (the patterns are those of each model's Hugging Face tokenizer.json, as
 * llama.cpp names them by tokenizer.ggml.pre). Each regex in turn splits every current piece: its matches become
 * pieces and so do the unmatched stretches between them. A piece is matched on its own, so anchors and
 * look-arounds never see past its ends.
 *
 * Invalid UTF-8: text is first cut into maximal well-formed runs; every byte outside them becomes its own piece
 * that no regex sees (byte-level BPE then encodes it as that single byte, so encoding stays lossless).
 * llama.cpp instead substitutes U+FFFD for such bytes, so ids differ from it on invalid input only.
 *
 * The regexes are compiled once per vocabulary (PCRE2, UTF + UCP, JIT when available); matching allocates its
 * own match data per call, so a vocabulary can be shared by threads.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* The GPT-2 pattern (also the second stage of several others). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Llama 3 and Qwen 2 patterns; the case-insensitive contractions spelled out as classes. */
#define RE_CONTRACTIONS_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                                                  \
    RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"    \
                       "\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                                   \
    RE_CONTRACTIONS_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"        \
                       "\\s+(?!\\S)|\\s+"
/* Patterns without \p{..} classes run in llama.cpp on text where every non-ASCII whitespace character has become
 * U+000B, so such a character never matches an explicit range there (U+3000 is inside both DeepSeek ranges
 * below). NOT_NA_WS, put before a range, gives the same result. */
#define NOT_NA_WS "(?!(?=[^\\x{00}-\\x{7F}])\\s)"
/* CJK ranges used by the DeepSeek patterns: U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF. */
#define RE_DEEPSEEK_CJK "(?:" NOT_NA_WS "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}])+"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const re_gpt2[] = {RE_GPT2, NULL};
static const char *const re_digits_gpt2[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const re_llama3[] = {RE_LLAMA3, NULL};
static const char *const re_qwen2[] = {RE_QWEN2, NULL};
static const char *const re_deepseek_coder[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}",
                                                NULL};
/* The letter class is the one in DeepSeek LLM's tokenizer.json (cased letters: Latin, Greek, Cyrillic, ...),
 * written as code points because several of its characters change under Unicode normalisation. */
static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    "\\s?["
    "\\x{0041}-\\x{005A}\\x{0061}-\\x{007A}\\x{00B5}\\x{00C0}-\\x{00D6}\\x{00D8}-\\x{00F6}"
    "\\x{00F8}-\\x{01BA}\\x{01BC}-\\x{01BF}\\x{01C4}-\\x{0293}\\x{0295}-\\x{02AF}\\x{0370}-\\x{0373}"
    "\\x{0376}\\x{0377}\\x{037B}-\\x{037D}\\x{037F}\\x{0386}\\x{0388}-\\x{038A}\\x{038C}"
    "\\x{038E}-\\x{03A1}\\x{03A3}-\\x{03F5}\\x{03F7}-\\x{0481}\\x{048A}-\\x{052F}\\x{0531}-\\x{0556}"
    "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
    "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
    "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
    "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
    "\\x{1E900}-\\x{1E943}"
    "]+",
    "\\s?(?:" NOT_NA_WS "[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}])+",
    "\\s+$",
    RE_DEEPSEEK_CJK,
    "\\p{N}+",
    NULL,
};

/* add_bos: the default of tokenizer.ggml.add_bos_token when the file does not say (llama.cpp's defaults). */
static const zl_pretok_info pretoks[] = {
    {"default", re_default, false, false},
    {"gpt-2", re_gpt2, false, false},
    {"phi-2", re_gpt2, false, false},
    {"mpt", re_gpt2, false, false},
    {"olmo", re_gpt2, false, false},
    {"jais", re_gpt2, false, false},
    {"starcoder", re_digits_gpt2, false, false},
    {"refact", re_digits_gpt2, false, false},
    {"command-r", re_digits_gpt2, false, false},
    {"smollm", re_digits_gpt2, false, false},
    {"codeshell", re_digits_gpt2, false, false},
    {"exaone", re_digits_gpt2, false, false},
    {"falcon", re_falcon, false, false},
    {"llama3", re_llama3, true, true},
    {"llama-v3", re_llama3, true, true},
    {"llama-bpe", re_llama3, true, true},
    {"falcon3", re_llama3, true, true},
    {"dbrx", re_llama3, false, false},
    {"smaug-bpe", re_llama3, false, false},
    {"qwen2", re_qwen2, false, false},
    {"deepseek-r1-qwen", re_qwen2, false, false},
    {"stablelm2", re_qwen2, false, false},
    {"megrez", re_qwen2, false, false},
    {"deepseek-coder", re_deepseek_coder, false, false},
    {"deepseek-llm", re_deepseek_llm, false, false},
};

const zl_pretok_info *zl_pretok_find(const char *name)
{
    for (size_t i = 0; i < sizeof pretoks / sizeof pretoks[0]; i++)
        if (strcmp(pretoks[i].name, name) == 0)
            return &pretoks[i];
    return NULL;
}

int zl_pretok_compile(zl_vocab *v, const zl_pretok_info *info, zl_err *err)
{
    v->n_re = 0;
    for (int i = 0; info->regex[i]; i++) {
        if (i >= ZL_PRE_MAX_REGEX)
            return zl_err_set(err, ZL_EINVAL, "pre-tokenizer '%s': too many regexes", info->name);
        int ec = 0;
        PCRE2_SIZE eo = 0;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)info->regex[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return zl_err_set(err, ZL_EINVAL, "pre-tokenizer '%s': regex %d does not compile at %zu: %s", info->name,
                              i, (size_t)eo, (const char *)msg);
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
        v->re[v->n_re++] = re;
    }
    return ZL_OK;
}

typedef struct piece_buf {
    zl_piece *v;
    size_t n, cap;
} piece_buf;

static int piece_push(piece_buf *b, size_t off, size_t len, bool valid)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        zl_piece *nv = realloc(b->v, cap * sizeof *nv);
        if (!nv)
            return ZL_ENOMEM;
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = (zl_piece){off, len, valid};
    return ZL_OK;
}

/* Runs one match; falls back from JIT to the interpreter when the JIT stack is too small. */
static int match_at(const pcre2_code *re, const char *s, size_t len, size_t start, pcre2_match_data *md)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    return rc;
}

/* Splits the well-formed piece text[p.off, p.off + p.len) with re into out. */
static int split_piece(const pcre2_code *re, const char *text, zl_piece p, pcre2_match_data *md, piece_buf *out,
                       zl_err *err)
{
    const char *s = text + p.off;
    size_t pos = 0, last = 0; /* pos: where to search; last: end of the previous match */
    while (pos < p.len) {
        int rc = match_at(re, s, p.len, pos, md);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return zl_err_set(err, ZL_EINVAL, "pre-tokenizer: regex match failed at byte %zu: %s", p.off + pos,
                              (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match (no pattern here has one): step over one character */
            pos = ms + 1;
            while (pos < p.len && ((unsigned char)s[pos] & 0xC0) == 0x80)
                pos++;
            continue;
        }
        if (ms > last && piece_push(out, p.off + last, ms - last, true))
            return zl_err_set(err, ZL_ENOMEM, "pre-tokenizer: out of memory");
        if (piece_push(out, p.off + ms, me - ms, true))
            return zl_err_set(err, ZL_ENOMEM, "pre-tokenizer: out of memory");
        last = pos = me;
    }
    if (last < p.len && piece_push(out, p.off + last, p.len - last, true))
        return zl_err_set(err, ZL_ENOMEM, "pre-tokenizer: out of memory");
    return ZL_OK;
}

int zl_pretok_split(const zl_vocab *v, const char *text, size_t len, zl_piece **out, size_t *n_out, zl_err *err)
{
    piece_buf a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    int rc = ZL_OK;
    *out = NULL;
    *n_out = 0;

    /* Well-formed runs and single invalid bytes. */
    const unsigned char *u = (const unsigned char *)text;
    size_t i = 0, run = 0;
    while (i < len) {
        size_t l = zl_utf8_valid_len(u + i, len - i);
        if (l) {
            i += l;
            continue;
        }
        if (i > run && (rc = piece_push(&a, run, i - run, true)))
            goto oom;
        if ((rc = piece_push(&a, i, 1, false)))
            goto oom;
        run = ++i;
    }
    if (len > run && (rc = piece_push(&a, run, len - run, true)))
        goto oom;

    if (v->n_re > 0) {
        md = pcre2_match_data_create(4, NULL);
        if (!md) {
            rc = ZL_ENOMEM;
            goto oom;
        }
    }
    for (int r = 0; r < v->n_re; r++) {
        b.n = 0;
        for (size_t k = 0; k < a.n; k++) {
            if (!a.v[k].valid) {
                if ((rc = piece_push(&b, a.v[k].off, a.v[k].len, false)))
                    goto oom;
                continue;
            }
            if ((rc = split_piece(v->re[r], text, a.v[k], md, &b, err)))
                goto done;
        }
        piece_buf t = a;
        a = b;
        b = t;
    }
    *out = a.v;
    *n_out = a.n;
    a.v = NULL;
    goto done;
oom:
    rc = zl_err_set(err, ZL_ENOMEM, "pre-tokenizer: out of memory");
done:
    pcre2_match_data_free(md);
    free(a.v);
    free(b.v);
    return rc;
}
