//! IEEE 2030.5 subscriptions and notifications end to end: devices subscribe over real
//! mutual TLS, the operator changes controls through the operator API, and plain-HTTP
//! receivers started here record what the notifier POSTs. Covers the notification's
//! content and schema validity, retries after failures, isolation from dead and stalled
//! endpoints, refusals that store nothing, DELETE, and the registry change feed underneath.
//! Runs on SQLite and PostgreSQL. Every wait is bounded, so a failure cannot hang CI.

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use common::xsd::{Doc, schemas, validate};
use common::{OPERATOR_TOKEN, TestDb, start_server_with};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::app::RunningServer;
use switchyard::envelope::records::{ControlProgram, ControlRecord};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest, IssuedCertificate};
use switchyard::protocol::sep2::tls::{client_config, crypto_provider};
use switchyard::protocol::sep2::xml::CsipAusVersion;
use switchyard::registry::model::{Account, Site};
use switchyard::registry::{Change, ChangeKind};
use tokio::net::TcpListener;

on_both_backends!(
    subscriber_is_notified_of_control_changes,
    dead_and_stalled_endpoints_do_not_delay_healthy_ones,
    refused_subscriptions_store_nothing,
    change_feed_announces_every_commit,
    list_subscriptions_notify_only_what_the_subscriber_sees,
);

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

struct Pki {
    ca: CertificateAuthority,
    dir: tempfile::TempDir,
    device: IssuedCertificate,
    other: IssuedCertificate,
}

fn pki() -> Pki {
    let ca = CertificateAuthority::generate("Switchyard test CA").unwrap();
    let server = ca
        .issue(&IssueRequest::new(
            CertKind::Server {
                dns_names: vec!["localhost".into()],
                ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            },
            "sep2 server",
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &server.key_pem).unwrap();
    let device = ca
        .issue(&IssueRequest::new(CertKind::Device, "inverter-1"))
        .unwrap();
    let other = ca
        .issue(&IssueRequest::new(CertKind::Device, "inverter-2"))
        .unwrap();
    Pki {
        ca,
        dir,
        device,
        other,
    }
}

/// A 2030.5 client with `cert`, keeping every document it reads for schema validation.
struct Sep2 {
    http: Client,
    base: String,
    docs: Mutex<Vec<Doc>>,
}

impl Sep2 {
    fn new(pki: &Pki, cert: &IssuedCertificate, base: &str) -> Sep2 {
        let _ = crypto_provider().install_default();
        let tls = client_config(pki.ca.cert_pem(), &cert.cert_pem, &cert.key_pem).unwrap();
        Sep2 {
            http: Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(WAIT)
                .build()
                .unwrap(),
            base: base.to_string(),
            docs: Mutex::default(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if status == StatusCode::OK {
            let name = path
                .trim_start_matches('/')
                .replace(['/', '?', '=', '&'], "_");
            self.docs.lock().unwrap().push(Doc {
                name,
                xml: body.clone(),
            });
        }
        (status, body)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, HeaderMap, String) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    /// POSTs a Subscription; returns the status and the Location, if any.
    async fn subscribe(
        &self,
        edev: &str,
        resource: &str,
        uri: &str,
    ) -> (StatusCode, Option<String>, String) {
        self.subscribe_xml(edev, &subscription(resource, uri, 0, 10))
            .await
    }

    async fn subscribe_xml(&self, edev: &str, xml: &str) -> (StatusCode, Option<String>, String) {
        let (s, h, body) = self
            .send(
                Method::POST,
                &format!("/edev/{edev}/sub"),
                "application/sep+xml",
                xml.to_string(),
            )
            .await;
        let location = h.get("location").map(|l| l.to_str().unwrap().to_string());
        (s, location, body)
    }
}

fn subscription(resource: &str, uri: &str, encoding: u8, limit: u32) -> String {
    format!(
        "<Subscription xmlns=\"urn:ieee:std:2030.5:ns\"><subscribedResource>{resource}</subscribedResource>\
         <encoding>{encoding}</encoding><level>+S1</level><limit>{limit}</limit>\
         <notificationURI>{uri}</notificationURI></Subscription>"
    )
}

/// What a receiver got: the path it was posted to, its content type and body.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: String,
    body: String,
}

/// A plain-HTTP notification receiver. `/ok/{name}` accepts everything; `/flaky/{name}`
/// answers 503 to the first two attempts of each name.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        let app = Router::new()
            .route("/ok/{name}", post(ok))
            .route("/flaky/{name}", post(flaky))
            .with_state(r.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, base)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn attempts(&self, path: &str) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Waits (bounded) until `path` has received `n` notifications; returns them.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                let got = self.at(path);
                if got.len() >= n {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {n} notification(s) at {path}; got {:?}",
                self.got.lock().unwrap()
            )
        })
    }

    fn record(&self, path: String, headers: &HeaderMap, body: String) {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        self.got.lock().unwrap().push(Received {
            path,
            content_type,
            body,
        });
    }
}

async fn ok(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> AxumStatus {
    let path = format!("/ok/{name}");
    *r.attempts.lock().unwrap().entry(path.clone()).or_default() += 1;
    r.record(path, &headers, body);
    AxumStatus::NO_CONTENT
}

async fn flaky(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> AxumStatus {
    let path = format!("/flaky/{name}");
    let attempt = {
        let mut a = r.attempts.lock().unwrap();
        let n = a.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    if attempt <= 2 {
        return AxumStatus::SERVICE_UNAVAILABLE;
    }
    r.record(path, &headers, body);
    AxumStatus::NO_CONTENT
}

/// The running servers, the operator API and the EndDevice ids of both devices.
struct Fixture {
    server: RunningServer,
    sep2_base: String,
    api: String,
    ops: Client,
    device_id: String,
    other_id: String,
}

impl Fixture {
    /// Sends `body` and returns the status and the answer (for refusals).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let ct = if method == Method::PATCH {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let r = self
            .ops
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(OPERATOR_TOKEN)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .ops
            .post(format!("{}{path}", self.api))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Creates a control in program `doe`, starting in an hour; returns its mRID.
    async fn new_control(&self, exp_lim_w: f64) -> String {
        let start = now() + 3600;
        let c = self
            .post(
                "/api/v1/controls",
                json!({"program_id": "doe", "start": start, "duration_s": 1800, "modes": {"exp_lim_w": exp_lim_w}}),
            )
            .await;
        c["id"].as_str().unwrap().to_string()
    }

    async fn stop(self) {
        tokio::time::timeout(WAIT, self.server.stop())
            .await
            .expect("server stops in time")
            .unwrap();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A server with 2030.5 enabled and fast retries; one site with a DER, program `doe` with a
/// default, and both devices registered out of band and bound to the DER.
async fn setup(db: &TestDb, pki: &Pki, timeout_seconds: u64) -> Fixture {
    let _ = crypto_provider().install_default();
    let (server, api) = start_server_with(db, 64 * 1024, |c| {
        c.sep2.enabled = true;
        c.sep2.listen = "127.0.0.1:0".parse().unwrap();
        c.sep2.ca_cert = pki.dir.path().join("ca.pem");
        c.sep2.server_cert = pki.dir.path().join("server.pem");
        c.sep2.server_key = pki.dir.path().join("server.key");
        c.sep2.notifications.initial_backoff_ms = 100;
        c.sep2.notifications.max_backoff_seconds = 1;
        c.sep2.notifications.max_attempts = 5;
        c.sep2.notifications.timeout_seconds = timeout_seconds;
    })
    .await;
    let sep2_base = format!("https://127.0.0.1:{}", server.sep2_addr.unwrap().port());
    let mut f = Fixture {
        server,
        sep2_base,
        api,
        ops: Client::builder().timeout(WAIT).build().unwrap(),
        device_id: String::new(),
        other_id: String::new(),
    };
    f.post(
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    f.post(
        "/api/v1/sites",
        json!({"id": "s1", "account_id": "a1", "territory": "T", "interconnection_type": "nem"}),
    )
    .await;
    f.post("/api/v1/ders", json!({"id": "d1", "site_id": "s1", "der_class": "battery", "manufacturer": "M", "model": "B", "serial": "1", "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"})).await;
    f.post(
        "/api/v1/control-programs",
        json!({"id": "doe", "name": "DOE", "primacy": 1, "target_kind": "site", "target_id": "s1"}),
    )
    .await;
    f.post(
        "/api/v1/default-controls",
        json!({"program_id": "doe", "modes": {"exp_lim_w": 5000.0}}),
    )
    .await;
    for (cert, slot) in [(&pki.device, 0), (&pki.other, 1)] {
        let ed = f
            .post(
                "/api/v1/end-devices",
                json!({"lfdi": cert.lfdi.to_hex(), "der_id": "d1"}),
            )
            .await;
        let id = ed["id"].as_str().unwrap().to_string();
        if slot == 0 {
            f.device_id = id;
        } else {
            f.other_id = id;
        }
    }
    f
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A port that accepts connections and never answers.
async fn stalled_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = l.accept().await {
            held.push(socket);
        }
    });
    port
}

async fn subscriber_is_notified_of_control_changes(db: TestDb) {
    let pki = pki();
    let f = setup(&db, &pki, 10).await;
    let (rx, rx_base) = Receiver::start().await;
    let dev = Sep2::new(&pki, &pki.device, &f.sep2_base);
    let id = f.device_id.clone();
    let derc = format!("/edev/{id}/derp/doe/derc");

    // The resources say they take subscriptions, and the EndDevice links its list.
    let (_, edev) = dev.get(&format!("/edev/{id}")).await;
    assert!(
        edev.contains(&format!("<SubscriptionListLink href=\"/edev/{id}/sub\"")),
        "{edev}"
    );
    let (_, list) = dev.get(&format!("{derc}?l=10")).await;
    assert!(list.contains("subscribable=\"1\""), "{list}");
    let (_, derp) = dev.get(&format!("/edev/{id}/derp?l=10")).await;
    assert!(
        derp.contains("<DERProgramList") && derp.contains("subscribable=\"1\""),
        "{derp}"
    );
    let (_, dderc) = dev.get(&format!("/edev/{id}/derp/doe/dderc")).await;
    assert!(dderc.contains("subscribable=\"1\""), "{dderc}");

    // Subscribe twice (a healthy and a flaky receiver); the same subscription again is
    // answered with the existing one.
    let ok_uri = format!("{rx_base}/ok/a");
    let (s, loc, body) = dev.subscribe(&id, &derc, &ok_uri).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(loc.as_deref(), Some(format!("/edev/{id}/sub/1").as_str()));
    let (s, loc, _) = dev
        .subscribe(&id, &derc, &format!("{rx_base}/flaky/f"))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(loc.as_deref(), Some(format!("/edev/{id}/sub/2").as_str()));
    let (s, loc, _) = dev.subscribe(&id, &derc, &ok_uri).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(loc.as_deref(), Some(format!("/edev/{id}/sub/1").as_str()));
    let (_, subs) = dev.get(&format!("/edev/{id}/sub?l=10")).await;
    assert!(subs.contains("all=\"2\" results=\"2\""), "{subs}");
    let (s, sub1) = dev.get(&format!("/edev/{id}/sub/1")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        sub1.contains(&format!("<notificationURI>{ok_uri}</notificationURI>")),
        "{sub1}"
    );

    // The operator creates a control: both receivers get a Notification carrying the
    // DERControlList with the new control, the flaky one after two 503s.
    let mrid = f.new_control(1234.0).await;
    let got = rx.wait_for("/ok/a", 1).await;
    let n = &got[0];
    assert_eq!(n.content_type, "application/sep+xml");
    for expected in [
        "<Notification xmlns=\"urn:ieee:std:2030.5:ns\"".to_string(),
        format!("<subscribedResource>{derc}</subscribedResource>"),
        "xsi:type=\"DERControlList\"".to_string(),
        format!("<mRID>{mrid}</mRID>"),
        "<status>0</status>".to_string(),
        format!("<subscriptionURI>/edev/{id}/sub/1</subscriptionURI>"),
    ] {
        assert!(n.body.contains(&expected), "{expected} not in {}", n.body);
    }
    let flaky = rx.wait_for("/flaky/f", 1).await;
    assert_eq!(rx.attempts("/flaky/f"), 3, "delivered on the third attempt");
    assert!(flaky[0].body.contains(&format!("<mRID>{mrid}</mRID>")));
    assert!(flaky[0].body.contains(&format!(
        "<subscriptionURI>/edev/{id}/sub/2</subscriptionURI>"
    )));

    // Every document, the notification included, is valid CSIP-AUS v1.3.
    if let Some(schemas) = schemas() {
        let mut docs = std::mem::take(&mut *dev.docs.lock().unwrap());
        docs.push(Doc {
            name: "notification".into(),
            xml: n.body.clone(),
        });
        validate(
            &schemas,
            schemas.csipaus(CsipAusVersion::V1_3),
            "subscriptions",
            &docs,
        );
    }

    // DELETE stops notifications: after the first subscription is deleted, cancelling the
    // control reaches only the second.
    let sub1_path = format!("/edev/{id}/sub/1");
    let (s, _, _) = dev
        .send(
            Method::DELETE,
            &sub1_path,
            "application/sep+xml",
            String::new(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(dev.get(&sub1_path).await.0, StatusCode::NOT_FOUND);
    let (s, _, _) = dev
        .send(
            Method::DELETE,
            &sub1_path,
            "application/sep+xml",
            String::new(),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    f.post(&format!("/api/v1/controls/{mrid}/cancel"), json!({}))
        .await;
    let flaky = rx.wait_for("/flaky/f", 2).await;
    // Status 2: cancelled.
    assert!(
        flaky[1].body.contains("<currentStatus>2</currentStatus>"),
        "{}",
        flaky[1].body
    );
    // Both were queued in the same pass; give the deleted one every chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.at("/ok/a").len(),
        1,
        "a deleted subscription was notified"
    );
    f.stop().await;
}

async fn dead_and_stalled_endpoints_do_not_delay_healthy_ones(db: TestDb) {
    let pki = pki();
    // Each attempt at the stalled endpoint hangs for the whole timeout.
    let f = setup(&db, &pki, 15).await;
    let (rx, rx_base) = Receiver::start().await;
    let dev = Sep2::new(&pki, &pki.device, &f.sep2_base);
    let id = f.device_id.clone();
    let derc = format!("/edev/{id}/derp/doe/derc");
    let dead = format!("http://127.0.0.1:{}/notify", closed_port().await);
    let stalled = format!("http://127.0.0.1:{}/notify", stalled_port().await);
    for uri in [&dead, &stalled, &format!("{rx_base}/ok/h")] {
        let (s, _, body) = dev.subscribe(&id, &derc, uri).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let started = Instant::now();
    let mrid = f.new_control(900.0).await;
    let got = rx.wait_for("/ok/h", 1).await;
    assert!(got[0].body.contains(&mrid));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the healthy endpoint waited {took:?} behind the dead and stalled ones"
    );
    // Shutdown is not held up by the delivery still hanging on the stalled endpoint.
    f.stop().await;
}

async fn refused_subscriptions_store_nothing(db: TestDb) {
    let pki = pki();
    let f = setup(&db, &pki, 10).await;
    let (rx, rx_base) = Receiver::start().await;
    let dev = Sep2::new(&pki, &pki.device, &f.sep2_base);
    let other = Sep2::new(&pki, &pki.other, &f.sep2_base);
    let (id, oid) = (f.device_id.clone(), f.other_id.clone());
    let uri = format!("{rx_base}/ok/x");
    let derc = format!("/edev/{id}/derp/doe/derc");

    // Another device's resource, in the caller's own list: 400. The other device's list: 404.
    let (s, _, body) = dev
        .subscribe(&id, &format!("/edev/{oid}/derp/doe/derc"), &uri)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("subscribedResource"), "{body}");
    let (s, _, _) = dev
        .subscribe(&oid, &format!("/edev/{oid}/derp/doe/derc"), &uri)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Malformed or unsupported subscriptions, each naming its field.
    let cases = [
        (subscription(&format!("/edev/{id}/der/1"), &uri, 0, 10), "subscribedResource"),
        (subscription(&format!("/edev/{id}/derp/nope/derc"), &uri, 0, 10), "subscribedResource"),
        (subscription(&format!("/edev/{id}/derp/doe/actderc"), &uri, 0, 10), "subscribedResource"),
        (subscription(&derc, "ftp://127.0.0.1/n", 0, 10), "notificationURI"),
        (subscription(&derc, "/relative", 0, 10), "notificationURI"),
        (subscription(&derc, &uri, 1, 10), "encoding"),
        (subscription(&derc, &uri, 0, 0), "limit"),
        (subscription(&derc, &uri, 0, 100_000), "limit"),
        (
            subscription(&derc, &uri, 0, 10).replace(
                "<encoding>",
                "<Condition><attributeIdentifier>0</attributeIdentifier><lowerThreshold>0</lowerThreshold><upperThreshold>1</upperThreshold></Condition><encoding>",
            ),
            "Condition",
        ),
    ];
    for (xml, field) in &cases {
        let (s, loc, body) = dev.subscribe_xml(&id, xml).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{xml}: {body}");
        assert!(body.contains(field), "{field} not named in {body}");
        assert!(loc.is_none());
    }
    let (s, _, _) = dev
        .send(
            Method::POST,
            &format!("/edev/{id}/sub"),
            "application/xml",
            subscription(&derc, &uri, 0, 10),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // None of that stored anything, for either device.
    let (_, list) = dev.get(&format!("/edev/{id}/sub?l=10")).await;
    assert!(list.contains("all=\"0\""), "{list}");
    let (_, list) = other.get(&format!("/edev/{oid}/sub?l=10")).await;
    assert!(list.contains("all=\"0\""), "{list}");

    // A device cannot read or delete another's subscription.
    let (s, loc, _) = dev.subscribe(&id, &derc, &uri).await;
    assert_eq!(s, StatusCode::CREATED);
    let loc = loc.unwrap();
    assert_eq!(other.get(&loc).await.0, StatusCode::NOT_FOUND);
    let (s, _, _) = other
        .send(Method::DELETE, &loc, "application/sep+xml", String::new())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(dev.get(&loc).await.0, StatusCode::OK);
    assert!(rx.at("/ok/x").is_empty());
    f.stop().await;
}

async fn change_feed_announces_every_commit(db: TestDb) {
    let registry = db.registry().await;
    let mut feed = registry.subscribe_changes();
    let account: Account = serde_json::from_value(
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .unwrap();
    registry.create(account).await.unwrap();
    registry
        .update::<Account, _>("a1", |a| {
            Ok(Account {
                name: "B".into(),
                ..a.clone()
            })
        })
        .await
        .unwrap();
    let site: Site = serde_json::from_value(
        json!({"id": "s1", "account_id": "a1", "territory": "T", "interconnection_type": "nem"}),
    )
    .unwrap();
    registry.create(site).await.unwrap();
    let program: ControlProgram = serde_json::from_value(
        json!({"id": "doe", "name": "DOE", "primacy": 1, "target_kind": "site", "target_id": "s1"}),
    )
    .unwrap();
    registry.create(program).await.unwrap();
    let control: ControlRecord = serde_json::from_value(
        json!({"program_id": "doe", "start": now(), "duration_s": 60, "modes": {"exp_lim_w": 1.0}}),
    )
    .unwrap();
    let control = registry.create(control).await.unwrap();
    // A refused write announces nothing.
    assert!(registry.delete::<Account>("a1").await.is_err());
    // Deleting a control keeps it (as Cancelled): an update.
    registry.delete::<ControlRecord>(&control.id).await.unwrap();

    let mut seen = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
        seen.push(c);
    }
    let expect = |collection, key: &str, kind| Change {
        collection,
        key: key.to_string(),
        kind,
    };
    assert_eq!(
        seen,
        vec![
            expect("accounts", "a1", ChangeKind::Created),
            expect("accounts", "a1", ChangeKind::Updated),
            expect("sites", "s1", ChangeKind::Created),
            expect("control-programs", "doe", ChangeKind::Created),
            expect("controls", &control.id, ChangeKind::Created),
            expect("controls", &control.id, ChangeKind::Updated),
        ]
    );

    // A hard delete is announced as one.
    let mut feed = registry.subscribe_changes();
    let lone: Account = serde_json::from_value(
        json!({"id": "a2", "account_number": "A2", "name": "A", "kind": "residential"}),
    )
    .unwrap();
    registry.create(lone).await.unwrap();
    registry.delete::<Account>("a2").await.unwrap();
    let kinds: Vec<ChangeKind> = [feed.recv().await.unwrap(), feed.recv().await.unwrap()]
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, [ChangeKind::Created, ChangeKind::Deleted]);
}

/// Subscriptions to the EndDeviceList and the FunctionSetAssignmentsList: a change to one
/// client's EndDevice is notified to that client only; poll rates and FunctionSetAssignments
/// set by the operator are served and notified; refusals name the field.
async fn list_subscriptions_notify_only_what_the_subscriber_sees(db: TestDb) {
    let pki = pki();
    let f = setup(&db, &pki, 10).await;
    let (rx, rx_base) = Receiver::start().await;
    let dev = Sep2::new(&pki, &pki.device, &f.sep2_base);
    let other = Sep2::new(&pki, &pki.other, &f.sep2_base);
    let (id, other_id) = (f.device_id.clone(), f.other_id.clone());

    // Both lists say they take subscriptions.
    let (_, edevs) = dev.get("/edev?l=10").await;
    assert!(edevs.contains("subscribable=\"1\""), "{edevs}");
    let (_, fsas) = dev.get(&format!("/edev/{id}/fsa?l=10")).await;
    assert!(fsas.contains("subscribable=\"1\""), "{fsas}");

    for (client, edev, name) in [(&dev, &id, "dev-edev"), (&other, &other_id, "other-edev")] {
        let (s, loc, body) = client
            .subscribe(edev, "/edev", &format!("{rx_base}/ok/{name}"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert!(loc.is_some());
    }
    let (s, _, body) = dev
        .subscribe(
            &id,
            &format!("/edev/{id}/fsa"),
            &format!("{rx_base}/ok/dev-fsa"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // Another EndDevice's list is not the caller's to watch.
    let (s, _, body) = dev
        .subscribe(
            &id,
            &format!("/edev/{other_id}/fsa"),
            &format!("{rx_base}/ok/x"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("subscribedResource"), "{body}");

    // The operator changes the other client's EndDevice (its category, which the
    // EndDevice shows): only that client hears of it, and its list holds its own
    // EndDevice alone.
    let (s, body) = f
        .call(
            Method::PATCH,
            &format!("/api/v1/end-devices/{other_id}"),
            json!({"device_category": "04"}),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    let got = rx.wait_for("/ok/other-edev", 1).await;
    let n = &got[0].body;
    assert!(n.contains("xsi:type=\"EndDeviceList\""), "{n}");
    assert!(
        n.contains(&format!("<lFDI>{}</lFDI>", pki.other.lfdi.to_hex())),
        "{n}"
    );
    assert!(!n.contains(&pki.device.lfdi.to_hex()), "{n}");
    assert!(n.contains("all=\"1\""), "{n}");

    // A poll rate for the FunctionSetAssignmentsList is served and notified; the
    // EndDeviceList subscribers see nothing of it.
    f.post(
        "/api/v1/sep2-poll-rates",
        json!({"resource": "FunctionSetAssignmentsList", "seconds": 120}),
    )
    .await;
    let got = rx.wait_for("/ok/dev-fsa", 1).await;
    assert!(got[0].body.contains("pollRate=\"120\""), "{}", got[0].body);
    let (_, fsas) = dev.get(&format!("/edev/{id}/fsa?l=10")).await;
    assert!(fsas.contains("pollRate=\"120\""), "{fsas}");
    f.post(
        "/api/v1/sep2-poll-rates",
        json!({"resource": "DeviceCapability", "seconds": 300}),
    )
    .await;
    let (_, dcap) = dev.get("/dcap").await;
    assert!(dcap.contains("pollRate=\"300\""), "{dcap}");
    let (s, _) = f
        .call(
            Method::PATCH,
            "/api/v1/sep2-poll-rates/DeviceCapability",
            json!({"seconds": 60}),
        )
        .await;
    assert!(s.is_success());
    let (_, dcap) = dev.get("/dcap").await;
    assert!(dcap.contains("pollRate=\"60\""), "{dcap}");
    for bad in [
        json!({"resource": "Bogus", "seconds": 60}),
        json!({"resource": "DERList", "seconds": 0}),
    ] {
        let (s, body) = f.call(Method::POST, "/api/v1/sep2-poll-rates", bad).await;
        assert!(s.is_client_error(), "{s} {body}");
    }
    let (_, ders) = dev.get(&format!("/edev/{id}/der?l=10")).await;
    assert!(
        ders.contains("pollRate=\"900\""),
        "unchanged default: {ders}"
    );

    // The program placed in a FunctionSetAssignments of its own: the list (notified)
    // holds that one, whose DERProgramList holds the program; the default list is empty.
    f.post(
        "/api/v1/sep2-function-sets",
        json!({"id": "doe-fsa", "program_id": "doe", "description": "DOE programme"}),
    )
    .await;
    let got = rx.wait_for("/ok/dev-fsa", 2).await;
    let n = &got[1].body;
    assert!(
        n.contains(&format!("href=\"/edev/{id}/fsa/doe-fsa\"")),
        "{n}"
    );
    assert!(!n.contains(&format!("href=\"/edev/{id}/fsa/1\"")), "{n}");
    let (s, derp) = dev.get(&format!("/edev/{id}/fsa/doe-fsa/derp?l=10")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        derp.contains(&format!("href=\"/edev/{id}/derp/doe\"")),
        "{derp}"
    );
    let (_, default) = dev.get(&format!("/edev/{id}/derp?l=10")).await;
    assert!(default.contains("all=\"0\""), "{default}");
    // That list can be watched too; a FunctionSetAssignments the EndDevice lacks cannot.
    let set_derp = format!("/edev/{id}/fsa/doe-fsa/derp");
    let (s, _, body) = dev
        .subscribe(&id, &set_derp, &format!("{rx_base}/ok/dev-setderp"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, _, body) = dev
        .subscribe(
            &id,
            &format!("/edev/{id}/fsa/nope/derp"),
            &format!("{rx_base}/ok/x"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        dev.get(&format!("/edev/{id}/fsa/nope")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, body) = f
        .call(
            Method::POST,
            "/api/v1/sep2-function-sets",
            json!({"id": "1", "program_id": "doe", "description": "x"}),
        )
        .await;
    assert!(s.is_client_error(), "{s} {body}");

    // Still nothing for the client whose EndDevice never changed; its own change arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rx.at("/ok/dev-edev").is_empty(),
        "{:?}",
        rx.at("/ok/dev-edev")
    );
    f.call(
        Method::PATCH,
        &format!("/api/v1/end-devices/{id}"),
        json!({"device_category": "08"}),
    )
    .await;
    let got = rx.wait_for("/ok/dev-edev", 1).await;
    assert!(
        got[0].body.contains(&pki.device.lfdi.to_hex()),
        "{}",
        got[0].body
    );
    assert!(!got[0].body.contains(&pki.other.lfdi.to_hex()));

    // `limit` bounds the items a list notification carries: two programs in the default
    // DERProgramList, one per notification.
    let (s, _, body) = dev
        .subscribe_xml(
            &id,
            &subscription(
                &format!("/edev/{id}/derp"),
                &format!("{rx_base}/ok/dev-derp"),
                0,
                1,
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    for (p, primacy) in [("p2", 2), ("p3", 3)] {
        f.post(
            "/api/v1/control-programs",
            json!({"id": p, "name": p, "primacy": primacy, "target_kind": "site", "target_id": "s1"}),
        )
        .await;
    }
    let deadline = Instant::now() + WAIT;
    let both = loop {
        let got = rx.at("/ok/dev-derp");
        if let Some(n) = got.iter().find(|r| r.body.contains("all=\"2\"")) {
            break n.body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no notification with both programs: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(both.contains("results=\"1\""), "{both}");
    assert_eq!(both.matches("<DERProgram ").count(), 1, "{both}");

    // The operator puts the program back: the subscription to the list that went away
    // gets a Notification with status 4 (resource deleted), and is removed.
    let (s, body) = f
        .call(
            Method::DELETE,
            "/api/v1/sep2-function-sets/doe-fsa",
            json!({}),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    let got = rx.wait_for("/ok/dev-setderp", 1).await;
    let gone = got.last().unwrap();
    assert!(gone.body.contains("<status>4</status>"), "{}", gone.body);
    assert!(
        gone.body.contains(&format!(
            "<subscribedResource>{set_derp}</subscribedResource>"
        )),
        "{}",
        gone.body
    );
    // The removal follows the notification; wait for it, bounded.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, subs) = dev.get(&format!("/edev/{id}/sub?l=10")).await;
        if !subs.contains(&set_derp) {
            break;
        }
        assert!(Instant::now() < deadline, "still subscribed: {subs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    if let Some(schemas) = schemas() {
        let mut docs = std::mem::take(&mut *dev.docs.lock().unwrap());
        for (i, r) in rx
            .at("/ok/dev-fsa")
            .iter()
            .chain(rx.at("/ok/dev-edev").iter())
            .enumerate()
        {
            docs.push(Doc {
                name: format!("list-notification-{i}"),
                xml: r.body.clone(),
            });
        }
        validate(
            &schemas,
            schemas.csipaus(CsipAusVersion::V1_3),
            "list-subscriptions",
            &docs,
        );
    }
    f.stop().await;
}
