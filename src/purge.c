/*
 * purge.c -- the batch state machine. Each batch is one transaction: BEGIN;
 * take the policy's lock; lock the next due rows (SKIP LOCKED); purge exactly
 * those rows and write their audit rows and chain head; COMMIT. A batch is
 * reported purged only after its COMMIT succeeded; everything before that can
 * roll back (an error, a lost connection, kill -9) and then neither the
 * deletion nor its audit rows exist.
 *
 * A batch that fails because of the data in it (a foreign key, a trigger
 * that raises, a NOT NULL column) is split in halves until each record that
 * fails on its own is found; that record is quarantined (recorded in
 * retention.quarantine, which every statement of the policy reads, and
 * skipped until its retry is due), logged, and the others are purged.
 */
#include "purge.h"

#include <stdlib.h>
#include <string.h>

#include "invariant.h"
#include "log.h"
#include "metrics.h"
#include "sdnotify.h"
#include "session.h"
#include "throttle.h"
#include "util.h"

/*
 * Records found failing on their own one after another, with no record
 * purged in between, before the failures count as the policy's: a trigger
 * that raises for every row must stop the policy, not quarantine its table.
 */
#define QUARANTINE_RUN_MAX 20

/*
 * Records the keys $2 (text[]) of policy $1 as failing on their own; ->
 * their quarantine ids, in order, and how many were not quarantined before
 * (the statement's snapshot does not see the rows the function adds).
 */
/*
 * Records the keys $2 of table and key column $8 (key_of) in the quarantine:
 * those there already, and of the others the first $7 (the run's allowance). Returns the ids and the keys
 * recorded, in the order given, how many of them were not there before,
 * and how many were not there in all.
 */
static const char quarantine_sql[] =
	"WITH u AS (SELECT u.k, u.o, NOT EXISTS (SELECT FROM retention.quarantine q"
	"  WHERE q.policy OPERATOR(pg_catalog.=) $1 AND q.record_key OPERATOR(pg_catalog.=) u.k"
	"  AND q.key_type OPERATOR(pg_catalog.=) $3 AND q.key_of OPERATOR(pg_catalog.=) $8) AS fresh"
	" FROM pg_catalog.unnest($2::text[]) WITH ORDINALITY u(k, o)),"
	" r AS (SELECT u.*, pg_catalog.row_number() OVER (PARTITION BY u.fresh ORDER BY u.o) AS n FROM u),"
	" w AS (SELECT r.k, r.o, r.fresh FROM r WHERE NOT r.fresh OR r.n OPERATOR(pg_catalog.<=) $7::bigint)"
	" SELECT (SELECT coalesce(pg_catalog.array_agg(retention.quarantine_record($1, w.k, $3, $4, $5::interval, $6, $8)"
	"  ORDER BY w.o), '{}') FROM w),"
	" (SELECT coalesce(pg_catalog.array_agg(w.k ORDER BY w.o), '{}') FROM w),"
	" (SELECT pg_catalog.count(*) FILTER (WHERE w.fresh) FROM w), (SELECT pg_catalog.count(*) FILTER (WHERE u.fresh) FROM u)";

static void begin_batch(struct policy_state *ps);
static void guard_failed(struct policy_state *ps, const PGresult *res);

void purge_batch_clear(struct batch *b)
{
	free(b->table_oids);
	free(b->tids);
	free(b->keys);
	free(b->anonymized_keys);
	free(b->were_quarantined);
	free(b->lateness);
	for (int i = 0; i < AUDIT_INSERT_N_PARAMS; i++)
		free(b->audit[i]);
	policy_text_array_free(b->unpurged);
	memset(b, 0, sizeof(*b));
}

/* The batch was rolled back because a statement failed: counted once, however the failure goes on. */
static void count_failure(struct policy_state *ps)
{
	if (!ps->batch.failure_counted)
		metrics_batch_failed(ps->d->metrics, ps->policy->name);
	ps->batch.failure_counted = true;
}

static void finish(struct policy_state *ps, enum purge_outcome outcome)
{
	if (outcome == PURGE_FAILED)
		count_failure(ps);
	/* A batch granted backlog that purged none of it (it failed, its lock was taken): the rate is not spent. */
	if (ps->batch_granted) {
		throttle_give_back(ps->d->throttle, ps->batch_limit);
		ps->batch_granted = false;
	}
	purge_batch_clear(&ps->batch);
	ps->d->purge_hooks->finished(ps, outcome);
}

/*
 * After a batch that failed, and so was not checked before COMMIT: what its
 * statements may have left in the session (a prepared statement replaced, a
 * setting) outlives the rollback, so it is read before anything else runs.
 */
static void on_rolled_back(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	char buf[512];
	if (res == NULL)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_err("policy %s: reading the session after a failed batch failed: %s; replacing the session",
			ps->policy->name, pgconn_error_text(res, buf, sizeof(buf)));
		daemon_drop_session(ps->d);
		return;
	}
	if (!daemon_session_checked(ps->d, res, 0, ps->policy->name, true)) {
		ps->off_until_reload = true;
		ps->failed = true;
	}
}

static void send_rollback(struct policy_state *ps, int flags)
{
	if (!pgconn_query(ps->d->pg, ps, PGCONN_TXN_END | PGCONN_SIMPLE | flags, "ROLLBACK; SELECT " SESSION_CHECK_SQL,
			  0, NULL, NULL, on_rolled_back, ps))
		log_debug("policy %s: no connection to roll back on (the server rolls back)", ps->policy->name);
}

/* Ends the transaction after a failure, and reads the session in the same round trip. */
static void rollback(struct policy_state *ps) { send_rollback(ps, 0); }

/*
 * The same once the statement that ended the transaction's ownership (the
 * one with COMMIT) found it aborted: ahead of every other statement queued,
 * which would otherwise run inside it.
 */
static void rollback_first(struct policy_state *ps) { send_rollback(ps, PGCONN_FIRST); }

static void log_failure(struct policy_state *ps, const char *step, const PGresult *res)
{
	char buf[512];
	policy_problem(ps, "%s failed, batch rolled back: %s", step, pgconn_error_text(res, buf, sizeof(buf)));
}

/*
 * Errors the data of some record causes, which recur for that record on
 * every try: data exceptions, integrity violations, triggered actions,
 * exceptions raised by triggers and routines. Everything else (a timeout, a
 * lost connection, a serialization failure, a missing privilege) says
 * nothing about one record and is retried as a whole.
 */
static bool error_is_a_records(const char *sqlstate)
{
	static const char *const classes[] = {"22", "23", "27", "2F", "38", "39", "09", "P0", "44", NULL};
	for (const char *const *c = classes; *c; c++)
		if (strncmp(sqlstate, *c, 2) == 0)
			return true;
	return false;
}

static bool may_go_on(struct policy_state *ps)
{
	return !ps->d->stopping && !daemon_reload_waits(ps->d) && pgconn_is_ready(ps->d->pg);
}

/* The next batch, unless a stop, a reload or the connection says otherwise. */
static void next_batch(struct policy_state *ps)
{
	if (!may_go_on(ps))
		finish(ps, PURGE_STOPPED);
	else
		begin_batch(ps);
}

/*
 * How many more records not quarantined before may be found failing on their
 * own in this run. The allowance comes back daemon.quarantine_retry after it
 * ran out: twenty-one bad records in a row must not stop a policy for good,
 * while a trigger that raises for every row quarantines no more than twenty
 * records per interval.
 */
static long long quarantine_allowance(struct policy_state *ps)
{
	time_t now = time(NULL);
	double retry;
	if (ps->quarantined_in_row < QUARANTINE_RUN_MAX)
		return QUARANTINE_RUN_MAX - ps->quarantined_in_row;
	if (ps->run_exhausted_at == 0)
		ps->run_exhausted_at = now;
	if (duration_to_seconds(&ps->d->cfg->quarantine_retry, &retry) && retry > 0 &&
	    (double)(now - ps->run_exhausted_at) >= retry) {
		log_info(
			"policy %s: daemon.quarantine_retry has passed since %lld records in a row failed on their own:"
			" looking for the records that fail again",
			ps->policy->name, ps->quarantined_in_row);
		ps->quarantined_in_row = 0;
		ps->run_exhausted_at = 0;
		return QUARANTINE_RUN_MAX;
	}
	return 0;
}

/* More records not quarantined before fail on their own than the run allows: the policy fails, not they. */
static void quarantine_run_ran_out(struct policy_state *ps, const char *why, long long fresh)
{
	if (ps->run_exhausted_at == 0)
		ps->run_exhausted_at = time(NULL);
	policy_problem(ps,
		       "%s; records failing on their own in a row: %lld quarantined, %lld more, more than the %d"
		       " allowed: taken as the policy's failure, not its records', it is retried as a whole",
		       why, ps->quarantined_in_row, fresh, QUARANTINE_RUN_MAX);
	finish(ps, PURGE_FAILED);
}

/* What is being quarantined, for the log line once the ids are known. */
struct quarantining {
	struct policy_state *ps;
	char *keys; /* text[] literal */
	char *why;
};

static void on_quarantined(PGresult *res, void *arg)
{
	struct quarantining *q = arg;
	struct policy_state *ps = q->ps;
	const struct config *cfg = ps->d->cfg;
	char buf[512], retry[64];
	size_t n_keys = 0, n_ids = 0;
	char **keys, **ids;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		/* Not recorded, it would not be skipped: the next batch would fail on it again. */
		policy_problem(ps, "recording a record that cannot be purged in retention.quarantine failed: %s",
			       pgconn_error_text(res, buf, sizeof(buf)));
		finish(ps, PURGE_FAILED);
		goto out;
	}
	ids = policy_text_array_parse(PQgetvalue(res, 0, 0), &n_ids);
	keys = policy_text_array_parse(PQgetvalue(res, 0, 1), &n_keys);
	duration_to_sql(&cfg->quarantine_retry, retry, sizeof(retry));
	for (size_t i = 0; i < n_keys && i < n_ids; i++) {
		/* A key the trail keeps only as a pseudonym is not written to the log either. */
		if (config_pseudonymizes_key(cfg))
			log_err("policy %s: a record cannot be purged: %s; quarantined (retentionctl quarantine list: id %s)",
				ps->policy->name, q->why, ids[i]);
		else
			log_err("policy %s: record %s cannot be purged: %s; quarantined (retentionctl quarantine list: id"
				" %s)",
				ps->policy->name, keys[i], q->why, ids[i]);
	}
	policy_text_array_free(keys);
	policy_text_array_free(ids);
	/* One quarantined before and failing again says nothing new about the policy. */
	ps->quarantined_in_row += atoll(PQgetvalue(res, 0, 2));
	daemon_status_changed(ps->d);
	if (atoll(PQgetvalue(res, 0, 3)) > atoll(PQgetvalue(res, 0, 2))) {
		/* The allowance is used up: the rest wait for daemon.quarantine_retry, with the policy. */
		quarantine_run_ran_out(ps, q->why, atoll(PQgetvalue(res, 0, 3)) - atoll(PQgetvalue(res, 0, 2)));
		goto out;
	}
	next_batch(ps);
out:
	free(q->keys);
	free(q->why);
	free(q);
}

/*
 * Quarantines KEYS (a text[] literal) for WHY, after the transaction that
 * found them ended; then the next batch, which skips them. --once: not
 * everything due was purged.
 */
static void quarantine(struct policy_state *ps, const char *keys, const char *why)
{
	struct quarantining *q;
	char retry[64], allowance[24], *key_of;
	const char *params[8];
	ps->failed = true;
	q = xcalloc(1, sizeof(*q));
	duration_to_sql(&ps->d->cfg->quarantine_retry, retry, sizeof(retry));
	snprintf(allowance, sizeof(allowance), "%lld", quarantine_allowance(ps));
	q->ps = ps;
	q->keys = xstrdup(keys);
	q->why = xstrdup(why);
	params[0] = ps->policy->name;
	params[1] = q->keys;
	params[2] = ps->shape.key.type;
	params[3] = why;
	params[4] = retry;
	params[5] = ps->d->cfg->instance;
	params[6] = allowance;
	params[7] = key_of = policy_key_of(&ps->shape);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, quarantine_sql, 8, NULL, params, on_quarantined, q)) {
		free(key_of);
		free(q->keys);
		free(q->why);
		free(q);
		finish(ps, PURGE_FAILED);
		return;
	}
	free(key_of);
}

static void on_quarantine_cleared(PGresult *res, void *arg)
{
	char *policy = arg, buf[512];
	if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("policy %s: removing purged records from retention.quarantine failed: %s", policy,
			 pgconn_error_text(res, buf, sizeof(buf)));
	free(policy);
}

/* Quarantined records tried again were purged: they leave the quarantine (owned by the daemon: no chain waits). */
static void quarantine_clear(struct policy_state *ps, const char *keys)
{
	char *policy = xstrdup(ps->policy->name), *key_of = policy_key_of(&ps->shape);
	const char *params[3] = {policy, keys, key_of};
	log_info("policy %s: quarantined record%s purged on retry", policy, strchr(keys, ',') ? "s" : "");
	if (!pgconn_query(ps->d->pg, ps->d, PGCONN_PLAIN, "SELECT retention.quarantine_clear($1, $2::text[], $3)", 3,
			  NULL, params, on_quarantine_cleared, policy))
		free(policy);
	free(key_of);
}

/*
 * A value the batch stores breaks a domain of its column: with anonymize,
 * almost always a `set` value of the configuration (or NULL for a domain
 * that is NOT NULL), which every record would fail alike. The domain's check
 * is code of its owner, so it runs only inside a batch, not when the policy
 * is validated.
 */
static bool error_is_the_configurations(const struct policy_state *ps, const PGresult *res)
{
	const char *state = pgconn_sqlstate(res), *domain;
	if (ps->policy->action != POLICY_ACTION_ANONYMIZE || res == NULL)
		return false;
	domain = PQresultErrorField(res, PG_DIAG_DATATYPE_NAME);
	return domain && *domain && (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0);
}

/* The batch failed and its transaction is over (or its ROLLBACK queued). */
static void batch_failed(struct policy_state *ps, const char *step, PGresult *res)
{
	char buf[512];
	const char *state = pgconn_sqlstate(res);
	count_failure(ps);
	if (error_is_the_configurations(ps, res)) {
		policy_problem(ps,
			       "%s failed: %s: a value it anonymizes with breaks the domain of its column, for every"
			       " record alike; the policy does not run again until the daemon is reloaded or restarted",
			       step, pgconn_error_text(res, buf, sizeof(buf)));
		ps->off_until_reload = true;
		ps->failed = true;
		finish(ps, PURGE_FAILED);
		return;
	}
	/*
	 * Bisecting is worth its statements only while one more record may be
	 * quarantined (one quarantined before might be what fails again, but the
	 * allowance comes back as its automatic retry does).
	 */
	if (res != NULL && error_is_a_records(state) && quarantine_allowance(ps) < 1) {
		char *why =
			xasprintf("%s failed, batch rolled back: %s", step, pgconn_error_text(res, buf, sizeof(buf)));
		quarantine_run_ran_out(ps, why, 1);
		free(why);
		return;
	}
	if (res == NULL || !error_is_a_records(state)) {
		log_failure(ps, step, res);
		if (strcmp(state, "42501") == 0) {
			/* A grant was revoked: describing the table again says which one, and the GRANT that restores it. */
			ps->resolved = false;
		}
		finish(ps, PURGE_FAILED);
		return;
	}
	pgconn_error_text(res, buf, sizeof(buf));
	if (ps->batch.locked > 1) {
		/* Bisection: the failing record is among these; the first half is tried, then what is left of them. */
		ps->split_left = ps->batch.locked;
		ps->limit = (int)(ps->batch.locked / 2);
		log_warn("policy %s: %s failed, batch of %lld records rolled back: %s; splitting it to find the record"
			 " that cannot be purged",
			 ps->policy->name, step, ps->batch.locked, buf);
		next_batch(ps);
	} else if (ps->batch.locked == 1) {
		char *why = xasprintf("%s failed: %s", step, buf);
		ps->split_left = 0;
		ps->limit = ps->policy->batch;
		quarantine(ps, ps->batch.keys, why);
		free(why);
	} else {
		log_failure(ps, step, res);
		finish(ps, PURGE_FAILED);
	}
}

static void report(struct policy_state *ps)
{
	struct daemon *d = ps->d;
	struct batch *b = &ps->batch;
	char anchor[256], late[48], why[80];
	ps->batches++;
	if (b->purged > 0) {
		metrics_purged(d->metrics, ps->policy->name, ps->erasing ? "request" : "schedule", b->purged,
			       ps->erasing ? NULL : b->lateness, time(NULL));
		ps->committed = b->head;
		free(ps->committed_in);
		ps->committed_in = xstrdup(d->database_identity ? d->database_identity : "");
		ps->quarantined_in_row = 0;
		ps->run_exhausted_at = 0;
		ps->purged += b->purged;
		d->purged_total += b->purged;
		d->last_purge_at = time(NULL);
		daemon_status_changed(d);
		if (ps->erasing) {
			ps->erased += b->purged;
			snprintf(why, sizeof(why), " for erasure request %s", ps->erase_request);
		} else {
			snprintf(why, sizeof(why), ", at most %s after due",
				 seconds_for_people(b->max_late_seconds, late, sizeof(late)));
		}
		log_info("policy %s: purged %lld record%s from %s (%s)%s", ps->policy->name, b->purged,
			 b->purged == 1 ? "" : "s", ps->sql.table,
			 ps->policy->action == POLICY_ACTION_DELETE ? "deleted" : "anonymized", why);
		audit_anchor_format(ps->policy->name, &b->head, anchor, sizeof(anchor));
		log_info("%s", anchor);
		sdnotify_status("purged %lld records in all; last: %s", d->purged_total, ps->policy->name);
		/* Records of other policies that these rows kept may be due now. */
		d->purge_hooks->rows_purged(d, ps->sql.table);
	}
}

static void on_commit(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct batch *b = &ps->batch;
	long long limit = ps->batch_limit;

	if (res == NULL) {
		/* The server may have committed before the connection went: the audit log tells. */
		policy_problem(ps, "connection lost during COMMIT: the batch may or may not have committed;"
				   " its audit rows, if any, are the record");
		ps->failed = true;
		finish(ps, PURGE_FAILED);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQtransactionStatus(pgconn_raw(ps->d->pg)) == PQTRANS_INERROR) {
		/* The guard failed, or a statement before COMMIT: the transaction is open, and aborted. */
		guard_failed(ps, res);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		/*
		 * A deferred constraint, checked now: the transaction is over, nothing
		 * of it stays, and the read of the session after it did not run: it
		 * goes ahead of every statement queued.
		 */
		if (!pgconn_query(ps->d->pg, ps, PGCONN_FIRST, "SELECT " SESSION_CHECK_SQL, 0, NULL, NULL,
				  on_rolled_back, ps))
			log_debug("policy %s: no connection to read the session on", ps->policy->name);
		batch_failed(ps, "COMMIT", res);
		return;
	}
	report(ps);
	/* Committed: what it purged is what it spent of the rate. */
	if (ps->batch_granted) {
		throttle_give_back(ps->d->throttle, limit - b->locked);
		ps->batch_granted = false;
	} else if (ps->batch_kind != BATCH_PROBE) {
		throttle_charge(ps->d->throttle, b->locked);
	}
	if (!daemon_session_checked(ps->d, res, 0, ps->policy->name, false)) {
		/* Committed: the purge stands, and its audit rows prove it; the session goes. */
		ps->off_until_reload = true;
		ps->failed = true;
		finish(ps, PURGE_FAILED);
		return;
	}
	ps->last_purge_empty = b->locked == 0;
	if (b->were_quarantined)
		quarantine_clear(ps, b->were_quarantined);
	if (ps->split_left > 0) {
		/* This part of the failed batch purged: the failing record is in what is left of it. */
		ps->split_left -= b->locked;
		if (ps->split_left > 0 && b->locked == limit) {
			ps->limit = (int)((ps->split_left + 1) / 2);
		} else {
			ps->split_left = 0;
			ps->limit = ps->policy->batch;
		}
	}
	if (b->n_unpurged > 0) {
		char *keys = policy_text_array(b->unpurged, b->n_unpurged);
		quarantine(ps, keys,
			   "it was locked as due, but deleting or updating it changed nothing (a BEFORE trigger that"
			   " returns NULL, a rule, or row-level security)");
		free(keys);
	} else if (ps->batch_kind == BATCH_PROBE && b->locked > 0) {
		/* Backlog is left, and held back: it waits in line, and nothing of it is purged before its turn. */
		ps->fresh_done = false;
		throttle_wait(ps->d->throttle, ps);
		finish(ps, PURGE_THROTTLED);
	} else if (ps->batch_kind == BATCH_FRESH) {
		/* Records that just fell due: on, until none is left; then backlog, if any, by the throttle. */
		ps->fresh_done = b->locked < limit;
		if (ps->fresh_done && throttle_in_line(ps->d->throttle, ps)) {
			/* Its backlog is known already: it waits on, and looks for records just fallen due again. */
			ps->fresh_done = false;
			finish(ps, PURGE_THROTTLED);
		} else {
			next_batch(ps);
		}
	} else if (b->locked < limit && ps->split_left == 0) {
		ps->fresh_done = false;
		finish(ps, PURGE_DONE);
	} else {
		next_batch(ps);
	}
}

/* Rows the batch's purge statement writes to the audit tables: one per record purged, and the chain's head. */
static long long batch_audit_writes(const struct batch *b) { return b->purged + (b->purged > 0 ? 1 : 0); }

/* Markers the guard before COMMIT fails with, in its error's primary message. */
#define GUARD_SESSION "retentiond: the session changed"
#define GUARD_AUDIT   "retentiond: audit rows written "

/*
 * The guard before COMMIT, run on the server in the same simple query as
 * the COMMIT: it fails the transaction, so that COMMIT never runs, unless
 * the session is as the daemon set it up (settings, no statement made by
 * PREPARE, every one the daemon prepared) and the transaction wrote to the
 * audit tables exactly what the purge statement did: one row per record
 * purged and the chain's head. Code of a table's owner runs with the
 * daemon's role (a trigger; a domain's check on an anonymized value or a
 * generated column, outside any trigger) and could otherwise have changed
 * the session for everything after it, or added a correctly chained audit
 * row of its own. Every batch is checked, an empty one too: which code a
 * statement runs is for the catalog to say, not for the daemon to guess.
 * The failing branches are not constant, so the planner cannot fold them.
 */
static char *guard_sql(struct policy_state *ps)
{
	const struct batch *b = &ps->batch;
	PGconn *pg = pgconn_raw(ps->d->pg);
	char *settings = PQescapeLiteral(pg, ps->d->session_settings, strlen(ps->d->session_settings)), *sql;
	char statements[48];
	long long expected = b->audit_writes_before + batch_audit_writes(b);
	if (settings == NULL)
		return NULL;
	daemon_prepared_statements_expected(ps->d, statements, sizeof(statements));
	sql = xasprintf(
		"SELECT CASE"
		" WHEN (" SESSION_SETTINGS_SQL ")::pg_catalog.text OPERATOR(pg_catalog.<>) %s"
		" OR " PREPARED_STATEMENTS_SQL " OPERATOR(pg_catalog.<>) '%s'"
		" THEN ('" GUARD_SESSION " ' || (" SESSION_SETTINGS_SQL ")::pg_catalog.text || ' | ' ||"
		" " PREPARED_STATEMENTS_SQL ")::pg_catalog.int4"
		" WHEN %s AND " AUDIT_WRITES_SQL " OPERATOR(pg_catalog.<>) %lld"
		" THEN ('" GUARD_AUDIT "' || (" AUDIT_WRITES_SQL " OPERATOR(pg_catalog.-) %lld))::pg_catalog.int4"
		" ELSE 0 END;"
		/* A deferred trigger runs at COMMIT: the session is read again, before anything else runs on it. */
		" COMMIT; SELECT " SESSION_CHECK_SQL,
		settings, statements, b->audit_writes_before < 0 ? "false" : "true", expected, b->audit_writes_before);
	PQfreemem(settings);
	return sql;
}

/*
 * Logs what changed of the session as the guard saw it: TEXT is
 * " SETTINGS | STATEMENTS" and the closing quote of the error message that
 * quotes it. The ROLLBACK undoes a setting's change: only the guard saw it.
 */
static void log_session_seen(struct policy_state *ps, const char *text)
{
	char *seen = xstrdup(text), *bar = strrchr(seen, '|'), *statements;
	size_t len;
	if (bar == NULL || bar - seen < 2) {
		daemon_session_as_set_up(ps->d, NULL, NULL, ps->policy->name, true);
		free(seen);
		return;
	}
	bar[-1] = '\0';
	statements = bar + 2;
	len = strlen(statements);
	if (len && statements[len - 1] == '"')
		statements[len - 1] = '\0';
	/* Something changed, or the guard would not have failed. */
	if (daemon_session_as_set_up(ps->d, seen + 1, statements, ps->policy->name, true))
		daemon_session_as_set_up(ps->d, NULL, NULL, ps->policy->name, true);
	free(seen);
}

/* The transaction was found aborted before COMMIT: by the guard, whose failure also drops the session, or else. */
static void guard_failed(struct policy_state *ps, const PGresult *res)
{
	const struct batch *b = &ps->batch;
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *audit = msg ? strstr(msg, GUARD_AUDIT) : NULL;
	if (audit == NULL && (msg == NULL || strstr(msg, GUARD_SESSION) == NULL)) {
		/* Not the guard's own failure (a timeout): the batch is tried again. */
		log_failure(ps, "the check before COMMIT", res);
		rollback_first(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	ps->off_until_reload = true;
	ps->failed = true;
	if (audit == NULL)
		log_session_seen(ps, strstr(msg, GUARD_SESSION) + strlen(GUARD_SESSION));
	else
		policy_problem(
			ps,
			"code its statements ran with the daemon's role (a trigger, or a function of a table's"
			" owner) wrote to the audit trail or the quarantine: %lld rows written where the batch wrote %lld; the batch"
			" is rolled back, and the policy does not run again until the daemon is reloaded or"
			" restarted",
			atoll(audit + strlen(GUARD_AUDIT)), batch_audit_writes(b));
	rollback_first(ps);
	daemon_drop_session(ps->d);
	finish(ps, PURGE_FAILED);
}

/* Guard, COMMIT and the session read after it: one round trip. */
static void commit(struct policy_state *ps)
{
	char *sql = guard_sql(ps);
	if (sql == NULL ||
	    !pgconn_query(ps->d->pg, ps, PGCONN_TXN_END | PGCONN_SIMPLE, sql, 0, NULL, NULL, on_commit, ps))
		finish(ps, PURGE_FAILED);
	free(sql);
}

/* The batch's audit rows, hashed, from the purge statement's result: false if it does not add up. */
static bool hash_audit_rows(struct policy_state *ps, const PGresult *res)
{
	const struct config *cfg = ps->d->cfg;
	const struct policy_sql *sql = &ps->sql;
	/* The key was read with the configuration: a daemon that cannot read it does not run. */
	struct audit_batch ab = {
		.policy = sql->params[POLICY_PARAM_NAME],
		.service = sql->params[POLICY_PARAM_SERVICE],
		.source = sql->params[POLICY_PARAM_SOURCE],
		.table = sql->params[POLICY_PARAM_TABLE],
		.action = sql->params[POLICY_PARAM_ACTION],
		.instance = sql->params[POLICY_PARAM_INSTANCE],
		.cause = ps->erasing ? "request" : "schedule",
		.request_id = ps->erasing ? ps->erase_request : NULL,
		.key_key = config_pseudonymizes_key(cfg) ? &cfg->audit.key : NULL,
		.subject_key = config_pseudonymizes_subject(cfg) ? &cfg->audit.key : NULL,
	};
	INVARIANT((ab.key_key == NULL && ab.subject_key == NULL) || cfg->audit.key.bytes != NULL);
	return audit_batch_params(&ab, res, ps->batch.purged, ps->batch.audit, &ps->batch.head);
}

static void on_audited(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		/* Nothing in it depends on one record: the batch is tried again as a whole. */
		log_failure(ps, "writing the audit rows", res);
		if (res)
			rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	commit(ps);
}

/* The batch's audit rows and chain head, in its transaction; then COMMIT. */
static void write_audit(struct policy_state *ps)
{
	if (ps->batch.purged == 0) {
		commit(ps);
		return;
	}
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PREPARED, audit_insert_sql, AUDIT_INSERT_N_PARAMS, NULL,
			  (const char *const *)ps->batch.audit, on_audited, ps))
		finish(ps, PURGE_FAILED);
}

/* Rolls back and quarantines KEYS (an array literal), each for WHY; then the next batch, which skips them. */
static void skip_records(struct policy_state *ps, const char *keys_literal, const char *why)
{
	rollback(ps);
	quarantine(ps, keys_literal, why);
}

static void on_rewritten(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_failure(ps, "reading the anonymized rows back", res);
		if (res)
			rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	if (!PQgetisnull(res, 0, 0)) {
		/* Their audit rows would claim what the table no longer shows. */
		skip_records(ps, PQgetvalue(res, 0, 0),
			     "anonymizing it was undone after the UPDATE: the row was written again (an AFTER or"
			     " deferred trigger?)");
		return;
	}
	write_audit(ps);
}

/* The AFTER and deferred triggers of the anonymising UPDATE have run: does every record still stand anonymized? */
static void on_constraints_immediate(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct batch *b = &ps->batch;
	const char *params[POLICY_N_BASE_PARAMS + 1];
	Oid types[POLICY_N_BASE_PARAMS + 1];
	const char *extra[1] = {b->anonymized_keys};
	int n;
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		/* A deferred check that fails: as at COMMIT, the transaction is over. */
		if (res)
			rollback(ps);
		batch_failed(ps, "deferred checks", res);
		return;
	}
	n = policy_params(&ps->sql, params, types, extra, 1, false);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PREPARED, ps->sql.rewritten, n, types, params, on_rewritten, ps))
		finish(ps, PURGE_FAILED);
}

/* A chain gap found by a batch, recorded before the batch runs again on top of the head found. */
struct chain_gap {
	struct policy_state *ps;
	struct audit_anchor lost;
	long long found_seq;
};

static void on_gap_recorded(PGresult *res, void *arg)
{
	struct chain_gap *g = arg;
	struct policy_state *ps = g->ps;
	char buf[512];
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		policy_problem(ps, "recording the audit chain's lost tail in retention.chain_gaps failed: %s",
			       pgconn_error_text(res, buf, sizeof(buf)));
		finish(ps, PURGE_FAILED);
	} else {
		log_err("policy %s: the audit chain's head in the database is at seq %lld, behind seq %lld that this"
			" daemon committed (chain head %lld:%s): the last batches were lost, as a failover to a standby"
			" that had not received them loses them; their records are back and are purged again;"
			" recorded as chain gap %s (retentionctl audit verify reports it)",
			ps->policy->name, g->found_seq, g->lost.seq, g->lost.seq, g->lost.hash, PQgetvalue(res, 0, 0));
		/* The chain goes on from the head found. */
		ps->committed.seq = 0;
		next_batch(ps);
	}
	free(g);
}

/*
 * Whether the chain's head the purge statement read (in RES) is behind the
 * head this process committed last: then what was committed after it is
 * gone. Rolls the batch back, records the gap, and starts the batch again.
 */
static bool chain_lost_tail(struct policy_state *ps, const PGresult *res)
{
	const struct audit_anchor *mine = &ps->committed;
	long long seq = PQgetisnull(res, 0, PURGE_HEAD_SEQ) ? 0 : atoll(PQgetvalue(res, 0, PURGE_HEAD_SEQ));
	const char *hash = PQgetisnull(res, 0, PURGE_HEAD_HASH) ? "" : PQgetvalue(res, 0, PURGE_HEAD_HASH);
	struct chain_gap *g;
	char lost_from[32], lost_to[32], found_seq[32];
	const char *params[7];
	/* A head committed to another database (a reload changed the conninfo) says nothing of this one's chain. */
	if (mine->seq == 0 || ps->committed_in == NULL || ps->d->database_identity == NULL ||
	    strcmp(ps->committed_in, ps->d->database_identity) != 0)
		return false;
	if (seq > mine->seq || (seq == mine->seq && strcmp(hash, mine->hash) == 0))
		return false;
	g = xcalloc(1, sizeof(*g));
	g->ps = ps;
	g->lost = *mine;
	g->found_seq = seq;
	/* At the same seq but another hash, the row there was written again: at least that one was lost. */
	snprintf(lost_from, sizeof(lost_from), "%lld", seq < mine->seq ? seq + 1 : seq);
	snprintf(lost_to, sizeof(lost_to), "%lld", mine->seq);
	snprintf(found_seq, sizeof(found_seq), "%lld", seq);
	params[0] = ps->policy->name;
	params[1] = lost_from;
	params[2] = lost_to;
	params[3] = mine->hash;
	params[4] = seq ? found_seq : NULL;
	params[5] = seq ? hash : NULL;
	params[6] = ps->d->cfg->instance;
	rollback(ps);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PLAIN,
			  "SELECT retention.record_chain_gap($1, $2::bigint, $3::bigint, $4, $5::bigint, $6, $7)", 7,
			  NULL, params, on_gap_recorded, g)) {
		free(g);
		finish(ps, PURGE_FAILED);
	}
	return true;
}

static void on_purge(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct batch *b = &ps->batch;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		rollback(ps);
		batch_failed(ps, "purge statement", res);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, PURGE_CATALOG_CHANGED), "t") == 0) {
		/* Its guards, holds or columns may be stale: nothing was purged; describe the table again. */
		rollback(ps);
		finish(ps, PURGE_STALE);
		return;
	}
	if (chain_lost_tail(ps, res))
		return;
	if (!PQgetisnull(res, 0, PURGE_NOT_TAKEN)) {
		/* Their audit rows would claim what the table does not show: none of the batch stays. */
		skip_records(ps, PQgetvalue(res, 0, PURGE_NOT_TAKEN),
			     "anonymizing it did not take: after the UPDATE an anonymized column"
			     " did not hold what it set (a trigger that puts values back?)");
		return;
	}
	b->purged = atoll(PQgetvalue(res, 0, PURGE_PURGED));
	if (b->purged > 0) {
		size_t n = 0;
		char **late = policy_text_array_parse_all(PQgetvalue(res, 0, PURGE_LATENESS), &n);
		b->max_late_seconds = atof(PQgetvalue(res, 0, PURGE_MAX_LATE));
		/* One per record: what the lateness histogram counts. */
		b->lateness = xcalloc((size_t)b->purged + 1, sizeof(double));
		for (size_t i = 0; i < n && i < (size_t)b->purged; i++)
			b->lateness[i] = late[i] ? atof(late[i]) : 0;
		policy_text_array_free(late);
		if (!hash_audit_rows(ps, res)) {
			policy_problem(ps, "the purge statement returned audit fields that do not add up; batch"
					   " rolled back");
			rollback(ps);
			finish(ps, PURGE_FAILED);
			return;
		}
	}
	if (!PQgetisnull(res, 0, PURGE_UNPURGED))
		b->unpurged = policy_text_array_parse(PQgetvalue(res, 0, PURGE_UNPURGED), &b->n_unpurged);
	if (!PQgetisnull(res, 0, PURGE_WERE_QUARANTINED))
		b->were_quarantined = xstrdup(PQgetvalue(res, 0, PURGE_WERE_QUARANTINED));
	if (ps->sql.rewritten && !PQgetisnull(res, 0, PURGE_ANONYMIZED_KEYS)) {
		/*
		 * AFTER triggers ran at the statement's end, after its RETURNING;
		 * deferred ones would run at COMMIT: run those now, then read the
		 * records back.
		 */
		b->anonymized_keys = xstrdup(PQgetvalue(res, 0, PURGE_ANONYMIZED_KEYS));
		if (!pgconn_query(ps->d->pg, ps, PGCONN_PREPARED, "SET CONSTRAINTS ALL IMMEDIATE", 0, NULL, NULL,
				  on_constraints_immediate, ps))
			finish(ps, PURGE_FAILED);
		return;
	}
	write_audit(ps);
}

static void on_locked(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct batch *b = &ps->batch;
	const char *params[POLICY_N_BASE_PARAMS + 2 + 64];
	Oid types[POLICY_N_BASE_PARAMS + 2 + 64];
	const char *extra[2];
	int n;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_failure(ps, "locking due records", res);
		if (res)
			rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	b->locked = atoll(PQgetvalue(res, 0, LOCK_COUNT));
	if (b->locked == 0 || ps->batch_kind == BATCH_PROBE) {
		/* Nothing to purge (or backlog left, held back until its turn): COMMIT releases the policy's lock. */
		commit(ps);
		return;
	}
	b->table_oids = xstrdup(PQgetvalue(res, 0, LOCK_TABLE_OIDS));
	b->tids = xstrdup(PQgetvalue(res, 0, LOCK_TIDS));
	b->keys = xstrdup(PQgetvalue(res, 0, LOCK_KEYS));
	extra[0] = b->table_oids;
	extra[1] = b->tids;
	if (ps->sql.n_set_values > 64) {
		policy_problem(ps, "more than 64 set values");
		rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	n = policy_params(&ps->sql, params, types, extra, 2, true);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PREPARED, ps->sql.purge, n, types, params, on_purge, ps)) {
		finish(ps, PURGE_FAILED);
	}
}

static void on_lock_policy(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	char limit[16];
	int n = POLICY_N_BASE_PARAMS;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2) {
		log_failure(ps, "taking the policy lock", res);
		if (res)
			rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	ps->batch.audit_writes_before = PQgetisnull(res, 0, 1) ? -1 : atoll(PQgetvalue(res, 0, 1));
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		log_debug("policy %s: lock held elsewhere (another instance, or a hold being placed, on it or on"
			  " another policy of its table)",
			  ps->policy->name);
		rollback(ps);
		finish(ps, PURGE_LOCKED);
		return;
	}
	purge_params(ps, params, types, limit);
	snprintf(limit, sizeof(limit), "%lld", ps->batch_limit);
	if (ps->erasing) {
		/* A data subject's erasure request: the subject's records, due or not. */
		params[POLICY_PARAM_EXTRA] = ps->erase_values;
		params[POLICY_PARAM_EXTRA + 1] = ps->erase_request;
		types[POLICY_PARAM_EXTRA] = types[POLICY_PARAM_EXTRA + 1] = 0;
		n += 2;
	}
	if (!pgconn_query(ps->d->pg, ps, PGCONN_PREPARED,
			  ps->erasing                     ? ps->sql.erase_lock
			  : ps->batch_kind == BATCH_FRESH ? ps->sql.lock_fresh
							  : ps->sql.lock,
			  n, types, params, on_locked, ps))
		finish(ps, PURGE_FAILED);
}

/*
 * What the next batch may lock. Unthrottled, or splitting a failed batch:
 * its limit. Throttled: what the throttle grants of backlog; else the records
 * that just fell due, which are never held back; then one record locked and
 * let go, to learn whether backlog is left to wait in line for.
 */
static void choose_batch(struct policy_state *ps)
{
	struct throttle *t = ps->d->throttle;
	long long granted;
	ps->batch_kind = BATCH_DUE;
	ps->batch_limit = ps->limit;
	ps->batch_granted = false;
	if (ps->erasing || ps->split_left > 0 || !throttle_active(t))
		return;
	if ((granted = throttle_take(t, ps, ps->limit)) > 0) {
		ps->batch_limit = granted;
		ps->batch_granted = true;
		ps->fresh_done = false;
	} else if (!ps->fresh_done) {
		ps->batch_kind = BATCH_FRESH;
	} else {
		ps->batch_kind = BATCH_PROBE;
		ps->batch_limit = 1;
	}
}

static void begin_batch(struct policy_state *ps)
{
	INVARIANT(ps->phase == POLICY_PURGING);
	purge_batch_clear(&ps->batch);
	choose_batch(ps);
	if (!pgconn_query(ps->d->pg, ps, PGCONN_TXN_BEGIN | PGCONN_SIMPLE, ps->sql.begin, 0, NULL, NULL, on_lock_policy,
			  ps))
		finish(ps, PURGE_FAILED);
}

void purge_params(const struct policy_state *ps, const char **params, Oid *types, char limit[16])
{
	policy_params(&ps->sql, params, types, NULL, 0, false);
	snprintf(limit, 16, "%d", ps->limit);
	params[POLICY_PARAM_LIMIT] = limit;
}

void purge_start(struct policy_state *ps)
{
	/* One batch in flight per policy: a second run would interleave with the first's transaction. */
	INVARIANT(ps->phase != POLICY_PURGING);
	policy_enter(ps, POLICY_PURGING);
	begin_batch(ps);
}
