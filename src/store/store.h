/*
 * store.h - the model store: GGUF files downloaded by `zili pull`, kept under one directory and found by name.
 *
 * The directory is $ZILI_MODELS, else $XDG_CACHE_HOME/zili/models, else $HOME/.cache/zili/models. A stored model
 * NAME is the file DIR/NAME.gguf; a download in progress is DIR/NAME.part until it is complete, its size
 * and hash checked and its GGUF structure validated, then it is renamed to NAME.gguf (pull.c says how). A NAME
 * is 1-128 characters of [A-Za-z0-9._-], not starting with '.'. The name is the pull's --name (an alias), else the URL's file name
 * without .gguf.
 *
 * Every function returns 0 on success, -1 with a one-line message in err.
 */
#ifndef ZL_STORE_H
#define ZL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool zl_store_valid_name(const char *name);

/* The store's directory (not created). */
int zl_store_dir(char *out, size_t cap, char *err, size_t err_len);

/* What `-m NAME` opens: NAME itself when it is an existing file, or contains '/', or ends in .gguf and is not in
 * the store; else the stored model NAME. Unknown names are an error that says where it looked. */
int zl_store_resolve(const char *name, char *out, size_t cap, char *err, size_t err_len);

/* Calls fn for each stored model, in name order (the partial downloads are not listed). */
typedef void (*zl_store_entry_fn)(const char *name, const char *path, uint64_t size, void *ud);
int zl_store_list(zl_store_entry_fn fn, void *ud, char *err, size_t err_len);

/* The architecture (general.architecture) and the weights' type (the type of most of the matrices' bytes, as
 * "Q4_K") of a GGUF file, from its header only; "?" for what cannot be read (then -1). */
int zl_store_describe(const char *path, char *arch, size_t arch_cap, char *type, size_t type_cap);

/* Removes the stored model NAME and any partial download of it. */
int zl_store_rm(const char *name, char *err, size_t err_len);

typedef struct zl_pull_params {
    const char *url;    /* http:// or https://, optionally ending in #sha256=HEX */
    const char *name;   /* NULL: from the URL */
    const char *sha256; /* NULL: the URL's #sha256=, else the URL.sha256 sidecar if the server has one */
    bool progress;      /* a progress bar on stderr */
    long low_speed_s;   /* give up after this many seconds below 1 byte/s (0: 60) */
} zl_pull_params;

/* Downloads p->url into the store (resuming a partial download of the same name), checks it and writes the
 * stored path to out. *checked (if non-NULL) says whether a SHA-256 was checked. A model of that name already
 * stored is kept and not downloaded again. */
int zl_store_pull(const zl_pull_params *p, char *out, size_t cap, bool *checked, char *err, size_t err_len);

#endif
