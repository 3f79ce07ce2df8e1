/*
 * session.h -- the settings every connection of the daemon and retentionctl
 * is made with.
 */
#ifndef RETENTIOND_SESSION_H
#define RETENTIOND_SESSION_H

#include <libpq-fe.h>

#include "config.h"

/*
 * libpq `options` that pin what every statement relies on: the zone calendar
 * arithmetic runs in, the statement and lock timeouts (milliseconds, 0 =
 * none), and a search_path of pg_catalog only, so that no role's function,
 * operator or type can stand in for a built-in. Malloc'd.
 */
char *session_options_for(const char *time_zone, long long statement_timeout_ms, long long lock_timeout_ms);
/* The same for CFG's database settings. */
char *session_options(const struct config *cfg);
/* CONNINFO's own `options`, if any, then SESSION_OPTIONS (later ones win). NULL with *ERR if CONNINFO does not parse. */
char *session_merged_options(const char *conninfo, const char *session_options, char **err);
/* Connects, blocking, with SESSION_OPTIONS; NULL with *ERR (one line, malloc'd) on failure. */
PGconn *session_connect(const char *conninfo, const char *session_options, char **err);

#endif
