//! The MQTT ingest as the operator sees it: `GET /api/v1/mqtt/status` (connected or not,
//! why the last connection attempt failed, the counters) and `GET /api/v1/mqtt/quarantine`
//! (the messages refused, newest first, with their reasons).
//!
//! The status handler reads the ingest's monitor (`protocol::mqtt::IngestMonitor`), never
//! the connection itself, so reading it cannot slow the ingest. The quarantine lives in
//! the store and is listed whether or not the ingest runs in this process. Reads need any
//! token, like every operator read.

use super::openapi::{Operation, query_param};
use super::problem::Problem;
use super::resources::paging_only;
use super::{ApiBuilder, AppState};
use crate::protocol::mqtt::quarantine::{self, Quarantined};
use crate::protocol::mqtt::{ConnectionFailure, IngestStats};
use axum::Json;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// Body of `GET /api/v1/mqtt/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MqttStatus {
    /// Whether `switchyard serve` runs the MQTT ingest (`[mqtt] enabled`).
    pub enabled: bool,
    /// Whether the broker connection is up and subscribed.
    pub connected: bool,
    /// Why the last attempt to connect failed (TLS, refused by the broker, network),
    /// until a connect succeeds; null when connected or never failed.
    pub last_error: Option<ConnectionFailure>,
    /// The ingest's counters since the server started; null when the ingest is off.
    pub stats: Option<IngestStats>,
}

/// Body of `GET /api/v1/mqtt/quarantine`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuarantinePage {
    /// Refused messages, newest first.
    pub items: Vec<Quarantined>,
    /// Pass as `after` for the next (older) page; null on the last page.
    pub next_after: Option<String>,
}

/// Registers the routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/mqtt/status", get(status));
    api.route("/api/v1/mqtt/quarantine", get(quarantined));

    let doc = &mut api.doc;
    let status = doc.schema::<MqttStatus>();
    let page = doc.schema::<QuarantinePage>();
    doc.add(
        "get",
        "/api/v1/mqtt/status",
        Operation {
            summary: "The MQTT ingest: connected or not, why the last connection attempt failed, message and reading counters",
            tag: "mqtt",
            parameters: vec![],
            request: None,
            success: (200, "the ingest's state", Some(("application/json", status))),
            errors: &[],
            authenticated: true,
        },
    );
    doc.add(
        "get",
        "/api/v1/mqtt/quarantine",
        Operation {
            summary: "MQTT messages the ingest refused, newest first, each with the reason and the payload's first 4 KiB",
            tag: "mqtt",
            parameters: vec![
                query_param(
                    "limit",
                    "page size (1-1000)",
                    json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
                ),
                query_param(
                    "after",
                    "id of the last message of the previous page",
                    json!({ "type": "string" }),
                ),
            ],
            request: None,
            success: (
                200,
                "a page of refused messages",
                Some(("application/json", page)),
            ),
            errors: &[400],
            authenticated: true,
        },
    );
}

async fn status(State(state): State<AppState>) -> Json<MqttStatus> {
    Json(match &state.mqtt {
        Some(m) => MqttStatus {
            enabled: true,
            connected: m.connected(),
            last_error: m.last_error(),
            stats: Some(m.stats()),
        },
        None => MqttStatus {
            enabled: false,
            connected: false,
            last_error: None,
            stats: None,
        },
    })
}

async fn quarantined(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<QuarantinePage>, Problem> {
    let (after, limit) = paging_only(params)?;
    let (items, next_after) = quarantine::page(state.registry.store(), after.as_deref(), limit)
        .await
        .map_err(|e| Problem::from(crate::registry::RegistryError::Store(e)))?;
    Ok(Json(QuarantinePage { items, next_after }))
}
