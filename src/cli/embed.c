/*
 * embed.c - `zili embed`: the embedding vectors of one text (-p) or of every line of a file (-f), through the
 * public API's embedder (include/zili.h). Each input is tokenized as llama.cpp's embedding tools do (the
 * vocabulary's special tokens added, special text not parsed), all inputs are embedded together, and the vectors
 * are written one per line (floats separated by spaces) or as one JSON object (--json).
 */
#include "cli/embed.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zili.h"

enum { EXIT_USAGE = 2, MAX_INPUTS = 1 << 20 };

static const char EMBED_USAGE[] =
    "usage: zili embed -m MODEL (-p TEXT | -f FILE) [options]\n"
    "\n"
    "The embedding vector of TEXT, or of every non-empty line of FILE, one vector per line (or --json).\n"
    "\n"
    "options:\n"
    "  -m, --model FILE       GGUF model (bert; llama, qwen2, qwen3 decoders pool their final hidden states)\n"
    "  -p, --prompt TEXT      one input\n"
    "  -f, --file FILE        one input per line (empty lines skipped)\n"
    "      --pooling P        mean, cls or last (default: the file's pooling_type)\n"
    "      --normalize        L2-normalise each vector (the default); --no-normalize: raw pooled states\n"
    "      --json             {\"dim\", \"pooling\", \"n_tokens\": [...], \"data\": [[...], ...]}\n"
    "  -c, --ctx N            the longest input in tokens (default: the model's context, at most 8192)\n"
    "  -b, --batch N          tokens per pass over several inputs (default: max(ctx, 1024))\n"
    "  -t, --threads N        threads (default: all CPUs)\n";

typedef struct embed_opts {
    const char *model, *prompt, *file;
    int pooling;
    bool normalize, json;
    int32_t n_ctx, n_batch, n_threads;
} embed_opts;

static int usage_error(const char *fmt, const char *arg)
{
    fputs("zili embed: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (zili embed --help)\n", stderr);
    return EXIT_USAGE;
}

static bool parse_int(const char *s, long lo, long hi, int32_t *out)
{
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = (int32_t)v;
    return true;
}

/* Returns -1 when the options parse, else the exit status (0 after --help). */
static int parse(int argc, char **argv, embed_opts *o)
{
    *o = (embed_opts){.normalize = true, .pooling = ZILI_POOL_FILE};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(EMBED_USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--normalize")) {
            o->normalize = true;
        } else if (!strcmp(a, "--no-normalize")) {
            o->normalize = false;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-p") || !strcmp(a, "--prompt") ||
                   !strcmp(a, "-f") || !strcmp(a, "--file") || !strcmp(a, "--pooling") || !strcmp(a, "-c") ||
                   !strcmp(a, "--ctx") || !strcmp(a, "-b") || !strcmp(a, "--batch") || !strcmp(a, "-t") ||
                   !strcmp(a, "--threads")) {
            if (!has_val)
                return usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (a[1] == 'm' || !strcmp(a, "--model"))
                o->model = v;
            else if (a[1] == 'p' && a[2] == 0)
                o->prompt = v;
            else if (!strcmp(a, "--prompt"))
                o->prompt = v;
            else if (a[1] == 'f' || !strcmp(a, "--file"))
                o->file = v;
            else if (!strcmp(a, "--pooling")) {
                if (!strcmp(v, "mean"))
                    o->pooling = ZILI_POOL_MEAN;
                else if (!strcmp(v, "cls"))
                    o->pooling = ZILI_POOL_CLS;
                else if (!strcmp(v, "last"))
                    o->pooling = ZILI_POOL_LAST;
                else
                    return usage_error("--pooling '%s': expected mean, cls or last", v);
            } else if (a[1] == 'c' || !strcmp(a, "--ctx")) {
                if (!parse_int(v, 1, 1 << 20, &o->n_ctx))
                    return usage_error("context '%s': expected an integer in 1..1048576", v);
            } else if (a[1] == 'b' || !strcmp(a, "--batch")) {
                if (!parse_int(v, 1, 1 << 20, &o->n_batch))
                    return usage_error("batch '%s': expected an integer in 1..1048576", v);
            } else if (!parse_int(v, 0, 1024, &o->n_threads)) {
                return usage_error("threads '%s': expected an integer in 0..1024", v);
            }
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    if (!o->model)
        return usage_error("%s", "-m MODEL is required");
    if (!o->prompt == !o->file)
        return usage_error("%s", "give one of -p TEXT or -f FILE");
    return -1;
}

typedef struct texts {
    char *buf;   /* the file (or a copy of the prompt), lines cut in place */
    char **line; /* (n) NUL-terminated inputs */
    size_t n;
} texts;

static int read_texts(const embed_opts *o, texts *t)
{
    memset(t, 0, sizeof *t);
    size_t len = 0;
    if (o->prompt) {
        len = strlen(o->prompt);
        t->buf = malloc(len + 1);
        if (!t->buf)
            return ZILI_ENOMEM;
        memcpy(t->buf, o->prompt, len + 1);
        t->line = malloc(sizeof *t->line);
        if (!t->line)
            return ZILI_ENOMEM;
        t->line[0] = t->buf;
        t->n = 1;
        return ZILI_OK;
    }
    FILE *fp = fopen(o->file, "rb");
    if (!fp) {
        fprintf(stderr, "zili embed: %s: %s\n", o->file, strerror(errno));
        return ZILI_EIO;
    }
    size_t cap = 0;
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (len + got + 1 > cap) {
            const size_t ncap = (len + got + 1) * 2;
            char *nb = realloc(t->buf, ncap);
            if (!nb) {
                fclose(fp);
                return ZILI_ENOMEM;
            }
            t->buf = nb;
            cap = ncap;
        }
        memcpy(t->buf + len, chunk, got);
        len += got;
    }
    const bool bad = ferror(fp);
    fclose(fp);
    if (bad) {
        fprintf(stderr, "zili embed: %s: read error\n", o->file);
        return ZILI_EIO;
    }
    if (!t->buf && !(t->buf = malloc(1)))
        return ZILI_ENOMEM;
    t->buf[len] = 0;
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++)
        n_lines += t->buf[i] == '\n';
    if (!(t->line = malloc(n_lines * sizeof *t->line)))
        return ZILI_ENOMEM;
    char *p = t->buf, *end = t->buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r')
            stop[-1] = 0;
        *stop = 0;
        if (*p)
            t->line[t->n++] = p;
        p = stop + 1;
    }
    if (t->n == 0) {
        fprintf(stderr, "zili embed: %s: no inputs (every line is empty)\n", o->file);
        return ZILI_EINVAL;
    }
    if (t->n > MAX_INPUTS) {
        fprintf(stderr, "zili embed: %s: %zu inputs, more than %d\n", o->file, t->n, MAX_INPUTS);
        return ZILI_ERANGE;
    }
    return ZILI_OK;
}

static const char *pooling_name(int p)
{
    return p == ZILI_POOL_MEAN ? "mean" : p == ZILI_POOL_CLS ? "cls" : p == ZILI_POOL_LAST ? "last" : "?";
}

static void write_vectors(const embed_opts *o, const float *v, size_t n, int32_t dim, const size_t *lens,
                          int pooling)
{
    if (o->json)
        printf("{\"dim\": %d, \"pooling\": \"%s\", \"normalize\": %s, \"n_tokens\": [", dim, pooling_name(pooling),
               o->normalize ? "true" : "false");
    for (size_t i = 0; o->json && i < n; i++)
        printf("%s%zu", i ? ", " : "", lens[i]);
    if (o->json)
        fputs("], \"data\": [", stdout);
    for (size_t i = 0; i < n; i++) {
        if (o->json)
            fputs(i ? ", [" : "[", stdout);
        for (int32_t j = 0; j < dim; j++)
            printf(o->json ? (j ? ", %.9g" : "%.9g") : (j ? " %.9g" : "%.9g"), (double)v[i * (size_t)dim + j]);
        fputs(o->json ? "]" : "\n", stdout);
    }
    if (o->json)
        fputs("]}\n", stdout);
}

int zili_cli_embed(int argc, char **argv)
{
    embed_opts o;
    int st = parse(argc, argv, &o);
    if (st >= 0)
        return st;
    char err[512] = "";
    texts t;
    zili_model *m = NULL;
    zili_embedder *e = NULL;
    zili_token **ids = NULL;
    size_t *lens = NULL;
    float *vec = NULL;
    st = 1;
    int rc = read_texts(&o, &t);
    if (rc == ZILI_ENOMEM)
        fputs("zili embed: out of memory\n", stderr);
    if (rc != ZILI_OK)
        goto done;
    zili_model_params mp = zili_model_default_params();
    if (zili_model_load(o.model, &mp, &m, err, sizeof err) != ZILI_OK) {
        fprintf(stderr, "zili embed: %s\n", err);
        goto done;
    }
    zili_embedder_params ep = zili_embedder_default_params();
    ep.pooling = o.pooling;
    ep.normalize = o.normalize;
    ep.n_ctx = o.n_ctx;
    ep.n_batch = o.n_batch;
    ep.n_threads = o.n_threads;
    if (zili_embedder_create(m, &ep, &e, err, sizeof err) != ZILI_OK) {
        fprintf(stderr, "zili embed: %s\n", err);
        goto done;
    }
    ids = calloc(t.n, sizeof *ids);
    lens = calloc(t.n, sizeof *lens);
    const int32_t dim = zili_embedder_dim(e);
    vec = malloc(t.n * (size_t)dim * sizeof *vec);
    if (!ids || !lens || !vec) {
        fputs("zili embed: out of memory\n", stderr);
        goto done;
    }
    for (size_t i = 0; i < t.n; i++)
        if (zili_tokenize(m, t.line[i], strlen(t.line[i]), true, false, &ids[i], &lens[i], err, sizeof err) !=
            ZILI_OK) {
            fprintf(stderr, "zili embed: input %zu: %s\n", i + 1, err);
            goto done;
        }
    if (zili_embed(e, (const zili_token *const *)ids, lens, t.n, vec, err, sizeof err) != ZILI_OK) {
        fprintf(stderr, "zili embed: %s\n", err);
        goto done;
    }
    write_vectors(&o, vec, t.n, dim, lens, zili_embedder_pooling(e));
    st = fflush(stdout) == 0 ? 0 : 1;
done:
    for (size_t i = 0; ids && i < t.n; i++)
        free(ids[i]);
    free(ids);
    free(lens);
    free(vec);
    zili_embedder_free(e);
    zili_model_free(m);
    free(t.buf);
    free(t.line);
    return st;
}
