/*
 * session.h -- the settings every connection of the daemon and retentionctl
 * is made with.
 */
#ifndef RETENTIOND_SESSION_H
#define RETENTIOND_SESSION_H

#include <libpq-fe.h>

#include "config.h"

/*
 * libpq `options` that pin what every statement relies on: the zone calendar
 * arithmetic runs in, the statement and lock timeouts (milliseconds, 0 =
 * none), a search_path of pg_catalog only, so that no role's function,
 * operator or type can stand in for a built-in, how text and times are read
 * and written, and no JIT. Malloc'd.
 */
char *session_options_for(const char *time_zone, long long statement_timeout_ms, long long lock_timeout_ms);
/* The same for CFG's database settings. */
char *session_options(const struct config *cfg);
/* The daemon's: the same, and every prepared statement with its generic plan. */
char *session_daemon_options(const struct config *cfg);
/* CONNINFO's own `options`, if any, then SESSION_OPTIONS (later ones win). NULL with *ERR if CONNINFO does not parse. */
char *session_merged_options(const char *conninfo, const char *session_options, char **err);
/*
 * What the daemon reads of its own session, by the schema's functions
 * (sql/retention-1-2.sql says what each returns): the settings statements
 * rely on, with the role and the LISTEN channels, as a text array in the
 * order of session.c's settings_names; the prepared statements ("M N", by
 * PREPARE and through the protocol); the rows this transaction wrote to
 * the audit tables. Code that runs with the daemon's role (a trigger, a
 * domain's check) can change the first two for the rest of the session:
 * the daemon reads them when it connects and again after every statement
 * that may run such code. The second is read only by unnamed statements: a
 * prepared statement could be one replaced.
 */
#define SESSION_SETTINGS_SQL    "retention.session_settings()"
#define PREPARED_STATEMENTS_SQL "retention.prepared_statements()"
#define AUDIT_WRITES_SQL        "retention.audit_writes()"
/* SESSION_SETTINGS_SQL, PREPARED_STATEMENTS_SQL: what a check after code of a table's owner may have run reads. */
#define SESSION_CHECK_SQL SESSION_SETTINGS_SQL ", " PREPARED_STATEMENTS_SQL
/* The name of the first setting that differs between two values of session_settings_sql, NULL if none. */
const char *session_settings_changed(const char *baseline, const char *now);

/* Connects, blocking, with SESSION_OPTIONS; NULL with *ERR (one line, malloc'd) on failure. */
PGconn *session_connect(const char *conninfo, const char *session_options, char **err);

#endif
