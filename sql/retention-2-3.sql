-- retention schema, version 2 -> 3. Applied by `retentionctl migrate` inside
-- one transaction, after the earlier steps.
--
-- Two more settings of the daemon's session are read back after code of a
-- table's owner may have run: plan_cache_mode (the daemon's statements are
-- planned once; custom plans cost more than running them) and
-- restrict_nonsystem_relation_kind (no view or foreign table is read, so a
-- table replaced by a view runs none of its owner's code with the daemon's
-- role). The order is that of settings_names in src/session.c.
CREATE OR REPLACE FUNCTION retention.session_settings() RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN (ARRAY[CAST(current_user AS pg_catalog.text), pg_catalog.current_setting('search_path'), pg_catalog.current_setting('TimeZone'), pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'), pg_catalog.current_setting('client_encoding'), pg_catalog.current_setting('statement_timeout'), pg_catalog.current_setting('lock_timeout'), pg_catalog.current_setting('standard_conforming_strings'), pg_catalog.current_setting('row_security'), pg_catalog.current_setting('extra_float_digits'), pg_catalog.current_setting('array_nulls'), pg_catalog.current_setting('transform_null_equals'), pg_catalog.current_setting('timezone_abbreviations'), pg_catalog.current_setting('jit'), pg_catalog.current_setting('synchronous_commit'), pg_catalog.current_setting('idle_in_transaction_session_timeout'), pg_catalog.current_setting('default_transaction_read_only'), pg_catalog.current_setting('plan_cache_mode'), pg_catalog.current_setting('restrict_nonsystem_relation_kind'), pg_catalog.array_to_string(ARRAY(SELECT c FROM pg_catalog.pg_listening_channels() c ORDER BY c), ',')])::pg_catalog.text;
END
$$;

INSERT INTO retention.schema_version (version) VALUES (3);
