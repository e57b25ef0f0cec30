//! The 2030.5 conformance runner against Switchyard itself, in process: every embedded
//! procedure whose features Switchyard serves must pass (with the operator API doing the
//! set-up), and the runner must be able to fail: against a plain HTTP responder, against a
//! TLS server answering with the wrong media type, and with a procedure whose expectation
//! is deliberately wrong. Runs on SQLite and PostgreSQL.

mod common;

use common::{OPERATOR_TOKEN, TestDb, start_server_with};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use switchyard::conformance::procedure::{self, Procedure};
use switchyard::conformance::{
    Credentials, OperatorConfig, Outcome, Runner, RunnerConfig, Status, report,
};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest, IssuedCertificate};
use switchyard::protocol::sep2::tls::{ServeOptions, crypto_provider, serve_tls, server_config};

on_both_backends!(
    switchyard_passes_what_it_serves,
    the_runner_reports_failures,
    an_out_of_band_only_deployment_refuses_registration
);

/// Feature tags of procedures Switchyard does not serve yet (or set-up its operator API
/// cannot do); the runner skips them.
const NOT_SERVED: &[&str] = &[
    // Every tag the procedures use is served.
];

/// Procedure time runs twenty times faster against Switchyard: the operator set-up creates
/// the controls, so their timing shrinks with the waits (S-ALL-41 takes about a minute
/// instead of twenty, the five-minute outage of S-ALL-46 fifteen seconds).
const TIME_SCALE: f64 = 0.05;

/// Runs of a repeated step: S-ALL-50 walks to its controls every minute for 72 hours
/// (4320 times); against Switchyard in CI it walks this many times, three seconds apart.
const MAX_REPEATS: u32 = 5;

/// Procedures Switchyard fails on purpose today, with why. The test asserts they fail, so
/// this list has to be updated when the behaviour changes.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

struct Pki {
    ca: CertificateAuthority,
    dir: tempfile::TempDir,
    device: IssuedCertificate,
    second: IssuedCertificate,
    aggregator: IssuedCertificate,
}

fn pki() -> Pki {
    let ca = CertificateAuthority::generate("Conformance test CA").unwrap();
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
    let issue = |kind, name: &str| ca.issue(&IssueRequest::new(kind, name)).unwrap();
    let device = issue(CertKind::Device, "conformance-device");
    let second = issue(CertKind::Device, "conformance-second");
    let aggregator = issue(CertKind::Aggregator, "conformance-aggregator");
    Pki {
        ca,
        dir,
        device,
        second,
        aggregator,
    }
}

fn creds(c: &IssuedCertificate) -> Credentials {
    Credentials {
        cert_pem: c.cert_pem.clone(),
        key_pem: c.key_pem.clone(),
    }
}

async fn switchyard(db: &TestDb, pki: &Pki) -> (switchyard::app::RunningServer, RunnerConfig) {
    switchyard_with(db, pki, true).await
}

async fn switchyard_with(
    db: &TestDb,
    pki: &Pki,
    in_band_registration: bool,
) -> (switchyard::app::RunningServer, RunnerConfig) {
    let _ = crypto_provider().install_default();
    let (server, base) = start_server_with(db, 64 * 1024, |c| {
        c.sep2.enabled = true;
        c.sep2.in_band_registration = in_band_registration;
        c.sep2.listen = "127.0.0.1:0".parse().unwrap();
        c.sep2.ca_cert = pki.dir.path().join("ca.pem");
        c.sep2.server_cert = pki.dir.path().join("server.pem");
        c.sep2.server_key = pki.dir.path().join("server.key");
    })
    .await;
    let target = format!("https://127.0.0.1:{}", server.sep2_addr.unwrap().port());
    let mut config = RunnerConfig::new(target, pki.ca.cert_pem(), creds(&pki.device));
    config.second_device = Some(creds(&pki.second));
    config.aggregator = Some(creds(&pki.aggregator));
    config.operator = Some(OperatorConfig {
        url: base,
        token: OPERATOR_TOKEN.into(),
    });
    (server, config)
}

fn explain(outcomes: &[Outcome]) -> String {
    let mut s = report::table(outcomes);
    for o in outcomes.iter().filter(|o| o.status == Status::Fail) {
        s.push_str(&format!("\n{}:\n", o.id));
        for step in &o.steps {
            s.push_str(&format!(
                "  {:?} {} {}\n",
                step.status, step.name, step.detail
            ));
        }
    }
    s
}

async fn switchyard_passes_what_it_serves(db: TestDb) {
    let pki = pki();
    let (server, mut config) = switchyard(&db, &pki).await;
    config.skip_tags = NOT_SERVED.iter().map(|s| s.to_string()).collect();
    config.time_scale = TIME_SCALE;
    config.max_repeats = Some(MAX_REPEATS);
    // The subscription procedures need somewhere for notifications to arrive.
    config.notify_listen = Some("127.0.0.1:0".parse().unwrap());
    let procedures = procedure::embedded().unwrap();
    let runner = Runner::new(config).await.unwrap();
    let outcomes = runner.run(&procedures).await;
    assert_eq!(outcomes.len(), procedures.len());
    let table = explain(&outcomes);
    eprintln!("{table}");
    for o in &outcomes {
        let p = procedures.iter().find(|p| p.id == o.id).unwrap();
        if let Some((_, why)) = KNOWN_FAILURES.iter().find(|(id, _)| *id == o.id) {
            assert_eq!(
                o.status,
                Status::Fail,
                "{} should fail ({why})\n{table}",
                o.id
            );
            continue;
        }
        let tagged = p.requires.iter().any(|t| NOT_SERVED.contains(&t.as_str()));
        if tagged {
            assert_eq!(o.status, Status::Skip, "{}\n{table}", o.id);
        } else {
            assert_eq!(o.status, Status::Pass, "{}: {}\n{table}", o.id, o.reason);
        }
    }
    // The suite really exercises Switchyard: most CSIP-AUS procedures run.
    let passed = outcomes.iter().filter(|o| o.status == Status::Pass).count();
    assert!(passed >= 40, "only {passed} passed\n{table}");
    server.stop().await.unwrap();
}

/// S-OPT-01 is written for servers that register out of band only. The default deployment
/// passes it too (a repeated registration is refused with 409), so the main run plays it;
/// here it runs against `sep2.in_band_registration = false`, where it must pass as well
/// while the in-band registration procedure fails at its POST (403): the setting really
/// closes the door.
async fn an_out_of_band_only_deployment_refuses_registration(db: TestDb) {
    let pki = pki();
    let (server, config) = switchyard_with(&db, &pki, false).await;
    let procedures: Vec<Procedure> = procedure::embedded()
        .unwrap()
        .into_iter()
        .filter(|p| p.id == "S-OPT-01" || p.id == "S-ALL-02")
        .collect();
    assert_eq!(procedures.len(), 2);
    let outcomes = Runner::new(config).await.unwrap().run(&procedures).await;
    let table = explain(&outcomes);
    let opt = outcomes.iter().find(|o| o.id == "S-OPT-01").unwrap();
    assert_eq!(opt.status, Status::Pass, "{table}");
    let in_band = outcomes.iter().find(|o| o.id == "S-ALL-02").unwrap();
    assert_eq!(in_band.status, Status::Fail, "{table}");
    assert!(
        in_band.reason.contains("403"),
        "the registration is refused with 403: {}",
        in_band.reason
    );
    server.stop().await.unwrap();
}

/// A procedure that must fail against any server following its own set-up: it asks for an
/// export limit of 0 W and then expects 1234 W.
const WRONG: &str = r#"
id = "X-WRONG"
title = "An expectation that cannot hold"
profile = "csip-aus"
area = "self-test"
purpose = "Proves the runner reports FAIL when a check does not hold."

[[step]]
name = "operator registers the client and starts a 0 W export limit"
operator = [{ op = "end-device", registered = true }, { op = "control", state = "active", modes = { exp_lim_w = 0 } }]

[[step]]
name = "find the control, expecting the wrong value"
get = { follow = "dcap > EndDeviceListLink > EndDevice[lFDI=${lfdi}] > FunctionSetAssignmentsListLink > FunctionSetAssignments > DERProgramListLink > DERProgram > DERControlListLink" }
[[step.check]]
select = "DERControl"
where = [{ path = "DERControlBase/opModExpLimW", watts = 1234 }]
"#;

async fn the_runner_reports_failures(db: TestDb) {
    let pki = pki();
    let (server, config) = switchyard(&db, &pki).await;

    // 1. A wrong expectation against the real server fails, naming what was found.
    let wrong = Procedure::parse(WRONG, "inline").unwrap();
    let runner = Runner::new(config.clone()).await.unwrap();
    let out = runner.run(std::slice::from_ref(&wrong)).await;
    assert_eq!(out[0].status, Status::Fail, "{}", explain(&out));
    assert!(
        out[0].reason.contains("not 1234 W"),
        "the reason says what was found: {}",
        out[0].reason
    );
    // Without the operator API the same procedure needs set-up rather than failing.
    let mut no_ops = config.clone();
    no_ops.operator = None;
    let out = Runner::new(no_ops)
        .await
        .unwrap()
        .run(std::slice::from_ref(&wrong))
        .await;
    assert_eq!(out[0].status, Status::NeedsSetup, "{}", explain(&out));

    let procedures = procedure::embedded().unwrap();
    let time: Vec<Procedure> = procedures
        .into_iter()
        .filter(|p| p.id == "CORE-005" || p.id == "COMM-003")
        .collect();
    assert_eq!(time.len(), 2);

    // 2. A plain HTTP responder (no TLS at all) fails every procedure.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/sep+xml")],
            "<Time xmlns=\"urn:ieee:std:2030.5:ns\"/>",
        )
    });
    let plain_task = tokio::spawn(async move {
        let _ = axum::serve(plain, app).await;
    });
    let mut cfg = config.clone();
    cfg.target = format!("https://{plain_addr}");
    let out = Runner::new(cfg).await.unwrap().run(&time).await;
    for o in &out {
        assert_eq!(o.status, Status::Fail, "{}", explain(&out));
    }
    plain_task.abort();

    // 3. A TLS server that answers with the wrong media type and an incomplete Time fails
    // the time procedure (the TLS probes of COMM-003 pass: the transport is sound).
    let tls = Arc::new(
        server_config(
            pki.ca.cert_pem(),
            &std::fs::read_to_string(pki.dir.path().join("server.pem")).unwrap(),
            &std::fs::read_to_string(pki.dir.path().join("server.key")).unwrap(),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = axum::Router::new()
        .route(
            "/dcap",
            axum::routing::get(|| async {
                (
                    [("content-type", "application/sep+xml")],
                    "<DeviceCapability xmlns=\"urn:ieee:std:2030.5:ns\" href=\"/dcap\"><TimeLink href=\"/tm\"/></DeviceCapability>",
                )
            }),
        )
        .route(
            "/tm",
            axum::routing::get(|| async {
                (
                    [("content-type", "application/xml")],
                    "<Time xmlns=\"urn:ieee:std:2030.5:ns\"><currentTime>1</currentTime></Time>",
                )
            }),
        );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let fake_task = tokio::spawn(serve_tls(
        listener,
        tls,
        fake,
        ServeOptions::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let mut cfg = config.clone();
    cfg.target = format!("https://127.0.0.1:{}", addr.port());
    let out = Runner::new(cfg).await.unwrap().run(&time).await;
    let core = out.iter().find(|o| o.id == "CORE-005").unwrap();
    assert_eq!(core.status, Status::Fail, "{}", explain(&out));
    assert!(core.reason.contains("content type"), "{}", core.reason);
    let comm = out.iter().find(|o| o.id == "COMM-003").unwrap();
    assert_eq!(comm.status, Status::Pass, "{}", explain(&out));
    let _ = stop_tx.send(());
    let _ = fake_task.await;

    server.stop().await.unwrap();
}

/// Subscribes at a fake server, which delivers one notification to the runner's listener.
const NOTIFIED: &str = r##"
id = "X-NOTIFY"
title = "A notification reaches the runner"
profile = "csip-aus"
area = "self-test"
purpose = "Proves subscriptions and the notification listener work end to end."

[[step]]
name = "subscribe"
save = { sub = "#location" }
[step.send]
method = "POST"
to = "/sub"
expect = 201
body = '<Subscription xmlns="urn:ieee:std:2030.5:ns"><subscribedResource>/derc</subscribedResource><encoding>0</encoding><level>+S1</level><limit>1</limit><notificationURI>${notify.derc}</notificationURI></Subscription>'

[[step]]
name = "the notification arrives"
notifications = { channel = "derc", within_s = 10 }
[[step.check]]
select = "Notification/Resource/DERControl"
where = [{ path = "DERControlBase/opModExpLimW", watts = 1500 }]
count = 1
"##;

/// A notification as a server would send it: a DERControlList holding one 1500 W control.
const NOTIFICATION: &str = r#"<Notification xmlns="urn:ieee:std:2030.5:ns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><subscribedResource>/derc</subscribedResource><Resource xsi:type="DERControlList" all="1" results="1"><DERControl><mRID>AA</mRID><creationTime>0</creationTime><EventStatus><currentStatus>1</currentStatus><dateTime>0</dateTime><potentiallySuperseded>false</potentiallySuperseded></EventStatus><interval><duration>60</duration><start>0</start></interval><DERControlBase><opModExpLimW><multiplier>1</multiplier><value>150</value></opModExpLimW></DERControlBase></DERControl></Resource><status>0</status><subscriptionURI>/sub/1</subscriptionURI></Notification>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_the_runner() {
    let pki = pki();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = axum::Router::new().route(
        "/sub",
        axum::routing::post(|body: String| async move {
            let start = body.find("<notificationURI>").unwrap() + "<notificationURI>".len();
            let end = body.find("</notificationURI>").unwrap();
            let uri = body[start..end].to_owned();
            tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(uri)
                    .header("content-type", "application/sep+xml")
                    .body(NOTIFICATION)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            });
            (axum::http::StatusCode::CREATED, [("location", "/sub/1")])
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, fake).await;
    });
    let mut config = RunnerConfig::new(
        format!("http://{addr}"),
        pki.ca.cert_pem(),
        creds(&pki.device),
    );
    config.notify_listen = Some("127.0.0.1:0".parse().unwrap());
    let p = Procedure::parse(NOTIFIED, "inline").unwrap();
    let out = Runner::new(config.clone())
        .await
        .unwrap()
        .run(std::slice::from_ref(&p))
        .await;
    assert_eq!(out[0].status, Status::Pass, "{}", explain(&out));
    // Without a listener the procedure cannot be prepared.
    config.notify_listen = None;
    let out = Runner::new(config).await.unwrap().run(&[p]).await;
    assert_eq!(out[0].status, Status::NeedsSetup, "{}", explain(&out));
    task.abort();
}
