/*
 * gguf.h - a strict reader for GGUF model files (versions 2 and 3).
 *
 * The file is mapped read-only (or read into memory with use_mmap = false). gguf_open() validates the whole
 * header before returning: every count and string length against the bytes left in the file, overflow-checked
 * size arithmetic, known value and tensor types, sane dimensions, a power-of-two alignment, tensor offsets aligned
 * and offset + size inside the data section, no duplicate keys or tensor names. After a successful open, every
 * pointer this API hands out (strings, array data, tensor data) points into the mapping, is valid until
 * gguf_close(), and may be read over its full stated length. Strings are NOT NUL-terminated in the file: use the
 * (ptr, len) pairs. Model-specific checks (required keys, shapes) belong to the model loader, not here.
 *
 * Limits beyond the format: keys and tensor names are 1..64 KiB, general.alignment (if present) is a uint32
 * power of two <= 1 MiB, every dimension is >= 1, bool values are 0 or 1, tensor data regions do not overlap.
 * Big-endian GGUF files and version 1 are rejected with a message saying so.
 *
 * Array elements and tensor data are raw little-endian bytes and may be unaligned: read numeric array elements
 * with gguf_arr_i64() / gguf_arr_f32() (or memcpy), not by casting arr_data.
 *
 * Threads: a gguf_file is immutable after open; any number of threads may read it.
 */
#ifndef ZL_GGUF_H
#define ZL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Metadata value types, numbered as the GGUF format defines them. */
typedef enum gguf_vtype {
    GGUF_T_UINT8 = 0,
    GGUF_T_INT8 = 1,
    GGUF_T_UINT16 = 2,
    GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4,
    GGUF_T_INT32 = 5,
    GGUF_T_FLOAT32 = 6,
    GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8,
    GGUF_T_ARRAY = 9,
    GGUF_T_UINT64 = 10,
    GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12,
    GGUF_T_COUNT
} gguf_vtype;

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_str {
    const char *ptr; /* into the mapping, not NUL-terminated */
    uint64_t len;
} gguf_str;

/* Name of a value type ("uint32", ...), "unknown" for ids past GGUF_T_COUNT. */
const char *gguf_vtype_name(uint32_t t);

/* One metadata key/value. For arrays, arr_type is the element type and arr_n the count; arr_data points at the
 * first element (for GGUF_T_STRING arrays use gguf_arr_str() instead, elements are length-prefixed).
 * Nested arrays are rejected at open. */
typedef struct gguf_kv {
    gguf_str key;
    gguf_vtype type;
    union {
        uint64_t u64; /* all unsigned ints and bool, widened */
        int64_t i64;  /* all signed ints, widened */
        double f64;   /* float32 and float64, widened */
        gguf_str str;
    } v;
    gguf_vtype arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data;
    const uint64_t *arr_str_off; /* string arrays: offset from arr_data of element i's u64 length prefix
                                  * (owned by the file; NULL when arr_n is 0) */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the innermost (row length); unused dims are 1 */
    uint32_t type;             /* ggml type id (see core/dtype.h); validated as a known type at open */
    uint64_t offset;           /* relative to the data section, aligned */
    uint64_t size;             /* bytes, computed from type and shape */
    const void *data;          /* into the mapping / buffer */
} gguf_tensor;

typedef struct gguf_open_opts {
    bool use_mmap; /* true: mmap the file (default); false: read it into an owned buffer */
    bool use_mlock; /* lock the pages in memory (mmap or buffer); failure is reported as a warning, not an error */
} gguf_open_opts;

typedef struct gguf_file gguf_file;

/* Opens and fully validates path. On success *out owns the mapping; caller frees with gguf_close().
 * opts may be NULL (mmap, no mlock). On failure returns a ZL_E* code with a message naming the file. */
int gguf_open(const char *path, const gguf_open_opts *opts, gguf_file **out, zl_err *err);

/* Same, over a caller-owned memory buffer (for fuzzing and tests). buf must outlive the gguf_file. */
int gguf_open_memory(const void *buf, size_t size, const char *name, gguf_file **out, zl_err *err);

void gguf_close(gguf_file *f);
/* Makes the n bytes at p (inside f's data, from a tensor's data pointer) writable in place and returns p as a
 * writable pointer: our own copy of the file as it is, a private mapping by mprotect (pages written become
 * private copies; the file is never written). NULL for a caller's buffer (gguf_open_memory) or when mprotect fails.
 * The caller's model-load thread only, before the file is shared. */
void *gguf_writable(gguf_file *f, const void *p, size_t n);

const char *gguf_path(const gguf_file *f); /* the path or name given at open */
uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_alignment(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
/* Byte offset of the data section in the file (tensor offsets are relative to it). */
uint64_t gguf_data_offset(const gguf_file *f);
/* Non-NULL after open with use_mlock when locking failed: a one-line warning. */
const char *gguf_warning(const gguf_file *f);

/* Metadata. */
uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i); /* NULL if i >= n_kv */
const gguf_kv *gguf_find(const gguf_file *f, const char *key); /* NULL if absent; O(log n_kv) */

/* Typed getters. Return true and write *out when key exists with a compatible type and the value fits
 * (any integer type for the integer getters, range-checked, bool excluded; float32/float64 for get_f32; bool for
 * get_bool); false when absent (err's message is then set to "", so a caller can tell absent from wrong by
 * err->msg[0]). If present with an incompatible type or out of range, return false and fill err. */
bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, zl_err *err);
bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, zl_err *err);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, zl_err *err);
bool gguf_get_f32(const gguf_file *f, const char *key, float *out, zl_err *err);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out, zl_err *err);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, zl_err *err);
/* Array: *kv is the entry (check kv->arr_type and kv->arr_n). */
bool gguf_get_arr(const gguf_file *f, const char *key, const gguf_kv **kv, zl_err *err);
/* Element i of a string array (i < kv->arr_n checked by caller; returns {NULL,0} if out of range). */
gguf_str gguf_arr_str(const gguf_kv *kv, uint64_t i);

/* Element i of an integer or bool array, widened to int64 (false if the array is not of an integer/bool type,
 * i is out of range, or a uint64 element exceeds INT64_MAX). */
bool gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out);
/* Element i of a float32 or float64 array, as float (false if not a float array or i out of range). */
bool gguf_arr_f32(const gguf_kv *kv, uint64_t i, float *out);

/* Compare a gguf_str with a C string. */
bool gguf_str_eq(gguf_str s, const char *c);

/* Tensors. */
uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i); /* NULL if i >= n_tensors */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent; O(log n) */

#endif
