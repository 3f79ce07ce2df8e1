/*
 * What must never happen to data retentiond is not allowed to purge, and
 * what must never happen to the audit trail, against a real server: cascades
 * into records that must stay, exempt values in their column's type,
 * search_path and trigger tricks, records that cannot be deleted, infinite
 * clocks, personal data in the log. Each test names the defect of the review
 * of 78f4ad6 it pins (D2 ... D26, M11).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "util.h"

static long long count(PGconn *conn, const char *sql) { return test_query_ll(conn, sql); }

/*
 * D2: ON DELETE CASCADE deleted a held, not-yet-due record of another
 * policy, with no audit row. A record referenced by rows a policy governs is
 * now kept until those rows go by their own policy.
 */
START_TEST(test_cascade_never_takes_another_policys_records)
{
	PGconn *conn = fx_database("cascade");
	char *orders = fx_policy("orders", "shop.orders", "id", "closed_at", "1 day", "");
	char *lines = fx_policy("lines", "shop.lines", "id", "shipped_at", "10 years", "");
	char *policies = xasprintf("%s, %s", orders, lines);
	char *conf = fx_config("cascade", NULL, policies);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA shop;"
		  "CREATE TABLE shop.orders (id int PRIMARY KEY, closed_at timestamptz);"
		  "CREATE TABLE shop.lines (id int PRIMARY KEY, order_id int REFERENCES shop.orders ON DELETE CASCADE,"
		  " shipped_at timestamptz);"
		  "CREATE INDEX ON shop.lines (order_id);"
		  "INSERT INTO shop.orders VALUES (1, now() - interval '2 days'), (2, now() - interval '2 days');"
		  "INSERT INTO shop.lines VALUES (10, 1, now());"
		  "SELECT retention.place_hold('lines', '10', NULL, 'dispute', NULL)");
	fx_grant(conn, "shop");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "shop.lines", "10"), "a held line went with its order");
	ck_assert_msg(fx_row_exists(conn, "shop.orders", "1"), "the order of a kept line was deleted");
	ck_assert(!fx_row_exists(conn, "shop.orders", "2"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "cascade", &out, &err, "--format", "json", "explain", "--policy", "orders",
				"--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"referenced\"") && strstr(out, "referenced by shop.lines"), "%s", out);
	free(out);
	free(err);
	/* --check says what references the table, and why records stay. */
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "policy orders: warning: a record referenced by shop.lines (foreign key"), "%s", out);
	free(out);
	free(err);
	free(orders);
	free(lines);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Row-level security hid from the daemon's role the rows that keep a
 * record: the governed line of an order, or the hold on it. The order was
 * deleted and the line went with it by cascade, unaudited. Every table a
 * purge reads must show the role all its rows, or the policy does not run.
 */
START_TEST(test_rows_hidden_by_row_level_security_keep_the_policy_off)
{
	PGconn *conn = fx_database("hidden");
	char *orders = fx_policy("orders", "shop.orders", "id", "closed_at", "1 day", "");
	char *lines = fx_policy("lines", "shop.lines", "id", "shipped_at", "10 years", "");
	char *policies = xasprintf("%s, %s", orders, lines);
	char *conf = fx_config("hidden", NULL, policies);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA shop;"
		  "CREATE TABLE shop.orders (id int PRIMARY KEY, closed_at timestamptz);"
		  "CREATE TABLE shop.lines (id int PRIMARY KEY, order_id int REFERENCES shop.orders ON DELETE CASCADE,"
		  " shipped_at timestamptz);"
		  "CREATE INDEX ON shop.lines (order_id);"
		  "INSERT INTO shop.orders VALUES (1, now() - interval '2 days');"
		  "INSERT INTO shop.lines VALUES (10, 1, now());"
		  "ALTER TABLE shop.lines ENABLE ROW LEVEL SECURITY");
	fx_grant(conn, "shop");
	fx_run_once(conf, &out, &err);
	ck_assert_msg(fx_row_exists(conn, "shop.lines", "10"), "a line hidden by row-level security went by cascade");
	ck_assert_msg(fx_row_exists(conn, "shop.orders", "1"), "the order of a hidden line was deleted");
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "policy orders: error: row-level security applies to role retentiond_test on"
				  " shop.lines, which the purge reads"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy lines: error: row-level security applies to role retentiond_test on the"
				  " table"),
		      "%s", out);
	free(out);
	free(err);
	/* A hold the role may not see protects nothing: no policy runs. */
	test_exec(conn, "ALTER TABLE shop.lines DISABLE ROW LEVEL SECURITY; DELETE FROM shop.lines;"
			"SELECT retention.place_hold('orders', '1', NULL, 'dispute', NULL);"
			"ALTER TABLE retention.holds ENABLE ROW LEVEL SECURITY");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "policy orders: error: row-level security applies to role retentiond_test on"
				  " retention.holds"),
		      "%s", out);
	free(out);
	free(err);
	fx_run_once(conf, &out, &err);
	ck_assert_msg(fx_row_exists(conn, "shop.orders", "1"),
		      "a record held by a hold the role may not see was purged");
	free(out);
	free(err);
	free(orders);
	free(lines);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* D2, second variant: a self-referencing table; a due message must not take its newer, held reply with it. */
START_TEST(test_cascade_within_one_table_keeps_the_reply)
{
	PGconn *conn = fx_database("selfref");
	char *policy = fx_policy("chat", "chat.msg", "id", "sent_at", "30 days", "");
	char *conf = fx_config("selfref", NULL, policy);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA chat;"
		  "CREATE TABLE chat.msg (id int PRIMARY KEY, parent int REFERENCES chat.msg ON DELETE CASCADE,"
		  " sent_at timestamptz);"
		  "CREATE INDEX ON chat.msg (parent);"
		  "INSERT INTO chat.msg VALUES (1, NULL, now() - interval '40 days'), (2, 1, now() - interval '1 day'),"
		  " (3, NULL, now() - interval '40 days');"
		  "SELECT retention.place_hold('chat', '2', NULL, 'case', NULL)");
	fx_grant(conn, "chat");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "chat.msg", "2"), "a held reply 29 days before its due date was deleted");
	ck_assert(fx_row_exists(conn, "chat.msg", "1"));
	ck_assert(!fx_row_exists(conn, "chat.msg", "3"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A message that answers itself (parent = id) was "referenced" by itself
 * and kept forever: a row never keeps itself.
 */
START_TEST(test_a_row_that_references_itself_is_purged)
{
	PGconn *conn = fx_database("selfloop");
	char *policy = fx_policy("chat", "chat.msg", "id", "sent_at", "30 days", "");
	char *conf = fx_config("selfloop", NULL, policy);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA chat;"
		  "CREATE TABLE chat.msg (id int PRIMARY KEY, parent int REFERENCES chat.msg ON DELETE CASCADE,"
		  " sent_at timestamptz);"
		  "CREATE INDEX ON chat.msg (parent);"
		  "INSERT INTO chat.msg VALUES (5, 5, now() - interval '40 days'), (6, 5, now() - interval '40 days'),"
		  " (7, 7, now() - interval '1 day')");
	fx_grant(conn, "chat");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(!fx_row_exists(conn, "chat.msg", "5"), "a due row that references itself was kept");
	ck_assert(!fx_row_exists(conn, "chat.msg", "6"));
	ck_assert(fx_row_exists(conn, "chat.msg", "7"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 2);
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Cascades that lead back into the policy's own table: deleting a due
 * account took its sessions, whose cascade took the account that a session
 * had spawned, months before that one was due. Rows of the policy's table
 * at a path's end keep the record as governed rows do.
 */
START_TEST(test_a_cascade_back_into_the_table_keeps_the_record)
{
	PGconn *conn = fx_database("cycle");
	char *policy = fx_policy("accounts", "app.accounts", "id", "closed_at", "1 day", "");
	char *conf = fx_config("cycle", NULL, policy);
	char *out, *err;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.accounts (id int PRIMARY KEY, closed_at timestamptz, spawned_by int);"
		"CREATE TABLE app.sessions (id int PRIMARY KEY, account int REFERENCES app.accounts ON DELETE CASCADE);"
		"ALTER TABLE app.accounts ADD FOREIGN KEY (spawned_by) REFERENCES app.sessions ON DELETE CASCADE;"
		"CREATE INDEX ON app.sessions (account); CREATE INDEX ON app.accounts (spawned_by);"
		"INSERT INTO app.accounts VALUES (1, now() - interval '2 days', NULL), (3, now() - interval '2 days', NULL);"
		"INSERT INTO app.sessions VALUES (10, 1);"
		"INSERT INTO app.accounts VALUES (2, now(), 10)");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "app.accounts", "2"), "an account not yet due went by a cascade cycle");
	ck_assert(fx_row_exists(conn, "app.accounts", "1"));
	ck_assert(!fx_row_exists(conn, "app.accounts", "3"));
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A cascade longer than the guards follow reached a governed table
 * unguarded. The policy does not run, and --check says why.
 */
START_TEST(test_cascades_deeper_than_followed_keep_the_policy_off)
{
	PGconn *conn = fx_database("toodeep");
	char *a = fx_policy("top", "app.t0", "id", "c", "1 day", "");
	char *b = fx_policy("bottom", "app.t7", "id", "c", "10 years", "");
	char *policies = xasprintf("%s, %s", a, b);
	char *conf = fx_config("toodeep", NULL, policies);
	char *out, *err;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.t0 (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO app.t0 VALUES (1, now() - interval '2 days');");
	for (int i = 1; i <= 7; i++) {
		char *sql = xasprintf("CREATE TABLE app.t%d (id int PRIMARY KEY, up int REFERENCES app.t%d ON DELETE"
				      " CASCADE, c timestamptz); CREATE INDEX ON app.t%d (up);"
				      "INSERT INTO app.t%d VALUES (1, 1, now())",
				      i, i - 1, i, i);
		test_exec(conn, sql);
		free(sql);
	}
	fx_grant(conn, "app");
	fx_run_once(conf, &out, &err);
	ck_assert_msg(fx_row_exists(conn, "app.t7", "1"), "a governed row seven cascades away was deleted");
	ck_assert(fx_row_exists(conn, "app.t0", "1"));
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "policy top: error: deleting a record cascades through more than 6 tables"), "%s",
		      out);
	free(out);
	free(err);
	free(a);
	free(b);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Foreign keys are declared on partitioned tables: a policy on one
 * partition was not seen as referenced through its parent, and a policy on
 * a partition was not seen as governing rows its parent's key reaches.
 */
START_TEST(test_partitions_are_governed_with_their_table)
{
	PGconn *conn = fx_database("partitions");
	char *a = fx_policy("events", "app.events_2026", "id", "at", "1 day", "");
	char *b = fx_policy("notes", "app.notes", "id", "at", "10 years", "");
	char *c = fx_policy("orders", "app.orders", "id", "at", "1 day", "");
	char *d = fx_policy("lines", "app.lines_2026", "id", "at", "10 years", "");
	char *policies = xasprintf("%s, %s, %s, %s", a, b, c, d);
	char *conf = fx_config("partitions", NULL, policies);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.events (id int PRIMARY KEY, at timestamptz) PARTITION BY RANGE (id);"
		  "CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM (0) TO (1000);"
		  "CREATE TABLE app.notes (id int PRIMARY KEY, event int REFERENCES app.events ON DELETE CASCADE,"
		  " at timestamptz);"
		  "CREATE INDEX ON app.notes (event);"
		  "INSERT INTO app.events VALUES (1, now() - interval '2 days'), (2, now() - interval '2 days');"
		  "INSERT INTO app.notes VALUES (10, 1, now());"
		  "CREATE TABLE app.orders (id int PRIMARY KEY, at timestamptz);"
		  "CREATE TABLE app.lines (id int, ord int REFERENCES app.orders ON DELETE CASCADE, at timestamptz,"
		  " PRIMARY KEY (id)) PARTITION BY RANGE (id);"
		  "CREATE TABLE app.lines_2026 PARTITION OF app.lines FOR VALUES FROM (0) TO (1000);"
		  "CREATE INDEX ON app.lines (ord);"
		  "INSERT INTO app.orders VALUES (1, now() - interval '2 days'), (2, now() - interval '2 days');"
		  "INSERT INTO app.lines VALUES (20, 1, now())");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "app.notes", "10"), "a governed note went with its event's partition row");
	ck_assert(fx_row_exists(conn, "app.events", "1"));
	ck_assert(!fx_row_exists(conn, "app.events", "2"));
	ck_assert_msg(fx_row_exists(conn, "app.lines", "20"), "a governed partition's line went with its order");
	ck_assert(fx_row_exists(conn, "app.orders", "1"));
	ck_assert(!fx_row_exists(conn, "app.orders", "2"));
	free(out);
	free(err);
	free(a);
	free(b);
	free(c);
	free(d);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D2: a cascade that reaches a governed table through one no policy governs:
 * the record is kept while the governed row exists, and purged once that
 * row has gone by its own policy (audited, its hold respected).
 */
START_TEST(test_cascade_through_an_ungoverned_table_keeps_the_record)
{
	PGconn *conn = fx_database("deepcascade");
	char *a = fx_policy("parents", "app.parents", "id", "closed_at", "1 day", "");
	char *b = fx_policy("grandchildren", "app.grandchildren", "id", "at", "1 day", "");
	char *policies = xasprintf("%s, %s", a, b);
	char *conf = fx_config("deepcascade", NULL, policies);
	char *log = fx_log_path("deepcascade");
	char *out, *err, *hold;
	pid_t pid;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.parents (id int PRIMARY KEY, closed_at timestamptz);"
		"CREATE TABLE app.children (id int PRIMARY KEY, parent int REFERENCES app.parents ON DELETE CASCADE);"
		"CREATE TABLE app.grandchildren (id int PRIMARY KEY, child int REFERENCES app.children ON DELETE CASCADE,"
		" at timestamptz);"
		"CREATE INDEX ON app.children (parent); CREATE INDEX ON app.grandchildren (child);"
		"INSERT INTO app.parents VALUES (1, now() - interval '2 days');"
		"INSERT INTO app.children VALUES (5, 1);"
		"INSERT INTO app.grandchildren VALUES (9, 5, now() - interval '2 days')");
	fx_grant(conn, "app");
	hold = test_query_value(conn, "SELECT retention.place_hold('grandchildren', '9', NULL, 'case', NULL)", 0, NULL);
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "app.grandchildren", "9"), "a held row went with a record two hops away");
	ck_assert(fx_row_exists(conn, "app.parents", "1"));
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "deepcascade", &out, &err, "--format", "json", "explain", "--policy", "parents",
				"--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "referenced by app.children through app.grandchildren"), "%s", out);
	free(out);
	free(err);
	/* The hold ends: the grandchild goes by its own policy, then the record it kept, at once. */
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy parents: nothing pending", 10);
	{
		char *sql = xasprintf("SELECT retention.release_hold(%s, 'closed')", hold);
		test_exec(conn, sql);
		free(sql);
	}
	ck_assert_msg(fx_wait_row_gone(conn, "app.parents", "1", 5),
		      "the record was not purged once what kept it went");
	ck_assert_int_eq(fx_audit_count(conn, "grandchildren", "9"), 1);
	ck_assert_int_eq(fx_audit_count(conn, "parents", "1"), 1);
	fx_stop_daemon(pid);
	free(hold);
	free(a);
	free(b);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* D4: exempt values were compared as text, so "t" on a boolean column exempted nothing. */
START_TEST(test_exempt_values_compare_in_the_columns_type)
{
	PGconn *conn = fx_database("exemptbool");
	char *policy = fx_policy("files", "app.files", "id", "closed_at", "1 day",
				 "exempt = { column = \"legal_hold\"; values = [ \"t\" ]; };");
	char *bad = fx_policy("files", "app.files", "id", "closed_at", "1 day",
			      "exempt = { column = \"legal_hold\"; values = [ \"maybe\" ]; };");
	char *conf = fx_config("exemptbool", NULL, policy);
	char *bad_conf = fx_config("exemptbool", NULL, bad);
	char *out, *err;
	test_exec(
		conn,
		"CREATE SCHEMA app; CREATE TABLE app.files (id int PRIMARY KEY, closed_at timestamptz,"
		" legal_hold boolean, amount numeric);"
		"INSERT INTO app.files VALUES (1, now() - interval '2 days', true), (2, now() - interval '2 days', false),"
		" (3, now() - interval '2 days', NULL)");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(fx_row_exists(conn, "app.files", "1"), "legal_hold = true was purged though \"t\" exempts it");
	ck_assert(!fx_row_exists(conn, "app.files", "2"));
	ck_assert(!fx_row_exists(conn, "app.files", "3"));
	free(out);
	free(err);
	/* A value that is not of the column's type is an error, not a silent "exempts nothing". */
	ck_assert_int_eq(fx_run_check(bad_conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "policy files: error: an exempt or set value is not of its column's type") &&
			      strstr(out, "invalid input syntax for type boolean: \"maybe\""),
		      "%s", out);
	free(out);
	free(err);
	free(policy);
	free(bad);
	free(conf);
	free(bad_conf);
	PQfinish(conn);
}
END_TEST

/*
 * D6: the schema's SQL functions resolved built-ins through the caller's
 * search_path: an exact-typed public.json_build_array() replaced the audit
 * payload, and public.format() ran inside notify_clock() as every writer.
 */
START_TEST(test_search_path_cannot_replace_built_ins)
{
	PGconn *conn = fx_uploads_db("hijack");
	char *conf = fx_uploads_config("hijack", "15 minutes", "");
	char *out, *err, *genuine, *hijacked;
	test_exec(conn,
		  "CREATE ROLE mallory LOGIN; GRANT CREATE ON SCHEMA public TO mallory;"
		  "CREATE TABLE public.ran (who text); GRANT INSERT ON public.ran TO PUBLIC;"
		  "SET ROLE mallory;"
		  "CREATE FUNCTION public.json_build_array(text, bigint, text, text, text, text, text, text, text,"
		  " text, text, text, bigint) RETURNS json LANGUAGE sql AS $$ SELECT '[\"pwned\"]'::json $$;"
		  "CREATE FUNCTION public.format(text, name, name) RETURNS text LANGUAGE plpgsql AS"
		  " $$ BEGIN INSERT INTO public.ran VALUES (current_user); RETURN 'x'; END $$;"
		  /* Read through a path that puts public first, every record would be a century overdue. */
		  "CREATE FUNCTION public.statement_timestamp() RETURNS timestamptz LANGUAGE sql AS"
		  " $$ SELECT pg_catalog.now() + interval '100 years' $$;"
		  "RESET ROLE;"
		  /* A writer whose search_path is PostgreSQL's default, public included. */
		  "CREATE ROLE writer LOGIN; GRANT USAGE ON SCHEMA virusdesk TO writer;"
		  "GRANT INSERT ON virusdesk.uploads TO writer;"
		  "SET ROLE writer; SET search_path = public, pg_catalog;"
		  "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour'),"
		  " (2, now() - interval '5 minutes');"
		  "RESET ROLE; RESET search_path");
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM public.ran"), 0);
	/* The auditor's path does not change what the payload function returns. */
	genuine = test_query_value(conn,
				   "SELECT encode(retention.audit_payload('p', 1, 's', 's', 't', 'k', NULL, 'epoch',"
				   " 'epoch', 'epoch', 'delete', 'i', 1), 'escape')",
				   0, NULL);
	test_exec(conn, "SET search_path = public, pg_catalog");
	hijacked = test_query_value(conn,
				    "SELECT encode(retention.audit_payload('p', 1, 's', 's', 't', 'k', NULL, 'epoch',"
				    " 'epoch', 'epoch', 'delete', 'i', 1), 'escape')",
				    0, NULL);
	test_exec(conn, "RESET search_path");
	ck_assert_str_eq(hijacked, genuine);
	ck_assert_ptr_null(strstr(genuine, "pwned"));
	/* The daemon's role may create nothing in public here, but its path is pinned anyway. */
	test_exec(conn, "ALTER ROLE " TEST_DAEMON_ROLE " SET search_path = public, pg_catalog");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	test_exec(conn, "ALTER ROLE " TEST_DAEMON_ROLE " RESET search_path");
	ck_assert(!fx_row_exists(conn, "virusdesk.uploads", "1"));
	ck_assert_msg(fx_row_exists(conn, "virusdesk.uploads", "2"), "a record ten minutes before due was purged");
	/* The stored hash is the genuine payload's, as the verifier recomputes it without the schema. */
	fx_assert_chain_intact(conn);
	free(out);
	free(err);
	free(genuine);
	free(hijacked);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* D7: a superuser or BYPASSRLS login would hand its rights to every table owner's triggers. */
START_TEST(test_daemon_refuses_superuser_and_bypassrls)
{
	PGconn *conn = fx_uploads_db("superuser");
	char *conf = test_write_file(
		"database = { conninfo = \"dbname=superuser user=postgres\"; };\n"
		"daemon = { resync_interval = \"1 second\"; };\n"
		"policies = ( { name = \"u\"; service = \"s\"; source = \"s\"; table = \"virusdesk.uploads\";"
		" key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n");
	char *log = fx_log_path("superuser");
	char *out, *err;
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "role postgres is a superuser: retentiond refuses to purge as it"), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "refusing to purge as role postgres: it is a superuser"), "%s", err);
	free(out);
	free(err);
	pid = fx_start_daemon(conf, log);
	/* Twice: refused at start and again at the next resync, never purging in between. */
	fx_wait_for_log(log, "refusing to purge as role postgres", 10);
	ck_assert(fx_wait_log_count(log, "refusing to purge as role postgres", 2, 10));
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	fx_stop_daemon(pid);
	test_exec(conn, "ALTER ROLE " TEST_DAEMON_ROLE " BYPASSRLS");
	free(conf);
	conf = fx_uploads_config("superuser", "15 minutes", "");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "it is a role with BYPASSRLS"), "%s", err);
	test_exec(conn, "ALTER ROLE " TEST_DAEMON_ROLE " NOBYPASSRLS");
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	free(out);
	free(err);
	free(log);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A trigger on one policy's table set the session's TimeZone with
 * set_config(..., false): every later statement of the session read
 * another policy's zone-less clocks fourteen hours off, and purged a record
 * ten hours before it was due. A batch whose statements changed the session
 * is rolled back and the session replaced.
 */
START_TEST(test_a_trigger_cannot_change_the_session)
{
	PGconn *conn = fx_database("poison");
	char *a = fx_policy("a", "app.a", "id", "c", "1 day", "");
	char *b = fx_policy("b", "app.b", "id", "c", "1 day", "");
	char *c = fx_policy("c", "app.c", "id", "c", "1 day", "");
	char *d = fx_policy("d", "app.d", "id", "c", "1 day",
			    "exempt = { column = \"purpose\"; values = [ \"legal\" ]; };");
	char *policies = xasprintf("%s, %s, %s, %s", a, b, c, d);
	char *conf = fx_config("poison", "resync_interval = \"1 second\";", policies);
	char *log = fx_log_path("poison");
	const char *purged_a = "policy a: purged 1 record";
	const char *refused_a = "policy a: code its statement ran with the daemon's role (a trigger, or a function of a"
				" table's owner) changed the session's TimeZone; the batch is rolled back";
	pid_t pid;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.a (id int PRIMARY KEY, c timestamptz);"
		  "CREATE TABLE app.b (id int PRIMARY KEY, c timestamp);"
		  "CREATE FUNCTION app.shift() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		  "  PERFORM set_config('TimeZone', 'Pacific/Kiritimati', false); RETURN OLD; END $$;"
		  "CREATE TRIGGER shift BEFORE DELETE ON app.a FOR EACH ROW EXECUTE FUNCTION app.shift();"
		  "INSERT INTO app.a VALUES (1, now() - interval '2 days');"
		  /* The same two tables away: a row its cascade deletes has the trigger. */
		  "CREATE TABLE app.c (id int PRIMARY KEY, c timestamptz);"
		  "CREATE TABLE app.c_notes (id int PRIMARY KEY, c_id int REFERENCES app.c ON DELETE CASCADE);"
		  "CREATE INDEX ON app.c_notes (c_id);"
		  "CREATE TRIGGER shift BEFORE DELETE ON app.c_notes FOR EACH ROW EXECUTE FUNCTION app.shift();"
		  "INSERT INTO app.c VALUES (1, now() - interval '2 days'); INSERT INTO app.c_notes VALUES (1, 1);"
		  /* No trigger at all: a domain's check would run if the exempt values were cast to it. */
		  "CREATE FUNCTION app.purpose_ok(v text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
		  "  PERFORM set_config('TimeZone', 'Pacific/Kiritimati', false); RETURN true; END $$;"
		  "CREATE DOMAIN app.purpose AS text CHECK (app.purpose_ok(VALUE));"
		  "CREATE TABLE app.d (id int PRIMARY KEY, c timestamptz, purpose app.purpose);"
		  "INSERT INTO app.d VALUES (1, now() - interval '2 days', 'x')");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_wait_for_either_after(log, 0, purged_a, refused_a, 10), "policy a neither purged nor refused");
	test_exec(conn,
		  "INSERT INTO app.b VALUES (1, (now() AT TIME ZONE 'UTC') - interval '1 day' + interval '10 hours')");
	ck_assert(fx_wait_for_either_after(log, 0, "policy b: next record due", "policy b: purged", 10));
	ck_assert_msg(fx_row_exists(conn, "app.b", "1"), "a record was purged ten hours early on a poisoned session");
	ck_assert_msg(fx_log_has_after(log, 0, refused_a), "the changed session was not noticed");
	/* Once: the policy stays off, no reconnect storm. */
	ck_assert_int_eq(fx_log_count_after(log, 0, refused_a), 1);
	ck_assert(fx_row_exists(conn, "app.a", "1"));
	fx_wait_for_log(log,
			"policy c: code its statement ran with the daemon's role (a trigger, or a function of a table's"
			" owner) changed the session's TimeZone; the batch is rolled back",
			10);
	ck_assert(fx_row_exists(conn, "app.c", "1"));
	/* The exempt values are compared in the domain's base type: its check never runs with the daemon's role. */
	fx_wait_for_log(log, "policy d: purged 1 record", 10);
	ck_assert(!fx_log_has_after(log, 0, "policy d: code its statement ran with the daemon's role"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	fx_stop_daemon(pid);
	free(a);
	free(b);
	free(c);
	free(d);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Every setting the daemon's statements read their input or write their
 * output by, and those that decide whether a COMMIT is durable or a session
 * survives a slow batch: changed by a trigger for the rest of the session,
 * each is noticed before COMMIT and the batch rolled back.
 */
START_TEST(test_every_watched_setting_is_read_back)
{
	static const char *const changes[][2] = {
		{"extra_float_digits", "-15"},
		{"array_nulls", "off"},
		{"transform_null_equals", "on"},
		{"timezone_abbreviations", "India"},
		{"jit", "on"},
		{"synchronous_commit", "off"},
		{"idle_in_transaction_session_timeout", "1h"},
		{"default_transaction_read_only", "on"},
		{"plan_cache_mode", "force_custom_plan"},
		{"restrict_nonsystem_relation_kind", ""},
		{"bytea_output", "escape"},
		{"lc_monetary", "POSIX"},
		{"LISTEN channels", "UNLISTEN"},
	};
	PGconn *conn = fx_database("settings");
	char *policy = fx_policy("p", "app.t", "id", "c", "1 day", "");
	char *conf = fx_config("settings", NULL, policy);
	test_exec(conn, "CREATE SCHEMA app;"
			"CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz);"
			"CREATE TABLE app.poison (name text, value text);"
			"CREATE FUNCTION app.change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			"  IF (SELECT value FROM app.poison) = 'UNLISTEN' THEN UNLISTEN *;"
			"  ELSE PERFORM set_config(name, value, false) FROM app.poison; END IF; RETURN OLD; END $$;"
			"CREATE TRIGGER change BEFORE DELETE ON app.t FOR EACH ROW EXECUTE FUNCTION app.change();"
			"INSERT INTO app.t VALUES (1, now() - interval '2 days')");
	fx_grant(conn, "app");
	test_exec(conn, "GRANT SELECT ON app.poison TO " TEST_DAEMON_ROLE);
	for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
		char *sql = xasprintf("TRUNCATE app.poison; INSERT INTO app.poison VALUES ('%s', '%s')", changes[i][0],
				      changes[i][1]);
		/* UNLISTEN takes effect at COMMIT: the purge stands, the session read after it goes. */
		bool at_commit = strcmp(changes[i][1], "UNLISTEN") == 0;
		char *want = xasprintf("changed the session's %s; %s", changes[i][0],
				       at_commit ? "nothing more runs on it" : "the batch is rolled back");
		char *out, *err;
		test_exec(conn, sql);
		ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
		ck_assert_msg(strstr(err, want), "%s was changed unnoticed: %s", changes[i][0], err);
		ck_assert(fx_row_exists(conn, "app.t", "1") != at_commit);
		free(sql);
		free(want);
		free(out);
		free(err);
	}
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * What the daemon's sessions pin, whatever the database's and the role's
 * defaults, as code that runs in them sees it: JIT off (the server would
 * compile the daemon's short statements whenever a generic plan's estimate
 * over a large table passed jit_above_cost), search_path pg_catalog (nothing of a role's
 * schemas stands in for a built-in), row_security off (an owner's policy
 * function never runs: the statement fails instead), and the daemon's
 * generic plans (its statements, prepared once, are not planned again at
 * every batch).
 */
START_TEST(test_sessions_pin_their_settings)
{
	PGconn *conn = fx_database("pinned");
	char *policy = fx_policy("p", "app.t", "id", "c", "1 day", "");
	char *conf = fx_config("pinned", NULL, policy);
	char *out, *err;
	test_exec(
		conn,
		"ALTER DATABASE pinned SET jit = on;"
		"ALTER ROLE " TEST_DAEMON_ROLE " IN DATABASE pinned SET search_path = public, pg_catalog;"
		"ALTER ROLE " TEST_DAEMON_ROLE " IN DATABASE pinned SET row_security = on;"
		"ALTER ROLE " TEST_DAEMON_ROLE " IN DATABASE pinned SET plan_cache_mode = force_custom_plan;"
		"ALTER ROLE " TEST_DAEMON_ROLE " IN DATABASE pinned SET bytea_output = escape;"
		"ALTER ROLE " TEST_DAEMON_ROLE " IN DATABASE pinned SET lc_monetary = 'POSIX';"
		"CREATE SCHEMA app;"
		"CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz);"
		"CREATE FUNCTION app.pinned() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		"  IF current_setting('jit') <> 'off' OR current_setting('search_path') <> 'pg_catalog,pg_temp'"
		"     OR current_setting('row_security') <> 'off'"
		"     OR current_setting('plan_cache_mode') <> 'force_generic_plan'"
		"     OR current_setting('bytea_output') <> 'hex' OR current_setting('lc_monetary') <> 'C' THEN"
		"    RAISE EXCEPTION 'jit %, search_path %, row_security %, plan_cache_mode %, bytea_output %,"
		" lc_monetary %', current_setting('jit'), current_setting('search_path'), current_setting('row_security'),"
		"      current_setting('plan_cache_mode'), current_setting('bytea_output'), current_setting('lc_monetary');"
		"  END IF; RETURN OLD; END $$;"
		"CREATE TRIGGER pinned BEFORE DELETE ON app.t FOR EACH ROW EXECUTE FUNCTION app.pinned();"
		"INSERT INTO app.t VALUES (1, now() - interval '2 days')");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert(!fx_row_exists(conn, "app.t", "1"));
	free(out);
	free(err);
	test_exec(conn,
		  "ALTER DATABASE pinned RESET jit; ALTER ROLE " TEST_DAEMON_ROLE " IN DATABASE pinned RESET ALL");
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A policy's table renamed away and replaced by a view between two asks:
 * the prepared next-due statement was parsed again by name, and the view's
 * function ran with the daemon's role, in autocommit: it deleted another
 * policy's held record, with no audit row (found by a review). Sessions
 * refuse to read views and foreign tables: the ask fails, no owner code
 * runs, and the table is described again.
 */
START_TEST(test_a_table_swapped_for_a_view_runs_no_owner_code)
{
	PGconn *conn = fx_database("viewswap");
	char *p = fx_policy("p", "app.t", "id", "c", "1 day", "");
	char *victim = fx_policy("victim", "victim.records", "id", "c", "1 day", "");
	char *policies = xasprintf("%s, %s", p, victim);
	char *conf = fx_config("viewswap", NULL, policies);
	char *log = fx_log_path("viewswap");
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO app.t VALUES (1, now());"
			"CREATE SCHEMA victim; CREATE TABLE victim.records (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO victim.records VALUES (1, now() - interval '2 days'), (2, now());"
			"SELECT retention.place_hold('victim', '1', NULL, 'litigation', NULL)");
	fx_grant(conn, "app");
	fx_grant(conn, "victim");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy p: next record due", 10);
	fx_wait_for_log(log, "policy victim: next record due", 10);
	mark = fx_log_mark(log);
	test_exec(conn, "ALTER TABLE app.t RENAME TO t_old;"
			"CREATE FUNCTION app.spy() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
			"  DELETE FROM victim.records; RETURN true; END $$;"
			"CREATE VIEW app.t AS SELECT * FROM app.t_old WHERE app.spy();"
			"GRANT SELECT ON app.t TO " TEST_DAEMON_ROLE ";"
			"SELECT pg_notify('retentiond', 'app.t')");
	fx_wait_for_log_after(log, mark, "access to non-system view", 10);
	ck_assert_msg(fx_row_exists(conn, "victim.records", "1"), "the view's code deleted a held record");
	ck_assert(fx_row_exists(conn, "victim.records", "2"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 0);
	fx_stop_daemon(pid);
	free(p);
	free(victim);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * Row-level security enabled on a policy's table after the daemon described
 * it: the next-due statement, outside any batch, ran the owner's policy
 * function with the daemon's role in autocommit, where it appended a chained
 * audit row of its own, and retentionctl pending ran it with the rights of
 * whoever ran it. With row_security off the statements fail instead, and
 * the function never runs.
 */
START_TEST(test_a_row_security_policy_added_later_never_runs)
{
	PGconn *conn = fx_database("rlslater");
	char *policy = fx_policy("p", "app.t", "id", "c", "1 day", "");
	char *conf = fx_config("rlslater", "resync_interval = \"1 hour\";", policy);
	char *log = fx_log_path("rlslater");
	char *out, *err;
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA app;"
			"CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz);"
			"CREATE TABLE app.ran (who text); GRANT INSERT ON app.ran TO PUBLIC;"
			"CREATE FUNCTION app.visible(id int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
			"  INSERT INTO app.ran VALUES (current_user); RETURN true; END $$;"
			"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF c ON app.t"
			" FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy p: nothing pending", 10);
	mark = fx_log_mark(log);
	test_exec(conn, "ALTER TABLE app.t ENABLE ROW LEVEL SECURITY;"
			"CREATE POLICY visible ON app.t USING (app.visible(id));"
			"INSERT INTO app.t VALUES (1, now() + interval '1 day')");
	/* Woken by the NOTIFY, the policy asks again: that statement fails. */
	fx_wait_for_log_after(log, mark, "policy p: clocks changed in app.t", 10);
	fx_wait_for_log_after(log, mark, "row-level security", 10);
	/* retentionctl, as a role the policy applies to. */
	ck_assert_int_eq(fx_ctl(conf, "rlslater user=" TEST_DAEMON_ROLE, &out, &err, "pending", NULL), 1);
	ck_assert_msg(strstr(err, "row-level security"), "%s", err);
	free(out);
	free(err);
	fx_stop_daemon(pid);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM app.ran"), 0);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 0);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A trigger on one table replaced, under the same name, the daemon's
 * prepared lock statement of another policy with one that locks every row:
 * that policy then purged a held record and one not due for a month, each
 * with a correctly chained audit row. Code that runs in the session can make
 * prepared statements only with PREPARE, the daemon only through the
 * protocol: a session with one PREPARE made is dropped before anything
 * else runs on it, whether the trigger ran in the batch, at its COMMIT, or
 * in a batch that failed and was never committed.
 */
START_TEST(test_a_trigger_cannot_replace_the_daemons_statements)
{
	PGconn *conn = fx_database("swap");
	char *notes = fx_policy("crm-notes", "crm.notes", "id", "closed_at", "30 days", "");
	char *logs = fx_policy("app-logs", "app.logs", "id", "at", "1 day", "");
	char *later = fx_policy("app-later", "app.later", "id", "at", "1 day", "");
	char *fails = fx_policy("app-fails", "app.fails", "id", "at", "1 day", "");
	char *policies = xasprintf("%s, %s, %s, %s", notes, logs, later, fails);
	char *conf = fx_config("swap", NULL, policies);
	char *log = fx_log_path("swap");
	pid_t pid;
	test_exec(
		conn,
		"CREATE SCHEMA crm; CREATE SCHEMA app;"
		"CREATE TABLE crm.notes (id int PRIMARY KEY, closed_at timestamptz);"
		"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF closed_at ON crm.notes"
		" FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();"
		"INSERT INTO crm.notes VALUES (1, now() - interval '40 days'), (2, now() - interval '40 days'),"
		" (3, now() - interval '1 hour');"
		"SELECT retention.place_hold('crm-notes', '2', NULL, 'litigation', NULL);"
		"CREATE FUNCTION app.swap_statements() RETURNS void LANGUAGE plpgsql AS $f$ DECLARE s record; BEGIN"
		"  FOR s IN SELECT name, parameter_types FROM pg_prepared_statements"
		"           WHERE statement LIKE '%FROM crm.notes t WHERE%FOR UPDATE OF t SKIP LOCKED%' LOOP"
		"    EXECUTE format('DEALLOCATE %I', s.name);"
		"    EXECUTE format('PREPARE %I (%s) AS SELECT pg_catalog.count(*)::bigint,"
		"      coalesce(pg_catalog.array_agg(l.toid), ''{}''), coalesce(pg_catalog.array_agg(l.tid), ''{}''),"
		"      coalesce(pg_catalog.array_agg(l.record_key), ''{}'') FROM (SELECT t.tableoid AS toid,"
		"      t.ctid AS tid, t.id::text AS record_key FROM crm.notes t ORDER BY t.id LIMIT $5"
		"      FOR UPDATE OF t SKIP LOCKED) l', s.name, pg_catalog.array_to_string(s.parameter_types::text[], ','));"
		"  END LOOP; END $f$;"
		"CREATE FUNCTION app.swap() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
		"  PERFORM app.swap_statements(); RETURN NULL; END $f$;"
		/* Then fails, with an error that says nothing about a record: its batch is never committed. */
		"CREATE FUNCTION app.swap_and_fail() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
		"  PERFORM app.swap_statements();"
		"  RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END $f$;"
		"CREATE TABLE app.fails (id int PRIMARY KEY, at timestamptz);"
		"CREATE TRIGGER swap AFTER DELETE ON app.fails FOR EACH STATEMENT EXECUTE FUNCTION app.swap_and_fail();"
		"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF at ON app.fails"
		" FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();"
		"CREATE TABLE app.logs (id int PRIMARY KEY, at timestamptz);"
		"CREATE TRIGGER swap AFTER DELETE ON app.logs FOR EACH STATEMENT EXECUTE FUNCTION app.swap();"
		/* The same at COMMIT, after the batch's last check. */
		"CREATE TABLE app.later (id int PRIMARY KEY, at timestamptz);"
		"CREATE CONSTRAINT TRIGGER swap AFTER DELETE ON app.later DEFERRABLE INITIALLY DEFERRED"
		" FOR EACH ROW EXECUTE FUNCTION app.swap();"
		"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF at ON app.logs"
		" FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();"
		"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF at ON app.later"
		" FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock()");
	fx_grant(conn, "crm, app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy crm-notes: purged 1 record", 10);
	test_exec(conn, "INSERT INTO app.logs VALUES (1, now() - interval '2 days')");
	fx_wait_for_log(log, "policy app-logs: code its statement ran with the daemon's role", 10);
	ck_assert(fx_log_has_after(log, 0,
				   "changed the session's prepared statements (made by PREPARE and by the daemon: 1 "));
	test_exec(conn, "INSERT INTO crm.notes VALUES (4, now() - interval '31 days')");
	ck_assert(fx_wait_log_count(log, "policy crm-notes: purged 1 record", 2, 10));
	test_exec(conn, "INSERT INTO app.later VALUES (1, now() - interval '2 days')");
	fx_wait_for_log(log, "policy app-later: code its statement ran with the daemon's role", 10);
	ck_assert(fx_log_has_after(log, 0,
				   "changed the session's prepared statements (made by PREPARE and by the daemon: 1 "));
	test_exec(conn, "INSERT INTO crm.notes VALUES (5, now() - interval '31 days')");
	ck_assert(fx_wait_log_count(log, "policy crm-notes: purged 1 record", 3, 10));
	test_exec(conn, "INSERT INTO app.fails VALUES (1, now() - interval '2 days')");
	fx_wait_for_log(log, "policy app-fails: code its statement ran with the daemon's role", 10);
	test_exec(conn, "INSERT INTO crm.notes VALUES (6, now() - interval '31 days')");
	ck_assert(fx_wait_log_count(log, "policy crm-notes: purged 1 record", 4, 10));
	fx_stop_daemon(pid);
	ck_assert_msg(fx_row_exists(conn, "crm.notes", "2"), "a held record was purged");
	ck_assert_msg(fx_row_exists(conn, "crm.notes", "3"), "a record not due for a month was purged");
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE policy = 'crm-notes'"), 4);
	fx_assert_chain_intact(conn);
	free(notes);
	free(logs);
	free(later);
	free(fails);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D7: a trigger on a policy table runs with the daemon's rights; its owner,
 * with no privilege in retention, forged a correctly chained audit row that
 * verify accepted. Writes to the audit tables from inside a trigger are refused.
 */
START_TEST(test_trigger_cannot_forge_audit_rows)
{
	PGconn *conn = fx_uploads_db("forge");
	char *policies =
		xasprintf("{ name = \"orders\"; service = \"s\"; source = \"s\"; table = \"virusdesk.uploads\";"
			  " key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; },"
			  " { name = \"victim\"; service = \"s\"; source = \"s\"; table = \"r12.t\"; key = \"id\";"
			  " clock = \"c\"; retain = \"15 minutes\"; }");
	char *conf = fx_config("forge", NULL, policies);
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 1, "%s%s", out, err); /* r12.t does not exist yet */
	free(out);
	free(err);
	test_exec(
		conn,
		"CREATE ROLE svc LOGIN; CREATE SCHEMA r12 AUTHORIZATION svc; SET ROLE svc;"
		"CREATE TABLE r12.t (id int PRIMARY KEY, c timestamptz);"
		"INSERT INTO r12.t VALUES (1, now() - interval '1 hour');"
		"CREATE FUNCTION r12.forge() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		"  INSERT INTO retention.audit_log (format, cause, policy, seq, service, source, table_name, record_key, clock_at,"
		"   due_at, purged_at, action, instance, txid, prev_hash, hash)"
		"  SELECT 1, 'schedule', 'orders', h.seq + 1, 's', 's', 't', '31337', now(), now(), now(), 'delete', 'r6', 1,"
		"   h.hash, sha256(h.hash || retention.audit_payload('orders', h.seq + 1, 's', 's', 't', '31337', NULL,"
		"   now(), now(), now(), 'delete', 'r6', 1)) FROM retention.chain_heads h WHERE h.policy = 'orders';"
		"  UPDATE retention.chain_heads SET seq = seq + 1 WHERE policy = 'orders';"
		"  RETURN NULL; END $$;"
		"CREATE TRIGGER forge AFTER DELETE ON r12.t FOR EACH STATEMENT EXECUTE FUNCTION r12.forge();"
		"GRANT USAGE ON SCHEMA r12 TO " TEST_DAEMON_ROLE ";"
		"GRANT SELECT, DELETE, UPDATE ON r12.t TO " TEST_DAEMON_ROLE ";"
		"RESET ROLE");
	/* --check names the trigger: it runs with the daemon's rights. */
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "policy victim: warning: trigger forge runs on every purge with the rights of role"),
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "retention.audit_log may not be written from inside a trigger"), "%s", err);
	free(out);
	free(err);
	/* Nor a daemon's heartbeat, which retentionctl status shows. */
	test_exec(conn, "CREATE OR REPLACE FUNCTION r12.forge() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			"  UPDATE retention.instances SET heartbeat_at = now() + interval '10 years', purged_total = 0;"
			"  RETURN NULL; END $$");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "retention.instances may not be written from inside a trigger"), "%s", err);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key = '31337'"), 0);
	ck_assert_int_eq(count(conn, "SELECT seq FROM retention.chain_heads WHERE policy = 'orders'"), 1);
	/* The record whose purge the trigger spoiled stays, with no audit row. */
	ck_assert(fx_row_exists(conn, "r12.t", "1"));
	fx_assert_chain_intact(conn);
	free(out);
	free(err);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Owner code that runs outside any trigger, at trigger depth 0, where the
 * schema's refusal of nested writes cannot tell it from the daemon: the
 * check of a domain an anonymized value is cast to forged a chained audit
 * row for another policy, in the batch's own transaction. A batch whose
 * transaction wrote other audit rows than its purge statement did is rolled
 * back, and its policy stops until a reload.
 */
START_TEST(test_code_outside_triggers_cannot_forge_audit_rows)
{
	PGconn *conn = fx_uploads_db("forgedomain");
	char *policies =
		xasprintf("{ name = \"orders\"; service = \"s\"; source = \"s\"; table = \"virusdesk.uploads\";"
			  " key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; },"
			  " { name = \"victim\"; service = \"s\"; source = \"s\"; table = \"r12.t\"; key = \"id\";"
			  " clock = \"c\"; retain = \"15 minutes\"; action = \"anonymize\";"
			  " set = ( { column = \"note\"; value = \"gone\"; } ); }");
	char *conf = fx_config("forgedomain", NULL, policies);
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	test_exec(
		conn,
		"CREATE ROLE svc2 LOGIN; CREATE SCHEMA r12 AUTHORIZATION svc2; SET ROLE svc2;"
		"CREATE FUNCTION r12.forge(v text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
		"  IF current_user <> '" TEST_DAEMON_ROLE "' THEN RETURN true; END IF;"
		"  INSERT INTO retention.audit_log (format, cause, policy, seq, service, source, table_name, record_key, clock_at,"
		"   due_at, purged_at, action, instance, txid, prev_hash, hash)"
		"  SELECT 1, 'schedule', 'orders', h.seq + 1, 's', 's', 't', '31337', now(), now(), now(), 'delete', 'r6', 1,"
		"   h.hash, sha256(h.hash || retention.audit_payload('orders', h.seq + 1, 's', 's', 't', '31337', NULL,"
		"   now(), now(), now(), 'delete', 'r6', 1)) FROM retention.chain_heads h WHERE h.policy = 'orders';"
		"  UPDATE retention.chain_heads SET seq = seq + 1 WHERE policy = 'orders';"
		"  RETURN true; END $$;"
		"CREATE DOMAIN r12.note AS text CHECK (r12.forge(VALUE));"
		"CREATE TABLE r12.t (id int PRIMARY KEY, c timestamptz, note r12.note);"
		"INSERT INTO r12.t VALUES (1, now() - interval '1 hour', NULL);"
		"GRANT USAGE ON SCHEMA r12 TO " TEST_DAEMON_ROLE ";"
		"GRANT SELECT, UPDATE ON r12.t TO " TEST_DAEMON_ROLE ";"
		"RESET ROLE");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "policy victim: code its statements ran with the daemon's role (a trigger, or a"
				  " function of a table's owner) wrote to the audit trail"),
		      "%s", err);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key = '31337'"), 0);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE policy = 'victim'"), 0);
	ck_assert(fx_poll_true(conn, "SELECT c IS NOT NULL FROM r12.t WHERE id = 1", 0));
	/* The other policy's purge stands. */
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE policy = 'orders'"), 1);
	fx_assert_chain_intact(conn);
	free(out);
	free(err);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D10: one undeletable oldest record blocked its whole policy forever. A
 * record still referenced is kept; one whose purge fails on its own (a
 * trigger that raises, one that cancels the DELETE) is skipped and logged,
 * and everything else due is purged.
 */
START_TEST(test_undeletable_records_do_not_block_the_rest)
{
	PGconn *conn = fx_database("poison");
	char *policy = fx_policy("p", "app.parents", "id", "closed_at", "1 day", "batch = 100;");
	char *conf = fx_config("poison", NULL, policy);
	char *log = fx_log_path("poison");
	pid_t pid;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.parents (id int PRIMARY KEY, closed_at timestamptz, archived boolean DEFAULT false);"
		"CREATE INDEX ON app.parents (closed_at);"
		"CREATE TABLE app.invoices (id int PRIMARY KEY, parent int REFERENCES app.parents);"
		"CREATE INDEX ON app.invoices (parent);"
		"INSERT INTO app.parents SELECT g, now() - interval '10 days' + g * interval '1 second'"
		" FROM generate_series(1, 500) g;"
		"INSERT INTO app.invoices VALUES (1, 1);"
		/* Three poison records among the 500: two raise, one is silently kept by a soft-delete rule of the app. */
		"CREATE FUNCTION app.guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		"  IF OLD.id IN (7, 250) THEN RAISE EXCEPTION 'record % is under audit', OLD.id; END IF;"
		"  IF OLD.archived THEN RETURN NULL; END IF; RETURN OLD; END $$;"
		"CREATE TRIGGER guard BEFORE DELETE ON app.parents FOR EACH ROW EXECUTE FUNCTION app.guard();"
		"UPDATE app.parents SET archived = true WHERE id = 3");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	ck_assert_msg(fx_poll_true(conn, "SELECT count(*) = 4 FROM app.parents", 20),
		      "the due records were not all purged around the undeletable ones");
	ck_assert(fx_row_exists(conn, "app.parents", "1"));
	ck_assert(fx_row_exists(conn, "app.parents", "3"));
	ck_assert(fx_row_exists(conn, "app.parents", "7"));
	ck_assert(fx_row_exists(conn, "app.parents", "250"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 496);
	fx_wait_for_log(log,
			"policy p: record 7 cannot be purged: purge statement failed: record 7 is under audit"
			" (SQLSTATE P0001)",
			5);
	fx_wait_for_log(log, "policy p: record 250 cannot be purged", 5);
	fx_wait_for_log(log,
			"policy p: record 3 cannot be purged: it was locked as due, but deleting or updating it"
			" changed nothing",
			5);
	/* D25: rows nobody else locks are not reported as locked elsewhere, in any wording. */
	ck_assert(!fx_log_has_after(log, 0, "locked by other transactions"));
	ck_assert(!fx_log_has_after(log, 0, "locked elsewhere"));
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * M11: a COMMIT that fails (a deferred constraint) must never be reported
 * as a purge: no "purged" line, no anchor, exit 1, the record and no audit row.
 */
START_TEST(test_failed_commit_is_not_a_purge)
{
	PGconn *conn = fx_database("deferred");
	char *policy = fx_policy("up", "app.up", "id", "closed_at", "1 day", "");
	char *conf = fx_config("deferred", NULL, policy);
	char *out, *err;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.up (id int PRIMARY KEY, closed_at timestamptz);"
			"INSERT INTO app.up VALUES (1, now() - interval '2 days');"
			"CREATE FUNCTION app.veto() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
			"  RAISE EXCEPTION 'deferred veto'; END $$;"
			"CREATE CONSTRAINT TRIGGER veto AFTER DELETE ON app.up DEFERRABLE INITIALLY DEFERRED"
			" FOR EACH ROW EXECUTE FUNCTION app.veto()");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "0 purged  (failed: see log)"), "%s", out);
	ck_assert_msg(
		strstr(err, "policy up: record 1 cannot be purged: COMMIT failed: deferred veto (SQLSTATE P0001)"),
		"%s", err);
	ck_assert_msg(strstr(err, "purged 1 record") == NULL && strstr(err, "chain head") == NULL, "%s", err);
	ck_assert(fx_row_exists(conn, "app.up", "1"));
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 0);
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* D11: a -infinity clock blocked its policy with "cannot subtract infinite timestamps"; +infinity looped on errors. */
START_TEST(test_infinite_clocks)
{
	PGconn *conn = fx_database("infinity");
	char *policy = fx_policy("p", "app.t", "id", "c", "1 day", "");
	char *conf = fx_config("infinity", NULL, policy);
	char *log = fx_log_path("infinity");
	char *out, *err;
	pid_t pid;
	test_exec(
		conn,
		"CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz);"
		"CREATE INDEX ON app.t (c);"
		"INSERT INTO app.t VALUES (1, '-infinity'), (2, now() - interval '10 days'), (3, now() - interval '9 days'),"
		" (4, 'infinity')");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert(!fx_row_exists(conn, "app.t", "1"));
	ck_assert(!fx_row_exists(conn, "app.t", "2"));
	ck_assert(!fx_row_exists(conn, "app.t", "3"));
	ck_assert(fx_row_exists(conn, "app.t", "4"));
	fx_assert_chain_intact(conn);
	free(out);
	free(err);
	/* Only a never-due record left: the daemon settles, with no error loop. */
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "nothing pending", 10);
	ck_assert(!fx_log_has_after(log, 0, "error:"));
	fx_stop_daemon(pid);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A BEFORE UPDATE trigger that put the old values back: the audit said
 * "anonymized" while the e-mail address stayed, or held another value. The purge reads
 * back what the UPDATE stored; a record whose anonymisation did not take
 * is rolled back, skipped and logged.
 */
START_TEST(test_an_anonymisation_that_does_not_take_is_not_audited)
{
	PGconn *conn = fx_database("restore");
	char *policy = fx_policy("anon", "app.people", "id", "closed_at", "1 day",
				 "action = \"anonymize\"; set_null = [ \"email\" ];");
	char *conf = fx_config("restore", NULL, policy);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.people (id int PRIMARY KEY, closed_at timestamptz, email text);"
		  "INSERT INTO app.people VALUES (1, now() - interval '2 days', 'a@example.org'),"
		  " (2, now() - interval '2 days', 'b@example.org'), (3, now() - interval '2 days', 'c@example.org');"
		  "CREATE FUNCTION app.keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		  "  IF OLD.id = 1 THEN NEW.email := OLD.email; END IF;"
		  "  IF OLD.id = 2 THEN NEW.email := 'changed@example.org'; END IF; RETURN NEW; END $$;"
		  "CREATE TRIGGER keep BEFORE UPDATE ON app.people FOR EACH ROW EXECUTE FUNCTION app.keep()");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key IN ('1', '2')"), 0);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key = '3'"), 1);
	ck_assert(fx_poll_true(conn, "SELECT email IS NULL AND closed_at IS NOT NULL FROM app.people WHERE id = 3", 0));
	ck_assert(fx_poll_true(conn, "SELECT email IS NOT NULL FROM app.people WHERE id = 1", 0));
	ck_assert_msg(strstr(err, "policy anon: record 1 cannot be purged: anonymizing it did not take"), "%s", err);
	ck_assert_msg(strstr(err, "policy anon: record 2 cannot be purged: anonymizing it did not take"), "%s", err);
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * The same undone later: an AFTER trigger, which runs after the statement's
 * RETURNING, or a deferred one, which runs at COMMIT, wrote the old values
 * back, and the record was "anonymized" again, with a new audit row, at
 * every batch. The batch runs the deferred triggers before it reads the
 * rows back where its UPDATE left them.
 */
START_TEST(test_an_anonymisation_undone_later_is_not_audited)
{
	PGconn *conn = fx_database("undone");
	char *policy = fx_policy("anon", "app.people", "id", "closed_at", "1 day",
				 "action = \"anonymize\"; set_null = [ \"email\" ];"
				 " set = ( { column = \"name\"; value = \"(gone)\"; } );");
	char *conf = fx_config("undone", NULL, policy);
	char *out, *err;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.people (id int PRIMARY KEY, closed_at timestamptz, email text, touched int, name text);"
		"INSERT INTO app.people VALUES (1, now() - interval '2 days', 'a@example.org'),"
		" (2, now() - interval '2 days', 'b@example.org'), (3, now() - interval '2 days', 'c@example.org'),"
		" (4, now() - interval '2 days', 'd@example.org'), (5, now() - interval '2 days', 'e@example.org');"
		"UPDATE app.people SET name = 'N' || id;"
		"CREATE FUNCTION app.restore() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		"  IF OLD.id IN (1, 2) AND pg_trigger_depth() = 1 THEN"
		"    UPDATE app.people SET email = OLD.email, closed_at = OLD.closed_at WHERE id = OLD.id;"
		"  END IF;"
		/* Only the value of a `set` column put back. */
		"  IF OLD.id = 5 AND pg_trigger_depth() = 1 THEN"
		"    UPDATE app.people SET name = OLD.name WHERE id = OLD.id;"
		"  END IF; RETURN NULL; END $$;"
		/* Writes the row again, anonymized still: no harm done. */
		"CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		"  IF pg_trigger_depth() = 1 THEN UPDATE app.people SET touched = 1 WHERE id = OLD.id; END IF;"
		"  RETURN NULL; END $$;"
		"CREATE TRIGGER touch AFTER UPDATE ON app.people FOR EACH ROW WHEN (OLD.id = 4)"
		" EXECUTE FUNCTION app.touch();"
		"CREATE TRIGGER restore_after AFTER UPDATE ON app.people FOR EACH ROW WHEN (OLD.id IN (1, 5))"
		" EXECUTE FUNCTION app.restore();"
		"CREATE CONSTRAINT TRIGGER restore_deferred AFTER UPDATE ON app.people DEFERRABLE INITIALLY DEFERRED"
		" FOR EACH ROW WHEN (OLD.id = 2) EXECUTE FUNCTION app.restore()");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key IN ('1', '2', '5')"),
			 0);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log WHERE record_key IN ('3', '4')"), 2);
	ck_assert(fx_poll_true(conn, "SELECT email IS NULL AND closed_at IS NOT NULL FROM app.people WHERE id = 3", 0));
	ck_assert(fx_poll_true(conn, "SELECT email IS NULL AND touched = 1 FROM app.people WHERE id = 4", 0));
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 3 FROM app.people WHERE email IS NOT NULL", 0));
	ck_assert_msg(strstr(err, "policy anon: record 1 cannot be purged: anonymizing it was undone after the UPDATE"),
		      "%s", err);
	ck_assert_msg(strstr(err, "policy anon: record 2 cannot be purged: anonymizing it was undone after the UPDATE"),
		      "%s", err);
	ck_assert_msg(strstr(err, "policy anon: record 5 cannot be purged: anonymizing it was undone after the UPDATE"),
		      "%s", err);
	ck_assert(fx_poll_true(conn, "SELECT name = 'N5' FROM app.people WHERE id = 5", 0));
	fx_assert_chain_intact(conn);
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * A `set` value its column's domain rejects: validation casts to the base
 * type, so the domain's check (code of its owner) first runs in a batch,
 * where every record failed alike and was skipped one by one, each logged
 * with its key. It is the configuration's fault: one line, and the policy
 * stops until a reload.
 */
START_TEST(test_a_set_value_its_domain_rejects_stops_the_policy)
{
	PGconn *conn = fx_database("domainset");
	char *policy = fx_policy("users", "app.users", "id", "closed_at", "1 day",
				 "action = \"anonymize\"; set = ( { column = \"name\"; value = \"-\"; } );");
	char *conf = fx_config("domainset", NULL, policy);
	char *out, *err;
	test_exec(conn, "CREATE SCHEMA app;"
			"CREATE DOMAIN app.display_name AS text CHECK (length(VALUE) >= 3);"
			"CREATE TABLE app.users (id int PRIMARY KEY, closed_at timestamptz, name app.display_name);"
			"INSERT INTO app.users SELECT g, now() - interval '2 days', 'User ' || g"
			" FROM generate_series(1, 8) g");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "policy users: purge statement failed: value for domain app.display_name violates"
				  " check constraint"),
		      "%s", err);
	ck_assert_msg(strstr(err, "a value it anonymizes with breaks the domain of its column"), "%s", err);
	ck_assert_msg(strstr(err, "cannot be purged") == NULL, "records were skipped one by one: %s", err);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM app.users WHERE closed_at IS NOT NULL"), 8);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 0);
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D13, D26: server DETAIL lines ("Failing row contains (...)") copied the
 * very personal data a policy erases into the journal, as extra lines
 * without a priority. Log lines are single lines with the primary message
 * and SQLSTATE only; server notices go through the log too.
 */
START_TEST(test_log_carries_no_row_data)
{
	PGconn *conn = fx_database("privacy");
	char *policy = fx_policy("anon", "app.people", "id", "closed_at", "1 day",
				 "action = \"anonymize\"; set = ( { column = \"name\"; value = \"x\"; } );");
	char *conf = fx_config("privacy", NULL, policy);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.people (id int PRIMARY KEY, closed_at timestamptz, email text,"
		  " name text CHECK (length(name) > 3));"
		  "INSERT INTO app.people VALUES (1, now() - interval '2 days', 'alice@example.org', 'Alice Example');"
		  "CREATE FUNCTION app.say() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		  "  RAISE NOTICE 'app notice'; RETURN NEW; END $$;"
		  "CREATE TRIGGER say BEFORE UPDATE ON app.people FOR EACH ROW EXECUTE FUNCTION app.say()");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "violates check constraint \"people_name_check\" (SQLSTATE 23514)"), "%s", err);
	ck_assert_msg(strstr(err, "alice@example.org") == NULL && strstr(err, "Alice") == NULL &&
			      strstr(err, "Failing row") == NULL && strstr(err, "DETAIL") == NULL,
		      "row data in the log: %s", err);
	ck_assert_msg(strstr(err, "PostgreSQL NOTICE: app notice"), "%s", err);
	/* Every line is a log line: a time stamp and a level, nothing continued from the line before. */
	for (char *line = err, *next; *line; line = next) {
		next = strchr(line, '\n');
		next = next ? next + 1 : line + strlen(line);
		ck_assert_msg(strncmp(line, "20", 2) == 0 && strstr(line, "Z ") == line + 23, "not a log line: %.80s",
			      line);
	}
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Review of F16: comparing a `set` column with its value brought three ways
 * to break the promise. A cast from text that the table's owner defined ran
 * the owner's code with the daemon's role (it forged an audit row) and with
 * the role of whoever ran retentionctl (it released every hold); a value that
 * changes with time never matched again, so the same rows were anonymized
 * and audited at every batch; a type whose `=` is not exact (box compares
 * areas) called personal data anonymized. Each is refused before any
 * statement runs.
 */
START_TEST(test_anonymized_values_compare_exactly_and_run_no_users_code)
{
	PGconn *conn = fx_database("setvalues");
	char *cast = fx_policy(
		"cast", "app.cast", "id", "c", "1 day",
		"action = \"anonymize\"; set_null = [ \"email\" ]; set = ( { column = \"st\"; value = \"gone\"; } );");
	char *now = fx_policy("now", "app.now", "id", "c", "1 day",
			      "action = \"anonymize\"; set = ( { column = \"at\"; value = \" Now\"; } );");
	char *box = fx_policy("box", "app.box", "id", "c", "1 day",
			      "action = \"anonymize\"; set = ( { column = \"area\"; value = \"(0,0),(1,1)\"; } );");
	/* The re-check of the fix: an array of a domain, a cast to text, a time-dependent array. */
	char *tags = fx_policy("tags", "app.tags", "id", "c", "1 day",
			       "action = \"anonymize\"; set = ( { column = \"tags\"; value = \"{q}\"; } );");
	char *keyed = fx_policy("keyed", "app.keyed", "id", "c", "1 day",
				"action = \"anonymize\"; set_null = [ \"email\" ];");
	char *ats = fx_policy("ats", "app.ats", "id", "c", "1 day",
			      "action = \"anonymize\"; set = ( { column = \"ats\"; value = \"{today,x}\"; } );");
	char *policies = xasprintf("%s, %s, %s, %s, %s, %s", cast, now, box, tags, keyed, ats);
	char *conf = fx_config("setvalues", NULL, policies);
	char *out, *err;
	test_exec(conn, "CREATE SCHEMA app; CREATE SEQUENCE app.ran; GRANT USAGE ON SCHEMA app TO PUBLIC;"
			"GRANT USAGE ON SEQUENCE app.ran TO PUBLIC;"
			"CREATE TYPE app.st AS ENUM ('live', 'gone');"
			"CREATE FUNCTION app.st_of(text) RETURNS app.st LANGUAGE plpgsql AS $$ BEGIN"
			"  PERFORM nextval('app.ran'); RETURN CAST(CAST($1 AS name) AS text)::app.st; END $$;"
			"CREATE CAST (text AS app.st) WITH FUNCTION app.st_of(text);"
			"CREATE TABLE app.cast (id int PRIMARY KEY, c timestamptz, email text, st app.st);"
			"INSERT INTO app.cast VALUES (1, now() - interval '2 days', NULL, 'live');"
			"CREATE TABLE app.now (id int PRIMARY KEY, c timestamptz, at timestamptz);"
			"INSERT INTO app.now VALUES (1, now() - interval '2 days', now());"
			"CREATE TABLE app.box (id int PRIMARY KEY, c timestamptz, area box);"
			"INSERT INTO app.box VALUES (1, now() - interval '2 days', '(52.52,13.40),(53.52,14.40)');"
			"CREATE FUNCTION app.spy(text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN"
			"  PERFORM nextval('app.ran'); RETURN true; END $$;"
			"CREATE DOMAIN app.tag AS text CHECK (app.spy(VALUE));"
			"CREATE TABLE app.tags (id int PRIMARY KEY, c timestamptz, tags app.tag[]);"
			"CREATE TYPE app.k AS ENUM ('a', 'b');"
			"CREATE FUNCTION app.k_text(app.k) RETURNS text LANGUAGE plpgsql AS $$ BEGIN"
			"  PERFORM nextval('app.ran'); RETURN CAST(CAST($1 AS name) AS text); END $$;"
			"CREATE CAST (app.k AS text) WITH FUNCTION app.k_text(app.k);"
			"CREATE TABLE app.keyed (id app.k PRIMARY KEY, c timestamptz, email text);"
			"CREATE TABLE app.ats (id int PRIMARY KEY, c timestamptz, ats date[]);"
			"INSERT INTO app.ats VALUES (1, now() - interval '2 days', NULL)");
	/* Rows the cast and the domain would see; inserted as the superuser, whose own casts are not in question. */
	test_exec(conn, "INSERT INTO app.tags VALUES (1, now() - interval '2 days', NULL);"
			"INSERT INTO app.keyed VALUES ('a', now() - interval '2 days', 'a@example.org');"
			"SELECT setval('app.ran', 1, false)");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out,
			     "policy cast: error: anonymized column st is of type app.st, whose cast from text runs"
			     " app.st_of(text), a function a user defined"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy now: error: anonymized column at is set to ' Now', which changes with time"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy box: error: anonymized column area is of type box, which has no equality"
				  " operator of a btree operator class"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy tags: error: anonymized column tags is of type app.tag[], an array of domain"
				  " app.tag, whose checks are code of its owner"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy keyed: error: key column id is of type app.k, whose cast to text runs"
				  " app.k_text(app.k)"),
		      "%s", out);
	ck_assert_msg(
		strstr(out, "policy ats: error: anonymized column ats is set to '{today,x}', which changes with time"),
		"%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "setvalues", &out, &err, "pending", "--policy", "cast", NULL), 1);
	ck_assert_msg(strstr(err, "whose cast from text runs app.st_of(text)"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "setvalues", &out, &err, "explain", "--policy", "keyed", "--key", "a", NULL), 1);
	free(out);
	free(err);
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM retention.audit_log"), 0);
	/* Neither the daemon, nor --check, nor retentionctl ran the owner's cast. */
	ck_assert_int_eq(count(conn, "SELECT count(*) FROM app.cast WHERE st = 'live' AND c < now()"), 1);
	ck_assert_int_eq(count(conn, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM app.ran"), 0);
	free(cast);
	free(now);
	free(box);
	free(tags);
	free(keyed);
	free(ats);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* --check tells the truth about what would stop or endanger a purge. */
START_TEST(test_check_reports_what_endangers_a_purge)
{
	PGconn *conn = fx_database("truths");
	char *a = fx_policy("anon", "app.people", "id", "closed_at", "1 day",
			    "action = \"anonymize\"; set_null = [ \"email\" ];");
	char *b = fx_policy("ruled", "app.ruled", "id", "c", "1 day", "");
	char *c = fx_policy("unqualified", "people", "id", "closed_at", "1 day",
			    "action = \"anonymize\"; set_null = [ \"phone\" ];");
	char *policies = xasprintf("%s, %s, %s", a, b, c);
	char *conf = fx_config("truths", NULL, policies);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.people (id int PRIMARY KEY, closed_at timestamptz NOT NULL, email text NOT NULL);"
		  "CREATE TABLE app.ruled (id int PRIMARY KEY, c timestamptz);"
		  "CREATE RULE keep AS ON DELETE TO app.ruled DO INSTEAD NOTHING;"
		  "CREATE TABLE public.people (id int PRIMARY KEY, closed_at timestamptz, phone text);"
		  "CREATE TABLE app.notes (id int PRIMARY KEY, person int REFERENCES app.people ON DELETE CASCADE);"
		  "ALTER TABLE app.people ENABLE ROW LEVEL SECURITY");
	fx_grant(conn, "app, public");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "policy anon: error: anonymized column email is NOT NULL"), "%s", out);
	/* Anonymizing leaves the clock as it is: a NOT NULL one is fine. */
	ck_assert_msg(strstr(out, "clock column closed_at is NOT NULL") == NULL, "%s", out);
	ck_assert_msg(strstr(out,
			     "policy anon: warning: anonymized rows keep their clock, and every due query passes over"
			     " them in clock order: an index that leaves them out keeps it short (as the table's owner:"
			     " CREATE INDEX ON app.people (closed_at) WHERE email IS NOT NULL)"),
		      "%s", out);
	ck_assert_msg(
		strstr(out, "policy anon: error: row-level security applies to role retentiond_test on the table"),
		"%s", out);
	ck_assert_msg(strstr(out, "policy ruled: error: rule keep on DELETE makes every purge fail"), "%s", out);
	ck_assert_msg(
		strstr(out, "policy unqualified: warning: table people is not schema-qualified: it is public.people"),
		"%s", out);
	free(out);
	free(err);
	free(a);
	free(b);
	free(c);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("safety");
	TCase *kept = test_tcase("records that must stay", 120);
	TCase *trail = test_tcase("the audit trail and the log", 120);
	tcase_add_test(kept, test_cascade_never_takes_another_policys_records);
	tcase_add_test(kept, test_cascade_within_one_table_keeps_the_reply);
	tcase_add_test(kept, test_cascade_through_an_ungoverned_table_keeps_the_record);
	tcase_add_test(kept, test_a_row_that_references_itself_is_purged);
	tcase_add_test(kept, test_a_cascade_back_into_the_table_keeps_the_record);
	tcase_add_test(kept, test_cascades_deeper_than_followed_keep_the_policy_off);
	tcase_add_test(kept, test_partitions_are_governed_with_their_table);
	tcase_add_test(kept, test_rows_hidden_by_row_level_security_keep_the_policy_off);
	tcase_add_test(kept, test_exempt_values_compare_in_the_columns_type);
	tcase_add_test(kept, test_undeletable_records_do_not_block_the_rest);
	tcase_add_test(kept, test_failed_commit_is_not_a_purge);
	tcase_add_test(kept, test_an_anonymisation_that_does_not_take_is_not_audited);
	tcase_add_test(kept, test_anonymized_values_compare_exactly_and_run_no_users_code);
	tcase_add_test(kept, test_an_anonymisation_undone_later_is_not_audited);
	tcase_add_test(kept, test_a_set_value_its_domain_rejects_stops_the_policy);
	tcase_add_test(kept, test_infinite_clocks);
	tcase_add_test(kept, test_check_reports_what_endangers_a_purge);
	suite_add_tcase(s, kept);
	tcase_add_test(trail, test_search_path_cannot_replace_built_ins);
	tcase_add_test(trail, test_daemon_refuses_superuser_and_bypassrls);
	tcase_add_test(trail, test_trigger_cannot_forge_audit_rows);
	tcase_add_test(trail, test_code_outside_triggers_cannot_forge_audit_rows);
	tcase_add_test(trail, test_a_trigger_cannot_change_the_session);
	tcase_add_test(trail, test_a_trigger_cannot_replace_the_daemons_statements);
	tcase_add_test(trail, test_every_watched_setting_is_read_back);
	tcase_add_test(trail, test_sessions_pin_their_settings);
	tcase_add_test(trail, test_a_row_security_policy_added_later_never_runs);
	tcase_add_test(trail, test_a_table_swapped_for_a_view_runs_no_owner_code);
	tcase_add_test(trail, test_log_carries_no_row_data);
	suite_add_tcase(s, trail);
	return test_run_suite(s);
}
