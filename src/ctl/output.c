/*
 * Query results as a table for people, or JSON / CSV for scripts. JSON
 * objects and CSV fields are written by PostgreSQL (row_to_json, and
 * replace() for CSV quoting), never escaped here; JSON and CSV rows are
 * streamed in single-row mode so a long listing is never held in memory.
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
			ctl_error("%s", PQresultErrorMessage(res));
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
		ctl_error("%s", PQresultErrorMessage(res));
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
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_error("%s", PQresultErrorMessage(res));
		PQclear(res);
		return false;
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
	if (st->rows == 0 && !st->header_done) {
		for (int f = 0; f < nf; f++)
			printf("%-*s%s", f + 1 < nf ? (int)width[f] : 0, PQfname(res, f), f + 1 < nf ? "  " : "\n");
		st->header_done = true;
	}
	for (int t = 0; t < nt; t++)
		for (int f = 0; f < nf; f++)
			printf("%-*s%s", f + 1 < nf ? (int)width[f] : 0,
			       PQgetisnull(res, t, f) ? "-" : PQgetvalue(res, t, f), f + 1 < nf ? "  " : "\n");
	st->rows += (size_t)nt;
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

void ctl_stream_query(struct ctl_stream *st, const char *query, const char *table_query, int n_params,
		      const Oid *types, const char *const *params)
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

int ctl_print_query(struct ctl *ctl, const char *query, const char *table_query, int n_params,
		    const Oid *types, const char *const *params)
{
	struct ctl_stream st;
	ctl_stream_begin(&st, ctl);
	ctl_stream_query(&st, query, table_query, n_params, types, params);
	return ctl_stream_end(&st);
}

int ctl_print_object(struct ctl *ctl, const char *query, const char *table_query, int n_params,
		     const Oid *types, const char *const *params)
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
		res = PQexecParams(ctl->conn, table_query ? table_query : query, n_params, types, params, NULL,
				   NULL, 0);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		ctl_error("%s", PQresultStatus(res) == PGRES_TUPLES_OK ? "no result" : PQresultErrorMessage(res));
		status = CTL_ERROR;
	} else if (ctl->format == CTL_FORMAT_JSON) {
		printf("%s\n", PQgetvalue(res, 0, 0));
	} else {
		/* One record: a field per line reads better than a one-row table. */
		int width = 0;
		for (int f = 0; f < PQnfields(res); f++)
			if ((int)strlen(PQfname(res, f)) > width)
				width = (int)strlen(PQfname(res, f));
		for (int f = 0; f < PQnfields(res); f++)
			if (!PQgetisnull(res, 0, f))
				printf("%-*s  %s\n", width, PQfname(res, f), PQgetvalue(res, 0, f));
	}
	PQclear(res);
	return status;
}
