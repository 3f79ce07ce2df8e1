/*
 * Query results as a table for people, or JSON / CSV for scripts. JSON
 * objects and CSV fields are written by PostgreSQL (row_to_json, and
 * replace() for CSV quoting), never escaped here; rows are streamed in
 * single-row mode so a long listing is never held in memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char json_wrapper[] = "SELECT row_to_json(q)::text FROM (%s) q";
static const char csv_wrapper[] =
	"SELECT (SELECT string_agg(CASE WHEN f.value IS NULL THEN ''"
	"                          ELSE '\"' || replace(f.value, '\"', '\"\"') || '\"' END, ','"
	"                          ORDER BY f.n)"
	"          FROM json_each_text(row_to_json(q)) WITH ORDINALITY AS f(key, value, n))"
	"  FROM (%s) q";

static bool send_streaming(PGconn *conn, const char *sql, int n_params, const char *const *params)
{
	if (!PQsendQueryParams(conn, sql, n_params, NULL, params, NULL, NULL, 0)) {
		ctl_error("%s", PQerrorMessage(conn));
		return false;
	}
	PQsetSingleRowMode(conn);
	return true;
}

/* Calls EMIT for each streamed row; false if the query failed. */
static bool stream_rows(PGconn *conn, void (*emit)(const char *value, size_t index))
{
	PGresult *res;
	size_t index = 0;
	bool ok = true;
	while ((res = PQgetResult(conn)) != NULL) {
		switch (PQresultStatus(res)) {
		case PGRES_SINGLE_TUPLE:
			emit(PQgetvalue(res, 0, 0), index++);
			break;
		case PGRES_TUPLES_OK:
			break;
		default:
			ctl_error("%s", PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

static void emit_json(const char *value, size_t index)
{
	printf("%s\n  %s", index ? "," : "", value);
}

static void emit_line(const char *value, size_t index)
{
	(void)index;
	printf("%s\n", value);
}

static int print_json(struct ctl *ctl, const char *query, int n_params, const char *const *params)
{
	char *sql = xasprintf(json_wrapper, query);
	bool ok = send_streaming(ctl->conn, sql, n_params, params);
	free(sql);
	if (!ok)
		return CTL_ERROR;
	printf("[");
	ok = stream_rows(ctl->conn, emit_json);
	printf("\n]\n");
	return ok ? CTL_OK : CTL_ERROR;
}

static int print_csv(struct ctl *ctl, const char *query, int n_params, const char *const *params)
{
	PGresult *res;
	char *sql;
	bool ok;

	/* The header comes from describing the query, so an empty result still has one. */
	res = PQprepare(ctl->conn, "", query, n_params, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		ctl_error("%s", PQresultErrorMessage(res));
		PQclear(res);
		return CTL_ERROR;
	}
	PQclear(res);
	res = PQdescribePrepared(ctl->conn, "");
	for (int i = 0; i < PQnfields(res); i++)
		printf("%s%s", i ? "," : "", PQfname(res, i));
	printf("\n");
	PQclear(res);

	sql = xasprintf(csv_wrapper, query);
	ok = send_streaming(ctl->conn, sql, n_params, params);
	free(sql);
	return ok && stream_rows(ctl->conn, emit_line) ? CTL_OK : CTL_ERROR;
}

static int print_table(struct ctl *ctl, const char *query, int n_params, const char *const *params)
{
	PGresult *res = PQexecParams(ctl->conn, query, n_params, NULL, params, NULL, NULL, 0);
	int nf, nt;
	size_t *width;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_error("%s", PQresultErrorMessage(res));
		PQclear(res);
		return CTL_ERROR;
	}
	nf = PQnfields(res);
	nt = PQntuples(res);
	width = xcalloc((size_t)nf, sizeof(*width));
	for (int f = 0; f < nf; f++) {
		width[f] = strlen(PQfname(res, f));
		for (int t = 0; t < nt; t++)
			if ((size_t)PQgetlength(res, t, f) > width[f])
				width[f] = (size_t)PQgetlength(res, t, f);
	}
	for (int f = 0; f < nf; f++)
		printf("%-*s%s", f + 1 < nf ? (int)width[f] : 0, PQfname(res, f), f + 1 < nf ? "  " : "\n");
	for (int t = 0; t < nt; t++)
		for (int f = 0; f < nf; f++)
			printf("%-*s%s", f + 1 < nf ? (int)width[f] : 0,
			       PQgetisnull(res, t, f) ? "-" : PQgetvalue(res, t, f), f + 1 < nf ? "  " : "\n");
	if (nt == 0)
		printf("(none)\n");
	free(width);
	PQclear(res);
	return CTL_OK;
}

int ctl_print_query(struct ctl *ctl, const char *query, int n_params, const char *const *params)
{
	switch (ctl->format) {
	case CTL_FORMAT_JSON:
		return print_json(ctl, query, n_params, params);
	case CTL_FORMAT_CSV:
		return print_csv(ctl, query, n_params, params);
	case CTL_FORMAT_TABLE:
	default:
		return print_table(ctl, query, n_params, params);
	}
}
