/*
 * zili.c - the `zili` command: run, chat, tokenize, detokenize, info, perplexity, logits, bench, serve, devices,
 * version.
 *
 * Uses the public API (include/zili.h), except `serve` and `bench -s`, which run the request engine
 * (src/engine/engine.h) that the server is built on. Errors are one line on stderr ("zili: ...") and a non-zero exit:
 * 2 for a usage error, 1 for anything else. Generated text goes to stdout; timings to stderr.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "zili.h"
#include "engine/engine.h"
#include "tokenizer/vocab.h"
#include "server/serve.h"
#include "cli/cli.h"
#include "cli/embed.h"
#include "store/store.h"

enum { EXIT_USAGE = ZL_CLI_EXIT_USAGE };

static const char USAGE[] =
    "usage: zili <command> [options]\n"
    "\n"
    "commands:\n"
    "  run         -m MODEL -p PROMPT   generate a continuation of PROMPT (streams the new text to stdout)\n"
    "  chat        -m MODEL             interactive multi-turn chat with the model's chat template\n"
    "  tokenize    -m MODEL             text on stdin -> token ids on one line\n"
    "  detokenize  -m MODEL             token ids on stdin -> text\n"
    "  info        -m MODEL             architecture, sizes, types, tokenizer, template\n"
    "  perplexity  -m MODEL -f FILE     perplexity over a text file (llama-perplexity's method)\n"
    "  logits      -m MODEL -p PROMPT -o FILE   raw float32 logits of every prompt position\n"
    "  embed       -m MODEL -p TEXT     an embedding vector per input (zili embed --help)\n"
    "  bench       -m MODEL             prompt and generation speed, like llama-bench (zili bench --help)\n"
    "  serve       -m MODEL             OpenAI-compatible HTTP server (zili serve --help for its options)\n"
    "  devices                          the compute devices this build can use (CPU, Vulkan GPUs)\n"
    "  version                          the version (also -v, --version)\n"
    "\n"
    "options:\n"
    "  -m, --model FILE        GGUF model file\n"
    "  -p, --prompt TEXT       prompt text\n"
    "  -f, --file FILE         text file (perplexity) or prompt file (run)\n"
    "  -n, --n-predict N       tokens to generate (default 128; -1 = until end of generation or context)\n"
    "  -c, --ctx N             context size in tokens (default: model's, at most 4096)\n"
    "  -b, --batch N           tokens per forward pass (default: 64-512 by model size, scratch within 1/32 of\n"
    "                          the weights)\n"
    "  -t, --threads N         threads (default: all CPUs)\n"
    "      --temp T            temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K           (default 40; 0 = off)\n"
    "      --top-p P           (default 0.95; 1 = off)\n"
    "      --min-p P           (default 0.05; 0 = off)\n"
    "      --repeat-penalty R  (default 1 = off)\n"
    "      --repeat-last-n N   penalty window (default 64; -1 = all)\n"
    "      --presence-penalty P, --frequency-penalty P   (default 0 = off)\n"
    "      --seed S            RNG seed, 0..2^63-1 (default -1 = random; as the server takes \"seed\")\n"
    "      --chat              wrap the prompt in the model's chat template (run)\n"
    "      --system TEXT       system message for --chat and chat\n"
    "      --chat-template NAME  use a named template instead of the model's: chatml, qwen2.5, qwen3,\n"
    "                            llama3, llama3.1, gemma, deepseek-r1, deepseek-v3, mistral, mistral-v3,\n"
    "                            mistral-nemo, mistral-v7\n"
    "      --ids               print generated token ids instead of text (run); prompt ids (logits)\n"
    "      --no-bos            do not add BOS even if the vocabulary asks for it\n"
    "      --no-special        tokenize: treat special-token text as plain text\n"
    "      --ignore-eos        keep generating past end-of-generation tokens\n"
    "      --kv-f32            keep the KV cache in F32 (default F16)\n"
    "      --no-mmap           read the model into memory instead of mapping it\n"
    "      --mlock             lock the model in RAM\n"
    "      --no-repack         keep Q4_0 weights in the file's layout and vec_dot's arithmetic (llama.cpp's\n"
    "                            --no-repack) instead of repacking them (x86 with AVX2)\n"
    "      --exact             llama.cpp's arithmetic for prompts too: no AMX tiles (also ZILI_EXACT=1)\n"
    "      --device DEV        cpu (default), vulkan or vulkan:N: where the model runs (zili devices lists them)\n"
    "  -ngl, --gpu-layers N    with --device: the last N layers on the device, the rest on the CPU\n"
    "                            (default: all that fit its memory)\n"
    "  -o, --output FILE       output file (logits)\n"
    "      --token-ids \"1 2 3\" use these prompt ids instead of -p (logits)\n"
    "  -h, --help              this help\n";

typedef zl_cli_opts opts;

/* Option values: a bad one is one line naming the option, the value and what it takes, and exit 2. */
static long long parse_int(const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        zl_cli_die(EXIT_USAGE, "%s '%s': expected an integer in %lld..%lld", opt, s, lo, hi);
    return v;
}

/* --seed: the server's rule for "seed" too (oai.c): an integer in -1..2^63-1, where -1 means random (the default).
 * Returns false for -1. */
static bool parse_seed(const char *opt, const char *s, uint64_t *seed)
{
    const long long v = parse_int(opt, s, -1, INT64_MAX);
    if (v >= 0)
        *seed = (uint64_t)v;
    return v >= 0;
}

static float parse_float(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        zl_cli_die(EXIT_USAGE, "%s '%s': expected a number in %g..%g", opt, s, lo, hi);
    return (float)v;
}

/* Every command, in the order usage lists them. */
static const char COMMANDS[] = "run, chat, tokenize, detokenize, info, perplexity, logits, bench, embed, serve, "
                               "devices, pull, list, rm, version, help";

static bool is_command(const char *c)
{
    static const char *const k[] = {"run", "chat", "tokenize", "detokenize", "info", "perplexity", "logits",
                                    "bench", "embed", "serve", "devices", "pull", "list", "rm", "version", "help"};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(c, k[i]))
            return true;
    return false;
}

/* What comes before any command's options: help, the version, or a command name (anything else is one line). */
static void check_command(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        exit(EXIT_USAGE);
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        fputs(USAGE, stdout);
        exit(0);
    }
    if (!strcmp(c, "-v") || !strcmp(c, "--version") || !strcmp(c, "version")) {
        printf("zili %s\n", ZILI_VERSION);
        exit(0);
    }
    if (c[0] == '-')
        zl_cli_die(EXIT_USAGE, "'%s' before a command; usage: zili COMMAND [options] (commands: %s)", c, COMMANDS);
    if (!is_command(c))
        zl_cli_die(EXIT_USAGE, "unknown command '%s'; commands: %s", c, COMMANDS);
}

static void parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->n_batch = 0; /* chosen from the model */
    o->gpu_layers = -1; /* all that fit */
    o->sp = zili_sampler_default_params();
    o->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define FLAG(s, l) (!strcmp(a, s) || !strcmp(a, l))
#define VAL() (i + 1 < argc ? argv[++i] : (zl_cli_die(EXIT_USAGE, "%s: missing value", a), (char *)NULL))
        if (FLAG("-h", "--help")) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (FLAG("-m", "--model")) o->model = VAL();
        else if (FLAG("-p", "--prompt")) o->prompt = VAL();
        else if (FLAG("-f", "--file")) o->file = VAL();
        else if (FLAG("-o", "--output")) o->output = VAL();
        else if (FLAG("-n", "--n-predict")) o->n_predict = (int32_t)parse_int(a, VAL(), -1, 1 << 24), o->n_predict_set = true;
        else if (FLAG("-c", "--ctx")) o->n_ctx = (int32_t)parse_int(a, VAL(), 1, 1 << 24);
        else if (FLAG("-b", "--batch")) o->n_batch = (int32_t)parse_int(a, VAL(), 1, 1 << 16);
        else if (FLAG("-t", "--threads")) o->n_threads = (int32_t)parse_int(a, VAL(), 1, 1024);
        else if (!strcmp(a, "--temp")) o->sp.temp = parse_float(a, VAL(), 0, 1e6);
        else if (!strcmp(a, "--top-k")) o->sp.top_k = (int32_t)parse_int(a, VAL(), 0, 1 << 30);
        else if (!strcmp(a, "--top-p")) o->sp.top_p = parse_float(a, VAL(), 0, 1);
        else if (!strcmp(a, "--min-p")) o->sp.min_p = parse_float(a, VAL(), 0, 1);
        else if (!strcmp(a, "--repeat-penalty")) o->sp.repeat_penalty = parse_float(a, VAL(), 1e-6, 1e6);
        else if (!strcmp(a, "--repeat-last-n")) o->sp.repeat_last_n = (int32_t)parse_int(a, VAL(), -1, 1 << 20);
        else if (!strcmp(a, "--presence-penalty")) o->sp.presence_penalty = parse_float(a, VAL(), -1e6, 1e6);
        else if (!strcmp(a, "--frequency-penalty")) o->sp.frequency_penalty = parse_float(a, VAL(), -1e6, 1e6);
        else if (!strcmp(a, "--seed")) o->seed_set = parse_seed(a, VAL(), &o->sp.seed);
        else if (!strcmp(a, "--chat")) o->chat = true;
        else if (!strcmp(a, "--system")) o->system = VAL();
        else if (!strcmp(a, "--chat-template")) o->tmpl = VAL();
        else if (!strcmp(a, "--ids")) o->print_ids = true;
        else if (!strcmp(a, "--token-ids")) o->token_ids = VAL();
        else if (!strcmp(a, "--no-bos")) o->no_bos = true;
        else if (!strcmp(a, "--no-special")) o->no_special = true;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = true;
        else if (!strcmp(a, "--kv-f32")) o->kv_f32 = true;
        else if (!strcmp(a, "--no-mmap")) o->no_mmap = true;
        else if (!strcmp(a, "--mlock")) o->mlock = true;
        else if (!strcmp(a, "--no-repack")) o->no_repack = true;
        else if (!strcmp(a, "--exact")) o->exact = true;
        else if (!strcmp(a, "--device")) o->device = VAL();
        else if (!strcmp(a, "--gpu-layers") || !strcmp(a, "-ngl")) o->gpu_layers = (int32_t)parse_int(a, VAL(), 0, 1 << 20);
        else zl_cli_die(EXIT_USAGE, "%s: unknown option '%s' (zili --help lists them)", o->cmd, a);
#undef FLAG
#undef VAL
    }
    if (!o->model)
        zl_cli_die(EXIT_USAGE, "%s: no model given (-m FILE)", o->cmd);
}

/* Reads a whole stream into a NUL-terminated buffer (the NUL is not counted in *len). */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        zl_cli_die(1, "out of memory");
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            if (cap > ((size_t)1 << 31))
                zl_cli_die(1, "input larger than 2 GiB");
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                zl_cli_die(1, "out of memory");
            buf = nb;
        }
    }
    if (ferror(f))
        zl_cli_die(1, "read error: %s", strerror(errno));
    buf[n] = 0;
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        zl_cli_die(1, "%s: %s", path, strerror(errno));
    char *s = read_all(f, len);
    fclose(f);
    return s;
}

/* Parses space-separated token ids. */
static zili_token *parse_ids(const char *s, size_t *n)
{
    size_t cap = 64;
    zili_token *ids = malloc(cap * sizeof *ids);
    if (!ids)
        zl_cli_die(1, "out of memory");
    *n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == ',')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < INT32_MIN || v > INT32_MAX)
            zl_cli_die(1, "token ids: '%.20s' is not a token id", s);
        if (*n == cap) {
            zili_token *ni = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!ni)
                zl_cli_die(1, "out of memory");
            ids = ni;
        }
        ids[(*n)++] = (zili_token)v;
        s = end;
    }
    return ids;
}

/* A growable list of token ids. */
typedef struct id_list {
    zili_token *v;
    size_t n, cap;
} id_list;

static void id_list_push(id_list *l, zili_token t)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        zili_token *nv = realloc(l->v, l->cap * sizeof *nv);
        if (!nv)
            zl_cli_die(1, "out of memory");
        l->v = nv;
    }
    l->v[l->n++] = t;
}

/* Generates up to n_predict tokens after what the session holds, streaming text (or ids) to stdout.
 * Returns the number generated; *text (if non-NULL) receives the generated text (caller frees); every token
 * evaluated into the session is appended to *evaluated (if non-NULL). */
static int32_t generate(const zili_model *m, zili_session *s, zili_sampler *smp, const opts *o, double *t_gen,
                        char **text, id_list *evaluated)
{
    zili_detok *d = zili_detok_create(m, false);
    if (!d)
        zl_cli_die(1, "out of memory");
    size_t tcap = 256, tlen = 0;
    char *acc = text ? malloc(tcap) : NULL;
    if (text && !acc)
        zl_cli_die(1, "out of memory");
    char buf[1024];
    int32_t n = 0;
    const double t0 = zl_cli_now();
    for (; o->n_predict < 0 || n < o->n_predict; n++) {
        if (zili_session_n_past(s) >= zili_session_n_ctx(s)) {
            fprintf(stderr, "\nzili: context full (%d tokens)\n", zili_session_n_ctx(s));
            break;
        }
        const zili_token t = zili_sampler_sample(smp, zili_session_logits(s, -1));
        zili_sampler_accept(smp, t);
        if (!o->ignore_eos && zili_token_is_eog(m, t))
            break;
        if (o->print_ids) {
            printf(n ? " %d" : "%d", t);
        } else {
            int k = zili_detok_push(d, t, buf, sizeof buf);
            if (k > 0) {
                fwrite(buf, 1, (size_t)k, stdout);
                if (acc) {
                    while (tlen + (size_t)k + 1 > tcap) {
                        char *na = realloc(acc, tcap *= 2);
                        if (!na) zl_cli_die(1, "out of memory");
                        acc = na;
                    }
                    memcpy(acc + tlen, buf, (size_t)k);
                    tlen += (size_t)k;
                }
            }
        }
        fflush(stdout);
        zl_cli_eval(s, &t, 1, false);
        if (evaluated)
            id_list_push(evaluated, t);
    }
    if (!o->print_ids) {
        int k = zili_detok_flush(d, buf, sizeof buf);
        if (k > 0) {
            fwrite(buf, 1, (size_t)k, stdout);
            if (acc && tlen + (size_t)k + 1 <= tcap) {
                memcpy(acc + tlen, buf, (size_t)k);
                tlen += (size_t)k;
            }
        }
    }
    *t_gen = zl_cli_now() - t0;
    zili_detok_free(d);
    if (acc) {
        acc[tlen] = 0;
        *text = acc;
    }
    return n;
}

static int cmd_run(const opts *o)
{
    if (!o->prompt && !o->file)
        zl_cli_die(EXIT_USAGE, "run: no prompt given (-p TEXT or -f FILE)");
    size_t plen = 0;
    char *ptext = o->prompt ? strdup(o->prompt) : read_file(o->file, &plen);
    if (!ptext)
        zl_cli_die(1, "out of memory");
    plen = strlen(ptext);
    zili_model *m = zl_cli_load_model(o);
    if (o->chat) {
        zili_chat_msg msgs[2];
        size_t n = 0;
        if (o->system)
            msgs[n++] = (zili_chat_msg){"system", o->system};
        msgs[n++] = (zili_chat_msg){"user", ptext};
        char *rendered, err[512];
        if (zili_chat_apply(m, o->tmpl, msgs, n, true, &rendered, err, sizeof err) != ZILI_OK)
            zl_cli_die(1, "%s", err);
        free(ptext);
        ptext = rendered;
        plen = strlen(ptext);
    }
    size_t n_prompt;
    zili_token *ids = zl_cli_tokenize(m, ptext, plen, !o->no_bos, true, &n_prompt);
    if (n_prompt == 0)
        zl_cli_die(1, "run: the prompt is empty after tokenization");
    zili_session *s = zl_cli_make_session(m, o);
    if (n_prompt >= (size_t)zili_session_n_ctx(s))
        zl_cli_die(1, "run: prompt of %zu tokens does not fit in the context of %d", n_prompt, zili_session_n_ctx(s));
    zili_sampler *smp = zl_cli_make_sampler(m, o);
    for (size_t i = 0; i < n_prompt; i++)
        zili_sampler_accept(smp, ids[i]);

    const double t0 = zl_cli_now();
    zl_cli_eval(s, ids, n_prompt, false);
    const double t_prompt = zl_cli_now() - t0;
    double t_gen = 0;
    int32_t n_gen = generate(m, s, smp, o, &t_gen, NULL, NULL);
    /* Text on a pipe or in a file is exactly the generated bytes; a terminal (and a list of ids) gets a final
     * newline so the prompt that follows starts on its own line. */
    if (o->print_ids || isatty(STDOUT_FILENO))
        printf("\n");
    fflush(stdout);
    fprintf(stderr, "zili: prompt %zu tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s (%.1f tokens/s)\n",
            n_prompt, t_prompt, (double)n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), n_gen, t_gen,
            n_gen / (t_gen > 0 ? t_gen : 1e-9));
    zili_sampler_free(smp);
    zili_session_free(s);
    free(ids);
    free(ptext);
    zili_model_free(m);
    return 0;
}

static int cmd_tokenize(const opts *o)
{
    zili_model *m = zl_cli_load_model(o);
    size_t len;
    char *text = o->prompt ? strdup(o->prompt) : read_all(stdin, &len);
    if (!text)
        zl_cli_die(1, "out of memory");
    size_t n;
    zili_token *ids = zl_cli_tokenize(m, text, strlen(text), !o->no_bos, !o->no_special, &n);
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    free(text);
    zili_model_free(m);
    return 0;
}

static int cmd_detokenize(const opts *o)
{
    zili_model *m = zl_cli_load_model(o);
    size_t len, n;
    char *text = o->prompt ? strdup(o->prompt) : read_all(stdin, &len);
    if (!text)
        zl_cli_die(1, "out of memory");
    zili_token *ids = parse_ids(text, &n);
    char *out, err[512];
    if (zili_detokenize(m, ids, n, true, &out, err, sizeof err) != ZILI_OK)
        zl_cli_die(1, "%s", err);
    fputs(out, stdout);
    printf("\n");
    free(out);
    free(ids);
    free(text);
    zili_model_free(m);
    return 0;
}

static void print_type(const char *type, uint32_t n, uint64_t bytes, void *ud)
{
    (void)ud;
    printf("  %-8s %5u tensors  %10.2f MiB\n", type, n, (double)bytes / (1024.0 * 1024.0));
}

static int cmd_info(const opts *o)
{
    zili_model *m = zl_cli_load_model(o);
    zili_model_info i;
    zili_model_get_info(m, &i);
    printf("file:            %s (GGUF v%u, %.2f MiB)\n", o->model, i.gguf_version, (double)i.file_size / 1048576.0);
    printf("name:            %s\n", i.name);
    printf("architecture:    %s\n", i.arch);
    printf("parameters:      %llu (%.1f M)\n", (unsigned long long)i.n_params, (double)i.n_params / 1e6);
    printf("layers:          %d\n", i.n_layer);
    printf("embedding:       %d\n", i.n_embd);
    printf("heads:           %d (kv %d, head dim %d, rotary dims %d)\n", i.n_head, i.n_head_kv, i.head_dim, i.n_rot);
    printf("feed-forward:    %d\n", i.n_ff);
    if (i.kv_lora_rank > 0)
        printf("MLA:             q_lora_rank %d, kv_lora_rank %d, key %d (%d + rope %d), value %d; cache %d per "
               "token and layer\n", i.q_lora_rank, i.kv_lora_rank, i.head_dim_k_mla, i.head_dim_k_mla - i.n_rot,
               i.n_rot, i.head_dim_v_mla, i.kv_lora_rank + i.n_rot);
    if (i.n_expert > 0) {
        printf("experts:         %d, %d used per token%s, expert feed-forward %d, %s gating\n", i.n_expert,
               i.n_expert_used, i.expert_weights_norm ? " (weights normalized)" : "", i.n_ff_exp, i.expert_gating);
        if (i.n_expert_groups > 1 || (i.expert_weights_scale != 0.0f && i.expert_weights_scale != 1.0f))
            printf("routing:         %d groups, %d used; weights scaled x%g\n", i.n_expert_groups, i.n_group_used,
                   i.expert_weights_scale != 0.0f ? i.expert_weights_scale : 1.0f);
        if (i.n_expert_shared > 0)
            printf("shared experts:  %d, feed-forward %d; %d leading dense layers\n", i.n_expert_shared,
                   i.n_ff_shexp, i.n_layer_dense_lead);
        else if (i.n_ff_shexp > 0)
            printf("shared expert:   1, feed-forward %d, sigmoid-gated\n", i.n_ff_shexp);
        else
            printf("shared expert:   none\n");
    }
    printf("context (train): %d\n", i.n_ctx_train);
    if (strcmp(i.rope_scaling, "linear") == 0 || strcmp(i.rope_scaling, "yarn") == 0)
        printf("rope:            base %g, scaling %s x%g (original context %d)\n", i.rope_theta, i.rope_scaling,
               i.rope_scale, i.rope_orig_ctx);
    else
        printf("rope:            base %g, scaling %s\n", i.rope_theta, i.rope_scaling);
    if (i.n_swa > 0)
        printf("sliding window:  %d positions on %d of %d layers\n", i.n_swa, i.n_swa_layers, i.n_layer);
    printf("norm epsilon:    %g\n", i.norm_eps);
    printf("tied embeddings: %s\n", i.tied_embeddings ? "yes" : "no");
    printf("vocabulary:      %d tokens, %s tokenizer, pre-tokenizer %s\n", i.n_vocab, i.tokenizer_model,
           i.tokenizer_pre);
    printf("special tokens:  bos %d, eos %d, add bos %s\n", i.bos, i.eos, i.add_bos ? "yes" : "no");
    printf("chat template:   %s\n", i.chat_template ? i.chat_template : "(none recognised)");
    printf("cpu kernels:     %s\n", i.kernels);
    printf("tensor types:\n");
    zili_model_foreach_type(m, print_type, NULL);
    zili_model_free(m);
    return 0;
}

/* llama-perplexity's method: the text is tokenized once (with BOS if the vocabulary adds it) and cut into chunks
 * of n_ctx tokens; each chunk is evaluated from an empty cache (its first token replaced by BOS when the vocabulary
 * adds one), and only the second half of each chunk is scored, so that every scored token has at least n_ctx/2
 * tokens of context. PPL = exp(mean negative log-likelihood over scored tokens). */
static int cmd_perplexity(const opts *o)
{
    if (!o->file)
        zl_cli_die(EXIT_USAGE, "perplexity: no text file given (-f FILE)");
    size_t len;
    char *text = read_file(o->file, &len);
    zili_model *m = zl_cli_load_model(o);
    opts so = *o;
    if (so.n_ctx <= 0)
        so.n_ctx = 512;
    zili_session *s = zl_cli_make_session(m, &so);
    const int32_t n_ctx = zili_session_n_ctx(s);
    zili_model_info info;
    zili_model_get_info(m, &info);
    const bool add_bos = info.add_bos && !o->no_bos;
    size_t n_tok;
    zili_token *toks = zl_cli_tokenize(m, text, len, add_bos, false, &n_tok);
    const size_t n_chunk = n_tok / (size_t)n_ctx;
    if (n_chunk == 0)
        zl_cli_die(1, "perplexity: %s has %zu tokens, fewer than one context of %d", o->file, n_tok, n_ctx);
    const int32_t n_vocab = info.n_vocab;
    const int32_t first = n_ctx / 2;
    double nll = 0;
    size_t count = 0;
    zili_token *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!chunk)
        zl_cli_die(1, "out of memory");
    fprintf(stderr, "zili: perplexity over %zu chunks of %d tokens (%zu tokens)\n", n_chunk, n_ctx, n_tok);
    const double t0 = zl_cli_now();
    for (size_t c = 0; c < n_chunk; c++) {
        memcpy(chunk, toks + c * (size_t)n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (add_bos)
            chunk[0] = info.bos;
        zili_session_truncate(s, 0);
        zl_cli_eval(s, chunk, (size_t)n_ctx, true);
        for (int32_t j = first; j < n_ctx - 1; j++) {
            const float *l = zili_session_logits(s, j);
            double mx = l[0];
            for (int32_t v = 1; v < n_vocab; v++)
                if (l[v] > mx) mx = l[v];
            double sum = 0;
            for (int32_t v = 0; v < n_vocab; v++)
                sum += exp((double)l[v] - mx);
            const zili_token next = toks[c * (size_t)n_ctx + (size_t)j + 1];
            nll += -((double)l[next] - mx - log(sum));
            count++;
        }
        printf("[%zu] %.4f\n", c + 1, exp(nll / (double)count));
        fflush(stdout);
    }
    fprintf(stderr, "zili: %.2f s\n", zl_cli_now() - t0);
    printf("PPL = %.4f\n", exp(nll / (double)count));
    free(chunk);
    free(toks);
    zili_session_free(s);
    zili_model_free(m);
    free(text);
    return 0;
}

static int cmd_logits(const opts *o)
{
    if (!o->output)
        zl_cli_die(EXIT_USAGE, "logits: no output file given (-o FILE)");
    if (!o->prompt && !o->token_ids)
        zl_cli_die(EXIT_USAGE, "logits: no prompt given (-p TEXT or --token-ids \"1 2 3\")");
    zili_model *m = zl_cli_load_model(o);
    size_t n;
    zili_token *ids = o->token_ids ? parse_ids(o->token_ids, &n)
                                   : zl_cli_tokenize(m, o->prompt, strlen(o->prompt), !o->no_bos, true, &n);
    if (n == 0)
        zl_cli_die(1, "logits: empty prompt");
    opts so = *o;
    if (so.n_ctx <= 0 || (size_t)so.n_ctx < n)
        so.n_ctx = (int32_t)n;
    zili_session *s = zl_cli_make_session(m, &so);
    zl_cli_eval(s, ids, n, true);
    FILE *f = fopen(o->output, "wb");
    if (!f)
        zl_cli_die(1, "%s: %s", o->output, strerror(errno));
    const int32_t n_vocab = zili_n_vocab(m);
    for (size_t i = 0; i < n; i++)
        if (fwrite(zili_session_logits(s, (int32_t)i), sizeof(float), (size_t)n_vocab, f) != (size_t)n_vocab)
            zl_cli_die(1, "%s: write failed", o->output);
    if (fclose(f))
        zl_cli_die(1, "%s: %s", o->output, strerror(errno));
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    zili_session_free(s);
    zili_model_free(m);
    return 0;
}

/* ---- bench ----------------------------------------------------------------------------------------------- */

static const char BENCH_USAGE[] =
    "usage: zili bench -m MODEL [-p N] [-n N] [-t T] [-r R] [-b B] [--json] [--no-mmap] [--mlock] [--kv-f32]\n"
    "                  [--no-repack] [--device DEV] [--gpu-layers N] [-s LIST]\n"
    "       zili bench --membw [-t T] [--json]\n"
    "       zili bench --peak [-t T] [-m MODEL ...]\n"
    "\n"
    "Measures llama-bench's two tests on one sequence: ppN evaluates N random prompt tokens in one call (batches\n"
    "of -b) from an empty cache; tgN generates N tokens one forward pass at a time from an empty cache (the next\n"
    "token is the previous pass's argmax, so no sampler time is counted). One untimed warm-up run of each, then R\n"
    "timed repetitions; prints mean and standard deviation of tokens/s and the process's peak resident memory.\n"
    "\n"
    "  -p N        prompt tokens (default 512; 0 skips the test)\n"
    "  -n N        generated tokens (default 128; 0 skips the test)\n"
    "  -t T        threads (default: all CPUs)\n"
    "  -r R        repetitions (default 5)\n"
    "  -b B        tokens per forward pass in ppN (default: 64-512 chosen from the model's size, as zili run)\n"
    "  --json      one JSON object on stdout instead of the table\n"
    "  --membw     measure only the memory read bandwidth of T threads (1 GiB buffer; the decode ceiling)\n"
    "  --peak      the AMX tile units' int8 and bf16 peak with T threads (2 s); with -m, also the fraction of\n"
    "              it that ppN's matmuls reach (their multiply-adds: the parameters less the embeddings)\n"
    "  -s LIST     batched decode instead: for each S in LIST (e.g. 1,4,16), S requests of -p random tokens\n"
    "              (default 16 here) run together through the serving engine, each generating -n tokens\n"
    "              (greedy, end-of-generation ignored); prints the prefill time and the aggregate decode\n"
    "              tokens/s once every sequence has its first token, and each S's speed-up over S = 1\n"
    "  --device DEV, -ngl N   run on a device (vulkan, vulkan:N) with N layers there, as for the other commands;\n"
    "              the kernels column then names the device\n"
    "  --no-mmap, --mlock, --kv-f32, --no-repack, --exact   as for the other commands\n";

typedef struct bench_result {
    const char *test; /* "pp" or "tg" */
    int32_t n;
    double mean, sd;  /* tokens/s */
} bench_result;

/* The first index of the largest logit (NaNs never win). The maximum is found with 8 independent running maxima
 * (the one-chain loop costs a few percent of a decode step on a 262144-token vocabulary), then its first index. */
static zili_token argmax_token(const float *l, int32_t n)
{
    float m[8];
    for (int k = 0; k < 8; k++)
        m[k] = l[0];
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            m[k] = l[i + k] > m[k] ? l[i + k] : m[k];
    for (; i < n; i++)
        m[0] = l[i] > m[0] ? l[i] : m[0];
    float best = m[0];
    for (int k = 1; k < 8; k++)
        best = m[k] > best ? m[k] : best;
    for (i = 0; i < n; i++)
        if (l[i] == best)
            return i;
    return 0;
}

/* Memory read bandwidth with T threads, for the decode ceiling (bench/side_by_side.py): a 1 GiB buffer (far past
 * any cache), each thread reading its own slice with 8 independent XOR chains of the widest vectors the CPU has
 * (16-byte reads are instruction-bound on slow cores: 4.4 vs 6.6 GB/s on one core of the CI machine), so that the
 * memory is the limit; best of 5 passes, bytes / wall time of the slowest thread. The XOR total is kept so that
 * the reads cannot be dropped. */
typedef struct membw_part {
    const unsigned char *p;
    size_t bytes;       /* a multiple of 512 */
    pthread_barrier_t *go;
    unsigned long long x;
} membw_part;

#define MEMBW_READER(name, width, attr)                                                                           \
    attr static void *name(void *arg)                                                                            \
    {                                                                                                             \
        typedef unsigned long long vec __attribute__((vector_size(width)));                                      \
        membw_part *w = arg;                                                                                      \
        const vec *p = (const vec *)(const void *)w->p;                                                           \
        const size_t n = w->bytes / (width);                                                                      \
        vec a[8] = {{0}};                                                                                         \
        pthread_barrier_wait(w->go);                                                                              \
        for (size_t i = 0; i + 8 <= n; i += 8)                                                                    \
            for (int k = 0; k < 8; k++)                                                                           \
                a[k] ^= p[i + k];                                                                                 \
        for (int k = 1; k < 8; k++)                                                                               \
            a[0] ^= a[k];                                                                                         \
        w->x = a[0][0];                                                                                           \
        return NULL;                                                                                              \
    }
MEMBW_READER(membw_read16, 16, )
#if defined(__x86_64__) && defined(__GNUC__)
MEMBW_READER(membw_read32, 32, __attribute__((target("avx2"))))
MEMBW_READER(membw_read64, 64, __attribute__((target("avx512f"))))
#endif
#undef MEMBW_READER

static double measure_read_bandwidth(int n_threads, unsigned long long *sink)
{
    const size_t bytes = (size_t)1 << 30;
    void *(*reader)(void *) = membw_read16;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        reader = membw_read64;
    else if (__builtin_cpu_supports("avx2"))
        reader = membw_read32;
#endif
    unsigned char *buf = NULL;
    if (posix_memalign((void **)&buf, (size_t)2 << 20, bytes))
        zl_cli_die(1, "bench: out of memory for the 1 GiB bandwidth buffer");
#ifdef MADV_HUGEPAGE
    (void)madvise(buf, bytes, MADV_HUGEPAGE); /* as --no-mmap's weights: TLB misses would understate the memory */
#endif
    memset(buf, 0x5a, bytes); /* touched: every page resident before timing */
    membw_part part[64];
    pthread_t tid[64];
    if (n_threads > 64)
        n_threads = 64;
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, (unsigned)n_threads + 1);
        const size_t per = bytes / (size_t)n_threads / 512 * 512;
        for (int t = 0; t < n_threads; t++) {
            part[t] = (membw_part){buf + (size_t)t * per, per, &go, 0};
            if (pthread_create(&tid[t], NULL, reader, &part[t]))
                zl_cli_die(1, "bench: cannot create a thread");
        }
        pthread_barrier_wait(&go);
        const double t0 = zl_cli_now();
        for (int t = 0; t < n_threads; t++) {
            pthread_join(tid[t], NULL);
            *sink ^= part[t].x;
        }
        const double dt = zl_cli_now() - t0;
        pthread_barrier_destroy(&go);
        const double bw = (double)(per * (size_t)n_threads) / (dt > 0 ? dt : 1e-9);
        best = bw > best ? bw : best;
    }
    free(buf);
    return best;
}

/* One timed run of a test; returns tokens/s. */
static double bench_once(zili_session *s, const zili_model *m, const char *test, const zili_token *prompt,
                         int32_t n)
{
    zili_session_truncate(s, 0);
    const double t0 = zl_cli_now();
    if (!strcmp(test, "pp")) {
        zl_cli_eval(s, prompt, (size_t)n, false);
    } else {
        zili_token t = prompt[0];
        for (int32_t i = 0; i < n; i++) {
            zl_cli_eval(s, &t, 1, false);
            t = argmax_token(zili_session_logits(s, -1), zili_n_vocab(m));
        }
    }
    const double dt = zl_cli_now() - t0;
    return (double)n / (dt > 0 ? dt : 1e-9);
}

/* A file name inside a JSON string: escapes what JSON needs. */
static void json_chars(const char *s)
{
    for (const char *c = s; *c; c++)
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if ((unsigned char)*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
}

/* One round of `bench -s`: S requests of n_p random prompt tokens (different per request, so the prefix cache
 * has nothing to share), n_g greedy tokens each. *prefill_s: submit until every request has a token; returns
 * the decode tokens/s after that (tokens generated from then on / time until the last request ends). */
static double bench_parallel_once(zl_engine *e, int32_t n_vocab, int32_t bos, int32_t S, int32_t n_p, int32_t n_g,
                                  uint64_t *rng, double *prefill_s)
{
    zl_req **req = calloc((size_t)S, sizeof *req);
    int32_t *prompt = malloc((size_t)n_p * sizeof *prompt), *gen0 = calloc((size_t)S, sizeof *gen0);
    if (!req || !prompt || !gen0)
        zl_cli_die(1, "out of memory");
    zl_req_params rp;
    zl_req_params_init(&rp);
    rp.sampling.temp = 0;
    rp.max_tokens = n_g;
    rp.ignore_eos = true;
    const double t0 = zl_cli_now();
    for (int32_t i = 0; i < S; i++) {
        for (int32_t k = 0; k < n_p; k++) {
            *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
            prompt[k] = (int32_t)(*rng % (uint64_t)n_vocab);
        }
        if (bos >= 0)
            prompt[0] = bos;
        zl_err err;
        if (zl_engine_submit(e, prompt, (size_t)n_p, &rp, &req[i], &err) != ZL_OK)
            zl_cli_die(1, "bench: %s", err.msg);
    }
    /* Requests step together, so waiting for them in order sees each one's first token within a step of it. */
    zl_req_chunk c;
    for (int32_t i = 0; i < S; i++) {
        do {
            if (zl_req_next(req[i], -1, &c) != ZL_OK)
                zl_cli_die(1, "bench: out of memory");
            gen0[i] = c.n_gen;
            const zl_finish f = c.finish;
            zl_req_chunk_free(&c);
            if (f == ZL_FINISH_ERROR || f == ZL_FINISH_CANCELLED)
                zl_cli_die(1, "bench: a request failed");
        } while (gen0[i] == 0);
    }
    const double t1 = zl_cli_now();
    int64_t decoded = 0;
    for (int32_t i = 0; i < S; i++) {
        int32_t n_gen = 0;
        zl_finish f = ZL_FINISH_NONE;
        while (f == ZL_FINISH_NONE) {
            if (zl_req_next(req[i], -1, &c) != ZL_OK)
                zl_cli_die(1, "bench: out of memory");
            f = c.finish;
            n_gen = c.n_gen;
            zl_req_chunk_free(&c);
        }
        if (f != ZL_FINISH_LENGTH)
            zl_cli_die(1, "bench: a request ended early");
        decoded += n_gen - gen0[i];
        zl_req_release(req[i]);
    }
    const double t2 = zl_cli_now();
    free(req);
    free(prompt);
    free(gen0);
    *prefill_s = t1 - t0;
    return (double)decoded / (t2 - t1 > 0 ? t2 - t1 : 1e-9);
}

static int bench_parallel(const opts *o, const char *list, int32_t n_p, int32_t n_g, int32_t reps, bool json)
{
    int32_t S[32];
    int n_s = 0;
    for (const char *c = list; *c;) {
        char *end;
        errno = 0;
        const long v = strtol(c, &end, 10);
        if (end == c || errno || v < 1 || v > 1024 || n_s == 32 || (*end && (*end != ',' || !end[1])))
            zl_cli_die(EXIT_USAGE, "bench: -s wants a list of 1 to 32 sequence counts in 1..1024, like 1,4,16");
        S[n_s++] = (int32_t)v;
        c = *end ? end + 1 : end;
    }
    if (n_g < 2)
        zl_cli_die(EXIT_USAGE, "bench: -s needs -n 2 or more (decode tokens after the first)");
    zl_model_opts mo = {.use_mmap = !o->no_mmap, .use_mlock = o->mlock, .no_repack = o->no_repack,
                        .exact = o->exact, .device = o->device, .gpu_layers = o->gpu_layers};
    zl_model *m;
    zl_err err;
    if (zl_model_load(o->model, &mo, &m, &err) != ZL_OK)
        zl_cli_die(1, "%s", err.msg);
    if (zl_model_device_summary(m))
        fprintf(stderr, "zili: %s\n", zl_model_device_summary(m));
    const zl_vocab *v = zl_model_vocab(m);
    const int32_t n_vocab = zl_model_hparams(m)->n_vocab, bos = zl_vocab_add_bos(v) ? zl_vocab_bos(v) : -1;
    const char *base = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    double base_tps = 0;
    if (json) {
        printf("{\"model\": \"");
        json_chars(base);
        printf("\", \"prompt\": %d, \"gen\": %d, \"results\": [", n_p, n_g);
    }
    else
        printf("%s: %d-token prompts, %d generated tokens each, %d repetitions after one warm-up\n\n"
               "| %9s | %12s | %20s | %8s |\n| --------- | ------------ | -------------------- | -------- |\n",
               base, n_p, n_g, reps, "sequences", "prefill s", "decode t/s", "vs S=1");
    for (int k = 0; k < n_s; k++) {
        zl_engine_params ep = zl_engine_default_params();
        ep.n_parallel = S[k];
        ep.n_ctx = n_p + n_g + 1;
        ep.n_threads = o->n_threads;
        ep.kv_f16 = !o->kv_f32;
        ep.prefix_cache = false;
        ep.max_queue = S[k];
        zl_engine *e;
        if (zl_engine_create(m, &ep, &e, &err) != ZL_OK)
            zl_cli_die(1, "bench: %s", err.msg);
        double pf, sum = 0, sum2 = 0, pf_sum = 0;
        bench_parallel_once(e, n_vocab, bos, S[k], n_p, n_g, &rng, &pf); /* warm-up */
        for (int r = 0; r < reps; r++) {
            const double t = bench_parallel_once(e, n_vocab, bos, S[k], n_p, n_g, &rng, &pf);
            sum += t, sum2 += t * t, pf_sum += pf;
        }
        zl_engine_destroy(e);
        const double mean = sum / reps, sd = reps > 1 ? sqrt(fmax(0, (sum2 - sum * mean) / (reps - 1))) : 0;
        if (S[k] == 1)
            base_tps = mean;
        char ratio[32] = "";
        if (base_tps > 0)
            snprintf(ratio, sizeof ratio, "%.2fx", mean / base_tps);
        if (json)
            printf("%s{\"sequences\": %d, \"prefill_s\": %.4f, \"decode_tokens_per_s\": %.3f, \"sd\": %.3f}",
                   k ? ", " : "", S[k], pf_sum / reps, mean, sd);
        else {
            char tps_s[48];
            snprintf(tps_s, sizeof tps_s, "%.2f ± %.2f", mean, sd);
            printf("| %9d | %12.4f | %20s | %8s |\n", S[k], pf_sum / reps, tps_s, ratio);
        }
        fflush(stdout);
    }
    if (json)
        printf("]}\n");
    zl_model_free(m);
    return 0;
}

static int cmd_bench(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof o);
    o.n_batch = 0; /* chosen from the model */
    o.gpu_layers = -1; /* all that fit */
    int32_t n_pp = 512, n_tg = 128, reps = 5;
    bool json = false, membw = false, peak = false, p_given = false;
    const char *seqs = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define VAL() (i + 1 < argc ? argv[++i] : (zl_cli_die(EXIT_USAGE, "bench: %s: missing value", a), (char *)NULL))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(BENCH_USAGE, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) o.model = VAL();
        else if (!strcmp(a, "-p")) n_pp = (int32_t)parse_int(a, VAL(), 0, 1 << 20), p_given = true;
        else if (!strcmp(a, "-s")) seqs = VAL();
        else if (!strcmp(a, "-n")) n_tg = (int32_t)parse_int(a, VAL(), 0, 1 << 20);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o.n_threads = (int32_t)parse_int(a, VAL(), 1, 1024);
        else if (!strcmp(a, "-r")) reps = (int32_t)parse_int(a, VAL(), 1, 1000);
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) o.n_batch = (int32_t)parse_int(a, VAL(), 1, 1 << 16);
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--membw")) membw = true;
        else if (!strcmp(a, "--peak")) peak = true;
        else if (!strcmp(a, "--no-mmap")) o.no_mmap = true;
        else if (!strcmp(a, "--mlock")) o.mlock = true;
        else if (!strcmp(a, "--no-repack")) o.no_repack = true;
        else if (!strcmp(a, "--exact")) o.exact = true;
        else if (!strcmp(a, "--kv-f32")) o.kv_f32 = true;
        else if (!strcmp(a, "--device")) o.device = VAL();
        else if (!strcmp(a, "--gpu-layers") || !strcmp(a, "-ngl")) o.gpu_layers = (int32_t)parse_int(a, VAL(), 0, 1 << 20);
        else zl_cli_die(EXIT_USAGE, "bench: unknown option '%s' (try 'zili bench --help')", a);
#undef VAL
    }
    if (membw) {
        if (o.model)
            zl_cli_die(EXIT_USAGE, "bench: --membw measures memory alone; give it no model");
        const int nt = o.n_threads > 0 ? o.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        unsigned long long sink = 0;
        const double bw = measure_read_bandwidth(nt, &sink);
        if (json)
            printf("{\"threads\": %d, \"read_bytes_per_s\": %.0f, \"check\": %llu}\n", nt, bw, sink & 1);
        else
            printf("memory read bandwidth: %.2f GB/s with %d thread%s (1 GiB buffer, best of 5)\n", bw / 1e9, nt,
                   nt == 1 ? "" : "s");
        return 0;
    }
    double peak_i8 = 0, peak_bf = 0;
    if (peak) {
        const int nt = o.n_threads > 0 ? o.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        if (!zili_cpu_tile_peak(nt, 2.0, &peak_i8, &peak_bf))
            zl_cli_die(1, "bench: --peak: no AMX tiles here (CPU without AMX, tile permission refused, or ZILI_CPU set)");
        printf("AMX tile peak, %d thread%s: int8 %.2f T multiply-adds/s (%.1f TOPS), bf16 %.2f T multiply-adds/s "
               "(%.1f TFLOPS)\n", nt, nt == 1 ? "" : "s", peak_i8 / 1e12, 2 * peak_i8 / 1e12, peak_bf / 1e12,
               2 * peak_bf / 1e12);
        if (!o.model)
            return 0;
    }
    if (!o.model)
        zl_cli_die(EXIT_USAGE, "bench: no model given (-m FILE)");
    char model_path[PATH_MAX], err[1024];
    if (zl_store_resolve(o.model, model_path, sizeof model_path, err, sizeof err) != 0)
        zl_cli_die(1, "%s", err);
    o.model = model_path;
    if (seqs)
        return bench_parallel(&o, seqs, p_given ? (n_pp > 0 ? n_pp : 1) : 16, n_tg, reps, json);
    if (n_pp == 0 && n_tg == 0)
        zl_cli_die(EXIT_USAGE, "bench: nothing to measure (-p 0 and -n 0)");
    zili_model *m = zl_cli_load_model(&o);
    zili_model_info info;
    zili_model_get_info(m, &info);
    o.n_ctx = (n_pp > n_tg ? n_pp : n_tg) + 1;
    zili_session *s = zl_cli_make_session(m, &o);
    const int n_threads = o.n_threads > 0 ? o.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);

    /* Random prompt ids (fixed seed: the same prompt every run), BOS first when the vocabulary adds one. */
    const int32_t n_ids = n_pp > 1 ? n_pp : 1;
    zili_token *ids = malloc((size_t)n_ids * sizeof *ids);
    if (!ids)
        zl_cli_die(1, "out of memory");
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int32_t i = 0; i < n_ids; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        ids[i] = (zili_token)(rng % (uint64_t)info.n_vocab);
    }
    if (info.add_bos && info.bos >= 0)
        ids[0] = info.bos;

    bench_result res[2];
    int n_res = 0;
    double *tps = malloc((size_t)reps * sizeof *tps);
    if (!tps)
        zl_cli_die(1, "out of memory");
    for (int k = 0; k < 2; k++) {
        const char *test = k == 0 ? "pp" : "tg";
        const int32_t n = k == 0 ? n_pp : n_tg;
        if (n == 0)
            continue;
        bench_once(s, m, test, ids, n); /* warm-up: pages in the weights, sizes the scratch buffers */
        double sum = 0;
        for (int r = 0; r < reps; r++)
            sum += tps[r] = bench_once(s, m, test, ids, n);
        const double mean = sum / reps;
        double var = 0;
        for (int r = 0; r < reps; r++)
            var += (tps[r] - mean) * (tps[r] - mean);
        res[n_res++] = (bench_result){test, n, mean, reps > 1 ? sqrt(var / (reps - 1)) : 0};
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double peak_mib = (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
    const double size_mib = (double)info.file_size / 1048576.0;
    const char *base = strrchr(o.model, '/') ? strrchr(o.model, '/') + 1 : o.model;
    const char *kernels = o.device && strcmp(o.device, "cpu") ? o.device : info.kernels;
    if (json) {
        printf("{\"model\": \"");
        json_chars(base);
        printf("\", \"arch\": \"%s\", \"size_mib\": %.2f, \"params\": %llu, \"kernels\": \"%s\", \"device\": \"%s\", "
               "\"threads\": %d, \"reps\": %d, \"mmap\": %s, \"n_batch\": %d, \"peak_rss_mib\": %.1f, "
               "\"active_weight_bytes\": %llu, \"results\": [",
               info.arch, size_mib, (unsigned long long)info.n_params, info.kernels, o.device ? o.device : "cpu",
               n_threads, reps,
               o.no_mmap ? "false" : "true", zili_session_n_batch(s), peak_mib,
               (unsigned long long)info.active_weight_bytes);
        for (int i = 0; i < n_res; i++)
            printf("%s{\"test\": \"%s%d\", \"tokens_per_s\": %.3f, \"sd\": %.3f}", i ? ", " : "", res[i].test,
                   res[i].n, res[i].mean, res[i].sd);
        printf("]}\n");
    } else {
        printf("| %-32s | %-8s | %10s | %9s | %-8s | %7s | %8s | %20s |\n", "model", "arch", "size", "params",
               "kernels", "threads", "test", "t/s");
        printf("| %.32s | %.8s | %.10s | %.9s | %.8s | %.7s | %.8s | %.20s |\n", "--------------------------------",
               "--------", "----------", "---------", "--------", "-------", "--------", "--------------------");
        for (int i = 0; i < n_res; i++) {
            char test[32], tps_s[48];
            snprintf(test, sizeof test, "%s%d", res[i].test, res[i].n);
            snprintf(tps_s, sizeof tps_s, "%.2f ± %.2f", res[i].mean, res[i].sd);
            printf("| %-32.32s | %-8s | %6.1f MiB | %7.1f M | %-8s | %7d | %8s | %20s |\n", base, info.arch, size_mib,
                   (double)info.n_params / 1e6, kernels, n_threads, test, tps_s);
        }
        printf("\npeak resident memory %.1f MiB (model file %.1f MiB, %s); %d repetitions after one warm-up; "
               "batches of %d tokens\n",
               peak_mib, size_mib, o.no_mmap ? "read in" : "mapped", reps, zili_session_n_batch(s));
        /* what one token's forward pass reads of the weights; a mixture of experts reads only its active experts */
        printf("active weight bytes per token %.1f MiB", (double)info.active_weight_bytes / 1048576.0);
        for (int i = 0; i < n_res; i++)
            if (!strcmp(res[i].test, "tg"))
                printf(" (tg%d: %.2f GB/s of weights)", res[i].n, res[i].mean * (double)info.active_weight_bytes / 1e9);
        if (info.n_expert > 0)
            printf("; %d of %d experts per layer", info.n_expert_used, info.n_expert);
        printf("\n");
    }
    if (peak && n_res && !strcmp(res[0].test, "pp")) {
        /* the prompt's matmuls: every weight but the embedding lookup (the output head runs on one row) */
        const double emb = (double)info.n_vocab * info.n_embd * (info.tied_embeddings ? 1 : 2);
        const double macs = ((double)info.n_params - emb) * res[0].mean;
        printf("pp%d matmuls: %.3f T multiply-adds/s = %.1f%% of the int8 tile peak, %.1f%% of the bf16 one\n",
               res[0].n, macs / 1e12, 100 * macs / peak_i8, 100 * macs / peak_bf);
    }
    free(tps);
    free(ids);
    zili_session_free(s);
    zili_model_free(m);
    return 0;
}

/* ---- devices -------------------------------------------------------------------------------------------- */

/* "12.0 GiB", "256 MiB"; "-" for a limit that is really the address space (the CPU's). */
static const char *fmt_bytes(char *s, size_t cap, uint64_t b)
{
    if (b >= (uint64_t)1 << 62)
        snprintf(s, cap, "-");
    else if (b >= (uint64_t)1 << 30)
        snprintf(s, cap, "%.1f GiB", (double)b / (double)(1u << 30));
    else
        snprintf(s, cap, "%.0f MiB", (double)b / (double)(1u << 20));
    return s;
}

/* One line per device of every kind this build has; a kind without devices says why. Needs no model. */
static int cmd_devices(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: zili devices\n\nLists every device kind this build has and the devices of each (what a "
                 "model's device option takes, like vulkan:0),\nor why a kind has none.");
            return 0;
        }
        zl_cli_die(EXIT_USAGE, "devices: unknown option '%s' (it takes none)", argv[i]);
    }
    static const char *const feature_names[] = {"f16", "int8-dot", "subgroups", "coopmat", "unified"};
    for (int k = 0; k < zili_device_kinds(); k++) {
        enum { MAX_DEVICES = 16 };
        zili_device_info d[MAX_DEVICES];
        const char *kind = "", *why = "";
        const int n = zili_device_list(k, &kind, d, MAX_DEVICES, &why);
        if (n <= 0)
            printf("%s: none (%s)\n", kind, *why ? why : "no device found");
        for (int i = 0; i < n && i < MAX_DEVICES; i++) {
            char mem[32], alloc[32], bind[32], sub[16], feat[96] = "";
            if (d[i].subgroup_size)
                snprintf(sub, sizeof sub, "%u", d[i].subgroup_size);
            else
                snprintf(sub, sizeof sub, "-");
            for (size_t f = 0; f < sizeof feature_names / sizeof feature_names[0]; f++)
                if (d[i].features & (1u << f))
                    snprintf(feat + strlen(feat), sizeof feat - strlen(feat), "%s%s", *feat ? "," : "",
                             feature_names[f]);
            printf("%-9s %s  memory %s  max alloc %s  max binding %s  alignment %llu  subgroup %s  features %s%s%s\n",
                   d[i].spec, d[i].name, fmt_bytes(mem, sizeof mem, d[i].memory),
                   fmt_bytes(alloc, sizeof alloc, d[i].max_alloc), fmt_bytes(bind, sizeof bind, d[i].max_binding),
                   (unsigned long long)d[i].alignment, sub, *feat ? feat : "-", *d[i].driver ? "  driver " : "",
                   d[i].driver);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return zl_serve_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "bench"))
        return cmd_bench(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "embed")) return zili_cli_embed(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "devices"))
        return cmd_devices(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "pull"))
        return zl_cli_pull(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "list"))
        return zl_cli_list(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "rm"))
        return zl_cli_rm(argc - 1, argv + 1);
    check_command(argc, argv);
    opts o;
    parse_args(argc, argv, &o);
    if (!strcmp(o.cmd, "run")) return cmd_run(&o);
    if (!strcmp(o.cmd, "chat")) return zl_cli_chat(&o);
    if (!strcmp(o.cmd, "tokenize")) return cmd_tokenize(&o);
    if (!strcmp(o.cmd, "detokenize")) return cmd_detokenize(&o);
    if (!strcmp(o.cmd, "info")) return cmd_info(&o);
    if (!strcmp(o.cmd, "perplexity")) return cmd_perplexity(&o);
    if (!strcmp(o.cmd, "logits")) return cmd_logits(&o);
    zl_cli_die(EXIT_USAGE, "unknown command '%s' (try 'zili --help')", o.cmd);
}
