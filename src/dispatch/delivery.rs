//! Stored delivery status of dispatch plans (migration 0017): one `dispatch_deliveries` row
//! per instruction handed to a device's channel, updated once with its outcome, and one
//! `dispatch_events` row per change of a running plan (stop, limit, re-dispatch, end).
//! Ids are UUID v7, so id order is the order things happened in.

use crate::domain::EpochSeconds;
use crate::store::record::{Value, dynamic, int, opt_float, opt_text, text};
use crate::store::{Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;

/// What became of one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Handed to the channel; the device has not confirmed (yet, or the protocol has no
    /// confirmation at this point: a 2030.5 device confirms with a Response on its own
    /// schedule).
    Sent,
    /// The device confirmed: an MQTT acknowledgement `applied`, or a SunSpec write read
    /// back with the value written.
    Acked,
    /// Not delivered, with the reason.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Acked => "acked",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "sent" => Ok(DeliveryStatus::Sent),
            "acked" => Ok(DeliveryStatus::Acked),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(StoreError::Corrupt(format!("delivery status '{other}'"))),
        }
    }
}

/// One instruction to one device and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub id: String,
    pub plan_id: String,
    pub der_id: String,
    /// `sep2`, `mqtt`, `sunspec`, or `none` when no channel reaches the device.
    pub channel: String,
    /// `hold` (keep `setpoint_kw` until `valid_until`) or `release` (the dispatch no longer
    /// asks anything of the device; earlier controls are withdrawn).
    pub instruction: String,
    /// Signed as in the envelope model: positive discharges or generates, kW.
    pub setpoint_kw: Option<f64>,
    pub valid_until: Option<EpochSeconds>,
    pub status: DeliveryStatus,
    /// Why it failed, or what the device said.
    pub reason: Option<String>,
    /// The channel's handle: the 2030.5 DERControl mRID, the MQTT command id.
    pub reference: Option<String>,
    pub created_at: EpochSeconds,
    pub updated_at: EpochSeconds,
}

/// One change of a running plan.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlanEvent {
    pub id: String,
    pub plan_id: String,
    pub at: EpochSeconds,
    /// `stop`, `limit`, `redispatch` or `ended`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

const DELIVERY_COLUMNS: &str = "id, plan_id, der_id, channel, instruction, setpoint_kw, \
    valid_until, status, reason, reference, created_at, updated_at";

fn delivery_from(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: text(row, "id")?,
        plan_id: text(row, "plan_id")?,
        der_id: text(row, "der_id")?,
        channel: text(row, "channel")?,
        instruction: text(row, "instruction")?,
        setpoint_kw: opt_float(row, "setpoint_kw")?,
        valid_until: sqlx::Row::try_get::<Option<i64>, _>(row, "valid_until")?,
        status: DeliveryStatus::parse(&text(row, "status")?)?,
        reason: opt_text(row, "reason")?,
        reference: opt_text(row, "reference")?,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
    })
}

/// Stores a new delivery row.
pub async fn insert_delivery(store: &Store, r: &DeliveryRecord) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO dispatch_deliveries ({DELIVERY_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    let mut q = dynamic(sql)
        .bind(r.id.clone())
        .bind(r.plan_id.clone())
        .bind(r.der_id.clone())
        .bind(r.channel.clone())
        .bind(r.instruction.clone());
    q = Value::Float(r.setpoint_kw).bind_to(q);
    q = Value::Int(r.valid_until).bind_to(q);
    q = q.bind(r.status.as_str().to_string());
    q = Value::Text(r.reason.clone()).bind_to(q);
    q = Value::Text(r.reference.clone()).bind_to(q);
    q.bind(r.created_at)
        .bind(r.updated_at)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Records a delivery's outcome.
pub async fn finish_delivery(
    store: &Store,
    id: &str,
    status: DeliveryStatus,
    reason: Option<String>,
    reference: Option<String>,
    at: EpochSeconds,
) -> Result<(), StoreError> {
    let mut q = dynamic(
        "UPDATE dispatch_deliveries SET status = $1, reason = $2, reference = $3, \
         updated_at = $4 WHERE id = $5"
            .to_string(),
    )
    .bind(status.as_str().to_string());
    q = Value::Text(reason).bind_to(q);
    q = Value::Text(reference).bind_to(q);
    q.bind(at)
        .bind(id.to_string())
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Every delivery of a plan, in the order they were made.
pub async fn deliveries(store: &Store, plan_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
    dynamic(format!(
        "SELECT {DELIVERY_COLUMNS} FROM dispatch_deliveries WHERE plan_id = $1 ORDER BY id"
    ))
    .bind(plan_id.to_string())
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(delivery_from)
    .collect()
}

/// Stores a plan event.
pub async fn insert_event(store: &Store, e: &PlanEvent) -> Result<(), StoreError> {
    dynamic(
        "INSERT INTO dispatch_events (id, plan_id, event_at, kind, detail) \
         VALUES ($1, $2, $3, $4, $5)"
            .to_string(),
    )
    .bind(e.id.clone())
    .bind(e.plan_id.clone())
    .bind(e.at)
    .bind(e.kind.clone())
    .bind(e.detail.to_string())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Every event of a plan, in order.
pub async fn events(store: &Store, plan_id: &str) -> Result<Vec<PlanEvent>, StoreError> {
    dynamic(
        "SELECT id, plan_id, event_at, kind, detail FROM dispatch_events \
         WHERE plan_id = $1 ORDER BY id"
            .to_string(),
    )
    .bind(plan_id.to_string())
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(PlanEvent {
            id: text(row, "id")?,
            plan_id: text(row, "plan_id")?,
            at: int(row, "event_at")?,
            kind: text(row, "kind")?,
            detail: serde_json::from_str(&text(row, "detail")?)
                .map_err(|e| StoreError::Corrupt(format!("detail: {e}")))?,
        })
    })
    .collect()
}
