/*
 * cli.h - the `zili` command's shared pieces: its options, the helpers every command uses (one-line errors,
 * model / session / sampler creation), and the commands that live outside tools/zili.c (chat, pull, list, rm).
 *
 * This is the top layer: it uses the public API (include/zili.h) and the model store (src/store/), and nothing
 * below them. Unlike the library, these functions end the program on error: zl_cli_die prints one line
 * ("zili: ...") on stderr and exits with the given code (2 for a usage error, 1 for anything else).
 */
#ifndef ZL_CLI_H
#define ZL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zili.h"

enum { ZL_CLI_EXIT_USAGE = 2 };

/* The options of run, chat, tokenize, detokenize, info, perplexity and logits (tools/zili.c parses them). */
typedef struct zl_cli_opts {
    const char *cmd, *model, *prompt, *file, *output, *system, *tmpl, *token_ids, *device;
    int32_t n_predict, n_ctx, n_batch, n_threads, gpu_layers;
    bool n_predict_set; /* -n was given (chat: replies otherwise run to the end of generation) */
    bool chat, print_ids, no_bos, no_special, ignore_eos, kv_f32, no_mmap, mlock, no_repack, exact, seed_set;
    zili_sampler_params sp;
} zl_cli_opts;

void zl_cli_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
double zl_cli_now(void);

/* o->model is a file, or the name of a model in the store (zl_store_resolve); on failure, one line and exit 1. */
zili_model *zl_cli_load_model(const zl_cli_opts *o);
zili_session *zl_cli_make_session(const zili_model *m, const zl_cli_opts *o);
zili_sampler *zl_cli_make_sampler(const zili_model *m, const zl_cli_opts *o);
/* Caller frees the ids. */
zili_token *zl_cli_tokenize(const zili_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                            size_t *n);
void zl_cli_eval(zili_session *s, const zili_token *t, size_t n, bool all);

/* zili chat (src/cli/chat.c): returns the exit status. */
int zl_cli_chat(const zl_cli_opts *o);

/* zili pull / list / rm (src/cli/store_cmd.c): argv[0] is the command's name; return the exit status. */
int zl_cli_pull(int argc, char **argv);
int zl_cli_list(int argc, char **argv);
int zl_cli_rm(int argc, char **argv);

#endif
