-- retention schema, version 1. Applied by `retentionctl migrate` inside one
-- transaction; never edit a released version, add retention-1-2.sql instead.

CREATE SCHEMA retention;

CREATE TABLE retention.schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per purged record. The record's other columns are never copied here.
-- seq numbers a policy's rows 1, 2, 3, ...; hash = sha256(prev_hash || payload)
-- where payload is retention.audit_payload(...) of the row, so an edited,
-- removed or reordered row breaks the chain from that row on.
CREATE TABLE retention.audit_log (
    id         bigserial PRIMARY KEY,
    policy     text NOT NULL,
    seq        bigint NOT NULL CHECK (seq > 0),
    service    text NOT NULL,
    source     text NOT NULL,
    table_name text NOT NULL,
    record_key text NOT NULL,
    subject    text,
    clock_at   timestamptz NOT NULL,
    due_at     timestamptz NOT NULL,
    purged_at  timestamptz NOT NULL,
    action     text NOT NULL CHECK (action IN ('delete', 'anonymize')),
    instance   text NOT NULL,
    txid       bigint NOT NULL,
    prev_hash  bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    UNIQUE (policy, seq)
);
CREATE INDEX audit_log_record ON retention.audit_log (policy, record_key);
CREATE INDEX audit_log_purged_at ON retention.audit_log (purged_at);

-- The newest (seq, hash) of each policy's chain, so that a truncated tail is
-- noticed and a purge continues the chain without scanning it.
CREATE TABLE retention.chain_heads (
    policy     text PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       bytea NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE retention.holds (
    id             bigserial PRIMARY KEY,
    policy         text NOT NULL,
    record_key     text,
    subject        text,
    reason         text NOT NULL CHECK (reason <> ''),
    placed_by      text NOT NULL DEFAULT current_user,
    placed_at      timestamptz NOT NULL DEFAULT now(),
    until          timestamptz,
    released_at    timestamptz,
    released_by    text,
    release_reason text,
    CHECK ((record_key IS NULL) <> (subject IS NULL)),
    CHECK ((released_at IS NULL) = (released_by IS NULL)),
    CHECK ((released_at IS NULL) = (release_reason IS NULL))
);
CREATE INDEX holds_active_record ON retention.holds (policy, record_key) WHERE released_at IS NULL;
CREATE INDEX holds_active_subject ON retention.holds (policy, subject) WHERE released_at IS NULL;

CREATE TABLE retention.instances (
    instance      text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    version       text NOT NULL,
    started_at    timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL,
    policies      text[] NOT NULL DEFAULT '{}',
    last_purge_at timestamptz,
    purged_total  bigint NOT NULL DEFAULT 0
);

-- Purges and hold placement of one policy serialise on this transaction-level
-- lock: a hold committed before a purge takes the lock is seen by that purge's
-- statement, and a hold placed while a purge holds it waits for the commit.
-- A NOT EXISTS on holds alone is not enough under READ COMMITTED.
CREATE FUNCTION retention.lock_policy(p_policy text) RETURNS void
    LANGUAGE sql VOLATILE
    AS $$ SELECT pg_advisory_xact_lock(1919251566, hashtext(p_policy)) $$;

CREATE FUNCTION retention.try_lock_policy(p_policy text) RETURNS boolean
    LANGUAGE sql VOLATILE
    AS $$ SELECT pg_try_advisory_xact_lock(1919251566, hashtext(p_policy)) $$;

CREATE FUNCTION retention.place_hold(p_policy text, p_record_key text, p_subject text,
                                     p_reason text, p_until timestamptz)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    AS $$
DECLARE
    hold_id bigint;
BEGIN
    PERFORM retention.lock_policy(p_policy);
    INSERT INTO retention.holds (policy, record_key, subject, reason, until)
    VALUES (p_policy, p_record_key, p_subject, p_reason, p_until)
    RETURNING id INTO hold_id;
    RETURN hold_id;
END
$$;

-- A released hold wakes the daemon ("policy:NAME"), which purges the record
-- at once if it is due, instead of at the next resync.
CREATE FUNCTION retention.release_hold(p_id bigint, p_reason text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    AS $$
DECLARE
    released_policy text;
BEGIN
    UPDATE retention.holds
       SET released_at = now(), released_by = current_user, release_reason = p_reason
     WHERE id = p_id AND released_at IS NULL
    RETURNING policy INTO released_policy;
    IF released_policy IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('retentiond', 'policy:' || released_policy);
    RETURN true;
END
$$;

-- The bytes a row's hash covers. Times are rendered in UTC with microseconds
-- so the payload does not depend on the session's TimeZone or DateStyle.
-- STABLE, as to_char is: a SQL function is inlined into the purge statement
-- only when it claims no more than its body's volatility.
CREATE FUNCTION retention.audit_payload(policy text, seq bigint, service text, source text,
                                        table_name text, record_key text, subject text,
                                        clock_at timestamptz, due_at timestamptz,
                                        purged_at timestamptz, action text, instance text,
                                        txid bigint)
    RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT convert_to(json_build_array(
        policy, seq, service, source, table_name, record_key, subject,
        to_char(clock_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        to_char(purged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        action, instance, txid)::text, 'UTF8')
$$;

CREATE FUNCTION retention.genesis_hash() RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea $$;

-- Running hash over rows in order: used as a window aggregate so that one
-- purge statement chains all the rows of its batch. PL/pgSQL, not SQL: an
-- aggregate's transition function is never inlined, and PL/pgSQL evaluates
-- this simple expression several times faster than a SQL function call.
CREATE FUNCTION retention.chain_step(state bytea, seed bytea, payload bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$ BEGIN RETURN sha256(coalesce(state, seed) || payload); END $$;

CREATE AGGREGATE retention.chain(bytea, bytea) (
    SFUNC = retention.chain_step,
    STYPE = bytea
);

-- Attach to a service's table so that a new or changed clock wakes the daemon:
--   CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF clock_column ON t
--     FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
-- The payload is the table's schema-qualified, quoted name.
CREATE FUNCTION retention.notify_clock() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('retentiond', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    RETURN NULL;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA retention FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.place_hold(text, text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.release_hold(bigint, text) FROM PUBLIC;

INSERT INTO retention.schema_version (version) VALUES (1);
