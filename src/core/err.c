#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>

int zl_err_set(zl_err *e, int code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *zl_status_str(int code)
{
    switch (code) {
    case ZL_OK: return "ok";
    case ZL_EINVAL: return "invalid argument";
    case ZL_EIO: return "I/O error";
    case ZL_ENOMEM: return "out of memory";
    case ZL_EFORMAT: return "malformed input";
    case ZL_EUNSUPPORTED: return "unsupported";
    case ZL_ERANGE: return "out of range";
    case ZL_EFULL: return "resource exhausted";
    default: return "unknown error";
    }
}
