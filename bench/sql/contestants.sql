-- The hand-written contestant: what a careful user would write instead of
-- retentiond, doing the same work per record (policy lock, holds, delete,
-- hash-chained audit row, chain head) so that `retentionctl audit verify`
-- accepts its audit trail. bench/run uses it as the batched baseline of the
-- backlog scenario and as the job pg_cron runs in the steady-state scenario.
--
-- Why it looks like this (each measured, on the backlog's 500,000 rows):
--  * a plpgsql loop hashes the chain, in the daemon's format 2
--    (docs/audit-format.md): cheaper per row than a window aggregate whose
--    transition function is an SQL function;
--  * the netstring of a field is an inlined SQL function (bench.ns);
--  * `key = ANY (array)` finds the batch's rows by primary key whatever the
--    batch size (a join on a CTE turned into a hash join over the whole table
--    at 10,000 rows per batch);
--  * one COMMIT per batch, like the daemon, so locks are short.
-- purged_at is the clock at the start of the batch, as statement_timestamp()
-- is for the daemon's single purge statement.

CREATE SCHEMA IF NOT EXISTS bench;

-- A field's netstring in a format 2 payload; NULL is "-,".
CREATE OR REPLACE FUNCTION bench.ns(v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN v IS NULL THEN '-,' ELSE octet_length(v)::text || ':' || v || ',' END $$;

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
        prev := coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
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
            prev := sha256(prev || convert_to('1:2,' || bench.ns(p_policy) || bench.ns((head_seq + n)::text)
                || '5:bench,9:bench/run,' || bench.ns(p_table::text) || bench.ns(r.record_key)
                || bench.ns(r.subject) || bench.ns(to_char(r.clock_at AT TIME ZONE 'UTC', stamp))
                || bench.ns(to_char((r.clock_at + p_retain) AT TIME ZONE 'UTC', stamp))
                || bench.ns(to_char(ts AT TIME ZONE 'UTC', stamp))
                || '6:delete,8:schedule,-,' || bench.ns(p_instance) || bench.ns(tx::text), 'UTF8'));
            hashes[n] := prev;
        END LOOP;
        IF n > 0 THEN
            INSERT INTO retention.audit_log (format, policy, seq, service, source, table_name, record_key, subject,
                                             clock_at, due_at, purged_at, action, cause, instance, txid,
                                             prev_hash, hash)
            SELECT 2, p_policy, u.seq, 'bench', 'bench/run', p_table::text, u.k, u.s, u.c, u.c + p_retain, ts,
                   'delete', 'schedule', p_instance, tx, u.p, u.h
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
