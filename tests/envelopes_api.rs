//! Operating envelopes through the operator API over a real socket: programs, controls and
//! defaults for sites, DERs and groups, the limits in force at chosen instants, superseding,
//! primacy, cancellation that stays visible, and refusals. Runs on SQLite and PostgreSQL.

mod common;

use common::api::ApiClient;
use common::{TestDb, start_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    limits_in_force_follow_controls_defaults_and_primacy,
    controls_are_immutable_and_cancellation_stays_visible
);

const T0: i64 = 1_900_000_000;

impl ApiClient {
    async fn in_force(&self, query: &str, at: i64) -> Value {
        let (s, v) = self
            .call(
                Method::GET,
                &format!("/api/v1/envelopes/in-force?{query}&at={at}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
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
    for (site, feeder) in [("s1", "F1"), ("s2", "F1")] {
        api.created("/api/v1/sites", json!({"id": site, "account_id": "a1", "territory": "T", "interconnection_type": "nem", "grid_location": {"feeder": feeder}})).await;
    }
    api.created("/api/v1/ders", json!({"id": "d1", "site_id": "s1", "der_class": "battery", "manufacturer": "M", "model": "B", "serial": "1", "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"})).await;
    api.created("/api/v1/ders", json!({"id": "d2", "site_id": "s2", "der_class": "pv_inverter", "manufacturer": "M", "model": "P", "serial": "2", "rated_kw": 6.0, "status": "active"})).await;
    api.created(
        "/api/v1/groups",
        json!({"id": "feeder-f1", "name": "F1", "grid_location": {"feeder": "F1"}}),
    )
    .await;
    (server, api)
}

fn value(v: &Value, mode: &str) -> Option<f64> {
    v[mode]["value"].as_f64()
}

async fn limits_in_force_follow_controls_defaults_and_primacy(db: TestDb) {
    let (server, api) = setup(&db).await;
    // A site-level DOE program (primacy 1) and a feeder-wide emergency program (primacy 0).
    api.created("/api/v1/control-programs", json!({"id": "doe-s1", "name": "DOE s1", "primacy": 1, "target_kind": "site", "target_id": "s1"})).await;
    api.created("/api/v1/control-programs", json!({"id": "feeder", "name": "Feeder F1", "primacy": 0, "target_kind": "group", "target_id": "feeder-f1"})).await;
    api.created(
        "/api/v1/default-controls",
        json!({"program_id": "doe-s1", "modes": {"exp_lim_w": 5000.0, "imp_lim_w": 10000.0}}),
    )
    .await;

    // Nothing active: the defaults are in force.
    let v = api.in_force("site_id=s1", T0).await;
    assert_eq!(value(&v, "exp_lim_w"), Some(5000.0));
    assert_eq!(
        v["exp_lim_w"]["source"],
        json!({"kind": "default", "program": "doe-s1"})
    );

    // A 30-minute DOE from T0+600 tightens the export limit.
    let c1 = api.created("/api/v1/controls", json!({"program_id": "doe-s1", "start": T0 + 600, "duration_s": 1800, "modes": {"exp_lim_w": 1500.0}})).await;
    let c1_id = c1["id"].as_str().unwrap().to_string();
    assert_eq!(c1_id.len(), 32, "an mRID is generated");
    let v = api.in_force("site_id=s1", T0).await;
    assert_eq!(value(&v, "exp_lim_w"), Some(5000.0));
    assert_eq!(v["next_change"], T0 + 600);
    let v = api.in_force("site_id=s1", T0 + 700).await;
    assert_eq!(value(&v, "exp_lim_w"), Some(1500.0));
    assert_eq!(v["exp_lim_w"]["source"]["id"], c1_id.as_str());
    assert_eq!(
        value(&v, "imp_lim_w"),
        Some(10000.0),
        "modes the control leaves unset keep their default"
    );
    let v = api.in_force("site_id=s1", T0 + 600 + 1800).await;
    assert_eq!(
        value(&v, "exp_lim_w"),
        Some(5000.0),
        "back to the default after the window"
    );

    // A newer overlapping control in the same program supersedes the older from its start.
    api.created("/api/v1/controls", json!({"program_id": "doe-s1", "start": T0 + 1200, "duration_s": 1800, "modes": {"exp_lim_w": 3000.0}})).await;
    assert_eq!(
        value(&api.in_force("site_id=s1", T0 + 700).await, "exp_lim_w"),
        Some(1500.0)
    );
    assert_eq!(
        value(&api.in_force("site_id=s1", T0 + 1300).await, "exp_lim_w"),
        Some(3000.0)
    );

    // The feeder program reaches both sites through the group; the most restrictive limit
    // wins whatever the primacy.
    api.created("/api/v1/controls", json!({"program_id": "feeder", "start": T0, "duration_s": 7200, "modes": {"exp_lim_w": 2000.0, "connect": true}})).await;
    let v = api.in_force("site_id=s1", T0 + 1300).await;
    assert_eq!(value(&v, "exp_lim_w"), Some(2000.0));
    let v = api.in_force("der_id=d2", T0 + 10).await;
    assert_eq!(value(&v, "exp_lim_w"), Some(2000.0));
    assert_eq!(v["connect"]["value"], true);
    // Site s2 has no DOE program of its own: no default export limit there.
    let v = api.in_force("site_id=s2", T0 + 7300).await;
    assert!(v["exp_lim_w"].is_null(), "{v}");

    // Bad requests.
    let (s, _) = api
        .call(Method::GET, "/api/v1/envelopes/in-force?at=1", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api
        .call(Method::GET, "/api/v1/envelopes/in-force?site_id=nope", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.stop().await.unwrap();
}

async fn controls_are_immutable_and_cancellation_stays_visible(db: TestDb) {
    let (server, api) = setup(&db).await;
    api.created(
        "/api/v1/control-programs",
        json!({"id": "p", "name": "P", "primacy": 1, "target_kind": "der", "target_id": "d1"}),
    )
    .await;
    // Invalid modes and references are refused, naming the field, and nothing is stored.
    let (s, v) = api.call(Method::POST, "/api/v1/controls", Some(json!({"program_id": "p", "start": T0, "duration_s": 60, "modes": {"gen_lim_w": -5.0}}))).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("modes.gen_lim_w")),
        "{v}"
    );
    let (s, v) = api.call(Method::POST, "/api/v1/controls", Some(json!({"program_id": "p", "start": T0, "duration_s": 0, "modes": {"gen_lim_w": 5.0}}))).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("duration_s")),
        "{v}"
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/controls",
            Some(json!({"program_id": "p", "start": T0, "duration_s": 60, "modes": {}})),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("modes")),
        "{v}"
    );
    let (s, v) = api.call(Method::POST, "/api/v1/controls", Some(json!({"program_id": "p", "start": T0, "duration_s": 60, "modes": {"warp_factor": 9}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = api.call(Method::POST, "/api/v1/controls", Some(json!({"program_id": "nope", "start": T0, "duration_s": 60, "modes": {"gen_lim_w": 5.0}}))).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("program_id")),
        "{v}"
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/control-programs",
            Some(json!({"name": "Q", "primacy": 300, "target_kind": "der", "target_id": "d1"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, list) = api.call(Method::GET, "/api/v1/controls", None).await;
    assert!(list["items"].as_array().unwrap().is_empty());

    let c = api.created("/api/v1/controls", json!({"program_id": "p", "start": T0, "duration_s": 3600, "modes": {"gen_lim_w": 2500.0}})).await;
    let path = format!("/api/v1/controls/{}", c["id"].as_str().unwrap());
    assert_eq!(
        value(&api.in_force("der_id=d1", T0 + 5).await, "gen_lim_w"),
        Some(2500.0)
    );
    // Published controls do not change; only the description may.
    let (s, v) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"modes": {"gen_lim_w": 100.0}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"description": "evening DOE"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // DELETE cancels: the control is still there, marked cancelled, and no longer in force.
    let (s, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api.call(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["cancelled_at"].as_i64().is_some(), "{v}");
    assert!(api.in_force("der_id=d1", T0 + 5).await["gen_lim_w"].is_null());
    // A cancellation cannot be undone, and cancelling again changes nothing.
    let (s, _) = api
        .call(Method::PATCH, &path, Some(json!({"cancelled_at": null})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, again) = api
        .call(
            Method::POST,
            &format!("{path}/cancel"),
            Some(json!({"randomized": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            again["cancelled_at"].clone(),
            again["cancel_randomized"].clone()
        ),
        (v["cancelled_at"].clone(), json!(false))
    );
    server.stop().await.unwrap();
}
