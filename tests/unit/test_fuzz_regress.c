/*
 * test_fuzz_regress.c - replays every saved fuzzer input in tests/fuzz/regress/<harness>/ through the same entry
 * points the libFuzzer harnesses of tests/fuzz/ use (the harness files are included here with ZL_FUZZ_REPLAY,
 * which leaves out their libFuzzer hooks). An input that once crashed a parser, or broke a property a harness
 * checks, aborts this test (and under `make asan` a memory error is a sanitizer report).
 *
 * The byte-level BPE and request-body harnesses need SmolLM2 (models/, or ZILI_TEST_MODEL) and are skipped without
 * it; the SentencePiece one uses tests/data/vocab/ggml-vocab-llama-spm.gguf, which is in the repository.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ZL_FUZZ_REPLAY
#include "../fuzz/fuzz_chat.c"
#include "../fuzz/fuzz_gguf.c"
#include "../fuzz/fuzz_grammar.c"
#include "../fuzz/fuzz_oai.c"
#include "../fuzz/fuzz_tokenizer.c"
#include "../fuzz/fuzz_tools.c"

#define REGRESS_DIR "tests/fuzz/regress/"

static const char *model_path(void)
{
    const char *p = getenv("ZILI_TEST_MODEL");
    return p && *p ? p : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Calls fn(ctx, bytes, size) on every file of REGRESS_DIR/harness, in name order, each in an exactly sized
 * buffer; returns how many. */
static size_t replay(const char *harness, void (*fn)(void *ctx, const uint8_t *data, size_t size), void *ctx)
{
    char dir[256];
    snprintf(dir, sizeof dir, REGRESS_DIR "%s", harness);
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[4096];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < sizeof names / sizeof names[0])
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        const long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        assert_true(size >= 0);
        uint8_t *buf = malloc(size ? (size_t)size : 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
        fclose(f);
        print_message("  %s/%s (%ld bytes)\n", harness, names[i], size);
        fn(ctx, buf, (size_t)size);
        free(buf);
        free(names[i]);
    }
    return n;
}

static void run_gguf(void *ctx, const uint8_t *data, size_t size)
{
    (void)ctx;
    fuzz_gguf_input(data, size);
}

static void run_chat(void *ctx, const uint8_t *data, size_t size)
{
    (void)ctx;
    fuzz_chat_input(data, size);
}

typedef struct tok_ctx {
    const zl_vocab *v;
    size_t cap;
} tok_ctx;

static void run_tok(void *ctx, const uint8_t *data, size_t size)
{
    const tok_ctx *t = ctx;
    fuzz_tokenizer_input(t->v, t->cap, data, size);
}

static void run_oai(void *ctx, const uint8_t *data, size_t size) { fuzz_oai_input(ctx, data, size); }

static void run_grammar(void *ctx, const uint8_t *data, size_t size)
{
    (void)ctx;
    fuzz_grammar_input(data, size);
}

static void run_tools(void *ctx, const uint8_t *data, size_t size)
{
    (void)ctx;
    fuzz_tools_input(data, size);
}

static void test_tools(void **state)
{
    (void)state;
    print_message("%zu inputs\n", replay("tools", run_tools, NULL));
}

static void test_grammar(void **state)
{
    (void)state;
    print_message("%zu inputs\n", replay("grammar", run_grammar, NULL));
}

static void test_gguf(void **state)
{
    (void)state;
    print_message("%zu inputs\n", replay("gguf", run_gguf, NULL));
}

static void test_chat(void **state)
{
    (void)state;
    print_message("%zu inputs\n", replay("chat", run_chat, NULL));
}

static void tok_test(const char *harness, const char *vocab_path)
{
    gguf_file *f;
    zl_vocab *v;
    assert_int_equal(fuzz_load_vocab(vocab_path, &f, &v), 0);
    tok_ctx t = {v, 3 * (zl_vocab_max_token_len(v) + 8)};
    print_message("%zu inputs\n", replay(harness, run_tok, &t));
    zl_vocab_free(v);
    gguf_close(f);
}

static void test_tok_spm(void **state)
{
    (void)state;
    tok_test("tok_spm", "tests/data/vocab/ggml-vocab-llama-spm.gguf");
}

static void test_tok_bpe(void **state)
{
    (void)state;
    if (access(model_path(), R_OK) != 0) {
        print_message("%s not found: skipped\n", model_path());
        skip();
    }
    tok_test("tok_bpe", model_path());
}

static void test_oai(void **state)
{
    (void)state;
    if (access(model_path(), R_OK) != 0) {
        print_message("%s not found: skipped\n", model_path());
        skip();
    }
    fuzz_oai_env env = {0};
    assert_int_equal(fuzz_oai_setup(model_path(), &env), 0);
    print_message("%zu inputs\n", replay("oai", run_oai, &env));
    zl_model_free(env.model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf),    cmocka_unit_test(test_chat), cmocka_unit_test(test_tok_spm),
        cmocka_unit_test(test_tok_bpe), cmocka_unit_test(test_oai),  cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
