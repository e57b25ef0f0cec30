//! Bulk telemetry ingest over the operator API: `POST /api/v1/telemetry` answers only
//! after the readings are committed, so a 200 is a promise that they survive a crash.
//!
//! For integrations that have no protocol of their own (a historian export, a script, a
//! head-end system): the body is `{"readings": [...]}` in the engine's reading model (SI
//! units, epoch seconds). The whole batch is checked before anything is queued; one bad
//! reading refuses the batch (422 naming it) and nothing is written. Readings already
//! stored count as duplicates and are not stored again, so a client that lost a response
//! may simply send the batch again.

use super::body::{decode, read_limited, require_content_type};
use super::openapi::Operation;
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::domain::now_epoch;
use crate::telemetry::{Reading, TelemetryError};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/telemetry`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBatch {
    /// The readings, at most as many as the import body limit allows.
    pub readings: Vec<Reading>,
}

/// The answer to a committed batch.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
pub struct TelemetryReceipt {
    /// Readings in the batch; all of them are now stored.
    pub accepted: u64,
    /// Readings stored by this request.
    pub inserted: u64,
    /// Readings that were already stored (same source, measurand and instant).
    pub duplicates: u64,
}

/// Registers the route and documents it.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/telemetry", post(ingest));
    let batch = api.doc.schema::<TelemetryBatch>();
    let receipt = api.doc.schema::<TelemetryReceipt>();
    api.doc.add(
        "post",
        "/api/v1/telemetry",
        Operation {
            summary: "Store a batch of readings; answers after the commit (all or nothing)",
            tag: "telemetry",
            parameters: vec![],
            request: Some(("application/json", batch)),
            success: (
                200,
                "every reading is stored (new or already there)",
                Some(("application/json", receipt)),
            ),
            errors: &[400, 413, 415, 422, 503],
            authenticated: true,
        },
    );
}

async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TelemetryReceipt>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.import_limit).await?;
    let batch: TelemetryBatch = decode(&bytes)?;
    // Checked here, with the reading's position, before anything is queued: the writer
    // checks again, but could only say what was wrong, not where.
    let now = now_epoch();
    for (i, r) in batch.readings.iter().enumerate() {
        if let Err(e) = r.validate(now) {
            return Err(refused(i, &e));
        }
    }
    let accepted = batch.readings.len() as u64;
    let outcome = state
        .telemetry
        .submit(batch.readings)
        .await
        .map_err(|e| match e {
            e if e.is_invalid_input() => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-reading",
                format!("{e}; nothing was stored"),
            ),
            e => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "telemetry-unavailable",
                format!("{e}; nothing was stored, send the batch again"),
            ),
        })?;
    Ok(Json(TelemetryReceipt {
        accepted,
        inserted: outcome.inserted,
        duplicates: outcome.duplicates,
    }))
}

/// 422 for reading `i`, naming the field at fault.
fn refused(i: usize, e: &TelemetryError) -> Problem {
    let field = match e {
        TelemetryError::NoSource { .. } => "source_id",
        TelemetryError::NotFinite { .. } | TelemetryError::NotAState { .. } => "value",
        _ => "instant",
    };
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-reading",
        format!("readings[{i}]: {e}; nothing was stored"),
    )
    .with_field(format!("readings[{i}].{field}"))
}
