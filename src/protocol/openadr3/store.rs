//! Persistence of OpenADR 3 objects in the shared store (table `oadr3_objects`, migration
//! 0009), on SQLite and PostgreSQL alike.

use super::model::ObjectType;
use crate::store::record::{dynamic, text};
use crate::store::{Store, StoreError, Value};

/// One stored object: its JSON and the columns queries filter on.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub object_type: ObjectType,
    pub unique_key: Option<String>,
    pub program_id: Option<String>,
    pub event_id: Option<String>,
    pub client_name: Option<String>,
    pub client_id: Option<String>,
    pub body: String,
}

impl Row {
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.object_type.as_str().into(),
            self.unique_key.clone().into(),
            self.program_id.clone().into(),
            self.event_id.clone().into(),
            self.client_name.clone().into(),
            self.client_id.clone().into(),
            self.body.clone().into(),
        ]
    }
}

/// Inserts a new object.
pub async fn insert(store: &Store, row: &Row) -> Result<(), StoreError> {
    let mut q = dynamic(
        "INSERT INTO oadr3_objects (id, object_type, unique_key, program_id, event_id, \
         client_name, client_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            .into(),
    );
    for v in row.values() {
        q = v.bind_to(q);
    }
    q.execute(store.pool()).await?;
    Ok(())
}

/// Inserts or replaces a report together with the telemetry readings it carries, in one
/// transaction.
pub async fn save_report(
    store: &Store,
    row: &Row,
    replace: bool,
    readings: &[crate::telemetry::Reading],
    now: crate::domain::EpochSeconds,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let sql = if replace {
        "UPDATE oadr3_objects SET object_type = $2, unique_key = $3, program_id = $4, \
         event_id = $5, client_name = $6, client_id = $7, body = $8 WHERE id = $1"
    } else {
        "INSERT INTO oadr3_objects (id, object_type, unique_key, program_id, event_id, \
         client_name, client_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    };
    let mut q = dynamic(sql.into());
    for v in row.values() {
        q = v.bind_to(q);
    }
    q.execute(&mut *tx).await?;
    crate::telemetry::insert_in(&mut tx, readings, now)
        .await
        .map_err(|e| match e {
            crate::telemetry::TelemetryError::Store(s) => s,
            // Readings are validated before they get here.
            other => StoreError::Corrupt(other.to_string()),
        })?;
    tx.commit().await?;
    Ok(())
}

/// Replaces a stored object (same id and type).
pub async fn update(store: &Store, row: &Row) -> Result<(), StoreError> {
    let mut q = dynamic(
        "UPDATE oadr3_objects SET object_type = $2, unique_key = $3, program_id = $4, \
         event_id = $5, client_name = $6, client_id = $7, body = $8 WHERE id = $1"
            .into(),
    );
    for v in row.values() {
        q = v.bind_to(q);
    }
    q.execute(store.pool()).await?;
    Ok(())
}

/// Deletes objects by id, in one transaction.
pub async fn delete(store: &Store, ids: &[String]) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    for id in ids {
        dynamic("DELETE FROM oadr3_objects WHERE id = $1".into())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The JSON bodies of every object of `kind`, in id order.
pub async fn load(store: &Store, kind: ObjectType) -> Result<Vec<String>, StoreError> {
    let rows = dynamic("SELECT body FROM oadr3_objects WHERE object_type = $1 ORDER BY id".into())
        .bind(kind.as_str().to_string())
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(|r| text(r, "body")).collect()
}

/// The JSON body of the report `id`, and the client that owns it.
pub async fn get_report(store: &Store, id: &str) -> Result<Option<(String, String)>, StoreError> {
    let row = dynamic(
        "SELECT body, client_id FROM oadr3_objects WHERE object_type = 'REPORT' AND id = $1".into(),
    )
    .bind(id.to_string())
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| Ok((text(&r, "body")?, text(&r, "client_id")?)))
        .transpose()
}

/// Filters of a report search; `None` matches anything.
#[derive(Debug, Default)]
pub struct ReportFilter {
    pub program_id: Option<String>,
    pub event_id: Option<String>,
    pub client_name: Option<String>,
    /// Set for VEN callers: they see only their own reports.
    pub client_id: Option<String>,
}

/// Report bodies matching `filter`, in id order, after skipping `skip`.
pub async fn list_reports(
    store: &Store,
    filter: &ReportFilter,
    skip: u32,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut sql = "SELECT body FROM oadr3_objects WHERE object_type = 'REPORT'".to_string();
    let mut binds = Vec::new();
    for (col, v) in [
        ("program_id", &filter.program_id),
        ("event_id", &filter.event_id),
        ("client_name", &filter.client_name),
        ("client_id", &filter.client_id),
    ] {
        if let Some(v) = v {
            binds.push(v.clone());
            sql.push_str(&format!(" AND {col} = ${}", binds.len()));
        }
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {limit} OFFSET {skip}"));
    let mut q = dynamic(sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(store.pool()).await?;
    rows.iter().map(|r| text(r, "body")).collect()
}
