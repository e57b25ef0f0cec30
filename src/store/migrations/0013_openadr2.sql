-- OpenADR 2.0b VTN: registered VENs, events and their targets, what each VEN has been sent,
-- opt-ins/outs, report registrations and requests, received report updates.
-- Times are epoch seconds UTC. Booleans are 0/1 integers (the SQL both engines share).

-- A registered VEN. fingerprint is the 2.0b certificate fingerprint (NULL for VENs that
-- registered over the plain-HTTP test-lab listener).
CREATE TABLE oadr2_vens (
    ven_id            TEXT PRIMARY KEY,
    registration_id   TEXT NOT NULL UNIQUE,
    ven_name          TEXT NOT NULL,
    fingerprint       TEXT UNIQUE,
    http_pull_model   INTEGER NOT NULL,
    transport_address TEXT,
    report_only       INTEGER NOT NULL,
    registered_at     BIGINT NOT NULL
);

-- An event as the operator defined it (body: JSON of the event definition); status is
-- 'active' or 'cancelled'; each change increments modification_number.
CREATE TABLE oadr2_events (
    event_id            TEXT PRIMARY KEY,
    modification_number INTEGER NOT NULL,
    status              TEXT NOT NULL,
    ends_at             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    body                TEXT NOT NULL
);
CREATE INDEX oadr2_events_end ON oadr2_events (ends_at);

-- The VENs an event targets; an event without rows here is for every VEN.
CREATE TABLE oadr2_event_targets (
    event_id TEXT NOT NULL,
    ven_id   TEXT NOT NULL,
    PRIMARY KEY (event_id, ven_id)
);
CREATE INDEX oadr2_event_targets_ven ON oadr2_event_targets (ven_id);

-- Which modification of an event a VEN has been sent (by poll, oadrRequestEvent or push).
CREATE TABLE oadr2_deliveries (
    ven_id              TEXT NOT NULL,
    event_id            TEXT NOT NULL,
    modification_number INTEGER NOT NULL,
    delivered_at        BIGINT NOT NULL,
    PRIMARY KEY (ven_id, event_id)
);

-- A VEN's answer to an event (oadrCreatedEvent), the latest per event and VEN.
CREATE TABLE oadr2_event_responses (
    event_id            TEXT NOT NULL,
    ven_id              TEXT NOT NULL,
    modification_number INTEGER NOT NULL,
    opt_type            TEXT NOT NULL,
    response_code       TEXT NOT NULL,
    received_at         BIGINT NOT NULL,
    PRIMARY KEY (event_id, ven_id)
);

-- EiOpt schedules and event opts (oadrCreateOpt); canceled_at set by oadrCancelOpt.
CREATE TABLE oadr2_opts (
    opt_id         TEXT PRIMARY KEY,
    ven_id         TEXT NOT NULL,
    opt_type       TEXT NOT NULL,
    opt_reason     TEXT NOT NULL,
    event_id       TEXT,
    market_context TEXT,
    created_at     BIGINT NOT NULL,
    canceled_at    BIGINT
);

-- The data points a VEN registered (oadrRegisterReport), what each measures and in which
-- unit, so that update reports can be turned into telemetry.
CREATE TABLE oadr2_report_points (
    ven_id              TEXT NOT NULL,
    report_specifier_id TEXT NOT NULL,
    r_id                TEXT NOT NULL,
    report_name         TEXT NOT NULL,
    resource_id         TEXT,
    item                TEXT,
    units               TEXT,
    si_scale            TEXT,
    reading_type        TEXT NOT NULL,
    min_period          TEXT,
    PRIMARY KEY (ven_id, report_specifier_id, r_id)
);

-- Reports the VTN asked a VEN for; delivered = 0 while the request waits for a poll.
CREATE TABLE oadr2_report_requests (
    report_request_id   TEXT PRIMARY KEY,
    ven_id              TEXT NOT NULL,
    report_specifier_id TEXT NOT NULL,
    body                TEXT NOT NULL,
    delivered           INTEGER NOT NULL,
    acknowledged        INTEGER NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX oadr2_report_requests_ven ON oadr2_report_requests (ven_id, delivered);

-- Report updates received (oadrUpdateReport), one row per oadrReport; the readings they
-- carry are in the telemetry store.
CREATE TABLE oadr2_report_updates (
    id                  TEXT PRIMARY KEY,
    ven_id              TEXT NOT NULL,
    report_request_id   TEXT NOT NULL,
    report_specifier_id TEXT NOT NULL,
    report_name         TEXT NOT NULL,
    values_count        INTEGER NOT NULL,
    readings_count      INTEGER NOT NULL,
    online              INTEGER,
    received_at         BIGINT NOT NULL
);
CREATE INDEX oadr2_report_updates_ven ON oadr2_report_updates (ven_id, received_at);
