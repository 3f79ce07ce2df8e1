#ifndef RETENTIOND_TESTUTIL_H
#define RETENTIOND_TESTUTIL_H

#include <check.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

/* Runs every test of S and returns main's exit status: EXIT_FAILURE if any failed. */
int test_run_suite(Suite *s);

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
/* A fresh database, created from template0, and a connection to it. */
PGconn *test_fresh_database(const char *name);

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
