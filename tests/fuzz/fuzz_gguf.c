/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader: arbitrary bytes -> gguf_open_memory(), then every kv
 * value, array element, string and tensor byte is read, so a bounds bug surfaces as a sanitizer report.
 *
 * Not part of `make`. Build and run with clang (from the repository root):
 *
 *     FZ="-std=c11 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc -fsanitize=address,undefined"
 *     clang $FZ -mavx2 -mfma -mf16c -c src/backend/cpu/quant_avx2.c -o build/fuzz_quant_avx2.o
 *     clang $FZ -fsanitize=fuzzer tests/fuzz/fuzz_gguf.c src/format/gguf.c src/core/err.c src/core/dtype.c \
 *         src/backend/cpu/quant_ref.c build/fuzz_quant_avx2.o -lm -o build/fuzz_gguf
 *     build/fuzz_gguf -max_len=4096 corpus/            # seed corpus: any small .gguf files
 *
 * (The reader itself needs only the type traits from dtype.c; the kernel files come along because dtype.c's
 * table points at them. Add any further kernel files dtype.c comes to reference.)
 * The input is copied into an exactly-sized buffer by libFuzzer already, so any over-read is caught.
 */
#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t touch(const void *p, uint64_t n, uint64_t acc)
{
    const volatile uint8_t *b = p;
    for (uint64_t i = 0; i < n; i++) acc = acc * 31 + b[i];
    return acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    zl_err err;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f, &err) != ZL_OK) return 0;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        acc = touch(kv->key.ptr, kv->key.len, acc);
        if (gguf_find(f, "general.alignment")) acc++;
        if (kv->type == GGUF_T_STRING) acc = touch(kv->v.str.ptr, kv->v.str.len, acc);
        if (kv->type != GGUF_T_ARRAY) continue;
        for (uint64_t k = 0; k < kv->arr_n; k++) {
            if (kv->arr_type == GGUF_T_STRING) {
                const gguf_str s = gguf_arr_str(kv, k);
                acc = touch(s.ptr, s.len, acc);
            } else {
                int64_t v;
                float x;
                if (gguf_arr_i64(kv, k, &v)) acc += (uint64_t)v;
                if (gguf_arr_f32(kv, k, &x)) acc += x == x;
            }
        }
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        acc = touch(t->name.ptr, t->name.len, acc);
        acc = touch(t->data, t->size, acc);
        if (gguf_find_tensor(f, "token_embd.weight")) acc++;
    }
    uint32_t u32;
    float f32;
    gguf_str s;
    (void)gguf_get_u32(f, "general.alignment", &u32, &err);
    (void)gguf_get_f32(f, "general.alignment", &f32, &err);
    (void)gguf_get_str(f, "general.architecture", &s, &err);
    gguf_close(f);
    return acc == 42 ? 0 : 0; /* acc keeps the reads alive */
}
