//! The two Green Button Connect endpoints `switchyard serve` answers on the operator
//! listener, outside the operator API's bearer-token check:
//!
//! - the redirect URI (the path of `greenbutton.redirect_uri`): the customer's browser
//!   arrives with `code` and `state` after approving at the Data Custodian. The state is
//!   the protection (random, single use, expiring; see [`super::pending`]). Answers are
//!   plain text, so nothing from the query is ever rendered as markup.
//! - the notify URI (`greenbutton.notification_path`): the Data Custodian POSTs a
//!   `BatchList`; authenticated by the shared bearer token `greenbutton.notification_token`.

use super::batchlist;
use super::connect::{Client, ConnectError};
use super::notify::Notifier;
use super::pending::PendingError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Paths the operator API already answers: the endpoints must not shadow them.
const RESERVED: &[&str] = &["/api/", "/healthz", "/openapi.json", "/openadr3"];

#[derive(Clone)]
struct Endpoints {
    client: Arc<Client>,
    notifier: Notifier,
    token_digest: Option<[u8; 32]>,
}

fn page(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn check_path(key: &str, path: &str) -> Result<(), ConnectError> {
    if !path.starts_with('/') || path.len() < 2 || RESERVED.iter().any(|r| path.starts_with(r)) {
        return Err(ConnectError::Config(format!(
            "greenbutton.{key}: the path '{path}' is not usable on the operator listener (it must start with '/' and not be under {RESERVED:?})"
        )));
    }
    Ok(())
}

/// The router of the endpoints the configuration asks for (possibly none), and the
/// notifier it uses (its fetches run in the background).
pub fn router(client: Arc<Client>) -> Result<(Router, Notifier), ConnectError> {
    let cfg = client.config().clone();
    let notifier = Notifier::new(client.clone());
    let state = Endpoints {
        client: client.clone(),
        notifier: notifier.clone(),
        token_digest: cfg
            .notification_token
            .as_deref()
            .map(|t| Sha256::digest(t.as_bytes()).into()),
    };
    let mut router = Router::new();
    if cfg.serve_redirect && !cfg.redirect_uri.trim().is_empty() {
        let url = reqwest::Url::parse(&cfg.redirect_uri).map_err(|e| {
            ConnectError::Config(format!(
                "greenbutton.redirect_uri '{}': {e}",
                cfg.redirect_uri
            ))
        })?;
        check_path("redirect_uri", url.path())?;
        tracing::info!(path = url.path(), "Green Button redirect URI served");
        router = router.route(url.path(), get(redirect));
    }
    if let Some(token) = &cfg.notification_token {
        if token.len() < 16 {
            return Err(ConnectError::Config(
                "greenbutton.notification_token is shorter than 16 characters".into(),
            ));
        }
        check_path("notification_path", &cfg.notification_path)?;
        if cfg.resource_server.trim().is_empty() {
            return Err(ConnectError::Config(
                "greenbutton.resource_server is not set (notifications are matched against it)"
                    .into(),
            ));
        }
        tracing::info!(path = %cfg.notification_path, "Green Button notification endpoint served");
        router = router.route(
            &cfg.notification_path,
            post(notification).layer(DefaultBodyLimit::max(cfg.notification_body_limit_bytes)),
        );
    }
    Ok((router.with_state(state), notifier))
}

/// GET on the redirect URI.
async fn redirect(
    State(s): State<Endpoints>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = crate::domain::now_epoch();
    let Some(state) = q.get("state").filter(|v| !v.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Green Button authorization: the redirect carries no state; nothing was stored.\n"
                .into(),
        );
    };
    if let Some(error) = q.get("error") {
        // The Data Custodian reports that the customer declined (access_denied) or that the
        // request failed: the pending authorization is over either way.
        return match s.client.abandon_authorization(state, now).await {
            Ok(name) => {
                tracing::info!(%name, %error, "Green Button authorization not granted");
                let text = if error == "access_denied" {
                    format!(
                        "Green Button authorization '{name}': the customer declined; nothing was stored.\n"
                    )
                } else {
                    format!(
                        "Green Button authorization '{name}' failed at the Data Custodian ({error}); nothing was stored.\n"
                    )
                };
                page(StatusCode::OK, text)
            }
            Err(e) => refused(e),
        };
    }
    let Some(code) = q.get("code").filter(|v| !v.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Green Button authorization: the redirect carries no code; nothing was stored.\n"
                .into(),
        );
    };
    match s.client.complete_authorization(state, code, now).await {
        Ok(auth) => {
            tracing::info!(name = %auth.name, "Green Button authorization stored from the redirect");
            page(
                StatusCode::OK,
                format!(
                    "Green Button authorization '{}' stored. You can close this page.\n",
                    auth.name
                ),
            )
        }
        Err(e) => refused(e),
    }
}

fn refused(e: ConnectError) -> Response {
    match e {
        ConnectError::Pending(p @ (PendingError::Unknown | PendingError::Expired { .. })) => page(
            StatusCode::BAD_REQUEST,
            format!("Green Button authorization refused: {p}; nothing was stored.\n"),
        ),
        ConnectError::Database(_) | ConnectError::Pending(PendingError::Database(_)) => {
            tracing::error!(error = %e, "Green Button redirect");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Green Button authorization: Switchyard could not reach its database; nothing was stored.\n".into(),
            )
        }
        other => {
            // The code exchange failed at the Data Custodian (or could not reach it).
            tracing::warn!(error = %other, "Green Button code exchange failed");
            page(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Green Button authorization: the Data Custodian did not accept the code ({other}); nothing was stored.\n"
                ),
            )
        }
    }
}

/// POST on the notify URI.
async fn notification(State(s): State<Endpoints>, headers: HeaderMap, body: Bytes) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    // Comparing digests: the time taken says nothing about the token.
    if presented.is_none() || presented != s.token_digest {
        return page(
            StatusCode::UNAUTHORIZED,
            "notification refused: missing or wrong bearer token\n".into(),
        );
    }
    let list = match batchlist::parse(&body) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "Green Button notification refused");
            return page(
                StatusCode::BAD_REQUEST,
                format!("notification refused: {e}; nothing fetched\n"),
            );
        }
    };
    match s.notifier.notify(&list).await {
        Ok(out) => {
            tracing::info!(fetching = ?out.fetching, queued = ?out.queued, ignored = out.ignored, "Green Button notification");
            (StatusCode::ACCEPTED, axum::Json(out)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "Green Button notification");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("notification not handled: {e}\n"),
            )
        }
    }
}
