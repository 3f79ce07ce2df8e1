/*
 * rule.c -- a policy's rule as a version (see rule.h and
 * sql/retention-7-8.sql).
 */
#include "rule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

static void add_key(struct json_buf *b, const char *key, bool first)
{
	if (!first)
		json_buf_str(b, ",");
	json_buf_string(b, key);
	json_buf_str(b, ":");
}

static void add_string(struct json_buf *b, const char *key, const char *value)
{
	add_key(b, key, false);
	if (value)
		json_buf_string(b, value);
	else
		json_buf_str(b, "null");
}

static void add_strings(struct json_buf *b, const char *key, char *const *values, size_t n)
{
	add_key(b, key, false);
	json_buf_str(b, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			json_buf_str(b, ",");
		json_buf_string(b, values[i]);
	}
	json_buf_str(b, "]");
}

/*
 * What decides how a row's due-ness is read, the same in two versions whose
 * due rows can be compared row by row: the table as the catalog spells it,
 * the clock, its type and, for a clock without a zone, the zone it is read
 * in, the column of the records' own durations, the action and what it sets (a row standing anonymized is not due).
 */
static void add_frame(struct json_buf *b, const struct config *cfg, const struct policy *p,
		      const struct policy_shape *shape)
{
	add_key(b, "table", true);
	json_buf_string(b, shape->table);
	/* One column is a string, as rules recorded before clocks of several columns. */
	if (p->n_clocks == 1)
		add_string(b, "clock", p->clocks[0]);
	else
		add_strings(b, "clock", p->clocks, p->n_clocks);
	add_string(b, "clock_type", shape->clock.type);
	/* Only where it is set: the rules of versions that had no clock_unit read as they did. */
	if (p->clock_unit != POLICY_CLOCK_UNIT_NONE)
		add_string(b, "clock_unit", policy_clock_unit_name(p->clock_unit));
	add_string(b, "time_zone", policy_clock_without_zone(shape) ? cfg->time_zone : NULL);
	/* Only where it is set, as clock_unit: what a row's duration is read from decides its due-ness too. */
	if (p->retain_column)
		add_string(b, "retain_column", p->retain_column);
	add_string(b, "action", policy_action_name(p->action));
	add_strings(b, "set_null", p->set_null, p->n_set_null);
	add_key(b, "set", false);
	json_buf_str(b, "[");
	for (size_t i = 0; i < p->n_set; i++) {
		if (i)
			json_buf_str(b, ",");
		json_buf_str(b, "[");
		json_buf_string(b, p->set[i].column);
		json_buf_str(b, ",");
		json_buf_string(b, p->set[i].value);
		json_buf_str(b, "]");
	}
	json_buf_str(b, "]");
}

void rule_of(struct rule *r, const struct config *cfg, const struct policy *p, const struct policy_shape *shape)
{
	struct json_buf frame = {NULL, 0, 0}, text = {NULL, 0, 0};
	char retain[96];

	json_buf_str(&frame, "{");
	add_frame(&frame, cfg, p, shape);
	json_buf_str(&frame, "}");

	duration_to_sql(&p->retain, retain, sizeof(retain));
	json_buf_str(&text, "{");
	add_frame(&text, cfg, p, shape);
	/* One column is a string, as rules recorded before composite keys. */
	if (p->n_keys == 1)
		add_string(&text, "key", p->keys[0]);
	else
		add_strings(&text, "key", p->keys, p->n_keys);
	/* Only where there is one: holds by subject name data subjects in it (rule_state compares it). */
	if (p->subject)
		add_string(&text, "subject", p->subject);
	add_string(&text, "retain", retain);
	add_string(&text, "exempt_column", p->exempt_column);
	add_strings(&text, "exempt_values", p->exempt_values, p->n_exempt_values);
	json_buf_str(&text, "}");

	r->text = text.s;
	r->frame = frame.s;
	r->retain = xstrdup(retain);
	r->exempt_values = p->exempt_column ? policy_text_array(p->exempt_values, p->n_exempt_values) : NULL;
}

void rule_free(struct rule *r)
{
	free(r->text);
	free(r->frame);
	free(r->retain);
	free(r->exempt_values);
	memset(r, 0, sizeof(*r));
}

#define RULE_STATE_COLUMNS "version, approved, in_force, comparable, in_force_exempts, upgrade, holds_moved"

const char rule_state_sql[] = "SELECT " RULE_STATE_COLUMNS " FROM retention.rule_state($1, $2, $3, $4)";
const char rule_seen_sql[] =
	"SELECT " RULE_STATE_COLUMNS " FROM retention.rule_seen($1, $2, $3, $4::interval, $5, $6::text[], $7)";
const char rule_approve_sql[] = "SELECT retention.rule_approve($1::bigint, $2::bigint, $3, $4, $5::boolean)";
const char rule_enforce_sql[] = "SELECT retention.rule_enforce($1::bigint)";

int rule_state_params(const struct rule *r, const struct policy *p, const char **params)
{
	params[0] = p->name;
	params[1] = r->text;
	params[2] = r->frame;
	params[3] = p->exempt_column;
	return 4;
}

int rule_seen_params(const struct rule *r, const struct policy *p, const char *instance, const char **params)
{
	params[0] = p->name;
	params[1] = r->text;
	params[2] = r->frame;
	params[3] = r->retain;
	params[4] = p->exempt_column;
	params[5] = r->exempt_values;
	params[6] = instance;
	return 7;
}

static bool is_true(const PGresult *res, int col)
{
	return !PQgetisnull(res, 0, col) && PQgetvalue(res, 0, col)[0] == 't';
}

static long long id_or_zero(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? 0 : atoll(PQgetvalue(res, 0, col));
}

bool rule_state_parse(const PGresult *res, struct rule_state *st)
{
	memset(st, 0, sizeof(*st));
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 7)
		return false;
	st->version = id_or_zero(res, 0);
	st->approved = is_true(res, 1);
	st->in_force = id_or_zero(res, 2);
	st->comparable = is_true(res, 3);
	st->in_force_exempts = is_true(res, 4);
	st->upgrade = is_true(res, 5);
	if (!PQgetisnull(res, 0, 6))
		snprintf(st->holds_moved, sizeof(st->holds_moved), "%s", PQgetvalue(res, 0, 6));
	return true;
}

const struct policy_unapproved *rule_unapproved(const struct rule_state *st, struct policy_unapproved *u)
{
	if (st->approved)
		return NULL;
	u->in_force = st->comparable ? st->in_force : 0;
	u->in_force_exempts = st->comparable && st->in_force_exempts;
	return u;
}
