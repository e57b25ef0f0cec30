//! MQTT over TLS against a real Mosquitto that each test starts for itself, on SQLite and
//! PostgreSQL: client-certificate and password authentication that work, and the ways
//! they fail as an operator would see them (`MqttIngest::ready()` and `last_error()`
//! naming TLS or the credentials, nothing stored).
//!
//! The broker gets a temporary configuration with two TLS listeners on free ports, both
//! serving a certificate from a CA generated at test time:
//! - the certificate listener requires a client certificate from that CA
//!   (`require_certificate true`) and takes the certificate's common name as the user name
//!   (`use_identity_as_username true`): no password file, the certificate is the login;
//! - the password listener asks for no client certificate and checks a password file made
//!   with `mosquitto_passwd` (`allow_anonymous false`).
//!
//! Without the `mosquitto` binary the tests print SKIPPED, unless CI=true, in which case
//! they fail: `.ci/run` installs it.

mod common;

use common::TestDb;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest};
use switchyard::protocol::mqtt::{FailureKind, MqttConfig, MqttError, MqttIngest};
use switchyard::telemetry::{self, Measurand, TelemetryWriter, WriterSettings};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(20);
/// How long a misconfigured ingest is given: several reconnect attempts at the tests'
/// 50 ms to 1 s backoff.
const REFUSED_WAIT: Duration = Duration::from_secs(3);
/// Common name of the ingest's client certificate, which the certificate listener takes
/// as the user name.
const INGEST_CN: &str = "switchyard-ingest";
const USER: &str = "switchyard";
const PASSWORD: &str = "correct horse battery staple";

/// A program on the PATH or in /usr/sbin (Debian installs `mosquitto` there, and root's
/// PATH is not the only one tests run with).
fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `mosquitto` and `mosquitto_passwd` binaries, or None (after saying so) when they
/// are missing outside CI.
fn mosquitto_binaries() -> Option<(PathBuf, PathBuf)> {
    match (find_tool("mosquitto"), find_tool("mosquitto_passwd")) {
        (Some(m), Some(p)) => Some((m, p)),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("mosquitto and mosquitto_passwd are required under CI but not installed");
            }
            eprintln!(
                "SKIPPED: no mosquitto or mosquitto_passwd binary (apt-get install mosquitto, \
                 or run .ci/run); the MQTT TLS tests start their own broker"
            );
            None
        }
    }
}

/// The test PKI: the broker's CA with a server certificate and client certificates, and
/// a second CA that issued nothing the broker uses.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn create(dir: &Path) -> Pki {
        let ca = CertificateAuthority::generate("MQTT test CA").unwrap();
        let other = CertificateAuthority::generate("Unrelated CA").unwrap();
        let server = ca
            .issue(&IssueRequest::new(
                CertKind::Server {
                    dns_names: vec!["localhost".into()],
                    ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                },
                "mosquitto",
            ))
            .unwrap();
        let client = ca
            .issue(&IssueRequest::new(CertKind::Device, INGEST_CN))
            .unwrap();
        let device = ca
            .issue(&IssueRequest::new(CertKind::Device, "test-device"))
            .unwrap();
        // Valid for a day, a year ago.
        let mut old = IssueRequest::new(CertKind::Device, INGEST_CN);
        old.not_before = OffsetDateTime::now_utc() - time::Duration::days(366);
        old.not_after = OffsetDateTime::now_utc() - time::Duration::days(365);
        let expired = ca.issue(&old).unwrap();
        let files = [
            ("ca.pem", ca.cert_pem().to_string()),
            ("other-ca.pem", other.cert_pem().to_string()),
            ("server.pem", server.cert_pem),
            ("server.key", server.key_pem),
            ("client.pem", client.cert_pem),
            ("client.key", client.key_pem),
            ("device.pem", device.cert_pem),
            ("device.key", device.key_pem),
            ("expired.pem", expired.cert_pem),
            ("expired.key", expired.key_pem),
        ];
        for (name, body) in files {
            std::fs::write(dir.join(name), body).unwrap();
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A Mosquitto process of the test's own, killed on drop.
struct Broker {
    child: Child,
    dir: tempfile::TempDir,
    pki: Pki,
    passwd_tool: PathBuf,
    /// TLS, client certificate required, its common name is the user name.
    cert_port: u16,
    /// TLS, user name and password from the password file.
    password_port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ports free at the moment (the listeners are closed again before Mosquitto binds them).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

impl Broker {
    /// Starts Mosquitto and waits until both listeners accept connections; None when the
    /// binary is missing (outside CI).
    async fn start() -> Option<Broker> {
        let (bin, passwd_tool) = mosquitto_binaries()?;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path());
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "").unwrap();
        set_password(&passwd_tool, &passwd, PASSWORD);

        let (cert_port, password_port) = free_ports();
        // Run as root, Mosquitto would switch to the `mosquitto` user, which cannot read
        // this private temporary directory.
        let as_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0);
        let user = if as_root.unwrap_or(false) {
            "user root\n"
        } else {
            ""
        };
        let p = |n: &str| pki.path(n).display().to_string();
        let conf = format!(
            "{user}per_listener_settings true\n\
             persistence false\n\
             log_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             \n\
             listener {cert_port} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             allow_anonymous false\n\
             \n\
             listener {password_port} 127.0.0.1\n\
             certfile {cert}\nkeyfile {key}\n\
             require_certificate false\n\
             password_file {passwd}\n\
             allow_anonymous false\n",
            ca = p("ca.pem"),
            cert = p("server.pem"),
            key = p("server.key"),
            passwd = passwd.display(),
        );
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        let mut broker = Broker {
            child,
            dir,
            pki,
            passwd_tool,
            cert_port,
            password_port,
        };
        broker.wait_listening().await;
        Some(broker)
    }

    async fn wait_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        for port in [self.cert_port, self.password_port] {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("mosquitto exited ({status}):\n{}", self.log());
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "mosquitto not listening on {port}:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// A configuration for the certificate listener, presenting `cert`/`key` from the
    /// PKI and trusting `ca`.
    fn cert_config(&self, ca: &str, cert: Option<(&str, &str)>) -> MqttConfig {
        let mut c = base_config(self.cert_port);
        c.tls.ca_cert = Some(self.pki.path(ca));
        if let Some((cert, key)) = cert {
            c.tls.client_cert = Some(self.pki.path(cert));
            c.tls.client_key = Some(self.pki.path(key));
        }
        c
    }

    /// A configuration for the password listener.
    fn password_config(&self, password: &str) -> MqttConfig {
        let mut c = base_config(self.password_port);
        c.tls.ca_cert = Some(self.pki.path("ca.pem"));
        c.username = Some(USER.into());
        c.password = Some(password.into());
        c
    }

    /// Sets the password of the test user in the password file and has Mosquitto reload
    /// it (SIGHUP), as an operator would.
    fn change_password(&self, password: &str) {
        set_password(&self.passwd_tool, &self.dir.path().join("passwd"), password);
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Publishes one telemetry message as a device with a valid certificate, waiting for
    /// the broker's PUBACK.
    async fn publish_as_device(&self, topic: String, payload: String) {
        let cfg = self.cert_config("ca.pem", Some(("device.pem", "device.key")));
        let mut o = cfg.options().unwrap();
        o.set_clean_start(true).set_manual_acks(false);
        let (client, mut ev) = AsyncClient::new(o, 10);
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, async {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => break,
                    Ok(_) => {}
                    Err(e) => panic!("test device cannot publish: {e}\n{}", self.log()),
                }
            }
        })
        .await
        .expect("the broker acknowledges the device's message");
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    }
}

/// Sets the test user's password in a Mosquitto password file (hashed by the tool).
fn set_password(tool: &Path, file: &Path, password: &str) {
    let status = Command::new(tool)
        .arg("-b")
        .arg(file)
        .arg(USER)
        .arg(password)
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success(), "mosquitto_passwd failed: {status}");
}

fn base_config(port: u16) -> MqttConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut c = MqttConfig {
        enabled: true,
        host: "127.0.0.1".into(),
        port,
        client_id: format!("sy-tls-{tag}"),
        topic_prefix: format!("sy-tls/{tag}"),
        reconnect_initial_ms: 50,
        reconnect_max_seconds: 1,
        ..Default::default()
    };
    c.tls.enabled = true;
    c
}

async fn writer(db: &TestDb) -> TelemetryWriter {
    TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap()
}

fn telemetry_message(device: &str, ts: i64, watts: f64) -> String {
    format!(
        r#"{{"device_id":"{device}","ts":{ts},"measurements":[{{"measurand":"active_power","value":{watts},"unit":"W"}}]}}"#
    )
}

/// Starts the ingest, publishes one message as a device and checks it is stored.
async fn ingest_stores_a_message(db: &TestDb, broker: &Broker, cfg: &MqttConfig) {
    let ingest = MqttIngest::start(cfg, db.store.clone(), writer(db).await).unwrap();
    if let Err(e) = ingest.ready(WAIT).await {
        panic!(
            "ingest not ready over TLS: {e}\nbroker log:\n{}",
            broker.log()
        );
    }
    assert_eq!(ingest.last_error(), None);
    let ts = switchyard::domain::now_epoch() - 30;
    broker
        .publish_as_device(
            ingest.topics().telemetry("tls-dev"),
            telemetry_message("tls-dev", ts, 1234.5),
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while ingest.stats().messages < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "message not stored: {:?}",
            ingest.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = telemetry::query(&db.store, "tls-dev", None, ts, ts + 1)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].measurand, got[0].value),
        (Measurand::ActivePower, 1234.5)
    );
    ingest.stop().await;
}

/// Starts the ingest with `cfg`, which the broker or the ingest must refuse: ready() fails
/// naming the cause, the ingest keeps retrying, and a message published meanwhile is not
/// stored. Returns the error text.
async fn ingest_is_refused(
    db: &TestDb,
    broker: &Broker,
    cfg: &MqttConfig,
    kind: FailureKind,
    says: &[&str],
) -> (MqttIngest, String) {
    let ingest = MqttIngest::start(cfg, db.store.clone(), writer(db).await).unwrap();
    let err = ingest.ready(REFUSED_WAIT).await.unwrap_err();
    let text = err.to_string();
    let MqttError::NotReady {
        cause: Some(cause), ..
    } = &err
    else {
        panic!(
            "expected NotReady with a cause, got {err:?}\nbroker log:\n{}",
            broker.log()
        );
    };
    assert_eq!(cause.kind, kind, "{text}\nbroker log:\n{}", broker.log());
    for s in says {
        assert!(text.contains(s), "'{text}' should say '{s}'");
    }
    assert_eq!(ingest.last_error().as_ref(), Some(cause));
    let s = ingest.stats();
    assert_eq!(s.connects, 0);
    // Still retrying with backoff, not given up after the first refusal.
    assert!(s.connection_errors >= 2, "{s:?}");

    let ts = switchyard::domain::now_epoch() - 30;
    broker
        .publish_as_device(
            ingest.topics().telemetry("tls-dev"),
            telemetry_message("tls-dev", ts, 1.0),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        telemetry::query(&db.store, "tls-dev", None, ts - 1, ts + 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ingest.stats().received, 0);
    (ingest, text)
}

async fn client_certificate_over_tls_stores_telemetry(db: TestDb) {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let cfg = broker.cert_config("ca.pem", Some(("client.pem", "client.key")));
    ingest_stores_a_message(&db, &broker, &cfg).await;
    // The broker took the certificate's common name as the user name.
    let log = broker.log();
    assert!(
        log.contains(&format!("as {} ", cfg.client_id)) && log.contains(&format!("u'{INGEST_CN}'")),
        "broker log:\n{log}"
    );
}

async fn password_over_tls_stores_telemetry(db: TestDb) {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let cfg = broker.password_config(PASSWORD);
    ingest_stores_a_message(&db, &broker, &cfg).await;
}

async fn broker_certificate_from_another_ca_is_refused(db: TestDb) {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let cfg = broker.cert_config("other-ca.pem", Some(("client.pem", "client.key")));
    let (ingest, _) = ingest_is_refused(
        &db,
        &broker,
        &cfg,
        FailureKind::Tls,
        &["TLS", "UnknownIssuer", "mqtt.tls.ca_cert"],
    )
    .await;
    ingest.stop().await;
}

async fn expired_client_certificate_is_refused_by_the_broker(db: TestDb) {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let cfg = broker.cert_config("ca.pem", Some(("expired.pem", "expired.key")));
    let (ingest, _) = ingest_is_refused(
        &db,
        &broker,
        &cfg,
        FailureKind::Tls,
        &["TLS", "CertificateExpired", "client certificate"],
    )
    .await;
    ingest.stop().await;
}

async fn missing_client_certificate_is_refused_by_the_broker(db: TestDb) {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let cfg = broker.cert_config("ca.pem", None);
    let (ingest, _) = ingest_is_refused(
        &db,
        &broker,
        &cfg,
        FailureKind::Tls,
        &["TLS", "CertificateRequired", "mqtt.tls.client_cert"],
    )
    .await;
    ingest.stop().await;
}

async fn wrong_password_is_refused_then_accepted_once_changed(db: TestDb) {
    let Some(broker) = Broker::start().await else {
        return;
    };
    let cfg = broker.password_config("wrong password");
    let (ingest, _) = ingest_is_refused(
        &db,
        &broker,
        &cfg,
        FailureKind::Refused,
        &["refused", "NotAuthorized", "mqtt.password"],
    )
    .await;
    // The operator sets the password the ingest uses: it connects on its next retry,
    // without a restart, and the failure is no longer reported.
    broker.change_password("wrong password");
    if let Err(e) = ingest.ready(WAIT).await {
        panic!(
            "not connected after the password changed: {e}\n{}",
            broker.log()
        );
    }
    assert_eq!(ingest.last_error(), None);
    assert_eq!(ingest.stats().connects, 1);
    ingest.stop().await;
}

/// Unusable TLS files stop the ingest at start, with the file and the problem named.
#[tokio::test]
async fn unusable_tls_files_are_refused_at_start() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.txt");
    std::fs::File::create(&not_pem)
        .unwrap()
        .write_all(b"this is not a certificate\n")
        .unwrap();
    let broken_pem = dir.path().join("broken.pem");
    std::fs::write(
        &broken_pem,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cases: [(Option<PathBuf>, &str); 4] = [
        (None, "mqtt.tls: ca_cert is required when TLS is enabled"),
        (
            Some(dir.path().join("missing.pem")),
            "mqtt.tls: cannot read CA certificate at",
        ),
        (Some(not_pem), "mqtt.tls: ca_cert holds no certificate"),
        (Some(broken_pem), "mqtt.tls: ca_cert:"),
    ];
    let mut configs: Vec<(MqttConfig, &str)> = cases
        .into_iter()
        .map(|(ca, says)| {
            let mut cfg = base_config(1);
            cfg.tls.ca_cert = ca;
            (cfg, says)
        })
        .collect();
    // With a good CA: a certificate without its key, and a key that is not PEM.
    let pki = Pki::create(dir.path());
    let mut cfg = base_config(1);
    cfg.tls.ca_cert = Some(pki.path("ca.pem"));
    cfg.tls.client_cert = Some(pki.path("client.pem"));
    configs.push((
        cfg.clone(),
        "mqtt.tls: client_cert and client_key go together",
    ));
    cfg.tls.client_key = Some(dir.path().join("ca.txt"));
    configs.push((cfg, "mqtt.tls: client_key:"));
    for (cfg, says) in configs {
        let w = writer(&db).await;
        match MqttIngest::start(&cfg, db.store.clone(), w) {
            Err(e @ MqttError::Config(_)) => {
                assert!(e.to_string().contains(says), "'{e}' should say '{says}'")
            }
            Err(e) => panic!("expected a configuration error, got {e}"),
            Ok(_) => panic!("started with {:?}", cfg.tls),
        }
    }
}

on_both_backends!(
    client_certificate_over_tls_stores_telemetry,
    password_over_tls_stores_telemetry,
    broker_certificate_from_another_ca_is_refused,
    expired_client_certificate_is_refused_by_the_broker,
    missing_client_certificate_is_refused_by_the_broker,
    wrong_password_is_refused_then_accepted_once_changed,
);

/// No broker at all: the error says the network, not TLS or the credentials.
#[tokio::test]
async fn unreachable_broker_is_reported_as_network() {
    let db = TestDb::sqlite().await;
    let (port, _) = free_ports();
    let mut cfg = base_config(port);
    cfg.tls.enabled = false;
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    let err = ingest.ready(Duration::from_secs(1)).await.unwrap_err();
    let cause = ingest.last_error().expect("a cause");
    assert_eq!(cause.kind, FailureKind::Network);
    let text = err.to_string();
    assert!(
        text.starts_with("not subscribed within 1s: network: ") && text.contains("refused"),
        "{text}"
    );
    ingest.stop().await;
}
