/*
 * scheduler.h -- when each policy looks up its table, asks when its next
 * record falls due, and purges. Above the purge (purge.h) and the data
 * subjects' requests (request.h): it starts them, and they report back
 * through the hooks it gives them, never by calling it.
 */
#ifndef RETENTIOND_SCHEDULER_H
#define RETENTIOND_SCHEDULER_H

#include <stdbool.h>
#include <time.h>

#include "daemon.h"
#include "policy_state.h"

/* Creates a state per policy of d->cfg (no database work yet). */
void scheduler_init(struct daemon *d);
void scheduler_free(struct daemon *d);
/* d->cfg is the reloaded configuration (the old one still alive): new states, what must outlive a reload carried. */
/* After a reload, the new policies' states: what outlives a policy's state is carried over by name. */
void scheduler_reload(struct daemon *d);
/* The session is (again) usable: look every policy up and ask when it is next due. */
void scheduler_wake_all(struct daemon *d);
/* The throttle's line: PS's turn to purge backlog has come. */
void scheduler_throttle_turn(struct policy_state *ps);
/* A notify_clock() payload: the quoted, qualified name of a table whose clocks changed. */
void scheduler_table_changed(struct daemon *d, const char *table);
/* A "policy:NAME" payload: something other than a clock changed for NAME (a hold was released). */
void scheduler_policy_changed(struct daemon *d, const char *policy);
/* Rows of TABLE were purged: policies whose records such rows kept ask again. */
void scheduler_rows_purged(struct daemon *d, const char *table);
/* The connection broke: every policy is idle again; the reconnect wakes them. */
void scheduler_connection_lost(struct daemon *d);
bool scheduler_all_idle(const struct daemon *d);

/* What keeps PS from purging, for `retentionctl status`; NULL if nothing does. */
const char *scheduler_problem_text(const struct policy_state *ps);
/* What `retentionctl status` says of PS: enforcing, failing (see the problem) or waiting. */
const char *scheduler_state_name(const struct policy_state *ps);


#endif
