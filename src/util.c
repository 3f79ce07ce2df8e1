/*
 * util.c -- allocation that aborts on failure, and formatted strings.
 */
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out_of_memory(void)
{
	fputs("out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (q == NULL)
		out_of_memory();
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		out_of_memory();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (p == NULL)
		out_of_memory();
	return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *out;
	if (vasprintf(&out, fmt, ap) < 0)
		out_of_memory();
	return out;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *out;
	va_start(ap, fmt);
	out = xvasprintf(fmt, ap);
	va_end(ap);
	return out;
}

const char *seconds_for_people(double seconds, char *buf, size_t size)
{
	const char *sign = seconds < 0 ? "-" : "";
	double s = seconds < 0 ? -seconds : seconds;
	long long whole;
	if (!isfinite(s) || s >= 1e15) {
		/* An infinite clock or hold end: no count of days means anything. */
		snprintf(buf, size, "%sforever", sign);
		return buf;
	}
	whole = (long long)s;
	if (s < 60)
		snprintf(buf, size, "%s%.3f s", sign, s);
	else if (s < 3600)
		snprintf(buf, size, "%s%lld min %lld s", sign, whole / 60, whole % 60);
	else if (s < 86400)
		snprintf(buf, size, "%s%lld h %lld min", sign, whole / 3600, whole % 3600 / 60);
	else
		snprintf(buf, size, "%s%lld day%s %lld h", sign, whole / 86400, whole / 86400 == 1 ? "" : "s",
			 whole % 86400 / 3600);
	return buf;
}
