-- The hand-written contestant: what a careful user would write instead of
-- retentiond, doing the same work per record (policy lock, holds, delete,
-- hash-chained audit row, chain head) so that `retentionctl audit verify`
-- accepts its audit trail. bench/run uses it as the batched baseline of the
-- backlog scenario and as the job pg_cron runs in the steady-state scenario.
--
-- Why it looks like this (each measured, on the backlog's 500,000 rows):
--  * a plpgsql loop hashes the chain: cheaper per row than a window
--    aggregate whose transition function is an SQL function;
--  * the payload expression of retention.audit_payload() is written out, so
--    that it is inlined whatever that function's declared volatility (while
--    it was IMMUTABLE over the STABLE to_char() it was not, and ran through
--    the SQL-function executor once per row);
--  * `key = ANY (array)` finds the batch's rows by primary key whatever the
--    batch size (a join on a CTE turned into a hash join over the whole table
--    at 10,000 rows per batch);
--  * one COMMIT per batch, like the daemon, so locks are short.
-- purged_at is the clock at the start of the batch, as statement_timestamp()
-- is for the daemon's single purge statement.

CREATE SCHEMA IF NOT EXISTS bench;

CREATE OR REPLACE PROCEDURE bench.purge(p_policy text, p_table regclass, p_retain interval,
                                        p_batch integer, p_instance text)
LANGUAGE plpgsql AS $$
DECLARE
    stamp constant text := 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"';
    head_seq bigint;
    prev bytea;
    ts timestamptz;
    tx bigint;
    n integer;
    r record;
    seqs bigint[];
    keys text[];
    subjects text[];
    clocks timestamptz[];
    prevs bytea[];
    hashes bytea[];
BEGIN
    LOOP
        PERFORM retention.lock_policy(p_policy);
        SELECT seq, hash INTO head_seq, prev FROM retention.chain_heads WHERE policy = p_policy;
        head_seq := coalesce(head_seq, 0);
        prev := coalesce(prev, retention.genesis_hash());
        ts := clock_timestamp();
        tx := txid_current();
        n := 0;
        seqs := '{}'; keys := '{}'; subjects := '{}'; clocks := '{}'; prevs := '{}'; hashes := '{}';
        FOR r IN EXECUTE format(
            'DELETE FROM %1$s t WHERE t.key = ANY (ARRAY('
            '   SELECT d.key FROM %1$s d'
            '    WHERE d.clock <= $1 - $2'
            '      AND NOT EXISTS (SELECT 1 FROM retention.holds h'
            '                       WHERE h.policy = $3 AND h.released_at IS NULL'
            '                         AND (h.until IS NULL OR h.until > $1)'
            '                         AND (h.record_key = d.key::text OR h.subject = d.subject))'
            '    ORDER BY d.clock LIMIT $4 FOR UPDATE SKIP LOCKED))'
            ' RETURNING t.key::text AS record_key, t.subject, t.clock AS clock_at', p_table)
            USING ts, p_retain, p_policy, p_batch
        LOOP
            n := n + 1;
            seqs[n] := head_seq + n;
            keys[n] := r.record_key;
            subjects[n] := r.subject;
            clocks[n] := r.clock_at;
            prevs[n] := prev;
            prev := sha256(prev || convert_to(json_build_array(
                p_policy, head_seq + n, 'bench', 'bench/run', p_table::text, r.record_key, r.subject,
                to_char(r.clock_at AT TIME ZONE 'UTC', stamp),
                to_char((r.clock_at + p_retain) AT TIME ZONE 'UTC', stamp),
                to_char(ts AT TIME ZONE 'UTC', stamp),
                'delete', p_instance, tx)::text, 'UTF8'));
            hashes[n] := prev;
        END LOOP;
        IF n > 0 THEN
            INSERT INTO retention.audit_log (policy, seq, service, source, table_name, record_key, subject,
                                             clock_at, due_at, purged_at, action, instance, txid, prev_hash, hash)
            SELECT p_policy, u.seq, 'bench', 'bench/run', p_table::text, u.k, u.s, u.c, u.c + p_retain, ts,
                   'delete', p_instance, tx, u.p, u.h
              FROM unnest(seqs, keys, subjects, clocks, prevs, hashes) AS u(seq, k, s, c, p, h);
            INSERT INTO retention.chain_heads AS c (policy, seq, hash, updated_at)
            VALUES (p_policy, head_seq + n, prev, ts)
            ON CONFLICT (policy) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, updated_at = EXCLUDED.updated_at;
        END IF;
        COMMIT;
        EXIT WHEN n < p_batch;
    END LOOP;
END
$$;

-- Every policy listed in bench.policies, one after the other: the pg_cron job.
CREATE TABLE IF NOT EXISTS bench.policies (
    name     text PRIMARY KEY,
    tbl      regclass NOT NULL,
    retain   interval NOT NULL,
    grp      text NOT NULL
);

CREATE OR REPLACE PROCEDURE bench.purge_group(p_group text, p_batch integer, p_instance text)
LANGUAGE plpgsql AS $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT name, tbl, retain FROM bench.policies WHERE grp = p_group ORDER BY name LOOP
        CALL bench.purge(p.name, p.tbl, p.retain, p_batch, p_instance);
    END LOOP;
END
$$;
