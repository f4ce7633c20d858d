/*
 * test_vocab_vectors.c - the tokenizer against the reference tokenizer test vectors (llama.cpp's models/
 * ggml-vocab-*.gguf with .inp/.out files, ids produced by the Hugging Face tokenizers; see
 * $ZILI_SHARED_DIR/data/vocab/SOURCE.md for the format), and SmolLM2's tokenizer against ids produced by
 * llama.cpp (tests/data/tokenizer/smollm2.txt, made by tests/data/tokenizer/make_smollm2_fixture.py), and every
 * vocabulary on random strings against ids from llama.cpp (tests/data/tokenizer/random/, made by
 * make_random_fixture.py there).
 *
 * Every case is encoded with add_special = false, parse_special = false and must give exactly the expected ids.
 * One line per vocabulary: "vocab <name>: PASS n/n", "FAIL k/n" with the first mismatch, or "SKIP (reason)" for
 * a tokenizer type zili does not support (a skip is never counted as a pass). Byte-level BPE must also decode
 * back to the exact input (it is lossless); SentencePiece must when the input has no characters it normalises.
 * The shared directory is $ZILI_SHARED_DIR, else ../shared relative to the repository root (the cwd).
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

#include "format/gguf.h"
#include "tokenizer/vocab.h"

static const char SEP[] = "\n__ggml_vocab_test__\n";

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = 0;
    *n = len;
    return buf;
}

static const char *shared_dir(void)
{
    const char *s = getenv("ZILI_SHARED_DIR");
    return s && *s ? s : "../shared";
}

typedef struct vcase {
    const char *text;
    size_t len;
    int32_t ids[512];
    size_t n_ids;
} vcase;

/* Splits .inp on the separator and parses .out lines; returns the number of cases (0 on a format error). */
static size_t parse_cases(char *inp, size_t inp_len, char *out, vcase **cases)
{
    size_t n = 0, cap = 64;
    vcase *c = calloc(cap, sizeof *c);
    size_t pos = 0, sl = strlen(SEP);
    while (pos < inp_len) {
        char *m = memmem(inp + pos, inp_len - pos, SEP, sl);
        size_t end = m ? (size_t)(m - inp) : inp_len;
        if (n == cap) {
            cap *= 2;
            c = realloc(c, cap * sizeof *c);
        }
        c[n].text = inp + pos;
        c[n].len = end - pos;
        c[n].n_ids = 0;
        n++;
        if (!m)
            break;
        pos = end + sl;
    }
    char *line = out;
    for (size_t i = 0; i < n; i++) {
        char *nl = strchr(line, '\n');
        if (!nl) {
            free(c);
            return 0;
        }
        *nl = 0;
        char *p = line;
        while (*p) {
            char *e;
            long id = strtol(p, &e, 10);
            if (e == p)
                break;
            if (c[i].n_ids < 512)
                c[i].ids[c[i].n_ids++] = (int32_t)id;
            p = e;
        }
        line = nl + 1;
    }
    *cases = c;
    return n;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    printf("      %s:", label);
    for (size_t i = 0; i < n && i < 40; i++)
        printf(" %d", ids[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

/* Whether s is plain enough that SentencePiece decoding must give it back (no leading space, which the
 * decoder cannot tell from the added prefix). */
static bool spm_roundtrips(const char *s, size_t n) { return n > 0 && s[0] != ' '; }

/* Runs one vocabulary; returns 1 on failure, 0 on pass or skip. */
static int run_vocab(const char *dir, const char *name)
{
    char gpath[1400], ipath[1500], opath[1500];
    snprintf(gpath, sizeof gpath, "%s/%s", dir, name);
    snprintf(ipath, sizeof ipath, "%s.inp", gpath);
    snprintf(opath, sizeof opath, "%s.out", gpath);
    size_t il, ol;
    char *inp = slurp(ipath, &il), *out = slurp(opath, &ol);
    if (!inp || !out) {
        free(inp);
        free(out);
        return 0; /* no vectors for this file */
    }
    int failed = 0;
    gguf_file *f = NULL;
    zl_vocab *v = NULL;
    zl_err e = {{0}};
    vcase *cases = NULL;
    int rc = gguf_open(gpath, NULL, &f, &e);
    if (rc == ZL_OK)
        rc = zl_vocab_load(f, &v, &e);
    if (rc == ZL_EUNSUPPORTED) {
        printf("vocab %s: SKIP (%s)\n", name, e.msg);
        goto done;
    }
    if (rc != ZL_OK) {
        printf("vocab %s: FAIL (load: %s)\n", name, e.msg);
        failed = 1;
        goto done;
    }
    size_t n = parse_cases(inp, il, out, &cases);
    if (n == 0) {
        printf("vocab %s: FAIL (cannot parse vectors)\n", name);
        failed = 1;
        goto done;
    }
    size_t pass = 0, rt_fail = 0;
    bool shown = false;
    bool bpe = zl_vocab_kind_of(v) == ZL_VOCAB_BPE, spm = zl_vocab_kind_of(v) == ZL_VOCAB_SPM;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids = NULL;
        size_t nid = 0;
        rc = zl_tokenize(v, cases[i].text, cases[i].len, false, false, &ids, &nid, &e);
        bool ok = rc == ZL_OK && nid == cases[i].n_ids && (nid == 0 || memcmp(ids, cases[i].ids, nid * sizeof *ids) == 0);
        if (ok) {
            pass++;
            char *back = NULL;
            if ((bpe || (spm && spm_roundtrips(cases[i].text, cases[i].len))) &&
                zl_detokenize(v, ids, nid, false, &back, &e) == ZL_OK &&
                (strlen(back) != cases[i].len || memcmp(back, cases[i].text, cases[i].len) != 0)) {
                if (!rt_fail)
                    printf("    first round-trip mismatch: case %zu [%.*s] -> [%s]\n", i, (int)cases[i].len,
                           cases[i].text, back);
                rt_fail++;
            }
            free(back);
        } else if (!shown) {
            shown = true;
            printf("    first mismatch: case %zu [%.*s]%s%s\n", i, (int)cases[i].len, cases[i].text,
                   rc ? " error: " : "", rc ? e.msg : "");
            print_ids("expected", cases[i].ids, cases[i].n_ids);
            print_ids("got     ", ids, nid);
        }
        free(ids);
    }
    if (pass == n && rt_fail == 0) {
        printf("vocab %s: PASS %zu/%zu\n", name, pass, n);
    } else {
        printf("vocab %s: FAIL %zu/%zu (round-trip failures: %zu)\n", name, pass, n, rt_fail);
        failed = 1;
    }
done:
    free(cases);
    zl_vocab_free(v);
    if (f)
        gguf_close(f);
    free(inp);
    free(out);
    return failed;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_reference_vectors(void **st)
{
    (void)st;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/data/vocab", shared_dir());
    DIR *d = opendir(dir);
    if (!d) {
        printf("no vocab directory %s (set ZILI_SHARED_DIR)\n", dir);
        skip();
    }
    char *names[256];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) && nn < 256) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "ggml-vocab-", 11) == 0 && l > 5 && strcmp(de->d_name + l - 5, ".gguf") == 0)
            names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_str);
    int failures = 0, tested = 0;
    for (size_t i = 0; i < nn; i++) {
        failures += run_vocab(dir, names[i]);
        tested++;
        free(names[i]);
    }
    fflush(stdout);
    assert_true(tested > 0);
    assert_int_equal(failures, 0);
}

/* tests/data/tokenizer/smollm2.txt: lines "ids<TAB>escaped text"; see its generator for the escaping. */
static size_t unescape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            out[o++] = s[i];
            continue;
        }
        char c = s[++i];
        if (c == 'n')
            out[o++] = '\n';
        else if (c == 't')
            out[o++] = '\t';
        else if (c == 'r')
            out[o++] = '\r';
        else if (c == 'x' && i + 2 < n) {
            char h[3] = {s[i + 1], s[i + 2], 0};
            out[o++] = (char)strtol(h, NULL, 16);
            i += 2;
        } else
            out[o++] = c;
    }
    return o;
}

static void test_smollm2_fixture(void **st)
{
    (void)st;
    const char *model = getenv("ZILI_TEST_MODEL");
    if (!model || !*model)
        model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    size_t fl;
    char *fix = slurp("tests/data/tokenizer/smollm2.txt", &fl);
    assert_non_null(fix);
    gguf_file *f = NULL;
    zl_err e = {{0}};
    if (gguf_open(model, NULL, &f, &e) != ZL_OK) {
        free(fix);
        printf("no model %s: %s\n", model, e.msg);
        skip();
    }
    zl_vocab *v = NULL;
    assert_int_equal(zl_vocab_load(f, &v, &e), ZL_OK);
    size_t n = 0, pass = 0;
    char *save = NULL;
    for (char *line = strtok_r(fix, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = 0;
        const char *flags = line; /* "ps" = parse_special, "-" = not */
        char *ids_s = strchr(tab + 1, '\t');
        assert_non_null(ids_s);
        *ids_s++ = 0;
        const char *esc = tab + 1;
        char text[4096];
        size_t tl = unescape(esc, strlen(esc), text);
        int32_t exp[1024];
        size_t ne = 0;
        for (char *p = ids_s, *q; ne < 1024; p = q) {
            long x = strtol(p, &q, 10);
            if (q == p)
                break;
            exp[ne++] = (int32_t)x;
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        bool ps = strcmp(flags, "ps") == 0;
        assert_int_equal(zl_tokenize(v, text, tl, false, ps, &ids, &nid, &e), ZL_OK);
        n++;
        if (nid == ne && (ne == 0 || memcmp(ids, exp, ne * sizeof *ids) == 0))
            pass++;
        else {
            printf("    smollm2 mismatch [%s] (%s)\n", esc, flags);
            print_ids("expected", exp, ne);
            print_ids("got     ", ids, nid);
        }
        free(ids);
    }
    printf("vocab smollm2 (model file): %s %zu/%zu\n", pass == n ? "PASS" : "FAIL", pass, n);
    zl_vocab_free(v);
    gguf_close(f);
    free(fix);
    assert_true(n > 0);
    assert_int_equal(pass, n);
}

/* tests/data/tokenizer/random/<name>.txt against vocab file path: lines "flags TAB hex TAB ids". Returns 1 on
 * failure, 0 on pass or when the vocabulary file is absent. */
static int run_random(const char *name, const char *path)
{
    char fpath[512];
    snprintf(fpath, sizeof fpath, "tests/data/tokenizer/random/%s.txt", name);
    size_t fl;
    char *fix = slurp(fpath, &fl);
    if (!fix) {
        printf("random %s: FAIL (no fixture %s)\n", name, fpath);
        return 1;
    }
    gguf_file *f = NULL;
    zl_vocab *v = NULL;
    zl_err e = {{0}};
    if (gguf_open(path, NULL, &f, &e) != ZL_OK) {
        printf("random %s: SKIP (%s)\n", name, e.msg);
        free(fix);
        return 0;
    }
    int failed = 0;
    if (zl_vocab_load(f, &v, &e) != ZL_OK) {
        printf("random %s: FAIL (load: %s)\n", name, e.msg);
        failed = 1;
        goto done;
    }
    size_t n = 0, pass = 0;
    char *save = NULL;
    for (char *line = strtok_r(fix, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hex = strchr(line, '\t'), *ids_s = hex ? strchr(hex + 1, '\t') : NULL;
        if (!ids_s) {
            failed = 1;
            break;
        }
        *hex++ = 0;
        *ids_s++ = 0;
        char text[1024];
        size_t tl = 0;
        for (; hex[2 * tl] && hex[2 * tl + 1] && tl < sizeof text; tl++) {
            char h[3] = {hex[2 * tl], hex[2 * tl + 1], 0};
            text[tl] = (char)strtol(h, NULL, 16);
        }
        int32_t exp[512];
        size_t ne = 0;
        for (char *p = ids_s, *q; ne < 512; p = q) {
            long x = strtol(p, &q, 10);
            if (q == p)
                break;
            exp[ne++] = (int32_t)x;
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        int rc = zl_tokenize(v, text, tl, false, strcmp(line, "ps") == 0, &ids, &nid, &e);
        n++;
        if (rc == ZL_OK && nid == ne && (ne == 0 || memcmp(ids, exp, ne * sizeof *ids) == 0)) {
            pass++;
        } else if (n - pass == 1) {
            printf("    first mismatch (%s): [%.*s]\n", line, (int)tl, text);
            print_ids("expected", exp, ne);
            print_ids("got     ", ids, nid);
        }
        free(ids);
    }
    if (n == 0 || pass != n)
        failed = 1;
    printf("random %s (vs llama.cpp): %s %zu/%zu\n", name, failed ? "FAIL" : "PASS", pass, n);
done:
    zl_vocab_free(v);
    gguf_close(f);
    free(fix);
    return failed;
}

static void test_random_vs_llama_cpp(void **st)
{
    (void)st;
    static const char *const names[] = {"baichuan", "deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "gpt-neox",
                                        "llama-spm", "mpt", "phi-3", "refact", "starcoder"};
    int failures = 0;
    char path[1400];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-%s.gguf", shared_dir(), names[i]);
        failures += run_random(names[i], path);
    }
    const char *model = getenv("ZILI_TEST_MODEL");
    failures += run_random("smollm2", model && *model ? model : "models/SmolLM2-135M-Instruct.Q4_1.gguf");
    fflush(stdout);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_smollm2_fixture),
        cmocka_unit_test(test_random_vs_llama_cpp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
