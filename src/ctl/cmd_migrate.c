/*
 * cmd_migrate.c -- retentionctl migrate.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "schema.h"

int cmd_migrate(struct ctl *ctl, int argc, char **argv)
{
	char *err = NULL;
	int applied;
	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0) {
			printf("usage: retentionctl migrate\n\n"
			       "Installs the retention schema, or upgrades it to version %d.\n"
			       "Runs in one transaction; running it again changes nothing.\n",
			       schema_latest_version());
			return CTL_OK;
		}
		ctl_error("migrate takes no arguments");
		return CTL_USAGE;
	}
	if (ctl_connect(ctl) == NULL)
		return CTL_ERROR;
	applied = schema_migrate(ctl->conn, &err);
	if (applied < 0) {
		ctl_error("migrate: %s", err);
		free(err);
		return CTL_ERROR;
	}
	if (applied == 0)
		printf("schema retention is at version %d; nothing to do\n", schema_latest_version());
	else
		printf("schema retention upgraded to version %d (%d step%s)\n", schema_latest_version(), applied,
		       applied == 1 ? "" : "s");
	return CTL_OK;
}
