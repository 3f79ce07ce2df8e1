/* The SQL built for a policy: quoting, parameters, and the one "due" predicate. */
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "testutil.h"
#include "util.h"

static PGconn *offline;

/* PQescapeIdentifier needs a connection object, not a live connection. */
static void setup(void) { offline = PQconnectStart("host=/nonexistent-retention-test-dir"); }

static void teardown(void) { PQfinish(offline); }

static struct config *load(const char *extra)
{
	struct config_errors errs = {NULL, 0};
	char *text = xasprintf("policies = ( { name = \"p\"; service = \"s\"; source = \"src\";\n"
			       " table = \"t\"; key = \"Id\"; clock = \"Closed \\\"At\\\"; --\";\n"
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

START_TEST(test_identifiers_are_quoted)
{
	struct config *cfg = load("subject = \"account_id\";");
	struct policy_sql sql;
	ck_assert(policy_sql_build(&sql, &cfg->policies[0], "public.t", "i1", offline));
	/* A quote in a column name is doubled inside a quoted identifier, so it stays a name. */
	ck_assert_ptr_nonnull(strstr(sql.purge, "t.\"Closed \"\"At\"\"; --\""));
	ck_assert_ptr_nonnull(strstr(sql.purge, "t.ctid = ANY (ARRAY(SELECT tid FROM due))"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "t.\"Id\"::text AS record_key"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "WHERE t.\"Id\" IS NOT NULL AND "));
	ck_assert_ptr_nonnull(strstr(sql.purge, "t.\"account_id\"::text AS subject"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "DELETE FROM public.t t USING due"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "FOR UPDATE OF t SKIP LOCKED"));
	/* Values are parameters, never text in the statement. */
	ck_assert_ptr_null(strstr(sql.purge, "month"));
	ck_assert_ptr_null(strstr(sql.purge, "src"));
	ck_assert_str_eq(sql.params[POLICY_PARAM_RETAIN], "1 months 0 days 0 microseconds");
	ck_assert_str_eq(sql.params[POLICY_PARAM_SLACK], "4 days");
	ck_assert_str_eq(sql.params[POLICY_PARAM_SOURCE], "src");
	ck_assert_str_eq(sql.params[POLICY_PARAM_INSTANCE], "i1");
	ck_assert_int_eq(sql.n_params, POLICY_N_BASE_PARAMS);
	policy_sql_free(&sql);
	config_free(cfg);
}
END_TEST

START_TEST(test_due_predicate_shared)
{
	struct config *cfg = load("");
	struct policy_sql sql;
	const char *due = "t.\"Closed \"\"At\"\"; --\" + $2::interval <= (statement_timestamp())";
	ck_assert(policy_sql_build(&sql, &cfg->policies[0], "public.t", "i1", offline));
	ck_assert_ptr_nonnull(strstr(sql.purge, due));
	ck_assert_ptr_nonnull(strstr(sql.pending, due));
	ck_assert_ptr_nonnull(strstr(sql.explain, due));
	/* Without a subject column, holds match on the key alone. */
	ck_assert_ptr_null(strstr(sql.purge, "h.subject"));
	ck_assert_ptr_nonnull(strstr(sql.next_wake, "t.\"Id\"::text IN (SELECT h.record_key"));
	policy_sql_free(&sql);
	config_free(cfg);
}
END_TEST

START_TEST(test_exempt_and_anonymize)
{
	struct config *cfg = load("action = \"anonymize\"; set_null = [ \"e mail\" ];"
				  " set = ( { column = \"name\"; value = \"anonymous\"; } );"
				  " exempt = { column = \"purpose\"; values = [ \"a\\\"b\", \"c\" ]; };");
	struct policy_sql sql;
	ck_assert(policy_sql_build(&sql, &cfg->policies[0], "public.t", "i1", offline));
	ck_assert_ptr_nonnull(strstr(sql.purge, "UPDATE public.t t SET \"e mail\" = NULL, \"name\" = $11, "
						"\"Closed \"\"At\"\"; --\" = NULL FROM due"));
	ck_assert_ptr_nonnull(strstr(sql.purge, "(t.\"purpose\" IS NULL OR t.\"purpose\"::text <> ALL ($4::text[]))"));
	ck_assert_str_eq(sql.params[POLICY_PARAM_EXEMPT_VALUES], "{\"a\\\"b\",\"c\"}");
	ck_assert_int_eq(sql.n_params, POLICY_N_BASE_PARAMS + 1);
	ck_assert_str_eq(sql.params[POLICY_N_BASE_PARAMS], "anonymous");
	policy_sql_free(&sql);
	config_free(cfg);
}
END_TEST

START_TEST(test_slack)
{
	struct duration d = {0, 0, 15LL * 60 * 1000000};
	char buf[32];
	policy_slack(&d, buf, sizeof(buf));
	ck_assert_str_eq(buf, "0 seconds");
	d.days = 90;
	policy_slack(&d, buf, sizeof(buf));
	ck_assert_str_eq(buf, "3 hours");
	d.months = 6;
	policy_slack(&d, buf, sizeof(buf));
	ck_assert_str_eq(buf, "4 days");
}
END_TEST

START_TEST(test_text_array_escaping)
{
	char *values[] = {"plain", "with \"quote\"", "back\\slash", "{brace},comma"};
	char *a = policy_text_array(values, 4);
	ck_assert_str_eq(a, "{\"plain\",\"with \\\"quote\\\"\",\"back\\\\slash\",\"{brace},comma\"}");
	free(a);
	a = policy_text_array(NULL, 0);
	ck_assert_str_eq(a, "{}");
	free(a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("sql");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_identifiers_are_quoted);
	tcase_add_test(tc, test_due_predicate_shared);
	tcase_add_test(tc, test_exempt_and_anonymize);
	tcase_add_test(tc, test_slack);
	tcase_add_test(tc, test_text_array_escaping);
	suite_add_tcase(s, tc);
	return test_run_suite(s);
}
