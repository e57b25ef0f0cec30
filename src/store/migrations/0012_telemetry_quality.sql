-- Telemetry quality: configured reporting intervals per source (gap detection), aligned
-- interval aggregates per source, and the audit of every revision late data caused.
-- Arrival times come from `readings.received_at` (migration 0004), so no ingest log is
-- needed for lateness.

-- A source listed here is expected to report every `expected_interval_s`; it appears in
-- gap reports even when it has sent nothing. Sources not listed have their interval
-- inferred from their history.
CREATE TABLE telemetry_source_intervals (
    source_id           TEXT PRIMARY KEY,
    expected_interval_s BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- One aligned interval of one source's measurand on one grid (telemetry::align). `value`
-- is NULL when the interval had no data (quality `missing`). `max_gap_s` is the alignment
-- rule it was computed with, reused when late data revises it. `revision` counts from 0.
CREATE TABLE telemetry_aggregates (
    source_id      TEXT NOT NULL,
    measurand      TEXT NOT NULL,
    grid_s         BIGINT NOT NULL,
    interval_start BIGINT NOT NULL,
    value          DOUBLE PRECISION,
    quality        TEXT NOT NULL,
    coverage_s     BIGINT NOT NULL,
    samples        BIGINT NOT NULL,
    max_gap_s      BIGINT NOT NULL,
    revision       BIGINT NOT NULL,
    computed_at    BIGINT NOT NULL,
    PRIMARY KEY (source_id, measurand, grid_s, interval_start)
);

-- Every change late data made to a stored aggregate: old and new value and quality, the
-- reading that caused it (the earliest of the batch that touched the interval, with how
-- many readings of that batch did) and when. Ids are UUID v7: id order is revision order.
CREATE TABLE telemetry_revisions (
    id                TEXT PRIMARY KEY,
    source_id         TEXT NOT NULL,
    measurand         TEXT NOT NULL,
    grid_s            BIGINT NOT NULL,
    interval_start    BIGINT NOT NULL,
    revision          BIGINT NOT NULL,
    old_value         DOUBLE PRECISION,
    new_value         DOUBLE PRECISION,
    old_quality       TEXT NOT NULL,
    new_quality       TEXT NOT NULL,
    old_samples       BIGINT NOT NULL,
    new_samples       BIGINT NOT NULL,
    cause_instant     BIGINT NOT NULL,
    cause_value       DOUBLE PRECISION NOT NULL,
    cause_received_at BIGINT NOT NULL,
    cause_readings    BIGINT NOT NULL,
    revised_at        BIGINT NOT NULL
);
CREATE INDEX telemetry_revisions_source ON telemetry_revisions(source_id, interval_start);
CREATE INDEX telemetry_revisions_revised ON telemetry_revisions(revised_at);
