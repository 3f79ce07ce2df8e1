/*
 * request.c -- data subjects' requests in the daemon. The open erasure
 * requests are read when the session is ready, when retentionctl notifies
 * (a request filed or closed), at every resync and reload, and after a pass
 * that left one unfinished. One request is carried out at a time, one
 * policy at a time: each policy whose identity it names purges the
 * subject's records in its own batches (purge.c: the same locks, holds and
 * audit chain, the rows marked cause "request"), then reads what is left of
 * them and records it. A policy with on_erasure = "keep" only records what
 * it keeps and why. The request is closed as done once every policy has
 * nothing erasable left; anything else (a failure, a record locked
 * elsewhere, a policy that cannot run, an identity no policy declares)
 * leaves it open, tried again. A closed request's identities are replaced
 * by their pseudonyms here, where the audit key is.
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
	char **parts;       /* the policies whose identity it names, as far as it got */
	size_t n_parts;
	bool unfinished; /* some part has erasable records left, or could not run */
	bool closed;     /* closed meanwhile (rejected): the rest is not carried out */
	long long purged;
};

/*
 * Open erasure requests (to_erase), and closed requests whose identities are
 * still in clear ($1: this configuration pseudonymizes subjects), in id order.
 */
static const char requests_sql[] =
	"SELECT r.id, r.status OPERATOR(pg_catalog.=) 'open' AS to_erase,"
	" pg_catalog.array_agg(i.identity ORDER BY i.ord), pg_catalog.array_agg(i.value ORDER BY i.ord)"
	" FROM retention.requests r JOIN retention.request_identities i ON i.request_id OPERATOR(pg_catalog.=) r.id"
	" WHERE (r.kind OPERATOR(pg_catalog.=) 'erasure' AND r.status OPERATOR(pg_catalog.=) 'open')"
	" OR ($1::boolean AND r.status OPERATOR(pg_catalog.<>) 'open' AND NOT r.pseudonymized)"
	" GROUP BY r.id ORDER BY r.id";

static void start_next(struct daemon *d);
static void start_next_part(struct daemon *d);

static void request_free(struct erasure_request *r)
{
	free(r->id);
	policy_text_array_free(r->types);
	policy_text_array_free(r->values);
	for (size_t i = 0; i < r->n_parts; i++)
		free(r->parts[i]);
	free(r->parts);
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
	/* A new configuration or session tries the open requests afresh. */
	rq->retry_ms = 0;
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

/* A statement of the module ended: a reload or stop waiting for it may go on. */
static void statement_over(struct daemon *d)
{
	INVARIANT(d->requests->in_flight > 0);
	d->requests->in_flight--;
}

/* The current pass ends; the next request, or a new read if one was asked for meanwhile. */
static void pass_over(struct daemon *d)
{
	d->requests->current = NULL;
	start_next(d);
}

/* The request stays open: read the open requests again, later each time, up to a minute. */
static void retry_later(struct daemon *d, const struct erasure_request *r, const char *why)
{
	struct requests *rq = d->requests;
	int ms = rq->retry_ms ? rq->retry_ms : RETRY_FIRST_MS;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	rq->retry_ms = ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ms * 2;
	log_warn("erasure request %s: not done: %s (retentionctl request show %s); tried again in %d s", r->id, why,
		 r->id, ms / 1000);
	evtimer_add(rq->retry_timer, &tv);
}

static void on_finished(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	struct erasure_request *r = d->requests->current;
	char buf[512];
	statement_over(d);
	if (r != NULL) {
		if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			retry_later(d, r, pgconn_error_text(res, buf, sizeof(buf)));
		} else if (PQgetisnull(res, 0, 0)) {
			log_info("erasure request %s: done: %lld records purged by this pass, nothing erasable left",
				 r->id, r->purged);
			d->requests->retry_ms = 0;
		} else if (strncmp(PQgetvalue(res, 0, 0), "it was closed", 13) == 0) {
			log_info("erasure request %s: %s; not carried out further", r->id, PQgetvalue(res, 0, 0));
		} else {
			retry_later(d, r, PQgetvalue(res, 0, 0));
		}
		pass_over(d);
	}
	daemon_policy_idle(d);
}

/* Every part of the request is recorded: close it, or try it again later. */
static void request_over(struct daemon *d)
{
	struct erasure_request *r = d->requests->current;
	const char *params[2] = {r->id, NULL};
	char *policies;
	if (r->closed) {
		log_info("erasure request %s: closed meanwhile; its other parts are not carried out", r->id);
		pass_over(d);
		return;
	}
	if (r->unfinished) {
		retry_later(d, r, "a part could not be finished");
		pass_over(d);
		return;
	}
	/* The server checks each of this configuration's parts is finished, whatever this pass saw. */
	policies = policy_text_array(r->parts, r->n_parts);
	params[1] = policies;
	if (!send_statement(d, "SELECT retention.finish_erasure($1::bigint, $2::text[])", 2, params, on_finished, d))
		pass_over(d);
	free(policies);
}

/* One policy's part is recorded (or could not be): the next one. */
static void part_over(struct daemon *d, bool finished)
{
	struct erasure_request *r = d->requests->current;
	INVARIANT(r != NULL);
	if (!finished)
		r->unfinished = true;
	if (r->closed)
		request_over(d);
	else
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
	statement_over(d);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_err("erasure request %s: recording a policy's result failed: %s", requests_current_id(d),
			pgconn_error_text(res, buf, sizeof(buf)));
		finished = false;
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0 && d->requests->current) {
		d->requests->current->closed = true;
	}
	if (d->requests->current)
		part_over(d, finished);
	daemon_policy_idle(d);
}

/* Records where PS's part of the current request stands; then the part is over. */
static void record_progress(struct policy_state *ps, long long kept, const char *why, bool finished)
{
	struct daemon *d = ps->d;
	struct erasure_request *r = d->requests->current;
	struct progress *p = xcalloc(1, sizeof(*p));
	char kept_text[24];
	const char *params[5];
	snprintf(kept_text, sizeof(kept_text), "%lld", kept);
	params[0] = r->id;
	params[1] = ps->policy->name;
	params[2] = kept_text;
	params[3] = why;
	params[4] = finished ? "true" : "false";
	p->d = d;
	p->finished = finished;
	if (!finished)
		log_warn("erasure request %s: policy %s: %s", r->id, ps->policy->name, why ? why : "not finished");
	if (!send_statement(d, "SELECT retention.request_progress($1::bigint, $2, $3::bigint, $4, $5::boolean)", 5,
			    params, on_progress, p)) {
		free(p);
		part_over(d, false);
	}
}

/* What is left of the subject's records in a policy, after its erasure run or instead of one (keep). */
static void on_left(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct daemon *d = ps->d;
	long long erasable, kept, failed;
	char buf[512], *why = NULL;
	statement_over(d);
	if (d->requests->current == NULL) {
		daemon_policy_idle(d);
		return;
	}
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		why = xasprintf("reading what is left of the subject's records failed: %s",
				pgconn_error_text(res, buf, sizeof(buf)));
		record_progress(ps, 0, why, false);
	} else if (!daemon_session_intact(d, res, 4, ps->policy->name, false)) {
		record_progress(ps, 0, "the session changed while reading what is left", false);
	} else {
		erasable = atoll(PQgetvalue(res, 0, 0));
		kept = atoll(PQgetvalue(res, 0, 1));
		failed = atoll(PQgetvalue(res, 0, 3));
		if (ps->policy->on_erasure == POLICY_ERASURE_KEEP) {
			if (erasable + kept + failed > 0)
				why = xasprintf("kept (on_erasure = keep): %s", ps->policy->erasure_exception);
			record_progress(ps, erasable + kept + failed, why, true);
		} else if (failed > 0) {
			/* A failure is never "done": the quarantined record is tried again at its retry. */
			why = xasprintf("%lld record%s could not be purged (retentionctl quarantine list says why)",
					failed, failed == 1 ? "" : "s");
			record_progress(ps, kept, why, false);
		} else if (erasable > 0) {
			why = xasprintf("%lld record%s not purged yet (locked by another transaction?)%s%s", erasable,
					erasable == 1 ? "" : "s", kept ? "; kept: " : "",
					kept ? PQgetvalue(res, 0, 2) : "");
			record_progress(ps, kept, why, false);
		} else {
			why = kept ? xasprintf("kept: %s", PQgetvalue(res, 0, 2)) : NULL;
			record_progress(ps, kept, why, true);
		}
	}
	free(why);
	daemon_policy_idle(d);
}

static void read_left(struct policy_state *ps, const char *values)
{
	const char *params[POLICY_N_BASE_PARAMS + 1];
	Oid types[POLICY_N_BASE_PARAMS + 1];
	char limit[16];
	purge_params(ps, params, types, limit);
	params[POLICY_PARAM_EXTRA] = values;
	types[POLICY_PARAM_EXTRA] = 0;
	if (!may_send(ps->d) || !pgconn_query(ps->d->pg, ps->d->requests, PGCONN_PLAIN, ps->sql.erase_left,
					      POLICY_N_BASE_PARAMS + 1, types, params, on_left, ps)) {
		part_over(ps->d, false);
		return;
	}
	ps->d->requests->in_flight++;
}

/* Why PS cannot carry out its part at all now, not merely later; NULL if it can (or may, once idle). */
static const char *part_impossible(const struct policy_state *ps)
{
	if (ps->off_until_reload)
		return ps->problem ? ps->problem : "the policy is off until the daemon is reloaded";
	if (ps->resolved && ps->sql.erase_lock == NULL)
		return "its subject column's type has no equality operator: its records cannot be looked up";
	/* Not looked up, and nothing will look it up before the next resync: its description failed. */
	if (!ps->resolved && ps->phase == POLICY_IDLE && !ps->ask_wanted && !ps->purge_wanted)
		return ps->problem ? ps->problem : "its table could not be looked up";
	return NULL;
}

bool requests_start_waiting(struct policy_state *ps)
{
	const char *why;
	char *values;
	if (!ps->erase_wanted || ps->d->requests->current == NULL)
		return false;
	if ((why = part_impossible(ps)) != NULL) {
		ps->erase_wanted = false;
		free(ps->erase_values);
		ps->erase_values = NULL;
		record_progress(ps, 0, why, false);
		return false;
	}
	if (ps->phase != POLICY_IDLE || !policy_may_start(ps))
		return false; /* once idle, or after the reload or reconnect that resets the pass */
	ps->erase_wanted = false;
	if (ps->policy->on_erasure == POLICY_ERASURE_KEEP) {
		values = ps->erase_values;
		ps->erase_values = NULL;
		read_left(ps, values);
		free(values);
		return false;
	}
	ps->erasing = true;
	ps->erase_request = requests_current_id(ps->d);
	ps->erased = 0;
	ps->purged_before_run = ps->purged;
	purge_start(ps);
	return true;
}

void requests_policy_finished(struct policy_state *ps, enum purge_outcome outcome)
{
	char *values = ps->erase_values;
	struct erasure_request *r = ps->d->requests->current;
	ps->erasing = false;
	ps->erase_request = NULL;
	ps->erase_values = NULL;
	if (r == NULL) {
		free(values);
		return;
	}
	r->purged += ps->erased;
	ps->erased = 0;
	if (outcome == PURGE_DONE)
		read_left(ps, values);
	else
		record_progress(ps, 0,
				outcome == PURGE_LOCKED                  ? "its lock is held elsewhere"
				: outcome == PURGE_FAILED && ps->problem ? ps->problem
									 : "its batches did not complete",
				false);
	free(values);
}

/* The first identity type of R that no policy of this configuration declares, or NULL. */
static const char *undeclared_identity(const struct daemon *d, const struct erasure_request *r)
{
	for (size_t i = 0; i < r->n; i++) {
		bool declared = false;
		for (size_t k = 0; k < d->n_policies && !declared; k++)
			declared = d->policies[k].policy->identity &&
				   strcmp(d->policies[k].policy->identity, r->types[i]) == 0;
		if (!declared)
			return r->types[i];
	}
	return NULL;
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
	const char *undeclared;
	while (r->next_policy < d->n_policies && values == NULL) {
		ps = &d->policies[r->next_policy++];
		values = policy_identity_values(ps->policy, r->types, r->values, r->n);
	}
	if (values == NULL) {
		if ((undeclared = undeclared_identity(d, r)) != NULL) {
			/* Part of what was asked would go undone: the request is not done. */
			log_warn("erasure request %s: no policy of this configuration declares identity %s", r->id,
				 undeclared);
			r->unfinished = true;
		}
		request_over(d);
		return;
	}
	r->parts = xrealloc(r->parts, (r->n_parts + 1) * sizeof(char *));
	r->parts[r->n_parts++] = xstrdup(ps->policy->name);
	free(ps->erase_values);
	ps->erase_values = values;
	ps->erase_wanted = true;
	requests_start_waiting(ps);
}

static void start_next(struct daemon *d)
{
	struct requests *rq = d->requests;
	if (rq->current)
		return;
	while (rq->next < rq->n_queue && rq->queue[rq->next].n == 0)
		rq->next++; /* a closed request, pseudonymized when read */
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

static void on_pseudonymized(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	char buf[512];
	statement_over(d);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
		log_err("replacing a closed request's identities by their pseudonyms failed: %s; tried again at the"
			" next resync",
			pgconn_error_text(res, buf, sizeof(buf)));
	daemon_policy_idle(d);
}

/* A closed request keeps its identities only as the audit trail's pseudonyms, made here with the key. */
static void pseudonymize(struct daemon *d, const char *id, char **values, size_t n)
{
	char **pseudonyms = xcalloc(n + 1, sizeof(char *)), *literal;
	const char *params[2];
	for (size_t i = 0; i < n; i++)
		pseudonyms[i] = audit_stored_value(&d->cfg->audit.key, values[i]);
	literal = policy_text_array(pseudonyms, n);
	params[0] = id;
	params[1] = literal;
	if (!send_statement(d, "SELECT retention.pseudonymize_request($1::bigint, $2::text[])", 2, params,
			    on_pseudonymized, d))
		log_debug("request %s: no connection to pseudonymize it on", id);
	policy_text_array_free(pseudonyms);
	free(literal);
}

static void on_read(PGresult *res, void *arg)
{
	struct daemon *d = arg;
	struct requests *rq = d->requests;
	char buf[512];
	statement_over(d);
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
		size_t n_types, n_values;
		char **types = policy_text_array_parse(PQgetvalue(res, (int)i, 2), &n_types);
		char **values = policy_text_array_parse(PQgetvalue(res, (int)i, 3), &n_values);
		r->id = xstrdup(PQgetvalue(res, (int)i, 0));
		if (strcmp(PQgetvalue(res, (int)i, 1), "t") != 0) {
			pseudonymize(d, r->id, values, n_values);
			policy_text_array_free(types);
			policy_text_array_free(values);
			continue; /* n 0: skipped by start_next */
		}
		r->types = types;
		r->values = values;
		r->n = n_types == n_values ? n_types : 0;
	}
	if (rq->n_queue == 0)
		rq->retry_ms = 0;
	start_next(d);
	daemon_policy_idle(d);
}

void requests_wake(struct daemon *d)
{
	struct requests *rq = d->requests;
	const char *params[1];
	if (rq == NULL || d->once)
		return;
	if (rq->reading || rq->current) {
		rq->read_wanted = true;
		return;
	}
	rq->read_wanted = false;
	evtimer_del(rq->retry_timer);
	params[0] = config_pseudonymizes_subject(d->cfg) && d->cfg->audit.key.bytes ? "true" : "false";
	if (send_statement(d, requests_sql, 1, params, on_read, d))
		rq->reading = true;
}
