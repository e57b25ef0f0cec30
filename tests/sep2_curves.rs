//! DER curves and LogEvents over real mutual TLS: the utility defines curves for a program
//! through the operator API, controls and default controls link them, and a device finds
//! them by following links (derp -> derc -> opModVoltVar href -> DERCurve). Devices post
//! LogEvents to their own LogEventList and read them back; the operator lists them. Every
//! refusal is checked to store nothing, and every document served is validated against
//! sep.xsd and the CSIP-AUS v1.3 schema. Runs on SQLite and PostgreSQL.

mod common;

use common::sep2::{Pki, Sep2, between, href_of, ops_post, pki, start_sep2_server};
use common::xsd::{Doc, schemas, validate};
use common::{OPERATOR_TOKEN, TestDb};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use switchyard::protocol::sep2::log_events::{self, LogEventRecord};
use switchyard::protocol::sep2::xml::CsipAusVersion;

on_both_backends!(
    curves_reach_devices_through_control_links,
    log_events_are_kept_per_device
);

/// A site with a 5 kW battery, a DOE program for the site, and both test devices enrolled
/// out of band (the first bound to the battery, the second to the site).
async fn setup(db: &TestDb, pki: &Pki) -> (switchyard::app::RunningServer, String, String) {
    let (server, sep2_base, base) = start_sep2_server(db, pki).await;
    for (path, body) in [
        (
            "/api/v1/accounts",
            json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
        ),
        (
            "/api/v1/sites",
            json!({"id": "s1", "account_id": "a1", "connection_point_id": "4102000001", "territory": "T", "interconnection_type": "nem"}),
        ),
        (
            "/api/v1/ders",
            json!({"id": "d1", "site_id": "s1", "der_class": "battery", "manufacturer": "M", "model": "B", "serial": "1", "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"}),
        ),
        (
            "/api/v1/control-programs",
            json!({"id": "doe", "name": "DOE", "primacy": 1, "target_kind": "site", "target_id": "s1"}),
        ),
        (
            "/api/v1/control-programs",
            json!({"id": "other", "name": "Other", "primacy": 2, "target_kind": "site", "target_id": "s1"}),
        ),
        (
            "/api/v1/end-devices",
            json!({"certificate_pem": pki.device.cert_pem, "der_id": "d1"}),
        ),
        (
            "/api/v1/end-devices",
            json!({"certificate_pem": pki.other.cert_pem, "site_id": "s1"}),
        ),
    ] {
        ops_post(&base, path, body).await;
    }
    (server, sep2_base, base)
}

/// Sends JSON to the operator API; returns the status and the body.
async fn ops(base: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Client::new()
        .request(method.clone(), format!("{base}{path}"))
        .bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        req = if method == Method::PATCH {
            req.header("content-type", "application/merge-patch+json")
                .body(b.to_string())
        } else {
            req.json(&b)
        };
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn count(base: &str, path: &str) -> usize {
    let (s, v) = ops(base, Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v["items"].as_array().unwrap().len()
}

/// Validates the documents a device read against sep.xsd alone (those without CSIP-AUS
/// elements) and all of them against the CSIP-AUS v1.3 schema.
fn validate_served(label: &str, docs: Vec<Doc>) {
    let Some(s) = schemas() else { return };
    let plain: Vec<Doc> = docs
        .iter()
        .filter(|d| !d.xml.contains("csipaus:"))
        .map(|d| Doc {
            name: d.name.clone(),
            xml: d.xml.clone(),
        })
        .collect();
    assert!(!plain.is_empty());
    validate(&s, &s.sep, &format!("{label}-sep"), &plain);
    validate(
        &s,
        s.csipaus(CsipAusVersion::V1_3),
        &format!("{label}-csipaus"),
        &docs,
    );
}

async fn curves_reach_devices_through_control_links(db: TestDb) {
    let pki = pki();
    let (_server, sep2, base) = setup(&db, &pki).await;

    // A volt-var curve: the multipliers are chosen so every point fits Int16.
    let vv = ops_post(
        &base,
        "/api/v1/der-curves",
        json!({
            "program_id": "doe", "description": "VV 4 point", "curve_type": "volt_var",
            "y_ref_type": "set_max_var",
            "points": [{"x": 92.0, "y": 30.0}, {"x": 98.0, "y": 0.0}, {"x": 102.0, "y": 0.0}, {"x": 108.0, "y": -30.0}],
            "autonomous_v_ref_enable": true, "autonomous_v_ref_time_constant_s": 300,
            "v_ref_percent": 100.0, "open_loop_s": 5.0
        }),
    )
    .await;
    let vv_id = vv["id"].as_str().unwrap().to_string();
    assert_eq!(vv_id.len(), 32);
    assert_eq!(
        (vv["x_multiplier"].as_i64(), vv["y_multiplier"].as_i64()),
        (Some(-2), Some(-3))
    );
    let pf = ops_post(
        &base,
        "/api/v1/der-curves",
        json!({
            "program_id": "doe", "curve_type": "watt_pf", "y_ref_type": "not_applicable",
            "points": [{"x": 50.0, "y": 1.0, "excitation": "over_excited"}, {"x": 100.0, "y": 0.9, "excitation": "under_excited"}]
        }),
    )
    .await;
    let pf_id = pf["id"].as_str().unwrap().to_string();
    let elsewhere = ops_post(
        &base,
        "/api/v1/der-curves",
        json!({"program_id": "other", "curve_type": "volt_watt", "y_ref_type": "set_max_w",
               "points": [{"x": 106.0, "y": 100.0}, {"x": 110.0, "y": 20.0}]}),
    )
    .await;

    // Bad curves are refused with the reason, naming the field; nothing is stored.
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"x": 90.0 + f64::from(i), "y": 0.0}))
        .collect();
    for (body, status, field) in [
        (
            json!({"program_id": "doe", "curve_type": "volt_var", "y_ref_type": "set_max_var",
                   "points": [{"x": 100.0, "y": 0.0}, {"x": 95.0, "y": 10.0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "points[1].x",
        ),
        (
            json!({"program_id": "doe", "curve_type": "volt_var", "y_ref_type": "set_max_var", "points": eleven}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "points",
        ),
        (
            json!({"program_id": "doe", "curve_type": "volt_var", "y_ref_type": "set_max_var", "points": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "points",
        ),
        (
            json!({"program_id": "doe", "curve_type": "volt_watt", "y_ref_type": "set_max_w", "y_multiplier": -4,
                   "points": [{"x": 106.0, "y": 100.0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "points[0].y",
        ),
        (
            json!({"program_id": "doe", "curve_type": "volt_watt", "y_ref_type": "set_max_var",
                   "points": [{"x": 106.0, "y": 100.0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "y_ref_type",
        ),
        (
            json!({"program_id": "doe", "curve_type": "watt_pf", "y_ref_type": "not_applicable",
                   "points": [{"x": 50.0, "y": 0.95}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "points[0].excitation",
        ),
        (
            json!({"program_id": "doe", "curve_type": "volt_sideways", "y_ref_type": "set_max_w",
                   "points": [{"x": 1.0, "y": 1.0}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "curve_type",
        ),
    ] {
        let (s, v) = ops(&base, Method::POST, "/api/v1/der-curves", Some(body)).await;
        assert_eq!(s, status, "{v}");
        assert!(v.to_string().contains(field), "{field} named in {v}");
    }
    assert_eq!(count(&base, "/api/v1/der-curves?program_id=doe").await, 2);

    // Controls link curves of their own program, of the linking mode's type.
    let start = common::sep2::now() - 60;
    for (curves, field) in [
        (json!({"volt_watt": vv_id}), "modes.curves.volt_watt"),
        (
            json!({"volt_var": "00000000000000000000000000000000"}),
            "modes.curves.volt_var",
        ),
        (
            json!({"volt_watt": elsewhere["id"]}),
            "modes.curves.volt_watt",
        ),
    ] {
        let (s, v) = ops(
            &base,
            Method::POST,
            "/api/v1/controls",
            Some(json!({"program_id": "doe", "start": start, "duration_s": 3600, "modes": {"curves": curves}})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v.to_string().contains(field), "{field} named in {v}");
    }
    assert_eq!(count(&base, "/api/v1/controls?program_id=doe").await, 0);
    let control = ops_post(
        &base,
        "/api/v1/controls",
        json!({"program_id": "doe", "start": start, "duration_s": 3600,
               "modes": {"exp_lim_w": 1500.0, "curves": {"volt_var": vv_id.to_lowercase()}}}),
    )
    .await;
    assert_eq!(control["modes"]["curves"]["volt_var"], vv_id.as_str());
    ops_post(
        &base,
        "/api/v1/default-controls",
        json!({"program_id": "doe", "modes": {"exp_lim_w": 5000.0, "curves": {"watt_pf": pf_id}}}),
    )
    .await;

    // A linked curve can neither change nor go away.
    let (s, v) = ops(
        &base,
        Method::DELETE,
        &format!("/api/v1/der-curves/{vv_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = ops(
        &base,
        Method::PATCH,
        &format!("/api/v1/der-curves/{vv_id}"),
        Some(json!({"points": [{"x": 90.0, "y": 10.0}]})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // The envelope engine carries curves and resolves limits as before.
    let (s, v) = ops(
        &base,
        Method::GET,
        "/api/v1/envelopes/in-force?der_id=d1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.to_string().contains("1500"), "{v}");

    // The device discovers the curves by following links over mutual TLS.
    let dev = Sep2::new(&pki, &pki.device, &sep2);
    let edev = format!("/edev/{}", pki.device.sfdi.value());
    let (s, derp_list) = dev.get(&format!("{edev}/derp?l=10")).await;
    assert_eq!(s, StatusCode::OK, "{derp_list}");
    assert!(derp_list.contains("all=\"2\""), "{derp_list}");
    let doe = format!("{edev}/derp/doe");
    let (_, derp) = dev.get(&doe).await;
    let (_, derc) = dev
        .get(&format!("{}?l=10", href_of(&derp, "DERControlListLink")))
        .await;
    let vv_href = href_of(&derc, "opModVoltVar").to_string();
    assert_eq!(vv_href, format!("{doe}/dc/{vv_id}"));
    let (s, vv_doc) = dev.get(&vv_href).await;
    assert_eq!(s, StatusCode::OK, "{vv_doc}");
    assert!(vv_doc.contains("<curveType>11</curveType>"), "{vv_doc}");
    assert!(
        vv_doc.contains("<CurveData><xvalue>9200</xvalue><yvalue>30000</yvalue></CurveData>"),
        "{vv_doc}"
    );
    assert!(
        vv_doc.contains("<CurveData><xvalue>10800</xvalue><yvalue>-30000</yvalue></CurveData>"),
        "{vv_doc}"
    );
    assert!(
        vv_doc.contains(
            "<xMultiplier>-2</xMultiplier><yMultiplier>-3</yMultiplier><yRefType>2</yRefType>"
        ),
        "{vv_doc}"
    );
    assert!(
        vv_doc.contains("<autonomousVRefEnable>true</autonomousVRefEnable>"),
        "{vv_doc}"
    );
    assert!(vv_doc.contains("<vRef>10000</vRef>"), "{vv_doc}");
    assert!(
        vv_doc.contains("<openLoopTms>500</openLoopTms>"),
        "{vv_doc}"
    );
    // Through the control's own document too.
    let (_, one) = dev.get(href_of(&derc, "DERControl")).await;
    assert_eq!(href_of(&one, "opModVoltVar"), vv_href);

    let (_, dderc) = dev.get(href_of(&derp, "DefaultDERControlLink")).await;
    let pf_href = href_of(&dderc, "opModWattPF").to_string();
    let (_, pf_doc) = dev.get(&pf_href).await;
    assert!(pf_doc.contains("<curveType>13</curveType>"), "{pf_doc}");
    assert!(
        pf_doc.contains("<CurveData><excitation>true</excitation><xvalue>10000</xvalue><yvalue>9000</yvalue></CurveData>"),
        "{pf_doc}"
    );

    // The program's DERCurveList, with s/l/a and all/results.
    let dc = href_of(&derp, "DERCurveListLink").to_string();
    assert_eq!(dc, format!("{doe}/dc"));
    let (_, all) = dev.get(&format!("{dc}?l=10")).await;
    assert!(all.contains("all=\"2\" results=\"2\""), "{all}");
    assert!(
        all.contains(&format!("<DERCurve href=\"{vv_href}\">")),
        "{all}"
    );
    let (_, first) = dev.get(&dc).await;
    assert!(first.contains("all=\"2\" results=\"1\""), "{first}");
    let (_, second) = dev.get(&format!("{dc}?s=1&l=10")).await;
    assert!(second.contains("all=\"2\" results=\"1\""), "{second}");
    let (_, none) = dev.get(&format!("{dc}?a=4000000000&l=10")).await;
    assert!(none.contains("all=\"0\" results=\"0\""), "{none}");
    let (_, other_dc) = dev.get(&format!("{edev}/derp/other/dc?l=10")).await;
    assert!(other_dc.contains("all=\"1\""), "{other_dc}");
    let (s, _) = dev
        .get(&format!("{dc}/{}", elsewhere["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a curve is served only under its program"
    );

    // Another device cannot read this device's curves.
    let other = Sep2::new(&pki, &pki.other, &sep2);
    let (s, _) = other.get(&vv_href).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = other.get(&format!("{dc}?l=10")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    validate_served("curves", dev.take_docs());

    // Once nothing links it, a curve can be deleted.
    let (s, v) = ops(
        &base,
        Method::DELETE,
        &format!("/api/v1/der-curves/{}", elsewhere["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

fn log_event(created: i64, id: u16, details: &str) -> String {
    format!(
        "<LogEvent xmlns=\"urn:ieee:std:2030.5:ns\"><createdDateTime>{created}</createdDateTime><details>{details}</details><functionSet>14</functionSet><logEventCode>3</logEventCode><logEventID>{id}</logEventID><logEventPEN>37250</logEventPEN><profileID>1</profileID></LogEvent>"
    )
}

async fn log_events_are_kept_per_device(db: TestDb) {
    let pki = pki();
    let (_server, sep2, base) = setup(&db, &pki).await;
    let dev = Sep2::new(&pki, &pki.device, &sep2);
    let other = Sep2::new(&pki, &pki.other, &sep2);
    let (_, edev) = dev.get(&format!("/edev/{}", pki.device.sfdi.value())).await;
    let lel = href_of(&edev, "LogEventListLink").to_string();

    // The device posts two events; each gets a Location that serves it back.
    let r = dev
        .post(&lel, log_event(1_900_000_000, 7, "over voltage trip"))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let first = r.headers()["location"].to_str().unwrap().to_string();
    assert!(first.starts_with(&format!("{lel}/")), "{first}");
    let r = dev
        .post(&lel, log_event(1_900_000_100, 8, "reconnected"))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (s, doc) = dev.get(&first).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc.contains("<details>over voltage trip</details>"),
        "{doc}"
    );
    assert!(doc.contains(&format!("href=\"{first}\"")), "{doc}");

    // Served newest first, with s/a/l.
    let (_, list) = dev.get(&format!("{lel}?l=10")).await;
    assert!(list.contains("all=\"2\" results=\"2\""), "{list}");
    assert!(
        list.find("<logEventID>8</logEventID>").unwrap()
            < list.find("<logEventID>7</logEventID>").unwrap(),
        "{list}"
    );
    let (_, page) = dev.get(&format!("{lel}?s=1&l=1")).await;
    assert!(page.contains("all=\"2\" results=\"1\""), "{page}");
    assert_eq!(between(&page, "<logEventID>", "<"), "7");
    let (_, after) = dev.get(&format!("{lel}?a=1900000050&l=10")).await;
    assert!(after.contains("all=\"1\" results=\"1\""), "{after}");

    // Another device sees neither the list nor an event, and cannot write to it.
    let (s, _) = other.get(&lel).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = other.get(&first).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = other
        .post(&lel, log_event(1_900_000_200, 9, "not mine"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Malformed, incomplete, oversized, mistyped or entity-laden events: refused.
    let missing_code =
        log_event(1_900_000_300, 10, "x").replace("<logEventCode>3</logEventCode>", "");
    let long_details = log_event(1_900_000_300, 11, &"d".repeat(33));
    let doctype = format!(
        "<!DOCTYPE LogEvent [<!ENTITY x \"boom\">]>{}",
        log_event(1_900_000_300, 12, "&x;")
    );
    for (body, status) in [
        (
            "<LogEvent xmlns=\"urn:ieee:std:2030.5:ns\"><createdDateTime>1".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (missing_code, StatusCode::BAD_REQUEST),
        (long_details, StatusCode::BAD_REQUEST),
        (doctype, StatusCode::BAD_REQUEST),
        (
            log_event(1_900_000_300, 13, &"d".repeat(5000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            log_event(1_900_000_300, 14, "wrong root").replace("LogEvent", "LogEvents"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = dev.post(&lel, body.clone()).await;
        assert_eq!(r.status(), status, "{body}: {}", r.text().await.unwrap());
    }
    let r = dev
        .send(
            Method::POST,
            &lel,
            "application/xml",
            log_event(1_900_000_300, 15, "x"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, list) = dev.get(&format!("{lel}?l=10")).await;
    assert!(
        list.contains("all=\"2\""),
        "nothing stored by refusals: {list}"
    );

    // The operator lists the device's events.
    let sfdi = pki.device.sfdi.value();
    let (s, v) = ops(
        &base,
        Method::GET,
        &format!("/api/v1/log-events?end_device_id={sfdi}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    assert!(
        items.iter().any(|e| e["details"] == "reconnected"
            && e["log_event_pen"] == 37250
            && e["function_set"] == 14),
        "{v}"
    );
    assert_eq!(
        count(
            &base,
            &format!(
                "/api/v1/log-events?end_device_id={}",
                pki.other.sfdi.value()
            )
        )
        .await,
        0
    );

    validate_served("log-events", dev.take_docs());

    // A device keeps its newest 1,000 events: the oldest arrivals make way.
    let registry = db.registry().await;
    for i in 0..log_events::MAX_PER_DEVICE {
        registry
            .create(LogEventRecord {
                id: String::new(),
                end_device_id: sfdi.to_string(),
                seq: 0,
                created_date_time: 1_900_001_000 + i,
                details: None,
                extended_data: None,
                function_set: 0,
                log_event_code: 0,
                log_event_id: (i % 65_536) as u16,
                log_event_pen: 0,
                profile_id: 1,
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
    }
    let (_, list) = dev.get(&format!("{lel}?l=1")).await;
    assert!(list.contains("all=\"1000\" results=\"1\""), "{list}");
    let (s, _) = dev.get(&first).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the first arrival was dropped");
}
