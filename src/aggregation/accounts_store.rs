//! Virtual metering accounts in the store: accounts, members and every computed revision
//! of each interval's allocation (table layout in migration 0010).
//!
//! Computing is [`super::accounts::consolidate`]'s job; this module only keeps what it
//! produced. [`record`] stores a new revision of an interval only when its audit differs
//! from the latest stored one, so recording the same consolidation twice changes nothing,
//! and late data shows up as revision 2, 3, ... with the earlier revisions kept.

use super::accounts::{AccountError, IntervalAudit, Member, VirtualAccount};
use crate::domain::EpochSeconds;
use crate::store::record::{dynamic, int, parsed, text};
use crate::store::{Store, StoreError};
use sqlx::Row;

/// Why an account could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    #[error(transparent)]
    Invalid(#[from] AccountError),
    #[error("virtual account {0:?} already exists")]
    AlreadyExists(String),
    #[error("no virtual account {0:?}")]
    UnknownAccount(String),
    #[error(
        "audit for interval {start} belongs to account rules or members other than {account:?}'s"
    )]
    Mismatch { account: String, start: i64 },
    #[error("{0} does not fit the store's 64-bit signed integers")]
    TooLarge(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AccountStoreError {
    fn from(e: sqlx::Error) -> Self {
        AccountStoreError::Store(StoreError::Database(e))
    }
}

fn signed(v: u64, what: &'static str) -> Result<i64, AccountStoreError> {
    i64::try_from(v).map_err(|_| AccountStoreError::TooLarge(what))
}

/// Store a new account and its members (validated first; nothing is written if invalid).
pub async fn create(
    store: &Store,
    account: &VirtualAccount,
    now: EpochSeconds,
) -> Result<(), AccountStoreError> {
    account.validate()?;
    let rate = signed(account.credit_rate_millicents_per_kwh, "credit rate")?;
    let mut tx = store.begin_write().await?;
    let inserted = dynamic(
        "INSERT INTO virtual_accounts (id, interval_s, credit_rate_millicents_per_kwh, rule, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
            .to_string(),
    )
    .bind(account.id.clone())
    .bind(account.interval_s)
    .bind(rate)
    .bind(account.rule.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AccountStoreError::AlreadyExists(account.id.clone()));
    }
    for m in &account.members {
        dynamic(
            "INSERT INTO virtual_account_members (account_id, member_id, role, fixed_share, subscription_w) \
             VALUES ($1, $2, $3, $4, $5)"
                .to_string(),
        )
        .bind(account.id.clone())
        .bind(m.id.clone())
        .bind(m.role.as_str())
        .bind(signed(m.fixed_share, "fixed share")?)
        .bind(signed(m.subscription_w, "subscription")?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The account `id` with its members (ordered by id), if it exists.
pub async fn get(store: &Store, id: &str) -> Result<Option<VirtualAccount>, AccountStoreError> {
    let row = dynamic(
        "SELECT interval_s, credit_rate_millicents_per_kwh, rule FROM virtual_accounts WHERE id = $1".to_string(),
    )
    .bind(id.to_string())
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let members = dynamic(
        "SELECT member_id, role, fixed_share, subscription_w FROM virtual_account_members \
         WHERE account_id = $1 ORDER BY member_id"
            .to_string(),
    )
    .bind(id.to_string())
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(Member {
            id: text(r, "member_id")?,
            role: parsed(r, "role")?,
            fixed_share: int(r, "fixed_share")? as u64,
            subscription_w: int(r, "subscription_w")? as u64,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(VirtualAccount {
        id: id.to_string(),
        interval_s: int(&row, "interval_s")?,
        credit_rate_millicents_per_kwh: int(&row, "credit_rate_millicents_per_kwh")? as u64,
        rule: parsed(&row, "rule")?,
        members,
    }))
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordOutcome {
    /// Intervals stored for the first time.
    pub new: u64,
    /// Intervals whose allocation changed: stored as a new revision.
    pub revised: u64,
    /// Intervals identical to their latest stored revision: nothing written.
    pub unchanged: u64,
}

/// Store the audits of a consolidation of `account_id`, in one transaction.
pub async fn record(
    store: &Store,
    account_id: &str,
    audits: &[IntervalAudit],
    now: EpochSeconds,
) -> Result<RecordOutcome, AccountStoreError> {
    let account = get(store, account_id)
        .await?
        .ok_or_else(|| AccountStoreError::UnknownAccount(account_id.to_string()))?;
    let member_ids: Vec<&str> = account.members.iter().map(|m| m.id.as_str()).collect();
    for a in audits {
        let same_members = a.lines.len() == member_ids.len()
            && a.lines
                .iter()
                .all(|l| member_ids.contains(&l.member.as_str()));
        if a.rule != account.rule
            || a.rate_millicents_per_kwh != account.credit_rate_millicents_per_kwh
            || !same_members
        {
            return Err(AccountStoreError::Mismatch {
                account: account_id.to_string(),
                start: a.start,
            });
        }
    }
    let mut out = RecordOutcome::default();
    let mut tx = store.begin_write().await?;
    for a in audits {
        let json = serde_json::to_string(a).expect("audits serialize");
        let latest = dynamic(
            "SELECT revision, audit FROM virtual_account_intervals WHERE account_id = $1 AND interval_start = $2 \
             ORDER BY revision DESC LIMIT 1"
                .to_string(),
        )
        .bind(account_id.to_string())
        .bind(a.start)
        .fetch_optional(&mut *tx)
        .await?;
        let revision = match latest {
            Some(row) => {
                let stored: String = row.try_get("audit")?;
                if stored == json {
                    out.unchanged += 1;
                    continue;
                }
                out.revised += 1;
                row.try_get::<i64, _>("revision")? + 1
            }
            None => {
                out.new += 1;
                1
            }
        };
        dynamic(
            "INSERT INTO virtual_account_intervals (account_id, interval_start, revision, computed_at, \
             total_load_wh, total_generation_wh, credit_cents, audit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                .to_string(),
        )
        .bind(account_id.to_string())
        .bind(a.start)
        .bind(revision)
        .bind(now)
        .bind(signed(a.total_load_wh, "total load")?)
        .bind(signed(a.total_generation_wh, "total generation")?)
        .bind(a.credit_cents)
        .bind(json)
        .execute(&mut *tx)
        .await?;
        for l in &a.lines {
            dynamic(
                "INSERT INTO virtual_account_allocations (account_id, interval_start, revision, member_id, \
                 load_wh, generation_wh, credit_wh, credit_cents) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    .to_string(),
            )
            .bind(account_id.to_string())
            .bind(a.start)
            .bind(revision)
            .bind(l.member.clone())
            .bind(signed(l.load_wh, "member load")?)
            .bind(signed(l.generation_wh, "member generation")?)
            .bind(l.credit_wh)
            .bind(l.credit_cents)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// One stored revision of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevision {
    pub revision: i64,
    pub computed_at: EpochSeconds,
    pub audit: IntervalAudit,
}

/// Every revision of one interval, oldest first.
pub async fn history(
    store: &Store,
    account_id: &str,
    interval_start: i64,
) -> Result<Vec<StoredRevision>, AccountStoreError> {
    let rows = dynamic(
        "SELECT revision, computed_at, audit FROM virtual_account_intervals \
         WHERE account_id = $1 AND interval_start = $2 ORDER BY revision"
            .to_string(),
    )
    .bind(account_id.to_string())
    .bind(interval_start)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let audit: IntervalAudit = serde_json::from_str(&text(r, "audit")?)
                .map_err(|e| StoreError::Corrupt(format!("audit: {e}")))?;
            Ok(StoredRevision {
                revision: int(r, "revision")?,
                computed_at: int(r, "computed_at")?,
                audit,
            })
        })
        .collect()
}

/// A member's credit in one interval (latest revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCredit {
    pub interval_start: i64,
    pub revision: i64,
    pub credit_wh: i64,
    pub credit_cents: i64,
}

/// A member's credits for intervals starting in `[from, to)`, latest revision of each.
pub async fn member_credits(
    store: &Store,
    account_id: &str,
    member_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<MemberCredit>, AccountStoreError> {
    let rows = dynamic(
        "SELECT a.interval_start, a.revision, a.credit_wh, a.credit_cents FROM virtual_account_allocations a \
         WHERE a.account_id = $1 AND a.member_id = $2 AND a.interval_start >= $3 AND a.interval_start < $4 \
         AND a.revision = (SELECT MAX(i.revision) FROM virtual_account_intervals i \
                           WHERE i.account_id = a.account_id AND i.interval_start = a.interval_start) \
         ORDER BY a.interval_start"
            .to_string(),
    )
    .bind(account_id.to_string())
    .bind(member_id.to_string())
    .bind(from)
    .bind(to)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MemberCredit {
                interval_start: int(r, "interval_start")?,
                revision: int(r, "revision")?,
                credit_wh: int(r, "credit_wh")?,
                credit_cents: int(r, "credit_cents")?,
            })
        })
        .collect()
}
