/*
 * The batch state machine. A batch is reported purged only after its COMMIT
 * succeeded; everything before that can roll back (an error, a lost
 * connection, kill -9) and then neither the deletion nor its audit rows exist.
 */
#include "purge.h"

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "log.h"
#include "sdnotify.h"
#include "util.h"

/* What the batch in flight did, reported once it has committed. */
struct batch {
	long long purged;
	struct audit_anchor head;
	double max_late_seconds;
};

static struct batch current_batch;

static void begin_batch(struct policy_state *ps);

static void finish(struct policy_state *ps, enum purge_outcome outcome)
{
	scheduler_purge_finished(ps, outcome);
}

static void on_rollback(PGresult *res, void *arg)
{
	(void)res;
	(void)arg;
}

/* Ends the transaction after a failure; the connection may already be gone. */
static void rollback(struct policy_state *ps)
{
	pgconn_query(ps->d->pg, ps, PGCONN_TXN_END, "ROLLBACK", 0, NULL, NULL, on_rollback, ps);
}

static void log_failure(struct policy_state *ps, const char *step, PGresult *res)
{
	char buf[512];
	log_err("policy %s: %s failed, batch rolled back: %s", ps->policy->name, step,
		pgconn_error_text(res, buf, sizeof(buf)));
}

static void on_commit(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	struct daemon *d = ps->d;
	char anchor[256];

	if (res == NULL) {
		/* The server may have committed before the connection went: the audit log tells. */
		log_err("policy %s: connection lost during COMMIT: the batch may or may not have committed;"
			" its audit rows, if any, are the record", ps->policy->name);
		ps->failed = true;
		finish(ps, PURGE_FAILED);
		return;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_failure(ps, "COMMIT", res);
		ps->failed = true;
		finish(ps, PURGE_FAILED);
		return;
	}
	ps->batches++;
	if (current_batch.purged > 0) {
		ps->purged += current_batch.purged;
		d->purged_total += current_batch.purged;
		d->last_purge_at = time(NULL);
		log_info("policy %s: purged %lld record%s from %s (%s), at most %.3f s after due",
			 ps->policy->name, current_batch.purged, current_batch.purged == 1 ? "" : "s",
			 ps->sql.table, ps->policy->action == POLICY_ACTION_DELETE ? "deleted" : "anonymized",
			 current_batch.max_late_seconds);
		audit_anchor_format(ps->policy->name, &current_batch.head, anchor, sizeof(anchor));
		log_info("%s", anchor);
		sdnotify_status("purged %lld records in all; last: %s", d->purged_total, ps->policy->name);
	}
	ps->last_purge_empty = current_batch.purged == 0;
	if (current_batch.purged < ps->policy->batch) {
		finish(ps, PURGE_DONE);
	} else if (d->stopping) {
		finish(ps, PURGE_STOPPED);
	} else {
		begin_batch(ps);
	}
}

static void on_purge(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_failure(ps, "purge statement", res);
		ps->failed = true;
		rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	memset(&current_batch, 0, sizeof(current_batch));
	current_batch.purged = atoll(PQgetvalue(res, 0, 0));
	if (current_batch.purged > 0) {
		current_batch.head.seq = atoll(PQgetvalue(res, 0, 1));
		snprintf(current_batch.head.hash, sizeof(current_batch.head.hash), "%s", PQgetvalue(res, 0, 2));
		current_batch.max_late_seconds = atof(PQgetvalue(res, 0, 3));
	}
	pgconn_query(ps->d->pg, ps, PGCONN_TXN_END, "COMMIT", 0, NULL, NULL, on_commit, ps);
}

static void on_lock(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_failure(ps, "taking the policy lock", res);
		ps->failed = true;
		rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		log_debug("policy %s: lock held elsewhere (another instance, or a hold being placed)",
			  ps->policy->name);
		rollback(ps);
		finish(ps, PURGE_LOCKED);
		return;
	}
	pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, ps->sql.purge, ps->sql.n_params, ps->sql.types,
		     ps->sql.params, on_purge, ps);
}

static void on_begin(PGresult *res, void *arg)
{
	struct policy_state *ps = arg;
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_failure(ps, "BEGIN", res);
		ps->failed = true;
		if (res)
			rollback(ps);
		finish(ps, PURGE_FAILED);
		return;
	}
	pgconn_query(ps->d->pg, ps, PGCONN_PLAIN, "SELECT retention.try_lock_policy($1)", 1, NULL,
		     ps->sql.params, on_lock, ps);
}

static void begin_batch(struct policy_state *ps)
{
	/*
	 * READ COMMITTED whatever the database's default: the purge statement
	 * must take its snapshot after the lock, so it sees every hold committed
	 * before the lock was granted.
	 */
	if (!pgconn_query(ps->d->pg, ps, PGCONN_TXN_BEGIN, "BEGIN ISOLATION LEVEL READ COMMITTED", 0, NULL, NULL,
			  on_begin, ps))
		finish(ps, PURGE_FAILED);
}

void purge_start(struct policy_state *ps)
{
	ps->phase = POLICY_PURGING;
	begin_batch(ps);
}
