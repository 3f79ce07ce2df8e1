/*
 * policy_state.c -- a policy's phase, whether it may start, and what keeps
 * it from purging: shared by the scheduler, the purge and the requests.
 */
#include "policy_state.h"

#include <stdarg.h>
#include <stdlib.h>

#include "invariant.h"
#include "log.h"
#include "util.h"

const char *policy_phase_name(enum policy_phase phase)
{
	switch (phase) {
	case POLICY_IDLE:
		return "idle";
	case POLICY_RESOLVING:
		return "resolving";
	case POLICY_DESCRIBING:
		return "describing";
	case POLICY_VALIDATING:
		return "validating";
	case POLICY_CHECKING_RULE:
		return "checking-rule";
	case POLICY_ASKING:
		return "asking";
	case POLICY_PURGING:
		return "purging";
	}
	return "?";
}

#ifdef RETENTIOND_CHECKING
static bool transition_allowed(enum policy_phase from, enum policy_phase to)
{
	switch (from) {
	case POLICY_IDLE:
		return to == POLICY_RESOLVING || to == POLICY_ASKING || to == POLICY_PURGING;
	case POLICY_RESOLVING:
		return to == POLICY_DESCRIBING || to == POLICY_IDLE;
	case POLICY_DESCRIBING:
		return to == POLICY_VALIDATING || to == POLICY_IDLE;
	case POLICY_VALIDATING:
		return to == POLICY_CHECKING_RULE || to == POLICY_IDLE;
	case POLICY_CHECKING_RULE:
		return to == POLICY_ASKING || to == POLICY_PURGING || to == POLICY_IDLE;
	case POLICY_ASKING:
		return to == POLICY_PURGING || to == POLICY_IDLE;
	case POLICY_PURGING:
		return to == POLICY_ASKING || to == POLICY_IDLE;
	}
	return false;
}
#endif

void policy_enter(struct policy_state *ps, enum policy_phase phase)
{
	INVARIANT(transition_allowed(ps->phase, phase));
	/* Work starts from idle only when nothing of this policy's is still queued: one chain in flight. */
	INVARIANT(ps->phase != POLICY_IDLE || pgconn_pending_for(ps->d->pg, ps) == 0);
	/* Statements run only on a session whose zone, timeouts, role and schema are checked. */
	INVARIANT(phase == POLICY_IDLE || ps->d->session_ready);
	log_debug("policy %s: %s -> %s", ps->policy->name, policy_phase_name(ps->phase), policy_phase_name(phase));
	ps->phase = phase;
}

bool policy_may_start(const struct policy_state *ps)
{
	const struct daemon *d = ps->d;
	return !d->stopping && !daemon_reload_waits(d) && d->session_ready && pgconn_is_ready(d->pg) &&
	       !(d->once && ps->once_done) && !ps->off_until_reload;
}

void policy_problem(struct policy_state *ps, const char *fmt, ...)
{
	va_list ap;
	char *text;
	va_start(ap, fmt);
	text = xvasprintf(fmt, ap);
	va_end(ap);
	log_err("policy %s: %s", ps->policy->name, text);
	free(ps->problem);
	ps->problem = text;
	daemon_status_changed(ps->d);
}
