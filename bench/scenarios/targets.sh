# The targets of issues 6 and 4, each judged on the figures above.

targets_report() {
	cat <<'EOF'

== Targets (medians, except where a maximum is the target: there the worst run)
EOF
	report_table "
	WITH t(n, target, measured, met) AS (VALUES
	  (1, 'backlog: retentiond >= 0.30x bulk DELETE rows/s',
	      num(med('backlog', '', 'daemon', 'vs_bulk'), 3) || 'x',
	      med('backlog', '', 'daemon', 'vs_bulk') >= 0.30),
	  (2, 'backlog: retentiond within 10% of the hand-written batched DELETE+audit',
	      num(med('backlog', '', 'daemon', 'vs_hand'), 2) || 'x',
	      med('backlog', '', 'daemon', 'vs_hand') >= 0.90),
	  (3, 'steady 1,000/s: p99 lateness <= 100 ms',
	      num(med('steady', '1000', 'retentiond', 'p99') * 1000, 1) || ' ms',
	      med('steady', '1000', 'retentiond', 'p99') <= 0.100),
	  (4, 'steady 1,000/s: max lateness <= 1 s (worst window)',
	      num(worst('steady', '1000', 'retentiond', 'max') * 1000, 1) || ' ms',
	      worst('steady', '1000', 'retentiond', 'max') <= 1.0),
	  (5, 'steady: 0 early purges (every rate, every window)',
	      (SELECT num(sum(value), 0) FROM result WHERE scenario = 'steady' AND metric = 'early'),
	      (SELECT sum(value) = 0 FROM result WHERE scenario = 'steady' AND metric = 'early')),
	  (6, 'steady 1,000/s: p99 >= 300x better than every-minute pg_cron',
	      num(med('steady', '1000', 'pg_cron', 'p99_vs_retentiond'), 0) || 'x',
	      med('steady', '1000', 'pg_cron', 'p99_vs_retentiond') >= 300),
	  (7, 'idle, 100 policies: < 0.1 CPU-s per minute',
	      num(med('idle', '', 'retentiond', 'cpu_s'), 4) || ' s',
	      med('idle', '', 'retentiond', 'cpu_s') < 0.1),
	  (8, 'idle, 100 policies: RSS < 16 MiB (peak, worst run)',
	      num(worst('idle', '', 'retentiond', 'hwm_kib') / 1024, 1) || ' MiB',
	      worst('idle', '', 'retentiond', 'hwm_kib') < 16 * 1024),
	  (9, 'issue 4: retentionctl pending on 1,000,000 rows < 1 s',
	      num(med('pending', '', 'retentionctl', 'seconds'), 3) || ' s',
	      med('pending', '', 'retentionctl', 'seconds') < 1.0))
	SELECT target, measured, CASE WHEN met THEN 'met' WHEN NOT met THEN 'NOT MET' ELSE 'not measured' END AS result
	  FROM t ORDER BY n"
}
