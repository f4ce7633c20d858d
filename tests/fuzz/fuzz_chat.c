/*
 * fuzz_chat.c - libFuzzer harness for chat-template recognition and rendering.
 *
 * Input layout: fields separated by NUL bytes. Field 0 is a template text (as tokenizer.chat_template would hold
 * it); the rest are (role, content) pairs. A one-byte role field picks a known role (system / user / assistant /
 * "developer") so that the renderer is reached often; longer ones are used as given.
 * Checks: recognition never reads past the text (the template is handed over in an exactly sized buffer), its
 * extracted texts are NUL-terminated and fit, and a refusal leaves no kind; rendering (with the detected template
 * and with every named one) refuses unknown roles and empty conversations, refuses only gemma / mistral /
 * mistral-v7 role orders otherwise, starts with the family's BOS text, stays within a bound made from its messages,
 * and for ChatML returns exactly the ChatML length, computed here independently.
 *
 * tests/unit/test_fuzz_regress.c includes this file with ZL_FUZZ_REPLAY defined to replay saved inputs.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/chat.h"

#include "fuzz_check.h"

enum { FUZZ_CHAT_MAX_MSGS = 64 };

/* Every --chat-template name: each input's messages are rendered with all of them too. */
static const char *const fuzz_chat_names[] = {"chatml", "qwen2.5", "qwen3", "llama3", "llama3.1", "gemma",
                                              "deepseek-r1", "deepseek-v3", "mistral", "mistral-v3", "mistral-nemo",
                                              "mistral-v7"};

static void fuzz_chat_render(const zl_chat_tmpl *t, const zl_chat_msg *msgs, size_t n, bool add_assistant)
{
    char *out = NULL;
    zl_err err = {{0}};
    bool known = true;
    for (size_t i = 0; i < n; i++)
        known = known && (!strcmp(msgs[i].role, "system") || !strcmp(msgs[i].role, "user") ||
                          !strcmp(msgs[i].role, "assistant") || !strcmp(msgs[i].role, "tool"));
    const int rc = zl_chat_render(*t, msgs, n, add_assistant, &out, &err);
    if (!known || n == 0) {
        FUZZ_CHECK(rc == ZL_EINVAL && !out, "zl_chat_render accepted an unknown role or no messages");
        return;
    }
    /* gemma and the mistrals refuse what their templates refuse (roles out of order); the others render anything. */
    if (t->kind == ZL_TMPL_GEMMA || t->kind == ZL_TMPL_MISTRAL || t->kind == ZL_TMPL_MISTRAL_V7) {
        FUZZ_CHECK(rc == ZL_OK || rc == ZL_EINVAL, "zl_chat_render: unexpected status");
        FUZZ_CHECK((rc == ZL_OK) == (out != NULL), "zl_chat_render: output and status disagree");
        if (rc != ZL_OK)
            return;
    }
    FUZZ_CHECK(rc == ZL_OK && out, "zl_chat_render refused known roles");
    const char *bos = zl_chat_tmpl_bos(*t);
    FUZZ_CHECK(strncmp(out, bos, strlen(bos)) == 0, "zl_chat_render: output does not start with the BOS text");
    /* No family writes a message twice: the output is at most every content once (the system message may move,
     * not repeat), the default system text and 200 bytes of markup per message and for the opening. */
    size_t bound = strlen(t->default_system) + 200;
    for (size_t i = 0; i < n; i++) /* a tool result may go through tojson (Llama 3.1): 6 bytes for a control one */
        bound += (strcmp(msgs[i].role, "tool") ? 1 : 6) * strlen(msgs[i].content) + 200;
    FUZZ_CHECK(strlen(out) <= bound, "zl_chat_render: output longer than its messages can make");
    bool tool_msgs = false;
    for (size_t i = 0; i < n; i++)
        tool_msgs |= !strcmp(msgs[i].role, "tool");
    if (t->kind == ZL_TMPL_CHATML && !(t->flags & ZL_CHAT_TOOLS) && !tool_msgs) {
        /* <|im_start|>ROLE\nCONTENT<|im_end|>\n per message (12 + 1 + 10 + 1 bytes of markup). */
        size_t want = 0;
        if (t->default_system[0] && strcmp(msgs[0].role, "system"))
            want += strlen("<|im_start|>system\n") + strlen(t->default_system) + strlen("<|im_end|>\n");
        for (size_t i = 0; i < n; i++)
            want += 24 + strlen(msgs[i].role) + strlen(msgs[i].content);
        if (add_assistant)
            want += strlen("<|im_start|>assistant\n");
        FUZZ_CHECK(strlen(out) == want, "zl_chat_render: output length is not the ChatML length");
    }
    free(out);
}

static void fuzz_chat_input(const uint8_t *data, size_t size)
{
    /* Field 0, the template, in its own exactly sized buffer (no NUL after it). */
    const uint8_t *nul = memchr(data, 0, size);
    const size_t tlen = nul ? (size_t)(nul - data) : size;
    char *tmpl_text = malloc(tlen ? tlen : 1);
    FUZZ_CHECK(tmpl_text, "malloc");
    memcpy(tmpl_text, data, tlen);
    zl_chat_tmpl t;
    zl_err err = {{0}};
    const int rc = zl_chat_tmpl_detect(tmpl_text, tlen, &t, &err);
    free(tmpl_text);
    FUZZ_CHECK(rc == ZL_OK || rc == ZL_EUNSUPPORTED, "zl_chat_tmpl_detect: unexpected status");
    FUZZ_CHECK(memchr(t.default_system, 0, sizeof t.default_system) != NULL, "default system text not terminated");
    FUZZ_CHECK(memchr(t.date, 0, sizeof t.date) != NULL, "date text not terminated");
    FUZZ_CHECK(memchr(t.sys_sep, 0, sizeof t.sys_sep) != NULL, "system separator not terminated");
    FUZZ_CHECK(rc != ZL_OK || (t.kind > ZL_TMPL_NONE && t.kind <= ZL_TMPL_MISTRAL_V7),
               "recognised template without a kind");
    FUZZ_CHECK(rc == ZL_OK || t.kind == ZL_TMPL_NONE, "refused template left a kind");
    if (rc != ZL_OK)
        FUZZ_CHECK(zl_chat_tmpl_from_name("chatml", &t, &err) == ZL_OK, "zl_chat_tmpl_from_name(chatml)");

    /* The rest: NUL-terminated fields, copied so that each string is its own allocation. */
    static const char *const roles[] = {"system", "user", "assistant", "developer"};
    char *fields[2 * FUZZ_CHAT_MAX_MSGS];
    size_t nf = 0;
    size_t at = nul ? tlen + 1 : size;
    while (at < size && nf < 2 * FUZZ_CHAT_MAX_MSGS) {
        const uint8_t *e = memchr(data + at, 0, size - at);
        const size_t l = e ? (size_t)(e - (data + at)) : size - at;
        fields[nf] = malloc(l + 1);
        FUZZ_CHECK(fields[nf], "malloc");
        memcpy(fields[nf], data + at, l);
        fields[nf][l] = 0;
        nf++;
        at += l + 1;
    }
    zl_chat_msg msgs[FUZZ_CHAT_MAX_MSGS];
    size_t n = 0;
    for (size_t i = 0; i + 1 < nf; i += 2) {
        msgs[n] = (zl_chat_msg){.role = strlen(fields[i]) == 1 ? roles[(unsigned char)fields[i][0] % 4] : fields[i],
                                .content = fields[i + 1]};
        n++;
    }
    fuzz_chat_render(&t, msgs, n, true);
    fuzz_chat_render(&t, msgs, n, false);
    for (size_t k = 0; k < sizeof fuzz_chat_names / sizeof fuzz_chat_names[0]; k++) {
        zl_chat_tmpl named;
        FUZZ_CHECK(zl_chat_tmpl_from_name(fuzz_chat_names[k], &named, &err) == ZL_OK, "zl_chat_tmpl_from_name");
        fuzz_chat_render(&named, msgs, n, k % 2 == 0);
    }
    for (size_t i = 0; i < nf; i++)
        free(fields[i]);
}

#ifndef ZL_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_chat_input(data, size);
    return 0;
}
#endif
