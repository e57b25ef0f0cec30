//! OpenADR 3.1 VTN: the REST/JSON API of the OpenADR 3.1.0 OpenAPI document
//! (schemas/openadr3/) for programs, events, reports, subscriptions, VENs and resources,
//! with the OAuth2 client-credentials token endpoint (and tokens of an external issuer,
//! [`jwks`]), BL and VEN roles, webhook and MQTT ([`mqtt`]) notifications, and events
//! carried to the engine ([`events`], [`apply`]).
//!
//! The API is served on the operator API listener under [`PREFIX`] (the document's only
//! `servers` entry is a mock; the prefix names the protocol and the version so that a later
//! version can sit beside it). `GET {PREFIX}/openapi.json` serves the document this server
//! implements: the official one with its `servers` pointing here, the MQTT notifier
//! paths only when MQTT is enabled, and the document's defects corrected as
//! [`document_for`] says. docs/openadr3.md has the details.

// Handlers return `Result<_, OadrError>`; see api/mod.rs for why the lint is relaxed.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod auth;
pub mod config;
pub mod duration;
pub mod engine;
pub mod error;
pub mod events;
pub mod jwks;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod routes;
pub mod schema;
pub mod store;
pub mod validate;
pub mod vtn;

use crate::registry::Registry;
use auth::TokenIssuer;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use config::{ClientRole, OpenAdr3Config};
use error::OadrError;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vtn::Vtn;

/// Where the API is mounted.
pub const PREFIX: &str = "/openadr3/3.1.0";

/// The official OpenAPI document (converted from the YAML byte for byte copy beside it).
const OFFICIAL_DOCUMENT: &str = include_str!("../../../schemas/openadr3/openadr3-3.1.0.json");

/// What the handlers reach.
#[derive(Clone)]
pub struct VtnState {
    pub vtn: Arc<Vtn>,
    pub tokens: Arc<TokenIssuer>,
    /// Validates tokens of an external OAuth2 issuer, when one is configured.
    pub external: Option<Arc<jwks::ExternalIssuer>>,
    /// The MQTT notifier's configuration, when it is enabled.
    pub mqtt: Option<Arc<mqtt::MqttNotifierConfig>>,
    pub body_limit: usize,
}

/// Why the VTN could not start.
#[derive(Debug, thiserror::Error)]
pub enum VtnError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Notifier(#[from] notify::NotifierError),
    #[error("{0}")]
    Config(String),
}

/// Loads the VTN from `store` and starts its notifier; the task ends after `shutdown`.
pub async fn start(
    config: &OpenAdr3Config,
    registry: Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(VtnState, JoinHandle<()>), VtnError> {
    config.engine.check().map_err(VtnError::Config)?;
    config.mqtt.check().map_err(VtnError::Config)?;
    let external = if config.external_issuer.enabled() {
        Some(Arc::new(
            jwks::ExternalIssuer::new(config.external_issuer.clone()).map_err(VtnError::Config)?,
        ))
    } else {
        None
    };
    let shutdown_mqtt = shutdown.clone();
    let (notifier, task) = notify::spawn(
        notify::Settings::new(&config.notifications, config.max_concurrent_deliveries),
        shutdown,
    )?;
    let bl = config
        .clients
        .iter()
        .filter(|c| c.role == ClientRole::Bl)
        .map(|c| c.client_id.clone())
        .collect();
    let (mqtt, task) = if config.mqtt.enabled {
        let (m, mqtt_task) = mqtt::spawn(&config.mqtt, shutdown_mqtt);
        // One handle for the caller to wait on: both tasks end after shutdown.
        let both = tokio::spawn(async move {
            let _ = task.await;
            let _ = mqtt_task.await;
        });
        (Some(m), both)
    } else {
        (None, task)
    };
    let vtn = Vtn::open(registry, config.engine.clone(), notifier, mqtt, bl).await?;
    let state = VtnState {
        vtn: Arc::new(vtn),
        tokens: Arc::new(TokenIssuer::new(
            &config.token_secret,
            config.token_lifetime_seconds,
            &config.clients,
        )),
        external,
        mqtt: config.mqtt.enabled.then(|| Arc::new(config.mqtt.clone())),
        body_limit: config.body_limit_bytes,
    };
    Ok((state, task))
}

/// The OpenAPI document this server implements without the MQTT notifier.
pub fn document() -> serde_json::Value {
    document_for(false)
}

/// The OpenAPI document this server implements; the `/notifiers/mqtt/...` paths are in
/// it when MQTT notifications are offered.
pub fn document_for(mqtt: bool) -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_str(OFFICIAL_DOCUMENT).expect("the embedded document is JSON");
    doc["servers"] = serde_json::json!([{
        "url": PREFIX,
        "description": "Switchyard OpenADR 3.1 VTN"
    }]);
    if !mqtt && let Some(paths) = doc["paths"].as_object_mut() {
        paths.retain(|p, _| !p.starts_with("/notifiers/mqtt"));
    }
    // Defects of the official document, corrected so that the document describes what is
    // served (docs/openadr3.md lists them). `ven` and `resource` combine objectMetadata
    // with the BL request schema, whose objectType enums exclude each other; the server
    // answers objectMetadata's VEN / RESOURCE, so the served object schemas take the BL
    // request's properties without its objectType.
    for (object, request) in [("ven", "BlVenRequest"), ("resource", "BlResourceRequest")] {
        let mut props = doc["components"]["schemas"][request].clone();
        if let Some(p) = props["properties"].as_object_mut() {
            p.remove("objectType");
        }
        if let Some(r) = props["required"].as_array_mut() {
            r.retain(|x| x != "objectType");
        }
        doc["components"]["schemas"][object]["allOf"][1] = props;
    }
    // Responses the server gives that the document leaves out: 409 for a duplicate venName
    // (the document wants venName unique) and 401 on PUT /programs/{programID}.
    let conflict = serde_json::json!({"$ref": "#/components/responses/conflict"});
    doc["paths"]["/vens"]["post"]["responses"]["409"] = conflict;
    doc["paths"]["/programs/{programID}"]["put"]["responses"]["401"] =
        serde_json::json!({"$ref": "#/components/responses/unauthorized"});
    let schemas = &mut doc["components"]["schemas"];
    // programDescriptions items are objects (they have required properties) but the
    // document forgot to say so, which makes `null` a valid description.
    schemas["programRequest"]["properties"]["programDescriptions"]["items"]["type"] =
        "object".into();
    // The server's rules on time, written into the schemas: no negative durations
    // anywhere, and an interval period lasts longer than zero.
    schemas["duration"]["pattern"] = DURATION_PATTERN.into();
    schemas["positiveDuration"] = serde_json::json!({
        "type": "string",
        "pattern": POSITIVE_DURATION_PATTERN,
        "description": "duration in ISO 8601 format, longer than zero",
        "example": "PT1H"
    });
    schemas["intervalPeriod"]["properties"]["duration"] =
        serde_json::json!({"$ref": "#/components/schemas/positiveDuration"});
    // An unbounded priority cannot be stored; 32 bits are plenty for a ranking.
    schemas["eventRequest"]["properties"]["priority"]["maximum"] = u32::MAX.into();
    // A create or update without a body means nothing; the document leaves most request
    // bodies optional.
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            for op in ["post", "put"] {
                if item[op]["requestBody"].is_object() {
                    item[op]["requestBody"]["required"] = true.into();
                }
            }
        }
    }
    doc
}

/// The document's duration pattern without its optional leading minus.
const DURATION_PATTERN: &str = r"^P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$";

/// As [`DURATION_PATTERN`], refusing durations whose every number is zero.
const POSITIVE_DURATION_PATTERN: &str = r"^P(?!(?:0+[YMWD])*(?:T(?:0+[HM])*(?:0+(?:\.0+)?S)?)?$)(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$";

/// The API's routes, to be nested under [`PREFIX`].
pub fn router(state: VtnState) -> Router {
    use auth::Caller;
    use axum::extract::{Path, State};
    use routes::*;
    let doc = Arc::new(document_for(state.mqtt.is_some()));
    let mut r = Router::new();
    if state.mqtt.is_some() {
        const T: &str = "/notifiers/mqtt/topics";
        for kind in [
            "programs",
            "events",
            "reports",
            "subscriptions",
            "vens",
            "resources",
        ] {
            r = r.route(
                &format!("{T}/{kind}"),
                get(move |s: State<VtnState>, c: Caller| topics_all(s, c, kind)),
            );
        }
        r = r
            .route(
                &format!("{T}/programs/{{programID}}"),
                get(|s: State<VtnState>, c: Caller, p: Path<String>| {
                    topics_program(s, c, p, false)
                }),
            )
            .route(
                &format!("{T}/programs/{{programID}}/events"),
                get(|s: State<VtnState>, c: Caller, p: Path<String>| topics_program(s, c, p, true)),
            )
            .route(
                &format!("{T}/vens/{{venID}}"),
                get(|s: State<VtnState>, c: Caller, p: Path<String>| topics_ven(s, c, p, None)),
            );
        for kind in ["events", "programs", "resources"] {
            r = r.route(
                &format!("{T}/vens/{{venID}}/{kind}"),
                get(move |s: State<VtnState>, c: Caller, p: Path<String>| {
                    topics_ven(s, c, p, Some(kind))
                }),
            );
        }
    }
    r.route("/programs", get(list_programs).post(create_one::<Programs>))
        .route(
            "/programs/{programID}",
            get(get_one::<Programs>)
                .put(update_one::<Programs>)
                .delete(delete_one::<Programs>),
        )
        .route("/events", get(list_events).post(create_one::<Events>))
        .route(
            "/events/{eventID}",
            get(get_one::<Events>)
                .put(update_one::<Events>)
                .delete(delete_one::<Events>),
        )
        .route("/reports", get(list_reports).post(create_one::<Reports>))
        .route(
            "/reports/{reportID}",
            get(get_one::<Reports>)
                .put(update_one::<Reports>)
                .delete(delete_one::<Reports>),
        )
        .route(
            "/subscriptions",
            get(list_subscriptions).post(create_one::<Subscriptions>),
        )
        .route(
            "/subscriptions/{subscriptionID}",
            get(get_one::<Subscriptions>)
                .put(update_one::<Subscriptions>)
                .delete(delete_one::<Subscriptions>),
        )
        .route("/vens", get(list_vens).post(create_one::<Vens>))
        .route(
            "/vens/{venID}",
            get(get_one::<Vens>)
                .put(update_one::<Vens>)
                .delete(delete_one::<Vens>),
        )
        .route(
            "/resources",
            get(list_resources).post(create_one::<Resources>),
        )
        .route(
            "/resources/{resourceID}",
            get(get_one::<Resources>)
                .put(update_one::<Resources>)
                .delete(delete_one::<Resources>),
        )
        .route("/notifiers", get(notifiers))
        .route("/auth/token", post(auth::token))
        .route("/auth/server", get(auth::server))
        .route(
            "/openapi.json",
            get(move || {
                let d = doc.clone();
                async move { axum::Json((*d).clone()) }
            }),
        )
        .fallback(|| async {
            OadrError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no such OpenADR 3 endpoint; see {PREFIX}/openapi.json"),
            )
            .into_response()
        })
        .method_not_allowed_fallback(|| async {
            OadrError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("this endpoint does not accept that method; see {PREFIX}/openapi.json"),
            )
            .into_response()
        })
        .with_state(state)
}
