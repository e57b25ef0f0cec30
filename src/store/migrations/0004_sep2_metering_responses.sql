-- Telemetry readings (the engine's table, whatever protocol delivered them), the IEEE
-- 2030.5 metering mirror that devices post readings through, and the Responses devices
-- send to DERControls.

-- One row per (source, measurand, instant): the primary key is what makes a repeated
-- delivery of the same reading a no-op (INSERT ... ON CONFLICT DO NOTHING), and it also
-- serves the "one source over a time range" query.
CREATE TABLE readings (
    source_id   TEXT NOT NULL,
    source_kind TEXT NOT NULL,
    measurand   TEXT NOT NULL,
    instant     BIGINT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    quality     TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source_id, measurand, instant)
);
CREATE INDEX readings_source_instant ON readings(source_id, instant);

-- A MirrorUsagePoint belongs to the EndDevice whose certificate (or aggregator) created
-- it; its id is derived from that EndDevice's LFDI and the mRID, so a re-post finds it.
CREATE TABLE sep2_mirror_usage_points (
    id                      TEXT PRIMARY KEY,
    end_device_id           TEXT NOT NULL REFERENCES sep2_end_devices(id) ON DELETE CASCADE,
    device_lfdi             TEXT NOT NULL,
    mrid                    TEXT NOT NULL,
    description             TEXT,
    role_flags              TEXT NOT NULL,
    service_category_kind   BIGINT NOT NULL,
    status                  BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    UNIQUE (device_lfdi, mrid)
);
CREATE INDEX sep2_mirror_usage_points_end_device ON sep2_mirror_usage_points(end_device_id);

-- The MirrorMeterReadings of a usage point with the ReadingType they were created with
-- (JSON), which later posts of bare Readings are interpreted by. The readings themselves
-- go to the readings table.
CREATE TABLE sep2_mirror_meter_readings (
    mup_id          TEXT NOT NULL REFERENCES sep2_mirror_usage_points(id) ON DELETE CASCADE,
    mrid            TEXT NOT NULL,
    description     TEXT,
    reading_type    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (mup_id, mrid)
);

-- Responses (2030.5 Response / DERControlResponse) to controls. No foreign key to the
-- EndDevice: the record of what a device answered outlives the device's registration.
-- One row per control, device and status, so a retried POST is not stored twice.
CREATE TABLE sep2_responses (
    id                  TEXT PRIMARY KEY,
    control_id          TEXT NOT NULL REFERENCES controls(id),
    program_id          TEXT NOT NULL,
    end_device_id       TEXT NOT NULL,
    end_device_lfdi     TEXT NOT NULL,
    status              BIGINT NOT NULL,
    created_date_time   BIGINT NOT NULL,
    received_at         BIGINT NOT NULL,
    UNIQUE (control_id, end_device_lfdi, status)
);
CREATE INDEX sep2_responses_program ON sep2_responses(program_id, end_device_id);
