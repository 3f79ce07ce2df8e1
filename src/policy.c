/*
 * The SQL of one policy. Identifiers come from the configuration and are
 * quoted with PQescapeIdentifier; the table's name comes from the catalog
 * already quoted; every value is a parameter. "Due" is written once here and
 * used by the daemon's purge and next-due queries and by retentionctl.
 */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char policy_resolve_table_sql[] =
	"SELECT c.oid::bigint, format('%I.%I', n.nspname, c.relname)"
	"  FROM pg_catalog.pg_class c"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	" WHERE c.relname = $2"
	"   AND c.relkind IN ('r', 'p')"
	"   AND CASE WHEN $1::text IS NULL THEN pg_catalog.pg_table_is_visible(c.oid)"
	"            ELSE n.nspname = $1 END";

const char policy_catalog_check_sql[] =
	"WITH cols(role, name) AS ("
	"    VALUES ('key', $2::text), ('clock', $3::text), ('subject', $4::text),"
	"           ('exempt.column', $5::text)"
	"    UNION ALL SELECT 'anonymized', unnest($6::text[])"
	"), found AS ("
	"    SELECT c.role, c.name, a.attnum, a.atttypid"
	"      FROM cols c"
	"      LEFT JOIN pg_catalog.pg_attribute a"
	"        ON a.attrelid = $1::oid AND a.attname = c.name AND a.attnum > 0 AND NOT a.attisdropped"
	"     WHERE c.name IS NOT NULL"
	")"
	" SELECT 'error', format('%s column %s does not exist', role, quote_ident(name))"
	"   FROM found WHERE attnum IS NULL"
	" UNION ALL"
	" SELECT 'error', format('clock column %s is %s, not timestamp with time zone',"
	"                        quote_ident(name), format_type(atttypid, NULL))"
	"   FROM found WHERE role = 'clock' AND attnum IS NOT NULL"
	"    AND atttypid NOT IN ('timestamptz'::regtype, 'timestamp'::regtype)"
	" UNION ALL"
	" SELECT 'warning', format('clock column %s is timestamp without time zone: read in database.time_zone',"
	"                          quote_ident(name))"
	"   FROM found WHERE role = 'clock' AND atttypid = 'timestamp'::regtype"
	" UNION ALL"
	" SELECT 'error', format('key column %s may be NULL: a record needs a key (ALTER COLUMN ... SET NOT NULL)',"
	"                        quote_ident(name))"
	"   FROM found f WHERE role = 'key' AND attnum IS NOT NULL"
	"    AND NOT (SELECT attnotnull FROM pg_catalog.pg_attribute WHERE attrelid = $1::oid AND attnum = f.attnum)"
	" UNION ALL"
	" SELECT 'warning', 'the table has inheritance children: their rows are purged too, and the key is not"
	" unique across them'"
	"  WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
	"                 WHERE i.inhparent = $1::oid AND NOT c.relispartition)"
	" UNION ALL"
	" SELECT 'error', format('key column %s has no unique index or primary key of its own', quote_ident(name))"
	"   FROM found f WHERE role = 'key' AND attnum IS NOT NULL AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i"
	"        WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL"
	"          AND i.indnkeyatts = 1 AND i.indkey[0] = f.attnum)"
	" UNION ALL"
	" SELECT 'warning', format('no index leads with clock column %s: every due query scans the table',"
	"                          quote_ident(name))"
	"   FROM found f WHERE role = 'clock' AND attnum IS NOT NULL AND NOT EXISTS ("
	"       SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = $1::oid AND i.indkey[0] = f.attnum)"
	" UNION ALL"
	" SELECT 'error', format('role %s lacks %s on the table', quote_ident(current_user), priv)"
	"   FROM unnest(CASE WHEN $7 = 'anonymize' THEN ARRAY['SELECT', 'UPDATE']"
	"                    ELSE ARRAY['SELECT', 'DELETE'] END) AS priv"
	"  WHERE NOT has_table_privilege($1::oid, priv)"
	/* FOR UPDATE SKIP LOCKED needs UPDATE on at least one column. */
	" UNION ALL"
	" SELECT 'error', format('role %s lacks UPDATE on any column of the table (the purge locks rows:"
	" GRANT UPDATE (%s))', quote_ident(current_user), quote_ident($2))"
	"  WHERE $7 = 'delete' AND NOT has_any_column_privilege($1::oid, 'UPDATE')"
	" UNION ALL"
	" SELECT 'error', format('role %s lacks USAGE on schema %s', quote_ident(current_user),"
	"                        quote_ident(n.nspname))"
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"  WHERE c.oid = $1::oid AND NOT has_schema_privilege(n.oid, 'USAGE')"
	" UNION ALL"
	" SELECT 'error', 'schema retention is not installed: run retentionctl migrate'"
	"  WHERE to_regclass('retention.audit_log') IS NULL"
	" UNION ALL"
	" SELECT 'error', format('role %s may not INSERT into retention.audit_log', quote_ident(current_user))"
	"  WHERE to_regclass('retention.audit_log') IS NOT NULL"
	"    AND NOT has_table_privilege('retention.audit_log', 'INSERT')";

/* pg_type OIDs of the base parameters, in enum policy_param order. */
static const Oid base_param_types[POLICY_N_BASE_PARAMS] = {
	[POLICY_PARAM_NAME] = 25,	   /* text */
	[POLICY_PARAM_RETAIN] = 1186,	   /* interval */
	[POLICY_PARAM_SLACK] = 1186,	   /* interval */
	[POLICY_PARAM_EXEMPT_VALUES] = 1009, /* text[] */
	[POLICY_PARAM_BATCH] = 23,	   /* integer */
	[POLICY_PARAM_SERVICE] = 25,
	[POLICY_PARAM_SOURCE] = 25,
	[POLICY_PARAM_TABLE] = 25,
	[POLICY_PARAM_ACTION] = 25,
	[POLICY_PARAM_INSTANCE] = 25,
};

void policy_slack(const struct duration *retain, char *buf, size_t size)
{
	/*
	 * clock + retain <= now is what "due" means, but only clock <= bound can
	 * use the clock index. Month arithmetic clamps to the month's end (up to
	 * 3 days) and a calendar day can be 23 or 25 hours, so the index bound
	 * is widened by that much and the exact test is applied on top.
	 */
	if (retain->months != 0)
		snprintf(buf, size, "4 days");
	else if (retain->days != 0)
		snprintf(buf, size, "3 hours");
	else
		snprintf(buf, size, "0 seconds");
}

char *policy_text_array(char *const *values, size_t n)
{
	size_t cap = 3;
	char *out, *w;
	for (size_t i = 0; i < n; i++)
		cap += (values[i] ? strlen(values[i]) * 2 : 4) + 3;
	out = w = xmalloc(cap);
	*w++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*w++ = ',';
		if (values[i] == NULL) {
			memcpy(w, "NULL", 4);
			w += 4;
			continue;
		}
		*w++ = '"';
		for (const char *p = values[i]; *p; p++) {
			if (*p == '"' || *p == '\\')
				*w++ = '\\';
			*w++ = *p;
		}
		*w++ = '"';
	}
	*w++ = '}';
	*w = '\0';
	return out;
}

static char *quote_ident(PGconn *conn, const char *name)
{
	char *q = PQescapeIdentifier(conn, name, strlen(name));
	char *out;
	if (q == NULL)
		return NULL;
	out = xstrdup(q);
	PQfreemem(q);
	return out;
}

/* Appends to a growing string. */
struct sbuf {
	char *s;
	size_t len;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *piece;
	size_t n;
	va_start(ap, fmt);
	piece = xvasprintf(fmt, ap);
	va_end(ap);
	n = strlen(piece);
	b->s = xrealloc(b->s, b->len + n + 1);
	memcpy(b->s + b->len, piece, n + 1);
	b->len += n;
	free(piece);
}

struct quoted {
	char *key, *clock, *subject, *exempt;
};

/* Rows of the policy's table T that are due by HORIZON (an SQL expression). */
static void sb_due_by(struct sbuf *b, const struct quoted *q, const char *horizon)
{
	sb_add(b,
	       "t.%s IS NOT NULL"
	       " AND t.%s <= (%s) - $2::interval + $3::interval"
	       " AND t.%s + $2::interval <= (%s)",
	       q->clock, q->clock, horizon, q->clock, horizon);
}

static void sb_not_exempt(struct sbuf *b, const struct quoted *q)
{
	if (q->exempt)
		sb_add(b, " AND (t.%s IS NULL OR t.%s::text <> ALL ($4::text[]))", q->exempt, q->exempt);
}

/*
 * Whether row t is under an active hold. Uncorrelated IN (SELECT ...) lets
 * the planner hash the policy's active holds once per statement instead of
 * probing the holds table for every row scanned. The subqueries return no
 * NULLs and coalesce covers a NULL subject, so the result is never NULL and
 * NOT (...) is safe.
 */
static void sb_held(struct sbuf *b, const struct quoted *q)
{
	static const char active[] = "h.policy = $1 AND h.released_at IS NULL"
				     " AND (h.until IS NULL OR h.until > statement_timestamp())";
	sb_add(b, "(t.%s::text IN (SELECT h.record_key FROM retention.holds h WHERE %s AND h.record_key IS NOT NULL)",
	       q->key, active);
	if (q->subject)
		sb_add(b, " OR coalesce(t.%s::text IN (SELECT h.subject FROM retention.holds h WHERE %s"
			  " AND h.subject IS NOT NULL), false)",
		       q->subject, active);
	sb_add(b, ")");
}

static char *build_next_due(const struct quoted *q, const char *table)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b,
	       "SELECT t.%s + $2::interval AS due_at,"
	       " extract(epoch FROM (t.%s + $2::interval) - statement_timestamp())::float8 AS seconds_left"
	       " FROM %s t WHERE t.%s IS NOT NULL",
	       q->clock, q->clock, table, q->clock);
	sb_not_exempt(&b, q);
	sb_add(&b, " AND NOT ");
	sb_held(&b, q);
	sb_add(&b, " ORDER BY t.%s LIMIT 1", q->clock);
	return b.s;
}

/*
 * When the daemon should next look: the next eligible record's due time, or
 * the moment a hold on this policy expires (its record may then be due).
 */
static char *build_next_wake(const struct quoted *q, const char *table)
{
	char *next_due = build_next_due(q, table);
	char *sql = xasprintf("SELECT min(at), extract(epoch FROM min(at) - statement_timestamp())::float8 FROM ("
			      "(SELECT d.due_at AS at FROM (%s) d)"
			      " UNION ALL "
			      "(SELECT h.until FROM retention.holds h WHERE h.policy = $1 AND h.released_at IS NULL"
			      " AND h.until > statement_timestamp() ORDER BY h.until LIMIT 1)) w",
			      next_due);
	free(next_due);
	return sql;
}

static char *build_purge(const struct policy *p, const struct quoted *q, const char *table,
			 PGconn *conn)
{
	struct sbuf b = {NULL, 0};
	const char *subject = q->subject ? q->subject : NULL;

	sb_add(&b,
	       "WITH head AS ("
	       "SELECT seq, hash FROM retention.chain_heads WHERE policy = $1"
	       "), due AS MATERIALIZED ("
	       "SELECT t.tableoid AS toid, t.ctid AS tid, t.%s::text AS record_key, t.%s AS clock_at,"
	       " %s%s::text AS subject FROM %s t WHERE t.%s IS NOT NULL AND ",
	       q->key, q->clock, subject ? "t." : "", subject ? subject : "NULL", table, q->key);
	sb_due_by(&b, q, "statement_timestamp()");
	sb_not_exempt(&b, q);
	sb_add(&b, " AND NOT ");
	sb_held(&b, q);
	sb_add(&b, " ORDER BY t.%s LIMIT $5::integer FOR UPDATE OF t SKIP LOCKED), purged AS (", q->clock);

	if (p->action == POLICY_ACTION_DELETE) {
		sb_add(&b, "DELETE FROM %s t USING due", table);
	} else {
		sb_add(&b, "UPDATE %s t SET ", table);
		for (size_t i = 0; i < p->n_set_null; i++) {
			char *c = quote_ident(conn, p->set_null[i]);
			sb_add(&b, "%s = NULL, ", c);
			free(c);
		}
		for (size_t i = 0; i < p->n_set; i++) {
			char *c = quote_ident(conn, p->set[i].column);
			sb_add(&b, "%s = $%zu, ", c, POLICY_N_BASE_PARAMS + i + 1);
			free(c);
		}
		/* A cleared clock keeps the record from being anonymised twice. */
		sb_add(&b, "%s = NULL FROM due", q->clock);
	}
	/*
	 * The rows locked above, by their physical address: ctid = ANY (ARRAY(...))
	 * is a TID scan (a join alone may scan the table), and unlike the key it
	 * cannot also match a child table's row or miss a row whose key is NULL.
	 * tableoid tells partitions apart. Everything audited comes from `due`:
	 * an anonymising UPDATE returns the new values, the audit wants the old.
	 */
	sb_add(&b,
	       " WHERE t.ctid = ANY (ARRAY(SELECT tid FROM due)) AND t.tableoid = due.toid AND t.ctid = due.tid"
	       " RETURNING due.record_key, due.subject, due.clock_at"
	       "), numbered AS ("
	       "SELECT p.*, p.clock_at + $2::interval AS due_at,"
	       " coalesce((SELECT seq FROM head), 0)"
	       " + row_number() OVER (ORDER BY p.clock_at, p.record_key) AS seq"
	       " FROM purged p"
	       "), payloads AS ("
	       "SELECT n.*, retention.audit_payload($1, n.seq, $6, $7, $8, n.record_key, n.subject,"
	       " n.clock_at, n.due_at, statement_timestamp(), $9, $10, txid_current()) AS payload"
	       " FROM numbered n"
	       "), chained AS ("
	       "SELECT c.*, retention.chain(coalesce((SELECT hash FROM head), retention.genesis_hash()),"
	       " c.payload) OVER (ORDER BY c.seq ROWS UNBOUNDED PRECEDING) AS hash"
	       " FROM payloads c"
	       "), linked AS ("
	       "SELECT c.*, coalesce(lag(c.hash) OVER (ORDER BY c.seq), (SELECT hash FROM head),"
	       " retention.genesis_hash()) AS prev_hash"
	       " FROM chained c"
	       "), audited AS ("
	       "INSERT INTO retention.audit_log (policy, seq, service, source, table_name, record_key,"
	       " subject, clock_at, due_at, purged_at, action, instance, txid, prev_hash, hash)"
	       " SELECT $1, seq, $6, $7, $8, record_key, subject, clock_at, due_at,"
	       " statement_timestamp(), $9, $10, txid_current(), prev_hash, hash FROM linked"
	       "), moved AS ("
	       "INSERT INTO retention.chain_heads (policy, seq, hash, updated_at)"
	       " SELECT $1, seq, hash, statement_timestamp() FROM linked ORDER BY seq DESC LIMIT 1"
	       " ON CONFLICT (policy) DO UPDATE"
	       " SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at"
	       ")"
	       " SELECT count(*)::bigint AS purged, max(seq) AS head_seq,"
	       " encode((array_agg(hash ORDER BY seq DESC))[1], 'hex') AS head_hash,"
	       " coalesce(extract(epoch FROM max(statement_timestamp() - due_at)), 0)::float8"
	       " AS max_late_seconds"
	       " FROM linked");
	return b.s;
}

static char *build_pending(const struct quoted *q, const char *table)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT count(*) FILTER (WHERE is_due AND NOT held) AS overdue,"
		   " count(*) FILTER (WHERE NOT is_due AND NOT held) AS due_within,"
		   " (SELECT d.due_at FROM (");
	{
		char *next = build_next_due(q, table);
		sb_add(&b, "%s", next);
		free(next);
	}
	sb_add(&b, ") d) AS next_due_at,"
		   " count(*) FILTER (WHERE held) AS held"
		   " FROM (SELECT ");
	sb_due_by(&b, q, "statement_timestamp()");
	sb_add(&b, " AS is_due, ");
	sb_held(&b, q);
	sb_add(&b, " AS held FROM %s t WHERE ", table);
	sb_due_by(&b, q, "statement_timestamp() + $11::interval");
	sb_not_exempt(&b, q);
	sb_add(&b, ") w");
	return b.s;
}

static char *build_pending_records(const struct quoted *q, const char *table)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b,
	       "SELECT $1 AS policy, t.%s::text AS key, t.%s AS clock_at, t.%s + $2::interval AS due_at, ",
	       q->key, q->clock, q->clock);
	sb_held(&b, q);
	sb_add(&b, " AS held FROM %s t WHERE ", table);
	sb_due_by(&b, q, "statement_timestamp() + $11::interval");
	sb_not_exempt(&b, q);
	sb_add(&b, " ORDER BY t.%s LIMIT $12::bigint", q->clock);
	return b.s;
}

static char *build_explain(const struct quoted *q, const char *table)
{
	struct sbuf b = {NULL, 0};
	sb_add(&b, "SELECT t.%s::text AS key, t.%s AS clock_at, t.%s + $2::interval AS due_at, ", q->key,
	       q->clock, q->clock);
	if (q->exempt)
		sb_add(&b, "coalesce(t.%s::text = ANY ($4::text[]), false) AS exempt, t.%s::text AS exempt_value, ",
		       q->exempt, q->exempt);
	else
		sb_add(&b, "false AS exempt, NULL::text AS exempt_value, ");
	sb_add(&b, "coalesce(");
	sb_due_by(&b, q, "statement_timestamp()");
	sb_add(&b, ", false) AS is_due, %s%s%s AS subject FROM %s t WHERE t.%s = $11", q->subject ? "t." : "",
	       q->subject ? q->subject : "NULL", "::text", table, q->key);
	return b.s;
}

bool policy_sql_build(struct policy_sql *sql, const struct policy *p, const char *table,
		      const char *instance, PGconn *conn)
{
	struct quoted q = {NULL, NULL, NULL, NULL};
	char retain[96], slack[32];
	bool ok = false;

	memset(sql, 0, sizeof(*sql));
	q.key = quote_ident(conn, p->key);
	q.clock = quote_ident(conn, p->clock);
	q.subject = p->subject ? quote_ident(conn, p->subject) : NULL;
	q.exempt = p->exempt_column ? quote_ident(conn, p->exempt_column) : NULL;
	if (!q.key || !q.clock || (p->subject && !q.subject) || (p->exempt_column && !q.exempt))
		goto out;

	sql->table = xstrdup(table);
	sql->next_wake = build_next_wake(&q, table);
	sql->purge = build_purge(p, &q, table, conn);
	sql->pending = build_pending(&q, table);
	sql->pending_records = build_pending_records(&q, table);
	sql->explain = build_explain(&q, table);
	/*
	 * A key or subject as typed ("042", an upper-case UUID) in the text form
	 * the purge compares holds with (t.key::text): UNION gives the untyped
	 * parameter the column's type, and the cast back to text canonicalises it.
	 */
	sql->canonical_key = xasprintf("SELECT v::text FROM (SELECT t.%s AS v FROM %s t WHERE false UNION ALL SELECT $11) c",
				       q.key, table);
	if (q.subject) {
		sql->subject_exists = xasprintf("SELECT 1 FROM %s t WHERE t.%s::text = $11 LIMIT 1", table, q.subject);
		sql->canonical_subject = xasprintf(
			"SELECT v::text FROM (SELECT t.%s AS v FROM %s t WHERE false UNION ALL SELECT $11) c", q.subject, table);
	}

	duration_to_sql(&p->retain, retain, sizeof(retain));
	policy_slack(&p->retain, slack, sizeof(slack));
	sql->params_storage[POLICY_PARAM_NAME] = xstrdup(p->name);
	sql->params_storage[POLICY_PARAM_RETAIN] = xstrdup(retain);
	sql->params_storage[POLICY_PARAM_SLACK] = xstrdup(slack);
	sql->params_storage[POLICY_PARAM_EXEMPT_VALUES] =
		policy_text_array(p->exempt_values, p->n_exempt_values);
	sql->params_storage[POLICY_PARAM_BATCH] = xasprintf("%d", p->batch);
	sql->params_storage[POLICY_PARAM_SERVICE] = xstrdup(p->service);
	sql->params_storage[POLICY_PARAM_SOURCE] = xstrdup(p->source);
	sql->params_storage[POLICY_PARAM_TABLE] = xstrdup(p->table);
	sql->params_storage[POLICY_PARAM_ACTION] =
		xstrdup(p->action == POLICY_ACTION_DELETE ? "delete" : "anonymize");
	sql->params_storage[POLICY_PARAM_INSTANCE] = xstrdup(instance);

	sql->n_params = POLICY_N_BASE_PARAMS + (int)p->n_set;
	sql->params = xcalloc((size_t)sql->n_params, sizeof(*sql->params));
	sql->types = xcalloc((size_t)sql->n_params, sizeof(*sql->types));
	/*
	 * Intervals go as intervals: sent as text, `$2::interval` is a cast the
	 * planner cannot fold (interval input depends on IntervalStyle), so it
	 * ran for every row scanned. `set` values stay untyped so the server
	 * casts them per column.
	 */
	for (int i = 0; i < POLICY_N_BASE_PARAMS; i++)
		sql->types[i] = base_param_types[i];
	for (int i = 0; i < POLICY_N_BASE_PARAMS; i++)
		sql->params[i] = sql->params_storage[i];
	for (size_t i = 0; i < p->n_set; i++)
		sql->params[POLICY_N_BASE_PARAMS + i] = p->set[i].value;
	ok = true;
out:
	free(q.key);
	free(q.clock);
	free(q.subject);
	free(q.exempt);
	if (!ok)
		policy_sql_free(sql);
	return ok;
}

void policy_sql_free(struct policy_sql *sql)
{
	free(sql->table);
	free(sql->next_wake);
	free(sql->purge);
	free(sql->pending);
	free(sql->pending_records);
	free(sql->explain);
	free(sql->subject_exists);
	free(sql->canonical_key);
	free(sql->canonical_subject);
	for (int i = 0; i < POLICY_N_BASE_PARAMS; i++)
		free(sql->params_storage[i]);
	free(sql->params);
	free(sql->types);
	memset(sql, 0, sizeof(*sql));
}

int policy_check_params(const struct policy *p, long long table_oid, char **params)
{
	char **columns = xcalloc(p->n_set_null + p->n_set + 1, sizeof(*columns));
	size_t n = 0;
	for (size_t i = 0; i < p->n_set_null; i++)
		columns[n++] = p->set_null[i];
	for (size_t i = 0; i < p->n_set; i++)
		columns[n++] = p->set[i].column;
	params[0] = xasprintf("%lld", table_oid);
	params[1] = xstrdup(p->key);
	params[2] = xstrdup(p->clock);
	params[3] = p->subject ? xstrdup(p->subject) : NULL;
	params[4] = p->exempt_column ? xstrdup(p->exempt_column) : NULL;
	params[5] = policy_text_array(columns, n);
	params[6] = xstrdup(p->action == POLICY_ACTION_DELETE ? "delete" : "anonymize");
	free(columns);
	return 7;
}
