/*
 * test_dtype.c - the dtype traits table and its conversion / dot kernels, against independent references:
 * gguf-py's quantize/dequantize and numpy's float16 (fixtures in tests/data/quant, made by
 * tests/data/gen_quant_fixtures.py), gguf-py's GGML_QUANT_SIZES, and double-precision dot products.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "backend/cpu/quant.h"
#include "core/dtype.h"
#include "core/err.h"
#include "core/fp16.h"
#include "core/tensor.h"

#define NVALS (41 * 32) /* values in input.f32 */

/* ---- fixtures ---- */

/* tests/data/quant/<name>: ZILI_TEST_DATA overrides the directory; by default it is found from this file's path
 * as the compiler saw it (the build runs from the repository root). */
static void *read_fixture(const char *name, size_t *size)
{
    char path[1024];
    const char *dir = getenv("ZILI_TEST_DATA");
    if (dir) {
        snprintf(path, sizeof path, "%s/quant/%s", dir, name);
    } else {
        const char *here = __FILE__; /* .../tests/unit/test_dtype.c */
        const char *cut = strstr(here, "unit/test_dtype.c");
        snprintf(path, sizeof path, "%.*sdata/quant/%s", cut ? (int)(cut - here) : 0, here, name);
    }
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open fixture %s (run from the repository root or set ZILI_TEST_DATA)", path);
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static float *read_floats(const char *name, size_t expect)
{
    size_t size;
    float *v = read_fixture(name, &size);
    assert_int_equal(size, expect * sizeof(float));
    return v;
}

/* ---- geometry ---- */

static void test_sizes_match_gguf(void **state)
{
    (void)state;
    /* gguf-py's GGML_QUANT_SIZES (block size, bytes), except Q8_1, which ggml stores in 36 bytes. */
    static const struct { uint32_t id; int64_t bs; size_t ts; const char *name; } k[] = {
        { 0, 1, 4, "f32" },          { 1, 1, 2, "f16" },          { 2, 32, 18, "q4_0" },
        { 3, 32, 20, "q4_1" },       { 6, 32, 22, "q5_0" },       { 7, 32, 24, "q5_1" },
        { 8, 32, 34, "q8_0" },       { 9, 32, 36, "q8_1" },       { 10, 256, 84, "q2_K" },
        { 11, 256, 110, "q3_K" },    { 12, 256, 144, "q4_K" },    { 13, 256, 176, "q5_K" },
        { 14, 256, 210, "q6_K" },    { 15, 256, 292, "q8_K" },    { 16, 256, 66, "iq2_xxs" },
        { 17, 256, 74, "iq2_xs" },   { 18, 256, 98, "iq3_xxs" },  { 19, 256, 50, "iq1_s" },
        { 20, 32, 18, "iq4_nl" },    { 21, 256, 110, "iq3_s" },   { 22, 256, 82, "iq2_s" },
        { 23, 256, 136, "iq4_xs" },  { 24, 1, 1, "i8" },          { 25, 1, 2, "i16" },
        { 26, 1, 4, "i32" },         { 27, 1, 8, "i64" },         { 28, 1, 8, "f64" },
        { 29, 256, 56, "iq1_m" },    { 30, 1, 2, "bf16" },        { 34, 256, 54, "tq1_0" },
        { 35, 256, 66, "tq2_0" },    { 39, 32, 17, "mxfp4" },     { 40, 64, 36, "nvfp4" },
        { 41, 128, 18, "q1_0" },
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const zl_type_traits *t = zl_type_traits_get(k[i].id);
        assert_non_null(t);
        assert_int_equal(t->block_size, k[i].bs);
        assert_int_equal(t->type_size, k[i].ts);
        assert_string_equal(t->name, k[i].name);
        assert_string_equal(zl_type_name(k[i].id), k[i].name);
        assert_ptr_equal(zl_type_traits_ref(k[i].id)->name, t->name);
    }
    /* ids ggml retired (4, 5: Q4_2, Q4_3; 31-33, 36-38) and past the end are unknown */
    static const uint32_t unknown[] = { 4, 5, 31, 32, 33, 36, 37, 38, 42, 1000, UINT32_MAX };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_null(zl_type_traits_get(unknown[i]));
        assert_null(zl_type_traits_ref(unknown[i]));
        assert_string_equal(zl_type_name(unknown[i]), "unknown");
    }
    static const uint32_t computable[] = { ZL_F32, ZL_F16,  ZL_BF16, ZL_Q4_0, ZL_Q4_1, ZL_Q5_0, ZL_Q5_1,
                                           ZL_Q8_0, ZL_Q2_K, ZL_Q3_K, ZL_Q4_K, ZL_Q5_K, ZL_Q6_K };
    for (size_t i = 0; i < sizeof computable / sizeof computable[0]; i++)
        assert_true(zl_type_traits_get(computable[i])->supported);
    /* activation-only and IQ types have no vec_dot */
    assert_false(zl_type_traits_get(ZL_Q8_K)->supported);
    assert_false(zl_type_traits_get(ZL_IQ2_XXS)->supported);
    assert_false(zl_type_traits_get(ZL_IQ4_NL)->supported);
    assert_int_equal(zl_type_traits_get(ZL_Q4_0)->vec_dot_type, ZL_Q8_0);
    assert_int_equal(zl_type_traits_get(ZL_Q4_1)->vec_dot_type, ZL_Q8_1);
    assert_int_equal(zl_type_traits_get(ZL_Q8_0)->vec_dot_type, ZL_Q8_0);
    assert_int_equal(zl_type_traits_get(ZL_F16)->vec_dot_type, ZL_F16);
}

static void test_row_size(void **state)
{
    (void)state;
    size_t n = 0;
    assert_true(zl_row_size(ZL_Q4_0, 4096, &n));
    assert_int_equal(n, 128 * 18);
    assert_true(zl_row_size(ZL_F32, 7, &n));
    assert_int_equal(n, 28);
    assert_true(zl_row_size(ZL_Q6_K, 0, &n));
    assert_int_equal(n, 0);
    assert_false(zl_row_size(ZL_Q4_0, 33, &n)); /* not a multiple of the block */
    assert_false(zl_row_size(ZL_F16, -2, &n));
    assert_false(zl_row_size(4, 32, &n));
    assert_false(zl_row_size(ZL_F64, INT64_MAX, &n)); /* 8 * (2^63 - 1) overflows */
    if (SIZE_MAX >= (uint64_t)INT64_MAX) assert_true(zl_row_size(ZL_I8, INT64_MAX, &n));
}

/* ---- conversions against gguf-py ---- */

typedef struct fixture_type {
    const char *name;
    uint32_t type;
} fixture_type;

static const fixture_type k_fixture_types[] = {
    { "q4_0", ZL_Q4_0 }, { "q4_1", ZL_Q4_1 }, { "q5_0", ZL_Q5_0 }, { "q5_1", ZL_Q5_1 },
    { "q8_0", ZL_Q8_0 }, { "f16", ZL_F16 },   { "bf16", ZL_BF16 },
};

static void test_from_float_matches_gguf_py(void **state)
{
    (void)state;
    float *x = read_floats("input.f32", NVALS);
    for (size_t i = 0; i < sizeof k_fixture_types / sizeof k_fixture_types[0]; i++) {
        const fixture_type *ft = &k_fixture_types[i];
        char name[64];
        snprintf(name, sizeof name, "%s.q", ft->name);
        size_t qsize, rs;
        uint8_t *want = read_fixture(name, &qsize);
        assert_true(zl_row_size(ft->type, NVALS, &rs));
        assert_int_equal(qsize, rs);
        uint8_t *got = malloc(rs);
        const zl_type_traits *tables[2] = { zl_type_traits_ref(ft->type), zl_type_traits_get(ft->type) };
        for (int k = 0; k < 2; k++) {
            memset(got, 0xAA, rs);
            tables[k]->from_float(x, got, NVALS);
            for (size_t b = 0; b < rs; b++)
                if (got[b] != want[b])
                    fail_msg("%s from_float (table %d): byte %zu is %02x, gguf-py has %02x", ft->name, k, b, got[b],
                             want[b]);
        }
        free(got);
        free(want);
    }
    free(x);
}

static void test_to_float_matches_gguf_py(void **state)
{
    (void)state;
    float *y = malloc(NVALS * sizeof(float));
    for (size_t i = 0; i < sizeof k_fixture_types / sizeof k_fixture_types[0]; i++) {
        const fixture_type *ft = &k_fixture_types[i];
        char name[64];
        size_t qsize;
        snprintf(name, sizeof name, "%s.q", ft->name);
        uint8_t *q = read_fixture(name, &qsize);
        snprintf(name, sizeof name, "%s.deq.f32", ft->name);
        float *want = read_floats(name, NVALS);
        zl_type_traits_get(ft->type)->to_float(q, y, NVALS);
        for (int j = 0; j < NVALS; j++)
            if (zl_fp32_to_bits(y[j]) != zl_fp32_to_bits(want[j]))
                fail_msg("%s to_float: value %d is %.9g, gguf-py has %.9g", ft->name, j, y[j], want[j]);
        free(want);
        free(q);
    }
    free(y);
}

/* ---- activation quantizers ---- */

static void fill_random(float *x, int n, unsigned seed, float scale)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = ((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 2.0f * scale;
    }
}

/* The activation recipe rounds x*127/amax half to even: on the tie block of the fixture (amax 127, so the
 * multiplier is exactly 1) 2.5 -> 2, -3.5 -> -4, 0.5 -> 0, while the reference quantizer gives 3, -4, 1. */
static void test_q8_act_ties(void **state)
{
    (void)state;
    float x[32] = { 127.0f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, -126.5f, 4.49f };
    zl_block_q8_0 a, r;
    zl_type_traits_get(ZL_Q8_0)->from_float_act(x, &a, 32);
    zl_type_traits_ref(ZL_Q8_0)->from_float(x, &r, 32);
    const int8_t want_act[8] = { 127, 2, -4, 0, 0, 2, -126, 4 };
    const int8_t want_ref[8] = { 127, 3, -4, 1, -1, 2, -127, 4 };
    assert_memory_equal(a.qs, want_act, 8);
    assert_memory_equal(r.qs, want_ref, 8);
    assert_int_equal(a.d, 0x3c00); /* 1.0 in fp16 */
    zl_block_q8_1 b;
    zl_type_traits_ref(ZL_Q8_1)->from_float_act(x, &b, 32);
    assert_memory_equal(b.qs, want_act, 8);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += b.qs[j];
    assert_int_equal(b.s, zl_fp32_to_fp16((float)sum));
}

/* AVX2 activation quantizers give the scalar ones' bytes exactly, NEON ones those of ggml's ARM recipe; all stay
 * within one step of the reference quantizer. */
static void test_q8_act_simd_equals_scalar(void **state)
{
    (void)state;
    const bool neon = strncmp(zl_cpu_kernels_name(), "neon", 4) == 0;
    const int nblk = 37;
    float x[37 * 32];
    for (unsigned seed = 1; seed <= 20; seed++) {
        fill_random(x, nblk * 32, seed, seed % 3 == 0 ? 1e-3f : 5.0f);
        if (seed == 2) memset(x + 64, 0, 32 * sizeof(float)); /* a zero block */
        if (seed == 3) {
            for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) + 0.5f; /* ties at amax 15.5 scale */
        }
        zl_block_q8_0 a[37], b[37], r[37];
        zl_type_traits_ref(ZL_Q8_0)->from_float_act(x, a, nblk * 32);
        zl_type_traits_get(ZL_Q8_0)->from_float_act(x, b, nblk * 32);
        zl_type_traits_ref(ZL_Q8_0)->from_float(x, r, nblk * 32);
        if (neon) {
            /* ggml's NEON recipe: q = round-half-even(x * (1 / d)), d = amax / 127 (x86: x * (127 / amax)) */
            zl_block_q8_0 m[37];
            for (int i = 0; i < nblk; i++) {
                float amax = 0.0f;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * i + j]));
                const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
                m[i].d = zl_fp32_to_fp16(d);
                for (int j = 0; j < 32; j++) m[i].qs[j] = (int8_t)rintf(x[32 * i + j] * id);
            }
            assert_memory_equal(m, b, sizeof m);
            memcpy(a, b, sizeof a); /* the Q8_1 checks below compare with this set's Q8_0 bytes */
        }
        assert_memory_equal(a, b, sizeof a);
        for (int i = 0; i < nblk; i++) {
            assert_int_equal(a[i].d, r[i].d);
            for (int j = 0; j < 32; j++) assert_true(abs(a[i].qs[j] - r[i].qs[j]) <= 1);
        }
        zl_block_q8_1 c[37], d[37];
        zl_type_traits_ref(ZL_Q8_1)->from_float_act(x, c, nblk * 32);
        zl_type_traits_get(ZL_Q8_1)->from_float_act(x, d, nblk * 32);
        if (!neon) assert_memory_equal(c, d, sizeof c);
        for (int i = 0; i < nblk; i++) { /* the dispatched Q8_1 codes and scale are its Q8_0 ones */
            assert_memory_equal(d[i].qs, a[i].qs, 32);
            assert_int_equal(d[i].d, a[i].d);
        }
    }
}

/* ---- dot products ---- */

/* For every computable weight type: vec_dot(weights from the fixture, activations converted to vec_dot_type)
 * against a double-precision dot of the two dequantized vectors, on several odd lengths, for the scalar and
 * the dispatched kernels. */
static void test_vec_dot_vs_double(void **state)
{
    (void)state;
    float *wf = read_floats("input.f32", NVALS);
    float *xf = malloc(NVALS * sizeof(float));
    float *wd = malloc(NVALS * sizeof(float));
    float *xd = malloc(NVALS * sizeof(float));
    uint8_t *wq = malloc(NVALS * 4);
    uint8_t *xq = malloc(NVALS * 4);
    static const uint32_t types[] = { ZL_F32, ZL_F16, ZL_BF16, ZL_Q4_0, ZL_Q4_1, ZL_Q5_0, ZL_Q5_1, ZL_Q8_0 };
    static const int lens[] = { 32, 96, 224, 32 * 41, 7, 33, 1000 };
    fill_random(xf, NVALS, 77, 2.0f);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (int k = 0; k < 2; k++) {
            const zl_type_traits *wt = k ? zl_type_traits_get(types[ti]) : zl_type_traits_ref(types[ti]);
            const zl_type_traits *vt =
                k ? zl_type_traits_get(wt->vec_dot_type) : zl_type_traits_ref(wt->vec_dot_type);
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int n = lens[li];
                if (n % wt->block_size) continue;
                wt->from_float(wf, wq, n);
                vt->from_float_act(xf, xq, n);
                wt->to_float(wq, wd, n);
                vt->to_float(xq, xd, n);
                double ref = 0.0, mag = 0.0;
                for (int j = 0; j < n; j++) {
                    ref += (double)wd[j] * (double)xd[j];
                    mag += fabs((double)wd[j] * (double)xd[j]);
                }
                if (types[ti] == ZL_Q4_1 || types[ti] == ZL_Q5_1) {
                    /* Q4_1 / Q5_1 . Q8_1 apply each weight block's minimum m to the activation block's stored
                     * sum s = fp16(d * sum(q)), not to the exact sum of its dequantized values: model that. */
                    const size_t wsize = wt->type_size, m_off = 2; /* m follows d in both layouts */
                    const zl_block_q8_1 *xb = (const zl_block_q8_1 *)xq;
                    for (int b = 0; b < n / 32; b++) {
                        uint16_t mh;
                        memcpy(&mh, wq + (size_t)b * wsize + m_off, sizeof mh);
                        double xsum = 0.0;
                        for (int j = 0; j < 32; j++) xsum += xd[32 * b + j];
                        ref += (double)zl_fp16_to_fp32(mh) * ((double)zl_fp16_to_fp32(xb[b].s) - xsum);
                    }
                }
                float got;
                wt->vec_dot(n, &got, wq, xq);
                if (fabs(got - ref) > 1e-5 * mag + 1e-30)
                    fail_msg("%s vec_dot (table %d) n=%d: %.9g, double reference %.9g", wt->name, k, n, got, ref);
            }
        }
    }
    free(wf);
    free(xf);
    free(wd);
    free(xd);
    free(wq);
    free(xq);
}

/* SIMD dot kernels equal the scalar ones up to summation order, on odd block counts and tails. */
static void test_vec_dot_simd_vs_scalar(void **state)
{
    (void)state;
    if (zl_cpu_simd_width() == 1) skip(); /* scalar kernels only: nothing to compare */
    static const uint32_t types[] = { ZL_F32, ZL_F16, ZL_BF16, ZL_Q4_0, ZL_Q4_1, ZL_Q5_0, ZL_Q5_1, ZL_Q8_0 };
    enum { N = 32 * 67 + 5 };
    float *w = malloc(N * sizeof(float)), *x = malloc(N * sizeof(float));
    uint8_t *wq = malloc(N * 4), *xq = malloc(N * 4);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const zl_type_traits *ref = zl_type_traits_ref(types[ti]);
        const zl_type_traits *fast = zl_type_traits_get(types[ti]);
        if (types[ti] == ZL_BF16 && strncmp(zl_cpu_kernels_name(), "neon", 4) == 0)
            assert_ptr_equal(ref->vec_dot, fast->vec_dot); /* ggml's BF16 dot is its scalar loop on ARMv8.2 too */
        else
            assert_ptr_not_equal(ref->vec_dot, fast->vec_dot);
        for (int nb = 1; nb <= 67; nb += 2) {
            const int n = ref->block_size == 1 ? nb * 32 + nb % 7 : nb * 32; /* float types: ragged tails */
            fill_random(w, n, (unsigned)nb, 1.0f);
            fill_random(x, n, (unsigned)nb + 1000, 3.0f);
            ref->from_float(w, wq, n);
            zl_type_traits_ref(ref->vec_dot_type)->from_float_act(x, xq, n);
            float a, b;
            ref->vec_dot(n, &a, wq, xq);
            fast->vec_dot(n, &b, wq, xq);
            double mag = 0;
            for (int j = 0; j < n; j++) mag += fabs((double)w[j] * x[j]);
            if (fabs((double)a - b) > 1e-6 * mag)
                fail_msg("%s n=%d: scalar %.9g, simd %.9g", ref->name, n, a, b);
            if (fast->vec_dot_gemm && n % fast->gemm_k == 0) { /* tinyBLAS's order: the same up to rounding */
                fast->vec_dot_gemm(n, &b, wq, xq);
                if (fabs((double)a - b) > 1e-6 * mag)
                    fail_msg("%s n=%d: scalar %.9g, gemm order %.9g", ref->name, n, a, b);
            }
        }
    }
    free(w);
    free(x);
    free(wq);
    free(xq);
}

/* vec_dot4 (one weight row, 4 tokens) must give exactly vec_dot's bits for each token: odd block counts, rows of
 * different scales, an output stride, and one token of zeros. */
static void test_vec_dot4_equals_vec_dot(void **state)
{
    (void)state;
    static const uint32_t types[] = { ZL_Q4_0, ZL_Q4_1, ZL_Q8_0, ZL_Q5_0 };
    enum { NBMAX = 67, NMAX = 32 * NBMAX, STRIDE = 5 };
    float *w = malloc(NMAX * sizeof(float)), *x = malloc(NMAX * sizeof(float));
    uint8_t *wq = malloc(NMAX * 2), *xq = malloc(4 * NMAX * 2);
    int tested = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const zl_type_traits *t = zl_type_traits_get(types[ti]);
        if (!t->vec_dot4)
            continue; /* scalar kernels (ZILI_CPU=scalar or no AVX2): no 4-token kernel */
        const zl_type_traits *vt = zl_type_traits_get(t->vec_dot_type);
        for (int nb = 1; nb <= NBMAX; nb += 3) {
            const int n = nb * 32;
            size_t xrow;
            assert_true(zl_row_size(t->vec_dot_type, n, &xrow));
            fill_random(w, n, (unsigned)nb, 1.0f);
            t->from_float(w, wq, n);
            for (int k = 0; k < 4; k++) {
                fill_random(x, n, (unsigned)(nb * 4 + k + 77), k == 2 ? 0.0f : 0.5f + (float)k);
                vt->from_float_act(x, xq + (size_t)k * xrow, n);
            }
            float one[4], four[4 * STRIDE];
            for (int k = 0; k < 4; k++)
                t->vec_dot(n, &one[k], wq, xq + (size_t)k * xrow);
            t->vec_dot4(n, four, STRIDE, wq, xq, xrow);
            for (int k = 0; k < 4; k++)
                if (memcmp(&one[k], &four[k * STRIDE], sizeof(float)) != 0)
                    fail_msg("%s n=%d token %d: vec_dot %.9g, vec_dot4 %.9g", t->name, n, k, one[k], four[k * STRIDE]);
            tested++;
        }
    }
    if (strncmp(zl_cpu_kernels_name(), "avx", 3) == 0) /* the x86 sets have 4-token kernels for all three */
        assert_true(tested > 0);
    free(w);
    free(x);
    free(wq);
    free(xq);
}

/* ---- AVX-512 VNNI dots: the AVX2 kernels' bits ---- */

#ifdef ZL_HAVE_VNNI_KERNELS
typedef struct vnni_case {
    const char *name;
    size_t xsize, ysize;   /* weight block bytes, activation block bytes (Q8_0 34, Q8_1 36) */
    int x_halves;          /* fp16 fields at the start of a weight block (d; d, m) */
    zl_vec_dot_fn avx2, vnni;
    zl_vec_dot4_fn vnni4;
} vnni_case;

static uint64_t vnni_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A finite fp16: random, or (one in 8) one of the extremes: largest, smallest normal, smallest subnormal, 0. */
static uint16_t vnni_half(uint64_t *s)
{
    static const uint16_t extremes[] = { 0x7bff, 0xfbff, 0x0400, 0x8001, 0x0001, 0x0000 };
    const uint64_t r = vnni_rand(s);
    if (r % 8 == 0) return extremes[(r >> 8) % (sizeof extremes / sizeof extremes[0])];
    const uint16_t h = (uint16_t)(r >> 16);
    return (h & 0x7c00) == 0x7c00 ? (uint16_t)(h & 0x83ff) : h; /* no inf / NaN */
}

/* Random blocks: fp16 fields as above, every other byte random, so codes cover the whole byte range (-128 and 127
 * activations, -128 Q8_0 weights, all fifth-bit patterns). mode 1: activation codes all -128, 2: all 127. */
static void vnni_fill(uint8_t *p, size_t bsize, int halves, int nb, int mode, uint64_t *s)
{
    for (int b = 0; b < nb; b++) {
        uint8_t *blk = p + (size_t)b * bsize;
        for (int h = 0; h < halves; h++) {
            const uint16_t v = vnni_half(s);
            memcpy(blk + 2 * h, &v, 2);
        }
        for (size_t j = 2 * (size_t)halves; j < bsize; j++)
            blk[j] = mode == 1 ? 0x80 : mode == 2 ? 0x7f : (uint8_t)(vnni_rand(s) >> 24);
    }
}
#endif

/* Every VNNI dot (vec_dot and vec_dot4, all 4 token slots) gives the AVX2 vec_dot's float bits exactly, on 1..40
 * blocks of random and extreme codes and scales, with strided activation rows and outputs. */
static void test_vnni_dots_equal_avx2(void **state)
{
    (void)state;
#ifdef ZL_HAVE_VNNI_KERNELS
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vnni")) {
        print_message("skipped: this CPU has no AVX-512 VNNI (the VNNI kernels are not tested here)\n");
        skip();
    }
    const vnni_case cases[] = {
        { "q4_0", sizeof(zl_block_q4_0), sizeof(zl_block_q8_0), 1, zl_q4_0_vec_dot_avx2, zl_q4_0_vec_dot_vnni,
          zl_q4_0_vec_dot4_vnni },
        { "q4_1", sizeof(zl_block_q4_1), sizeof(zl_block_q8_1), 2, zl_q4_1_vec_dot_avx2, zl_q4_1_vec_dot_vnni,
          zl_q4_1_vec_dot4_vnni },
        { "q5_0", sizeof(zl_block_q5_0), sizeof(zl_block_q8_0), 1, zl_q5_0_vec_dot_avx2, zl_q5_0_vec_dot_vnni,
          zl_q5_0_vec_dot4_vnni },
        { "q5_1", sizeof(zl_block_q5_1), sizeof(zl_block_q8_1), 2, zl_q5_1_vec_dot_avx2, zl_q5_1_vec_dot_vnni,
          zl_q5_1_vec_dot4_vnni },
        { "q8_0", sizeof(zl_block_q8_0), sizeof(zl_block_q8_0), 1, zl_q8_0_vec_dot_avx2, zl_q8_0_vec_dot_vnni,
          zl_q8_0_vec_dot4_vnni },
    };
    enum { NBMAX = 40, S_STRIDE = 3, Y_PAD = 12 };
    uint8_t *xq = malloc(NBMAX * 36), *yq = malloc(4 * (NBMAX * 36 + Y_PAD));
    uint64_t rng = 0x5eed5eed1234ull;
    long compared = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const vnni_case *c = &cases[ci];
        for (int nb = 1; nb <= NBMAX; nb++) {
            for (int round = 0; round < 4; round++) {
                const int n = nb * 32;
                const size_t y_stride = (size_t)nb * c->ysize + Y_PAD; /* rows not back to back */
                vnni_fill(xq, c->xsize, c->x_halves, nb, 0, &rng);
                /* round 1: token 1's codes all -128, token 3's all 127; round 2: tokens 2 and 0 so; else random */
                static const int modes[4][4] = { { 0, 0, 0, 0 }, { 0, 1, 0, 2 }, { 2, 0, 1, 0 }, { 0, 0, 0, 0 } };
                for (int k = 0; k < 4; k++) {
                    const int mode = modes[round][k];
                    vnni_fill(yq + k * y_stride, c->ysize, c->ysize == 36 ? 2 : 1, nb, mode, &rng);
                }
                float want[4], got1, got4[4 * S_STRIDE];
                for (int k = 0; k < 4; k++) {
                    c->avx2(n, &want[k], xq, yq + k * y_stride);
                    c->vnni(n, &got1, xq, yq + k * y_stride);
                    if (memcmp(&want[k], &got1, sizeof got1) != 0)
                        fail_msg("%s vec_dot_vnni nb=%d token %d: %a, avx2 %a", c->name, nb, k, (double)got1,
                                 (double)want[k]);
                }
                c->vnni4(n, got4, S_STRIDE, xq, yq, y_stride);
                for (int k = 0; k < 4; k++)
                    if (memcmp(&want[k], &got4[k * S_STRIDE], sizeof(float)) != 0)
                        fail_msg("%s vec_dot4_vnni nb=%d slot %d: %a, avx2 vec_dot %a", c->name, nb, k,
                                 (double)got4[k * S_STRIDE], (double)want[k]);
                compared += 8;
            }
        }
    }
    assert_int_equal(compared, 5 * NBMAX * 4 * 8);
    free(xq);
    free(yq);
#else
    print_message("skipped: VNNI kernels exist only on x86-64\n");
    skip();
#endif
}

/* Byte offsets of a block's fp16 scale fields (kept from the quantizer when the rest is scrambled), or -1. */
static void k_scale_fields(uint32_t type, int f[2])
{
    f[0] = f[1] = -1;
    if (type == ZL_Q4_K) { /* d, dmin, scales[12], qs[128] */
        f[0] = 0;
        f[1] = 2;
    } else if (type == ZL_Q6_K) { /* ql[128], qh[64], scales[16], d */
        f[0] = 208;
    }
}

/* One-token decode takes 4 weight rows per call for Q8_0 (zl_q8_0_vec_dot_rows4_avx2, and _avx512vnni where that
 * set is active), Q5_0 (zl_q5_0_vec_dot_rows4_avx512vnni) and, in the avx512vnni set, Q4_0, Q4_1, Q4_K and Q6_K
 * (quant_rows4_vnni.c), and 8 rows for Q4_0 and Q4_1 (zl_q4_0/q4_1_vec_dot_rows8_vnni): each row's result must be vec_dot's
 * bits. Directly on odd block counts (every remainder of 4 blocks) with rows of different scales (rows of zeros;
 * for Q4_K / Q6_K one row of random bytes under the quantizer's fp16 scales, so that every code and sub-block scale
 * occurs), and through zl_matmul on 1 token and 39 rows (chunks of 8 rows for Q4_0 and Q4_1, of 4 for the others, then 3
 * rows one at a time; 2 threads). */
static void test_rows4_equals_vec_dot(void **state)
{
    (void)state;
    enum { NBMAX = 67, NMAX = 32 * NBMAX, NE1 = 39, NE0 = 768 };
    float *w = malloc(NE1 * NMAX * sizeof(float)), *x = malloc(NMAX * sizeof(float));
    uint8_t *wq = malloc(NE1 * NMAX * 2), *xq = malloc(NMAX * 2);
    size_t row;
    int checked = 0;
#ifdef ZL_HAVE_AVX2_KERNELS
    typedef void (*rows4_fn)(int64_t, float *, const void *, size_t, const void *);
    static const struct {
        uint32_t type;
        rows4_fn kernel;
        bool vnni; /* needs the avx512vnni set */
        int rows;  /* 4, or 8 for an 8-row kernel */
    } cases[] = {
        { ZL_Q8_0, zl_q8_0_vec_dot_rows4_avx2, false, 4 },
        { ZL_Q8_0, zl_q8_0_vec_dot_rows4_avx512vnni, true, 4 },
        { ZL_Q5_0, zl_q5_0_vec_dot_rows4_avx512vnni, true, 4 },
#ifdef ZL_HAVE_VNNI_KERNELS
        { ZL_Q4_0, zl_q4_0_vec_dot_rows4_vnni, true, 4 },
        { ZL_Q4_0, zl_q4_0_vec_dot_rows8_vnni, true, 8 },
        { ZL_Q4_1, zl_q4_1_vec_dot_rows4_vnni, true, 4 },
        { ZL_Q4_1, zl_q4_1_vec_dot_rows8_vnni, true, 8 },
        { ZL_Q4_K, zl_q4_K_vec_dot_rows4_vnni, true, 4 },
        { ZL_Q6_K, zl_q6_K_vec_dot_rows4_vnni, true, 4 },
#endif
    };
    const bool have_vnni = strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        if (zl_cpu_simd_width() < 8 || (cases[ci].vnni && !have_vnni))
            continue;
        const zl_type_traits *t = zl_type_traits_get(cases[ci].type), *vt = zl_type_traits_get(t->vec_dot_type);
        const int bs = (int)t->block_size;
        int fields[2];
        k_scale_fields(cases[ci].type, fields);
        for (int nb = 1; nb * bs <= NMAX; nb += bs == 32 ? 3 : 1) {
            const int n = nb * bs;
            assert_true(zl_row_size(cases[ci].type, n, &row));
            const int nr = cases[ci].rows;
            for (int r = 0; r < nr; r++) {
                fill_random(w + r * n, n, (unsigned)(nb * 8 + r), r % 4 == 1 ? 0.0f : 0.25f + 3.0f * (float)r);
                t->from_float(w + r * n, wq + r * row, n);
            }
            if (cases[ci].type == ZL_Q8_0)
                for (int b = 0; b < nb; b++) /* -128: a code the quantizer never writes but a file may hold */
                    ((zl_block_q8_0 *)(void *)(wq + 3 * row))[b].qs[b % 32] = -128;
            if (fields[0] >= 0) { /* row 2: random bytes except the fp16 scales */
                uint64_t st = 0x243F6A8885A308D3ull + (uint64_t)nb;
                const size_t bb = t->type_size;
                for (size_t i = 0; i < row; i++) {
                    const int off = (int)(i % bb);
                    st = st * 6364136223846793005ull + 1442695040888963407ull;
                    if (off != fields[0] && off != fields[0] + 1 && off != fields[1] && off != fields[1] + 1)
                        wq[2 * row + i] = (uint8_t)(st >> 56);
                }
            }
            fill_random(x, n, (unsigned)(nb + 1000), 2.0f);
            vt->from_float_act(x, xq, n);
            float four[8];
            cases[ci].kernel(n, four, wq, row, xq);
            for (int r = 0; r < nr; r++) {
                float one;
                t->vec_dot(n, &one, wq + r * row, xq);
                if (memcmp(&one, &four[r], sizeof one) != 0)
                    fail_msg("%s rows4 case %zu n=%d row %d: vec_dot %a, rows4 %a", t->name, ci, n, r, (double)one,
                             (double)four[r]);
                checked++;
            }
        }
    }
#endif
    zl_cpu *cpu = zl_cpu_create(2);
    assert_non_null(cpu);
    static const uint32_t types[] = { ZL_Q8_0, ZL_Q5_0, ZL_Q4_0, ZL_Q4_1, ZL_Q4_K, ZL_Q6_K };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const zl_type_traits *t = zl_type_traits_get(types[ti]), *vt = zl_type_traits_get(t->vec_dot_type);
        assert_true(zl_row_size(types[ti], NE0, &row));
        fill_random(w, NE0 * NE1, 9 + (unsigned)ti, 1.0f);
        t->from_float(w, wq, NE0 * NE1);
        fill_random(x, NE0, 10, 1.0f);
        float y[NE1];
        zl_tensor wt = { .name = "w", .type = types[ti], .ne = { NE0, NE1, 1, 1 }, .nb1 = row, .data = wq };
        assert_int_equal(zl_matmul(cpu, &wt, x, 1, y), ZL_OK);
        vt->from_float_act(x, xq, NE0);
        for (int r = 0; r < NE1; r++) {
            float want;
            t->vec_dot(NE0, &want, wq + r * row, xq);
            if (memcmp(&want, &y[r], sizeof want) != 0)
                fail_msg("%s matmul 1 token row %d: %a, vec_dot %a", t->name, r, (double)y[r], (double)want);
        }
    }
    print_message("rows4: %d rows checked directly under the %s set\n", checked, zl_cpu_kernels_name());
    zl_cpu_destroy(cpu);
    free(w);
    free(x);
    free(wq);
    free(xq);
}

/* zl_matmul of random weights of `type` (ne1 rows of ne0) by ntok random tokens on `cpu` must give, for every
 * (row, token), `dot` (named dot_name in messages) of the row and the token's converted activations, bit for bit.
 * w, wq, x, xq: scratch of at least ne0 * ne1 floats, their quantized bytes, ne0 * ntok floats, one activation row. */
static void check_matmul_modes_equals_dot(zl_cpu *cpu, uint32_t type, zl_vec_dot_fn dot, const char *dot_name,
                                          float *w, void *wq, float *x, void *xq, int ne0, int ne1, int ntok,
                                          unsigned seed_w, unsigned seed_x, const int8_t *modes);

static void check_matmul_equals_dot(zl_cpu *cpu, uint32_t type, zl_vec_dot_fn dot, const char *dot_name, float *w,
                                    void *wq, float *x, void *xq, int ne0, int ne1, int ntok, unsigned seed_w,
                                    unsigned seed_x)
{
    check_matmul_modes_equals_dot(cpu, type, dot, dot_name, w, wq, x, xq, ne0, ne1, ntok, seed_w, seed_x, NULL);
}

/* The same through zl_matmul_modes with per-token modes (NULL: zl_matmul's); a token in ZL_MODE_ONE must give the
 * type's vec_dot instead of `dot`. */
static void check_matmul_modes_equals_dot(zl_cpu *cpu, uint32_t type, zl_vec_dot_fn dot, const char *dot_name,
                                          float *w, void *wq, float *x, void *xq, int ne0, int ne1, int ntok,
                                          unsigned seed_w, unsigned seed_x, const int8_t *modes)
{
    const zl_type_traits *t = zl_type_traits_get(type), *vt = zl_type_traits_get(t->vec_dot_type);
    size_t row;
    assert_true(zl_row_size(type, ne0, &row));
    fill_random(w, ne0 * ne1, seed_w, 1.0f);
    t->from_float(w, wq, (int64_t)ne0 * ne1);
    fill_random(x, ne0 * ntok, seed_x, 1.0f);
    float *y = malloc((size_t)ne1 * (size_t)ntok * sizeof *y);
    assert_non_null(y);
    zl_tensor wt = { .name = "w", .type = type, .ne = { ne0, ne1, 1, 1 }, .nb1 = row, .data = wq };
    assert_int_equal(zl_matmul_modes(cpu, &wt, x, ntok, y, modes), ZL_OK);
    for (int k = 0; k < ntok; k++) {
        vt->from_float_act(x + (size_t)k * ne0, xq, ne0);
        const bool one = modes && modes[k] == ZL_MODE_ONE;
        for (int r = 0; r < ne1; r++) {
            float want;
            (one ? t->vec_dot : dot)(ne0, &want, (const char *)wq + (size_t)r * row, xq);
            if (memcmp(&want, &y[k * ne1 + r], sizeof want) != 0)
                fail_msg("%s matmul %d tokens row %d token %d: %a, %s %a", t->name, ntok, r, k,
                         (double)y[k * ne1 + r], one ? "vec_dot" : dot_name, (double)want);
        }
    }
    free(y);
}

/* Batched decode and short prompts take 4 rows x 2, 3, 4 or 8 tokens per call for Q4_0, Q4_1, Q5_0 and Q8_0 in the
 * avx512vnni set (zl_q4_0/q4_1/q5_0/q8_0_tile2/3/4/8_vnni, reading the per-token zl_tile_aux): each (row, token)
 * must be vec_dot's bits. Directly on odd block counts (one weight row of zeros, one token of zeros, scales over a
 * wide range), and through zl_matmul on 15 tokens and 39 rows (an 8-token tile, a 4-token tile, 3 tokens left over,
 * a tail of 3 rows, 2 threads), and on 2, 3 and 5 tokens. */
static void test_tile44_equals_vec_dot(void **state)
{
    (void)state;
    enum { NBMAX = 41, NMAX = 32 * NBMAX, NE1 = 39, NE0 = 640, NTOK = 15 };
    float *w = malloc(NE1 * NMAX * sizeof(float)), *x = malloc(NTOK * NMAX * sizeof(float));
    uint8_t *wq = malloc(NE1 * NMAX * 2), *xq = malloc(NTOK * NMAX * 2);
    static const uint32_t types[] = { ZL_Q4_0, ZL_Q4_1, ZL_Q5_0, ZL_Q8_0 };
    int checked = 0;
#ifdef ZL_HAVE_VNNI_KERNELS
    static const int tile_nt[4] = { 2, 3, 4, 8 };
    static const zl_tile_fn tiles[4][4] = {
        { zl_q4_0_tile2_vnni, zl_q4_1_tile2_vnni, zl_q5_0_tile2_vnni, zl_q8_0_tile2_vnni },
        { zl_q4_0_tile3_vnni, zl_q4_1_tile3_vnni, zl_q5_0_tile3_vnni, zl_q8_0_tile3_vnni },
        { zl_q4_0_tile4_vnni, zl_q4_1_tile4_vnni, zl_q5_0_tile4_vnni, zl_q8_0_tile4_vnni },
        { zl_q4_0_tile8_vnni, zl_q4_1_tile8_vnni, zl_q5_0_tile8_vnni, zl_q8_0_tile8_vnni },
    };
    static const zl_tile_aux_fn aux_of[] = { zl_tile_aux_q8_0, zl_tile_aux_q8_1, zl_tile_aux_q8_0,
                                             zl_tile_aux_q8_0 };
    zl_tile_aux4 *aux = malloc(2 * NBMAX * sizeof *aux); /* 2 groups of 4 tokens */
    assert_non_null(aux);
    if (strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const zl_type_traits *t = zl_type_traits_get(types[ti]), *vt = zl_type_traits_get(t->vec_dot_type);
            for (int nb = 1; nb <= NBMAX; nb += 4) {
                const int n = nb * 32;
                size_t row, xrow;
                assert_true(zl_row_size(types[ti], n, &row));
                assert_true(zl_row_size(t->vec_dot_type, n, &xrow));
                for (int r = 0; r < 4; r++) {
                    fill_random(w + r * n, n, (unsigned)(nb * 8 + r), r == 2 ? 0.0f : 0.01f + 7.0f * (float)r);
                    t->from_float(w + r * n, wq + r * row, n);
                }
                for (int k = 0; k < 8; k++) {
                    fill_random(x + k * n, n, (unsigned)(nb + 100 * k), k == 1 ? 0.0f : 0.3f + 5.0f * (float)k);
                    vt->from_float_act(x + k * n, xq + k * xrow, n);
                    aux_of[ti](xq + k * xrow, aux + k / 4 * nb, k % 4, n);
                }
                for (int ni = 0; ni < 4; ni++) {
                    const int nt = tile_nt[ni];
                    float out[8 * 5];
                    for (int i = 0; i < 8 * 5; i++)
                        out[i] = NAN;
                    tiles[ni][ti](n, out, 5, wq, row, aux, nb * sizeof *aux);
                    for (int k = 0; k < nt; k++)
                        for (int r = 0; r < 4; r++) {
                            float want;
                            t->vec_dot(n, &want, wq + r * row, xq + k * xrow);
                            if (memcmp(&want, &out[k * 5 + r], sizeof want) != 0)
                                fail_msg("%s 4x%d n=%d row %d token %d: vec_dot %a, tile %a", t->name, nt, n, r, k,
                                         (double)want, (double)out[k * 5 + r]);
                            checked++;
                        }
                    for (int i = 0; i < 8 * 5; i++) /* nothing written past the call's tokens and rows */
                        if ((i / 5 >= nt || i % 5 == 4) && !isnan(out[i]))
                            fail_msg("%s 4x%d n=%d wrote out[%d]", t->name, nt, n, i);
                }
            }
        }
    free(aux);
#endif
    zl_cpu *cpu = zl_cpu_create(2);
    assert_non_null(cpu);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        check_matmul_equals_dot(cpu, types[ti], zl_type_traits_get(types[ti])->vec_dot, "vec_dot", w, wq, x, xq, NE0,
                                NE1, NTOK, 19 + (unsigned)ti, 20);
    /* Batched decode: every token in vec_dot mode (modes all 0) among 9 and 16 tokens, where a batch that size
     * would take the multi-token order (tinyBLAS for F16, the tiled K-quant order): each must still be vec_dot's. */
    static const int8_t zero_modes[16] = { 0 };
    static const uint32_t dec_types[] = { ZL_Q4_0, ZL_Q4_1, ZL_Q8_0, ZL_Q4_K, ZL_Q6_K, ZL_F16 };
    for (size_t ti = 0; ti < sizeof dec_types / sizeof dec_types[0]; ti++)
        for (int nt = 9; nt <= 16; nt += 7)
            check_matmul_modes_equals_dot(cpu, dec_types[ti], zl_type_traits_get(dec_types[ti])->vec_dot, "vec_dot",
                                          w, wq, x, xq, ti == 3 || ti == 4 ? 512 : NE0, NE1 + 1, nt,
                                          60 + (unsigned)ti, 61 + (unsigned)nt, zero_modes);
    /* Batches of 2, 3 and 5 tokens: a token at a time through the 4-row kernels (no tile), or a 4-token tile and
     * one token so; the K-quants (rows of 512) below their tiled matmul's 8 tokens. */
    static const uint32_t few_types[] = { ZL_Q4_0, ZL_Q4_1, ZL_Q5_0, ZL_Q8_0, ZL_Q4_K, ZL_Q6_K };
    for (size_t ti = 0; ti < sizeof few_types / sizeof few_types[0]; ti++)
        for (int nt = 2; nt <= 5; nt += nt == 3 ? 2 : 1)
            check_matmul_equals_dot(cpu, few_types[ti], zl_type_traits_get(few_types[ti])->vec_dot, "vec_dot", w, wq,
                                    x, xq, ti < 4 ? NE0 : 512, NE1, nt, 40 + (unsigned)ti, 41 + (unsigned)nt);
    print_message("4x2 / 4x3 / 4x4 / 4x8 tiles: %d results checked directly under the %s set\n", checked,
                  zl_cpu_kernels_name());
    zl_cpu_destroy(cpu);
    free(w);
    free(x);
    free(wq);
    free(xq);
}

#ifdef ZL_HAVE_AVX2_KERNELS
void zl_attn_fma_row_f16_avx2(float *acc, const uint16_t *v, float w, int32_t n);
void zl_attn_v_lanes_f16_avx2(float *lanes, int n_lanes, int32_t hd, const char *const *blk, int32_t bs,
                              size_t row_stride, const float *w, int32_t p0, int32_t p1);
#endif

/* The attention's weighted sum of F16 V rows lane by lane in registers (zl_attn_v_lanes_f16_avx2) must give the
 * lanes that zl_attn_fma_row_f16_avx2 gives position by position into zeroed lanes, bit for bit: 8 to 64 lanes,
 * head sizes 8 to 136 (a partial last 64 columns), blocks of 16 and 7 positions, a first position past 0 (sliding
 * windows), contexts shorter than the lane count (lanes left +0), weights that are 0 and negative V values. */
static void test_attn_v_lanes_equal_rows(void **state)
{
    (void)state;
    int checked = 0;
#ifdef ZL_HAVE_AVX2_KERNELS
    if (zl_cpu_simd_width() >= 8) {
        enum { HDMAX = 136, PMAX = 150 };
        const int kv_dim = 2 * HDMAX + 8; /* the row holds other heads around ours */
        uint16_t *cache = malloc((size_t)PMAX * kv_dim * 2);
        float *vf = malloc((size_t)PMAX * kv_dim * sizeof(float)), *w = malloc(PMAX * sizeof(float));
        float *want = malloc(64 * HDMAX * sizeof(float)), *got = malloc(64 * HDMAX * sizeof(float));
        const char *blk[PMAX / 7 + 2];
        assert_true(cache && vf && w && want && got);
        fill_random(vf, PMAX * kv_dim, 77, 2.0f);
        zl_type_traits_get(ZL_F16)->from_float(vf, cache, (int64_t)PMAX * kv_dim);
        fill_random(w, PMAX, 78, 1.0f);
        for (int p = 0; p < PMAX; p += 9)
            w[p] = 0.0f;
        static const int lanes_of[] = { 8, 16, 32, 64 }, hds[] = { 8, 64, 72, 128, 136 }, bss[] = { 16, 7 };
        static const int32_t spans[][2] = { { 0, 1 }, { 0, 5 }, { 0, 63 }, { 3, 40 }, { 17, 150 }, { 0, 150 } };
        for (size_t li = 0; li < 4; li++)
            for (size_t hi = 0; hi < 5; hi++)
                for (size_t bi = 0; bi < 2; bi++)
                    for (size_t si = 0; si < sizeof spans / sizeof spans[0]; si++) {
                        const int L = lanes_of[li], hd = hds[hi], bs = bss[bi];
                        const int32_t p0 = spans[si][0], p1 = spans[si][1];
                        const size_t stride = (size_t)kv_dim * 2;
                        for (int k = 0; k * bs < PMAX; k++) /* head 1's columns: past the row's start */
                            blk[k] = (const char *)cache + (size_t)k * bs * stride + HDMAX * 2;
                        memset(want, 0, (size_t)L * hd * sizeof(float));
                        for (int32_t p = p0; p < p1; p++)
                            zl_attn_fma_row_f16_avx2(want + (size_t)(p % L) * hd,
                                                     (const uint16_t *)(const void *)(blk[p / bs] +
                                                                                      (size_t)(p % bs) * stride),
                                                     w[p], hd);
                        for (int i = 0; i < L * hd; i++)
                            got[i] = NAN;
                        zl_attn_v_lanes_f16_avx2(got, L, hd, blk, bs, stride, w, p0, p1);
                        if (memcmp(want, got, (size_t)L * hd * sizeof(float)) != 0)
                            fail_msg("V lanes L=%d hd=%d bs=%d [%d, %d) differ", L, hd, bs, p0, p1);
                        checked++;
                    }
        free(cache);
        free(vf);
        free(w);
        free(want);
        free(got);
    }
#endif
    print_message("attention V lanes: %d cases checked under the %s set\n", checked, zl_cpu_kernels_name());
}

/* F16 weights in mixed modes through zl_matmul_modes: tokens in ZL_MODE_MULTI must give vec_dot_gemm's bits, the
 * others vec_dot's (runs of gemm tokens of every length 1..7 between them). */
static void check_f16_mixed_modes(zl_cpu *cpu, float *w, uint16_t *wq, float *x, uint16_t *xq, int ne0, int ne1,
                                  int ntok)
{
    int8_t *modes = malloc((size_t)ntok);
    assert_non_null(modes);
    for (int k = 0, run = 1, left = 1; k < ntok; k++) { /* runs of 1, 2, .., 7 gemm tokens, one vec_dot token after each */
        modes[k] = left ? ZL_MODE_MULTI : ZL_MODE_ONE;
        if (left) left--;
        else left = run = run % 7 + 1;
    }
    check_matmul_modes_equals_dot(cpu, ZL_F16, zl_type_traits_get(ZL_F16)->vec_dot_gemm, "vec_dot_gemm", w, wq, x,
                                  xq, ne0, ne1, ntok, 91, 92, modes);
    free(modes);
}

/* F16 weights and 2+ tokens (tinyBLAS's order) take 4 rows x 1..6 tokens per call on the AVX-512 sets
 * (zl_f16_gemm_4xn_avx512 on F16 tokens, zl_f16_gemm_4xn_wide_avx512 on tokens widened by zl_f16_widen_avx512):
 * each (row, token) must be the set's vec_dot_gemm bits. Directly on lengths 16..656 (a zero row, a zero token, wide
 * magnitudes) and every token count, and through zl_matmul on rows of 640 (widened) and 4112 (not), 9 and 30 tokens
 * (the 24-token chunks, tails of every length, 2 threads), and with vec_dot-mode tokens between the gemm ones, where
 * every set with a tinyBLAS-order dot must give that dot's bits. */
static void test_f16_gemm44_equals_gemm_dot(void **state)
{
    (void)state;
    enum { NMAX = 4112, NE1 = 40, NTOK = 30 }; /* tinyBLAS's order needs rows in fours */
    float *w = malloc(NE1 * NMAX * sizeof(float)), *x = malloc(NTOK * NMAX * sizeof(float));
    uint16_t *wq = malloc(NE1 * NMAX * 2), *xq = malloc(NTOK * NMAX * 2);
    const zl_type_traits *t = zl_type_traits_get(ZL_F16);
    int checked = 0;
#ifdef ZL_HAVE_AVX512_KERNELS
    float *xw = malloc(6 * NMAX * sizeof(float));
    if (t->vec_dot_gemm == zl_f16_vec_dot_gemm_avx512)
        for (int n = 16; n <= 656; n += 80) {
            for (int r = 0; r < 4; r++) {
                fill_random(w + r * n, n, (unsigned)(n + r), r == 2 ? 0.0f : 0.01f + 7.0f * (float)r);
                t->from_float(w + r * n, wq + r * n, n);
            }
            for (int k = 0; k < 6; k++) {
                fill_random(x + k * n, n, (unsigned)(n + 100 * k), k == 1 ? 0.0f : 0.3f + 5.0f * (float)k);
                t->from_float_act(x + k * n, xq + k * n, n);
            }
            zl_f16_widen_avx512(xq, xw, 6 * n);
            for (int i = 0; i < 6 * n; i++)
                if (memcmp(&xw[i], &(float){ zl_fp16_to_fp32(xq[i]) }, sizeof(float)) != 0)
                    fail_msg("F16 widening n=%d element %d: %a, not %a", n, i, (double)xw[i],
                             (double)zl_fp16_to_fp32(xq[i]));
            for (int wide = 0; wide < 2; wide++)
                for (int nt = 1; nt <= 6; nt++) {
                    float out[6 * 5];
                    if (wide)
                        zl_f16_gemm_4xn_wide_avx512(n, nt, out, 5, wq, (size_t)n * 2, xw, (size_t)n * sizeof(float));
                    else
                        zl_f16_gemm_4xn_avx512(n, nt, out, 5, wq, (size_t)n * 2, xq, (size_t)n * 2);
                    for (int k = 0; k < nt; k++)
                        for (int r = 0; r < 4; r++) {
                            float want;
                            t->vec_dot_gemm(n, &want, wq + r * n, xq + k * n);
                            if (memcmp(&want, &out[k * 5 + r], sizeof want) != 0)
                                fail_msg("F16 4x%d%s n=%d row %d token %d: vec_dot_gemm %a, tile %a", nt,
                                         wide ? " wide" : "", n, r, k, (double)want, (double)out[k * 5 + r]);
                            checked++;
                        }
                }
        }
    free(xw);
#endif
    if (t->vec_dot_gemm) {
        zl_cpu *cpu = zl_cpu_create(2);
        assert_non_null(cpu);
        check_matmul_equals_dot(cpu, ZL_F16, t->vec_dot_gemm, "vec_dot_gemm", w, wq, x, xq, 640, NE1, 9, 29, 30);
        check_matmul_equals_dot(cpu, ZL_F16, t->vec_dot_gemm, "vec_dot_gemm", w, wq, x, xq, 640, NE1, NTOK, 31, 32);
        check_matmul_equals_dot(cpu, ZL_F16, t->vec_dot_gemm, "vec_dot_gemm", w, wq, x, xq, 4112, 8, NTOK, 33, 34);
        check_f16_mixed_modes(cpu, w, wq, x, xq, 640, NE1, NTOK);
        check_f16_mixed_modes(cpu, w, wq, x, xq, 4112, 8, NTOK);
        zl_cpu_destroy(cpu);
    } else { /* the scalar set keeps vec_dot for every batch */
        print_message("F16 4xN tiles: the %s set has no tinyBLAS-order dot\n", zl_cpu_kernels_name());
    }
    print_message("F16 4xN tiles: %d results checked directly under the %s set\n", checked, zl_cpu_kernels_name());
    free(w);
    free(x);
    free(wq);
    free(xq);
}

/* ---- AVX512-BF16 dots: ggml's VDPBF16PS order, against a scalar emulation ---- */

#ifdef ZL_HAVE_BF16_KERNELS
#include <cpuid.h>

/* AVX512-BF16 and VL (cpuid leaf 7 subleaf 1 eax bit 5; leaf 7 ebx bit 31) with opmask and ZMM state saved by the
 * OS: what the kernels need, checked here independently of dtype.c's choice. */
static bool cpu_has_avx512bf16(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0xe6u) != 0xe6u || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(b & (1u << 16)) || !(b & (1u << 31)) || a < 1) return false; /* AVX-512 F, VL; subleaf 1 exists */
    __get_cpuid_count(7, 1, &a, &b, &c, &d);
    return a & (1u << 5);
}

/* Subnormals read as (signed) zero: VDPBF16PS's DAZ on its inputs and FTZ on its results. */
static float bf16_flush(float f)
{
    return fpclassify(f) == FP_SUBNORMAL ? copysignf(0.0f, f) : f;
}

/* One lane of VDPBF16PS as the Intel SDM defines it: the odd pair first, then the even one, each a fused
 * multiply-add (the bf16 product is exact) rounded to nearest even, flushed as above. */
static float emu_dpbf16_lane(float acc, const uint16_t *a, const uint16_t *b)
{
    acc = bf16_flush(acc);
    acc = bf16_flush(fmaf(bf16_flush(zl_bf16_to_fp32(a[1])), bf16_flush(zl_bf16_to_fp32(b[1])), acc));
    return bf16_flush(fmaf(bf16_flush(zl_bf16_to_fp32(a[0])), bf16_flush(zl_bf16_to_fp32(b[0])), acc));
}

/* 32 bf16 pairs into 16 lanes. */
static void emu_dpbf16(float acc[16], const uint16_t *a, const uint16_t *b)
{
    for (int j = 0; j < 16; j++) acc[j] = emu_dpbf16_lane(acc[j], a + 2 * j, b + 2 * j);
}

/* _mm512_reduce_add_ps's tree in GCC's and clang's headers: upper 8 + lower 8, 4 + 4, then (0 + 2) + (1 + 3). */
static float emu_reduce16(const float v[16])
{
    float h[8], q[4];
    for (int k = 0; k < 8; k++) h[k] = v[k + 8] + v[k];
    for (int k = 0; k < 4; k++) q[k] = h[k + 4] + h[k];
    return (q[0] + q[2]) + (q[1] + q[3]);
}

/* ggml_vec_dot_bf16 built with __AVX512BF16__: accumulators c1 (elements i..i+31) and c2 (i+32..i+63) over steps
 * of 64, each reduced into a double, then the tail as float products added in double. */
static float emu_bf16_vec_dot(int n, const uint16_t *x, const uint16_t *y)
{
    float c1[16] = { 0 }, c2[16] = { 0 };
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        emu_dpbf16(c1, x + i, y + i);
        emu_dpbf16(c2, x + i + 32, y + i + 32);
    }
    double sum = 0.0;
    sum += (double)emu_reduce16(c1);
    sum += (double)emu_reduce16(c2);
    for (; i < n; i++) sum += (double)(zl_bf16_to_fp32(x[i]) * zl_bf16_to_fp32(y[i]));
    return (float)sum;
}

/* tinyBLAS<32, __m512, __m512bh> with AVX512-BF16: one accumulator over steps of 32, one reduction; n % 32 == 0. */
static float emu_bf16_gemm_dot(int n, const uint16_t *x, const uint16_t *y)
{
    float c[16] = { 0 };
    for (int i = 0; i < n; i += 32) emu_dpbf16(c, x + i, y + i);
    return emu_reduce16(c);
}

static uint64_t bf16_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A finite bf16. mode 0: exponents within 2^-20..2^20 of 1 (no subnormal anywhere); mode 1: one in 4 subnormal or
 * zero and the rest near 2^-63, so products and sums underflow (DAZ/FTZ matter); mode 2: a few large values of both
 * signs among small ones (cancellation). */
static uint16_t rand_bf16(uint64_t *s, int mode)
{
    const uint64_t r = bf16_rand(s);
    const uint16_t sign_mant = (uint16_t)(r & 0x807f);
    unsigned e;
    if (mode == 1)
        e = (r >> 20) % 4 == 0 ? 0 : 64 + (unsigned)((r >> 24) % 8);
    else if (mode == 2)
        e = (r >> 20) % 16 == 0 ? 127 + 12 : 127 - 8 + (unsigned)((r >> 24) % 8);
    else
        e = 107 + (unsigned)((r >> 20) % 41);
    return (uint16_t)(sign_mant | (e << 7));
}

/* zl_bf16_vec_dot_avx512bf16 and zl_bf16_vec_dot_gemm_avx512bf16 give the emulation's bits exactly: lengths below
 * 32, around 64, ragged tails and long rows, in three value regimes; the kernels are called directly (whatever
 * ZILI_CPU says), then the dispatched table and zl_matmul are checked to use them (1 token: vec_dot; 4 tokens:
 * tinyBLAS's order) when the active set is avx512vnni on such a CPU, and not otherwise. */
static void test_bf16_avx512bf16_dots(void **state)
{
    (void)state;
    if (!cpu_has_avx512bf16()) {
        print_message("skipped: this CPU has no AVX512-BF16 (the VDPBF16PS kernels are not tested here)\n");
        skip();
    }
    enum { NMAX = 4096 + 96 };
    uint16_t *x = malloc(NMAX * sizeof(uint16_t)), *y = malloc(NMAX * sizeof(uint16_t));
    static const int lens[] = { 1, 2, 7, 31, 32, 33, 63, 64, 65, 95, 96, 97, 127, 128, 160, 192, 200, 576, 1000,
                                1024, 4096, 4096 + 32, 4096 + 64 + 17, NMAX };
    uint64_t rng = 0xbf16bf16f00dull;
    long compared = 0, differ_fp32 = 0;
    for (int mode = 0; mode < 3; mode++) {
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            for (int round = 0; round < 3; round++) {
                const int n = lens[li];
                for (int i = 0; i < n; i++) {
                    x[i] = rand_bf16(&rng, mode);
                    y[i] = rand_bf16(&rng, mode);
                }
                float got, old;
                const float want = emu_bf16_vec_dot(n, x, y);
                zl_bf16_vec_dot_avx512bf16(n, &got, x, y);
                if (memcmp(&got, &want, sizeof got) != 0)
                    fail_msg("bf16 vec_dot_avx512bf16 mode %d n=%d: %a, emulation %a", mode, n, (double)got,
                             (double)want);
                zl_bf16_vec_dot_avx2(n, &old, x, y);
                differ_fp32 += memcmp(&old, &want, sizeof old) != 0;
                compared++;
                if (n % 32 == 0) {
                    const float want_gemm = emu_bf16_gemm_dot(n, x, y);
                    zl_bf16_vec_dot_gemm_avx512bf16(n, &got, x, y);
                    if (memcmp(&got, &want_gemm, sizeof got) != 0)
                        fail_msg("bf16 vec_dot_gemm_avx512bf16 mode %d n=%d: %a, emulation %a", mode, n,
                                 (double)got, (double)want_gemm);
                    compared++;
                }
            }
        }
    }
    assert_int_equal(compared, 3 * 3 * (24 + 11)); /* 24 lengths, 11 of them multiples of 32 */
    /* the inputs reach the roundings where VDPBF16PS and the float-conversion dot part (else this proves little) */
    assert_true(differ_fp32 > 10);

    /* The dispatch: the avx512vnni set on this CPU takes these kernels; capped sets (ZILI_CPU) keep the old ones. */
    const zl_type_traits *t = zl_type_traits_get(ZL_BF16);
    const bool active = strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0;
    if (!active) {
        assert_ptr_not_equal(t->vec_dot, zl_bf16_vec_dot_avx512bf16);
        assert_ptr_not_equal(t->vec_dot_gemm, zl_bf16_vec_dot_gemm_avx512bf16);
        print_message("note: kernel set %s, so the BF16 matmul dispatch is not checked here\n", zl_cpu_kernels_name());
    } else {
        assert_ptr_equal(t->vec_dot, zl_bf16_vec_dot_avx512bf16);
        assert_ptr_equal(t->vec_dot_gemm, zl_bf16_vec_dot_gemm_avx512bf16);
        assert_int_equal(t->gemm_k, 32);
        /* zl_matmul: 1 token is vec_dot, 4 tokens tinyBLAS's order (rows a multiple of 4, length of 32); activations
         * are rounded to bf16 as ggml's fp32 -> bf16 conversion does. */
        enum { NE0 = 96 + 64, NE1 = 12, NT = 4 };
        float *xf = malloc(NT * NE0 * sizeof(float)), out[NT * NE1];
        uint16_t *w = malloc(NE1 * NE0 * sizeof(uint16_t)), xb[NT * NE0];
        for (int i = 0; i < NE1 * NE0; i++) w[i] = rand_bf16(&rng, 0);
        fill_random(xf, NT * NE0, 4242, 3.0f);
        for (int i = 0; i < NT * NE0; i++) xb[i] = zl_fp32_to_bf16(xf[i]);
        zl_cpu *cpu = zl_cpu_create(2);
        assert_non_null(cpu);
        zl_tensor wt = { .name = "w", .type = ZL_BF16, .ne = { NE0, NE1, 1, 1 }, .nb1 = NE0 * 2, .data = w };
        for (int nt = 1; nt <= NT; nt += NT - 1) {
            assert_int_equal(zl_matmul(cpu, &wt, xf, nt, out), ZL_OK);
            for (int k = 0; k < nt; k++)
                for (int r = 0; r < NE1; r++) {
                    const float want = nt == 1 ? emu_bf16_vec_dot(NE0, w + r * NE0, xb + k * NE0)
                                               : emu_bf16_gemm_dot(NE0, w + r * NE0, xb + k * NE0);
                    if (memcmp(&want, &out[k * NE1 + r], sizeof want) != 0)
                        fail_msg("bf16 zl_matmul %d tokens, token %d row %d: %a, emulation %a", nt, k, r,
                                 (double)out[k * NE1 + r], (double)want);
                }
        }
        zl_cpu_destroy(cpu);
        free(xf);
        free(w);
    }
    free(x);
    free(y);
}
#else
static void test_bf16_avx512bf16_dots(void **state)
{
    (void)state;
    print_message("skipped: AVX512-BF16 kernels exist only on x86-64\n");
    skip();
}
#endif

/* ---- fp16 / bf16 ---- */

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* Every half -> float, against the definition (ldexp of the significand) and against numpy (a hash of numpy's
 * 65536 results). */
static void test_fp16_to_fp32_all(void **state)
{
    (void)state;
    uint32_t *bits = malloc(65536 * sizeof(uint32_t));
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = zl_fp16_to_fp32((uint16_t)h);
        bits[h] = zl_fp32_to_bits(f);
        const int e = (h >> 10) & 31, m = h & 1023;
        const double sign = (h & 0x8000) ? -1.0 : 1.0;
        if (e == 31) {
            if (m == 0) assert_true(isinf(f) && (f < 0) == (sign < 0));
            else assert_true(isnan(f));
            continue;
        }
        const double want = e == 0 ? sign * ldexp(m, -24) : sign * ldexp(1024 + m, e - 25);
        if ((double)f != want || !!signbit(f) != !!signbit(sign)) fail_msg("half %04x -> %.9g, want %.9g", h, f, want);
    }
    uint8_t *le = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++)
        for (int k = 0; k < 4; k++) le[4 * i + k] = (uint8_t)(bits[i] >> (8 * k));
    size_t sz;
    char *hex = read_fixture("f16_all.fnv", &sz);
    char got[32];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)fnv1a64(le, 65536 * 4));
    assert_true(sz >= 16);
    assert_memory_equal(got, hex, 16);
    free(hex);
    free(le);
    free(bits);
}

static void test_fp32_to_fp16_vs_numpy(void **state)
{
    (void)state;
    size_t nf, nh;
    float *vals = read_fixture("f16_cases.f32", &nf);
    uint16_t *want = read_fixture("f16_cases.f16", &nh);
    assert_int_equal(nf / 4, nh / 2);
    uint16_t *simd = malloc(nh);
    zl_type_traits_get(ZL_F16)->from_float_act(vals, simd, (int64_t)(nh / 2));
    for (size_t i = 0; i < nh / 2; i++) {
        const uint16_t got = zl_fp32_to_fp16(vals[i]);
        if (got != want[i]) fail_msg("float %a -> half %04x, numpy %04x", (double)vals[i], got, want[i]);
        if (simd[i] != want[i]) fail_msg("float %a -> half %04x (f16c), numpy %04x", (double)vals[i], simd[i], want[i]);
    }
    /* NaN stays NaN (quiet), keeping its sign */
    const uint16_t hn = zl_fp32_to_fp16(zl_fp32_from_bits(0xffc00001u));
    assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0 && (hn & 0x8000));
    free(simd);
    free(vals);
    free(want);
}

static void test_bf16_roundtrip(void **state)
{
    (void)state;
    /* exact bf16 values survive; ties go to even; NaN stays NaN */
    assert_int_equal(zl_fp32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(zl_fp32_to_bf16(zl_fp32_from_bits(0x3f808000u)), 0x3f80); /* tie, even below */
    assert_int_equal(zl_fp32_to_bf16(zl_fp32_from_bits(0x3f818000u)), 0x3f82); /* tie, even above */
    assert_int_equal(zl_fp32_to_bf16(zl_fp32_from_bits(0x3f808001u)), 0x3f81);
    assert_true(isnan(zl_bf16_to_fp32(zl_fp32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = zl_bf16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(zl_fp32_to_bf16(f), h);
    }
}


/* zl_matmul_shared gives each weight exactly what its own zl_matmul_modes gives, whether the weights share the
 * converted activations (Q4_0 and Q5_0 both take Q8_0 with the same tile rows), need other tile rows (Q8_0: the
 * same bytes, Q4_1: Q8_1), another type (Q4_K: Q8_K; F16: floats) or none: 1, 5 and 16 tokens, with and without
 * per-token modes, weights of different row counts, in two orders. */
static void test_matmul_shared_equals_separate(void **st)
{
    (void)st;
    enum { NE0 = 512, NW = 6, NTOK = 16 };
    static const uint32_t types[NW] = { ZL_Q4_0, ZL_Q5_0, ZL_Q8_0, ZL_Q4_1, ZL_Q4_K, ZL_F16 };
    static const int64_t rows[NW] = { 36, 20, 44, 24, 16, 28 };
    zl_tensor wt[NW];
    void *wq[NW];
    float *w = malloc(44 * NE0 * sizeof(float)), *x = malloc(NTOK * NE0 * sizeof(float));
    float *ya[NW], *yb[NW];
    assert_non_null(w);
    assert_non_null(x);
    for (int i = 0; i < NW; i++) {
        const zl_type_traits *tr = zl_type_traits_get(types[i]);
        size_t row;
        assert_true(zl_row_size(types[i], NE0, &row));
        wq[i] = malloc(row * (size_t)rows[i]);
        ya[i] = malloc(NTOK * rows[i] * sizeof(float));
        yb[i] = malloc(NTOK * rows[i] * sizeof(float));
        assert_non_null(wq[i]);
        fill_random(w, (int)(rows[i] * NE0), 300 + (unsigned)i, 0.5f);
        for (int64_t r = 0; r < rows[i]; r++)
            tr->from_float(w + r * NE0, (char *)wq[i] + (size_t)r * row, NE0);
        memset(&wt[i], 0, sizeof wt[i]);
        wt[i].type = types[i];
        wt[i].ne[0] = NE0;
        wt[i].ne[1] = rows[i];
        wt[i].nb1 = row;
        wt[i].data = wq[i];
    }
    fill_random(x, NTOK * NE0, 77, 2.0f);
    int8_t modes[NTOK];
    for (int k = 0; k < NTOK; k++)
        modes[k] = (int8_t)(k % 5 == 3 ? ZL_MODE_ONE : ZL_MODE_MULTI8);
    zl_cpu *cpu = zl_cpu_create(2);
    assert_non_null(cpu);
    static const int order[2][NW] = { { 0, 1, 2, 3, 4, 5 }, { 5, 1, 3, 0, 2, 4 } };
    int checked = 0;
    for (int o = 0; o < 2; o++)
        for (int nt = 1; nt <= NTOK; nt = nt == 1 ? 5 : nt + 11)
            for (int use_modes = 0; use_modes < 2; use_modes++) {
                const zl_tensor *ws[NW];
                float *ys[NW];
                for (int i = 0; i < NW; i++) {
                    const int j = order[o][i];
                    ws[i] = &wt[j];
                    ys[i] = yb[j];
                    assert_int_equal(zl_matmul_modes(cpu, &wt[j], x, nt, ya[j], use_modes ? modes : NULL), ZL_OK);
                }
                assert_int_equal(zl_matmul_shared(cpu, NW, ws, x, nt, ys, use_modes ? modes : NULL), ZL_OK);
                for (int j = 0; j < NW; j++) {
                    if (memcmp(ya[j], yb[j], (size_t)nt * (size_t)rows[j] * sizeof(float)) != 0)
                        fail_msg("%s, %d tokens, modes %d, order %d: shared differs from separate",
                                 zl_type_traits_get(types[j])->name, nt, use_modes, o);
                    checked++;
                }
            }
    assert_int_equal(checked, 2 * 3 * 2 * NW);
    zl_cpu_destroy(cpu);
    for (int i = 0; i < NW; i++) {
        free(wq[i]);
        free(ya[i]);
        free(yb[i]);
    }
    free(w);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_match_gguf),
        cmocka_unit_test(test_row_size),
        cmocka_unit_test(test_from_float_matches_gguf_py),
        cmocka_unit_test(test_to_float_matches_gguf_py),
        cmocka_unit_test(test_q8_act_ties),
        cmocka_unit_test(test_q8_act_simd_equals_scalar),
        cmocka_unit_test(test_vec_dot_vs_double),
        cmocka_unit_test(test_vec_dot_simd_vs_scalar),
        cmocka_unit_test(test_vec_dot4_equals_vec_dot),
        cmocka_unit_test(test_rows4_equals_vec_dot),
        cmocka_unit_test(test_tile44_equals_vec_dot),
        cmocka_unit_test(test_attn_v_lanes_equal_rows),
        cmocka_unit_test(test_matmul_shared_equals_separate),
        cmocka_unit_test(test_f16_gemm44_equals_gemm_dot),
        cmocka_unit_test(test_fp16_to_fp32_all),
        cmocka_unit_test(test_fp32_to_fp16_vs_numpy),
        cmocka_unit_test(test_bf16_roundtrip),
        cmocka_unit_test(test_vnni_dots_equal_avx2),
        cmocka_unit_test(test_bf16_avx512bf16_dots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
