//! Request body handling: size limit, content type and JSON decoding that names the field
//! at fault. Axum's own `Json` extractor answers in plain text; ours answers in problem+json.

use super::problem::Problem;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    })
}

/// Refuses any content type other than the accepted ones with 415.
pub fn require_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if accepted.iter().any(|a| *a == essence) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!(
                "content type '{ct}' is not accepted here; send one of: {}",
                accepted.join(", ")
            ),
        ))
    }
}

/// Decodes JSON: a syntax error is 400, a well-formed document of the wrong shape
/// (unknown field, wrong type, unknown enum value, missing field) is 422 naming the field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    from_value(value)
}

/// Decodes an already-parsed JSON value into `T` (422 naming the field on mismatch).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // Unknown or missing fields are reported at the parent path; the field name is in
        // serde's message, so point at it directly.
        // For unknown fields the path already ends with the field; for missing ones it
        // stops at the parent, and the field name is only in serde's message.
        let field = match field_from_message(&inner) {
            Some(f) if path == "." => f,
            Some(f) if path != f && !path.ends_with(&format!(".{f}")) => format!("{path}.{f}"),
            _ => path,
        };
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{field}: {inner}"),
        )
        .with_field(field)
    })
}

fn field_from_message(msg: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            return rest.split('`').next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        feeder: String,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        rated_kw: f64,
        grid: Inner,
    }

    #[test]
    fn names_fields() {
        let p = decode::<Outer>(br#"{"rated_kw": "x", "grid": {"feeder": "F"}}"#).unwrap_err();
        assert_eq!((p.status, p.field.as_deref()), (422, Some("rated_kw")));
        let p = decode::<Outer>(br#"{"rated_kw": 1, "grid": {"feedr": "F"}}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("grid.feedr"));
        let p = decode::<Outer>(br#"{"grid": {"feeder": "F"}}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("rated_kw"));
        let p = decode::<Outer>(br#"{"rated_kw": 1,"#).unwrap_err();
        assert_eq!(p.status, 400);
    }
}
