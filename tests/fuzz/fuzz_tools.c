/*
 * fuzz_tools.c - libFuzzer harness for tool calls: the reply parser (server/tools.c) and the tool rendering of chat
 * templates (tokenizer/chat.c).
 *
 * Input layout: byte 0 picks the format (low 2 bits) and forced (bit 2); byte 1 a split point; the rest is a reply.
 * Checks: the reply fed whole, in two pieces at the split and byte by byte gives the same content and calls; every
 * call has a name and arguments that are JSON; content is never longer than the reply. The same bytes, taken as a
 * tools array and as a tool result and call arguments, are rendered by every named template: a rendering either
 * refuses (ZL_EINVAL) or is a string whose spans lie inside it.
 *
 * tests/unit/test_fuzz_regress.c includes this file with ZL_FUZZ_REPLAY defined to replay saved inputs.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/tools.h"
#include "tokenizer/chat.h"

#include "fuzz_check.h"

static void fuzz_tools_run(zl_chat_tool_format f, bool forced, const char *s, size_t n, const size_t *cuts,
                           size_t n_cuts, oai_tool_out *o)
{
    oai_tool_parser p;
    oai_tools_init(&p, f, forced);
    memset(o, 0, sizeof *o);
    size_t at = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        const size_t end = k < n_cuts ? cuts[k] : n;
        oai_tools_feed(&p, s + at, end - at, k == n_cuts, o);
        at = end;
    }
    oai_tools_free(&p);
    FUZZ_CHECK(!o->oom, "tools parser out of memory");
}

static void fuzz_tools_same(const oai_tool_out *a, const oai_tool_out *b)
{
    FUZZ_CHECK(a->n_content == b->n_content && (!a->n_content || !memcmp(a->content, b->content, a->n_content)),
               "tools: content differs between pieces and whole");
    FUZZ_CHECK(a->n_calls == b->n_calls, "tools: calls differ between pieces and whole");
    for (size_t i = 0; i < a->n_calls; i++)
        FUZZ_CHECK(!strcmp(a->calls[i].name, b->calls[i].name) && !strcmp(a->calls[i].args, b->calls[i].args),
                   "tools: a call differs between pieces and whole");
}

static void fuzz_tools_render(const char *text)
{
    static const char *const names[] = {"chatml", "qwen2.5", "qwen3", "llama3", "llama3.1", "gemma", "deepseek-r1",
                                        "deepseek-v3", "mistral", "mistral-v3", "mistral-nemo", "mistral-v7"};
    const zl_chat_call call = {"abcdefghi", "f", text};
    const zl_chat_msg msgs[] = {{.role = "system", .content = "s"},
                                {.role = "user", .content = text},
                                {.role = "assistant", .calls = &call, .n_calls = 1},
                                {.role = "tool", .content = text, .tool_call_id = "abcdefghi"},
                                {.role = "user", .content = "u"}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        zl_chat_tmpl t;
        zl_err e;
        FUZZ_CHECK(zl_chat_tmpl_from_name(names[k], &t, &e) == ZL_OK, "zl_chat_tmpl_from_name");
        const zl_chat_opts o = {.add_assistant = k % 2 == 0, .tools = text};
        for (size_t n = 1; n <= sizeof msgs / sizeof msgs[0]; n += 2) {
            char *out = NULL;
            zl_text_span *sp = NULL;
            size_t nsp = 0;
            const int rc = zl_chat_render_opts(t, msgs, n, &o, &out, &sp, &nsp, &e);
            FUZZ_CHECK(rc == ZL_OK || rc == ZL_EINVAL, "zl_chat_render_opts: unexpected status");
            FUZZ_CHECK((rc == ZL_OK) == (out != NULL), "zl_chat_render_opts: output and status disagree");
            for (size_t i = 0; out && i < nsp; i++)
                FUZZ_CHECK(sp[i].off + sp[i].len <= strlen(out), "zl_chat_render_opts: span out of the prompt");
            free(out);
            free(sp);
        }
    }
}

static void fuzz_tools_input(const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    const zl_chat_tool_format f = (zl_chat_tool_format)(ZL_TOOLFMT_HERMES + (data[0] & 3));
    const bool forced = data[0] & 4;
    const size_t n = size - 2;
    char *s = malloc(n + 1);
    FUZZ_CHECK(s, "malloc");
    memcpy(s, data + 2, n);
    s[n] = 0;
    oai_tool_out whole, two, bytes;
    fuzz_tools_run(f, forced, s, n, NULL, 0, &whole);
    FUZZ_CHECK(whole.n_content <= n, "tools: content longer than the reply");
    for (size_t i = 0; i < whole.n_calls; i++) {
        json_error_t je;
        json_t *v = json_loads(whole.calls[i].args, JSON_DECODE_ANY, &je);
        FUZZ_CHECK(v && whole.calls[i].name[0], "tools: a call without a name or with arguments that are not JSON");
        json_decref(v);
    }
    const size_t cut = n ? data[1] % (n + 1) : 0;
    fuzz_tools_run(f, forced, s, n, &cut, 1, &two);
    fuzz_tools_same(&two, &whole);
    if (n <= 4096) {
        size_t *all = malloc((n + 1) * sizeof *all);
        FUZZ_CHECK(all, "malloc");
        for (size_t i = 0; i < n; i++)
            all[i] = i + 1;
        fuzz_tools_run(f, forced, s, n, all, n ? n - 1 : 0, &bytes);
        fuzz_tools_same(&bytes, &whole);
        oai_tool_out_free(&bytes);
        free(all);
    }
    oai_tool_out_free(&whole);
    oai_tool_out_free(&two);
    if (strlen(s) == n) /* the rendering takes NUL-terminated text */
        fuzz_tools_render(s);
    free(s);
}

#ifndef ZL_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tools_input(data, size);
    return 0;
}
#endif
