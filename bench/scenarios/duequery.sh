# Scenario 4, scale of the due query: the daemon's next-due statement
# (next_wake, its exact text, run by psql) and `retentionctl pending` (end to end) on one
# large table whose clocks span the last 100 days, with 90 days of retention:
# 10% of the rows are overdue, 1% more fall due within pending's 24 hours.
# Timed with the index on the clock, without it, and after a mass purge of
# the overdue 10% (one DELETE), before and after VACUUM. Before VACUUM the
# first query after the purge walks the dead index entries and marks them
# dead as it goes, so the queries after it are cheaper: both are shown, and
# each run purges a fresh copy of the table.

DUE_ROWS=${BENCH_DUE_ROWS:-2000000}
DUE_FULL_ROWS=10000000
DUE_CLOCK="now() - interval '100 days' + g * (interval '100 days' / $DUE_ROWS)"
DUE_PURGE="DELETE FROM records WHERE clock <= now() - interval '90 days'"

# Milliseconds of each statement on stdin, run in one psql session on DB, one per line.
timed_statements() {
	{
		echo '\o /dev/null'
		echo '\timing on'
		cat
	} | psql -X -q -v ON_ERROR_STOP=1 -d "$1" | awk '/^Time: / { print $2 }'
}

# next_wake, COUNT times in one session, after the policy's prepared statements.
time_next_wake() {
	local db=$1 count=$2 i
	{
		cat "$WORK/due.sql"
		for ((i = 0; i < count; i++)); do echo "EXECUTE next_wake(:args, false);"; done
	} | timed_statements "$db" | tail -n "$count"
}

time_pending() {
	local db=$1 start
	start=$(now)
	"$BIN/retentionctl" -d "dbname=$db" -c "$WORK/due.conf" pending >/dev/null
	echo "$(elapsed "$start") * 1000" | bc -l
}

# record_times SECTION CONTESTANT: one run per line of stdin (milliseconds).
record_times() {
	local run=0 ms
	while read -r ms; do
		run=$((run + 1))
		record due "$1" "$2" ms "$run" "$ms"
	done
}

# Both queries, RUNS times each, on DB as it is.
duequery_phase() {
	local db=$1 section=$2 run
	time_next_wake "$db" "$RUNS" | record_times "$section" next_wake
	for ((run = 1; run <= RUNS; run++)); do time_pending "$db"; done | record_times "$section" pending
}

duequery_all() {
	local run c
	fresh_db due_tpl
	q -d due_tpl -v table=records -v rows="$DUE_ROWS" -v clock="$DUE_CLOCK" -f bench/sql/records.sql
	# VACUUM runs where the scenario says, not when autovacuum decides.
	q -d due_tpl -c "ALTER TABLE records SET (autovacuum_enabled = off)"
	echo "due|records|90 days|500" | write_config due_tpl "$WORK/due.conf"
	"$POLICY_SQL" "$WORK/due.conf" due >"$WORK/due.sql"

	say "due query: $DUE_ROWS rows, with the index"
	duequery_phase due_tpl index
	say "due query: without the index"
	q -d due_tpl -c "DROP INDEX records_clock_idx"
	duequery_phase due_tpl noindex
	q -d due_tpl -c "CREATE INDEX records_clock_idx ON records (clock)" -c "VACUUM ANALYZE records"

	say "due query: after a mass purge"
	for ((run = 1; run <= RUNS; run++)); do
		for c in next_wake pending; do
			clone_db due due_tpl
			q -d due -c "$DUE_PURGE" -c "ANALYZE records"
			if [ "$c" = next_wake ]; then
				time_next_wake due 2
			else
				time_pending due
				time_pending due
			fi | {
				read -r first
				read -r again
				record due purged_first "$c" ms "$run" "$first"
				record due purged_again "$c" ms "$run" "$again"
			}
		done
	done
	q -d due -c "VACUUM records"
	duequery_phase due vacuumed
}

duequery_report() {
	local scale="full size"
	[ "$DUE_ROWS" = "$DUE_FULL_ROWS" ] ||
		scale="scaled to $(num "$DUE_ROWS") rows from the issue's $(num $DUE_FULL_ROWS) (time budget; BENCH_DUE_ROWS=$DUE_FULL_ROWS for full size)"
	cat <<EOF

== 4. Scale of the due query: $scale
   clocks over the last 100 days, retain 90 days: 10% overdue; the mass purge deletes that 10% with one DELETE.
   next_wake: the daemon's statement via psql; pending: retentionctl pending, wall time of the command. In ms.
EOF
	report_table "
	SELECT s.label AS \"table state\",
	       fig('due', s.id, 'next_wake', 'ms', 2) AS \"next_wake ms\",
	       fig('due', s.id, 'pending', 'ms', 1) AS \"pending ms\"
	  FROM (VALUES (1, 'index', 'index on the clock'),
	               (2, 'noindex', 'no index on the clock'),
	               (3, 'purged_first', 'after the purge: first query'),
	               (4, 'purged_again', 'after the purge: next query'),
	               (5, 'vacuumed', 'after the purge and VACUUM')) AS s(n, id, label)
	 ORDER BY s.n"
}
