/*
 * check_standby.c -- a real streaming standby (pg_basebackup -R) of the
 * harness's server: a daemon connected to it purges nothing and says so
 * once, and purges once it is promoted (pg_ctl promote); a daemon with a
 * multi-host conninfo (target_session_attrs=read-write) follows the
 * promoted standby after the primary crashed, without a restart, and
 * finds the chain's lost tail even across a reload.
 *
 * The last test crashes the primary: it stays last.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "util.h"

static void harness(const char *verb)
{
	char *path = xasprintf("%s/tests/pg-harness", test_srcdir());
	char *argv[] = {path, (char *)verb, NULL};
	char *out, *err;
	ck_assert_msg(test_run(argv, &out, &err) == 0, "pg-harness %s: %s", verb, err);
	free(out);
	free(err);
	free(path);
}

/* A connection to DB on the standby (port 5433 of the harness's socket). */
static PGconn *standby_connect(const char *db)
{
	char *conninfo = xasprintf("host=%s port=5433 dbname=%s user=postgres", getenv("PGHOST"), db);
	PGconn *conn = PQconnectdb(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
	free(conninfo);
	return conn;
}

/* A configuration for DB with CONNINFO_TAIL (host, port, ...), resyncing every second. */
static char *config_at(const char *db, const char *conninfo_tail)
{
	char *text = xasprintf(
		"database = { conninfo = \"dbname=%s user=" TEST_DAEMON_ROLE " %s\"; };\n"
		"daemon = { instance = \"%s-1\"; resync_interval = \"1 second\"; log_level = \"debug\"; };\n"
		"policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\"; source = \"s\";"
		" table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n",
		db, conninfo_tail, db);
	char *path = test_write_file(text);
	free(text);
	return path;
}

START_TEST(test_a_daemon_on_a_standby_purges_nothing_until_promoted)
{
	PGconn *primary = fx_uploads_db("onstandby"), *standby;
	char *tail = xasprintf("host=%s port=5433", getenv("PGHOST"));
	char *conf = config_at("onstandby", tail);
	char *log = fx_log_path("onstandby");
	char *out, *err;
	pid_t pid;
	test_exec(primary, "INSERT INTO virusdesk.uploads (id, scan_completed_at) SELECT g, now() - interval '1 hour'"
			   " FROM generate_series(1, 3) g");
	harness("standby");
	standby = standby_connect("onstandby");
	ck_assert(fx_poll_true(standby, "SELECT count(*) = 3 FROM virusdesk.uploads", 10));
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "the server is a standby (in recovery): purging nothing", 10);
	/* Three resyncs later it has purged nothing, and said so once (not once a second). */
	ck_assert_msg(!fx_poll_true(standby, "SELECT count(*) < 3 FROM virusdesk.uploads", 3.5),
		      "a daemon purged on a standby");
	ck_assert_int_eq(fx_log_count_after(log, 0, "the server is a standby"), 1);
	ck_assert(!fx_log_has_after(log, 0, "read-only transaction"));
	ck_assert(!fx_log_has_after(log, 0, "LISTEN retentiond failed"));
	/* retentionctl status says where it is; --once refuses to pretend. */
	{
		char *db = xasprintf("onstandby host=%s port=5433", getenv("PGHOST"));
		ck_assert_int_eq(fx_ctl(conf, db, &out, &err, "status", NULL), 0);
		ck_assert_msg(strstr(err, "the server is a standby (in recovery)"), "%s", err);
		free(out);
		free(err);
		free(db);
	}
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, "--once: the server is a standby (in recovery): nothing purged"), "%s", err);
	free(out);
	free(err);
	/* --check needs the primary, and says so in one line instead of a failed lock. */
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(
		strstr(err, "database.conninfo: the server is a standby (in recovery): --check needs the primary"),
		"%s", err);
	ck_assert_msg(!strstr(err, "read-only transaction"), "%s", err);
	free(out);
	free(err);
	/* Promoted: the same daemon, the same connection, purges at its next resync. */
	harness("promote");
	ck_assert_msg(fx_poll_true(standby, "SELECT count(*) = 0 FROM virusdesk.uploads", 15),
		      "not purged after the promotion");
	fx_wait_for_log(log, "the server is no longer in recovery (promoted): purging", 5);
	ck_assert_int_eq(test_query_ll(standby, "SELECT count(*) FROM retention.audit_log"), 3);
	fx_assert_chain_intact(standby);
	/* Nothing went to the old primary, which still runs. */
	ck_assert_int_eq(test_query_ll(primary, "SELECT count(*) FROM virusdesk.uploads"), 3);
	fx_stop_daemon(pid);
	PQfinish(standby);
	harness("standby-stop");
	free(tail);
	free(conf);
	free(log);
	PQfinish(primary);
}
END_TEST

/*
 * Done when: replica lag (replay paused on a real standby with
 * pg_wal_replay_pause()) pauses purging, and resuming replay resumes it.
 * A policy waiting in line meanwhile that stops (a tightened domain rejects
 * the value it anonymizes with) holds back no other policy's backlog after,
 * and nothing spins.
 */
START_TEST(test_replication_lag_pauses_the_backlog)
{
	PGconn *primary = fx_uploads_db("lagging"), *standby;
	char *conf = fx_uploads_config("lagging", "15 minutes", "batch = 50; guard_records = 0;");
	char *log = fx_log_path("lagging");
	char *text, *sql;
	long long left;
	pid_t pid;
	fx_fill_backlog(primary, 3000);
	test_exec(primary,
		  "CREATE SCHEMA app; CREATE DOMAIN app.flag AS text;"
		  "CREATE TABLE app.notes (id int PRIMARY KEY, c timestamptz, flag app.flag);"
		  "INSERT INTO app.notes SELECT g, now() - interval '2 days', 'x' FROM generate_series(1, 2000) g;");
	fx_grant(primary, "app");
	harness("standby");
	standby = standby_connect("lagging");
	ck_assert(fx_poll_true(standby, "SELECT count(*) = 3000 FROM virusdesk.uploads", 10));
	test_exec(standby, "SELECT pg_wal_replay_pause()");
	/* Slow enough that the standby falls behind before the backlog is gone. */
	text = xasprintf("database = { conninfo = \"dbname=lagging user=" TEST_DAEMON_ROLE "\";"
			 " max_replication_lag = \"1 second\"; };\n"
			 "daemon = { instance = \"lagging-1\"; resync_interval = \"1 hour\"; log_level = \"debug\";"
			 " max_purge_rate = 200; };\n"
			 "policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"virusdesk.uploads\";"
			 " key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; batch = 50;"
			 " guard_records = 0; },\n"
			 " { name = \"notes\"; service = \"s\"; source = \"s\"; table = \"app.notes\"; key = \"id\";"
			 " clock = \"c\"; retain = \"1 day\"; action = \"anonymize\";"
			 " set = ( { column = \"flag\"; value = \"gone\"; } ); guard_records = 0; } );\n");
	fx_rewrite(conf, text);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "purging of backlog paused: a standby replays", 20);
	left = test_query_ll(primary, "SELECT count(*) FROM virusdesk.uploads");
	ck_assert_msg(left > 0, "the backlog was gone before the standby fell behind");
	/* Paused: for three seconds of the service's own writes (which the standby does not replay), nothing more goes. */
	sql = xasprintf("SELECT count(*) < %lld FROM virusdesk.uploads", left);
	test_exec(primary, "CREATE TABLE public.service_writes (n int)");
	/* While both wait in line, notes stops: the next record it anonymizes, one falling due, breaks the domain. */
	test_exec(primary,
		  "ALTER DOMAIN app.flag ADD CONSTRAINT not_gone CHECK (VALUE <> 'gone') NOT VALID;"
		  "INSERT INTO app.notes VALUES (100001, now() - interval '1 day' + interval '1 second', 'x')");
	for (int i = 0; i < 15; i++) {
		test_exec(primary, "INSERT INTO public.service_writes VALUES (1)");
		ck_assert_msg(!fx_poll_true(primary, sql, 0.2), "purging went on while the standby lagged");
	}
	fx_wait_for_log(log, "breaks the domain of its column", 10);
	test_assert_query_value(primary, "SELECT flag FROM app.notes WHERE id = 100001", 0, NULL, "x");
	test_exec(standby, "SELECT pg_wal_replay_resume()");
	fx_wait_for_log(log, "purging of backlog resumed", 30);
	ck_assert_msg(fx_poll_true(primary, "SELECT count(*) = 0 FROM virusdesk.uploads", 60),
		      "the backlog was not purged once the standby caught up (%lld left)",
		      test_query_ll(primary, "SELECT count(*) FROM virusdesk.uploads"));
	{
		struct timespec span = {3, 0};
		double cpu = fx_cpu_seconds(pid), started = test_now();
		nanosleep(&span, NULL); /* measuring a span of time: what the daemon does meanwhile is the point */
		ck_assert_msg(fx_cpu_seconds(pid) - cpu < 0.2 * (test_now() - started),
			      "the daemon used %.2f s of CPU in %.2f s with its other policy stopped",
			      fx_cpu_seconds(pid) - cpu, test_now() - started);
	}
	fx_assert_chain_intact(primary);
	fx_stop_daemon(pid);
	PQfinish(standby);
	harness("standby-stop");
	free(sql);
	free(text);
	free(conf);
	free(log);
	PQfinish(primary);
}
END_TEST

/* The chain head the daemon logged for seq SEQ of POLICY, as "SEQ:HASH" (malloc'd), or NULL. */
static char *logged_head(const char *log, const char *policy, long long seq)
{
	FILE *f = fopen(log, "r");
	char line[4096], *found = NULL, *needle = xasprintf("policy %s: chain head %lld:", policy, seq);
	ck_assert_ptr_nonnull(f);
	while (!found && fgets(line, sizeof(line), f)) {
		char *at = strstr(line, needle);
		if (at) {
			at += strlen(needle) - strlen(strrchr(needle, ' ') + 1);
			at[strcspn(at, "\n")] = '\0';
			found = xstrdup(at);
		}
	}
	fclose(f);
	free(needle);
	return found;
}

/*
 * Failover with asynchronous replication: the standby stops receiving WAL
 * (it falls behind), the daemon purges one more record on the primary, the
 * primary crashes and the standby is promoted. The daemon follows it (a
 * multi-host conninfo, target_session_attrs=read-write); the record is back
 * and the chain's tail is gone below the head it committed: it records the
 * gap, purges the record again, and audit verify explains the lost anchor.
 */
START_TEST(test_a_multi_host_conninfo_follows_the_promoted_standby)
{
	PGconn *primary = fx_uploads_db("failover"), *standby;
	const char *sock = getenv("PGHOST");
	char *tail = xasprintf("host=%s,%s port=5432,5433 target_session_attrs=read-write", sock, sock);
	char *conf = config_at("failover", tail);
	char *log = fx_log_path("failover");
	char *lost, *out, *err;
	pid_t pid;
	harness("standby");
	standby = standby_connect("failover");
	pid = fx_start_daemon(conf, log);
	test_exec(primary,
		  "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	ck_assert(fx_wait_row_gone(primary, "virusdesk.uploads", "1", 10));
	/* Replayed on the standby before it falls behind. */
	ck_assert(fx_poll_true(standby, "SELECT count(*) = 1 FROM retention.audit_log", 10));
	/* Record 3 reaches the standby; its purge does not. */
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	test_exec(primary,
		  "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (3, now() - interval '1 hour')");
	ck_assert(fx_poll_true(standby, "SELECT count(*) = 1 FROM virusdesk.uploads WHERE id = 3", 10));
	harness("standby-detach");
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert(fx_wait_row_gone(primary, "virusdesk.uploads", "3", 10));
	fx_wait_for_log(log, "policy virusdesk-scan-uploads: chain head 2:", 5);
	lost = logged_head(log, "virusdesk-scan-uploads", 2);
	ck_assert_ptr_nonnull(lost);
	{
		/*
		 * A reload between the purge and the failover, to a conninfo written
		 * otherwise that reaches the same database: the head committed is
		 * remembered across it.
		 */
		char *reloaded = xasprintf("database = { conninfo = \"dbname=failover user=" TEST_DAEMON_ROLE
					   " %s connect_timeout=10\"; };\n"
					   "daemon = { instance = \"failover-1\"; resync_interval = \"1 second\";"
					   " log_level = \"debug\"; quarantine_retry = \"2 hours\"; };\n"
					   "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";"
					   " source = \"s\"; table = \"virusdesk.uploads\"; key = \"id\";"
					   " clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n",
					   tail);
		long mark = fx_log_mark(log);
		fx_rewrite(conf, reloaded);
		ck_assert_int_eq(kill(pid, SIGHUP), 0);
		fx_wait_for_log_after(log, mark, "configuration reloaded from", 10);
		free(reloaded);
	}
	PQfinish(primary);
	harness("crash");
	fx_wait_for_log(log, "database connection lost", 10);
	harness("promote");
	/* Record 3 came back with the lost transaction: purged again, on the promoted standby. */
	ck_assert_msg(fx_wait_row_gone(standby, "virusdesk.uploads", "3", 30),
		      "the daemon did not follow the promoted standby");
	fx_wait_for_log(
		log,
		"policy virusdesk-scan-uploads: the audit chain's head in the database is at seq 1, behind seq 2"
		" that this daemon committed",
		5);
	{
		char *want = xasprintf("2-2 1 %s", lost);
		test_assert_query_value(standby,
					"SELECT lost_from_seq || '-' || lost_to_seq || ' ' || found_head_seq || ' '"
					" || '2:' || encode(lost_head_hash, 'hex') FROM retention.chain_gaps",
					0, NULL, want);
		free(want);
	}
	ck_assert_int_eq(test_query_ll(standby, "SELECT count(*) FROM retention.audit_log"), 2);
	fx_assert_chain_intact(standby);
	{
		char *line = xasprintf("connected to PostgreSQL at %s port 5433", sock);
		fx_wait_for_log(log, line, 1);
		free(line);
	}
	/* The logged head of the lost batch no longer verifies; verify says why. */
	{
		char *db = xasprintf("failover host=%s port=5433", sock);
		ck_assert_int_eq(fx_ctl(conf, db, &out, &err, "audit", "verify", "--policy", "virusdesk-scan-uploads",
					"--head", lost, NULL),
				 3);
		ck_assert_msg(strstr(err, "audit records seq 2 to 2 were lost (chain gap 1"), "%s", err);
		ck_assert_msg(strstr(err, "is in chain gap 1: lost in that failover"), "%s", err);
		free(out);
		free(err);
		free(db);
	}
	ck_assert(!fx_log_has_after(log, 0, "the server is a standby"));
	fx_stop_daemon(pid);
	PQfinish(standby);
	free(lost);
	free(tail);
	free(conf);
	free(log);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("standby");
	TCase *tc = test_tcase("standby", 120);
	tcase_add_test(tc, test_a_daemon_on_a_standby_purges_nothing_until_promoted);
	tcase_add_test(tc, test_replication_lag_pauses_the_backlog);
	tcase_add_test(tc, test_a_multi_host_conninfo_follows_the_promoted_standby);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
