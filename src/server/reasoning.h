/*
 * reasoning.h - a reasoning model's "<think>...</think>" text split out of its reply, as it streams.
 *
 * Qwen3 and the DeepSeek R1 distills write their reasoning first, between "<think>" and "</think>", then the
 * answer. OpenAI-style clients (vLLM, llama.cpp's server) get the first as `reasoning_content` and the second as
 * `content`. The splitter sees the reply in pieces of any size (the engine's chunks) and gives the same split as
 * for the whole text at once:
 *   - a reply that starts (after nothing but whitespace) with "<think>" is reasoning until "</think>"; with
 *     start_inside (the prompt already opened the block: DeepSeek R1's "<｜Assistant｜><think>\n") it is reasoning
 *     from its first byte;
 *   - the reasoning is the text between the tags as the model wrote it; the content is everything after
 *     "</think>" less its leading whitespace, or the whole reply when it does not start with "<think>";
 *   - a reply that ends inside the reasoning leaves it all in reasoning (the answer never came).
 * Bytes that might still become a tag are held back until they cannot (at most 8), and flushed at the end.
 *
 * Threads: a value owned by one request's connection thread.
 */
#ifndef ZL_REASONING_H
#define ZL_REASONING_H

#include <stdbool.h>
#include <stddef.h>

typedef struct oai_think {
    int state;      /* THINK_START, THINK_IN, THINK_AFTER (reasoning.c) */
    bool skip_ws;   /* content: leading whitespace after "</think>" still to drop */
    char hold[16];  /* bytes that may begin a tag */
    size_t n_hold;
} oai_think;

/* Where the pieces of one feed went: into caller-owned buffers of at least n + 16 bytes each. */
typedef struct oai_think_out {
    char *reasoning, *content;
    size_t n_reasoning, n_content;
} oai_think_out;

void oai_think_init(oai_think *t, bool start_inside);
/* Splits s[0..n) (out's lengths are reset first). final: the reply ends here; held bytes are flushed. */
void oai_think_feed(oai_think *t, const char *s, size_t n, bool final, oai_think_out *out);

#endif
