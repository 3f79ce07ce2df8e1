/*
 * metrics.c -- the registry of what the daemon measures, rendered in
 * Prometheus' text exposition format (version 0.0.4), and its HTTP
 * listener: evhttp on the daemon's event loop, one request at a time, the
 * answer built from memory.
 *
 * libevent 2.1's evhttp has no limit on connections, and every idle one
 * would hold a descriptor the daemon needs for PostgreSQL. So the daemon
 * keeps its own count: at most METRICS_MAX_CLIENTS are open at once (the
 * listener pauses at the limit and the kernel's backlog holds the rest),
 * each for at most METRICS_CLIENT_SECONDS in all, however slowly it
 * trickles; an accept() that fails (EMFILE) pauses the listener for a
 * second instead of spinning on it.
 */
#include "metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "util.h"

/* Upper bounds of the lateness histogram's buckets, in seconds: from timer precision to a day behind. */
static const double lateness_buckets[] = {0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600, 86400};
#define N_BUCKETS (sizeof(lateness_buckets) / sizeof(lateness_buckets[0]))

static const char *const causes[] = {"schedule", "request"};
#define N_CAUSES 2

struct policy_metrics {
	char *name;
	char *action;
	bool configured; /* in the running configuration (kept after a reload drops it: counters do not go back) */
	long long purged[N_CAUSES];
	long long failures;
	time_t last_purge_at;
	long long late_count[N_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
	double late_sum;
	bool counted; /* counts holds a database count */
	struct metrics_policy_counts counts;
	enum metrics_policy_blocked blocked;
	long long waiting; /* METRICS_BLOCKED_APPROVAL: records newly due once the rule is approved */
};

#define METRICS_MAX_CLIENTS    16
#define METRICS_CLIENT_SECONDS 5
#define METRICS_MAX_HEADERS    8192
#define METRICS_MAX_BODY       4096

/*
 * A connection evhttp serves. evhttp frees it without telling anyone, so
 * the slot stays taken while its descriptor still names the same socket
 * (device and inode: the kernel does not reuse them while it is open).
 */
struct metrics_client {
	int fd; /* -1: free */
	dev_t dev;
	ino_t ino;
	time_t deadline; /* monotonic seconds; then it is shut down */
	bool shut;
};

struct metrics {
	struct event_base *base;
	struct evhttp *http;               /* kept across reloads: its open connections outlive a listener */
	struct evhttp_bound_socket *bound; /* the listener evhttp accepts on, NULL if none */
	bool paused;                       /* the listener is disabled: at the limit, or accept() failed */
	bool accept_failing;               /* logged once until an accept succeeds */
	/* Connections evhttp just made, held by a reference until the loop runs next and their descriptor is known. */
	struct bufferevent *arriving[METRICS_MAX_CLIENTS];
	size_t n_arriving;
	struct event *census; /* made active by an arrival: slots for the arriving */
	struct event *sweep;  /* every second while a client is open or the listener paused */
	struct metrics_client clients[METRICS_MAX_CLIENTS];
	char *listen;    /* what it listens on, "" if nothing */
	char *unix_path; /* the socket file it made, removed when it closes */
	struct policy_metrics *policies;
	size_t n_policies;
	bool connected, primary;
	bool requests_counted;
	long long requests_open, requests_overdue;
	bool throttled_rate, throttled_lag;
	double replication_lag;
};

struct metrics *metrics_new(struct event_base *base)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	m->base = base;
	m->listen = xstrdup("");
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++)
		m->clients[i].fd = -1;
	return m;
}

/*
 * The registry whose listener is open. evhttp takes the listener's callback
 * argument for itself, so the error callback finds the registry here; the
 * daemon has one.
 */
static struct metrics *listening;

static void close_listener(struct metrics *m)
{
	if (m->bound)
		evhttp_del_accept_socket(m->http, m->bound);
	m->bound = NULL;
	m->paused = false;
	if (m->unix_path)
		unlink(m->unix_path);
	free(m->unix_path);
	m->unix_path = NULL;
	free(m->listen);
	m->listen = xstrdup("");
}

void metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	close_listener(m);
	if (listening == m)
		listening = NULL;
	if (m->http)
		evhttp_free(m->http);
	for (size_t i = 0; i < m->n_arriving; i++)
		bufferevent_decref(m->arriving[i]);
	if (m->census)
		event_free(m->census);
	if (m->sweep)
		event_free(m->sweep);
	free(m->listen);
	for (size_t i = 0; i < m->n_policies; i++) {
		free(m->policies[i].name);
		free(m->policies[i].action);
	}
	free(m->policies);
	free(m);
}

static struct policy_metrics *find(struct metrics *m, const char *policy)
{
	for (size_t i = 0; i < m->n_policies; i++)
		if (strcmp(m->policies[i].name, policy) == 0)
			return &m->policies[i];
	return NULL;
}

void metrics_set_policies(struct metrics *m, char *const *names, char *const *actions, size_t n)
{
	for (size_t i = 0; i < m->n_policies; i++)
		m->policies[i].configured = false;
	for (size_t i = 0; i < n; i++) {
		struct policy_metrics *p = find(m, names[i]);
		if (p == NULL) {
			m->policies = xrealloc(m->policies, (m->n_policies + 1) * sizeof(*m->policies));
			p = &m->policies[m->n_policies++];
			memset(p, 0, sizeof(*p));
			p->name = xstrdup(names[i]);
		} else {
			free(p->action);
			/* What it counted described the old rule. */
			p->counted = false;
		}
		p->action = xstrdup(actions[i]);
		p->configured = true;
		p->blocked = METRICS_NOT_BLOCKED;
	}
}

void metrics_connection(struct metrics *m, bool connected, bool primary)
{
	m->connected = connected;
	m->primary = primary;
}

void metrics_purged(struct metrics *m, const char *policy, const char *cause, long long n, const double *lateness,
		    time_t at)
{
	struct policy_metrics *p = find(m, policy);
	if (p == NULL || n <= 0)
		return;
	p->purged[strcmp(cause, "request") == 0 ? 1 : 0] += n;
	p->last_purge_at = at;
	for (long long i = 0; lateness && i < n; i++) {
		size_t b = 0;
		while (b < N_BUCKETS && lateness[i] > lateness_buckets[b])
			b++;
		p->late_count[b]++;
		/* An infinitely late record (a -infinity clock) is in the +Inf bucket, not in the sum. */
		if (isfinite(lateness[i]))
			p->late_sum += lateness[i];
	}
}

void metrics_batch_failed(struct metrics *m, const char *policy)
{
	struct policy_metrics *p = find(m, policy);
	if (p)
		p->failures++;
}

void metrics_policy_counts(struct metrics *m, const char *policy, const struct metrics_policy_counts *c)
{
	struct policy_metrics *p = find(m, policy);
	if (p == NULL)
		return;
	p->counts = *c;
	p->counted = true;
}

void metrics_policy_blocked(struct metrics *m, const char *policy, enum metrics_policy_blocked why, long long waiting)
{
	struct policy_metrics *p = find(m, policy);
	if (p) {
		p->blocked = why;
		p->waiting = why == METRICS_BLOCKED_APPROVAL ? waiting : 0;
	}
}

void metrics_throttle(struct metrics *m, bool rate, bool lagging, double lag)
{
	m->throttled_rate = rate;
	m->throttled_lag = lagging;
	m->replication_lag = lag;
}

void metrics_requests(struct metrics *m, long long open, long long overdue)
{
	m->requests_open = open;
	m->requests_overdue = overdue;
	m->requests_counted = true;
}

/* ---- the text format ---- */

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped, as the format wants. */
static void label_value(struct evbuffer *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

/* NAME{policy="P"EXTRA} followed by a space: EXTRA is further labels, already escaped, or "". */
static void series(struct evbuffer *b, const char *name, const char *policy, const char *extra)
{
	evbuffer_add_printf(b, "%s{policy=\"", name);
	label_value(b, policy);
	evbuffer_add_printf(b, "\"%s} ", extra);
}

/* One gauge per configured policy the database has counted: the count at OFFSET of its counts. */
static void counted_gauge(const struct metrics *m, struct evbuffer *b, const char *name, const char *help,
			  size_t offset)
{
	family(b, name, "gauge", help);
	for (size_t i = 0; i < m->n_policies; i++) {
		const struct policy_metrics *p = &m->policies[i];
		long long n;
		if (!p->configured || !p->counted)
			continue;
		memcpy(&n, (const char *)&p->counts + offset, sizeof(n));
		series(b, name, p->name, "");
		evbuffer_add_printf(b, "%lld\n", n);
	}
}

static void render_policies(const struct metrics *m, struct evbuffer *b, time_t now)
{
	counted_gauge(m, b, "retentiond_overdue_records",
		      "Records due and not purged (held ones and ones kept by references not counted, quarantined ones"
		      " counted), as the database counted them at the last resync or purge run.",
		      offsetof(struct metrics_policy_counts, overdue));
	family(b, "retentiond_oldest_overdue_seconds", "gauge",
	       "How long ago the oldest overdue record fell due; 0 if none is.");
	for (size_t i = 0; i < m->n_policies; i++) {
		const struct policy_metrics *p = &m->policies[i];
		/* A clock of -infinity is overdue since forever: +Inf, which an alert's threshold catches. */
		double age = p->counts.overdue > 0 ? (double)now - p->counts.oldest_overdue_at : 0;
		if (p->configured && p->counted) {
			series(b, "retentiond_oldest_overdue_seconds", p->name, "");
			if (isinf(age))
				evbuffer_add_printf(b, "+Inf\n");
			else
				evbuffer_add_printf(b, "%.3f\n", age < 0 ? 0 : age);
		}
	}
	counted_gauge(m, b, "retentiond_held_records", "Records due but kept by a hold.",
		      offsetof(struct metrics_policy_counts, held));
	counted_gauge(m, b, "retentiond_quarantined_records",
		      "Overdue records skipped because their purge failed on their own (retentionctl quarantine list).",
		      offsetof(struct metrics_policy_counts, quarantined));
	counted_gauge(m, b, "retentiond_referenced_records",
		      "Records due but kept while rows that must stay refer to them (retentionctl explain says which).",
		      offsetof(struct metrics_policy_counts, referenced));
	family(b, "retentiond_purged_records_total", "counter", "Records purged by this process, by action and cause.");
	for (size_t i = 0; i < m->n_policies; i++) {
		const struct policy_metrics *p = &m->policies[i];
		for (int c = 0; c < N_CAUSES; c++) {
			char extra[64];
			snprintf(extra, sizeof(extra), ",action=\"%s\",cause=\"%s\"", p->action, causes[c]);
			series(b, "retentiond_purged_records_total", p->name, extra);
			evbuffer_add_printf(b, "%lld\n", p->purged[c]);
		}
	}
	family(b, "retentiond_purge_lateness_seconds", "histogram",
	       "How long after it fell due each record was purged on schedule.");
	for (size_t i = 0; i < m->n_policies; i++) {
		const struct policy_metrics *p = &m->policies[i];
		long long cumulative = 0;
		for (size_t k = 0; k <= N_BUCKETS; k++) {
			char extra[48];
			cumulative += p->late_count[k];
			if (k < N_BUCKETS)
				snprintf(extra, sizeof(extra), ",le=\"%g\"", lateness_buckets[k]);
			else
				snprintf(extra, sizeof(extra), ",le=\"+Inf\"");
			series(b, "retentiond_purge_lateness_seconds_bucket", p->name, extra);
			evbuffer_add_printf(b, "%lld\n", cumulative);
		}
		series(b, "retentiond_purge_lateness_seconds_sum", p->name, "");
		evbuffer_add_printf(b, "%.6f\n", p->late_sum);
		series(b, "retentiond_purge_lateness_seconds_count", p->name, "");
		evbuffer_add_printf(b, "%lld\n", cumulative);
	}
	family(b, "retentiond_batch_failures_total", "counter", "Batches rolled back because a statement failed.");
	for (size_t i = 0; i < m->n_policies; i++) {
		series(b, "retentiond_batch_failures_total", m->policies[i].name, "");
		evbuffer_add_printf(b, "%lld\n", m->policies[i].failures);
	}
	family(b, "retentiond_last_purge_timestamp_seconds", "gauge",
	       "When this process last purged a record of the policy (Unix time); 0 if it has not.");
	for (size_t i = 0; i < m->n_policies; i++) {
		series(b, "retentiond_last_purge_timestamp_seconds", m->policies[i].name, "");
		evbuffer_add_printf(b, "%lld\n", (long long)m->policies[i].last_purge_at);
	}
	family(b, "retentiond_policy_blocked", "gauge",
	       "1 if the policy purges nothing for REASON: error (its statements fail, retried with backoff),"
	       " stopped (until a reload or restart); approval: its changed rule waits for retentionctl approve,"
	       " and only what the version in force also makes due is purged.");
	for (size_t i = 0; i < m->n_policies; i++) {
		const struct policy_metrics *p = &m->policies[i];
		if (!p->configured)
			continue;
		series(b, "retentiond_policy_blocked", p->name, ",reason=\"error\"");
		evbuffer_add_printf(b, "%d\n", p->blocked == METRICS_BLOCKED_ERROR);
		series(b, "retentiond_policy_blocked", p->name, ",reason=\"stopped\"");
		evbuffer_add_printf(b, "%d\n", p->blocked == METRICS_BLOCKED_STOPPED);
		series(b, "retentiond_policy_blocked", p->name, ",reason=\"approval\"");
		evbuffer_add_printf(b, "%d\n", p->blocked == METRICS_BLOCKED_APPROVAL);
	}
	family(b, "retentiond_blocked_records", "gauge",
	       "Records the policy's changed rule would newly purge once approved (0 if it is approved).");
	for (size_t i = 0; i < m->n_policies; i++) {
		const struct policy_metrics *p = &m->policies[i];
		if (!p->configured)
			continue;
		series(b, "retentiond_blocked_records", p->name, "");
		evbuffer_add_printf(b, "%lld\n", p->waiting);
	}
}

char *metrics_render(const struct metrics *m, time_t now)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *text;
	family(b, "retentiond_database_connected", "gauge", "1 while the daemon's connection to PostgreSQL is up.");
	evbuffer_add_printf(b, "retentiond_database_connected %d\n", m->connected);
	family(b, "retentiond_database_primary", "gauge",
	       "1 if the server takes writes; 0 on a standby (in recovery), where nothing is purged.");
	evbuffer_add_printf(b, "retentiond_database_primary %d\n", m->connected && m->primary);
	family(b, "retentiond_throttled", "gauge",
	       "1 while purging is held back for REASON: standby (the server is in recovery, nothing is purged),"
	       " rate (backlog waits for daemon.max_purge_rate), replication_lag (backlog waits while a standby"
	       " replays further behind than database.max_replication_lag).");
	evbuffer_add_printf(b, "retentiond_throttled{reason=\"standby\"} %d\n", m->connected && !m->primary);
	evbuffer_add_printf(b, "retentiond_throttled{reason=\"rate\"} %d\n", m->throttled_rate);
	evbuffer_add_printf(b, "retentiond_throttled{reason=\"replication_lag\"} %d\n", m->throttled_lag);
	family(b, "retentiond_replication_lag_seconds", "gauge",
	       "The largest replay lag of the streaming standbys, as last asked (with database.max_replication_lag"
	       " set; 0 otherwise).");
	evbuffer_add_printf(b, "retentiond_replication_lag_seconds %.6f\n", m->replication_lag);
	render_policies(m, b, now);
	if (m->requests_counted) {
		family(b, "retentiond_requests_open", "gauge", "Data subjects' requests open.");
		evbuffer_add_printf(b, "retentiond_requests_open %lld\n", m->requests_open);
		family(b, "retentiond_requests_overdue", "gauge", "Open data subjects' requests past their deadline.");
		evbuffer_add_printf(b, "retentiond_requests_overdue %lld\n", m->requests_overdue);
	}
	len = evbuffer_get_length(b);
	text = xcalloc(len + 1, 1);
	evbuffer_remove(b, text, len);
	evbuffer_free(b);
	return text;
}


/* ---- the listener ---- */

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();
	char *text;
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served here");
	} else if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
		/* evhttp_send_error() would drop the Allow header a 405 must carry (RFC 9110). */
		evhttp_add_header(headers, "Allow", "GET, HEAD");
		evhttp_add_header(headers, "Content-Type", "text/plain; charset=utf-8");
		evbuffer_add_printf(body, "only GET and HEAD are served here\n");
		evhttp_send_reply(req, 405, "Method Not Allowed", body);
	} else {
		text = metrics_render(m, time(NULL));
		evbuffer_add(body, text, strlen(text));
		free(text);
		evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, HTTP_OK, "OK", body);
	}
	evbuffer_free(body);
}

static time_t monotonic_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static bool client_open(const struct metrics_client *c)
{
	struct stat st;
	return c->fd >= 0 && fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == c->dev &&
	       st.st_ino == c->ino;
}

static size_t clients_open(const struct metrics *m)
{
	size_t n = 0;
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++)
		n += m->clients[i].fd >= 0;
	return n;
}

static void pause_listener(struct metrics *m)
{
	struct timeval second = {1, 0};
	if (m->bound)
		evconnlistener_disable(evhttp_bound_socket_get_listener(m->bound));
	m->paused = true;
	if (!evtimer_pending(m->sweep, NULL))
		evtimer_add(m->sweep, &second);
}

/*
 * Frees the slots evhttp is done with and shuts down the clients past
 * their deadline (evhttp then sees the stream end and frees the
 * connection itself: closing it here would race it); accepts again when
 * there is room. Runs every second while there is anything to watch.
 */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct metrics *m = arg;
	time_t now = monotonic_seconds();
	(void)fd;
	(void)what;
	for (size_t i = 0; i < METRICS_MAX_CLIENTS; i++) {
		struct metrics_client *c = &m->clients[i];
		if (!client_open(c)) {
			c->fd = -1;
		} else if (now >= c->deadline && !c->shut) {
			shutdown(c->fd, SHUT_RDWR);
			c->shut = true;
		}
	}
	if (m->paused && m->bound && clients_open(m) + m->n_arriving < METRICS_MAX_CLIENTS) {
		evconnlistener_enable(evhttp_bound_socket_get_listener(m->bound));
		m->paused = false;
	}
	if (!m->paused && clients_open(m) == 0)
		evtimer_del(m->sweep);
}

/* evhttp makes the bufferevent of each connection it accepts here: it is counted, and the listener paused at the limit. */
static struct bufferevent *on_new_connection(struct event_base *base, void *arg)
{
	struct metrics *m = arg;
	struct bufferevent *bev;
	if (m->accept_failing) {
		log_info("metrics: accepting connections again");
		m->accept_failing = false;
	}
	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	/*
	 * While a reply waits for a client that does not read, evhttp leaves
	 * reading on: pipelined requests would pile up without end. Reading
	 * stops at what one request may be (headers and body).
	 */
	bufferevent_setwatermark(bev, EV_READ, 0, METRICS_MAX_HEADERS + METRICS_MAX_BODY);
	/* Its descriptor is set after this returns; the reference keeps it readable until the census. */
	bufferevent_incref(bev);
	m->arriving[m->n_arriving++] = bev;
	event_active(m->census, EV_TIMEOUT, 0);
	if (clients_open(m) + m->n_arriving >= METRICS_MAX_CLIENTS)
		pause_listener(m); /* the accept loop stops after this connection */
	return bev;
}

static void on_census(evutil_socket_t unused, short what, void *arg)
{
	struct metrics *m = arg;
	struct timeval second = {1, 0};
	(void)unused;
	(void)what;
	for (size_t i = 0; i < m->n_arriving; i++) {
		struct bufferevent *bev = m->arriving[i];
		bufferevent_data_cb readcb;
		struct stat st;
		int fd = bufferevent_getfd(bev);
		bufferevent_getcb(bev, &readcb, NULL, NULL, NULL);
		/* No read callback: evhttp already freed it (it clears them), and the descriptor may be another's. */
		if (readcb != NULL && fd >= 0 && fstat(fd, &st) == 0) {
			for (size_t j = 0; j < METRICS_MAX_CLIENTS; j++) {
				if (m->clients[j].fd < 0) {
					m->clients[j] = (struct metrics_client){.fd = fd,
										.dev = st.st_dev,
										.ino = st.st_ino,
										.deadline = monotonic_seconds() +
											    METRICS_CLIENT_SECONDS};
					break;
				}
			}
		}
		bufferevent_decref(bev);
	}
	m->n_arriving = 0;
	if (clients_open(m) > 0 && !evtimer_pending(m->sweep, NULL))
		evtimer_add(m->sweep, &second);
}

/* accept() failed for want of descriptors or memory: the socket stays readable, so pause rather than spin. */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct metrics *m = listening;
	int err = EVUTIL_SOCKET_ERROR();
	(void)listener;
	(void)arg;
	if (m == NULL)
		return;
	if (!m->accept_failing)
		log_warn("metrics: cannot accept a connection: %s; trying again every second", strerror(err));
	m->accept_failing = true;
	pause_listener(m);
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/*
 * A listening unix socket at PATH. A socket file nobody answers on (left
 * by a crash) is replaced; one a live process answers on, or any other
 * file, is refused.
 */
static int unix_listener(const char *path, char *why, size_t why_size)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (lstat(path, &st) == 0) {
		int probe;
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(why, why_size, "%s exists and is not a socket", path);
			return -1;
		}
		/* Never blocking: a peer whose backlog is full (the daemon's own paused listener too) would hold the loop. */
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (probe < 0) {
			snprintf(why, why_size, "socket: %s", strerror(errno));
			return -1;
		}
		if (connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != ECONNREFUSED) {
			snprintf(why, why_size, "another process serves on %s", path);
			close(probe);
			return -1;
		}
		close(probe);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(why, why_size, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
		snprintf(why, why_size, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* A listening TCP socket on HOST (a name or an address) and PORT. */
static int tcp_listener(const char *host, unsigned short port, char *why, size_t why_size)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai;
	char service[8];
	int fd, rc, on = 1;
	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &ai);
	if (rc != 0) {
		snprintf(why, why_size, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
		snprintf(why, why_size, "cannot listen on %s port %u: %s", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* The parts made once: evhttp and the timers. */
static bool make_server(struct metrics *m)
{
	if (m->http)
		return true;
	m->http = evhttp_new(m->base);
	m->census = event_new(m->base, -1, 0, on_census, m);
	m->sweep = event_new(m->base, -1, EV_PERSIST, on_sweep, m);
	if (m->http == NULL || m->census == NULL || m->sweep == NULL)
		return false;
	/* Every method reaches the handler, which answers 405 to all but GET and HEAD. */
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
						    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	/* A scrape is small: a slow or idle client is dropped rather than kept. */
	evhttp_set_timeout(m->http, METRICS_CLIENT_SECONDS);
	evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(m->http, METRICS_MAX_BODY);
	evhttp_set_gencb(m->http, on_request, m);
	evhttp_set_bevcb(m->http, on_new_connection, m);
	return true;
}

bool metrics_listen(struct metrics *m, const char *listen, char *why, size_t why_size)
{
	struct evconnlistener *listener;
	struct evhttp_bound_socket *bound;
	const char *bad;
	char *host = NULL, *path = NULL;
	unsigned short port = 0;
	int fd;
	if (strcmp(listen, m->listen) == 0)
		return true;
	if (listen[0] == '\0') {
		close_listener(m);
		return true;
	}
	if (!listen_address_parse(listen, &host, &port, &path, &bad)) {
		snprintf(why, why_size, "%s", bad);
		return false;
	}
	if (path && m->unix_path && same_file(path, m->unix_path)) {
		/* The socket it serves on, spelled another way: probing it would reach the daemon itself. */
		free(path);
		free(m->listen);
		m->listen = xstrdup(listen);
		return true;
	}
	if (!make_server(m)) {
		snprintf(why, why_size, "cannot make an HTTP server");
		free(host);
		free(path);
		return false;
	}
	fd = path ? unix_listener(path, why, why_size) : tcp_listener(host, port, why, why_size);
	free(host);
	if (fd < 0) {
		free(path);
		return false;
	}
	listener = evconnlistener_new(m->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	bound = listener ? evhttp_bind_listener(m->http, listener) : NULL;
	if (bound == NULL) {
		snprintf(why, why_size, "cannot serve on %s", listen);
		if (listener)
			evconnlistener_free(listener);
		else
			close(fd);
		if (path)
			unlink(path);
		free(path);
		return false;
	}
	evconnlistener_set_error_cb(listener, on_accept_error);
	close_listener(m);
	m->bound = bound;
	m->unix_path = path;
	listening = m;
	if (clients_open(m) + m->n_arriving >= METRICS_MAX_CLIENTS)
		pause_listener(m);
	free(m->listen);
	m->listen = xstrdup(listen);
	return true;
}
