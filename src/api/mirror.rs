//! Operator operations on the IEEE 2030.5 metering mirror beyond read and delete: setting
//! the postRate a MirrorUsagePoint announces, and clearing every usage point of one
//! EndDevice (a device replaced or re-commissioned starts with an empty mirror).
//!
//! Usage points are created by devices over 2030.5 (see `protocol::sep2::mirror`); readings
//! already stored stay in telemetry when their usage point is removed.

use super::body::{decode, read_limited, require_content_type};
use super::openapi::{Operation, path_param};
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::protocol::sep2::mirror::MirrorUsagePointRecord;
use crate::protocol::sep2::records::EndDeviceRecord;
use crate::registry::MAX_PAGE;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{delete, put};
use serde::Deserialize;
use serde_json::{Value, json};

/// Longest postRate the operator may set: one day. 2030.5 carries it as a UInt32, but a
/// device asked to post less than daily is a configuration mistake, not a setting.
const MAX_POST_RATE_S: u32 = 86_400;

/// Registers the routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route(
        "/api/v1/mirror-usage-points/{key}/post-rate",
        put(set_post_rate),
    );
    api.route(
        "/api/v1/end-devices/{key}/mirror-usage-points",
        delete(clear_usage_points),
    );
    let mup = api.doc.schema::<MirrorUsagePointRecord>();
    api.doc.add(
        "put",
        "/api/v1/mirror-usage-points/{key}/post-rate",
        Operation {
            summary: "Set the postRate (seconds between posts) a MirrorUsagePoint announces to its device; null returns it to the deployment's sep2.post_rate_seconds",
            tag: "mirror-usage-points",
            parameters: vec![path_param("key", "the usage point's id")],
            request: Some((
                "application/json",
                json!({
                    "type": "object",
                    "required": ["seconds"],
                    "properties": { "seconds": { "type": ["integer", "null"], "minimum": 1, "maximum": MAX_POST_RATE_S } }
                }),
            )),
            success: (200, "the usage point", Some(("application/json", mup))),
            errors: &[400, 404, 413, 415, 422],
            authenticated: true,
        },
    );
    api.doc.add(
        "delete",
        "/api/v1/end-devices/{key}/mirror-usage-points",
        Operation {
            summary: "Remove every MirrorUsagePoint of an EndDevice (its stored readings stay in telemetry)",
            tag: "end-devices",
            parameters: vec![path_param("key", "the EndDevice's id (its SFDI)")],
            request: None,
            success: (
                200,
                "how many usage points were removed",
                Some((
                    "application/json",
                    json!({ "type": "object", "required": ["deleted"], "properties": { "deleted": { "type": "integer" } } }),
                )),
            ),
            errors: &[404],
            authenticated: true,
        },
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostRateBody {
    /// Required, but may be null (back to the deployment default).
    seconds: Option<u32>,
}

async fn set_post_rate(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<MirrorUsagePointRecord>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    // `seconds` must be present even when null, so a typo cannot silently reset the rate.
    let raw: Value = decode(&bytes)?;
    if raw.get("seconds").is_none() {
        return Err(
            Problem::bad_request("seconds is required (null for the deployment default)")
                .with_field("seconds"),
        );
    }
    let req: PostRateBody = decode(&bytes)?;
    if let Some(s) = req.seconds
        && !(1..=MAX_POST_RATE_S).contains(&s)
    {
        return Err(Problem::bad_request(format!(
            "seconds must be between 1 and {MAX_POST_RATE_S}, got {s}"
        ))
        .with_field("seconds"));
    }
    let updated = state
        .registry
        .update::<MirrorUsagePointRecord, _>(&key, |m| {
            let mut m = m.clone();
            m.post_rate = req.seconds;
            Ok(m)
        })
        .await?;
    Ok(Json(updated))
}

async fn clear_usage_points(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, Problem> {
    // 404 for an unknown EndDevice rather than "nothing deleted".
    let ed: EndDeviceRecord = state.registry.get(&key).await?;
    let mut deleted = 0u64;
    loop {
        let page = state
            .registry
            .list::<MirrorUsagePointRecord>(
                &[("end_device_id", ed.id.clone().into())],
                None,
                MAX_PAGE,
            )
            .await?;
        if page.items.is_empty() {
            break;
        }
        // One by one through the registry, so each removal is announced like any other
        // delete (subscriptions, caches).
        for m in &page.items {
            match state.registry.delete::<MirrorUsagePointRecord>(&m.id).await {
                Ok(()) => deleted += 1,
                // Removed meanwhile (the device or another operator): already done.
                Err(crate::registry::RegistryError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Json(json!({ "deleted": deleted })))
}
