/*
 * Prints the SQL retentiond runs for one policy of a configuration as
 * a psql script: its lock, purge, next_wake and pending statements PREPAREd
 * with the daemon's exact text (built by the daemon's own policy_prepare), and
 * :args, the policy's parameters, so that
 *     EXECUTE lock(:args) \gset  EXECUTE purge(:args, :'table_oids', :'tids');
 *     EXECUTE next_wake(:args, false);  EXECUTE pending(:args, '24 hours');
 * run what the daemon and retentionctl pending run (no purge for an
 * anonymize policy: its UPDATE takes the `set` values too). bench/run uses
 * it to replay the daemon's purge without the daemon and to time the due
 * queries; bench/anonymized, to time them over anonymized rows.
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

/* The parameters as the daemon declares them (the extra ones are text the statement casts). */
static const char *type_name(const struct policy_sql *sql, int i)
{
	if (i >= POLICY_N_BASE_PARAMS)
		return "text";
	switch (sql->types[i]) {
	case 1186:
		return "interval";
	case 1009:
		return "text[]";
	case 23:
		return "integer";
	default:
		return "text";
	}
}

static void print_prepare(const struct policy_sql *p, const char *name, const char *sql, int n)
{
	printf("PREPARE %s(", name);
	for (int i = 0; i < n; i++)
		printf("%s%s", i ? ", " : "", type_name(p, i));
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
	struct policy_shape shape;
	struct policy_sql sql;
	char *err = NULL;
	PGconn *conn;

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
	if (p == NULL) {
		fprintf(stderr, "policy-sql: no policy %s in %s\n", argv[2], argv[1]);
		return 1;
	}
	conn = PQconnectdb(cfg->conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "policy-sql: %s", PQerrorMessage(conn));
		return 1;
	}
	/* The daemon's session: its statements are written for search_path = pg_catalog. */
	PQclear(PQexec(conn, "SET search_path = pg_catalog, pg_temp"));
	if (!policy_prepare(conn, cfg, p, &shape, &sql, &err)) {
		fprintf(stderr, "policy-sql: policy %s: %s\n", p->name, err);
		return 1;
	}
	printf("SET search_path = pg_catalog, pg_temp;\n");
	print_prepare(&sql, "lock", sql.lock, POLICY_N_BASE_PARAMS);
	if (p->action == POLICY_ACTION_DELETE)
		print_prepare(&sql, "purge", sql.purge, POLICY_N_BASE_PARAMS + 2);
	print_prepare(&sql, "next_wake", sql.next_wake, POLICY_N_BASE_PARAMS + 1);
	print_prepare(&sql, "pending", sql.pending, POLICY_N_BASE_PARAMS + 1);
	print_args(conn, &sql, POLICY_N_BASE_PARAMS);
	policy_sql_free(&sql);
	policy_shape_free(&shape);
	PQfinish(conn);
	config_free(cfg);
	return 0;
}
