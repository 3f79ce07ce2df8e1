#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "ctl.h"
#include "util.h"

static const char usage[] =
	"usage: retentionctl audit [--policy P] [--key K] [--since T] [--until T] [--limit N]\n"
	"       retentionctl audit verify [--policy P] [--head SEQ:HASH]\n\n"
	"The audit trail, newest first (in table format the newest 100 unless --limit is given).\n"
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

/* What verifying one policy's chain found. */
struct chain {
	char *policy;
	long long records;
	long long last_seq;
	char last_hash[AUDIT_HASH_HEX_LEN + 1];
	bool has_head;
	long long bad_seq; /* 0: intact so far */
	char *problem;
};

struct verify {
	struct chain *chains;
	size_t n;
};

static struct chain *chain_for(struct verify *v, const char *policy)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->chains[i].policy, policy) == 0)
			return &v->chains[i];
	v->chains = xrealloc(v->chains, (v->n + 1) * sizeof(*v->chains));
	memset(&v->chains[v->n], 0, sizeof(*v->chains));
	v->chains[v->n].policy = xstrdup(policy);
	return &v->chains[v->n++];
}

static void chain_broken(struct chain *c, long long seq, char *problem)
{
	if (c->bad_seq == 0) {
		c->bad_seq = seq;
		c->problem = problem;
	} else {
		free(problem);
	}
}

/* Streams every row's checks (audit_verify_sql); false on a database error. */
static bool scan_chains(struct ctl *ctl, const char *policy, struct verify *v)
{
	const char *params[1] = {policy};
	PGresult *res;
	bool ok = true;
	if (!PQsendQueryParams(ctl->conn, audit_verify_sql, 1, NULL, params, NULL, NULL, 0)) {
		ctl_error("%s", PQerrorMessage(ctl->conn));
		return false;
	}
	PQsetSingleRowMode(ctl->conn);
	while ((res = PQgetResult(ctl->conn)) != NULL) {
		if (PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
			struct chain *c = chain_for(v, PQgetvalue(res, 0, 0));
			const char *id = PQgetvalue(res, 0, 1);
			long long seq = atoll(PQgetvalue(res, 0, 2));
			c->records++;
			if (PQgetvalue(res, 0, 4)[0] != 't')
				chain_broken(c, seq, xasprintf("record seq %lld (id %s) follows seq %lld: records before it are missing or out of order",
							      seq, id, c->last_seq));
			else if (PQgetvalue(res, 0, 5)[0] != 't')
				chain_broken(c, seq, xasprintf("record seq %lld (id %s): its prev_hash is not the hash of the record before it (a record was removed, replaced or reordered)",
							      seq, id));
			else if (PQgetvalue(res, 0, 6)[0] != 't')
				chain_broken(c, seq, xasprintf("record seq %lld (id %s): its content does not match its hash (edited)",
							      seq, id));
			c->last_seq = seq;
			snprintf(c->last_hash, sizeof(c->last_hash), "%s", PQgetvalue(res, 0, 3));
		} else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			ctl_error("%s", PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

/* The heads recorded in retention.chain_heads catch a tail cut off the log. */
static bool check_heads(struct ctl *ctl, const char *policy, struct verify *v)
{
	const char *params[1] = {policy};
	PGresult *res = PQexecParams(ctl->conn, audit_heads_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_error("%s", PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		struct chain *c = chain_for(v, PQgetvalue(res, r, 0));
		long long seq = atoll(PQgetvalue(res, r, 1));
		c->has_head = true;
		if (c->last_seq < seq)
			chain_broken(c, c->last_seq + 1,
				     xasprintf("the chain head is seq %lld but the log ends at seq %lld: records seq %lld to %lld were removed",
					       seq, c->last_seq, c->last_seq + 1, seq));
		else if (c->last_seq > seq || strcmp(c->last_hash, PQgetvalue(res, r, 2)) != 0)
			chain_broken(c, seq, xasprintf("the log's last record (seq %lld) is not the recorded chain head (seq %lld)",
						       c->last_seq, seq));
	}
	PQclear(res);
	for (size_t i = 0; i < v->n; i++)
		if (!v->chains[i].has_head && v->chains[i].records > 0)
			chain_broken(&v->chains[i], v->chains[i].last_seq,
				     xstrdup("no chain head is recorded for this policy (retention.chain_heads row removed)"));
	return true;
}

/* An anchor from the daemon's log must still be in the chain, unchanged. */
static bool check_anchor(struct ctl *ctl, const char *policy, const struct audit_anchor *a, struct verify *v)
{
	char seq[32];
	const char *params[2] = {policy, seq};
	struct chain *c = chain_for(v, policy);
	PGresult *res;
	snprintf(seq, sizeof(seq), "%lld", a->seq);
	res = PQexecParams(ctl->conn,
			   "SELECT encode(hash, 'hex') FROM retention.audit_log WHERE policy = $1 AND seq = $2::bigint",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_error("%s", PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	if (PQntuples(res) == 0)
		chain_broken(c, a->seq, xasprintf("the anchor's record seq %lld is not in the log", a->seq));
	else if (strcmp(PQgetvalue(res, 0, 0), a->hash) != 0)
		chain_broken(c, a->seq, xasprintf("record seq %lld does not match the anchor %lld:%s: the chain was rewritten",
						  a->seq, a->seq, a->hash));
	PQclear(res);
	return true;
}

static int report(struct ctl *ctl, struct verify *v)
{
	char **cols[7];
	char *arrays[7];
	bool intact = true;
	int status;
	for (int c = 0; c < 7; c++)
		cols[c] = xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		struct chain *c = &v->chains[i];
		cols[0][i] = c->policy;
		cols[1][i] = xasprintf("%lld", c->records);
		cols[2][i] = xasprintf("%lld", c->last_seq);
		cols[3][i] = xstrdup(c->last_hash);
		cols[4][i] = xstrdup(c->bad_seq ? "false" : "true");
		cols[5][i] = c->bad_seq ? xasprintf("%lld", c->bad_seq) : NULL;
		cols[6][i] = c->problem;
		if (c->bad_seq) {
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
	struct verify v = {NULL, 0};
	PGresult *res;
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
		ctl_error("%s", PQresultErrorMessage(res));
	PQclear(res);
	if (!ok || !scan_chains(ctl, policy, &v) || !check_heads(ctl, policy, &v) ||
	    (head && !check_anchor(ctl, policy, &anchor, &v))) {
		status = CTL_ERROR;
	} else {
		status = report(ctl, &v);
	}
	PQclear(PQexec(ctl->conn, "COMMIT"));
	for (size_t i = 0; i < v.n; i++) {
		free(v.chains[i].policy);
		free(v.chains[i].problem);
	}
	free(v.chains);
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
	char *purged, *late, *table_sql;
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
	if (params[4] == NULL && ctl->format == CTL_FORMAT_TABLE)
		params[4] = "100";
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	purged = ctl_human_time("purged_at", "ago");
	late = ctl_human_interval("purged_at - due_at");
	table_sql = xasprintf("SELECT id, policy, seq, record_key, subject, %s AS purged, %s AS after_due, action,"
			      " instance FROM (%s) a",
			      purged, late, audit_sql);
	status = ctl_print_query(ctl, audit_sql, table_sql, 5, NULL, params);
	free(table_sql);
	free(purged);
	free(late);
	return status;
}
