-- Green Button Connect (docs/greenbutton.md): authorizations the operator has started but
-- the customer has not finished yet. `state` is the OAuth2 state sent to the Data Custodian
-- (256 random bits, hex); the redirect endpoint of `switchyard serve` takes the row out
-- (single use) and refuses a state that is unknown or past expires_at (epoch seconds).
CREATE TABLE greenbutton_pending (
    state      TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
