/*
 * store_cmd.c - `zili pull`, `zili list` and `zili rm`: the model store (src/store/store.h) on the command line.
 *
 *   zili pull URL [--name NAME] [--sha256 HEX] [--quiet]   download a GGUF file into the store
 *   zili list                                              the stored models: name, size, architecture, type
 *   zili rm NAME...                                        remove stored models (and their partial downloads)
 *
 * There is no model registry: pull takes the URL of a GGUF file, and --name gives the model the name that -m NAME
 * then finds (an alias for a long file name). A NAME that is not a URL is accepted only when it is already stored.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "store/store.h"

static const char PULL_USAGE[] =
    "usage: zili pull URL [--name NAME] [--sha256 HEX] [--quiet]\n"
    "  URL             http:// or https:// URL of a GGUF file; URL#sha256=HEX checks the file's SHA-256 (without\n"
    "                  one, a sidecar URL.sha256 is checked if the server has it)\n"
    "  --name NAME     store it as NAME (default: the URL's file name without .gguf); -m NAME then opens it\n"
    "  --sha256 HEX    the expected SHA-256 (64 hex digits)\n"
    "  --quiet         no progress bar (it is drawn only when stderr is a terminal anyway)\n"
    "The store is $ZILI_MODELS (default ~/.cache/zili/models). An interrupted download resumes on the next pull.\n";

int zl_cli_pull(int argc, char **argv)
{
    zl_pull_params p = {.progress = isatty(STDERR_FILENO)};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(PULL_USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "--name") || !strcmp(a, "--sha256")) {
            if (i + 1 >= argc)
                zl_cli_die(ZL_CLI_EXIT_USAGE, "pull: %s: missing value", a);
            *(!strcmp(a, "--name") ? &p.name : &p.sha256) = argv[++i];
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            p.progress = false;
        } else if (a[0] == '-' && a[1]) {
            zl_cli_die(ZL_CLI_EXIT_USAGE, "pull: unknown option '%s' (zili pull --help lists them)", a);
        } else if (p.url) {
            zl_cli_die(ZL_CLI_EXIT_USAGE, "pull: one URL at a time ('%s' and '%s')", p.url, a);
        } else {
            p.url = a;
        }
    }
    if (!p.url)
        zl_cli_die(ZL_CLI_EXIT_USAGE, "pull: no URL given (zili pull URL [--name NAME])");
    char path[PATH_MAX], err[1024];
    const bool is_url = !strncmp(p.url, "http://", 7) || !strncmp(p.url, "https://", 8);
    /* resolve gives back the name itself for a file of that name outside the store */
    if (!is_url && !p.name && zl_store_valid_name(p.url) &&
        zl_store_resolve(p.url, path, sizeof path, err, sizeof err) == 0 && strcmp(path, p.url)) {
        printf("%s: already stored (%s)\n", p.url, path);
        return 0;
    }
    bool checked = false;
    if (zl_store_pull(&p, path, sizeof path, &checked, err, sizeof err) != 0)
        zl_cli_die(1, "%s", err);
    char arch[80], type[32];
    zl_store_describe(path, arch, sizeof arch, type, sizeof type);
    printf("%s (%s, %s)%s\n", path, arch, type, checked ? ", SHA-256 checked" : "");
    return 0;
}

static void print_entry(const char *name, const char *path, uint64_t size, void *ud)
{
    int *n = ud;
    char arch[80], type[32];
    zl_store_describe(path, arch, sizeof arch, type, sizeof type);
    if ((*n)++ == 0)
        printf("%-40s %10s  %-12s %s\n", "NAME", "SIZE", "ARCH", "TYPE");
    printf("%-40s %6.1f MiB  %-12s %s\n", name, (double)size / 1048576.0, arch, type);
}

int zl_cli_list(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: zili list    the models in the store ($ZILI_MODELS, default ~/.cache/zili/models)");
            return 0;
        }
        zl_cli_die(ZL_CLI_EXIT_USAGE, "list: unexpected argument '%s' (zili list takes none)", argv[i]);
    }
    char err[1024], dir[4096];
    int n = 0;
    if (zl_store_list(print_entry, &n, err, sizeof err) != 0)
        zl_cli_die(1, "%s", err);
    if (n == 0 && zl_store_dir(dir, sizeof dir, err, sizeof err) == 0)
        fprintf(stderr, "zili: no models in %s (zili pull URL adds one)\n", dir);
    return 0;
}

int zl_cli_rm(int argc, char **argv)
{
    if (argc < 2)
        zl_cli_die(ZL_CLI_EXIT_USAGE, "rm: no model name given (zili rm NAME...; zili list shows them)");
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        char err[1024];
        if (zl_store_rm(argv[i], err, sizeof err) != 0) {
            fprintf(stderr, "zili: %s\n", err);
            rc = 1;
        } else {
            printf("removed %s\n", argv[i]);
        }
    }
    return rc;
}
