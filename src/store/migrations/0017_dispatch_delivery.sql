-- Dispatch delivery: what the executor told each device for a plan, through which channel,
-- and what became of it (`sent`, `acked`, `failed` with the reason), plus the plan's
-- life events (`stop`, `limit`, `redispatch`, `ended`) with their detail as JSON. Rows are
-- written as deliveries happen; a delivery row is updated once when its outcome is known.

CREATE TABLE dispatch_deliveries (
    id           TEXT PRIMARY KEY,
    plan_id      TEXT NOT NULL,
    der_id       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    instruction  TEXT NOT NULL,
    setpoint_kw  DOUBLE PRECISION,
    valid_until  BIGINT,
    status       TEXT NOT NULL,
    reason       TEXT,
    reference    TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX dispatch_deliveries_plan ON dispatch_deliveries(plan_id, id);

CREATE TABLE dispatch_events (
    id         TEXT PRIMARY KEY,
    plan_id    TEXT NOT NULL,
    event_at   BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX dispatch_events_plan ON dispatch_events(plan_id, id);
