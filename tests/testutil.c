#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int test_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define TMPDIR_ENV "RETENTION_TEST_TMPDIR"

static void tmpdir_setup(void)
{
	char *dir = xstrdup("/tmp/retention-test.XXXXXX");
	if (mkdtemp(dir) == NULL)
		ck_abort_msg("mkdtemp: %s", strerror(errno));
	setenv(TMPDIR_ENV, dir, 1);
	free(dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void tmpdir_teardown(void)
{
	const char *dir = getenv(TMPDIR_ENV);
	/* RETENTION_TEST_KEEP=1 leaves the logs and configurations for reading. */
	if (getenv("RETENTION_TEST_KEEP") != NULL)
		fprintf(stderr, "kept %s\n", dir ? dir : "(none)");
	else if (dir != NULL && strncmp(dir, "/tmp/retention-test.", 20) == 0)
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	unsetenv(TMPDIR_ENV);
}

TCase *test_tcase(const char *name, double timeout_seconds)
{
	TCase *tc = tcase_create(name);
	/* Unchecked: run in the runner process, so a failed test's child cannot skip it. */
	tcase_add_unchecked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_set_timeout(tc, timeout_seconds);
	return tc;
}

char *test_path(const char *name)
{
	const char *dir = getenv(TMPDIR_ENV);
	return xasprintf("%s/%s", dir ? dir : "/tmp", name);
}

const char *test_srcdir(void)
{
	const char *d = getenv("abs_top_srcdir");
	return d ? d : ".";
}

const char *test_builddir(void)
{
	const char *d = getenv("abs_top_builddir");
	return d ? d : ".";
}

char *test_write_file(const char *text)
{
	char *path = test_path("file.XXXXXX");
	int fd = mkstemp(path);
	size_t len = strlen(text);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

struct config *test_load_config(const char *text, struct config_errors *errs)
{
	char *path = test_write_file(text);
	struct config *cfg = config_load(path, errs);
	unlink(path);
	free(path);
	return cfg;
}

char *test_errs_join(const struct config_errors *errs)
{
	char *out = xstrdup("");
	for (size_t i = 0; i < errs->n; i++) {
		char *next = xasprintf("%s[%s]", out, errs->lines[i]);
		free(out);
		out = next;
	}
	return out;
}

bool test_errs_single(const struct config_errors *errs, ...)
{
	va_list ap;
	const char *frag;
	bool ok = errs->n == 1;
	va_start(ap, errs);
	while (ok && (frag = va_arg(ap, const char *)) != NULL)
		ok = strstr(errs->lines[0], frag) != NULL;
	va_end(ap);
	return ok;
}

PGconn *test_connect(void)
{
	PGconn *conn = PQconnectdb("");
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect: %s", PQerrorMessage(conn));
	return conn;
}

void test_exec(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

char *test_query_value(PGconn *conn, const char *sql, int n_params, const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
	char *out = NULL;
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		out = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return out;
}

void test_assert_query_value(PGconn *conn, const char *sql, int n_params, const char *const *params, const char *want)
{
	char *got = test_query_value(conn, sql, n_params, params);
	ck_assert_msg(got != NULL && strcmp(got, want) == 0, "%s: got %s, want %s", sql, got ? got : "no value", want);
	free(got);
}

long long test_query_ll(PGconn *conn, const char *sql)
{
	char *v = test_query_value(conn, sql, 0, NULL);
	long long n;
	ck_assert_msg(v != NULL, "%s returned no value", sql);
	n = atoll(v);
	free(v);
	return n;
}

PGconn *test_connect_db(const char *db)
{
	char *conninfo = xasprintf("dbname=%s", db);
	PGconn *conn = PQconnectdb(conninfo);
	free(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect: %s", PQerrorMessage(conn));
	return conn;
}

PGconn *test_fresh_database(const char *name)
{
	PGconn *admin = test_connect();
	char *sql = xasprintf("DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
	char *conninfo;
	PGconn *conn;
	test_exec(admin, sql);
	free(sql);
	sql = xasprintf("CREATE DATABASE \"%s\" TEMPLATE template0", name);
	test_exec(admin, sql);
	free(sql);
	PQfinish(admin);
	conninfo = xasprintf("dbname=%s", name);
	conn = PQconnectdb(conninfo);
	free(conninfo);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect: %s", PQerrorMessage(conn));
	return conn;
}

void test_daemon_role(PGconn *conn, const char *db, const char *schemas)
{
	const char *bindir = getenv("PG_BINDIR");
	char *psql = xasprintf("%s/psql", bindir ? bindir : "/usr/bin");
	char *script = xasprintf("%s/sql/daemon-role.sql", test_srcdir());
	char *argv[] = {psql, "-X", "-q", "-d", (char *)db, "-v", "role=" TEST_DAEMON_ROLE, "-f", script, NULL};
	char *out, *err;
	int status = test_run(argv, &out, &err);
	ck_assert_msg(status == 0, "daemon-role.sql: exit %d: %s%s", status, out, err);
	free(out);
	free(err);
	if (schemas) {
		char *sql = xasprintf("GRANT USAGE ON SCHEMA %s TO " TEST_DAEMON_ROLE ";"
				      "GRANT SELECT, DELETE, UPDATE ON ALL TABLES IN SCHEMA %s TO " TEST_DAEMON_ROLE,
				      schemas, schemas);
		test_exec(conn, sql);
		free(sql);
	}
	free(psql);
	free(script);
}

static char *slurp_fd(int fd)
{
	char *buf = NULL;
	size_t len = 0;
	char chunk[4096];
	ssize_t got;
	while ((got = read(fd, chunk, sizeof(chunk))) > 0 || (got < 0 && errno == EINTR)) {
		if (got < 0)
			continue;
		buf = xrealloc(buf, len + (size_t)got + 1);
		memcpy(buf + len, chunk, (size_t)got);
		len += (size_t)got;
	}
	if (buf == NULL)
		buf = xstrdup("");
	else
		buf[len] = '\0';
	return buf;
}

int test_run(char *const argv[], char **out, char **err)
{
	char *out_path = test_path("out.XXXXXX");
	char *err_path = test_path("err.XXXXXX");
	int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
	int status;
	pid_t pid;
	ck_assert(out_fd >= 0 && err_fd >= 0);
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(out_fd, 1);
		dup2(err_fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	lseek(out_fd, 0, SEEK_SET);
	lseek(err_fd, 0, SEEK_SET);
	if (out)
		*out = slurp_fd(out_fd);
	if (err)
		*err = slurp_fd(err_fd);
	close(out_fd);
	close(err_fd);
	unlink(out_path);
	unlink(err_path);
	free(out_path);
	free(err_path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pid_t test_spawn(char *const argv[], const char *log_path)
{
	pid_t pid;
	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(log, 1);
		dup2(log, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

double test_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int test_wait_exit(pid_t pid, double seconds)
{
	double deadline = test_now() + seconds;
	int status;
	do {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		usleep(10000);
	} while (test_now() < deadline);
	return -1;
}

bool test_poll(bool (*cond)(void *arg), void *arg, double seconds)
{
	double deadline = test_now() + seconds;
	for (;;) {
		if (cond(arg))
			return true;
		if (test_now() >= deadline)
			return false;
		usleep(20000);
	}
}

bool test_file_contains(const char *path, const char *needle)
{
	int fd = open(path, O_RDONLY);
	char *text;
	bool found;
	if (fd < 0)
		return false;
	text = slurp_fd(fd);
	close(fd);
	found = strstr(text, needle) != NULL;
	free(text);
	return found;
}
