/* The configuration loader: every key, its defaults, and one message per problem. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "util.h"

#define POLICY_BODY(extra)                                                                                             \
	"  { name = \"virusdesk-scan-uploads\"; service = \"VirusDesk\";\n"                                            \
	"    source = \"privacy policy: VirusDesk, online scan\";\n"                                                   \
	"    table = \"virusdesk.uploads\"; key = \"id\"; clock = \"scan_completed_at\";\n"                            \
	"    retain = \"15 minutes\"; " extra " }\n"

#define ONE_POLICY(extra) "policies = (\n" POLICY_BODY(extra) ");\n"

#define RETAIN_POLICY(retain)                                                                                          \
	"policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"                               \
	"  key = \"id\"; clock = \"c\"; retain = \"" retain "\"; } );\n"

static struct config_errors errs;

static void setup(void) { memset(&errs, 0, sizeof(errs)); }

static void teardown(void) { config_errors_clear(&errs); }

/* Loads TEXT expecting exactly one problem containing every fragment. */
static void expect_one_error(const char *text, ...)
{
	struct config *cfg = test_load_config(text, &errs);
	char *joined = test_errs_join(&errs);
	va_list ap;
	const char *frag;
	ck_assert_msg(cfg == NULL, "accepted: %s", text);
	ck_assert_msg(errs.n == 1, "expected one problem, got %zu: %s", errs.n, joined);
	va_start(ap, text);
	while ((frag = va_arg(ap, const char *)) != NULL)
		ck_assert_msg(strstr(errs.lines[0], frag) != NULL, "\"%s\" not in %s", frag, joined);
	va_end(ap);
	/* Every message names the file and a line. */
	ck_assert_msg(strstr(errs.lines[0], "/tmp/retention-test.") == errs.lines[0], "%s", joined);
	free(joined);
}

START_TEST(test_minimal_policy_gets_defaults)
{
	struct config *cfg = test_load_config(ONE_POLICY(""), &errs);
	char *joined = test_errs_join(&errs);
	const struct policy *p;
	ck_assert_msg(cfg != NULL, "%s", joined);
	free(joined);
	ck_assert_str_eq(cfg->conninfo, "");
	ck_assert_str_eq(cfg->time_zone, "UTC");
	ck_assert_int_eq(cfg->resync_interval.usecs, 60LL * 1000000);
	ck_assert_int_eq(cfg->statement_timeout.usecs, 60LL * 1000000);
	ck_assert_int_eq(cfg->lock_timeout.usecs, 5LL * 1000000);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
	ck_assert(cfg->instance != NULL && cfg->instance[0] != '\0');
	ck_assert_uint_eq(cfg->n_policies, 1);
	p = &cfg->policies[0];
	ck_assert_str_eq(p->name, "virusdesk-scan-uploads");
	ck_assert_int_eq(p->action, POLICY_ACTION_DELETE);
	ck_assert_int_eq(p->batch, CONFIG_BATCH_DEFAULT);
	ck_assert_ptr_null(p->subject);
	ck_assert_ptr_null(p->exempt_column);
	ck_assert_int_eq(p->retain.usecs, 15LL * 60 * 1000000);
	ck_assert_str_eq(p->retain_text, "15 minutes");
	config_free(cfg);
}
END_TEST

START_TEST(test_every_key_is_read)
{
	const char *text =
		"database = { conninfo = \"dbname=app\"; time_zone = \"Europe/Berlin\";\n"
		"  statement_timeout = \"2 minutes\"; lock_timeout = \"1 second\"; };\n"
		"daemon = { instance = \"data-01\"; resync_interval = \"30 seconds\"; log_level = \"debug\"; };\n"
		"policies = (\n"
		"  { name = \"chat\"; service = \"Live Web Chat\"; source = \"s\"; table = \"\\\"Crm Data\\\".\\\"Notes\\\"\";\n"
		"    key = \"id\"; clock = \"Closed At\"; retain = \"1 month\"; action = \"anonymize\";\n"
		"    subject = \"account_id\"; batch = 100;\n"
		"    exempt = { column = \"purpose\"; values = [ \"vulnerability_monitoring\", \"legal\" ]; };\n"
		"    set_null = [ \"email\", \"phone\" ];\n"
		"    set = ( { column = \"name\"; value = \"anonymous\"; } ); }\n"
		");\n";
	struct config *cfg = test_load_config(text, &errs);
	char *joined = test_errs_join(&errs);
	const struct policy *p;
	ck_assert_msg(cfg != NULL, "%s", joined);
	free(joined);
	ck_assert_str_eq(cfg->conninfo, "dbname=app");
	ck_assert_str_eq(cfg->time_zone, "Europe/Berlin");
	ck_assert_int_eq(cfg->statement_timeout.usecs, 120LL * 1000000);
	ck_assert_int_eq(cfg->lock_timeout.usecs, 1000000);
	ck_assert_str_eq(cfg->instance, "data-01");
	ck_assert_int_eq(cfg->resync_interval.usecs, 30LL * 1000000);
	ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
	p = config_find_policy(cfg, "chat");
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p->table, "\"Crm Data\".\"Notes\"");
	ck_assert_str_eq(p->clock, "Closed At");
	ck_assert_int_eq(p->retain.months, 1);
	ck_assert_int_eq(p->action, POLICY_ACTION_ANONYMIZE);
	ck_assert_str_eq(p->subject, "account_id");
	ck_assert_int_eq(p->batch, 100);
	ck_assert_str_eq(p->exempt_column, "purpose");
	ck_assert_uint_eq(p->n_exempt_values, 2);
	ck_assert_str_eq(p->exempt_values[1], "legal");
	ck_assert_uint_eq(p->n_set_null, 2);
	ck_assert_str_eq(p->set_null[1], "phone");
	ck_assert_uint_eq(p->n_set, 1);
	ck_assert_str_eq(p->set[0].column, "name");
	ck_assert_str_eq(p->set[0].value, "anonymous");
	config_free(cfg);
}
END_TEST

START_TEST(test_unknown_key)
{
	expect_one_error(ONE_POLICY("retian = \"1 day\";"), ":5:", "policies[0]", "unknown key \"retian\"", NULL);
	config_errors_clear(&errs);
	expect_one_error("daemon = { loglevel = \"info\"; };\n" ONE_POLICY(""), ":1:", "daemon",
			 "unknown key \"loglevel\"", NULL);
}
END_TEST

START_TEST(test_missing_required_key)
{
	expect_one_error("policies = ( { name = \"a\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			 "  key = \"id\"; retain = \"1 day\"; } );\n",
			 "policies[0] (a).clock", "missing required key", NULL);
	config_errors_clear(&errs);
	expect_one_error("daemon = { };\n", "policies", "missing required key", NULL);
}
END_TEST

START_TEST(test_duplicate_policy_name)
{
	expect_one_error("policies = (\n" POLICY_BODY("") "," POLICY_BODY("") ");\n", ":6:", "policies[1].name",
			 "duplicate policy name \"virusdesk-scan-uploads\"", NULL);
}
END_TEST

START_TEST(test_invalid_policy_name)
{
	expect_one_error("policies = ( { name = \"VirusDesk Uploads\"; service = \"s\"; source = \"s\";\n"
			 " table = \"t\"; key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n",
			 ":1:", "policies[0].name", "invalid policy name \"VirusDesk Uploads\"", NULL);
}
END_TEST

START_TEST(test_bad_duration)
{
	expect_one_error(RETAIN_POLICY("15 minuts"), ":2:", "policies[0] (p).retain", "invalid duration \"15 minuts\"",
			 "unknown unit", NULL);
	config_errors_clear(&errs);
	expect_one_error(RETAIN_POLICY("-1 day"), "retain", "expected a number", NULL);
	config_errors_clear(&errs);
	expect_one_error(RETAIN_POLICY("0"), "retain", "missing unit", NULL);
	config_errors_clear(&errs);
	expect_one_error(RETAIN_POLICY("-0 seconds"), "retain", "expected a number", NULL);
	config_errors_clear(&errs);
	expect_one_error("daemon = { resync_interval = \"1 month\"; };\n" ONE_POLICY(""), "daemon.resync_interval",
			 "no months", NULL);
	config_errors_clear(&errs);
	expect_one_error("daemon = { quarantine_retry = \"1 month\"; };\n" ONE_POLICY(""), "daemon.quarantine_retry",
			 "no months", NULL);
	config_errors_clear(&errs);
	expect_one_error("daemon = { quarantine_retry = \"-1 hour\"; };\n" ONE_POLICY(""), "daemon.quarantine_retry",
			 "expected a number", NULL);
}
END_TEST

/* daemon.metrics_listen: off unless set; host:port, [v6]:port or unix:/path, each named wrong in one line. */
START_TEST(test_metrics_listen)
{
	static const char *const good[] = {"127.0.0.1:9752", "[::1]:9752", "localhost:1", "unix:/run/r/metrics.sock",
					   ""};
	static const char *const bad[][2] = {
		{"localhost", "must be \"host:port\""},
		{"127.0.0.1:0", "port must be a number from 1 to 65535"},
		{"127.0.0.1:70000", "from 1 to 65535"},
		{"127.0.0.1:97x", "from 1 to 65535"},
		{"::1:9752", "IPv6 address goes in brackets"},
		{"unix:metrics.sock", "must be absolute"},
		{":9752", "must be \"host:port\""},
	};
	struct config *cfg = test_load_config(ONE_POLICY(""), &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_str_eq(cfg->metrics_listen, "");
	config_free(cfg);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char *text = xasprintf("daemon = { metrics_listen = \"%s\"; };\n" ONE_POLICY(""), good[i]);
		cfg = test_load_config(text, &errs);
		ck_assert_msg(cfg != NULL, "%s refused", good[i]);
		ck_assert_str_eq(cfg->metrics_listen, good[i]);
		config_free(cfg);
		free(text);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = xasprintf("daemon = { metrics_listen = \"%s\"; };\n" ONE_POLICY(""), bad[i][0]);
		config_errors_clear(&errs);
		expect_one_error(text, ":1:", "daemon.metrics_listen", bad[i][1], NULL);
		free(text);
	}
}
END_TEST

/* daemon.quarantine_retry: an hour unless set; zero (by hand only) is allowed where a retain of zero is not. */
START_TEST(test_quarantine_retry)
{
	struct config *cfg = test_load_config(ONE_POLICY(""), &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->quarantine_retry.usecs, 3600LL * 1000000);
	config_free(cfg);
	cfg = test_load_config("daemon = { quarantine_retry = \"0 seconds\"; };\n" ONE_POLICY(""), &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->quarantine_retry.usecs + cfg->quarantine_retry.days + cfg->quarantine_retry.months, 0);
	config_free(cfg);
}
END_TEST

/* The guardrails: guard_records and max_purge_rate are counts, max_replication_lag a duration that may be zero. */
START_TEST(test_guardrail_keys)
{
	struct config *cfg = test_load_config(ONE_POLICY(""), &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->guard_records, 10000);
	ck_assert_int_eq(cfg->policies[0].guard_records, 10000);
	ck_assert_int_eq(cfg->max_purge_rate, 0);
	config_free(cfg);
	cfg = test_load_config(
		"daemon = { guard_records = 0; max_purge_rate = 2000; };\n"
		"database = { max_replication_lag = \"30 seconds\"; };\n" ONE_POLICY("guard_records = 7;"),
		&errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->guard_records, 0);
	ck_assert_int_eq(cfg->policies[0].guard_records, 7);
	ck_assert_int_eq(cfg->max_purge_rate, 2000);
	ck_assert_int_eq(cfg->max_replication_lag.usecs, 30LL * 1000000);
	config_free(cfg);
	expect_one_error("daemon = { max_purge_rate = -1; };\n" ONE_POLICY(""), "daemon.max_purge_rate", "out of range",
			 NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("guard_records = \"many\";"), ".guard_records", "must be an integer", NULL);
	config_errors_clear(&errs);
	expect_one_error("database = { max_replication_lag = \"1 month\"; };\n" ONE_POLICY(""),
			 "database.max_replication_lag", "no months", NULL);
	config_errors_clear(&errs);
}
END_TEST

/* clock_unit: one of three units, or none; retain may be zero, for a clock that is the deadline. */
START_TEST(test_clock_keys)
{
	struct config *cfg = test_load_config(ONE_POLICY(""), &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->policies[0].clock_unit, POLICY_CLOCK_UNIT_NONE);
	config_free(cfg);
	cfg = test_load_config(
		"policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
		"  key = \"id\"; clock = \"c\"; clock_unit = \"milliseconds\"; retain = \"0 seconds\"; } );\n",
		&errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->policies[0].clock_unit, POLICY_CLOCK_UNIT_MILLISECONDS);
	ck_assert_int_eq(cfg->policies[0].retain.usecs, 0);
	ck_assert_str_eq(policy_clock_unit_name(cfg->policies[0].clock_unit), "milliseconds");
	config_free(cfg);
	cfg = test_load_config("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			       "  key = \"id\"; clock = [ \"seen\", \"made\" ]; retain = \"1 day\"; } );\n",
			       &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->policies[0].n_clocks, 2);
	ck_assert_str_eq(cfg->policies[0].clocks[1], "made");
	ck_assert_str_eq(cfg->policies[0].clock, "seen, made");
	config_free(cfg);
	expect_one_error("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			 "  key = \"id\"; clock = [ \"seen\", \"seen\" ]; retain = \"1 day\"; } );\n",
			 ":2:", "policies[0] (p).clock", "names column \"seen\" twice", NULL);
	config_errors_clear(&errs);
	expect_one_error("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			 "  key = \"id\"; clock = [ ]; retain = \"1 day\"; } );\n",
			 "policies[0] (p).clock", "must name 1 to 4 columns", NULL);
	config_errors_clear(&errs);
	/* A composite key is a list as a clock is, in the same words. */
	cfg = test_load_config("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			       "  key = [ \"user_id\", \"device_id\" ]; clock = \"c\"; retain = \"1 day\";\n"
			       "  action = \"anonymize\"; set_null = [ \"ip\" ]; } );\n",
			       &errs);
	ck_assert_ptr_nonnull(cfg);
	ck_assert_int_eq(cfg->policies[0].n_keys, 2);
	ck_assert_str_eq(cfg->policies[0].keys[1], "device_id");
	ck_assert_str_eq(cfg->policies[0].key, "user_id, device_id");
	config_free(cfg);
	expect_one_error("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			 "  key = [ \"a\", \"a\" ]; clock = \"c\"; retain = \"1 day\"; } );\n",
			 ":2:", "policies[0] (p).key", "names column \"a\" twice", NULL);
	config_errors_clear(&errs);
	expect_one_error("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			 "  key = [ ]; clock = \"c\"; retain = \"1 day\"; } );\n",
			 "policies[0] (p).key", "must name 1 to 8 columns", NULL);
	config_errors_clear(&errs);
	/* Each column of a composite key is the key: anonymizing one would change the record's name. */
	expect_one_error("policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
			 "  key = [ \"a\", \"b\" ]; clock = \"c\"; retain = \"1 day\";\n"
			 "  action = \"anonymize\"; set_null = [ \"b\" ]; } );\n",
			 "policies[0] (p).set_null", "column \"b\" is the key", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("clock_unit = \"minutes\";"),
			 ":5:", "policies[0] (virusdesk-scan-uploads).clock_unit",
			 "must be \"seconds\", \"milliseconds\" or \"microseconds\"", NULL);
	config_errors_clear(&errs);
}
END_TEST

START_TEST(test_bad_identifier)
{
	expect_one_error(ONE_POLICY("subject = \"\";"), "policies[0] (virusdesk-scan-uploads).subject",
			 "empty identifier", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"a234567890123456789012345678901234567890123456789012345678901234\";"),
			 ".subject", "longer than 63 bytes", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"bad\\xff\";"), ".subject", "not valid UTF-8", NULL);
	config_errors_clear(&errs);
	expect_one_error("policies = ( { name = \"a\"; service = \"s\"; source = \"s\"; table = \"a.b.c\";\n"
			 " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n",
			 ".table", "more than two parts", NULL);
}
END_TEST

START_TEST(test_batch_out_of_range)
{
	expect_one_error(ONE_POLICY("batch = 0;"), ".batch", "out of range", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("batch = 1000000;"), ".batch", "out of range", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("batch = \"10\";"), ".batch", "must be an integer", NULL);
}
END_TEST

START_TEST(test_exempt_without_values)
{
	expect_one_error(ONE_POLICY("exempt = { column = \"purpose\"; };"), ".exempt.values", "missing required key",
			 NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("exempt = { column = \"purpose\"; values = [ ]; };"), ".exempt.values",
			 "at least one value", NULL);
}
END_TEST

START_TEST(test_anonymize_without_columns)
{
	expect_one_error(ONE_POLICY("action = \"anonymize\";"), ".action", "needs set_null or set", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("action = \"shred\";"), ".action", "\"delete\" or \"anonymize\"", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("set_null = [ \"email\" ];"), ".set_null", "only meaningful", NULL);
}
END_TEST

/* Review of F16: an UPDATE cannot assign a column twice; a changed key is another record. */
START_TEST(test_anonymized_columns_once_and_never_the_key)
{
	expect_one_error(ONE_POLICY("action = \"anonymize\"; set_null = [ \"email\" ];"
				    " set = ( { column = \"email\"; value = \"x\"; } );"),
			 ".set:", "column \"email\" is anonymized twice", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("action = \"anonymize\"; set_null = [ \"id\" ];"),
			 ".set_null:", "column \"id\" is the key", NULL);
}
END_TEST

/* Two anonymize policies storing different things in one column undid each other at every batch. */
START_TEST(test_anonymize_policies_on_one_table_agree)
{
	expect_one_error(
		"policies = (\n" POLICY_BODY(
			"action = \"anonymize\"; set = ( { column = \"email\"; value ="
			" \"redacted\"; } );") ",\n"
					       "  { name = \"second\"; service = \"s\"; source = \"s\"; table = \"VirusDesk.uploads\";"
					       " key = \"id\"; clock = \"deleted_at\"; retain = \"1 day\"; action = \"anonymize\";"
					       " set_null = [ \"email\", \"name\" ]; } );\n",
		"policies[1] (second).set_null",
		"anonymizes column \"email\" of VirusDesk.uploads otherwise than"
		" policy virusdesk-scan-uploads",
		NULL);
}
END_TEST

START_TEST(test_several_problems_all_reported)
{
	struct config *cfg = test_load_config(ONE_POLICY("batch = 0; subject = \"\"; action = \"x\";"), &errs);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(errs.n, 3);
}
END_TEST

START_TEST(test_syntax_error_names_line)
{
	expect_one_error("daemon = {\n  log_level = \n};\n", ":3:", "syntax error", NULL);
}
END_TEST

/* libconfig 1.5 calls exit() on this input; the loader must survive it. */
START_TEST(test_include_of_directory_is_contained)
{
	expect_one_error("@include \".\"\n", "parser gave up", "@include", NULL);
}
END_TEST

START_TEST(test_include_of_fifo_is_contained)
{
	char *dir = xstrdup("/tmp/retention-fifo.XXXXXX");
	char *fifo, *conf;
	FILE *f;
	struct config *cfg;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	fifo = xasprintf("%s/pipe", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	conf = xasprintf("%s/retentiond.conf", dir);
	f = fopen(conf, "w");
	fputs("@include \"pipe\"\n", f);
	fclose(f);
	/* The loader's deadline is 10 s; Check's timeout for this case is larger. */
	cfg = config_load(conf, &errs);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(test_errs_single(&errs, "longer than", "FIFO", NULL), "%s", errs.lines[0]);
	unlink(conf);
	unlink(fifo);
	rmdir(dir);
	free(conf);
	free(fifo);
	free(dir);
}
END_TEST

START_TEST(test_include_relative_to_config_file)
{
	char *dir = xstrdup("/tmp/retention-inc.XXXXXX");
	char *inc, *main_path, *text;
	FILE *f;
	struct config *cfg;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	inc = xasprintf("%s/policies.inc", dir);
	f = fopen(inc, "w");
	fputs(ONE_POLICY(""), f);
	fclose(f);
	main_path = xasprintf("%s/retentiond.conf", dir);
	f = fopen(main_path, "w");
	fputs("daemon = { instance = \"x\"; };\n@include \"policies.inc\"\n", f);
	fclose(f);
	cfg = config_load(main_path, &errs);
	text = test_errs_join(&errs);
	ck_assert_msg(cfg != NULL, "%s", text);
	ck_assert_uint_eq(cfg->n_policies, 1);
	config_free(cfg);
	unlink(inc);
	unlink(main_path);
	rmdir(dir);
	free(text);
	free(inc);
	free(main_path);
	free(dir);
}
END_TEST

/* The error named the main file, with the included file's line number. */
START_TEST(test_an_error_in_an_include_names_that_file)
{
	char *dir = xstrdup("/tmp/retention-inc.XXXXXX");
	char *inc, *main_path, *want;
	FILE *f;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	inc = xasprintf("%s/policies.inc", dir);
	f = fopen(inc, "w");
	fputs(ONE_POLICY("batch = 0;"), f);
	fclose(f);
	main_path = xasprintf("%s/retentiond.conf", dir);
	f = fopen(main_path, "w");
	fputs("daemon = { instance = \"x\"; };\n@include \"policies.inc\"\n", f);
	fclose(f);
	ck_assert_ptr_null(config_load(main_path, &errs));
	want = xasprintf("%s:", inc);
	ck_assert_msg(test_errs_single(&errs, want, "batch", NULL), "%s", test_errs_join(&errs));
	unlink(inc);
	unlink(main_path);
	rmdir(dir);
	free(want);
	free(inc);
	free(main_path);
	free(dir);
}
END_TEST

/* A key_file that is not a string was reported twice: not a string, and missing. */
START_TEST(test_a_key_file_of_the_wrong_type_is_one_error)
{
	expect_one_error("audit = {\n  key_file = 5;\n};\n" ONE_POLICY(""), ":2: audit.key_file: must be a string",
			 NULL);
}
END_TEST

/* Issue 11: what a data subject's request does to a policy. */
START_TEST(test_identity_and_on_erasure)
{
	struct config *cfg = test_load_config(ONE_POLICY("subject = \"account_id\";"), &errs);
	ck_assert_msg(cfg != NULL, "%s", test_errs_join(&errs));
	ck_assert_str_eq(cfg->policies[0].identity, "account_id");
	ck_assert_int_eq(cfg->policies[0].on_erasure, POLICY_ERASURE_PURGE);
	ck_assert_ptr_null(cfg->policies[0].erasure_exception);
	config_free(cfg);
	cfg = test_load_config(ONE_POLICY("subject = \"account_id\"; identity = \"account\"; on_erasure = \"keep\";"
					  " erasure_exception = \"tax law: invoices 10 years\";"),
			       &errs);
	ck_assert_msg(cfg != NULL, "%s", test_errs_join(&errs));
	ck_assert_str_eq(cfg->policies[0].identity, "account");
	ck_assert_int_eq(cfg->policies[0].on_erasure, POLICY_ERASURE_KEEP);
	ck_assert_str_eq(cfg->policies[0].erasure_exception, "tax law: invoices 10 years");
	config_free(cfg);
	cfg = test_load_config(ONE_POLICY(""), &errs);
	ck_assert_ptr_null(cfg->policies[0].identity);
	config_free(cfg);
	expect_one_error(ONE_POLICY("identity = \"account\";"), ".identity: needs subject", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"a\"; identity = \"Account=1\";"), ".identity: invalid identity", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"a\"; on_erasure = \"archive\";"),
			 ".on_erasure: must be \"purge\" or \"keep\"", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"a\"; on_erasure = \"keep\";"),
			 ".erasure_exception: on_erasure = \"keep\" needs the reason", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"a\"; on_erasure = \"keep\"; erasure_exception = \"\";"),
			 ".erasure_exception: on_erasure = \"keep\" needs the reason", NULL);
	config_errors_clear(&errs);
	expect_one_error(ONE_POLICY("subject = \"a\"; erasure_exception = \"why\";"),
			 ".erasure_exception: only meaningful with on_erasure = \"keep\"", NULL);
	config_errors_clear(&errs);
}
END_TEST

START_TEST(test_missing_file)
{
	struct config *cfg = config_load("/nonexistent/retentiond.conf", &errs);
	ck_assert_ptr_null(cfg);
	ck_assert(test_errs_single(&errs, "/nonexistent/retentiond.conf", "cannot open", NULL));
}
END_TEST

START_TEST(test_duration_units)
{
	struct duration d;
	const char *why;
	char sql[96];
	ck_assert(duration_parse("24 hours", &d, &why));
	ck_assert(d.months == 0 && d.days == 0 && d.usecs == 24LL * 3600 * 1000000);
	ck_assert(duration_parse("1 calendar month", &d, &why) == false);
	ck_assert(duration_parse("6 months", &d, &why));
	ck_assert_int_eq(d.months, 6);
	ck_assert(duration_parse("90 days", &d, &why));
	ck_assert_int_eq(d.days, 90);
	ck_assert(duration_parse("1 year 2 weeks 3 h", &d, &why));
	ck_assert(d.months == 12 && d.days == 14 && d.usecs == 3LL * 3600 * 1000000);
	duration_to_sql(&d, sql, sizeof(sql));
	ck_assert_str_eq(sql, "12 months 14 days 10800000000 microseconds");
	ck_assert(!duration_parse("", &d, &why));
	ck_assert(!duration_parse("15", &d, &why));
	ck_assert(!duration_parse("2000 years", &d, &why));
	ck_assert(!duration_parse("99999999999999999999 seconds", &d, &why));
}
END_TEST

/*
 * D16: PostgreSQL takes these timeouts in whole milliseconds and reads 0 as
 * "no timeout": a month (no fixed length) or less than a millisecond used to
 * be sent as 0, so one stuck batch could hang the daemon's only connection.
 */
START_TEST(test_timeouts_must_be_real_timeouts)
{
	static const char *const refused[] = {"1 month", "100 microseconds", "30 days"};
	struct config *cfg;
	long long ms = 0;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		char *text = xasprintf("database = { lock_timeout = \"%s\"; };\n"
				       "policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";"
				       " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n",
				       refused[i]);
		expect_one_error(text, "database.lock_timeout", "between 1 millisecond and 24 days", NULL);
		config_errors_clear(&errs);
		free(text);
	}
	cfg = test_load_config("database = { statement_timeout = \"1500 microseconds\"; lock_timeout = \"1 ms\"; };\n"
			       "policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";"
			       " key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n",
			       &errs);
	ck_assert_ptr_nonnull(cfg);
	/* Rounded up, never down to the 0 that means none. */
	ck_assert(duration_to_ms(&cfg->statement_timeout, &ms));
	ck_assert_int_eq(ms, 2);
	ck_assert(duration_to_ms(&cfg->lock_timeout, &ms));
	ck_assert_int_eq(ms, 1);
	config_free(cfg);
}
END_TEST

START_TEST(test_table_name_split)
{
	char *schema, *rel;
	const char *why;
	ck_assert(config_split_table_name("VirusDesk.Uploads", &schema, &rel, &why));
	ck_assert_str_eq(schema, "virusdesk");
	ck_assert_str_eq(rel, "uploads");
	free(schema);
	free(rel);
	ck_assert(config_split_table_name("\"Crm Data\".\"Customer \"\"Notes\"\"\"", &schema, &rel, &why));
	ck_assert_str_eq(schema, "Crm Data");
	ck_assert_str_eq(rel, "Customer \"Notes\"");
	free(schema);
	free(rel);
	ck_assert(config_split_table_name("uploads", &schema, &rel, &why));
	ck_assert_ptr_null(schema);
	ck_assert_str_eq(rel, "uploads");
	free(rel);
	/* Text that would be SQL if pasted is only a name that does not parse. */
	ck_assert(!config_split_table_name("t; DROP TABLE x", &schema, &rel, &why));
	ck_assert(!config_split_table_name("\"unterminated", &schema, &rel, &why));
	ck_assert(!config_split_table_name("a..b", &schema, &rel, &why));
	ck_assert(!config_split_table_name("", &schema, &rel, &why));
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = test_tcase("load", 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_minimal_policy_gets_defaults);
	tcase_add_test(tc, test_every_key_is_read);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_missing_required_key);
	tcase_add_test(tc, test_duplicate_policy_name);
	tcase_add_test(tc, test_invalid_policy_name);
	tcase_add_test(tc, test_bad_duration);
	tcase_add_test(tc, test_quarantine_retry);
	tcase_add_test(tc, test_guardrail_keys);
	tcase_add_test(tc, test_clock_keys);
	tcase_add_test(tc, test_metrics_listen);
	tcase_add_test(tc, test_bad_identifier);
	tcase_add_test(tc, test_batch_out_of_range);
	tcase_add_test(tc, test_exempt_without_values);
	tcase_add_test(tc, test_anonymize_without_columns);
	tcase_add_test(tc, test_anonymized_columns_once_and_never_the_key);
	tcase_add_test(tc, test_anonymize_policies_on_one_table_agree);
	tcase_add_test(tc, test_several_problems_all_reported);
	tcase_add_test(tc, test_syntax_error_names_line);
	tcase_add_test(tc, test_include_of_directory_is_contained);
	tcase_add_test(tc, test_include_of_fifo_is_contained);
	tcase_add_test(tc, test_include_relative_to_config_file);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_an_error_in_an_include_names_that_file);
	tcase_add_test(tc, test_identity_and_on_erasure);
	tcase_add_test(tc, test_a_key_file_of_the_wrong_type_is_one_error);
	tcase_add_test(tc, test_duration_units);
	tcase_add_test(tc, test_table_name_split);
	tcase_add_test(tc, test_timeouts_must_be_real_timeouts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void) { return test_run_suite(config_suite()); }
