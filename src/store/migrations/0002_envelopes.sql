-- Operating-envelope programs and controls, created by the utility through the operator
-- API and served to devices (IEEE 2030.5 DERProgram / DERControl / DefaultDERControl).
-- Cancelled and deleted controls keep their rows (cancelled_at set) so they are still
-- served as Cancelled.

CREATE TABLE control_programs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT,
    primacy         BIGINT NOT NULL,
    target_kind     TEXT NOT NULL,
    target_id       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX control_programs_target ON control_programs(target_kind, target_id);

CREATE TABLE controls (
    id                      TEXT PRIMARY KEY,
    program_id              TEXT NOT NULL REFERENCES control_programs(id),
    description             TEXT,
    start_at                BIGINT NOT NULL,
    duration_s              BIGINT NOT NULL,
    randomize_start_s       BIGINT NOT NULL,
    randomize_duration_s    BIGINT NOT NULL,
    modes                   TEXT NOT NULL,
    response_required       BIGINT NOT NULL,
    cancelled_at            BIGINT,
    cancel_randomized       BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX controls_program ON controls(program_id, start_at);

CREATE TABLE default_controls (
    program_id  TEXT PRIMARY KEY REFERENCES control_programs(id),
    modes       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
