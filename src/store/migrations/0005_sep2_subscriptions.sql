-- IEEE 2030.5 subscriptions: a client (EndDevice) asks to be notified when a resource it
-- can read changes. Notifications are pushed by the server's notifier; what was last sent
-- is kept in memory only, so nothing here changes on delivery.
--
-- seq is the {n} of /edev/{id}/sub/{n}. resource_kind and program_id restate what
-- subscribed_resource points at, so that the notifier can select the subscriptions a
-- change affects without parsing URIs in SQL. item_limit is the Subscription's `limit`
-- (a reserved word in SQL).

CREATE TABLE sep2_subscriptions (
    id                  TEXT PRIMARY KEY,
    end_device_id       TEXT NOT NULL REFERENCES sep2_end_devices(id) ON DELETE CASCADE,
    seq                 BIGINT NOT NULL,
    subscribed_resource TEXT NOT NULL,
    resource_kind       TEXT NOT NULL,
    program_id          TEXT,
    notification_uri    TEXT NOT NULL,
    encoding            BIGINT NOT NULL,
    level               TEXT NOT NULL,
    item_limit          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (end_device_id, seq)
);
CREATE INDEX sep2_subscriptions_program ON sep2_subscriptions(program_id);
