//! rustls configurations for IEEE 2030.5 servers and clients.
//!
//! Both sides share one [`CryptoProvider`]: rustls's *ring* provider with
//! its suites, key exchange groups and signature algorithms narrowed to what
//! IEEE 2030.5 (and its CSIP profiles) expect, plus our own CCM_8 suite.
//! Narrowing matters for a conformance-oriented server: offering a suite or
//! curve the standard does not name would let a non-conforming client
//! appear to work against us and then fail against real utility servers.

use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, ConfigBuilder, NamedGroup, ProtocolVersion, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};

use super::TlsError;
use super::ccm8::tls_ecdhe_ecdsa_with_aes_128_ccm_8;

/// ALPN protocols the server accepts. IEEE 2030.5 specifies HTTP/1.1; h2 is
/// accepted too because the connection handler serves both, and refusing a
/// client that offers only h2 would be a handshake failure for no gain.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Certificate and handshake signatures: ECDSA P-256 with SHA-256 only, the
/// one algorithm the IEEE 2030.5 certificate profile allows. Applies to the
/// signatures on certificates (CA to leaf) and on the handshake.
static ECDSA_P256_SHA256_ONLY: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[webpki::ring::ECDSA_P256_SHA256],
    mapping: &[(
        SignatureScheme::ECDSA_NISTP256_SHA256,
        &[webpki::ring::ECDSA_P256_SHA256],
    )],
};

/// X25519 restricted to TLS 1.3. IEEE 2030.5 requires ECDHE over secp256r1
/// for its TLS 1.2 suites; TLS 1.3 peers may still prefer X25519.
#[derive(Debug)]
struct Tls13Only(&'static dyn SupportedKxGroup);

impl SupportedKxGroup for Tls13Only {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        self.0.start()
    }

    fn start_and_complete(
        &self,
        peer_pub_key: &[u8],
    ) -> Result<rustls::crypto::CompletedKeyExchange, rustls::Error> {
        self.0.start_and_complete(peer_pub_key)
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        self.0.name()
    }

    fn fips(&self) -> bool {
        self.0.fips()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

static X25519_TLS13_ONLY: Tls13Only = Tls13Only(rustls::crypto::ring::kx_group::X25519);

/// The IEEE 2030.5 crypto provider.
///
/// * Cipher suites, in preference order: TLS13_AES_128_GCM_SHA256 (TLS 1.3),
///   TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (TLS 1.2, mandatory in 2030.5),
///   TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (TLS 1.2).
/// * Key exchange: secp256r1 first; X25519 for TLS 1.3 only.
/// * Signatures: ECDSA P-256 with SHA-256 only.
///
/// Randomness and private-key loading are *ring*'s.
pub fn crypto_provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            tls_ecdhe_ecdsa_with_aes_128_ccm_8(),
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::SECP256R1, &X25519_TLS13_ONLY],
        signature_verification_algorithms: ECDSA_P256_SHA256_ONLY,
        ..default_provider()
    }
}

/// Server configuration for IEEE 2030.5 mutual TLS.
///
/// `ca_certs_pem` holds the CA certificates client certificates must chain
/// to (one or more PEM blocks); `server_cert_pem` the server certificate,
/// optionally followed by intermediates; `server_key_pem` its PKCS#8, SEC1
/// or PKCS#1 private key, which must be ECDSA P-256.
///
/// Every client must present a certificate that chains to one of the CAs
/// and is valid now; anything else (no certificate, unknown issuer, bad
/// signature, expired, not yet valid, not for client authentication) fails
/// the handshake, so no HTTP request is ever seen from an unauthenticated
/// peer. Revocation (CRL/OCSP) is not checked: IEEE 2030.5 device
/// certificates carry no revocation endpoints, and withdrawing a device is
/// the registry's job (it stops accepting the LFDI).
///
/// Session resumption: stateless tickets (TLS 1.2 and 1.3) and a session-id cache of
/// [`SESSION_CACHE_ENTRIES`].
///
/// ALPN offers `h2` and `http/1.1`; a client that sends no ALPN gets
/// HTTP/1.1 (or HTTP/2 if it speaks it with prior knowledge).
pub fn server_config(
    ca_certs_pem: &str,
    server_cert_pem: &str,
    server_key_pem: &str,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(crypto_provider());
    let roots = Arc::new(root_store(ca_certs_pem, "CA certificates")?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()?;
    let key = certified_key(
        &provider,
        (server_cert_pem, "server certificate"),
        (server_key_pem, "server private key"),
    )?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    // Resumption is 3-4x cheaper for the server than a full handshake (docs/benchmarks.md).
    // Stateless tickets (rotated every 6 hours) let any number of devices resume; the
    // session cache serves TLS 1.2 clients that resume by session id instead. A resumed
    // session keeps the client certificate it was established with, so identity is
    // unchanged, and the certificate is still checked against the registry per request.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|source| TlsError::Rustls {
        what: "session ticketer",
        source,
    })?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(config)
}

/// TLS 1.2 sessions remembered by id for resumption (about 1 KB each with the client's
/// certificate).
pub const SESSION_CACHE_ENTRIES: usize = 16_384;

/// Client configuration for talking to an IEEE 2030.5 server with a client
/// certificate: trusts only the CAs in `ca_pem`, authenticates with
/// `client_cert_pem` (plus intermediates) and its ECDSA P-256 key.
///
/// Offers all suites of [`crypto_provider`], TLS 1.3 first. No ALPN is
/// offered, which makes the server use HTTP/1.1; set
/// [`ClientConfig::alpn_protocols`] to change that.
pub fn client_config(
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<ClientConfig, TlsError> {
    client_config_with_suites(
        ca_pem,
        client_cert_pem,
        client_key_pem,
        &crypto_provider().cipher_suites,
    )
}

/// Like [`client_config`], but offering only `suites` (in that order), and
/// only the protocol versions they belong to. Conformance tests use it to
/// force a suite, for example TLS 1.2 with CCM_8 alone.
///
/// Every suite must be one of [`crypto_provider`]'s.
pub fn client_config_with_suites(
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
    suites: &[SupportedCipherSuite],
) -> Result<ClientConfig, TlsError> {
    let mut provider = crypto_provider();
    for suite in suites {
        if !provider
            .cipher_suites
            .iter()
            .any(|ours| ours.suite() == suite.suite())
        {
            return Err(TlsError::UnsupportedSuite(suite.suite()));
        }
    }
    if suites.is_empty() {
        return Err(TlsError::Unusable {
            what: "cipher suite list",
            reason: "it is empty".to_owned(),
        });
    }
    provider.cipher_suites = suites.to_vec();
    let versions: Vec<&'static SupportedProtocolVersion> = [&TLS13, &TLS12]
        .into_iter()
        .filter(|v| suites.iter().any(|s| s.version() == *v))
        .collect();
    let provider = Arc::new(provider);

    let roots = root_store(ca_pem, "CA certificates")?;
    let key = certified_key(
        &provider,
        (client_cert_pem, "client certificate"),
        (client_key_pem, "client private key"),
    )?;
    let builder: ConfigBuilder<ClientConfig, WantsClientCert> =
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|source| TlsError::Rustls {
                what: "protocol versions",
                source,
            })?
            .with_root_certificates(roots);
    Ok(builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))))
}

/// The client-certificate check the TLS listener applies, for certificates that arrive by
/// another route (a TLS-terminating proxy): same CA set, same validity and key rules.
pub fn client_cert_verifier(
    ca_certs_pem: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let provider = Arc::new(crypto_provider());
    let roots = Arc::new(root_store(ca_certs_pem, "CA certificates")?);
    Ok(WebPkiClientVerifier::builder_with_provider(roots, provider).build()?)
}

/// Parses every certificate in `pem` into a trust store.
fn root_store(pem: &str, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(pem, what)? {
        roots
            .add(cert)
            .map_err(|source| TlsError::Rustls { what, source })?;
    }
    Ok(roots)
}

/// Parses all `CERTIFICATE` blocks of `pem`, requiring at least one.
fn parse_certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// Loads a certificate chain and its private key, checking that the key is
/// ECDSA P-256 and belongs to the first certificate. Each input comes with
/// the name to use for it in errors.
fn certified_key(
    provider: &CryptoProvider,
    (cert_pem, cert_what): (&str, &'static str),
    (key_pem, key_what): (&str, &'static str),
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certs(cert_pem, cert_what)?;
    let key_der =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| TlsError::Pem {
            what: key_what,
            source,
        })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::Rustls {
            what: key_what,
            source,
        })?;
    // *ring* signing keys offer exactly the one scheme their curve allows,
    // so this is how to ask "is it a P-256 ECDSA key?" through rustls's API.
    if signing_key
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .is_none()
    {
        return Err(TlsError::Unusable {
            what: key_what,
            reason: format!(
                "IEEE 2030.5 requires an ECDSA P-256 key, this is {:?}",
                signing_key.algorithm()
            ),
        });
    }
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match().map_err(|source| TlsError::Rustls {
        what: cert_what,
        source,
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertKind, CertificateAuthority, IssueRequest};

    fn ca_and_server() -> (CertificateAuthority, crate::pki::IssuedCertificate) {
        let ca = CertificateAuthority::generate("Test CA").expect("ca");
        let server = ca
            .issue(&IssueRequest::new(
                CertKind::Server {
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec![],
                },
                "localhost",
            ))
            .expect("server");
        (ca, server)
    }

    #[test]
    fn provider_offers_exactly_the_2030_5_suites_and_groups() {
        let provider = crypto_provider();
        let suites: Vec<u16> = provider
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        assert_eq!(suites, [0x1301, 0xC0AE, 0xC02B]);
        let groups: Vec<NamedGroup> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(groups, [NamedGroup::secp256r1, NamedGroup::X25519]);
        assert!(provider.kx_groups[0].usable_for_version(ProtocolVersion::TLSv1_2));
        assert!(!provider.kx_groups[1].usable_for_version(ProtocolVersion::TLSv1_2));
        assert!(provider.kx_groups[1].usable_for_version(ProtocolVersion::TLSv1_3));
        assert_eq!(
            provider.signature_verification_algorithms.mapping.len(),
            1,
            "ECDSA P-256 only"
        );
    }

    #[test]
    fn server_config_builds_with_alpn() {
        let (ca, server) = ca_and_server();
        let config =
            server_config(ca.cert_pem(), &server.cert_pem, &server.key_pem).expect("config");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn bad_inputs_are_reported_not_panicked() {
        let (ca, server) = ca_and_server();
        let other = CertificateAuthority::generate("Other").expect("ca");

        assert!(matches!(
            server_config("", &server.cert_pem, &server.key_pem),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            server_config(ca.cert_pem(), &server.cert_pem, "not a key"),
            Err(TlsError::Pem { .. })
        ));
        // The key of another certificate does not match.
        assert!(matches!(
            server_config(ca.cert_pem(), &server.cert_pem, other.key_pem()),
            Err(TlsError::Rustls { .. })
        ));
        let broken_ca = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(server_config(broken_ca, &server.cert_pem, &server.key_pem).is_err());
    }

    #[test]
    fn rejects_keys_other_than_p256() {
        let (ca, _) = ca_and_server();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).expect("cert");
        let err = server_config(ca.cert_pem(), &cert.pem(), &key.serialize_pem())
            .expect_err("P-384 must be refused");
        assert!(
            matches!(err, TlsError::Unusable { .. }),
            "unexpected error {err:?}"
        );
    }

    #[test]
    fn client_suites_must_be_ours_and_select_versions() {
        let (ca, server) = ca_and_server();
        let ccm = [tls_ecdhe_ecdsa_with_aes_128_ccm_8()];
        let config =
            client_config_with_suites(ca.cert_pem(), &server.cert_pem, &server.key_pem, &ccm)
                .expect("config");
        assert_eq!(config.crypto_provider().cipher_suites.len(), 1);

        let foreign = [rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384];
        assert!(matches!(
            client_config_with_suites(ca.cert_pem(), &server.cert_pem, &server.key_pem, &foreign),
            Err(TlsError::UnsupportedSuite(_))
        ));
        assert!(matches!(
            client_config_with_suites(ca.cert_pem(), &server.cert_pem, &server.key_pem, &[]),
            Err(TlsError::Unusable { .. })
        ));
    }
}
