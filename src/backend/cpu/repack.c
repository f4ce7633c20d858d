/*
 * repack.c - the X16 layout of Q4_0 weights and its portable reference product (see repack.h).
 */
#include "backend/cpu/repack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/quant.h"
#include "core/dtype.h"
#include "core/fp16.h"

#ifdef ZL_HAVE_VNNI_KERNELS
void zl_q4_0_x16_vnni(int64_t nb, float *s, size_t s_stride, const void *xg, const void *y, size_t y_stride,
                      const zl_x16_aux *a, size_t a_stride, int nt);
#endif

bool zl_repack_q4_0_active(void)
{
    const char *off = getenv("ZILI_NO_REPACK");
    if (off && *off && strcmp(off, "0") != 0) return false;
    return zl_q4_0_x16_kernel() != NULL;
}

bool zl_repack_q4_0_fits(int64_t ne1)
{
    return ne1 > 0 && ne1 % 8 == 0;
}

zl_x16_fn zl_q4_0_x16_kernel(void)
{
#ifdef ZL_HAVE_VNNI_KERNELS
    if (strcmp(zl_cpu_kernels_name(), "avx512vnni") == 0) return zl_q4_0_x16_vnni;
#endif
    return NULL;
}

void zl_repack_q4_0_x16(void *data, int64_t ne0, int64_t ne1, size_t row_bytes, void *tmp)
{
    const int64_t nb = ne0 / ZL_QK;
    for (int64_t r0 = 0; r0 + 8 <= ne1;) {
        const int R = r0 + ZL_X16_ROWS <= ne1 ? ZL_X16_ROWS : 8;
        unsigned char *g = (unsigned char *)data + (size_t)r0 * row_bytes;
        memcpy(tmp, g, (size_t)R * row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            unsigned char *dst = g + (size_t)b * 18 * (size_t)R;
            for (int r = 0; r < R; r++) {
                const zl_block_q4_0 *src = (const zl_block_q4_0 *)(const void *)((const char *)tmp + (size_t)r * row_bytes) + b;
                memcpy(dst + 2 * r, &src->d, 2);
                for (int j = 0; j < 4; j++)
                    memcpy(dst + 2 * R + (size_t)(j * R + r) * 4, src->qs + 4 * j, 4);
            }
        }
        r0 += R;
    }
}

void zl_x16_aux_q8_0(const void *vy, zl_x16_aux *a, int64_t n)
{
    const zl_block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / ZL_QK; b++) {
        int32_t sum = 0;
        for (int i = 0; i < ZL_QK; i++)
            sum += y[b].qs[i];
        a[b].d = zl_fp16_to_fp32(y[b].d);
        a[b].off = -8 * sum;
    }
}

void zl_q4_0_x16_ref(int64_t nb, int R, float *s, size_t s_stride, const void *xg, const void *vy, size_t y_stride,
                     const zl_x16_aux *a, size_t a_stride, int nt)
{
    for (int t = 0; t < nt; t++) {
        const zl_block_q8_0 *y = (const zl_block_q8_0 *)(const void *)((const char *)vy + (size_t)t * y_stride);
        const zl_x16_aux *ax = (const zl_x16_aux *)(const void *)((const char *)a + (size_t)t * a_stride);
        for (int r = 0; r < R; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const unsigned char *blk = (const unsigned char *)xg + (size_t)b * 18 * (size_t)R;
                uint16_t h;
                memcpy(&h, blk + 2 * r, 2);
                int32_t isum = 0;
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 4; k++) {
                        const int q = blk[2 * R + (j * R + r) * 4 + k];
                        isum += ((q & 15) - 8) * y[b].qs[4 * j + k] + ((q >> 4) - 8) * y[b].qs[16 + 4 * j + k];
                    }
                const float d = zl_fp16_to_fp32(h) * ax[b].d;
                acc = fmaf((float)isum, d, acc);
            }
            s[(size_t)t * s_stride + (size_t)r] = acc;
        }
    }
}
