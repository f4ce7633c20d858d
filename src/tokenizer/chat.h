/*
 * chat.h - chat templates, recognised and rendered natively.
 *
 * The tokenizer.chat_template text in a model file is untrusted input: zili never executes it. It recognises
 * which known template family the text is (by distinctive markers) and renders messages with its own C code for
 * that family. An unrecognised template is ZL_EUNSUPPORTED; the user can then name one (--chat-template NAME).
 */
#ifndef ZL_CHAT_H
#define ZL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

typedef enum zl_chat_tmpl {
    ZL_TMPL_NONE = 0,
    ZL_TMPL_CHATML, /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen) */
} zl_chat_tmpl;

typedef struct zl_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* NUL-terminated UTF-8 */
} zl_chat_msg;

/* Recognises a template text (len bytes, not necessarily NUL-terminated). ZL_EUNSUPPORTED if unknown. */
int zl_chat_tmpl_detect(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err);
/* By name ("chatml"). ZL_EINVAL if unknown, message lists the known names. */
int zl_chat_tmpl_from_name(const char *name, zl_chat_tmpl *out, zl_err *err);
const char *zl_chat_tmpl_name(zl_chat_tmpl t);

/* Renders msgs into a malloc'd NUL-terminated prompt string (caller frees). add_assistant: end with the opening
 * of an assistant turn, so the model writes the reply. Roles other than system/user/assistant: ZL_EINVAL. */
int zl_chat_render(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                   zl_err *err);

#endif
