/*
 * test_amx.c - the AMX int8 path (backend/cpu/amx.h) on every weight type it takes: Q4_0, Q4_1, Q5_0, Q8_0, Q4_K,
 * Q5_K, Q6_K, in the file's row layout and (Q4_0, Q4_K) the X16 layout.
 *
 *  - panels: the plain-C panel decodes to the weights' own dequantized values (sw * c + mw against the type's
 *    to_float, within 1e-6 relative), and the AVX-512 panel equals it byte for byte / bit for bit;
 *  - the tile kernel equals zl_amx_int8_ref bit for bit, on 1 .. 40 tokens and 1 .. 16 rows, and writes nothing
 *    outside its rows and tokens;
 *  - zl_matmul on a weight marked for the tiles (zl_tensor.tiles), int8 tiles (ZILI_AMX=int8): against the exact
 *    path's vec_dot of the same converted activations, per (row, token), within 2e-6 of the sum of |products| (the
 *    two add the same products in other orders); bf16 tiles (the default, and F16 / BF16 weights): against the sum
 *    in double of the bf16-rounded weights and activations, within 1e-4 of the sum of |products| (the tiles add in
 *    fp32; a weight whose float dequantization rounds to the other bf16 neighbour moves a sum by 2^-8 of one
 *    product); F16 weights (split into two bf16 on both sides) against the exact double product within 2e-5. With 1 and 2 threads, all tokens in prompt mode and a mix of prompt and one-token (decode) modes
 *    (one-token tokens must equal the exact kernels bit for bit), and the tokens of a batch must equal the same
 *    tokens multiplied alone, bit for bit.
 *
 * Where the CPU or kernel gives no AMX every test is skipped, saying so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/amx.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"
#include "core/dtype.h"
#include "core/err.h"
#include "core/fp16.h"

static const uint32_t k_types[] = { ZL_Q4_0, ZL_Q4_1, ZL_Q5_0, ZL_Q8_0, ZL_Q4_K, ZL_Q5_K, ZL_Q6_K };

static void need_amx(void)
{
    if (!zl_amx_available())
        skip(); /* cmocka prints the test as skipped; run_unit.sh counts it so */
}

static void fill_random(float *x, int64_t n, unsigned seed, float scale)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 12345;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 2.0f * scale;
    }
}

/* A quantized matrix of ne1 rows, its dequantized values and (X16 types) a repacked copy. */
typedef struct mat {
    uint32_t type;
    int64_t ne0, ne1;
    size_t row;
    uint8_t *q, *x16;
    float *deq;
} mat;

static mat make_mat(uint32_t type, int64_t ne0, int64_t ne1, unsigned seed)
{
    mat m = { .type = type, .ne0 = ne0, .ne1 = ne1 };
    const zl_type_traits *tr = zl_type_traits_get(type);
    assert_true(zl_row_size(type, ne0, &m.row));
    float *wf = malloc((size_t)(ne0 * ne1) * sizeof(float));
    m.q = malloc(m.row * (size_t)ne1);
    m.deq = malloc((size_t)(ne0 * ne1) * sizeof(float));
    fill_random(wf, ne0 * ne1, seed, 0.5f);
    for (int64_t r = 0; r < ne1; r++) {
        tr->from_float(wf + r * ne0, m.q + (size_t)r * m.row, ne0);
        tr->to_float(m.q + (size_t)r * m.row, m.deq + r * ne0, ne0);
    }
    if ((type == ZL_Q4_0 || type == ZL_Q4_K) && zl_repack_fits(ne1)) {
        m.x16 = malloc(m.row * (size_t)ne1);
        memcpy(m.x16, m.q, m.row * (size_t)ne1);
        void *tmp = malloc(16 * m.row);
        zl_repack_x16(type, m.x16, ne0, ne1, m.row, tmp);
        free(tmp);
    }
    free(wf);
    return m;
}

static void free_mat(mat *m)
{
    free(m->q);
    free(m->x16);
    free(m->deq);
}

typedef struct panel {
    int8_t *codes;
    float *sw, *mw;
} panel;

static panel alloc_panel(int64_t ne0, int S)
{
    panel p;
    const size_t nsub = (size_t)(ne0 / S);
    p.codes = aligned_alloc(64, (size_t)ne0 * 16);
    p.sw = aligned_alloc(64, nsub * 16 * sizeof(float));
    p.mw = aligned_alloc(64, nsub * 16 * sizeof(float));
    memset(p.codes, 0x5a, (size_t)ne0 * 16);
    return p;
}

static void free_panel(panel *p)
{
    free(p->codes);
    free(p->sw);
    free(p->mw);
}

static bool mins(uint32_t type)
{
    return type == ZL_Q4_1 || type == ZL_Q4_K || type == ZL_Q5_K;
}

/* Panels of rows r0 .. r0 + 15 of m (file layout and X16): the plain-C one decodes to m's dequantized values; the
 * kernel set's one is the same bytes and bits. */
static void check_panels(const mat *m, int64_t r0)
{
    const int S = zl_amx_sub(m->type);
    const int64_t nsub = m->ne0 / S;
    const int nrows = (int)(m->ne1 - r0 < 16 ? m->ne1 - r0 : 16);
    for (int layout = 0; layout < 2; layout++) {
        if (layout == 1 && !m->x16) continue;
        const uint8_t *base = (layout ? m->x16 : m->q) + (size_t)r0 * m->row;
        panel a = alloc_panel(m->ne0, S), b = alloc_panel(m->ne0, S);
        zl_amx_int8_panel_ref(m->type, layout == 1, base, m->row, nrows, m->ne0, a.codes, a.sw,
                              mins(m->type) ? a.mw : NULL);
        zl_amx_int8_panel(m->type, layout == 1, base, m->row, nrows, m->ne0, b.codes, b.sw,
                          mins(m->type) ? b.mw : NULL);
        for (int r = 0; r < 16; r++)
            for (int64_t k = 0; k < m->ne0; k++) {
                const int64_t j = k / S, kk = k % S;
                const int8_t c = a.codes[j * S * 16 + (kk / 4) * 64 + r * 4 + kk % 4];
                const float v = a.sw[j * 16 + r] * (float)c + (mins(m->type) ? a.mw[j * 16 + r] : 0.0f);
                const float want = r < nrows ? m->deq[(r0 + r) * m->ne0 + k] : 0.0f;
                if (!(fabsf(v - want) <= 1e-6f * fabsf(want) + 1e-12f))
                    fail_msg("%s layout %d row %lld value %lld: panel gives %.9g, to_float %.9g",
                             zl_type_name(m->type), layout, (long long)(r0 + r), (long long)k, v, want);
            }
        if (memcmp(a.codes, b.codes, (size_t)m->ne0 * 16) != 0)
            fail_msg("%s layout %d rows %lld+%d: AVX-512 panel codes differ", zl_type_name(m->type), layout,
                     (long long)r0, nrows);
        if (memcmp(a.sw, b.sw, (size_t)nsub * 16 * sizeof(float)) != 0 ||
            (mins(m->type) && memcmp(a.mw, b.mw, (size_t)nsub * 16 * sizeof(float)) != 0))
            fail_msg("%s layout %d: AVX-512 panel scales differ", zl_type_name(m->type), layout);
        free_panel(&a);
        free_panel(&b);
    }
}

static void test_panels(void **state)
{
    (void)state;
    need_amx();
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        const uint32_t type = k_types[i];
        const int64_t ne0 = zl_type_traits_get(type)->block_size == ZL_QK_K ? 512 : 96;
        mat m = make_mat(type, ne0, 40, (unsigned)type);
        check_panels(&m, 0);
        check_panels(&m, 16);
        check_panels(&m, 32); /* 8 rows: the X16 layout's last group of 8 */
        free_mat(&m);
    }
}

/* Converted activations of n tokens (padded to 16 with zero rows) and their per-token floats. */
typedef struct acts {
    uint8_t *xq;
    size_t xrow;
    float *da, *sa;
    uint32_t *off;
    float *x;
} acts;

static acts make_acts(uint32_t type, int64_t ne0, int n, unsigned seed)
{
    acts a;
    const int S = zl_amx_sub(type);
    const int64_t nsub = S ? ne0 / S : 1; /* F16 / BF16 (S = 0): no per-token floats */
    const int n_pad = (n + 15) / 16 * 16;
    const zl_type_traits *vt = zl_type_traits_get(zl_type_traits_get(type)->vec_dot_type);
    assert_true(zl_row_size(zl_type_traits_get(type)->vec_dot_type, ne0, &a.xrow));
    a.x = malloc((size_t)(ne0 * n) * sizeof(float));
    fill_random(a.x, ne0 * n, seed, 2.0f);
    a.xq = calloc((size_t)n_pad, a.xrow);
    a.da = calloc((size_t)(n_pad * nsub), sizeof(float));
    a.sa = calloc((size_t)(n_pad * nsub), sizeof(float));
    a.off = malloc((size_t)nsub * sizeof(uint32_t));
    if (S) zl_amx_int8_offsets(type, ne0, a.off);
    for (int t = 0; t < n; t++) {
        vt->from_float_act(a.x + t * ne0, a.xq + (size_t)t * a.xrow, ne0);
        if (S) zl_amx_int8_act(type, a.xq + (size_t)t * a.xrow, ne0, a.da + t * nsub, a.sa + t * nsub);
    }
    return a;
}

static void free_acts(acts *a)
{
    free(a->xq);
    free(a->da);
    free(a->sa);
    free(a->off);
    free(a->x);
}

/* The tile kernel against zl_amx_int8_ref, bit for bit, on rows r0 .. of m and n tokens; y's other cells untouched. */
static void check_kernel(const mat *m, int64_t r0, int n)
{
    const int S = zl_amx_sub(m->type);
    const int64_t nsub = m->ne0 / S;
    const int nrows = (int)(m->ne1 - r0 < 16 ? m->ne1 - r0 : 16);
    panel p = alloc_panel(m->ne0, S);
    zl_amx_int8_panel_ref(m->type, false, m->q + (size_t)r0 * m->row, m->row, nrows, m->ne0, p.codes, p.sw,
                          mins(m->type) ? p.mw : NULL);
    acts a = make_acts(m->type, m->ne0, n, (unsigned)(n * 7 + m->type));
    const size_t ldy = 21, cells = (size_t)(n + 1) * ldy;
    float *got = malloc(cells * sizeof(float)), *want = malloc(cells * sizeof(float));
    for (size_t i = 0; i < cells; i++) got[i] = want[i] = -12345.0f;
    const float *mw = mins(m->type) ? p.mw : NULL, *sa = mw ? a.sa : NULL;
    zl_amx_int8_tiles(S, nsub, a.off, a.xq, a.xrow, a.da, sa, n, p.codes, p.sw, mw, nrows, got, ldy);
    zl_amx_int8_ref(S, nsub, a.off, a.xq, a.xrow, a.da, sa, n, p.codes, p.sw, mw, nrows, want, ldy);
    for (size_t i = 0; i < cells; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s ne0=%lld rows=%d tokens=%d: y[%zu] = %.9g, reference %.9g", zl_type_name(m->type),
                     (long long)m->ne0, nrows, n, i, got[i], want[i]);
    free(got);
    free(want);
    free_acts(&a);
    free_panel(&p);
}

static void test_kernel_equals_ref(void **state)
{
    (void)state;
    need_amx();
    static const int toks[] = { 1, 5, 16, 17, 40 };
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        const uint32_t type = k_types[i];
        const int64_t ne0 = zl_type_traits_get(type)->block_size == ZL_QK_K ? 768 : 160; /* odd sub-block counts */
        mat m = make_mat(type, ne0, 19, (unsigned)type + 100);
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
            check_kernel(&m, 0, toks[k]);
            check_kernel(&m, 16, toks[k]); /* 3 rows */
        }
        free_mat(&m);
    }
}

/* zl_matmul on a tile-marked weight against the exact kernels on the same converted activations. modes: NULL (all
 * tokens in prompt mode) or a pattern with one-token tokens among them. */
static double bf16_round(float v)
{
    return (double)zl_bf16_to_fp32(zl_fp32_to_bf16(v));
}

static void check_matmul_tiles(uint32_t type, bool x16, int64_t ne0, int64_t ne1, int64_t n, int nth, bool mixed)
{
    const bool bf = zl_amx_quant_bf16() || type == ZL_F16 || type == ZL_BF16;
    mat m = make_mat(type, ne0, ne1, (unsigned)(ne0 + ne1 + n));
    if (x16 && !m.x16) {
        free_mat(&m);
        return;
    }
    const zl_type_traits *tr = zl_type_traits_get(type);
    acts a = make_acts(type, ne0, (int)n, (unsigned)(n + 3));
    float *y = malloc((size_t)(n * ne1) * sizeof(float)), *ye = malloc((size_t)(n * ne1) * sizeof(float));
    int8_t *modes = malloc((size_t)n);
    for (int64_t k = 0; k < n; k++) modes[k] = mixed && k % 3 == 1 ? ZL_MODE_ONE : ZL_MODE_MULTI8;
    zl_tensor w = { .name = "w", .type = type, .ne = { ne0, ne1, 1, 1 }, .nb1 = m.row, .data = x16 ? m.x16 : m.q,
                    .layout = x16 ? ZL_LAYOUT_X16 : ZL_LAYOUT_ROWS, .tiles = 1 };
    zl_tensor we = w;
    we.tiles = 0;
    zl_cpu *cpu = zl_cpu_create(nth);
    assert_non_null(cpu);
    for (int64_t i = 0; i < n * ne1; i++) y[i] = ye[i] = NAN;
    assert_int_equal(zl_matmul_modes(cpu, &w, a.x, n, y, mixed ? modes : NULL), ZL_OK);
    assert_int_equal(zl_matmul_modes(cpu, &we, a.x, n, ye, mixed ? modes : NULL), ZL_OK);
    float *y1 = malloc((size_t)ne1 * sizeof(float)); /* each token alone */
    for (int64_t t = 0; t < n; t++) {
        const int8_t prompt = ZL_MODE_MULTI8; /* alone, still a prompt token */
        assert_int_equal(zl_matmul_modes(cpu, &w, a.x + t * ne0, 1, y1, mixed ? modes + t : &prompt), ZL_OK);
        if (!mixed && n > 1 && memcmp(y1, y + t * ne1, (size_t)ne1 * sizeof(float)) != 0) /* n = 1: one-token mode */
            fail_msg("%s: token %lld alone differs from the same token in a batch of %lld", tr->name, (long long)t,
                     (long long)n);
    }
    free(y1);
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < ne1; r++) {
            const float got = y[t * ne1 + r];
            if (mixed ? modes[t] == ZL_MODE_ONE : n == 1) { /* one-token mode: the exact kernels */
                if (memcmp(&got, &ye[t * ne1 + r], sizeof got) != 0)
                    fail_msg("%s: one-token-mode token %lld row %lld = %.9g, exact kernels %.9g", tr->name,
                             (long long)t, (long long)r, got, ye[t * ne1 + r]);
                continue;
            }
            double dot = 0.0, mag = 0.0;
            if (type == ZL_F16) { /* split into hi + lo on both sides: near the exact product */
                for (int64_t c = 0; c < ne0; c++) {
                    const double p = (double)m.deq[r * ne0 + c] * a.x[t * ne0 + c];
                    dot += p;
                    mag += fabs(p);
                }
            } else if (bf) {
                for (int64_t c = 0; c < ne0; c++) {
                    const double p = bf16_round(m.deq[r * ne0 + c]) * bf16_round(a.x[t * ne0 + c]);
                    dot += p;
                    mag += fabs(p);
                }
            } else {
                float d;
                tr->vec_dot(ne0, &d, m.q + (size_t)r * m.row, a.xq + (size_t)t * a.xrow);
                dot = d;
                float *xd = malloc((size_t)ne0 * sizeof(float));
                zl_type_traits_get(tr->vec_dot_type)->to_float(a.xq + (size_t)t * a.xrow, xd, ne0);
                for (int64_t c = 0; c < ne0; c++) mag += fabs((double)m.deq[r * ne0 + c] * xd[c]);
                free(xd);
            }
            const double tol = type == ZL_F16 ? 2e-5 : bf ? 1e-4 : 2e-6;
            if (!(fabs((double)got - dot) <= tol * mag + 1e-12))
                fail_msg("%s%s%s %lldx%lld n=%lld nth=%d: y[%lld,%lld] = %.9g, reference %.9g (sum |products| %.3g)",
                         tr->name, x16 ? " x16" : "", bf ? " bf16 tiles" : " int8 tiles", (long long)ne0, (long long)ne1, (long long)n, nth,
                         (long long)t, (long long)r, got, dot, mag);
        }
    zl_cpu_destroy(cpu);
    free(y);
    free(ye);
    free(modes);
    free_acts(&a);
    free_mat(&m);
}

static void matmul_tiles_all(void)
{
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        const uint32_t type = k_types[i];
        const int64_t ne0 = zl_type_traits_get(type)->block_size == ZL_QK_K ? 512 : 192;
        for (int nth = 1; nth <= 2; nth++) {
            check_matmul_tiles(type, false, ne0, 56, 37, nth, false);
            check_matmul_tiles(type, false, ne0, 56, 37, nth, true);
            check_matmul_tiles(type, true, ne0, 56, 20, nth, false); /* X16: 3 groups of 16 and one of 8 */
            check_matmul_tiles(type, true, ne0, 56, 20, nth, true);
        }
    }
}

static void test_matmul_int8_tiles(void **state)
{
    (void)state;
    need_amx();
    setenv("ZILI_AMX", "int8", 1);
    matmul_tiles_all();
    unsetenv("ZILI_AMX");
}

static void test_matmul_bf16_tiles(void **state)
{
    (void)state;
    need_amx();
    setenv("ZILI_AMX", "bf16", 1);
    matmul_tiles_all();
    unsetenv("ZILI_AMX");
    /* F16 and BF16 weights: rows of 32 .. 4128 values, 1 .. 33 rows (one and two panels, partial), 1 .. 64 tokens */
    static const int64_t lens[] = { 32, 96, 2048, 4128 };
    static const int64_t rows[] = { 1, 17, 33 };
    static const int64_t toks[] = { 1, 16, 17, 64 };
    for (int f = 0; f < 2; f++)
        for (size_t a = 0; a < 4; a++)
            for (size_t b = 0; b < 3; b++)
                for (size_t c = 0; c < 4; c++)
                    if (lens[a] * rows[b] * toks[c] <= 2048 * 33 * 17)
                        check_matmul_tiles(f ? ZL_BF16 : ZL_F16, false, lens[a], rows[b], toks[c], 1 + (int)(c % 2),
                                           c == 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_panels),
        cmocka_unit_test(test_kernel_equals_ref),
        cmocka_unit_test(test_matmul_int8_tiles),
        cmocka_unit_test(test_matmul_bf16_tiles),
    };
    if (!zl_amx_available())
        print_message("test_amx: no AMX here (CPU without AMX-INT8/BF16, kernel refused the tile permission, or "
                      "ZILI_CPU names another set): every test skipped\n");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
