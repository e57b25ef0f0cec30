//! Endpoints beyond plain CRUD: group members and aggregates, identity resolution, the ISO
//! enrolment inventory export and CSV asset import.

use super::body::{read_limited, require_content_type};
use super::openapi::{DocBuilder, Operation, path_param, query_param};
use super::problem::Problem;
use super::resources::paging;
use super::{ApiBuilder, AppState};
use crate::domain::IdentityKind;
use crate::domain::identity::Lfdi;
use crate::registry::import::ImportReport;
use crate::registry::inventory::{self, InventoryRow};
use crate::registry::model::{Der, GroupAggregate};
use crate::registry::{Page, RegistryError};
use crate::store::Value;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;

/// Registers the extra routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/groups/{key}/members", get(group_members));
    api.route("/api/v1/groups/{key}/aggregate", get(group_aggregate));
    api.route("/api/v1/identities/{key}/devices", get(identity_devices));
    api.route("/api/v1/exports/iso-inventory", get(iso_inventory));
    api.route("/api/v1/imports/assets", post(import_assets));

    let doc = &mut api.doc;
    let der = doc.schema::<Der>();
    let page = json!({
        "type": "object", "required": ["items"],
        "properties": { "items": { "type": "array", "items": der }, "next_after": { "type": ["string", "null"] } }
    });
    let paging_params = vec![
        path_param("key", "the group's id"),
        query_param(
            "limit",
            "page size (1-1000)",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
        ),
        query_param(
            "after",
            "DER id to continue after",
            json!({ "type": "string" }),
        ),
    ];
    doc.add(
        "get",
        "/api/v1/groups/{key}/members",
        Operation {
            summary: "DERs that are members of a group",
            tag: "groups",
            parameters: paging_params,
            request: None,
            success: (200, "a page of DERs", Some(("application/json", page))),
            errors: &[400, 404],
            authenticated: true,
        },
    );
    let agg = doc.schema::<GroupAggregate>();
    doc.add(
        "get",
        "/api/v1/groups/{key}/aggregate",
        Operation {
            summary: "A group's DER count, rated power and storage energy",
            tag: "groups",
            parameters: vec![path_param("key", "the group's id")],
            request: None,
            success: (200, "the aggregate", Some(("application/json", agg))),
            errors: &[404],
            authenticated: true,
        },
    );
    doc.add("get", "/api/v1/identities/{key}/devices", Operation {
        summary: "The DERs a certificate identity speaks for (its own DER, or every DER of an aggregator)",
        tag: "identities",
        parameters: vec![path_param("key", "the LFDI (40 hex characters)")],
        request: None,
        success: (200, "the DERs", Some(("application/json", json!({ "type": "array", "items": der })))),
        errors: &[400, 404],
        authenticated: true,
    });
    let row = doc.schema::<InventoryRow>();
    doc.add(
        "get",
        "/api/v1/exports/iso-inventory",
        Operation {
            summary: "ISO/RTO enrolment inventory (PJM, ISO-NE, NYISO fields) of every DER",
            tag: "exports",
            parameters: vec![
                query_param(
                    "format",
                    "json (default) or csv",
                    json!({ "type": "string", "enum": ["json", "csv"] }),
                ),
                query_param(
                    "program_id",
                    "only DERs enrolled in this program",
                    json!({ "type": "string" }),
                ),
            ],
            request: None,
            success: (
                200,
                "the inventory",
                Some(("application/json", json!({ "type": "array", "items": row }))),
            ),
            errors: &[400],
            authenticated: true,
        },
    );
    let report = doc.schema::<ImportReport>();
    doc.add(
        "post",
        "/api/v1/imports/assets",
        Operation {
            summary: "Import an asset CSV (columns in docs/operator-api.md); all rows or none",
            tag: "imports",
            parameters: vec![],
            request: Some(("text/csv", json!({ "type": "string" }))),
            success: (
                200,
                "every row imported",
                Some(("application/json", report)),
            ),
            errors: &[400, 413, 415, 422],
            authenticated: true,
        },
    );
}

/// Documents the unauthenticated endpoints.
pub fn document_public(doc: &mut DocBuilder) {
    doc.add(
        "get",
        "/healthz",
        Operation {
            summary: "Liveness probe",
            tag: "health",
            parameters: vec![],
            request: None,
            success: (
                200,
                "the server is up",
                Some(("text/plain", json!({ "type": "string" }))),
            ),
            errors: &[],
            authenticated: false,
        },
    );
    doc.add(
        "get",
        "/openapi.json",
        Operation {
            summary: "This document",
            tag: "health",
            parameters: vec![],
            request: None,
            success: (
                200,
                "the OpenAPI document",
                Some(("application/json", json!({ "type": "object" }))),
            ),
            errors: &[],
            authenticated: false,
        },
    );
}

fn no_extra_params(params: &HashMap<String, String>, accepted: &str) -> Result<(), Problem> {
    match params.keys().next() {
        Some(k) => Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: {accepted}"
        ))
        .with_field(k.clone())),
        None => Ok(()),
    }
}

async fn group_members(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<Page<Der>>, Problem> {
    let (after, limit) = paging(&mut params)?;
    no_extra_params(&params, "limit, after")?;
    Ok(Json(
        state
            .registry
            .group_members(&key, after.as_deref(), limit)
            .await?,
    ))
}

async fn group_aggregate(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<GroupAggregate>, Problem> {
    Ok(Json(state.registry.group_aggregate(&key).await?))
}

async fn identity_devices(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Vec<Der>>, Problem> {
    let lfdi: Lfdi = key
        .parse()
        .map_err(|e: crate::domain::identity::IdentityError| {
            Problem::bad_request(e.to_string()).with_field("key")
        })?;
    let not_found = || Problem::not_found(format!("identity '{}' not found", lfdi));
    let binding = state
        .registry
        .identities()
        .lookup(&lfdi)
        .ok_or_else(not_found)?;
    let ders = match (binding.kind, binding.der_id) {
        (IdentityKind::Device, Some(der_id)) => vec![state.registry.get::<Der>(&der_id).await?],
        (IdentityKind::Device, None) => Vec::new(),
        (IdentityKind::Aggregator, _) => {
            // An aggregator may own more DERs than one page holds; collect them all.
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = state
                    .registry
                    .list::<Der>(
                        &[("aggregator_lfdi", Value::Text(Some(lfdi.to_hex())))],
                        after.as_deref(),
                        crate::registry::MAX_PAGE,
                    )
                    .await?;
                all.extend(page.items);
                match page.next_after {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            all
        }
    };
    Ok(Json(ders))
}

async fn iso_inventory(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let format = params.remove("format").unwrap_or_else(|| "json".into());
    let program = params.remove("program_id");
    no_extra_params(&params, "format, program_id")?;
    let rows = inventory::collect(state.registry.store(), program.as_deref())
        .await
        .map_err(RegistryError::from)?;
    match format.as_str() {
        "json" => Ok(Json(rows).into_response()),
        "csv" => {
            let text = inventory::to_csv(&rows).map_err(|e| {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"iso-inventory.csv\"",
                    ),
                ],
                text,
            )
                .into_response())
        }
        other => Err(
            Problem::bad_request(format!("format must be json or csv, got '{other}'"))
                .with_field("format"),
        ),
    }
}

async fn import_assets(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    require_content_type(&headers, &["text/csv"])?;
    let bytes = read_limited(body, state.import_limit).await?;
    let report = crate::registry::import::import_csv(&state.registry, &bytes[..], None).await?;
    if report.rejected.is_empty() {
        Ok(Json(report).into_response())
    } else {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-rows",
            format!("{} bad rows; nothing was imported", report.rejected.len()),
        );
        p.errors = report
            .rejected
            .iter()
            .map(|r| crate::registry::Violation {
                field: format!("row {}: {}", r.line, r.column),
                reason: r.reason.clone(),
            })
            .collect();
        Err(p)
    }
}
