/* retentionctl: one command table, one function per verb. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autoconf.h"
#include "ctl.h"
#include "session.h"
#include "util.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct command {
	const char *name;
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const char *summary;
} commands[] = {
	{"policies", cmd_policies, "every configured policy"},
	{"pending", cmd_pending, "what falls due, per policy or per record"},
	{"explain", cmd_explain, "when a record falls due and why it is (not) purged"},
	{"audit", cmd_audit, "the audit trail; 'audit verify' checks its hash chains"},
	{"hold", cmd_hold, "hold add | list | release"},
	{"quarantine", cmd_quarantine, "records whose purge failed on their own: list | retry"},
	{"approve", cmd_approve, "approve a policy's changed rule that waits for approval"},
	{"request", cmd_request, "a data subject's request: erase | restrict | lift | list | show | extend | reject"},
	{"status", cmd_status, "every daemon instance seen"},
	{"migrate", cmd_migrate, "install or upgrade the retention schema"},
	{"grants", cmd_grants, "the GRANT statements a documented role needs"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: retentionctl [-c FILE] [-d CONNINFO] [--format table|json|csv] COMMAND [ARGS]\n\n"
		     "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'retentionctl COMMAND --help' describes a command.\n"
		     "Exit status: 0 ok, 1 error, 2 usage error, 3 audit verification failed.\n");
}

static void vsay(const char *kind, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* "retentionctl: KIND MESSAGE" on stderr, one line. */
static void vsay(const char *kind, const char *fmt, va_list ap)
{
	fprintf(stderr, "retentionctl: %s", kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void ctl_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("", fmt, ap);
	va_end(ap);
}

void ctl_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("warning: ", fmt, ap);
	va_end(ap);
}

/* What grants the privileges a command needs, for people who lack one. */
static const char *privilege_remedy(const char *command)
{
	if (command == NULL)
		return "see docs/operations.md section 3";
	if (strcmp(command, "migrate") == 0)
		return "migrate runs as the retention schema's owner or a superuser";
	if (strcmp(command, "audit") == 0 || strcmp(command, "status") == 0)
		return "'retentionctl grants --for audit' prints the GRANTs reviewers need, for a group role of theirs"
		       " (docs/operations.md section 3)";
	if (strcmp(command, "approve") == 0)
		return "'retentionctl grants --for rules' prints the GRANTs people who approve changed rules need, for a"
		       " group role of theirs (docs/operations.md section 3)";
	if (strcmp(command, "request") == 0)
		return "'retentionctl grants --for requests' prints the GRANTs people who handle data subjects'"
		       " requests need, for a group role of theirs (docs/operations.md section 3)";
	return "'retentionctl grants --for holds' prints the GRANTs people who place holds need, for a group role"
	       " of theirs (docs/operations.md section 3)";
}

/* After an error of SQLSTATE: a missing privilege gets a line naming the role and what prints the grants. */
static void privilege_hint(const struct ctl *ctl, const char *state)
{
	if (state == NULL || strcmp(state, "42501") != 0)
		return;
	/* Without -d it logged in as the configuration says: most likely the daemon's role. */
	bool as_configured = ctl->conninfo == NULL && ctl->cfg && ctl->cfg->conninfo && ctl->cfg->conninfo[0];
	ctl_error("role %s%s lacks a privilege that retentionctl %s needs: %s%s", ctl->conn ? PQuser(ctl->conn) : "?",
		  as_configured ? ", the configuration's conninfo," : "", ctl->command ? ctl->command : "",
		  as_configured ? "people connect as themselves, with -d 'dbname=... user=...'; " : "",
		  privilege_remedy(ctl->command));
}

void ctl_result_error(const struct ctl *ctl, const char *context, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	char *message = xstrdup(res ? PQresultErrorMessage(res) : "no result");
	size_t n = strlen(message);
	while (n > 0 && message[n - 1] == '\n')
		message[--n] = '\0';
	if (context)
		ctl_error("%s: %s", context, message);
	else
		ctl_error("%s", message);
	privilege_hint(ctl, state);
	free(message);
}

struct config *ctl_config(struct ctl *ctl)
{
	struct config_errors errs = {NULL, 0};
	if (ctl->cfg)
		return ctl->cfg;
	ctl->cfg = config_load(ctl->config_path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "retentionctl: %s\n", errs.lines[i]);
	config_errors_clear(&errs);
	/* A file of policies alone (docs/operations.md section 3) does not say the daemon's zone. */
	if (ctl->cfg && !ctl->cfg->time_zone_given && ctl->cfg->conninfo[0] == '\0' && ctl->cfg->n_policies > 0)
		ctl_error("warning: %s sets no database.time_zone: due times are computed, and times shown, in UTC,"
			  " which is not the daemon's if its configuration names another zone",
			  ctl->cfg->path);
	return ctl->cfg;
}

PGconn *ctl_connect(struct ctl *ctl)
{
	const char *conninfo = ctl->conninfo;
	char *options, *err = NULL;
	if (ctl->conn)
		return ctl->conn;
	/*
	 * The configuration names the database unless -d does, and its zone is
	 * the one times are read and shown in, as the daemon computes them; so
	 * it is read whenever it can be, -d or not.
	 */
	if (ctl->config_path_given || access(ctl->config_path, R_OK) == 0) {
		if (ctl_config(ctl) == NULL && conninfo == NULL)
			return NULL;
	}
	if (conninfo == NULL)
		conninfo = ctl->cfg ? ctl->cfg->conninfo : "";
	/* No timeouts: a long listing or verification is the operator's to stop. */
	options = session_options_for(ctl->cfg ? ctl->cfg->time_zone : "UTC", 0, 0);
	ctl->conn = session_connect(conninfo, options, &err);
	free(options);
	if (ctl->conn == NULL) {
		ctl_error("cannot connect: %s", err);
		free(err);
	}
	return ctl->conn;
}

const struct policy *ctl_policy(struct ctl *ctl, const char *name)
{
	const struct policy *p;
	if (ctl_config(ctl) == NULL)
		return NULL;
	p = config_find_policy(ctl->cfg, name);
	if (p == NULL)
		ctl_error("no policy \"%s\" in %s", name, ctl->config_path);
	return p;
}

bool ctl_policy_sql(struct ctl *ctl, const struct policy *p, struct policy_sql *sql)
{
	struct policy_shape shape;
	char *err = NULL;
	bool ok = policy_prepare(ctl->conn, ctl->cfg, p, &shape, sql, &err);
	if (!ok) {
		ctl_error("policy %s: %s", p->name, err);
		privilege_hint(ctl, shape.sqlstate);
		policy_sql_free(sql);
	}
	free(err);
	policy_shape_free(&shape);
	return ok;
}

bool ctl_policy_rule(struct ctl *ctl, const struct config *cfg, const struct policy *p, bool record,
		     struct policy_sql *sql, struct ctl_rule *out)
{
	struct policy_shape shape;
	struct policy_unapproved u;
	const char *params[POLICY_N_BASE_PARAMS], *why;
	Oid types[POLICY_N_BASE_PARAMS];
	char *err = NULL, *by = NULL;
	PGresult *res;
	bool ok = policy_prepare(ctl->conn, cfg, p, &shape, sql, &err);
	memset(out, 0, sizeof(*out));
	if (!ok) {
		ctl_error("policy %s: %s", p->name, err);
		privilege_hint(ctl, shape.sqlstate);
		free(err);
		goto fail;
	}
	rule_of(&out->rule, cfg, p, &shape);
	if (record) {
		/* The rule taken at an upgrade is the daemon's to record: it is the one that ran, not a preview. */
		rule_state_params(&out->rule, p, params);
		res = PQexecParams(ctl->conn, rule_state_sql, 4, NULL, params, NULL, NULL, 0);
		if (rule_state_parse(res, &out->state) && out->state.upgrade) {
			ctl_error(
				"policy %s: it ran before rule versions were recorded; the daemon records the rule it runs"
				" as the one in force when it next starts, and changes can be approved after that",
				p->name);
			PQclear(res);
			goto fail;
		}
		PQclear(res);
		by = xasprintf("retentionctl %s", ctl->command);
		rule_seen_params(&out->rule, p, by, params);
		res = PQexecParams(ctl->conn, rule_seen_sql, 7, NULL, params, NULL, NULL, 0);
		free(by);
	} else {
		rule_state_params(&out->rule, p, params);
		res = PQexecParams(ctl->conn, rule_state_sql, 4, NULL, params, NULL, NULL, 0);
	}
	if (!rule_state_parse(res, &out->state)) {
		char *context = xasprintf("policy %s: reading its rule's versions", p->name);
		ctl_result_error(ctl, context, res);
		free(context);
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	/*
	 * What the rule would purge that the version in force would not: none if
	 * it is that version, or the rule in force at the upgrade. Counted with
	 * the statements the daemon runs while the rule waits, kept if it does.
	 */
	out->newly_due = 0;
	if (!(out->state.version != 0 && out->state.version == out->state.in_force) && !out->state.upgrade) {
		struct policy_sql guarded;
		struct rule_state waiting = out->state;
		waiting.approved = false;
		if (!policy_sql_build(&guarded, p, &shape, cfg->instance, rule_unapproved(&waiting, &u), &why)) {
			ctl_error("policy %s: %s", p->name, why);
			goto fail;
		}
		policy_params(&guarded, params, types, NULL, 0, false);
		res = PQexecParams(ctl->conn, guarded.newly_due, POLICY_N_BASE_PARAMS, types, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			char *context = xasprintf("policy %s: counting what its rule newly makes due", p->name);
			ctl_result_error(ctl, context, res);
			free(context);
			PQclear(res);
			policy_sql_free(&guarded);
			goto fail;
		}
		out->newly_due = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
		out->waits = !out->state.approved && p->guard_records > 0 && out->newly_due > p->guard_records;
		if (out->waits) {
			policy_sql_free(sql);
			*sql = guarded;
		} else {
			policy_sql_free(&guarded);
		}
	}
	policy_shape_free(&shape);
	return true;
fail:
	policy_sql_free(sql);
	policy_shape_free(&shape);
	rule_free(&out->rule);
	return false;
}

int ctl_policy_params(const struct policy_sql *sql, const char **params, Oid *types, const char *a, const char *b)
{
	const char *extra[2] = {a, b};
	return policy_params(sql, params, types, extra, 2, false);
}

char *ctl_canonical(struct ctl *ctl, const struct policy_sql *sql, const char *statement, const char *value,
		    bool *invalid, bool *one_form)
{
	const char *params[POLICY_N_BASE_PARAMS + 2];
	Oid types[POLICY_N_BASE_PARAMS + 2];
	PGresult *res;
	char *out = NULL;
	*invalid = false;
	ctl_policy_params(sql, params, types, value, NULL);
	res = PQexecParams(ctl->conn, statement, POLICY_N_BASE_PARAMS + 1, types, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		out = xstrdup(PQgetvalue(res, 0, 0));
		if (one_form)
			*one_form = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	} else {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		/* Class 22 (data exception): "abc" for an integer key, say; 23: a domain's check. */
		if (state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0))
			*invalid = true;
		else
			ctl_result_error(ctl, NULL, res);
	}
	PQclear(res);
	return out;
}

char *ctl_audit_forms(struct ctl *ctl, bool pseudonymized, const char *value)
{
	struct config_errors errs = {NULL, 0};
	char *forms[2] = {(char *)value, NULL}, *out;
	if (pseudonymized && !config_read_audit_key(ctl->cfg, &errs)) {
		ctl_error("%s: looking it up needs its pseudonym, made with this key", errs.lines[0]);
		config_errors_clear(&errs);
		return NULL;
	}
	if (pseudonymized)
		forms[1] = audit_stored_value(&ctl->cfg->audit.key, value);
	out = policy_text_array(forms, pseudonymized ? 2 : 1);
	free(forms[1]);
	return out;
}

char *ctl_human_interval(const char *expr)
{
	return xasprintf("(SELECT CASE WHEN s < 60 THEN round(s)::int || ' s'"
			 " WHEN s < 3600 THEN floor(s / 60)::int || ' min'"
			 " WHEN s < 172800 THEN floor(s / 3600)::int || ' h'"
			 " ELSE floor(s / 86400)::int || ' days' END"
			 " FROM (SELECT abs(extract(epoch FROM (%s)))::float8 AS s) x)",
			 expr);
}

char *ctl_human_time(const char *expr, const char *past_word)
{
	char *delta = xasprintf("(%s) - statement_timestamp()", expr);
	char *human = ctl_human_interval(delta);
	/* An infinite time (a clock of -infinity is due at once) has no distance to now. */
	char *out = xasprintf("CASE WHEN (%s) IS NULL THEN NULL WHEN NOT pg_catalog.isfinite((%s)) THEN (%s)::text"
			      " ELSE to_char((%s), 'YYYY-MM-DD HH24:MI:SS OF') || ' ('"
			      " || CASE WHEN (%s) > statement_timestamp() THEN 'in ' || %s"
			      " ELSE %s || ' %s' END || ')' END",
			      expr, expr, expr, expr, expr, human, human, past_word);
	free(delta);
	free(human);
	return out;
}

bool ctl_wants_help(int argc, char **argv, const char *usage)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return true;
		}
	}
	return false;
}

int ctl_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("", fmt, ap);
	va_end(ap);
	fputs(usage, stderr);
	return CTL_USAGE;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'}, {"dbname", required_argument, NULL, 'd'},
		{"format", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
	};
	struct ctl ctl;
	int opt, status = CTL_USAGE;
	const char *command;

	memset(&ctl, 0, sizeof(ctl));
	ctl.config_path = SYSCONFDIR "/retentiond/retentiond.conf";
	ctl.format = CTL_FORMAT_TABLE;
	/* '+' stops at the command so that its own options are left for it. */
	while ((opt = getopt_long(argc, argv, "+c:d:f:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			ctl.config_path = optarg;
			ctl.config_path_given = true;
			break;
		case 'd':
			ctl.conninfo = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "table") == 0) {
				ctl.format = CTL_FORMAT_TABLE;
			} else if (strcmp(optarg, "json") == 0) {
				ctl.format = CTL_FORMAT_JSON;
			} else if (strcmp(optarg, "csv") == 0) {
				ctl.format = CTL_FORMAT_CSV;
			} else {
				ctl_error("--format must be table, json or csv, not \"%s\"", optarg);
				return CTL_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return CTL_OK;
		case 'V':
			printf("retentionctl %s\n", PACKAGE_VERSION);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	command = argv[optind];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(command, commands[i].name) == 0) {
			/* The verb sees itself as argv[0]; optind = 0 restarts getopt for it. */
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			optind = 0;
			ctl.command = commands[i].name;
			status = commands[i].run(&ctl, sub_argc, sub_argv);
			goto done;
		}
	}
	ctl_error("unknown command \"%s\" (retentionctl --help lists them)", command);
done:
	if (ctl.conn)
		PQfinish(ctl.conn);
	config_free(ctl.cfg);
	return status;
}
