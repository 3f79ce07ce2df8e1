#ifndef RETENTIOND_TESTUTIL_H
#define RETENTIOND_TESTUTIL_H

#include <check.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

/* Runs every test of S and returns main's exit status: EXIT_FAILURE if any failed. */
int test_run_suite(Suite *s);

/*
 * A test case whose files (test_write_file, test_path) live in a directory
 * of their own, made and removed by the runner process around the case: a
 * test that fails or crashes in its forked child leaves nothing behind.
 */
TCase *test_tcase(const char *name, double timeout_seconds);
/* DIR/NAME in the running test case's directory (or /tmp outside one), malloc'd. */
char *test_path(const char *name);

/* Paths in the source and build trees, from make check's environment. */
const char *test_srcdir(void);
const char *test_builddir(void);

/* Writes TEXT to a new temporary file and returns its path (malloc'd). */
char *test_write_file(const char *text);

/* Loads TEXT through config_load, as the programs do. */
struct config *test_load_config(const char *text, struct config_errors *errs);
/* True if exactly one problem was reported and it contains every NULL-terminated fragment. */
bool test_errs_single(const struct config_errors *errs, ...);
/* Prints the problems (for failure messages). */
char *test_errs_join(const struct config_errors *errs);

/* ---- integration tests: a PostgreSQL started by tests/pg-harness ---- */

PGconn *test_connect(void);
/* Runs SQL (may hold several statements); fails the test on error. */
void test_exec(PGconn *conn, const char *sql);
/* Runs one query with text params and returns the first column of its first row (malloc'd, NULL if none). */
char *test_query_value(PGconn *conn, const char *sql, int n_params, const char *const *params);
long long test_query_ll(PGconn *conn, const char *sql);
/* Fails the test unless the query's first value (as test_query_value) is WANT. */
void test_assert_query_value(PGconn *conn, const char *sql, int n_params, const char *const *params, const char *want);
/* A connection to database DB of the test's server, as its superuser. */
PGconn *test_connect_db(const char *db);
/* A fresh database, created from template0, and a connection to it. */
PGconn *test_fresh_database(const char *name);

/* The role integration tests run retentiond as: made by sql/daemon-role.sql, never a superuser. */
#define TEST_DAEMON_ROLE "retentiond_test"
/*
 * Runs sql/daemon-role.sql through psql in DB for TEST_DAEMON_ROLE (after
 * the schema is installed), then gives it every table of SCHEMAS (a
 * comma-separated list, may be NULL) as an operator would for its policies.
 */
void test_daemon_role(PGconn *conn, const char *db, const char *schemas);

/* Runs ARGV (argv[0] a path), captures stdout and stderr, returns the exit status (or 128+signal). */
int test_run(char *const argv[], char **out, char **err);

/*
 * Starts ARGV in the background with stderr sent to LOG_PATH. The child is
 * killed if the test process dies, so a failing test leaves nothing behind.
 */
pid_t test_spawn(char *const argv[], const char *log_path);
/* Waits up to SECONDS for PID to exit; returns its status or -1 on timeout. */
int test_wait_exit(pid_t pid, double seconds);

/* Polls COND every 20 ms until it is true or SECONDS pass; returns its last value. */
bool test_poll(bool (*cond)(void *arg), void *arg, double seconds);

/* True if the file at PATH contains NEEDLE. */
bool test_file_contains(const char *path, const char *needle);

double test_now(void);

#endif
