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

INSERT INTO retention.schema_version (version) VALUES (5);
