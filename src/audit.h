#ifndef RETENTIOND_AUDIT_H
#define RETENTIOND_AUDIT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The audit chain. Each policy's rows in retention.audit_log are numbered
 * seq = 1, 2, ... and hash = sha256(prev_hash || retention.audit_payload(row)),
 * the first prev_hash being 32 zero bytes. The hashing itself is SQL in the
 * schema so the purge statement and the verifier compute the same bytes.
 */

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
 * Every row of the chain(s) in order, each checked against its predecessor:
 * $1 policy or NULL -> policy, id, seq, hash (hex), seq_ok, link_ok, hash_ok.
 */
extern const char audit_verify_sql[];
/* The recorded heads: $1 policy or NULL -> policy, seq, hash (hex). */
extern const char audit_heads_sql[];

#endif
