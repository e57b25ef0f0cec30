//! The identity of a TLS client: its certificate and the LFDI/SFDI hashed
//! from it.
//!
//! IEEE 2030.5 has no user names or tokens: a client *is* the certificate it
//! presented in the handshake, and the server finds its registration by the
//! LFDI (the first 160 bits of SHA-256 over the certificate's DER bytes).
//! Nothing in a request can change this identity; the HTTP layer receives it
//! from the connection, never from headers or bodies.

use std::fmt;
use std::sync::Arc;

use rustls::ServerConnection;
use rustls::pki_types::CertificateDer;

use crate::domain::identity::{Lfdi, Sfdi};

/// The authenticated identity of the client on a TLS connection.
///
/// Cheap to clone (the certificate is shared), so it can be attached to
/// every request of a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    lfdi: Lfdi,
    sfdi: Sfdi,
    certificate: Arc<CertificateDer<'static>>,
}

impl PeerIdentity {
    /// The identity of the end-entity certificate `der`, exactly as it was
    /// sent in the handshake (re-encoding would change the hash).
    pub fn from_certificate_der(der: &[u8]) -> PeerIdentity {
        let lfdi = Lfdi::from_certificate_der(der);
        PeerIdentity {
            lfdi,
            sfdi: lfdi.sfdi(),
            certificate: Arc::new(CertificateDer::from(der.to_vec())),
        }
    }

    /// Long-form device identifier.
    pub fn lfdi(&self) -> Lfdi {
        self.lfdi
    }

    /// Short-form device identifier.
    pub fn sfdi(&self) -> Sfdi {
        self.sfdi
    }

    /// The client's end-entity certificate in DER form, for checks beyond
    /// the identifiers (for example telling aggregators from devices).
    pub fn certificate_der(&self) -> &[u8] {
        self.certificate.as_ref()
    }
}

// Hand-written: the certificate bytes are noise in logs.
impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("lfdi", &self.lfdi)
            .field("sfdi", &self.sfdi)
            .finish_non_exhaustive()
    }
}

/// The identity of the client on `conn`, from the first certificate of the
/// chain it presented.
///
/// `None` before the handshake has completed, or if the server was
/// configured without client authentication; [`super::server_config`]
/// requires a certificate, so after a successful handshake there always is
/// one (also on resumed sessions, which carry the original certificate).
pub fn peer_identity(conn: &ServerConnection) -> Option<PeerIdentity> {
    if conn.is_handshaking() {
        return None;
    }
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|end_entity| PeerIdentity::from_certificate_der(end_entity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_hash_of_the_der_bytes() {
        let der = b"\x30\x03\x02\x01\x05 stand-in certificate bytes";
        let id = PeerIdentity::from_certificate_der(der);
        assert_eq!(id.lfdi(), Lfdi::from_certificate_der(der));
        assert_eq!(id.sfdi(), id.lfdi().sfdi());
        assert_eq!(id.certificate_der(), der);
        let debug = format!("{id:?}");
        assert!(debug.contains(&id.lfdi().to_hex()), "{debug}");
        assert!(!debug.contains("certificate"), "{debug}");
    }
}
