/*
 * test_kquant.c - the K-quant types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), their activation type Q8_K, and the legacy
 * types on llama.cpp's own quantizer output, against independent references:
 *   - from_float against llama.cpp's quantizer bytes (llama_model_quantize on a model whose rows are
 *     tests/data/quant/kinput.f32; made by tests/data/gen_quant_fixtures.py),
 *   - to_float against gguf-py's dequantize, on llama.cpp's bytes and on random blocks,
 *   - Q8_K against values worked out by hand,
 *   - activation quantizers and dots against ggml's own (llama-cpp-python's libggml-cpu, called by the fixture
 *     generator): bytes equal, and with the AVX2 kernels dot results equal bit for bit,
 *   - vec_dot against a double-precision dot of dequantized values, and AVX2 against scalar on odd block counts,
 *   - matmul's refusal of rows that are not whole 256-value blocks.
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

#define NKROW 15 /* rows of 256 in kinput.f32 */
#define NKVALS (NKROW * ZL_QK_K)
#define NRAND 7 /* blocks in <type>.rand.q */

/* ---- fixtures (tests/data/quant; ZILI_TEST_DATA overrides the data directory) ---- */

static void *read_fixture(const char *name, size_t *size)
{
    char path[1024];
    const char *dir = getenv("ZILI_TEST_DATA");
    if (dir) {
        snprintf(path, sizeof path, "%s/quant/%s", dir, name);
    } else {
        const char *here = __FILE__; /* .../tests/unit/test_kquant.c */
        const char *cut = strstr(here, "unit/test_kquant.c");
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

typedef struct ktype {
    const char *name; /* fixture prefix */
    uint32_t type;
} ktype;

static const ktype k_ktypes[] = {
    { "q2_K", ZL_Q2_K }, { "q3_K", ZL_Q3_K }, { "q4_K", ZL_Q4_K }, { "q5_K", ZL_Q5_K }, { "q6_K", ZL_Q6_K },
};
#define N_KTYPES (sizeof k_ktypes / sizeof k_ktypes[0])

/* every type the llama.cpp fixtures cover */
static const ktype k_llama_types[] = {
    { "q2_K", ZL_Q2_K }, { "q3_K", ZL_Q3_K }, { "q4_K", ZL_Q4_K }, { "q5_K", ZL_Q5_K }, { "q6_K", ZL_Q6_K },
    { "q5_0", ZL_Q5_0 }, { "q5_1", ZL_Q5_1 }, { "q4_0", ZL_Q4_0 }, { "q4_1", ZL_Q4_1 }, { "q8_0", ZL_Q8_0 },
};

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

/* Random bytes for nb blocks of type t, with finite fp16 scales (d, and dmin where the type has one) drawn
 * from [-2, 2]: every other bit pattern of a K-quant block is a valid block. */
static void random_blocks(uint32_t t, uint8_t *q, int nb, unsigned seed)
{
    const zl_type_traits *tr = zl_type_traits_ref(t);
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 7;
    for (size_t i = 0; i < (size_t)nb * tr->type_size; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        q[i] = (uint8_t)(s >> 32);
    }
    size_t off = 0, nhalf = 2;
    switch (t) {
    case ZL_Q2_K: off = offsetof(zl_block_q2_K, d); break;
    case ZL_Q3_K: off = offsetof(zl_block_q3_K, d), nhalf = 1; break;
    case ZL_Q6_K: off = offsetof(zl_block_q6_K, d), nhalf = 1; break;
    default: off = 0; break; /* Q4_K, Q5_K: d, dmin first */
    }
    for (int b = 0; b < nb; b++)
        for (size_t k = 0; k < nhalf; k++) {
            float v;
            fill_random(&v, 1, seed * 31u + (unsigned)(b * 2 + (int)k), 2.0f);
            const uint16_t h = zl_fp32_to_fp16(v);
            memcpy(q + (size_t)b * tr->type_size + off + 2 * k, &h, 2);
        }
}

/* ---- conversions against llama.cpp and gguf-py ---- */

/* ggml's reference quantizers, byte for byte: the rows of kinput.f32 (edge cases first) quantized by zili equal
 * llama.cpp's llama_model_quantize output. */
static void test_from_float_matches_llamacpp(void **state)
{
    (void)state;
    float *x = read_floats("kinput.f32", NKVALS);
    for (size_t i = 0; i < sizeof k_llama_types / sizeof k_llama_types[0]; i++) {
        const ktype *kt = &k_llama_types[i];
        char name[64];
        snprintf(name, sizeof name, "%s.llama.q", kt->name);
        size_t qsize, rs;
        uint8_t *want = read_fixture(name, &qsize);
        assert_true(zl_row_size(kt->type, NKVALS, &rs));
        assert_int_equal(qsize, rs);
        uint8_t *got = malloc(rs);
        const zl_type_traits *tr = zl_type_traits_get(kt->type);
        const size_t row_bytes = rs / NKROW;
        memset(got, 0xAA, rs);
        tr->from_float(x, got, NKVALS);
        for (size_t b = 0; b < rs; b++)
            if (got[b] != want[b])
                fail_msg("%s from_float: row %zu byte %zu is %02x, llama.cpp has %02x", kt->name, b / row_bytes,
                         b % row_bytes, got[b], want[b]);
        free(got);
        free(want);
    }
    free(x);
}

static void check_to_float(const char *type_name, uint32_t t, const char *qfile, const char *deqfile, size_t nvals)
{
    size_t qsize, rs;
    uint8_t *q = read_fixture(qfile, &qsize);
    assert_true(zl_row_size(t, (int64_t)nvals, &rs));
    assert_int_equal(qsize, rs);
    float *want = read_floats(deqfile, nvals);
    float *y = malloc(nvals * sizeof(float));
    zl_type_traits_get(t)->to_float(q, y, (int64_t)nvals);
    for (size_t j = 0; j < nvals; j++)
        if (zl_fp32_to_bits(y[j]) != zl_fp32_to_bits(want[j]))
            fail_msg("%s to_float (%s): value %zu is %.9g, gguf-py has %.9g", type_name, qfile, j, y[j], want[j]);
    free(y);
    free(want);
    free(q);
}

/* Bit-identical to gguf-py's dequantize, on llama.cpp's blocks and on random ones. */
static void test_to_float_matches_gguf_py(void **state)
{
    (void)state;
    char qf[64], df[64];
    for (size_t i = 0; i < sizeof k_llama_types / sizeof k_llama_types[0]; i++) {
        snprintf(qf, sizeof qf, "%s.llama.q", k_llama_types[i].name);
        snprintf(df, sizeof df, "%s.llama.deq.f32", k_llama_types[i].name);
        check_to_float(k_llama_types[i].name, k_llama_types[i].type, qf, df, NKVALS);
    }
    for (size_t i = 0; i < N_KTYPES; i++) {
        snprintf(qf, sizeof qf, "%s.rand.q", k_ktypes[i].name);
        snprintf(df, sizeof df, "%s.rand.deq.f32", k_ktypes[i].name);
        check_to_float(k_ktypes[i].name, k_ktypes[i].type, qf, df, NRAND * ZL_QK_K);
    }
}

/* ---- against ggml's kernels ---- */

/* weight type -> its activation type, as in the fixtures */
static uint32_t act_type(uint32_t t)
{
    return zl_type_traits_ref(t)->vec_dot_type;
}

/* The activation quantizers give ggml's x86 bytes; the dots of the first k rows (k = 1..15) of llama.cpp's blocks
 * with those activations equal ggml_vec_dot_* exactly with the AVX2 kernels (our x86 target), and to float
 * rounding with the scalar ones. */
static void test_matches_ggml_kernels(void **state)
{
    (void)state;
    float *x = read_floats("xact.f32", NKVALS);
    static const struct { const char *name; uint32_t type; } acts[] = {
        { "q8_0", ZL_Q8_0 }, { "q8_1", ZL_Q8_1 }, { "q8_K", ZL_Q8_K } };
    uint8_t *act[3];
    for (int a = 0; a < 3; a++) {
        char name[64];
        size_t size, rs;
        snprintf(name, sizeof name, "%s.ggml.q", acts[a].name);
        act[a] = read_fixture(name, &size);
        assert_true(zl_row_size(acts[a].type, NKVALS, &rs));
        assert_int_equal(size, rs);
        uint8_t *got = malloc(rs);
        for (int k = 0; k < 2; k++) {
            const zl_type_traits *tr = k ? zl_type_traits_get(acts[a].type) : zl_type_traits_ref(acts[a].type);
            tr->from_float_act(x, got, NKVALS);
            for (size_t i = 0; i < rs; i++)
                if (got[i] != act[a][i])
                    fail_msg("%s from_float_act (table %d): byte %zu is %02x, ggml has %02x", acts[a].name, k, i,
                             got[i], act[a][i]);
        }
        free(got);
    }
    /* K-quant dots are the AVX2 ones in the AVX-512 set too; the fixtures are ggml's x86 results, so the NEON and
     * scalar sets agree to float rounding only */
    const bool exact = strncmp(zl_cpu_kernels_name(), "avx", 3) == 0;
    for (size_t i = 0; i < sizeof k_llama_types / sizeof k_llama_types[0]; i++) {
        const ktype *kt = &k_llama_types[i];
        char name[64];
        size_t size;
        snprintf(name, sizeof name, "%s.llama.q", kt->name);
        uint8_t *w = read_fixture(name, &size);
        snprintf(name, sizeof name, "%s.ggml_dot.f32", kt->name);
        float *want = read_floats(name, NKROW);
        const uint32_t at = act_type(kt->type);
        const uint8_t *xq = act[at == ZL_Q8_0 ? 0 : at == ZL_Q8_1 ? 1 : 2];
        for (int k = 1; k <= NKROW; k++) {
            float got;
            zl_type_traits_get(kt->type)->vec_dot(k * ZL_QK_K, &got, w, xq);
            const bool ok = exact ? zl_fp32_to_bits(got) == zl_fp32_to_bits(want[k - 1])
                                  : fabsf(got - want[k - 1]) <= 1e-5f * (fabsf(want[k - 1]) + 1.0f);
            if (!ok)
                fail_msg("%s vec_dot over %d rows (%s kernels): %.9g, ggml %.9g", kt->name, k, zl_cpu_kernels_name(),
                         got, want[k - 1]);
        }
        free(want);
        free(w);
    }
    for (int a = 0; a < 3; a++) free(act[a]);
    free(x);
}

/* ---- Q8_K ---- */

/* Worked by hand: iscale = -127 / (the first value of largest magnitude, signed), q = min(127,
 * round-half-even(iscale x)), d = 1 / iscale, bsums = sums of 16. */
static void test_q8_K_by_hand(void **state)
{
    (void)state;
    float x[2 * ZL_QK_K] = { 0 };
    /* block 0: largest magnitude -127, so iscale = 1 and q = round-half-even(x) */
    x[0] = -127.0f, x[1] = 127.0f, x[2] = 2.5f, x[3] = -3.5f, x[4] = 0.5f, x[17] = 1.5f, x[255] = -0.5f;
    /* block 1: largest magnitude +254, so iscale = -0.5 (d = -2): signs flip */
    float *y1 = x + ZL_QK_K;
    y1[0] = 254.0f, y1[1] = -254.0f, y1[2] = 3.0f, y1[3] = 1.0f, y1[20] = -5.0f;
    zl_block_q8_K q[3];
    const zl_type_traits *tr = zl_type_traits_get(ZL_Q8_K);
    assert_false(tr->supported); /* activation type only */
    assert_int_equal(tr->block_size, 256);
    tr->from_float(x, q, 2 * ZL_QK_K);

    assert_true(q[0].d == 1.0f);
    const int8_t w0[5] = { -127, 127, 2, -4, 0 };
    assert_memory_equal(q[0].qs, w0, 5);
    assert_int_equal(q[0].qs[17], 2);
    assert_int_equal(q[0].qs[255], 0);
    assert_int_equal(q[0].bsums[0], -127 + 127 + 2 - 4);
    assert_int_equal(q[0].bsums[1], 2);
    assert_int_equal(q[0].bsums[15], 0);

    assert_true(q[1].d == -2.0f);
    const int8_t w1[4] = { -127, 127, -2, 0 }; /* -1.5 -> -2, -0.5 -> 0 (ties to even) */
    assert_memory_equal(q[1].qs, w1, 4);
    assert_int_equal(q[1].qs[20], 2); /* 2.5 -> 2 */
    assert_int_equal(q[1].bsums[0], -2);
    assert_int_equal(q[1].bsums[1], 2);

    /* an all-zero block is all zero, bsums included */
    float z[ZL_QK_K] = { 0 };
    memset(&q[2], 0x55, sizeof q[2]);
    tr->from_float(z, &q[2], ZL_QK_K);
    const zl_block_q8_K zero = { 0 };
    assert_memory_equal(&q[2], &zero, sizeof zero);

    float back[ZL_QK_K];
    tr->to_float(&q[1], back, ZL_QK_K);
    assert_true(back[0] == 254.0f && back[1] == -254.0f && back[2] == 4.0f && back[20] == -4.0f);
}

/* The kernel set's Q8_K activation quantizer (vectorized on x86) must write the reference's bytes, which are what
 * ggml's x86 build writes: random blocks of many magnitudes, the hand-made blocks above, ties of magnitude with
 * opposite signs (the first one sets the sign of d), one-value blocks, zeros and negative zeros, and blocks with a
 * NaN or an infinity. */
static void test_q8_K_act_equals_ref(void **state)
{
    (void)state;
    enum { NB = 40 };
    float *x = malloc(NB * ZL_QK_K * sizeof *x);
    zl_block_q8_K *got = malloc(NB * sizeof *got), *want = malloc(NB * sizeof *want);
    assert_non_null(x);
    assert_non_null(got);
    assert_non_null(want);
    uint32_t st = 12345;
    for (int i = 0; i < NB * ZL_QK_K; i++) {
        st = st * 1664525u + 1013904223u;
        const float u = (float)(st >> 8) / 16777216.0f - 0.5f;
        x[i] = u * powf(10.0f, (float)(i / ZL_QK_K % 9) - 4.0f);
    }
    float *b = x + 20 * ZL_QK_K;
    b[7] = 3.0f, b[100] = -3.0f; /* tie: first is positive */
    b += ZL_QK_K;
    memset(b, 0, ZL_QK_K * sizeof *b), b[33] = -3.0f, b[200] = 3.0f; /* tie: first is negative */
    b += ZL_QK_K;
    memset(b, 0, ZL_QK_K * sizeof *b), b[255] = 1e-30f; /* one tiny value */
    b += ZL_QK_K;
    for (int j = 0; j < ZL_QK_K; j++) b[j] = -0.0f;
    b += ZL_QK_K;
    b[5] = NAN;
    b += ZL_QK_K;
    b[9] = -INFINITY;
    b += ZL_QK_K;
    for (int j = 0; j < ZL_QK_K; j++) b[j] = (float)(j % 17) - 8.0f + 0.5f; /* halves: ties to even */
    b += ZL_QK_K;
    b[0] = -127.0f, b[1] = 127.0f, b[2] = 2.5f, b[3] = -3.5f, b[4] = 0.5f, b[17] = 1.5f, b[255] = -0.5f;
    const zl_type_traits *tr = zl_type_traits_get(ZL_Q8_K);
    memset(got, 0x55, NB * sizeof *got);
    memset(want, 0xaa, NB * sizeof *want);
    tr->from_float_act(x, got, NB * ZL_QK_K);
    zl_q8_K_from_float_ref(x, want, NB * ZL_QK_K);
    for (int k = 0; k < NB; k++)
        if (memcmp(&got[k], &want[k], sizeof got[k]) != 0)
            fail_msg("Q8_K block %d: the %s set's quantizer differs from the reference (d %a vs %a)", k,
                     zl_cpu_kernels_name(), (double)got[k].d, (double)want[k].d);
    print_message("Q8_K activations: %d blocks equal to the reference under the %s set\n", NB,
                  zl_cpu_kernels_name());
    free(x);
    free(got);
    free(want);
}

/* ---- dot products ---- */

/* vec_dot(weights, activations as Q8_K) against a double dot of the dequantized vectors: the kernels' integer
 * sums are exact and the float steps are a few roundings, so they agree to ~1e-6 of the sum of magnitudes. */
static void test_vec_dot_vs_double(void **state)
{
    (void)state;
    float *w = read_floats("kinput.f32", NKVALS);
    float *x = malloc(NKVALS * sizeof(float)), *wd = malloc(NKVALS * sizeof(float)),
          *xd = malloc(NKVALS * sizeof(float));
    uint8_t *wq = malloc(NKVALS), *xq = malloc(NKVALS * 2);
    static const int nbs[] = { 1, 3, 8, NKROW };
    for (size_t ti = 0; ti < N_KTYPES; ti++) {
        for (int k = 0; k < 2; k++) {
            const zl_type_traits *wt = k ? zl_type_traits_get(k_ktypes[ti].type) : zl_type_traits_ref(k_ktypes[ti].type);
            const zl_type_traits *vt = k ? zl_type_traits_get(ZL_Q8_K) : zl_type_traits_ref(ZL_Q8_K);
            assert_int_equal(wt->vec_dot_type, ZL_Q8_K);
            for (int pass = 0; pass < 2; pass++) {
                for (size_t li = 0; li < sizeof nbs / sizeof nbs[0]; li++) {
                    const int n = nbs[li] * ZL_QK_K;
                    if (pass == 0)
                        wt->from_float(w, wq, n); /* fitted blocks, edge cases first */
                    else
                        random_blocks(k_ktypes[ti].type, wq, nbs[li], (unsigned)(li + 10 * ti));
                    fill_random(x, n, (unsigned)(77 + li), 2.0f);
                    vt->from_float_act(x, xq, n);
                    wt->to_float(wq, wd, n);
                    vt->to_float(xq, xd, n);
                    double ref = 0.0, mag = 0.0;
                    for (int j = 0; j < n; j++) {
                        ref += (double)wd[j] * (double)xd[j];
                        mag += fabs((double)wd[j] * (double)xd[j]);
                    }
                    float got;
                    wt->vec_dot(n, &got, wq, xq);
                    if (fabs(got - ref) > 2e-6 * mag + 1e-30)
                        fail_msg("%s vec_dot (table %d, %s blocks) n=%d: %.9g, double reference %.9g (mag %.3g)",
                                 wt->name, k, pass ? "random" : "fitted", n, got, ref, mag);
                }
            }
        }
    }
    free(w);
    free(x);
    free(wd);
    free(xd);
    free(wq);
    free(xq);
}

/* AVX2 dots equal the scalar ones up to float summation order, on odd block counts, for fitted and random
 * blocks. */
static void test_vec_dot_simd_vs_scalar(void **state)
{
    (void)state;
    if (zl_cpu_simd_width() == 1) skip(); /* scalar kernels only: nothing to compare */
    enum { NB = 17, N = NB * ZL_QK_K };
    float *w = malloc(N * sizeof(float)), *x = malloc(N * sizeof(float)), *wd = malloc(N * sizeof(float)),
          *xd = malloc(N * sizeof(float));
    uint8_t *wq = malloc(N), *xq = malloc(N * 2);
    for (size_t ti = 0; ti < N_KTYPES; ti++) {
        const zl_type_traits *ref = zl_type_traits_ref(k_ktypes[ti].type);
        const zl_type_traits *fast = zl_type_traits_get(k_ktypes[ti].type);
        assert_ptr_not_equal(ref->vec_dot, fast->vec_dot);
        for (int nb = 1; nb <= NB; nb += 2) {
            const int n = nb * ZL_QK_K;
            if (nb % 4 == 1) {
                random_blocks(k_ktypes[ti].type, wq, nb, (unsigned)(nb + 100 * ti));
            } else {
                fill_random(w, n, (unsigned)nb, nb % 3 == 0 ? 0.01f : 1.0f);
                ref->from_float(w, wq, n);
            }
            fill_random(x, n, (unsigned)nb + 1000, 3.0f);
            zl_type_traits_ref(ZL_Q8_K)->from_float_act(x, xq, n);
            ref->to_float(wq, wd, n);
            zl_type_traits_ref(ZL_Q8_K)->to_float(xq, xd, n);
            float a, b;
            ref->vec_dot(n, &a, wq, xq);
            fast->vec_dot(n, &b, wq, xq);
            double mag = 0;
            for (int j = 0; j < n; j++) mag += fabs((double)wd[j] * xd[j]);
            if (fabs((double)a - b) > 1e-6 * mag)
                fail_msg("%s nb=%d: scalar %.9g, %s %.9g", ref->name, nb, a, zl_cpu_kernels_name(), b);
        }
    }
    free(w);
    free(x);
    free(wd);
    free(xd);
    free(wq);
    free(xq);
}

/* ---- matmul over 256-value blocks ---- */

/* A Q4_K / Q6_K matmul equals per-row vec_dot; rows that are not whole blocks of 256 are refused. */
static void test_matmul_k_rows(void **state)
{
    (void)state;
    enum { NE0 = 512, NE1 = 5, NTOK = 3 };
    zl_cpu *cpu = zl_cpu_create(2);
    assert_non_null(cpu);
    float *wf = malloc(NE0 * NE1 * sizeof(float)), *x = malloc(NE0 * NTOK * sizeof(float));
    float y[NE1 * NTOK];
    uint8_t *wq = malloc(NE1 * (NE0 / 256) * 210), xq[2 * 292];
    fill_random(wf, NE0 * NE1, 5, 1.0f);
    fill_random(x, NE0 * NTOK, 6, 1.0f);
    static const uint32_t types[] = { ZL_Q4_K, ZL_Q6_K, ZL_Q2_K };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const zl_type_traits *tr = zl_type_traits_get(types[ti]);
        size_t row;
        assert_true(zl_row_size(types[ti], NE0, &row));
        tr->from_float(wf, wq, NE0 * NE1);
        zl_tensor w = { .name = "w", .type = types[ti], .ne = { NE0, NE1, 1, 1 }, .nb1 = row, .data = wq };
        assert_int_equal(zl_matmul(cpu, &w, x, NTOK, y), ZL_OK);
        for (int t = 0; t < NTOK; t++) {
            zl_type_traits_get(ZL_Q8_K)->from_float_act(x + t * NE0, xq, NE0);
            for (int r = 0; r < NE1; r++) {
                float want;
                tr->vec_dot(NE0, &want, wq + (size_t)r * row, xq);
                assert_true(y[t * NE1 + r] == want);
            }
        }
        /* 320 and 384 values per row: multiples of 32 but not of 256 */
        size_t n;
        assert_false(zl_row_size(types[ti], 320, &n));
        w.ne[0] = 384;
        assert_int_equal(zl_matmul(cpu, &w, x, 1, y), ZL_EINVAL);
    }
    free(wf);
    free(x);
    free(wq);
    zl_cpu_destroy(cpu);
}

/* ---- llama.cpp's tiled K-quant order (batches of 8+ tokens) ---- */

/* The integer codes of K-quant block `blk` (type t) in element order (Q6_K: q - 32), and each 32-value (Q4_K,
 * Q5_K) or 16-value (Q6_K) sub-block's scale and minimum, decoded from the layouts in quant.h. */
static int k_decode(uint32_t t, const uint8_t *blk, int code[ZL_QK_K], int sc[16], int mn[16])
{
    if (t == ZL_Q2_K || t == ZL_Q3_K) { /* 2-bit codes: element 128 h + 32 k + l in bits 2k of qs[32 h + l] */
        const uint8_t *qs = t == ZL_Q2_K ? ((const zl_block_q2_K *)(const void *)blk)->qs
                                         : ((const zl_block_q3_K *)(const void *)blk)->qs;
        for (int e = 0; e < ZL_QK_K; e++) code[e] = qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32)) & 3;
        if (t == ZL_Q2_K) {
            const zl_block_q2_K *x = (const void *)blk;
            for (int s = 0; s < 16; s++) sc[s] = x->scales[s] & 15, mn[s] = x->scales[s] >> 4;
            return 16;
        }
        const zl_block_q3_K *x = (const void *)blk; /* minus 4 where the element's hmask bit is clear */
        for (int e = 0; e < ZL_QK_K; e++) code[e] -= (x->hmask[e % 32] >> (e / 32) & 1) ? 0 : 4;
        for (int s = 0; s < 16; s++) { /* 6-bit scales - 32: low 4 bits in nibbles, high 2 bits in bytes 8..11 */
            const int lo = (s < 8 ? x->scales[s] : x->scales[s - 8] >> 4) & 15;
            sc[s] = (lo | (x->scales[8 + s % 4] >> (2 * (s / 4)) & 3) << 4) - 32;
            mn[s] = 0;
        }
        return 16;
    }
    if (t == ZL_Q6_K) {
        const zl_block_q6_K *x = (const void *)blk;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 32; l++) {
                    const int lo = x->ql[64 * h + l + 32 * (k & 1)] >> (k < 2 ? 0 : 4) & 15;
                    const int hi = x->qh[32 * h + l] >> (2 * k) & 3;
                    code[128 * h + 32 * k + l] = (lo | hi << 4) - 32;
                }
        for (int s = 0; s < 16; s++) sc[s] = x->scales[s], mn[s] = 0;
        return 16;
    }
    const uint8_t *scales = t == ZL_Q4_K ? ((const zl_block_q4_K *)(const void *)blk)->scales
                                         : ((const zl_block_q5_K *)(const void *)blk)->scales;
    const uint8_t *qs = t == ZL_Q4_K ? ((const zl_block_q4_K *)(const void *)blk)->qs
                                     : ((const zl_block_q5_K *)(const void *)blk)->qs;
    for (int h = 0; h < 4; h++)
        for (int l = 0; l < 32; l++) {
            code[64 * h + l] = qs[32 * h + l] & 15;
            code[64 * h + 32 + l] = qs[32 * h + l] >> 4;
        }
    if (t == ZL_Q5_K) {
        const zl_block_q5_K *x = (const void *)blk;
        for (int s = 0; s < 8; s++)
            for (int l = 0; l < 32; l++) code[32 * s + l] |= (x->qh[l] >> s & 1) << 4;
    }
    for (int j = 0; j < 8; j++) { /* 6-bit scale and minimum pairs packed in 12 bytes */
        if (j < 4) {
            sc[j] = scales[j] & 63;
            mn[j] = scales[j + 4] & 63;
        } else {
            sc[j] = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4;
            mn[j] = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4;
        }
    }
    return 8;
}

/* The tiled order, from its definition: per block exact sums s1 = sum sc * (code . q8), s2 = sum min * sum q8,
 * r = d * s1 (Q4_K / Q5_K: fma(-dmin, s2, d * s1)), acc = fma(r, d8, acc). */
static float tiled_want(uint32_t t, const uint8_t *w, const zl_block_q8_K *y, int nb)
{
    const size_t bs = zl_type_traits_ref(t)->type_size;
    float acc = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = w + (size_t)b * bs;
        int code[ZL_QK_K], sc[16], mn[16];
        const int nsub = k_decode(t, blk, code, sc, mn), len = ZL_QK_K / nsub;
        int64_t s1 = 0, s2 = 0;
        for (int s = 0; s < nsub; s++) {
            int64_t dot = 0, sum = 0;
            for (int l = 0; l < len; l++) {
                dot += (int64_t)code[len * s + l] * y[b].qs[len * s + l];
                sum += y[b].qs[len * s + l];
            }
            s1 += sc[s] * dot;
            s2 += mn[s] * sum;
        }
        uint16_t hd, hm = 0;
        const bool mins = t != ZL_Q3_K && t != ZL_Q6_K;
        const size_t d_off = t == ZL_Q2_K   ? offsetof(zl_block_q2_K, d)
                             : t == ZL_Q3_K ? offsetof(zl_block_q3_K, d)
                             : t == ZL_Q6_K ? offsetof(zl_block_q6_K, d)
                                            : 0;
        memcpy(&hd, blk + d_off, 2);
        if (mins)
            memcpy(&hm, blk + d_off + 2, 2);
        const float d = zl_fp16_to_fp32(hd) * (float)s1;
        const float r = mins ? fmaf(-zl_fp16_to_fp32(hm), (float)s2, d) : d;
        acc = fmaf(r, y[b].d, acc);
    }
    return acc;
}

/* One-token tiled dots fns[i] (weight type types[i]) on 1..9 blocks of random codes and activations (the block
 * count 4 with tiny activations), each equal to the tiled order from its definition, bit for bit. */
static void check_tiled_dots(const char *set, const zl_vec_dot_fn *fns, const uint32_t *types, size_t n_types,
                             unsigned seed, uint8_t *wq, float *x, zl_block_q8_K *xq)
{
    for (size_t ti = 0; ti < n_types; ti++)
        for (int nb = 1; nb <= 9; nb++) {
            random_blocks(types[ti], wq, nb, (unsigned)nb + seed * (unsigned)ti);
            fill_random(x, nb * ZL_QK_K, (unsigned)nb * 5 + (unsigned)ti + seed, nb == 4 ? 1e-3f : 40.0f);
            zl_type_traits_get(ZL_Q8_K)->from_float_act(x, xq, nb * ZL_QK_K);
            float got;
            fns[ti](nb * ZL_QK_K, &got, wq, xq);
            const float want = tiled_want(types[ti], wq, xq, nb);
            if (zl_fp32_to_bits(got) != zl_fp32_to_bits(want))
                fail_msg("%s tiled dot %s nb=%d: %a, want %a", zl_type_name(types[ti]), set, nb, (double)got,
                         (double)want);
        }
}

/* A matmul of 9 tokens (llama.cpp's tiled order) on Q2_K .. Q6_K weights, 7 rows of 1..4 blocks of random
 * codes and scales, equals the tiled order computed from its definition, bit for bit (a token in one-token mode:
 * vec_dot); with the scalar kernels (no tiled order: ggml's scalar build has none) it equals vec_dot. The AVX2
 * tiled dots, one token and 4 at a time, are also checked directly on 1..9 blocks. */
static void test_matmul_tiled_order(void **state)
{
    (void)state;
    enum { NB = 4, NE1 = 7, NTOK = 9, NBMAX = 9 };
    static const uint32_t types[] = { ZL_Q2_K, ZL_Q3_K, ZL_Q4_K, ZL_Q5_K, ZL_Q6_K };
    enum { NTYPES = sizeof types / sizeof types[0] };
    zl_cpu *cpu = zl_cpu_create(2);
    assert_non_null(cpu);
    float *x = malloc(NBMAX * ZL_QK_K * NTOK * sizeof(float)), *y = malloc(NE1 * NTOK * sizeof(float));
    uint8_t *wq = malloc((size_t)NE1 * NBMAX * 210);
    zl_block_q8_K *xq = malloc(NTOK * NBMAX * sizeof(zl_block_q8_K));
    const bool tiled = zl_cpu_simd_width() > 1;
    long compared = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        const zl_type_traits *tr = zl_type_traits_get(t);
        for (int nb = 1; nb <= NB; nb++) {
            const int ne0 = nb * ZL_QK_K;
            size_t row;
            assert_true(zl_row_size(t, ne0, &row));
            random_blocks(t, wq, NE1 * nb, (unsigned)(nb * 10 + ti));
            fill_random(x, ne0 * NTOK, (unsigned)(nb + 40 * ti), 3.0f);
            zl_tensor w = { .name = "w", .type = t, .ne = { ne0, NE1, 1, 1 }, .nb1 = row, .data = wq };
            /* all 9 tokens in the tiled order (nb odd), or token 3 in one-token mode, which splits the first group of
             * 4 (nb even) */
            const int8_t modes[NTOK] = { 2, 2, 2, (int8_t)(nb % 2 ? 2 : 0), 2, 2, 2, 2, 2 };
            assert_int_equal(zl_matmul_modes(cpu, &w, x, NTOK, y, modes), ZL_OK);
            for (int k = 0; k < NTOK; k++) {
                zl_type_traits_get(ZL_Q8_K)->from_float_act(x + (size_t)k * ne0, xq, ne0);
                for (int r = 0; r < NE1; r++) {
                    float want;
                    if (tiled && modes[k] == 2)
                        want = tiled_want(t, wq + (size_t)r * row, xq, nb);
                    else
                        tr->vec_dot(ne0, &want, wq + (size_t)r * row, xq);
                    const float got = y[k * NE1 + r];
                    if (zl_fp32_to_bits(got) != zl_fp32_to_bits(want))
                        fail_msg("%s tiled matmul nb=%d token %d row %d: %a, want %a", tr->name, nb, k, r,
                                 (double)got, (double)want);
                    compared++;
                }
            }
        }
    }
    assert_int_equal(compared, NTYPES * NB * NE1 * NTOK);
    /* the portable versions (what the NEON set runs) on 1..9 blocks, tiny and large activations */
    static const zl_vec_dot_fn ref[NTYPES] = { zl_q2_K_tiled_dot_ref, zl_q3_K_tiled_dot_ref, zl_q4_K_tiled_dot_ref,
                                               zl_q5_K_tiled_dot_ref, zl_q6_K_tiled_dot_ref };
    check_tiled_dots("ref", ref, types, NTYPES, 300, wq, x, xq);
#ifdef ZL_HAVE_AVX2_KERNELS
    if (zl_cpu_simd_width() >= 8) {
        static const zl_vec_dot_fn avx2[NTYPES] = { zl_q2_K_tiled_dot_avx2, zl_q3_K_tiled_dot_avx2,
                                                    zl_q4_K_tiled_dot_avx2, zl_q5_K_tiled_dot_avx2,
                                                    zl_q6_K_tiled_dot_avx2 };
        check_tiled_dots("avx2", avx2, types, NTYPES, 100, wq, x, xq);
        /* the 4-token versions: 4 activation rows (the third all zeros), outputs 3 apart */
        static const zl_vec_dot4_fn avx2_4[NTYPES] = { NULL, NULL, zl_q4_K_tiled_dot4_avx2, NULL,
                                                       zl_q6_K_tiled_dot4_avx2 };
#ifdef ZL_HAVE_VNNI_KERNELS
        /* and the VNNI ones, where the avx512vnni set is active */
        static const zl_vec_dot4_fn vnni_4[NTYPES] = { NULL, NULL, zl_q4_K_tiled_dot4_vnni, NULL,
                                                       zl_q6_K_tiled_dot4_vnni };
        const int n_sets = strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0 ? 2 : 1;
#else
        static const zl_vec_dot4_fn *const vnni_4 = NULL;
        const int n_sets = 1;
#endif
        int checked4 = 0;
        for (int set = 0; set < n_sets; set++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (int nb = 1; (set ? vnni_4 : avx2_4)[ti] && nb <= NBMAX; nb += 2) {
                const int ne0 = nb * ZL_QK_K;
                random_blocks(types[ti], wq, nb, (unsigned)(nb + 200 * ti));
                for (int k = 0; k < 4; k++) {
                    fill_random(x, ne0, (unsigned)(nb * 7 + k + ti), k == 2 ? 0.0f : 0.5f + 20.0f * (float)k);
                    zl_type_traits_get(ZL_Q8_K)->from_float_act(x, xq + k * nb, ne0);
                }
                float got[4 * 3];
                (set ? vnni_4 : avx2_4)[ti](ne0, got, 3, wq, xq, (size_t)nb * sizeof(zl_block_q8_K));
                for (int k = 0; k < 4; k++) {
                    const float want = tiled_want(types[ti], wq, xq + k * nb, nb);
                    if (zl_fp32_to_bits(got[3 * k]) != zl_fp32_to_bits(want))
                        fail_msg("%s tiled dot4 %s nb=%d token %d: %a, want %a", zl_type_name(types[ti]),
                                 set ? "vnni" : "avx2", nb, k, (double)got[3 * k], (double)want);
                    checked4++;
                }
            }
        print_message("tiled dot4: %d results checked (%d kernel sets)\n", checked4, n_sets);
#ifdef ZL_HAVE_VNNI_KERNELS
        /* the 8-token versions (Q4_K, Q6_K): 8 activation rows (the third all zeros), outputs 3 apart */
        int checked8 = 0;
        static const uint32_t types8[] = { ZL_Q4_K, ZL_Q6_K };
        static const zl_vec_dot4_fn dot8[] = { zl_q4_K_tiled_dot8_vnni, zl_q6_K_tiled_dot8_vnni };
        for (int i = 0; n_sets == 2 && i < 2; i++)
            for (int nb = 1; nb <= NBMAX; nb += 2) {
                const int ne0 = nb * ZL_QK_K;
                random_blocks(types8[i], wq, nb, (unsigned)(nb + 900 + 50 * i));
                for (int k = 0; k < 8; k++) {
                    fill_random(x, ne0, (unsigned)(nb * 11 + k + 70 * i), k == 2 ? 0.0f : 0.5f + 9.0f * (float)k);
                    zl_type_traits_get(ZL_Q8_K)->from_float_act(x, xq + k * nb, ne0);
                }
                float got[8 * 3];
                dot8[i](ne0, got, 3, wq, xq, (size_t)nb * sizeof(zl_block_q8_K));
                for (int k = 0; k < 8; k++) {
                    const float want = tiled_want(types8[i], wq, xq + k * nb, nb);
                    if (zl_fp32_to_bits(got[3 * k]) != zl_fp32_to_bits(want))
                        fail_msg("%s tiled dot8 nb=%d token %d: %a, want %a", zl_type_name(types8[i]), nb, k,
                                 (double)got[3 * k], (double)want);
                    checked8++;
                }
            }
        print_message("tiled dot8: %d results checked\n", checked8);
#endif
    }
#endif
    free(x);
    free(y);
    free(wq);
    free(xq);
    zl_cpu_destroy(cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_from_float_matches_llamacpp),
        cmocka_unit_test(test_to_float_matches_gguf_py),
        cmocka_unit_test(test_matches_ggml_kernels),
        cmocka_unit_test(test_q8_K_by_hand),
        cmocka_unit_test(test_q8_K_act_equals_ref),
        cmocka_unit_test(test_vec_dot_vs_double),
        cmocka_unit_test(test_vec_dot_simd_vs_scalar),
        cmocka_unit_test(test_matmul_k_rows),
        cmocka_unit_test(test_matmul_tiled_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
