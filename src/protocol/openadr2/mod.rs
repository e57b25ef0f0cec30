//! OpenADR 2.0b VTN (profile B, simpleHttp): EiRegisterParty, EiEvent, EiReport, EiOpt and
//! OadrPoll over HTTP POST, pull mode and push to a registered transport address.
//!
//! - [`model`]: the payloads as serde types; [`xml`]: safe decoding and encoding.
//! - [`vtn`]: the VTN's behaviour over the store (migration 0013), transport-agnostic.
//! - [`event`]: operator-defined events and their 2.0b form; [`engine`]: report values to
//!   telemetry readings.
//! - [`ven`], [`upstream`], [`upstream_map`], [`upstream_store`]: the upstream VEN that
//!   registers with a utility's VTN (`[openadr2.upstream]`).
//! - this module: configuration, the HTTP endpoints
//!   (`/OpenADR2/Simple/2.0b/{service}`), VEN identity and push delivery, and the operator
//!   endpoints (`/api/v1/openadr2/...`).
//!
//! VEN identity is the 2.0b fingerprint of the client certificate on the mutual-TLS
//! listener ([`fingerprint`]); a plain-HTTP listener for test labs identifies the VEN by the
//! venID in the payload instead (docs/openadr2b.md).

#![allow(clippy::result_large_err)]

pub mod engine;
pub mod event;
pub mod model;
pub mod upstream;
pub mod upstream_map;
pub mod upstream_store;
pub mod ven;
pub mod vtn;
pub mod xml;

use crate::api::problem::Problem;
use crate::protocol::sep2::tls::PeerIdentity;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use vtn::{Caller, Service, Vtn, VtnError};

/// Where the 2.0b services are served, as the 2.0b specification names them.
pub const PREFIX: &str = "/OpenADR2/Simple/2.0b";

/// Configuration (`[openadr2]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAdr2Config {
    /// Whether to run the 2.0b VTN.
    pub enabled: bool,
    /// Address of the 2.0b listener.
    pub listen: SocketAddr,
    /// Mutual TLS (true, the 2.0b way) or plain HTTP for test labs only (false), where the
    /// VEN is whoever the venID in the payload names.
    pub tls: bool,
    /// PEM file of the CAs VEN certificates must chain to.
    pub ca_cert: PathBuf,
    /// PEM file of the VTN's certificate.
    pub server_cert: PathBuf,
    /// PEM file of the VTN's private key.
    pub server_key: PathBuf,
    /// The vtnID sent to VENs.
    pub vtn_id: String,
    /// oadrRequestedOadrPollFreq announced at registration, seconds.
    pub poll_freq_seconds: u32,
    /// Market context of events created without one.
    pub market_context: String,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: usize,
    /// Longest time a push (POST to a VEN's transport address) may take, seconds.
    pub push_timeout_seconds: u64,
    /// The upstream VEN (`[openadr2.upstream]`): Switchyard as a VEN of a utility's VTN;
    /// runs when present, whether or not this VTN is enabled.
    pub upstream: Option<upstream::UpstreamConfig>,
}

impl Default for OpenAdr2Config {
    fn default() -> Self {
        OpenAdr2Config {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            tls: true,
            ca_cert: PathBuf::from("certs/dev/ca.pem"),
            server_cert: PathBuf::from("certs/dev/server.pem"),
            server_key: PathBuf::from("certs/dev/server.key"),
            vtn_id: "SWITCHYARD-VTN".into(),
            poll_freq_seconds: 10,
            market_context: "http://switchyard.local/openadr2/default".into(),
            body_limit_bytes: 256 * 1024,
            push_timeout_seconds: 10,
            upstream: None,
        }
    }
}

/// The 2.0b certificate fingerprint: the last 10 bytes (80 bits) of the SHA-256 digest of
/// the certificate's DER encoding, as 20 upper-case hex digits in colon-separated pairs
/// (29 characters), which is how VEN and VTN operators exchange them.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest[22..]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the 2.0b handlers reach.
#[derive(Clone)]
pub struct State2 {
    pub vtn: Arc<Vtn>,
    pub body_limit: usize,
    pub tls: bool,
    pub push: reqwest::Client,
}

fn xml_response(status: StatusCode, m: &model::Message) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/xml")],
        xml::encode(m),
    )
        .into_response()
}

fn transport_refusal(status: StatusCode, description: &str) -> Response {
    xml_response(
        status,
        &model::Message::Response(model::Response {
            schema_version: Some(model::SCHEMA_VERSION.into()),
            response: model::EiResponse::new(
                vtn::ResponseCode::InvalidData as u16,
                description,
                "",
            ),
            ven_id: None,
        }),
    )
}

/// `POST {PREFIX}/{service}`.
async fn service(
    State(state): State<State2>,
    Path(name): Path<String>,
    peer: Option<axum::Extension<PeerIdentity>>,
    body: Body,
) -> Response {
    let Some(service) = Service::from_path(&name) else {
        return transport_refusal(StatusCode::NOT_FOUND, &format!("no 2.0b service '{name}'"));
    };
    let caller = if state.tls {
        match peer {
            Some(axum::Extension(p)) => Caller::Certificate {
                fingerprint: fingerprint(p.certificate_der()),
            },
            // The TLS listener always has a certificate; this is a misconfiguration.
            None => {
                return transport_refusal(StatusCode::UNAUTHORIZED, "no client certificate");
            }
        }
    } else {
        Caller::TestLab
    };
    let bytes = match axum::body::to_bytes(body, state.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return transport_refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body exceeds {} bytes", state.body_limit),
            );
        }
    };
    let message = match xml::decode(&bytes, state.body_limit) {
        Ok(m) => m,
        Err(xml::XmlError::TooLarge { .. }) => {
            return transport_refusal(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        Err(e) => return transport_refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match state.vtn.handle(service, &caller, message).await {
        Ok(m) => xml_response(StatusCode::OK, &m),
        Err(e) => {
            tracing::error!(error = %e, "OpenADR 2.0b request failed");
            transport_refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The 2.0b service routes, to be served on the 2.0b listener.
pub fn router(state: State2) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/{{service}}"), post(service))
        .with_state(state)
}

// ---------------------------------------------------------------- operator endpoints

fn problem(e: VtnError) -> Problem {
    match e {
        VtnError::Invalid(m) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-event", m),
        VtnError::Conflict(m) => Problem::new(StatusCode::CONFLICT, "conflict", m),
        VtnError::NotFound(m) => Problem::new(StatusCode::NOT_FOUND, "not-found", m),
        VtnError::Store(e) => {
            tracing::error!(error = %e, "OpenADR 2.0b store failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the store failed",
            )
        }
    }
}

async fn create_event(
    State(state): State<State2>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send application/json",
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("body exceeds {} bytes", state.body_limit),
            )
        })?;
    let def: event::EventDefinition = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("invalid event JSON: {e}"),
        )
    })?;
    let stored = state.vtn.create_event(def).await.map_err(problem)?;
    spawn_push(&state, stored.clone());
    Ok((StatusCode::CREATED, axum::Json(stored)).into_response())
}

async fn list_events(State(state): State<State2>) -> Result<Response, Problem> {
    let events = state.vtn.events().await.map_err(problem)?;
    Ok(axum::Json(events).into_response())
}

#[derive(Serialize)]
struct EventView {
    event: event::StoredEvent,
    responses: Vec<ResponseView>,
}

#[derive(Serialize)]
struct ResponseView {
    ven_id: String,
    opt_type: String,
    modification_number: i64,
}

async fn read_event(
    State(state): State<State2>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let Some(event) = state.vtn.event(&id).await.map_err(problem)? else {
        return Err(problem(VtnError::NotFound(format!("no event '{id}'"))));
    };
    let responses = state
        .vtn
        .event_responses(&id)
        .await
        .map_err(problem)?
        .into_iter()
        .map(|(ven_id, opt_type, modification_number)| ResponseView {
            ven_id,
            opt_type,
            modification_number,
        })
        .collect();
    Ok(axum::Json(EventView { event, responses }).into_response())
}

async fn cancel_event(
    State(state): State<State2>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let e = state.vtn.cancel_event(&id).await.map_err(problem)?;
    spawn_push(&state, e.clone());
    Ok(axum::Json(e).into_response())
}

async fn list_vens(State(state): State<State2>) -> Result<Response, Problem> {
    Ok(axum::Json(state.vtn.vens().await.map_err(problem)?).into_response())
}

#[derive(Serialize)]
struct OptView {
    opt_id: String,
    opt_type: String,
    event_id: Option<String>,
    cancelled: bool,
}

async fn ven_opts(
    State(state): State<State2>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let opts: Vec<OptView> = state
        .vtn
        .opts(&id)
        .await
        .map_err(problem)?
        .into_iter()
        .map(|(opt_id, opt_type, event_id, cancelled)| OptView {
            opt_id,
            opt_type,
            event_id,
            cancelled,
        })
        .collect();
    Ok(axum::Json(opts).into_response())
}

/// The operator endpoints; the caller adds the operator API's token check.
pub fn operator_router(state: State2) -> Router {
    Router::new()
        .route(
            "/api/v1/openadr2/events",
            post(create_event).get(list_events),
        )
        .route("/api/v1/openadr2/events/{id}", get(read_event))
        .route("/api/v1/openadr2/events/{id}/cancel", post(cancel_event))
        .route("/api/v1/openadr2/vens", get(list_vens))
        .route("/api/v1/openadr2/vens/{id}/opts", get(ven_opts))
        .with_state(state)
}

// ---------------------------------------------------------------- push

/// Sends `e` to the push-mode VENs it targets, in the background: `oadrDistributeEvent`
/// POSTed to `{transportAddress}/EiEvent`; a VEN that answers with `oadrCreatedEvent` has
/// its opt recorded as if it had posted it. Pull-mode VENs get the event at their next poll.
fn spawn_push(state: &State2, e: event::StoredEvent) {
    let state = state.clone();
    tokio::spawn(async move {
        let targets = match state.vtn.push_targets(&e).await {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(error = %err, "OpenADR 2.0b push: cannot list VENs");
                return;
            }
        };
        for ven in targets {
            if let Err(err) = push_to(&state, &ven).await {
                tracing::warn!(ven_id = %ven.ven_id, error = %err, "OpenADR 2.0b push failed; the VEN gets the event when it polls");
            }
        }
    });
}

async fn push_to(state: &State2, ven: &vtn::Ven) -> Result<(), String> {
    let now = crate::domain::now_epoch();
    let Some(address) = &ven.transport_address else {
        return Ok(());
    };
    let message = state
        .vtn
        .distribute(ven, &uuid::Uuid::now_v7().simple().to_string(), now, false)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("nothing to send")?;
    let url = format!("{}/EiEvent", address.trim_end_matches('/'));
    let reply = state
        .push
        .post(&url)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(xml::encode(&message))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !reply.status().is_success() {
        return Err(format!("{url} answered {}", reply.status()));
    }
    let body = reply.bytes().await.map_err(|e| e.to_string())?;
    if body.is_empty() {
        return Ok(());
    }
    let answer = xml::decode(&body, state.body_limit).map_err(|e| e.to_string())?;
    if matches!(answer, model::Message::CreatedEvent(_)) {
        let caller = match &ven.fingerprint {
            Some(f) => Caller::Certificate {
                fingerprint: f.clone(),
            },
            None => Caller::TestLab,
        };
        state
            .vtn
            .handle(Service::EiEvent, &caller, answer)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Builds the VTN state: the push client uses `push_tls` (the VTN's certificate and CAs)
/// for https transport addresses.
pub fn state(
    config: &OpenAdr2Config,
    store: crate::store::Store,
    push_tls: Option<rustls::ClientConfig>,
) -> Result<State2, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(config.push_timeout_seconds))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(tls) = push_tls {
        builder = builder.tls_backend_preconfigured(tls);
    }
    let push = builder.build().map_err(|e| e.to_string())?;
    Ok(State2 {
        vtn: Arc::new(Vtn::new(
            store,
            vtn::Settings {
                vtn_id: config.vtn_id.clone(),
                poll_freq_seconds: config.poll_freq_seconds,
                market_context: config.market_context.clone(),
                default_granularity: "PT1M".into(),
            },
        )),
        body_limit: config.body_limit_bytes,
        tls: config.tls,
        push,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_the_last_80_bits_of_sha256_in_colon_form() {
        let fp = fingerprint(b"certificate bytes");
        assert_eq!(fp.len(), 29);
        let full = hex::encode_upper(Sha256::digest(b"certificate bytes"));
        assert_eq!(fp.replace(':', ""), full[44..]);
    }
}
