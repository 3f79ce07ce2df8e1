/*
 * Prints the SQL retentiond runs for one delete policy of a configuration as
 * a psql script: its purge, next_wake and pending statements PREPAREd with the
 * daemon's exact text (built by the daemon's own policy_sql_build), and :args,
 * the policy's parameters, so that
 *     EXECUTE purge(:args);  EXECUTE next_wake(:args);  EXECUTE pending(:args, '24 hours');
 * run what the daemon and retentionctl pending run. bench/run uses it to
 * replay the daemon's purge without the daemon and to time the due queries.
 *
 *   policy-sql CONFIG POLICY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"

/* An SQL literal inside a quoted psql \set argument, where each quote is doubled once more. */
static void print_literal(PGconn *conn, const char *value)
{
	char *q;
	if (value == NULL) {
		fputs("NULL", stdout);
		return;
	}
	q = PQescapeLiteral(conn, value, strlen(value));
	for (const char *c = q; *c; c++)
		fputs(*c == '\'' ? "''" : (char[]){*c, '\0'}, stdout);
	PQfreemem(q);
}

static void print_prepare(const char *name, const char *sql, int n)
{
	printf("PREPARE %s(", name);
	for (int i = 0; i < n; i++)
		printf("%stext", i ? ", " : "");
	printf(") AS %s;\n", sql);
}

static void print_args(PGconn *conn, const struct policy_sql *sql, int n)
{
	printf("\\set args '");
	for (int i = 0; i < n; i++) {
		fputs(i ? ", " : "", stdout);
		print_literal(conn, sql->params[i]);
	}
	printf("'\n");
}

int main(int argc, char **argv)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg;
	const struct policy *p = NULL;
	struct policy_sql sql;
	char *schema = NULL, *rel = NULL;
	const char *why = NULL, *params[2];
	PGconn *conn;
	PGresult *res;

	if (argc != 3) {
		fprintf(stderr, "usage: policy-sql CONFIG POLICY\n");
		return 2;
	}
	cfg = config_load(argv[1], &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	if (cfg == NULL)
		return 1;
	for (size_t i = 0; i < cfg->n_policies; i++)
		if (strcmp(cfg->policies[i].name, argv[2]) == 0)
			p = &cfg->policies[i];
	/* An anonymising policy's purge takes its `set` values too: not needed here. */
	if (p == NULL || p->action != POLICY_ACTION_DELETE) {
		fprintf(stderr, "policy-sql: no delete policy %s in %s\n", argv[2], argv[1]);
		return 1;
	}
	conn = PQconnectdb(cfg->conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "policy-sql: %s", PQerrorMessage(conn));
		return 1;
	}
	if (!config_split_table_name(p->table, &schema, &rel, &why)) {
		fprintf(stderr, "policy-sql: table %s: %s\n", p->table, why);
		return 1;
	}
	params[0] = schema;
	params[1] = rel;
	res = PQexecParams(conn, policy_resolve_table_sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		fprintf(stderr, "policy-sql: table %s not found\n", p->table);
		return 1;
	}
	if (!policy_sql_build(&sql, p, PQgetvalue(res, 0, 1), cfg->instance, conn))
		return 1;
	print_prepare("purge", sql.purge, sql.n_params);
	print_prepare("next_wake", sql.next_wake, POLICY_N_BASE_PARAMS);
	print_prepare("pending", sql.pending, POLICY_N_BASE_PARAMS + 1);
	print_args(conn, &sql, POLICY_N_BASE_PARAMS);
	policy_sql_free(&sql);
	free(schema);
	free(rel);
	PQclear(res);
	PQfinish(conn);
	config_free(cfg);
	return 0;
}
