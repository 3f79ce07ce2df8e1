/*
 * retentionctl against known data: the exact JSON of pending, explain and
 * audit, holds, exit codes, and audit verify against each kind of tampering.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "schema.h"
#include "testutil.h"
#include "util.h"

static char *conf_path;
/* The CLI logs in as the test server's superuser, as an operator with the documented grants would get through. */
static char *ctl_conninfo;

/*
 * Policy "vd" on virusdesk.uploads (15 minutes, exempt purpose, subject
 * account_id). Key 6 was purged; then 1 overdue, 2 overdue but held by key,
 * 3 exempt, 4 no clock, 5 due in 2100, 7 overdue but held by subject.
 */
static PGconn *known_data(const char *db)
{
	PGconn *conn = test_fresh_database(db);
	char *err = NULL, *text, *out, *errout;
	char *bin = xasprintf("%s/src/retentiond", test_builddir());
	char *argv[5];
	ck_assert_msg(schema_migrate(conn, &err) == schema_n_steps, "migrate: %s", err);
	test_daemon_role(conn, db, NULL);
	test_exec(conn, "CREATE SCHEMA virusdesk;"
			"CREATE TABLE virusdesk.uploads (id bigint PRIMARY KEY, account_id int,"
			" scan_completed_at timestamptz, purpose text);"
			"CREATE INDEX ON virusdesk.uploads (scan_completed_at);"
			"INSERT INTO virusdesk.uploads VALUES (6, 60, '2000-01-01 00:00:00+00', NULL);"
			"GRANT USAGE ON SCHEMA virusdesk TO " TEST_DAEMON_ROLE ";"
			"GRANT SELECT, DELETE, UPDATE ON virusdesk.uploads TO " TEST_DAEMON_ROLE);
	free(ctl_conninfo);
	ctl_conninfo = xasprintf("dbname=%s", db);
	text = xasprintf("database = { conninfo = \"dbname=%s user=" TEST_DAEMON_ROLE "\"; time_zone = \"UTC\"; };\n"
			 "daemon = { instance = \"ctl-test\"; };\n"
			 "policies = ( { name = \"vd\"; service = \"VirusDesk\"; source = \"rule 5\";\n"
			 "  table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";\n"
			 "  subject = \"account_id\"; retain = \"15 minutes\";\n"
			 "  exempt = { column = \"purpose\"; values = [ \"vulnerability_monitoring\" ]; }; } );\n",
			 db);
	conf_path = test_write_file(text);
	argv[0] = bin;
	argv[1] = "-c";
	argv[2] = conf_path;
	argv[3] = "--once";
	argv[4] = NULL;
	ck_assert_int_eq(test_run(argv, &out, &errout), 0);
	free(out);
	free(errout);
	test_exec(conn, "INSERT INTO virusdesk.uploads VALUES"
			" (1, 10, '2000-01-01 00:00:00+00', NULL),"
			" (2, 20, '2000-01-01 00:01:00+00', NULL),"
			" (3, 30, '2000-01-01 00:02:00+00', 'vulnerability_monitoring'),"
			" (4, 40, NULL, NULL),"
			" (5, 50, '2100-01-01 00:00:00+00', NULL),"
			" (7, 70, '2000-01-01 00:03:00+00', NULL)");
	free(text);
	free(bin);
	return conn;
}

static void teardown(void)
{
	if (conf_path) {
		unlink(conf_path);
		free(conf_path);
		conf_path = NULL;
	}
}

/* Runs retentionctl -c CONF followed by the NULL-terminated arguments; returns its exit status. */
static int ctl_run(char **out, char **err, ...)
{
	char *argv[32];
	int argc = 0, status;
	va_list ap;
	const char *arg;
	argv[argc++] = xasprintf("%s/src/retentionctl", test_builddir());
	argv[argc++] = "-c";
	argv[argc++] = conf_path;
	argv[argc++] = "-d";
	argv[argc++] = ctl_conninfo;
	va_start(ap, err);
	while ((arg = va_arg(ap, const char *)) != NULL && argc < 31)
		argv[argc++] = (char *)arg;
	va_end(ap);
	argv[argc] = NULL;
	status = test_run(argv, out, err);
	free(argv[0]);
	return status;
}

#define CTL(out, err, ...) ctl_run(out, err, __VA_ARGS__, NULL)

/* retentionctl --format json ARGS must succeed and print exactly WANT. */
#define EXPECT_JSON(want, ...)                                                                                         \
	do {                                                                                                           \
		char *out_, *err_;                                                                                     \
		int status_ = CTL(&out_, &err_, "--format", "json", __VA_ARGS__);                                      \
		ck_assert_msg(status_ == 0, "exit %d: %s", status_, err_);                                             \
		ck_assert_str_eq(out_, want);                                                                          \
		free(out_);                                                                                            \
		free(err_);                                                                                            \
	} while (0)

START_TEST(test_pending_json)
{
	PGconn *conn = known_data("ctl_pending");
	/* 1, 2 and 7 overdue; 3 exempt and 4 unclocked are never pending; 5 is not due within a day. */
	EXPECT_JSON(
		"[\n  {\"policy\":\"vd\",\"overdue\":3,\"due_within\":0,"
		"\"next_due_at\":\"2000-01-01T00:15:00+00:00\",\"held\":0,\"quarantined\":0,\"referenced\":0,\"blocked\":0}\n]\n",
		"pending");
	/* Record 1 is quarantined: still overdue, and counted as quarantined; next_due_at is the next purgeable one. */
	test_exec(
		conn,
		"SELECT retention.place_hold('vd', '2', NULL, 'legal', NULL);"
		"SELECT retention.place_hold('vd', NULL, '70', 'restriction', NULL);"
		"SELECT retention.quarantine_record('vd', '1', 'bigint', 'e', '1 hour', 'i', 'virusdesk.uploads.id')");
	EXPECT_JSON(
		"[\n  {\"policy\":\"vd\",\"overdue\":1,\"due_within\":1,"
		"\"next_due_at\":\"2100-01-01T00:15:00+00:00\",\"held\":2,\"quarantined\":1,\"referenced\":0,\"blocked\":0}\n]\n",
		"pending", "--within", "200 years");
	/* A row that restricts its deletion refers to record 1: kept where the policy means it to be, not overdue. */
	test_exec(conn, "CREATE TABLE virusdesk.reports (id int PRIMARY KEY,"
			" upload bigint REFERENCES virusdesk.uploads ON DELETE RESTRICT);"
			"INSERT INTO virusdesk.reports VALUES (1, 1)");
	EXPECT_JSON(
		"[\n  {\"policy\":\"vd\",\"overdue\":0,\"due_within\":1,"
		"\"next_due_at\":\"2100-01-01T00:15:00+00:00\",\"held\":2,\"quarantined\":0,\"referenced\":1,\"blocked\":0}\n]\n",
		"pending", "--within", "200 years");
	test_exec(conn, "DROP TABLE virusdesk.reports");
	EXPECT_JSON(
		"[\n"
		"  {\"policy\":\"vd\",\"key\":\"1\",\"clock_at\":\"2000-01-01T00:00:00+00:00\",\"due_at\":\"2000-01-01T00:15:00+00:00\",\"held\":false},\n"
		"  {\"policy\":\"vd\",\"key\":\"2\",\"clock_at\":\"2000-01-01T00:01:00+00:00\",\"due_at\":\"2000-01-01T00:16:00+00:00\",\"held\":true},\n"
		"  {\"policy\":\"vd\",\"key\":\"7\",\"clock_at\":\"2000-01-01T00:03:00+00:00\",\"due_at\":\"2000-01-01T00:18:00+00:00\",\"held\":true},\n"
		"  {\"policy\":\"vd\",\"key\":\"5\",\"clock_at\":\"2100-01-01T00:00:00+00:00\",\"due_at\":\"2100-01-01T00:15:00+00:00\",\"held\":false}\n"
		"]\n",
		"pending", "--records", "--within", "200 years");
	EXPECT_JSON(
		"[\n"
		"  {\"policy\":\"vd\",\"key\":\"1\",\"clock_at\":\"2000-01-01T00:00:00+00:00\",\"due_at\":\"2000-01-01T00:15:00+00:00\",\"held\":false}\n"
		"]\n",
		"pending", "--records", "--limit", "1");
	PQfinish(conn);
}
END_TEST

START_TEST(test_pending_csv_and_usage_errors)
{
	PGconn *conn = known_data("ctl_csv");
	char *out, *err;
	ck_assert_int_eq(CTL(&out, &err, "--format", "csv", "pending", "--records", "--limit", "1"), 0);
	ck_assert_str_eq(out, "policy,key,clock_at,due_at,held\n"
			      "\"vd\",\"1\",\"2000-01-01T00:00:00+00:00\",\"2000-01-01T00:15:00+00:00\",\"false\"\n");
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "pending", "--within", "soon"), 2);
	ck_assert_msg(strncmp(err, "retentionctl: --within \"soon\"", 29) == 0, "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "pending", "--policy", "nope"), 1);
	ck_assert_msg(strncmp(err, "retentionctl: no policy \"nope\" in ", 34) == 0, "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "frobnicate"), 2);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "explain", "--help"), 0);
	ck_assert(strstr(out, "usage: retentionctl explain") != NULL);
	free(out);
	free(err);
	PQfinish(conn);
}
END_TEST

static char *explain_json(const char *key)
{
	char *out, *err;
	ck_assert_int_eq(CTL(&out, &err, "--format", "json", "explain", "--policy", "vd", "--key", key), 0);
	free(err);
	return out;
}

START_TEST(test_explain_every_case)
{
	PGconn *conn = known_data("ctl_explain");
	char *out, *want, *hold_id, *hold_at, *audit_id, *purged_at, *json_at;
	test_exec(conn, "SELECT retention.place_hold('vd', '2', NULL, 'legal', '2200-01-01 00:00:00+00')");
	hold_id = test_query_value(conn, "SELECT id FROM retention.holds", 0, NULL);
	hold_at = test_query_value(conn, "SELECT to_json(placed_at)::text FROM retention.holds", 0, NULL);

	out = explain_json("1");
	ck_assert_str_eq(
		out,
		"{\"policy\":\"vd\",\"key\":\"1\",\"status\":\"overdue\",\"reason\":\"due since 2000-01-01 00:15:00+00 and not purged yet: the daemon is behind or not running\","
		"\"clock_at\":\"2000-01-01T00:00:00+00:00\",\"due_at\":\"2000-01-01T00:15:00+00:00\",\"exempt_column\":null,\"exempt_value\":null,"
		"\"holds\":[],\"audit_id\":null,\"purged_at\":null,\"purged_by\":null}\n");
	free(out);

	out = explain_json("2");
	want = xasprintf(
		"{\"policy\":\"vd\",\"key\":\"2\",\"status\":\"held\",\"reason\":\"held (see holds); without the hold it fell due at 2000-01-01 00:16:00+00\","
		"\"clock_at\":\"2000-01-01T00:01:00+00:00\",\"due_at\":\"2000-01-01T00:16:00+00:00\",\"exempt_column\":null,\"exempt_value\":null,"
		"\"holds\":[{\"id\" : %s, \"policy\" : \"vd\", \"reason\" : \"legal\", \"until\" : \"2200-01-01T00:00:00+00:00\", \"placed_by\" : \"postgres\", \"placed_at\" : %s}],"
		"\"audit_id\":null,\"purged_at\":null,\"purged_by\":null}\n",
		hold_id, hold_at);
	ck_assert_str_eq(out, want);
	free(out);
	free(want);

	out = explain_json("3");
	ck_assert_str_eq(
		out,
		"{\"policy\":\"vd\",\"key\":\"3\",\"status\":\"exempt\",\"reason\":\"exempt: purpose = vulnerability_monitoring\","
		"\"clock_at\":\"2000-01-01T00:02:00+00:00\",\"due_at\":\"2000-01-01T00:17:00+00:00\",\"exempt_column\":\"purpose\",\"exempt_value\":\"vulnerability_monitoring\","
		"\"holds\":[],\"audit_id\":null,\"purged_at\":null,\"purged_by\":null}\n");
	free(out);

	out = explain_json("4");
	ck_assert_str_eq(
		out,
		"{\"policy\":\"vd\",\"key\":\"4\",\"status\":\"clock_not_started\",\"reason\":\"its clock (scan_completed_at) is not set: it falls due 15 minutes after it starts\","
		"\"clock_at\":null,\"due_at\":null,\"exempt_column\":null,\"exempt_value\":null,"
		"\"holds\":[],\"audit_id\":null,\"purged_at\":null,\"purged_by\":null}\n");
	free(out);

	out = explain_json("5");
	ck_assert_str_eq(
		out,
		"{\"policy\":\"vd\",\"key\":\"5\",\"status\":\"pending\",\"reason\":\"falls due at 2100-01-01 00:15:00+00\","
		"\"clock_at\":\"2100-01-01T00:00:00+00:00\",\"due_at\":\"2100-01-01T00:15:00+00:00\",\"exempt_column\":null,\"exempt_value\":null,"
		"\"holds\":[],\"audit_id\":null,\"purged_at\":null,\"purged_by\":null}\n");
	free(out);

	audit_id = test_query_value(conn, "SELECT id FROM retention.audit_log WHERE record_key = '6'", 0, NULL);
	purged_at = test_query_value(conn, "SELECT purged_at FROM retention.audit_log WHERE record_key = '6'", 0, NULL);
	/* In JSON, purged_at is RFC 3339: PostgreSQL's rendering, not rebuilt here. */
	json_at = test_query_value(
		conn, "SELECT to_json(purged_at)::text FROM retention.audit_log WHERE record_key = '6'", 0, NULL);
	out = explain_json("6");
	want = xasprintf(
		"{\"policy\":\"vd\",\"key\":\"6\",\"status\":\"purged\",\"reason\":\"purged at %s by instance ctl-test (audit record %s)\","
		"\"clock_at\":null,\"due_at\":null,\"exempt_column\":null,\"exempt_value\":null,"
		"\"holds\":[],\"audit_id\":%s,\"purged_at\":%s,\"purged_by\":\"ctl-test\"}\n",
		purged_at, audit_id, audit_id, json_at);
	ck_assert_str_eq(out, want);
	free(out);
	free(want);
	free(json_at);

	out = explain_json("999");
	ck_assert_str_eq(
		out,
		"{\"policy\":\"vd\",\"key\":\"999\",\"status\":\"not_found\",\"reason\":\"no record with key 999 in virusdesk.uploads, and policy vd never purged one\","
		"\"clock_at\":null,\"due_at\":null,\"exempt_column\":null,\"exempt_value\":null,"
		"\"holds\":[],\"audit_id\":null,\"purged_at\":null,\"purged_by\":null}\n");
	free(out);
	/* Not even of the key's type: still just not found. */
	out = explain_json("not-a-number");
	ck_assert(strstr(out, "\"status\":\"not_found\"") != NULL);
	free(out);

	free(hold_id);
	free(hold_at);
	free(audit_id);
	free(purged_at);
	PQfinish(conn);
}
END_TEST

START_TEST(test_audit_json)
{
	PGconn *conn = known_data("ctl_audit");
	char *out, *err, *want, *row;
	row = test_query_value(
		conn,
		"SELECT format('{\"id\":%s,\"policy\":\"vd\",\"seq\":1,\"service\":\"VirusDesk\",\"source\":\"rule 5\","
		"\"table_name\":\"virusdesk.uploads\",\"record_key\":\"6\",\"subject\":\"60\","
		"\"clock_at\":\"2000-01-01T00:00:00+00:00\",\"due_at\":\"2000-01-01T00:15:00+00:00\","
		"\"purged_at\":%s,\"late_seconds\":%s,\"action\":\"delete\",\"cause\":\"schedule\","
		"\"request_id\":null,\"instance\":\"ctl-test\",\"txid\":%s,\"format\":2,\"hash\":\"%s\"}', id, to_json(purged_at), to_json(extract(epoch FROM purged_at - due_at)::float8),"
		" txid, encode(hash, 'hex')) FROM retention.audit_log",
		0, NULL);
	want = xasprintf("[\n  %s\n]\n", row);
	ck_assert_int_eq(CTL(&out, &err, "--format", "json", "audit", "--policy", "vd", "--key", "6"), 0);
	ck_assert_str_eq(out, want);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "--format", "json", "audit", "--since", "2100-01-01"), 0);
	ck_assert_str_eq(out, "[\n]\n");
	free(out);
	free(err);
	free(want);
	free(row);
	PQfinish(conn);
}
END_TEST

/*
 * F12/F15 (first deployment): as a role without the grants, `pending`
 * printed a header and "(none)", then failed: the stdout alone read as
 * "nothing pending". A command that fails prints nothing to stdout.
 */
START_TEST(test_pending_prints_nothing_when_it_fails)
{
	PGconn *conn = known_data("ctl_stranger");
	char *out, *err;
	test_exec(conn,
		  "DO $$ BEGIN CREATE ROLE ctl_stranger LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
	free(ctl_conninfo);
	ctl_conninfo = xstrdup("dbname=ctl_stranger user=ctl_stranger");
	ck_assert_int_eq(CTL(&out, &err, "pending"), 1);
	ck_assert_msg(strcmp(out, "") == 0, "stdout: %s", out);
	ck_assert_msg(strstr(err, "permission denied") != NULL, "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "pending", "--records"), 1);
	ck_assert_msg(strcmp(out, "") == 0, "stdout: %s", out);
	free(out);
	free(err);
	PQfinish(conn);
}
END_TEST

/* Holds record KEY of policy vd and releases it: whether the release says the record goes now. */
static void release_says(const char *key, bool purged_now)
{
	char *out, *err, *id;
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", key, "--reason", "r"), 0);
	id = xstrndup(out, strcspn(out, "\n"));
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "release", id, "--reason", "done"), 0);
	if (purged_now) {
		char *want =
			xasprintf("record %s of policy vd has been due since 2000-01-01 00:15:00+00 and nothing else"
				  " holds it: a running daemon purges it now",
				  key);
		ck_assert_msg(strstr(out, want) != NULL, "%s", out);
		free(want);
	} else {
		ck_assert_msg(strstr(out, "purges it now") == NULL, "%s", out);
	}
	free(out);
	free(err);
	free(id);
}

START_TEST(test_hold_add_list_release)
{
	PGconn *conn = known_data("ctl_hold");
	char *out, *err, *id, *cmd_out;
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", "1", "--reason", "litigation"), 0);
	id = xstrndup(out, strcspn(out, "\n"));
	free(out);
	free(err);
	ck_assert_int_eq(
		test_query_ll(conn,
			      "SELECT count(*) FROM retention.holds WHERE record_key = '1' AND released_at IS NULL"),
		1);
	/* Refused: no such record, unknown policy, a subject on a policy... */
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", "12345", "--reason", "r"), 1);
	ck_assert(strstr(err, "no record with key 12345") != NULL);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", "12345", "--reason", "r", "--force"),
			 0);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--subject", "10", "--reason", "r"), 0);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "zz", "--key", "1", "--reason", "r"), 1);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", "1"), 2);
	free(out);
	free(err);
	/* The daemon honours it. */
	{
		char *bin = xasprintf("%s/src/retentiond", test_builddir());
		char *argv[] = {bin, "-c", conf_path, "--once", NULL};
		ck_assert_int_eq(test_run(argv, &out, &err), 0);
		free(out);
		free(err);
		free(bin);
	}
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads WHERE id = 1"), 1);
	ck_assert_int_eq(CTL(&out, &err, "--format", "csv", "hold", "list"), 0);
	ck_assert_int_eq((int)strlen(out) > 0, 1);
	ck_assert(strstr(out, "\"litigation\"") != NULL);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "release", id, "--reason", "settled"), 0);
	/* F10: record 1 is due, but the hold on its subject (10) still keeps it: nothing to warn of. */
	ck_assert_msg(strstr(out, "purges it now") == NULL, "%s", out);
	free(out);
	free(err);
	test_exec(conn, "INSERT INTO virusdesk.uploads VALUES (8, 80, '2000-01-01 00:00:00+00', NULL)");
	release_says("8", true);  /* due since 2000, held by nothing else */
	release_says("5", false); /* due in 2100 */
	ck_assert_int_eq(CTL(&out, &err, "hold", "release", id, "--reason", "again"), 1);
	free(out);
	free(err);
	cmd_out = test_query_value(
		conn, "SELECT released_by || ' ' || release_reason FROM retention.holds WHERE reason = 'litigation'", 0,
		NULL);
	ck_assert_str_eq(cmd_out, "postgres settled");
	ck_assert_int_eq(CTL(&out, &err, "--format", "json", "hold", "list", "--all"), 0);
	ck_assert(strstr(out, "\"release_reason\":\"settled\"") != NULL);
	free(out);
	free(err);
	free(cmd_out);
	free(id);
	PQfinish(conn);
}
END_TEST

/* A key typed differently from the database's text form still holds that record. */
START_TEST(test_hold_key_is_canonical)
{
	PGconn *conn = known_data("ctl_canonical");
	char *out, *err, *stored;
	char *bin = xasprintf("%s/src/retentiond", test_builddir());
	char *argv[] = {bin, "-c", conf_path, "--once", NULL};
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", "007", "--reason", "r"), 0);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--subject", "+10", "--reason", "r"), 0);
	free(out);
	free(err);
	stored = test_query_value(
		conn, "SELECT string_agg(coalesce(record_key, 's' || subject), ',' ORDER BY id) FROM retention.holds",
		0, NULL);
	ck_assert_str_eq(stored, "7,s10");
	ck_assert_int_eq(test_run(argv, &out, &err), 0);
	free(out);
	free(err);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads WHERE id IN (1, 7)"), 2);
	ck_assert_int_eq(CTL(&out, &err, "hold", "add", "--policy", "vd", "--key", "seven", "--reason", "r", "--force"),
			 1);
	ck_assert_msg(strstr(err, "key seven is not a value of policy vd's key column id") != NULL, "%s", err);
	free(out);
	free(err);
	out = NULL;
	ck_assert_int_eq(CTL(&out, &err, "--format", "json", "explain", "--policy", "vd", "--key", "0007"), 0);
	ck_assert_msg(strstr(out, "\"key\":\"7\",\"status\":\"held\"") != NULL, "%s", out);
	free(out);
	free(err);
	free(stored);
	free(bin);
	PQfinish(conn);
}
END_TEST

/* ---- audit verify against tampering ---- */

/* A policy with a chain of 12 records. */
static PGconn *chain_of_twelve(const char *db)
{
	PGconn *conn = known_data(db);
	char *bin = xasprintf("%s/src/retentiond", test_builddir());
	char *argv[] = {bin, "-c", conf_path, "--once", NULL};
	char *out, *err;
	test_exec(conn,
		  "INSERT INTO virusdesk.uploads SELECT 100 + g, g, '2001-01-01'::timestamptz + g * interval '1 minute'"
		  " FROM generate_series(1, 8) g");
	ck_assert_int_eq(test_run(argv, &out, &err), 0);
	free(out);
	free(err);
	free(bin);
	/* Key 6 from the first run; now 1, 2 and 7 (nothing is held here) and the 8 new ones. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT max(seq) FROM retention.audit_log"), 12);
	return conn;
}

/*
 * What an insider with the database would write to rechain rows: format 2's
 * payload (docs/audit-format.md) in SQL, as pg_temp.payload2(row), in this
 * session.
 */
static void define_payload2(PGconn *conn)
{
	test_exec(conn,
		  "CREATE FUNCTION pg_temp.ns(v text) RETURNS text LANGUAGE sql IMMUTABLE AS"
		  " $$ SELECT CASE WHEN v IS NULL THEN '-,' ELSE octet_length(v) || ':' || v || ',' END $$;"
		  "CREATE FUNCTION pg_temp.t(x timestamptz) RETURNS text LANGUAGE sql STABLE AS"
		  " $$ SELECT to_char(x AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
		  " || CASE to_char(x AT TIME ZONE 'UTC', 'BC') WHEN 'BC' THEN ' BC' ELSE '' END $$;"
		  "CREATE FUNCTION pg_temp.payload2(a retention.audit_log) RETURNS bytea LANGUAGE sql STABLE AS"
		  " $$ SELECT convert_to(pg_temp.ns(a.format::text) || pg_temp.ns(a.policy) || pg_temp.ns(a.seq::text)"
		  " || pg_temp.ns(a.service) || pg_temp.ns(a.source) || pg_temp.ns(a.table_name)"
		  " || pg_temp.ns(a.record_key) || pg_temp.ns(a.subject) || pg_temp.ns(pg_temp.t(a.clock_at))"
		  " || pg_temp.ns(pg_temp.t(a.due_at)) || pg_temp.ns(pg_temp.t(a.purged_at)) || pg_temp.ns(a.action)"
		  " || pg_temp.ns(a.cause) || pg_temp.ns(a.request_id::text) || pg_temp.ns(a.instance)"
		  " || pg_temp.ns(a.txid::text), 'UTF8') $$");
}

/* Edits record 5, then recomputes every hash from there on and the head, as an insider could. */
static void rewrite_chain_from_5(PGconn *conn)
{
	define_payload2(conn);
	test_exec(conn,
		  "UPDATE retention.audit_log SET subject = 'someone else' WHERE seq = 5;"
		  "WITH RECURSIVE c(seq, prev_hash, hash) AS ("
		  "  SELECT a.seq, a.prev_hash, sha256(a.prev_hash || pg_temp.payload2(a))"
		  "  FROM retention.audit_log a WHERE a.seq = 5"
		  "  UNION ALL"
		  "  SELECT a.seq, c.hash, sha256(c.hash || pg_temp.payload2(a))"
		  "  FROM retention.audit_log a JOIN c ON a.seq = c.seq + 1)"
		  " UPDATE retention.audit_log a SET prev_hash = c.prev_hash, hash = c.hash FROM c WHERE a.seq = c.seq;"
		  "UPDATE retention.chain_heads h SET hash = a.hash FROM retention.audit_log a WHERE a.seq = h.seq");
}

static void expect_verify(int want_status, const char *want_problem, const char *head)
{
	char *out, *err;
	int status = head ? CTL(&out, &err, "audit", "verify", "--policy", "vd", "--head", head)
			  : CTL(&out, &err, "audit", "verify");
	ck_assert_msg(status == want_status, "exit %d, want %d: %s%s", status, want_status, out, err);
	if (want_problem)
		ck_assert_msg(strstr(err, want_problem) != NULL, "\"%s\" not in: %s", want_problem, err);
	free(out);
	free(err);
}

START_TEST(test_verify_intact)
{
	PGconn *conn = chain_of_twelve("verify_intact");
	expect_verify(0, NULL, NULL);
	PQfinish(conn);
}
END_TEST

START_TEST(test_verify_edit)
{
	PGconn *conn = chain_of_twelve("verify_edit");
	test_exec(conn, "UPDATE retention.audit_log SET subject = 'someone else' WHERE seq = 5");
	expect_verify(3, "its content does not match its hash (edited)", NULL);
	PQfinish(conn);
}
END_TEST

/* The time form had no era: a year moved to BC read the same, and the edit went unseen. */
START_TEST(test_verify_edit_of_a_years_era)
{
	PGconn *conn = chain_of_twelve("verify_era");
	test_exec(conn, "UPDATE retention.audit_log SET purged_at = (to_char(purged_at AT TIME ZONE 'UTC',"
			" 'YYYY-MM-DD HH24:MI:SS.US') || '+00 BC')::timestamptz WHERE seq = 4");
	expect_verify(3, "record seq 4 (id ", NULL);
	expect_verify(3, "its content does not match its hash (edited)", NULL);
	PQfinish(conn);
}
END_TEST

/* A NULL where the schema says NOT NULL crashed the verifier; it is tampering like any other. */
START_TEST(test_verify_nulls_in_an_altered_table)
{
	PGconn *conn = chain_of_twelve("verify_nulls");
	test_exec(conn, "ALTER TABLE retention.audit_log ALTER prev_hash DROP NOT NULL, ALTER hash DROP NOT NULL,"
			" ALTER seq DROP NOT NULL;"
			"UPDATE retention.audit_log SET prev_hash = NULL WHERE seq = 7;"
			"UPDATE retention.audit_log SET hash = NULL, seq = NULL WHERE seq = 9");
	expect_verify(3, "record id 7 has no prev_hash: it was written outside the daemon", NULL);
	PQfinish(conn);
}
END_TEST

START_TEST(test_verify_delete_middle)
{
	PGconn *conn = chain_of_twelve("verify_delete");
	test_exec(conn, "DELETE FROM retention.audit_log WHERE seq = 4");
	expect_verify(3, ") follows seq 3: records before it are missing", NULL);
	PQfinish(conn);
}
END_TEST

START_TEST(test_verify_reorder)
{
	PGconn *conn = chain_of_twelve("verify_reorder");
	/* Swap records 3 and 4, renumbering them so the sequence itself looks whole. */
	test_exec(conn, "UPDATE retention.audit_log SET seq = 1000 WHERE seq = 3;"
			"UPDATE retention.audit_log SET seq = 3 WHERE seq = 4;"
			"UPDATE retention.audit_log SET seq = 4 WHERE seq = 1000");
	expect_verify(3, "record seq 3 (id ", NULL);
	PQfinish(conn);
}
END_TEST

START_TEST(test_verify_truncate_tail)
{
	PGconn *conn = chain_of_twelve("verify_tail");
	test_exec(conn, "DELETE FROM retention.audit_log WHERE seq > 8");
	expect_verify(3, "the chain head is seq 12 but the log ends at seq 8: records seq 9 to 12 were removed", NULL);
	PQfinish(conn);
}
END_TEST

START_TEST(test_verify_wholesale_rewrite_needs_anchor)
{
	PGconn *conn = chain_of_twelve("verify_rewrite");
	char *anchor = test_query_value(
		conn, "SELECT seq || ':' || encode(hash, 'hex') FROM retention.audit_log WHERE seq = 12", 0, NULL);
	rewrite_chain_from_5(conn);
	/* Without an anchor the rewritten chain is self-consistent... */
	expect_verify(0, NULL, NULL);
	/* ...the anchor the daemon logged before the rewrite is not. */
	expect_verify(3, "does not match the anchor", anchor);
	expect_verify(2, "--head takes SEQ:HASH", "12:nothex");
	free(anchor);
	PQfinish(conn);
}
END_TEST

/*
 * M13: a record replaced by a forgery whose own hash is recomputed passes
 * the hash check; only the link from the next record shows it.
 */
START_TEST(test_verify_forgery_with_recomputed_hash)
{
	PGconn *conn = chain_of_twelve("verify_forgery");
	define_payload2(conn);
	test_exec(conn,
		  "UPDATE retention.audit_log SET subject = 'someone else' WHERE seq = 5;"
		  "UPDATE retention.audit_log a SET hash = sha256(a.prev_hash || pg_temp.payload2(a)) WHERE seq = 5");
	expect_verify(3, "record seq 6 (id ", NULL);
	expect_verify(3, "its prev_hash is not the hash of the record before it", NULL);
	PQfinish(conn);
}
END_TEST

/*
 * D19: verify recomputed hashes with the schema's own audit_payload(), so
 * whoever could replace that function made a rewritten record verify, even
 * against an anchor kept outside. It is recomputed by retentionctl itself.
 */
START_TEST(test_verify_does_not_trust_the_schemas_code)
{
	PGconn *conn = chain_of_twelve("verify_schema_code");
	char *anchor = test_query_value(
		conn, "SELECT seq || ':' || encode(hash, 'hex') FROM retention.audit_log WHERE seq = 12", 0, NULL);
	test_exec(
		conn,
		"BEGIN;"
		"UPDATE retention.audit_log SET record_key = '424242' WHERE seq = 1;"
		"CREATE OR REPLACE FUNCTION retention.audit_payload(policy text, seq bigint, service text, source text,"
		" table_name text, record_key text, subject text, clock_at timestamptz, due_at timestamptz,"
		" purged_at timestamptz, action text, instance text, txid bigint) RETURNS bytea LANGUAGE sql STABLE AS $$"
		" SELECT convert_to(json_build_array(policy, seq, service, source, table_name,"
		" CASE record_key WHEN '424242' THEN '6' ELSE record_key END, subject,"
		" to_char(clock_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
		" to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
		" to_char(purged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
		" action, instance, txid)::text, 'UTF8') $$;"
		"COMMIT");
	expect_verify(3, "record seq 1 (id ", anchor);
	expect_verify(3, "its content does not match its hash (edited)", NULL);
	free(anchor);
	PQfinish(conn);
}
END_TEST

/*
 * A record rewritten in format 1, whose payload leaves out cause and
 * request_id, rechained so that every hash and link holds: the daemon never
 * goes back to format 1, so the verifier does not take it.
 */
START_TEST(test_verify_refuses_format_1_after_format_2)
{
	PGconn *conn = chain_of_twelve("verify_downgrade");
	test_exec(conn,
		  "UPDATE retention.audit_log SET format = 1, cause = 'schedule',"
		  " hash = sha256(prev_hash || retention.audit_payload(policy, seq, service, source, table_name,"
		  " record_key, subject, clock_at, due_at, purged_at, action, instance, txid)) WHERE seq = 12;"
		  "UPDATE retention.chain_heads h SET hash = a.hash FROM retention.audit_log a WHERE a.seq = h.seq");
	expect_verify(3, "record seq 12 (id ", NULL);
	expect_verify(3, "is in format 1 after records in format 2", NULL);
	PQfinish(conn);
}
END_TEST

/* D24: an unknown policy, or a chain erased together with its head, "verified" with exit 0. */
START_TEST(test_verify_of_a_missing_chain_fails)
{
	PGconn *conn = known_data("verify_missing");
	char *out, *err;
	ck_assert_int_eq(CTL(&out, &err, "audit", "verify", "--policy", "nope"), 3);
	ck_assert_msg(strstr(err, "no audit records and no chain head for policy nope"), "%s", err);
	free(out);
	free(err);
	test_exec(conn, "DELETE FROM retention.audit_log; DELETE FROM retention.chain_heads");
	ck_assert_int_eq(CTL(&out, &err, "audit", "verify", "--policy", "vd"), 3);
	free(out);
	free(err);
	PQfinish(conn);
}
END_TEST

/* ---- exports, verified by retentionctl and by the independent verifier ---- */

/* `audit export` of the trail as it stands, into a file of this test; its lines in *LINES. */
static char *export_trail(char ***lines, size_t *n)
{
	char *out, *err, *path, *p;
	ck_assert_int_eq(CTL(&out, &err, "audit", "export"), 0);
	path = test_write_file(out);
	*n = 0;
	*lines = NULL;
	for (p = out; *p; p = strchr(p, '\n') + 1) {
		*lines = xrealloc(*lines, (*n + 1) * sizeof(char *));
		(*lines)[(*n)++] = xstrndup(p, strcspn(p, "\n"));
	}
	free(out);
	free(err);
	return path;
}

/* LINES without line SKIP (-1: none) and with lines A and B swapped, as a file of this test. */
static char *tampered(char **lines, size_t n, long skip, size_t a, size_t b)
{
	char *text = xstrdup(""), *path;
	for (size_t i = 0; i < n; i++) {
		size_t j = i == a ? b : i == b ? a : i;
		char *next;
		if ((long)i == skip)
			continue;
		next = xasprintf("%s%s\n", text, lines[j]);
		free(text);
		text = next;
	}
	path = test_write_file(text);
	free(text);
	return path;
}

/* Both verifiers on FILE (with HEAD for policy vd, or NULL): each one's exit status. */
static void verify_file_both(const char *file, const char *head, int *ctl_status, int *independent_status,
			     char **ctl_err)
{
	char *script = xasprintf("%s/tests/verify-export.py", test_srcdir());
	char *py[] = {script, (char *)file, head ? "--policy" : NULL, "vd", "--head", (char *)head, NULL};
	char *out, *err;
	*ctl_status = head ? CTL(&out, ctl_err, "audit", "verify", "--file", file, "--policy", "vd", "--head", head)
			   : CTL(&out, ctl_err, "audit", "verify", "--file", file);
	free(out);
	*independent_status = test_run(py, &out, &err);
	free(out);
	free(err);
	free(script);
}

static void expect_file_verdict(const char *file, const char *head, int want, const char *want_problem)
{
	int by_ctl, by_script;
	char *err;
	verify_file_both(file, head, &by_ctl, &by_script, &err);
	ck_assert_msg(by_ctl == want, "retentionctl audit verify --file %s: exit %d, want %d: %s", file, by_ctl, want,
		      err);
	ck_assert_msg(by_script == want, "tests/verify-export.py %s: exit %d, want %d", file, by_script, want);
	if (want_problem)
		ck_assert_msg(strstr(err, want_problem), "\"%s\" not in: %s", want_problem, err);
	free(err);
}

/* LINE with its first OLD replaced by NEW (malloc'd); fails the test if OLD is not in it. */
static char *line_with(const char *line, const char *old, const char *new)
{
	const char *at = strstr(line, old);
	ck_assert_msg(at != NULL, "\"%s\" not in %s", old, line);
	return xasprintf("%.*s%s%s", (int)(at - line), line, new, at + strlen(old));
}

/* FILE's lines with line I (0-based) replaced by TEXT: both verifiers' verdict is WANT, the C one's says PROBLEM. */
static void expect_line_verdict(char **lines, size_t n, size_t i, char *text, int want, const char *problem)
{
	char *old = lines[i], *bad;
	lines[i] = text;
	bad = tampered(lines, n, -1, 0, 0);
	expect_file_verdict(bad, NULL, want, problem);
	lines[i] = old;
	free(text);
	free(bad);
}

/* Issue 10: an export verifies with no database, by retentionctl and by a verifier written from the doc. */
START_TEST(test_export_verifies_offline_and_tamperings_are_caught)
{
	PGconn *conn = chain_of_twelve("export_tamper");
	char **lines, *file, *bad, *anchor;
	size_t n;
	file = export_trail(&lines, &n);
	/* Twelve records, then the chain head. */
	ck_assert_int_eq((int)n, 13);
	ck_assert_msg(strstr(lines[12], "\"chain_head\"") && strstr(lines[12], "\"seq\" : 12"), "%s", lines[12]);
	ck_assert_msg(strstr(lines[0], "\"format\" : 2") && strstr(lines[0], "\"cause\" : \"schedule\""), "%s",
		      lines[0]);
	expect_file_verdict(file, NULL, 0, NULL);
	/* No database is needed: retentionctl is pointed at a server that does not exist. */
	PQfinish(conn);
	free(ctl_conninfo);
	ctl_conninfo = xstrdup("host=/nonexistent dbname=nothing connect_timeout=1");
	anchor = xasprintf("12:%.64s", strstr(lines[11], "\"hash\" : \"") + strlen("\"hash\" : \""));
	expect_file_verdict(file, anchor, 0, NULL);

	/* Edit: record 5's key. */
	{
		char *edited = strstr(lines[4], "\"record_key\" : \""), *old = lines[4];
		ck_assert(edited != NULL);
		lines[4] = xasprintf("%.*s9%s", (int)(edited - old + strlen("\"record_key\" : \"")), old,
				     edited + strlen("\"record_key\" : \""));
		bad = tampered(lines, n, -1, 0, 0);
		expect_file_verdict(bad, NULL, 3, "record seq 5 (line 5): its content does not match its hash");
		free(lines[4]);
		lines[4] = old;
		free(bad);
	}
	/* A field added to a record: not what export writes, whatever it says. */
	{
		char *old = lines[6];
		lines[6] = xasprintf("{\"note\" : \"fine\", %s", old + 1);
		bad = tampered(lines, n, -1, 0, 0);
		expect_file_verdict(bad, NULL, 3, ":7: a row has exactly the fields");
		free(lines[6]);
		lines[6] = old;
		free(bad);
	}
	/* Delete: record 6. */
	bad = tampered(lines, n, 5, 0, 0);
	expect_file_verdict(bad, NULL, 3, "record seq 7 (line 6) follows seq 5");
	free(bad);
	/* Reorder: records 3 and 4. */
	bad = tampered(lines, n, -1, 2, 3);
	expect_file_verdict(bad, NULL, 3, "record seq 4 (line 3) follows seq 2");
	free(bad);
	/* Truncate: the last record, the head line kept. */
	bad = tampered(lines, n, 11, 0, 0);
	expect_file_verdict(bad, NULL, 3, "the chain head is seq 12 but the log ends at seq 11");
	free(bad);
	/* Truncate with the head line: nothing says where the chain ended. */
	bad = tampered(lines, n - 2, -1, 0, 0);
	expect_file_verdict(bad, NULL, 3, "no chain head is recorded for this policy");
	free(bad);
	/* A head line that ends the chain at 11, then record 12, correctly chained: no head claims it. */
	{
		char hash11[65], hash12[65];
		char *head11, *head;
		snprintf(hash11, sizeof(hash11), "%.64s", strstr(lines[10], "\"hash\" : \"") + strlen("\"hash\" : \""));
		snprintf(hash12, sizeof(hash12), "%.64s", strstr(lines[11], "\"hash\" : \"") + strlen("\"hash\" : \""));
		head = line_with(lines[12], "\"seq\" : 12", "\"seq\" : 11");
		head11 = line_with(head, hash12, hash11);
		free(head);
		head = lines[12];
		lines[12] = lines[11];
		lines[11] = head11;
		bad = tampered(lines, n, -1, 0, 0);
		expect_file_verdict(bad, NULL, 3, "record line 13 comes after the policy's chain head");
		free(bad);
		lines[11] = lines[12];
		lines[12] = head;
		free(head11);
	}
	/* The head line first: it names records that do not come before it. */
	bad = tampered(lines, n, -1, 0, 12);
	expect_file_verdict(bad, NULL, 3, "the chain head is seq 12 but the log ends at seq 0");
	free(bad);
	/* The head's hash changed, its seq not. */
	expect_line_verdict(lines, n, 12,
			    line_with(lines[12], "\"seq\" : 12, \"hash\" : \"", "\"seq\" : 12, \"hash\" : \"0"), 3,
			    "does not have the recorded chain head's hash");
	/* Integers have no sign and fit a bigint; a head's seq is a number; text is UTF-8. */
	expect_line_verdict(lines, n, 2, line_with(lines[2], "\"request_id\" : null", "\"request_id\" : -0"), 3,
			    ":3: a number field holds something other than an integer");
	expect_line_verdict(lines, n, 12, line_with(lines[12], "\"seq\" : 12", "\"seq\" : 18446744073709551628"), 3,
			    ":13: a number field holds something other than an integer");
	expect_line_verdict(lines, n, 12, line_with(lines[12], "\"seq\" : 12", "\"seq\" : true"), 3,
			    ":13: a chain_head has a policy (text), a seq (number)");
	expect_line_verdict(lines, n, 3, line_with(lines[3], "\"instance\" : \"", "\"instance\" : \"\\ud800"), 3,
			    ":4: ");
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	free(anchor);
	free(file);
}
END_TEST

/* A chain rewritten wholesale, its head line too, verifies on its own; the daemon's logged anchor catches it. */
START_TEST(test_export_rewritten_wholesale_needs_the_anchor)
{
	PGconn *conn = chain_of_twelve("export_rewrite");
	char **lines, *file, *anchor;
	size_t n;
	anchor = test_query_value(
		conn, "SELECT seq || ':' || encode(hash, 'hex') FROM retention.audit_log WHERE seq = 12", 0, NULL);
	rewrite_chain_from_5(conn);
	file = export_trail(&lines, &n);
	expect_file_verdict(file, NULL, 0, NULL);
	expect_file_verdict(file, anchor, 3, "does not match the anchor");
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	free(anchor);
	free(file);
	PQfinish(conn);
}
END_TEST

/* The worked example of docs/audit-format.md, by the independent verifier (check_docs checks it in C). */
START_TEST(test_independent_verifier_agrees_with_the_doc)
{
	char *script = xasprintf("%s/tests/verify-export.py", test_srcdir());
	char *doc = xasprintf("%s/docs/audit-format.md", test_srcdir());
	char *argv[] = {script, "--self-test", doc, NULL};
	char *out, *err;
	ck_assert_msg(test_run(argv, &out, &err) == 0, "%s", err);
	free(out);
	free(err);
	free(script);
	free(doc);
}
END_TEST

/* D23: audit --key was not canonicalised ("006" found nothing where explain found record 6). */
START_TEST(test_audit_key_is_canonical)
{
	PGconn *conn = known_data("audit_key");
	char *out, *err;
	ck_assert_int_eq(CTL(&out, &err, "--format", "json", "audit", "--policy", "vd", "--key", "006"), 0);
	ck_assert_msg(strstr(out, "\"record_key\":\"6\""), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(CTL(&out, &err, "audit", "--key", "6"), 2);
	ck_assert_msg(strstr(err, "audit --key needs --policy"), "%s", err);
	free(out);
	free(err);
	PQfinish(conn);
}
END_TEST

/* D22: with -d, audit, hold list and status showed times in UTC, not database.time_zone. */
START_TEST(test_times_in_the_configured_zone_with_d)
{
	PGconn *conn = known_data("ctl_zone");
	char *text = xasprintf(
		"database = { conninfo = \"dbname=ctl_zone user=" TEST_DAEMON_ROLE "\";"
		" time_zone = \"Asia/Kolkata\"; };\n"
		"policies = ( { name = \"vd\"; service = \"VirusDesk\"; source = \"rule 5\";"
		" table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\"; retain = \"15 minutes\"; } );\n");
	char *conf = test_write_file(text);
	char *out, *err;
	ck_assert_int_eq(fx_ctl(conf, "ctl_zone", &out, &err, "--format", "json", "audit", NULL), 0);
	ck_assert_msg(strstr(out, "\"clock_at\":\"2000-01-01T05:30:00+05:30\""), "%s", out);
	free(out);
	free(err);
	/* F7: people's tables say which zone their times are in. */
	ck_assert_int_eq(fx_ctl(conf, "ctl_zone", &out, &err, "audit", NULL), 0);
	ck_assert_msg(strstr(out, " +05:30 ("), "%s", out);
	free(out);
	free(err);
	free(text);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* D21: table output printed control characters raw (a key could rewrite the terminal) and measured widths in bytes. */
START_TEST(test_table_output_is_safe_for_terminals)
{
	PGconn *conn = fx_database("ctl_escape");
	char *policy = fx_policy("tx", "app.t", "id", "c", "1 day", "subject = \"who\";");
	char *conf = fx_config("ctl_escape", NULL, policy);
	char *out, *err;
	test_exec(conn,
		  "CREATE SCHEMA app; CREATE TABLE app.t (id text PRIMARY KEY, c timestamptz, who text);"
		  "INSERT INTO app.t VALUES (E'evil\\x1b[2K\\r1 all rows verified OK', now() - interval '3 days', '-'),"
		  " ('plain', now() - interval '2 days', E'Zo\\u00eb \\u65e5\\u672c'),"
		  " ('x', now() - interval '2 days', NULL)");
	fx_grant(conn, "app");
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "ctl_escape", &out, &err, "audit", NULL), 0);
	ck_assert_msg(strchr(out, '\x1b') == NULL && strchr(out, '\r') == NULL, "raw control characters: %s", out);
	ck_assert_msg(strstr(out, "evil\\x1b[2K\\r1 all rows verified OK"), "%s", out);
	/* A literal "-" is not the NULL that "-" stands for. */
	ck_assert_msg(strstr(out, "\"-\""), "%s", out);
	/* Each column starts at the same display column on every line, wide characters counted as two. */
	{
		int starts[3] = {0, 0, 0}, n = 0;
		for (char *line = strchr(out, '\n') + 1; *line && n < 3; line = strchr(line, '\n') + 1, n++) {
			char *after = strstr(line, " ago)");
			int cells = 0;
			ck_assert_ptr_nonnull(after);
			for (char *c = line; c < after; c++)
				if (((unsigned char)*c & 0xc0) != 0x80)
					cells += ((unsigned char)*c >= 0xe3 && (unsigned char)*c <= 0xe9) ? 2 : 1;
			starts[n] = cells;
		}
		ck_assert_int_eq(n, 3);
		ck_assert_msg(starts[0] == starts[1] && starts[1] == starts[2], "misaligned: %d %d %d\n%s", starts[0],
			      starts[1], starts[2], out);
	}
	free(out);
	free(err);
	free(policy);
	free(conf);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("retentionctl");
	TCase *tc = test_tcase("known data", 60);
	TCase *verify = test_tcase("verify", 60);
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_pending_json);
	tcase_add_test(tc, test_pending_csv_and_usage_errors);
	tcase_add_test(tc, test_explain_every_case);
	tcase_add_test(tc, test_audit_json);
	tcase_add_test(tc, test_hold_add_list_release);
	tcase_add_test(tc, test_pending_prints_nothing_when_it_fails);
	tcase_add_test(tc, test_hold_key_is_canonical);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(verify, NULL, teardown);
	tcase_set_timeout(verify, 60);
	tcase_add_test(verify, test_verify_intact);
	tcase_add_test(verify, test_verify_edit);
	tcase_add_test(verify, test_verify_edit_of_a_years_era);
	tcase_add_test(verify, test_verify_nulls_in_an_altered_table);
	tcase_add_test(verify, test_verify_delete_middle);
	tcase_add_test(verify, test_verify_reorder);
	tcase_add_test(verify, test_verify_truncate_tail);
	tcase_add_test(verify, test_verify_wholesale_rewrite_needs_anchor);
	tcase_add_test(verify, test_verify_forgery_with_recomputed_hash);
	tcase_add_test(verify, test_verify_does_not_trust_the_schemas_code);
	tcase_add_test(verify, test_verify_of_a_missing_chain_fails);
	tcase_add_test(verify, test_verify_refuses_format_1_after_format_2);
	tcase_add_test(verify, test_export_verifies_offline_and_tamperings_are_caught);
	tcase_add_test(verify, test_export_rewritten_wholesale_needs_the_anchor);
	tcase_add_test(verify, test_independent_verifier_agrees_with_the_doc);
	tcase_add_test(tc, test_audit_key_is_canonical);
	tcase_add_test(tc, test_times_in_the_configured_zone_with_d);
	tcase_add_test(tc, test_table_output_is_safe_for_terminals);
	suite_add_tcase(s, verify);
	return test_run_suite(s);
}
