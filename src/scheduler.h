#ifndef RETENTIOND_SCHEDULER_H
#define RETENTIOND_SCHEDULER_H

#include <stdbool.h>
#include <time.h>

#include "daemon.h"

enum policy_phase {
	POLICY_IDLE,
	POLICY_RESOLVING, /* looking its table up in the catalog */
	POLICY_ASKING,	  /* asking the server when its next record falls due */
	POLICY_PURGING,	  /* a batch transaction is in flight */
};

struct policy_state {
	struct daemon *d;
	const struct policy *policy;
	struct policy_sql sql;
	bool resolved;
	enum policy_phase phase;
	bool wake_pending; /* woken while busy: ask again when idle */
	struct event *timer;
	int retry_ms;	   /* backoff after an error, a busy lock or a purge that found nothing */
	bool last_purge_empty;
	long long purged;  /* records purged by this process */
	long long batches;
	bool failed;	   /* a batch failed (for --once's exit status) */
	bool once_done;
	struct timespec locked_since; /* --once: when its lock was first found held elsewhere */
};

/* Creates a state per policy of d->cfg (no database work yet). */
void scheduler_init(struct daemon *d);
void scheduler_free(struct daemon *d);
/* The connection is (again) up: look every policy up and ask when it is next due. */
void scheduler_wake_all(struct daemon *d);
/* A notify_clock() payload: the quoted, qualified name of a table whose clocks changed. */
void scheduler_table_changed(struct daemon *d, const char *table);
/* A "policy:NAME" payload: something other than a clock changed for NAME (a hold was released). */
void scheduler_policy_changed(struct daemon *d, const char *policy);
/* The connection broke: every policy is idle again; the reconnect wakes them. */
void scheduler_connection_lost(struct daemon *d);
bool scheduler_all_idle(const struct daemon *d);

/* Called by purge.c when a purge run ends. */
enum purge_outcome {
	PURGE_DONE,	 /* the last batch was short: nothing more is due now */
	PURGE_LOCKED,	 /* another instance or a hold placement holds the policy's lock */
	PURGE_FAILED,	 /* rolled back; retried with backoff */
	PURGE_STOPPED,	 /* stopping: the batch in flight committed, no new one started */
};
void scheduler_purge_finished(struct policy_state *ps, enum purge_outcome outcome);

#endif
