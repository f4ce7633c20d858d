/*
 * internal.h - what the files of the public API (src/api/) share: the wrapper of a loaded model. Nothing outside
 * src/api/ includes this.
 */
#ifndef ZILI_API_INTERNAL_H
#define ZILI_API_INTERNAL_H

#include "model/model.h"

struct zili_model {
    zl_model *m;
    char name[128];
    const char *tmpl_name; /* recognised template or NULL */
};

#endif
