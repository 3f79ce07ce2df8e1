/*
 * cmd_audit.c -- retentionctl audit: the trail, and audit verify.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "ctl.h"
#include "util.h"

static const char usage[] = "usage: retentionctl audit [--policy P [--key K]] [--since T] [--until T] [--limit N]\n"
			    "       retentionctl audit verify [--policy P] [--head SEQ:HASH]\n\n"
			    "The audit trail, newest first (in table format the newest 100 unless --limit is given).\n"
			    "--key K names a record of policy P as its key column reads it (\"042\" is record 42).\n"
			    "'audit verify' recomputes each policy's hash chain: exit 0 if intact, 3 naming the\n"
			    "first bad record if not. --head takes a chain head as retentiond logs it after each\n"
			    "batch (\"policy P: chain head SEQ:HASH\"); it also catches a chain rewritten wholesale.\n";

static const char audit_sql[] =
	"SELECT id, policy, seq, service, source, table_name, record_key, subject, clock_at, due_at,"
	" purged_at, extract(epoch FROM purged_at - due_at)::float8 AS late_seconds, action, instance,"
	" txid, encode(hash, 'hex') AS hash"
	" FROM retention.audit_log"
	" WHERE ($1::text IS NULL OR policy = $1) AND ($2::text IS NULL OR record_key = $2)"
	" AND ($3::timestamptz IS NULL OR purged_at >= $3) AND ($4::timestamptz IS NULL OR purged_at < $4)"
	" ORDER BY purged_at DESC, id DESC LIMIT $5::bigint";

static const char verify_report_sql[] =
	"SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::boolean[], $6::bigint[],"
	" $7::text[]) AS v(policy, records, head_seq, head_hash, intact, first_bad_seq, problem)";

/* An anchor from the daemon's log must still be in the chain, unchanged. */
static bool check_anchor(struct ctl *ctl, const char *policy, const struct audit_anchor *a, struct audit_verify *v)
{
	char seq[32];
	const char *params[2] = {policy, seq};
	struct audit_chain *c = audit_verify_chain(v, policy);
	PGresult *res;
	snprintf(seq, sizeof(seq), "%lld", a->seq);
	res = PQexecParams(ctl->conn,
			   "SELECT pg_catalog.encode(hash, 'hex') FROM retention.audit_log"
			   " WHERE policy OPERATOR(pg_catalog.=) $1 AND seq OPERATOR(pg_catalog.=) $2::pg_catalog.int8",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_result_error(ctl, NULL, res);
		PQclear(res);
		return false;
	}
	if (PQntuples(res) == 0)
		audit_chain_broken(c, a->seq, xasprintf("the anchor's record seq %lld is not in the log", a->seq));
	else if (strcmp(PQgetvalue(res, 0, 0), a->hash) != 0)
		audit_chain_broken(
			c, a->seq,
			xasprintf("record seq %lld does not match the anchor %lld:%s: the chain was rewritten", a->seq,
				  a->seq, a->hash));
	PQclear(res);
	return true;
}

static int report(struct ctl *ctl, struct audit_verify *v)
{
	char **cols[7];
	char *arrays[7];
	bool intact = true;
	int status;
	for (int c = 0; c < 7; c++)
		cols[c] = xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		struct audit_chain *c = &v->chains[i];
		cols[0][i] = c->policy;
		cols[1][i] = xasprintf("%lld", c->records);
		cols[2][i] = xasprintf("%lld", c->last_seq);
		cols[3][i] = xstrdup(c->last_hash);
		cols[4][i] = xstrdup(c->problem ? "false" : "true");
		cols[5][i] = c->problem ? xasprintf("%lld", c->bad_seq) : NULL;
		cols[6][i] = c->problem;
		if (c->problem) {
			intact = false;
			fprintf(stderr, "retentionctl: audit verify: policy %s: %s\n", c->policy, c->problem);
		}
	}
	for (int c = 0; c < 7; c++)
		arrays[c] = policy_text_array(cols[c], v->n);
	status = ctl_print_query(ctl, verify_report_sql, NULL, 7, NULL, (const char *const *)arrays);
	/* Columns 0 and 6 belong to the chain. */
	for (size_t i = 0; i < v->n; i++)
		for (int c = 1; c < 6; c++)
			free(cols[c][i]);
	for (int c = 0; c < 7; c++) {
		free(cols[c]);
		free(arrays[c]);
	}
	if (status != CTL_OK)
		return status;
	return intact ? CTL_OK : CTL_VERIFY_FAILED;
}

static int cmd_verify(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"head", required_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	const char *policy = NULL, *head = NULL;
	struct audit_anchor anchor;
	struct audit_verify v = {NULL, 0};
	PGresult *res;
	char *err = NULL;
	bool ok;
	int opt, status;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			policy = optarg;
		else if (opt == 'H')
			head = optarg;
		else
			return ctl_usage_error(usage, "audit verify: unknown option");
	}
	if (optind < argc)
		return ctl_usage_error(usage, "audit verify: unexpected argument \"%s\"", argv[optind]);
	if (head && !audit_anchor_parse(head, &anchor))
		return ctl_usage_error(usage, "--head takes SEQ:HASH (64 hex digits), not \"%s\"", head);
	if (head && policy == NULL)
		return ctl_usage_error(usage, "--head belongs to one policy's chain: give --policy too");
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	/* One snapshot for the log, the heads and the anchor: a purge committing meanwhile is not a truncation. */
	res = PQexec(ctl->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		ctl_result_error(ctl, NULL, res);
	PQclear(res);
	if (ok && !audit_verify_stream(ctl->conn, policy, &v, &err)) {
		ctl_error("%s", err);
		ok = false;
	}
	if (ok && policy && v.n == 0) {
		/* A typo, a policy that never purged, or a chain erased with its head: nothing here proves anything. */
		audit_chain_broken(audit_verify_chain(&v, policy), 0,
				   xasprintf("there are no audit records and no chain head for policy %s: nothing to"
					     " verify (it never purged, or its chain was erased)",
					     policy));
	}
	if (!ok || (head && !check_anchor(ctl, policy, &anchor, &v)))
		status = CTL_ERROR;
	else
		status = report(ctl, &v);
	PQclear(PQexec(ctl->conn, "COMMIT"));
	free(err);
	audit_verify_free(&v);
	return status;
}

int cmd_audit(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'}, {"key", required_argument, NULL, 'k'},
		{"since", required_argument, NULL, 's'},  {"until", required_argument, NULL, 'u'},
		{"limit", required_argument, NULL, 'l'},  {NULL, 0, NULL, 0},
	};
	const char *params[5] = {NULL, NULL, NULL, NULL, NULL};
	char *purged, *late, *table_sql, *canonical = NULL;
	int opt, status;

	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	if (argc > 1 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(ctl, argc - 1, argv + 1);
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'p':
			params[0] = optarg;
			break;
		case 'k':
			params[1] = optarg;
			break;
		case 's':
			params[2] = optarg;
			break;
		case 'u':
			params[3] = optarg;
			break;
		case 'l':
			if (strtoll(optarg, &end, 10) < 0 || *end)
				return ctl_usage_error(usage, "--limit takes a number of records, not \"%s\"", optarg);
			params[4] = optarg;
			break;
		default:
			return ctl_usage_error(usage, "audit: unknown option");
		}
	}
	if (optind < argc)
		return ctl_usage_error(usage, "audit: unexpected argument \"%s\"", argv[optind]);
	if (params[1] && params[0] == NULL)
		return ctl_usage_error(usage,
				       "audit --key needs --policy: a key means something only in its policy's table");
	if (params[4] == NULL && ctl->format == CTL_FORMAT_TABLE)
		params[4] = "100";
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	if (params[1] && ctl->cfg && config_find_policy(ctl->cfg, params[0])) {
		/* As the column reads it, as the purge wrote it. A retired policy's key is taken as typed. */
		struct policy_sql sql;
		bool invalid;
		if (!ctl_policy_sql(ctl, config_find_policy(ctl->cfg, params[0]), &sql))
			return CTL_ERROR;
		canonical = ctl_canonical(ctl, &sql, sql.canonical_key, params[1], &invalid);
		policy_sql_free(&sql);
		if (canonical == NULL && !invalid)
			return CTL_ERROR;
		if (canonical)
			params[1] = canonical;
	}
	purged = ctl_human_time("purged_at", "ago");
	late = ctl_human_interval("purged_at - due_at");
	table_sql = xasprintf("SELECT id, policy, seq, record_key, subject, %s AS purged, %s AS after_due, action,"
			      " instance FROM (%s) a",
			      purged, late, audit_sql);
	status = ctl_print_query(ctl, audit_sql, table_sql, 5, NULL, params);
	free(table_sql);
	free(purged);
	free(late);
	free(canonical);
	return status;
}
