# Scenario 5, a data subject's erasure request (issue 11): one subject with
# 10,000 records across 5 policies (2,000 in each table of 100,000 rows, an
# index on the subject column as a service that looks subjects up has), no
# clock started. The time from `retentionctl request erase` to the request
# being done is read from the request itself (received_at to completed_at,
# on the server's clock). Meanwhile a sixth policy's records fall due at 200
# per second: their lateness while the request runs, beside their lateness
# before it, says whether scheduled purges wait for requests. Beside it, in
# the same run, what an operator would do by hand: the five DELETEs in one
# transaction, no audit, no holds (on a copy of the same data).

ERASURE_POLICIES=5
ERASURE_ROWS=100000
ERASURE_SUBJECT_ROWS=2000
ERASURE_STREAM_RATE=200
# The stream starts 3 s after the daemon, the request 5 s into the stream, and the stream runs 15 s.
ERASURE_REQUEST_AT_S=5
ERASURE_STREAM_S=15

erasure_prepare() {
	local p
	fresh_db erasure_template
	for ((p = 0; p < ERASURE_POLICIES; p++)); do
		q -d erasure_template -v table="erase_$p" -v rows=$ERASURE_ROWS -v clock="NULL::timestamptz" \
			-f bench/sql/records.sql
		q -d erasure_template -c "UPDATE erase_$p SET subject = 'the-subject' WHERE key <= $ERASURE_SUBJECT_ROWS" \
			-c "CREATE INDEX ON erase_$p (subject)" -c "VACUUM (FREEZE, ANALYZE) erase_$p"
	done
}

erasure_run() {
	local run=$1 p start t0 hand stream_rows=$((ERASURE_STREAM_RATE * ERASURE_STREAM_S)) id done_s
	# By hand, on a copy.
	clone_db erasure_hand erasure_template
	t0=$(now)
	{
		echo "BEGIN;"
		for ((p = 0; p < ERASURE_POLICIES; p++)); do
			echo "DELETE FROM erase_$p WHERE subject = 'the-subject';"
		done
		echo "COMMIT;"
	} | q -d erasure_hand >/dev/null
	hand=$(elapsed "$t0")
	record erasure "10,000 records, 5 policies" "hand-written DELETEs (no audit)" seconds "$run" "$hand"

	# The daemon.
	clone_db erasure erasure_template
	start=$(q -d erasure -c "SELECT now() + interval '3 seconds'")
	q -d erasure -v table=stream -v rows=$stream_rows \
		-v clock="'$start'::timestamptz - interval '1 hour' + (g - 1) * interval '1 second' / $ERASURE_STREAM_RATE" \
		-f bench/sql/records.sql
	{
		for ((p = 0; p < ERASURE_POLICIES; p++)); do
			echo "erase-$p|erase_$p|1 year|500"
		done
		echo "stream|stream|1 hour|500"
	} | write_config erasure "$WORK/erasure.conf"
	start_daemon "$WORK/erasure.conf" "$WORK/erasure.log"
	wait_for erasure "SELECT now() >= '$start'::timestamptz + interval '$ERASURE_REQUEST_AT_S seconds'" 30
	id=$("$BIN/retentionctl" -c "$WORK/erasure.conf" -d "dbname=erasure" request erase \
		--identity subject=the-subject 2>/dev/null)
	wait_for erasure "SELECT status = 'done' FROM retention.requests WHERE id = $id" 60
	wait_for erasure "SELECT NOT EXISTS (SELECT FROM stream)" 60
	stop_daemon
	verify_audit erasure
	[ "$(q -d erasure -c "SELECT count(*) FROM retention.audit_log WHERE request_id = $id")" = \
		$((ERASURE_POLICIES * ERASURE_SUBJECT_ROWS)) ] ||
		{ echo "bench: erasure request $id did not purge every record of the subject" >&2; return 1; }
	done_s=$(q -d erasure -c "SELECT extract(epoch FROM completed_at - received_at) FROM retention.requests WHERE id = $id")
	record erasure "10,000 records, 5 policies" retentiond seconds "$run" "$done_s"
	record_ratio erasure "10,000 records, 5 policies" "$run" retentiond "hand-written DELETEs (no audit)" seconds "time vs by hand"
	# The stream's lateness, for records due while the request ran and for those due before it.
	q -d erasure -c "
	WITH r AS (SELECT received_at, completed_at FROM retention.requests WHERE id = $id),
	a AS (SELECT CASE WHEN due_at BETWEEN r.received_at AND r.completed_at THEN 'during the request'
	                  WHEN due_at < r.received_at THEN 'before the request' END AS part,
	             extract(epoch FROM purged_at - due_at) AS late
	        FROM retention.audit_log, r WHERE policy = 'stream')
	SELECT format('INSERT INTO result VALUES (''erasure'', %L, ''stream (200/s)'', %L, $run, %s);', part, m, v)
	  FROM (SELECT part, percentile_cont(0.99) WITHIN GROUP (ORDER BY late) AS p99, max(late) AS max,
	               count(*) AS purged FROM a WHERE part IS NOT NULL GROUP BY part) s,
	       LATERAL (VALUES ('p99 late s', p99), ('max late s', max), ('records', purged)) x(m, v)" | q -d bench
}

erasure_report() {
	local section="10,000 records, 5 policies"
	echo
	echo "5. A data subject's erasure request: 10,000 records across 5 policies"
	report_table "SELECT c AS contestant, fig('erasure', '$section', c, 'seconds', 3) AS \"request to done, s\",
	                     CASE WHEN c = 'retentiond' THEN fig('erasure', '$section', c, 'time vs by hand', 1) END
	                         AS \"vs by hand\"
	                FROM unnest(ARRAY['retentiond', 'hand-written DELETEs (no audit)']) c"
	echo "   a sixth policy's records falling due at 200/s meanwhile, lateness in seconds:"
	report_table "SELECT p AS \"records due\", fig('erasure', p, 'stream (200/s)', 'p99 late s', 3) AS p99,
	                     fig('erasure', p, 'stream (200/s)', 'max late s', 3) AS max,
	                     fig('erasure', p, 'stream (200/s)', 'records', 0) AS records
	                FROM unnest(ARRAY['before the request', 'during the request']) p"
}
