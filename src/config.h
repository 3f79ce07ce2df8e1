/*
 * config.h -- the configuration file, loaded and validated (see config.c).
 */
#ifndef RETENTIOND_CONFIG_H
#define RETENTIOND_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "log.h"

/* Identifiers longer than this are truncated by PostgreSQL (NAMEDATALEN - 1). */
#define CONFIG_IDENT_MAX     63
#define CONFIG_BATCH_DEFAULT 500
#define CONFIG_BATCH_MAX     10000
/* A rule change that would newly make more records due than this waits for approval; 0: never. */
#define CONFIG_GUARD_RECORDS_DEFAULT 10000
#define CONFIG_GUARD_RECORDS_MAX     1000000000000LL
#define CONFIG_PURGE_RATE_MAX        100000000LL

/* A calendar duration, kept in PostgreSQL's interval fields so the server does the arithmetic. */
struct duration {
	int32_t months;
	int32_t days;
	int64_t usecs;
};

enum policy_action {
	POLICY_ACTION_DELETE,
	POLICY_ACTION_ANONYMIZE,
};

/* "delete" or "anonymize", as the configuration and the audit trail spell it. */
const char *policy_action_name(enum policy_action action);

/* What an integer clock counts since the Unix epoch (policies.clock_unit); NONE: the clock is a time or date. */
enum policy_clock_unit {
	POLICY_CLOCK_UNIT_NONE,
	POLICY_CLOCK_UNIT_SECONDS,
	POLICY_CLOCK_UNIT_MILLISECONDS,
	POLICY_CLOCK_UNIT_MICROSECONDS,
};

/* "seconds", "milliseconds" or "microseconds", as the configuration spells it; NULL for NONE. */
const char *policy_clock_unit_name(enum policy_clock_unit unit);

/* What a data subject's erasure request does to a policy's records. */
enum policy_on_erasure {
	POLICY_ERASURE_PURGE, /* purged at once, by the policy's action */
	POLICY_ERASURE_KEEP,  /* kept until due, for erasure_exception */
};

struct column_value {
	char *column;
	char *value;
};

struct policy {
	char *name;
	char *service;
	char *source;
	char *table; /* as written in the configuration; resolved against the catalog */
	char **keys; /* the key's columns: one, or those of a composite key */
	size_t n_keys;
	char *key;     /* for people: the column, or the columns joined by ", " */
	char **clocks; /* the clock: the first of these columns that is not NULL */
	size_t n_clocks;
	char *clock; /* for people: the column, or the columns joined by ", " */
	enum policy_clock_unit clock_unit;
	char *subject;  /* NULL when the policy names no data subject column */
	char *identity; /* the kind of identity the subject column holds (requests name it); NULL without a subject */
	enum policy_on_erasure on_erasure;
	char *erasure_exception; /* with POLICY_ERASURE_KEEP: why, for the request's results */
	struct duration retain;
	char *retain_text; /* as configured, for people: "1 month" */
	char *retain_column; /* a record's own duration where it is not NULL (interval, or integer in clock_unit); or NULL */
	enum policy_action action;
	int batch;
	long long guard_records; /* policies.guard_records, else daemon.guard_records; 0: no approval needed */
	char *exempt_column;     /* NULL when nothing is exempt */
	char **exempt_values;
	size_t n_exempt_values;
	char **set_null;
	size_t n_set_null;
	struct column_value *set;
	size_t n_set;
	int line;
};

/* The audit group: which identifiers the trail stores as keyed pseudonyms. */
struct config_audit {
	bool configured;      /* the file has an audit group; without one (version 1) identifiers stay in clear */
	char *key_file;       /* as an absolute path (relative ones are taken from the file's directory), or NULL */
	char *key_file_where; /* "FILE:LINE" of the setting, for messages */
	bool pseudonymize_subject;
	bool pseudonymize_key;
	struct audit_key key; /* the key file's bytes, once config_read_audit_key has read them */
};

struct config {
	char *path;
	char *conninfo;
	char *time_zone;
	bool time_zone_given; /* database.time_zone is in the file (else UTC) */
	struct duration statement_timeout;
	struct duration lock_timeout;
	struct duration
		max_replication_lag; /* purging of backlog pauses while a standby replays further behind; 0: off */
	char *instance;
	struct duration resync_interval;
	/* A quarantined record is tried again this long after it failed, doubling per failure; 0: by hand only. */
	struct duration quarantine_retry;
	char *metrics_listen;     /* "host:port", "[v6]:port" or "unix:PATH" for GET /metrics; "" for none */
	long long guard_records;  /* the policies' default (policies.guard_records) */
	long long max_purge_rate; /* backlog records per second, all policies together; 0: no limit */
	enum log_level log_level;
	struct config_audit audit;
	struct policy *policies;
	size_t n_policies;
};

/* Every problem found in one file, each a full line: "FILE:LINE: KEY: message". */
struct config_errors {
	char **lines;
	size_t n;
};

/*
 * Reads, parses and validates FILE. libconfig 1.5 calls exit() on some input
 * (an @include of a directory) and blocks on others (a FIFO), so the file is
 * first parsed in a child process with a deadline; only input that the child
 * parsed cleanly is parsed again here. Returns NULL with ERRS filled on any
 * problem; never exits.
 */
struct config *config_load(const char *path, struct config_errors *errs);

/*
 * Parses TEXT in this process. FILENAME names it in messages. @include paths
 * are taken relative to INCLUDE_DIR. Only safe on input config_load's child
 * has vetted, or with an INCLUDE_DIR that does not exist.
 */
struct config *config_parse(const char *text, const char *filename, const char *include_dir,
			    struct config_errors *errs);

/*
 * Reads audit.key_file into cfg->audit.key, if the configuration names one.
 * The daemon does it at start and on reload (a key it cannot read is a
 * configuration error); retentionctl only when a lookup needs a pseudonym.
 */
bool config_read_audit_key(struct config *cfg, struct config_errors *errs);
/* Whether the trail stores this configuration's subjects / keys as pseudonyms. */
#define config_pseudonymizes_subject(cfg) ((cfg)->audit.pseudonymize_subject)
#define config_pseudonymizes_key(cfg)     ((cfg)->audit.pseudonymize_key)

void config_free(struct config *cfg);
/* Whether COLUMN is one of P's key columns. */
bool config_policy_has_key_column(const struct policy *p, const char *column);
void config_errors_clear(struct config_errors *errs);

const struct policy *config_find_policy(const struct config *cfg, const char *name);

/*
 * Splits a table name written as in SQL ("app.users", "\"Crm Data\".notes")
 * into its schema (NULL if unqualified) and relation name, folding unquoted
 * parts to lower case as PostgreSQL does.
 */
bool config_split_table_name(const char *text, char **schema, char **relname, const char **why);

/* "15 minutes", "1 month", "24 hours", "1 year 6 months"; false with *WHY set on error. */
bool duration_parse(const char *text, struct duration *out, const char **why);
/*
 * A listen address: "host:port", "[v6]:port" (-> *HOST, *PORT) or
 * "unix:/absolute/path" (-> *UNIX_PATH); each malloc'd, or NULL. False with
 * *WHY if it is none of them. HOST, PORT and UNIX_PATH may be NULL.
 */
bool listen_address_parse(const char *listen, char **host, unsigned short *port, char **unix_path, const char **why);
/* The same, and "0 seconds" too: for a key where zero means off. */
bool duration_parse_or_zero(const char *text, struct duration *out, const char **why);
/* PostgreSQL interval input, e.g. "1 months 0 days 0 microseconds". */
void duration_to_sql(const struct duration *d, char *buf, size_t size);
/* For the daemon's own timers: months are not a fixed length, so they are rejected. */
bool duration_to_seconds(const struct duration *d, double *seconds);
/* Whole milliseconds, rounded up; false for months. */
bool duration_to_ms(const struct duration *d, long long *ms);

/* The keys the loader knows, as "group.key" or "policies.key"; NULL-terminated. */
extern const char *const config_known_keys[];

#endif
