//! Access tokens from an external OAuth2 issuer: JWTs checked against the issuer's
//! published keys (a JWKS document fetched from a configured URL), its issuer and audience,
//! and their expiry, with the client's role read from a configured claim.
//!
//! Keys are cached. A token naming a key id (`kid`) the cache does not hold makes the
//! VTN fetch the document again, since that is how issuers roll keys; refetches are
//! spaced by `min_refresh_seconds` so that tokens with made-up key ids cannot make the
//! VTN hammer the issuer. The algorithm comes from the key, never from the token's
//! header, and symmetric (`oct`) keys are refused: a key anyone can read cannot sign.

use super::auth::Caller;
use super::config::ClientRole;
use super::error::OadrError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// `[openadr3.external_issuer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalIssuerConfig {
    /// Where the issuer publishes its keys (a JWKS document); empty: no external issuer.
    pub jwks_url: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry (one of, when an array).
    pub audience: String,
    /// The claim naming the client (`sub` for most issuers; `client_id` or `azp` for some).
    pub client_id_claim: String,
    /// The claim carrying roles: a string or an array of strings.
    pub roles_claim: String,
    /// The role value that makes a client business logic.
    pub bl_role: String,
    /// The role value that makes a client a VEN.
    pub ven_role: String,
    /// How long fetched keys are used before they are fetched again, seconds.
    pub cache_seconds: u64,
    /// Least time between two fetches caused by unknown key ids, seconds.
    pub min_refresh_seconds: u64,
    /// Tolerated clock difference with the issuer for `exp` and `nbf`, seconds.
    pub leeway_seconds: u64,
    /// Timeout of one JWKS fetch, seconds.
    pub fetch_timeout_seconds: u64,
}

impl Default for ExternalIssuerConfig {
    fn default() -> Self {
        ExternalIssuerConfig {
            jwks_url: String::new(),
            issuer: String::new(),
            audience: String::new(),
            client_id_claim: "sub".into(),
            roles_claim: "roles".into(),
            bl_role: "bl".into(),
            ven_role: "ven".into(),
            cache_seconds: 3600,
            min_refresh_seconds: 30,
            leeway_seconds: 0,
            fetch_timeout_seconds: 5,
        }
    }
}

impl ExternalIssuerConfig {
    pub fn enabled(&self) -> bool {
        !self.jwks_url.is_empty()
    }

    /// Checks the configuration at start-up.
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        let url = reqwest::Url::parse(&self.jwks_url)
            .map_err(|e| format!("openadr3.external_issuer.jwks_url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("openadr3.external_issuer.jwks_url: must be http or https".into());
        }
        for (name, v) in [
            ("issuer", &self.issuer),
            ("audience", &self.audience),
            ("client_id_claim", &self.client_id_claim),
            ("roles_claim", &self.roles_claim),
            ("bl_role", &self.bl_role),
            ("ven_role", &self.ven_role),
        ] {
            if v.is_empty() {
                return Err(format!(
                    "openadr3.external_issuer.{name}: required when jwks_url is set"
                ));
            }
        }
        if self.bl_role == self.ven_role {
            return Err("openadr3.external_issuer: bl_role and ven_role must differ".into());
        }
        Ok(())
    }
}

/// One usable key.
struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

struct Cache {
    keys: HashMap<String, Key>,
    fetched: Option<Instant>,
}

/// Validates tokens of the external issuer.
pub struct ExternalIssuer {
    config: ExternalIssuerConfig,
    http: reqwest::Client,
    cache: tokio::sync::RwLock<Cache>,
    /// One fetch at a time; callers that waited reuse its result.
    fetching: tokio::sync::Mutex<()>,
}

/// The algorithm a published key signs with, when it is one we accept.
fn algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let from_key = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        // Symmetric or unknown keys never sign tokens we accept.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(from_key),
        Some(
            KeyAlgorithm::HS256
            | KeyAlgorithm::HS384
            | KeyAlgorithm::HS512
            | KeyAlgorithm::RSA1_5
            | KeyAlgorithm::RSA_OAEP
            | KeyAlgorithm::RSA_OAEP_256,
        ) => None,
        Some(ka) => Algorithm::from_str(&ka.to_string()).ok(),
    }
}

impl ExternalIssuer {
    pub fn new(config: ExternalIssuerConfig) -> Result<Self, String> {
        config.check()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.fetch_timeout_seconds.max(1)))
            .build()
            .map_err(|e| format!("openadr3.external_issuer: HTTP client: {e}"))?;
        Ok(ExternalIssuer {
            config,
            http,
            cache: tokio::sync::RwLock::new(Cache {
                keys: HashMap::new(),
                fetched: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Fetches the key set again unless another caller just did, or the last fetch was
    /// less than `min_refresh_seconds` ago (unless `stale`: the cache has expired).
    async fn refresh(&self, seen: Option<Instant>) -> Result<(), OadrError> {
        let _f = self.fetching.lock().await;
        let fetched = self.cache.read().await.fetched;
        if fetched != seen {
            // Someone else fetched while we waited.
            return Ok(());
        }
        if let Some(t) = fetched
            && t.elapsed() < Duration::from_secs(self.config.min_refresh_seconds)
        {
            return Ok(());
        }
        let keys = self.fetch().await.map_err(|e| {
            tracing::error!(url = %self.config.jwks_url, error = %e, "JWKS fetch failed");
            OadrError::unauthorized(
                "the token cannot be checked: the external issuer's keys are unavailable",
            )
        });
        let mut cache = self.cache.write().await;
        cache.fetched = Some(Instant::now());
        cache.keys = keys?;
        Ok(())
    }

    async fn fetch(&self) -> Result<HashMap<String, Key>, String> {
        let resp = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let set: JwkSet = resp.json().await.map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), algorithm(jwk)) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, Key { key, alg });
            }
        }
        Ok(keys)
    }

    /// Checks a token and names its client and role.
    pub async fn verify(&self, token: &str) -> Result<Caller, OadrError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| OadrError::unauthorized("the access token is malformed"))?;
        let kid = header.kid.ok_or_else(|| {
            OadrError::unauthorized("the access token names no key (kid) of the external issuer")
        })?;
        let stale = {
            let c = self.cache.read().await;
            let expired = c
                .fetched
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.config.cache_seconds));
            (expired || !c.keys.contains_key(&kid)).then_some(c.fetched)
        };
        if let Some(seen) = stale {
            self.refresh(seen).await?;
        }
        let cache = self.cache.read().await;
        let key = cache.keys.get(&kid).ok_or_else(|| {
            OadrError::unauthorized(format!(
                "the access token is signed with key '{kid}', which the external issuer does not publish"
            ))
        })?;
        if header.alg != key.alg {
            return Err(OadrError::unauthorized(
                "the access token's algorithm does not match its key",
            ));
        }
        let mut v = Validation::new(key.alg);
        v.leeway = self.config.leeway_seconds;
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            OadrError::unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the access token has expired",
                ErrorKind::InvalidSignature => {
                    "the access token's signature does not verify with the external issuer's key"
                }
                ErrorKind::InvalidAudience => "the access token is not meant for this VTN (aud)",
                ErrorKind::InvalidIssuer => "the access token is not from the configured issuer",
                ErrorKind::ImmatureSignature => "the access token is not valid yet",
                _ => "the access token is malformed or lacks exp, iss or aud",
            })
        })?;
        let claims = data.claims;
        let client_id = claims[&self.config.client_id_claim]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                OadrError::unauthorized(format!(
                    "the access token has no '{}' claim naming the client",
                    self.config.client_id_claim
                ))
            })?;
        let roles: Vec<&str> = match &claims[&self.config.roles_claim] {
            serde_json::Value::String(s) => s.split(' ').collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => vec![],
        };
        // A token claiming both roles is refused rather than guessed at.
        let role = match (
            roles.contains(&self.config.bl_role.as_str()),
            roles.contains(&self.config.ven_role.as_str()),
        ) {
            (true, false) => ClientRole::Bl,
            (false, true) => ClientRole::Ven,
            _ => {
                return Err(OadrError::forbidden(format!(
                    "the access token's '{}' claim must hold exactly one of '{}' and '{}'",
                    self.config.roles_claim, self.config.bl_role, self.config.ven_role
                )));
            }
        };
        Ok(Caller {
            client_id: client_id.to_string(),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_key_decides_the_algorithm_and_symmetric_keys_are_refused() {
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "a",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        assert_eq!(algorithm(&jwk(ec.clone())), Some(Algorithm::ES256));
        let mut hs = ec.clone();
        hs["alg"] = "HS256".into();
        assert_eq!(algorithm(&jwk(hs)), None);
        let oct = serde_json::json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"});
        assert_eq!(algorithm(&jwk(oct)), None);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(ExternalIssuerConfig::default().check().is_ok());
        let mut c = ExternalIssuerConfig {
            jwks_url: "https://idp.example/jwks".into(),
            issuer: "https://idp.example".into(),
            audience: "vtn".into(),
            ..Default::default()
        };
        assert!(c.check().is_ok());
        c.audience.clear();
        assert!(c.check().unwrap_err().contains("audience"));
        c.audience = "vtn".into();
        c.jwks_url = "ftp://idp.example/jwks".into();
        assert!(c.check().unwrap_err().contains("http"));
        c.jwks_url = "https://idp.example/jwks".into();
        c.ven_role = "bl".into();
        assert!(c.check().unwrap_err().contains("differ"));
    }
}
