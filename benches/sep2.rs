//! IEEE 2030.5 server benchmarks: DERControlList poll throughput over keep-alive mutual TLS,
//! full mutual-TLS handshake rate, and the record protection of the CCM_8 suite against GCM.
//!
//! Run with `cargo bench --bench sep2`. `SWITCHYARD_BENCH_DEVICES` (default 1,000,000) sets
//! how many EndDevices are registered (each bound to its own DER, with the DERs' sites and
//! accounts and a certificate identity behind them); `SWITCHYARD_BENCH_SECONDS` (default 5) is the
//! measured time of each load scenario, after 1 s of warm-up; `SWITCHYARD_BENCH_CONNECTIONS`
//! (default 64) the keep-alive connections of part 1 and `SWITCHYARD_BENCH_HANDSHAKERS`
//! (default 32) the concurrent connecting clients of part 2. `SWITCHYARD_BENCH_ONLY` (for
//! example `polls,handshakes`) runs only some parts: polls, breakdown, handshakes, records;
//! `SWITCHYARD_BENCH_POOL` replaces the store pool size (default: the configuration's).
//!
//! The server is the real one (`app::start` over a SQLite file in a temporary directory,
//! with the default pool size), started three times over the same registry: as configured by
//! default (read model and cache of rendered bodies), with the read model only, and with
//! neither (`poll_cache_seconds = 0`, every poll reads the store); the load generator runs in the same process on a runtime
//! of its own, speaking HTTP/1.1 with hyper's client over tokio-rustls with certificates
//! issued by the development PKI. Everything talks over 127.0.0.1, so client and server
//! share the machine's cores: absolute figures depend on the machine and on whatever else
//! it runs. The baselines measured in the same run with the same load generator (plain
//! HTTP and mutual TLS serving a static copy of the same document, plain TCP connects) and
//! the ratios to them are what to compare between runs. Every load row also reports the
//! CPU time each request cost the server and the load generator (from the threads'
//! schedstat), which is steadier than throughput on a shared machine.

mod common;
use common::{Table, thousands};

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, ServerConfig, SupportedCipherSuite};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::app::{self, RunningServer};
use switchyard::config::Config;
use switchyard::domain::identity::Lfdi;
use switchyard::domain::{
    AccountKind, DerClass, DerStatus, GridLocation, IdentityKind, InterconnectionType, now_epoch,
};
use switchyard::envelope::records::{
    ControlProgram, ControlRecord, DefaultControlRecord, InForceTarget, TargetKind, applicable,
};
use switchyard::envelope::{ControlModes, event_status, timelines};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest, IssuedCertificate};
use switchyard::protocol::sep2::model::DerControlList;
use switchyard::protocol::sep2::records::EndDeviceRecord;
use switchyard::protocol::sep2::server::{SEP_XML, Sep2Settings, Sep2State, router};
use switchyard::protocol::sep2::tls::{
    PeerIdentity, ServeOptions, client_config_with_suites, crypto_provider, serve_tls,
    server_config, tls_ecdhe_ecdsa_with_aes_128_ccm_8,
};
use switchyard::protocol::sep2::xml::{self, CsipAusVersion};
use switchyard::registry::Registry;
use switchyard::registry::model::{Account, Der, Identity, Site};
use switchyard::store::Store;
use switchyard::store::record;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tower::ServiceExt;

/// Distinct device certificates (and EndDevices) that poll; connections share them.
const POLLERS: usize = 8;
/// DERs per site in the synthetic portfolio.
const DERS_PER_SITE: usize = 4;
/// Sites written per transaction while populating.
const SITES_PER_BATCH: usize = 10_000;
/// Warm-up before each measured load scenario.
const WARMUP: Duration = Duration::from_secs(1);
/// Measured seconds of each in-process breakdown measurement.
const BREAKDOWN_SECONDS: u64 = 3;
/// Iterations of the single-task store timing.
const STORE_STEPS: usize = 2_000;

/// Targets from the issue.
const TARGET_POLLS: f64 = 20_000.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_HANDSHAKES: f64 = 2_000.0;

// ---------------------------------------------------------------------------------------
// Output

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "MISSED" }
}

// ---------------------------------------------------------------------------------------
// Settings

struct Settings {
    devices: usize,
    seconds: Duration,
    connections: usize,
    handshakers: usize,
    /// Parts to run (all when empty): polls, breakdown, handshakes, records.
    only: Vec<String>,
    /// Store pool size instead of the configuration's default.
    pool: Option<u32>,
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse::<usize>()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }

    fn from_env() -> Result<Settings> {
        let s = Settings {
            devices: env_number("SWITCHYARD_BENCH_DEVICES", 1_000_000)?,
            seconds: Duration::from_secs(env_number("SWITCHYARD_BENCH_SECONDS", 5)? as u64),
            connections: env_number("SWITCHYARD_BENCH_CONNECTIONS", 64)?,
            handshakers: env_number("SWITCHYARD_BENCH_HANDSHAKERS", 32)?,
            pool: match std::env::var("SWITCHYARD_BENCH_POOL") {
                Ok(_) => Some(env_number("SWITCHYARD_BENCH_POOL", 0)?.max(1) as u32),
                Err(_) => None,
            },
            only: std::env::var("SWITCHYARD_BENCH_ONLY")
                .unwrap_or_default()
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        };
        for p in &s.only {
            if !["polls", "breakdown", "handshakes", "records"].contains(&p.as_str()) {
                bail!("SWITCHYARD_BENCH_ONLY: unknown part '{p}'");
            }
        }
        if s.devices < POLLERS * DERS_PER_SITE {
            bail!(
                "SWITCHYARD_BENCH_DEVICES must be at least {}",
                POLLERS * DERS_PER_SITE
            );
        }
        if s.seconds.is_zero() || s.connections == 0 || s.handshakers == 0 {
            bail!("seconds, connections and handshakers must be positive");
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------
// PKI

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    server: IssuedCertificate,
    pollers: Vec<IssuedCertificate>,
}

fn pki() -> Result<Pki> {
    let ca = CertificateAuthority::generate("Switchyard bench CA")?;
    let server = ca.issue(&IssueRequest::new(
        CertKind::Server {
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        "sep2 bench server",
    ))?;
    let pollers = (0..POLLERS)
        .map(|i| ca.issue(&IssueRequest::new(CertKind::Device, format!("poller-{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem())?;
    std::fs::write(dir.path().join("server.pem"), &server.cert_pem)?;
    std::fs::write(dir.path().join("server.key"), &server.key_pem)?;
    Ok(Pki {
        dir,
        ca_pem: ca.cert_pem().to_string(),
        server,
        pollers,
    })
}

/// The TLS configurations a bench client can be forced into.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Suite {
    Tls12Ccm8,
    Tls12Gcm,
    Tls13Gcm,
}

impl Suite {
    const ALL: [Suite; 3] = [Suite::Tls12Ccm8, Suite::Tls12Gcm, Suite::Tls13Gcm];

    fn name(self) -> &'static str {
        match self {
            Suite::Tls12Ccm8 => "TLS 1.2 ECDHE-ECDSA-AES128-CCM8",
            Suite::Tls12Gcm => "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256",
            Suite::Tls13Gcm => "TLS 1.3 AES_128_GCM_SHA256",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Suite::Tls12Ccm8 => "TLS 1.2 CCM_8",
            Suite::Tls12Gcm => "TLS 1.2 GCM",
            Suite::Tls13Gcm => "TLS 1.3 GCM",
        }
    }

    fn suite(self) -> SupportedCipherSuite {
        use rustls::crypto::ring::cipher_suite;
        match self {
            Suite::Tls12Ccm8 => tls_ecdhe_ecdsa_with_aes_128_ccm_8(),
            Suite::Tls12Gcm => cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Suite::Tls13Gcm => cipher_suite::TLS13_AES_128_GCM_SHA256,
        }
    }
}

/// A client configuration offering only `suite`; without resumption when `fresh`, so that
/// every connection pays a full handshake.
fn client_tls(
    pki: &Pki,
    cert: &IssuedCertificate,
    suite: Suite,
    fresh: bool,
) -> Result<Arc<ClientConfig>> {
    let mut config =
        client_config_with_suites(&pki.ca_pem, &cert.cert_pem, &cert.key_pem, &[suite.suite()])?;
    if fresh {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

fn static_server_tls(pki: &Pki) -> Result<Arc<ServerConfig>> {
    Ok(Arc::new(server_config(
        &pki.ca_pem,
        &pki.server.cert_pem,
        &pki.server.key_pem,
    )?))
}

// ---------------------------------------------------------------------------------------
// Data

fn synthetic_lfdi(i: u64) -> Lfdi {
    let mut h = Sha256::new();
    h.update(b"bench end device");
    h.update(i.to_le_bytes());
    let digest: [u8; 32] = h.finalize().into();
    Lfdi::from_sha256_digest(&digest)
}

/// One polling device: its certificate, EndDevice, DER, site and program.
#[derive(Clone)]
struct Poller {
    cert: IssuedCertificate,
    end_device: String,
    der: String,
    site: String,
    program: String,
    path: String,
}

fn account_id(s: usize) -> String {
    format!("acct{s:08}")
}
fn site_id(s: usize) -> String {
    format!("site{s:08}")
}
fn der_id(d: usize) -> String {
    format!("der{d:08}")
}

/// Registers `devices` EndDevices, each bound to a DER of its own, with the DERs' sites and
/// accounts and one device identity per EndDevice. The pollers' certificates take the
/// place of synthetic devices spread through the tables.
async fn populate(store: &Store, devices: usize, pki: &Pki) -> Result<Vec<Poller>> {
    let sites = devices.div_ceil(DERS_PER_SITE);
    let now = now_epoch();
    // DER index -> poller.
    let stride = devices / POLLERS;
    let poller_der = |p: usize| p * stride + stride / 2;
    let mut sfdis: HashSet<u64> = pki.pollers.iter().map(|c| c.sfdi.value()).collect();
    if sfdis.len() != POLLERS {
        bail!("two poller certificates share an SFDI; run again");
    }
    let mut pollers = Vec::new();
    let mut candidate = 0u64;
    let classes = [
        DerClass::Battery,
        DerClass::PvInverter,
        DerClass::EvCharger,
        DerClass::Thermostat,
    ];
    let mut s0 = 0;
    while s0 < sites {
        let s1 = (s0 + SITES_PER_BATCH).min(sites);
        let mut accounts = Vec::with_capacity(s1 - s0);
        let mut site_rows = Vec::with_capacity(s1 - s0);
        let mut ders = Vec::with_capacity((s1 - s0) * DERS_PER_SITE);
        let mut end_devices = Vec::with_capacity(ders.capacity());
        let mut identities = Vec::with_capacity(ders.capacity());
        for s in s0..s1 {
            accounts.push(Account {
                id: account_id(s),
                account_number: format!("A{s:08}"),
                subscriber_id: None,
                name: format!("Customer {s}"),
                kind: AccountKind::Residential,
                created_at: now,
                updated_at: now,
            });
            site_rows.push(Site {
                id: site_id(s),
                account_id: account_id(s),
                connection_point_id: Some(format!("NMI{s:08}")),
                territory: "T1".into(),
                interconnection_type: InterconnectionType::Nem,
                address: None,
                grid_location: GridLocation {
                    substation: Some(format!("SUB{}", s % 2)),
                    feeder: Some(format!("FDR{:02}", (s / 10) % 20)),
                    feeder_section: None,
                    transformer: Some(format!("TX{:06}", s / 10)),
                },
                created_at: now,
                updated_at: now,
            });
            for k in 0..DERS_PER_SITE {
                let d = s * DERS_PER_SITE + k;
                if d >= devices {
                    break;
                }
                let class = classes[k % classes.len()];
                ders.push(Der {
                    id: der_id(d),
                    site_id: site_id(s),
                    der_class: class,
                    manufacturer: "Voltstack".into(),
                    model: "Model 1".into(),
                    serial: format!("S{d:09}"),
                    rated_kw: 5.0,
                    storage_kwh: (class == DerClass::Battery).then_some(13.5),
                    reserve_pct: None,
                    status: DerStatus::Active,
                    aggregator_lfdi: None,
                    created_at: now,
                    updated_at: now,
                });
                let poller = (0..POLLERS).find(|p| poller_der(*p) == d);
                let lfdi = match poller {
                    Some(p) => pki.pollers[p].lfdi,
                    None => loop {
                        // SFDIs are 36-bit hash prefixes: a million LFDIs hold a few
                        // collisions, and an SFDI is an EndDevice's key, so skip those.
                        let l = synthetic_lfdi(candidate);
                        candidate += 1;
                        if sfdis.insert(l.sfdi().value()) {
                            break l;
                        }
                    },
                };
                let sfdi = lfdi.sfdi().value();
                end_devices.push(EndDeviceRecord {
                    id: sfdi.to_string(),
                    lfdi: lfdi.to_hex(),
                    sfdi,
                    certificate_pem: None,
                    owner_lfdi: None,
                    der_id: Some(der_id(d)),
                    site_id: None,
                    enabled: true,
                    pin: None,
                    device_category: None,
                    changed_time: now,
                    created_at: now,
                    updated_at: now,
                });
                // Every EndDevice's certificate is a registry identity too, so the
                // in-memory LFDI index each request consults holds them all.
                identities.push(Identity {
                    lfdi: lfdi.to_hex(),
                    sfdi,
                    kind: IdentityKind::Device,
                    der_id: Some(der_id(d)),
                    description: None,
                    certificate_pem: None,
                    created_at: now,
                    updated_at: now,
                });
                if let Some(p) = poller {
                    let program = format!("doe-{p}");
                    pollers.push(Poller {
                        cert: pki.pollers[p].clone(),
                        end_device: sfdi.to_string(),
                        der: der_id(d),
                        site: site_id(s),
                        path: format!("/edev/{sfdi}/derp/{program}/derc?l=10"),
                        program,
                    });
                }
            }
        }
        let mut tx = store.pool().begin().await?;
        record::insert_many(&mut tx, &accounts).await?;
        record::insert_many(&mut tx, &site_rows).await?;
        record::insert_many(&mut tx, &ders).await?;
        record::insert_many(&mut tx, &end_devices).await?;
        record::insert_many(&mut tx, &identities).await?;
        tx.commit().await?;
        s0 = s1;
    }
    if pollers.len() != POLLERS {
        bail!("placed {} of {POLLERS} pollers", pollers.len());
    }
    Ok(pollers)
}

/// One program per poller, aimed at its site (as a DOE is), with a default control, one
/// control in force now and three scheduled later: four DERControls to list.
async fn create_programs(registry: &Registry, pollers: &[Poller]) -> Result<()> {
    let now = now_epoch();
    for p in pollers {
        registry
            .create(ControlProgram {
                id: p.program.clone(),
                name: format!("DOE {}", p.program),
                description: None,
                primacy: 1,
                target_kind: TargetKind::Site,
                target_id: p.site.clone(),
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        registry
            .create(DefaultControlRecord {
                program_id: p.program.clone(),
                modes: ControlModes {
                    exp_lim_w: Some(5000.0),
                    ..ControlModes::default()
                },
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        for (k, (start, duration)) in [
            (now - 60, 3600),
            (now + 7200, 1800),
            (now + 14_400, 1800),
            (now + 21_600, 3600),
        ]
        .into_iter()
        .enumerate()
        {
            registry
                .create(ControlRecord {
                    id: String::new(),
                    program_id: p.program.clone(),
                    description: Some(format!("envelope {k}")),
                    start,
                    duration_s: duration,
                    randomize_start_s: 0,
                    randomize_duration_s: 0,
                    modes: ControlModes {
                        exp_lim_w: Some(1500.0 + 500.0 * k as f64),
                        max_lim_w: Some(2500.0),
                        ..ControlModes::default()
                    },
                    response_required: false,
                    cancelled_at: None,
                    cancel_randomized: false,
                    created_at: 0,
                    updated_at: 0,
                })
                .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Servers

/// Stops the bench's own servers when dropped or told.
struct Stop(watch::Sender<bool>);

impl Stop {
    fn new() -> (Stop, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (Stop(tx), rx)
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A router answering every path with `body` as a 2030.5 document.
fn static_router(body: Bytes) -> Router {
    Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, SEP_XML)], body) }
    })
}

/// Plain HTTP (axum's own server, TCP_NODELAY like the TLS server) serving `body`.
async fn plain_static(body: Bytes) -> Result<(SocketAddr, Stop)> {
    use axum::serve::ListenerExt;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, rx) = Stop::new();
    tokio::spawn(async move {
        let _ = axum::serve(listener, static_router(body))
            .with_graceful_shutdown(stopped(rx))
            .await;
    });
    Ok((addr, stop))
}

/// The 2030.5 accept loop (`serve_tls`, mutual TLS) serving `body` without any handler work.
async fn serve_static_tls(tls: Arc<ServerConfig>, body: Bytes) -> Result<(SocketAddr, Stop)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, rx) = Stop::new();
    tokio::spawn(serve_tls(
        listener,
        tls,
        static_router(body),
        ServeOptions::default(),
        stopped(rx),
    ));
    Ok((addr, stop))
}

// ---------------------------------------------------------------------------------------
// Load generator

/// Where one client connection goes and what it must get back.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    path: String,
    expect_len: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct TlsSeen {
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::CipherSuite>,
    full: bool,
}

type Sender = SendRequest<Empty<Bytes>>;

async fn http1<IO>(io: IO) -> Result<Sender>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn dial(t: &Target) -> Result<(Sender, Option<TlsSeen>)> {
    let tcp = TcpStream::connect(t.addr).await?;
    tcp.set_nodelay(true)?;
    match &t.tls {
        None => Ok((http1(tcp).await?, None)),
        Some(config) => {
            let tls = TlsConnector::from(config.clone())
                .connect(ServerName::try_from("localhost")?, tcp)
                .await?;
            let (_, c) = tls.get_ref();
            let seen = TlsSeen {
                version: c.protocol_version(),
                suite: c.negotiated_cipher_suite().map(|s| s.suite()),
                full: c.handshake_kind() == Some(HandshakeKind::Full),
            };
            Ok((http1(tls).await?, Some(seen)))
        }
    }
}

async fn get(sender: &mut Sender, path: &str, close: bool) -> Result<(StatusCode, usize)> {
    sender.ready().await?;
    let mut req = Request::get(path).header(header::HOST, "localhost");
    if close {
        req = req.header(header::CONNECTION, "close");
    }
    let resp = sender.send_request(req.body(Empty::new())?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body.len()))
}

/// What one load task saw.
#[derive(Default)]
struct Worker {
    /// Latencies of requests started in the measured window, µs.
    latencies: Vec<u32>,
    errors: usize,
    first_error: Option<String>,
    tls: Option<TlsSeen>,
    resumed: usize,
}

impl Worker {
    fn fail(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    fn check(
        &mut self,
        t: &Target,
        started: Instant,
        measure: Instant,
        r: Result<(StatusCode, usize)>,
    ) -> bool {
        match r {
            Ok((s, len)) if s == StatusCode::OK && len == t.expect_len => {
                if started >= measure {
                    self.latencies
                        .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                true
            }
            Ok((s, len)) => {
                self.fail(format!("{} answered {s} with {len} bytes", t.path));
                true
            }
            Err(e) => {
                self.fail(format!("{e:#}"));
                false
            }
        }
    }
}

/// One keep-alive connection sending requests back to back until `end`.
async fn keep_alive(t: Target, measure: Instant, end: Instant) -> Worker {
    let mut w = Worker::default();
    let mut sender = None;
    while Instant::now() < end {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match dial(&t).await {
                Ok((s, seen)) => {
                    w.tls = w.tls.or(seen);
                    sender.insert(s)
                }
                Err(e) => {
                    w.fail(format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        let r = get(s, &t.path, false).await;
        if !w.check(&t, started, measure, r) {
            sender = None;
        }
    }
    w
}

/// A new connection (and full handshake) for every request until `end`.
async fn connection_per_request(t: Target, measure: Instant, end: Instant) -> Worker {
    let mut w = Worker::default();
    while Instant::now() < end {
        let started = Instant::now();
        let r = async {
            let (mut s, seen) = dial(&t).await?;
            let r = get(&mut s, &t.path, true).await?;
            Ok::<_, anyhow::Error>((r, seen))
        }
        .await;
        match r {
            Ok((r, seen)) => {
                if let Some(seen) = seen {
                    w.tls = Some(seen);
                    if !seen.full && started >= measure {
                        w.resumed += 1;
                    }
                }
                w.check(&t, started, measure, Ok(r));
            }
            Err(e) => {
                w.check(&t, started, measure, Err(e));
            }
        }
    }
    w
}

/// On-CPU time of this process's threads (from /proc/self/task/*/schedstat, in ns), so
/// that a run can say how much CPU each request cost however busy the machine was. Threads
/// of the load generator's runtime are named `loadgen`; every other thread (the server
/// runtime, SQLite connection workers, blocking pool) counts as the server side.
struct CpuSnapshot(HashMap<u32, (bool, u64, u64)>);

#[derive(Clone, Copy, Default)]
struct Cpu {
    server: Duration,
    client: Duration,
    /// Context switches (voluntary and not) of the server-side threads.
    server_switches: u64,
}

impl CpuSnapshot {
    fn take() -> CpuSnapshot {
        let mut threads = HashMap::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return CpuSnapshot(threads);
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(entry.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            let switches: u64 = std::fs::read_to_string(entry.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            threads.insert(tid, (comm.starts_with("loadgen"), ns, switches));
        }
        CpuSnapshot(threads)
    }

    /// CPU time spent since `earlier` (threads that ended in between are not counted).
    fn since(&self, earlier: &CpuSnapshot) -> Cpu {
        let mut cpu = Cpu::default();
        for (tid, (client, ns, switches)) in &self.0 {
            let (was, was_switches) = earlier.0.get(tid).map_or((0, 0), |(_, ns, s)| (*ns, *s));
            let d = Duration::from_nanos(ns.saturating_sub(was));
            if *client {
                cpu.client += d;
            } else {
                cpu.server += d;
                cpu.server_switches += switches.saturating_sub(was_switches);
            }
        }
        cpu
    }
}

/// A measured load scenario.
struct Run {
    requests: usize,
    errors: usize,
    resumed: usize,
    secs: f64,
    /// Sorted, µs.
    latencies: Vec<u32>,
    tls: Option<TlsSeen>,
    /// On-CPU time during the measured window.
    cpu: Cpu,
}

impl Run {
    /// Server-side CPU time per request, µs.
    fn server_us(&self) -> f64 {
        self.cpu.server.as_secs_f64() * 1e6 / self.requests as f64
    }

    /// Load-generator CPU time per request, µs.
    fn client_us(&self) -> f64 {
        self.cpu.client.as_secs_f64() * 1e6 / self.requests as f64
    }

    fn cpu_note(&self) -> String {
        format!(
            "CPU/request: server {:.0} µs, load generator {:.0} µs; server context switches/request {:.1}; process used {:.2} cores",
            self.server_us(),
            self.client_us(),
            self.switches(),
            (self.cpu.server + self.cpu.client).as_secs_f64() / self.secs
        )
    }

    /// Context switches of server-side threads per request.
    fn switches(&self) -> f64 {
        self.cpu.server_switches as f64 / self.requests as f64
    }

    /// Requests/s the server side would sustain with `cores` cores to itself, if its CPU
    /// time per request stayed what it was here.
    fn projected(&self, cores: usize) -> f64 {
        cores as f64 * 1e6 / self.server_us()
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn pct_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 * p / 100.0) as usize).min(self.latencies.len() - 1);
        self.latencies[i] as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies
            .last()
            .map_or(f64::NAN, |l| *l as f64 / 1000.0)
    }

    fn latency_note(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            self.pct_ms(50.0),
            self.pct_ms(99.0),
            self.max_ms()
        )
    }
}

#[derive(Clone, Copy)]
enum Mode {
    KeepAlive,
    ConnectionPerRequest,
}

/// Runs one task per target on the load generator's runtime: `WARMUP`, then `measured`.
async fn load(
    client: &Handle,
    targets: Vec<Target>,
    mode: Mode,
    measured: Duration,
) -> Result<Run> {
    let measure = Instant::now() + WARMUP;
    let end = measure + measured;
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|t| match mode {
            Mode::KeepAlive => client.spawn(keep_alive(t, measure, end)),
            Mode::ConnectionPerRequest => client.spawn(connection_per_request(t, measure, end)),
        })
        .collect();
    tokio::time::sleep_until(measure.into()).await;
    let before = CpuSnapshot::take();
    tokio::time::sleep_until(end.into()).await;
    let cpu = CpuSnapshot::take().since(&before);
    let mut run = Run {
        requests: 0,
        errors: 0,
        resumed: 0,
        secs: measured.as_secs_f64(),
        latencies: Vec::new(),
        tls: None,
        cpu,
    };
    let mut first_error = None;
    for t in tasks {
        let w = t.await?;
        run.errors += w.errors;
        run.resumed += w.resumed;
        run.latencies.extend(w.latencies);
        run.tls = run.tls.or(w.tls);
        first_error = first_error.or(w.first_error);
    }
    run.requests = run.latencies.len();
    run.latencies.sort_unstable();
    if let Some(e) = first_error {
        eprintln!("    {} errors, first: {e}", run.errors);
    }
    if run.requests == 0 {
        bail!("no request succeeded");
    }
    Ok(run)
}

fn suite_note(run: &Run) -> String {
    match run.tls {
        Some(seen) => format!(
            "negotiated {:?} {:?}",
            seen.version.unwrap_or(rustls::ProtocolVersion::Unknown(0)),
            seen.suite.unwrap_or(rustls::CipherSuite::Unknown(0))
        ),
        None => "no TLS".into(),
    }
}

/// Checks that the run negotiated what was asked for.
fn expect_suite(run: &Run, suite: Suite) -> Result<()> {
    let got = run.tls.and_then(|t| t.suite);
    if got != Some(suite.suite().suite()) {
        bail!("asked for {}, negotiated {got:?}", suite.name());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 1: polls over keep-alive mutual TLS

struct Fixture {
    pki: Pki,
    pollers: Vec<Poller>,
    registry: Registry,
    server: RunningServer,
    sep2: SocketAddr,
    /// The same server with less kept in memory: (row label, server, 2030.5 address).
    variants: Vec<(&'static str, RunningServer, SocketAddr)>,
    /// The DERControlList of each poller, as served.
    bodies: Vec<Bytes>,
}

async fn fixture(settings: &Settings, table: &mut Table) -> Result<Fixture> {
    let pki = pki()?;
    let db = pki.dir.path().join("bench.db");
    let mut config = Config::default();
    config.store.url = format!("sqlite:{}?mode=rwc", db.display());
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.shutdown_grace_seconds = 2;
    config.sep2.enabled = true;
    config.sep2.listen = "127.0.0.1:0".parse()?;
    config.sep2.ca_cert = pki.dir.path().join("ca.pem");
    config.sep2.server_cert = pki.dir.path().join("server.pem");
    config.sep2.server_key = pki.dir.path().join("server.key");
    if let Some(pool) = settings.pool {
        config.store.max_connections = pool;
    }

    let t = Instant::now();
    // One connection with a large page cache: the EndDevice and identity keys (SFDI, LFDI)
    // are hashes, so their indexes take inserts at random places, which the default 2 MB
    // cache turns into page reads. This is set-up only; the server opens its own pool.
    let store = Store::open(&config.store.url, 1).await?;
    sqlx::query("PRAGMA cache_size = -524288")
        .execute(store.pool())
        .await?;
    let pollers = populate(&store, settings.devices, &pki).await?;
    store.close().await;
    let populate_time = t.elapsed();
    let sites = settings.devices.div_ceil(DERS_PER_SITE);
    let rows = 2 * sites + 3 * settings.devices;
    table.add(
        "set-up: registry rows written",
        format!("{:.1} s", populate_time.as_secs_f64()),
        &format!(
            "{} EndDevices + {0} DERs + {0} identities + {} sites + {1} accounts with record::insert_many; {:.0} rows/s",
            thousands(settings.devices),
            thousands(sites),
            rows as f64 / populate_time.as_secs_f64()
        ),
    );

    // The server's own path: open the store with the configured pool, load the registry.
    let t = Instant::now();
    let registry = app::open_registry(&config).await?;
    table.add(
        "set-up: app::open_registry",
        format!("{:.1} s", t.elapsed().as_secs_f64()),
        &format!(
            "pool of {} connections, {} identities indexed",
            config.store.max_connections,
            thousands(registry.identities().len())
        ),
    );
    create_programs(&registry, &pollers).await?;
    let server = app::start(&config, registry.clone()).await?;
    let sep2 = server.sep2_addr.context("2030.5 server not started")?;
    // The same registry served twice more: with the read model but no cached bodies (every
    // poll renders, as when each of a million devices polls once per pollRate), and with
    // neither (every poll reads the database).
    let mut variants = Vec::new();
    for (label, seconds, bytes) in [
        ("read model only, every body rendered", 60, 0),
        ("nothing in memory, every poll reads the store", 0, 0),
    ] {
        let mut c = config.clone();
        c.sep2.poll_cache_seconds = seconds;
        c.sep2.poll_cache_bytes = bytes;
        let s = app::start(&c, registry.clone()).await?;
        let addr = s.sep2_addr.context("2030.5 server not started")?;
        variants.push((label, s, addr));
    }

    // Every poller's list must hold the four controls, with the current one active.
    let mut bodies = Vec::new();
    for p in &pollers {
        let tls = client_tls(&pki, &p.cert, Suite::Tls12Ccm8, false)?;
        let (mut s, _) = dial(&Target {
            addr: sep2,
            tls: Some(tls),
            path: p.path.clone(),
            expect_len: 0,
        })
        .await?;
        s.ready().await?;
        let resp = s
            .send_request(
                Request::get(&p.path)
                    .header(header::HOST, "localhost")
                    .body(Empty::new())?,
            )
            .await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK
            || !text.contains("all=\"4\" results=\"4\"")
            || !text.contains("<currentStatus>1</currentStatus>")
        {
            bail!("unexpected DERControlList for {}: {status} {text}", p.path);
        }
        bodies.push(body);
    }
    Ok(Fixture {
        pki,
        pollers,
        registry,
        server,
        sep2,
        variants,
        bodies,
    })
}

/// One keep-alive target per connection, cycling through the pollers.
fn poll_targets(
    f: &Fixture,
    addr: SocketAddr,
    suite: Option<Suite>,
    n: usize,
) -> Result<Vec<Target>> {
    let mut configs = Vec::new();
    for p in &f.pollers {
        configs.push(match suite {
            Some(s) => Some(client_tls(&f.pki, &p.cert, s, false)?),
            None => None,
        });
    }
    Ok((0..n)
        .map(|i| {
            let k = i % f.pollers.len();
            Target {
                addr,
                tls: configs[k].clone(),
                path: f.pollers[k].path.clone(),
                expect_len: f.bodies[k].len(),
            }
        })
        .collect())
}

struct PollResults {
    tls_static: Vec<(Suite, Run)>,
    sep2: Vec<(Suite, Run)>,
}

async fn bench_polls(
    f: &Fixture,
    client: &Handle,
    settings: &Settings,
    table: &mut Table,
) -> Result<PollResults> {
    let n = settings.connections;
    table.section(&format!(
        "1. DERControlList polls: GET /edev/{{id}}/derp/{{p}}/derc?l=10, {n} keep-alive connections, {} distinct device certificates, {} s per row",
        POLLERS,
        settings.seconds.as_secs()
    ));
    // The static servers answer every path with poller 0's document; other pollers' lists
    // differ only in their ids, so expect that one length everywhere.
    let body = f.bodies[0].clone();
    let static_targets = |addr, suite| -> Result<Vec<Target>> {
        let mut t = poll_targets(f, addr, suite, n)?;
        for t in &mut t {
            t.expect_len = body.len();
        }
        Ok(t)
    };
    table.add(
        "document served",
        format!("{} B", body.len()),
        "DERControlList with 4 DERControls (CSIP-AUS v1.3); the static baselines serve a copy",
    );

    let (addr, stop) = plain_static(body.clone()).await?;
    let plain = load(
        client,
        static_targets(addr, None)?,
        Mode::KeepAlive,
        settings.seconds,
    )
    .await?;
    drop(stop);
    table.add(
        "baseline: plain HTTP/1.1, static body",
        format!("{:.0}/s", plain.rate()),
        &format!(
            "axum, no TLS, no handler work; {}; {}",
            plain.latency_note(),
            plain.cpu_note()
        ),
    );

    let server_tls = static_server_tls(&f.pki)?;
    let mut tls_static = Vec::new();
    for suite in [Suite::Tls12Ccm8, Suite::Tls12Gcm] {
        let (addr, stop) = serve_static_tls(server_tls.clone(), body.clone()).await?;
        let run = load(
            client,
            static_targets(addr, Some(suite))?,
            Mode::KeepAlive,
            settings.seconds,
        )
        .await?;
        drop(stop);
        expect_suite(&run, suite)?;
        table.add(
            &format!("baseline: mutual TLS, static body, {}", suite.short()),
            format!("{:.0}/s", run.rate()),
            &format!(
                "serve_tls, no handler work; {}; {}; {}",
                run.latency_note(),
                run.cpu_note(),
                suite_note(&run)
            ),
        );
        tls_static.push((suite, run));
    }

    let mut sep2 = Vec::new();
    for suite in Suite::ALL {
        let run = load(
            client,
            poll_targets(f, f.sep2, Some(suite), n)?,
            Mode::KeepAlive,
            settings.seconds,
        )
        .await?;
        expect_suite(&run, suite)?;
        let errors = if run.errors > 0 {
            format!("; {} ERRORS", run.errors)
        } else {
            String::new()
        };
        table.add(
            &format!("2030.5 server, DERControlList, {}", suite.short()),
            format!("{:.0}/s", run.rate()),
            &format!(
                "{}; {}; {}{errors}",
                run.latency_note(),
                run.cpu_note(),
                suite_note(&run)
            ),
        );
        sep2.push((suite, run));
    }
    for (label, _, addr) in &f.variants {
        let suite = Suite::Tls12Ccm8;
        let run = load(
            client,
            poll_targets(f, *addr, Some(suite), n)?,
            Mode::KeepAlive,
            settings.seconds,
        )
        .await?;
        expect_suite(&run, suite)?;
        let errors = if run.errors > 0 {
            format!("; {} ERRORS", run.errors)
        } else {
            String::new()
        };
        table.add(
            &format!("2030.5 server, DERControlList, {}, {label}", suite.short()),
            format!("{:.0}/s", run.rate()),
            &format!(
                "{}; {}; {}{errors}",
                run.latency_note(),
                run.cpu_note(),
                suite_note(&run)
            ),
        );
    }

    let ccm = &sep2[0].1;
    table.add(
        "ratio 2030.5 CCM_8 / plain HTTP static",
        ratio(ccm.rate(), plain.rate()),
        "throughput",
    );
    table.add(
        "ratio 2030.5 CCM_8 / mutual TLS static CCM_8",
        ratio(ccm.rate(), tls_static[0].1.rate()),
        "throughput; what the handler and store cost",
    );
    table.add(
        "ratio mutual TLS static CCM_8 / plain HTTP static",
        ratio(tls_static[0].1.rate(), plain.rate()),
        "throughput; what TLS costs on keep-alive connections",
    );
    table.add(
        "ratio CCM_8 / GCM, static body",
        ratio(tls_static[0].1.rate(), tls_static[1].1.rate()),
        "throughput, TLS 1.2 both",
    );
    table.add(
        "ratio CCM_8 / GCM, 2030.5 server",
        ratio(ccm.rate(), sep2[1].1.rate()),
        "throughput, TLS 1.2 both",
    );
    table.add(
        "target: >= 20,000 polls/s with p99 < 10 ms (CCM_8)",
        met(ccm.rate() >= TARGET_POLLS && ccm.pct_ms(99.0) < TARGET_P99_MS).into(),
        &format!("{:.0}/s, p99 {:.2} ms", ccm.rate(), ccm.pct_ms(99.0)),
    );
    let cores = cores();
    table.add(
        &format!("projection: CCM_8 polls/s, server alone on {cores} cores"),
        format!("{:.0}/s", ccm.projected(cores)),
        &format!(
            "{cores} x 1e6 / {:.0} µs server CPU per poll; not a measurement (assumes linear scaling, load generator elsewhere)",
            ccm.server_us()
        ),
    );
    Ok(PollResults { tls_static, sep2 })
}

// ---------------------------------------------------------------------------------------
// Part 1b: where a poll's time goes

/// The store calls the DERControlList handler makes for a DER-bound EndDevice, in its
/// order (see `device_program` and `control_docs` in src/protocol/sep2/server.rs).
/// Returns how many SQL statements they ran.
async fn handler_queries(registry: &Registry, p: &Poller) -> Result<usize> {
    let mut n = 0;
    let ed: EndDeviceRecord = registry.get(&p.end_device).await?;
    n += 1;
    let der = ed.der_id.clone().context("poller not bound")?;
    // applicable(): the DER, its groups, the programs, their controls, their defaults.
    let a = applicable(registry, &InForceTarget::Der(der.clone())).await?;
    n += 5;
    for prog in &a.programs {
        let _: ControlProgram = registry.get(prog.id.as_str()).await?;
        n += 1;
    }
    let page = registry
        .list::<ControlRecord>(&[("program_id", p.program.clone().into())], None, 1000)
        .await?;
    n += 1;
    if page.items.len() != 4 {
        bail!("expected 4 controls, found {}", page.items.len());
    }
    // rating_w(): the DER again.
    let _: Der = registry.get(&der).await?;
    n += 1;
    Ok(n)
}

/// Runs `op` from `tasks` concurrent tasks on the current runtime for `secs`; returns ops/s,
/// the process's CPU time per op in µs and its context switches per op.
async fn concurrent_rate<F, Fut>(tasks: usize, secs: u64, op: F) -> Result<(f64, f64, f64)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let warm_end = Instant::now() + Duration::from_millis(500);
    let end = warm_end + Duration::from_secs(secs);
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut done = 0usize;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    op(i).await?;
                    if now >= warm_end {
                        done += 1;
                    }
                }
                anyhow::Ok(done)
            })
        })
        .collect();
    tokio::time::sleep_until(warm_end.into()).await;
    let before = CpuSnapshot::take();
    tokio::time::sleep_until(end.into()).await;
    let cpu = CpuSnapshot::take().since(&before);
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    let switches = cpu.server_switches as f64 / total as f64;
    let cpu = (cpu.server + cpu.client).as_secs_f64();
    Ok((
        total as f64 / secs as f64,
        cpu * 1e6 / total as f64,
        switches,
    ))
}

async fn bench_breakdown(
    f: &Fixture,
    settings: &Settings,
    polls: Option<&PollResults>,
    table: &mut Table,
) -> Result<()> {
    table.section("1b. Where a poll's time goes (in process, no sockets)");
    let registry = f.registry.clone();

    // Statement count and per-call latency with one task.
    let p = &f.pollers[0];
    let queries = handler_queries(&registry, p).await?;
    let mut spent = [Duration::ZERO; 5];
    let der = p.der.clone();
    for _ in 0..STORE_STEPS {
        let t = Instant::now();
        let _: EndDeviceRecord = registry.get(&p.end_device).await?;
        spent[0] += t.elapsed();
        let t = Instant::now();
        let a = applicable(&registry, &InForceTarget::Der(der.clone())).await?;
        spent[1] += t.elapsed();
        let t = Instant::now();
        for prog in &a.programs {
            let _: ControlProgram = registry.get(prog.id.as_str()).await?;
        }
        spent[2] += t.elapsed();
        let t = Instant::now();
        registry
            .list::<ControlRecord>(&[("program_id", p.program.clone().into())], None, 1000)
            .await?;
        spent[3] += t.elapsed();
        let t = Instant::now();
        let _: Der = registry.get(&der).await?;
        spent[4] += t.elapsed();
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / STORE_STEPS as f64;
    let total_us: f64 = spent.iter().map(|d| us(*d)).sum();
    table.add(
        "SQL statements per DERControlList request",
        queries.to_string(),
        "1 EndDevice + 5 in applicable() + 1 per program + 1 control list + 1 DER rating (one program)",
    );
    table.add(
        "store time per request, one task",
        format!("{total_us:.0} µs"),
        &format!(
            "EndDevice {:.0} µs, applicable() {:.0} µs, program re-read {:.0} µs, control list {:.0} µs, DER re-read {:.0} µs",
            us(spent[0]),
            us(spent[1]),
            us(spent[2]),
            us(spent[3]),
            us(spent[4])
        ),
    );

    // The same statements from as many tasks as the load has connections.
    let n = settings.connections;
    let reg = registry.clone();
    let all = Arc::new(f.pollers.clone());
    let (store_rate, store_cpu, store_switches) = concurrent_rate(n, BREAKDOWN_SECONDS, move |i| {
        let reg = reg.clone();
        let all = all.clone();
        async move {
            handler_queries(&reg, &all[i % all.len()]).await?;
            Ok(())
        }
    })
    .await?;
    table.add(
        "store only: the handler's statements",
        format!("{store_rate:.0}/s"),
        &format!(
            "request-equivalents/s from {n} tasks, {:.0} statements/s; {store_cpu:.0} µs CPU and {store_switches:.1} context switches each, {:.0} µs CPU per statement",
            store_rate * queries as f64,
            store_cpu / queries as f64
        ),
    );

    // The handler's CPU work besides the store, one thread: the event status of each
    // control (as control_docs computes it) and the XML rendering of the list.
    let seed = switchyard::api::envelopes::RANDOMIZATION_SEED;
    let controls: Vec<_> = registry
        .list::<ControlRecord>(&[("program_id", p.program.clone().into())], None, 1000)
        .await?
        .items
        .iter()
        .map(ControlRecord::to_control)
        .collect();
    let now = now_epoch();
    let t = Instant::now();
    for _ in 0..STORE_STEPS {
        let lines = timelines(&controls, &p.der, seed);
        let mut live = 0;
        for c in &controls {
            if event_status(c, &controls, &p.der, seed, now).is_some()
                && lines.iter().any(|l| l.control.id == c.id)
            {
                live += 1;
            }
        }
        std::hint::black_box(live);
    }
    let engine_us = t.elapsed().as_secs_f64() * 1e6 / STORE_STEPS as f64;
    let doc: DerControlList = xml::decode(&f.bodies[0], 64 * 1024)?;
    let t = Instant::now();
    for _ in 0..STORE_STEPS {
        std::hint::black_box(xml::encode(&doc, Some(CsipAusVersion::V1_3))?);
    }
    let xml_us = t.elapsed().as_secs_f64() * 1e6 / STORE_STEPS as f64;
    table.add(
        "engine: timelines + event_status, 4 controls",
        format!("{engine_us:.1} µs"),
        "one thread, per request",
    );
    table.add(
        "XML: encode the DERControlList",
        format!("{xml_us:.1} µs"),
        "one thread, per request",
    );

    // The floor under any statement: a trivial one through the same pool.
    let pool = registry.store().pool().clone();
    let (trivial_rate, trivial_cpu, trivial_switches) =
        concurrent_rate(n, BREAKDOWN_SECONDS, move |_| {
            let pool = pool.clone();
            async move {
                let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
                if one != 1 {
                    bail!("SELECT 1 returned {one}");
                }
                Ok(())
            }
        })
        .await?;
    table.add(
        "baseline: SELECT 1 through the same pool",
        format!("{trivial_rate:.0}/s"),
        &format!(
            "{n} tasks; {trivial_cpu:.0} µs CPU and {trivial_switches:.1} context switches each: the driver's round trip (pool, channel to the connection's worker thread, wake-ups), no table access"
        ),
    );

    // The whole handler (routing, store, event status, XML) without TCP, TLS or HTTP parsing.
    // The poll cache is off here: this row measures what a poll costs when its document
    // is not cached (a device's first poll, or the first after a write).
    let state = Sep2State::new(
        registry.clone(),
        Sep2Settings {
            poll_rate: 900,
            post_rate: 300,
            csipaus: Some(CsipAusVersion::V1_3),
            body_limit: 64 * 1024,
            seed: switchyard::api::envelopes::RANDOMIZATION_SEED,
            in_band_registration: true,
        },
        0,
        0,
    );
    let app = router(state);
    let requests: Arc<Vec<(PeerIdentity, String, usize)>> = Arc::new(
        f.pollers
            .iter()
            .zip(&f.bodies)
            .map(|(p, b)| {
                (
                    PeerIdentity::from_certificate_der(&p.cert.cert_der),
                    p.path.clone(),
                    b.len(),
                )
            })
            .collect(),
    );
    let (handler_rate, handler_cpu, handler_switches) =
        concurrent_rate(n, BREAKDOWN_SECONDS, move |i| {
            let app = app.clone();
            let requests = requests.clone();
            async move {
                let (peer, path, len) = &requests[i % requests.len()];
                let req = Request::get(path.as_str())
                    .extension(peer.clone())
                    .body(Body::empty())?;
                let resp = app.oneshot(req).await?;
                if resp.status() != StatusCode::OK {
                    bail!("in-process request answered {}", resp.status());
                }
                let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
                if body.len() != *len {
                    bail!("in-process body of {} bytes, expected {len}", body.len());
                }
                Ok(())
            }
        })
        .await?;
    table.add(
        "handler only: router.oneshot(DERControlList)",
        format!("{handler_rate:.0}/s"),
        &format!(
            "{n} tasks; routing + store + event status + XML, no TCP/TLS/HTTP; {handler_cpu:.0} µs CPU and {handler_switches:.1} context switches/request"
        ),
    );
    // The poll's server CPU split with figures that do not depend on the in-process runs'
    // concurrency: transport from the static run, engine and XML from the one-thread
    // timings; the rest is the store and the scheduling around it.
    if let Some(polls) = polls {
        let ccm = &polls.sep2[0].1;
        let tls = &polls.tls_static[0].1;
        let full = ccm.server_us();
        let share = |us: f64| format!("{:.0}% of the poll", 100.0 * us / full);
        table.add(
            "server CPU per poll, 2030.5 over mutual TLS CCM_8",
            format!("{full:.0} µs"),
            "part 1 run, server-side threads only",
        );
        table.add(
            "  transport: mutual TLS CCM_8 + HTTP/1.1",
            format!("{:.0} µs", tls.server_us()),
            &format!("part 1 static-body run; {}", share(tls.server_us())),
        );
        table.add(
            "  engine + XML",
            format!("{:.0} µs", engine_us + xml_us),
            &format!("one-thread timings above; {}", share(engine_us + xml_us)),
        );
        let rest = full - tls.server_us() - engine_us - xml_us;
        table.add(
            &format!("  the rest: {queries} SQL statements, routing, task scheduling"),
            format!("{rest:.0} µs"),
            &format!(
                "{}; compare SELECT 1 at {trivial_cpu:.0} µs CPU x {queries} = {:.0} µs",
                share(rest),
                trivial_cpu * queries as f64
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 2: full handshakes

async fn bench_handshakes(
    f: &Fixture,
    client: &Handle,
    settings: &Settings,
    table: &mut Table,
) -> Result<()> {
    let n = settings.handshakers;
    table.section(&format!(
        "2. New connection per request: GET /tm with Connection: close, {n} concurrent clients, no session resumption, {} s per row",
        settings.seconds.as_secs()
    ));
    // The 2030.5 /tm document, to give the plain baseline the same response size.
    let p = &f.pollers[0];
    let (mut s, _) = dial(&Target {
        addr: f.sep2,
        tls: Some(client_tls(&f.pki, &p.cert, Suite::Tls12Ccm8, true)?),
        path: "/tm".into(),
        expect_len: 0,
    })
    .await?;
    s.ready().await?;
    let resp = s
        .send_request(
            Request::get("/tm")
                .header(header::HOST, "localhost")
                .body(Empty::new())?,
        )
        .await?;
    let tm = resp.into_body().collect().await?.to_bytes();
    drop(s);
    // /tm carries the current time; its length is stable within a run.
    let (addr, stop) = plain_static(tm.clone()).await?;
    let targets = (0..n)
        .map(|_| Target {
            addr,
            tls: None,
            path: "/tm".into(),
            expect_len: tm.len(),
        })
        .collect();
    let plain = load(
        client,
        targets,
        Mode::ConnectionPerRequest,
        settings.seconds,
    )
    .await?;
    drop(stop);
    table.add(
        "baseline: plain TCP connect + HTTP/1.1 GET",
        format!("{:.0}/s", plain.rate()),
        &format!(
            "axum, static {} B body; {}; {}",
            tm.len(),
            plain.latency_note(),
            plain.cpu_note()
        ),
    );

    let mut runs = Vec::new();
    for suite in Suite::ALL {
        let mut configs = Vec::new();
        for p in &f.pollers {
            configs.push(client_tls(&f.pki, &p.cert, suite, true)?);
        }
        let targets = (0..n)
            .map(|i| Target {
                addr: f.sep2,
                tls: Some(configs[i % configs.len()].clone()),
                path: "/tm".into(),
                expect_len: tm.len(),
            })
            .collect();
        let run = load(
            client,
            targets,
            Mode::ConnectionPerRequest,
            settings.seconds,
        )
        .await?;
        expect_suite(&run, suite)?;
        if run.resumed > 0 {
            bail!("{} handshakes were resumed", run.resumed);
        }
        let errors = if run.errors > 0 {
            format!("; {} ERRORS", run.errors)
        } else {
            String::new()
        };
        table.add(
            &format!("full mutual-TLS handshake + GET, {}", suite.short()),
            format!("{:.0}/s", run.rate()),
            &format!(
                "ECDSA P-256 both sides, ECDHE P-256; {}; {}{errors}",
                run.latency_note(),
                run.cpu_note()
            ),
        );
        runs.push((suite, run));
    }
    for (suite, run) in &runs {
        table.add(
            &format!("ratio {} handshakes / plain TCP connects", suite.short()),
            ratio(run.rate(), plain.rate()),
            "",
        );
    }
    // For comparison only: what session resumption (the server's session tickets and
    // session cache; clients keep their tickets) saves. Not what the target asks for.
    for suite in [Suite::Tls12Ccm8, Suite::Tls13Gcm] {
        let mut configs = Vec::new();
        for p in &f.pollers {
            configs.push(client_tls(&f.pki, &p.cert, suite, false)?);
        }
        let targets = (0..n)
            .map(|i| Target {
                addr: f.sep2,
                tls: Some(configs[i % configs.len()].clone()),
                path: "/tm".into(),
                expect_len: tm.len(),
            })
            .collect();
        let run = load(
            client,
            targets,
            Mode::ConnectionPerRequest,
            settings.seconds,
        )
        .await?;
        expect_suite(&run, suite)?;
        table.add(
            &format!("for comparison: resumed handshake + GET, {}", suite.short()),
            format!("{:.0}/s", run.rate()),
            &format!(
                "{:.0}% of handshakes resumed; {}; {}",
                100.0 * run.resumed as f64 / run.requests as f64,
                run.latency_note(),
                run.cpu_note()
            ),
        );
    }
    let worst = runs
        .iter()
        .map(|(_, r)| r.rate())
        .fold(f64::INFINITY, f64::min);
    table.add(
        "target: >= 2,000 full handshakes/s (every suite)",
        met(worst >= TARGET_HANDSHAKES).into(),
        &runs
            .iter()
            .map(|(s, r)| format!("{} {:.0}/s", s.short(), r.rate()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let cores = cores();
    table.add(
        &format!("projection: full handshakes/s, server alone on {cores} cores"),
        runs.iter()
            .map(|(_, r)| format!("{:.0}/s", r.projected(cores)))
            .collect::<Vec<_>>()
            .join(" / "),
        &format!(
            "{} order; {cores} x 1e6 / server CPU per handshake; not a measurement",
            runs.iter()
                .map(|(s, _)| s.short())
                .collect::<Vec<_>>()
                .join(" / ")
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 3: record protection, CCM_8 against GCM

/// Moves everything `from` has to send into `to`.
fn pump(
    from: &mut rustls::Connection,
    to: &mut rustls::Connection,
    buf: &mut Vec<u8>,
) -> Result<()> {
    loop {
        buf.clear();
        let n = from.write_tls(buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd)?;
            to.process_new_packets()?;
        }
    }
}

/// Server-to-client application data through a real rustls connection pair in memory, in
/// records of `record` bytes, for about `budget`. Returns MB/s (encrypt + decrypt).
fn record_throughput(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    record: usize,
    budget: Duration,
) -> Result<f64> {
    let mut s = rustls::Connection::Server(rustls::ServerConnection::new(server)?);
    let mut c = rustls::Connection::Client(rustls::ClientConnection::new(
        client,
        ServerName::try_from("localhost")?,
    )?);
    let mut buf = Vec::with_capacity(64 * 1024);
    while s.is_handshaking() || c.is_handshaking() {
        pump(&mut c, &mut s, &mut buf)?;
        pump(&mut s, &mut c, &mut buf)?;
    }
    pump(&mut s, &mut c, &mut buf)?;
    let chunk = vec![0x5au8; record];
    let mut sink = vec![0u8; 64 * 1024];
    let mut moved = 0usize;
    let t = Instant::now();
    while t.elapsed() < budget {
        for _ in 0..64 {
            s.writer().write_all(&chunk)?;
            pump(&mut s, &mut c, &mut buf)?;
            loop {
                match c.reader().read(&mut sink) {
                    Ok(0) => break,
                    Ok(n) => moved += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(moved as f64 / t.elapsed().as_secs_f64() / 1e6)
}

fn bench_records(f: &Fixture, table: &mut Table) -> Result<()> {
    table
        .section("3. Record protection in memory (rustls connection pair, no sockets, one thread)");
    let server = static_server_tls(&f.pki)?;
    let doc = f.bodies[0].len();
    let mut rates = Vec::new();
    for record in [doc, 16 * 1024] {
        for suite in Suite::ALL {
            let client = client_tls(&f.pki, &f.pollers[0].cert, suite, false)?;
            let mbs =
                record_throughput(server.clone(), client, record, Duration::from_millis(700))?;
            table.add(
                &format!("{}, {} B records", suite.short(), record),
                format!("{mbs:.0} MB/s"),
                "server encrypts, client decrypts",
            );
            rates.push((record, suite, mbs));
        }
    }
    for record in [doc, 16 * 1024] {
        let of = |s: Suite| {
            rates
                .iter()
                .find(|(r, x, _)| *r == record && *x == s)
                .map_or(f64::NAN, |(_, _, m)| *m)
        };
        table.add(
            &format!("ratio CCM_8 / TLS 1.2 GCM, {record} B records"),
            ratio(of(Suite::Tls12Ccm8), of(Suite::Tls12Gcm)),
            "RustCrypto ccm + aes against ring's GCM",
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    // axum, hyper and rustls need a process default provider only where no config names
    // one; ours is the one the server uses.
    let _ = crypto_provider().install_default();
    let started = Instant::now();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()?;
    // The load generator gets a runtime of its own so that it never queues behind
    // server tasks; the kernel shares the cores between the two.
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()?;
    let client = client_rt.handle().clone();
    let mut table = Table::new();
    let fixture_devices = settings.devices;
    server_rt.block_on(async {
        table.section(&format!(
            "0. Set-up: {} registered EndDevices on SQLite",
            thousands(fixture_devices)
        ));
        let f = fixture(&settings, &mut table).await?;
        let polls = if settings.runs("polls") {
            Some(bench_polls(&f, &client, &settings, &mut table).await?)
        } else {
            None
        };
        if settings.runs("breakdown") {
            bench_breakdown(&f, &settings, polls.as_ref(), &mut table).await?;
        }
        if settings.runs("handshakes") {
            bench_handshakes(&f, &client, &settings, &mut table).await?;
        }
        if settings.runs("records") {
            bench_records(&f, &mut table)?;
        }
        f.server.stop().await.map_err(|e| anyhow!("{e}"))?;
        for (_, s, _) in f.variants {
            s.stop().await.map_err(|e| anyhow!("{e}"))?;
        }
        anyhow::Ok(())
    })?;
    drop(client_rt);
    println!();
    println!(
        "switchyard 2030.5 benchmark ({} EndDevices, {} cores, {} s wall)",
        thousands(settings.devices),
        cores(),
        started.elapsed().as_secs()
    );
    println!();
    table.print();
    Ok(())
}
