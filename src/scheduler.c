/*
 * scheduler.c -- when to purge. Each policy has one due timer, armed for the
 * moment its next purgeable record falls due as computed by the server (its
 * clock, its interval arithmetic in the configured zone). NOTIFY from
 * notify_clock(), a released hold and the resync timer ask again, at most
 * once per SCHEDULER_ASK_INTERVAL; an answer that says "due" purges at once,
 * so no amount of notifications can keep a due record waiting.
 */
#include "scheduler.h"

#include "invariant.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "purge.h"
#include "request.h"
#include "session.h"
#include "throttle.h"
#include "util.h"

#define RETRY_FIRST_MS 10
#define RETRY_MAX_MS   30000
/* Wake this much after the due moment, so the server's clock has passed it too. */
#define TIMER_MARGIN_S 0.001
/* At most one next-due question per policy in this time, however many wake-ups arrive. */
#define SCHEDULER_ASK_INTERVAL_S 0.1
/* A timer further out than this is re-armed by the resync long before it matters. */
#define TIMER_MAX_S 86400.0

static void ask_next_due(struct policy_state *ps);
static void resolve_table(struct policy_state *ps);
static void count_for_metrics(struct policy_state *ps);
static void check_rule(struct policy_state *ps);
static void not_resolved(struct policy_state *ps);
static void rows_purged(struct daemon *d, const char *table);


static double monotonic_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void arm(struct event *timer, double seconds)
{
	struct timeval tv;
	/* An infinite or absurd answer (a +infinity clock on PostgreSQL 17) must not become a past timer. */
	if (!isfinite(seconds) || seconds > TIMER_MAX_S)
		seconds = seconds < 0 ? 0 : TIMER_MAX_S;
	if (seconds < 0)
		seconds = 0;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(timer, &tv);
}

static int next_retry_ms(struct policy_state *ps)
{
	int ms = ps->retry_ms ? ps->retry_ms : RETRY_FIRST_MS;
	ps->retry_ms = ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ms * 2;
	return ms;
}


static void start_purge(struct policy_state *ps)
{
	ps->purge_wanted = false;
	ps->purged_before_run = ps->purged;
	purge_start(ps);
}

/* Asks now if the last ask was long enough ago, else once the interval has passed. */
static void request_ask(struct policy_state *ps)
{
	double wait;
	if (ps->phase != POLICY_IDLE) {
		ps->ask_wanted = true;
		return;
	}
	if (evtimer_pending(ps->ask_timer, NULL))
		return;
	wait = ps->last_ask_at + SCHEDULER_ASK_INTERVAL_S - monotonic_now();
	if (wait > 0)
		arm(ps->ask_timer, wait);
	else
		ask_next_due(ps);
}

/*
 * The phase ends. A reload or a stop waiting for this policy comes first;
 * then whatever was asked for meanwhile: a due timer that fired, a wake-up.
 */
static void become_idle(struct policy_state *ps)
{
	policy_enter(ps, POLICY_IDLE);
	/* An erasure request's part waiting for this policy starts now, or is given up if the policy cannot run. */
	if (requests_start_waiting(ps))
		return;
	if (policy_may_start(ps)) {
		if (!ps->resolved && (ps->ask_wanted || ps->purge_wanted)) {
			ps->ask_wanted = ps->purge_wanted = false;
			resolve_table(ps);
			return;
		}
		if (ps->purge_wanted) {
			start_purge(ps);
			return;
		}
		if (ps->ask_wanted) {
			ps->ask_wanted = false;
			request_ask(ps);
			if (ps->phase != POLICY_IDLE)
				return;
		}
	}
	daemon_policy_idle(ps->d);
}

static void wake(struct policy_state *ps)
{
	if (!policy_may_start(ps))
		return;
	if (ps->phase != POLICY_IDLE) {
		ps->ask_wanted = true;
		return;
	}
	if (!ps->resolved)
		resolve_table(ps);
	else if (ps->d->once)
		start_purge(ps);
	else
		request_ask(ps);
}

/* Purges now, or as soon as the phase in flight ends. */
static void purge_now(struct policy_state *ps)
{
	if (!policy_may_start(ps))
		return;
	if (ps->phase != POLICY_IDLE) {
		ps->purge_wanted = true;
		return;
	}
	if (ps->resolved)
		start_purge(ps);
	else
		resolve_table(ps);
}

static void on_due_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	/* The timer was armed for a due moment: purge straight away, the purge re-asks after. */
	purge_now(arg);
}

static void on_ask_timer(evutil_socket_t fd, short what, void *arg)
{
	struct policy_state *ps = arg;
	(void)fd;
	(void)what;
	if (policy_may_start(ps))
		request_ask(ps);
}

static void on_lock_holder(PGresult *res, void *arg)
{
	char *policy = arg;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		log_warn("policy %s: its lock is held by server process %s (role %s)", policy, PQgetvalue(res, 0, 0),
			 PQgetvalue(res, 0, 1));
	free(policy);
}

/* The lock or the due rows have been taken by others for a while: say so once, at warning. */
static void note_locked_elsewhere(struct policy_state *ps, const char *what, bool ask_holder)
{
	double now = monotonic_now();
	if (ps->locked_elsewhere_since == 0) {
		ps->locked_elsewhere_since = now;
		daemon_status_changed(ps->d);
	}
	if (ps->locked_elsewhere_warned || now - ps->locked_elsewhere_since <= 60)
		return;
	log_warn("policy %s: %s for over a minute; retrying every %d s at most", ps->policy->name, what,
		 RETRY_MAX_MS / 1000);
	ps->locked_elsewhere_warned = true;
	if (ask_holder) {
		/* Owned by the daemon, not the policy: a reload may free the policy before the answer. */
		char *policy = xstrdup(ps->policy->name);
		if (!pgconn_query(ps->d->pg, ps->d, PGCONN_PLAIN,
				  "SELECT h.* FROM pg_catalog.unnest($1::text[]) s(name),"
				  " retention.policy_lock_holder(s.name) h WHERE h.pid IS NOT NULL LIMIT 1",
				  1, NULL, &ps->sql.params[POLICY_PARAM_SIBLINGS], on_lock_holder, policy))
			free(policy);
	}
}

/*
 * The catalog no longer says what PS's statements were built from (a
 * foreign key, a partition, a trigger, row-level security): nothing was
 * purged from it; the next step describes the table again, and logs its
 * warnings again.
 */
static void describe_again(struct policy_state *ps)
{
	log_info("policy %s: table %s or a table its purge reads changed since it was described (foreign keys,"
		 " partitions, triggers, rules, columns or row-level security); describing it again",
		 ps->policy->name, ps->sql.table);
	ps->resolved = false;
	ps->warned = false;
}


/* PS purged, or the server answered when it is next due: what kept it from purging is over. */
static void problem_over(struct policy_state *ps)
{
	if (ps->problem == NULL)
		return;
	free(ps->problem);
	ps->problem = NULL;
	daemon_status_changed(ps->d);
}

const char *scheduler_problem_text(const struct policy_state *ps)
{
	if (ps->problem)
		return ps->problem;
	if (ps->off_until_reload)
		return "stopped until the daemon is reloaded or restarted (the log says why)";
	if (ps->newly_due >= 0)
		return "its changed rule waits for approval (retentionctl pending says how many records it would newly"
		       " purge; retentionctl approve --policy P --reason TEXT)";
	return NULL;
}

const char *scheduler_state_name(const struct policy_state *ps)
{
	if (ps->problem || ps->off_until_reload)
		return "failing";
	if (ps->newly_due >= 0)
		return "blocked";
	if (!ps->resolved || ps->locked_elsewhere_since != 0)
		return "waiting";
	return "enforcing";
}

static void on_next_due(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	double seconds;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		policy_problem(ps, "asking for the next due record failed: %s",
			       pgconn_error_text(res, buf, sizeof(buf)));
		if (res) {
			/*
			 * The table may have changed under it (row-level security, which
			 * makes the statement fail, a column): the next try describes it
			 * again, and says what is wrong.
			 */
			ps->resolved = false;
			arm(ps->due_timer, next_retry_ms(ps) / 1000.0);
		}
		become_idle(ps);
		return;
	}
	if (!daemon_session_intact(ps->d, res, 3, ps->policy->name, false)) {
		ps->off_until_reload = true;
		become_idle(ps);
		return;
	}
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		describe_again(ps);
		ps->ask_wanted = true;
		become_idle(ps);
		return;
	}
	problem_over(ps);
	if (ps->count_after_ask) {
		ps->count_after_ask = false;
		count_for_metrics(ps);
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		log_debug("policy %s: nothing pending", ps->policy->name);
		ps->retry_ms = 0;
		ps->last_purge_empty = false;
		become_idle(ps);
		return;
	}
	seconds = atof(PQgetvalue(res, 0, 1));
	if (seconds <= 0 && ps->last_purge_empty) {
		/* Due, yet the last batch could lock nothing: other transactions hold those rows (SKIP LOCKED). */
		seconds = next_retry_ms(ps) / 1000.0;
		note_locked_elsewhere(ps, "due records are locked by other transactions", false);
		log_debug("policy %s: due records are locked by other transactions; retrying in %.3f s",
			  ps->policy->name, seconds);
		ps->last_purge_empty = false;
		arm(ps->due_timer, seconds);
		become_idle(ps);
		return;
	}
	ps->retry_ms = 0;
	ps->last_purge_empty = false;
	if (seconds <= 0 && policy_may_start(ps)) {
		log_debug("policy %s: a record is due now (%s)", ps->policy->name, PQgetvalue(res, 0, 0));
		start_purge(ps);
		return;
	}
	seconds += TIMER_MARGIN_S;
	log_debug("policy %s: next record due (or hold ending, or quarantined record retried) at %s (in %s)",
		  ps->policy->name, PQgetvalue(res, 0, 0), seconds_for_people(seconds, buf, sizeof(buf)));
	arm(ps->due_timer, seconds);
	become_idle(ps);
}


static void ask_next_due(struct policy_state *ps)
{
	const char *params[POLICY_N_BASE_PARAMS + 1];
	Oid types[POLICY_N_BASE_PARAMS + 1];
	char limit[16];
	bool check_catalog = ps->check_catalog;
	/* A resync's ask: the metrics' counts are read again after it. */
	ps->count_after_ask = ps->count_after_ask || check_catalog;
	ps->check_catalog = false;
	ps->last_ask_at = monotonic_now();
	evtimer_del(ps->ask_timer);
	/* The answer re-arms the due timer; until then an old due moment may still fire and purge. */
	policy_enter(ps, POLICY_ASKING);
	purge_params(ps, params, types, limit);
	params[POLICY_PARAM_EXTRA] = check_catalog ? "true" : "false";
	types[POLICY_PARAM_EXTRA] = 16; /* boolean */
	/* The catalog is checked at a resync only: planned then, not set up at every batch. */
	if (!pgconn_query(ps->d->pg, ps, check_catalog ? PGCONN_PLAIN : PGCONN_PREPARED,
			  check_catalog ? ps->sql.next_wake_checked : ps->sql.next_wake, POLICY_N_BASE_PARAMS + 1,
			  types, params, on_next_due, ps))
		become_idle(ps);
}

/* ---- looking a policy's table up ---- */

/* The table cannot be used as configured: say why; the next resync or reconnect tries again. */
static void not_resolved(struct policy_state *ps)
{
	policy_sql_free(&ps->sql);
	policy_shape_free(&ps->shape);
	ps->resolved = false;
	if (ps->d->once) {
		ps->failed = true;
		ps->once_done = true;
	}
	become_idle(ps);
}

/* A statement of the daemon's about a policy, which may go in a reload before the answer. */
struct counting {
	struct daemon *d;
	char *policy;
	const char *which; /* quarantine_rows_cleared: which records' rows, for the log */
};

static struct counting *counting_new(const struct policy_state *ps, const char *which)
{
	struct counting *c = xcalloc(1, sizeof(*c));
	c->d = ps->d;
	c->policy = xstrdup(ps->policy->name);
	c->which = which;
	return c;
}

/*
 * The answer of quarantine_clear() for the records WHICH says; with a
 * second column, the session's settings after a statement that read the
 * policy's table.
 */
static void on_quarantine_rows_cleared(PGresult *res, void *arg)
{
	struct counting *c = arg;
	if (res && (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1))
		/* By its SQLSTATE alone: an input error of the key's type quotes the key, which may be personal data. */
		log_warn("policy %s: removing the quarantine rows of records %s failed (SQLSTATE %s)", c->policy,
			 c->which, pgconn_sqlstate(res));
	else if (res && (PQnfields(res) < 2 || daemon_session_intact(c->d, res, 1, c->policy, false)) &&
		 atoll(PQgetvalue(res, 0, 0)) > 0)
		log_info("policy %s: the quarantine rows of %s quarantined record(s) %s removed", c->policy,
			 PQgetvalue(res, 0, 0), c->which);
	free(c->policy);
	free(c);
}

/* ---- the rule's version (rule.h) ---- */

/* The rule is checked: the policy runs, with statements limited while it waits for approval. */
static void enforce(struct policy_state *ps)
{
	ps->resolved = true;
	daemon_status_changed(ps->d);
	if (ps->d->once) {
		start_purge(ps);
		return;
	}
	ask_next_due(ps);
}

/* Builds PS's statements again, for the rule's state: false (not resolved) if they cannot be. */
static bool rebuild(struct policy_state *ps, const struct policy_unapproved *unapproved)
{
	const char *why;
	policy_sql_free(&ps->sql);
	if (policy_sql_build(&ps->sql, ps->policy, &ps->shape, ps->d->cfg->instance, unapproved, &why))
		return true;
	policy_problem(ps, "not purging: %s", why);
	not_resolved(ps);
	return false;
}

static void approved_now(struct policy_state *ps)
{
	if (ps->newly_due >= 0)
		log_info("policy %s: rule version %lld approved; purging as configured", ps->policy->name,
			 ps->rule_state.version);
	ps->newly_due = -1;
	ps->blocked_logged = 0;
	if (rebuild(ps, NULL))
		enforce(ps);
}

static void on_rule_enforced(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		policy_problem(ps, "recording rule version %lld as the one in force failed: %s", ps->rule_state.version,
			       pgconn_error_text(res, buf, sizeof(buf)));
		not_resolved(ps);
		return;
	}
	ps->rule_state.approved = true;
	approved_now(ps);
}

/* The version is approved, or newly makes few enough records due: it is the version in force from now. */
static void enforce_version(struct policy_state *ps)
{
	char version[24];
	const char *params[1] = {version};
	snprintf(version, sizeof(version), "%lld", ps->rule_state.version);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, rule_enforce_sql, 1, NULL, params, on_rule_enforced, ps))
		not_resolved(ps);
}

/* More than guard_records newly due: only what the version in force also makes due is purged. */
static void wait_for_approval(struct policy_state *ps, long long newly_due)
{
	const struct rule_state *st = &ps->rule_state;
	ps->newly_due = newly_due;
	if (ps->blocked_logged != st->version) {
		char in_force[96];
		if (st->in_force == 0)
			snprintf(in_force, sizeof(in_force), "nothing (a new policy)");
		else if (!st->comparable)
			snprintf(in_force, sizeof(in_force),
				 "nothing (its table, clock or action is not version %lld's)", st->in_force);
		else
			snprintf(in_force, sizeof(in_force), "only what version %lld in force also makes due",
				 st->in_force);
		log_warn("policy %s: rule version %lld would newly purge %lld records, more than guard_records (%lld);"
			 " purging %s until it is approved: retentionctl approve --policy %s --reason TEXT%s",
			 ps->policy->name, st->version, newly_due, ps->policy->guard_records, in_force,
			 ps->policy->name, ps->d->once ? " (--once obeys it too)" : "");
		ps->blocked_logged = st->version;
	}
	if (ps->d->once)
		ps->failed = true;
	enforce(ps);
}

static void on_newly_due(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	long long n;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		policy_problem(ps, "counting what rule version %lld newly makes due failed: %s", ps->rule_state.version,
			       pgconn_error_text(res, buf, sizeof(buf)));
		not_resolved(ps);
		return;
	}
	n = atoll(PQgetvalue(res, 0, 0));
	if (ps->policy->guard_records > 0 && n > ps->policy->guard_records) {
		wait_for_approval(ps, n);
		return;
	}
	if (ps->newly_due < 0) {
		if (ps->policy->guard_records > 0)
			log_info("policy %s: rule version %lld newly makes %lld records due, no more than guard_records"
				 " (%lld): enforced",
				 ps->policy->name, ps->rule_state.version, n, ps->policy->guard_records);
		else
			log_info(
				"policy %s: rule version %lld newly makes %lld records due; guard_records = 0: enforced",
				ps->policy->name, ps->rule_state.version, n);
	}
	enforce_version(ps);
}

static void on_rule_seen(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct policy_unapproved u;
	const struct policy_unapproved *unapproved;
	const char *params[POLICY_N_BASE_PARAMS];
	Oid types[POLICY_N_BASE_PARAMS];
	char buf[512];
	int n;
	if (!rule_state_parse(res, &ps->rule_state)) {
		policy_problem(ps, "recording its rule in retention.rule_versions failed: %s",
			       pgconn_error_text(res, buf, sizeof(buf)));
		not_resolved(ps);
		return;
	}
	if (ps->rule_state.upgrade)
		log_info("policy %s: rule version %lld recorded as the version in force: the rule in force before rule"
			 " versions were recorded",
			 ps->policy->name, ps->rule_state.version);
	if (ps->rule_state.holds_moved[0]) {
		policy_problem(ps,
			       "not purging under rule version %lld: %s; release them and place them again by the new"
			       " column (retentionctl hold), or go back to the old one, and reload",
			       ps->rule_state.version, ps->rule_state.holds_moved);
		not_resolved(ps);
		return;
	}
	unapproved = rule_unapproved(&ps->rule_state, &u);
	if (unapproved == NULL) {
		enforce_version(ps);
		return;
	}
	if (!rebuild(ps, unapproved))
		return;
	n = policy_params(&ps->sql, params, types, NULL, 0, false);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, ps->sql.newly_due, n, types, params, on_newly_due, ps))
		not_resolved(ps);
}

/*
 * Records the rule PS was described with, as a version of its policy, and
 * learns whether it is approved; a rule not approved yet is approved by the
 * daemon if it newly makes no more than guard_records records due.
 */
static void check_rule(struct policy_state *ps)
{
	const char *params[7];
	int n;
	policy_enter(ps, POLICY_CHECKING_RULE);
	rule_free(&ps->rule);
	rule_of(&ps->rule, ps->d->cfg, ps->policy, &ps->shape);
	n = rule_seen_params(&ps->rule, ps->policy, ps->d->cfg->instance, params);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, rule_seen_sql, n, NULL, params, on_rule_seen, ps))
		not_resolved(ps);
}

static void on_validated(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		policy_problem(ps,
			       "not purging: an exempt or set value is not of its column's type,"
			       " or the policy's lock cannot be taken: %s; looking again at the next resync",
			       pgconn_error_text(res, buf, sizeof(buf)));
		not_resolved(ps);
		return;
	}
	if (!daemon_session_intact(ps->d, res, PQnfields(res) - 1, ps->policy->name, false)) {
		ps->off_until_reload = true;
		not_resolved(ps);
		return;
	}
	log_debug("policy %s: table %s", ps->policy->name, ps->sql.table);
	check_rule(ps);
}

static void on_described(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512], *table = ps->shape.table;
	long long oid = ps->shape.oid;
	const char *why;
	const char *params[POLICY_N_BASE_PARAMS];
	Oid types[POLICY_N_BASE_PARAMS];
	int n;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		policy_problem(ps, "describing table %s failed: %s", ps->policy->table,
			       pgconn_error_text(res, buf, sizeof(buf)));
		not_resolved(ps);
		return;
	}
	ps->shape.table = NULL;
	policy_shape_free(&ps->shape);
	policy_shape_parse(&ps->shape, res, oid, table);
	free(table);
	for (size_t i = 0; !ps->warned && i < ps->shape.n_warnings; i++)
		log_warn("policy %s: %s", ps->policy->name, ps->shape.warnings[i]);
	ps->warned = true;
	if (ps->shape.n_errors > 0) {
		for (size_t i = 0; i < ps->shape.n_errors; i++)
			policy_problem(ps, "not purging: %s", ps->shape.errors[i]);
		not_resolved(ps);
		return;
	}
	if (!policy_sql_build(&ps->sql, ps->policy, &ps->shape, ps->d->cfg->instance, NULL, &why)) {
		policy_problem(ps, "not purging: %s", why);
		not_resolved(ps);
		return;
	}
	policy_enter(ps, POLICY_VALIDATING);
	n = policy_params(&ps->sql, params, types, NULL, 0, false);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, ps->sql.validate, n, types, params, on_validated, ps))
		not_resolved(ps);
}

static void on_resolved(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512], *params[POLICY_DESCRIBE_N_PARAMS];
	int n;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		policy_problem(ps, "looking up table %s failed: %s", ps->policy->table,
			       pgconn_error_text(res, buf, sizeof(buf)));
		not_resolved(ps);
		return;
	}
	if (PQntuples(res) == 0) {
		policy_problem(ps, "table %s does not exist; looking again at the next resync", ps->policy->table);
		not_resolved(ps);
		return;
	}
	/* The description fills the rest of the shape. */
	policy_shape_free(&ps->shape);
	policy_sql_free(&ps->sql);
	ps->shape.oid = atoll(PQgetvalue(res, 0, 0));
	ps->shape.table = xstrdup(PQgetvalue(res, 0, 1));
	n = policy_describe_params(ps->d->cfg, ps->policy, ps->shape.oid, params);
	policy_enter(ps, POLICY_DESCRIBING);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, policy_describe_sql, n, NULL, (const char *const *)params,
			  on_described, ps))
		not_resolved(ps);
	policy_params_free(params, n);
}

static void resolve_table(struct policy_state *ps)
{
	char *schema, *rel;
	const char *params[2];
	if (!policy_resolve_params(ps->policy, &schema, &rel)) {
		/* The loader already rejected such names; this only guards the invariant. */
		log_err("policy %s: table %s is not a table name", ps->policy->name, ps->policy->table);
		return;
	}
	params[0] = schema;
	params[1] = rel;
	policy_enter(ps, POLICY_RESOLVING);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, policy_resolve_table_sql, 2, NULL, params, on_resolved, ps))
		not_resolved(ps);
	free(schema);
	free(rel);
}

/* --once waits for a lock held elsewhere (another instance, a hold being placed) as long as lock_timeout. */
static bool once_lock_wait_over(struct policy_state *ps)
{
	double now = monotonic_now(), limit = 0;
	if (ps->once_locked_since == 0)
		ps->once_locked_since = now;
	duration_to_seconds(&ps->d->cfg->lock_timeout, &limit);
	return now - ps->once_locked_since >= limit;
}


static void on_counted(PGresult *res, void *arg)
{
	struct counting *c = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		if (res)
			log_warn("policy %s: counting its overdue records for the metrics failed: %s", c->policy,
				 pgconn_error_text(res, buf, sizeof(buf)));
	} else if (daemon_session_intact(c->d, res, PENDING_SETTINGS, c->policy, false)) {
		struct metrics_policy_counts counts = {
			.overdue = atoll(PQgetvalue(res, 0, PENDING_OVERDUE)),
			.oldest_overdue_at = PQgetisnull(res, 0, PENDING_OLDEST_OVERDUE_AT)
						     ? 0
						     : atof(PQgetvalue(res, 0, PENDING_OLDEST_OVERDUE_AT)),
			.held = atoll(PQgetvalue(res, 0, PENDING_HELD)),
			.quarantined = atoll(PQgetvalue(res, 0, PENDING_QUARANTINED)),
			.referenced = atoll(PQgetvalue(res, 0, PENDING_REFERENCED)),
		};
		metrics_policy_counts(c->d->metrics, c->policy, &counts);
	}
	free(c->policy);
	free(c);
}

/*
 * What the metrics show of PS's records (overdue, the oldest of them, held,
 * quarantined), counted by the server with the policy's own predicate: at a
 * resync and after a purge run, never at a scrape. Owned by the daemon: the
 * policy's chain does not wait for it, and a reload may free the policy first.
 */
static void count_for_metrics(struct policy_state *ps)
{
	const char *params[POLICY_N_BASE_PARAMS + 1];
	Oid types[POLICY_N_BASE_PARAMS + 1];
	struct counting *c;
	char *sql;
	if (ps->d->once || !ps->resolved || ps->sql.pending == NULL)
		return;
	/* First, so that the count after it does not count them; it reads the table too. */
	c = counting_new(ps, "no longer in the table (deleted by others, or the policy moved to another table or key)");
	params[0] = c->policy;
	sql = xasprintf("SELECT s.*, " SESSION_SETTINGS_SQL " FROM (%s) s", ps->sql.quarantine_stale);
	if (!pgconn_query(ps->d->pg, ps->d, PGCONN_PLAIN, sql, 1, NULL, params, on_quarantine_rows_cleared, c)) {
		free(c->policy);
		free(c);
	}
	free(sql);
	c = counting_new(ps, NULL);
	policy_params(&ps->sql, params, types, NULL, 0, false);
	params[POLICY_PARAM_EXTRA] = "0 seconds";
	types[POLICY_PARAM_EXTRA] = 1186; /* interval */
	/* It reads the policy's table: what its owner's code may change of the session is read too. */
	sql = xasprintf("SELECT p.*, " SESSION_SETTINGS_SQL " FROM (%s) p", ps->sql.pending);
	if (!pgconn_query(ps->d->pg, ps->d, PGCONN_PLAIN, sql, POLICY_N_BASE_PARAMS + 1, types, params, on_counted,
			  c)) {
		free(c->policy);
		free(c);
	}
	free(sql);
}

static void purge_finished(struct policy_state *ps, enum purge_outcome outcome)
{
	struct daemon *d = ps->d;
	if (outcome == PURGE_DONE || outcome == PURGE_FAILED)
		count_for_metrics(ps);
	if (outcome != PURGE_LOCKED && !ps->last_purge_empty) {
		if (ps->locked_elsewhere_since != 0)
			daemon_status_changed(d);
		ps->locked_elsewhere_since = 0;
		ps->locked_elsewhere_warned = false;
	}
	if (ps->erasing)
		requests_policy_finished(ps, outcome);
	switch (outcome) {
	case PURGE_DONE:
		problem_over(ps);
		if (d->once) {
			/* What was purged may have kept other due records (a thread of replies): go on until a run purges nothing. */
			if (ps->purged > ps->purged_before_run)
				ps->purge_wanted = true;
			else
				ps->once_done = true;
			break;
		}
		if (policy_may_start(ps)) {
			/* The purge's own answer covers any wake-up that came in meanwhile. */
			ps->ask_wanted = false;
			ask_next_due(ps);
			return;
		}
		break;
	case PURGE_LOCKED:
		if (d->once && once_lock_wait_over(ps)) {
			log_err("policy %s: its lock stayed held elsewhere for database.lock_timeout;"
				" nothing purged",
				ps->policy->name);
			ps->failed = true;
			ps->once_done = true;
			break;
		}
		if (!d->once)
			note_locked_elsewhere(
				ps, "its lock is held elsewhere (another instance, or a hold being placed)", true);
		arm(ps->due_timer, next_retry_ms(ps) / 1000.0);
		break;
	case PURGE_FAILED:
		if (d->once) {
			ps->failed = true;
			ps->once_done = true;
			break;
		}
		arm(ps->due_timer, next_retry_ms(ps) / 1000.0);
		break;
	case PURGE_STOPPED:
		/* A reload or stop is waiting; the new configuration asks again. */
		break;
	case PURGE_STALE:
		describe_again(ps);
		ps->purge_wanted = true;
		break;
	case PURGE_THROTTLED:
		/* In line for its turn (scheduler_throttle_turn); meanwhile it looks for records just fallen due. */
		arm(ps->due_timer, throttle_turn_in(d->throttle));
		break;
	}
	become_idle(ps);
}

/* How purge runs (the scheduler's, and those of requests) report back. */
static const struct purge_hooks purge_hooks = {purge_finished, rows_purged};

void scheduler_init(struct daemon *d)
{
	d->purge_hooks = &purge_hooks;
	d->n_policies = d->cfg->n_policies;
	d->policies = xcalloc(d->n_policies + 1, sizeof(*d->policies));
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		ps->d = d;
		ps->policy = &d->cfg->policies[i];
		ps->limit = ps->policy->batch;
		ps->newly_due = -1;
		ps->due_timer = evtimer_new(d->base, on_due_timer, ps);
		ps->ask_timer = evtimer_new(d->base, on_ask_timer, ps);
	}
}

void scheduler_free(struct daemon *d)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		throttle_forget(d->throttle, ps);
		event_free(ps->due_timer);
		event_free(ps->ask_timer);
		policy_sql_free(&ps->sql);
		policy_shape_free(&ps->shape);
		rule_free(&ps->rule);
		purge_batch_clear(&ps->batch);
		free(ps->problem);
		free(ps->committed_in);
		free(ps->erase_values);
	}
	free(d->policies);
	d->policies = NULL;
	d->n_policies = 0;
}

/* What a policy's state carries across a reload, by the policy's name. */
struct carried {
	char *name;
	char *table; /* as configured */
	struct audit_anchor committed;
	char *committed_in;
	long long quarantined_in_row;
	time_t run_exhausted_at;
};

/*
 * After a reload, the new policies' states. The chain head a policy
 * committed outlives it (keyed by name, like the chain): a failover's lost
 * tail is found by comparing with it, reload or not, as long as the
 * database is the same. So does its run of records quarantined, on the
 * same table: a reload must not give a trigger that fails every row a new
 * allowance.
 */
void scheduler_reload(struct daemon *d)
{
	size_t n = d->n_policies;
	struct carried *c = xcalloc(n + 1, sizeof(*c));
	for (size_t i = 0; i < n; i++) {
		const struct policy_state *ps = &d->policies[i];
		c[i] = (struct carried){xstrdup(ps->policy->name),
					xstrdup(ps->policy->table),
					ps->committed,
					ps->committed_in ? xstrdup(ps->committed_in) : NULL,
					ps->quarantined_in_row,
					ps->run_exhausted_at};
	}
	scheduler_free(d);
	scheduler_init(d);
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		for (size_t j = 0; j < n; j++) {
			if (strcmp(ps->policy->name, c[j].name) != 0)
				continue;
			ps->committed = c[j].committed;
			ps->committed_in = c[j].committed_in;
			c[j].committed_in = NULL;
			if (strcmp(ps->policy->table, c[j].table) == 0) {
				ps->quarantined_in_row = c[j].quarantined_in_row;
				ps->run_exhausted_at = c[j].run_exhausted_at;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		free(c[i].name);
		free(c[i].table);
		free(c[i].committed_in);
	}
	free(c);
}

/* A rule waiting for approval is checked again (an approval NOTIFY may have been missed): described anew. */
static void recheck_waiting_rule(struct policy_state *ps)
{
	if (ps->resolved && ps->sql.unapproved)
		ps->resolved = false;
}

void scheduler_throttle_turn(struct policy_state *ps) { purge_now(ps); }

void scheduler_wake_all(struct daemon *d)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		d->policies[i].check_catalog = true;
		recheck_waiting_rule(&d->policies[i]);
		wake(&d->policies[i]);
	}
	requests_wake(d);
}

void scheduler_policy_changed(struct daemon *d, const char *policy)
{
	/* A hold of any policy on a table protects the records of every policy on it. */
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		bool concerned = strcmp(ps->policy->name, policy) == 0;
		for (size_t k = 0; !concerned && k < ps->shape.n_siblings; k++)
			concerned = strcmp(ps->shape.siblings[k].name, policy) == 0;
		if (concerned) {
			log_debug("policy %s: a hold of policy %s was released, or its rule approved", ps->policy->name,
				  policy);
			recheck_waiting_rule(ps);
			wake(ps);
		}
	}
}

void scheduler_table_changed(struct daemon *d, const char *table)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		if (ps->resolved && strcmp(ps->sql.table, table) == 0) {
			log_debug("policy %s: clocks changed in %s", ps->policy->name, table);
			wake(ps);
		}
	}
}

static void rows_purged(struct daemon *d, const char *table)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		for (size_t k = 0; k < ps->shape.n_guards; k++) {
			if (strcmp(ps->shape.guards[k].table, table) == 0 &&
			    strcmp(ps->sql.table ? ps->sql.table : "", table) != 0) {
				log_debug("policy %s: rows of %s that kept its records were purged", ps->policy->name,
					  table);
				wake(ps);
				break;
			}
		}
	}
}

void scheduler_connection_lost(struct daemon *d)
{
	requests_reset(d);
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		evtimer_del(ps->due_timer);
		evtimer_del(ps->ask_timer);
		if (ps->phase != POLICY_IDLE)
			log_debug("policy %s: %s -> idle (connection lost)", ps->policy->name,
				  policy_phase_name(ps->phase));
		ps->phase = POLICY_IDLE;
		ps->ask_wanted = ps->purge_wanted = false;
		ps->limit = ps->policy->batch;
		ps->split_left = 0;
		purge_batch_clear(&ps->batch);
		ps->erasing = false;
		ps->erased = 0;
		/* The table may have been dropped or renamed while we were away. */
		ps->resolved = false;
		policy_sql_free(&ps->sql);
	}
}

bool scheduler_all_idle(const struct daemon *d)
{
	if (!requests_idle(d))
		return false;
	for (size_t i = 0; i < d->n_policies; i++)
		if (d->policies[i].phase != POLICY_IDLE)
			return false;
	return true;
}
