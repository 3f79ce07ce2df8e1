/*
 * session.c -- what every connection of the daemon and retentionctl is made
 * with: the configured zone, the timeouts and a pinned search_path, passed
 * as libpq `options` so the server applies them while connecting.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "util.h"

/* A value inside libpq `options`: backslash escapes a space or a backslash. */
static void append_option(char **out, const char *name, const char *value)
{
	size_t len = strlen(*out), need = len + strlen(name) + 2 * strlen(value) + 8;
	char *w;
	*out = xrealloc(*out, need);
	w = *out + len;
	w += sprintf(w, "%s-c %s=", len ? " " : "", name);
	for (const char *v = value; *v; v++) {
		if (*v == ' ' || *v == '\\')
			*w++ = '\\';
		*w++ = *v;
	}
	*w = '\0';
}

char *session_options_for(const char *time_zone, long long statement_timeout_ms, long long lock_timeout_ms)
{
	char *out = xstrdup(""), ms[32];
	append_option(&out, "TimeZone", time_zone);
	snprintf(ms, sizeof(ms), "%lld", statement_timeout_ms);
	append_option(&out, "statement_timeout", ms);
	snprintf(ms, sizeof(ms), "%lld", lock_timeout_ms);
	append_option(&out, "lock_timeout", ms);
	append_option(&out, "search_path", "pg_catalog,pg_temp");
	/* Hold values and keys are typed by people and read here and by the daemon alike. */
	append_option(&out, "DateStyle", "ISO,MDY");
	append_option(&out, "IntervalStyle", "postgres");
	/* Audit payloads are hashed as UTF-8; text arrives in it whatever the database's encoding. */
	append_option(&out, "client_encoding", "UTF8");
	/* Times and key lists travel as text: read back exactly, NULL elements and comparisons as written. */
	append_option(&out, "extra_float_digits", "1");
	append_option(&out, "array_nulls", "on");
	append_option(&out, "transform_null_equals", "off");
	append_option(&out, "timezone_abbreviations", "Default");
	/* Keys and subjects are audited, and pseudonymized, in their text form: bytea's and money's depend on these. */
	append_option(&out, "bytea_output", "hex");
	append_option(&out, "lc_monetary", "C");
	/*
	 * Every statement here is short, and most run with a generic plan whose
	 * estimate a large table inflates past jit_above_cost: compiling them
	 * would cost more than running them (a review saw resyncs of a few
	 * hundred policies take minutes; not measured here).
	 */
	append_option(&out, "jit", "off");
	/*
	 * A row-level security policy is code of the table's owner, and would
	 * run with the caller's role in every statement that reads the table:
	 * with row_security off a table that has one is an error instead.
	 */
	append_option(&out, "row_security", "off");
	/*
	 * A view or foreign table is code of its owner too: a table renamed
	 * away and replaced by a view between two statements would run that
	 * code with the caller's role (a prepared statement is parsed again by
	 * name). The statement fails instead. Needs PostgreSQL 15.8 or later.
	 */
	append_option(&out, "restrict_nonsystem_relation_kind", "view,foreign-table");
	return out;
}

/* In the order of the elements of retention.session_settings() (sql/retention-4-5.sql). */
static const char *const settings_names[] = {"role",
					     "search_path",
					     "TimeZone",
					     "DateStyle",
					     "IntervalStyle",
					     "client_encoding",
					     "statement_timeout",
					     "lock_timeout",
					     "standard_conforming_strings",
					     "row_security",
					     "extra_float_digits",
					     "array_nulls",
					     "transform_null_equals",
					     "timezone_abbreviations",
					     "jit",
					     "synchronous_commit",
					     "idle_in_transaction_session_timeout",
					     "default_transaction_read_only",
					     "plan_cache_mode",
					     "restrict_nonsystem_relation_kind",
					     "bytea_output",
					     "lc_monetary",
					     "LISTEN channels",
					     NULL};

const char *session_settings_changed(const char *baseline, const char *now)
{
	size_t n_base, n_now;
	char **base, **cur;
	const char *changed = NULL;
	if (strcmp(baseline, now) == 0)
		return NULL;
	base = policy_text_array_parse(baseline, &n_base);
	cur = policy_text_array_parse(now, &n_now);
	for (size_t i = 0; changed == NULL && settings_names[i]; i++)
		if (i >= n_base || i >= n_now || strcmp(base[i], cur[i]) != 0)
			changed = settings_names[i];
	policy_text_array_free(base);
	policy_text_array_free(cur);
	/* Texts differ, elements agree: an element became NULL. */
	return changed ? changed : "a session setting";
}

char *session_merged_options(const char *conninfo, const char *session_options, char **err)
{
	char *errmsg = NULL, *out;
	const char *own = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	if (opts == NULL) {
		if (err) {
			*err = xstrdup(errmsg ? errmsg : "invalid connection string");
			(*err)[strcspn(*err, "\n")] = '\0';
		}
		PQfreemem(errmsg);
		return NULL;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "options") == 0 && o->val && *o->val)
			own = o->val;
	/* Later -c settings win: the session's own come last. */
	out = own ? xasprintf("%s %s", own, session_options) : xstrdup(session_options);
	PQconninfoFree(opts);
	return out;
}

char *session_options(const struct config *cfg)
{
	long long statement_ms = 0, lock_ms = 0;
	/* The loader accepts only timeouts that convert. */
	duration_to_ms(&cfg->statement_timeout, &statement_ms);
	duration_to_ms(&cfg->lock_timeout, &lock_ms);
	return session_options_for(cfg->time_zone, statement_ms, lock_ms);
}

char *session_daemon_options(const struct config *cfg)
{
	char *out = session_options(cfg);
	/*
	 * The daemon prepares each of its statements once per session and runs
	 * them at every batch; each is built to do bounded work with a generic
	 * plan (TID scans, index range scans on the clock). With custom plans the
	 * server re-planned the next-wake query at every batch, which cost more
	 * than running it (bench/versus). A trigger's code run in this session
	 * gets generic plans too.
	 */
	append_option(&out, "plan_cache_mode", "force_generic_plan");
	return out;
}

PGconn *session_connect(const char *conninfo, const char *session_options, char **err)
{
	static const char *const keys[] = {"dbname", "options", "fallback_application_name", NULL};
	const char *values[] = {conninfo, NULL, "retentionctl", NULL};
	char *options = session_merged_options(conninfo, session_options, err);
	PGconn *conn;
	if (options == NULL)
		return NULL;
	values[1] = options;
	conn = PQconnectdbParams(keys, values, 1);
	free(options);
	if (PQstatus(conn) != CONNECTION_OK) {
		*err = xstrdup(PQerrorMessage(conn));
		(*err)[strcspn(*err, "\n")] = '\0';
		PQfinish(conn);
		return NULL;
	}
	return conn;
}
