/*
 * purge.h -- the batch state machine (see purge.c).
 */
#ifndef RETENTIOND_PURGE_H
#define RETENTIOND_PURGE_H

#include "scheduler.h"

/*
 * Purges PS's due records batch after batch, each batch one transaction:
 * BEGIN; the policy's lock; lock the due rows; purge them (delete or
 * anonymise, audit rows, chain head); COMMIT. Ends with
 * scheduler_purge_finished().
 */
void purge_start(struct policy_state *ps);
/* Frees what a batch holds and zeroes it. */
void purge_batch_clear(struct batch *b);

#endif
