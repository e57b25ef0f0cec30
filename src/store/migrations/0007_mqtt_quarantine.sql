-- MQTT messages the ingest refused (not JSON, missing fields, unknown units, values that
-- are not numbers, acknowledgements for unknown commands), kept with the reason for the
-- operator. `payload` holds at most the first 4096 bytes (invalid UTF-8 replaced);
-- `payload_bytes` is the full size. Rows older than mqtt.quarantine_retention_days are
-- deleted by the ingest.

CREATE TABLE mqtt_quarantine (
    id            TEXT PRIMARY KEY,
    received_at   BIGINT NOT NULL,
    topic         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    payload       TEXT NOT NULL,
    payload_bytes BIGINT NOT NULL
);
CREATE INDEX mqtt_quarantine_received ON mqtt_quarantine(received_at);
