/*
 * cmd_hold.c -- retentionctl hold add, list and release.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] =
	"usage: retentionctl hold add --policy P (--key K | --subject S) --reason TEXT [--until T] [--force]\n"
	"       retentionctl hold list [--policy P] [--all]\n"
	"       retentionctl hold release ID --reason TEXT\n\n"
	"'hold add' places a hold and prints its id. Once it has returned, the daemon does not\n"
	"purge the held record(s): hold placement and purges take the same per-policy lock.\n"
	"It refuses a key or subject with no record unless --force (a hold may precede data).\n"
	"'hold list' shows active holds (--all: released and expired ones too).\n"
	"'hold release' ends a hold; the release (who, when, why) is kept with it.\n";

static const char list_sql[] =
	"SELECT id, policy, record_key, subject, reason, placed_by, placed_at, until, released_at,"
	" released_by, release_reason,"
	" released_at IS NULL AND (until IS NULL OR until > statement_timestamp()) AS active"
	" FROM retention.holds"
	" WHERE ($1::text IS NULL OR policy = $1)"
	" AND ($2::boolean OR (released_at IS NULL AND (until IS NULL OR until > statement_timestamp())))"
	" ORDER BY id";

/* How many records policy P has with KEY (by_subject false) or of subject KEY; -1 after an error. */
static long long records_of(struct ctl *ctl, const struct policy_sql *sql, const char *value, bool by_subject)
{
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	PGresult *res;
	long long found = -1;
	ctl_policy_params(sql, params, types, value, NULL);
	res = PQexecParams(ctl->conn, by_subject ? sql->subject_records : sql->key_records, POLICY_N_BASE_PARAMS + 1,
			   types, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		found = atoll(PQgetvalue(res, 0, 0));
	else
		ctl_result_error(ctl, NULL, res);
	PQclear(res);
	return found;
}

static int hold_add(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"key", required_argument, NULL, 'k'},
		{"subject", required_argument, NULL, 's'},
		{"reason", required_argument, NULL, 'r'},
		{"until", required_argument, NULL, 'u'},
		{"force", no_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	const char *policy_name = NULL, *key = NULL, *subject = NULL, *reason = NULL, *until = NULL;
	const struct policy *p;
	struct policy_sql sql;
	bool force = false, invalid;
	const char *params[6];
	char *canonical;
	PGresult *res;
	long long before = -1, after;
	int opt, status = CTL_OK;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'p':
			policy_name = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 's':
			subject = optarg;
			break;
		case 'r':
			reason = optarg;
			break;
		case 'u':
			until = optarg;
			break;
		case 'f':
			force = true;
			break;
		default:
			return ctl_usage_error(usage, "hold add: unknown option");
		}
	}
	if (optind < argc)
		return ctl_usage_error(usage, "hold add: unexpected argument \"%s\"", argv[optind]);
	if (policy_name == NULL || (key == NULL) == (subject == NULL))
		return ctl_usage_error(usage, "hold add needs --policy and one of --key or --subject");
	if (reason == NULL || reason[0] == '\0')
		return ctl_usage_error(usage, "hold add needs --reason");
	if ((p = ctl_policy(ctl, policy_name)) == NULL)
		return CTL_ERROR;
	if (subject && p->subject == NULL) {
		ctl_error("policy %s names no subject column: hold by --key instead", p->name);
		return CTL_ERROR;
	}
	if (ctl_connect(ctl) == NULL || !ctl_policy_sql(ctl, p, &sql))
		return CTL_ERROR;
	/* Stored as the column spells it ("042" is 42); the purge compares holds in the column's type anyway. */
	canonical = ctl_canonical(ctl, &sql, key ? sql.canonical_key : sql.canonical_subject, key ? key : subject,
				  &invalid, NULL);
	if (canonical == NULL) {
		if (invalid && key && p->n_keys > 1)
			ctl_error(
				"key %s is not a key of policy %s: one value for each of its key columns %s, written as"
				" ROW(%s)::text writes them, e.g. (1,\"a b\")",
				key, p->name, p->key, p->key);
		else if (invalid)
			ctl_error("%s %s is not a value of policy %s's %s column %s", key ? "key" : "subject",
				  key ? key : subject, p->name, key ? "key" : "subject", key ? p->key : p->subject);
		policy_sql_free(&sql);
		return CTL_ERROR;
	}
	/* Counted with --force too: a batch in flight may take what exists, and the warning below needs the count. */
	before = records_of(ctl, &sql, canonical, subject != NULL);
	if (before < 0 || (before == 0 && !force)) {
		if (before == 0)
			ctl_error("policy %s has no record with %s %s%s (use --force to hold it before it exists)",
				  p->name, key ? "key" : "subject", canonical,
				  p->action == POLICY_ACTION_ANONYMIZE ? " that is not anonymized yet" : "");
		free(canonical);
		policy_sql_free(&sql);
		return CTL_ERROR;
	}
	params[0] = p->name;
	params[1] = key ? canonical : NULL;
	params[2] = subject ? canonical : NULL;
	params[3] = reason;
	params[4] = until;
	/* The key the hold is read under: one placed under another keeps every record of the table. */
	params[5] = key ? sql.key_of : NULL;
	res = PQexecParams(ctl->conn, "SELECT retention.place_hold($1, $2, $3, $4, $5::timestamptz, $6)", 6, NULL,
			   params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_result_error(ctl, "hold add", res);
		PQclear(res);
		free(canonical);
		policy_sql_free(&sql);
		return CTL_ERROR;
	}
	printf("%s\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	/*
	 * place_hold waited for any batch in flight; that batch may have taken
	 * what was about to be held. The hold stands, but say what it missed.
	 */
	if (before > 0 && (after = records_of(ctl, &sql, canonical, subject != NULL)) >= 0 && after < before) {
		if (key)
			ctl_error("record %s was purged by the batch in flight before the hold took effect"
				  " (retentionctl audit --policy %s --key %s shows it)",
				  canonical, p->name, canonical);
		else
			ctl_error("%lld of the %lld records of subject %s were purged by the batch in flight before the"
				  " hold took effect",
				  before - after, before, canonical);
		status = CTL_ERROR;
	}
	free(canonical);
	policy_sql_free(&sql);
	return status;
}

static int hold_list(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"all", no_argument, NULL, 'a'},
		{NULL, 0, NULL, 0},
	};
	const char *params[2] = {NULL, "false"};
	char *placed = ctl_human_time("placed_at", "ago"), *until = ctl_human_time("until", "ago");
	char *table_sql;
	int opt, status;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p') {
			params[0] = optarg;
		} else if (opt == 'a') {
			params[1] = "true";
		} else {
			free(placed);
			free(until);
			return ctl_usage_error(usage, "hold list: unknown option");
		}
	}
	if (ctl_connect(ctl) == NULL) {
		free(placed);
		free(until);
		return CTL_ERROR;
	}
	table_sql = xasprintf("SELECT id, policy, record_key AS key, subject, reason, placed_by, %s AS placed,"
			      " %s AS until, CASE WHEN active THEN 'active' WHEN released_at IS NOT NULL"
			      " THEN 'released by ' || released_by ELSE 'expired' END AS state FROM (%s) h",
			      placed, until, list_sql);
	status = ctl_print_query(ctl, list_sql, table_sql, 2, NULL, params);
	free(table_sql);
	free(placed);
	free(until);
	return status;
}

/*
 * After a release: a record the hold kept that is due now, and kept by
 * nothing else, goes within moments; the person releasing must hear it
 * (first deployment, F10). Said only when the configuration is at hand.
 */
static void say_what_falls_due(struct ctl *ctl, const char *hold_id)
{
	const char *hp[1] = {hold_id};
	PGresult *hold =
		PQexecParams(ctl->conn, "SELECT policy, record_key, subject FROM retention.holds WHERE id = $1::bigint",
			     1, NULL, hp, NULL, NULL, 0);
	const struct policy *p;
	if (PQresultStatus(hold) != PGRES_TUPLES_OK || PQntuples(hold) != 1) {
		PQclear(hold);
		return;
	}
	p = ctl->cfg ? config_find_policy(ctl->cfg, PQgetvalue(hold, 0, 0)) : NULL;
	if (!PQgetisnull(hold, 0, 2)) {
		printf("records of subject %s that are due and not held otherwise are purged now\n",
		       PQgetvalue(hold, 0, 2));
	} else if (p == NULL) {
		printf("record %s of policy %s is purged now if it is due and not held otherwise\n",
		       PQgetvalue(hold, 0, 1), PQgetvalue(hold, 0, 0));
	} else {
		struct policy_sql sql;
		if (ctl_policy_sql(ctl, p, &sql)) {
			const char *params[POLICY_N_BASE_PARAMS + 2];
			Oid types[POLICY_N_BASE_PARAMS + 2];
			PGresult *record;
			ctl_policy_params(&sql, params, types, PQgetvalue(hold, 0, 1), NULL);
			record = PQexecParams(ctl->conn, sql.explain, POLICY_N_BASE_PARAMS + 1, types, params, NULL,
					      NULL, 0);
			if (PQresultStatus(record) == PGRES_TUPLES_OK && PQntuples(record) == 1 &&
			    ctl_explained_record_goes(record))
				printf("record %s of policy %s has been due since %s and nothing else holds it:"
				       " a running daemon purges it now\n",
				       PQgetvalue(hold, 0, 1), p->name, PQgetvalue(record, 0, EXPLAIN_DUE_AT));
			PQclear(record);
			policy_sql_free(&sql);
		}
	}
	PQclear(hold);
}

static int hold_release(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"reason", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *params[2] = {NULL, NULL};
	char *end;
	PGresult *res;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'r')
			params[1] = optarg;
		else
			return ctl_usage_error(usage, "hold release: unknown option");
	}
	if (optind + 1 != argc || strtoll(argv[optind], &end, 10) <= 0 || *end)
		return ctl_usage_error(usage, "hold release takes one hold id");
	if (params[1] == NULL || params[1][0] == '\0')
		return ctl_usage_error(usage, "hold release needs --reason");
	params[0] = argv[optind];
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	res = PQexecParams(ctl->conn, "SELECT retention.release_hold($1::bigint, $2)", 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_result_error(ctl, "hold release", res);
		PQclear(res);
		return CTL_ERROR;
	}
	if (PQgetisnull(res, 0, 0)) {
		ctl_error("hold %s does not exist or was already released", params[0]);
		PQclear(res);
		return CTL_ERROR;
	}
	PQclear(res);
	printf("released hold %s\n", params[0]);
	say_what_falls_due(ctl, params[0]);
	return CTL_OK;
}

int cmd_hold(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		if (argc < 2)
			return ctl_usage_error(usage, "hold needs add, list or release");
		fputs(usage, stdout);
		return CTL_OK;
	}
	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	if (strcmp(argv[1], "add") == 0)
		return hold_add(ctl, argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return hold_list(ctl, argc - 1, argv + 1);
	if (strcmp(argv[1], "release") == 0)
		return hold_release(ctl, argc - 1, argv + 1);
	return ctl_usage_error(usage, "hold: unknown subcommand \"%s\"", argv[1]);
}
