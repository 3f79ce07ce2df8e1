/*
 * audit.c -- the audit chain's anchors and its verifier (see audit.h).
 */
#include "audit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "policy.h"
#include "util.h"

const char audit_rows_sql[] =
	"SELECT policy, id, format, seq, service, source, table_name, record_key, subject,"
	" " AUDIT_TIME_TEXT("clock_at") " AS clock_at, " AUDIT_TIME_TEXT(
		"due_at") " AS due_at,"
			  " " AUDIT_TIME_TEXT(
				  "purged_at") " AS purged_at, action, cause, request_id, instance, txid,"
					       " pg_catalog.encode(prev_hash, 'hex') AS prev_hash, pg_catalog.encode(hash, 'hex') AS hash"
					       " FROM retention.audit_log"
					       " WHERE ($1::pg_catalog.text IS NULL OR policy OPERATOR(pg_catalog.=) $1)"
					       " AND ($2::pg_catalog.timestamptz IS NULL OR purged_at OPERATOR(pg_catalog.>=) $2)"
					       " AND ($3::pg_catalog.timestamptz IS NULL OR purged_at OPERATOR(pg_catalog.<) $3)"
					       " ORDER BY policy, seq";

const char audit_heads_sql[] = "SELECT policy, seq, pg_catalog.encode(hash, 'hex') FROM retention.chain_heads"
			       " WHERE $1::pg_catalog.text IS NULL OR policy OPERATOR(pg_catalog.=) $1 ORDER BY policy";

/*
 * Everything comes as text and is cast here: the times in the payload's own
 * form, which reads back to the same instant whatever the session's zone.
 * The head moves with the rows, in one statement.
 */
const char audit_insert_sql[] =
	"WITH r AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($11::pg_catalog.int8[]),"
	" pg_catalog.unnest($12::pg_catalog.text[]), pg_catalog.unnest($13::pg_catalog.text[]),"
	" pg_catalog.unnest($14::pg_catalog.timestamptz[]), pg_catalog.unnest($15::pg_catalog.timestamptz[]),"
	" pg_catalog.unnest($16::pg_catalog.text[]), pg_catalog.unnest($17::pg_catalog.text[]))"
	" AS r(seq, record_key, subject, clock_at, due_at, prev_hash, hash)"
	"), audited AS ("
	"INSERT INTO retention.audit_log (format, policy, seq, service, source, table_name, record_key, subject,"
	" clock_at, due_at, purged_at, action, cause, request_id, instance, txid, prev_hash, hash)"
	" SELECT " AUDIT_FORMAT_CURRENT ", $1::pg_catalog.text, r.seq, $2::pg_catalog.text, $3::pg_catalog.text,"
	" $4::pg_catalog.text, r.record_key, r.subject, r.clock_at, r.due_at, $9::pg_catalog.timestamptz,"
	" $5::pg_catalog.text, $6::pg_catalog.text, $7::pg_catalog.int8, $8::pg_catalog.text, $10::pg_catalog.int8,"
	" pg_catalog.decode(r.prev_hash, 'hex'), pg_catalog.decode(r.hash, 'hex') FROM r"
	")"
	" INSERT INTO retention.chain_heads (policy, seq, hash, updated_at)"
	" SELECT $1::pg_catalog.text, r.seq, pg_catalog.decode(r.hash, 'hex'), pg_catalog.statement_timestamp() FROM r"
	" ORDER BY r.seq DESC LIMIT 1"
	" ON CONFLICT (policy) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at";

const char audit_genesis_hex[] = "0000000000000000000000000000000000000000000000000000000000000000";

bool audit_anchor_parse(const char *text, struct audit_anchor *out)
{
	char *end;
	const char *colon = strchr(text, ':');
	long long seq;
	if (colon == NULL || colon == text)
		return false;
	seq = strtoll(text, &end, 10);
	if (end != colon || seq < 0)
		return false;
	if (strlen(colon + 1) != AUDIT_HASH_HEX_LEN)
		return false;
	for (const char *p = colon + 1; *p; p++)
		if (!isxdigit((unsigned char)*p))
			return false;
	out->seq = seq;
	for (int i = 0; i < AUDIT_HASH_HEX_LEN; i++)
		out->hash[i] = (char)tolower((unsigned char)colon[1 + i]);
	out->hash[AUDIT_HASH_HEX_LEN] = '\0';
	return true;
}

void audit_anchor_format(const char *policy, const struct audit_anchor *a, char *buf, size_t size)
{
	snprintf(buf, size, "policy %s: chain head %lld:%s", policy, a->seq, a->hash);
}

/* ---- the payload, byte for byte as json_build_array(...)::text ---- */

/* Format 1: json_build_array(...)::text exactly as PostgreSQL writes it. */
static char *payload_v1(const char *const f[AUDIT_N_COLUMNS])
{
	/* json_build_array's arguments in order; the integers are written bare. */
	static const struct {
		enum audit_row_column column;
		bool number;
	} order[] = {
		{AUDIT_POLICY, false}, {AUDIT_SEQ, true},         {AUDIT_SERVICE, false}, {AUDIT_SOURCE, false},
		{AUDIT_TABLE, false},  {AUDIT_RECORD_KEY, false}, {AUDIT_SUBJECT, false}, {AUDIT_CLOCK_AT, false},
		{AUDIT_DUE_AT, false}, {AUDIT_PURGED_AT, false},  {AUDIT_ACTION, false},  {AUDIT_INSTANCE, false},
		{AUDIT_TXID, true},
	};
	struct json_buf o = {NULL, 0, 0};
	json_buf_str(&o, "[");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *v = f[order[i].column];
		if (i)
			json_buf_str(&o, ", ");
		if (v == NULL)
			json_buf_str(&o, "null");
		else if (order[i].number)
			json_buf_str(&o, v);
		else
			json_buf_string(&o, v);
	}
	json_buf_str(&o, "]");
	return o.s;
}

/* Format 2: the netstrings of docs/audit-format.md, a NULL field as "-,". */
static char *payload_v2(const char *const f[AUDIT_N_COLUMNS])
{
	static const enum audit_row_column order[] = {
		AUDIT_FORMAT,     AUDIT_POLICY,     AUDIT_SEQ,      AUDIT_SERVICE, AUDIT_SOURCE,    AUDIT_TABLE,
		AUDIT_RECORD_KEY, AUDIT_SUBJECT,    AUDIT_CLOCK_AT, AUDIT_DUE_AT,  AUDIT_PURGED_AT, AUDIT_ACTION,
		AUDIT_CAUSE,      AUDIT_REQUEST_ID, AUDIT_INSTANCE, AUDIT_TXID,
	};
	struct json_buf o = {NULL, 0, 0};
	json_buf_str(&o, "");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *v = f[order[i]];
		char len[24];
		if (v == NULL) {
			json_buf_str(&o, "-,");
			continue;
		}
		snprintf(len, sizeof(len), "%zu:", strlen(v));
		json_buf_str(&o, len);
		json_buf_str(&o, v);
		json_buf_str(&o, ",");
	}
	return o.s;
}

char *audit_payload(const char *const f[AUDIT_N_COLUMNS])
{
	if (f[AUDIT_FORMAT] && strcmp(f[AUDIT_FORMAT], "1") == 0)
		return payload_v1(f);
	if (f[AUDIT_FORMAT] && strcmp(f[AUDIT_FORMAT], "2") == 0)
		return payload_v2(f);
	return NULL;
}

static void hex_of(const unsigned char *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static bool hex_to_bytes(const char *hex, unsigned char out[32])
{
	if (strlen(hex) != AUDIT_HASH_HEX_LEN)
		return false;
	for (int i = 0; i < 32; i++) {
		unsigned v;
		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1)
			return false;
		out[i] = (unsigned char)v;
	}
	return true;
}

bool audit_chain_hash(const char *prev_hex, const char *payload, char out[AUDIT_HASH_HEX_LEN + 1])
{
	unsigned char prev[32], md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx;
	bool ok;
	if (!hex_to_bytes(prev_hex, prev))
		return false;
	ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, prev, sizeof(prev)) == 1 &&
	     EVP_DigestUpdate(ctx, payload, strlen(payload)) == 1 && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 &&
	     md_len == 32;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return false;
	hex_of(md, md_len, out);
	return true;
}

/* ---- the pseudonyms' key ---- */

char *audit_key_read(const char *path, struct audit_key *key)
{
	struct stat st;
	unsigned char buf[AUDIT_KEY_MAX_BYTES + 1];
	size_t len = 0;
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return xasprintf("cannot read %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return xasprintf("%s is not a regular file", path);
	}
	if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
		/* As ssh with a private key: whoever reads it can test whose records were purged. */
		close(fd);
		return xasprintf("%s may be read or written by other users (mode %04o): chmod 0600, or 0640 for the"
				 " daemon's group",
				 path, (unsigned)(st.st_mode & 07777));
	}
	while (len < sizeof(buf) && (got = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			char *why = xasprintf("cannot read %s: %s", path, strerror(errno));
			close(fd);
			OPENSSL_cleanse(buf, sizeof(buf));
			return why;
		}
		len += (size_t)got;
	}
	close(fd);
	if (len < AUDIT_KEY_MIN_BYTES || len > AUDIT_KEY_MAX_BYTES) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return xasprintf("%s holds %s%zu bytes; a key has %d to %d (retentionctl audit keygen makes one)", path,
				 len > AUDIT_KEY_MAX_BYTES ? "more than " : "",
				 len > AUDIT_KEY_MAX_BYTES ? (size_t)AUDIT_KEY_MAX_BYTES : len, AUDIT_KEY_MIN_BYTES,
				 AUDIT_KEY_MAX_BYTES);
	}
	audit_key_clear(key);
	key->bytes = xmalloc(len);
	memcpy(key->bytes, buf, len);
	key->len = len;
	OPENSSL_cleanse(buf, sizeof(buf));
	return NULL;
}

void audit_key_clear(struct audit_key *key)
{
	if (key->bytes) {
		OPENSSL_cleanse(key->bytes, key->len);
		free(key->bytes);
	}
	key->bytes = NULL;
	key->len = 0;
}

char *audit_keygen(const char *path)
{
	unsigned char key[AUDIT_KEY_BYTES];
	char *why = NULL;
	int fd;
	if (RAND_bytes(key, sizeof(key)) != 1)
		return xstrdup("the system's random number generator failed");
	/* Never over an existing key: the pseudonyms it made would no longer be found. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		OPENSSL_cleanse(key, sizeof(key));
		if (errno == EEXIST)
			return xasprintf("%s exists: a key is never overwritten (the pseudonyms made with it could no"
					 " longer be looked up); remove it first if that is what you want",
					 path);
		return xasprintf("cannot create %s: %s", path, strerror(errno));
	}
	if (fchmod(fd, 0600) < 0 || write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) || fsync(fd) < 0)
		why = xasprintf("cannot write %s: %s", path, strerror(errno));
	if (close(fd) < 0 && why == NULL)
		why = xasprintf("cannot write %s: %s", path, strerror(errno));
	OPENSSL_cleanse(key, sizeof(key));
	if (why)
		unlink(path);
	return why;
}

void audit_pseudonym(const struct audit_key *key, const char *value, char out[AUDIT_PSEUDONYM_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	size_t prefix = strlen(AUDIT_PSEUDONYM_PREFIX);
	memcpy(out, AUDIT_PSEUDONYM_PREFIX, prefix);
	if (HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)value, strlen(value), md, &md_len) ==
		    NULL ||
	    md_len != 32)
		abort(); /* as an allocation failure: nothing to recover */
	hex_of(md, md_len, out + prefix);
}

char *audit_stored_value(const struct audit_key *key, const char *value)
{
	char pseudonym[AUDIT_PSEUDONYM_LEN + 1];
	if (value == NULL || key == NULL)
		return value ? xstrdup(value) : NULL;
	audit_pseudonym(key, value, pseudonym);
	return xstrdup(pseudonym);
}

/*
 * Each row's stored fields, then its hash over them (audit_payload, the
 * verifier's own code), continuing the chain from the head the purge
 * statement read under the policy's lock.
 */
bool audit_batch_params(const struct audit_batch *ab, const PGresult *res, long long purged,
			char *params[AUDIT_INSERT_N_PARAMS], struct audit_anchor *head)
{
	size_t n = (size_t)purged, n_keys, n_subjects, n_clocks, n_dues;
	char **keys = policy_text_array_parse_all(PQgetvalue(res, 0, PURGE_KEYS), &n_keys);
	char **subjects = policy_text_array_parse_all(PQgetvalue(res, 0, PURGE_SUBJECTS), &n_subjects);
	char **clocks = policy_text_array_parse_all(PQgetvalue(res, 0, PURGE_CLOCK_ATS), &n_clocks);
	char **dues = policy_text_array_parse_all(PQgetvalue(res, 0, PURGE_DUE_ATS), &n_dues);
	char **seqs = xcalloc(n + 1, sizeof(char *)), **stored_keys = xcalloc(n + 1, sizeof(char *));
	char **stored_subjects = xcalloc(n + 1, sizeof(char *)), **prevs = xcalloc(n + 1, sizeof(char *));
	char **hashes = xcalloc(n + 1, sizeof(char *));
	const char *f[AUDIT_N_COLUMNS] = {NULL};
	char prev[AUDIT_HASH_HEX_LEN + 1];
	long long seq = PQgetisnull(res, 0, PURGE_HEAD_SEQ) ? 0 : atoll(PQgetvalue(res, 0, PURGE_HEAD_SEQ));
	bool ok = PQnfields(res) == PURGE_N_COLUMNS && n_keys == n && n_subjects == n && n_clocks == n && n_dues == n &&
		  !PQgetisnull(res, 0, PURGE_TXID) && !PQgetisnull(res, 0, PURGE_PURGED_AT);

	snprintf(prev, sizeof(prev), "%s",
		 PQgetisnull(res, 0, PURGE_HEAD_HASH) ? audit_genesis_hex : PQgetvalue(res, 0, PURGE_HEAD_HASH));
	f[AUDIT_FORMAT] = AUDIT_FORMAT_CURRENT;
	f[AUDIT_POLICY] = ab->policy;
	f[AUDIT_SERVICE] = ab->service;
	f[AUDIT_SOURCE] = ab->source;
	f[AUDIT_TABLE] = ab->table;
	f[AUDIT_ACTION] = ab->action;
	f[AUDIT_CAUSE] = ab->cause;
	f[AUDIT_REQUEST_ID] = ab->request_id;
	f[AUDIT_INSTANCE] = ab->instance;
	f[AUDIT_PURGED_AT] = ok ? PQgetvalue(res, 0, PURGE_PURGED_AT) : NULL;
	f[AUDIT_TXID] = ok ? PQgetvalue(res, 0, PURGE_TXID) : NULL;
	for (size_t i = 0; ok && i < n; i++) {
		char hash[AUDIT_HASH_HEX_LEN + 1], *payload;
		/* A record erased on request may have no clock yet; a scheduled purge always had one. */
		ok = keys[i] && ((clocks[i] && dues[i]) || (ab->request_id && !clocks[i] && !dues[i]));
		if (!ok)
			break;
		seqs[i] = xasprintf("%lld", ++seq);
		stored_keys[i] = audit_stored_value(ab->key_key, keys[i]);
		stored_subjects[i] = audit_stored_value(ab->subject_key, subjects[i]);
		f[AUDIT_SEQ] = seqs[i];
		f[AUDIT_RECORD_KEY] = stored_keys[i];
		f[AUDIT_SUBJECT] = stored_subjects[i];
		f[AUDIT_CLOCK_AT] = clocks[i];
		f[AUDIT_DUE_AT] = dues[i];
		payload = audit_payload(f);
		ok = payload && audit_chain_hash(prev, payload, hash);
		free(payload);
		prevs[i] = xstrdup(prev);
		hashes[i] = xstrdup(hash);
		memcpy(prev, hash, sizeof(prev));
	}
	if (ok) {
		const char *scalars[] = {
			[AUDIT_INSERT_POLICY] = f[AUDIT_POLICY],         [AUDIT_INSERT_SERVICE] = f[AUDIT_SERVICE],
			[AUDIT_INSERT_SOURCE] = f[AUDIT_SOURCE],         [AUDIT_INSERT_TABLE] = f[AUDIT_TABLE],
			[AUDIT_INSERT_ACTION] = f[AUDIT_ACTION],         [AUDIT_INSERT_CAUSE] = f[AUDIT_CAUSE],
			[AUDIT_INSERT_REQUEST_ID] = f[AUDIT_REQUEST_ID], [AUDIT_INSERT_INSTANCE] = f[AUDIT_INSTANCE],
			[AUDIT_INSERT_PURGED_AT] = f[AUDIT_PURGED_AT],   [AUDIT_INSERT_TXID] = f[AUDIT_TXID],
		};
		for (int i = 0; i < AUDIT_INSERT_SEQS; i++)
			params[i] = scalars[i] ? xstrdup(scalars[i]) : NULL;
		params[AUDIT_INSERT_SEQS] = policy_text_array(seqs, n);
		params[AUDIT_INSERT_RECORD_KEYS] = policy_text_array(stored_keys, n);
		params[AUDIT_INSERT_SUBJECTS] = policy_text_array(stored_subjects, n);
		params[AUDIT_INSERT_CLOCK_ATS] = policy_text_array(clocks, n);
		params[AUDIT_INSERT_DUE_ATS] = policy_text_array(dues, n);
		params[AUDIT_INSERT_PREV_HASHES] = policy_text_array(prevs, n);
		params[AUDIT_INSERT_HASHES] = policy_text_array(hashes, n);
		head->seq = seq;
		memcpy(head->hash, prev, sizeof(prev));
	}
	policy_text_array_free_n(keys, n_keys);
	policy_text_array_free_n(subjects, n_subjects);
	policy_text_array_free_n(clocks, n_clocks);
	policy_text_array_free_n(dues, n_dues);
	policy_text_array_free_n(seqs, n);
	policy_text_array_free_n(stored_keys, n);
	policy_text_array_free_n(stored_subjects, n);
	policy_text_array_free_n(prevs, n);
	policy_text_array_free_n(hashes, n);
	return ok;
}

/* ---- verifying ---- */

struct audit_chain *audit_verify_chain(struct audit_verify *v, const char *policy)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->chains[i].policy, policy) == 0)
			return &v->chains[i];
	v->chains = xrealloc(v->chains, (v->n + 1) * sizeof(*v->chains));
	memset(&v->chains[v->n], 0, sizeof(*v->chains));
	v->chains[v->n].policy = xstrdup(policy);
	snprintf(v->chains[v->n].last_hash, sizeof(v->chains[v->n].last_hash), "%s", audit_genesis_hex);
	return &v->chains[v->n++];
}

void audit_chain_broken(struct audit_chain *c, long long seq, char *problem)
{
	if (c->problem == NULL) {
		c->bad_seq = seq;
		c->problem = problem;
	} else {
		free(problem);
	}
}

/*
 * The columns the schema declares NOT NULL and the chain is built on: NULL
 * in one means the table itself was altered (or, in a file, the line).
 */
static const char *missing_column(const char *const f[AUDIT_N_COLUMNS])
{
	static const struct {
		enum audit_row_column column;
		const char *name;
	} required[] = {{AUDIT_POLICY, "policy"}, {AUDIT_ID, "id"},     {AUDIT_FORMAT, "format"},
			{AUDIT_SEQ, "seq"},       {AUDIT_HASH, "hash"}, {AUDIT_PREV_HASH, "prev_hash"}};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (f[required[i].column] == NULL)
			return required[i].name;
	return NULL;
}

void audit_verify_row(struct audit_verify *v, const char *const f[AUDIT_N_COLUMNS])
{
	const char *missing = missing_column(f), *row = v->row_name ? v->row_name : "id";
	struct audit_chain *c = audit_verify_chain(v, f[AUDIT_POLICY] ? f[AUDIT_POLICY] : "(no policy)");
	long long seq;
	const char *id = f[AUDIT_ID];
	char computed[AUDIT_HASH_HEX_LEN + 1];
	char *payload;
	bool hashed;
	c->records++;
	if (c->has_head) {
		/* A chain's head line ends it: what follows is claimed by no head. */
		audit_chain_broken(
			c, f[AUDIT_SEQ] ? atoll(f[AUDIT_SEQ]) : c->last_seq + 1,
			xasprintf("record %s %s comes after the policy's chain head", row, id ? id : "(none)"));
		return;
	}
	if (missing) {
		audit_chain_broken(c, f[AUDIT_SEQ] ? atoll(f[AUDIT_SEQ]) : c->last_seq + 1,
				   xasprintf("record %s %s has no %s: it was written outside the daemon (in the"
					     " database, with the table's NOT NULL dropped)",
					     row, id ? id : "(none)", missing));
		return;
	}
	seq = atoll(f[AUDIT_SEQ]);
	payload = audit_payload(f);
	hashed = payload && audit_chain_hash(f[AUDIT_PREV_HASH], payload, computed);
	free(payload);
	if (payload == NULL)
		audit_chain_broken(c, seq,
				   xasprintf("record seq %lld (%s %s) has hash format %s, which this version does not"
					     " know",
					     seq, row, id, f[AUDIT_FORMAT]));
	else if (c->format2_seen && strcmp(f[AUDIT_FORMAT], "1") == 0)
		/* The daemon never goes back to format 1: its payload leaves out cause and request_id. */
		audit_chain_broken(c, seq,
				   xasprintf("record seq %lld (%s %s) is in format 1 after records in format 2: it"
					     " was written outside the daemon",
					     seq, row, id));
	else if (seq != c->last_seq + 1)
		audit_chain_broken(
			c, seq,
			xasprintf("record seq %lld (%s %s) follows seq %lld: records before it are missing or"
				  " out of order",
				  seq, row, id, c->last_seq));
	else if (strcmp(f[AUDIT_PREV_HASH], c->last_hash) != 0)
		audit_chain_broken(
			c, seq,
			xasprintf("record seq %lld (%s %s): its prev_hash is not the hash of the record before"
				  " it (a record was removed, replaced or reordered)",
				  seq, row, id));
	else if (!hashed || strcmp(computed, f[AUDIT_HASH]) != 0)
		audit_chain_broken(c, seq,
				   xasprintf("record seq %lld (%s %s): its content does not match its hash (edited)",
					     seq, row, id));
	if (strcmp(f[AUDIT_FORMAT], "1") != 0)
		c->format2_seen = true;
	c->last_seq = seq;
	snprintf(c->last_hash, sizeof(c->last_hash), "%s", f[AUDIT_HASH]);
}

void audit_verify_head(struct audit_verify *v, const char *policy, long long seq, const char *hash_hex)
{
	struct audit_chain *c = audit_verify_chain(v, policy);
	if (c->has_head) {
		audit_chain_broken(c, seq, xstrdup("the policy has a second chain head"));
		return;
	}
	c->has_head = true;
	if (c->last_seq < seq)
		audit_chain_broken(c, c->last_seq + 1,
				   xasprintf("the chain head is seq %lld but the log ends at seq %lld: records seq"
					     " %lld to %lld were removed",
					     seq, c->last_seq, c->last_seq + 1, seq));
	else if (c->last_seq > seq)
		audit_chain_broken(c, seq,
				   xasprintf("the log's last record (seq %lld) is not the recorded chain head (seq"
					     " %lld)",
					     c->last_seq, seq));
	else if (strcmp(c->last_hash, hash_hex) != 0)
		audit_chain_broken(c, seq,
				   xasprintf("the log's last record (seq %lld) does not have the recorded chain head's"
					     " hash: the record or the head was changed",
					     seq));
}

void audit_verify_end(struct audit_verify *v)
{
	for (size_t i = 0; i < v->n; i++)
		if (!v->chains[i].has_head && v->chains[i].records > 0)
			audit_chain_broken(&v->chains[i], v->chains[i].last_seq,
					   xstrdup("no chain head is recorded for this policy (retention.chain_heads"
						   " row removed, or the export's chain_head line)"));
}

void audit_verify_free(struct audit_verify *v)
{
	for (size_t i = 0; i < v->n; i++) {
		free(v->chains[i].policy);
		free(v->chains[i].problem);
	}
	free(v->chains);
	v->chains = NULL;
	v->n = 0;
}

static char *first_line(const char *msg)
{
	char *out = xstrdup(msg && *msg ? msg : "unexpected result");
	out[strcspn(out, "\n")] = '\0';
	return out;
}

bool audit_verify_stream(PGconn *conn, const char *policy, struct audit_verify *v, char **err)
{
	const char *params[3] = {policy, NULL, NULL};
	PGresult *res;
	bool ok = true;
	*err = NULL;
	if (!PQsendQueryParams(conn, audit_rows_sql, 3, NULL, params, NULL, NULL, 0)) {
		*err = first_line(PQerrorMessage(conn));
		return false;
	}
	PQsetSingleRowMode(conn);
	while ((res = PQgetResult(conn)) != NULL) {
		if (PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
			const char *f[AUDIT_N_COLUMNS];
			for (int i = 0; i < AUDIT_N_COLUMNS; i++)
				f[i] = PQgetisnull(res, 0, i) ? NULL : PQgetvalue(res, 0, i);
			audit_verify_row(v, f);
		} else if (PQresultStatus(res) != PGRES_TUPLES_OK && *err == NULL) {
			*err = first_line(PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	if (!ok)
		return false;
	res = PQexecParams(conn, audit_heads_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		*err = first_line(PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	for (int r = 0; r < PQntuples(res); r++)
		audit_verify_head(v, PQgetvalue(res, r, 0), atoll(PQgetvalue(res, r, 1)), PQgetvalue(res, r, 2));
	audit_verify_end(v);
	PQclear(res);
	return true;
}
