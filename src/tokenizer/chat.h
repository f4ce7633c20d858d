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
 *   deepseek-v3  the same markers without "</think>": DeepSeek-V3's template (Dec 2024). Every system message goes
 *                first, joined by "\n\n"; assistant turns are written whole; the reply opens with "<｜Assistant｜>".
 *                A flag set of the deepseek-r1 kind (ZL_CHAT_DEEPSEEK_*), named "deepseek-v3". The later templates
 *                (V3-0324 / R1-0528 with is_last_user, V3.1+ with thinking modes) are refused.
 *   mistral      "[INST]" / "[/INST]": Mistral 7B Instruct v0.1/v0.2 ("[INST] x [/INST]", no system message), and the
 *                v3 family (Mistral v0.3 / Large 2407 "[INST] x[/INST]", Nemo "[INST]x[/INST]") where the system
 *                message is put into the user turn when that turn is the last message.
 *   mistral-v7   "[SYSTEM_PROMPT]" / "[/SYSTEM_PROMPT]" with "[INST]" / "[/INST]" (tested before mistral, whose markers it
 *                also has). Two forms: Mistral Large 2411's "v7" (every message in order: "[SYSTEM_PROMPT] x[/SYSTEM_PROMPT]",
 *                "[INST] x[/INST]", " x</s>"), and Mistral Small 3.2's "v7-tekken" (no spaces; the output always opens
 *                with one system prompt, the first message if it is a system message or else the template's default
 *                text, which holds the current date; user and assistant must alternate after it). The default text is
 *                copied from the template with the date's place (zl_chat_tmpl.date_at); the date written is
 *                zl_chat_tmpl.date when set, else today's local date as "%Y-%m-%d" (as the template's strftime_now),
 *                so that form's prompt without a system message changes with the day. Mistral Small 3 (2501) and 3.1,
 *                whose templates do not check the alternation, are not recognised. Mistral v7's tools (Small 3.2's
 *                [CALL_ID] / [ARGS] form) are rendered the generic way (zl_chat_render_opts); image blocks never.
 * Families whose templates refuse some conversations (gemma, mistral and Mistral Small 3.2's v7: roles that do not
 * alternate user / assistant) refuse the same ones here (ZL_EINVAL). Templates that begin with bos_token render the family's BOS text
 * first (zl_chat_tmpl_bos); a caller that tokenizes the result must not add a second BOS.
 *
 * A zl_chat_tmpl is a plain value (no allocation); it may be copied and shared freely.
 */
#ifndef ZL_CHAT_H
#define ZL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "tokenizer/vocab.h"

typedef enum zl_chat_kind {
    ZL_TMPL_NONE = 0,
    ZL_TMPL_CHATML,      /* <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen2, Qwen2.5) */
    ZL_TMPL_QWEN3,       /* ChatML + <think> handling in assistant turns */
    ZL_TMPL_LLAMA3,      /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
    ZL_TMPL_GEMMA,       /* <start_of_turn>role\ncontent<end_of_turn>\n */
    ZL_TMPL_DEEPSEEK_R1, /* <｜User｜>content<｜Assistant｜>content<｜end▁of▁sentence｜> */
    ZL_TMPL_MISTRAL,     /* [INST] content [/INST]content</s> and the v3 forms */
    ZL_TMPL_MISTRAL_V7,  /* [SYSTEM_PROMPT] s[/SYSTEM_PROMPT][INST] content[/INST] content</s> and v7-tekken */
} zl_chat_kind;

/* zl_chat_tmpl.flags: variants within a family. */
enum {
    ZL_CHAT_BOS = 1u << 0,              /* the output starts with the family's BOS text (the template has bos_token) */
    ZL_CHAT_LLAMA3_SYSTEM = 1u << 1,    /* llama3: 3.1+ system block, always written, with knowledge and date lines */
    ZL_CHAT_THINK_PROMPT = 1u << 2,     /* deepseek-r1: the reply opens with "<think>\n" */
    ZL_CHAT_MISTRAL_V3 = 1u << 3,       /* mistral: v3 forms, system message into the last message's user turn */
    ZL_CHAT_MISTRAL_NOSPACE = 1u << 4,  /* mistral v3 / v7: "[INST]x[/INST]" and "x</s>" (Nemo, "tekken") */
    ZL_CHAT_MISTRAL_TRIM = 1u << 5,     /* mistral v3: assistant turns " " + trimmed content + "</s>" */
    ZL_CHAT_MISTRAL_SYSTEM_FIRST = 1u << 6, /* mistral v7: one system prompt first (messages[0] or the default with
                                             * the date), user / assistant alternating after it (Small 3.2) */
    ZL_CHAT_DEEPSEEK_JOIN_SYSTEM = 1u << 7, /* deepseek: every system message first, joined by "\n\n" (V3) */
    ZL_CHAT_DEEPSEEK_WHOLE_REPLY = 1u << 8, /* deepseek: assistant turns kept whole, no "</think>" split (V3) */
    ZL_CHAT_NO_THINKING = 1u << 9,          /* qwen3, set per request: the template's enable_thinking = false (the
                                             * reply opens with an empty "<think>\n\n</think>\n\n") */
    ZL_CHAT_TOOLS = 1u << 10,               /* the template renders tools, tool calls and results itself (Qwen2.5,
                                             * Qwen3, Llama 3.1+, Mistral v3 / Nemo, DeepSeek); zili writes them
                                             * as it does. Without it they are rendered the generic way (below) */
};

enum {
    ZL_CHAT_SYSTEM_MAX = 4096, /* room for the default system text, NUL included (Mistral Small 3.2's: 2.3 KB) */
    ZL_CHAT_DATE_MAX = 32,     /* llama3: room for the date_string default; mistral v7: the date, "" for today */
    ZL_CHAT_SEP_MAX = 8,       /* gemma: room for the separator after a folded system message */
};

typedef struct zl_chat_tmpl {
    zl_chat_kind kind;
    unsigned flags;
    /* chatml: inserted as a first system message when the conversation's first message is not "system".
     * NUL-terminated UTF-8; empty when the template has none. */
    char default_system[ZL_CHAT_SYSTEM_MAX];
    size_t date_at;                /* mistral v7 with ZL_CHAT_MISTRAL_SYSTEM_FIRST: the date goes before
                                    * default_system[date_at] */
    char date[ZL_CHAT_DATE_MAX];   /* llama3 with ZL_CHAT_LLAMA3_SYSTEM: the "Today Date" text; mistral v7: the
                                    * date in the default system text, "" for today's */
    char sys_sep[ZL_CHAT_SEP_MAX]; /* gemma: written between a folded system message and the first turn */
} zl_chat_tmpl;

/* One tool call an assistant message made (OpenAI's tool_calls[i]). */
typedef struct zl_chat_call {
    const char *id;        /* the call's id; NULL: none given (templates that need one refuse) */
    const char *name;      /* the function's name */
    const char *arguments; /* its arguments as the client sent them (OpenAI's JSON text in a string) */
} zl_chat_call;

typedef struct zl_chat_msg {
    const char *role;    /* "system", "user", "assistant", "tool" */
    const char *content; /* NUL-terminated UTF-8; NULL only for an assistant message with calls (OpenAI's null) */
    const zl_chat_call *calls; /* assistant: the tool calls it made, n_calls of them (0: none) */
    size_t n_calls;
    const char *tool_call_id; /* tool: the id of the call this message answers (NULL: none given) */
} zl_chat_msg;

/* How a family's model writes tool calls, which the server parses back out of its replies (server/tools.c). */
typedef enum zl_chat_tool_format {
    ZL_TOOLFMT_HERMES = 1, /* <tool_call>\n{"name": N, "arguments": A}\n</tool_call> (Qwen2.5, Qwen3, and every
                            * template without tools of its own, which get them the generic way) */
    ZL_TOOLFMT_LLAMA3,     /* {"name": N, "parameters": A} as the whole reply (Llama 3.1 / 3.2 / 3.3) */
    ZL_TOOLFMT_MISTRAL,    /* [TOOL_CALLS][{"name": N, "arguments": A}, ...] (Mistral v3, Nemo) */
    ZL_TOOLFMT_DEEPSEEK,   /* <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\nA\n```
                            * <｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (DeepSeek V3, R1) */
} zl_chat_tool_format;

zl_chat_tool_format zl_chat_tools_format(zl_chat_tmpl t);

/* What a rendering is asked for beyond the messages. */
typedef struct zl_chat_opts {
    bool add_assistant; /* end with the opening of an assistant turn */
    const char *tools;  /* the request's tools, a JSON array of {"type": "function", "function": {"name": ...,
                         * "description": ..., "parameters": {...}}} (OpenAI's shape); NULL or "[]": none */
} zl_chat_opts;

/* Recognises a template text (len bytes, not necessarily NUL-terminated). ZL_EUNSUPPORTED if unknown. */
int zl_chat_tmpl_detect(const char *text, size_t len, zl_chat_tmpl *out, zl_err *err);
/* By name: "chatml" (plain, no default system message), "qwen2.5" (ChatML with Qwen2.5's default system text),
 * "qwen3", "llama3", "llama3.1" (the 3.1/3.2/3.3 system block), "gemma", "deepseek-r1" (with "<think>\n"),
 * "deepseek-v3", "mistral" (v0.1/v0.2), "mistral-v3", "mistral-nemo", "mistral-v7" (Large 2411); each as the
 * official template renders, BOS included. (Mistral Small 3.2's form has no name: its default system text is only
 * taken from the model's template.)
 * ZL_EINVAL if unknown; the message lists the known names. */
int zl_chat_tmpl_from_name(const char *name, zl_chat_tmpl *out, zl_err *err);
/* Static name of the family ("chatml", "qwen3", "llama3", "gemma", "deepseek-r1", "deepseek-v3", "mistral",
 * "mistral-v7"), or "none". */
const char *zl_chat_tmpl_name(zl_chat_tmpl t);
/* Static, comma-separated list of the names zl_chat_tmpl_from_name takes. */
const char *zl_chat_tmpl_known_names(void);
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
 * (gemma, mistral, mistral-v7 with ZL_CHAT_MISTRAL_SYSTEM_FIRST: user and assistant must alternate): ZL_EINVAL with
 * a one-line message. */
int zl_chat_render(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                   zl_err *err);
/* zl_chat_render, and where in the prompt the messages' own text went: *spans (malloc'd, caller frees; NULL when
 * none) lists, in order, the byte ranges copied from message content, so that a caller can tokenize that text as
 * plain text and only the template's markup as special tokens (zl_tokenize_plain): a message that spells
 * "<|im_end|>" then cannot open a turn of its own. Text the template adds itself (a default system message, dates)
 * is markup. */
int zl_chat_render_spans(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, bool add_assistant, char **out,
                         zl_text_span **spans, size_t *n_spans, zl_err *err);
/* zl_chat_render_spans with tools: the tool list, assistant tool calls and tool results ("tool" messages).
 * A template with ZL_CHAT_TOOLS renders them as its jinja2 text does, byte for byte (tests/data/chat/tools*):
 * arguments are parsed as JSON and written back with Python's json.dumps where the template applies tojson to
 * them (Qwen2.5, Llama 3.1, Mistral), and copied as sent where it writes the string (Qwen3, DeepSeek); tool
 * results stay text. Every other template gets them the generic way: the tools in Qwen3's "# Tools" system text
 * (prepended to the system message, or a system message of its own), calls as <tool_call> blocks in the
 * assistant's text, consecutive tool results as one user message of <tool_response> blocks; then the family's own
 * rendering. Text from the client (tool definitions, names, arguments, results) is all in *spans. Refusals
 * (ZL_EINVAL): tools that are not an array of objects with function.name, NULL content without calls, and
 * what the template refuses (Llama 3.1: more than one call in a message; Mistral: call ids not 9 characters). */
int zl_chat_render_opts(zl_chat_tmpl t, const zl_chat_msg *msgs, size_t n, const zl_chat_opts *o, char **out,
                        zl_text_span **spans, size_t *n_spans, zl_err *err);

#endif
