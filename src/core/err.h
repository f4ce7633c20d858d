/*
 * err.h - status codes and error messages inside zili.
 *
 * Every fallible internal function returns an int status: ZL_OK (0) or a negative ZL_E* code, and on failure
 * fills a caller-provided zl_err with a one-line, human-readable message naming what was wrong and where
 * ("model.gguf: tensor 'blk.3.attn_q.weight': data ends past end of file (offset 123, size 456, file 400)").
 * A NULL zl_err is allowed: the message is then dropped. Library code never exits or aborts on bad input.
 */
#ifndef ZL_ERR_H
#define ZL_ERR_H

#include <stddef.h>

enum {
    ZL_OK = 0,
    ZL_EINVAL = -1,       /* bad argument or parameter */
    ZL_EIO = -2,          /* file system / OS error */
    ZL_ENOMEM = -3,       /* allocation failed */
    ZL_EFORMAT = -4,      /* malformed input file or data */
    ZL_EUNSUPPORTED = -5, /* valid but not supported (type, architecture, template) */
    ZL_ERANGE = -6,       /* value out of range (token id, context length) */
    ZL_EFULL = -7,        /* resource exhausted (KV cache, queue) */
};

typedef struct zl_err {
    char msg[512];
} zl_err;

/* Formats the message into e (if non-NULL) and returns code, so callers can write
 * `return zl_err_set(err, ZL_EFORMAT, "%s: bad magic", path);`. */
int zl_err_set(zl_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Static name of a status code ("invalid argument", ...). */
const char *zl_status_str(int code);

#endif
