/* The retention schema on a real server: migrate, the daemon role's privileges, notify_clock(). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schema.h"
#include "testutil.h"
#include "util.h"

static char *ctl_path(void) { return xasprintf("%s/src/retentionctl", test_builddir()); }

static int run_migrate(const char *db, char **out, char **err)
{
	char *ctl = ctl_path();
	char *conninfo = xasprintf("dbname=%s", db);
	char *argv[] = {ctl, "-d", conninfo, "migrate", NULL};
	int status = test_run(argv, out, err);
	free(ctl);
	free(conninfo);
	return status;
}

static const char snapshot_sql[] =
	"SELECT string_agg(format('%s %s %s', c.relname, c.relkind, c.relacl), ', ' ORDER BY c.relname)"
	"  || ' / ' || (SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p"
	"               WHERE p.pronamespace = 'retention'::regnamespace)"
	"  || ' / ' || (SELECT count(*) FROM retention.schema_version)"
	"  FROM pg_class c WHERE c.relnamespace = 'retention'::regnamespace";

START_TEST(test_migrate_twice_is_idempotent)
{
	PGconn *conn = test_fresh_database("migrate_twice");
	char *out, *err, *before, *after, *tables;
	ck_assert_int_eq(run_migrate("migrate_twice", &out, &err), 0);
	ck_assert_msg(strstr(out, "upgraded to version 9 (9 steps)") != NULL, "out=%s err=%s", out, err);
	free(out);
	free(err);
	before = test_query_value(conn, snapshot_sql, 0, NULL);
	ck_assert_int_eq(run_migrate("migrate_twice", &out, &err), 0);
	ck_assert_msg(strstr(out, "nothing to do") != NULL, "out=%s err=%s", out, err);
	after = test_query_value(conn, snapshot_sql, 0, NULL);
	ck_assert_str_eq(before, after);
	tables = test_query_value(conn,
				  "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables"
				  " WHERE schemaname = 'retention'",
				  0, NULL);
	ck_assert_str_eq(
		tables,
		"audit_log chain_gaps chain_heads holds instances policy_locks quarantine request_identities request_results requests rule_versions schema_version");
	ck_assert_int_eq(test_query_ll(conn, "SELECT max(version) FROM retention.schema_version"),
			 schema_latest_version());
	free(out);
	free(err);
	free(before);
	free(after);
	free(tables);
	PQfinish(conn);
}
END_TEST

START_TEST(test_migrate_reports_connection_error)
{
	char *ctl = ctl_path();
	char *argv[] = {ctl, "-d", "host=/nonexistent-dir", "migrate", NULL};
	char *out, *err;
	ck_assert_int_eq(test_run(argv, &out, &err), 1);
	ck_assert_msg(strncmp(err, "retentionctl: cannot connect", 28) == 0, "%s", err);
	free(out);
	free(err);
	free(ctl);
}
END_TEST

/* SQLSTATE of SQL run as ROLE, "00000" if it succeeded. */
static char *sqlstate_as(PGconn *conn, const char *role, const char *sql)
{
	char *set = xasprintf("SET ROLE %s", role);
	PGresult *res;
	char *state;
	test_exec(conn, set);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
		state = xstrdup("00000");
	else
		state = xstrdup(PQresultErrorField(res, PG_DIAG_SQLSTATE));
	PQclear(res);
	test_exec(conn, "RESET ROLE");
	free(set);
	return state;
}

START_TEST(test_daemon_role_is_least_privilege)
{
	PGconn *conn = test_fresh_database("roles");
	char *out, *err, *psql, *script;
	const char *bindir = getenv("PG_BINDIR");
	static const struct {
		const char *sql;
		const char *state;
	} cases[] = {
		{"INSERT INTO retention.audit_log (format, policy, seq, service, source, table_name, record_key,"
		 " clock_at, due_at, purged_at, action, cause, instance, txid, prev_hash, hash)"
		 " VALUES (2, 'p', 1, 's', 's', 't', 'k', now(), now(), now(), 'delete', 'schedule', 'i', 1,"
		 " retention.genesis_hash(), retention.genesis_hash())",
		 "00000"},
		{"UPDATE retention.audit_log SET record_key = 'x'", "42501"},
		{"DELETE FROM retention.audit_log", "42501"},
		{"TRUNCATE retention.audit_log", "42501"},
		{"SELECT count(*) FROM retention.audit_log", "42501"},
		{"SELECT count(*) FROM retention.holds", "00000"},
		{"INSERT INTO retention.holds (policy, record_key, reason) VALUES ('p', 'k', 'r')", "42501"},
		{"SELECT retention.place_hold('p', 'k', NULL, 'r', NULL)", "42501"},
		{"SELECT retention.release_hold(1, 'r')", "42501"},
		{"SELECT retention.try_lock_policy('p')", "00000"},
		{"SELECT retention.lock_policy('p')", "42501"},
		{"SELECT * FROM retention.policy_locks FOR UPDATE", "42501"},
		{"DELETE FROM retention.holds", "42501"},
		{"INSERT INTO retention.chain_heads VALUES ('p', 1, retention.genesis_hash(), now())", "00000"},
		{"DELETE FROM retention.chain_heads", "42501"},
		{"SELECT count(*) FROM app.uploads", "00000"},
		{"DELETE FROM app.uploads", "00000"},
		{"UPDATE app.uploads SET id = id", "00000"},
		{"SELECT id FROM app.uploads FOR UPDATE SKIP LOCKED", "00000"},
		{"SELECT count(*) FROM app.other", "42501"},
		/* It says which rule version it enforces; only an operator approves one. */
		{"SELECT retention.rule_enforce(1)", "00000"},
		{"SELECT retention.rule_approve(1, 1, 'r', 'b', false)", "42501"},
	};

	ck_assert_int_eq(run_migrate("roles", &out, &err), 0);
	free(out);
	free(err);
	psql = xasprintf("%s/psql", bindir ? bindir : "/usr/bin");
	script = xasprintf("%s/sql/daemon-role.sql", test_srcdir());
	{
		char *argv[] = {psql, "-X",   "-q", "-d", "roles", "-v", "role=retention_daemon_test",
				"-f", script, NULL};
		int status = test_run(argv, &out, &err);
		ck_assert_msg(status == 0, "psql exit %d: %s%s", status, out, err);
		free(out);
		free(err);
		/* Twice: the script re-grants without failing on an existing role. */
		status = test_run(argv, &out, &err);
		ck_assert_msg(status == 0, "psql again: %s", err);
		free(out);
		free(err);
	}
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.uploads (id int PRIMARY KEY, closed_at timestamptz);"
			"CREATE INDEX ON app.uploads (closed_at);"

			"CREATE TABLE app.other (id int);"
			"GRANT USAGE ON SCHEMA app TO retention_daemon_test;"
			"GRANT SELECT, DELETE, UPDATE (id) ON app.uploads TO retention_daemon_test;");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *state = sqlstate_as(conn, "retention_daemon_test", cases[i].sql);
		ck_assert_msg(strcmp(state, cases[i].state) == 0, "%s: got %s, want %s", cases[i].sql, state,
			      cases[i].state);
		free(state);
	}
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM pg_class WHERE relowner ="
					     " 'retention_daemon_test'::regrole"),
			 0);
	/* With exactly the documented grants the daemon checks clean and purges. */
	{
		char *daemon = xasprintf("%s/src/retentiond", test_builddir());
		char *conf = test_write_file(
			"database = { conninfo = \"dbname=roles user=retention_daemon_test\"; };\n"
			"policies = ( { name = \"uploads\"; service = \"s\"; source = \"s\";"
			" table = \"app.uploads\"; key = \"id\"; clock = \"closed_at\"; retain = \"1 day\"; } );\n");
		char *check[] = {daemon, "-c", conf, "--check", NULL};
		char *once[] = {daemon, "-c", conf, "--once", NULL};
		test_exec(conn, "INSERT INTO app.uploads VALUES (1, now() - interval '2 days'), (2, now())");
		ck_assert_msg(test_run(check, &out, &err) == 0, "--check: %s%s", out, err);
		free(out);
		free(err);
		ck_assert_msg(test_run(once, &out, &err) == 0, "--once: %s%s", out, err);
		free(out);
		free(err);
		ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.uploads"), 1);
		ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key = '1'"),
				 1);
		/* Without UPDATE of a column the purge cannot lock rows, and --check says so. */
		test_exec(conn, "REVOKE UPDATE (id) ON app.uploads FROM retention_daemon_test");
		ck_assert_int_eq(test_run(check, &out, &err), 1);
		ck_assert_msg(strstr(out, "lacks UPDATE on any column") != NULL, "%s", out);
		free(out);
		free(err);
		unlink(conf);
		free(conf);
		free(daemon);
	}
	free(psql);
	free(script);
	PQfinish(conn);
}
END_TEST

START_TEST(test_notify_clock_wakes_listener)
{
	PGconn *conn = test_fresh_database("notify");
	PGconn *listener;
	PGnotify *n = NULL;
	char *out, *err;
	double deadline;
	ck_assert_int_eq(run_migrate("notify", &out, &err), 0);
	free(out);
	free(err);
	test_exec(
		conn,
		"CREATE SCHEMA \"Virus Desk\"; CREATE TABLE \"Virus Desk\".uploads (id int PRIMARY KEY, scanned timestamptz);"
		"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF scanned ON \"Virus Desk\".uploads"
		" FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()");
	listener = PQconnectdb("dbname=notify");
	test_exec(listener, "LISTEN retentiond");
	test_exec(conn, "INSERT INTO \"Virus Desk\".uploads VALUES (1, now())");
	deadline = test_now() + 10;
	while (n == NULL && test_now() < deadline) {
		PQconsumeInput(listener);
		n = PQnotifies(listener);
		if (n == NULL)
			usleep(10000);
	}
	ck_assert_ptr_nonnull(n);
	ck_assert_str_eq(n->relname, "retentiond");
	ck_assert_str_eq(n->extra, "\"Virus Desk\".uploads");
	PQfreemem(n);
	PQfinish(listener);
	PQfinish(conn);
}
END_TEST

/*
 * Version 9: what version 8 daemons recorded as their own approvals, and as
 * the rules in force at the upgrade, is taken back (enforced, approved by no
 * one); an operator's stays; and the roles that could read and record
 * versions still can.
 */
START_TEST(test_version_9_takes_back_the_daemons_approvals)
{
	PGconn *conn = test_fresh_database("takeback");
	char *out, *err;
	for (int i = 0; schema_steps[i].version <= 8; i++)
		test_exec(conn, schema_steps[i].sql);
	test_exec(
		conn,
		"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'takeback_dpo') THEN"
		" CREATE ROLE takeback_dpo NOLOGIN; END IF; END $$;"
		"GRANT EXECUTE ON FUNCTION retention.rule_state(text, text, text, text) TO takeback_dpo;"
		"INSERT INTO retention.rule_versions (policy, rule, rule_hash, frame_hash, retain, started_by, started_at,"
		" approved_by, approved_at, approved_count, approved_reason) VALUES"
		" ('p', '{}', '\\x01', '\\x01', '1 day', 'i-1', now(), 'daemon (retentiond i-1)', now() - interval"
		" '1 hour', 5, 'newly makes 5 records due, no more than guard_records (10)'),"
		" ('p', '{\"a\":1}', '\\x02', '\\x01', '2 days', 'i-1', now(), 'carol (retentionctl approve)', now(),"
		" 30000, 'DPA-2026-14'),"
		" ('q', '{}', '\\x03', '\\x01', '1 day', 'host1', now(), 'host1', now(), NULL,"
		" 'in force before rule versions were recorded'),"
		" ('u', '{}', '\\x04', '\\x01', '1 day', 'retentionctl approve', now(), 'retentionctl approve', now(),"
		" NULL, 'in force before rule versions were recorded')");
	ck_assert_int_eq(run_migrate("takeback", &out, &err), 0);
	free(out);
	free(err);
	test_assert_query_value(conn,
				"SELECT string_agg(coalesce(approved_by, '-') || ' ' || (enforced_at IS NOT NULL), ', '"
				" ORDER BY id) FROM retention.rule_versions",
				0, NULL, "- true, carol (retentionctl approve) false, - true, - false");
	/* Recorded first by retentionctl in version 8, enforced by no daemon: nothing is in force for it. */
	test_assert_query_value(conn, "SELECT in_force IS NULL FROM retention.rule_state('u', '{}', '{}', NULL)", 0,
				NULL, "t");
	test_assert_query_value(conn,
				"SELECT has_function_privilege('takeback_dpo', 'retention.rule_state(text, text, text,"
				" text)', 'EXECUTE')",
				0, NULL, "t");
	PQfinish(conn);
}
END_TEST

/*
 * A composite key's record_key is read back by retention.record_fields as
 * PostgreSQL's own record input reads a row: every pair of awkward texts
 * (quotes, backslashes, commas, parentheses, blanks, the empty string, NULL)
 * comes back as a row of text columns gives it, and malformed text or the
 * wrong number of fields is a data exception, as a failed cast is.
 */
START_TEST(test_record_fields_reads_a_row_as_record_input_does)
{
	PGconn *conn = test_fresh_database("recordfields");
	char *out, *err;
	ck_assert_int_eq(run_migrate("recordfields", &out, &err), 0);
	free(out);
	free(err);
	test_exec(conn, "CREATE TYPE pair AS (a text, b text)");
	test_assert_query_value(
		conn,
		"WITH v(x) AS (VALUES ('a'), (''), (' '), ('\"'), ('\\'), ('\\\\\"'), ('(,)'), ('a\"b'), (E'tab\\there'),"
		" ('\u00e9'), ('\"\"'), (')'), ('('), (NULL)),"
		" r(t) AS (SELECT ROW(x.x, y.x)::pair::text FROM v x, v y UNION ALL VALUES ('(a\\,b,c)'), ('( \"x\" y,z)'),"
		" ('(\"\",)'), ('(,)'))"
		" SELECT count(*) FILTER (WHERE (t::pair).a IS NOT DISTINCT FROM f[1] AND (t::pair).b IS NOT DISTINCT FROM"
		" f[2])::text || '/' || count(*) FROM r, retention.record_fields(t, 2) f",
		0, NULL, "200/200");
	static const char *const malformed[] = {"(1,2",    "1,2)", "(1,\"2)", "(1,2)x", "(1,2)x)",
						"(1,2,3)", "(1)",  "()",      "(1,x\\)"};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		const char *params[1] = {malformed[i]};
		PGresult *res =
			PQexecParams(conn, "SELECT retention.record_fields($1, 2)", 1, NULL, params, NULL, NULL, 0);
		ck_assert_msg(PQresultStatus(res) == PGRES_FATAL_ERROR &&
				      strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22P02") == 0,
			      "%s read as a row of 2", malformed[i]);
		PQclear(res);
	}
	/* What is no row of the types names nothing, and fails nothing. */
	test_assert_query_value(
		conn,
		"SELECT string_agg(f::text, ' ') FROM retention.record_fields_valid(ARRAY['(1,a)', '(x,b)',"
		" '(2)', NULL, '(3,c)'], ARRAY['bigint', 'text']) f",
		0, NULL, "{1,a} {3,c}");
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("schema");
	TCase *tc = test_tcase("migrate", 60);
	tcase_add_test(tc, test_migrate_twice_is_idempotent);
	tcase_add_test(tc, test_migrate_reports_connection_error);
	tcase_add_test(tc, test_daemon_role_is_least_privilege);
	tcase_add_test(tc, test_notify_clock_wakes_listener);
	tcase_add_test(tc, test_version_9_takes_back_the_daemons_approvals);
	tcase_add_test(tc, test_record_fields_reads_a_row_as_record_input_does);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
