/*
 * The audit trail without personal data: keyed pseudonyms written by the
 * daemon and found by retentionctl, the key's file as configuration (start,
 * reload, --check), version 1 files kept working, and the demo's data
 * leaving no subject in the retention schema.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "testutil.h"
#include "util.h"

/* A new key made by `retentionctl audit keygen` at PATH. */
static void keygen(const char *path)
{
	char *bin = xasprintf("%s/src/retentionctl", test_builddir());
	char *argv[] = {bin, "audit", "keygen", (char *)path, NULL};
	char *out, *err;
	ck_assert_msg(test_run(argv, &out, &err) == 0, "%s", err);
	free(out);
	free(err);
	free(bin);
}

/* CONF (a file) with an audit group appended. */
static void add_audit_group(const char *conf, const char *group)
{
	FILE *f = fopen(conf, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "audit = { %s };\n", group);
	ck_assert_int_eq(fclose(f), 0);
}

/* HMAC-SHA256 of VALUE under the key file KEY, computed by Python's standard library, not by our code. */
static char *independent_pseudonym(const char *key, const char *value)
{
	char *argv[] = {
		"/usr/bin/python3",
		"-c",
		"import hashlib, hmac, sys\n"
		"key = open(sys.argv[1], 'rb').read()\n"
		"print('hmac-sha256:' + hmac.new(key, sys.argv[2].encode(), hashlib.sha256).hexdigest(), end='')",
		(char *)key,
		(char *)value,
		NULL};
	char *out, *err;
	ck_assert_msg(test_run(argv, &out, &err) == 0, "%s", err);
	free(err);
	return out;
}

START_TEST(test_keygen_writes_a_private_key_once)
{
	char *key = test_path("audit.key"), *bin = xasprintf("%s/src/retentionctl", test_builddir());
	char *argv[] = {bin, "audit", "keygen", key, NULL};
	char *out, *err;
	struct stat st;
	keygen(key);
	ck_assert_int_eq(stat(key, &st), 0);
	ck_assert_int_eq((int)(st.st_mode & 0777), 0600);
	ck_assert_int_eq((int)st.st_size, 32);
	/* Never over an existing key: the pseudonyms made with it would be lost. */
	ck_assert_int_eq(test_run(argv, &out, &err), 1);
	ck_assert_msg(strstr(err, "is never overwritten"), "%s", err);
	free(out);
	free(err);
	free(bin);
	free(key);
}
END_TEST

/*
 * Issue 10: subjects were stored in clear, forever. With an audit group the
 * daemon stores HMAC pseudonyms, and retentionctl finds a subject's and a
 * key's rows by computing the same ones.
 */
START_TEST(test_subjects_and_keys_are_stored_as_pseudonyms)
{
	PGconn *conn = fx_uploads_db("pseudonyms");
	char *conf = fx_uploads_config("pseudonyms", "15 minutes", "");
	char *key = test_path("pseudonyms.key");
	char *out, *err, *want_subject, *want_key, *group;
	keygen(key);
	group = xasprintf("key_file = \"%s\"; pseudonymize = [ \"subject\", \"key\" ];", key);
	add_audit_group(conf, group);
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (1, 4711, now() - interval '1 hour'), (2, 4712, now() - interval '1 hour'),"
			" (3, NULL, now() - interval '1 hour')");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	ck_assert_ptr_null(strstr(err, "no audit group"));
	free(out);
	free(err);
	want_subject = independent_pseudonym(key, "4711");
	want_key = independent_pseudonym(key, "1");
	{
		const char *params[2] = {want_subject, want_key};
		test_assert_query_value(
			conn, "SELECT count(*) FROM retention.audit_log WHERE subject = $1 AND record_key = $2", 2,
			params, "1");
	}
	/* Nothing in clear, and no subject where there was none. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE subject NOT LIKE"
					     " 'hmac-sha256:%' OR record_key NOT LIKE 'hmac-sha256:%'"),
			 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE subject IS NULL"), 1);
	fx_assert_chain_intact(conn);
	/* Looked up as typed, through the pseudonym: by subject (as the column reads it, "04711" is 4711) and by key. */
	ck_assert_int_eq(fx_ctl(conf, "pseudonyms", &out, &err, "--format", "csv", "audit", "--policy",
				"virusdesk-scan-uploads", "--subject", "04711", NULL),
			 0);
	ck_assert_msg(strstr(out, want_subject) && strstr(out, want_key) && !strstr(out, "4712"), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "pseudonyms", &out, &err, "--format", "csv", "audit", "--subject", "4712", NULL),
			 0);
	ck_assert_msg(strchr(out, '\n') && strstr(strchr(out, '\n'), "hmac-sha256:") && !strstr(out, want_subject),
		      "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "pseudonyms", &out, &err, "--format", "json", "explain", "--policy",
				"virusdesk-scan-uploads", "--key", "1", NULL),
			 0);
	ck_assert_msg(strstr(out, "\"status\":\"purged\""), "%s", out);
	free(out);
	free(err);
	/* Without the key, a lookup says so in one line; the listing itself still works. */
	ck_assert_int_eq(unlink(key), 0);
	ck_assert_int_eq(fx_ctl(conf, "pseudonyms", &out, &err, "audit", "--subject", "4711", NULL), 1);
	ck_assert_msg(strstr(err, "audit.key_file: cannot read") && strchr(err, '\n') == err + strlen(err) - 1, "%s",
		      err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "pseudonyms", &out, &err, "audit", NULL), 0);
	free(out);
	free(err);
	/* And the daemon does not start: rows written without the key could not be found. */
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 1);
	ck_assert_msg(strstr(err, ": audit.key_file: cannot read"), "%s", err);
	free(out);
	free(err);
	free(want_subject);
	free(want_key);
	free(group);
	free(key);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* A reload naming a key the daemon cannot read is refused; the configuration in force stays, pseudonyms too. */
START_TEST(test_reload_with_an_unreadable_key_keeps_the_old_configuration)
{
	PGconn *conn = fx_uploads_db("keyreload");
	char *conf = fx_uploads_config("keyreload", "15 minutes", "");
	char *key = test_path("keyreload.key"), *log = fx_log_path("keyreload");
	char *text, *group, *want;
	long mark;
	pid_t pid;
	keygen(key);
	group = xasprintf("key_file = \"%s\";", key);
	add_audit_group(conf, group);
	pid = fx_start_daemon(conf, log);
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (9, 9, now() - interval '1 hour')");
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "9", 20));
	/* Now the file names a key that is not there. */
	text = xasprintf("database = { conninfo = \"dbname=keyreload user=" TEST_DAEMON_ROLE "\"; };\n"
			 "daemon = { instance = \"keyreload-1\"; resync_interval = \"1 hour\"; };\n"
			 "audit = { key_file = \"%s.missing\"; };\n"
			 "policies = ( { name = \"virusdesk-scan-uploads\"; service = \"s\"; source = \"s\";"
			 " table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";"
			 " subject = \"account_id\"; retain = \"15 minutes\"; } );\n",
			 key);
	mark = fx_log_mark(log);
	fx_rewrite(conf, text);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "audit.key_file: cannot read", 20);
	fx_wait_for_log_after(log, mark, "stay in force", 20);
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (1, 4711, now() - interval '1 hour')");
	ck_assert(fx_wait_row_gone(conn, "virusdesk.uploads", "1", 20));
	want = independent_pseudonym(key, "4711");
	{
		const char *params[1] = {want};
		test_assert_query_value(conn, "SELECT count(*) FROM retention.audit_log WHERE subject = $1", 1, params,
					"1");
	}
	fx_stop_daemon(pid);
	free(want);
	free(text);
	free(group);
	free(log);
	free(key);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* A version 1 file keeps working, identifiers in clear, with one warning at start and from --check. */
START_TEST(test_a_version_1_file_keeps_working_with_a_warning)
{
	PGconn *conn = fx_uploads_db("v1file");
	char *conf = fx_uploads_config("v1file", "15 minutes", "");
	char *out, *err;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (1, 4711, now() - interval '1 hour')");
	ck_assert_int_eq(fx_run_check(conf, &out, &err), 0);
	ck_assert_msg(strstr(out, "no audit group") || strstr(err, "no audit group"), "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_run_once(conf, &out, &err), 0);
	ck_assert_msg(strstr(err, "no audit group: the audit trail stores data subjects and record keys in clear"),
		      "%s", err);
	ck_assert_ptr_eq(strstr(err, "no audit group"), strstr(err, "no audit group: ")); /* once */
	ck_assert_ptr_null(strstr(strstr(err, "no audit group") + 1, "no audit group"));
	free(out);
	free(err);
	test_assert_query_value(conn, "SELECT subject FROM retention.audit_log", 0, NULL, "4711");
	free(conf);
	PQfinish(conn);
}
END_TEST

/* The configuration's problems with the audit group: one line each, naming the key. */
START_TEST(test_audit_group_errors_name_the_key)
{
	static const struct {
		const char *group;
		const char *want;
	} cases[] = {
		{"pseudonymize = [ \"subject\" ];", "audit.key_file: missing required key"},
		{"key_file = \"k\"; pseudonymize = [ \"email\" ];", "audit.pseudonymize: \"email\" is not a field"},
		{"key_file = \"k\"; pseudonymize = [ \"key\", \"key\" ];", "\"key\" is listed twice"},
		{"key_file = \"\";", "audit.key_file: must name a file"},
		{"key_file = \"k\"; salt = \"x\";", "unknown key \"salt\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";"
				       " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\naudit = { %s };\n",
				       cases[i].group);
		struct config_errors errs = {NULL, 0};
		struct config *cfg = test_load_config(text, &errs);
		ck_assert_msg(cfg == NULL && errs.n == 1 && strstr(errs.lines[0], cases[i].want) &&
				      strstr(errs.lines[0], ":2: "),
			      "%s: %s", cases[i].group, test_errs_join(&errs));
		config_errors_clear(&errs);
		free(text);
	}
	{
		/* A key too short to be a secret. */
		char *key = test_write_file("short");
		char *text = xasprintf("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";"
				       " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n"
				       "audit = { key_file = \"%s\"; };\n",
				       key);
		struct config_errors errs = {NULL, 0};
		struct config *cfg = test_load_config(text, &errs);
		ck_assert_ptr_nonnull(cfg);
		ck_assert(!config_read_audit_key(cfg, &errs));
		ck_assert_msg(errs.n == 1 && strstr(errs.lines[0], ":2: audit.key_file: ") &&
				      strstr(errs.lines[0], "holds 5 bytes"),
			      "%s", test_errs_join(&errs));
		config_errors_clear(&errs);
		/* A key others may read is no secret. */
		fx_rewrite(key, "0123456789abcdef0123456789abcdef");
		ck_assert_int_eq(chmod(key, 0644), 0);
		ck_assert(!config_read_audit_key(cfg, &errs));
		ck_assert_msg(errs.n == 1 && strstr(errs.lines[0], "may be read or written by other users (mode 0644)"),
			      "%s", test_errs_join(&errs));
		config_errors_clear(&errs);
		ck_assert_int_eq(chmod(key, 0640), 0);
		ck_assert_msg(config_read_audit_key(cfg, &errs), "%s", test_errs_join(&errs));
		config_free(cfg);
		free(text);
		free(key);
	}
}
END_TEST

/*
 * The trail keeps a key or subject as the record wrote it (or its
 * pseudonym): in a type whose equal values are written apart (numeric 7.50
 * and 7.5, citext's cases), a lookup finds the one spelling and says so,
 * where explain said the policy "never purged" a record it had.
 */
START_TEST(test_lookups_in_a_type_with_many_spellings_say_so)
{
	PGconn *conn = fx_database("spellings");
	char *key = test_path("spellings.key"), *out, *err, *group, *stored;
	char *n = fx_policy("n", "app.n", "id", "c", "1 day", "subject = \"who\";");
	char *i = fx_policy("i", "app.i", "id", "c", "1 day", "");
	char *policies = xasprintf("%s, %s", n, i);
	char *conf = fx_config("spellings", NULL, policies);
	keygen(key);
	group = xasprintf("key_file = \"%s\"; pseudonymize = [\"subject\", \"key\"];", key);
	add_audit_group(conf, group);
	test_exec(conn, "CREATE EXTENSION citext; CREATE SCHEMA app;"
			"CREATE TABLE app.n (id numeric PRIMARY KEY, c timestamptz, who citext);"
			"CREATE TABLE app.i (id int PRIMARY KEY, c timestamptz);"
			"INSERT INTO app.n VALUES (7.50, now() - interval '3 days', 'Alice@Example.org');"
			"INSERT INTO app.i VALUES (5, now() - interval '3 days')");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	stored = independent_pseudonym(key, "7.50");
	ck_assert_int_eq(fx_ctl(conf, "spellings", &out, &err, "--format", "csv", "audit", "--policy", "n", "--key",
				"7.50", NULL),
			 0);
	ck_assert_msg(strstr(out, stored), "%s", out);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "spellings", &out, &err, "--format", "csv", "audit", "--policy", "n", "--key",
				"7.5", NULL),
			 0);
	ck_assert_ptr_null(strstr(out, stored));
	ck_assert_msg(strstr(err, "warning: policy n: values equal to key 7.5 in its type may be written otherwise"),
		      "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "spellings", &out, &err, "--format", "csv", "audit", "--policy", "n", "--subject",
				"alice@example.org", NULL),
			 0);
	ck_assert_msg(strstr(err, "values equal to subject alice@example.org in its type"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(fx_ctl(conf, "spellings", &out, &err, "--format", "json", "explain", "--policy", "n", "--key",
				"7.5", NULL),
			 0);
	ck_assert_msg(strstr(out, "no audit record of policy n has key 7.5 as written") && !strstr(out, "never purged"),
		      "%s", out);
	free(out);
	free(err);
	/* An integer has one spelling: "005" is found as 5, and nothing is said. */
	free(stored);
	stored = independent_pseudonym(key, "5");
	ck_assert_int_eq(fx_ctl(conf, "spellings", &out, &err, "--format", "csv", "audit", "--policy", "i", "--key",
				"005", NULL),
			 0);
	ck_assert_msg(strstr(out, stored), "%s", out);
	ck_assert_msg(strstr(err, "warning") == NULL, "%s", err);
	free(out);
	free(err);
	free(stored);
	free(group);
	free(conf);
	free(policies);
	free(i);
	free(n);
	free(key);
	PQfinish(conn);
}
END_TEST

/* ---- the batch: the deletion and its audit rows, one transaction ---- */

/*
 * The daemon now writes a batch's audit rows in a statement of their own,
 * after the purge statement: a kill -9 between the two must leave both
 * undone. The audit INSERT is held at that point by a lock on the chain's
 * head, the daemon killed there, the lock released.
 */
START_TEST(test_kill_9_between_the_purge_and_its_audit_rows_undoes_both)
{
	PGconn *conn = fx_uploads_db("killaudit");
	PGconn *locker = test_connect_db("killaudit");
	char *conf = fx_uploads_config("killaudit", "15 minutes", "");
	char *log = fx_log_path("killaudit"), *out, *err, *sql, *since;
	int backend;
	pid_t pid;
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at) VALUES"
			" (1, 1, now() - interval '1 hour')");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s", err);
	free(out);
	free(err);
	test_exec(conn, "INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at)"
			" SELECT g, g, now() - interval '1 hour' FROM generate_series(2, 11) g");
	test_exec(locker, "BEGIN; SELECT FROM retention.chain_heads FOR UPDATE");
	since = fx_server_now(conn);
	pid = fx_start_daemon(conf, log);
	backend = fx_daemon_backend(conn, since, 20);
	free(since);
	ck_assert(fx_wait_backend_blocked(conn, backend, 20));
	sql = xasprintf("SELECT query LIKE '%%INSERT INTO retention.audit_log%%' AND state = 'active'"
			" AND backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %d",
			backend);
	test_assert_query_value(conn, sql, 0, NULL, "t");
	free(sql);
	/* The rows are deleted in the open transaction, their audit rows not yet written. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_ne(test_wait_exit(pid, 10), -1);
	test_exec(locker, "COMMIT");
	sql = xasprintf("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = %d)", backend);
	ck_assert(fx_poll_true(conn, sql, 20));
	free(sql);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads"), 10);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log"), 1);
	fx_assert_purge_atomic(conn, 11);
	/* And the next start purges them, the chain continuing from the head. */
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s", err);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM virusdesk.uploads"), 0);
	fx_assert_purge_atomic(conn, 11);
	free(out);
	free(err);
	free(log);
	free(conf);
	PQfinish(locker);
	PQfinish(conn);
}
END_TEST

/*
 * A b-tree entry holds at most about 2.7 kB: a clear-text key or subject
 * larger than that (an application's free-text field) made the audit INSERT
 * fail for its batch, at every try, and so stopped the policy for everyone.
 */
START_TEST(test_a_key_and_subject_too_large_for_a_btree_are_audited)
{
	PGconn *conn = fx_database("bigvalues");
	char *policy = fx_policy("big", "app.t", "id", "c", "1 day", "subject = \"who\";");
	char *conf = fx_config("bigvalues", NULL, policy), *out, *err;
	/* The key as large as the table's own b-tree takes it (incompressible), the subject larger. */
	test_exec(
		conn,
		"CREATE SCHEMA app; CREATE TABLE app.t (id text PRIMARY KEY, c timestamptz, who text);"
		"INSERT INTO app.t SELECT g::text, now() - interval '3 days', 'someone' FROM generate_series(1, 20) g;"
		"INSERT INTO app.t SELECT left(string_agg(md5(g::text), ''), 2690), now() - interval '3 days',"
		" string_agg(md5((g + 1000)::text), '') FROM generate_series(1, 150) g");
	fx_grant(conn, "app");
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.t"), 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE octet_length(record_key)"
					     " = 2690 AND octet_length(subject) = 4800"),
			 1);
	fx_assert_chain_intact(conn);
	free(conf);
	free(policy);
	PQfinish(conn);
}
END_TEST

/* ---- the demo's data ---- */

static void run_psql(const char *db, const char *file, const char *var)
{
	const char *bindir = getenv("PG_BINDIR");
	char *psql = xasprintf("%s/psql", bindir ? bindir : "/usr/bin");
	char *script = xasprintf("%s/%s", test_srcdir(), file);
	char *argv[] = {psql,        "-X", "-q",   "-v", "ON_ERROR_STOP=1", "-d", (char *)db, "-v",
			(char *)var, "-f", script, NULL};
	char *out, *err;
	int status = test_run(argv, &out, &err);
	ck_assert_msg(status == 0, "%s: exit %d: %s", file, status, err);
	free(out);
	free(err);
	free(script);
	free(psql);
}

/*
 * Issue 10's acceptance: after the demo's data is purged with the shipped
 * configuration, no subject of it (e-mail addresses, account ids) is in the
 * retention schema, and retentionctl still finds a purged subject's rows.
 */
START_TEST(test_demo_data_leaves_no_subject_in_the_retention_schema)
{
	PGconn *conn = fx_database("demo_data");
	char *sample = NULL, *conf_text, *conf, *key = test_path("audit.key"), *out, *err, *email, *line, *tables;
	struct config_errors errs = {NULL, 0};
	struct config *cfg;
	size_t len = 0;
	FILE *f;
	char *path = xasprintf("%s/etc/retentiond.conf", test_srcdir());
	keygen(key);
	run_psql("demo_data", "sql/demo/schema.sql", "daemon_role=" TEST_DAEMON_ROLE);
	run_psql("demo_data", "sql/demo/generate.sql", "seed=0.5");
	/* The shipped configuration, with this server's conninfo; its key_file ("audit.key") is beside it. */
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	conf_text = xstrdup("");
	while (getline(&sample, &len, f) >= 0) {
		char *next = strstr(sample, "conninfo = \"")
				     ? xasprintf("%s  conninfo = \"dbname=demo_data user=" TEST_DAEMON_ROLE "\";\n",
						 conf_text)
				     : xasprintf("%s%s", conf_text, sample);
		free(conf_text);
		conf_text = next;
	}
	fclose(f);
	free(sample);
	ck_assert_msg(strstr(conf_text, "key_file = \"audit.key\";"),
		      "the shipped configuration has no audit.key_file");
	conf = test_path("retentiond.conf");
	fx_rewrite(conf, conf_text);
	/* Every subject of every policy, before the purge, kept outside the retention schema. */
	cfg = config_load(conf, &errs);
	ck_assert_msg(cfg != NULL, "%s", test_errs_join(&errs));
	test_exec(conn, "CREATE TABLE public.subjects (policy text, v text)");
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *p = &cfg->policies[i];
		char *sql;
		if (p->subject == NULL)
			continue;
		sql = xasprintf(
			"INSERT INTO public.subjects SELECT '%s', \"%s\"::text FROM %s WHERE \"%s\" IS NOT NULL",
			p->name, p->subject, p->table, p->subject);
		test_exec(conn, sql);
		free(sql);
	}
	ck_assert_int_gt(test_query_ll(conn, "SELECT count(*) FROM public.subjects WHERE v LIKE '%@%'"), 100);
	ck_assert_msg(fx_run_once(conf, &out, &err) == 0, "%s%s", out, err);
	free(out);
	free(err);
	ck_assert_int_gt(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log WHERE subject IS NOT NULL"),
			 100);
	/* No subject's value is any stored subject; no e-mail address is anywhere in any table of the schema. */
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log a JOIN public.subjects s"
					     " ON a.subject = s.v"),
			 0);
	tables = test_query_value(
		conn,
		"SELECT string_agg(format('SELECT t::text FROM %s t', c.oid::regclass), ' UNION ALL ')"
		" FROM pg_class c WHERE c.relnamespace = 'retention'::regnamespace AND c.relkind = 'r'",
		0, NULL);
	line = xasprintf("SELECT count(*) FROM (SELECT DISTINCT v FROM public.subjects WHERE v LIKE '%%@%%') s,"
			 " (%s) r(txt) WHERE strpos(r.txt, s.v) > 0",
			 tables);
	ck_assert_int_eq(test_query_ll(conn, line), 0);
	free(line);
	free(tables);
	/* Still found: a purged subject's rows, by computing its pseudonym. */
	email = test_query_value(
		conn,
		"SELECT s.v FROM public.subjects s WHERE s.policy = 'virusdesk-file-uploads'"
		" AND s.v LIKE '%@%' AND NOT EXISTS (SELECT FROM virusdesk.uploads u WHERE u.email = s.v)"
		" ORDER BY s.v LIMIT 1",
		0, NULL);
	ck_assert_ptr_nonnull(email);
	ck_assert_int_eq(fx_ctl(conf, "demo_data", &out, &err, "--format", "csv", "audit", "--subject", email, NULL),
			 0);
	ck_assert_msg(strstr(out, "virusdesk-file-uploads"), "audit --subject %s found nothing: %s%s", email, out, err);
	free(out);
	free(err);
	fx_assert_chain_intact(conn);
	free(email);
	config_free(cfg);
	free(conf_text);
	free(conf);
	free(key);
	free(path);
	PQfinish(conn);
}
END_TEST

static Suite *audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *pseudonyms = test_tcase("pseudonyms", 120);
	TCase *batch = test_tcase("batch", 120);
	TCase *demo = test_tcase("demo data", 300);
	tcase_add_test(pseudonyms, test_keygen_writes_a_private_key_once);
	tcase_add_test(pseudonyms, test_subjects_and_keys_are_stored_as_pseudonyms);
	tcase_add_test(pseudonyms, test_reload_with_an_unreadable_key_keeps_the_old_configuration);
	tcase_add_test(pseudonyms, test_a_version_1_file_keeps_working_with_a_warning);
	tcase_add_test(pseudonyms, test_audit_group_errors_name_the_key);
	tcase_add_test(pseudonyms, test_lookups_in_a_type_with_many_spellings_say_so);
	tcase_add_test(batch, test_kill_9_between_the_purge_and_its_audit_rows_undoes_both);
	tcase_add_test(batch, test_a_key_and_subject_too_large_for_a_btree_are_audited);
	tcase_add_test(demo, test_demo_data_leaves_no_subject_in_the_retention_schema);
	suite_add_tcase(s, pseudonyms);
	suite_add_tcase(s, batch);
	suite_add_tcase(s, demo);
	return s;
}

int main(void) { return test_run_suite(audit_suite()); }
