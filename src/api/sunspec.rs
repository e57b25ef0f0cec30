//! The SunSpec poller's live state: `GET /api/v1/sunspec/devices` and
//! `GET /api/v1/sunspec/devices/{key}`.
//!
//! The handlers only copy the poller's status board (`protocol::sunspec::status`); they
//! never talk Modbus, so reading the status cannot slow or disturb the polls. Reads need
//! any token, like every operator read. When `[sunspec]` is disabled the list answers
//! with `enabled: false` and no devices (a dashboard polling it keeps working), and a
//! single device is a 404 whose detail says the poller is off.

use super::openapi::{Operation, path_param, query_param};
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::domain::{EpochSeconds, now_epoch};
use crate::protocol::sunspec::status::{DeviceState, Health};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// Body of `GET /api/v1/sunspec/devices`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SunSpecDevices {
    /// Whether `switchyard serve` runs the SunSpec poller (`[sunspec] enabled`).
    pub enabled: bool,
    /// The server's clock when the list was taken, epoch seconds, to compare
    /// `next_poll_due` and `last_success` against.
    pub as_of: EpochSeconds,
    /// Every configured device (filtered by `health` when given), in configuration order.
    pub items: Vec<DeviceState>,
}

/// Registers the routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/sunspec/devices", get(list_devices));
    api.route("/api/v1/sunspec/devices/{key}", get(read_device));

    let doc = &mut api.doc;
    let list = doc.schema::<SunSpecDevices>();
    let one = doc.schema::<DeviceState>();
    doc.add(
        "get",
        "/api/v1/sunspec/devices",
        Operation {
            summary: "Every polled SunSpec device with its live state (last success, last failure, failures in a row, backoff, next poll, reported status, readings stored)",
            tag: "sunspec",
            parameters: vec![query_param(
                "health",
                "only devices in this state",
                json!({ "type": "string", "enum": ["pending", "ok", "failing"] }),
            )],
            request: None,
            success: (200, "the devices", Some(("application/json", list))),
            errors: &[400],
            authenticated: true,
        },
    );
    doc.add(
        "get",
        "/api/v1/sunspec/devices/{key}",
        Operation {
            summary: "One polled SunSpec device with its live state",
            tag: "sunspec",
            parameters: vec![path_param("key", "the device's source_id")],
            request: None,
            success: (200, "the device", Some(("application/json", one))),
            errors: &[404],
            authenticated: true,
        },
    );
}

fn parse_health(value: &str) -> Result<Health, Problem> {
    match value {
        "pending" => Ok(Health::Pending),
        "ok" => Ok(Health::Ok),
        "failing" => Ok(Health::Failing),
        other => Err(Problem::bad_request(format!(
            "unknown health '{other}'; one of pending, ok, failing"
        ))
        .with_field("health")),
    }
}

async fn list_devices(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<SunSpecDevices>, Problem> {
    let health = params
        .remove("health")
        .map(|h| parse_health(&h))
        .transpose()?;
    if let Some(k) = params.keys().next() {
        return Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: health"
        ))
        .with_field(k.clone()));
    }
    let items = state
        .sunspec
        .as_ref()
        .map(|s| s.devices())
        .unwrap_or_default()
        .into_iter()
        .filter(|d| health.is_none_or(|h| d.health == h))
        .collect();
    Ok(Json(SunSpecDevices {
        enabled: state.sunspec.is_some(),
        as_of: now_epoch(),
        items,
    }))
}

async fn read_device(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<DeviceState>, Problem> {
    let Some(board) = &state.sunspec else {
        return Err(Problem::not_found(format!(
            "no SunSpec device '{key}': the SunSpec poller is not enabled ([sunspec] enabled = false)"
        )));
    };
    board.device(&key).map(Json).ok_or_else(|| {
        Problem::not_found(format!(
            "no SunSpec device '{key}' is configured ([[sunspec.devices]] source_id)"
        ))
    })
}
