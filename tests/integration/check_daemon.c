/*
 * retentiond against a real PostgreSQL: the due boundary, calendar months,
 * holds and their race, exemptions, NULL clocks, anonymisation, kill -9
 * atomicity, a server restart, reload, and two daemons on one backlog.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit.h"
#include "policy.h"
#include "schema.h"
#include "testutil.h"
#include "util.h"

/* ---- fixtures ---- */

static char *daemon_path(void) { return xasprintf("%s/src/retentiond", test_builddir()); }

/* A fresh database with the retention schema and a VirusDesk-like uploads table. */
static PGconn *uploads_db(const char *db)
{
	PGconn *conn = test_fresh_database(db);
	char *err = NULL;
	ck_assert_msg(schema_migrate(conn, &err) == 1, "migrate: %s", err);
	test_exec(conn, "CREATE SCHEMA virusdesk;"
			"CREATE TABLE virusdesk.uploads (id bigint PRIMARY KEY, account_id int,"
			" scan_completed_at timestamptz, purpose text, email text, name text, content bytea);"
			"CREATE INDEX ON virusdesk.uploads (scan_completed_at);"
			"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF scan_completed_at"
			" ON virusdesk.uploads FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()");
	return conn;
}

/* A configuration with one policy on virusdesk.uploads; EXTRA adds policy keys. */
static char *uploads_config(const char *db, const char *retain, const char *extra)
{
	char *text = xasprintf("database = { conninfo = \"dbname=%s\"; };\n"
			       "daemon = { instance = \"%s-1\"; resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
			       "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";\n"
			       "  source = \"privacy policy: VirusDesk, online scan\"; table = \"virusdesk.uploads\";\n"
			       "  key = \"id\"; clock = \"scan_completed_at\"; subject = \"account_id\";\n"
			       "  retain = \"%s\"; %s } );\n",
			       db, db, retain, extra);
	char *path = test_write_file(text);
	free(text);
	return path;
}

static char *log_path_for(const char *db)
{
	char *path = xasprintf("/tmp/retention-%s-%d.log", db, (int)getpid());
	unlink(path);
	return path;
}

static pid_t start_daemon(const char *conf, const char *log)
{
	char *bin = daemon_path();
	char *argv[] = {bin, "-c", (char *)conf, NULL};
	pid_t pid = test_spawn(argv, log);
	free(bin);
	return pid;
}

struct log_wait {
	const char *path;
	const char *needle;
};

static bool log_has(void *arg)
{
	struct log_wait *w = arg;
	return test_file_contains(w->path, w->needle);
}

static void wait_for_log(const char *path, const char *needle, double seconds)
{
	struct log_wait w = {path, needle};
	ck_assert_msg(test_poll(log_has, &w, seconds), "\"%s\" not logged within %.0f s in %s", needle,
		      seconds, path);
}

static void stop_daemon(pid_t pid)
{
	int status;
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	status = test_wait_exit(pid, 30);
	ck_assert_msg(status != -1, "daemon did not exit within 30 s of SIGTERM");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "daemon exit status %d", status);
}

static int run_once(const char *conf, char **out, char **err)
{
	char *bin = daemon_path();
	char *argv[] = {bin, "-c", (char *)conf, "--once", NULL};
	int status = test_run(argv, out, err);
	free(bin);
	return status;
}

static bool row_exists(PGconn *conn, const char *id)
{
	const char *params[1] = {id};
	char *v = test_query_value(conn, "SELECT 1 FROM virusdesk.uploads WHERE id = $1::bigint", 1, params);
	bool found = v != NULL;
	free(v);
	return found;
}

struct row_gone {
	PGconn *conn;
	const char *id;
};

static bool row_is_gone(void *arg)
{
	struct row_gone *r = arg;
	return !row_exists(r->conn, r->id);
}

static long long audit_count(PGconn *conn, const char *id)
{
	const char *params[1] = {id};
	char *v = test_query_value(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key = $1", 1,
				   params);
	long long n = atoll(v);
	free(v);
	return n;
}

/* Every policy's chain recomputed by the same SQL retentionctl audit verify uses. */
static void assert_chain_intact(PGconn *conn)
{
	const char *params[1] = {NULL};
	PGresult *res = PQexecParams(conn, audit_verify_sql, 1, NULL, params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	for (int r = 0; r < PQntuples(res); r++)
		ck_assert_msg(strcmp(PQgetvalue(res, r, 4), "t") == 0 && strcmp(PQgetvalue(res, r, 5), "t") == 0 &&
				      strcmp(PQgetvalue(res, r, 6), "t") == 0,
			      "chain broken at policy %s seq %s", PQgetvalue(res, r, 0), PQgetvalue(res, r, 2));
	PQclear(res);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log a JOIN retention.chain_heads h"
					     " USING (policy) GROUP BY h.seq HAVING max(a.seq) <> h.seq"
					     " UNION ALL SELECT 0"),
			 0);
}

/* ---- the due boundary ---- */

START_TEST(test_boundary_future_survives_past_purged)
{
	PGconn *conn = uploads_db("boundary");
	char *conf = uploads_config("boundary", "15 minutes", "");
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (1, 7, now() - interval '15 minutes' - interval '1 second'),"
			" (2, 7, now() - interval '1 hour'),"
			" (3, 7, now() - interval '15 minutes' + interval '1 second'),"
			" (4, 7, now())");
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "virusdesk-scan-uploads") && strstr(out, " 2 purged"), "%s", out);
	ck_assert(!row_exists(conn, "1"));
	ck_assert(!row_exists(conn, "2"));
	/* Due one second from now: not yet. */
	ck_assert(row_exists(conn, "3"));
	ck_assert(row_exists(conn, "4"));
	ck_assert_int_eq(audit_count(conn, "1"), 1);
	ck_assert_int_eq(audit_count(conn, "3"), 0);
	/* The audit row never predates the due moment. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE purged_at < due_at"), 0);
	assert_chain_intact(conn);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* A record falling due 2 s after start is purged within 1 s of its due time. */
START_TEST(test_purged_within_a_second_of_due)
{
	PGconn *conn = uploads_db("timely");
	char *conf = uploads_config("timely", "15 minutes", "");
	char *log = log_path_for("timely");
	struct row_gone gone = {conn, "11"};
	pid_t pid;
	double lateness;
	char *v;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (10, now() - interval '15 minutes' + interval '2 seconds')");
	pid = start_daemon(conf, log);
	wait_for_log(log, "next record due", 10);
	/* A clock started while the daemon sleeps with nothing due: NOTIFY must wake it. */
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (11, now() - interval '15 minutes' + interval '3 seconds')");
	ck_assert(test_poll(row_is_gone, &gone, 10));
	gone.id = "10";
	ck_assert(test_poll(row_is_gone, &gone, 10));
	v = test_query_value(conn, "SELECT extract(epoch FROM max(purged_at - due_at)) FROM retention.audit_log", 0, NULL);
	lateness = atof(v);
	ck_assert_msg(lateness >= 0 && lateness < 1.0, "purged %.3f s after due", lateness);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 2);
	stop_daemon(pid);
	free(v);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_calendar_month)
{
	PGconn *conn = uploads_db("calendar");
	char *conf = uploads_config("calendar", "1 month", "");
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (1, now() - interval '1 month' + interval '6 hours'),"
			" (2, now() - interval '1 month' - interval '1 second'),"
			/* 30 days is not a month: in most months this is not yet due. */
			" (3, now() - interval '1 month' + interval '1 day')");
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	ck_assert(row_exists(conn, "1"));
	ck_assert(!row_exists(conn, "2"));
	ck_assert(row_exists(conn, "3"));
	ck_assert_int_eq(audit_count(conn, "2"), 1);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* ---- exceptions ---- */

START_TEST(test_holds_exemptions_and_null_clocks)
{
	PGconn *conn = uploads_db("exceptions");
	char *conf = uploads_config("exceptions", "15 minutes",
				    "exempt = { column = \"purpose\"; values = [ \"vulnerability_monitoring\" ]; };");
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at, purpose) VALUES"
			" (1, 1, now() - interval '1 hour', NULL),"
			" (2, 2, now() - interval '1 hour', 'vulnerability_monitoring'),"
			" (3, 3, NULL, NULL),"
			" (4, 4, now() - interval '1 hour', NULL),"
			" (5, 5, now() - interval '1 hour', 'support'),"
			" (6, 6, now() - interval '1 hour', NULL),"
			" (7, 7, now() - interval '1 hour', NULL),"
			" (8, 8, now() - interval '1 hour', NULL);"
			"SELECT retention.place_hold('virusdesk-scan-uploads', '4', NULL, 'legal hold', NULL);"
			"SELECT retention.place_hold('virusdesk-scan-uploads', NULL, '6', 'subject restriction', NULL);"
			"SELECT retention.place_hold('virusdesk-scan-uploads', '7', NULL, 'expired', now() - interval '1 second');"
			"SELECT retention.release_hold(retention.place_hold('virusdesk-scan-uploads', '8', NULL, 'r', NULL), 'done');"
			"SELECT retention.place_hold('another-policy', '1', NULL, 'other policy', NULL);");
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	ck_assert(!row_exists(conn, "1"));
	ck_assert_msg(row_exists(conn, "2"), "exempt record purged");
	ck_assert_msg(row_exists(conn, "3"), "record with no clock purged");
	ck_assert_msg(row_exists(conn, "4"), "record held by key purged");
	ck_assert(!row_exists(conn, "5"));
	ck_assert_msg(row_exists(conn, "6"), "record held by subject purged");
	ck_assert_msg(!row_exists(conn, "7"), "a hold past its until still protects");
	ck_assert_msg(!row_exists(conn, "8"), "a released hold still protects");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 4);
	ck_assert_int_eq(audit_count(conn, "2") + audit_count(conn, "4") + audit_count(conn, "6"), 0);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_anonymize)
{
	PGconn *conn = uploads_db("anonymize");
	char *conf = uploads_config("anonymize", "15 minutes",
				    "action = \"anonymize\"; set_null = [ \"email\", \"content\" ];"
				    " set = ( { column = \"name\"; value = \"anonymous\"; },"
				    " { column = \"account_id\"; value = \"0\"; } );");
	char *out, *err, *v;
	test_exec(conn, "INSERT INTO virusdesk.uploads VALUES"
			" (1, 41, now() - interval '1 hour', NULL, 'a@example.org', 'Alice', 'file'),"
			" (2, 42, now(), NULL, 'b@example.org', 'Bob', 'file')");
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	v = test_query_value(conn, "SELECT format('%s|%s|%s|%s|%s', account_id, scan_completed_at IS NULL,"
				   " email IS NULL, name, content IS NULL) FROM virusdesk.uploads WHERE id = 1",
			     0, NULL);
	ck_assert_str_eq(v, "0|t|t|anonymous|t");
	free(v);
	v = test_query_value(conn, "SELECT format('%s|%s', email, name) FROM virusdesk.uploads WHERE id = 2", 0, NULL);
	ck_assert_str_eq(v, "b@example.org|Bob");
	free(v);
	v = test_query_value(conn, "SELECT action || ' ' || subject FROM retention.audit_log WHERE record_key = '1'", 0, NULL);
	ck_assert_str_eq(v, "anonymize 41");
	free(v);
	free(out);
	free(err);
	/* The clock was cleared: a second run does not anonymise (or audit) it again. */
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* A hold that ends, by its until or by release, lets its due record go at once, not at the next resync. */
START_TEST(test_hold_end_wakes_the_daemon)
{
	PGconn *conn = uploads_db("holdend");
	char *conf = uploads_config("holdend", "15 minutes", "");
	char *log = log_path_for("holdend");
	struct row_gone gone = {conn, "1"};
	double lateness;
	char *v;
	pid_t pid;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (1, now() - interval '1 hour'), (2, now() - interval '1 hour');"
			"SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'until soon', now() + interval '2 seconds');"
			"SELECT retention.place_hold('virusdesk-scan-uploads', '2', NULL, 'until released', NULL)");
	pid = start_daemon(conf, log);
	/* resync_interval is an hour: only the hold's end can wake the daemon in time. */
	ck_assert_msg(test_poll(row_is_gone, &gone, 10), "record not purged after its hold's until");
	v = test_query_value(conn, "SELECT extract(epoch FROM a.purged_at - h.until) FROM retention.audit_log a"
				   " JOIN retention.holds h ON h.record_key = a.record_key WHERE a.record_key = '1'",
			     0, NULL);
	lateness = atof(v);
	ck_assert_msg(lateness >= 0 && lateness < 1.0, "purged %.3f s after the hold ended", lateness);
	free(v);
	ck_assert(row_exists(conn, "2"));
	test_exec(conn, "SELECT retention.release_hold(id, 'case closed') FROM retention.holds WHERE record_key = '2'");
	gone.id = "2";
	ck_assert_msg(test_poll(row_is_gone, &gone, 5), "record not purged after its hold was released");
	stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* ---- the hold race, two connections driven step by step ---- */

struct waiting_lock {
	PGconn *conn;
};

static bool hold_is_waiting_for_lock(void *arg)
{
	struct waiting_lock *w = arg;
	return test_query_ll(w->conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 1;
}

/*
 * A purge deletes K but has not committed; a hold on K is placed meanwhile.
 * The hold must not be acknowledged before the purge commits (else an
 * acknowledged hold would be followed by the deletion). Without the shared
 * lock the hold commits at once and this test fails.
 */
START_TEST(test_hold_waits_for_purge_in_flight)
{
	PGconn *setup = uploads_db("holdrace");
	char *conf_path = uploads_config("holdrace", "15 minutes", "");
	struct config_errors errs = {NULL, 0};
	struct config *cfg = config_load(conf_path, &errs);
	PGconn *purger = PQconnectdb("dbname=holdrace");
	PGconn *holder = PQconnectdb("dbname=holdrace");
	struct policy_sql sql;
	struct waiting_lock w = {setup};
	PGresult *res;
	bool hold_done_before_commit;

	ck_assert_ptr_nonnull(cfg);
	test_exec(setup, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert(policy_sql_build(&sql, &cfg->policies[0], "virusdesk.uploads", "test", purger));

	test_exec(purger, "BEGIN");
	ck_assert_int_eq(test_query_ll(purger, "SELECT retention.try_lock_policy('virusdesk-scan-uploads')::int"), 1);
	res = PQexecParams(purger, sql.purge, sql.n_params, sql.types, sql.params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "1");
	PQclear(res);

	ck_assert(PQsendQuery(holder, "SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'legal', NULL)"));
	ck_assert_msg(test_poll(hold_is_waiting_for_lock, &w, 10), "hold placement did not wait for the purge's lock");
	PQconsumeInput(holder);
	hold_done_before_commit = !PQisBusy(holder);
	ck_assert(!hold_done_before_commit);

	test_exec(purger, "COMMIT");
	while ((res = PQgetResult(holder)) != NULL) {
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		PQclear(res);
	}
	/* The record went before the hold was acknowledged: the deletion is audited, the hold stands for the future. */
	ck_assert(!row_exists(setup, "1"));
	ck_assert_int_eq(audit_count(setup, "1"), 1);

	policy_sql_free(&sql);
	config_free(cfg);
	PQfinish(purger);
	PQfinish(holder);
	unlink(conf_path);
	free(conf_path);
	PQfinish(setup);
}
END_TEST

/* The other order: a hold committed first makes the purge that follows skip the record. */
START_TEST(test_hold_committed_first_protects)
{
	PGconn *setup = uploads_db("holdfirst");
	char *conf = uploads_config("holdfirst", "15 minutes", "");
	char *out, *err;
	PGconn *holder = PQconnectdb("dbname=holdfirst");
	test_exec(setup, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			 " (1, now() - interval '1 hour'), (2, now() - interval '1 hour')");
	test_exec(holder, "BEGIN; SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'legal', NULL)");
	/* While the hold's transaction is open the purge cannot take the policy's lock... */
	ck_assert_int_eq(run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "lock stayed held elsewhere") != NULL, "%s", err);
	ck_assert(row_exists(setup, "1") && row_exists(setup, "2"));
	free(out);
	free(err);
	test_exec(holder, "COMMIT");
	/* ...and once it committed, the purge sees it. */
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	ck_assert(row_exists(setup, "1"));
	ck_assert(!row_exists(setup, "2"));
	free(out);
	free(err);
	PQfinish(holder);
	unlink(conf);
	free(conf);
	PQfinish(setup);
}
END_TEST

/* ---- faults ---- */

static void fill_backlog(PGconn *conn, int rows)
{
	char *sql = xasprintf("INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at, content)"
			      " SELECT g, g %% 1000, now() - interval '1 day' + g * interval '1 millisecond',"
			      " convert_to(repeat('x', 200), 'UTF8') FROM generate_series(1, %d) g",
			      rows);
	test_exec(conn, sql);
	free(sql);
}

/* Every deleted key has exactly one audit row, every audited key is gone, the chain is whole. */
static void assert_purge_atomic(PGconn *conn, int rows)
{
	char *sql = xasprintf("SELECT count(*) FROM generate_series(1, %d) k"
			      " LEFT JOIN virusdesk.uploads u ON u.id = k"
			      " LEFT JOIN (SELECT record_key, count(*) AS n FROM retention.audit_log GROUP BY 1) a"
			      "   ON a.record_key = k::text"
			      " WHERE u.id IS NULL AND coalesce(a.n, 0) <> 1",
			      rows);
	ck_assert_int_eq(test_query_ll(conn, sql), 0);
	free(sql);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log a"
					     " JOIN virusdesk.uploads u ON u.id = a.record_key::bigint"),
			 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM (SELECT record_key FROM retention.audit_log"
					     " GROUP BY record_key HAVING count(*) > 1) d"),
			 0);
	assert_chain_intact(conn);
}

START_TEST(test_kill_9_never_splits_a_batch)
{
	const int rows = 50000, kills = 20;
	PGconn *conn = uploads_db("killnine");
	char *conf = uploads_config("killnine", "15 minutes", "batch = 200;");
	char *log = log_path_for("killnine");
	long long before, after;
	int killed_mid_backlog = 0;

	fill_backlog(conn, rows);
	srandom((unsigned)getpid());
	for (int i = 0; i < kills; i++) {
		pid_t pid;
		int status;
		before = test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads");
		unlink(log);
		pid = start_daemon(conf, log);
		wait_for_log(log, "connected to PostgreSQL", 10);
		/* A random moment within the purge: this sleep is the kill point, not a wait. */
		usleep((useconds_t)(random() % 150000));
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		status = test_wait_exit(pid, 10);
		ck_assert(status != -1 && WIFSIGNALED(status));
		after = test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads");
		killed_mid_backlog += after > 0 && after < before;
		assert_purge_atomic(conn, rows);
	}
	/* The kills must have landed while there was work, or the test proved nothing. */
	ck_assert_msg(killed_mid_backlog >= kills / 2, "only %d of %d kills hit a purge in progress",
		      killed_mid_backlog, kills);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* SIGTERM mid-backlog: the batch in flight commits (or rolls back), no new one starts, exit 0. */
START_TEST(test_sigterm_drains_mid_backlog)
{
	const int rows = 100000;
	PGconn *conn = uploads_db("drain");
	char *conf = uploads_config("drain", "15 minutes", "batch = 100;");
	char *log = log_path_for("drain");
	pid_t pid;
	int status;
	double asked;

	fill_backlog(conn, rows);
	pid = start_daemon(conf, log);
	wait_for_log(log, "purged 100 records", 20);
	asked = test_now();
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	status = test_wait_exit(pid, 10);
	ck_assert_msg(status != -1, "still running 10 s after SIGTERM");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
	ck_assert_msg(test_now() - asked < 5, "took %.1f s to stop", test_now() - asked);
	ck_assert(test_file_contains(log, "SIGTERM: finishing the batch in flight"));
	ck_assert_msg(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads") > 0, "the whole backlog went: the stop came too late to test anything");
	assert_purge_atomic(conn, rows);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_server_restart_resumes_purging)
{
	PGconn *conn = uploads_db("restart");
	char *conf = uploads_config("restart", "15 minutes", "");
	char *log = log_path_for("restart");
	char *harness = xasprintf("%s/tests/pg-harness", test_srcdir());
	char *argv[] = {harness, "restart", NULL};
	struct row_gone gone = {NULL, "2"};
	char *out, *err;
	pid_t pid;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	pid = start_daemon(conf, log);
	wait_for_log(log, "purged 1 record", 10);
	PQfinish(conn);
	ck_assert_msg(test_run(argv, &out, &err) == 0, "restart: %s", err);
	wait_for_log(log, "database connection lost", 10);
	conn = PQconnectdb("dbname=restart");
	ck_assert(PQstatus(conn) == CONNECTION_OK);
	gone.conn = conn;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (2, now() - interval '15 minutes' + interval '1 second')");
	ck_assert_msg(test_poll(row_is_gone, &gone, 20), "no purge after the server restarted");
	ck_assert_int_eq(audit_count(conn, "2"), 1);
	ck_assert_int_eq(kill(pid, 0), 0);
	stop_daemon(pid);
	free(out);
	free(err);
	free(harness);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_reload_adds_policy_and_survives_broken_file)
{
	PGconn *conn = uploads_db("reload");
	char *conf = uploads_config("reload", "15 minutes", "");
	char *log = log_path_for("reload");
	struct row_gone gone = {conn, "1"};
	FILE *f;
	pid_t pid;

	test_exec(conn, "CREATE SCHEMA chat; CREATE TABLE chat.messages (id int PRIMARY KEY, sent_at timestamptz);"
			"INSERT INTO chat.messages VALUES (1, now() - interval '91 days'), (2, now() - interval '89 days')");
	pid = start_daemon(conf, log);
	wait_for_log(log, "nothing pending", 10);

	/* A valid file with a second policy. */
	{
		char *text = xasprintf("database = { conninfo = \"dbname=reload\"; };\n"
				       "daemon = { instance = \"reload-1\"; resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
				       "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
				       "  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; },\n"
				       " { name = \"web-chat\"; service = \"Live Web Chat\"; source = \"s\";\n"
				       "  table = \"chat.messages\"; key = \"id\"; clock = \"sent_at\"; retain = \"90 days\"; } );\n");
		f = fopen(conf, "w");
		fputs(text, f);
		fclose(f);
		free(text);
	}
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_for_log(log, "configuration reloaded", 10);
	wait_for_log(log, "policy web-chat: purged 1 record", 10);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM chat.messages"), 1);

	/* A broken file: reported, and the policies in force keep running. */
	f = fopen(conf, "w");
	fputs("policies = ( { name = \"BROKEN\"; } );\n", f);
	fclose(f);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_for_log(log, "not reloaded", 10);
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '15 minutes' + interval '1 second')");
	ck_assert_msg(test_poll(row_is_gone, &gone, 10), "old policy stopped after a broken reload");

	/* Changed database settings: the daemon reconnects with them and carries on. */
	{
		char *text = xasprintf("database = { conninfo = \"dbname=reload\"; time_zone = \"Europe/Berlin\"; };\n"
				       "daemon = { instance = \"reload-1\"; resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
				       "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
				       "  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n");
		f = fopen(conf, "w");
		fputs(text, f);
		fclose(f);
		free(text);
	}
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_for_log(log, "database settings changed: reconnecting", 10);
	gone.id = "4";
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (4, now() - interval '15 minutes' + interval '1 second')");
	ck_assert_msg(test_poll(row_is_gone, &gone, 10), "no purge after reconnecting with new settings");

	/* libconfig's exit() on an @include of a directory must not take the daemon down either. */
	f = fopen(conf, "w");
	fputs("@include \".\"\n", f);
	fclose(f);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	wait_for_log(log, "parser gave up", 10);
	ck_assert_int_eq(kill(pid, 0), 0);
	gone.id = "3";
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (3, now() - interval '15 minutes' + interval '1 second')");
	ck_assert(test_poll(row_is_gone, &gone, 10));
	stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

static bool uploads_empty(void *arg)
{
	return test_query_ll(arg, "SELECT count(*) FROM virusdesk.uploads") == 0;
}

START_TEST(test_two_daemons_one_backlog)
{
	const int rows = 100000;
	PGconn *conn = uploads_db("twins");
	char *conf1 = uploads_config("twins", "15 minutes", "");
	char *log1 = log_path_for("twins1"), *log2 = log_path_for("twins2");
	char *conf2, *text;
	pid_t a, b;
	FILE *f;

	fill_backlog(conn, rows);
	/* The second instance differs only in its name. */
	conf2 = test_write_file("");
	text = xasprintf("database = { conninfo = \"dbname=twins\"; };\n"
			 "daemon = { instance = \"twins-2\"; resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
			 "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";\n"
			 "  source = \"privacy policy: VirusDesk, online scan\"; table = \"virusdesk.uploads\";\n"
			 "  key = \"id\"; clock = \"scan_completed_at\"; subject = \"account_id\"; retain = \"15 minutes\"; } );\n");
	f = fopen(conf2, "w");
	fputs(text, f);
	fclose(f);
	a = start_daemon(conf1, log1);
	b = start_daemon(conf2, log2);
	ck_assert_msg(test_poll(uploads_empty, conn, 120), "backlog not purged within 120 s");
	/* Both took part: each purged, or found the policy's lock held by the other. */
	ck_assert(test_file_contains(log1, "purged") || test_file_contains(log1, "lock held elsewhere"));
	ck_assert(test_file_contains(log2, "purged") || test_file_contains(log2, "lock held elsewhere"));
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), rows);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(DISTINCT record_key) FROM retention.audit_log"), rows);
	assert_purge_atomic(conn, rows);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.instances WHERE instance IN ('twins-1', 'twins-2')"), 2);
	stop_daemon(a);
	stop_daemon(b);
	free(text);
	unlink(conf2);
	free(conf2);
	unlink(log1);
	unlink(log2);
	free(log1);
	free(log2);
	unlink(conf1);
	free(conf1);
	PQfinish(conn);
}
END_TEST

/* A lock timeout rolls the batch back, is logged with the policy's name, and is retried. */
START_TEST(test_lock_timeout_rolls_back_and_retries)
{
	PGconn *conn = uploads_db("locktimeout");
	PGconn *app = PQconnectdb("dbname=locktimeout");
	char *conf = test_write_file("database = { conninfo = \"dbname=locktimeout\"; lock_timeout = \"200 ms\"; };\n"
				     "daemon = { resync_interval = \"1 hour\"; };\n"
				     "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
				     "  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";"
				     " retain = \"15 minutes\"; } );\n");
	char *log = log_path_for("locktimeout");
	struct row_gone gone = {conn, "1"};
	pid_t pid;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	/* EXCLUSIVE lets the next-due SELECT through but blocks the purge's row locks. */
	test_exec(app, "BEGIN; LOCK TABLE virusdesk.uploads IN EXCLUSIVE MODE");
	pid = start_daemon(conf, log);
	wait_for_log(log, "policy virusdesk-scan-uploads: purge statement failed, batch rolled back", 10);
	ck_assert(test_file_contains(log, "lock timeout"));
	ck_assert(row_exists(conn, "1"));
	ck_assert_int_eq(audit_count(conn, "1"), 0);
	test_exec(app, "COMMIT");
	ck_assert_msg(test_poll(row_is_gone, &gone, 40), "not retried after the lock was released");
	ck_assert_int_eq(audit_count(conn, "1"), 1);
	stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(app);
	PQfinish(conn);
}
END_TEST

/* Without its time zone the daemon purges nothing: calendar arithmetic would run in the wrong zone. */
START_TEST(test_unknown_time_zone_purges_nothing)
{
	PGconn *conn = uploads_db("badzone");
	char *conf = test_write_file("database = { conninfo = \"dbname=badzone\"; time_zone = \"Europe/Berlni\"; };\n"
				     "daemon = { resync_interval = \"1 second\"; };\n"
				     "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
				     "  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";"
				     " retain = \"15 minutes\"; } );\n");
	char *log = log_path_for("badzone");
	char *bin = daemon_path();
	char *check[] = {bin, "-c", conf, "--check", NULL};
	char *out, *err;
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert_int_eq(test_run(check, &out, &err), 1);
	ck_assert_msg(strstr(out, "database.time_zone: ERROR:  invalid value for parameter \"TimeZone\"") != NULL, "%s", out);
	free(out);
	free(err);
	pid = start_daemon(conf, log);
	wait_for_log(log, "setting up the session failed", 10);
	/* A resync came and tried again: still nothing purged. */
	ck_assert_msg(test_poll(log_has, &(struct log_wait){log, "database.time_zone a zone PostgreSQL knows?): ERROR"}, 5), "no retry");
	{
		struct log_wait w = {log, "policy virusdesk-scan-uploads: purged"};
		ck_assert(!log_has(&w));
	}
	ck_assert(row_exists(conn, "1"));
	stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	free(bin);
	PQfinish(conn);
}
END_TEST

/* The purge removes the rows it locked: not a child table's row with the same key, and a NULL key blocks nothing. */
START_TEST(test_purge_removes_exactly_the_locked_rows)
{
	PGconn *conn = uploads_db("ctidpurge");
	char *conf = uploads_config("ctidpurge", "15 minutes", "batch = 1;");
	char *out, *err;
	test_exec(conn, "CREATE TABLE virusdesk.uploads_archive () INHERITS (virusdesk.uploads);"
			"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour');"
			"INSERT INTO virusdesk.uploads_archive (id, scan_completed_at) VALUES (1, NULL)");
	ck_assert_int_eq(run_once(conf, &out, &err), 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM ONLY virusdesk.uploads"), 0);
	ck_assert_msg(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads_archive") == 1,
		      "a child row with the same key but no clock was purged");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* ---- systemd's notification protocol, and --check ---- */

/* Reads datagrams from FD until one contains WANT or SECONDS pass. */
static bool notified(int fd, const char *want, double seconds)
{
	double deadline = test_now() + seconds;
	char buf[1024];
	while (test_now() < deadline) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (strstr(buf, want))
			return true;
	}
	return false;
}

START_TEST(test_sd_notify_ready_watchdog_reload_stop)
{
	PGconn *conn = uploads_db("sdnotify");
	char *conf = uploads_config("sdnotify", "15 minutes", "");
	char *log = log_path_for("sdnotify");
	char *sock_path = xasprintf("/tmp/retention-notify-%d.sock", (int)getpid());
	struct sockaddr_un addr;
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	pid_t pid;

	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path);
	unlink(sock_path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	pid = start_daemon(conf, log);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	ck_assert_msg(notified(fd, "READY=1", 10), "no READY=1");
	ck_assert_msg(notified(fd, "STATUS=enforcing 1 policies", 10), "no STATUS once connected");
	/* Pinged at half the 200 ms interval: two pings well within a second. */
	ck_assert(notified(fd, "WATCHDOG=1", 1));
	ck_assert(notified(fd, "WATCHDOG=1", 1));
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	ck_assert_msg(notified(fd, "RELOADING=1", 10), "no RELOADING=1");
	ck_assert_msg(notified(fd, "READY=1", 10), "no READY=1 after the reload");
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_msg(notified(fd, "STOPPING=1", 10), "no STOPPING=1");
	ck_assert(test_wait_exit(pid, 10) == 0);
	close(fd);
	unlink(sock_path);
	free(sock_path);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_check_reports_catalog_problems)
{
	PGconn *conn = uploads_db("checkcat");
	char *bin = daemon_path();
	char *good = uploads_config("checkcat", "15 minutes", "");
	char *out, *err, *text, *bad;
	char *argv[] = {bin, "-c", good, "--check", NULL};
	ck_assert_int_eq(test_run(argv, &out, &err), 0);
	ck_assert_msg(strstr(out, "1 policies usable") != NULL, "%s%s", out, err);
	free(out);
	free(err);
	test_exec(conn, "CREATE TABLE public.noindex (id int, closed text);"
			"CREATE TABLE public.noindex2 (id int PRIMARY KEY, closed timestamptz)");
	text = xasprintf("database = { conninfo = \"dbname=checkcat\"; };\n"
			 "policies = ( { name = \"missing\"; service = \"s\"; source = \"s\"; table = \"nope.t\";"
			 " key = \"id\"; clock = \"c\"; retain = \"1 day\"; },\n"
			 " { name = \"wrong-types\"; service = \"s\"; source = \"s\"; table = \"noindex\";"
			 " key = \"id\"; clock = \"closed\"; subject = \"who\"; retain = \"1 day\"; },\n"
			 " { name = \"no-clock-index\"; service = \"s\"; source = \"s\"; table = \"noindex2\";"
			 " key = \"id\"; clock = \"closed\"; retain = \"1 day\"; } );\n");
	bad = test_write_file(text);
	argv[2] = bad;
	ck_assert_int_eq(test_run(argv, &out, &err), 1);
	ck_assert_msg(strstr(out, ":2: policy missing: error: table nope.t does not exist"), "%s", out);
	ck_assert_msg(strstr(out, "policy wrong-types: error: subject column who does not exist"), "%s", out);
	ck_assert_msg(strstr(out, "policy wrong-types: error: clock column closed is text"), "%s", out);
	ck_assert_msg(strstr(out, "policy wrong-types: error: key column id has no unique index"), "%s", out);
	ck_assert_msg(strstr(out, "policy no-clock-index: warning: no index leads with clock column closed"), "%s", out);
	ck_assert_msg(strstr(out, "no-clock-index: error") == NULL, "%s", out);
	free(out);
	free(err);
	unlink(bad);
	free(bad);
	free(text);
	unlink(good);
	free(good);
	free(bin);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("daemon");
	TCase *timing = tcase_create("timing");
	TCase *exceptions = tcase_create("exceptions");
	TCase *faults = tcase_create("faults");

	tcase_set_timeout(timing, 60);
	tcase_add_test(timing, test_boundary_future_survives_past_purged);
	tcase_add_test(timing, test_purged_within_a_second_of_due);
	tcase_add_test(timing, test_calendar_month);
	suite_add_tcase(s, timing);

	tcase_set_timeout(exceptions, 60);
	tcase_add_test(exceptions, test_holds_exemptions_and_null_clocks);
	tcase_add_test(exceptions, test_anonymize);
	tcase_add_test(exceptions, test_hold_end_wakes_the_daemon);
	tcase_add_test(exceptions, test_hold_waits_for_purge_in_flight);
	tcase_add_test(exceptions, test_hold_committed_first_protects);
	suite_add_tcase(s, exceptions);

	tcase_set_timeout(faults, 300);
	tcase_add_test(faults, test_kill_9_never_splits_a_batch);
	tcase_add_test(faults, test_sigterm_drains_mid_backlog);
	tcase_add_test(faults, test_server_restart_resumes_purging);
	tcase_add_test(faults, test_lock_timeout_rolls_back_and_retries);
	tcase_add_test(faults, test_unknown_time_zone_purges_nothing);
	tcase_add_test(faults, test_purge_removes_exactly_the_locked_rows);
	tcase_add_test(faults, test_reload_adds_policy_and_survives_broken_file);
	tcase_add_test(faults, test_two_daemons_one_backlog);
	tcase_add_test(faults, test_sd_notify_ready_watchdog_reload_stop);
	tcase_add_test(faults, test_check_reports_catalog_problems);
	suite_add_tcase(s, faults);

	return test_run_suite(s);
}
