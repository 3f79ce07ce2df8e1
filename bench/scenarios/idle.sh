# Scenario 3, idle cost: 100 policies (a table of 1,000 records each, all due
# in a day), nothing due while the daemon runs for 60 s with the default
# resync interval (60 s). Each run is a fresh daemon, measured once it has
# settled (its backend idle for 2 s: every policy looked up and asked, so
# that starting up is not counted as idling) to 60 s later: CPU time (the
# kernel's schedstat, in ns), wake-ups (context switches: each one is the
# process leaving the CPU and being woken again), RSS; and the CPU time of
# the PostgreSQL backend serving it, which is the load the daemon puts on
# the server.

IDLE_POLICIES=100
IDLE_SECONDS=60

idle_prepare() {
	local p
	fresh_db idle
	for ((p = 0; p < IDLE_POLICIES; p++)); do
		q -d idle -v table="idle_$p" -v rows=1000 -v clock="now() + g * interval '1 second'" -f bench/sql/records.sql >/dev/null
		echo "idle-$p|idle_$p|1 day|500"
	done | write_config idle "$WORK/idle.conf"
}

idle_run() {
	local run=$1 backend cpu0 switches0 backend_cpu0
	[ "$run" != 1 ] || idle_prepare
	q -d idle -c "TRUNCATE retention.instances"
	start_daemon "$WORK/idle.conf" "$WORK/idle.log"
	wait_for idle "SELECT EXISTS (SELECT FROM retention.instances)" 30
	backend=$(daemon_backend idle)
	wait_for idle "SELECT state = 'idle' AND state_change < now() - interval '2 seconds'
	               FROM pg_stat_activity WHERE pid = $backend" 60
	cpu0=$(proc_cpu "$DAEMON_PID")
	switches0=$(proc_switches "$DAEMON_PID")
	backend_cpu0=$(proc_cpu "$backend")
	sleep $IDLE_SECONDS
	record idle "" retentiond cpu_s "$run" "$(echo "$(proc_cpu "$DAEMON_PID") - $cpu0" | bc -l)"
	record idle "" retentiond wakeups "$run" $(($(proc_switches "$DAEMON_PID") - switches0))
	record idle "" retentiond rss_kib "$run" "$(proc_status "$DAEMON_PID" VmRSS)"
	record idle "" retentiond hwm_kib "$run" "$(proc_status "$DAEMON_PID" VmHWM)"
	record idle "" retentiond backend_cpu_s "$run" "$(echo "$(proc_cpu "$backend") - $backend_cpu0" | bc -l)"
	stop_daemon
	say "idle run $run done"
}

idle_report() {
	cat <<EOF

== 3. Idle cost: $IDLE_POLICIES policies, nothing due, ${IDLE_SECONDS} s per run (default resync_interval 60 s)
EOF
	report_table "
	SELECT fig('idle', '', 'retentiond', 'cpu_s', 4) AS \"CPU s / ${IDLE_SECONDS} s\",
	       fig('idle', '', 'retentiond', 'wakeups', 0) AS \"wake-ups / ${IDLE_SECONDS} s\",
	       fig('idle', '', 'retentiond', 'rss_kib', 1, 1 / 1024.0, ' MiB') AS \"RSS\",
	       fig('idle', '', 'retentiond', 'hwm_kib', 1, 1 / 1024.0, ' MiB') AS \"peak RSS\",
	       fig('idle', '', 'retentiond', 'backend_cpu_s', 4) AS \"its backend's CPU s\""
}
