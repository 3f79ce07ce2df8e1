/*
 * daemon.c -- what every layer of the daemon may ask of its shared state:
 * whether the session is still as the daemon set it up (code of a table's
 * owner runs with its role and could change it), dropping a session that
 * is not, and the hooks that carry results up to main.
 */
#include "daemon.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "session.h"

void daemon_policy_idle(struct daemon *d) { d->hooks->policy_idle(d); }

void daemon_status_changed(struct daemon *d) { d->hooks->status_changed(d); }

bool daemon_reload_waits(const struct daemon *d) { return d->pending_cfg != NULL || d->reload_checking; }

static void reset_session(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	(void)fd;
	(void)what;
	pgconn_reset(d->pg, "dropping the session, which code of a table's owner changed");
}

void daemon_prepared_statements_expected(struct daemon *d, char *buf, size_t size)
{
	snprintf(buf, size, "0 %zu", pgconn_prepared_count(d->pg));
}

bool daemon_session_as_set_up(struct daemon *d, const char *settings, const char *statements, const char *policy,
			      bool in_batch)
{
	const char *changed;
	char want[48], what[96];
	daemon_prepared_statements_expected(d, want, sizeof(want));
	if (d->session_settings == NULL || settings == NULL)
		changed = "a session setting";
	else
		changed = session_settings_changed(d->session_settings, settings);
	if (changed == NULL && statements && strcmp(statements, want) != 0) {
		snprintf(what, sizeof(what),
			 "prepared statements (made by PREPARE and by the daemon: %s, where the daemon"
			 " made %zu)",
			 statements, pgconn_prepared_count(d->pg));
		changed = what;
	}
	if (changed == NULL)
		return true;
	log_err("policy %s: code its statement ran with the daemon's role (a trigger, or a function of a table's"
		" owner) changed the session's %s; %s, a new session replaces this one, and the policy does not run"
		" again until the daemon is reloaded or restarted",
		policy, changed, in_batch ? "the batch is rolled back" : "nothing more runs on it");
	daemon_drop_session(d);
	return false;
}

static const char *value_at(const PGresult *res, int col)
{
	if (col < 0 || col >= PQnfields(res) || PQntuples(res) != 1 || PQgetisnull(res, 0, col))
		return NULL;
	return PQgetvalue(res, 0, col);
}

bool daemon_session_intact(struct daemon *d, const PGresult *res, int col, const char *policy, bool in_batch)
{
	return daemon_session_as_set_up(d, value_at(res, col), NULL, policy, in_batch);
}

bool daemon_session_checked(struct daemon *d, const PGresult *res, int col, const char *policy, bool in_batch)
{
	const char *statements = value_at(res, col + 1);
	return daemon_session_as_set_up(d, value_at(res, col), statements ? statements : "", policy, in_batch);
}

void daemon_drop_session(struct daemon *d)
{
	static const struct timeval now = {0, 0};
	/* Not one more statement on it, queued ones included: they could run what that code left in it. */
	pgconn_hold(d->pg);
	d->session_ready = false;
	event_base_once(d->base, -1, EV_TIMEOUT, reset_session, d, &now);
}
