/*
 * retentiond: options, start-up order, the main loop, reload and shutdown.
 *
 * Start-up: configuration (fatal if broken) -> event base and signals ->
 * connection (retried forever) -> session settings, schema check, LISTEN,
 * heartbeat -> every policy looked up and asked when it is next due.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autoconf.h"
#include "daemon.h"
#include "log.h"
#include "policy.h"
#include "schema.h"
#include "scheduler.h"
#include "sdnotify.h"
#include "util.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define TEXTOID 25

static const char session_sql[] = "SELECT set_config('TimeZone', $1, false),"
				  " set_config('statement_timeout', $2, false),"
				  " set_config('lock_timeout', $3, false)";

static const char heartbeat_sql[] =
	"INSERT INTO retention.instances AS i (instance, host, pid, version, started_at, heartbeat_at,"
	" policies, last_purge_at, purged_total)"
	" VALUES ($1, $2, $3::integer, $4, to_timestamp($5::float8), statement_timestamp(), $6::text[],"
	" to_timestamp(nullif($7, '0')::float8), $8::bigint)"
	" ON CONFLICT (instance) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,"
	" version = EXCLUDED.version, started_at = EXCLUDED.started_at,"
	" heartbeat_at = EXCLUDED.heartbeat_at, policies = EXCLUDED.policies,"
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
	for (size_t i = 0; i < errs.n; i++)
		log_err("%s", errs.lines[i]);
	config_errors_clear(&errs);
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
	char *policies;
	const char *params[8];
	gethostname(host, sizeof(host) - 1);
	for (size_t i = 0; i < d->n_policies; i++)
		names[i] = d->cfg->policies[i].name;
	policies = policy_text_array(names, d->n_policies);
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
	pgconn_query(d->pg, d, PGCONN_PLAIN, heartbeat_sql, 8, NULL, params, on_ignored, d);
	free(policies);
	free(names);
}

static void on_listen(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_err("LISTEN retentiond failed: %s", pgconn_error_text(res, buf, sizeof(buf)));
		return;
	}
	if (!d->once)
		send_heartbeat(d);
	scheduler_wake_all(d);
	if (!d->once)
		sdnotify_status("enforcing %zu policies", d->n_policies);
}

static void on_schema_version(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	int version;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_err("reading the schema version failed: %s", pgconn_error_text(res, buf, sizeof(buf)));
		return;
	}
	version = atoi(PQgetvalue(res, 0, 0));
	d->schema_ok = version == schema_latest_version();
	if (!d->schema_ok) {
		log_err("schema retention is at version %d, this build needs %d: %s; checking again at the next resync",
			version, schema_latest_version(),
			version > schema_latest_version() ? "upgrade retentiond" : "run retentionctl migrate");
		sdnotify_status("waiting for schema retention version %d", schema_latest_version());
		if (d->once) {
			d->exit_status = 1;
			event_base_loopexit(d->base, NULL);
		}
		return;
	}
	pgconn_query(d->pg, d, PGCONN_PLAIN, "LISTEN retentiond", 0, NULL, NULL, on_listen, d);
}

static void check_schema(struct daemon *d)
{
	pgconn_query(d->pg, d, PGCONN_PLAIN, schema_version_sql, 0, NULL, NULL, on_schema_version, d);
}

static void on_session(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		/* Nothing is purged without the configured zone and timeouts; the resync tries again. */
		log_err("setting up the session failed (is database.time_zone a zone PostgreSQL knows?): %s;"
			" trying again at the next resync",
			pgconn_error_text(res, buf, sizeof(buf)));
		if (d->once) {
			d->exit_status = 1;
			event_base_loopexit(d->base, NULL);
		}
		return;
	}
	d->session_ok = true;
	check_schema(d);
}

static void duration_ms_text(const struct duration *dur, char *buf, size_t size)
{
	double seconds = 0;
	duration_to_seconds(dur, &seconds);
	snprintf(buf, size, "%.0f", seconds * 1000.0);
}

static void set_up_session(struct daemon *d)
{
	char statement_ms[32], lock_ms[32];
	const char *params[3];
	Oid types[3] = {TEXTOID, TEXTOID, TEXTOID};
	duration_ms_text(&d->cfg->statement_timeout, statement_ms, sizeof(statement_ms));
	duration_ms_text(&d->cfg->lock_timeout, lock_ms, sizeof(lock_ms));
	params[0] = d->cfg->time_zone;
	params[1] = statement_ms;
	params[2] = lock_ms;
	pgconn_query(d->pg, d, PGCONN_PLAIN, session_sql, 3, types, params, on_session, d);
}

static void on_ready(struct pgconn *conn, void *arg)
{
	(void)conn;
	set_up_session(arg);
}

static void on_lost(struct pgconn *conn, void *arg)
{
	struct daemon *d = arg;
	(void)conn;
	d->session_ok = false;
	d->schema_ok = false;
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
	else
		scheduler_table_changed(arg, payload);
}

static const struct pgconn_callbacks pg_callbacks = {on_ready, on_lost, on_notify};

/* ---- reload, stop, resync ---- */

static void start_connection(struct daemon *d)
{
	d->pg = pgconn_new(d->base, d->cfg->conninfo, &pg_callbacks, d);
	pgconn_start(d->pg);
}

static bool session_settings_differ(const struct config *a, const struct config *b)
{
	return strcmp(a->conninfo, b->conninfo) != 0 || strcmp(a->time_zone, b->time_zone) != 0 ||
	       memcmp(&a->statement_timeout, &b->statement_timeout, sizeof(a->statement_timeout)) != 0 ||
	       memcmp(&a->lock_timeout, &b->lock_timeout, sizeof(a->lock_timeout)) != 0 ||
	       strcmp(a->instance, b->instance) != 0;
}

static void apply_pending_config(struct daemon *d)
{
	struct config *old = d->cfg;
	bool reconnect = session_settings_differ(old, d->pending_cfg);
	struct timeval tv;
	double resync;

	scheduler_free(d);
	d->cfg = d->pending_cfg;
	d->pending_cfg = NULL;
	log_set_level(d->cfg->log_level);
	scheduler_init(d);
	duration_to_seconds(&d->cfg->resync_interval, &resync);
	tv.tv_sec = (time_t)resync;
	tv.tv_usec = (suseconds_t)((resync - (double)tv.tv_sec) * 1e6);
	evtimer_add(d->resync_timer, &tv);
	log_info("configuration reloaded from %s: %zu policies", d->config_path, d->n_policies);
	if (reconnect) {
		log_info("database settings changed: reconnecting");
		pgconn_free(d->pg);
		start_connection(d);
	} else if (pgconn_is_ready(d->pg)) {
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

void daemon_policy_idle(struct daemon *d)
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

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct config *cfg;
	(void)fd;
	(void)what;
	log_info("SIGHUP: reloading %s", d->config_path);
	sdnotify_reloading();
	cfg = load_config_or_report(d->config_path);
	if (cfg == NULL) {
		log_err("configuration %s not reloaded: the %zu policies loaded before stay in force",
			d->config_path, d->n_policies);
		sdnotify_ready("reload failed; previous configuration in force");
		return;
	}
	config_free(d->pending_cfg);
	d->pending_cfg = cfg;
	/* Statements in flight belong to the old policies: swap once they are done. */
	daemon_policy_idle(d);
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
	for (size_t i = 0; i < d->n_policies; i++)
		evtimer_del(d->policies[i].timer);
	daemon_policy_idle(d);
}

static void on_resync(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	if (d->stopping || !pgconn_is_ready(d->pg))
		return;
	if (!d->session_ok) {
		set_up_session(d);
		return;
	}
	if (!d->schema_ok) {
		check_schema(d);
		return;
	}
	send_heartbeat(d);
	scheduler_wake_all(d);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sdnotify_watchdog();
}

/* ---- --check ---- */

static int check_policies(const struct config *cfg)
{
	PGconn *conn = PQconnectdb(cfg->conninfo);
	int problems = 0;
	char *err = NULL;
	int version;

	if (PQstatus(conn) != CONNECTION_OK) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", PQerrorMessage(conn));
		buf[strcspn(buf, "\n")] = '\0';
		printf("%s: database: cannot connect: %s\n", cfg->path, buf);
		PQfinish(conn);
		return 1;
	}
	{
		const char *tz[1] = {cfg->time_zone};
		PGresult *res = PQexecParams(conn, "SELECT set_config('TimeZone', $1, false)", 1, NULL, tz, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			printf("%s: database.time_zone: %s", cfg->path, PQresultErrorMessage(res));
			problems++;
		}
		PQclear(res);
	}
	version = schema_installed_version(conn, &err);
	if (version != schema_latest_version()) {
		printf("%s: database: schema retention is at version %d, this build needs %d (%s)\n", cfg->path,
		       version < 0 ? 0 : version, schema_latest_version(),
		       version > schema_latest_version() ? "upgrade retentiond" : "run retentionctl migrate");
		problems++;
		free(err);
	}
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *p = &cfg->policies[i];
		char *schema = NULL, *rel = NULL, *params[7];
		const char *why, *resolve_params[2];
		PGresult *res;
		int n;
		config_split_table_name(p->table, &schema, &rel, &why);
		resolve_params[0] = schema;
		resolve_params[1] = rel;
		res = PQexecParams(conn, policy_resolve_table_sql, 2, NULL, resolve_params, NULL, NULL, 0);
		free(schema);
		free(rel);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
			printf("%s:%d: policy %s: error: table %s does not exist\n", cfg->path, p->line, p->name,
			       p->table);
			problems++;
			PQclear(res);
			continue;
		}
		n = policy_check_params(p, atoll(PQgetvalue(res, 0, 0)), params);
		PQclear(res);
		res = PQexecParams(conn, policy_catalog_check_sql, n, NULL, (const char *const *)params, NULL,
				   NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			printf("%s:%d: policy %s: error: %s", cfg->path, p->line, p->name, PQresultErrorMessage(res));
			problems++;
		} else {
			for (int r = 0; r < PQntuples(res); r++) {
				printf("%s:%d: policy %s: %s: %s\n", cfg->path, p->line, p->name,
				       PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
				problems += strcmp(PQgetvalue(res, r, 0), "error") == 0;
			}
		}
		PQclear(res);
		for (int k = 0; k < n; k++)
			free(params[k]);
	}
	PQfinish(conn);
	if (problems == 0)
		printf("%s: %zu policies usable\n", cfg->path, cfg->n_policies);
	return problems ? 1 : 0;
}

/* ---- main ---- */

static void print_once_summary(const struct daemon *d)
{
	long long total = 0;
	for (size_t i = 0; i < d->n_policies; i++) {
		const struct policy_state *ps = &d->policies[i];
		printf("%-32s %10lld purged%s\n", ps->policy->name, ps->purged, ps->failed ? "  (failed: see log)" : "");
		total += ps->purged;
	}
	printf("%-32s %10lld purged\n", "total", total);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'k'},
		{"once", no_argument, NULL, 'o'},	  {"foreground", no_argument, NULL, 'f'},
		{"version", no_argument, NULL, 'V'},	  {"help", no_argument, NULL, 'h'},
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
	if (check)
		return check_policies(d->cfg);

	signal(SIGPIPE, SIG_IGN);
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

	scheduler_init(d);
	log_info("retentiond %s starting: instance %s, %zu policies from %s", PACKAGE_VERSION,
		 d->cfg->instance, d->n_policies, d->config_path);
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
	log_info("retentiond stopped: %lld records purged by this process", d->purged_total);
	pgconn_free(d->pg);
	scheduler_free(d);
	config_free(d->cfg);
	config_free(d->pending_cfg);
	event_free(sighup);
	event_free(sigterm);
	event_free(sigint);
	event_free(d->resync_timer);
	if (watchdog)
		event_free(watchdog);
	event_base_free(d->base);
	return d->exit_status;
}
