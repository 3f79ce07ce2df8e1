/*
 * cmd_approve.c -- retentionctl approve: an operator approves a policy's
 * changed rule that would newly purge more than guard_records records, and
 * the daemon purges them.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] = "usage: retentionctl approve --policy P --reason TEXT\n\n"
			    "Approves policy P's rule as the configuration file states it. A new policy, or a\n"
			    "changed one (table, key, clock, retain, exempt, action), that would newly make more\n"
			    "than guard_records records due waits for this: until then the daemon purges only what\n"
			    "the version in force also makes due (nothing, for a new policy). The approval records\n"
			    "who (the database role), when, how many records the rule newly makes due, and REASON.\n"
			    "'retentionctl pending' shows each policy's unapproved records; 'pending --rule FILE'\n"
			    "what another configuration would newly purge.\n";

int cmd_approve(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"reason", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *policy_name = NULL, *reason = NULL, *params[5];
	const struct policy *p;
	struct policy_sql sql;
	struct ctl_rule rule;
	char version[24], count[24];
	PGresult *res;
	int opt, status = CTL_OK;

	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			policy_name = optarg;
		else if (opt == 'r')
			reason = optarg;
		else
			return ctl_usage_error(usage, "approve: unknown option");
	}
	if (optind < argc)
		return ctl_usage_error(usage, "approve: unexpected argument \"%s\"", argv[optind]);
	if (policy_name == NULL)
		return ctl_usage_error(usage, "approve needs --policy P");
	if (reason == NULL || reason[0] == '\0')
		return ctl_usage_error(usage, "approve needs --reason TEXT (why the change is right: it is recorded)");
	if (ctl_config(ctl) == NULL || (p = ctl_policy(ctl, policy_name)) == NULL || ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	if (!ctl_policy_rule(ctl, ctl->cfg, p, true, &sql, &rule))
		return CTL_ERROR;
	policy_sql_free(&sql);
	if (rule.state.approved) {
		printf("policy %s: rule version %lld is approved already\n", p->name, rule.state.version);
		rule_free(&rule.rule);
		return CTL_OK;
	}
	snprintf(version, sizeof(version), "%lld", rule.state.version);
	snprintf(count, sizeof(count), "%lld", rule.newly_due);
	params[0] = version;
	params[1] = count;
	params[2] = reason;
	params[3] = "(retentionctl approve)";
	params[4] = "true";
	res = PQexecParams(ctl->conn, rule_approve_sql, 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		ctl_result_error(ctl, "approve", res);
		status = CTL_ERROR;
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		printf("policy %s: rule version %lld is approved already\n", p->name, rule.state.version);
	} else {
		printf("policy %s: rule version %lld approved; it newly makes %lld record%s due, for the daemon to"
		       " purge\n",
		       p->name, rule.state.version, rule.newly_due, rule.newly_due == 1 ? "" : "s");
	}
	PQclear(res);
	rule_free(&rule.rule);
	return status;
}
