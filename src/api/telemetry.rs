//! Telemetry quality and live aggregate endpoints: the gap and lateness report, configured
//! reporting intervals, stored interval aggregates with the audit of their revisions by
//! late data, and a group's live estimate (virtual meter).
//!
//! Reads need any token and writes need `operator`, like every operator endpoint (the
//! role check is the router's middleware). Query parameters are checked before anything
//! is read: an unknown parameter, a malformed number or an empty range is a 400 that
//! names the parameter.

use super::body::{decode, read_limited, require_content_type};
use super::openapi::{Operation, path_param, query_param};
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::aggregation::live::{LiveError, LiveEstimate, LiveQuery, live_estimate};
use crate::aggregation::{AggregationError, EstimatorKind, ResponseModel};
use crate::domain::{EpochSeconds, now_epoch};
use crate::registry::model::Der;
use crate::registry::{MAX_PAGE, RegistryError};
use crate::telemetry::align::{AlignError, Grid};
use crate::telemetry::gaps::{self, GapQuery, GapReport};
use crate::telemetry::revisions::{self, AggregateRow, ComputeRequest, Revision, RevisionQuery};
use crate::telemetry::{Measurand, TelemetryError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::str::FromStr;

/// Body of `POST /api/v1/telemetry/aggregates`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeBody {
    pub source_id: String,
    pub measurand: Measurand,
    /// `1s`, `1m`, `5m`, `15m` or `60m`.
    #[schema(value_type = String)]
    pub grid: Grid,
    /// Start of the range, on the grid.
    pub from: EpochSeconds,
    /// End of the range (exclusive), on the grid; intervals not yet closed are left out.
    pub to: EpochSeconds,
    /// Alignment rule: samples further apart are not joined (default 900).
    #[serde(default)]
    pub max_gap_s: Option<i64>,
}

/// Body of `PUT /api/v1/telemetry/sources/{key}/interval`.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntervalBody {
    /// Seconds between readings; `null` forgets the setting (the interval is inferred).
    pub expected_interval_s: Option<i64>,
}

impl From<TelemetryError> for Problem {
    fn from(e: TelemetryError) -> Self {
        let detail = e.to_string();
        let field = match &e {
            TelemetryError::EmptyRange { .. } | TelemetryError::RangeTooLong { .. } => "to",
            TelemetryError::NotPositive(f) => f,
            TelemetryError::Align(a) => match a {
                AlignError::UnknownGrid(_) => "grid",
                AlignError::OffGrid { field, .. } => field,
                AlignError::TooManyIntervals(_) => "to",
                AlignError::BadRule(f) => f,
                AlignError::BadRange { .. } => "to",
                AlignError::NotFinite(_) => "value",
            },
            TelemetryError::Store(inner) => {
                let p = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; quote the correlation id to the operator",
                );
                tracing::error!(correlation_id = %p.correlation_id, error = %inner, "store error");
                return p;
            }
            _ => "readings",
        };
        Problem::bad_request(detail).with_field(field)
    }
}

impl From<LiveError> for Problem {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::Registry(r) => r.into(),
            LiveError::Telemetry(t) => t.into(),
            LiveError::Aggregation(a) => {
                let field = match &a {
                    AggregationError::UnknownEstimator(_) => "estimator",
                    AggregationError::InvalidParam(p) => p,
                    AggregationError::InvalidModel(_) => "compliance",
                    _ => "group",
                };
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", a.to_string())
                    .with_field(field)
            }
        }
    }
}

/// Takes query parameter `name` and parses it.
pub(super) fn take<T: FromStr>(
    params: &mut HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, Problem> {
    match params.remove(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Problem::bad_request(format!("{name} must be {what}, got '{v}'")).with_field(name)
        }),
    }
}

pub(super) fn required<T>(v: Option<T>, name: &str) -> Result<T, Problem> {
    v.ok_or_else(|| {
        Problem::bad_request(format!("query parameter {name} is required")).with_field(name)
    })
}

pub(super) fn no_more(params: &HashMap<String, String>, accepted: &str) -> Result<(), Problem> {
    match params.keys().min() {
        Some(k) => Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: {accepted}"
        ))
        .with_field(k.clone())),
        None => Ok(()),
    }
}

pub(super) const EPOCH: &str = "an integer (epoch seconds)";

/// Registers the routes and documents them.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/telemetry/gaps", get(gaps_report));
    api.route(
        "/api/v1/telemetry/sources/{key}/interval",
        put(set_interval),
    );
    api.route(
        "/api/v1/telemetry/aggregates",
        get(read_aggregates).post(compute_aggregates),
    );
    api.route("/api/v1/telemetry/revisions", get(read_revisions));
    api.route("/api/v1/groups/{key}/estimate", get(group_estimate));

    let doc = &mut api.doc;
    let int = |d: &str| json!({ "type": "integer", "description": d });
    let report = doc.schema::<GapReport>();
    doc.add("get", "/api/v1/telemetry/gaps", Operation {
        summary: "Gap and lateness report per source over a range: expected interval (configured or inferred), missing intervals, late readings and how late",
        tag: "telemetry",
        parameters: vec![
            query_param("from", "range start, epoch seconds (required)", int("")),
            query_param("to", "range end, epoch seconds, exclusive (required; at most 31 days after from; clipped to now)", int("")),
            query_param("source_id", "only this source", json!({ "type": "string" })),
            query_param("group", "only the DERs of this group, including those that sent nothing", json!({ "type": "string" })),
            query_param("interval_s", "expected interval for every source, overriding configured and inferred ones", int("")),
            query_param("late_after_s", "a reading is late when it arrived more than this after its instant (default: its expected interval)", int("")),
            query_param("problems_only", "true: leave out sources with no gap and no late reading", json!({ "type": "boolean" })),
        ],
        request: None,
        success: (200, "the report", Some(("application/json", report))),
        errors: &[400, 404],
        authenticated: true,
    });
    let ib = doc.schema::<IntervalBody>();
    doc.add(
        "put",
        "/api/v1/telemetry/sources/{key}/interval",
        Operation {
            summary: "Configure a source's expected reporting interval (null forgets it); a configured source appears in gap reports even when silent",
            tag: "telemetry",
            parameters: vec![path_param("key", "the source id (a DER id for device telemetry)")],
            request: Some(("application/json", ib.clone())),
            success: (200, "the setting stored", Some(("application/json", ib))),
            errors: &[400, 415],
            authenticated: true,
        },
    );
    let row = doc.schema::<AggregateRow>();
    let rows = json!({ "type": "array", "items": row });
    let range_params = || {
        vec![
            query_param(
                "source_id",
                "the source (required)",
                json!({ "type": "string" }),
            ),
            query_param(
                "measurand",
                "e.g. active_power_w (required)",
                json!({ "type": "string" }),
            ),
            query_param(
                "grid",
                "1s, 1m, 5m, 15m or 60m (required)",
                json!({ "type": "string", "enum": ["1s", "1m", "5m", "15m", "60m"] }),
            ),
            query_param(
                "from",
                "intervals starting at or after, epoch seconds (required)",
                json!({ "type": "integer" }),
            ),
            query_param(
                "to",
                "intervals starting before, epoch seconds (required)",
                json!({ "type": "integer" }),
            ),
        ]
    };
    doc.add(
        "get",
        "/api/v1/telemetry/aggregates",
        Operation {
            summary: "Stored aligned interval aggregates of one source, measurand and grid",
            tag: "telemetry",
            parameters: range_params(),
            request: None,
            success: (
                200,
                "the aggregates",
                Some(("application/json", rows.clone())),
            ),
            errors: &[400],
            authenticated: true,
        },
    );
    let cb = doc.schema::<ComputeBody>();
    doc.add(
        "post",
        "/api/v1/telemetry/aggregates",
        Operation {
            summary: "Align a source's readings to a grid and store the closed intervals (kept ones are not overwritten; late data revises them with an audit row)",
            tag: "telemetry",
            parameters: vec![],
            request: Some(("application/json", cb)),
            success: (200, "the stored aggregates of the range", Some(("application/json", rows))),
            errors: &[400, 415],
            authenticated: true,
        },
    );
    let rev = doc.schema::<Revision>();
    doc.add(
        "get",
        "/api/v1/telemetry/revisions",
        Operation {
            summary: "The audit of aggregates revised by late data (old and new value, the reading that caused it, when), in revision order",
            tag: "telemetry",
            parameters: vec![
                query_param("source_id", "only this source", json!({ "type": "string" })),
                query_param("from", "intervals starting at or after, epoch seconds", int("")),
                query_param("to", "intervals starting before, epoch seconds", int("")),
                query_param("limit", "page size (1-1000)", json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
                query_param("after", "continue after this revision id", json!({ "type": "string" })),
            ],
            request: None,
            success: (200, "a page of revisions", Some(("application/json", json!({
                "type": "object", "required": ["items"],
                "properties": { "items": { "type": "array", "items": rev }, "next_after": { "type": ["string", "null"] } }
            })))),
            errors: &[400],
            authenticated: true,
        },
    );
    let est = doc.schema::<LiveEstimate>();
    doc.add("get", "/api/v1/groups/{key}/estimate", Operation {
        summary: "Live aggregate (virtual meter) of a group from its DERs' latest readings and the power commands in force, with an uncertainty band",
        tag: "groups",
        parameters: vec![
            path_param("key", "the group's id"),
            query_param("estimator", "latest-sum (default), subset-latest, ramp-adjusted, timeshifted or schedule-aware", json!({ "type": "string", "enum": ["latest-sum", "subset-latest", "ramp-adjusted", "timeshifted", "schedule-aware"] })),
            query_param("at", "instant to estimate for, epoch seconds (default now)", int("")),
            query_param("read_interval_s", "nominal read interval (default: inferred from the readings, else 60)", json!({ "type": "number" })),
            query_param("latency_s", "delay from measurement to arrival (default 0)", json!({ "type": "number" })),
            query_param("delay_s", "response model: delay before a device moves (default 0)", json!({ "type": "number" })),
            query_param("ramp_s", "response model: ramp duration (default 2)", json!({ "type": "number" })),
            query_param("compliance", "response model: probability a device follows a command (default 1)", json!({ "type": "number" })),
        ],
        request: None,
        success: (200, "the estimate", Some(("application/json", est))),
        errors: &[400, 404, 422],
        authenticated: true,
    });
}

pub(super) async fn group_member_ids(
    state: &AppState,
    group: &str,
) -> Result<Vec<String>, Problem> {
    state
        .registry
        .get::<crate::registry::model::Group>(group)
        .await?;
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state
            .registry
            .group_members(group, after.as_deref(), MAX_PAGE)
            .await?;
        ids.extend(page.items.into_iter().map(|d: Der| d.id));
        match page.next_after {
            Some(n) => after = Some(n),
            None => return Ok(ids),
        }
    }
}

async fn gaps_report(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<GapReport>, Problem> {
    let from = required(take::<i64>(&mut params, "from", EPOCH)?, "from")?;
    let to = required(take::<i64>(&mut params, "to", EPOCH)?, "to")?;
    let source_id = params.remove("source_id");
    let group = params.remove("group");
    let interval_s = take::<i64>(&mut params, "interval_s", "a positive integer")?;
    let late_after_s = take::<i64>(&mut params, "late_after_s", "a positive integer")?;
    let problems_only =
        take::<bool>(&mut params, "problems_only", "true or false")?.unwrap_or(false);
    no_more(
        &params,
        "from, to, source_id, group, interval_s, late_after_s, problems_only",
    )?;
    let mut q = GapQuery {
        from,
        to,
        source_id,
        interval_s,
        late_after_s,
        expected_sources: Vec::new(),
        only_expected: false,
        problems_only,
    };
    // Refuse a bad range before reading the group.
    gaps::validate(&q)?;
    if let Some(g) = group {
        q.expected_sources = group_member_ids(&state, &g).await?;
        q.only_expected = true;
    }
    Ok(Json(
        gaps::report(state.registry.store(), &q, now_epoch()).await?,
    ))
}

async fn set_interval(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IntervalBody>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let b: IntervalBody = decode(&bytes)?;
    gaps::set_expected_interval(
        state.registry.store(),
        &key,
        b.expected_interval_s,
        now_epoch(),
    )
    .await?;
    Ok(Json(b))
}

fn range_query(
    params: &mut HashMap<String, String>,
) -> Result<(String, Measurand, Grid, EpochSeconds, EpochSeconds), Problem> {
    let source_id = required(params.remove("source_id"), "source_id")?;
    let measurand = required(
        take::<Measurand>(params, "measurand", "a measurand such as active_power_w")?,
        "measurand",
    )?;
    let grid = required(
        take::<Grid>(params, "grid", "1s, 1m, 5m, 15m or 60m")?,
        "grid",
    )?;
    let from = required(take::<i64>(params, "from", EPOCH)?, "from")?;
    let to = required(take::<i64>(params, "to", EPOCH)?, "to")?;
    if to < from {
        return Err(TelemetryError::EmptyRange { from, to }.into());
    }
    Ok((source_id, measurand, grid, from, to))
}

async fn read_aggregates(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<AggregateRow>>, Problem> {
    let (source_id, measurand, grid, from, to) = range_query(&mut params)?;
    no_more(&params, "source_id, measurand, grid, from, to")?;
    Ok(Json(
        revisions::query(
            state.registry.store(),
            &source_id,
            measurand,
            grid,
            from,
            to,
        )
        .await?,
    ))
}

async fn compute_aggregates(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<AggregateRow>>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let b: ComputeBody = decode(&bytes)?;
    if b.source_id.trim().is_empty() {
        return Err(Problem::bad_request("source_id must not be empty").with_field("source_id"));
    }
    let req = ComputeRequest {
        source_id: b.source_id,
        measurand: b.measurand,
        grid: b.grid,
        from: b.from,
        to: b.to,
        max_gap_s: b.max_gap_s.unwrap_or(900),
    };
    Ok(Json(
        revisions::compute(state.registry.store(), &req, now_epoch()).await?,
    ))
}

async fn read_revisions(
    State(state): State<AppState>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<crate::registry::Page<Revision>>, Problem> {
    let (after, limit) = super::resources::paging(&mut params)?;
    let q = RevisionQuery {
        source_id: params.remove("source_id"),
        from: take::<i64>(&mut params, "from", EPOCH)?,
        to: take::<i64>(&mut params, "to", EPOCH)?,
        after,
        limit: limit + 1,
    };
    no_more(&params, "source_id, from, to, limit, after")?;
    let mut items = revisions::revisions(state.registry.store(), &q).await?;
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(crate::registry::Page { items, next_after }))
}

async fn group_estimate(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<LiveEstimate>, Problem> {
    let estimator = match params.remove("estimator") {
        None => EstimatorKind::LatestSum,
        Some(e) => e.parse().map_err(|err: AggregationError| {
            Problem::bad_request(err.to_string()).with_field("estimator")
        })?,
    };
    let number = "a number";
    let at = take::<i64>(&mut params, "at", EPOCH)?.unwrap_or_else(now_epoch);
    let read_interval_s = take::<f64>(&mut params, "read_interval_s", number)?;
    let latency_s = take::<f64>(&mut params, "latency_s", number)?.unwrap_or(0.0);
    let mut model = ResponseModel::default();
    if let Some(v) = take::<f64>(&mut params, "delay_s", number)? {
        model.delay_s = v;
    }
    if let Some(v) = take::<f64>(&mut params, "ramp_s", number)? {
        model.ramp_s = v;
    }
    if let Some(v) = take::<f64>(&mut params, "compliance", number)? {
        model.compliance = v;
    }
    no_more(
        &params,
        "estimator, at, read_interval_s, latency_s, delay_s, ramp_s, compliance",
    )?;
    if read_interval_s.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(
            Problem::bad_request("read_interval_s must be a positive number")
                .with_field("read_interval_s"),
        );
    }
    if !(latency_s.is_finite() && latency_s >= 0.0) {
        return Err(
            Problem::bad_request("latency_s must be a non-negative number").with_field("latency_s"),
        );
    }
    for (v, name) in [(model.delay_s, "delay_s"), (model.ramp_s, "ramp_s")] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(
                Problem::bad_request(format!("{name} must be a non-negative number"))
                    .with_field(name),
            );
        }
    }
    if !(0.0..=1.0).contains(&model.compliance) {
        return Err(
            Problem::bad_request("compliance must be between 0 and 1").with_field("compliance")
        );
    }
    let q = LiveQuery {
        group_id: key,
        estimator,
        at,
        read_interval_s,
        latency_s,
        model,
    };
    live_estimate(&state.registry, &q)
        .await
        .map(Json)
        .map_err(|e| match e {
            LiveError::Registry(RegistryError::NotFound { .. }) => {
                Problem::not_found(format!("group '{}' not found", q.group_id)).with_field("key")
            }
            other => other.into(),
        })
}
