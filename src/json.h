/*
 * json.h -- the little JSON retentionctl writes without PostgreSQL (format 1
 * audit payloads, offline verification reports) and reads back (exported
 * audit trails, one object per line).
 */
#ifndef RETENTIOND_JSON_H
#define RETENTIOND_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* A growing, NUL-terminated byte string. */
struct json_buf {
	char *s;
	size_t len, cap;
};
void json_buf_add(struct json_buf *b, const char *bytes, size_t n);
void json_buf_str(struct json_buf *b, const char *s);
/* S as a JSON string, escaped exactly as PostgreSQL's escape_json does (non-ASCII as is). */
void json_buf_string(struct json_buf *b, const char *s);

enum json_type {
	JSON_NULL,
	JSON_STRING, /* text: the unescaped value (UTF-8, no NUL) */
	JSON_NUMBER, /* text: the number as written; only integers are accepted */
	JSON_BOOL,   /* text: "true" or "false" */
	JSON_OBJECT, /* object */
};

struct json_object;
struct json_value {
	enum json_type type;
	char *text;
	struct json_object *object;
};
struct json_object {
	size_t n;
	char **keys;
	struct json_value *values;
};

/*
 * Parses TEXT, which must be exactly one object (whitespace around it
 * allowed). Duplicate keys, fractions, exponents, arrays and escapes that
 * make a NUL are refused: a verifier must not read a line two ways. False
 * with *WHY (static) on error.
 */
bool json_parse_object(const char *text, struct json_object *out, const char **why);
void json_object_free(struct json_object *o);
/* KEY's value in O, or NULL. */
const struct json_value *json_get(const struct json_object *o, const char *key);

#endif
