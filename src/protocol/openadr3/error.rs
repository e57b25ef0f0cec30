//! Errors of the OpenADR 3 API as the specification's `problem` responses.
//!
//! The body is the operator API's RFC 7807 [`Problem`] (its `type`, `title`, `status` and
//! `detail` are the specification's `problem` properties; the extra members are allowed by
//! the schema), sent as `application/json` because that is the media type every error
//! response of the OpenADR 3.1.0 document declares. Validation errors are 400, since the
//! specification has no 422.

use crate::api::problem::Problem;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An OpenADR 3 error response.
#[derive(Debug)]
pub struct OadrError(pub Box<Problem>);

impl OadrError {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        OadrError(Box::new(Problem::new(status, kind, detail)))
    }

    /// 400 naming the field at fault.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let detail = format!("{field}: {}", detail.into());
        OadrError(Box::new(
            Problem::new(StatusCode::BAD_REQUEST, "invalid", detail).with_field(field),
        ))
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        OadrError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        OadrError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        OadrError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        OadrError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} with id '{id}'"),
        )
    }

    pub fn conflict(field: &str, detail: impl Into<String>) -> Self {
        OadrError(Box::new(
            Problem::new(StatusCode::CONFLICT, "conflict", detail).with_field(field),
        ))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        self.0.status
    }
}

impl From<Problem> for OadrError {
    fn from(p: Problem) -> Self {
        // The shared body decoder answers shape errors with 422; OpenADR 3 has only 400.
        let mut p = p;
        if p.status == 422 {
            p.status = 400;
            p.title = "Bad Request".into();
        }
        OadrError(Box::new(p))
    }
}

impl From<StoreError> for OadrError {
    fn from(e: StoreError) -> Self {
        let p = Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; quote the correlation id to the operator",
        );
        tracing::error!(correlation_id = %p.correlation_id, error = %e, "openadr3 store error");
        OadrError(Box::new(p))
    }
}

impl IntoResponse for OadrError {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
