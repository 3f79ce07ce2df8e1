/*
 * Data subjects' requests (issue 11): recording an erasure request and its
 * deadline, refusing bad input with nothing recorded, extending and
 * rejecting, and the daemon carrying erasure out through its batches.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "testutil.h"
#include "util.h"

/*
 * Three policies over two identity types: accounts (an integer in two
 * tables) and e-mail addresses (citext). EXTRA is added to the "tickets"
 * policy's group.
 */
static char *three_policies(const char *db, const char *tickets_extra)
{
	char *a = fx_policy("accounts", "app.accounts", "id", "deleted_at", "1 month",
			    "subject = \"id\"; identity = \"account\";");
	char *o = fx_policy("orders", "app.orders", "id", "placed_at", "1 year",
			    "subject = \"account_id\"; identity = \"account\";");
	char *t = fx_policy("tickets", "app.tickets", "id", "closed_at", "90 days", tickets_extra);
	char *policies = xasprintf("%s, %s, %s", a, o, t);
	char *conf = fx_config(db, NULL, policies);
	free(a);
	free(o);
	free(t);
	free(policies);
	return conf;
}

static PGconn *request_db(const char *db)
{
	PGconn *conn = fx_database(db);
	test_exec(conn,
		  "CREATE EXTENSION citext; CREATE SCHEMA app;"
		  "CREATE TABLE app.accounts (id int PRIMARY KEY, deleted_at timestamptz, email citext);"
		  "CREATE TABLE app.orders (id int PRIMARY KEY, account_id int, placed_at timestamptz);"
		  "CREATE TABLE app.tickets (id int PRIMARY KEY, email citext, closed_at timestamptz);"
		  "INSERT INTO app.accounts VALUES (4711, NULL, 'Alice@Example.org'), (4712, NULL, 'bob@example.org');"
		  "INSERT INTO app.orders VALUES (1, 4711, now()), (2, 4711, now()), (3, 4712, now());"
		  "INSERT INTO app.tickets VALUES (1, 'alice@example.org', NULL), (2, 'bob@example.org', NULL)");
	fx_grant(conn, "app");
	return conn;
}

#define TICKETS "subject = \"email\";"

/* The daemon on CONF, once its policy "tickets" has been looked up (the three-policy configurations). */
static pid_t start_daemon(const char *conf, const char *log)
{
	pid_t pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy tickets: ", 20);
	return pid;
}

/* Files an erasure request with the given identities (NULL-terminated); returns its id. */
static char *erase(const char *conf, const char *db, const char *a, const char *b)
{
	char *out, *err;
	int status = b ? fx_ctl(conf, db, &out, &err, "request", "erase", "--identity", a, "--identity", b, NULL)
		       : fx_ctl(conf, db, &out, &err, "request", "erase", "--identity", a, NULL);
	ck_assert_msg(status == 0, "%s", err);
	free(err);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

static bool wait_status(PGconn *conn, const char *id, const char *status, double seconds)
{
	char *sql = xasprintf("SELECT status = '%s' FROM retention.requests WHERE id = %s", status, id);
	bool ok = fx_poll_true(conn, sql, seconds);
	free(sql);
	return ok;
}


START_TEST(test_erase_records_the_request_and_its_deadline)
{
	PGconn *conn = request_db("req_record");
	char *conf = three_policies("req_record", TICKETS), *out, *err;
	ck_assert_msg(fx_ctl(conf, "req_record", &out, &err, "request", "erase", "--identity", "account=04711",
			     "--identity", "email=alice@example.org", "--received", "2026-10-31 10:00+00", "--note",
			     "ticket 99", NULL) == 0,
		      "%s", err);
	ck_assert_str_eq(out, "1\n");
	ck_assert_msg(strstr(err, "erasure request 1 recorded"), "%s", err);
	free(out);
	free(err);
	/* As typed (each policy reads it in its own column's type); one calendar month in the configuration's zone. */
	test_assert_query_value(conn,
				"SELECT string_agg(identity || '=' || value, ',' ORDER BY ord) FROM"
				" retention.request_identities WHERE request_id = 1",
				0, NULL, "account=04711,email=alice@example.org");
	test_assert_query_value(conn,
				"SELECT kind || ' ' || status || ' ' || to_char(deadline_at AT TIME ZONE 'UTC',"
				" 'YYYY-MM-DD HH24:MI') || ' ' || note FROM retention.requests WHERE id = 1",
				0, NULL, "erasure open 2026-11-30 10:00 ticket 99");
	ck_assert_int_eq(fx_ctl(conf, "req_record", &out, &err, "--format", "json", "request", "show", "1", NULL), 0);
	ck_assert_msg(strstr(out, "\"identities\":[{\"type\" : \"account\", \"value\" : \"04711\"}") ||
			      strstr(out, "\"identities\":[{\"type\":\"account\",\"value\":\"04711\"}"),
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(
		fx_ctl(conf, "req_record", &out, &err, "--format", "csv", "request", "list", "--overdue", NULL), 0);
	ck_assert_msg(strstr(out, "\n\"1\",\"erasure\",\"open\",") != NULL, "not overdue since 30 November? %s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_record", &out, &err, "status", NULL), 0);
	ck_assert_msg(strstr(err, "warning: 1 data subjects' requests are past their deadline"), "%s", err);
	free(out);
	free(err);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* Refused with one line, and nothing recorded. */
START_TEST(test_bad_requests_are_refused_with_nothing_recorded)
{
	static const struct {
		const char *identity;
		int status;
		const char *want;
	} cases[] = {
		{"phone=+4930", 1, "no policy in "},
		{"account=alice", 1, "account=alice: \"alice\" is not a value of policy accounts's subject column id"},
		{"account", 2, "--identity takes TYPE=VALUE"},
		{"=4711", 2, "--identity takes TYPE=VALUE"},
		{"account=", 2, "--identity takes TYPE=VALUE"},
	};
	PGconn *conn = request_db("req_refused");
	char *conf = three_policies("req_refused", TICKETS), *out, *err;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_int_eq(fx_ctl(conf, "req_refused", &out, &err, "request", "erase", "--identity",
					cases[i].identity, NULL),
				 cases[i].status);
		ck_assert_msg(strstr(err, cases[i].want), "%s: %s", cases[i].identity, err);
		free(out);
		free(err);
	}
	ck_assert_int_eq(fx_ctl(conf, "req_refused", &out, &err, "request", "erase", NULL), 2);
	ck_assert_msg(strstr(err, "request erase needs --identity"), "%s", err);
	free(out);
	free(err);
	{
		/* Received: a time, finite, not in the future (a deadline of infinity is never overdue). */
		static const char *const received[] = {"yesterday-ish", "infinity", "-infinity", "2100-01-01"};
		for (size_t i = 0; i < sizeof(received) / sizeof(received[0]); i++) {
			ck_assert_int_eq(fx_ctl(conf, "req_refused", &out, &err, "request", "erase", "--identity",
						"account=1", "--received", received[i], NULL),
					 1);
			free(out);
			free(err);
		}
	}
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.requests"), 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.request_identities"), 0);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* One calendar month in database.time_zone: month ends clamp, leap years count, DST moves the UTC hour. */
START_TEST(test_deadlines_are_one_calendar_month)
{
	static const struct {
		const char *received, *zone, *want; /* want: the deadline in that zone */
	} cases[] = {
		{"2025-01-31 12:00", "UTC", "2025-02-28 12:00"},
		{"2024-01-31 12:00", "UTC", "2024-02-29 12:00"},
		{"2024-02-29 12:00", "UTC", "2024-03-29 12:00"},
		{"2025-03-31 12:00", "UTC", "2025-04-30 12:00"},
		{"2025-12-31 23:30", "UTC", "2026-01-31 23:30"},
		/* Berlin: 1 March 00:30 CET is 28 February 23:30 UTC; a month later it is 1 April 00:30 CEST. */
		{"2026-03-01 00:30", "Europe/Berlin", "2026-04-01 00:30"},
		/* A deadline in the hour the clocks skip (29 March 2020, 02:00 to 03:00) lands after it. */
		{"2020-02-29 02:30", "Europe/Berlin", "2020-03-29 03:30"},
	};
	PGconn *conn = request_db("req_deadline");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *policy = fx_policy("accounts", "app.accounts", "id", "deleted_at", "1 month",
					 "subject = \"id\"; identity = \"account\";");
		char *text = xasprintf("database = { conninfo = \"dbname=req_deadline user=" TEST_DAEMON_ROLE "\";"
				       " time_zone = \"%s\"; };\npolicies = ( %s );\n",
				       cases[i].zone, policy);
		char *conf = test_write_file(text), *out, *err, *sql, *received;
		received = xasprintf("%s", cases[i].received);
		ck_assert_int_eq(fx_ctl(conf, "req_deadline", &out, &err, "request", "erase", "--identity",
					"account=4711", "--received", received, NULL),
				 0);
		sql = xasprintf("SELECT to_char(deadline_at AT TIME ZONE '%s', 'YYYY-MM-DD HH24:MI') FROM"
				" retention.requests WHERE id = %s",
				cases[i].zone, out);
		test_assert_query_value(conn, sql, 0, NULL, cases[i].want);
		free(sql);
		free(out);
		free(err);
		free(received);
		free(conf);
		free(text);
		free(policy);
	}
	PQfinish(conn);
}
END_TEST

/*
 * The schema's own check: a request is closed as done only when each
 * policy the daemon names has recorded that it finished; what was purged is
 * counted in the audit trail, not taken from the daemon.
 */
START_TEST(test_finish_erasure_needs_every_policy_finished)
{
	PGconn *conn = request_db("req_finish");
	char *conf = three_policies("req_finish", TICKETS), *id = erase(conf, "req_finish", "account=4711", NULL);
	test_assert_query_value(conn,
				"SELECT retention.request_progress(1, 'accounts', 0, NULL, true)::text || ' '"
				" || retention.request_progress(1, 'orders', 0, 'locked', false)::text",
				0, NULL, "true true");
	test_assert_query_value(conn, "SELECT retention.finish_erasure(1, ARRAY['accounts', 'orders'])", 0, NULL,
				"not finished in orders");
	test_assert_query_value(conn, "SELECT retention.finish_erasure(1, ARRAY['accounts', 'tickets'])", 0, NULL,
				"not finished in tickets");
	test_assert_query_value(conn, "SELECT retention.finish_erasure(1, NULL)", 0, NULL,
				"not finished in any policy");
	test_assert_query_value(conn, "SELECT status FROM retention.requests", 0, NULL, "open");
	test_exec(conn, "SELECT retention.request_progress(1, 'orders', 0, NULL, true)");
	test_assert_query_value(conn,
				"SELECT coalesce(retention.finish_erasure(1, ARRAY['accounts', 'orders']), 'closed')",
				0, NULL, "closed");
	test_assert_query_value(conn, "SELECT status FROM retention.requests", 0, NULL, "done");
	/* Closed: no more results are recorded, and it says so. */
	test_assert_query_value(conn, "SELECT retention.request_progress(1, 'orders', 5, NULL, true)::text", 0, NULL,
				"false");
	test_assert_query_value(conn, "SELECT kept::text FROM retention.request_results WHERE policy = 'orders'", 0,
				NULL, "0");
	free(id);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* Art. 12(3): at most two more months, with a reason; a closed request is not extended. */
START_TEST(test_extend_and_reject)
{
	PGconn *conn = request_db("req_extend");
	char *conf = three_policies("req_extend", TICKETS), *out, *err;
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "erase", "--identity", "account=4711",
				"--received", "2026-01-31 10:00+00", NULL),
			 0);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "extend", "1", "--until",
				"2026-05-01 10:00+00", "--reason", "many requests", NULL),
			 1);
	ck_assert_msg(strstr(err, "a deadline is at most three months after receipt"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "extend", "1", "--until",
				"2026-04-30 10:00+00", NULL),
			 2);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "extend", "1", "--until",
				"2026-04-30 10:00+00", "--reason", "many requests", NULL),
			 0);
	free(out);
	free(err);
	test_assert_query_value(conn,
				"SELECT to_char(deadline_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' '"
				" || extension_reason FROM retention.requests WHERE id = 1",
				0, NULL, "2026-04-30 10:00 many requests");
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "reject", "1", NULL), 2);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "reject", "1", "--reason",
				"identity not verified", NULL),
			 0);
	free(out);
	free(err);
	test_assert_query_value(conn,
				"SELECT status || ' ' || close_reason || ' ' || (completed_at IS NOT NULL)"
				" FROM retention.requests WHERE id = 1",
				0, NULL, "rejected identity not verified true");
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "reject", "1", "--reason", "again", NULL),
			 1);
	ck_assert_msg(strstr(err, "request 1 does not exist or is not open"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_extend", &out, &err, "request", "extend", "1", "--until",
				"2026-04-30 10:00+00", "--reason", "r", NULL),
			 1);
	ck_assert_msg(strstr(err, "request 1 is rejected, not open"), "%s", err);
	free(out);
	free(err);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* The requests role of docs/operations.md files, lists and closes requests as itself, with the grants printed. */
START_TEST(test_the_requests_role_handles_requests_as_itself)
{
	PGconn *conn = request_db("req_role");
	char *conf = three_policies("req_role", TICKETS), *out, *err;
	test_exec(conn, "DO $$ BEGIN CREATE ROLE req_privacy NOLOGIN; CREATE ROLE req_carol LOGIN IN ROLE req_privacy;"
			" EXCEPTION WHEN duplicate_object THEN NULL; END $$");
	ck_assert_int_eq(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "erase", "--identity",
				"account=4711", NULL),
			 1);
	ck_assert_msg(strstr(err, "role req_carol lacks a privilege that retentionctl request needs:"
				  " 'retentionctl grants --for requests' prints"),
		      "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(
		fx_ctl(conf, "req_role", &out, &err, "grants", "--for", "requests", "--role", "req_privacy", NULL), 0);
	test_exec(conn, out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "erase", "--identity",
				"account=4711", NULL),
			 0);
	free(out);
	free(err);
	ck_assert_int_eq(
		fx_ctl(conf, "req_role user=req_carol", &out, &err, "--format", "csv", "request", "list", NULL), 0);
	ck_assert_msg(strstr(out, "\"account=4711\"") && strstr(out, "\"req_carol\""), "%s", out);
	free(out);
	free(err);
	{
		char *until = test_query_value(conn,
					       "SELECT (received_at + interval '2 months')::text FROM"
					       " retention.requests WHERE id = 1",
					       0, NULL);
		ck_assert_msg(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "extend", "1", "--until",
				     until, "--reason", "many requests this month", NULL) == 0,
			      "%s", err);
		free(out);
		free(err);
		free(until);
	}
	ck_assert_int_eq(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "reject", "1", "--reason",
				"identity not verified", NULL),
			 0);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "restrict", "--identity",
				"account=04711", "--received", "2026-01-01 00:00+00", "--reason", "disputed", NULL),
			 0);
	ck_assert_str_eq(out, "2\n");
	free(out);
	free(err);
	/* As filed, or as the subject columns write it; a restriction is never overdue. */
	test_assert_query_value(conn,
				"SELECT retention.is_restricted('account', '04711')::text || ' '"
				" || retention.is_restricted('account', '4711')::text || ' '"
				" || retention.is_restricted('account', '4712')::text",
				0, NULL, "true true false");
	ck_assert_int_eq(fx_ctl(conf, "req_role user=req_carol", &out, &err, "--format", "csv", "request", "list",
				"--overdue", NULL),
			 0);
	ck_assert_msg(strstr(out, "restriction") == NULL, "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "lift", "2", "--reason",
				"resolved", NULL),
			 0);
	free(out);
	free(err);
	ck_assert_msg(fx_ctl(conf, "req_role user=req_carol", &out, &err, "request", "access", "--identity",
			     "account=4711", NULL) == 0,
		      "%s", err);
	ck_assert_msg(strstr(out, "\"policy\" : \"orders\"") || strstr(out, "\"policy\":\"orders\""), "%s", out);
	free(out);
	free(err);
	/* What it may not do: write the tables, or close a request as done. */
	{
		PGconn *carol = test_connect_db("req_role user=req_carol");
		PGresult *res = PQexec(carol, "SELECT retention.finish_erasure(1, NULL)");
		ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
		PQclear(res);
		res = PQexec(carol, "UPDATE retention.requests SET status = 'done'");
		ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
		PQclear(res);
		PQfinish(carol);
	}
	free(conf);
	PQfinish(conn);
}
END_TEST

/* ---- erasure, carried out by the daemon ---- */

/* CONF (a file) with an audit group using a new key at KEY. */
static void with_audit_key(const char *conf, const char *key)
{
	char *bin = xasprintf("%s/src/retentionctl", test_builddir());
	char *argv[] = {bin, "audit", "keygen", (char *)key, NULL};
	char *out, *err;
	FILE *f;
	ck_assert_msg(test_run(argv, &out, &err) == 0, "%s", err);
	free(out);
	free(err);
	free(bin);
	f = fopen(conf, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "audit = { key_file = \"%s\"; };\n", key);
	ck_assert_int_eq(fclose(f), 0);
}

/*
 * The acceptance case: one request, two identity types, three policies.
 * Every record of the subject goes at once, whatever its clock (the account
 * has none yet); a held one stays and the result says why; the audit rows
 * say cause request; the closed request keeps only pseudonyms.
 */
START_TEST(test_erasure_purges_the_subject_in_every_policy)
{
	PGconn *conn = request_db("erase_all");
	char *conf = three_policies("erase_all", TICKETS), *key = test_path("erase_all.key");
	char *log = fx_log_path("erase_all"), *out, *err, *id;
	pid_t pid;
	with_audit_key(conf, key);
	ck_assert_int_eq(fx_ctl(conf, "erase_all", &out, &err, "hold", "add", "--policy", "orders", "--key", "2",
				"--reason", "litigation", NULL),
			 0);
	free(out);
	free(err);
	pid = start_daemon(conf, log);
	id = erase(conf, "erase_all", "account=4711", "email=ALICE@example.org");
	ck_assert_msg(wait_status(conn, id, "done", 20), "request %s not done", id);
	/* The subject's records are gone, the held one and the other subject's stay. */
	test_assert_query_value(conn,
				"SELECT (SELECT string_agg(id::text, ',' ORDER BY id) FROM app.accounts) || ' / '"
				" || (SELECT string_agg(id::text, ',' ORDER BY id) FROM app.orders) || ' / '"
				" || (SELECT string_agg(id::text, ',' ORDER BY id) FROM app.tickets)",
				0, NULL, "4712 / 2,3 / 2");
	test_assert_query_value(
		conn,
		"SELECT string_agg(policy || ':' || purged || ':' || kept || ':' || coalesce(reason, '-')"
		" || ':' || finished, ' ' ORDER BY policy) FROM retention.request_results",
		0, NULL, "accounts:1:0:-:true orders:1:1:kept: held:true tickets:1:0:-:true");
	test_assert_query_value(conn,
				"SELECT string_agg(policy || ':' || cause || ':' || request_id || ':'"
				" || CASE WHEN clock_at IS NULL THEN 'no clock' ELSE 'clock' END, ' ' ORDER BY policy)"
				" FROM retention.audit_log",
				0, NULL,
				"accounts:request:1:no clock orders:request:1:clock tickets:request:1:no clock");
	fx_assert_chain_intact(conn);
	/* Closed: the daemon replaces the identities by the trail's pseudonyms. */
	ck_assert(fx_poll_true(conn,
			       "SELECT pseudonymized AND (SELECT bool_and(value LIKE 'hmac-sha256:%') FROM"
			       " retention.request_identities) FROM retention.requests",
			       20));
	/* The account's pseudonym is its audit rows' (the e-mail, citext, was asked for in another case). */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.request_identities i JOIN"
					     " retention.audit_log a ON a.subject = i.value"),
			 2);
	fx_stop_daemon(pid);
	free(id);
	free(log);
	free(key);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A record the request cannot take now (another transaction has it locked)
 * leaves the request open, and says so; a record of the subject written
 * meanwhile (a late sync) is caught too, and the request is done once both
 * are gone.
 */
START_TEST(test_a_request_stays_open_until_nothing_erasable_is_left)
{
	PGconn *conn = request_db("erase_open");
	PGconn *app = test_connect_db("erase_open");
	char *conf = three_policies("erase_open", TICKETS), *log = fx_log_path("erase_open"), *id;
	pid_t pid = start_daemon(conf, log);
	test_exec(app, "BEGIN; SELECT * FROM app.orders WHERE id = 1 FOR UPDATE");
	id = erase(conf, "erase_open", "account=4711", NULL);
	ck_assert(fx_poll_true(
		conn,
		"SELECT count(*) = 1 FROM retention.request_results WHERE policy = 'orders' AND NOT finished"
		" AND reason LIKE '1 record not purged yet%'",
		20));
	ck_assert(fx_poll_true(conn, "SELECT NOT EXISTS (SELECT FROM app.accounts WHERE id = 4711)", 20));
	test_assert_query_value(conn, "SELECT status FROM retention.requests", 0, NULL, "open");
	test_exec(conn, "INSERT INTO app.orders VALUES (10, 4711, now())");
	test_exec(app, "COMMIT");
	ck_assert_msg(wait_status(conn, id, "done", 30), "request %s not done", id);
	test_assert_query_value(conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM app.orders", 0, NULL, "3");
	test_assert_query_value(conn, "SELECT purged::text FROM retention.request_results WHERE policy = 'orders'", 0,
				NULL, "3");
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(id);
	free(log);
	free(conf);
	PQfinish(app);
	PQfinish(conn);
}
END_TEST

/*
 * A batch that fails mid-request (a trigger that raises for one record):
 * the others are purged, the request stays open and says why; once the
 * fault is fixed and the quarantined record retried, the record goes and
 * the request is done. A failure is never "done".
 */
START_TEST(test_a_failed_batch_leaves_the_request_open_until_the_fault_clears)
{
	PGconn *conn = request_db("erase_fault");
	char *conf = three_policies("erase_fault", TICKETS), *log = fx_log_path("erase_fault"), *id;
	pid_t pid;
	test_exec(conn, "CREATE TABLE app.fault (on_id int);"
			"INSERT INTO app.fault VALUES (2);"
			"CREATE FUNCTION app.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			"  IF EXISTS (SELECT FROM app.fault WHERE on_id = OLD.id) THEN"
			"    RAISE EXCEPTION 'order % is being invoiced', OLD.id; END IF; RETURN OLD; END $$;"
			"CREATE TRIGGER refuse BEFORE DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.refuse()");
	fx_grant(conn, "app");
	pid = start_daemon(conf, log);
	id = erase(conf, "erase_fault", "account=4711", NULL);
	ck_assert(fx_poll_true(
		conn,
		"SELECT count(*) = 1 FROM retention.request_results WHERE policy = 'orders' AND NOT finished"
		" AND reason = '1 record could not be purged (retentionctl quarantine list says why)'",
		20));
	ck_assert(fx_poll_true(conn, "SELECT NOT EXISTS (SELECT FROM app.orders WHERE id = 1)", 20));
	ck_assert(fx_row_exists(conn, "app.orders", "2"));
	test_assert_query_value(conn, "SELECT status FROM retention.requests", 0, NULL, "open");
	/* Fixed, and retried: the record is tried again. */
	test_exec(conn, "TRUNCATE app.fault");
	{
		char *out, *err;
		ck_assert_int_eq(
			fx_ctl(conf, "erase_fault", &out, &err, "quarantine", "retry", "--policy", "orders", NULL), 0);
		free(out);
		free(err);
	}
	ck_assert_msg(wait_status(conn, id, "done", 30), "request %s not done after the fault cleared", id);
	ck_assert(!fx_row_exists(conn, "app.orders", "2"));
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(id);
	free(log);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Review of the erasure path: a policy that cannot run (off until a reload:
 * a NOT NULL domain on a column it anonymizes) kept its part waiting
 * forever, and every later request with it. Its part is now recorded as not
 * finished, with the policy's problem, and the next request is carried out.
 */
START_TEST(test_a_policy_that_cannot_run_does_not_stall_other_requests)
{
	PGconn *conn = request_db("erase_stall");
	char *a = fx_policy("accounts", "app.accounts", "id", "deleted_at", "1 month",
			    "subject = \"id\"; identity = \"account\";");
	char *p = fx_policy(
		"prof", "app.prof", "id", "ts", "1 day",
		"subject = \"uid\"; identity = \"account\"; action = \"anonymize\"; set_null = [ \"nick\" ];");
	char *t = fx_policy("tickets", "app.tickets", "id", "closed_at", "90 days", TICKETS);
	char *policies = xasprintf("%s, %s, %s", a, p, t);
	char *conf = fx_config("erase_stall", NULL, policies), *log = fx_log_path("erase_stall"), *first, *second;
	pid_t pid;
	test_exec(conn, "CREATE DOMAIN app.nn AS text NOT NULL;"
			"CREATE TABLE app.prof (id int PRIMARY KEY, uid int, nick app.nn, ts timestamptz);"
			"INSERT INTO app.prof VALUES (1, 99, 'due', now() - interval '2 days'), (2, 4711, 'x', NULL)");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "does not run again until the daemon is reloaded", 20);
	first = erase(conf, "erase_stall", "account=4711", NULL);
	ck_assert(
		fx_poll_true(conn,
			     "SELECT count(*) = 1 FROM retention.request_results WHERE policy = 'prof' AND NOT finished"
			     " AND reason LIKE '%domain%'",
			     20));
	ck_assert(fx_poll_true(conn, "SELECT NOT EXISTS (SELECT FROM app.accounts WHERE id = 4711)", 20));
	second = erase(conf, "erase_stall", "email=bob@example.org", NULL);
	ck_assert_msg(wait_status(conn, second, "done", 20), "request %s stalled behind request %s", second, first);
	test_assert_query_value(conn, "SELECT status FROM retention.requests WHERE id = 1", 0, NULL, "open");
	fx_stop_daemon(pid);
	free(first);
	free(second);
	free(log);
	free(conf);
	free(policies);
	free(a);
	free(p);
	free(t);
	PQfinish(conn);
}
END_TEST

/*
 * Review: a request rejected while it was being carried out went on being
 * carried out. No batch of it starts once it is closed.
 */
START_TEST(test_a_rejected_request_is_not_carried_out_further)
{
	PGconn *conn = request_db("erase_reject");
	PGconn *app = test_connect_db("erase_reject");
	char *conf = three_policies("erase_reject", TICKETS), *log = fx_log_path("erase_reject"), *out, *err, *id,
	     *next;
	pid_t pid = start_daemon(conf, log);
	test_exec(app, "BEGIN; SELECT * FROM app.orders WHERE id = 1 FOR UPDATE");
	id = erase(conf, "erase_reject", "account=4711", NULL);
	ck_assert(fx_poll_true(
		conn, "SELECT count(*) = 1 FROM retention.request_results WHERE policy = 'orders' AND NOT finished",
		20));
	ck_assert_int_eq(fx_ctl(conf, "erase_reject", &out, &err, "request", "reject", id, "--reason",
				"identity not verified", NULL),
			 0);
	free(out);
	free(err);
	test_exec(app, "COMMIT");
	/* Requests are carried out in id order: once the next is done, the rejected one was passed over. */
	next = erase(conf, "erase_reject", "email=bob@example.org", NULL);
	ck_assert(wait_status(conn, next, "done", 30));
	ck_assert_msg(fx_row_exists(conn, "app.orders", "1"), "a rejected request's record was purged");
	test_assert_query_value(conn, "SELECT status FROM retention.requests WHERE id = 1", 0, NULL, "rejected");
	fx_stop_daemon(pid);
	free(id);
	free(next);
	free(log);
	free(conf);
	PQfinish(app);
	PQfinish(conn);
}
END_TEST

/*
 * Review: an identity the daemon's configuration does not declare (the
 * CLI's does) was ignored and the request called done; and the value was
 * stored as the first policy spelled it, so a text column never saw the
 * value as typed.
 */
START_TEST(test_every_identity_is_carried_out_as_typed)
{
	PGconn *conn = request_db("erase_typed");
	char *daemon_conf = three_policies("erase_typed", TICKETS);
	char *legacy = fx_policy("legacy", "app.legacy", "id", "c", "1 year",
				 "subject = \"account_ref\"; identity = \"account\";");
	char *phones = fx_policy("phones", "app.phones", "id", "c", "1 year", "subject = \"phone\";");
	char *a = fx_policy("accounts", "app.accounts", "id", "deleted_at", "1 month",
			    "subject = \"id\"; identity = \"account\";");
	char *both = xasprintf("%s, %s", a, legacy), *all = xasprintf("%s, %s, %s", a, legacy, phones);
	char *conf = fx_config("erase_typed", NULL, both), *ctl_conf = fx_config("erase_typed", NULL, all);
	char *log = fx_log_path("erase_typed"), *id, *out, *err;
	pid_t pid;
	test_exec(conn, "CREATE TABLE app.legacy (id int PRIMARY KEY, account_ref text, c timestamptz);"
			"INSERT INTO app.legacy VALUES (1, '04711', NULL), (2, '4711', NULL);"
			"CREATE TABLE app.phones (id int PRIMARY KEY, phone text, c timestamptz);"
			"INSERT INTO app.phones VALUES (1, '+4930123', NULL)");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy legacy: ", 20);
	ck_assert_int_eq(fx_ctl(ctl_conf, "erase_typed", &out, &err, "request", "erase", "--identity", "account=04711",
				"--identity", "phone=+4930123", NULL),
			 0);
	id = xstrndup(out, strcspn(out, "\n"));
	free(out);
	free(err);
	/* Each column reads 04711 in its own type: account 4711, and the text "04711". */
	ck_assert(fx_poll_true(conn, "SELECT NOT EXISTS (SELECT FROM app.accounts WHERE id = 4711)", 20));
	ck_assert(fx_poll_true(conn, "SELECT NOT EXISTS (SELECT FROM app.legacy WHERE id = 1)", 20));
	ck_assert(fx_row_exists(conn, "app.legacy", "2"));
	fx_wait_for_log(log, "no policy of this configuration declares identity phone", 20);
	test_assert_query_value(conn, "SELECT status FROM retention.requests", 0, NULL, "open");
	ck_assert(fx_row_exists(conn, "app.phones", "1"));
	fx_stop_daemon(pid);
	free(id);
	free(log);
	free(conf);
	free(ctl_conf);
	free(both);
	free(all);
	free(a);
	free(legacy);
	free(phones);
	free(daemon_conf);
	PQfinish(conn);
}
END_TEST

/* A policy with on_erasure = "keep" keeps the subject's records and records why; the others purge theirs. */
START_TEST(test_keep_and_exempt_keep_their_records_and_say_why)
{
	PGconn *conn = request_db("erase_keep");
	char *conf = three_policies("erase_keep", "subject = \"email\"; on_erasure = \"keep\";"
						  " erasure_exception = \"support law: tickets 2 years\";");
	char *log = fx_log_path("erase_keep"), *id;
	pid_t pid;
	test_exec(conn,
		  "ALTER TABLE app.orders ADD COLUMN kind text; UPDATE app.orders SET kind = 'legal' WHERE id = 2");
	fx_rewrite(conf, "");
	free(conf);
	{
		char *a = fx_policy("accounts", "app.accounts", "id", "deleted_at", "1 month",
				    "subject = \"id\"; identity = \"account\";");
		char *o = fx_policy("orders", "app.orders", "id", "placed_at", "1 year",
				    "subject = \"account_id\"; identity = \"account\";"
				    " exempt = { column = \"kind\"; values = [ \"legal\" ]; };");
		char *t = fx_policy("tickets", "app.tickets", "id", "closed_at", "90 days",
				    "subject = \"email\"; on_erasure = \"keep\";"
				    " erasure_exception = \"support law: tickets 2 years\";");
		char *policies = xasprintf("%s, %s, %s", a, o, t);
		conf = fx_config("erase_keep", NULL, policies);
		free(a);
		free(o);
		free(t);
		free(policies);
	}
	pid = start_daemon(conf, log);
	id = erase(conf, "erase_keep", "account=4711", "email=alice@example.org");
	ck_assert_msg(wait_status(conn, id, "done", 20), "request %s not done", id);
	test_assert_query_value(
		conn,
		"SELECT string_agg(policy || ':' || purged || ':' || kept || ':' || coalesce(reason, '-'),"
		" ' / ' ORDER BY policy) FROM retention.request_results",
		0, NULL,
		"accounts:1:0:- / orders:1:1:kept: exempt / tickets:0:1:kept (on_erasure = keep): support"
		" law: tickets 2 years");
	test_assert_query_value(conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM app.tickets", 0, NULL, "1,2");
	fx_stop_daemon(pid);
	free(id);
	free(log);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* ---- access ---- */

/* What python3's json module reads in the document at PATH, summarized by EXPR (over d): an independent parse. */
static char *json_summary(const char *path, const char *expr)
{
	char *code = xasprintf("import json, sys\nd = json.load(open(sys.argv[1]))\nprint(%s, end='')", expr);
	char *argv[] = {"/usr/bin/python3", "-c", code, (char *)path, NULL};
	char *out, *err;
	ck_assert_msg(test_run(argv, &out, &err) == 0, "%s", err);
	free(err);
	free(code);
	return out;
}

/*
 * Art. 15: every record of the subject in every matching policy, rendered
 * by PostgreSQL, with the moment its rule purges it, field by field; the
 * request is recorded, done.
 */
START_TEST(test_access_reports_every_record_and_when_it_goes)
{
	PGconn *conn = request_db("access");
	char *conf = three_policies("access", TICKETS), *out, *err, *doc, *got, *want, *due1, *due2;
	test_exec(conn, "UPDATE app.orders SET placed_at = '2026-03-31 12:00+00' WHERE id = 1;"
			"SELECT retention.place_hold('orders', '2', NULL, 'litigation', NULL)");
	ck_assert_msg(fx_ctl(conf, "access", &out, &err, "request", "access", "--identity", "account=4711",
			     "--identity", "email=alice@example.org", NULL) == 0,
		      "%s", err);
	doc = test_write_file(out);
	free(out);
	free(err);
	got = json_summary(doc, "d['kind'], d['id'], [(i['type'], i['value']) for i in d['identities']]");
	ck_assert_str_eq(got, "access 1 [('account', '4711'), ('email', 'alice@example.org')]");
	free(got);
	got = json_summary(doc, "' | '.join('%s %s %s %s: ' % (p['policy'], p['table'], p['retain'], p['action'])"
				" + ', '.join('%s %s %s' % (r['record']['id'], r['due_at'], r['held']) for r in"
				" p['records']) for p in d['policies'])");
	due1 = test_query_value(
		conn, "SELECT to_json(placed_at + interval '1 year') #>> '{}' FROM app.orders WHERE id = 1", 0, NULL);
	due2 = test_query_value(
		conn, "SELECT to_json(placed_at + interval '1 year') #>> '{}' FROM app.orders WHERE id = 2", 0, NULL);
	want = xasprintf("accounts app.accounts 1 month delete: 4711 None False | orders app.orders 1 year delete: 1 %s"
			 " False, 2 %s True | tickets app.tickets 90 days delete: 1 None False",
			 due1, due2);
	ck_assert_str_eq(got, want);
	ck_assert_str_eq(due1, "2027-03-31T12:00:00+00:00");
	free(got);
	/* The rows as PostgreSQL renders them, every column. */
	got = json_summary(doc, "d['policies'][0]['records'][0]['record']");
	ck_assert_str_eq(got, "{'id': 4711, 'deleted_at': None, 'email': 'Alice@Example.org'}");
	free(got);
	test_assert_query_value(
		conn, "SELECT kind || ' ' || status || ' ' || (completed_at IS NOT NULL) FROM retention.requests", 0,
		NULL, "access done true");
	/* Nothing of another subject. */
	ck_assert_int_eq(fx_ctl(conf, "access", &out, &err, "request", "access", "--identity", "account=4712", NULL),
			 0);
	ck_assert_msg(strstr(out, "4711") == NULL && strstr(out, "\"id\" : 3") == NULL && strstr(out, "\"id\":3"), "%s",
		      out);
	free(out);
	free(err);
	unlink(doc);
	free(doc);
	free(want);
	free(due1);
	free(due2);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* ---- restriction ---- */

/*
 * Restrict and a batch, step by step: the batch in flight locked one of the
 * subject's records; the restriction waits for it to commit, and from then
 * on no batch takes the subject's other records, until the restriction is
 * lifted. Its holds go only with it.
 */
START_TEST(test_a_restriction_waits_for_the_batch_in_flight_and_holds_after)
{
	PGconn *conn = fx_database("restrict");
	PGconn *purger = test_connect_db("restrict");
	char *policy =
		fx_policy("tickets", "app.tickets", "id", "closed_at", "1 day", "subject = \"email\"; batch = 1;");
	char *conf = fx_config("restrict", NULL, policy);
	char *ctl = xasprintf("%s/src/retentionctl", test_builddir());
	char *argv[] = {ctl,
			"-c",
			conf,
			"-d",
			"dbname=restrict",
			"request",
			"restrict",
			"--identity",
			"email=alice@example.org",
			"--reason",
			"accuracy disputed",
			NULL};
	char *log = fx_log_path("restrict-ctl"), *out, *err, *hold;
	struct fx_policy fp;
	int status;
	pid_t pid;
	test_exec(
		conn,
		"CREATE EXTENSION citext; CREATE SCHEMA app;"
		"CREATE TABLE app.tickets (id int PRIMARY KEY, email citext, closed_at timestamptz);"
		"INSERT INTO app.tickets VALUES (1, 'alice@example.org', now() - interval '3 days'),"
		" (2, 'Alice@Example.org', now() - interval '2 days'), (3, 'bob@example.org', now() - interval '2 days')");
	fx_grant(conn, "app");
	fx_policy_prepare(&fp, purger, conf, "tickets");
	ck_assert_int_eq(fx_purge_uncommitted(purger, &fp), 1);
	pid = test_spawn(argv, log);
	ck_assert_msg(fx_poll_true(conn,
				   "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'retentionctl'"
				   " AND wait_event_type = 'Lock'",
				   10),
		      "the restriction did not wait for the batch in flight");
	test_exec(purger, "COMMIT");
	status = test_wait_exit(pid, 10);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "request restrict exit status %d",
		      status);
	ck_assert(!fx_row_exists(conn, "app.tickets", "1"));
	/* From here on: the subject's other record stays, the other subject's goes. */
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_msg(fx_row_exists(conn, "app.tickets", "2"), "a restricted record was purged");
	ck_assert(!fx_row_exists(conn, "app.tickets", "3"));
	test_assert_query_value(conn, "SELECT retention.is_restricted('email', 'alice@example.org')::text", 0, NULL,
				"true");
	test_assert_query_value(conn, "SELECT retention.is_restricted('email', 'bob@example.org')::text", 0, NULL,
				"false");
	/* As the column writes it too: the citext column keeps the spelling filed here. */
	test_assert_query_value(conn, "SELECT retention.is_restricted('email', 'ALICE@example.org')::text", 0, NULL,
				"false");
	/* A restriction's hold is not released as a hold. */
	hold = test_query_value(conn, "SELECT id FROM retention.holds WHERE request_id = 1", 0, NULL);
	ck_assert_int_eq(fx_ctl(conf, "restrict", &out, &err, "hold", "release", hold, "--reason", "r", NULL), 1);
	ck_assert_msg(strstr(err, "belongs to restriction request 1: lift the request instead"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "restrict", &out, &err, "request", "lift", "1", "--reason", "corrected", NULL),
			 0);
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT status || ' ' || close_reason FROM retention.requests", 0, NULL,
				"lifted corrected");
	test_assert_query_value(conn, "SELECT retention.is_restricted('email', 'alice@example.org')::text", 0, NULL,
				"false");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	ck_assert(!fx_row_exists(conn, "app.tickets", "2"));
	ck_assert_int_eq(fx_ctl(conf, "restrict", &out, &err, "request", "lift", "1", "--reason", "again", NULL), 1);
	ck_assert_msg(strstr(err, "request 1 does not exist or is not an open restriction"), "%s", err);
	free(out);
	free(err);
	fx_assert_chain_intact(conn);
	fx_policy_free(&fp);
	free(hold);
	free(log);
	free(ctl);
	free(conf);
	free(policy);
	PQfinish(purger);
	PQfinish(conn);
}
END_TEST

/* An erasure keeps what a restriction holds, and says so. */
START_TEST(test_an_erasure_keeps_what_a_restriction_holds)
{
	PGconn *conn = request_db("erase_restricted");
	char *conf = three_policies("erase_restricted", TICKETS), *log = fx_log_path("erase_restricted"), *out, *err,
	     *id;
	pid_t pid;
	ck_assert_int_eq(fx_ctl(conf, "erase_restricted", &out, &err, "request", "restrict", "--identity",
				"email=alice@example.org", "--reason", "disputed", NULL),
			 0);
	free(out);
	free(err);
	pid = start_daemon(conf, log);
	id = erase(conf, "erase_restricted", "account=4711", "email=alice@example.org");
	ck_assert_msg(wait_status(conn, id, "done", 20), "request %s not done", id);
	ck_assert(fx_row_exists(conn, "app.tickets", "1"));
	test_assert_query_value(conn,
				"SELECT kept || ' ' || reason FROM retention.request_results WHERE policy = 'tickets'"
				" AND request_id = 2",
				0, NULL, "1 kept: held");
	fx_stop_daemon(pid);
	free(id);
	free(log);
	free(conf);
	PQfinish(conn);
}
END_TEST

static Suite *requests_suite(void)
{
	Suite *s = suite_create("requests");
	TCase *record = test_tcase("record", 120);
	TCase *erasure = test_tcase("erasure", 120);
	TCase *restriction = test_tcase("restriction", 120);
	tcase_add_test(record, test_erase_records_the_request_and_its_deadline);
	tcase_add_test(record, test_bad_requests_are_refused_with_nothing_recorded);
	tcase_add_test(record, test_deadlines_are_one_calendar_month);
	tcase_add_test(record, test_extend_and_reject);
	tcase_add_test(record, test_finish_erasure_needs_every_policy_finished);
	tcase_add_test(record, test_the_requests_role_handles_requests_as_itself);
	tcase_add_test(record, test_access_reports_every_record_and_when_it_goes);
	suite_add_tcase(s, record);
	tcase_add_test(erasure, test_erasure_purges_the_subject_in_every_policy);
	tcase_add_test(erasure, test_a_request_stays_open_until_nothing_erasable_is_left);
	tcase_add_test(erasure, test_a_failed_batch_leaves_the_request_open_until_the_fault_clears);
	tcase_add_test(erasure, test_keep_and_exempt_keep_their_records_and_say_why);
	tcase_add_test(erasure, test_an_erasure_keeps_what_a_restriction_holds);
	tcase_add_test(erasure, test_a_policy_that_cannot_run_does_not_stall_other_requests);
	tcase_add_test(erasure, test_a_rejected_request_is_not_carried_out_further);
	tcase_add_test(erasure, test_every_identity_is_carried_out_as_typed);
	suite_add_tcase(s, erasure);
	tcase_add_test(restriction, test_a_restriction_waits_for_the_batch_in_flight_and_holds_after);
	suite_add_tcase(s, restriction);
	return s;
}

int main(void) { return test_run_suite(requests_suite()); }
