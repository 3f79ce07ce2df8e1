#include "audit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char audit_verify_sql[] =
	"SELECT policy, id, seq, encode(hash, 'hex') AS hash,"
	" seq = coalesce(lag(seq) OVER w, 0) + 1 AS seq_ok,"
	" prev_hash = coalesce(lag(hash) OVER w, retention.genesis_hash()) AS link_ok,"
	" hash = sha256(prev_hash || retention.audit_payload(policy, seq, service, source, table_name,"
	"   record_key, subject, clock_at, due_at, purged_at, action, instance, txid)) AS hash_ok"
	" FROM retention.audit_log"
	" WHERE $1::text IS NULL OR policy = $1"
	" WINDOW w AS (PARTITION BY policy ORDER BY seq)"
	" ORDER BY policy, seq";

const char audit_heads_sql[] =
	"SELECT policy, seq, encode(hash, 'hex') FROM retention.chain_heads"
	" WHERE $1::text IS NULL OR policy = $1 ORDER BY policy";

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
