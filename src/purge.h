/*
 * purge.h -- the batch state machine (see purge.c). It reports what
 * happened through the hooks its caller set in struct daemon: it never
 * calls the scheduler.
 */
#ifndef RETENTIOND_PURGE_H
#define RETENTIOND_PURGE_H

#include "policy_state.h"

enum purge_outcome {
	PURGE_DONE,      /* the last batch was short: nothing more is due now */
	PURGE_LOCKED,    /* another instance or a hold placement holds the policy's lock */
	PURGE_FAILED,    /* rolled back; retried with backoff */
	PURGE_STOPPED,   /* stopping or reloading: the batch in flight ended, no new one started */
	PURGE_STALE,     /* the table changed since it was described: describe it again, then purge */
	PURGE_THROTTLED, /* backlog is left, which waits its turn (throttle.h); what just fell due is purged */
};

/* What a purge run reports, to whoever started it (the scheduler sets them: d->purge_hooks). */
struct purge_hooks {
	/* The run ended: PS is still in POLICY_PURGING, for the caller to move on. */
	void (*finished)(struct policy_state *ps, enum purge_outcome outcome);
	/* Rows of TABLE were purged: records of other policies that such rows kept may be due. */
	void (*rows_purged)(struct daemon *d, const char *table);
};

/*
 * The base parameters of PS's statements as the daemon sends them, with its
 * current batch limit. LIMIT is storage for the text
 * of the limit, kept alive as long as PARAMS is used.
 */
void purge_params(const struct policy_state *ps, const char **params, Oid *types, char limit[16]);

/*
 * Purges PS's due records batch after batch, each batch one transaction:
 * BEGIN; the policy's lock; lock the due rows; purge them (delete or
 * anonymise, audit rows, chain head); COMMIT. Ends with
 * d->purge_hooks->finished().
 */
void purge_start(struct policy_state *ps);
/* Frees what a batch holds and zeroes it. */
void purge_batch_clear(struct batch *b);

#endif
