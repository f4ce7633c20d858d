/*
 * tensor.h - a borrowed view of a 2-D weight matrix (or a 1-D vector as one row).
 *
 * Shape convention (ggml's): ne[0] is the row length (the reduced dimension of a matmul), ne[1] the number of rows.
 * Rows are contiguous, nb1 bytes apart (nb1 = row size of ne[0] elements of type). data points into the mapped
 * model file (or a device buffer later) and is owned by whoever owns the model.
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
} zl_tensor;

#endif
