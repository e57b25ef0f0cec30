//! A client of the operator JSON API (`/api/v1/...`) for tests over a real socket.
//!
//! Every answer comes back as `(status, body)`, the body parsed as JSON or, when it is not
//! JSON, kept as a JSON string, so that an assertion message always shows what the server
//! said.

use super::{OPERATOR_TOKEN, install_tls_provider};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// The operator API of one running server.
pub struct ApiClient {
    pub http: Client,
    /// `http://host:port`, without a path.
    pub base: String,
}

async fn status_and_json(resp: reqwest::Response) -> (StatusCode, HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

impl ApiClient {
    pub fn new(base: impl Into<String>) -> ApiClient {
        install_tls_provider();
        ApiClient {
            http: Client::new(),
            base: base.into(),
        }
    }

    /// One request with a JSON body, as the holder of `token` (None: with no token).
    pub async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, _, body) = status_and_json(req.send().await.expect("request")).await;
        (status, body)
    }

    /// [`ApiClient::send`] as the holder of `token`.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.send(Some(token), method, path, body).await
    }

    /// [`ApiClient::send`] as the operator.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(OPERATOR_TOKEN, method, path, body).await
    }

    /// POSTs `body` as the operator, asserts 201 Created and returns what was created.
    pub async fn created(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.call(Method::POST, path, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
        v
    }

    /// GETs `path` as the holder of `token`, asserts 200 OK and returns the body.
    pub async fn ok_as(&self, token: &str, path: &str) -> Value {
        let (s, v) = self.call_as(token, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// [`ApiClient::ok_as`] as the operator.
    pub async fn ok(&self, path: &str) -> Value {
        self.ok_as(OPERATOR_TOKEN, path).await
    }

    /// One request as the operator with a body of any media type (CSV, XML, a malformed
    /// JSON text); the answer's headers come back too.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, HeaderMap, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(OPERATOR_TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        status_and_json(resp).await
    }
}
