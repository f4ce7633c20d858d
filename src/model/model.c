/*
 * model.c - loading a model: the architecture registry, hyperparameters from GGUF metadata, the weight table
 * (zero-copy views into the mapping, every shape and type checked), the vocabulary; and the generic half of a
 * forward pass: scratch buffers, batch validation and KV reservation, then the family's forward function.
 *
 * Load order (zl_model_load), each step undone by zl_model_free on failure:
 *   gguf_open -> general.architecture -> registry entry -> read_hparams -> rope_setup -> zl_vocab_load
 *   -> impl->bind (tensors) -> check_all_bound -> n_params
 *
 * Invariants after load: every zl_tensor in the table has data inside the mapping, the exact shape the family
 * needs and a type with kernels; every norm vector is float; hparams pass check_hparams (all sizes positive and
 * bounded, so products of them fit int64 and size_t).
 *
 * Threads: a loaded zl_model is immutable. A zl_fwd is used by one thread at a time.
 */
#include "backend/backend.h"
#include "model/arch.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/fp16.h"
#include "backend/cpu/amx.h"
#include "backend/cpu/repack.h"

/* The architectures zili runs. One entry per family file. */
static const zl_arch_impl k_archs[] = {
    {.name = "llama", .arch = ZL_ARCH_LLAMA, .rope_neox = false, .bind = zl_llama_bind,
     .forward = zl_llama_forward},
    {.name = "qwen2", .arch = ZL_ARCH_QWEN2, .rope_neox = true, .bind = zl_qwen2_bind, .forward = zl_qwen_forward},
    {.name = "qwen3", .arch = ZL_ARCH_QWEN3, .rope_neox = true, .bind = zl_qwen3_bind, .forward = zl_qwen_forward},
    {.name = "gemma3", .arch = ZL_ARCH_GEMMA3, .rope_neox = true, .bind = zl_gemma3_bind,
     .forward = zl_gemma3_forward},
    {.name = "qwen2moe", .arch = ZL_ARCH_QWEN2MOE, .rope_neox = true, .bind = zl_qwen2moe_bind,
     .forward = zl_moe_forward},
    {.name = "bert", .arch = ZL_ARCH_BERT, .rope_neox = false, .bind = zl_bert_bind, .forward = zl_bert_forward},
    {.name = "qwen3moe", .arch = ZL_ARCH_QWEN3MOE, .rope_neox = true, .bind = zl_qwen3moe_bind,
     .forward = zl_moe_forward},
    {.name = "deepseek2", .arch = ZL_ARCH_DEEPSEEK2, .rope_neox = false, .bind = zl_deepseek2_bind,
     .forward = zl_deepseek2_forward},
};

/* Bounds on hyperparameters: generous for any published model, small enough that products stay far from
 * overflow (n_embd * n_vocab < 2^41, max_tokens * n_ff < 2^38). */
enum {
    MAX_EMBD = 1 << 16,
    MAX_FF = 1 << 18,
    MAX_LAYER = 1024,
    MAX_HEAD = 1024,
    MAX_HEAD_DIM = 1024,
    MAX_VOCAB = 1 << 22,
    MAX_CTX = 1 << 24,
    MAX_BATCH = 1 << 20,
};

/* ------------------------------------------------------------------------------------------------------------ */
/* Hyperparameters */

/* Reads the integer `<arch>.<key>` into *out. Absent: *out = def when !required, else an error. */
static int get_int(const gguf_file *f, const char *arch, const char *key, bool required, int64_t def,
                   int64_t *out, zl_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    zl_err e = {{0}};
    if (gguf_get_i64(f, full, out, &e))
        return ZL_OK;
    if (e.msg[0])
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg); /* names the file and key */
    if (required)
        return zl_err_set(err, ZL_EFORMAT, "%s: required key '%s' is missing", gguf_path(f), full);
    *out = def;
    return ZL_OK;
}

static int get_float(const gguf_file *f, const char *arch, const char *key, float def, float *out, zl_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    zl_err e = {{0}};
    if (gguf_get_f32(f, full, out, &e))
        return ZL_OK;
    if (e.msg[0])
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg); /* names the file and key */
    *out = def;
    return ZL_OK;
}

static int check_range(const gguf_file *f, const char *what, int64_t v, int64_t lo, int64_t hi, int32_t *out,
                       zl_err *err)
{
    if (v < lo || v > hi)
        return zl_err_set(err, ZL_EFORMAT, "%s: %s = %lld out of range (%lld .. %lld)", gguf_path(f), what,
                          (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return ZL_OK;
}

static int read_hparams(zl_model *m, zl_err *err)
{
    const gguf_file *f = m->gguf;
    zl_hparams *h = &m->hp;
    const char *a = h->arch_name;
    const char *path = gguf_path(f);
    int64_t v;
    int rc;

#define INT_KEY(key, req, def, lo, hi, field)                                                                   \
    do {                                                                                                        \
        if ((rc = get_int(f, a, key, req, def, &v, err)) != ZL_OK)                                              \
            return rc;                                                                                          \
        if ((rc = check_range(f, key, v, lo, hi, &h->field, err)) != ZL_OK)                                     \
            return rc;                                                                                          \
    } while (0)

    INT_KEY("context_length", true, 0, 1, MAX_CTX, n_ctx_train);
    INT_KEY("embedding_length", true, 0, 1, MAX_EMBD, n_embd);
    INT_KEY("block_count", true, 0, 1, MAX_LAYER, n_layer);
    INT_KEY("feed_forward_length", true, 0, 1, MAX_FF, n_ff);
    INT_KEY("attention.head_count", true, 0, 1, MAX_HEAD, n_head);
    INT_KEY("attention.head_count_kv", false, h->n_head, 1, MAX_HEAD, n_head_kv);
    if (h->n_head % h->n_head_kv != 0)
        return zl_err_set(err, ZL_EFORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", path,
                          h->n_head, h->n_head_kv);

    /* Per-head width: key_length, defaulting to n_embd / n_head (which must then divide). */
    if ((rc = get_int(f, a, "attention.key_length", false, -1, &v, err)) != ZL_OK)
        return rc;
    if (v < 0) {
        if (h->n_embd % h->n_head != 0)
            return zl_err_set(err, ZL_EFORMAT, "%s: embedding_length %d is not a multiple of head_count %d", path,
                              h->n_embd, h->n_head);
        v = h->n_embd / h->n_head;
    }
    if ((rc = check_range(f, "attention.key_length", v, 1, MAX_HEAD_DIM, &h->head_dim, err)) != ZL_OK)
        return rc;
    /* One cache row width serves K and V, so value_length must equal key_length; deepseek2's V is the first
     * value_length values of its K row (checked in deepseek2.c). */
    if ((rc = get_int(f, a, "attention.value_length", false, h->head_dim, &v, err)) != ZL_OK)
        return rc;
    const bool mla = strcmp(a, "deepseek2") == 0;
    if (mla && (rc = check_range(f, "attention.value_length", v, 1, h->head_dim, &h->head_dim_v, err)) != ZL_OK)
        return rc;
    if (!mla)
        h->head_dim_v = h->head_dim;
    if (!mla && v != h->head_dim)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: key_length %d != value_length %lld is not supported", path,
                          h->head_dim, (long long)v);
    INT_KEY("rope.dimension_count", false, h->head_dim, 2, h->head_dim, n_rot);
    if (h->n_rot % 2 != 0)
        return zl_err_set(err, ZL_EFORMAT, "%s: rope.dimension_count %d is odd", path, h->n_rot);

    /* Vocabulary size: the metadata key, else (set by the caller after zl_vocab_load) the token list. */
    if ((rc = get_int(f, a, "vocab_size", false, 0, &v, err)) != ZL_OK)
        return rc;
    if (v != 0 && (rc = check_range(f, "vocab_size", v, 1, MAX_VOCAB, &h->n_vocab, err)) != ZL_OK)
        return rc;

    h->encoder = h->arch == ZL_ARCH_BERT;
    if ((rc = get_float(f, a, h->encoder ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon", 1e-5f,
                        &h->norm_eps, err)) != ZL_OK)
        return rc;
    /* Without pooling_type: mean for encoders and llama-like decoders, the last token for qwen2 / qwen3 (their
     * embedding models, Qwen3-Embedding, pool the last token). */
    const int64_t pool_default = h->arch == ZL_ARCH_QWEN2 || h->arch == ZL_ARCH_QWEN3 ? ZL_POOL_LAST : ZL_POOL_MEAN;
    if ((rc = get_int(f, a, "pooling_type", false, pool_default, &v, err)) != ZL_OK)
        return rc;
    if (v == 0 || v == 4) /* none / rank: not an embedding the server makes; the default pooling */
        v = pool_default;
    if ((v < ZL_POOL_MEAN || v > ZL_POOL_LAST) && !h->encoder)
        v = pool_default; /* a generative model's odd value does not stop it from loading */
    if (v < ZL_POOL_MEAN || v > ZL_POOL_LAST)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: %s.pooling_type %lld is not supported (1 mean, 2 cls, 3 last)",
                          path, a, (long long)v);
    h->pooling = (zl_pooling)v;
    if (!(h->norm_eps > 0.0f && h->norm_eps < 1.0f))
        return zl_err_set(err, ZL_EFORMAT, "%s: layer_norm_rms_epsilon %g out of range (0 .. 1)", path,
                          (double)h->norm_eps);
    if ((rc = get_float(f, a, "rope.freq_base", 10000.0f, &h->rope_theta, err)) != ZL_OK)
        return rc;
    if (!(h->rope_theta > 1.0f && h->rope_theta < 1e12f))
        return zl_err_set(err, ZL_EFORMAT, "%s: rope.freq_base %g out of range (1 .. 1e12)", path,
                          (double)h->rope_theta);

    /* RoPE scaling: rope.scaling.type / factor / original_context_length (older files: rope.scale_linear). */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_str st = {0};
    zl_err e = {{0}};
    h->rope_scaling = ZL_ROPE_NONE;
    h->rope_scale = 1.0f;
    bool typed = false; /* llama.cpp reads a factor without a type as linear */
    if (gguf_get_str(f, key, &st, &e)) {
        typed = true;
        if (gguf_str_eq(st, "linear"))
            h->rope_scaling = ZL_ROPE_LINEAR;
        else if (gguf_str_eq(st, "yarn"))
            h->rope_scaling = ZL_ROPE_YARN;
        else if (!gguf_str_eq(st, "none"))
            return zl_err_set(err, ZL_EUNSUPPORTED, "%s: rope scaling type '%.*s' is not supported", path,
                              (int)(st.len < 32 ? st.len : 32), st.ptr);
    } else if (e.msg[0]) {
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg); /* names the file and key */
    }
    float factor = 0.0f;
    if ((rc = get_float(f, a, "rope.scaling.factor", 0.0f, &factor, err)) != ZL_OK)
        return rc;
    if (factor == 0.0f) {
        if ((rc = get_float(f, a, "rope.scale_linear", 0.0f, &factor, err)) != ZL_OK)
            return rc;
    }
    if (factor != 0.0f && !typed)
        h->rope_scaling = ZL_ROPE_LINEAR;
    if (h->rope_scaling != ZL_ROPE_NONE) {
        if (factor == 0.0f)
            factor = 1.0f;
        if (!(factor >= 1.0f && factor <= 1024.0f))
            return zl_err_set(err, ZL_EFORMAT, "%s: rope scaling factor %g out of range (1 .. 1024)", path,
                              (double)factor);
        h->rope_scale = factor;
    }
    if ((rc = get_float(f, a, "rope.scaling.attn_factor", 1.0f, &h->rope_attn_factor, err)) != ZL_OK)
        return rc;
    if (!(h->rope_attn_factor > 0.0f && h->rope_attn_factor <= 16.0f))
        return zl_err_set(err, ZL_EFORMAT, "%s: rope.scaling.attn_factor %g out of range (0 .. 16]", path,
                          (double)h->rope_attn_factor);
    INT_KEY("rope.scaling.original_context_length", false, h->n_ctx_train, 1, MAX_CTX, rope_orig_ctx);
#undef INT_KEY
    return ZL_OK;
}

/* Derives the per-model RoPE constants. YaRN follows the published method (Peng et al. 2023) as llama.cpp
 * parameterises it: beta_fast 32, beta_slow 1, ramp over the dims whose wavelength lies between them,
 * magnitude scaled by 1 + 0.1 ln(factor). */
static void rope_setup(zl_model *m)
{
    const zl_hparams *h = &m->hp;
    m->rope_freq_scale = 1.0f;
    m->rope_attn_factor = h->rope_attn_factor;
    m->yarn_ext_factor = 0.0f;
    if (h->rope_scaling == ZL_ROPE_LINEAR || h->rope_scaling == ZL_ROPE_YARN)
        m->rope_freq_scale = 1.0f / h->rope_scale;
    if (h->rope_scaling == ZL_ROPE_YARN) {
        const float beta_fast = 32.0f, beta_slow = 1.0f;
        const float n = (float)h->n_rot, base = h->rope_theta, orig = (float)h->rope_orig_ctx;
        /* The dim index whose rotation count over the original context equals beta. */
        const float lo = n * logf(orig / (beta_fast * 2.0f * (float)M_PI)) / (2.0f * logf(base));
        const float hi = n * logf(orig / (beta_slow * 2.0f * (float)M_PI)) / (2.0f * logf(base));
        m->yarn_corr[0] = fmaxf(0.0f, floorf(lo));
        m->yarn_corr[1] = fminf(n - 1.0f, ceilf(hi));
        m->yarn_ext_factor = 1.0f;
        /* llama.cpp scales the file's attn_factor by YaRN's magnitude factor and by its inverse (the kernel
         * applies the magnitude itself); the product is kept as it rounds. */
        const float factor = 1.0f / m->rope_freq_scale;
        const float mag = fmaf(0.1f, logf(factor), 1.0f);
        m->rope_attn_factor = mag * (1.0f / mag) * h->rope_attn_factor;
    }
    if (h->arch == ZL_ARCH_DEEPSEEK2)
        zl_deepseek2_scales(m);
}

void zl_model_rope_table(const zl_model *m, int32_t pos, float *cs)
{
    const zl_hparams *h = &m->hp;
    if (m->yarn_ext_factor == 0.0f) {
        zl_rope_cos_sin(cs, h->n_rot, pos, h->rope_theta, m->rope_freq_scale, m->rope_freqs, m->rope_attn_factor);
        return;
    }
    /* YaRN: per pair, a mix of the interpolated and the extrapolated angle along a linear ramp. */
    const float step = powf(h->rope_theta, -2.0f / (float)h->n_rot);
    const float mscale = m->rope_attn_factor * fmaf(0.1f, logf(1.0f / m->rope_freq_scale), 1.0f);
    float theta = (float)pos;
    for (int32_t i = 0; i < h->n_rot / 2; i++) {
        const float ff = m->rope_freqs ? m->rope_freqs[i] : 1.0f;
        const float extrap = theta / ff;
        const float interp = m->rope_freq_scale * extrap;
        const float y = ((float)i - m->yarn_corr[0]) / fmaxf(0.001f, m->yarn_corr[1] - m->yarn_corr[0]);
        const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * m->yarn_ext_factor;
        const float angle = fmaf(interp, 1.0f - ramp, extrap * ramp);
        cs[2 * i] = cosf(angle) * mscale;
        cs[2 * i + 1] = sinf(angle) * mscale;
        theta *= step;
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Tensor binding */

static int keep_owned(zl_model *m, void *p, zl_err *err)
{
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        void **no = realloc(m->owned, cap * sizeof *no);
        if (!no) {
            free(p);
            return zl_err_set(err, ZL_ENOMEM, "%s: out of memory", gguf_path(m->gguf));
        }
        m->owned = no;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return ZL_OK;
}

static int note_bound(zl_model *m, const gguf_tensor *t, zl_err *err)
{
    for (size_t i = 0; i < m->n_bound; i++)
        if (m->bound[i] == t)
            return ZL_OK; /* tied output: bound twice, counted once */
    if (m->n_bound == m->cap_bound) {
        size_t cap = m->cap_bound ? 2 * m->cap_bound : 64;
        const gguf_tensor **nb = realloc(m->bound, cap * sizeof *nb);
        if (!nb)
            return zl_err_set(err, ZL_ENOMEM, "%s: out of memory", gguf_path(m->gguf));
        m->bound = nb;
        m->cap_bound = cap;
    }
    m->bound[m->n_bound++] = t;
    return ZL_OK;
}

static const char *shape_str(const gguf_tensor *t, char *buf, size_t cap)
{
    int off = snprintf(buf, cap, "(");
    for (uint32_t d = 0; d < t->n_dims && off > 0 && (size_t)off < cap; d++)
        off += snprintf(buf + off, cap - (size_t)off, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (off > 0 && (size_t)off < cap)
        snprintf(buf + off, cap - (size_t)off, ")");
    return buf;
}

/* Finds `name` and checks it has exactly the shape (ne0, ne1) (ne1 = 1 for a vector) and no more dims. */
static int find_shaped(zl_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                       const gguf_tensor **out, zl_err *err)
{
    const char *path = gguf_path(m->gguf);
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    *out = NULL;
    if (!t) {
        if (required)
            return zl_err_set(err, ZL_EFORMAT, "%s: required tensor '%s' is missing", path, name);
        return ZL_OK;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        char have[96];
        return zl_err_set(err, ZL_EFORMAT, "%s: tensor '%s' has shape %s, expected (%lld, %lld)", path, name,
                          shape_str(t, have, sizeof have), (long long)ne0, (long long)ne1);
    }
    *out = t;
    return note_bound(m, t, err);
}

int zl_model_bind_matrix(zl_model *m, const char *name, int64_t ne0, int64_t ne1, bool required, zl_tensor *t,
                         zl_err *err)
{
    const gguf_tensor *g;
    memset(t, 0, sizeof *t);
    int rc = find_shaped(m, name, ne0, ne1, required, &g, err);
    if (rc != ZL_OK || !g)
        return rc;
    const zl_type_traits *tr = zl_type_traits_get(g->type);
    size_t row;
    if (!tr || !tr->supported || !tr->vec_dot)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: tensor '%s' has type %s, which zili cannot compute with yet",
                          gguf_path(m->gguf), name, zl_type_name(g->type));
    if (!zl_row_size(g->type, ne0, &row))
        return zl_err_set(err, ZL_EFORMAT, "%s: tensor '%s': row of %lld is not a whole number of %s blocks",
                          gguf_path(m->gguf), name, (long long)ne0, zl_type_name(g->type));
    /* The file's name is not NUL-terminated; keep our own copy for messages. */
    char *nm = strdup(name);
    if (!nm || (rc = keep_owned(m, nm, err)) != ZL_OK)
        return nm ? rc : zl_err_set(err, ZL_ENOMEM, "%s: out of memory", gguf_path(m->gguf));
    t->name = nm;
    t->type = g->type;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = t->ne[3] = 1;
    t->nb1 = row;
    t->data = g->data;
    return ZL_OK;
}

int zl_model_bind_layer_experts(zl_model *m, int32_t il, const char *suffix, int64_t ne0, int64_t ne1, int64_t ne2,
                                zl_tensor *t, zl_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    const char *path = gguf_path(m->gguf);
    memset(t, 0, sizeof *t);
    const gguf_tensor *g = gguf_find_tensor(m->gguf, name);
    if (!g)
        return zl_err_set(err, ZL_EFORMAT, "%s: required tensor '%s' is missing", path, name);
    if (g->ne[0] != ne0 || g->ne[1] != ne1 || g->ne[2] != ne2 || g->ne[3] != 1) {
        char have[96];
        return zl_err_set(err, ZL_EFORMAT, "%s: tensor '%s' has shape %s, expected (%lld, %lld, %lld)", path, name,
                          shape_str(g, have, sizeof have), (long long)ne0, (long long)ne1, (long long)ne2);
    }
    const zl_type_traits *tr = zl_type_traits_get(g->type);
    size_t row;
    if (!tr || !tr->supported || !tr->vec_dot)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: tensor '%s' has type %s, which zili cannot compute with yet",
                          path, name, zl_type_name(g->type));
    if (!zl_row_size(g->type, ne0, &row))
        return zl_err_set(err, ZL_EFORMAT, "%s: tensor '%s': row of %lld is not a whole number of %s blocks", path,
                          name, (long long)ne0, zl_type_name(g->type));
    int rc = note_bound(m, g, err);
    if (rc != ZL_OK)
        return rc;
    char *nm = strdup(name);
    if (!nm || (rc = keep_owned(m, nm, err)) != ZL_OK)
        return nm ? rc : zl_err_set(err, ZL_ENOMEM, "%s: out of memory", path);
    t->name = nm;
    t->type = g->type;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    t->nb1 = row;
    t->data = g->data;
    return ZL_OK;
}

int zl_model_bind_layer_matrix(zl_model *m, int32_t il, const char *suffix, int64_t ne0, int64_t ne1, bool required,
                               zl_tensor *t, zl_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    return zl_model_bind_matrix(m, name, ne0, ne1, required, t, err);
}

int zl_model_bind_layer_vector(zl_model *m, int32_t il, const char *suffix, int64_t n, bool required,
                               const float **out, zl_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    return zl_model_bind_vector(m, name, n, required, out, err);
}

int zl_model_read_sliding_window(zl_model *m, zl_err *err)
{
    zl_hparams *h = &m->hp;
    char key[128];
    zl_err e = {{0}};
    int64_t v;
    h->n_swa = 0;
    snprintf(key, sizeof key, "%s.attention.sliding_window", h->arch_name);
    if (gguf_get_i64(m->gguf, key, &v, &e)) {
        if (v < 0 || v > INT32_MAX)
            return zl_err_set(err, ZL_EFORMAT, "%s: %s = %lld out of range", gguf_path(m->gguf), key, (long long)v);
        h->n_swa = (int32_t)v;
    } else if (e.msg[0]) {
        return zl_err_set(err, ZL_EFORMAT, "%s", e.msg);
    }
    return ZL_OK;
}

int zl_model_bind_vector(zl_model *m, const char *name, int64_t n, bool required, const float **out, zl_err *err)
{
    const gguf_tensor *g;
    *out = NULL;
    int rc = find_shaped(m, name, n, 1, required, &g, err);
    if (rc != ZL_OK || !g)
        return rc;
    if (g->type == ZL_F32) {
        *out = g->data;
        return ZL_OK;
    }
    if (g->type != ZL_F16 && g->type != ZL_BF16)
        return zl_err_set(err, ZL_EUNSUPPORTED, "%s: vector tensor '%s' has type %s (f32, f16 or bf16 expected)",
                          gguf_path(m->gguf), name, zl_type_name(g->type));
    float *p = malloc((size_t)n * sizeof *p);
    if (!p)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for tensor '%s'", gguf_path(m->gguf), name);
    const unsigned char *src = g->data;
    for (int64_t i = 0; i < n; i++) {
        uint16_t hbits;
        memcpy(&hbits, src + 2 * i, 2);
        p[i] = g->type == ZL_F16 ? zl_fp16_to_fp32(hbits) : zl_bf16_to_fp32(hbits);
    }
    if ((rc = keep_owned(m, p, err)) != ZL_OK)
        return rc;
    *out = p;
    return ZL_OK;
}

/* Every tensor of the file must be one the architecture uses: an unused one means a variant we would run
 * wrongly (mixture of experts, extra norms, biases). */
static int check_all_bound(zl_model *m, zl_err *err)
{
    const uint64_t n = gguf_n_tensors(m->gguf);
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        bool used = false;
        for (size_t j = 0; j < m->n_bound && !used; j++)
            used = m->bound[j] == t;
        if (!used)
            return zl_err_set(err, ZL_EUNSUPPORTED, "%s: tensor '%.*s' is not used by architecture '%s' (a variant "
                              "zili does not support)", gguf_path(m->gguf), (int)(t->name.len < 96 ? t->name.len : 96),
                              t->name.ptr, m->hp.arch_name);
    }
    return ZL_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Load / free */

/* One matrix to rewrite into the X16 layout, at data (writable). */
typedef struct repack_job {
    uint32_t type;
    void *data;
    int64_t ne0, ne1;
    size_t nb1;
} repack_job;

typedef struct repack_work {
    const repack_job *jobs;
    size_t n, tmp_bytes;
    atomic_size_t next, done;
} repack_work;

/* Takes jobs until none is left (each thread with its own 16-row scratch). */
static void *repack_worker(void *arg)
{
    repack_work *w = arg;
    void *tmp = malloc(w->tmp_bytes);
    if (!tmp) return NULL; /* the others (or none: reported as out of memory) take the jobs */
    for (;;) {
        const size_t i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n) break;
        const repack_job *j = &w->jobs[i];
        zl_repack_x16(j->type, j->data, j->ne0, j->ne1, j->nb1, tmp);
        atomic_fetch_add(&w->done, 1);
    }
    free(tmp);
    return NULL;
}

/* llama.cpp's repacking of Q4_0 and Q4_K matrices on this kernel set (repack.h): every layer matrix and the output
 * matrix with a multiple of 8 rows; the token embedding stays as it is (a tied output gets a repacked copy). The
 * bytes are made writable (or copied) here, then rewritten a matrix per job: on up to 16 threads when the weights
 * were read into memory, on this thread when they are mapped (there every first write to a page is a copy-on-write
 * fault, and two threads faulting in the same mapping took 1.2 s against 0.5 s for one, on a 1B Q4_0 file). */
/* Marks the matrices the AMX tiles can multiply (backend/cpu/amx.h): their multi-token prompts' tokens take them. */
static void mark_tiles(zl_model *m)
{
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        zl_layer *L = &m->layers[il];
        zl_tensor *ls[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
            if (ls[i]->data && zl_amx_supports(ls[i]->type)) ls[i]->tiles = 1, m->tiles = true;
    }
    if (m->output.data && zl_amx_supports(m->output.type)) m->output.tiles = 1, m->tiles = true;
}

static int repack_weights(zl_model *m, bool mapped, zl_err *err)
{
    const size_t n_mat = 7 * (size_t)m->hp.n_layer + 1;
    zl_tensor **mats = malloc(n_mat * sizeof *mats);
    repack_job *jobs = malloc(n_mat * sizeof *jobs);
    int rc = mats && jobs ? ZL_OK : zl_err_set(err, ZL_ENOMEM, "%s: out of memory", gguf_path(m->gguf));
    size_t n = 0, n_jobs = 0, max_row = 0;
    for (int32_t il = 0; il < m->hp.n_layer && rc == ZL_OK; il++) {
        zl_layer *L = &m->layers[il];
        zl_tensor *ls[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
            mats[n++] = ls[i];
    }
    if (rc == ZL_OK)
        mats[n++] = &m->output;
    for (size_t i = 0; i < n && rc == ZL_OK; i++) {
        zl_tensor *t = mats[i];
        if (!t->data || !zl_repack_active(t->type) || t->layout != ZL_LAYOUT_ROWS || !zl_repack_fits(t->ne[1]))
            continue;
        bool shared = false; /* a file tensor bound twice is repacked once (in place: same data pointer) */
        for (size_t k = 0; k < i && !shared; k++)
            shared = mats[k]->layout == ZL_LAYOUT_X16 && mats[k]->data == t->data;
        if (shared) {
            t->layout = ZL_LAYOUT_X16;
            continue;
        }
        /* in place, or in a copy of its own for a tied output (the embedding lookup keeps reading the file's rows)
         * or when the file's bytes cannot be written */
        const size_t bytes = (size_t)t->ne[1] * t->nb1;
        const bool tied = t == &m->output && t->data == m->tok_embd.data;
        void *dst = tied ? NULL : gguf_writable(m->gguf, t->data, bytes);
        if (!dst) {
            if (posix_memalign(&dst, 64, bytes) != 0) {
                rc = zl_err_set(err, ZL_ENOMEM, "%s: out of memory repacking '%s'", gguf_path(m->gguf), t->name);
                break;
            }
            if ((rc = keep_owned(m, dst, err)) != ZL_OK) break;
            memcpy(dst, t->data, bytes);
        }
        jobs[n_jobs++] = (repack_job){ .type = t->type, .data = dst, .ne0 = t->ne[0], .ne1 = t->ne[1], .nb1 = t->nb1 };
        if (t->nb1 > max_row) max_row = t->nb1;
        t->data = dst;
        t->layout = ZL_LAYOUT_X16;
    }
    if (rc == ZL_OK && n_jobs) {
        repack_work w = { .jobs = jobs, .n = n_jobs, .tmp_bytes = ZL_X16_ROWS * max_row };
        atomic_init(&w.next, 0);
        atomic_init(&w.done, 0);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t nth = mapped || cpus < 1 ? 1 : cpus > 16 ? 16 : (size_t)cpus;
        if (nth > n_jobs) nth = n_jobs;
        pthread_t th[16];
        size_t started = 0;
        for (size_t i = 1; i < nth; i++)
            if (pthread_create(&th[started], NULL, repack_worker, &w) == 0) started++;
        repack_worker(&w);
        for (size_t i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        if (atomic_load(&w.done) != n_jobs)
            rc = zl_err_set(err, ZL_ENOMEM, "%s: out of memory repacking weights", gguf_path(m->gguf));
    }
    free(jobs);
    free(mats);
    return rc;
}

int zl_model_load(const char *path, const zl_model_opts *opts, zl_model **out, zl_err *err)
{
    *out = NULL;
    zl_model *m = calloc(1, sizeof *m);
    if (!m)
        return zl_err_set(err, ZL_ENOMEM, "%s: out of memory", path);
    gguf_open_opts go = {.use_mmap = opts ? opts->use_mmap : true, .use_mlock = opts ? opts->use_mlock : false};
    int rc = gguf_open(path, &go, &m->gguf, err);
    if (rc != ZL_OK)
        goto fail;
    if (gguf_warning(m->gguf))
        snprintf(m->warning, sizeof m->warning, "%s", gguf_warning(m->gguf));

    gguf_str arch;
    zl_err e = {{0}};
    if (!gguf_get_str(m->gguf, "general.architecture", &arch, &e)) {
        rc = e.msg[0] ? zl_err_set(err, ZL_EFORMAT, "%s", e.msg)
                      : zl_err_set(err, ZL_EFORMAT, "%s: key 'general.architecture' is missing", path);
        goto fail;
    }
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
        if (gguf_str_eq(arch, k_archs[i].name))
            m->impl = &k_archs[i];
    if (!m->impl) {
        rc = zl_err_set(err, ZL_EUNSUPPORTED,
                        "%s: architecture '%.*s' is not supported (supported: llama, qwen2, qwen3, gemma3, qwen2moe, qwen3moe, deepseek2, bert)", path,
                        (int)(arch.len < 64 ? arch.len : 64), arch.ptr);
        goto fail;
    }
    m->hp.arch = m->impl->arch;
    m->hp.rope_neox = m->impl->rope_neox;
    snprintf(m->hp.arch_name, sizeof m->hp.arch_name, "%s", m->impl->name);
    if ((rc = read_hparams(m, err)) != ZL_OK)
        goto fail;

    if ((rc = zl_vocab_load(m->gguf, &m->vocab, err)) != ZL_OK)
        goto fail;
    const int32_t n_tok = zl_vocab_n_tokens(m->vocab);
    if (m->hp.n_vocab == 0) {
        if (n_tok <= 0 || n_tok > MAX_VOCAB) {
            rc = zl_err_set(err, ZL_EFORMAT, "%s: vocabulary of %d tokens out of range (1 .. %d)", path, n_tok,
                            MAX_VOCAB);
            goto fail;
        }
        m->hp.n_vocab = n_tok;
    }

    m->kq_scale = 1.0f / sqrtf((float)m->hp.head_dim);
    if ((rc = m->impl->bind(m, err)) != ZL_OK)
        goto fail;
    m->hp.tied_embeddings = m->output.data == m->tok_embd.data;
    if (m->rope_freqs && m->hp.rope_scaling == ZL_ROPE_NONE)
        m->hp.rope_scaling = ZL_ROPE_LLAMA3;
    rope_setup(m);
    if ((rc = check_all_bound(m, err)) != ZL_OK)
        goto fail;
    const bool on_dev = opts && opts->device && strcmp(opts->device, "cpu") != 0;
    if (on_dev && m->hp.n_expert > 0) {
        rc = zl_err_set(err, ZL_EUNSUPPORTED, "%s: %s runs on the CPU only (no device pass for experts yet)", path,
                        m->hp.arch_name);
        goto fail;
    }
    /* a device takes the file's layout (the CPU part of a split model runs unrepacked too) */
    if (!on_dev && !(opts && opts->no_repack) && (rc = repack_weights(m, go.use_mmap, err)) != ZL_OK)
        goto fail;
    if (!on_dev && !(opts && opts->exact) && zl_amx_default_on())
        mark_tiles(m);
    if (on_dev) {
        if ((rc = zl_dev_open(opts->device, &m->dev, err)) != ZL_OK ||
            (rc = zl_dmodel_create(m, m->dev, opts->gpu_layers, &m->dm, err)) != ZL_OK)
            goto fail;
    }
    for (size_t i = 0; i < m->n_bound; i++) {
        const gguf_tensor *t = m->bound[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    *out = m;
    return ZL_OK;
fail:
    zl_model_free(m);
    return rc;
}

void zl_model_free(zl_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->bound);
    zl_dmodel_free(m->dm);
    zl_dev_close(m->dev);
    free(m->layers);
    zl_vocab_free(m->vocab);
    gguf_close(m->gguf);
    free(m);
}

const zl_hparams *zl_model_hparams(const zl_model *m) { return &m->hp; }
bool zl_model_tiles(const zl_model *m) { return m->tiles; }
const char *zl_model_device_summary(const zl_model *m) { return m->dm ? zl_dmodel_summary(m->dm) : NULL; }
const zl_vocab *zl_model_vocab(const zl_model *m) { return m->vocab; }
const gguf_file *zl_model_gguf(const zl_model *m) { return m->gguf; }
uint64_t zl_model_n_params(const zl_model *m) { return m->n_params; }

int32_t zl_model_n_swa_layers(const zl_model *m)
{
    int32_t n = 0;
    for (int32_t il = 0; m->layers && il < m->hp.n_layer; il++)
        n += m->layers[il].swa ? 1 : 0;
    return n;
}
const char *zl_model_warning(const zl_model *m) { return m->warning[0] ? m->warning : NULL; }

/* ------------------------------------------------------------------------------------------------------------ */
/* Forward-pass scratch */

static void *alloc_rows(int32_t rows, int64_t width, size_t elt, bool *ok)
{
    size_t bytes;
    if (__builtin_mul_overflow((size_t)rows, (size_t)width, &bytes) || __builtin_mul_overflow(bytes, elt, &bytes)) {
        *ok = false;
        return NULL;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        *ok = false;
    return p;
}

int zl_fwd_create(const zl_model *m, int32_t max_tokens, zl_fwd **out, zl_err *err)
{
    *out = NULL;
    if (max_tokens <= 0 || max_tokens > MAX_BATCH)
        return zl_err_set(err, ZL_EINVAL, "batch size %d out of range (1 .. %d)", max_tokens, MAX_BATCH);
    const zl_hparams *h = &m->hp;
    zl_fwd *f = calloc(1, sizeof *f);
    if (!f)
        return zl_err_set(err, ZL_ENOMEM, "out of memory for forward-pass scratch");
    f->max_tokens = max_tokens;
    const int64_t q_dim = (int64_t)h->n_head * h->head_dim, kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    bool ok = true;
    f->x = alloc_rows(max_tokens, h->n_embd, sizeof(float), &ok);
    f->xb = alloc_rows(max_tokens, h->n_embd, sizeof(float), &ok);
    f->xb2 = alloc_rows(max_tokens, h->n_embd, sizeof(float), &ok);
    f->q = alloc_rows(max_tokens, q_dim, sizeof(float), &ok);
    f->k = alloc_rows(max_tokens, kv_dim, sizeof(float), &ok);
    f->v = alloc_rows(max_tokens, kv_dim, sizeof(float), &ok);
    f->att = alloc_rows(max_tokens, q_dim, sizeof(float), &ok);
    int64_t ff = h->n_ff > h->n_ff_exp ? h->n_ff : h->n_ff_exp;
    ff = ff > h->n_ff_shexp ? ff : h->n_ff_shexp;
    ff = ff > h->n_lora_q ? ff : h->n_lora_q; /* deepseek2's compressed query */
    f->hb = alloc_rows(max_tokens, ff, sizeof(float), &ok);
    f->hb2 = alloc_rows(max_tokens, ff, sizeof(float), &ok);
    if (h->n_expert > 0) {
        const int64_t used = h->n_expert_used;
        f->moe_probs = alloc_rows(max_tokens, h->n_expert, sizeof(float), &ok);
        f->moe_sel = alloc_rows(max_tokens, used, sizeof(int32_t), &ok);
        f->moe_w = alloc_rows(max_tokens, used, sizeof(float), &ok);
        f->moe_slot = alloc_rows(max_tokens, used * h->n_embd, sizeof(float), &ok);
        f->moe_xg = alloc_rows(max_tokens, used * h->n_embd, sizeof(float), &ok);
        f->moe_hg = alloc_rows(max_tokens, used * h->n_ff_exp, sizeof(float), &ok);
        f->moe_hu = alloc_rows(max_tokens, used * h->n_ff_exp, sizeof(float), &ok);
        f->moe_yg = alloc_rows(max_tokens, h->n_embd, sizeof(float), &ok);
        f->moe_pos = alloc_rows(max_tokens, used, sizeof(int32_t), &ok);
        /* deepseek2 also runs its per-head attn_k_b / attn_v_b matmuls through these (n_head of them) */
        const int32_t nj = h->n_expert + 2 > h->n_head ? h->n_expert + 2 : h->n_head;
        f->moe_jobs = alloc_rows(nj, 2, sizeof(zl_matmul_job), &ok);
        f->moe_views = alloc_rows(nj, 3, sizeof(zl_tensor), &ok);
        f->moe_rows = alloc_rows(max_tokens, used, sizeof(int32_t), &ok);
        f->moe_count = alloc_rows(h->n_expert + 1, 1, sizeof(int32_t), &ok);
        f->moe_mode = alloc_rows(max_tokens, 2 * used, 1, &ok);
        f->moe_seq = alloc_rows(max_tokens, 1, sizeof(int32_t), &ok);
    }
    if (h->n_lora_kv > 0)
        f->mla = alloc_rows(max_tokens, q_dim, sizeof(float), &ok);
    f->cs = alloc_rows(max_tokens, h->n_rot, sizeof(float), &ok);
    if (h->n_swa > 0)
        f->cs_swa = alloc_rows(max_tokens, h->n_rot, sizeof(float), &ok);
    f->seq_list = alloc_rows(max_tokens, 1, sizeof(int32_t), &ok);
    f->tok_gemm = alloc_rows(max_tokens, 1, 1, &ok);
    f->out_gemm = alloc_rows(max_tokens, 1, 1, &ok);
    if (!ok) {
        zl_fwd_destroy(f);
        return zl_err_set(err, ZL_ENOMEM, "out of memory for forward-pass scratch of %d tokens", max_tokens);
    }
    int rc;
    if (m->dm && (rc = zl_dfwd_create(m->dm, max_tokens, &f->dfwd, err)) != ZL_OK) {
        zl_fwd_destroy(f);
        return rc;
    }
    *out = f;
    return ZL_OK;
}

int32_t zl_model_auto_batch(const zl_model *m)
{
    const zl_hparams *h = &m->hp;
    /* Mixtures of experts: llama.cpp's micro-batch, whose rows per expert decide the K-quant matmul path (moe.c);
     * each expert's weights are read once per batch, so longer batches also read fewer weight bytes per token. */
    if (h->n_expert > 0)
        return 512;
    const int64_t q_dim = (int64_t)h->n_head * h->head_dim, kv_dim = (int64_t)h->n_head_kv * h->head_dim;
    int64_t widest = h->n_ff > h->n_embd ? h->n_ff : h->n_embd;
    widest = q_dim > widest ? q_dim : widest;
    /* floats per token in zl_fwd_create's buffers, and the matmul's activation copy (at most 4 bytes each) */
    const int64_t floats = 3 * h->n_embd + 2 * q_dim + 2 * kv_dim + 2 * h->n_ff + 2 * h->n_rot + widest;
    const double per_token = 4.0 * (double)floats;
    double weights = 0;
    for (size_t i = 0; i < m->n_bound; i++)
        weights += (double)m->bound[i]->size;
    /* prompts on the AMX tiles unpack each weight panel once per batch: twice the budget (1B Q4_0 pp512 at 256
     * instead of 128 tokens: +8%, peak +16 MiB) */
    const double budget = m->tiles ? weights / 16 : weights / 32;
    int32_t batch = 512;
    while (batch > 64 && (double)batch * per_token > budget)
        batch /= 2;
    return batch;
}

void zl_fwd_destroy(zl_fwd *f)
{
    if (!f)
        return;
    zl_dfwd_destroy(f->dfwd);
    free(f->x);
    free(f->xb);
    free(f->xb2);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->att);
    free(f->hb);
    free(f->hb2);
    free(f->moe_probs);
    free(f->moe_sel);
    free(f->moe_w);
    free(f->moe_slot);
    free(f->moe_xg);
    free(f->moe_hg);
    free(f->moe_hu);
    free(f->moe_yg);
    free(f->moe_pos);
    free(f->moe_jobs);
    free(f->moe_views);
    free(f->moe_rows);
    free(f->moe_count);
    free(f->moe_mode);
    free(f->moe_seq);
    free(f->mla);
    free(f->cs);
    free(f->cs_swa);
    free(f->seq_list);
    free(f->tok_gemm);
    free(f->out_gemm);
    free(f->seq_next);
    free(f->seq_start);
    free(f->scores);
    free(f->q_conv);
    free(f->v_row);
    free(f->v_lanes);
    free(f->v_blk);
    free(f);
}

/* Grows the scratch that depends on the KV cache and the thread count (first pass with a new cache only). */
static int fwd_fit(const zl_model *m, zl_fwd *f, const zl_kv *kv, int nth, zl_err *err)
{
    const zl_kv_params *p = zl_kv_get_params(kv);
    if (p->max_seqs > f->seq_cap) {
        int32_t *a = realloc(f->seq_next, (size_t)p->max_seqs * sizeof *a);
        if (a)
            f->seq_next = a;
        int32_t *b = realloc(f->seq_start, (size_t)p->max_seqs * sizeof *b);
        if (b)
            f->seq_start = b;
        if (!a || !b)
            return zl_err_set(err, ZL_ENOMEM, "out of memory for %d sequences", p->max_seqs);
        for (int32_t s = f->seq_cap; s < p->max_seqs; s++)
            f->seq_next[s] = -1;
        f->seq_cap = p->max_seqs;
    }
    const int32_t ctx = zl_kv_max_seq_len(kv);
    if (nth > f->thr_cap || ctx > f->ctx_cap || ctx / p->block_size + 2 > f->blk_cap) {
        const int n_thr = nth > f->thr_cap ? nth : f->thr_cap;
        const int32_t n_ctx = ctx > f->ctx_cap ? ctx : f->ctx_cap;
        const size_t hd = (size_t)m->hp.head_dim;
        float *sc = malloc((size_t)n_thr * ZL_ATT_GROUP * (size_t)n_ctx * sizeof *sc);
        void *qc = malloc((size_t)n_thr * (ZL_ATT_GROUP + 1) * hd * sizeof(float));
        float *vr = malloc((size_t)n_thr * hd * sizeof *vr);
        float *vl = malloc((size_t)n_thr * ZL_ATT_GROUP * ZL_ATT_MAX_LANES * hd * sizeof *vl);
        const int32_t n_blk = n_ctx / p->block_size + 2 > f->blk_cap ? n_ctx / p->block_size + 2 : f->blk_cap;
        const char **vb = malloc((size_t)n_thr * (size_t)n_blk * sizeof *vb);
        if (!sc || !qc || !vr || !vl || !vb) {
            free(sc);
            free(qc);
            free(vr);
            free(vl);
            free(vb);
            return zl_err_set(err, ZL_ENOMEM, "out of memory for attention scratch (%d threads x %d positions)",
                              n_thr, n_ctx);
        }
        free(f->scores);
        free(f->q_conv);
        free(f->v_row);
        free(f->v_lanes);
        free(f->v_blk);
        f->v_blk = vb;
        f->blk_cap = n_blk;
        f->scores = sc;
        f->q_conv = qc;
        f->v_row = vr;
        f->v_lanes = vl;
        f->thr_cap = n_thr;
        f->ctx_cap = n_ctx;
    }
    return ZL_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
/* Forward */

/* Puts every sequence of the batch back to its length before the batch. */
static void rollback(zl_kv *kv, zl_fwd *f, int32_t n_seq)
{
    for (int32_t j = 0; j < n_seq; j++)
        zl_kv_seq_truncate(kv, f->seq_list[j], f->seq_start[f->seq_list[j]]);
}

static void reset_seqs(zl_fwd *f, int32_t n_seq)
{
    for (int32_t j = 0; j < n_seq; j++)
        f->seq_next[f->seq_list[j]] = -1;
}

int zl_model_forward(const zl_model *m, zl_cpu *cpu, zl_kv *kv, zl_fwd *fwd, const zl_batch *b, float *out,
                     zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const zl_kv_params *kp = zl_kv_get_params(kv);
    if (b->n <= 0 || b->n > fwd->max_tokens)
        return zl_err_set(err, ZL_EINVAL, "batch of %d tokens out of range (1 .. %d)", b->n, fwd->max_tokens);
    if (!b->token || !b->pos || !b->seq || !b->logits)
        return zl_err_set(err, ZL_EINVAL, "batch is missing its token, pos, seq or logits array");
    if (kp->n_layer != h->n_layer || kp->kv_dim != h->n_head_kv * h->head_dim || kp->k_only != (h->n_lora_kv > 0))
        return zl_err_set(err, ZL_EINVAL, "kv cache (%d layers, kv_dim %d) does not fit the model (%d, %d)",
                          kp->n_layer, kp->kv_dim, h->n_layer, h->n_head_kv * h->head_dim);
    int rc = fwd_fit(m, fwd, kv, zl_cpu_n_threads(cpu), err);
    if (rc != ZL_OK)
        return rc;

    /* Check every token, and that each sequence's positions continue what the cache stores, consecutively. */
    int32_t n_seq = 0, n_out = 0;
    for (int32_t i = 0; i < b->n; i++) {
        const int32_t tok = b->token[i], s = b->seq[i], pos = b->pos[i];
        if (tok < 0 || tok >= h->n_vocab) {
            reset_seqs(fwd, n_seq);
            return zl_err_set(err, ZL_ERANGE, "batch token %d: id %d out of range (vocabulary %d)", i, tok,
                              h->n_vocab);
        }
        if (s < 0 || s >= kp->max_seqs) {
            reset_seqs(fwd, n_seq);
            return zl_err_set(err, ZL_ERANGE, "batch token %d: sequence %d out of range (0 .. %d)", i, s,
                              kp->max_seqs - 1);
        }
        if (fwd->seq_next[s] < 0) {
            fwd->seq_start[s] = fwd->seq_next[s] = zl_kv_seq_len(kv, s);
            fwd->seq_list[n_seq++] = s;
        }
        if (pos != fwd->seq_next[s]) {
            const int32_t want = fwd->seq_next[s];
            reset_seqs(fwd, n_seq);
            return zl_err_set(err, ZL_ERANGE, "batch token %d: position %d of sequence %d, expected %d", i, pos,
                              s, want);
        }
        if (pos == INT32_MAX) {
            reset_seqs(fwd, n_seq);
            return zl_err_set(err, ZL_ERANGE, "batch token %d: position %d too large", i, pos);
        }
        fwd->seq_next[s] = pos + 1;
        n_out += b->logits[i] != 0;
    }
    if (n_out > 0 && !out) {
        reset_seqs(fwd, n_seq);
        return zl_err_set(err, ZL_EINVAL, "batch asks for %d rows of logits but no output buffer was given", n_out);
    }

    /* Reserve the new positions; all or nothing. */
    for (int32_t j = 0; j < n_seq; j++) {
        const int32_t s = fwd->seq_list[j];
        if ((rc = zl_kv_seq_reserve(kv, s, fwd->seq_next[s], err)) != ZL_OK) {
            rollback(kv, fwd, j);
            reset_seqs(fwd, n_seq);
            return rc;
        }
    }
    /* Which arithmetic each token and each logits row gets (see zl_batch.gemm): the output matmul of llama.cpp
     * is one over the rows that want logits, so a row takes the multi-token form when its sequence asks for 2+. */
    const int8_t batch_mode = b->n >= 8 ? ZL_MODE_MULTI8 : b->n >= 2 ? ZL_MODE_MULTI : ZL_MODE_ONE;
    for (int32_t i = 0, r = 0; i < b->n; i++) {
        const int8_t g = b->gemm ? (int8_t)(b->gemm[i] & ZL_MODE_MASK) : batch_mode;
        const bool tail = b->gemm ? (b->gemm[i] & ZL_MODE_TAIL4) != 0 : i >= b->n - b->n % 4;
        fwd->tok_gemm[i] = g < ZL_MODE_ONE ? ZL_MODE_ONE : g > ZL_MODE_MULTI8 ? ZL_MODE_MULTI8 : g;
        if (fwd->tok_gemm[i] != ZL_MODE_ONE && tail)
            fwd->tok_gemm[i] |= ZL_MODE_TAIL4;
        if (!b->logits[i])
            continue;
        if (b->out_gemm) {
            const int8_t og = (int8_t)(b->out_gemm[i] & ZL_MODE_MASK);
            fwd->out_gemm[r] = og < ZL_MODE_ONE ? ZL_MODE_ONE : og > ZL_MODE_MULTI8 ? ZL_MODE_MULTI8 : og;
            if (fwd->out_gemm[r] != ZL_MODE_ONE && (b->out_gemm[i] & ZL_MODE_TAIL4))
                fwd->out_gemm[r] |= ZL_MODE_TAIL4;
            r++;
            continue;
        }
        int32_t same = 0, before = 0; /* logits rows of this sequence in the batch, and those before row i */
        for (int32_t j = 0; j < b->n; j++)
            if (b->logits[j] && b->seq[j] == b->seq[i]) {
                same++;
                before += j < i;
            }
        int8_t o = same >= 8 ? ZL_MODE_MULTI8 : same >= 2 ? ZL_MODE_MULTI : ZL_MODE_ONE;
        if (o != ZL_MODE_ONE && before >= same - same % 4)
            o |= ZL_MODE_TAIL4;
        fwd->out_gemm[r++] = o;
    }
    rc = fwd->dfwd ? zl_dev_forward(m, fwd->dfwd, kv, b, fwd->tok_gemm, fwd->out_gemm, out, err)
                   : m->impl->forward(m, cpu, kv, fwd, b, out, err);
    if (rc != ZL_OK)
        rollback(kv, fwd, n_seq);
    reset_seqs(fwd, n_seq);
    return rc;
}
