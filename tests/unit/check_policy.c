/*
 * The SQL built for a policy from a description of its table: quoting,
 * parameters, the one "due", "held", "exempt" and "referenced" predicate in
 * every statement, typed comparisons. No server: the description is what
 * policy_describe_sql would return.
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "testutil.h"
#include "util.h"

#define CLOCK "\"Closed \"\"At\"\"; --\""

static struct config *load(const char *extra)
{
	struct config_errors errs = {NULL, 0};
	char *text = xasprintf("policies = ( { name = \"p\"; service = \"s\"; source = \"src\";\n"
			       " table = \"public.t\"; key = \"Id\"; clock = \"Closed \\\"At\\\"; --\";\n"
			       " retain = \"1 month\"; %s } );\n",
			       extra);
	struct config *cfg = test_load_config(text, &errs);
	char *joined = test_errs_join(&errs);
	ck_assert_msg(cfg != NULL, "%s", joined);
	free(joined);
	free(text);
	config_errors_clear(&errs);
	return cfg;
}

static void column(struct policy_column *c, const char *quoted, const char *type, const char *eq)
{
	c->quoted = xstrdup(quoted);
	c->type = xstrdup(type);
	c->eq = xstrdup(eq);
	c->typmod = -1;
}

/* Adds a column to key K, whose quarantine key_type is then TYPE. */
static void key_column(struct policy_key *k, const char *quoted, const char *type, const char *eq, const char *key_type)
{
	k->columns = xrealloc(k->columns, (k->n + 1) * sizeof(*k->columns));
	column(&k->columns[k->n++], quoted, type, eq);
	free(k->type);
	k->type = xstrdup(key_type);
}

/* The description of public.t the server would give for the policy above. */
static void describe(struct policy_shape *s, const struct policy *p)
{
	memset(s, 0, sizeof(*s));
	s->oid = 16384;
	s->table = xstrdup("public.t");
	s->watched = xstrdup("{16384}");
	s->fingerprint = xstrdup("0123456789abcdef0123456789abcdef");
	key_column(&s->key, "\"Id\"", "numeric(10,2)", "OPERATOR(pg_catalog.=)", "numeric(10,2)");
	column(&s->clock, CLOCK, "timestamp with time zone", "OPERATOR(pg_catalog.=)");
	s->clock_columns = xcalloc(2, sizeof(*s->clock_columns));
	s->clock_columns[s->n_clock_columns++] = xstrdup(CLOCK);
	if (p->subject)
		column(&s->subject, "account_id", "public.citext", "OPERATOR(public.=)");
	if (p->exempt_column)
		column(&s->exempt, "purpose", "boolean", "OPERATOR(pg_catalog.=)");
	s->set_null = xcalloc(p->n_set_null + 1, sizeof(*s->set_null));
	for (size_t i = 0; i < p->n_set_null; i++)
		column(&s->set_null[s->n_set_null++], "\"e mail\"", "text", "OPERATOR(pg_catalog.=)");
	s->set = xcalloc(p->n_set + 1, sizeof(*s->set));
	for (size_t i = 0; i < p->n_set; i++)
		column(&s->set[s->n_set++], "name", "text", "OPERATOR(pg_catalog.=)");
	s->n_siblings = 2;
	s->siblings = xcalloc(2, sizeof(*s->siblings));
	s->siblings[0].name = xstrdup(p->name);
	key_column(&s->siblings[0].key, "\"Id\"", "numeric(10,2)", "OPERATOR(pg_catalog.=)", "numeric(10,2)");
	if (p->subject)
		column(&s->siblings[0].subject, "account_id", "public.citext", "OPERATOR(public.=)");
	/* Another policy on the same table, keyed by its e-mail column. */
	s->siblings[1].name = xstrdup("other");
	key_column(&s->siblings[1].key, "email", "public.citext", "OPERATOR(public.=)", "public.citext");
}

static void build(struct policy_sql *sql, struct policy_shape *shape, const struct config *cfg)
{
	const char *why = NULL;
	describe(shape, &cfg->policies[0]);
	ck_assert_msg(policy_sql_build(sql, &cfg->policies[0], shape, "i1", NULL, &why), "%s", why);
}

START_TEST(test_identifiers_are_quoted_values_are_parameters)
{
	struct config *cfg = load("subject = \"account_id\";");
	struct policy_shape shape;
	struct policy_sql sql;
	build(&sql, &shape, cfg);
	/* A quote in a column name is doubled inside a quoted identifier, so it stays a name. */
	ck_assert_ptr_nonnull(strstr(sql.lock, "ORDER BY t." CLOCK " LIMIT $5::integer FOR UPDATE OF t SKIP LOCKED"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "t.\"Id\"::text AS record_key"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "t.account_id::text AS subject"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "DELETE FROM public.t t USING due"));
	/* The purge touches exactly the rows the lock statement locked, by address. */
	ck_assert_ptr_nonnull(strstr(sql.purge,
				     "FROM ROWS FROM (pg_catalog.unnest($13::oid[]), pg_catalog.unnest($14::tid[]))"
				     " l(toid, tid) JOIN public.t t ON t.ctid = l.tid AND t.tableoid = l.toid"
				     " WHERE (SELECT ok FROM unchanged)"));
	/* ...and only if the table is still as it was described. */
	ck_assert_ptr_nonnull(strstr(sql.purge, "WITH watched AS (SELECT '{16384}'::pg_catalog.oid[] AS w, 16384::"));
	ck_assert_ptr_nonnull(strstr(sql.purge, " = '0123456789abcdef0123456789abcdef' AS ok"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "WHERE t.ctid = due.tid AND t.tableoid = due.toid RETURNING"));
	/* Values are parameters, never text in a statement. */
	ck_assert_ptr_null(strstr(sql.purge, "month"));
	ck_assert_ptr_null(strstr(sql.purge, "src"));
	ck_assert_ptr_null(strstr(sql.lock, "'other'"));
	ck_assert_str_eq(sql.params[POLICY_PARAM_RETAIN], "1 months 0 days 0 microseconds");
	ck_assert_str_eq(sql.params[POLICY_PARAM_SLACK], "4 days 0 hours");
	ck_assert_str_eq(sql.params[POLICY_PARAM_SOURCE], "src");
	ck_assert_str_eq(sql.params[POLICY_PARAM_INSTANCE], "i1");
	ck_assert_str_eq(sql.params[POLICY_PARAM_SIBLINGS], "{\"p\",\"other\"}");
	policy_sql_free(&sql);
	policy_shape_free(&shape);
	config_free(cfg);
}
END_TEST

/* Due, held, exempt and referenced are one text in every statement that decides or reports. */
START_TEST(test_one_predicate_everywhere)
{
	struct config *cfg = load("subject = \"account_id\"; exempt = { column = \"purpose\"; values = [ \"t\" ]; };");
	struct policy_shape shape;
	struct policy_sql sql;
	const char *due =
		"t." CLOCK " <= ((pg_catalog.statement_timestamp()) - $2::interval + $3::interval)"
		" AND CASE WHEN t." CLOCK " >= '291000-01-01 00:00:00+00'::timestamptz THEN"
		" 'infinity'::timestamptz ELSE t." CLOCK " END + $2::interval <= (pg_catalog.statement_timestamp())";
	const char *exempt = "(t.purpose IS NULL OR NOT t.purpose OPERATOR(pg_catalog.=) ANY ($4::text[]::boolean[]))";
	const char *held_key =
		"coalesce(t.\"Id\" OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.unnest(retention.cast_valid(a.v,"
		" NULL::numeric(10,2), -1)) FROM (SELECT (SELECT pg_catalog.array_agg(h.record_key)"
		" FROM retention.active_holds(ARRAY[($11::text[])[1]]) h";
	const char *held_other =
		"coalesce(t.email OPERATOR(public.=) ANY (SELECT pg_catalog.unnest(retention.cast_valid(a.v,"
		" NULL::public.citext, -1)) FROM (SELECT (SELECT pg_catalog.array_agg(h.record_key)"
		" FROM retention.active_holds(ARRAY[($11::text[])[2]]) h";
	const char *held_subject =
		"coalesce(t.account_id OPERATOR(public.=) ANY (SELECT pg_catalog.unnest(retention.cast_valid(a.v,"
		" NULL::public.citext, -1)) FROM (SELECT (SELECT pg_catalog.array_agg(h.subject)";
	const char *guard = "NOT EXISTS (SELECT 1 FROM shop.lines c WHERE t.\"Id\" OPERATOR(pg_catalog.=) c.order_id)";
	const char *statements[5];

	describe(&shape, &cfg->policies[0]);
	shape.n_guards = 1;
	shape.guards = xcalloc(1, sizeof(*shape.guards));
	shape.guards[0].sql = xstrdup(guard);
	shape.guards[0].what = xstrdup("referenced by shop.lines (foreign key lines_fk)");
	{
		const char *why = NULL;
		ck_assert_msg(policy_sql_build(&sql, &cfg->policies[0], &shape, "i1", NULL, &why), "%s", why);
	}
	statements[0] = sql.lock;
	statements[1] = sql.next_wake;
	statements[2] = sql.pending;
	statements[3] = sql.explain;
	statements[4] = sql.next_wake_checked;
	for (int i = 0; i < 5; i++) {
		ck_assert_msg(strstr(statements[i], exempt) || i == 3, "statement %d lacks the exempt test", i);
		ck_assert_msg(strstr(statements[i], held_key), "statement %d lacks the key hold test", i);
		ck_assert_msg(strstr(statements[i], held_other), "statement %d ignores the other policy's holds", i);
		ck_assert_msg(strstr(statements[i], held_subject), "statement %d lacks the subject hold test", i);
		ck_assert_msg(strstr(statements[i], guard) || i == 2, "statement %d ignores the reference", i);
	}
	ck_assert_ptr_nonnull(strstr(sql.lock, due));
	ck_assert_ptr_nonnull(strstr(sql.pending, due));
	ck_assert_ptr_nonnull(strstr(sql.explain, due));
	/* Rows referenced after they were locked are skipped by the purge itself. */
	ck_assert_ptr_nonnull(strstr(sql.purge, guard));
	/* The daemon skips what failed on its own, compared in the key's type. */
	ck_assert_msg(
		strstr(sql.lock,
		       "AND NOT coalesce(t.\"Id\" OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.unnest("
		       "retention.cast_valid(a.v, NULL::numeric(10,2), -1)) FROM (SELECT (SELECT"
		       " pg_catalog.array_agg(q.record_key) FROM retention.quarantine q WHERE q.policy"
		       " OPERATOR(pg_catalog.=) $1 AND q.key_type"
		       " OPERATOR(pg_catalog.=) 'numeric(10,2)' AND q.key_of OPERATOR(pg_catalog.=) 'public.t.\"Id\"'"
		       " AND (q.retry_at IS NULL OR q.retry_at"
		       " OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp())) AS v) a WHERE a.v IS NOT NULL), false)"),
		"%s", sql.lock);
	/* explain and hold placement name a record in the key column's type. */
	ck_assert_ptr_nonnull(strstr(sql.explain, "WHERE t.\"Id\" OPERATOR(pg_catalog.=) ($13)::text::numeric(10,2)"));
	ck_assert_ptr_eq(strstr(sql.canonical_key, "SELECT $13::text::numeric(10,2)::text, "), sql.canonical_key);
	ck_assert_ptr_eq(strstr(sql.canonical_subject, "SELECT $13::text::public.citext::text, "),
			 sql.canonical_subject);
	ck_assert_ptr_nonnull(strstr(sql.validate, "$4::text[]::boolean[] IS NOT NULL"));
	policy_sql_free(&sql);
	policy_shape_free(&shape);
	config_free(cfg);
}
END_TEST

START_TEST(test_anonymize)
{
	struct config *cfg = load("action = \"anonymize\"; set_null = [ \"e mail\" ];"
				  " set = ( { column = \"name\"; value = \"anonymous\"; } );");
	struct policy_shape shape;
	struct policy_sql sql;
	const char *params[POLICY_N_BASE_PARAMS + 4], *extra[2] = {"{1}", "{(0,1)}"};
	Oid types[POLICY_N_BASE_PARAMS + 4];
	build(&sql, &shape, cfg);
	ck_assert_ptr_nonnull(strstr(sql.purge, "UPDATE public.t t SET \"e mail\" = NULL, name = $15 FROM due"));
	ck_assert_ptr_nonnull(strstr(sql.validate, ", ($12::text[])[1]::text IS NULL"));
	/* The clock is left as it is: the row's own values say it stands anonymized. */
	ck_assert_ptr_null(strstr(sql.purge, CLOCK " = NULL"));
	/* A set column compares in its type's btree equality, never with a bare `=`. */
	ck_assert_ptr_nonnull(strstr(sql.lock,
				     " AND NOT (t.\"e mail\" IS NULL AND coalesce(t.name OPERATOR(pg_catalog.=)"
				     " ($12::text[])[1]::text, false))"));
	ck_assert_ptr_nonnull(strstr(sql.next_wake, " AND NOT (t.\"e mail\" IS NULL AND"));
	ck_assert_ptr_nonnull(strstr(sql.pending, " AND NOT (t.\"e mail\" IS NULL AND"));
	ck_assert_str_eq(sql.params[POLICY_PARAM_SET_VALUES], "{\"anonymous\"}");
	/* The purge's parameters: the base ones, the locked rows, then the set values. */
	ck_assert_int_eq(policy_params(&sql, params, types, extra, 2, true), POLICY_N_BASE_PARAMS + 3);
	ck_assert_str_eq(params[POLICY_N_BASE_PARAMS + 2], "anonymous");
	ck_assert_int_eq(types[POLICY_N_BASE_PARAMS + 2], 0);
	policy_sql_free(&sql);
	policy_shape_free(&shape);
	config_free(cfg);
}
END_TEST

/* A clock without a zone is read in the session's zone once, the same way in every predicate. */
START_TEST(test_timestamp_clock)
{
	struct config *cfg = load("");
	struct policy_shape shape;
	struct policy_sql sql;
	const char *why = NULL;
	describe(&shape, &cfg->policies[0]);
	shape.clock_kind = POLICY_CLOCK_TIMESTAMP;
	ck_assert(policy_sql_build(&sql, &cfg->policies[0], &shape, "i1", NULL, &why));
	ck_assert_ptr_nonnull(
		strstr(sql.lock,
		       "t." CLOCK " <= ((pg_catalog.statement_timestamp()) - $2::interval + $3::interval)::timestamp"
		       " AND CASE WHEN t." CLOCK " >= '291000-01-01 00:00:00'::timestamp THEN 'infinity'::timestamptz"
		       " ELSE t." CLOCK "::timestamptz END + $2::interval <= (pg_catalog.statement_timestamp())"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "ELSE t." CLOCK "::timestamptz END AS clock_at"));
	ck_assert_str_eq(sql.params[POLICY_PARAM_SLACK], "4 days 3 hours");
	/* The interval PostgreSQL reads: a unit twice ("3 hours 3 hours") it refuses. */
	policy_sql_free(&sql);
	policy_shape_free(&shape);
	config_free(cfg);
}
END_TEST

/* A description that lacks what a statement needs builds nothing. */
START_TEST(test_incomplete_description_refused)
{
	struct config *cfg = load("subject = \"account_id\";");
	struct policy_shape shape;
	struct policy_sql sql;
	const char *why = NULL;
	describe(&shape, &cfg->policies[0]);
	free(shape.subject.eq);
	shape.subject.eq = NULL;
	ck_assert(!policy_sql_build(&sql, &cfg->policies[0], &shape, "i1", NULL, &why));
	ck_assert_ptr_nonnull(strstr(why, "subject column"));
	policy_shape_free(&shape);
	config_free(cfg);
}
END_TEST

START_TEST(test_slack)
{
	struct duration d = {0, 0, 15LL * 60 * 1000000};
	char buf[32];
	policy_slack(&d, false, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 days 0 hours");
	policy_slack(&d, true, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 days 3 hours");
	d.days = 90;
	policy_slack(&d, false, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 days 3 hours");
	policy_slack(&d, true, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 days 6 hours");
	d.months = 6;
	policy_slack(&d, false, buf, sizeof(buf));
	ck_assert_str_eq(buf, "4 days 0 hours");
}
END_TEST

START_TEST(test_text_array_escaping)
{
	char *values[] = {"plain", "with \"quote\"", "back\\slash", "{brace},comma"};
	char *a = policy_text_array(values, 4);
	char **back;
	size_t n;
	ck_assert_str_eq(a, "{\"plain\",\"with \\\"quote\\\"\",\"back\\\\slash\",\"{brace},comma\"}");
	back = policy_text_array_parse(a, &n);
	ck_assert_int_eq(n, 4);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_eq(back[i], values[i]);
	ck_assert_ptr_null(back[4]);
	policy_text_array_free(back);
	free(a);
	/* As PostgreSQL prints it: bare where it can, NULL elements dropped. */
	back = policy_text_array_parse("{42,\"a b\",NULL,\"NULL\"}", &n);
	ck_assert_int_eq(n, 3);
	ck_assert_str_eq(back[0], "42");
	ck_assert_str_eq(back[1], "a b");
	ck_assert_str_eq(back[2], "NULL");
	policy_text_array_free(back);
	a = policy_text_array(NULL, 0);
	ck_assert_str_eq(a, "{}");
	free(a);
}
END_TEST

/* F9 (first deployment): "at most 10368055.033 s after due" needed a calculator. */
START_TEST(test_durations_for_people)
{
	char buf[48];
	ck_assert_str_eq(seconds_for_people(0.0114, buf, sizeof(buf)), "0.011 s");
	ck_assert_str_eq(seconds_for_people(59.9994, buf, sizeof(buf)), "59.999 s");
	ck_assert_str_eq(seconds_for_people(250.7, buf, sizeof(buf)), "4 min 10 s");
	ck_assert_str_eq(seconds_for_people(3 * 3600 + 5 * 60 + 59, buf, sizeof(buf)), "3 h 5 min");
	ck_assert_str_eq(seconds_for_people(86400 + 7200, buf, sizeof(buf)), "1 day 2 h");
	ck_assert_str_eq(seconds_for_people(10368055.033, buf, sizeof(buf)), "120 days 0 h");
	ck_assert_str_eq(seconds_for_people(-2591987.183, buf, sizeof(buf)), "-29 days 23 h");
	ck_assert_str_eq(seconds_for_people(1.0 / 0.0, buf, sizeof(buf)), "forever");
	ck_assert_str_eq(seconds_for_people(-1.0 / 0.0, buf, sizeof(buf)), "-forever");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = test_tcase("sql", 30);
	tcase_add_test(tc, test_identifiers_are_quoted_values_are_parameters);
	tcase_add_test(tc, test_one_predicate_everywhere);
	tcase_add_test(tc, test_anonymize);
	tcase_add_test(tc, test_timestamp_clock);
	tcase_add_test(tc, test_durations_for_people);
	tcase_add_test(tc, test_incomplete_description_refused);
	tcase_add_test(tc, test_slack);
	tcase_add_test(tc, test_text_array_escaping);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
