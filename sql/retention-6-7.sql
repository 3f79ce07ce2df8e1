-- retention schema, version 6 -> 7. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- Quarantined records: a record whose purge fails on its own (a foreign key
-- that restricts, a trigger that raises) is found by splitting the batch
-- that failed, recorded here with the error and skipped, so that the rest of
-- its policy is purged. It stays overdue, and is tried again once retry_at
-- has passed (NULL: only when an operator says so). The daemon writes these
-- rows through quarantine_record() and quarantine_clear(); operators read
-- them and set retry_at through retry_quarantined().
CREATE TABLE retention.quarantine (
    id              bigserial PRIMARY KEY,
    policy          text NOT NULL,
    -- The key as the daemon's session writes it (key::text), and the key
    -- column's type: only rows of the column's current type are compared.
    record_key      text NOT NULL,
    key_type        text NOT NULL,
    error           text NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    attempts        integer NOT NULL CHECK (attempts > 0),
    retry_at        timestamptz,
    instance        text NOT NULL
);
-- A clear-text key may pass a b-tree entry's size limit: equality lookups by hash.
CREATE INDEX quarantine_policy ON retention.quarantine (policy);
CREATE INDEX quarantine_record_key ON retention.quarantine USING hash (record_key);
REVOKE ALL ON retention.quarantine FROM PUBLIC;

-- Records (or, for one already recorded, counts another) failure of
-- P_POLICY's record P_KEY on its own. It is tried again after P_RETRY,
-- doubled at each further failure up to 7 days (never less than P_RETRY);
-- P_RETRY NULL or zero: only by retry_quarantined(). Serialised per policy,
-- so two instances never record one record twice. Returns the row's id.
CREATE FUNCTION retention.quarantine_record(p_policy text, p_key text, p_key_type text, p_error text,
                                            p_retry interval, p_instance text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n integer;
    row_id bigint;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1919251567, pg_catalog.hashtext(p_policy));
    UPDATE retention.quarantine q
       SET error = p_error, last_failed_at = pg_catalog.now(), attempts = q.attempts OPERATOR(pg_catalog.+) 1,
           instance = p_instance
     WHERE q.policy OPERATOR(pg_catalog.=) p_policy AND q.record_key OPERATOR(pg_catalog.=) p_key
           AND q.key_type OPERATOR(pg_catalog.=) p_key_type
    RETURNING q.attempts, q.id INTO n, row_id;
    IF n IS NULL THEN
        n := 1;
        INSERT INTO retention.quarantine (policy, record_key, key_type, error, first_failed_at, last_failed_at,
                                          attempts, instance)
        VALUES (p_policy, p_key, p_key_type, p_error, pg_catalog.now(), pg_catalog.now(), 1, p_instance)
        RETURNING id INTO row_id;
    END IF;
    UPDATE retention.quarantine q
       SET retry_at = CASE WHEN p_retry OPERATOR(pg_catalog.>) '0 seconds'::interval THEN
               pg_catalog.now() OPERATOR(pg_catalog.+) GREATEST(p_retry, LEAST(
                   p_retry OPERATOR(pg_catalog.*) pg_catalog.power(2, LEAST(n OPERATOR(pg_catalog.-) 1, 10)),
                   '7 days'::interval)) END
     WHERE q.id OPERATOR(pg_catalog.=) row_id;
    RETURN row_id;
END
$$;

-- The records of P_POLICY in P_KEYS were purged: they are quarantined no more.
CREATE FUNCTION retention.quarantine_clear(p_policy text, p_keys text[])
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH d AS (DELETE FROM retention.quarantine q
                WHERE q.policy OPERATOR(pg_catalog.=) p_policy
                  AND q.record_key OPERATOR(pg_catalog.=) ANY (p_keys) RETURNING 1)
    SELECT pg_catalog.count(*)::bigint FROM d
$$;

-- An operator's retry: the quarantined records of P_POLICY (all of them), or
-- the one with id P_ID, are tried by the next batch. Wakes the daemon.
-- Returns how many records will be tried again.
CREATE FUNCTION retention.retry_quarantined(p_policy text, p_id bigint)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n bigint;
    p text;
BEGIN
    IF (p_policy IS NULL) OPERATOR(pg_catalog.=) (p_id IS NULL) THEN
        RAISE EXCEPTION 'retry_quarantined needs a policy or an id, not both';
    END IF;
    FOR p IN UPDATE retention.quarantine q SET retry_at = pg_catalog.now()
              WHERE (p_id IS NULL OR q.id OPERATOR(pg_catalog.=) p_id)
                AND (p_policy IS NULL OR q.policy OPERATOR(pg_catalog.=) p_policy)
             RETURNING q.policy
    LOOP
        n := coalesce(n, 0) OPERATOR(pg_catalog.+) 1;
        PERFORM pg_catalog.pg_notify('retentiond', 'policy:' OPERATOR(pg_catalog.||) p);
    END LOOP;
    RETURN coalesce(n, 0);
END
$$;

REVOKE ALL ON FUNCTION retention.quarantine_record(text, text, text, text, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.quarantine_clear(text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.retry_quarantined(text, bigint) FROM PUBLIC;

-- Tails of audit chains lost in a failover. With asynchronous replication
-- the last batches committed on a primary may never reach the standby that
-- is promoted: their records come back, and their audit rows and chain head
-- are gone, below a head the daemon already logged. A daemon that finds its
-- chain's head behind the last head it committed records what was lost here
-- (retentionctl audit verify reports it), and purges the records again.
CREATE TABLE retention.chain_gaps (
    id              bigserial PRIMARY KEY,
    policy          text NOT NULL,
    lost_from_seq   bigint NOT NULL,
    lost_to_seq     bigint NOT NULL CHECK (lost_to_seq >= lost_from_seq),
    lost_head_hash  bytea NOT NULL,
    -- The head found instead: NULL seq and hash for a chain that is gone.
    found_head_seq  bigint,
    found_head_hash bytea,
    detected_at     timestamptz NOT NULL,
    instance        text NOT NULL
);
CREATE INDEX chain_gaps_policy ON retention.chain_gaps (policy, lost_from_seq);
REVOKE ALL ON retention.chain_gaps FROM PUBLIC;

CREATE FUNCTION retention.record_chain_gap(p_policy text, p_lost_from bigint, p_lost_to bigint, p_lost_hash text,
                                           p_found_seq bigint, p_found_hash text, p_instance text)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    INSERT INTO retention.chain_gaps (policy, lost_from_seq, lost_to_seq, lost_head_hash, found_head_seq,
                                      found_head_hash, detected_at, instance)
    VALUES (p_policy, p_lost_from, p_lost_to, pg_catalog.decode(p_lost_hash, 'hex'), p_found_seq,
            pg_catalog.decode(p_found_hash, 'hex'), pg_catalog.now(), p_instance)
    RETURNING id
$$;
REVOKE ALL ON FUNCTION retention.record_chain_gap(text, bigint, bigint, text, bigint, text, text) FROM PUBLIC;

-- The guard before a batch's COMMIT counts what the transaction wrote to the
-- daemon's own bookkeeping: code of a table's owner running with the
-- daemon's role must not add a quarantined record (which the daemon would
-- then skip) or a chain gap any more than an audit row.
CREATE OR REPLACE FUNCTION retention.audit_writes() RETURNS bigint
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN CASE WHEN pg_catalog.current_setting('track_counts')::pg_catalog.bool THEN (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_tuples_inserted(r.oid) OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(r.oid) OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(r.oid))::pg_catalog.int8 FROM pg_catalog.unnest(ARRAY[pg_catalog.to_regclass('retention.audit_log'), pg_catalog.to_regclass('retention.chain_heads'), pg_catalog.to_regclass('retention.quarantine'), pg_catalog.to_regclass('retention.chain_gaps')]::pg_catalog.oid[]) r(oid)) END;
END
$$;

-- A running daemon keeps purging across the upgrade: every role that may
-- write audit rows (the daemon's) may read and write quarantined records,
-- which its statements read from this version on, and record chain gaps.
-- Every role that may read the audit trail may read the gaps in it.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.audit_log'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON retention.quarantine TO %s', g.grantee);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.quarantine_record(text, text, text, text,'
                                  ' interval, text), retention.quarantine_clear(text, text[]),'
                                  ' retention.record_chain_gap(text, bigint, bigint, text, bigint, text, text) TO %s',
                                  g.grantee);
    END LOOP;
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.audit_log'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type = 'SELECT'
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON retention.chain_gaps TO %s', g.grantee);
    END LOOP;
END
$$;

INSERT INTO retention.schema_version (version) VALUES (7);
