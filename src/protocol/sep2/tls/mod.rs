//! TLS for the IEEE 2030.5 server: mutual TLS, the mandatory CCM_8 suite,
//! and client identity taken from the certificate.
//!
//! IEEE 2030.5 runs HTTP over TLS with mutual authentication: every client
//! presents a certificate chaining to a trusted CA, and that certificate *is*
//! its identity (the LFDI/SFDI are hashes of it). This module provides:
//!
//! * [`crypto_provider`]: rustls's *ring* provider cut down to what the
//!   standard asks for: TLS 1.2 with TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
//!   (mandatory; rustls has no CCM, so [`tls_ecdhe_ecdsa_with_aes_128_ccm_8`]
//!   provides it) and TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS 1.3 with
//!   TLS13_AES_128_GCM_SHA256, P-256 key exchange first, ECDSA P-256
//!   signatures only.
//! * [`server_config`] (client certificates required and verified) and
//!   [`client_config`] (for test clients and the conformance runner).
//! * [`PeerIdentity`] and [`peer_identity`]: the LFDI/SFDI of a connection.
//! * [`serve_tls`]: an accept loop that serves an axum `Router` over TLS and
//!   gives every request its connection's [`PeerIdentity`] as an extension.

mod ccm8;
mod config;
mod identity;
mod serve;

pub use ccm8::tls_ecdhe_ecdsa_with_aes_128_ccm_8;
pub use config::{
    client_cert_verifier, client_config, client_config_with_suites, crypto_provider, server_config,
};
pub use identity::{PeerIdentity, peer_identity};
pub use serve::{ServeOptions, serve_tls};

/// Errors from building TLS configurations.
///
/// The message of a wrapping variant does not repeat the underlying error;
/// print the whole chain (for example anyhow's `{:#}`) to see it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input could not be parsed.
    #[error("could not parse {what} PEM")]
    Pem {
        /// Which input (for example "CA certificates").
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM input held no certificate.
    #[error("{what} PEM contains no certificate")]
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// A certificate or key was parsed but cannot be used.
    #[error("unusable {what}: {reason}")]
    Unusable {
        /// Which input.
        what: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// rustls rejected a certificate, key or configuration.
    #[error("rustls rejected the {what}")]
    Rustls {
        /// What was being configured.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built (for example an
    /// empty trust store).
    #[error("could not build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A cipher suite was requested that IEEE 2030.5 configurations here do
    /// not support.
    #[error("cipher suite {0:?} is not one of the IEEE 2030.5 suites offered here")]
    UnsupportedSuite(rustls::CipherSuite),
}
