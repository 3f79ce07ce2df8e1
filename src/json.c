/*
 * json.c -- writing JSON strings and reading one flat object (see json.h).
 */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void json_buf_add(struct json_buf *b, const char *bytes, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, bytes, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void json_buf_str(struct json_buf *b, const char *s) { json_buf_add(b, s, strlen(s)); }

void json_buf_string(struct json_buf *b, const char *s)
{
	json_buf_str(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		switch (*p) {
		case '\b':
			json_buf_str(b, "\\b");
			break;
		case '\f':
			json_buf_str(b, "\\f");
			break;
		case '\n':
			json_buf_str(b, "\\n");
			break;
		case '\r':
			json_buf_str(b, "\\r");
			break;
		case '\t':
			json_buf_str(b, "\\t");
			break;
		case '"':
			json_buf_str(b, "\\\"");
			break;
		case '\\':
			json_buf_str(b, "\\\\");
			break;
		default:
			if (*p < ' ') {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				json_buf_str(b, esc);
			} else {
				json_buf_add(b, (const char *)p, 1);
			}
		}
	}
	json_buf_str(b, "\"");
}

/* ---- reading ---- */

struct reader {
	const char *p;
	const char *why;
	int depth;
};

static void skip_space(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
		r->p++;
}

static int hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static void put_utf8(struct json_buf *b, unsigned cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	json_buf_add(b, u, n);
}

static char *read_string(struct reader *r)
{
	struct json_buf b = {NULL, 0, 0};
	json_buf_str(&b, "");
	if (*r->p != '"') {
		r->why = "a string was expected";
		goto fail;
	}
	for (r->p++; *r->p != '"'; r->p++) {
		unsigned char c = (unsigned char)*r->p;
		if (c == '\0' || c < ' ') {
			r->why = c ? "a control character inside a string" : "a string is not closed";
			goto fail;
		}
		if (c != '\\') {
			json_buf_add(&b, r->p, 1);
			continue;
		}
		r->p++;
		switch (*r->p) {
		case '"':
		case '\\':
		case '/':
			json_buf_add(&b, r->p, 1);
			break;
		case 'b':
			json_buf_str(&b, "\b");
			break;
		case 'f':
			json_buf_str(&b, "\f");
			break;
		case 'n':
			json_buf_str(&b, "\n");
			break;
		case 'r':
			json_buf_str(&b, "\r");
			break;
		case 't':
			json_buf_str(&b, "\t");
			break;
		case 'u': {
			int cp = hex4(r->p + 1), lo;
			if (cp < 0)
				break;
			r->p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && r->p[1] == '\\' && r->p[2] == 'u' &&
			    (lo = hex4(r->p + 3)) >= 0xdc00 && lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				r->p += 6;
			} else if (cp >= 0xd800 && cp <= 0xdfff) {
				r->why = "a lone surrogate in a \\u escape";
				goto fail;
			}
			if (cp == 0) {
				r->why = "\\u0000: no field holds a NUL";
				goto fail;
			}
			put_utf8(&b, (unsigned)cp);
			continue;
		}
		default:
			break;
		}
		if (strchr("\"\\/bfnrtu", *r->p) == NULL || (*r->p == 'u' && hex4(r->p + 1) < 0)) {
			r->why = "an invalid escape in a string";
			goto fail;
		}
	}
	r->p++;
	return b.s;
fail:
	free(b.s);
	return NULL;
}

static bool read_object(struct reader *r, struct json_object *o);

static bool read_value(struct reader *r, struct json_value *v)
{
	const char *start = r->p;
	memset(v, 0, sizeof(*v));
	if (*r->p == '"') {
		v->type = JSON_STRING;
		v->text = read_string(r);
		return v->text != NULL;
	}
	if (*r->p == '{') {
		if (++r->depth > 4) {
			r->why = "objects nested too deep";
			return false;
		}
		v->type = JSON_OBJECT;
		v->object = xcalloc(1, sizeof(*v->object));
		return read_object(r, v->object);
	}
	if (strncmp(r->p, "null", 4) == 0) {
		r->p += 4;
		v->type = JSON_NULL;
		return true;
	}
	if (strncmp(r->p, "true", 4) == 0 || strncmp(r->p, "false", 5) == 0) {
		v->type = JSON_BOOL;
		v->text = xstrdup(*r->p == 't' ? "true" : "false");
		r->p += *r->p == 't' ? 4 : 5;
		return true;
	}
	if (*r->p == '-')
		r->p++;
	if (*r->p == '0' && r->p[1] >= '0' && r->p[1] <= '9') {
		r->why = "a number with a leading zero";
		return false;
	}
	while (*r->p >= '0' && *r->p <= '9')
		r->p++;
	if (r->p == start || (r->p == start + 1 && *start == '-')) {
		r->why = "a value was expected";
		return false;
	}
	if (*r->p == '.' || *r->p == 'e' || *r->p == 'E') {
		r->why = "a number that is not an integer";
		return false;
	}
	v->type = JSON_NUMBER;
	v->text = xstrndup(start, (size_t)(r->p - start));
	return true;
}

static void value_free(struct json_value *v)
{
	free(v->text);
	if (v->object) {
		json_object_free(v->object);
		free(v->object);
	}
}

static bool read_object(struct reader *r, struct json_object *o)
{
	memset(o, 0, sizeof(*o));
	if (*r->p != '{') {
		r->why = "an object was expected";
		return false;
	}
	r->p++;
	skip_space(r);
	if (*r->p == '}') {
		r->p++;
		return true;
	}
	for (;;) {
		char *key;
		skip_space(r);
		key = read_string(r);
		if (key == NULL)
			return false;
		if (json_get(o, key)) {
			free(key);
			r->why = "a key appears twice in one object";
			return false;
		}
		o->keys = xrealloc(o->keys, (o->n + 1) * sizeof(*o->keys));
		o->values = xrealloc(o->values, (o->n + 1) * sizeof(*o->values));
		o->keys[o->n] = key;
		memset(&o->values[o->n], 0, sizeof(o->values[o->n]));
		o->n++;
		skip_space(r);
		if (*r->p != ':') {
			r->why = "':' was expected after a key";
			return false;
		}
		r->p++;
		skip_space(r);
		if (!read_value(r, &o->values[o->n - 1]))
			return false;
		skip_space(r);
		if (*r->p == '}') {
			r->p++;
			return true;
		}
		if (*r->p != ',') {
			r->why = "',' or '}' was expected";
			return false;
		}
		r->p++;
	}
}

bool json_parse_object(const char *text, struct json_object *out, const char **why)
{
	struct reader r = {text, NULL, 0};
	skip_space(&r);
	if (!read_object(&r, out)) {
		json_object_free(out);
		*why = r.why ? r.why : "not JSON";
		return false;
	}
	skip_space(&r);
	if (*r.p != '\0') {
		json_object_free(out);
		*why = "something follows the object";
		return false;
	}
	return true;
}

void json_object_free(struct json_object *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->keys[i]);
		value_free(&o->values[i]);
	}
	free(o->keys);
	free(o->values);
	memset(o, 0, sizeof(*o));
}

const struct json_value *json_get(const struct json_object *o, const char *key)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return &o->values[i];
	return NULL;
}
