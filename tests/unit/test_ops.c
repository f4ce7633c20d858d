/*
 * test_ops.c - the CPU ops against direct double-precision formulas: matmul on every supported weight type
 * (odd shapes, 1 and 2 threads, 1 / 3 / 17 tokens), zl_matmul_many against one matmul at a time, RoPE in both
 * layouts, rmsnorm, softmax, SiLU and GELU GLUs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"
#include "core/dtype.h"
#include "core/err.h"
#include "core/fp16.h"

/* |got - want| <= tol, all in double, with a message naming the expression. */
#define ASSERT_NEAR(got, want, tol)                                                                        \
    do {                                                                                                   \
        const double g_ = (double)(got), w_ = (double)(want), t_ = (double)(tol);                          \
        if (!(fabs(g_ - w_) <= t_)) fail_msg("%s = %.9g, want %.9g (tol %.3g)", #got, g_, w_, t_);         \
    } while (0)

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

/* ---- matmul ---- */

/* y = W x for a weight of `type` with ne0 x ne1, against sum_c dequant(W)[r, c] * dequant(act(x))[t, c] in
 * double (act = conversion to the vec_dot_type, as the kernel sees it), and loosely against the float x. */
static void check_matmul(uint32_t type, int64_t ne0, int64_t ne1, int64_t n_tok, int n_threads)
{
    const zl_type_traits *tr = zl_type_traits_get(type);
    const zl_type_traits *vt = zl_type_traits_get(tr->vec_dot_type);
    size_t wrow, xrow;
    assert_true(zl_row_size(type, ne0, &wrow));
    assert_true(zl_row_size(tr->vec_dot_type, ne0, &xrow));

    float *wf = malloc((size_t)(ne0 * ne1) * sizeof(float));
    float *x = malloc((size_t)(ne0 * n_tok) * sizeof(float));
    float *wd = malloc((size_t)(ne0 * ne1) * sizeof(float));
    float *xd = malloc((size_t)(ne0 * n_tok) * sizeof(float));
    uint8_t *wq = malloc(wrow * (size_t)ne1);
    uint8_t *xq = malloc(xrow * (size_t)n_tok);
    float *y = malloc((size_t)(ne1 * n_tok) * sizeof(float));
    fill_random(wf, ne0 * ne1, (unsigned)(type * 31 + ne0), 0.5f);
    fill_random(x, ne0 * n_tok, (unsigned)(ne1 + n_tok), 2.0f);
    for (int64_t r = 0; r < ne1; r++) {
        tr->from_float(wf + r * ne0, wq + (size_t)r * wrow, ne0);
        tr->to_float(wq + (size_t)r * wrow, wd + r * ne0, ne0);
    }
    for (int64_t t = 0; t < n_tok; t++) {
        vt->from_float_act(x + t * ne0, xq + (size_t)t * xrow, ne0);
        vt->to_float(xq + (size_t)t * xrow, xd + t * ne0, ne0);
    }
    const zl_tensor w = { .name = "w", .type = type, .ne = { ne0, ne1, 1, 1 }, .nb1 = wrow, .data = wq };
    zl_cpu *cpu = zl_cpu_create(n_threads);
    assert_non_null(cpu);
    assert_int_equal(zl_cpu_n_threads(cpu), n_threads);
    for (int rep = 0; rep < 2; rep++) { /* the second call reuses the scratch buffer */
        for (int64_t i = 0; i < ne1 * n_tok; i++) y[i] = NAN;
        assert_int_equal(zl_matmul(cpu, &w, x, n_tok, y), ZL_OK);
        for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t r = 0; r < ne1; r++) {
                double ref = 0.0, mag = 0.0, exact = 0.0;
                for (int64_t c = 0; c < ne0; c++) {
                    ref += (double)wd[r * ne0 + c] * xd[t * ne0 + c];
                    mag += fabs((double)wd[r * ne0 + c] * xd[t * ne0 + c]);
                    exact += (double)wf[r * ne0 + c] * x[t * ne0 + c];
                }
                if (type == ZL_Q4_1) {
                    /* Q4_1 . Q8_1 applies each weight block's minimum to the activation block's stored
                     * s = fp16(d * sum(q)) rather than to the sum of its dequantized values (see test_dtype.c) */
                    const zl_block_q4_1 *wb = (const zl_block_q4_1 *)(wq + (size_t)r * wrow);
                    const zl_block_q8_1 *xb = (const zl_block_q8_1 *)(xq + (size_t)t * xrow);
                    for (int64_t b = 0; b < ne0 / 32; b++) {
                        double xsum = 0.0;
                        for (int j = 0; j < 32; j++) xsum += xd[t * ne0 + 32 * b + j];
                        ref += (double)zl_fp16_to_fp32(wb[b].m) * ((double)zl_fp16_to_fp32(xb[b].s) - xsum);
                    }
                }
                const double got = y[t * ne1 + r];
                const double tol = 1e-5 * mag + 1e-20;
                if (!(fabs(got - ref) <= tol))
                    fail_msg("%s %lldx%lld n_tok=%lld nth=%d: y[%lld,%lld] = %.9g, reference %.9g", tr->name,
                             (long long)ne0, (long long)ne1, (long long)n_tok, n_threads, (long long)t,
                             (long long)r, got, ref);
                /* and near the unquantized product (quantization error only) */
                if (!(fabs(got - exact) <= 0.2 * mag + 1e-6))
                    fail_msg("%s: y[%lld,%lld] = %.9g, float product %.9g", tr->name, (long long)t, (long long)r,
                             got, exact);
            }
        }
    }
    zl_cpu_destroy(cpu);
    free(wf);
    free(x);
    free(wd);
    free(xd);
    free(wq);
    free(xq);
    free(y);
}

static void test_matmul_all_types(void **state)
{
    (void)state;
    static const uint32_t types[] = { ZL_F32, ZL_F16, ZL_BF16, ZL_Q4_0, ZL_Q4_1, ZL_Q8_0 };
    static const int64_t toks[] = { 1, 3, 17 };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int64_t ne0 = zl_type_traits_get(types[ti])->block_size == 1 ? 227 : 7 * 32;
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
            for (int nth = 1; nth <= 2; nth++) check_matmul(types[ti], ne0, 37, toks[k], nth);
    }
    /* more rows than one chunk per thread, and a row count not divisible by the tile */
    check_matmul(ZL_Q4_1, 576, 211, 1, 2);
    check_matmul(ZL_Q8_0, 96, 101, 33, 2);
    check_matmul(ZL_Q4_0, 32, 5, 40, 2); /* conversion of many tokens in parallel */
}

/* Q4_0 weights repacked into the X16 layout (repack.h): zl_matmul's results equal, bit for bit, llama.cpp's
 * repacked arithmetic written out here from the file's row layout: per row and token, acc = fmaf((float)isum,
 * d_x * d_y, acc) over the blocks in order, isum the exact integer sum of (q - 8) * y. Row counts with a last group
 * of 8, 1 .. 20 tokens (every remainder of the 8-token groups), 1 and 2 threads. */
static void check_matmul_x16(int64_t ne0, int64_t ne1, int64_t n_tok, int n_threads)
{
    const zl_type_traits *tr = zl_type_traits_get(ZL_Q4_0), *vt = zl_type_traits_get(ZL_Q8_0);
    size_t wrow, xrow;
    assert_true(zl_row_size(ZL_Q4_0, ne0, &wrow));
    assert_true(zl_row_size(ZL_Q8_0, ne0, &xrow));
    float *wf = malloc((size_t)(ne0 * ne1) * sizeof(float)), *x = malloc((size_t)(ne0 * n_tok) * sizeof(float));
    uint8_t *wq = malloc(wrow * (size_t)ne1), *wp = malloc(wrow * (size_t)ne1), *xq = malloc(xrow * (size_t)n_tok);
    uint8_t *tmp = malloc(wrow * ZL_X16_ROWS);
    float *y = malloc((size_t)(ne1 * n_tok) * sizeof(float)), *want = malloc((size_t)(ne1 * n_tok) * sizeof(float));
    fill_random(wf, ne0 * ne1, (unsigned)(ne0 * 7 + ne1), 0.5f);
    fill_random(x, ne0 * n_tok, (unsigned)(ne1 + 3 * n_tok), 2.0f);
    for (int64_t r = 0; r < ne1; r++)
        tr->from_float(wf + r * ne0, wq + (size_t)r * wrow, ne0);
    for (int64_t t = 0; t < n_tok; t++)
        vt->from_float_act(x + t * ne0, xq + (size_t)t * xrow, ne0);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < ne1; r++) {
            const zl_block_q4_0 *wb = (const zl_block_q4_0 *)(const void *)(wq + (size_t)r * wrow);
            const zl_block_q8_0 *xb = (const zl_block_q8_0 *)(const void *)(xq + (size_t)t * xrow);
            float acc = 0.0f;
            for (int64_t b = 0; b < ne0 / 32; b++) {
                int32_t isum = 0;
                for (int j = 0; j < 16; j++)
                    isum += ((wb[b].qs[j] & 15) - 8) * xb[b].qs[j] + ((wb[b].qs[j] >> 4) - 8) * xb[b].qs[j + 16];
                const float d = zl_fp16_to_fp32(wb[b].d) * zl_fp16_to_fp32(xb[b].d);
                acc = fmaf((float)isum, d, acc);
            }
            want[t * ne1 + r] = acc;
        }
    memcpy(wp, wq, wrow * (size_t)ne1);
    zl_repack_x16(ZL_Q4_0, wp, ne0, ne1, wrow, tmp);
    const zl_tensor w = { .name = "w", .type = ZL_Q4_0, .ne = { ne0, ne1, 1, 1 }, .nb1 = wrow, .data = wp,
                          .layout = ZL_LAYOUT_X16 };
    zl_cpu *cpu = zl_cpu_create(n_threads);
    assert_non_null(cpu);
    for (int64_t i = 0; i < ne1 * n_tok; i++) y[i] = NAN;
    assert_int_equal(zl_matmul(cpu, &w, x, n_tok, y), ZL_OK);
    for (int64_t i = 0; i < ne1 * n_tok; i++)
        if (memcmp(&y[i], &want[i], sizeof(float)) != 0)
            fail_msg("x16 %lldx%lld n_tok=%lld nth=%d: y[%lld,%lld] = %.9g, repacked order %.9g", (long long)ne0,
                     (long long)ne1, (long long)n_tok, n_threads, (long long)(i / ne1), (long long)(i % ne1),
                     y[i], want[i]);
    /* shared with a plain Q4_0 weight on the same x (zl_matmul_shared: per-token data of both kinds) */
    const zl_tensor plain = { .name = "p", .type = ZL_Q4_0, .ne = { ne0, ne1, 1, 1 }, .nb1 = wrow, .data = wq };
    float *y2 = malloc((size_t)(ne1 * n_tok) * sizeof(float)), *y3 = malloc((size_t)(ne1 * n_tok) * sizeof(float));
    const zl_tensor *ws[3] = { &plain, &w, &w };
    float *ys[3] = { y2, y, y3 };
    assert_int_equal(zl_matmul_shared(cpu, 3, ws, x, n_tok, ys, NULL), ZL_OK);
    assert_memory_equal(y, want, (size_t)(ne1 * n_tok) * sizeof(float));
    assert_memory_equal(y3, want, (size_t)(ne1 * n_tok) * sizeof(float));
    for (int64_t i = 0; i < ne1 * n_tok; i++) { /* the plain weight: vec_dot's order, close to the same sums */
        float v;
        tr->vec_dot(ne0, &v, wq + (size_t)(i % ne1) * wrow, xq + (size_t)(i / ne1) * xrow);
        if (n_tok == 1) assert_memory_equal(&y2[i], &v, sizeof v);
        ASSERT_NEAR(y2[i], want[i], 1e-3 * (1.0 + fabs(want[i])));
    }
    zl_cpu_destroy(cpu);
    free(y2);
    free(y3);
    free(wf);
    free(x);
    free(wq);
    free(wp);
    free(xq);
    free(tmp);
    free(y);
    free(want);
}

/* The same for Q4_K (llama.cpp's q4_K_8x8 order): per row and token and 256-block, isum = sum_s sc_s * (q_s . y_s)
 * and imin = sum_s m_s * (sum of y_s), both exact, then acc = fmaf(isum, d * d_y, acc), accm = fmaf(imin, dmin *
 * d_y, accm), result acc - accm; a batch's first n - n % 4 tokens make the two fmas per pair of sub-blocks. */
static float q4_K_repacked_dot(const zl_block_q4_K *w, const zl_block_q8_K *y, int64_t nb, bool pairs)
{
    float acc = 0.0f, accm = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = w[b].scales;
        int32_t isum = 0, imin = 0;
        for (int s = 0; s < 8; s++) {
            const int sc = s < 4 ? q[s] & 63 : (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
            const int m = s < 4 ? q[s + 4] & 63 : (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
            int32_t dot = 0, ysum = 0;
            for (int l = 0; l < 32; l++) {
                const int v = w[b].qs[32 * (s / 2) + l];
                dot += (s % 2 ? v >> 4 : v & 15) * y[b].qs[32 * s + l];
                ysum += y[b].qs[32 * s + l];
            }
            isum += sc * dot;
            imin += m * ysum;
            if (s == 7 || (pairs && s % 2)) {
                acc = fmaf((float)isum, zl_fp16_to_fp32(w[b].d) * y[b].d, acc);
                accm = fmaf((float)imin, zl_fp16_to_fp32(w[b].dmin) * y[b].d, accm);
                isum = imin = 0;
            }
        }
    }
    return acc - accm;
}

static void check_matmul_x16_q4_K(int64_t ne0, int64_t ne1, int64_t n_tok, int n_threads, const int8_t *modes)
{
    const zl_type_traits *tr = zl_type_traits_get(ZL_Q4_K), *vt = zl_type_traits_get(ZL_Q8_K);
    size_t wrow, xrow;
    assert_true(zl_row_size(ZL_Q4_K, ne0, &wrow));
    assert_true(zl_row_size(ZL_Q8_K, ne0, &xrow));
    float *wf = malloc((size_t)(ne0 * ne1) * sizeof(float)), *x = malloc((size_t)(ne0 * n_tok) * sizeof(float));
    uint8_t *wq = malloc(wrow * (size_t)ne1), *xq = malloc(xrow * (size_t)n_tok), *tmp = malloc(wrow * ZL_X16_ROWS);
    float *y = malloc((size_t)(ne1 * n_tok) * sizeof(float)), *want = malloc((size_t)(ne1 * n_tok) * sizeof(float));
    fill_random(wf, ne0 * ne1, (unsigned)(ne0 + 5 * ne1), 0.5f);
    fill_random(x, ne0 * n_tok, (unsigned)(ne1 + 7 * n_tok), 2.0f);
    for (int64_t r = 0; r < ne1; r++)
        tr->from_float(wf + r * ne0, wq + (size_t)r * wrow, ne0);
    for (int64_t t = 0; t < n_tok; t++)
        vt->from_float_act(x + t * ne0, xq + (size_t)t * xrow, ne0);
    for (int64_t t = 0; t < n_tok; t++) {
        const bool pairs = modes ? (modes[t] & ZL_MODE_MASK) >= ZL_MODE_MULTI && !(modes[t] & ZL_MODE_TAIL4)
                                 : t < n_tok - n_tok % 4;
        for (int64_t r = 0; r < ne1; r++)
            want[t * ne1 + r] = q4_K_repacked_dot((const zl_block_q4_K *)(const void *)(wq + (size_t)r * wrow),
                                                  (const zl_block_q8_K *)(const void *)(xq + (size_t)t * xrow),
                                                  ne0 / 256, pairs);
    }
    zl_repack_x16(ZL_Q4_K, wq, ne0, ne1, wrow, tmp);
    const zl_tensor w = { .name = "w", .type = ZL_Q4_K, .ne = { ne0, ne1, 1, 1 }, .nb1 = wrow, .data = wq,
                          .layout = ZL_LAYOUT_X16 };
    zl_cpu *cpu = zl_cpu_create(n_threads);
    assert_non_null(cpu);
    for (int64_t i = 0; i < ne1 * n_tok; i++) y[i] = NAN;
    assert_int_equal(zl_matmul_modes(cpu, &w, x, n_tok, y, modes), ZL_OK);
    for (int64_t i = 0; i < ne1 * n_tok; i++)
        if (memcmp(&y[i], &want[i], sizeof(float)) != 0)
            fail_msg("x16 q4_K %lldx%lld n_tok=%lld nth=%d modes=%s: y[%lld,%lld] = %.9g, repacked order %.9g",
                     (long long)ne0, (long long)ne1, (long long)n_tok, n_threads, modes ? "given" : "none",
                     (long long)(i / ne1), (long long)(i % ne1), y[i], want[i]);
    zl_cpu_destroy(cpu);
    free(wf);
    free(x);
    free(wq);
    free(xq);
    free(tmp);
    free(y);
    free(want);
}

static void test_matmul_q4_K_x16(void **state)
{
    (void)state;
    static const int64_t shapes[][2] = { { 256, 8 }, { 512, 16 }, { 768, 40 } };
    static const int64_t toks[] = { 1, 3, 4, 7, 8, 9, 13, 20 };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
            for (int nth = 1; nth <= 2; nth++)
                check_matmul_x16_q4_K(shapes[s][0], shapes[s][1], toks[k], nth, NULL);
    /* per-token modes (the engine's): a 6-token prompt (4 in the gemm, 2 in its tail) and 3 decode tokens */
    const int8_t modes[9] = { ZL_MODE_ONE, ZL_MODE_MULTI, ZL_MODE_MULTI, ZL_MODE_MULTI, ZL_MODE_MULTI,
                              ZL_MODE_MULTI | ZL_MODE_TAIL4, ZL_MODE_MULTI | ZL_MODE_TAIL4, ZL_MODE_ONE,
                              ZL_MODE_ONE };
    check_matmul_x16_q4_K(512, 24, 9, 2, modes);
}

static void test_matmul_q4_0_x16(void **state)
{
    (void)state;
    static const int64_t shapes[][2] = { { 32, 8 }, { 96, 16 }, { 64, 24 }, { 256, 40 }, { 2048, 48 } };
    static const int64_t toks[] = { 1, 2, 3, 7, 8, 9, 13, 16, 20 };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
            for (int nth = 1; nth <= 2; nth++)
                check_matmul_x16(shapes[s][0], shapes[s][1], toks[k], nth);
    /* a group of 8 rows is the smallest: other row counts are refused */
    float x[32] = { 0 }, y[12];
    uint8_t wq[12 * 18] = { 0 };
    const zl_tensor w = { .name = "w", .type = ZL_Q4_0, .ne = { 32, 12, 1, 1 }, .nb1 = 18, .data = wq,
                          .layout = ZL_LAYOUT_X16 };
    zl_cpu *cpu = zl_cpu_create(1);
    assert_int_equal(zl_matmul(cpu, &w, x, 1, y), ZL_EINVAL);
    zl_cpu_destroy(cpu);
}

/* zl_matmul_many: bit for bit each job's zl_matmul_modes, with jobs of several types, token counts and modes, two
 * jobs on one x (a shared conversion), an empty one, on 1 and 2 threads. */
static void test_matmul_many(void **state)
{
    (void)state;
    enum { NE0 = 512, NE1 = 36, NJ = 7, MAXT = 17 };
    static const uint32_t types[NJ] = { ZL_Q4_K, ZL_Q4_K, ZL_Q6_K, ZL_Q8_0, ZL_F16, ZL_Q4_0, ZL_Q4_K };
    static const int64_t n_tok[NJ] = { 9, 9, 1, 3, 4, 17, 0 };
    uint8_t *wq[NJ];
    zl_tensor w[NJ];
    float *x = malloc((size_t)NJ * MAXT * NE0 * sizeof(float)), *wf = malloc((size_t)NE0 * NE1 * sizeof(float));
    float *y = malloc((size_t)NJ * MAXT * NE1 * sizeof(float)), *want = malloc((size_t)NJ * MAXT * NE1 * sizeof(float));
    int8_t modes[NJ][MAXT];
    fill_random(x, (int64_t)NJ * MAXT * NE0, 7, 2.0f);
    for (int j = 0; j < NJ; j++) {
        size_t wrow;
        assert_true(zl_row_size(types[j], NE0, &wrow));
        wq[j] = malloc(wrow * NE1);
        fill_random(wf, (int64_t)NE0 * NE1, 100u + (unsigned)j, 0.5f);
        for (int64_t r = 0; r < NE1; r++)
            zl_type_traits_get(types[j])->from_float(wf + r * NE0, wq[j] + (size_t)r * wrow, NE0);
        w[j] = (zl_tensor){ .name = "w", .type = types[j], .ne = { NE0, NE1, 1, 1 }, .nb1 = wrow, .data = wq[j] };
        for (int t = 0; t < MAXT; t++) /* MoE's modes: vec_dot, or the tiled path for some rows */
            modes[j][t] = j < 2 ? ZL_MODE_MULTI8 : (t % 3 == 0 ? ZL_MODE_MULTI8 : ZL_MODE_ONE);
    }
    zl_matmul_job jobs[NJ];
    for (int j = 0; j < NJ; j++) /* jobs 0 and 1: gate and up on one x */
        jobs[j] = (zl_matmul_job){ &w[j], x + (size_t)(j == 1 ? 0 : j) * MAXT * NE0, n_tok[j],
                                   y + (size_t)j * MAXT * NE1, modes[j] };
    for (int nth = 1; nth <= 2; nth++) {
        zl_cpu *cpu = zl_cpu_create(nth);
        assert_non_null(cpu);
        for (int j = 0; j < NJ; j++)
            assert_int_equal(zl_matmul_modes(cpu, jobs[j].w, jobs[j].x, jobs[j].n_tok,
                                             want + (size_t)j * MAXT * NE1, jobs[j].modes), ZL_OK);
        for (size_t i = 0; i < (size_t)NJ * MAXT * NE1; i++) y[i] = NAN;
        assert_int_equal(zl_matmul_many(cpu, NJ, jobs), ZL_OK);
        for (int j = 0; j < NJ; j++)
            for (int64_t i = 0; i < n_tok[j] * NE1; i++) {
                const size_t k = (size_t)j * MAXT * NE1 + (size_t)i;
                if (memcmp(&y[k], &want[k], sizeof(float)) != 0)
                    fail_msg("many: job %d (%s) nth=%d y[%lld] = %.9g, alone %.9g", j, zl_type_name(types[j]), nth,
                             (long long)i, y[k], want[k]);
            }
        zl_cpu_destroy(cpu);
    }
    for (int j = 0; j < NJ; j++) free(wq[j]);
    free(x), free(wf), free(y), free(want);
}

static void test_matmul_rejects(void **state)
{
    (void)state;
    zl_cpu *cpu = zl_cpu_create(1);
    float x[64] = { 0 }, y[4];
    uint8_t data[1024] = { 0 };
    zl_tensor w = { .name = "w", .type = ZL_IQ2_XXS, .ne = { 256, 1, 1, 1 }, .nb1 = 66, .data = data };
    assert_int_equal(zl_matmul(cpu, &w, x, 1, y), ZL_EUNSUPPORTED);
    w.type = 4; /* unknown id */
    assert_int_equal(zl_matmul(cpu, &w, x, 1, y), ZL_EUNSUPPORTED);
    w.type = ZL_Q4_0;
    w.ne[0] = 48; /* not a whole number of blocks */
    assert_int_equal(zl_matmul(cpu, &w, x, 1, y), ZL_EINVAL);
    zl_cpu_destroy(cpu);
}

static void test_get_row(void **state)
{
    (void)state;
    enum { NE0 = 64, NE1 = 3 };
    float wf[NE0 * NE1], y[NE0], want[NE0];
    fill_random(wf, NE0 * NE1, 5, 1.0f);
    uint8_t q[3 * 2 * 34];
    const zl_type_traits *t = zl_type_traits_get(ZL_Q8_0);
    t->from_float(wf, q, NE0 * NE1);
    const zl_tensor w = { .name = "emb", .type = ZL_Q8_0, .ne = { NE0, NE1, 1, 1 }, .nb1 = 2 * 34, .data = q };
    zl_get_row(&w, 2, y);
    /* row 2 = blocks 4 and 5: q * d */
    for (int b = 0; b < 2; b++) {
        const uint8_t *blk = q + (size_t)(4 + b) * 34;
        const float d = zl_fp16_to_fp32((uint16_t)(blk[0] | blk[1] << 8));
        for (int j = 0; j < 32; j++) want[32 * b + j] = (float)(int8_t)blk[2 + j] * d;
    }
    assert_memory_equal(y, want, sizeof y);
    for (int j = 0; j < NE0; j++) assert_true(fabsf(y[j] - wf[2 * NE0 + j]) <= 1.0f / 127 + 1e-6f);
}

/* ---- RoPE ---- */

static void test_rope_both_layouts(void **state)
{
    (void)state;
    enum { NH = 3, HD = 16, NROT = 12 };
    float x[NH * HD], x0[NH * HD], freq[NROT / 2];
    const double base = 10000.0;
    for (int i = 0; i < NROT / 2; i++) freq[i] = (float)pow(base, -2.0 * i / NROT);
    for (int neox = 0; neox <= 1; neox++) {
        for (int64_t pos = 0; pos < 300; pos += 37) {
            fill_random(x0, NH * HD, (unsigned)pos, 1.0f);
            memcpy(x, x0, sizeof x);
            zl_rope(x, NH, HD, NROT, pos, freq, 0.9f, neox);
            for (int h = 0; h < NH; h++) {
                const float *a = x0 + h * HD;
                const float *b = x + h * HD;
                for (int i = 0; i < NROT / 2; i++) {
                    const int i0 = neox ? i : 2 * i, i1 = neox ? i + NROT / 2 : 2 * i + 1;
                    const double th = (double)pos * freq[i];
                    const double c = cos(th) * 0.9, s = sin(th) * 0.9;
                    const double w0 = a[i0] * c - a[i1] * s, w1 = a[i0] * s + a[i1] * c;
                    ASSERT_NEAR(b[i0], w0, 1e-4);
                    ASSERT_NEAR(b[i1], w1, 1e-4);
                }
                for (int i = NROT; i < HD; i++) assert_true(b[i] == a[i]); /* past n_rot: untouched */
            }
        }
    }
}

static void test_rope_cos_sin_table(void **state)
{
    (void)state;
    enum { NH = 2, HD = 8, NROT = 8 };
    float cs[NROT], ff[NROT / 2] = { 1.0f, 2.0f, 4.0f, 8.0f };
    const int64_t pos = 123;
    zl_rope_cos_sin(cs, NROT, pos, 10000.0f, 0.5f, ff, 1.0f);
    for (int i = 0; i < NROT / 2; i++) {
        const double th = 0.5 * pos * pow(10000.0, -2.0 * i / NROT) / ff[i];
        ASSERT_NEAR(cs[2 * i], cos(th), 1e-4);
        ASSERT_NEAR(cs[2 * i + 1], sin(th), 1e-4);
    }
    /* applying the table equals zl_rope with the same angles */
    float freq[NROT / 2], a[NH * HD], b[NH * HD];
    zl_rope_cos_sin(cs, NROT, pos, 10000.0f, 1.0f, NULL, 1.0f);
    for (int i = 0; i < NROT / 2; i++) freq[i] = (float)pow(10000.0, -2.0 * i / NROT);
    for (int neox = 0; neox <= 1; neox++) {
        fill_random(a, NH * HD, 9, 1.0f);
        memcpy(b, a, sizeof a);
        zl_rope_apply(a, NH, HD, NROT, cs, neox);
        zl_rope(b, NH, HD, NROT, pos, freq, 1.0f, neox);
        for (int i = 0; i < NH * HD; i++) ASSERT_NEAR(a[i], b[i], 1e-4);
    }
}

/* ---- float ops ---- */

static void test_rmsnorm(void **state)
{
    (void)state;
    enum { D = 37, T = 3 };
    float x[T * D], g[D], y[T * D];
    fill_random(x, T * D, 1, 3.0f);
    fill_random(g, D, 2, 1.0f);
    zl_rmsnorm(y, x, g, T, D, 1e-5f);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[t * D + i] * x[t * D + i];
        const double sc = 1.0 / sqrt(ss / D + 1e-5);
        for (int i = 0; i < D; i++) ASSERT_NEAR(y[t * D + i], x[t * D + i] * sc * g[i], 1e-5);
    }
    /* in place, no gain */
    memcpy(y, x, sizeof x);
    zl_rmsnorm(y, y, NULL, T, D, 0.0f);
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)y[i] * y[i];
    ASSERT_NEAR(ss / D, 1.0, 1e-5);
}

static void test_softmax(void **state)
{
    (void)state;
    float x[11] = { 1000.0f, 999.0f, -5.0f, 0.0f, 1000.0f, 3.0f, -1e30f, 998.5f, 1.0f, 2.0f, 999.9f };
    double want[11], sum = 0;
    for (int i = 0; i < 11; i++) sum += want[i] = exp((double)x[i] - 1000.0);
    zl_softmax(x, 11);
    double got_sum = 0;
    for (int i = 0; i < 11; i++) {
        ASSERT_NEAR(x[i], want[i] / sum, 1e-6);
        got_sum += x[i];
    }
    ASSERT_NEAR(got_sum, 1.0, 1e-6);
    float one = -3.0f;
    zl_softmax(&one, 1);
    assert_true(one == 1.0f);
}

static void test_silu_mul(void **state)
{
    (void)state;
    enum { N = 101 };
    float g[N], u[N], y[N];
    fill_random(g, N, 3, 12.0f);
    fill_random(u, N, 4, 2.0f);
    zl_silu_mul(y, g, u, N);
    for (int i = 0; i < N; i++) {
        const double s = g[i] / (1.0 + exp(-(double)g[i]));
        ASSERT_NEAR(y[i], s * u[i], 1e-5 * (1 + fabs(s * u[i])));
    }
    memcpy(y, g, sizeof g);
    zl_silu_mul(y, y, u, N); /* aliasing y == g */
    for (int i = 0; i < N; i++) ASSERT_NEAR(y[i], g[i] / (1.0 + exp(-(double)g[i])) * u[i], 1e-4);
}

static void test_gelu_mul(void **state)
{
    (void)state;
    enum { N = 101 };
    float g[N], u[N], y[N];
    fill_random(g, N, 5, 6.0f);
    fill_random(u, N, 6, 2.0f);
    g[0] = -10.0f; /* ggml's table path: exactly 0 at and below -10, identity at and above 10 */
    g[1] = 10.0f;
    g[2] = 50.0f;
    zl_gelu_mul(y, g, u, N);
    assert_true(y[0] == 0.0f);
    assert_true(y[1] == 10.0f * u[1]);
    assert_true(y[2] == 50.0f * u[2]);
    for (int i = 3; i < N; i++) {
        const double v = g[i];
        const double ge = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        /* input and result pass through fp16: allow a few half-ulps */
        ASSERT_NEAR(y[i], ge * u[i], 2e-3 * (fabs(ge * u[i]) + fabs(u[i])) + 1e-6);
    }
}

/* ggml's table gelu, one value at a time: the bits every kernel set's zl_gelu_mul must give. */
static float gelu_table_ref(float v)
{
    if (v <= -10.0f) return 0.0f;
    if (v >= 10.0f) return v;
    const float x = zl_fp16_to_fp32(zl_fp32_to_fp16(v));
    const float r = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * fmaf(0.044715f * x, x, 1.0f)));
    return zl_fp16_to_fp32(zl_fp32_to_fp16(r));
}

/* The vector path (8 at a time, then a tail) gives the scalar steps' bits, over magnitudes from half subnormals
 * to beyond the clamps, both signs, the clamp edges, zeros and a NaN. */
static void test_gelu_mul_bits(void **state)
{
    (void)state;
    enum { N = 1003 };
    static float g[N], u[N], y[N];
    fill_random(u, N, 9, 3.0f);
    fill_random(g, N, 10, 1.0f);
    for (int i = 0; i < N; i++) g[i] *= powf(2.0f, (float)(i % 40 - 26)); /* 2^-26 .. 2^13 */
    g[3] = -10.0f;
    g[4] = 10.0f;
    g[5] = nextafterf(-10.0f, 0.0f);
    g[6] = nextafterf(10.0f, 0.0f);
    g[7] = -0.0f;
    g[8] = 0.0f;
    g[9] = NAN;
    g[N - 1] = 9.99f; /* in the tail */
    zl_gelu_mul(y, g, u, N);
    assert_true(isnan(y[9]));
    for (int i = 0; i < N; i++) {
        if (i == 9) continue;
        const float want = gelu_table_ref(g[i]) * u[i];
        if (memcmp(&want, &y[i], sizeof want) != 0)
            fail_msg("gelu_mul[%d]: g %a -> %a, want %a (kernels %s)", i, (double)g[i], (double)y[i], (double)want,
                     zl_cpu_kernels_name());
    }
}

static void test_add_and_dot(void **state)
{
    (void)state;
    enum { N = 77 };
    float a[N], b[N], c[N];
    fill_random(a, N, 7, 1.0f);
    fill_random(b, N, 8, 1.0f);
    memcpy(c, a, sizeof a);
    zl_add(c, b, N);
    double dot = 0;
    for (int i = 0; i < N; i++) {
        assert_true(c[i] == a[i] + b[i]);
        dot += (double)a[i] * b[i];
    }
    ASSERT_NEAR(zl_dot_f32(a, b, N), dot, 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_all_types),
        cmocka_unit_test(test_matmul_q4_0_x16),
        cmocka_unit_test(test_matmul_q4_K_x16),
        cmocka_unit_test(test_matmul_many),
        cmocka_unit_test(test_matmul_rejects),
        cmocka_unit_test(test_get_row),
        cmocka_unit_test(test_rope_both_layouts),
        cmocka_unit_test(test_rope_cos_sin_table),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_silu_mul),
        cmocka_unit_test(test_gelu_mul),
        cmocka_unit_test(test_gelu_mul_bits),
        cmocka_unit_test(test_add_and_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
