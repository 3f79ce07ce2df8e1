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

#endif
