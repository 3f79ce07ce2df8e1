-- retention schema, version 5 -> 6. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- Data subjects' requests (erasure, restriction, access): each is recorded
-- with the identities it names and its deadline, the daemon carries an
-- erasure out through the same batches as a scheduled purge and records
-- what each policy did, and a closed request keeps its identities only as
-- the audit trail's pseudonyms. People file and close requests through the
-- functions below, never by writing the tables.
CREATE TABLE retention.requests (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('erasure', 'restriction', 'access')),
    received_at     timestamptz NOT NULL,
    deadline_at     timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'rejected', 'lifted')),
    completed_at    timestamptz,
    placed_by       text NOT NULL,
    note            text,
    extension_reason text,
    close_reason    text,
    -- The identities were replaced by pseudonyms when it closed (false: kept in clear, no audit key).
    pseudonymized   boolean NOT NULL DEFAULT false,
    CHECK ((status = 'open') = (completed_at IS NULL)),
    CHECK (deadline_at >= received_at)
);
CREATE INDEX requests_open ON retention.requests (kind) WHERE status = 'open';

-- What a request names: one row per identity, as typed (the daemon compares
-- it in each policy's subject column type), or its pseudonym once closed.
CREATE TABLE retention.request_identities (
    request_id bigint NOT NULL REFERENCES retention.requests ON DELETE CASCADE,
    ord        integer NOT NULL,
    identity   text NOT NULL CHECK (identity <> ''),
    value      text NOT NULL,
    PRIMARY KEY (request_id, ord)
);

-- What each matching policy did for an erasure request: records purged,
-- records kept and why, and whether nothing erasable of the subject is left.
CREATE TABLE retention.request_results (
    request_id bigint NOT NULL REFERENCES retention.requests ON DELETE CASCADE,
    policy     text NOT NULL,
    purged     bigint NOT NULL DEFAULT 0 CHECK (purged >= 0),
    kept       bigint NOT NULL DEFAULT 0 CHECK (kept >= 0),
    reason     text,
    finished   boolean NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (request_id, policy)
);

REVOKE ALL ON retention.requests, retention.request_identities, retention.request_results FROM PUBLIC;

-- A record erased on request may have no clock yet (an account not
-- deleted): its audit row says so with NULL clock_at and due_at.
ALTER TABLE retention.audit_log
    ALTER COLUMN clock_at DROP NOT NULL,
    ALTER COLUMN due_at DROP NOT NULL,
    ADD CHECK (cause = 'request' OR (clock_at IS NOT NULL AND due_at IS NOT NULL));

-- Records a request. IDENTITIES and VALUES are parallel. The deadline is one
-- calendar month after RECEIVED_AT in the session's time zone (retentionctl
-- sets database.time_zone): 31 January gives the end of February. Wakes
-- the daemon for an erasure.
CREATE FUNCTION retention.file_request(p_kind text, p_identities text[], p_values text[],
                                       p_received_at timestamptz, p_note text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    request_id bigint;
BEGIN
    IF pg_catalog.cardinality(p_identities) IS DISTINCT FROM pg_catalog.cardinality(p_values)
       OR pg_catalog.cardinality(p_identities) = 0 THEN
        RAISE EXCEPTION 'a request names one or more identities, each with a value';
    END IF;
    IF p_received_at IS NULL OR NOT pg_catalog.isfinite(p_received_at)
       OR p_received_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() THEN
        RAISE EXCEPTION 'a request is received at a finite time, not later than now: not %', p_received_at;
    END IF;
    INSERT INTO retention.requests (kind, received_at, deadline_at, placed_by, note)
    VALUES (p_kind, p_received_at, p_received_at OPERATOR(pg_catalog.+) '1 month'::pg_catalog.interval,
            session_user, p_note)
    RETURNING id INTO request_id;
    INSERT INTO retention.request_identities (request_id, ord, identity, value)
    SELECT request_id, i.ord, i.identity, i.value
      FROM ROWS FROM (pg_catalog.unnest(p_identities), pg_catalog.unnest(p_values)) WITH ORDINALITY i(identity, value, ord);
    -- An erasure to carry out; any other kind for its identities to be pseudonymized once closed.
    PERFORM pg_catalog.pg_notify('retentiond', 'request:' OPERATOR(pg_catalog.||) request_id);
    RETURN request_id;
END
$$;

-- Art. 12(3): the deadline moves to P_UNTIL, at most two months after the
-- first one, with the reason the subject is told.
CREATE FUNCTION retention.extend_request(p_id bigint, p_until timestamptz, p_reason text) RETURNS timestamptz
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    r retention.requests;
BEGIN
    SELECT * INTO r FROM retention.requests WHERE id OPERATOR(pg_catalog.=) p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no request %', p_id;
    ELSIF r.status OPERATOR(pg_catalog.<>) 'open' THEN
        RAISE EXCEPTION 'request % is %, not open', p_id, r.status;
    ELSIF p_reason IS NULL OR p_reason OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'an extension needs the reason the subject is told';
    ELSIF p_until OPERATOR(pg_catalog.<=) r.deadline_at THEN
        RAISE EXCEPTION 'request %''s deadline is already %', p_id, r.deadline_at;
    ELSIF p_until OPERATOR(pg_catalog.>) (r.received_at OPERATOR(pg_catalog.+) '3 months'::pg_catalog.interval) THEN
        RAISE EXCEPTION 'a deadline is at most three months after receipt (one month, extended by two at most): % at the latest',
            r.received_at OPERATOR(pg_catalog.+) '3 months'::pg_catalog.interval;
    END IF;
    UPDATE retention.requests SET deadline_at = p_until, extension_reason = p_reason
     WHERE id OPERATOR(pg_catalog.=) p_id;
    RETURN p_until;
END
$$;

-- Closes an open request as P_STATUS; the daemon is told (it replaces the
-- identities by their pseudonyms: the key never reaches the server, nor
-- the people closing requests). Called by the functions below only.
CREATE FUNCTION retention.close_request(p_id bigint, p_status text, p_reason text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    UPDATE retention.requests SET status = p_status, completed_at = pg_catalog.now(), close_reason = p_reason
     WHERE id OPERATOR(pg_catalog.=) p_id AND status OPERATOR(pg_catalog.=) 'open';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_catalog.pg_notify('retentiond', 'request:' OPERATOR(pg_catalog.||) p_id);
    RETURN true;
END
$$;

-- A person closes a request without carrying it out, with the reason the
-- subject is told. False if it is not open. A batch of it in flight
-- commits; no batch of it starts after.
CREATE FUNCTION retention.reject_request(p_id bigint, p_reason text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF p_reason IS NULL OR p_reason OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'a rejection needs its reason';
    END IF;
    RETURN retention.close_request(p_id, 'rejected', p_reason);
END
$$;

-- The daemon closes an erasure request as done once each of P_POLICIES,
-- the policies of its configuration whose identity the request names, has
-- recorded that nothing erasable of the subject is left. NULL if it is
-- closed now, else why not.
CREATE FUNCTION retention.finish_erasure(p_id bigint, p_policies text[]) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    r retention.requests;
    unfinished text;
BEGIN
    SELECT * INTO r FROM retention.requests WHERE id OPERATOR(pg_catalog.=) p_id FOR UPDATE;
    IF NOT FOUND OR r.kind OPERATOR(pg_catalog.<>) 'erasure' THEN
        RETURN 'it is not an erasure request';
    ELSIF r.status OPERATOR(pg_catalog.<>) 'open' THEN
        RETURN 'it was closed meanwhile (' OPERATOR(pg_catalog.||) r.status OPERATOR(pg_catalog.||) ')';
    END IF;
    SELECT pg_catalog.string_agg(p.policy, ', ' ORDER BY p.policy) INTO unfinished
      FROM pg_catalog.unnest(p_policies) p(policy)
     WHERE NOT EXISTS (SELECT FROM retention.request_results s
                        WHERE s.request_id OPERATOR(pg_catalog.=) p_id AND s.policy OPERATOR(pg_catalog.=) p.policy
                          AND s.finished);
    IF unfinished IS NOT NULL OR coalesce(pg_catalog.cardinality(p_policies), 0) OPERATOR(pg_catalog.=) 0 THEN
        RETURN 'not finished in ' OPERATOR(pg_catalog.||) coalesce(unfinished, 'any policy');
    END IF;
    PERFORM retention.close_request(p_id, 'done', NULL);
    RETURN NULL;
END
$$;

-- The daemon replaces a closed request's identities, in order, by P_VALUES:
-- their pseudonyms. False if the request is open or already pseudonymized.
CREATE FUNCTION retention.pseudonymize_request(p_id bigint, p_values text[]) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    UPDATE retention.requests SET pseudonymized = true
     WHERE id OPERATOR(pg_catalog.=) p_id AND status OPERATOR(pg_catalog.<>) 'open' AND NOT pseudonymized;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF pg_catalog.cardinality(p_values) IS DISTINCT FROM
       (SELECT pg_catalog.count(*) FROM retention.request_identities WHERE request_id OPERATOR(pg_catalog.=) p_id)::integer THEN
        RAISE EXCEPTION 'request % names another number of identities', p_id;
    END IF;
    UPDATE retention.request_identities i SET value = v.value
      FROM pg_catalog.unnest(p_values) WITH ORDINALITY v(value, ord)
     WHERE i.request_id OPERATOR(pg_catalog.=) p_id AND i.ord OPERATOR(pg_catalog.=) v.ord;
    RETURN true;
END
$$;

-- The daemon's account of one policy's part in an erasure request: KEPT,
-- REASON and FINISHED as it now stands. The records purged are counted in
-- the audit trail, where they are written with the deletions: a pass cut
-- short (kill -9, a lost connection) is counted all the same. False if the
-- request is no longer open: its part stops there.
CREATE INDEX audit_log_request ON retention.audit_log (request_id, policy) WHERE request_id IS NOT NULL;

CREATE FUNCTION retention.request_progress(p_id bigint, p_policy text, p_kept bigint, p_reason text,
                                           p_finished boolean) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM 1 FROM retention.requests WHERE id OPERATOR(pg_catalog.=) p_id AND status OPERATOR(pg_catalog.=) 'open'
        FOR SHARE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO retention.request_results AS r (request_id, policy, purged, kept, reason, finished, updated_at)
    VALUES (p_id, p_policy,
            (SELECT pg_catalog.count(*) FROM retention.audit_log a
              WHERE a.request_id OPERATOR(pg_catalog.=) p_id AND a.policy OPERATOR(pg_catalog.=) p_policy),
            p_kept, p_reason, p_finished, pg_catalog.now())
    ON CONFLICT (request_id, policy) DO UPDATE
       SET purged = excluded.purged, kept = excluded.kept, reason = excluded.reason,
           finished = excluded.finished, updated_at = excluded.updated_at;
    RETURN true;
END
$$;

-- ---- restriction of processing (Art. 18) ----
--
-- A restriction is a subject hold on every policy whose identity it names,
-- placed as place_hold() places one (under the policy's lock, so a batch in
-- flight commits first and none after it takes the records), and tied to
-- its request: only lifting the request releases them.
ALTER TABLE retention.holds ADD COLUMN request_id bigint REFERENCES retention.requests;

-- Records a restriction request and places its holds: P_POLICIES and
-- P_SUBJECTS are parallel, each policy's subject as its column spells it
-- (retentionctl reads it so), in policy order (locks taken in one order
-- never deadlock).
CREATE FUNCTION retention.restrict_request(p_identities text[], p_values text[], p_policies text[],
                                           p_subjects text[], p_reason text, p_received_at timestamptz,
                                           p_note text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    request_id bigint;
    h record;
BEGIN
    IF p_reason IS NULL OR p_reason OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'a restriction needs its reason';
    END IF;
    IF pg_catalog.cardinality(p_policies) IS DISTINCT FROM pg_catalog.cardinality(p_subjects)
       OR pg_catalog.cardinality(p_policies) = 0 THEN
        RAISE EXCEPTION 'a restriction holds records of one or more policies';
    END IF;
    request_id := retention.file_request('restriction', p_identities, p_values, p_received_at, p_note);
    FOR h IN SELECT x.policy, x.subject
               FROM ROWS FROM (pg_catalog.unnest(p_policies), pg_catalog.unnest(p_subjects)) x(policy, subject)
              ORDER BY x.policy, x.subject
    LOOP
        PERFORM retention.lock_policy(h.policy);
        INSERT INTO retention.holds (policy, subject, reason, until, placed_by, request_id)
        VALUES (h.policy, h.subject, p_reason, NULL, session_user, request_id);
    END LOOP;
    RETURN request_id;
END
$$;

-- Ends a restriction: its holds are released (the daemon is told, as by
-- release_hold) and the request closes as lifted. False if it is not an
-- open restriction.
CREATE FUNCTION retention.lift_restriction(p_id bigint, p_reason text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p text;
BEGIN
    IF p_reason IS NULL OR p_reason OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'lifting a restriction needs its reason';
    END IF;
    PERFORM 1 FROM retention.requests WHERE id OPERATOR(pg_catalog.=) p_id
        AND kind OPERATOR(pg_catalog.=) 'restriction' AND status OPERATOR(pg_catalog.=) 'open' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR p IN UPDATE retention.holds
                SET released_at = pg_catalog.now(), released_by = session_user, release_reason = p_reason
              WHERE request_id OPERATOR(pg_catalog.=) p_id AND released_at IS NULL
          RETURNING policy
    LOOP
        PERFORM pg_catalog.pg_notify('retentiond', 'policy:' OPERATOR(pg_catalog.||) p);
    END LOOP;
    RETURN retention.close_request(p_id, 'lifted', p_reason);
END
$$;

-- A restriction's holds go with the restriction: release_hold() refuses them.
CREATE OR REPLACE FUNCTION retention.release_hold(p_id bigint, p_reason text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    released_policy text;
    restriction bigint;
BEGIN
    SELECT request_id INTO restriction FROM retention.holds WHERE id OPERATOR(pg_catalog.=) p_id;
    IF restriction IS NOT NULL THEN
        RAISE EXCEPTION 'hold % belongs to restriction request %: lift the request instead', p_id, restriction;
    END IF;
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

-- Whether an open restriction names IDENTITY with VALUE, for services that
-- must stop processing: VALUE as it was filed, or as the subject column of
-- a policy it holds writes it (its holds keep that form: 04711 filed is
-- 4711 in an integer column). Compared as text. Grant it to the services'
-- roles.
CREATE FUNCTION retention.is_restricted(p_identity text, p_value text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT EXISTS (SELECT FROM retention.requests r JOIN retention.request_identities i
                       ON i.request_id OPERATOR(pg_catalog.=) r.id
                    WHERE r.kind OPERATOR(pg_catalog.=) 'restriction' AND r.status OPERATOR(pg_catalog.=) 'open'
                      AND i.identity OPERATOR(pg_catalog.=) p_identity
                      AND (i.value OPERATOR(pg_catalog.=) p_value
                           OR EXISTS (SELECT FROM retention.holds h
                                       WHERE h.request_id OPERATOR(pg_catalog.=) r.id AND h.released_at IS NULL
                                         AND h.subject OPERATOR(pg_catalog.=) p_value)))
$$;

-- ---- access (Art. 15) ----
--
-- An access request is answered at once (retentionctl prints the report)
-- and recorded as done; the daemon then pseudonymizes its identities.
CREATE FUNCTION retention.record_access(p_identities text[], p_values text[], p_received_at timestamptz,
                                        p_note text)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    request_id bigint;
BEGIN
    request_id := retention.file_request('access', p_identities, p_values, p_received_at, p_note);
    PERFORM retention.close_request(request_id, 'done', NULL);
    RETURN request_id;
END
$$;

REVOKE ALL ON FUNCTION retention.record_access(text[], text[], timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.restrict_request(text[], text[], text[], text[], text, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.lift_restriction(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.is_restricted(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.file_request(text, text[], text[], timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.extend_request(bigint, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.close_request(bigint, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.reject_request(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.finish_erasure(bigint, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.pseudonymize_request(bigint, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention.request_progress(bigint, text, bigint, text, boolean) FROM PUBLIC;

INSERT INTO retention.schema_version (version) VALUES (6);
