-- IEEE 2030.5 settings the utility changes at run time (docs/sep2.md):
--
-- sep2_poll_rates: the pollRate announced on one kind of resource (`resource` is its
-- 2030.5 name: DeviceCapability, EndDeviceList, FunctionSetAssignmentsList, ...). Kinds
-- without a row announce the configured default (sep2.poll_rate_seconds).
--
-- sep2_function_sets: a FunctionSetAssignments of its own for one DER program. A program
-- with a row here is served to the EndDevices it reaches in that FunctionSetAssignments
-- instead of in their default one (`/edev/{id}/fsa/1`). One per program.

CREATE TABLE sep2_poll_rates (
    resource   TEXT PRIMARY KEY,
    seconds    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sep2_function_sets (
    id          TEXT PRIMARY KEY,
    program_id  TEXT NOT NULL UNIQUE REFERENCES control_programs(id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
