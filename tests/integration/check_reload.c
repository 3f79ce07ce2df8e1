/*
 * Reloads and lookups under real conditions: a backlog draining, a
 * misspelled zone, a table that appears later, a connection lost in the
 * middle of a lookup. Each test names the defect of the review of 78f4ad6
 * it pins.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fixture.h"
#include "util.h"

/*
 * D1: a SIGHUP was applied only when every policy happened to be idle; with
 * a backlog draining, retain raised from 1 day to 100 years, all remaining
 * rows were still deleted under the old rule. A reload now takes effect at
 * the next batch boundary.
 */
START_TEST(test_reload_takes_effect_at_the_next_batch)
{
	const int rows = 20000;
	PGconn *conn = fx_uploads_db("reloadbacklog");
	char *conf = fx_uploads_config("reloadbacklog", "1 day", "batch = 10; guard_records = 0;");
	char *log = fx_log_path("reloadbacklog");
	char *longer, *text;
	long long left_at_sighup, left_after;
	long mark;
	pid_t pid;
	fx_fill_backlog(conn, rows);
	test_exec(conn, "UPDATE virusdesk.uploads SET scan_completed_at = scan_completed_at - interval '1 day'");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "purged 10 records", 20);
	longer = fx_uploads_config("reloadbacklog", "100 years", "batch = 10; guard_records = 0;");
	{
		FILE *f = fopen(longer, "r");
		text = xmalloc(4096);
		text[fread(text, 1, 4095, f)] = '\0';
		fclose(f);
	}
	fx_rewrite(conf, text);
	mark = fx_log_mark(log);
	left_at_sighup = test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads");
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "configuration reloaded", 5);
	/* From the moment the daemon takes the signal, the batch in flight finishes and no new one starts. */
	ck_assert_int_le(fx_log_count_between(log, fx_log_find(log, mark, "SIGHUP: reloading"),
					      "configuration reloaded", "purged 10 records"),
			 1);
	ck_assert_msg(fx_log_has_after(log, mark, "changed virusdesk-scan-uploads"),
		      "the reload does not say what changed");
	/* The new rule keeps everything for a century: the daemon settles and deletes nothing more. */
	fx_wait_for_log_after(log, mark, "next record due (or hold ending, or quarantined record retried) at 21", 10);
	ck_assert_int_eq(fx_log_count_between(log, fx_log_mark(log), "no such line", "purged"), 0);
	left_after = test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads");
	ck_assert_msg(left_after >= left_at_sighup - 100, "%lld rows left at SIGHUP, %lld after the reload",
		      left_at_sighup, left_after);
	ck_assert_msg(left_after > 0, "the whole backlog was deleted under the old rule");
	fx_assert_purge_atomic(conn, rows);
	fx_stop_daemon(pid);
	free(text);
	free(longer);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D1, second half: while a reload waits for another policy's batch, a
 * policy whose record falls due meanwhile must not start a batch under the
 * old rule. Policy "quick" has a record due in eight seconds, which the new
 * rule keeps for a century; policy "slow" gets records two and a half
 * seconds before that, and its batch takes four, the SIGHUP coming as it
 * starts.
 */
START_TEST(test_nothing_starts_while_a_reload_waits)
{
	PGconn *conn = fx_database("reloadwaits");
	char *slow = fx_policy("slow", "app.slow", "id", "c", "1 day", "");
	char *quick_old = fx_policy("quick", "app.quick", "id", "c", "1 day", "");
	char *quick_new = fx_policy("quick", "app.quick", "id", "c", "100 years", "");
	char *policies = xasprintf("%s, %s", slow, quick_old);
	char *conf = fx_config("reloadwaits", NULL, policies);
	char *log = fx_log_path("reloadwaits");
	char *reloaded;
	long mark;
	pid_t pid;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.slow (id int PRIMARY KEY, c timestamptz);"
		  "CREATE FUNCTION app.pause() RETURNS trigger LANGUAGE plpgsql AS"
		  " $$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$;"
		  "CREATE TRIGGER pause BEFORE DELETE ON app.slow FOR EACH STATEMENT EXECUTE FUNCTION app.pause();"
		  "CREATE TRIGGER wake AFTER INSERT ON app.slow FOR EACH STATEMENT"
		  " EXECUTE FUNCTION retention.notify_clock();"
		  "CREATE TABLE app.quick (id int PRIMARY KEY, c timestamptz);"
		  "INSERT INTO app.quick VALUES (1, now() - interval '1 day' + interval '8 seconds')");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy quick: next record due", 10);
	ck_assert(fx_poll_true(
		conn, "SELECT now() >= c + interval '1 day' - interval '2.5 seconds' FROM app.quick WHERE id = 1", 15));
	free(policies);
	policies = xasprintf("%s, %s", slow, quick_new);
	reloaded = fx_config("reloadwaits", NULL, policies);
	{
		FILE *f = fopen(reloaded, "r");
		char text[8192];
		text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
		fclose(f);
		fx_rewrite(conf, text);
	}
	mark = fx_log_mark(log);
	test_exec(conn, "INSERT INTO app.slow VALUES (1, now() - interval '2 days')");
	fx_wait_for_log_after(log, mark, "policy slow: asking -> purging", 5);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	ck_assert_msg(fx_poll_true(conn, "SELECT now() < c + interval '1 day' FROM app.quick WHERE id = 1", 0),
		      "too slow to set the test up: the record fell due before the SIGHUP");
	fx_wait_for_log_after(log, mark, "configuration reloaded", 15);
	/* The first answer under the new rule. */
	ck_assert(fx_wait_for_either_after(log, fx_log_find(log, mark, "configuration reloaded"),
					   "policy quick: next record due", "policy quick: nothing pending", 10));
	ck_assert_msg(fx_row_exists(conn, "app.quick", "1"),
		      "a batch started under the old rule while a reload waited");
	fx_stop_daemon(pid);
	free(slow);
	free(quick_old);
	free(quick_new);
	free(policies);
	free(reloaded);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D3: a reload whose zone the server did not know purged anyway, in the
 * server's zone and without timeouts: a record went 2 h early. Such a reload
 * is now refused and the old configuration goes on in its own zone.
 */
START_TEST(test_reload_with_an_unknown_zone_is_refused)
{
	PGconn *conn = fx_database("reloadzone");
	const char *policy = "{ name = \"tz\"; service = \"s\"; source = \"s\"; table = \"app.t\"; key = \"id\";"
			     " clock = \"c\"; retain = \"1 day\"; }";
	char *good = xasprintf("database = { conninfo = \"dbname=reloadzone user=" TEST_DAEMON_ROLE "\";"
			       " time_zone = \"America/Los_Angeles\"; };\n"
			       "daemon = { resync_interval = \"1 second\"; log_level = \"debug\"; };\n"
			       "policies = ( %s );\n",
			       policy);
	char *typo = xasprintf("database = { conninfo = \"dbname=reloadzone user=" TEST_DAEMON_ROLE "\";"
			       " time_zone = \"America/Los_Angles\"; };\n"
			       "daemon = { resync_interval = \"1 second\"; log_level = \"debug\"; };\n"
			       "policies = ( %s );\n",
			       policy);
	char *conf = test_write_file(good);
	char *log = fx_log_path("reloadzone");
	long mark;
	pid_t pid;
	/* Los Angeles wall time 22 hours ago: due in 2 hours there, 6 or 7 hours ago in UTC. */
	test_exec(conn,
		  "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c timestamp);"
		  "INSERT INTO app.t VALUES (1, (now() AT TIME ZONE 'America/Los_Angeles') - interval '22 hours')");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy tz: next record due", 10);
	fx_rewrite(conf, typo);
	mark = fx_log_mark(log);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark,
			      "database.time_zone: the server does not know time zone \"America/Los_Angles\"", 5);
	fx_wait_for_log_after(log, mark, "not reloaded: the database checks above failed", 5);
	/* A resync after the refusal asks again, in Los Angeles time: still 2 hours to go. */
	mark = fx_log_mark(log);
	fx_wait_for_log_after(log, mark, "policy tz: next record due", 5);
	ck_assert_msg(fx_row_exists(conn, "app.t", "1"), "purged 2 h early after a reload with a misspelled zone");
	ck_assert_int_eq(fx_audit_count(conn, NULL, "1"), 0);
	fx_stop_daemon(pid);
	free(good);
	free(typo);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * F11 (first deployment): a reload was checked only as a file. A column typo
 * passed SIGHUP ("configuration reloaded ...") and the policy then failed
 * at every retry: nothing was purged any more. The reload is now resolved
 * against the catalog first and refused; the running policy goes on as it
 * was, and purges were held while the check ran.
 */
START_TEST(test_a_reload_with_a_column_typo_keeps_the_policy)
{
	PGconn *conn = fx_database("reloadtypo");
	char *good_policy = fx_policy("orders", "app.orders", "id", "closed_at", "1 day", "");
	char *typo_policy = fx_policy("orders", "app.orders", "id", "closed_on", "2 days", "");
	char *conf = fx_config("reloadtypo", "resync_interval = \"1 hour\";", good_policy);
	char *typo = fx_config("reloadtypo", "resync_interval = \"1 hour\";", typo_policy);
	char *log = fx_log_path("reloadtypo");
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.orders (id int PRIMARY KEY, closed_at timestamptz);"
			"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF closed_at ON app.orders"
			"  FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();"
			"INSERT INTO app.orders VALUES (1, now() - interval '3 days')");
	fx_grant(conn, "app");
	/* Started with SIGCHLD ignored, as a supervisor may leave it: the check's outcome is still read. */
	signal(SIGCHLD, SIG_IGN);
	pid = fx_start_daemon(conf, log);
	signal(SIGCHLD, SIG_DFL);
	ck_assert(fx_wait_row_gone(conn, "app.orders", "1", 10));
	ck_assert_int_eq(rename(typo, conf), 0);
	mark = fx_log_mark(log);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "policy orders: error: clock column closed_on does not exist", 10);
	fx_wait_for_log_after(log, mark,
			      "not reloaded: the database checks above failed; the 1 policies loaded before"
			      " stay in force",
			      10);
	ck_assert(!fx_log_has_after(log, mark, "configuration reloaded"));
	/* The old rule (1 day) still runs: a record 30 hours old goes at once, as it would not under 2 days. */
	test_exec(conn, "INSERT INTO app.orders VALUES (2, now() - interval '30 hours')");
	ck_assert_msg(fx_wait_row_gone(conn, "app.orders", "2", 10),
		      "the running policy stopped after a refused reload");
	ck_assert(!fx_log_has_after(log, mark, "does not exist (SQLSTATE"));
	fx_stop_daemon(pid);
	free(good_policy);
	free(typo_policy);
	free(conf);
	free(typo);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * F12 (first deployment): a revoked grant was logged as "permission denied
 * for table tickets" at every retry, naming no privilege. The failed batch
 * now has the table described again, which names the missing privilege and
 * the GRANT; once granted, the next resync purges.
 */
START_TEST(test_a_revoked_grant_is_named)
{
	PGconn *conn = fx_database("revoked");
	char *policy = fx_policy("orders", "app.orders", "id", "closed_at", "1 day", "");
	char *conf = fx_config("revoked", "resync_interval = \"1 second\";", policy);
	char *log = fx_log_path("revoked");
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.orders (id int PRIMARY KEY, closed_at timestamptz);"
			"INSERT INTO app.orders VALUES (1, now() + interval '1 hour')");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy orders: next record due", 10);
	mark = fx_log_mark(log);
	test_exec(conn, "REVOKE DELETE ON app.orders FROM " TEST_DAEMON_ROLE ";"
			"UPDATE app.orders SET closed_at = now() - interval '2 days';"
			"SELECT pg_notify('retentiond', 'app.orders')");
	fx_wait_for_log_after(log, mark, "permission denied for table orders", 10);
	fx_wait_for_log_after(log, mark,
			      "policy orders: not purging: role " TEST_DAEMON_ROLE " lacks DELETE on the table", 10);
	ck_assert(fx_row_exists(conn, "app.orders", "1"));
	test_exec(conn, "GRANT DELETE ON app.orders TO " TEST_DAEMON_ROLE);
	ck_assert_msg(fx_wait_row_gone(conn, "app.orders", "1", 10), "not purged after the grant came back");
	fx_stop_daemon(pid);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* D8: one failed table lookup silenced a policy until SIGHUP ("looking again at the next resync" never happened). */
START_TEST(test_a_table_that_appears_later_is_purged)
{
	PGconn *conn = fx_database("latertable");
	char *policy = fx_policy("later", "app.later", "id", "c", "1 day", "");
	char *conf = fx_config("latertable", "resync_interval = \"1 second\";", policy);
	char *log = fx_log_path("latertable");
	pid_t pid;
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy later: table app.later does not exist", 10);
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.later (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO app.later VALUES (1, now() - interval '2 days')");
	fx_grant(conn, "app");
	ck_assert_msg(fx_wait_row_gone(conn, "app.later", "1", 10),
		      "the policy stayed silent after its table appeared");
	fx_stop_daemon(pid);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * With nothing due no purge reads the catalog: the ask at each resync
 * checks it, so a change (here a cascading foreign key from another
 * table) is described again, and its warnings logged, before a record of
 * the table falls due.
 */
START_TEST(test_a_change_with_nothing_due_is_seen_at_the_resync)
{
	PGconn *conn = fx_database("ddlidle");
	char *policy = fx_policy("orders", "shop.orders", "id", "closed_at", "1 day", "");
	char *conf = fx_config("ddlidle", "resync_interval = \"1 second\";", policy);
	char *log = fx_log_path("ddlidle");
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, closed_at timestamptz);"
			"CREATE TABLE shop.lines (id int PRIMARY KEY, order_id int);"
			"INSERT INTO shop.orders VALUES (1, now())");
	fx_grant(conn, "shop");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy orders: next record due", 10);
	mark = fx_log_mark(log);
	test_exec(conn, "ALTER TABLE shop.lines ADD FOREIGN KEY (order_id) REFERENCES shop.orders ON DELETE CASCADE");
	fx_wait_for_log_after(log, mark, "policy orders: table shop.orders or a table its purge reads changed", 10);
	ck_assert(fx_row_exists(conn, "shop.orders", "1"));
	fx_stop_daemon(pid);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * The daemon described a table once, when it connected. A foreign key
 * added later (a governed line now referring to a due order), or
 * row-level security switched on, went unseen: the order was purged and
 * its line went by cascade. The purge checks the catalog under the table's
 * lock and describes the table again when it changed.
 */
START_TEST(test_a_table_changed_while_running_is_described_again)
{
	PGconn *conn = fx_database("ddl");
	char *orders = fx_policy("orders", "shop.orders", "id", "closed_at", "1 day", "");
	char *lines = fx_policy("lines", "shop.lines", "id", "shipped_at", "10 years", "");
	char *policies = xasprintf("%s, %s", orders, lines);
	char *conf = fx_config("ddl", "resync_interval = \"1 second\";", policies);
	char *log = fx_log_path("ddl");
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, closed_at timestamptz);"
			"CREATE TABLE shop.lines (id int PRIMARY KEY, order_id int, shipped_at timestamptz);"
			"CREATE INDEX ON shop.lines (order_id)");
	fx_grant(conn, "shop");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy orders: nothing pending", 10);
	mark = fx_log_mark(log);
	test_exec(conn, "ALTER TABLE shop.lines ADD FOREIGN KEY (order_id) REFERENCES shop.orders ON DELETE CASCADE;"
			"INSERT INTO shop.orders VALUES (1, now() - interval '2 days');"
			"INSERT INTO shop.lines VALUES (10, 1, now())");
	fx_wait_for_log_after(log, mark, "policy orders: table shop.orders or a table its purge reads changed", 10);
	fx_wait_for_log_after(log, mark, "policy orders: a record referenced by shop.lines", 10);
	ck_assert_msg(fx_row_exists(conn, "shop.lines", "10"), "a governed line went with an order by a new cascade");
	ck_assert(fx_row_exists(conn, "shop.orders", "1"));
	mark = fx_log_mark(log);
	test_exec(conn, "ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;"
			"INSERT INTO shop.orders VALUES (2, now() - interval '2 days')");
	fx_wait_for_log_after(log, mark, "policy orders: not purging: row-level security applies", 10);
	ck_assert_msg(fx_row_exists(conn, "shop.orders", "2"), "purged while row-level security hid rows");
	fx_stop_daemon(pid);
	free(orders);
	free(lines);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A table swapped in under the policy's table name (built beside it, given
 * a foreign key from a governed table, renamed into place): the statements
 * name the table, so they read the new one with the old one's description,
 * and a held line went by cascade with its order, unaudited.
 */
START_TEST(test_a_table_renamed_into_place_is_described_again)
{
	PGconn *conn = fx_database("swap");
	char *orders = fx_policy("orders", "shop.orders", "id", "closed_at", "1 year", "");
	char *lines = fx_policy("lines", "shop.lines", "id", "closed_at", "1 year", "");
	char *policies = xasprintf("%s, %s", orders, lines);
	char *conf = fx_config("swap", "resync_interval = \"1 second\";", policies);
	char *log = fx_log_path("swap");
	long mark;
	pid_t pid;
	test_exec(conn, "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, closed_at timestamptz);"
			"CREATE TABLE shop.lines (id int PRIMARY KEY, order_id int, closed_at timestamptz);"
			"CREATE INDEX ON shop.lines (order_id);"
			"INSERT INTO shop.lines VALUES (1, 7, now() - interval '3 years');"
			"SELECT retention.place_hold('lines', '1', NULL, 'legal case', NULL)");
	fx_grant(conn, "shop");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy orders: nothing pending", 10);
	mark = fx_log_mark(log);
	test_exec(conn,
		  "CREATE TABLE shop.orders_new (LIKE shop.orders INCLUDING ALL);"
		  "INSERT INTO shop.orders_new VALUES (7, now() - interval '3 years');"
		  "ALTER TABLE shop.lines ADD FOREIGN KEY (order_id) REFERENCES shop.orders_new ON DELETE CASCADE;");
	fx_grant(conn, "shop");
	test_exec(conn, "BEGIN; ALTER TABLE shop.orders RENAME TO orders_old;"
			"ALTER TABLE shop.orders_new RENAME TO orders; COMMIT");
	ck_assert(fx_wait_for_either_after(log, mark, "policy orders: a record referenced by shop.lines",
					   "policy orders: purged", 10));
	ck_assert_msg(fx_row_exists(conn, "shop.lines", "1"), "a held line went by cascade with its swapped-in order");
	ck_assert(fx_row_exists(conn, "shop.orders", "7"));
	fx_stop_daemon(pid);
	free(orders);
	free(lines);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* D8, second variant: the connection lost while a lookup waits; after reconnecting the policy must purge. */
START_TEST(test_a_lookup_lost_with_the_connection_is_retried)
{
	PGconn *conn = fx_uploads_db("lostlookup");
	PGconn *blocker = test_connect_db("lostlookup");
	char *conf = fx_uploads_config("lostlookup", "15 minutes", "");
	char *log = fx_log_path("lostlookup");
	char *sql, *since;
	int backend;
	pid_t pid;
	/* The heartbeat waits on this lock, and the lookup queued behind it. */
	test_exec(blocker, "BEGIN; LOCK TABLE retention.instances IN ACCESS EXCLUSIVE MODE");
	since = fx_server_now(conn);
	pid = fx_start_daemon(conf, log);
	backend = fx_daemon_backend(conn, since, 10);
	free(since);
	ck_assert(fx_wait_backend_blocked(conn, backend, 10));
	sql = xasprintf("SELECT pg_terminate_backend(%d)", backend);
	test_exec(conn, sql);
	free(sql);
	fx_wait_for_log(log, "database connection lost", 10);
	test_exec(blocker, "COMMIT");
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 10),
		      "a policy whose lookup was lost with the connection never purged again");
	fx_stop_daemon(pid);
	PQfinish(blocker);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* The longest gap between watchdog pings on FD over SECONDS. */
static double longest_watchdog_gap(int fd, double seconds)
{
	double end = test_now() + seconds, last = test_now(), gap = 0;
	char buf[512];
	while (test_now() < end) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;
		if (poll(&p, 1, 50) <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (strstr(buf, "WATCHDOG=1")) {
			double now = test_now();
			if (now - last > gap)
				gap = now - last;
			last = now;
		}
	}
	return test_now() - last > gap ? test_now() - last : gap;
}

/*
 * D17: libpq resolved a conninfo's host name with a blocking getaddrinfo()
 * on the event loop; during a resolver outage every attempt stalled the
 * loop and the watchdog. Names are resolved on the loop by libevent's own
 * resolver, and libpq gets the address.
 */
START_TEST(test_resolving_a_host_name_never_blocks_the_loop)
{
	char *shim = xasprintf("%s/tests/slow_getaddrinfo.so", test_builddir());
	char *slow = test_write_file("database = { conninfo = \"host=slow.invalid port=5999 dbname=x\"; };\n"
				     "policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";"
				     " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n");
	char *local = test_write_file("database = { conninfo = \"host=localhost port=5999 dbname=x\"; };\n"
				      "policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";"
				      " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n");
	char *log = fx_log_path("dns"), *log2 = fx_log_path("dns-local");
	char *sock_path = test_path("dns.sock");
	struct sockaddr_un addr;
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	double gap;
	pid_t pid;
	ck_assert_msg(access(shim, R_OK) == 0, "%s missing", shim);
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock_path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	setenv("LD_PRELOAD", shim, 1);
	/* A sanitizer build's runtime must come first; the shim only wraps one libc call. */
	setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
	pid = fx_start_daemon(slow, log);
	unsetenv("LD_PRELOAD");
	gap = longest_watchdog_gap(fd, 4);
	ck_assert_msg(gap < 1.0, "the loop stalled %.1f s while a host name was resolved", gap);
	fx_stop_daemon(pid);
	/*
	 * A name is resolved, and libpq connects to the address it is handed (nothing listens there):
	 * libpq names the server by that address, where it would say "localhost" (127.0.0.1) had it
	 * resolved the name itself.
	 */
	setenv("LD_PRELOAD", shim, 1);
	pid = fx_start_daemon(local, log2);
	unsetenv("LD_PRELOAD");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("ASAN_OPTIONS");
	fx_wait_for_log(log2, "connection to server at \"127.0.0.1\", port 5999 failed", 10);
	fx_stop_daemon(pid);
	close(fd);
	free(shim);
	free(slow);
	free(local);
	free(log);
	free(log2);
	free(sock_path);
}
END_TEST

/*
 * A reload to another database (database.conninfo changed): the chain head
 * committed to the first says nothing of the second's chain, so no chain
 * gap is recorded there.
 */
START_TEST(test_a_reload_to_another_database_records_no_chain_gap)
{
	PGconn *a = fx_uploads_db("gapa"), *b = fx_uploads_db("gapb");
	char *conf = fx_uploads_config("gapa", "15 minutes", "");
	char *other = fx_uploads_config("gapb", "15 minutes", "");
	char *log = fx_log_path("gapa");
	long mark;
	pid_t pid;
	test_exec(a, "INSERT INTO virusdesk.uploads (id, scan_completed_at) SELECT g, now() - interval '1 hour'"
		     " FROM generate_series(1, 10) g");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(a, "SELECT count(*) = 0 FROM virusdesk.uploads", 10));
	mark = fx_log_mark(log);
	ck_assert_int_eq(rename(other, conf), 0);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "database settings changed: reconnecting", 10);
	test_exec(b, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert_msg(fx_wait_row_gone(b, "virusdesk.uploads", "1", 10), "not purged in the second database");
	ck_assert_int_eq(test_query_ll(b, "SELECT count(*) FROM retention.chain_gaps"), 0);
	ck_assert(!fx_log_has_after(log, mark, "chain gap"));
	fx_assert_chain_intact(b);
	fx_stop_daemon(pid);
	free(other);
	free(conf);
	free(log);
	PQfinish(a);
	PQfinish(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reload");
	TCase *tc = test_tcase("reload", 120);
	tcase_add_test(tc, test_reload_takes_effect_at_the_next_batch);
	tcase_add_test(tc, test_nothing_starts_while_a_reload_waits);
	tcase_add_test(tc, test_reload_with_an_unknown_zone_is_refused);
	tcase_add_test(tc, test_a_reload_with_a_column_typo_keeps_the_policy);
	tcase_add_test(tc, test_a_revoked_grant_is_named);
	tcase_add_test(tc, test_a_table_that_appears_later_is_purged);
	tcase_add_test(tc, test_a_change_with_nothing_due_is_seen_at_the_resync);
	tcase_add_test(tc, test_a_table_changed_while_running_is_described_again);
	tcase_add_test(tc, test_a_table_renamed_into_place_is_described_again);
	tcase_add_test(tc, test_a_lookup_lost_with_the_connection_is_retried);
	tcase_add_test(tc, test_resolving_a_host_name_never_blocks_the_loop);
	tcase_add_test(tc, test_a_reload_to_another_database_records_no_chain_gap);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
