/*
 * cmd_status.c -- retentionctl status: every daemon instance seen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] = "usage: retentionctl status\n\n"
			    "Every daemon instance seen: instance, host, pid, started, last heartbeat, the\n"
			    "policies it enforces, last purge and records purged since it started; then each\n"
			    "policy's state as its last heartbeat said: enforcing, failing (with what keeps it\n"
			    "from purging), waiting (for its table to be described, or for its lock) or blocked\n"
			    "(its changed rule waits for retentionctl approve).\n"
			    "The heartbeat follows a purge or a change of state within a second.\n"
			    "Open data subjects' requests past their deadline are counted on stderr, and\n"
			    "so is a server in recovery (a standby), on which no daemon purges.\n";

static const char status_sql[] =
	"SELECT instance, host, pid, started_at AS started, heartbeat_at AS last_heartbeat, policies,"
	" last_purge_at AS last_purge, purged_total,"
	" (SELECT coalesce(json_agg(json_build_object('policy', u.policy, 'state', u.state, 'problem', u.problem)"
	" ORDER BY u.n), '[]') FROM unnest(policies, policy_states, policy_problems)"
	" WITH ORDINALITY AS u(policy, state, problem, n)) AS policy_states"
	" FROM retention.instances ORDER BY instance";

/* One row per policy of every instance, for people. */
static const char policy_states_sql[] =
	"SELECT i.instance, u.policy, coalesce(u.state, '?') AS state, coalesce(u.problem, '') AS problem"
	" FROM retention.instances i, unnest(i.policies, i.policy_states, i.policy_problems)"
	" WITH ORDINALITY AS u(policy, state, problem, n) ORDER BY i.instance, u.n";

/*
 * Open requests past their deadline, said on stderr whatever the format. A
 * role that may not read requests (the auditors') is told nothing.
 */
static void say_overdue_requests(struct ctl *ctl)
{
	PGresult *res = PQexec(ctl->conn, "SELECT count(*), min(r.deadline_at) FROM retention.requests r"
					  " WHERE " REQUEST_OVERDUE_SQL("r"));
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && atoll(PQgetvalue(res, 0, 0)) > 0)
		ctl_warn("%s data subjects' requests are past their deadline (the first since %s):"
			 " retentionctl request list --overdue",
			 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	PQclear(res);
}

/* On a standby the rows are the primary's, as replicated: a daemon connected here purges nothing. */
static void say_if_standby(struct ctl *ctl)
{
	PGresult *res = PQexec(ctl->conn, "SELECT pg_catalog.pg_is_in_recovery()");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		ctl_warn("the server is a standby (in recovery): a daemon connected to it purges nothing; the instances"
			 " below are as replicated from the primary");
	PQclear(res);
}

int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	char *started, *beat, *last, *table_sql;
	int status;
	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	if (argc > 1)
		return ctl_usage_error(usage, "status takes no arguments");
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	say_if_standby(ctl);
	started = ctl_human_time("started", "ago");
	beat = ctl_human_time("last_heartbeat", "ago");
	last = ctl_human_time("last_purge", "ago");
	table_sql = xasprintf("SELECT instance, host, pid, %s AS started, %s AS last_heartbeat,"
			      " array_length(policies, 1) AS policies, %s AS last_purge, purged_total FROM (%s) s",
			      started, beat, last, status_sql);
	status = ctl_print_query(ctl, status_sql, table_sql, 0, NULL, NULL);
	/* JSON and CSV carry the states in the instance's row; people get a table of them. */
	if (status == CTL_OK && ctl->format == CTL_FORMAT_TABLE) {
		printf("\n");
		status = ctl_print_query(ctl, policy_states_sql, NULL, 0, NULL, NULL);
	}
	if (status == CTL_OK)
		say_overdue_requests(ctl);
	free(table_sql);
	free(started);
	free(beat);
	free(last);
	return status;
}
