/*
 * amx.c - the AMX tile path's portable half (see amx.h): whether the tiles can run, the per-token activation data,
 * the int8 weight panels in plain C, the reference arithmetic the tile kernels are tested against, and the driver
 * that multiplies a weight matrix by a set of tokens on the pool (zl_amx_matmul).
 *
 * Driver: the tokens' activations are converted once per matmul (the int8 path into the weight type's
 * vec_dot_type, as the exact path does, plus the per-token floats of amx.h; the bf16 path into bf16 rows), n
 * rounded up to 16 tokens with zero rows. The pool's threads then take panels of 16 weight rows (32 for bf16) from
 * an atomic counter; each thread unpacks its panel once into its own buffer and runs the tile kernel over every
 * token, so a weight byte is read and unpacked once per matmul.
 *
 * Threads: the workspace (zl_amx_ws) belongs to one zl_cpu and is driven by its one thread; in a run each pool
 * thread writes its own panel buffer and disjoint columns of y.
 */
#include "backend/cpu/amx.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"
#include "core/dtype.h"
#include "core/err.h"
#include "core/fp16.h"

#ifdef ZL_HAVE_AMX_KERNELS
#include <cpuid.h>
#include <sys/syscall.h>
#endif

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the reference's fmas are written out, as the kernels' */
#endif

/* ---- availability ---- */

static bool g_amx;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

#ifdef ZL_HAVE_AMX_KERNELS
enum { ARCH_REQ_XCOMP_PERM_ = 0x1023, XFEATURE_XTILEDATA_ = 18 };

static bool cpu_has_amx(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    const bool bf16 = d & (1u << 22), tile = d & (1u << 24), int8 = d & (1u << 25);
    if (!(bf16 && tile && int8) || a < 1) return false;
    __cpuid_count(7, 1, a, b, c, d);
    if (!(a & (1u << 5))) return false; /* AVX512-BF16 (the bf16 activations' conversion) */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & (3u << 17)) == (3u << 17); /* XTILECFG and XTILEDATA enabled by the OS */
}
#endif

static void amx_detect(void)
{
#ifdef ZL_HAVE_AMX_KERNELS
    const char *env = getenv("ZILI_CPU");
    if (env && *env && strcmp(env, "amx") != 0) return;
    if (strcmp(zl_cpu_kernels_name(), "avx512vnni") != 0 || !cpu_has_amx()) return;
    /* Linux hands out the 8 KB tile state only to processes that ask (since 5.16); a refusal leaves the tiles off. */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM_, XFEATURE_XTILEDATA_) != 0) return;
    g_amx = true;
#endif
}

bool zl_amx_available(void)
{
    pthread_once(&g_amx_once, amx_detect);
    return g_amx;
}

bool zl_amx_quant_bf16(void)
{
    const char *v = getenv("ZILI_AMX");
    if (v && strcmp(v, "int8") == 0) return false;
    if (v && strcmp(v, "bf16") == 0) return true;
    return true;
}

bool zl_amx_default_on(void)
{
    const char *exact = getenv("ZILI_EXACT");
    if (exact && *exact && strcmp(exact, "0") != 0) return false;
    return zl_amx_available();
}

const char *zl_cpu_kernels_amx_name(void)
{
    return "avx512vnni+amx"; /* the tiles run only with that set */
}

bool zl_amx_supports(uint32_t type)
{
    switch (type) {
    case ZL_Q4_0: case ZL_Q4_1: case ZL_Q5_0: case ZL_Q8_0: case ZL_Q4_K: case ZL_Q5_K: case ZL_Q6_K:
    case ZL_F16: case ZL_BF16:
        return true;
    default:
        return false;
    }
}

int zl_amx_sub(uint32_t type)
{
    if (type == ZL_F16 || type == ZL_BF16) return 0;
    return type == ZL_Q6_K ? 16 : 32;
}

static bool has_min(uint32_t type)
{
    return type == ZL_Q4_1 || type == ZL_Q4_K || type == ZL_Q5_K;
}

#ifndef ZL_HAVE_AMX_KERNELS
bool zl_amx_peak(int n_threads, double seconds, double *int8_macs, double *bf16_macs)
{
    (void)n_threads, (void)seconds;
    if (int8_macs) *int8_macs = 0.0;
    if (bf16_macs) *bf16_macs = 0.0;
    return false;
}
#endif

/* ---- activations ---- */

void zl_amx_int8_offsets(uint32_t type, int64_t ne0, uint32_t *off)
{
    const int S = zl_amx_sub(type);
    const int64_t nsub = ne0 / S;
    for (int64_t j = 0; j < nsub; j++) {
        switch (zl_type_traits_ref(type)->vec_dot_type) {
        case ZL_Q8_0: off[j] = (uint32_t)(j * sizeof(zl_block_q8_0) + 2); break;
        case ZL_Q8_1: off[j] = (uint32_t)(j * sizeof(zl_block_q8_1) + 4); break;
        default: { /* Q8_K */
            const int64_t per = ZL_QK_K / S;
            off[j] = (uint32_t)((j / per) * sizeof(zl_block_q8_K) + 4 + (size_t)(j % per) * (size_t)S);
        }
        }
    }
}

void zl_amx_int8_act(uint32_t type, const void *xq, int64_t ne0, float *da, float *sa)
{
    const int S = zl_amx_sub(type);
    const int64_t nsub = ne0 / S;
    switch (zl_type_traits_ref(type)->vec_dot_type) {
    case ZL_Q8_0: {
        const zl_block_q8_0 *y = xq;
        for (int64_t j = 0; j < nsub; j++) da[j] = zl_fp16_to_fp32(y[j].d);
        break;
    }
    case ZL_Q8_1: {
        const zl_block_q8_1 *y = xq;
        for (int64_t j = 0; j < nsub; j++) {
            da[j] = zl_fp16_to_fp32(y[j].d);
            if (sa) sa[j] = zl_fp16_to_fp32(y[j].s);
        }
        break;
    }
    default: { /* Q8_K: one scale per 256; the sums of 16 codes per bsums entry */
        const zl_block_q8_K *y = xq;
        const int64_t per = ZL_QK_K / S;
        for (int64_t j = 0; j < nsub; j++) {
            const zl_block_q8_K *b = &y[j / per];
            da[j] = b->d;
            if (sa && S == 32) {
                const int s = b->bsums[2 * (j % per)] + b->bsums[2 * (j % per) + 1];
                sa[j] = b->d * (float)s;
            }
        }
    }
    }
}

/* ---- int8 panels, plain C ---- */

/* Row r's codes c[0 .. ne0) and per-sub-block sw, mw (mw may be NULL) from the file's row layout. */
static void decode_row(uint32_t type, const void *row, int64_t ne0, int8_t *c, float *sw, float *mw)
{
    switch (type) {
    case ZL_Q8_0: {
        const zl_block_q8_0 *x = row;
        for (int64_t b = 0; b < ne0 / ZL_QK; b++) {
            memcpy(c + b * ZL_QK, x[b].qs, ZL_QK);
            sw[b] = zl_fp16_to_fp32(x[b].d);
        }
        break;
    }
    case ZL_Q4_0: case ZL_Q4_1: {
        const bool q41 = type == ZL_Q4_1;
        for (int64_t b = 0; b < ne0 / ZL_QK; b++) {
            const uint8_t *qs;
            if (q41) {
                const zl_block_q4_1 *x = (const zl_block_q4_1 *)row + b;
                qs = x->qs;
                sw[b] = zl_fp16_to_fp32(x->d);
                mw[b] = zl_fp16_to_fp32(x->m);
            } else {
                const zl_block_q4_0 *x = (const zl_block_q4_0 *)row + b;
                qs = x->qs;
                sw[b] = zl_fp16_to_fp32(x->d);
            }
            const int off = q41 ? 0 : 8;
            for (int i = 0; i < 16; i++) {
                c[b * ZL_QK + i] = (int8_t)((qs[i] & 0x0f) - off);
                c[b * ZL_QK + 16 + i] = (int8_t)((qs[i] >> 4) - off);
            }
        }
        break;
    }
    case ZL_Q5_0: {
        const zl_block_q5_0 *x = row;
        for (int64_t b = 0; b < ne0 / ZL_QK; b++) {
            uint32_t qh;
            memcpy(&qh, x[b].qh, 4);
            sw[b] = zl_fp16_to_fp32(x[b].d);
            for (int i = 0; i < 16; i++) {
                c[b * ZL_QK + i] = (int8_t)(((x[b].qs[i] & 0x0f) | ((qh >> i) & 1) << 4) - 16);
                c[b * ZL_QK + 16 + i] = (int8_t)(((x[b].qs[i] >> 4) | ((qh >> (i + 16)) & 1) << 4) - 16);
            }
        }
        break;
    }
    case ZL_Q4_K: case ZL_Q5_K: {
        const bool q5 = type == ZL_Q5_K;
        for (int64_t b = 0; b < ne0 / ZL_QK_K; b++) {
            const uint8_t *qs, *qh = NULL, *scales;
            uint16_t hd, hdmin;
            if (q5) {
                const zl_block_q5_K *x = (const zl_block_q5_K *)row + b;
                qs = x->qs, qh = x->qh, scales = x->scales, hd = x->d, hdmin = x->dmin;
            } else {
                const zl_block_q4_K *x = (const zl_block_q4_K *)row + b;
                qs = x->qs, scales = x->scales, hd = x->d, hdmin = x->dmin;
            }
            const float d = zl_fp16_to_fp32(hd), dmin = zl_fp16_to_fp32(hdmin);
            int8_t *cb = c + b * ZL_QK_K;
            for (int h = 0; h < 4; h++)
                for (int l = 0; l < 32; l++) {
                    int lo = qs[32 * h + l] & 0x0f, hi = qs[32 * h + l] >> 4;
                    if (qh) {
                        lo |= ((qh[l] >> (2 * h)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * h + 1)) & 1) << 4;
                    }
                    cb[64 * h + l] = (int8_t)lo;
                    cb[64 * h + 32 + l] = (int8_t)hi;
                }
            for (int j = 0; j < 8; j++) {
                int sc, m;
                if (j < 4) {
                    sc = scales[j] & 63;
                    m = scales[j + 4] & 63;
                } else {
                    sc = (scales[j + 4] & 0x0f) | (scales[j - 4] >> 6) << 4;
                    m = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
                }
                sw[b * 8 + j] = d * (float)sc;
                mw[b * 8 + j] = -(dmin * (float)m);
            }
        }
        break;
    }
    case ZL_Q6_K: {
        const zl_block_q6_K *x = row;
        for (int64_t b = 0; b < ne0 / ZL_QK_K; b++) {
            int8_t *cb = c + b * ZL_QK_K;
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 32; l++) {
                        const uint8_t lo = x[b].ql[64 * h + l + 32 * (k & 1)];
                        const int low4 = k < 2 ? lo & 0x0f : lo >> 4;
                        const int high2 = (x[b].qh[32 * h + l] >> (2 * k)) & 3;
                        cb[128 * h + 32 * k + l] = (int8_t)((low4 | high2 << 4) - 32);
                    }
            const float d = zl_fp16_to_fp32(x[b].d);
            for (int s = 0; s < 16; s++) sw[b * 16 + s] = d * (float)x[b].scales[s];
        }
        break;
    }
    default: break;
    }
}

/* Row r of an X16 group of R rows (Q4_0 or Q4_K, repack.h) decoded as decode_row would decode the file's row. */
static void decode_x16_row(uint32_t type, const void *group, int R, int r, int64_t ne0, int8_t *c, float *sw,
                           float *mw)
{
    const uint8_t *g = group;
    if (type == ZL_Q4_0) {
        const size_t blk = (size_t)R * sizeof(zl_block_q4_0);
        for (int64_t b = 0; b < ne0 / ZL_QK; b++) {
            const uint8_t *gb = g + (size_t)b * blk;
            uint16_t h;
            memcpy(&h, gb + 2 * r, 2);
            sw[b] = zl_fp16_to_fp32(h);
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 4; k++) {
                    const uint8_t q = gb[2 * R + (size_t)(j * R + r) * 4 + k];
                    c[b * ZL_QK + 4 * j + k] = (int8_t)((q & 0x0f) - 8);
                    c[b * ZL_QK + 16 + 4 * j + k] = (int8_t)((q >> 4) - 8);
                }
        }
        return;
    }
    /* Q4_K: rebuild the row's block and decode it */
    const size_t blk = (size_t)R * sizeof(zl_block_q4_K);
    for (int64_t b = 0; b < ne0 / ZL_QK_K; b++) {
        const uint8_t *gb = g + (size_t)b * blk;
        zl_block_q4_K x;
        memcpy(&x.d, gb + 2 * r, 2);
        memcpy(&x.dmin, gb + 2 * R + 2 * r, 2);
        for (int u = 0; u < 3; u++) memcpy(x.scales + 4 * u, gb + 4 * R + (size_t)(u * R + r) * 4, 4);
        for (int cc = 0; cc < 4; cc++)
            for (int j = 0; j < 8; j++)
                memcpy(x.qs + 32 * cc + 4 * j, gb + 16 * R + (size_t)((cc * 8 + j) * R + r) * 4, 4);
        decode_row(ZL_Q4_K, &x, ZL_QK_K, c + b * ZL_QK_K, sw + b * 8, mw + b * 8);
    }
}

void zl_amx_int8_panel_ref(uint32_t type, bool x16, const void *w, size_t nb1, int nrows, int64_t ne0, int8_t *codes,
                           float *sw, float *mw)
{
    const int S = zl_amx_sub(type);
    const int64_t nsub = ne0 / S;
    int8_t *c = malloc((size_t)ne0);
    float *rs = malloc((size_t)nsub * sizeof(float)), *rm = malloc((size_t)nsub * sizeof(float));
    if (!c || !rs || !rm) { /* only the tests call this with large rows; the driver uses the kernel set's */
        free(c), free(rs), free(rm);
        memset(codes, 0, (size_t)ne0 * 16);
        return;
    }
    for (int r = 0; r < ZL_AMX_ROWS; r++) {
        if (r < nrows) {
            if (x16)
                decode_x16_row(type, w, nrows, r, ne0, c, rs, rm);
            else
                decode_row(type, (const char *)w + (size_t)r * nb1, ne0, c, rs, rm);
        } else {
            memset(c, 0, (size_t)ne0);
            for (int64_t j = 0; j < nsub; j++) rs[j] = rm[j] = 0.0f;
        }
        for (int64_t j = 0; j < nsub; j++) {
            sw[j * 16 + r] = rs[j];
            if (mw) mw[j * 16 + r] = has_min(type) ? rm[j] : 0.0f;
            for (int k = 0; k < S; k++) codes[j * S * 16 + (k / 4) * 64 + r * 4 + k % 4] = c[j * S + k];
        }
    }
    free(c), free(rs), free(rm);
}

void zl_amx_int8_ref(int S, int64_t nsub, const uint32_t *off, const void *xq, size_t xq_stride, const float *da,
                     const float *sa, int nt, const int8_t *codes, const float *sw, const float *mw, int nrows,
                     float *y, size_t ldy)
{
    for (int t = 0; t < nt; t++) {
        const int8_t *xt = (const int8_t *)xq + (size_t)t * xq_stride;
        for (int r = 0; r < nrows; r++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < nsub; j++) {
                int32_t isum = 0;
                for (int k = 0; k < S; k++) isum += xt[off[j] + k] * codes[j * S * 16 + (k / 4) * 64 + r * 4 + k % 4];
                acc = fmaf((float)isum, sw[j * 16 + r] * da[t * nsub + j], acc);
                if (mw) acc = fmaf(mw[j * 16 + r], sa[t * nsub + j], acc);
            }
            y[(size_t)t * ldy + r] = acc;
        }
    }
}

/* ---- driver ---- */

struct zl_amx_ws {
    void *xq;        /* converted activations: n_pad rows (int8: vec_dot_type rows; bf16: ne0 bf16 each) */
    size_t xq_cap;
    float *aux;      /* int8: da [n_pad][nsub], then sa */
    size_t aux_cap;
    uint32_t *off;   /* int8: sub-block code offsets */
    size_t off_cap;
    void **panel;    /* per thread */
    size_t panel_cap;
    int n_panel;
    float *ybuf;     /* compact results when the tokens are a subset */
    size_t ybuf_cap;
};

void zl_amx_ws_free(zl_amx_ws *ws)
{
    if (!ws) return;
    free(ws->xq);
    free(ws->aux);
    free(ws->off);
    for (int i = 0; i < ws->n_panel; i++) free(ws->panel[i]);
    free(ws->panel);
    free(ws->ybuf);
    free(ws);
}

static bool grow(void **p, size_t *cap, size_t bytes)
{
    if (bytes <= *cap) return true;
    size_t c = (bytes + 63) & ~(size_t)63;
    void *q = aligned_alloc(64, c);
    if (!q) return false;
    free(*p);
    *p = q;
    *cap = c;
    return true;
}

typedef struct amx_task {
    const zl_tensor *w;
    uint32_t vtype;       /* int8: the activation type */
    int S;                /* quantized weights: their sub-block (the int8 panel's); 0: F16 / BF16 */
    bool bf16;            /* the bf16 tiles (activations in bf16; quantized weights dequantized into bf16 panels) */
    int64_t ne0, ne1, nsub, n, n_pad;
    int64_t len;          /* bf16: the tile row length (zl_amx_bf16_len) */
    const float *x;
    const int64_t *idx;   /* token i's row in x (NULL: i) */
    size_t xrow;          /* bytes per converted activation row */
    zl_amx_ws *ws;
    float *y;             /* results: y + i * ldy */
    size_t ldy;
    int64_t panel_rows;   /* 16 (int8) or 32 (bf16) */
    atomic_llong next;
} amx_task;

static void amx_convert(void *arg, int ith, int nth)
{
    amx_task *t = arg;
    for (int64_t i = ith; i < t->n_pad; i += nth) {
        char *xq = (char *)t->ws->xq + (size_t)i * t->xrow;
        if (i >= t->n) {
            memset(xq, 0, t->xrow);
            if (!t->bf16) {
                float *da = t->ws->aux + i * t->nsub, *sa = da + t->n_pad * t->nsub;
                memset(da, 0, (size_t)t->nsub * sizeof(float));
                memset(sa, 0, (size_t)t->nsub * sizeof(float));
            }
            continue;
        }
        const float *xr = t->x + (t->idx ? t->idx[i] : i) * t->ne0;
#ifdef ZL_HAVE_AMX_KERNELS
        if (t->bf16) {
            if (t->len > t->ne0)
                zl_amx_bf16_act3(xr, t->ne0, (uint16_t *)(void *)xq);
            else
                zl_amx_bf16_act(xr, t->ne0, (uint16_t *)(void *)xq);
            continue;
        }
#endif
        zl_type_traits_get(t->vtype)->from_float_act(xr, xq, t->ne0);
        float *da = t->ws->aux + i * t->nsub, *sa = da + t->n_pad * t->nsub;
        zl_amx_int8_act(t->w->type, xq, t->ne0, da, sa);
    }
}

static void amx_panels(void *arg, int ith, int nth)
{
    (void)nth;
    amx_task *t = arg;
    const int64_t n_panels = (t->ne1 + t->panel_rows - 1) / t->panel_rows;
    void *buf = t->ws->panel[ith];
    for (;;) {
        const int64_t p = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (p >= n_panels) break;
        const int64_t r0 = p * t->panel_rows;
        const int nrows = (int)(t->ne1 - r0 < t->panel_rows ? t->ne1 - r0 : t->panel_rows);
        const char *wr = (const char *)t->w->data + (size_t)r0 * t->w->nb1;
#ifdef ZL_HAVE_AMX_KERNELS
        if (!t->S) {
            uint16_t *pb = buf;
            zl_amx_bf16_panel(t->w->type, wr, t->w->nb1, nrows < 16 ? nrows : 16, t->ne0, pb);
            if (nrows > 16)
                zl_amx_bf16_panel(t->w->type, wr + 16 * t->w->nb1, t->w->nb1, nrows - 16, t->ne0,
                                  pb + t->len * 16);
            zl_amx_bf16_tiles(t->len, t->ws->xq, (int)t->n, pb, nrows, t->y + r0, t->ldy);
            continue;
        }
        int8_t *codes = buf;
        float *sw = (float *)(void *)(codes + t->ne0 * 16), *mw = sw + t->nsub * 16;
        const bool mins = has_min(t->w->type), x16 = t->w->layout == ZL_LAYOUT_X16;
        if (t->bf16) { /* each 16 rows' int8 panel dequantized into a bf16 one */
            uint16_t *pb = (uint16_t *)(void *)(mw + t->nsub * 16);
            for (int h = 0; h * 16 < nrows; h++) {
                const int nr = nrows - 16 * h < 16 ? nrows - 16 * h : 16;
                zl_amx_int8_panel(t->w->type, x16, wr + (size_t)(16 * h) * t->w->nb1, t->w->nb1, nr, t->ne0, codes,
                                  sw, mins ? mw : NULL);
                zl_amx_int8_to_bf16(t->S, t->ne0, codes, sw, mins ? mw : NULL, pb + h * t->ne0 * 16);
            }
            zl_amx_bf16_tiles(t->ne0, t->ws->xq, (int)t->n, pb, nrows, t->y + r0, t->ldy);
            continue;
        }
        zl_amx_int8_panel(t->w->type, x16, wr, t->w->nb1, nrows, t->ne0, codes, sw, mins ? mw : NULL);
        const float *da = t->ws->aux, *sa = mins ? da + t->n_pad * t->nsub : NULL;
        zl_amx_int8_tiles(t->S, t->nsub, t->ws->off, t->ws->xq, t->xrow, da, sa, (int)t->n, codes, sw,
                          mins ? mw : NULL, nrows, t->y + r0, t->ldy);
#else
        (void)wr;
        (void)buf;
        (void)nrows;
#endif
    }
}

int zl_amx_matmul(zl_pool *pool, zl_amx_ws **wsp, const zl_tensor *w, const float *x, const int64_t *idx, int64_t n,
                  float *y)
{
    if (!zl_amx_available() || !zl_amx_supports(w->type)) return ZL_EUNSUPPORTED;
    if (n <= 0 || w->ne[1] <= 0) return ZL_OK;
    if (!*wsp && !(*wsp = calloc(1, sizeof **wsp))) return ZL_ENOMEM;
    zl_amx_ws *ws = *wsp;
    amx_task t;
    memset(&t, 0, sizeof t);
    t.w = w;
    t.ne0 = w->ne[0];
    t.ne1 = w->ne[1];
    t.S = zl_amx_sub(w->type);
    t.n = n;
    t.n_pad = (n + ZL_AMX_TOKS - 1) / ZL_AMX_TOKS * ZL_AMX_TOKS;
    t.x = x;
    t.idx = idx;
    t.ws = ws;
    t.bf16 = !t.S || zl_amx_quant_bf16();
    t.len = t.ne0;
    t.panel_rows = t.bf16 ? 32 : 16;
    if (t.ne0 <= 0 || t.ne0 % (t.S ? zl_type_traits_ref(w->type)->block_size : 32) != 0) return ZL_EINVAL;
    size_t panel_bytes = 0;
    if (t.S) {
        t.vtype = zl_type_traits_ref(w->type)->vec_dot_type;
        t.nsub = t.ne0 / t.S;
        if (!zl_row_size(t.vtype, t.ne0, &t.xrow)) return ZL_EINVAL;
        panel_bytes = (size_t)t.ne0 * 16 + 2 * (size_t)t.nsub * 16 * sizeof(float);
        if (t.bf16) {
            panel_bytes += (size_t)t.ne0 * 32 * 2;
            t.xrow = (size_t)t.ne0 * 2;
        }
        if (!grow((void **)&ws->aux, &ws->aux_cap, 2 * (size_t)t.n_pad * (size_t)t.nsub * sizeof(float)) ||
            !grow((void **)&ws->off, &ws->off_cap, (size_t)t.nsub * sizeof(uint32_t)))
            return ZL_ENOMEM;
        zl_amx_int8_offsets(w->type, t.ne0, ws->off);
    } else {
        t.len = zl_amx_bf16_len(w->type, t.ne0);
        t.xrow = (size_t)t.len * 2;
        panel_bytes = (size_t)t.len * 32 * 2;
    }
    if (!grow(&ws->xq, &ws->xq_cap, (size_t)t.n_pad * t.xrow)) return ZL_ENOMEM;
    const int nth = pool ? zl_pool_size(pool) : 1;
    if (ws->n_panel < nth || ws->panel_cap < panel_bytes) {
        for (int i = 0; i < ws->n_panel; i++) free(ws->panel[i]);
        free(ws->panel);
        ws->n_panel = 0;
        ws->panel_cap = 0;
        if (!(ws->panel = calloc((size_t)nth, sizeof *ws->panel))) return ZL_ENOMEM;
        const size_t cap = (panel_bytes + 63) & ~(size_t)63;
        for (int i = 0; i < nth; i++) {
            if (!(ws->panel[i] = aligned_alloc(64, cap))) {
                zl_amx_ws_free(ws);
                *wsp = NULL;
                return ZL_ENOMEM;
            }
            ws->n_panel = i + 1;
        }
        ws->panel_cap = cap;
    }
    if (idx) { /* results into a compact buffer, then to the tokens' rows */
        if (!grow((void **)&ws->ybuf, &ws->ybuf_cap, (size_t)n * (size_t)t.ne1 * sizeof(float))) return ZL_ENOMEM;
        t.y = ws->ybuf;
    } else {
        t.y = y;
    }
    t.ldy = (size_t)t.ne1;
    zl_pool_run(t.n_pad * t.ne0 >= 8192 ? pool : NULL, amx_convert, &t);
    atomic_init(&t.next, 0);
    zl_pool_run((t.ne1 + t.panel_rows - 1) / t.panel_rows > 1 ? pool : NULL, amx_panels, &t);
    if (idx)
        for (int64_t i = 0; i < n; i++)
            memcpy(y + idx[i] * t.ne1, ws->ybuf + i * t.ne1, (size_t)t.ne1 * sizeof(float));
    return ZL_OK;
}
