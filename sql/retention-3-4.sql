-- retention schema, version 3 -> 4. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- What each policy of an instance is doing, for `retentionctl status`: the
-- daemon writes its policies' states (enforcing, failing, waiting) and what
-- keeps each failing one from purging, in the order of `policies`, with its
-- heartbeat and within a second of a change.
ALTER TABLE retention.instances
    ADD COLUMN policy_states text[] NOT NULL DEFAULT '{}',
    ADD COLUMN policy_problems text[] NOT NULL DEFAULT '{}';

INSERT INTO retention.schema_version (version) VALUES (4);
