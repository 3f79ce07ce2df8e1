/*
 * cmd_explain.c -- retentionctl explain: when a record falls due and why it is (not) purged.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] = "usage: retentionctl explain --policy P --key K\n\n"
			    "When record K falls or fell due under policy P, and why it is or is not purged.\n"
			    "status is one of: purged, anonymized, not_found, clock_not_started, exempt, held\n"
			    "(by a hold of any policy on the table), referenced (rows that must stay refer to\n"
			    "it), quarantined (due, but its purge failed on its own: skipped until its retry),\n"
			    "blocked (due under a changed rule that waits for approval, not under the version\n"
			    "in force), overdue (due, the daemon has not purged it yet), pending (falls due later).\n";

static const char last_audit_sql[] = "SELECT id, purged_at, instance, action FROM retention.audit_log"
				     " WHERE policy = $1 AND record_key = ANY ($2::text[]) ORDER BY seq DESC LIMIT 1";

static const char answer_sql[] = "SELECT $1::text AS policy, $2::text AS key, $3::text AS status, $4::text AS reason,"
				 " $5::timestamptz AS clock_at, $6::timestamptz AS due_at, $7::text AS exempt_column,"
				 " $8::text AS exempt_value, $9::json AS holds, $10::bigint AS audit_id,"
				 " $11::timestamptz AS purged_at, $12::text AS purged_by";

enum {
	A_POLICY,
	A_KEY,
	A_STATUS,
	A_REASON,
	A_CLOCK,
	A_DUE,
	A_EXEMPT_COL,
	A_EXEMPT_VAL,
	A_HOLDS,
	A_AUDIT_ID,
	A_PURGED_AT,
	A_PURGED_BY,
	A_N
};

static char *value_or_null(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : xstrdup(PQgetvalue(res, row, col));
}

bool ctl_explained_record_goes(const PGresult *record)
{
	return !PQgetisnull(record, 0, EXPLAIN_CLOCK_AT) && strcmp(PQgetvalue(record, 0, EXPLAIN_EXEMPT), "t") != 0 &&
	       strcmp(PQgetvalue(record, 0, EXPLAIN_HELD), "t") != 0 &&
	       strcmp(PQgetvalue(record, 0, EXPLAIN_ANONYMIZED), "t") != 0 &&
	       (PQgetisnull(record, 0, EXPLAIN_KEPT_BY) || !*PQgetvalue(record, 0, EXPLAIN_KEPT_BY)) &&
	       PQgetisnull(record, 0, EXPLAIN_QUARANTINE_ERROR) &&
	       strcmp(PQgetvalue(record, 0, EXPLAIN_IS_DUE), "t") == 0;
}

/* Whether record KEY is due as the daemon's statements see it while its rule waits (GUARDED). */
static bool due_in_force(struct ctl *ctl, const struct policy_sql *guarded, const char *key)
{
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	PGresult *res;
	bool due;
	ctl_policy_params(guarded, params, types, key, NULL);
	res = PQexecParams(ctl->conn, guarded->explain, POLICY_N_BASE_PARAMS + 1, types, params, NULL, NULL, 0);
	due = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && ctl_explained_record_goes(res);
	PQclear(res);
	return due;
}

int cmd_explain(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"key", required_argument, NULL, 'k'},
		{NULL, 0, NULL, 0},
	};
	const char *policy_name = NULL, *key = NULL;
	const struct policy *p;
	struct policy_sql sql, guarded = {0};
	struct ctl_rule rule = {0};
	char *a[A_N] = {NULL};
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	PGresult *audit = NULL, *record = NULL, *holds = NULL;
	bool record_found = false, clock_null = false, stands_anonymized = false, invalid, one_form = true;
	char *canonical = NULL;
	int opt, status = CTL_ERROR;

	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			policy_name = optarg;
		else if (opt == 'k')
			key = optarg;
		else
			return ctl_usage_error(usage, "explain: unknown option");
	}
	if (policy_name == NULL || key == NULL || optind < argc)
		return ctl_usage_error(usage, "explain needs --policy and --key");
	if ((p = ctl_policy(ctl, policy_name)) == NULL || ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	/* The rule's own due test says when it falls due; while it waits for approval, the daemon's says whether it goes. */
	if (!ctl_policy_rule(ctl, ctl->cfg, p, false, &guarded, &rule))
		return CTL_ERROR;
	if (!rule.waits) {
		sql = guarded;
		memset(&guarded, 0, sizeof(guarded));
	} else if (!ctl_policy_sql(ctl, p, &sql)) {
		goto out;
	}
	/* "042" names record 42, whose audit rows and holds say "42". An invalid key names no record. */
	canonical = ctl_canonical(ctl, &sql, sql.canonical_key, key, &invalid, &one_form);
	if (canonical == NULL && !invalid)
		goto out;
	if (canonical)
		key = canonical;

	{
		char *forms = ctl_audit_forms(ctl, config_pseudonymizes_key(ctl->cfg), key);
		const char *ap[2] = {p->name, forms};
		if (forms == NULL)
			goto out;
		audit = PQexecParams(ctl->conn, last_audit_sql, 2, NULL, ap, NULL, NULL, 0);
		free(forms);
		if (PQresultStatus(audit) != PGRES_TUPLES_OK) {
			ctl_result_error(ctl, NULL, audit);
			goto out;
		}
	}
	ctl_policy_params(&sql, params, types, key, NULL);
	record = PQexecParams(ctl->conn, sql.explain, POLICY_N_BASE_PARAMS + 1, types, params, NULL, NULL, 0);
	if (PQresultStatus(record) == PGRES_TUPLES_OK) {
		record_found = PQntuples(record) == 1;
	} else {
		const char *state = PQresultErrorField(record, PG_DIAG_SQLSTATE);
		/* A key that is not even of the key column's type names no record. */
		if (state == NULL || strncmp(state, "22", 2) != 0) {
			ctl_result_error(ctl, NULL, record);
			goto out;
		}
	}
	if (record_found) {
		/* The holds that protect it, of this policy or another on the table, by key or subject. */
		holds = PQexecParams(ctl->conn, sql.explain_holds, POLICY_N_BASE_PARAMS + 1, types, params, NULL, NULL,
				     0);
		if (PQresultStatus(holds) != PGRES_TUPLES_OK) {
			ctl_result_error(ctl, NULL, holds);
			goto out;
		}
	}

	a[A_POLICY] = xstrdup(p->name);
	a[A_KEY] = xstrdup(key);
	a[A_HOLDS] = xstrdup(holds ? PQgetvalue(holds, 0, 0) : "[]");
	if (record_found) {
		a[A_CLOCK] = value_or_null(record, 0, EXPLAIN_CLOCK_AT);
		a[A_DUE] = value_or_null(record, 0, EXPLAIN_DUE_AT);
		clock_null = a[A_CLOCK] == NULL;
		stands_anonymized = strcmp(PQgetvalue(record, 0, EXPLAIN_ANONYMIZED), "t") == 0;
	}
	if (PQntuples(audit) == 1) {
		a[A_AUDIT_ID] = xstrdup(PQgetvalue(audit, 0, 0));
		a[A_PURGED_AT] = xstrdup(PQgetvalue(audit, 0, 1));
		a[A_PURGED_BY] = xstrdup(PQgetvalue(audit, 0, 2));
	}

	/* A row that an earlier version anonymized has its clock cleared. */
	if (a[A_AUDIT_ID] && (!record_found || clock_null || stands_anonymized)) {
		bool anonymized = strcmp(PQgetvalue(audit, 0, 3), "anonymize") == 0;
		a[A_STATUS] = xstrdup(anonymized ? "anonymized" : "purged");
		a[A_REASON] =
			xasprintf("%s at %s by instance %s (audit record %s)", anonymized ? "anonymized" : "purged",
				  a[A_PURGED_AT], a[A_PURGED_BY], a[A_AUDIT_ID]);
	} else if (!record_found) {
		a[A_STATUS] = xstrdup("not_found");
		a[A_REASON] =
			one_form ? xasprintf("no record with key %s in %s, and policy %s never purged one", key,
					     sql.table, p->name)
				 : xasprintf("no record with key %s in %s, and no audit record of policy %s has key"
					     " %s as written: a value equal to it may be written otherwise in its type"
					     " (numeric 7.50 for 7.5, citext ALICE for alice); give the key as the"
					     " record had it",
					     key, sql.table, p->name, key);
	} else if (stands_anonymized) {
		a[A_STATUS] = xstrdup("anonymized");
		a[A_REASON] = xstrdup("nothing to anonymize: its anonymized columns already hold what anonymizing"
				      " stores (no audit record: the daemon never changed it)");
	} else if (clock_null) {
		a[A_STATUS] = xstrdup("clock_not_started");
		a[A_REASON] = xasprintf("its clock (%s) is not set: it falls due %s after it starts", p->clock,
					p->retain_text);
	} else if (strcmp(PQgetvalue(record, 0, EXPLAIN_EXEMPT), "t") == 0) {
		a[A_STATUS] = xstrdup("exempt");
		a[A_EXEMPT_COL] = xstrdup(p->exempt_column);
		a[A_EXEMPT_VAL] = value_or_null(record, 0, EXPLAIN_EXEMPT_VALUE);
		a[A_REASON] = xasprintf("exempt: %s = %s", p->exempt_column, a[A_EXEMPT_VAL] ? a[A_EXEMPT_VAL] : "");
	} else if (strcmp(PQgetvalue(record, 0, EXPLAIN_HELD), "t") == 0) {
		a[A_STATUS] = xstrdup("held");
		a[A_REASON] =
			xasprintf("held (see holds); without the hold it %s due at %s",
				  strcmp(PQgetvalue(record, 0, EXPLAIN_IS_DUE), "t") == 0 ? "fell" : "falls", a[A_DUE]);
	} else if (!PQgetisnull(record, 0, EXPLAIN_KEPT_BY) && *PQgetvalue(record, 0, EXPLAIN_KEPT_BY)) {
		/* Indexes into the guards, which say in words what refers to the record. */
		size_t i = (size_t)atoll(PQgetvalue(record, 0, EXPLAIN_KEPT_BY));
		a[A_STATUS] = xstrdup("referenced");
		a[A_REASON] = xasprintf("kept: %s; it is purged once those rows are gone (due %s)",
					i < sql.n_guards ? sql.guard_what[i] : "rows that must stay", a[A_DUE]);
	} else if (strcmp(PQgetvalue(record, 0, EXPLAIN_IS_DUE), "t") == 0 &&
		   !PQgetisnull(record, 0, EXPLAIN_QUARANTINE_ERROR)) {
		a[A_STATUS] = xstrdup("quarantined");
		a[A_REASON] = xasprintf("quarantined: %s; due since %s, skipped until %s",
					PQgetvalue(record, 0, EXPLAIN_QUARANTINE_ERROR), a[A_DUE],
					PQgetisnull(record, 0, EXPLAIN_QUARANTINE_RETRY)
						? "retentionctl quarantine retry"
						: PQgetvalue(record, 0, EXPLAIN_QUARANTINE_RETRY));
	} else if (ctl_explained_record_goes(record) && rule.waits && !due_in_force(ctl, &guarded, key)) {
		a[A_STATUS] = xstrdup("blocked");
		a[A_REASON] = xasprintf("due since %s under rule version %lld, which waits for approval (retentionctl"
					" approve): the version in force does not make it due",
					a[A_DUE], rule.state.version);
	} else if (ctl_explained_record_goes(record)) {
		a[A_STATUS] = xstrdup("overdue");
		a[A_REASON] =
			xasprintf("due since %s and not purged yet: the daemon is behind or not running", a[A_DUE]);
	} else {
		a[A_STATUS] = xstrdup("pending");
		a[A_REASON] = xasprintf("falls due at %s", a[A_DUE]);
	}
	status = ctl_print_object(ctl, answer_sql, NULL, A_N, NULL, (const char *const *)a);
out:
	for (int i = 0; i < A_N; i++)
		free(a[i]);
	PQclear(audit);
	PQclear(record);
	PQclear(holds);
	policy_sql_free(&sql);
	policy_sql_free(&guarded);
	rule_free(&rule.rule);
	free(canonical);
	return status;
}
