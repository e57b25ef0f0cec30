//! Authorizations started but not finished: the OAuth2 `state` Switchyard sent to the Data
//! Custodian with the customer, kept (`greenbutton_pending`, migration 0025) until the
//! customer's browser comes back to the redirect URI.
//!
//! The redirect endpoint carries no bearer token (the customer's browser calls it), so the
//! state is what protects it: 256 random bits, single use (taken out of the table by the
//! one statement that reads it, so two requests with one state cannot both succeed), and
//! valid for `greenbutton.authorization_timeout_seconds` only.

use crate::domain::EpochSeconds;
use crate::store::Store;
use sqlx::Row;

/// Why a state coming back on the redirect is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error(
        "this authorization request is unknown or was already used; start again with `switchyard greenbutton connect authorize`"
    )]
    Unknown,
    #[error(
        "this authorization request for '{name}' expired (it was valid for {timeout_s} s); start again with `switchyard greenbutton connect authorize --name {name}`"
    )]
    Expired { name: String, timeout_s: i64 },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A fresh state: 256 bits from the operating system's generator, hex.
pub fn new_state() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// Remembers that authorization `name` was started with `state`, valid `timeout_s` seconds.
/// Expired entries are cleared on the way.
pub async fn remember(
    store: &Store,
    state: &str,
    name: &str,
    now: EpochSeconds,
    timeout_s: i64,
) -> Result<(), PendingError> {
    sqlx::query("DELETE FROM greenbutton_pending WHERE expires_at <= $1")
        .bind(now)
        .execute(store.pool())
        .await?;
    sqlx::query(
        "INSERT INTO greenbutton_pending (state, name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(state.to_string())
    .bind(name.to_string())
    .bind(now)
    .bind(now + timeout_s)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Takes `state` out (it can be used once) and returns the authorization name it was
/// started for, unless it is unknown, already used or expired.
pub async fn take(store: &Store, state: &str, now: EpochSeconds) -> Result<String, PendingError> {
    let row = sqlx::query(
        "DELETE FROM greenbutton_pending WHERE state = $1 \
         RETURNING name, created_at, expires_at",
    )
    .bind(state.to_string())
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else {
        return Err(PendingError::Unknown);
    };
    let name: String = row.try_get("name")?;
    let created: i64 = row.try_get("created_at")?;
    let expires: i64 = row.try_get("expires_at")?;
    if expires <= now {
        return Err(PendingError::Expired {
            name,
            timeout_s: expires - created,
        });
    }
    Ok(name)
}

/// Whether `state` is waiting (for tests and the operator).
pub async fn is_pending(store: &Store, state: &str) -> Result<bool, PendingError> {
    let row = sqlx::query("SELECT 1 AS one FROM greenbutton_pending WHERE state = $1")
        .bind(state.to_string())
        .fetch_optional(store.pool())
        .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_256_random_bits() {
        let a = new_state();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_state());
    }
}
