/*
 * check_metrics.c -- GET /metrics from a running daemon, over TCP and a
 * unix socket: the values against what the database says, the format
 * checked by Prometheus' own promtool, 404 and 405 for anything else, a
 * listen address that cannot be had, and clients that would hold the
 * daemon's descriptors: idle, trickling, or arriving when it has none left.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "util.h"

/* A TCP port on 127.0.0.1 nobody listens on now (the kernel's pick). */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* Connects to PORT on 127.0.0.1, or to the unix socket PATH (PORT 0); -1 if nobody listens. */
static int dial(int port, const char *path)
{
	int fd;
	if (port) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((unsigned short)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fd);
			return -1;
		}
	} else {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* One HTTP/1.0 request; the status code, the head in *HEAD (malloc'd, unless HEAD is NULL), the body in *BODY. */
static int http_with_head(int port, const char *path, const char *method, const char *target, char **head, char **body)
{
	int fd = dial(port, path), code = 0;
	char *request = xasprintf("%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, target);
	size_t len = 0, cap = 65536;
	char *buf = xcalloc(cap + 1, 1), *sep;
	struct timeval patience = {15, 0};
	ssize_t n;
	ck_assert_msg(fd >= 0, "nobody listens on port %d / %s", port, path ? path : "");
	/* A daemon that never answers fails the test here, not at the suite's timeout. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
	ck_assert_int_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	while ((n = read(fd, buf + len, cap - len)) > 0) {
		len += (size_t)n;
		if (len == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
	}
	buf[len] = '\0';
	close(fd);
	free(request);
	sscanf(buf, "HTTP/1.%*d %d", &code);
	sep = strstr(buf, "\r\n\r\n");
	*body = xstrdup(sep ? sep + 4 : "");
	if (head) {
		if (sep)
			*sep = '\0';
		*head = xstrdup(buf);
	}
	free(buf);
	return code;
}

static int http(int port, const char *path, const char *method, const char *target, char **body)
{
	return http_with_head(port, path, method, target, NULL, body);
}

/* The value of the series NAME (with its labels, exactly as written) in TEXT, as text; fails if absent. */
static char *value_of(const char *text, const char *name)
{
	char *needle = xasprintf("\n%s ", name), *at = strstr(text, needle), *v;
	ck_assert_msg(at != NULL, "no series %s in:\n%s", name, text);
	at += strlen(needle);
	v = xcalloc(strcspn(at, "\n") + 1, 1);
	memcpy(v, at, strcspn(at, "\n"));
	free(needle);
	return v;
}

static void assert_series(const char *text, const char *name, const char *want)
{
	char *v = value_of(text, name);
	ck_assert_msg(strcmp(v, want) == 0, "%s is %s, the database says %s", name, v, want);
	free(v);
}

/* promtool check metrics on TEXT: Prometheus' own parser and linter. */
static void assert_promtool_accepts(const char *text)
{
	char *file = test_write_file(text);
	char *cmd = xasprintf("promtool check metrics < %s 2>&1", file);
	FILE *p = popen(cmd, "r");
	char out[4096] = "";
	size_t n;
	int status;
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	status = pclose(p);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "promtool check metrics: %s", out);
	free(cmd);
	free(file);
}

/* Scrapes until the body has NEEDLE (a whole line, with its newline before); fails after SECONDS. */
static char *scrape_until(int port, const char *needle, double seconds)
{
	struct timespec start, now, pause = {0, 100 * 1000 * 1000};
	char *body;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		ck_assert_int_eq(http(port, NULL, "GET", "/metrics", &body), 200);
		if (strstr(body, needle))
			return body;
		clock_gettime(CLOCK_MONOTONIC, &now);
		ck_assert_msg((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 <
				      seconds,
			      "%s never appeared in:\n%s", needle, body);
		free(body);
		nanosleep(&pause, NULL);
	}
}

static char *metrics_config(const char *db, const char *listen)
{
	char *daemon = xasprintf("resync_interval = \"1 second\"; metrics_listen = \"%s\";", listen);
	char *p = fx_policy("p", "app.items", "id", "closed_at", "1 day", "batch = 50;");
	char *q = fx_policy("q", "app.others", "id", "closed_at", "30 days", "");
	char *policies = xasprintf("%s, %s", p, q);
	if (strcmp(db, "metrics") == 0) {
		/* Its record (a clock of -infinity) cannot be deleted: quarantined, it stays overdue. */
		char *old = fx_policy("old", "app.ancient", "id", "closed_at", "1 day", "");
		char *three = xasprintf("%s, %s", policies, old);
		free(policies);
		free(old);
		policies = three;
	}
	char *conf = fx_config(db, daemon, policies);
	free(daemon);
	free(p);
	free(q);
	free(policies);
	return conf;
}

/* Gives the configuration file CONF the text of OTHER: what a reload then reads. */
static void rewrite_as(const char *conf, const char *other)
{
	FILE *f = fopen(other, "r");
	char buf[8192];
	size_t n;
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fx_rewrite(conf, buf);
}

/* The two tables of metrics_config(), empty. */
static void empty_tables(PGconn *conn)
{
	test_exec(conn, "CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, closed_at timestamptz);"
			"CREATE TABLE app.others (id int PRIMARY KEY, closed_at timestamptz)");
	fx_grant(conn, "app");
}

/* A daemon on CONF over empty tables, once it has answered a scrape on PORT. */
static pid_t start_serving(PGconn *conn, const char *conf, const char *log, int port)
{
	char *body;
	pid_t pid;
	empty_tables(conn);
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "serving metrics on 127.0.0.1:", 10);
	ck_assert_int_eq(http(port, NULL, "GET", "/metrics", &body), 200);
	free(body);
	return pid;
}

/*
 * Done when: metrics values checked against the database (overdue, held,
 * quarantined, purged totals, histogram count), promtool check metrics
 * passes, unknown paths and methods get 404/405.
 */
START_TEST(test_metrics_match_the_database)
{
	PGconn *conn = fx_database("metrics");
	int port = free_port();
	char *listen = xasprintf("127.0.0.1:%d", port);
	char *conf = metrics_config("metrics", listen);
	char *log = fx_log_path("metrics");
	char *body, *want;
	pid_t pid;
	test_exec(conn,
		  "CREATE SCHEMA app;"
		  "CREATE TABLE app.items (id int PRIMARY KEY, closed_at timestamptz);"
		  "CREATE TABLE app.others (id int PRIMARY KEY, closed_at timestamptz);"
		  "INSERT INTO app.items SELECT g, now() - interval '3 days' FROM generate_series(1, 120) g;"
		  "INSERT INTO app.others SELECT g, now() - interval '1 day' FROM generate_series(1, 5) g;"
		  "CREATE FUNCTION app.veto() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		  "  IF OLD.id = 77 THEN RAISE EXCEPTION 'record 77 is under audit'; END IF; RETURN OLD; END $$;"
		  "CREATE TRIGGER veto BEFORE DELETE ON app.items FOR EACH ROW EXECUTE FUNCTION app.veto();"
		  "CREATE FUNCTION app.veto2() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
		  "  RAISE EXCEPTION 'kept'; END $$;"
		  "CREATE TABLE app.reports (id int PRIMARY KEY, item int REFERENCES app.items ON DELETE RESTRICT);"
		  "INSERT INTO app.reports VALUES (1, 9);"
		  "CREATE TABLE app.ancient (id int PRIMARY KEY, closed_at timestamptz);"
		  "INSERT INTO app.ancient VALUES (1, '-infinity');"
		  "CREATE TRIGGER veto BEFORE DELETE ON app.ancient FOR EACH ROW EXECUTE FUNCTION app.veto2();"
		  "SELECT retention.place_hold('p', '5', NULL, 'legal', NULL);"
		  "SELECT retention.place_hold('p', '6', NULL, 'legal', NULL)");
	fx_grant(conn, "app");
	pid = fx_start_daemon(conf, log);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 4 FROM app.items", 15));
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 1 FROM retention.quarantine WHERE policy = 'p'", 5));
	fx_wait_for_log(log, "serving metrics on 127.0.0.1:", 1);
	/* The counts follow the purge run and the next resync. */
	body = scrape_until(port, "\nretentiond_quarantined_records{policy=\"p\"} 1\n", 10);
	assert_series(body, "retentiond_database_connected", "1");
	assert_series(body, "retentiond_database_primary", "1");
	assert_series(body, "retentiond_throttled{reason=\"standby\"}", "0");
	/* Overdue: due, not held and not kept by a reference, the quarantined one counted; held: the two held. */
	want = test_query_value(conn, "SELECT count(*) FROM app.items WHERE id NOT IN (5, 6, 9)", 0, NULL);
	assert_series(body, "retentiond_overdue_records{policy=\"p\"}", want);
	free(want);
	assert_series(body, "retentiond_held_records{policy=\"p\"}", "2");
	assert_series(body, "retentiond_referenced_records{policy=\"p\"}", "1");

	want = test_query_value(conn, "SELECT count(*) FROM retention.quarantine WHERE policy = 'p'", 0, NULL);
	assert_series(body, "retentiond_quarantined_records{policy=\"p\"}", want);
	free(want);
	want = test_query_value(conn, "SELECT count(*) FROM retention.audit_log WHERE policy = 'p'", 0, NULL);
	assert_series(body, "retentiond_purged_records_total{policy=\"p\",action=\"delete\",cause=\"schedule\"}", want);
	assert_series(body, "retentiond_purge_lateness_seconds_count{policy=\"p\"}", want);
	/* Every record was two days late: none in a bucket below a day, all in the one of a day. */
	assert_series(body, "retentiond_purge_lateness_seconds_bucket{policy=\"p\",le=\"3600\"}", "0");
	assert_series(body, "retentiond_purge_lateness_seconds_bucket{policy=\"p\",le=\"+Inf\"}", want);
	free(want);
	assert_series(body, "retentiond_purged_records_total{policy=\"p\",action=\"delete\",cause=\"request\"}", "0");
	/* Policy q: nothing due yet, nothing purged. */
	assert_series(body, "retentiond_overdue_records{policy=\"q\"}", "0");
	assert_series(body, "retentiond_oldest_overdue_seconds{policy=\"q\"}", "0.000");
	assert_series(body, "retentiond_purged_records_total{policy=\"q\",action=\"delete\",cause=\"schedule\"}", "0");
	assert_series(body, "retentiond_last_purge_timestamp_seconds{policy=\"q\"}", "0");
	{
		/* The oldest overdue record of p fell due two days ago. */
		char *age = value_of(body, "retentiond_oldest_overdue_seconds{policy=\"p\"}");
		ck_assert_msg(atof(age) > 2 * 86400 - 60 && atof(age) < 2 * 86400 + 60, "oldest overdue %s", age);
		free(age);
	}
	{
		char *failures = value_of(body, "retentiond_batch_failures_total{policy=\"p\"}");
		char *last = value_of(body, "retentiond_last_purge_timestamp_seconds{policy=\"p\"}");
		ck_assert_msg(atoll(failures) >= 1, "the split batches failed, yet %s failures", failures);
		ck_assert_msg(atoll(last) > 1700000000, "last purge %s", last);
		free(failures);
		free(last);
	}
	free(body);
	/* A record whose clock is -infinity fell due before any threshold. */
	body = scrape_until(port, "\nretentiond_oldest_overdue_seconds{policy=\"old\"} +Inf\n", 10);
	assert_series(body, "retentiond_policy_blocked{policy=\"p\",reason=\"error\"}", "0");
	assert_series(body, "retentiond_requests_open", "0");
	assert_series(body, "retentiond_requests_overdue", "0");
	assert_promtool_accepts(body);
	free(body);
	/* Nothing else is served. */
	ck_assert_int_eq(http(port, NULL, "GET", "/", &body), 404);
	free(body);
	ck_assert_int_eq(http(port, NULL, "GET", "/metrics/extra", &body), 404);
	free(body);
	{
		char *head;
		ck_assert_int_eq(http_with_head(port, NULL, "POST", "/metrics", &head, &body), 405);
		ck_assert_msg(strstr(head, "\r\nAllow: GET, HEAD"), "a 405 without its Allow header:\n%s", head);
		free(head);
		free(body);
	}
	ck_assert_int_eq(http(port, NULL, "DELETE", "/metrics", &body), 405);
	free(body);
	ck_assert_int_eq(http(port, NULL, "HEAD", "/metrics", &body), 200);
	free(body);
	/* A request past its deadline shows at the next resync. */
	test_exec(conn, "SELECT retention.file_request('erasure', ARRAY['account'], ARRAY['1'],"
			" now() - interval '2 months', NULL)");
	body = scrape_until(port, "\nretentiond_requests_overdue 1\n", 10);
	assert_series(body, "retentiond_requests_open", "1");
	free(body);
	fx_stop_daemon(pid);
	ck_assert_msg(dial(port, NULL) < 0, "the metrics port is still open after the daemon stopped");
	free(listen);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/* A reload moves the listener to a unix socket; the TCP port closes; the socket goes when the daemon stops. */
START_TEST(test_a_reload_moves_the_listener)
{
	PGconn *conn = fx_database("mreload");
	int port = free_port();
	char *listen = xasprintf("127.0.0.1:%d", port);
	char *conf = metrics_config("mreload", listen);
	char *sock = xasprintf("%s/metrics.sock", getenv("RETENTION_TEST_TMPDIR"));
	char *unix_listen = xasprintf("unix:%s", sock);
	char *conf2 = metrics_config("mreload", unix_listen);
	char *log = fx_log_path("mreload");
	char *body;
	long mark;
	pid_t pid;
	pid = start_serving(conn, conf, log, port);
	rewrite_as(conf, conf2);
	mark = fx_log_mark(log);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "serving metrics on unix:", 20);
	ck_assert_int_eq(http(0, sock, "GET", "/metrics", &body), 200);
	ck_assert_msg(strstr(body, "retentiond_database_connected 1"), "%s", body);
	free(body);
	ck_assert_msg(dial(port, NULL) < 0, "the old TCP listener stayed open");
	{
		/* A second daemon on the same socket is refused; the first keeps it. */
		char *daemon = xasprintf("%s/src/retentiond", test_builddir());
		char *argv[] = {daemon, "-c", conf, NULL};
		char *out, *err;
		ck_assert_int_eq(test_run(argv, &out, &err), 1);
		ck_assert_msg(strstr(err, "another process serves on"), "%s", err);
		ck_assert_int_eq(http(0, sock, "GET", "/metrics", &body), 200);
		free(body);
		free(daemon);
		free(out);
		free(err);
	}
	fx_stop_daemon(pid);
	ck_assert_msg(access(sock, F_OK) != 0, "the socket file stayed after the daemon stopped");
	free(listen);
	free(conf);
	free(conf2);
	free(sock);
	free(unix_listen);
	free(log);
	PQfinish(conn);
}
END_TEST

/* A port already taken: the daemon does not start, and says which key. */
START_TEST(test_a_taken_port_is_a_clear_error_at_start)
{
	PGconn *conn = fx_database("mtaken");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char *addr, *conf, *out, *err;
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	addr = xasprintf("127.0.0.1:%d", ntohs(sa.sin_port));
	empty_tables(conn);
	conf = metrics_config("mtaken", addr);
	{
		char *daemon = xasprintf("%s/src/retentiond", test_builddir());
		char *argv[] = {daemon, "-c", conf, NULL};
		ck_assert_int_eq(test_run(argv, &out, &err), 1);
		ck_assert_msg(strstr(err, "daemon.metrics_listen = \"127.0.0.1:"), "%s", err);
		ck_assert_msg(strstr(err, "Address already in use"), "%s", err);
		free(daemon);
	}
	close(fd);
	free(out);
	free(err);
	free(addr);
	free(conf);
	PQfinish(conn);
}
END_TEST

/* How many descriptors PID has open. */
static int open_descriptors(pid_t pid)
{
	char *dir = xasprintf("/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	free(dir);
	return n;
}

/* The resident memory of PID, in KiB. */
static long resident_kib(pid_t pid)
{
	char *path = xasprintf("/proc/%d/statm", (int)pid);
	FILE *f = fopen(path, "r");
	long pages = 0;
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%*d %ld", &pages), 1);
	fclose(f);
	free(path);
	return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Starts a connection to PORT without waiting for it to be accepted. */
static int dial_nowait(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((unsigned short)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS, "connect: %s",
		      strerror(errno));
	return fd;
}

static double seconds_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

#define IDLE_CLIENTS   60
#define CLIENT_LIMIT   16 /* METRICS_MAX_CLIENTS */
#define CLIENT_SECONDS 5  /* METRICS_CLIENT_SECONDS */

/*
 * Idle and trickling clients cannot take the daemon's descriptors: sixty
 * idle connections hold at most sixteen, a scrape is served once they go,
 * a client that pipelines requests and never reads does not grow the
 * daemon, and one that sends a byte a second is cut off after five seconds.
 */
START_TEST(test_clients_cannot_hold_the_daemons_descriptors)
{
	PGconn *conn = fx_database("midle");
	int port = free_port(), idle[IDLE_CLIENTS], before, most = 0, slow;
	char *listen = xasprintf("127.0.0.1:%d", port);
	char *conf = metrics_config("midle", listen);
	char *log = fx_log_path("midle");
	char *body;
	struct timespec start;
	bool closed = false;
	pid_t pid;
	pid = start_serving(conn, conf, log, port);
	before = open_descriptors(pid);
	for (int i = 0; i < IDLE_CLIENTS; i++)
		idle[i] = dial_nowait(port);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (seconds_since(&start) < 2) {
		struct timespec pause = {0, 50 * 1000 * 1000};
		int n = open_descriptors(pid);
		most = n > most ? n : most;
		nanosleep(&pause, NULL);
	}
	ck_assert_msg(most <= before + CLIENT_LIMIT + 1, "%d idle clients held %d descriptors (before: %d)",
		      IDLE_CLIENTS, most - before, before);
	ck_assert_msg(most >= before + CLIENT_LIMIT - 1, "only %d of the idle clients were served", most - before);
	for (int i = 0; i < IDLE_CLIENTS; i++)
		close(idle[i]);
	/* Their slots free as the daemon sees them go, and the next scrape is served. */
	ck_assert_int_eq(http(port, NULL, "GET", "/metrics", &body), 200);
	ck_assert_msg(strstr(body, "retentiond_database_connected 1"), "%s", body);
	free(body);

	{
		/* Requests pipelined by a client that never reads its replies: what the daemon buffers is bounded. */
		long rss_before = resident_kib(pid), rss_most = rss_before;
		static const char request[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
		int small = 4096, flood = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((unsigned short)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		setsockopt(flood, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
		ck_assert_int_eq(connect(flood, (struct sockaddr *)&sa, sizeof(sa)), 0);
		fcntl(flood, F_SETFL, O_NONBLOCK);
		clock_gettime(CLOCK_MONOTONIC, &start);
		while (seconds_since(&start) < 3) {
			long rss;
			for (int i = 0; i < 200; i++)
				if (send(flood, request, sizeof(request) - 1, MSG_NOSIGNAL) < 0)
					break;
			rss = resident_kib(pid);
			rss_most = rss > rss_most ? rss : rss_most;
		}
		close(flood);
		ck_assert_msg(rss_most - rss_before < 20 * 1024, "pipelined requests grew the daemon by %ld KiB",
			      rss_most - rss_before);
	}
	/* A byte a second keeps an inactivity timeout from firing; the whole connection still has a deadline. */
	slow = dial(port, NULL);
	ck_assert_int_ge(slow, 0);
	ck_assert_int_eq(write(slow, "GET /metrics HTTP/1.1\r\nX-Slow: ", 31), 31);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!closed && seconds_since(&start) < CLIENT_SECONDS + 4) {
		struct pollfd pfd = {.fd = slow, .events = POLLIN};
		char c;
		if (poll(&pfd, 1, 1000) > 0 && read(slow, &c, 1) <= 0)
			closed = true;
		else if (send(slow, "a", 1, MSG_NOSIGNAL) != 1)
			closed = true;
	}
	ck_assert_msg(closed, "a client trickling a byte a second was kept for %.0f seconds", seconds_since(&start));
	ck_assert_msg(seconds_since(&start) >= CLIENT_SECONDS - 1, "cut off after %.1f s", seconds_since(&start));
	close(slow);
	fx_stop_daemon(pid);
	free(listen);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * When accept() fails for want of descriptors, the daemon says so once,
 * does not spin on the listening socket, and serves again when it can.
 */
START_TEST(test_no_descriptors_left_pauses_the_listener)
{
	PGconn *conn = fx_database("memfile");
	int port = free_port(), waiting[CLIENT_LIMIT];
	char *listen = xasprintf("127.0.0.1:%d", port);
	char *conf = metrics_config("memfile", listen);
	char *log = fx_log_path("memfile");
	char *cmd, *body;
	struct timespec start;
	double cpu;
	long mark;
	pid_t pid;
	pid = start_serving(conn, conf, log, port);
	mark = fx_log_mark(log);
	/* No descriptor number is left above the ones open now. */
	cmd = xasprintf("prlimit --pid %d --nofile=%d:", (int)pid, open_descriptors(pid));
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	for (int i = 0; i < CLIENT_LIMIT; i++)
		waiting[i] = dial_nowait(port);
	fx_wait_for_log_after(log, mark, "metrics: cannot accept a connection: Too many open files", 10);
	cpu = fx_cpu_seconds(pid);
	clock_gettime(CLOCK_MONOTONIC, &start);
	{
		struct timespec wait = {3, 0};
		nanosleep(&wait, NULL); /* measuring a span of time: what the daemon does meanwhile is the point */
	}
	ck_assert_msg(fx_cpu_seconds(pid) - cpu < 0.5 * seconds_since(&start),
		      "the daemon used %.2f s of CPU in %.2f s with no descriptor to accept with",
		      fx_cpu_seconds(pid) - cpu, seconds_since(&start));
	ck_assert_int_eq(fx_log_count_after(log, mark, "cannot accept a connection"), 1);
	cmd = xasprintf("prlimit --pid %d --nofile=1024:", (int)pid);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	for (int i = 0; i < CLIENT_LIMIT; i++)
		close(waiting[i]);
	ck_assert_int_eq(http(port, NULL, "GET", "/metrics", &body), 200);
	free(body);
	fx_wait_for_log_after(log, mark, "metrics: accepting connections again", 5);
	fx_stop_daemon(pid);
	free(listen);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A reload to a unix socket another process listens on with a full
 * backlog: the daemon says so at once and goes on serving where it was,
 * instead of waiting in connect() for that process to accept.
 */
START_TEST(test_a_busy_unix_socket_does_not_hold_the_daemon)
{
	PGconn *conn = fx_database("mbusy");
	int port = free_port(), peer, pending;
	char *tcp = xasprintf("127.0.0.1:%d", port);
	char *conf = metrics_config("mbusy", tcp);
	char *sock = xasprintf("%s/busy.sock", getenv("RETENTION_TEST_TMPDIR"));
	char *unix_listen = xasprintf("unix:%s", sock);
	char *conf2 = metrics_config("mbusy", unix_listen);
	char *log = fx_log_path("mbusy");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *body;
	long mark;
	pid_t pid = start_serving(conn, conf, log, port);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	peer = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(peer, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(peer, 0), 0);
	/* Its one place in the backlog taken: the next connect() would wait. */
	pending = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_eq(connect(pending, (struct sockaddr *)&sa, sizeof(sa)), 0);
	rewrite_as(conf, conf2);
	mark = fx_log_mark(log);
	ck_assert_int_eq(kill(pid, SIGHUP), 0);
	fx_wait_for_log_after(log, mark, "another process serves on", 10);
	ck_assert_int_eq(http(port, NULL, "GET", "/metrics", &body), 200);
	free(body);
	fx_stop_daemon(pid);
	close(pending);
	close(peer);
	free(tcp);
	free(conf);
	free(conf2);
	free(sock);
	free(unix_listen);
	free(log);
	PQfinish(conn);
}
END_TEST

/*
 * A policy whose rule waits for approval: blocked for "approval", with the
 * records it would newly purge, until retentionctl approve; promtool
 * accepts the page meanwhile.
 */
START_TEST(test_a_rule_waiting_for_approval_is_blocked_with_its_count)
{
	PGconn *conn = fx_database("approval");
	int port = free_port();
	char *daemon = xasprintf(
		"resync_interval = \"1 second\"; metrics_listen = \"127.0.0.1:%d\"; guard_records = 5;", port);
	char *policy = fx_policy("p", "app.items", "id", "closed_at", "1 day", "");
	char *conf = fx_config("approval", daemon, policy);
	char *log = fx_log_path("approval");
	char *body, *out, *err;
	pid_t pid;
	empty_tables(conn);
	test_exec(conn, "INSERT INTO app.items SELECT g, now() - interval '2 days' FROM generate_series(1, 10) g");
	pid = fx_start_daemon(conf, log);
	fx_wait_for_log(log, "serving metrics on 127.0.0.1:", 10);
	body = scrape_until(port, "\nretentiond_blocked_records{policy=\"p\"} 10\n", 10);
	assert_series(body, "retentiond_policy_blocked{policy=\"p\",reason=\"approval\"}", "1");
	assert_series(body, "retentiond_policy_blocked{policy=\"p\",reason=\"error\"}", "0");
	assert_promtool_accepts(body);
	free(body);
	ck_assert_int_eq(test_query_ll(conn, "SELECT count(*) FROM app.items"), 10);
	ck_assert_int_eq(fx_ctl(conf, "approval", &out, &err, "approve", "--policy", "p", "--reason", "reviewed", NULL),
			 0);
	free(out);
	free(err);
	body = scrape_until(port, "\nretentiond_blocked_records{policy=\"p\"} 0\n", 10);
	assert_series(body, "retentiond_policy_blocked{policy=\"p\",reason=\"approval\"}", "0");
	free(body);
	ck_assert(fx_poll_true(conn, "SELECT count(*) = 0 FROM app.items", 10));
	fx_stop_daemon(pid);
	free(daemon);
	free(policy);
	free(conf);
	free(log);
	PQfinish(conn);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = test_tcase("metrics", 120);
	tcase_add_test(tc, test_metrics_match_the_database);
	tcase_add_test(tc, test_a_reload_moves_the_listener);
	tcase_add_test(tc, test_a_taken_port_is_a_clear_error_at_start);
	tcase_add_test(tc, test_clients_cannot_hold_the_daemons_descriptors);
	tcase_add_test(tc, test_no_descriptors_left_pauses_the_listener);
	tcase_add_test(tc, test_a_busy_unix_socket_does_not_hold_the_daemon);
	tcase_add_test(tc, test_a_rule_waiting_for_approval_is_blocked_with_its_count);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
