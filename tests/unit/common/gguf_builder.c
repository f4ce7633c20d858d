/* gguf_builder.c - in-memory GGUF image writer for tests (see gguf_builder.h). libc only. */
#include "common/gguf_builder.h"

#include <stdlib.h>
#include <string.h>

void gb_init(gguf_builder *b)
{
    memset(b, 0, sizeof *b);
}

void gb_free(gguf_builder *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

static bool reserve(gguf_builder *b, size_t n)
{
    if (b->oom) return false;
    if (n <= b->cap - b->len) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->buf, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->buf = p;
    b->cap = cap;
    return true;
}

void gb_bytes(gguf_builder *b, const void *p, size_t n)
{
    if (!n || !reserve(b, n)) return;
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

void gb_zeros(gguf_builder *b, size_t n)
{
    if (!n || !reserve(b, n)) return;
    memset(b->buf + b->len, 0, n);
    b->len += n;
}

static void put_le(uint8_t *dst, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

static void le(gguf_builder *b, uint64_t v, unsigned n)
{
    if (!reserve(b, n)) return;
    put_le(b->buf + b->len, v, n);
    b->len += n;
}

void gb_u8(gguf_builder *b, uint8_t v) { le(b, v, 1); }
void gb_u16(gguf_builder *b, uint16_t v) { le(b, v, 2); }
void gb_u32(gguf_builder *b, uint32_t v) { le(b, v, 4); }
void gb_u64(gguf_builder *b, uint64_t v) { le(b, v, 8); }

void gb_f32(gguf_builder *b, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    le(b, bits, 4);
}

void gb_f64(gguf_builder *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    le(b, bits, 8);
}

void gb_str(gguf_builder *b, const char *s)
{
    const size_t n = strlen(s);
    gb_strn(b, n, s, n);
}

void gb_strn(gguf_builder *b, uint64_t len, const char *s, size_t n)
{
    gb_u64(b, len);
    gb_bytes(b, s, n);
}

void gb_align(gguf_builder *b, size_t align)
{
    if (align && b->len % align) gb_zeros(b, align - b->len % align);
}

void gb_put_u32_at(gguf_builder *b, size_t off, uint32_t v)
{
    if (!b->oom && off <= b->len && b->len - off >= 4) put_le(b->buf + off, v, 4);
}

void gb_put_u64_at(gguf_builder *b, size_t off, uint64_t v)
{
    if (!b->oom && off <= b->len && b->len - off >= 8) put_le(b->buf + off, v, 8);
}

void gb_header(gguf_builder *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

void gb_kv_key(gguf_builder *b, const char *key, uint32_t vtype)
{
    gb_str(b, key);
    gb_u32(b, vtype);
}

void gb_kv_u8(gguf_builder *b, const char *key, uint8_t v) { gb_kv_key(b, key, 0); gb_u8(b, v); }
void gb_kv_i8(gguf_builder *b, const char *key, int8_t v) { gb_kv_key(b, key, 1); gb_u8(b, (uint8_t)v); }
void gb_kv_u16(gguf_builder *b, const char *key, uint16_t v) { gb_kv_key(b, key, 2); gb_u16(b, v); }
void gb_kv_i16(gguf_builder *b, const char *key, int16_t v) { gb_kv_key(b, key, 3); gb_u16(b, (uint16_t)v); }
void gb_kv_u32(gguf_builder *b, const char *key, uint32_t v) { gb_kv_key(b, key, 4); gb_u32(b, v); }
void gb_kv_i32(gguf_builder *b, const char *key, int32_t v) { gb_kv_key(b, key, 5); gb_u32(b, (uint32_t)v); }
void gb_kv_f32(gguf_builder *b, const char *key, float v) { gb_kv_key(b, key, 6); gb_f32(b, v); }
void gb_kv_bool(gguf_builder *b, const char *key, bool v) { gb_kv_key(b, key, 7); gb_u8(b, v ? 1 : 0); }
void gb_kv_str(gguf_builder *b, const char *key, const char *v) { gb_kv_key(b, key, 8); gb_str(b, v); }
void gb_kv_u64(gguf_builder *b, const char *key, uint64_t v) { gb_kv_key(b, key, 10); gb_u64(b, v); }
void gb_kv_i64(gguf_builder *b, const char *key, int64_t v) { gb_kv_key(b, key, 11); gb_u64(b, (uint64_t)v); }
void gb_kv_f64(gguf_builder *b, const char *key, double v) { gb_kv_key(b, key, 12); gb_f64(b, v); }

void gb_kv_arr(gguf_builder *b, const char *key, uint32_t elem_type, uint64_t count)
{
    gb_kv_key(b, key, 9);
    gb_u32(b, elem_type);
    gb_u64(b, count);
}

void gb_kv_arr_str(gguf_builder *b, const char *key, const char *const *v, uint64_t count)
{
    gb_kv_arr(b, key, 8, count);
    for (uint64_t i = 0; i < count; i++) gb_str(b, v[i]);
}

void gb_tensor_info(gguf_builder *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset)
{
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gb_u64(b, ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}
