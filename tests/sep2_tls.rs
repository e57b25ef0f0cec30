//! Integration tests of the IEEE 2030.5 TLS layer over real sockets.
//!
//! A TLS listener on 127.0.0.1 serves a small axum router whose `/dcap`
//! answers with the caller's LFDI and SFDI as taken from the TLS
//! connection. Against it:
//!
//! * the `openssl` command-line client negotiates
//!   TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (our own implementation of the
//!   suite, so this proves it matches the standard as OpenSSL implements
//!   it), the GCM suite and TLS 1.3, and is refused suites and curves that
//!   IEEE 2030.5 does not allow;
//! * a rustls client negotiates each suite, including CCM_8 (our encrypter
//!   talking to our decrypter), also with multi-record bodies;
//! * clients without a certificate, or with a certificate from another CA,
//!   signed by the wrong key, expired, not yet valid, or meant for servers,
//!   fail the handshake;
//! * a stalled handshake is cut after the handshake timeout, and shutdown
//!   drains open connections.
//!
//! The OpenSSL tests need the `openssl` binary: without it they print
//! SKIPPED, except under CI (`CI=true`), where they fail.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Extension};
use axum::routing::{get, post};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore, SupportedCipherSuite};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest, IssuedCertificate};
use switchyard::protocol::sep2::tls::{self, PeerIdentity, ServeOptions};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Size of the large response and request bodies: several full TLS records.
const BIG: usize = 100_000;

/// Upper bound for any single client exchange, so a broken server fails
/// the test instead of hanging it.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A development PKI written to a temporary directory (for openssl).
struct TestPki {
    ca: CertificateAuthority,
    server: IssuedCertificate,
    device: IssuedCertificate,
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        let ca = CertificateAuthority::generate("Switchyard Test CA").expect("CA");
        let server = ca
            .issue(&IssueRequest::new(
                CertKind::Server {
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
                },
                "localhost",
            ))
            .expect("server certificate");
        let device = ca
            .issue(&IssueRequest::new(CertKind::Device, "dev"))
            .expect("device certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = TestPki {
            ca,
            server,
            device,
            dir,
        };
        pki.write("ca.pem", pki.ca.cert_pem());
        pki.write("dev.pem", &pki.device.cert_pem);
        pki.write("dev.key", &pki.device.key_pem);
        pki
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write PEM");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client certificate issued by our CA with the given validity.
    fn device_valid(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> IssuedCertificate {
        let mut req = IssueRequest::new(CertKind::Device, "dev-dated");
        req.not_before = not_before;
        req.not_after = not_after;
        self.ca.issue(&req).expect("dated device certificate")
    }

    fn client(&self, cert: &IssuedCertificate) -> ClientConfig {
        tls::client_config(self.ca.cert_pem(), &cert.cert_pem, &cert.key_pem)
            .expect("client config")
    }

    fn client_with(
        &self,
        cert: &IssuedCertificate,
        suites: &[SupportedCipherSuite],
    ) -> ClientConfig {
        tls::client_config_with_suites(self.ca.cert_pem(), &cert.cert_pem, &cert.key_pem, suites)
            .expect("client config")
    }
}

/// The TLS server under test, stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(pki: &TestPki) -> TestServer {
        TestServer::start_with(pki, ServeOptions::default()).await
    }

    async fn start_with(pki: &TestPki, options: ServeOptions) -> TestServer {
        let config =
            tls::server_config(pki.ca.cert_pem(), &pki.server.cert_pem, &pki.server.key_pem)
                .expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let router = Router::new()
            .route("/dcap", get(dcap))
            .route("/big", get(|| async { "x".repeat(BIG) }))
            .route(
                "/echo-len",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            );
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(tls::serve_tls(
            listener,
            Arc::new(config),
            router,
            options,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        TestServer { addr, stop, task }
    }

    /// Signals shutdown and waits for `serve_tls` to return.
    async fn shutdown(mut self) -> Duration {
        let started = Instant::now();
        self.stop.send_replace(true);
        tokio::time::timeout(EXCHANGE_TIMEOUT, &mut self.task)
            .await
            .expect("serve_tls returns after shutdown")
            .expect("serve_tls does not panic");
        started.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The endpoint under test: who does the server think is calling?
async fn dcap(
    Extension(peer): Extension<PeerIdentity>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
) -> String {
    assert!(remote.ip().is_loopback());
    identity_line(&peer.lfdi().to_string(), &peer.sfdi().to_string())
}

fn identity_line(lfdi: &str, sfdi: &str) -> String {
    format!("lfdi={lfdi} sfdi={sfdi}")
}

fn expected_identity(cert: &IssuedCertificate) -> String {
    identity_line(&cert.lfdi.to_hex(), &cert.sfdi.to_string())
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client over rustls
// ---------------------------------------------------------------------------

/// What one request over a fresh TLS connection produced.
#[derive(Debug)]
struct Exchange {
    version: rustls::ProtocolVersion,
    suite: rustls::CipherSuite,
    kind: Option<rustls::HandshakeKind>,
    status_line: String,
    body: Vec<u8>,
}

/// Connects, sends one request with `Connection: close`, reads the whole
/// response. Any TLS failure (including an alert after a TLS 1.3 client
/// thinks the handshake is done) comes back as the error.
async fn exchange(
    config: ClientConfig,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> io::Result<Exchange> {
    let connector = TlsConnector::from(Arc::new(config));
    let run = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut tls = connector.connect(name, tcp).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body).await?;
        tls.flush().await?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await?;
        let (_, session) = tls.get_ref();
        let version = session.protocol_version().expect("version");
        let suite = session.negotiated_cipher_suite().expect("suite").suite();
        let kind = session.handshake_kind();
        Ok::<_, io::Error>((version, suite, kind, response))
    };
    let (version, suite, kind, response) = tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "exchange timed out"))??;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    Ok(Exchange {
        version,
        suite,
        kind,
        status_line: head.lines().next().unwrap_or_default().to_owned(),
        body: response[split + 4..].to_vec(),
    })
}

async fn get_dcap(config: ClientConfig, addr: SocketAddr) -> io::Result<Exchange> {
    exchange(config, addr, "GET", "/dcap", b"").await
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Asserts that the server refused the client with `alert`.
fn assert_refused(what: &str, result: io::Result<Exchange>, alert: AlertDescription) {
    let error = match result {
        Ok(exchange) => panic!("{what}: expected a refused handshake, got {exchange:?}"),
        Err(error) => error,
    };
    match rustls_error(&error) {
        Some(rustls::Error::AlertReceived(received)) if *received == alert => {}
        other => panic!("{what}: expected the alert {alert:?}, got {other:?} ({error})"),
    }
}

// ---------------------------------------------------------------------------
// rustls clients
// ---------------------------------------------------------------------------

fn ccm8() -> SupportedCipherSuite {
    tls::tls_ecdhe_ecdsa_with_aes_128_ccm_8()
}

fn gcm12() -> SupportedCipherSuite {
    rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
}

fn gcm13() -> SupportedCipherSuite {
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
}

#[tokio::test]
async fn rustls_client_negotiates_each_suite_and_gets_its_lfdi() {
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;

    let cases = [
        (ccm8(), rustls::ProtocolVersion::TLSv1_2),
        (gcm12(), rustls::ProtocolVersion::TLSv1_2),
        (gcm13(), rustls::ProtocolVersion::TLSv1_3),
    ];
    for (suite, version) in cases {
        let config = pki.client_with(&pki.device, &[suite]);
        let ex = get_dcap(config, server.addr)
            .await
            .expect("request succeeds");
        assert_eq!(ex.suite, suite.suite());
        assert_eq!(ex.version, version);
        assert_eq!(ex.status_line, "HTTP/1.1 200 OK");
        assert_eq!(
            String::from_utf8_lossy(&ex.body),
            expected_identity(&pki.device)
        );
    }

    // With everything offered, TLS 1.3 wins.
    let ex = get_dcap(pki.client(&pki.device), server.addr)
        .await
        .expect("default client");
    assert_eq!(ex.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(ex.suite, gcm13().suite());
    server.shutdown().await;
}

/// Reconnecting devices resume their session (tickets for TLS 1.2 and 1.3) instead of paying
/// for a full handshake, and the resumed session carries the same certificate identity.
#[tokio::test]
async fn sessions_resume_with_the_same_identity() {
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;
    let second = pki
        .ca
        .issue(&IssueRequest::new(CertKind::Device, "inverter-2"))
        .expect("second device");
    for suite in [ccm8(), gcm12(), gcm13()] {
        let config = pki.client_with(&pki.device, &[suite]);
        let first = get_dcap(config.clone(), server.addr).await.expect("first");
        assert_eq!(first.kind, Some(rustls::HandshakeKind::Full));
        let again = get_dcap(config.clone(), server.addr).await.expect("again");
        assert_eq!(
            again.kind,
            Some(rustls::HandshakeKind::Resumed),
            "{:?}",
            suite.suite()
        );
        assert_eq!(again.suite, suite.suite());
        assert_eq!(
            String::from_utf8_lossy(&again.body),
            expected_identity(&pki.device),
            "the resumed session is still the device"
        );
        // Another device's connection is its own, full handshake with its own identity.
        let other = get_dcap(pki.client_with(&second, &[suite]), server.addr)
            .await
            .expect("other");
        assert_eq!(other.kind, Some(rustls::HandshakeKind::Full));
        assert_eq!(
            String::from_utf8_lossy(&other.body),
            expected_identity(&second)
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn alpn_selects_http1_or_http2() {
    let pki = TestPki::new();
    let options = ServeOptions {
        drain_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let server = TestServer::start_with(&pki, options).await;

    let mut config = pki.client(&pki.device);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let ex = get_dcap(config, server.addr)
        .await
        .expect("HTTP/1.1 via ALPN");
    assert_eq!(ex.status_line, "HTTP/1.1 200 OK");

    // HTTP/2: the server must answer the connection preface with its
    // SETTINGS frame (frame type 4). A full HTTP/2 client is not needed to
    // show that ALPN "h2" reaches hyper's HTTP/2 side.
    let mut config = pki.client(&pki.device);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let mut frame_header = [0u8; 9];
    tokio::time::timeout(EXCHANGE_TIMEOUT, tls.read_exact(&mut frame_header))
        .await
        .expect("server answers")
        .expect("SETTINGS frame");
    assert_eq!(frame_header[3], 0x04, "first frame is SETTINGS");

    // Graceful HTTP/2 shutdown needs the peer to answer a PING; this one
    // never reads again, so the drain timeout has to end it.
    let took = server.shutdown().await;
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(10)).contains(&took),
        "shutdown took {took:?}"
    );
    drop(tls);
}

#[tokio::test]
async fn ccm8_carries_multi_record_bodies_both_ways() {
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;

    let ex = exchange(
        pki.client_with(&pki.device, &[ccm8()]),
        server.addr,
        "GET",
        "/big",
        b"",
    )
    .await
    .expect("large response");
    assert_eq!(ex.suite, ccm8().suite());
    assert_eq!(ex.status_line, "HTTP/1.1 200 OK");
    assert_eq!(ex.body.len(), BIG);
    assert!(ex.body.iter().all(|&b| b == b'x'));

    let upload: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let ex = exchange(
        pki.client_with(&pki.device, &[ccm8()]),
        server.addr,
        "POST",
        "/echo-len",
        &upload,
    )
    .await
    .expect("large request");
    assert_eq!(ex.status_line, "HTTP/1.1 200 OK");
    assert_eq!(String::from_utf8_lossy(&ex.body), BIG.to_string());
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

/// Tries `config` restricted to TLS 1.2 (CCM_8) and to TLS 1.3, expecting
/// the server to refuse both with `alert`. In TLS 1.2 the client
/// sees the alert during the handshake; in TLS 1.3 the client sends its
/// certificate in its last flight and sees the alert on the first read.
async fn assert_refused_both_versions(
    what: &str,
    server: &TestServer,
    make: impl Fn(&[SupportedCipherSuite]) -> ClientConfig,
    alert: AlertDescription,
) {
    for suites in [[ccm8()], [gcm13()]] {
        let label = format!("{what} ({:?})", suites[0].suite());
        assert_refused(&label, get_dcap(make(&suites), server.addr).await, alert);
    }
}

/// A client that presents no certificate at all.
fn anonymous_client(pki: &TestPki, suites: &[SupportedCipherSuite]) -> ClientConfig {
    let mut provider = tls::crypto_provider();
    provider.cipher_suites = suites.to_vec();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.cert_pem().as_bytes()).expect("CA PEM"))
        .expect("CA");
    let version = suites[0].version();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn handshake_refuses_clients_without_an_acceptable_certificate() {
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);

    // No certificate. rustls answers with TLS 1.3's certificate_required
    // alert in TLS 1.2 too.
    assert_refused_both_versions(
        "no client certificate",
        &server,
        |suites| anonymous_client(&pki, suites),
        AlertDescription::CertificateRequired,
    )
    .await;

    // A valid certificate from a CA we do not trust.
    let other_ca = CertificateAuthority::generate("Some Other CA").expect("CA");
    let foreign = other_ca
        .issue(&IssueRequest::new(CertKind::Device, "foreign"))
        .expect("foreign certificate");
    assert_refused_both_versions(
        "certificate from another CA",
        &server,
        |suites| {
            tls::client_config_with_suites(
                pki.ca.cert_pem(),
                &foreign.cert_pem,
                &foreign.key_pem,
                suites,
            )
            .expect("config")
        },
        AlertDescription::UnknownCA,
    )
    .await;

    // Same issuer name as our CA, but signed by another key.
    let impostor_ca = CertificateAuthority::generate("Switchyard Test CA").expect("CA");
    let forged = impostor_ca
        .issue(&IssueRequest::new(CertKind::Device, "forged"))
        .expect("forged certificate");
    assert_refused_both_versions(
        "certificate signed by the wrong key",
        &server,
        |suites| {
            tls::client_config_with_suites(
                pki.ca.cert_pem(),
                &forged.cert_pem,
                &forged.key_pem,
                suites,
            )
            .expect("config")
        },
        AlertDescription::DecryptError,
    )
    .await;

    let expired = pki.device_valid(now - 10 * day, now - day);
    assert_refused_both_versions(
        "expired certificate",
        &server,
        |suites| pki.client_with(&expired, suites),
        AlertDescription::CertificateExpired,
    )
    .await;

    let not_yet_valid = pki.device_valid(now + day, now + 10 * day);
    assert_refused_both_versions(
        "not yet valid certificate",
        &server,
        |suites| pki.client_with(&not_yet_valid, suites),
        AlertDescription::CertificateExpired,
    )
    .await;

    // Our CA's server certificate lacks the clientAuth key usage.
    assert_refused_both_versions(
        "server certificate used as a client certificate",
        &server,
        |suites| pki.client_with(&pki.server, suites),
        AlertDescription::UnsupportedCertificate,
    )
    .await;

    // None of this disturbed the listener.
    let ex = get_dcap(pki.client(&pki.device), server.addr)
        .await
        .expect("a good client still gets in");
    assert_eq!(
        String::from_utf8_lossy(&ex.body),
        expected_identity(&pki.device)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn stalled_handshakes_time_out_and_garbage_does_not_hurt() {
    let pki = TestPki::new();
    let options = ServeOptions {
        handshake_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    let server = TestServer::start_with(&pki, options).await;

    // Connect and say nothing: the server must hang up by itself.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("server closes a stalled handshake");
    assert!(matches!(read, Ok(0) | Err(_)), "unexpected data: {read:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Plain HTTP to the TLS port is a failed handshake, nothing more.
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    plain
        .write_all(b"GET /dcap HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut sink)).await;
    assert!(!String::from_utf8_lossy(&sink).contains("lfdi="));

    let ex = get_dcap(pki.client(&pki.device), server.addr)
        .await
        .expect("listener still serves");
    assert_eq!(ex.status_line, "HTTP/1.1 200 OK");
    server.shutdown().await;
}

#[tokio::test]
async fn idle_and_slow_http_clients_are_disconnected() {
    let pki = TestPki::new();
    let options = ServeOptions {
        header_read_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    let server = TestServer::start_with(&pki, options).await;
    let connector = TlsConnector::from(Arc::new(pki.client(&pki.device)));
    let name = ServerName::try_from("localhost").expect("name");

    // Authenticated, then never sends a request.
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let mut silent = connector
        .connect(name.clone(), tcp)
        .await
        .expect("handshake");
    // Authenticated, then sends half a request header and stalls.
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let mut slow = connector.connect(name, tcp).await.expect("handshake");
    slow.write_all(b"GET /dcap HTTP/1.1\r\nHost: loc")
        .await
        .expect("write");
    slow.flush().await.expect("flush");

    for (what, stream) in [("silent", &mut silent), ("slow", &mut slow)] {
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{what} client must be disconnected");
        assert!(!String::from_utf8_lossy(&rest).contains("lfdi="), "{what}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_idle_connections() {
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;
    let addr = server.addr;

    // An authenticated keep-alive connection that stays idle.
    let connector = TlsConnector::from(Arc::new(pki.client(&pki.device)));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /dcap HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));

    // The idle connection must not hold shutdown up for the drain timeout.
    let took = server.shutdown().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection closed at shutdown");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

// ---------------------------------------------------------------------------
// OpenSSL interoperability
// ---------------------------------------------------------------------------

/// Whether the `openssl` binary can be run. Without it the OpenSSL tests
/// print SKIPPED, except in CI, where a missing tool must not turn the
/// interoperability check into a silent pass.
fn openssl_available(test: &str) -> bool {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: the openssl binary is required in CI but was not found");
        }
        eprintln!("SKIPPED {test}: the openssl binary was not found");
    }
    found
}

/// What `openssl s_client -brief` reported, and what it received.
#[derive(Debug)]
struct SClient {
    success: bool,
    output: String,
}

impl SClient {
    /// The value of a `-brief` summary line such as `Ciphersuite: ...`.
    fn field(&self, name: &str) -> Option<&str> {
        self.output
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    }
}

/// Runs `openssl s_client` against `addr` with the device certificate and
/// `extra` arguments, sends `request` and reads until the server closes.
async fn s_client(pki: &TestPki, addr: SocketAddr, extra: &[&str], request: &[u8]) -> SClient {
    let connect = addr.to_string();
    let mut args: Vec<&str> = vec![
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "localhost",
        "-brief",
        // Keep reading after our input ends, until the server closes.
        "-ign_eof",
        "-nocommands",
        "-verify_return_error",
    ];
    args.extend_from_slice(extra);
    let mut child = tokio::process::Command::new("openssl")
        .args(&args)
        .args(["-CAfile", path_str(&pki.path("ca.pem"))])
        .args(["-cert", path_str(&pki.path("dev.pem"))])
        .args(["-key", path_str(&pki.path("dev.key"))])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    // A refused handshake can close the pipe before we finish writing.
    let _ = stdin.write_all(request).await;
    drop(stdin);
    let output = tokio::time::timeout(EXCHANGE_TIMEOUT, child.wait_with_output())
        .await
        .expect("openssl s_client finishes")
        .expect("openssl output");
    SClient {
        success: output.status.success(),
        output: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        ),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

const DCAP_REQUEST: &[u8] = b"GET /dcap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn openssl_negotiates_ccm8_and_gets_its_lfdi() {
    if !openssl_available("openssl_negotiates_ccm8_and_gets_its_lfdi") {
        return;
    }
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;

    // Two pipelined requests: a multi-record response, then the identity.
    let mut request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    request.extend_from_slice(DCAP_REQUEST);
    let run = s_client(
        &pki,
        server.addr,
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM8"],
        &request,
    )
    .await;
    println!("openssl (CCM8):\n{}", run.output);
    assert_eq!(
        run.field("Protocol version"),
        Some("TLSv1.2"),
        "{}",
        run.output
    );
    assert_eq!(
        run.field("Ciphersuite"),
        Some("ECDHE-ECDSA-AES128-CCM8"),
        "{}",
        run.output
    );
    assert_eq!(run.field("Verification"), Some("OK"), "{}", run.output);
    assert!(run.output.contains("HTTP/1.1 200 OK"), "{}", run.output);
    assert!(
        run.output.contains(&"x".repeat(BIG)),
        "large body arrives intact"
    );
    assert!(
        run.output.contains(&expected_identity(&pki.device)),
        "{}",
        run.output
    );
    server.shutdown().await;
}

#[tokio::test]
async fn openssl_negotiates_gcm_and_tls13() {
    if !openssl_available("openssl_negotiates_gcm_and_tls13") {
        return;
    }
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;

    let cases: [(&[&str], &str, &str); 2] = [
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            "TLSv1.2",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            &["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
        ),
    ];
    for (args, version, suite) in cases {
        let run = s_client(&pki, server.addr, args, DCAP_REQUEST).await;
        println!("openssl ({suite}):\n{}", run.output);
        assert_eq!(
            run.field("Protocol version"),
            Some(version),
            "{}",
            run.output
        );
        assert_eq!(run.field("Ciphersuite"), Some(suite), "{}", run.output);
        assert!(
            run.output.contains(&expected_identity(&pki.device)),
            "{}",
            run.output
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn openssl_is_refused_what_ieee_2030_5_does_not_allow() {
    if !openssl_available("openssl_is_refused_what_ieee_2030_5_does_not_allow") {
        return;
    }
    let pki = TestPki::new();
    let server = TestServer::start(&pki).await;

    let refused: [&[&str]; 4] = [
        // CCM with a 16-byte tag is a different suite (0xC0AC).
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-CCM"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
        &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
        // TLS 1.2 key exchange must use secp256r1.
        &[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-CCM8",
            "-curves",
            "X25519",
        ],
    ];
    for args in refused {
        let run = s_client(&pki, server.addr, args, DCAP_REQUEST).await;
        println!("openssl {args:?} (refused):\n{}", run.output);
        assert!(
            !run.output.contains("lfdi="),
            "{args:?} must be refused:\n{}",
            run.output
        );
        assert!(
            !run.success && run.output.contains("alert handshake failure"),
            "{args:?}: {}",
            run.output
        );
    }
    server.shutdown().await;
}
