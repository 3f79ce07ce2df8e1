-- Every measurement of a bench run is one row of `result`; the tables bench/run
-- prints are queries over it. A figure is the median of its runs with their
-- min and max; a ratio is computed run by run (both sides measured in the
-- same run) and then summarised the same way.

CREATE TABLE result (
    scenario   text NOT NULL,
    section    text NOT NULL,      -- a rate, a size, a phase: '' when the scenario has one
    contestant text NOT NULL,
    metric     text NOT NULL,
    run        integer NOT NULL,
    value      float8 NOT NULL,
    PRIMARY KEY (scenario, section, contestant, metric, run)
);

CREATE VIEW summary AS
SELECT scenario, section, contestant, metric, count(*) AS runs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS median, min(value) AS min, max(value) AS max
  FROM result
 GROUP BY scenario, section, contestant, metric;

-- A number as the tables show it: DIGITS decimals, thousands separated.
CREATE FUNCTION num(v float8, digits integer) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN v IS NULL THEN '-'
                      ELSE to_char(v, 'FM999,999,999,990' || CASE WHEN digits > 0 THEN '.' || repeat('0', digits) ELSE '' END)
                 END $$;

-- "median [min-max]" of one metric, times SCALE (e.g. 1000 for seconds shown as ms).
CREATE FUNCTION fig(p_scenario text, p_section text, p_contestant text, p_metric text,
                    digits integer, scale float8 DEFAULT 1, suffix text DEFAULT '')
    RETURNS text
    LANGUAGE sql STABLE
    AS $$
    SELECT coalesce((SELECT CASE WHEN s.runs = 1 OR s.min = s.max THEN num(s.median * scale, digits) || suffix
                                 ELSE num(s.median * scale, digits) || suffix || ' [' || num(s.min * scale, digits)
                                      || '–' || num(s.max * scale, digits) || ']' END
                       FROM summary s
                      WHERE (s.scenario, s.section, s.contestant, s.metric) = (p_scenario, p_section, p_contestant, p_metric)),
                    '-')
$$;

-- The median alone, for the targets.
CREATE FUNCTION med(p_scenario text, p_section text, p_contestant text, p_metric text) RETURNS float8
    LANGUAGE sql STABLE
    AS $$ SELECT median FROM summary
           WHERE (scenario, section, contestant, metric) = (p_scenario, p_section, p_contestant, p_metric) $$;

-- The worst run, for targets on a maximum.
CREATE FUNCTION worst(p_scenario text, p_section text, p_contestant text, p_metric text) RETURNS float8
    LANGUAGE sql STABLE
    AS $$ SELECT max FROM summary
           WHERE (scenario, section, contestant, metric) = (p_scenario, p_section, p_contestant, p_metric) $$;

-- Records, as metric RATIO, the ratio of METRIC between two contestants of the same run.
CREATE FUNCTION record_ratio(p_scenario text, p_section text, p_run integer, p_contestant text,
                             p_baseline text, p_metric text, p_ratio text)
    RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO result
    SELECT a.scenario, a.section, a.contestant, p_ratio, a.run, a.value / b.value
      FROM result a
      JOIN result b USING (scenario, section, metric, run)
     WHERE a.scenario = p_scenario AND a.section = p_section AND a.run = p_run AND a.metric = p_metric
       AND a.contestant = p_contestant AND b.contestant = p_baseline AND b.value <> 0
$$;
