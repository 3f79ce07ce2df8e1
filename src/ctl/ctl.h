#ifndef RETENTIONCTL_CTL_H
#define RETENTIONCTL_CTL_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "config.h"

enum ctl_exit {
	CTL_OK = 0,
	CTL_ERROR = 1,
	CTL_USAGE = 2,
	CTL_VERIFY_FAILED = 3,
};

enum ctl_format {
	CTL_FORMAT_TABLE,
	CTL_FORMAT_JSON,
	CTL_FORMAT_CSV,
};

struct ctl {
	const char *config_path;
	bool config_path_given;
	const char *conninfo;
	enum ctl_format format;
	struct config *cfg;
	PGconn *conn;
};

/* Loads the configuration (once); prints the problems and returns NULL if it is unusable. */
struct config *ctl_config(struct ctl *ctl);
/* Connects (once) to -d CONNINFO, else the configuration's, else libpq's defaults. */
PGconn *ctl_connect(struct ctl *ctl);

/* Prints "retentionctl: MESSAGE" on stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs QUERY with text PARAMS and prints its rows in the chosen format. */
int ctl_print_query(struct ctl *ctl, const char *query, int n_params, const char *const *params);

int cmd_migrate(struct ctl *ctl, int argc, char **argv);
int cmd_policies(struct ctl *ctl, int argc, char **argv);

#endif
