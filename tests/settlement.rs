//! Settlement end to end on SQLite and PostgreSQL, over a real socket and the real binary:
//! a Green Button file with an event-day load drop is imported, the event's performance is
//! computed against a "high 10 of 10" baseline (as an ad hoc event and as a stored dispatch
//! plan), and a settlement statement with one deliberate discrepancy is reconciled, which
//! flags that line with its reason. Bad input (malformed statement line, unknown event,
//! window without data, bad settings, wrong role) is refused precisely and stores nothing.

mod common;

use common::api::ApiClient;
use common::{READER_TOKEN, TestDb, start_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Command;
use switchyard::domain::now_epoch;
use switchyard::protocol::greenbutton::import::import_series;
use switchyard::protocol::greenbutton::{parse_feed, series};

on_both_backends!(
    green_button_event_to_reconciliation,
    bad_input_is_refused_and_nothing_stored
);

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// 2026-06-17, a Wednesday, 00:00 UTC: the event day.
const WED: i64 = 1_781_654_400;
const H: i64 = 3600;
const EVENT_START: i64 = WED + 14 * H;
const EVENT_END: i64 = WED + 18 * H;

/// Wh of an hourly interval by its start; `None` for no reading.
type Load = dyn Fn(i64) -> Option<i64>;

/// An ESPI Atom feed (written for this test) with one UsagePoint per `(id, wh)` entry,
/// hourly consumption over 30 days before the event day and the event day itself;
/// `wh(t)` gives each interval's value, `None` leaves the interval out.
fn green_button_feed(points: &[(&str, &Load)]) -> String {
    let base = "https://utility.example/DataCustodian/espi/1_1/resource";
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">
  <id>urn:uuid:00000000-0000-0000-0000-00000000feed</id>
  <title>Settlement test feed</title>
  <updated>2026-06-18T00:00:00Z</updated>
"#,
    );
    x.push_str(&format!(
        r#"  <entry>
    <id>urn:uuid:00000000-0000-0000-0000-0000000000a7</id>
    <link rel="self" href="{base}/ReadingType/07"/>
    <title>Hourly Wh</title>
    <content><ReadingType xmlns="http://naesb.org/espi"><accumulationBehaviour>4</accumulationBehaviour><commodity>1</commodity><flowDirection>1</flowDirection><intervalLength>3600</intervalLength><kind>12</kind><powerOfTenMultiplier>0</powerOfTenMultiplier><uom>72</uom></ReadingType></content>
  </entry>
"#
    ));
    for (n, (id, wh)) in points.iter().enumerate() {
        let up = format!("{base}/RetailCustomer/1/UsagePoint/{n}");
        let mr = format!("{up}/MeterReading/01");
        x.push_str(&format!(
            r#"  <entry>
    <id>{id}</id>
    <link rel="self" href="{up}"/>
    <title>Site {n}</title>
    <content><UsagePoint xmlns="http://naesb.org/espi"><ServiceCategory><kind>0</kind></ServiceCategory></UsagePoint></content>
  </entry>
  <entry>
    <id>urn:uuid:00000000-0000-0000-0000-0000000001{n:02}</id>
    <link rel="self" href="{mr}"/>
    <link rel="up" href="{up}/MeterReading"/>
    <link rel="related" href="{base}/ReadingType/07"/>
    <title>Hourly consumption</title>
    <content><MeterReading xmlns="http://naesb.org/espi"/></content>
  </entry>
  <entry>
    <id>urn:uuid:00000000-0000-0000-0000-0000000002{n:02}</id>
    <link rel="self" href="{mr}/IntervalBlock/1"/>
    <link rel="up" href="{mr}/IntervalBlock"/>
    <title/>
    <content><IntervalBlock xmlns="http://naesb.org/espi">
      <interval><duration>{}</duration><start>{}</start></interval>
"#,
            31 * 86_400,
            WED - 30 * 86_400
        ));
        for t in (WED - 30 * 86_400..WED + 86_400).step_by(H as usize) {
            if let Some(v) = wh(t) {
                x.push_str(&format!(
                    "      <IntervalReading><timePeriod><duration>3600</duration><start>{t}</start></timePeriod><value>{v}</value></IntervalReading>\n"
                ));
            }
        }
        x.push_str("    </IntervalBlock></content>\n  </entry>\n");
    }
    x.push_str("</feed>\n");
    x
}

/// A household's hourly load: higher in the afternoon, lower at weekends.
fn profile(t: i64) -> i64 {
    let hour = (t % 86_400) / H;
    let weekday = ((t / 86_400) + 3) % 7; // 0 = Monday
    if weekday >= 5 { 600 } else { 1000 + 50 * hour }
}

fn in_event(t: i64) -> bool {
    (EVENT_START..EVENT_END).contains(&t)
}

impl ApiClient {
    /// POSTs a statement (CSV, or a body of another media type) as the operator.
    async fn csv(&self, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        let (s, _, v) = self
            .send_bytes(Method::POST, path, content_type, body.to_string())
            .await;
        (s, v)
    }
}

const UP1: &str = "urn:uuid:11111111-0000-0000-0000-000000000001";
const UP2: &str = "urn:uuid:11111111-0000-0000-0000-000000000002";
const UP3: &str = "urn:uuid:11111111-0000-0000-0000-000000000003";

/// Three sites on feeder F1 with a battery and a revenue meter each (MPID = the
/// UsagePoint id), a group of the feeder, and the Green Button file imported: m1 drops
/// 400 Wh in each event hour, m2 200 Wh, m3 has no reading for the event's second hour.
async fn setup(db: &TestDb) -> (switchyard::app::RunningServer, ApiClient) {
    let (server, base) = start_server(db, 64 * 1024).await;
    let api = ApiClient::new(base);
    api.created(
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    for (i, up) in [(1, UP1), (2, UP2), (3, UP3)] {
        api.created("/api/v1/sites", json!({"id": format!("s{i}"), "account_id": "a1", "territory": "T", "interconnection_type": "nem", "grid_location": {"feeder": "F1"}})).await;
        api.created("/api/v1/meters", json!({"id": format!("m{i}"), "site_id": format!("s{i}"), "mpid": up, "revenue_grade": true, "interval_seconds": 3600})).await;
        api.created("/api/v1/ders", json!({"id": format!("d{i}"), "site_id": format!("s{i}"), "der_class": "battery", "manufacturer": "M", "model": "B", "serial": format!("{i}"), "rated_kw": 5.0, "storage_kwh": 10.0, "reserve_pct": 20.0, "status": "active"})).await;
    }
    // A check meter at s1 that is not revenue grade: settlement leaves it out.
    api.created("/api/v1/meters", json!({"id": "m1-check", "site_id": "s1", "mpid": "CHECK-1", "revenue_grade": false, "interval_seconds": 3600})).await;
    api.created(
        "/api/v1/groups",
        json!({"id": "feeder-f1", "name": "F1", "grid_location": {"feeder": "F1"}}),
    )
    .await;
    let m1 = |t: i64| Some(profile(t) - if in_event(t) { 400 } else { 0 });
    let m2 = |t: i64| Some(profile(t) - if in_event(t) { 200 } else { 0 });
    let m3 = |t: i64| (t != EVENT_START + H).then(|| profile(t));
    let xml = green_button_feed(&[(UP1, &m1), (UP2, &m2), (UP3, &m3)]);
    let series = series::build(&parse_feed(xml.as_bytes()).unwrap()).unwrap();
    let report = import_series(&db.store, &series, &HashMap::new(), now_epoch())
        .await
        .unwrap();
    assert_eq!(report.outcome.inserted, 3 * 31 * 24 - 1);
    (server, api)
}

fn event_body(id: &str) -> Value {
    json!({
        "event": {
            "id": id,
            "start": EVENT_START,
            "end": EVENT_END,
            "requested_kw": 0.5,
            "target": {"kind": "group", "group_id": "feeder-f1"}
        },
        "baseline": {"high_days": 10, "candidate_days": 10, "adjustment": {"kind": "additive", "cap_pct": 20.0}}
    })
}

fn close(v: &Value, expect: f64) -> bool {
    (v.as_f64().unwrap_or(f64::NAN) - expect).abs() < 1e-9
}

async fn count(db: &TestDb, table: &str) -> i64 {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    sqlx::Row::try_get::<i64, _>(&row, "n").unwrap()
}

fn run_cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_DATABASE_URL", &db.url)
        .env("SWITCHYARD_DATA_DIR", dir.path())
        .output()
        .unwrap()
}

async fn green_button_event_to_reconciliation(db: TestDb) {
    let (server, api) = setup(&db).await;

    let (s, p) = api
        .call(
            Method::POST,
            "/api/v1/settlement/performance",
            Some(event_body("ev-0617")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    // The flat weekday profile is its own baseline, so delivered is exactly the drop.
    let resources = p["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "{p}");
    assert_eq!(resources[0]["resource_id"], "m1");
    assert!(close(&resources[0]["delivered_kwh"], 1.6), "{p}");
    assert!(close(&resources[1]["delivered_kwh"], 0.8), "{p}");
    let expect_baseline: f64 = (14..18).map(|h| (1000 + 50 * h) as f64).sum::<f64>() / 1000.0;
    assert!(close(&resources[0]["baseline_kwh"], expect_baseline), "{p}");
    assert!(close(&p["delivered_kwh"], 2.4), "{p}");
    assert!(close(&p["requested_kwh"], 2.0), "{p}");
    assert!(close(&p["performance_ratio"], 1.2), "{p}");
    // Ten weekdays before the event day averaged, weekends skipped.
    let days = resources[0]["baseline"]["days"].as_array().unwrap();
    assert_eq!(days.iter().filter(|d| d["selected"] == true).count(), 10);
    assert_eq!(days[0]["date"], "2026-06-16");
    assert!(days.iter().any(|d| d["excluded"] == "weekend"));
    // m3 lacks the event's second hour: reported, not summed. The check meter is absent.
    assert_eq!(p["failed"][0]["resource_id"], "m3", "{p}");
    assert_eq!(p["failed"][0]["kind"], "missing_meter_data");
    assert_eq!(
        p["failed"][0]["missing_intervals"],
        json!([EVENT_START + H])
    );
    assert!(!p.to_string().contains("m1-check"));
    assert_eq!(p["intervals"].as_array().unwrap().len(), 4);
    assert!(close(&p["intervals"][0]["delivered_wh"], 600.0));

    // Stored: readable by a read-only token.
    let (s, stored) = api
        .call_as(
            READER_TOKEN,
            Method::GET,
            "/api/v1/settlement/performance/ev-0617",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stored["delivered_kwh"], p["delivered_kwh"]);

    // The same event as a stored dispatch plan gives the same performance.
    let plan = switchyard::dispatch::records::PlanRecord {
        id: "plan-0617".into(),
        request_id: "iso-0617".into(),
        source_kind: "iso_instruction".into(),
        direction: "discharge".into(),
        power_kw: 0.5,
        window_start: EVENT_START,
        window_end: EVENT_END,
        feasible: true,
        shortfall_kwh: 0.0,
        der_count: 3,
        body: json!({"request": {"target": {"kind": "group", "group_id": "feeder-f1"}}}),
        steps: json!([]),
        created_at: EVENT_START - 86_400,
    };
    switchyard::dispatch::records::insert(&db.store, &plan)
        .await
        .unwrap();
    let (s, pp) = api
        .call(
            Method::POST,
            "/api/v1/settlement/performance",
            Some(json!({"plan_id": "plan-0617"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{pp}");
    assert_eq!(pp["source"], "plan");
    assert_eq!(pp["target"], "group:feeder-f1");
    assert!(close(&pp["delivered_kwh"], 2.4), "{pp}");

    // The statement: m1 and the aggregate agree, m2's delivered energy is 0.3 kWh high.
    let b1 = resources[0]["baseline_kwh"].as_f64().unwrap();
    let statement = format!(
        "event_id,resource_id,baseline_kwh,metered_kwh,delivered_kwh,amount_usd\n\
         ev-0617,m1,{b1:.3},{:.3},1.600,160.00\n\
         ev-0617,s2,,,1.100,110.00\n\
         ev-0617,*,,,2.4,240.00\n",
        b1 - 1.6
    );
    let (s, r) = api
        .csv("/api/v1/settlement/reconcile", "text/csv", &statement)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(
        (
            r["lines"].as_u64(),
            r["matched"].as_u64(),
            r["flagged"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{r}"
    );
    let d = &r["discrepancies"][0];
    assert_eq!(d["line"], 3);
    assert_eq!(d["resource_id"], "s2");
    assert_eq!(d["reasons"], json!(["delivered_differs"]));
    assert!(
        close(&d["delivered_diff_kwh"], 0.3)
            || (d["delivered_diff_kwh"].as_f64().unwrap() - 0.3).abs() < 1e-9,
        "{d}"
    );
    assert!(
        d["detail"]
            .as_str()
            .unwrap()
            .contains("statement 1.100 kWh, computed 0.800 kWh"),
        "{d}"
    );
    let id = r["id"].as_str().unwrap();
    let (s, again) = api
        .call_as(
            READER_TOKEN,
            Method::GET,
            &format!("/api/v1/settlement/reconciliations/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, r);

    // Every other reason, from the command line: missing meter data (m3), an unknown
    // resource, an unknown event, and computed meters the statement leaves out.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statement.csv");
    std::fs::write(
        &file,
        "event_id,resource_id,delivered_kwh\nev-0617,m3,0.5\nev-0617,ghost,1\nev-0999,m1,1\n",
    )
    .unwrap();
    let out = run_cli(
        &db,
        &["settlement", "reconcile", file.to_str().unwrap(), "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reasons: Vec<(Value, Value)> = r["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["resource_id"].clone(), d["reasons"][0].clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (json!("m3"), json!("missing_meter_data")),
            (json!("ghost"), json!("unknown_resource")),
            (json!("m1"), json!("event_unknown")),
            (json!("m1"), json!("not_in_statement")),
            (json!("m2"), json!("not_in_statement")),
        ],
        "{r}"
    );
    assert_eq!(count(&db, "settlement_reconciliations").await, 2);

    // The CLI's baseline and performance agree with the API.
    let out = run_cli(
        &db,
        &[
            "settlement",
            "baseline",
            "--meter",
            "m2",
            "--start",
            &EVENT_START.to_string(),
            "--end",
            &EVENT_END.to_string(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["intervals"].as_array().unwrap().len(), 4);
    assert!(close(&b["intervals"][0]["baseline_wh"], 1700.0), "{b}");
    let out = run_cli(&db, &["settlement", "performance", "--plan", "plan-0617"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("requested 2.000 kWh, performance 120.0 %"),
        "{table}"
    );
    assert!(table.contains("MissingMeterData"), "{table}");
    server.stop().await.unwrap();
}

async fn bad_input_is_refused_and_nothing_stored(db: TestDb) {
    let (server, api) = setup(&db).await;
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/settlement/performance",
            Some(event_body("ev-0617")),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // A malformed statement line: named line and column, nothing stored.
    let (s, p) = api
        .csv(
            "/api/v1/settlement/reconcile",
            "text/csv",
            "event_id,resource_id,delivered_kwh\nev-0617,m1,1.6\nev-0617,m2,0,8\n",
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(
        p["detail"],
        "statement: line 3: 4 field(s), the header has 3"
    );
    let (s, p) = api
        .csv(
            "/api/v1/settlement/reconcile",
            "text/csv",
            "event_id,resource_id,delivered_kwh\nev-0617,m1,1.6\nev-0617,m2,0.8kWh\n",
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "delivered_kwh (3)");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("line 3, column delivered_kwh (3): '0.8kWh' is not a number"),
        "{p}"
    );
    let (s, _) = api
        .csv("/api/v1/settlement/reconcile", "application/json", "{}")
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, p) = api
        .csv(
            "/api/v1/settlement/reconcile?tolerance_pct=-1",
            "text/csv",
            "event_id,resource_id,delivered_kwh\nev-0617,m1,1\n",
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("tolerance_pct"))
    );
    assert_eq!(count(&db, "settlement_reconciliations").await, 0);

    // Unknown event, window without data, contradictory or wrong requests.
    let post = |body: Value| api.call(Method::POST, "/api/v1/settlement/performance", Some(body));
    let (s, p) = post(json!({"plan_id": "no-such-plan"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    assert_eq!(
        p["detail"],
        "unknown event 'no-such-plan': no dispatch plan or computed performance has that id"
    );
    let mut empty = event_body("ev-winter");
    empty["event"]["start"] = json!(WED - 120 * 86_400 + 14 * H);
    empty["event"]["end"] = json!(WED - 120 * 86_400 + 18 * H);
    let (s, p) = post(empty).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(
        p["detail"],
        format!(
            "no metered interval data for any of the 3 meter(s) of group:feeder-f1 in the window [{}, {})",
            WED - 120 * 86_400 + 14 * H,
            WED - 120 * 86_400 + 18 * H
        )
    );
    let mut both = event_body("ev-x");
    both["plan_id"] = json!("p");
    let (s, p) = post(both).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("plan_id"))
    );
    let mut unknown_group = event_body("ev-x");
    unknown_group["event"]["target"]["group_id"] = json!("nope");
    let (s, p) = post(unknown_group).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("event.target.group_id")
        ),
        "{p}"
    );
    let mut bad_cfg = event_body("ev-x");
    bad_cfg["baseline"]["high_days"] = json!(11);
    let (s, p) = post(bad_cfg).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("baseline.candidate_days")
        ),
        "{p}"
    );
    let mut unaligned = event_body("ev-x");
    unaligned["event"]["start"] = json!(EVENT_START + 900);
    let (s, p) = post(unaligned).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("not aligned to the 3600 s metering interval")
    );
    let mut typo = event_body("ev-x");
    typo["baseline"]["high_dayz"] = json!(5);
    let (s, p) = post(typo).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("baseline.high_dayz")),
        "{p}"
    );
    let (s, p) = api
        .call(
            Method::POST,
            "/api/v1/settlement/baseline",
            Some(json!({"meter_id": "m1-check", "start": EVENT_START, "end": EVENT_END})),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("meter_id")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("not revenue grade"));

    // Roles: a read-only token cannot compute (which stores), and nothing else is found.
    let (s, _) = api
        .call_as(
            READER_TOKEN,
            Method::POST,
            "/api/v1/settlement/performance",
            Some(event_body("ev-r")),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .call_as(
            "wrong",
            Method::GET,
            "/api/v1/settlement/performance/ev-0617",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .call(Method::GET, "/api/v1/settlement/performance/ev-r", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(count(&db, "settlement_performance").await, 1);

    // The CLI refuses a malformed statement with the line and column, non-zero exit.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, "event_id,resource_id,delivered_kwh\nev-0617,,1\n").unwrap();
    let out = run_cli(&db, &["settlement", "reconcile", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2, column resource_id (2): must not be empty"),
        "{err}"
    );
    assert_eq!(count(&db, "settlement_reconciliations").await, 0);

    // The operator API document lists the endpoints.
    let doc: Value = api
        .http
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/settlement/baseline",
        "/api/v1/settlement/performance",
        "/api/v1/settlement/performance/{key}",
        "/api/v1/settlement/reconcile",
        "/api/v1/settlement/reconciliations/{key}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(
        doc["paths"]["/api/v1/settlement/reconcile"]["post"]["requestBody"]["content"]["text/csv"]
            .is_object()
    );
    server.stop().await.unwrap();
}
