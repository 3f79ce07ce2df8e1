/*
 * pgconn.h -- one non-blocking libpq connection on the daemon's libevent loop.
 */
#ifndef RETENTIOND_PGCONN_H
#define RETENTIOND_PGCONN_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>

/*
 * One non-blocking libpq connection driven by libevent: connecting, queries
 * queued and sent one at a time, LISTEN notifications, and reconnecting with
 * capped exponential backoff. Nothing here blocks the event loop.
 */
struct pgconn;

struct pgconn_callbacks {
	/* Connected and ready for queries (after every reconnect too). */
	void (*on_ready)(struct pgconn *conn, void *arg);
	/* The connection broke or could not be made; queued queries have been failed. A reconnect is scheduled. */
	void (*on_lost)(struct pgconn *conn, void *arg);
	void (*on_notify)(struct pgconn *conn, const char *channel, const char *payload, void *arg);
};

/*
 * RES is the statement's result (an error result if it failed), NULL if the
 * connection was lost before it completed. It is freed after the call.
 */
typedef void (*pgconn_result_fn)(PGresult *res, void *arg);

enum pgconn_flags {
	PGCONN_PLAIN = 0,
	/* This statement opens a transaction: until one flagged END completes, only its owner's statements run. */
	PGCONN_TXN_BEGIN = 1,
	PGCONN_TXN_END = 2,
	/* Prepared once per session (by its text) and run by name after: for statements run often. */
	PGCONN_PREPARED = 4,
	/*
	 * Sent as a simple query, which may hold several statements ("COMMIT;
	 * SELECT ..."); no parameters. The result is the first error, else the
	 * last statement's.
	 */
	PGCONN_SIMPLE = 8,
	/* Queued ahead of everything else: a check that must run before any other statement. */
	PGCONN_FIRST = 16,
};

/*
 * CONNINFO is the configuration's connection string; SESSION_OPTIONS
 * ("-c TimeZone=UTC -c ...", from session_options) are appended to
 * its own `options`, so the server applies them while connecting: a
 * connection whose settings the server refuses never becomes ready.
 */
struct pgconn *pgconn_new(struct event_base *base, const char *conninfo, const char *session_options,
			  const struct pgconn_callbacks *cb, void *arg);
void pgconn_free(struct pgconn *conn);
/* Starts connecting now; later failures reconnect by themselves. */
void pgconn_start(struct pgconn *conn);
/* Drops the connection as if it had broken (WHY is logged): queued statements fail, a reconnect follows. */
void pgconn_reset(struct pgconn *conn, const char *why);
/*
 * Sends nothing more on this session, not even what is queued, until
 * pgconn_reset replaces it: for a session that code of a table's owner may
 * have changed, from inside a result callback (which cannot reset).
 */
void pgconn_hold(struct pgconn *conn);
/* How many statements this session has prepared (PGCONN_PREPARED), as the server should list them. */
size_t pgconn_prepared_count(const struct pgconn *conn);
bool pgconn_is_ready(const struct pgconn *conn);
/* Statements queued or in flight. */
int pgconn_pending(const struct pgconn *conn);
PGconn *pgconn_raw(struct pgconn *conn);

/*
 * Queues SQL with text PARAMS (TYPES may be NULL: all inferred). OWNER ties
 * statements of one transaction together (see enum pgconn_flags). CB NULL:
 * nobody waits for the result (a ROLLBACK after a failure). Returns false,
 * without calling CB, if the connection is not ready.
 */
bool pgconn_query(struct pgconn *conn, const void *owner, int flags, const char *sql, int n_params, const Oid *types,
		  const char *const *params, pgconn_result_fn cb, void *arg) __attribute__((warn_unused_result));

/* Statements queued or in flight on behalf of OWNER whose result someone waits for. */
int pgconn_pending_for(const struct pgconn *conn, const void *owner);

/*
 * For logs: the primary message and SQLSTATE of an error result ("connection
 * lost" for NULL), never its DETAIL or CONTEXT, which quote row contents.
 */
const char *pgconn_error_text(const PGresult *res, char *buf, size_t size);
/* The SQLSTATE of an error result, "" if none. */
const char *pgconn_sqlstate(const PGresult *res);


#endif
