//! OAuth2 client credentials for the OpenADR 3 VTN: the `/auth/token` and `/auth/server`
//! endpoints, signed access tokens, and the [`Caller`] every other handler starts from.
//!
//! Access tokens are HS256 JWTs carrying the client id and its role, so any node holding
//! the configured key can check them without a lookup. Client secrets are compared by
//! SHA-256 digest so that the comparison does not depend on where two strings differ.

use super::config::{ClientConfig, ClientRole};
use super::error::OadrError;
use super::model::{AuthServerInfo, ClientCredentialRequest, ClientCredentialResponse};
use super::{PREFIX, VtnState};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Who made a request, from a valid access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    pub role: ClientRole,
}

impl Caller {
    pub fn is_bl(&self) -> bool {
        self.role == ClientRole::Bl
    }

    /// 403 unless the caller is a BL client.
    pub fn require_bl(&self, what: &str) -> Result<(), OadrError> {
        if self.is_bl() {
            Ok(())
        } else {
            Err(OadrError::forbidden(format!(
                "client '{}' is a VEN; only business logic (BL) clients may {what}",
                self.client_id
            )))
        }
    }

    /// 403 unless the caller is a VEN client.
    pub fn require_ven(&self, what: &str) -> Result<(), OadrError> {
        if self.is_bl() {
            Err(OadrError::forbidden(format!(
                "client '{}' is business logic (BL); only VEN clients may {what}",
                self.client_id
            )))
        } else {
            Ok(())
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The client id.
    pub sub: String,
    /// `bl` or `ven`.
    pub role: ClientRole,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

/// Issuer name written into and required of tokens.
pub const ISSUER: &str = "switchyard-openadr3";

/// Issues and checks access tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime: u64,
    clients: HashMap<String, ([u8; 32], ClientRole)>,
}

impl TokenIssuer {
    /// Builds the issuer; an empty secret means a random one for this process.
    pub fn new(secret: &str, lifetime: u64, clients: &[ClientConfig]) -> Self {
        let key: Vec<u8> = if secret.is_empty() {
            let mut k = Vec::with_capacity(32);
            k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            k
        } else {
            secret.as_bytes().to_vec()
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        TokenIssuer {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            lifetime,
            clients: clients
                .iter()
                .map(|c| (c.client_id.clone(), (digest(&c.client_secret), c.role)))
                .collect(),
        }
    }

    /// The role of a client whose secret matches, or None.
    pub fn check_client(&self, id: &str, secret: &str) -> Option<ClientRole> {
        let (d, role) = self.clients.get(id)?;
        (*d == digest(secret)).then_some(*role)
    }

    /// A signed token for `client_id` with `role`.
    pub fn issue(&self, client_id: &str, role: ClientRole) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: client_id.to_string(),
            role,
            iat: now,
            exp: now + self.lifetime,
            iss: ISSUER.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an HMAC key cannot fail")
    }

    /// Checks a token's signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Caller, OadrError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired",
                    ErrorKind::InvalidSignature => "the access token's signature is not ours",
                    _ => "the access token is malformed or not issued by this VTN",
                };
                OadrError::unauthorized(why)
            })?;
        Ok(Caller {
            client_id: data.claims.sub,
            role: data.claims.role,
        })
    }

    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl FromRequestParts<VtnState> for Caller {
    type Rejection = OadrError;

    async fn from_request_parts(parts: &mut Parts, state: &VtnState) -> Result<Self, OadrError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            OadrError::unauthorized("missing bearer token (Authorization: Bearer <token>)")
        })?;
        // The built-in endpoint signs with HS256 only; anything else can only be the
        // external issuer's.
        let external = jsonwebtoken::decode_header(token).is_ok_and(|h| h.alg != Algorithm::HS256);
        match (&state.external, external) {
            (Some(issuer), true) => {
                let caller = issuer.verify(token).await?;
                if caller.is_bl() {
                    state.vtn.note_bl_client(&caller.client_id);
                }
                Ok(caller)
            }
            _ => state.tokens.verify(token),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The scopes (as the specification names them) a role is granted.
pub fn scopes(role: ClientRole) -> &'static str {
    match role {
        ClientRole::Bl => "read_all write_programs write_events write_subscriptions write_vens",
        ClientRole::Ven => {
            "read_targets read_ven_objects write_reports write_subscriptions write_vens"
        }
    }
}

/// An OAuth2 error (RFC 6749 section 5.2) in the specification's problem shape: the
/// `error` member is what OAuth2 client libraries look for.
fn oauth_error(status: StatusCode, error: &str, detail: &str) -> Response {
    let p = OadrError::new(status, error, detail).0;
    let mut body = serde_json::to_value(&*p).unwrap_or_default();
    body["error"] = error.into();
    body["error_description"] = detail.into();
    let mut resp = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic"),
        );
    }
    resp
}

/// `POST /auth/token`: client credentials from the form body or HTTP Basic.
pub async fn token(
    State(state): State<VtnState>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the token request as application/x-www-form-urlencoded",
        );
    }
    let mut form = ClientCredentialRequest {
        grant_type: None,
        client_id: None,
        client_secret: None,
        scope: None,
    };
    for (k, v) in form_urlencoded::parse(&body) {
        let slot = match &*k {
            "grant_type" => &mut form.grant_type,
            "client_id" => &mut form.client_id,
            "client_secret" => &mut form.client_secret,
            "scope" => &mut form.scope,
            _ => continue,
        };
        if slot.is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("parameter '{k}' is repeated"),
            );
        }
        *slot = Some(v.into_owned());
    }
    if let Some((id, secret)) = basic(&headers) {
        form.client_id.get_or_insert(id);
        form.client_secret.get_or_insert(secret);
    }
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type '{other}' is not supported; use client_credentials"),
            );
        }
    }
    let (Some(id), Some(secret)) = (form.client_id, form.client_secret) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required",
        );
    };
    let Some(role) = state.tokens.check_client(&id, &secret) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    };
    let resp = ClientCredentialResponse {
        access_token: state.tokens.issue(&id, role),
        token_type: "Bearer".into(),
        expires_in: state.tokens.lifetime(),
        scope: Some(scopes(role).into()),
    };
    let mut r = axum::Json(resp).into_response();
    // RFC 6749 section 5.1: token responses must not be cached.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, creds) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(creds.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    // RFC 6749 section 2.3.1: both parts are form-encoded inside Basic.
    let dec = |x: &str| {
        form_urlencoded::parse(format!("a={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// `GET /auth/server`: where the token endpoint is, as an absolute URL built from the
/// request's Host header.
pub async fn server(headers: HeaderMap) -> axum::Json<AuthServerInfo> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    axum::Json(AuthServerInfo {
        token_url: format!("http://{host}{PREFIX}/auth/token"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str) -> TokenIssuer {
        TokenIssuer::new(
            secret,
            60,
            &[ClientConfig {
                client_id: "ven1".into(),
                client_secret: "s".into(),
                role: ClientRole::Ven,
            }],
        )
    }

    #[test]
    fn tokens_round_trip_and_reject_other_keys() {
        let a = issuer("key-a");
        assert_eq!(a.check_client("ven1", "s"), Some(ClientRole::Ven));
        assert_eq!(a.check_client("ven1", "t"), None);
        let t = a.issue("ven1", ClientRole::Ven);
        assert_eq!(a.verify(&t).unwrap().client_id, "ven1");
        let b = issuer("key-b");
        assert_eq!(b.verify(&t).unwrap_err().status(), 401);
        assert_eq!(a.verify("garbage").unwrap_err().status(), 401);
    }
}
