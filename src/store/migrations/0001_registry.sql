-- Asset registry schema. Written in the SQL subset that SQLite and PostgreSQL share
-- (TEXT keys, BIGINT, DOUBLE PRECISION, booleans as 0/1) so one migration serves both.

CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    account_number  TEXT NOT NULL UNIQUE,
    subscriber_id   TEXT,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE sites (
    id                  TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES accounts(id),
    connection_point_id TEXT UNIQUE,
    territory           TEXT NOT NULL,
    interconnection_type TEXT NOT NULL,
    address             TEXT,
    substation          TEXT,
    feeder              TEXT,
    feeder_section      TEXT,
    transformer         TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX sites_account ON sites(account_id);
CREATE INDEX sites_topology ON sites(substation, feeder, feeder_section, transformer);
CREATE INDEX sites_feeder ON sites(feeder);
CREATE INDEX sites_territory ON sites(territory);

CREATE TABLE meters (
    id                  TEXT PRIMARY KEY,
    site_id             TEXT NOT NULL REFERENCES sites(id),
    mpid                TEXT NOT NULL UNIQUE,
    revenue_grade       BIGINT NOT NULL,
    interval_seconds    BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX meters_site ON meters(site_id);

CREATE TABLE ders (
    id              TEXT PRIMARY KEY,
    site_id         TEXT NOT NULL REFERENCES sites(id),
    der_class       TEXT NOT NULL,
    manufacturer    TEXT NOT NULL,
    model           TEXT NOT NULL,
    serial          TEXT NOT NULL,
    rated_kw        DOUBLE PRECISION NOT NULL,
    storage_kwh     DOUBLE PRECISION,
    reserve_pct     DOUBLE PRECISION,
    status          TEXT NOT NULL,
    aggregator_lfdi TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (manufacturer, serial)
);
CREATE INDEX ders_site ON ders(site_id);
CREATE INDEX ders_class ON ders(der_class);
CREATE INDEX ders_aggregator ON ders(aggregator_lfdi);

CREATE TABLE identities (
    lfdi            TEXT PRIMARY KEY,
    sfdi            BIGINT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    der_id          TEXT REFERENCES ders(id),
    description     TEXT,
    certificate_pem TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX identities_der ON identities(der_id);

CREATE TABLE programs (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL UNIQUE,
    description             TEXT,
    eligible_territories    TEXT NOT NULL,
    eligible_classes        TEXT NOT NULL,
    eligible_interconnections TEXT NOT NULL,
    min_rated_kw            DOUBLE PRECISION,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);

CREATE TABLE enrolments (
    id          TEXT PRIMARY KEY,
    program_id  TEXT NOT NULL REFERENCES programs(id),
    der_id      TEXT NOT NULL REFERENCES ders(id),
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (program_id, der_id)
);
CREATE INDEX enrolments_der ON enrolments(der_id);

CREATE TABLE der_groups (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    der_class       TEXT,
    program_id      TEXT REFERENCES programs(id),
    substation      TEXT,
    feeder          TEXT,
    feeder_section  TEXT,
    transformer     TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Materialized membership so "devices of group G" is one index range scan. Rows are
-- recomputed inside the transaction that changes a DER, a site's grid location, an
-- enrolment or a group definition.
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES der_groups(id) ON DELETE CASCADE,
    der_id      TEXT NOT NULL REFERENCES ders(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, der_id)
);
CREATE INDEX group_members_der ON group_members(der_id);
