/*
 * retentiond: options, start-up order, the main loop, reload and shutdown.
 *
 * Start-up: configuration (fatal if broken) -> event base and signals ->
 * connection (retried forever; the zone, timeouts and search_path are part
 * of connecting) -> the role and the schema checked, LISTEN, heartbeat ->
 * every policy looked up and asked when it is next due.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autoconf.h"
#include "daemon.h"
#include "invariant.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "request.h"
#include "scheduler.h"
#include "schema.h"
#include "sdnotify.h"
#include "session.h"
#include "throttle.h"
#include "util.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* -> schema version, whether the role may bypass what triggers and row security expect, its name. */
static char *session_check_sql;

static const char heartbeat_sql[] =
	"INSERT INTO retention.instances AS i (instance, host, pid, version, started_at, heartbeat_at,"
	" policies, last_purge_at, purged_total, policy_states, policy_problems)"
	" VALUES ($1, $2, $3::integer, $4, to_timestamp($5::float8), statement_timestamp(), $6::text[],"
	" to_timestamp(nullif($7, '0')::float8), $8::bigint, $9::text[], $10::text[])"
	" ON CONFLICT (instance) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,"
	" version = EXCLUDED.version, started_at = EXCLUDED.started_at,"
	" heartbeat_at = EXCLUDED.heartbeat_at, policies = EXCLUDED.policies,"
	" policy_states = EXCLUDED.policy_states, policy_problems = EXCLUDED.policy_problems,"
	" last_purge_at = coalesce(EXCLUDED.last_purge_at, i.last_purge_at),"
	" purged_total = EXCLUDED.purged_total";

static struct daemon daemon_state;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: retentiond [-c FILE] [--check] [--once] [--foreground] [--version] [--help]\n\n"
		"  -c, --config FILE  configuration (default %s/retentiond/retentiond.conf)\n"
		"      --check        validate the configuration against the live database, then exit\n"
		"      --once         purge everything due now, print a summary, exit\n"
		"      --foreground   run in the foreground (the only mode: retentiond never forks)\n"
		"      --version      print the version\n\n"
		"Signals: SIGHUP reloads the configuration; SIGTERM and SIGINT finish the batch in\n"
		"flight and exit.\n",
		SYSCONFDIR);
}

static struct config *load_config_or_report(const char *path)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = config_load(path, &errs);
	if (cfg && !config_read_audit_key(cfg, &errs)) {
		/* Rows written without it would not be found by the lookups that compute pseudonyms. */
		config_free(cfg);
		cfg = NULL;
	}
	for (size_t i = 0; i < errs.n; i++)
		log_err("%s", errs.lines[i]);
	config_errors_clear(&errs);
	if (cfg && !cfg->audit.configured)
		log_warn("%s: no audit group: the audit trail stores data subjects and record keys in clear, as"
			 " version 1 did; add audit = { key_file = \"...\"; } to store them as keyed pseudonyms"
			 " (retentiond.conf(5))",
			 path);
	return cfg;
}

/* ---- the connection's life ---- */

static void on_ignored(PGresult *res, void *arg)
{
	(void)res;
	(void)arg;
}

static void send_heartbeat(struct daemon *d)
{
	char host[256] = "", pid[16], started[32], last[32], total[32];
	char **names = xcalloc(d->n_policies + 1, sizeof(*names));
	char **states = xcalloc(d->n_policies + 1, sizeof(*states));
	char **problems = xcalloc(d->n_policies + 1, sizeof(*problems));
	char *policies, *states_param, *problems_param;
	const char *params[10];
	gethostname(host, sizeof(host) - 1);
	for (size_t i = 0; i < d->n_policies; i++) {
		names[i] = d->cfg->policies[i].name;
		states[i] = (char *)scheduler_state_name(&d->policies[i]);
		problems[i] = (char *)scheduler_problem_text(&d->policies[i]);
	}
	policies = policy_text_array(names, d->n_policies);
	states_param = policy_text_array(states, d->n_policies);
	problems_param = policy_text_array(problems, d->n_policies);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	snprintf(started, sizeof(started), "%lld", (long long)d->started_at);
	snprintf(last, sizeof(last), "%lld", (long long)d->last_purge_at);
	snprintf(total, sizeof(total), "%lld", d->purged_total);
	params[0] = d->cfg->instance;
	params[1] = host;
	params[2] = pid;
	params[3] = PACKAGE_VERSION;
	params[4] = started;
	params[5] = policies;
	params[6] = last;
	params[7] = total;
	params[8] = states_param;
	params[9] = problems_param;
	if (!pgconn_query(d->pg, d, PGCONN_PLAIN, heartbeat_sql, 10, NULL, params, on_ignored, d))
		log_debug("no connection for the heartbeat");
	free(policies);
	free(states_param);
	free(problems_param);
	free(names);
	free(states);
	free(problems);
}

static void on_status_timer(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->session_ready)
		send_heartbeat(d);
}

static void status_changed(struct daemon *d)
{
	static const struct timeval soon = {0, 500000};
	for (size_t i = 0; i < d->n_policies; i++) {
		const struct policy_state *ps = &d->policies[i];
		metrics_policy_blocked(d->metrics, ps->policy->name,
				       ps->off_until_reload ? METRICS_BLOCKED_STOPPED
				       : ps->problem        ? METRICS_BLOCKED_ERROR
				       : ps->newly_due >= 0 ? METRICS_BLOCKED_APPROVAL
							    : METRICS_NOT_BLOCKED,
				       ps->newly_due);
	}
	metrics_throttle(d->metrics, throttle_rate_limited(d->throttle), throttle_lagging(d->throttle),
			 throttle_lag_seconds(d->throttle));
	/* Waiting a moment lets a backlog's batches share one row update. */
	if (!d->once && d->status_timer && !evtimer_pending(d->status_timer, NULL))
		evtimer_add(d->status_timer, &soon);
}


static void session_unusable(struct daemon *d)
{
	if (d->once) {
		d->exit_status = 1;
		event_base_loopexit(d->base, NULL);
	}
}

static void on_settings_read(PGresult *res, void *arg);

static void on_session_checked(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	int version;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_err("checking the session failed: %s; trying again at the next resync",
			pgconn_error_text(res, buf, sizeof(buf)));
		session_unusable(d);
		return;
	}
	version = atoi(PQgetvalue(res, 0, 0));
	if (version != schema_latest_version()) {
		log_err("schema retention is at version %d, this build needs %d: %s; checking again at the next resync",
			version, schema_latest_version(),
			version > schema_latest_version() ? "upgrade retentiond" : "run retentionctl migrate");
		sdnotify_status("waiting for schema retention version %d", schema_latest_version());
		session_unusable(d);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "t") == 0 || strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		/*
		 * Triggers on a policy table run with the daemon's role: as a
		 * superuser they would hand its rights to every table owner, and
		 * BYPASSRLS would purge rows the table's policies hide.
		 */
		log_err("refusing to purge as role %s: it is a %s; log in as the role sql/daemon-role.sql makes;"
			" checking again at the next resync",
			PQgetvalue(res, 0, 3),
			strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? "superuser" : "role with BYPASSRLS");
		sdnotify_status("refusing to purge as superuser or BYPASSRLS role %s", PQgetvalue(res, 0, 3));
		session_unusable(d);
		return;
	}
	/* Read after LISTEN: the channel is part of what the session must keep. */
	if (!pgconn_query(d->pg, d, PGCONN_PLAIN, "SELECT " SESSION_SETTINGS_SQL, 0, NULL, NULL, on_settings_read, d))
		log_debug("connection gone before reading the session's settings");
}

static void on_requests_counted(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		metrics_requests(d->metrics, atoll(PQgetvalue(res, 0, 0)), atoll(PQgetvalue(res, 0, 1)));
}

/* Open and overdue requests for the metrics, counted at every resync (restrictions are not requests to answer). */
static void count_requests(struct daemon *d)
{
	if (d->once ||
	    !pgconn_query(
		    d->pg, d, PGCONN_PLAIN,
		    "SELECT pg_catalog.count(*) FILTER (WHERE r.kind OPERATOR(pg_catalog.<>) 'restriction'"
		    " AND r.status OPERATOR(pg_catalog.=) 'open'), pg_catalog.count(*) FILTER (WHERE " REQUEST_OVERDUE_SQL(
			    "r") ") FROM retention.requests r",
		    0, NULL, NULL, on_requests_counted, d))
		log_debug("no connection to count requests on");
}

static void on_settings_read(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_err("reading the session's settings failed: %s; trying again at the next resync",
			pgconn_error_text(res, buf, sizeof(buf)));
		session_unusable(d);
		return;
	}
	free(d->session_settings);
	d->session_settings = xstrdup(PQgetvalue(res, 0, 0));
	d->session_ready = true;
	throttle_connection(d->throttle, true);
	if (!d->once)
		send_heartbeat(d);
	scheduler_wake_all(d);
	count_requests(d);
	if (!d->once)
		sdnotify_status("enforcing %zu policies", d->n_policies);
}

static void on_listen(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_err("LISTEN retentiond failed: %s", pgconn_error_text(res, buf, sizeof(buf)));
		session_unusable(d);
		return;
	}
	if (!pgconn_query(d->pg, d, PGCONN_PLAIN, session_check_sql, 0, NULL, NULL, on_session_checked, d))
		log_debug("connection gone before the session check");
}

/*
 * Which database the session reached: its name, and when its retention
 * schema was installed, which a streaming standby shares with its primary
 * and another database does not. A chain head committed to one is compared
 * with that database's chain only.
 */
static const char database_identity_sql[] =
	"SELECT pg_catalog.current_database() OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||)"
	" coalesce(extract(epoch FROM (SELECT pg_catalog.min(v.applied_at) FROM retention.schema_version v))::text, '')";

static void on_identity_read(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	if (res == NULL)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		/* Unknown, it matches no head committed: a lost tail is not looked for on this session. */
		log_warn("asking which database the session reached failed: %s; a failover's lost audit tail is not"
			 " looked for until the next session",
			 pgconn_error_text(res, buf, sizeof(buf)));
		return;
	}
	d->database_identity = xstrdup(PQgetvalue(res, 0, 0));
}

/*
 * A server in recovery (a standby) takes no writes, nor LISTEN: the daemon
 * purges nothing there, says so once, and asks again at every resync, so
 * that a promotion is followed without a restart.
 */
static void on_recovery_read(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_err("asking the server whether it is in recovery failed: %s; trying again at the next resync",
			pgconn_error_text(res, buf, sizeof(buf)));
		session_unusable(d);
		return;
	}
	metrics_connection(d->metrics, true, strcmp(PQgetvalue(res, 0, 0), "f") == 0);
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		if (d->server_role != SERVER_STANDBY)
			log_warn("the server is a standby (in recovery): purging nothing; asking again at every resync"
				 " (daemon.resync_interval), and purging once it is promoted");
		d->server_role = SERVER_STANDBY;
		sdnotify_status("connected to a standby: purging nothing");
		if (d->once)
			log_err("--once: the server is a standby (in recovery): nothing purged");
		session_unusable(d);
		return;
	}
	if (d->server_role == SERVER_STANDBY)
		log_info("the server is no longer in recovery (promoted): purging");
	d->server_role = SERVER_PRIMARY;
	/*
	 * Answered before LISTEN, and so before any policy runs: the chain heads
	 * committed are compared with it. The last session's is forgotten first:
	 * it may have been another database's.
	 */
	free(d->database_identity);
	d->database_identity = NULL;
	if (!pgconn_query(d->pg, d, PGCONN_PLAIN, database_identity_sql, 0, NULL, NULL, on_identity_read, d))
		log_debug("connection gone before asking which database it reached");
	if (!pgconn_query(d->pg, d, PGCONN_PLAIN, "LISTEN retentiond", 0, NULL, NULL, on_listen, d))
		log_debug("connection gone before LISTEN");
}

static void check_session(struct daemon *d)
{
	if (!pgconn_query(d->pg, d, PGCONN_PLAIN, "SELECT pg_catalog.pg_is_in_recovery()", 0, NULL, NULL,
			  on_recovery_read, d))
		log_debug("connection gone before asking whether the server is in recovery");
}

static void on_ready(struct pgconn *conn, void *arg)
{
	(void)conn;
	check_session(arg);
}

static void on_lost(struct pgconn *conn, void *arg)
{
	struct daemon *d = arg;
	(void)conn;
	d->session_ready = false;
	throttle_connection(d->throttle, false);
	metrics_connection(d->metrics, false, false);
	scheduler_connection_lost(d);
	if (d->once) {
		d->exit_status = 1;
		event_base_loopexit(d->base, NULL);
		return;
	}
	sdnotify_status("reconnecting to PostgreSQL");
	daemon_policy_idle(d);
}

static void on_notify(struct pgconn *conn, const char *channel, const char *payload, void *arg)
{
	(void)conn;
	if (strcmp(channel, "retentiond") != 0)
		return;
	if (strncmp(payload, "policy:", 7) == 0)
		scheduler_policy_changed(arg, payload + 7);
	else if (strncmp(payload, "request:", 8) == 0)
		requests_wake(arg);
	else
		scheduler_table_changed(arg, payload);
}

static const struct pgconn_callbacks pg_callbacks = {on_ready, on_lost, on_notify};

/* ---- reload, stop, resync ---- */

static void start_connection(struct daemon *d)
{
	char *options = session_daemon_options(d->cfg);
	d->session_ready = false;
	d->pg = pgconn_new(d->base, d->cfg->conninfo, options, &pg_callbacks, d);
	free(options);
	pgconn_start(d->pg);
}

static bool session_settings_differ(const struct config *a, const struct config *b)
{
	return strcmp(a->conninfo, b->conninfo) != 0 || strcmp(a->time_zone, b->time_zone) != 0 ||
	       memcmp(&a->statement_timeout, &b->statement_timeout, sizeof(a->statement_timeout)) != 0 ||
	       memcmp(&a->lock_timeout, &b->lock_timeout, sizeof(a->lock_timeout)) != 0 ||
	       strcmp(a->instance, b->instance) != 0;
}

static bool same_text(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static bool same_list(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!same_text(a[i], b[i]))
			return false;
	return true;
}

/* Whether two definitions of a policy purge the same records in the same way. */
static bool policy_unchanged(const struct policy *a, const struct policy *b)
{
	bool sets = a->n_set == b->n_set;
	for (size_t i = 0; sets && i < a->n_set; i++)
		sets = same_text(a->set[i].column, b->set[i].column) && same_text(a->set[i].value, b->set[i].value);
	return sets && same_text(a->table, b->table) && same_list(a->keys, a->n_keys, b->keys, b->n_keys) &&
	       same_list(a->clocks, a->n_clocks, b->clocks, b->n_clocks) && a->clock_unit == b->clock_unit &&
	       same_text(a->subject, b->subject) && memcmp(&a->retain, &b->retain, sizeof(a->retain)) == 0 &&
	       same_text(a->retain_column, b->retain_column) && a->action == b->action && a->batch == b->batch &&
	       same_text(a->exempt_column, b->exempt_column) &&
	       same_list(a->exempt_values, a->n_exempt_values, b->exempt_values, b->n_exempt_values) &&
	       same_list(a->set_null, a->n_set_null, b->set_null, b->n_set_null) && same_text(a->service, b->service) &&
	       same_text(a->source, b->source);
}

/* Appends NAME to a comma-separated list. */
static void list_add(char **list, const char *name)
{
	char *next = *list ? xasprintf("%s, %s", *list, name) : xstrdup(name);
	free(*list);
	*list = next;
}

/* "configuration reloaded ...: 3 policies (added a; removed b; changed c)", or "(no changes)". */
static void log_reload(const struct daemon *d, const struct config *old)
{
	char *added = NULL, *removed = NULL, *changed = NULL, *what;
	for (size_t i = 0; i < d->cfg->n_policies; i++) {
		const struct policy *p = &d->cfg->policies[i], *o = config_find_policy(old, p->name);
		if (o == NULL)
			list_add(&added, p->name);
		else if (!policy_unchanged(p, o))
			list_add(&changed, p->name);
	}
	for (size_t i = 0; i < old->n_policies; i++)
		if (config_find_policy(d->cfg, old->policies[i].name) == NULL)
			list_add(&removed, old->policies[i].name);
	if (added || removed || changed)
		what = xasprintf("%s%s%s%s%s%s%s%s", added ? "added " : "", added ? added : "",
				 added && (removed || changed) ? "; " : "", removed ? "removed " : "",
				 removed ? removed : "", removed && changed ? "; " : "", changed ? "changed " : "",
				 changed ? changed : "");
	else
		what = xstrdup("no policy changed");
	log_info("configuration reloaded from %s: %zu policies (%s)", d->config_path, d->n_policies, what);
	free(what);
	free(added);
	free(removed);
	free(changed);
}

/* The registry follows the configuration's policies; the listener its daemon.metrics_listen. */
static bool configure_metrics(struct daemon *d)
{
	char **names = xcalloc(d->cfg->n_policies + 1, sizeof(char *));
	char **actions = xcalloc(d->cfg->n_policies + 1, sizeof(char *));
	char why[256];
	bool ok = true;
	for (size_t i = 0; i < d->cfg->n_policies; i++) {
		names[i] = d->cfg->policies[i].name;
		actions[i] = (char *)policy_action_name(d->cfg->policies[i].action);
	}
	metrics_set_policies(d->metrics, names, actions, d->cfg->n_policies);
	free(names);
	free(actions);
	if (!d->once && !metrics_listen(d->metrics, d->cfg->metrics_listen, why, sizeof(why))) {
		log_err("daemon.metrics_listen = \"%s\": %s", d->cfg->metrics_listen, why);
		ok = false;
	} else if (!d->once && d->cfg->metrics_listen[0]) {
		log_info("serving metrics on %s (GET /metrics)", d->cfg->metrics_listen);
	}
	return ok;
}

static void apply_pending_config(struct daemon *d)
{
	struct config *old = d->cfg;
	bool reconnect = session_settings_differ(old, d->pending_cfg);
	struct timeval tv;
	double resync;

	/* Nothing of the old policies may still be in flight: their states are about to go. */
	for (size_t i = 0; i < d->n_policies; i++)
		INVARIANT(d->policies[i].phase == POLICY_IDLE && pgconn_pending_for(d->pg, &d->policies[i]) == 0);
	/* A request's parts belong to the old policies: the new ones read the open requests again. */
	requests_reset(d);
	d->cfg = d->pending_cfg;
	d->pending_cfg = NULL;
	log_set_level(d->cfg->log_level);
	scheduler_reload(d);
	throttle_configure(d->throttle, d->cfg);
	/* A listener that cannot be opened keeps the one before: the daemon purges either way. */
	configure_metrics(d);
	duration_to_seconds(&d->cfg->resync_interval, &resync);
	tv.tv_sec = (time_t)resync;
	tv.tv_usec = (suseconds_t)((resync - (double)tv.tv_sec) * 1e6);
	evtimer_add(d->resync_timer, &tv);
	log_reload(d, old);
	if (reconnect) {
		log_info("database settings changed: reconnecting");
		pgconn_free(d->pg);
		start_connection(d);
	} else if (d->session_ready) {
		send_heartbeat(d);
		scheduler_wake_all(d);
	}
	config_free(old);
	sdnotify_ready("configuration reloaded");
}

static void on_apply_reload(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	d->reload_scheduled = false;
	if (d->pending_cfg && !d->stopping && scheduler_all_idle(d))
		apply_pending_config(d);
}


static void policy_idle(struct daemon *d)
{
	if (!scheduler_all_idle(d))
		return;
	if (d->stopping) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	if (d->pending_cfg && !d->reload_scheduled) {
		/*
		 * Not from here: this runs inside a result or connection callback,
		 * and the swap may free the connection that callback belongs to.
		 */
		struct timeval now = {0, 0};
		d->reload_scheduled = event_base_once(d->base, -1, EV_TIMEOUT, on_apply_reload, d, &now) == 0;
		return;
	}
	if (d->once) {
		bool all_done = true;
		for (size_t i = 0; i < d->n_policies; i++)
			all_done = all_done && d->policies[i].once_done;
		if (all_done)
			event_base_loopexit(d->base, NULL);
	}
}

/*
 * A checked configuration replaces the running one at the next batch
 * boundary: from now on no policy starts a new statement, and when the last
 * one in flight ends (a batch, an ask) the swap happens.
 */
static void accept_reload(struct daemon *d, struct config *cfg)
{
	d->reload_checking = false;
	config_free(d->pending_cfg);
	d->pending_cfg = cfg;
	daemon_policy_idle(d);
}

static void reload_rejected(struct daemon *d, const char *why)
{
	log_err("configuration %s not reloaded: %s; the %zu policies loaded before stay in force", d->config_path, why,
		d->n_policies);
	sdnotify_ready("reload failed; previous configuration in force");
	if (d->reload_checking) {
		/* Due moments that came while the check ran were let pass: ask again. */
		d->reload_checking = false;
		if (d->session_ready)
			scheduler_wake_all(d);
	}
}

static void check_reload(struct daemon *d, struct config *cfg);

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct config *cfg;
	(void)fd;
	(void)what;
	log_info("SIGHUP: reloading %s", d->config_path);
	sdnotify_reloading();
	d->reload_generation++;
	cfg = load_config_or_report(d->config_path);
	if (cfg == NULL) {
		reload_rejected(d, "it has the problems above");
		return;
	}
	/* From here until the file is swapped in or refused, nothing new starts under the old one. */
	d->reload_checking = true;
	check_reload(d, cfg);
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)what;
	if (d->stopping) {
		log_info("second stop signal: exiting now (the open transaction, if any, rolls back)");
		event_base_loopbreak(d->base);
		return;
	}
	log_info("%s: finishing the batch in flight, then exiting", (int)fd == SIGINT ? "SIGINT" : "SIGTERM");
	d->stopping = true;
	sdnotify_stopping();
	for (size_t i = 0; i < d->n_policies; i++) {
		evtimer_del(d->policies[i].due_timer);
		evtimer_del(d->policies[i].ask_timer);
	}
	daemon_policy_idle(d);
}

static void on_resync(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->stopping || !pgconn_is_ready(d->pg))
		return;
	if (!d->session_ready) {
		check_session(d);
		return;
	}
	send_heartbeat(d);
	scheduler_wake_all(d);
	count_requests(d);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sdnotify_watchdog();
}

/* ---- --check ---- */

/*
 * Connects as the daemon would; a zone the server refuses is reported as the
 * key it is. *UNREACHABLE (if given) says the server took no connection at all.
 */
static PGconn *check_connect(const struct config *cfg, int *problems, bool *unreachable)
{
	char *options = session_options(cfg), *err = NULL, *utc_err = NULL;
	PGconn *conn = session_connect(cfg->conninfo, options, &err);
	free(options);
	if (conn)
		return conn;
	options = session_options_for("UTC", 0, 0);
	conn = session_connect(cfg->conninfo, options, &utc_err);
	free(options);
	if (conn)
		printf("%s: database.time_zone: the server does not know time zone \"%s\" (%s)\n", cfg->path,
		       cfg->time_zone, err);
	else
		printf("%s: database: cannot connect: %s\n", cfg->path, err);
	free(err);
	free(utc_err);
	if (unreachable)
		*unreachable = conn == NULL;
	if (conn)
		PQfinish(conn);
	(*problems)++;
	return NULL;
}

static void check_session_role(PGconn *conn, const struct config *cfg, int *problems)
{
	PGresult *res = PQexec(conn, session_check_sql);
	int version;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		printf("%s: database: checking the session failed: %s\n", cfg->path,
		       PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
		(*problems)++;
		PQclear(res);
		return;
	}
	version = atoi(PQgetvalue(res, 0, 0));
	if (version != schema_latest_version()) {
		printf("%s: database: schema retention is at version %d, this build needs %d (%s)\n", cfg->path,
		       version, schema_latest_version(),
		       version > schema_latest_version() ? "upgrade retentiond" : "run retentionctl migrate");
		(*problems)++;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "t") == 0 || strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		printf("%s: database: error: role %s is a %s: retentiond refuses to purge as it"
		       " (log in as the role sql/daemon-role.sql makes)\n",
		       cfg->path, PQgetvalue(res, 0, 3),
		       strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? "superuser" : "role with BYPASSRLS");
		(*problems)++;
	}
	PQclear(res);
}

static void check_policy(PGconn *conn, const struct config *cfg, const struct policy *p, int *problems)
{
	struct policy_shape shape;
	struct policy_sql sql;
	char *err = NULL, *schema, *rel;
	bool built = policy_prepare(conn, cfg, p, &shape, &sql, &err);
	for (size_t i = 0; i < shape.n_errors; i++)
		printf("%s:%d: policy %s: error: %s\n", cfg->path, p->line, p->name, shape.errors[i]);
	for (size_t i = 0; i < shape.n_warnings; i++)
		printf("%s:%d: policy %s: warning: %s\n", cfg->path, p->line, p->name, shape.warnings[i]);
	*problems += (int)shape.n_errors;
	if (!built && shape.n_errors == 0) {
		printf("%s:%d: policy %s: error: %s\n", cfg->path, p->line, p->name, err);
		(*problems)++;
	}
	if (policy_resolve_params(p, &schema, &rel) && schema == NULL && shape.table)
		printf("%s:%d: policy %s: warning: table %s is not schema-qualified: it is %s (write that)\n",
		       cfg->path, p->line, p->name, p->table, shape.table);
	free(schema);
	free(rel);
	if (built && shape.n_errors == 0) {
		const char *params[POLICY_N_BASE_PARAMS];
		Oid types[POLICY_N_BASE_PARAMS];
		int n = policy_params(&sql, params, types, NULL, 0, false);
		PGresult *res = PQexecParams(conn, sql.validate, n, types, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			printf("%s:%d: policy %s: error: an exempt or set value is not of its column's type,"
			       " or the policy's lock cannot be taken: %s\n",
			       cfg->path, p->line, p->name, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
			(*problems)++;
		}
		PQclear(res);
	}
	free(err);
	policy_sql_free(&sql);
	policy_shape_free(&shape);
}

/*
 * A zone the server accepts but does not list is read as a POSIX rule,
 * whose offset has the opposite sign to ISO 8601's: "UTC-3" is three hours
 * ahead of UTC, and every due time would be six hours off from the intent.
 */
static void check_zone_is_named(PGconn *conn, const struct config *cfg)
{
	const char *params[1] = {cfg->time_zone};
	PGresult *res =
		PQexecParams(conn,
			     "SELECT pg_catalog.textregexeq($1, '[0-9]') AND NOT EXISTS (SELECT 1 FROM"
			     " pg_catalog.pg_timezone_names z WHERE pg_catalog.lower(z.name) = pg_catalog.lower($1))",
			     1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		printf("%s: database.time_zone: warning: \"%s\" is not a named zone; the server reads it as a POSIX"
		       " rule, whose offset counts the other way (UTC-3 is three hours ahead of UTC): name the zone,"
		       " as in \"America/Sao_Paulo\"\n",
		       cfg->path, cfg->time_zone);
	PQclear(res);
}

/*
 * The policies' checks take their locks, which a standby refuses: --check
 * needs the primary. The daemon itself waits on a standby for the promotion.
 */
static bool check_not_standby(PGconn *conn, const struct config *cfg)
{
	PGresult *res = PQexec(conn, "SELECT pg_catalog.pg_is_in_recovery()");
	bool standby = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		       strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (standby)
		fprintf(stderr,
			"%s: database.conninfo: the server is a standby (in recovery): --check needs the primary (its"
			" checks take the policies' locks); the daemon purges nothing on a standby until it is"
			" promoted, and follows the primary with every server listed and"
			" target_session_attrs=read-write\n",
			cfg->path);
	return !standby;
}

static int check_policies(const struct config *cfg)
{
	int problems = 0;
	PGconn *conn = check_connect(cfg, &problems, NULL);
	if (conn == NULL)
		return 1;
	check_zone_is_named(conn, cfg);
	check_session_role(conn, cfg, &problems);
	if (!check_not_standby(conn, cfg)) {
		PQfinish(conn);
		return 1;
	}
	for (size_t i = 0; i < cfg->n_policies; i++)
		check_policy(conn, cfg, &cfg->policies[i], &problems);
	PQfinish(conn);
	if (problems == 0)
		printf("%s: %zu policies usable\n", cfg->path, cfg->n_policies);
	return problems ? 1 : 0;
}

/* ---- a reload, checked like a start ---- */

/* The child's exit status: a problem found, or no server to check against. */
enum {
	RELOAD_CHECK_OK = 0,
	RELOAD_CHECK_PROBLEMS = 1,
	RELOAD_CHECK_UNREACHABLE = 3
};

/*
 * In the child: what --check checks, for what the reload changes: the session
 * (connection, zone, role, schema) and every policy if the session's settings
 * changed, else every added or changed policy, against the catalog. Unchanged
 * policies are left out then: one whose table is not there yet must not stop
 * every later reload.
 */
static int reload_check_run(const struct config *old, const struct config *cfg)
{
	int problems = 0;
	bool unreachable = false;
	PGconn *conn = check_connect(cfg, &problems, &unreachable);
	if (conn == NULL)
		return unreachable ? RELOAD_CHECK_UNREACHABLE : RELOAD_CHECK_PROBLEMS;
	/* Another role or database may lack what the old one had: then every policy is checked. */
	bool every = session_settings_differ(old, cfg);
	if (every) {
		check_zone_is_named(conn, cfg);
		check_session_role(conn, cfg, &problems);
	}
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *before = config_find_policy(old, cfg->policies[i].name);
		if (every || before == NULL || !policy_unchanged(before, &cfg->policies[i]))
			check_policy(conn, cfg, &cfg->policies[i], &problems);
	}
	PQfinish(conn);
	return problems ? RELOAD_CHECK_PROBLEMS : RELOAD_CHECK_OK;
}

struct reload_check {
	struct daemon *d;
	struct config *cfg;
	unsigned generation;
	pid_t pid;
	int fd;
	struct event *readable, *deadline;
	char *out;
	size_t len;
};

/* The check's lines, one log entry each, at their own level. */
static void reload_check_log(const struct reload_check *rc)
{
	char *text = rc->out ? rc->out : "", *line, *save = NULL;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, ": warning: "))
			log_warn("%s", line);
		else
			log_err("%s", line);
	}
}

static void reload_check_free(struct reload_check *rc)
{
	if (rc->d->reload_check == rc)
		rc->d->reload_check = NULL;
	event_free(rc->readable);
	event_free(rc->deadline);
	close(rc->fd);
	free(rc->out);
	free(rc);
}

/* The child's exit code, or -1 if it did not exit by itself (killed, or not to be found). */
static int reload_check_reap(struct reload_check *rc)
{
	int status;
	pid_t got;
	while ((got = waitpid(rc->pid, &status, 0)) < 0 && errno == EINTR)
		;
	return got == rc->pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *reload_check_failure(bool timed_out, int code)
{
	if (timed_out)
		return "checking it against the database took too long";
	if (code == RELOAD_CHECK_UNREACHABLE)
		return "the database does not answer, so it cannot be checked (send SIGHUP again when it does)";
	if (code == RELOAD_CHECK_PROBLEMS)
		return "the database checks above failed";
	return "checking it against the database failed";
}

static void reload_check_done(struct reload_check *rc, bool timed_out)
{
	struct daemon *d = rc->d;
	int code;
	if (timed_out)
		kill(rc->pid, SIGKILL);
	code = reload_check_reap(rc);
	if (rc->generation != d->reload_generation || d->stopping) {
		/* A later SIGHUP read the file again, or the daemon is stopping (the child with it). */
		config_free(rc->cfg);
	} else {
		reload_check_log(rc);
		if (code == RELOAD_CHECK_OK) {
			accept_reload(d, rc->cfg);
		} else {
			reload_rejected(d, reload_check_failure(timed_out, code));
			config_free(rc->cfg);
		}
	}
	reload_check_free(rc);
}

static void on_reload_check_output(evutil_socket_t fd, short what, void *arg)
{
	struct reload_check *rc = arg;
	char buf[4096];
	ssize_t n;
	if (what & EV_TIMEOUT) {
		reload_check_done(rc, true);
		return;
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		reload_check_done(rc, false);
		return;
	}
	rc->out = xrealloc(rc->out, rc->len + (size_t)n + 1);
	memcpy(rc->out + rc->len, buf, (size_t)n);
	rc->len += (size_t)n;
	rc->out[rc->len] = '\0';
}

/*
 * The new configuration is resolved against the catalog before it replaces
 * the running one, in a child process: --check's statements block, and the
 * loop must not. A policy that would fail keeps the whole running
 * configuration in force, as a file that does not parse does.
 */
static void check_reload(struct daemon *d, struct config *cfg)
{
	/* Policies wait for it: a check that hangs (a server that does not answer) is given up. */
	static const struct timeval deadline = {15, 0};
	struct reload_check *rc;
	sigset_t all, before;
	int fds[2];
	pid_t pid;

	/* The check of an earlier SIGHUP is moot: its file was read again. */
	if (d->reload_check)
		kill(d->reload_check->pid, SIGKILL);
	if (pipe(fds) < 0) {
		log_err("configuration %s: cannot check it: pipe: %s", d->config_path, strerror(errno));
		reload_rejected(d, "it could not be checked");
		config_free(cfg);
		return;
	}
	fflush(NULL);
	/* The child must not run the parent's signal handlers: they write into the loop's signal pipe. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &before);
	pid = fork();
	if (pid == 0) {
		static const int defaults[] = {SIGHUP, SIGTERM, SIGINT, SIGPIPE};
		for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
			signal(defaults[i], SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sigprocmask(SIG_SETMASK, &before, NULL);
		close(fds[0]);
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(RELOAD_CHECK_PROBLEMS);
		close(fds[1]);
		int code = reload_check_run(d->cfg, cfg);
		fflush(stdout);
		/* Not exit(): the parent's connection and atexit handlers are not the child's. */
		_exit(code);
	}
	sigprocmask(SIG_SETMASK, &before, NULL);
	close(fds[1]);
	if (pid < 0) {
		log_err("configuration %s: cannot check it: fork: %s", d->config_path, strerror(errno));
		close(fds[0]);
		reload_rejected(d, "it could not be checked");
		config_free(cfg);
		return;
	}
	rc = xcalloc(1, sizeof(*rc));
	rc->d = d;
	rc->cfg = cfg;
	rc->generation = d->reload_generation;
	rc->pid = pid;
	rc->fd = fds[0];
	evutil_make_socket_nonblocking(rc->fd);
	rc->readable = event_new(d->base, rc->fd, EV_READ | EV_PERSIST, on_reload_check_output, rc);
	rc->deadline = evtimer_new(d->base, on_reload_check_output, rc);
	event_add(rc->readable, NULL);
	evtimer_add(rc->deadline, &deadline);
	d->reload_check = rc;
}

/* At exit: a check still running is stopped, and its child reaped. */
static void reload_check_abandon(struct daemon *d)
{
	struct reload_check *rc = d->reload_check;
	if (rc == NULL)
		return;
	kill(rc->pid, SIGKILL);
	reload_check_reap(rc);
	config_free(rc->cfg);
	reload_check_free(rc);
}

/* ---- main ---- */

static void print_once_summary(const struct daemon *d)
{
	long long total = 0;
	for (size_t i = 0; i < d->n_policies; i++) {
		const struct policy_state *ps = &d->policies[i];
		printf("%-32s %10lld purged%s\n", ps->policy->name, ps->purged,
		       ps->failed ? "  (failed: see log)" : "");
		total += ps->purged;
	}
	printf("%-32s %10lld purged\n", "total", total);
}

static const struct daemon_hooks hooks = {policy_idle, status_changed};

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'k'},
		{"once", no_argument, NULL, 'o'},
		{"foreground", no_argument, NULL, 'f'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct daemon *d = &daemon_state;
	bool check = false;
	struct event *sighup, *sigterm, *sigint, *watchdog = NULL;
	struct timeval tv;
	double resync;
	uint64_t watchdog_usec;
	int opt;

	d->config_path = SYSCONFDIR "/retentiond/retentiond.conf";
	d->hooks = &hooks;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d->config_path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'o':
			d->once = true;
			break;
		case 'f':
			break;
		case 'V':
			printf("retentiond %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "retentiond: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	d->cfg = load_config_or_report(d->config_path);
	if (d->cfg == NULL)
		fatal("configuration %s is not usable", d->config_path);
	log_set_level(d->cfg->log_level);
	session_check_sql = xasprintf("SELECT (%s), r.rolsuper, r.rolbypassrls, current_user"
				      " FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
				      schema_version_sql);
	if (check) {
		int status = check_policies(d->cfg);
		free(session_check_sql);
		config_free(d->cfg);
		return status;
	}

	signal(SIGPIPE, SIG_IGN);
	/* Inherited as ignored, children would be reaped unseen: a reload check's outcome must be read. */
	signal(SIGCHLD, SIG_DFL);
	srandom((unsigned)getpid());
	d->started_at = time(NULL);
	{
		/*
		 * Precise timers: with libevent's default coarse clock on Linux a
		 * timer fires up to a few ms before the due moment, the purge then
		 * finds nothing yet, and the policy waits for its retry.
		 */
		struct event_config *ec = event_config_new();
		event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
		d->base = event_base_new_with_config(ec);
		event_config_free(ec);
	}
	if (d->base == NULL)
		fatal("cannot create the event loop");
	sighup = evsignal_new(d->base, SIGHUP, on_sighup, d);
	sigterm = evsignal_new(d->base, SIGTERM, on_sigterm, d);
	sigint = evsignal_new(d->base, SIGINT, on_sigterm, d);
	evsignal_add(sighup, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	d->resync_timer = event_new(d->base, -1, EV_PERSIST, on_resync, d);
	d->status_timer = evtimer_new(d->base, on_status_timer, d);
	duration_to_seconds(&d->cfg->resync_interval, &resync);
	tv.tv_sec = (time_t)resync;
	tv.tv_usec = (suseconds_t)((resync - (double)tv.tv_sec) * 1e6);
	if (!d->once)
		evtimer_add(d->resync_timer, &tv);
	watchdog_usec = sdnotify_watchdog_usec();
	if (watchdog_usec > 0 && !d->once) {
		/* Pinging at half the interval: a stuck loop misses it and systemd restarts us. */
		struct timeval half = {(time_t)(watchdog_usec / 2000000), (suseconds_t)(watchdog_usec / 2 % 1000000)};
		watchdog = event_new(d->base, -1, EV_PERSIST, on_watchdog, d);
		evtimer_add(watchdog, &half);
	}

	d->throttle = throttle_new(d, scheduler_throttle_turn);
	scheduler_init(d);
	requests_init(d);
	throttle_configure(d->throttle, d->cfg);
	d->metrics = metrics_new(d->base);
	if (!configure_metrics(d))
		fatal("cannot serve metrics: see the line before");
	log_info("retentiond %s starting: instance %s, %zu policies from %s", PACKAGE_VERSION, d->cfg->instance,
		 d->n_policies, d->config_path);
	start_connection(d);
	if (!d->once)
		sdnotify_ready("connecting to PostgreSQL");

	event_base_dispatch(d->base);

	if (d->once) {
		print_once_summary(d);
		for (size_t i = 0; i < d->n_policies; i++)
			if (d->policies[i].failed)
				d->exit_status = 1;
	}
	reload_check_abandon(d);
	log_info("retentiond stopped: %lld records purged by this process", d->purged_total);
	pgconn_free(d->pg);
	metrics_free(d->metrics);
	requests_free(d);
	scheduler_free(d);
	throttle_free(d->throttle);
	config_free(d->cfg);
	config_free(d->pending_cfg);
	free(d->session_settings);
	free(d->database_identity);
	event_free(sighup);
	event_free(sigterm);
	event_free(sigint);
	event_free(d->resync_timer);
	event_free(d->status_timer);
	if (watchdog)
		event_free(watchdog);
	event_base_free(d->base);
	free(session_check_sql);
	return d->exit_status;
}
