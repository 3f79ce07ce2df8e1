/*
 * libconfig text -> validated struct config. Every problem becomes one line
 * naming file, line and key; validation goes on after the first problem so an
 * operator sees them all at once.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define CONFIG_FILE_MAX          (1024 * 1024)
#define CONFIG_CHILD_DEADLINE_MS 10000

const char *const config_known_keys[] = {
	"database.conninfo",
	"database.time_zone",
	"database.statement_timeout",
	"database.lock_timeout",
	"database.max_replication_lag",
	"daemon.instance",
	"daemon.resync_interval",
	"daemon.log_level",
	"daemon.quarantine_retry",
	"daemon.metrics_listen",
	"daemon.guard_records",
	"daemon.max_purge_rate",
	"audit.key_file",
	"audit.pseudonymize",
	"policies.name",
	"policies.service",
	"policies.source",
	"policies.table",
	"policies.key",
	"policies.clock",
	"policies.clock_unit",
	"policies.retain",
	"policies.retain_column",
	"policies.action",
	"policies.subject",
	"policies.batch",
	"policies.exempt",
	"policies.exempt.column",
	"policies.exempt.values",
	"policies.set_null",
	"policies.set",
	"policies.set.column",
	"policies.set.value",
	"policies.identity",
	"policies.on_erasure",
	"policies.erasure_exception",
	"policies.guard_records",
	NULL,
};

struct parse_ctx {
	const char *filename;
	const char *include_dir; /* where @include's relative names are taken from */
	struct config_errors *errs;
};

static void errs_add(struct config_errors *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void errs_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list ap;
	char *line;
	va_start(ap, fmt);
	line = xvasprintf(fmt, ap);
	va_end(ap);
	errs->lines = xrealloc(errs->lines, (errs->n + 1) * sizeof(*errs->lines));
	errs->lines[errs->n++] = line;
}

void config_errors_clear(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->n = 0;
}

static void report(struct parse_ctx *ctx, const config_setting_t *s, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "FILE:LINE" of setting S (malloc'd): an @include'd one names its own file. */
static char *setting_where(const struct parse_ctx *ctx, const config_setting_t *s)
{
	const char *file = s ? config_setting_source_file(s) : NULL;
	int line = s ? (int)config_setting_source_line(s) : 0;
	if (file == NULL)
		return xasprintf("%s:%d", ctx->filename, line);
	if (file[0] != '/' && ctx->include_dir)
		return xasprintf("%s/%s:%d", ctx->include_dir, file, line);
	return xasprintf("%s:%d", file, line);
}

static void report(struct parse_ctx *ctx, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	char *where = setting_where(ctx, s);
	va_list ap;
	char *msg;
	va_start(ap, fmt);
	msg = xvasprintf(fmt, ap);
	va_end(ap);
	errs_add(ctx->errs, "%s: %s: %s", where, key, msg);
	free(msg);
	free(where);
}

/* ---- durations ---- */

static const struct {
	const char *name;
	int32_t months;
	int32_t days;
	int64_t usecs;
} duration_units[] = {
	{"microsecond", 0, 0, 1},
	{"microseconds", 0, 0, 1},
	{"millisecond", 0, 0, 1000},
	{"milliseconds", 0, 0, 1000},
	{"ms", 0, 0, 1000},
	{"second", 0, 0, 1000000},
	{"seconds", 0, 0, 1000000},
	{"sec", 0, 0, 1000000},
	{"secs", 0, 0, 1000000},
	{"s", 0, 0, 1000000},
	{"minute", 0, 0, 60000000},
	{"minutes", 0, 0, 60000000},
	{"min", 0, 0, 60000000},
	{"mins", 0, 0, 60000000},
	{"hour", 0, 0, 3600000000LL},
	{"hours", 0, 0, 3600000000LL},
	{"h", 0, 0, 3600000000LL},
	{"day", 0, 1, 0},
	{"days", 0, 1, 0},
	{"d", 0, 1, 0},
	{"week", 0, 7, 0},
	{"weeks", 0, 7, 0},
	{"month", 1, 0, 0},
	{"months", 1, 0, 0},
	{"mon", 1, 0, 0},
	{"mons", 1, 0, 0},
	{"year", 12, 0, 0},
	{"years", 12, 0, 0},
};

/* A thousand years is longer than any retention rule and keeps every sum far from overflow. */
#define DURATION_MAX_MONTHS (1000 * 12)
#define DURATION_MAX_DAYS   (1000 * 366)
#define DURATION_MAX_USECS  (1000LL * 366 * 86400 * 1000000)

bool duration_parse_or_zero(const char *text, struct duration *out, const char **why)
{
	struct duration d = {0, 0, 0};
	const char *p = text;
	bool any = false;

	for (;;) {
		char *end;
		long long n;
		char unit[16];
		size_t ulen = 0;
		bool found = false;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		if (!isdigit((unsigned char)*p)) {
			*why = "expected a number followed by a unit, as in \"15 minutes\"";
			return false;
		}
		errno = 0;
		n = strtoll(p, &end, 10);
		if (errno != 0 || n > 1000000000LL) {
			*why = "number out of range";
			return false;
		}
		p = end;
		while (*p == ' ' || *p == '\t')
			p++;
		while (isalpha((unsigned char)*p)) {
			if (ulen + 1 >= sizeof(unit)) {
				*why = "unknown unit";
				return false;
			}
			unit[ulen++] = (char)tolower((unsigned char)*p++);
		}
		unit[ulen] = '\0';
		if (ulen == 0) {
			*why = "missing unit (seconds, minutes, hours, days, weeks, months or years)";
			return false;
		}
		for (size_t i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
			if (strcmp(unit, duration_units[i].name) != 0)
				continue;
			if ((duration_units[i].months && n > DURATION_MAX_MONTHS) ||
			    (duration_units[i].days && n > DURATION_MAX_DAYS) ||
			    (duration_units[i].usecs && n > DURATION_MAX_USECS / duration_units[i].usecs)) {
				*why = "longer than 1000 years";
				return false;
			}
			d.months += (int32_t)(n * duration_units[i].months);
			d.days += (int32_t)(n * duration_units[i].days);
			d.usecs += n * duration_units[i].usecs;
			found = true;
			break;
		}
		if (!found) {
			*why = "unknown unit (seconds, minutes, hours, days, weeks, months or years)";
			return false;
		}
		if (d.months > DURATION_MAX_MONTHS || d.days > DURATION_MAX_DAYS || d.usecs > DURATION_MAX_USECS) {
			*why = "longer than 1000 years";
			return false;
		}
		any = true;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == ',')
			p++;
	}
	if (!any) {
		*why = "empty duration";
		return false;
	}
	*out = d;
	return true;
}

bool duration_parse(const char *text, struct duration *out, const char **why)
{
	struct duration d;
	if (!duration_parse_or_zero(text, &d, why))
		return false;
	if (d.months == 0 && d.days == 0 && d.usecs == 0) {
		*why = "duration must be longer than zero";
		return false;
	}
	*out = d;
	return true;
}

bool listen_address_parse(const char *listen, char **host, unsigned short *port, char **unix_path, const char **why)
{
	const char *colon;
	char *end;
	long n;
	size_t hlen;
	if (host)
		*host = NULL;
	if (unix_path)
		*unix_path = NULL;
	if (strncmp(listen, "unix:", 5) == 0) {
		if (listen[5] != '/') {
			*why = "a unix socket's path must be absolute, as in \"unix:/run/retentiond/metrics.sock\"";
			return false;
		}
		if (strlen(listen + 5) >= 108) {
			*why = "a unix socket's path must be shorter than 108 bytes";
			return false;
		}
		if (unix_path)
			*unix_path = xstrdup(listen + 5);
		return true;
	}
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (close == NULL || close[1] != ':') {
			*why = "an IPv6 address goes in brackets, as in \"[::1]:9752\"";
			return false;
		}
		colon = close + 1;
		hlen = (size_t)(close - listen - 1);
		listen++;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || colon == listen) {
			*why = "must be \"host:port\", \"[v6]:port\" or \"unix:/path\"";
			return false;
		}
		hlen = (size_t)(colon - listen);
		if (memchr(listen, ':', hlen)) {
			*why = "an IPv6 address goes in brackets, as in \"[::1]:9752\"";
			return false;
		}
	}
	errno = 0;
	n = strtol(colon + 1, &end, 10);
	if (!isdigit((unsigned char)colon[1]) || *end != '\0' || errno != 0 || n < 1 || n > 65535) {
		*why = "the port must be a number from 1 to 65535";
		return false;
	}
	if (host) {
		*host = xcalloc(hlen + 1, 1);
		memcpy(*host, listen, hlen);
	}
	if (port)
		*port = (unsigned short)n;
	return true;
}

const char *policy_action_name(enum policy_action action)
{
	return action == POLICY_ACTION_DELETE ? "delete" : "anonymize";
}

static const char *const clock_unit_names[] = {NULL, "seconds", "milliseconds", "microseconds"};

const char *policy_clock_unit_name(enum policy_clock_unit unit) { return clock_unit_names[unit]; }

void duration_to_sql(const struct duration *d, char *buf, size_t size)
{
	snprintf(buf, size, "%d months %d days %lld microseconds", d->months, d->days, (long long)d->usecs);
}

bool duration_to_seconds(const struct duration *d, double *seconds)
{
	if (d->months != 0)
		return false;
	*seconds = (double)d->days * 86400.0 + (double)d->usecs / 1e6;
	return true;
}

/* ---- identifiers ---- */

static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int extra;
		uint32_t cp;
		if (*p < 0x80) {
			p++;
			continue;
		} else if ((*p & 0xe0) == 0xc0) {
			extra = 1;
			cp = *p & 0x1f;
		} else if ((*p & 0xf0) == 0xe0) {
			extra = 2;
			cp = *p & 0x0f;
		} else if ((*p & 0xf8) == 0xf0) {
			extra = 3;
			cp = *p & 0x07;
		} else {
			return false;
		}
		p++;
		for (int i = 0; i < extra; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (*p & 0x3f);
		}
		if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
		    (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* NULL if NAME is a usable column name, else why not. */
static const char *identifier_problem(const char *name)
{
	if (name[0] == '\0')
		return "empty identifier";
	if (strlen(name) > CONFIG_IDENT_MAX)
		return "identifier longer than 63 bytes";
	if (!utf8_valid(name))
		return "identifier is not valid UTF-8";
	return NULL;
}

/*
 * Table names follow SQL's rules (unquoted parts fold to lower case, "" is a
 * quote inside a quoted part) so that the same text means the same table
 * here, in psql and in to_regclass(). The parts are matched against the
 * catalog as values, never pasted into SQL.
 */
bool config_split_table_name(const char *text, char **schema, char **relname, const char **why)
{
	char *parts[2] = {NULL, NULL};
	int n = 0;
	const char *p = text;

	if (!utf8_valid(text)) {
		*why = "table name is not valid UTF-8";
		return false;
	}
	for (;;) {
		char buf[CONFIG_IDENT_MAX * 4 + 1];
		size_t len = 0;
		if (n == 2) {
			*why = "table name has more than two parts (write schema.table)";
			goto fail;
		}
		if (*p == '"') {
			p++;
			for (;;) {
				if (*p == '\0') {
					*why = "unterminated quoted identifier in table name";
					goto fail;
				}
				if (*p == '"') {
					if (p[1] != '"')
						break;
					p++;
				}
				if (len >= CONFIG_IDENT_MAX) {
					*why = "identifier longer than 63 bytes";
					goto fail;
				}
				buf[len++] = *p++;
			}
			p++;
		} else {
			while (*p && *p != '.') {
				unsigned char c = (unsigned char)*p;
				if (!(isalnum(c) || c == '_' || c == '$' || c >= 0x80)) {
					*why = "invalid character in table name (quote the part with \"\")";
					goto fail;
				}
				if (len >= CONFIG_IDENT_MAX) {
					*why = "identifier longer than 63 bytes";
					goto fail;
				}
				buf[len++] = (char)tolower(c);
				p++;
			}
		}
		if (len == 0) {
			*why = "empty identifier in table name";
			goto fail;
		}
		buf[len] = '\0';
		parts[n++] = xstrdup(buf);
		if (*p == '\0')
			break;
		if (*p != '.') {
			*why = "unexpected character after quoted identifier in table name";
			goto fail;
		}
		p++;
	}
	if (n == 2) {
		*schema = parts[0];
		*relname = parts[1];
	} else {
		*schema = NULL;
		*relname = parts[0];
	}
	return true;
fail:
	free(parts[0]);
	free(parts[1]);
	return false;
}

static bool policy_name_valid(const char *name)
{
	if (name[0] == '\0' || strlen(name) > CONFIG_IDENT_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

/* ---- typed lookups ---- */

static bool check_keys(struct parse_ctx *ctx, const config_setting_t *group, const char *path,
		       const char *const *allowed)
{
	bool ok = true;
	int n = config_setting_length(group);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		bool known = false;
		for (const char *const *a = allowed; *a; a++)
			if (name && strcmp(name, *a) == 0)
				known = true;
		if (!known) {
			report(ctx, s, path, "unknown key \"%s\"", name ? name : "?");
			ok = false;
		}
	}
	return ok;
}

static char *lookup_string(struct parse_ctx *ctx, const config_setting_t *group, const char *name, const char *path,
			   bool required, const char *def)
{
	const config_setting_t *s = group ? config_setting_get_member(group, name) : NULL;
	char *full = xasprintf("%s%s%s", path, path[0] ? "." : "", name);
	char *out = NULL;
	if (s == NULL) {
		if (required)
			report(ctx, group, full, "missing required key");
		else if (def)
			out = xstrdup(def);
	} else if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		report(ctx, s, full, "must be a string");
	} else {
		const char *v = config_setting_get_string(s);
		if (!utf8_valid(v))
			report(ctx, s, full, "value is not valid UTF-8");
		else
			out = xstrdup(v);
	}
	free(full);
	return out;
}

static char *lookup_identifier(struct parse_ctx *ctx, const config_setting_t *group, const char *name, const char *path,
			       bool required)
{
	const config_setting_t *s = group ? config_setting_get_member(group, name) : NULL;
	char *v = lookup_string(ctx, group, name, path, required, NULL);
	const char *why;
	if (v && (why = identifier_problem(v)) != NULL) {
		char *full = xasprintf("%s.%s", path, name);
		report(ctx, s, full, "%s", why);
		free(full);
		free(v);
		return NULL;
	}
	return v;
}

/* A duration key; ZERO_OK lets "0 seconds" through (a key for which zero means off). */
static bool lookup_duration_as(struct parse_ctx *ctx, const config_setting_t *group, const char *name, const char *path,
			       bool required, const char *def, struct duration *out, bool zero_ok)
{
	const config_setting_t *s = group ? config_setting_get_member(group, name) : NULL;
	char *text = lookup_string(ctx, group, name, path, required, def);
	const char *why;
	bool ok = false;
	if (text == NULL)
		return false;
	if (zero_ok ? duration_parse_or_zero(text, out, &why) : duration_parse(text, out, &why)) {
		ok = true;
	} else {
		char *full = xasprintf("%s%s%s", path, path[0] ? "." : "", name);
		report(ctx, s ? s : group, full, "invalid duration \"%s\": %s", text, why);
		free(full);
	}
	free(text);
	return ok;
}

static bool lookup_duration(struct parse_ctx *ctx, const config_setting_t *group, const char *name, const char *path,
			    bool required, const char *def, struct duration *out)
{
	return lookup_duration_as(ctx, group, name, path, required, def, out, false);
}

/* An integer key between MIN and MAX: *OUT stays as it is when the key is absent. */
static void lookup_count(struct parse_ctx *ctx, const config_setting_t *group, const char *name, const char *path,
			 long long min, long long max, long long *out)
{
	const config_setting_t *s = group ? config_setting_get_member(group, name) : NULL;
	char *full;
	long long v;
	if (s == NULL)
		return;
	full = xasprintf("%s%s%s", path, path[0] ? "." : "", name);
	if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
		report(ctx, s, full, "must be an integer");
	} else {
		v = config_setting_type(s) == CONFIG_TYPE_INT ? config_setting_get_int(s) : config_setting_get_int64(s);
		if (v < min || v > max)
			report(ctx, s, full, "%lld out of range (%lld to %lld)", v, min, max);
		else
			*out = v;
	}
	free(full);
}

/* A libconfig array or list of strings, each checked with CHECK (may be NULL). */
static char **lookup_string_list(struct parse_ctx *ctx, const config_setting_t *s, const char *path, size_t *count,
				 const char *(*check)(const char *))
{
	int n;
	char **out;
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST) {
		report(ctx, s, path, "must be a list of strings, as in [ \"a\", \"b\" ]");
		return NULL;
	}
	n = config_setting_length(s);
	out = xcalloc((size_t)n + 1, sizeof(*out));
	*count = 0;
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v, *why;
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			report(ctx, e, path, "element %d must be a string", i + 1);
			continue;
		}
		v = config_setting_get_string(e);
		why = check ? check(v) : (utf8_valid(v) ? NULL : "value is not valid UTF-8");
		if (why) {
			report(ctx, e, path, "element %d: %s", i + 1, why);
			continue;
		}
		out[(*count)++] = xstrdup(v);
	}
	return out;
}

/* ---- policies ---- */

static void policy_clear(struct policy *p)
{
	free(p->name);
	free(p->service);
	free(p->source);
	free(p->table);
	free(p->key);
	free(p->clock);
	for (size_t i = 0; i < p->n_clocks; i++)
		free(p->clocks[i]);
	free(p->clocks);
	for (size_t i = 0; i < p->n_keys; i++)
		free(p->keys[i]);
	free(p->keys);
	free(p->subject);
	free(p->identity);
	free(p->erasure_exception);
	free(p->retain_text);
	free(p->exempt_column);
	free(p->retain_column);
	for (size_t i = 0; i < p->n_exempt_values; i++)
		free(p->exempt_values[i]);
	free(p->exempt_values);
	for (size_t i = 0; i < p->n_set_null; i++)
		free(p->set_null[i]);
	free(p->set_null);
	for (size_t i = 0; i < p->n_set; i++) {
		free(p->set[i].column);
		free(p->set[i].value);
	}
	free(p->set);
	memset(p, 0, sizeof(*p));
}

static void parse_exempt(struct parse_ctx *ctx, const config_setting_t *s, const char *path, struct policy *p)
{
	static const char *const keys[] = {"column", "values", NULL};
	char *full = xasprintf("%s.exempt", path);
	const config_setting_t *values;
	if (!config_setting_is_group(s)) {
		report(ctx, s, full, "must be a group, as in { column = \"purpose\"; values = [ \"x\" ]; }");
		free(full);
		return;
	}
	check_keys(ctx, s, full, keys);
	p->exempt_column = lookup_identifier(ctx, s, "column", full, true);
	values = config_setting_get_member(s, "values");
	if (values == NULL) {
		char *vpath = xasprintf("%s.values", full);
		report(ctx, s, vpath, "missing required key (the values that exempt a record)");
		free(vpath);
	} else {
		char *vpath = xasprintf("%s.values", full);
		p->exempt_values = lookup_string_list(ctx, values, vpath, &p->n_exempt_values, NULL);
		if (p->exempt_values && config_setting_length(values) == 0)
			report(ctx, values, vpath, "exempt needs at least one value");
		free(vpath);
	}
	free(full);
}

/* A and B name the same table as PostgreSQL reads them ("App.T" is app.t); an unqualified name only itself. */
static bool same_table(const char *a, const char *b)
{
	char *as = NULL, *ar = NULL, *bs = NULL, *br = NULL;
	const char *why;
	bool same = config_split_table_name(a, &as, &ar, &why) && config_split_table_name(b, &bs, &br, &why) &&
		    strcmp(ar, br) == 0 && ((as == NULL && bs == NULL) || (as && bs && strcmp(as, bs) == 0));
	free(as);
	free(ar);
	free(bs);
	free(br);
	return same;
}

/* The value policy P stores in COLUMN when it anonymizes: *VALUE NULL for set_null. False if it leaves COLUMN. */
static bool anonymized_value(const struct policy *p, const char *column, const char **value)
{
	for (size_t i = 0; i < p->n_set_null; i++)
		if (strcmp(p->set_null[i], column) == 0) {
			*value = NULL;
			return true;
		}
	for (size_t i = 0; i < p->n_set; i++)
		if (strcmp(p->set[i].column, column) == 0) {
			*value = p->set[i].value;
			return true;
		}
	return false;
}

bool config_policy_has_key_column(const struct policy *p, const char *column)
{
	for (size_t i = 0; i < p->n_keys; i++)
		if (strcmp(p->keys[i], column) == 0)
			return true;
	return false;
}

/*
 * Each anonymized column once, and never the key: an UPDATE cannot assign a
 * column twice, and a record whose key changes is no longer the record its
 * audit row names.
 */
static void check_anonymized_columns(struct parse_ctx *ctx, const config_setting_t *s, const char *path,
				     const struct policy *p)
{
	size_t n = p->n_set_null + p->n_set;
	for (size_t i = 0; i < n; i++) {
		const char *column = i < p->n_set_null ? p->set_null[i] : p->set[i - p->n_set_null].column;
		const char *key = i < p->n_set_null ? "set_null" : "set";
		char *full = xasprintf("%s.%s", path, key);
		bool twice = false;
		for (size_t j = 0; j < i; j++)
			twice |= strcmp(column,
					j < p->n_set_null ? p->set_null[j] : p->set[j - p->n_set_null].column) == 0;
		if (twice)
			report(ctx, config_setting_get_member(s, key), full, "column \"%s\" is anonymized twice",
			       column);
		else if (config_policy_has_key_column(p, column))
			report(ctx, config_setting_get_member(s, key), full,
			       "column \"%s\" is the key: the record would no longer be the one its audit row names",
			       column);
		free(full);
	}
}

/*
 * Two anonymize policies on one table that store different things in one
 * column would each make the other's rows stand un-anonymized, and rewrite
 * and audit them at every batch.
 */
static void check_anonymize_conflicts(struct parse_ctx *ctx, const config_setting_t *s, int index,
				      const struct config *cfg, const struct policy *p)
{
	if (p->action != POLICY_ACTION_ANONYMIZE)
		return;
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *o = &cfg->policies[i];
		if (o->action != POLICY_ACTION_ANONYMIZE || !same_table(o->table, p->table))
			continue;
		for (size_t c = 0; c < p->n_set_null + p->n_set; c++) {
			const char *column = c < p->n_set_null ? p->set_null[c] : p->set[c - p->n_set_null].column;
			const char *mine = c < p->n_set_null ? NULL : p->set[c - p->n_set_null].value, *theirs;
			if (anonymized_value(o, column, &theirs) &&
			    ((mine == NULL) != (theirs == NULL) || (mine && strcmp(mine, theirs) != 0))) {
				const char *key = c < p->n_set_null ? "set_null" : "set";
				char *full = xasprintf("policies[%d] (%s).%s", index, p->name, key);
				report(ctx, config_setting_get_member(s, key), full,
				       "policy %s anonymizes column \"%s\" of %s otherwise than policy %s: each would"
				       " undo the other at every batch",
				       p->name, column, p->table, o->name);
				free(full);
				return;
			}
		}
	}
}

static void parse_set(struct parse_ctx *ctx, const config_setting_t *s, const char *path, struct policy *p)
{
	static const char *const keys[] = {"column", "value", NULL};
	char *full = xasprintf("%s.set", path);
	int n;
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		report(ctx, s, full,
		       "must be a list of groups, as in ( { column = \"name\"; value = \"anonymous\"; } )");
		free(full);
		return;
	}
	n = config_setting_length(s);
	p->set = xcalloc((size_t)n + 1, sizeof(*p->set));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char *epath = xasprintf("%s[%d]", full, i);
		char *column, *value;
		if (!config_setting_is_group(e)) {
			report(ctx, e, epath, "must be a group { column = ...; value = ...; }");
			free(epath);
			continue;
		}
		check_keys(ctx, e, epath, keys);
		column = lookup_identifier(ctx, e, "column", epath, true);
		value = lookup_string(ctx, e, "value", epath, true, NULL);
		if (column && value) {
			p->set[p->n_set].column = column;
			p->set[p->n_set].value = value;
			p->n_set++;
		} else {
			free(column);
			free(value);
		}
		free(epath);
	}
	free(full);
}

/* Identity kinds are named in `request --identity KIND=VALUE`: no "=", nothing to quote. */
static bool identity_name_valid(const char *name)
{
	if (name[0] == '\0' || strlen(name) > CONFIG_IDENT_MAX)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
			return false;
	return true;
}

/* identity, on_erasure and erasure_exception: what a data subject's request does to the policy. */
static void parse_erasure(struct parse_ctx *ctx, const config_setting_t *s, const char *path, struct policy *p)
{
	char *identity = lookup_string(ctx, s, "identity", path, false, NULL);
	char *on_erasure = lookup_string(ctx, s, "on_erasure", path, false, "purge");
	char *full;
	if (identity && p->subject == NULL) {
		full = xasprintf("%s.identity", path);
		report(ctx, config_setting_get_member(s, "identity"), full,
		       "needs subject: the identity is the kind of value the subject column holds");
		free(full);
	} else if (identity && !identity_name_valid(identity)) {
		full = xasprintf("%s.identity", path);
		report(ctx, config_setting_get_member(s, "identity"), full,
		       "invalid identity \"%s\": use 1 to 63 of [a-z0-9_-]", identity);
		free(full);
	}
	p->identity = identity ? identity : p->subject ? xstrdup(p->subject) : NULL;
	if (on_erasure && strcmp(on_erasure, "keep") == 0) {
		p->on_erasure = POLICY_ERASURE_KEEP;
	} else if (on_erasure && strcmp(on_erasure, "purge") != 0) {
		full = xasprintf("%s.on_erasure", path);
		report(ctx, config_setting_get_member(s, "on_erasure"), full,
		       "must be \"purge\" or \"keep\", not \"%s\"", on_erasure);
		free(full);
	}
	p->erasure_exception = lookup_string(ctx, s, "erasure_exception", path, false, NULL);
	full = xasprintf("%s.erasure_exception", path);
	if (on_erasure == NULL || (strcmp(on_erasure, "purge") != 0 && strcmp(on_erasure, "keep") != 0))
		; /* reported above */
	else if (p->on_erasure == POLICY_ERASURE_KEEP &&
		 (p->erasure_exception == NULL || p->erasure_exception[0] == '\0'))
		report(ctx, config_setting_get_member(s, p->erasure_exception ? "erasure_exception" : "on_erasure"),
		       full,
		       "on_erasure = \"keep\" needs the reason the records are kept (\"tax law: invoices 10 years\")");
	else if (p->on_erasure != POLICY_ERASURE_KEEP && p->erasure_exception)
		report(ctx, config_setting_get_member(s, "erasure_exception"), full,
		       "only meaningful with on_erasure = \"keep\"");
	free(on_erasure);
	free(full);
}

/* The most columns a clock may be the first non-NULL of. */
#define CLOCK_COLUMNS_MAX 4
/* The most columns of a composite key. */
#define KEY_COLUMNS_MAX 8

/*
 * NAME: a column, or a list of 1 to MAX distinct columns, into *LIST / *N;
 * *DISPLAY, for people, is the column or the columns joined by ", ".
 */
static void parse_column_list(struct parse_ctx *ctx, const config_setting_t *s, const char *path, const char *name,
			      size_t max, char ***list, size_t *n, char **display)
{
	const config_setting_t *m = config_setting_get_member(s, name);
	char *full = xasprintf("%s.%s", path, name);
	if (m && (config_setting_type(m) == CONFIG_TYPE_ARRAY || config_setting_type(m) == CONFIG_TYPE_LIST)) {
		size_t errors_before = ctx->errs->n;
		*list = lookup_string_list(ctx, m, full, n, identifier_problem);
		if (ctx->errs->n == errors_before && (*n == 0 || *n > max))
			report(ctx, m, full, "must name 1 to %zu columns", max);
		for (size_t i = 0; i < *n; i++)
			for (size_t j = 0; j < i; j++)
				if (strcmp((*list)[i], (*list)[j]) == 0)
					report(ctx, m, full, "names column \"%s\" twice", (*list)[i]);
		if (*n > 0) {
			size_t len = 0;
			for (size_t i = 0; i < *n; i++)
				len += strlen((*list)[i]) + 2;
			*display = xcalloc(len + 1, 1);
			for (size_t i = 0; i < *n; i++) {
				if (i)
					strcat(*display, ", ");
				strcat(*display, (*list)[i]);
			}
		}
	} else if ((*display = lookup_identifier(ctx, s, name, path, true)) != NULL) {
		*list = xcalloc(2, sizeof(**list));
		(*list)[0] = xstrdup(*display);
		*n = 1;
	}
	free(full);
}

/* Whether the clock column's type needs it is known from the catalog only: the policy's description says. */
static void parse_clock_unit(struct parse_ctx *ctx, const config_setting_t *s, const char *path, struct policy *p)
{
	char *unit = lookup_string(ctx, s, "clock_unit", path, false, NULL);
	if (unit == NULL)
		return;
	for (size_t i = 1; i < sizeof(clock_unit_names) / sizeof(*clock_unit_names); i++)
		if (strcmp(unit, clock_unit_names[i]) == 0)
			p->clock_unit = (enum policy_clock_unit)i;
	if (p->clock_unit == POLICY_CLOCK_UNIT_NONE) {
		char *full = xasprintf("%s.clock_unit", path);
		report(ctx, config_setting_get_member(s, "clock_unit"), full,
		       "must be \"seconds\", \"milliseconds\" or \"microseconds\" (of the Unix epoch), not \"%s\"",
		       unit);
		free(full);
	}
	free(unit);
}

static bool parse_policy(struct parse_ctx *ctx, const config_setting_t *s, int index, struct policy *p)
{
	static const char *const keys[] = {
		"name",       "service",           "source",        "table",      "key",           "clock", "retain",
		"action",     "subject",           "batch",         "exempt",     "set_null",      "set",   "identity",
		"on_erasure", "erasure_exception", "guard_records", "clock_unit", "retain_column", NULL};
	size_t errors_before = ctx->errs->n;
	char *path = xasprintf("policies[%d]", index);
	const config_setting_t *m;
	char *action;

	memset(p, 0, sizeof(*p));
	p->line = (int)config_setting_source_line(s);
	if (!config_setting_is_group(s)) {
		report(ctx, s, path, "each policy must be a group { ... }");
		free(path);
		return false;
	}
	check_keys(ctx, s, path, keys);

	p->name = lookup_string(ctx, s, "name", path, true, NULL);
	if (p->name && !policy_name_valid(p->name)) {
		char *full = xasprintf("%s.name", path);
		report(ctx, config_setting_get_member(s, "name"), full,
		       "invalid policy name \"%s\": use 1 to 63 of [a-z0-9-]", p->name);
		free(full);
	}
	if (p->name) {
		/* Later messages name the policy, which people know better than an index. */
		free(path);
		path = xasprintf("policies[%d] (%s)", index, p->name);
	}
	p->service = lookup_string(ctx, s, "service", path, true, NULL);
	p->source = lookup_string(ctx, s, "source", path, true, NULL);
	p->table = lookup_string(ctx, s, "table", path, true, NULL);
	if (p->table) {
		char *schema = NULL, *rel = NULL;
		const char *why;
		if (!config_split_table_name(p->table, &schema, &rel, &why)) {
			char *full = xasprintf("%s.table", path);
			report(ctx, config_setting_get_member(s, "table"), full, "%s", why);
			free(full);
		}
		free(schema);
		free(rel);
	}
	/* The key: a column, or the columns of a composite key; the clock: the first of its columns that is not NULL. */
	parse_column_list(ctx, s, path, "key", KEY_COLUMNS_MAX, &p->keys, &p->n_keys, &p->key);
	parse_column_list(ctx, s, path, "clock", CLOCK_COLUMNS_MAX, &p->clocks, &p->n_clocks, &p->clock);
	parse_clock_unit(ctx, s, path, p);
	p->subject = lookup_identifier(ctx, s, "subject", path, false);
	parse_erasure(ctx, s, path, p);
	/* Zero: the clock is itself the deadline (an expiry column). */
	if (lookup_duration_as(ctx, s, "retain", path, true, NULL, &p->retain, true))
		p->retain_text = xstrdup(config_setting_get_string(config_setting_get_member(s, "retain")));
	/* A record's own duration, where it has one; its type is known from the catalog only. */
	p->retain_column = lookup_identifier(ctx, s, "retain_column", path, false);

	action = lookup_string(ctx, s, "action", path, false, "delete");
	if (action) {
		if (strcmp(action, "delete") == 0) {
			p->action = POLICY_ACTION_DELETE;
		} else if (strcmp(action, "anonymize") == 0) {
			p->action = POLICY_ACTION_ANONYMIZE;
		} else {
			char *full = xasprintf("%s.action", path);
			report(ctx, config_setting_get_member(s, "action"), full,
			       "must be \"delete\" or \"anonymize\", not \"%s\"", action);
			free(full);
		}
		free(action);
	}

	{
		long long batch = CONFIG_BATCH_DEFAULT;
		lookup_count(ctx, s, "batch", path, 1, CONFIG_BATCH_MAX, &batch);
		p->batch = (int)batch;
	}
	p->guard_records = -1;
	lookup_count(ctx, s, "guard_records", path, 0, CONFIG_GUARD_RECORDS_MAX, &p->guard_records);

	if ((m = config_setting_get_member(s, "exempt")) != NULL)
		parse_exempt(ctx, m, path, p);
	if ((m = config_setting_get_member(s, "set_null")) != NULL) {
		char *full = xasprintf("%s.set_null", path);
		p->set_null = lookup_string_list(ctx, m, full, &p->n_set_null, identifier_problem);
		free(full);
	}
	if ((m = config_setting_get_member(s, "set")) != NULL)
		parse_set(ctx, m, path, p);
	check_anonymized_columns(ctx, s, path, p);

	if (p->action == POLICY_ACTION_ANONYMIZE && p->n_set_null == 0 && p->n_set == 0 &&
	    ctx->errs->n == errors_before) {
		char *full = xasprintf("%s.action", path);
		report(ctx, config_setting_get_member(s, "action"), full,
		       "anonymize needs set_null or set (the columns to clear)");
		free(full);
	}
	if (p->action == POLICY_ACTION_DELETE && (p->n_set_null || p->n_set)) {
		char *full = xasprintf("%s.%s", path, p->n_set_null ? "set_null" : "set");
		report(ctx, config_setting_get_member(s, p->n_set_null ? "set_null" : "set"), full,
		       "only meaningful with action = \"anonymize\"");
		free(full);
	}
	free(path);
	return ctx->errs->n == errors_before;
}

/* ---- the whole file ---- */

static char *default_instance(void)
{
	char host[256];
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		return xstrdup("retentiond");
	host[sizeof(host) - 1] = '\0';
	return xstrdup(host);
}

bool duration_to_ms(const struct duration *d, long long *ms)
{
	double seconds;
	if (!duration_to_seconds(d, &seconds))
		return false;
	/* Rounded up: a positive timeout must never become 0, which PostgreSQL reads as none. */
	*ms = (long long)(seconds * 1000.0);
	if ((double)*ms < seconds * 1000.0)
		(*ms)++;
	return true;
}

/* PostgreSQL takes these in whole milliseconds, at most INT_MAX of them, and 0 means no timeout. */
static void lookup_timeout(struct parse_ctx *ctx, const config_setting_t *g, const char *name, const char *def,
			   struct duration *out)
{
	long long ms = 0;
	char *full = xasprintf("database.%s", name);
	if (lookup_duration(ctx, g, name, "database", false, def, out) &&
	    (!duration_to_ms(out, &ms) || out->usecs + (int64_t)out->days * 86400000000LL < 1000 || ms > INT_MAX))
		report(ctx, g ? config_setting_get_member(g, name) : NULL, full,
		       "must be between 1 millisecond and 24 days (no months): PostgreSQL would read it as no timeout");
	free(full);
}

static void parse_database(struct parse_ctx *ctx, const config_setting_t *root, struct config *cfg)
{
	static const char *const keys[] = {"conninfo",     "time_zone",           "statement_timeout",
					   "lock_timeout", "max_replication_lag", NULL};
	double seconds;
	const config_setting_t *g = config_setting_get_member(root, "database");
	if (g && !config_setting_is_group(g)) {
		report(ctx, g, "database", "must be a group { ... }");
		g = NULL;
	}
	if (g)
		check_keys(ctx, g, "database", keys);
	cfg->conninfo = lookup_string(ctx, g, "conninfo", "database", false, "");
	cfg->time_zone = lookup_string(ctx, g, "time_zone", "database", false, "UTC");
	cfg->time_zone_given = g && config_setting_get_member(g, "time_zone") != NULL;
	if (cfg->time_zone && (cfg->time_zone[0] == '\0' || strlen(cfg->time_zone) > 63)) {
		report(ctx, config_setting_get_member(g, "time_zone"), "database.time_zone",
		       "must name a time zone, as in \"UTC\" or \"Europe/Berlin\"");
	}
	lookup_timeout(ctx, g, "statement_timeout", "60 seconds", &cfg->statement_timeout);
	lookup_timeout(ctx, g, "lock_timeout", "5 seconds", &cfg->lock_timeout);
	if (lookup_duration_as(ctx, g, "max_replication_lag", "database", false, "0 seconds", &cfg->max_replication_lag,
			       true) &&
	    (!duration_to_seconds(&cfg->max_replication_lag, &seconds) || seconds < 0))
		report(ctx, config_setting_get_member(g, "max_replication_lag"), "database.max_replication_lag",
		       "must be \"0 seconds\" (off) or a duration of seconds to days (no months)");
}

static void parse_daemon(struct parse_ctx *ctx, const config_setting_t *root, struct config *cfg)
{
	static const char *const keys[] = {"instance",       "resync_interval", "log_level",      "quarantine_retry",
					   "metrics_listen", "guard_records",   "max_purge_rate", NULL};
	const config_setting_t *g = config_setting_get_member(root, "daemon");
	char *level;
	const char *why;
	double seconds;
	if (g && !config_setting_is_group(g)) {
		report(ctx, g, "daemon", "must be a group { ... }");
		g = NULL;
	}
	if (g)
		check_keys(ctx, g, "daemon", keys);
	cfg->instance = lookup_string(ctx, g, "instance", "daemon", false, NULL);
	if (cfg->instance == NULL)
		cfg->instance = default_instance();
	if (lookup_duration(ctx, g, "resync_interval", "daemon", false, "60 seconds", &cfg->resync_interval) &&
	    (!duration_to_seconds(&cfg->resync_interval, &seconds) || seconds < 1.0)) {
		report(ctx, g ? config_setting_get_member(g, "resync_interval") : NULL, "daemon.resync_interval",
		       "must be between 1 second and some days (no months)");
	}
	if (lookup_duration_as(ctx, g, "quarantine_retry", "daemon", false, "1 hour", &cfg->quarantine_retry, true) &&
	    (!duration_to_seconds(&cfg->quarantine_retry, &seconds) || seconds < 0)) {
		report(ctx, g ? config_setting_get_member(g, "quarantine_retry") : NULL, "daemon.quarantine_retry",
		       "must be \"0 seconds\" (retry only on retentionctl quarantine retry) or a duration of seconds to days (no"
		       " months)");
	}
	cfg->max_purge_rate = 0;
	lookup_count(ctx, g, "max_purge_rate", "daemon", 0, CONFIG_PURGE_RATE_MAX, &cfg->max_purge_rate);
	cfg->guard_records = CONFIG_GUARD_RECORDS_DEFAULT;
	lookup_count(ctx, g, "guard_records", "daemon", 0, CONFIG_GUARD_RECORDS_MAX, &cfg->guard_records);
	cfg->metrics_listen = lookup_string(ctx, g, "metrics_listen", "daemon", false, "");
	if (cfg->metrics_listen && cfg->metrics_listen[0] &&
	    !listen_address_parse(cfg->metrics_listen, NULL, NULL, NULL, &why))
		report(ctx, config_setting_get_member(g, "metrics_listen"), "daemon.metrics_listen", "%s, not \"%s\"",
		       why, cfg->metrics_listen);
	level = lookup_string(ctx, g, "log_level", "daemon", false, "info");
	if (level && !log_level_parse(level, &cfg->log_level))
		report(ctx, config_setting_get_member(g, "log_level"), "daemon.log_level",
		       "must be error, warning, info or debug, not \"%s\"", level);
	free(level);
}

static void parse_audit(struct parse_ctx *ctx, const config_setting_t *root, const char *include_dir,
			struct config *cfg)
{
	static const char *const keys[] = {"key_file", "pseudonymize", NULL};
	const config_setting_t *g = config_setting_get_member(root, "audit"), *list;
	char *key_file;
	if (g == NULL)
		return;
	if (!config_setting_is_group(g)) {
		report(ctx, g, "audit", "must be a group { ... }");
		return;
	}
	check_keys(ctx, g, "audit", keys);
	cfg->audit.configured = true;
	list = config_setting_get_member(g, "pseudonymize");
	if (list == NULL) {
		cfg->audit.pseudonymize_subject = true;
	} else {
		size_t n = 0;
		char **fields = lookup_string_list(ctx, list, "audit.pseudonymize", &n, NULL);
		for (size_t i = 0; fields && i < n; i++) {
			bool *flag = strcmp(fields[i], "subject") == 0 ? &cfg->audit.pseudonymize_subject
				     : strcmp(fields[i], "key") == 0   ? &cfg->audit.pseudonymize_key
								       : NULL;
			if (flag == NULL)
				report(ctx, config_setting_get_elem(list, (unsigned)i), "audit.pseudonymize",
				       "\"%s\" is not a field the trail can pseudonymize: \"subject\" or \"key\"",
				       fields[i]);
			else if (*flag)
				report(ctx, config_setting_get_elem(list, (unsigned)i), "audit.pseudonymize",
				       "\"%s\" is listed twice", fields[i]);
			else
				*flag = true;
			free(fields[i]);
		}
		free(fields);
	}
	key_file = lookup_string(ctx, g, "key_file", "audit", false, NULL);
	if (key_file && key_file[0] == '\0') {
		report(ctx, config_setting_get_member(g, "key_file"), "audit.key_file", "must name a file");
	} else if (key_file) {
		const config_setting_t *k = config_setting_get_member(g, "key_file");
		cfg->audit.key_file =
			key_file[0] == '/' ? xstrdup(key_file) : xasprintf("%s/%s", include_dir, key_file);
		cfg->audit.key_file_where = setting_where(ctx, k);
	} else if (config_setting_get_member(g, "key_file") == NULL &&
		   (cfg->audit.pseudonymize_subject || cfg->audit.pseudonymize_key)) {
		report(ctx, g, "audit.key_file",
		       "missing required key: pseudonyms need a key outside the database (retentionctl audit keygen"
		       " FILE makes one)");
	}
	free(key_file);
}

bool config_read_audit_key(struct config *cfg, struct config_errors *errs)
{
	char *why;
	if (cfg->audit.key_file == NULL || cfg->audit.key.bytes)
		return true;
	why = audit_key_read(cfg->audit.key_file, &cfg->audit.key);
	if (why == NULL)
		return true;
	errs_add(errs, "%s: audit.key_file: %s", cfg->audit.key_file_where, why);
	free(why);
	return false;
}

struct config *config_parse(const char *text, const char *filename, const char *include_dir, struct config_errors *errs)
{
	static const char *const top_keys[] = {"database", "daemon", "audit", "policies", NULL};
	struct parse_ctx ctx = {filename, include_dir, errs};
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	const config_setting_t *root, *list;
	config_t lc;
	size_t errors_before = errs->n;

	cfg->path = xstrdup(filename);
	config_init(&lc);
	config_set_include_dir(&lc, include_dir);
	if (config_read_string(&lc, text) != CONFIG_TRUE) {
		errs_add(errs, "%s:%d: %s", config_error_file(&lc) ? config_error_file(&lc) : filename,
			 config_error_line(&lc), config_error_text(&lc));
		goto out;
	}
	root = config_root_setting(&lc);
	check_keys(&ctx, root, "(top level)", top_keys);
	parse_database(&ctx, root, cfg);
	parse_daemon(&ctx, root, cfg);
	parse_audit(&ctx, root, include_dir, cfg);

	list = config_setting_get_member(root, "policies");
	if (list == NULL) {
		report(&ctx, root, "policies", "missing required key (a list of policies)");
	} else if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		report(&ctx, list, "policies", "must be a list ( { ... }, { ... } )");
	} else {
		int n = config_setting_length(list);
		cfg->policies = xcalloc((size_t)n + 1, sizeof(*cfg->policies));
		for (int i = 0; i < n; i++) {
			const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
			struct policy *p = &cfg->policies[cfg->n_policies];
			if (!parse_policy(&ctx, s, i, p)) {
				policy_clear(p);
				continue;
			}
			if (config_find_policy(cfg, p->name)) {
				char *full = xasprintf("policies[%d].name", i);
				report(&ctx, config_setting_get_member(s, "name"), full, "duplicate policy name \"%s\"",
				       p->name);
				free(full);
				policy_clear(p);
				continue;
			}
			check_anonymize_conflicts(&ctx, s, i, cfg, p);
			if (p->guard_records < 0)
				p->guard_records = cfg->guard_records;
			cfg->n_policies++;
		}
	}
out:
	config_destroy(&lc);
	if (errs->n != errors_before) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

const struct policy *config_find_policy(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_policies; i++)
		if (strcmp(cfg->policies[i].name, name) == 0)
			return &cfg->policies[i];
	return NULL;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_policies; i++)
		policy_clear(&cfg->policies[i]);
	free(cfg->policies);
	free(cfg->path);
	free(cfg->conninfo);
	free(cfg->time_zone);
	free(cfg->instance);
	free(cfg->metrics_listen);
	free(cfg->audit.key_file);
	free(cfg->audit.key_file_where);
	audit_key_clear(&cfg->audit.key);
	free(cfg);
}

/* ---- loading a file, with libconfig contained in a child ---- */

static char *read_config_file(const char *path, struct config_errors *errs)
{
	struct stat st;
	char *buf;
	ssize_t got;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		errs_add(errs, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		errs_add(errs, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_size > CONFIG_FILE_MAX) {
		errs_add(errs, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size && (got = read(fd, buf + len, (size_t)st.st_size - len)) > 0)
		len += (size_t)got;
	close(fd);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		errs_add(errs, "%s:%d: file contains a NUL byte", path, 1);
		free(buf);
		return NULL;
	}
	return buf;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

static long long monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs config_parse in a child; true if it finished cleanly with no problem. */
static bool vet_in_child(const char *text, const char *path, const char *include_dir, struct config_errors *errs)
{
	int fds[2];
	pid_t pid;
	char *out = NULL;
	size_t out_len = 0;
	long long deadline;
	int status = 0;
	bool timed_out = false;

	if (pipe2(fds, O_CLOEXEC) != 0) {
		errs_add(errs, "%s: cannot check the configuration: pipe: %s", path, strerror(errno));
		return false;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		errs_add(errs, "%s: cannot check the configuration: fork: %s", path, strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	if (pid == 0) {
		struct config_errors child_errs = {NULL, 0};
		struct config *cfg;
		FILE *w;
		close(fds[0]);
		signal(SIGPIPE, SIG_DFL);
		/* libconfig's scanner prints its own complaint before exit(); the parent words it. */
		int null_fd = open("/dev/null", O_WRONLY);
		if (null_fd >= 0)
			dup2(null_fd, STDERR_FILENO);
		cfg = config_parse(text, path, include_dir, &child_errs);
		w = fdopen(fds[1], "w");
		for (size_t i = 0; w && i < child_errs.n; i++)
			fprintf(w, "%s\n", child_errs.lines[i]);
		if (w)
			fflush(w);
		_exit(cfg ? 0 : 1);
	}
	close(fds[1]);
	deadline = monotonic_ms() + CONFIG_CHILD_DEADLINE_MS;
	for (;;) {
		struct pollfd pfd = {fds[0], POLLIN, 0};
		long long left = deadline - monotonic_ms();
		char chunk[4096];
		ssize_t got;
		int r;
		if (left <= 0) {
			timed_out = true;
			break;
		}
		r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			timed_out = r == 0;
			break;
		}
		got = read(fds[0], chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		out = xrealloc(out, out_len + (size_t)got + 1);
		memcpy(out + out_len, chunk, (size_t)got);
		out_len += (size_t)got;
		out[out_len] = '\0';
	}
	close(fds[0]);
	if (timed_out)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;

	if (timed_out) {
		errs_add(
			errs,
			"%s: reading the configuration took longer than %d s (does an @include name a FIFO or a device?)",
			path, CONFIG_CHILD_DEADLINE_MS / 1000);
	} else if (WIFEXITED(status) && WEXITSTATUS(status) <= 1 && out_len > 0) {
		char *save = NULL;
		for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			errs_add(errs, "%s", line);
	} else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		if (WIFSIGNALED(status))
			errs_add(errs, "%s: the configuration parser was killed by signal %d while reading this file",
				 path, WTERMSIG(status));
		else
			errs_add(
				errs,
				"%s: the configuration parser gave up on this file (exit status %d; does an @include name a directory or a special file?)",
				path, WEXITSTATUS(status));
	}
	free(out);
	return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
	char *text = read_config_file(path, errs);
	char *include_dir;
	struct config *cfg = NULL;
	if (text == NULL)
		return NULL;
	include_dir = dir_of(path);
	if (vet_in_child(text, path, include_dir, errs))
		cfg = config_parse(text, path, include_dir, errs);
	free(include_dir);
	free(text);
	return cfg;
}
