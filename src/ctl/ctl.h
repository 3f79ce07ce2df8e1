/*
 * ctl.h -- what retentionctl's commands share: options, the connection, output.
 */
#ifndef RETENTIONCTL_CTL_H
#define RETENTIONCTL_CTL_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "config.h"
#include "policy.h"
#include "rule.h"
#include "schema.h"

enum ctl_exit {
	CTL_OK = 0,
	CTL_ERROR = 1,
	CTL_USAGE = 2,
	CTL_VERIFY_FAILED = 3,
};

enum ctl_format {
	CTL_FORMAT_TABLE,
	CTL_FORMAT_JSON,
	CTL_FORMAT_CSV,
};

struct ctl {
	const char *command; /* the command running, as typed */
	const char *config_path;
	bool config_path_given;
	const char *conninfo;
	enum ctl_format format;
	struct config *cfg;
	PGconn *conn;
};

/* Loads the configuration (once); prints the problems and returns NULL if it is unusable. */
struct config *ctl_config(struct ctl *ctl);
/*
 * Connects (once) to -d CONNINFO, else the configuration's, else libpq's
 * defaults, in the configuration's time zone (UTC without one) and with
 * search_path pinned to pg_catalog.
 */
PGconn *ctl_connect(struct ctl *ctl);

/* Prints "retentionctl: MESSAGE" on stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for what is worth knowing but does not make the command fail. */
void ctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * Prints the server's error in RES, after CONTEXT (may be NULL); a missing
 * privilege also gets a line naming the role and what prints the grants.
 */
void ctl_result_error(const struct ctl *ctl, const char *context, const PGresult *res);

/*
 * Printing results. QUERY's column names are the JSON and CSV field names;
 * TABLE_QUERY (NULL: QUERY) is what people see in table format, e.g. with
 * relative times. Parameters are text; TYPES may be NULL.
 */
struct ctl_stream {
	struct ctl *ctl;
	size_t rows;
	bool header_done;
	bool ok;
};
void ctl_stream_begin(struct ctl_stream *st, struct ctl *ctl);
/* One more query's rows, appended to the same JSON array or CSV. */
void ctl_stream_query(struct ctl_stream *st, const char *query, const char *table_query, int n_params, const Oid *types,
		      const char *const *params);
int ctl_stream_end(struct ctl_stream *st);
int ctl_print_query(struct ctl *ctl, const char *query, const char *table_query, int n_params, const Oid *types,
		    const char *const *params);
/* A one-row result as a JSON object (not an array), or one field per line for people. */
int ctl_print_object(struct ctl *ctl, const char *query, const char *table_query, int n_params, const Oid *types,
		     const char *const *params);

/* A column of ctl_print_rows: BARE values (numbers, booleans) are written unquoted in JSON. */
struct ctl_field {
	const char *name;
	bool bare;
};
/*
 * Prints NT rows of NF fields held in memory (VALUES row by row, NULL for
 * null), in the chosen format, as ctl_print_query would print them: for
 * reports made without a database.
 */
int ctl_print_rows(struct ctl *ctl, const struct ctl_field *fields, int nf, char *const *values, size_t nt);

/* The configured policy NAME, or NULL after saying it is unknown. */
const struct policy *ctl_policy(struct ctl *ctl, const char *name);
/* Resolves P's table in the catalog and builds its SQL (the daemon's); false after an error message. */
bool ctl_policy_sql(struct ctl *ctl, const struct policy *p, struct policy_sql *sql);
/* A policy's rule, its versions' state, and what it would newly purge. */
struct ctl_rule {
	struct rule rule;
	struct rule_state state;
	long long newly_due; /* what it makes due that the version in force does not (policy_sql.newly_due) */
	bool waits;          /* not approved, and more of them than guard_records: the daemon blocks the policy */
};
/*
 * As ctl_policy_sql, for P of CFG, with P's rule looked up (with RECORD,
 * recorded as a version): SQL is built as the daemon runs it, limited to
 * what the version in force makes due while the rule waits for approval (a
 * rule within guard_records does not: the daemon enforces it unapproved).
 * False after an error message; free OUT->rule with rule_free.
 */
bool ctl_policy_rule(struct ctl *ctl, const struct config *cfg, const struct policy *p, bool record,
		     struct policy_sql *sql, struct ctl_rule *out);
/* A policy statement's parameters: the base ones, then A and B (untyped, for $14 and $15); returns their count. */
int ctl_policy_params(const struct policy_sql *sql, const char **params, Oid *types, const char *a, const char *b);
/*
 * VALUE as the column of STATEMENT (policy_sql.canonical_key or
 * canonical_subject) spells it, malloc'd. NULL with *INVALID set if VALUE is
 * not of the column's type; NULL after an error message otherwise. With
 * ONE_FORM, whether no value equal to it is written otherwise in that type.
 */
char *ctl_canonical(struct ctl *ctl, const struct policy_sql *sql, const char *statement, const char *value,
		    bool *invalid, bool *one_form);
/*
 * The forms in which the trail may store VALUE, a canonical key or subject,
 * as an array literal for "= ANY": VALUE in clear (rows written without
 * pseudonyms, before an upgrade) and, if the configuration pseudonymizes
 * it, its pseudonym. NULL after a one-line error if the key file cannot be
 * read.
 */
char *ctl_audit_forms(struct ctl *ctl, bool pseudonymized, const char *value);

/* ctl_warn's format for a lookup in a type whose equal values can be written apart: policy, column, value. */
#define LOOKUP_AS_WRITTEN                                                                                              \
	"policy %s: values equal to %s %s in its type may be written otherwise (numeric 7.50 for 7.5, citext ALICE"    \
	" for alice): the audit trail keeps each as the record had it, and only records stored as written are found"
/* An SQL expression showing timestamptz EXPR for people, with its offset: "2026-11-26 15:20:00 +01 (in 14 min)". */
char *ctl_human_time(const char *expr, const char *past_word);
/* An SQL expression for an interval EXPR in people's units: "3 h", "14 min". */
char *ctl_human_interval(const char *expr);

/* Shared option handling: true if ARGV asks for help (then USAGE is printed). */
bool ctl_wants_help(int argc, char **argv, const char *usage);
int ctl_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_migrate(struct ctl *ctl, int argc, char **argv);
int cmd_policies(struct ctl *ctl, int argc, char **argv);
int cmd_pending(struct ctl *ctl, int argc, char **argv);
int cmd_approve(struct ctl *ctl, int argc, char **argv);
int cmd_explain(struct ctl *ctl, int argc, char **argv);
/* RECORD, a row of policy_sql.explain, is due, its clock started, and nothing keeps it: the next batch takes it. */
bool ctl_explained_record_goes(const PGresult *record);
int cmd_audit(struct ctl *ctl, int argc, char **argv);
int cmd_hold(struct ctl *ctl, int argc, char **argv);
int cmd_quarantine(struct ctl *ctl, int argc, char **argv);
int cmd_request(struct ctl *ctl, int argc, char **argv);
int cmd_status(struct ctl *ctl, int argc, char **argv);
int cmd_grants(struct ctl *ctl, int argc, char **argv);

#endif
