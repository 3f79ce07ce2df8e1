/*
 * One line per event on stderr. Under systemd the journal captures stderr, and
 * the "<N>" prefix (sd-daemon(3)) gives it the priority, so there is no
 * syslog code path to keep in sync.
 */
#include "log.h"

#include "invariant.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static const char *current_ident = NULL;

static const struct {
	const char *name;
	enum log_level level;
	int syslog_priority;
} log_levels[] = {
	{"error", LOG_LEVEL_ERROR, 3},
	{"warning", LOG_LEVEL_WARNING, 4},
	{"info", LOG_LEVEL_INFO, 6},
	{"debug", LOG_LEVEL_DEBUG, 7},
};

void log_set_level(enum log_level level) { current_level = level; }

enum log_level log_get_level(void) { return current_level; }

void log_set_ident(const char *ident) { current_ident = ident; }

bool log_level_parse(const char *text, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
		if (strcmp(text, log_levels[i].name) == 0) {
			*level = log_levels[i].level;
			return true;
		}
	}
	return false;
}

static bool stderr_is_journal(void)
{
	static int cached = -1;
	if (cached < 0)
		cached = getenv("JOURNAL_STREAM") != NULL;
	return cached;
}

static void log_emit(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void log_emit(enum log_level level, const char *fmt, va_list ap)
{
	char line[4096];
	if (level > current_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* One event, one line: the journal would split anything else into entries without a priority. */
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	if (stderr_is_journal()) {
		fprintf(stderr, "<%d>%s\n", log_levels[level].syslog_priority, line);
	} else {
		char stamp[32];
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s%s%s: %s\n", stamp, ts.tv_nsec / 1000000,
			current_ident ? current_ident : "", current_ident ? " " : "", log_levels[level].name, line);
	}
	fflush(stderr);
}

#define LOG_FN(fn, level)                                                                                              \
	void fn(const char *fmt, ...)                                                                                  \
	{                                                                                                              \
		va_list ap;                                                                                            \
		va_start(ap, fmt);                                                                                     \
		log_emit(level, fmt, ap);                                                                              \
		va_end(ap);                                                                                            \
	}

LOG_FN(log_err, LOG_LEVEL_ERROR)
LOG_FN(log_warn, LOG_LEVEL_WARNING)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)

#ifdef RETENTIOND_CHECKING
void invariant_failed(const char *condition, const char *file, int line)
{
	log_err("invariant failed at %s:%d: %s", file, line, condition);
	abort();
}
#endif

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_emit(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
