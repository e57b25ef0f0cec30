-- The upstream OpenADR 2.0b VEN's decisions: for each event (and modification) the
-- utility's VTN sent, whether the VEN opted in or out and why, and the dispatch plans it
-- made for it (JSON array of dispatch_plans ids), so that a modification or cancellation
-- stops exactly those plans and a repeated distribution is answered the same way.

CREATE TABLE oadr2_upstream_events (
    event_id            TEXT NOT NULL,
    modification_number BIGINT NOT NULL,
    event_status        TEXT NOT NULL,
    opt_type            TEXT NOT NULL,
    reason              TEXT NOT NULL,
    plan_ids            TEXT NOT NULL,
    decided_at          BIGINT NOT NULL,
    PRIMARY KEY (event_id, modification_number)
);
