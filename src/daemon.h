/*
 * daemon.h -- the running daemon's state, shared by main, the scheduler,
 * the requests and the purge, and what every layer may ask of it
 * (daemon.c): the session guard, and the hooks through which results flow
 * back up to main.
 */
#ifndef RETENTIOND_DAEMON_H
#define RETENTIOND_DAEMON_H

#include <event2/event.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "pgconn.h"
#include "policy.h"

struct policy_state;

struct reload_check;
struct requests;
struct metrics;
struct throttle;
struct purge_hooks;
struct daemon;

/* What the program around the policies does when they report (main.c sets them). */
struct daemon_hooks {
	/* A policy went idle: a pending reload, a stop or the end of --once may go ahead. */
	void (*policy_idle)(struct daemon *d);
	/* A batch purged records, or a policy's state changed: the heartbeat and the metrics follow. */
	void (*status_changed)(struct daemon *d);
};

/* What the server the connection reached is, as last asked (each session and resync). */
enum server_role {
	SERVER_UNKNOWN,
	SERVER_PRIMARY,
	SERVER_STANDBY, /* in recovery: nothing is purged */
};

/* The running daemon: one event loop, one connection, one state per policy. */
struct daemon {
	struct event_base *base;
	const char *config_path;
	struct config *cfg;
	/* A reload checked and waiting: no policy starts anything new until it is swapped in. */
	struct config *pending_cfg;
	unsigned reload_generation; /* tells a reload's checks from a later SIGHUP's */
	/* A SIGHUP's file is being checked against the database: no policy starts anything new meanwhile. */
	bool reload_checking;
	struct reload_check *reload_check; /* the check's child process, while it runs */
	struct pgconn *pg;
	struct policy_state *policies;
	size_t n_policies;
	struct requests *requests; /* data subjects' erasure requests (request.c) */
	struct metrics *metrics;   /* what GET /metrics shows (metrics.c) */
	struct throttle *throttle; /* the rate of backlog purging, and the pause for replication lag */
	const struct daemon_hooks *hooks;
	const struct purge_hooks *purge_hooks; /* the scheduler's, for purge runs it or a request starts */
	struct event *resync_timer;
	struct event *status_timer; /* a heartbeat soon after purges, for `retentionctl status` */
	/* The connection's role, schema version and LISTEN are checked: policies may run statements. */
	bool session_ready;
	enum server_role server_role;
	char *session_settings; /* session_settings_sql as the session check read it */
	/* Which database the session reached (its name and when its retention schema was made), NULL until read. */
	char *database_identity;
	bool reload_scheduled; /* apply_pending_config is queued on the loop */
	bool once;             /* --once: purge what is due, then exit */
	bool stopping;         /* SIGTERM: finish the batch in flight, start nothing new */
	int exit_status;
	time_t started_at;
	long long purged_total;
	time_t last_purge_at;
};

/*
 * Whether column COL of RES (session_settings_sql, read after a statement
 * that may have run code of a table's owner) still says what the session
 * check read. If not, logs which setting a statement of POLICY changed
 * (IN_BATCH: inside a batch, which the caller rolls back) and drops the
 * session (from the loop, after the caller returns) for a clean one.
 */
/*
 * The same for SETTINGS (a value of SESSION_SETTINGS_SQL, NULL if unread)
 * and STATEMENTS (of PREPARED_STATEMENTS_SQL, NULL to skip).
 */
bool daemon_session_as_set_up(struct daemon *d, const char *settings, const char *statements, const char *policy,
			      bool in_batch);
/* What PREPARED_STATEMENTS_SQL must say of this session: none made by PREPARE, all the daemon prepared. */
void daemon_prepared_statements_expected(struct daemon *d, char *buf, size_t size);
bool daemon_session_intact(struct daemon *d, const PGresult *res, int col, const char *policy, bool in_batch);
/*
 * daemon_session_intact for column COL, then PREPARED_STATEMENTS_SQL in
 * COL + 1 (SESSION_CHECK_SQL), which must say none made by PREPARE and every
 * one the daemon made.
 */
bool daemon_session_checked(struct daemon *d, const PGresult *res, int col, const char *policy, bool in_batch);
/* Sends nothing more on the session and replaces it: code of a table's owner changed it. */
void daemon_drop_session(struct daemon *d);

/* Called whenever a policy goes idle: applies a pending reload, or finishes a stop or --once run. */
void daemon_policy_idle(struct daemon *d);
/*
 * A batch purged records, or a policy's state changed: the instance's row
 * says so within a second (one heartbeat for a burst of changes).
 */
void daemon_status_changed(struct daemon *d);
/* A reload is being checked or waits to be swapped in: no policy starts a statement. */
bool daemon_reload_waits(const struct daemon *d);

#endif
