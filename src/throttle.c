/*
 * throttle.c -- the rate of backlog purging and the pause for replication
 * lag (see throttle.h). A token bucket holds at most a quarter second of
 * the rate: a policy's batch takes at most that many records, so a backlog
 * moves in batches the size the rate allows. Policies that found backlog
 * they may not purge yet wait in line, idle, and are served first come,
 * first served: one backlog cannot starve another policy's.
 */
#include "throttle.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "policy_state.h"
#include "util.h"

/* The bucket's size, in seconds of the rate. */
#define BUCKET_SECONDS 0.25
/* How often the standbys' lag is asked for, and the longest wait of a queued policy. */
#define LAG_INTERVAL_S 1.0
/* The shortest: a policy in line looks for records just fallen due no more often than this. */
#define LOOK_MIN_S 0.1
/*
 * How long the first in line has, once told its turn has come, to take it.
 * One that cannot start a batch (its table is gone, it is stopped until a
 * reload) loses its place: else it would hold back every policy's backlog.
 */
#define TURN_HOLD_S 1.0

struct throttle {
	struct daemon *d;
	void (*resume)(struct policy_state *ps);
	double rate; /* records per second, 0: no limit */
	double max_lag;
	double tokens;
	double refilled_at;
	struct policy_state **queue;
	size_t n_queue;
	double offered_at; /* when queue[0] was told its turn had come; 0: not yet */
	struct event *turn_timer;
	struct event *lag_timer;
	bool asking_lag;
	bool lagging;
	bool lag_unreadable_logged;
	double lag_seconds;
	bool primary_ready;
};

static double min_of(double a, double b) { return a < b ? a : b; }
static double max_of(double a, double b) { return a > b ? a : b; }
/* Whole records: tokens are never negative when this is asked. */
static long long whole(double tokens) { return tokens > 0 ? (long long)tokens : 0; }

static double monotonic_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double capacity(const struct throttle *t) { return max_of(1.0, t->rate * BUCKET_SECONDS); }

static void refill(struct throttle *t)
{
	double now = monotonic_now();
	if (t->rate > 0)
		t->tokens = min_of(capacity(t), t->tokens + (now - t->refilled_at) * t->rate);
	t->refilled_at = now;
}

static void arm(struct event *ev, double seconds)
{
	struct timeval tv;
	if (seconds < 0)
		seconds = 0;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(ev, &tv);
}

/* What the first policy in the queue waits for: a bucket's worth, or what the rate leaves (no rate: one). */
static double need(const struct throttle *t) { return t->rate > 0 ? capacity(t) : 1.0; }

static bool head_may_go(struct throttle *t)
{
	refill(t);
	return t->n_queue > 0 && !t->lagging && (t->rate <= 0 || t->tokens >= need(t));
}

static ssize_t place_in_line(const struct throttle *t, const struct policy_state *ps)
{
	for (size_t i = 0; i < t->n_queue; i++)
		if (t->queue[i] == ps)
			return (ssize_t)i;
	return -1;
}

static void leave_line(struct throttle *t, size_t i)
{
	if (i == 0)
		t->offered_at = 0;
	memmove(t->queue + i, t->queue + i + 1, (t->n_queue - i - 1) * sizeof(*t->queue));
	t->n_queue--;
}

/* Seconds until the first in line may go, at most LAG_INTERVAL_S. */
static double turn_wait(const struct throttle *t)
{
	if (t->lagging || t->rate <= 0)
		return LAG_INTERVAL_S;
	return max_of(0, min_of(LAG_INTERVAL_S, (need(t) - t->tokens) / t->rate));
}

double throttle_turn_in(const struct throttle *t) { return max_of(LOOK_MIN_S, turn_wait(t)); }

/*
 * Tells the first policy in line that its turn has come, and gives it
 * TURN_HOLD_S to take it (throttle_take) before the next in line is told;
 * else waits for the bucket, or the lag.
 */
static void serve(struct throttle *t)
{
	while (head_may_go(t)) {
		struct policy_state *head = t->queue[0];
		double now = monotonic_now();
		if (t->offered_at == 0) {
			t->offered_at = now;
			t->resume(head);
			/* Taken at once, the next in line has been served already. */
			if (t->n_queue > 0 && t->queue[0] == head && t->offered_at == now)
				arm(t->turn_timer, TURN_HOLD_S);
			return;
		}
		if (now - t->offered_at < TURN_HOLD_S) {
			if (!evtimer_pending(t->turn_timer, NULL))
				arm(t->turn_timer, TURN_HOLD_S - (now - t->offered_at));
			return;
		}
		log_debug("policy %s did not take its turn to purge backlog: the next in line goes",
			  head->policy->name);
		leave_line(t, 0);
		daemon_status_changed(t->d);
	}
	if (t->n_queue > 0 && !evtimer_pending(t->turn_timer, NULL))
		arm(t->turn_timer, turn_wait(t));
}

static void on_turn_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	serve(arg);
}

static void lag_changed(struct throttle *t, bool lagging)
{
	char max[32];
	if (lagging == t->lagging)
		return;
	t->lagging = lagging;
	duration_to_sql(&t->d->cfg->max_replication_lag, max, sizeof(max));
	if (lagging)
		log_warn("purging of backlog paused: a standby replays %.1f s behind, more than"
			 " database.max_replication_lag (%s); records that fall due are still purged",
			 t->lag_seconds, max);
	else
		log_info("purging of backlog resumed: the standbys replay %.1f s behind at most", t->lag_seconds);
	daemon_status_changed(t->d);
	serve(t);
}

static void on_lag(PGresult *res, void *arg)
{
	struct throttle *t = arg;
	char buf[512];
	t->asking_lag = false;
	if (res == NULL)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_warn("asking for the standbys' replication lag failed: %s",
			 pgconn_error_text(res, buf, sizeof(buf)));
		return;
	}
	if (atoi(PQgetvalue(res, 0, 1)) < atoi(PQgetvalue(res, 0, 0))) {
		if (!t->lag_unreadable_logged)
			log_warn("database.max_replication_lag: the retention schema's owner cannot read the standbys'"
				 " lag in pg_stat_replication (GRANT pg_read_all_stats TO the owner); those standbys do"
				 " not pause purging");
		t->lag_unreadable_logged = true;
	}
	t->lag_seconds = atof(PQgetvalue(res, 0, 2));
	lag_changed(t, t->max_lag > 0 && t->lag_seconds > t->max_lag);
}

static void ask_lag(struct throttle *t)
{
	if (t->asking_lag || !t->primary_ready || t->max_lag <= 0)
		return;
	t->asking_lag = pgconn_query(t->d->pg, t, PGCONN_PLAIN, "SELECT * FROM retention.replication_lag()", 0, NULL,
				     NULL, on_lag, t);
}

static void on_lag_timer(evutil_socket_t fd, short what, void *arg)
{
	struct throttle *t = arg;
	(void)fd;
	(void)what;
	ask_lag(t);
	if (t->max_lag > 0)
		arm(t->lag_timer, LAG_INTERVAL_S);
}

struct throttle *throttle_new(struct daemon *d, void (*resume)(struct policy_state *ps))
{
	struct throttle *t = xcalloc(1, sizeof(*t));
	t->d = d;
	t->resume = resume;
	t->turn_timer = evtimer_new(d->base, on_turn_timer, t);
	t->lag_timer = evtimer_new(d->base, on_lag_timer, t);
	t->refilled_at = monotonic_now();
	return t;
}

void throttle_free(struct throttle *t)
{
	if (t == NULL)
		return;
	event_free(t->turn_timer);
	event_free(t->lag_timer);
	free(t->queue);
	free(t);
}

void throttle_configure(struct throttle *t, const struct config *cfg)
{
	double lag = 0;
	refill(t);
	t->rate = (double)cfg->max_purge_rate;
	t->tokens = min_of(t->tokens, capacity(t));
	duration_to_seconds(&cfg->max_replication_lag, &lag);
	t->max_lag = lag;
	evtimer_del(t->lag_timer);
	if (t->max_lag > 0) {
		arm(t->lag_timer, 0);
	} else {
		t->lag_seconds = 0;
		lag_changed(t, false);
	}
	serve(t);
}

bool throttle_active(const struct throttle *t) { return t->rate > 0 || t->max_lag > 0; }

long long throttle_take(struct throttle *t, const struct policy_state *ps, long long want)
{
	ssize_t at = place_in_line(t, ps);
	long long n;
	/* Those in line first: another policy goes only when the line is empty, or it is first. */
	if (t->lagging || at > 0 || (at < 0 && t->n_queue > 0))
		return 0;
	refill(t);
	if (t->rate > 0 && t->tokens < min_of((double)want, need(t)))
		return 0;
	n = t->rate > 0 ? (long long)min_of((double)want, (double)whole(t->tokens)) : want;
	if (t->rate > 0)
		t->tokens -= (double)n;
	if (at == 0) {
		leave_line(t, 0);
		daemon_status_changed(t->d);
		serve(t);
	}
	return n;
}

void throttle_wait(struct throttle *t, struct policy_state *ps)
{
	if (place_in_line(t, ps) < 0) {
		t->queue = xrealloc(t->queue, (t->n_queue + 1) * sizeof(*t->queue));
		t->queue[t->n_queue++] = ps;
		daemon_status_changed(t->d);
	}
	serve(t);
}

void throttle_forget(struct throttle *t, const struct policy_state *ps)
{
	ssize_t at = place_in_line(t, ps);
	if (at >= 0)
		leave_line(t, (size_t)at);
}

void throttle_give_back(struct throttle *t, long long unused)
{
	if (t->rate > 0 && unused > 0)
		t->tokens = min_of(capacity(t), t->tokens + (double)unused);
}

void throttle_charge(struct throttle *t, long long n)
{
	if (t->rate > 0)
		t->tokens -= (double)n;
}

void throttle_connection(struct throttle *t, bool primary_ready)
{
	t->primary_ready = primary_ready;
	if (primary_ready)
		ask_lag(t);
}

bool throttle_in_line(const struct throttle *t, const struct policy_state *ps) { return place_in_line(t, ps) >= 0; }

bool throttle_rate_limited(const struct throttle *t) { return t->n_queue > 0 && !t->lagging; }

bool throttle_lagging(const struct throttle *t) { return t->lagging; }

double throttle_lag_seconds(const struct throttle *t) { return t->lag_seconds; }
