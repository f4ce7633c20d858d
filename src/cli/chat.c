/*
 * chat.c - `zili chat`: an interactive conversation with the model's chat template.
 *
 * On a terminal, lines are read with libedit (editing, arrow keys, in-memory history); from a pipe, plain lines.
 * Empty lines are ignored; Ctrl-D (end of input) quits. Lines starting with '/' are commands (/help lists them).
 *
 * Each turn re-renders the whole conversation; the session keeps the tokens it already evaluated (`cached`) and only
 * evaluates what follows the longest common prefix, so a turn costs only its new tokens. Replies run to the end of
 * generation unless -n caps them.
 *
 * Ctrl-C: SIGINT only sets a flag (installed without SA_RESTART, so a blocked read returns). During a reply the
 * generation loop sees it after the current token, the partial reply stays in the conversation and the program goes
 * on; at the prompt it abandons the line being typed.
 *
 * Context: before a turn, the oldest user/assistant turns (never the system message or the new message) are dropped
 * until the rendered conversation leaves room for a reply (a quarter of the context, or -n if smaller), with a
 * one-line notice. A reply that meets the end of the context stops there with a notice; the next turn drops turns.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <histedit.h>

#include "cli/cli.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- the conversation --------------------------------------------------------------------------------------- */

/* Messages with a static role ("system", "user" or "assistant") and owned content; a system message is first. */
typedef struct conv {
    zili_chat_msg *v;
    size_t n, cap;
} conv;

static void conv_insert(conv *c, size_t at, const char *role, const char *content)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        zili_chat_msg *nv = realloc(c->v, c->cap * sizeof *nv);
        if (!nv)
            zl_cli_die(1, "out of memory");
        c->v = nv;
    }
    char *s = strdup(content);
    if (!s)
        zl_cli_die(1, "out of memory");
    memmove(c->v + at + 1, c->v + at, (c->n - at) * sizeof *c->v);
    c->v[at] = (zili_chat_msg){role, s};
    c->n++;
}

static void conv_push(conv *c, const char *role, const char *content) { conv_insert(c, c->n, role, content); }

/* Removes messages [at, at + k). */
static void conv_remove(conv *c, size_t at, size_t k)
{
    if (k == 0) /* also an empty conversation, whose v may be NULL */
        return;
    for (size_t i = at; i < at + k; i++)
        free((char *)c->v[i].content);
    memmove(c->v + at, c->v + at + k, (c->n - at - k) * sizeof *c->v);
    c->n -= k;
}

static void conv_clear(conv *c, bool keep_system)
{
    const size_t first = keep_system && c->n && !strcmp(c->v[0].role, "system") ? 1 : 0;
    conv_remove(c, first, c->n - first);
}

static void conv_free(conv *c)
{
    conv_clear(c, false);
    free(c->v);
}

static bool has_system(const conv *c) { return c->n && !strcmp(c->v[0].role, "system"); }

/* /save FILE: the messages as a JSON array of {"role", "content"} (the OpenAI "messages" shape). */
static bool conv_save(const conv *c, const char *path, char *err, size_t err_len)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < c->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "role", c->v[i].role, "content", c->v[i].content));
    const int rc = a ? json_dump_file(a, path, JSON_INDENT(2)) : -1;
    json_decref(a);
    if (rc != 0)
        snprintf(err, err_len, "/save: cannot write '%s': %s", path, strerror(errno));
    return rc == 0;
}

/* /load FILE: an array of messages as /save writes it, or an object with such a "messages" array. Every message
 * needs a role of system (first only), user or assistant and a string content; the template must render them. On
 * any error *out is untouched. */
static bool conv_load(const zili_model *m, const char *tmpl, const char *path, conv *out, char *err, size_t err_len)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        snprintf(err, err_len, "/load: %s: %s (line %d)", path, je.text, je.line);
        return false;
    }
    json_t *a = json_is_object(root) ? json_object_get(root, "messages") : root;
    conv c = {0};
    bool ok = json_is_array(a);
    if (!ok)
        snprintf(err, err_len, "/load: %s: expected an array of messages (or {\"messages\": [...]})", path);
    for (size_t i = 0; ok && i < json_array_size(a); i++) {
        json_t *msg = json_array_get(a, i);
        const char *role = json_string_value(json_object_get(msg, "role"));
        const char *content = json_string_value(json_object_get(msg, "content"));
        static const char *const roles[] = {"system", "user", "assistant"};
        const char *r = NULL;
        for (size_t k = 0; role && k < 3; k++)
            if (!strcmp(role, roles[k]))
                r = roles[k];
        if (!json_is_object(msg) || !r || !content || (r == roles[0] && i > 0)) {
            snprintf(err, err_len,
                     "/load: %s: message %zu: needs \"role\" system (first only), user or assistant and a string "
                     "\"content\"", path, i);
            ok = false;
        } else if (strlen(content) != json_string_length(json_object_get(msg, "content"))) {
            snprintf(err, err_len, "/load: %s: message %zu: content holds a NUL character", path, i);
            ok = false;
        } else {
            conv_push(&c, r, content);
        }
    }
    json_decref(root);
    if (ok && c.n) {
        char *rendered, e[512];
        if (zili_chat_apply(m, tmpl, c.v, c.n, true, &rendered, e, sizeof e) != ZILI_OK) {
            snprintf(err, err_len, "/load: %s: %s", path, e);
            ok = false;
        } else {
            free(rendered);
        }
    }
    if (!ok) {
        conv_free(&c);
        return false;
    }
    conv_free(out);
    *out = c;
    return true;
}

/* ---- reading lines ------------------------------------------------------------------------------------------ */

typedef struct reader {
    EditLine *el; /* NULL when stdin is not a terminal */
    History *hist;
    char *buf; /* the line of the last reader_get, owned */
    size_t cap;
} reader;

static char *prompt_fn(EditLine *el)
{
    (void)el;
    return "> ";
}

static void reader_init(reader *r)
{
    memset(r, 0, sizeof *r);
    if (!isatty(STDIN_FILENO))
        return;
    r->el = el_init("zili", stdin, stderr, stderr);
    r->hist = history_init();
    if (!r->el || !r->hist)
        zl_cli_die(1, "chat: cannot set up line editing (libedit)");
    HistEvent ev;
    history(r->hist, &ev, H_SETSIZE, 1000);
    history(r->hist, &ev, H_SETUNIQUE, 1);
    el_set(r->el, EL_EDITOR, "emacs");
    el_set(r->el, EL_PROMPT, prompt_fn);
    el_set(r->el, EL_HIST, history, r->hist);
    el_set(r->el, EL_SIGNAL, 0); /* SIGINT is ours (on_sigint); libedit must not install its own */
}

static void reader_free(reader *r)
{
    if (r->el)
        el_end(r->el);
    if (r->hist)
        history_end(r->hist);
    free(r->buf);
}

/* Reads one line without its line end: 1, or 0 at the end of input, or -1 when Ctrl-C abandoned the line. */
static int reader_get(reader *r, const char **line)
{
    size_t len;
    if (r->el) {
        interrupted = 0;
        int count = 0;
        const char *s = el_gets(r->el, &count);
        if (interrupted) {
            interrupted = 0;
            fputs("^C\n", stderr);
            el_reset(r->el);
            return -1;
        }
        if (!s || count <= 0)
            return 0;
        len = strlen(s);
        if (len + 1 > r->cap) {
            char *nb = realloc(r->buf, len + 1);
            if (!nb)
                zl_cli_die(1, "out of memory");
            r->buf = nb;
            r->cap = len + 1;
        }
        memcpy(r->buf, s, len + 1);
    } else {
        ssize_t n = getline(&r->buf, &r->cap, stdin);
        if (n <= 0)
            return 0;
        len = (size_t)n;
    }
    while (len && (r->buf[len - 1] == '\n' || r->buf[len - 1] == '\r'))
        r->buf[--len] = 0;
    if (r->el && len) {
        HistEvent ev;
        history(r->hist, &ev, H_ENTER, r->buf);
    }
    *line = r->buf;
    return 1;
}

/* ---- one turn ----------------------------------------------------------------------------------------------- */

typedef struct chat {
    const zl_cli_opts *o;
    zili_model *m;
    zili_session *s;
    zili_sampler *smp;
    conv c;
    zili_token *cached; /* exactly the tokens the session holds */
    size_t n_cached, cap_cached;
} chat;

static void cache_push(chat *ch, zili_token t)
{
    if (ch->n_cached == ch->cap_cached) {
        ch->cap_cached = ch->cap_cached ? 2 * ch->cap_cached : 256;
        zili_token *nv = realloc(ch->cached, ch->cap_cached * sizeof *nv);
        if (!nv)
            zl_cli_die(1, "out of memory");
        ch->cached = nv;
    }
    ch->cached[ch->n_cached++] = t;
}

/* Renders and tokenizes the conversation (with the assistant's turn opened). Caller frees; NULL with the message in
 * err if the template refuses. */
static zili_token *render(chat *ch, size_t *n, char *err, size_t err_len)
{
    char *text;
    if (zili_chat_apply(ch->m, ch->o->tmpl, ch->c.v, ch->c.n, true, &text, err, err_len) != ZILI_OK)
        return NULL;
    zili_token *ids = zl_cli_tokenize(ch->m, text, strlen(text), !ch->o->no_bos, true, n);
    free(text);
    return ids;
}

/* Drops the oldest turns until the conversation leaves `reserve` tokens for the reply. Returns its tokens, or NULL
 * (with a message printed) when even the system message and the last message alone do not fit. */
static zili_token *fit(chat *ch, size_t *n_ids)
{
    const size_t n_ctx = (size_t)zili_session_n_ctx(ch->s);
    size_t reserve = n_ctx / 4;
    if (ch->o->n_predict > 0 && (size_t)ch->o->n_predict < reserve)
        reserve = (size_t)ch->o->n_predict;
    if (reserve < 1)
        reserve = 1;
    int dropped = 0;
    for (;;) {
        char err[512];
        zili_token *ids = render(ch, n_ids, err, sizeof err);
        if (!ids) {
            fprintf(stderr, "zili: %s\n", err);
            return NULL;
        }
        if (*n_ids + reserve <= n_ctx) {
            if (dropped)
                fprintf(stderr, "zili: context full: dropped the oldest %d turn%s\n", dropped, dropped > 1 ? "s" : "");
            return ids;
        }
        free(ids);
        /* The oldest turn: from the first message after the system message up to (not including) the next user
         * message; the last message (the new one) always stays. */
        const size_t first = has_system(&ch->c) ? 1 : 0;
        size_t end = first + 1;
        while (end < ch->c.n && strcmp(ch->c.v[end].role, "user"))
            end++;
        if (end >= ch->c.n) {
            fprintf(stderr, "zili: the message does not fit in the context of %zu tokens (%zu tokens with the "
                            "system message and room for a reply); not sent\n", n_ctx, *n_ids + reserve);
            return NULL;
        }
        conv_remove(&ch->c, first, end - first);
        dropped++;
    }
}

/* Writes k bytes of buf to stdout and appends them to the reply. */
static void emit(char **reply, size_t *len, size_t *cap, const char *buf, int k)
{
    if (k <= 0)
        return;
    fwrite(buf, 1, (size_t)k, stdout);
    fflush(stdout);
    while (*len + (size_t)k + 1 > *cap) {
        char *nr = realloc(*reply, *cap *= 2);
        if (!nr)
            zl_cli_die(1, "out of memory");
        *reply = nr;
    }
    memcpy(*reply + *len, buf, (size_t)k);
    *len += (size_t)k;
}

typedef enum { END_EOG, END_LIMIT, END_CONTEXT, END_INTERRUPT } turn_end;

/* Answers the conversation's last (user) message: appends the reply, whole or partial, to the conversation. */
static void answer(chat *ch)
{
    size_t n_ids;
    zili_token *ids = fit(ch, &n_ids);
    if (!ids) {
        conv_remove(&ch->c, ch->c.n - 1, 1); /* not sent: the conversation stays as it was */
        return;
    }
    size_t common = 0;
    while (common < n_ids && common < ch->n_cached && ids[common] == ch->cached[common])
        common++;
    if (common == n_ids) /* always evaluate at least the last token, for fresh logits */
        common--;
    zili_session_truncate(ch->s, (int32_t)common);
    interrupted = 0;
    zl_cli_eval(ch->s, ids + common, n_ids - common, false);
    ch->n_cached = common;
    for (size_t i = common; i < n_ids; i++)
        cache_push(ch, ids[i]);
    free(ids);

    zili_detok *d = zili_detok_create(ch->m, false);
    size_t cap = 256, len = 0;
    char *reply = malloc(cap);
    if (!d || !reply)
        zl_cli_die(1, "out of memory");
    char buf[1024];
    int32_t n = 0;
    turn_end end = END_EOG;
    const double t0 = zl_cli_now();
    for (;;) {
        if (interrupted) {
            end = END_INTERRUPT;
            break;
        }
        if (ch->o->n_predict >= 0 && n >= ch->o->n_predict) {
            end = END_LIMIT;
            break;
        }
        if (zili_session_n_past(ch->s) >= zili_session_n_ctx(ch->s)) {
            end = END_CONTEXT;
            break;
        }
        const zili_token t = zili_sampler_sample(ch->smp, zili_session_logits(ch->s, -1));
        zili_sampler_accept(ch->smp, t);
        if (!ch->o->ignore_eos && zili_token_is_eog(ch->m, t))
            break;
        emit(&reply, &len, &cap, buf, zili_detok_push(d, t, buf, sizeof buf));
        zl_cli_eval(ch->s, &t, 1, false);
        cache_push(ch, t);
        n++;
    }
    emit(&reply, &len, &cap, buf, zili_detok_flush(d, buf, sizeof buf));
    reply[len] = 0;
    zili_detok_free(d);
    const double dt = zl_cli_now() - t0;
    fputc('\n', stdout);
    fflush(stdout);
    switch (end) {
    case END_INTERRUPT: fprintf(stderr, "[stopped: %d tokens kept]\n", n); break;
    case END_LIMIT: fprintf(stderr, "[stopped at the -n limit of %d tokens]\n", ch->o->n_predict); break;
    case END_CONTEXT:
        fprintf(stderr, "[context full (%d tokens): the next message drops the oldest turns]\n",
                zili_session_n_ctx(ch->s));
        break;
    case END_EOG:
        if (isatty(STDERR_FILENO))
            fprintf(stderr, "[%d tokens, %.1f tokens/s]\n", n, n / (dt > 0 ? dt : 1e-9));
        break;
    }
    interrupted = 0;
    conv_push(&ch->c, "assistant", reply);
    free(reply);
}

/* ---- commands ----------------------------------------------------------------------------------------------- */

static const char HELP[] =
    "commands:\n"
    "  /clear          forget the conversation (the system message stays)\n"
    "  /system TEXT    set the system message (/system alone shows it)\n"
    "  /save FILE      write the conversation to FILE as JSON messages\n"
    "  /load FILE      replace the conversation with FILE's messages (as /save writes them)\n"
    "  /help           this list\n"
    "Ctrl-C stops a reply (the part so far stays); Ctrl-D quits.\n";

/* Handles a line starting with '/'. */
static void command(chat *ch, const char *line)
{
    const char *sp = strchr(line, ' ');
    const size_t nlen = sp ? (size_t)(sp - line) : strlen(line);
    const char *arg = sp ? sp + 1 : "";
    while (*arg == ' ')
        arg++;
#define IS(name) (nlen == strlen(name) && !strncmp(line, name, nlen))
    char err[768];
    if (IS("/help")) {
        fputs(HELP, stderr);
    } else if (IS("/clear")) {
        conv_clear(&ch->c, true);
        fprintf(stderr, "(conversation cleared)\n");
    } else if (IS("/system")) {
        if (!*arg) {
            fprintf(stderr, has_system(&ch->c) ? "system: %s\n" : "(no system message)\n",
                    has_system(&ch->c) ? ch->c.v[0].content : "");
            return;
        }
        if (has_system(&ch->c))
            conv_remove(&ch->c, 0, 1);
        conv_insert(&ch->c, 0, "system", arg);
        fprintf(stderr, "(system message set)\n");
    } else if (IS("/save")) {
        if (!*arg)
            fprintf(stderr, "zili: /save needs a file name\n");
        else if (!conv_save(&ch->c, arg, err, sizeof err))
            fprintf(stderr, "zili: %s\n", err);
        else
            fprintf(stderr, "(saved %zu messages to %s)\n", ch->c.n, arg);
    } else if (IS("/load")) {
        if (!*arg)
            fprintf(stderr, "zili: /load needs a file name\n");
        else if (!conv_load(ch->m, ch->o->tmpl, arg, &ch->c, err, sizeof err))
            fprintf(stderr, "zili: %s\n", err);
        else
            fprintf(stderr, "(loaded %zu messages from %s)\n", ch->c.n, arg);
    } else {
        fprintf(stderr, "zili: unknown command '%.*s'; /help lists them\n", (int)(nlen > 64 ? 64 : nlen), line);
    }
#undef IS
}

int zl_cli_chat(const zl_cli_opts *opts)
{
    zl_cli_opts o = *opts;
    if (!o.n_predict_set)
        o.n_predict = -1; /* to the end of generation */
    chat ch = {.o = &o};
    ch.m = zl_cli_load_model(&o);
    /* A model without a usable template is refused now, not at the first message. */
    {
        char *text, err[768];
        zili_chat_msg probe = {"user", "hi"};
        if (zili_chat_apply(ch.m, o.tmpl, &probe, 1, true, &text, err, sizeof err) != ZILI_OK)
            zl_cli_die(1, "%s", err);
        free(text);
    }
    ch.s = zl_cli_make_session(ch.m, &o);
    ch.smp = zl_cli_make_sampler(ch.m, &o);
    if (o.system)
        conv_push(&ch.c, "system", o.system);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a read blocked at the prompt returns */
    sigaction(SIGINT, &sa, &old);

    reader r;
    reader_init(&r);
    if (r.el)
        fprintf(stderr, "zili chat: type a message; /help for commands, Ctrl-C stops a reply, Ctrl-D quits.\n");
    for (;;) {
        const char *line;
        const int got = reader_get(&r, &line);
        if (got == 0)
            break;
        if (got < 0)
            continue;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            continue;
        if (*p == '/') {
            command(&ch, p);
            continue;
        }
        conv_push(&ch.c, "user", line);
        answer(&ch);
    }
    if (r.el)
        fputc('\n', stderr);
    sigaction(SIGINT, &old, NULL);
    reader_free(&r);
    conv_free(&ch.c);
    free(ch.cached);
    zili_sampler_free(ch.smp);
    zili_session_free(ch.s);
    zili_model_free(ch.m);
    return 0;
}
