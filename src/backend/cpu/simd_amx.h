/*
 * simd_amx.h - inline helpers shared by the *_amx.c files (compiled with the AMX and AVX-512 flags; x86-64 only).
 */
#ifndef ZILI_BACKEND_CPU_SIMD_AMX_H
#define ZILI_BACKEND_CPU_SIMD_AMX_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* A tile configuration (palette 1): colsb bytes per row and rows of each of the 8 tiles. */
typedef struct zl_tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} zl_tilecfg;

/* The 16 rows x 16 dwords at src (rows 64 bytes apart) transposed: output q (dword q of every row: its bytes 4q ..
 * 4q + 3) to
 * dst + 64 q, for q < nq. */
static inline void zl_transpose16_dwords(const int8_t *src, int nq, int8_t *dst)
{
    __m512i r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512(src + 64 * i);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* r[4a + b]: rows 4a .. 4a + 3, dword columns {b, b + 4, b + 8, b + 12} in its four 128-bit lanes */
    for (int b = 0; b < 4; b++) {
        const __m512i x0 = _mm512_shuffle_i32x4(r[b], r[4 + b], 0x88), x1 = _mm512_shuffle_i32x4(r[b], r[4 + b], 0xdd);
        const __m512i y0 = _mm512_shuffle_i32x4(r[8 + b], r[12 + b], 0x88);
        const __m512i y1 = _mm512_shuffle_i32x4(r[8 + b], r[12 + b], 0xdd);
        t[b] = _mm512_shuffle_i32x4(x0, y0, 0x88);      /* column b */
        t[8 + b] = _mm512_shuffle_i32x4(x0, y0, 0xdd);  /* column b + 8 */
        t[4 + b] = _mm512_shuffle_i32x4(x1, y1, 0x88);  /* column b + 4 */
        t[12 + b] = _mm512_shuffle_i32x4(x1, y1, 0xdd); /* column b + 12 */
    }
    for (int q = 0; q < nq; q++) _mm512_store_si512(dst + 64 * q, t[q]);
}

#endif
