/*
 * check_guard.c -- rule versions and approval: a new or changed rule that
 * would newly make more than guard_records records due purges only what the
 * version in force also makes due until `retentionctl approve`; approvals
 * survive restarts and reloads; `pending --rule` counts what a
 * configuration would newly purge; an upgrade keeps enforcing.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "util.h"

/* app.t (id, c, flag): ROWS rows whose clock is DAYS days ago, ids from FIRST. */
static void add_rows(PGconn *conn, int first, int rows, int days)
{
	char *sql = xasprintf("INSERT INTO app.t SELECT g, now() - interval '%d days', NULL"
			      " FROM generate_series(%d, %d) g",
			      days, first, first + rows - 1);
	test_exec(conn, sql);
	free(sql);
}

static PGconn *guard_db(const char *db)
{
	PGconn *conn = fx_database(db);
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz, flag text);"
			"CREATE INDEX ON app.t (c);");
	fx_grant(conn, "app");
	return conn;
}

static char *guard_config(const char *db, const char *retain, const char *extra)
{
	char *policy = fx_policy("p", "app.t", "id", "c", retain, extra);
	char *conf = fx_config(db, NULL, policy);
	free(policy);
	return conf;
}

/* Replaces CONF by a configuration with RETAIN and EXTRA, and has daemon PID reload it. */
static void reload_as(const char *conf, const char *db, const char *retain, const char *extra, pid_t pid,
		      const char *log)
{
	char *next = guard_config(db, retain, extra);
	long mark = fx_log_mark(log);
	ck_assert_int_eq(rename(next, conf), 0);
	free(next);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "configuration reloaded", 10);
}

static long long count_rows(PGconn *conn) { return test_query_ll(conn, "SELECT count(*) FROM app.t"); }

/*
 * Done when: shortening 90 days to 7 days over 30,000 rows purges nothing
 * new until approval, then all of them; pending --rule counts them before
 * the reload; what both rules make due is purged meanwhile; the approval
 * survives a restart and a reload away and back.
 */
START_TEST(test_shortening_a_rule_waits_for_approval)
{
	PGconn *conn = guard_db("shorten");
	char *conf = guard_config("shorten", "90 days", NULL);
	char *seven = guard_config("shorten", "7 days", NULL);
	char *log = fx_log_path("shorten");
	char *out, *err;
	long mark;
	pid_t pid;

	add_rows(conn, 1, 30000, 30);
	add_rows(conn, 100001, 5, 100);
	pid = fx_start_daemon(conf, log);
	/* Five records newly due for a new policy: within guard_records, enforced, approved by no one. */
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 30000 FROM app.t", 20), "the 5 due records not purged");
	fx_wait_for_log(log, "policy p: rule version 1 newly makes 5 records due, no more than guard_records (10000)",
			1);
	test_assert_query_value(
		conn,
		"SELECT string_agg((enforced_at IS NOT NULL) || ' ' || (approved_at IS NULL), '; ') FROM"
		" retention.rule_versions WHERE policy = 'p'",
		0, NULL, "true true");

	/* What the 7-day rule would newly purge, before it is loaded. */
	ck_assert_int_eq(fx_ctl(conf, "shorten", &out, &err, "--format", "csv", "pending", "--rule", seven, NULL), 0);
	ck_assert_msg(strcmp(out, "policy,version,approved,newly_due,guard_records,waits_for_approval\n"
				  "\"p\",,\"false\",\"30000\",\"10000\",\"true\"\n") == 0,
		      "%s%s", out, err);
	free(out);
	free(err);

	/* One record due under both rules is purged while the change waits; the 30,000 stay. */
	add_rows(conn, 100010, 1, 95);
	mark = fx_log_mark(log);
	reload_as(conf, "shorten", "7 days", NULL, pid, log);
	fx_wait_for_log_after(
		log, mark,
		"policy p: rule version 2 would newly purge 30000 records, more than guard_records (10000);"
		" purging only what version 1 in force also makes due until it is approved",
		10);
	ck_assert_msg(fx_wait_row_gone(conn, "app.t", "100010", 10), "a record due under both rules was kept");
	ck_assert_int_eq(count_rows(conn), 30000);
	ck_assert_int_eq(fx_ctl(conf, "shorten", &out, &err, "--format", "csv", "pending", NULL), 0);
	/* Nothing overdue: the 30,000 wait for the approval, and are due under version 1 in two months. */
	ck_assert_msg(strstr(out, "\n\"p\",\"0\",\"0\",\"") && strstr(out, "\",\"0\",\"0\",\"0\",\"30000\"\n"), "%s%s",
		      out, err);
	free(out);
	free(err);
	ck_assert_int_eq(
		fx_ctl(conf, "shorten", &out, &err, "--format", "json", "explain", "--policy", "p", "--key", "7", NULL),
		0);
	ck_assert_msg(strstr(out, "\"status\":\"blocked\"") &&
			      strstr(out, "under rule version 2, which waits for approval (retentionctl approve)"),
		      "%s%s", out, err);
	free(out);
	free(err);
	/* The heartbeat follows the change of state within a second. */
	ck_assert(fx_poll_true(conn, "SELECT 'blocked' = ANY (policy_states) FROM retention.instances", 5));
	ck_assert_int_eq(fx_ctl(conf, "shorten", &out, &err, "--format", "json", "status", NULL), 0);
	ck_assert_msg(strstr(out, "\"blocked\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(count_rows(conn), 30000);

	/* A reason is required; then the 30,000 go, each audited. */
	ck_assert_int_eq(fx_ctl(conf, "shorten", &out, &err, "approve", "--policy", "p", NULL), 2);
	ck_assert_msg(strstr(err, "needs --reason"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "shorten", &out, &err, "approve", "--policy", "p", "--reason",
				"DPA-2026-14: chat logs kept 7 days", NULL),
			 0);
	ck_assert_msg(strstr(out, "policy p: rule version 2 approved; it newly makes 30000 records due"), "%s%s", out,
		      err);
	free(out);
	free(err);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.t", 60), "not purged after the approval");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE policy = 'p'"), 30006);
	test_assert_query_value(conn,
				"SELECT approved_count || ' ' || approved_reason || ' ' || (approved_by LIKE"
				" session_user || ' (retentionctl approve)') FROM retention.rule_versions WHERE id = 2",
				0, NULL, "30000 DPA-2026-14: chat logs kept 7 days true");
	ck_assert_int_eq(fx_ctl(conf, "shorten", &out, &err, "approve", "--policy", "p", "--reason", "again", NULL), 0);
	ck_assert_msg(strstr(out, "rule version 2 is approved already"), "%s", out);
	free(out);
	free(err);

	/* A restart does not block the approved version again. */
	fx_stop_daemon(pid);
	add_rows(conn, 200001, 15000, 30);
	mark = fx_log_mark(log);
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.t", 60), "approved version blocked at restart");
	/* Nor a reload back to version 1, and then to version 2 again. */
	add_rows(conn, 300001, 12000, 30);
	reload_as(conf, "shorten", "90 days", NULL, pid, log);
	reload_as(conf, "shorten", "7 days", NULL, pid, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.t", 60), "approved version blocked at reload");
	ck_assert(!fx_log_has_after(log, mark, "would newly purge"));
	test_assert_query_value(conn, "SELECT count(*) FROM retention.rule_versions", 0, NULL, "2");
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	unlink(seven);
	free(seven);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Done when: a new policy over a large table blocks, and --once obeys the
 * guard and says so; under the threshold nothing blocks.
 */
START_TEST(test_a_new_policy_over_a_large_table_blocks)
{
	PGconn *conn = guard_db("newpolicy");
	char *conf = guard_config("newpolicy", "1 day", "guard_records = 100;");
	char *log = fx_log_path("newpolicy");
	char *out, *err;
	pid_t pid;
	add_rows(conn, 1, 150, 3);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err,
			     "policy p: rule version 1 would newly purge 150 records, more than guard_records (100);"
			     " purging nothing (a new policy) until it is approved: retentionctl approve"
			     " --policy p --reason TEXT (--once obeys it too)"),
		      "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(count_rows(conn), 150);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "rule version 1 would newly purge 150 records", 10);
	ck_assert_int_eq(
		fx_ctl(conf, "newpolicy", &out, &err, "approve", "--policy", "p", "--reason", "first run", NULL), 0);
	free(out);
	free(err);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.t", 20), "not purged after the approval");
	fx_stop_daemon(pid);

	/* Under the threshold: a second policy-like change (a longer batch) is no change; 100 new due records purge. */
	add_rows(conn, 1001, 100, 3);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert_int_eq(count_rows(conn), 0);
	free(out);
	free(err);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Exempt values and clocks: removing an exempt value newly makes the records
 * it kept due, and while that waits the records neither version exempts are
 * purged and the ones the old version exempts are not; a changed clock
 * cannot be compared row by row, so nothing is purged until approval.
 */
START_TEST(test_an_exemption_removed_or_a_clock_changed_waits)
{
	PGconn *conn = guard_db("exempt");
	const char *both = "guard_records = 10; exempt = { column = \"flag\"; values = [ \"keep\", \"monitor\" ]; };";
	const char *one = "guard_records = 10; exempt = { column = \"flag\"; values = [ \"monitor\" ]; };";
	char *conf = guard_config("exempt", "1 day", both);
	char *log = fx_log_path("exempt");
	long mark;
	pid_t pid;
	add_rows(conn, 1, 30, 3);
	test_exec(conn, "UPDATE app.t SET flag = CASE WHEN id <= 20 THEN 'keep' WHEN id <= 25 THEN 'monitor' END");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 25 FROM app.t", 10));
	/* Twenty records kept for "keep" become due: more than 10. Record 40, exempt under neither, is purged. */
	add_rows(conn, 40, 1, 3);
	mark = fx_log_mark(log);
	reload_as(conf, "exempt", "1 day", one, pid, log);
	fx_wait_for_log_after(log, mark, "rule version 2 would newly purge 20 records", 10);
	ck_assert_msg(fx_wait_row_gone(conn, "app.t", "40", 10), "a record neither version exempts was kept");
	ck_assert_int_eq(count_rows(conn), 25);

	/* Another clock column: what both versions make due cannot be told row by row. */
	test_exec(conn, "ALTER TABLE app.t ADD COLUMN d timestamptz; UPDATE app.t SET d = now() - interval '3 days'");
	add_rows(conn, 50, 1, 3);
	test_exec(conn, "UPDATE app.t SET d = c WHERE id = 50");
	{
		char *policy = fx_policy("p", "app.t", "id", "d", "1 day", one);
		char *next = fx_config("exempt", NULL, policy);
		mark = fx_log_mark(log);
		ck_assert_int_eq(rename(next, conf), 0);
		ck_assert_int_eq(kill(pid, SIGHUP), 0);
		free(next);
		free(policy);
	}
	fx_wait_for_log_after(log, mark, "purging nothing (its table, clock or action is not version 1's)", 10);
	/* Record 50 is due under both clocks and exempt under neither, but the guard cannot know it: kept. */
	ck_assert(fx_row_exists(conn, "app.t", "50"));
	fx_stop_daemon(pid);
	ck_assert(fx_row_exists(conn, "app.t", "50"));
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * An upgrade never stops enforcement: a policy that ran before rule versions
 * were recorded (an audit chain, no version a daemon enforced, in the week
 * after the upgrade to schema 9) had its rule in force, which counts as
 * approved however many records are due. Later, such a policy added again
 * is a new policy.
 */
START_TEST(test_an_upgrade_keeps_enforcing)
{
	PGconn *conn = guard_db("upgrade8");
	char *conf = guard_config("upgrade8", "1 day", "guard_records = 10;");
	char *log = fx_log_path("upgrade8");
	char *out, *err;
	add_rows(conn, 1, 5, 3);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	free(out);
	free(err);
	/* As the upgrade from version 7 leaves it: a chain, no versions. */
	test_exec(conn, "DELETE FROM retention.rule_versions");
	add_rows(conn, 100, 50, 3);
	/* retentionctl records no preview as the rule that ran: the daemon does, with the rule it runs. */
	ck_assert_int_eq(fx_ctl(conf, "upgrade8", &out, &err, "approve", "--policy", "p", "--reason", "look", NULL), 1);
	ck_assert_msg(strstr(err, "policy p: it ran before rule versions were recorded"), "%s%s", out, err);
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT count(*) FROM retention.rule_versions", 0, NULL, "0");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert_msg(
		strstr(err, "recorded as the version in force: the rule in force before rule versions were recorded"),
		"%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(count_rows(conn), 0);
	/* In force, approved by no one: once another version was enforced, going back to it is counted. */
	test_assert_query_value(
		conn, "SELECT (approved_at IS NULL) || ' ' || (enforced_at IS NOT NULL) FROM retention.rule_versions",
		0, NULL, "true true");
	fx_assert_chain_intact(conn);
	{
		char *ninety = guard_config("upgrade8", "90 days", "guard_records = 10;");
		ck_assert_int_eq(fx_run_once(ninety, &out, &err), 0);
		free(out);
		free(err);
		add_rows(conn, 1000, 50, 30);
		ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
		ck_assert_msg(strstr(err, "would newly purge 50 records"), "%s", err);
		free(out);
		free(err);
		ck_assert_int_eq(count_rows(conn), 50);
		test_exec(conn, "DELETE FROM app.t");
		free(ninety);
	}
	/* A rule a daemon recorded (and never enforced), then changed: the change is counted, not taken as the one that ran. */
	test_exec(
		conn,
		"DELETE FROM retention.rule_versions;"
		"INSERT INTO retention.rule_versions (policy, rule, rule_hash, frame_hash, retain, started_by, started_at)"
		" VALUES ('p', '{}', '\\x01', '\\x01', '90 days', 'upgrade8-1', now())");
	add_rows(conn, 3000, 50, 30);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "would newly purge 50 records"), "%s", err);
	free(out);
	free(err);
	test_exec(conn, "DELETE FROM app.t");
	/* Added again a week after the upgrade, with no version enforced: a new policy. */
	test_exec(conn,
		  "DELETE FROM retention.rule_versions;"
		  "UPDATE retention.schema_version SET applied_at = applied_at - interval '8 days' WHERE version = 9");
	add_rows(conn, 2000, 50, 30);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "would newly purge 50 records"), "%s", err);
	free(out);
	free(err);
	test_exec(conn, "DELETE FROM app.t");
	/* The name of a policy that ran, now on another table: a new policy, not the rule that ran. */
	test_exec(conn, "DELETE FROM retention.rule_versions;"
			"UPDATE retention.schema_version SET applied_at = now() WHERE version = 9;"
			/* Its old table dropped, too: the name its last audit row gives no longer resolves. */
			"DROP TABLE app.t;"
			"CREATE TABLE app.big (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO app.big SELECT g, now() - interval '400 days' FROM generate_series(1, 50) g");
	fx_grant(conn, "app");
	{
		char *policy = fx_policy("p", "app.big", "id", "c", "1 day", "guard_records = 10;");
		char *big = fx_config("upgrade8", NULL, policy);
		ck_assert_int_eq(fx_run_once(big, &out, &err), 1);
		ck_assert_msg(strstr(err, "rule version") && strstr(err, "would newly purge 50 records"), "%s", err);
		ck_assert_msg(!strstr(err, "the rule in force before"), "%s", err);
		free(out);
		free(err);
		free(policy);
		free(big);
	}
	test_assert_query_value(conn, "SELECT count(*) FROM app.big", 0, NULL, "50");
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* Runs what `retentionctl grants --for WHAT --role ROLE` prints, as the superuser of CONN. */
static void apply_grants(PGconn *conn, const char *conf, const char *db, const char *what, const char *role)
{
	char *out, *err;
	ck_assert_msg(fx_ctl(conf, db, &out, &err, "grants", "--for", what, "--role", role, NULL) == 0, "%s", err);
	test_exec(conn, out);
	free(out);
	free(err);
}

/*
 * The documented role for approvals does its tasks as itself: without its
 * grants retentionctl says what prints them; with them its member lists
 * what waits and approves it, and the approval names the member.
 */
START_TEST(test_the_rules_role_approves_as_itself)
{
	PGconn *conn = guard_db("dporole");
	char *conf = guard_config("dporole", "1 day", "guard_records = 5;");
	char *out, *err;
	add_rows(conn, 1, 10, 3);
	test_exec(conn,
		  "DO $$ BEGIN CREATE ROLE dporole_dpo NOLOGIN; CREATE ROLE dporole_carol LOGIN IN ROLE dporole_dpo;"
		  " EXCEPTION WHEN duplicate_object THEN NULL; END $$");
	ck_assert_int_eq(fx_ctl(conf, "dporole user=dporole_carol", &out, &err, "approve", "--policy", "p", "--reason",
				"first run", NULL),
			 1);
	ck_assert_msg(strstr(err, "role dporole_carol lacks a privilege that retentionctl approve needs:"
				  " 'retentionctl grants --for rules' prints the GRANTs"),
		      "%s", err);
	free(out);
	free(err);
	apply_grants(conn, conf, "dporole", "rules", "dporole_dpo");
	ck_assert_int_eq(fx_ctl(conf, "dporole user=dporole_carol", &out, &err, "--format", "csv", "pending", NULL), 0);
	ck_assert_msg(strstr(out, "\"10\"\n"), "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "dporole user=dporole_carol", &out, &err, "approve", "--policy", "p", "--reason",
				"first run", NULL),
			 0);
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT approved_by || ' ' || approved_count FROM retention.rule_versions", 0,
				NULL, "dporole_carol (retentionctl approve) 10");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert_int_eq(count_rows(conn), 0);
	free(out);
	free(err);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Done when: a rate of 2,000/s stretches a 10,000-record backlog to at least
 * 5 s while a record of another policy falling due meanwhile is purged within
 * 1 s of its due time.
 */
START_TEST(test_a_rate_limit_holds_back_backlog_not_records_falling_due)
{
	PGconn *conn = guard_db("rate");
	char *a = fx_policy("a", "app.t", "id", "c", "1 day", "guard_records = 0;");
	char *b = fx_policy("b", "app.fresh", "id", "c", "3 seconds", "guard_records = 0;");
	char *policies = xasprintf("%s, %s", a, b);
	char *conf = fx_config("rate", "max_purge_rate = 2000;", policies);
	char *log = fx_log_path("rate");
	double started, took;
	char *late;
	pid_t pid;
	test_exec(conn, "CREATE TABLE app.fresh (id int PRIMARY KEY, c timestamptz);");
	fx_grant(conn, "app");
	add_rows(conn, 1, 10000, 2);
	/* Due 3 s after it is written: about 2 s into the backlog. */
	test_exec(conn, "INSERT INTO app.fresh VALUES (1, now() + interval '1 second')");
	started = test_now();
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.t", 60), "the backlog was not purged");
	took = test_now() - started;
	ck_assert_msg(took >= 5.0, "10,000 records at 2,000/s took %.2f s", took);
	ck_assert_msg(took < 20.0, "10,000 records at 2,000/s took %.2f s", took);
	late = test_query_value(
		conn, "SELECT extract(epoch FROM purged_at - due_at) FROM retention.audit_log WHERE policy = 'b'", 0,
		NULL);
	ck_assert_msg(atof(late) >= 0 && atof(late) < 1.0, "purged %s s after due, behind the backlog", late);
	/* It fell due while the backlog was being held back. */
	test_assert_query_value(conn,
				"SELECT (SELECT purged_at FROM retention.audit_log WHERE policy = 'b') <"
				" (SELECT max(purged_at) FROM retention.audit_log WHERE policy = 'a')",
				0, NULL, "t");
	fx_wait_for_log(log, "purged 1 record from app.fresh", 1);
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(late);
	free(a);
	free(b);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* Has daemon PID reload CONF as a RETAIN rule with EXTRA; returns when the version was enforced or blocked. */
static void reload_and_wait(const char *conf, const char *db, const char *retain, const char *extra, pid_t pid,
			    const char *log, const char *needle)
{
	long mark = fx_log_mark(log);
	reload_as(conf, db, retain, extra, pid, log);
	fx_wait_for_log_after(log, mark, needle, 10);
}

/*
 * A changed rule is counted against the version the daemon enforces, the
 * last it enforced, whether an operator approved it or it newly made few
 * records due; a version accepted that way and left is counted again when
 * it comes back; and the count takes in what falls due within a day, not
 * only at this instant.
 */
START_TEST(test_a_change_is_counted_against_the_rule_in_force)
{
	PGconn *conn = guard_db("inforce");
	char *conf = guard_config("inforce", "1 day", "guard_records = 100;");
	char *log = fx_log_path("inforce");
	pid_t pid;
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy p: rule version 1 newly makes 0 records due", 10);
	fx_stop_daemon(pid);
	{
		/* Restarted, version 1 is the one in force: approved, enforced again. */
		long mark = fx_log_mark(log);
		pid = fx_start_daemon(conf, log);
		ck_assert(fx_wait_log_count(log, "policy p: checking-rule -> asking", 2, 10));
		ck_assert(!fx_log_has_after(log, mark, "newly makes"));
	}
	reload_and_wait(conf, "inforce", "90 days", "guard_records = 100;", pid, log,
			"policy p: rule version 2 newly makes 0 records due");
	/* Kept by the 90-day rule in force; the 1-day rule enforced before it would purge them all. */
	add_rows(conn, 1, 5000, 30);
	reload_and_wait(conf, "inforce", "7 days", "guard_records = 100;", pid, log,
			"policy p: rule version 3 would newly purge 5000 records, more than guard_records (100);"
			" purging only what version 2 in force also makes due");
	ck_assert_int_eq(count_rows(conn), 5000);
	/* Away to 7 days while the table was empty, and back: the 7-day rule is counted again. */
	test_exec(conn, "DELETE FROM app.t");
	reload_and_wait(conf, "inforce", "1 day", "guard_records = 100;", pid, log,
			"policy p: rule version 1 newly makes 0 records due");
	reload_and_wait(conf, "inforce", "7 days", "guard_records = 100;", pid, log,
			"policy p: rule version 3 newly makes 0 records due");
	reload_and_wait(conf, "inforce", "90 days", "guard_records = 100;", pid, log,
			"policy p: rule version 2 newly makes 0 records due");
	add_rows(conn, 1, 5000, 30);
	reload_and_wait(conf, "inforce", "7 days", "guard_records = 100;", pid, log,
			"policy p: rule version 3 would newly purge 5000 records");
	ck_assert_int_eq(count_rows(conn), 5000);
	/* Records due under the 7-day rule three seconds from now are as many at once. */
	test_exec(conn, "DELETE FROM app.t");
	/* Version 2 is the one in force still: no count. */
	reload_and_wait(conf, "inforce", "90 days", "guard_records = 100;", pid, log,
			"policy p: checking-rule -> asking");
	test_exec(conn, "INSERT INTO app.t SELECT g, now() - interval '7 days' + interval '3 seconds', NULL"
			" FROM generate_series(1, 5000) g");
	reload_and_wait(conf, "inforce", "7 days", "guard_records = 100;", pid, log,
			"policy p: rule version 3 would newly purge 5000 records");
	ck_assert_msg(!fx_poll_true(conn, "SELECT count(*) < 5000 FROM app.t", 5),
		      "records that fell due under the unapproved rule were purged");
	/* Shortened by less than the horizon: due now, and not under the rule in force for half a day yet. */
	test_exec(conn, "DELETE FROM app.t");
	reload_and_wait(conf, "inforce", "2 days", "guard_records = 100;", pid, log,
			"newly makes 0 records due, no more than guard_records (100): enforced");
	test_exec(conn, "INSERT INTO app.t SELECT g, now() - interval '1 day 12 hours', NULL"
			" FROM generate_series(1, 5000) g");
	reload_and_wait(conf, "inforce", "1 day 1 hour", "guard_records = 100;", pid, log,
			"would newly purge 5000 records");
	ck_assert_int_eq(count_rows(conn), 5000);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * What a hold keeps is counted: once the holds are released the records go
 * only by an approval. A change of key column while holds name records by
 * the old one stops the policy: they would protect other rows. And the
 * daemon's role approves nothing.
 */
START_TEST(test_holds_neither_hide_nor_move_under_a_change)
{
	PGconn *conn = guard_db("heldrule");
	char *conf = guard_config("heldrule", "90 days", "guard_records = 100;");
	char *log = fx_log_path("heldrule");
	char *keyed, *next;
	PGresult *res;
	pid_t pid;
	add_rows(conn, 1, 1000, 30);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy p: rule version 1 newly makes 0 records due", 10);
	test_exec(conn, "SELECT retention.place_hold('p', id::text, NULL, 'litigation', NULL) FROM app.t");
	reload_and_wait(conf, "heldrule", "7 days", "guard_records = 100;", pid, log,
			"policy p: rule version 2 would newly purge 1000 records");
	test_exec(conn, "SELECT retention.release_hold(id, 'settled') FROM retention.holds");
	ck_assert_msg(!fx_poll_true(conn, "SELECT count(*) < 1000 FROM app.t", 3),
		      "records held during the change were purged unapproved once released");
	/* The daemon's role cannot approve what it waits for. */
	test_exec(conn, "SET ROLE " TEST_DAEMON_ROLE);
	res = PQexec(conn, "SELECT retention.rule_approve(2, 1, 'mine', 'me', true)");
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
	PQclear(res);
	test_exec(conn, "RESET ROLE");
	fx_stop_daemon(pid);

	/* Record 5 is held by its key, 5; ref is another unique column, and 5 is another row's ref. */
	test_exec(conn, "DELETE FROM app.t; DELETE FROM retention.holds;"
			"CREATE TABLE app.k (id int PRIMARY KEY, ref int NOT NULL UNIQUE, c timestamptz);"
			"INSERT INTO app.k VALUES (5, 999, now() - interval '2 days'), (6, 5, now());"
			"SELECT retention.place_hold('k', '5', NULL, 'litigation', NULL)");
	fx_grant(conn, "app");
	keyed = fx_policy("k", "app.k", "id", "c", "1 day", "guard_records = 0;");
	next = fx_config("heldrule", NULL, keyed);
	ck_assert_int_eq(rename(next, conf), 0);
	free(next);
	free(keyed);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy k: rule version", 10);
	{
		long mark = fx_log_mark(log);
		keyed = fx_policy("k", "app.k", "ref", "c", "1 day", "guard_records = 0;");
		next = fx_config("heldrule", NULL, keyed);
		ck_assert_int_eq(rename(next, conf), 0);
		ck_assert_int_eq(kill(pid, SIGHUP), 0);
		fx_wait_for_log_after(log, mark, "policy k: not purging under rule version", 10);
		fx_wait_for_log_after(
			log, mark,
			"its key column is not id, version 3's in force, and 1 active holds name records by"
			" their id: they would protect other rows",
			1);
		free(next);
		free(keyed);
	}
	ck_assert(fx_row_exists(conn, "app.k", "5"));
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guard");
	TCase *tc = test_tcase("rule versions", 240);
	tcase_add_test(tc, test_shortening_a_rule_waits_for_approval);
	tcase_add_test(tc, test_a_new_policy_over_a_large_table_blocks);
	tcase_add_test(tc, test_an_exemption_removed_or_a_clock_changed_waits);
	tcase_add_test(tc, test_an_upgrade_keeps_enforcing);
	tcase_add_test(tc, test_the_rules_role_approves_as_itself);
	tcase_add_test(tc, test_a_rate_limit_holds_back_backlog_not_records_falling_due);
	tcase_add_test(tc, test_a_change_is_counted_against_the_rule_in_force);
	tcase_add_test(tc, test_holds_neither_hide_nor_move_under_a_change);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
