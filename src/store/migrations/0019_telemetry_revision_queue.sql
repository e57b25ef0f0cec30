-- Late-data revisions owed by the durable telemetry writer (telemetry::writer).
--
-- On SQLite the writer stores readings through a native connection of its own, which cannot
-- run the aggregate revision queries (they are written for the shared `Any` pool). So that
-- a late reading is never acknowledged without its revision being owed durably, the
-- writer adds one row per (source, measurand) of a batch whose source has stored
-- aggregates here, in the same transaction as the readings. The rows are worked off
-- through the pool right after the commit (and at the writer's start, after a crash), each
-- in the same transaction as the revision it causes, then deleted.
--
-- The readings the row stands for are those of the source and measurand with
-- min_instant <= instant <= max_instant that were received at received_at.
--
-- On SQLite the readings table itself is rebuilt clustered on its key (WITHOUT ROWID,
-- without the second index) by a step in src/store/sqlite_schema.rs that runs after the
-- migrations: that DDL is SQLite's own, and PostgreSQL keeps the table of 0004.
CREATE TABLE telemetry_revision_queue (
    source_id   TEXT NOT NULL,
    measurand   TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    min_instant BIGINT NOT NULL,
    max_instant BIGINT NOT NULL,
    PRIMARY KEY (source_id, measurand, received_at)
);
