/*
 * invariant.h -- assertions of the checking build (./configure
 * --enable-checking, run in CI). An invariant that fails logs where and
 * aborts, so a test sees a crash instead of a daemon that goes on in a
 * state the code does not expect. Without the checking build they compile
 * to nothing and their condition is not evaluated.
 */
#ifndef RETENTIOND_INVARIANT_H
#define RETENTIOND_INVARIANT_H

#include "autoconf.h"

#ifdef RETENTIOND_CHECKING
void invariant_failed(const char *condition, const char *file, int line) __attribute__((noreturn));
#define INVARIANT(cond) ((cond) ? (void)0 : invariant_failed(#cond, __FILE__, __LINE__))
#else
#define INVARIANT(cond) ((void)0)
#endif

#endif
