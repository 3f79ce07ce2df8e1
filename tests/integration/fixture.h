/*
 * fixture.h -- what the integration tests share: databases with the
 * retention schema and the daemon's least-privilege role, configurations,
 * a daemon in the background and its log, and the checks every purge must
 * pass (atomic, audited, an intact chain).
 */
#ifndef RETENTIOND_TEST_FIXTURE_H
#define RETENTIOND_TEST_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

#include "policy.h"
#include "testutil.h"

/* A fresh database DB with the retention schema and TEST_DAEMON_ROLE. */
PGconn *fx_database(const char *db);
/* Gives TEST_DAEMON_ROLE the schemas (a comma-separated list) and their tables, as an operator would. */
void fx_grant(PGconn *conn, const char *schemas);
/* The same with virusdesk.uploads (id, account_id, scan_completed_at, purpose, email, name, content) and its trigger. */
PGconn *fx_uploads_db(const char *db);
/* A configuration for DB as TEST_DAEMON_ROLE: DAEMON_EXTRA inside daemon { }, then the POLICIES list's body. */
char *fx_config(const char *db, const char *daemon_extra, const char *policies);
/* One policy's group: NAME on TABLE, KEY, CLOCK, RETAIN, then EXTRA keys (malloc'd). */
char *fx_policy(const char *name, const char *table, const char *key, const char *clock, const char *retain,
		const char *extra);
/* One policy "virusdesk-scan-uploads" on virusdesk.uploads; EXTRA adds policy keys. */
char *fx_uploads_config(const char *db, const char *retain, const char *extra);
/* Rewrites the file at PATH with TEXT (for reloads). */
void fx_rewrite(const char *path, const char *text);

char *fx_log_path(const char *name);
pid_t fx_start_daemon(const char *conf, const char *log);
/* SIGTERM, then an exit with status 0 within 30 s. */
void fx_stop_daemon(pid_t pid);
/* The CPU seconds PID has used, user and system. */
double fx_cpu_seconds(pid_t pid);
int fx_run_once(const char *conf, char **out, char **err);
int fx_run_check(const char *conf, char **out, char **err);

/* Where a log ends now: fx_wait_for_log_after sees only what is written after it. */
long fx_log_mark(const char *log);
void fx_wait_for_log(const char *log, const char *needle, double seconds);
void fx_wait_for_log_after(const char *log, long mark, const char *needle, double seconds);
bool fx_log_has_after(const char *log, long mark, const char *needle);
/* Polls until A or B is logged after MARK (one of two outcomes); false after SECONDS. */
bool fx_wait_for_either_after(const char *log, long mark, const char *a, const char *b, double seconds);
/* Polls until NEEDLE occurs at least N times in the whole log; false after SECONDS. */
bool fx_wait_log_count(const char *log, const char *needle, int n, double seconds);
/* Polls until SQL (one boolean) is true; false after SECONDS. */
bool fx_poll_true(PGconn *conn, const char *sql, double seconds);
/* Where NEEDLE first occurs after MARK, as a mark; -1 if it does not. */
long fx_log_find(const char *log, long mark, const char *needle);
/* How often NEEDLE occurs after MARK and before the first STOP after it (or the end). */
int fx_log_count_between(const char *log, long mark, const char *stop, const char *needle);
/* How often NEEDLE occurs in the log after MARK. */
int fx_log_count_after(const char *log, long mark, const char *needle);

/* Whether the row of TABLE (qualified) whose column id = ID exists. */
bool fx_row_exists(PGconn *conn, const char *table, const char *id);
/* Polls until the row is gone; false after SECONDS. */
bool fx_wait_row_gone(PGconn *conn, const char *table, const char *id, double seconds);
long long fx_audit_count(PGconn *conn, const char *policy, const char *key);
/* Every policy's chain verified by retentionctl's own verifier, and each head at its chain's end. */
void fx_assert_chain_intact(PGconn *conn);
/* Every deleted key 1..ROWS of virusdesk.uploads has one audit row, every audited key is gone. */
void fx_assert_purge_atomic(PGconn *conn, int rows);
/* ROWS overdue uploads with 200-byte contents, clocked a millisecond apart. */
void fx_fill_backlog(PGconn *conn, int rows);

/* A policy of a configuration, prepared on a connection as the daemon prepares it. */
struct fx_policy {
	struct config *cfg;
	const struct policy *policy;
	struct policy_shape shape;
	struct policy_sql sql;
};
void fx_policy_prepare(struct fx_policy *fp, PGconn *conn, const char *conf, const char *name);
void fx_policy_free(struct fx_policy *fp);
/*
 * One batch of FP as the daemon runs it, on CONN, left uncommitted: BEGIN;
 * the policy's lock; lock the due rows; purge them. Returns how many were purged.
 */
long long fx_purge_uncommitted(PGconn *conn, struct fx_policy *fp);
/*
 * The server's clock now, as text: taken before a daemon starts, it tells its
 * session from one a finished run left behind (a backend outlives its client
 * for a moment).
 */
char *fx_server_now(PGconn *observer);
/* The server process id of the daemon's connection (application_name retentiond) opened after SINCE, polled for. */
int fx_daemon_backend(PGconn *observer, const char *since, double seconds);
/* Runs retentionctl -c CONF -d "dbname=DB" (the test server's superuser) ARGS...; NULL-terminated. */
int fx_ctl(const char *conf, const char *db, char **out, char **err, ...);
/* Polls until server process PID waits for a lock; false after SECONDS. */
bool fx_wait_backend_blocked(PGconn *observer, int pid, double seconds);

#endif
