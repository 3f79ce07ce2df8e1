/*
 * libFuzzer target for the configuration loader: libconfig text -> struct
 * config, plus the two hand-written parsers it relies on (durations and
 * SQL-style table names). Built and run by tests/fuzz/run.
 *
 * config_load() is not fuzzed: it forks a child per file, which is far too
 * slow for a fuzzer and would hide crashes in the child. config_parse() is
 * the code that runs in both the child and the parent, so it is called here
 * directly, in-process.
 *
 * The child exists because libconfig 1.5 follows @include on its own: an
 * @include naming a directory makes it call exit(), one naming a FIFO or a
 * device blocks forever. In-process that would stop or hang the fuzzer on
 * inputs that are not bugs in our code. Giving config_parse an include
 * directory that does not exist makes every @include path start with a
 * missing directory, so the open fails with ENOENT (".." cannot climb out of
 * a directory that is not there) and libconfig reports an ordinary parse
 * error: @include parsing is still fuzzed, the file system is never reached.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_INCLUDE_DIR "/nonexistent-retention-fuzz-include-dir"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Results are checked against invariants the callers rely on, so a wrong answer aborts like a crash. */
static void fuzz_duration(const char *text)
{
	struct duration d;
	const char *why = NULL;
	double seconds;
	char sql[128];

	if (!duration_parse(text, &d, &why)) {
		if (why == NULL)
			abort();
		return;
	}
	if (d.months < 0 || d.days < 0 || d.usecs < 0 || (d.months == 0 && d.days == 0 && d.usecs == 0))
		abort();
	duration_to_sql(&d, sql, sizeof(sql));
	(void)duration_to_seconds(&d, &seconds);
}

static void fuzz_table_name(const char *text)
{
	char *schema = NULL, *relname = NULL;
	const char *why = NULL;

	if (!config_split_table_name(text, &schema, &relname, &why)) {
		if (why == NULL || schema != NULL || relname != NULL)
			abort();
		return;
	}
	if (relname == NULL || relname[0] == '\0' || strlen(relname) > CONFIG_IDENT_MAX ||
	    (schema && (schema[0] == '\0' || strlen(schema) > CONFIG_IDENT_MAX)))
		abort();
	free(schema);
	free(relname);
}

static void fuzz_config(const char *text)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = config_parse(text, "fuzz.conf", FUZZ_INCLUDE_DIR, &errs);

	/* Exactly one of: a configuration, or at least one error line. */
	if ((cfg == NULL) == (errs.n == 0))
		abort();
	if (cfg) {
		for (size_t i = 0; i < cfg->n_policies; i++)
			if (config_find_policy(cfg, cfg->policies[i].name) != &cfg->policies[i])
				abort();
	}
	config_free(cfg);
	config_errors_clear(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	fuzz_config(text);
	fuzz_duration(text);
	fuzz_table_name(text);

	free(text);
	return 0;
}
