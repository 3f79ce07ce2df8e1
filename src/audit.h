/*
 * audit.h -- the audit chain, shared by the daemon and retentionctl. Each
 * policy's rows in retention.audit_log are numbered seq = 1, 2, ... and
 * hash = sha256(prev_hash || payload), the first prev_hash being 32 zero
 * bytes. The purge statement computes it in the database; the verifier
 * recomputes it here, from the stored columns alone, calling no function of
 * the schema, so that whoever can change the schema cannot make a rewritten
 * record verify.
 */
#ifndef RETENTIOND_AUDIT_H
#define RETENTIOND_AUDIT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define AUDIT_HASH_HEX_LEN 64

/* An anchor: a policy's chain head as the daemon logs it after each batch. */
struct audit_anchor {
	long long seq;
	char hash[AUDIT_HASH_HEX_LEN + 1];
};

/* "SEQ:HASH", the form retentionctl audit verify --head takes. */
bool audit_anchor_parse(const char *text, struct audit_anchor *out);
/* The log line the daemon writes after each batch; retentionctl reads the same form. */
void audit_anchor_format(const char *policy, const struct audit_anchor *a, char *buf, size_t size);

/*
 * Every stored row of the chain(s) in chain order: $1 policy or NULL ->
 * enum audit_row_column. Times come as the payload writes them (UTC, six
 * fraction digits), rendered by pg_catalog.to_char.
 */
extern const char audit_rows_sql[];
enum audit_row_column {
	AUDIT_POLICY,
	AUDIT_ID,
	AUDIT_SEQ,
	AUDIT_SERVICE,
	AUDIT_SOURCE,
	AUDIT_TABLE,
	AUDIT_RECORD_KEY,
	AUDIT_SUBJECT,
	AUDIT_CLOCK_AT,
	AUDIT_DUE_AT,
	AUDIT_PURGED_AT,
	AUDIT_ACTION,
	AUDIT_INSTANCE,
	AUDIT_TXID,
	AUDIT_PREV_HASH,
	AUDIT_HASH,
	AUDIT_N_COLUMNS,
};
/* The recorded heads: $1 policy or NULL -> policy, seq, hash (hex). */
extern const char audit_heads_sql[];

/*
 * The bytes version 1 hashes: json_build_array(policy, seq, service, source,
 * table_name, record_key, subject, clock_at, due_at, purged_at, action,
 * instance, txid)::text exactly as PostgreSQL writes it. FIELDS are the
 * audit_rows_sql columns from AUDIT_POLICY on (NULL for SQL NULL, AUDIT_ID
 * unused). Malloc'd, NUL-terminated.
 */
char *audit_payload_v1(const char *const fields[AUDIT_N_COLUMNS]);
/* Lowercase hex of sha256(PREV || PAYLOAD) into OUT; false if PREV_HEX is not 64 hex digits. */
bool audit_chain_hash(const char *prev_hex, const char *payload, char out[AUDIT_HASH_HEX_LEN + 1]);

/* What verifying one policy's chain found. */
struct audit_chain {
	char *policy;
	long long records;
	long long last_seq;
	char last_hash[AUDIT_HASH_HEX_LEN + 1];
	bool has_head;
	long long bad_seq; /* the first bad record's seq */
	char *problem;     /* NULL while the chain is intact */
};

struct audit_verify {
	struct audit_chain *chains;
	size_t n;
};

struct audit_chain *audit_verify_chain(struct audit_verify *v, const char *policy);
/* Checks one row (from audit_rows_sql, in order) against the one before it in its chain. */
void audit_verify_row(struct audit_verify *v, const char *const fields[AUDIT_N_COLUMNS]);
/* Compares each chain's end with its recorded head (audit_heads_sql's rows). */
void audit_verify_heads(struct audit_verify *v, const PGresult *heads);
/* Records a problem at SEQ unless the chain already has an earlier one; takes PROBLEM. */
void audit_chain_broken(struct audit_chain *c, long long seq, char *problem);
void audit_verify_free(struct audit_verify *v);

/*
 * Streams audit_rows_sql for POLICY (NULL: all) on CONN in single-row mode,
 * verifying every row, then the heads. False with *ERR on a database error.
 */
bool audit_verify_stream(PGconn *conn, const char *policy, struct audit_verify *v, char **err);

#endif
