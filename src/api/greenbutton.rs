//! `POST /api/v1/greenbutton/authorizations`: starts a Green Button Connect authorization
//! from the operator API, as `switchyard greenbutton connect authorize --name` does. It
//! answers the URL to send the customer to; the customer's browser then completes the
//! authorization at the redirect URI (docs/greenbutton.md). Served when the Green Button
//! client runs in `switchyard serve`; behind the operator token (role operator) like every
//! write of the API.

use super::body::{decode, require_content_type};
use super::problem::Problem;
use crate::protocol::greenbutton::connect::{Client, ConnectError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    /// Local name of the authorization (letters, digits, `.`, `_`, `-`; at most 64).
    name: String,
}

#[derive(Debug, Serialize)]
struct Started {
    name: String,
    /// Send the customer's browser here.
    authorization_url: String,
    /// The customer must come back before this time (epoch seconds).
    expires_at: i64,
}

/// The router (without the token check, which the caller layers on).
pub fn router(client: Arc<Client>) -> Router {
    Router::new()
        .route(
            "/api/v1/greenbutton/authorizations",
            post(start).layer(DefaultBodyLimit::max(4096)),
        )
        .with_state(client)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

async fn start(State(client): State<Arc<Client>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(p) = require_content_type(&headers, &["application/json"]) {
        return p.into_response();
    }
    let req: Start = match decode(&body) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    if !valid_name(&req.name) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "name must be 1 to 64 letters, digits, '.', '_' or '-'",
        )
        .with_field("name")
        .into_response();
    }
    let now = crate::domain::now_epoch();
    match client.start_authorization(&req.name, None, now).await {
        Ok((url, _)) => (
            StatusCode::CREATED,
            axum::Json(Started {
                name: req.name,
                authorization_url: url,
                expires_at: now.saturating_add(
                    i64::try_from(client.config().authorization_timeout_seconds)
                        .unwrap_or(i64::MAX),
                ),
            }),
        )
            .into_response(),
        Err(e @ ConnectError::Config(_)) => {
            Problem::new(StatusCode::CONFLICT, "not-configured", e.to_string()).into_response()
        }
        Err(e) => {
            let p = Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; quote the correlation id to the operator",
            );
            tracing::error!(correlation_id = %p.correlation_id, error = %e, "Green Button authorization not started");
            p.into_response()
        }
    }
}
