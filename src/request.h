/*
 * request.h -- data subjects' erasure requests, carried out by the daemon
 * through the same batches as scheduled purges (request.c).
 */
#ifndef RETENTIOND_REQUEST_H
#define RETENTIOND_REQUEST_H

#include <stdbool.h>

#include "purge.h"

struct erasure_request;

/* The daemon's requests: what was read of the open ones, and the one being carried out. */
struct requests {
	struct erasure_request *queue; /* open erasure requests as last read, in id order */
	size_t n_queue, next;
	struct erasure_request *current; /* NULL when none is being carried out */
	bool reading;                    /* the open requests are being read */
	bool read_wanted;                /* read them again once the current pass ends */
	int in_flight;                   /* statements of this module queued or running */
	struct event *retry_timer;       /* a pass left one unfinished: read again then */
	int retry_ms;
	bool denied_warned; /* the daemon's role may not read them: said once per session */
};

void requests_init(struct daemon *d);
void requests_free(struct daemon *d);
/* Something may have changed (a NOTIFY, the session ready, a resync): read the open requests when free. */
void requests_wake(struct daemon *d);
/* The connection broke, or a reload replaces the policies: forget the pass; the next wake reads again. */
void requests_reset(struct daemon *d);
/* Whether nothing of this module is in flight (a reload or stop may proceed). */
bool requests_idle(const struct daemon *d);
/* PS's erasure run ended with OUTCOME (from scheduler_purge_finished): record what it did. */
void requests_policy_finished(struct policy_state *ps, enum purge_outcome outcome);
/* The id of the request being carried out (text), or NULL. */
const char *requests_current_id(const struct daemon *d);
/* Starts PS's erasure run if one waits for it and it may start; true if it did. */
bool requests_start_waiting(struct policy_state *ps);

#endif
