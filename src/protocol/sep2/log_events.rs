//! LogEvents: significant events a device reports about itself (a fault, a trip, a
//! firmware change), POSTed to its EndDevice's LogEventList and served back to it.
//!
//! Events are stored as plain fields ([`LogEventRecord`]), one row per event, and are
//! scoped to the EndDevice: another party's list is 404 like every other resource of that
//! EndDevice. The operator reads them through `/api/v1/log-events?end_device_id=...`.
//! Each EndDevice keeps its newest [`MAX_PER_DEVICE`] events (by arrival), so a chatty or
//! hostile device cannot grow the table without bound.

use super::model::{LogEvent, LogEventList};
use super::server::{
    ListQuery, Result, Sep2Error, Sep2State, body_bytes, caller, enabled_end_device, read_xml, xml,
};
use super::tls::PeerIdentity;
use crate::domain::EpochSeconds;
use crate::registry::RegistryError;
use crate::registry::entity::{Entity, Filter, Reference, text_filter};
use crate::registry::validate::Checker;
use crate::store::record::{dynamic, int, opt_text, text};
use crate::store::{Record, StoreError, Value};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

/// How many events each EndDevice keeps; older ones (by arrival) are dropped.
pub const MAX_PER_DEVICE: i64 = 1000;

/// The longest `details` 2030.5 allows (String32).
const MAX_DETAILS: usize = 32;

/// One LogEvent an EndDevice posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogEventRecord {
    /// 32 hexadecimal characters, the last segment of the event's 2030.5 href.
    #[serde(default)]
    #[schema(read_only)]
    pub id: String,
    /// The EndDevice (its SFDI) that posted the event.
    pub end_device_id: String,
    /// Arrival order within the EndDevice.
    #[serde(default)]
    #[schema(read_only)]
    pub seq: i64,
    /// When the event happened on the device, epoch seconds (2030.5 createdDateTime).
    pub created_date_time: EpochSeconds,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub extended_data: Option<u32>,
    /// Function set that logged it (2030.5 functionSet).
    pub function_set: u8,
    pub log_event_code: u8,
    pub log_event_id: u16,
    /// IANA private enterprise number of the code's owner (2030.5 logEventPEN).
    pub log_event_pen: u32,
    /// 0 general, 1 IEEE 2030.5, ... (2030.5 profileID).
    pub profile_id: u8,
    /// When the server received it.
    #[serde(default)]
    #[schema(read_only)]
    pub created_at: EpochSeconds,
    #[serde(default)]
    #[schema(read_only)]
    pub updated_at: EpochSeconds,
}

impl LogEventRecord {
    /// The event as the LogEvent document at `href`.
    pub fn to_doc(&self, href: String) -> LogEvent {
        LogEvent {
            href: Some(href),
            created_date_time: self.created_date_time,
            details: self.details.clone(),
            extended_data: self.extended_data,
            function_set: self.function_set,
            log_event_code: self.log_event_code,
            log_event_id: self.log_event_id,
            log_event_pen: self.log_event_pen,
            profile_id: self.profile_id,
        }
    }
}

fn narrow<T: TryFrom<i64>>(row: &AnyRow, col: &str) -> std::result::Result<T, StoreError> {
    T::try_from(int(row, col)?).map_err(|_| StoreError::Corrupt(col.to_string()))
}

impl Record for LogEventRecord {
    const TABLE: &'static str = "sep2_log_events";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "end_device_id",
        "seq",
        "created_date_time",
        "details",
        "extended_data",
        "function_set",
        "log_event_code",
        "log_event_id",
        "log_event_pen",
        "profile_id",
        "created_at",
        "updated_at",
    ];
    fn key(&self) -> &str {
        &self.id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            self.id.clone().into(),
            self.end_device_id.clone().into(),
            self.seq.into(),
            self.created_date_time.into(),
            self.details.clone().into(),
            Value::Int(self.extended_data.map(i64::from)),
            i64::from(self.function_set).into(),
            i64::from(self.log_event_code).into(),
            i64::from(self.log_event_id).into(),
            i64::from(self.log_event_pen).into(),
            i64::from(self.profile_id).into(),
            self.created_at.into(),
            self.updated_at.into(),
        ]
    }
    fn from_row(row: &AnyRow) -> std::result::Result<Self, StoreError> {
        use sqlx::Row;
        Ok(LogEventRecord {
            id: text(row, "id")?,
            end_device_id: text(row, "end_device_id")?,
            seq: int(row, "seq")?,
            created_date_time: int(row, "created_date_time")?,
            details: opt_text(row, "details")?,
            extended_data: row
                .try_get::<Option<i64>, _>("extended_data")?
                .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt("extended_data".into())))
                .transpose()?,
            function_set: narrow(row, "function_set")?,
            log_event_code: narrow(row, "log_event_code")?,
            log_event_id: narrow(row, "log_event_id")?,
            log_event_pen: narrow(row, "log_event_pen")?,
            profile_id: narrow(row, "profile_id")?,
            created_at: int(row, "created_at")?,
            updated_at: int(row, "updated_at")?,
        })
    }
}

impl Entity for LogEventRecord {
    const NAME: &'static str = "log event";
    const COLLECTION: &'static str = "log-events";
    const FILTERS: &'static [Filter] = &[text_filter("end_device_id")];

    crate::registry::entity::common_accessors!(id);
    fn canonical_key(key: &str) -> String {
        key.to_ascii_uppercase()
    }

    fn prepare(&mut self) -> std::result::Result<(), RegistryError> {
        crate::registry::entity::assign_mrid(&mut self.id);
        Ok(())
    }

    fn validate(&self, c: &mut Checker) {
        if let Some(d) = &self.details
            && d.chars().count() > MAX_DETAILS
        {
            c.fail(
                "details",
                format!("at most {MAX_DETAILS} characters (2030.5 String32)"),
            );
        }
    }

    fn references(&self) -> Vec<Reference> {
        vec![Reference {
            field: "end_device_id",
            table: "sep2_end_devices",
            kind: "end device",
            key_column: "id",
            value: self.end_device_id.clone(),
        }]
    }

    /// Numbers the event after the EndDevice's others, inside the write transaction.
    async fn before_insert(
        &mut self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<(), RegistryError> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM sep2_log_events WHERE end_device_id = $1")
                .bind(self.end_device_id.clone())
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::from)?;
        self.seq = last.unwrap_or(0) + 1;
        Ok(())
    }

    /// Keeps the EndDevice's newest [`MAX_PER_DEVICE`] events.
    async fn after_write(
        conn: &mut AnyConnection,
        _old: Option<&Self>,
        new: Option<&Self>,
    ) -> std::result::Result<(), StoreError> {
        if let Some(new) = new {
            sqlx::query("DELETE FROM sep2_log_events WHERE end_device_id = $1 AND seq <= $2")
                .bind(new.end_device_id.clone())
                .bind(new.seq - MAX_PER_DEVICE)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Routes of this function set.
pub fn routes() -> Router<Sep2State> {
    Router::new()
        .route("/edev/{edev}/lel", get(list).post(post))
        .route("/edev/{edev}/lel/{id}", get(item))
}

fn list_href(edev: &str) -> String {
    format!("/edev/{edev}/lel")
}

async fn list(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    // 2030.5 orders a LogEventList newest first.
    let sql = format!(
        "SELECT {} FROM sep2_log_events WHERE end_device_id = $1 AND created_date_time > $2 \
         ORDER BY created_date_time DESC, seq DESC",
        LogEventRecord::COLUMNS.join(", ")
    );
    let rows = dynamic(sql)
        .bind(ed.id.clone())
        .bind(q.a.unwrap_or(i64::MIN))
        .fetch_all(state.registry.store().pool())
        .await?;
    let events = rows
        .iter()
        .map(LogEventRecord::from_row)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (all, page) = q.window(events);
    let href = list_href(&ed.id);
    let docs: Vec<LogEvent> = page
        .iter()
        .map(|e| e.to_doc(format!("{href}/{}", e.id)))
        .collect();
    xml(
        &state,
        &LogEventList {
            href: Some(href),
            subscribable: Some(0),
            all,
            results: docs.len() as u32,
            poll_rate: Some(state.settings.poll_rate),
            log_events: docs,
        },
    )
}

async fn item(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path((id, event)): Path<(String, String)>,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let sql = format!(
        "SELECT {} FROM sep2_log_events WHERE end_device_id = $1 AND id = $2",
        LogEventRecord::COLUMNS.join(", ")
    );
    let row = dynamic(sql)
        .bind(ed.id.clone())
        .bind(event.to_ascii_uppercase())
        .fetch_optional(state.registry.store().pool())
        .await?
        .ok_or(Sep2Error::NotFound)?;
    let rec = LogEventRecord::from_row(&row)?;
    xml(
        &state,
        &rec.to_doc(format!("{}/{}", list_href(&ed.id), rec.id)),
    )
}

/// A device posts an event: 201 with its Location, or 400/413/415 with nothing stored.
async fn post(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let ed = enabled_end_device(&state, &caller(&state, &peer), &id).await?;
    let bytes = body_bytes(&state, body).await?;
    let doc: LogEvent = read_xml(&state, &headers, &bytes)?;
    let rec = state
        .registry
        .create(LogEventRecord {
            id: String::new(),
            end_device_id: ed.id.clone(),
            seq: 0,
            created_date_time: doc.created_date_time,
            details: doc.details,
            extended_data: doc.extended_data,
            function_set: doc.function_set,
            log_event_code: doc.log_event_code,
            log_event_id: doc.log_event_id,
            log_event_pen: doc.log_event_pen,
            profile_id: doc.profile_id,
            created_at: 0,
            updated_at: 0,
        })
        .await?;
    let location = format!("{}/{}", list_href(&ed.id), rec.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}
