//! Deployment behind a TLS-terminating proxy: the proxy performs the mutual-TLS handshake
//! and forwards the client certificate in a header (nginx `$ssl_client_escaped_cert`, i.e.
//! URL-encoded PEM, or plain PEM). The header is believed only from configured proxy
//! addresses, and the certificate is still checked against the same CA set and rules as on
//! the direct TLS listener, so identity keeps coming from a verified certificate.

use super::tls::{PeerIdentity, TlsError};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// How certificates arrive from the proxy.
#[derive(Clone)]
pub struct ProxyAuth {
    /// Lower-case header name carrying the certificate.
    pub header: String,
    /// Addresses whose requests may carry the header.
    pub trusted: Arc<Vec<IpAddr>>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl ProxyAuth {
    /// Builds the check from the CA set the TLS listener uses.
    pub fn new(header: &str, trusted: Vec<IpAddr>, ca_pem: &str) -> Result<Self, TlsError> {
        Ok(ProxyAuth {
            header: header.to_ascii_lowercase(),
            trusted: Arc::new(trusted),
            verifier: super::tls::client_cert_verifier(ca_pem)?,
        })
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        why.to_string(),
    )
        .into_response()
}

/// Decodes the forwarded certificate: URL-encoded or plain PEM.
fn certificate_from_header(value: &str) -> Option<Vec<u8>> {
    let pem = percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()?;
    crate::registry::entity::certificate_der_from_pem(&pem).ok()
}

/// Middleware: accepts the request only from a trusted proxy with a valid forwarded client
/// certificate, and attaches its [`PeerIdentity`].
pub async fn require_forwarded_certificate(
    State(auth): State<ProxyAuth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if !auth.trusted.contains(&peer.ip()) {
        tracing::warn!(%peer, "client certificate header from an untrusted address");
        return refuse(StatusCode::FORBIDDEN, "not a trusted proxy");
    }
    let Some(value) = req
        .headers()
        .get(auth.header.as_str())
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no client certificate was forwarded",
        );
    };
    let Some(der) = certificate_from_header(value) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the forwarded client certificate is not a PEM certificate",
        );
    };
    let cert = CertificateDer::from(der.clone());
    if let Err(e) = auth
        .verifier
        .verify_client_cert(&cert, &[], UnixTime::now())
    {
        tracing::info!(error = %e, "forwarded client certificate refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "the forwarded client certificate is not accepted",
        );
    }
    req.extensions_mut()
        .insert(PeerIdentity::from_certificate_der(&der));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertificateAuthority, IssueRequest};

    #[test]
    fn decodes_url_encoded_and_plain_pem() {
        let ca = CertificateAuthority::generate("CA").unwrap();
        let c = ca.issue(&IssueRequest::new(CertKind::Device, "d")).unwrap();
        let encoded: String =
            percent_encoding::utf8_percent_encode(&c.cert_pem, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(certificate_from_header(&encoded).unwrap(), c.cert_der);
        assert_eq!(certificate_from_header(&c.cert_pem).unwrap(), c.cert_der);
        assert!(certificate_from_header("not a cert").is_none());
    }
}
