/*
 * test_amx_bf16.c - the bf16 tile path of backend/cpu/amx.h (matmul_bf16_amx.c) on its own, against plain C:
 *
 *  - zl_amx_bf16_act and zl_amx_bf16_act3 against a scalar round-to-nearest-even written here (ties to even and
 *    odd, values either side of a tie, overflow to inf, zeros, infinities; NaN is not part of the contract), bit
 *    for bit, writing nothing past their row;
 *  - zl_amx_bf16_panel, BF16 and F16 weights (F16: the [wh | wl | wh] rows of amx.h, wh + wl == w exactly), against
 *    a scalar transposition into TDPBF16PS's B layout (pair p: 16 dwords, dword r = row r's values 2p, 2p + 1),
 *    rows >= nrows zero, bit for bit, with a weight row stride larger than the row;
 *  - zl_amx_bf16_tiles on every (ne0, nrows, nt) of ne0 {32, 64, 96, 2048, 4128}, nrows {1, 5, 16, 17, 32}, nt {1,
 *    15, 16, 17, 33, 64}, for BF16 and F16 weights, per (row, token) against the double-precision sum of the same
 *    bf16 operands (see TOL_REL), and nothing written outside t < nt, r < nrows (y prefilled with a sentinel).
 *
 * The tiles test builds its operands (activation rows, panels) with the scalar code here, so a failure there is
 * the kernel's own. The activation and panel tests need AVX-512 (F/DQ/BW/VL) and AVX512-BF16 only, and run on
 * such CPUs without AMX too (AMD Zen 4); the tile tests also need AMX-TILE, AMX-BF16 and the kernel's tile data
 * permission. Each test skips, saying why, where what it needs is missing.
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

#include "backend/cpu/amx.h"
#include "core/dtype.h"
#include "core/fp16.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* Why the tiles (g_no_tiles) or the AVX-512 conversions around them (g_no_bf16: activations, panels) cannot run
 * here (NULL: they can). Decided once, in main, before any test. */
static const char *g_no_tiles = "not probed", *g_no_bf16 = "not probed";

#if defined(__x86_64__)
static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static const char *probe_bf16(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return "no OSXSAVE";
    if ((xcr0() & 0xe6) != 0xe6) return "the OS does not enable the AVX-512 state";
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "no CPUID leaf 7";
    /* AVX-512 F, DQ, BW, VL: the conversions and the transposition around the tiles */
    if ((b & 0xd0030000u) != 0xd0030000u) return "CPU without AVX-512 F/DQ/BW/VL";
    const unsigned max_sub = a;
    if (max_sub < 1 || !__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5)))
        return "CPU without AVX512-BF16";
    return NULL;
#else
    return "not an x86-64 build";
#endif
}

static const char *probe_tiles(void)
{
#if defined(__x86_64__)
    if (g_no_bf16) return g_no_bf16;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return "no CPUID leaf 7";
    if (!(d & (1u << 24))) return "CPU without AMX-TILE";
    if (!(d & (1u << 22))) return "CPU without AMX-BF16";
    /* Linux hands out the 8 KiB tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return "the kernel refused the AMX tile data permission";
    return NULL;
#else
    return "not an x86-64 build";
#endif
}

static void need_tiles(void)
{
    if (g_no_tiles) {
        print_message("test_amx_bf16: skipped: %s\n", g_no_tiles);
        skip();
    }
}

static void need_bf16(void)
{
    if (g_no_bf16) {
        print_message("test_amx_bf16: skipped: %s\n", g_no_bf16);
        skip();
    }
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

static void *xalloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    assert_non_null(p);
    return p;
}

/* ---- the scalar references ---- */

/* float -> bf16, round to nearest even, written out as the rule (not the add-a-bias trick): keep the top 16 bits,
 * round up when the dropped 16 are above half, or exactly half with an odd kept part. A carry out of the
 * significand moves the exponent, so the largest floats round to inf. Not for NaN. */
static uint16_t rne_bf16(float f)
{
    const uint32_t b = zl_fp32_to_bits(f), lo = b & 0xffff;
    uint32_t hi = b >> 16;
    if (lo > 0x8000 || (lo == 0x8000 && (hi & 1))) hi++;
    return (uint16_t)hi;
}

static float bf16_val(uint16_t h)
{
    return zl_fp32_from_bits((uint32_t)h << 16);
}

/* One operand row in the tiles' order, len = zl_amx_bf16_len(type, ne0) bf16 values. Activations: [xh] for BF16
 * weights, [xh | xh | xl] for F16 (xl = bf16(x - xh)); weights: BF16 as stored, F16 [wh | wl | wh] with wh =
 * bf16(w), wl = bf16(w - wh) (exact: w has 11 significant bits). */
static void ref_act_row(uint32_t type, const float *x, int64_t ne0, uint16_t *out)
{
    for (int64_t k = 0; k < ne0; k++) {
        const uint16_t h = rne_bf16(x[k]);
        out[k] = h;
        if (type == ZL_F16) {
            out[ne0 + k] = h;
            out[2 * ne0 + k] = rne_bf16(x[k] - bf16_val(h));
        }
    }
}

static void ref_weight_row(uint32_t type, const uint16_t *w, int64_t ne0, uint16_t *out)
{
    for (int64_t k = 0; k < ne0; k++) {
        if (type == ZL_BF16) {
            out[k] = w[k];
            continue;
        }
        const float f = zl_fp16_to_fp32(w[k]);
        const uint16_t h = rne_bf16(f), l = rne_bf16(f - bf16_val(h));
        out[k] = out[2 * ne0 + k] = h;
        out[ne0 + k] = l;
    }
}

/* 16 operand rows (row r at rows + r * len; those >= nrows zero) into TDPBF16PS's B layout: pair p, 16 dwords,
 * dword r = value 2p of row r | value 2p + 1 << 16. */
static void ref_panel(const uint16_t *rows, int nrows, int64_t len, uint16_t *panel)
{
    for (int64_t p = 0; p < len / 2; p++)
        for (int r = 0; r < 16; r++)
            for (int j = 0; j < 2; j++)
                panel[p * 32 + 2 * r + j] = r < nrows ? rows[r * len + 2 * p + j] : 0;
}

/* n random weight rows of `type` (F16 or BF16), row r at bytes r * nb1 (the rest of each row's stride filled with
 * a pattern that must not be read as values). */
static uint8_t *make_weights(uint32_t type, int64_t ne0, int n, size_t nb1, unsigned seed)
{
    uint8_t *w = xalloc((size_t)n * nb1);
    memset(w, 0x5a, (size_t)n * nb1);
    float *f = malloc((size_t)ne0 * sizeof(float));
    assert_non_null(f);
    for (int r = 0; r < n; r++) {
        fill_random(f, ne0, seed + 7u * (unsigned)r, 0.25f + 0.125f * (float)(r % 5)); /* rows of varied size */
        uint16_t *row = (uint16_t *)(void *)(w + (size_t)r * nb1);
        for (int64_t k = 0; k < ne0; k++) row[k] = type == ZL_F16 ? zl_fp32_to_fp16(f[k]) : rne_bf16(f[k]);
    }
    free(f);
    return w;
}

/* ---- activations ---- */

/* Floats whose bf16 rounding is on an edge: ties (low half 0x8000) with even and odd kept parts, one ulp either
 * side of a tie, a carry through the significand, the largest floats (rounding to inf), zeros, infinities. */
static void edge_values(float *x, int64_t n, unsigned seed)
{
    static const uint32_t fixed[] = {
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x3f818001u, 0x3f817fffu, 0xbf808000u, 0xbf818000u,
        0x3fff8000u, 0x3f7fffffu, 0x7f7f8000u, 0x7f7fffffu, 0x7f7e8000u, 0xff7f8000u, 0x00000000u, 0x80000000u,
        0x7f800000u, 0xff800000u, 0x00800000u, 0x00808000u, 0x00818000u, 0x80818000u, 0x3effffffu, 0x38018000u,
    };
    const int64_t nf = (int64_t)(sizeof fixed / sizeof fixed[0]);
    fill_random(x, n, seed, 3.0f);
    for (int64_t i = 0; i < n; i++) {
        uint32_t b = zl_fp32_to_bits(x[i]);
        if (i < nf) b = fixed[i];
        else if (i % 3 == 0) b = (b & 0xffff0000u) | 0x8000u; /* random ties */
        else if (i % 3 == 1) b = (b & 0xffff0000u) | (i % 2 ? 0x7fffu : 0x8001u);
        x[i] = zl_fp32_from_bits(b);
    }
}

static void check_act(int64_t ne0, int three)
{
    const int64_t len = three ? 3 * ne0 : ne0, guard = 64;
    float *x = malloc((size_t)ne0 * sizeof(float));
    uint16_t *got = malloc((size_t)(len + guard) * sizeof(uint16_t)), *want = malloc((size_t)len * sizeof(uint16_t));
    assert_true(x && got && want);
    edge_values(x, ne0, (unsigned)ne0);
    if (three) /* the split row: no infinities (x - inf is NaN), keep the ties */
        for (int64_t k = 0; k < ne0; k++)
            if (!isfinite(x[k]) || fabsf(x[k]) > 1e30f) x[k] = 1.0f + 0x1p-8f;
    for (int64_t i = 0; i < len + guard; i++) got[i] = 0xdead;
    if (three) zl_amx_bf16_act3(x, ne0, got);
    else zl_amx_bf16_act(x, ne0, got);
    ref_act_row(three ? ZL_F16 : ZL_BF16, x, ne0, want);
    for (int64_t i = 0; i < len; i++)
        if (got[i] != want[i])
            fail_msg("zl_amx_bf16_act%s ne0=%lld: value %lld (x = %a, bits 0x%08x) -> 0x%04x, want 0x%04x",
                     three ? "3" : "", (long long)ne0, (long long)i, (double)x[i % ne0],
                     (unsigned)zl_fp32_to_bits(x[i % ne0]), got[i], want[i]);
    for (int64_t i = len; i < len + guard; i++)
        if (got[i] != 0xdead) fail_msg("zl_amx_bf16_act%s ne0=%lld wrote past its row", three ? "3" : "", (long long)ne0);
    free(x);
    free(got);
    free(want);
}

static void test_act(void **state)
{
    (void)state;
    need_bf16();
    static const int64_t lens[] = { 32, 64, 96, 2048, 4128 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        check_act(lens[i], 0);
        check_act(lens[i], 1);
    }
}

/* ---- panels ---- */

static void check_panel(uint32_t type, int64_t ne0, int nrows)
{
    const int64_t len = zl_amx_bf16_len(type, ne0), guard = 64;
    assert_int_equal(len, type == ZL_F16 ? 3 * ne0 : ne0);
    const size_t nb1 = (size_t)ne0 * 2 + 64; /* a stride past the row: only the row is values */
    uint8_t *w = make_weights(type, ne0, 16, nb1, (unsigned)(ne0 + nrows));
    uint16_t *rows = calloc((size_t)(16 * len), sizeof(uint16_t)), *want = malloc((size_t)(16 * len) * 2);
    uint16_t *got = xalloc((size_t)(16 * len + guard) * 2);
    assert_true(rows && want);
    for (int r = 0; r < nrows; r++) {
        ref_weight_row(type, (const uint16_t *)(const void *)(w + (size_t)r * nb1), ne0, rows + r * len);
        if (type == ZL_F16) /* the split is exact: wh + wl == w */
            for (int64_t k = 0; k < ne0; k++) {
                const float f = zl_fp16_to_fp32(((const uint16_t *)(const void *)(w + (size_t)r * nb1))[k]);
                assert_true(bf16_val(rows[r * len + k]) + bf16_val(rows[r * len + ne0 + k]) == f);
            }
    }
    ref_panel(rows, nrows, len, want);
    for (int64_t i = 0; i < 16 * len + guard; i++) got[i] = 0xdead;
    zl_amx_bf16_panel(type, w, nb1, nrows, ne0, got);
    for (int64_t i = 0; i < 16 * len; i++)
        if (got[i] != want[i]) {
            const int64_t p = i / 32, r = i % 32 / 2;
            fail_msg("zl_amx_bf16_panel %s ne0=%lld nrows=%d: pair %lld (values %lld, %lld) row %lld half %lld = "
                     "0x%04x, want 0x%04x",
                     type == ZL_F16 ? "F16" : "BF16", (long long)ne0, nrows, (long long)p, (long long)(2 * p),
                     (long long)(2 * p + 1), (long long)r, (long long)(i % 2), got[i], want[i]);
        }
    for (int64_t i = 16 * len; i < 16 * len + guard; i++)
        if (got[i] != 0xdead) fail_msg("zl_amx_bf16_panel wrote past its %lld values", (long long)(16 * len));
    free(w);
    free(rows);
    free(want);
    free(got);
}

static void test_panel(void **state)
{
    (void)state;
    need_bf16();
    static const int64_t lens[] = { 32, 64, 96, 2048, 4128 };
    static const int nrows[] = { 1, 5, 15, 16 };
    for (int f = 0; f < 2; f++)
        for (size_t a = 0; a < sizeof lens / sizeof lens[0]; a++)
            for (size_t b = 0; b < sizeof nrows / sizeof nrows[0]; b++)
                check_panel(f ? ZL_BF16 : ZL_F16, lens[a], nrows[b]);
}

/* ---- the tile kernel ---- */

/* Tolerance per (row r, token t): |y - ref| <= TOL_REL * sum_k |a_k b_k| + TOL_ABS, ref the sum in double of the
 * products of the bf16 operands. Each product of two bf16 is exact in fp32 (8 + 8 significant bits), so the only
 * error is the tiles' fp32 additions: at most about 2^-24 of the running sum per addition, whose random-sign sum
 * stays within a few 2^-24 of sum |products| here (seen: below 1e-7 of it); 1e-5 leaves two orders of margin. A
 * kernel that drops or misplaces one product of a row moves the sum by about mag / len, >= 8e-5 of mag at the
 * longest row here (len 3 * 4128), and one that drops F16's wl or xl terms by about 2^-9 of the dot at the short
 * rows: both fail. */
#define TOL_REL 1e-5
#define TOL_ABS 1e-30

static void check_tiles(uint32_t type, int64_t ne0, int nrows, int nt, size_t ldy)
{
    const int64_t len = zl_amx_bf16_len(type, ne0);
    const int n_pad = (nt + 15) / 16 * 16, npan = nrows > 16 ? 2 : 1;
    const size_t nb1 = (size_t)ne0 * 2;
    uint8_t *w = make_weights(type, ne0, nrows, nb1, (unsigned)(3 * ne0 + nrows));
    float *x = malloc((size_t)ne0 * sizeof(float));
    uint16_t *a = xalloc((size_t)n_pad * (size_t)len * 2);            /* activations, n_pad rows, zero past nt */
    uint16_t *b = calloc((size_t)(32 * len), sizeof(uint16_t));       /* weight operand rows, row-major */
    uint16_t *panel = xalloc((size_t)npan * (size_t)len * 16 * 2);    /* exactly the panels the kernel may read */
    const size_t ny = (size_t)n_pad * ldy + 64;
    float *y = malloc(ny * sizeof(float));
    assert_true(x && b && y);
    memset(a, 0, (size_t)n_pad * (size_t)len * 2);
    for (int t = 0; t < nt; t++) {
        fill_random(x, ne0, (unsigned)(t * 131 + ne0), 1.0f + (float)(t % 3));
        ref_act_row(type, x, ne0, a + (size_t)t * (size_t)len);
    }
    for (int r = 0; r < nrows; r++)
        ref_weight_row(type, (const uint16_t *)(const void *)(w + (size_t)r * nb1), ne0, b + r * len);
    ref_panel(b, nrows < 16 ? nrows : 16, len, panel);
    if (npan == 2) ref_panel(b + 16 * len, nrows - 16, len, panel + len * 16);

    const uint32_t sentinel = 0x7fc0beefu; /* a NaN no result can be */
    for (size_t i = 0; i < ny; i++) y[i] = zl_fp32_from_bits(sentinel);
    zl_amx_bf16_tiles(len, a, nt, panel, nrows, y, ldy);

    const char *tn = type == ZL_F16 ? "F16" : "BF16";
    for (size_t i = 0; i < ny; i++) {
        const size_t t = i / ldy, r = i % ldy;
        const int inside = t < (size_t)nt && r < (size_t)nrows;
        if (!inside && zl_fp32_to_bits(y[i]) != sentinel)
            fail_msg("zl_amx_bf16_tiles %s ne0=%lld nrows=%d nt=%d ldy=%zu wrote y[%zu] (token %zu, row %zu) = %g",
                     tn, (long long)ne0, nrows, nt, ldy, i, t, r, (double)y[i]);
        if (!inside) continue;
        double dot = 0.0, mag = 0.0;
        for (int64_t k = 0; k < len; k++) {
            const double p = (double)bf16_val(a[t * (size_t)len + (size_t)k]) * bf16_val(b[r * (size_t)len + (size_t)k]);
            dot += p;
            mag += fabs(p);
        }
        if (!(fabs((double)y[i] - dot) <= TOL_REL * mag + TOL_ABS))
            fail_msg("zl_amx_bf16_tiles %s ne0=%lld nrows=%d nt=%d ldy=%zu: y[token %zu, row %zu] = %.9g, reference "
                     "%.9g (sum |products| %.4g, tol %.3g)",
                     tn, (long long)ne0, nrows, nt, ldy, t, r, (double)y[i], dot, mag, TOL_REL * mag + TOL_ABS);
    }
    free(w);
    free(x);
    free(a);
    free(b);
    free(panel);
    free(y);
}

static void tiles_all(uint32_t type)
{
    static const int64_t lens[] = { 32, 64, 96, 2048, 4128 };
    static const int rows[] = { 1, 5, 16, 17, 32 };
    static const int toks[] = { 1, 15, 16, 17, 33, 64 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t j = 0; j < sizeof rows / sizeof rows[0]; j++)
            for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
                /* ldy: tight (the direct tile stores at their narrowest stride) or wider than the rows */
                const size_t ldy = (size_t)rows[j] + ((i + j + k) % 2 ? 0 : 7);
                check_tiles(type, lens[i], rows[j], toks[k], ldy);
            }
}

static void test_tiles_bf16(void **state)
{
    (void)state;
    need_tiles();
    tiles_all(ZL_BF16);
}

static void test_tiles_f16(void **state)
{
    (void)state;
    need_tiles();
    tiles_all(ZL_F16);
}

/* The whole F16 pipeline (zl_amx_bf16_act3, zl_amx_bf16_panel, zl_amx_bf16_tiles) against the exact product of
 * the F16 weights and the float activations, in double: the split keeps all of w (wh + wl == w) and 16 significant
 * bits of x, and drops wl * xl, each at most 2^-18 of a product, so |y - exact| <= 2^-17 of sum |products| plus the
 * fp32 additions: 2e-5 of it. A single bf16 rounding of either side (2^-9) would fail it. */
static void test_f16_pipeline_exact(void **state)
{
    (void)state;
    need_tiles();
    const int64_t ne0 = 2048, len = zl_amx_bf16_len(ZL_F16, ne0);
    const int nrows = 32, nt = 40, n_pad = 48;
    const size_t nb1 = (size_t)ne0 * 2;
    uint8_t *w = make_weights(ZL_F16, ne0, nrows, nb1, 99);
    float *x = malloc((size_t)(nt * ne0) * sizeof(float)), *y = malloc((size_t)(nt * nrows) * sizeof(float));
    uint16_t *xb = xalloc((size_t)(n_pad * len) * 2), *panel = xalloc((size_t)(2 * len * 16) * 2);
    assert_true(x && y);
    memset(xb, 0, (size_t)(n_pad * len) * 2);
    fill_random(x, nt * ne0, 5, 2.0f);
    for (int t = 0; t < nt; t++) zl_amx_bf16_act3(x + t * ne0, ne0, xb + t * len);
    zl_amx_bf16_panel(ZL_F16, w, nb1, 16, ne0, panel);
    zl_amx_bf16_panel(ZL_F16, w + 16 * nb1, nb1, nrows - 16, ne0, panel + len * 16);
    zl_amx_bf16_tiles(len, xb, nt, panel, nrows, y, (size_t)nrows);
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nrows; r++) {
            const uint16_t *wr = (const uint16_t *)(const void *)(w + (size_t)r * nb1);
            double dot = 0.0, mag = 0.0;
            for (int64_t k = 0; k < ne0; k++) {
                const double p = (double)zl_fp16_to_fp32(wr[k]) * x[t * ne0 + k];
                dot += p;
                mag += fabs(p);
            }
            if (!(fabs((double)y[t * nrows + r] - dot) <= 2e-5 * mag))
                fail_msg("F16 pipeline: y[token %d, row %d] = %.9g, exact %.9g (sum |products| %.4g)", t, r,
                         (double)y[t * nrows + r], dot, mag);
        }
    free(w);
    free(x);
    free(y);
    free(xb);
    free(panel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act),
        cmocka_unit_test(test_panel),
        cmocka_unit_test(test_tiles_bf16),
        cmocka_unit_test(test_tiles_f16),
        cmocka_unit_test(test_f16_pipeline_exact),
    };
    g_no_bf16 = probe_bf16();
    g_no_tiles = probe_tiles();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
