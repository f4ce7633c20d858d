/*
 * matmul_int8_amx.c - quantized weights x int8 activations on AMX tiles (amx.h's int8 path): the tile kernel and
 * the AVX-512 unpacking of weight rows into panels.
 *
 * Kernel: per group of 16 tokens, for each sub-block j, one TDPBSSD gives the 16 tokens x 16 rows exact integer sums
 * (A: the tokens' codes of the sub-block, straight from their converted rows with the row stride; B: the panel's
 * codes), stored to a 1 KB buffer and folded into 16 float accumulators (one per token, the 16 rows in the lanes):
 * acc = fma(cvt(isum), sw_j * da_j[t], acc), and with minimums acc = fma(mw_j, sa_j[t], acc). Two C tiles alternate
 * so the next sub-block's product can run while the previous one is folded. The float steps are zl_amx_int8_ref's.
 *
 * Tiles: tmm0, tmm1 C (16 x 16 int32); tmm2, tmm3 A (16 tokens x S bytes); tmm4, tmm5 B (S / 4 rows x 64 bytes).
 * Compiled with the *_amx.c flags; called only where zl_amx_available() (ops.c via amx.c). Pure.
 */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/amx.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/simd_amx.h"
#include "core/dtype.h"
#include "core/fp16.h"

static void config_int8(int S)
{
    zl_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 2; i++) {
        c.rows[i] = 16, c.colsb[i] = 64;               /* C */
        c.rows[2 + i] = 16, c.colsb[2 + i] = (uint16_t)S; /* A */
        c.rows[4 + i] = (uint8_t)(S / 4), c.colsb[4 + i] = 64; /* B */
    }
    _tile_loadconfig(&c);
}

/* The 16 accumulators of a token group are named variables a0 .. a15 (an array lives on the stack whatever the
 * compiler is told). FOLD folds the stored C tile of sub-block j into them: a_t = fma(cvt(isum), sw_j * da_j[t],
 * a_t), then with minimums a_t = fma(mw_j, sa_j[t], a_t). */
#define FOLD1(t)                                                                                                \
    do {                                                                                                        \
        a##t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb_ + 16 * (t))),                            \
                               _mm512_mul_ps(swj_, _mm512_set1_ps(da[(t) * nsub + j_])), a##t);                  \
        if (mins) a##t = _mm512_fmadd_ps(mwj_, _mm512_set1_ps(sa[(t) * nsub + j_]), a##t);                       \
    } while (0)
#define FOLD(buf, j)                                                                                            \
    do {                                                                                                        \
        const int32_t *cb_ = (buf);                                                                             \
        const int64_t j_ = (j);                                                                                 \
        const __m512 swj_ = _mm512_load_ps(sw + j_ * 16);                                                       \
        const __m512 mwj_ = mins ? _mm512_load_ps(mw + j_ * 16) : _mm512_setzero_ps();                          \
        FOLD1(0); FOLD1(1); FOLD1(2); FOLD1(3); FOLD1(4); FOLD1(5); FOLD1(6); FOLD1(7);                         \
        FOLD1(8); FOLD1(9); FOLD1(10); FOLD1(11); FOLD1(12); FOLD1(13); FOLD1(14); FOLD1(15);                   \
    } while (0)

/* Sub-block j's product into C tile C (A tile A, B tile B), stored to buf. The tile numbers must be literals. */
#define TILE_STEP(C, A, B, j, buf)                                                                              \
    do {                                                                                                        \
        _tile_loadd(A, xg + off[j], (long)xq_stride);                                                           \
        _tile_loadd(B, codes + (size_t)(j) * bstep, 64);                                                        \
        _tile_zero(C);                                                                                          \
        _tile_dpbssd(C, A, B);                                                                                  \
        _tile_stored(C, buf, 64);                                                                               \
    } while (0)
#define STEP0(j) TILE_STEP(0, 2, 4, j, cbuf[0])
#define STEP1(j) TILE_STEP(1, 3, 5, j, cbuf[1])

/* One group of 16 tokens over every sub-block, its results stored to y (m tokens, rows in rmask). The fold of
 * sub-block j - 1 comes after sub-block j's product has been issued, so the vector unit reads a C tile stored one
 * step earlier while the tile unit works on the next. */
static inline __attribute__((always_inline)) void group(int S, int64_t nsub, const uint32_t *off, const char *xg,
                                                         size_t xq_stride, const float *da, const float *sa,
                                                         const int8_t *codes, const float *sw, const float *mw,
                                                         bool mins, int m, __mmask16 rmask, float *y, size_t ldy)
{
    _Alignas(64) int32_t cbuf[2][256];
    const size_t bstep = (size_t)S * 16;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
           a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
    STEP0(0);
    int64_t j = 1;
    for (; j + 1 < nsub; j += 2) {
        STEP1(j);
        FOLD(cbuf[0], j - 1);
        STEP0(j + 1);
        FOLD(cbuf[1], j);
    }
    if (j < nsub) {
        STEP1(j);
        FOLD(cbuf[0], j - 1);
        FOLD(cbuf[1], j);
    } else {
        FOLD(cbuf[0], j - 1);
    }
    const __m512 acc[16] = { a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15 };
    for (int t = 0; t < m; t++) _mm512_mask_storeu_ps(y + (size_t)t * ldy, rmask, acc[t]);
}

void zl_amx_int8_tiles(int S, int64_t nsub, const uint32_t *off, const void *xq, size_t xq_stride, const float *da,
                       const float *sa, int nt, const int8_t *codes, const float *sw, const float *mw, int nrows,
                       float *y, size_t ldy)
{
    config_int8(S);
    const __mmask16 rmask = nrows >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nrows) - 1);
    for (int g = 0; g < nt; g += 16) {
        const char *xg = (const char *)xq + (size_t)g * xq_stride;
        const float *dg = da + (size_t)g * (size_t)nsub, *sg = sa ? sa + (size_t)g * (size_t)nsub : NULL;
        const int m = nt - g < 16 ? nt - g : 16;
        float *yg = y + (size_t)g * ldy;
        if (mw)
            group(S, nsub, off, xg, xq_stride, dg, sg, codes, sw, mw, true, m, rmask, yg, ldy);
        else
            group(S, nsub, off, xg, xq_stride, dg, NULL, codes, sw, NULL, false, m, rmask, yg, ldy);
    }
    _tile_release();
}

/* ---- panels ---- */

/* X16 Q4_0 group (16 rows): each block's 16 scales are one vector; chunk q (16 rows x 4 bytes) holds values 4q ..
 * 4q + 3 in its low nibbles and 16 + 4q .. in its high ones: the panel's rows q and 4 + q as they stand. */
static void panel_x16_q4_0(const uint8_t *g, int64_t nb, int8_t *codes, float *sw)
{
    const __m512i lo4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *gb = g + (size_t)b * 16 * sizeof(zl_block_q4_0);
        _mm512_store_ps(sw + b * 16, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb)));
        int8_t *cb = codes + b * 512;
        for (int q = 0; q < 4; q++) {
            const __m512i v = _mm512_loadu_si512(gb + 32 + 64 * q);
            _mm512_store_si512(cb + 64 * q, _mm512_sub_epi8(_mm512_and_si512(v, lo4), eight));
            _mm512_store_si512(cb + 64 * (4 + q), _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), lo4), eight));
        }
    }
}

/* Scale and minimum of sub-block j of a Q4_K / Q5_K block's 12 scale bytes. */
static inline void k4_sm(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* X16 Q4_K group: chunk (c, q) holds values 4q .. 4q + 3 of sub-block 2c (low nibbles) and of 2c + 1 (high). */
static void panel_x16_q4_K(const uint8_t *g, int64_t nb, int8_t *codes, float *sw, float *mw)
{
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *gb = g + (size_t)b * 16 * sizeof(zl_block_q4_K);
        _Alignas(64) float d[16], dm[16];
        _mm512_store_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)gb)));
        _mm512_store_ps(dm, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(gb + 32))));
        for (int r = 0; r < 16; r++) {
            uint8_t sc12[12];
            for (int u = 0; u < 3; u++) memcpy(sc12 + 4 * u, gb + 64 + (size_t)(u * 16 + r) * 4, 4);
            for (int j = 0; j < 8; j++) {
                int sc, m;
                k4_sm(j, sc12, &sc, &m);
                sw[(b * 8 + j) * 16 + r] = d[r] * (float)sc;
                mw[(b * 8 + j) * 16 + r] = -(dm[r] * (float)m);
            }
        }
        for (int c = 0; c < 4; c++)
            for (int q = 0; q < 8; q++) {
                const __m512i v = _mm512_loadu_si512(gb + 256 + (size_t)(c * 8 + q) * 64);
                _mm512_store_si512(codes + (b * 8 + 2 * c) * 512 + q * 64, _mm512_and_si512(v, lo4));
                _mm512_store_si512(codes + (b * 8 + 2 * c + 1) * 512 + q * 64,
                                   _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4));
            }
    }
}

/* ---- rows in the file's layout: each row's codes decoded into a 16-row slice, then transposed by dwords ---- */

/* Writes the codes of block b of one row (32 values, or 256 for the K-quants) to c, its sub-blocks' sw and mw at
 * sw[j * 16], mw[j * 16] for its sub-blocks j = 0, 1, ... (mw untouched for types without minimums). */
static void decode_block(uint32_t type, const uint8_t *row, int64_t b, int8_t *c, float *sw, float *mw)
{
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    switch (type) {
    case ZL_Q8_0: {
        const zl_block_q8_0 *x = (const zl_block_q8_0 *)(const void *)row + b;
        memcpy(c, x->qs, 32);
        sw[0] = zl_fp16_to_fp32(x->d);
        return;
    }
    case ZL_Q4_0: case ZL_Q4_1: {
        const uint8_t *qs;
        __m128i off;
        if (type == ZL_Q4_1) {
            const zl_block_q4_1 *x = (const zl_block_q4_1 *)(const void *)row + b;
            qs = x->qs, sw[0] = zl_fp16_to_fp32(x->d), mw[0] = zl_fp16_to_fp32(x->m), off = _mm_setzero_si128();
        } else {
            const zl_block_q4_0 *x = (const zl_block_q4_0 *)(const void *)row + b;
            qs = x->qs, sw[0] = zl_fp16_to_fp32(x->d), off = _mm_set1_epi8(8);
        }
        const __m128i v = _mm_loadu_si128((const __m128i *)qs);
        _mm_storeu_si128((__m128i *)c, _mm_sub_epi8(_mm_and_si128(v, lo4), off));
        _mm_storeu_si128((__m128i *)(c + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), lo4), off));
        return;
    }
    case ZL_Q5_0: {
        const zl_block_q5_0 *x = (const zl_block_q5_0 *)(const void *)row + b;
        uint32_t qh;
        memcpy(&qh, x->qh, 4);
        sw[0] = zl_fp16_to_fp32(x->d);
        const __m128i v = _mm_loadu_si128((const __m128i *)x->qs), sixteen = _mm_set1_epi8(16);
        const __m128i l = _mm_and_si128(v, lo4), h = _mm_and_si128(_mm_srli_epi16(v, 4), lo4);
        _mm_storeu_si128((__m128i *)c, _mm_sub_epi8(_mm_mask_add_epi8(l, (__mmask16)qh, l, sixteen), sixteen));
        _mm_storeu_si128((__m128i *)(c + 16),
                         _mm_sub_epi8(_mm_mask_add_epi8(h, (__mmask16)(qh >> 16), h, sixteen), sixteen));
        return;
    }
    case ZL_Q4_K: case ZL_Q5_K: {
        const uint8_t *qs, *qh = NULL, *scales;
        uint16_t hd, hdmin;
        if (type == ZL_Q5_K) {
            const zl_block_q5_K *x = (const zl_block_q5_K *)(const void *)row + b;
            qs = x->qs, qh = x->qh, scales = x->scales, hd = x->d, hdmin = x->dmin;
        } else {
            const zl_block_q4_K *x = (const zl_block_q4_K *)(const void *)row + b;
            qs = x->qs, scales = x->scales, hd = x->d, hdmin = x->dmin;
        }
        const __m256i m4 = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16);
        const __m256i h5 = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        for (int h = 0; h < 4; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
            __m256i l = _mm256_and_si256(v, m4), u = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (qh) {
                l = _mm256_mask_add_epi8(l, _mm256_test_epi8_mask(h5, _mm256_set1_epi8((char)(1 << (2 * h)))), l,
                                         sixteen);
                u = _mm256_mask_add_epi8(u, _mm256_test_epi8_mask(h5, _mm256_set1_epi8((char)(2 << (2 * h)))), u,
                                         sixteen);
            }
            _mm256_storeu_si256((__m256i *)(c + 64 * h), l);
            _mm256_storeu_si256((__m256i *)(c + 64 * h + 32), u);
        }
        const float d = zl_fp16_to_fp32(hd), dmin = zl_fp16_to_fp32(hdmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k4_sm(j, scales, &sc, &m);
            sw[j * 16] = d * (float)sc;
            mw[j * 16] = -(dmin * (float)m);
        }
        return;
    }
    case ZL_Q6_K: {
        const zl_block_q6_K *x = (const zl_block_q6_K *)(const void *)row + b;
        const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3), t2 = _mm256_set1_epi8(32);
        for (int h = 0; h < 2; h++) {
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            for (int k = 0; k < 4; k++) {
                const __m256i lo = k & 1 ? l1 : l0;
                const __m256i low4 = k < 2 ? _mm256_and_si256(lo, m4) : _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
                const __m256i hi2 = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m2);
                const __m256i q = _mm256_or_si256(low4, _mm256_slli_epi16(hi2, 4));
                _mm256_storeu_si256((__m256i *)(c + 128 * h + 32 * k), _mm256_sub_epi8(q, t2));
            }
        }
        const float d = zl_fp16_to_fp32(x->d);
        for (int s = 0; s < 16; s++) sw[s * 16] = d * (float)x->scales[s];
        return;
    }
    default: return;
    }
}

/* Rows in the file's layout: per slice of 64 values (one 256-block for the K-quants), each row's blocks decoded into
 * a 16 x 64-byte buffer, then the 16 x 16 dwords transposed into the panel (whose layout is [k / 4][row][k % 4]
 * whatever S is). */
static void panel_rows(uint32_t type, const uint8_t *w, size_t nb1, int nrows, int64_t ne0, int8_t *codes, float *sw,
                       float *mw)
{
    const int S = zl_amx_sub(type);
    const int64_t bs = zl_type_traits_get(type)->block_size, nb = ne0 / bs, per = bs / S;
    _Alignas(64) int8_t slice[4][16][64];
    memset(slice, 0, sizeof slice);
    for (int64_t b = 0; b < nb;) {
        const int64_t k0 = b * bs;
        const int nblk = bs == ZL_QK_K ? 1 : (b + 1 < nb ? 2 : 1); /* 32-blocks go two per 64 values */
        for (int r = 0; r < nrows; r++)
            for (int i = 0; i < nblk; i++) {
                int8_t *dst = bs == ZL_QK_K ? NULL : &slice[0][r][32 * i];
                _Alignas(64) int8_t kbuf[ZL_QK_K];
                decode_block(type, w + (size_t)r * nb1, b + i, dst ? dst : kbuf, sw + ((b + i) * per) * 16 + r,
                             mw ? mw + ((b + i) * per) * 16 + r : NULL);
                if (!dst)
                    for (int s = 0; s < 4; s++) memcpy(slice[s][r], kbuf + 64 * s, 64);
            }
        for (int r = nrows; r < 16; r++)
            for (int64_t j = b * per; j < (b + nblk) * per; j++) {
                sw[j * 16 + r] = 0.0f;
                if (mw) mw[j * 16 + r] = 0.0f;
            }
        const int nslices = bs == ZL_QK_K ? 4 : 1;
        for (int s = 0; s < nslices; s++)
            zl_transpose16_dwords(&slice[s][0][0], nblk == 2 || bs == ZL_QK_K ? 16 : 8, codes + (k0 + 64 * s) * 16);
        b += nblk;
    }
}

void zl_amx_int8_panel(uint32_t type, bool x16, const void *w, size_t nb1, int nrows, int64_t ne0, int8_t *codes,
                       float *sw, float *mw)
{
    if (x16 && nrows == 16 && type == ZL_Q4_0) {
        panel_x16_q4_0(w, ne0 / ZL_QK, codes, sw);
        return;
    }
    if (x16 && nrows == 16 && type == ZL_Q4_K && mw) {
        panel_x16_q4_K(w, ne0 / ZL_QK_K, codes, sw, mw);
        return;
    }
    if (!x16) {
        panel_rows(type, w, nb1, nrows, ne0, codes, sw, mw);
        return;
    }
    zl_amx_int8_panel_ref(type, x16, w, nb1, nrows, ne0, codes, sw, mw);
}

/* ---- the int8 panel dequantized into a bf16 panel (quantized weights on the bf16 tiles) ---- */

void zl_amx_int8_to_bf16(int S, int64_t ne0, const int8_t *codes, const float *sw, const float *mw, uint16_t *panel)
{
    /* Group g (values 4g .. 4g + 3 of the 16 rows) is one 64-byte row of codes, row r's four at bytes 4r .. 4r + 3:
     * quarter i holds rows 4i .. 4i + 3, lane l row 4i + l / 4. Its floats w = sw * c + mw are rounded to bf16 in
     * the same (row, k) order, 16 dwords per 8 rows: dword 2r' + h is row r''s pair h (values 4g + 2h, + 1), and the
     * panel's pair rows 2g and 2g + 1 take the even and the odd dwords. */
    __m512i rep[4];
    for (int i = 0; i < 4; i++) {
        _Alignas(64) int32_t ix[16];
        for (int l = 0; l < 16; l++) ix[l] = 4 * i + l / 4;
        rep[i] = _mm512_load_si512(ix);
    }
    _Alignas(64) int32_t ev[16], od[16];
    for (int d = 0; d < 16; d++) ev[d] = 2 * d, od[d] = 2 * d + 1; /* 16 + : the second source (rows 8 .. 15) */
    const __m512i even = _mm512_load_si512(ev), odd = _mm512_load_si512(od);
    for (int64_t g = 0; g < ne0 / 4; g++) {
        const int64_t j = 4 * g / S;
        const __m512 swj = _mm512_load_ps(sw + j * 16), mwj = mw ? _mm512_load_ps(mw + j * 16) : _mm512_setzero_ps();
        const int8_t *src = codes + g * 64;
        __m512 f[4];
        for (int i = 0; i < 4; i++) {
            const __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(src + 16 * i))));
            f[i] = _mm512_fmadd_ps(c, _mm512_permutexvar_ps(rep[i], swj), _mm512_permutexvar_ps(rep[i], mwj));
        }
        const __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(f[1], f[0]), hi = (__m512i)_mm512_cvtne2ps_pbh(f[3], f[2]);
        _mm512_store_si512(panel + (2 * g) * 32, _mm512_permutex2var_epi32(lo, even, hi));
        _mm512_store_si512(panel + (2 * g + 1) * 32, _mm512_permutex2var_epi32(lo, odd, hi));
    }
}
