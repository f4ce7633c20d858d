/*
 * dump.h - a debugging aid: with ZILI_DUMP=DIR in the environment, the forward pass writes its intermediate
 * tensors to DIR as raw little-endian float32 files named "<step>-<name>-<layer>.f32" (step counts forward calls
 * from 0; layer -1 for tensors outside the layers), rows = tokens of the batch. Compare them with llama.cpp's own
 * intermediates (tests/ref/dump_compare.py). Without ZILI_DUMP every call is a cheap no-op.
 *
 * Threads: for the forward pass's calling thread only (the CLI's single sequence); not for the server.
 */
#ifndef ZILI_CORE_DUMP_H
#define ZILI_CORE_DUMP_H

#include <stdbool.h>
#include <stdint.h>

bool zl_dump_enabled(void);
void zl_dump_step(void);
void zl_dump(const char *name, int il, const float *x, int64_t rows, int64_t cols);

#endif
