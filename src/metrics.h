/*
 * metrics.h -- what the daemon counts and measures, and GET /metrics, served
 * in Prometheus' text format by libevent's evhttp on the daemon's own loop.
 *
 * The registry is fed by the rest of the daemon (the purge reports what it
 * purged, the scheduler what the database counted) and read only here: a
 * scrape renders it from memory, runs no statement and never waits.
 */
#ifndef RETENTIOND_METRICS_H
#define RETENTIOND_METRICS_H

#include <event2/event.h>
#include <stdbool.h>
#include <time.h>

struct metrics;

/* What the database counted for a policy, at a resync or after a purge run. */
struct metrics_policy_counts {
	long long overdue;        /* due and not purged, held and referenced ones not counted (quarantined ones are) */
	double oldest_overdue_at; /* when the oldest of them fell due (Unix seconds; -inf for a clock of -infinity) */
	long long held;           /* due, kept by a hold */
	long long quarantined;    /* due, skipped because their purge failed on their own */
	long long referenced;     /* due, kept while rows that must stay refer to them */
};

/* What `retentionctl status` calls a policy's state, and why it does not purge. */
enum metrics_policy_blocked {
	METRICS_NOT_BLOCKED,
	METRICS_BLOCKED_ERROR,   /* its last statement failed (the log and status say why) */
	METRICS_BLOCKED_STOPPED, /* stopped until a reload or restart */
	METRICS_BLOCKED_APPROVAL, /* its changed rule waits for approval: it purges only what the version in force does */
};

struct metrics *metrics_new(struct event_base *base);
void metrics_free(struct metrics *m);

/*
 * Listens on LISTEN ("host:port", "[v6]:port" or "unix:PATH"; "" closes
 * it). False with *WHY (static text or malloc'd in WHY_BUF) if it cannot:
 * the listener before stays.
 */
bool metrics_listen(struct metrics *m, const char *listen, char *why, size_t why_size);

/* The configured policies, in order, with their actions: series are kept for these (a reload calls it again). */
void metrics_set_policies(struct metrics *m, char *const *names, char *const *actions, size_t n);

void metrics_connection(struct metrics *m, bool connected, bool primary);
/* Records of POLICY purged by CAUSE ("schedule" or "request"); LATENESS (seconds after due), one per record, or NULL. */
void metrics_purged(struct metrics *m, const char *policy, const char *cause, long long n, const double *lateness,
		    time_t at);
void metrics_batch_failed(struct metrics *m, const char *policy);
void metrics_policy_counts(struct metrics *m, const char *policy, const struct metrics_policy_counts *c);
/* WAITING: with METRICS_BLOCKED_APPROVAL, the records the rule would newly purge once approved. */
void metrics_policy_blocked(struct metrics *m, const char *policy, enum metrics_policy_blocked why, long long waiting);
void metrics_requests(struct metrics *m, long long open, long long overdue);
/* Backlog waits for the rate (RATE) or for the standbys, which replay LAG seconds behind (LAGGING). */
void metrics_throttle(struct metrics *m, bool rate, bool lagging, double lag);

/* The text a scrape gets (malloc'd), at NOW: for the test of the format, and the handler. */
char *metrics_render(const struct metrics *m, time_t now);

#endif
