-- IEEE 2030.5 EndDevices (registered in-band by certificate or out-of-band by the operator)
-- and the DER information they PUT (capability, settings, status, availability).

CREATE TABLE sep2_end_devices (
    id              TEXT PRIMARY KEY,
    lfdi            TEXT NOT NULL UNIQUE,
    sfdi            BIGINT NOT NULL,
    owner_lfdi      TEXT,
    der_id          TEXT REFERENCES ders(id),
    site_id         TEXT REFERENCES sites(id),
    enabled         BIGINT NOT NULL,
    pin             BIGINT,
    device_category TEXT,
    changed_time    BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX sep2_end_devices_owner ON sep2_end_devices(owner_lfdi);

CREATE TABLE sep2_der_resources (
    end_device_id   TEXT NOT NULL REFERENCES sep2_end_devices(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (end_device_id, kind)
);
