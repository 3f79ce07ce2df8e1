/*
 * cmd_audit.c -- retentionctl audit: the trail; audit verify, of the
 * database or of an export; audit export; audit keygen.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "ctl.h"
#include "json.h"
#include "util.h"

static const char usage[] =
	"usage: retentionctl audit [--policy P [--key K]] [--subject S] [--since T] [--until T] [--limit N]\n"
	"       retentionctl audit verify [--policy P] [--head SEQ:HASH] [--file F]\n"
	"       retentionctl audit export [--policy P] [--since T] [--until T]\n"
	"       retentionctl audit keygen FILE\n\n"
	"The audit trail, newest first (in table format the newest 100 unless --limit is given).\n"
	"--key K names a record of policy P as its key column reads it (\"042\" is record 42);\n"
	"--subject S a data subject (as policy P's subject column reads it, with --policy). Where\n"
	"the trail stores them as pseudonyms, the lookup computes them with audit.key_file.\n"
	"'audit verify' recomputes each policy's hash chain: exit 0 if intact, 3 naming the\n"
	"first bad record if not. --head takes a chain head as retentiond logs it after each\n"
	"batch (\"policy P: chain head SEQ:HASH\"); it also catches a chain rewritten wholesale.\n"
	"--file verifies an export instead, with no database.\n"
	"'audit export' writes the trail as JSON Lines in chain order, each policy's rows followed\n"
	"by its chain head (docs/audit-format.md). 'audit keygen' writes a new pseudonym key.\n";

static const char audit_sql[] =
	"SELECT id, policy, seq, service, source, table_name, record_key, subject, clock_at, due_at,"
	" purged_at, extract(epoch FROM purged_at - due_at)::float8 AS late_seconds, action, cause, request_id,"
	" instance, txid, format, encode(hash, 'hex') AS hash"
	" FROM retention.audit_log"
	" WHERE ($1::text IS NULL OR policy = $1) AND ($2::text[] IS NULL OR record_key = ANY ($2::text[]))"
	" AND ($3::timestamptz IS NULL OR purged_at >= $3) AND ($4::timestamptz IS NULL OR purged_at < $4)"
	" AND ($6::text[] IS NULL OR subject = ANY ($6::text[]))"
	" ORDER BY purged_at DESC, id DESC LIMIT $5::bigint";

/* ---- verify ---- */

/* A read-only transaction whose reads all see one snapshot. */
static bool begin_snapshot(struct ctl *ctl)
{
	PGresult *res = PQexec(ctl->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		ctl_result_error(ctl, NULL, res);
	PQclear(res);
	return ok;
}

/* What the verify report shows per chain: the same fields from the database or from a file. */
static const struct ctl_field report_fields[] = {
	{"policy", false}, {"records", true},       {"head_seq", true}, {"head_hash", false},
	{"intact", true},  {"first_bad_seq", true}, {"problem", false},
};
#define REPORT_N_FIELDS ((int)(sizeof(report_fields) / sizeof(report_fields[0])))

static int report(struct ctl *ctl, struct audit_verify *v)
{
	char **values = xcalloc(v->n * REPORT_N_FIELDS + 1, sizeof(char *));
	bool intact = true;
	int status;
	for (size_t i = 0; i < v->n; i++) {
		struct audit_chain *c = &v->chains[i];
		char **row = values + i * REPORT_N_FIELDS;
		row[0] = xstrdup(c->policy);
		row[1] = xasprintf("%lld", c->records);
		row[2] = xasprintf("%lld", c->last_seq);
		row[3] = xstrdup(c->last_hash);
		row[4] = xstrdup(c->problem ? "false" : "true");
		row[5] = c->problem ? xasprintf("%lld", c->bad_seq) : NULL;
		row[6] = c->problem ? xstrdup(c->problem) : NULL;
		if (c->problem) {
			intact = false;
			fprintf(stderr, "retentionctl: audit verify: policy %s: %s\n", c->policy, c->problem);
		}
	}
	status = ctl_print_rows(ctl, report_fields, REPORT_N_FIELDS, values, v->n);
	for (size_t i = 0; i < v->n * REPORT_N_FIELDS; i++)
		free(values[i]);
	free(values);
	if (status != CTL_OK)
		return status;
	return intact ? CTL_OK : CTL_VERIFY_FAILED;
}

/* An anchor from the daemon's log must still be in the chain, unchanged: HASH is what the trail holds at its seq. */
static void check_anchor(struct audit_verify *v, const char *policy, const struct audit_anchor *a, const char *hash)
{
	struct audit_chain *c = audit_verify_chain(v, policy);
	if (hash == NULL)
		audit_chain_broken(c, a->seq, xasprintf("the anchor's record seq %lld is not in the log", a->seq));
	else if (strcmp(hash, a->hash) != 0)
		audit_chain_broken(
			c, a->seq,
			xasprintf("record seq %lld does not match the anchor %lld:%s: the chain was rewritten", a->seq,
				  a->seq, a->hash));
}

static bool check_anchor_in_database(struct ctl *ctl, const char *policy, const struct audit_anchor *a,
				     struct audit_verify *v)
{
	char seq[32];
	const char *params[2] = {policy, seq};
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
	check_anchor(v, policy, a, PQntuples(res) ? PQgetvalue(res, 0, 0) : NULL);
	PQclear(res);
	return true;
}

/* A policy named and not found anywhere: nothing proves anything. */
static void nothing_to_verify(struct audit_verify *v, const char *policy)
{
	if (policy && v->n == 0)
		audit_chain_broken(audit_verify_chain(v, policy), 0,
				   xasprintf("there are no audit records and no chain head for policy %s: nothing to"
					     " verify (it never purged, or its chain was erased)",
					     policy));
}

/*
 * The tails a failover lost (retention.chain_gaps, recorded by the daemon
 * that found its chain's head behind the head it had committed), on stderr:
 * an anchor the log gave that is in one is explained, not excused: a gap row
 * is the database's word, which a rewrite could also have written.
 */
static void say_chain_gaps(struct ctl *ctl, const char *policy, const struct audit_anchor *anchor)
{
	char seq[32];
	const char *params[3] = {policy, seq, anchor ? anchor->hash : ""};
	PGresult *res;
	snprintf(seq, sizeof(seq), "%lld", anchor ? anchor->seq : 0);
	/* The gap keeps the hash of its last row: an anchor at that seq must have it. */
	res = PQexecParams(ctl->conn,
			   "SELECT id, policy, lost_from_seq, lost_to_seq, coalesce(found_head_seq::text, 'none'),"
			   " detected_at, instance, $2::bigint BETWEEN lost_from_seq AND lost_to_seq"
			   " AND ($2::bigint <> lost_to_seq OR pg_catalog.encode(lost_head_hash, 'hex') = $3)"
			   " FROM retention.chain_gaps WHERE $1::text IS NULL OR policy = $1 ORDER BY id",
			   3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_warn("cannot read retention.chain_gaps (the tails of chains lost in a failover): %s",
			 PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
				 ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
				 : PQerrorMessage(ctl->conn));
		PQclear(res);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		ctl_warn(
			"policy %s: audit records seq %s to %s were lost (chain gap %s, found at %s by instance %s: the"
			" chain's head was at %s, behind the head that daemon had committed, as after a failover to a"
			" standby that had not received the last batches; their records came back and were purged"
			" again)",
			PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 0),
			PQgetvalue(res, i, 5), PQgetvalue(res, i, 6), PQgetvalue(res, i, 4));
		if (anchor && strcmp(PQgetvalue(res, i, 7), "t") == 0)
			ctl_warn("the anchor %lld:%s is in chain gap %s: lost in that failover, not rewritten, if the"
				 " failover happened",
				 anchor->seq, anchor->hash, PQgetvalue(res, i, 0));
	}
	PQclear(res);
}

static int verify_database(struct ctl *ctl, const char *policy, const struct audit_anchor *anchor)
{
	struct audit_verify v = {NULL, 0, NULL};
	char *err = NULL;
	bool ok;
	int status;
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	/* One snapshot for the log, the heads and the anchor: a purge committing meanwhile is not a truncation. */
	ok = begin_snapshot(ctl);
	if (ok && !audit_verify_stream(ctl->conn, policy, &v, &err)) {
		ctl_error("%s", err);
		ok = false;
	}
	if (ok)
		nothing_to_verify(&v, policy);
	if (!ok || (anchor && !check_anchor_in_database(ctl, policy, anchor, &v)))
		status = CTL_ERROR;
	else
		status = report(ctl, &v);
	PQclear(PQexec(ctl->conn, "COMMIT"));
	if (ok)
		say_chain_gaps(ctl, policy, anchor);
	free(err);
	audit_verify_free(&v);
	return status;
}

/* The fields of an exported row, by name; a missing one is a problem of the line, not a NULL. */
static const struct {
	const char *name;
	enum audit_row_column column;
	enum json_type type; /* JSON_STRING: a string or null */
} export_fields[] = {
	{"format", AUDIT_FORMAT, JSON_NUMBER},
	{"policy", AUDIT_POLICY, JSON_STRING},
	{"seq", AUDIT_SEQ, JSON_NUMBER},
	{"service", AUDIT_SERVICE, JSON_STRING},
	{"source", AUDIT_SOURCE, JSON_STRING},
	{"table_name", AUDIT_TABLE, JSON_STRING},
	{"record_key", AUDIT_RECORD_KEY, JSON_STRING},
	{"subject", AUDIT_SUBJECT, JSON_STRING},
	{"clock_at", AUDIT_CLOCK_AT, JSON_STRING},
	{"due_at", AUDIT_DUE_AT, JSON_STRING},
	{"purged_at", AUDIT_PURGED_AT, JSON_STRING},
	{"action", AUDIT_ACTION, JSON_STRING},
	{"cause", AUDIT_CAUSE, JSON_STRING},
	{"request_id", AUDIT_REQUEST_ID, JSON_NUMBER},
	{"instance", AUDIT_INSTANCE, JSON_STRING},
	{"txid", AUDIT_TXID, JSON_NUMBER},
	{"prev_hash", AUDIT_PREV_HASH, JSON_STRING},
	{"hash", AUDIT_HASH, JSON_STRING},
};
#define EXPORT_N_FIELDS (sizeof(export_fields) / sizeof(export_fields[0]))

/* The format's integers: decimal digits, no sign, no more than a bigint holds. */
static bool export_integer(const char *text)
{
	char *end;
	errno = 0;
	return text[0] >= '0' && text[0] <= '9' && strtoll(text, &end, 10) >= 0 && errno == 0 && *end == '\0';
}

#define NOT_AN_INTEGER "a number field holds something other than an integer from 0 to 9223372036854775807"

/* One line's row into F (pointing into O); NULL, or what is wrong with the line. */
static const char *export_row(const struct json_object *o, const char *f[AUDIT_N_COLUMNS])
{
	if (o->n != EXPORT_N_FIELDS)
		return "a row has exactly the fields of docs/audit-format.md";
	for (size_t i = 0; i < EXPORT_N_FIELDS; i++) {
		const struct json_value *v = json_get(o, export_fields[i].name);
		if (v == NULL)
			return "a row has exactly the fields of docs/audit-format.md";
		if (v->type != JSON_NULL && v->type != export_fields[i].type)
			return export_fields[i].type == JSON_NUMBER ? NOT_AN_INTEGER
								    : "a text field holds something else";
		if (v->type == JSON_NUMBER && !export_integer(v->text))
			return NOT_AN_INTEGER;
		f[export_fields[i].column] = v->type == JSON_NULL ? NULL : v->text;
	}
	return NULL;
}

/* A chain_head line: its policy, seq and hash; NULL, or what is wrong with it. */
static const char *export_head(const struct json_object *o, const char **policy, long long *seq, const char **hash)
{
	const struct json_value *h = json_get(o, "chain_head"), *p, *s, *x;
	if (o->n != 1 || h == NULL || h->type != JSON_OBJECT || h->object->n != 3)
		return "a line is a row or {\"chain_head\": {\"policy\", \"seq\", \"hash\"}}";
	p = json_get(h->object, "policy");
	s = json_get(h->object, "seq");
	x = json_get(h->object, "hash");
	if (!p || !s || !x || p->type != JSON_STRING || s->type != JSON_NUMBER || x->type != JSON_STRING)
		return "a chain_head has a policy (text), a seq (number) and a hash (text)";
	if (!export_integer(s->text))
		return NOT_AN_INTEGER;
	*policy = p->text;
	*seq = atoll(s->text);
	*hash = x->text;
	return NULL;
}

static int verify_file(struct ctl *ctl, const char *path, const char *policy, const struct audit_anchor *anchor)
{
	struct audit_verify v = {NULL, 0, "line"};
	FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL, *anchor_hash = NULL;
	size_t cap = 0;
	long long lineno = 0;
	ssize_t got;
	const char *why = NULL;
	int status;
	if (in == NULL) {
		ctl_error("audit verify: cannot read %s: %s", path, strerror(errno));
		return CTL_ERROR;
	}
	while (why == NULL && (got = getline(&line, &cap, in)) >= 0) {
		struct json_object o;
		const char *f[AUDIT_N_COLUMNS] = {NULL}, *head_policy, *head_hash;
		char number[32];
		long long head_seq;
		lineno++;
		if ((size_t)got != strlen(line)) {
			why = "a NUL byte";
			break;
		}
		if (!json_parse_object(line, &o, &why))
			break;
		if (json_get(&o, "chain_head")) {
			why = export_head(&o, &head_policy, &head_seq, &head_hash);
			if (why == NULL && (policy == NULL || strcmp(policy, head_policy) == 0))
				audit_verify_head(&v, head_policy, head_seq, head_hash);
		} else if ((why = export_row(&o, f)) == NULL &&
			   (policy == NULL || strcmp(policy, f[AUDIT_POLICY]) == 0)) {
			snprintf(number, sizeof(number), "%lld", lineno);
			f[AUDIT_ID] = number;
			audit_verify_row(&v, f);
			if (anchor && strcmp(f[AUDIT_POLICY], policy) == 0 && atoll(f[AUDIT_SEQ]) == anchor->seq) {
				free(anchor_hash);
				anchor_hash = xstrdup(f[AUDIT_HASH]);
			}
		}
		json_object_free(&o);
	}
	if (why == NULL && ferror(in))
		why = strerror(errno);
	if (in != stdin)
		fclose(in);
	free(line);
	if (why) {
		/* Not what export writes: nothing in it can be trusted as read. */
		fprintf(stderr, "retentionctl: audit verify: %s:%lld: %s\n", path, lineno, why);
		free(anchor_hash);
		audit_verify_free(&v);
		return CTL_VERIFY_FAILED;
	}
	audit_verify_end(&v);
	nothing_to_verify(&v, policy);
	if (anchor)
		check_anchor(&v, policy, anchor, anchor_hash);
	status = report(ctl, &v);
	free(anchor_hash);
	audit_verify_free(&v);
	return status;
}

static int cmd_verify(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"head", required_argument, NULL, 'H'},
		{"file", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	const char *policy = NULL, *head = NULL, *file = NULL;
	struct audit_anchor anchor;
	int opt;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			policy = optarg;
		else if (opt == 'H')
			head = optarg;
		else if (opt == 'f')
			file = optarg;
		else
			return ctl_usage_error(usage, "audit verify: unknown option");
	}
	if (optind < argc)
		return ctl_usage_error(usage, "audit verify: unexpected argument \"%s\"", argv[optind]);
	if (head && !audit_anchor_parse(head, &anchor))
		return ctl_usage_error(usage, "--head takes SEQ:HASH (64 hex digits), not \"%s\"", head);
	if (head && policy == NULL)
		return ctl_usage_error(usage, "--head belongs to one policy's chain: give --policy too");
	if (file)
		return verify_file(ctl, file, policy, head ? &anchor : NULL);
	return verify_database(ctl, policy, head ? &anchor : NULL);
}

/* ---- export ---- */

/* Every field the hash covers, as the payload reads it, then the links: docs/audit-format.md. */
static const char export_rows_sql_fmt[] =
	"SELECT pg_catalog.json_build_object('format', r.format, 'policy', r.policy, 'seq', r.seq, 'service',"
	" r.service, 'source', r.source, 'table_name', r.table_name, 'record_key', r.record_key, 'subject',"
	" r.subject, 'clock_at', r.clock_at, 'due_at', r.due_at, 'purged_at', r.purged_at, 'action', r.action,"
	" 'cause', r.cause, 'request_id', r.request_id, 'instance', r.instance, 'txid', r.txid, 'prev_hash',"
	" r.prev_hash, 'hash', r.hash)::pg_catalog.text FROM (%s) r ORDER BY r.policy, r.seq";

/*
 * Each exported policy's head: the recorded one, so that a log cut short
 * fails to verify from the file as from the database; with --until, the
 * last row exported, the head of that stretch of the chain.
 */
static const char export_heads_sql[] =
	"SELECT pg_catalog.json_build_object('chain_head', pg_catalog.json_build_object('policy', h.policy, 'seq',"
	" h.seq, 'hash', pg_catalog.encode(h.hash, 'hex')))::pg_catalog.text FROM ("
	" SELECT c.policy, c.seq, c.hash FROM retention.chain_heads c WHERE $3::pg_catalog.timestamptz IS NULL"
	" AND ($1::pg_catalog.text IS NULL OR c.policy OPERATOR(pg_catalog.=) $1)"
	" AND EXISTS (SELECT FROM retention.audit_log a WHERE a.policy OPERATOR(pg_catalog.=) c.policy"
	" AND ($2::pg_catalog.timestamptz IS NULL OR a.purged_at OPERATOR(pg_catalog.>=) $2))"
	" UNION ALL"
	" SELECT DISTINCT ON (a.policy) a.policy, a.seq, a.hash FROM retention.audit_log a"
	" WHERE $3::pg_catalog.timestamptz IS NOT NULL"
	" AND ($1::pg_catalog.text IS NULL OR a.policy OPERATOR(pg_catalog.=) $1)"
	" AND ($2::pg_catalog.timestamptz IS NULL OR a.purged_at OPERATOR(pg_catalog.>=) $2)"
	" AND a.purged_at OPERATOR(pg_catalog.<) $3"
	" ORDER BY policy, seq DESC) h ORDER BY h.policy";

/* Streams SQL's one text column, a line per row. */
static bool print_lines(struct ctl *ctl, const char *sql, const char *const *params)
{
	PGresult *res;
	bool ok = true;
	if (!PQsendQueryParams(ctl->conn, sql, 3, NULL, params, NULL, NULL, 0)) {
		ctl_error("%s", PQerrorMessage(ctl->conn));
		return false;
	}
	PQsetSingleRowMode(ctl->conn);
	while ((res = PQgetResult(ctl->conn)) != NULL) {
		if (PQresultStatus(res) == PGRES_SINGLE_TUPLE)
			printf("%s\n", PQgetvalue(res, 0, 0));
		else if (PQresultStatus(res) != PGRES_TUPLES_OK && ok) {
			ctl_result_error(ctl, NULL, res);
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

static int cmd_export(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"since", required_argument, NULL, 's'},
		{"until", required_argument, NULL, 'u'},
		{NULL, 0, NULL, 0},
	};
	const char *params[3] = {NULL, NULL, NULL};
	char *rows_sql;
	bool ok;
	int opt;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'p')
			params[0] = optarg;
		else if (opt == 's')
			params[1] = optarg;
		else if (opt == 'u')
			params[2] = optarg;
		else
			return ctl_usage_error(usage, "audit export: unknown option");
	}
	if (optind < argc)
		return ctl_usage_error(usage, "audit export: unexpected argument \"%s\"", argv[optind]);
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	/* The rows and the heads from one snapshot: a batch committing meanwhile is in both or in neither. */
	ok = begin_snapshot(ctl);
	rows_sql = xasprintf(export_rows_sql_fmt, audit_rows_sql);
	ok = ok && print_lines(ctl, rows_sql, params) && print_lines(ctl, export_heads_sql, params);
	free(rows_sql);
	PQclear(PQexec(ctl->conn, "COMMIT"));
	if (fflush(stdout) != 0 || ferror(stdout)) {
		ctl_error("audit export: writing the export failed: %s", strerror(errno));
		return CTL_ERROR;
	}
	return ok ? CTL_OK : CTL_ERROR;
}

/* ---- keygen ---- */

static int cmd_keygen(int argc, char **argv)
{
	char *why;
	if (argc != 2 || argv[1][0] == '-')
		return ctl_usage_error(usage, "audit keygen takes the file to write, and nothing else");
	why = audit_keygen(argv[1]);
	if (why) {
		ctl_error("audit keygen: %s", why);
		free(why);
		return CTL_ERROR;
	}
	printf("wrote a new %d-byte key to %s (mode 0600): name it in audit.key_file, let only the daemon's user"
	       " and the auditors read it, and keep a copy apart from the database's backups\n",
	       AUDIT_KEY_BYTES, argv[1]);
	return CTL_OK;
}

/* ---- the trail ---- */

/* The stored forms of VALUE, read as policy P's COLUMN reads it (CANONICAL_SQL) when P is configured. */
static char *lookup_forms(struct ctl *ctl, const char *policy, bool key, const char *value)
{
	const struct policy *p = ctl->cfg && policy ? config_find_policy(ctl->cfg, policy) : NULL;
	char *canonical = NULL, *forms;
	if (p && (key || p->subject)) {
		/* As the column reads it, as the purge wrote it. A retired policy's value is taken as typed. */
		struct policy_sql sql;
		bool invalid, one_form = true;
		if (!ctl_policy_sql(ctl, p, &sql))
			return NULL;
		canonical = ctl_canonical(ctl, &sql, key ? sql.canonical_key : sql.canonical_subject, value, &invalid,
					  &one_form);
		policy_sql_free(&sql);
		if (canonical == NULL && !invalid)
			return NULL;
		if (!one_form)
			ctl_warn(LOOKUP_AS_WRITTEN, p->name, key ? "key" : "subject", canonical);
	}
	forms = ctl->cfg ? ctl_audit_forms(ctl,
					   key ? config_pseudonymizes_key(ctl->cfg)
					       : config_pseudonymizes_subject(ctl->cfg),
					   canonical ? canonical : value)
			 : policy_text_array((char *[]){(char *)value}, 1);
	free(canonical);
	return forms;
}

int cmd_audit(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"policy", required_argument, NULL, 'p'},
		{"key", required_argument, NULL, 'k'},
		{"subject", required_argument, NULL, 'S'},
		{"since", required_argument, NULL, 's'},
		{"until", required_argument, NULL, 'u'},
		{"limit", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	const char *params[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
	const char *key = NULL, *subject = NULL;
	char *purged, *late, *table_sql, *key_forms = NULL, *subject_forms = NULL;
	int opt, status;

	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	if (argc > 1 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(ctl, argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "export") == 0)
		return cmd_export(ctl, argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'p':
			params[0] = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'S':
			subject = optarg;
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
	if (key && params[0] == NULL)
		return ctl_usage_error(usage,
				       "audit --key needs --policy: a key means something only in its policy's table");
	if (params[4] == NULL && ctl->format == CTL_FORMAT_TABLE)
		params[4] = "100";
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	if ((key && (key_forms = lookup_forms(ctl, params[0], true, key)) == NULL) ||
	    (subject && (subject_forms = lookup_forms(ctl, params[0], false, subject)) == NULL)) {
		free(key_forms);
		return CTL_ERROR;
	}
	params[1] = key_forms;
	params[5] = subject_forms;
	purged = ctl_human_time("purged_at", "ago");
	late = ctl_human_interval("purged_at - due_at");
	table_sql = xasprintf("SELECT id, policy, seq, record_key, subject, %s AS purged, %s AS after_due, action,"
			      " instance FROM (%s) a",
			      purged, late, audit_sql);
	status = ctl_print_query(ctl, audit_sql, table_sql, 6, NULL, params);
	free(table_sql);
	free(purged);
	free(late);
	free(key_forms);
	free(subject_forms);
	return status;
}
