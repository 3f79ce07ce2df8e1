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

-- `retentionctl audit --subject`: a subject's rows across policies.
CREATE INDEX audit_log_subject ON retention.audit_log (subject) WHERE subject IS NOT NULL;

INSERT INTO retention.schema_version (version) VALUES (5);
