-- retention schema, version 1 -> 2. Applied by `retentionctl migrate` inside
-- one transaction, after retention-1.sql on a new database.
--
-- Code in the database runs with someone's rights, so every function here
-- names what it calls: built-ins as pg_catalog.*, operators as
-- OPERATOR(pg_catalog.x), types as pg_catalog.type. A function whose body is
-- SQL is inlined into its caller's statement and parsed with the caller's
-- search_path; without the qualification a role with CREATE on a schema in
-- that path could put its own json_build_array() or format() in front.
-- plpgsql functions also pin search_path where a SET clause costs nothing
-- noticeable (once per call, never per row).

-- The bytes a row's hash covers, exactly as in version 1, qualified.
CREATE OR REPLACE FUNCTION retention.audit_payload(policy text, seq bigint, service text, source text,
                                                   table_name text, record_key text, subject text,
                                                   clock_at timestamptz, due_at timestamptz,
                                                   purged_at timestamptz, action text, instance text,
                                                   txid bigint)
    RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT pg_catalog.convert_to(pg_catalog.json_build_array(
        policy, seq, service, source, table_name, record_key, subject,
        pg_catalog.to_char(pg_catalog.timezone('UTC', clock_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        pg_catalog.to_char(pg_catalog.timezone('UTC', due_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        pg_catalog.to_char(pg_catalog.timezone('UTC', purged_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        action, instance, txid)::pg_catalog.text, 'UTF8')
$$;

CREATE OR REPLACE FUNCTION retention.genesis_hash() RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '\x0000000000000000000000000000000000000000000000000000000000000000'::pg_catalog.bytea $$;

CREATE OR REPLACE FUNCTION retention.chain_step(state bytea, seed bytea, payload bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$ BEGIN RETURN pg_catalog.sha256(coalesce(state, seed) OPERATOR(pg_catalog.||) payload); END $$;

CREATE OR REPLACE FUNCTION retention.notify_clock() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('retentiond', pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    RETURN NULL;
END
$$;

-- ---- the policy lock ----
--
-- Purges and hold placement of one policy serialise on a row lock here. In
-- version 1 it was an advisory lock, which any role may take: anyone could
-- stall a policy. Only the schema's owner may lock these rows; others go
-- through the two functions below, granted to the daemon's role and to
-- whoever may place holds.
CREATE TABLE retention.policy_locks (
    policy text PRIMARY KEY
);
REVOKE ALL ON retention.policy_locks FROM PUBLIC;

CREATE OR REPLACE FUNCTION retention.lock_policy(p_policy text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    INSERT INTO retention.policy_locks (policy) VALUES (p_policy) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM retention.policy_locks WHERE policy OPERATOR(pg_catalog.=) p_policy FOR UPDATE;
END
$$;

-- true if this transaction now holds the lock, false if another does. It
-- never waits: on a policy's first use another transaction may be inserting
-- its row (a hold being placed), and the insert here would wait for that
-- transaction; the function's own lock_timeout turns the wait into "held
-- elsewhere".
CREATE OR REPLACE FUNCTION retention.try_lock_policy(p_policy text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET lock_timeout = '1ms'
    AS $$
BEGIN
    PERFORM 1 FROM retention.policy_locks WHERE policy OPERATOR(pg_catalog.=) p_policy
        FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        RETURN true;
    END IF;
    BEGIN
        -- Absent (first use), or locked elsewhere: a committed row makes this a no-op.
        INSERT INTO retention.policy_locks (policy) VALUES (p_policy) ON CONFLICT DO NOTHING;
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;
    END;
    PERFORM 1 FROM retention.policy_locks WHERE policy OPERATOR(pg_catalog.=) p_policy
        FOR UPDATE SKIP LOCKED;
    RETURN FOUND;
END
$$;

-- Who holds a policy's lock, for the daemon's warning when it stays taken.
CREATE FUNCTION retention.policy_lock_holder(p_policy text, OUT pid integer, OUT role text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT a.pid, a.usename::text
      FROM retention.policy_locks l
      JOIN pg_catalog.pg_stat_activity a
        ON a.backend_xid OPERATOR(pg_catalog.=) l.xmax
     WHERE l.policy OPERATOR(pg_catalog.=) p_policy
     LIMIT 1
$$;

REVOKE ALL ON FUNCTION retention.lock_policy(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.try_lock_policy(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.policy_lock_holder(text) FROM PUBLIC;

-- ---- holds ----
--
-- Placing and releasing a hold go through these functions only: they take
-- the policy's lock and record who (the login role) did it. Version 1's
-- documentation granted people INSERT and UPDATE on the table, which skips
-- the lock and lets anyone write placed_by and released_by; those grants are
-- revoked below.
CREATE OR REPLACE FUNCTION retention.place_hold(p_policy text, p_record_key text, p_subject text,
                                                p_reason text, p_until timestamptz)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    hold_id bigint;
BEGIN
    PERFORM retention.lock_policy(p_policy);
    INSERT INTO retention.holds (policy, record_key, subject, reason, until, placed_by)
    VALUES (p_policy, p_record_key, p_subject, p_reason, p_until, session_user)
    RETURNING id INTO hold_id;
    RETURN hold_id;
END
$$;

CREATE OR REPLACE FUNCTION retention.release_hold(p_id bigint, p_reason text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    released_policy text;
BEGIN
    UPDATE retention.holds
       SET released_at = pg_catalog.now(), released_by = session_user, release_reason = p_reason
     WHERE id OPERATOR(pg_catalog.=) p_id AND released_at IS NULL
    RETURNING policy INTO released_policy;
    IF released_policy IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_catalog.pg_notify('retentiond', 'policy:' OPERATOR(pg_catalog.||) released_policy);
    RETURN true;
END
$$;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee, a.privilege_type
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.holds'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0
                AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
    LOOP
        EXECUTE pg_catalog.format('REVOKE %s ON retention.holds FROM %s', g.privilege_type, g.grantee);
    END LOOP;
END
$$;

-- The holds in force for any of POLICIES now: one definition of "active"
-- for every statement that asks (purge, next due, pending, explain).
CREATE FUNCTION retention.active_holds(policies text[]) RETURNS SETOF retention.holds
    LANGUAGE sql STABLE
    AS $$
    SELECT h.* FROM retention.holds h
     WHERE h.policy OPERATOR(pg_catalog.=) ANY (policies)
       AND h.released_at IS NULL
       AND (h.until IS NULL OR h.until OPERATOR(pg_catalog.>) pg_catalog.statement_timestamp())
$$;

-- The elements of VALS that are valid input for the type of PROTO with
-- modifier TYPMOD (a column's atttypmod: the n of char(n) or bit(n), which a
-- value passed as anyelement loses), cast to it. Holds store what was typed
-- ("42", an upper-case uuid); a record matches when its column is equal in
-- the column's own type (42.00 = 42, citext is case-blind), and a value the
-- column would round or pad names what it becomes (42.001 holds 42.00: a
-- hold errs toward keeping). A value that is not of the type names no
-- record, so it is dropped rather than failing the statement that asked.
CREATE FUNCTION retention.cast_valid(vals text[], proto anyelement, typmod integer) RETURNS anyarray
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    result ALIAS FOR $0;
    one proto%TYPE;
    v text;
    typ text := pg_catalog.format_type(pg_catalog.pg_typeof(proto), typmod);
BEGIN
    BEGIN
        EXECUTE pg_catalog.format('SELECT $1::%s[]', typ) INTO result USING vals;
        RETURN result;
    EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
        NULL;
    END;
    result := '{}';
    FOREACH v IN ARRAY vals LOOP
        BEGIN
            EXECUTE pg_catalog.format('SELECT $1::%s', typ) INTO one USING v;
            result := result OPERATOR(pg_catalog.||) one;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
            NULL;
        END;
    END LOOP;
    RETURN result;
END
$$;

-- ---- the audit trail ----
--
-- The daemon writes audit rows and moves chain heads from its purge
-- statement, at trigger depth 0. A trigger on a policy table runs with the
-- daemon's rights, so without this refusal its owner could write a correctly
-- chained forged row. Statement-level: once per statement, not per row.
CREATE FUNCTION retention.refuse_nested_write() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF pg_catalog.pg_trigger_depth() OPERATOR(pg_catalog.>) 1 THEN
        RAISE EXCEPTION 'retention.% may not be written from inside a trigger', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER refuse_nested_write BEFORE INSERT OR UPDATE OR DELETE ON retention.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION retention.refuse_nested_write();
CREATE TRIGGER refuse_nested_write BEFORE INSERT OR UPDATE OR DELETE ON retention.chain_heads
    FOR EACH STATEMENT EXECUTE FUNCTION retention.refuse_nested_write();
-- What `retentionctl status` reports of each daemon: not a trigger's to fake.
CREATE TRIGGER refuse_nested_write BEFORE INSERT OR UPDATE OR DELETE ON retention.instances
    FOR EACH STATEMENT EXECUTE FUNCTION retention.refuse_nested_write();

-- ---- what the daemon reads of its own session ----
--
-- Code of a table's owner runs in the daemon's session with its role (a
-- trigger, a domain's check) and could change, for everything after it, a
-- setting the daemon's statements rely on, the channels it listens to, or a
-- prepared statement. The daemon reads these after every statement that may
-- run such code, and compares them with what it read when it connected.
-- PL/pgSQL, so that each session plans them once; every name is qualified,
-- and no SET clause: search_path is one of the settings read. The order of
-- session_settings() is that of settings_names in src/session.c.
CREATE FUNCTION retention.session_settings() RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN (ARRAY[CAST(current_user AS pg_catalog.text), pg_catalog.current_setting('search_path'), pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'), pg_catalog.current_setting('client_encoding'), pg_catalog.current_setting('statement_timeout'), pg_catalog.current_setting('lock_timeout'), pg_catalog.current_setting('standard_conforming_strings'), pg_catalog.current_setting('row_security'), pg_catalog.current_setting('extra_float_digits'), pg_catalog.current_setting('array_nulls'), pg_catalog.current_setting('transform_null_equals'), pg_catalog.current_setting('timezone_abbreviations'), pg_catalog.current_setting('jit'), pg_catalog.current_setting('synchronous_commit'), pg_catalog.current_setting('idle_in_transaction_session_timeout'), pg_catalog.current_setting('default_transaction_read_only'), pg_catalog.array_to_string(ARRAY(SELECT c FROM pg_catalog.pg_listening_channels() c ORDER BY c), ',')])::pg_catalog.text;
END
$$;

-- "M N": prepared statements made by SQL PREPARE, and through the protocol.
-- The daemon prepares through the protocol only: M must stay 0 (one made by
-- PREPARE could stand in for one of the daemon's, under its name), and N is
-- what the daemon prepared (code can DEALLOCATE them, not remake them).
CREATE FUNCTION retention.prepared_statements() RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN (SELECT pg_catalog.count(*) FILTER (WHERE p.from_sql)::pg_catalog.text || ' ' || pg_catalog.count(*) FILTER (WHERE NOT p.from_sql)::pg_catalog.text FROM pg_catalog.pg_prepared_statements p);
END
$$;

-- Rows of the audit log and the chain heads this backend wrote (inserted,
-- updated or deleted, rolled-back subtransactions included) since its
-- counters were last flushed, which happens only between transactions:
-- read at a transaction's start and before its COMMIT, the difference is
-- what the transaction wrote, whoever's code did it. NULL when the server
-- does not count (track_counts off, which only a superuser can set).
CREATE FUNCTION retention.audit_writes() RETURNS bigint
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN CASE WHEN pg_catalog.current_setting('track_counts')::pg_catalog.bool THEN (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_tuples_inserted(r.oid) OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_updated(r.oid) OPERATOR(pg_catalog.+) pg_catalog.pg_stat_get_xact_tuples_deleted(r.oid))::pg_catalog.int8 FROM pg_catalog.unnest(ARRAY[pg_catalog.to_regclass('retention.audit_log'), pg_catalog.to_regclass('retention.chain_heads')]::pg_catalog.oid[]) r(oid)) END;
END
$$;

-- The daemon's role (whoever may write audit rows) keeps purging across the
-- upgrade: it now needs EXECUTE on try_lock_policy, which sql/daemon-role.sql
-- grants from this version on.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.audit_log'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.try_lock_policy(text),'
                                  ' retention.policy_lock_holder(text) TO %s', g.grantee);
    END LOOP;
END
$$;

INSERT INTO retention.schema_version (version) VALUES (2);
