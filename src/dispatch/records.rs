//! Stored dispatch plans (`dispatch_plans`, migration 0006): what was asked, under which
//! assumptions, and what each step delivers. Written once when a plan is made; refused
//! requests leave no row. Ids are UUID v7, so id order is creation order.

use crate::domain::EpochSeconds;
use crate::store::record::{dynamic, float, int, text};
use crate::store::{Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;

/// One stored plan.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlanRecord {
    pub id: String,
    pub request_id: String,
    /// `operator`, `openadr_event` or `iso_instruction`.
    pub source_kind: String,
    /// `discharge` or `charge`.
    pub direction: String,
    pub power_kw: f64,
    pub window_start: EpochSeconds,
    pub window_end: EpochSeconds,
    pub feasible: bool,
    pub shortfall_kwh: f64,
    pub der_count: i64,
    /// The request and assumptions as planned.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// The per-step reports.
    #[schema(value_type = Vec<Object>)]
    pub steps: serde_json::Value,
    pub created_at: EpochSeconds,
}

impl PlanRecord {
    /// The record of a freshly made `plan` for `request` under `assumptions`, with a new
    /// id.
    pub fn of_plan(
        request: &super::DispatchRequest,
        assumptions: &super::portfolio::Assumptions,
        plan: &super::Plan,
        now: EpochSeconds,
    ) -> Result<PlanRecord, StoreError> {
        let json = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        Ok(PlanRecord {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: plan.request_id.clone(),
            source_kind: match request.source {
                super::RequestSource::Operator => "operator",
                super::RequestSource::OpenadrEvent { .. } => "openadr_event",
                super::RequestSource::IsoInstruction { .. } => "iso_instruction",
            }
            .into(),
            direction: match plan.direction {
                super::Direction::Discharge => "discharge".into(),
                super::Direction::Charge => "charge".into(),
            },
            power_kw: plan.requested_kw,
            window_start: plan.steps[0],
            window_end: *plan.steps.last().unwrap_or(&plan.steps[0]),
            feasible: plan.feasible(),
            shortfall_kwh: plan.shortfall_kwh(),
            der_count: plan.der_count as i64,
            body: json(serde_json::to_value(serde_json::json!({
                "request": request,
                "assumptions": assumptions,
            })))?,
            steps: json(serde_json::to_value(&plan.report))?,
            created_at: now,
        })
    }
}

const COLUMNS: &[&str] = &[
    "id",
    "request_id",
    "source_kind",
    "direction",
    "power_kw",
    "window_start",
    "window_end",
    "feasible",
    "shortfall_kwh",
    "der_count",
    "body",
    "steps",
    "created_at",
];

fn json(row: &AnyRow, col: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&text(row, col)?).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn from_row(row: &AnyRow) -> Result<PlanRecord, StoreError> {
    Ok(PlanRecord {
        id: text(row, "id")?,
        request_id: text(row, "request_id")?,
        source_kind: text(row, "source_kind")?,
        direction: text(row, "direction")?,
        power_kw: float(row, "power_kw")?,
        window_start: int(row, "window_start")?,
        window_end: int(row, "window_end")?,
        feasible: int(row, "feasible")? != 0,
        shortfall_kwh: float(row, "shortfall_kwh")?,
        der_count: int(row, "der_count")?,
        body: json(row, "body")?,
        steps: json(row, "steps")?,
        created_at: int(row, "created_at")?,
    })
}

/// Stores a plan.
pub async fn insert(store: &Store, r: &PlanRecord) -> Result<(), StoreError> {
    let marks: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO dispatch_plans ({}) VALUES ({})",
        COLUMNS.join(", "),
        marks.join(", ")
    );
    dynamic(sql)
        .bind(r.id.clone())
        .bind(r.request_id.clone())
        .bind(r.source_kind.clone())
        .bind(r.direction.clone())
        .bind(r.power_kw)
        .bind(r.window_start)
        .bind(r.window_end)
        .bind(i64::from(r.feasible))
        .bind(r.shortfall_kwh)
        .bind(r.der_count)
        .bind(r.body.to_string())
        .bind(r.steps.to_string())
        .bind(r.created_at)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// One plan by id.
pub async fn get(store: &Store, id: &str) -> Result<Option<PlanRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM dispatch_plans WHERE id = $1",
        COLUMNS.join(", ")
    );
    dynamic(sql)
        .bind(id.to_string())
        .fetch_optional(store.pool())
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// Plans in id (creation) order after `after`, at most `limit`.
pub async fn list(
    store: &Store,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<PlanRecord>, StoreError> {
    let sql = format!(
        "SELECT {} FROM dispatch_plans WHERE id > $1 ORDER BY id LIMIT {limit}",
        COLUMNS.join(", ")
    );
    dynamic(sql)
        .bind(after.unwrap_or("").to_string())
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(from_row)
        .collect()
}
