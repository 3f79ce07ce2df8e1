/*
 * pgconn.c -- a non-blocking libpq connection driven by libevent: connect,
 * a queue of statements sent one at a time (transactions kept together by
 * their owner), LISTEN notifications, reconnect with jittered backoff.
 */
#include "pgconn.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "invariant.h"
#include "log.h"
#include "session.h"
#include "util.h"

#define RECONNECT_FIRST_MS 250
#define RECONNECT_MAX_MS   10000
#define CONNECT_TIMEOUT_S  10
/* Statements kept prepared per session; past this, DEALLOCATE ALL starts over. */
#define PREPARED_MAX 128

enum pgconn_state {
	PGCONN_IDLE,
	PGCONN_CONNECTING,
	PGCONN_READY,
	PGCONN_WAITING, /* backing off before the next attempt */
};

/* What the statement in flight is waiting for: its own result, or a step before it. */
enum query_step {
	STEP_RUN,
	STEP_PREPARE,    /* PGCONN_PREPARED: the server parses and remembers it first */
	STEP_DEALLOCATE, /* the session's prepared statements are many: forget them first */
};

/* A statement the session has prepared, by its text. */
struct prepared {
	char *sql;
	char name[32];
};

struct pgconn_query_item {
	struct pgconn_query_item *next;
	const void *owner;
	int flags;
	enum query_step step;
	char name[32]; /* the prepared statement's name, "" for an unnamed one */
	char *sql;
	int n_params;
	Oid *types;
	char **params;
	pgconn_result_fn cb;
	void *arg;
};

/* One host name of the conninfo being resolved on the loop. */
struct lookup {
	struct pgconn *conn;
	size_t index;
	struct evdns_getaddrinfo_request *req; /* NULL once answered or cancelled */
};

struct pgconn {
	struct event_base *base;
	char *conninfo;
	char *session_options;
	/*
	 * libpq resolves a host name with a blocking getaddrinfo() inside
	 * PQconnectPoll, which would stall the loop (and the watchdog) for as
	 * long as the resolver takes. Names are resolved here instead, on the
	 * loop, and libpq is given the addresses as hostaddr.
	 */
	struct evdns_base *dns;
	struct lookup *lookups;
	size_t n_lookups, lookups_left;
	char **addresses;
	char *lookup_error;
	struct pgconn_callbacks cb;
	void *arg;
	PGconn *pg;
	enum pgconn_state state;
	struct event *io;         /* read (persistent) and, while output is pending, write */
	struct event *connect_io; /* one-shot, direction chosen by PQconnectPoll */
	struct event *timer;      /* connect timeout, or the reconnect backoff */
	int backoff_ms;
	struct pgconn_query_item *head, *tail; /* queued; the in-flight one is `current` */
	struct pgconn_query_item *current;
	PGresult *current_result;
	const void *txn_owner;
	struct prepared *prepared; /* of this session: a reconnect forgets them */
	size_t n_prepared;
	unsigned long prepared_serial;
	bool held; /* pgconn_hold: nothing is sent until the session is replaced */
};

static void connect_step(struct pgconn *conn);
static void dispatch(struct pgconn *conn);
static void on_io(evutil_socket_t fd, short what, void *arg);

const char *pgconn_sqlstate(const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return state ? state : "";
}

const char *pgconn_error_text(const PGresult *res, char *buf, size_t size)
{
	const char *msg, *state;
	if (res == NULL) {
		snprintf(buf, size, "connection lost");
		return buf;
	}
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (msg == NULL) {
		/* An error libpq made itself (no server fields): its first line. */
		snprintf(buf, size, "%s", *PQresultErrorMessage(res) ? PQresultErrorMessage(res) : "unexpected result");
		buf[strcspn(buf, "\n")] = '\0';
	} else if (state) {
		snprintf(buf, size, "%s (SQLSTATE %s)", msg, state);
	} else {
		snprintf(buf, size, "%s", msg);
	}
	return buf;
}

/* Server notices and warnings, one line each through the log, like errors. */
static void on_notice(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	char buf[512];
	(void)arg;
	pgconn_error_text(res, buf, sizeof(buf));
	if (severity && strcmp(severity, "NOTICE") != 0 && strcmp(severity, "INFO") != 0 &&
	    strcmp(severity, "LOG") != 0 && strcmp(severity, "DEBUG") != 0)
		log_warn("PostgreSQL %s: %s", severity, buf);
	else
		log_info("PostgreSQL %s: %s", severity ? severity : "NOTICE", buf);
}

static void item_free(struct pgconn_query_item *q)
{
	free(q->sql);
	for (int i = 0; i < q->n_params; i++)
		free(q->params[i]);
	free(q->params);
	free(q->types);
	free(q);
}

static void cancel_lookups(struct pgconn *conn)
{
	for (size_t i = 0; i < conn->n_lookups; i++)
		if (conn->lookups[i].req) {
			struct evdns_getaddrinfo_request *req = conn->lookups[i].req;
			conn->lookups[i].req = NULL;
			evdns_getaddrinfo_cancel(req);
		}
	for (size_t i = 0; i < conn->n_lookups; i++)
		free(conn->addresses[i]);
	free(conn->lookups);
	free(conn->addresses);
	free(conn->lookup_error);
	conn->lookups = NULL;
	conn->addresses = NULL;
	conn->lookup_error = NULL;
	conn->n_lookups = conn->lookups_left = 0;
}

static void forget_prepared(struct pgconn *conn)
{
	for (size_t i = 0; i < conn->n_prepared; i++)
		free(conn->prepared[i].sql);
	free(conn->prepared);
	conn->prepared = NULL;
	conn->n_prepared = 0;
}

static void close_pg(struct pgconn *conn)
{
	forget_prepared(conn);
	conn->held = false;
	cancel_lookups(conn);
	if (conn->io) {
		event_free(conn->io);
		conn->io = NULL;
	}
	if (conn->connect_io) {
		event_free(conn->connect_io);
		conn->connect_io = NULL;
	}
	if (conn->pg) {
		PQfinish(conn->pg);
		conn->pg = NULL;
	}
}

/* Fails everything queued: callers learn of the loss through a NULL result. */
static void fail_all(struct pgconn *conn)
{
	struct pgconn_query_item *q;
	if (conn->current_result) {
		PQclear(conn->current_result);
		conn->current_result = NULL;
	}
	conn->txn_owner = NULL;
	if (conn->current) {
		q = conn->current;
		conn->current = NULL;
		if (q->cb)
			q->cb(NULL, q->arg);
		item_free(q);
	}
	while ((q = conn->head) != NULL) {
		conn->head = q->next;
		if (conn->head == NULL)
			conn->tail = NULL;
		if (q->cb)
			q->cb(NULL, q->arg);
		item_free(q);
	}
}

static void schedule_reconnect(struct pgconn *conn)
{
	struct timeval tv;
	/* Jitter keeps several daemons from reconnecting in lockstep after a server restart. */
	int ms = conn->backoff_ms / 2 + (int)(random() % (conn->backoff_ms / 2 + 1));
	conn->state = PGCONN_WAITING;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(conn->timer, &tv);
	log_info("reconnecting to PostgreSQL in %d ms", ms);
	conn->backoff_ms = conn->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : conn->backoff_ms * 2;
}

static void connection_lost(struct pgconn *conn, const char *why)
{
	bool was_ready = conn->state == PGCONN_READY;
	log_err("database connection %s: %s", was_ready ? "lost" : "failed", why);
	evtimer_del(conn->timer);
	close_pg(conn);
	schedule_reconnect(conn);
	fail_all(conn);
	if (conn->cb.on_lost)
		conn->cb.on_lost(conn, conn->arg);
}

static void lost_with_pg_message(struct pgconn *conn)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", conn->pg ? PQerrorMessage(conn->pg) : "no connection");
	buf[strcspn(buf, "\n")] = '\0';
	connection_lost(conn, buf[0] ? buf : "server closed the connection");
}

static bool send_current(struct pgconn *conn);

static void finish_current(struct pgconn *conn)
{
	struct pgconn_query_item *q = conn->current;
	PGresult *res = conn->current_result;
	INVARIANT(q != NULL);
	if (q->step != STEP_RUN && res && PQresultStatus(res) == PGRES_COMMAND_OK) {
		/* A step before the statement succeeded: run the statement; its result is the one reported. */
		if (q->step == STEP_DEALLOCATE) {
			forget_prepared(conn);
		} else {
			conn->prepared = xrealloc(conn->prepared, (conn->n_prepared + 1) * sizeof(*conn->prepared));
			conn->prepared[conn->n_prepared].sql = xstrdup(q->sql);
			memcpy(conn->prepared[conn->n_prepared].name, q->name, sizeof(q->name));
			conn->n_prepared++;
		}
		PQclear(res);
		conn->current_result = NULL;
		if (!send_current(conn))
			lost_with_pg_message(conn);
		return;
	}
	/*
	 * The statement this session prepared is gone (code of a table's owner
	 * ran DEALLOCATE in it): forget them all, so that the next run prepares
	 * again instead of failing for as long as the session lasts.
	 */
	if ((q->flags & PGCONN_PREPARED) && res && PQresultStatus(res) == PGRES_FATAL_ERROR &&
	    strcmp(pgconn_sqlstate(res), "26000") == 0)
		forget_prepared(conn);
	/* Inside a transaction only its owner's statements are sent. */
	INVARIANT(conn->txn_owner == NULL || q->owner == conn->txn_owner);
	conn->current = NULL;
	conn->current_result = NULL;
	if (q->flags & PGCONN_TXN_END)
		conn->txn_owner = NULL;
	if (q->cb)
		q->cb(res, q->arg);
	PQclear(res);
	item_free(q);
}

static void update_write_interest(struct pgconn *conn)
{
	int flush = PQflush(conn->pg);
	short what = EV_READ | EV_PERSIST;
	if (flush < 0) {
		lost_with_pg_message(conn);
		return;
	}
	if (flush == 1)
		what |= EV_WRITE;
	if (event_get_events(conn->io) != what) {
		event_del(conn->io);
		event_assign(conn->io, conn->base, PQsocket(conn->pg), what, on_io, conn);
		event_add(conn->io, NULL);
	}
}

/* Reads what the server sent: results of the statement in flight, and notifications. */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *conn = arg;
	PGnotify *n;
	(void)fd;

	if (what & EV_WRITE) {
		update_write_interest(conn);
		if (conn->state != PGCONN_READY)
			return;
	}
	if (!(what & EV_READ))
		return;
	if (!PQconsumeInput(conn->pg)) {
		lost_with_pg_message(conn);
		return;
	}
	while (conn->current && !PQisBusy(conn->pg)) {
		PGresult *res = PQgetResult(conn->pg);
		if (res == NULL) {
			finish_current(conn);
			if (conn->state != PGCONN_READY)
				return;
			dispatch(conn);
			break;
		}
		/* Keep the first error, else the last result: that is the statement's outcome. */
		if (conn->current_result == NULL || (PQresultStatus(conn->current_result) != PGRES_FATAL_ERROR)) {
			PQclear(conn->current_result);
			conn->current_result = res;
		} else {
			PQclear(res);
		}
	}
	while (conn->state == PGCONN_READY && (n = PQnotifies(conn->pg)) != NULL) {
		if (conn->cb.on_notify)
			conn->cb.on_notify(conn, n->relname, n->extra, conn->arg);
		PQfreemem(n);
	}
	if (conn->state == PGCONN_READY && PQstatus(conn->pg) == CONNECTION_BAD)
		lost_with_pg_message(conn);
}

static void dispatch(struct pgconn *conn)
{
	struct pgconn_query_item **link, *q;
	if (conn->current || conn->state != PGCONN_READY || conn->held)
		return;
	for (link = &conn->head; (q = *link) != NULL; link = &q->next)
		if (conn->txn_owner == NULL || q->owner == conn->txn_owner)
			break;
	if (q == NULL)
		return;
	*link = q->next;
	if (conn->tail == q) {
		conn->tail = NULL;
		for (struct pgconn_query_item *t = conn->head; t; t = t->next)
			conn->tail = t;
	}
	q->next = NULL;
	conn->current = q;
	/* A transaction is opened only outside another one. */
	INVARIANT(!(q->flags & PGCONN_TXN_BEGIN) || conn->txn_owner == NULL);
	if (q->flags & PGCONN_TXN_BEGIN)
		conn->txn_owner = q->owner;
	if (!send_current(conn))
		lost_with_pg_message(conn);
}

/*
 * Sends the statement in flight, or the step it needs first. A statement
 * planned once per session instead of once per run: the policies' large
 * statements cost more to plan than to run.
 */
static bool send_current(struct pgconn *conn)
{
	struct pgconn_query_item *q = conn->current;
	const char *const *params = (const char *const *)q->params;
	bool sent;
	q->step = STEP_RUN;
	if (q->flags & PGCONN_PREPARED) {
		for (size_t i = 0; q->name[0] == '\0' && i < conn->n_prepared; i++)
			if (strcmp(conn->prepared[i].sql, q->sql) == 0)
				memcpy(q->name, conn->prepared[i].name, sizeof(q->name));
		if (q->name[0] == '\0' && conn->n_prepared >= PREPARED_MAX) {
			q->step = STEP_DEALLOCATE;
			sent = PQsendQuery(conn->pg, "DEALLOCATE ALL");
		} else if (q->name[0] == '\0') {
			q->step = STEP_PREPARE;
			snprintf(q->name, sizeof(q->name), "retentiond_%lu", ++conn->prepared_serial);
			sent = PQsendPrepare(conn->pg, q->name, q->sql, q->n_params, q->types);
		} else {
			sent = PQsendQueryPrepared(conn->pg, q->name, q->n_params, params, NULL, NULL, 0);
		}
	} else if (q->flags & PGCONN_SIMPLE) {
		INVARIANT(q->n_params == 0);
		sent = PQsendQuery(conn->pg, q->sql);
	} else {
		sent = PQsendQueryParams(conn->pg, q->sql, q->n_params, q->types, params, NULL, NULL, 0);
	}
	if (sent)
		update_write_interest(conn);
	return sent;
}

bool pgconn_query(struct pgconn *conn, const void *owner, int flags, const char *sql, int n_params, const Oid *types,
		  const char *const *params, pgconn_result_fn cb, void *arg)
{
	struct pgconn_query_item *q;
	if (conn->state != PGCONN_READY)
		return false;
	q = xcalloc(1, sizeof(*q));
	q->owner = owner;
	q->flags = flags;
	q->sql = xstrdup(sql);
	q->n_params = n_params;
	if (n_params > 0) {
		q->params = xcalloc((size_t)n_params, sizeof(*q->params));
		for (int i = 0; i < n_params; i++)
			q->params[i] = params[i] ? xstrdup(params[i]) : NULL;
		if (types) {
			q->types = xcalloc((size_t)n_params, sizeof(*q->types));
			memcpy(q->types, types, (size_t)n_params * sizeof(*types));
		}
	}
	q->cb = cb;
	q->arg = arg;
	if (flags & PGCONN_FIRST) {
		q->next = conn->head;
		conn->head = q;
		if (conn->tail == NULL)
			conn->tail = q;
	} else {
		if (conn->tail)
			conn->tail->next = q;
		else
			conn->head = q;
		conn->tail = q;
	}
	dispatch(conn);
	return true;
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_step(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *conn = arg;
	(void)fd;
	(void)what;
	if (conn->state == PGCONN_CONNECTING)
		connection_lost(conn, "timed out connecting");
	else if (conn->state == PGCONN_WAITING)
		pgconn_start(conn);
}

static void connect_step(struct pgconn *conn)
{
	PostgresPollingStatusType st = PQconnectPoll(conn->pg);
	short what;
	if (conn->connect_io) {
		event_free(conn->connect_io);
		conn->connect_io = NULL;
	}
	switch (st) {
	case PGRES_POLLING_READING:
		what = EV_READ;
		break;
	case PGRES_POLLING_WRITING:
		what = EV_WRITE;
		break;
	case PGRES_POLLING_OK:
		evtimer_del(conn->timer);
		if (PQsetnonblocking(conn->pg, 1) != 0) {
			lost_with_pg_message(conn);
			return;
		}
		conn->state = PGCONN_READY;
		conn->backoff_ms = RECONNECT_FIRST_MS;
		conn->io = event_new(conn->base, PQsocket(conn->pg), EV_READ | EV_PERSIST, on_io, conn);
		event_add(conn->io, NULL);
		/* With several hosts in the conninfo, which one: after a failover, the promoted standby. */
		log_info("connected to PostgreSQL at %s port %s (server %d, pid %d)", PQhost(conn->pg),
			 PQport(conn->pg), PQserverVersion(conn->pg), PQbackendPID(conn->pg));
		if (conn->cb.on_ready)
			conn->cb.on_ready(conn, conn->arg);
		return;
	case PGRES_POLLING_FAILED:
	default:
		lost_with_pg_message(conn);
		return;
	}
	conn->connect_io = event_new(conn->base, PQsocket(conn->pg), what, on_connect_io, conn);
	event_add(conn->connect_io, NULL);
}

/* Starts libpq connecting, with HOSTADDR (NULL: none) for the conninfo's host names. */
static void connect_now(struct pgconn *conn, const char *hostaddr)
{
	static const char *const keys[] = {"dbname", "options", "fallback_application_name", "hostaddr", NULL};
	const char *values[] = {conn->conninfo, NULL, "retentiond", hostaddr, NULL};
	char *err = NULL, *options = session_merged_options(conn->conninfo, conn->session_options, &err);
	if (options == NULL) {
		connection_lost(conn, err);
		free(err);
		return;
	}
	values[1] = options;
	/* expand_dbname: the conninfo string is parsed as a whole; the keywords after it override. */
	conn->pg = PQconnectStartParams(keys, values, 1);
	free(options);
	if (conn->pg == NULL || PQstatus(conn->pg) == CONNECTION_BAD) {
		lost_with_pg_message(conn);
		return;
	}
	PQsetNoticeReceiver(conn->pg, on_notice, conn);
	/* libpq: before the first PQconnectPoll, wait as if it had returned POLLING_WRITING. */
	conn->connect_io = event_new(conn->base, PQsocket(conn->pg), EV_WRITE, on_connect_io, conn);
	event_add(conn->connect_io, NULL);
}

static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct lookup *l = arg;
	struct pgconn *conn = l->conn;
	char addr[INET6_ADDRSTRLEN] = "";
	l->req = NULL;
	if (result == EVUTIL_EAI_CANCEL)
		return;
	if (result == 0 && ai) {
		/* Copied out: ai_addr need not be aligned for the family's struct. */
		struct sockaddr_in6 in6;
		struct sockaddr_in in4;
		if (ai->ai_family == AF_INET6) {
			memcpy(&in6, ai->ai_addr, sizeof(in6));
			inet_ntop(AF_INET6, &in6.sin6_addr, addr, sizeof(addr));
		} else {
			memcpy(&in4, ai->ai_addr, sizeof(in4));
			inet_ntop(AF_INET, &in4.sin_addr, addr, sizeof(addr));
		}
		conn->addresses[l->index] = xstrdup(addr);
	} else if (conn->lookup_error == NULL) {
		conn->lookup_error = xstrdup(evutil_gai_strerror(result));
	}
	if (ai)
		evutil_freeaddrinfo(ai);
	if (--conn->lookups_left > 0)
		return;
	if (conn->lookup_error) {
		char *why = xasprintf("could not resolve a host name of the connection string: %s", conn->lookup_error);
		connection_lost(conn, why);
		free(why);
	} else {
		size_t len = 1;
		char *list;
		for (size_t i = 0; i < conn->n_lookups; i++)
			len += strlen(conn->addresses[i]) + 1;
		list = xcalloc(len, 1);
		for (size_t i = 0; i < conn->n_lookups; i++) {
			if (i)
				strcat(list, ",");
			strcat(list, conn->addresses[i]);
		}
		connect_now(conn, list);
		free(list);
	}
}

/*
 * The conninfo's host names, when it has some and no hostaddr: NULL for a
 * Unix socket (a path, or no host at all), which needs no resolving.
 */
static char **host_names(const char *conninfo, size_t *n)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *host = NULL, *hostaddr = NULL;
	char **names = NULL, *copy, *save = NULL;
	*n = 0;
	if (opts == NULL)
		return NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (strcmp(o->keyword, "host") == 0 && o->val && *o->val)
			host = o->val;
		if (strcmp(o->keyword, "hostaddr") == 0 && o->val && *o->val)
			hostaddr = o->val;
	}
	if (host && !hostaddr) {
		copy = xstrdup(host);
		names = xcalloc(strlen(host) + 2, sizeof(char *));
		for (char *h = strtok_r(copy, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
			if (h[0] == '/' || h[0] == '@') {
				/* A socket directory among the hosts: libpq needs nothing resolved for it, but the lists must match. */
				for (size_t i = 0; i < *n; i++)
					free(names[i]);
				free(names);
				names = NULL;
				*n = 0;
				break;
			}
			names[(*n)++] = xstrdup(h);
		}
		free(copy);
		if (names && *n == 0) {
			free(names);
			names = NULL;
		}
	}
	PQconninfoFree(opts);
	return names;
}

void pgconn_start(struct pgconn *conn)
{
	struct timeval timeout = {CONNECT_TIMEOUT_S, 0};
	struct evutil_addrinfo hints;
	size_t n;
	char **names;

	evtimer_del(conn->timer);
	close_pg(conn);
	conn->state = PGCONN_CONNECTING;
	/* The timeout covers resolving the names as well as connecting. */
	evtimer_add(conn->timer, &timeout);
	names = host_names(conn->conninfo, &n);
	if (names == NULL) {
		connect_now(conn, NULL);
		return;
	}
	if (conn->dns == NULL) {
		conn->dns = evdns_base_new(conn->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (conn->dns) {
			evdns_base_load_hosts(conn->dns, NULL);
			evdns_base_set_option(conn->dns, "timeout:", "3");
			evdns_base_set_option(conn->dns, "attempts:", "2");
		}
	}
	if (conn->dns == NULL) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		connection_lost(conn, "cannot set up the resolver for the connection string's host names");
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	conn->lookups = xcalloc(n, sizeof(*conn->lookups));
	conn->addresses = xcalloc(n, sizeof(*conn->addresses));
	conn->n_lookups = conn->lookups_left = n;
	for (size_t i = 0; i < n; i++) {
		conn->lookups[i].conn = conn;
		conn->lookups[i].index = i;
	}
	/* The callback may run at once (an address, a name in /etc/hosts) and even end the attempt. */
	for (size_t i = 0; i < n && conn->lookups; i++) {
		struct evdns_getaddrinfo_request *req =
			evdns_getaddrinfo(conn->dns, names[i], NULL, &hints, on_resolved, &conn->lookups[i]);
		if (conn->lookups && conn->lookups[i].conn == conn && conn->lookups_left > 0 && req)
			conn->lookups[i].req = req;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

struct pgconn *pgconn_new(struct event_base *base, const char *conninfo, const char *session_options,
			  const struct pgconn_callbacks *cb, void *arg)
{
	struct pgconn *conn = xcalloc(1, sizeof(*conn));
	conn->base = base;
	conn->conninfo = xstrdup(conninfo);
	conn->session_options = xstrdup(session_options);
	conn->cb = *cb;
	conn->arg = arg;
	conn->state = PGCONN_IDLE;
	conn->backoff_ms = RECONNECT_FIRST_MS;
	conn->timer = evtimer_new(base, on_timer, conn);
	return conn;
}

void pgconn_free(struct pgconn *conn)
{
	if (conn == NULL)
		return;
	conn->state = PGCONN_IDLE;
	fail_all(conn);
	close_pg(conn);
	event_free(conn->timer);
	if (conn->dns)
		evdns_base_free(conn->dns, 1);
	free(conn->conninfo);
	free(conn->session_options);
	free(conn);
}

bool pgconn_is_ready(const struct pgconn *conn) { return conn->state == PGCONN_READY; }

void pgconn_hold(struct pgconn *conn) { conn->held = true; }

size_t pgconn_prepared_count(const struct pgconn *conn) { return conn->n_prepared; }

void pgconn_reset(struct pgconn *conn, const char *why)
{
	if (conn->state == PGCONN_READY || conn->state == PGCONN_CONNECTING)
		connection_lost(conn, why);
}

int pgconn_pending(const struct pgconn *conn)
{
	int n = conn->current ? 1 : 0;
	for (const struct pgconn_query_item *q = conn->head; q; q = q->next)
		n++;
	return n;
}

int pgconn_pending_for(const struct pgconn *conn, const void *owner)
{
	int n = conn->current && conn->current->owner == owner && conn->current->cb ? 1 : 0;
	for (const struct pgconn_query_item *q = conn->head; q; q = q->next)
		n += q->owner == owner && q->cb;
	return n;
}

PGconn *pgconn_raw(struct pgconn *conn) { return conn->pg; }
