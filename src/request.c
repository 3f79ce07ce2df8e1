/*
 * request.c -- data subjects' erasure requests in the daemon. The open ones
 * are read when the session is ready, when `retentionctl request erase`
 * notifies, at every resync, and after a pass that left one unfinished.
 * One request is carried out at a time: each policy whose identity it
 * names purges the subject's records in its own batches (purge.c: the
 * same locks, holds and audit chain, the rows marked cause "request"),
 * then reads what is left of them and records it. A policy with
 * on_erasure = "keep" only records what it keeps and why. The request is
 * closed as done, its identities replaced by their pseudonyms, once every
 * policy has nothing erasable left; anything else (a failure, a record
 * locked elsewhere, a policy not running) leaves it open, tried again.
 */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "invariant.h"
#include "log.h"
#include "purge.h"
#include "session.h"
#include "util.h"

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   60000

struct erasure_request {
	char *id; /* as text: it is only ever a parameter */
	char **types, **values;
	size_t n;
	size_t next_policy; /* the parts are carried out one policy at a time, in configuration order */
	size_t parts;       /* policies whose identity it names, so far */
	bool unfinished;    /* some policy has erasable records left, or could not run */
	long long purged;
};

/* Every open erasure request with its identities, in id order. */
static const char open_requests_sql[] =
	"SELECT r.id, pg_catalog.array_agg(i.identity ORDER BY i.ord), pg_catalog.array_agg(i.value ORDER BY i.ord)"
	" FROM retention.requests r JOIN retention.request_identities i ON i.request_id OPERATOR(pg_catalog.=) r.id"
	" WHERE r.kind OPERATOR(pg_catalog.=) 'erasure' AND r.status OPERATOR(pg_catalog.=) 'open'"
	" GROUP BY r.id ORDER BY r.id";

static void start_next(struct daemon *d);

static void request_free(struct erasure_request *r)
{
	free(r->id);
	policy_text_array_free(r->types);
	policy_text_array_free(r->values);
	memset(r, 0, sizeof(*r));
}

static void queue_free(struct requests *rq)
{
	for (size_t i = 0; i < rq->n_queue; i++)
		request_free(&rq->queue[i]);
	free(rq->queue);
	rq->queue = NULL;
	rq->n_queue = rq->next = 0;
	rq->current = NULL;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	requests_wake(arg);
}

void requests_init(struct daemon *d)
{
	d->requests = xcalloc(1, sizeof(*d->requests));
	d->requests->retry_timer = evtimer_new(d->base, on_retry, d);
}

void requests_free(struct daemon *d)
{
	if (d->requests == NULL)
		return;
	queue_free(d->requests);
	event_free(d->requests->retry_timer);
	free(d->requests);
	d->requests = NULL;
}

const char *requests_current_id(const struct daemon *d)
{
	return d->requests && d->requests->current ? d->requests->current->id : NULL;
}

bool requests_idle(const struct daemon *d) { return d->requests == NULL || d->requests->in_flight == 0; }

void requests_reset(struct daemon *d)
{
	struct requests *rq = d->requests;
	for (size_t i = 0; i < d->n_policies; i++) {
		struct policy_state *ps = &d->policies[i];
		free(ps->erase_values);
		ps->erase_values = NULL;
		ps->erase_wanted = false;
	}
	queue_free(rq);
	rq->reading = false;
	rq->denied_warned = false;
}

/* Whether the daemon may send the module's next statement now. */
static bool may_send(const struct daemon *d)
{
	return !d->stopping && !daemon_reload_waits(d) && d->session_ready && pgconn_is_ready(d->pg);
}

static bool send_statement(struct daemon *d, const char *sql, int n, const char *const *params, pgconn_result_fn cb,
			   void *arg)
{
	if (!may_send(d) || !pgconn_query(d->pg, d->requests, PGCONN_PLAIN, sql, n, NULL, params, cb, arg))
		return false;
	d->requests->in_flight++;
	return true;
}

/* The current pass ends; the next request, or a new read if one was asked for meanwhile. */
static void pass_over(struct daemon *d)
{
	struct requests *rq = d->requests;
	rq->current = NULL;
	start_next(d);
}

static void on_finished(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	struct erasure_request *r = d->requests->current;
	char buf[512];
	d->requests->in_flight--;
	if (r == NULL) {
		daemon_policy_idle(d);
		return;
	}
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
		log_err("erasure request %s: closing it failed: %s; tried again", r->id,
			pgconn_error_text(res, buf, sizeof(buf)));
	else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		log_info("erasure request %s: done: %lld records purged by this pass, nothing erasable left", r->id,
			 r->purged);
	else
		log_warn("erasure request %s: a policy's result says records are left; tried again", r->id);
	pass_over(d);
	daemon_policy_idle(d);
}

/* Every policy of the request has recorded its part. */
static void request_over(struct daemon *d)
{
	struct requests *rq = d->requests;
	struct erasure_request *r = rq->current;
	const struct config *cfg = d->cfg;
	const char *params[2] = {r->id, NULL};
	char *values = NULL;
	if (r->unfinished) {
		int ms = rq->retry_ms ? rq->retry_ms : RETRY_FIRST_MS;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		rq->retry_ms = ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ms * 2;
		log_warn("erasure request %s: not finished (see its results: retentionctl request show %s); tried again"
			 " in %d s",
			 r->id, r->id, ms / 1000);
		evtimer_add(rq->retry_timer, &tv);
		pass_over(d);
		return;
	}
	if (config_pseudonymizes_subject(cfg)) {
		/* A closed request keeps the identities only as the trail's pseudonyms, made here. */
		char **pseudonyms = xcalloc(r->n + 1, sizeof(char *));
		for (size_t i = 0; i < r->n; i++)
			pseudonyms[i] = audit_stored_value(&cfg->audit.key, r->values[i]);
		values = policy_text_array(pseudonyms, r->n);
		policy_text_array_free(pseudonyms);
	}
	params[1] = values;
	if (!send_statement(d, "SELECT retention.finish_erasure($1::bigint, $2::text[])", 2, params, on_finished, d))
		pass_over(d);
	free(values);
}

static void start_next_part(struct daemon *d);

/* One policy's part is recorded (or could not be): the next one. */
static void job_over(struct daemon *d, bool finished)
{
	struct erasure_request *r = d->requests->current;
	INVARIANT(r != NULL);
	if (!finished)
		r->unfinished = true;
	start_next_part(d);
}

struct progress {
	struct daemon *d;
	bool finished;
};

static void on_progress(PGresult *res, void *arg)
{
	struct progress *p = arg;
	struct daemon *d = p->d;
	bool finished = p->finished;
	char buf[512];
	free(p);
	d->requests->in_flight--;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_err("recording an erasure request's result failed: %s", pgconn_error_text(res, buf, sizeof(buf)));
		finished = false;
	}
	if (d->requests->current)
		job_over(d, finished);
	daemon_policy_idle(d);
}

/* Records what PS did for the current request; then its part is over. */
static void record_progress(struct policy_state *ps, long long purged, long long kept, const char *why, bool finished)
{
	struct daemon *d = ps->d;
	struct erasure_request *r = d->requests->current;
	struct progress *p = xcalloc(1, sizeof(*p));
	char purged_text[24], kept_text[24];
	const char *params[6];
	snprintf(purged_text, sizeof(purged_text), "%lld", purged);
	snprintf(kept_text, sizeof(kept_text), "%lld", kept);
	params[0] = r->id;
	params[1] = ps->policy->name;
	params[2] = purged_text;
	params[3] = kept_text;
	params[4] = why;
	params[5] = finished ? "true" : "false";
	p->d = d;
	p->finished = finished;
	r->purged += purged;
	if (!finished)
		log_warn("erasure request %s: policy %s: %s", r->id, ps->policy->name, why ? why : "not finished");
	if (!send_statement(
		    d, "SELECT retention.request_progress($1::bigint, $2, $3::bigint, $4::bigint, $5, $6::boolean)", 6,
		    params, on_progress, p)) {
		free(p);
		job_over(d, false);
	}
}

struct left {
	struct policy_state *ps;
	long long purged;
};

/* What is left of the subject's records in a policy, after its erasure run or instead of one (keep). */
static void on_left(PGresult *res, void *arg)
{
	struct left *l = arg;
	struct policy_state *ps = l->ps;
	struct daemon *d = ps->d;
	long long purged = l->purged, erasable, kept, failed;
	char buf[512], *why;
	free(l);
	d->requests->in_flight--;
	if (d->requests->current == NULL) {
		daemon_policy_idle(d);
		return;
	}
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		why = xasprintf("reading what is left of the subject's records failed: %s",
				pgconn_error_text(res, buf, sizeof(buf)));
		record_progress(ps, purged, 0, why, false);
		free(why);
		daemon_policy_idle(d);
		return;
	}
	if (!daemon_session_intact(d, res, 4, ps->policy->name, false)) {
		record_progress(ps, purged, 0, "the session changed while reading what is left", false);
		daemon_policy_idle(d);
		return;
	}
	erasable = atoll(PQgetvalue(res, 0, 0));
	kept = atoll(PQgetvalue(res, 0, 1));
	failed = atoll(PQgetvalue(res, 0, 3));
	if (ps->policy->on_erasure == POLICY_ERASURE_KEEP) {
		why = xasprintf("kept (on_erasure = keep): %s", ps->policy->erasure_exception);
		record_progress(ps, 0, erasable + kept + failed, why, true);
	} else if (failed > 0) {
		/* A failure is never "done": the record is tried again after a reload or restart. */
		why = xasprintf("%lld records could not be purged (the daemon's log says why)", failed);
		record_progress(ps, purged, kept, why, false);
	} else if (erasable > 0) {
		why = xasprintf("%lld records not purged yet (locked by another transaction?)%s%s", erasable,
				kept ? "; kept: " : "", kept ? PQgetvalue(res, 0, 2) : "");
		record_progress(ps, purged, kept, why, false);
	} else {
		why = kept ? xasprintf("kept: %s", PQgetvalue(res, 0, 2)) : NULL;
		record_progress(ps, purged, kept, why, true);
	}
	free(why);
	daemon_policy_idle(d);
}

static void read_left(struct policy_state *ps, const char *values, long long purged)
{
	const char *params[POLICY_N_BASE_PARAMS + 1];
	Oid types[POLICY_N_BASE_PARAMS + 1];
	char limit[16], *sql;
	struct left *l = xcalloc(1, sizeof(*l));
	l->ps = ps;
	l->purged = purged;
	scheduler_params(ps, params, types, limit);
	params[POLICY_PARAM_EXTRA] = values;
	types[POLICY_PARAM_EXTRA] = 0;
	/* The statement reads the policy's table: what its owner's code may change of the session is read too. */
	sql = xasprintf("SELECT w.*, " SESSION_SETTINGS_SQL " FROM (%s) w", ps->sql.erase_left);
	if (!may_send(ps->d) || !pgconn_query(ps->d->pg, ps->d->requests, PGCONN_PLAIN, sql, POLICY_N_BASE_PARAMS + 1,
					      types, params, on_left, l)) {
		free(l);
		free(sql);
		job_over(ps->d, false);
		return;
	}
	ps->d->requests->in_flight++;
	free(sql);
}

bool requests_start_waiting(struct policy_state *ps)
{
	if (!ps->erase_wanted || ps->phase != POLICY_IDLE || !scheduler_may_start(ps))
		return false;
	ps->erase_wanted = false;
	ps->erasing = true;
	ps->erased = 0;
	ps->purged_before_run = ps->purged;
	purge_start(ps);
	return true;
}

void requests_policy_finished(struct policy_state *ps, enum purge_outcome outcome)
{
	char *values = ps->erase_values;
	long long erased = ps->erased;
	ps->erasing = false;
	ps->erase_values = NULL;
	ps->erased = 0;
	if (ps->d->requests->current == NULL) {
		free(values);
		return;
	}
	if (outcome == PURGE_DONE)
		read_left(ps, values, erased);
	else
		record_progress(ps, erased, 0,
				outcome == PURGE_LOCKED ? "its lock is held elsewhere"
				: ps->problem           ? ps->problem
							: "its batch did not complete",
				false);
	free(values);
}

/* The values of request R's identities that policy P's subject column holds, as a text[] literal; NULL if none. */
static char *values_for(const struct erasure_request *r, const struct policy *p)
{
	char **mine = xcalloc(r->n + 1, sizeof(char *)), *out = NULL;
	size_t n = 0;
	for (size_t i = 0; i < r->n; i++)
		if (p->identity && strcmp(p->identity, r->types[i]) == 0)
			mine[n++] = r->values[i];
	if (n)
		out = policy_text_array(mine, n);
	free(mine);
	return out;
}

/*
 * The current request's part in the next policy whose identity it names.
 * One at a time: the parts share the daemon's one connection with the
 * scheduled purges, whose batches then wait for one erasure batch at most,
 * not for every policy's.
 */
static void start_next_part(struct daemon *d)
{
	struct erasure_request *r = d->requests->current;
	struct policy_state *ps = NULL;
	char *values = NULL;
	while (r->next_policy < d->n_policies && values == NULL) {
		ps = &d->policies[r->next_policy++];
		values = values_for(r, ps->policy);
	}
	if (values == NULL) {
		if (r->parts == 0) {
			log_warn("erasure request %s: no policy of this configuration declares its identities; it stays"
				 " open",
				 r->id);
			r->unfinished = true;
		}
		request_over(d);
		return;
	}
	r->parts++;
	if (ps->policy->on_erasure == POLICY_ERASURE_KEEP && ps->resolved && ps->sql.erase_left) {
		read_left(ps, values, 0);
		free(values);
	} else if (!ps->resolved || ps->off_until_reload || ps->sql.erase_lock == NULL) {
		free(values);
		record_progress(ps, 0, 0,
				ps->problem ? ps->problem : "the policy is not running (its table is being looked up)",
				false);
	} else {
		free(ps->erase_values);
		ps->erase_values = values;
		ps->erase_wanted = true;
		requests_start_waiting(ps);
	}
}

static void start_next(struct daemon *d)
{
	struct requests *rq = d->requests;
	if (rq->current)
		return;
	if (rq->next >= rq->n_queue) {
		queue_free(rq);
		if (rq->read_wanted)
			requests_wake(d);
		return;
	}
	rq->current = &rq->queue[rq->next++];
	log_info("erasure request %s: purging the records of its subject in every matching policy", rq->current->id);
	start_next_part(d);
}

static void on_read(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	struct requests *rq = d->requests;
	char buf[512];
	rq->in_flight--;
	rq->reading = false;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		if (strcmp(pgconn_sqlstate(res), "42501") == 0) {
			if (!rq->denied_warned)
				log_err("reading data subjects' requests failed: %s; the daemon's role needs the grants of"
					" sql/daemon-role.sql (run it again after an upgrade); scheduled purges go on",
					pgconn_error_text(res, buf, sizeof(buf)));
			rq->denied_warned = true;
		} else if (res) {
			log_err("reading data subjects' requests failed: %s; tried again at the next resync",
				pgconn_error_text(res, buf, sizeof(buf)));
		}
		daemon_policy_idle(d);
		return;
	}
	queue_free(rq);
	rq->n_queue = (size_t)PQntuples(res);
	rq->queue = xcalloc(rq->n_queue + 1, sizeof(*rq->queue));
	for (size_t i = 0; i < rq->n_queue; i++) {
		struct erasure_request *r = &rq->queue[i];
		size_t n_values;
		r->id = xstrdup(PQgetvalue(res, (int)i, 0));
		r->types = policy_text_array_parse(PQgetvalue(res, (int)i, 1), &r->n);
		r->values = policy_text_array_parse(PQgetvalue(res, (int)i, 2), &n_values);
		if (n_values != r->n)
			r->n = 0; /* matches no policy: it stays open, and the log says so */
	}
	if (rq->n_queue == 0)
		rq->retry_ms = 0;
	start_next(d);
	daemon_policy_idle(d);
}

void requests_wake(struct daemon *d)
{
	struct requests *rq = d->requests;
	if (rq == NULL || d->once)
		return;
	if (rq->reading || rq->current) {
		rq->read_wanted = true;
		return;
	}
	rq->read_wanted = false;
	evtimer_del(rq->retry_timer);
	if (send_statement(d, open_requests_sql, 0, NULL, on_read, d))
		rq->reading = true;
}
