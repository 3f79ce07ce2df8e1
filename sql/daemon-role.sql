-- Creates (or re-grants) the least-privilege role the daemon logs in as.
-- It owns nothing. In the retention schema it may only INSERT audit rows,
-- read holds, move its policies' chain heads, take a policy's lock through
-- retention.try_lock_policy() and write its heartbeat; record quarantined records; read data subjects'
-- requests and record what it did for them, through the functions. It must not be a
-- superuser or have BYPASSRLS: retentiond refuses to purge as such a role.
-- Run as a superuser or the schema's owner, after `retentionctl migrate`:
--   psql -v role=retentiond -f daemon-role.sql
-- then grant it each service table a policy names. A purge locks its batch
-- with FOR UPDATE SKIP LOCKED, which PostgreSQL allows only with UPDATE on
-- some column, so a delete policy needs UPDATE of its key column too; an
-- anonymize policy needs UPDATE on the table:
--   GRANT USAGE ON SCHEMA virusdesk TO retentiond;
--   GRANT SELECT, DELETE, UPDATE (id) ON virusdesk.uploads TO retentiond;
\set ON_ERROR_STOP on
\if :{?role}
\else
\set role retentiond
\endif
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec

REVOKE ALL ON ALL TABLES IN SCHEMA retention FROM :"role";
GRANT USAGE ON SCHEMA retention TO :"role";
GRANT INSERT ON retention.audit_log TO :"role";
GRANT USAGE ON SEQUENCE retention.audit_log_id_seq TO :"role";
GRANT SELECT, INSERT, UPDATE ON retention.chain_heads TO :"role";
GRANT SELECT ON retention.holds TO :"role";
GRANT SELECT, INSERT, UPDATE ON retention.instances TO :"role";
GRANT SELECT ON retention.schema_version TO :"role";
GRANT EXECUTE ON FUNCTION retention.try_lock_policy(text), retention.policy_lock_holder(text) TO :"role";
-- Quarantined records: every statement of a policy skips those whose retry
-- is not due; the daemon records a record that fails on its own, and removes
-- one purged on retry, through the functions.
GRANT SELECT ON retention.quarantine TO :"role";
GRANT EXECUTE ON FUNCTION retention.quarantine_record(text, text, text, text, interval, text),
    retention.quarantine_record(text, text, text, text, interval, text, text),
    retention.quarantine_clear(text, text[]), retention.quarantine_clear(text, text[], text),
    retention.quarantine_clear_rows(text, bigint[]) TO :"role";
-- A chain's head found behind the last head the daemon committed (a
-- failover lost the tail): it records the gap.
GRANT EXECUTE ON FUNCTION retention.record_chain_gap(text, bigint, bigint, text, bigint, text, text) TO :"role";
-- Rule versions: the daemon records each policy's rule, says which version
-- it enforces (an approved one, or one that newly makes no more than
-- guard_records records due), and its statements read the version in force
-- while one waits for an operator's approval, which it cannot give.
GRANT SELECT ON retention.rule_versions TO :"role";
GRANT EXECUTE ON FUNCTION retention.rule_state(text, text, text, text),
    retention.rule_seen(text, text, text, interval, text, text[], text),
    retention.rule_enforce(bigint) TO :"role";
-- database.max_replication_lag: the standbys' replay lag, read through the
-- function as the schema's owner.
GRANT EXECUTE ON FUNCTION retention.replication_lag() TO :"role";
-- Data subjects' requests: the daemon reads open erasure requests, records
-- what each policy did, closes a request once nothing erasable is left, and
-- replaces a closed request's identities by their pseudonyms.
GRANT SELECT ON retention.requests, retention.request_identities TO :"role";
GRANT EXECUTE ON FUNCTION retention.request_progress(bigint, text, bigint, text, boolean),
    retention.finish_erasure(bigint, text[]), retention.pseudonymize_request(bigint, text[]) TO :"role";
