-- Fills the demo tables of sql/demo/schema.sql with fake rows, made up here
-- with generate_series and random() (no outside data; e-mail addresses are on
-- the reserved example.* domains, phone numbers in the fictional 555-01xx
-- range).
--
--   psql -X -v ON_ERROR_STOP=1 -d app -f sql/demo/generate.sql [-v rows=1000] ...
--
-- Variables (-v NAME=VALUE):
--   rows         1000  rows in each table a policy covers; other tables get a
--                      few rows per parent row
--   soon         6     rows per policy that fall due in the next minute
--   soon_min     15    ... the first of them this many seconds after the start
--   soon_max     75    ... the last one before this many seconds
--   overdue_pct  30    % of the other rows that are overdue already
--   null_pct     20    % of the other rows whose clock has not started (where
--                      the clock can be NULL), the rest fall due later
--   holds        2     legal holds placed on overdue records of each of the
--                      VirusDesk, Motorsport, Company Account and My Kaspersky
--                      policies (plus one hold by subject)
--   seed         0.42  for setseed(), in [-1, 1]: the same seed gives the same
--                      data (relative to the time the script runs)
--   time_zone    UTC   the zone of the month arithmetic; keep it equal to
--                      database.time_zone in retentiond.conf
--
-- A row "due in N seconds" has clock = now() - retain + N seconds, with the
-- retain of its policy in etc/retentiond.conf (copied below: keep them in
-- step). Month arithmetic clamps at the end of a month, so near a month's
-- 29th-31st a 1- or 6-month row meant to be due soon can be due a few days
-- earlier, that is overdue. now() is the start of this script's single
-- transaction, so the rows appear (and NOTIFY fires) all at once at COMMIT.
--
-- Running it again adds rows; run sql/demo/schema.sql first for a fresh set.

\set ON_ERROR_STOP on
\if :{?rows}
\else
\set rows 1000
\endif
\if :{?soon}
\else
\set soon 6
\endif
\if :{?soon_min}
\else
\set soon_min 15
\endif
\if :{?soon_max}
\else
\set soon_max 75
\endif
\if :{?overdue_pct}
\else
\set overdue_pct 30
\endif
\if :{?null_pct}
\else
\set null_pct 20
\endif
\if :{?holds}
\else
\set holds 2
\endif
\if :{?seed}
\else
\set seed 0.42
\endif
\if :{?time_zone}
\else
\set time_zone UTC
\endif

BEGIN;

SELECT set_config('TimeZone', :'time_zone', true), setseed(:'seed'::float8) \g /dev/null
SELECT set_config('demo.rows', (:'rows')::int::text, true),
       set_config('demo.soon', (:'soon')::int::text, true),
       set_config('demo.soon_min', (:'soon_min')::int::text, true),
       set_config('demo.soon_max', (:'soon_max')::int::text, true),
       set_config('demo.overdue_pct', (:'overdue_pct')::numeric::text, true),
       set_config('demo.null_pct', (:'null_pct')::numeric::text, true) \g /dev/null
DO $$
BEGIN
    IF current_setting('demo.soon')::int < 0
       OR current_setting('demo.soon_min')::int >= current_setting('demo.soon_max')::int
       OR current_setting('demo.rows')::int < 1 THEN
        RAISE EXCEPTION 'generate.sql: need rows >= 1, soon >= 0 and soon_min < soon_max';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- Helpers, in pg_temp: gone when this session ends.
-- ---------------------------------------------------------------------------

-- The clock of row I of N of a policy with the given retain:
--   rows 1 .. soon             due soon_min .. soon_max seconds from now,
--                              evenly spread (one slot each, random inside)
--   then overdue_pct %         overdue by up to one more retain period
--   then null_pct %            NULL (clock not started), if NULLABLE
--   the rest                   due later than soon_max + 30 seconds, within
--                              one retain period; with AHEAD, half of them
--                              have a clock up to AHEAD in the future (a
--                              licence that has not ended yet)
CREATE FUNCTION pg_temp.demo_clock(i bigint, n bigint, retain interval, nullable boolean,
                                   ahead interval DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE plpgsql VOLATILE
    AS $$
DECLARE
    n_soon   bigint := least(current_setting('demo.soon')::bigint, n);
    soon_min float8 := current_setting('demo.soon_min')::float8;
    soon_max float8 := current_setting('demo.soon_max')::float8;
    m        bigint := n - n_soon;
    j        bigint := i - n_soon;
    n_over   bigint := round(m * current_setting('demo.overdue_pct')::numeric / 100);
    n_null   bigint := CASE WHEN nullable
                            THEN round(m * current_setting('demo.null_pct')::numeric / 100)
                            ELSE 0 END;
    later    interval;
BEGIN
    IF i <= n_soon THEN
        RETURN now() - retain
               + make_interval(secs => soon_min + (soon_max - soon_min) * ((i - 1) + random()) / n_soon);
    ELSIF j <= n_over THEN
        RETURN now() - retain - random() * retain - interval '1 second';
    ELSIF j <= n_over + n_null THEN
        RETURN NULL;
    ELSIF ahead IS NOT NULL AND j % 2 = 0 THEN
        RETURN now() + random() * ahead;
    END IF;
    later := make_interval(secs => soon_max + 30);
    RETURN now() - retain + later + random() * greatest(retain - later, interval '0');
END
$$;

-- One of the array's elements, at random.
CREATE FUNCTION pg_temp.pick(a anyarray) RETURNS anyelement
    LANGUAGE sql VOLATILE
    AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;

-- A random string of LEN characters from [A-Za-z0-9].
CREATE FUNCTION pg_temp.alnum(len int) RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT string_agg(substr('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789',
                             1 + floor(random() * 62)::int, 1), '')
      FROM generate_series(1, len)
$$;

-- LEN pseudo-random bytes.
CREATE FUNCTION pg_temp.fake_bytes(len int) RETURNS bytea
    LANGUAGE sql VOLATILE
    AS $$
    SELECT substring(string_agg(decode(md5(random()::text || g), 'hex'), ''::bytea) FROM 1 FOR len)
      FROM generate_series(1, (len + 15) / 16) AS g
$$;

-- Something shaped like a bcrypt hash (never a real one).
CREATE FUNCTION pg_temp.fake_password_hash() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT '$2b$12$' || translate(substr(encode(pg_temp.fake_bytes(40), 'base64'), 1, 53), '+/', './')
$$;

CREATE FUNCTION pg_temp.first_name() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT pg_temp.pick(ARRAY['Aiko', 'Ben', 'Chiara', 'Daniel', 'Emma', 'Farid', 'Grace', 'Haruto',
                              'Ines', 'Jonas', 'Keiko', 'Liam', 'Maria', 'Noah', 'Olga', 'Pedro',
                              'Quentin', 'Rin', 'Sofia', 'Takumi', 'Ursula', 'Viktor', 'Wei',
                              'Yuki', 'Zoe'])
$$;

CREATE FUNCTION pg_temp.last_name() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT pg_temp.pick(ARRAY['Tanaka', 'Schmidt', 'Rossi', 'Garcia', 'Kowalski', 'Suzuki',
                              'Novak', 'Silva', 'Ivanova', 'Dubois', 'Yamamoto', 'Jensen',
                              'Okafor', 'Nakamura', 'Meyer', 'Lopez', 'Sato', 'Brown', 'Chen',
                              'Haddad'])
$$;

-- A fake e-mail address, unique through N.
CREATE FUNCTION pg_temp.email(first text, last text, n bigint) RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT lower(first || '.' || last || n::text) || '@'
           || pg_temp.pick(ARRAY['example.com', 'example.org', 'example.net', 'mail.example.com'])
$$;

CREATE FUNCTION pg_temp.phone() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT format('+1-%s-555-01%s', 200 + floor(random() * 700)::int,
                  lpad(floor(random() * 100)::int::text, 2, '0'))
$$;

CREATE FUNCTION pg_temp.activation_code() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT upper(pg_temp.alnum(5) || '-' || pg_temp.alnum(5) || '-' || pg_temp.alnum(5) || '-'
                 || pg_temp.alnum(5))
$$;

CREATE FUNCTION pg_temp.company() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT pg_temp.last_name() || ' '
           || pg_temp.pick(ARRAY['Logistics', 'Dental Clinic', 'Engineering', 'Bakery', 'Legal',
                                 'Trading', 'Architects', 'Software', 'Hotels', 'Printing'])
           || ' ' || pg_temp.pick(ARRAY['Ltd', 'GmbH', 'K.K.', 'S.r.l.', 'Inc.', 'B.V.'])
$$;

CREATE FUNCTION pg_temp.product() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT pg_temp.pick(ARRAY['Kaspersky Internet Security', 'Kaspersky Total Security',
                              'Kaspersky Security Cloud', 'Kaspersky Anti-Virus',
                              'Kaspersky Small Office Security', 'Kaspersky Safe Kids',
                              'Kaspersky Password Manager'])
$$;

CREATE FUNCTION pg_temp.support_text() RETURNS text
    LANGUAGE sql VOLATILE
    AS $$
    SELECT pg_temp.pick(ARRAY['The product does not start after the last Windows update.',
                              'Activation code is rejected as already in use.',
                              'A file from our accounting software is detected as a threat.',
                              'Scan stops at 37% and the computer freezes.',
                              'How do I move my licence to a new laptop?',
                              'The web console shows a device twice.',
                              'Update error: database is corrupted.',
                              'Please explain what this quarantine entry means.'])
$$;

-- The retain of each policy, as in etc/retentiond.conf.
CREATE TEMPORARY TABLE demo_retain (policy text PRIMARY KEY, retain interval NOT NULL);
INSERT INTO demo_retain VALUES
    ('my-kaspersky-accounts',    '1 month'),
    ('motorsport-accounts',      '24 hours'),
    ('endpoint-cloud-accounts',  '6 months'),
    ('office365-tenants',        '6 months'),
    ('virusdesk-file-uploads',   '15 minutes'),
    ('virusdesk-url-scans',      '15 minutes'),
    ('company-accounts',         '24 hours'),
    ('company-support-files',    '6 months'),
    ('company-files-of-deleted-accounts', '24 hours'),
    ('partner-portal-erasure',   '24 hours'),
    ('gsi-parser-reports',       '90 days'),
    ('web-chat-sessions',        '90 days'),
    ('web-forms-trials',         '1 hour'),
    ('web-forms-newsletter',     '1 hour'),
    ('web-forms-erasure',        '24 hours'),
    ('site-stats-visits',        '1 hour');

CREATE FUNCTION pg_temp.clock(policy text, i bigint, nullable boolean, ahead interval DEFAULT NULL)
    RETURNS timestamptz
    LANGUAGE sql VOLATILE
    AS $$
    SELECT pg_temp.demo_clock(i, current_setting('demo.rows')::bigint,
                              (SELECT retain FROM demo_retain r WHERE r.policy = clock.policy),
                              nullable, ahead)
$$;

-- ---------------------------------------------------------------------------
-- 1. My Kaspersky
-- ---------------------------------------------------------------------------
INSERT INTO my_kaspersky.accounts (email, password_hash, mobile_phone, locale, created_at, deleted_at)
SELECT pg_temp.email(f, l, b.base + g), pg_temp.fake_password_hash(),
       CASE WHEN g % 3 <> 0 THEN pg_temp.phone() END,
       pg_temp.pick(ARRAY['en', 'ja', 'de', 'fr', 'it', 'es']),
       least(c, now()) - interval '1 day' - random() * interval '4 years', c
  FROM (SELECT coalesce(max(id), 0) AS base FROM my_kaspersky.accounts) AS b,
       generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('my-kaspersky-accounts', g, true) AS c) AS x
 ORDER BY g;

INSERT INTO my_kaspersky.devices (account_id, device_name, platform, anti_theft, last_seen_at)
SELECT a.id, pg_temp.first_name() || '''s ' || pg_temp.pick(ARRAY['laptop', 'phone', 'tablet', 'PC']),
       pg_temp.pick(ARRAY['Windows 10', 'Windows 11', 'macOS 13', 'Android 13', 'iOS 16']),
       d = 2, a.created_at + random() * (coalesce(a.deleted_at, now()) - a.created_at)
  FROM my_kaspersky.accounts a, generate_series(1, 1 + a.id % 3) AS d;

INSERT INTO my_kaspersky.licences (account_id, product, activation_code, ends_at)
SELECT a.id, pg_temp.product(), pg_temp.activation_code(),
       a.created_at + interval '1 year' * (1 + a.id % 4)
  FROM my_kaspersky.accounts a;

INSERT INTO my_kaspersky.support_tickets (account_id, topic, body, opened_at, closed_at)
SELECT a.id, pg_temp.pick(ARRAY['Activation', 'Installation', 'Detection', 'Licence', 'Other']),
       pg_temp.support_text(), o, CASE WHEN a.id % 8 <> 3 THEN o + random() * interval '10 days' END
  FROM my_kaspersky.accounts a,
       LATERAL (SELECT a.created_at + random() * interval '300 days' AS o) AS x
 WHERE a.id % 4 = 1;

INSERT INTO my_kaspersky.payment_cards (account_id, last4, expiry)
SELECT a.id, lpad(floor(random() * 10000)::int::text, 4, '0'),
       (date_trunc('month', now()) + interval '1 month' * floor(random() * 48) - interval '1 day')::date
  FROM my_kaspersky.accounts a
 WHERE a.id % 2 = 0;

INSERT INTO my_kaspersky.browsing_stats (account_id, page, visited_at)
SELECT a.id, pg_temp.pick(ARRAY['/my/devices', '/my/licenses', '/my/downloads', '/my/support',
                                '/my/anti-theft', '/my/passwords']),
       a.created_at + random() * (coalesce(a.deleted_at, now()) - a.created_at)
  FROM my_kaspersky.accounts a, generate_series(1, 2 + a.id % 4) AS v;

-- ---------------------------------------------------------------------------
-- 2. Motorsport website
-- ---------------------------------------------------------------------------
INSERT INTO motorsport.users (user_name, email, password_hash, settings, newsletter_opt_in,
                              created_at, deleted_at)
SELECT lower(f) || '_' || pg_temp.pick(ARRAY['racer', 'pit', 'apex', 'grid', 'lap']) || (b.base + g),
       pg_temp.email(f, l, b.base + g), pg_temp.fake_password_hash(),
       jsonb_build_object('favourite_team', pg_temp.pick(ARRAY['Ferrari', 'Red Bull', 'Mercedes', 'McLaren']),
                          'show_email', g % 5 = 0, 'time_zone', pg_temp.pick(ARRAY['Europe/Rome', 'Asia/Tokyo', 'UTC'])),
       g % 3 = 0, least(c, now()) - interval '1 day' - random() * interval '3 years', c
  FROM (SELECT coalesce(max(id), 0) AS base FROM motorsport.users) AS b,
       generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('motorsport-accounts', g, true) AS c) AS x
 ORDER BY g;

CREATE TEMPORARY TABLE demo_motorsport_users AS
SELECT array_agg(id ORDER BY id) AS ids FROM motorsport.users;

INSERT INTO motorsport.comments (author_id, to_user_id, body, posted_at)
SELECT u.id, (SELECT ids[1 + (u.id * 7 + k) % cardinality(ids)] FROM demo_motorsport_users),
       pg_temp.pick(ARRAY['Great pit stop strategy today!', 'Did you see that overtake in turn 3?',
                          'Congrats on the fantasy league win.', 'See you at Suzuka next year?',
                          'That tyre call was a gamble.']),
       u.created_at + random() * (coalesce(u.deleted_at, now()) - u.created_at)
  FROM motorsport.users u, generate_series(1, u.id % 3) AS k;

-- ---------------------------------------------------------------------------
-- 3. Endpoint Security Cloud
-- ---------------------------------------------------------------------------
INSERT INTO endpoint_cloud.accounts (admin_email, password_hash, company_name, settings,
                                     licence_number, licence_ends_at, created_at)
SELECT pg_temp.email(f, l, g), pg_temp.fake_password_hash(), pg_temp.company(),
       jsonb_build_object('auto_update', g % 4 <> 0, 'web_control', g % 2 = 0),
       CASE WHEN c IS NOT NULL THEN 'ESC-' || upper(pg_temp.alnum(10)) END, c,
       least(c - interval '1 year', now()) - random() * interval '2 years'
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('endpoint-cloud-accounts', g, true, interval '2 years') AS c) AS x
 ORDER BY g;

INSERT INTO endpoint_cloud.managed_devices (account_id, host_name, os, owner_name, collected, last_seen_at)
SELECT a.id, upper(pg_temp.alnum(3)) || '-WS' || lpad(d::text, 3, '0'),
       pg_temp.pick(ARRAY['Windows 10 Pro', 'Windows 11 Pro', 'Windows Server 2019', 'macOS 13']),
       pg_temp.first_name() || ' ' || pg_temp.last_name(),
       jsonb_build_object('ip', format('10.%s.%s.%s', a.id % 250, d, 10 + d),
                          'threats_blocked', floor(random() * 20)::int,
                          'installed_apps', floor(50 + random() * 150)::int),
       least(coalesce(a.licence_ends_at, now()), now()) - random() * interval '30 days'
  FROM endpoint_cloud.accounts a, generate_series(1, 2 + a.id % 4) AS d;

INSERT INTO endpoint_cloud.support_requests (account_id, body, opened_at)
SELECT a.id, pg_temp.support_text(), a.created_at + random() * interval '200 days'
  FROM endpoint_cloud.accounts a
 WHERE a.id % 3 = 0;

-- ---------------------------------------------------------------------------
-- 4. Security for Microsoft Office 365
-- ---------------------------------------------------------------------------
INSERT INTO office365.tenants (admin_email, password_hash, company_name, settings, licence_ends_at,
                               created_at)
SELECT pg_temp.email(f, l, g), pg_temp.fake_password_hash(), pg_temp.company(),
       jsonb_build_object('anti_phishing', true, 'quarantine_days', 30, 'notify_admin', g % 2 = 0),
       c, least(c - interval '1 year', now()) - random() * interval '2 years'
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('office365-tenants', g, true, interval '2 years') AS c) AS x
 ORDER BY g;

INSERT INTO office365.support_requests (tenant_id, body, opened_at)
SELECT t.id, pg_temp.support_text(), t.created_at + random() * interval '200 days'
  FROM office365.tenants t
 WHERE t.id % 4 = 0;

-- ---------------------------------------------------------------------------
-- 5. VirusDesk. One overdue upload in four is for vulnerability monitoring:
--    overdue but exempt, it stays.
-- ---------------------------------------------------------------------------
INSERT INTO virusdesk.uploads (email, file_name, content, purpose, uploaded_at, scan_completed_at,
                               verdict)
SELECT CASE WHEN g % 3 = 0 THEN pg_temp.email(pg_temp.first_name(), pg_temp.last_name(), g) END,
       fname, CASE WHEN fname ~ '\.(exe|dll)$' THEN '\x4d5a9000'::bytea ELSE ''::bytea END
              || pg_temp.fake_bytes(256 + floor(random() * 7936)::int),
       CASE WHEN c + interval '15 minutes' <= now() AND g % 4 = 0
            THEN 'vulnerability_monitoring' ELSE 'online_scan' END,
       coalesce(c, now()) - random() * interval '40 seconds', c,
       CASE WHEN c IS NOT NULL THEN pg_temp.pick(ARRAY['clean', 'clean', 'clean', 'infected', 'suspicious']) END
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.pick(ARRAY['invoice_0423.pdf.exe', 'setup.exe', 'report.docm',
                                          'photos.zip', 'driver_update.dll', 'scan0001.pdf',
                                          'keygen.exe', 'macro_test.xlsm']) AS fname,
                       pg_temp.clock('virusdesk-file-uploads', g, true) AS c) AS x
 ORDER BY g;

INSERT INTO virusdesk.url_scans (email, url, submitted_at, scan_completed_at, verdict)
SELECT CASE WHEN g % 4 = 0 THEN pg_temp.email(pg_temp.first_name(), pg_temp.last_name(), g) END,
       format('https://%s.example/%s', lower(pg_temp.alnum(8)),
              pg_temp.pick(ARRAY['login', 'invoice.php', 'download/setup', 'promo', 'account/verify'])),
       coalesce(c, now()) - random() * interval '10 seconds', c,
       CASE WHEN c IS NOT NULL THEN pg_temp.pick(ARRAY['clean', 'clean', 'malicious', 'phishing', 'suspicious']) END
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.clock('virusdesk-url-scans', g, true) AS c) AS x
 ORDER BY g;

-- ---------------------------------------------------------------------------
-- 6. Company Account, and 6b its support files
-- ---------------------------------------------------------------------------
INSERT INTO company_account.accounts (admin_email, password_hash, company_name, country, created_at,
                                      blocked_at, deleted_at)
SELECT lower(f || '.' || l) || g || '@corp' || g % 50 || '.example.com', pg_temp.fake_password_hash(),
       pg_temp.company(), pg_temp.pick(ARRAY['JP', 'DE', 'IT', 'FR', 'US', 'BR', 'IN']),
       cr, CASE WHEN c IS NULL AND g % 10 = 0 THEN cr + random() * (now() - cr) END, c
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('company-accounts', g, true) AS c) AS x,
       LATERAL (SELECT least(c, now()) - interval '1 day' - random() * interval '3 years' AS cr) AS y
 ORDER BY g;

INSERT INTO company_account.employees (account_id, personal_account_email, is_admin)
SELECT a.id, pg_temp.email(pg_temp.first_name(), pg_temp.last_name(), a.id * 10 + e), e = 1
  FROM company_account.accounts a, generate_series(1, 2 + a.id % 5) AS e;

INSERT INTO company_account.licences (account_id, product, activation_code, ends_at)
SELECT a.id, pg_temp.pick(ARRAY['Kaspersky Endpoint Security for Business', 'Kaspersky Small Office Security',
                                'Kaspersky Security for Mail Server']),
       pg_temp.activation_code(), a.created_at + interval '1 year' * (1 + a.id % 3)
  FROM company_account.accounts a;

-- One request per file, on accounts that are not deleted, so that the files
-- reach their own 6-month clock (a deleted account takes its files with it).
-- closed_at drives support_files.request_closed_at through the triggers.
CREATE TEMPORARY TABLE demo_live_companies AS
SELECT array_agg(id ORDER BY id) AS ids FROM company_account.accounts WHERE deleted_at IS NULL;

INSERT INTO company_account.support_requests (account_id, requester_email, topic, body, opened_at,
                                              closed_at)
SELECT a.id, a.admin_email, pg_temp.pick(ARRAY['Detection', 'Licensing', 'Deployment', 'Performance']),
       pg_temp.support_text(), coalesce(c, now()) - interval '1 hour' - random() * interval '20 days', c
  FROM generate_series(1, :rows) AS g
  JOIN LATERAL (SELECT pg_temp.clock('company-support-files', g, true) AS c) AS x ON true
  JOIN company_account.accounts a
    ON a.id = (SELECT ids[1 + (g * 7919) % cardinality(ids)] FROM demo_live_companies)
 ORDER BY g;

INSERT INTO company_account.support_files (request_id, file_name, content, uploaded_at)
SELECT r.id, pg_temp.pick(ARRAY['klnagent.log', 'GetSystemInfo.zip', 'trace_avp.log', 'policy_export.klp',
                                'screenshot.png', 'network_settings.txt']),
       pg_temp.fake_bytes(512 + floor(random() * 3584)::int),
       r.opened_at + random() * (coalesce(r.closed_at, now()) - r.opened_at)
  FROM company_account.support_requests r
 ORDER BY r.id;

-- ---------------------------------------------------------------------------
-- 7. Partner Portal
-- ---------------------------------------------------------------------------
INSERT INTO partner_portal.partners (email, password_hash, full_name, postal_address, phone,
                                     company_name, created_at, erasure_requested_at)
SELECT pg_temp.email(f, l, g), pg_temp.fake_password_hash(), f || ' ' || l,
       format('%s-%s-%s %s, %s', 1 + g % 9, 1 + g % 20, 1 + g % 30,
              pg_temp.pick(ARRAY['Chiyoda', 'Minato', 'Shibuya', 'Kita', 'Naka']),
              pg_temp.pick(ARRAY['Tokyo', 'Osaka', 'Nagoya', 'Fukuoka'])),
       pg_temp.phone(), pg_temp.company(),
       least(c, now()) - interval '30 days' - random() * interval '5 years', c
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('partner-portal-erasure', g, true) AS c) AS x
 ORDER BY g;

INSERT INTO partner_portal.support_requests (partner_id, body, opened_at)
SELECT p.id, pg_temp.support_text(), p.created_at + random() * interval '365 days'
  FROM partner_portal.partners p
 WHERE p.id % 3 = 0;

-- ---------------------------------------------------------------------------
-- 8. GSI Parser: one user per four reports.
-- ---------------------------------------------------------------------------
INSERT INTO gsi_parser.users (email, password_hash, created_at)
SELECT pg_temp.email(pg_temp.first_name(), pg_temp.last_name(), b.base + g), pg_temp.fake_password_hash(),
       now() - interval '200 days' - random() * interval '3 years'
  FROM (SELECT coalesce(max(id), 0) AS base FROM gsi_parser.users) AS b,
       generate_series(1, greatest(:rows / 4, 1)) AS g
 ORDER BY g;

CREATE TEMPORARY TABLE demo_gsi_users AS
SELECT array_agg(id ORDER BY id) AS ids FROM gsi_parser.users;

INSERT INTO gsi_parser.reports (user_id, file_name, content, os_version, uploaded_at)
SELECT u.id, 'GSI_' || to_char(c, 'YYYYMMDD_HH24MISS') || '.zip',
       convert_to(format(E'GSI 6.2 report\nOS: %s\nDrivers: %s\nServices: %s\nNetwork connections: %s\n',
                         os, 80 + g % 120, 150 + g % 60, 10 + g % 40), 'UTF8')
       || pg_temp.fake_bytes(1024 + floor(random() * 3072)::int),
       os, c
  FROM generate_series(1, :rows) AS g
  JOIN LATERAL (SELECT pg_temp.clock('gsi-parser-reports', g, false) AS c,
                       pg_temp.pick(ARRAY['Windows 7 SP1', 'Windows 10 22H2', 'Windows 11 23H2',
                                          'Windows Server 2016']) AS os) AS x ON true
  JOIN gsi_parser.users u ON u.id = (SELECT ids[1 + (g - 1) % cardinality(ids)] FROM demo_gsi_users)
 ORDER BY g;

-- ---------------------------------------------------------------------------
-- 9. Live Web Chat
-- ---------------------------------------------------------------------------
INSERT INTO web_chat.sessions (email, ip_address, activation_code, licence_number, started_at, ended_at)
SELECT CASE WHEN g % 5 <> 0 THEN pg_temp.email(pg_temp.first_name(), pg_temp.last_name(), g) END,
       format('%s.%s.%s.%s', pg_temp.pick(ARRAY[192, 198, 203]), g % 256, (g * 7) % 256, 1 + g % 254)::inet,
       CASE WHEN g % 2 = 0 THEN pg_temp.activation_code() END,
       CASE WHEN g % 3 = 0 THEN upper(pg_temp.alnum(4)) || '-' || lpad((g % 1000000)::text, 6, '0') END,
       c, c + interval '4 minutes' + random() * interval '30 minutes'
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.clock('web-chat-sessions', g, false) AS c) AS x
 ORDER BY g;

INSERT INTO web_chat.messages (session_id, sender, body, sent_at)
SELECT s.id, CASE WHEN k % 2 = 1 THEN 'customer' ELSE 'agent' END,
       CASE WHEN k % 2 = 1 THEN pg_temp.support_text()
            ELSE pg_temp.pick(ARRAY['Thank you, let me check that for you.',
                                    'Could you send the log file, please?',
                                    'Please try restarting after the update.',
                                    'I have forwarded this to the virus lab.']) END,
       s.started_at + k * interval '1 minute'
  FROM web_chat.sessions s, generate_series(1, 2 + s.id % 5) AS k;

INSERT INTO web_chat.attachments (message_id, file_name, content)
SELECT m.id, pg_temp.pick(ARRAY['screenshot.png', 'error.txt', 'avp_trace.log']),
       pg_temp.fake_bytes(256 + floor(random() * 2048)::int)
  FROM web_chat.messages m
 WHERE m.sender = 'customer' AND m.id % 7 = 0;

-- ---------------------------------------------------------------------------
-- 10. Other sites and forms
-- ---------------------------------------------------------------------------
INSERT INTO web_forms.newsletter_subscriptions (email, name, topics, status, subscribed_at,
                                                unsubscribed_at)
SELECT pg_temp.email(f, l, g), CASE WHEN g % 2 = 0 THEN f || ' ' || l END,
       string_to_array((ARRAY['threat-news,product-updates', 'offers', 'threat-news',
                              'product-updates,offers'])[1 + g % 4], ','),
       CASE WHEN c IS NULL THEN 'subscribed' ELSE 'unsubscribed' END,
       least(c, now()) - interval '1 day' - random() * interval '4 years', c
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('web-forms-newsletter', g, true) AS c) AS x
 ORDER BY g;

-- One overdue trial in five was bought: exempt, it stays.
INSERT INTO web_forms.trial_registrations (email, name, phone, product, activation_code, registered_at,
                                           trial_ends_at, outcome, unsubscribed_at)
SELECT pg_temp.email(f, l, g), f || ' ' || l, CASE WHEN g % 2 = 0 THEN pg_temp.phone() END,
       pg_temp.product(), pg_temp.activation_code(), r, r + interval '30 days',
       CASE WHEN c + interval '1 hour' <= now() AND g % 5 = 0 THEN 'purchased' ELSE 'trial' END, c
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       pg_temp.clock('web-forms-trials', g, true) AS c) AS x,
       LATERAL (SELECT least(c, now()) - interval '1 day' - random() * interval '60 days' AS r) AS y
 ORDER BY g;

INSERT INTO web_forms.submissions (form, email, name, phone, answers, submitted_at, erasure_requested_at)
SELECT form, pg_temp.email(f, l, g), f || ' ' || l, CASE WHEN g % 3 = 0 THEN pg_temp.phone() END,
       CASE form
           WHEN 'survey' THEN jsonb_build_object('satisfaction', 1 + g % 5, 'would_recommend', g % 4 <> 0)
           WHEN 'event' THEN jsonb_build_object('event', 'Cyber Security Summit', 'seats', 1 + g % 3)
           WHEN 'premium_content' THEN jsonb_build_object('asset', 'whitepaper-ransomware-2023.pdf')
           ELSE jsonb_build_object('message', pg_temp.support_text())
       END,
       least(c, now()) - interval '1 hour' - random() * interval '2 years', c
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.first_name() AS f, pg_temp.last_name() AS l,
                       (ARRAY['premium_content', 'event', 'contact', 'support', 'survey'])[1 + g % 5] AS form,
                       pg_temp.clock('web-forms-erasure', g, true) AS c) AS x
 ORDER BY g;

-- ---------------------------------------------------------------------------
-- 11. Site statistics: a pseudonym per visitor, a few visits each.
-- ---------------------------------------------------------------------------
CREATE TEMPORARY TABLE demo_pseudonyms AS
SELECT array_agg(pg_temp.alnum(20)) AS p FROM generate_series(1, greatest(:rows / 3, 1));

INSERT INTO site_stats.visits (pseudonym, site, client_domain, browser, page, visited_at, evaluated_at)
SELECT (SELECT p[1 + (g * 31) % cardinality(p)] FROM demo_pseudonyms),
       pg_temp.pick(ARRAY['www.kaspersky.co.jp', 'support.kaspersky.co.jp', 'virusdesk.kaspersky.com',
                          'my.kaspersky.com']),
       pg_temp.pick(ARRAY['ocn.ne.jp', 'so-net.ne.jp', 'example.net', 'plala.or.jp', NULL]),
       pg_temp.pick(ARRAY['Chrome 120', 'Firefox 121', 'Safari 17', 'Edge 120']),
       pg_temp.pick(ARRAY['/', '/downloads', '/products/total-security', '/support', '/renew']),
       coalesce(c, now()) - interval '1 minute' - random() * interval '7 days', c
  FROM generate_series(1, :rows) AS g,
       LATERAL (SELECT pg_temp.clock('site-stats-visits', g, true) AS c) AS x
 ORDER BY g;

-- ---------------------------------------------------------------------------
-- Holds: overdue records that must stay for now. Placed through
-- retention.place_hold so that they serialise with a running purge.
-- ---------------------------------------------------------------------------
SELECT retention.place_hold('virusdesk-file-uploads', id::text, NULL,
                            'virus lab: sample under analysis, ticket VL-' || (4100 + id), NULL)
  FROM (SELECT id FROM virusdesk.uploads
         WHERE purpose = 'online_scan' AND scan_completed_at + interval '15 minutes' <= now()
         ORDER BY id LIMIT :holds) AS h \g /dev/null

SELECT retention.place_hold('motorsport-accounts', id::text, NULL,
                            'legal: harassment complaint about this user''s comments, case MS-' || (200 + id), NULL)
  FROM (SELECT id FROM motorsport.users
         WHERE deleted_at + interval '24 hours' <= now()
         ORDER BY id LIMIT :holds) AS h \g /dev/null

SELECT retention.place_hold('company-accounts', id::text, NULL,
                            'legal: unpaid invoice dispute, counsel asked to preserve the account', NULL)
  FROM (SELECT id FROM company_account.accounts
         WHERE deleted_at + interval '24 hours' <= now()
         ORDER BY id LIMIT :holds) AS h \g /dev/null

SELECT retention.place_hold('my-kaspersky-accounts', id::text, NULL,
                            'fraud investigation: chargeback on this account''s licence purchase', NULL)
  FROM (SELECT id FROM my_kaspersky.accounts
         WHERE deleted_at + interval '1 month' <= now()
         ORDER BY id LIMIT :holds) AS h \g /dev/null

-- By subject, with an end: every support file of one company, for 30 days.
SELECT retention.place_hold('company-support-files', NULL, account_id::text,
                            'customer asked to keep the files until its incident review ends',
                            now() + interval '30 days')
  FROM (SELECT account_id FROM company_account.support_files
         WHERE request_closed_at + interval '6 months' <= now()
         ORDER BY id LIMIT 1) AS h \g /dev/null

COMMIT;

-- What was made, per table that a policy covers. "overdue" includes the
-- exempt and held rows, which stay.
CREATE FUNCTION pg_temp.demo_counts(tbl regclass, clock text, retain interval,
                                    exempt text DEFAULT NULL, exempt_value text DEFAULT NULL,
                                    OUT total bigint, OUT clock_null bigint, OUT overdue bigint,
                                    OUT exempt_overdue bigint, OUT due_in_90s bigint, OUT later bigint)
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE %1$I IS NULL),'
                   ' count(*) FILTER (WHERE %1$I + $1 <= now()),'
                   ' count(*) FILTER (WHERE %1$I + $1 <= now() AND %2$s),'
                   ' count(*) FILTER (WHERE %1$I + $1 > now() AND %1$I + $1 <= now() + interval ''90 seconds''),'
                   ' count(*) FILTER (WHERE %1$I + $1 > now() + interval ''90 seconds'')'
                   ' FROM %3$s',
                   clock, CASE WHEN exempt IS NULL THEN 'false' ELSE format('%I::text = $2', exempt) END, tbl)
       INTO total, clock_null, overdue, exempt_overdue, due_in_90s, later
       USING retain, exempt_value;
END
$$;

SELECT v.policy, v.tbl AS "table", c.total, c.clock_null, c.overdue, c.exempt_overdue AS exempt,
       (SELECT count(*) FROM retention.holds h WHERE h.policy = v.policy AND h.released_at IS NULL) AS holds,
       c.due_in_90s, c.later
  FROM (VALUES
          ('my-kaspersky-accounts', 'my_kaspersky.accounts', 'deleted_at', NULL, NULL),
          ('motorsport-accounts', 'motorsport.users', 'deleted_at', NULL, NULL),
          ('endpoint-cloud-accounts', 'endpoint_cloud.accounts', 'licence_ends_at', NULL, NULL),
          ('office365-tenants', 'office365.tenants', 'licence_ends_at', NULL, NULL),
          ('virusdesk-file-uploads', 'virusdesk.uploads', 'scan_completed_at', 'purpose',
           'vulnerability_monitoring'),
          ('virusdesk-url-scans', 'virusdesk.url_scans', 'scan_completed_at', NULL, NULL),
          ('company-accounts', 'company_account.accounts', 'deleted_at', NULL, NULL),
          ('company-support-files', 'company_account.support_files', 'request_closed_at', NULL, NULL),
          ('company-files-of-deleted-accounts', 'company_account.support_files', 'account_deleted_at', NULL, NULL),
          ('partner-portal-erasure', 'partner_portal.partners', 'erasure_requested_at', NULL, NULL),
          ('gsi-parser-reports', 'gsi_parser.reports', 'uploaded_at', NULL, NULL),
          ('web-chat-sessions', 'web_chat.sessions', 'started_at', NULL, NULL),
          ('web-forms-trials', 'web_forms.trial_registrations', 'unsubscribed_at', 'outcome', 'purchased'),
          ('web-forms-newsletter', 'web_forms.newsletter_subscriptions', 'unsubscribed_at', NULL, NULL),
          ('web-forms-erasure', 'web_forms.submissions', 'erasure_requested_at', NULL, NULL),
          ('site-stats-visits', 'site_stats.visits', 'evaluated_at', NULL, NULL)
       ) AS v(policy, tbl, clock, exempt, exempt_value)
  JOIN demo_retain r ON r.policy = v.policy,
       LATERAL pg_temp.demo_counts(v.tbl::regclass, v.clock, r.retain, v.exempt, v.exempt_value) AS c
 ORDER BY v.tbl;
