/*
 * Holds against a real server: matched in the column's type, across the
 * policies of one table, serialised on a lock no stranger can take, placed
 * only through the schema's functions. Each test names the defect of the
 * review of 78f4ad6 it pins.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "schema.h"
#include "util.h"

/* SQLSTATE of SQL run as ROLE on CONN, "00000" if it succeeded. */
static char *sqlstate_as(PGconn *conn, const char *role, const char *sql)
{
	char *set = xasprintf("SET ROLE %s", role);
	PGresult *res;
	char *state;
	test_exec(conn, set);
	res = PQexec(conn, sql);
	state = xstrdup(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK
				? "00000"
				: PQresultErrorField(res, PG_DIAG_SQLSTATE));
	PQclear(res);
	test_exec(conn, "RESET ROLE");
	free(set);
	return state;
}

static void expect_state(PGconn *conn, const char *role, const char *sql, const char *want)
{
	char *got = sqlstate_as(conn, role, sql);
	ck_assert_msg(strcmp(got, want) == 0, "%s as %s: got %s, want %s", sql, role, got, want);
	free(got);
}

/*
 * D5: holds were matched by their text form: a numeric(10,2) key held as
 * 42, a citext subject in another case, an upper-case uuid placed through
 * place_hold() were all purged while explain said "held". A type's modifier
 * counts too: cast as plain char (char(1)) or bit (bit(1)), a hold on a
 * char(5) or bit(3) key named another record or none. A value the column
 * would round names the record it rounds to: a hold errs toward keeping.
 */
START_TEST(test_holds_match_in_the_columns_type)
{
	PGconn *conn = fx_database("typedholds");
	char *num = fx_policy("num", "app.num", "id", "c", "1 day", "");
	char *people = fx_policy("people", "app.people", "id", "c", "1 day", "subject = \"email\";");
	char *uuids = fx_policy("uuids", "app.uuids", "id", "c", "1 day", "");
	char *codes = fx_policy("codes", "app.codes", "id", "c", "1 day", "");
	char *bits = fx_policy("bits", "app.bits", "id", "c", "1 day", "");
	char *policies = xasprintf("%s, %s, %s, %s, %s", num, people, uuids, codes, bits);
	char *conf = fx_config("typedholds", NULL, policies);
	char *out, *err;
	test_exec(
		conn,
		"CREATE EXTENSION citext; CREATE SCHEMA app;"
		"CREATE TABLE app.num (id numeric(10,2) PRIMARY KEY, c timestamptz);"
		"CREATE TABLE app.people (id int PRIMARY KEY, c timestamptz, email citext);"
		"CREATE TABLE app.uuids (id uuid PRIMARY KEY, c timestamptz);"
		"INSERT INTO app.num VALUES (42, now() - interval '2 days'), (43, now() - interval '2 days'),"
		" (44, now() - interval '2 days');"
		"SELECT retention.place_hold('num', '44.001', NULL, 'case 4', NULL);"
		"INSERT INTO app.people VALUES (1, now() - interval '2 days', 'Alice@Example.COM'),"
		" (2, now() - interval '2 days', 'bob@example.com');"
		"INSERT INTO app.uuids VALUES ('6f9619ff-8b86-d011-b42d-00c04fc964ff', now() - interval '2 days');"
		"SELECT retention.place_hold('uuids', '6F9619FF-8B86-D011-B42D-00C04FC964FF', NULL, 'case 1', NULL);"
		"CREATE TABLE app.codes (id char(5) PRIMARY KEY, c timestamptz);"
		"CREATE TABLE app.bits (id bit(3) PRIMARY KEY, c timestamptz);"
		"INSERT INTO app.codes VALUES ('abc', now() - interval '2 days'), ('xyz', now() - interval '2 days');"
		"INSERT INTO app.bits VALUES (B'101', now() - interval '2 days'), (B'011', now() - interval '2 days');"
		"SELECT retention.place_hold('codes', 'abc', NULL, 'case 2', NULL);"
		"SELECT retention.place_hold('bits', '101', NULL, 'case 3', NULL)");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_ctl(conf, "typedholds", &out, &err, "hold", "add", "--policy", "num", "--key", "42",
				"--reason", "r", NULL),
			 0);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "typedholds", &out, &err, "hold", "add", "--policy", "people", "--subject",
				"alice@example.com", "--reason", "r", NULL),
			 0);
	free(out);
	free(err);
	/* explain says what the daemon will do... */
	ck_assert_int_eq(fx_ctl(conf, "typedholds", &out, &err, "--format", "json", "explain", "--policy", "num",
				"--key", "42", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"key\":\"42.00\",\"status\":\"held\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "typedholds", &out, &err, "--format", "json", "explain", "--policy", "uuids",
				"--key", "6f9619ff-8b86-d011-b42d-00c04fc964ff", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"held\""), "%s", out);
	free(out);
	free(err);
	/* ...and it does it. */
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "app.num", "42.00"), "numeric key held as 42 was purged");
	ck_assert(!fx_row_exists(conn, "app.num", "43.00"));
	ck_assert_msg(fx_row_exists(conn, "app.num", "44.00"), "numeric(10,2) key held as 44.001 was purged");
	ck_assert_msg(fx_row_exists(conn, "app.people", "1"), "citext subject held in another case was purged");
	ck_assert(!fx_row_exists(conn, "app.people", "2"));
	ck_assert_msg(fx_row_exists(conn, "app.uuids", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
		      "upper-case uuid held through place_hold() was purged");
	ck_assert_msg(fx_row_exists(conn, "app.codes", "abc"), "char(5) key held as abc was purged");
	ck_assert(!fx_row_exists(conn, "app.codes", "xyz"));
	ck_assert_msg(fx_row_exists(conn, "app.bits", "101"), "bit(3) key held as 101 was purged");
	ck_assert(!fx_row_exists(conn, "app.bits", "011"));
	free(out);
	free(err);
	free(codes);
	free(bits);
	free(num);
	free(people);
	free(uuids);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D18: holds were per policy, so a hold on "delete after 2 years" did not
 * stop "anonymize after 1 day" on the same table from erasing the record.
 */
START_TEST(test_a_hold_protects_from_every_policy_of_the_table)
{
	PGconn *conn = fx_database("siblings");
	char *anon = fx_policy("accounts-anon", "app.accounts", "id", "deleted_at", "1 day",
			       "action = \"anonymize\"; set_null = [ \"email\" ];");
	char *del = fx_policy("accounts-delete", "app.accounts", "id", "closed_at", "2 years", "");
	char *policies = xasprintf("%s, %s", anon, del);
	char *conf = fx_config("siblings", NULL, policies);
	char *log = fx_log_path("siblings");
	char *out, *err, *hold;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.accounts (id int PRIMARY KEY, deleted_at timestamptz,"
			" closed_at timestamptz, email text);"
			"INSERT INTO app.accounts VALUES (1, now() - interval '2 days', now(), 'a@example.org'),"
			" (2, now() - interval '2 days', now(), 'b@example.org')");
	fx_grant(conn, "app");
	hold = test_query_value(conn, "SELECT retention.place_hold('accounts-delete', '1', NULL, 'litigation', NULL)",
				0, NULL);
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_poll_true(conn, "SELECT email IS NOT NULL FROM app.accounts WHERE id = 1", 0),
		      "a record held under one policy was anonymized by another");
	ck_assert(fx_poll_true(conn, "SELECT email IS NULL FROM app.accounts WHERE id = 2", 0));
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "siblings", &out, &err, "--format", "json", "explain", "--policy",
				"accounts-anon", "--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"held\"") && strstr(out, "\"policy\" : \"accounts-delete\""), "%s", out);
	free(out);
	free(err);
	/* Releasing it wakes the other policy at once. */
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "nothing pending", 10);
	{
		char *sql = xasprintf("SELECT retention.release_hold(%s, 'settled')", hold);
		test_exec(conn, sql);
		free(sql);
	}
	ck_assert_msg(fx_poll_true(conn, "SELECT email IS NULL FROM app.accounts WHERE id = 1", 5),
		      "not anonymized after the other policy's hold was released");
	fx_stop_daemon(pid);
	free(hold);
	free(anon);
	free(del);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D12: any role could stall a policy by holding its advisory lock. The lock
 * is a row only privileged roles can lock, and an advisory lock on the old
 * key is nothing to the daemon.
 */
START_TEST(test_no_stranger_can_take_a_policys_lock)
{
	PGconn *conn = fx_uploads_db("stranger");
	char *conf = fx_uploads_config("stranger", "15 minutes", "");
	char *log = fx_log_path("stranger");
	PGconn *stranger;
	pid_t pid;
	char *holder, *pid_text;
	test_exec(conn, "CREATE ROLE stranger LOGIN");
	stranger = PQconnectdb("dbname=stranger user=stranger");
	ck_assert(PQstatus(stranger) == CONNECTION_OK);
	test_exec(stranger, "SELECT pg_advisory_lock(1919251566, hashtext('virusdesk-scan-uploads'))");
	expect_state(conn, "stranger", "SELECT retention.try_lock_policy('virusdesk-scan-uploads')", "42501");
	expect_state(conn, "stranger", "SELECT retention.lock_policy('virusdesk-scan-uploads')", "42501");
	expect_state(conn, "stranger", "SELECT * FROM retention.policy_locks FOR UPDATE", "42501");
	expect_state(conn, "stranger", "SELECT * FROM retention.policy_lock_holder('virusdesk-scan-uploads')", "42501");
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 5),
		      "a stranger's advisory lock stalled the policy");
	fx_stop_daemon(pid);
	/* Who holds the real lock can be told, for the warning the daemon logs when it stays taken. */
	{
		PGconn *other = test_connect_db("stranger");
		test_exec(other, "BEGIN; SELECT retention.try_lock_policy('virusdesk-scan-uploads')");
		holder = test_query_value(
			conn, "SELECT pid FROM retention.policy_lock_holder('virusdesk-scan-uploads')", 0, NULL);
		pid_text = xasprintf("%d", PQbackendPID(other));
		ck_assert_str_eq(holder, pid_text);
		test_exec(other, "ROLLBACK");
		PQfinish(other);
	}
	free(holder);
	free(pid_text);
	PQfinish(stranger);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D20: `hold add` checked the record before place_hold() waited for the
 * batch in flight, which then took the record, and still reported success.
 */
static void hold_add_while_a_batch_is_in_flight(const char *db, bool force, const char *policy_extra)
{
	PGconn *conn = fx_uploads_db(db);
	char *conf = fx_uploads_config(db, "15 minutes", policy_extra);
	char *dbname = xasprintf("dbname=%s", db);
	PGconn *purger = test_connect_db(db);
	char *ctl = xasprintf("%s/src/retentionctl", test_builddir());
	char *argv[] = {ctl,
			"-c",
			conf,
			"-d",
			dbname,
			"hold",
			"add",
			"--policy",
			"virusdesk-scan-uploads",
			"--key",
			"1",
			"--reason",
			"subpoena",
			force ? "--force" : NULL,
			NULL};
	char *log = fx_log_path(db);
	struct fx_policy fp;
	int status;
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at, email)"
			" VALUES (1, now() - interval '1 hour', 'a@example.org')");
	fx_policy_prepare(&fp, purger, conf, "virusdesk-scan-uploads");
	/* The daemon's batch locked and deleted record 1 but has not committed: the record still shows. */
	ck_assert_int_eq(fx_purge_uncommitted(purger, &fp), 1);
	pid = test_spawn(argv, log);
	ck_assert(fx_poll_true(conn,
			       "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'retentionctl'"
			       " AND wait_event_type = 'Lock'",
			       10));
	test_exec(purger, "COMMIT");
	status = test_wait_exit(pid, 10);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1, "hold add exit status %d", status);
	ck_assert_msg(test_file_contains(log, "record 1 was purged by the batch in flight before the hold took effect"),
		      "no warning that the hold came too late");
	/* The hold stands, for whatever comes back under that key. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.holds WHERE record_key = '1'"), 1);
	ck_assert_int_eq(fx_audit_count(conn, NULL, "1"), 1);
	fx_policy_free(&fp);
	PQfinish(purger);
	free(ctl);
	free(dbname);
	free(conf);
	free(log);
	PQfinish(conn);
}

START_TEST(test_hold_add_says_when_the_batch_in_flight_took_the_record)
{
	hold_add_while_a_batch_is_in_flight("inflight", false, "");
}
END_TEST

/* With --force, which holds a key whether or not a record has it, the warning was lost. */
START_TEST(test_hold_add_force_says_when_the_batch_in_flight_took_the_record)
{
	hold_add_while_a_batch_is_in_flight("inflightforce", true, "");
}
END_TEST

/* An anonymized record stays as a row: counting rows, hold add saw it still there and said nothing. */
START_TEST(test_hold_add_says_when_the_batch_in_flight_anonymized_the_record)
{
	hold_add_while_a_batch_is_in_flight("inflightanon", true, "action = \"anonymize\"; set_null = [ \"email\" ];");
}
END_TEST

/*
 * A hold under one policy of a table protects the record from the others,
 * but place_hold() takes only its own policy's lock: a batch of a sibling
 * that locked only itself picked the record before the hold committed,
 * deleted it after, and `hold add` said the hold stood on a record.
 */
START_TEST(test_a_hold_under_a_sibling_waits_for_the_batch_in_flight)
{
	PGconn *conn = fx_database("siblingrace");
	char *shortp = fx_policy("msgs-short", "app.msgs", "id", "c", "1 day", "");
	char *legal = fx_policy("msgs-legal", "app.msgs", "id", "c", "10 years", "");
	char *policies = xasprintf("%s, %s", shortp, legal);
	char *conf = fx_config("siblingrace", NULL, policies);
	PGconn *purger = test_connect_db("siblingrace");
	char *ctl = xasprintf("%s/src/retentionctl", test_builddir());
	char *argv[] = {ctl,        "-c",         conf,    "-d", "dbname=siblingrace", "hold",       "add",
			"--policy", "msgs-legal", "--key", "1",  "--reason",           "litigation", NULL};
	char *log = fx_log_path("siblingrace-ctl");
	struct fx_policy fp;
	int status;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.msgs (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO app.msgs VALUES (1, now() - interval '2 days')");
	fx_grant(conn, "app");
	fx_policy_prepare(&fp, purger, conf, "msgs-short");
	ck_assert_int_eq(fx_purge_uncommitted(purger, &fp), 1);
	pid = test_spawn(argv, log);
	ck_assert_msg(fx_poll_true(conn,
				   "SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'retentionctl'"
				   " AND wait_event_type = 'Lock'",
				   10),
		      "place_hold() under the sibling did not wait for the batch in flight");
	test_exec(purger, "COMMIT");
	status = test_wait_exit(pid, 10);
	ck_assert_msg(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1, "hold add exit status %d", status);
	ck_assert(test_file_contains(log, "record 1 was purged by the batch in flight before the hold took effect"));
	fx_policy_free(&fp);
	PQfinish(purger);
	free(ctl);
	free(shortp);
	free(legal);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A policy on a partitioned table and one on its partition govern the same
 * rows: a hold under either protects the record from both. A hold under the
 * partition's policy did not stop the parent's from purging the record.
 */
START_TEST(test_a_hold_protects_across_a_partition_tree)
{
	PGconn *conn = fx_database("partholds");
	char *part = fx_policy("a-events", "shop.events_a", "id", "c", "1 day", "");
	char *all = fx_policy("all-events", "shop.events", "id", "c", "1 day", "");
	char *policies = xasprintf("%s, %s", part, all);
	char *conf = fx_config("partholds", NULL, policies);
	char *out, *err;
	test_exec(conn, "CREATE SCHEMA shop;"
			"CREATE TABLE shop.events (id int PRIMARY KEY, c timestamptz) PARTITION BY RANGE (id);"
			"CREATE TABLE shop.events_a PARTITION OF shop.events FOR VALUES FROM (0) TO (100);"
			"CREATE TABLE shop.events_b PARTITION OF shop.events FOR VALUES FROM (100) TO (200);"
			"INSERT INTO shop.events VALUES (1, now() - interval '2 days'), (2, now() - interval '2 days'),"
			" (3, now() - interval '2 days'), (101, now() - interval '2 days');"
			"SELECT retention.place_hold('a-events', '1', NULL, 'case a', NULL);"
			"SELECT retention.place_hold('all-events', '2', NULL, 'case all', NULL)");
	fx_grant(conn, "shop");
	ck_assert_int_eq(fx_ctl(conf, "partholds", &out, &err, "--format", "json", "explain", "--policy", "all-events",
				"--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"held\""), "%s", out);
	free(out);
	free(err);
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "shop.events", "1"),
		      "held under the partition's policy, purged by the parent's");
	ck_assert_msg(fx_row_exists(conn, "shop.events", "2"),
		      "held under the parent's policy, purged by the partition's");
	ck_assert(!fx_row_exists(conn, "shop.events", "3"));
	ck_assert(!fx_row_exists(conn, "shop.events", "101"));
	free(out);
	free(err);
	free(part);
	free(all);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D27: the guide granted people INSERT and UPDATE on retention.holds, which
 * skips the lock and lets anyone write placed_by. With exactly the grants
 * the guide has people run (`retentionctl grants --for holds`), they get
 * EXECUTE on the functions and no direct writes; the functions record the
 * login role.
 */
START_TEST(test_holds_only_through_the_functions)
{
	PGconn *conn = fx_uploads_db("legal");
	char *conf = fx_uploads_config("legal", "15 minutes", "");
	PGconn *alice;
	char *who, *grants, *err;
	test_exec(conn, "CREATE ROLE legal NOLOGIN; CREATE ROLE alice LOGIN IN ROLE legal");
	ck_assert_int_eq(fx_ctl(conf, "legal", &grants, &err, "grants", "--for", "holds", "--role", "legal", NULL), 0);
	test_exec(conn, grants);
	free(grants);
	free(err);
	expect_state(conn, "legal", "INSERT INTO retention.holds (policy, record_key, reason) VALUES ('p', 'k', 'r')",
		     "42501");
	expect_state(conn, "legal", "UPDATE retention.holds SET placed_by = 'someone else'", "42501");
	alice = PQconnectdb("dbname=legal user=alice");
	ck_assert(PQstatus(alice) == CONNECTION_OK);
	test_exec(alice,
		  "SET ROLE legal; SELECT retention.place_hold('virusdesk-scan-uploads', '1', NULL, 'case', NULL)");
	test_exec(alice, "SELECT retention.release_hold(max(id), 'done') FROM retention.holds");
	who = test_query_value(conn, "SELECT placed_by || ' ' || released_by FROM retention.holds", 0, NULL);
	ck_assert_str_eq(who, "alice alice");
	free(who);
	PQfinish(alice);
	unlink(conf);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* An upgrade never stops enforcement: a daemon role granted as for version 1 purges on version 4. */
START_TEST(test_upgrade_from_version_1_keeps_enforcing)
{
	PGconn *conn = test_fresh_database("upgrade");
	char *conf, *out, *err;
	char *ctl = xasprintf("%s/src/retentionctl", test_builddir());
	char *migrate[] = {ctl, "-d", "dbname=upgrade", "migrate", NULL};
	test_exec(conn, schema_steps[0].sql);
	test_exec(conn,
		  "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'v1_daemon') THEN"
		  " CREATE ROLE v1_daemon LOGIN; END IF; END $$;"
		  "GRANT USAGE ON SCHEMA retention TO v1_daemon;"
		  "GRANT INSERT ON retention.audit_log TO v1_daemon;"
		  "GRANT USAGE ON SEQUENCE retention.audit_log_id_seq TO v1_daemon;"
		  "GRANT SELECT, INSERT, UPDATE ON retention.chain_heads, retention.instances TO v1_daemon;"
		  "GRANT SELECT ON retention.holds, retention.schema_version TO v1_daemon;"
		  "CREATE ROLE v1_legal NOLOGIN; GRANT USAGE ON SCHEMA retention TO v1_legal;"
		  "GRANT SELECT, INSERT, UPDATE ON retention.holds TO v1_legal;"
		  "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz);"
		  "INSERT INTO app.t VALUES (1, now() - interval '2 days');"
		  "GRANT USAGE ON SCHEMA app TO v1_daemon; GRANT SELECT, DELETE, UPDATE (id) ON app.t TO v1_daemon");
	ck_assert_int_eq(test_run(migrate, &out, &err), 0);
	ck_assert_msg(strstr(out, "upgraded to version 9 (8 steps)"), "%s%s", out, err);
	free(out);
	free(err);
	expect_state(conn, "v1_legal",
		     "INSERT INTO retention.holds (policy, record_key, reason) VALUES ('p', 'k', 'r')", "42501");
	conf = test_write_file(
		"database = { conninfo = \"dbname=upgrade user=v1_daemon\"; };\n"
		"policies = ( { name = \"t\"; service = \"s\"; source = \"s\"; table = \"app.t\"; key = \"id\";"
		" clock = \"c\"; retain = \"1 day\"; } );\n");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert(!fx_row_exists(conn, "app.t", "1"));
	fx_assert_chain_intact(conn);
	free(out);
	free(err);
	free(ctl);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A composite key: record_key is the row of its columns as ROW(a, b)::text
 * writes it. Holds are placed and compared in each column's type (a
 * numeric's 1.0 holds the row stored as 1.00) and protect from a sibling
 * policy too (a column of its own collation as well), explain and audit
 * take the same form, a record whose purge
 * fails on its own is quarantined by it, and a key of the wrong shape is
 * refused.
 */
START_TEST(test_composite_keys_are_held_explained_and_audited)
{
	PGconn *conn = fx_database("compositekeys");
	const char *policies =
		"{ name = \"ips\"; service = \"Chat\"; source = \"s\"; table = \"app.user_ips\";"
		" key = [ \"user_id\", \"device_id\" ]; clock = \"last_seen\"; clock_unit = \"milliseconds\";"
		" retain = \"1 day\"; },"
		" { name = \"ips-anon\"; service = \"Chat\"; source = \"s\"; table = \"app.user_ips\";"
		" key = [ \"user_id\", \"device_id\" ]; clock = \"last_seen\"; clock_unit = \"milliseconds\";"
		" retain = \"1 hour\"; action = \"anonymize\"; set_null = [ \"ip\" ]; },"
		" { name = \"media\"; service = \"Chat\"; source = \"s\"; table = \"app.media\";"
		" key = [ \"room\", \"n\" ]; clock = \"c\"; retain = \"1 day\"; }";
	char *conf = fx_config("compositekeys", NULL, policies);
	const char *params[1] = {"media"};
	struct fx_policy fp;
	char *out, *err;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.user_ips (user_id text NOT NULL, device_id text COLLATE \"C\" NOT NULL, ip text,"
		" last_seen bigint NOT NULL, PRIMARY KEY (user_id, device_id));"
		"CREATE TABLE app.media (room bigint NOT NULL, n numeric(6,2) NOT NULL, c timestamptz);"
		"CREATE UNIQUE INDEX ON app.media (n, room);"
		"INSERT INTO app.user_ips SELECT u, d, '10.0.0.1',"
		" (extract(epoch FROM now() - interval '2 days') * 1000)::bigint FROM (VALUES"
		" ('@alice:example.org', 'DEV1'), ('@alice:example.org', 'DEV 2,\"x\"'), ('@bob:example.org', 'DEV1')) v(u, d);"
		"INSERT INTO app.user_ips VALUES ('@carol:example.org', 'DEV1', '10.0.0.2',"
		" (extract(epoch FROM now()) * 1000)::bigint);"
		"INSERT INTO app.media VALUES (5, 1, now() - interval '2 days'), (5, 2, now() - interval '2 days'),"
		" (7, 3, now() - interval '2 days');"
		"CREATE FUNCTION app.guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF OLD.room = 7 THEN"
		" RAISE EXCEPTION 'room 7 is under audit'; END IF; RETURN OLD; END $$;"
		"CREATE TRIGGER guard BEFORE DELETE ON app.media FOR EACH ROW EXECUTE FUNCTION app.guard();"
		/* Placed as written, not canonicalised: the purge compares it as a numeric. */
		"SELECT retention.place_hold('media', '(5,1.0)', NULL, 'case 5', NULL)");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_check(conf, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	/* Written with quotes it needs not: stored as the row writes it. */
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "hold", "add", "--policy", "ips", "--key",
				"(\"@bob:example.org\",DEV1)", "--reason", "r", NULL),
			 0);
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT record_key FROM retention.holds WHERE policy = 'ips'", 0, NULL,
				"(@bob:example.org,DEV1)");
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "hold", "add", "--policy", "media", "--key", "(5)",
				"--reason", "r", NULL),
			 1);
	ck_assert_msg(
		strstr(err, "key (5) is not a key of policy media: one value for each of its key columns room, n"),
		"%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "--format", "json", "explain", "--policy", "ips",
				"--key", "(@bob:example.org,DEV1)", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"key\":\"(@bob:example.org,DEV1)\",\"status\":\"held\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "--format", "json", "explain", "--policy", "media",
				"--key", "(5,1)", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"key\":\"(5,1.00)\",\"status\":\"held\""), "%s", out);
	free(out);
	free(err);

	/* A record that could not be purged fails the run. */
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	free(out);
	free(err);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.user_ips WHERE user_id = '@alice:example.org'"),
			 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.user_ips"), 2);
	/* The hold on ips keeps the anonymizing sibling off bob's record too. */
	test_assert_query_value(conn, "SELECT ip FROM app.user_ips WHERE user_id = '@bob:example.org'", 0, NULL,
				"10.0.0.1");
	test_assert_query_value(conn, "SELECT string_agg(n::text, ',' ORDER BY n) FROM app.media", 0, NULL,
				"1.00,3.00");
	test_assert_query_value(conn,
				"SELECT record_key || ' ' || key_type || ' ' || key_of FROM retention.quarantine"
				" WHERE policy = 'media'",
				0, NULL, "(7,3.00) (bigint, numeric(6,2)) app.media.(room, n)");
	/* The audit rows name each record by the row's text form. */
	ck_assert_int_eq(fx_audit_count(conn, "ips", "(@alice:example.org,DEV1)"), 1);
	ck_assert_int_eq(fx_audit_count(conn, "ips", "(@alice:example.org,\"DEV 2,\"\"x\"\"\")"), 1);
	ck_assert_int_eq(fx_audit_count(conn, "media", "(5,2.00)"), 1);
	fx_assert_chain_intact(conn);
	/* And are found by the key as written another way. */
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "--format", "csv", "audit", "--policy", "ips",
				"--key", "(@alice:example.org,\"DEV 2,\\\"x\\\"\")", NULL),
			 0);
	ck_assert_msg(strstr(out, "@alice:example.org"), "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "--format", "json", "explain", "--policy", "media",
				"--key", "( 5 , 2 )", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"purged\""), "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "compositekeys", &out, &err, "--format", "json", "explain", "--policy", "media",
				"--key", "(7,3)", NULL),
			 0);
	ck_assert_msg(strstr(out, "room 7 is under audit"), "%s%s", out, err);
	free(out);
	free(err);
	/* Skipped while quarantined: the next run purges nothing and fails nothing. */
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.media"), 2);
	free(out);
	free(err);
	/* Its quarantine row stays while the record does, and goes with it (the daemon's count runs this). */
	fx_policy_prepare(&fp, conn, conf, "media");
	test_assert_query_value(conn, fp.sql.quarantine_stale, 1, params, "0");
	test_exec(conn, "ALTER TABLE app.media DISABLE TRIGGER guard; DELETE FROM app.media WHERE room = 7");
	test_assert_query_value(conn, fp.sql.quarantine_stale, 1, params, "1");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.quarantine WHERE policy = 'media'"), 0);
	fx_policy_free(&fp);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A hold names its record under the key its policy had when it was placed.
 * A sibling's key changed (id to the composite (u, d)) read the hold on
 * "5" under the new key, found no record, and the other policy of the
 * table purged record 5. A hold placed under another key than its policy's
 * now keeps every record of the table, until released or the key restored.
 */
START_TEST(test_a_hold_placed_under_another_key_keeps_the_table)
{
	PGconn *conn = fx_database("movedkey");
	const char *a = "{ name = \"a\"; service = \"S\"; source = \"s\"; table = \"app.t\";"
			" key = [ \"u\", \"d\" ]; clock = \"c\"; retain = \"1 day\"; }";
	char *before = xasprintf("%s, { name = \"b\"; service = \"S\"; source = \"s\"; table = \"app.t\";"
				 " key = \"id\"; clock = \"c\"; retain = \"1000 days\"; }",
				 a);
	char *after = xasprintf("%s, { name = \"b\"; service = \"S\"; source = \"s\"; table = \"app.t\";"
				" key = \"u\"; clock = \"c\"; retain = \"1000 days\"; }",
				a);
	char *conf1 = fx_config("movedkey", NULL, before), *conf2 = fx_config("movedkey", NULL, after);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.t (id int PRIMARY KEY, u text NOT NULL UNIQUE, d text NOT NULL,"
		  " c timestamptz NOT NULL, UNIQUE (u, d));"
		  "INSERT INTO app.t VALUES (5, 'alice', 'DEV1', now() - interval '2 days'),"
		  " (6, 'bob', 'DEV1', now() - interval '2 days'), (8, 'dave', 'DEV1', now() - interval '2 days');"
		  /* Placed in SQL before any rule of b was recorded: of the first one recorded. */
		  "SELECT retention.place_hold('b', '8', NULL, 'early', NULL)");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_ctl(conf1, "movedkey", &out, &err, "hold", "add", "--policy", "b", "--key", "5", "--reason",
				"case", NULL),
			 0);
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT string_agg(coalesce(key_of, '-'), ',' ORDER BY id) FROM retention.holds",
				0, NULL, "-,app.t.id");
	ck_assert_msg(fx_run_once(conf1, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT string_agg(key_of, ',' ORDER BY id) FROM retention.holds", 0, NULL,
				"app.t.id,app.t.id");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.t"), 2);
	test_exec(conn, "INSERT INTO app.t VALUES (7, 'carol', 'DEV1', now() - interval '2 days')");
	/* b refuses its new key while its hold names records by the old one; a keeps 5, and every record. */
	fx_run_once(conf2, &out, &err);
	free(out);
	free(err);
	ck_assert_msg(test_query_ll(conn, "SELECT count(*) FROM app.t WHERE id IN (5, 8)") == 2,
		      "a record held under policy b's key id was purged by policy a once b's key was u");
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.t WHERE id = 7"), 1);
	ck_assert_int_eq(fx_ctl(conf2, "movedkey", &out, &err, "--format", "json", "explain", "--policy", "a", "--key",
				"(carol,DEV1)", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"held\"") && strstr(out, "\"reason\" : \"case\""), "%s%s", out, err);
	free(out);
	free(err);
	/* Released, the table is a's again. */
	test_exec(conn, "SELECT retention.release_hold(id, 'done') FROM retention.holds");
	ck_assert_msg(fx_run_once(conf1, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.t"), 0);
	/* A hold placed in SQL, five arguments, is of the key in force. */
	test_exec(conn, "SELECT retention.place_hold('b', '9', NULL, 'sql', NULL)");
	test_assert_query_value(conn, "SELECT key_of FROM retention.holds WHERE reason = 'sql'", 0, NULL, "app.t.id");
	free(before);
	free(after);
	free(conf1);
	free(conf2);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("holds");
	TCase *tc = test_tcase("holds", 120);
	tcase_add_test(tc, test_holds_match_in_the_columns_type);
	tcase_add_test(tc, test_a_hold_protects_from_every_policy_of_the_table);
	tcase_add_test(tc, test_no_stranger_can_take_a_policys_lock);
	tcase_add_test(tc, test_hold_add_says_when_the_batch_in_flight_took_the_record);
	tcase_add_test(tc, test_hold_add_force_says_when_the_batch_in_flight_took_the_record);
	tcase_add_test(tc, test_hold_add_says_when_the_batch_in_flight_anonymized_the_record);
	tcase_add_test(tc, test_a_hold_under_a_sibling_waits_for_the_batch_in_flight);
	tcase_add_test(tc, test_a_hold_protects_across_a_partition_tree);
	tcase_add_test(tc, test_holds_only_through_the_functions);
	tcase_add_test(tc, test_upgrade_from_version_1_keeps_enforcing);
	tcase_add_test(tc, test_composite_keys_are_held_explained_and_audited);
	tcase_add_test(tc, test_a_hold_placed_under_another_key_keeps_the_table);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
