#ifndef RETENTIOND_PURGE_H
#define RETENTIOND_PURGE_H

#include "scheduler.h"

/*
 * Purges PS's due records batch after batch, each batch one transaction:
 * BEGIN; try the policy's lock; the purge statement (delete or anonymise,
 * audit rows, chain head); COMMIT. Ends with scheduler_purge_finished().
 */
void purge_start(struct policy_state *ps);

#endif
