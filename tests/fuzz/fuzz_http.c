/*
 * fuzz_http.c - libFuzzer harness for the server's request-head checks (src/server/door.h).
 *
 * The input is what a client sent. zl_http_head_len finds the head in it; the head (copied into an exactly sized
 * buffer, so a read past it is caught) goes through zl_http_check_head, and so does the whole input (any bytes).
 * Checks: the head length fits and ends with a blank line; a verdict is 0 or one of the documented statuses, with
 * a reason exactly when it refuses; a head the check lets through has, counted here independently, at most one
 * Content-Length line, not both Content-Length and Transfer-Encoding, and a Content-Length within max_body.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/door.h"

#include "fuzz_check.h"

enum { FUZZ_HTTP_MAX_BODY = 1000 };

static void fuzz_http_verdict(zl_head_verdict v)
{
    FUZZ_CHECK(v.status == 0 || v.status == 400 || v.status == 413 || v.status == 501 || v.status == 505,
               "an undocumented status");
    FUZZ_CHECK((v.status == 0) == (v.reason == NULL), "a reason without a refusal, or a refusal without one");
}

/* Lines of head[0..n) whose name is `name` (case-insensitive, the colon right after it). */
static int fuzz_http_count(const char *head, size_t n, const char *name, uint64_t *value)
{
    const size_t nl = strlen(name);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && head[i - 1] != '\n')
            continue;
        if (n - i > nl && !strncasecmp(head + i, name, nl) && head[i + nl] == ':') {
            count++;
            if (value) {
                size_t j = i + nl + 1;
                while (j < n && (head[j] == ' ' || head[j] == '\t'))
                    j++;
                uint64_t x = 0;
                for (; j < n && head[j] >= '0' && head[j] <= '9'; j++)
                    x = x > UINT64_MAX / 10 - 9 ? UINT64_MAX : x * 10 + (uint64_t)(head[j] - '0');
                *value = x;
            }
        }
    }
    return count;
}

static void fuzz_http_input(const uint8_t *data, size_t size)
{
    const size_t hl = zl_http_head_len((const char *)data, size);
    FUZZ_CHECK(hl <= size, "head length past the input");
    fuzz_http_verdict(zl_http_check_head((const char *)data, size, FUZZ_HTTP_MAX_BODY));
    if (!hl)
        return;
    FUZZ_CHECK(hl >= 2 && data[hl - 1] == '\n' && (data[hl - 2] == '\n' || (hl >= 3 && data[hl - 2] == '\r' &&
                                                                             data[hl - 3] == '\n')),
               "the head does not end with a blank line");
    char *head = malloc(hl);
    if (!head)
        return;
    memcpy(head, data, hl);
    const zl_head_verdict v = zl_http_check_head(head, hl, FUZZ_HTTP_MAX_BODY);
    fuzz_http_verdict(v);
    if (v.status == 0) {
        uint64_t cl = 0;
        const int n_cl = fuzz_http_count(head, hl, "content-length", &cl);
        const int n_te = fuzz_http_count(head, hl, "transfer-encoding", NULL);
        FUZZ_CHECK(n_cl <= 1, "passed two Content-Length lines");
        FUZZ_CHECK(!(n_cl && n_te), "passed Content-Length with Transfer-Encoding");
        FUZZ_CHECK(n_te <= 1, "passed two Transfer-Encoding lines");
        FUZZ_CHECK(cl <= FUZZ_HTTP_MAX_BODY, "passed a Content-Length above max_body");
    }
    free(head);
}

#ifndef ZL_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_input(data, size);
    return 0;
}
#endif
