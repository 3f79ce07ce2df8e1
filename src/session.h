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
/* CONNINFO's own `options`, if any, then SESSION_OPTIONS (later ones win). NULL with *ERR if CONNINFO does not parse. */
char *session_merged_options(const char *conninfo, const char *session_options, char **err);
/*
 * An SQL expression, every part qualified or a keyword so that it means the
 * same under any search_path: the role and the settings statements rely on,
 * and the channels the session listens to, as a text array. The daemon reads it when it connects and again after every
 * statement that may run code of a table's owner (a trigger, a domain's
 * check): code that runs with the daemon's rights can change them for the
 * rest of the session.
 */
#define SESSION_SETTINGS_SQL                                                                                           \
	"ARRAY[CAST(current_user AS pg_catalog.text), pg_catalog.current_setting('search_path'),"                      \
	" pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('DateStyle'),"                            \
	" pg_catalog.current_setting('IntervalStyle'), pg_catalog.current_setting('client_encoding'),"                 \
	" pg_catalog.current_setting('statement_timeout'), pg_catalog.current_setting('lock_timeout'),"                \
	" pg_catalog.current_setting('standard_conforming_strings'), pg_catalog.current_setting('row_security'),"      \
	" pg_catalog.current_setting('extra_float_digits'), pg_catalog.current_setting('array_nulls'),"                \
	" pg_catalog.current_setting('transform_null_equals'), pg_catalog.current_setting('timezone_abbreviations'),"  \
	" pg_catalog.current_setting('jit'), pg_catalog.current_setting('synchronous_commit'),"                        \
	" pg_catalog.current_setting('idle_in_transaction_session_timeout'),"                                          \
	" pg_catalog.current_setting('default_transaction_read_only'),"                                                \
	" pg_catalog.array_to_string(ARRAY(SELECT c FROM pg_catalog.pg_listening_channels() c ORDER BY c), ',')]"
/*
 * Rows of the audit log and the chain heads written (inserted, updated or
 * deleted, rolled-back subtransactions included) by the current backend
 * since its counters were last flushed, which happens only between
 * transactions: read at a transaction's start and before its COMMIT, the
 * difference is what the transaction wrote, whoever's code did it. NULL
 * when the server does not count (track_counts off, settable only by a
 * superuser). Every part qualified.
 */
#define AUDIT_WRITES_SQL                                                                                               \
	"CASE WHEN pg_catalog.current_setting('track_counts')::pg_catalog.bool THEN"                                   \
	" (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_tuples_inserted(r.oid)"                                   \
	" OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(r.oid)"                                    \
	" OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(r.oid))::pg_catalog.int8"                  \
	" FROM pg_catalog.unnest(ARRAY[pg_catalog.to_regclass('retention.audit_log'),"                                 \
	" pg_catalog.to_regclass('retention.chain_heads')]::pg_catalog.oid[]) r(oid)) END"
/*
 * The session's prepared statements as "M N": M made by SQL PREPARE, N
 * through the protocol. The daemon prepares through the protocol only, so M
 * must be 0 (one made by PREPARE could stand in for one of the daemon's,
 * under its name) and N what it prepared (code that runs in the session can
 * DEALLOCATE them). Read only by unnamed statements: a prepared statement
 * could be one replaced.
 */
#define PREPARED_STATEMENTS_SQL                                                                                        \
	"(SELECT pg_catalog.count(*) FILTER (WHERE p.from_sql)::pg_catalog.text || ' ' ||"                             \
	" pg_catalog.count(*) FILTER (WHERE NOT p.from_sql)::pg_catalog.text FROM pg_catalog.pg_prepared_statements p)"
/* SESSION_SETTINGS_SQL, PREPARED_STATEMENTS_SQL: what a check after code of a table's owner may have run reads. */
#define SESSION_CHECK_SQL SESSION_SETTINGS_SQL ", " PREPARED_STATEMENTS_SQL
/* The name of the first setting that differs between two values of session_settings_sql, NULL if none. */
const char *session_settings_changed(const char *baseline, const char *now);

/* Connects, blocking, with SESSION_OPTIONS; NULL with *ERR (one line, malloc'd) on failure. */
PGconn *session_connect(const char *conninfo, const char *session_options, char **err);

#endif
