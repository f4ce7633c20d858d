/*
 * store.c - the model store's directory, names, listing, description and removal (store.h). Downloads are in
 * pull.c.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "format/gguf.h"
#include "store/store.h"

bool zl_store_valid_name(const char *name)
{
    size_t n = 0;
    if (!name || !*name || name[0] == '.')
        return false;
    for (; name[n]; n++) {
        const char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return n <= 128;
}

int zl_store_dir(char *out, size_t cap, char *err, size_t err_len)
{
    const char *env = getenv("ZILI_MODELS"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (env && *env)
        n = snprintf(out, cap, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(out, cap, "%s/zili/models", xdg);
    else if (home && *home)
        n = snprintf(out, cap, "%s/.cache/zili/models", home);
    else {
        snprintf(err, err_len, "model store: neither ZILI_MODELS nor HOME is set");
        return -1;
    }
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, err_len, "model store: the directory's path is too long");
        return -1;
    }
    return 0;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int stored_path(const char *dir, const char *name, const char *suffix, char *out, size_t cap, char *err,
                       size_t err_len)
{
    const int n = snprintf(out, cap, "%s/%s.gguf%s", dir, name, suffix);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, err_len, "model store: the path of '%s' is too long", name);
        return -1;
    }
    return 0;
}

/* DIR/NAME.part: a download in progress. */
static int stored_path_part(const char *dir, const char *name, char *out, size_t cap, char *err, size_t err_len)
{
    const int n = snprintf(out, cap, "%s/%s.part", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, err_len, "model store: the path of '%s' is too long", name);
        return -1;
    }
    return 0;
}

int zl_store_resolve(const char *name, char *out, size_t cap, char *err, size_t err_len)
{
    if (!name || !*name) {
        snprintf(err, err_len, "no model given");
        return -1;
    }
    const size_t len = strlen(name);
    const bool gguf_suffix = len > 5 && !strcmp(name + len - 5, ".gguf");
    char dir[4096];
    if (is_file(name) || strchr(name, '/') || !zl_store_valid_name(name) ||
        zl_store_dir(dir, sizeof dir, err, err_len) != 0) {
        if (len >= cap) {
            snprintf(err, err_len, "model path too long");
            return -1;
        }
        memcpy(out, name, len + 1); /* the loader names what is wrong with it */
        return 0;
    }
    char base[160];
    snprintf(base, sizeof base, "%.*s", gguf_suffix ? (int)(len - 5) : (int)len, name);
    if (stored_path(dir, base, "", out, cap, err, err_len) != 0)
        return -1;
    if (is_file(out))
        return 0;
    if (gguf_suffix) {
        memcpy(out, name, len + 1);
        return 0;
    }
    snprintf(err, err_len, "'%s': no such file, and no model named '%s' in %s (zili list shows them; zili pull URL "
             "--name %s adds one)", name, name, dir, name);
    return -1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int zl_store_list(zl_store_entry_fn fn, void *ud, char *err, size_t err_len)
{
    char dir[4096];
    if (zl_store_dir(dir, sizeof dir, err, err_len) != 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* nothing pulled yet */
        snprintf(err, err_len, "model store %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".gguf"))
            continue;
        char *nm = strndup(e->d_name, len - 5);
        if (!nm || !zl_store_valid_name(nm)) {
            free(nm);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                free(nm);
                rc = -1;
                snprintf(err, err_len, "model store: out of memory");
                break;
            }
            names = nn;
        }
        names[n++] = nm;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4300];
        struct stat st;
        if (rc == 0 && stored_path(dir, names[i], "", path, sizeof path, err, err_len) == 0 && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode))
            fn(names[i], path, (uint64_t)st.st_size, ud);
        free(names[i]);
    }
    free(names);
    return rc;
}

int zl_store_rm(const char *name, char *err, size_t err_len)
{
    char dir[4096], path[4300], partial[4300];
    if (!zl_store_valid_name(name)) {
        snprintf(err, err_len, "rm: '%.200s' is not a model name (letters, digits, '.', '_', '-')", name);
        return -1;
    }
    if (zl_store_dir(dir, sizeof dir, err, err_len) != 0 ||
        stored_path(dir, name, "", path, sizeof path, err, err_len) != 0 ||
        stored_path_part(dir, name, partial, sizeof partial, err, err_len) != 0)
        return -1;
    const int had_partial = unlink(partial) == 0;
    if (unlink(path) != 0) {
        if (errno == ENOENT && had_partial)
            return 0;
        if (errno == ENOENT)
            snprintf(err, err_len, "rm: no model named '%s' in %s (zili list shows them)", name, dir);
        else
            snprintf(err, err_len, "rm: %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int zl_store_describe(const char *path, char *arch, size_t arch_cap, char *type, size_t type_cap)
{
    snprintf(arch, arch_cap, "?");
    snprintf(type, type_cap, "?");
    gguf_file *f;
    zl_err e;
    if (gguf_open(path, NULL, &f, &e) != 0)
        return -1;
    gguf_str a;
    if (gguf_get_str(f, "general.architecture", &a, NULL))
        snprintf(arch, arch_cap, "%.*s", (int)(a.len > 64 ? 64 : a.len), a.ptr);
    /* The weights' type: the one holding the most bytes among the matrices (a quantized file's norms are F32). */
    uint64_t bytes[ZL_DTYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->n_dims >= 2 && t->type < ZL_DTYPE_COUNT)
            bytes[t->type] += t->size;
    }
    uint32_t best = ZL_DTYPE_COUNT;
    for (uint32_t t = 0; t < ZL_DTYPE_COUNT; t++)
        if (bytes[t] && (best == ZL_DTYPE_COUNT || bytes[t] > bytes[best]))
            best = t;
    if (best < ZL_DTYPE_COUNT && zl_type_name(best)) {
        size_t i = 0;
        for (const char *n = zl_type_name(best); *n && i + 1 < type_cap; n++)
            type[i++] = (char)(*n >= 'a' && *n <= 'z' ? *n - 32 : *n);
        type[i] = 0;
    }
    gguf_close(f);
    return 0;
}
