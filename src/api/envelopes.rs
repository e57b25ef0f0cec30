//! Operating-envelope endpoints beyond CRUD: cancelling a control, the responses devices
//! sent to a control, and asking which limits are in force for a site or DER at an instant.

use super::body::{decode, read_limited, require_content_type};
use super::openapi::{Operation, path_param, query_param};
use super::problem::Problem;
use super::resources::{DEFAULT_LIMIT, paging_only};
use super::{ApiBuilder, AppState};
use crate::domain::now_epoch;
use crate::envelope::records::{ControlRecord, InForceTarget, in_force};
use crate::protocol::sep2::responses::{ResponseRecord, responses_to_control};
use crate::registry::{Page, RegistryError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

/// Randomization seed of this deployment's controls. Fixed so that every node and every
/// restart computes the same per-device offsets.
pub const RANDOMIZATION_SEED: u64 = 0x5357_4954_4348_5944;

/// Registers the routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/controls/{key}/cancel", post(cancel));
    api.route("/api/v1/controls/{key}/responses", get(responses));
    api.route("/api/v1/envelopes/in-force", get(limits));
    let control = api.doc.schema::<ControlRecord>();
    api.doc.add(
        "post",
        "/api/v1/controls/{key}/cancel",
        Operation {
            summary: "Cancel a control; it stays visible to devices as Cancelled",
            tag: "controls",
            parameters: vec![path_param("key", "the control's mRID")],
            request: Some((
                "application/json",
                json!({ "type": "object", "properties": { "randomized": { "type": "boolean", "default": false } } }),
            )),
            success: (200, "the cancelled control", Some(("application/json", control))),
            errors: &[400, 404, 413, 415, 422],
            authenticated: true,
        },
    );
    let response = api.doc.schema::<ResponseRecord>();
    api.doc.add(
        "get",
        "/api/v1/controls/{key}/responses",
        Operation {
            summary: "The responses devices sent to a control (IEEE 2030.5 DERControlResponse: received, started, completed, opted out, rejected, ...)",
            tag: "controls",
            parameters: vec![
                path_param("key", "the control's mRID"),
                query_param(
                    "limit",
                    "page size (1-1000)",
                    json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_LIMIT }),
                ),
                query_param(
                    "after",
                    "return responses whose id sorts after this one",
                    json!({ "type": "string" }),
                ),
            ],
            request: None,
            success: (
                200,
                "a page of responses",
                Some((
                    "application/json",
                    json!({
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": { "type": "array", "items": response },
                            "next_after": { "type": ["string", "null"], "description": "pass as `after` for the next page" }
                        }
                    }),
                )),
            ),
            errors: &[400, 404],
            authenticated: true,
        },
    );
    api.doc.add(
        "get",
        "/api/v1/envelopes/in-force",
        Operation {
            summary: "The operating limits in force for a site or a DER at an instant, with the control or default each comes from",
            tag: "controls",
            parameters: vec![
                query_param("site_id", "a site (give this or der_id)", json!({ "type": "string" })),
                query_param("der_id", "a DER (give this or site_id)", json!({ "type": "string" })),
                query_param("at", "epoch seconds; default now", json!({ "type": "integer" })),
            ],
            request: None,
            success: (200, "the limits in force", Some(("application/json", json!({ "type": "object" })))),
            errors: &[400, 404],
            authenticated: true,
        },
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    randomized: bool,
}

async fn cancel(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ControlRecord>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let req: CancelBody = decode(&bytes)?;
    let now = now_epoch();
    let updated = state
        .registry
        .update::<ControlRecord, _>(&key, |c| {
            let mut c = c.clone();
            if c.cancelled_at.is_none() {
                c.cancelled_at = Some(now);
                c.cancel_randomized = req.randomized;
            }
            Ok(c)
        })
        .await?;
    Ok(Json(updated))
}

async fn responses(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Page<ResponseRecord>>, Problem> {
    let (after, limit) = paging_only(params)?;
    // 404 for an unknown control rather than an empty list.
    let control: ControlRecord = state.registry.get(&key).await?;
    let page = responses_to_control(state.registry.store(), &control.id, after.as_deref(), limit)
        .await
        .map_err(RegistryError::from)?;
    Ok(Json(page))
}

async fn limits(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let at = match params.remove("at") {
        Some(a) => a.parse::<i64>().map_err(|_| {
            Problem::bad_request(format!("at must be epoch seconds, got '{a}'")).with_field("at")
        })?,
        None => now_epoch(),
    };
    let target = match (params.remove("site_id"), params.remove("der_id")) {
        (Some(s), None) => InForceTarget::Site(s),
        (None, Some(d)) => InForceTarget::Der(d),
        _ => {
            return Err(
                Problem::bad_request("give exactly one of site_id and der_id")
                    .with_field("site_id"),
            );
        }
    };
    if let Some(k) = params.keys().next() {
        return Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: site_id, der_id, at"
        ))
        .with_field(k.clone()));
    }
    let answer = in_force(&state.registry, &target, at, RANDOMIZATION_SEED).await?;
    Ok(Json(serde_json::to_value(answer).map_err(|e| {
        Problem::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )
    })?))
}
