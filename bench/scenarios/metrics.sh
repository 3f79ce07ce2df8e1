# Scenario 6, metrics: what GET /metrics costs the daemon. Two contestants
# side by side in each run, both with daemon.metrics_listen on: "unscraped"
# (nobody asks) and "scraped" (a scrape every second, by a client in another
# process), each a fresh daemon over the 100 policies of scenario 3, nothing
# due, measured for METRICS_SECONDS once settled: the daemon's CPU time and
# the scrape's share of a core, (scraped - unscraped) / seconds. Then the
# lateness of a stream of 1,000 records/s (scenario 2's shape, 10 policies)
# without and with a scrape every second.

METRICS_SECONDS=60
METRICS_RATE=1000
METRICS_WINDOW=20

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Scrapes http://127.0.0.1:PORT/metrics every second for SECONDS; fails on a non-200 answer.
scrape_every_second() {
	python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
port, seconds = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200 and b"retentiond_database_connected 1" in r.read()
    n += 1
    time.sleep(max(0.0, 1.0 - (time.monotonic() + seconds - end) % 1.0))
print(n)
PY
}

metrics_cost_run() {
	local run=$1 contestant port backend cpu0 scrapes
	[ "$run" != 1 ] || [ -f "$WORK/idle.conf" ] || idle_prepare
	for contestant in unscraped scraped; do
		port=$(free_port)
		sed "s|daemon = { instance = \"retentiond\"; log_level = \"info\"; |&metrics_listen = \"127.0.0.1:$port\"; |" \
			"$WORK/idle.conf" >"$WORK/metrics.conf"
		q -d idle -c "TRUNCATE retention.instances"
		start_daemon "$WORK/metrics.conf" "$WORK/metrics.log"
		wait_for idle "SELECT EXISTS (SELECT FROM retention.instances)" 30
		backend=$(daemon_backend idle)
		wait_for idle "SELECT state = 'idle' AND state_change < now() - interval '2 seconds'
		               FROM pg_stat_activity WHERE pid = $backend" 60
		cpu0=$(proc_cpu "$DAEMON_PID")
		if [ "$contestant" = scraped ]; then
			scrapes=$(scrape_every_second "$port" "$METRICS_SECONDS")
			record metrics cost scraped scrapes "$run" "$scrapes"
		else
			sleep $METRICS_SECONDS
		fi
		record metrics cost "$contestant" cpu_s "$run" "$(echo "$(proc_cpu "$DAEMON_PID") - $cpu0" | bc -l)"
		stop_daemon
	done
	q -d bench -c "INSERT INTO result SELECT 'metrics', 'cost', 'scraped', 'core_pct', $run,
	                 100 * (s.value - u.value) / $METRICS_SECONDS
	                 FROM result s, result u
	                WHERE s.scenario = 'metrics' AND s.section = 'cost' AND s.contestant = 'scraped' AND s.metric = 'cpu_s' AND s.run = $run
	                  AND u.scenario = 'metrics' AND u.section = 'cost' AND u.contestant = 'unscraped' AND u.metric = 'cpu_s' AND u.run = $run"
	say "metrics cost run $run done"
}

# One stream of METRICS_RATE records/s, RUNS windows, with or without a scrape every second.
metrics_lateness() {
	local contestant=$1 p start retain port scraper=""
	fresh_db mlate
	steady_tables mlate mlate "$METRICS_RATE" $((METRICS_WINDOW * RUNS))
	start=$(q -d mlate -c "SELECT now() + interval '$STEADY_LEAD_S seconds'")
	retain=$(steady_retain mlate "'$start'::timestamptz")
	port=$(free_port)
	for ((p = 0; p < STEADY_POLICIES; p++)); do
		echo "mlate-$p|mlate_$p|$retain|500"
	done | DAEMON_EXTRA="metrics_listen = \"127.0.0.1:$port\"; " write_config mlate "$WORK/mlate.conf"
	start_daemon "$WORK/mlate.conf" "$WORK/mlate.log"
	say "metrics lateness: $contestant, $RUNS windows of $METRICS_WINDOW s from $start"
	if [ "$contestant" = scraped ]; then
		sleep 1
		scrape_every_second "$port" $((STEADY_LEAD_S + METRICS_WINDOW * RUNS)) >/dev/null &
		scraper=$!
	fi
	sleep $((STEADY_LEAD_S + METRICS_WINDOW * RUNS))
	[ -z "$scraper" ] || wait "$scraper"
	wait_for mlate "SELECT (SELECT sum(seq) FROM retention.chain_heads) = $((METRICS_RATE * METRICS_WINDOW * RUNS))" 60
	stop_daemon
	steady_collect mlate "metrics-$METRICS_RATE" "$contestant" "$start" "$METRICS_WINDOW" "instance = 'retentiond'"
	steady_check "metrics-$METRICS_RATE" "$contestant" $((METRICS_RATE * METRICS_WINDOW * RUNS))
}

metrics_all() {
	local run
	for ((run = 1; run <= RUNS; run++)); do
		metrics_cost_run "$run"
	done
	metrics_lateness unscraped
	metrics_lateness scraped
	for ((run = 1; run <= RUNS; run++)); do
		record_ratio steady "metrics-$METRICS_RATE" "$run" scraped unscraped p99 p99_vs_unscraped
	done
}

metrics_report() {
	cat <<EOF

== 6. Metrics: GET /metrics every second, beside the same daemon unscraped (both listening)
   cost: $IDLE_POLICIES policies, nothing due, ${METRICS_SECONDS} s per run; core % = (scraped - unscraped CPU s) / ${METRICS_SECONDS} s x 100
EOF
	report_table "
	SELECT fig('metrics', 'cost', 'unscraped', 'cpu_s', 4) AS \"unscraped CPU s\",
	       fig('metrics', 'cost', 'scraped', 'cpu_s', 4) AS \"scraped CPU s\",
	       fig('metrics', 'cost', 'scraped', 'scrapes', 0) AS scrapes,
	       fig('metrics', 'cost', 'scraped', 'core_pct', 3, 1, ' %') AS \"scraping, % of a core\""
	cat <<EOF
   lateness: $METRICS_RATE records/s over $STEADY_POLICIES policies, $RUNS windows of $METRICS_WINDOW s, without and with a scrape every second
EOF
	report_table "
	SELECT c AS contestant,
	       fig('steady', 'metrics-$METRICS_RATE', c, 'p50', 1, 1000) AS \"p50 ms\",
	       fig('steady', 'metrics-$METRICS_RATE', c, 'p99', 1, 1000) AS \"p99 ms\",
	       fig('steady', 'metrics-$METRICS_RATE', c, 'max', 1, 1000) AS \"max ms\",
	       fig('steady', 'metrics-$METRICS_RATE', c, 'early', 0) AS early,
	       fig('steady', 'metrics-$METRICS_RATE', c, 'p99_vs_unscraped', 2, 1, '×') AS \"p99 vs unscraped\"
	  FROM unnest(ARRAY['unscraped', 'scraped']) WITH ORDINALITY AS k(c, m) ORDER BY k.m"
}
