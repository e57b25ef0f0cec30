//! `GET /api/v1/telemetry/latest`: the latest value of one measurand for a set of sources
//! (a group's DERs or listed source ids), as a control room asks it: which chargers are
//! off the grid now, which inverters report a fault, what each battery's state of charge
//! was last. State measurands carry the state's name beside its code, and can be filtered
//! by it (`state=fault`); sources that never reported are listed apart, since "no status"
//! is an answer too.

use super::openapi::{Operation, query_param};
use super::problem::Problem;
use super::telemetry::{EPOCH, group_member_ids, no_more, required, take};
use super::{ApiBuilder, AppState};
use crate::domain::{EpochSeconds, now_epoch};
use crate::telemetry::status::{state_name, state_names};
use crate::telemetry::{self, Measurand, Quality, SourceKind};
use axum::Json;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// The most sources one `source_id` list may name (a group may hold more).
pub const MAX_LISTED_SOURCES: usize = 1000;

/// One source's latest reading.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LatestReading {
    pub source_id: String,
    pub source_kind: SourceKind,
    /// When it was measured, epoch seconds.
    pub instant: EpochSeconds,
    /// The value in the measurand's unit (a state's code for a state measurand).
    pub value: f64,
    /// For a state measurand, the state's name (`fault`, `connected`, `charging`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    pub quality: Quality,
    /// Seconds between the reading and `at`: how stale it is.
    pub age_s: i64,
}

/// Body of `GET /api/v1/telemetry/latest`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LatestReadings {
    pub measurand: Measurand,
    /// The time the values are as of, epoch seconds (`at`, else the server's clock).
    pub at: EpochSeconds,
    /// The sources' latest readings at or before `at` (only those in `state` when given),
    /// in the order the sources were asked for.
    pub items: Vec<LatestReading>,
    /// Sources asked for that have no reading of the measurand at or before `at`.
    pub without_reading: Vec<String>,
}

/// Registers the route and documents it.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/telemetry/latest", get(latest));
    let doc = &mut api.doc;
    let body = doc.schema::<LatestReadings>();
    doc.add(
        "get",
        "/api/v1/telemetry/latest",
        Operation {
            summary: "The latest value of one measurand for a group's DERs or listed sources (state measurands with their state's name, filterable by state)",
            tag: "telemetry",
            parameters: vec![
                query_param(
                    "measurand",
                    "what to read, e.g. operating_state or active_power_w",
                    json!({ "type": "string" }),
                ),
                query_param(
                    "group",
                    "a group id: its member DERs are the sources (or give source_id)",
                    json!({ "type": "string" }),
                ),
                query_param(
                    "source_id",
                    "comma-separated source ids, at most 1000 (or give group)",
                    json!({ "type": "string" }),
                ),
                query_param(
                    "at",
                    "values as of this time, epoch seconds (default now)",
                    json!({ "type": "integer" }),
                ),
                query_param(
                    "state",
                    "state measurands only: keep sources whose latest state has this name",
                    json!({ "type": "string" }),
                ),
            ],
            request: None,
            success: (
                200,
                "the latest values",
                Some(("application/json", body)),
            ),
            errors: &[400, 404],
            authenticated: true,
        },
    );
}

async fn latest(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<LatestReadings>, Problem> {
    let measurand = required(
        take::<Measurand>(
            &mut params,
            "measurand",
            "a measurand such as operating_state",
        )?,
        "measurand",
    )?;
    let at = take::<i64>(&mut params, "at", EPOCH)?.unwrap_or_else(now_epoch);
    let wanted_state = params.remove("state");
    let group = params.remove("group");
    let listed = params.remove("source_id");
    no_more(&params, "measurand, group, source_id, at, state")?;
    if let Some(s) = &wanted_state {
        let names = state_names(measurand);
        if names.is_empty() {
            return Err(Problem::bad_request(format!(
                "state filters a state measurand (operating_state, grid_connected, storage_state), not {measurand}"
            ))
            .with_field("state"));
        }
        if !names.contains(&s.as_str()) {
            return Err(Problem::bad_request(format!(
                "state '{s}' is not a state of {measurand}; one of {}",
                names.join(", ")
            ))
            .with_field("state"));
        }
    }
    let sources = match (group, listed) {
        (Some(g), None) => group_member_ids(&state, &g).await?,
        (None, Some(list)) => {
            let ids: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if ids.iter().any(String::is_empty) {
                return Err(
                    Problem::bad_request("source_id holds an empty id").with_field("source_id")
                );
            }
            if ids.len() > MAX_LISTED_SOURCES {
                return Err(Problem::bad_request(format!(
                    "source_id lists {} sources; at most {MAX_LISTED_SOURCES} (use group for more)",
                    ids.len()
                ))
                .with_field("source_id"));
            }
            ids
        }
        _ => {
            return Err(
                Problem::bad_request("give exactly one of group and source_id").with_field("group"),
            );
        }
    };
    let found = telemetry::latest(state.registry.store(), &sources, measurand, at).await?;
    let mut without_reading = Vec::new();
    let mut found = found.into_iter().peekable();
    let mut items = Vec::new();
    // `latest` keeps the sources' order, so one pass pairs them.
    for id in &sources {
        match found.next_if(|r| &r.source_id == id) {
            Some(r) => {
                let name = state_name(r.measurand, r.value);
                if wanted_state.as_deref().is_none_or(|w| Some(w) == name) {
                    items.push(LatestReading {
                        age_s: at - r.instant,
                        state: name,
                        source_id: r.source_id,
                        source_kind: r.source_kind,
                        instant: r.instant,
                        value: r.value,
                        quality: r.quality,
                    });
                }
            }
            None => without_reading.push(id.clone()),
        }
    }
    Ok(Json(LatestReadings {
        measurand,
        at,
        items,
        without_reading,
    }))
}
