# Shared by bench/session and the scenarios: SQL, processes, timing and the
# results store. Sourced, with PGHOST etc. set by tests/pg-harness.

# Notices (DROP ... IF EXISTS) are noise here.
export PGOPTIONS="-c client_min_messages=warning"

# psql without the user's ~/.psqlrc, stopping at the first error, unaligned.
q() { psql -X -v ON_ERROR_STOP=1 -q -At "$@"; }

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

elapsed() { echo "$(now) - $1" | bc -l; }

# Progress on stderr; the tables go to stdout.
say() { printf '  %(%H:%M:%S)T %s\n' -1 "$*" >&2; }

# A fresh database DB made from TEMPLATE by copying its files (no WAL for the copy).
clone_db() {
	q -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1 TEMPLATE $2 STRATEGY file_copy"
}

# The daemon logs in as the least-privilege role sql/daemon-role.sql makes, as on a data server.
DAEMON_ROLE=retentiond_bench

fresh_db() {
	q -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
	"$BIN/retentionctl" -d "dbname=$1" migrate >/dev/null
	q -d "$1" -v role=$DAEMON_ROLE -f sql/daemon-role.sql
	# The scenarios' tables come later, in public: the daemon gets each as it is made.
	q -d "$1" -c "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, DELETE, UPDATE ON TABLES TO $DAEMON_ROLE"
	q -d "$1" -f bench/sql/contestants.sql
}

wal_lsn() { q -d "$1" -c "SELECT pg_current_wal_lsn()"; }

wal_bytes_since() { q -d "$1" -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$2')"; }

# Polls SQL (one boolean, cheap: it shares 2 cores with the contestant) in DB
# every 100 ms until it is true or SECONDS pass; fails then.
wait_for() {
	local db=$1 sql=$2 seconds=$3 deadline
	deadline=$(echo "$(now) + $seconds" | bc)
	until [ "$(q -d "$db" -c "$sql")" = t ]; do
		if (($(echo "$(now) > $deadline" | bc))); then
			echo "bench: not true within $seconds s in $db: $sql" >&2
			return 1
		fi
		sleep 0.1
	done
}

# ---- configurations and the daemon ----

# A configuration for DB whose policies come as "name|table|retain|batch" lines on stdin.
write_config() {
	local db=$1 path=$2 name table retain batch sep=""
	{
		printf 'database = { conninfo = "dbname=%s user=%s"; };\n' "$db" "$DAEMON_ROLE"
		# Rule versions: each run times the purge of a new policy, which the guard would block until approved.
		printf 'daemon = { instance = "retentiond"; log_level = "info"; guard_records = 0; %s};\n' "${DAEMON_EXTRA:-}"
		printf 'policies = (\n'
		while IFS='|' read -r name table retain batch; do
			printf '%s  { name = "%s"; service = "bench"; source = "bench/run"; table = "%s";\n' "$sep" "$name" "$table"
			printf '    key = "key"; clock = "clock"; subject = "subject"; retain = "%s"; batch = %s; }\n' "$retain" "$batch"
			sep=","
		done
		printf ');\n'
	} >"$path"
}

DAEMON_PID=""

start_daemon() {
	"$BIN/retentiond" -c "$1" >>"$2" 2>&1 &
	DAEMON_PID=$!
}

# Kilobytes of a /proc/PID/status field (VmHWM, VmRSS) or a count (voluntary_ctxt_switches).
proc_status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# CPU time of PID in seconds, from the scheduler's nanosecond counter.
proc_cpu() { awk '{ printf "%.6f\n", $1 / 1e9 }' "/proc/$1/schedstat"; }

# Context switches of PID: each is a wake-up (voluntary: it slept and was woken).
proc_switches() { echo $(($(proc_status "$1" voluntary_ctxt_switches) + $(proc_status "$1" nonvoluntary_ctxt_switches))); }

stop_daemon() {
	[ -n "$DAEMON_PID" ] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=""
}

# The backend serving the daemon's connection in DB.
daemon_backend() {
	q -d "$1" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND backend_type = 'client backend'
	               AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 1"
}

# ---- results: every measurement is a row; the tables are SQL over them ----

# record SCENARIO SECTION CONTESTANT METRIC RUN VALUE
record() {
	q -d bench -c "INSERT INTO result VALUES ('$1', '$2', '$3', '$4', $5, $6)"
}

# record_ratio SCENARIO SECTION RUN CONTESTANT BASELINE METRIC RATIO: see bench/sql/results.sql.
record_ratio() {
	q -d bench -c "SELECT record_ratio('$1', '$2', $3, '$4', '$5', '$6', '$7')" >/dev/null
}

# N with thousands separated, as the tables show it.
num() { q -d bench -c "SELECT num($1, 0)"; }

# The audit trail of DB verified by retentionctl: a contestant that broke it does not count.
verify_audit() {
	"$BIN/retentionctl" -d "dbname=$1" audit verify >/dev/null ||
		{ echo "bench: audit verify failed in $1" >&2; return 1; }
}
