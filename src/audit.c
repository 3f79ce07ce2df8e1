/*
 * audit.c -- the audit chain's anchors and its verifier (see audit.h).
 */
#include "audit.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TIME_FORMAT "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"

const char audit_rows_sql[] =
	"SELECT policy, id, seq, service, source, table_name, record_key, subject,"
	" pg_catalog.to_char(pg_catalog.timezone('UTC', clock_at), " TIME_FORMAT "),"
	" pg_catalog.to_char(pg_catalog.timezone('UTC', due_at), " TIME_FORMAT "),"
	" pg_catalog.to_char(pg_catalog.timezone('UTC', purged_at), " TIME_FORMAT "),"
	" action, instance, txid, pg_catalog.encode(prev_hash, 'hex'), pg_catalog.encode(hash, 'hex')"
	" FROM retention.audit_log"
	" WHERE $1::pg_catalog.text IS NULL OR policy OPERATOR(pg_catalog.=) $1"
	" ORDER BY policy, seq";

const char audit_heads_sql[] = "SELECT policy, seq, pg_catalog.encode(hash, 'hex') FROM retention.chain_heads"
			       " WHERE $1::pg_catalog.text IS NULL OR policy OPERATOR(pg_catalog.=) $1 ORDER BY policy";

static const char genesis_hex[] = "0000000000000000000000000000000000000000000000000000000000000000";

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

struct out {
	char *s;
	size_t len, cap;
};

static void put(struct out *o, const char *bytes, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->s = xrealloc(o->s, o->cap);
	}
	memcpy(o->s + o->len, bytes, n);
	o->len += n;
	o->s[o->len] = '\0';
}

static void put_str(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* A JSON string as PostgreSQL's escape_json writes it. */
static void put_json_string(struct out *o, const char *s)
{
	put_str(o, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		switch (*p) {
		case '\b':
			put_str(o, "\\b");
			break;
		case '\f':
			put_str(o, "\\f");
			break;
		case '\n':
			put_str(o, "\\n");
			break;
		case '\r':
			put_str(o, "\\r");
			break;
		case '\t':
			put_str(o, "\\t");
			break;
		case '"':
			put_str(o, "\\\"");
			break;
		case '\\':
			put_str(o, "\\\\");
			break;
		default:
			if (*p < ' ') {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				put_str(o, esc);
			} else {
				put(o, (const char *)p, 1);
			}
		}
	}
	put_str(o, "\"");
}

char *audit_payload_v1(const char *const f[AUDIT_N_COLUMNS])
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
	struct out o = {NULL, 0, 0};
	put_str(&o, "[");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *v = f[order[i].column];
		if (i)
			put_str(&o, ", ");
		if (v == NULL)
			put_str(&o, "null");
		else if (order[i].number)
			put_str(&o, v);
		else
			put_json_string(&o, v);
	}
	put_str(&o, "]");
	return o.s;
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
	for (unsigned i = 0; i < md_len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return true;
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
	snprintf(v->chains[v->n].last_hash, sizeof(v->chains[v->n].last_hash), "%s", genesis_hex);
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
 * in one means the table itself was altered.
 */
static const char *missing_column(const char *const f[AUDIT_N_COLUMNS])
{
	static const struct {
		enum audit_row_column column;
		const char *name;
	} required[] = {{AUDIT_POLICY, "policy"},
			{AUDIT_ID, "id"},
			{AUDIT_SEQ, "seq"},
			{AUDIT_PREV_HASH, "prev_hash"},
			{AUDIT_HASH, "hash"}};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (f[required[i].column] == NULL)
			return required[i].name;
	return NULL;
}

void audit_verify_row(struct audit_verify *v, const char *const f[AUDIT_N_COLUMNS])
{
	const char *missing = missing_column(f);
	struct audit_chain *c = audit_verify_chain(v, f[AUDIT_POLICY] ? f[AUDIT_POLICY] : "(no policy)");
	long long seq;
	const char *id = f[AUDIT_ID];
	char computed[AUDIT_HASH_HEX_LEN + 1];
	char *payload;
	bool hashed;
	c->records++;
	if (missing) {
		audit_chain_broken(c, f[AUDIT_SEQ] ? atoll(f[AUDIT_SEQ]) : c->last_seq + 1,
				   xasprintf("record id %s has no %s: retention.audit_log was altered (its NOT NULL"
					     " dropped) and the record written outside the daemon",
					     id ? id : "(none)", missing));
		return;
	}
	seq = atoll(f[AUDIT_SEQ]);
	payload = audit_payload_v1(f);
	hashed = audit_chain_hash(f[AUDIT_PREV_HASH], payload, computed);
	free(payload);
	if (seq != c->last_seq + 1)
		audit_chain_broken(
			c, seq,
			xasprintf("record seq %lld (id %s) follows seq %lld: records before it are missing or"
				  " out of order",
				  seq, id, c->last_seq));
	else if (strcmp(f[AUDIT_PREV_HASH], c->last_hash) != 0)
		audit_chain_broken(
			c, seq,
			xasprintf("record seq %lld (id %s): its prev_hash is not the hash of the record before"
				  " it (a record was removed, replaced or reordered)",
				  seq, id));
	else if (!hashed || strcmp(computed, f[AUDIT_HASH]) != 0)
		audit_chain_broken(
			c, seq,
			xasprintf("record seq %lld (id %s): its content does not match its hash (edited)", seq, id));
	c->last_seq = seq;
	snprintf(c->last_hash, sizeof(c->last_hash), "%s", f[AUDIT_HASH]);
}

void audit_verify_heads(struct audit_verify *v, const PGresult *heads)
{
	for (int r = 0; r < PQntuples(heads); r++) {
		struct audit_chain *c = audit_verify_chain(v, PQgetvalue(heads, r, 0));
		long long seq = atoll(PQgetvalue(heads, r, 1));
		c->has_head = true;
		if (c->last_seq < seq)
			audit_chain_broken(
				c, c->last_seq + 1,
				xasprintf("the chain head is seq %lld but the log ends at seq %lld: records seq"
					  " %lld to %lld were removed",
					  seq, c->last_seq, c->last_seq + 1, seq));
		else if (c->last_seq > seq || strcmp(c->last_hash, PQgetvalue(heads, r, 2)) != 0)
			audit_chain_broken(
				c, seq,
				xasprintf("the log's last record (seq %lld) is not the recorded chain head (seq"
					  " %lld)",
					  c->last_seq, seq));
	}
	for (size_t i = 0; i < v->n; i++)
		if (!v->chains[i].has_head && v->chains[i].records > 0)
			audit_chain_broken(
				&v->chains[i], v->chains[i].last_seq,
				xstrdup("no chain head is recorded for this policy (retention.chain_heads row"
					" removed)"));
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
	const char *params[1] = {policy};
	PGresult *res;
	bool ok = true;
	*err = NULL;
	if (!PQsendQueryParams(conn, audit_rows_sql, 1, NULL, params, NULL, NULL, 0)) {
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
	audit_verify_heads(v, res);
	PQclear(res);
	return true;
}
