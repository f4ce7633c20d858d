/*
 * fuzz_check.h - the property check of the libFuzzer harnesses in tests/fuzz/: a failed property prints where and
 * what, then aborts, which libFuzzer reports as a crash and keeps the input. tests/unit/test_fuzz_regress.c, which
 * includes the harnesses to replay saved inputs, may define FUZZ_CHECK first.
 */
#ifndef ZL_FUZZ_CHECK_H
#define ZL_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_CHECK
#define FUZZ_CHECK(cond, what)                                                                                  \
    do {                                                                                                        \
        if (!(cond)) {                                                                                          \
            fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, what);                     \
            abort();                                                                                            \
        }                                                                                                       \
    } while (0)
#endif

#endif
