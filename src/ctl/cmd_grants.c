/*
 * cmd_grants.c -- retentionctl grants: the GRANT statements one documented
 * role needs for the configured policies, printed, never run. Who runs them
 * (a superuser, or the owners of the schemas and tables) decides; the
 * statements come from the configuration alone, so they can be reviewed
 * before anything connects.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "util.h"

static const char usage[] =
	"usage: retentionctl grants --for daemon|holds|audit|requests|owner|rules [--role ROLE]\n\n"
	"Prints the GRANT statements ROLE needs for the configured policies, to be run by a\n"
	"superuser (or the owners of the schemas and tables):\n"
	"  daemon  the daemon's role (default retentiond): each policy's table, after daemon-role.sql\n"
	"  holds   people who place and release holds (default legal): the hold functions, and\n"
	"          SELECT on the columns hold add, explain and pending read; quarantine list, retry\n"
	"  audit   people who review the audit trail (default auditor)\n"
	"  requests  people who file and close data subjects' requests (default privacy)\n"
	"  owner   a service table's owner: USAGE on schema retention, to attach the notify trigger\n"
	"  rules   people who approve changed rules (default dpo): approve, and pending's columns\n";

enum grants_for {
	FOR_DAEMON,
	FOR_HOLDS,
	FOR_AUDIT,
	FOR_REQUESTS,
	FOR_OWNER,
	FOR_RULES,
};

/* The output is piped to psql: a newline in a name would end the comment it is printed in. */
static bool has_control_character(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* NAME as an SQL identifier: always quoted, so that no keyword or case can change what it names. */
static char *ident(const char *name)
{
	size_t n = strlen(name), j = 0;
	char *out = xcalloc(2 * n + 3, 1);
	out[j++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (name[i] == '"')
			out[j++] = '"';
		out[j++] = name[i];
	}
	out[j++] = '"';
	return out;
}

/* The policy's table as "schema"."relation"; *SCHEMA gets the quoted schema, NULL when the name has none. */
static char *table_ident(const struct policy *p, char **schema)
{
	char *s = NULL, *rel = NULL, *qualified;
	*schema = NULL;
	if (!policy_resolve_params(p, &s, &rel)) {
		free(s);
		free(rel);
		return xstrdup(p->table);
	}
	qualified = ident(rel);
	if (s) {
		char *q = ident(s);
		char *both = xasprintf("%s.%s", q, qualified);
		free(qualified);
		qualified = both;
		*schema = q;
	}
	free(s);
	free(rel);
	return qualified;
}

/* A list of distinct strings, in the order first seen. */
struct names {
	char **v;
	size_t n;
};

static void names_add(struct names *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return;
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(char *));
	l->v[l->n++] = xstrdup(s);
}

static void names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* The quoted names of L joined by ", ". */
static char *names_joined(const struct names *l)
{
	char *out = xstrdup("");
	for (size_t i = 0; i < l->n; i++) {
		char *q = ident(l->v[i]);
		char *next = xasprintf("%s%s%s", out, i ? ", " : "", q);
		free(q);
		free(out);
		out = next;
	}
	return out;
}

/* What the role needs on one service table, gathered over the policies on it. */
struct table_grant {
	char *table;  /* quoted */
	char *schema; /* quoted, or NULL */
	struct names read;
	struct names keys;   /* locked FOR UPDATE by a delete policy */
	struct names clocks; /* for the notify trigger */
	bool deletes, anonymizes;
	bool has_identity; /* a policy on it has an identity: data subjects' requests read it */
};

static struct table_grant *table_of(struct table_grant **tables, size_t *n, const struct policy *p)
{
	char *schema, *table = table_ident(p, &schema);
	struct table_grant *t;
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*tables)[i].table, table) == 0) {
			free(table);
			free(schema);
			return &(*tables)[i];
		}
	*tables = xrealloc(*tables, (*n + 1) * sizeof(**tables));
	t = &(*tables)[(*n)++];
	memset(t, 0, sizeof(*t));
	t->table = table;
	t->schema = schema;
	return t;
}

static void print_table_grants(const struct table_grant *t, const char *role, enum grants_for what)
{
	if (t->schema == NULL)
		printf("-- a table is not schema-qualified: qualify it in the configuration (retentiond --check says"
		       " where it resolves)\n");
	else
		printf("GRANT USAGE ON SCHEMA %s TO %s;\n", t->schema, role);
	if (what == FOR_HOLDS) {
		char *cols = names_joined(&t->read);
		printf("GRANT SELECT (%s) ON %s TO %s;\n", cols, t->table, role);
		free(cols);
		return;
	}
	if (t->anonymizes) {
		/* The anonymizing UPDATE writes its columns; FOR UPDATE needs UPDATE on some column anyway. */
		printf("GRANT SELECT, UPDATE%s ON %s TO %s;\n", t->deletes ? ", DELETE" : "", t->table, role);
	} else {
		char *keys = names_joined(&t->keys);
		/* FOR UPDATE SKIP LOCKED is allowed only with UPDATE on some column: the key is the narrowest. */
		printf("GRANT SELECT, DELETE, UPDATE (%s) ON %s TO %s;\n", keys, t->table, role);
		free(keys);
	}
}

int cmd_grants(struct ctl *ctl, int argc, char **argv)
{
	static const struct option options[] = {
		{"for", required_argument, NULL, 'f'},
		{"role", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	static const char *const default_role[] = {"retentiond", "legal", "auditor", "privacy", NULL, "dpo"};
	const char *for_arg = NULL, *role_arg = NULL;
	struct table_grant *tables = NULL;
	size_t n_tables = 0;
	enum grants_for what;
	struct config *cfg;
	char *role;
	int opt;

	if (ctl_wants_help(argc, argv, usage))
		return CTL_OK;
	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (opt == 'f')
			for_arg = optarg;
		else if (opt == 'r')
			role_arg = optarg;
		else
			return ctl_usage_error(usage, "grants: unknown option");
	}
	if (optind < argc)
		return ctl_usage_error(usage, "grants: unexpected argument \"%s\"", argv[optind]);
	if (for_arg == NULL)
		return ctl_usage_error(usage, "grants needs --for daemon, holds, audit, requests, owner or rules");
	if (strcmp(for_arg, "daemon") == 0)
		what = FOR_DAEMON;
	else if (strcmp(for_arg, "holds") == 0)
		what = FOR_HOLDS;
	else if (strcmp(for_arg, "audit") == 0)
		what = FOR_AUDIT;
	else if (strcmp(for_arg, "requests") == 0)
		what = FOR_REQUESTS;
	else if (strcmp(for_arg, "owner") == 0)
		what = FOR_OWNER;
	else if (strcmp(for_arg, "rules") == 0)
		what = FOR_RULES;
	else
		return ctl_usage_error(
			usage, "grants: --for must be daemon, holds, audit, requests, owner or rules, not \"%s\"",
			for_arg);
	if (role_arg == NULL && default_role[what] == NULL)
		return ctl_usage_error(usage, "grants --for owner needs --role (the owner of the tables)");
	if (role_arg != NULL && (role_arg[0] == '\0' || has_control_character(role_arg)))
		return ctl_usage_error(usage, "grants: --role must be a role name, without control characters");
	if ((cfg = ctl_config(ctl)) == NULL)
		return CTL_ERROR;

	role = ident(role_arg ? role_arg : default_role[what]);
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *p = &cfg->policies[i];
		struct table_grant *t = table_of(&tables, &n_tables, p);
		for (size_t c = 0; c < p->n_keys; c++)
			names_add(&t->read, p->keys[c]);
		for (size_t c = 0; c < p->n_clocks; c++)
			names_add(&t->read, p->clocks[c]);
		if (p->subject)
			names_add(&t->read, p->subject);
		if (p->exempt_column)
			names_add(&t->read, p->exempt_column);
		if (p->retain_column)
			names_add(&t->read, p->retain_column);
		/* Whether a record still stands to be anonymized is read from these. */
		for (size_t c = 0; c < p->n_set_null; c++)
			names_add(&t->read, p->set_null[c]);
		for (size_t c = 0; c < p->n_set; c++)
			names_add(&t->read, p->set[c].column);
		for (size_t c = 0; c < p->n_clocks; c++)
			names_add(&t->clocks, p->clocks[c]);
		/* A record given a shorter duration may fall due before the next one known. */
		if (p->retain_column)
			names_add(&t->clocks, p->retain_column);
		if (p->identity)
			t->has_identity = true;
		if (p->action == POLICY_ACTION_ANONYMIZE) {
			/* Personal data written back into an anonymized row makes it due again: wake the daemon then too. */
			for (size_t c = 0; c < p->n_set_null; c++)
				names_add(&t->clocks, p->set_null[c]);
			for (size_t c = 0; c < p->n_set; c++)
				names_add(&t->clocks, p->set[c].column);
		}
		if (p->action == POLICY_ACTION_DELETE) {
			t->deletes = true;
			for (size_t c = 0; c < p->n_keys; c++)
				names_add(&t->keys, p->keys[c]);
		} else {
			t->anonymizes = true;
		}
	}

	printf("-- retentionctl grants --for %s: for role %s, from %s\n", for_arg, role,
	       has_control_character(cfg->path) ? "the configuration" : cfg->path);
	switch (what) {
	case FOR_DAEMON:
		printf("-- First, as a superuser: psql -v role=%s -f daemon-role.sql (the retention schema's grants).\n"
		       "-- Rows that must stay and refer to a policy's records need SELECT on their referencing\n"
		       "-- columns too: retentiond --check names each.\n",
		       role_arg ? role_arg : default_role[what]);
		for (size_t i = 0; i < n_tables; i++)
			print_table_grants(&tables[i], role, what);
		break;
	case FOR_HOLDS:
		/*
		 * The functions take the policy's lock and record the login role: no
		 * INSERT or UPDATE on holds. explain reads the audit trail for
		 * records already purged.
		 */
		printf("-- Rows that must stay and refer to a policy's records are read by explain and pending too:\n"
		       "-- grant SELECT on their referencing columns where retentiond --check names them.\n"
		       "GRANT USAGE ON SCHEMA retention TO %s;\n"
		       "GRANT SELECT ON retention.holds, retention.audit_log, retention.quarantine,"
		       " retention.rule_versions TO %s;\n"
		       "GRANT EXECUTE ON FUNCTION retention.place_hold(text, text, text, text, timestamptz),"
		       " retention.place_hold(text, text, text, text, timestamptz, text),"
		       " retention.release_hold(bigint, text), retention.retry_quarantined(text, bigint),"
		       " retention.rule_state(text, text, text, text) TO %s;\n",
		       role, role, role);
		for (size_t i = 0; i < n_tables; i++)
			print_table_grants(&tables[i], role, what);
		break;
	case FOR_RULES:
		/*
		 * Approving records the version the configuration states (rule_seen)
		 * and the login role; pending counts with the daemon's predicate,
		 * which reads holds and quarantined records.
		 */
		printf("GRANT USAGE ON SCHEMA retention TO %s;\n"
		       "GRANT SELECT ON retention.holds, retention.quarantine, retention.rule_versions TO %s;\n"
		       "GRANT EXECUTE ON FUNCTION retention.rule_state(text, text, text, text),"
		       " retention.rule_seen(text, text, text, interval, text, text[], text),"
		       " retention.rule_approve(bigint, bigint, text, text, boolean) TO %s;\n",
		       role, role, role);
		for (size_t i = 0; i < n_tables; i++)
			print_table_grants(&tables[i], role, FOR_HOLDS);
		break;
	case FOR_AUDIT:
		printf("GRANT USAGE ON SCHEMA retention TO %s;\n"
		       "GRANT SELECT ON retention.audit_log, retention.chain_heads, retention.chain_gaps,"
		       " retention.instances, retention.holds, retention.rule_versions TO %s;\n",
		       role, role);
		break;
	case FOR_REQUESTS:
		/*
		 * Requests are filed and closed through the functions, which record
		 * the login role; the tables are read. Open requests hold the
		 * identities in clear: only this role and the daemon's read them.
		 */
		printf("GRANT USAGE ON SCHEMA retention TO %s;\n"
		       "GRANT SELECT ON retention.requests, retention.request_identities, retention.request_results,"
		       " retention.audit_log, retention.holds TO %s;\n"
		       "GRANT EXECUTE ON FUNCTION retention.file_request(text, text[], text[], timestamptz, text),"
		       " retention.extend_request(bigint, timestamptz, text), retention.reject_request(bigint, text),"
		       " retention.restrict_request(text[], text[], text[], text[], text, timestamptz, text),"
		       " retention.lift_restriction(bigint, text), retention.is_restricted(text, text),"
		       " retention.record_access(text[], text[], timestamptz, text) TO %s;\n"
		       "-- request access reads every column of the subject's records:\n",
		       role, role, role);
		for (size_t i = 0; i < n_tables; i++) {
			if (!tables[i].has_identity)
				continue;
			if (tables[i].schema)
				printf("GRANT USAGE ON SCHEMA %s TO %s;\n", tables[i].schema, role);
			printf("GRANT SELECT ON %s TO %s;\n", tables[i].table, role);
		}
		break;
	case FOR_OWNER:
		printf("GRANT USAGE ON SCHEMA retention TO %s;\n"
		       "-- Then, as the owner, the notify trigger on each table (retentiond --check warns where it is "
		       "missing):\n",
		       role);
		for (size_t i = 0; i < n_tables; i++) {
			char *clocks = names_joined(&tables[i].clocks);
			if (has_control_character(clocks) || has_control_character(tables[i].table)) {
				printf("--   (a name with control characters: retentiond --check prints its statement)\n");
				free(clocks);
				continue;
			}
			printf("--   CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF %s ON %s"
			       " FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();\n",
			       clocks, tables[i].table);
			free(clocks);
		}
		break;
	}
	for (size_t i = 0; i < n_tables; i++) {
		free(tables[i].table);
		free(tables[i].schema);
		names_free(&tables[i].read);
		names_free(&tables[i].keys);
		names_free(&tables[i].clocks);
	}
	free(tables);
	free(role);
	return CTL_OK;
}
