/*
 * Query results as a table for people, or JSON / CSV for scripts. JSON
 * objects and CSV fields are written by PostgreSQL (row_to_json, and
 * replace() for CSV quoting), never escaped here; JSON and CSV rows are
 * streamed in single-row mode so a long listing is never held in memory.
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "ctl.h"
#include "json.h"
#include "util.h"

/*
 * A value as table output shows it to people. Control characters (C0, DEL,
 * C1) and bytes that are not UTF-8 are written as escapes, so a stored key
 * cannot move the cursor or rewrite the line; a backslash is doubled so the
 * escapes stay unambiguous. NULL is "-", so a value that is itself "-" or
 * empty is quoted. WIDTH is in terminal cells.
 */
struct cell {
	char *text;
	int width;
};

/* The display width of code point CP; wcwidth wants a UTF-8 locale whatever the user's is. */
static int cells_of(unsigned cp)
{
	static locale_t utf8 = (locale_t)0;
	locale_t old;
	int w;
	if (utf8 == (locale_t)0)
		utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (utf8 == (locale_t)0)
		return 1;
	old = uselocale(utf8);
	w = wcwidth((wchar_t)cp);
	uselocale(old);
	return w < 0 ? 1 : w;
}

/* Decodes one UTF-8 sequence at P; returns its length, 0 if it is not valid UTF-8. */
static int utf8_next(const unsigned char *p, unsigned *cp)
{
	int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
	unsigned v = n == 1 ? *p : n == 2 ? (*p & 0x1fu) : n == 3 ? (*p & 0x0fu) : (*p & 0x07u);
	for (int i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3fu);
	}
	if (n == 0 || (n == 2 && v < 0x80) || (n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

static struct cell cell_of(const char *value, bool is_null)
{
	struct cell c = {NULL, 0};
	size_t len = strlen(value), cap = len * 6 + 3, o = 0;
	if (is_null) {
		c.text = xstrdup("-");
		c.width = 1;
		return c;
	}
	if (strcmp(value, "-") == 0 || value[0] == '\0') {
		c.text = xasprintf("\"%s\"", value);
		c.width = (int)strlen(c.text);
		return c;
	}
	c.text = xmalloc(cap);
	for (const unsigned char *p = (const unsigned char *)value; *p;) {
		unsigned cp = 0;
		int n = utf8_next(p, &cp);
		if (n == 0) {
			o += (size_t)sprintf(c.text + o, "\\x%02x", *p);
			c.width += 4;
			p++;
		} else if (cp == '\\') {
			o += (size_t)sprintf(c.text + o, "\\\\");
			c.width += 2;
			p++;
		} else if (cp == '\n' || cp == '\r' || cp == '\t') {
			o += (size_t)sprintf(c.text + o, "\\%c", cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't');
			c.width += 2;
			p++;
		} else if (cp < 0x20 || cp == 0x7f) {
			o += (size_t)sprintf(c.text + o, "\\x%02x", cp);
			c.width += 4;
			p++;
		} else if (cp >= 0x80 && cp < 0xa0) {
			o += (size_t)sprintf(c.text + o, "\\u%04x", cp);
			c.width += 6;
			p += n;
		} else {
			memcpy(c.text + o, p, (size_t)n);
			o += (size_t)n;
			c.width += cells_of(cp);
			p += n;
		}
	}
	c.text[o] = '\0';
	return c;
}

/* Prints TEXT, then spaces up to WIDTH cells. */
static void print_padded(const struct cell *c, int width)
{
	fputs(c->text, stdout);
	for (int i = c->width; i < width; i++)
		putchar(' ');
}

static const char json_wrapper[] = "SELECT row_to_json(q)::text FROM (%s) q";
static const char csv_wrapper[] =
	"SELECT (SELECT string_agg(CASE WHEN f.value IS NULL THEN ''"
	"                          ELSE '\"' || replace(f.value, '\"', '\"\"') || '\"' END, ','"
	"                          ORDER BY f.n)"
	"          FROM json_each_text(row_to_json(q)) WITH ORDINALITY AS f(key, value, n))"
	"  FROM (%s) q";

/* Runs SQL in single-row mode, printing each row's one text column after PREFIX. */
static bool stream_lines(struct ctl_stream *st, const char *sql, int n_params, const Oid *types,
			 const char *const *params, bool json)
{
	PGconn *conn = st->ctl->conn;
	PGresult *res;
	bool ok = true;
	if (!PQsendQueryParams(conn, sql, n_params, types, params, NULL, NULL, 0)) {
		ctl_error("%s", PQerrorMessage(conn));
		return false;
	}
	PQsetSingleRowMode(conn);
	while ((res = PQgetResult(conn)) != NULL) {
		switch (PQresultStatus(res)) {
		case PGRES_SINGLE_TUPLE:
			if (json)
				printf("%s\n  %s", st->rows ? "," : "", PQgetvalue(res, 0, 0));
			else
				printf("%s\n", PQgetvalue(res, 0, 0));
			st->rows++;
			break;
		case PGRES_TUPLES_OK:
			break;
		default:
			ctl_result_error(st->ctl, NULL, res);
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

static bool print_csv_header(struct ctl_stream *st, const char *query, int n_params, const Oid *types)
{
	PGresult *res;
	/* Described, not run: an empty result still gets its header. */
	res = PQprepare(st->ctl->conn, "", query, n_params, types);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		ctl_result_error(st->ctl, NULL, res);
		PQclear(res);
		return false;
	}
	PQclear(res);
	res = PQdescribePrepared(st->ctl->conn, "");
	for (int i = 0; i < PQnfields(res); i++)
		printf("%s%s", i ? "," : "", PQfname(res, i));
	printf("\n");
	PQclear(res);
	return true;
}

static bool print_table_rows(struct ctl_stream *st, const char *query, int n_params, const Oid *types,
			     const char *const *params)
{
	PGresult *res = PQexecParams(st->ctl->conn, query, n_params, types, params, NULL, NULL, 0);
	int nf, nt;
	size_t *width;
	struct cell *cells;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_result_error(st->ctl, NULL, res);
		PQclear(res);
		return false;
	}
	nf = PQnfields(res);
	nt = PQntuples(res);
	width = xcalloc((size_t)nf, sizeof(*width));
	cells = xcalloc((size_t)(nt + 1) * (size_t)nf + 1, sizeof(*cells));
	for (int f = 0; f < nf; f++) {
		cells[f] = cell_of(PQfname(res, f), false);
		width[f] = (size_t)cells[f].width;
		for (int t = 0; t < nt; t++) {
			struct cell *c = &cells[(size_t)(t + 1) * (size_t)nf + (size_t)f];
			*c = cell_of(PQgetvalue(res, t, f), PQgetisnull(res, t, f));
			if ((size_t)c->width > width[f])
				width[f] = (size_t)c->width;
		}
	}
	for (int t = st->rows == 0 && !st->header_done ? 0 : 1; t <= nt; t++) {
		for (int f = 0; f < nf; f++) {
			print_padded(&cells[(size_t)t * (size_t)nf + (size_t)f], f + 1 < nf ? (int)width[f] : 0);
			fputs(f + 1 < nf ? "  " : "\n", stdout);
		}
	}
	st->header_done = true;
	st->rows += (size_t)nt;
	for (size_t i = 0; i < (size_t)(nt + 1) * (size_t)nf; i++)
		free(cells[i].text);
	free(cells);
	free(width);
	PQclear(res);
	return true;
}

void ctl_stream_begin(struct ctl_stream *st, struct ctl *ctl)
{
	memset(st, 0, sizeof(*st));
	st->ctl = ctl;
	st->ok = true;
	if (ctl->format == CTL_FORMAT_JSON)
		printf("[");
}

void ctl_stream_query(struct ctl_stream *st, const char *query, const char *table_query, int n_params, const Oid *types,
		      const char *const *params)
{
	char *sql;
	if (!st->ok)
		return;
	switch (st->ctl->format) {
	case CTL_FORMAT_JSON:
		sql = xasprintf(json_wrapper, query);
		st->ok = stream_lines(st, sql, n_params, types, params, true);
		free(sql);
		break;
	case CTL_FORMAT_CSV:
		if (!st->header_done) {
			st->ok = print_csv_header(st, query, n_params, types);
			st->header_done = true;
		}
		sql = xasprintf(csv_wrapper, query);
		st->ok = st->ok && stream_lines(st, sql, n_params, types, params, false);
		free(sql);
		break;
	case CTL_FORMAT_TABLE:
	default:
		st->ok = print_table_rows(st, table_query ? table_query : query, n_params, types, params);
		break;
	}
}

int ctl_stream_end(struct ctl_stream *st)
{
	if (st->ctl->format == CTL_FORMAT_JSON)
		printf("\n]\n");
	else if (st->ctl->format == CTL_FORMAT_TABLE && st->rows == 0 && st->ok)
		printf("(none)\n");
	return st->ok ? CTL_OK : CTL_ERROR;
}

int ctl_print_query(struct ctl *ctl, const char *query, const char *table_query, int n_params, const Oid *types,
		    const char *const *params)
{
	struct ctl_stream st;
	ctl_stream_begin(&st, ctl);
	ctl_stream_query(&st, query, table_query, n_params, types, params);
	return ctl_stream_end(&st);
}

int ctl_print_object(struct ctl *ctl, const char *query, const char *table_query, int n_params, const Oid *types,
		     const char *const *params)
{
	PGresult *res;
	char *sql;
	int status = CTL_OK;

	if (ctl->format == CTL_FORMAT_CSV)
		return ctl_print_query(ctl, query, NULL, n_params, types, params);
	if (ctl->format == CTL_FORMAT_JSON) {
		sql = xasprintf("SELECT row_to_json(q)::text FROM (%s) q", query);
		res = PQexecParams(ctl->conn, sql, n_params, types, params, NULL, NULL, 0);
		free(sql);
	} else {
		res = PQexecParams(ctl->conn, table_query ? table_query : query, n_params, types, params, NULL, NULL,
				   0);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			ctl_error("no result");
		else
			ctl_result_error(ctl, NULL, res);
		status = CTL_ERROR;
	} else if (ctl->format == CTL_FORMAT_JSON) {
		printf("%s\n", PQgetvalue(res, 0, 0));
	} else {
		/* One record: a field per line reads better than a one-row table. */
		int width = 0;
		for (int f = 0; f < PQnfields(res); f++)
			if ((int)strlen(PQfname(res, f)) > width)
				width = (int)strlen(PQfname(res, f));
		for (int f = 0; f < PQnfields(res); f++) {
			struct cell name, value;
			if (PQgetisnull(res, 0, f))
				continue;
			name = cell_of(PQfname(res, f), false);
			value = cell_of(PQgetvalue(res, 0, f), false);
			print_padded(&name, width);
			printf("  %s\n", value.text);
			free(name.text);
			free(value.text);
		}
	}
	PQclear(res);
	return status;
}

int ctl_print_rows(struct ctl *ctl, const struct ctl_field *fields, int nf, char *const *values, size_t nt)
{
	if (ctl->format == CTL_FORMAT_TABLE) {
		size_t *width = xcalloc((size_t)nf, sizeof(*width));
		struct cell *cells = xcalloc((nt + 1) * (size_t)nf + 1, sizeof(*cells));
		for (int f = 0; f < nf; f++) {
			cells[f] = cell_of(fields[f].name, false);
			width[f] = (size_t)cells[f].width;
			for (size_t t = 0; t < nt; t++) {
				const char *v = values[t * (size_t)nf + (size_t)f];
				struct cell *c = &cells[(t + 1) * (size_t)nf + (size_t)f];
				*c = cell_of(v ? v : "", v == NULL);
				if ((size_t)c->width > width[f])
					width[f] = (size_t)c->width;
			}
		}
		for (size_t t = 0; t <= nt; t++)
			for (int f = 0; f < nf; f++) {
				print_padded(&cells[t * (size_t)nf + (size_t)f], f + 1 < nf ? (int)width[f] : 0);
				fputs(f + 1 < nf ? "  " : "\n", stdout);
			}
		if (nt == 0)
			printf("(none)\n");
		for (size_t i = 0; i < (nt + 1) * (size_t)nf; i++)
			free(cells[i].text);
		free(cells);
		free(width);
		return CTL_OK;
	}
	/* As row_to_json and the CSV wrapper write what PostgreSQL returns, so both paths read alike. */
	if (ctl->format == CTL_FORMAT_CSV)
		for (int f = 0; f < nf; f++)
			printf("%s%s", f ? "," : "", fields[f].name);
	printf(ctl->format == CTL_FORMAT_JSON ? "[" : "\n");
	for (size_t t = 0; t < nt; t++) {
		struct json_buf b = {NULL, 0, 0};
		json_buf_str(&b, ctl->format == CTL_FORMAT_JSON ? "{" : "");
		for (int f = 0; f < nf; f++) {
			const char *v = values[t * (size_t)nf + (size_t)f];
			if (f)
				json_buf_str(&b, ",");
			if (ctl->format == CTL_FORMAT_JSON) {
				json_buf_string(&b, fields[f].name);
				json_buf_str(&b, ":");
				if (v == NULL)
					json_buf_str(&b, "null");
				else if (fields[f].bare)
					json_buf_str(&b, v);
				else
					json_buf_string(&b, v);
			} else if (v) {
				json_buf_str(&b, "\"");
				for (const char *p = v; *p; p++)
					json_buf_add(&b, *p == '"' ? "\"\"" : p, *p == '"' ? 2 : 1);
				json_buf_str(&b, "\"");
			}
		}
		if (ctl->format == CTL_FORMAT_JSON)
			printf("%s\n  %s}", t ? "," : "", b.s);
		else
			printf("%s\n", b.s);
		free(b.s);
	}
	if (ctl->format == CTL_FORMAT_JSON)
		printf("\n]\n");
	return CTL_OK;
}
