#ifndef RETENTIOND_POLICY_H
#define RETENTIOND_POLICY_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "config.h"

/*
 * Parameters every statement of a policy takes, in this order, sent with the
 * types of policy_sql.types. The anonymize UPDATE takes the `set` values
 * after them, untyped, so the server casts each to its column's type.
 */
enum policy_param {
	POLICY_PARAM_NAME,
	POLICY_PARAM_RETAIN,
	POLICY_PARAM_SLACK,
	POLICY_PARAM_EXEMPT_VALUES,
	POLICY_PARAM_BATCH,
	POLICY_PARAM_SERVICE,
	POLICY_PARAM_SOURCE,
	POLICY_PARAM_TABLE,
	POLICY_PARAM_ACTION,
	POLICY_PARAM_INSTANCE,
	POLICY_N_BASE_PARAMS,
};


/* Extra parameters of the pending statements, after the base ones. */
#define POLICY_PARAM_WINDOW POLICY_N_BASE_PARAMS
#define POLICY_PARAM_LIMIT (POLICY_N_BASE_PARAMS + 1)
#define POLICY_PARAM_KEY POLICY_N_BASE_PARAMS

/* Columns of policy_sql.explain. */
enum policy_explain_column {
	EXPLAIN_KEY,
	EXPLAIN_CLOCK_AT,
	EXPLAIN_DUE_AT,
	EXPLAIN_EXEMPT,
	EXPLAIN_EXEMPT_VALUE,
	EXPLAIN_IS_DUE,
	EXPLAIN_SUBJECT,
};

/* A policy's SQL, built once from quoted identifiers after its table is resolved. */
struct policy_sql {
	char *table;	   /* schema-qualified and quoted, as the catalog spells it */
	char *next_wake;   /* -> at, seconds_left: next due record or hold expiry; NULLs if neither */
	char *purge;	   /* -> purged, head_seq, head_hash, max_late_seconds */
	char *pending;	   /* -> overdue, due_within, next_due_at, held ($11 window) */
	char *pending_records; /* -> policy, key, clock_at, due_at, held ($11 window, $12 limit) */
	char *explain;	   /* -> enum policy_explain_column ($11 key); no row if there is no such record */
	char *subject_exists; /* -> one row if a record of data subject $11 exists */
	char *canonical_key;  /* -> $11 read as the key column's type, as text: what holds compare with */
	char *canonical_subject; /* the same for the subject column (NULL without one) */
	char *params_storage[POLICY_N_BASE_PARAMS];
	const char **params; /* base params, then the set values */
	Oid *types;	     /* the base params' types, then 0 (inferred) for the set values */
	int n_params;	     /* all of them: what the purge statement takes */
};

/* Looks a policy's table up in the catalog: $1 schema or NULL, $2 relation -> oid, qualified name. */
extern const char policy_resolve_table_sql[];
/* Problems with a policy against the live catalog: -> severity ('error'|'warning'), message. */
extern const char policy_catalog_check_sql[];

/*
 * Builds every statement of P for TABLE (as returned by policy_resolve_table_sql),
 * quoting column names with CONN. INSTANCE names this daemon in audit rows.
 */
bool policy_sql_build(struct policy_sql *sql, const struct policy *p, const char *table,
		      const char *instance, PGconn *conn);
void policy_sql_free(struct policy_sql *sql);

/* The extra interval the index range needs so calendar arithmetic never drops a due row. */
void policy_slack(const struct duration *retain, char *buf, size_t size);

/* A PostgreSQL array literal of VALUES, every element quoted; a NULL pointer is SQL NULL. */
char *policy_text_array(char *const *values, size_t n);

/* The parameters for policy_catalog_check_sql, built from P; free with policy_check_params_free. */
int policy_check_params(const struct policy *p, long long table_oid, char **params);

#endif
