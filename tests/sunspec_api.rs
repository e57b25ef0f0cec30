//! The SunSpec poller's state in the operator API, over real sockets: `switchyard serve`
//! polls the SunSpec simulator (a live unit and a unit it refuses) and a listener that
//! never answers, and `GET /api/v1/sunspec/devices` must show what an engineer on call
//! needs: the live device healthy with its status and readings, the refused one as
//! `refused`, the dead one as `link` with failures counting up and the backoff doubling.
//! Runs on SQLite and PostgreSQL (the readings go to the store).

mod common;

use common::api::ApiClient;
use common::{OPERATOR_TOKEN, READER_TOKEN, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard::protocol::sunspec::config::{SunSpecConfig, SunSpecDevice};
use switchyard::protocol::sunspec::sim::{SimConfig, Simulator};
use switchyard::telemetry;
use tokio::net::TcpListener;

on_both_backends!(
    the_api_shows_a_healthy_device_a_refusing_unit_and_a_dead_link_backing_off,
    without_sunspec_the_list_is_empty_and_a_device_is_not_found,
);

async fn simulator() -> SocketAddr {
    Simulator::new(&SimConfig::default())
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A TCP listener that accepts connections and never answers: a device whose link is
/// up at the TCP level but silent, the usual failure in the field.
async fn silent() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

/// A device polled every second without jitter (so the backoff is exact); `timeout_ms`
/// short for the silent one (the test waits for three of its timeouts), generous for the
/// simulator so that a loaded machine does not make the live device fail.
fn device(source_id: &str, address: SocketAddr, unit: u8, timeout_ms: u64) -> SunSpecDevice {
    SunSpecDevice {
        source_id: source_id.into(),
        address,
        unit,
        interval_seconds: 1,
        jitter_ms: 0,
        timeout_ms,
    }
}

fn item<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["source_id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

async fn the_api_shows_a_healthy_device_a_refusing_unit_and_a_dead_link_backing_off(db: TestDb) {
    let live = simulator().await;
    let dead = silent().await;
    let section = SunSpecConfig {
        enabled: true,
        devices: vec![
            device("inv", live, 1, 3000),
            device("refusing", live, 9, 3000),
            device("dead", dead, 1, 300),
        ],
        ..SunSpecConfig::default()
    };
    let started = switchyard::domain::now_epoch();
    let (server, base) =
        common::start_server_with(&db, 64 * 1024, move |c| c.sunspec = section).await;
    let api = ApiClient::new(base);

    // Watch the list as a dashboard would, noting the dead device's state after each of
    // its failures, until it has failed three times in a row.
    let mut dead_seen: BTreeMap<u64, Value> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let list = loop {
        let list = api.ok_as(READER_TOKEN, "/api/v1/sunspec/devices").await;
        let d = item(&list, "dead");
        if let Some(n) = d["consecutive_failures"].as_u64().filter(|n| *n > 0) {
            dead_seen.entry(n).or_insert_with(|| d.clone());
        }
        let inv = item(&list, "inv");
        let inv_ok = inv["health"] == "ok" && inv["last_stored"].is_u64();
        if dead_seen.len() >= 3 && inv_ok {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 25 s: {list:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(list["enabled"], true);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["inv", "refusing", "dead"], "configuration order");

    // The live device: healthy, its decoded status, readings counted and in the store.
    let inv = item(&list, "inv");
    assert_eq!(inv["health"], "ok", "{inv:#}");
    assert_eq!(inv["gateway"], live.to_string());
    assert_eq!(
        (inv["unit"].as_u64(), inv["interval_ms"].as_u64()),
        (Some(1), Some(1000))
    );
    assert_eq!(inv["consecutive_failures"], 0);
    assert_eq!(inv["backoff_ms"], Value::Null);
    assert_eq!(inv["last_failure"], Value::Null);
    assert_eq!(inv["status"]["connected"], true, "{inv:#}");
    assert!(inv["status"]["operating_state"].is_string(), "{inv:#}");
    assert!(inv["status"]["charge_status"].is_string(), "{inv:#}");
    let at = inv["last_success"].as_i64().unwrap();
    assert!(
        at >= started && at <= list["as_of"].as_i64().unwrap(),
        "{inv:#}"
    );
    let due = inv["next_poll_due"].as_i64().unwrap();
    assert!(
        (at..=at + 2).contains(&due),
        "next poll one interval on: {inv:#}"
    );
    let readings = inv["last_readings"].as_u64().unwrap();
    assert!(readings >= 5, "W, V, Hz, Wh, SoC at least: {inv:#}");
    assert!(inv["last_stored"].as_u64().unwrap() <= readings);
    assert_eq!(inv["store_error"], Value::Null);
    // What the API says the last poll produced is what the store holds for that instant
    // (stored by this poll, or by an earlier one in the same second).
    let stored = telemetry::query(&db.store, "inv", None, at, at + 1)
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, readings, "{stored:?}");

    // The unit the gateway does not serve: the device's refusal, not a link failure.
    let refusing = item(&list, "refusing");
    assert_eq!(refusing["health"], "failing");
    assert_eq!(refusing["last_failure"]["kind"], "refused", "{refusing:#}");
    let error = refusing["last_failure"]["error"].as_str().unwrap();
    assert!(error.contains("unit 9"), "{error}");
    assert_eq!(refusing["last_success"], Value::Null);
    assert_eq!(refusing["status"], Value::Null);

    // The silent device: link failures counting up, the backoff doubling from the 1 s
    // interval, the next poll due one backoff after the failure.
    for (n, backoff) in [(1u64, 2000u64), (2, 4000), (3, 8000)] {
        let d = &dead_seen[&n];
        assert_eq!(d["health"], "failing");
        assert_eq!(d["last_failure"]["kind"], "link", "{d:#}");
        assert_eq!(d["timeout_ms"], 300);
        let error = d["last_failure"]["error"].as_str().unwrap();
        assert!(error.contains(&dead.to_string()), "{error}");
        assert_eq!(
            d["backoff_ms"].as_u64(),
            Some(backoff),
            "after {n} failures: {d:#}"
        );
        let failed_at = d["last_failure"]["at"].as_i64().unwrap();
        let wait = d["next_poll_due"].as_i64().unwrap() - failed_at;
        let b = (backoff / 1000) as i64;
        assert!(
            (b..=b + 1).contains(&wait),
            "due {wait} s after the failure: {d:#}"
        );
        assert_eq!(d["polls_failed"].as_u64(), Some(n));
        assert_eq!(d["polls_ok"], 0);
    }
    assert!(
        telemetry::query(&db.store, "dead", None, started - 5, started + 600)
            .await
            .unwrap()
            .is_empty()
    );

    // One device, and the filter.
    let one = api
        .ok_as(READER_TOKEN, "/api/v1/sunspec/devices/refusing")
        .await;
    assert_eq!(one["source_id"], "refusing");
    assert_eq!(one["last_failure"]["kind"], "refused");
    let failing = api.ok("/api/v1/sunspec/devices?health=failing").await;
    let ids: Vec<&str> = failing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["refusing", "dead"]);

    // Bad requests are named precisely.
    let (s, p) = api
        .call(Method::GET, "/api/v1/sunspec/devices/nope", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    assert_eq!(p["type"], "urn:switchyard:problem:not-found");
    assert!(p["detail"].as_str().unwrap().contains("'nope'"), "{p}");
    let (s, p) = api
        .call(Method::GET, "/api/v1/sunspec/devices?health=sick", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["field"], "health");
    let (s, p) = api
        .call(Method::GET, "/api/v1/sunspec/devices?limit=5", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["field"], "limit");

    // Who may look: any token reads (a read_only token is enough); nobody without one.
    // There is nothing to write: every other method is 405 whatever the token.
    let (s, p) = api
        .send(None, Method::GET, "/api/v1/sunspec/devices", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}");
    assert!(p.get("items").is_none(), "no device state leaks: {p}");
    let (s, p) = api
        .send(
            Some("not-a-token"),
            Method::GET,
            "/api/v1/sunspec/devices/inv",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{p}");
    assert!(p.get("source_id").is_none(), "no device state leaks: {p}");
    for (token, method, path) in [
        (READER_TOKEN, Method::POST, "/api/v1/sunspec/devices"),
        (
            OPERATOR_TOKEN,
            Method::DELETE,
            "/api/v1/sunspec/devices/dead",
        ),
    ] {
        let (s, p) = api.call_as(token, method.clone(), path, None).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {p}");
    }
    assert_eq!(
        api.ok("/api/v1/sunspec/devices/dead").await["source_id"],
        "dead",
        "still listed after the refused DELETE"
    );

    // Both routes are in the OpenAPI document with their schema.
    let (_, doc) = api.send(None, Method::GET, "/openapi.json", None).await;
    assert!(doc["paths"]["/api/v1/sunspec/devices"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/sunspec/devices/{key}"]["get"].is_object());
    let schemas = &doc["components"]["schemas"];
    let schema = &schemas["DeviceState"]["properties"];
    for field in [
        "last_failure",
        "consecutive_failures",
        "backoff_ms",
        "next_poll_due",
        "status",
    ] {
        assert!(
            schema[field].is_object(),
            "{field} undocumented: {schema:#}"
        );
    }
    // Every schema the list refers to, directly or not, is in the document.
    let mut todo = vec![schemas["SunSpecDevices"].clone()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let name = r.trim_start_matches("#/components/schemas/").to_string();
                    let target = &schemas[&name];
                    assert!(target.is_object(), "{r} is referred to but not defined");
                    if seen.insert(name) {
                        todo.push(target.clone());
                    }
                }
                todo.extend(m.into_values());
            }
            Value::Array(a) => todo.extend(a),
            _ => {}
        }
    }
    for name in [
        "DeviceState",
        "DeviceStatus",
        "LastFailure",
        "FailureKind",
        "Health",
    ] {
        assert!(
            seen.contains(name),
            "{name} not reached from the list: {seen:?}"
        );
    }
    server.stop().await.unwrap();
}

async fn without_sunspec_the_list_is_empty_and_a_device_is_not_found(db: TestDb) {
    let (server, base) = common::start_server_with(&db, 64 * 1024, |_| {}).await;
    let api = ApiClient::new(base);
    let list = api.ok_as(READER_TOKEN, "/api/v1/sunspec/devices").await;
    assert_eq!(list["enabled"], false, "{list}");
    assert_eq!(list["items"], serde_json::json!([]));
    let (s, p) = api
        .call(Method::GET, "/api/v1/sunspec/devices/inv", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("not enabled"),
        "the detail says why: {p}"
    );
    let (s, _) = api
        .send(None, Method::GET, "/api/v1/sunspec/devices", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    server.stop().await.unwrap();
}
