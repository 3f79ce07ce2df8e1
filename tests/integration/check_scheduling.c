/*
 * When records are purged, against a real server: exactly at the due
 * boundary, across month ends and DST changes, under floods of
 * notifications, without waking early. Each test names the defect of the
 * review of 78f4ad6, or the mutant of the mutation run, it pins.
 *
 * Where "now" must be a chosen instant, the test runs the daemon's own
 * statements (built by the same code) with their one clock,
 * pg_catalog.statement_timestamp(), swapped for a fixed
 * fake.statement_timestamp(); the daemon's statements name the built-in by
 * schema, so nothing but such a test can change what "now" is.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "util.h"

#define REAL_NOW   "pg_catalog.statement_timestamp()"
#define FROZEN_NOW "fake.statement_timestamp()"

/* A connection to DB on which fake.statement_timestamp() is NOW, in zone ZONE. */
static PGconn *frozen_at(PGconn *admin, const char *db, const char *now, const char *zone)
{
	PGconn *conn = test_connect_db(db);
	char *sql = xasprintf("CREATE SCHEMA IF NOT EXISTS fake;"
			      "CREATE OR REPLACE FUNCTION fake.statement_timestamp() RETURNS timestamptz"
			      " LANGUAGE sql STABLE AS $$ SELECT '%s'::timestamptz $$",
			      now);
	test_exec(admin, sql);
	free(sql);
	sql = xasprintf("SET TimeZone = '%s'", zone);
	test_exec(conn, sql);
	free(sql);
	return conn;
}

/* SQL with every reading of the real clock replaced by the frozen one; a statement without one fails the test. */
static char *frozen_statement(const char *sql)
{
	size_t n = 0, len = strlen(REAL_NOW);
	char *out = xstrdup("");
	const char *at;
	while ((at = strstr(sql, REAL_NOW)) != NULL) {
		char *next = xasprintf("%s%.*s%s", out, (int)(at - sql), sql, FROZEN_NOW);
		free(out);
		out = next;
		sql = at + len;
		n++;
	}
	ck_assert_msg(n > 0, "the statement does not read %s", REAL_NOW);
	{
		char *next = xasprintf("%s%s", out, sql);
		free(out);
		out = next;
	}
	return out;
}

/* The keys the policy's lock statement picks as due on CONN, in its order, comma-separated. */
static char *due_keys(PGconn *conn, struct fx_policy *fp)
{
	const char *params[POLICY_N_BASE_PARAMS];
	Oid types[POLICY_N_BASE_PARAMS];
	int n = policy_params(&fp->sql, params, types, NULL, 0, false);
	char *lock = frozen_statement(fp->sql.lock);
	PGresult *res = PQexecParams(conn, lock, n, types, params, NULL, NULL, 0);
	char **keys = NULL, *joined = xstrdup("");
	size_t nk = 0;
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	if (!PQgetisnull(res, 0, LOCK_KEYS))
		keys = policy_text_array_parse(PQgetvalue(res, 0, LOCK_KEYS), &nk);
	for (size_t i = 0; i < nk; i++) {
		char *next = xasprintf("%s%s%s", joined, i ? "," : "", keys[i]);
		free(joined);
		joined = next;
	}
	policy_text_array_free(keys);
	PQclear(res);
	free(lock);
	return joined;
}

static PGconn *clock_table(const char *db, const char *clock_type)
{
	PGconn *conn = fx_database(db);
	char *sql =
		xasprintf("CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c %s); CREATE INDEX ON app.t (c)",
			  clock_type);
	test_exec(conn, sql);
	free(sql);
	fx_grant(conn, "app");
	return conn;
}

/* The plan of STATEMENT as the daemon runs it: prepared, generic, with the base parameters and EXTRA. */
static char *generic_plan(PGconn *conn, struct fx_policy *fp, const char *statement, const char *extra)
{
	const char *params[POLICY_N_BASE_PARAMS + 1];
	Oid types[POLICY_N_BASE_PARAMS + 1];
	int n = policy_params(&fp->sql, params, types, extra ? &extra : NULL, extra ? 1 : 0, false);
	char *args = xstrdup(""), *sql, *plan;
	PGresult *res;
	test_exec(conn, "DEALLOCATE ALL; SET plan_cache_mode = force_generic_plan");
	res = PQprepare(conn, "s", statement, n, types);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	for (int i = 0; i < n; i++) {
		char *lit = params[i] ? PQescapeLiteral(conn, params[i], strlen(params[i])) : NULL;
		char *next = xasprintf("%s%s%s", args, i ? ", " : "", lit ? lit : "NULL");
		PQfreemem(lit);
		free(args);
		args = next;
	}
	sql = xasprintf("EXPLAIN EXECUTE s(%s)", args);
	res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	plan = xstrdup("");
	for (int r = 0; r < PQntuples(res); r++) {
		char *next = xasprintf("%s%s\n", plan, PQgetvalue(res, r, 0));
		free(plan);
		plan = next;
	}
	PQclear(res);
	free(sql);
	free(args);
	return plan;
}

/*
 * F16: anonymized rows keep their clock, so the due queries pass over them
 * in clock order. With set_null columns only, the daemon's predicate needs
 * no parameter, and the partial index operations.md gives serves the
 * generic plans the daemon runs: the anonymized rows are not scanned.
 */
START_TEST(test_a_partial_index_serves_an_anonymize_policy)
{
	PGconn *conn = fx_database("anonindex");
	char *policy = fx_policy("p", "app.t", "id", "c", "1 day",
				 "action = \"anonymize\"; set_null = [ \"email\", \"name\" ];");
	char *conf = fx_config("anonindex", NULL, policy);
	struct fx_policy fp;
	char *plan, *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c timestamptz, email text, name text);"
		  "INSERT INTO app.t SELECT g, now() - interval '30 days' + g * interval '1 second', NULL, NULL"
		  " FROM generate_series(1, 20000) g;"
		  "INSERT INTO app.t SELECT g, now() - interval '2 days', 'x@example.org', 'X'"
		  " FROM generate_series(20001, 20010) g;"
		  "CREATE INDEX t_c_all ON app.t (c);"
		  "CREATE INDEX t_c_to_anonymize ON app.t (c) WHERE email IS NOT NULL OR name IS NOT NULL;"
		  "ANALYZE app.t");
	fx_grant(conn, "app");
	fx_policy_prepare(&fp, conn, conf, "p");
	plan = generic_plan(conn, &fp, fp.sql.lock, NULL);
	ck_assert_msg(strstr(plan, "t_c_to_anonymize") && !strstr(plan, "t_c_all"), "%s", plan);
	free(plan);
	plan = generic_plan(conn, &fp, fp.sql.next_wake, "true");
	ck_assert_msg(strstr(plan, "t_c_to_anonymize") && !strstr(plan, "t_c_all"), "%s", plan);
	free(plan);
	/* --check asks for that index, and only while the table lacks it: one partial on the clock alone is not it. */
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "anonymized rows keep their clock") == NULL, "%s", out);
	free(out);
	free(err);
	test_exec(conn, "DROP INDEX app.t_c_to_anonymize; CREATE INDEX t_c_started ON app.t (c) WHERE c IS NOT NULL");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "CREATE INDEX ON app.t (c) WHERE email IS NOT NULL OR name IS NOT NULL"), "%s", out);
	free(out);
	free(err);
	fx_policy_free(&fp);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* M01: a record due exactly now is due (<=, not <); one a microsecond later is not. */
START_TEST(test_due_boundary_is_exact)
{
	PGconn *conn = clock_table("boundary", "timestamptz");
	char *policy = fx_policy("p", "app.t", "id", "c", "15 minutes", "");
	char *conf = fx_config("boundary", NULL, policy);
	PGconn *frozen = frozen_at(conn, "boundary", "2026-06-01 12:00:00+00", "UTC");
	struct fx_policy fp;
	char *keys;
	test_exec(conn, "INSERT INTO app.t VALUES (1, '2026-06-01 11:45:00+00'), (2, '2026-06-01 11:45:00.000001+00'),"
			" (3, '2026-06-01 11:44:59.999999+00')");
	fx_policy_prepare(&fp, frozen, conf, "p");
	keys = due_keys(frozen, &fp);
	/* In clock order: the earliest first. */
	ck_assert_str_eq(keys, "3,1");
	free(keys);
	fx_policy_free(&fp);
	PQfinish(frozen);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * M02: the index bound's slack. "1 month" from 31 January is 28 February
 * (clamped): that record is due at 18:00 on the 28th although its clock is
 * later than now - 1 month; without the slack it is missed for days.
 */
START_TEST(test_month_end_records_are_not_missed)
{
	PGconn *conn = clock_table("monthend", "timestamptz");
	char *policy = fx_policy("p", "app.t", "id", "c", "1 month", "");
	char *conf = fx_config("monthend", NULL, policy);
	PGconn *frozen = frozen_at(conn, "monthend", "2026-02-28 18:00:00+00", "UTC");
	struct fx_policy fp;
	char *keys;
	test_exec(conn, "INSERT INTO app.t VALUES (1, '2026-01-31 12:00:00+00'), (2, '2026-02-01 12:00:00+00')");
	fx_policy_prepare(&fp, frozen, conf, "p");
	keys = due_keys(frozen, &fp);
	ck_assert_str_eq(keys, "1");
	free(keys);
	fx_policy_free(&fp);
	PQfinish(frozen);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D15: a timestamp clock with an hour-based retain used wall-clock
 * arithmetic: in the autumn hour a record due by elapsed time was purged an
 * hour late, and explain showed wall-clock due times. The clock is read in
 * the session's zone once, everywhere.
 */
START_TEST(test_timestamp_clocks_use_elapsed_hours)
{
	PGconn *conn = clock_table("tsclock", "timestamp");
	char *policy = fx_policy("p", "app.t", "id", "c", "2 hours", "");
	char *conf = fx_config("tsclock", NULL, policy);
	PGconn *autumn = frozen_at(conn, "tsclock", "2026-10-25 02:00:00+00", "Europe/Berlin");
	struct fx_policy fp;
	char *keys, *due;
	/* 01:30 CEST is 23:30Z: 2 hours on is 01:30Z, due before 02:00Z. Wall clock says 03:30 CET, 02:30Z. */
	test_exec(conn, "INSERT INTO app.t VALUES (1, '2026-10-25 01:30:00')");
	fx_policy_prepare(&fp, autumn, conf, "p");
	keys = due_keys(autumn, &fp);
	ck_assert_msg(strcmp(keys, "1") == 0, "a record due by elapsed time was not picked (keys: %s)", keys);
	free(keys);
	fx_policy_free(&fp);
	PQfinish(autumn);
	/* Spring: 01:30 CET is 00:30Z, due at 02:30Z (04:30 CEST); wall clock would say 03:30 CEST, 01:30Z. */
	test_exec(conn, "TRUNCATE app.t; INSERT INTO app.t VALUES (2, '2026-03-29 01:30:00')");
	{
		PGconn *spring = frozen_at(conn, "tsclock", "2026-03-29 02:00:00+00", "Europe/Berlin");
		fx_policy_prepare(&fp, spring, conf, "p");
		keys = due_keys(spring, &fp);
		ck_assert_msg(strcmp(keys, "") == 0, "a record 30 minutes short of 2 elapsed hours was picked (%s)",
			      keys);
		free(keys);
		due = test_query_value(
			spring, "SELECT c::timestamptz + interval '2 hours' = '2026-03-29 02:30:00+00' FROM app.t", 0,
			NULL);
		ck_assert_str_eq(due, "t");
		free(due);
		fx_policy_free(&fp);
		PQfinish(spring);
	}
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * D14: in the DST fall-back hour due times are not monotone in the clock:
 * of clocks 00:50Z (02:50 CEST) and 01:10Z (02:10 CET), "1 year 1 day" makes
 * the second due at 02:10 CEST, 40 minutes before the first (02:50 CEST).
 * The daemon woke for the first.
 */
START_TEST(test_next_due_across_the_fall_back_hour)
{
	PGconn *conn = clock_table("fallback", "timestamptz");
	char *conf = test_write_file(
		"database = { conninfo = \"dbname=fallback user=" TEST_DAEMON_ROLE "\";"
		" time_zone = \"Europe/Berlin\"; };\n"
		"daemon = { resync_interval = \"1 hour\"; log_level = \"debug\"; };\n"
		"policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"app.t\"; key = \"id\";"
		" clock = \"c\"; retain = \"1 year 1 day\"; } );\n");
	char *log = fx_log_path("fallback");
	char *out, *err;
	pid_t pid;
	test_exec(conn, "INSERT INTO app.t VALUES (1, '2026-10-25 00:50:00+00'), (2, '2026-10-25 01:10:00+00')");
	ck_assert_int_eq(
		fx_ctl(conf, "fallback", &out, &err, "--format", "json", "pending", "--within", "400 days", NULL), 0);
	ck_assert_msg(strstr(out, "\"next_due_at\":\"2027-10-26T02:10:00+02:00\""), "%s", out);
	free(out);
	free(err);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(
		log,
		"policy p: next record due (or hold ending, or quarantined record retried) at 2027-10-26 02:10:00+02",
		10);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * M12: a timer that fires before the due moment finds nothing, asks again
 * and spins until the server's clock catches up; waking at the clock
 * instead of clock + retain (M03b) would purge early and back off. A record
 * due 2 s after start is asked for once and purged in one go.
 */
START_TEST(test_a_due_record_is_asked_for_once_and_purged_once)
{
	PGconn *conn = fx_uploads_db("noearly");
	char *conf = fx_uploads_config("noearly", "15 minutes", "");
	char *log = fx_log_path("noearly");
	char *late;
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (1, now() - interval '15 minutes' + interval '2 seconds')");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 10));
	ck_assert_int_eq(fx_log_count_after(log, 0, "policy virusdesk-scan-uploads: next record due"), 1);
	ck_assert_int_eq(fx_log_count_after(log, 0, "-> purging"), 1);
	late = test_query_value(conn, "SELECT extract(epoch FROM purged_at - due_at) FROM retention.audit_log", 0,
				NULL);
	ck_assert_msg(atof(late) >= 0 && atof(late) < 1, "purged %s s after due", late);
	fx_stop_daemon(pid);
	free(late);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* Sends COUNT notifications a policy's holds changed, each its own transaction, as any role may. */
static void notify_flood(PGconn *conn, int count)
{
	for (int i = 0; i < count; i++)
		test_exec(conn, "NOTIFY retentiond, 'policy:virusdesk-scan-uploads'");
}

/*
 * D9, D1: every notification cancelled the due timer and asked again, so
 * while they kept coming faster than one next-due question took, a due
 * record was never purged, and a reload never applied. Any role can send
 * them. Now asks are debounced and a "due" answer purges at once.
 */
START_TEST(test_notifications_cannot_starve_a_due_record)
{
	PGconn *conn = fx_uploads_db("starve");
	PGconn *stranger;
	char *conf =
		fx_uploads_config("starve", "15 minutes",
				  "exempt = { column = \"purpose\"; values = [ \"vulnerability_monitoring\" ]; };");
	char *log = fx_log_path("starve");
	double deadline;
	long mark;
	char *late;
	pid_t pid;
	/* Exempt rows at the head of the clock index make every next-due question take a while. */
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at, purpose)"
			" SELECT g, now() - interval '2 days' + g * interval '1 ms', 'vulnerability_monitoring'"
			" FROM generate_series(1000, 201000) g; ANALYZE virusdesk.uploads;"
			"CREATE ROLE flooder LOGIN");
	stranger = PQconnectdb("dbname=starve user=flooder");
	ck_assert(PQstatus(stranger) == CONNECTION_OK);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "nothing pending", 20);
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES"
			" (1, now() - interval '15 minutes' + interval '1.5 seconds')");
	deadline = test_now() + 10;
	while (fx_row_exists(conn, "virusdesk.uploads", "1") && test_now() < deadline)
		notify_flood(stranger, 50);
	ck_assert_msg(!fx_row_exists(conn, "virusdesk.uploads", "1"), "a due record starved under notifications");
	late = test_query_value(conn, "SELECT extract(epoch FROM purged_at - due_at) FROM retention.audit_log", 0,
				NULL);
	ck_assert_msg(atof(late) < 1.0, "purged %s s after due, under notifications", late);
	/* A reload under the same flood applies within a second or two, not when the flood stops. */
	mark = fx_log_mark(log);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	deadline = test_now() + 3;
	while (!fx_log_has_after(log, mark, "configuration reloaded") && test_now() < deadline)
		notify_flood(stranger, 50);
	ck_assert_msg(fx_log_has_after(log, mark, "configuration reloaded"), "a reload starved under notifications");
	fx_stop_daemon(pid);
	PQfinish(stranger);
	free(late);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D25: "due records are locked elsewhere" was logged for every purge that
 * found nothing, whatever the cause. It is said when other transactions hold
 * the due rows, and the record is purged once they let go.
 */
START_TEST(test_rows_locked_by_the_application_are_waited_out)
{
	PGconn *conn = fx_uploads_db("applocks");
	PGconn *app = test_connect_db("applocks");
	char *conf = fx_uploads_config("applocks", "15 minutes", "");
	char *log = fx_log_path("applocks");
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	test_exec(app, "BEGIN; SELECT * FROM virusdesk.uploads WHERE id = 1 FOR UPDATE");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "policy virusdesk-scan-uploads: due records are locked by other transactions", 10);
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	test_exec(app, "COMMIT");
	ck_assert_msg(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 40), "not purged after the application let go");
	fx_stop_daemon(pid);
	PQfinish(app);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * D25: a purge that found nothing was reported as "due records are locked
 * elsewhere" whatever the cause, and backed off forever. A record whose
 * DELETE a trigger cancels is locked by nobody: the daemon says what
 * happened to it once, skips it, and settles.
 */
START_TEST(test_a_cancelled_delete_is_not_reported_as_locked)
{
	PGconn *conn = fx_uploads_db("cancelled");
	char *conf = fx_uploads_config("cancelled", "15 minutes", "");
	char *log = fx_log_path("cancelled");
	pid_t pid;
	test_exec(
		conn,
		"CREATE FUNCTION virusdesk.keep() RETURNS trigger LANGUAGE plpgsql AS"
		" $$ BEGIN RETURN NULL; END $$;"
		"CREATE TRIGGER keep BEFORE DELETE ON virusdesk.uploads FOR EACH ROW EXECUTE FUNCTION virusdesk.keep();"
		"INSERT INTO virusdesk.uploads (id, scan_completed_at) VALUES (1, now() - interval '1 hour')");
	pid = fx_start_daemon(conf, log);
	/* It settles until the quarantined record's retry, rather than retrying a record nobody holds. */
	fx_wait_for_log(
		log, "policy virusdesk-scan-uploads: next record due (or hold ending, or quarantined record retried)",
		10);
	test_assert_query_value(
		conn,
		"SELECT attempts || ' ' || (retry_at > now() + interval '59 minutes') FROM retention.quarantine WHERE record_key = '1'",
		0, NULL, "1 true");
	ck_assert(fx_log_has_after(log, 0, "record 1 cannot be purged: it was locked as due, but deleting"));
	ck_assert(!fx_log_has_after(log, 0, "locked elsewhere"));
	ck_assert(!fx_log_has_after(log, 0, "locked by other transactions"));
	ck_assert_int_eq(fx_log_count_after(log, 0, "record 1 cannot be purged"), 1);
	ck_assert(fx_row_exists(conn, "virusdesk.uploads", "1"));
	ck_assert_int_eq(fx_audit_count(conn, NULL, "1"), 0);
	fx_stop_daemon(pid);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* The clock of a row COUNT UNIT (as in milliseconds) after the frozen now, as an integer of UNITS_PER_S a second. */
#define EPOCH_AT(units_per_s, offset)                                                                                  \
	"(extract(epoch FROM fake.statement_timestamp()) * " units_per_s ")::bigint + (" offset ")"

/*
 * Integer clocks of each unit: a record exactly due is due, one a unit later
 * is not; a count beyond the timestamps PostgreSQL holds reads as long ago
 * (due) or never (not due) and fails no statement; the lock statement's
 * generic plan searches the clock's btree index.
 */
START_TEST(test_epoch_clocks_are_read_in_their_unit)
{
	static const struct {
		const char *unit, *per_s, *type;
	} units[] = {
		{"seconds", "1", "integer"}, {"milliseconds", "1000", "bigint"}, {"microseconds", "1000000", "bigint"}};
	for (size_t i = 0; i < sizeof(units) / sizeof(*units); i++) {
		char *db = xasprintf("epoch%zu", i);
		PGconn *conn = clock_table(db, units[i].type);
		char *extra = xasprintf("clock_unit = \"%s\";", units[i].unit);
		char *policy = fx_policy("p", "app.t", "id", "c", "1 day", extra);
		char *conf = fx_config(db, NULL, policy);
		PGconn *frozen = frozen_at(conn, db, "2026-06-01 12:00:00+00", "Europe/Berlin");
		const char *huge = strcmp(units[i].type, "integer") == 0 ? "2147483647" : "9223372036854775807";
		const char *tiny = strcmp(units[i].type, "integer") == 0 ? "-2147483648" : "-9223372036854775808";
		struct fx_policy fp;
		char *sql, *keys, *plan;
		sql = xasprintf(
			"INSERT INTO app.t VALUES (1, " EPOCH_AT("%s", "-86400::bigint * %s") "), (2, " EPOCH_AT(
				"%s",
				"-86400::bigint * %s + 1") "), (3, " EPOCH_AT("%s",
									      "-86400::bigint * %s - 1") "), (4, %s), (5, %s);"
													 "INSERT INTO app.t SELECT g, " EPOCH_AT(
														 "%s",
														 "g") " FROM generate_series(10, 20000) g;"
														      "ANALYZE app.t",
			units[i].per_s, units[i].per_s, units[i].per_s, units[i].per_s, units[i].per_s, units[i].per_s,
			tiny, huge, units[i].per_s);
		test_exec(frozen, sql);
		free(sql);
		fx_policy_prepare(&fp, frozen, conf, "p");
		keys = due_keys(frozen, &fp);
		/* A 32-bit count of seconds ends in 2038: its largest is a future record, not due. */
		ck_assert_msg(strcmp(keys, "4,3,1") == 0, "%s: due %s", units[i].unit, keys);
		free(keys);
		if (strcmp(units[i].unit, "milliseconds") == 0) {
			/* A clock a day short of the last timestamp: plus its retain it would be past it. */
			sql = xasprintf("INSERT INTO app.t VALUES (6, (9224318016000 - 86400)::bigint * %s)",
					units[i].per_s);
			test_exec(frozen, sql);
			free(sql);
			keys = due_keys(frozen, &fp);
			ck_assert_msg(strcmp(keys, "4,3,1") == 0, "%s: due %s", units[i].unit, keys);
			free(keys);
			/* Read exactly, far beyond what a float8 of microseconds holds. */
			test_exec(frozen, "INSERT INTO app.t VALUES (7, 9120905855999999)");
			{
				char *out, *err;
				ck_assert_int_eq(fx_ctl(conf, db, &out, &err, "--format", "json", "explain", "--policy",
							"p", "--key", "7", NULL),
						 0);
				ck_assert_msg(strstr(out, "\"clock_at\":\"290999-12-31T23:59:59.999+00:00\""), "%s%s",
					      out, err);
				free(out);
				free(err);
			}
		}
		test_assert_query_value(frozen, "SELECT extract(epoch FROM fake.statement_timestamp())::text", 0, NULL,
					"1780315200.000000");
		plan = generic_plan(frozen, &fp, fp.sql.lock, NULL);
		ck_assert_msg(strstr(plan, "Index Scan using t_c_idx") && !strstr(plan, "Seq Scan"), "%s: %s",
			      units[i].unit, plan);
		free(plan);
		plan = generic_plan(frozen, &fp, fp.sql.next_wake, "true");
		ck_assert_msg(strstr(plan, "t_c_idx") && !strstr(plan, "Seq Scan on t "), "%s: %s", units[i].unit,
			      plan);
		free(plan);
		fx_policy_free(&fp);
		PQfinish(frozen);
		free(extra);
		free(policy);
		free(conf);
		free(db);
		PQfinish(conn);
	}
}
END_TEST

/*
 * A date clock is the midnight that starts the day, in database.time_zone:
 * 28 March plus "2 days" is due at midnight on 30 March in Berlin, 22:00Z
 * after the spring-forward night, not a microsecond before; the lock
 * statement's generic plan searches the date's index.
 */
START_TEST(test_date_clocks_start_at_midnight_in_the_zone)
{
	PGconn *conn = clock_table("dateclock", "date");
	char *policy = fx_policy("p", "app.t", "id", "c", "2 days", "");
	char *conf = fx_config("dateclock", NULL, policy);
	PGconn *before, *at;
	struct fx_policy fp;
	char *keys, *plan;
	test_exec(conn, "INSERT INTO app.t VALUES (1, '2026-03-28'), (2, '2026-03-29');"
			"INSERT INTO app.t SELECT g, date '2026-04-01' + g FROM generate_series(10, 20000) g;"
			"ANALYZE app.t");
	before = frozen_at(conn, "dateclock", "2026-03-29 21:59:59.999999+00", "Europe/Berlin");
	fx_policy_prepare(&fp, before, conf, "p");
	keys = due_keys(before, &fp);
	ck_assert_msg(strcmp(keys, "") == 0, "due a microsecond before midnight in Berlin: %s", keys);
	free(keys);
	plan = generic_plan(before, &fp, fp.sql.lock, NULL);
	ck_assert_msg(strstr(plan, "Index Scan using t_c_idx") && !strstr(plan, "Seq Scan"), "%s", plan);
	free(plan);
	fx_policy_free(&fp);
	PQfinish(before);
	at = frozen_at(conn, "dateclock", "2026-03-29 22:00:00+00", "Europe/Berlin");
	fx_policy_prepare(&fp, at, conf, "p");
	keys = due_keys(at, &fp);
	ck_assert_msg(strcmp(keys, "1") == 0, "not due at midnight in Berlin: %s", keys);
	free(keys);
	/* A date no timestamp holds reads as never due; -infinity is long overdue, and pending says so. */
	test_exec(conn, "INSERT INTO app.t VALUES (3, '300000-01-01'), (4, '-infinity')");
	keys = due_keys(at, &fp);
	ck_assert_msg(strcmp(keys, "4,1") == 0, "due: %s", keys);
	free(keys);
	{
		char *out, *err;
		ck_assert_int_eq(fx_ctl(conf, "dateclock", &out, &err, "pending", NULL), 0);
		ck_assert_msg(strstr(out, "-infinity"), "%s%s", out, err);
		free(out);
		free(err);
		/* The never-due date first in clock order: no next due record, and no error. */
		test_exec(conn, "DELETE FROM app.t WHERE id <> 3");
		ck_assert_int_eq(fx_ctl(conf, "dateclock", &out, &err, "--format", "csv", "pending", NULL), 0);
		free(out);
		free(err);
	}
	fx_policy_free(&fp);
	PQfinish(at);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * An expiry column is its own deadline (retain "0 seconds"); an integer
 * clock of epoch milliseconds is purged on time by the running daemon: each
 * record less than a second after it is due, none before, with due and clock
 * times in its audit row read in the unit.
 */
START_TEST(test_expiry_and_epoch_clocks_are_purged_on_time)
{
	PGconn *conn = fx_database("expiry");
	char *expiry = fx_policy("tokens", "app.tokens", "id", "valid_until", "0 seconds", "");
	char *epoch =
		fx_policy("visits", "app.visits", "id", "last_seen_ms", "3 seconds", "clock_unit = \"milliseconds\";");
	char *policies = xasprintf("%s, %s", expiry, epoch);
	char *conf = fx_config("expiry", NULL, policies);
	char *log = fx_log_path("expiry");
	pid_t pid;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.tokens (id int PRIMARY KEY, valid_until timestamptz);"
		  "CREATE TABLE app.visits (id int PRIMARY KEY, last_seen_ms bigint);"
		  "CREATE INDEX ON app.tokens (valid_until); CREATE INDEX ON app.visits (last_seen_ms);"
		  "INSERT INTO app.tokens VALUES (1, now() + interval '2 seconds'), (2, now() + interval '1 hour');"
		  "INSERT INTO app.visits VALUES (1, (extract(epoch FROM now()) * 1000)::bigint - 1000),"
		  " (2, (extract(epoch FROM now()) * 1000)::bigint + 3600000)");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 2 FROM retention.audit_log", 15));
	test_assert_query_value(
		conn,
		"SELECT string_agg(policy || ':' || record_key, ',' ORDER BY policy) FROM"
		" retention.audit_log WHERE purged_at >= due_at AND purged_at < due_at + interval '1 second'",
		0, NULL, "tokens:1,visits:1");
	/* The audit row's clock is the count read in its unit: three seconds before its due time. */
	test_assert_query_value(conn,
				"SELECT due_at - clock_at = interval '3 seconds' FROM retention.audit_log"
				" WHERE policy = 'visits'",
				0, NULL, "t");
	test_assert_query_value(conn, "SELECT count(*) FROM app.tokens", 0, NULL, "1");
	test_assert_query_value(conn, "SELECT count(*) FROM app.visits", 0, NULL, "1");
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	free(expiry);
	free(epoch);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* A clock of a type no clock has, or an integer without its unit, is refused by --check, naming the table and column. */
START_TEST(test_clocks_that_cannot_be_read_are_refused)
{
	PGconn *conn = fx_database("badclock");
	char *text_clock = fx_policy("text-clock", "app.t", "id", "c_text", "1 day", "");
	char *no_unit = fx_policy("no-unit", "app.t", "id", "c_ms", "1 day", "");
	char *stray_unit = fx_policy("stray-unit", "app.t", "id", "c_at", "1 day", "clock_unit = \"seconds\";");
	char *fine = fx_policy("fine", "app.t", "id", "c_ms", "1 day", "clock_unit = \"milliseconds\";");
	char *policies = xasprintf("%s, %s, %s, %s", text_clock, no_unit, stray_unit, fine);
	char *conf = fx_config("badclock", NULL, policies);
	char *out, *err;
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, c_text text, c_ms bigint,"
			" c_at timestamptz)");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out, "policy text-clock: error: clock column c_text is text: a clock is a timestamp"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy no-unit: error: clock column c_ms is bigint: clock_unit says what it counts"),
		      "%s", out);
	ck_assert_msg(strstr(out, "policy stray-unit: error: clock_unit is seconds, but clock column c_at is timestamp"
				  " with time zone, not an integer"),
		      "%s", out);
	ck_assert_msg(!strstr(out, "policy fine: error"), "%s", out);
	free(out);
	free(err);
	free(text_clock);
	free(no_unit);
	free(stray_unit);
	free(fine);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* Policy p over app.media with the clock CLOCK, as the configuration writes it. */
static char *media_policy(const char *clock)
{
	return xasprintf("{ name = \"p\"; service = \"s\"; source = \"s\"; table = \"app.media\"; key = \"id\";"
			 " clock = %s; retain = \"1 day\"; }",
			 clock);
}

/*
 * "Last access, or creation if never accessed": a clock of several columns
 * is the first that is not NULL; the generic plans of the lock and the next
 * wake search an index on their COALESCE, which --check asks for while the
 * table lacks it; columns of different types are refused.
 */
START_TEST(test_a_clock_of_several_columns_is_the_first_set)
{
	PGconn *conn = fx_database("coalesced");
	char *policy = media_policy("[ \"last_access\", \"created\" ]");
	char *conf, *keys, *plan, *out, *err;
	PGconn *frozen;
	struct fx_policy fp;
	conf = fx_config("coalesced", NULL, policy);
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.media (id int PRIMARY KEY, last_access timestamptz, created timestamptz NOT NULL,"
		" created_on date);"
		"INSERT INTO app.media VALUES"
		" (1, '2026-05-29 12:00:00+00', '2026-05-20 12:00:00+00'),"
		" (2, '2026-06-01 11:00:00+00', '2026-05-20 12:00:00+00'),"
		" (3, NULL, '2026-05-30 12:00:00+00'), (4, NULL, '2026-06-01 11:00:00+00');"
		"INSERT INTO app.media SELECT g, NULL, '2026-06-02 00:00:00+00'::timestamptz + g * interval '1 minute'"
		" FROM generate_series(10, 20000) g;"
		"ANALYZE app.media");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(strstr(out,
			     "warning: no index leads with COALESCE(last_access, created), the clock: every due query"
			     " scans the table (as the table's owner: CREATE INDEX ON app.media ((COALESCE(last_access,"
			     " created))))"),
		      "%s%s", out, err);
	free(out);
	free(err);
	test_exec(conn, "CREATE INDEX media_clock ON app.media ((COALESCE(last_access, created)))");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(!strstr(out, "no index leads with"), "%s", out);
	free(out);
	free(err);
	frozen = frozen_at(conn, "coalesced", "2026-06-01 12:00:00+00", "UTC");
	fx_policy_prepare(&fp, frozen, conf, "p");
	keys = due_keys(frozen, &fp);
	ck_assert_msg(strcmp(keys, "1,3") == 0, "due: %s", keys);
	free(keys);
	plan = generic_plan(frozen, &fp, fp.sql.lock, NULL);
	ck_assert_msg(strstr(plan, "media_clock") && !strstr(plan, "Seq Scan"), "%s", plan);
	free(plan);
	plan = generic_plan(frozen, &fp, fp.sql.next_wake, "true");
	ck_assert_msg(strstr(plan, "media_clock") && !strstr(plan, "Seq Scan on media"), "%s", plan);
	free(plan);
	fx_policy_free(&fp);
	PQfinish(frozen);
	free(conf);
	free(policy);
	/* A timestamptz and a date have no one order: refused, naming both. */
	policy = media_policy("[ \"last_access\", \"created_on\" ]");
	conf = fx_config("coalesced", NULL, policy);
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(strstr(out,
			     "error: the clock columns last_access, created_on are of types timestamp with time zone,"
			     " date: the clock is the first that is not NULL, and they must be of one type"),
		      "%s%s", out, err);
	free(out);
	free(err);
	free(conf);
	free(policy);
	PQfinish(conn);
}
END_TEST

/*
 * Tables that do not fit cleanly: a table without a unique key, and a key
 * that may be NULL, are refused by --check naming the table's column; a key
 * unique through CREATE UNIQUE INDEX (no constraint) is a key; a partial
 * unique index is not.
 */
START_TEST(test_keys_a_record_can_be_named_by)
{
	PGconn *conn = fx_database("keys");
	char *keyless = fx_policy("keyless", "app.visits", "user_id", "day", "1 day", "");
	char *nullable = fx_policy("nullable", "app.media", "media_id", "created", "1 day", "");
	char *indexed = fx_policy("indexed", "app.devices", "id", "c", "1 day", "");
	char *partial = fx_policy("partial", "app.tokens", "token", "c", "1 day", "");
	/* A composite key needs a unique index on exactly its columns: one on a part of them, or more, is not it. */
	const char *pairs = "{ name = \"pairs\"; service = \"s\"; source = \"s\"; table = \"app.pairs\";"
			    " key = [ \"a\", \"b\" ]; clock = \"c\"; retain = \"1 day\"; },"
			    " { name = \"triples\"; service = \"s\"; source = \"s\"; table = \"app.triples\";"
			    " key = [ \"b\", \"a\", \"d\" ]; clock = \"c\"; retain = \"1 day\"; }";
	char *policies = xasprintf("%s, %s, %s, %s, %s", keyless, nullable, indexed, partial, pairs);
	char *conf = fx_config("keys", NULL, policies);
	char *out, *err;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.visits (user_id int NOT NULL, day date);"
		"CREATE TABLE app.media (media_id text UNIQUE, created timestamptz);"
		"CREATE TABLE app.devices (id int NOT NULL, c timestamptz); CREATE UNIQUE INDEX ON app.devices (id);"
		"CREATE TABLE app.tokens (token text NOT NULL, c timestamptz, live bool);"
		"CREATE UNIQUE INDEX ON app.tokens (token) WHERE live;"
		"CREATE TABLE app.pairs (a int NOT NULL, b int NOT NULL, c timestamptz, UNIQUE (a, b, c), UNIQUE (a));"
		"CREATE TABLE app.triples (a int NOT NULL, b int NOT NULL, d int, c timestamptz, UNIQUE (a, d, b))");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 1);
	ck_assert_msg(
		strstr(out, "policy keyless: error: key column user_id has no unique index or primary key of its own"),
		"%s", out);
	ck_assert_msg(strstr(out, "policy nullable: error: key column media_id may be NULL: a record needs a key"),
		      "%s", out);
	ck_assert_msg(!strstr(out, "policy indexed: error"), "%s", out);
	ck_assert_msg(
		strstr(out, "policy partial: error: key column token has no unique index or primary key of its own"),
		"%s", out);
	ck_assert_msg(strstr(out, "policy pairs: error: key columns a, b have no unique index or primary key on"
				  " exactly them"),
		      "%s", out);
	/* Its own columns, in another order, are its index; each must still be NOT NULL. */
	ck_assert_msg(strstr(out, "policy triples: error: key column d may be NULL: a record needs a key"), "%s", out);
	ck_assert_msg(!strstr(out, "policy triples: error: key columns"), "%s", out);
	free(out);
	free(err);
	free(keyless);
	free(nullable);
	free(indexed);
	free(partial);
	free(policies);
	free(conf);
	PQfinish(conn);
}
END_TEST

/*
 * Per-record durations: a record's own duration (an integer of the clock's
 * unit, or an interval) overrides retain where it is set. A later clock with
 * a shorter duration falls due first, and is purged within a second of its
 * due time, never before; a negative duration is none, one beyond bounds
 * or with fields of two signs never due (and fails no statement); the next-due statement reaches each duration's first record
 * through the index on (duration, clock).
 */
START_TEST(test_records_with_their_own_durations_fall_due_by_them)
{
	PGconn *conn = fx_database("lifetimes");
	char *msgs = fx_policy("msgs", "app.msgs", "id", "ts", "30 days",
			       "clock_unit = \"milliseconds\"; retain_column = \"lifetime\";");
	char *tokens = fx_policy("tokens", "app.tokens", "id", "created", "1 year", "retain_column = \"max_life\";");
	char *policies = xasprintf("%s, %s", msgs, tokens);
	char *conf = fx_config("lifetimes", NULL, policies);
	char *log = fx_log_path("lifetimes"), *out, *err, *plan, *due;
	struct fx_policy fp;
	pid_t pid;
	test_exec(
		conn,
		"CREATE SCHEMA app;"
		"CREATE TABLE app.msgs (id int PRIMARY KEY, ts bigint, lifetime bigint);"
		"CREATE INDEX ON app.msgs (ts); CREATE INDEX ON app.msgs (lifetime, ts);"
		"CREATE TABLE app.tokens (id int PRIMARY KEY, created timestamptz, max_life interval);"
		"CREATE INDEX ON app.tokens (created); CREATE INDEX ON app.tokens (max_life, created);"
		"CREATE FUNCTION app.ms(interval) RETURNS bigint LANGUAGE sql AS"
		" $$ SELECT (extract(epoch FROM now() - $1) * 1000)::bigint $$;"
		"INSERT INTO app.msgs VALUES"
		" (1, app.ms('1 hour'), 86400000),"               /* its own day: due in 23 hours */
		" (2, app.ms('2 days'), NULL),"                   /* retain's 30 days */
		" (3, app.ms('10 minutes'), 600000 + 3000),"      /* the latest clock, due first: in 3 seconds */
		" (4, app.ms('1 day'), -5),"                      /* negative: due at its clock */
		" (5, app.ms('3650 days'), 9000000000000000000)," /* beyond 1000 years: never */
		" (6, app.ms('31 days'), NULL);"                  /* retain's 30 days: overdue */
		"INSERT INTO app.tokens VALUES"
		" (1, now() - interval '1 day', interval '1 day 3 seconds'),"
		" (2, now() - interval '6 months', NULL),"
		" (3, now() - interval '2 hours', interval '1 hour'),"
		" (4, now() - interval '1 day', interval '1 month'),"
		" (5, now() - interval '1 day', interval '1000000 days'),"
		/* Fields of two signs: compared as 1000 days, on the calendar -4243; and one at the first timestamp. */
		" (6, now() + interval '1 day', interval '-1000 years 361000 days'),"
		" (7, '4714-11-24 00:00:00+00 BC', interval '-1 day 25 hours')");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_check(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_msg(!strstr(out, "no index on"), "%s", out);
	free(out);
	free(err);
	/* Each duration's first record through the (duration, clock) index, not a scan of the table. */
	fx_policy_prepare(&fp, conn, conf, "msgs");
	plan = generic_plan(conn, &fp, fp.sql.next_wake, "false");
	ck_assert_msg(strstr(plan, "msgs_lifetime_ts_idx") && !strstr(plan, "Seq Scan on msgs"), "%s", plan);
	free(plan);
	fx_policy_free(&fp);

	pid = fx_start_daemon(conf, log);
	/* At once the overdue ones; three seconds later the two short durations of later clocks. */
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 5 FROM retention.audit_log", 20));
	test_assert_query_value(conn,
				"SELECT string_agg(policy || ':' || record_key, ',' ORDER BY policy, record_key)"
				" FROM retention.audit_log",
				0, NULL, "msgs:3,msgs:4,msgs:6,tokens:1,tokens:3");
	test_assert_query_value(conn, "SELECT count(*) FROM retention.audit_log WHERE purged_at < due_at", 0, NULL,
				"0");
	/* The later clocks, by their own short durations: within a second of due, and audited with that due time. */
	test_assert_query_value(conn,
				"SELECT string_agg(policy || ':' || record_key, ',' ORDER BY policy) FROM"
				" retention.audit_log WHERE purged_at < due_at + interval '1 second'",
				0, NULL, "msgs:3,tokens:1");
	test_assert_query_value(
		conn, "SELECT due_at - clock_at FROM retention.audit_log WHERE policy = 'msgs' AND record_key = '3'", 0,
		NULL, "00:10:03");
	test_assert_query_value(
		conn, "SELECT due_at = clock_at FROM retention.audit_log WHERE policy = 'msgs' AND record_key = '4'", 0,
		NULL, "t");
	test_assert_query_value(conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM app.msgs", 0, NULL, "1,2,5");
	test_assert_query_value(conn, "SELECT string_agg(id::text, ',' ORDER BY id) FROM app.tokens", 0, NULL,
				"2,4,5,6,7");
	fx_assert_chain_intact(conn);
	fx_stop_daemon(pid);
	/* retentionctl reads the same durations. */
	ck_assert_int_eq(fx_ctl(conf, "lifetimes", &out, &err, "--format", "json", "explain", "--policy", "tokens",
				"--key", "4", NULL),
			 0);
	due = test_query_value(conn, "SELECT '\"due_at\":' || to_json(created + max_life) FROM app.tokens WHERE id = 4",
			       0, NULL);
	ck_assert_msg(strstr(out, "\"status\":\"pending\"") && strstr(out, due), "%s%s", out, err);
	free(due);
	free(out);
	free(err);
	free(msgs);
	free(tokens);
	free(policies);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scheduling");
	TCase *tc = test_tcase("scheduling", 120);
	tcase_add_test(tc, test_due_boundary_is_exact);
	tcase_add_test(tc, test_month_end_records_are_not_missed);
	tcase_add_test(tc, test_timestamp_clocks_use_elapsed_hours);
	tcase_add_test(tc, test_next_due_across_the_fall_back_hour);
	tcase_add_test(tc, test_a_due_record_is_asked_for_once_and_purged_once);
	tcase_add_test(tc, test_notifications_cannot_starve_a_due_record);
	tcase_add_test(tc, test_rows_locked_by_the_application_are_waited_out);
	tcase_add_test(tc, test_a_cancelled_delete_is_not_reported_as_locked);
	tcase_add_test(tc, test_a_partial_index_serves_an_anonymize_policy);
	tcase_add_test(tc, test_epoch_clocks_are_read_in_their_unit);
	tcase_add_test(tc, test_date_clocks_start_at_midnight_in_the_zone);
	tcase_add_test(tc, test_expiry_and_epoch_clocks_are_purged_on_time);
	tcase_add_test(tc, test_clocks_that_cannot_be_read_are_refused);
	tcase_add_test(tc, test_a_clock_of_several_columns_is_the_first_set);
	tcase_add_test(tc, test_keys_a_record_can_be_named_by);
	tcase_add_test(tc, test_records_with_their_own_durations_fall_due_by_them);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
