//! OpenADR 3 events reaching the engine, over a real socket on SQLite and PostgreSQL: a BL
//! event with an EXPORT_CAPACITY_LIMIT for a VEN linked to a registry site shows in the
//! site's limits in force (`GET /api/v1/envelopes/in-force`), changes when the event
//! changes and goes when it is deleted; a DISPATCH_SETPOINT for a registry group leaves a
//! stored dispatch plan; and events the engine cannot take are refused with nothing
//! written anywhere.

mod common;

use common::api::ApiClient;
use common::openadr3::*;
use common::{OPERATOR_TOKEN, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::api::auth::{Role, TokenConfig};
use switchyard::domain::now_epoch;
use switchyard::protocol::openadr3::duration::format_datetime;

on_both_backends!(events_drive_envelopes_and_dispatch);

impl ApiClient {
    /// The export limit in force at a site at `at`, W.
    async fn export_limit(&self, site: &str, at: i64) -> Option<f64> {
        self.ok(&format!(
            "/api/v1/envelopes/in-force?site_id={site}&at={at}"
        ))
        .await["exp_lim_w"]["value"]
            .as_f64()
    }

    /// (controls in force, cancelled controls, dispatch plans).
    async fn counts(&self) -> (usize, usize, usize) {
        let controls = self.ok("/api/v1/controls?limit=1000").await;
        let items = controls["items"].as_array().unwrap();
        let cancelled = items
            .iter()
            .filter(|c| !c["cancelled_at"].is_null())
            .count();
        let plans = self.ok("/api/v1/dispatch?limit=1000").await["items"]
            .as_array()
            .unwrap()
            .len();
        (items.len() - cancelled, cancelled, plans)
    }
}

fn rfc3339(t: i64) -> String {
    format_datetime(time::OffsetDateTime::from_unix_timestamp(t).unwrap())
}

fn event(program: &Value, targets: &[&str], start: i64, payload: Value, units: &str) -> Value {
    json!({
        "programID": program,
        "eventName": "engine",
        "targets": targets,
        "intervalPeriod": {"start": rfc3339(start), "duration": "PT1H"},
        "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
            "payloadType": payload["type"], "units": units}],
        "intervals": [{"id": 0, "payloads": [payload]}]
    })
}

async fn events_drive_envelopes_and_dispatch(db: TestDb) {
    let (server, base) = start(&db, |c| {
        c.api.tokens = vec![TokenConfig {
            name: "ops".into(),
            token: OPERATOR_TOKEN.into(),
            role: Role::Operator,
        }];
    })
    .await;
    let ops = ApiClient::new(base.replace(switchyard::protocol::openadr3::PREFIX, ""));
    ops.created(
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    for site in ["s1", "s2", "s3"] {
        ops.created(
            "/api/v1/sites",
            json!({"id": site, "account_id": "a1", "territory": "T",
            "interconnection_type": "nem", "grid_location": {"feeder": "F1"}}),
        )
        .await;
    }
    // s3 has no DER.
    for (der, site) in [("d1", "s1"), ("d2", "s2")] {
        ops.created(
            "/api/v1/ders",
            json!({"id": der, "site_id": site, "der_class": "battery",
            "manufacturer": "M", "model": "B", "serial": der, "rated_kw": 5.0,
            "storage_kwh": 10.0, "reserve_pct": 20.0, "status": "active"}),
        )
        .await;
    }
    ops.created(
        "/api/v1/groups",
        json!({"id": "feeder-f1", "name": "F1", "grid_location": {"feeder": "F1"}}),
    )
    .await;

    let record = Record::default();
    let w = world(&base, &record).await;
    let pid = &w.program["id"];
    // The BL links VEN1 to registry site s1 (a target only the BL can assign).
    let (s, v) =
        w.bl.send(
            Method::PUT,
            &format!("/vens/{}", w.ven1_obj["id"].as_str().unwrap()),
            Some(json!({"objectType": "BL_VEN_REQUEST", "clientID": VEN1.0,
                "venName": "ven-north", "targets": ["north", "site:s1"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let now = now_epoch();
    let at = now + 60;
    assert_eq!(ops.export_limit("s1", at).await, None);

    // An export limit for VEN1 becomes s1's export limit, and only s1's.
    let limit =
        w.bl.create(
            "/events",
            event(
                pid,
                &["ven-north"],
                now - 10,
                json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [3.5]}),
                "KW",
            ),
        )
        .await;
    let limit_id = limit["id"].as_str().unwrap().to_string();
    assert_eq!(ops.export_limit("s1", at).await, Some(3500.0));
    assert_eq!(ops.export_limit("s2", at).await, None);
    // The VEN sees the event as before.
    assert_eq!(ids(&w.ven1.ok("/events").await), [limit_id.as_str()]);
    // The limit ends with the event's interval.
    assert_eq!(ops.export_limit("s1", now + 3600).await, None);
    assert_eq!(ops.counts().await, (1, 0, 0));

    // Changing the event replaces the limit.
    let (s, v) =
        w.bl.send(
            Method::PUT,
            &format!("/events/{limit_id}"),
            Some(event(
                pid,
                &["ven-north"],
                now - 10,
                json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [2000]}),
                "W",
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(ops.export_limit("s1", at).await, Some(2000.0));
    assert_eq!(ops.counts().await, (1, 1, 0));

    // A dispatch setpoint for a registry group becomes a stored dispatch plan over its
    // DERs.
    let dispatch =
        w.bl.create(
            "/events",
            event(
                pid,
                &["group:feeder-f1"],
                now + 600,
                json!({"type": "DISPATCH_SETPOINT", "values": [4]}),
                "KW",
            ),
        )
        .await;
    let plans = ops.ok("/api/v1/dispatch").await;
    let plan = &plans["items"][0];
    assert_eq!(plan["source_kind"], "openadr_event");
    assert_eq!(plan["direction"], "discharge");
    assert_eq!(plan["power_kw"], 4.0);
    assert_eq!(plan["der_count"], 2);
    assert_eq!(plan["window_start"], now + 600);
    assert_eq!(
        plan["body"]["request"]["source"]["event_id"],
        dispatch["id"]
    );
    assert_eq!(
        plan["body"]["request"]["target"],
        json!({"kind": "group", "group_id": "feeder-f1"})
    );
    assert_eq!(ops.counts().await, (1, 1, 1));

    // Events the engine cannot take are refused, and nothing is written: not the event,
    // not a control, not a plan.
    let events_before = w.bl.ok("/events").await;
    for (body, field) in [
        (
            event(
                pid,
                &["group:nope"],
                now,
                json!({"type": "DISPATCH_SETPOINT", "values": [4]}),
                "KW",
            ),
            "targets",
        ),
        (
            event(
                pid,
                &["site:s1"],
                now,
                json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [-1]}),
                "KW",
            ),
            "intervals[0].payloads[0].values",
        ),
        (
            event(
                pid,
                &["site:s1"],
                now,
                json!({"type": "IMPORT_CAPACITY_LIMIT", "values": [1]}),
                "KVAR",
            ),
            "payloadDescriptors",
        ),
        (
            event(
                pid,
                &["site:s1"],
                now,
                json!({"type": "SIMPLE", "values": [9]}),
                "KW",
            ),
            "intervals[0].payloads[0].values",
        ),
        // A site with no DER: nothing to dispatch.
        (
            event(
                pid,
                &["site:s3"],
                now,
                json!({"type": "DISPATCH_SETPOINT", "values": [4]}),
                "KW",
            ),
            "targets",
        ),
        // A limit and a bad setpoint together: the limit is not written either.
        (
            {
                let mut e = event(
                    pid,
                    &["site:s2", "site:s3"],
                    now,
                    json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [1]}),
                    "KW",
                );
                e["intervals"][0]["payloads"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "DISPATCH_SETPOINT", "values": [1e9]}));
                e["intervals"][0]["payloads"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "CHARGE_STATE_SETPOINT", "values": [true]}));
                e
            },
            "intervals[0].payloads[2].values",
        ),
    ] {
        let (s, p) = w.bl.send(Method::POST, "/events", Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {p}");
        assert_eq!(p["field"], field, "{p}");
        // Nor may an update sneak it in.
        let (s, _) =
            w.bl.send(Method::PUT, &format!("/events/{limit_id}"), Some(body))
                .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    assert_eq!(w.bl.ok("/events").await, events_before);
    assert_eq!(ops.counts().await, (1, 1, 1));
    assert_eq!(ops.export_limit("s1", at).await, Some(2000.0));
    assert_eq!(ops.export_limit("s2", at).await, None);

    // Deleting the event cancels its limit.
    let (s, _) =
        w.bl.send(Method::DELETE, &format!("/events/{limit_id}"), None)
            .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ops.export_limit("s1", at).await, None);
    assert_eq!(ops.counts().await, (0, 2, 1));
    server.stop().await.unwrap();
}
