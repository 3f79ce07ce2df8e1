/*
 * cmd_request.c -- retentionctl request: a data subject's erasure request,
 * its deadline, extension, rejection, and the record of what was done.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] =
	"usage: retentionctl request erase --identity TYPE=VALUE [--identity ...] [--received T] [--note TEXT]\n"
	"       retentionctl request restrict --identity TYPE=VALUE [...] --reason TEXT [--received T] [--note TEXT]\n"
	"       retentionctl request lift ID --reason TEXT\n"
	"       retentionctl request access --identity TYPE=VALUE [...] [--received T] [--note TEXT]\n"
	"       retentionctl request list [--open] [--overdue]\n"
	"       retentionctl request show ID\n"
	"       retentionctl request extend ID --until T --reason TEXT\n"
	"       retentionctl request reject ID --reason TEXT\n\n"
	"'request erase' records a data subject's erasure request and prints its id. The\n"
	"daemon purges the subject's records in every policy whose identity is TYPE, whatever\n"
	"their clocks say; held and exempt records, and policies with on_erasure = \"keep\",\n"
	"are kept and reported. The request is done once nothing erasable is left.\n"
	"Its deadline is one calendar month after --received (default: now), in\n"
	"database.time_zone; 'extend' moves it, by two more months at most (Art. 12(3)).\n"
	"'reject' closes a request without carrying it out, with the reason given.\n"
	"'restrict' keeps every record of the subject in those policies from being purged\n"
	"(Art. 18), race-free like a hold, until 'lift'.\n"
	"'access' prints one JSON document: per policy its rule and every record of the\n"
	"subject, with when the rule purges it (Art. 15); it is recorded as done at once.\n"
	"A closed request keeps its identities only as the audit trail's pseudonyms (the\n"
	"daemon replaces them). An extension reaches at most three months after receipt.\n";

/*
 * One identity of a request: TYPE=VALUE as typed. It is kept so: each
 * policy reads it in its own subject column's type (04711 is account 4711
 * in an integer column, and 04711 in a text one).
 */
struct identity {
	char *type;
	char *value;
};

/* What a request command was given. */
struct request_args {
	struct identity *ids;
	size_t n;
	const char *received, *note, *reason;
	/* Each matching policy with the value as its subject column spells it (restrict's holds). */
	char **policies, **subjects;
	size_t n_pairs;
};

static void request_args_free(struct request_args *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->ids[i].type);
		free(a->ids[i].value);
	}
	free(a->ids);
	for (size_t i = 0; i < a->n_pairs; i++) {
		free(a->policies[i]);
		free(a->subjects[i]);
	}
	free(a->policies);
	free(a->subjects);
	memset(a, 0, sizeof(*a));
}

/*
 * --identity TYPE=VALUE (one or more), --received, --note and, where VERB
 * takes one, --reason. CTL_OK, or a usage error already reported.
 */
static int parse_request_args(int argc, char **argv, const char *verb, bool with_reason, struct request_args *a)
{
	static const struct option options[] = {
		{"identity", required_argument, NULL, 'i'},
		{"received", required_argument, NULL, 'r'},
		{"note", required_argument, NULL, 'n'},
		{"reason", required_argument, NULL, 'R'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	memset(a, 0, sizeof(*a));
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		const char *eq;
		switch (opt) {
		case 'i':
			eq = strchr(optarg, '=');
			if (eq == NULL || eq == optarg || eq[1] == '\0') {
				request_args_free(a);
				return ctl_usage_error(usage, "--identity takes TYPE=VALUE, not \"%s\"", optarg);
			}
			a->ids = xrealloc(a->ids, (a->n + 1) * sizeof(*a->ids));
			a->ids[a->n].type = xstrndup(optarg, (size_t)(eq - optarg));
			a->ids[a->n].value = xstrdup(eq + 1);
			a->n++;
			break;
		case 'r':
			a->received = optarg;
			break;
		case 'n':
			a->note = optarg;
			break;
		case 'R':
			if (with_reason) {
				a->reason = optarg;
				break;
			}
			/* fall through */
		default:
			request_args_free(a);
			return ctl_usage_error(usage, "request %s: unknown option", verb);
		}
	}
	if (a->n == 0 || optind < argc) {
		request_args_free(a);
		return ctl_usage_error(usage, "request %s needs --identity TYPE=VALUE, and no other argument", verb);
	}
	if (with_reason && (a->reason == NULL || a->reason[0] == '\0')) {
		request_args_free(a);
		return ctl_usage_error(usage, "request %s needs --reason", verb);
	}
	return CTL_OK;
}

/* The identity types the configuration's policies declare, for a message: "account, email". */
static char *declared_identities(const struct config *cfg)
{
	char *out = xstrdup("");
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const char *t = cfg->policies[i].identity;
		char *next;
		bool seen = false;
		if (t == NULL)
			continue;
		for (size_t j = 0; j < i && !seen; j++)
			seen = cfg->policies[j].identity && strcmp(cfg->policies[j].identity, t) == 0;
		if (seen)
			continue;
		next = xasprintf("%s%s%s", out, *out ? ", " : "", t);
		free(out);
		out = next;
	}
	return out;
}

/*
 * Checks ID against every policy that declares its type: the value must be
 * one of each subject column's type. Adds each policy with the value as its
 * column spells it to A's pairs. False after one line on stderr.
 */
static bool identity_check(struct ctl *ctl, struct identity *id, struct request_args *a)
{
	bool matched = false;
	for (size_t i = 0; i < ctl->cfg->n_policies; i++) {
		const struct policy *p = &ctl->cfg->policies[i];
		struct policy_sql sql;
		bool invalid;
		char *canonical;
		if (p->identity == NULL || strcmp(p->identity, id->type) != 0)
			continue;
		if (!ctl_policy_sql(ctl, p, &sql))
			return false;
		canonical = ctl_canonical(ctl, &sql, sql.canonical_subject, id->value, &invalid, NULL);
		policy_sql_free(&sql);
		if (canonical == NULL) {
			if (invalid)
				ctl_error("%s=%s: \"%s\" is not a value of policy %s's subject column %s", id->type,
					  id->value, id->value, p->name, p->subject);
			return false;
		}
		a->policies = xrealloc(a->policies, (a->n_pairs + 1) * sizeof(char *));
		a->subjects = xrealloc(a->subjects, (a->n_pairs + 1) * sizeof(char *));
		a->policies[a->n_pairs] = xstrdup(p->name);
		a->subjects[a->n_pairs++] = canonical;
		matched = true;
	}
	if (!matched) {
		char *known = declared_identities(ctl->cfg);
		ctl_error("no policy in %s declares identity %s (%s%s)", ctl->config_path, id->type,
			  *known ? "declared: " : "none declares any", known);
		free(known);
	}
	return matched;
}

/* Checks every identity of A against the configuration; the request's types and values as array literals. */
static bool check_identities(struct ctl *ctl, struct request_args *a, char **types_param, char **values_param)
{
	char **types, **values;
	if (ctl_config(ctl) == NULL || ctl_connect(ctl) == NULL)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!identity_check(ctl, &a->ids[i], a))
			return false;
	types = xcalloc(a->n + 1, sizeof(char *));
	values = xcalloc(a->n + 1, sizeof(char *));
	for (size_t i = 0; i < a->n; i++) {
		types[i] = a->ids[i].type;
		values[i] = a->ids[i].value;
	}
	*types_param = policy_text_array(types, a->n);
	*values_param = policy_text_array(values, a->n);
	free(types);
	free(values);
	return true;
}

/* After a request was filed: its id on stdout, its dates on stderr. */
static void say_filed(struct ctl *ctl, const char *kind, const char *id)
{
	const char *params[1] = {id};
	PGresult *when =
		PQexecParams(ctl->conn, "SELECT received_at, deadline_at FROM retention.requests WHERE id = $1::bigint",
			     1, NULL, params, NULL, NULL, 0);
	printf("%s\n", id);
	if (PQresultStatus(when) == PGRES_TUPLES_OK && PQntuples(when) == 1)
		fprintf(stderr, "retentionctl: %s request %s recorded: received %s, deadline %s\n", kind, id,
			PQgetvalue(when, 0, 0), PQgetvalue(when, 0, 1));
	PQclear(when);
}

/* `request VERB` files a request of KIND by SQL (which returns its id) and says so; CTL_OK or CTL_ERROR. */
static int file_request(struct ctl *ctl, const char *verb, const char *kind, const char *sql, int n,
			const char *const *params)
{
	PGresult *res = PQexecParams(ctl->conn, sql, n, NULL, params, NULL, NULL, 0);
	int status = CTL_ERROR;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		char *context = xasprintf("request %s", verb);
		ctl_result_error(ctl, context, res);
		free(context);
	} else {
		say_filed(ctl, kind, PQgetvalue(res, 0, 0));
		status = CTL_OK;
	}
	PQclear(res);
	return status;
}

static int request_erase(struct ctl *ctl, int argc, char **argv)
{
	struct request_args a;
	char *types = NULL, *values = NULL;
	const char *params[5];
	int status = parse_request_args(argc, argv, "erase", false, &a);
	if (status != CTL_OK)
		return status;
	if (!check_identities(ctl, &a, &types, &values)) {
		request_args_free(&a);
		return CTL_ERROR;
	}
	params[0] = "erasure";
	params[1] = types;
	params[2] = values;
	params[3] = a.received;
	params[4] = a.note;
	status = file_request(ctl, "erase", "erasure",
			      "SELECT retention.file_request($1, $2::text[], $3::text[],"
			      " coalesce($4::timestamptz, pg_catalog.statement_timestamp()), $5)",
			      5, params);
	free(types);
	free(values);
	request_args_free(&a);
	return status;
}

/*
 * A restriction: a subject hold on every policy whose identity it names,
 * placed under each policy's lock, so that once this returns no batch
 * purges the subject's records until the request is lifted.
 */
static int request_restrict(struct ctl *ctl, int argc, char **argv)
{
	struct request_args a;
	char *types = NULL, *values = NULL, *policies, *subjects;
	const char *params[7];
	int status = parse_request_args(argc, argv, "restrict", true, &a);
	if (status != CTL_OK)
		return status;
	if (!check_identities(ctl, &a, &types, &values)) {
		request_args_free(&a);
		return CTL_ERROR;
	}
	policies = policy_text_array(a.policies, a.n_pairs);
	subjects = policy_text_array(a.subjects, a.n_pairs);
	params[0] = types;
	params[1] = values;
	params[2] = policies;
	params[3] = subjects;
	params[4] = a.reason;
	params[5] = a.received;
	params[6] = a.note;
	status = file_request(ctl, "restrict", "restriction",
			      "SELECT retention.restrict_request($1::text[], $2::text[], $3::text[], $4::text[], $5,"
			      " coalesce($6::timestamptz, pg_catalog.statement_timestamp()), $7)",
			      7, params);
	free(policies);
	free(subjects);
	free(types);
	free(values);
	request_args_free(&a);
	return status;
}

/* Policy P's part of an access report (policy_sql.access), appended to *PARTS with a comma; false after an error. */
static bool access_part(struct ctl *ctl, const struct policy *p, const char *values, char **parts)
{
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	struct policy_sql sql;
	PGresult *res;
	char *next;
	if (!ctl_policy_sql(ctl, p, &sql))
		return false;
	if (sql.access == NULL) {
		ctl_error("policy %s: its subject column's type has no equality: its records cannot be looked up",
			  p->name);
		policy_sql_free(&sql);
		return false;
	}
	ctl_policy_params(&sql, params, types, values, p->retain_text);
	res = PQexecParams(ctl->conn, sql.access, POLICY_N_BASE_PARAMS + 2, types, params, NULL, NULL, 0);
	policy_sql_free(&sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		ctl_result_error(ctl, "request access", res);
		PQclear(res);
		return false;
	}
	next = xasprintf("%s%s%s", *parts, **parts ? ", " : "", PQgetvalue(res, 0, 0));
	free(*parts);
	*parts = next;
	PQclear(res);
	return true;
}

/*
 * Art. 15: one JSON document with, per policy whose identity is named, its
 * rule and every record of the subject as PostgreSQL renders it, with the
 * moment the rule purges it. Recorded as a request, done at once (the
 * daemon then pseudonymizes its identities). One snapshot for the report.
 */
static int request_access(struct ctl *ctl, int argc, char **argv)
{
	struct request_args a;
	char *types = NULL, *values = NULL, *parts = xstrdup(""), *policies, **id_types, **id_values;
	const char *params[4];
	PGresult *res;
	bool ok = true;
	int status = parse_request_args(argc, argv, "access", false, &a);
	if (status != CTL_OK) {
		free(parts);
		return status;
	}
	if (!check_identities(ctl, &a, &types, &values)) {
		request_args_free(&a);
		free(parts);
		return CTL_ERROR;
	}
	PQclear(PQexec(ctl->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
	id_types = xcalloc(a.n + 1, sizeof(char *));
	id_values = xcalloc(a.n + 1, sizeof(char *));
	for (size_t i = 0; i < a.n; i++) {
		id_types[i] = a.ids[i].type;
		id_values[i] = a.ids[i].value;
	}
	for (size_t i = 0; ok && i < ctl->cfg->n_policies; i++) {
		const struct policy *p = &ctl->cfg->policies[i];
		char *mine = policy_identity_values(p, id_types, id_values, a.n);
		if (mine)
			ok = access_part(ctl, p, mine, &parts);
		free(mine);
	}
	if (ok) {
		params[0] = types;
		params[1] = values;
		params[2] = a.received;
		params[3] = a.note;
		res = PQexecParams(ctl->conn,
				   "SELECT retention.record_access($1::text[], $2::text[],"
				   " coalesce($3::timestamptz, pg_catalog.statement_timestamp()), $4)",
				   4, NULL, params, NULL, NULL, 0);
		ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
		if (!ok)
			ctl_result_error(ctl, "request access", res);
		policies = xasprintf("[%s]", parts);
		if (ok) {
			PGresult *doc;
			params[0] = PQgetvalue(res, 0, 0);
			params[1] = types;
			params[2] = values;
			params[3] = policies;
			doc = PQexecParams(
				ctl->conn,
				"SELECT pg_catalog.json_build_object('id', $1::bigint, 'kind', 'access', 'received_at',"
				" r.received_at, 'deadline_at', r.deadline_at, 'identities', (SELECT pg_catalog.json_agg("
				"pg_catalog.json_build_object('type', i.t, 'value', i.v)) FROM ROWS FROM (pg_catalog.unnest("
				"$2::text[]), pg_catalog.unnest($3::text[])) i(t, v)), 'policies', $4::pg_catalog.json)"
				" FROM retention.requests r WHERE r.id = $1::bigint",
				4, NULL, params, NULL, NULL, 0);
			ok = PQresultStatus(doc) == PGRES_TUPLES_OK && PQntuples(doc) == 1;
			if (ok)
				printf("%s\n", PQgetvalue(doc, 0, 0));
			else
				ctl_result_error(ctl, "request access", doc);
			PQclear(doc);
		}
		PQclear(res);
		free(policies);
	}
	/* Recorded only with its report printed: a failed report leaves no request behind. */
	PQclear(PQexec(ctl->conn, ok ? "COMMIT" : "ROLLBACK"));
	free(id_types);
	free(id_values);
	free(parts);
	free(types);
	free(values);
	request_args_free(&a);
	return ok ? CTL_OK : CTL_ERROR;
}

/* A request's identities as "account=4711, email=a@example.org". */
#define IDENTITIES_SQL                                                                                                 \
	"(SELECT pg_catalog.string_agg(i.identity || '=' || i.value, ', ' ORDER BY i.ord)"                             \
	" FROM retention.request_identities i WHERE i.request_id = r.id)"

static const char list_sql[] =
	"SELECT r.id, r.kind, r.status, " IDENTITIES_SQL " AS identities, r.received_at, r.deadline_at,"
	" " REQUEST_OVERDUE_SQL(
		"r") " AS overdue, r.completed_at, r.placed_by, r.note FROM retention.requests r"
		     " WHERE (NOT $1::boolean OR r.status = 'open') AND (NOT $2::boolean OR " REQUEST_OVERDUE_SQL(
			     "r") ")"
				  " ORDER BY r.id";

static int request_list(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"open", no_argument, NULL, 'o'},
		{"overdue", no_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	const char *params[2] = {"false", "false"};
	char *deadline = ctl_human_time("deadline_at", "ago"), *table_sql;
	int opt, status;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'o' || opt == 'd') {
			params[opt == 'o' ? 0 : 1] = "true";
		} else {
			free(deadline);
			return ctl_usage_error(usage, "request list: unknown option");
		}
	}
	if (optind < argc || ctl_connect(ctl) == NULL) {
		free(deadline);
		return optind < argc ? ctl_usage_error(usage, "request list takes no arguments") : CTL_ERROR;
	}
	table_sql = xasprintf("SELECT id, kind, CASE WHEN overdue THEN 'OVERDUE' ELSE status END AS status, identities,"
			      " %s AS deadline FROM (%s) l",
			      deadline, list_sql);
	status = ctl_print_query(ctl, list_sql, table_sql, 2, NULL, params);
	free(table_sql);
	free(deadline);
	return status;
}

/* The request ID's one argument, checked; NULL after a usage error. */
static const char *request_id_arg(int argc, char **argv, const char *verb)
{
	char *end;
	if (optind + 1 != argc || strtoll(argv[optind], &end, 10) <= 0 || *end) {
		ctl_usage_error(usage, "request %s takes one request id", verb);
		return NULL;
	}
	return argv[optind];
}

static int request_show(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {{NULL, 0, NULL, 0}};
	const char *params[1];
	int status;
	if (getopt_long(argc, argv, "", options, NULL) != -1)
		return ctl_usage_error(usage, "request show: unknown option");
	if ((params[0] = request_id_arg(argc, argv, "show")) == NULL)
		return CTL_USAGE;
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	status = ctl_print_object(
		ctl,
		"SELECT r.id, r.kind, r.status, (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('type',"
		" i.identity, 'value', i.value) ORDER BY i.ord) FROM retention.request_identities i"
		" WHERE i.request_id = r.id) AS identities, r.pseudonymized, r.received_at, r.deadline_at,"
		" r.extension_reason, r.completed_at, r.close_reason, r.placed_by, r.note,"
		" (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('policy', s.policy, 'purged', s.purged,"
		" 'kept', s.kept, 'reason', s.reason, 'finished', s.finished, 'updated_at', s.updated_at)"
		" ORDER BY s.policy) FROM retention.request_results s WHERE s.request_id = r.id) AS results"
		" FROM retention.requests r WHERE r.id = $1::bigint",
		NULL, 1, NULL, params);
	return status;
}

static int request_extend(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"until", required_argument, NULL, 'u'},
		{"reason", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *params[3] = {NULL, NULL, NULL};
	PGresult *res;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'u')
			params[1] = optarg;
		else if (opt == 'r')
			params[2] = optarg;
		else
			return ctl_usage_error(usage, "request extend: unknown option");
	}
	if ((params[0] = request_id_arg(argc, argv, "extend")) == NULL)
		return CTL_USAGE;
	if (params[1] == NULL || params[2] == NULL || params[2][0] == '\0')
		return ctl_usage_error(usage, "request extend needs --until and --reason");
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	res = PQexecParams(ctl->conn, "SELECT retention.extend_request($1::bigint, $2::timestamptz, $3)", 3, NULL,
			   params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_result_error(ctl, "request extend", res);
		PQclear(res);
		return CTL_ERROR;
	}
	printf("request %s: deadline %s\n", params[0], PQgetvalue(res, 0, 0));
	PQclear(res);
	return CTL_OK;
}

/*
 * reject and lift: close request ID (one argument) by SQL ($1 id, $2
 * reason). The daemon then replaces its identities by their pseudonyms:
 * people closing requests need no key.
 */
static int close_request(struct ctl *ctl, int argc, char **argv, const char *verb, const char *sql, const char *done,
			 const char *not_open)
{
	static const struct option options[] = {
		{"reason", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *params[2] = {NULL, NULL};
	PGresult *res;
	int opt, status = CTL_ERROR;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'r')
			params[1] = optarg;
		else
			return ctl_usage_error(usage, "request %s: unknown option", verb);
	}
	if ((params[0] = request_id_arg(argc, argv, verb)) == NULL)
		return CTL_USAGE;
	if (params[1] == NULL || params[1][0] == '\0')
		return ctl_usage_error(usage, "request %s needs --reason", verb);
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	res = PQexecParams(ctl->conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char *context = xasprintf("request %s", verb);
		ctl_result_error(ctl, context, res);
		free(context);
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		ctl_error("request %s does not exist or is not %s", params[0], not_open);
	} else {
		printf("%s request %s\n", done, params[0]);
		status = CTL_OK;
	}
	PQclear(res);
	return status;
}

static int request_reject(struct ctl *ctl, int argc, char **argv)
{
	return close_request(ctl, argc, argv, "reject", "SELECT retention.reject_request($1::bigint, $2)", "rejected",
			     "open");
}

static int request_lift(struct ctl *ctl, int argc, char **argv)
{
	return close_request(ctl, argc, argv, "lift", "SELECT retention.lift_restriction($1::bigint, $2)", "lifted",
			     "an open restriction");
}

int cmd_request(struct ctl *ctl, int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(struct ctl *ctl, int argc, char **argv);
	} verbs[] = {
		{"erase", request_erase},   {"restrict", request_restrict}, {"lift", request_lift},
		{"access", request_access}, {"list", request_list},         {"show", request_show},
		{"extend", request_extend}, {"reject", request_reject},
	};
	if (argc < 2)
		return ctl_usage_error(usage,
				       "request needs erase, restrict, lift, access, list, show, extend or reject");
	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(argv[1], verbs[i].name) == 0)
			return verbs[i].run(ctl, argc - 1, argv + 1);
	return ctl_usage_error(usage, "request: unknown subcommand \"%s\"", argv[1]);
}
