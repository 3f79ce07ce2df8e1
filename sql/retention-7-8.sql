-- retention schema, version 7 -> 8. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- Rule versions. Each policy's effective rule (its table as resolved, key,
-- clock and the clock's type, retain, exempt column and values, action and
-- what it sets, the time zone a zoneless clock is read in) is recorded the
-- first time a daemon or retentionctl sees it. A rule that would newly make
-- more than guard_records records due waits for an operator's approval
-- (retentionctl approve); until then the daemon purges only what the version
-- in force also makes due. The version in force is the approved one enforced
-- last.
CREATE TABLE retention.rule_versions (
    id              bigserial PRIMARY KEY,
    policy          text NOT NULL,
    -- The rule as the daemon writes it (JSON), and sha256 of that text.
    rule            text NOT NULL,
    rule_hash       bytea NOT NULL,
    -- sha256 of the parts that decide how a row's due-ness is read (table,
    -- clock, its type and zone, action and what it sets): two versions with
    -- the same frame differ only in retain, key or exempt values, and what
    -- both make due is a predicate over one row.
    frame_hash      bytea NOT NULL,
    retain          interval NOT NULL,
    exempt_column   text,
    exempt_values   text[],
    started_by      text NOT NULL,
    started_at      timestamptz NOT NULL,
    enforced_at     timestamptz,
    approved_by     text,
    approved_at     timestamptz,
    -- How many records the version newly made due when it was approved
    -- (NULL: taken as approved at the upgrade that introduced versions).
    approved_count  bigint,
    approved_reason text,
    UNIQUE (policy, rule_hash),
    CHECK ((approved_at IS NULL) = (approved_by IS NULL))
);
REVOKE ALL ON retention.rule_versions FROM PUBLIC;

-- What is known of P_POLICY's rule P_RULE (frame P_FRAME, exempt column
-- P_EXEMPT_COLUMN): its version (NULL if not recorded yet), whether it is
-- approved, the version in force otherwise, and whether what both make due
-- can be told row by row (same frame, and the version in force exempts by
-- nothing or by the same column). A policy with no version but an audit
-- chain has been enforcing its rule since before versions were recorded:
-- that rule counts as approved (`upgrade`).
CREATE FUNCTION retention.rule_state(p_policy text, p_rule text, p_frame text, p_exempt_column text)
    RETURNS TABLE (version bigint, approved boolean, in_force bigint, comparable boolean,
                   in_force_exempts boolean, upgrade boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH v AS (SELECT r.id, r.approved_at FROM retention.rule_versions r
                WHERE r.policy OPERATOR(pg_catalog.=) p_policy
                  AND r.rule_hash OPERATOR(pg_catalog.=) pg_catalog.sha256(pg_catalog.convert_to(p_rule, 'UTF8'))),
         f AS (SELECT r.id, r.frame_hash, r.exempt_column FROM retention.rule_versions r
                WHERE r.policy OPERATOR(pg_catalog.=) p_policy AND r.approved_at IS NOT NULL
                ORDER BY r.enforced_at DESC NULLS LAST, r.approved_at DESC, r.id DESC LIMIT 1),
         u AS (SELECT NOT EXISTS (SELECT FROM retention.rule_versions r WHERE r.policy OPERATOR(pg_catalog.=) p_policy)
                      AND EXISTS (SELECT FROM retention.chain_heads h WHERE h.policy OPERATOR(pg_catalog.=) p_policy)
                      AS upgrade)
    SELECT (SELECT id FROM v),
           coalesce((SELECT approved_at IS NOT NULL FROM v), false) OR (SELECT upgrade FROM u),
           (SELECT id FROM f),
           coalesce((SELECT f.frame_hash OPERATOR(pg_catalog.=) pg_catalog.sha256(pg_catalog.convert_to(p_frame, 'UTF8'))
                     AND (f.exempt_column IS NULL OR f.exempt_column OPERATOR(pg_catalog.=) p_exempt_column) FROM f),
                    false),
           coalesce((SELECT f.exempt_column IS NOT NULL FROM f), false),
           (SELECT upgrade FROM u)
$$;

-- Records P_POLICY's rule P_RULE as seen by P_INSTANCE (a version, if it is
-- new: approved at once at an upgrade), marks an approved one as the version
-- in force, and returns its state as rule_state does. Serialised per policy.
CREATE FUNCTION retention.rule_seen(p_policy text, p_rule text, p_frame text, p_retain interval,
                                    p_exempt_column text, p_exempt_values text[], p_instance text)
    RETURNS TABLE (version bigint, approved boolean, in_force bigint, comparable boolean,
                   in_force_exempts boolean, upgrade boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s record;
    upgraded boolean;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1919251568, pg_catalog.hashtext(p_policy));
    SELECT * INTO s FROM retention.rule_state(p_policy, p_rule, p_frame, p_exempt_column);
    upgraded := s.upgrade;
    IF s.version IS NULL THEN
        INSERT INTO retention.rule_versions (policy, rule, rule_hash, frame_hash, retain, exempt_column,
                                             exempt_values, started_by, started_at, approved_by, approved_at,
                                             approved_reason)
        VALUES (p_policy, p_rule, pg_catalog.sha256(pg_catalog.convert_to(p_rule, 'UTF8')),
                pg_catalog.sha256(pg_catalog.convert_to(p_frame, 'UTF8')), p_retain, p_exempt_column,
                p_exempt_values, p_instance, pg_catalog.now(),
                CASE WHEN s.upgrade THEN p_instance END, CASE WHEN s.upgrade THEN pg_catalog.now() END,
                CASE WHEN s.upgrade THEN 'in force before rule versions were recorded' END);
        SELECT * INTO s FROM retention.rule_state(p_policy, p_rule, p_frame, p_exempt_column);
    END IF;
    IF s.approved THEN
        UPDATE retention.rule_versions r SET enforced_at = pg_catalog.now() WHERE r.id OPERATOR(pg_catalog.=) s.version;
    END IF;
    RETURN QUERY SELECT s.version, s.approved, s.in_force, s.comparable, s.in_force_exempts, upgraded;
END
$$;

-- Approves version P_VERSION, which newly made P_COUNT records due, for
-- P_REASON, by the session's role (and P_BY, who says where it came from).
-- With P_WAKE, wakes the daemons (an operator's approval; a daemon approving
-- what it checked itself goes on at once). False if the version does not
-- exist or was approved.
CREATE FUNCTION retention.rule_approve(p_version bigint, p_count bigint, p_reason text, p_by text, p_wake boolean)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p text;
BEGIN
    IF p_reason IS NULL OR pg_catalog.btrim(p_reason) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'an approval needs a reason';
    END IF;
    UPDATE retention.rule_versions r
       SET approved_by = pg_catalog.concat_ws(' ', pg_catalog.session_user(), p_by), approved_at = pg_catalog.now(),
           approved_count = p_count, approved_reason = p_reason
     WHERE r.id OPERATOR(pg_catalog.=) p_version AND r.approved_at IS NULL
    RETURNING r.policy INTO p;
    IF p IS NULL THEN
        RETURN false;
    END IF;
    IF p_wake THEN
        PERFORM pg_catalog.pg_notify('retentiond', 'policy:' OPERATOR(pg_catalog.||) p);
    END IF;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION retention.rule_state(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.rule_seen(text, text, text, interval, text, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.rule_approve(bigint, bigint, text, text, boolean) FROM PUBLIC;

-- A quarantined record is a record of one table, by one key column: key_of
-- names them (the table as the catalog spells it, a dot, the quoted key
-- column). A policy moved to another table or key column skips no record of
-- the new one by the old one's keys; rows of the old are removed at the
-- daemon's next count. Rows of version 7 have none, and are tried again.
ALTER TABLE retention.quarantine ADD COLUMN key_of text;

-- quarantine_record() of version 7, for a record of P_KEY_OF.
CREATE FUNCTION retention.quarantine_record(p_policy text, p_key text, p_key_type text, p_error text,
                                            p_retry interval, p_instance text, p_key_of text)
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
           AND q.key_type OPERATOR(pg_catalog.=) p_key_type AND q.key_of IS NOT DISTINCT FROM p_key_of
    RETURNING q.attempts, q.id INTO n, row_id;
    IF n IS NULL THEN
        n := 1;
        INSERT INTO retention.quarantine (policy, record_key, key_type, key_of, error, first_failed_at,
                                          last_failed_at, attempts, instance)
        VALUES (p_policy, p_key, p_key_type, p_key_of, p_error, pg_catalog.now(), pg_catalog.now(), 1, p_instance)
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
REVOKE ALL ON FUNCTION retention.quarantine_record(text, text, text, text, interval, text, text) FROM PUBLIC;

-- A daemon of version 7, running across the upgrade, records without key_of.
CREATE OR REPLACE FUNCTION retention.quarantine_record(p_policy text, p_key text, p_key_type text, p_error text,
                                                       p_retry interval, p_instance text)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT retention.quarantine_record(p_policy, p_key, p_key_type, p_error, p_retry, p_instance, NULL::text)
$$;

-- How far behind the streaming standbys replay (database.max_replication_lag):
-- how many are connected, of how many the lag can be read, and the largest
-- replay lag in seconds (0 while none lags). pg_stat_replication shows the
-- lag only to roles with the privileges of pg_read_all_stats: this function
-- reads it as the schema's owner, so that the daemon's role needs no right to
-- read every session's statistics.
CREATE FUNCTION retention.replication_lag(OUT standbys integer, OUT readable integer, OUT lag_seconds float8)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT pg_catalog.count(*)::integer, pg_catalog.count(r.state)::integer,
           coalesce(extract(epoch FROM pg_catalog.max(r.replay_lag)), 0)::float8
      FROM pg_catalog.pg_stat_replication r
$$;
REVOKE ALL ON FUNCTION retention.replication_lag() FROM PUBLIC;

-- The guard before a batch's COMMIT counts rule versions too: code of a
-- table's owner running in a batch must not approve a rule.
CREATE OR REPLACE FUNCTION retention.audit_writes() RETURNS bigint
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN CASE WHEN pg_catalog.current_setting('track_counts')::pg_catalog.bool THEN (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_tuples_inserted(r.oid) OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(r.oid) OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(r.oid))::pg_catalog.int8 FROM pg_catalog.unnest(ARRAY[pg_catalog.to_regclass('retention.audit_log'), pg_catalog.to_regclass('retention.chain_heads'), pg_catalog.to_regclass('retention.quarantine'), pg_catalog.to_regclass('retention.chain_gaps'), pg_catalog.to_regclass('retention.rule_versions')]::pg_catalog.oid[]) r(oid)) END;
END
$$;

-- A running daemon keeps purging across the upgrade: every role that may
-- write audit rows (the daemon's) may read rule versions, which its
-- statements read while a version waits for approval, and record the
-- versions it sees; it approves one that newly makes no more than
-- guard_records records due. Every role that may read the audit trail may
-- read the rule versions.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.audit_log'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type IN ('INSERT', 'SELECT')
    LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON retention.rule_versions TO %s', g.grantee);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.rule_state(text, text, text, text) TO %s',
                                  g.grantee);
    END LOOP;
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.audit_log'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.rule_seen(text, text, text, interval, text,'
                                  ' text[], text), retention.rule_approve(bigint, bigint, text, text, boolean),'
                                  ' retention.replication_lag(),'
                                  ' retention.quarantine_record(text, text, text, text, interval, text, text) TO %s',
                                  g.grantee);
    END LOOP;
END
$$;

INSERT INTO retention.schema_version (version) VALUES (8);
