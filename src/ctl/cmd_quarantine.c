/*
 * cmd_quarantine.c -- retentionctl quarantine list and retry: records whose
 * purge failed on their own, which the daemon skips until their retry.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] = "usage: retentionctl quarantine list [--policy P]\n"
			    "       retentionctl quarantine retry (--policy P | ID)\n\n"
			    "'quarantine list' shows the records whose purge failed on their own (a foreign key\n"
			    "that restricts, a trigger that raises): the error, how often it failed, and when the\n"
			    "daemon tries it again (daemon.quarantine_retry, doubled per failure; 'by hand' when\n"
			    "it is 0). They stay overdue, in pending and explain, until purged.\n"
			    "'quarantine retry' has the next batch try them again: every record of policy P, or\n"
			    "the one with id ID. A record that fails again is quarantined again.\n";

static const char list_sql[] = "SELECT id, policy, record_key, error, attempts, first_failed_at, last_failed_at,"
			       " retry_at, instance FROM retention.quarantine"
			       " WHERE ($1::text IS NULL OR policy = $1) ORDER BY id";

static int quarantine_list(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	const char *params[1] = {NULL};
	char *first, *retry, *table_sql;
	int opt, status;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			params[0] = optarg;
		else
			return ctl_usage_error(usage, "quarantine list: unknown option");
	}
	if (optind != argc)
		return ctl_usage_error(usage, "quarantine list takes no arguments");
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	first = ctl_human_time("first_failed_at", "ago");
	retry = ctl_human_time("retry_at", "ago");
	table_sql = xasprintf("SELECT id, policy, record_key AS key, attempts, %s AS first_failed,"
			      " coalesce(%s, 'by hand') AS retry, error FROM (%s) q",
			      first, retry, list_sql);
	status = ctl_print_query(ctl, list_sql, table_sql, 1, NULL, params);
	free(table_sql);
	free(first);
	free(retry);
	return status;
}

static int quarantine_retry(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	const char *params[2] = {NULL, NULL};
	char *end;
	PGresult *res;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			params[0] = optarg;
		else
			return ctl_usage_error(usage, "quarantine retry: unknown option");
	}
	if (optind < argc) {
		if (optind + 1 != argc || strtoll(argv[optind], &end, 10) <= 0 || *end)
			return ctl_usage_error(usage, "quarantine retry takes one quarantine id");
		params[1] = argv[optind];
	}
	if ((params[0] == NULL) == (params[1] == NULL))
		return ctl_usage_error(usage, "quarantine retry needs --policy P or an id, not both");
	if (params[0] && ctl_policy(ctl, params[0]) == NULL)
		return CTL_ERROR;
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	res = PQexecParams(ctl->conn, "SELECT retention.retry_quarantined($1, $2::bigint)", 2, NULL, params, NULL, NULL,
			   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_result_error(ctl, "quarantine retry", res);
		PQclear(res);
		return CTL_ERROR;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
		if (params[0])
			printf("policy %s has no quarantined records\n", params[0]);
		else
			ctl_error("no quarantined record has id %s", params[1]);
		PQclear(res);
		return params[0] ? CTL_OK : CTL_ERROR;
	}
	printf("%s quarantined record%s will be tried again by the next batch\n", PQgetvalue(res, 0, 0),
	       strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? "" : "s");
	PQclear(res);
	return CTL_OK;
}

int cmd_quarantine(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2)
		return ctl_usage_error(usage, "quarantine needs list or retry");
	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	if (strcmp(argv[1], "list") == 0)
		return quarantine_list(ctl, argc - 1, argv + 1);
	if (strcmp(argv[1], "retry") == 0)
		return quarantine_retry(ctl, argc - 1, argv + 1);
	return ctl_usage_error(usage, "quarantine: unknown subcommand \"%s\"", argv[1]);
}
