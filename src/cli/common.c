/*
 * common.c - what every `zili` command shares: one-line errors, and model, session and sampler creation with
 * the command's options. See cli.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "store/store.h"

void zl_cli_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("zili: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

double zl_cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

zili_model *zl_cli_load_model(const zl_cli_opts *o)
{
    zili_model_params mp = zili_model_default_params();
    mp.use_mmap = !o->no_mmap;
    mp.use_mlock = o->mlock;
    mp.no_repack = o->no_repack;
    mp.exact = o->exact;
    mp.device = o->device;
    mp.gpu_layers = o->gpu_layers;
    char path[PATH_MAX], err[512];
    if (zl_store_resolve(o->model, path, sizeof path, err, sizeof err) != 0)
        zl_cli_die(1, "%s", err);
    zili_model *m;
    if (zili_model_load(path, &mp, &m, err, sizeof err) != ZILI_OK)
        zl_cli_die(1, "%s", err);
    if (zili_model_warning(m))
        fprintf(stderr, "zili: warning: %s\n", zili_model_warning(m));
    if (zili_model_device(m))
        fprintf(stderr, "zili: %s\n", zili_model_device(m));
    return m;
}

zili_session *zl_cli_make_session(const zili_model *m, const zl_cli_opts *o)
{
    zili_session_params p = zili_session_default_params();
    p.n_ctx = o->n_ctx;
    p.n_batch = o->n_batch;
    p.n_threads = o->n_threads;
    p.kv_f16 = !o->kv_f32;
    zili_session *s;
    char err[512];
    if (zili_session_create(m, &p, &s, err, sizeof err) != ZILI_OK)
        zl_cli_die(1, "%s", err);
    return s;
}

zili_sampler *zl_cli_make_sampler(const zili_model *m, const zl_cli_opts *o)
{
    zili_sampler *smp;
    char err[512];
    if (zili_sampler_create(m, &o->sp, &smp, err, sizeof err) != ZILI_OK)
        zl_cli_die(1, "%s", err);
    return smp;
}

zili_token *zl_cli_tokenize(const zili_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                            size_t *n)
{
    zili_token *ids;
    char err[512];
    if (zili_tokenize(m, text, len, add_special, parse_special, &ids, n, err, sizeof err) != ZILI_OK)
        zl_cli_die(1, "%s", err);
    return ids;
}

void zl_cli_eval(zili_session *s, const zili_token *t, size_t n, bool all)
{
    char err[512];
    if (zili_session_eval(s, t, n, all, err, sizeof err) != ZILI_OK)
        zl_cli_die(1, "%s", err);
}
