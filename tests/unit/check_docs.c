/*
 * The documentation against the loader: every key config_known_keys lists is
 * documented in retentiond.conf(5) with the default the loader really uses,
 * appears in the sample etc/retentiond.conf, and the man page's example loads;
 * the guide's filter for chain heads takes the daemon's anchors and nothing
 * else.
 */
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "testutil.h"
#include "util.h"

#define CONF_MAN    "docs/retentiond.conf.5"
#define CONF_SAMPLE "etc/retentiond.conf"

static char *read_source_file(const char *relpath)
{
	char *path = xasprintf("%s/%s", test_srcdir(), relpath);
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, got;
	char chunk[4096];
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		buf = xrealloc(buf, len + got + 1);
		memcpy(buf + len, chunk, got);
		len += got;
	}
	fclose(f);
	free(path);
	ck_assert_msg(buf != NULL, "%s is empty", relpath);
	buf[len] = '\0';
	return buf;
}

/* Appends "; ITEM" to a list of problems. */
static void problem(char **list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(char **list, const char *fmt, ...)
{
	va_list ap;
	char *item, *joined;
	va_start(ap, fmt);
	item = xvasprintf(fmt, ap);
	va_end(ap);
	joined = xasprintf("%s%s%s", *list ? *list : "", *list ? "; " : "", item);
	free(item);
	free(*list);
	*list = joined;
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* ---- the man page: keys are the bold tags of .TP items ---- */

struct tag {
	char *name;
	const char *line; /* the tag line, within the page's text */
};

/*
 * The bold word a tag line starts with: ".B name", ".BI \"name = \" type",
 * ".BR name ..." or "\fBname\fR ..."; NULL if the tag is not bold.
 */
static char *tag_name(const char *line)
{
	const char *p = NULL;
	size_t n = 0;
	if (strncmp(line, ".B ", 3) == 0)
		p = line + 3;
	else if (strncmp(line, ".BI ", 4) == 0 || strncmp(line, ".BR ", 4) == 0)
		p = line + 4;
	else if (strncmp(line, "\\fB", 3) == 0)
		p = line + 3;
	if (p == NULL)
		return NULL;
	if (*p == '"')
		p++;
	while (is_name_char(p[n]))
		n++;
	return n ? xstrndup(p, n) : NULL;
}

static struct tag *man_tags(const char *text, size_t *count)
{
	struct tag *tags = NULL;
	const char *line = text;
	*count = 0;
	while (line && *line) {
		const char *next = strchr(line, '\n');
		if (next && strncmp(line, ".TP\n", 4) == 0) {
			const char *tag_line = next + 1;
			char *name = tag_name(tag_line);
			if (name) {
				tags = xrealloc(tags, (*count + 1) * sizeof(*tags));
				tags[*count].name = name;
				tags[*count].line = tag_line;
				(*count)++;
			}
		}
		line = next ? next + 1 : NULL;
	}
	return tags;
}

static void free_tags(struct tag *tags, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(tags[i].name);
	free(tags);
}

/*
 * The tag of KEY: each dotted component tagged in order, so that
 * "policies.set.value" is a "value" item after the "set" item after the
 * "policies" item. -1 if some component has no such tag.
 */
static long find_key_tag(const struct tag *tags, size_t count, const char *key)
{
	char *copy = xstrdup(key), *save = NULL;
	size_t from = 0;
	long found = -1;
	for (char *part = strtok_r(copy, ".", &save); part; part = strtok_r(NULL, ".", &save)) {
		found = -1;
		for (size_t i = from; i < count; i++) {
			if (strcmp(tags[i].name, part) == 0) {
				found = (long)i;
				break;
			}
		}
		if (found < 0)
			break;
		from = (size_t)found + 1;
	}
	free(copy);
	return found;
}

/* The text of a tagged item: from its tag line to the next request that ends it. */
static char *item_text(const struct tag *t)
{
	const char *end = t->line;
	for (;;) {
		end = strchr(end, '\n');
		if (end == NULL) {
			end = t->line + strlen(t->line);
			break;
		}
		end++;
		if (strncmp(end, ".TP", 3) == 0 || strncmp(end, ".RS", 3) == 0 || strncmp(end, ".RE", 3) == 0 ||
		    strncmp(end, ".SH", 3) == 0 || strncmp(end, ".SS", 3) == 0 || *end == '\0')
			break;
	}
	return xstrndup(t->line, (size_t)(end - t->line));
}

/* The first \(dq-quoted string after "Default:" in an item, or NULL. */
static char *documented_default(const char *item)
{
	const char *d = strstr(item, "Default:");
	const char *open, *close;
	if (d == NULL)
		return NULL;
	open = strstr(d, "\\(dq");
	if (open == NULL)
		return NULL;
	close = strstr(open + 4, "\\(dq");
	if (close == NULL)
		return NULL;
	return xstrndup(open + 4, (size_t)(close - open - 4));
}

static struct tag *conf_man_tags;
static size_t n_conf_man_tags;
static char *conf_man;

static void man_setup(void)
{
	conf_man = read_source_file(CONF_MAN);
	conf_man_tags = man_tags(conf_man, &n_conf_man_tags);
}

static void man_teardown(void)
{
	free_tags(conf_man_tags, n_conf_man_tags);
	free(conf_man);
}

START_TEST(test_every_key_in_man_page)
{
	char *missing = NULL;
	ck_assert_msg(n_conf_man_tags > 0, "no .TP items in " CONF_MAN);
	for (const char *const *k = config_known_keys; *k; k++)
		if (find_key_tag(conf_man_tags, n_conf_man_tags, *k) < 0)
			problem(&missing, "%s", *k);
	ck_assert_msg(missing == NULL, CONF_MAN " has no bold .TP item for: %s", missing);
}
END_TEST

/* A key documented but unknown to the loader would be rejected by it. */
START_TEST(test_man_page_documents_only_known_keys)
{
	char *unknown = NULL;
	for (size_t i = 0; i < n_conf_man_tags; i++) {
		bool known = false;
		for (const char *const *k = config_known_keys; *k && !known; k++) {
			char *copy = xstrdup(*k), *save = NULL;
			for (char *part = strtok_r(copy, ".", &save); part && !known; part = strtok_r(NULL, ".", &save))
				known = strcmp(part, conf_man_tags[i].name) == 0;
			free(copy);
		}
		if (!known)
			problem(&unknown, "%s", conf_man_tags[i].name);
	}
	ck_assert_msg(unknown == NULL, CONF_MAN " documents keys the loader does not know: %s", unknown);
}
END_TEST

static char *default_of(const char *key)
{
	long t = find_key_tag(conf_man_tags, n_conf_man_tags, key);
	char *item, *value;
	ck_assert_msg(t >= 0, "%s not documented", key);
	item = item_text(&conf_man_tags[t]);
	value = documented_default(item);
	ck_assert_msg(value != NULL, "no quoted \"Default:\" for %s in: %s", key, item);
	free(item);
	return value;
}

static bool item_says(const char *key, const char *words)
{
	long t = find_key_tag(conf_man_tags, n_conf_man_tags, key);
	char *item;
	bool found;
	ck_assert_msg(t >= 0, "%s not documented", key);
	item = item_text(&conf_man_tags[t]);
	found = strstr(item, words) != NULL;
	free(item);
	return found;
}

static void assert_duration_default(const char *key, const struct duration *actual)
{
	char *text = default_of(key);
	struct duration d;
	const char *why;
	ck_assert_msg(duration_parse(text, &d, &why), "%s: documented default \"%s\": %s", key, text, why);
	ck_assert_msg(d.months == actual->months && d.days == actual->days && d.usecs == actual->usecs,
		      "%s: documented default \"%s\" is not the loader's", key, text);
	free(text);
}

START_TEST(test_documented_defaults_are_the_loaders)
{
	static const char minimal[] = "policies = ( { name = \"p\"; service = \"s\"; source = \"s\"; table = \"t\";\n"
				      "  key = \"id\"; clock = \"c\"; retain = \"1 day\"; } );\n";
	struct config_errors errs = {NULL, 0};
	struct config *cfg = test_load_config(minimal, &errs);
	char host[256];
	char *text;
	enum log_level level;
	ck_assert_msg(cfg != NULL, "%s", test_errs_join(&errs));

	ck_assert_str_eq(cfg->conninfo, "");
	ck_assert_msg(item_says("database.conninfo", "Default: the empty string"),
		      "conninfo's default is not documented as the empty string");

	text = default_of("database.time_zone");
	ck_assert_str_eq(text, cfg->time_zone);
	free(text);
	assert_duration_default("database.statement_timeout", &cfg->statement_timeout);
	assert_duration_default("database.lock_timeout", &cfg->lock_timeout);

	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	ck_assert_str_eq(cfg->instance, host);
	ck_assert_msg(item_says("daemon.instance", "Default: the host name"),
		      "instance's default is not documented as the host name");
	assert_duration_default("daemon.resync_interval", &cfg->resync_interval);
	text = default_of("daemon.log_level");
	ck_assert_msg(log_level_parse(text, &level), "log level \"%s\"", text);
	ck_assert_int_eq(level, cfg->log_level);
	free(text);

	text = default_of("policies.action");
	ck_assert_str_eq(text, "delete");
	ck_assert_int_eq(cfg->policies[0].action, POLICY_ACTION_DELETE);
	free(text);
	text = xasprintf("Default: %d.", cfg->policies[0].batch);
	ck_assert_int_eq(cfg->policies[0].batch, CONFIG_BATCH_DEFAULT);
	ck_assert_msg(item_says("policies.batch", text), "batch: \"%s\" not documented", text);
	free(text);
	text = xasprintf("from 1 to %d", CONFIG_BATCH_MAX);
	ck_assert_msg(item_says("policies.batch", text), "batch: \"%s\" not documented", text);
	free(text);
	config_free(cfg);
	config_errors_clear(&errs);
}
END_TEST

/* The roff escapes the example uses, turned back into the text a reader copies. */
static char *unescape_roff(const char *s)
{
	static const struct {
		const char *escape;
		const char *text;
	} escapes[] = {{"\\-", "-"}, {"\\e", "\\"}, {"\\(dq", "\""}, {"\\(aq", "'"}, {"\\&", ""}};
	char *out = xmalloc(strlen(s) + 1);
	size_t n = 0;
	while (*s) {
		bool done = false;
		for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]) && !done; i++) {
			size_t len = strlen(escapes[i].escape);
			if (strncmp(s, escapes[i].escape, len) == 0) {
				memcpy(out + n, escapes[i].text, strlen(escapes[i].text));
				n += strlen(escapes[i].text);
				s += len;
				done = true;
			}
		}
		if (!done) {
			ck_assert_msg(*s != '\\', "unexpected roff escape in the example: %.10s", s);
			out[n++] = *s++;
		}
	}
	out[n] = '\0';
	return out;
}

START_TEST(test_man_page_example_loads)
{
	const char *start = strstr(conf_man, "\n.SH EXAMPLE\n");
	const char *ex, *ee;
	char *raw, *text;
	struct config_errors errs = {NULL, 0};
	struct config *cfg;
	ck_assert_msg(start != NULL, "no EXAMPLE section");
	ex = strstr(start, "\n.EX\n");
	ck_assert_msg(ex != NULL, "no .EX in EXAMPLE");
	ex += strlen("\n.EX\n");
	ee = strstr(ex, "\n.EE\n");
	ck_assert_msg(ee != NULL, "no .EE in EXAMPLE");
	raw = xstrndup(ex, (size_t)(ee - ex + 1));
	text = unescape_roff(raw);
	cfg = test_load_config(text, &errs);
	ck_assert_msg(cfg != NULL, "the example in " CONF_MAN " does not load: %s\n%s", test_errs_join(&errs), text);
	ck_assert_uint_ge(cfg->n_policies, 1);
	config_free(cfg);
	config_errors_clear(&errs);
	free(raw);
	free(text);
}
END_TEST

/* ---- the sample configuration: keys set or shown in comments ---- */

/* True if P (within TEXT) is inside a double-quoted string on its line. */
static bool inside_string(const char *text, const char *p)
{
	const char *line = p;
	bool in = false;
	while (line > text && line[-1] != '\n')
		line--;
	for (const char *c = line; c < p; c++) {
		if (*c == '\\' && c + 1 < p)
			c++;
		else if (*c == '"')
			in = !in;
	}
	return in;
}

/* The first "NAME =" or "NAME:" at or after FROM, commented out or not; NULL if none. */
static const char *find_assignment(const char *text, const char *from, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = strstr(from, name); p; p = strstr(p + 1, name)) {
		const char *after = p + len;
		if (p > text && (is_name_char(p[-1]) || p[-1] == '-' || p[-1] == '*' || p[-1] == '.'))
			continue;
		while (*after == ' ' || *after == '\t')
			after++;
		if ((*after == '=' || *after == ':') && !inside_string(text, p))
			return p;
	}
	return NULL;
}

START_TEST(test_every_key_in_sample_config)
{
	char *text = read_source_file(CONF_SAMPLE);
	char *missing = NULL;
	for (const char *const *k = config_known_keys; *k; k++) {
		char *copy = xstrdup(*k), *save = NULL;
		const char *at = text;
		/* Each component after its parent, so "policies.set.value" is a value in a set. */
		for (char *part = strtok_r(copy, ".", &save); part && at; part = strtok_r(NULL, ".", &save))
			at = find_assignment(text, at, part);
		if (at == NULL)
			problem(&missing, "%s", *k);
		free(copy);
	}
	ck_assert_msg(missing == NULL, CONF_SAMPLE " neither sets nor shows in a comment: %s", missing);
	free(text);
}
END_TEST

/*
 * The operations guide's journalctl filter for chain heads matches the line
 * the daemon logs, and not that line inside a server notice a trigger
 * raised, nor inside an error that quotes a record's key.
 */
START_TEST(test_chain_head_filter_takes_only_anchors)
{
	char *text = read_source_file("docs/operations.md");
	const char *start = strstr(text, "journalctl -u retentiond -o cat | grep -E '"), *end;
	struct audit_anchor a = {20011, "0a4cd8e7489ec7acc2f8fa4fa9c0eb83140fc445b44c5aa9f57fc254f044e100"};
	char anchor[256], *pattern, *forged;
	regex_t re;
	ck_assert_msg(start != NULL, "no journalctl filter for chain heads in docs/operations.md");
	start = strchr(start, '\'') + 1;
	end = strchr(start, '\'');
	pattern = xasprintf("%.*s", (int)(end - start), start);
	ck_assert_msg(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) == 0, "%s", pattern);
	audit_anchor_format("shop-orders", &a, anchor, sizeof(anchor));
	ck_assert_msg(regexec(&re, anchor, 0, NULL, 0) == 0, "%s does not take %s", pattern, anchor);
	forged = xasprintf("PostgreSQL NOTICE: %s", anchor);
	ck_assert_msg(regexec(&re, forged, 0, NULL, 0) != 0, "%s takes %s", pattern, forged);
	free(forged);
	forged = xasprintf("policy shop-orders: record x; %s cannot be purged", anchor);
	ck_assert_msg(regexec(&re, forged, 0, NULL, 0) != 0, "%s takes %s", pattern, forged);
	free(forged);
	regfree(&re);
	free(pattern);
	free(text);
}
END_TEST

/* The body of the fenced block ```NAME in TEXT (malloc'd), without its closing fence. */
static char *fenced_block(const char *text, const char *name)
{
	char *fence = xasprintf("\n```%s\n", name), *out;
	const char *start = strstr(text, fence), *end;
	ck_assert_msg(start != NULL, "docs/audit-format.md has no ```%s block", name);
	start += strlen(fence);
	end = strstr(start, "\n```");
	ck_assert(end != NULL);
	out = xstrndup(start, (size_t)(end - start));
	free(fence);
	return out;
}

/* NAME's value in a block of "name = value" lines; "-" is NULL. */
static char *block_value(const char *block, const char *name)
{
	char *prefix = xasprintf("%s = ", name), *out;
	const char *line = block;
	for (;;) {
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			break;
		line = strchr(line, '\n');
		ck_assert_msg(line != NULL, "the example has no %s", name);
		line++;
	}
	line += strlen(prefix);
	out = xstrndup(line, strcspn(line, "\n"));
	free(prefix);
	if (strcmp(out, "-") == 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* docs/audit-format.md's worked example is what the daemon writes and the verifier checks. */
START_TEST(test_audit_format_worked_example)
{
	static const struct {
		const char *name;
		enum audit_row_column column;
	} fields[] = {
		{"format", AUDIT_FORMAT},
		{"policy", AUDIT_POLICY},
		{"seq", AUDIT_SEQ},
		{"service", AUDIT_SERVICE},
		{"source", AUDIT_SOURCE},
		{"table_name", AUDIT_TABLE},
		{"record_key", AUDIT_RECORD_KEY},
		{"subject", AUDIT_SUBJECT},
		{"clock_at", AUDIT_CLOCK_AT},
		{"due_at", AUDIT_DUE_AT},
		{"purged_at", AUDIT_PURGED_AT},
		{"action", AUDIT_ACTION},
		{"cause", AUDIT_CAUSE},
		{"request_id", AUDIT_REQUEST_ID},
		{"instance", AUDIT_INSTANCE},
		{"txid", AUDIT_TXID},
		{"prev_hash", AUDIT_PREV_HASH},
	};
	char *text = read_source_file("docs/audit-format.md");
	char *pseudonym_block = fenced_block(text, "pseudonym"), *fields_block = fenced_block(text, "fields");
	char *payload_doc = fenced_block(text, "payload"), *hash_doc = fenced_block(text, "hash");
	char *key_hex = block_value(pseudonym_block, "key"), *value = block_value(pseudonym_block, "value");
	char *pseudonym_doc = block_value(pseudonym_block, "pseudonym");
	char pseudonym[AUDIT_PSEUDONYM_LEN + 1], hash[AUDIT_HASH_HEX_LEN + 1];
	unsigned char key_bytes[64];
	struct audit_key key = {key_bytes, strlen(key_hex) / 2};
	char *f[AUDIT_N_COLUMNS] = {NULL}, *payload;
	for (size_t i = 0; i < key.len; i++) {
		unsigned v;
		ck_assert(sscanf(key_hex + 2 * i, "%2x", &v) == 1);
		key_bytes[i] = (unsigned char)v;
	}
	audit_pseudonym(&key, value, pseudonym);
	ck_assert_str_eq(pseudonym, pseudonym_doc);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		f[fields[i].column] = block_value(fields_block, fields[i].name);
	ck_assert_str_eq(f[AUDIT_SUBJECT], pseudonym_doc);
	payload = audit_payload((const char *const *)f);
	ck_assert_str_eq(payload, payload_doc);
	{
		char *size = xasprintf("Its payload, %zu bytes", strlen(payload));
		ck_assert_msg(strstr(text, size) != NULL, "the doc does not say \"%s\"", size);
		free(size);
	}
	ck_assert(audit_chain_hash(f[AUDIT_PREV_HASH], payload, hash));
	ck_assert_str_eq(hash, hash_doc);
	for (size_t i = 0; i < AUDIT_N_COLUMNS; i++)
		free(f[i]);
	free(payload);
	free(key_hex);
	free(value);
	free(pseudonym_doc);
	free(pseudonym_block);
	free(fields_block);
	free(payload_doc);
	free(hash_doc);
	free(text);
}
END_TEST

static Suite *docs_suite(void)
{
	Suite *s = suite_create("docs");
	TCase *man = test_tcase("man page", 30);
	TCase *sample = test_tcase("sample configuration", 30);
	tcase_add_checked_fixture(man, man_setup, man_teardown);
	tcase_add_test(man, test_every_key_in_man_page);
	tcase_add_test(man, test_man_page_documents_only_known_keys);
	tcase_add_test(man, test_documented_defaults_are_the_loaders);
	tcase_add_test(man, test_man_page_example_loads);
	tcase_add_test(sample, test_every_key_in_sample_config);
	tcase_add_test(sample, test_chain_head_filter_takes_only_anchors);
	tcase_add_test(sample, test_audit_format_worked_example);
	suite_add_tcase(s, man);
	suite_add_tcase(s, sample);
	return s;
}

int main(void) { return test_run_suite(docs_suite()); }
