/*
 * embed.c - embeddings: a batch of whole inputs through the model's last hidden states, pooled per input (mean,
 * first token, last token: hp.pooling from the file) and L2-normalised (zl_model_embed, model.h).
 *
 * Encoders (bert.c) see the whole batch at once, each input attending to itself only. Decoders (llama, qwen2,
 * qwen3: Qwen3-Embedding is qwen3 with last-token pooling) run the causal forward pass in chunks of the scratch's
 * size with the output head swapped for the final norm's rows (zl_fwd.hidden), and their KV sequences freed
 * after. Every token computes in the mode of its own input's length (ops.h ZL_MODE_*), so an input's vector is
 * the same whatever it is batched with.
 *
 * Threads: as zl_model_forward.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/arch.h"

/* Per input: first token, length; checks the batch's layout. */
static int layout(const zl_model *m, const zl_batch *b, int32_t n_seq, int32_t *start, int32_t *len, zl_err *err)
{
    for (int32_t s = 0; s < n_seq; s++)
        len[s] = 0;
    for (int32_t i = 0; i < b->n; i++) {
        const int32_t s = b->seq[i];
        if (s < 0 || s >= n_seq)
            return zl_err_set(err, ZL_ERANGE, "embed: token %d: input %d out of range (0 .. %d)", i, s, n_seq - 1);
        if (b->token[i] < 0 || b->token[i] >= m->hp.n_vocab)
            return zl_err_set(err, ZL_ERANGE, "embed: token %d: id %d out of range (vocabulary %d)", i, b->token[i],
                              m->hp.n_vocab);
        if (b->pos[i] != len[s] || (len[s] > 0 && b->seq[i - 1] != s))
            return zl_err_set(err, ZL_EINVAL, "embed: token %d: input %d's tokens must be consecutive, positions "
                              "0, 1, ... (got position %d)", i, s, b->pos[i]);
        if (len[s] == 0)
            start[s] = i;
        len[s]++;
    }
    for (int32_t s = 0; s < n_seq; s++)
        if (len[s] == 0)
            return zl_err_set(err, ZL_EINVAL, "embed: input %d has no tokens", s);
    return ZL_OK;
}

/* Which rows the pooling reads of input s: first .. first + count - 1 of its tokens. */
static void pool_rows(zl_pooling p, int32_t len, int32_t *first, int32_t *count)
{
    *first = p == ZL_POOL_LAST ? len - 1 : 0;
    *count = p == ZL_POOL_MEAN ? len : 1;
}

static void pool_normalize(const float *rows, int32_t n_rows, int64_t d, bool normalize, float *out)
{
    memset(out, 0, (size_t)d * sizeof *out);
    for (int32_t r = 0; r < n_rows; r++)
        zl_add(out, rows + (size_t)r * (size_t)d, d);
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++) {
        out[i] /= (float)n_rows;
        ss += (double)out[i] * out[i];
    }
    if (!normalize)
        return;
    const float inv = ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int64_t i = 0; i < d; i++)
        out[i] *= inv;
}

int zl_model_embed(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *fwd, const zl_batch *b, int32_t n_seq,
                   zl_pooling pooling, bool normalize, float *out, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const int64_t d = h->n_embd;
    if (!b || b->n <= 0 || !b->token || !b->pos || !b->seq || n_seq <= 0 || n_seq > b->n || !out)
        return zl_err_set(err, ZL_EINVAL, "embed: empty batch or no output");
    if (!h->encoder && h->arch != ZL_ARCH_LLAMA && h->arch != ZL_ARCH_QWEN2 && h->arch != ZL_ARCH_QWEN3)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: embeddings of architecture %s are not supported (bert, llama, "
                          "qwen2, qwen3)", gguf_path(m->gguf), h->arch_name);
    if (pooling == 0)
        pooling = h->pooling;
    if (pooling != ZL_POOL_MEAN && pooling != ZL_POOL_CLS && pooling != ZL_POOL_LAST)
        return zl_err_set(err, ZL_EINVAL, "embed: pooling %d is not mean (1), cls (2) or last (3)", (int)pooling);
    if (fwd->dfwd)
        return zl_err_set(err, ZL_EUNSUPPORTED, "embed: not on a device (--device), CPU only");
    int32_t *start = malloc((size_t)n_seq * sizeof *start), *len = malloc((size_t)n_seq * sizeof *len);
    int8_t *modes = malloc((size_t)b->n), *want = malloc((size_t)b->n);
    float *rows = NULL;
    int rc = ZL_OK;
    if (!start || !len || !modes || !want) {
        rc = zl_err_set(err, ZL_ENOMEM, "embed: out of memory");
        goto done;
    }
    if ((rc = layout(m, b, n_seq, start, len, err)) != ZL_OK)
        goto done;
    int32_t n_rows = 0; /* hidden rows the pooling reads */
    for (int32_t i = 0; i < b->n; i++) {
        const int32_t s = b->seq[i], l = len[s], k = b->pos[i];
        int8_t g = l >= 8 ? ZL_MODE_MULTI8 : l >= 2 ? ZL_MODE_MULTI : ZL_MODE_ONE;
        if (g != ZL_MODE_ONE && k >= l - l % 4)
            g |= ZL_MODE_TAIL4;
        modes[i] = g;
        int32_t first, count;
        pool_rows(pooling, l, &first, &count);
        want[i] = k >= first && k < first + count;
        n_rows += want[i];
    }

    if (h->encoder) {
        for (int32_t s = 0; s < n_seq; s++)
            if (len[s] > h->n_ctx_train) {
                rc = zl_err_set(err, ZL_ERANGE, "embed: input %d has %d tokens, more than the model's context (%d)",
                                s, len[s], h->n_ctx_train);
                goto done;
            }
        if (b->n > fwd->max_tokens) {
            rc = zl_err_set(err, ZL_ERANGE, "embed: batch of %d tokens is larger than the scratch (%d)", b->n,
                            fwd->max_tokens);
            goto done;
        }
        memcpy(fwd->tok_gemm, modes, (size_t)b->n);
        if ((rc = zl_bert_encode(m, cpu, fwd, b, err)) != ZL_OK)
            goto done;
        for (int32_t s = 0; s < n_seq; s++) {
            int32_t first, count;
            pool_rows(pooling, len[s], &first, &count);
            pool_normalize(fwd->x + (size_t)(start[s] + first) * (size_t)d, count, d, normalize, out + (size_t)s * (size_t)d);
        }
        goto done;
    }

    /* Decoder: the causal pass in chunks; the wanted rows' final-norm states land in rows, in batch order. */
    rows = malloc((size_t)n_rows * (size_t)d * sizeof *rows);
    if (!rows) {
        rc = zl_err_set(err, ZL_ENOMEM, "embed: out of memory");
        goto done;
    }
    for (int32_t s = 0; s < n_seq; s++)
        if (zl_kv_seq_len(kv, s) != 0) {
            rc = zl_err_set(err, ZL_EINVAL, "embed: kv sequence %d is not empty", s);
            goto done;
        }
    int32_t row = 0;
    for (int32_t c0 = 0; c0 < b->n && rc == ZL_OK; c0 += fwd->max_tokens) {
        const int32_t cn = b->n - c0 < fwd->max_tokens ? b->n - c0 : fwd->max_tokens;
        int32_t cr = 0;
        for (int32_t i = c0; i < c0 + cn; i++)
            cr += want[i];
        const zl_batch cb = {.n = cn, .token = b->token + c0, .pos = b->pos + c0, .seq = b->seq + c0,
                             .logits = want + c0, .gemm = modes + c0};
        float *dst = rows + (size_t)row * (size_t)d;
        fwd->hidden = dst;
        rc = zl_model_forward(m, cpu, kv, fwd, &cb, dst, err);
        fwd->hidden = NULL;
        row += cr;
    }
    for (int32_t s = 0; s < n_seq; s++)
        zl_kv_seq_free(kv, s);
    if (rc != ZL_OK)
        goto done;
    row = 0;
    for (int32_t s = 0; s < n_seq; s++) {
        int32_t first, count;
        pool_rows(pooling, len[s], &first, &count);
        pool_normalize(rows + (size_t)row * (size_t)d, count, d, normalize, out + (size_t)s * (size_t)d);
        row += count;
    }
done:
    free(start);
    free(len);
    free(modes);
    free(want);
    free(rows);
    return rc;
}
