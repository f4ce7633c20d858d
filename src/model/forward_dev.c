/*
 * forward_dev.c - the forward pass of every family (llama, qwen2, qwen3, gemma3) written once against the device
 * interface (backend/backend.h), and the placement of a model's weights on devices.
 *
 * Placement (zl_dmodel_create): with gpu_layers = N of n_layer, the first n_layer - N layers run on the CPU
 * backend and the last N on the device (llama.cpp's -ngl counts the same way); the embedding goes with layer 0 and
 * the output head with the last layer. Activations of a batch pass between the two once per step (n * n_embd
 * floats). Every op a part needs is asked of its device first (supports()), so a model a device cannot run is
 * refused at load in one line.
 *
 * Per step (zl_dev_forward): the host turns the batch into what the ops take: each token's cache slot (its
 * sequence's block table entry * block_size + offset) and the block tables of the batch's sequences, RoPE cos/sin
 * tables (zl_model_rope_table, so every RoPE scaling the CPU path has is the same here), the rows that want
 * logits. The host KV cache (engine/kvcache.h) keeps the block tables, refcounts and prefix sharing; each part's
 * device holds the bytes of its layers' K and V (a zl_dkv with the same block ids), created at the first step
 * with the cache's parameters.
 *
 * The CPU production path (the family files) stays as it is: it is bit-identical to llama.cpp, which this pass is
 * not (its attention and the devices' float orders differ); a model placed on a device runs here instead.
 *
 * Threads: a device is driven by one thread at a time; zl_dev_forward takes the model's placement lock, so two
 * sessions of one model on a device take turns.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "model/arch.h"

typedef struct dlayer {
    zl_buf attn_norm, bq, bk, bv, bo, q_norm, k_norm, attn_post_norm, ffn_norm, ffn_post_norm;
    zl_dweight wq, wk, wv, wo, w_gate, w_up, w_down;
} dlayer;

typedef struct dpart {
    zl_dev *dev;
    bool own_dev;     /* opened by the placement (the CPU part) */
    int32_t l0, l1;   /* layers [l0, l1) */
    dlayer *layers;   /* l1 - l0 */
    zl_dmem **mems;   /* vector allocations, freed at the end */
    size_t n_mems, cap_mems;
    uint64_t bytes;   /* weight bytes placed */
} dpart;

struct zl_dmodel {
    const zl_model *m;
    dpart part[2];    /* [0] CPU layers (maybe none), [1] device layers */
    int n_part;
    zl_dweight tok_embd, output;
    int embd_part, out_part;
    bool output_shared; /* output is tok_embd (tied) on the same part */
    zl_buf output_norm;
    pthread_mutex_t lock;
    char summary[400];
};

/* ---- placement ---- */
static int keep_mem(dpart *p, zl_dmem *m)
{
    if (p->n_mems == p->cap_mems) {
        const size_t cap = p->cap_mems ? 2 * p->cap_mems : 64;
        zl_dmem **nm = realloc(p->mems, cap * sizeof *nm);
        if (!nm)
            return ZL_ENOMEM;
        p->mems = nm;
        p->cap_mems = cap;
    }
    p->mems[p->n_mems++] = m;
    return ZL_OK;
}

static int put_vec(dpart *p, const float *v, int64_t n, zl_buf *out, zl_err *err)
{
    *out = (zl_buf){0};
    if (!v)
        return ZL_OK;
    zl_dmem *mem;
    int rc = p->dev->ops->alloc(p->dev, (uint64_t)n * 4, &mem, err);
    if (rc != ZL_OK)
        return rc;
    if ((rc = keep_mem(p, mem)) != ZL_OK) {
        p->dev->ops->free(p->dev, mem);
        return zl_err_set(err, rc, "out of memory");
    }
    if ((rc = p->dev->ops->write(p->dev, (zl_buf){mem, 0}, v, (uint64_t)n * 4)) != ZL_OK)
        return zl_err_set(err, rc, "%s: writing a vector failed", p->dev->info.kind);
    *out = (zl_buf){mem, 0};
    p->bytes += (uint64_t)n * 4;
    return ZL_OK;
}

static int ask(zl_dev *d, zl_op op, uint32_t type, int64_t a, int64_t b, int64_t c, const char *what, zl_err *err)
{
    const int64_t shape[4] = {a, b, c, 0};
    if (d->ops->supports(d, op, type, shape))
        return ZL_OK;
    return zl_err_set(err, ZL_EUNSUPPORTED, "%s:%d (%s) cannot run %s of %s (type %s, shape %lld x %lld)",
                      d->info.kind, d->info.index, d->info.name, zl_op_name(op), what, zl_type_traits_get(type)->name,
                      (long long)a, (long long)b);
}

static int put_mat(dpart *p, const zl_tensor *t, zl_dweight *w, zl_err *err)
{
    memset(w, 0, sizeof *w);
    if (!t->data)
        return ZL_OK;
    int rc = ask(p->dev, ZL_OP_MATMUL, t->type, t->ne[0], t->ne[1], 1, t->name, err);
    if (rc != ZL_OK)
        return rc;
    if ((rc = p->dev->ops->weight_upload(p->dev, t, w, err)) != ZL_OK)
        return rc;
    p->bytes += (uint64_t)t->nb1 * (uint64_t)t->ne[1];
    return ZL_OK;
}

static int place_layer(const zl_model *m, dpart *p, int32_t il, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const zl_layer *l = &m->layers[il];
    dlayer *d = &p->layers[il - p->l0];
    const int64_t e = h->n_embd, qd = (int64_t)h->n_head * h->head_dim, kvd = (int64_t)h->n_head_kv * h->head_dim;
    int rc;
    if ((rc = put_vec(p, l->attn_norm, e, &d->attn_norm, err)) || (rc = put_vec(p, l->bq, qd, &d->bq, err)) ||
        (rc = put_vec(p, l->bk, kvd, &d->bk, err)) || (rc = put_vec(p, l->bv, kvd, &d->bv, err)) ||
        (rc = put_vec(p, l->bo, e, &d->bo, err)) || (rc = put_vec(p, l->attn_q_norm, h->head_dim, &d->q_norm, err)) ||
        (rc = put_vec(p, l->attn_k_norm, h->head_dim, &d->k_norm, err)) ||
        (rc = put_vec(p, l->attn_post_norm, e, &d->attn_post_norm, err)) ||
        (rc = put_vec(p, l->ffn_norm, e, &d->ffn_norm, err)) ||
        (rc = put_vec(p, l->ffn_post_norm, e, &d->ffn_post_norm, err)))
        return rc;
    if ((rc = put_mat(p, &l->wq, &d->wq, err)) || (rc = put_mat(p, &l->wk, &d->wk, err)) ||
        (rc = put_mat(p, &l->wv, &d->wv, err)) || (rc = put_mat(p, &l->wo, &d->wo, err)) ||
        (rc = put_mat(p, &l->w_gate, &d->w_gate, err)) || (rc = put_mat(p, &l->w_up, &d->w_up, err)) ||
        (rc = put_mat(p, &l->w_down, &d->w_down, err)))
        return rc;
    return ZL_OK;
}

static uint64_t layer_bytes(const zl_layer *l)
{
    const zl_tensor *t[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    uint64_t s = 0;
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (t[i]->data)
            s += (uint64_t)t[i]->nb1 * (uint64_t)t[i]->ne[1];
    return s;
}

void zl_dmodel_free(zl_dmodel *dm)
{
    if (!dm)
        return;
    for (int pi = 0; pi < dm->n_part; pi++) {
        dpart *p = &dm->part[pi];
        if (!p->dev)
            continue;
        const zl_dev_ops *o = p->dev->ops;
        if (p->layers)
            for (int32_t il = p->l0; il < p->l1; il++) {
                dlayer *d = &p->layers[il - p->l0];
                zl_dweight *w[] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w_gate, &d->w_up, &d->w_down};
                for (size_t i = 0; i < sizeof w / sizeof *w; i++)
                    if (w[i]->host)
                        o->weight_free(p->dev, w[i]);
            }
        if (pi == dm->embd_part && dm->tok_embd.host)
            o->weight_free(p->dev, &dm->tok_embd);
        if (pi == dm->out_part && dm->output.host && !dm->output_shared)
            o->weight_free(p->dev, &dm->output);
        for (size_t i = 0; i < p->n_mems; i++)
            o->free(p->dev, p->mems[i]);
        free(p->mems);
        free(p->layers);
        if (p->own_dev)
            zl_dev_close(p->dev);
    }
    pthread_mutex_destroy(&dm->lock);
    free(dm);
}

int zl_dmodel_create(const zl_model *m, zl_dev *dev, int32_t gpu_layers, zl_dmodel **out, zl_err *err)
{
    const zl_hparams *h = &m->hp;
    const int32_t nl = h->n_layer;
    if (gpu_layers > nl)
        gpu_layers = nl;
    /* Default: every layer if the weights fit the device's memory (with a tenth kept for the KV cache and
     * scratch), else as many as fit. */
    const uint64_t head = (uint64_t)m->tok_embd.nb1 * (uint64_t)m->tok_embd.ne[1] +
                          (m->output.data != m->tok_embd.data ? (uint64_t)m->output.nb1 * (uint64_t)m->output.ne[1] : 0);
    /* ZILI_DEVICE_MEMORY_MB: plan as if the device had that much (tests of the fitting rules) */
    uint64_t memory = dev->info.memory;
    const char *env = getenv("ZILI_DEVICE_MEMORY_MB");
    if (env && atoll(env) > 0)
        memory = (uint64_t)atoll(env) << 20;
    const uint64_t room = memory / 10 * 9;
    uint64_t need = head;
    int32_t fit = 0;
    for (int32_t il = nl - 1; il >= 0; il--) {
        need += layer_bytes(&m->layers[il]);
        if (need > room)
            break;
        fit++;
    }
    if (head > room)
        fit = 0;
    uint64_t total = head;
    for (int32_t il = 0; il < nl; il++)
        total += layer_bytes(&m->layers[il]);
    char note[160] = "";
    if (gpu_layers < 0) {
        gpu_layers = fit;
        if (fit < nl)
            snprintf(note, sizeof note, " (the model needs %.0f MiB, the device has %.0f MiB: %d of %d layers fit)",
                     (double)total / 1048576.0, (double)memory / 1048576.0, fit, nl);
    } else if (gpu_layers > fit) {
        return zl_err_set(err, ZL_EFULL,
                          "%s:%d (%s): %d layers do not fit its %.0f MiB (at most %d do; use --gpu-layers %d)",
                          dev->info.kind, dev->info.index, dev->info.name, gpu_layers,
                          (double)memory / 1048576.0, fit, fit);
    }

    zl_dmodel *dm = calloc(1, sizeof *dm);
    if (!dm)
        return zl_err_set(err, ZL_ENOMEM, "out of memory");
    dm->m = m;
    pthread_mutex_init(&dm->lock, NULL);
    int rc = ZL_OK;
    const int32_t n_cpu = nl - gpu_layers;
    dm->n_part = 2;
    dm->part[0] = (dpart){.l0 = 0, .l1 = n_cpu};
    dm->part[1] = (dpart){.dev = dev, .l0 = n_cpu, .l1 = nl};
    if (n_cpu > 0 && (rc = zl_dev_open("cpu", &dm->part[0].dev, err)) != ZL_OK)
        goto fail;
    dm->part[0].own_dev = n_cpu > 0;
    dm->embd_part = n_cpu > 0 ? 0 : 1;
    dm->out_part = gpu_layers > 0 ? 1 : 0;
    for (int pi = 0; pi < 2; pi++) {
        dpart *p = &dm->part[pi];
        if (p->l1 == p->l0)
            continue;
        const int64_t att_shape[4] = {h->head_dim, h->n_head, h->n_head_kv, 0};
        if (!p->dev->ops->supports(p->dev, ZL_OP_ATTENTION, ZL_F16, att_shape)) {
            rc = zl_err_set(err, ZL_EUNSUPPORTED, "%s:%d (%s) cannot run attention with %d heads of %d",
                            p->dev->info.kind, p->dev->info.index, p->dev->info.name, h->n_head, h->head_dim);
            goto fail;
        }
        if (!(p->layers = calloc((size_t)(p->l1 - p->l0), sizeof *p->layers))) {
            rc = zl_err_set(err, ZL_ENOMEM, "out of memory");
            goto fail;
        }
        for (int32_t il = p->l0; il < p->l1; il++)
            if ((rc = place_layer(m, p, il, err)) != ZL_OK)
                goto fail;
    }
    dpart *pe = &dm->part[dm->embd_part], *po = &dm->part[dm->out_part];
    if ((rc = ask(pe->dev, ZL_OP_GET_ROWS, m->tok_embd.type, m->tok_embd.ne[0], m->tok_embd.ne[1], 1,
                  m->tok_embd.name, err)) != ZL_OK ||
        (rc = pe->dev->ops->weight_upload(pe->dev, &m->tok_embd, &dm->tok_embd, err)) != ZL_OK)
        goto fail;
    pe->bytes += (uint64_t)m->tok_embd.nb1 * (uint64_t)m->tok_embd.ne[1];
    if (m->output.data == m->tok_embd.data && dm->out_part == dm->embd_part) {
        if ((rc = ask(po->dev, ZL_OP_MATMUL, m->output.type, m->output.ne[0], m->output.ne[1], 1, m->output.name,
                      err)) != ZL_OK)
            goto fail;
        dm->output = dm->tok_embd;
        dm->output_shared = true;
    } else if ((rc = put_mat(po, &m->output, &dm->output, err)) != ZL_OK) {
        goto fail;
    }
    if ((rc = put_vec(po, m->output_norm, h->n_embd, &dm->output_norm, err)) != ZL_OK)
        goto fail;
    if ((rc = dev->ops->sync(dev)) != ZL_OK) {
        rc = zl_err_set(err, rc, "%s: device lost while uploading weights", dev->info.kind);
        goto fail;
    }
    snprintf(dm->summary, sizeof dm->summary, "%s:%d (%s): %d of %d layers, %.0f MiB of weights%s",
             dev->info.kind, dev->info.index, dev->info.name, gpu_layers, nl,
             (double)dm->part[1].bytes / 1048576.0, note);
    *out = dm;
    return ZL_OK;
fail:
    zl_dmodel_free(dm);
    return rc;
}

const char *zl_dmodel_summary(const zl_dmodel *dm)
{
    return dm->summary;
}

int32_t zl_dmodel_gpu_layers(const zl_dmodel *dm)
{
    return dm->part[1].l1 - dm->part[1].l0;
}

/* ---- per-forward state ---- */
enum { B_X, B_XB, B_XB2, B_Q, B_K, B_V, B_ATT, B_HB, B_HB2, B_COUNT };

typedef struct dscratch {
    zl_dmem *buf[B_COUNT];
    zl_dmem *logits;
    uint64_t logits_bytes;
    zl_dkv *kv;
    zl_dkv_params kvp;
} dscratch;

struct zl_dfwd {
    zl_dmodel *dm;
    int32_t max_tokens;
    dscratch s[2];
    /* host arrays of one step */
    int32_t *slots, *tbl_off, *tables, *rows;
    int32_t tables_cap;
    float *cs, *cs_swa, *x_host;
};

void zl_dfwd_destroy(zl_dfwd *f)
{
    if (!f)
        return;
    for (int pi = 0; pi < 2; pi++) {
        dpart *p = &f->dm->part[pi];
        if (!p->dev)
            continue;
        for (int i = 0; i < B_COUNT; i++)
            if (f->s[pi].buf[i])
                p->dev->ops->free(p->dev, f->s[pi].buf[i]);
        if (f->s[pi].logits)
            p->dev->ops->free(p->dev, f->s[pi].logits);
        if (f->s[pi].kv)
            p->dev->ops->kv_destroy(p->dev, f->s[pi].kv);
    }
    free(f->slots);
    free(f->tbl_off);
    free(f->tables);
    free(f->rows);
    free(f->cs);
    free(f->cs_swa);
    free(f->x_host);
    free(f);
}

int zl_dfwd_create(zl_dmodel *dm, int32_t max_tokens, zl_dfwd **out, zl_err *err)
{
    const zl_hparams *h = &dm->m->hp;
    zl_dfwd *f = calloc(1, sizeof *f);
    if (!f)
        return zl_err_set(err, ZL_ENOMEM, "out of memory");
    f->dm = dm;
    f->max_tokens = max_tokens;
    const size_t n = (size_t)max_tokens;
    f->slots = malloc(n * sizeof *f->slots);
    f->tbl_off = malloc(n * sizeof *f->tbl_off);
    f->rows = malloc(n * sizeof *f->rows);
    f->cs = malloc(n * (size_t)h->n_rot * sizeof *f->cs);
    f->cs_swa = malloc(n * (size_t)h->n_rot * sizeof *f->cs_swa);
    f->x_host = malloc(n * (size_t)h->n_embd * sizeof *f->x_host);
    int rc = ZL_OK;
    if (!f->slots || !f->tbl_off || !f->rows || !f->cs || !f->cs_swa || !f->x_host) {
        rc = zl_err_set(err, ZL_ENOMEM, "out of memory for device forward scratch");
        goto fail;
    }
    const int64_t qd = (int64_t)h->n_head * h->head_dim, kvd = (int64_t)h->n_head_kv * h->head_dim;
    const int64_t width[B_COUNT] = {h->n_embd, h->n_embd, h->n_embd, qd, kvd, kvd, qd, h->n_ff, h->n_ff};
    for (int pi = 0; pi < 2; pi++) {
        dpart *p = &dm->part[pi];
        if (!p->dev || (p->l1 == p->l0 && pi != dm->out_part && pi != dm->embd_part))
            continue;
        for (int i = 0; i < B_COUNT; i++)
            if ((rc = p->dev->ops->alloc(p->dev, (uint64_t)n * (uint64_t)width[i] * 4, &f->s[pi].buf[i], err)) !=
                ZL_OK)
                goto fail;
    }
    *out = f;
    return ZL_OK;
fail:
    zl_dfwd_destroy(f);
    return rc;
}

#define BUF(s, i) ((zl_buf){(s)->buf[i], 0})

/* The pools of each part for the host cache's parameters (made at the first step, remade if they change). */
static int ensure_kv(zl_dfwd *f, const zl_kv_params *kp, zl_err *err)
{
    for (int pi = 0; pi < 2; pi++) {
        dpart *p = &f->dm->part[pi];
        dscratch *s = &f->s[pi];
        if (p->l1 == p->l0)
            continue;
        const zl_dkv_params want = {.n_layer = p->l1 - p->l0, .kv_dim = kp->kv_dim, .block_size = kp->block_size,
                                    .n_blocks = kp->n_blocks, .type = kp->type};
        if (s->kv && !memcmp(&s->kvp, &want, sizeof want))
            continue;
        if (s->kv)
            p->dev->ops->kv_destroy(p->dev, s->kv);
        s->kv = NULL;
        int rc = p->dev->ops->kv_create(p->dev, &want, &s->kv, err);
        if (rc != ZL_OK)
            return rc;
        s->kvp = want;
    }
    return ZL_OK;
}

typedef struct step {
    int32_t n;
    const int8_t *modes;
    zl_attn_args att;
} step;

#define TRY(x)                                                                                                      \
    do {                                                                                                            \
        if ((rc = (x)) != ZL_OK)                                                                                    \
            return rc;                                                                                              \
    } while (0)

static int layer(const zl_model *m, zl_dfwd *f, int pi, int32_t il, const step *st)
{
    const zl_hparams *h = &m->hp;
    dpart *p = &f->dm->part[pi];
    dscratch *s = &f->s[pi];
    zl_dev *d = p->dev;
    const zl_dev_ops *o = d->ops;
    const dlayer *L = &p->layers[il - p->l0];
    const zl_layer *hl = &m->layers[il];
    const int32_t n = st->n;
    const int64_t e = h->n_embd, qd = (int64_t)h->n_head * h->head_dim, kvd = (int64_t)h->n_head_kv * h->head_dim;
    int rc;

    TRY(o->rmsnorm(d, BUF(s, B_XB), BUF(s, B_X), L->attn_norm, n, e, h->norm_eps));
    TRY(o->matmul(d, &L->wq, BUF(s, B_XB), n, BUF(s, B_Q), st->modes));
    TRY(o->matmul(d, &L->wk, BUF(s, B_XB), n, BUF(s, B_K), st->modes));
    TRY(o->matmul(d, &L->wv, BUF(s, B_XB), n, BUF(s, B_V), st->modes));
    if (L->bq.mem)
        TRY(o->add_rows(d, BUF(s, B_Q), L->bq, n, qd));
    if (L->bk.mem)
        TRY(o->add_rows(d, BUF(s, B_K), L->bk, n, kvd));
    if (L->bv.mem)
        TRY(o->add_rows(d, BUF(s, B_V), L->bv, n, kvd));
    if (L->q_norm.mem)
        TRY(o->rmsnorm(d, BUF(s, B_Q), BUF(s, B_Q), L->q_norm, (int64_t)n * h->n_head, h->head_dim, h->norm_eps));
    if (L->k_norm.mem)
        TRY(o->rmsnorm(d, BUF(s, B_K), BUF(s, B_K), L->k_norm, (int64_t)n * h->n_head_kv, h->head_dim, h->norm_eps));
    const float *cs = hl->swa && h->arch == ZL_ARCH_GEMMA3 ? f->cs_swa : f->cs;
    TRY(o->rope(d, BUF(s, B_Q), n, h->n_head, h->head_dim, h->n_rot, cs, h->rope_neox));
    TRY(o->rope(d, BUF(s, B_K), n, h->n_head_kv, h->head_dim, h->n_rot, cs, h->rope_neox));
    if (h->arch == ZL_ARCH_GEMMA3)
        TRY(o->scale(d, BUF(s, B_Q), zl_gemma3_q_scale(h), (int64_t)n * qd));
    TRY(o->kv_store(d, s->kv, il - p->l0, BUF(s, B_K), BUF(s, B_V), f->slots, n));
    zl_attn_args a = st->att;
    a.window = hl->swa ? h->n_swa : 0;
    TRY(o->attention(d, s->kv, il - p->l0, BUF(s, B_Q), BUF(s, B_ATT), &a));
    TRY(o->matmul(d, &L->wo, BUF(s, B_ATT), n, BUF(s, B_XB2), st->modes));
    if (L->bo.mem)
        TRY(o->add_rows(d, BUF(s, B_XB2), L->bo, n, e));
    if (L->attn_post_norm.mem)
        TRY(o->rmsnorm(d, BUF(s, B_XB2), BUF(s, B_XB2), L->attn_post_norm, n, e, h->norm_eps));
    TRY(o->add(d, BUF(s, B_X), BUF(s, B_XB2), (int64_t)n * e));

    TRY(o->rmsnorm(d, BUF(s, B_XB), BUF(s, B_X), L->ffn_norm, n, e, h->norm_eps));
    TRY(o->matmul(d, &L->w_gate, BUF(s, B_XB), n, BUF(s, B_HB), st->modes));
    TRY(o->matmul(d, &L->w_up, BUF(s, B_XB), n, BUF(s, B_HB2), st->modes));
    TRY(o->glu(d, h->arch == ZL_ARCH_GEMMA3 ? ZL_GLU_GELU : ZL_GLU_SILU, BUF(s, B_HB), BUF(s, B_HB), BUF(s, B_HB2),
               (int64_t)n * h->n_ff));
    TRY(o->matmul(d, &L->w_down, BUF(s, B_HB), n, BUF(s, B_XB2), st->modes));
    if (L->ffn_post_norm.mem)
        TRY(o->rmsnorm(d, BUF(s, B_XB2), BUF(s, B_XB2), L->ffn_post_norm, n, e, h->norm_eps));
    TRY(o->add(d, BUF(s, B_X), BUF(s, B_XB2), (int64_t)n * e));
    return ZL_OK;
}

/* The step's host arrays: slots, block tables, RoPE tables. */
static int prepare(const zl_model *m, zl_dfwd *f, zl_kv *kv, const zl_batch *b, step *st)
{
    const zl_hparams *h = &m->hp;
    const int32_t bs = zl_kv_get_params(kv)->block_size;
    int32_t n_tables = 0;
    for (int32_t i = 0; i < b->n; i++) {
        /* a sequence's table once per batch: reuse the entry of an earlier token of the same sequence */
        int32_t j = 0;
        while (j < i && b->seq[j] != b->seq[i])
            j++;
        int32_t nb;
        const int32_t *tbl = zl_kv_seq_blocks(kv, b->seq[i], &nb);
        if (j < i) {
            f->tbl_off[i] = f->tbl_off[j];
        } else {
            if (n_tables + nb > f->tables_cap) {
                const int32_t cap = (n_tables + nb) * 2 + 64;
                int32_t *nt = realloc(f->tables, (size_t)cap * sizeof *nt);
                if (!nt)
                    return ZL_ENOMEM;
                f->tables = nt;
                f->tables_cap = cap;
            }
            memcpy(f->tables + n_tables, tbl, (size_t)nb * sizeof *tbl);
            f->tbl_off[i] = n_tables;
            n_tables += nb;
        }
        f->slots[i] = tbl[b->pos[i] / bs] * bs + b->pos[i] % bs;
        zl_model_rope_table(m, b->pos[i], f->cs + (size_t)i * (size_t)h->n_rot);
        if (h->arch == ZL_ARCH_GEMMA3 && h->n_swa > 0)
            zl_rope_cos_sin(f->cs_swa + (size_t)i * (size_t)h->n_rot, h->n_rot, b->pos[i], h->rope_theta_swa, 1.0f,
                            NULL, m->rope_attn_factor);
    }
    st->n = b->n;
    st->att = (zl_attn_args){.n_tok = b->n, .n_head = h->n_head, .n_head_kv = h->n_head_kv,
                             .head_dim = h->head_dim, .scale = m->kq_scale, .softcap = 0.0f, .window = 0,
                             .pos = b->pos, .tbl_off = f->tbl_off, .tables = f->tables, .n_tables = n_tables};
    return ZL_OK;
}

static int run(const zl_model *m, zl_dfwd *f, zl_kv *kv, const zl_batch *b, const int8_t *modes,
               const int8_t *out_modes, float *out)
{
    const zl_hparams *h = &m->hp;
    zl_dmodel *dm = f->dm;
    step st;
    int rc;
    TRY(prepare(m, f, kv, b, &st));
    st.modes = modes;
    const int64_t e = h->n_embd;
    int cur = dm->embd_part;
    dpart *p = &dm->part[cur];
    TRY(p->dev->ops->get_rows(p->dev, &dm->tok_embd, b->token, b->n, BUF(&f->s[cur], B_X)));
    if (h->arch == ZL_ARCH_GEMMA3)
        TRY(p->dev->ops->scale(p->dev, BUF(&f->s[cur], B_X), sqrtf((float)h->n_embd), (int64_t)b->n * e));
    for (int32_t il = 0; il < h->n_layer; il++) {
        const int want = il < dm->part[0].l1 ? 0 : 1;
        if (want != cur) { /* hand the residual stream over */
            const uint64_t bytes = (uint64_t)b->n * (uint64_t)e * 4;
            TRY(dm->part[cur].dev->ops->read(dm->part[cur].dev, f->x_host, BUF(&f->s[cur], B_X), bytes));
            TRY(dm->part[want].dev->ops->write(dm->part[want].dev, BUF(&f->s[want], B_X), f->x_host, bytes));
            cur = want;
        }
        TRY(layer(m, f, cur, il, &st));
    }
    if (cur != dm->out_part) {
        const uint64_t bytes = (uint64_t)b->n * (uint64_t)e * 4;
        TRY(dm->part[cur].dev->ops->read(dm->part[cur].dev, f->x_host, BUF(&f->s[cur], B_X), bytes));
        cur = dm->out_part;
        TRY(dm->part[cur].dev->ops->write(dm->part[cur].dev, BUF(&f->s[cur], B_X), f->x_host, bytes));
    }
    p = &dm->part[cur];
    dscratch *s = &f->s[cur];
    zl_dev *d = p->dev;
    int32_t n_out = 0;
    for (int32_t i = 0; i < b->n; i++)
        if (b->logits[i])
            f->rows[n_out++] = i;
    if (n_out == 0)
        return d->ops->sync(d);
    const uint64_t lbytes = (uint64_t)n_out * (uint64_t)h->n_vocab * 4;
    if (lbytes > s->logits_bytes) {
        if (s->logits)
            d->ops->free(d, s->logits);
        s->logits = NULL;
        s->logits_bytes = 0;
        TRY(d->ops->alloc(d, lbytes, &s->logits, NULL));
        s->logits_bytes = lbytes;
    }
    TRY(d->ops->gather(d, BUF(s, B_XB), BUF(s, B_X), f->rows, n_out, e));
    TRY(d->ops->rmsnorm(d, BUF(s, B_XB), BUF(s, B_XB), dm->output_norm, n_out, e, h->norm_eps));
    TRY(d->ops->matmul(d, &dm->output, BUF(s, B_XB), n_out, (zl_buf){s->logits, 0}, out_modes));
    if (h->logit_softcap > 0.0f)
        TRY(d->ops->softcap(d, (zl_buf){s->logits, 0}, h->logit_softcap, (int64_t)n_out * h->n_vocab));
    return d->ops->read(d, out, (zl_buf){s->logits, 0}, lbytes);
}

int zl_dev_forward(const zl_model *m, zl_dfwd *f, zl_kv *kv, const zl_batch *b, const int8_t *modes,
                   const int8_t *out_modes, float *out, zl_err *err)
{
    zl_dmodel *dm = f->dm;
    if (b->n > f->max_tokens)
        return zl_err_set(err, ZL_EINVAL, "batch of %d tokens exceeds the device scratch (%d)", b->n, f->max_tokens);
    pthread_mutex_lock(&dm->lock);
    int rc = ensure_kv(f, zl_kv_get_params(kv), err);
    if (rc == ZL_OK) {
        rc = run(m, f, kv, b, modes, out_modes, out);
        if (rc != ZL_OK) {
            for (int pi = 0; pi < 2; pi++)
                if (dm->part[pi].dev)
                    dm->part[pi].dev->ops->sync(dm->part[pi].dev);
            zl_err_set(err, rc, "%s: forward pass on %s failed: %s", gguf_path(m->gguf), dm->part[1].dev->info.kind,
                       zl_status_str(rc));
        }
    }
    pthread_mutex_unlock(&dm->lock);
    return rc;
}
