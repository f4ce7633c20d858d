/*
 * gguf.c - the strict GGUF reader: maps a file, validates every count, length, type and offset, then hands out
 * (ptr, len) views into the mapping.
 *
 * Layout (GGUF v2 and v3 are laid out identically; all integers little-endian):
 *
 *     "GGUF" | version u32 | n_tensors u64 | n_kv u64
 *     n_kv      x { key: str | vtype u32 | value }
 *     n_tensors x { name: str | n_dims u32 | ne u64[n_dims] | type u32 | offset u64 }
 *     padding to general.alignment | data section (tensor offsets are relative to its start)
 *
 * where str = u64 length + bytes (no NUL) and an array value = elem vtype u32 | count u64 | count elements.
 *
 * Open runs in stages, each of which only reads what the previous one proved is there:
 *
 *     map_file / gguf_open_memory -> parse_header -> parse_kvs -> index_kvs (duplicates) -> resolve_alignment
 *     -> parse_tensor_infos -> place_tensors (data bounds) -> index_tensors (duplicates, overlap) -> open
 *
 * Every read goes through a cursor that refuses to step past the end of the buffer, and every count read from
 * the file is compared with the bytes left before anything is allocated for it, so the memory an open can take
 * is a small multiple of the file size whatever the header claims.
 *
 * Invariants after a successful open:
 *   - every gguf_str, arr_data and tensor data pointer lies inside [base, base + size) over its full length;
 *   - kv_by_key and tensor_by_name are sorted by bytes and hold no two equal names;
 *   - tensor data regions are aligned, inside the data section and pairwise disjoint;
 *   - string arrays have arr_str_off[i] = offset of element i's u64 length prefix from arr_data.
 *
 * Values are decoded byte by byte, so this file does not depend on host byte order; tensor data and array
 * elements are handed out raw (little-endian, possibly unaligned: read them with memcpy or the gguf_arr_*
 * helpers).
 *
 * Threads: a gguf_file is written only inside gguf_open*, then immutable; any number of threads may read it.
 */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"

/* Sanity limits: nothing legitimate comes close, and they keep messages and allocations bounded. */
#define GGUF_MAX_NAME_LEN (64u * 1024u)      /* keys and tensor names */
#define GGUF_MAX_ALIGNMENT (1024u * 1024u)
#define GGUF_HEADER_SIZE 24u                  /* magic + version + n_tensors + n_kv */
#define GGUF_MIN_KV_SIZE 14u                  /* key length + 1-byte key + value type + 1-byte value */
#define GGUF_MIN_TENSOR_INFO_SIZE 33u         /* name length + 1-byte name + n_dims + ne[0] + type + offset */

struct gguf_file {
    char *path;
    const uint8_t *base; /* mapping, owned buffer or caller's buffer */
    uint64_t size;
    void *map; /* non-NULL when base is our mmap (map_len bytes) */
    size_t map_len;
    void *owned; /* non-NULL when base is our malloc'd copy */
    bool locked;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_off; /* start of the data section; may equal size (or exceed it when there are no tensors) */
    uint64_t n_kv;
    gguf_kv *kv;
    const gguf_kv **kv_by_key;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    const gguf_tensor **tensor_by_name;
    char warning[256];
};

static const uint8_t k_vtype_size[GGUF_T_COUNT] = {
    [GGUF_T_UINT8] = 1,  [GGUF_T_INT8] = 1,    [GGUF_T_UINT16] = 2, [GGUF_T_INT16] = 2,
    [GGUF_T_UINT32] = 4, [GGUF_T_INT32] = 4,   [GGUF_T_FLOAT32] = 4, [GGUF_T_BOOL] = 1,
    [GGUF_T_STRING] = 0, [GGUF_T_ARRAY] = 0,   [GGUF_T_UINT64] = 8, [GGUF_T_INT64] = 8,
    [GGUF_T_FLOAT64] = 8,
};

static const char *const k_vtype_name[GGUF_T_COUNT] = {
    [GGUF_T_UINT8] = "uint8",   [GGUF_T_INT8] = "int8",       [GGUF_T_UINT16] = "uint16",
    [GGUF_T_INT16] = "int16",   [GGUF_T_UINT32] = "uint32",   [GGUF_T_INT32] = "int32",
    [GGUF_T_FLOAT32] = "float32", [GGUF_T_BOOL] = "bool",     [GGUF_T_STRING] = "string",
    [GGUF_T_ARRAY] = "array",   [GGUF_T_UINT64] = "uint64",   [GGUF_T_INT64] = "int64",
    [GGUF_T_FLOAT64] = "float64",
};

const char *gguf_vtype_name(uint32_t t)
{
    return t < GGUF_T_COUNT ? k_vtype_name[t] : "unknown";
}

static bool is_unsigned(gguf_vtype t)
{
    return t == GGUF_T_UINT8 || t == GGUF_T_UINT16 || t == GGUF_T_UINT32 || t == GGUF_T_UINT64;
}

static bool is_signed(gguf_vtype t)
{
    return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 || t == GGUF_T_INT64;
}

/* ---- little-endian decoding ---- */

static uint64_t load_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int64_t sign_extend(uint64_t v, unsigned bytes)
{
    if (bytes == 8) return (int64_t)v;
    const uint64_t sign = (uint64_t)1 << (8 * bytes - 1);
    return (int64_t)((v ^ sign) - sign); /* two's complement sign extension */
}

static double load_float(const uint8_t *p, gguf_vtype t)
{
    if (t == GGUF_T_FLOAT32) {
        const uint32_t bits = (uint32_t)load_le(p, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    const uint64_t bits = load_le(p, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* A name (key or tensor name) made safe for a one-line message: at most 64 bytes, control bytes as '?'. */
typedef struct shown {
    char s[80];
} shown;

static shown show(gguf_str str)
{
    shown out;
    const uint64_t n = str.len > 64 ? 64 : str.len;
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)str.ptr[i];
        out.s[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (str.len > n)
        memcpy(out.s + n, "...", 4);
    else
        out.s[n] = '\0';
    return out;
}

static int str_cmp(gguf_str a, gguf_str b)
{
    const uint64_t n = a.len < b.len ? a.len : b.len;
    const int c = n ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (c) return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

bool gguf_str_eq(gguf_str s, const char *c)
{
    const size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* ---- the bounds-checked cursor ---- */

typedef struct cursor {
    const uint8_t *buf;
    uint64_t size;
    uint64_t pos; /* invariant: pos <= size */
    const char *path;
    zl_err *err;
    char what[160]; /* the item being read, for messages: "kv 3 'general.name'", "tensor 'output.weight'" */
} cursor;

static uint64_t left(const cursor *c)
{
    return c->size - c->pos;
}

static int need(cursor *c, uint64_t n, const char *field)
{
    if (n <= left(c)) return ZL_OK;
    return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: %s at offset %llu runs past end of file (needs %llu bytes, %llu left)",
                      c->path, c->what, field, (unsigned long long)c->pos, (unsigned long long)n,
                      (unsigned long long)left(c));
}

static int read_uint(cursor *c, unsigned bytes, uint64_t *out, const char *field)
{
    int rc = need(c, bytes, field);
    if (rc) return rc;
    *out = load_le(c->buf + c->pos, bytes);
    c->pos += bytes;
    return ZL_OK;
}

static int read_u32(cursor *c, uint32_t *out, const char *field)
{
    uint64_t v;
    int rc = read_uint(c, 4, &v, field);
    if (rc) return rc;
    *out = (uint32_t)v;
    return ZL_OK;
}

/* Reads a length-prefixed string of at most max_len bytes. */
static int read_str(cursor *c, uint64_t max_len, gguf_str *out, const char *field)
{
    uint64_t len;
    int rc = read_uint(c, 8, &len, field);
    if (rc) return rc;
    if (len > max_len)
        return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: %s length %llu at offset %llu exceeds the limit of %llu bytes",
                          c->path, c->what, field, (unsigned long long)len, (unsigned long long)(c->pos - 8),
                          (unsigned long long)max_len);
    if (len > left(c))
        return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: %s of length %llu at offset %llu runs past end of file (%llu bytes left)",
                          c->path, c->what, field, (unsigned long long)len, (unsigned long long)c->pos,
                          (unsigned long long)left(c));
    out->ptr = (const char *)c->buf + c->pos;
    out->len = len;
    c->pos += len;
    return ZL_OK;
}

/* ---- metadata ---- */

static int read_scalar(cursor *c, gguf_vtype t, gguf_kv *kv)
{
    if (t == GGUF_T_STRING) return read_str(c, UINT64_MAX, &kv->v.str, "string value");
    const unsigned n = k_vtype_size[t];
    int rc = need(c, n, "value");
    if (rc) return rc;
    const uint8_t *p = c->buf + c->pos;
    if (t == GGUF_T_FLOAT32 || t == GGUF_T_FLOAT64) {
        kv->v.f64 = load_float(p, t);
    } else if (is_signed(t)) {
        kv->v.i64 = sign_extend(load_le(p, n), n);
    } else {
        kv->v.u64 = load_le(p, n);
        if (t == GGUF_T_BOOL && kv->v.u64 > 1)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: bool value at offset %llu is %llu, not 0 or 1", c->path,
                              c->what, (unsigned long long)c->pos, (unsigned long long)kv->v.u64);
    }
    c->pos += n;
    return ZL_OK;
}

static int read_array(cursor *c, gguf_kv *kv)
{
    uint32_t et;
    uint64_t n;
    int rc = read_u32(c, &et, "array element type");
    if (rc) return rc;
    if (et == GGUF_T_ARRAY)
        return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: nested arrays are not supported (element type array at offset %llu)",
                          c->path, c->what, (unsigned long long)(c->pos - 4));
    if (et >= GGUF_T_COUNT)
        return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: unknown array element type %u at offset %llu", c->path, c->what,
                          et, (unsigned long long)(c->pos - 4));
    if ((rc = read_uint(c, 8, &n, "array count"))) return rc;
    kv->arr_type = (gguf_vtype)et;
    kv->arr_n = n;
    kv->arr_data = c->buf + c->pos;

    if (et != GGUF_T_STRING) {
        const unsigned es = k_vtype_size[et];
        if (n > left(c) / es)
            return zl_err_set(c->err, ZL_EFORMAT,
                              "%s: %s: array of %llu %s elements at offset %llu runs past end of file (%llu bytes left)",
                              c->path, c->what, (unsigned long long)n, k_vtype_name[et], (unsigned long long)c->pos,
                              (unsigned long long)left(c));
        if (et == GGUF_T_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (c->buf[c->pos + i] > 1)
                    return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: bool element %llu is %u, not 0 or 1", c->path,
                                      c->what, (unsigned long long)i, c->buf[c->pos + i]);
        }
        c->pos += n * es;
        return ZL_OK;
    }

    /* Each string element takes at least its 8-byte length: a count that cannot fit fails before allocating. */
    if (n > left(c) / 8)
        return zl_err_set(c->err, ZL_EFORMAT,
                          "%s: %s: array of %llu strings at offset %llu runs past end of file (%llu bytes left, "
                          "8 needed per element)",
                          c->path, c->what, (unsigned long long)n, (unsigned long long)c->pos,
                          (unsigned long long)left(c));
    if (n == 0) return ZL_OK;
    uint64_t *off = malloc((size_t)n * sizeof *off);
    if (!off) return zl_err_set(c->err, ZL_ENOMEM, "%s: %s: out of memory for %llu string offsets", c->path, c->what,
                                (unsigned long long)n);
    kv->arr_str_off = off;
    const uint64_t start = c->pos;
    for (uint64_t i = 0; i < n; i++) {
        off[i] = c->pos - start;
        uint64_t len;
        if (left(c) < 8)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: string element %llu length at offset %llu runs past end of file",
                              c->path, c->what, (unsigned long long)i, (unsigned long long)c->pos);
        len = load_le(c->buf + c->pos, 8);
        c->pos += 8;
        if (len > left(c))
            return zl_err_set(c->err, ZL_EFORMAT,
                              "%s: %s: string element %llu of length %llu at offset %llu runs past end of file "
                              "(%llu bytes left)",
                              c->path, c->what, (unsigned long long)i, (unsigned long long)len,
                              (unsigned long long)c->pos, (unsigned long long)left(c));
        c->pos += len;
    }
    return ZL_OK;
}

static int parse_kvs(gguf_file *f, cursor *c)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        snprintf(c->what, sizeof c->what, "kv %llu", (unsigned long long)i);
        int rc = read_str(c, GGUF_MAX_NAME_LEN, &kv->key, "key");
        if (rc) return rc;
        if (kv->key.len == 0)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: kv %llu: empty key at offset %llu", c->path,
                              (unsigned long long)i, (unsigned long long)(c->pos - 8));
        snprintf(c->what, sizeof c->what, "kv %llu '%s'", (unsigned long long)i, show(kv->key).s);
        uint32_t t;
        if ((rc = read_u32(c, &t, "value type"))) return rc;
        if (t >= GGUF_T_COUNT)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: unknown value type %u at offset %llu", c->path, c->what, t,
                              (unsigned long long)(c->pos - 4));
        kv->type = (gguf_vtype)t;
        rc = t == GGUF_T_ARRAY ? read_array(c, kv) : read_scalar(c, kv->type, kv);
        if (rc) return rc;
    }
    return ZL_OK;
}

static int cmp_kv_ptr(const void *a, const void *b)
{
    return str_cmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return str_cmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x < y ? -1 : x > y; /* stable order for equal offsets: the messages name the earlier tensor first */
}

static int index_kvs(gguf_file *f, zl_err *err)
{
    if (f->n_kv == 0) return ZL_OK;
    f->kv_by_key = malloc((size_t)f->n_kv * sizeof *f->kv_by_key);
    if (!f->kv_by_key) return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for the key index", f->path);
    for (uint64_t i = 0; i < f->n_kv; i++) f->kv_by_key[i] = &f->kv[i];
    qsort(f->kv_by_key, (size_t)f->n_kv, sizeof *f->kv_by_key, cmp_kv_ptr);
    for (uint64_t i = 1; i < f->n_kv; i++) {
        const gguf_kv *a = f->kv_by_key[i - 1], *b = f->kv_by_key[i];
        if (str_cmp(a->key, b->key) == 0) {
            const uint64_t ia = (uint64_t)(a - f->kv), ib = (uint64_t)(b - f->kv);
            return zl_err_set(err, ZL_EFORMAT, "%s: duplicate key '%s' (kv %llu and kv %llu)", f->path,
                              show(a->key).s, (unsigned long long)(ia < ib ? ia : ib),
                              (unsigned long long)(ia < ib ? ib : ia));
        }
    }
    return ZL_OK;
}

static int resolve_alignment(gguf_file *f, zl_err *err)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv) return ZL_OK;
    if (kv->type != GGUF_T_UINT32)
        return zl_err_set(err, ZL_EFORMAT, "%s: key 'general.alignment': type is %s, must be uint32", f->path,
                          k_vtype_name[kv->type]);
    const uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) != 0 || a > GGUF_MAX_ALIGNMENT)
        return zl_err_set(err, ZL_EFORMAT, "%s: key 'general.alignment': %llu is not a power of two in 1..%u", f->path,
                          (unsigned long long)a, GGUF_MAX_ALIGNMENT);
    f->alignment = a;
    return ZL_OK;
}

/* ---- tensors ---- */

static int parse_tensor_infos(gguf_file *f, cursor *c)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        snprintf(c->what, sizeof c->what, "tensor %llu", (unsigned long long)i);
        int rc = read_str(c, GGUF_MAX_NAME_LEN, &t->name, "name");
        if (rc) return rc;
        if (t->name.len == 0)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: tensor %llu: empty name at offset %llu", c->path,
                              (unsigned long long)i, (unsigned long long)(c->pos - 8));
        snprintf(c->what, sizeof c->what, "tensor '%s'", show(t->name).s);

        if ((rc = read_u32(c, &t->n_dims, "n_dims"))) return rc;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: n_dims %u is out of range (1..%d)", c->path, c->what,
                              t->n_dims, GGUF_MAX_DIMS);
        uint64_t n_elem = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if ((rc = read_uint(c, 8, &ne, "dimension"))) return rc;
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: dimension %u is %llu (must be 1..2^63-1)", c->path,
                                  c->what, d, (unsigned long long)ne);
            if (n_elem > (uint64_t)INT64_MAX / ne)
                return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: element count overflows 64 bits at dimension %u (%llu x %llu)",
                                  c->path, c->what, d, (unsigned long long)n_elem, (unsigned long long)ne);
            n_elem *= ne;
            t->ne[d] = (int64_t)ne;
        }
        if ((rc = read_u32(c, &t->type, "type"))) return rc;
        const zl_type_traits *tr = zl_type_traits_ref(t->type);
        if (!tr)
            return zl_err_set(c->err, ZL_EUNSUPPORTED, "%s: %s: unknown tensor type %u", c->path, c->what, t->type);
        if (t->ne[0] % tr->block_size != 0)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: row length %lld is not a multiple of the %s block size %lld",
                              c->path, c->what, (long long)t->ne[0], tr->name, (long long)tr->block_size);
        const uint64_t row_blocks = (uint64_t)(t->ne[0] / tr->block_size);
        const uint64_t n_rows = n_elem / (uint64_t)t->ne[0]; /* >= 1 */
        if (row_blocks > UINT64_MAX / tr->type_size || row_blocks * tr->type_size > UINT64_MAX / n_rows)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: byte size overflows 64 bits (%llu elements of %s)", c->path,
                              c->what, (unsigned long long)n_elem, tr->name);
        t->size = row_blocks * tr->type_size * n_rows;
        if ((rc = read_uint(c, 8, &t->offset, "offset"))) return rc;
        if (t->offset % f->alignment != 0)
            return zl_err_set(c->err, ZL_EFORMAT, "%s: %s: offset %llu is not a multiple of the alignment %llu", c->path,
                              c->what, (unsigned long long)t->offset, (unsigned long long)f->alignment);
    }
    return ZL_OK;
}

/* Puts the data section after the tensor infos and checks every tensor lies inside it. */
static int place_tensors(gguf_file *f, uint64_t infos_end, zl_err *err)
{
    const uint64_t pad = (f->alignment - infos_end % f->alignment) % f->alignment;
    f->data_off = infos_end + pad; /* infos_end <= size, so no overflow */
    if (f->n_tensors == 0) return ZL_OK;
    if (f->data_off > f->size)
        return zl_err_set(err, ZL_EFORMAT, "%s: data section would start at offset %llu, past end of file (size %llu)",
                          f->path, (unsigned long long)f->data_off, (unsigned long long)f->size);
    const uint64_t data_size = f->size - f->data_off;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_size || t->size > data_size - t->offset)
            return zl_err_set(err, ZL_EFORMAT, "%s: tensor '%s': data ends past end of file (offset %llu, size %llu, data section %llu)",
                              f->path, show(t->name).s, (unsigned long long)t->offset, (unsigned long long)t->size,
                              (unsigned long long)data_size);
        t->data = f->base + f->data_off + t->offset;
    }
    return ZL_OK;
}

static int index_tensors(gguf_file *f, zl_err *err)
{
    if (f->n_tensors == 0) return ZL_OK;
    const size_t n = (size_t)f->n_tensors;
    f->tensor_by_name = malloc(n * sizeof *f->tensor_by_name);
    if (!f->tensor_by_name) return zl_err_set(err, ZL_ENOMEM, "%s: out of memory for the tensor index", f->path);
    for (size_t i = 0; i < n; i++) f->tensor_by_name[i] = &f->tensors[i];
    qsort(f->tensor_by_name, n, sizeof *f->tensor_by_name, cmp_tensor_name);
    for (size_t i = 1; i < n; i++) {
        const gguf_tensor *a = f->tensor_by_name[i - 1], *b = f->tensor_by_name[i];
        if (str_cmp(a->name, b->name) == 0) {
            const uint64_t ia = (uint64_t)(a - f->tensors), ib = (uint64_t)(b - f->tensors);
            return zl_err_set(err, ZL_EFORMAT, "%s: duplicate tensor name '%s' (tensor %llu and tensor %llu)", f->path,
                              show(a->name).s, (unsigned long long)(ia < ib ? ia : ib),
                              (unsigned long long)(ia < ib ? ib : ia));
        }
    }

    /* Overlap: sorted by offset, each region must end at or before the next one starts. */
    const gguf_tensor **by_off = malloc(n * sizeof *by_off);
    if (!by_off) return zl_err_set(err, ZL_ENOMEM, "%s: out of memory checking tensor overlap", f->path);
    for (size_t i = 0; i < n; i++) by_off[i] = &f->tensors[i];
    qsort(by_off, n, sizeof *by_off, cmp_tensor_offset);
    int rc = ZL_OK;
    for (size_t i = 1; i < n && rc == ZL_OK; i++) {
        const gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (a->offset + a->size > b->offset) /* no overflow: both inside the data section */
            rc = zl_err_set(err, ZL_EFORMAT,
                            "%s: tensors '%s' (offset %llu, size %llu) and '%s' (offset %llu, size %llu) overlap",
                            f->path, show(a->name).s, (unsigned long long)a->offset, (unsigned long long)a->size,
                            show(b->name).s, (unsigned long long)b->offset, (unsigned long long)b->size);
    }
    free(by_off);
    return rc;
}

/* ---- open / close ---- */

static int parse_header(gguf_file *f, cursor *c)
{
    if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0) {
        uint8_t m[4] = {0};
        memcpy(m, f->base, f->size < 4 ? (size_t)f->size : 4);
        return zl_err_set(c->err, ZL_EFORMAT, "%s: bad magic: not a GGUF file (first bytes %02x %02x %02x %02x, file size %llu)",
                          f->path, m[0], m[1], m[2], m[3], (unsigned long long)f->size);
    }
    c->pos = 4;
    snprintf(c->what, sizeof c->what, "header");
    int rc = read_u32(c, &f->version, "version");
    if (rc) return rc;
    if (f->version == 1)
        return zl_err_set(c->err, ZL_EUNSUPPORTED, "%s: GGUF version 1 is not supported (only versions 2 and 3)",
                          f->path);
    if (f->version != 2 && f->version != 3) {
        const uint32_t v = f->version;
        const uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
        if (swapped == 2 || swapped == 3)
            return zl_err_set(c->err, ZL_EUNSUPPORTED,
                              "%s: big-endian GGUF file (version %u byte-swapped); only little-endian files are supported",
                              f->path, swapped);
        return zl_err_set(c->err, ZL_EUNSUPPORTED, "%s: unknown GGUF version %u (supported: 2 and 3)", f->path, v);
    }
    if ((rc = read_uint(c, 8, &f->n_tensors, "tensor count"))) return rc;
    if ((rc = read_uint(c, 8, &f->n_kv, "kv count"))) return rc;

    /* Lower bounds on the bytes these counts need, checked before allocating for them. */
    const uint64_t rest = left(c);
    if (f->n_kv > rest / GGUF_MIN_KV_SIZE)
        return zl_err_set(c->err, ZL_EFORMAT, "%s: kv count %llu cannot fit in the %llu bytes after the header",
                          f->path, (unsigned long long)f->n_kv, (unsigned long long)rest);
    if (f->n_tensors > rest / GGUF_MIN_TENSOR_INFO_SIZE ||
        f->n_tensors * GGUF_MIN_TENSOR_INFO_SIZE > rest - f->n_kv * GGUF_MIN_KV_SIZE)
        return zl_err_set(c->err, ZL_EFORMAT, "%s: tensor count %llu cannot fit in the %llu bytes after the header",
                          f->path, (unsigned long long)f->n_tensors, (unsigned long long)rest);
    if (f->n_kv && !(f->kv = calloc((size_t)f->n_kv, sizeof *f->kv)))
        return zl_err_set(c->err, ZL_ENOMEM, "%s: out of memory for %llu kvs", f->path, (unsigned long long)f->n_kv);
    if (f->n_tensors && !(f->tensors = calloc((size_t)f->n_tensors, sizeof *f->tensors)))
        return zl_err_set(c->err, ZL_ENOMEM, "%s: out of memory for %llu tensors", f->path,
                          (unsigned long long)f->n_tensors);
    return ZL_OK;
}

static int parse(gguf_file *f, zl_err *err)
{
    cursor c = {.buf = f->base, .size = f->size, .pos = 0, .path = f->path, .err = err};
    int rc;
    if ((rc = parse_header(f, &c))) return rc;
    if ((rc = parse_kvs(f, &c))) return rc;
    if ((rc = index_kvs(f, err))) return rc;
    if ((rc = resolve_alignment(f, err))) return rc;
    if ((rc = parse_tensor_infos(f, &c))) return rc;
    if ((rc = place_tensors(f, c.pos, err))) return rc;
    return index_tensors(f, err);
}

static gguf_file *file_new(const char *name, zl_err *err)
{
    gguf_file *f = calloc(1, sizeof *f);
    const size_t n = strlen(name);
    if (f) f->path = malloc(n + 1);
    if (!f || !f->path) {
        free(f);
        zl_err_set(err, ZL_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    memcpy(f->path, name, n + 1);
    return f;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (uint64_t i = 0; i < f->n_kv && f->kv; i++) free((void *)f->kv[i].arr_str_off);
    free(f->kv);
    free(f->kv_by_key);
    free(f->tensors);
    free(f->tensor_by_name);
    if (f->map) {
        if (f->locked) munlock(f->map, f->map_len);
        munmap(f->map, f->map_len);
    }
    if (f->owned) {
        if (f->locked) munlock(f->owned, (size_t)f->size);
        free(f->owned);
    }
    free(f->path);
    free(f);
}

int gguf_open_memory(const void *buf, size_t size, const char *name, gguf_file **out, zl_err *err)
{
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && size) return zl_err_set(err, ZL_EINVAL, "%s: NULL buffer of %zu bytes", name, size);
    gguf_file *f = file_new(name, err);
    if (!f) return ZL_ENOMEM;
    static const uint8_t empty[1] = {0};
    f->base = buf ? buf : empty;
    f->size = size;
    int rc = parse(f, err);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return ZL_OK;
}

static int read_all(int fd, uint8_t *dst, size_t n, const char *path, zl_err *err)
{
    size_t done = 0;
    while (done < n) {
        const ssize_t r = pread(fd, dst + done, n - done, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return zl_err_set(err, ZL_EIO, "%s: read failed at offset %zu: %s", path, done, strerror(errno));
        if (r == 0)
            return zl_err_set(err, ZL_EIO, "%s: file shrank while reading (got %zu of %zu bytes)", path, done, n);
        done += (size_t)r;
    }
    return ZL_OK;
}

/* Maps or reads path into f. */
static int load_file(gguf_file *f, const char *path, const gguf_open_opts *o, zl_err *err)
{
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return zl_err_set(err, ZL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = ZL_OK;
    if (fstat(fd, &st) != 0) {
        rc = zl_err_set(err, ZL_EIO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = zl_err_set(err, ZL_EIO, "%s: not a regular file", path);
    } else if (st.st_size < (off_t)GGUF_HEADER_SIZE) {
        rc = zl_err_set(err, ZL_EFORMAT, "%s: file of %lld bytes is too small for a GGUF header (%u bytes)", path,
                        (long long)st.st_size, GGUF_HEADER_SIZE);
    } else if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = zl_err_set(err, ZL_EUNSUPPORTED, "%s: file of %lld bytes does not fit in the address space", path,
                        (long long)st.st_size);
    }
    if (rc) {
        close(fd);
        return rc;
    }
    const size_t n = (size_t)st.st_size;
    f->size = n;
    if (o->use_mmap) {
        void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = zl_err_set(err, ZL_EIO, "%s: mmap of %zu bytes failed: %s", path, n, strerror(errno));
        } else {
            f->map = m;
            f->map_len = n;
            f->base = m;
        }
    } else {
        /* 2 MiB aligned and advised for transparent huge pages (where the kernel's THP mode is "madvise"): weights
         * are streamed once per token, and with 4 KiB pages every 4 KiB row of an F16 matrix costs a TLB miss. */
        const size_t huge = (size_t)2 << 20;
        if (n >= huge && posix_memalign(&f->owned, huge, n) == 0) {
#ifdef MADV_HUGEPAGE
            (void)madvise(f->owned, (n + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
        } else {
            f->owned = malloc(n);
        }
        if (!f->owned)
            rc = zl_err_set(err, ZL_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
        else if ((rc = read_all(fd, f->owned, n, path, err)) == ZL_OK)
            f->base = f->owned;
    }
    close(fd);
    if (rc == ZL_OK && o->use_mlock) {
        void *p = f->map ? f->map : f->owned;
        if (mlock(p, n) == 0)
            f->locked = true;
        else
            snprintf(f->warning, sizeof f->warning, "%s: mlock of %zu bytes failed: %s (continuing unlocked)", path,
                     n, strerror(errno));
    }
    return rc;
}

void *gguf_writable(gguf_file *f, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (!f || !f->base || b < f->base || n > f->size || (size_t)(b - f->base) > f->size - n) return NULL;
    if (f->owned) return (void *)(uintptr_t)p;
    if (!f->map) return NULL;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)b & ~(page - 1), hi = ((uintptr_t)b + n + page - 1) & ~(page - 1);
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) != 0) return NULL;
    return (void *)(uintptr_t)p;
}

int gguf_open(const char *path, const gguf_open_opts *opts, gguf_file **out, zl_err *err)
{
    *out = NULL;
    const gguf_open_opts defaults = {.use_mmap = true, .use_mlock = false};
    const gguf_open_opts *o = opts ? opts : &defaults;
    gguf_file *f = file_new(path, err);
    if (!f) return ZL_ENOMEM;
    int rc = load_file(f, path, o, err);
    if (rc == ZL_OK) rc = parse(f, err);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return ZL_OK;
}

/* ---- accessors ---- */

const char *gguf_path(const gguf_file *f) { return f->path; }
uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint64_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_file_size(const gguf_file *f) { return f->size; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_off; }
const char *gguf_warning(const gguf_file *f) { return f->warning[0] ? f->warning : NULL; }
uint64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
uint64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    const gguf_str k = {key, strlen(key)};
    size_t lo = 0, hi = (size_t)f->n_kv;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = str_cmp(f->kv_by_key[mid]->key, k);
        if (c == 0) return f->kv_by_key[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    const gguf_str k = {name, strlen(name)};
    size_t lo = 0, hi = (size_t)f->n_tensors;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = str_cmp(f->tensor_by_name[mid]->name, k);
        if (c == 0) return f->tensor_by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Finds key for a getter: NULL when absent (err's message cleared), else the entry. */
static const gguf_kv *lookup(const gguf_file *f, const char *key, zl_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv && err) err->msg[0] = '\0';
    return kv;
}

static bool wrong_type(const gguf_file *f, const gguf_kv *kv, const char *want, zl_err *err)
{
    zl_err_set(err, ZL_EFORMAT, "%s: key '%s': expected %s, found %s", f->path, show(kv->key).s, want,
               k_vtype_name[kv->type]);
    return false;
}

static bool out_of_range(const gguf_file *f, const gguf_kv *kv, const char *want, zl_err *err)
{
    if (is_signed(kv->type))
        zl_err_set(err, ZL_ERANGE, "%s: key '%s': value %lld is out of range for %s", f->path, show(kv->key).s,
                   (long long)kv->v.i64, want);
    else
        zl_err_set(err, ZL_ERANGE, "%s: key '%s': value %llu is out of range for %s", f->path, show(kv->key).s,
                   (unsigned long long)kv->v.u64, want);
    return false;
}

/* Any integer kv within [min, max], widened to the two representations callers need. */
static bool get_int(const gguf_file *f, const char *key, int64_t min, uint64_t max, const char *want, uint64_t *u,
                    int64_t *s, zl_err *err)
{
    const gguf_kv *kv = lookup(f, key, err);
    if (!kv) return false;
    if (is_unsigned(kv->type)) {
        if (kv->v.u64 > max) return out_of_range(f, kv, want, err);
        *u = kv->v.u64;
        *s = kv->v.u64 <= (uint64_t)INT64_MAX ? (int64_t)kv->v.u64 : 0; /* read only when max <= INT64_MAX */
        return true;
    }
    if (is_signed(kv->type)) {
        if (kv->v.i64 < min || (kv->v.i64 >= 0 && (uint64_t)kv->v.i64 > max)) return out_of_range(f, kv, want, err);
        *s = kv->v.i64;
        *u = (uint64_t)kv->v.i64;
        return true;
    }
    return wrong_type(f, kv, "an integer", err);
}

bool gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, zl_err *err)
{
    uint64_t u;
    int64_t s;
    if (!get_int(f, key, 0, UINT32_MAX, "uint32", &u, &s, err)) return false;
    *out = (uint32_t)u;
    return true;
}

bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, zl_err *err)
{
    uint64_t u;
    int64_t s;
    if (!get_int(f, key, 0, UINT64_MAX, "uint64", &u, &s, err)) return false;
    *out = u;
    return true;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, zl_err *err)
{
    uint64_t u;
    int64_t s;
    if (!get_int(f, key, INT64_MIN, (uint64_t)INT64_MAX, "int64", &u, &s, err)) return false;
    *out = s;
    return true;
}

bool gguf_get_f32(const gguf_file *f, const char *key, float *out, zl_err *err)
{
    const gguf_kv *kv = lookup(f, key, err);
    if (!kv) return false;
    if (kv->type != GGUF_T_FLOAT32 && kv->type != GGUF_T_FLOAT64) return wrong_type(f, kv, "a float", err);
    const double d = kv->v.f64;
    if (isfinite(d) && fabs(d) > 3.4028234663852886e38) {
        zl_err_set(err, ZL_ERANGE, "%s: key '%s': value %g is out of range for float32", f->path, show(kv->key).s, d);
        return false;
    }
    *out = (float)d;
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out, zl_err *err)
{
    const gguf_kv *kv = lookup(f, key, err);
    if (!kv) return false;
    if (kv->type != GGUF_T_BOOL) return wrong_type(f, kv, "a bool", err);
    *out = kv->v.u64 != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, zl_err *err)
{
    const gguf_kv *kv = lookup(f, key, err);
    if (!kv) return false;
    if (kv->type != GGUF_T_STRING) return wrong_type(f, kv, "a string", err);
    *out = kv->v.str;
    return true;
}

bool gguf_get_arr(const gguf_file *f, const char *key, const gguf_kv **kv_out, zl_err *err)
{
    const gguf_kv *kv = lookup(f, key, err);
    if (!kv) return false;
    if (kv->type != GGUF_T_ARRAY) return wrong_type(f, kv, "an array", err);
    *kv_out = kv;
    return true;
}

gguf_str gguf_arr_str(const gguf_kv *kv, uint64_t i)
{
    gguf_str s = {NULL, 0};
    if (kv->type != GGUF_T_ARRAY || kv->arr_type != GGUF_T_STRING || i >= kv->arr_n) return s;
    const uint8_t *p = kv->arr_data + kv->arr_str_off[i];
    s.len = load_le(p, 8);
    s.ptr = (const char *)p + 8;
    return s;
}

bool gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out)
{
    if (kv->type != GGUF_T_ARRAY || i >= kv->arr_n) return false;
    const gguf_vtype t = kv->arr_type;
    if (!is_signed(t) && !is_unsigned(t) && t != GGUF_T_BOOL) return false;
    const unsigned n = k_vtype_size[t];
    const uint64_t v = load_le(kv->arr_data + i * n, n);
    if (is_signed(t)) {
        *out = sign_extend(v, n);
        return true;
    }
    if (v > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)v;
    return true;
}

bool gguf_arr_f32(const gguf_kv *kv, uint64_t i, float *out)
{
    if (kv->type != GGUF_T_ARRAY || i >= kv->arr_n) return false;
    if (kv->arr_type != GGUF_T_FLOAT32 && kv->arr_type != GGUF_T_FLOAT64) return false;
    const unsigned n = k_vtype_size[kv->arr_type];
    *out = (float)load_float(kv->arr_data + i * n, kv->arr_type);
    return true;
}
