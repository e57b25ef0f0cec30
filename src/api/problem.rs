//! RFC 7807 problem details: every error the operator API returns, in one shape.
//!
//! Each problem carries a correlation id that is also written to the log, so an operator
//! can hand the id from a failed call to whoever reads the server's logs.

use crate::registry::{RegistryError, Violation};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of an error response (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, as a JSON path ("grid_location.feeder").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field at fault, when more than one was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
    pub correlation_id: String,
}

impl Problem {
    /// A problem with the given status, short type name and detail.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:switchyard:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(correlation_id = %self.correlation_id, detail = %self.detail, "request failed");
        } else {
            tracing::info!(correlation_id = %self.correlation_id, status = status.as_u16(), detail = %self.detail, "request refused");
        }
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<RegistryError> for Problem {
    fn from(e: RegistryError) -> Self {
        let detail = e.to_string();
        match e {
            RegistryError::Invalid(violations) => {
                let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail);
                p.field = violations.first().map(|v| v.field.clone());
                p.errors = violations;
                p
            }
            RegistryError::NotFound { .. } => Problem::not_found(detail),
            RegistryError::Conflict { field, .. } => {
                Problem::new(StatusCode::CONFLICT, "conflict", detail).with_field(field)
            }
            RegistryError::MissingReference { field, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing-reference",
                detail,
            )
            .with_field(field),
            RegistryError::Ineligible { .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "ineligible", detail)
                    .with_field("der_id")
            }
            RegistryError::InUse { .. } => Problem::new(StatusCode::CONFLICT, "in-use", detail),
            RegistryError::Store(inner) => {
                let p = Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; quote the correlation id to the operator",
                );
                tracing::error!(correlation_id = %p.correlation_id, error = %inner, "store error");
                p
            }
        }
    }
}

impl From<crate::registry::import::ImportError> for Problem {
    fn from(e: crate::registry::import::ImportError) -> Self {
        match e {
            crate::registry::import::ImportError::Header(h) => {
                Problem::bad_request(format!("the CSV header is unusable: {h}"))
            }
            crate::registry::import::ImportError::Registry(r) => r.into(),
            e @ crate::registry::import::ImportError::Interrupted => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                e.to_string(),
            ),
        }
    }
}
