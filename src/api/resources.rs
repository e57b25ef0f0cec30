//! Generic create/read/update/list/delete handlers and their routes, for every registry
//! record type.

use super::body::{decode, from_value, read_limited, require_content_type};
use super::openapi::{DocBuilder, Operation, path_param, query_param};
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::registry::{Entity, RegistryError};
use crate::store::Value;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::collections::HashMap;

/// Default page size of list endpoints.
pub const DEFAULT_LIMIT: u32 = 100;

/// Registers the five operations of `E` on the router and in the OpenAPI document.
pub fn register<E: Entity>(api: &mut ApiBuilder) {
    let collection = format!("/api/v1/{}", E::COLLECTION);
    let item = format!("/api/v1/{}/{{key}}", E::COLLECTION);
    api.route(&collection, get(list::<E>).post(create::<E>));
    api.route(&item, get(read::<E>).patch(patch::<E>).delete(remove::<E>));
    document::<E>(&mut api.doc, &collection, &item, true);
}

/// Registers only list, read and delete of `E`: for records that devices create over a
/// protocol, which the operator inspects and clears but does not write.
pub fn register_read_delete<E: Entity>(api: &mut ApiBuilder) {
    let collection = format!("/api/v1/{}", E::COLLECTION);
    let item = format!("/api/v1/{}/{{key}}", E::COLLECTION);
    api.route(&collection, get(list::<E>));
    api.route(&item, get(read::<E>).delete(remove::<E>));
    document::<E>(&mut api.doc, &collection, &item, false);
}

/// Documents the operations of `E`; `writable` adds create and update.
fn document<E: Entity>(doc: &mut DocBuilder, collection: &str, item: &str, writable: bool) {
    let schema = doc.schema::<E>();
    let page = json!({
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": { "type": "array", "items": schema },
            "next_after": { "type": ["string", "null"], "description": "pass as `after` for the next page" }
        }
    });
    let mut params = vec![
        query_param(
            "limit",
            "page size (1-1000)",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_LIMIT }),
        ),
        query_param(
            "after",
            "return items whose key sorts after this one",
            json!({ "type": "string" }),
        ),
    ];
    for f in E::FILTERS {
        params.push(query_param(
            f.param,
            &format!("only {}s whose {} equals this", E::NAME, f.param),
            json!({ "type": "string" }),
        ));
    }
    let tag = E::COLLECTION;
    doc.add(
        "get",
        collection,
        Operation {
            summary: &format!("List {}", E::COLLECTION),
            tag,
            parameters: params,
            request: None,
            success: (200, "a page", Some(("application/json", page))),
            errors: &[400],
            authenticated: true,
        },
    );
    if writable {
        doc.add(
            "post",
            collection,
            Operation {
                summary: &format!("Create a {}", E::NAME),
                tag,
                parameters: vec![],
                request: Some(("application/json", schema.clone())),
                success: (
                    201,
                    "created; Location names it",
                    Some(("application/json", schema.clone())),
                ),
                errors: &[400, 409, 413, 415, 422],
                authenticated: true,
            },
        );
    }
    let key = vec![path_param("key", &format!("the {}'s {}", E::NAME, E::KEY))];
    doc.add(
        "get",
        item,
        Operation {
            summary: &format!("Read a {}", E::NAME),
            tag,
            parameters: key.clone(),
            request: None,
            success: (
                200,
                "the object",
                Some(("application/json", schema.clone())),
            ),
            errors: &[404],
            authenticated: true,
        },
    );
    if writable {
        doc.add(
            "patch",
            item,
            Operation {
                summary: &format!("Update a {} with a JSON merge patch (RFC 7396)", E::NAME),
                tag,
                parameters: key.clone(),
                request: Some(("application/merge-patch+json", json!({ "type": "object" }))),
                success: (
                    200,
                    "the updated object",
                    Some(("application/json", schema)),
                ),
                errors: &[400, 404, 409, 413, 415, 422],
                authenticated: true,
            },
        );
    }
    doc.add(
        "delete",
        item,
        Operation {
            summary: &format!("Delete a {}", E::NAME),
            tag,
            parameters: key,
            request: None,
            success: (204, "deleted", None),
            errors: &[404, 409],
            authenticated: true,
        },
    );
}

/// Parses `limit` and `after`, rejecting junk with 400.
pub fn paging(params: &mut HashMap<String, String>) -> Result<(Option<String>, u32), Problem> {
    let limit = match params.remove("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=crate::registry::MAX_PAGE).contains(l))
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "limit must be an integer from 1 to 1000, got '{l}'"
                ))
                .with_field("limit")
            })?,
    };
    Ok((params.remove("after"), limit))
}

/// [`paging`] for a list that takes no other query parameter: another is refused with 400.
pub fn paging_only(mut params: HashMap<String, String>) -> Result<(Option<String>, u32), Problem> {
    let page = paging(&mut params)?;
    if let Some(k) = params.keys().next() {
        return Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: limit, after"
        ))
        .with_field(k.clone()));
    }
    Ok(page)
}

async fn list<E: Entity>(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let (after, limit) = paging(&mut params)?;
    let mut filters: Vec<(&str, Value)> = Vec::new();
    for f in E::FILTERS {
        if let Some(v) = params.remove(f.param) {
            (f.check)(&v).map_err(|e| Problem::bad_request(e).with_field(f.param))?;
            filters.push((f.column, Value::Text(Some(v))));
        }
    }
    if let Some(unknown) = params.keys().next() {
        let known: Vec<&str> = E::FILTERS.iter().map(|f| f.param).collect();
        return Err(Problem::bad_request(format!(
            "unknown query parameter '{unknown}'; {} accepts limit, after, {}",
            E::COLLECTION,
            known.join(", ")
        ))
        .with_field(unknown.clone()));
    }
    let page = state
        .registry
        .list::<E>(&filters, after.as_deref(), limit)
        .await?;
    Ok(Json(page).into_response())
}

async fn create<E: Entity>(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let rec: E = decode(&bytes)?;
    let created = state.registry.create(rec).await?;
    let location = format!("/api/v1/{}/{}", E::COLLECTION, created.key());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

async fn read<E: Entity>(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let rec: E = state.registry.get(&key).await?;
    Ok(Json(rec).into_response())
}

async fn patch<E: Entity>(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    require_content_type(
        &headers,
        &["application/merge-patch+json", "application/json"],
    )?;
    let bytes = read_limited(body, state.body_limit).await?;
    let patch: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    if !patch.is_object() {
        return Err(Problem::bad_request("a merge patch must be a JSON object"));
    }
    let updated = state
        .registry
        .update::<E, _>(&key, |old| {
            let mut doc = serde_json::to_value(old)
                .map_err(|e| RegistryError::invalid(E::KEY, e.to_string()))?;
            merge_patch(&mut doc, &patch);
            from_value::<E>(doc)
                .map_err(|p| RegistryError::invalid(p.field.as_deref().unwrap_or(E::KEY), p.detail))
        })
        .await?;
    Ok(Json(updated).into_response())
}

async fn remove<E: Entity>(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    state.registry.delete::<E>(&key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Applies an RFC 7396 JSON merge patch: objects merge recursively, `null` removes a member,
/// anything else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl From<RegistryError> for Response {
    fn from(e: RegistryError) -> Self {
        Problem::from(e).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut doc = json!({"a": 1, "g": {"feeder": "F1", "substation": "S"}, "x": [1]});
        merge_patch(
            &mut doc,
            &json!({"a": null, "g": {"feeder": "F2"}, "x": [2]}),
        );
        assert_eq!(
            doc,
            json!({"g": {"feeder": "F2", "substation": "S"}, "x": [2]})
        );
    }
}
