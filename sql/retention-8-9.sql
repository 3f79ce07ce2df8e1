-- retention schema, version 8 -> 9. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- The version in force is the one a daemon enforced last, and only a daemon
-- says which that is (rule_enforce): retentionctl recording a version, or an
-- operator approving one the daemon never ran, changes nothing of it. A
-- version newly making no more than guard_records records due is enforced
-- without an approval, and is approved only while it stays in force: going
-- back to it after another was enforced is counted again against that one.
-- Only an operator approves (rule_approve, no longer the daemon's role's).
-- And a version whose key or subject column is not the one in force is not
-- enforced while active holds of the policy name records by the old one:
-- they would protect other rows, and leave theirs unprotected.
--
-- A record's key may be several columns: record_fields reads its text form
-- back, for the statements that compare held and quarantined keys with rows.

-- Version 8 daemons recorded their own acceptances, and the rules in force
-- at the upgrade to version 8, as approvals: they were enforced from then,
-- and approved by no one. Such a rule recorded first by retentionctl was
-- enforced by no daemon: its approval goes, and nothing is in force for it
-- (see rule_state's `upgrade`). An operator's approval is retentionctl
-- approve's.
UPDATE retention.rule_versions r
   SET approved_by = NULL, approved_at = NULL, approved_count = NULL, approved_reason = NULL
 WHERE r.approved_reason OPERATOR(pg_catalog.=) 'in force before rule versions were recorded'
   AND r.enforced_at IS NULL AND r.approved_by OPERATOR(pg_catalog.~~) 'retentionctl %';
UPDATE retention.rule_versions r
   SET enforced_at = coalesce(r.enforced_at, r.approved_at),
       approved_by = NULL, approved_at = NULL, approved_count = NULL, approved_reason = NULL
 WHERE r.approved_by IS NOT NULL AND r.approved_by OPERATOR(pg_catalog.!~) ' \(retentionctl approve\)$';

CREATE TEMPORARY TABLE rule_function_grantees ON COMMIT DROP AS
    SELECT DISTINCT p.proname::text AS fn, a.grantee::regrole::text AS grantee
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.pronamespace OPERATOR(pg_catalog.=) 'retention'::regnamespace
       AND p.proname IN ('rule_state', 'rule_seen', 'rule_approve')
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner AND a.grantee OPERATOR(pg_catalog.<>) 0;

DROP FUNCTION retention.rule_seen(text, text, text, interval, text, text[], text);
DROP FUNCTION retention.rule_state(text, text, text, text);

-- What is known of P_POLICY's rule P_RULE (frame P_FRAME, exempt column
-- P_EXEMPT_COLUMN): its version (NULL if not recorded yet); whether it is
-- approved (by an operator, or because it is the version in force); the
-- version in force otherwise, and whether what both make due can be told
-- row by row (same frame, and the version in force exempts by nothing or by
-- the same column). A policy that ran before versions were recorded (`u`
-- below) has been enforcing its rule: whichever rule a daemon sees first
-- counts as approved (`upgrade`), and is in force once it is enforced.
-- HOLDS_MOVED says why the version may not be
-- enforced while the holds it names are active, or is NULL.
CREATE FUNCTION retention.rule_state(p_policy text, p_rule text, p_frame text, p_exempt_column text)
    RETURNS TABLE (version bigint, approved boolean, in_force bigint, comparable boolean,
                   in_force_exempts boolean, upgrade boolean, holds_moved text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH v AS (SELECT r.id, r.approved_at FROM retention.rule_versions r
                WHERE r.policy OPERATOR(pg_catalog.=) p_policy
                  AND r.rule_hash OPERATOR(pg_catalog.=) pg_catalog.sha256(pg_catalog.convert_to(p_rule, 'UTF8'))),
         f AS (SELECT r.id, r.rule::jsonb AS rule, r.frame_hash, r.exempt_column FROM retention.rule_versions r
                WHERE r.policy OPERATOR(pg_catalog.=) p_policy AND r.enforced_at IS NOT NULL
                ORDER BY r.enforced_at DESC, r.id DESC LIMIT 1),
         -- Ran before versions were recorded, in the week after the upgrade to this schema: no version a
         -- daemon enforced, nor one another rule's daemon recorded; a chain last moved before any version
         -- was recorded, whose last audit row names this table (an unqualified name as the daemon's
         -- session resolved it: its role's schema, then public). A policy gone from every configuration
         -- and added again later, a name on a dropped or another table, a chain planted without audit
         -- rows, a rule changed after a daemon recorded one: each is counted as a new policy.
         u AS (SELECT NOT EXISTS (SELECT FROM f)
                      AND pg_catalog.now() OPERATOR(pg_catalog.<)
                          (SELECT v9.applied_at OPERATOR(pg_catalog.+) '7 days'::interval
                             FROM retention.schema_version v9 WHERE v9.version OPERATOR(pg_catalog.=) 9)
                      AND NOT EXISTS (SELECT FROM retention.rule_versions r
                                       WHERE r.policy OPERATOR(pg_catalog.=) p_policy
                                         AND r.rule_hash OPERATOR(pg_catalog.<>)
                                             pg_catalog.sha256(pg_catalog.convert_to(p_rule, 'UTF8'))
                                         AND r.started_by OPERATOR(pg_catalog.!~~) 'retentionctl %')
                      AND EXISTS (SELECT FROM retention.chain_heads c
                                   WHERE c.policy OPERATOR(pg_catalog.=) p_policy
                                     AND c.updated_at OPERATOR(pg_catalog.<)
                                         coalesce((SELECT pg_catalog.min(r.started_at) FROM retention.rule_versions r
                                                    WHERE r.policy OPERATOR(pg_catalog.=) p_policy), 'infinity'))
                      AND coalesce((SELECT CASE WHEN pg_catalog.strpos(a.table_name, '.') OPERATOR(pg_catalog.=) 0
                                                THEN coalesce(pg_catalog.to_regclass(pg_catalog.format('%I.%s',
                                                                  pg_catalog.session_user(), a.table_name)),
                                                              pg_catalog.to_regclass('public.' OPERATOR(pg_catalog.||)
                                                                                     a.table_name))
                                                ELSE pg_catalog.to_regclass(a.table_name) END
                                           OPERATOR(pg_catalog.=)
                                           pg_catalog.to_regclass(p_rule::jsonb OPERATOR(pg_catalog.->>) 'table')
                                      FROM retention.audit_log a WHERE a.policy OPERATOR(pg_catalog.=) p_policy
                                     ORDER BY a.seq DESC LIMIT 1), false)
                      AS upgrade),
         h AS (SELECT pg_catalog.count(a.record_key) AS by_key, pg_catalog.count(a.subject) AS by_subject
                 FROM retention.active_holds(ARRAY[p_policy]) a),
         -- A rule recorded before subjects were part of it says nothing of its subject.
         moved AS (SELECT (f.rule OPERATOR(pg_catalog.->>) 'key') IS DISTINCT FROM
                          (p_rule::jsonb OPERATOR(pg_catalog.->>) 'key') AS key,
                          (f.rule OPERATOR(pg_catalog.?) 'subject' OR NOT p_rule::jsonb OPERATOR(pg_catalog.?) 'subject')
                          AND (f.rule OPERATOR(pg_catalog.->>) 'subject') IS DISTINCT FROM
                              (p_rule::jsonb OPERATOR(pg_catalog.->>) 'subject') AS subject,
                          f.rule OPERATOR(pg_catalog.->>) 'key' AS old_key,
                          f.rule OPERATOR(pg_catalog.->>) 'subject' AS old_subject
                     FROM f WHERE f.id IS DISTINCT FROM (SELECT id FROM v))
    SELECT (SELECT id FROM v),
           coalesce((SELECT approved_at IS NOT NULL FROM v), false)
               OR coalesce((SELECT v.id OPERATOR(pg_catalog.=) f.id FROM v, f), false) OR (SELECT upgrade FROM u),
           (SELECT id FROM f),
           coalesce((SELECT f.frame_hash OPERATOR(pg_catalog.=) pg_catalog.sha256(pg_catalog.convert_to(p_frame, 'UTF8'))
                     AND (f.exempt_column IS NULL OR f.exempt_column OPERATOR(pg_catalog.=) p_exempt_column) FROM f),
                    false),
           coalesce((SELECT f.exempt_column IS NOT NULL FROM f), false),
           (SELECT upgrade FROM u),
           (SELECT CASE
                   WHEN m.key AND h.by_key OPERATOR(pg_catalog.>) 0 THEN
                       pg_catalog.format('its key column is not %s, version %s''s in force, and %s active holds name'
                                         ' records by their %s: they would protect other rows', m.old_key,
                                         (SELECT id FROM f), h.by_key, m.old_key)
                   WHEN m.subject AND h.by_subject OPERATOR(pg_catalog.>) 0 THEN
                       pg_catalog.format('its subject column is not %s, version %s''s in force, and %s active holds'
                                         ' name data subjects by their %s: they would protect other rows',
                                         coalesce(m.old_subject, '(none)'), (SELECT id FROM f), h.by_subject,
                                         coalesce(m.old_subject, '(none)'))
                   END
              FROM moved m, h)
$$;

-- Records P_POLICY's rule P_RULE as seen by P_INSTANCE (a version, if it is
-- new) and returns its state as rule_state does. Serialised per policy. It
-- does not make the version the one in force: rule_enforce does.
CREATE FUNCTION retention.rule_seen(p_policy text, p_rule text, p_frame text, p_retain interval,
                                    p_exempt_column text, p_exempt_values text[], p_instance text)
    RETURNS TABLE (version bigint, approved boolean, in_force bigint, comparable boolean,
                   in_force_exempts boolean, upgrade boolean, holds_moved text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    s record;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1919251568, pg_catalog.hashtext(p_policy));
    SELECT * INTO s FROM retention.rule_state(p_policy, p_rule, p_frame, p_exempt_column);
    IF s.version IS NULL THEN
        INSERT INTO retention.rule_versions (policy, rule, rule_hash, frame_hash, retain, exempt_column,
                                             exempt_values, started_by, started_at)
        VALUES (p_policy, p_rule, pg_catalog.sha256(pg_catalog.convert_to(p_rule, 'UTF8')),
                pg_catalog.sha256(pg_catalog.convert_to(p_frame, 'UTF8')), p_retain, p_exempt_column,
                p_exempt_values, p_instance, pg_catalog.now());
        SELECT * INTO s FROM retention.rule_state(p_policy, p_rule, p_frame, p_exempt_column);
    END IF;
    -- Holds placed before any rule of the policy was recorded name records by this rule's key.
    UPDATE retention.holds h SET key_of = retention.key_of_rule(p_rule)
     WHERE h.policy OPERATOR(pg_catalog.=) p_policy AND h.key_of IS NULL AND h.record_key IS NOT NULL
       AND h.released_at IS NULL;
    RETURN QUERY SELECT s.version, s.approved, s.in_force, s.comparable, s.in_force_exempts, s.upgrade,
                        s.holds_moved;
END
$$;

-- A daemon enforces version P_VERSION from now: it is the version in force.
-- False if there is no such version.
CREATE FUNCTION retention.rule_enforce(p_version bigint)
    RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    -- The time of the call, not of its transaction: enforcements are ordered as they happen.
    WITH e AS (UPDATE retention.rule_versions r SET enforced_at = pg_catalog.clock_timestamp()
                WHERE r.id OPERATOR(pg_catalog.=) p_version RETURNING 1)
    SELECT EXISTS (SELECT FROM e)
$$;

-- Quarantine rows are removed by what names them: the purged records' keys
-- of the policy's table and key column (P_KEY_OF), or the rows' ids (stale
-- rows of another table, or of records gone). By key alone, the stale row of
-- an old table removed the current row of a record with the same key, and
-- that record was tried again before its retry time.
CREATE FUNCTION retention.quarantine_clear(p_policy text, p_keys text[], p_key_of text)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH d AS (DELETE FROM retention.quarantine q
                WHERE q.policy OPERATOR(pg_catalog.=) p_policy AND q.key_of OPERATOR(pg_catalog.=) p_key_of
                  AND q.record_key OPERATOR(pg_catalog.=) ANY (p_keys) RETURNING 1)
    SELECT pg_catalog.count(*)::bigint FROM d
$$;

CREATE FUNCTION retention.quarantine_clear_rows(p_policy text, p_ids bigint[])
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH d AS (DELETE FROM retention.quarantine q
                WHERE q.policy OPERATOR(pg_catalog.=) p_policy AND q.id OPERATOR(pg_catalog.=) ANY (p_ids) RETURNING 1)
    SELECT pg_catalog.count(*)::bigint FROM d
$$;

REVOKE ALL ON FUNCTION retention.quarantine_clear(text, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.quarantine_clear_rows(text, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.rule_state(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.rule_seen(text, text, text, interval, text, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.rule_enforce(bigint) FROM PUBLIC;

-- The same roles as before may read and record versions; the daemons'
-- roles (those that write audit rows) enforce them, and approve no more.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT * FROM rule_function_grantees WHERE fn IN ('rule_state', 'rule_seen') LOOP
        IF g.fn OPERATOR(pg_catalog.=) 'rule_state' THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.rule_state(text, text, text, text) TO %s',
                                      g.grantee);
        ELSE
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.rule_seen(text, text, text, interval,'
                                      ' text, text[], text) TO %s', g.grantee);
        END IF;
    END LOOP;
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.oid = 'retention.audit_log'::regclass
                AND a.grantee <> c.relowner AND a.grantee <> 0 AND a.privilege_type = 'INSERT'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.rule_enforce(bigint),'
                                  ' retention.quarantine_clear(text, text[], text),'
                                  ' retention.quarantine_clear_rows(text, bigint[]) TO %s', g.grantee);
        EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION retention.rule_approve(bigint, bigint, text, text,'
                                  ' boolean) FROM %s', g.grantee);
    END LOOP;
END
$$;

-- ---- composite keys ----
--
-- A composite key's record_key is the row of its columns as PostgreSQL
-- writes it, ROW(a, b)::text. These are its fields, read back as record_in
-- reads a row's text form: an empty field is NULL, a backslash takes the
-- next character as it is, double quotes enclose commas, parentheses and
-- spaces, and a doubled quote inside them is one. Text that is not such a
-- row of P_N fields raises invalid_text_representation, a data_exception,
-- as a failed cast does (record_fields_or_null: NULL). Read as an array of
-- characters: linear in the text's length.
CREATE FUNCTION retention.record_fields_or_null(p_text text, p_n integer) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    ch text[] := pg_catalog.string_to_array(pg_catalog.btrim(p_text, E' \t\n\r\f\v'), NULL);
    last integer := coalesce(pg_catalog.cardinality(ch), 0);
    i integer := 2;
    field text := '';
    quoted boolean := false;
    written boolean := false;
    fields text[] := '{}';
    malformed boolean := last OPERATOR(pg_catalog.<) 2 OR ch[1] OPERATOR(pg_catalog.<>) '('
                         OR ch[last] OPERATOR(pg_catalog.<>) ')';
BEGIN
    -- Without quotes, backslashes or a parenthesis inside, it is its commas' fields: at once.
    IF NOT malformed AND pg_catalog.array_to_string(ch[2:last OPERATOR(pg_catalog.-) 1], '') OPERATOR(pg_catalog.!~) '["\\)]' THEN
        fields := pg_catalog.string_to_array(pg_catalog.array_to_string(ch[2:last OPERATOR(pg_catalog.-) 1], ''), ',', '');
        RETURN CASE WHEN pg_catalog.cardinality(fields) OPERATOR(pg_catalog.=) p_n THEN fields END;
    END IF;
    WHILE NOT malformed AND i OPERATOR(pg_catalog.<) last LOOP
        IF ch[i] OPERATOR(pg_catalog.=) E'\\' THEN
            i := i OPERATOR(pg_catalog.+) 1;
            -- The record's closing parenthesis taken as the field's: none is left to close it.
            malformed := i OPERATOR(pg_catalog.=) last;
            field := field OPERATOR(pg_catalog.||) ch[i];
        ELSIF ch[i] OPERATOR(pg_catalog.=) '"' THEN
            IF quoted AND ch[i OPERATOR(pg_catalog.+) 1] OPERATOR(pg_catalog.=) '"' THEN
                field := field OPERATOR(pg_catalog.||) '"';
                i := i OPERATOR(pg_catalog.+) 1;
            ELSE
                quoted := NOT quoted;
            END IF;
            written := true;
        ELSIF NOT quoted AND ch[i] OPERATOR(pg_catalog.=) ',' THEN
            fields := fields OPERATOR(pg_catalog.||) CASE WHEN written OR field OPERATOR(pg_catalog.<>) '' THEN field END;
            field := '';
            written := false;
        ELSIF NOT quoted AND ch[i] OPERATOR(pg_catalog.=) ')' THEN
            malformed := true;
        ELSE
            field := field OPERATOR(pg_catalog.||) ch[i];
        END IF;
        i := i OPERATOR(pg_catalog.+) 1;
    END LOOP;
    fields := fields OPERATOR(pg_catalog.||) CASE WHEN written OR field OPERATOR(pg_catalog.<>) '' THEN field END;
    IF malformed OR quoted OR pg_catalog.cardinality(fields) OPERATOR(pg_catalog.<>) p_n THEN
        RETURN NULL;
    END IF;
    RETURN fields;
END
$$;

CREATE FUNCTION retention.record_fields(p_text text, p_n integer) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    fields text[] := retention.record_fields_or_null(p_text, p_n);
BEGIN
    IF fields IS NULL THEN
        RAISE EXCEPTION 'malformed record literal: "%"', p_text USING ERRCODE = 'invalid_text_representation',
            DETAIL = pg_catalog.format('A key of %s columns is written (a,b) as ROW(a, b)::text writes it.', p_n);
    END IF;
    RETURN fields;
END
$$;

-- Of VALS, the fields of those that are rows of the types P_TYPES (as
-- format_type writes them), each field valid input for its type: what a
-- composite key's held or quarantined keys name. Like cast_valid, what is
-- not of the types names no record and is dropped, rather than failing the
-- statement that asked. Each column's fields are cast at once; only when a
-- cast fails is each value tried on its own. No values (NULL): no rows, and
-- nothing run.
CREATE FUNCTION retention.record_fields_valid(vals text[], p_types text[]) RETURNS SETOF text[]
    LANGUAGE plpgsql STABLE STRICT
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    n integer := pg_catalog.cardinality(p_types);
    v text;
    fields text[];
    ignored text;
    one boolean;
    all_cast boolean := true;
    -- The rows' fields, each row's as a JSON array; a malformed one dropped.
    parsed text[] := ARRAY(SELECT pg_catalog.array_to_json(f)::text
                             FROM pg_catalog.unnest(vals) u(v), retention.record_fields_or_null(u.v, n) f
                            WHERE f IS NOT NULL);
BEGIN
    FOR i IN 1 .. n LOOP
        BEGIN
            EXECUTE pg_catalog.format('SELECT pg_catalog.count(*)::text FROM pg_catalog.unnest($1) p(j)'
                                      ' WHERE ((p.j::pg_catalog.json OPERATOR(pg_catalog.->>) %s)::%s) IS NULL', i OPERATOR(pg_catalog.-) 1, p_types[i])
                INTO ignored USING parsed;
        EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
            all_cast := false;
        END;
    END LOOP;
    FOREACH v IN ARRAY parsed LOOP
        fields := ARRAY(SELECT e FROM pg_catalog.json_array_elements_text(v::pg_catalog.json) e);
        one := all_cast;
        IF NOT one THEN
            BEGIN
                FOR i IN 1 .. n LOOP
                    EXECUTE pg_catalog.format('SELECT $1::%s::text', p_types[i]) INTO ignored USING fields[i];
                END LOOP;
                one := true;
            EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
                NULL;
            END;
        END IF;
        IF one THEN
            RETURN NEXT fields;
        END IF;
    END LOOP;
END
$$;

-- ---- holds name the key they were placed under ----
--
-- A hold names a record by its policy's key: when that key changes (a
-- column renamed, a key made composite), the hold's text names no record,
-- or another, under the new one, and the policy's siblings on the table
-- read it with the new key. Each hold keeps the key it was placed under
-- (key_of, as retention.quarantine does); the statements read a hold only
-- under that key, and one placed under another protects every record of
-- the table until it is released or the key is what it was.
ALTER TABLE retention.holds ADD COLUMN key_of text;

-- The key of rule P_RULE (a rule version's text), as the statements spell
-- key_of: its table, a dot, its quoted key column or its key columns in
-- parentheses.
CREATE FUNCTION retention.key_of_rule(p_rule text) RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT (p_rule::jsonb OPERATOR(pg_catalog.->>) 'table') OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||)
           CASE pg_catalog.jsonb_typeof(p_rule::jsonb OPERATOR(pg_catalog.->) 'key')
           WHEN 'string' THEN pg_catalog.quote_ident(p_rule::jsonb OPERATOR(pg_catalog.->>) 'key')
           ELSE '(' OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(k.name), ', ' ORDER BY k.ord)
                      FROM pg_catalog.jsonb_array_elements_text(p_rule::jsonb OPERATOR(pg_catalog.->) 'key')
                           WITH ORDINALITY k(name, ord)) OPERATOR(pg_catalog.||) ')' END
$$;

-- The key of P_POLICY's version in force, else of its version recorded
-- last; NULL before any was recorded (rule_seen fills such holds' key_of
-- with the first version's).
CREATE FUNCTION retention.key_of_policy(p_policy text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT retention.key_of_rule(v.rule) FROM retention.rule_versions v
     WHERE v.policy OPERATOR(pg_catalog.=) p_policy
     ORDER BY v.enforced_at IS NULL, v.enforced_at DESC, v.id DESC LIMIT 1
$$;

UPDATE retention.holds h SET key_of = retention.key_of_policy(h.policy)
 WHERE h.record_key IS NOT NULL AND h.released_at IS NULL;

-- P_KEY_OF: the key P_RECORD_KEY is of, as the policy's statements spell
-- it (retentionctl passes its configuration's); the five-argument form
-- takes retention.key_of_policy's.
CREATE FUNCTION retention.place_hold(p_policy text, p_record_key text, p_subject text,
                                     p_reason text, p_until timestamptz, p_key_of text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    hold_id bigint;
BEGIN
    PERFORM retention.lock_policy(p_policy);
    INSERT INTO retention.holds (policy, record_key, subject, reason, until, placed_by, key_of)
    VALUES (p_policy, p_record_key, p_subject, p_reason, p_until, session_user,
            CASE WHEN p_record_key IS NOT NULL THEN p_key_of END)
    RETURNING id INTO hold_id;
    RETURN hold_id;
END
$$;

CREATE OR REPLACE FUNCTION retention.place_hold(p_policy text, p_record_key text, p_subject text,
                                                p_reason text, p_until timestamptz)
    RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT retention.place_hold(p_policy, p_record_key, p_subject, p_reason, p_until,
                                retention.key_of_policy(p_policy))
$$;

REVOKE ALL ON FUNCTION retention.place_hold(text, text, text, text, timestamptz, text) FROM PUBLIC;
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee::regrole AS grantee
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
              WHERE p.oid = 'retention.place_hold(text, text, text, text, timestamptz)'::regprocedure
                AND a.grantee <> p.proowner AND a.grantee <> 0 AND a.privilege_type = 'EXECUTE'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION retention.place_hold(text, text, text, text,'
                                  ' timestamptz, text) TO %s', g.grantee);
    END LOOP;
END
$$;

INSERT INTO retention.schema_version (version) VALUES (9);
