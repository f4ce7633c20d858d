/*
 * chat.h - chat templates, recognised and rendered natively.
 *
 * The tokenizer.chat_template text in a model file is untrusted input: zili never executes it. It recognises
 * which known template family the text is (by distinctive markers) and renders messages with its own C code for
 * that family. An unrecognised template is ZL_EUNSUPPORTED; the user can then name one (--chat-template NAME).
 *
 * Recognised families (each by a few fixed strings of its official template; see chat.c for the exact markers).
 * Every renderer reproduces, byte for byte, what the family's template renders with jinja2 (tests/data/chat):
 *   chatml       "<|im_start|>" + "<|im_end|>": <|im_start|>ROLE\nCONTENT<|im_end|>\n per message,
 *                "<|im_start|>assistant\n" to open the reply. Variants (SmolLM2, Qwen2, Qwen2.5) that insert a fixed
 *                system message when the conversation does not start with one are recognised by a strict, bounded
 *                match of the literal '<|im_start|>system\n...<|im_end|>\n' string in the template (plus the test on
 *                messages[0]'s role); the fixed text is copied into the zl_chat_tmpl and rendered the same way.
 *   qwen3        ChatML whose template splits "<think>" reasoning out of assistant turns (Qwen3): reasoning is kept
 *                only in assistant turns after the last real user query.
 *   llama3       "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>": Llama 3 (contents trimmed), and 3.1 / 3.2 /
 *                3.3 whose templates always open with a system block "Cutting Knowledge Date: December 2023\nToday
 *                Date: D\n\n" + the system message; D is the template's default date_string (zili never puts the
 *                current date in, so a prompt renders the same every day).
 *   gemma        "<start_of_turn>", "<end_of_turn>": Gemma 2 and 3, role "assistant" written "model", a leading system
 *                message folded into the first turn (Gemma 3's way; Gemma 2's template refuses system messages).
 *   deepseek-r1  "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "</think>": the DeepSeek R1 distills; the last
 *                system message goes first, assistant turns lose everything up to their last "</think>", and the
 *                newer templates open the reply with "<think>\n".
 *   mistral      "[INST]" / "[/INST]": Mistral 7B Instruct v0.1/v0.2 ("[INST] x [/INST]", no system message), and the
 *                v3 family (Mistral v0.3 / Large 2407 "[INST] x[/INST]", Nemo "[INST]x[/INST]") where the system
 *                message is put into the user turn when that turn is the last message.
 * Families whose templates refuse some conversations (gemma and mistral: roles that do not alternate user /
 * assistant) refuse the same ones here (ZL_EINVAL). Templates that begin with bos_token render the family's BOS text
 * first (zl_chat_tmpl_bos); a caller that tokenizes the result must not add a second BOS.
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
    ZL_TMPL_CHATML,      /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen2, Qwen2.5) */
    ZL_TMPL_QWEN3,       /* ChatML + <think> handling in assistant turns */
    ZL_TMPL_LLAMA3,      /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    ZL_TMPL_GEMMA,       /* <start_of_turn>role\ncontent<end_of_turn>\n */
    ZL_TMPL_DEEPSEEK_R1, /* <｜User｜>content<｜Assistant｜>content<｜end▁of▁sentence｜> */
    ZL_TMPL_MISTRAL,     /* [INST] content [/INST]content</s> and the v3 forms */
} zl_chat_kind;

/* zl_chat_tmpl.flags: variants within a family. */
enum {
    ZL_CHAT_BOS = 1u << 0,              /* the output starts with the family's BOS text (the template has bos_token) */
    ZL_CHAT_LLAMA3_SYSTEM = 1u << 1,    /* llama3: 3.1+ system block, always written, with knowledge and date lines */
    ZL_CHAT_THINK_PROMPT = 1u << 2,     /* deepseek-r1: the reply opens with "<think>\n" */
    ZL_CHAT_MISTRAL_V3 = 1u << 3,       /* mistral: v3 forms, system message into the last message's user turn */
    ZL_CHAT_MISTRAL_NOSPACE = 1u << 4,  /* mistral v3: "[INST]x[/INST]" and "x</s>" (Nemo, "tekken") */
    ZL_CHAT_MISTRAL_TRIM = 1u << 5,     /* mistral v3: assistant turns " " + trimmed content + "</s>" */
};

enum {
    ZL_CHAT_SYSTEM_MAX = 1024, /* room for the default system text, NUL included */
    ZL_CHAT_DATE_MAX = 32,     /* llama3: room for the date_string default */
    ZL_CHAT_SEP_MAX = 8,       /* gemma: room for the separator after a folded system message */
};

typedef struct zl_chat_tmpl {
    zl_chat_kind kind;
    unsigned flags;
    /* chatml: inserted as a first system message when the conversation's first message is not "system".
     * NUL-terminated UTF-8; empty when the template has none. */
    char default_system[ZL_CHAT_SYSTEM_MAX];
    char date[ZL_CHAT_DATE_MAX];   /* llama3 with ZL_CHAT_LLAMA3_SYSTEM: the "Today Date" text */
    char sys_sep[ZL_CHAT_SEP_MAX]; /* gemma: written between a folded system message and the first turn */
} zl_chat_tmpl;

typedef struct zl_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* NUL-terminated UTF-8 */
} zl_chat_msg;

/* Recognises a template text (len bytes, not necessarily NUL-terminated). ZL_EUNSUPPORTED if unknown. */
int zl_chat_tmpl_detect(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err);
/* By name: "chatml" (plain, no default system message), "qwen2.5" (ChatML with Qwen2.5's default system text),
 * "qwen3", "llama3", "llama3.1" (the 3.1/3.2/3.3 system block), "gemma", "deepseek-r1" (with "<think>\n"),
 * "mistral" (v0.1/v0.2), "mistral-v3", "mistral-nemo"; each as the official template renders, BOS included.
 * ZL_EINVAL if unknown; the message lists the known names. */
int zl_chat_tmpl_from_name(const char *name, zl_chat_tmpl *out, zl_err *err);
/* Static name of the family ("chatml", "qwen3", "llama3", "gemma", "deepseek-r1", "mistral"), or "none". */
const char *zl_chat_tmpl_name(zl_chat_tmpl t);
/* Static BOS text the rendered prompt begins with ("<|begin_of_text|>", "<bos>", ...), or "" when it has none.
 * A caller that tokenizes the prompt with its special tokens parsed gets the BOS token from this text, so it must
 * not add one itself (or it strips this prefix and lets the tokenizer add BOS). */
const char *zl_chat_tmpl_bos(zl_chat_tmpl t);
/* For a caller whose tokenizer prepends BOS itself (tokenizer_adds_bos): removes t's BOS text from the start of a
 * rendered prompt, in place, so the tokens hold one BOS, not two (as llama.cpp does). Otherwise leaves it. */
void zl_chat_strip_bos(zl_chat_tmpl t, bool tokenizer_adds_bos, char *prompt);

/* Renders msgs into a malloc'd NUL-terminated prompt string (caller frees). add_assistant: end with the opening
 * of an assistant turn, so the model writes the reply (the mistral templates have none and ignore it). No
 * messages, roles other than system/user/assistant, NULL role/content, or an order the family's template refuses
 * (gemma, mistral: user and assistant must alternate): ZL_EINVAL with a one-line message. */
int zl_chat_render(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                   zl_err *err);

#endif
