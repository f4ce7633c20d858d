/*
 * repack.c - the X16 layouts of Q4_0 and Q4_K weights and their portable reference products (see repack.h).
 */
#include "backend/cpu/repack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"
#include "core/dtype.h"
#include "core/fp16.h"

zl_x16_fn zl_x16_kernel(uint32_t type)
{
#ifdef ZL_HAVE_VNNI_KERNELS
    if (strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0) {
        if (type == ZL_Q4_0) return zl_q4_0_x16_vnni;
        if (type == ZL_Q4_K) return zl_q4_K_x16_vnni;
    }
#endif
#ifdef ZL_HAVE_AVX2_KERNELS
    /* the avx2 and avx512 sets (llama.cpp repacks on every AVX2 CPU) */
    const char *set = zl_cpu_kernels_name();
    if (strcmp(set, "avx2") == 0 || strcmp(set, "avx512") == 0) {
        if (type == ZL_Q4_0) return zl_q4_0_x16_avx2;
        if (type == ZL_Q4_K) return zl_q4_K_x16_avx2;
    }
#endif
    (void)type;
    return NULL;
}

bool zl_repack_active(uint32_t type)
{
    const char *off = getenv("ZILI_NO_REPACK");
    if (off && *off && strcmp(off, "0") != 0) return false;
    return zl_x16_kernel(type) != NULL;
}

bool zl_repack_fits(int64_t ne1)
{
    return ne1 > 0 && ne1 % 8 == 0;
}

/* Block b of row r in the file's layout (rows row_bytes apart from base). */
static const void *file_block(const void *base, size_t row_bytes, int r, int64_t b, size_t block_bytes)
{
    return (const char *)base + (size_t)r * row_bytes + (size_t)b * block_bytes;
}

static void pack_q4_0(unsigned char *dst, const void *rows, size_t row_bytes, int R, int64_t b)
{
    for (int r = 0; r < R; r++) {
        const zl_block_q4_0 *src = file_block(rows, row_bytes, r, b, sizeof *src);
        memcpy(dst + 2 * r, &src->d, 2);
        for (int j = 0; j < 4; j++)
            memcpy(dst + 2 * R + (size_t)(j * R + r) * 4, src->qs + 4 * j, 4);
    }
}

static void pack_q4_K(unsigned char *dst, const void *rows, size_t row_bytes, int R, int64_t b)
{
    for (int r = 0; r < R; r++) {
        const zl_block_q4_K *src = file_block(rows, row_bytes, r, b, sizeof *src);
        memcpy(dst + 2 * r, &src->d, 2);
        memcpy(dst + 2 * R + 2 * r, &src->dmin, 2);
        for (int u = 0; u < 3; u++)
            memcpy(dst + 4 * R + (size_t)(u * R + r) * 4, src->scales + 4 * u, 4);
        for (int c = 0; c < 4; c++)
            for (int j = 0; j < 8; j++)
                memcpy(dst + 16 * R + (size_t)((c * 8 + j) * R + r) * 4, src->qs + 32 * c + 4 * j, 4);
    }
}

void zl_repack_x16(uint32_t type, void *data, int64_t ne0, int64_t ne1, size_t row_bytes, void *tmp)
{
    const bool k = type == ZL_Q4_K;
    const size_t block_bytes = k ? sizeof(zl_block_q4_K) : sizeof(zl_block_q4_0);
    const int64_t nb = ne0 / (k ? ZL_QK_K : ZL_QK);
    for (int64_t r0 = 0; r0 + 8 <= ne1;) {
        const int R = r0 + ZL_X16_ROWS <= ne1 ? ZL_X16_ROWS : 8;
        unsigned char *g = (unsigned char *)data + (size_t)r0 * row_bytes;
        memcpy(tmp, g, (size_t)R * row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            unsigned char *dst = g + (size_t)b * block_bytes * (size_t)R;
            if (k)
                pack_q4_K(dst, tmp, row_bytes, R, b);
            else
                pack_q4_0(dst, tmp, row_bytes, R, b);
        }
        r0 += R;
    }
}

size_t zl_x16_aux_size(uint32_t type)
{
    return type == ZL_Q4_K ? sizeof(zl_x16k_aux) : sizeof(zl_x16_aux);
}

static int32_t pair16(int32_t lo, int32_t hi)
{
    return (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
}

void zl_x16_aux_make(uint32_t type, const void *vy, void *va, int64_t n)
{
    if (type == ZL_Q4_K) {
        const zl_block_q8_K *y = vy;
        zl_x16k_aux *a = va;
        for (int64_t b = 0; b < n / ZL_QK_K; b++) {
            int32_t s[8];
            for (int i = 0; i < 8; i++)
                s[i] = y[b].bsums[2 * i] + y[b].bsums[2 * i + 1];
            a[b].d = y[b].d;
            for (int c = 0; c < 4; c++)
                a[b].bp[c] = pair16(s[2 * c], s[2 * c + 1]);
            a[b].bs[0] = pair16(s[0], s[2]);
            a[b].bs[1] = pair16(s[1], s[3]);
            a[b].bs[2] = pair16(s[4], s[6]);
            a[b].bs[3] = pair16(s[5], s[7]);
        }
        return;
    }
    const zl_block_q8_0 *y = vy;
    zl_x16_aux *a = va;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        int32_t sum = 0;
        for (int i = 0; i < ZL_QK; i++)
            sum += y[b].qs[i];
        a[b].d = zl_fp16_to_fp32(y[b].d);
        a[b].off = -8 * sum;
    }
}

static uint16_t half_at(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

static float q4_0_row_ref(int64_t nb, int R, int r, const void *xg, const zl_block_q8_0 *y, const zl_x16_aux *ax)
{
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *blk = (const unsigned char *)xg + (size_t)b * sizeof(zl_block_q4_0) * (size_t)R;
        int32_t isum = 0;
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) {
                const int q = blk[2 * R + (j * R + r) * 4 + k];
                isum += ((q & 15) - 8) * y[b].qs[4 * j + k] + ((q >> 4) - 8) * y[b].qs[16 + 4 * j + k];
            }
        const float d = zl_fp16_to_fp32(half_at(blk + 2 * r)) * ax[b].d;
        acc = fmaf((float)isum, d, acc);
    }
    return acc;
}

static float q4_K_row_ref(int64_t nb, int R, int r, const void *xg, const zl_block_q8_K *y, bool pairs)
{
    float acc = 0.0f, accm = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const unsigned char *blk = (const unsigned char *)xg + (size_t)b * sizeof(zl_block_q4_K) * (size_t)R;
        uint8_t q[12]; /* the row's scale bytes as the file has them */
        for (int u = 0; u < 3; u++)
            memcpy(q + 4 * u, blk + 4 * R + (size_t)(u * R + r) * 4, 4);
        int32_t isum = 0, imin = 0;
        for (int sb = 0; sb < 8; sb++) {
            const int sc = sb < 4 ? q[sb] & 63 : (q[sb + 4] & 0xF) | ((q[sb - 4] >> 6) << 4);
            const int m = sb < 4 ? q[sb + 4] & 63 : (q[sb + 4] >> 4) | ((q[sb] >> 6) << 4);
            const int c = sb / 2, hi = sb % 2;
            int32_t dot = 0;
            for (int j = 0; j < 8; j++)
                for (int k = 0; k < 4; k++) {
                    const int v = blk[16 * R + ((c * 8 + j) * R + r) * 4 + k];
                    dot += (hi ? v >> 4 : v & 15) * y[b].qs[64 * c + 32 * hi + 4 * j + k];
                }
            isum += sc * dot;
            imin += m * (y[b].bsums[2 * sb] + y[b].bsums[2 * sb + 1]);
            if (sb == 7 || (pairs && hi)) {
                acc = fmaf((float)isum, zl_fp16_to_fp32(half_at(blk + 2 * r)) * y[b].d, acc);
                accm = fmaf((float)imin, zl_fp16_to_fp32(half_at(blk + 2 * R + 2 * r)) * y[b].d, accm);
                isum = imin = 0;
            }
        }
    }
    return acc - accm;
}

void zl_x16_ref(uint32_t type, int64_t nb, int R, float *s, size_t s_stride, const void *xg, const void *vy,
                size_t y_stride, const void *a, size_t a_stride, int nt, unsigned pairs)
{
    for (int t = 0; t < nt; t++) {
        const void *y = (const char *)vy + (size_t)t * y_stride;
        const void *ax = (const char *)a + (size_t)t * a_stride;
        for (int r = 0; r < R; r++)
            s[(size_t)t * s_stride + (size_t)r] =
                type == ZL_Q4_K ? q4_K_row_ref(nb, R, r, xg, y, pairs >> t & 1) : q4_0_row_ref(nb, R, r, xg, y, ax);
    }
}
