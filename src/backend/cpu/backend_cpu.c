/*
 * backend_cpu.c - the CPU as a device (backend/backend.h): every op over host memory through the kernels of
 * ops.h, on a thread pool the device owns.
 *
 * Device memory is host memory: a zl_dmem is one 64-byte aligned block and a weight is its host tensor itself
 * (zero-copy; the model's mapping stays the only copy). The stream is synchronous: each op has finished when it
 * returns, so host arrays an op takes need no copy and sync has nothing to wait for.
 *
 * Every entry checks its arguments (buffers present and large enough, float offsets 4-byte aligned, counts not
 * negative, ids / slots / block tables in range) and returns ZL_EINVAL instead of touching memory it was not given;
 * the Vulkan backend makes the same checks, so a caller's mistake reads the same on both.
 *
 * The KV pool: one block of host memory, layer-major; in each layer n_blocks blocks, each block K (block_size rows
 * of kv_dim values) then V (the same), in F32 or F16. Attention walks a query's positions through its block table
 * and keeps a running (online) softmax over chunks of scores, so no buffer grows with the context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <math.h>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "core/dtype.h"
#include "core/fp16.h"

struct zl_dmem {
    void *base; /* 64-byte aligned */
    uint64_t size;
};

struct zl_dkv {
    zl_dkv_params p;
    uint8_t *data;
    size_t row_bytes;   /* one position of K (or V): kv_dim values */
    size_t block_bytes; /* K then V of block_size positions */
    size_t layer_bytes;
};

typedef struct cpu_dev {
    zl_dev base;
    zl_cpu *cpu;
} cpu_dev;

enum {
    CPU_ALIGN = 64,
    ATTN_MAX_HEAD_DIM = 512, /* attention keeps a query head and its accumulator on the stack */
    ATTN_CHUNK = 128,        /* scores per softmax step */
};

#define CPU(d) (((cpu_dev *)(d))->cpu)

void *zl_cpu_buf_ptr(zl_buf b)
{
    return b.mem ? (uint8_t *)b.mem->base + b.off : NULL;
}

/* b holds at least bytes from its offset. */
static bool buf_has(zl_buf b, uint64_t bytes)
{
    return b.mem && b.off <= b.mem->size && bytes <= b.mem->size - b.off;
}

/* A float vector of n values at b: present, large enough and float-aligned. */
static bool fbuf_ok(zl_buf b, int64_t n)
{
    return n >= 0 && (uint64_t)n <= UINT64_MAX / 8 && buf_has(b, (uint64_t)n * 4) && b.off % 4 == 0;
}

static float *fptr(zl_buf b)
{
    return (float *)zl_cpu_buf_ptr(b);
}

/* ---- device info ---- */

/* The first "model name" line of /proc/cpuinfo, or "CPU" (other systems, or an ARM kernel that lists none). */
static void cpu_model_name(char *name, size_t cap)
{
    snprintf(name, cap, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10))
            continue;
        const char *v = strchr(line, ':');
        if (!v)
            break;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\n");
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            len--;
        if (len > 0)
            snprintf(name, cap, "%.*s", (int)len, v);
        break;
    }
    fclose(f);
}

static void cpu_fill_info(zl_dev_info *info)
{
    memset(info, 0, sizeof *info);
    cpu_model_name(info->name, sizeof info->name);
    snprintf(info->kind, sizeof info->kind, "cpu");
    snprintf(info->driver, sizeof info->driver, "kernels %s", zl_cpu_kernels_name());
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    info->memory = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    /* no device limit below the address space: the largest object C can index */
    info->max_alloc = (uint64_t)PTRDIFF_MAX;
    info->max_binding = (uint64_t)PTRDIFF_MAX;
    info->alignment = CPU_ALIGN;
    info->subgroup_size = 0;
    info->features = ZL_DEV_UNIFIED;
    info->is_cpu = true;
}

static int cpu_enumerate(zl_dev_info *out, int max)
{
    if (out && max > 0)
        cpu_fill_info(&out[0]);
    return 1;
}

static const char *cpu_why_none(void)
{
    return "";
}

/* ---- memory ---- */

static int cpu_alloc(zl_dev *d, uint64_t bytes, zl_dmem **out, zl_err *err)
{
    (void)d;
    if (!out)
        return zl_err_set(err, ZL_EINVAL, "cpu: alloc without an output pointer");
    *out = NULL;
    if (bytes > (uint64_t)PTRDIFF_MAX - CPU_ALIGN)
        return zl_err_set(err, ZL_ENOMEM, "cpu: an allocation of %llu bytes is too large",
                          (unsigned long long)bytes);
    zl_dmem *m = malloc(sizeof *m);
    const size_t rounded = (size_t)((bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN);
    void *p = NULL;
    if (!m || posix_memalign(&p, CPU_ALIGN, rounded ? rounded : CPU_ALIGN) != 0) {
        free(m);
        return zl_err_set(err, ZL_ENOMEM, "cpu: out of memory allocating %.1f MiB", (double)bytes / 1048576.0);
    }
    m->base = p;
    m->size = bytes;
    *out = m;
    return ZL_OK;
}

static void cpu_free(zl_dev *d, zl_dmem *m)
{
    (void)d;
    if (!m)
        return;
    free(m->base);
    free(m);
}

static int cpu_write(zl_dev *d, zl_buf dst, const void *src, uint64_t bytes)
{
    (void)d;
    if (!buf_has(dst, bytes) || (bytes && !src))
        return ZL_EINVAL;
    if (bytes)
        memmove(zl_cpu_buf_ptr(dst), src, (size_t)bytes); /* src may itself be device (host) memory */
    return ZL_OK;
}

static int cpu_read(zl_dev *d, void *dst, zl_buf src, uint64_t bytes)
{
    (void)d;
    if (!buf_has(src, bytes) || (bytes && !dst))
        return ZL_EINVAL;
    if (bytes)
        memmove(dst, zl_cpu_buf_ptr(src), (size_t)bytes);
    return ZL_OK;
}

static int cpu_sync(zl_dev *d)
{
    (void)d;
    return ZL_OK; /* every op has finished when it returns */
}

/* ---- weights ---- */

static int cpu_weight_upload(zl_dev *d, const zl_tensor *t, zl_dweight *w, zl_err *err)
{
    (void)d;
    if (!w)
        return zl_err_set(err, ZL_EINVAL, "cpu: weight_upload without an output");
    memset(w, 0, sizeof *w);
    if (!t || !t->data)
        return zl_err_set(err, ZL_EINVAL, "cpu: weight_upload of a tensor without data");
    const char *name = t->name ? t->name : "tensor";
    const zl_type_traits *tr = zl_type_traits_get(t->type);
    if (!tr || !tr->supported)
        return zl_err_set(err, ZL_EUNSUPPORTED, "cpu: %s: weight type %s has no CPU kernels", name,
                          zl_type_name(t->type));
    size_t row;
    if (t->ne[0] <= 0 || t->ne[1] <= 0 || !zl_row_size(t->type, t->ne[0], &row) || t->nb1 < row)
        return zl_err_set(err, ZL_EINVAL, "cpu: %s: bad shape %lld x %lld for type %s", name, (long long)t->ne[0],
                          (long long)t->ne[1], tr->name);
    /* zero-copy: the ops compute from the host tensor, whatever its layout (rows, X16 groups, AMX tiles) */
    *w = (zl_dweight){.buf = {NULL, 0}, .type = t->type, .ne0 = t->ne[0], .ne1 = t->ne[1], .nb1 = t->nb1,
                      .host = t};
    return ZL_OK;
}

static void cpu_weight_free(zl_dev *d, zl_dweight *w)
{
    (void)d;
    if (w)
        memset(w, 0, sizeof *w); /* the host tensor belongs to the model */
}

static int cpu_matmul(zl_dev *d, const zl_dweight *w, zl_buf x, int32_t n_tok, zl_buf y, const int8_t *modes)
{
    if (!w || !w->host || n_tok < 0 || !fbuf_ok(x, (int64_t)n_tok * w->ne0) || !fbuf_ok(y, (int64_t)n_tok * w->ne1))
        return ZL_EINVAL;
    if (n_tok == 0)
        return ZL_OK;
    return zl_matmul_modes(CPU(d), w->host, fptr(x), n_tok, fptr(y), modes);
}

typedef struct rows_ctx {
    const zl_tensor *w;
    const int32_t *ids;
    float *y;
} rows_ctx;

static void get_row_item(void *ctx, int64_t i)
{
    const rows_ctx *c = ctx;
    zl_get_row(c->w, c->ids[i], c->y + i * c->w->ne[0]);
}

static int cpu_get_rows(zl_dev *d, const zl_dweight *w, const int32_t *ids, int32_t n, zl_buf y)
{
    if (!w || !w->host || n < 0 || (n > 0 && !ids) || !fbuf_ok(y, (int64_t)n * w->ne0))
        return ZL_EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->ne1)
            return ZL_EINVAL;
    rows_ctx c = {w->host, ids, fptr(y)};
    zl_cpu_for(CPU(d), n, w->ne0, get_row_item, &c);
    return ZL_OK;
}

/* ---- float ops ---- */

static int cpu_rmsnorm(zl_dev *d, zl_buf y, zl_buf x, zl_buf g, int64_t n_rows, int64_t dim, float eps)
{
    if (n_rows < 0 || dim <= 0 || n_rows > INT64_MAX / dim || !fbuf_ok(x, n_rows * dim) ||
        !fbuf_ok(y, n_rows * dim) || (g.mem && !fbuf_ok(g, dim)))
        return ZL_EINVAL;
    zl_rmsnorm_mt(CPU(d), fptr(y), fptr(x), g.mem ? fptr(g) : NULL, n_rows, dim, eps);
    return ZL_OK;
}

typedef struct rope_ctx {
    float *x;
    const float *cs;
    int64_t n_head, head_dim, n_rot;
    bool neox;
} rope_ctx;

static void rope_item(void *ctx, int64_t t)
{
    const rope_ctx *c = ctx;
    zl_rope_apply(c->x + t * c->n_head * c->head_dim, c->n_head, c->head_dim, c->n_rot, c->cs + t * c->n_rot,
                  c->neox);
}

static int cpu_rope(zl_dev *d, zl_buf x, int32_t n_tok, int32_t n_head, int32_t head_dim, int32_t n_rot,
                    const float *cs, bool neox)
{
    if (n_tok < 0 || n_head <= 0 || head_dim <= 0 || n_rot < 0 || n_rot > head_dim || n_rot % 2 ||
        (n_tok > 0 && n_rot > 0 && !cs) || !fbuf_ok(x, (int64_t)n_tok * n_head * head_dim))
        return ZL_EINVAL;
    if (n_rot == 0)
        return ZL_OK;
    rope_ctx c = {fptr(x), cs, n_head, head_dim, n_rot, neox};
    zl_cpu_for(CPU(d), n_tok, (int64_t)n_head * n_rot, rope_item, &c);
    return ZL_OK;
}

/* Flat ops over n values go in chunks of EW_CHUNK: a multiple of every SIMD width, so the vector kernels see the
 * same lanes as in one call over all n (their results do not depend on the thread count). */
enum { EW_CHUNK = 4096 };

typedef struct ew_ctx {
    float *y;
    const float *a, *b;
    int64_t n, dim;
    float f;
    int kind;
} ew_ctx;

static void ew_span(const ew_ctx *c, int64_t i, int64_t *i0, int64_t *len)
{
    *i0 = i * EW_CHUNK;
    *len = c->n - *i0 < EW_CHUNK ? c->n - *i0 : EW_CHUNK;
}

static void glu_item(void *ctx, int64_t i)
{
    const ew_ctx *c = ctx;
    int64_t i0, len;
    ew_span(c, i, &i0, &len);
    if (c->kind == ZL_GLU_SILU)
        zl_silu_mul(c->y + i0, c->a + i0, c->b + i0, len);
    else
        zl_gelu_mul(c->y + i0, c->a + i0, c->b + i0, len);
}

static int cpu_glu(zl_dev *d, int kind, zl_buf y, zl_buf g, zl_buf u, int64_t n)
{
    if ((kind != ZL_GLU_SILU && kind != ZL_GLU_GELU) || !fbuf_ok(y, n) || !fbuf_ok(g, n) || !fbuf_ok(u, n))
        return ZL_EINVAL;
    ew_ctx c = {.y = fptr(y), .a = fptr(g), .b = fptr(u), .n = n, .kind = kind};
    zl_cpu_for(CPU(d), (n + EW_CHUNK - 1) / EW_CHUNK, EW_CHUNK, glu_item, &c);
    return ZL_OK;
}

static int cpu_add(zl_dev *d, zl_buf y, zl_buf x, int64_t n)
{
    if (!fbuf_ok(y, n) || !fbuf_ok(x, n))
        return ZL_EINVAL;
    zl_add_mt(CPU(d), fptr(y), fptr(x), n);
    return ZL_OK;
}

static void add_rows_item(void *ctx, int64_t r)
{
    const ew_ctx *c = ctx;
    zl_add(c->y + r * c->dim, c->a, c->dim);
}

static int cpu_add_rows(zl_dev *d, zl_buf y, zl_buf bias, int64_t n_rows, int64_t dim)
{
    if (n_rows < 0 || dim <= 0 || n_rows > INT64_MAX / dim || !fbuf_ok(y, n_rows * dim) || !fbuf_ok(bias, dim))
        return ZL_EINVAL;
    ew_ctx c = {.y = fptr(y), .a = fptr(bias), .dim = dim};
    zl_cpu_for(CPU(d), n_rows, dim, add_rows_item, &c);
    return ZL_OK;
}

static void scale_item(void *ctx, int64_t i)
{
    const ew_ctx *c = ctx;
    int64_t i0, len;
    ew_span(c, i, &i0, &len);
    float *y = c->y + i0;
    if (c->kind == ZL_OP_SCALE) {
        for (int64_t k = 0; k < len; k++)
            y[k] *= c->f;
    } else {
        for (int64_t k = 0; k < len; k++)
            y[k] = c->f * tanhf(y[k] / c->f);
    }
}

static int cpu_scale(zl_dev *d, zl_buf y, float f, int64_t n)
{
    if (!fbuf_ok(y, n))
        return ZL_EINVAL;
    ew_ctx c = {.y = fptr(y), .n = n, .f = f, .kind = ZL_OP_SCALE};
    zl_cpu_for(CPU(d), (n + EW_CHUNK - 1) / EW_CHUNK, EW_CHUNK, scale_item, &c);
    return ZL_OK;
}

static int cpu_softcap(zl_dev *d, zl_buf y, float cap, int64_t n)
{
    if (!(cap > 0.0f) || !fbuf_ok(y, n)) /* a cap of 0 or below (or NaN) would divide by it */
        return ZL_EINVAL;
    ew_ctx c = {.y = fptr(y), .n = n, .f = cap, .kind = ZL_OP_SOFTCAP};
    zl_cpu_for(CPU(d), (n + EW_CHUNK - 1) / EW_CHUNK, EW_CHUNK, scale_item, &c);
    return ZL_OK;
}

static int cpu_gather(zl_dev *d, zl_buf y, zl_buf x, const int32_t *rows, int32_t n, int64_t dim)
{
    (void)d;
    if (n < 0 || dim <= 0 || (n > 0 && !rows) || n > INT64_MAX / dim || !fbuf_ok(y, (int64_t)n * dim) ||
        !x.mem || x.off % 4)
        return ZL_EINVAL;
    int32_t max_row = -1;
    for (int32_t i = 0; i < n; i++) {
        if (rows[i] < 0)
            return ZL_EINVAL;
        max_row = rows[i] > max_row ? rows[i] : max_row;
    }
    if (!fbuf_ok(x, ((int64_t)max_row + 1) * dim))
        return ZL_EINVAL;
    float *yp = fptr(y);
    const float *xp = fptr(x);
    /* row copies: memory bound, one thread keeps up (the rows picked for logits are a handful) */
    for (int32_t i = 0; i < n; i++)
        memmove(yp + (int64_t)i * dim, xp + (int64_t)rows[i] * dim, (size_t)dim * sizeof(float));
    return ZL_OK;
}

/* ---- KV pool ---- */

static int cpu_kv_create(zl_dev *d, const zl_dkv_params *p, zl_dkv **out, zl_err *err)
{
    (void)d;
    if (!out)
        return zl_err_set(err, ZL_EINVAL, "cpu: kv_create without an output pointer");
    *out = NULL;
    if (!p || p->n_layer <= 0 || p->kv_dim <= 0 || p->block_size <= 0 || p->n_blocks <= 0 ||
        (p->type != ZL_F16 && p->type != ZL_F32))
        return zl_err_set(err, ZL_EINVAL, "cpu: bad KV pool parameters");
    const size_t esize = p->type == ZL_F16 ? 2 : 4;
    const size_t row = (size_t)p->kv_dim * esize;
    const double total = (double)row * 2.0 * p->block_size * p->n_blocks * p->n_layer;
    if (total > (double)PTRDIFF_MAX / 2)
        return zl_err_set(err, ZL_ENOMEM, "cpu: a KV pool of %.0f bytes is too large", total);
    zl_dkv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return zl_err_set(err, ZL_ENOMEM, "cpu: out of memory");
    kv->p = *p;
    kv->row_bytes = row;
    kv->block_bytes = 2 * row * (size_t)p->block_size;
    kv->layer_bytes = kv->block_bytes * (size_t)p->n_blocks;
    /* zeroed: a position never stored reads as 0, never as stale bytes */
    kv->data = calloc((size_t)p->n_layer, kv->layer_bytes);
    if (!kv->data) {
        free(kv);
        return zl_err_set(err, ZL_ENOMEM, "cpu: out of memory for a KV pool of %.1f MiB", total / 1048576.0);
    }
    *out = kv;
    return ZL_OK;
}

static void cpu_kv_destroy(zl_dev *d, zl_dkv *kv)
{
    (void)d;
    if (!kv)
        return;
    free(kv->data);
    free(kv);
}

/* Position off of block blk: its K row (its V row is block_size rows further). */
static uint8_t *kv_row(const zl_dkv *kv, int32_t layer, int64_t blk, int64_t off)
{
    return kv->data + (size_t)layer * kv->layer_bytes + (size_t)blk * kv->block_bytes + (size_t)off * kv->row_bytes;
}

static void kv_put(const zl_dkv *kv, uint8_t *dst, const float *src)
{
    if (kv->p.type == ZL_F32) {
        memcpy(dst, src, kv->row_bytes);
        return;
    }
    uint16_t *h = (uint16_t *)dst;
    for (int32_t c = 0; c < kv->p.kv_dim; c++)
        h[c] = zl_fp32_to_fp16(src[c]);
}

typedef struct kv_store_ctx {
    const zl_dkv *kv;
    int32_t layer;
    const float *k, *v;
    const int32_t *slots;
} kv_store_ctx;

static void kv_store_item(void *ctx, int64_t i)
{
    const kv_store_ctx *c = ctx;
    const zl_dkv *kv = c->kv;
    const int32_t bs = kv->p.block_size;
    uint8_t *kr = kv_row(kv, c->layer, c->slots[i] / bs, c->slots[i] % bs);
    kv_put(kv, kr, c->k + i * kv->p.kv_dim);
    kv_put(kv, kr + (size_t)bs * kv->row_bytes, c->v + i * kv->p.kv_dim);
}

static int cpu_kv_store(zl_dev *d, zl_dkv *kv, int32_t layer, zl_buf k, zl_buf v, const int32_t *slots, int32_t n)
{
    if (!kv || layer < 0 || layer >= kv->p.n_layer || n < 0 || (n > 0 && !slots) ||
        !fbuf_ok(k, (int64_t)n * kv->p.kv_dim) || !fbuf_ok(v, (int64_t)n * kv->p.kv_dim))
        return ZL_EINVAL;
    const int64_t n_slots = (int64_t)kv->p.n_blocks * kv->p.block_size;
    for (int32_t i = 0; i < n; i++)
        if (slots[i] < 0 || slots[i] >= n_slots)
            return ZL_EINVAL;
    /* Two tokens given the same slot: the later one wins, as if stored one by one, so such a call goes in order
     * on this thread (found with a bitmap of the pool's slots; without memory for it, in order too). */
    bool dup = true;
    uint8_t *seen = n > 1 ? calloc((size_t)(n_slots + 7) / 8, 1) : NULL;
    if (seen || n <= 1) {
        dup = false;
        for (int32_t i = 0; i < n && !dup && seen; i++) {
            dup = seen[slots[i] >> 3] >> (slots[i] & 7) & 1;
            seen[slots[i] >> 3] |= (uint8_t)(1u << (slots[i] & 7));
        }
        free(seen);
    }
    kv_store_ctx c = {kv, layer, fptr(k), fptr(v), slots};
    if (dup) {
        for (int32_t i = 0; i < n; i++)
            kv_store_item(&c, i);
    } else {
        zl_cpu_for(CPU(d), n, 2 * kv->p.kv_dim, kv_store_item, &c);
    }
    return ZL_OK;
}

typedef struct attn_ctx {
    const zl_dkv *kv;
    int32_t layer;
    const zl_attn_args *a;
    const float *q;
    float *out;
} attn_ctx;

/* One row of the pool as floats: F32 rows are used in place, F16 rows converted into tmp. */
static const float *kv_floats(const zl_dkv *kv, const uint8_t *row, int64_t n, float *tmp)
{
    if (kv->p.type == ZL_F32)
        return (const float *)row;
    const uint16_t *h = (const uint16_t *)row;
    for (int64_t c = 0; c < n; c++)
        tmp[c] = zl_fp16_to_fp32(h[c]);
    return tmp;
}

/* Query head h of token i: a softmax over the scores of positions [lo, pos] in chunks of ATTN_CHUNK, each chunk's
 * max folded into a running max (the accumulated sum and output rescaled when it grows), out = sum p * V. */
static void attn_item(void *ctx, int64_t item)
{
    const attn_ctx *c = ctx;
    const zl_attn_args *a = c->a;
    const zl_dkv *kv = c->kv;
    const int64_t i = item / a->n_head, h = item % a->n_head;
    const int64_t hd = a->head_dim, bs = kv->p.block_size;
    const int64_t kvh = h / (a->n_head / a->n_head_kv);
    const int64_t pos = a->pos[i];
    const int64_t lo = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
    const int32_t *table = a->tables + a->tbl_off[i];
    const size_t col = (size_t)kvh * (size_t)hd * (kv->p.type == ZL_F16 ? 2 : 4); /* head kvh within a row */

    float q[ATTN_MAX_HEAD_DIM], tmp[ATTN_MAX_HEAD_DIM], acc[ATTN_MAX_HEAD_DIM], s[ATTN_CHUNK];
    memcpy(q, c->q + (i * a->n_head + h) * hd, (size_t)hd * sizeof(float)); /* out may be q */
    memset(acc, 0, (size_t)hd * sizeof(float));
    float m = -INFINITY;
    double l = 0.0;
    for (int64_t p0 = lo; p0 <= pos; p0 += ATTN_CHUNK) {
        const int64_t np = pos + 1 - p0 < ATTN_CHUNK ? pos + 1 - p0 : ATTN_CHUNK;
        float cm = -INFINITY;
        for (int64_t j = 0; j < np; j++) {
            const int64_t p = p0 + j;
            const uint8_t *kr = kv_row(kv, c->layer, table[p / bs], p % bs) + col;
            float sc = zl_dot_f32(q, kv_floats(kv, kr, hd, tmp), hd) * a->scale;
            if (a->softcap > 0.0f)
                sc = a->softcap * tanhf(sc / a->softcap);
            s[j] = sc;
            cm = sc > cm ? sc : cm;
        }
        if (cm > m) { /* a new max: what is summed so far shrinks by exp(m - cm) */
            const float r = expf(m - cm); /* 0 on the first chunk (m = -inf) */
            for (int64_t e = 0; e < hd; e++)
                acc[e] *= r;
            l *= r;
            m = cm;
        }
        for (int64_t j = 0; j < np; j++) {
            const int64_t p = p0 + j;
            const float w = expf(s[j] - m);
            const uint8_t *vr = kv_row(kv, c->layer, table[p / bs], p % bs) + (size_t)bs * kv->row_bytes + col;
            const float *vf = kv_floats(kv, vr, hd, tmp);
            l += w;
            for (int64_t e = 0; e < hd; e++)
                acc[e] += w * vf[e];
        }
    }
    const float inv = (float)(1.0 / l);
    float *o = c->out + (i * a->n_head + h) * hd;
    for (int64_t e = 0; e < hd; e++)
        o[e] = acc[e] * inv;
}

static int cpu_attention(zl_dev *d, zl_dkv *kv, int32_t layer, zl_buf q, zl_buf out, const zl_attn_args *a)
{
    int64_t span = 0;
    if (!kv || zl_attn_args_check(a, &kv->p, layer, ATTN_MAX_HEAD_DIM, &span) != ZL_OK)
        return ZL_EINVAL;
    const int64_t n = (int64_t)a->n_tok * a->n_head * a->head_dim;
    if (!fbuf_ok(q, n) || !fbuf_ok(out, n))
        return ZL_EINVAL;
    if (a->n_tok == 0)
        return ZL_OK;
    attn_ctx c = {kv, layer, a, fptr(q), fptr(out)};
    const int64_t items = (int64_t)a->n_tok * a->n_head;
    zl_cpu_for(CPU(d), items, span / a->n_tok * 2 * a->head_dim + 1, attn_item, &c);
    return ZL_OK;
}

/* ---- the device ---- */

static bool cpu_supports(zl_dev *d, zl_op op, uint32_t type, const int64_t shape[4])
{
    (void)d;
    const zl_type_traits *tr;
    switch (op) {
    case ZL_OP_GET_ROWS:
    case ZL_OP_MATMUL: /* shape {ne0, ne1, n_tok}: rows of whole blocks */
        tr = zl_type_traits_get(type);
        return tr && tr->supported && (!shape || (shape[0] >= 0 && shape[0] % tr->block_size == 0));
    case ZL_OP_KV_STORE:
        return type == ZL_F16 || type == ZL_F32;
    case ZL_OP_ATTENTION: /* shape {head_dim, n_head, n_head_kv} */
        return (type == ZL_F16 || type == ZL_F32) &&
               (!shape || (shape[0] >= 0 && shape[0] <= ATTN_MAX_HEAD_DIM &&
                           (shape[1] <= 0 || shape[2] <= 0 || shape[1] % shape[2] == 0)));
    default:
        return (unsigned)op < ZL_OP_COUNT;
    }
}

static void cpu_close(zl_dev *d)
{
    if (!d)
        return;
    zl_cpu_destroy(CPU(d));
    free(d);
}

static const zl_dev_ops cpu_ops = {
    .close = cpu_close,
    .supports = cpu_supports,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .write = cpu_write,
    .read = cpu_read,
    .weight_upload = cpu_weight_upload,
    .weight_free = cpu_weight_free,
    .sync = cpu_sync,
    .kv_create = cpu_kv_create,
    .kv_destroy = cpu_kv_destroy,
    .get_rows = cpu_get_rows,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .glu = cpu_glu,
    .add = cpu_add,
    .add_rows = cpu_add_rows,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .gather = cpu_gather,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
};

static int cpu_open(int index, zl_dev **out, zl_err *err)
{
    if (!out)
        return zl_err_set(err, ZL_EINVAL, "cpu: open without an output pointer");
    *out = NULL;
    if (index != 0)
        return zl_err_set(err, ZL_EUNSUPPORTED, "device 'cpu:%d': no such device (the CPU is cpu:0)", index);
    cpu_dev *c = calloc(1, sizeof *c);
    if (!c)
        return zl_err_set(err, ZL_ENOMEM, "cpu: out of memory");
    if (!(c->cpu = zl_cpu_create(0))) {
        free(c);
        return zl_err_set(err, ZL_ENOMEM, "cpu: cannot create the thread pool");
    }
    c->base.ops = &cpu_ops;
    cpu_fill_info(&c->base.info);
    *out = &c->base;
    return ZL_OK;
}

const zl_backend *zl_backend_cpu(void)
{
    static const zl_backend b = {.name = "cpu", .enumerate = cpu_enumerate, .open = cpu_open,
                                 .why_none = cpu_why_none};
    return &b;
}
