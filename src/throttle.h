/*
 * throttle.h -- purging that never hurts the server: backlog is purged at
 * no more than daemon.max_purge_rate records a second across all policies,
 * each waiting policy served in turn, and not at all while a standby's
 * replay lags more than database.max_replication_lag. Records that fell due
 * within POLICY_FRESH_WINDOW are purged on time regardless (a throttled
 * policy purges those first, through policy_sql.lock_fresh), and count
 * against the rate.
 */
#ifndef RETENTIOND_THROTTLE_H
#define RETENTIOND_THROTTLE_H

#include <stdbool.h>

struct daemon;
struct policy_state;
struct config;

struct throttle;

/* RESUME is called for the policy first in line once its turn has come: it should start a batch. */
struct throttle *throttle_new(struct daemon *d, void (*resume)(struct policy_state *ps));
void throttle_free(struct throttle *t);
/* Takes the configuration's limits (at start and at each reload). */
void throttle_configure(struct throttle *t, const struct config *cfg);
/* Whether backlog is limited at all. */
bool throttle_active(const struct throttle *t);
/*
 * How many of WANT records of backlog PS may purge now (it leaves the line
 * if it was first in it), or 0: it must wait its turn, or the lag to end.
 * The first in line that does not take its turn within a second of being
 * told (RESUME) loses its place.
 */
long long throttle_take(struct throttle *t, const struct policy_state *ps, long long want);
/* PS (idle) waits in line for its turn, once however often it asks; RESUME says when. */
void throttle_wait(struct throttle *t, struct policy_state *ps);
/* Whether PS waits in line. */
bool throttle_in_line(const struct throttle *t, const struct policy_state *ps);
/* PS is going away (a reload): out of the line. */
void throttle_forget(struct throttle *t, const struct policy_state *ps);
/*
 * How long a policy in line waits to look again for records just fallen
 * due: until the first in line may go, between a tenth of a second and one.
 */
double throttle_turn_in(const struct throttle *t);
/* Of records taken, UNUSED were not purged; N fresh records were purged outside the limit. */
void throttle_give_back(struct throttle *t, long long unused);
void throttle_charge(struct throttle *t, long long n);
/* The connection is ready (or gone): the replication lag is asked for every second while it is. */
void throttle_connection(struct throttle *t, bool primary_ready);
/* Whether backlog is held back now, and why: for the metrics. */
bool throttle_rate_limited(const struct throttle *t);
bool throttle_lagging(const struct throttle *t);
double throttle_lag_seconds(const struct throttle *t);

#endif
