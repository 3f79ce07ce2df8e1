-- retention schema, version 4 -> 5. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- The audit trail's hash format 2 (docs/audit-format.md): each row says
-- which format its hash uses, so that rows written before this version (all
-- format 1) stay verifiable. The daemon computes format 2 hashes and keyed
-- pseudonyms itself and sends finished rows; the format 1 functions
-- (audit_payload, chain) stay only as the definition of the rows written
-- with them.
ALTER TABLE retention.audit_log
    ADD COLUMN format smallint NOT NULL DEFAULT 1 CHECK (format IN (1, 2)),
    ADD COLUMN cause text NOT NULL DEFAULT 'schedule' CHECK (cause IN ('schedule', 'request')),
    ADD COLUMN request_id bigint,
    ADD CHECK ((cause = 'request') = (request_id IS NOT NULL));
-- Existing rows keep format 1 and cause schedule; a new row says its own.
ALTER TABLE retention.audit_log ALTER COLUMN format DROP DEFAULT, ALTER COLUMN cause DROP DEFAULT;

-- Lookups by key and by subject are by equality only, and a b-tree entry
-- has a size limit (about 2.7 kB) that a clear-text key or subject from the
-- application may pass: the INSERT of its audit row would fail, and with it
-- every batch of the policy. A hash index stores a value's hash, whatever
-- its size. `retentionctl audit --subject` finds a subject across policies.
DROP INDEX retention.audit_log_record;
CREATE INDEX audit_log_record ON retention.audit_log USING hash (record_key);
CREATE INDEX audit_log_subject ON retention.audit_log USING hash (subject);

-- Two more settings of the daemon's session are read back after code of a
-- table's owner may have run: bytea_output and lc_monetary, by which a bytea
-- or money key or subject is written as text, and so audited and
-- pseudonymized. The order is that of settings_names in src/session.c.
CREATE OR REPLACE FUNCTION retention.session_settings() RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN (ARRAY[CAST(current_user AS pg_catalog.text), pg_catalog.current_setting('search_path'), pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'), pg_catalog.current_setting('client_encoding'), pg_catalog.current_setting('statement_timeout'), pg_catalog.current_setting('lock_timeout'), pg_catalog.current_setting('standard_conforming_strings'), pg_catalog.current_setting('row_security'), pg_catalog.current_setting('extra_float_digits'), pg_catalog.current_setting('array_nulls'), pg_catalog.current_setting('transform_null_equals'), pg_catalog.current_setting('timezone_abbreviations'), pg_catalog.current_setting('jit'), pg_catalog.current_setting('synchronous_commit'), pg_catalog.current_setting('idle_in_transaction_session_timeout'), pg_catalog.current_setting('default_transaction_read_only'), pg_catalog.current_setting('plan_cache_mode'), pg_catalog.current_setting('restrict_nonsystem_relation_kind'), pg_catalog.current_setting('bytea_output'), pg_catalog.current_setting('lc_monetary'), pg_catalog.array_to_string(ARRAY(SELECT c FROM pg_catalog.pg_listening_channels() c ORDER BY c), ',')])::pg_catalog.text;
END
$$;

INSERT INTO retention.schema_version (version) VALUES (5);
