/*
 * test_gguf.c - the GGUF reader on files built byte by byte (tests/unit/common/gguf_builder.h), on malformed
 * variants of them, and on real files when present (the SmolLM2 model, the shared vocab files).
 *
 * Expected values come from the GGUF format itself (ggml block sizes: q8_0 = 32 elements in 34 bytes, q4_1 = 32
 * in 20, f16 = 2 bytes) and, for the real files, from gguf-py (the reference Python reader). Every malformed image
 * is copied into an exactly-sized heap buffer before opening, so AddressSanitizer sees any read past its end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/gguf_builder.h"
#include "format/gguf.h"

#define NAME "t.gguf"

/* ggml type ids and GGUF value type ids, written out from the format spec (not from our headers). */
enum { T_F32 = 0, T_F16 = 1, T_Q4_1 = 3, T_Q8_0 = 8 };
enum { V_U8 = 0, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR, V_U64, V_I64, V_F64 };

/* Opens a copy of the image in an exactly-sized heap buffer; *copy must be freed after gguf_close. */
static int open_exact(const uint8_t *img, size_t len, gguf_file **f, void **copy, zl_err *err)
{
    *copy = malloc(len ? len : 1);
    assert_non_null(*copy);
    if (len) memcpy(*copy, img, len);
    memset(err->msg, 0, sizeof err->msg);
    return gguf_open_memory(*copy, len, NAME, f, err);
}

/* The image must fail with code, and the message must name the file and contain needle. */
static void expect_fail_img(const uint8_t *img, size_t len, int code, const char *needle)
{
    gguf_file *f = NULL;
    void *copy;
    zl_err err;
    const int rc = open_exact(img, len, &f, &copy, &err);
    if (rc != code || !strstr(err.msg, needle) || strncmp(err.msg, NAME ": ", strlen(NAME) + 2) != 0)
        print_error("rc %d (want %d), message \"%s\" (want \"%s\")\n", rc, code, err.msg, needle);
    assert_int_equal(rc, code);
    assert_null(f);
    assert_non_null(strstr(err.msg, needle));
    assert_memory_equal(err.msg, NAME ": ", strlen(NAME) + 2);
    free(copy);
}

static void expect_fail(gguf_builder *b, int code, const char *needle)
{
    assert_false(b->oom);
    expect_fail_img(b->buf, b->len, code, needle);
    gb_free(b);
}

/* ---- the valid file ---- */

typedef struct tensor_spec {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t size; /* bytes, from the format's block sizes */
} tensor_spec;

static const tensor_spec k_tensors[] = {
    {"tok.f32", 2, {8, 3}, T_F32, 8 * 3 * 4},
    {"w.q8_0", 2, {64, 2}, T_Q8_0, 2 * 2 * 34},
    {"w.q4_1", 4, {32, 1, 1, 2}, T_Q4_1, 2 * 20},
    {"v.f16", 1, {5}, T_F16, 5 * 2},
};
#define N_TENSORS (sizeof k_tensors / sizeof k_tensors[0])

static const char *const k_strs[] = {"alpha", "", "g\xc3\xa9nial", "with\0nul"};

enum { N_KV_BASE = 22 };

/* A valid file with every value type, arrays, string arrays and the tensors above, each tensor's bytes filled
 * with its index + 1. alignment 0 means "no general.alignment key" (default 32). Tensors are laid out in
 * reverse order in the data section so offsets and info order differ. */
static void build_valid(gguf_builder *b, uint32_t version, uint32_t alignment, uint64_t offsets[N_TENSORS])
{
    gb_init(b);
    gb_header(b, version, N_TENSORS, N_KV_BASE + (alignment ? 1 : 0));
    gb_kv_str(b, "general.architecture", "llama");
    gb_kv_u8(b, "v.u8", 200);
    gb_kv_i8(b, "v.i8", -100);
    gb_kv_u16(b, "v.u16", 60000);
    gb_kv_i16(b, "v.i16", -30000);
    gb_kv_u32(b, "v.u32", 4000000000u);
    gb_kv_i32(b, "v.i32", -2000000000);
    gb_kv_f32(b, "v.f32", 1.5f);
    gb_kv_bool(b, "v.bool", true);
    gb_kv_u64(b, "v.u64", ((uint64_t)1 << 40) + 7);
    gb_kv_i64(b, "v.i64", -((int64_t)1 << 40));
    gb_kv_f64(b, "v.f64", -2.25);
    gb_kv_u64(b, "v.u64max", UINT64_MAX);
    if (alignment) gb_kv_u32(b, "general.alignment", alignment);
    gb_kv_arr(b, "a.i32", V_I32, 3);
    gb_u32(b, 1), gb_u32(b, (uint32_t)-2), gb_u32(b, 3);
    gb_kv_arr(b, "a.f32", V_F32, 2);
    gb_f32(b, 0.5f), gb_f32(b, -1.25f);
    gb_kv_arr(b, "a.u8", V_U8, 3); /* odd length: the next kv starts unaligned */
    gb_u8(b, 7), gb_u8(b, 8), gb_u8(b, 255);
    gb_kv_arr(b, "a.bool", V_BOOL, 3);
    gb_u8(b, 1), gb_u8(b, 0), gb_u8(b, 1);
    gb_kv_arr(b, "a.str", V_STR, 4);
    for (int i = 0; i < 4; i++) gb_strn(b, i == 3 ? 8 : strlen(k_strs[i]), k_strs[i], i == 3 ? 8 : strlen(k_strs[i]));
    gb_kv_arr(b, "a.empty_str", V_STR, 0);
    gb_kv_arr(b, "a.empty_u32", V_U32, 0);
    gb_kv_arr(b, "a.u64", V_U64, 2);
    gb_u64(b, 5), gb_u64(b, UINT64_MAX);
    gb_kv_str(b, "s.empty", "");

    const uint64_t align = alignment ? alignment : 32;
    uint64_t off = 0;
    for (size_t k = N_TENSORS; k-- > 0;) {
        offsets[k] = off;
        off += (k_tensors[k].size + align - 1) / align * align;
    }
    for (size_t k = 0; k < N_TENSORS; k++)
        gb_tensor_info(b, k_tensors[k].name, k_tensors[k].n_dims, k_tensors[k].ne, k_tensors[k].type, offsets[k]);
    gb_align(b, align);
    const size_t data = b->len;
    /* The last region ends exactly at the end of the file (no trailing padding), so every prefix is short. */
    const uint64_t end = offsets[0] + k_tensors[0].size;
    gb_zeros(b, end);
    assert_false(b->oom);
    for (size_t k = 0; k < N_TENSORS; k++) memset(b->buf + data + offsets[k], (int)(k + 1), k_tensors[k].size);
}

static gguf_file *open_ok(const gguf_builder *b)
{
    gguf_file *f = NULL;
    zl_err err = {{0}};
    const int rc = gguf_open_memory(b->buf, b->len, NAME, &f, &err);
    if (rc) print_error("open failed: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(f);
    return f;
}

static void check_tensors(const gguf_file *f, const uint8_t *base, const uint64_t offsets[N_TENSORS], uint64_t align)
{
    assert_int_equal(gguf_n_tensors(f), N_TENSORS);
    assert_int_equal(gguf_data_offset(f) % align, 0);
    for (size_t k = 0; k < N_TENSORS; k++) {
        const gguf_tensor *t = gguf_tensor_at(f, k);
        assert_non_null(t);
        assert_true(gguf_str_eq(t->name, k_tensors[k].name));
        assert_ptr_equal(gguf_find_tensor(f, k_tensors[k].name), t);
        assert_int_equal(t->n_dims, k_tensors[k].n_dims);
        for (uint32_t d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], d < k_tensors[k].n_dims ? (int64_t)k_tensors[k].ne[d] : 1);
        assert_int_equal(t->type, k_tensors[k].type);
        assert_int_equal(t->offset, offsets[k]);
        assert_int_equal(t->size, k_tensors[k].size);
        assert_ptr_equal(t->data, base + gguf_data_offset(f) + offsets[k]);
        const uint8_t *p = t->data;
        assert_int_equal(p[0], k + 1);
        assert_int_equal(p[t->size - 1], k + 1);
    }
    assert_null(gguf_tensor_at(f, N_TENSORS));
    assert_null(gguf_find_tensor(f, "missing"));
    assert_null(gguf_find_tensor(f, "w.q8"));
}

static void test_valid_roundtrip(void **st)
{
    (void)st;
    for (uint32_t version = 2; version <= 3; version++) {
        gguf_builder b;
        uint64_t offs[N_TENSORS];
        build_valid(&b, version, 0, offs);
        gguf_file *f = open_ok(&b);
        zl_err err;

        assert_int_equal(gguf_version(f), version);
        assert_int_equal(gguf_alignment(f), 32);
        assert_int_equal(gguf_file_size(f), b.len);
        assert_string_equal(gguf_path(f), NAME);
        assert_null(gguf_warning(f));
        assert_int_equal(gguf_n_kv(f), N_KV_BASE);
        assert_true(gguf_str_eq(gguf_kv_at(f, 0)->key, "general.architecture"));
        assert_null(gguf_kv_at(f, N_KV_BASE));

        gguf_str s;
        assert_true(gguf_get_str(f, "general.architecture", &s, &err));
        assert_true(gguf_str_eq(s, "llama"));
        assert_true(gguf_get_str(f, "s.empty", &s, &err));
        assert_int_equal(s.len, 0);

        uint32_t u32;
        uint64_t u64;
        int64_t i64;
        float f32;
        bool bl;
        assert_true(gguf_get_u32(f, "v.u8", &u32, &err)), assert_int_equal(u32, 200);
        assert_true(gguf_get_u32(f, "v.u16", &u32, &err)), assert_int_equal(u32, 60000);
        assert_true(gguf_get_u32(f, "v.u32", &u32, &err)), assert_int_equal(u32, 4000000000u);
        assert_true(gguf_get_i64(f, "v.i8", &i64, &err)), assert_int_equal(i64, -100);
        assert_true(gguf_get_i64(f, "v.i16", &i64, &err)), assert_int_equal(i64, -30000);
        assert_true(gguf_get_i64(f, "v.i32", &i64, &err)), assert_int_equal(i64, -2000000000);
        assert_true(gguf_get_i64(f, "v.i64", &i64, &err)), assert_int_equal(i64, -((int64_t)1 << 40));
        assert_true(gguf_get_i64(f, "v.u32", &i64, &err)), assert_int_equal(i64, 4000000000);
        assert_true(gguf_get_u64(f, "v.u64", &u64, &err)), assert_int_equal(u64, ((uint64_t)1 << 40) + 7);
        assert_true(gguf_get_u64(f, "v.u64max", &u64, &err)), assert_true(u64 == UINT64_MAX);
        assert_true(gguf_get_f32(f, "v.f32", &f32, &err)), assert_true(f32 == 1.5f);
        assert_true(gguf_get_f32(f, "v.f64", &f32, &err)), assert_true(f32 == -2.25f);
        assert_true(gguf_get_bool(f, "v.bool", &bl, &err)), assert_true(bl);
        assert_int_equal(gguf_find(f, "v.f64")->type, GGUF_T_FLOAT64);
        assert_true(gguf_find(f, "v.f64")->v.f64 == -2.25);

        /* Range-checked conversions, and messages that name the key and the problem. */
        assert_false(gguf_get_u32(f, "v.u64", &u32, &err));
        assert_non_null(strstr(err.msg, "t.gguf: key 'v.u64': value 1099511627783 is out of range for uint32"));
        assert_false(gguf_get_u32(f, "v.i8", &u32, &err));
        assert_non_null(strstr(err.msg, "value -100 is out of range"));
        assert_false(gguf_get_u64(f, "v.i64", &u64, &err));
        assert_false(gguf_get_i64(f, "v.u64max", &i64, &err));
        assert_non_null(strstr(err.msg, "18446744073709551615 is out of range for int64"));
        assert_false(gguf_get_u32(f, "v.bool", &u32, &err));
        assert_non_null(strstr(err.msg, "expected an integer, found bool"));
        assert_false(gguf_get_f32(f, "general.architecture", &f32, &err));
        assert_non_null(strstr(err.msg, "key 'general.architecture': expected a float, found string"));
        assert_false(gguf_get_str(f, "v.u8", &s, &err));
        assert_non_null(strstr(err.msg, "expected a string, found uint8"));
        assert_false(gguf_get_bool(f, "v.u8", &bl, &err));
        const gguf_kv *arr;
        assert_false(gguf_get_arr(f, "v.u8", &arr, &err));
        assert_non_null(strstr(err.msg, "expected an array"));
        /* Absent: false, message cleared. */
        strcpy(err.msg, "stale");
        assert_false(gguf_get_u32(f, "no.such.key", &u32, &err));
        assert_string_equal(err.msg, "");
        assert_null(gguf_find(f, "v.u"));
        assert_null(gguf_find(f, "v.u8x"));
        assert_null(gguf_find(f, ""));

        /* Arrays. */
        assert_true(gguf_get_arr(f, "a.i32", &arr, &err));
        assert_int_equal(arr->arr_type, GGUF_T_INT32);
        assert_int_equal(arr->arr_n, 3);
        const int64_t want_i32[3] = {1, -2, 3};
        for (uint64_t i = 0; i < 3; i++) assert_true(gguf_arr_i64(arr, i, &i64)), assert_int_equal(i64, want_i32[i]);
        assert_false(gguf_arr_i64(arr, 3, &i64));
        assert_false(gguf_arr_f32(arr, 0, &f32));
        assert_true(gguf_get_arr(f, "a.f32", &arr, &err));
        assert_true(gguf_arr_f32(arr, 0, &f32)), assert_true(f32 == 0.5f);
        assert_true(gguf_arr_f32(arr, 1, &f32)), assert_true(f32 == -1.25f);
        assert_false(gguf_arr_i64(arr, 0, &i64));
        assert_true(gguf_get_arr(f, "a.u8", &arr, &err));
        assert_int_equal(arr->arr_data[2], 255);
        assert_true(gguf_arr_i64(arr, 2, &i64)), assert_int_equal(i64, 255);
        assert_true(gguf_get_arr(f, "a.bool", &arr, &err));
        assert_true(gguf_arr_i64(arr, 0, &i64)), assert_int_equal(i64, 1);
        assert_true(gguf_arr_i64(arr, 1, &i64)), assert_int_equal(i64, 0);
        assert_true(gguf_get_arr(f, "a.u64", &arr, &err));
        assert_true(gguf_arr_i64(arr, 0, &i64)), assert_int_equal(i64, 5);
        assert_false(gguf_arr_i64(arr, 1, &i64)); /* UINT64_MAX does not fit int64 */

        assert_true(gguf_get_arr(f, "a.str", &arr, &err));
        assert_int_equal(arr->arr_type, GGUF_T_STRING);
        assert_int_equal(arr->arr_n, 4);
        for (uint64_t i = 0; i < 4; i++) {
            const gguf_str e = gguf_arr_str(arr, i);
            const size_t n = i == 3 ? 8 : strlen(k_strs[i]);
            assert_int_equal(e.len, n);
            if (n) assert_memory_equal(e.ptr, k_strs[i], n);
        }
        assert_null(gguf_arr_str(arr, 4).ptr);
        assert_true(gguf_get_arr(f, "a.empty_str", &arr, &err));
        assert_int_equal(arr->arr_n, 0);
        assert_null(gguf_arr_str(arr, 0).ptr);
        assert_true(gguf_get_arr(f, "a.empty_u32", &arr, &err));
        assert_int_equal(arr->arr_n, 0);
        assert_null(gguf_arr_str(gguf_find(f, "v.u8"), 0).ptr);

        check_tensors(f, b.buf, offs, 32);
        gguf_close(f);
        gb_free(&b);
    }
}

static void test_alignment_variants(void **st)
{
    (void)st;
    const uint32_t aligns[] = {1, 2, 8, 32, 64, 4096, 1u << 20};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        gguf_builder b;
        uint64_t offs[N_TENSORS];
        build_valid(&b, 3, aligns[i], offs);
        gguf_file *f = open_ok(&b);
        assert_int_equal(gguf_alignment(f), aligns[i]);
        assert_int_equal(gguf_n_kv(f), N_KV_BASE + 1);
        check_tensors(f, b.buf, offs, aligns[i]);
        gguf_close(f);
        gb_free(&b);
    }
}

static void test_no_tensors_no_padding(void **st)
{
    (void)st;
    /* Vocab-only files end right after their kvs: no padding, no data section. */
    gguf_builder b;
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_str(&b, "k", "abc"); /* 24 + 8 + 1 + 4 + 8 + 3 = 48 bytes, not a multiple of 32 */
    gguf_file *f = open_ok(&b);
    assert_int_equal(gguf_n_tensors(f), 0);
    assert_null(gguf_find_tensor(f, "x"));
    gguf_close(f);
    gb_free(&b);

    gb_init(&b);
    gb_header(&b, 2, 0, 0);
    f = open_ok(&b);
    assert_int_equal(gguf_n_kv(f), 0);
    assert_null(gguf_find(f, "k"));
    gguf_close(f);
    gb_free(&b);
}

/* The same valid image through the file path: mmap, read into a buffer, mlock. */
static void test_open_file(void **st)
{
    (void)st;
    gguf_builder b;
    uint64_t offs[N_TENSORS];
    build_valid(&b, 3, 64, offs);
    char path[] = "/tmp/zili_test_gguf_XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.buf, b.len), (ssize_t)b.len);
    close(fd);

    const gguf_open_opts variants[] = {{true, false}, {false, false}, {true, true}, {false, true}};
    for (size_t v = 0; v < 4; v++) {
        gguf_file *f = NULL;
        zl_err err;
        assert_int_equal(gguf_open(path, &variants[v], &f, &err), 0);
        assert_string_equal(gguf_path(f), path);
        assert_int_equal(gguf_file_size(f), b.len);
        const gguf_tensor *t = gguf_find_tensor(f, "w.q8_0");
        assert_non_null(t);
        assert_int_equal(((const uint8_t *)t->data)[0], 2);
        assert_int_equal(((const uint8_t *)t->data)[t->size - 1], 2);
        if (!variants[v].use_mlock) assert_null(gguf_warning(f));
        if (gguf_warning(f)) assert_non_null(strstr(gguf_warning(f), "mlock"));
        gguf_close(f);
    }
    gguf_file *f = NULL;
    zl_err err;
    assert_int_equal(gguf_open(path, NULL, &f, &err), 0);
    gguf_close(f);

    /* A file one byte short through the file path. */
    assert_int_equal(truncate(path, (off_t)b.len - 1), 0);
    assert_int_equal(gguf_open(path, NULL, &f, &err), ZL_EFORMAT);
    assert_null(f);
    assert_non_null(strstr(err.msg, "data ends past end of file"));
    assert_int_equal(truncate(path, 10), 0);
    assert_int_equal(gguf_open(path, NULL, &f, &err), ZL_EFORMAT);
    assert_non_null(strstr(err.msg, "too small"));
    unlink(path);

    assert_int_equal(gguf_open(path, NULL, &f, &err), ZL_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "cannot open"));
    assert_int_equal(gguf_open("/tmp", NULL, &f, &err), ZL_EIO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    gb_free(&b);
}

/* ---- malformed headers ---- */

static void test_bad_magic_and_versions(void **st)
{
    (void)st;
    gguf_builder b;
    gb_init(&b);
    gb_bytes(&b, "GGUX", 4), gb_u32(&b, 3), gb_u64(&b, 0), gb_u64(&b, 0);
    expect_fail(&b, ZL_EFORMAT, "bad magic");
    gb_init(&b);
    gb_bytes(&b, "ggml", 4), gb_zeros(&b, 100);
    expect_fail(&b, ZL_EFORMAT, "bad magic");
    expect_fail_img(NULL, 0, ZL_EFORMAT, "bad magic");

    gb_init(&b);
    gb_header(&b, 1, 0, 0);
    expect_fail(&b, ZL_EUNSUPPORTED, "GGUF version 1 is not supported");
    const uint32_t bad[] = {0, 4, 0xFFFFFFFFu};
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "unknown GGUF version %u", bad[i]);
        gb_init(&b);
        gb_header(&b, bad[i], 0, 0);
        expect_fail(&b, ZL_EUNSUPPORTED, want);
    }
    gb_init(&b);
    gb_header(&b, 0x03000000u, 0, 0); /* version 3 written big-endian */
    expect_fail(&b, ZL_EUNSUPPORTED, "big-endian");
}

static void test_every_prefix_fails(void **st)
{
    (void)st;
    gguf_builder b;
    uint64_t offs[N_TENSORS];
    build_valid(&b, 3, 0, offs);
    for (size_t len = 0; len < b.len; len++) {
        gguf_file *f = NULL;
        void *copy;
        zl_err err;
        const int rc = open_exact(b.buf, len, &f, &copy, &err);
        if (rc != ZL_EFORMAT) print_error("prefix %zu of %zu: rc %d\n", len, b.len, rc);
        assert_int_equal(rc, ZL_EFORMAT);
        assert_null(f);
        assert_memory_equal(err.msg, NAME ": ", strlen(NAME) + 2);
        const bool named = len < 4 ? strstr(err.msg, "bad magic") != NULL
                                   : strstr(err.msg, "past end of file") || strstr(err.msg, "cannot fit");
        if (!named) print_error("prefix %zu: \"%s\"\n", len, err.msg);
        assert_true(named);
        free(copy);
    }
    gguf_file *f = open_ok(&b);
    gguf_close(f);
    gb_free(&b);
}

static void test_counts_past_file(void **st)
{
    (void)st;
    gguf_builder b;
    const uint64_t huge[] = {1000, (uint64_t)1 << 63, UINT64_MAX};
    for (int i = 0; i < 3; i++) {
        gb_init(&b);
        gb_header(&b, 3, huge[i], 1);
        gb_kv_u32(&b, "a", 1);
        gb_zeros(&b, 64);
        expect_fail(&b, ZL_EFORMAT, "tensor count");
        gb_init(&b);
        gb_header(&b, 3, 0, huge[i]);
        gb_kv_u32(&b, "a", 1);
        gb_zeros(&b, 64);
        expect_fail(&b, ZL_EFORMAT, "kv count");
    }
    /* Counts that fit the lower bound but not the actual contents. */
    gb_init(&b);
    gb_header(&b, 3, 0, 3);
    gb_kv_u32(&b, "a", 1);
    gb_kv_u32(&b, "b", 1);
    gb_zeros(&b, 14);
    expect_fail(&b, ZL_EFORMAT, "kv 2");
    gb_init(&b);
    gb_header(&b, 3, 2, 0);
    gb_tensor_info(&b, "t", 1, (uint64_t[]){8}, T_F32, 0);
    gb_u64(&b, 1000), gb_zeros(&b, 32);
    expect_fail(&b, ZL_EFORMAT, "tensor 1: name of length 1000 at offset 65 runs past end of file");
}

static void test_string_lengths(void **st)
{
    (void)st;
    gguf_builder b;
    /* Key length past the file, and huge. */
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_strn(&b, 100, "abc", 3), gb_u32(&b, V_U8), gb_u8(&b, 1), gb_zeros(&b, 20);
    expect_fail(&b, ZL_EFORMAT, "kv 0: key of length 100 at offset 32 runs past end of file");
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_strn(&b, (uint64_t)1 << 63, "abc", 3), gb_u32(&b, V_U8), gb_u8(&b, 1);
    expect_fail(&b, ZL_EFORMAT, "key length 9223372036854775808 at offset 24 exceeds the limit");
    /* Key longer than the sanity cap but inside the file. */
    char *big = malloc(65537);
    assert_non_null(big);
    memset(big, 'k', 65536);
    big[65536] = '\0';
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_u8(&b, big, 1);
    gguf_file *f = open_ok(&b); /* 64 KiB exactly is allowed */
    gguf_close(f);
    gb_free(&b);
    big[65536] = 'k';
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_strn(&b, 65537, big, 65537), gb_u32(&b, V_U8), gb_u8(&b, 1);
    expect_fail(&b, ZL_EFORMAT, "key length 65537");
    free(big);
    /* Empty key. */
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_u8(&b, "", 1), gb_zeros(&b, 8);
    expect_fail(&b, ZL_EFORMAT, "empty key");
    /* String value past the file, and UINT64_MAX. */
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_key(&b, "s", V_STR), gb_strn(&b, 50, "xyz", 3);
    expect_fail(&b, ZL_EFORMAT, "kv 0 's': string value of length 50");
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_key(&b, "s", V_STR), gb_strn(&b, UINT64_MAX, "xyz", 3);
    expect_fail(&b, ZL_EFORMAT, "past end of file");
    /* Array counts past the file and huge; string elements past the file. */
    const uint64_t counts[] = {100, (uint64_t)1 << 62, UINT64_MAX};
    for (int i = 0; i < 3; i++) {
        gb_init(&b);
        gb_header(&b, 3, 0, 1);
        gb_kv_arr(&b, "a", V_U32, counts[i]), gb_u32(&b, 1), gb_u32(&b, 2);
        expect_fail(&b, ZL_EFORMAT, "uint32 elements");
        gb_init(&b);
        gb_header(&b, 3, 0, 1);
        gb_kv_arr(&b, "a", V_STR, counts[i]), gb_str(&b, "one"), gb_str(&b, "two");
        expect_fail(&b, ZL_EFORMAT, "strings at offset");
    }
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_arr(&b, "a", V_STR, 3), gb_str(&b, "one"), gb_strn(&b, 1000, "two", 3), gb_zeros(&b, 16);
    expect_fail(&b, ZL_EFORMAT, "kv 0 'a': string element 1 of length 1000");
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_arr(&b, "a", V_STR, 2), gb_str(&b, "one"), gb_strn(&b, UINT64_MAX, "two", 3);
    expect_fail(&b, ZL_EFORMAT, "string element 1 of length 18446744073709551615");
}

static void test_keys_and_types(void **st)
{
    (void)st;
    gguf_builder b;
    gb_init(&b);
    gb_header(&b, 3, 0, 3);
    gb_kv_u32(&b, "a.b", 1), gb_kv_u32(&b, "c", 2), gb_kv_str(&b, "a.b", "x");
    expect_fail(&b, ZL_EFORMAT, "duplicate key 'a.b' (kv 0 and kv 2)");

    const uint32_t bad_types[] = {13, 255, 0xFFFFFFFFu};
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "kv 1 'x': unknown value type %u", bad_types[i]);
        gb_init(&b);
        gb_header(&b, 3, 0, 2);
        gb_kv_u8(&b, "ok", 1);
        gb_kv_key(&b, "x", bad_types[i]), gb_u64(&b, 0);
        expect_fail(&b, ZL_EFORMAT, want);
    }
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_arr(&b, "x", 13, 1), gb_u64(&b, 0);
    expect_fail(&b, ZL_EFORMAT, "unknown array element type 13");
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_arr(&b, "nest", V_ARR, 1), gb_u32(&b, V_U8), gb_u64(&b, 1), gb_u8(&b, 1);
    expect_fail(&b, ZL_EFORMAT, "nested arrays");
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_key(&b, "flag", V_BOOL), gb_u8(&b, 2);
    expect_fail(&b, ZL_EFORMAT, "bool value at offset 40 is 2, not 0 or 1");
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_arr(&b, "flags", V_BOOL, 2), gb_u8(&b, 0), gb_u8(&b, 7);
    expect_fail(&b, ZL_EFORMAT, "bool element 1 is 7");
    /* A scalar value cut short. */
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_key(&b, "v", V_U64), gb_u32(&b, 0);
    expect_fail(&b, ZL_EFORMAT, "kv 0 'v': value at offset 37 runs past end of file (needs 8 bytes, 4 left)");
}

static void test_bad_alignment(void **st)
{
    (void)st;
    const uint32_t bad[] = {0, 3, 48, 1u << 21, 1u << 31};
    for (int i = 0; i < 5; i++) {
        char want[96];
        snprintf(want, sizeof want, "key 'general.alignment': %u is not a power of two", bad[i]);
        gguf_builder b;
        gb_init(&b);
        gb_header(&b, 3, 0, 1);
        gb_kv_u32(&b, "general.alignment", bad[i]);
        expect_fail(&b, ZL_EFORMAT, want);
    }
    gguf_builder b;
    gb_init(&b);
    gb_header(&b, 3, 0, 1);
    gb_kv_u64(&b, "general.alignment", 32);
    expect_fail(&b, ZL_EFORMAT, "'general.alignment': type is uint64, must be uint32");
}

/* ---- malformed tensor infos ---- */

/* One tensor file: header with 0 kvs, one tensor info, padding to 32, then data_bytes of data. */
static void one_tensor(gguf_builder *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                       size_t data_bytes)
{
    gb_init(b);
    gb_header(b, 3, 1, 0);
    gb_tensor_info(b, "blk.0.w", n_dims, ne, type, offset);
    gb_align(b, 32);
    gb_zeros(b, data_bytes);
}

static void test_tensor_shapes(void **st)
{
    (void)st;
    gguf_builder b;
    const uint64_t ne5[5] = {2, 2, 2, 2, 2};
    one_tensor(&b, 0, ne5, T_F32, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "tensor 'blk.0.w': n_dims 0 is out of range (1..4)");
    one_tensor(&b, 5, ne5, T_F32, 0, 128);
    expect_fail(&b, ZL_EFORMAT, "tensor 'blk.0.w': n_dims 5 is out of range (1..4)");
    one_tensor(&b, 2, (uint64_t[]){4, 0}, T_F32, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "dimension 1 is 0");
    one_tensor(&b, 1, (uint64_t[]){(uint64_t)1 << 63}, T_F32, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "dimension 0 is 9223372036854775808");
    one_tensor(&b, 2, (uint64_t[]){(uint64_t)1 << 32, (uint64_t)1 << 32}, T_F32, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "element count overflows 64 bits");
    one_tensor(&b, 4, (uint64_t[]){1u << 16, 1u << 16, 1u << 16, 1u << 16}, T_F32, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "element count overflows 64 bits at dimension 3");
    one_tensor(&b, 1, (uint64_t[]){(uint64_t)1 << 62}, T_F32, 0, 64); /* 2^62 elements x 4 bytes = 2^64 bytes */
    expect_fail(&b, ZL_EFORMAT, "byte size overflows 64 bits");
    one_tensor(&b, 2, (uint64_t[]){33, 1}, T_Q8_0, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "row length 33 is not a multiple of the q8_0 block size 32");
    one_tensor(&b, 2, (uint64_t[]){16, 2}, T_Q4_1, 0, 64);
    expect_fail(&b, ZL_EFORMAT, "row length 16 is not a multiple");
    const uint32_t bad_types[] = {4, 5, 99, 0xFFFFFFFFu};
    for (int i = 0; i < 4; i++) {
        char want[64];
        snprintf(want, sizeof want, "tensor 'blk.0.w': unknown tensor type %u", bad_types[i]);
        one_tensor(&b, 1, (uint64_t[]){32}, bad_types[i], 0, 64);
        expect_fail(&b, ZL_EUNSUPPORTED, want);
    }
    gb_init(&b);
    gb_header(&b, 3, 1, 0);
    gb_tensor_info(&b, "", 1, (uint64_t[]){8}, T_F32, 0);
    gb_align(&b, 32), gb_zeros(&b, 32);
    expect_fail(&b, ZL_EFORMAT, "tensor 0: empty name");
    /* Sanity: the same builder with good values opens. */
    one_tensor(&b, 2, (uint64_t[]){32, 2}, T_Q8_0, 0, 68);
    gguf_file *f = open_ok(&b);
    assert_int_equal(gguf_tensor_at(f, 0)->size, 68);
    gguf_close(f);
    gb_free(&b);
}

static void test_tensor_placement(void **st)
{
    (void)st;
    gguf_builder b;
    one_tensor(&b, 1, (uint64_t[]){8}, T_F32, 4, 64);
    expect_fail(&b, ZL_EFORMAT, "tensor 'blk.0.w': offset 4 is not a multiple of the alignment 32");
    one_tensor(&b, 1, (uint64_t[]){8}, T_F32, 32, 63);
    expect_fail(&b, ZL_EFORMAT, "tensor 'blk.0.w': data ends past end of file (offset 32, size 32, data section 63)");
    one_tensor(&b, 1, (uint64_t[]){8}, T_F32, 0, 31); /* data one byte short */
    expect_fail(&b, ZL_EFORMAT, "data ends past end of file (offset 0, size 32, data section 31)");
    one_tensor(&b, 1, (uint64_t[]){8}, T_F32, (uint64_t)1 << 63, 64);
    expect_fail(&b, ZL_EFORMAT, "data ends past end of file (offset 9223372036854775808");
    one_tensor(&b, 1, (uint64_t[]){8}, T_F32, UINT64_MAX - 31, 64);
    expect_fail(&b, ZL_EFORMAT, "data ends past end of file");
    /* Tensor infos end exactly at the end of the file, so the data section would start after padding past it. */
    gb_init(&b);
    gb_header(&b, 3, 1, 0);
    gb_tensor_info(&b, "blk.0.w", 1, (uint64_t[]){8}, T_F32, 0);
    expect_fail(&b, ZL_EFORMAT, "data section would start at offset 64, past end of file (size 63)");

    /* Two tensors: overlap, adjacency, duplicates. */
    const struct {
        uint64_t off_a, off_b;
        const char *name_b;
        const char *want; /* NULL: must open */
    } cases[] = {
        {0, 64, "b", "tensors 'a' (offset 0, size 96) and 'b' (offset 64, size 96) overlap"},
        {64, 0, "b", "tensors 'b' (offset 0, size 96) and 'a' (offset 64, size 96) overlap"},
        {0, 0, "b", "overlap"},
        {0, 96, "b", NULL},
        {0, 96, "a", "duplicate tensor name 'a' (tensor 0 and tensor 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb_init(&b);
        gb_header(&b, 3, 2, 0);
        gb_tensor_info(&b, "a", 2, (uint64_t[]){8, 3}, T_F32, cases[i].off_a);
        gb_tensor_info(&b, cases[i].name_b, 2, (uint64_t[]){8, 3}, T_F32, cases[i].off_b);
        gb_align(&b, 32);
        gb_zeros(&b, 192);
        if (cases[i].want) {
            expect_fail(&b, ZL_EFORMAT, cases[i].want);
        } else {
            gguf_file *f = open_ok(&b);
            assert_int_equal(gguf_find_tensor(f, "b")->offset, 96);
            gguf_close(f);
            gb_free(&b);
        }
    }
}

/* ---- real files ---- */

static void test_real_model(void **st)
{
    (void)st;
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (access(path, R_OK) != 0) {
        skip();
        return;
    }
    gguf_file *f = NULL;
    zl_err err;
    const int rc = gguf_open(path, NULL, &f, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    /* Expected values as gguf-py's GGUFReader reports them for this file. */
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_n_tensors(f), 272);
    assert_int_equal(gguf_n_kv(f), 33);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_data_offset(f), 1785664);
    assert_int_equal(gguf_file_size(f), 98362432);
    uint32_t u32;
    assert_true(gguf_get_u32(f, "llama.block_count", &u32, &err)), assert_int_equal(u32, 30);
    assert_true(gguf_get_u32(f, "llama.embedding_length", &u32, &err)), assert_int_equal(u32, 576);
    assert_true(gguf_get_u32(f, "llama.attention.head_count_kv", &u32, &err)), assert_int_equal(u32, 3);
    float f32;
    assert_true(gguf_get_f32(f, "llama.rope.freq_base", &f32, &err)), assert_true(f32 == 100000.0f);
    bool bl = true;
    assert_true(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &bl, &err)), assert_false(bl);
    gguf_str s;
    assert_true(gguf_get_str(f, "general.architecture", &s, &err)), assert_true(gguf_str_eq(s, "llama"));
    assert_true(gguf_get_str(f, "tokenizer.ggml.pre", &s, &err)), assert_true(gguf_str_eq(s, "smollm"));
    const gguf_kv *tok;
    assert_true(gguf_get_arr(f, "tokenizer.ggml.tokens", &tok, &err));
    assert_int_equal(tok->arr_type, GGUF_T_STRING);
    assert_int_equal(tok->arr_n, 49152);
    assert_true(gguf_get_arr(f, "tokenizer.ggml.merges", &tok, &err));
    assert_int_equal(tok->arr_n, 48900);
    assert_true(gguf_get_arr(f, "tokenizer.ggml.token_type", &tok, &err));
    assert_int_equal(tok->arr_type, GGUF_T_INT32);

    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, T_Q8_0);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    assert_int_equal(t->offset, 0);
    assert_int_equal(t->size, 30081024);
    t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    assert_non_null(t);
    assert_int_equal(t->type, T_Q4_1);
    assert_int_equal(t->ne[0], 1536);
    assert_int_equal(t->ne[1], 576);
    assert_int_equal(t->offset, 31868992 - 1785664);
    assert_int_equal(t->size, 552960);
    t = gguf_find_tensor(f, "output_norm.weight");
    assert_non_null(t);
    assert_int_equal(t->type, T_F32);
    assert_int_equal(t->offset + t->size + gguf_data_offset(f), gguf_file_size(f));
    gguf_close(f);
}

static void test_shared_vocab_files(void **st)
{
    (void)st;
    const char *shared = getenv("ZILI_SHARED_DIR");
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof pattern, "%s/data/vocab/*.gguf", shared && *shared ? shared : "../shared");
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        globfree(&g);
        skip();
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        gguf_file *f = NULL;
        zl_err err;
        const int rc = gguf_open(g.gl_pathv[i], NULL, &f, &err);
        if (rc) print_error("%s\n", err.msg);
        assert_int_equal(rc, 0);
        const gguf_kv *tok;
        assert_true(gguf_get_arr(f, "tokenizer.ggml.tokens", &tok, &err));
        assert_int_equal(tok->arr_type, GGUF_T_STRING);
        assert_true(tok->arr_n > 1000);
        for (uint64_t k = 0; k < tok->arr_n; k++) assert_non_null(gguf_arr_str(tok, k).ptr);
        /* Values from gguf-py for two of them. */
        if (strstr(g.gl_pathv[i], "ggml-vocab-llama-spm.gguf")) {
            assert_int_equal(gguf_n_kv(f), 22);
            assert_int_equal(tok->arr_n, 32000);
            assert_true(gguf_str_eq(gguf_arr_str(tok, 5), "<0x02>"));
        }
        if (strstr(g.gl_pathv[i], "ggml-vocab-bert-bge.gguf")) {
            assert_int_equal(gguf_n_kv(f), 20);
            assert_int_equal(tok->arr_n, 30522);
            assert_true(gguf_str_eq(gguf_arr_str(tok, 5), "[unused4]"));
        }
        gguf_close(f);
    }
    globfree(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_roundtrip),
        cmocka_unit_test(test_alignment_variants),
        cmocka_unit_test(test_no_tensors_no_padding),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_bad_magic_and_versions),
        cmocka_unit_test(test_every_prefix_fails),
        cmocka_unit_test(test_counts_past_file),
        cmocka_unit_test(test_string_lengths),
        cmocka_unit_test(test_keys_and_types),
        cmocka_unit_test(test_bad_alignment),
        cmocka_unit_test(test_tensor_shapes),
        cmocka_unit_test(test_tensor_placement),
        cmocka_unit_test(test_real_model),
        cmocka_unit_test(test_shared_vocab_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
