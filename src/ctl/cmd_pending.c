/*
 * cmd_pending.c -- retentionctl pending: what falls due, per policy or per record.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] = "usage: retentionctl pending [--policy P] [--within DURATION] [--records] [--limit N]\n"
			    "       retentionctl pending --rule FILE [--policy P]\n\n"
			    "Per policy: overdue (due now or earlier), due_within (falling due within DURATION,\n"
			    "default 24 hours), next_due_at, held (due but held), quarantined (overdue, but\n"
			    "skipped because purging them failed on their own; see quarantine list), referenced\n"
			    "(due, kept while rows that must stay refer to them; not overdue) and blocked (due\n"
			    "under a changed rule that waits for approval, and not under the version in force: see\n"
			    "approve; not overdue). With --records, one row per record due within DURATION:\n"
			    "policy, key, clock_at, due_at, held (at most N; in table format 100 unless --limit is\n"
			    "given). Uses the daemon's own due predicate.\n"
			    "With --rule FILE, what the configuration FILE would newly purge, per policy, before it\n"
			    "is loaded: its rule's version (none if never seen), whether it is approved, the\n"
			    "records it makes due that the version in force does not, and whether loading it\n"
			    "waits for approval (more of them than its guard_records).\n";

static const char summary_sql[] =
	"SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::bigint[], $6::bigint[],"
	" $7::bigint[], $8::bigint[]) AS p(policy, overdue, due_within, next_due_at, held, quarantined, referenced,"
	" blocked)";

/* The policy's name, the pending statement's columns from overdue to referenced, and the blocked records. */
#define SUMMARY_COLUMNS (PENDING_REFERENCED + 3)

static int print_summary(struct ctl *ctl, const struct policy **policies, size_t n, const char *window)
{
	char **cols[SUMMARY_COLUMNS];
	char *arrays[SUMMARY_COLUMNS];
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	char *next = ctl_human_time("next_due_at", "overdue");
	char *table_sql =
		xasprintf("SELECT policy, overdue, due_within, %s AS next_due, held, quarantined, referenced, blocked"
			  " FROM (%s) p",
			  next, summary_sql);
	size_t rows = 0;
	int status = CTL_OK;

	for (int c = 0; c < SUMMARY_COLUMNS; c++)
		cols[c] = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		struct policy_sql sql;
		struct ctl_rule rule;
		PGresult *res;
		if (!ctl_policy_rule(ctl, ctl->cfg, policies[i], false, &sql, &rule)) {
			status = CTL_ERROR;
			continue;
		}
		ctl_policy_params(&sql, params, types, window, NULL);
		res = PQexecParams(ctl->conn, sql.pending, POLICY_N_BASE_PARAMS + 1, types, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			char *context = xasprintf("policy %s", policies[i]->name);
			ctl_result_error(ctl, context, res);
			free(context);
			status = CTL_ERROR;
		} else {
			cols[0][rows] = xstrdup(policies[i]->name);
			for (int c = 0; c < SUMMARY_COLUMNS - 2; c++)
				cols[c + 1][rows] = PQgetisnull(res, 0, c) ? NULL : xstrdup(PQgetvalue(res, 0, c));
			cols[SUMMARY_COLUMNS - 1][rows] = xasprintf("%lld", rule.waits ? rule.newly_due : 0);
			rows++;
		}
		PQclear(res);
		policy_sql_free(&sql);
		rule_free(&rule.rule);
	}
	for (int c = 0; c < SUMMARY_COLUMNS; c++)
		arrays[c] = policy_text_array(cols[c], rows);
	/* A table without the policies that failed would read as "nothing pending" for them: none at all. */
	if (status == CTL_OK &&
	    ctl_print_query(ctl, summary_sql, table_sql, SUMMARY_COLUMNS, NULL, (const char *const *)arrays) != CTL_OK)
		status = CTL_ERROR;
	for (int c = 0; c < SUMMARY_COLUMNS; c++) {
		for (size_t i = 0; i < rows; i++)
			free(cols[c][i]);
		free(cols[c]);
		free(arrays[c]);
	}
	free(next);
	free(table_sql);
	return status;
}

/* What each policy of the configuration RULE_FILE would newly purge, against the versions in force. */
static int print_rule_diff(struct ctl *ctl, const char *rule_file, const char *policy_name)
{
	static const struct ctl_field fields[] = {
		{"policy", false},   {"version", true},       {"approved", true},
		{"newly_due", true}, {"guard_records", true}, {"waits_for_approval", true},
	};
	enum {
		N_FIELDS = sizeof(fields) / sizeof(fields[0])
	};
	struct config_errors errs = {NULL, 0};
	struct config *cfg = config_load(rule_file, &errs);
	char **values;
	size_t rows = 0;
	int status = CTL_OK;
	if (cfg == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.lines[i]);
		config_errors_clear(&errs);
		return CTL_ERROR;
	}
	if (policy_name && config_find_policy(cfg, policy_name) == NULL) {
		ctl_error("%s has no policy %s", rule_file, policy_name);
		config_free(cfg);
		return CTL_ERROR;
	}
	values = xcalloc((cfg->n_policies + 1) * N_FIELDS, sizeof(char *));
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *p = &cfg->policies[i];
		struct policy_sql sql;
		struct ctl_rule rule;
		char **row = values + rows * N_FIELDS;
		bool waits;
		if (policy_name && strcmp(p->name, policy_name) != 0)
			continue;
		if (!ctl_policy_rule(ctl, cfg, p, false, &sql, &rule)) {
			status = CTL_ERROR;
			continue;
		}
		waits = rule.waits;
		row[0] = xstrdup(p->name);
		row[1] = rule.state.version ? xasprintf("%lld", rule.state.version) : NULL;
		row[2] = xstrdup(rule.state.approved ? "true" : "false");
		row[3] = xasprintf("%lld", rule.newly_due);
		row[4] = xasprintf("%lld", p->guard_records);
		row[5] = xstrdup(waits ? "true" : "false");
		rows++;
		policy_sql_free(&sql);
		rule_free(&rule.rule);
	}
	if (status == CTL_OK)
		status = ctl_print_rows(ctl, fields, N_FIELDS, values, rows);
	for (size_t i = 0; i < rows * N_FIELDS; i++)
		free(values[i]);
	free(values);
	config_free(cfg);
	return status;
}

static int print_records(struct ctl *ctl, const struct policy **policies, size_t n, const char *window, long long limit)
{
	struct ctl_stream st;
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	char *clock = ctl_human_time("clock_at", "ago");
	char *due = ctl_human_time("due_at", "overdue");
	int status = CTL_OK;

	struct policy_sql *sql = xcalloc(n + 1, sizeof(*sql));
	size_t built = 0;

	/* Every policy described before anything is printed: a failure then prints no partial list. */
	for (; built < n; built++)
		if (!ctl_policy_sql(ctl, policies[built], &sql[built])) {
			status = CTL_ERROR;
			break;
		}
	if (status == CTL_OK) {
		ctl_stream_begin(&st, ctl);
		for (size_t i = 0; i < n; i++) {
			char left[32], *table_sql;
			if (limit >= 0 && (long long)st.rows >= limit)
				break;
			snprintf(left, sizeof(left), "%lld", limit - (long long)st.rows);
			ctl_policy_params(&sql[i], params, types, window, limit >= 0 ? left : NULL);
			table_sql = xasprintf("SELECT policy, key, %s AS clock_at, %s AS due_at, held FROM (%s) r",
					      clock, due, sql[i].pending_records);
			ctl_stream_query(&st, sql[i].pending_records, table_sql, POLICY_N_BASE_PARAMS + 2, types,
					 params);
			free(table_sql);
		}
		status = ctl_stream_end(&st);
	}
	for (size_t i = 0; i < built; i++)
		policy_sql_free(&sql[i]);
	free(sql);
	free(clock);
	free(due);
	return status;
}

int cmd_pending(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'}, {"within", required_argument, NULL, 'w'},
		{"records", no_argument, NULL, 'r'},      {"limit", required_argument, NULL, 'l'},
		{"rule", required_argument, NULL, 'R'},   {NULL, 0, NULL, 0},
	};
	const char *policy_name = NULL, *within = "24 hours", *rule_file = NULL;
	bool records = false;
	long long limit = -1;
	struct duration window;
	char window_sql[96];
	const struct policy **policies;
	size_t n = 0;
	int opt, status;

	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'p':
			policy_name = optarg;
			break;
		case 'w':
			within = optarg;
			break;
		case 'r':
			records = true;
			break;
		case 'R':
			rule_file = optarg;
			break;
		case 'l':
			limit = strtoll(optarg, &end, 10);
			if (*end || limit < 0)
				return ctl_usage_error(usage, "--limit takes a number of records, not \"%s\"", optarg);
			break;
		default:
			return ctl_usage_error(usage, "pending: unknown option");
		}
	}
	if (optind < argc)
		return ctl_usage_error(usage, "pending: unexpected argument \"%s\"", argv[optind]);
	{
		const char *why;
		if (!duration_parse(within, &window, &why))
			return ctl_usage_error(usage, "--within \"%s\": %s", within, why);
	}
	duration_to_sql(&window, window_sql, sizeof(window_sql));
	if (ctl_config(ctl) == NULL || ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	if (rule_file) {
		if (records)
			return ctl_usage_error(usage, "pending --rule counts per policy: it takes no --records");
		return print_rule_diff(ctl, rule_file, policy_name);
	}
	policies = xcalloc(ctl->cfg->n_policies + 1, sizeof(*policies));
	if (policy_name) {
		if ((policies[0] = ctl_policy(ctl, policy_name)) == NULL) {
			free(policies);
			return CTL_ERROR;
		}
		n = 1;
	} else {
		for (size_t i = 0; i < ctl->cfg->n_policies; i++)
			policies[n++] = &ctl->cfg->policies[i];
	}
	if (records && limit < 0 && ctl->format == CTL_FORMAT_TABLE)
		limit = 100;
	status = records ? print_records(ctl, policies, n, window_sql, limit)
			 : print_summary(ctl, policies, n, window_sql);
	free(policies);
	return status;
}
