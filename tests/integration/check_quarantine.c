/*
 * check_quarantine.c -- records whose purge fails on their own: found by
 * splitting the batch, recorded in retention.quarantine, skipped, shown by
 * pending, explain and retentionctl quarantine, and tried again (by hand or
 * after daemon.quarantine_retry). Failures that say nothing about a record
 * (a timeout, a lock) never quarantine anything.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "util.h"

/*
 * app.parents: ROWS records due 10 days ago, a second apart. Record 7 and
 * the one of id SECOND raise in a trigger while app.vetoed lists them;
 * the trigger silently keeps record 3 (RETURN NULL, a soft delete) while
 * app.kept lists it.
 */
static PGconn *poisoned_db(const char *db, int rows, int second)
{
	PGconn *conn = fx_database(db);
	char *sql =
		xasprintf("CREATE SCHEMA app;"
			  "CREATE TABLE app.parents (id int PRIMARY KEY, closed_at timestamptz);"
			  "CREATE INDEX ON app.parents (closed_at);"
			  "CREATE TABLE app.kept (id int PRIMARY KEY);"
			  "CREATE TABLE app.vetoed (id int PRIMARY KEY);"
			  "INSERT INTO app.parents SELECT g, now() - interval '10 days' + g * interval '1 second'"
			  " FROM generate_series(1, %d) g;"
			  "INSERT INTO app.kept VALUES (3);"
			  "INSERT INTO app.vetoed VALUES (7), (%d) ON CONFLICT DO NOTHING;"
			  "CREATE FUNCTION app.guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			  "  IF EXISTS (SELECT FROM app.vetoed v WHERE v.id = OLD.id) THEN"
			  "    RAISE EXCEPTION 'record %% is under audit', OLD.id; END IF;"
			  "  IF EXISTS (SELECT FROM app.kept k WHERE k.id = OLD.id) THEN RETURN NULL; END IF;"
			  "  RETURN OLD; END $$;"
			  "CREATE TRIGGER guard BEFORE DELETE ON app.parents FOR EACH ROW EXECUTE FUNCTION app.guard()",
			  rows, second);
	test_exec(conn, sql);
	free(sql);
	fx_grant(conn, "app");
	return conn;
}

static char *parents_config(const char *db, const char *daemon_extra, int batch)
{
	char *extra = xasprintf("batch = %d;", batch);
	char *policy = fx_policy("p", "app.parents", "id", "closed_at", "1 day", extra);
	char *conf = fx_config(db, daemon_extra, policy);
	free(policy);
	free(extra);
	return conf;
}

/* Done when: 3 poison records among 500 due are quarantined with their errors, the other 497 purged. */
START_TEST(test_poison_records_are_quarantined_and_the_rest_purged)
{
	PGconn *conn = poisoned_db("poison3", 500, 250);
	char *conf = parents_config("poison3", NULL, 100);
	char *log = fx_log_path("poison3");
	char *out, *err;
	pid_t pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 3 FROM app.parents", 10),
		      "the 497 purgeable records were not purged around the 3 that fail");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 497);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 3 FROM retention.quarantine", 5));
	test_assert_query_value(conn,
				"SELECT string_agg(record_key || ':' || key_type || ':' || attempts || ':'"
				" || (retry_at > now() + interval '59 minutes'), ' ' ORDER BY record_key::int)"
				" FROM retention.quarantine WHERE policy = 'p'",
				0, NULL, "3:integer:1:true 7:integer:1:true 250:integer:1:true");
	test_assert_query_value(conn, "SELECT error FROM retention.quarantine WHERE record_key = '7'", 0, NULL,
				"purge statement failed: record 7 is under audit (SQLSTATE P0001)");
	test_assert_query_value(
		conn, "SELECT error FROM retention.quarantine WHERE record_key = '3'", 0, NULL,
		"it was locked as due, but deleting or updating it changed nothing (a BEFORE trigger that"
		" returns NULL, a rule, or row-level security)");
	fx_wait_for_log(log, "policy p: record 250 cannot be purged: purge statement failed: record 250 is under audit",
			5);
	/* Quarantined records stay overdue, and say why. */
	ck_assert_int_eq(fx_ctl(conf, "poison3", &out, &err, "--format", "csv", "pending", NULL), 0);
	/* Nothing else is due: the next due record is a quarantined one's retry, not shown as a record due. */
	ck_assert_msg(strcmp(out, "policy,overdue,due_within,next_due_at,held,quarantined,referenced,blocked\n"
				  "\"p\",\"3\",\"0\",,\"0\",\"3\",\"0\",\"0\"\n") == 0,
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(
		fx_ctl(conf, "poison3", &out, &err, "--format", "json", "explain", "--policy", "p", "--key", "7", NULL),
		0);
	ck_assert_msg(strstr(out, "\"status\":\"quarantined\""), "%s", out);
	ck_assert_msg(strstr(out, "\"reason\":\"quarantined: purge statement failed: record 7 is under audit"
				  " (SQLSTATE P0001); due since "),
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "poison3", &out, &err, "--format", "csv", "quarantine", "list", NULL), 0);
	ck_assert_msg(
		strstr(out, "id,policy,record_key,error,attempts,first_failed_at,last_failed_at,retry_at,instance\n"),
		"%s", out);
	ck_assert_msg(
		strstr(out,
		       ",\"p\",\"250\",\"purge statement failed: record 250 is under audit (SQLSTATE P0001)\",\"1\","),
		"%s", out);
	free(out);
	free(err);
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Bisection: one record that fails among 1,000 in one batch is found in
 * about log2(1000) more batches, not one batch per record, and the
 * failing record is tried alone only once.
 */
START_TEST(test_one_bad_record_in_a_thousand_costs_a_few_batches)
{
	PGconn *conn = poisoned_db("bisect", 1000, 7);
	char *conf = parents_config("bisect", NULL, 1000);
	char *log = fx_log_path("bisect");
	pid_t pid;
	int failed, purged;
	/* Only record 613 fails: records 3 and 7 are out of the way. */
	test_exec(conn, "DELETE FROM app.kept; UPDATE app.vetoed SET id = 613 WHERE id = 7; DELETE FROM app.vetoed"
			" WHERE id <> 613");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 1 FROM app.parents", 10));
	fx_wait_for_log(log, "record 613 cannot be purged", 5);
	failed = fx_log_count_after(log, 0, "splitting it to find the record");
	purged = fx_log_count_after(log, 0, "policy p: purged ");
	/* Every failed batch halves the part known to fail: 1000, 500, ..., 2 is 10 at most. */
	ck_assert_msg(failed >= 1 && failed <= 10, "%d failed batches", failed);
	ck_assert_msg(failed + purged <= 21, "%d failed and %d purged batches for one bad record", failed, purged);
	ck_assert_int_eq(fx_log_count_after(log, 0, "record 613 cannot be purged"), 1);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A timeout or a lock says nothing about a record: the batch is retried as
 * a whole, nothing is quarantined, and once the cause is gone everything is
 * purged.
 */
START_TEST(test_a_transient_failure_quarantines_nothing)
{
	PGconn *conn = poisoned_db("transient", 50, 7), *locker;
	char *conf;
	char *log = fx_log_path("transient");
	pid_t pid;
	test_exec(conn, "DELETE FROM app.kept; DELETE FROM app.vetoed;"
			"CREATE TABLE app.gate (x int); CREATE TABLE app.slow (on_ boolean); INSERT INTO app.slow"
			" VALUES (true);"
			"CREATE OR REPLACE FUNCTION app.guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			"  PERFORM FROM app.gate;"
			"  IF OLD.id = 20 AND (SELECT on_ FROM app.slow) THEN PERFORM pg_sleep(3); END IF;"
			"  RETURN OLD; END $$");
	fx_grant(conn, "app");
	{
		char *policy = fx_policy("p", "app.parents", "id", "closed_at", "1 day", "batch = 100;");
		char *text = xasprintf("database = { conninfo = \"dbname=transient user=" TEST_DAEMON_ROLE "\";"
				       " lock_timeout = \"1 second\"; statement_timeout = \"2 seconds\"; };\n"
				       "daemon = { instance = \"transient-1\"; resync_interval = \"1 hour\"; };\n"
				       "policies = ( %s );\n",
				       policy);
		conf = test_write_file(text);
		free(text);
		free(policy);
	}
	/* First a lock the trigger waits for (lock_timeout), then a trigger that runs too long (statement_timeout). */
	locker = test_connect_db("transient");
	test_exec(locker, "BEGIN; LOCK TABLE app.gate IN ACCESS EXCLUSIVE MODE");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_wait_log_count(log, "canceling statement due to lock timeout", 2, 20));
	test_exec(locker, "COMMIT");
	ck_assert(fx_wait_log_count(log, "canceling statement due to statement timeout", 2, 30));
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.parents"), 50);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine"), 0);
	ck_assert(!fx_log_has_after(log, 0, "cannot be purged"));
	ck_assert(!fx_log_has_after(log, 0, "splitting"));
	test_exec(conn, "UPDATE app.slow SET on_ = false");
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.parents", 40), "not purged once the cause went");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine"), 0);
	fx_stop_daemon(pid);
	PQfinish(locker);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Done when: retry after the cause is removed purges them. By hand
 * (retentionctl quarantine retry), and by itself after
 * daemon.quarantine_retry; a record that fails again is quarantined again,
 * with its attempts counted and its retry pushed back.
 */
START_TEST(test_retry_after_the_cause_is_removed_purges_them)
{
	PGconn *conn = poisoned_db("retry", 20, 12);
	char *conf = parents_config("retry", "quarantine_retry = \"0 seconds\";", 100);
	char *log = fx_log_path("retry");
	char *out, *err;
	pid_t pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 3 FROM retention.quarantine", 10));
	/* daemon.quarantine_retry = 0: tried again by hand only. */
	test_assert_query_value(conn, "SELECT count(*) FROM retention.quarantine WHERE retry_at IS NULL", 0, NULL, "3");
	ck_assert_int_eq(fx_ctl(conf, "retry", &out, &err, "quarantine", "retry", NULL), 2);
	ck_assert_msg(strstr(err, "needs --policy P or an id"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "retry", &out, &err, "quarantine", "retry", "999", NULL), 1);
	ck_assert_msg(strstr(err, "no quarantined record has id 999"), "%s", err);
	free(out);
	free(err);
	/* Record 3 is kept no more and can be purged now; the vetoed ones still cannot. */
	test_exec(conn, "DELETE FROM app.kept");
	ck_assert_int_eq(fx_ctl(conf, "retry", &out, &err, "quarantine", "retry", "--policy", "p", NULL), 0);
	ck_assert_msg(strstr(out, "3 quarantined records will be tried again by the next batch"), "%s", out);
	free(out);
	free(err);
	ck_assert_msg(fx_wait_row_gone(conn, "app.parents", "3", 10), "record 3 not purged on retry");
	ck_assert_int_eq(fx_audit_count(conn, "p", "3"), 1);
	ck_assert(fx_poll_true(
		conn,
		"SELECT string_agg(record_key || ':' || attempts, ' ' ORDER BY record_key::int) = '7:2 12:2'"
		" FROM retention.quarantine",
		10));
	/* By id, once its cause is gone. */
	test_exec(conn, "DELETE FROM app.vetoed WHERE id = 12");
	{
		char *id =
			test_query_value(conn, "SELECT id FROM retention.quarantine WHERE record_key = '12'", 0, NULL);
		ck_assert_int_eq(fx_ctl(conf, "retry", &out, &err, "quarantine", "retry", id, NULL), 0);
		ck_assert_msg(strstr(out, "1 quarantined record will be tried again"), "%s", out);
		free(out);
		free(err);
		free(id);
	}
	ck_assert_msg(fx_wait_row_gone(conn, "app.parents", "12", 10), "record 12 not purged on retry by id");
	ck_assert(fx_poll_true(conn, "SELECT string_agg(record_key, ' ') = '7' FROM retention.quarantine", 10));
	fx_stop_daemon(pid);

	/* By itself: 2 seconds after, doubling per failure (the third is 8 seconds after). */
	free(conf);
	conf = parents_config("retry", "quarantine_retry = \"2 seconds\";", 100);
	test_exec(conn, "UPDATE retention.quarantine SET retry_at = now()");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT attempts = 3 FROM retention.quarantine WHERE record_key = '7'", 10));
	test_assert_query_value(
		conn,
		"SELECT retry_at - last_failed_at BETWEEN interval '7.9 seconds' AND interval '8.1 seconds'"
		" FROM retention.quarantine WHERE record_key = '7'",
		0, NULL, "t");
	test_exec(conn, "DELETE FROM app.vetoed");
	ck_assert_msg(fx_wait_row_gone(conn, "app.parents", "7", 15), "record 7 not purged by the automatic retry");
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 0 FROM retention.quarantine", 10));
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.parents"), 0);
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* The quarantine is the database's: a restart skips the records without splitting a batch again. */
START_TEST(test_a_restart_skips_quarantined_records_at_once)
{
	PGconn *conn = poisoned_db("restart", 30, 12);
	char *conf = parents_config("restart", NULL, 100);
	char *log = fx_log_path("restart");
	pid_t pid = fx_start_daemon(conf, log);
	long mark;
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 3 FROM retention.quarantine", 10));
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 3 FROM app.parents", 10));
	fx_stop_daemon(pid);
	test_exec(conn, "INSERT INTO app.parents SELECT g, now() - interval '5 days' FROM generate_series(100, 109) g");
	mark = fx_log_mark(log);
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 3 FROM app.parents", 10));
	fx_wait_for_log_after(log, mark, "policy p: purged 10 records", 5);
	ck_assert(!fx_log_has_after(log, mark, "splitting"));
	ck_assert(!fx_log_has_after(log, mark, "cannot be purged"));
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A trigger that raises for every row is the policy's failure, not its
 * records': a few are quarantined, then the policy fails as a whole and
 * says so, instead of quarantining the table one record at a time.
 */
START_TEST(test_a_trigger_failing_every_record_fails_the_policy)
{
	PGconn *conn = poisoned_db("everyrow", 200, 7);
	char *conf = parents_config("everyrow", NULL, 50);
	char *log = fx_log_path("everyrow");
	pid_t pid;
	test_exec(conn, "INSERT INTO app.vetoed SELECT g FROM generate_series(1, 200) g ON CONFLICT DO NOTHING");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "more than the 20 allowed: taken as the policy's failure", 30);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.parents"), 200);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine"), 20);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Twenty-five bad records in a row, more than the twenty a run allows: the
 * policy fails at the twenty-first, then, daemon.quarantine_retry later,
 * quarantines the other five and purges everything after them.
 */
START_TEST(test_more_bad_records_in_a_row_than_a_run_allows)
{
	PGconn *conn = poisoned_db("longrun", 60, 7);
	char *conf = parents_config("longrun", "quarantine_retry = \"2 seconds\";", 10);
	char *log = fx_log_path("longrun");
	pid_t pid;
	test_exec(conn, "DELETE FROM app.kept; INSERT INTO app.vetoed SELECT g FROM generate_series(1, 25) g"
			" ON CONFLICT DO NOTHING");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "more than the 20 allowed: taken as the policy's failure", 30);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 25 FROM app.parents", 30),
		      "the records after the first twenty-five bad ones were not purged");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.parents WHERE id <= 25"), 25);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 25 FROM retention.quarantine", 10));
	fx_wait_for_log(log, "looking for the records that fail again", 1);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Records quarantined before that fail again do not count toward the run's
 * allowance, in the check made before quarantining as in the count after
 * it: fifteen tried again and ten new ones that a trigger keeps, all in one
 * batch, are all quarantined, and the policy is not failed as a whole.
 */
START_TEST(test_records_failing_again_leave_the_allowance_to_new_ones)
{
	PGconn *conn = poisoned_db("again", 60, 7);
	char *conf = parents_config("again", NULL, 100);
	char *log = fx_log_path("again");
	char *out, *err;
	pid_t pid;
	long mark;
	test_exec(conn, "DELETE FROM app.vetoed; DELETE FROM app.kept;"
			" INSERT INTO app.kept SELECT g FROM generate_series(1, 15) g");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 15 FROM retention.quarantine", 10));
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 15 FROM app.parents", 10));
	fx_stop_daemon(pid);
	test_exec(conn, "INSERT INTO app.parents SELECT g, now() - interval '5 days' FROM generate_series(61, 70) g;"
			" INSERT INTO app.kept SELECT g FROM generate_series(61, 70) g");
	ck_assert_int_eq(fx_ctl(conf, "again", &out, &err, "quarantine", "retry", "--policy", "p", NULL), 0);
	free(out);
	free(err);
	mark = fx_log_mark(log);
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 25 FROM retention.quarantine", 10),
		      "the ten new records kept by the trigger were not quarantined");
	test_assert_query_value(conn, "SELECT count(*) FROM retention.quarantine WHERE attempts = 2", 0, NULL, "15");
	ck_assert(!fx_log_has_after(log, mark, "taken as the policy's failure"));
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Sixty records in a row whose delete changes nothing (a trigger returns
 * NULL), fifty to a batch: the first twenty of a batch are quarantined,
 * twenty more every daemon.quarantine_retry, and the forty after them are
 * purged. All or none of a batch's, the policy stalled for good.
 */
START_TEST(test_a_long_run_of_records_that_change_nothing_is_quarantined_in_parts)
{
	PGconn *conn = poisoned_db("nullrun", 100, 7);
	char *conf = parents_config("nullrun", "quarantine_retry = \"2 seconds\";", 50);
	char *log = fx_log_path("nullrun");
	pid_t pid;
	test_exec(conn, "DELETE FROM app.vetoed; DELETE FROM app.kept;"
			" INSERT INTO app.kept SELECT g FROM generate_series(1, 60) g");
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 60 FROM app.parents", 30),
		      "the records after the sixty were not purged");
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 60 FROM retention.quarantine", 30),
		      "the sixty were not quarantined");
	test_assert_query_value(conn, "SELECT count(*) FROM app.parents WHERE id > 60", 0, NULL, "0");
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A quarantined key that no longer casts to the key's type (its enum label
 * renamed by the table's owner) names no record: it neither fails every
 * statement of the policy nor outlives the next count, after which the
 * record under its new name is tried, and quarantined, again.
 */
START_TEST(test_a_quarantined_key_that_no_longer_casts_stalls_nothing)
{
	PGconn *conn = fx_database("enumkey");
	char *policy = fx_policy("pe", "app.e", "k", "closed_at", "1 day", "batch = 100;");
	char *conf = fx_config("enumkey", "resync_interval = \"1 second\";", policy);
	char *log = fx_log_path("enumkey");
	pid_t pid;
	test_exec(
		conn,
		"CREATE SCHEMA app; CREATE TYPE app.color AS ENUM ('v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8');"
		"CREATE TABLE app.e (k app.color PRIMARY KEY, closed_at timestamptz);"
		"CREATE TABLE app.veto (k app.color PRIMARY KEY); INSERT INTO app.veto VALUES ('v7');"
		"INSERT INTO app.e SELECT k, now() - interval '10 days' FROM unnest(enum_range('v1'::app.color, 'v6')) k;"
		"INSERT INTO app.e VALUES ('v7', now() - interval '10 days');"
		"CREATE FUNCTION app.guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		"  IF EXISTS (SELECT FROM app.veto v WHERE v.k = OLD.k) THEN RAISE EXCEPTION 'vetoed'; END IF;"
		"  RETURN OLD; END $$;"
		"CREATE TRIGGER guard BEFORE DELETE ON app.e FOR EACH ROW EXECUTE FUNCTION app.guard()");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 1 FROM retention.quarantine", 10));
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 1 FROM app.e", 10));
	test_exec(conn, "ALTER TYPE app.color RENAME VALUE 'v7' TO 'w7';"
			"INSERT INTO app.e VALUES ('v8', now() - interval '3 days')");
	ck_assert_msg(fx_poll_true(conn, "SELECT NOT EXISTS (SELECT FROM app.e WHERE k = 'v8')", 10),
		      "a key that no longer casts stalled the policy");
	/* Its row goes at the next count; the record, now w7 and still vetoed, is quarantined as such. */
	ck_assert_msg(fx_poll_true(conn, "SELECT string_agg(record_key, ',') = 'w7' FROM retention.quarantine", 10),
		      "the quarantine row of a key that names no record stayed");
	ck_assert(!fx_log_has_after(log, 0, "invalid input value for enum"));
	fx_stop_daemon(pid);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A reload gives no new allowance: a trigger failing every row still
 * quarantines twenty. And a policy pointed at another table leaves the old
 * table's quarantined records behind, reload or restart: record 7 of the
 * new table is purged when due, not skipped as the old record 7.
 */
START_TEST(test_a_reload_keeps_the_run_and_forgets_another_tables_quarantine)
{
	PGconn *conn = poisoned_db("qreload", 200, 7);
	char *conf = parents_config("qreload", NULL, 50);
	char *log = fx_log_path("qreload");
	char *policy, *other;
	long mark;
	pid_t pid;
	test_exec(conn, "INSERT INTO app.vetoed SELECT g FROM generate_series(1, 200) g ON CONFLICT DO NOTHING");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "more than the 20 allowed: taken as the policy's failure", 30);
	for (int i = 0; i < 3; i++) {
		mark = fx_log_mark(log);
		ck_assert_int_eq(kill(pid, SIGHUP), 0);
		fx_wait_for_log_after(log, mark, "configuration reloaded", 10);
		fx_wait_for_log_after(log, mark, "more than the 20 allowed", 10);
	}
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine"), 20);

	test_exec(conn, "CREATE TABLE app.other (id int PRIMARY KEY, closed_at timestamptz);"
			"INSERT INTO app.other SELECT g, now() - interval '10 days' FROM generate_series(1, 10) g");
	fx_grant(conn, "app");
	/* Moved to another table while stopped: its quarantine rows are bound to the old table and key column. */
	fx_stop_daemon(pid);
	policy = fx_policy("p", "app.other", "id", "closed_at", "1 day", "batch = 50;");
	other = fx_config("qreload", NULL, policy);
	ck_assert_int_eq(rename(other, conf), 0);
	/* Record 3 of the new table is quarantined itself, until tomorrow; record 3 of the old one is too. */
	test_exec(conn,
		  "INSERT INTO retention.quarantine (policy, record_key, key_type, key_of, error, first_failed_at,"
		  " last_failed_at, attempts, retry_at, instance) VALUES ('p', '3', 'integer', 'app.other.id',"
		  " 'a trigger raised', now(), now(), 1, now() + interval '1 day', 'qreload-1')");
	mark = fx_log_mark(log);
	pid = fx_start_daemon(conf, log);
	if (!fx_poll_true(conn, "SELECT array_agg(id) = '{3}' FROM app.other", 10))
		ck_abort_msg(
			"record 7 of the new table was skipped as the old table's, or record 3 tried before its time:"
			" %s left",
			test_query_value(conn, "SELECT coalesce(array_agg(id)::text, '{}') FROM app.other", 0, NULL));
	fx_wait_for_log_after(log, mark, "the quarantine rows of 20 quarantined record(s) no longer in the table", 10);
	/* The old table's rows went by id: the new table's record 3 stays quarantined, and is not tried early. */
	test_assert_query_value(conn, "SELECT string_agg(record_key || ' ' || key_of, ',') FROM retention.quarantine",
				0, NULL, "3 app.other.id");
	ck_assert(fx_row_exists(conn, "app.other", "3"));
	fx_stop_daemon(pid);
	free(policy);
	free(other);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * The application deletes a quarantined record itself: its quarantine row
 * goes at the next count, and a new record that reuses the key is purged
 * when due instead of being skipped as the old one.
 */
START_TEST(test_a_quarantined_record_deleted_by_others_frees_its_key)
{
	PGconn *conn = poisoned_db("reused", 20, 7);
	char *conf = parents_config("reused", "resync_interval = \"1 second\";", 100);
	char *log = fx_log_path("reused");
	pid_t pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 1 FROM retention.quarantine WHERE record_key = '7'", 10));
	test_exec(conn, "DELETE FROM app.vetoed WHERE id = 7; DELETE FROM app.parents WHERE id = 7");
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 0 FROM retention.quarantine WHERE record_key = '7'", 10),
		      "the quarantine row of a record deleted by the application stayed");
	fx_wait_for_log(log, "policy p: the quarantine rows of 1 quarantined record(s) no longer in the table", 1);
	test_exec(conn, "INSERT INTO app.parents VALUES (7, now() - interval '2 days')");
	ck_assert_msg(fx_wait_row_gone(conn, "app.parents", "7", 10),
		      "a new record with a quarantined key was skipped");
	/* Record 3 is still there, and still quarantined. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine WHERE record_key = '3'"), 1);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Code of a table's owner runs with the daemon's role, which may record
 * quarantined records: a trigger that quarantines another record (so that
 * the daemon would skip it) is caught by the guard before COMMIT like an
 * audit row of its own, and nothing of the batch stays.
 */
START_TEST(test_a_trigger_cannot_quarantine_records)
{
	PGconn *conn = poisoned_db("hostile", 10, 7);
	char *conf = parents_config("hostile", NULL, 100);
	char *log = fx_log_path("hostile");
	pid_t pid;
	test_exec(conn, "DELETE FROM app.kept; DELETE FROM app.vetoed;"
			"CREATE OR REPLACE FUNCTION app.guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			"  IF OLD.id = 1 THEN PERFORM retention.quarantine_record('p', '9', 'integer', 'spared',"
			"    NULL, 'x'); END IF;"
			"  RETURN OLD; END $$");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "wrote to the audit trail or the quarantine", 10);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.parents"), 10);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine"), 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 0);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("quarantine");
	TCase *tc = test_tcase("quarantine", 180);
	tcase_add_test(tc, test_poison_records_are_quarantined_and_the_rest_purged);
	tcase_add_test(tc, test_one_bad_record_in_a_thousand_costs_a_few_batches);
	tcase_add_test(tc, test_a_transient_failure_quarantines_nothing);
	tcase_add_test(tc, test_retry_after_the_cause_is_removed_purges_them);
	tcase_add_test(tc, test_a_restart_skips_quarantined_records_at_once);
	tcase_add_test(tc, test_a_trigger_failing_every_record_fails_the_policy);
	tcase_add_test(tc, test_more_bad_records_in_a_row_than_a_run_allows);
	tcase_add_test(tc, test_records_failing_again_leave_the_allowance_to_new_ones);
	tcase_add_test(tc, test_a_long_run_of_records_that_change_nothing_is_quarantined_in_parts);
	tcase_add_test(tc, test_a_quarantined_key_that_no_longer_casts_stalls_nothing);
	tcase_add_test(tc, test_a_reload_keeps_the_run_and_forgets_another_tables_quarantine);
	tcase_add_test(tc, test_a_quarantined_record_deleted_by_others_frees_its_key);
	tcase_add_test(tc, test_a_trigger_cannot_quarantine_records);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
