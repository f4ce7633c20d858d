/*
 * test_backend_ops.c - every op of every device other than the CPU (each device each kind in zl_backend_list
 * enumerates) against the CPU backend, in the manner of llama.cpp's test-backend-ops: for each op, type and shape
 * (odd sizes, tails past the vector and workgroup widths), random inputs run on both and compared by normalized
 * mean squared error, NMSE = sum (dev - cpu)^2 / sum cpu^2: at most 5e-4 for matmul and attention (other
 * summation orders, exp), 1e-7 for the rest; any NaN or Inf fails. A case a device's supports() refuses is counted
 * apart, not compared. Matmul activations lie on a grid every activation type holds exactly (fill_grid), so the
 * CPU's conversion to Q8 / F16 and a device's floats see the same x and the NMSE measures the kernels.
 *
 * Where the CPU is the only device, the device comparisons are reported as skipped (with the reason), never as
 * passed; the CPU backend is always checked against direct double-precision formulas, so the harness (uploads,
 * reads, the NMSE and the cases themselves) is tested everywhere. Also: device specs (zl_dev_open), argument
 * checks on every device (ZL_EINVAL, no crash), supports() and the CPU device's info.
 *
 * The worst NMSE of each device x op x type is printed at the end, one line each, for quoting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/err.h"
#include "core/fp16.h"
#include "backend/cpu/ops.h"

enum { MAX_DEVS = 8, MAX_BUFS = 16 };
static const double TOL_MATMUL = 5e-4, TOL_ATTN = 5e-4, TOL = 1e-7;

static zl_dev *g_cpu;
static zl_dev *g_dev[MAX_DEVS]; /* the devices compared with the CPU */
static int g_n_dev;
/* Vulkan: how g_dev[k] was opened (VK_*; -1 for other kinds), so the tiled matmul can be held to the mat-vec */
enum { VK_ROWS, VK_LANES, VK_TILED, VK_LANES_TILED, VK_VARIANTS };
static int g_vk_variant[MAX_DEVS];
static char g_none[512];      /* why there is no device to compare, for the skip message */
static char g_open_fail[800]; /* a device that enumerates but does not open: every comparison fails with it */

/* ---- helpers ---- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)(g_rng >> 40) / (float)(1 << 23) - 1.0f;
}

static float *fill(int64_t n, float amp)
{
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = frand() * amp;
    return x;
}

static int32_t irand(int32_t n) /* uniform in [0, n) */
{
    return (int32_t)((frand() + 1.0f) * 0.5f * (float)n) % n;
}

/* Activations on a grid every activation type holds exactly: k / 128 for integers |k| <= 127, each 32 values
 * reaching 127 / 128. The CPU converts x to its weights' vec_dot_type (Q8_0, Q8_1, Q8_K, F16, BF16) and a device
 * may keep floats; on this grid both see the same x, so the comparison measures the kernels, not that choice (with
 * arbitrary floats a dot near 0 gives a single-output case an NMSE of the conversion's rounding over ~0). */
static float *fill_grid(int64_t n)
{
    float *x = fill(n, 1.0f);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(irand(255) - 127) / 128.0f;
    for (int64_t b = 0; b < n; b += 32)
        x[b + irand((int32_t)(n - b < 32 ? n - b : 32))] = irand(2) ? 127.0f / 128.0f : -127.0f / 128.0f;
    return x;
}

/* free() of each argument up to a NULL. */
static void free_all(void *p, ...)
{
    va_list ap;
    va_start(ap, p);
    for (; p; p = va_arg(ap, void *))
        free(p);
    va_end(ap);
}

#define OK(d, call)                                                                                                \
    do {                                                                                                           \
        const int rc_ = (call);                                                                                    \
        if (rc_ != ZL_OK)                                                                                          \
            fail_msg("%s:%d: %s returned %d (%s)", (d)->info.kind, (d)->info.index, #call, rc_, zl_status_str(rc_)); \
    } while (0)

/* The device allocations of one run, freed together. */
typedef struct bufs {
    zl_dev *d;
    zl_dmem *m[MAX_BUFS];
    int n;
} bufs;

static zl_buf balloc(bufs *b, int64_t n_floats)
{
    zl_dmem *m;
    zl_err e = {{0}};
    if (b->d->ops->alloc(b->d, (uint64_t)(n_floats > 0 ? n_floats : 1) * 4, &m, &e) != ZL_OK)
        fail_msg("%s:%d: alloc of %lld floats: %s", b->d->info.kind, b->d->info.index, (long long)n_floats, e.msg);
    assert_true(b->n < MAX_BUFS);
    b->m[b->n++] = m;
    return (zl_buf){m, 0};
}

static zl_buf bput(bufs *b, const float *x, int64_t n)
{
    const zl_buf r = balloc(b, n);
    if (n > 0)
        OK(b->d, b->d->ops->write(b->d, r, x, (uint64_t)n * 4));
    return r;
}

static void bget(bufs *b, zl_buf src, float *out, int64_t n)
{
    OK(b->d, b->d->ops->sync(b->d));
    if (n > 0)
        OK(b->d, b->d->ops->read(b->d, out, src, (uint64_t)n * 4));
}

static void bfree(bufs *b)
{
    for (int i = 0; i < b->n; i++)
        b->d->ops->free(b->d, b->m[i]);
    b->n = 0;
}

/* NMSE of got against want; infinite when got has a NaN or an Inf. */
static double nmse(const float *got, const float *want, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        const double dlt = (double)got[i] - want[i];
        num += dlt * dlt;
        den += (double)want[i] * want[i];
    }
    return den > 0.0 ? num / den : num;
}

/* The worst NMSE per "device op type" key, printed by the group teardown. */
typedef struct worst {
    char key[72];
    double nmse, tol;
    int cases, unsupported;
} worst;
static worst g_worst[400];
static int g_n_worst;

static worst *worst_entry(const char *key, double tol)
{
    for (int i = 0; i < g_n_worst; i++)
        if (!strcmp(g_worst[i].key, key))
            return &g_worst[i];
    assert_true(g_n_worst < (int)(sizeof g_worst / sizeof g_worst[0]));
    worst *w = &g_worst[g_n_worst++];
    snprintf(w->key, sizeof w->key, "%s", key);
    w->tol = tol;
    return w;
}

/* got against want (n values): the NMSE noted under key, a failure past tol. */
static void judge(const char *key, const char *desc, const float *got, const float *want, int64_t n, double tol)
{
    const double e = nmse(got, want, n);
    worst *w = worst_entry(key, tol);
    w->cases++;
    if (e > w->nmse || isnan(e))
        w->nmse = e;
    if (!(e <= tol))
        fail_msg("%s (%s): NMSE %.3g, tolerance %.0e", key, desc, e, tol);
}

static float *nans(int64_t n) /* what a run must overwrite */
{
    float *x = malloc((size_t)n * 4 + 4);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = NAN;
    return x;
}

/* One op case: uploads its inputs to d, runs the op, reads its n_out results into out. */
typedef void (*run_fn)(zl_dev *d, const void *c, float *out);

/* c on the CPU against every device: op/type/shape for supports(), what names the key ("matmul q4_0"). */
static void versus(const char *what, const char *desc, zl_op op, uint32_t type, const int64_t shape[4], run_fn run,
                   const void *c, int64_t n_out, double tol)
{
    float *want = nans(n_out), *got = nans(n_out);
    run(g_cpu, c, want);
    for (int64_t i = 0; i < n_out; i++)
        if (!isfinite(want[i]))
            fail_msg("cpu %s %s: the CPU result has a NaN or Inf at %lld", what, desc, (long long)i);
    for (int k = 0; k < g_n_dev; k++) {
        zl_dev *d = g_dev[k];
        char key[72];
        snprintf(key, sizeof key, "%s:%d %s", d->info.kind, d->info.index, what);
        if (!d->ops->supports(d, op, type, shape)) {
            worst_entry(key, tol)->unsupported++;
            continue;
        }
        for (int64_t i = 0; i < n_out; i++)
            got[i] = NAN;
        run(d, c, got);
        judge(key, desc, got, want, n_out, tol);
    }
    free_all(want, got, NULL);
}

/* c on the CPU backend against a double-precision formula's result (rounded to float). */
static void vs_ref(const char *what, const char *desc, run_fn run, const void *c, const float *want, int64_t n_out,
                   double tol)
{
    float *got = nans(n_out);
    run(g_cpu, c, got);
    char key[72];
    snprintf(key, sizeof key, "cpu-vs-double %s", what);
    judge(key, desc, got, want, n_out, tol);
    free(got);
}

/* Skips the calling test (reporting why) when there is no device but the CPU. */
static void need_devices(void)
{
    if (g_open_fail[0])
        fail_msg("%s", g_open_fail);
    if (g_n_dev == 0) {
        print_message("[   SKIP   ] no device besides the CPU (%s): device comparisons skipped, not passed\n",
                      g_none);
        skip();
    }
}

/* ---- matmul and get_rows: weights quantized from random floats ---- */

static const uint32_t WTYPES[] = {ZL_F32,  ZL_F16,  ZL_BF16, ZL_Q4_0, ZL_Q4_1,
                                  ZL_Q5_0, ZL_Q8_0, ZL_Q4_K, ZL_Q5_K, ZL_Q6_K};
enum { N_WTYPES = sizeof WTYPES / sizeof WTYPES[0] };

typedef struct hweight {
    zl_tensor t;
    void *bytes;
    float *deq; /* the rows as the type holds them, dequantized */
} hweight;

static void weight_make(hweight *h, uint32_t type, int64_t ne0, int64_t ne1)
{
    const zl_type_traits *tr = zl_type_traits_get(type);
    size_t row;
    assert_true(tr && tr->supported && zl_row_size(type, ne0, &row));
    h->deq = fill(ne0 * ne1, 1.0f);
    h->bytes = malloc(row * (size_t)ne1);
    assert_non_null(h->bytes);
    for (int64_t r = 0; r < ne1; r++) {
        tr->from_float(h->deq + r * ne0, (uint8_t *)h->bytes + (size_t)r * row, ne0);
        zl_type_traits_ref(type)->to_float((uint8_t *)h->bytes + (size_t)r * row, h->deq + r * ne0, ne0);
    }
    h->t = (zl_tensor){.name = "w", .type = type, .ne = {ne0, ne1, 1, 1}, .nb1 = row, .data = h->bytes};
}

static void weight_drop(hweight *h)
{
    free_all(h->bytes, h->deq, NULL);
}

/* Row lengths per block size: odd for plain types, 32 x odd for 32-blocks, 256 multiples for K-quants. */
static void row_lengths(uint32_t type, int64_t out[2])
{
    const int64_t bs = zl_type_traits_get(type)->block_size;
    out[0] = bs == 1 ? 67 : bs == 32 ? 96 : 256;
    out[1] = bs == 1 ? 288 : bs == 32 ? 288 : 768;
}

static void upload(zl_dev *d, const zl_tensor *t, zl_dweight *w)
{
    zl_err e = {{0}};
    if (d->ops->weight_upload(d, t, w, &e) != ZL_OK)
        fail_msg("%s:%d: weight_upload: %s", d->info.kind, d->info.index, e.msg);
}

/* matmul of x (n tokens), or get_rows of ids (n of them) when ids is set */
typedef struct mm_case {
    const zl_tensor *w;
    const float *x;
    const int32_t *ids;
    int32_t n;
} mm_case;

static void run_matmul(zl_dev *d, const void *p, float *out)
{
    const mm_case *c = p;
    bufs b = {.d = d};
    zl_dweight w;
    upload(d, c->w, &w);
    const int64_t n_out = (c->ids ? c->w->ne[0] : c->w->ne[1]) * c->n;
    const zl_buf y = balloc(&b, n_out);
    if (c->ids)
        OK(d, d->ops->get_rows(d, &w, c->ids, c->n, y));
    else
        OK(d, d->ops->matmul(d, &w, bput(&b, c->x, c->w->ne[0] * c->n), c->n, y, NULL));
    bget(&b, y, out, n_out);
    d->ops->weight_free(d, &w);
    bfree(&b);
}

static void ref_matmul(const mm_case *c, const float *deq, float *out)
{
    const int64_t ne0 = c->w->ne[0], ne1 = c->w->ne[1];
    for (int32_t t = 0; t < c->n; t++)
        for (int64_t r = 0; r < ne1; r++) {
            double s = 0.0;
            for (int64_t k = 0; k < ne0; k++)
                s += (double)deq[r * ne0 + k] * c->x[t * ne0 + k];
            out[t * ne1 + r] = (float)s;
        }
}

/* ---- rmsnorm, rope ---- */

typedef struct rn_case {
    const float *x, *g;
    int64_t rows, dim;
    float eps;
    bool inplace;
} rn_case;

static void run_rmsnorm(zl_dev *d, const void *p, float *out)
{
    const rn_case *c = p;
    bufs b = {.d = d};
    const zl_buf x = bput(&b, c->x, c->rows * c->dim);
    const zl_buf g = c->g ? bput(&b, c->g, c->dim) : (zl_buf){0};
    const zl_buf y = c->inplace ? x : balloc(&b, c->rows * c->dim);
    OK(d, d->ops->rmsnorm(d, y, x, g, c->rows, c->dim, c->eps));
    bget(&b, y, out, c->rows * c->dim);
    bfree(&b);
}

static void ref_rmsnorm(const rn_case *c, float *out)
{
    for (int64_t r = 0; r < c->rows; r++) {
        const float *x = c->x + r * c->dim;
        double ss = 0.0;
        for (int64_t i = 0; i < c->dim; i++)
            ss += (double)x[i] * x[i];
        const double s = 1.0 / sqrt(ss / (double)c->dim + c->eps);
        for (int64_t i = 0; i < c->dim; i++)
            out[r * c->dim + i] = (float)(x[i] * s * (c->g ? c->g[i] : 1.0));
    }
}

typedef struct rp_case {
    const float *x, *cs;
    int32_t n_tok, n_head, head_dim, n_rot;
    bool neox;
} rp_case;

static void run_rope(zl_dev *d, const void *p, float *out)
{
    const rp_case *c = p;
    bufs b = {.d = d};
    const int64_t n = (int64_t)c->n_tok * c->n_head * c->head_dim;
    const zl_buf x = bput(&b, c->x, n);
    OK(d, d->ops->rope(d, x, c->n_tok, c->n_head, c->head_dim, c->n_rot, c->cs, c->neox));
    bget(&b, x, out, n);
    bfree(&b);
}

static void ref_rope(const rp_case *c, float *out)
{
    const int64_t n = (int64_t)c->n_tok * c->n_head * c->head_dim;
    memcpy(out, c->x, (size_t)n * 4);
    for (int32_t t = 0; t < c->n_tok; t++)
        for (int32_t h = 0; h < c->n_head; h++)
            for (int32_t i = 0; i < c->n_rot / 2; i++) {
                const int64_t base = ((int64_t)t * c->n_head + h) * c->head_dim;
                const int64_t ia = base + (c->neox ? i : 2 * i), ib = base + (c->neox ? i + c->n_rot / 2 : 2 * i + 1);
                const double co = c->cs[t * c->n_rot + 2 * i], si = c->cs[t * c->n_rot + 2 * i + 1];
                out[ia] = (float)(c->x[ia] * co - c->x[ib] * si);
                out[ib] = (float)(c->x[ia] * si + c->x[ib] * co);
            }
}

/* ---- the element-wise ops: glu, add, add_rows, scale, softcap, gather ---- */

typedef struct ew_case {
    zl_op op;
    int kind;         /* glu: ZL_GLU_* */
    const float *y0;  /* the in-place target's initial values (add, add_rows, scale, softcap) */
    const float *a;   /* glu: g; add: x; add_rows: the bias; gather: the source rows */
    const float *b;   /* glu: u */
    const int32_t *rows;
    int64_t n, dim;   /* n values (gather: n rows of dim; add_rows: n rows of dim) */
    float f;
    bool inplace;     /* glu: y = g */
} ew_case;

static int64_t ew_out(const ew_case *c)
{
    return c->op == ZL_OP_GATHER || c->op == ZL_OP_ADD_ROWS ? c->n * c->dim : c->n;
}

static void run_ew(zl_dev *d, const void *p, float *out)
{
    const ew_case *c = p;
    bufs b = {.d = d};
    const int64_t n = ew_out(c);
    zl_buf y;
    switch (c->op) {
    case ZL_OP_GLU: {
        const zl_buf g = bput(&b, c->a, n), u = bput(&b, c->b, n);
        y = c->inplace ? g : balloc(&b, n);
        OK(d, d->ops->glu(d, c->kind, y, g, u, n));
        break;
    }
    case ZL_OP_GATHER: {
        int32_t max = 0;
        for (int64_t i = 0; i < c->n; i++)
            max = c->rows[i] > max ? c->rows[i] : max;
        const zl_buf x = bput(&b, c->a, (max + 1) * c->dim);
        y = balloc(&b, n);
        OK(d, d->ops->gather(d, y, x, c->rows, (int32_t)c->n, c->dim));
        break;
    }
    default:
        y = bput(&b, c->y0, n);
        if (c->op == ZL_OP_ADD)
            OK(d, d->ops->add(d, y, bput(&b, c->a, n), n));
        else if (c->op == ZL_OP_ADD_ROWS)
            OK(d, d->ops->add_rows(d, y, bput(&b, c->a, c->dim), c->n, c->dim));
        else if (c->op == ZL_OP_SCALE)
            OK(d, d->ops->scale(d, y, c->f, n));
        else
            OK(d, d->ops->softcap(d, y, c->f, n));
    }
    bget(&b, y, out, n);
    bfree(&b);
}

static void ref_ew(const ew_case *c, float *out)
{
    for (int64_t i = 0; i < ew_out(c); i++) {
        double v;
        switch (c->op) {
        case ZL_OP_GLU: {
            const double g = c->a[i];
            const double act = c->kind == ZL_GLU_SILU
                                   ? g / (1.0 + exp(-g))
                                   : 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
            v = act * c->b[i];
            break;
        }
        case ZL_OP_GATHER: v = c->a[c->rows[i / c->dim] * c->dim + i % c->dim]; break;
        case ZL_OP_ADD: v = (double)c->y0[i] + c->a[i]; break;
        case ZL_OP_ADD_ROWS: v = (double)c->y0[i] + c->a[i % c->dim]; break;
        case ZL_OP_SCALE: v = (double)c->y0[i] * c->f; break;
        default: v = c->f * tanh(c->y0[i] / (double)c->f); break;
        }
        out[i] = (float)v;
    }
}

/* ---- kv_store + attention ---- */

/* Four sequences over shuffled blocks of 16: of 1 position (one query), 23 (the last 3 queried), 50 (a decode
 * of the last) and 37 (all queried, a prompt). Every position is stored, in a shuffled order (only the slots say
 * where), in two calls after a call of junk rows at 8 of the same slots (a later store replaces an earlier one). */
typedef struct at_case {
    uint32_t type;
    int32_t kv_dim, bs, n_blocks, n_store; /* n_store tokens: slots[i] gets row i of k and v */
    int32_t slots[256], pos[128], tbl_off[128], tables[64];
    float *k, *v, *q;
    zl_attn_args a;
} at_case;

static void run_attention(zl_dev *d, const void *p, float *out)
{
    const at_case *c = p;
    bufs b = {.d = d};
    zl_dkv *kv;
    zl_err e = {{0}};
    const zl_dkv_params kp = {.n_layer = 2, .kv_dim = c->kv_dim, .block_size = c->bs, .n_blocks = c->n_blocks,
                              .type = c->type};
    if (d->ops->kv_create(d, &kp, &kv, &e) != ZL_OK)
        fail_msg("%s:%d: kv_create: %s", d->info.kind, d->info.index, e.msg);
    const int64_t nkv = (int64_t)c->n_store * c->kv_dim, nq = (int64_t)c->a.n_tok * c->a.n_head * c->a.head_dim;
    const zl_buf k = bput(&b, c->k, nkv), v = bput(&b, c->v, nkv), q = bput(&b, c->q, nq), o = balloc(&b, nq);
    /* layer 0 gets other values (v as K, k as V) at the same slots: a read of the wrong layer shows */
    OK(d, d->ops->kv_store(d, kv, 0, v, k, c->slots, c->n_store));
    /* junk first at some slots, the real rows later: a later store replaces an earlier one */
    OK(d, d->ops->kv_store(d, kv, 1, q, q, c->slots, 8));
    const int32_t half = c->n_store / 2;
    OK(d, d->ops->kv_store(d, kv, 1, k, v, c->slots, half));
    OK(d, d->ops->kv_store(d, kv, 1, zl_buf_at(k, (uint64_t)half * c->kv_dim * 4),
                           zl_buf_at(v, (uint64_t)half * c->kv_dim * 4), c->slots + half, c->n_store - half));
    OK(d, d->ops->attention(d, kv, 1, q, o, &c->a));
    bget(&b, o, out, nq);
    d->ops->kv_destroy(d, kv);
    bfree(&b);
}

static void ref_attention(const at_case *c, float *out)
{
    const zl_attn_args *a = &c->a;
    const int32_t n_slots = c->n_blocks * c->bs;
    int32_t *row_of = malloc((size_t)n_slots * sizeof *row_of); /* slot -> stored row */
    double *s = malloc(4096 * sizeof *s);
    assert_true(row_of && s);
    for (int32_t i = 0; i < c->n_store; i++)
        row_of[c->slots[i]] = i;
    const bool h16 = c->type == ZL_F16;
#define KV(m, r, col) (h16 ? (double)zl_fp16_to_fp32(zl_fp32_to_fp16((m)[(r) * c->kv_dim + (col)])) \
                           : (double)(m)[(r) * c->kv_dim + (col)])
    for (int32_t i = 0; i < a->n_tok; i++)
        for (int32_t h = 0; h < a->n_head; h++) {
            const int32_t kvh = h / (a->n_head / a->n_head_kv), pos = a->pos[i];
            const int32_t lo = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
            const float *qv = c->q + ((int64_t)i * a->n_head + h) * a->head_dim;
            double mx = -INFINITY, sum = 0.0;
            assert_true(pos - lo + 1 <= 4096);
            for (int32_t p = lo; p <= pos; p++) {
                const int32_t r = row_of[a->tables[a->tbl_off[i] + p / c->bs] * c->bs + p % c->bs];
                double dot = 0.0;
                for (int32_t e = 0; e < a->head_dim; e++)
                    dot += qv[e] * KV(c->k, r, kvh * a->head_dim + e);
                dot *= a->scale;
                if (a->softcap > 0.0f)
                    dot = a->softcap * tanh(dot / a->softcap);
                s[p - lo] = dot;
                mx = dot > mx ? dot : mx;
            }
            for (int32_t p = lo; p <= pos; p++)
                sum += s[p - lo] = exp(s[p - lo] - mx);
            for (int32_t e = 0; e < a->head_dim; e++) {
                double acc = 0.0;
                for (int32_t p = lo; p <= pos; p++) {
                    const int32_t r = row_of[a->tables[a->tbl_off[i] + p / c->bs] * c->bs + p % c->bs];
                    acc += s[p - lo] * KV(c->v, r, kvh * a->head_dim + e);
                }
                out[((int64_t)i * a->n_head + h) * a->head_dim + e] = (float)(acc / sum);
            }
        }
#undef KV
    free_all(row_of, s, NULL);
}

static void shuffle(int32_t *x, int32_t n)
{
    for (int32_t i = n - 1; i > 0; i--) {
        const int32_t j = irand(i + 1), t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

static void at_build(at_case *c, uint32_t type, int32_t n_head, int32_t n_head_kv, int32_t hd, int32_t window,
                     float softcap)
{
    static const int32_t len[4] = {1, 23, 50, 37}, n_query[4] = {1, 3, 1, 37};
    const int32_t bs = 16, n_blocks = 13, kv_dim = n_head_kv * hd;
    memset(c, 0, sizeof *c);
    int32_t perm[13];
    for (int32_t i = 0; i < n_blocks; i++)
        perm[i] = i;
    shuffle(perm, n_blocks);
    int32_t n_tab = 0, n_store = 0, n_tok = 0;
    for (int sq = 0; sq < 4; sq++) {
        const int32_t off = n_tab;
        for (int32_t bl = 0; bl < (len[sq] + bs - 1) / bs; bl++, n_tab++)
            c->tables[n_tab] = perm[n_tab];
        for (int32_t p = 0; p < len[sq]; p++)
            c->slots[n_store++] = c->tables[off + p / bs] * bs + p % bs;
        for (int32_t p = len[sq] - n_query[sq]; p < len[sq]; p++) {
            c->pos[n_tok] = p;
            c->tbl_off[n_tok++] = off;
        }
    }
    assert_true(n_tab <= n_blocks);
    shuffle(c->slots, n_store);
    c->type = type, c->kv_dim = kv_dim, c->bs = bs, c->n_blocks = n_blocks, c->n_store = n_store;
    c->k = fill((int64_t)n_store * kv_dim, 2.0f);
    c->v = fill((int64_t)n_store * kv_dim, 1.0f);
    c->q = fill((int64_t)n_tok * n_head * hd, 2.0f);
    /* softcap cases take a larger scale, so scores reach the cap */
    c->a = (zl_attn_args){.n_tok = n_tok, .n_head = n_head, .n_head_kv = n_head_kv, .head_dim = hd,
                          .scale = softcap > 0.0f ? 0.5f : 1.0f / sqrtf((float)hd), .softcap = softcap,
                          .window = window, .pos = c->pos, .tbl_off = c->tbl_off, .tables = c->tables,
                          .n_tables = n_tab};
}

/* ---- the CPU backend against double formulas ---- */

static void test_cpu_vs_double(void **state)
{
    (void)state;
    char desc[96];
    for (int ti = 0; ti < N_WTYPES; ti++) {
        int64_t ne0[2];
        row_lengths(WTYPES[ti], ne0);
        hweight w;
        weight_make(&w, WTYPES[ti], ne0[1], 33);
        float *x = fill_grid(ne0[1] * 5), *want = malloc(33 * 5 * 4);
        const mm_case c = {&w.t, x, NULL, 5};
        ref_matmul(&c, w.deq, want);
        snprintf(desc, sizeof desc, "%lld x 33, 5 tokens", (long long)ne0[1]);
        char what[32];
        snprintf(what, sizeof what, "matmul %s", zl_type_name(WTYPES[ti]));
        vs_ref(what, desc, run_matmul, &c, want, 33 * 5, TOL); /* x on the grid: only float sums differ */
        const int32_t ids[4] = {32, 0, 7, 7};
        const mm_case g = {&w.t, NULL, ids, 4};
        float *rows = malloc((size_t)ne0[1] * 4 * 4);
        for (int i = 0; i < 4; i++)
            memcpy(rows + i * ne0[1], w.deq + ids[i] * ne0[1], (size_t)ne0[1] * 4);
        snprintf(what, sizeof what, "get_rows %s", zl_type_name(WTYPES[ti]));
        vs_ref(what, desc, run_matmul, &g, rows, 4 * ne0[1], TOL);
        free_all(rows, x, want, NULL);
        weight_drop(&w);
    }
    {
        float *x = fill(3 * 576, 3.0f), *g = fill(576, 1.0f), *want = malloc(3 * 576 * 4);
        for (int inplace = 0; inplace < 2; inplace++) {
            const rn_case c = {x, inplace ? NULL : g, 3, 576, 1e-5f, inplace};
            ref_rmsnorm(&c, want);
            vs_ref("rmsnorm", "3 x 576", run_rmsnorm, &c, want, 3 * 576, TOL);
        }
        free_all(x, g, want, NULL);
    }
    for (int neox = 0; neox < 2; neox++) {
        float *x = fill(5 * 3 * 64, 1.0f), *cs = malloc(5 * 32 * 4), *want = malloc(5 * 3 * 64 * 4);
        for (int t = 0; t < 5; t++)
            zl_rope_cos_sin(cs + t * 32, 32, 100 * t + 3, 10000.0f, 1.0f, NULL, 1.0f);
        const rp_case c = {x, cs, 5, 3, 64, 32, neox};
        ref_rope(&c, want);
        vs_ref(neox ? "rope neox" : "rope normal", "5 x 3 x 64, n_rot 32", run_rope, &c, want, 5 * 3 * 64, TOL);
        free_all(x, cs, want, NULL);
    }
    {
        const int64_t n = 5000;
        float *y0 = fill(n, 40.0f), *a = fill(n, 3.0f), *b = fill(n, 1.0f), *want = malloc(n * 4);
        const int32_t rows[5] = {3, 0, 3, 9, 1};
        const ew_case cases[] = {
            {.op = ZL_OP_GLU, .kind = ZL_GLU_SILU, .a = a, .b = b, .n = n},
            {.op = ZL_OP_GLU, .kind = ZL_GLU_GELU, .a = a, .b = b, .n = n, .inplace = true},
            {.op = ZL_OP_ADD, .y0 = y0, .a = a, .n = n},
            {.op = ZL_OP_ADD_ROWS, .y0 = y0, .a = a, .n = 5, .dim = 1000},
            {.op = ZL_OP_SCALE, .y0 = y0, .n = n, .f = 0.37f},
            {.op = ZL_OP_SOFTCAP, .y0 = y0, .n = n, .f = 30.0f},
            {.op = ZL_OP_GATHER, .a = a, .rows = rows, .n = 5, .dim = 500},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const ew_case *c = &cases[i];
            ref_ew(c, want);
            /* the CPU's GELU is ggml's: a table of fp16 results looked up by the fp16 of g (ops.h), so it is as
             * far from the formula as two fp16 roundings */
            const double tol = c->op == ZL_OP_GLU && c->kind == ZL_GLU_GELU ? 1e-6 : TOL;
            char what[32];
            snprintf(what, sizeof what, "%s%s", zl_op_name(c->op),
                     c->op == ZL_OP_GLU ? (c->kind == ZL_GLU_SILU ? " silu" : " gelu") : "");
            vs_ref(what, "5000 values", run_ew, c, want, ew_out(c), tol);
        }
        free_all(y0, a, b, want, NULL);
    }
    static const struct { uint32_t type; int32_t nh, nkv, hd, window; float cap; } at[] = {
        {ZL_F32, 6, 2, 64, 0, 0.0f}, {ZL_F16, 4, 4, 128, 5, 30.0f}, {ZL_F16, 6, 2, 64, 0, 30.0f},
        {ZL_F32, 4, 4, 64, 5, 0.0f}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        at_case c;
        at_build(&c, at[i].type, at[i].nh, at[i].nkv, at[i].hd, at[i].window, at[i].cap);
        const int64_t n = (int64_t)c.a.n_tok * c.a.n_head * c.a.head_dim;
        float *want = malloc((size_t)n * 4);
        ref_attention(&c, want);
        snprintf(desc, sizeof desc, "heads %d/%d of %d, window %d, softcap %g", at[i].nh, at[i].nkv, at[i].hd,
                 at[i].window, at[i].cap);
        vs_ref(at[i].type == ZL_F16 ? "attention f16" : "attention f32", desc, run_attention, &c, want, n, TOL_ATTN);
        free_all(want, c.k, c.v, c.q, NULL);
    }
}

/* ---- every device against the CPU ---- */

static void test_dev_matmul(void **state)
{
    (void)state;
    need_devices();
    static const int64_t rows[] = {1, 7, 33, 257};
    static const int32_t toks[] = {1, 2, 5, 17, 40};
    for (int ti = 0; ti < N_WTYPES; ti++) {
        int64_t ne0[2];
        row_lengths(WTYPES[ti], ne0);
        char what[32];
        snprintf(what, sizeof what, "matmul %s", zl_type_name(WTYPES[ti]));
        for (int li = 0; li < 2; li++)
            for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
                hweight w;
                weight_make(&w, WTYPES[ti], ne0[li], rows[ri]);
                for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
                    float *x = fill_grid(ne0[li] * toks[k]);
                    const mm_case c = {&w.t, x, NULL, toks[k]};
                    const int64_t shape[4] = {ne0[li], rows[ri], toks[k], 0};
                    char desc[64];
                    snprintf(desc, sizeof desc, "%lld x %lld, %d tokens", (long long)ne0[li], (long long)rows[ri],
                             toks[k]);
                    versus(what, desc, ZL_OP_MATMUL, WTYPES[ti], shape, run_matmul, &c, rows[ri] * toks[k],
                           TOL_MATMUL);
                    free(x);
                }
                weight_drop(&w);
            }
    }
}

/* ---- the tiled matmul against the mat-vec, bit for bit ---- */

/* y = W x (n_tok tokens) on d into out: the whole batch in one matmul call, or (alone) one call per token. Y starts
 * as NaN, so an output no dispatch writes shows. */
static void matmul_on(zl_dev *d, const zl_tensor *t, const float *x, int32_t n_tok, bool alone, float *out)
{
    bufs b = {.d = d};
    zl_dweight w;
    upload(d, t, &w);
    const int64_t ne0 = t->ne[0], ne1 = t->ne[1];
    float *y0 = nans(ne1 * n_tok);
    const zl_buf xb = bput(&b, x, ne0 * n_tok), y = bput(&b, y0, ne1 * n_tok);
    if (alone)
        for (int32_t i = 0; i < n_tok; i++)
            OK(d, d->ops->matmul(d, &w, zl_buf_at(xb, (uint64_t)(i * ne0) * 4), 1,
                                 zl_buf_at(y, (uint64_t)(i * ne1) * 4), NULL));
    else
        OK(d, d->ops->matmul(d, &w, xb, n_tok, y, NULL));
    bget(&b, y, out, ne1 * n_tok);
    d->ops->weight_free(d, &w);
    bfree(&b);
    free(y0);
}

/* got and want (n_tok x ne1) the same bits, or a failure naming the first output that differs. */
static void same_bits(const char *what, const float *got, const float *want, int32_t n_tok, int64_t ne1)
{
    for (int64_t i = 0; i < (int64_t)n_tok * ne1; i++)
        if (memcmp(&got[i], &want[i], sizeof got[i]))
            fail_msg("%s: token %lld row %lld: %a, the mat-vec alone gives %a", what, (long long)(i / ne1),
                     (long long)(i % ne1), (double)got[i], (double)want[i]);
}

/* The tiled matmuls sum each output in the order of their mat-vec shape (mul_mm.comp: one thread a row,
 * mul_mm_lanes.comp: 16 lanes a row, as mul_mv.comp), so a token's outputs are the same bits alone or in a batch of
 * any size, whichever kernel its batch takes: the server's batching invariance on Vulkan rests on it. Every weight type, both row lengths of row_lengths() (tails of plain
 * types), 133 rows (two 64-row tiles and a tail), batches of 1, 3, 40 and 130 tokens (32-token tiles and tails),
 * arbitrary floats (not the grid). The reference is each token alone on the mat-vec; the same device with the
 * tiled matmul for every batch runs each token alone too (a 1-token tile) and each batch whole, and the mat-vec
 * runs each batch whole. */
static void test_dev_tiled_exact(void **state)
{
    (void)state;
    need_devices();
    static const int32_t toks[] = {1, 3, 40, 130};
    enum { MAX_TOK = 130, N_ROWS = 133 };
    int pairs = 0;
    for (int a = 0; a < g_n_dev; a++)
        for (int m = 0; m < g_n_dev; m++) {
            const bool rows = g_vk_variant[a] == VK_ROWS && g_vk_variant[m] == VK_TILED;
            const bool lanes = g_vk_variant[a] == VK_LANES && g_vk_variant[m] == VK_LANES_TILED;
            if (!(rows || lanes) || g_dev[m]->info.index != g_dev[a]->info.index)
                continue;
            pairs++;
            for (int ti = 0; ti < N_WTYPES; ti++) {
                int64_t ne0[2];
                row_lengths(WTYPES[ti], ne0);
                for (int li = 0; li < 2; li++) {
                    const int64_t shape[4] = {ne0[li], N_ROWS, MAX_TOK, 0};
                    if (!g_dev[a]->ops->supports(g_dev[a], ZL_OP_MATMUL, WTYPES[ti], shape))
                        continue;
                    hweight w;
                    weight_make(&w, WTYPES[ti], ne0[li], N_ROWS);
                    float *x = fill(ne0[li] * MAX_TOK, 1.0f), *want = nans(N_ROWS * MAX_TOK),
                          *got = nans(N_ROWS * MAX_TOK);
                    char what[96];
                    matmul_on(g_dev[a], &w.t, x, MAX_TOK, true, want);
                    snprintf(what, sizeof what, "vulkan:%d %s %lld x %d, tiled (%s), each token alone",
                             g_dev[m]->info.index, zl_type_name(WTYPES[ti]), (long long)ne0[li], N_ROWS,
                             rows ? "rows" : "lanes");
                    matmul_on(g_dev[m], &w.t, x, MAX_TOK, true, got);
                    same_bits(what, got, want, MAX_TOK, N_ROWS);
                    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
                        for (int dv = 0; dv < 2; dv++) {
                            zl_dev *d = dv ? g_dev[m] : g_dev[a];
                            snprintf(what, sizeof what, "vulkan:%d %s %lld x %d, %s (%s), batch of %d",
                                     d->info.index, zl_type_name(WTYPES[ti]), (long long)ne0[li], N_ROWS,
                                     dv ? "tiled" : "mat-vec", rows ? "rows" : "lanes", toks[k]);
                            matmul_on(d, &w.t, x, toks[k], false, got);
                            same_bits(what, got, want, toks[k], N_ROWS);
                        }
                    free_all(x, want, got, NULL);
                    weight_drop(&w);
                }
            }
        }
    if (!pairs) {
        print_message("[   SKIP   ] no Vulkan device opened both as mat-vec and as tiled matmul\n");
        skip();
    }
}

static void test_dev_get_rows(void **state)
{
    (void)state;
    need_devices();
    static const int32_t counts[] = {1, 5, 17};
    for (int ti = 0; ti < N_WTYPES; ti++) {
        int64_t ne0[2];
        row_lengths(WTYPES[ti], ne0);
        char what[32];
        snprintf(what, sizeof what, "get_rows %s", zl_type_name(WTYPES[ti]));
        for (int li = 0; li < 2; li++) {
            hweight w;
            weight_make(&w, WTYPES[ti], ne0[li], 33);
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
                int32_t ids[17];
                for (int32_t i = 0; i < counts[k]; i++)
                    ids[i] = i == 0 ? 32 : irand(33); /* the last row, then any (repeats too) */
                const mm_case c = {&w.t, NULL, ids, counts[k]};
                const int64_t shape[4] = {ne0[li], 33, counts[k], 0};
                char desc[64];
                snprintf(desc, sizeof desc, "rows of %lld, %d ids", (long long)ne0[li], counts[k]);
                versus(what, desc, ZL_OP_GET_ROWS, WTYPES[ti], shape, run_matmul, &c, ne0[li] * counts[k], TOL);
            }
            weight_drop(&w);
        }
    }
}

static void test_dev_rmsnorm_rope(void **state)
{
    (void)state;
    need_devices();
    static const int64_t dims[] = {64, 576, 1000}, nrows[] = {1, 3, 17};
    for (size_t di = 0; di < 3; di++)
        for (size_t ri = 0; ri < 3; ri++)
            for (int variant = 0; variant < 3; variant++) { /* with g; without; with g, in place */
                float *x = fill(nrows[ri] * dims[di], 3.0f), *g = fill(dims[di], 1.0f);
                const rn_case c = {x, variant == 1 ? NULL : g, nrows[ri], dims[di], 1e-6f, variant == 2};
                const int64_t shape[4] = {dims[di], nrows[ri], 0, 0};
                char desc[64];
                snprintf(desc, sizeof desc, "%lld x %lld, %s", (long long)nrows[ri], (long long)dims[di],
                         variant == 0 ? "g" : variant == 1 ? "no g" : "g, in place");
                versus("rmsnorm", desc, ZL_OP_RMSNORM, ZL_F32, shape, run_rmsnorm, &c, nrows[ri] * dims[di], TOL);
                free_all(x, g, NULL);
            }
    static const struct { int32_t n_tok, n_head, hd, n_rot; } rp[] = {
        {1, 1, 64, 64}, {5, 3, 64, 32}, {17, 3, 128, 128}, {2, 6, 128, 64}, {17, 2, 96, 16}};
    for (size_t i = 0; i < sizeof rp / sizeof rp[0]; i++)
        for (int neox = 0; neox < 2; neox++) {
            float *x = fill((int64_t)rp[i].n_tok * rp[i].n_head * rp[i].hd, 2.0f);
            float *cs = malloc((size_t)rp[i].n_tok * (size_t)rp[i].n_rot * 4);
            for (int32_t t = 0; t < rp[i].n_tok; t++) /* positions far apart: large angles too */
                zl_rope_cos_sin(cs + t * rp[i].n_rot, rp[i].n_rot, irand(5000), 10000.0f, 1.0f, NULL, 1.0f);
            const rp_case c = {x, cs, rp[i].n_tok, rp[i].n_head, rp[i].hd, rp[i].n_rot, neox};
            const int64_t shape[4] = {rp[i].hd, rp[i].n_head, rp[i].n_rot, 0};
            char desc[64];
            snprintf(desc, sizeof desc, "%d x %d x %d, n_rot %d", rp[i].n_tok, rp[i].n_head, rp[i].hd, rp[i].n_rot);
            versus(neox ? "rope neox" : "rope normal", desc, ZL_OP_ROPE, ZL_F32, shape, run_rope, &c,
                   (int64_t)rp[i].n_tok * rp[i].n_head * rp[i].hd, TOL);
            free_all(x, cs, NULL);
        }
}

static void test_dev_eltwise(void **state)
{
    (void)state;
    need_devices();
    static const int64_t sizes[] = {1, 17, 1000, 4097, 100003};
    int32_t rows[40];
    for (int i = 0; i < 40; i++)
        rows[i] = irand(50);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int64_t n = sizes[si];
        /* y0 and a cover add_rows' and gather's rows x dim too (at least 64, up to 50 rows of 1000) */
        float *y0 = fill(n > 50000 ? n : 50000, 50.0f), *a = fill(n > 50000 ? n : 50000, 4.0f), *b = fill(n, 1.0f);
        /* add_rows and gather: rows x dim from the size (dim 64 for small sizes, 1000 otherwise) */
        const int64_t dim = n < 1000 ? 64 : 1000, nr = n / dim > 0 ? (n / dim > 40 ? 40 : n / dim) : 1;
        const ew_case cases[] = {
            {.op = ZL_OP_GLU, .kind = ZL_GLU_SILU, .a = a, .b = b, .n = n},
            {.op = ZL_OP_GLU, .kind = ZL_GLU_SILU, .a = a, .b = b, .n = n, .inplace = true},
            {.op = ZL_OP_GLU, .kind = ZL_GLU_GELU, .a = a, .b = b, .n = n},
            {.op = ZL_OP_GLU, .kind = ZL_GLU_GELU, .a = a, .b = b, .n = n, .inplace = true},
            {.op = ZL_OP_ADD, .y0 = y0, .a = a, .n = n},
            {.op = ZL_OP_ADD_ROWS, .y0 = y0, .a = a, .n = nr, .dim = dim},
            {.op = ZL_OP_SCALE, .y0 = y0, .n = n, .f = 0.37f},
            {.op = ZL_OP_SOFTCAP, .y0 = y0, .n = n, .f = 30.0f},
            {.op = ZL_OP_GATHER, .a = a, .rows = rows, .n = nr, .dim = dim},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const ew_case *c = &cases[i];
            char what[32], desc[64];
            snprintf(what, sizeof what, "%s%s", zl_op_name(c->op),
                     c->op == ZL_OP_GLU ? (c->kind == ZL_GLU_SILU ? " silu" : " gelu") : "");
            snprintf(desc, sizeof desc, "n %lld, dim %lld%s", (long long)c->n, (long long)c->dim,
                     c->inplace ? ", in place" : "");
            const int64_t shape[4] = {c->n, c->dim, 0, 0};
            versus(what, desc, c->op, ZL_F32, shape, run_ew, c, ew_out(c), TOL);
        }
        free_all(y0, a, b, NULL);
    }
}

static void test_dev_attention(void **state)
{
    (void)state;
    need_devices();
    for (int combo = 0; combo < 32; combo++) { /* pool type x heads x head_dim x window x softcap */
        const uint32_t type = combo & 1 ? ZL_F32 : ZL_F16;
        const int32_t nh = combo & 2 ? 4 : 6, nkv = combo & 2 ? 4 : 2, hd = combo & 4 ? 128 : 64;
        const int32_t window = combo & 8 ? 5 : 0;
        const float cap = combo & 16 ? 30.0f : 0.0f;
        at_case c;
        at_build(&c, type, nh, nkv, hd, window, cap);
        const int64_t shape[4] = {hd, nh, nkv, 0};
        char desc[96];
        snprintf(desc, sizeof desc, "heads %d/%d of %d, window %d, softcap %g, %d queries", nh, nkv, hd, window, cap,
                 c.a.n_tok);
        for (int k = 0; k < g_n_dev; k++) /* kv_store is part of the run */
            assert_true(g_dev[k]->ops->supports(g_dev[k], ZL_OP_KV_STORE, type, shape));
        versus(type == ZL_F32 ? "attention f32" : "attention f16", desc, ZL_OP_ATTENTION, type, shape,
               run_attention, &c, (int64_t)c.a.n_tok * nh * hd, TOL_ATTN);
        free_all(c.k, c.v, c.q, NULL);
    }
}

/* ---- specs, argument checks, supports, info ---- */

static void test_dev_open(void **state)
{
    (void)state;
    zl_dev *d = NULL;
    zl_err e = {{0}};
    assert_int_equal(zl_dev_open("cpu", &d, &e), ZL_OK);
    assert_true(d->info.is_cpu && !strcmp(d->info.kind, "cpu") && d->info.index == 0);
    zl_dev_close(d);
    assert_int_equal(zl_dev_open("cpu:0", &d, &e), ZL_OK);
    zl_dev_close(d);
    assert_int_equal(zl_dev_open("cpu:1", &d, &e), ZL_EUNSUPPORTED);
    assert_null(d);
    assert_non_null(strstr(e.msg, "no such device"));
    assert_int_equal(zl_dev_open("gpu", &d, &e), ZL_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "cpu")); /* names the kinds there are */
    assert_int_equal(zl_dev_open("vulkan:x", &d, &e), ZL_EINVAL);
    assert_int_equal(zl_dev_open("vulkan:", &d, &e), ZL_EINVAL);
    assert_int_equal(zl_dev_open("cpu:-1", &d, &e), ZL_EINVAL);
    assert_int_equal(zl_dev_open("vulkan:999", &d, &e), ZL_EUNSUPPORTED);
    print_message("zl_dev_open(\"vulkan:999\"): %s\n", e.msg);
    zl_dev_close(NULL);

    int n;
    const zl_backend *const *kinds = zl_backend_list(&n);
    assert_true(n >= 1 && !strcmp(kinds[0]->name, "cpu"));
    for (int k = 0; k < n; k++) {
        zl_dev_info info[MAX_DEVS];
        const int nd = kinds[k]->enumerate(info, MAX_DEVS);
        if (nd == 0) { /* a kind without devices refuses its spec with its reason */
            assert_int_equal(zl_dev_open(kinds[k]->name, &d, &e), ZL_EUNSUPPORTED);
            assert_non_null(strstr(e.msg, kinds[k]->why_none()));
        }
        for (int i = 0; i < nd && i < MAX_DEVS; i++)
            assert_true(!strcmp(info[i].kind, kinds[k]->name) && info[i].index == i);
    }

    for (int op = 0; op < ZL_OP_COUNT; op++) {
        assert_string_not_equal(zl_op_name((zl_op)op), "unknown");
        for (int o2 = 0; o2 < op; o2++)
            assert_string_not_equal(zl_op_name((zl_op)op), zl_op_name((zl_op)o2));
    }
    assert_string_equal(zl_op_name(ZL_OP_COUNT), "unknown");

    const zl_dev_info *ci = &g_cpu->info;
    assert_true(ci->memory > 0 && ci->alignment == 64 && (ci->features & ZL_DEV_UNIFIED) && ci->name[0]);
    const int64_t mm[4] = {96, 7, 1, 0}, bad[4] = {100, 7, 1, 0}, att[4] = {128, 6, 2, 0}, k[4] = {256, 3, 1, 0};
    zl_dev_ops const *o = g_cpu->ops;
    assert_true(o->supports(g_cpu, ZL_OP_MATMUL, ZL_Q4_0, mm) && !o->supports(g_cpu, ZL_OP_MATMUL, ZL_Q4_0, bad));
    assert_true(!o->supports(g_cpu, ZL_OP_MATMUL, ZL_IQ2_XXS, mm) && o->supports(g_cpu, ZL_OP_GET_ROWS, ZL_Q6_K, k));
    assert_true(o->supports(g_cpu, ZL_OP_ATTENTION, ZL_F16, att) && !o->supports(g_cpu, ZL_OP_ATTENTION, ZL_Q8_0, att));
    assert_true(o->supports(g_cpu, ZL_OP_KV_STORE, ZL_F32, att) && o->supports(g_cpu, ZL_OP_SOFTCAP, ZL_F32, att));
    assert_false(o->supports(g_cpu, ZL_OP_COUNT, ZL_F32, att));
}

/* Bad arguments on d: every one refused with ZL_EINVAL (nothing read or written out of range), the stream still
 * usable after them. */
static void check_rejects(zl_dev *d)
{
    const zl_dev_ops *o = d->ops;
    bufs b = {.d = d};
    float *h = fill(64, 1.0f);
    const zl_buf x = bput(&b, h, 64), y = balloc(&b, 64), none = {0};
    hweight hw;
    weight_make(&hw, ZL_Q8_0, 32, 2);
    zl_dweight w;
    upload(d, &hw.t, &w);
    const int32_t ids_bad[2] = {0, 2}, ids_neg[1] = {-1}, rows_far[1] = {64};
    float cs[64] = {0};
    zl_err e;
#define BAD(call) assert_int_equal((call), ZL_EINVAL)
    BAD(o->matmul(d, &w, none, 1, y, NULL)); BAD(o->matmul(d, &w, x, -1, y, NULL));
    BAD(o->matmul(d, &w, x, 64, y, NULL)); /* x holds 2 tokens of 32 */
    BAD(o->get_rows(d, &w, ids_bad, 2, y)); BAD(o->get_rows(d, &w, ids_neg, 1, y));
    BAD(o->get_rows(d, &w, ids_bad, 1, none));
    BAD(o->rmsnorm(d, y, x, none, -1, 8, 1e-5f)); BAD(o->rmsnorm(d, y, x, none, 1, 0, 1e-5f));
    BAD(o->rmsnorm(d, y, none, none, 1, 8, 1e-5f)); BAD(o->rmsnorm(d, y, x, none, 2, 64, 1e-5f)); /* 128 in 64 */
    BAD(o->rope(d, x, 1, 1, 64, 63, cs, false)); BAD(o->rope(d, x, 1, 1, 32, 64, cs, false));
    BAD(o->rope(d, x, 1, 1, 64, 64, NULL, false)); BAD(o->rope(d, x, 2, 1, 64, 64, cs, true));
    BAD(o->glu(d, 7, y, x, x, 64)); BAD(o->glu(d, ZL_GLU_SILU, y, x, x, -1));
    BAD(o->glu(d, ZL_GLU_GELU, y, none, x, 8));
    BAD(o->add(d, y, x, -1)); BAD(o->add(d, y, x, 65));
    BAD(o->add_rows(d, y, x, 1, 0)); BAD(o->add_rows(d, y, none, 1, 8));
    BAD(o->scale(d, none, 2.0f, 8)); BAD(o->scale(d, y, 2.0f, -3));
    BAD(o->softcap(d, y, 0.0f, 8)); BAD(o->softcap(d, y, -1.0f, 8));
    BAD(o->gather(d, y, x, ids_neg, 1, 8)); BAD(o->gather(d, y, x, rows_far, 1, 8));
    BAD(o->gather(d, y, x, ids_bad, -1, 8));

    zl_dkv *kv = NULL;
    const zl_dkv_params kp_bad = {.n_layer = 1, .kv_dim = 16, .block_size = 16, .n_blocks = 2, .type = ZL_Q8_0};
    assert_int_equal(o->kv_create(d, &kp_bad, &kv, &e), ZL_EINVAL);
    const zl_dkv_params kp = {.n_layer = 1, .kv_dim = 16, .block_size = 16, .n_blocks = 2, .type = ZL_F16};
    OK(d, o->kv_create(d, &kp, &kv, &e));
    const int32_t slots_bad[1] = {32}, slot0[1] = {0};
    BAD(o->kv_store(d, kv, 0, x, x, slots_bad, 1)); BAD(o->kv_store(d, kv, 1, x, x, slot0, 1));
    BAD(o->kv_store(d, kv, 0, none, x, slot0, 1)); BAD(o->kv_store(d, kv, 0, x, x, slot0, -1));
    const int32_t pos[1] = {0}, pos_far[1] = {16}, off[1] = {0}, tab[1] = {0}, tab_bad[1] = {2};
    zl_attn_args a = {.n_tok = 1, .n_head = 2, .n_head_kv = 2, .head_dim = 8, .scale = 1.0f, .pos = pos,
                      .tbl_off = off, .tables = tab, .n_tables = 1};
    zl_attn_args t = a;
    BAD(o->attention(d, kv, 1, x, y, &a)); BAD(o->attention(d, kv, 0, none, y, &a)); /* layer 1 of 1; no q */
    t.tables = tab_bad, BAD(o->attention(d, kv, 0, x, y, &t));
    t = a, t.pos = pos_far, BAD(o->attention(d, kv, 0, x, y, &t)); /* its block: past the table's one entry */
    t = a, t.n_head = 3, BAD(o->attention(d, kv, 0, x, y, &t));
    t = a, t.head_dim = 16, BAD(o->attention(d, kv, 0, x, y, &t)); /* kv_dim is 2 x 8 */
    t = a, t.n_tok = -1, BAD(o->attention(d, kv, 0, x, y, &t));
    t = a, t.pos = NULL, BAD(o->attention(d, kv, 0, x, y, &t)); /* no positions, no tables: refused, not read */
    t = a, t.tables = NULL, BAD(o->attention(d, kv, 0, x, y, &t));
#undef BAD
    /* and the right calls still run */
    OK(d, o->kv_store(d, kv, 0, x, x, slot0, 1));
    OK(d, o->attention(d, kv, 0, x, y, &a));
    float out[16];
    bget(&b, y, out, 16);
    for (int i = 0; i < 16; i++) /* one position: the output is its V row (in fp16) */
        assert_float_equal(out[i], zl_fp16_to_fp32(zl_fp32_to_fp16(h[i])), 1e-6f);
    o->kv_destroy(d, kv);
    o->weight_free(d, &w);
    weight_drop(&hw);
    bfree(&b);
    free(h);
}

static void test_rejects(void **state)
{
    (void)state;
    check_rejects(g_cpu);
    zl_buf small = {0};
    zl_err e;
    assert_int_equal(g_cpu->ops->alloc(g_cpu, 100, &small.mem, &e), ZL_OK);
    assert_true(((uintptr_t)zl_cpu_buf_ptr(small) & 63) == 0);
    assert_int_equal(g_cpu->ops->write(g_cpu, zl_buf_at(small, 96), &e, 8), ZL_EINVAL); /* past the end */
    assert_int_equal(g_cpu->ops->read(g_cpu, &e, zl_buf_at(small, 101), 0), ZL_EINVAL);
    g_cpu->ops->free(g_cpu, small.mem);
    assert_int_equal(g_cpu->ops->alloc(g_cpu, UINT64_MAX, &small.mem, &e), ZL_ENOMEM);
    assert_null(zl_cpu_buf_ptr((zl_buf){0}));
    for (int k = 0; k < g_n_dev; k++)
        check_rejects(g_dev[k]);
}

/* ---- setup: the CPU and every other device; teardown: the worst NMSE table ---- */

static int setup(void **state)
{
    (void)state;
    zl_err e = {{0}};
    if (zl_dev_open("cpu", &g_cpu, &e) != ZL_OK) {
        fprintf(stderr, "cannot open the CPU backend: %s\n", e.msg);
        return -1;
    }
    int n;
    const zl_backend *const *kinds = zl_backend_list(&n);
    size_t len = 0;
    g_none[0] = '\0';
    if (n == 1)
        snprintf(g_none, sizeof g_none, "this build has no other backend");
    for (int k = 1; k < n; k++) {
        zl_dev_info info[MAX_DEVS];
        const int nd = kinds[k]->enumerate(info, MAX_DEVS);
        if (nd == 0 && len < sizeof g_none)
            len += (size_t)snprintf(g_none + len, sizeof g_none - len, "%s%s: none (%s)", len ? "; " : "",
                                    kinds[k]->name, kinds[k]->why_none());
        for (int i = 0; i < nd && i < MAX_DEVS && g_n_dev < MAX_DEVS; i++) {
            char spec[48];
            snprintf(spec, sizeof spec, "%s:%d", kinds[k]->name, i);
            /* Vulkan has two mat-vec shapes (ZILI_VK_MATVEC, vk.c) and a tiled matmul of each shape for batches
             * (ZILI_VK_MM_MIN): each device is opened once with each mat-vec shape, the tiled matmul off, and once
             * with each shape's tiled matmul taking every batch, a single token's too */
            const bool vk = !strcmp(kinds[k]->name, "vulkan");
            for (int variant = 0; variant < (vk ? VK_VARIANTS : 1) && g_n_dev < MAX_DEVS; variant++) {
                if (vk) {
                    setenv("ZILI_VK_MATVEC", variant == VK_LANES || variant == VK_LANES_TILED ? "lanes" : "rows", 1);
                    setenv("ZILI_VK_MM_MIN", variant == VK_TILED || variant == VK_LANES_TILED ? "1" : "0", 1);
                }
                g_vk_variant[g_n_dev] = vk ? variant : -1;
                const int rc = zl_dev_open(spec, &g_dev[g_n_dev], &e);
                if (vk) {
                    unsetenv("ZILI_VK_MATVEC");
                    unsetenv("ZILI_VK_MM_MIN");
                }
                if (rc != ZL_OK) {
                    snprintf(g_open_fail, sizeof g_open_fail, "%s (%.100s) enumerates but does not open: %.500s",
                             spec, info[i].name, e.msg);
                    continue;
                }
                print_message("comparing %s (%s, %s%s) with the CPU\n", spec, info[i].name, info[i].driver,
                              !vk            ? ""
                              : variant == VK_LANES ? ", mat-vec 16 lanes a row"
                              : variant == VK_TILED ? ", tiled matmul (one thread a row's order) from 1 token"
                              : variant == VK_LANES_TILED ? ", tiled matmul (16 lanes' order) from 1 token"
                                             : ", mat-vec one thread a row");
                g_n_dev++;
            }
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    print_message("worst NMSE per device, op and type (cases compared; refused by supports()):\n");
    for (int i = 0; i < g_n_worst; i++) {
        const worst *w = &g_worst[i];
        char refused[32] = "";
        if (w->unsupported)
            snprintf(refused, sizeof refused, "; %d refused", w->unsupported);
        print_message("  %-34s %.3e  (tol %.0e, %d cases%s)\n", w->key, w->nmse, w->tol, w->cases, refused);
    }
    for (int k = 0; k < g_n_dev; k++)
        zl_dev_close(g_dev[k]);
    zl_dev_close(g_cpu);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dev_open),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_cpu_vs_double),
        cmocka_unit_test(test_dev_matmul),
        cmocka_unit_test(test_dev_tiled_exact),
        cmocka_unit_test(test_dev_get_rows),
        cmocka_unit_test(test_dev_rmsnorm_rope),
        cmocka_unit_test(test_dev_eltwise),
        cmocka_unit_test(test_dev_attention),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
