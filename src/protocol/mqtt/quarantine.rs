//! The `mqtt_quarantine` table: messages the ingest refused, with the reason, for the
//! operator to inspect (with [`list`] or SQL, see docs/mqtt.md).

use crate::domain::EpochSeconds;
use crate::store::record::{dynamic, int, text};
use crate::store::{Store, StoreError};
use sqlx::AnyConnection;

/// Bytes of a refused payload kept in the table.
pub const KEPT_PAYLOAD_BYTES: usize = 4096;

/// One refused message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Quarantined {
    /// Time-ordered id (UUID v7).
    pub id: String,
    /// When it arrived, epoch seconds.
    pub received_at: EpochSeconds,
    /// The topic it was published on.
    pub topic: String,
    /// Why it was refused, naming the field or value at fault.
    pub reason: String,
    /// The payload's first [`KEPT_PAYLOAD_BYTES`] bytes, as text.
    pub payload: String,
    pub payload_bytes: i64,
}

impl Quarantined {
    pub fn new(topic: &str, payload: &[u8], reason: String, received_at: EpochSeconds) -> Self {
        let kept = &payload[..payload.len().min(KEPT_PAYLOAD_BYTES)];
        Quarantined {
            // v7: time-ordered, so listing by id lists by arrival.
            id: uuid::Uuid::now_v7().to_string(),
            received_at,
            topic: topic.to_string(),
            reason,
            payload: String::from_utf8_lossy(kept).replace('\0', "\u{FFFD}"),
            payload_bytes: payload.len() as i64,
        }
    }
}

/// Inserts `rows` on the caller's connection (inside its transaction).
pub async fn insert_in(conn: &mut AnyConnection, rows: &[Quarantined]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO mqtt_quarantine (id, received_at, topic, reason, payload, payload_bytes) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        let mut q = dynamic(sql);
        for r in chunk {
            q = q
                .bind(r.id.clone())
                .bind(r.received_at)
                .bind(r.topic.clone())
                .bind(r.reason.clone())
                .bind(r.payload.clone())
                .bind(r.payload_bytes);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes rows received before `before`.
pub async fn expire_in(conn: &mut AnyConnection, before: EpochSeconds) -> Result<u64, sqlx::Error> {
    Ok(
        dynamic("DELETE FROM mqtt_quarantine WHERE received_at < $1".to_string())
            .bind(before)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
    )
}

/// The newest `limit` quarantined messages, newest first.
pub async fn list(store: &Store, limit: u32) -> Result<Vec<Quarantined>, StoreError> {
    Ok(page(store, None, limit).await?.0)
}

/// Up to `limit` quarantined messages older than the one with id `after` (all when
/// `None`), newest first, and the id to continue after when there are more.
pub async fn page(
    store: &Store,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Quarantined>, Option<String>), StoreError> {
    const COLUMNS: &str = "SELECT id, received_at, topic, reason, payload, payload_bytes \
                           FROM mqtt_quarantine";
    // One row more than asked says whether there is a next page.
    let fetch = i64::from(limit) + 1;
    let q = match after {
        None => dynamic(format!("{COLUMNS} ORDER BY id DESC LIMIT $1")).bind(fetch),
        Some(a) => dynamic(format!("{COLUMNS} WHERE id < $1 ORDER BY id DESC LIMIT $2"))
            .bind(a.to_string())
            .bind(fetch),
    };
    let rows = q
        .fetch_all(store.pool())
        .await
        .map_err(StoreError::Database)?;
    let mut items = rows
        .iter()
        .map(|r| {
            Ok(Quarantined {
                id: text(r, "id")?,
                received_at: int(r, "received_at")?,
                topic: text(r, "topic")?,
                reason: text(r, "reason")?,
                payload: text(r, "payload")?,
                payload_bytes: int(r, "payload_bytes")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|q| q.id.clone())
    } else {
        None
    };
    Ok((items, next))
}
