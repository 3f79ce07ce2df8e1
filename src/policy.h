/*
 * policy.h -- the SQL of one policy, shared by the daemon, retentionctl and
 * --check. A policy's table is looked up in the catalog (policy_describe_sql)
 * and its statements are built from what the catalog says: quoted column
 * names, each column's type, and the equality operator of that type, so that
 * keys, subjects, exempt values and holds are compared as the column
 * compares them whatever the session's search_path.
 */
#ifndef RETENTIOND_POLICY_H
#define RETENTIOND_POLICY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Parameters every statement of a policy takes, in this order, sent with the
 * types of policy_sql.types. Statement-specific ones follow from
 * POLICY_PARAM_EXTRA; the purge statement's `set` values come after those,
 * untyped, so the server casts each to its column's type.
 */
enum policy_param {
	POLICY_PARAM_NAME,
	POLICY_PARAM_RETAIN,
	POLICY_PARAM_SLACK,
	POLICY_PARAM_EXEMPT_VALUES,
	POLICY_PARAM_LIMIT, /* rows per batch: the policy's batch, smaller while a failing batch is split */
	POLICY_PARAM_SERVICE,
	POLICY_PARAM_SOURCE,
	POLICY_PARAM_TABLE,
	POLICY_PARAM_ACTION,
	POLICY_PARAM_INSTANCE,
	POLICY_PARAM_SIBLINGS,   /* names of the policies on the same table, this one first: their holds count */
	POLICY_PARAM_SET_VALUES, /* the `set` values (text[]): what tells an anonymized row from one to anonymize */
	POLICY_N_BASE_PARAMS,
};

/* The first statement-specific parameter: the window, key, subject or locked rows. */
#define POLICY_PARAM_EXTRA POLICY_N_BASE_PARAMS

/* Columns of policy_sql.pending, as the daemon's count for the metrics reads it, with the session's settings after. */
enum policy_pending_column {
	PENDING_OVERDUE,
	PENDING_DUE_WITHIN,
	PENDING_NEXT_DUE_AT,
	PENDING_HELD,
	PENDING_QUARANTINED,
	PENDING_REFERENCED, /* due, kept because rows that must stay refer to it: not counted overdue */
	PENDING_OLDEST_OVERDUE_AT,
	PENDING_SETTINGS,
};

/* Columns of policy_sql.explain. */
enum policy_explain_column {
	EXPLAIN_KEY,
	EXPLAIN_CLOCK_AT,
	EXPLAIN_DUE_AT,
	EXPLAIN_EXEMPT,
	EXPLAIN_EXEMPT_VALUE,
	EXPLAIN_IS_DUE,
	EXPLAIN_SUBJECT,
	EXPLAIN_HELD,
	EXPLAIN_ANONYMIZED,       /* it stands anonymized (anonymize policies): nothing left to do */
	EXPLAIN_KEPT_BY,          /* what references the record and must be kept, or NULL */
	EXPLAIN_QUARANTINE_ERROR, /* quarantined, its retry not due: why its purge failed on its own; else NULL */
	EXPLAIN_QUARANTINE_RETRY, /* when it is tried again: NULL for an operator's retry only */
};

/* Columns of policy_sql.lock. */
enum policy_lock_column {
	LOCK_COUNT,
	LOCK_TABLE_OIDS,
	LOCK_TIDS,
	LOCK_KEYS,
};

/* Columns of policy_sql.purge. */
enum policy_purge_column {
	PURGE_PURGED,
	PURGE_HEAD_SEQ, /* the chain's head before the batch: NULL for a chain not started */
	PURGE_HEAD_HASH,
	PURGE_MAX_LATE,
	PURGE_UNPURGED,         /* keys of locked rows the DELETE or UPDATE did not touch (a trigger or a rule) */
	PURGE_CATALOG_CHANGED,  /* the table changed since it was described: nothing was purged */
	PURGE_NOT_TAKEN,        /* keys of anonymised rows whose stored values are not what the UPDATE set */
	PURGE_ANONYMIZED_KEYS,  /* keys the anonymising UPDATE took, for the rewritten check; NULL for a delete */
	PURGE_WERE_QUARANTINED, /* keys purged that retention.quarantine lists (tried again): NULL if none */
	PURGE_LATENESS,         /* float8[]: seconds after due, per record purged (a negative one: an erasure) */
	/* What the audit rows are made of, as parallel arrays in chain order (audit_insert_sql). */
	PURGE_KEYS,
	PURGE_SUBJECTS,
	PURGE_CLOCK_ATS,
	PURGE_DUE_ATS,
	PURGE_PURGED_AT,
	PURGE_TXID,
	PURGE_N_COLUMNS,
};

/* One column as the catalog describes it. */
struct policy_column {
	char *quoted; /* the name as an SQL identifier */
	char *type; /* format_type(), typmod included, of a domain's base type: what values given as text are cast to */
	char *eq;   /* "OPERATOR(schema.=)": the type's own equality, NULL if it has none */
	int typmod; /* the type's modifier (char(n), bit(n)), -1 if none: casts inside functions need it */
};

/*
 * A record's key: its column, or the columns of a composite key in
 * configuration order, whose record_key is ROW(a, b)::text.
 */
struct policy_key {
	struct policy_column *columns;
	size_t n;
	char *type; /* retention.quarantine.key_type: the column's type, or "(type, type)" */
};

/* A policy on the same table (this one included): its holds protect the table's records. */
struct policy_sibling {
	char *name;
	struct policy_key key;
	struct policy_column subject; /* quoted NULL when it names no subject */
};

/*
 * A path of foreign keys by which deleting a record would reach rows that
 * must stay: rows a policy governs (reached directly or through ON DELETE
 * CASCADE of tables no policy governs), or a key that restricts the delete.
 * A record so referenced is kept until those rows are gone.
 */
struct policy_guard {
	char *sql;   /* NOT EXISTS (...) over row t of the policy's table */
	char *what;  /* for people: "referenced by shop.lines (foreign key lines_order_fk)" */
	char *table; /* the table whose rows keep the record, as the catalog spells it */
};

/* How the clock column's values read as points in time. */
enum policy_clock_kind {
	POLICY_CLOCK_TIMESTAMPTZ,
	POLICY_CLOCK_TIMESTAMP, /* in database.time_zone */
	POLICY_CLOCK_DATE,      /* its midnight, in database.time_zone */
	POLICY_CLOCK_EPOCH,     /* an integer of policies.clock_unit since 1970-01-01 00:00 UTC */
};

/* What policies.retain_column holds, as the catalog says. */
enum policy_retain_kind {
	POLICY_RETAIN_NONE,     /* no retain_column, or one of a type that cannot hold a duration */
	POLICY_RETAIN_INTERVAL, /* an interval, added to the clock as retain is */
	POLICY_RETAIN_COUNT,    /* an integer of clock_unit: that much elapsed time after an integer clock */
};

/* What the catalog says about a policy's table, from policy_describe_sql. */
struct policy_shape {
	long long oid;
	char *table;       /* schema-qualified and quoted, as the catalog spells it */
	char *watched;     /* the oids whose foreign keys, partitions and security the statements depend on */
	char *fingerprint; /* what they were when described (FINGERPRINT in policy.c) */
	struct policy_key key;
	struct policy_column clock, subject, exempt, retain;
	enum policy_retain_kind retain_kind;
	char **clock_columns; /* quoted: the clock is the first of them that is not NULL */
	size_t n_clock_columns;
	enum policy_clock_kind clock_kind;
	struct policy_column *set_null; /* the anonymized columns, in configuration order */
	size_t n_set_null;
	struct policy_column *set;
	size_t n_set;
	struct policy_sibling *siblings;
	size_t n_siblings;
	struct policy_guard *guards;
	size_t n_guards;
	char **errors; /* problems that keep the policy from purging safely */
	size_t n_errors;
	char **warnings;
	size_t n_warnings;
	char *unsafe;     /* why no statement of the policy may run at all (its errors say it too), or NULL */
	char sqlstate[6]; /* policy_prepare: the SQLSTATE of the statement that failed, "" if none did */
};

/*
 * A rule that waits for approval (rule.h): its statements purge only what
 * the version in force also makes due, read from retention.rule_versions
 * row IN_FORCE (its retain, and its exempt values if IN_FORCE_EXEMPTS);
 * IN_FORCE 0 when that cannot be told row by row (a new policy, another
 * table or clock): nothing.
 */
struct policy_unapproved {
	long long in_force;
	bool in_force_exempts;
};

/* Records due this recently are purged on time however purging is throttled (throttle.h). */
#define POLICY_FRESH_WINDOW "1 minute"
/*
 * How far ahead the guard counts what a rule newly makes due, besides what
 * it makes due now: records that would fall due a few seconds after the
 * count, and that the version in force keeps longer, are as many at once.
 */
#define POLICY_GUARD_HORIZON "1 day"

/* A policy's SQL, built once from its shape. */
struct policy_sql {
	char *table;    /* as in policy_shape */
	char *key_of;   /* policy_key_of: what holds placed under this key say of it */
	char *validate; /* makes the lock row; fails unless exempt and `set` values fit their columns; -> ..., settings */
	char *next_wake;         /* -> at, seconds_left (NULLs if nothing is due nor a hold ends), false, settings */
	char *next_wake_checked; /* the same, and whether the catalog changed since the description ($13 ask) */
	char *begin; /* simple query: BEGIN; -> whether it holds the lock of every policy of the table, audit writes */
	char *lock;  /* enum policy_lock_column: locks the next batch of due records */
	char *lock_fresh;        /* the same, of the records that fell due within POLICY_FRESH_WINDOW only */
	char *purge;             /* enum policy_purge_column: purges the locked rows ($13 oids, $14 tids) */
	char *rewritten;         /* anonymize only: which of the keys $13 no longer stand anonymized */
	char *pending;           /* enum policy_pending_column ($13 window) */
	char *quarantine_stale;  /* drops quarantine rows whose record is gone ($1 policy only); -> how many */
	char *pending_records;   /* -> policy, key, clock_at, due_at, held ($13 window, $14 limit) */
	char *explain;           /* enum policy_explain_column ($13 key); no row if there is no such record */
	char *explain_holds;     /* -> JSON array of the active holds that protect record $13 */
	char *subject_records;   /* -> how many records of data subject $13 exist (not yet anonymized) */
	char *key_records;       /* -> the same for key $13: 0 or 1 */
	char *canonical_key;     /* -> $13 read as the key column's type, as text; whether equal values have no other */
	char *canonical_subject; /* the same for the subject column (NULL without one) */
	char *erase_lock; /* as lock, for the records of the subjects $13 (text[]) of open request $14, due or not */
	char *erase_left; /* -> erasable, kept, why, failed, settings: the subjects' records after an erasure ($13) */
	char *access;     /* -> the policy and the subjects' records, as JSON ($13 subjects, $14 retain) */
	/*
	 * Unapproved only: -> how many records the rule makes due now that the
	 * one in force does not, or within POLICY_GUARD_HORIZON that it keeps
	 * longer; held, referenced and quarantined ones too: they go once free.
	 */
	char *newly_due;
	bool unapproved;   /* built with a policy_unapproved */
	char **guard_what; /* policy_guard.what, for explain */
	size_t n_guards;
	char *params_storage[POLICY_N_BASE_PARAMS];
	const char **params;     /* the base params */
	Oid *types;              /* their types */
	int n_params;            /* POLICY_N_BASE_PARAMS */
	const char **set_values; /* the purge's `set` values, after its two extra params */
	int n_set_values;
};

/*
 * A statement's parameters: the base ones, then EXTRA (untyped: the
 * statement casts them) and, with WITH_SET_VALUES, the `set` values. PARAMS
 * and TYPES need room for POLICY_N_BASE_PARAMS + N_EXTRA + n_set_values.
 * Returns how many were filled.
 */
int policy_params(const struct policy_sql *sql, const char **params, Oid *types, const char *const *extra, int n_extra,
		  bool with_set_values);

/* Looks a policy's table up in the catalog: $1 schema or NULL, $2 relation -> oid, qualified name. */
extern const char policy_resolve_table_sql[];
/* Rows (kind, c1 .. c7) describing a policy's table; parameters from policy_describe_params. */
#define POLICY_DESCRIBE_N_PARAMS 17
extern const char policy_describe_sql[];

/* The parameters of policy_resolve_table_sql for P; free both after. False if the name is invalid. */
bool policy_resolve_params(const struct policy *p, char **schema, char **relname);
/* The parameters of policy_describe_sql for P of CFG on table OID; returns their number. */
int policy_describe_params(const struct config *cfg, const struct policy *p, long long oid, char **params);
void policy_params_free(char **params, int n);

/* Reads a policy_describe_sql result for a table resolved as OID / TABLE. */
void policy_shape_parse(struct policy_shape *shape, const PGresult *res, long long oid, const char *table);
void policy_shape_free(struct policy_shape *shape);

/*
 * Builds every statement of P from SHAPE. INSTANCE names this daemon in
 * audit rows. False (with *WHY) if the shape lacks what a statement needs:
 * a column that does not exist, a type without equality.
 */
bool policy_sql_build(struct policy_sql *sql, const struct policy *p, const struct policy_shape *shape,
		      const char *instance, const struct policy_unapproved *unapproved, const char **why);
void policy_sql_free(struct policy_sql *sql);

/*
 * Resolve, describe and build, synchronously on CONN (retentionctl,
 * --check, tests). Returns false with *ERR (malloc'd, one line) if the table
 * is missing or the statements cannot be built; SHAPE keeps what was found.
 */
bool policy_prepare(PGconn *conn, const struct config *cfg, const struct policy *p, struct policy_shape *shape,
		    struct policy_sql *sql, char **err);

/*
 * retention.quarantine.key_of of the records of a policy on SHAPE: its
 * table, a dot, its quoted key column, or its key columns in parentheses.
 */
char *policy_key_of(const struct policy_shape *shape);

/* The extra interval the index range needs so calendar arithmetic never drops a due row. */
void policy_slack(const struct duration *retain, bool clock_without_zone, char *buf, size_t size);
/* Whether the clock is read in the session's zone (database.time_zone): a timestamp or a date. */
bool policy_clock_without_zone(const struct policy_shape *shape);

/*
 * The VALUES of a request's identities (parallel to TYPES, N of them) that
 * P's subject column holds, those whose type is P's identity, as a text[]
 * literal; NULL if none. The daemon and retentionctl pick a policy's part so.
 */
char *policy_identity_values(const struct policy *p, char *const *types, char *const *values, size_t n);

/* A PostgreSQL array literal of VALUES, every element quoted; a NULL pointer is SQL NULL. */
char *policy_text_array(char *const *values, size_t n);
/* The non-NULL elements of a one-dimensional array as PostgreSQL prints it ("{a,\"b c\"}"); NULL-terminated. */
char **policy_text_array_parse(const char *literal, size_t *n);
/* Every element, an SQL NULL as a NULL pointer: *N of them (free with policy_text_array_free_n). */
char **policy_text_array_parse_all(const char *literal, size_t *n);
void policy_text_array_free_n(char **values, size_t n);
void policy_text_array_free(char **values);

#endif
