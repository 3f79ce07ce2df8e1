/*
 * audit.h -- the audit chain, shared by the daemon and retentionctl. Each
 * policy's rows in retention.audit_log are numbered seq = 1, 2, ... and
 * hash = sha256(prev_hash || payload), the first prev_hash being 32 zero
 * bytes; docs/audit-format.md defines the payload. The daemon computes each
 * row's hash here, with the same code that verifies it, from the fields as
 * stored, calling no function of the schema: whoever can change the schema
 * cannot make a rewritten record verify. Subjects and keys may be stored as
 * keyed pseudonyms (HMAC-SHA256 with a key kept outside the database).
 */
#ifndef RETENTIOND_AUDIT_H
#define RETENTIOND_AUDIT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define AUDIT_HASH_HEX_LEN 64
/* The hash format the daemon writes; format 1 rows (before schema version 5) stay verifiable. */
#define AUDIT_FORMAT_CURRENT "2"
/* A stored pseudonym: the prefix, then the lowercase hex HMAC-SHA256 of the value's text form. */
#define AUDIT_PSEUDONYM_PREFIX "hmac-sha256:"
#define AUDIT_PSEUDONYM_LEN    (sizeof(AUDIT_PSEUDONYM_PREFIX) - 1 + AUDIT_HASH_HEX_LEN)
/* What `retentionctl audit keygen` writes, and the least a key file must hold. */
#define AUDIT_KEY_BYTES     32
#define AUDIT_KEY_MIN_BYTES 16
#define AUDIT_KEY_MAX_BYTES 1024

/* The secret of the pseudonyms: the key file's bytes. */
struct audit_key {
	unsigned char *bytes; /* NULL: not read */
	size_t len;
};

/* Reads the key file at PATH into KEY; NULL, or why not (malloc'd, one line without the path). */
char *audit_key_read(const char *path, struct audit_key *key);
void audit_key_clear(struct audit_key *key);
/* Writes a new random key to PATH, which must not exist, mode 0600; NULL, or why not (malloc'd). */
char *audit_keygen(const char *path);
/* OUT = AUDIT_PSEUDONYM_PREFIX + hex HMAC-SHA256(KEY, VALUE). */
void audit_pseudonym(const struct audit_key *key, const char *value, char out[AUDIT_PSEUDONYM_LEN + 1]);
/* What the trail stores for VALUE (NULL stays NULL): its pseudonym with KEY, or VALUE itself if KEY is NULL. */
char *audit_stored_value(const struct audit_key *key, const char *value);

/* The prev_hash of a chain's first record: 32 zero bytes, in hex. */
extern const char audit_genesis_hex[];

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
 * A timestamptz expression as the payload writes it: UTC, six fraction
 * digits ("2026-12-01T09:30:00.000000Z"), " BC" after a year before 1 (the
 * pattern has no era, and a year without one would hide an edit of it);
 * infinity as "infinity".
 */
#define AUDIT_TIME_TEXT(x)                                                                                             \
	"CASE WHEN pg_catalog.isfinite(" x ") THEN pg_catalog.to_char(pg_catalog.timezone('UTC', " x                   \
	"), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || CASE pg_catalog.to_char(pg_catalog.timezone('UTC', " x "), 'BC')"  \
	" WHEN 'BC' THEN ' BC' ELSE '' END ELSE (" x ")::pg_catalog.text END"

/*
 * Every stored row of the chain(s) in chain order: $1 policy or NULL, $2
 * purged at or after (NULL: from the start), $3 purged before (NULL: to the
 * end) -> enum audit_row_column.
 */
extern const char audit_rows_sql[];
enum audit_row_column {
	AUDIT_POLICY,
	AUDIT_ID,
	AUDIT_FORMAT,
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
	AUDIT_CAUSE,
	AUDIT_REQUEST_ID,
	AUDIT_INSTANCE,
	AUDIT_TXID,
	AUDIT_PREV_HASH,
	AUDIT_HASH,
	AUDIT_N_COLUMNS,
};
/* The recorded heads: $1 policy or NULL -> policy, seq, hash (hex). */
extern const char audit_heads_sql[];

/* The per-batch audit INSERT and chain head move; parameters in enum audit_insert_param. */
extern const char audit_insert_sql[];
enum audit_insert_param {
	AUDIT_INSERT_POLICY,
	AUDIT_INSERT_SERVICE,
	AUDIT_INSERT_SOURCE,
	AUDIT_INSERT_TABLE,
	AUDIT_INSERT_ACTION,
	AUDIT_INSERT_CAUSE,
	AUDIT_INSERT_REQUEST_ID,
	AUDIT_INSERT_INSTANCE,
	AUDIT_INSERT_PURGED_AT,
	AUDIT_INSERT_TXID,
	AUDIT_INSERT_SEQS, /* the rows, as parallel arrays (array literals) */
	AUDIT_INSERT_RECORD_KEYS,
	AUDIT_INSERT_SUBJECTS,
	AUDIT_INSERT_CLOCK_ATS,
	AUDIT_INSERT_DUE_ATS,
	AUDIT_INSERT_PREV_HASHES,
	AUDIT_INSERT_HASHES,
	AUDIT_INSERT_N_PARAMS,
};

/* What a batch's audit rows hold besides what the purge statement returns. */
struct audit_batch {
	const char *policy, *service, *source, *table, *action, *instance;
	const char *cause;                             /* "schedule" | "request" */
	const char *request_id;                        /* NULL for schedule */
	const struct audit_key *key_key, *subject_key; /* pseudonymize record keys / subjects with it; NULL: in clear */
};
/*
 * The audit rows of a batch that purged PURGED records, from the purge
 * statement's result (enum policy_purge_column), hashed, as
 * audit_insert_sql's PARAMS (malloc'd); HEAD is the chain's head after
 * them. False, with nothing filled, if the result does not hold one entry
 * per record.
 */
bool audit_batch_params(const struct audit_batch *batch, const PGresult *purge, long long purged,
			char *params[AUDIT_INSERT_N_PARAMS], struct audit_anchor *head);

/*
 * The bytes a row's hash covers, in the row's format (FIELDS[AUDIT_FORMAT]):
 * NULL for a format this build does not know. FIELDS are the
 * audit_rows_sql columns (NULL for SQL NULL; AUDIT_ID and the hashes
 * unused). Malloc'd, NUL-terminated (no field holds a NUL byte).
 */
char *audit_payload(const char *const fields[AUDIT_N_COLUMNS]);
/* Lowercase hex of sha256(PREV || PAYLOAD) into OUT; false if PREV_HEX is not 64 hex digits. */
bool audit_chain_hash(const char *prev_hex, const char *payload, char out[AUDIT_HASH_HEX_LEN + 1]);

/* What verifying one policy's chain found. */
struct audit_chain {
	char *policy;
	long long records;
	long long last_seq;
	char last_hash[AUDIT_HASH_HEX_LEN + 1];
	bool has_head;
	bool format2_seen; /* a row of format 2 or later: format 1 may not follow */
	long long bad_seq; /* the first bad record's seq */
	char *problem;     /* NULL while the chain is intact */
};

struct audit_verify {
	struct audit_chain *chains;
	size_t n;
	const char *row_name; /* how problems name a row: "id" (the database's) or "line" (a file's); NULL: "id" */
};

struct audit_chain *audit_verify_chain(struct audit_verify *v, const char *policy);
/*
 * Checks one row (from audit_rows_sql, in order) against the one before it
 * in its chain. AUDIT_ID names the row in problems (a file's line number).
 */
void audit_verify_row(struct audit_verify *v, const char *const fields[AUDIT_N_COLUMNS]);
/* Compares POLICY's chain, as verified so far, with its recorded head. */
void audit_verify_head(struct audit_verify *v, const char *policy, long long seq, const char *hash_hex);
/* After the last head: a chain with rows and no head has lost it. */
void audit_verify_end(struct audit_verify *v);
/* Records a problem at SEQ unless the chain already has an earlier one; takes PROBLEM. */
void audit_chain_broken(struct audit_chain *c, long long seq, char *problem);
void audit_verify_free(struct audit_verify *v);

/*
 * Streams audit_rows_sql for POLICY (NULL: all) on CONN in single-row mode,
 * verifying every row, then the heads. False with *ERR on a database error.
 */
bool audit_verify_stream(PGconn *conn, const char *policy, struct audit_verify *v, char **err);

#endif
