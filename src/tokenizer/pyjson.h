/*
 * pyjson.h - JSON text exactly as Python's json.dumps writes it, for chat templates that serialize tools and
 * arguments with jinja's `tojson` (transformers defines it as json.dumps(x, ensure_ascii=False, indent=indent)).
 *
 * Separators ", " and ": " (or "," + newline + indent and ": " with an indent); keys in the order they were
 * parsed (jansson keeps insertion order, as Python's dict does); non-ASCII characters written as themselves;
 * '"', '\\', \b \f \n \r \t escaped by name and other control characters as \u00XX; integers in decimal; reals as
 * Python's repr(float) (the shortest text that reads back to the same double: 1.0, 0.0001, 1e-05, 1e+16).
 */
#ifndef ZL_PYJSON_H
#define ZL_PYJSON_H

#include <jansson.h>

/* json.dumps(v, ensure_ascii=False, indent=None if indent < 0 else indent). malloc'd; NULL when out of memory or
 * nested deeper than 256 levels. */
char *zl_pyjson_dumps(const json_t *v, int indent);
/* json.dumps of one string (a quoted JSON string literal), s[0..n). malloc'd, NULL when out of memory. */
char *zl_pyjson_string(const char *s, size_t n);

#endif
