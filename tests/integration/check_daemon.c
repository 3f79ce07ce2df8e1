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
#include "fixture.h"
#include "policy.h"
#include "schema.h"
#include "testutil.h"
#include "util.h"

static char *daemon_path(void) { return xasprintf("%s/src/retentiond", test_builddir()); }

/* ---- the due boundary ---- */

START_TEST(test_boundary_future_survives_past_purged)
{
	PGconn *conn = fx_uploads_db("boundary");
	char *conf = fx_uploads_config("boundary", "15 minutes", "");
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (1, 7, now() - interval '15 minutes' - interval '1 second'),"
			" (2, 7, now() - interval '1 hour'),"
			" (3, 7, now() - interval '15 minutes' + interval '1 second'),"
			" (4, 7, now())");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "virusdesk-scan-uploads") && strstr(out, " 2 purged"), "%s", out);
	ck_assert(!fx_row_exists(conn, "virusdesk.uploads", "1"));
	ck_assert(!fx_row_exists(conn, "virusdesk.uploads", "2"));
	/* Due one second from now: not yet. */
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "3"));
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "4"));
	ck_assert_int_eq(fx_audit_count(conn, NULL, "1"), 1);
	ck_assert_int_eq(fx_audit_count(conn, NULL, "3"), 0);
	/* The audit row never predates the due moment. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE purged_at < due_at"), 0);
	fx_assert_chain_intact(conn);
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
	PGconn *conn = fx_uploads_db("timely");
	char *conf = fx_uploads_config("timely", "15 minutes", "");
	char *log = fx_log_path("timely");
	pid_t pid;
	double lateness;
	char *v;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (10, now() - interval '15 minutes' + interval '2 seconds')");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "next record due", 10);
	/* A clock started while the daemon sleeps with nothing due: NOTIFY must wake it. */
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (11, now() - interval '15 minutes' + interval '3 seconds')");
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "11", 10));
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "10", 10));
	v = test_query_value(conn, "SELECT extract(epoch FROM max(purged_at - due_at)) FROM retention.audit_log", 0,
			     NULL);
	lateness = atof(v);
	ck_assert_msg(lateness >= 0 && lateness < 1.0, "purged %.3f s after due", lateness);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 2);
	fx_stop_daemon(pid);
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
	PGconn *conn = fx_uploads_db("calendar");
	char *conf = fx_uploads_config("calendar", "1 month", "");
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (1, now() - interval '1 month' + interval '6 hours'),"
			" (2, now() - interval '1 month' - interval '1 second'),"
			/* 30 days is not a month: in most months this is not yet due. */
			" (3, now() - interval '1 month' + interval '1 day')");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	ck_assert(!fx_row_exists(conn, "virusdesk.uploads", "2"));
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "3"));
	ck_assert_int_eq(fx_audit_count(conn, NULL, "2"), 1);
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
	PGconn *conn = fx_uploads_db("exceptions");
	char *conf =
		fx_uploads_config("exceptions", "15 minutes",
				  "exempt = { column = \"purpose\"; values = [ \"vulnerability_monitoring\" ]; };");
	char *out, *err;
	test_exec(
		conn,
		"INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at, purpose) VALUES"
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
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert(!fx_row_exists(conn, "virusdesk.uploads", "1"));
	ck_assert_msg(fx_row_exists(conn, "virusdesk.uploads", "2"), "exempt record purged");
	ck_assert_msg(fx_row_exists(conn, "virusdesk.uploads", "3"), "record with no clock purged");
	ck_assert_msg(fx_row_exists(conn, "virusdesk.uploads", "4"), "record held by key purged");
	ck_assert(!fx_row_exists(conn, "virusdesk.uploads", "5"));
	ck_assert_msg(fx_row_exists(conn, "virusdesk.uploads", "6"), "record held by subject purged");
	ck_assert_msg(!fx_row_exists(conn, "virusdesk.uploads", "7"), "a hold past its until still protects");
	ck_assert_msg(!fx_row_exists(conn, "virusdesk.uploads", "8"), "a released hold still protects");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 4);
	ck_assert_int_eq(
		fx_audit_count(conn, NULL, "2") + fx_audit_count(conn, NULL, "4") + fx_audit_count(conn, NULL, "6"), 0);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_anonymize)
{
	PGconn *conn = fx_uploads_db("anonymize");
	char *conf = fx_uploads_config("anonymize", "15 minutes",
				       "action = \"anonymize\"; set_null = [ \"email\", \"content\" ];"
				       " set = ( { column = \"name\"; value = \"anonymous\"; },"
				       " { column = \"account_id\"; value = \"0\"; } );");
	char *out, *err, *v, *xmin;
	test_exec(conn, "INSERT INTO virusdesk.uploads VALUES"
			" (1, 41, '2026-01-02 03:04:05.678901+00', NULL, 'a@example.org', 'Alice', 'file'),"
			" (2, 42, now(), NULL, 'b@example.org', 'Bob', 'file'),"
			/* Holds nothing anonymizing would clear: there is nothing to do, and nothing to audit. */
			" (3, 0, '2026-01-02 00:00:00+00', NULL, NULL, 'anonymous', NULL)");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	/* The clock stays as the application wrote it: a deleted account does not look live again. */
	v = test_query_value(
		conn,
		"SELECT format('%s|%s|%s|%s|%s', account_id, scan_completed_at = '2026-01-02 03:04:05.678901+00',"
		" email IS NULL, name, content IS NULL) FROM virusdesk.uploads WHERE id = 1",
		0, NULL);
	ck_assert_str_eq(v, "0|t|t|anonymous|t");
	free(v);
	v = test_query_value(conn, "SELECT format('%s|%s', email, name) FROM virusdesk.uploads WHERE id = 2", 0, NULL);
	ck_assert_str_eq(v, "b@example.org|Bob");
	free(v);
	v = test_query_value(conn, "SELECT action || ' ' || subject FROM retention.audit_log WHERE record_key = '1'", 0,
			     NULL);
	ck_assert_str_eq(v, "anonymize 41");
	free(v);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "anonymize", &out, &err, "--format", "json", "explain", "--policy",
				"virusdesk-scan-uploads", "--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"anonymized\"") &&
			      strstr(out, "\"clock_at\":\"2026-01-02T03:04:05.678901"),
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "anonymize", &out, &err, "explain", "--policy", "virusdesk-scan-uploads", "--key",
				"3", NULL),
			 0);
	ck_assert_msg(strstr(out, "nothing to anonymize"), "%s", out);
	free(out);
	free(err);
	/* The row itself says it stands anonymized: later runs leave it alone, after an unrelated write too. */
	test_exec(conn, "UPDATE virusdesk.uploads SET purpose = 'kept' WHERE id = 1");
	xmin = test_query_value(conn, "SELECT xmin::text FROM virusdesk.uploads WHERE id = 1", 0, NULL);
	for (int run = 0; run < 2; run++) {
		ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
		free(out);
		free(err);
	}
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	v = test_query_value(conn, "SELECT xmin::text FROM virusdesk.uploads WHERE id = 1", 0, NULL);
	ck_assert_str_eq(v, xmin);
	free(v);
	free(xmin);
	/* Personal data written into it again is past its retention too: anonymized, and audited, once more. */
	test_exec(conn, "UPDATE virusdesk.uploads SET email = 'new@example.org' WHERE id = 1");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key = '1'"), 2);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads WHERE email IS NOT NULL"), 1);
	free(out);
	free(err);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * F16: anonymized rows keep their clock, so they stay due by the clock.
 * Counted as due, they woke the daemon at once, for a batch that found
 * nothing, for ever; pending counted them overdue.
 */
START_TEST(test_anonymized_rows_leave_the_daemon_idle)
{
	PGconn *conn = fx_uploads_db("anonidle");
	char *conf = fx_uploads_config("anonidle", "15 minutes", "action = \"anonymize\"; set_null = [ \"email\" ];");
	char *log = fx_log_path("anonidle");
	char *out, *err, *sql, *since;
	pid_t pid;
	int backend;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at, email) VALUES"
			" (1, now() - interval '1 hour', 'a@example.org'), (2, now() - interval '2 hours', NULL),"
			" (3, now() + interval '1 hour', 'c@example.org')");
	since = fx_server_now(conn);
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT email IS NULL FROM virusdesk.uploads WHERE id = 1", 10));
	backend = fx_daemon_backend(conn, since, 10);
	free(since);
	/* Woken only by record 3, an hour from now: its session falls quiet. */
	sql = xasprintf("SELECT state = 'idle' AND state_change < now() - interval '1 second'"
			" FROM pg_stat_activity WHERE pid = %d",
			backend);
	ck_assert_msg(fx_poll_true(conn, sql, 10), "the daemon kept running statements after the anonymization");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	ck_assert_int_eq(fx_ctl(conf, "anonidle", &out, &err, "--format", "json", "pending", NULL), 0);
	ck_assert_msg(strstr(out, "\"overdue\":0") && strstr(out, "\"due_within\":1"), "%s", out);
	free(out);
	free(err);
	fx_stop_daemon(pid);
	free(sql);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* Runs what `retentionctl grants ARGS...` prints on CONN (a superuser's session). */
static void apply_grants(PGconn *conn, const char *conf, const char *db, const char *what, const char *role)
{
	char *out, *err;
	ck_assert_msg(fx_ctl(conf, db, &out, &err, "grants", "--for", what, "--role", role, NULL) == 0, "%s", err);
	ck_assert_msg(strstr(out, "GRANT "), "%s", out);
	test_exec(conn, out);
	free(out);
	free(err);
}

/* A session as ROLE on DB. */
static PGconn *connect_as(const char *db, const char *role)
{
	char *conninfo = xasprintf("dbname=%s user=%s", db, role);
	PGconn *conn = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
	free(conninfo);
	return conn;
}

/* SQL run by CONN fails for want of a privilege. */
static void assert_denied(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	ck_assert_msg(state && strcmp(state, "42501") == 0, "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

/*
 * F4, F5, F12 (first deployment): the guide's roles could not do what it
 * said. Each documented role now does its documented tasks as itself, with
 * exactly the grants `retentionctl grants` prints: the table owner attaches
 * the notify trigger, the daemon purges, a member of the legal group places,
 * lists and releases holds and explains and lists what is pending, a member
 * of the auditors' group reads and verifies the trail. Without its grants,
 * retentionctl says which role lacks a privilege and what prints the grants;
 * with them, no role can do another's job.
 */
START_TEST(test_every_documented_role_does_its_tasks_as_itself)
{
	PGconn *conn = fx_database("roles");
	char *policy =
		fx_policy("tickets", "support.tickets", "id", "closed_at", "1 day",
			  "subject = \"customer_id\"; exempt = { column = \"purpose\"; values = [ \"legal\" ]; };");
	/* The policies in a file everyone may read, included (relative: its directory) by the daemon's private one. */
	char *policies = xasprintf("policies = ( %s );\n", policy);
	char *people = test_write_file(policies);
	char *text = xasprintf("database = { conninfo = \"dbname=roles user=" TEST_DAEMON_ROLE "\"; };\n"
			       "daemon = { instance = \"roles-1\"; resync_interval = \"1 hour\"; };\n"
			       "@include \"%s\"\n",
			       strrchr(people, '/') + 1);
	char *conf = test_write_file(text);
	PGconn *owner, *alice, *bob;
	char *out, *err, *hold;

	test_exec(conn, "DO $$ BEGIN"
			"  CREATE ROLE roles_helpdesk LOGIN; CREATE ROLE roles_legal NOLOGIN;"
			"  CREATE ROLE roles_alice LOGIN IN ROLE roles_legal; CREATE ROLE roles_auditor NOLOGIN;"
			"  CREATE ROLE roles_bob LOGIN IN ROLE roles_auditor;"
			" EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
			"CREATE SCHEMA support AUTHORIZATION roles_helpdesk");
	owner = connect_as("roles", "roles_helpdesk");
	test_exec(owner, "CREATE TABLE support.tickets (id int PRIMARY KEY, customer_id int, closed_at timestamptz,"
			 " purpose text);"
			 "CREATE INDEX ON support.tickets (closed_at);"
			 "INSERT INTO support.tickets VALUES (1, 41, now() - interval '2 days', NULL),"
			 " (2, 42, now() - interval '2 days', NULL), (3, 43, now(), NULL),"
			 " (4, 44, now() - interval '2 days', 'legal')");
	/* The table owner: attaching the trigger needs USAGE on schema retention. */
	assert_denied(owner, "CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF closed_at ON support.tickets"
			     " FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()");
	apply_grants(conn, conf, "roles", "owner", "roles_helpdesk");
	test_exec(owner, "CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF closed_at ON support.tickets"
			 " FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()");

	/* Legal, before its grants: one line says whose privilege is missing and what prints the grants. */
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "explain", "--policy", "tickets", "--key",
				"2", NULL),
			 1);
	ck_assert_msg(strcmp(out, "") == 0, "%s", out);
	ck_assert_msg(
		strstr(err,
		       "role roles_alice lacks a privilege that retentionctl explain needs: 'retentionctl grants --for"
		       " holds' prints the GRANTs"),
		"%s", err);
	free(out);
	free(err);

	apply_grants(conn, conf, "roles", "daemon", TEST_DAEMON_ROLE);
	apply_grants(conn, conf, "roles", "holds", "roles_legal");
	apply_grants(conn, conf, "roles", "audit", "roles_auditor");

	/* The daemon's role: --check finds nothing missing, and it purges. */
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	free(out);
	free(err);
	/* Legal: holds record 2 before the daemon gets to it, and sees why it stays. */
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "hold", "add", "--policy", "tickets",
				"--key", "2", "--reason", "subpoena 7", NULL),
			 0);
	hold = xstrndup(out, strcspn(out, "\n"));
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "hold", "add", "--policy", "tickets",
				"--subject", "43", "--reason", "subpoena 8", NULL),
			 0);
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	free(out);
	free(err);
	ck_assert(!fx_row_exists(conn, "support.tickets", "1"));
	ck_assert(fx_row_exists(conn, "support.tickets", "2"));
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "--format", "json", "explain", "--policy",
				"tickets", "--key", "2", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"held\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "--format", "json", "explain", "--policy",
				"tickets", "--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"purged\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "--format", "json", "pending", NULL), 0);
	/* Record 2 by key, and record 3 (due within the day) by its subject. */
	ck_assert_msg(strstr(out, "\"overdue\":0") && strstr(out, "\"held\":2"), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "hold", "list", NULL), 0);
	ck_assert_msg(strstr(out, "subpoena 7") && strstr(out, "subpoena 8"), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_alice", &out, &err, "hold", "release", hold, "--reason",
				"closed", NULL),
			 0);
	ck_assert_msg(strstr(out, "purges it now"), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	free(out);
	free(err);
	ck_assert(!fx_row_exists(conn, "support.tickets", "2"));
	ck_assert(fx_row_exists(conn, "support.tickets", "4"));

	/* The auditor: reads and verifies the trail, and sees the instance. */
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_bob", &out, &err, "--format", "json", "audit", NULL), 0);
	ck_assert_msg(strstr(out, "\"record_key\":\"1\"") && strstr(out, "\"record_key\":\"2\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_bob", &out, &err, "audit", "verify", NULL), 0);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(people, "roles user=roles_bob", &out, &err, "status", NULL), 0);
	free(out);
	free(err);

	/* No role can do another's job. */
	alice = connect_as("roles", "roles_alice");
	bob = connect_as("roles", "roles_bob");
	assert_denied(alice, "DELETE FROM support.tickets");
	assert_denied(alice, "UPDATE retention.holds SET released_at = now()");
	assert_denied(alice, "SELECT * FROM retention.chain_heads");
	assert_denied(bob, "SELECT retention.place_hold('tickets', '3', NULL, 'r', NULL)");
	assert_denied(bob, "SELECT id FROM support.tickets");
	assert_denied(owner, "INSERT INTO retention.audit_log (policy) VALUES ('tickets')");

	PQfinish(alice);
	PQfinish(bob);
	PQfinish(owner);
	free(hold);
	free(policy);
	free(policies);
	free(people);
	free(text);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* A hold that ends, by its until or by release, lets its due record go at once, not at the next resync. */
START_TEST(test_hold_end_wakes_the_daemon)
{
	PGconn *conn = fx_uploads_db("holdend");
	char *conf = fx_uploads_config("holdend", "15 minutes", "");
	char *log = fx_log_path("holdend");
	double lateness;
	char *v;
	pid_t pid;

	test_exec(
		conn,
		"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
		" (1, now() - interval '1 hour'), (2, now() - interval '1 hour');"
		"SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'until soon', now() + interval '2 seconds');"
		"SELECT retention.place_hold('virusdesk-scan-uploads', '2', NULL, 'until released', NULL)");
	pid = fx_start_daemon(conf, log);
	/* resync_interval is an hour: only the hold's end can wake the daemon in time. */
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 10), "record not purged after its hold's until");
	v = test_query_value(conn,
			     "SELECT extract(epoch FROM a.purged_at - h.until) FROM retention.audit_log a"
			     " JOIN retention.holds h ON h.record_key = a.record_key WHERE a.record_key = '1'",
			     0, NULL);
	lateness = atof(v);
	ck_assert_msg(lateness >= 0 && lateness < 1.0, "purged %.3f s after the hold ended", lateness);
	free(v);
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "2"));
	test_exec(conn, "SELECT retention.release_hold(id, 'case closed') FROM retention.holds WHERE record_key = '2'");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "2", 5),
		      "record not purged after its hold was released");
	fx_stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * F8 (first deployment): `status` read last_purge and purged_total from the
 * heartbeat, written at each resync: a minute after the first purges it
 * still said none. The instance's row now follows purges within a second.
 */
START_TEST(test_status_follows_purges_within_a_second)
{
	PGconn *conn = fx_uploads_db("statusnow");
	char *conf = fx_uploads_config("statusnow", "15 minutes", "");
	char *log = fx_log_path("statusnow");
	pid_t pid;
	pid = fx_start_daemon(conf, log);
	/* resync_interval is an hour: only the purge can have moved the row. */
	ck_assert(fx_poll_true(conn, "SELECT EXISTS (SELECT 1 FROM retention.instances)", 10));
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour'),"
			" (2, now() - interval '1 hour')");
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 10));
	ck_assert_msg(fx_poll_true(conn,
				   "SELECT purged_total = 2 AND last_purge_at IS NOT NULL FROM retention.instances",
				   1.5),
		      "the instance's row did not follow the purge");
	fx_stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * F8 (first deployment): status showed nothing wrong while a policy failed
 * every batch. Each policy's state is in the instance's row within a second
 * of a change: enforcing, failing with what keeps it from purging, and
 * enforcing again once that is fixed.
 */
START_TEST(test_status_says_which_policy_fails_and_why)
{
	PGconn *conn = fx_uploads_db("statefail");
	char *ok = fx_policy("uploads", "virusdesk.uploads", "id", "scan_completed_at", "15 minutes", "");
	char *missing = fx_policy("gone", "virusdesk.nothing_here", "id", "c", "1 day", "");
	char *refused = fx_policy("refused", "virusdesk.refused", "id", "c", "1 day", "");
	char *policies = xasprintf("%s, %s, %s", ok, missing, refused);
	char *conf = fx_config("statefail", "resync_interval = \"2 seconds\";", policies);
	char *log = fx_log_path("statefail");
	char *out, *err;
	pid_t pid;
	test_exec(conn, "CREATE TABLE virusdesk.refused (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO virusdesk.refused VALUES (1, now() - interval '2 days');"
			"GRANT SELECT, UPDATE ON virusdesk.refused TO " TEST_DAEMON_ROLE);
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(
		fx_poll_true(conn,
			     "SELECT policy_states = '{enforcing,failing,failing}'"
			     " AND policy_problems[2] LIKE 'table virusdesk.nothing_here does not exist%'"
			     " AND policy_problems[3] = 'not purging: role " TEST_DAEMON_ROLE
			     " lacks DELETE on the table'"
			     " AND policy_problems[1] IS NULL"
			     " FROM retention.instances",
			     10),
		"the instance's row does not say which policy fails and why: %s",
		test_query_value(conn,
				 "SELECT policy_states::text || ' ' || policy_problems::text FROM retention.instances",
				 0, NULL));
	ck_assert_int_eq(fx_ctl(conf, "statefail", &out, &err, "status", NULL), 0);
	ck_assert_msg(strstr(out, "refused") && strstr(out, "failing") && strstr(out, "lacks DELETE on the table"),
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "statefail", &out, &err, "--format", "json", "status", NULL), 0);
	ck_assert_msg(strstr(out, "{\"policy\" : \"uploads\", \"state\" : \"enforcing\", \"problem\" : null}"), "%s",
		      out);
	free(out);
	free(err);
	/* Fixed: the next resync describes the table again and purges, and the row says so. */
	test_exec(conn, "GRANT DELETE ON virusdesk.refused TO " TEST_DAEMON_ROLE);
	ck_assert(fx_wait_row_gone(conn, "virusdesk.refused", "1", 30));
	ck_assert_msg(fx_poll_true(conn,
				   "SELECT policy_states[3] = 'enforcing' AND policy_problems[3] IS NULL"
				   " FROM retention.instances",
				   1.5),
		      "the instance's row did not follow the fix within a second");
	fx_stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	free(policies);
	free(ok);
	free(missing);
	free(refused);
	PQfinish(conn);
}
END_TEST

/* ---- the hold race, two connections driven step by step ---- */

/*
 * A purge deletes K but has not committed; a hold on K is placed meanwhile.
 * The hold must not be acknowledged before the purge commits (else an
 * acknowledged hold would be followed by the deletion). Without the shared
 * lock the hold commits at once and this test fails.
 */
START_TEST(test_hold_waits_for_purge_in_flight)
{
	PGconn *setup = fx_uploads_db("holdrace");
	char *conf = fx_uploads_config("holdrace", "15 minutes", "");
	PGconn *purger = test_connect_db("holdrace");
	PGconn *holder = test_connect_db("holdrace");
	struct fx_policy fp;
	PGresult *res;

	test_exec(setup, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	fx_policy_prepare(&fp, purger, conf, "virusdesk-scan-uploads");
	ck_assert_int_eq(fx_purge_uncommitted(purger, &fp), 1);

	ck_assert(
		PQsendQuery(holder, "SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'legal', NULL)"));
	ck_assert_msg(fx_wait_backend_blocked(setup, PQbackendPID(holder), 10),
		      "hold placement did not wait for the purge's lock");
	PQconsumeInput(holder);
	ck_assert_msg(PQisBusy(holder), "the hold was acknowledged while the purge was in flight");

	test_exec(purger, "COMMIT");
	while ((res = PQgetResult(holder)) != NULL) {
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
		PQclear(res);
	}
	/* The record went before the hold was acknowledged: the deletion is audited, the hold stands for the future. */
	ck_assert(!fx_row_exists(setup, "virusdesk.uploads", "1"));
	ck_assert_int_eq(fx_audit_count(setup, NULL, "1"), 1);

	fx_policy_free(&fp);
	PQfinish(purger);
	PQfinish(holder);
	free(conf);
	PQfinish(setup);
}
END_TEST

/* The other order: a hold committed first makes the purge that follows skip the record. */
START_TEST(test_hold_committed_first_protects)
{
	PGconn *setup = fx_uploads_db("holdfirst");
	char *conf = fx_uploads_config("holdfirst", "15 minutes", "");
	char *out, *err;
	PGconn *holder = test_connect_db("holdfirst");
	test_exec(setup, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			 " (1, now() - interval '1 hour'), (2, now() - interval '1 hour')");
	test_exec(holder, "BEGIN; SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'legal', NULL)");
	/* While the hold's transaction is open the purge cannot take the policy's lock... */
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "lock stayed held elsewhere") != NULL, "%s", err);
	ck_assert(fx_row_exists(setup, "virusdesk.uploads", "1") && fx_row_exists(setup, "virusdesk.uploads", "2"));
	free(out);
	free(err);
	test_exec(holder, "COMMIT");
	/* ...and once it committed, the purge sees it. */
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert(fx_row_exists(setup, "virusdesk.uploads", "1"));
	ck_assert(!fx_row_exists(setup, "virusdesk.uploads", "2"));
	free(out);
	free(err);
	PQfinish(holder);
	unlink(conf);
	free(conf);
	PQfinish(setup);
}
END_TEST

/* ---- faults ---- */

START_TEST(test_kill_9_never_splits_a_batch)
{
	const int rows = 50000, kills = 20;
	PGconn *conn = fx_uploads_db("killnine");
	char *conf = fx_uploads_config("killnine", "15 minutes", "batch = 200; guard_records = 0;");
	char *log = fx_log_path("killnine");
	long long before, after;
	int killed_mid_backlog = 0, stalled_starts = 0;

	fx_fill_backlog(conn, rows);
	srandom((unsigned)getpid());
	for (int i = 0; i < kills; i++) {
		pid_t pid;
		int status;
		before = test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads");
		/* A daemon with nothing due never logs a purge: the backlog is done, and so are the kills. */
		if (before == 0)
			break;
		unlink(log);
		pid = fx_start_daemon(conf, log);
		/*
		 * Once purging: the table is looked up first, which is not what this
		 * test is about. Under the load of parallel suites a restarted daemon
		 * has, three times in a day, logged nothing after "starting" for 30 s
		 * (it did not connect; not reproduced alone). Such a start is
		 * reported on stderr, with what the process and the server's sessions
		 * were doing, and tried again; more than two fail the test.
		 */
		if (!fx_wait_for_either_after(log, 0, "purged 200 records", "purged 200 records", 30)) {
			char *sessions = test_query_value(
				conn,
				"SELECT coalesce(string_agg(format('%s %s %s/%s %s', pid, state, wait_event_type, wait_event,"
				" left(query, 80)), '; '), '') FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
				0, NULL);
			char *proc = xasprintf("/proc/%d/wchan", (int)pid), wchan[128] = "";
			FILE *f = fopen(proc, "r");
			bool alive = waitpid(pid, &status, WNOHANG) == 0;
			if (f) {
				if (!fgets(wchan, sizeof(wchan), f))
					wchan[0] = '\0';
				fclose(f);
			}
			fprintf(stderr,
				"test_kill_9_never_splits_a_batch: no purge within 30 s of a restart, %lld records left;"
				" daemon %s (wchan %s); sessions: %s\n",
				test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads"), alive ? "alive" : "gone",
				wchan, sessions);
			free(proc);
			free(sessions);
			if (alive) {
				kill(pid, SIGKILL);
				test_wait_exit(pid, 10);
			}
			ck_assert_msg(++stalled_starts <= 2, "%d restarts did not purge within 30 s (see stderr)",
				      stalled_starts);
			i--;
			continue;
		}
		/* A random moment within the purge: this sleep is the kill point, not a wait. */
		usleep((useconds_t)(random() % 150000));
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		status = test_wait_exit(pid, 10);
		ck_assert(status != -1 && WIFSIGNALED(status));
		after = test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads");
		killed_mid_backlog += after > 0 && after < before;
		fx_assert_purge_atomic(conn, rows);
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
	PGconn *conn = fx_uploads_db("drain");
	char *conf = fx_uploads_config("drain", "15 minutes", "batch = 100; guard_records = 0;");
	char *log = fx_log_path("drain");
	pid_t pid;
	int status;
	double asked;

	fx_fill_backlog(conn, rows);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "purged 100 records", 20);
	asked = test_now();
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	status = test_wait_exit(pid, 10);
	ck_assert_msg(status != -1, "still running 10 s after SIGTERM");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
	ck_assert_msg(test_now() - asked < 5, "took %.1f s to stop", test_now() - asked);
	ck_assert(test_file_contains(log, "SIGTERM: finishing the batch in flight"));
	ck_assert_msg(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads") > 0,
		      "the whole backlog went: the stop came too late to test anything");
	fx_assert_purge_atomic(conn, rows);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

START_TEST(test_server_restart_resumes_purging)
{
	PGconn *conn = fx_uploads_db("restart");
	char *conf = fx_uploads_config("restart", "15 minutes", "");
	char *log = fx_log_path("restart");
	char *harness = xasprintf("%s/tests/pg-harness", test_srcdir());
	char *argv[] = {harness, "restart", NULL};
	char *out, *err;
	pid_t pid;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "purged 1 record", 10);
	PQfinish(conn);
	ck_assert_msg(test_run(argv, &out, &err) == 0, "restart: %s", err);
	fx_wait_for_log(log, "database connection lost", 10);
	conn = test_connect_db("restart");
	ck_assert(PQstatus(conn) == CONNECTION_OK);
	test_exec(
		conn,
		"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (2, now() - interval '15 minutes' + interval '1 second')");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "2", 20), "no purge after the server restarted");
	ck_assert_int_eq(fx_audit_count(conn, NULL, "2"), 1);
	ck_assert_int_eq(kill(pid, 0), 0);
	fx_stop_daemon(pid);
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
	PGconn *conn = fx_uploads_db("reload");
	char *conf = fx_uploads_config("reload", "15 minutes", "");
	char *log = fx_log_path("reload");
	FILE *f;
	pid_t pid;

	test_exec(conn,
		  "CREATE SCHEMA chat; CREATE TABLE chat.messages (id int PRIMARY KEY, sent_at timestamptz);"
		  "INSERT INTO chat.messages VALUES (1, now() - interval '91 days'), (2, now() - interval '89 days')");
	fx_grant(conn, "chat");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "nothing pending", 10);

	/* A valid file with a second policy. */
	{
		char *text = xasprintf(
			"database = { conninfo = \"user=" TEST_DAEMON_ROLE " dbname=reload\"; };\n"
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
	fx_wait_for_log(log, "configuration reloaded", 10);
	fx_wait_for_log(log, "policy web-chat: purged 1 record", 10);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM chat.messages"), 1);

	/* A broken file: reported, and the policies in force keep running. */
	f = fopen(conf, "w");
	fputs("policies = ( { name = \"BROKEN\"; } );\n", f);
	fclose(f);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log(log, "not reloaded", 10);
	test_exec(
		conn,
		"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '15 minutes' + interval '1 second')");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 10), "old policy stopped after a broken reload");

	/* Changed database settings: the daemon reconnects with them and carries on. */
	{
		char *text = xasprintf(
			"database = { conninfo = \"user=" TEST_DAEMON_ROLE
			" dbname=reload\"; time_zone = \"Europe/Berlin\"; };\n"
			"daemon = { instance = \"reload-1\"; resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
			"policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
			"  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n");
		f = fopen(conf, "w");
		fputs(text, f);
		fclose(f);
		free(text);
	}
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log(log, "database settings changed: reconnecting", 10);
	test_exec(
		conn,
		"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (4, now() - interval '15 minutes' + interval '1 second')");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "4", 10),
		      "no purge after reconnecting with new settings");

	/* libconfig's exit() on an @include of a directory must not take the daemon down either. */
	f = fopen(conf, "w");
	fputs("@include \".\"\n", f);
	fclose(f);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log(log, "parser gave up", 10);
	ck_assert_int_eq(kill(pid, 0), 0);
	test_exec(
		conn,
		"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (3, now() - interval '15 minutes' + interval '1 second')");
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "3", 10));
	fx_stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

static bool uploads_empty(void *arg) { return test_query_ll(arg, "SELECT count(*) FROM virusdesk.uploads") == 0; }

START_TEST(test_two_daemons_one_backlog)
{
	const int rows = 100000;
	PGconn *conn = fx_uploads_db("twins");
	char *conf1 = fx_uploads_config("twins", "15 minutes", "guard_records = 0;");
	char *log1 = fx_log_path("twins1"), *log2 = fx_log_path("twins2");
	char *conf2, *text;
	pid_t a, b;
	FILE *f;

	fx_fill_backlog(conn, rows);
	/* The second instance differs only in its name. */
	conf2 = test_write_file("");
	text = xasprintf(
		"database = { conninfo = \"user=" TEST_DAEMON_ROLE " dbname=twins\"; };\n"
		"daemon = { instance = \"twins-2\"; resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
		"policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";\n"
		"  source = \"privacy policy: VirusDesk, online scan\"; table = \"virusdesk.uploads\";\n"
		"  key = \"id\"; clock = \"scan_completed_at\"; subject = \"account_id\"; retain = \"15 minutes\";\n"
		"  guard_records = 0; } );\n");
	f = fopen(conf2, "w");
	fputs(text, f);
	fclose(f);
	a = fx_start_daemon(conf1, log1);
	b = fx_start_daemon(conf2, log2);
	ck_assert_msg(test_poll(uploads_empty, conn, 120), "backlog not purged within 120 s");
	/* Both took part: each purged, or found the policy's lock held by the other. */
	ck_assert(test_file_contains(log1, "purged") || test_file_contains(log1, "lock held elsewhere"));
	ck_assert(test_file_contains(log2, "purged") || test_file_contains(log2, "lock held elsewhere"));
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), rows);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(DISTINCT record_key) FROM retention.audit_log"), rows);
	fx_assert_purge_atomic(conn, rows);
	ck_assert_int_eq(
		test_query_ll(conn,
			      "SELECT count(*) FROM retention.instances WHERE instance IN ('twins-1', 'twins-2')"),
		2);
	fx_stop_daemon(a);
	fx_stop_daemon(b);
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
	PGconn *conn = fx_uploads_db("locktimeout");
	PGconn *app = test_connect_db("locktimeout");
	char *conf = test_write_file(
		"database = { conninfo = \"user=" TEST_DAEMON_ROLE
		" dbname=locktimeout\"; lock_timeout = \"200 ms\"; };\n"
		"daemon = { resync_interval = \"1 hour\"; };\n"
		"policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
		"  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";"
		" retain = \"15 minutes\"; } );\n");
	char *log = fx_log_path("locktimeout");
	pid_t pid;

	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	/* EXCLUSIVE lets the next-due SELECT through but blocks the purge's row locks. */
	test_exec(app, "BEGIN; LOCK TABLE virusdesk.uploads IN EXCLUSIVE MODE");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy virusdesk-scan-uploads: locking due records failed, batch rolled back", 10);
	ck_assert(test_file_contains(log, "lock timeout"));
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	ck_assert_int_eq(fx_audit_count(conn, NULL, "1"), 0);
	test_exec(app, "COMMIT");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 40), "not retried after the lock was released");
	ck_assert_int_eq(fx_audit_count(conn, NULL, "1"), 1);
	fx_stop_daemon(pid);
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
	PGconn *conn = fx_uploads_db("badzone");
	char *conf = test_write_file(
		"database = { conninfo = \"user=" TEST_DAEMON_ROLE
		" dbname=badzone\"; time_zone = \"Europe/Berlni\"; };\n"
		"daemon = { resync_interval = \"1 second\"; };\n"
		"policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";\n"
		"  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";"
		" retain = \"15 minutes\"; } );\n");
	char *log = fx_log_path("badzone");
	char *bin = daemon_path();
	char *check[] = {bin, "-c", conf, "--check", NULL};
	char *out, *err;
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert_int_eq(test_run(check, &out, &err), 1);
	ck_assert_msg(strstr(out, "database.time_zone: the server does not know time zone \"Europe/Berlni\"") != NULL,
		      "%s", out);
	free(out);
	free(err);
	pid = fx_start_daemon(conf, log);
	/* The zone is part of connecting: the server refuses the connection, and every retry. */
	fx_wait_for_log(log, "invalid value for parameter \"TimeZone\"", 10);
	fx_wait_for_log(log, "reconnecting to PostgreSQL", 10);
	ck_assert_int_eq(fx_log_count_after(log, 0, "connected to PostgreSQL"), 0);
	ck_assert(!fx_log_has_after(log, 0, "policy virusdesk-scan-uploads: purged"));
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	fx_stop_daemon(pid);
	unlink(log);
	free(log);
	unlink(conf);
	free(conf);
	free(bin);
	PQfinish(conn);
}
END_TEST

/* "UTC-3" is a zone the server accepts, as a POSIX rule three hours ahead of UTC: --check says so. */
START_TEST(test_check_warns_of_a_posix_zone)
{
	PGconn *conn = fx_uploads_db("posixzone");
	char *bin = daemon_path();
	const char *zones[] = {"America/Sao_Paulo", "UTC-3"};
	for (int i = 0; i < 2; i++) {
		char *text = xasprintf("database = { conninfo = \"user=" TEST_DAEMON_ROLE " dbname=posixzone\";"
				       " time_zone = \"%s\"; };\n"
				       "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";"
				       " source = \"s\"; table = \"virusdesk.uploads\"; key = \"id\";"
				       " clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n",
				       zones[i]);
		char *conf = test_write_file(text);
		char *check[] = {bin, "-c", conf, "--check", NULL};
		char *out, *err;
		ck_assert_int_eq(test_run(check, &out, &err), 0);
		if (i == 0)
			ck_assert_msg(strstr(out, "database.time_zone: warning") == NULL, "%s", out);
		else
			ck_assert_msg(strstr(out,
					     "database.time_zone: warning: \"UTC-3\" is not a named zone; the server"
					     " reads it as a POSIX rule"),
				      "%s", out);
		free(out);
		free(err);
		free(conf);
		free(text);
	}
	free(bin);
	PQfinish(conn);
}
END_TEST

/* The purge removes the rows it locked: not a child table's row with the same key, and a NULL key blocks nothing. */
START_TEST(test_purge_removes_exactly_the_locked_rows)
{
	PGconn *conn = fx_uploads_db("ctidpurge");
	char *conf = fx_uploads_config("ctidpurge", "15 minutes", "batch = 1;");
	char *out, *err;
	test_exec(conn, "CREATE TABLE virusdesk.uploads_archive () INHERITS (virusdesk.uploads);"
			"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour');"
			"INSERT INTO virusdesk.uploads_archive (id, scan_completed_at) VALUES (1, NULL)");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
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
	PGconn *conn = fx_uploads_db("sdnotify");
	char *conf = fx_uploads_config("sdnotify", "15 minutes", "");
	char *log = fx_log_path("sdnotify");
	char *sock_path = test_path("notify.sock");
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
	pid = fx_start_daemon(conf, log);
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
	PGconn *conn = fx_uploads_db("checkcat");
	char *bin = daemon_path();
	char *good = fx_uploads_config("checkcat", "15 minutes", "");
	char *out, *err, *text, *bad;
	char *argv[] = {bin, "-c", good, "--check", NULL};
	ck_assert_int_eq(test_run(argv, &out, &err), 0);
	ck_assert_msg(strstr(out, "1 policies usable") != NULL, "%s%s", out, err);
	ck_assert_msg(strstr(out, "notify_clock") == NULL, "%s", out);
	free(out);
	free(err);
	test_exec(
		conn,
		"CREATE TABLE public.noindex (id int, closed text);"
		"CREATE TABLE public.noindex2 (id int PRIMARY KEY, closed timestamptz);"
		"CREATE DOMAIN public.owners AS text[];"
		"CREATE TABLE public.arrays (id int PRIMARY KEY, closed timestamptz, tags text[], who public.owners)");
	fx_grant(conn, "public");
	text = xasprintf("database = { conninfo = \"user=" TEST_DAEMON_ROLE " dbname=checkcat\"; };\n"
			 "policies = ( { name = \"missing\"; service = \"s\"; source = \"s\"; table = \"nope.t\";"
			 " key = \"id\"; clock = \"c\"; retain = \"1 day\"; },\n"
			 " { name = \"wrong-types\"; service = \"s\"; source = \"s\"; table = \"noindex\";"
			 " key = \"id\"; clock = \"closed\"; subject = \"who\"; retain = \"1 day\"; },\n"
			 " { name = \"no-clock-index\"; service = \"s\"; source = \"s\"; table = \"noindex2\";"
			 " key = \"id\"; clock = \"closed\"; retain = \"1 day\"; },\n"
			 " { name = \"arrays\"; service = \"s\"; source = \"s\"; table = \"arrays\"; key = \"id\";"
			 " clock = \"closed\"; subject = \"who\"; retain = \"1 day\";"
			 " exempt = { column = \"tags\"; values = [ \"{legal}\" ]; }; } );\n");
	bad = test_write_file(text);
	argv[2] = bad;
	ck_assert_int_eq(test_run(argv, &out, &err), 1);
	ck_assert_msg(strstr(out, ":2: policy missing: error: table nope.t does not exist"), "%s", out);
	ck_assert_msg(strstr(out, "policy wrong-types: error: subject column who does not exist"), "%s", out);
	ck_assert_msg(strstr(out, "policy wrong-types: error: clock column closed is text"), "%s", out);
	ck_assert_msg(strstr(out, "policy wrong-types: error: key column id has no unique index"), "%s", out);
	ck_assert_msg(strstr(out, "policy no-clock-index: warning: no index leads with clock column closed"), "%s",
		      out);
	ck_assert_msg(strstr(out, "no-clock-index: error") == NULL, "%s", out);
	/* F17: without the trigger a new record may wait up to resync_interval; --check says how to attach it. */
	ck_assert_msg(
		strstr(out, "policy no-clock-index: warning: no trigger calls retention.notify_clock() on INSERT") &&
			strstr(out,
			       "CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF closed ON public.noindex2"
			       " FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()"),
		"%s", out);
	/* An array, or a domain over one, as subject or exempt column: refused, not failed at every batch. */
	ck_assert_msg(strstr(out, "policy arrays: error: subject column who is of type public.owners, an array"), "%s",
		      out);
	ck_assert_msg(strstr(out, "policy arrays: error: exempt column tags is of type text[], an array"), "%s", out);
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
	TCase *timing = test_tcase("timing", 60);
	TCase *exceptions = test_tcase("exceptions", 60);
	TCase *faults = test_tcase("faults", 300);

	tcase_add_test(timing, test_boundary_future_survives_past_purged);
	tcase_add_test(timing, test_purged_within_a_second_of_due);
	tcase_add_test(timing, test_calendar_month);
	suite_add_tcase(s, timing);

	tcase_add_test(exceptions, test_holds_exemptions_and_null_clocks);
	tcase_add_test(exceptions, test_anonymize);
	tcase_add_test(exceptions, test_anonymized_rows_leave_the_daemon_idle);
	tcase_add_test(exceptions, test_every_documented_role_does_its_tasks_as_itself);
	tcase_add_test(exceptions, test_hold_end_wakes_the_daemon);
	tcase_add_test(exceptions, test_status_follows_purges_within_a_second);
	tcase_add_test(exceptions, test_status_says_which_policy_fails_and_why);
	tcase_add_test(exceptions, test_hold_waits_for_purge_in_flight);
	tcase_add_test(exceptions, test_hold_committed_first_protects);
	suite_add_tcase(s, exceptions);

	tcase_add_test(faults, test_kill_9_never_splits_a_batch);
	tcase_add_test(faults, test_sigterm_drains_mid_backlog);
	tcase_add_test(faults, test_server_restart_resumes_purging);
	tcase_add_test(faults, test_lock_timeout_rolls_back_and_retries);
	tcase_add_test(faults, test_unknown_time_zone_purges_nothing);
	tcase_add_test(faults, test_check_warns_of_a_posix_zone);
	tcase_add_test(faults, test_purge_removes_exactly_the_locked_rows);
	tcase_add_test(faults, test_reload_adds_policy_and_survives_broken_file);
	tcase_add_test(faults, test_two_daemons_one_backlog);
	tcase_add_test(faults, test_sd_notify_ready_watchdog_reload_stop);
	tcase_add_test(faults, test_check_reports_catalog_problems);
	suite_add_tcase(s, faults);

	return test_run_suite(s);
}
