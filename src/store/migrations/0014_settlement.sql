-- Settlement (src/settlement/): the performance computed for each event and every
-- reconciliation of a settlement statement. Performance is keyed by event id (a dispatch
-- plan id or an ad hoc event id); computing it again replaces it, so a reconciliation
-- always matches the latest figures, and the reconciliation keeps, in `body`, the figures
-- it compared. `body` is the whole result as JSON; the other columns are for listing.

CREATE TABLE settlement_performance (
    event_id        TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    target          TEXT NOT NULL,
    window_start    BIGINT NOT NULL,
    window_end      BIGINT NOT NULL,
    delivered_kwh   DOUBLE PRECISION NOT NULL,
    body            TEXT NOT NULL,
    computed_at     BIGINT NOT NULL
);

CREATE TABLE settlement_reconciliations (
    id              TEXT PRIMARY KEY,
    lines           BIGINT NOT NULL,
    flagged         BIGINT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
