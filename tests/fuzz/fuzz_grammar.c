/*
 * fuzz_grammar.c - libFuzzer harness for GBNF grammars (src/sample/grammar.h).
 *
 * Input: a grammar text, a NUL byte, then bytes to feed. The grammar (in an exactly sized buffer) must parse or be
 * refused with a message; a parsed one is fed the bytes in pieces of 1 to 8 bytes, and each time
 * zl_grammar_would_accept must agree with zl_grammar_accept, a refused piece must leave the state as it was (the
 * next check sees the same answers), can_end / must_end / first_bytes must not contradict each other (must_end
 * implies can_end without a pending character; a byte first_bytes rules out is never accepted), and the prefix walk
 * (zl_grammar_walk_*) gives would_accept's answers, also when it resumes from a prefix shared with the last text.
 * The built-in JSON grammar is fed the same bytes.
 *
 * tests/unit/test_fuzz_regress.c may include this file with ZL_FUZZ_REPLAY defined.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"

#include "fuzz_check.h"

static void fuzz_grammar_feed(const zl_grammar *g, const uint8_t *data, size_t size)
{
    zl_grammar_state *s = zl_grammar_state_new(g);
    if (!s)
        return; /* a grammar whose start already overflows the stack limits */
    size_t i = 0;
    while (i < size) {
        const size_t want = 1 + (size_t)(data[i] & 7), n = want < size - i ? want : size - i;
        const char *p = (const char *)data + i;
        bool first[256];
        zl_grammar_first_bytes(s, first);
        const bool would = zl_grammar_would_accept(s, p, n);
        FUZZ_CHECK(zl_grammar_would_accept(s, p, n) == would, "would_accept changed the state");
        /* the walk (zl_grammar_walk_*) agrees: the piece from depth 0, then a text sharing its first half and
         * going on with the piece's bytes reversed, from the shared depth */
        if (zl_grammar_walk_start(s)) {
            int d = 0;
            while ((size_t)d < n && zl_grammar_walk_push(s, d, (unsigned char)p[d]))
                d++;
            FUZZ_CHECK(((size_t)d == n && zl_grammar_walk_complete(s, d)) == would, "the walk disagrees");
            char alt[8];
            const size_t h = n / 2;
            memcpy(alt, p, h);
            for (size_t k = h; k < n; k++)
                alt[k] = p[n - 1 - (k - h)];
            const int from = d < (int)h ? d : (int)h;
            int e = from;
            bool ok = (size_t)d >= h; /* a prefix the first walk refused stays refused */
            while (ok && (size_t)e < n && zl_grammar_walk_push(s, e, (unsigned char)alt[e]))
                e++;
            ok = ok && (size_t)e == n && zl_grammar_walk_complete(s, e);
            FUZZ_CHECK(ok == zl_grammar_would_accept(s, alt, n), "the walk from a shared prefix disagrees");
        }
        const bool took = zl_grammar_accept(s, p, n);
        FUZZ_CHECK(took == would, "accept disagrees with would_accept");
        if (took)
            FUZZ_CHECK(first[(unsigned char)p[0]], "a first byte ruled out was accepted");
        if (zl_grammar_must_end(s))
            FUZZ_CHECK(zl_grammar_can_end(s), "must end but cannot end");
        i += n;
    }
    zl_grammar_state_free(s);
}

static void fuzz_grammar_input(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    const size_t gl = nul ? (size_t)(nul - data) : size;
    char *text = malloc(gl ? gl : 1);
    if (!text)
        return;
    memcpy(text, data, gl);
    zl_grammar *g = NULL;
    zl_err err;
    const int rc = zl_grammar_parse(text, gl, &g, &err);
    free(text);
    const uint8_t *rest = nul ? nul + 1 : data + size;
    const size_t rn = (size_t)(data + size - rest);
    if (rc != ZL_OK) {
        FUZZ_CHECK(!g && err.msg[0], "a refusal without a message, or with a grammar");
    } else {
        fuzz_grammar_feed(g, rest, rn);
        zl_grammar_free(g);
    }
    zl_grammar *json = NULL;
    FUZZ_CHECK(zl_grammar_parse(zl_grammar_json_object, strlen(zl_grammar_json_object), &json, &err) == ZL_OK,
               "the JSON grammar");
    fuzz_grammar_feed(json, rest, rn);
    zl_grammar_free(json);
}

#ifndef ZL_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_grammar_input(data, size);
    return 0;
}
#endif
