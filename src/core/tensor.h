/*
 * tensor.h - a borrowed view of a 2-D weight matrix (or a 1-D vector as one row).
 *
 * Shape convention (ggml's): ne[0] is the row length (the reduced dimension of a matmul), ne[1] the number of rows.
 * Rows are contiguous, nb1 bytes apart (nb1 = row size of ne[0] elements of type). data points into the mapped
 * model file (or a device buffer later) and is owned by whoever owns the model.
 *
 * layout says how the rows are stored: ZL_LAYOUT_ROWS as above, or ZL_LAYOUT_X16, Q4_0 or Q4_K rows interleaved in
 * groups of 16 (the last group 8 rows when ne[1] % 16 == 8) for the repacked kernels (backend/cpu/repack.h); each
 * group still occupies its rows' bytes, so row r's group starts at data + r * nb1, but a single row cannot be read.
 */
#ifndef ZL_TENSOR_H
#define ZL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef struct zl_tensor {
    const char *name;  /* borrowed, NUL-terminated, for messages */
    uint32_t type;     /* zl_dtype */
    int64_t ne[4];     /* ne[0] row length, ne[1] rows, ne[2], ne[3] (1 if unused) */
    size_t nb1;        /* bytes between rows */
    const void *data;
    uint8_t layout;    /* ZL_LAYOUT_* */
    uint8_t tiles;     /* 1: the tokens of multi-token prompts are multiplied on AMX tiles (backend/cpu/amx.h; set by
                        * the model loader where the CPU has them and --exact is off), 0: the exact kernels */
} zl_tensor;

enum { ZL_LAYOUT_ROWS = 0, ZL_LAYOUT_X16 = 1 };

#endif
