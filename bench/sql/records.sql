-- A service's table as the scenarios use it: key, subject, clock and a
-- 200-byte payload, an index on the clock and the trigger that wakes the
-- daemon when a clock starts (both as docs/retentiond.conf.5 asks).
--   psql -v table=NAME -v rows=N -v clock='EXPRESSION OF g' -f records.sql
-- g numbers the rows 1..N; the clock expression places row g in time.
CREATE TABLE :table (
    key     bigint PRIMARY KEY,
    subject text NOT NULL,
    clock   timestamptz,
    payload text NOT NULL
);
INSERT INTO :table
SELECT g, 'subject-' || (g % 100000), :clock, repeat(md5(g::text), 6) || 'retained'
  FROM generate_series(1, :rows) g;
CREATE INDEX ON :table (clock);
CREATE TRIGGER retention_notify AFTER INSERT OR UPDATE OF clock ON :table
    FOR EACH STATEMENT EXECUTE FUNCTION retention.notify_clock();
VACUUM (FREEZE, ANALYZE) :table;
