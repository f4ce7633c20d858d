/*
 * gguf_builder.h - writes GGUF byte images in memory, for tests that need valid and deliberately malformed files.
 *
 * The builder is a growable little-endian byte buffer with one function per GGUF building block; it checks
 * nothing, so a test can write any count, length or type it likes and patch bytes afterwards. Depends on libc
 * only (it is linked into every unit test binary). Allocation failure is sticky: b->oom is set and later
 * writes are dropped, so a test asserts !b.oom once before using b.buf / b.len.
 *
 * Typical use:
 *     gguf_builder b; gb_init(&b);
 *     gb_header(&b, 3, n_tensors, n_kv);
 *     gb_kv_u32(&b, "general.alignment", 32); ...
 *     gb_tensor_info(&b, "w", 2, (uint64_t[]){32, 4}, 0, 0); ...
 *     gb_align(&b, 32); size_t data_start = b.len; gb_zeros(&b, bytes);
 *     ... gguf_open_memory(b.buf, b.len, "t.gguf", &f, &err) ...
 *     gb_free(&b);
 */
#ifndef ZL_TEST_GGUF_BUILDER_H
#define ZL_TEST_GGUF_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gguf_builder {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
} gguf_builder;

void gb_init(gguf_builder *b);
void gb_free(gguf_builder *b);

/* Raw little-endian values. */
void gb_bytes(gguf_builder *b, const void *p, size_t n);
void gb_zeros(gguf_builder *b, size_t n);
void gb_u8(gguf_builder *b, uint8_t v);
void gb_u16(gguf_builder *b, uint16_t v);
void gb_u32(gguf_builder *b, uint32_t v);
void gb_u64(gguf_builder *b, uint64_t v);
void gb_f32(gguf_builder *b, float v);
void gb_f64(gguf_builder *b, double v);
/* A GGUF string: u64 length then the bytes (no NUL). gb_strn writes len as the prefix but only n bytes. */
void gb_str(gguf_builder *b, const char *s);
void gb_strn(gguf_builder *b, uint64_t len, const char *s, size_t n);
/* Zero padding until len is a multiple of align. */
void gb_align(gguf_builder *b, size_t align);
/* Overwrite bytes already written (for patching counts and offsets). */
void gb_put_u32_at(gguf_builder *b, size_t off, uint32_t v);
void gb_put_u64_at(gguf_builder *b, size_t off, uint64_t v);

/* File structure. Value type ids are GGUF's (0 uint8 ... 12 float64; 8 string, 9 array). */
void gb_header(gguf_builder *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv);
void gb_kv_key(gguf_builder *b, const char *key, uint32_t vtype); /* key + value type; caller writes the value */
void gb_kv_u8(gguf_builder *b, const char *key, uint8_t v);
void gb_kv_i8(gguf_builder *b, const char *key, int8_t v);
void gb_kv_u16(gguf_builder *b, const char *key, uint16_t v);
void gb_kv_i16(gguf_builder *b, const char *key, int16_t v);
void gb_kv_u32(gguf_builder *b, const char *key, uint32_t v);
void gb_kv_i32(gguf_builder *b, const char *key, int32_t v);
void gb_kv_u64(gguf_builder *b, const char *key, uint64_t v);
void gb_kv_i64(gguf_builder *b, const char *key, int64_t v);
void gb_kv_f32(gguf_builder *b, const char *key, float v);
void gb_kv_f64(gguf_builder *b, const char *key, double v);
void gb_kv_bool(gguf_builder *b, const char *key, bool v);
void gb_kv_str(gguf_builder *b, const char *key, const char *v);
/* Array header (key, type 9, element type, count); the caller writes the elements. */
void gb_kv_arr(gguf_builder *b, const char *key, uint32_t elem_type, uint64_t count);
/* A whole string array. */
void gb_kv_arr_str(gguf_builder *b, const char *key, const char *const *v, uint64_t count);
/* Tensor info: name, n_dims, ne[0..n_dims), ggml type id, offset. */
void gb_tensor_info(gguf_builder *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset);

#endif
