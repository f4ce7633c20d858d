/*
 * matmul_bf16_amx.c - amx.h's bf16 path: activations rounded to bf16, F16 / BF16 weight rows turned into bf16
 * panels, and the TDPBF16PS kernel that multiplies them (also used for quantized weights, whose int8 panels
 * zl_amx_int8_to_bf16 dequantizes into the same layout).
 *
 * Kernel: 2 x 2 register blocking, 32 tokens x 32 rows per pass: C tiles tmm0..3 (16 tokens x 16 rows of fp32)
 * accumulate over the whole row in steps of 32 values from A tiles tmm4, tmm5 (16 tokens x 32 bf16, straight from
 * the activation rows with their stride) and B tiles tmm6, tmm7 (the panels' 16 pair rows for those 32 values). No
 * per-step work outside the tiles: C is stored once, at the end of the row, into y (directly where all 16 x 16
 * results are wanted, else through a buffer). Each (token, row) result is its own sum: independent of the other
 * tokens in the tile.
 *
 * Compiled with the *_amx.c flags; called only where zl_amx_available(). Pure.
 */
#include <immintrin.h>
#include <string.h>

#include "backend/cpu/amx.h"
#include "backend/cpu/simd_amx.h"
#include "core/dtype.h"

void zl_amx_bf16_act(const float *x, int64_t ne0, uint16_t *xb)
{
    for (int64_t k = 0; k < ne0; k += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
        _mm512_storeu_si512(xb + k, (__m512i)v);
    }
}

/* The floats of bf16 values 16 h .. 16 h + 15 of v (exact). */
static inline __m512 bf16_half(__m512bh v, int h)
{
    const __m256i q = h ? _mm512_extracti64x4_epi64((__m512i)v, 1) : _mm512_castsi512_si256((__m512i)v);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(q), 16));
}

void zl_amx_bf16_act3(const float *x, int64_t ne0, uint16_t *xb)
{
    for (int64_t k = 0; k < ne0; k += 32) {
        const __m512 a = _mm512_loadu_ps(x + k), b = _mm512_loadu_ps(x + k + 16);
        const __m512bh h = _mm512_cvtne2ps_pbh(b, a);
        const __m512 ah = bf16_half(h, 0), bh = bf16_half(h, 1);
        const __m512bh l = _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, bh), _mm512_sub_ps(a, ah));
        _mm512_storeu_si512(xb + k, (__m512i)h);
        _mm512_storeu_si512(xb + ne0 + k, (__m512i)h);
        _mm512_storeu_si512(xb + 2 * ne0 + k, (__m512i)l);
    }
}

int64_t zl_amx_bf16_len(uint32_t type, int64_t ne0)
{
    return type == ZL_F16 ? 3 * ne0 : ne0;
}

void zl_amx_bf16_panel(uint32_t type, const void *w, size_t nb1, int nrows, int64_t ne0, uint16_t *panel)
{
    _Alignas(64) uint16_t slice[16][32], low[16][32];
    memset(slice, 0, sizeof slice);
    memset(low, 0, sizeof low);
    for (int64_t k = 0; k < ne0; k += 32) {
        for (int r = 0; r < nrows; r++) {
            const char *row = (const char *)w + (size_t)r * nb1;
            if (type == ZL_F16) { /* w = hi + lo exactly (11 significant bits in two bf16 of 8) */
                const __m256i *h = (const __m256i *)(const void *)(row + 2 * k);
                const __m512 a = _mm512_cvtph_ps(_mm256_loadu_si256(h)), b = _mm512_cvtph_ps(_mm256_loadu_si256(h + 1));
                const __m512bh hi = _mm512_cvtne2ps_pbh(b, a);
                const __m512 ah = bf16_half(hi, 0), bh = bf16_half(hi, 1);
                _mm512_store_si512(slice[r], (__m512i)hi);
                _mm512_store_si512(low[r], (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, bh), _mm512_sub_ps(a, ah)));
            } else { /* BF16: the values as they are */
                _mm512_store_si512(slice[r], _mm512_loadu_si512(row + 2 * k));
            }
        }
        /* dword q of row r is its pair (k + 2q, k + 2q + 1): the panel's pair row k / 2 + q */
        zl_transpose16_dwords((const int8_t *)slice, 16, (int8_t *)(panel + k * 16));
        if (type == ZL_F16) { /* [hi | lo | hi] against the activations' [hi | hi | lo] */
            zl_transpose16_dwords((const int8_t *)low, 16, (int8_t *)(panel + (ne0 + k) * 16));
            zl_transpose16_dwords((const int8_t *)slice, 16, (int8_t *)(panel + (2 * ne0 + k) * 16));
        }
    }
}

static void config_bf16(void)
{
    zl_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) c.rows[i] = 16, c.colsb[i] = 64;
    _tile_loadconfig(&c);
}

/* C tile results of 16 tokens x 16 rows into y: m tokens, n rows wanted. */
static void store_part(const float *cbuf, int m, int n, float *y, size_t ldy)
{
    for (int t = 0; t < m; t++) memcpy(y + (size_t)t * ldy, cbuf + 16 * t, (size_t)n * sizeof(float));
}

#define STORE_C(C, tg, rp)                                                                                      \
    do {                                                                                                        \
        const int m_ = nt - (g + 16 * (tg)) < 16 ? nt - (g + 16 * (tg)) : 16;                                   \
        const int n_ = nrows - 16 * (rp) < 16 ? nrows - 16 * (rp) : 16;                                          \
        float *y_ = y + (size_t)(g + 16 * (tg)) * ldy + 16 * (rp);                                              \
        if (m_ == 16 && n_ == 16) {                                                                             \
            _tile_stored(C, y_, (long)(ldy * sizeof(float)));                                                   \
        } else {                                                                                                \
            _tile_stored(C, cbuf, 64);                                                                          \
            store_part(cbuf, m_, n_, y_, ldy);                                                                  \
        }                                                                                                       \
    } while (0)

void zl_amx_bf16_tiles(int64_t ne0, const uint16_t *xb, int nt, const uint16_t *panel, int nrows, float *y,
                       size_t ldy)
{
    config_bf16();
    _Alignas(64) float cbuf[256];
    const long xs = (long)(ne0 * 2);
    const uint16_t *p0 = panel, *p1 = panel + ne0 * 16;
    int g = 0;
    for (; g < nt; g += 32) {
        const bool two_t = g + 16 < nt, two_r = nrows > 16;
        const uint16_t *x0 = xb + (size_t)g * (size_t)ne0, *x1 = x0 + 16 * ne0;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        if (two_t && two_r) {
            for (int64_t k = 0; k < ne0; k += 32) {
                _tile_loadd(4, x0 + k, xs);
                _tile_loadd(6, p0 + k * 16, 64);
                _tile_loadd(7, p1 + k * 16, 64);
                _tile_loadd(5, x1 + k, xs);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
        } else if (two_t) {
            for (int64_t k = 0; k < ne0; k += 32) {
                _tile_loadd(6, p0 + k * 16, 64);
                _tile_loadd(4, x0 + k, xs);
                _tile_loadd(5, x1 + k, xs);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(2, 5, 6);
            }
        } else if (two_r) {
            for (int64_t k = 0; k < ne0; k += 32) {
                _tile_loadd(4, x0 + k, xs);
                _tile_loadd(6, p0 + k * 16, 64);
                _tile_loadd(7, p1 + k * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
            }
        } else {
            for (int64_t k = 0; k < ne0; k += 32) {
                _tile_loadd(4, x0 + k, xs);
                _tile_loadd(6, p0 + k * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
            }
        }
        STORE_C(0, 0, 0);
        if (two_r) STORE_C(1, 0, 1);
        if (two_t) STORE_C(2, 1, 0);
        if (two_t && two_r) STORE_C(3, 1, 1);
    }
    _tile_release();
}
