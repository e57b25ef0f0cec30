//! The settlement endpoints (docs/settlement.md):
//!
//! - `POST /api/v1/settlement/baseline`: one meter's baseline over a window (nothing stored).
//! - `POST /api/v1/settlement/performance`: an event's performance (a dispatch plan, or an
//!   ad hoc event), computed from meter interval data and stored.
//! - `GET /api/v1/settlement/performance/{event_id}`: the stored performance.
//! - `POST /api/v1/settlement/reconcile`: a settlement statement (CSV body) matched against
//!   stored performance; the discrepancy report is stored and returned.
//! - `GET /api/v1/settlement/reconciliations/{id}`: a stored report.
//!
//! Roles come from the token as everywhere in the operator API: reads need `read_only`,
//! the POSTs (which store results) `operator`.

use super::body::{decode, read_limited, require_content_type};
use super::openapi::{Operation, path_param, query_param};
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::domain::now_epoch;
use crate::settlement::{
    self, AggregatePerformance, Baseline, BaselineRequest, PerformanceRequest,
    ReconciliationReport, SettlementError, Tolerance,
};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;

impl From<SettlementError> for Problem {
    fn from(e: SettlementError) -> Self {
        let detail = e.to_string();
        let invalid = |kind: &str| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, kind, &*detail);
        match e {
            SettlementError::Invalid { field, .. } => invalid("invalid").with_field(field),
            SettlementError::Unknown { field, .. } => {
                invalid("missing-reference").with_field(field)
            }
            SettlementError::UnknownEvent(_) => {
                Problem::new(StatusCode::NOT_FOUND, "unknown-event", detail)
            }
            SettlementError::UnknownReconciliation(_) => Problem::not_found(detail),
            SettlementError::NoResources(_) => invalid("no-resources").with_field("event.target"),
            SettlementError::NoData { .. } => invalid("no-meter-data"),
            SettlementError::Baseline(b) => {
                let p = invalid("baseline");
                match b.field() {
                    Some(f) => p.with_field(format!("baseline.{f}")),
                    None => p,
                }
            }
            SettlementError::Statement(s) => {
                let p = invalid("invalid-statement");
                match s.column {
                    Some(c) => p.with_field(c),
                    None => p,
                }
            }
            SettlementError::Telemetry(_) | SettlementError::Store(_) => {
                let p = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; quote the correlation id to the operator",
                );
                tracing::error!(correlation_id = %p.correlation_id, error = %detail, "settlement failed");
                p
            }
        }
    }
}

/// Registers the routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/settlement/baseline", post(baseline));
    api.route("/api/v1/settlement/performance", post(performance));
    api.route(
        "/api/v1/settlement/performance/{key}",
        get(read_performance),
    );
    api.route("/api/v1/settlement/reconcile", post(reconcile));
    api.route(
        "/api/v1/settlement/reconciliations/{key}",
        get(read_reconciliation),
    );
    let breq = api.doc.schema::<BaselineRequest>();
    let bout = api.doc.schema::<Baseline>();
    api.doc.add(
        "post",
        "/api/v1/settlement/baseline",
        Operation {
            summary: "One revenue meter's \"high X of Y\" baseline with same-day adjustment over a window, from its interval data; nothing is stored",
            tag: "settlement",
            parameters: vec![],
            request: Some(("application/json", breq)),
            success: (200, "the baseline, with the days looked at and the adjustment applied", Some(("application/json", bout))),
            errors: &[400, 413, 415, 422],
            authenticated: true,
        },
    );
    let preq = api.doc.schema::<PerformanceRequest>();
    let pout = api.doc.schema::<AggregatePerformance>();
    api.doc.add(
        "post",
        "/api/v1/settlement/performance",
        Operation {
            summary: "Compute an event's performance (a stored dispatch plan, or an ad hoc event over a group, sites or meters): delivered = baseline - metered per interval, per meter and for the aggregate, vs requested; the result is stored, replacing an earlier one for the event",
            tag: "settlement",
            parameters: vec![],
            request: Some(("application/json", preq)),
            success: (200, "the performance", Some(("application/json", pout.clone()))),
            errors: &[400, 404, 413, 415, 422],
            authenticated: true,
        },
    );
    api.doc.add(
        "get",
        "/api/v1/settlement/performance/{key}",
        Operation {
            summary: "The stored performance of an event",
            tag: "settlement",
            parameters: vec![path_param(
                "key",
                "the event id (a dispatch plan id or an ad hoc event id)",
            )],
            request: None,
            success: (200, "the performance", Some(("application/json", pout))),
            errors: &[404],
            authenticated: true,
        },
    );
    let rout = api.doc.schema::<ReconciliationReport>();
    let number = |d: &str| json!({ "type": "number", "minimum": 0, "description": d });
    api.doc.add(
        "post",
        "/api/v1/settlement/reconcile",
        Operation {
            summary: "Match a settlement statement (CSV: event_id,resource_id,delivered_kwh[,baseline_kwh][,metered_kwh]) against the stored performance of its events and flag discrepancies above the tolerance with their reason; the report is stored. A malformed statement is refused naming the line and column, and nothing is stored",
            tag: "settlement",
            parameters: vec![
                query_param("tolerance_kwh", "absolute tolerance, kWh (default 0.1)", number("kWh")),
                query_param("tolerance_pct", "relative tolerance, percent of the computed figure (default 1); the larger of the two applies", number("percent")),
            ],
            request: Some(("text/csv", json!({ "type": "string" }))),
            success: (201, "the discrepancy report", Some(("application/json", rout.clone()))),
            errors: &[400, 413, 415, 422],
            authenticated: true,
        },
    );
    api.doc.add(
        "get",
        "/api/v1/settlement/reconciliations/{key}",
        Operation {
            summary: "A stored reconciliation report",
            tag: "settlement",
            parameters: vec![path_param("key", "the report's id")],
            request: None,
            success: (200, "the report", Some(("application/json", rout))),
            errors: &[404],
            authenticated: true,
        },
    );
}

async fn baseline(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Baseline>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let req: BaselineRequest = decode(&bytes)?;
    Ok(Json(
        settlement::baseline_for_meter(state.registry.store(), &req).await?,
    ))
}

async fn performance(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AggregatePerformance>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let req: PerformanceRequest = decode(&bytes)?;
    Ok(Json(
        settlement::performance(state.registry.store(), &req, now_epoch()).await?,
    ))
}

async fn read_performance(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<AggregatePerformance>, Problem> {
    Ok(Json(
        settlement::get_performance(state.registry.store(), &key).await?,
    ))
}

async fn reconcile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(mut params): Query<HashMap<String, String>>,
    body: Body,
) -> Result<(StatusCode, Json<ReconciliationReport>), Problem> {
    let mut tolerance = Tolerance::default();
    for (name, slot) in [
        ("tolerance_kwh", &mut tolerance.abs_kwh),
        ("tolerance_pct", &mut tolerance.pct),
    ] {
        if let Some(v) = params.remove(name) {
            *slot = v.parse().map_err(|_| {
                Problem::bad_request(format!("{name} must be a number, got '{v}'")).with_field(name)
            })?;
        }
    }
    if let Some(k) = params.keys().next() {
        return Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: tolerance_kwh, tolerance_pct"
        ))
        .with_field(k.clone()));
    }
    require_content_type(&headers, &["text/csv"])?;
    let bytes = read_limited(body, state.import_limit).await?;
    let report =
        settlement::reconcile_statement(state.registry.store(), &bytes, tolerance, now_epoch())
            .await?;
    Ok((StatusCode::CREATED, Json(report)))
}

async fn read_reconciliation(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ReconciliationReport>, Problem> {
    Ok(Json(
        settlement::get_reconciliation(state.registry.store(), &key).await?,
    ))
}
