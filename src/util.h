/*
 * util.h -- allocation helpers.
 */
#ifndef RETENTIOND_UTIL_H
#define RETENTIOND_UTIL_H

#include <stdarg.h>
#include <stddef.h>

/* Allocation failure is not a condition this program can recover from: these abort. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* SECONDS for people: "0.012 s", "4 min 10 s", "3 h 5 min", "120 days 2 h" (BUF is returned). */
const char *seconds_for_people(double seconds, char *buf, size_t size);

#endif
