/*
 * schema.c -- the retention schema's version, and migrate: every step of sql/ in one transaction.
 */
#include "schema.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/*
 * One statement that works before the schema exists: a plain subquery on the
 * missing table would fail at parse time, so it is run through query_to_xml
 * only when the table is there.
 */
const char schema_version_sql[] =
	"SELECT CASE WHEN to_regclass('retention.schema_version') IS NULL THEN 0"
	" ELSE coalesce((xpath('/row/v/text()', query_to_xml("
	"   'SELECT max(version) AS v FROM retention.schema_version', false, true, '')))[1]::text::int, 0)"
	" END";

/* Same lock space as retention.lock_policy(); key 0 is no policy's hash in practice. */
static const char migrate_lock_sql[] = "SELECT pg_advisory_xact_lock(1919251566, 0)";

int schema_latest_version(void) { return schema_steps[schema_n_steps - 1].version; }

static int run(PGconn *conn, const char *sql, char **err)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
	if (!ok)
		*err = xstrdup(PQresultErrorMessage(res));
	PQclear(res);
	return ok ? 0 : -1;
}

int schema_installed_version(PGconn *conn, char **err)
{
	PGresult *res = PQexec(conn, schema_version_sql);
	int v = -1;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		v = atoi(PQgetvalue(res, 0, 0));
	else
		*err = xstrdup(PQresultErrorMessage(res));
	PQclear(res);
	return v;
}

int schema_migrate(PGconn *conn, char **err)
{
	int applied = 0, current;
	if (run(conn, "BEGIN", err) < 0)
		return -1;
	if (run(conn, migrate_lock_sql, err) < 0)
		goto fail;
	current = schema_installed_version(conn, err);
	if (current < 0)
		goto fail;
	if (current > schema_latest_version()) {
		*err = xasprintf("the database has schema version %d, newer than this build's %d", current,
				 schema_latest_version());
		goto fail;
	}
	for (int i = 0; i < schema_n_steps; i++) {
		const struct schema_step *s = &schema_steps[i];
		const char *dash = strchr(s->name + strlen("retention-"), '-');
		int from = dash ? atoi(s->name + strlen("retention-")) : 0;
		if (s->version <= current || from != current)
			continue;
		if (run(conn, s->sql, err) < 0) {
			char *inner = *err;
			*err = xasprintf("%s.sql: %s", s->name, inner);
			free(inner);
			goto fail;
		}
		current = s->version;
		applied++;
	}
	if (run(conn, "COMMIT", err) < 0)
		return -1;
	return applied;
fail:
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}
