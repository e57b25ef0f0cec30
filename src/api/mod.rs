//! The operator API: JSON over HTTP for administering the registry, with bearer-token
//! roles, RFC 7807 errors and an OpenAPI document generated alongside the routes.

// Handlers return `Result<_, Problem>`; the error path is cold and a boxed problem would
// only add noise at every `?`, so the large-error lint is relaxed for this layer.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod body;
pub mod dispatch;
pub mod envelopes;
pub mod extras;
pub mod mirror;
pub mod mqtt;
pub mod openapi;
pub mod problem;
pub mod resources;
pub mod settlement;
pub mod sunspec;
pub mod telemetry;
pub mod telemetry_ingest;

use crate::envelope::curve_records::DerCurveRecord;
use crate::envelope::records::{ControlProgram, ControlRecord, DefaultControlRecord};
use crate::protocol::sep2::log_events::LogEventRecord;
use crate::protocol::sep2::mirror::MirrorUsagePointRecord;
use crate::protocol::sep2::records::EndDeviceRecord;
use crate::registry::Registry;
use crate::registry::model::{Account, Der, Enrolment, Group, Identity, Meter, Program, Site};
use auth::Authenticator;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use openapi::DocBuilder;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub auth: Arc<Authenticator>,
    /// Largest accepted request body, bytes.
    pub body_limit: usize,
    /// Largest accepted CSV import body, bytes (imports are legitimately large).
    pub import_limit: usize,
    /// The dispatch executor, when `switchyard serve` runs one.
    pub dispatch: Option<crate::dispatch::execute::Executor>,
    /// The durable telemetry writer (bulk ingest answers after its commit).
    pub telemetry: crate::telemetry::TelemetryWriter,
    /// The SunSpec poller's live state, when `[sunspec]` is enabled.
    pub sunspec: Option<crate::protocol::sunspec::status::PollStatus>,
    /// The MQTT ingest's connection state and counters, when `[mqtt]` is enabled.
    pub mqtt: Option<crate::protocol::mqtt::IngestMonitor>,
}

/// Collects routes and their documentation together.
pub struct ApiBuilder {
    router: Router<AppState>,
    pub doc: DocBuilder,
}

impl ApiBuilder {
    /// Adds a route; its documentation is added by the caller through `doc`.
    pub fn route(&mut self, path: &str, handler: MethodRouter<AppState>) {
        let router = std::mem::take(&mut self.router);
        self.router = router.route(path, handler);
    }
}

/// Builds the whole operator API router for `state`.
pub fn router(state: AppState) -> Router {
    let mut api = ApiBuilder {
        router: Router::new(),
        doc: DocBuilder::default(),
    };
    resources::register::<Account>(&mut api);
    resources::register::<Site>(&mut api);
    resources::register::<Meter>(&mut api);
    resources::register::<Der>(&mut api);
    resources::register::<Identity>(&mut api);
    resources::register::<Program>(&mut api);
    resources::register::<Enrolment>(&mut api);
    resources::register::<Group>(&mut api);
    resources::register::<ControlProgram>(&mut api);
    resources::register::<ControlRecord>(&mut api);
    resources::register::<DefaultControlRecord>(&mut api);
    resources::register::<DerCurveRecord>(&mut api);
    resources::register::<EndDeviceRecord>(&mut api);
    // 2030.5 settings the utility changes at run time: poll rates, programs placed in
    // FunctionSetAssignments of their own.
    resources::register::<crate::protocol::sep2::poll_rates::PollRateRecord>(&mut api);
    resources::register::<crate::protocol::sep2::function_sets::FunctionSetRecord>(&mut api);
    // Devices create mirror usage points over 2030.5; the operator reads and clears them.
    resources::register_read_delete::<MirrorUsagePointRecord>(&mut api);
    resources::register_read_delete::<LogEventRecord>(&mut api);
    mirror::register(&mut api);
    extras::register(&mut api);
    envelopes::register(&mut api);
    dispatch::register(&mut api);
    settlement::register(&mut api);
    telemetry::register(&mut api);
    telemetry_ingest::register(&mut api);
    sunspec::register(&mut api);
    mqtt::register(&mut api);
    let ApiBuilder { router, mut doc } = api;
    extras::document_public(&mut doc);
    let document = Arc::new(doc.finish());

    let protected = router.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(move || {
                let d = document.clone();
                async move { axum::Json((*d).clone()) }
            }),
        )
        .merge(protected)
        .fallback(|| async {
            problem::Problem::not_found("no such endpoint; see /openapi.json").into_response()
        })
        .method_not_allowed_fallback(|| async {
            problem::Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this endpoint does not accept that method; see /openapi.json",
            )
            .into_response()
        })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
