-- Demo data model: one schema per service of the retention schedule
-- (rows 1-11 and 6b of its retention schedule), holding what the
-- privacy policy says each service holds. etc/retentiond.conf names these
-- tables; sql/demo/generate.sql fills them.
--
-- Needs the retention schema (run `retentionctl migrate` first) because every
-- table a policy covers gets the trigger that wakes the daemon when a clock
-- starts or moves:
--   CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF <clock> ON <table>
--     FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
--
-- Conventions of every table a policy covers:
--   id          bigint primary key: the policy's `key`, the record_key of holds
--               and audit rows;
--   the clock   timestamptz, NULL while the clock has not started (an active
--               account, a scan still running, ...), with an index on it
--               (partial: rows with no clock are never due);
--   the subject the data subject, where there is one, for holds by subject.
-- Data that hangs off a covered record (devices, comments, messages, ...) is
-- removed with it by ON DELETE CASCADE, so one audit row stands for the record
-- and everything that belonged to it.
--
-- Re-runnable: drops the demo schemas (and their data) first.
--   psql -v ON_ERROR_STOP=1 -d app -f sql/demo/schema.sql
-- Optional: -v daemon_role=NAME (default retentiond). If that role exists it is
-- granted what the daemon needs on the covered tables: USAGE on the schema,
-- SELECT and DELETE (with UPDATE of the key column, for row locks), and
-- UPDATE where the policy anonymises.

\set ON_ERROR_STOP on
\if :{?daemon_role}
\else
\set daemon_role retentiond
\endif

BEGIN;

SET LOCAL client_min_messages = warning;
DROP SCHEMA IF EXISTS my_kaspersky, motorsport, endpoint_cloud, office365, virusdesk,
    company_account, partner_portal, gsi_parser, web_chat, web_forms, site_stats CASCADE;

-- ---------------------------------------------------------------------------
-- 1. My Kaspersky (also Small Office Security management console, Business
--    Hub, Anti-Theft web management). Deleted within 1 calendar month of the
--    account's deletion. deleted_at is set when the user deletes the account;
--    the rows stay (hidden from the service) until the policy purges them.
-- ---------------------------------------------------------------------------
CREATE SCHEMA my_kaspersky;

CREATE TABLE my_kaspersky.accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL,
    password_hash text NOT NULL,
    mobile_phone  text,
    locale        text NOT NULL DEFAULT 'en',
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz  -- clock: account deletion; NULL while active
);
CREATE UNIQUE INDEX accounts_active_email ON my_kaspersky.accounts (lower(email))
    WHERE deleted_at IS NULL;
CREATE INDEX accounts_deleted_at ON my_kaspersky.accounts (deleted_at)
    WHERE deleted_at IS NOT NULL;

CREATE TABLE my_kaspersky.devices (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES my_kaspersky.accounts ON DELETE CASCADE,
    device_name  text NOT NULL,
    platform     text NOT NULL,
    anti_theft   boolean NOT NULL DEFAULT false,
    last_seen_at timestamptz
);
CREATE INDEX devices_account ON my_kaspersky.devices (account_id);

CREATE TABLE my_kaspersky.licences (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES my_kaspersky.accounts ON DELETE CASCADE,
    product         text NOT NULL,
    activation_code text NOT NULL,
    ends_at         timestamptz NOT NULL
);
CREATE INDEX licences_account ON my_kaspersky.licences (account_id);

CREATE TABLE my_kaspersky.support_tickets (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES my_kaspersky.accounts ON DELETE CASCADE,
    topic      text NOT NULL,
    body       text NOT NULL,
    opened_at  timestamptz NOT NULL,
    closed_at  timestamptz
);
CREATE INDEX support_tickets_account ON my_kaspersky.support_tickets (account_id);

-- Only what the policy names: the card's expiry and its last four digits.
CREATE TABLE my_kaspersky.payment_cards (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES my_kaspersky.accounts ON DELETE CASCADE,
    last4       char(4) NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    expiry      date NOT NULL
);
CREATE INDEX payment_cards_account ON my_kaspersky.payment_cards (account_id);

CREATE TABLE my_kaspersky.browsing_stats (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES my_kaspersky.accounts ON DELETE CASCADE,
    page       text NOT NULL,
    visited_at timestamptz NOT NULL
);
CREATE INDEX browsing_stats_account ON my_kaspersky.browsing_stats (account_id);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF deleted_at ON my_kaspersky.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 2. Motorsport website. Deleted within 24 hours of the account's deletion.
--    Unsubscribing from the newsletter (newsletter_opt_in) keeps the account.
-- ---------------------------------------------------------------------------
CREATE SCHEMA motorsport;

CREATE TABLE motorsport.users (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name         text NOT NULL,
    email             text NOT NULL,
    password_hash     text NOT NULL,
    settings          jsonb NOT NULL DEFAULT '{}',
    newsletter_opt_in boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz  -- clock: account deletion; NULL while active
);
CREATE UNIQUE INDEX users_active_user_name ON motorsport.users (lower(user_name))
    WHERE deleted_at IS NULL;
CREATE INDEX users_deleted_at ON motorsport.users (deleted_at) WHERE deleted_at IS NOT NULL;

-- "comments to other users": gone with their author; a comment addressed to a
-- deleted user loses only the address.
CREATE TABLE motorsport.comments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_id  bigint NOT NULL REFERENCES motorsport.users ON DELETE CASCADE,
    to_user_id bigint REFERENCES motorsport.users ON DELETE SET NULL,
    body       text NOT NULL,
    posted_at  timestamptz NOT NULL
);
CREATE INDEX comments_author ON motorsport.comments (author_id);
CREATE INDEX comments_to_user ON motorsport.comments (to_user_id);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF deleted_at ON motorsport.users
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 3. Endpoint Security Cloud. Deleted 6 months after the licence's end date.
--    licence_ends_at is the end of the account's current licence: a renewal
--    moves it (UPDATE OF fires the trigger, so the daemon re-plans); NULL
--    while no licence has been activated.
-- ---------------------------------------------------------------------------
CREATE SCHEMA endpoint_cloud;

CREATE TABLE endpoint_cloud.accounts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_email     text NOT NULL,
    password_hash   text NOT NULL,
    company_name    text NOT NULL,
    settings        jsonb NOT NULL DEFAULT '{}',
    licence_number  text,
    licence_ends_at timestamptz,  -- clock: licence end date
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_licence_ends_at ON endpoint_cloud.accounts (licence_ends_at)
    WHERE licence_ends_at IS NOT NULL;

-- "data collected from managed devices"
CREATE TABLE endpoint_cloud.managed_devices (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES endpoint_cloud.accounts ON DELETE CASCADE,
    host_name    text NOT NULL,
    os           text NOT NULL,
    owner_name   text,
    collected    jsonb NOT NULL DEFAULT '{}',
    last_seen_at timestamptz
);
CREATE INDEX managed_devices_account ON endpoint_cloud.managed_devices (account_id);

CREATE TABLE endpoint_cloud.support_requests (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES endpoint_cloud.accounts ON DELETE CASCADE,
    body       text NOT NULL,
    opened_at  timestamptz NOT NULL
);
CREATE INDEX support_requests_account ON endpoint_cloud.support_requests (account_id);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF licence_ends_at ON endpoint_cloud.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 4. Security for Microsoft Office 365. Deleted 6 months after the licence's
--    end date. Scanned mail is never stored, so there is no table for it.
-- ---------------------------------------------------------------------------
CREATE SCHEMA office365;

CREATE TABLE office365.tenants (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_email     text NOT NULL,
    password_hash   text NOT NULL,
    company_name    text NOT NULL,
    settings        jsonb NOT NULL DEFAULT '{}',
    licence_ends_at timestamptz,  -- clock: licence end date; NULL before activation
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_licence_ends_at ON office365.tenants (licence_ends_at)
    WHERE licence_ends_at IS NOT NULL;

CREATE TABLE office365.support_requests (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL REFERENCES office365.tenants ON DELETE CASCADE,
    body      text NOT NULL,
    opened_at timestamptz NOT NULL
);
CREATE INDEX support_requests_tenant ON office365.support_requests (tenant_id);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF licence_ends_at ON office365.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 5. VirusDesk (online scan). Uploaded files are deleted 15 minutes after the
--    scan completes, except files submitted for vulnerability monitoring,
--    which may be kept permanently (purpose = 'vulnerability_monitoring').
--    Submitted URLs follow the same 15 minutes. scan_completed_at is NULL
--    while the scan runs. The e-mail (where the result goes) is optional.
-- ---------------------------------------------------------------------------
CREATE SCHEMA virusdesk;

CREATE TABLE virusdesk.uploads (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             text,
    file_name         text NOT NULL,
    content           bytea NOT NULL CHECK (octet_length(content) <= 50 * 1024 * 1024),
    size_bytes        integer GENERATED ALWAYS AS (octet_length(content)) STORED,
    sha256            bytea GENERATED ALWAYS AS (sha256(content)) STORED,
    purpose           text NOT NULL DEFAULT 'online_scan'
                      CHECK (purpose IN ('online_scan', 'vulnerability_monitoring')),
    uploaded_at       timestamptz NOT NULL DEFAULT now(),
    scan_completed_at timestamptz,  -- clock: scan completion; NULL while scanning
    verdict           text CHECK (verdict IN ('clean', 'infected', 'suspicious'))
);
-- The index leaves out the exempt rows: they are overdue forever and pile up,
-- and the daemon's next-due query (ORDER BY scan_completed_at LIMIT 1) would
-- otherwise walk past every one of them. The predicate is written as the
-- daemon's exemption test with the configured value, so the planner matches
-- it: the daemon sends its queries unnamed (PQsendQueryParams), each planned
-- with the actual exempt values. Keep it in step with the policy's
-- exempt.values in etc/retentiond.conf.
CREATE INDEX uploads_scan_completed_at ON virusdesk.uploads (scan_completed_at)
    WHERE scan_completed_at IS NOT NULL
      AND (purpose IS NULL OR purpose <> ALL ('{vulnerability_monitoring}'::text[]));

CREATE TABLE virusdesk.url_scans (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             text,
    url               text NOT NULL,
    submitted_at      timestamptz NOT NULL DEFAULT now(),
    scan_completed_at timestamptz,  -- clock: scan completion; NULL while scanning
    verdict           text CHECK (verdict IN ('clean', 'malicious', 'phishing', 'suspicious'))
);
CREATE INDEX url_scans_scan_completed_at ON virusdesk.url_scans (scan_completed_at)
    WHERE scan_completed_at IS NOT NULL;

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF scan_completed_at ON virusdesk.uploads
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF scan_completed_at ON virusdesk.url_scans
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 6. Company Account. Deleted within 24 hours of the account's deletion.
--    Blocking (blocked_at) is not deletion and starts no clock; employees'
--    personal accounts live in My Kaspersky and are not touched either way
--    (employees only links them).
-- 6b. Files attached to support requests may be deleted 6 months after the
--    request is closed. The clock is request_closed_at, a copy of the
--    request's closed_at kept by triggers so that the policy's clock is a
--    column of the policy's table. Rule 6 covers the files too: a second
--    policy deletes them 24 hours after the account's deletion, on
--    account_deleted_at (also kept by triggers). The account itself is kept
--    until its files have gone by those policies (audited, holds respected);
--    retentiond never lets them go with it by cascade.
-- ---------------------------------------------------------------------------
CREATE SCHEMA company_account;

CREATE TABLE company_account.accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_email   text NOT NULL,  -- corporate e-mail of the account's administrator
    password_hash text NOT NULL,
    company_name  text NOT NULL,
    country       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    blocked_at    timestamptz,
    deleted_at    timestamptz  -- clock: account deletion; NULL while it exists
);
CREATE INDEX accounts_deleted_at ON company_account.accounts (deleted_at)
    WHERE deleted_at IS NOT NULL;

CREATE TABLE company_account.employees (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id             bigint NOT NULL REFERENCES company_account.accounts ON DELETE CASCADE,
    personal_account_email text NOT NULL,
    is_admin               boolean NOT NULL DEFAULT false
);
CREATE INDEX employees_account ON company_account.employees (account_id);

CREATE TABLE company_account.licences (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES company_account.accounts ON DELETE CASCADE,
    product         text NOT NULL,
    activation_code text NOT NULL,
    ends_at         timestamptz NOT NULL
);
CREATE INDEX licences_account ON company_account.licences (account_id);

CREATE TABLE company_account.support_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES company_account.accounts ON DELETE CASCADE,
    requester_email text NOT NULL,
    topic           text NOT NULL,
    body            text NOT NULL,
    opened_at       timestamptz NOT NULL,
    closed_at       timestamptz
);
CREATE INDEX support_requests_account ON company_account.support_requests (account_id);

CREATE TABLE company_account.support_files (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        bigint NOT NULL REFERENCES company_account.support_requests ON DELETE CASCADE,
    account_id        bigint NOT NULL,  -- subject: the company the file came from
    file_name         text NOT NULL,
    content           bytea NOT NULL,
    uploaded_at       timestamptz NOT NULL DEFAULT now(),
    request_closed_at timestamptz, -- clock: the request's closed_at; NULL while open
    account_deleted_at timestamptz -- clock: the account's deleted_at; NULL while it exists
);
CREATE INDEX support_files_request ON company_account.support_files (request_id);
CREATE INDEX support_files_request_closed_at ON company_account.support_files (request_closed_at)
    WHERE request_closed_at IS NOT NULL;
CREATE INDEX support_files_account_deleted_at ON company_account.support_files (account_deleted_at)
    WHERE account_deleted_at IS NOT NULL;

CREATE FUNCTION company_account.support_file_defaults() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    SELECT r.account_id, r.closed_at, a.deleted_at
      INTO NEW.account_id, NEW.request_closed_at, NEW.account_deleted_at
      FROM company_account.support_requests r
      JOIN company_account.accounts a ON a.id = r.account_id
     WHERE r.id = NEW.request_id;
    RETURN NEW;
END
$$;

CREATE FUNCTION company_account.support_request_closed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE company_account.support_files
       SET request_closed_at = NEW.closed_at
     WHERE request_id = NEW.id
       AND request_closed_at IS DISTINCT FROM NEW.closed_at;
    RETURN NULL;
END
$$;

CREATE FUNCTION company_account.account_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE company_account.support_files
       SET account_deleted_at = NEW.deleted_at
     WHERE account_id = NEW.id
       AND account_deleted_at IS DISTINCT FROM NEW.deleted_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER account_deleted AFTER UPDATE OF deleted_at
    ON company_account.accounts
    FOR EACH ROW EXECUTE FUNCTION company_account.account_deleted();
CREATE TRIGGER support_file_defaults BEFORE INSERT OR UPDATE OF request_id
    ON company_account.support_files
    FOR EACH ROW EXECUTE FUNCTION company_account.support_file_defaults();
CREATE TRIGGER support_request_closed AFTER UPDATE OF closed_at
    ON company_account.support_requests
    FOR EACH ROW EXECUTE FUNCTION company_account.support_request_closed();

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF deleted_at ON company_account.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF request_closed_at, account_deleted_at
    ON company_account.support_files
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 7. Partner Portal. Kept while the service is used, deleted after the data
--    subject's first request. erasure_requested_at records that request once
--    the support desk has verified the requester's identity; NULL otherwise.
-- ---------------------------------------------------------------------------
CREATE SCHEMA partner_portal;

CREATE TABLE partner_portal.partners (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email                text NOT NULL,
    password_hash        text NOT NULL,
    full_name            text NOT NULL,
    postal_address       text NOT NULL,
    phone                text,
    company_name         text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    erasure_requested_at timestamptz  -- clock: the subject's (verified) request
);
CREATE INDEX partners_erasure_requested_at ON partner_portal.partners (erasure_requested_at)
    WHERE erasure_requested_at IS NOT NULL;

CREATE TABLE partner_portal.support_requests (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id bigint NOT NULL REFERENCES partner_portal.partners ON DELETE CASCADE,
    body       text NOT NULL,
    opened_at  timestamptz NOT NULL
);
CREATE INDEX support_requests_partner ON partner_portal.support_requests (partner_id);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF erasure_requested_at
    ON partner_portal.partners
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 8. GSI Parser. Uploaded reports are kept at most 90 days, then deleted
--    beyond recovery. The account (e-mail, password) is the user's to delete.
-- ---------------------------------------------------------------------------
CREATE SCHEMA gsi_parser;

CREATE TABLE gsi_parser.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL UNIQUE,  -- the user name
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A GSI report: OS and service pack, kernel objects, drivers, services,
-- browser add-ons, network connections, ... as uploaded.
CREATE TABLE gsi_parser.reports (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES gsi_parser.users ON DELETE CASCADE,
    file_name   text NOT NULL,
    content     bytea NOT NULL,
    os_version  text NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now()  -- clock: upload
);
CREATE INDEX reports_user ON gsi_parser.reports (user_id);
CREATE INDEX reports_uploaded_at ON gsi_parser.reports (uploaded_at);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF uploaded_at ON gsi_parser.reports
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 9. Live Web Chat. The chat history, its files included, is deleted 90 days
--    after collection or the support request. The clock is the session's
--    start (the request); messages and their files go with the session, so
--    nothing of it is kept longer than 90 days after the request.
-- ---------------------------------------------------------------------------
CREATE SCHEMA web_chat;

CREATE TABLE web_chat.sessions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text,
    ip_address      inet NOT NULL,
    activation_code text,
    licence_number  text,
    started_at      timestamptz NOT NULL DEFAULT now(),  -- clock: the support request
    ended_at        timestamptz
);
CREATE INDEX sessions_started_at ON web_chat.sessions (started_at);

CREATE TABLE web_chat.messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bigint NOT NULL REFERENCES web_chat.sessions ON DELETE CASCADE,
    sender     text NOT NULL CHECK (sender IN ('customer', 'agent')),
    body       text NOT NULL,
    sent_at    timestamptz NOT NULL
);
CREATE INDEX messages_session ON web_chat.messages (session_id);

CREATE TABLE web_chat.attachments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES web_chat.messages ON DELETE CASCADE,
    file_name  text NOT NULL,
    content    bytea NOT NULL
);
CREATE INDEX attachments_message ON web_chat.attachments (message_id);

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF started_at ON web_chat.sessions
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 10. Other sites and forms: premium content, events, trials, newsletters,
--     contact and support forms, surveys.
--   - newsletter: on unsubscribe "your name and e-mail address are deleted";
--     the subscription row stays, without them (anonymised), for counts.
--   - trial: on unsubscribe the data is deleted promptly unless the product
--     was bought (outcome = 'purchased').
--   - everything else: kept while used, deleted after the subject's first
--     request (erasure_requested_at, as for the Partner Portal).
-- ---------------------------------------------------------------------------
CREATE SCHEMA web_forms;

CREATE TABLE web_forms.newsletter_subscriptions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text,  -- NULL once erased
    name            text,
    topics          text[] NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'subscribed'
                    CHECK (status IN ('subscribed', 'unsubscribed', 'erased')),
    subscribed_at   timestamptz NOT NULL DEFAULT now(),
    unsubscribed_at timestamptz  -- clock: unsubscribe; anonymising leaves it as it is
);
CREATE INDEX newsletter_subscriptions_unsubscribed_at
    ON web_forms.newsletter_subscriptions (unsubscribed_at) WHERE unsubscribed_at IS NOT NULL;

CREATE TABLE web_forms.trial_registrations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL,
    name            text NOT NULL,
    phone           text,
    product         text NOT NULL,
    activation_code text NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    trial_ends_at   timestamptz NOT NULL,
    outcome         text NOT NULL DEFAULT 'trial' CHECK (outcome IN ('trial', 'purchased')),
    unsubscribed_at timestamptz  -- clock: unsubscribe / withdrawn consent
);
CREATE INDEX trial_registrations_unsubscribed_at
    ON web_forms.trial_registrations (unsubscribed_at) WHERE unsubscribed_at IS NOT NULL;

CREATE TABLE web_forms.submissions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    form                 text NOT NULL
                         CHECK (form IN ('premium_content', 'event', 'contact', 'support', 'survey')),
    email                text NOT NULL,
    name                 text,
    phone                text,
    answers              jsonb NOT NULL DEFAULT '{}',
    submitted_at         timestamptz NOT NULL DEFAULT now(),
    erasure_requested_at timestamptz  -- clock: the subject's (verified) request
);
CREATE INDEX submissions_erasure_requested_at ON web_forms.submissions (erasure_requested_at)
    WHERE erasure_requested_at IS NOT NULL;

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF unsubscribed_at
    ON web_forms.newsletter_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF unsubscribed_at
    ON web_forms.trial_registrations
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF erasure_requested_at
    ON web_forms.submissions
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- 11. Site statistics (all sites). Stored under a random alphanumeric
--     pseudonym, never tied to an identity (so no subject column), deleted
--     promptly once the statistical evaluation is complete. The evaluation
--     job sets evaluated_at on the rows it has counted, after its results
--     are committed.
-- ---------------------------------------------------------------------------
CREATE SCHEMA site_stats;

CREATE TABLE site_stats.visits (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pseudonym     text NOT NULL CHECK (pseudonym ~ '^[A-Za-z0-9]{16,}$'),
    site          text NOT NULL,
    client_domain text,
    browser       text NOT NULL,
    page          text NOT NULL,
    visited_at    timestamptz NOT NULL,
    evaluated_at  timestamptz  -- clock: end of the statistical evaluation
);
CREATE INDEX visits_evaluated_at ON site_stats.visits (evaluated_at)
    WHERE evaluated_at IS NOT NULL;

CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF evaluated_at ON site_stats.visits
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();

-- ---------------------------------------------------------------------------
-- What the daemon's role may do here, if that role exists.
-- ---------------------------------------------------------------------------
SELECT format('GRANT USAGE ON SCHEMA %s TO %I', string_agg(DISTINCT quote_ident(s), ', '),
              :'daemon_role')
  FROM unnest(ARRAY['my_kaspersky', 'motorsport', 'endpoint_cloud', 'office365', 'virusdesk',
                    'company_account', 'partner_portal', 'gsi_parser', 'web_chat', 'web_forms',
                    'site_stats']) AS s
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'daemon_role')
HAVING count(*) > 0 \gexec
-- UPDATE on the key column only: the purge locks its batch with FOR UPDATE
-- SKIP LOCKED, which PostgreSQL allows only with UPDATE on some column.
SELECT format('GRANT SELECT, DELETE, UPDATE (id) ON %s TO %I', t, :'daemon_role')
  FROM unnest(ARRAY['my_kaspersky.accounts', 'motorsport.users', 'endpoint_cloud.accounts',
                    'office365.tenants', 'virusdesk.uploads', 'virusdesk.url_scans',
                    'company_account.accounts', 'company_account.support_files',
                    'partner_portal.partners', 'gsi_parser.reports', 'web_chat.sessions',
                    'web_forms.trial_registrations', 'web_forms.submissions',
                    'site_stats.visits']) AS t
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'daemon_role') \gexec
SELECT format('GRANT SELECT, UPDATE ON web_forms.newsletter_subscriptions TO %I', :'daemon_role')
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'daemon_role') \gexec
-- A company account is kept while its support requests hold files that a
-- policy governs: the purge reads the join columns to tell.
SELECT format('GRANT SELECT (id, account_id) ON company_account.support_requests TO %I', :'daemon_role')
 WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'daemon_role') \gexec

COMMIT;
