//! Bearer-token authentication and roles for the operator API.
//!
//! Tokens come from configuration. Only their SHA-256 digests are kept in memory, so a heap
//! dump does not leak them; comparing digests also makes the lookup independent of where
//! two token strings first differ.

use super::AppState;
use super::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything, change nothing.
    ReadOnly,
    /// Read and write the registry.
    Operator,
}

impl Role {
    /// The configuration name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read_only",
            Role::Operator => "operator",
        }
    }
}

/// One configured API token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (appears in logs, never the token itself).
    pub name: String,
    pub token: String,
    pub role: Role,
}

/// Who made a request, as established by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The token table.
#[derive(Debug, Default)]
pub struct Authenticator {
    by_digest: HashMap<[u8; 32], Caller>,
}

impl Authenticator {
    /// Builds the table from configuration.
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let by_digest = tokens
            .iter()
            .map(|t| {
                (
                    digest(&t.token),
                    Caller {
                        name: t.name.clone(),
                        role: t.role,
                    },
                )
            })
            .collect();
        Authenticator { by_digest }
    }

    /// The caller a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<&Caller> {
        self.by_digest.get(&digest(token))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The role a request needs: reads need any valid token, everything else needs `operator`.
pub fn required_role(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD {
        Role::ReadOnly
    } else {
        Role::Operator
    }
}

/// Middleware: 401 without a valid bearer token, 403 when the token's role is too weak.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, Problem> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token (Authorization: Bearer <token>)",
            )
        })?;
    let caller = state.auth.authenticate(token).cloned().ok_or_else(|| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown bearer token",
        )
    })?;
    let needed = required_role(req.method());
    if caller.role < needed {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token '{}' has role {}; {} needs {}",
                caller.name,
                caller.role.as_str(),
                req.method(),
                needed.as_str()
            ),
        ));
    }
    tracing::debug!(caller = %caller.name, method = %req.method(), path = %req.uri().path(), "authorized");
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_lookup() {
        let auth = Authenticator::new(&[TokenConfig {
            name: "ops".into(),
            token: "s3cret".into(),
            role: Role::Operator,
        }]);
        assert_eq!(auth.authenticate("s3cret").unwrap().role, Role::Operator);
        assert!(auth.authenticate("s3cre").is_none());
        assert_eq!(required_role(&Method::GET), Role::ReadOnly);
        assert_eq!(required_role(&Method::DELETE), Role::Operator);
        assert!(Role::ReadOnly < Role::Operator);
    }
}
