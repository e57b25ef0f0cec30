//! Telemetry quality and live aggregates through the operator API over a real socket, on
//! SQLite and PostgreSQL: the gap and lateness report (inferred and configured intervals,
//! a silent device of a group, a late reading and how late), stored interval aggregates
//! revised by late readings with an audit row naming the reading, a group's live estimate
//! from the store with every estimator (schedule-aware following a control in force), and
//! bad requests refused with the parameter named and nothing written.

mod common;

use common::api::ApiClient;
use common::{OPERATOR_TOKEN, READER_TOKEN, TestDb, start_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::telemetry::status::OperatingState;
use switchyard::telemetry::{Measurand, Quality, Reading, SourceKind, insert_batch};

on_both_backends!(
    gaps_and_lateness_report,
    late_readings_revise_aggregates_with_an_audit,
    group_estimate_from_the_store,
    bad_requests_are_refused_and_change_nothing,
    a_status_history_aggregates_to_the_state_that_held_longest,
);

/// A fixed past hour, so that every interval is closed and every report deterministic.
const T0: i64 = 1_750_000_000 - 1_750_000_000 % 3600;

impl ApiClient {
    /// Asserts a 4xx problem naming `field`.
    async fn refused(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        field: &str,
    ) -> Value {
        let (s, v) = self.send(Some(token), method.clone(), path, body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        if !field.is_empty() {
            assert_eq!(v["field"], field, "{method} {path}: {v}");
        }
        v
    }
}

fn power(source: &str, instant: i64, value: f64) -> Reading {
    Reading {
        source_id: source.into(),
        source_kind: SourceKind::Mqtt,
        measurand: Measurand::ActivePower,
        instant,
        value,
        quality: Quality::Measured,
    }
}

/// Stores readings as if each arrived `delay` seconds after it was measured.
async fn arrive(db: &TestDb, readings: &[Reading], delay: i64) {
    for r in readings {
        insert_batch(&db.store, std::slice::from_ref(r), r.instant + delay)
            .await
            .unwrap();
    }
}

async fn setup(db: &TestDb) -> (switchyard::app::RunningServer, ApiClient) {
    let (server, base) = start_server(db, 64 * 1024).await;
    let api = ApiClient::new(base);
    api.created(
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    api.created("/api/v1/sites", json!({"id": "s1", "account_id": "a1", "territory": "T", "interconnection_type": "nem", "grid_location": {"feeder": "F1"}})).await;
    for i in 1..=3 {
        api.created("/api/v1/ders", json!({"id": format!("d{i}"), "site_id": "s1", "der_class": "battery", "manufacturer": "M", "model": "B", "serial": format!("{i}"), "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"})).await;
    }
    api.created(
        "/api/v1/groups",
        json!({"id": "fleet", "name": "Fleet", "der_class": "battery"}),
    )
    .await;
    (server, api)
}

async fn gaps_and_lateness_report(db: TestDb) {
    let (server, api) = setup(&db).await;
    // d1 every minute for an hour, except T0+600..T0+720 (3 readings never came), and the
    // reading of T0+1200 arrived 300 s late; d3 every 10 s, on time; d2 says nothing.
    let d1: Vec<Reading> = (0..60)
        .map(|k| T0 + 60 * k)
        .filter(|t| !(T0 + 600..=T0 + 720).contains(t))
        .map(|t| power("d1", t, 1000.0))
        .collect();
    let (late, on_time): (Vec<Reading>, Vec<Reading>) =
        d1.into_iter().partition(|r| r.instant == T0 + 1200);
    arrive(&db, &on_time, 2).await;
    arrive(&db, &late, 300).await;
    let d3: Vec<Reading> = (0..360).map(|k| power("d3", T0 + 10 * k, 50.0)).collect();
    insert_batch(&db.store, &d3, T0 + 3601).await.unwrap();

    let range = format!("from={T0}&to={}", T0 + 3600);
    let v = api
        .ok_as(READER_TOKEN, &format!("/api/v1/telemetry/gaps?{range}"))
        .await;
    let sources = v["sources"].as_array().unwrap();
    let ids: Vec<&str> = sources
        .iter()
        .map(|s| s["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["d1", "d3"],
        "a silent source nobody expects is not listed"
    );
    let s1 = &sources[0];
    assert_eq!(s1["expected_interval_s"], 60);
    assert_eq!(s1["interval_origin"], "inferred");
    assert_eq!(s1["readings"], 57);
    assert_eq!(
        s1["gaps"],
        json!([{"from": T0 + 600, "to": T0 + 780, "missing_readings": 3}])
    );
    assert_eq!(s1["late_readings"], 1);
    assert_eq!(s1["max_lateness_s"], 300);
    assert_eq!(
        s1["late"],
        json!([{"instant": T0 + 1200, "received_at": T0 + 1500, "lateness_s": 300}])
    );
    let s3 = &sources[1];
    assert_eq!(s3["expected_interval_s"], 10);
    assert_eq!(s3["gaps"], json!([]));
    // d3's batch arrived up to an hour after the readings: late, by at most 3601 s.
    assert_eq!(s3["max_lateness_s"], 3601);
    assert_eq!(v["missing_readings"], 3);

    // By group: d2 is listed; with no history its interval is unknown until configured.
    let v = api
        .ok(&format!(
            "/api/v1/telemetry/gaps?{range}&group=fleet&late_after_s=4000"
        ))
        .await;
    let d2 = &v["sources"][1];
    assert_eq!(d2["source_id"], "d2");
    assert_eq!(d2["interval_origin"], "unknown");
    assert_eq!(d2["readings"], 0);
    assert_eq!(v["sources"][2]["late_readings"], 0, "late_after_s applies");

    // A read-only token cannot configure intervals, and nothing changes.
    api.refused(
        READER_TOKEN,
        Method::PUT,
        "/api/v1/telemetry/sources/d2/interval",
        Some(json!({"expected_interval_s": 300})),
        StatusCode::FORBIDDEN,
        "",
    )
    .await;
    let (s, v) = api
        .send(
            Some(OPERATOR_TOKEN),
            Method::PUT,
            "/api/v1/telemetry/sources/d2/interval",
            Some(json!({"expected_interval_s": 300})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Configured: d2 is expected, and silent for the whole hour (12 readings missing), in
    // the plain report too.
    let v = api
        .ok(&format!(
            "/api/v1/telemetry/gaps?{range}&problems_only=true"
        ))
        .await;
    let ids: Vec<&str> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["d1", "d2", "d3"]);
    assert_eq!(v["sources"][1]["interval_origin"], "configured");
    assert_eq!(
        v["sources"][1]["gaps"],
        json!([{"from": T0, "to": T0 + 3600, "missing_readings": 12}])
    );
    // problems_only leaves out a source that is fine.
    let v = api
        .ok(&format!(
            "/api/v1/telemetry/gaps?{range}&problems_only=true&late_after_s=4000&source_id=d3"
        ))
        .await;
    assert_eq!(v["sources"], json!([]));
    server.stop().await.unwrap();
}

async fn a_status_history_aggregates_to_the_state_that_held_longest(db: TestDb) {
    let (server, api) = setup(&db).await;
    let state = |instant: i64, s: OperatingState| Reading {
        measurand: Measurand::OperatingState,
        value: s.code(),
        ..power("d1", instant, 0.0)
    };
    // Running, a one-minute fault at T0+200, running again, then a fault from T0+400 that
    // lasts until the device falls silent (held for at most max_gap_s = 600 s).
    let history = [
        state(T0, OperatingState::Running),
        state(T0 + 200, OperatingState::Fault),
        state(T0 + 260, OperatingState::Running),
        state(T0 + 400, OperatingState::Fault),
    ];
    arrive(&db, &history, 1).await;
    let body = json!({"source_id": "d1", "measurand": "operating_state", "grid": "5m", "from": T0, "to": T0 + 1500, "max_gap_s": 600});
    let (s, rows) = api
        .send(
            Some(OPERATOR_TOKEN),
            Method::POST,
            "/api/v1/telemetry/aggregates",
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    let got: Vec<(Option<f64>, &str, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_f64(),
                r["quality"].as_str().unwrap(),
                r["coverage_s"].as_i64().unwrap(),
            )
        })
        .collect();
    let (run, fault) = (
        Some(OperatingState::Running.code()),
        Some(OperatingState::Fault.code()),
    );
    assert_eq!(
        got,
        vec![
            // 240 s running beat 60 s of fault: a state, never an average of codes.
            (run, "measured", 300),
            // 100 s running, 200 s fault.
            (fault, "measured", 300),
            (fault, "measured", 300),
            // The fault is held to T0+1000 and no further.
            (fault, "estimated", 100),
            (None, "missing", 0),
        ]
    );
    server.stop().await.unwrap();
}

async fn late_readings_revise_aggregates_with_an_audit(db: TestDb) {
    let (server, api) = setup(&db).await;
    // d1 reads 1000 W every minute for half an hour, but T0+360..T0+1020 is missing.
    let readings: Vec<Reading> = (0..30)
        .map(|k| T0 + 60 * k)
        .filter(|t| !(T0 + 360..=T0 + 1020).contains(t))
        .map(|t| power("d1", t, 1000.0))
        .collect();
    arrive(&db, &readings, 1).await;
    let body = json!({"source_id": "d1", "measurand": "active_power_w", "grid": "5m", "from": T0, "to": T0 + 1800, "max_gap_s": 120});
    let (s, rows) = api
        .send(
            Some(OPERATOR_TOKEN),
            Method::POST,
            "/api/v1/telemetry/aggregates",
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    let rows = rows.as_array().unwrap().clone();
    assert_eq!(rows.len(), 6);
    assert_eq!(
        (rows[0]["value"].as_f64(), rows[0]["quality"].as_str()),
        (Some(1000.0), Some("measured"))
    );
    // T0+300..600 holds one isolated reading; T0+600..900 nothing at all.
    assert_eq!(
        (
            rows[1]["value"].as_f64(),
            rows[1]["quality"].as_str(),
            rows[1]["samples"].as_i64()
        ),
        (Some(1000.0), Some("estimated"), Some(1))
    );
    assert_eq!(
        (rows[2]["value"].clone(), rows[2]["quality"].as_str()),
        (Value::Null, Some("missing"))
    );
    assert!(rows.iter().all(|r| r["revision"] == 0));

    // On-time data for another source, and a repeat of what is stored, revise nothing.
    arrive(&db, &[power("d2", T0 + 400, 5.0)], 1).await;
    arrive(&db, &readings[..3], 1).await;
    let v = api.ok_as(READER_TOKEN, "/api/v1/telemetry/revisions").await;
    assert_eq!(v["items"], json!([]));

    // Four readings of 4000 W from T0+360 arrive an hour late.
    let late: Vec<Reading> = (0..4)
        .map(|k| power("d1", T0 + 360 + 60 * k, 4000.0))
        .collect();
    let received = T0 + 4000;
    insert_batch(&db.store, &late, received).await.unwrap();

    let v = api
        .ok_as(READER_TOKEN, "/api/v1/telemetry/revisions?source_id=d1")
        .await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    let r = &items[0];
    // 300..360 ramps 1000 -> 4000 (avg 2500 over 60 s), 360..540 holds 4000: 3625 W over
    // the 240 s covered.
    assert_eq!(r["interval_start"], T0 + 300);
    assert_eq!(r["grid"], "5m");
    assert_eq!(r["revision"], 1);
    assert_eq!(r["old_value"], 1000.0);
    assert!(
        (r["new_value"].as_f64().unwrap() - 3625.0).abs() < 1e-6,
        "{r}"
    );
    assert_eq!(
        (r["old_samples"].as_i64(), r["new_samples"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(r["cause_instant"], T0 + 360);
    assert_eq!(r["cause_value"], 4000.0);
    assert_eq!(r["cause_received_at"], received);
    assert_eq!(r["cause_readings"], 4);
    assert_eq!(r["revised_at"], received);

    // The stored aggregate moved with it; computing again does not overwrite it.
    let (s, rows) = api
        .send(
            Some(OPERATOR_TOKEN),
            Method::POST,
            "/api/v1/telemetry/aggregates",
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows[1]["revision"], 1);
    assert!((rows[1]["value"].as_f64().unwrap() - 3625.0).abs() < 1e-6);
    let v = api
        .ok(&format!("/api/v1/telemetry/aggregates?source_id=d1&measurand=active_power_w&grid=5m&from={}&to={}", T0 + 300, T0 + 600))
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["samples"], 5);

    // The same late readings delivered again change nothing.
    insert_batch(&db.store, &late, received + 60).await.unwrap();
    let v = api.ok_as(READER_TOKEN, "/api/v1/telemetry/revisions").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    server.stop().await.unwrap();
}

async fn group_estimate_from_the_store(db: TestDb) {
    let (server, api) = setup(&db).await;
    let at = T0 + 1000;
    // Two batteries discharging (negative: out of the site), read every minute; d3 silent.
    arrive(
        &db,
        &[
            power("d1", at - 90, -3000.0),
            power("d1", at - 30, -3000.0),
            power("d2", at - 80, -1000.0),
            power("d2", at - 20, -1000.0),
        ],
        1,
    )
    .await;
    let path = |e: &str| format!("/api/v1/groups/fleet/estimate?estimator={e}&at={at}");
    let v = api.ok_as(READER_TOKEN, &path("latest-sum")).await;
    assert_eq!(v["value_w"], -4000.0);
    assert_eq!(
        (
            v["members"].as_u64(),
            v["reporting"].as_u64(),
            v["commanded"].as_u64()
        ),
        (Some(3), Some(2), Some(0))
    );
    assert_eq!(v["read_interval_s"], 60.0);
    assert_eq!(v["read_interval_inferred"], true);
    assert!(
        v["low_w"].as_f64().unwrap() <= -4000.0 && v["high_w"].as_f64().unwrap() >= -4000.0,
        "{v}"
    );
    // A silent member widens the band by its rating.
    assert!(
        v["high_w"].as_f64().unwrap() - v["low_w"].as_f64().unwrap() >= 5000.0 - 1e-6,
        "{v}"
    );
    for e in [
        "subset-latest",
        "ramp-adjusted",
        "timeshifted",
        "schedule-aware",
    ] {
        let v = api.ok_as(READER_TOKEN, &path(e)).await;
        assert_eq!(v["estimator"], e);
        let (lo, val, hi) = (
            v["low_w"].as_f64().unwrap(),
            v["value_w"].as_f64().unwrap(),
            v["high_w"].as_f64().unwrap(),
        );
        assert!(lo <= val && val <= hi, "{e}: {v}");
    }
    // Timeshifted describes an instant in the past.
    let v = api.ok_as(READER_TOKEN, &path("timeshifted")).await;
    assert!(v["describes_at"].as_f64().unwrap() < at as f64);

    // d1 was told to discharge 5 kW ten seconds ago (after its last reading): schedule-aware
    // follows the command, latest-sum does not.
    api.created("/api/v1/control-programs", json!({"id": "p-d1", "name": "d1 dispatch", "primacy": 1, "target_kind": "der", "target_id": "d1"})).await;
    api.created("/api/v1/controls", json!({"program_id": "p-d1", "start": at - 10, "duration_s": 3600, "modes": {"fixed_w": 5000.0}})).await;
    let v = api.ok_as(READER_TOKEN, &path("schedule-aware")).await;
    assert_eq!(v["commanded"], 1);
    assert!(
        (v["value_w"].as_f64().unwrap() - -6000.0).abs() < 1.0,
        "{v}"
    );
    let v = api.ok_as(READER_TOKEN, &path("latest-sum")).await;
    assert_eq!(v["value_w"], -4000.0);
    assert!(
        v["low_w"].as_f64().unwrap() <= -6000.0 + 1e-6,
        "the band reaches the command's target: {v}"
    );
    server.stop().await.unwrap();
}

async fn bad_requests_are_refused_and_change_nothing(db: TestDb) {
    let (server, api) = setup(&db).await;
    arrive(&db, &[power("d1", T0, 1.0), power("d1", T0 + 60, 1.0)], 1).await;
    let r = READER_TOKEN;
    let o = OPERATOR_TOKEN;
    let bad = StatusCode::BAD_REQUEST;
    // Gap report.
    let v = api
        .refused(
            r,
            Method::GET,
            &format!("/api/v1/telemetry/gaps?from={}&to={T0}", T0 + 60),
            None,
            bad,
            "to",
        )
        .await;
    assert!(v["detail"].as_str().unwrap().contains("ends"), "{v}");
    api.refused(
        r,
        Method::GET,
        &format!("/api/v1/telemetry/gaps?to={T0}"),
        None,
        bad,
        "from",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!("/api/v1/telemetry/gaps?from=yesterday&to={T0}"),
        None,
        bad,
        "from",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!("/api/v1/telemetry/gaps?from={T0}&to={}", T0 + 40 * 86_400),
        None,
        bad,
        "to",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!(
            "/api/v1/telemetry/gaps?from={T0}&to={}&interval_s=0",
            T0 + 60
        ),
        None,
        bad,
        "interval_s",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!("/api/v1/telemetry/gaps?from={T0}&to={}&colour=red", T0 + 60),
        None,
        bad,
        "colour",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!("/api/v1/telemetry/gaps?from={T0}&to={}&group=nope", T0 + 60),
        None,
        StatusCode::NOT_FOUND,
        "",
    )
    .await;
    let (s, _) = api
        .send(
            None,
            Method::GET,
            &format!("/api/v1/telemetry/gaps?from={T0}&to={}", T0 + 60),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    api.refused(
        o,
        Method::PUT,
        "/api/v1/telemetry/sources/d1/interval",
        Some(json!({"expected_interval_s": -5})),
        bad,
        "expected_interval_s",
    )
    .await;

    // Aggregates: nothing is stored by a refused computation.
    let agg = |grid: &str, from: i64, to: i64| json!({"source_id": "d1", "measurand": "active_power_w", "grid": grid, "from": from, "to": to});
    let path = "/api/v1/telemetry/aggregates";
    api.refused(
        r,
        Method::POST,
        path,
        Some(agg("5m", T0, T0 + 600)),
        StatusCode::FORBIDDEN,
        "",
    )
    .await;
    api.refused(
        o,
        Method::POST,
        path,
        Some(agg("5m", T0 + 60, T0 + 600)),
        bad,
        "from",
    )
    .await;
    api.refused(
        o,
        Method::POST,
        path,
        Some(agg("5m", T0 + 600, T0)),
        bad,
        "to",
    )
    .await;
    api.refused(
        o,
        Method::POST,
        path,
        Some(agg("2m", T0, T0 + 600)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "grid",
    )
    .await;
    api.refused(
        o,
        Method::POST,
        path,
        Some(agg("1s", T0, T0 + 2_000_000)),
        bad,
        "to",
    )
    .await;
    api.refused(o, Method::POST, path, Some(json!({"source_id": "d1", "measurand": "watts", "grid": "5m", "from": T0, "to": T0 + 600})), StatusCode::UNPROCESSABLE_ENTITY, "measurand").await;
    let stored = api
        .ok(&format!(
            "{path}?source_id=d1&measurand=active_power_w&grid=5m&from={T0}&to={}",
            T0 + 3600
        ))
        .await;
    assert_eq!(stored, json!([]));
    api.refused(
        r,
        Method::GET,
        &format!(
            "{path}?source_id=d1&measurand=active_power_w&grid=7m&from={T0}&to={}",
            T0 + 60
        ),
        None,
        bad,
        "grid",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!("{path}?source_id=d1&grid=5m&from={T0}&to={}", T0 + 60),
        None,
        bad,
        "measurand",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        &format!("/api/v1/telemetry/revisions?from={}&to={T0}", T0 + 1),
        None,
        bad,
        "to",
    )
    .await;

    // Estimates.
    let v = api
        .refused(
            r,
            Method::GET,
            "/api/v1/groups/fleet/estimate?estimator=magic",
            None,
            bad,
            "estimator",
        )
        .await;
    assert!(
        v["detail"].as_str().unwrap().contains("schedule-aware"),
        "lists the estimators: {v}"
    );
    api.refused(
        r,
        Method::GET,
        "/api/v1/groups/nope/estimate",
        None,
        StatusCode::NOT_FOUND,
        "key",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        "/api/v1/groups/fleet/estimate?compliance=2",
        None,
        bad,
        "compliance",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        "/api/v1/groups/fleet/estimate?read_interval_s=0",
        None,
        bad,
        "read_interval_s",
    )
    .await;
    api.refused(
        r,
        Method::GET,
        "/api/v1/groups/fleet/estimate?latency_s=soon",
        None,
        bad,
        "latency_s",
    )
    .await;

    // The document describes every new endpoint.
    let (_, doc) = api.send(None, Method::GET, "/openapi.json", None).await;
    for p in [
        "/api/v1/telemetry/gaps",
        "/api/v1/telemetry/aggregates",
        "/api/v1/telemetry/revisions",
        "/api/v1/telemetry/sources/{key}/interval",
        "/api/v1/groups/{key}/estimate",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from /openapi.json"
        );
    }
    assert!(doc["paths"]["/api/v1/groups/{key}/estimate"]["get"]["responses"]["403"].is_object());
    server.stop().await.unwrap();
}
