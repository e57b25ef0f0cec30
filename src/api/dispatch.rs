//! The dispatch endpoint: `POST /api/v1/dispatch` plans a dispatch request over the
//! registry's DERs under the envelopes in force and returns the plan (per-step delivery,
//! shortfall and binding constraints) with each device's control schedule. Planning only:
//! nothing is stored and nothing is sent to devices yet.

use super::body::{decode, read_limited, require_content_type};
use super::envelopes::RANDOMIZATION_SEED;
use super::openapi::Operation;
use super::problem::Problem;
use super::{ApiBuilder, AppState};
use crate::dispatch::portfolio::{Assumptions, LoadNotes, PortfolioError, plan};
use crate::dispatch::{
    ControlSchedule, DispatchRequest, StepReport, activation_offsets, schedules,
};
use crate::domain::{EpochSeconds, now_epoch};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::{Deserialize, Serialize};

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
    api.route("/api/v1/dispatch", post(create));
    let body = api.doc.schema::<DispatchBody>();
    let out = api.doc.schema::<DispatchPlan>();
    api.doc.add(
        "post",
        "/api/v1/dispatch",
        Operation {
            summary: "Plan a dispatch request over a group or sites: per-step delivery, shortfall, binding constraints and per-device control schedules (nothing is stored or sent)",
            tag: "dispatch",
            parameters: vec![],
            request: Some(("application/json", body)),
            success: (200, "the plan", Some(("application/json", out))),
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
) -> Result<Json<DispatchPlan>, Problem> {
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
    Ok(Json(DispatchPlan {
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
    }))
}
