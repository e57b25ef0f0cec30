//! Durability of acknowledged telemetry: a real `switchyard serve` process takes bulk
//! readings over `POST /api/v1/telemetry` from several clients at once, is killed with
//! SIGKILL in the middle of the stream, and every reading it had acknowledged must be in the
//! database afterwards, exactly once. Also: a restarted server answers a re-sent
//! acknowledged batch with "all duplicates" (nothing stored twice), and a batch with one bad
//! reading is refused whole (422 naming it) with nothing written.

mod common;

use common::TestDb;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard::store::record::dynamic;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const TOKEN: &str = "durability-operator-token";
const CLIENTS: usize = 4;
const BATCH: usize = 250;

/// A `switchyard serve` child process, SIGKILLed when dropped.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn serve(db: &TestDb) -> Server {
    common::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env("SWITCHYARD_DATABASE_URL", &db.url)
        .env("SWITCHYARD_DATA_DIR", dir.path())
        .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHYARD_OPERATOR_TOKEN", TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
            && r.status().is_success()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("switchyard serve did not come up on {}", server.base);
}

fn now() -> i64 {
    switchyard::domain::now_epoch()
}

/// Batch `b` of client `c`: BATCH readings, each with a key no other batch uses.
fn batch(c: usize, b: usize, base: i64) -> Vec<Value> {
    (0..BATCH)
        .map(|i| {
            json!({
                "source_id": format!("dur-{c}-{}", i % 50),
                "source_kind": "mqtt",
                "measurand": "active_power_w",
                "instant": base - (b * (BATCH / 50) + i / 50) as i64,
                "value": (c * 1_000_000 + b * 1000 + i) as f64 + 0.25,
                "quality": "measured",
            })
        })
        .collect()
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    readings: &[Value],
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/api/v1/telemetry"))
        .bearer_auth(TOKEN)
        .json(&json!({ "readings": readings }))
        .send()
        .await
}

/// Every stored reading of the test's sources: (source, instant) -> (value, copies).
async fn stored(db: &TestDb) -> HashMap<(String, i64), (f64, i64)> {
    let rows = dynamic(
        "SELECT source_id, instant, MIN(value) AS value, COUNT(*) AS copies FROM readings \
         WHERE source_id LIKE 'dur-%' AND measurand = 'active_power_w' \
         GROUP BY source_id, instant"
            .into(),
    )
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    use sqlx::Row;
    rows.iter()
        .map(|r| {
            (
                (r.get::<String, _>("source_id"), r.get::<i64, _>("instant")),
                (r.get::<f64, _>("value"), r.get::<i64, _>("copies")),
            )
        })
        .collect()
}

async fn acknowledged_readings_survive_kill_9(db: TestDb) {
    common::install_tls_provider();
    let server = serve(&db).await;
    let base = now() - 10;
    let acked: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, url, acked) = (client.clone(), server.base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0.. {
                let readings = batch(c, b, base);
                match post(&client, &url, &readings).await {
                    Ok(r) if r.status() == 200 => {
                        let receipt: Value = r.json().await.unwrap();
                        assert_eq!(receipt["accepted"], BATCH);
                        assert_eq!(receipt["inserted"], BATCH, "{receipt}");
                        acked.lock().unwrap().push(readings);
                    }
                    Ok(r) => panic!(
                        "unexpected answer {}: {}",
                        r.status(),
                        r.text().await.unwrap()
                    ),
                    // The server is gone: this batch was never acknowledged (it may or may
                    // not have been committed); b + 1 batches were sent.
                    Err(_) => return b + 1,
                }
            }
            unreachable!()
        }));
    }
    // Let the stream run, then kill the process with requests in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "too few batches acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no checkpoint, no flush
    server.child.wait().unwrap();
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} batches acknowledged, {} sent (some in flight) before the kill",
        acked.len(),
        sent
    );

    let rows = stored(&db).await;
    for r in acked.iter().flatten() {
        let key = (
            r["source_id"].as_str().unwrap().to_string(),
            r["instant"].as_i64().unwrap(),
        );
        let (value, copies) = rows
            .get(&key)
            .unwrap_or_else(|| panic!("acknowledged reading {r} lost after kill -9"));
        assert_eq!(*copies, 1, "{r} stored {copies} times");
        assert_eq!(*value, r["value"].as_f64().unwrap(), "{r}");
    }
    // Nothing appears that was not sent, and no reading is counted twice.
    assert!(
        rows.len() <= sent * BATCH,
        "{} rows for {} sent",
        rows.len(),
        sent * BATCH
    );
    assert!(rows.values().all(|(_, copies)| *copies == 1));

    // After a restart, an acknowledged batch sent again (a client that lost the answer)
    // is all duplicates: stored once, not double-counted.
    let server = serve(&db).await;
    let again = &acked[0];
    let r = post(&client, &server.base, again).await.unwrap();
    assert_eq!(r.status(), 200);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(
        (receipt["inserted"].as_u64(), receipt["duplicates"].as_u64()),
        (Some(0), Some(BATCH as u64)),
        "{receipt}"
    );
    assert_eq!(stored(&db).await.len(), rows.len());
}

async fn a_batch_with_one_bad_reading_stores_nothing(db: TestDb) {
    common::install_tls_provider();
    let server = serve(&db).await;
    let client = reqwest::Client::new();
    let t = now() - 100;
    let good = |i: i64| {
        json!({"source_id": "dur-bad", "source_kind": "mqtt", "measurand": "active_power_w",
               "instant": t + i, "value": 1.5, "quality": "measured"})
    };
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        // Far in the future: a wrong device clock.
        (
            json!({"source_id": "dur-bad", "source_kind": "mqtt", "measurand": "active_power_w",
                   "instant": now() + 3 * 86_400, "value": 1.0, "quality": "measured"}),
            422,
            "device clock",
            Some("readings[2].instant"),
        ),
        // An unknown measurand (a unit the engine does not know).
        (
            json!({"source_id": "dur-bad", "source_kind": "mqtt", "measurand": "watts",
                   "instant": t, "value": 1.0, "quality": "measured"}),
            422,
            "watts",
            Some("readings[2].measurand"),
        ),
        // No source.
        (
            json!({"source_id": " ", "source_kind": "mqtt", "measurand": "active_power_w",
                   "instant": t, "value": 1.0, "quality": "measured"}),
            422,
            "no source id",
            Some("readings[2].source_id"),
        ),
        // Before 2000: a device that lost its clock.
        (
            json!({"source_id": "dur-bad", "source_kind": "mqtt", "measurand": "active_power_w",
                   "instant": 5, "value": 1.0, "quality": "measured"}),
            422,
            "2000-01-01",
            Some("readings[2].instant"),
        ),
        // A status code that names no state (operating states are 1 to 8).
        (
            json!({"source_id": "dur-bad", "source_kind": "mqtt", "measurand": "operating_state",
                   "instant": t, "value": 9.0, "quality": "measured"}),
            422,
            "9 is not a state code (expected 1 off,",
            Some("readings[2].value"),
        ),
    ];
    for (bad, status, detail, field) in cases {
        let r = post(&client, &server.base, &[good(0), good(1), bad.clone()])
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{bad}");
        let problem: Value = r.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
        assert_eq!(problem["field"].as_str(), field, "{problem}");
        assert!(
            stored(&db).await.is_empty(),
            "a refused batch wrote something"
        );
    }
    // A non-finite value cannot be written in JSON at all: refused as malformed.
    let r = client
        .post(format!("{}/api/v1/telemetry", server.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"readings":[{{"source_id":"dur-bad","source_kind":"mqtt","measurand":"active_power_w","instant":{t},"value":NaN,"quality":"measured"}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Without a token nothing is accepted either.
    let r = client
        .post(format!("{}/api/v1/telemetry", server.base))
        .json(&json!({ "readings": [good(0)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(stored(&db).await.is_empty());

    // Duplicates inside one batch are stored once.
    let r = post(&client, &server.base, &[good(0), good(0), good(1)])
        .await
        .unwrap();
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(
        (
            receipt["accepted"].as_u64(),
            receipt["inserted"].as_u64(),
            receipt["duplicates"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{receipt}"
    );
    assert_eq!(stored(&db).await.len(), 2);
}

on_both_backends!(
    acknowledged_readings_survive_kill_9,
    a_batch_with_one_bad_reading_stores_nothing,
);
