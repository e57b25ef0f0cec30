//! OpenADR 3 subscriptions and webhook notifications over real sockets: a receiver written
//! here gets the `notification` JSON with the subscriber's bearer token, only for objects
//! the subscriber may see, after retries when it first fails; and a callback that never
//! answers does not hold up the API.

mod common;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::TestDb;
use common::openadr3::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

#[derive(Debug)]
struct Received {
    path: String,
    auth: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<Received>,
    flaky_failures: Arc<AtomicU32>,
    release: Arc<Notify>,
}

async fn receive(
    State(r): State<Receiver>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    if name == "stuck" {
        r.release.notified().await;
    }
    if name == "flaky" && r.flaky_failures.fetch_add(1, Ordering::SeqCst) < 2 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let _ = r.tx.send(Received {
        path: name,
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_str(&body).unwrap(),
    });
    StatusCode::OK
}

async fn receiver() -> (String, Receiver, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let r = Receiver {
        tx,
        flaky_failures: Arc::default(),
        release: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/cb/{name}", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/cb"), r, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a notification within 20 s")
        .expect("receiver open")
}

fn subscription(cb: &str, name: &str, objects: &[&str], ops: &[&str], token: &str) -> Value {
    json!({"clientName": name, "objectOperations": [{
        "objects": objects, "operations": ops,
        "callbackUrl": format!("{cb}/{name}"), "bearerToken": token}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_the_right_subscribers_with_their_tokens() {
    let db = TestDb::sqlite().await;
    let (server, base) = start(&db, |_| {}).await;
    let (cb, recv, mut rx) = receiver().await;
    let record = Record::default();
    let w = world(&base, &record).await;
    let pid = w.program["id"].clone();

    w.ven1
        .create(
            "/subscriptions",
            subscription(
                &cb,
                "ven1",
                &["EVENT"],
                &["CREATE", "UPDATE", "DELETE"],
                "ven1-hook-token",
            ),
        )
        .await;
    w.ven2
        .create(
            "/subscriptions",
            subscription(&cb, "ven2", &["EVENT"], &["CREATE"], "ven2-hook-token"),
        )
        .await;
    w.bl.create(
        "/subscriptions",
        subscription(&cb, "bl", &["REPORT"], &["CREATE"], "bl-hook-token"),
    )
    .await;

    // An event for the north group reaches VEN1 only.
    let ev =
        w.bl.create("/events", event_body(&pid, "north", Some(&["north"])))
            .await;
    let n = next(&mut rx).await;
    assert_eq!(n.path, "ven1");
    assert_eq!(n.auth.as_deref(), Some("Bearer ven1-hook-token"));
    assert_eq!(
        (n.body["objectType"].as_str(), n.body["operation"].as_str()),
        (Some("EVENT"), Some("CREATE"))
    );
    assert_eq!(n.body["object"], ev);
    assert_eq!(n.body["targets"], json!(["north"]));

    // An update and a delete of it: VEN1 hears both; VEN2 subscribed to CREATE only and
    // cannot see the event anyway.
    let (s, upd) =
        w.bl.send(
            Method::PUT,
            &format!("/events/{}", ev["id"].as_str().unwrap()),
            Some(event_body(&pid, "north v2", Some(&["north"]))),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
    let n = next(&mut rx).await;
    assert_eq!(
        (
            n.path.as_str(),
            n.body["operation"].as_str(),
            &n.body["object"]
        ),
        ("ven1", Some("UPDATE"), &upd)
    );
    w.bl.send(
        Method::DELETE,
        &format!("/events/{}", ev["id"].as_str().unwrap()),
        None,
    )
    .await;
    let n = next(&mut rx).await;
    assert_eq!(
        (n.path.as_str(), n.body["operation"].as_str()),
        ("ven1", Some("DELETE"))
    );

    // An untargeted event reaches both VENs.
    w.bl.create("/events", event_body(&pid, "all", None)).await;
    let mut paths = vec![next(&mut rx).await.path, next(&mut rx).await.path];
    paths.sort();
    assert_eq!(paths, ["ven1", "ven2"]);

    // A report reaches the BL's subscription.
    let ev2 =
        w.bl.create("/events", event_body(&pid, "south", Some(&["south"])))
            .await;
    assert_eq!(next(&mut rx).await.path, "ven2");
    let rep = w
        .ven2
        .create("/reports", report_body(&ev2["id"], "ven-south"))
        .await;
    let n = next(&mut rx).await;
    assert_eq!(
        (n.path.as_str(), n.auth.as_deref()),
        ("bl", Some("Bearer bl-hook-token"))
    );
    assert_eq!(n.body["object"], rep);

    // A callback that fails twice is retried until it accepts.
    w.ven3
        .create(
            "/subscriptions",
            subscription(&cb, "flaky", &["EVENT"], &["CREATE"], "t3"),
        )
        .await;
    w.bl.create("/events", event_body(&pid, "retry", None))
        .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut rx).await.path);
    }
    got.sort();
    assert_eq!(got, ["flaky", "ven1", "ven2"]);
    assert_eq!(
        recv.flaky_failures.load(Ordering::SeqCst),
        3,
        "two refusals and one success"
    );

    // A callback that does not answer: the API still answers while it hangs.
    w.ven3
        .create(
            "/subscriptions",
            subscription(&cb, "stuck", &["PROGRAM"], &["CREATE"], "t4"),
        )
        .await;
    let p =
        w.bl.create("/programs", json!({"programName": "while-stuck"}))
            .await;
    assert_eq!(p["programName"], "while-stuck");
    let p2 =
        w.bl.create("/programs", json!({"programName": "while-stuck-2"}))
            .await;
    assert_eq!(
        w.bl.ok(&format!("/programs/{}", p2["id"].as_str().unwrap()))
            .await,
        p2
    );
    // Released, the held deliveries complete.
    recv.release.notify_waiters();
    loop {
        recv.release.notify_waiters();
        let n = next(&mut rx).await;
        if n.path == "stuck" && n.body["object"]["programName"] == "while-stuck-2" {
            break;
        }
    }
    server.stop().await.unwrap();
}
