/*
 * schema.h - JSON Schema (response_format json_schema) to a GBNF grammar (sample/grammar.h).
 *
 * Supported: type (one or a list), properties, required, additionalProperties (false, or true / absent: the
 * properties listed are the ones written, in their order, the required ones always), enum, const, items,
 * minItems, maxItems, minLength, maxLength, minimum / maximum / exclusiveMinimum / exclusiveMaximum on integers
 * (as digit ranges, up to 16 digits), format date / time / date-time / uuid, anyOf, oneOf (as anyOf), $ref
 * to "#/$defs/NAME" or "#/definitions/NAME", and the annotations title, description, default, examples,
 * $schema, $id, $comment. A schema of true or {} is any JSON value; an object schema without properties is any
 * object. Any other keyword (pattern, allOf, bounds on numbers, ...) is refused with a message that names it, as is a $ref
 * elsewhere or a recursion deeper than 64 levels.
 *
 * Threads: a pure function over its arguments.
 */
#ifndef ZL_SCHEMA_H
#define ZL_SCHEMA_H

#include <jansson.h>

/* The grammar for schema, malloc'd (caller frees), or NULL with a one-line reason in why[0..why_cap). */
char *oai_schema_grammar(json_t *schema, char *why, size_t why_cap);

/* One grammar for tool calls: head (GBNF rules, root among them, that use args0 .. args(n-1) and the shared rules
 * object, value, string, ws), then each schemas[i]'s rules with argsI its top one, then the shared rules. A schema
 * that is NULL, or has what oai_schema_grammar refuses, allows any JSON object (a function's parameters should not
 * make the whole request fail). NULL only when out of memory (why says so). */
char *oai_schema_grammar_tools(json_t *const *schemas, size_t n, const char *head, char *why, size_t why_cap);

#endif
