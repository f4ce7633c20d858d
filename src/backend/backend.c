/*
 * backend.c - the registry of device kinds and "kind[:index]" device specs (backend/backend.h).
 *
 * The registry is fixed per build: the CPU first (always there), then each kind compiled in whose entry point
 * returns a backend. A kind whose driver is missing at run time is still listed; it enumerates no device and its
 * why_none() says why, so `zili devices` and the errors below can tell "not built" from "no driver".
 */
#include "backend/backend.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ZL_HAVE_VULKAN
/* This build has no Vulkan backend (the Makefile leaves src/backend/vulkan/ out and does not define
 * ZL_HAVE_VULKAN); the registry then lists the CPU alone. */
const zl_backend *zl_backend_vulkan(void)
{
    return NULL;
}
#endif

const char *zl_op_name(zl_op op)
{
    static const char *const names[ZL_OP_COUNT] = {
        [ZL_OP_GET_ROWS] = "get_rows", [ZL_OP_MATMUL] = "matmul",   [ZL_OP_RMSNORM] = "rmsnorm",
        [ZL_OP_ROPE] = "rope",         [ZL_OP_GLU] = "glu",         [ZL_OP_ADD] = "add",
        [ZL_OP_ADD_ROWS] = "add_rows", [ZL_OP_SCALE] = "scale",     [ZL_OP_SOFTCAP] = "softcap",
        [ZL_OP_GATHER] = "gather",     [ZL_OP_KV_STORE] = "kv_store", [ZL_OP_ATTENTION] = "attention",
    };
    return (unsigned)op < ZL_OP_COUNT && names[op] ? names[op] : "unknown";
}

enum { MAX_KINDS = 4 };
static const zl_backend *g_kinds[MAX_KINDS];
static int g_n_kinds;
static pthread_once_t g_kinds_once = PTHREAD_ONCE_INIT;

/* Once per process, so two threads asking at once see the same finished list. */
static void kinds_init(void)
{
    g_kinds[g_n_kinds++] = zl_backend_cpu();
    const zl_backend *vk = zl_backend_vulkan();
    if (vk)
        g_kinds[g_n_kinds++] = vk;
}

int zl_attn_args_check(const zl_attn_args *a, const zl_dkv_params *p, int layer, int max_head_dim, int64_t *span)
{
    if (!a || !p || layer < 0 || layer >= p->n_layer || a->n_tok < 0 || a->n_head <= 0 || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv || a->head_dim <= 0 || a->head_dim > max_head_dim ||
        (int64_t)a->n_head_kv * a->head_dim != p->kv_dim || a->n_tables < 0 || a->window < 0 ||
        p->block_size <= 0 || (a->n_tok > 0 && (!a->pos || !a->tbl_off || (a->n_tables > 0 && !a->tables))))
        return ZL_EINVAL;
    int64_t keys = 0;
    for (int32_t i = 0; i < a->n_tok; i++) {
        if (a->pos[i] < 0 || a->tbl_off[i] < 0)
            return ZL_EINVAL;
        const int64_t last = (int64_t)a->tbl_off[i] + a->pos[i] / p->block_size;
        if (last >= a->n_tables)
            return ZL_EINVAL;
        /* the blocks below a window are never read, but a table is checked whole: a bad entry is a bug */
        for (int64_t j = a->tbl_off[i]; j <= last; j++)
            if (a->tables[j] < 0 || a->tables[j] >= p->n_blocks)
                return ZL_EINVAL;
        keys += a->window > 0 && a->pos[i] + 1 > a->window ? a->window : a->pos[i] + 1;
    }
    if (span)
        *span = keys;
    return ZL_OK;
}

const zl_backend *const *zl_backend_list(int *n)
{
    pthread_once(&g_kinds_once, kinds_init);
    if (n)
        *n = g_n_kinds;
    return g_kinds;
}

/* "vulkan:0 (name), vulkan:1 (name)" for the error naming what exists; n devices listed in infos. */
static void list_devices(char *s, size_t cap, const zl_dev_info *infos, int n)
{
    size_t len = 0;
    s[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        const int w = snprintf(s + len, cap - len, "%s%s:%d (%s)", i ? ", " : "", infos[i].kind, infos[i].index,
                               infos[i].name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

/* The names of the kinds this build has, "cpu, vulkan". */
static void list_kinds(char *s, size_t cap)
{
    int n;
    const zl_backend *const *k = zl_backend_list(&n);
    size_t len = 0;
    s[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        const int w = snprintf(s + len, cap - len, "%s%s", i ? ", " : "", k[i]->name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

int zl_dev_open(const char *spec, zl_dev **out, zl_err *err)
{
    if (!out)
        return zl_err_set(err, ZL_EINVAL, "zl_dev_open: no output pointer");
    *out = NULL;
    if (!spec || !*spec)
        spec = "cpu"; /* no device named: the host, as the CLI's default */

    /* kind[:index]; a kind alone means its first device */
    const char *colon = strchr(spec, ':');
    const size_t kind_len = colon ? (size_t)(colon - spec) : strlen(spec);
    int index = 0;
    if (colon) {
        const char *p = colon + 1;
        char *end;
        if (*p < '0' || *p > '9')
            return zl_err_set(err, ZL_EINVAL, "device '%s': the index after ':' must be a number (like vulkan:0)",
                              spec);
        const long v = strtol(p, &end, 10);
        if (*end || v > 1 << 20)
            return zl_err_set(err, ZL_EINVAL, "device '%s': the index after ':' must be a number (like vulkan:0)",
                              spec);
        index = (int)v;
    }

    int n_kinds;
    const zl_backend *const *kinds = zl_backend_list(&n_kinds);
    const zl_backend *b = NULL;
    for (int i = 0; i < n_kinds && !b; i++)
        if (strlen(kinds[i]->name) == kind_len && !strncmp(kinds[i]->name, spec, kind_len))
            b = kinds[i];
    if (!b) {
        char names[128];
        list_kinds(names, sizeof names);
        return zl_err_set(err, ZL_EUNSUPPORTED, "device '%s': unknown device kind (this build has: %s)", spec,
                          names);
    }

    enum { MAX_LISTED = 16 };
    zl_dev_info infos[MAX_LISTED];
    const int n = b->enumerate(infos, MAX_LISTED);
    if (n <= 0) {
        const char *why = b->why_none ? b->why_none() : "";
        return zl_err_set(err, ZL_EUNSUPPORTED, "device '%s': %s has no device (%s)", spec, b->name,
                          why && *why ? why : "none found");
    }
    if (index >= n) {
        char names[400];
        list_devices(names, sizeof names, infos, n < MAX_LISTED ? n : MAX_LISTED);
        return zl_err_set(err, ZL_EUNSUPPORTED, "device '%s': no such device (%s has %d: %s)", spec, b->name, n,
                          names);
    }
    return b->open(index, out, err);
}

void zl_dev_close(zl_dev *d)
{
    if (d && d->ops && d->ops->close)
        d->ops->close(d);
}
