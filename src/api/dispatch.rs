//! The dispatch endpoints: `POST /api/v1/dispatch` plans a dispatch request over the
//! registry's DERs under the envelopes in force, stores the plan's summary and returns it
//! (per-step delivery, shortfall and binding constraints) with each device's control
//! schedule, and hands the plan to the executor that delivers it to the devices.
//! `GET /api/v1/dispatch[/{id}]` reads stored plans; `GET /api/v1/dispatch/{id}/delivery`
//! what each device was told and what became of it; `POST /api/v1/dispatch/{id}/instructions`
//! takes `stop` and `limit` to a running plan. `GET /api/v1/groups/{id}/flex`
//! forecasts a group's baseline load and flexible capacity over a window.

use super::body::{decode, read_limited, require_content_type};
use super::envelopes::RANDOMIZATION_SEED;
use super::openapi::{Operation, path_param, query_param};
use super::problem::Problem;
use super::resources::paging_only;
use super::{ApiBuilder, AppState};
use crate::dispatch::delivery::{self, DeliveryRecord, PlanEvent};
use crate::dispatch::execute::{ExecuteError, OperatorInstruction, RunningState};
use crate::dispatch::forecast::FlexForecast;
use crate::dispatch::portfolio::{
    Assumptions, ForecastQuery, LoadNotes, PortfolioError, forecast_group, plan,
};
use crate::dispatch::records::{self, PlanRecord};
use crate::dispatch::{
    ControlSchedule, DispatchRequest, StepReport, activation_offsets, schedules,
};
use crate::domain::{EpochSeconds, now_epoch};
use crate::registry::{Page, RegistryError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchBody {
    pub request: DispatchRequest,
    #[serde(default)]
    pub assumptions: Assumptions,
}

/// The plan returned.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DispatchPlan {
    /// The stored plan's id (`GET /api/v1/dispatch/{id}`).
    pub id: String,
    pub request_id: String,
    /// The planned window: from the later of the request's start and now, to its end.
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    pub requested_kw: f64,
    /// Whether every step meets the request.
    pub feasible: bool,
    /// Energy the plan falls short by over the window, kWh.
    pub shortfall_kwh: f64,
    pub loaded: LoadNotes,
    pub assumptions: Assumptions,
    pub steps: Vec<StepReport>,
    pub schedules: Vec<ControlSchedule>,
}

/// Registers the route and documents it.
pub fn register(api: &mut ApiBuilder) {
    api.route("/api/v1/dispatch", post(create).get(list));
    api.route("/api/v1/dispatch/{key}", get(read));
    let rec = api.doc.schema::<PlanRecord>();
    api.doc.add(
        "get",
        "/api/v1/dispatch",
        Operation {
            summary: "Stored dispatch plans in creation order, paged",
            tag: "dispatch",
            parameters: vec![
                query_param(
                    "limit",
                    "page size (1-1000)",
                    json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
                ),
                query_param(
                    "after",
                    "return plans whose id sorts after this one",
                    json!({ "type": "string" }),
                ),
            ],
            request: None,
            success: (
                200,
                "a page of plans",
                Some((
                    "application/json",
                    json!({
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": { "type": "array", "items": rec.clone() },
                            "next_after": { "type": ["string", "null"] }
                        }
                    }),
                )),
            ),
            errors: &[400],
            authenticated: true,
        },
    );
    api.doc.add(
        "get",
        "/api/v1/dispatch/{key}",
        Operation {
            summary: "One stored dispatch plan",
            tag: "dispatch",
            parameters: vec![path_param("key", "the plan's id")],
            request: None,
            success: (200, "the plan", Some(("application/json", rec))),
            errors: &[404],
            authenticated: true,
        },
    );
    api.route("/api/v1/dispatch/{key}/delivery", get(delivery_status));
    api.route("/api/v1/dispatch/{key}/instructions", post(instruct));
    let status = api.doc.schema::<DeliveryStatusDoc>();
    api.doc.add(
        "get",
        "/api/v1/dispatch/{key}/delivery",
        Operation {
            summary: "What each device of a plan was told, through which channel, and what became of it (sent, acked, failed with the reason), with the plan's stop, limit, re-dispatch and end events",
            tag: "dispatch",
            parameters: vec![path_param("key", "the plan's id")],
            request: None,
            success: (200, "the delivery status", Some(("application/json", status))),
            errors: &[404],
            authenticated: true,
        },
    );
    let instruction = api.doc.schema::<OperatorInstruction>();
    let running = api.doc.schema::<RunningState>();
    api.doc.add(
        "post",
        "/api/v1/dispatch/{key}/instructions",
        Operation {
            summary: "Stop a running plan, or limit its total dispatch, from now on; the devices are told at once",
            tag: "dispatch",
            parameters: vec![path_param("key", "the plan's id")],
            request: Some(("application/json", instruction)),
            success: (200, "the plan's state after the instruction", Some(("application/json", running))),
            errors: &[400, 404, 409, 413, 415, 422],
            authenticated: true,
        },
    );
    api.route("/api/v1/groups/{key}/flex", get(flex));
    let fc = api.doc.schema::<FlexForecast>();
    let int = |d: &str| json!({ "type": "integer", "description": d });
    api.doc.add(
        "get",
        "/api/v1/groups/{key}/flex",
        Operation {
            summary: "Forecast a group's baseline load and flexible capacity (flex down and up, kW per step and kWh over the window) with P10/P50/P90, from load history and current state of charge",
            tag: "dispatch",
            parameters: vec![
                path_param("key", "the group's id"),
                query_param("start", "window start, epoch seconds (default now)", int("epoch seconds")),
                query_param("end", "window end, epoch seconds (default start + 4 h)", int("epoch seconds")),
                query_param("step_s", "step, seconds (60-3600, default 900)", int("seconds")),
                query_param("lookback_days", "days of history (1-60, default 14)", int("days")),
                query_param("self_consumption", "share of subscriber load batteries keep covering (0-1, default 0.5)", json!({ "type": "number" })),
                query_param("default_soc_pct", "state of charge for batteries without a recent reading (default 50)", json!({ "type": "number" })),
            ],
            request: None,
            success: (200, "the forecast", Some(("application/json", fc))),
            errors: &[400, 404, 422],
            authenticated: true,
        },
    );
    let body = api.doc.schema::<DispatchBody>();
    let out = api.doc.schema::<DispatchPlan>();
    api.doc.add(
        "post",
        "/api/v1/dispatch",
        Operation {
            summary: "Plan a dispatch request over a group or sites: per-step delivery, shortfall, binding constraints and per-device control schedules; the plan's summary is stored, nothing is sent to devices",
            tag: "dispatch",
            parameters: vec![],
            request: Some(("application/json", body)),
            success: (201, "the plan", Some(("application/json", out))),
            errors: &[400, 413, 415, 422],
            authenticated: true,
        },
    );
}

impl From<PortfolioError> for Problem {
    fn from(e: PortfolioError) -> Self {
        let detail = e.to_string();
        match e {
            PortfolioError::Request(r) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
                    .with_field(format!("request.{}", r.field()))
            }
            PortfolioError::BadAssumption { field, .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail)
                    .with_field(format!("assumptions.{field}"))
            }
            PortfolioError::NothingToDispatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "nothing-to-dispatch",
                detail,
            )
            .with_field("request.target"),
            PortfolioError::Registry(r) => r.into(),
            PortfolioError::Problem(_) | PortfolioError::Telemetry(_) => {
                let p = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; quote the correlation id to the operator",
                );
                tracing::error!(correlation_id = %p.correlation_id, error = %detail, "dispatch planning failed");
                p
            }
        }
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DispatchPlan>), Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let DispatchBody {
        request,
        assumptions,
    } = decode(&bytes)?;
    let now = now_epoch();
    let (problem, plan, loaded) = plan(
        &state.registry,
        &request,
        now,
        &assumptions,
        RANDOMIZATION_SEED,
    )
    .await?;
    let offsets = activation_offsets(&plan, request.ramp);
    let schedules = schedules(&plan, &problem, &offsets);
    let record = PlanRecord::of_plan(&request, &assumptions, &plan, now)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let id = record.id.clone();
    records::insert(state.registry.store(), &record)
        .await
        .map_err(RegistryError::from)?;
    if let Some(executor) = &state.dispatch {
        executor
            .submit(&id, request.clone(), problem, plan.clone(), &offsets)
            .await;
    }
    Ok((
        StatusCode::CREATED,
        Json(DispatchPlan {
            id,
            request_id: plan.request_id.clone(),
            start: plan.steps[0],
            end: *plan.steps.last().unwrap_or(&plan.steps[0]),
            requested_kw: plan.requested_kw,
            feasible: plan.feasible(),
            shortfall_kwh: plan.shortfall_kwh(),
            loaded,
            assumptions,
            steps: plan.report,
            schedules,
        }),
    ))
}

async fn list(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Page<PlanRecord>>, Problem> {
    let (after, limit) = paging_only(params)?;
    let mut items = records::list(state.registry.store(), after.as_deref(), limit + 1)
        .await
        .map_err(RegistryError::from)?;
    let next_after = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|p| p.id.clone())
    } else {
        None
    };
    Ok(Json(Page { items, next_after }))
}

async fn read(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<PlanRecord>, Problem> {
    records::get(state.registry.store(), &key)
        .await
        .map_err(RegistryError::from)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no dispatch plan '{key}'")))
}

fn param<T: std::str::FromStr>(
    params: &mut HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, Problem> {
    match params.remove(name) {
        None => Ok(None),
        Some(v) => v.parse::<T>().map(Some).map_err(|_| {
            Problem::bad_request(format!("{name} must be {what}, got '{v}'")).with_field(name)
        }),
    }
}

async fn flex(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Result<Json<FlexForecast>, Problem> {
    let now = now_epoch();
    let start = param::<i64>(&mut params, "start", "epoch seconds")?.unwrap_or(now);
    let end = param::<i64>(&mut params, "end", "epoch seconds")?.unwrap_or(start + 4 * 3600);
    let mut assumptions = Assumptions {
        step_s: 900,
        ..Assumptions::default()
    };
    if let Some(v) = param(&mut params, "step_s", "a whole number of seconds")? {
        assumptions.step_s = v;
    }
    if let Some(v) = param(&mut params, "self_consumption", "a number")? {
        assumptions.self_consumption = v;
    }
    if let Some(v) = param(&mut params, "default_soc_pct", "a number")? {
        assumptions.default_soc_pct = v;
    }
    let lookback_days =
        param::<u32>(&mut params, "lookback_days", "a whole number of days")?.unwrap_or(14);
    if let Some(k) = params.keys().next() {
        return Err(Problem::bad_request(format!(
            "unknown query parameter '{k}'; accepted: start, end, step_s, lookback_days, self_consumption, default_soc_pct"
        ))
        .with_field(k.clone()));
    }
    let q = ForecastQuery {
        group_id: key,
        start,
        end,
        lookback_days,
    };
    let f = forecast_group(&state.registry, &q, now, &assumptions, RANDOMIZATION_SEED)
        .await
        .map_err(|e| match e {
            // The path names the group: an unknown one is a missing resource here.
            PortfolioError::Request(crate::dispatch::RequestError::UnknownGroup(g)) => {
                Problem::not_found(format!("no group '{g}'"))
            }
            PortfolioError::Request(crate::dispatch::RequestError::NonPositiveDuration(_)) => {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    format!("end: must be after start ({start}), got {end}"),
                )
                .with_field("end")
            }
            PortfolioError::Request(r) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", r.to_string())
                    .with_field(r.field())
            }
            PortfolioError::BadAssumption { field, reason } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{field}: {reason}"),
            )
            .with_field(field),
            other => other.into(),
        })?;
    Ok(Json(f))
}

/// A plan's delivery status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryStatusDoc {
    pub plan_id: String,
    /// Whether the executor is running the plan now (it accepts instructions).
    pub running: bool,
    /// The running plan's state now, when running.
    pub state: Option<RunningState>,
    /// The latest delivery to each device, by DER id.
    pub devices: Vec<DeliveryRecord>,
    /// Every delivery, in the order made.
    pub history: Vec<DeliveryRecord>,
    /// Stop, limit, re-dispatch and end, in order.
    pub events: Vec<PlanEvent>,
}

async fn delivery_status(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<DeliveryStatusDoc>, Problem> {
    let store = state.registry.store();
    let plan = records::get(store, &key)
        .await
        .map_err(RegistryError::from)?
        .ok_or_else(|| Problem::not_found(format!("no dispatch plan '{key}'")))?;
    let history = delivery::deliveries(store, &plan.id)
        .await
        .map_err(RegistryError::from)?;
    let events = delivery::events(store, &plan.id)
        .await
        .map_err(RegistryError::from)?;
    let mut latest: std::collections::BTreeMap<String, DeliveryRecord> = Default::default();
    for d in &history {
        latest.insert(d.der_id.clone(), d.clone());
    }
    let running = match &state.dispatch {
        Some(e) => e.state(&plan.id, now_epoch()).await,
        None => None,
    };
    Ok(Json(DeliveryStatusDoc {
        plan_id: plan.id,
        running: running.is_some(),
        state: running,
        devices: latest.into_values().collect(),
        history,
        events,
    }))
}

async fn instruct(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RunningState>, Problem> {
    require_content_type(&headers, &["application/json"])?;
    let bytes = read_limited(body, state.body_limit).await?;
    let instruction: OperatorInstruction = decode(&bytes)?;
    if let OperatorInstruction::Limit { max_kw } = instruction
        && !(max_kw.is_finite() && max_kw >= 0.0)
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("max_kw: must be a finite, non-negative number of kW, got {max_kw}"),
        )
        .with_field("max_kw"));
    }
    let plan = records::get(state.registry.store(), &key)
        .await
        .map_err(RegistryError::from)?
        .ok_or_else(|| Problem::not_found(format!("no dispatch plan '{key}'")))?;
    let not_running =
        |detail: String| Problem::new(StatusCode::CONFLICT, "plan-not-running", detail);
    let Some(executor) = &state.dispatch else {
        return Err(not_running(
            "dispatch delivery is disabled ([dispatch] enabled = false)".into(),
        ));
    };
    match executor.instruct(&plan.id, instruction, now_epoch()).await {
        Ok(s) => Ok(Json(s)),
        Err(e @ ExecuteError::NotRunning(_)) | Err(e @ ExecuteError::Schedule(_)) => {
            Err(not_running(e.to_string()))
        }
        Err(ExecuteError::Store(e)) => Err(RegistryError::from(e).into()),
    }
}
