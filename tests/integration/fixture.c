/*
 * fixture.c -- shared by the integration suites (see fixture.h).
 */
#include "fixture.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit.h"
#include "schema.h"
#include "util.h"

PGconn *fx_database(const char *db)
{
	PGconn *conn = test_fresh_database(db);
	char *err = NULL;
	ck_assert_msg(schema_migrate(conn, &err) == schema_n_steps, "migrate: %s", err);
	test_daemon_role(conn, db, NULL);
	return conn;
}

void fx_grant(PGconn *conn, const char *schemas)
{
	char *sql = xasprintf("GRANT USAGE ON SCHEMA %s TO " TEST_DAEMON_ROLE ";"
			      "GRANT SELECT, DELETE, UPDATE ON ALL TABLES IN SCHEMA %s TO " TEST_DAEMON_ROLE,
			      schemas, schemas);
	test_exec(conn, sql);
	free(sql);
}

PGconn *fx_uploads_db(const char *db)
{
	PGconn *conn = fx_database(db);
	test_exec(conn, "CREATE SCHEMA virusdesk;"
			"CREATE TABLE virusdesk.uploads (id bigint PRIMARY KEY, account_id int,"
			" scan_completed_at timestamptz, purpose text, email text, name text, content bytea);"
			"CREATE INDEX ON virusdesk.uploads (scan_completed_at);"
			"CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF scan_completed_at"
			" ON virusdesk.uploads FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();"
			"GRANT USAGE ON SCHEMA virusdesk TO " TEST_DAEMON_ROLE ";"
			"GRANT SELECT, DELETE, UPDATE ON virusdesk.uploads TO " TEST_DAEMON_ROLE);
	return conn;
}

char *fx_config(const char *db, const char *daemon_extra, const char *policies)
{
	const char *extra = daemon_extra ? daemon_extra : "";
	/* An hour unless the test sets its own: nothing but the test's own actions wakes the daemon. */
	char *text = xasprintf("database = { conninfo = \"dbname=%s user=" TEST_DAEMON_ROLE "\"; };\n"
			       "daemon = { instance = \"%s-1\"; %s log_level = \"debug\"; %s };\n"
			       "policies = ( %s );\n",
			       db, db, strstr(extra, "resync_interval") ? "" : "resync_interval = \"1 hour\";", extra,
			       policies);
	char *path = test_write_file(text);
	free(text);
	return path;
}

char *fx_policy(const char *name, const char *table, const char *key, const char *clock, const char *retain,
		const char *extra)
{
	return xasprintf("{ name = \"%s\"; service = \"s\"; source = \"s\"; table = \"%s\"; key = \"%s\";"
			 " clock = \"%s\"; retain = \"%s\"; %s }",
			 name, table, key, clock, retain, extra ? extra : "");
}

char *fx_uploads_config(const char *db, const char *retain, const char *extra)
{
	char *policy =
		xasprintf("{ name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";\n"
			  "  source = \"privacy policy: VirusDesk, online scan\"; table = \"virusdesk.uploads\";\n"
			  "  key = \"id\"; clock = \"scan_completed_at\"; subject = \"account_id\";\n"
			  "  retain = \"%s\"; %s }",
			  retain, extra);
	char *path = fx_config(db, NULL, policy);
	free(policy);
	return path;
}

void fx_rewrite(const char *path, const char *text)
{
	char *tmp = xasprintf("%s.new", path);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	/* Atomically, as an operator's editor or config manager would: a SIGHUP never reads half a file. */
	ck_assert_int_eq(rename(tmp, path), 0);
	free(tmp);
}

char *fx_log_path(const char *name)
{
	char *file = xasprintf("%s.log", name);
	char *path = test_path(file);
	free(file);
	unlink(path);
	return path;
}

static char *daemon_path(void) { return xasprintf("%s/src/retentiond", test_builddir()); }

pid_t fx_start_daemon(const char *conf, const char *log)
{
	char *bin = daemon_path();
	char *argv[] = {bin, "-c", (char *)conf, NULL};
	pid_t pid = test_spawn(argv, log);
	free(bin);
	return pid;
}

void fx_stop_daemon(pid_t pid)
{
	int status;
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	status = test_wait_exit(pid, 30);
	ck_assert_msg(status != -1, "daemon did not exit within 30 s of SIGTERM");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "daemon exit status %d", status);
}

static int run_daemon_with(const char *conf, const char *flag, char **out, char **err)
{
	char *bin = daemon_path();
	char *argv[] = {bin, "-c", (char *)conf, (char *)flag, NULL};
	int status = test_run(argv, out, err);
	free(bin);
	return status;
}

int fx_run_once(const char *conf, char **out, char **err) { return run_daemon_with(conf, "--once", out, err); }

int fx_run_check(const char *conf, char **out, char **err) { return run_daemon_with(conf, "--check", out, err); }

/* ---- logs ---- */

static char *read_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char *text;
	long len;
	if (f == NULL)
		return xstrdup("");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = xmalloc((size_t)len + 1);
	len = (long)fread(text, 1, (size_t)len, f);
	text[len] = '\0';
	fclose(f);
	return text;
}

long fx_log_mark(const char *log)
{
	char *text = read_log(log);
	long len = (long)strlen(text);
	free(text);
	return len;
}

int fx_log_count_after(const char *log, long mark, const char *needle)
{
	char *text = read_log(log);
	int n = 0;
	if ((long)strlen(text) >= mark)
		for (const char *p = text + mark; (p = strstr(p, needle)) != NULL; p += strlen(needle))
			n++;
	free(text);
	return n;
}

long fx_log_find(const char *log, long mark, const char *needle)
{
	char *text = read_log(log), *at = NULL;
	long pos;
	if ((long)strlen(text) >= mark)
		at = strstr(text + mark, needle);
	pos = at ? (long)(at - text) : -1;
	free(text);
	return pos;
}

int fx_log_count_between(const char *log, long mark, const char *stop, const char *needle)
{
	char *text = read_log(log), *end;
	int n = 0;
	if ((long)strlen(text) >= mark) {
		if ((end = strstr(text + mark, stop)) != NULL)
			*end = '\0';
		for (const char *p = text + mark; (p = strstr(p, needle)) != NULL; p += strlen(needle))
			n++;
	}
	free(text);
	return n;
}

bool fx_log_has_after(const char *log, long mark, const char *needle)
{
	return fx_log_count_after(log, mark, needle) > 0;
}

struct log_wait {
	const char *path;
	long mark;
	const char *needle;
};

static bool log_has(void *arg)
{
	struct log_wait *w = arg;
	return fx_log_has_after(w->path, w->mark, w->needle);
}

void fx_wait_for_log_after(const char *log, long mark, const char *needle, double seconds)
{
	struct log_wait w = {log, mark, needle};
	if (!test_poll(log_has, &w, seconds)) {
		char *text = read_log(log);
		size_t len = strlen(text);
		ck_abort_msg("\"%s\" not logged within %.0f s; the log ends: %s", needle, seconds,
			     len > 1500 ? text + len - 1500 : text);
	}
}

struct log_either {
	const char *path;
	long mark;
	const char *a, *b;
};

static bool log_has_either(void *arg)
{
	struct log_either *e = arg;
	return fx_log_has_after(e->path, e->mark, e->a) || fx_log_has_after(e->path, e->mark, e->b);
}

bool fx_wait_for_either_after(const char *log, long mark, const char *a, const char *b, double seconds)
{
	struct log_either e = {log, mark, a, b};
	return test_poll(log_has_either, &e, seconds);
}

struct log_count {
	const char *path, *needle;
	int n;
};

static bool log_count_reached(void *arg)
{
	struct log_count *c = arg;
	return fx_log_count_after(c->path, 0, c->needle) >= c->n;
}

bool fx_wait_log_count(const char *log, const char *needle, int n, double seconds)
{
	struct log_count c = {log, needle, n};
	return test_poll(log_count_reached, &c, seconds);
}

struct query_true {
	PGconn *conn;
	const char *sql;
};

static bool query_is_true(void *arg)
{
	struct query_true *q = arg;
	char *v = test_query_value(q->conn, q->sql, 0, NULL);
	bool yes = v && strcmp(v, "t") == 0;
	free(v);
	return yes;
}

bool fx_poll_true(PGconn *conn, const char *sql, double seconds)
{
	struct query_true q = {conn, sql};
	return test_poll(query_is_true, &q, seconds);
}

void fx_wait_for_log(const char *log, const char *needle, double seconds)
{
	fx_wait_for_log_after(log, 0, needle, seconds);
}

/* ---- rows and the audit trail ---- */

bool fx_row_exists(PGconn *conn, const char *table, const char *id)
{
	const char *params[1] = {id};
	char *sql = xasprintf("SELECT 1 FROM %s WHERE id::text = $1", table);
	char *v = test_query_value(conn, sql, 1, params);
	bool found = v != NULL;
	free(v);
	free(sql);
	return found;
}

struct row_gone {
	PGconn *conn;
	const char *table, *id;
};

static bool row_is_gone(void *arg)
{
	struct row_gone *r = arg;
	return !fx_row_exists(r->conn, r->table, r->id);
}

bool fx_wait_row_gone(PGconn *conn, const char *table, const char *id, double seconds)
{
	struct row_gone r = {conn, table, id};
	return test_poll(row_is_gone, &r, seconds);
}

long long fx_audit_count(PGconn *conn, const char *policy, const char *key)
{
	const char *params[2] = {policy, key};
	char *v = test_query_value(conn,
				   "SELECT count(*) FROM retention.audit_log WHERE ($1::text IS NULL OR policy = $1)"
				   " AND record_key = $2",
				   2, params);
	long long n = atoll(v);
	free(v);
	return n;
}

void fx_assert_chain_intact(PGconn *conn)
{
	struct audit_verify v = {NULL, 0, NULL};
	char *err = NULL;
	ck_assert_msg(audit_verify_stream(conn, NULL, &v, &err), "verify: %s", err);
	for (size_t i = 0; i < v.n; i++)
		ck_assert_msg(v.chains[i].problem == NULL, "chain %s broken: %s", v.chains[i].policy,
			      v.chains[i].problem);
	audit_verify_free(&v);
}

void fx_fill_backlog(PGconn *conn, int rows)
{
	char *sql = xasprintf("INSERT INTO virusdesk.uploads (id, account_id, scan_completed_at, content)"
			      " SELECT g, g %% 1000, now() - interval '1 day' + g * interval '1 millisecond',"
			      " convert_to(repeat('x', 200), 'UTF8') FROM generate_series(1, %d) g",
			      rows);
	test_exec(conn, sql);
	free(sql);
}

void fx_assert_purge_atomic(PGconn *conn, int rows)
{
	char *sql = xasprintf("SELECT count(*) FROM generate_series(1, %d) k"
			      " LEFT JOIN virusdesk.uploads u ON u.id = k"
			      " LEFT JOIN (SELECT record_key, count(*) AS n FROM retention.audit_log GROUP BY 1) a"
			      "   ON a.record_key = k::text"
			      " WHERE u.id IS NULL AND coalesce(a.n, 0) <> 1",
			      rows);
	ck_assert_int_eq(test_query_ll(conn, sql), 0);
	free(sql);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM retention.audit_log a"
					     " JOIN virusdesk.uploads u ON u.id = a.record_key::bigint"),
			 0);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM (SELECT record_key FROM retention.audit_log"
					     " GROUP BY record_key HAVING count(*) > 1) d"),
			 0);
	fx_assert_chain_intact(conn);
}

void fx_policy_prepare(struct fx_policy *fp, PGconn *conn, const char *conf, const char *name)
{
	struct config_errors errs = {NULL, 0};
	char *err = NULL;
	memset(fp, 0, sizeof(*fp));
	fp->cfg = config_load(conf, &errs);
	ck_assert_msg(fp->cfg != NULL, "%s", errs.n ? errs.lines[0] : "?");
	fp->policy = config_find_policy(fp->cfg, name);
	ck_assert_ptr_nonnull(fp->policy);
	ck_assert_msg(policy_prepare(conn, fp->cfg, fp->policy, &fp->shape, &fp->sql, &err), "prepare: %s", err);
}

void fx_policy_free(struct fx_policy *fp)
{
	policy_sql_free(&fp->sql);
	policy_shape_free(&fp->shape);
	config_free(fp->cfg);
}

long long fx_purge_uncommitted(PGconn *conn, struct fx_policy *fp)
{
	const char *params[POLICY_N_BASE_PARAMS + 2 + 16], *extra[2];
	Oid types[POLICY_N_BASE_PARAMS + 2 + 16];
	PGresult *res;
	long long purged;
	int n;
	n = policy_params(&fp->sql, params, types, NULL, 0, false);
	/* The daemon's own BEGIN and locks; PQexec keeps the last result, the locks'. */
	res = PQexec(conn, fp->sql.begin);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0, "lock: %s",
		      PQresultErrorMessage(res));
	PQclear(res);
	res = PQexecParams(conn, fp->sql.lock, n, types, params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "lock rows: %s", PQresultErrorMessage(res));
	if (atoll(PQgetvalue(res, 0, LOCK_COUNT)) == 0) {
		PQclear(res);
		return 0;
	}
	extra[0] = xstrdup(PQgetvalue(res, 0, LOCK_TABLE_OIDS));
	extra[1] = xstrdup(PQgetvalue(res, 0, LOCK_TIDS));
	PQclear(res);
	n = policy_params(&fp->sql, params, types, extra, 2, true);
	res = PQexecParams(conn, fp->sql.purge, n, types, params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "purge: %s", PQresultErrorMessage(res));
	purged = atoll(PQgetvalue(res, 0, PURGE_PURGED));
	if (purged > 0) {
		/* And its audit rows, as the daemon writes them after the purge statement. */
		struct audit_batch ab = {
			.policy = fp->sql.params[POLICY_PARAM_NAME],
			.service = fp->sql.params[POLICY_PARAM_SERVICE],
			.source = fp->sql.params[POLICY_PARAM_SOURCE],
			.table = fp->sql.params[POLICY_PARAM_TABLE],
			.action = fp->sql.params[POLICY_PARAM_ACTION],
			.instance = fp->sql.params[POLICY_PARAM_INSTANCE],
			.cause = "schedule",
		};
		char *audit[AUDIT_INSERT_N_PARAMS] = {NULL};
		struct audit_anchor head;
		PGresult *ins;
		ck_assert(audit_batch_params(&ab, res, purged, audit, &head));
		ins = PQexecParams(conn, audit_insert_sql, AUDIT_INSERT_N_PARAMS, NULL, (const char *const *)audit,
				   NULL, NULL, 0);
		ck_assert_msg(PQresultStatus(ins) == PGRES_COMMAND_OK, "audit rows: %s", PQresultErrorMessage(ins));
		PQclear(ins);
		for (int i = 0; i < AUDIT_INSERT_N_PARAMS; i++)
			free(audit[i]);
	}
	PQclear(res);
	free((char *)extra[0]);
	free((char *)extra[1]);
	return purged;
}

struct blocked {
	PGconn *observer;
	int pid;
};

static bool backend_blocked(void *arg)
{
	struct blocked *b = arg;
	char pid[16];
	const char *params[1] = {pid};
	char *v;
	bool blocked;
	snprintf(pid, sizeof(pid), "%d", b->pid);
	v = test_query_value(b->observer, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1::int", 1,
			     params);
	blocked = v && strcmp(v, "Lock") == 0;
	free(v);
	return blocked;
}

bool fx_wait_backend_blocked(PGconn *observer, int pid, double seconds)
{
	struct blocked b = {observer, pid};
	return test_poll(backend_blocked, &b, seconds);
}

struct backend {
	PGconn *observer;
	const char *since;
	int pid;
};

static bool daemon_connected(void *arg)
{
	struct backend *b = arg;
	const char *params[1] = {b->since};
	char *v = test_query_value(b->observer,
				   "SELECT pid FROM pg_stat_activity WHERE application_name = 'retentiond'"
				   " AND usename = '" TEST_DAEMON_ROLE "' AND backend_start > $1::timestamptz"
				   " ORDER BY backend_start DESC LIMIT 1",
				   1, params);
	b->pid = v ? atoi(v) : 0;
	free(v);
	return b->pid != 0;
}

char *fx_server_now(PGconn *observer) { return test_query_value(observer, "SELECT clock_timestamp()::text", 0, NULL); }

int fx_daemon_backend(PGconn *observer, const char *since, double seconds)
{
	struct backend b = {observer, since, 0};
	ck_assert_msg(test_poll(daemon_connected, &b, seconds), "the daemon did not connect within %.0f s", seconds);
	return b.pid;
}

int fx_ctl(const char *conf, const char *db, char **out, char **err, ...)
{
	char *argv[40];
	char *conninfo = xasprintf("dbname=%s", db);
	int argc = 0, status;
	va_list ap;
	const char *arg;
	argv[argc++] = xasprintf("%s/src/retentionctl", test_builddir());
	argv[argc++] = "-c";
	argv[argc++] = (char *)conf;
	argv[argc++] = "-d";
	argv[argc++] = conninfo;
	va_start(ap, err);
	while ((arg = va_arg(ap, const char *)) != NULL && argc < 39)
		argv[argc++] = (char *)arg;
	va_end(ap);
	argv[argc] = NULL;
	status = test_run(argv, out, err);
	free(argv[0]);
	free(conninfo);
	return status;
}

/* The CPU seconds PID has used, user and system. */
double fx_cpu_seconds(pid_t pid)
{
	char *path = xasprintf("/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	unsigned long utime = 0, stime = 0;
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime), 2);
	fclose(f);
	free(path);
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}
