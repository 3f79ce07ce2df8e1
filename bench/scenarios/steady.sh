# Scenario 2, steady state: records fall due continuously, evenly spread over
# 10 policies (one table each), at 100, 1,000 and 10,000 per second. Each
# contestant faces one continuous stream of RUNS consecutive windows; each
# window is one run. Lateness is purged_at - due_at of the audit rows whose
# due_at lies in the window.
#
# All records of a stream are inserted before it starts (so the inserts cost
# the contestant nothing), clocked from the moment B of the insert on: record
# i of the stream is clocked at B + i / rate. The policies' retention R is
# then chosen, once the data and the contestant are ready, so that the first
# record falls due 3 s later: R = (start - B), a sub-day interval like the
# minutes and hours of real policies (its index bound needs no slack).

STEADY_RATES=(100 1000 10000)
STEADY_POLICIES=10
STEADY_LEAD_S=3
# 60 s windows at the rate the target is about; 20 s at the other two (the
# 20-minute budget of bench/run).
declare -A STEADY_WINDOW=([100]=20 [1000]=60 [10000]=20)
# pg_cron runs every minute: its windows are whole minutes, all rates at once.
CRON_WINDOW=60

# Makes the tables of one rate in DB: PREFIX_0 .. PREFIX_9, rate x SECONDS
# records in all, clocked from the origin B kept in bench.stream.
steady_tables() {
	local db=$1 prefix=$2 rate=$3 seconds=$4 p
	q -d "$db" -c "CREATE TABLE IF NOT EXISTS bench.stream (origin timestamptz NOT NULL)" \
		-c "INSERT INTO bench.stream SELECT date_trunc('second', now()) WHERE NOT EXISTS (SELECT FROM bench.stream)"
	for ((p = 0; p < STEADY_POLICIES; p++)); do
		# Policy p holds records p, p + 10, p + 20, ... of the stream.
		q -d "$db" -v table="${prefix}_$p" -v rows=$((rate * seconds / STEADY_POLICIES)) \
			-v clock="(SELECT origin FROM bench.stream) + ((g - 1) * $STEADY_POLICIES + $p) * interval '1 second' / $rate" \
			-f bench/sql/records.sql
	done
}

# The retention that makes the stream start at START (SQL timestamptz), as a configuration duration.
steady_retain() {
	q -d "$1" -c "SELECT format('%s seconds %s microseconds', floor(e)::bigint, round((e - floor(e)) * 1e6)::bigint)
	                FROM (SELECT extract(epoch FROM ($2) - origin) AS e FROM bench.stream) s"
}

# Lateness in every window of a stream, from the audit rows matching WHERE,
# as INSERTs into the results database.
steady_collect() {
	local db=$1 section=$2 contestant=$3 start=$4 window=$5 where=$6
	q -d "$db" -c "
	WITH a AS (
	    SELECT 1 + floor(extract(epoch FROM due_at - '$start'::timestamptz) / $window)::int AS run,
	           extract(epoch FROM purged_at - due_at) AS late
	      FROM retention.audit_log WHERE $where),
	s AS (
	    SELECT run, percentile_cont(0.5) WITHIN GROUP (ORDER BY late) AS p50,
	           percentile_cont(0.99) WITHIN GROUP (ORDER BY late) AS p99, max(late) AS max,
	           count(*) FILTER (WHERE late < 0) AS early, count(*) AS purged
	      FROM a WHERE run BETWEEN 1 AND $RUNS GROUP BY run)
	SELECT format('INSERT INTO result VALUES (''steady'', %L, %L, %L, %s, %s);', '$section', '$contestant', m, run, v)
	  FROM s, LATERAL (VALUES ('p50', p50), ('p99', p99), ('max', max), ('early', early), ('purged', purged)) AS x(m, v)" |
		q -d bench
}

# Every record of the stream purged: the windows' counts add up.
steady_check() {
	local section=$1 contestant=$2 expected=$3 got
	got=$(q -d bench -c "SELECT coalesce(sum(value), 0) FROM result
	                     WHERE scenario = 'steady' AND section = '$section' AND contestant = '$contestant' AND metric = 'purged'")
	[ "$got" = "$expected" ] || { echo "bench: steady $section/$contestant purged $got of $expected" >&2; return 1; }
}

steady_daemon() {
	local rate=$1 window=${STEADY_WINDOW[$1]} p start retain
	fresh_db steady
	steady_tables steady steady "$rate" $((window * RUNS))
	start=$(q -d steady -c "SELECT now() + interval '$STEADY_LEAD_S seconds'")
	retain=$(steady_retain steady "'$start'::timestamptz")
	for ((p = 0; p < STEADY_POLICIES; p++)); do
		echo "steady-$p|steady_$p|$retain|500"
	done | write_config steady "$WORK/steady.conf"
	start_daemon "$WORK/steady.conf" "$WORK/steady.log"
	say "steady $rate/s: retentiond, $RUNS windows of $window s from $start"
	sleep $((STEADY_LEAD_S + window * RUNS))
	# Each policy's chain head counts its purged records.
	wait_for steady "SELECT (SELECT sum(seq) FROM retention.chain_heads) = $((rate * window * RUNS))" 60
	stop_daemon
	steady_collect steady "$rate" retentiond "$start" "$window" "instance = 'retentiond'"
	steady_check "$rate" retentiond $((rate * window * RUNS))
	verify_audit steady
}

steady_daemon_all() {
	local rate
	for rate in "${STEADY_RATES[@]}"; do
		steady_daemon "$rate"
	done
}

# pg_cron: one job per rate, every minute, purging that rate's 10 policies
# with the hand-written procedure; all three rates share the minutes. The
# stream starts on a minute boundary so that every window is one cron minute.
steady_cron_start() {
	local rate retain
	fresh_db cron
	q -d cron -c "CREATE EXTENSION pg_cron"
	CRON_SECONDS=$(q -d cron -c "SELECT cron.schedule('probe', '1 seconds', 'SELECT 1')" 2>/dev/null && echo yes || echo no)
	q -d cron -c "SELECT cron.unschedule(jobid) FROM cron.job" >/dev/null
	for rate in "${STEADY_RATES[@]}"; do
		steady_tables cron "cron_$rate" "$rate" $((CRON_WINDOW * RUNS))
	done
	CRON_START=$(q -d cron -c "SELECT date_trunc('minute', now() + interval '62 seconds')")
	retain=$(steady_retain cron "'$CRON_START'::timestamptz")
	for rate in "${STEADY_RATES[@]}"; do
		q -d cron -c "INSERT INTO bench.policies
		              SELECT 'cron-$rate-' || p, format('cron_${rate}_%s', p)::regclass, '$retain', '$rate'
		                FROM generate_series(0, $((STEADY_POLICIES - 1))) p" \
		          -c "SELECT cron.schedule('purge-$rate', '* * * * *', 'CALL bench.purge_group(''$rate'', 500, ''pg_cron'')')" >/dev/null
	done
	say "steady: pg_cron, $RUNS windows of $CRON_WINDOW s from $CRON_START (seconds schedules: $CRON_SECONDS)"
}

steady_cron_finish() {
	local rate run total=$((CRON_WINDOW * RUNS * (100 + 1000 + 10000)))
	# The last window is purged by the job of the minute after it.
	wait_for cron "SELECT (SELECT sum(seq) FROM retention.chain_heads) = $total" \
		"$(q -d cron -c "SELECT extract(epoch FROM '$CRON_START'::timestamptz + interval '$((CRON_WINDOW * RUNS + 90)) seconds' - now())::int")"
	q -d cron -c "SELECT cron.unschedule(jobid) FROM cron.job" >/dev/null
	for rate in "${STEADY_RATES[@]}"; do
		steady_collect cron "$rate" pg_cron "$CRON_START" "$CRON_WINDOW" "policy LIKE 'cron-$rate-%'"
		steady_check "$rate" pg_cron $((rate * CRON_WINDOW * RUNS))
		for ((run = 1; run <= RUNS; run++)); do
			record_ratio steady "$rate" "$run" pg_cron retentiond p99 p99_vs_retentiond
		done
	done
	verify_audit cron
}

steady_report() {
	cat <<EOF

== 2. Steady state: records falling due evenly across $STEADY_POLICIES policies; lateness = purged_at - due_at in ms
   records inserted before the stream starts; purged_at is the purge statement's start (the commit follows within ms)
   retentiond (default batch 500): one continuous stream per rate, $RUNS consecutive windows of ${STEADY_WINDOW[100]} s (100/s),
     ${STEADY_WINDOW[1000]} s (1,000/s), ${STEADY_WINDOW[10000]} s (10,000/s) (20-minute budget); each window is a run
   pg_cron $(q -d cron -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"): every minute ('* * * * *') the hand-written procedure of scenario 1 (batch 500),
     $RUNS one-minute windows, the three rates' jobs side by side (scenario 3 ran meanwhile, in another database);
   seconds schedules ('1 seconds'): $([ "$CRON_SECONDS" = yes ] && echo "available but not measured" || echo "not available in this pg_cron")
EOF
	report_table "
	SELECT r.rate AS \"due/s\", c AS contestant,
	       fig('steady', r.rate, c, 'p50', 1, 1000) AS \"p50 ms\",
	       fig('steady', r.rate, c, 'p99', 1, 1000) AS \"p99 ms\",
	       fig('steady', r.rate, c, 'max', 1, 1000) AS \"max ms\",
	       fig('steady', r.rate, c, 'early', 0) AS early,
	       fig('steady', r.rate, c, 'p99_vs_retentiond', 0, 1, '×') AS \"p99 vs retentiond\"
	  FROM unnest(ARRAY['100', '1000', '10000']) WITH ORDINALITY AS r(rate, n),
	       unnest(ARRAY['retentiond', 'pg_cron']) WITH ORDINALITY AS k(c, m)
	 ORDER BY r.n, k.m"
}
