-- IEEE 2030.5 DER curves (DERCurve) of a control program, and the LogEvents devices post
-- to their EndDevice's LogEventList.
--
-- der_curves.points is the JSON array of {x, y, excitation} in the operator's units; the
-- multipliers are fixed when the curve is created, so what devices read never changes.
-- Optional bit/booleans are BIGINT (0/1) as elsewhere, so both engines share the schema.
-- Controls link curves by id inside their modes JSON; deleting a linked curve is refused
-- by the server, not by a foreign key.

CREATE TABLE der_curves (
    id                             TEXT PRIMARY KEY,
    program_id                     TEXT NOT NULL REFERENCES control_programs(id),
    description                    TEXT,
    curve_type                     TEXT NOT NULL,
    y_ref_type                     TEXT NOT NULL,
    points                         TEXT NOT NULL,
    x_multiplier                   BIGINT,
    y_multiplier                   BIGINT,
    autonomous_v_ref_enable        BIGINT,
    autonomous_v_ref_time_constant_s BIGINT,
    v_ref_percent                  DOUBLE PRECISION,
    open_loop_s                    DOUBLE PRECISION,
    ramp_dec_s                     DOUBLE PRECISION,
    ramp_inc_s                     DOUBLE PRECISION,
    ramp_pt1_s                     DOUBLE PRECISION,
    created_at                     BIGINT NOT NULL,
    updated_at                     BIGINT NOT NULL
);
CREATE INDEX der_curves_program ON der_curves(program_id, created_at);

-- seq orders events that share a createdDateTime (newest first, as they arrived).
CREATE TABLE sep2_log_events (
    id                TEXT PRIMARY KEY,
    end_device_id     TEXT NOT NULL REFERENCES sep2_end_devices(id) ON DELETE CASCADE,
    seq               BIGINT NOT NULL,
    created_date_time BIGINT NOT NULL,
    details           TEXT,
    extended_data     BIGINT,
    function_set      BIGINT NOT NULL,
    log_event_code    BIGINT NOT NULL,
    log_event_id      BIGINT NOT NULL,
    log_event_pen     BIGINT NOT NULL,
    profile_id        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX sep2_log_events_device ON sep2_log_events(end_device_id, created_date_time, seq);
