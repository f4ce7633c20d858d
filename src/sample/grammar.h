/*
 * grammar.h - GBNF grammars (the notation llama.cpp's `grammar` field takes) and a parse position in one, for
 * constrained decoding: the engine asks whether a token's bytes may come next and masks those that may not.
 *
 * Notation: `name ::= alternatives` rules, the first one named `root` is where a sentence starts; a sequence holds
 * "literals" (escapes \n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH), [character classes] ([^...] negated, a-z ranges),
 * rule names, ( groups ), `.` (any character), each optionally followed by `*`, `+`, `?`, `{m}`, `{m,}` or
 * `{m,n}`; `|` separates alternatives; `#` starts a comment. A rule ends at the end of its line unless inside
 * parentheses, right after `::=` or `|`, or when the next line starts with `|`. Characters are Unicode code points; text is UTF-8.
 * Refused at parse, with the line and column: syntax errors, an undefined rule, no root rule, left recursion
 * (a rule that can reach itself before consuming a character, which the matcher could never leave), repetition
 * bounds above 10000, and grammars above 1 M elements.
 *
 * A zl_grammar is immutable after parse and may be shared. A zl_grammar_state is one parse position (every way
 * the text so far can continue: a set of stacks of grammar positions) plus the bytes of an unfinished UTF-8
 * character; it is owned by one thread at a time.
 */
#ifndef ZL_GRAMMAR_H
#define ZL_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

typedef struct zl_grammar zl_grammar;
typedef struct zl_grammar_state zl_grammar_state;

/* Parses text[0..len). On success *out is owned by the caller (zl_grammar_free). */
int zl_grammar_parse(const char *text, size_t len, zl_grammar **out, zl_err *err);
void zl_grammar_free(zl_grammar *g);

/* A position at the start of a sentence of g (g must outlive it). NULL on out of memory. */
zl_grammar_state *zl_grammar_state_new(const zl_grammar *g);
void zl_grammar_state_free(zl_grammar_state *s);

/* Whether bytes[0..n) may come next (the state is not changed). n == 0 is true. A trailing partial UTF-8
 * character is allowed when some continuation can take a character that begins with those bytes. */
bool zl_grammar_would_accept(zl_grammar_state *s, const char *bytes, size_t n);
/* Takes bytes[0..n) if they may come next (true), else leaves s as it was (false). */
bool zl_grammar_accept(zl_grammar_state *s, const char *bytes, size_t n);
/* Walking many texts that share prefixes (a sorted vocabulary, say): the position after the first d bytes of the
 * text being walked is kept for each depth d, so a prefix shared by the next text is matched once. Start puts
 * depth 0 at s's position (false on out of memory); push makes depth + 1 the position after byte c at depth
 * (depth at most the deepest made since start, and < ZL_GRAMMAR_WALK_MAX), false when c may not come there;
 * complete says whether the text of the first depth bytes may come, as zl_grammar_would_accept does (a trailing
 * partial character must be one some continuation can take). s's own position does not change. */
#define ZL_GRAMMAR_WALK_MAX 1024
bool zl_grammar_walk_start(zl_grammar_state *s);
bool zl_grammar_walk_push(zl_grammar_state *s, int depth, unsigned char c);
bool zl_grammar_walk_complete(const zl_grammar_state *s, int depth);
/* first[b] = whether a text whose first byte is b may come next (a pre-filter: true does not promise the rest). */
void zl_grammar_first_bytes(const zl_grammar_state *s, bool first[256]);
/* The text so far is a whole sentence (the end may come here). */
bool zl_grammar_can_end(const zl_grammar_state *s);
/* Nothing but the end may come: no continuation expects another character. */
bool zl_grammar_must_end(const zl_grammar_state *s);

/* A grammar for one JSON object (RFC 8259 value syntax, whitespace bounded), for response_format json_object. */
extern const char zl_grammar_json_object[];

#endif
