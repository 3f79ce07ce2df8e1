# Scenario 1, backlog: 1,000,000 rows, half of them overdue, purged by each
# contestant from the same starting point (a file copy of one template
# database, after a CHECKPOINT). Also issue 4's figure: `retentionctl pending`
# on that 1,000,000-row table.

BACKLOG_ROWS=1000000
BACKLOG_DUE=$((BACKLOG_ROWS / 2))
BACKLOG_CONTESTANTS=(bulk hand once daemon)
# Overdue rows were clocked 3 days to 2.4 days ago, the others 12 to 5 hours
# ago: with 1 day of retention none of them falls due while the bench runs.
BACKLOG_CLOCK="CASE WHEN g <= $BACKLOG_DUE THEN now() - interval '3 days' + g * interval '100 ms'
	ELSE now() - interval '12 hours' + (g - $BACKLOG_DUE) * interval '50 ms' END"
BACKLOG_REMAINING="SELECT count(*) FROM records WHERE clock <= now() - interval '1 day'"

backlog_prepare() {
	fresh_db backlog_tpl
	q -d backlog_tpl -v table=records -v rows=$BACKLOG_ROWS -v clock="$BACKLOG_CLOCK" -f bench/sql/records.sql
	echo "backlog|records|1 day|$BATCH" | write_config backlog "$WORK/backlog.conf"
	echo "backlog|records|1 day|$BATCH" | write_config backlog_tpl "$WORK/backlog_tpl.conf"
}

# One contestant purges the backlog; prints its peak RSS in KiB (0: not retentiond).
backlog_bulk() {
	q -d backlog -c "DELETE FROM records WHERE clock <= now() - interval '1 day'" >/dev/null
	echo 0
}

backlog_hand() {
	q -d backlog -c "CALL bench.purge('backlog', 'records', '1 day', $BATCH, 'hand-written')" >/dev/null
	echo 0
}

backlog_once() {
	/usr/bin/time -f %M -o "$WORK/time.out" "$BIN/retentiond" -c "$WORK/backlog.conf" --once >>"$WORK/backlog.log" 2>&1
	tail -n 1 "$WORK/time.out"
}

# The daemon started on the backlog; done when its chain head counts every
# due row (backlog_run then checks that none is left).
backlog_daemon() {
	local rss
	start_daemon "$WORK/backlog.conf" "$WORK/backlog.log"
	wait_for backlog "SELECT EXISTS (SELECT FROM retention.chain_heads WHERE seq = $BACKLOG_DUE)" 600
	rss=$(proc_status "$DAEMON_PID" VmHWM)
	stop_daemon
	echo "$rss"
}

backlog_run() {
	local run=$1 c lsn start seconds rss
	for c in "${BACKLOG_CONTESTANTS[@]}"; do
		clone_db backlog backlog_tpl
		q -d backlog -c "CHECKPOINT"
		lsn=$(wal_lsn backlog)
		start=$(now)
		rss=$("backlog_$c")
		seconds=$(elapsed "$start")
		[ "$(q -d backlog -c "$BACKLOG_REMAINING")" = 0 ] || { echo "bench: $c left due rows" >&2; return 1; }
		[ "$(q -d backlog -c "SELECT count(*) FROM records")" = $((BACKLOG_ROWS - BACKLOG_DUE)) ] ||
			{ echo "bench: $c purged rows that were not due" >&2; return 1; }
		# Verifying 500,000 chained rows takes seconds: once per contestant is proof enough.
		[ "$run" != 1 ] || [ "$c" = bulk ] || verify_audit backlog
		record backlog "" "$c" rows_per_s "$run" "$(echo "$BACKLOG_DUE / $seconds" | bc -l)"
		record backlog "" "$c" wal_per_row "$run" "$(echo "$(wal_bytes_since backlog "$lsn") / $BACKLOG_DUE" | bc -l)"
		[ "$rss" = 0 ] || record backlog "" "$c" rss_kib "$run" "$rss"
		say "backlog run $run: $c $(printf '%.1f' "$seconds") s"
	done
	for c in "${BACKLOG_CONTESTANTS[@]}"; do
		record_ratio backlog "" "$run" "$c" bulk rows_per_s vs_bulk
		record_ratio backlog "" "$run" "$c" hand rows_per_s vs_hand
	done
}

# Issue 4: retentionctl pending on the 1,000,000-row table, end to end (connect, plan, count).
pending_run() {
	local run=$1 start
	start=$(now)
	"$BIN/retentionctl" -c "$WORK/backlog_tpl.conf" pending >/dev/null
	record pending "" retentionctl seconds "$run" "$(elapsed "$start")"
}

backlog_report() {
	cat <<EOF

== 1. Backlog: $(num $BACKLOG_DUE) of $(num $BACKLOG_ROWS) rows overdue (~200-byte payload, index on the clock), batches of $(num $BATCH)
   rows/s = overdue rows / wall time from start to no due row left; ratios are per run; WAL = pg_current_wal_lsn() difference.
EOF
	report_table "
	SELECT c.label AS contestant,
	       fig('backlog', '', c.id, 'rows_per_s', 0) AS \"rows/s\",
	       fig('backlog', '', c.id, 'vs_bulk', 3, 1, '×') AS \"vs bulk DELETE\",
	       fig('backlog', '', c.id, 'vs_hand', 2, 1, '×') AS \"vs hand-written\",
	       fig('backlog', '', c.id, 'wal_per_row', 0) AS \"WAL bytes/row\",
	       fig('backlog', '', c.id, 'rss_kib', 1, 1 / 1024.0, ' MiB') AS \"peak RSS\"
	  FROM (VALUES (1, 'bulk', 'one bulk DELETE, no audit'),
	               (2, 'hand', 'hand-written batched DELETE + audit (plpgsql)'),
	               (3, 'once', 'retentiond --once'),
	               (4, 'daemon', 'retentiond (daemon)')) AS c(n, id, label)
	 ORDER BY c.n"
	cat <<EOF

== Issue 4: retentionctl pending on the backlog's $(num $BACKLOG_ROWS)-row table ($(num $BACKLOG_DUE) overdue, the rest due within 24 h)
EOF
	report_table "SELECT fig('pending', '', 'retentionctl', 'seconds', 3) AS \"wall time, s\""
}
