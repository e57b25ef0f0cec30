-- Dispatch plans: every request the operator API planned, with what it asked for, the
-- assumptions used and the per-step outcome, so an operator can look back at what was
-- decided and why. Refused requests are not stored. `body` is the request and assumptions
-- as planned (JSON); `steps` the per-step reports (JSON). `feasible` is 0 or 1.

CREATE TABLE dispatch_plans (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL,
    source_kind     TEXT NOT NULL,
    direction       TEXT NOT NULL,
    power_kw        DOUBLE PRECISION NOT NULL,
    window_start    BIGINT NOT NULL,
    window_end      BIGINT NOT NULL,
    feasible        BIGINT NOT NULL,
    shortfall_kwh   DOUBLE PRECISION NOT NULL,
    der_count       BIGINT NOT NULL,
    body            TEXT NOT NULL,
    steps           TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX dispatch_plans_request ON dispatch_plans(request_id);
