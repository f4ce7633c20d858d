/*
 * quant_rows4_vnni.c - one-token decode kernels that take 4 weight rows per call (Q4_0, Q4_1, Q4_K, Q6_K; 8 rows
 * too for Q4_0 and Q4_1) with AVX-512 BW/VL/VNNI, each row's result bit-identical to the vec_dot the "avx512vnni" set uses for its type
 * (zl_q4_0/q4_1_vec_dot_vnni, zl_q4_K/q6_K_vec_dot_avx2).
 *
 * Why: decoding one token streams every weight once, and a one-row dot spends most of its time on per-block
 * overhead (scale conversions, broadcasts, one fma chain whose latency nothing hides), not on the bytes. Four rows
 * per call load and prepare each activation block once, keep 4 independent accumulator chains in flight, and
 * prefetch the next 4 rows.
 *
 * Layout: rows 2p and 2p + 1 share a 512-bit register, each in its own 256-bit half, so that every 8-lane half sees
 * exactly the operations vec_dot performs on its 256-bit vector, in the same order:
 *   - integer lane sums are exact in any order and with any instruction that computes the same groups (lane i of
 *     a 32-byte chunk holds bytes 4i..4i+3, as ggml's maddubs + madd pairs them), so VPDPBUSD / VPDPWSSD stand in
 *     for maddubs + madd + add;
 *   - the float steps are kept: the same scale products (one rounding each), one fma per block into the row's own
 *     8 lanes in block order, and the same final reductions.
 *
 * Compiled with the *_vnni.c flags; called only when zl_cpu_kernels_name() is "avx512vnni" (ops.c). Pure, callable
 * from any thread. Rows are bx bytes apart; the 4 rows after them are prefetched, never read.
 */
#include "backend/cpu/quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "backend/cpu/simd_x86.h" /* h2f, hsum8 */

#define ROW(k, T) ((const T *)(const void *)((const char *)vx + (size_t)(k) * bx))

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 32 bytes at a in the low half, 32 at b in the high half. */
static inline __m512i load_pair(const void *a, const void *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1);
}

/* 32 bytes at p in both halves (the activation chunk the two rows of a pair share). */
static inline __m512i load_both(const void *p)
{
    return _mm512_broadcast_i64x4(load256(p));
}

/* A Q4_0 / Q4_1 block's 16 bytes of nibbles for two rows -> each half: the 32 codes (low nibbles = elements 0-15,
 * then high nibbles = 16-31), unsigned. */
static inline __m512i nibble_pair(const uint8_t *a, const uint8_t *c)
{
    const __m512i raw = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a))),
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)c)), 1);
    const __m512i shifted = _mm512_srlv_epi64(raw, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0f));
}

/* 4 fp16 values as 4 floats. */
static inline __m128 f16x4(uint16_t a, uint16_t b, uint16_t c, uint16_t d)
{
    return _mm_cvtph_ps(_mm_setr_epi16((short)a, (short)b, (short)c, (short)d, 0, 0, 0, 0));
}

/* Lanes a (x 8) and c (x 8) of the 4 values in v. */
static inline __m512 spread_pair(__m128 v, int a, int c)
{
    const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(a)), _mm256_set1_epi32(c), 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v));
}

static inline void store_pairs(float *s, __m512 acc01, __m512 acc23)
{
    s[0] = hsum8(_mm512_castps512_ps256(acc01));
    s[1] = hsum8(_mm512_extractf32x8_ps(acc01, 1));
    s[2] = hsum8(_mm512_castps512_ps256(acc23));
    s[3] = hsum8(_mm512_extractf32x8_ps(acc23, 1));
}

/* The next 4 rows (contiguous after these when bx is the row size, as in a weight matrix) are streamed into the
 * cache in step with these: at block b, their bytes [4 b block, 4 (b + 1) block). */
static inline void prefetch_next(const void *vx, size_t bx, size_t block, int64_t b)
{
    const char *next = (const char *)vx + 4 * bx + (size_t)b * 4 * block;
    for (size_t off = 0; off < 4 * block; off += 64)
        _mm_prefetch(next + off, _MM_HINT_T0);
}

/* The same for the always-inline bodies (q4_0_rows, q4_1_rows), as a macro: GCC emitted no prefetch at all for an
 * inline helper called from an always-inline body (seen with objdump). Blocks [b0, b0 + nblk) of the rows after
 * the call's, grp being one block's bytes across all of them. */
#define PREFETCH_BLOCKS(next, grp, b0, nblk)                                                                      \
    for (size_t p_ = 0; p_ < (size_t)(nblk) * (grp); p_ += 64)                                                    \
    _mm_prefetch((next) + (size_t)(b0) * (grp) + p_, _MM_HINT_T0)

/* The 16 nibble bytes of block b of the 4 rows, row k in 128-bit lane k. */
#define LANES4(x0, x1, x2, x3, b)                                                                                 \
    _mm512_inserti32x4(                                                                                           \
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)x0[b].qs)),  \
                                              _mm_loadu_si128((const __m128i *)x1[b].qs), 1),                     \
                           _mm_loadu_si128((const __m128i *)x2[b].qs), 2),                                        \
        _mm_loadu_si128((const __m128i *)x3[b].qs), 3)

/* Lane 4k of the result: row k's total of its 8 lanes, held in lanes 4k..4k+3 of lo (its lanes 0-3: elements 0-15)
 * and of hi (lanes 4-7: 16-31), summed as hsum8 sums them: (lanes 4-7 + lanes 0-3), then 2 + 2, then 1 + 1. */
static inline __m512 hsum8_lanes4(__m512 lo, __m512 hi)
{
    const __m512 h = _mm512_add_ps(hi, lo);                                           /* lanes 4-7 + lanes 0-3 */
    const __m512 p = _mm512_add_ps(h, _mm512_permute_ps(h, _MM_SHUFFLE(1, 0, 3, 2))); /* 0 + 2, 1 + 3 */
    return _mm512_add_ps(p, _mm512_permute_ps(p, _MM_SHUFFLE(2, 3, 0, 1)));           /* (0 + 2) + (1 + 3) */
}

static inline void store_lanes4(float *s, __m512 lo, __m512 hi)
{
    float v[16];
    _mm512_storeu_ps(v, hsum8_lanes4(lo, hi));
    for (int k = 0; k < 4; k++)
        s[k] = v[4 * k];
}

/* ---- Q4_0: lane sums of (q - 8) * y. ggml forms them as |q - 8| times y signed by q - 8, which is the same
 * integer; here VPDPBUSD adds q * y (q unsigned) onto -8 * (sum of the lane's 4 y bytes). Row k of a quad sits in
 * 128-bit lane k of two registers: its low nibbles (elements 0-15, vec_dot's lanes 0-3) in one, its high nibbles
 * (16-31, lanes 4-7) in the other, so one shift serves 4 rows and both registers take the same scales.
 *
 * Blocks go 4 at a time. Their 16 scale products d_x * d_y (4 rows x 4 blocks) are formed in one multiply from
 * fp16 words gathered by word permutes: one 64-byte load per row holds the d of its blocks b .. b + 3 (words 0, 9,
 * 18, 27, the blocks being 18 bytes), two 64-byte loads of y hold y's 4 (34-byte blocks: words 0, 17, 34, 51).
 * The rows8 variant runs two quads over the same activation loads, offset sums and y scales (one-token decode
 * spends a fifth of its time on those). Every window read lies inside its row: b + 3 < nb. */
static inline __attribute__((always_inline)) void q4_0_rows(const int nq, int64_t n, float *s, const void *vx,
                                                            size_t bx, const void *vy)
{
    const zl_block_q8_0 *y = vy;
    const zl_block_q4_0 *x[8];
    _Pragma("GCC unroll 8") for (int k = 0; k < 4 * nq; k++)
        x[k] = ROW(k, zl_block_q4_0);
    const char *next = (const char *)vx + (size_t)(4 * nq) * bx;
    const size_t grp = (size_t)(4 * nq) * sizeof(zl_block_q4_0); /* one block of all the call's rows */
    const __m512i zero = _mm512_setzero_si512(), eight = _mm512_set1_epi8(8), m4 = _mm512_set1_epi8(0x0f);
    const __m512i row_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    /* word pairs of two rows' windows (a: words 0-31, b: 32-63): block j's d of a then b at words 4 j, 4 j + 1 */
    const __m512i pick2 = _mm512_setr_epi32(0 | (32 + 0) << 16, 0, 9 | (32 + 9) << 16, 0, 18 | (32 + 18) << 16, 0,
                                            27 | (32 + 27) << 16, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    /* rows 0-1 and rows 2-3 of each block together: word 4 j + k = row k's d of block j */
    const __m512i pick4 = _mm512_setr_epi32(0 | 1 << 16, 32 | 33 << 16, 4 | 5 << 16, 36 | 37 << 16, 8 | 9 << 16,
                                            40 | 41 << 16, 12 | 13 << 16, 44 | 45 << 16, 0, 0, 0, 0, 0, 0, 0, 0);
    /* y's d of blocks b .. b + 3, each 4 times */
    const __m512i pick_y = _mm512_setr_epi32(0, 0, 17 | 17 << 16, 17 | 17 << 16, 34 | 34 << 16, 34 | 34 << 16,
                                             51 | 51 << 16, 51 | 51 << 16, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc_lo[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() }, acc_hi[2] = { acc_lo[0], acc_lo[0] };
    const int64_t nb = n / ZL_QK;
    int64_t b = 0;
    /* block B of every quad, its products in d[q] */
#define Q4_0_BLOCK(B, d)                                                                                          \
    {                                                                                                             \
        const __m512i ylo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)y[B].qs));                    \
        const __m512i yhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(y[B].qs + 16)));             \
        const __m512i olo = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, eight, ylo));                        \
        const __m512i ohi = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, eight, yhi));                        \
        _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++) {                                                    \
            const __m512i raw = LANES4(x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3], B);                    \
            const __m512i slo = _mm512_dpbusd_epi32(olo, _mm512_and_si512(raw, m4), ylo);                         \
            const __m512i shi = _mm512_dpbusd_epi32(ohi, _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4), yhi);   \
            acc_lo[q] = _mm512_fmadd_ps(d[q], _mm512_cvtepi32_ps(slo), acc_lo[q]);                                \
            acc_hi[q] = _mm512_fmadd_ps(d[q], _mm512_cvtepi32_ps(shi), acc_hi[q]);                                \
        }                                                                                                         \
    }
    for (; b + 4 <= nb; b += 4) {
        PREFETCH_BLOCKS(next, grp, b, 4);
        const __m256i dyw = _mm512_castsi512_si256(_mm512_permutex2var_epi16(
            _mm512_loadu_si512(y + b), pick_y, _mm512_loadu_si512((const char *)(y + b) + 64)));
        const __m512 dy = _mm512_cvtph_ps(dyw);
        __m512 d[4][2]; /* block b + j, quad q: lane 4 k + i = row k's d_x * d_y */
        _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++) {
            const __m512i w01 = _mm512_permutex2var_epi16(_mm512_loadu_si512(x[4 * q] + b), pick2,
                                                          _mm512_loadu_si512(x[4 * q + 1] + b));
            const __m512i w23 = _mm512_permutex2var_epi16(_mm512_loadu_si512(x[4 * q + 2] + b), pick2,
                                                          _mm512_loadu_si512(x[4 * q + 3] + b));
            const __m512 d16 = _mm512_mul_ps(
                _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(w01, pick4, w23))), dy);
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
                d[j][q] = _mm512_permutexvar_ps(_mm512_add_epi32(row_of_lane, _mm512_set1_epi32(4 * j)), d16);
        }
        Q4_0_BLOCK(b, d[0])
        Q4_0_BLOCK(b + 1, d[1])
        Q4_0_BLOCK(b + 2, d[2])
        Q4_0_BLOCK(b + 3, d[3])
    }
    for (; b < nb; b++) {
        PREFETCH_BLOCKS(next, grp, b, 1); /* the next rows' tail blocks too */
        __m512 d[2];
        _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++) {
            const __m128 d4 = _mm_mul_ps(f16x4(x[4 * q][b].d, x[4 * q + 1][b].d, x[4 * q + 2][b].d, x[4 * q + 3][b].d),
                                         _mm_set1_ps(h2f(y[b].d)));
            d[q] = _mm512_permutexvar_ps(row_of_lane, _mm512_castps128_ps512(d4));
        }
        Q4_0_BLOCK(b, d)
    }
#undef Q4_0_BLOCK
    for (int q = 0; q < nq; q++)
        store_lanes4(s + 4 * q, acc_lo[q], acc_hi[q]);
}

void zl_q4_0_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    q4_0_rows(1, n, s, vx, bx, vy);
}

void zl_q4_0_vec_dot_rows8_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    q4_0_rows(2, n, s, vx, bx, vy);
}

/* ---- Q4_1: lane sums of q * y (q unsigned), and per row the fused sum of m_x * s_y, block by block, added after
 * the reduction. Rows 2p and 2p + 1 share a register (load_pair's halves). As for Q4_0, blocks go 4 at a time with
 * their fp16 fields gathered by word permutes: one 64-byte load per row holds d and m of its blocks b .. b + 3
 * (words 10 j and 10 j + 1, the blocks being 20 bytes), two of y hold y's d and s (36-byte blocks: words 18 j,
 * 18 j + 1); rows8 runs two quads over the same activation loads and scales. */
static inline __attribute__((always_inline)) void q4_1_rows(const int nq, int64_t n, float *s, const void *vx,
                                                            size_t bx, const void *vy)
{
    const zl_block_q8_1 *y = vy;
    const zl_block_q4_1 *x[8];
    _Pragma("GCC unroll 8") for (int k = 0; k < 4 * nq; k++)
        x[k] = ROW(k, zl_block_q4_1);
    const char *next = (const char *)vx + (size_t)(4 * nq) * bx;
    const size_t grp = (size_t)(4 * nq) * sizeof(zl_block_q4_1); /* one block of all the call's rows */
    const __m512i zero = _mm512_setzero_si512();
    /* two rows' windows (a: words 0-31, b: 32-63) -> words 4 j, 4 j + 1: d of a, b in block j; 16 + 4 j, 17 + 4 j:
     * their m */
    const __m512i pick2 = _mm512_setr_epi32(0 | 32 << 16, 0, 10 | 42 << 16, 0, 20 | 52 << 16, 0, 30 | 62 << 16, 0,
                                            1 | 33 << 16, 0, 11 | 43 << 16, 0, 21 | 53 << 16, 0, 31 | 63 << 16, 0);
    /* rows 0-1 (first source) and 2-3 (second): word 4 j + k = row k's d of block j, 16 + 4 j + k its m */
    const __m512i pick4 = _mm512_setr_epi32(0 | 1 << 16, 32 | 33 << 16, 4 | 5 << 16, 36 | 37 << 16, 8 | 9 << 16,
                                            40 | 41 << 16, 12 | 13 << 16, 44 | 45 << 16, 16 | 17 << 16,
                                            48 | 49 << 16, 20 | 21 << 16, 52 | 53 << 16, 24 | 25 << 16,
                                            56 | 57 << 16, 28 | 29 << 16, 60 | 61 << 16);
    /* y's d of block j at words 4 j .. 4 j + 3, its s at 16 + 4 j .. */
    const __m512i pick_y = _mm512_setr_epi32(0, 0, 18 | 18 << 16, 18 | 18 << 16, 36 | 36 << 16, 36 | 36 << 16,
                                             54 | 54 << 16, 54 | 54 << 16, 1 | 1 << 16, 1 | 1 << 16, 19 | 19 << 16,
                                             19 | 19 << 16, 37 | 37 << 16, 37 | 37 << 16, 55 | 55 << 16,
                                             55 | 55 << 16);
    const __m512i lane01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1); /* 0 x 8, 1 x 8 */
    const __m512i lane23 = _mm512_add_epi32(lane01, _mm512_set1_epi32(2));
    __m512 acc01[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() }, acc23[2] = { acc01[0], acc01[0] };
    __m128 mins[2] = { _mm_setzero_ps(), _mm_setzero_ps() }; /* lane k: row k's sum of m_x * s_y */
    const int64_t nb = n / ZL_QK;
    int64_t b = 0;
    /* block B of every quad; J: its lanes 4 J .. 4 J + 3 in d16 (d_x * d_y), m16 (m_x) and s16 (s_y) */
#define Q4_1_BLOCK(B, J, d16, m16, s16)                                                                           \
    {                                                                                                             \
        const __m512i qy = load_both(y[B].qs);                                                                    \
        _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++)                                                      \
        {                                                                                                         \
            const zl_block_q4_1 *const *xq = x + 4 * q;                                                           \
            mins[q] = _mm_fmadd_ps(_mm512_extractf32x4_ps(m16[q], J), _mm512_extractf32x4_ps(s16, J), mins[q]);    \
            const __m512i s01 = _mm512_dpbusd_epi32(zero, nibble_pair(xq[0][B].qs, xq[1][B].qs), qy);             \
            const __m512i s23 = _mm512_dpbusd_epi32(zero, nibble_pair(xq[2][B].qs, xq[3][B].qs), qy);             \
            acc01[q] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_add_epi32(lane01, _mm512_set1_epi32(4 * (J))), \
                                                             d16[q]),                                             \
                                       _mm512_cvtepi32_ps(s01), acc01[q]);                                        \
            acc23[q] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_add_epi32(lane23, _mm512_set1_epi32(4 * (J))), \
                                                             d16[q]),                                             \
                                       _mm512_cvtepi32_ps(s23), acc23[q]);                                        \
        }                                                                                                         \
    }
    for (; b + 4 <= nb; b += 4) {
        PREFETCH_BLOCKS(next, grp, b, 4);
        const __m512i yw = _mm512_permutex2var_epi16(_mm512_loadu_si512(y + b), pick_y,
                                                     _mm512_loadu_si512((const char *)(y + b) + 64));
        const __m512 dy = _mm512_cvtph_ps(_mm512_castsi512_si256(yw));
        const __m512 sy = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(yw, 1));
        __m512 d16[2], m16[2];
        _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++)
        {
            const __m512i w01 = _mm512_permutex2var_epi16(_mm512_loadu_si512(x[4 * q] + b), pick2,
                                                          _mm512_loadu_si512(x[4 * q + 1] + b));
            const __m512i w23 = _mm512_permutex2var_epi16(_mm512_loadu_si512(x[4 * q + 2] + b), pick2,
                                                          _mm512_loadu_si512(x[4 * q + 3] + b));
            const __m512i dm = _mm512_permutex2var_epi16(w01, pick4, w23);
            d16[q] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(dm)), dy);
            m16[q] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1));
        }
        Q4_1_BLOCK(b, 0, d16, m16, sy)
        Q4_1_BLOCK(b + 1, 1, d16, m16, sy)
        Q4_1_BLOCK(b + 2, 2, d16, m16, sy)
        Q4_1_BLOCK(b + 3, 3, d16, m16, sy)
    }
    for (; b < nb; b++) {
        PREFETCH_BLOCKS(next, grp, b, 1); /* the next rows' tail blocks too */
        __m512 d16[2], m16[2];
        _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++)
        {
            const zl_block_q4_1 *const *xq = x + 4 * q;
            d16[q] = _mm512_castps128_ps512(
                _mm_mul_ps(f16x4(xq[0][b].d, xq[1][b].d, xq[2][b].d, xq[3][b].d), _mm_set1_ps(h2f(y[b].d))));
            m16[q] = _mm512_castps128_ps512(f16x4(xq[0][b].m, xq[1][b].m, xq[2][b].m, xq[3][b].m));
        }
        const __m512 s16 = _mm512_set1_ps(h2f(y[b].s));
        Q4_1_BLOCK(b, 0, d16, m16, s16)
    }
#undef Q4_1_BLOCK
    _Pragma("GCC unroll 2") for (int q = 0; q < nq; q++)
    {
        store_pairs(s + 4 * q, acc01[q], acc23[q]);
        float m[4];
        _mm_storeu_ps(m, mins[q]);
        for (int k = 0; k < 4; k++)
            s[4 * q + k] += m[k];
    }
}

void zl_q4_1_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    q4_1_rows(1, n, s, vx, bx, vy);
}

void zl_q4_1_vec_dot_rows8_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    q4_1_rows(2, n, s, vx, bx, vy);
}

/* ---- 4 rows x 2, 3, 4 or 8 tokens (batched decode and short prompts), Q4_0, Q4_1, Q5_0 and Q8_0 ----
 * Each (row, token) gets vec_dot's bits: the weight block's codes are unpacked once for all the call's tokens (row
 * k in 128-bit lane k, low nibbles = vec_dot's lanes 0-3, high nibbles = lanes 4-7), each token's activation bytes
 * once for the 4 rows; per token two accumulators hold the 4 rows' 8 lanes, fed fma(d_x * d_y, lanes) per block in
 * block order; the Q4_1 minimum terms sit in one 16-lane vector per 4 tokens (lane 4 row + token), one fma per
 * block. At the end each (row, token) is reduced in hsum8's pairing and the minimum sum added.
 *
 * What depends on the tokens alone is prepared once per matmul (zl_tile_aux4, below) instead of once per 4 rows:
 * the activation scales as floats, Q4_1's s, and the activation bytes, plus 128 (a sign-bit flip) but for Q4_1's,
 * 4 tokens side by side per block, so that the tokens of a tile are found at fixed offsets from one pointer per 4.
 * VPDPBUSD takes one unsigned operand: Q4_1's codes are unsigned and meet the bytes as they are; for the signed
 * codes c of Q4_0 (q - 8), Q5_0 (q - 16) and Q8_0, sum of (y + 128) * c over a lane's 4 bytes is added onto -128 *
 * (sum of the lane's 4 c), a per-row term made once per block for all the call's tokens. Q5_0 is Q4_0 with a fifth
 * code bit, set byte by byte from a 64-bit mask built from the 4 rows' qh words; ggml forms the same lane sums of
 * (q - 16) * y. KIND: 0 Q4_0, 1 Q4_1, 2 Q5_0, 3 Q8_0. */

void zl_tile_aux_q8_0(const void *vy, zl_tile_aux4 *g, int j, int64_t n)
{
    const zl_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        g[b].d[j] = h2f(y[b].d);
        g[b].s[j] = 0.0f;
        for (int i = 0; i < ZL_QK; i++)
            g[b].yu[j][i] = (uint8_t)(y[b].qs[i] ^ 0x80);
    }
}

void zl_tile_aux_q8_1(const void *vy, zl_tile_aux4 *g, int j, int64_t n)
{
    const zl_block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        g[b].d[j] = h2f(y[b].d);
        g[b].s[j] = h2f(y[b].s);
        memcpy(g[b].yu[j], y[b].qs, sizeof g[b].yu[j]); /* as they are: Q4_1's codes are unsigned */
    }
}

static inline uint32_t qh_word(const void *qh)
{
    uint32_t h;
    memcpy(&h, qh, sizeof h);
    return h;
}

static_assert(offsetof(zl_block_q4_1, m) == 2 && offsetof(zl_block_q5_0, qh) == 2, "a second field right after d");

static inline uint32_t word_at(const void *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* 16 bytes from each of a..d, in 128-bit lanes 0..3. */
static inline __m512i lanes4(const void *a, const void *b, const void *c, const void *d)
{
    return _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(_mm_loadu_si128(a)),
                                                                    _mm_loadu_si128(b), 1),
                                                 _mm_loadu_si128(c), 2),
                              _mm_loadu_si128(d), 3);
}

/* Block b of weight row k (blocks of xb bytes): its fp16 scale is the first field in all four types. */
#define TILE_XB(k) ((const char *)vx + (size_t)(k) * bx + (size_t)b * xb)

static inline __attribute__((always_inline)) void tile_body(const int kind, const int nt, int64_t n, float *s,
                                                            size_t s_stride, const void *vx, size_t bx,
                                                            const zl_tile_aux4 *va, size_t a_stride)
{
    const size_t xb = kind == 0   ? sizeof(zl_block_q4_0)
                      : kind == 1 ? sizeof(zl_block_q4_1)
                      : kind == 2 ? sizeof(zl_block_q5_0)
                                  : sizeof(zl_block_q8_0);
    const size_t x_qs = kind == 0   ? offsetof(zl_block_q4_0, qs)
                        : kind == 1 ? offsetof(zl_block_q4_1, qs)
                        : kind == 2 ? offsetof(zl_block_q5_0, qs)
                                    : offsetof(zl_block_q8_0, qs);
    const __m512i m4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8), sixteen = _mm512_set1_epi8(16);
    const __m512i flip = _mm512_set1_epi8(-128); /* 0x80: as VPDPBUSD's unsigned operand, 128 */
    /* the 4 rows' first two fp16 words (d, and Q4_1's m) as 8 floats: row k's d in float 2k, m in 2k + 1 */
    const __m512i d_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
    const __m512i m_of_lane = _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7);
    const __m512i tok_of_lane = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const zl_tile_aux4 *ga[2] = { va, (const zl_tile_aux4 *)(const void *)((const char *)va + a_stride) };
    __m512 lo[8], hi[8], mins[2];
    _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) lo[t] = hi[t] = _mm512_setzero_ps();
    mins[0] = mins[1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        { /* the next 4 rows streamed in, as in one-token decode (the tiles' loads of weights from L3 or memory
           * stalled them at a quarter of the L2 speed) */
            const char *next = (const char *)vx + 4 * bx + (size_t)b * 4 * xb;
            _mm_prefetch(next, _MM_HINT_T0);
            _mm_prefetch(next + 64, _MM_HINT_T0);
            if (4 * xb > 128)
                _mm_prefetch(next + 128, _MM_HINT_T0);
        }
        __m512i qlo, qhi;
        if (kind == 3) {
            qlo = lanes4(TILE_XB(0) + x_qs, TILE_XB(1) + x_qs, TILE_XB(2) + x_qs, TILE_XB(3) + x_qs);
            qhi = lanes4(TILE_XB(0) + x_qs + 16, TILE_XB(1) + x_qs + 16, TILE_XB(2) + x_qs + 16,
                         TILE_XB(3) + x_qs + 16);
        } else {
            const __m512i raw = lanes4(TILE_XB(0) + x_qs, TILE_XB(1) + x_qs, TILE_XB(2) + x_qs, TILE_XB(3) + x_qs);
            qlo = _mm512_and_si512(raw, m4);
            qhi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
        }
        if (kind == 2) { /* byte i of lane k: element i (qlo) or 16 + i (qhi) of row k, fifth bit in qh bit i */
            const uint64_t h[4] = { qh_word(TILE_XB(0) + 2), qh_word(TILE_XB(1) + 2), qh_word(TILE_XB(2) + 2),
                                    qh_word(TILE_XB(3) + 2) }; /* qh follows d */
            const uint64_t mlo =
                (h[0] & 0xffff) | (h[1] & 0xffff) << 16 | (h[2] & 0xffff) << 32 | (h[3] & 0xffff) << 48;
            const uint64_t mhi = h[0] >> 16 | (h[1] >> 16) << 16 | (h[2] >> 16) << 32 | (h[3] >> 16) << 48;
            qlo = _mm512_mask_add_epi8(qlo, (__mmask64)mlo, qlo, sixteen);
            qhi = _mm512_mask_add_epi8(qhi, (__mmask64)mhi, qhi, sixteen);
        }
        /* signed codes, and -128 * (their lane sums): the start of every token's lane sums */
        __m512i clo = qlo, chi = qhi;
        if (kind == 0 || kind == 2) {
            clo = _mm512_sub_epi8(qlo, kind == 0 ? eight : sixteen);
            chi = _mm512_sub_epi8(qhi, kind == 0 ? eight : sixteen);
        }
        __m512i c0lo = _mm512_setzero_si512(), c0hi = c0lo;
        if (kind != 1) {
            c0lo = _mm512_sub_epi32(c0lo, _mm512_dpbusd_epi32(c0lo, flip, clo));
            c0hi = _mm512_sub_epi32(c0hi, _mm512_dpbusd_epi32(c0hi, flip, chi));
        }
        /* each row's first 32-bit word (d and the next two bytes: m for Q4_1), one conversion for the 4 rows */
        const __m512 dm = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_setr_epi32(
            (int)word_at(TILE_XB(0)), (int)word_at(TILE_XB(1)), (int)word_at(TILE_XB(2)), (int)word_at(TILE_XB(3)))));
        const __m512 dx = _mm512_permutexvar_ps(d_of_lane, dm);
        if (kind == 1) {
            const __m512 mx = _mm512_permutexvar_ps(m_of_lane, dm);
            for (int g = 0; g < (nt + 3) / 4; g++) /* tokens 4g .. 4g + 3's s (0 past the last token) */
                mins[g] = _mm512_fmadd_ps(
                    mx, _mm512_permutexvar_ps(tok_of_lane, _mm512_castps128_ps512(_mm_loadu_ps(ga[g][b].s))), mins[g]);
        }
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
        {
            const zl_tile_aux4 *a = &ga[t / 4][b];
            const __m512i ylo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)a->yu[t % 4]));
            const __m512i yhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a->yu[t % 4] + 16)));
            __m512i slo, shi;
            if (kind == 1) { /* y as it is, times the unsigned codes; the others: y + 128, times the signed codes */
                slo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), clo, ylo);
                shi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), chi, yhi);
            } else {
                slo = _mm512_dpbusd_epi32(c0lo, ylo, clo);
                shi = _mm512_dpbusd_epi32(c0hi, yhi, chi);
            }
            const __m512 d = _mm512_mul_ps(dx, _mm512_set1_ps(a->d[t % 4]));
            lo[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(slo), lo[t]);
            hi[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(shi), hi[t]);
        }
    }
    _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
    {
        float v[16], m[16];
        _mm512_storeu_ps(v, hsum8_lanes4(lo[t], hi[t]));
        _mm512_storeu_ps(m, mins[t / 4]);
        for (int k = 0; k < 4; k++)
            s[(size_t)t * s_stride + (size_t)k] = kind == 1 ? v[4 * k] + m[4 * k + t % 4] : v[4 * k];
    }
}
#undef TILE_XB

#define TILE_FN(NAME, KIND, NT)                                                                                    \
    void NAME(int64_t n, float *s, size_t s_stride, const void *x, size_t bx, const zl_tile_aux4 *a,              \
              size_t a_stride)                                                                                    \
    {                                                                                                             \
        tile_body(KIND, NT, n, s, s_stride, x, bx, a, a_stride);                                                  \
    }
TILE_FN(zl_q4_0_tile2_vnni, 0, 2)
TILE_FN(zl_q4_0_tile3_vnni, 0, 3)
TILE_FN(zl_q4_0_tile4_vnni, 0, 4)
TILE_FN(zl_q4_0_tile8_vnni, 0, 8)
TILE_FN(zl_q4_1_tile2_vnni, 1, 2)
TILE_FN(zl_q4_1_tile3_vnni, 1, 3)
TILE_FN(zl_q4_1_tile4_vnni, 1, 4)
TILE_FN(zl_q4_1_tile8_vnni, 1, 8)
TILE_FN(zl_q5_0_tile2_vnni, 2, 2)
TILE_FN(zl_q5_0_tile3_vnni, 2, 3)
TILE_FN(zl_q5_0_tile4_vnni, 2, 4)
TILE_FN(zl_q5_0_tile8_vnni, 2, 8)
TILE_FN(zl_q8_0_tile2_vnni, 3, 2)
TILE_FN(zl_q8_0_tile3_vnni, 3, 3)
TILE_FN(zl_q8_0_tile4_vnni, 3, 4)
TILE_FN(zl_q8_0_tile8_vnni, 3, 8)
#undef TILE_FN

/* ---- Q4_K ---- */

/* The 4 rows' Q4_K scale bytes unpacked: 128-bit lane k = row k's 8 six-bit scales (bytes 0-7) and 8 minimums
 * (bytes 8-15). Per row, with u0..u2 its 12 bytes as 3 little-endian words: scales 0-3 = u0 & 0x3f..,
 * 4-7 = (u2 & 0x0f..) | ((u0 >> 6) & 0x03..) << 4; minimums 0-3 = u1 & 0x3f.., 4-7 = ((u2 >> 4) & 0x0f..) |
 * ((u1 >> 6) & 0x03..) << 4. */
static inline __m512i k4_unpack4(const zl_block_q4_K *const x[4], int64_t b)
{
    const __m512i v = _mm512_inserti32x4(
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)x[0][b].scales)),
                                              _mm_loadu_si128((const __m128i *)x[1][b].scales), 1),
                           _mm_loadu_si128((const __m128i *)x[2][b].scales), 2),
        _mm_loadu_si128((const __m128i *)x[3][b].scales), 3); /* each lane: u0 u1 u2 (and 4 bytes of qs) */
    const __m512i a = _mm512_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  /* u0 u2 u1 u2 */
    const __m512i c = _mm512_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  /* u0 u0 u1 u1 */
    const __m512i low = _mm512_and_si512(_mm512_srlv_epi32(a, _mm512_set4_epi32(4, 0, 0, 0)),
                                         _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    const __m512i top = _mm512_and_si512(_mm512_srli_epi32(c, 6), _mm512_set4_epi32(0x03030303, 0, 0x03030303, 0));
    return _mm512_or_si512(low, _mm512_slli_epi32(top, 4)); /* scales 0-3, 4-7, minimums 0-3, 4-7 */
}

/* Each 128-bit lane: word j of every word position (an in-lane broadcast of a lane's 8 words). */
static inline __m512i pick_word(__m512i v, int j)
{
    return _mm512_shuffle_epi8(v, _mm512_set1_epi16((short)((2 * j + 1) << 8 | 2 * j)));
}

/* zl_q4_K_vec_dot_avx2 for 4 rows: per row and block, 8 int32 lanes sum_j sc_j * (lane's 4 products of
 * sub-block j) (maddubs into pairs, then VPDPWSSD with the scale: ggml's madd + add), fma'd with
 * d = y.d * d_x; the minimum terms as 4 int32 lanes per row (m[2i] * (bsums 4i, 4i+1) + m[2i+1] * (4i+2, 4i+3))
 * fma'd with -y.d * dmin_x; s = hsum8(acc) + ((l0 + l2) + (l1 + l3)) of the minimum lanes. */
void zl_q4_K_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_K *y = vy;
    const zl_block_q4_K *x[4] = {ROW(0, zl_block_q4_K), ROW(1, zl_block_q4_K), ROW(2, zl_block_q4_K),
                                 ROW(3, zl_block_q4_K)};
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0f);
    const __m512i row_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    __m512 acc_m = _mm512_setzero_ps(); /* lanes 4k..4k+3: row k's minimum accumulator */
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        prefetch_next(vx, bx, sizeof(zl_block_q4_K), b);
        const __m128 yd = _mm_set1_ps(y[b].d);
        const __m128 d4 = _mm_mul_ps(yd, f16x4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d));
        const __m128 dmin4 = _mm_mul_ps(_mm_xor_ps(yd, _mm_set1_ps(-0.0f)), /* -y.d, exactly */
                                        f16x4(x[0][b].dmin, x[1][b].dmin, x[2][b].dmin, x[3][b].dmin));
        const __m512i sm = k4_unpack4(x, b);
        /* minimums: 4 rows x 4 lanes */
        const __m128i per32 = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)y[b].bsums),
                                             _mm_loadu_si128((const __m128i *)(y[b].bsums + 8)));
        const __m512i mins = _mm512_cvtepu8_epi16(
            _mm512_castsi512_si256(_mm512_permutexvar_epi64(_mm512_setr_epi64(1, 3, 5, 7, 0, 0, 0, 0), sm)));
        const __m512i mprod = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(per32));
        acc_m = _mm512_fmadd_ps(_mm512_permutexvar_ps(row_of_lane, _mm512_castps128_ps512(dmin4)),
                                _mm512_cvtepi32_ps(mprod), acc_m);
        /* scales as words, 128-bit lanes [a a c c] for row pairs (0, 1) and (2, 3) */
        const __m512i sc_w = _mm512_cvtepu8_epi16(
            _mm512_castsi512_si256(_mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 0, 0, 0, 0), sm)));
        const __m512i sc01 = _mm512_shuffle_i64x2(sc_w, sc_w, _MM_SHUFFLE(1, 1, 0, 0));
        const __m512i sc23 = _mm512_shuffle_i64x2(sc_w, sc_w, _MM_SHUFFLE(3, 3, 2, 2));
        /* two chains per pair (low and high nibbles), added at the end: integer sums, exact in any order */
        __m512i lo01 = zero, hi01 = zero, lo23 = zero, hi23 = zero;
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++) {
            const __m512i ylo = load_both(y[b].qs + 64 * h), yhi = load_both(y[b].qs + 64 * h + 32);
            const __m512i bits01 = load_pair(x[0][b].qs + 32 * h, x[1][b].qs + 32 * h);
            const __m512i bits23 = load_pair(x[2][b].qs + 32 * h, x[3][b].qs + 32 * h);
            lo01 = _mm512_dpwssd_epi32(lo01, _mm512_maddubs_epi16(_mm512_and_si512(bits01, m4), ylo),
                                       pick_word(sc01, 2 * h));
            hi01 = _mm512_dpwssd_epi32(
                hi01, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(bits01, 4), m4), yhi),
                pick_word(sc01, 2 * h + 1));
            lo23 = _mm512_dpwssd_epi32(lo23, _mm512_maddubs_epi16(_mm512_and_si512(bits23, m4), ylo),
                                       pick_word(sc23, 2 * h));
            hi23 = _mm512_dpwssd_epi32(
                hi23, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(bits23, 4), m4), yhi),
                pick_word(sc23, 2 * h + 1));
        }
        const __m512i sum01 = _mm512_add_epi32(lo01, hi01), sum23 = _mm512_add_epi32(lo23, hi23);
        acc01 = _mm512_fmadd_ps(spread_pair(d4, 0, 1), _mm512_cvtepi32_ps(sum01), acc01);
        acc23 = _mm512_fmadd_ps(spread_pair(d4, 2, 3), _mm512_cvtepi32_ps(sum23), acc23);
    }
    store_pairs(s, acc01, acc23);
    for (int k = 0; k < 4; k++) {
        __m128 a = _mm512_extractf32x4_ps(acc_m, 0);
        switch (k) { /* the lane index must be a constant */
        case 1: a = _mm512_extractf32x4_ps(acc_m, 1); break;
        case 2: a = _mm512_extractf32x4_ps(acc_m, 2); break;
        case 3: a = _mm512_extractf32x4_ps(acc_m, 3); break;
        default: break;
        }
        a = _mm_add_ps(a, _mm_movehl_ps(a, a));
        a = _mm_add_ss(a, _mm_movehdup_ps(a));
        s[k] += _mm_cvtss_f32(a);
    }
}

/* ---- Q6_K ---- */

/* zl_q6_K_vec_dot_avx2 for 4 rows: per row and block, 8 int32 lanes sum_sb scale_sb * ((q + 32) products of the
 * lane) minus 32 * (sc[2i] bsums[2i] + sc[2i+1] bsums[2i+1]), fma'd with d = y.d * d_x; s = hsum8(acc). */
void zl_q6_K_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_K *y = vy;
    const zl_block_q6_K *x[4] = {ROW(0, zl_block_q6_K), ROW(1, zl_block_q6_K), ROW(2, zl_block_q6_K),
                                 ROW(3, zl_block_q6_K)};
    const __m512i zero = _mm512_setzero_si512(), m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        prefetch_next(vx, bx, sizeof(zl_block_q6_K), b);
        const __m128 d4 = _mm_mul_ps(_mm_set1_ps(y[b].d),
                                     f16x4(x[0][b].d, x[1][b].d, x[2][b].d, x[3][b].d));
        const __m512i sc_all = _mm512_inserti32x4(
            _mm512_inserti32x4(
                _mm512_inserti32x4(_mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)x[0][b].scales)),
                                   _mm_loadu_si128((const __m128i *)x[1][b].scales), 1),
                _mm_loadu_si128((const __m128i *)x[2][b].scales), 2),
            _mm_loadu_si128((const __m128i *)x[3][b].scales), 3); /* lane k: row k's 16 scales */
        /* scales as words, 128-bit lanes [a even, a odd, c even, c odd] for row pairs (0, 1) and (2, 3): the
         * sub-block pair (sb, sb + 1) of a 32-value chunk is word sb / 2 of every lane */
        const __m512i deint = _mm512_shuffle_epi8(
            sc_all, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
        const __m512i sc01 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(deint));
        const __m512i sc23 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(deint, 1));
        /* the scales as words in order, row 0's 16 then row 1's (and rows 2, 3), for the offset */
        const __m512i w01 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(sc_all));
        const __m512i w23 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(sc_all, 1));
        const __m512i bsums = load_both(y[b].bsums);
        /* two chains per pair (even and odd k), added at the end: integer sums, exact in any order */
        __m512i sum01[2] = {_mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_madd_epi16(bsums, w01), 5)), zero};
        __m512i sum23[2] = {_mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_madd_epi16(bsums, w23), 5)), zero};
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i l0_01 = load_pair(x[0][b].ql + 64 * h, x[1][b].ql + 64 * h);
            const __m512i l1_01 = load_pair(x[0][b].ql + 64 * h + 32, x[1][b].ql + 64 * h + 32);
            const __m512i hb01 = load_pair(x[0][b].qh + 32 * h, x[1][b].qh + 32 * h);
            const __m512i l0_23 = load_pair(x[2][b].ql + 64 * h, x[3][b].ql + 64 * h);
            const __m512i l1_23 = load_pair(x[2][b].ql + 64 * h + 32, x[3][b].ql + 64 * h + 32);
            const __m512i hb23 = load_pair(x[2][b].qh + 32 * h, x[3][b].qh + 32 * h);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i yv = load_both(y[b].qs + 128 * h + 32 * k);
                const int sb = 8 * h + 2 * k;
#define Q6_PAIR(P)                                                                                                \
    {                                                                                                             \
        const __m512i src = (k & 1) ? l1_##P : l0_##P;                                                            \
        const __m512i low = _mm512_and_si512(k >= 2 ? _mm512_srli_epi16(src, 4) : src, m4);                      \
        const __m512i high = _mm512_and_si512(k == 2 ? hb##P : k < 2 ? _mm512_slli_epi16(hb##P, 4 - 2 * k)        \
                                                                     : _mm512_srli_epi16(hb##P, 2), m30);          \
        sum##P[k & 1] = _mm512_dpwssd_epi32(sum##P[k & 1], _mm512_maddubs_epi16(_mm512_or_si512(low, high), yv),  \
                                            pick_word(sc##P, sb / 2));                                            \
    }
                Q6_PAIR(01)
                Q6_PAIR(23)
#undef Q6_PAIR
            }
        }
        acc01 = _mm512_fmadd_ps(spread_pair(d4, 0, 1), _mm512_cvtepi32_ps(_mm512_add_epi32(sum01[0], sum01[1])), acc01);
        acc23 = _mm512_fmadd_ps(spread_pair(d4, 2, 3), _mm512_cvtepi32_ps(_mm512_add_epi32(sum23[0], sum23[1])), acc23);
    }
    store_pairs(s, acc01, acc23);
}

#undef ROW

#endif
