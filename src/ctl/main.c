/* retentionctl: one command table, one function per verb. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autoconf.h"
#include "ctl.h"
#include "util.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

static const struct command {
	const char *name;
	int (*run)(struct ctl *ctl, int argc, char **argv);
	const char *summary;
} commands[] = {
	{"policies", cmd_policies, "every configured policy"},
	{"migrate", cmd_migrate, "install or upgrade the retention schema"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: retentionctl [-c FILE] [-d CONNINFO] [--format table|json|csv] COMMAND [ARGS]\n\n"
		     "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\n'retentionctl COMMAND --help' describes a command.\n"
		     "Exit status: 0 ok, 1 error, 2 usage error, 3 audit verification failed.\n");
}

void ctl_error(const char *fmt, ...)
{
	va_list ap;
	fputs("retentionctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct config *ctl_config(struct ctl *ctl)
{
	struct config_errors errs = {NULL, 0};
	if (ctl->cfg)
		return ctl->cfg;
	ctl->cfg = config_load(ctl->config_path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "retentionctl: %s\n", errs.lines[i]);
	config_errors_clear(&errs);
	return ctl->cfg;
}

PGconn *ctl_connect(struct ctl *ctl)
{
	const char *conninfo = ctl->conninfo;
	PGresult *res;
	const char *tz;
	if (ctl->conn)
		return ctl->conn;
	/* Without -d the configuration names the database, if there is one to read. */
	if (conninfo == NULL && (ctl->config_path_given || access(ctl->config_path, R_OK) == 0)) {
		if (ctl_config(ctl) == NULL)
			return NULL;
		conninfo = ctl->cfg->conninfo;
	}
	ctl->conn = PQconnectdb(conninfo ? conninfo : "");
	if (PQstatus(ctl->conn) != CONNECTION_OK) {
		ctl_error("cannot connect: %s", PQerrorMessage(ctl->conn));
		PQfinish(ctl->conn);
		ctl->conn = NULL;
		return NULL;
	}
	/* Calendar arithmetic in the configured zone, exactly as the daemon does it. */
	tz = ctl->cfg ? ctl->cfg->time_zone : "UTC";
	res = PQexecParams(ctl->conn, "SELECT set_config('TimeZone', $1, false)", 1, NULL, &tz, NULL,
			   NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		ctl_error("cannot set time zone %s: %s", tz, PQresultErrorMessage(res));
		PQclear(res);
		PQfinish(ctl->conn);
		ctl->conn = NULL;
		return NULL;
	}
	PQclear(res);
	return ctl->conn;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"dbname", required_argument, NULL, 'd'},
		{"format", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct ctl ctl;
	int opt, status = CTL_USAGE;
	const char *command;

	memset(&ctl, 0, sizeof(ctl));
	ctl.config_path = SYSCONFDIR "/retentiond/retentiond.conf";
	ctl.format = CTL_FORMAT_TABLE;
	/* '+' stops at the command so that its own options are left for it. */
	while ((opt = getopt_long(argc, argv, "+c:d:f:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			ctl.config_path = optarg;
			ctl.config_path_given = true;
			break;
		case 'd':
			ctl.conninfo = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "table") == 0) {
				ctl.format = CTL_FORMAT_TABLE;
			} else if (strcmp(optarg, "json") == 0) {
				ctl.format = CTL_FORMAT_JSON;
			} else if (strcmp(optarg, "csv") == 0) {
				ctl.format = CTL_FORMAT_CSV;
			} else {
				ctl_error("--format must be table, json or csv, not \"%s\"", optarg);
				return CTL_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return CTL_OK;
		case 'V':
			printf("retentionctl %s\n", PACKAGE_VERSION);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	command = argv[optind];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(command, commands[i].name) == 0) {
			/* The verb sees itself as argv[0]; optind = 0 restarts getopt for it. */
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			optind = 0;
			status = commands[i].run(&ctl, sub_argc, sub_argv);
			goto done;
		}
	}
	ctl_error("unknown command \"%s\" (retentionctl --help lists them)", command);
done:
	if (ctl.conn)
		PQfinish(ctl.conn);
	config_free(ctl.cfg);
	return status;
}
