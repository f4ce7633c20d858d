/*
 * quant_rows4_vnni.c - one-token decode kernels that take 4 weight rows per call (Q4_0, Q4_1, Q4_K, Q6_K) with
 * AVX-512 BW/VL/VNNI, each row's result bit-identical to the vec_dot the "avx512vnni" set uses for its type
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

/* The 4 rows' fp16 words at byte offset `off` of block b, as 4 floats. */
static inline __m128 f16x4(const void *vx, size_t bx, size_t block, int64_t b, size_t off)
{
    uint16_t h[4];
    for (int k = 0; k < 4; k++)
        memcpy(&h[k], (const char *)vx + (size_t)k * bx + (size_t)b * block + off, 2);
    return _mm_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], 0, 0, 0, 0));
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

/* ---- Q4_0: lane sums of (q - 8) * y. ggml forms them as |q - 8| times y signed by q - 8, which is the same
 * integer; here VPDPBUSD adds q * y (q unsigned) onto -8 * (sum of the lane's 4 y bytes). */
void zl_q4_0_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_0 *y = vy;
    const zl_block_q4_0 *x0 = ROW(0, zl_block_q4_0), *x1 = ROW(1, zl_block_q4_0), *x2 = ROW(2, zl_block_q4_0),
                        *x3 = ROW(3, zl_block_q4_0);
    const __m512i zero = _mm512_setzero_si512(), eight = _mm512_set1_epi8(8);
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        prefetch_next(vx, bx, sizeof(zl_block_q4_0), b);
        const __m512i qy = load_both(y[b].qs);
        const __m512i base = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, eight, qy));
        const __m128 d4 = _mm_mul_ps(f16x4(vx, bx, sizeof(zl_block_q4_0), b, offsetof(zl_block_q4_0, d)),
                                     _mm_set1_ps(h2f(y[b].d)));
        const __m512i s01 = _mm512_dpbusd_epi32(base, nibble_pair(x0[b].qs, x1[b].qs), qy);
        const __m512i s23 = _mm512_dpbusd_epi32(base, nibble_pair(x2[b].qs, x3[b].qs), qy);
        acc01 = _mm512_fmadd_ps(spread_pair(d4, 0, 1), _mm512_cvtepi32_ps(s01), acc01);
        acc23 = _mm512_fmadd_ps(spread_pair(d4, 2, 3), _mm512_cvtepi32_ps(s23), acc23);
    }
    store_pairs(s, acc01, acc23);
}

/* ---- Q4_1: lane sums of q * y (q unsigned), and per row the fused sum of m_x * s_y, block by block, added after
 * the reduction. */
void zl_q4_1_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_1 *y = vy;
    const zl_block_q4_1 *x0 = ROW(0, zl_block_q4_1), *x1 = ROW(1, zl_block_q4_1), *x2 = ROW(2, zl_block_q4_1),
                        *x3 = ROW(3, zl_block_q4_1);
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    __m128 mins = _mm_setzero_ps(); /* lane k: row k's sum of m_x * s_y */
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        prefetch_next(vx, bx, sizeof(zl_block_q4_1), b);
        const __m512i qy = load_both(y[b].qs);
        const __m128 d4 = _mm_mul_ps(f16x4(vx, bx, sizeof(zl_block_q4_1), b, offsetof(zl_block_q4_1, d)),
                                     _mm_set1_ps(h2f(y[b].d)));
        mins = _mm_fmadd_ps(f16x4(vx, bx, sizeof(zl_block_q4_1), b, offsetof(zl_block_q4_1, m)),
                            _mm_set1_ps(h2f(y[b].s)), mins);
        const __m512i s01 = _mm512_dpbusd_epi32(zero, nibble_pair(x0[b].qs, x1[b].qs), qy);
        const __m512i s23 = _mm512_dpbusd_epi32(zero, nibble_pair(x2[b].qs, x3[b].qs), qy);
        acc01 = _mm512_fmadd_ps(spread_pair(d4, 0, 1), _mm512_cvtepi32_ps(s01), acc01);
        acc23 = _mm512_fmadd_ps(spread_pair(d4, 2, 3), _mm512_cvtepi32_ps(s23), acc23);
    }
    store_pairs(s, acc01, acc23);
    float m[4];
    _mm_storeu_ps(m, mins);
    for (int k = 0; k < 4; k++)
        s[k] += m[k];
}

/* ---- Q4_K ---- */

/* A Q4_K block's 12 scale bytes -> the 8 six-bit scales (sc) and minimums (m), one byte each. */
static inline void k4_unpack(const uint8_t *q, uint64_t *sc, uint64_t *m)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    const uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    const uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4;
    const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4;
    *sc = (uint64_t)s_lo | (uint64_t)s_hi << 32;
    *m = (uint64_t)m_lo | (uint64_t)m_hi << 32;
}

/* Words 0-15 = sub-block j's scale of row a, 16-31 = of row c, from scales as 16 words (a's 8, then c's 8). */
static inline __m512i pick_scale(__m512i sc, int j)
{
    const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)j)),
                                           _mm256_set1_epi16((short)(8 + j)), 1);
    return _mm512_permutexvar_epi16(idx, sc);
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
        const __m128 d4 = _mm_mul_ps(yd, f16x4(vx, bx, sizeof(zl_block_q4_K), b, offsetof(zl_block_q4_K, d)));
        const __m128 dmin4 = _mm_mul_ps(_mm_xor_ps(yd, _mm_set1_ps(-0.0f)), /* -y.d, exactly */
                                        f16x4(vx, bx, sizeof(zl_block_q4_K), b, offsetof(zl_block_q4_K, dmin)));
        uint64_t sc[4], m[4];
        for (int k = 0; k < 4; k++)
            k4_unpack(x[k][b].scales, &sc[k], &m[k]);
        /* minimums: 4 rows x 4 lanes */
        const __m128i per32 = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)y[b].bsums),
                                             _mm_loadu_si128((const __m128i *)(y[b].bsums + 8)));
        const __m512i mins = _mm512_cvtepu8_epi16(_mm256_setr_epi64x((long long)m[0], (long long)m[1],
                                                                     (long long)m[2], (long long)m[3]));
        const __m512i mprod = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(per32));
        acc_m = _mm512_fmadd_ps(_mm512_permutexvar_ps(row_of_lane, _mm512_castps128_ps512(dmin4)),
                                _mm512_cvtepi32_ps(mprod), acc_m);
        /* scale sums, row pairs (0, 1) and (2, 3) */
        const __m512i sc01 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_set_epi64x((long long)sc[1],
                                                                                         (long long)sc[0])));
        const __m512i sc23 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_set_epi64x((long long)sc[3],
                                                                                         (long long)sc[2])));
        __m512i sum01 = zero, sum23 = zero;
        for (int h = 0; h < 4; h++) {
            const __m512i ylo = load_both(y[b].qs + 64 * h), yhi = load_both(y[b].qs + 64 * h + 32);
            const __m512i bits01 = load_pair(x[0][b].qs + 32 * h, x[1][b].qs + 32 * h);
            const __m512i bits23 = load_pair(x[2][b].qs + 32 * h, x[3][b].qs + 32 * h);
            sum01 = _mm512_dpwssd_epi32(sum01, _mm512_maddubs_epi16(_mm512_and_si512(bits01, m4), ylo),
                                        pick_scale(sc01, 2 * h));
            sum01 = _mm512_dpwssd_epi32(
                sum01, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(bits01, 4), m4), yhi),
                pick_scale(sc01, 2 * h + 1));
            sum23 = _mm512_dpwssd_epi32(sum23, _mm512_maddubs_epi16(_mm512_and_si512(bits23, m4), ylo),
                                        pick_scale(sc23, 2 * h));
            sum23 = _mm512_dpwssd_epi32(
                sum23, _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(bits23, 4), m4), yhi),
                pick_scale(sc23, 2 * h + 1));
        }
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

/* Words 0-7 = scale sb of row a, 8-15 = sb + 1 of row a, 16-23 = sb of row c, 24-31 = sb + 1 of row c, from the
 * pair's scales as 32 words (a's 16, then c's 16). */
static inline __m512i pick_scale2(__m512i sc, int sb)
{
    const __m512i base = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
        _mm256_setr_epi16(16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17), 1);
    return _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short)sb)), sc);
}

/* zl_q6_K_vec_dot_avx2 for 4 rows: per row and block, 8 int32 lanes sum_sb scale_sb * ((q + 32) products of the
 * lane) minus 32 * (sc[2i] bsums[2i] + sc[2i+1] bsums[2i+1]), fma'd with d = y.d * d_x; s = hsum8(acc). */
void zl_q6_K_vec_dot_rows4_vnni(int64_t n, float *s, const void *vx, size_t bx, const void *vy)
{
    const zl_block_q8_K *y = vy;
    const zl_block_q6_K *x[4] = {ROW(0, zl_block_q6_K), ROW(1, zl_block_q6_K), ROW(2, zl_block_q6_K),
                                 ROW(3, zl_block_q6_K)};
    const __m512i m4 = _mm512_set1_epi8(0x0f), m3 = _mm512_set1_epi8(3);
    __m512 acc01 = _mm512_setzero_ps(), acc23 = acc01;
    for (int64_t b = 0; b < n / ZL_QK_K; b++) {
        prefetch_next(vx, bx, sizeof(zl_block_q6_K), b);
        const __m128 d4 = _mm_mul_ps(_mm_set1_ps(y[b].d),
                                     f16x4(vx, bx, sizeof(zl_block_q6_K), b, offsetof(zl_block_q6_K, d)));
        const __m512i sc01 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[0][b].scales))),
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[1][b].scales)), 1);
        const __m512i sc23 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[2][b].scales))),
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[3][b].scales)), 1);
        const __m512i bsums = load_both(y[b].bsums);
        __m512i sum01 = _mm512_sub_epi32(_mm512_setzero_si512(),
                                         _mm512_slli_epi32(_mm512_madd_epi16(bsums, sc01), 5));
        __m512i sum23 = _mm512_sub_epi32(_mm512_setzero_si512(),
                                         _mm512_slli_epi32(_mm512_madd_epi16(bsums, sc23), 5));
        for (int h = 0; h < 2; h++) {
            const __m512i l0_01 = load_pair(x[0][b].ql + 64 * h, x[1][b].ql + 64 * h);
            const __m512i l1_01 = load_pair(x[0][b].ql + 64 * h + 32, x[1][b].ql + 64 * h + 32);
            const __m512i hb01 = load_pair(x[0][b].qh + 32 * h, x[1][b].qh + 32 * h);
            const __m512i l0_23 = load_pair(x[2][b].ql + 64 * h, x[3][b].ql + 64 * h);
            const __m512i l1_23 = load_pair(x[2][b].ql + 64 * h + 32, x[3][b].ql + 64 * h + 32);
            const __m512i hb23 = load_pair(x[2][b].qh + 32 * h, x[3][b].qh + 32 * h);
            for (int k = 0; k < 4; k++) {
                const __m512i yv = load_both(y[b].qs + 128 * h + 32 * k);
                const int sb = 8 * h + 2 * k;
#define Q6_PAIR(P)                                                                                                \
    {                                                                                                             \
        const __m512i src = (k & 1) ? l1_##P : l0_##P;                                                            \
        const __m512i low = _mm512_and_si512(k >= 2 ? _mm512_srli_epi16(src, 4) : src, m4);                      \
        const __m512i high = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb##P, 2 * k), m3), 4);        \
        sum##P = _mm512_dpwssd_epi32(sum##P, _mm512_maddubs_epi16(_mm512_or_si512(low, high), yv),                \
                                     pick_scale2(sc##P, sb));                                                     \
    }
                Q6_PAIR(01)
                Q6_PAIR(23)
#undef Q6_PAIR
            }
        }
        acc01 = _mm512_fmadd_ps(spread_pair(d4, 0, 1), _mm512_cvtepi32_ps(sum01), acc01);
        acc23 = _mm512_fmadd_ps(spread_pair(d4, 2, 3), _mm512_cvtepi32_ps(sum23), acc23);
    }
    store_pairs(s, acc01, acc23);
}

#undef ROW

#endif
