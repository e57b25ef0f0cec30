-- Green Button Connect My Data (docs/greenbutton.md): the authorizations a Data Custodian
-- granted Switchyard as a Third Party, and how far each resource has been fetched.
--
-- greenbutton_authorizations: one row per named authorization. The tokens are kept so that
-- a restart does not need the customer to authorize again; refresh_token is used shortly
-- before expires_at (epoch seconds). resource_uri is the Batch/Subscription URL the Data
-- Custodian named in its token response. Tokens are secrets: protect the database.
CREATE TABLE greenbutton_authorizations (
    name              TEXT PRIMARY KEY,
    resource_uri      TEXT NOT NULL,
    authorization_uri TEXT,
    access_token      TEXT NOT NULL,
    refresh_token     TEXT,
    expires_at        BIGINT NOT NULL,
    scope             TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- greenbutton_sync: per fetched resource URL (a subscription or a bulk), the Data
-- Custodian's time of the last complete fetch (the next `updated-min`) and, as JSON, the
-- UsagePoints, MeterReadings and ReadingTypes seen so far, which later incremental feeds
-- refer to without repeating them. Updated in the transaction that stores the readings.
CREATE TABLE greenbutton_sync (
    url           TEXT PRIMARY KEY,
    updated_min   BIGINT,
    context       TEXT NOT NULL,
    last_fetch_at BIGINT NOT NULL,
    readings      BIGINT NOT NULL
);
