/*
 * fuzz_oai.c - libFuzzer harness for the HTTP request-body path without a socket: arbitrary bytes ->
 * oai_parse_body (JSON parse as the server does it, then validation, chat rendering and tokenization), as a
 * /v1/chat/completions body and as a /v1/completions body.
 *
 * The model (ZILI_FUZZ_MODEL, default SmolLM2 in models/) is loaded once; its chat template as the server picks
 * it. A small context (256) so that the context-length checks are reached. Every accepted request must satisfy
 * what the engine relies on: 0 < n_prompt < n_ctx, every prompt id and logit_bias id in the vocabulary,
 * 1 <= max_tokens <= the server maximum, always set, sampling parameters in their documented ranges.
 *
 * tests/unit/test_fuzz_regress.c includes this file with ZL_FUZZ_REPLAY defined to replay saved inputs.
 */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "sample/grammar.h"
#include "server/oai.h"
#include "tokenizer/chat.h"

#include "fuzz_check.h"

enum { FUZZ_OAI_CTX = 256 };

typedef struct fuzz_oai_env {
    zl_model *model;
    zl_chat_tmpl tmpl;
} fuzz_oai_env;

/* Loads the model and picks its chat template the way `zili serve` does (the file's, else plain ChatML). */
static int fuzz_oai_setup(const char *path, fuzz_oai_env *env)
{
    zl_err err = {{0}};
    zl_model_opts o = {.use_mmap = true, .use_mlock = false};
    if (zl_model_load(path, &o, &env->model, &err) != ZL_OK) {
        fprintf(stderr, "fuzz_oai: %s\n", err.msg);
        return -1;
    }
    gguf_str ts;
    if (!gguf_get_str(zl_model_gguf(env->model), "tokenizer.chat_template", &ts, NULL) ||
        zl_chat_tmpl_detect(ts.ptr, ts.len, &env->tmpl, &err) != ZL_OK)
        zl_chat_tmpl_from_name("chatml", &env->tmpl, &err);
    return 0;
}

static void fuzz_oai_check(const fuzz_oai_env *env, const oai_request *r)
{
    const int32_t nv = zl_model_hparams(env->model)->n_vocab;
    FUZZ_CHECK(r->n_prompt > 0 && r->n_prompt < FUZZ_OAI_CTX, "accepted prompt length out of (0, n_ctx)");
    for (size_t i = 0; i < r->n_prompt; i++)
        FUZZ_CHECK(r->prompt[i] >= 0 && r->prompt[i] < nv, "accepted prompt id out of the vocabulary");
    const zl_req_params *rp = &r->rp;
    FUZZ_CHECK(rp->max_tokens >= 1 && rp->max_tokens <= FUZZ_OAI_CTX / 2, "max_tokens not within the server's default and maximum");
    FUZZ_CHECK(rp->n_bias >= 0 && rp->n_bias <= nv, "more logit_bias entries than tokens");
    for (int32_t i = 0; i < rp->n_bias; i++)
        FUZZ_CHECK(rp->bias[i].token >= 0 && rp->bias[i].token < nv, "accepted logit_bias id out of the vocabulary");
    FUZZ_CHECK(rp->n_stop >= 0 && rp->n_stop <= ZL_REQ_MAX_STOP, "too many stop strings");
    for (int32_t i = 0; i < rp->n_stop; i++)
        FUZZ_CHECK(rp->stop[i] && rp->stop[i][0], "empty stop string accepted");
    const zl_sampler_params *sp = &rp->sampling;
    FUZZ_CHECK(sp->temp >= 0 && sp->temp <= 2 && sp->top_p >= 0 && sp->top_p <= 1 && sp->min_p >= 0 &&
                   sp->min_p <= 1 && sp->top_k >= 0,
               "accepted sampling parameter out of range");
    FUZZ_CHECK(r->top_logprobs >= 0 && r->top_logprobs <= ZL_REQ_MAX_TOP_LOGPROBS, "top_logprobs out of range");
}

static void fuzz_oai_input(const fuzz_oai_env *env, const uint8_t *data, size_t size)
{
    static const oai_kind kinds[] = {OAI_CHAT, OAI_COMPLETION};
    for (int k = 0; k < 2; k++) {
        oai_request r;
        oai_error e;
        /* both ways of tokenizing chat text: plain (the default) and with its special tokens parsed */
        const oai_limits lim = {.n_ctx = FUZZ_OAI_CTX, .max_tokens = FUZZ_OAI_CTX / 2,
                                .special_in_content = size > 0 && (data[0] & 1)};
        const int rc = oai_parse_body(env->model, &env->tmpl, kinds[k], (const char *)data, size, &lim, 1, &r, &e);
        if (rc != ZL_OK) {
            FUZZ_CHECK(rc == ZL_EINVAL && e.msg[0], "oai_parse_body refused without a message");
            FUZZ_CHECK(memchr(e.msg, 0, sizeof e.msg) && memchr(e.param, 0, sizeof e.param), "unterminated error");
            FUZZ_CHECK(!r.prompt && !r.root && !r.bias, "a refused request still holds memory");
            continue;
        }
        fuzz_oai_check(env, &r);
        if (r.rp.grammar) { /* a grammar made from a json_schema (or the built-in one) must parse */
            zl_grammar *g = NULL;
            zl_err gerr;
            FUZZ_CHECK(zl_grammar_parse(r.rp.grammar, r.rp.grammar_len, &g, &gerr) == ZL_OK || !r.grammar,
                       "a json_schema made a grammar that does not parse");
            zl_grammar_free(g);
        }
        oai_request_free(&r);
    }
}

#ifndef ZL_FUZZ_REPLAY
static fuzz_oai_env fuzz_env;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *p = getenv("ZILI_FUZZ_MODEL");
    if (fuzz_oai_setup(p && *p ? p : "models/SmolLM2-135M-Instruct.Q4_1.gguf", &fuzz_env) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_oai_input(&fuzz_env, data, size);
    return 0;
}
#endif
