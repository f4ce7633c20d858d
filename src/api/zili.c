/*
 * zili.c - the public API (include/zili.h) over the internal layers.
 *
 * This file only adapts: it owns no algorithm. A zili_model wraps a zl_model; a zili_session owns the CPU backend
 * (thread pool), a one-sequence paged KV cache, the forward-pass scratch and the logits of the last eval.
 */
#include "zili.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/amx.h"
#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "core/err.h"
#include "engine/kvcache.h"
#include "model/model.h"
#include "api/internal.h"
#include "sample/sampler.h"
#include "tokenizer/chat.h"
#include "tokenizer/vocab.h"

static_assert((int)ZILI_EINVAL == (int)ZL_EINVAL && (int)ZILI_EIO == (int)ZL_EIO &&
                  (int)ZILI_ENOMEM == (int)ZL_ENOMEM && (int)ZILI_EFORMAT == (int)ZL_EFORMAT &&
                  (int)ZILI_EUNSUPPORTED == (int)ZL_EUNSUPPORTED && (int)ZILI_ERANGE == (int)ZL_ERANGE &&
                  (int)ZILI_EFULL == (int)ZL_EFULL,
              "public and internal status codes must agree");

/* Copies an internal error message out to the caller's buffer and passes the status through. */
static int report(int rc, const zl_err *e, char *err, size_t err_len)
{
    if (rc != ZL_OK && err && err_len)
        snprintf(err, err_len, "%s", e->msg);
    return rc;
}

/* ---- model ---------------------------------------------------------------------------------------------- */


bool zili_cpu_tile_peak(int n_threads, double seconds, double *int8_macs, double *bf16_macs)
{
    return zl_amx_peak(n_threads, seconds, int8_macs, bf16_macs);
}

zili_model_params zili_model_default_params(void)
{
    zili_model_params p = {.use_mmap = true, .use_mlock = false, .gpu_layers = -1};
    return p;
}

int zili_model_load(const char *path, const zili_model_params *params, zili_model **out, char *err, size_t err_len)
{
    zl_err e = {{0}};
    *out = NULL;
    zili_model_params p = params ? *params : zili_model_default_params();
    zili_model *zm = calloc(1, sizeof *zm);
    if (!zm)
        return report(zl_err_set(&e, ZL_ENOMEM, "%s: out of memory", path), &e, err, err_len);
    zl_model_opts o = {.use_mmap = p.use_mmap, .use_mlock = p.use_mlock, .no_repack = p.no_repack,
                      .exact = p.exact, .device = p.device, .gpu_layers = p.gpu_layers};
    int rc = zl_model_load(path, &o, &zm->m, &e);
    if (rc != ZL_OK) {
        free(zm);
        return report(rc, &e, err, err_len);
    }
    const gguf_file *f = zl_model_gguf(zm->m);
    gguf_str s;
    if (gguf_get_str(f, "general.name", &s, NULL))
        snprintf(zm->name, sizeof zm->name, "%.*s", (int)(s.len < 127 ? s.len : 127), s.ptr);
    if (gguf_get_str(f, "tokenizer.chat_template", &s, NULL)) {
        zl_chat_tmpl t;
        if (zl_chat_tmpl_detect(s.ptr, s.len, &t, NULL) == ZL_OK)
            zm->tmpl_name = zl_chat_tmpl_name(t);
    }
    *out = zm;
    return ZILI_OK;
}

void zili_model_free(zili_model *m)
{
    if (!m)
        return;
    zl_model_free(m->m);
    free(m);
}

const char *zili_model_warning(const zili_model *m) { return zl_model_warning(m->m); }

static const char *rope_scaling_name(zl_rope_scaling s)
{
    switch (s) {
    case ZL_ROPE_LINEAR: return "linear";
    case ZL_ROPE_YARN: return "yarn";
    case ZL_ROPE_LLAMA3: return "llama3";
    default: return "none";
    }
}

const char *zili_model_device(const zili_model *m)
{
    return zl_model_device_summary(m->m);
}

void zili_model_get_info(const zili_model *m, zili_model_info *info)
{
    const zl_hparams *h = zl_model_hparams(m->m);
    const zl_vocab *v = zl_model_vocab(m->m);
    const gguf_file *f = zl_model_gguf(m->m);
    memset(info, 0, sizeof *info);
    info->arch = h->arch_name;
    info->name = m->name;
    info->n_vocab = h->n_vocab;
    info->n_ctx_train = h->n_ctx_train;
    info->n_embd = h->n_embd;
    info->n_layer = h->n_layer;
    info->n_head = h->n_head;
    info->n_head_kv = h->n_head_kv;
    info->head_dim = h->head_dim;
    info->n_ff = h->n_ff;
    info->n_rot = h->n_rot;
    info->rope_theta = h->rope_theta;
    info->norm_eps = h->norm_eps;
    info->rope_scaling = rope_scaling_name(h->rope_scaling);
    info->rope_scale = h->rope_scale;
    info->rope_orig_ctx = h->rope_orig_ctx;
    info->n_swa_layers = zl_model_n_swa_layers(m->m);
    info->n_swa = info->n_swa_layers > 0 ? h->n_swa : 0;
    info->n_expert = h->n_expert;
    info->n_expert_used = h->n_expert_used;
    info->n_ff_exp = h->n_ff_exp;
    info->n_ff_shexp = h->n_ff_shexp;
    info->expert_weights_norm = h->expert_weights_norm;
    info->n_expert_shared = h->n_expert_shared;
    info->n_layer_dense_lead = h->n_layer_dense_lead;
    info->expert_gating = h->expert_gating == 2 ? "sigmoid" : "softmax";
    info->expert_weights_scale = h->expert_weights_scale;
    info->n_expert_groups = h->n_expert_groups;
    info->n_group_used = h->n_group_used;
    info->q_lora_rank = h->n_lora_q;
    info->kv_lora_rank = h->n_lora_kv;
    info->head_dim_k_mla = h->head_dim_k_mla;
    info->head_dim_v_mla = h->head_dim_v_mla;
    info->tied_embeddings = h->tied_embeddings;
    info->n_params = zl_model_n_params(m->m);
    info->file_size = gguf_file_size(f);
    info->active_weight_bytes = 0;
    const bool untied = gguf_find_tensor(f, "output.weight") != NULL;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t b = t->size;
        const char *nm = t->name.ptr;
        const size_t len = (size_t)t->name.len;
        if (h->n_expert > 0 && len >= 12 && !memcmp(nm + len - 12, "_exps.weight", 12))
            b = b / (uint64_t)h->n_expert * (uint64_t)h->n_expert_used;
        else if (untied && gguf_str_eq(t->name, "token_embd.weight") && h->n_vocab > 0)
            b /= (uint64_t)h->n_vocab;
        info->active_weight_bytes += b;
    }
    info->gguf_version = gguf_version(f);
    info->tokenizer_model = zl_vocab_model_name(v);
    info->tokenizer_pre = zl_vocab_pre_name(v);
    info->bos = zl_vocab_bos(v);
    info->eos = zl_vocab_eos(v);
    info->add_bos = zl_vocab_add_bos(v);
    info->chat_template = m->tmpl_name;
    /* "+amx": prompts take the AMX tiles (close to, not bit-identical with, the set's own kernels) */
    info->kernels = zl_model_tiles(m->m) ? zl_cpu_kernels_amx_name() : zl_cpu_kernels_name();
}

void zili_model_foreach_type(const zili_model *m, void (*fn)(const char *, uint32_t, uint64_t, void *), void *ud)
{
    const gguf_file *f = zl_model_gguf(m->m);
    uint32_t count[ZL_DTYPE_COUNT] = {0};
    uint64_t bytes[ZL_DTYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type < ZL_DTYPE_COUNT) {
            count[t->type]++;
            bytes[t->type] += t->size;
        }
    }
    for (uint32_t t = 0; t < ZL_DTYPE_COUNT; t++)
        if (count[t])
            fn(zl_type_name(t), count[t], bytes[t], ud);
}

/* ---- tokens --------------------------------------------------------------------------------------------- */

int zili_tokenize(const zili_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                  zili_token **out, size_t *n_out, char *err, size_t err_len)
{
    zl_err e = {{0}};
    int rc = zl_tokenize(zl_model_vocab(m->m), text, len, add_special, parse_special, out, n_out, &e);
    return report(rc, &e, err, err_len);
}

int zili_detokenize(const zili_model *m, const zili_token *ids, size_t n, bool special, char **out, char *err,
                    size_t err_len)
{
    zl_err e = {{0}};
    int rc = zl_detokenize(zl_model_vocab(m->m), ids, n, special, out, &e);
    return report(rc, &e, err, err_len);
}

bool zili_token_is_eog(const zili_model *m, zili_token t) { return zl_vocab_is_eog(zl_model_vocab(m->m), t); }
int32_t zili_n_vocab(const zili_model *m) { return zl_model_hparams(m->m)->n_vocab; }

struct zili_detok {
    zl_detok d;
};

zili_detok *zili_detok_create(const zili_model *m, bool special)
{
    zili_detok *d = malloc(sizeof *d);
    if (d)
        zl_detok_init(&d->d, zl_model_vocab(m->m), special);
    return d;
}

void zili_detok_free(zili_detok *d) { free(d); }
int zili_detok_push(zili_detok *d, zili_token t, char *buf, size_t cap) { return zl_detok_push(&d->d, t, buf, cap); }
int zili_detok_flush(zili_detok *d, char *buf, size_t cap) { return zl_detok_flush(&d->d, buf, cap); }

/* ---- chat ----------------------------------------------------------------------------------------------- */

int zili_chat_apply(const zili_model *m, const char *tmpl_name, const zili_chat_msg *msgs, size_t n,
                    bool add_assistant, char **out, char *err, size_t err_len)
{
    zl_err e = {{0}};
    zl_chat_tmpl t;
    int rc;
    if (tmpl_name) {
        rc = zl_chat_tmpl_from_name(tmpl_name, &t, &e);
    } else {
        gguf_str s;
        if (!gguf_get_str(zl_model_gguf(m->m), "tokenizer.chat_template", &s, &e))
            return report(zl_err_set(&e, ZL_EUNSUPPORTED,
                                     "%s: the model has no chat template; name one with --chat-template NAME "
                                     "(%s)",
                                     gguf_path(zl_model_gguf(m->m)), zl_chat_tmpl_known_names()),
                          &e, err, err_len);
        rc = zl_chat_tmpl_detect(s.ptr, s.len, &t, &e);
    }
    if (rc != ZL_OK)
        return report(rc, &e, err, err_len);
    zl_chat_msg *cm = n ? calloc(n, sizeof *cm) : NULL;
    if (n && !cm)
        return report(zl_err_set(&e, ZL_ENOMEM, "chat: out of memory"), &e, err, err_len);
    for (size_t i = 0; i < n && msgs; i++)
        cm[i] = (zl_chat_msg){.role = msgs[i].role, .content = msgs[i].content};
    rc = zl_chat_render(t, msgs ? cm : NULL, n, add_assistant, out, &e);
    free(cm);
    if (rc == ZL_OK) /* callers tokenize with the vocabulary's own BOS rule: never two */
        zl_chat_strip_bos(t, zl_vocab_add_bos(zl_model_vocab(m->m)), *out);
    return report(rc, &e, err, err_len);
}

/* ---- session -------------------------------------------------------------------------------------------- */

enum { SESSION_BLOCK = 16 };

struct zili_session {
    const zili_model *model;
    zili_session_params p;
    zl_cpu *cpu;
    zl_kv *kv;
    zl_fwd *fwd;
    int32_t n_vocab;
    float *logits;       /* (logits_rows, n_vocab) of the last eval */
    size_t logits_cap;   /* rows allocated */
    int32_t logits_rows; /* rows kept by the last eval */
    bool logits_all;
    int32_t *pos, *seq;  /* n_batch each */
    int8_t *want;
    int8_t *gemm, *out_gemm; /* per token of a batch: llama.cpp's ZL_MODE_* for it (see zili_session_eval) */
};

zili_session_params zili_session_default_params(void)
{
    zili_session_params p = {.n_ctx = 0, .n_batch = 0, .n_threads = 0, .kv_f16 = true};
    return p;
}

int zili_session_create(const zili_model *m, const zili_session_params *params, zili_session **out, char *err,
                        size_t err_len)
{
    zl_err e = {{0}};
    *out = NULL;
    zili_session_params p = params ? *params : zili_session_default_params();
    const zl_hparams *h = zl_model_hparams(m->m);
    if (p.n_ctx <= 0)
        p.n_ctx = h->n_ctx_train < 4096 ? h->n_ctx_train : 4096;
    if (p.n_ctx <= 0 || p.n_ctx > (1 << 24))
        return report(zl_err_set(&e, ZL_EINVAL, "context size %d out of range (1 .. %d)", p.n_ctx, 1 << 24), &e,
                      err, err_len);
    if (p.n_batch <= 0)
        p.n_batch = zl_model_auto_batch(m->m);
    if (p.n_batch > p.n_ctx)
        p.n_batch = p.n_ctx;
    if (p.n_threads < 0 || p.n_threads > 1024)
        return report(zl_err_set(&e, ZL_EINVAL, "thread count %d out of range (0 .. 1024)", p.n_threads), &e, err,
                      err_len);

    zili_session *s = calloc(1, sizeof *s);
    if (!s)
        return report(zl_err_set(&e, ZL_ENOMEM, "out of memory"), &e, err, err_len);
    s->model = m;
    s->p = p;
    s->n_vocab = h->n_vocab;
    int rc = ZL_OK;
    s->cpu = zl_cpu_create(p.n_threads);
    if (!s->cpu) {
        rc = zl_err_set(&e, ZL_ENOMEM, "cannot create the CPU backend with %d threads", p.n_threads);
        goto fail;
    }
    zl_kv_params kp = {.n_layer = h->n_layer,
                       .kv_dim = h->n_head_kv * h->head_dim,
                       .k_only = h->n_lora_kv > 0,
                       .block_size = SESSION_BLOCK,
                       .n_blocks = (p.n_ctx + SESSION_BLOCK - 1) / SESSION_BLOCK,
                       .max_seqs = 1,
                       .type = p.kv_f16 ? ZL_F16 : ZL_F32};
    if ((rc = zl_kv_create(&kp, &s->kv, &e)) != ZL_OK)
        goto fail;
    if ((rc = zl_fwd_create(m->m, p.n_batch, &s->fwd, &e)) != ZL_OK)
        goto fail;
    s->pos = malloc((size_t)p.n_batch * sizeof *s->pos);
    s->seq = calloc((size_t)p.n_batch, sizeof *s->seq);
    s->want = malloc((size_t)p.n_batch);
    s->gemm = malloc((size_t)p.n_batch);
    s->out_gemm = malloc((size_t)p.n_batch);
    s->logits = malloc((size_t)s->n_vocab * sizeof *s->logits);
    s->logits_cap = 1;
    if (!s->pos || !s->seq || !s->want || !s->gemm || !s->out_gemm || !s->logits) {
        rc = zl_err_set(&e, ZL_ENOMEM, "out of memory for a batch of %d tokens", p.n_batch);
        goto fail;
    }
    *out = s;
    return ZILI_OK;
fail:
    zili_session_free(s);
    return report(rc, &e, err, err_len);
}

void zili_session_free(zili_session *s)
{
    if (!s)
        return;
    free(s->logits);
    free(s->want);
    free(s->gemm);
    free(s->out_gemm);
    free(s->seq);
    free(s->pos);
    zl_fwd_destroy(s->fwd);
    zl_kv_destroy(s->kv);
    zl_cpu_destroy(s->cpu);
    free(s);
}

int32_t zili_session_n_ctx(const zili_session *s) { return s->p.n_ctx; }
int32_t zili_session_n_batch(const zili_session *s) { return s->p.n_batch; }
int32_t zili_session_n_past(const zili_session *s) { return zl_kv_seq_len(s->kv, 0); }

void zili_session_truncate(zili_session *s, int32_t n_past)
{
    if (n_past < 0)
        n_past = 0;
    zl_kv_seq_truncate(s->kv, 0, n_past);
    s->logits_rows = 0;
}

/* llama.cpp's default micro-batch (n_ubatch of llama-cli, llama-perplexity and llama-cpp-python). */
enum { LLAMA_UBATCH = 512 };

/* The ZL_MODE_* of token k of a llama.cpp batch of m tokens. */
static int8_t ubatch_mode(size_t m, size_t k)
{
    if (m < 2) return ZL_MODE_ONE;
    const int8_t mode = m >= 8 ? ZL_MODE_MULTI8 : ZL_MODE_MULTI;
    return (int8_t)(k >= m - m % 4 ? mode | ZL_MODE_TAIL4 : mode);
}

int zili_session_eval(zili_session *s, const zili_token *tokens, size_t n, bool all_logits, char *err,
                      size_t err_len)
{
    zl_err e = {{0}};
    const int32_t n_past = zili_session_n_past(s);
    s->logits_rows = 0;
    if (n == 0)
        return ZILI_OK;
    if (n > (size_t)(s->p.n_ctx - n_past))
        return report(zl_err_set(&e, ZL_ERANGE, "%zu tokens do not fit in the context (%d of %d used)", n, n_past,
                                 s->p.n_ctx),
                      &e, err, err_len);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->n_vocab)
            return report(zl_err_set(&e, ZL_ERANGE, "token id %d at index %zu is out of range (vocabulary %d)",
                                     tokens[i], i, s->n_vocab),
                          &e, err, err_len);
    const size_t rows = all_logits ? n : 1;
    if (rows > s->logits_cap) {
        float *nl = realloc(s->logits, rows * (size_t)s->n_vocab * sizeof *nl);
        if (!nl)
            return report(zl_err_set(&e, ZL_ENOMEM, "out of memory for %zu rows of logits", rows), &e, err,
                          err_len);
        s->logits = nl;
        s->logits_cap = rows;
    }
    size_t done = 0;
    while (done < n) {
        const int32_t nb = (int32_t)(n - done < (size_t)s->p.n_batch ? n - done : (size_t)s->p.n_batch);
        int32_t n_want = 0;
        for (int32_t i = 0; i < nb; i++) {
            s->pos[i] = n_past + (int32_t)done + i;
            const bool last = done + (size_t)i == n - 1;
            s->want[i] = (int8_t)(all_logits || last);
            n_want += s->want[i];
            /* llama.cpp evaluates these n tokens in ubatches of LLAMA_UBATCH: token g's arithmetic is that of its
             * ubatch's size (and of its place in it), whatever size the batches here have */
            const size_t g = done + (size_t)i, u0 = g / LLAMA_UBATCH * LLAMA_UBATCH;
            const size_t m = n - u0 < LLAMA_UBATCH ? n - u0 : LLAMA_UBATCH, k = g - u0;
            s->gemm[i] = ubatch_mode(m, k);
            s->out_gemm[i] = all_logits ? s->gemm[i] : ZL_MODE_ONE; /* else only the last token has a row */
        }
        zl_batch b = {.n = nb, .token = tokens + done, .pos = s->pos, .seq = s->seq, .logits = s->want,
                      .gemm = s->gemm, .out_gemm = s->out_gemm};
        float *dst = s->logits + (all_logits ? done * (size_t)s->n_vocab : 0);
        int rc = zl_model_forward(s->model->m, s->cpu, s->kv, s->fwd, &b, dst, &e);
        if (rc != ZL_OK) {
            zl_kv_seq_truncate(s->kv, 0, n_past);
            return report(rc, &e, err, err_len);
        }
        (void)n_want;
        done += (size_t)nb;
    }
    s->logits_rows = (int32_t)rows;
    s->logits_all = all_logits;
    return ZILI_OK;
}

const float *zili_session_logits(const zili_session *s, int32_t i)
{
    if (s->logits_rows == 0)
        return NULL;
    if (i < 0)
        i = s->logits_rows - 1;
    if (i >= s->logits_rows)
        return NULL;
    return s->logits + (size_t)i * (size_t)s->n_vocab;
}

/* ---- sampling ------------------------------------------------------------------------------------------- */

struct zili_sampler {
    zl_sampler *s;
};

zili_sampler_params zili_sampler_default_params(void)
{
    zili_sampler_params p = {.temp = 0.8f,
                             .top_k = 40,
                             .top_p = 0.95f,
                             .min_p = 0.05f,
                             .repeat_penalty = 1.0f,
                             .repeat_last_n = 64,
                             .presence_penalty = 0.0f,
                             .frequency_penalty = 0.0f,
                             .seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32)};
    return p;
}

int zili_sampler_create(const zili_model *m, const zili_sampler_params *p, zili_sampler **out, char *err,
                        size_t err_len)
{
    zl_err e = {{0}};
    *out = NULL;
    zili_sampler_params d = p ? *p : zili_sampler_default_params();
    zl_sampler_params q = {.temp = d.temp,
                           .top_k = d.top_k,
                           .top_p = d.top_p,
                           .min_p = d.min_p,
                           .repeat_penalty = d.repeat_penalty,
                           .repeat_last_n = d.repeat_last_n,
                           .presence_penalty = d.presence_penalty,
                           .frequency_penalty = d.frequency_penalty,
                           .seed = d.seed};
    zili_sampler *s = malloc(sizeof *s);
    if (!s)
        return report(zl_err_set(&e, ZL_ENOMEM, "out of memory"), &e, err, err_len);
    int rc = zl_sampler_create(&q, zl_model_hparams(m->m)->n_vocab, &s->s, &e);
    if (rc != ZL_OK) {
        free(s);
        return report(rc, &e, err, err_len);
    }
    *out = s;
    return ZILI_OK;
}

void zili_sampler_free(zili_sampler *s)
{
    if (!s)
        return;
    zl_sampler_free(s->s);
    free(s);
}

zili_token zili_sampler_sample(zili_sampler *s, const float *logits) { return zl_sampler_sample(s->s, logits); }
void zili_sampler_accept(zili_sampler *s, zili_token t) { zl_sampler_accept(s->s, t); }
const char *zili_status_str(int status) { return zl_status_str(status); }

/* ---- devices ---- */

static_assert((int)ZILI_DEV_F16 == (int)ZL_DEV_F16 && (int)ZILI_DEV_INT8_DOT == (int)ZL_DEV_INT8_DOT &&
                  (int)ZILI_DEV_SUBGROUPS == (int)ZL_DEV_SUBGROUPS && (int)ZILI_DEV_COOPMAT == (int)ZL_DEV_COOPMAT &&
                  (int)ZILI_DEV_UNIFIED == (int)ZL_DEV_UNIFIED,
              "public and internal device feature bits must agree");
static_assert(sizeof(((zili_device_info *)0)->name) == sizeof(((zl_dev_info *)0)->name) &&
                  sizeof(((zili_device_info *)0)->driver) == sizeof(((zl_dev_info *)0)->driver),
              "device name and driver fields must have the same size");

int zili_device_kinds(void)
{
    int n;
    zl_backend_list(&n);
    return n;
}

int zili_device_list(int k, const char **kind, zili_device_info *out, int max, const char **why)
{
    int n_kinds;
    const zl_backend *const *kinds = zl_backend_list(&n_kinds);
    if (k < 0 || k >= n_kinds || max < 0 || (max > 0 && !out))
        return ZILI_EINVAL;
    const zl_backend *b = kinds[k];
    if (kind)
        *kind = b->name;
    enum { MAX_DEVICES = 16 };
    zl_dev_info infos[MAX_DEVICES];
    const int n = b->enumerate(infos, MAX_DEVICES);
    for (int i = 0; i < n && i < max && i < MAX_DEVICES; i++) {
        const zl_dev_info *d = &infos[i];
        zili_device_info *o = &out[i];
        memset(o, 0, sizeof *o);
        snprintf(o->spec, sizeof o->spec, "%s:%d", b->name, d->index);
        snprintf(o->kind, sizeof o->kind, "%s", b->name);
        o->index = d->index;
        /* same sizes as zl_dev_info's (static_assert'ed above); the backend NUL-terminates them */
        memcpy(o->name, d->name, sizeof o->name);
        memcpy(o->driver, d->driver, sizeof o->driver);
        o->name[sizeof o->name - 1] = o->driver[sizeof o->driver - 1] = '\0';
        o->memory = d->memory;
        o->max_alloc = d->max_alloc;
        o->max_binding = d->max_binding;
        o->alignment = d->alignment;
        o->subgroup_size = d->subgroup_size;
        o->features = d->features;
        o->is_cpu = d->is_cpu;
    }
    if (why) {
        const char *w = n <= 0 && b->why_none ? b->why_none() : "";
        *why = w ? w : "";
    }
    return n > 0 ? n : 0;
}
