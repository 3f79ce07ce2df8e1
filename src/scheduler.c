/*
 * When to purge. Each policy has one timer, armed for the moment its oldest
 * eligible record falls due as computed by the server (its clock, its
 * interval arithmetic in the configured zone). NOTIFY from notify_clock()
 * and the resync timer re-ask; nothing polls faster than that.
 */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "purge.h"
#include "util.h"

#define RETRY_FIRST_MS 10
#define RETRY_MAX_MS 30000
/* Wake this much after the due moment, so the server's clock has passed it too. */
#define TIMER_MARGIN_S 0.001

static void ask_next_due(struct policy_state *ps);
static void resolve_table(struct policy_state *ps);

static void arm(struct policy_state *ps, double seconds)
{
	struct timeval tv;
	if (seconds < 0)
		seconds = 0;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(ps->timer, &tv);
}

static int next_retry_ms(struct policy_state *ps)
{
	int ms = ps->retry_ms ? ps->retry_ms : RETRY_FIRST_MS;
	ps->retry_ms = ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ms * 2;
	return ms;
}

/* The phase ends: run a wake-up that came in meanwhile, and let the daemon act on idleness. */
static void become_idle(struct policy_state *ps)
{
	ps->phase = POLICY_IDLE;
	if (ps->wake_pending && !ps->d->stopping && pgconn_is_ready(ps->d->pg)) {
		ps->wake_pending = false;
		if (ps->resolved)
			ask_next_due(ps);
		else
			resolve_table(ps);
		return;
	}
	daemon_policy_idle(ps->d);
}

static void wake(struct policy_state *ps)
{
	/* --once purges each policy's backlog once; later clocks (its own anonymising UPDATE's too) wait for the daemon. */
	if (ps->d->stopping || ps->once_done || !pgconn_is_ready(ps->d->pg))
		return;
	if (ps->phase != POLICY_IDLE) {
		ps->wake_pending = true;
		return;
	}
	evtimer_del(ps->timer);
	if (!ps->resolved)
		resolve_table(ps);
	else if (ps->d->once)
		purge_start(ps);
	else
		ask_next_due(ps);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct policy_state *ps = arg;
	(void)fd;
	(void)what;
	if (ps->d->stopping || ps->phase != POLICY_IDLE || !pgconn_is_ready(ps->d->pg))
		return;
	/* The timer was armed for a due moment: purge straight away, the purge re-asks after. */
	if (ps->resolved)
		purge_start(ps);
	else
		resolve_table(ps);
}

static void on_next_due(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	double seconds;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_err("policy %s: asking for the next due record failed: %s", ps->policy->name,
			pgconn_error_text(res, buf, sizeof(buf)));
		if (res)
			arm(ps, next_retry_ms(ps) / 1000.0);
		become_idle(ps);
		return;
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		log_debug("policy %s: nothing pending", ps->policy->name);
		ps->retry_ms = 0;
		become_idle(ps);
		return;
	}
	seconds = atof(PQgetvalue(res, 0, 1));
	if (seconds <= 0 && ps->last_purge_empty) {
		/*
		 * Due, yet the last purge found nothing: its rows are locked by
		 * another transaction (SKIP LOCKED). Back off instead of spinning.
		 */
		seconds = next_retry_ms(ps) / 1000.0;
		log_debug("policy %s: due records are locked elsewhere; retrying in %.3f s",
			  ps->policy->name, seconds);
	} else {
		ps->retry_ms = 0;
		seconds += TIMER_MARGIN_S;
		log_debug("policy %s: next record due (or hold ending) at %s (in %.3f s)", ps->policy->name,
			  PQgetvalue(res, 0, 0), seconds);
	}
	ps->last_purge_empty = false;
	arm(ps, seconds);
	become_idle(ps);
}

static void ask_next_due(struct policy_state *ps)
{
	ps->phase = POLICY_ASKING;
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, ps->sql.next_wake, POLICY_N_BASE_PARAMS, ps->sql.types,
			  ps->sql.params, on_next_due, ps))
		become_idle(ps);
}

static void on_resolved(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_err("policy %s: looking up table %s failed: %s", ps->policy->name, ps->policy->table,
			pgconn_error_text(res, buf, sizeof(buf)));
		ps->failed = true;
		ps->once_done = true;
		become_idle(ps);
		return;
	}
	if (PQntuples(res) == 0) {
		log_err("policy %s: table %s does not exist; looking again at the next resync",
			ps->policy->name, ps->policy->table);
		ps->failed = true;
		ps->once_done = true;
		become_idle(ps);
		return;
	}
	if (!policy_sql_build(&ps->sql, ps->policy, PQgetvalue(res, 0, 1), ps->d->cfg->instance,
			      pgconn_raw(ps->d->pg))) {
		log_err("policy %s: cannot quote its column names", ps->policy->name);
		ps->failed = true;
		ps->once_done = true;
		become_idle(ps);
		return;
	}
	ps->resolved = true;
	log_debug("policy %s: table %s", ps->policy->name, ps->sql.table);
	if (ps->d->once) {
		purge_start(ps);
		return;
	}
	ask_next_due(ps);
}

static void resolve_table(struct policy_state *ps)
{
	char *schema = NULL, *rel = NULL;
	const char *why;
	const char *params[2];
	if (!config_split_table_name(ps->policy->table, &schema, &rel, &why)) {
		/* The loader already rejected such names; this only guards the invariant. */
		log_err("policy %s: table %s: %s", ps->policy->name, ps->policy->table, why);
		return;
	}
	params[0] = schema;
	params[1] = rel;
	ps->phase = POLICY_RESOLVING;
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, policy_resolve_table_sql, 2, NULL, params,
			  on_resolved, ps))
		become_idle(ps);
	free(schema);
	free(rel);
}

/* --once waits for a lock held elsewhere (another instance, a hold being placed) as long as lock_timeout. */
static bool once_lock_wait_over(struct policy_state *ps)
{
	struct timespec now;
	double waited, limit = 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ps->locked_since.tv_sec == 0)
		ps->locked_since = now;
	waited = (double)(now.tv_sec - ps->locked_since.tv_sec) +
		 (double)(now.tv_nsec - ps->locked_since.tv_nsec) / 1e9;
	duration_to_seconds(&ps->d->cfg->lock_timeout, &limit);
	return waited >= limit;
}

void scheduler_purge_finished(struct policy_state *ps, enum purge_outcome outcome)
{
	struct daemon *d = ps->d;
	switch (outcome) {
	case PURGE_DONE:
		ps->retry_ms = ps->last_purge_empty ? ps->retry_ms : 0;
		if (d->once) {
			ps->once_done = true;
			break;
		}
		if (!d->stopping && pgconn_is_ready(d->pg)) {
			ask_next_due(ps);
			return;
		}
		break;
	case PURGE_LOCKED:
		if (d->once && once_lock_wait_over(ps)) {
			log_err("policy %s: its lock stayed held elsewhere for database.lock_timeout;"
				" nothing purged", ps->policy->name);
			ps->failed = true;
			ps->once_done = true;
			break;
		}
		if (!d->stopping)
			arm(ps, next_retry_ms(ps) / 1000.0);
		break;
	case PURGE_FAILED:
		if (d->once) {
			ps->once_done = true;
			break;
		}
		if (!d->stopping)
			arm(ps, next_retry_ms(ps) / 1000.0);
		break;
	case PURGE_STOPPED:
		break;
	}
	become_idle(ps);
}

void scheduler_init(struct daemon *d)
{
	d->n_policies = d->cfg->n_policies;
	d->policies = xcalloc(d->n_policies + 1, sizeof(*d->policies));
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		ps->d = d;
		ps->policy = &d->cfg->policies[i];
		ps->timer = evtimer_new(d->base, on_timer, ps);
	}
}

void scheduler_free(struct daemon *d)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		event_free(d->policies[i].timer);
		policy_sql_free(&d->policies[i].sql);
	}
	free(d->policies);
	d->policies = NULL;
	d->n_policies = 0;
}

void scheduler_wake_all(struct daemon *d)
{
	for (size_t i = 0; i < d->n_policies; i++)
		wake(&d->policies[i]);
}

void scheduler_policy_changed(struct daemon *d, const char *policy)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		if (strcmp(d->policies[i].policy->name, policy) == 0) {
			log_debug("policy %s: a hold was released", policy);
			wake(&d->policies[i]);
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

void scheduler_connection_lost(struct daemon *d)
{
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		evtimer_del(ps->timer);
		ps->phase = POLICY_IDLE;
		ps->wake_pending = false;
		/* The table may have been dropped or renamed while we were away. */
		ps->resolved = false;
		policy_sql_free(&ps->sql);
	}
}

bool scheduler_all_idle(const struct daemon *d)
{
	for (size_t i = 0; i < d->n_policies; i++)
		if (d->policies[i].phase != POLICY_IDLE)
			return false;
	return true;
}
