//! `POST /api/v1/dispatch` over a real socket on SQLite and PostgreSQL: a feeder group's
//! batteries planned under a site's export envelope, with state of charge from telemetry
//! where a reading exists, the shortfall and binding constraints of an impossible request,
//! and each listed bad request refused with the field named and nothing changed; and the
//! flexible capacity forecast of a group from its meters' history.

mod common;

use common::api::ApiClient;
use common::{READER_TOKEN, TestDb, start_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::domain::now_epoch;
use switchyard::telemetry::{Measurand, Quality, Reading, SourceKind, insert_batch};

on_both_backends!(
    plans_respect_envelopes_and_report_shortfall,
    bad_requests_change_nothing,
    flex_forecast_from_meter_history
);

async fn setup(db: &TestDb) -> (switchyard::app::RunningServer, ApiClient) {
    let (server, base) = start_server(db, 64 * 1024).await;
    let api = ApiClient::new(base);
    api.created(
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    for (site, feeder) in [
        ("s1", "F1"),
        ("s2", "F1"),
        ("s3", "F1"),
        ("s4", "F1"),
        ("s5", "F2"),
    ] {
        api.created("/api/v1/sites", json!({"id": site, "account_id": "a1", "territory": "T", "interconnection_type": "nem", "grid_location": {"feeder": feeder}})).await;
    }
    for i in 1..=5 {
        api.created("/api/v1/ders", json!({"id": format!("d{i}"), "site_id": format!("s{i}"), "der_class": "battery", "manufacturer": "M", "model": "B", "serial": format!("{i}"), "rated_kw": 5.0, "storage_kwh": 10.0, "reserve_pct": 20.0, "status": "active"})).await;
    }
    // Left out of a discharge: an inactive thermostat and a PV inverter.
    api.created("/api/v1/ders", json!({"id": "t1", "site_id": "s1", "der_class": "thermostat", "manufacturer": "M", "model": "T", "serial": "t1", "rated_kw": 2.0, "status": "inactive"})).await;
    api.created("/api/v1/ders", json!({"id": "pv2", "site_id": "s2", "der_class": "pv_inverter", "manufacturer": "M", "model": "P", "serial": "pv2", "rated_kw": 6.0, "status": "active"})).await;
    api.created(
        "/api/v1/groups",
        json!({"id": "feeder-f1", "name": "F1", "grid_location": {"feeder": "F1"}}),
    )
    .await;
    // Site s1 may export at most 1 kW.
    api.created("/api/v1/control-programs", json!({"id": "doe-s1", "name": "DOE s1", "primacy": 1, "target_kind": "site", "target_id": "s1"})).await;
    api.created(
        "/api/v1/default-controls",
        json!({"program_id": "doe-s1", "modes": {"exp_lim_w": 1000.0}}),
    )
    .await;
    (server, api)
}

fn body(kw: f64, start: i64, duration_s: i64, group: &str) -> Value {
    json!({
        "request": {
            "id": "req-1",
            "target": {"kind": "group", "group_id": group},
            "direction": "discharge",
            "power_kw": kw,
            "start": start,
            "duration_s": duration_s,
            "ramp": {"kind": "staggered", "over_s": 60},
            "priority": 3,
            "source": {"kind": "iso_instruction", "instruction_id": "DI-1"}
        },
        "assumptions": {"step_s": 900, "self_consumption": 0.0, "default_soc_pct": 80.0}
    })
}

async fn plans_respect_envelopes_and_report_shortfall(db: TestDb) {
    let (server, api) = setup(&db).await;
    let now = now_epoch();
    // d2 reported 50% a minute ago; the others are planned at the assumed 80%.
    insert_batch(
        &db.store,
        &[Reading {
            source_id: "d2".into(),
            source_kind: SourceKind::Mqtt,
            measurand: Measurand::StateOfCharge,
            instant: now - 60,
            value: 50.0,
            quality: Quality::Measured,
        }],
        now,
    )
    .await
    .unwrap();
    let start = now + 120;

    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/dispatch",
            Some(body(9.0, start, 3600, "feeder-f1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["feasible"], true, "{v}");
    let first_id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["loaded"]["ders"], 4);
    assert_eq!(v["loaded"]["left_out"], 2);
    assert_eq!(v["loaded"]["soc_from_telemetry"], 1);
    assert_eq!(v["loaded"]["soc_assumed"], 3);
    assert_eq!(v["steps"].as_array().unwrap().len(), 4);
    let schedules = v["schedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 4);
    let first = |der: &str| -> f64 {
        let s = schedules.iter().find(|s| s["der"] == der).unwrap();
        s["commands"][0]["dispatch_kw"].as_f64().unwrap()
    };
    // s1's export envelope holds; d2 (3 kWh above reserve) gives less than d3 and d4
    // (6 kWh each) so that all three empty together.
    assert!(first("d1") <= 1.0 + 1e-9, "{}", first("d1"));
    assert!((first("d1") + first("d2") + first("d3") + first("d4") - 9.0).abs() < 1e-6);
    assert!((first("d3") / first("d2") - 2.0).abs() < 1e-6, "{v}");
    assert!(
        schedules.iter().all(|s| s["der"] != "d5"),
        "d5 is on another feeder"
    );
    let activations: Vec<i64> = schedules
        .iter()
        .map(|s| s["activate_at"].as_i64().unwrap())
        .collect();
    assert!(activations.iter().all(|&a| a >= start && a < start + 60));

    // 30 kW is out of reach: 1 kW at s1 plus three 5 kW ratings at most.
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/dispatch",
            Some(body(30.0, start, 3600, "feeder-f1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["feasible"], false);
    let second_id = v["id"].as_str().unwrap().to_string();
    let step = &v["steps"][0];
    assert!(
        (step["delivered_kw"].as_f64().unwrap() - 16.0).abs() < 1e-6,
        "{step}"
    );
    assert!((step["shortfall_kw"].as_f64().unwrap() - 14.0).abs() < 1e-6);
    let kinds: Vec<&str> = step["binding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["constraint"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["site_limit", "device_rating"], "{step}");
    assert_eq!(step["binding"][0]["examples"], json!(["s1"]));
    assert!(v["shortfall_kwh"].as_f64().unwrap() > 0.0);

    // Both plans are stored, in creation order, readable with a read-only token.
    let (s, list) = api
        .call_as(READER_TOKEN, Method::GET, "/api/v1/dispatch", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first_id.as_str(), second_id.as_str()]);
    let (s, p) = api
        .call(Method::GET, &format!("/api/v1/dispatch/{second_id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["feasible"], false);
    assert_eq!(p["source_kind"], "iso_instruction");
    assert_eq!(p["direction"], "discharge");
    assert_eq!(p["der_count"], 4);
    assert_eq!(p["power_kw"], 30.0);
    assert_eq!(p["body"]["request"]["id"], "req-1");
    assert_eq!(p["steps"].as_array().unwrap().len(), 4);
    assert_eq!(p["steps"][0]["binding"][0]["constraint"], "site_limit");
    let (s, _) = api
        .call(Method::GET, "/api/v1/dispatch?limit=1", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, page) = api
        .call(Method::GET, "/api/v1/dispatch?limit=1", None)
        .await;
    assert_eq!(page["next_after"], first_id.as_str());
    let (s, _) = api.call(Method::GET, "/api/v1/dispatch/nope", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.stop().await.unwrap();
}

async fn bad_requests_change_nothing(db: TestDb) {
    let (server, api) = setup(&db).await;
    let now = now_epoch();
    let cases = [
        (
            body(5.0, now + 60, 3600, "feeder-f9"),
            "request.target.group_id",
            "unknown group 'feeder-f9'",
        ),
        (
            body(5.0, now + 60, -3600, "feeder-f1"),
            "request.duration_s",
            "must be positive",
        ),
        (
            body(5.0, now + 60, 0, "feeder-f1"),
            "request.duration_s",
            "must be positive",
        ),
        (
            body(5.0, now - 7200, 3600, "feeder-f1"),
            "request.start",
            "already ended",
        ),
        (
            body(-5.0, now + 60, 3600, "feeder-f1"),
            "request.power_kw",
            "positive",
        ),
        (
            {
                let mut b = body(5.0, now + 60, 3600, "feeder-f1");
                b["assumptions"]["step_s"] = json!(5);
                b
            },
            "assumptions.step_s",
            "between 60 and 3600",
        ),
        (
            {
                let mut b = body(5.0, now + 60, 3600, "feeder-f1");
                b["request"]["target"] = json!({"kind": "sites", "site_ids": ["s1", "nowhere"]});
                b
            },
            "request.target.site_ids",
            "unknown site 'nowhere'",
        ),
    ];
    let (_, before) = api.call(Method::GET, "/api/v1/ders", None).await;
    for (b, field, text) in cases {
        let (s, v) = api.call(Method::POST, "/api/v1/dispatch", Some(b)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(text), "{v}");
    }
    // A read-only token may not plan dispatch.
    let (s, _) = api
        .call_as(
            READER_TOKEN,
            Method::POST,
            "/api/v1/dispatch",
            Some(body(5.0, now + 60, 3600, "feeder-f1")),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, after) = api.call(Method::GET, "/api/v1/ders", None).await;
    assert_eq!(before, after);
    // No refused request left a stored plan.
    let (s, plans) = api.call(Method::GET, "/api/v1/dispatch", None).await;
    assert_eq!(s, StatusCode::OK, "{plans}");
    assert_eq!(plans["items"], json!([]));
    server.stop().await.unwrap();
}

async fn flex_forecast_from_meter_history(db: TestDb) {
    let (server, api) = setup(&db).await;
    let now = now_epoch();
    let start = now + 600;
    let end = start + 3600;
    // Meters on the feeder's four sites; 14 past days of readings at the window's time of
    // day: every site draws 500 W x (day number) in watts (positive is import).
    let mut readings = Vec::new();
    for i in 1..=4 {
        api.created("/api/v1/meters", json!({"id": format!("m{i}"), "site_id": format!("s{i}"), "mpid": format!("MP{i}"), "revenue_grade": true, "interval_seconds": 900})).await;
        for d in 1..=14i64 {
            for off in [0, 1200, 2400] {
                readings.push(Reading {
                    source_id: format!("m{i}"),
                    source_kind: SourceKind::Mqtt,
                    measurand: Measurand::ActivePower,
                    instant: start - d * 86_400 + off,
                    value: 500.0 * d as f64,
                    quality: Quality::Measured,
                });
            }
        }
    }
    insert_batch(&db.store, &readings, now).await.unwrap();
    let path = format!(
        "/api/v1/groups/feeder-f1/flex?start={start}&end={end}&step_s=1800&lookback_days=14&self_consumption=0.5&default_soc_pct=80"
    );
    let (s, v) = api.call(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    // Daily totals 2, 4, ..., 28 kW: median 15, P10 4.6, P90 25.4.
    let b = &steps[0]["baseline_kw"];
    assert!((b["p50"].as_f64().unwrap() - 15.0).abs() < 1e-9, "{b}");
    assert!((b["p10"].as_f64().unwrap() - 4.6).abs() < 1e-9, "{b}");
    assert!((b["p90"].as_f64().unwrap() - 25.4).abs() < 1e-9, "{b}");
    assert_eq!(steps[0]["days_with_data"], 14);
    for st in steps {
        let f = &st["flex_down_kw"];
        let (p10, p50, p90) = (
            f["p10"].as_f64().unwrap(),
            f["p50"].as_f64().unwrap(),
            f["p90"].as_f64().unwrap(),
        );
        assert!(p10 <= p50 && p50 <= p90 && p90 <= 20.0 + 1e-9, "{f}");
        // The more load the batteries cover, the less is left for the grid.
        assert!(p10 < p90, "{f}");
    }
    // Upward: four batteries at the assumed 80% have 4 x 2 kWh of room.
    assert!(
        (v["flex_up_kwh"]["p50"].as_f64().unwrap() - 8.0).abs() < 1e-6,
        "{v}"
    );

    for (path, status, field) in [
        (
            format!("/api/v1/groups/nope/flex?start={start}&end={end}"),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            format!("/api/v1/groups/feeder-f1/flex?start={start}&end={start}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("end"),
        ),
        (
            format!("/api/v1/groups/feeder-f1/flex?start={start}&end={end}&lookback_days=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lookback_days"),
        ),
        (
            "/api/v1/groups/feeder-f1/flex?start=soon".to_string(),
            StatusCode::BAD_REQUEST,
            Some("start"),
        ),
        (
            format!("/api/v1/groups/feeder-f1/flex?start={start}&colour=red"),
            StatusCode::BAD_REQUEST,
            Some("colour"),
        ),
    ] {
        let (s, v) = api.call(Method::GET, &path, None).await;
        assert_eq!(s, status, "{path}: {v}");
        if let Some(f) = field {
            assert_eq!(v["field"], f, "{v}");
        }
    }
    server.stop().await.unwrap();
}
