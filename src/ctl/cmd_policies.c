/*
 * cmd_policies.c -- retentionctl policies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "policy.h"
#include "util.h"

/* The listing goes through PostgreSQL so that JSON and CSV are escaped by it. */
static const char policies_sql[] =
	"SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])"
	" AS p(name, service, \"table\", clock, retain, action)";

int cmd_policies(struct ctl *ctl, int argc, char **argv)
{
	struct config *cfg;
	char **columns[6];
	char *params[6];
	int status;
	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0) {
			printf("usage: retentionctl policies\n\n"
			       "Lists every configured policy: name, service, table, clock, retain, action.\n");
			return CTL_OK;
		}
		ctl_error("policies takes no arguments");
		return CTL_USAGE;
	}
	if ((cfg = ctl_config(ctl)) == NULL || ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	for (int c = 0; c < 6; c++)
		columns[c] = xcalloc(cfg->n_policies + 1, sizeof(char *));
	for (size_t i = 0; i < cfg->n_policies; i++) {
		const struct policy *p = &cfg->policies[i];
		columns[0][i] = p->name;
		columns[1][i] = p->service;
		columns[2][i] = p->table;
		columns[3][i] = p->clock;
		columns[4][i] = p->retain_text;
		columns[5][i] = (char *)policy_action_name(p->action);
	}
	for (int c = 0; c < 6; c++)
		params[c] = policy_text_array(columns[c], cfg->n_policies);
	status = ctl_print_query(ctl, policies_sql, NULL, 6, NULL, (const char *const *)params);
	for (int c = 0; c < 6; c++) {
		free(params[c]);
		free(columns[c]);
	}
	return status;
}
