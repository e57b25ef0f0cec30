-- Virtual metering accounts (src/aggregation/accounts.rs): the account, its members and,
-- per interval, every computed allocation. An interval computed again (late or corrected
-- data) gets a new revision; earlier revisions stay, so what was credited, and why, can
-- always be shown. `audit` is the whole IntervalAudit as JSON; the allocation rows repeat
-- each member's credit so that members' statements are plain SQL.

CREATE TABLE virtual_accounts (
    id                             TEXT PRIMARY KEY,
    interval_s                     BIGINT NOT NULL,
    credit_rate_millicents_per_kwh BIGINT NOT NULL,
    rule                           TEXT NOT NULL,
    created_at                     BIGINT NOT NULL
);

CREATE TABLE virtual_account_members (
    account_id     TEXT NOT NULL REFERENCES virtual_accounts(id) ON DELETE CASCADE,
    member_id      TEXT NOT NULL,
    role           TEXT NOT NULL,
    fixed_share    BIGINT NOT NULL,
    subscription_w BIGINT NOT NULL,
    PRIMARY KEY (account_id, member_id)
);

CREATE TABLE virtual_account_intervals (
    account_id          TEXT NOT NULL REFERENCES virtual_accounts(id) ON DELETE CASCADE,
    interval_start      BIGINT NOT NULL,
    revision            BIGINT NOT NULL,
    computed_at         BIGINT NOT NULL,
    total_load_wh       BIGINT NOT NULL,
    total_generation_wh BIGINT NOT NULL,
    credit_cents        BIGINT NOT NULL,
    audit               TEXT NOT NULL,
    PRIMARY KEY (account_id, interval_start, revision)
);

CREATE TABLE virtual_account_allocations (
    account_id     TEXT NOT NULL,
    interval_start BIGINT NOT NULL,
    revision       BIGINT NOT NULL,
    member_id      TEXT NOT NULL,
    load_wh        BIGINT NOT NULL,
    generation_wh  BIGINT NOT NULL,
    credit_wh      BIGINT NOT NULL,
    credit_cents   BIGINT NOT NULL,
    PRIMARY KEY (account_id, interval_start, revision, member_id),
    FOREIGN KEY (account_id, interval_start, revision)
        REFERENCES virtual_account_intervals(account_id, interval_start, revision) ON DELETE CASCADE
);
CREATE INDEX virtual_account_allocations_member
    ON virtual_account_allocations(account_id, member_id, interval_start);
