/*
 * policy_state.h -- what the daemon knows of each policy while it runs: its
 * phase, its batch in flight, what keeps it from purging. Below the
 * scheduler, the purge and the requests, which all read and change it.
 */
#ifndef RETENTIOND_POLICY_STATE_H
#define RETENTIOND_POLICY_STATE_H

#include <stdbool.h>

#include "audit.h"
#include "daemon.h"
#include "rule.h"

enum policy_phase {
	POLICY_IDLE,
	POLICY_RESOLVING,     /* looking its table up in the catalog */
	POLICY_DESCRIBING,    /* reading the table's columns, types, references and problems */
	POLICY_VALIDATING,    /* checking its exempt and `set` values against the column types */
	POLICY_CHECKING_RULE, /* recording its rule's version; counting what a changed rule newly makes due */
	POLICY_ASKING,        /* asking the server when its next record falls due */
	POLICY_PURGING,       /* a batch transaction is in flight */
};

const char *policy_phase_name(enum policy_phase phase);

/* The batch in flight: what its lock statement locked and what its purge did. */
struct batch {
	long long locked;
	char *table_oids; /* the locked rows' addresses, as the array literals the purge takes */
	char *tids;
	char *keys; /* their keys (an array literal), read only should the batch fail alone */
	long long purged;
	struct audit_anchor head;
	double max_late_seconds;
	char **unpurged; /* locked keys the DELETE or UPDATE did not touch */
	size_t n_unpurged;
	long long audit_writes_before; /* AUDIT_WRITES_SQL at the transaction's start, -1 if not counted */
	char *anonymized_keys;         /* PURGE_ANONYMIZED_KEYS, for the check after the AFTER and deferred triggers */
	char *were_quarantined;        /* PURGE_WERE_QUARANTINED: leave the quarantine once committed */
	double *lateness;              /* PURGE_LATENESS: seconds after due, per record purged */
	bool failure_counted;          /* its failure is in the metrics */
	char *audit[AUDIT_INSERT_N_PARAMS]; /* the audit rows, hashed, as audit_insert_sql's parameters */
};

struct policy_state {
	struct daemon *d;
	const struct policy *policy;
	struct policy_shape shape;
	struct policy_sql sql;
	bool resolved;
	bool warned; /* its table's warnings are logged: once per configuration, not at every reconnect */
	enum policy_phase phase;
	struct event *due_timer; /* the next due moment, a hold's end, or a retry */
	struct event *ask_timer; /* a wake-up, debounced to one ask per SCHEDULER_ASK_INTERVAL */
	double last_ask_at;      /* monotonic seconds */
	bool ask_wanted;         /* woken while busy: ask again when idle */
	bool check_catalog;      /* the next ask checks the table is as described (each resync) */
	bool count_after_ask;    /* a resync's ask: count its records for the metrics after the answer */
	bool purge_wanted;       /* the due timer fired while busy: purge when idle */
	int retry_ms;            /* backoff after an error, a busy lock or a purge that found nothing */
	bool last_purge_empty;
	double locked_elsewhere_since; /* when its lock or its due rows were first found taken, 0 if not */
	bool locked_elsewhere_warned;
	int limit; /* rows per batch now: policy->batch, smaller while a failing batch is split */
	/* What the throttle lets the batch in flight lock (throttle.h). */
	enum batch_kind {
		BATCH_DUE,   /* due records, `batch_limit` of them */
		BATCH_FRESH, /* throttled: only records that fell due within POLICY_FRESH_WINDOW */
		BATCH_PROBE, /* throttled, nothing fresh left: locks one due record, purging nothing, to learn if backlog is left */
	} batch_kind;
	long long batch_limit;
	bool batch_granted; /* its limit was taken from the throttle: what it did not lock goes back */
	bool fresh_done;    /* throttled, and the fresh records are purged: the next batch probes or waits */
	struct batch batch;
	long long split_left;          /* records of a failed batch not tried since (bisection), 0 if none */
	long long quarantined_in_row;  /* records first quarantined since the last batch that purged any */
	time_t run_exhausted_at;       /* when quarantined_in_row last ran out, 0 if it has not */
	struct audit_anchor committed; /* the chain head its last batch committed (this process); seq 0 if none */
	char *committed_in;            /* daemon.database_identity of that commit */
	long long purged;              /* records purged by this process */
	long long purged_before_run;   /* `purged` when the current purge run started */
	long long batches;
	struct rule rule;             /* its rule as recorded, once described */
	struct rule_state rule_state; /* what retention.rule_versions says of it */
	long long newly_due;          /* while its rule waits for approval: what it would newly purge, else -1 */
	long long blocked_logged;     /* the version whose wait was logged, 0 if none */
	bool off_until_reload; /* its statements changed the session, or its configuration cannot work: until a reload */
	char *problem;         /* what keeps it from purging, as logged; NULL once it purges or is asked again */
	bool failed;           /* --once: something was not purged, exit 1 */
	/* A data subject's erasure request (request.c): this policy's part of the one being carried out. */
	char *erase_values;        /* the subject values (a text[] literal) it purges, or NULL */
	bool erase_wanted;         /* its erasure run waits until the policy is idle */
	bool erasing;              /* the purge run in flight is that erasure run */
	const char *erase_request; /* while erasing: the request's id (the requests' own text) */
	long long erased;          /* records it purged */
	bool once_done;            /* --once: this policy's backlog is done */
	double once_locked_since;  /* --once: when its lock was first found held elsewhere */
};

/* Moves PS to PHASE: the one place a phase changes, traced at debug as "old -> new". */
void policy_enter(struct policy_state *ps, enum policy_phase phase);
/* Whether PS may start anything now: connected, the session checked, not stopping, no reload waiting. */
bool policy_may_start(const struct policy_state *ps);
/*
 * Logs, as an error of policy PS, what keeps it from purging, and keeps the
 * text for `retentionctl status` until a purge run or an ask succeeds.
 */
void policy_problem(struct policy_state *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
