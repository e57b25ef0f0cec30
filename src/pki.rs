//! Development PKI: a small certificate authority for local testing.
//!
//! IEEE 2030.5 identifies every client by its TLS certificate, so exercising
//! the server end to end needs a CA, a server certificate and one client
//! certificate per simulated device or aggregator. This module creates them.
//!
//! **These certificates are for development and tests only.** Keys are
//! generated on the local machine and written unencrypted to disk, and there
//! is no revocation, audit or key protection of any kind. Never use this
//! module to issue or hold certificates or keys for real parties.
//!
//! All keys are ECDSA P-256 with SHA-256 signatures, the only suite IEEE
//! 2030.5 allows (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::domain::identity::{Lfdi, Sfdi};

/// Organization name placed in every subject, so that anyone inspecting one
/// of these certificates can see at a glance that it is not a real one.
const ORGANIZATION: &str = "Switchyard Development PKI";

/// Common name of a CA created by [`write_bundle`].
const DEFAULT_CA_COMMON_NAME: &str = "Switchyard Development CA";

/// Default lifetime of issued leaf certificates. 825 days is the longest
/// lifetime some TLS clients (notably Apple platforms) accept for server
/// certificates; using it for everything keeps the rules simple.
const LEAF_VALIDITY: Duration = Duration::days(825);

/// Lifetime of a generated CA: long enough that a development setup does not
/// break while it is still in use.
const CA_VALIDITY: Duration = Duration::days(10 * 365);

/// Certificates start one hour in the past to tolerate clock skew between
/// the machine that issued them and the machines that check them.
const BACKDATE: Duration = Duration::hours(1);

/// Errors from certificate generation, loading and writing.
///
/// Following the usual convention, the message of a wrapping variant does not
/// repeat the underlying error; print the whole chain (for example anyhow's
/// `{:#}`) to see it.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed to generate a key or sign a certificate, or rejected a
    /// key or certificate it was given.
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    /// Reading or writing a file failed.
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A device, aggregator or server name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A certificate or key could not be parsed or is unsuitable.
    #[error("could not use {what}: {reason}")]
    Parse {
        /// What was being parsed (for example "CA certificate").
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The CA private key does not belong to the CA certificate.
    #[error("the CA private key does not match the CA certificate's public key")]
    KeyMismatch,
    /// The requested validity period is empty or reversed.
    #[error(
        "invalid validity period: not_before ({not_before}) must be before not_after ({not_after})"
    )]
    InvalidValidity {
        /// Requested start of validity.
        not_before: OffsetDateTime,
        /// Requested end of validity.
        not_after: OffsetDateTime,
    },
    /// Only one of `ca.pem` and `ca.key` exists in the bundle directory.
    #[error(
        "{} contains only one of ca.pem and ca.key; refusing to overwrite it with a new CA",
        dir.display()
    )]
    IncompleteCa {
        /// The bundle directory.
        dir: PathBuf,
    },
}

/// A certificate authority that signs development certificates.
///
/// Holds the CA key in memory; [`CertificateAuthority::key_pem`] exposes it
/// so that it can be saved and reloaded with
/// [`CertificateAuthority::from_pem`] to issue more certificates later.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
}

impl fmt::Debug for CertificateAuthority {
    // Hand-written so that the private key never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("lfdi", &Lfdi::from_certificate_der(&self.cert_der))
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Generates a new self-signed CA with a fresh P-256 key.
    ///
    /// The CA may sign end-entity certificates only (path length 0), which
    /// is all this development PKI needs and limits the damage if a CA key
    /// leaks out of a test environment.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = OffsetDateTime::now_utc();

        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name, None);
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(CertificateAuthority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
            cert_der: cert.der().to_vec(),
        })
    }

    /// Reloads a CA from its PEM certificate and PEM (PKCS#8) private key,
    /// for example the `ca.pem` and `ca.key` written by [`write_bundle`].
    ///
    /// Checks that the certificate is a CA certificate, that the key is a
    /// P-256 key and that it matches the certificate, so that certificates
    /// issued later really chain to the CA on disk.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| parse_error("CA certificate", format!("not valid PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(parse_error(
                "CA certificate",
                format!("expected a CERTIFICATE PEM block, found {:?}", pem.label),
            ));
        }
        let cert_der = pem.contents;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| parse_error("CA certificate", format!("not valid X.509: {e}")))?;
        if !x509.is_ca() {
            return Err(parse_error(
                "CA certificate",
                "basicConstraints does not mark it as a CA",
            ));
        }

        let key = KeyPair::from_pem(key_pem)?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(parse_error(
                "CA private key",
                "IEEE 2030.5 requires an ECDSA P-256 key",
            ));
        }
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::KeyMismatch);
        }

        // rcgen takes the issuer name and key identifier from the parsed
        // certificate, so new certificates name the CA exactly as it is on
        // disk and their authority key identifier matches its SKI.
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_der,
        })
    }

    /// The CA certificate in PEM form (the trust anchor to give to peers).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PEM (PKCS#8) form. Keep it private.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues a certificate with a fresh P-256 key, signed by this CA.
    ///
    /// Server certificates get the serverAuth extended key usage and the
    /// requested subject alternative names; device and aggregator
    /// certificates get clientAuth, so that they are accepted as TLS client
    /// certificates by rustls/webpki and OpenSSL.
    pub fn issue(&self, req: &IssueRequest) -> Result<IssuedCertificate, PkiError> {
        if req.not_before >= req.not_after {
            return Err(PkiError::InvalidValidity {
                not_before: req.not_before,
                not_after: req.not_after,
            });
        }

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(&req.common_name, Some(req.kind.label()));
        params.not_before = req.not_before;
        params.not_after = req.not_after;
        params.serial_number = Some(random_serial());
        // An explicit "CA:FALSE" (which also makes rcgen add a subject key
        // identifier) so no verifier can mistake a leaf for an issuer.
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;

        match &req.kind {
            CertKind::Server {
                dns_names,
                ip_addresses,
            } => {
                if dns_names.is_empty() && ip_addresses.is_empty() {
                    return Err(PkiError::InvalidName {
                        name: req.common_name.clone(),
                        reason: "a server certificate needs at least one DNS name or IP address"
                            .to_owned(),
                    });
                }
                for name in dns_names {
                    let ia5 =
                        Ia5String::try_from(name.as_str()).map_err(|_| PkiError::InvalidName {
                            name: name.clone(),
                            reason: "DNS names must be ASCII".to_owned(),
                        })?;
                    params.subject_alt_names.push(SanType::DnsName(ia5));
                }
                params
                    .subject_alt_names
                    .extend(ip_addresses.iter().copied().map(SanType::IpAddress));
                // ECDHE_ECDSA only ever uses the key to sign handshakes.
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            CertKind::Device | CertKind::Aggregator => {
                // digitalSignature is what TLS client authentication needs;
                // keyAgreement is also set because the IEEE 2030.5
                // certificate profile lists both for device certificates.
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyAgreement,
                ];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }

        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_der = cert.der().to_vec();
        let lfdi = Lfdi::from_certificate_der(&cert_der);
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            lfdi,
            sfdi: lfdi.sfdi(),
            cert_der,
            common_name: req.common_name.clone(),
        })
    }
}

/// What a certificate will be used for; decides its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertKind {
    /// A TLS server certificate, valid for the given names and addresses.
    Server {
        /// DNS subject alternative names.
        dns_names: Vec<String>,
        /// IP address subject alternative names.
        ip_addresses: Vec<IpAddr>,
    },
    /// An IEEE 2030.5 end device (TLS client).
    Device,
    /// An aggregator acting for many devices (TLS client).
    Aggregator,
}

impl CertKind {
    /// Short label, also used as the subject's organizational unit.
    fn label(&self) -> &'static str {
        match self {
            CertKind::Server { .. } => "server",
            CertKind::Device => "device",
            CertKind::Aggregator => "aggregator",
        }
    }
}

/// Parameters of a certificate to issue.
///
/// The validity fields are public so that tests can create expired or
/// not-yet-valid certificates on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// Purpose of the certificate.
    pub kind: CertKind,
    /// Subject common name.
    pub common_name: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl IssueRequest {
    /// A request valid from one hour ago (to absorb clock skew) until 825
    /// days from now.
    pub fn new(kind: CertKind, common_name: impl Into<String>) -> Self {
        let now = OffsetDateTime::now_utc();
        IssueRequest {
            kind,
            common_name: common_name.into(),
            not_before: now - BACKDATE,
            not_after: now + LEAF_VALIDITY,
        }
    }
}

/// A certificate issued by [`CertificateAuthority::issue`], with its key
/// and IEEE 2030.5 identifiers.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate in PEM form.
    pub cert_pem: String,
    /// The private key in PEM (PKCS#8) form.
    pub key_pem: String,
    /// The certificate in DER form (the bytes the identifiers hash).
    pub cert_der: Vec<u8>,
    /// Long-form device identifier of the certificate.
    pub lfdi: Lfdi,
    /// Short-form device identifier of the certificate.
    pub sfdi: Sfdi,
    /// Subject common name.
    pub common_name: String,
}

impl fmt::Debug for IssuedCertificate {
    // Hand-written so that the private key never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("common_name", &self.common_name)
            .field("lfdi", &self.lfdi)
            .field("sfdi", &self.sfdi)
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

/// What [`write_bundle`] should produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleSpec {
    /// Directory to write into (created if missing).
    pub out_dir: PathBuf,
    /// Extra server names (DNS names or IP addresses); `localhost` and
    /// `127.0.0.1` are always included.
    pub server_names: Vec<String>,
    /// Names of device client certificates to issue.
    pub devices: Vec<String>,
    /// Names of aggregator client certificates to issue.
    pub aggregators: Vec<String>,
}

/// Kind of a client certificate in a [`BundleReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// An end device.
    Device,
    /// An aggregator.
    Aggregator,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientKind::Device => "device",
            ClientKind::Aggregator => "aggregator",
        })
    }
}

/// One client certificate written by [`write_bundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleClient {
    /// Name given in the [`BundleSpec`] (also the file stem).
    pub name: String,
    /// Device or aggregator.
    pub kind: ClientKind,
    /// Path of the certificate (`<name>.pem`).
    pub cert_path: PathBuf,
    /// Path of the private key (`<name>.key`).
    pub key_path: PathBuf,
    /// Long-form device identifier.
    pub lfdi: Lfdi,
    /// Short-form device identifier.
    pub sfdi: Sfdi,
}

/// Summary of what [`write_bundle`] wrote. `Display` renders it as a table
/// for the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// The bundle directory.
    pub out_dir: PathBuf,
    /// Path of the CA certificate.
    pub ca_cert_path: PathBuf,
    /// Path of the CA private key.
    pub ca_key_path: PathBuf,
    /// True if an existing CA was reloaded rather than a new one generated.
    pub ca_reused: bool,
    /// Path of the server certificate.
    pub server_cert_path: PathBuf,
    /// Path of the server private key.
    pub server_key_path: PathBuf,
    /// Subject alternative names of the server certificate.
    pub server_names: Vec<String>,
    /// Client certificates, devices first, in the order requested.
    pub clients: Vec<BundleClient>,
}

impl fmt::Display for BundleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca_origin = if self.ca_reused {
            "existing CA reused"
        } else {
            "new CA generated"
        };
        writeln!(
            f,
            "CA certificate:     {} ({ca_origin})",
            self.ca_cert_path.display()
        )?;
        writeln!(f, "CA key:             {}", self.ca_key_path.display())?;
        writeln!(
            f,
            "Server certificate: {} (names: {})",
            self.server_cert_path.display(),
            self.server_names.join(", ")
        )?;
        writeln!(f, "Server key:         {}", self.server_key_path.display())?;

        if self.clients.is_empty() {
            return writeln!(f, "No device or aggregator certificates requested.");
        }

        let name_w = column_width("NAME", self.clients.iter().map(|c| c.name.len()));
        let kind_w = column_width(
            "KIND",
            self.clients.iter().map(|c| c.kind.to_string().len()),
        );
        let lfdi_w = column_width("LFDI", self.clients.iter().map(|_| 40));
        let sfdi_w = column_width(
            "SFDI",
            self.clients.iter().map(|c| c.sfdi.to_string().len()),
        );
        writeln!(f)?;
        writeln!(
            f,
            "{:<name_w$}  {:<kind_w$}  {:<lfdi_w$}  {:<sfdi_w$}  CERTIFICATE",
            "NAME", "KIND", "LFDI", "SFDI"
        )?;
        for c in &self.clients {
            writeln!(
                f,
                "{:<name_w$}  {:<kind_w$}  {:<lfdi_w$}  {:<sfdi_w$}  {}",
                c.name,
                c.kind.to_string(),
                c.lfdi.to_hex(),
                c.sfdi.to_string(),
                c.cert_path.display()
            )?;
        }
        Ok(())
    }
}

/// Width of a table column: the widest cell or the header, whichever is
/// larger.
fn column_width(header: &str, cells: impl Iterator<Item = usize>) -> usize {
    cells.fold(header.len(), usize::max)
}

/// Writes a complete development bundle into `spec.out_dir`:
/// `ca.pem`/`ca.key`, `server.pem`/`server.key` and `<name>.pem`/`<name>.key`
/// for every device and aggregator.
///
/// If `ca.pem` and `ca.key` already exist they are reloaded rather than
/// replaced, so running this again adds clients that chain to the same CA
/// (and existing peers keep trusting it). The server and named client
/// certificates are always issued afresh, which changes their LFDIs.
///
/// All names are validated before anything is written. Private keys are
/// written with mode 0600 on Unix.
pub fn write_bundle(spec: &BundleSpec) -> Result<BundleReport, PkiError> {
    validate_client_names(spec)?;
    let ServerNames {
        dns_names,
        ip_addresses,
        all: server_names,
    } = server_alt_names(&spec.server_names)?;

    let dir = &spec.out_dir;
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;

    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let cert_exists = path_exists(&ca_cert_path)?;
    let key_exists = path_exists(&ca_key_path)?;
    let (ca, ca_reused) = match (cert_exists, key_exists) {
        (true, true) => {
            let cert_pem = read_file(&ca_cert_path)?;
            let key_pem = read_file(&ca_key_path)?;
            (CertificateAuthority::from_pem(&cert_pem, &key_pem)?, true)
        }
        (false, false) => {
            let ca = CertificateAuthority::generate(DEFAULT_CA_COMMON_NAME)?;
            // Key first: if writing the certificate then fails, the next run
            // reports an incomplete CA instead of silently making a new one
            // that no longer matches certificates handed out already.
            write_file(&ca_key_path, ca.key_pem(), true)?;
            write_file(&ca_cert_path, ca.cert_pem(), false)?;
            (ca, false)
        }
        _ => return Err(PkiError::IncompleteCa { dir: dir.clone() }),
    };

    let server_cn = server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".to_owned());
    let server = ca.issue(&IssueRequest::new(
        CertKind::Server {
            dns_names,
            ip_addresses,
        },
        server_cn,
    ))?;
    let server_cert_path = dir.join("server.pem");
    let server_key_path = dir.join("server.key");
    write_file(&server_key_path, &server.key_pem, true)?;
    write_file(&server_cert_path, &server.cert_pem, false)?;

    let requested = spec
        .devices
        .iter()
        .map(|n| (n, ClientKind::Device))
        .chain(spec.aggregators.iter().map(|n| (n, ClientKind::Aggregator)));
    let mut clients = Vec::new();
    for (name, kind) in requested {
        let cert_kind = match kind {
            ClientKind::Device => CertKind::Device,
            ClientKind::Aggregator => CertKind::Aggregator,
        };
        let issued = ca.issue(&IssueRequest::new(cert_kind, name.clone()))?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        write_file(&key_path, &issued.key_pem, true)?;
        write_file(&cert_path, &issued.cert_pem, false)?;
        clients.push(BundleClient {
            name: name.clone(),
            kind,
            cert_path,
            key_path,
            lfdi: issued.lfdi,
            sfdi: issued.sfdi,
        });
    }

    Ok(BundleReport {
        out_dir: dir.clone(),
        ca_cert_path,
        ca_key_path,
        ca_reused,
        server_cert_path,
        server_key_path,
        server_names,
        clients,
    })
}

/// Client names become file names, so they are restricted to a safe
/// alphabet (no path separators, no `..`), must not collide with the CA or
/// server files, and must be unique.
fn validate_client_names(spec: &BundleSpec) -> Result<(), PkiError> {
    let mut seen = HashSet::new();
    for name in spec.devices.iter().chain(&spec.aggregators) {
        let invalid = |reason: &str| PkiError::InvalidName {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        if name.is_empty() {
            return Err(invalid("name is empty"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "only ASCII letters, digits, '_' and '-' are allowed",
            ));
        }
        if name == "ca" || name == "server" {
            return Err(invalid("reserved for the CA and server files"));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid("requested more than once"));
        }
    }
    Ok(())
}

/// Subject alternative names of the bundle's server certificate.
struct ServerNames {
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    /// Every name, in order, for the report.
    all: Vec<String>,
}

/// Splits the server names into DNS names and IP addresses, adding
/// `localhost` and `127.0.0.1` and dropping duplicates.
fn server_alt_names(requested: &[String]) -> Result<ServerNames, PkiError> {
    let mut names = ServerNames {
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        all: Vec::new(),
    };
    let defaults = ["localhost", "127.0.0.1"];
    for name in requested.iter().map(String::as_str).chain(defaults) {
        let name = name.trim();
        if name.is_empty() {
            return Err(PkiError::InvalidName {
                name: name.to_owned(),
                reason: "server name is empty".to_owned(),
            });
        }
        // Checked here, not only when issuing, so that a bad name is
        // reported before any file is written.
        if !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PkiError::InvalidName {
                name: name.to_owned(),
                reason: "server names must be printable ASCII without spaces".to_owned(),
            });
        }
        if names.all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => names.ip_addresses.push(ip),
            Err(_) => names.dns_names.push(name.to_owned()),
        }
        names.all.push(name.to_owned());
    }
    Ok(names)
}

/// 16 random bytes, the top bit cleared so the serial is positive and the
/// next bit set so its DER encoding is always exactly 16 bytes. Random
/// serials keep reissued certificates distinguishable to verifiers.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Subject name: CN, optional OU (the certificate's role) and the fixed O
/// that marks the certificate as a development one.
fn distinguished_name(common_name: &str, unit: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    if let Some(unit) = unit {
        dn.push(DnType::OrganizationalUnitName, unit);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn parse_error(what: &str, reason: impl Into<String>) -> PkiError {
    PkiError::Parse {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn path_exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|e| io_error(path, e))
}

fn read_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|e| io_error(path, e))
}

/// Writes `contents` to `path`, replacing any existing file. With `private`
/// set, the file is restricted to its owner on Unix *before* the contents
/// are written, including when an existing file had looser permissions.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| io_error(path, e))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        // `mode` above only applies when the file is created.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("valid X.509");
        assert!(rest.is_empty(), "trailing bytes after certificate");
        cert
    }

    fn assert_p256(cert: &X509Certificate<'_>) {
        let spki = cert.public_key();
        assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .expect("named curve parameter");
        assert_eq!(curve, OID_EC_P256);
    }

    /// Verifies `cert` is signed by `ca` (with x509-parser's ring-backed
    /// verifier, enabled through rcgen's `ring` feature) and names it as
    /// issuer byte for byte.
    fn assert_signed_by(cert: &X509Certificate<'_>, ca: &X509Certificate<'_>) {
        cert.verify_signature(Some(ca.public_key()))
            .expect("signature verifies with the CA key");
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    }

    #[test]
    fn ca_has_ca_extensions() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let cert = parse(ca.cert_der());
        assert!(cert.is_ca());
        let bc = cert.basic_constraints().expect("bc").expect("present");
        assert!(bc.critical);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = cert.key_usage().expect("ku").expect("present").value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert_p256(&cert);
        assert_signed_by(&cert, &cert);
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        // The key must not leak through Debug.
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn client_certificate_profile() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let ca_cert = parse(ca.cert_der());
        for kind in [CertKind::Device, CertKind::Aggregator] {
            let issued = ca
                .issue(&IssueRequest::new(kind, "meter-1"))
                .expect("issue client");
            let cert = parse(&issued.cert_der);
            assert_signed_by(&cert, &ca_cert);
            assert_p256(&cert);
            assert!(!cert.is_ca());
            let eku = cert.extended_key_usage().expect("eku").expect("present");
            assert!(eku.value.client_auth && !eku.value.server_auth);
            let ku = cert.key_usage().expect("ku").expect("present").value;
            assert!(ku.digital_signature());
            assert!(!ku.key_cert_sign());
            assert!(cert.validity().is_valid());
            assert_eq!(issued.common_name, "meter-1");
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok());
            assert_eq!(cn, Some("meter-1"));
            assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            // The PEM and DER forms are the same certificate.
            let (_, pem) =
                x509_parser::pem::parse_x509_pem(issued.cert_pem.as_bytes()).expect("PEM");
            assert_eq!(pem.contents, issued.cert_der);
        }
    }

    #[test]
    fn identifiers_are_computed_over_the_der() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let issued = ca
            .issue(&IssueRequest::new(CertKind::Device, "dev"))
            .expect("issue");
        assert_eq!(issued.lfdi, Lfdi::from_certificate_der(&issued.cert_der));
        assert_eq!(issued.sfdi, issued.lfdi.sfdi());
        // Fresh keys and serials: a second certificate has another identity.
        let other = ca
            .issue(&IssueRequest::new(CertKind::Device, "dev"))
            .expect("issue");
        assert_ne!(other.lfdi, issued.lfdi);
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn server_certificate_profile() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let req = IssueRequest::new(
            CertKind::Server {
                dns_names: vec!["switchyard.test".into()],
                ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
            },
            "switchyard.test",
        );
        let issued = ca.issue(&req).expect("issue server");
        let cert = parse(&issued.cert_der);
        assert_signed_by(&cert, &parse(ca.cert_der()));
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        let san = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present");
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("switchyard.test")));
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));

        let no_names = IssueRequest::new(
            CertKind::Server {
                dns_names: vec![],
                ip_addresses: vec![],
            },
            "x",
        );
        assert!(matches!(
            ca.issue(&no_names),
            Err(PkiError::InvalidName { .. })
        ));
    }

    #[test]
    fn validity_can_be_set_for_expired_and_future_certificates() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let now = OffsetDateTime::now_utc();

        let mut expired = IssueRequest::new(CertKind::Device, "old");
        expired.not_before = now - Duration::days(30);
        expired.not_after = now - Duration::days(1);
        let issued = ca.issue(&expired).expect("issue expired");
        let cert = parse(&issued.cert_der);
        assert!(cert.validity().not_after.timestamp() < now.unix_timestamp());
        assert!(!cert.validity().is_valid());

        let mut future = IssueRequest::new(CertKind::Device, "new");
        future.not_before = now + Duration::days(1);
        future.not_after = now + Duration::days(30);
        let issued = ca.issue(&future).expect("issue future");
        let cert = parse(&issued.cert_der);
        assert!(cert.validity().not_before.timestamp() > now.unix_timestamp());
        assert!(!cert.validity().is_valid());

        let mut reversed = IssueRequest::new(CertKind::Device, "bad");
        reversed.not_after = reversed.not_before;
        assert!(matches!(
            ca.issue(&reversed),
            Err(PkiError::InvalidValidity { .. })
        ));
    }

    #[test]
    fn default_request_validity() {
        let before = OffsetDateTime::now_utc();
        let req = IssueRequest::new(CertKind::Device, "d");
        assert!(req.not_before < before);
        assert!(req.not_after - req.not_before >= Duration::days(825));
    }

    #[test]
    fn reloaded_ca_issues_certificates_that_chain_to_the_original() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let reloaded =
            CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem()).expect("reload CA");
        assert_eq!(reloaded.cert_der(), ca.cert_der());
        let issued = reloaded
            .issue(&IssueRequest::new(CertKind::Device, "later"))
            .expect("issue");
        let ca_cert = parse(ca.cert_der());
        let cert = parse(&issued.cert_der);
        assert_signed_by(&cert, &ca_cert);
        // Authority key identifier must match the CA's subject key identifier
        // for path building in OpenSSL and webpki.
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .expect("AKI present");
        let ski = ca_cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                    Some(ski.0.to_vec())
                }
                _ => None,
            })
            .expect("SKI present");
        assert_eq!(aki, ski);
    }

    #[test]
    fn from_pem_rejects_mismatched_or_unsuitable_input() {
        let ca = CertificateAuthority::generate("Test CA").expect("generate CA");
        let other = CertificateAuthority::generate("Other CA").expect("generate CA");
        assert!(matches!(
            CertificateAuthority::from_pem(ca.cert_pem(), other.key_pem()),
            Err(PkiError::KeyMismatch)
        ));
        let leaf = ca
            .issue(&IssueRequest::new(CertKind::Device, "leaf"))
            .expect("issue");
        assert!(matches!(
            CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem),
            Err(PkiError::Parse { .. })
        ));
        assert!(matches!(
            CertificateAuthority::from_pem("not pem", ca.key_pem()),
            Err(PkiError::Parse { .. })
        ));
        assert!(CertificateAuthority::from_pem(ca.cert_pem(), "not a key").is_err());
    }

    #[test]
    fn write_bundle_writes_files_and_reuses_the_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spec = BundleSpec {
            out_dir: tmp.path().join("bundle"),
            server_names: vec!["switchyard.test".into(), "10.0.0.5".into()],
            devices: vec!["dev-1".into(), "dev_2".into()],
            aggregators: vec!["agg1".into()],
        };
        let first = write_bundle(&spec).expect("first bundle");
        assert!(!first.ca_reused);
        assert_eq!(first.clients.len(), 3);
        assert_eq!(
            first.server_names,
            ["switchyard.test", "10.0.0.5", "localhost", "127.0.0.1"]
        );
        let ca_pem = fs::read_to_string(&first.ca_cert_path).expect("ca.pem");
        let ca_der = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
            .expect("PEM")
            .1
            .contents;
        let ca_cert = parse(&ca_der);

        for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
            assert!(spec.out_dir.join(file).is_file(), "{file} missing");
        }
        for client in &first.clients {
            let pem = fs::read_to_string(&client.cert_path).expect("client pem");
            let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .expect("PEM")
                .1
                .contents;
            assert_eq!(Lfdi::from_certificate_der(&der), client.lfdi);
            assert_eq!(client.lfdi.sfdi(), client.sfdi);
            assert_signed_by(&parse(&der), &ca_cert);
            assert!(client.key_path.is_file());
        }
        assert_eq!(first.clients[2].kind, ClientKind::Aggregator);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["ca.key", "server.key", "dev-1.key", "agg1.key"] {
                let mode = fs::metadata(spec.out_dir.join(key))
                    .expect("metadata")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }

        let table = first.to_string();
        for client in &first.clients {
            assert!(table.contains(&client.name));
            assert!(table.contains(&client.lfdi.to_hex()));
            assert!(table.contains(&client.sfdi.to_string()));
        }

        let second_spec = BundleSpec {
            devices: vec!["dev-3".into()],
            aggregators: vec![],
            ..spec.clone()
        };
        let second = write_bundle(&second_spec).expect("second bundle");
        assert!(second.ca_reused);
        assert_eq!(
            fs::read_to_string(&second.ca_cert_path).expect("ca.pem"),
            ca_pem
        );
        let pem = fs::read_to_string(&second.clients[0].cert_path).expect("dev-3.pem");
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("PEM")
            .1
            .contents;
        assert_signed_by(&parse(&der), &ca_cert);
    }

    #[test]
    fn write_bundle_rejects_bad_names_before_writing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out_dir = tmp.path().join("bundle");
        for bad in ["../x", "", "a/b", "a.b", "ca", "server", "naïve"] {
            let spec = BundleSpec {
                out_dir: out_dir.clone(),
                devices: vec![bad.to_owned()],
                ..BundleSpec::default()
            };
            assert!(
                matches!(write_bundle(&spec), Err(PkiError::InvalidName { .. })),
                "{bad:?} should be rejected"
            );
        }
        let duplicate = BundleSpec {
            out_dir: out_dir.clone(),
            devices: vec!["same".into()],
            aggregators: vec!["same".into()],
            ..BundleSpec::default()
        };
        assert!(matches!(
            write_bundle(&duplicate),
            Err(PkiError::InvalidName { .. })
        ));
        let bad_server = BundleSpec {
            out_dir: out_dir.clone(),
            server_names: vec!["bad host".into()],
            ..BundleSpec::default()
        };
        assert!(matches!(
            write_bundle(&bad_server),
            Err(PkiError::InvalidName { .. })
        ));
        assert!(!out_dir.exists(), "nothing should be written");
    }

    #[test]
    fn write_bundle_refuses_incomplete_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("ca.pem"), "placeholder").expect("write");
        let spec = BundleSpec {
            out_dir: tmp.path().to_owned(),
            ..BundleSpec::default()
        };
        assert!(matches!(
            write_bundle(&spec),
            Err(PkiError::IncompleteCa { .. })
        ));
        assert_eq!(
            fs::read_to_string(tmp.path().join("ca.pem")).expect("read"),
            "placeholder"
        );
    }

    #[test]
    fn report_table_without_clients() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spec = BundleSpec {
            out_dir: tmp.path().to_owned(),
            ..BundleSpec::default()
        };
        let report = write_bundle(&spec).expect("bundle");
        assert_eq!(report.server_names, ["localhost", "127.0.0.1"]);
        assert!(report.to_string().contains("No device or aggregator"));
    }
}
