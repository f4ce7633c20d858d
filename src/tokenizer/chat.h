/*
 * chat.h - chat templates, recognised and rendered natively.
 *
 * The tokenizer.chat_template text in a model file is untrusted input: zili never executes it. It recognises
 * which known template family the text is (by distinctive markers) and renders messages with its own C code for
 * that family. An unrecognised template is ZL_EUNSUPPORTED; the user can then name one (--chat-template NAME).
 *
 * Recognised families:
 *   ChatML ("<|im_start|>" and "<|im_end|>" in the text): <|im_start|>ROLE\nCONTENT<|im_end|>\n per message,
 *   "<|im_start|>assistant\n" to open the reply. Variants (SmolLM2, Qwen2) that insert a fixed system message
 *   when the conversation does not start with one are recognised by a strict, bounded match of the literal
 *   '<|im_start|>system\n...<|im_end|>\n' string in the template (plus the test on messages[0]'s role); the
 *   fixed text is copied into the zl_chat_tmpl and rendered the same way.
 *
 * A zl_chat_tmpl is a plain value (no allocation); it may be copied and shared freely.
 */
#ifndef ZL_CHAT_H
#define ZL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

typedef enum zl_chat_kind {
    ZL_TMPL_NONE = 0,
    ZL_TMPL_CHATML, /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen) */
} zl_chat_kind;

enum { ZL_CHAT_SYSTEM_MAX = 1024 }; /* room for the default system text, NUL included */

typedef struct zl_chat_tmpl {
    zl_chat_kind kind;
    /* Inserted as a first system message when the conversation has messages and the first is not "system".
     * NUL-terminated UTF-8; empty when the template has none. */
    char default_system[ZL_CHAT_SYSTEM_MAX];
} zl_chat_tmpl;

typedef struct zl_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* NUL-terminated UTF-8 */
} zl_chat_msg;

/* Recognises a template text (len bytes, not necessarily NUL-terminated). ZL_EUNSUPPORTED if unknown. */
int zl_chat_tmpl_detect(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err);
/* By name ("chatml": plain ChatML, no default system message). ZL_EINVAL if unknown; the message lists the
 * known names. */
int zl_chat_tmpl_from_name(const char *name, zl_chat_tmpl *out, zl_err *err);
/* Static name of the family ("chatml"), or "none". */
const char *zl_chat_tmpl_name(zl_chat_tmpl t);

/* Renders msgs into a malloc'd NUL-terminated prompt string (caller frees). add_assistant: end with the opening
 * of an assistant turn, so the model writes the reply. Roles other than system/user/assistant, or NULL
 * role/content: ZL_EINVAL. */
int zl_chat_render(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                   zl_err *err);

#endif
