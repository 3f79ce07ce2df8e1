/*
 * schema.h -- the retention schema's migration steps and version.
 */
#ifndef RETENTIOND_SCHEMA_H
#define RETENTIOND_SCHEMA_H

#include <libpq-fe.h>

/* One file of sql/: retention-N installs version N, retention-M-N upgrades M to N. */
struct schema_step {
	int version;
	const char *name;
	const char *sql;
};

extern const struct schema_step schema_steps[];
extern const int schema_n_steps;

/* The version this build expects. */
int schema_latest_version(void);

/* Version installed in the database CONN is connected to, 0 if none, -1 on error (*ERR set). */
int schema_installed_version(PGconn *conn, char **err);

/*
 * Brings the schema to schema_latest_version() in one transaction, serialised
 * against concurrent runs. Returns the number of steps applied (0 if already
 * current) or -1 with *ERR set (malloc'd).
 */
int schema_migrate(PGconn *conn, char **err);

/* SQL that reads the installed version; the daemon runs it asynchronously. */
extern const char schema_version_sql[];

/* Whether request row R is open past its deadline (a restriction is carried out when filed: never). */
#define REQUEST_OVERDUE_SQL(r)                                                                                         \
	"(" r ".kind <> 'restriction' AND " r ".status = 'open' AND " r                                                \
	".deadline_at < pg_catalog.statement_timestamp())"

#endif
