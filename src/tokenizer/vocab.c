/*
 * vocab.c - the vocabulary: building it from GGUF metadata (or plain arrays), lookups, and zl_tokenize's outer
 * loop (special-token partition, BOS/EOS), plus decoding (token pieces, streaming and whole-sequence).
 *
 * Load = read the tokenizer.ggml.* keys into a zl_vocab_desc (zl_vocab_load), then validate and build
 * (zl_vocab_build). After build the vocab is immutable (see tok_internal.h for its invariants) and may be used
 * from any number of threads.
 *
 * Behaviour follows llama.cpp's where it is observable:
 *   - special tokens (control, user-defined, unknown) are cut out of the raw text first, longest text first,
 *     every occurrence; with parse_special false only user-defined ones are (Hugging Face "added tokens"
 *     that are not special);
 *   - tokens whose text is one of the known end-of-turn markers become control tokens and end generation;
 *   - SentencePiece: a space is prepended to the first raw fragment and to any that follows a special token
 *     (when add_space_prefix); BOS is added by default, EOS not; byte-level BPE adds neither unless the file
 *     or the pre-tokenizer (Llama 3) says so.
 * Deviations (deliberate): invalid UTF-8 stays lossless (see pretok.c); a BPE token that spells a code point
 * outside the byte map decodes to that code point's UTF-8; ids absent from the file are none (-1) for BPE
 * instead of llama.cpp's placeholder 11; malformed input (bad ids, byte tokens, duplicate texts, merges naming
 * unknown tokens) is rejected instead of warned about.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

uint64_t zl_bpe_pair_hash(int32_t l, int32_t r);

/* Texts that end a turn (llama.cpp's list); such tokens are made control tokens. */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
};
/* Candidates for the end-of-turn id when the file names none, in order of preference. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "<｜end▁of▁sentence｜>", "<end_of_utterance>",
};
/* Fill-in-the-middle markers: the first present of each group becomes a control token; pad, repo and file
 * separator also end generation (llama.cpp's lists). NULL ends a group. */
static const char *const fim_texts[][8] = {
    {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", NULL},
    {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", NULL},
    {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", NULL},
    {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", NULL},
    {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL},
    {"<|file_sep|>", NULL},
};
enum { FIM_FIRST_EOG_GROUP = 3 };

int zl_ids_push(zl_ids *b, int32_t id)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        if (cap > SIZE_MAX / sizeof(int32_t))
            return ZL_ENOMEM;
        int32_t *nv = realloc(b->v, cap * sizeof *nv);
        if (!nv)
            return ZL_ENOMEM;
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = id;
    return ZL_OK;
}

static uint64_t text_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int32_t zl_vocab_find_text(const zl_vocab *v, const char *text, size_t len)
{
    for (uint64_t i = text_hash(text, len) & v->ht_mask;; i = (i + 1) & v->ht_mask) {
        int32_t id = v->ht[i];
        if (id < 0)
            return -1;
        if (v->len[id] == len && memcmp(zl_tok_text(v, id), text, len) == 0)
            return id;
    }
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

void zl_vocab_desc_init(zl_vocab_desc *d)
{
    memset(d, 0, sizeof *d);
    d->bos = d->eos = d->unk = d->pad = d->eot = d->eom = ZL_VOCAB_ID_UNSET;
    d->add_bos = d->add_eos = d->add_space_prefix = -1;
}

void zl_vocab_free(zl_vocab *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n_re; i++)
        pcre2_code_free(v->re[i]);
    free(v->blob);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->flags);
    free(v->ht);
    free(v->merges);
    free(v->special);
    free(v);
}

/* Resolves a special id from the description: unset -> dflt; checked against n. */
static int resolve_id(const zl_vocab_desc *d, const char *what, int64_t id, int32_t dflt, int32_t n, int32_t *out,
                      zl_err *err)
{
    if (id == ZL_VOCAB_ID_UNSET) {
        *out = dflt < n ? dflt : -1;
        return ZL_OK;
    }
    if (id < -1 || id >= n)
        return zl_err_set(err, ZL_EFORMAT, "%s: tokenizer %s id %lld is out of range (%d tokens)", d->name, what,
                          (long long)id, n);
    *out = (int32_t)id;
    return ZL_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte a "<0xHH>" text stands for, or -1 if the text is not exactly that form. */
static int byte_token_value(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int cmp_special_len(const void *a, const void *b, void *ctx)
{
    const zl_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->len[x] != v->len[y])
        return v->len[x] > v->len[y] ? -1 : 1;
    return x < y ? -1 : x > y; /* stable for equal lengths: lower id first */
}

static bool name_has_phi3(const char *name)
{
    char low[128];
    size_t n = strlen(name);
    if (n >= sizeof low)
        n = sizeof low - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    low[n] = 0;
    return strstr(low, "phi-3") || strstr(low, "phi3");
}

static bool ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static int build_tables(zl_vocab *v, const zl_vocab_desc *d, zl_err *err)
{
    int32_t n = v->n_tokens;
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        if (d->tokens[i].len > UINT32_MAX || (d->tokens[i].len && !d->tokens[i].ptr))
            return zl_err_set(err, ZL_EFORMAT, "%s: token %d has an invalid length", d->name, i);
        total += d->tokens[i].len; /* each <= 4 GiB and n < 2^31: no overflow in 64 bits */
    }
    if (total > SIZE_MAX - 1)
        return zl_err_set(err, ZL_ENOMEM, "%s: token texts too large", d->name);
    v->blob = malloc((size_t)total + 1);
    v->off = malloc((size_t)n * sizeof *v->off);
    v->len = malloc((size_t)n * sizeof *v->len);
    v->score = calloc((size_t)n, sizeof *v->score);
    v->type = malloc((size_t)n);
    v->flags = calloc((size_t)n, 1);
    v->ht_mask = pow2_at_least((uint64_t)n * 2) - 1;
    v->ht = malloc((size_t)(v->ht_mask + 1) * sizeof *v->ht);
    if (!v->blob || !v->off || !v->len || !v->score || !v->type || !v->flags || !v->ht)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %d tokens", d->name, n);
    memset(v->ht, 0xff, (size_t)(v->ht_mask + 1) * sizeof *v->ht);

    uint64_t o = 0;
    for (int32_t i = 0; i < n; i++) {
        if (d->tokens[i].len)
            memcpy(v->blob + o, d->tokens[i].ptr, (size_t)d->tokens[i].len);
        v->off[i] = o;
        v->len[i] = (uint32_t)d->tokens[i].len;
        o += d->tokens[i].len;
        if (d->scores) {
            v->score[i] = d->scores[i];
            if (v->score[i] != v->score[i])
                return zl_err_set(err, ZL_EFORMAT, "%s: token %d has a NaN score", d->name, i);
        }
        int32_t t = d->types ? d->types[i] : ZL_TOKEN_NORMAL;
        if (t < ZL_TOKEN_UNDEFINED || t > ZL_TOKEN_BYTE)
            return zl_err_set(err, ZL_EFORMAT, "%s: token %d has unknown type %d", d->name, i, (int)t);
        v->type[i] = (uint8_t)t;
        if (v->len[i] == 0)
            continue; /* an empty text can never be matched */
        const char *s = zl_tok_text(v, i);
        for (uint64_t h = text_hash(s, v->len[i]) & v->ht_mask;; h = (h + 1) & v->ht_mask) {
            int32_t j = v->ht[h];
            if (j < 0) {
                v->ht[h] = i;
                break;
            }
            if (v->len[j] == v->len[i] && memcmp(zl_tok_text(v, j), s, v->len[i]) == 0)
                return zl_err_set(err, ZL_EFORMAT, "%s: tokens %d and %d have the same text", d->name, j, i);
        }
    }
    v->blob[o] = 0;
    return ZL_OK;
}

static int build_merges(zl_vocab *v, const zl_vocab_desc *d, zl_err *err)
{
    if (d->n_merges > (size_t)INT32_MAX)
        return zl_err_set(err, ZL_EFORMAT, "%s: too many merges (%zu)", d->name, d->n_merges);
    v->merge_mask = pow2_at_least((uint64_t)d->n_merges * 2) - 1;
    v->merges = malloc((size_t)(v->merge_mask + 1) * sizeof *v->merges);
    if (!v->merges)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %zu merges", d->name, d->n_merges);
    for (uint64_t i = 0; i <= v->merge_mask; i++)
        v->merges[i].left = -1;
    char small[512];
    for (size_t r = 0; r < d->n_merges; r++) {
        gguf_str m = d->merges[r];
        /* "left right": split at the first space after the first byte (a part never starts with a space) */
        const char *sp = m.len > 1 && m.ptr ? memchr(m.ptr + 1, ' ', (size_t)m.len - 1) : NULL;
        if (!sp)
            return zl_err_set(err, ZL_EFORMAT, "%s: merge %zu is not two space-separated tokens", d->name, r);
        size_t ll = (size_t)(sp - m.ptr), rl = (size_t)m.len - ll - 1;
        int32_t l = zl_vocab_find_text(v, m.ptr, ll), rt = zl_vocab_find_text(v, sp + 1, rl);
        if (l < 0 || rt < 0)
            return zl_err_set(err, ZL_EFORMAT, "%s: merge %zu names a token that is not in the vocabulary", d->name,
                              r);
        char *cat = ll + rl <= sizeof small ? small : malloc(ll + rl);
        if (!cat)
            return zl_err_set(err, ZL_ENOMEM, "%s: out of memory", d->name);
        memcpy(cat, m.ptr, ll);
        memcpy(cat + ll, sp + 1, rl);
        int32_t res = zl_vocab_find_text(v, cat, ll + rl);
        if (cat != small)
            free(cat);
        if (res < 0)
            return zl_err_set(err, ZL_EFORMAT, "%s: merge %zu makes a token that is not in the vocabulary", d->name,
                              r);
        for (uint64_t h = zl_bpe_pair_hash(l, rt) & v->merge_mask;; h = (h + 1) & v->merge_mask) {
            zl_merge *e = &v->merges[h];
            if (e->left < 0) {
                *e = (zl_merge){l, rt, (int32_t)r, res};
                break;
            }
            if (e->left == l && e->right == rt)
                break; /* a repeated pair keeps its first (lowest) rank */
        }
    }
    return ZL_OK;
}

int zl_vocab_build(const zl_vocab_desc *d, zl_vocab **out, zl_err *err)
{
    *out = NULL;
    const char *name = d->name ? d->name : "vocab";
    zl_vocab_desc dd = *d;
    dd.name = name;
    d = &dd;
    if (!d->model)
        return zl_err_set(err, ZL_EFORMAT, "%s: no tokenizer.ggml.model", name);
    const char *pre = d->pre ? d->pre : "default";
    zl_vocab_kind kind;
    if (strcmp(d->model, "gpt2") == 0)
        kind = ZL_VOCAB_BPE;
    else if (strcmp(d->model, "llama") == 0)
        kind = ZL_VOCAB_SPM;
    else if (strcmp(d->model, "bert") == 0)
        kind = ZL_VOCAB_WPM;
    else
        return zl_err_set(err, ZL_EUNSUPPORTED,
                          "%s: tokenizer model '%s' (pre-tokenizer '%s') is not supported (supported: gpt2, llama, "
                          "bert)",
                          name, d->model, pre);
    const zl_pretok_info *pi = NULL;
    if (kind == ZL_VOCAB_BPE) {
        pi = zl_pretok_find(pre);
        if (!pi)
            return zl_err_set(err, ZL_EUNSUPPORTED, "%s: pre-tokenizer '%s' of tokenizer model '%s' is not supported",
                              name, pre, d->model);
        if (!d->merges && d->n_merges)
            return zl_err_set(err, ZL_EINVAL, "%s: merges missing", name);
    } else if (kind == ZL_VOCAB_SPM && !d->scores) {
        return zl_err_set(err, ZL_EFORMAT, "%s: SentencePiece vocabulary without tokenizer.ggml.scores", name);
    }
    if (d->n_tokens == 0 || d->n_tokens >= (size_t)INT32_MAX || !d->tokens)
        return zl_err_set(err, ZL_EFORMAT, "%s: bad token count %zu", name, d->n_tokens);

    zl_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory", name);
    v->kind = kind;
    v->n_tokens = (int32_t)d->n_tokens;
    snprintf(v->model_name, sizeof v->model_name, "%s", d->model);
    snprintf(v->pre_name, sizeof v->pre_name, "%s", kind == ZL_VOCAB_BPE ? pre : "default");
    int rc = build_tables(v, d, err);
    if (rc)
        goto fail;
    int32_t n = v->n_tokens;

    bool spm = kind == ZL_VOCAB_SPM;
    if ((rc = resolve_id(d, "bos", d->bos, spm ? 1 : -1, n, &v->bos, err)) ||
        (rc = resolve_id(d, "eos", d->eos, spm ? 2 : -1, n, &v->eos, err)) ||
        (rc = resolve_id(d, "unknown", d->unk, spm ? 0 : -1, n, &v->unk, err)) ||
        (rc = resolve_id(d, "padding", d->pad, -1, n, &v->pad, err)) ||
        (rc = resolve_id(d, "eot", d->eot, -1, n, &v->eot, err)) ||
        (rc = resolve_id(d, "eom", d->eom, -1, n, &v->eom, err)))
        goto fail;
    bool wpm = kind == ZL_VOCAB_WPM; /* [CLS] text [SEP] */
    v->add_bos = d->add_bos >= 0 ? d->add_bos != 0 : (spm || wpm) ? true : pi->add_bos;
    v->add_eos = d->add_eos >= 0 ? d->add_eos != 0 : wpm;
    v->add_space_prefix = spm && (d->add_space_prefix >= 0 ? d->add_space_prefix != 0 : true);
    v->ignore_merges = pi && pi->ignore_merges;

    /* Byte tokens. */
    for (int b = 0; b < 256; b++)
        v->byte_tok[b] = -1;
    if (spm) {
        for (int32_t i = 0; i < n; i++) {
            int b = byte_token_value(zl_tok_text(v, i), v->len[i]);
            if (v->type[i] == ZL_TOKEN_BYTE && b < 0) {
                rc = zl_err_set(err, ZL_EFORMAT, "%s: token %d ('%.*s') is a byte token but its text is not <0xHH>",
                                name, i, (int)(v->len[i] < 32 ? v->len[i] : 32), zl_tok_text(v, i));
                goto fail;
            }
        }
        for (int b = 0; b < 256; b++) {
            char t[7];
            snprintf(t, sizeof t, "<0x%02X>", b);
            v->byte_tok[b] = zl_vocab_find_text(v, t, 6);
        }
    } else if (kind == ZL_VOCAB_BPE) {
        zl_bpe_init_byte_map(v);
        for (int b = 0; b < 256; b++) {
            char t[4];
            size_t l = zl_utf8_encode(v->byte_cp[b], t);
            v->byte_tok[b] = zl_vocab_find_text(v, t, l);
        }
        if ((rc = build_merges(v, d, err)))
            goto fail;
        if ((rc = zl_pretok_compile(v, pi, err)))
            goto fail;
    }

    /* End of generation. */
    if (v->eot < 0 && d->eot == ZL_VOCAB_ID_UNSET)
        for (size_t k = 0; k < sizeof eot_texts / sizeof eot_texts[0] && v->eot < 0; k++)
            v->eot = zl_vocab_find_text(v, eot_texts[k], strlen(eot_texts[k]));
    if (v->eom < 0 && d->eom == ZL_VOCAB_ID_UNSET)
        v->eom = zl_vocab_find_text(v, "<|eom_id|>", 10);
    if (v->eot >= 0 && d->eot == ZL_VOCAB_ID_UNSET)
        v->type[v->eot] = ZL_TOKEN_CONTROL;
    for (size_t g = 0; g < sizeof fim_texts / sizeof fim_texts[0]; g++)
        for (size_t k = 0; fim_texts[g][k]; k++) {
            int32_t id = zl_vocab_find_text(v, fim_texts[g][k], strlen(fim_texts[g][k]));
            if (id >= 0) {
                v->type[id] = ZL_TOKEN_CONTROL;
                if (g >= FIM_FIRST_EOG_GROUP)
                    v->flags[id] |= ZL_TOKF_EOG;
                break;
            }
        }
    for (size_t k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
        int32_t id = zl_vocab_find_text(v, eog_texts[k], strlen(eog_texts[k]));
        if (id >= 0) {
            v->flags[id] |= ZL_TOKF_EOG;
            v->type[id] = ZL_TOKEN_CONTROL;
        }
    }
    int32_t ends[3] = {v->eos, v->eot, v->eom};
    for (int k = 0; k < 3; k++)
        if (ends[k] >= 0)
            v->flags[ends[k]] |= ZL_TOKF_EOG;
    /* llama.cpp's exceptions: with <|return|> and <|call|> (gpt-oss), or <|calls|> and <|flush|>, <|end|> does
     * not end generation and is plain user-defined text; with <|tool_response> (Gemma 4), </s> is normal text. */
    int32_t t_end = zl_vocab_find_text(v, "<|end|>", 7), t_s = zl_vocab_find_text(v, "</s>", 4);
    bool has_ret = zl_vocab_find_text(v, "<|return|>", 10) >= 0, has_call = zl_vocab_find_text(v, "<|call|>", 8) >= 0;
    bool has_calls = zl_vocab_find_text(v, "<|calls|>", 9) >= 0, has_flush = zl_vocab_find_text(v, "<|flush|>", 9) >= 0;
    bool any_call = has_call || has_calls;
    if (t_end >= 0 && any_call && (has_ret || has_flush)) {
        v->flags[t_end] &= (uint8_t)~ZL_TOKF_EOG;
        v->type[t_end] = ZL_TOKEN_USER_DEFINED;
    }
    if (t_s >= 0 && zl_vocab_find_text(v, "<|tool_response>", 16) >= 0) {
        v->flags[t_s] &= (uint8_t)~ZL_TOKF_EOG;
        v->type[t_s] = ZL_TOKEN_NORMAL;
    }

    /* Tokens cut out of raw text before segmentation, longest first. */
    for (int32_t i = 0; i < n; i++)
        if ((v->type[i] == ZL_TOKEN_CONTROL || v->type[i] == ZL_TOKEN_USER_DEFINED ||
             v->type[i] == ZL_TOKEN_UNKNOWN) && v->len[i] > 0)
            v->n_special++;
    v->special = malloc(((size_t)v->n_special + 1) * sizeof *v->special);
    if (!v->special) {
        rc = zl_err_set(err, ZL_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    v->n_special = 0;
    for (int32_t i = 0; i < n; i++)
        if ((v->type[i] == ZL_TOKEN_CONTROL || v->type[i] == ZL_TOKEN_USER_DEFINED ||
             v->type[i] == ZL_TOKEN_UNKNOWN) && v->len[i] > 0) {
            v->special[v->n_special++] = i;
            v->flags[i] |= ZL_TOKF_SPECIAL;
        }
    qsort_r(v->special, (size_t)v->n_special, sizeof *v->special, cmp_special_len, v);

    /* Phi-3 (recognised by general.name, as llama.cpp does): its added tokens swallow the whitespace after them,
     * except <unk>, <s>, <|endoftext|>; </s> does too. */
    if (d->general_name && name_has_phi3(d->general_name)) {
        for (int32_t s = 0; s < v->n_special; s++)
            v->flags[v->special[s]] |= ZL_TOKF_RSTRIP;
        int32_t id = zl_vocab_find_text(v, "</s>", 4);
        if (id >= 0)
            v->flags[id] |= ZL_TOKF_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < 3; k++)
            if ((id = zl_vocab_find_text(v, keep[k], strlen(keep[k]))) >= 0)
                v->flags[id] &= (uint8_t)~ZL_TOKF_RSTRIP;
    }
    *out = v;
    return ZL_OK;
fail:
    zl_vocab_free(v);
    return rc;
}

/* ---- GGUF ------------------------------------------------------------------------------------------------ */

static int get_id_key(const gguf_file *f, const char *key, int64_t *out, zl_err *err)
{
    *out = ZL_VOCAB_ID_UNSET;
    if (!gguf_find(f, key))
        return ZL_OK;
    int64_t x;
    zl_err e = {{0}};
    if (!gguf_get_i64(f, key, &x, &e))
        return e.msg[0] ? zl_err_set(err, ZL_EFORMAT, "%s", e.msg) /* names the file and key */
                        : zl_err_set(err, ZL_EFORMAT, "%s: %s: not an integer", gguf_path(f), key);
    *out = x < 0 ? -1 : x; /* some files say -1 for "none" */
    return ZL_OK;
}

static int get_flag_key(const gguf_file *f, const char *key, int *out, zl_err *err)
{
    *out = -1;
    if (!gguf_find(f, key))
        return ZL_OK;
    bool b;
    zl_err e = {{0}};
    if (!gguf_get_bool(f, key, &b, &e))
        return e.msg[0] ? zl_err_set(err, ZL_EFORMAT, "%s", e.msg)
                        : zl_err_set(err, ZL_EFORMAT, "%s: %s: not a bool", gguf_path(f), key);
    *out = b;
    return ZL_OK;
}

static int get_str_key(const gguf_file *f, const char *key, char *buf, size_t cap, bool required, zl_err *err)
{
    buf[0] = 0;
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) {
        if (required)
            return zl_err_set(err, ZL_EFORMAT, "%s: no %s", gguf_path(f), key);
        return 1;
    }
    if (kv->type != GGUF_T_STRING)
        return zl_err_set(err, ZL_EFORMAT, "%s: %s is not a string", gguf_path(f), key);
    if (kv->v.str.len >= cap || memchr(kv->v.str.ptr, 0, (size_t)kv->v.str.len))
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: %s is too long or contains NUL", gguf_path(f), key);
    memcpy(buf, kv->v.str.ptr, (size_t)kv->v.str.len);
    buf[kv->v.str.len] = 0;
    return ZL_OK;
}

static int get_str_array(const gguf_file *f, const char *key, const gguf_kv **kvp, gguf_str **out, zl_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    *out = NULL;
    *kvp = kv;
    if (!kv)
        return ZL_OK;
    if (kv->type != GGUF_T_ARRAY || kv->arr_type != GGUF_T_STRING)
        return zl_err_set(err, ZL_EFORMAT, "%s: %s is not an array of strings", gguf_path(f), key);
    if (kv->arr_n > SIZE_MAX / sizeof(gguf_str))
        return zl_err_set(err, ZL_EFORMAT, "%s: %s is too long", gguf_path(f), key);
    gguf_str *a = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *a);
    if (!a)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for %s", gguf_path(f), key);
    for (uint64_t i = 0; i < kv->arr_n; i++)
        a[i] = gguf_arr_str(kv, i);
    *out = a;
    return ZL_OK;
}

int zl_vocab_load(const gguf_file *f, zl_vocab **out, zl_err *err)
{
    *out = NULL;
    const char *path = gguf_path(f);
    char model[32], pre[64], gname[128];
    int rc, has_pre, has_name;
    if ((rc = get_str_key(f, "tokenizer.ggml.model", model, sizeof model, true, err)) != ZL_OK)
        return rc;
    if ((has_pre = get_str_key(f, "tokenizer.ggml.pre", pre, sizeof pre, false, err)) < 0)
        return has_pre;
    if ((has_name = get_str_key(f, "general.name", gname, sizeof gname, false, err)) < 0)
        has_name = 1; /* a long or odd name does not matter */

    zl_vocab_desc d;
    zl_vocab_desc_init(&d);
    d.name = path;
    d.model = model;
    d.pre = has_pre == ZL_OK ? pre : NULL;
    d.general_name = has_name == ZL_OK ? gname : NULL;

    gguf_str *tokens = NULL, *merges = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    const gguf_kv *tk, *mk;
    if ((rc = get_str_array(f, "tokenizer.ggml.tokens", &tk, &tokens, err)))
        goto done;
    if (!tk) {
        rc = zl_err_set(err, ZL_EFORMAT, "%s: no tokenizer.ggml.tokens", path);
        goto done;
    }
    if (tk->arr_n == 0 || tk->arr_n >= INT32_MAX) {
        rc = zl_err_set(err, ZL_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path,
                        (unsigned long long)tk->arr_n);
        goto done;
    }
    d.n_tokens = (size_t)tk->arr_n;
    d.tokens = tokens;

    const gguf_kv *sk = gguf_find(f, "tokenizer.ggml.scores");
    if (sk) {
        if (sk->type != GGUF_T_ARRAY || sk->arr_type != GGUF_T_FLOAT32 || sk->arr_n != tk->arr_n) {
            rc = zl_err_set(err, ZL_EFORMAT, "%s: tokenizer.ggml.scores is not %zu float32 values", path, d.n_tokens);
            goto done;
        }
        scores = malloc(d.n_tokens * sizeof *scores);
        if (!scores) {
            rc = zl_err_set(err, ZL_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(scores, sk->arr_data, d.n_tokens * sizeof *scores); /* the file may not align them */
        d.scores = scores;
    }
    const gguf_kv *ty = gguf_find(f, "tokenizer.ggml.token_type");
    if (ty) {
        if (ty->type != GGUF_T_ARRAY || (ty->arr_type != GGUF_T_INT32 && ty->arr_type != GGUF_T_UINT32) ||
            ty->arr_n != tk->arr_n) {
            rc = zl_err_set(err, ZL_EFORMAT, "%s: tokenizer.ggml.token_type is not %zu int32 values", path,
                            d.n_tokens);
            goto done;
        }
        types = malloc(d.n_tokens * sizeof *types);
        if (!types) {
            rc = zl_err_set(err, ZL_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(types, ty->arr_data, d.n_tokens * sizeof *types);
        d.types = types;
    }
    if ((rc = get_str_array(f, "tokenizer.ggml.merges", &mk, &merges, err)))
        goto done;
    if (strcmp(model, "gpt2") == 0 && !mk) {
        rc = zl_err_set(err, ZL_EFORMAT, "%s: byte-level BPE vocabulary without tokenizer.ggml.merges", path);
        goto done;
    }
    d.merges = merges;
    d.n_merges = mk ? (size_t)mk->arr_n : 0;

    if ((rc = get_id_key(f, "tokenizer.ggml.bos_token_id", &d.bos, err)) ||
        (rc = get_id_key(f, "tokenizer.ggml.eos_token_id", &d.eos, err)) ||
        (rc = get_id_key(f, "tokenizer.ggml.unknown_token_id", &d.unk, err)) ||
        (rc = get_id_key(f, "tokenizer.ggml.padding_token_id", &d.pad, err)) ||
        (rc = get_id_key(f, "tokenizer.ggml.eot_token_id", &d.eot, err)) ||
        (rc = get_id_key(f, "tokenizer.ggml.eom_token_id", &d.eom, err)) ||
        (rc = get_flag_key(f, "tokenizer.ggml.add_bos_token", &d.add_bos, err)) ||
        (rc = get_flag_key(f, "tokenizer.ggml.add_eos_token", &d.add_eos, err)) ||
        (rc = get_flag_key(f, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix, err)))
        goto done;
    if (strcmp(model, "bert") == 0) { /* WordPiece: [CLS] text [SEP], the file's cls and sep ids when given */
        int64_t cls, sep;
        if ((rc = get_id_key(f, "tokenizer.ggml.cls_token_id", &cls, err)) ||
            (rc = get_id_key(f, "tokenizer.ggml.seperator_token_id", &sep, err)))
            goto done;
        if (cls != ZL_VOCAB_ID_UNSET)
            d.bos = cls;
        if (sep != ZL_VOCAB_ID_UNSET)
            d.eos = sep;
    }
    rc = zl_vocab_build(&d, out, err);
done:
    free(tokens);
    free(merges);
    free(scores);
    free(types);
    return rc;
}

/* ---- accessors ------------------------------------------------------------------------------------------- */

zl_vocab_kind zl_vocab_kind_of(const zl_vocab *v) { return v->kind; }
int32_t zl_vocab_n_tokens(const zl_vocab *v) { return v->n_tokens; }
const char *zl_vocab_model_name(const zl_vocab *v) { return v->model_name; }
const char *zl_vocab_pre_name(const zl_vocab *v) { return v->pre_name; }
int32_t zl_vocab_bos(const zl_vocab *v) { return v->bos; }
int32_t zl_vocab_eos(const zl_vocab *v) { return v->eos; }
int32_t zl_vocab_unk(const zl_vocab *v) { return v->unk; }
int32_t zl_vocab_eot(const zl_vocab *v) { return v->eot; }
bool zl_vocab_add_bos(const zl_vocab *v) { return v->add_bos && v->bos >= 0; }
bool zl_vocab_add_eos(const zl_vocab *v) { return v->add_eos && v->eos >= 0; }
bool zl_vocab_add_space_prefix(const zl_vocab *v) { return v->add_space_prefix; }

bool zl_vocab_is_eog(const zl_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n_tokens && (v->flags[id] & ZL_TOKF_EOG);
}

int32_t zl_vocab_find(const zl_vocab *v, const char *text, size_t len) { return zl_vocab_find_text(v, text, len); }

zl_token_type zl_vocab_token_type(const zl_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n_tokens ? (zl_token_type)v->type[id] : ZL_TOKEN_UNDEFINED;
}

const char *zl_vocab_token_text(const zl_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || id >= v->n_tokens)
        return NULL;
    *len = v->len[id];
    return zl_tok_text(v, id);
}

size_t zl_vocab_max_token_len(const zl_vocab *v)
{
    size_t m = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->len[i] > m)
            m = v->len[i];
    return m;
}

/* ---- encode ---------------------------------------------------------------------------------------------- */

/* A fragment of the input: raw text [off, off + len) when id < 0, else the special token id. */
typedef struct frag {
    size_t off, len;
    int32_t id;
} frag;

typedef struct frag_buf {
    frag *v;
    size_t n, cap;
} frag_buf;

static int frag_push(frag_buf *b, frag f)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        frag *nv = realloc(b->v, cap * sizeof *nv);
        if (!nv)
            return ZL_ENOMEM;
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = f;
    return ZL_OK;
}

/* The spans in which special-token text stays plain text (zl_tokenize_plain). */
typedef struct plain_set {
    const zl_text_span *v;
    size_t n;
} plain_set;

/* True if [at, at + n) overlaps one of the spans (sorted: binary search for the last one starting before the end). */
static bool in_plain(const plain_set *ps, size_t at, size_t n)
{
    size_t lo = 0, hi = ps->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (ps->v[mid].off < at + n)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && ps->v[lo - 1].len && ps->v[lo - 1].off + ps->v[lo - 1].len > at;
}

/* Cuts every occurrence of special token id out of the raw fragments of a into b (except, for a control or unknown
 * token, occurrences overlapping a plain span). */
static int cut_special(const zl_vocab *v, const char *text, int32_t id, const frag_buf *a, frag_buf *b,
                       const plain_set *ps)
{
    const bool may_skip = ps && ps->n && v->type[id] != ZL_TOKEN_USER_DEFINED;
    const char *t = zl_tok_text(v, id);
    size_t tl = v->len[id];
    b->n = 0;
    for (size_t k = 0; k < a->n; k++) {
        frag f = a->v[k];
        if (f.id >= 0 || f.len < tl) {
            if (frag_push(b, f))
                return ZL_ENOMEM;
            continue;
        }
        size_t pos = f.off, end = f.off + f.len, from = pos;
        while (end - from >= tl) {
            const char *m = memmem(text + from, end - from, t, tl);
            if (!m)
                break;
            size_t at = (size_t)(m - text), left_end = at;
            if (may_skip && in_plain(ps, at, tl)) {
                from = at + 1;
                continue;
            }
            if (v->flags[id] & ZL_TOKF_LSTRIP)
                while (left_end > pos && ascii_space(text[left_end - 1]))
                    left_end--;
            if (left_end > pos && frag_push(b, (frag){pos, left_end - pos, -1}))
                return ZL_ENOMEM;
            if (frag_push(b, (frag){at, tl, id}))
                return ZL_ENOMEM;
            pos = at + tl;
            if (v->flags[id] & ZL_TOKF_RSTRIP)
                while (pos < end && ascii_space(text[pos]))
                    pos++;
            from = pos;
        }
        if (pos < end && frag_push(b, (frag){pos, end - pos, -1}))
            return ZL_ENOMEM;
    }
    return ZL_OK;
}

static int partition(const zl_vocab *v, const char *text, size_t len, bool parse_special, const plain_set *ps,
                     frag_buf *out)
{
    frag_buf b = {0};
    out->n = 0;
    if (len == 0)
        return ZL_OK;
    if (frag_push(out, (frag){0, len, -1}))
        return ZL_ENOMEM;
    bool present[256] = {false}; /* first bytes present in the text: skips most tokens without a search */
    for (size_t i = 0; i < len; i++)
        present[(unsigned char)text[i]] = true;
    for (int32_t s = 0; s < v->n_special; s++) {
        int32_t id = v->special[s];
        if (!parse_special && v->type[id] != ZL_TOKEN_USER_DEFINED)
            continue;
        if (!present[(unsigned char)zl_tok_text(v, id)[0]] || v->len[id] > len)
            continue;
        bool any = false;
        for (size_t k = 0; k < out->n && !any; k++)
            any = out->v[k].id < 0 && out->v[k].len >= v->len[id] &&
                  memmem(text + out->v[k].off, out->v[k].len, zl_tok_text(v, id), v->len[id]);
        if (!any)
            continue;
        if (cut_special(v, text, id, out, &b, ps)) {
            free(b.v);
            return ZL_ENOMEM;
        }
        frag_buf t = *out;
        *out = b;
        b = t;
    }
    free(b.v);
    return ZL_OK;
}

static int tokenize(const zl_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                    const plain_set *ps, int32_t **out, size_t *n_out, zl_err *err);

int zl_tokenize(const zl_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                int32_t **out, size_t *n_out, zl_err *err)
{
    return tokenize(v, text, len, add_special, parse_special, NULL, out, n_out, err);
}

int zl_tokenize_plain(const zl_vocab *v, const char *text, size_t len, bool add_special, const zl_text_span *plain,
                      size_t n_plain, int32_t **out, size_t *n_out, zl_err *err)
{
    const plain_set ps = {plain, plain ? n_plain : 0};
    for (size_t i = 0; i < ps.n; i++)
        if (plain[i].off > len || plain[i].len > len - plain[i].off || (i && plain[i].off < plain[i - 1].off +
                                                                                  plain[i - 1].len)) {
            *out = NULL;
            *n_out = 0;
            return zl_err_set(err, ZL_EINVAL, "tokenize: plain span %zu is out of order or past the text", i);
        }
    return tokenize(v, text, len, add_special, true, &ps, out, n_out, err);
}

static int tokenize(const zl_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                    const plain_set *ps, int32_t **out, size_t *n_out, zl_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!text && len)
        return zl_err_set(err, ZL_EINVAL, "tokenize: NULL text");
    zl_ids ids = {0};
    frag_buf fr = {0};
    int rc = ZL_OK;
    if (partition(v, text, len, parse_special, ps, &fr)) {
        rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory");
        goto done;
    }
    if (add_special && v->add_bos && v->bos >= 0 && zl_ids_push(&ids, v->bos))
        goto oom;
    bool prev_special = true; /* SentencePiece: the first fragment and those after a special token get a space */
    for (size_t k = 0; k < fr.n; k++) {
        frag f = fr.v[k];
        if (f.id >= 0) {
            if (zl_ids_push(&ids, f.id))
                goto oom;
            prev_special = true;
            continue;
        }
        if (v->kind == ZL_VOCAB_SPM)
            rc = zl_spm_encode(v, text + f.off, f.len, v->add_space_prefix && prev_special, &ids, err);
        else if (v->kind == ZL_VOCAB_WPM)
            rc = zl_wpm_encode(v, text + f.off, f.len, &ids, err);
        else
            rc = zl_bpe_encode(v, text + f.off, f.len, &ids, err);
        if (rc)
            goto done;
        prev_special = false;
    }
    if (add_special && v->add_eos && v->eos >= 0 && zl_ids_push(&ids, v->eos))
        goto oom;
    *out = ids.v;
    *n_out = ids.n;
    ids.v = NULL;
    goto done;
oom:
    rc = zl_err_set(err, ZL_ENOMEM, "tokenize: out of memory");
done:
    free(fr.v);
    free(ids.v);
    return rc;
}

/* ---- decode ---------------------------------------------------------------------------------------------- */

typedef struct writer {
    char *buf;
    size_t cap, n; /* n counts every byte, written or not */
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->n < w->cap) {
        size_t k = w->cap - w->n < n ? w->cap - w->n : n;
        memcpy(w->buf + w->n, s, k);
    }
    w->n += n;
}

int zl_token_to_piece(const zl_vocab *v, int32_t id, bool special, char *buf, size_t cap)
{
    if (id < 0 || id >= v->n_tokens)
        return ZL_ERANGE;
    writer w = {buf, buf ? cap : 0, 0};
    const char *t = zl_tok_text(v, id);
    size_t n = v->len[id];
    switch ((zl_token_type)v->type[id]) {
    case ZL_TOKEN_CONTROL:
    case ZL_TOKEN_UNKNOWN:
        if (special)
            put(&w, t, n);
        break;
    case ZL_TOKEN_USER_DEFINED:
        put(&w, t, n);
        break;
    case ZL_TOKEN_BYTE:
        if (v->kind == ZL_VOCAB_SPM) {
            char c = (char)byte_token_value(t, n); /* validated at build */
            put(&w, &c, 1);
        }
        break;
    case ZL_TOKEN_NORMAL:
        for (size_t i = 0; i < n;) {
            const unsigned char *u = (const unsigned char *)t + i;
            size_t l = zl_utf8_valid_len(u, n - i);
            if (l == 0) { /* not UTF-8: copy the byte */
                put(&w, t + i, 1);
                i++;
                continue;
            }
            uint32_t cp = zl_utf8_decode(u, l);
            if (v->kind != ZL_VOCAB_BPE && cp == 0x2581) {
                put(&w, " ", 1);
            } else if (v->kind == ZL_VOCAB_BPE && cp < 324 && v->cp_byte[cp] >= 0) {
                char c = (char)v->cp_byte[cp];
                put(&w, &c, 1);
            } else {
                put(&w, t + i, l);
            }
            i += l;
        }
        break;
    default: /* undefined, unused: nothing */
        break;
    }
    if (w.n > (size_t)INT32_MAX)
        return ZL_ERANGE;
    return (int)w.n;
}

void zl_detok_init(zl_detok *d, const zl_vocab *v, bool special)
{
    memset(d, 0, sizeof *d);
    d->v = v;
    d->special = special;
}

/* Writes s[0..n) to w as valid UTF-8; an incomplete but valid tail is kept in d->pend when keep_tail. */
static void emit_valid(zl_detok *d, writer *w, const unsigned char *s, size_t n, bool keep_tail)
{
    static const char fffd[3] = {'\xEF', '\xBF', '\xBD'};
    size_t i = 0;
    while (i < n) {
        size_t l = zl_utf8_valid_len(s + i, n - i);
        if (l) {
            put(w, (const char *)s + i, l);
            i += l;
            continue;
        }
        size_t tail = zl_utf8_incomplete_tail(s + i, n - i);
        if (tail == n - i) { /* the rest may still become a character */
            if (keep_tail) {
                memcpy(d->pend, s + i, tail);
                d->n_pend = tail;
            } else {
                put(w, fffd, 3);
            }
            return;
        }
        put(w, fffd, 3);
        i++;
    }
}

int zl_detok_push(zl_detok *d, int32_t id, char *buf, size_t cap)
{
    const zl_vocab *v = d->v;
    char small[256];
    int pl = zl_token_to_piece(v, id, d->special, small, sizeof small);
    if (pl < 0)
        return pl;
    char *piece = small;
    if ((size_t)pl > sizeof small) {
        piece = malloc((size_t)pl);
        if (!piece)
            return ZL_ENOMEM;
        zl_token_to_piece(v, id, d->special, piece, (size_t)pl);
    }
    size_t skip = 0;
    if (d->strip_space && pl > 0) {
        skip = piece[0] == ' ';
        d->strip_space = false;
    }
    if (id == v->bos && v->kind == ZL_VOCAB_SPM && v->add_space_prefix)
        d->strip_space = true;
    /* pending bytes + piece, emitted as far as they form characters */
    size_t n = d->n_pend + (size_t)pl - skip;
    unsigned char *all = malloc(n ? n : 1);
    if (!all) {
        if (piece != small)
            free(piece);
        return ZL_ENOMEM;
    }
    memcpy(all, d->pend, d->n_pend);
    memcpy(all + d->n_pend, piece + skip, (size_t)pl - skip);
    if (piece != small)
        free(piece);
    /* dry run: does it fit? */
    zl_detok save = *d;
    writer w = {NULL, 0, 0};
    d->n_pend = 0;
    emit_valid(d, &w, all, n, true);
    if (w.n > cap || w.n > (size_t)INT32_MAX) {
        *d = save;
        free(all);
        return ZL_ERANGE;
    }
    w = (writer){buf, cap, 0};
    d->n_pend = 0;
    emit_valid(d, &w, all, n, true);
    free(all);
    return (int)w.n;
}

int zl_detok_flush(zl_detok *d, char *buf, size_t cap)
{
    if (d->n_pend == 0)
        return 0;
    if (cap < 3)
        return ZL_ERANGE;
    memcpy(buf, "\xEF\xBF\xBD", 3);
    d->n_pend = 0;
    return 3;
}

int zl_detokenize(const zl_vocab *v, const int32_t *ids, size_t n, bool special, char **out, zl_err *err)
{
    return zl_detokenize_n(v, ids, n, special, out, NULL, err);
}

int zl_detokenize_n(const zl_vocab *v, const int32_t *ids, size_t n, bool special, char **out, size_t *out_len,
                    zl_err *err)
{
    *out = NULL;
    if (out_len)
        *out_len = 0;
    size_t total = 1;
    bool strip = v->kind == ZL_VOCAB_SPM && v->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        int pl = zl_token_to_piece(v, ids[i], special, NULL, 0);
        if (pl < 0)
            return zl_err_set(err, ZL_ERANGE, "detokenize: token %zu: id %d is out of range (%d tokens)", i,
                              (int)ids[i], v->n_tokens);
        total += (size_t)pl;
    }
    char *s = malloc(total);
    if (!s)
        return zl_err_set(err, ZL_ENOMEM, "detokenize: out of memory for %zu bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int pl = zl_token_to_piece(v, ids[i], special, s + o, total - o);
        if (strip && pl > 0 && ids[i] != v->bos) {
            if (s[o] == ' ') {
                memmove(s + o, s + o + 1, (size_t)pl - 1);
                pl--;
            }
            strip = false;
        }
        o += (size_t)pl;
    }
    s[o] = 0;
    *out = s;
    if (out_len)
        *out_len = o;
    return ZL_OK;
}
