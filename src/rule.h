/*
 * rule.h -- a policy's rule as a version: what decides which of its rows are
 * due, written down so that a changed rule is told from the one in force
 * (retention.rule_versions). The daemon, retentionctl approve and pending
 * use the same text, state and statements.
 */
#ifndef RETENTIOND_RULE_H
#define RETENTIOND_RULE_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "config.h"
#include "policy.h"

/* The rule of P on the table SHAPE describes, as recorded (JSON), and its frame (what retain and exempt values leave). */
struct rule {
	char *text;
	char *frame;
	char *retain;        /* interval input */
	char *exempt_values; /* text[] literal, NULL without an exempt column */
};
void rule_of(struct rule *r, const struct config *cfg, const struct policy *p, const struct policy_shape *shape);
void rule_free(struct rule *r);

/* Columns of rule_state_sql and rule_seen_sql. */
struct rule_state {
	long long version;  /* 0: not recorded yet */
	bool approved;      /* by an operator, or it is the version in force */
	long long in_force; /* the version a daemon enforced last, 0 if none */
	bool comparable;    /* what the version in force makes due can be told row by row */
	bool in_force_exempts;
	bool upgrade; /* approved as the rule in force before versions were recorded */
	/* Why it may not be enforced while the policy's active holds stand (its key or subject column moved), or "". */
	char holds_moved[320];
};

/* $1 policy, $2 rule, $3 frame, $4 exempt column -> rule_state (read only). */
extern const char rule_state_sql[];
/* The same with $4 retain, $5 exempt column, $6 exempt values, $7 instance: records the version. */
extern const char rule_seen_sql[];
/* $1 version, $2 count, $3 reason, $4 who, $5 wake the daemons -> whether it was approved now. */
extern const char rule_approve_sql[];
/* $1 version: a daemon enforces it from now; it is the version in force. */
extern const char rule_enforce_sql[];

/* RULE_STATE_SQL's parameters for P's rule R (4 of them) or rule_seen_sql's (7), into PARAMS. */
int rule_state_params(const struct rule *r, const struct policy *p, const char **params);
int rule_seen_params(const struct rule *r, const struct policy *p, const char *instance, const char **params);
/* Reads a result of either; false if it is not one row of them. */
bool rule_state_parse(const PGresult *res, struct rule_state *st);
/*
 * What the policy's statements are limited to in this state: NULL once
 * approved, else U, filled.
 */
const struct policy_unapproved *rule_unapproved(const struct rule_state *st, struct policy_unapproved *u);

#endif
