//! IEEE 2030.5 metering mirror and responses over real mutual TLS, on SQLite and
//! PostgreSQL: a device mirrors W and Wh readings with multipliers into the telemetry store
//! (in SI, once, whatever is re-posted), unknown units are refused with nothing stored,
//! other devices see none of it and aggregators see their devices' usage points; devices
//! answer DERControls that require responses at their replyTo, the operator lists the
//! responses per control, and undefined codes or other parties' controls are refused. Every
//! document served (and every document posted) is validated against csipaus-core-v1.3.xsd.
//! Operator operations: a usage point's postRate, clearing a device's usage points,
//! withdrawing a device's access; mRIDs another client uses are refused and a re-posted
//! usage point redefines its ReadingTypes.
//! A DERStatus a device PUTs becomes status readings of its DER, each at its own dateTime,
//! in the same transaction as the document.
//! The telemetry store itself is exercised directly: deduplication, chunked batches,
//! validation, range queries.

mod common;

use common::sep2::{
    Pki, Sep2, href_of, now, ops_patch, ops_post, pki, registration, start_sep2_server,
};
use common::xsd::{Doc, schemas, validate};
use common::{OPERATOR_TOKEN, READER_TOKEN, TestDb};
use reqwest::{Client, StatusCode};
use serde_json::json;
use switchyard::domain::identity::Lfdi;
use switchyard::pki::{CertKind, IssueRequest};
use switchyard::protocol::sep2::xml::CsipAusVersion;
use switchyard::telemetry::{self, Measurand, Quality, Reading, SourceKind, TelemetryError};

on_both_backends!(
    device_mirrors_readings_into_telemetry,
    aggregator_sees_its_devices_mirrors,
    operator_controls_the_mirror_and_access,
    responses_to_controls_are_stored_and_listed,
    telemetry_store_deduplicates_and_validates,
    der_status_becomes_status_history,
);

const NS: &str = "urn:ieee:std:2030.5:ns";

/// A MirrorUsagePoint document (site meter, electricity) with the given readings.
fn usage_point(mrid: &str, lfdi: &Lfdi, meter_readings: &str) -> String {
    format!(
        "<MirrorUsagePoint xmlns=\"{NS}\"><mRID>{mrid}</mRID><description>Site meter</description><roleFlags>03</roleFlags><serviceCategoryKind>0</serviceCategoryKind><status>1</status><deviceLFDI>{}</deviceLFDI>{meter_readings}</MirrorUsagePoint>",
        lfdi.to_hex()
    )
}

/// A MirrorMeterReading element: `content` holds lastUpdateTime / MirrorReadingSet /
/// Reading in schema order, the ReadingType comes last.
fn meter_reading(mrid: &str, content: &str, reading_type: Option<&str>) -> String {
    format!(
        "<MirrorMeterReading><mRID>{mrid}</mRID>{content}{}</MirrorMeterReading>",
        reading_type.unwrap_or("")
    )
}

/// A ReadingType with the fields that decide the measurand, in schema order.
fn reading_type(accumulation: u8, flow: u8, kind: u8, p10: i8, uom: u8) -> String {
    format!(
        "<ReadingType><accumulationBehaviour>{accumulation}</accumulationBehaviour><commodity>1</commodity><dataQualifier>2</dataQualifier><flowDirection>{flow}</flowDirection><intervalLength>300</intervalLength><kind>{kind}</kind><phase>0</phase><powerOfTenMultiplier>{p10}</powerOfTenMultiplier><uom>{uom}</uom></ReadingType>"
    )
}

fn reading(start: i64, value: i64) -> String {
    format!(
        "<Reading><qualityFlags>01</qualityFlags><timePeriod><duration>300</duration><start>{start}</start></timePeriod><value>{value}</value></Reading>"
    )
}

/// A document posted to a usage point: one MirrorMeterReading as the root.
fn as_root(meter_reading: &str) -> String {
    meter_reading.replacen(
        "<MirrorMeterReading>",
        &format!("<MirrorMeterReading xmlns=\"{NS}\">"),
        1,
    )
}

fn meter_reading_list(items: &[String]) -> String {
    format!(
        "<MirrorMeterReadingList xmlns=\"{NS}\" all=\"{n}\" results=\"{n}\">{}</MirrorMeterReadingList>",
        items.concat(),
        n = items.len()
    )
}

fn response(lfdi: &Lfdi, status: u8, subject: &str) -> String {
    format!(
        "<DERControlResponse xmlns=\"{NS}\"><createdDateTime>{}</createdDateTime><endDeviceLFDI>{}</endDeviceLFDI><status>{status}</status><subject>{subject}</subject></DERControlResponse>",
        now(),
        lfdi.to_hex()
    )
}

/// Registers the client's own EndDevice; returns its href.
async fn register(client: &Sep2, lfdi: &Lfdi) -> String {
    let r = client.post("/edev", registration(lfdi)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.headers()["location"].to_str().unwrap().to_string()
}

/// An account with site s1 (DER d1) and site s2 (DER d2), and the aggregator's identity.
async fn portfolio(ops: &str, pki: &Pki) {
    ops_post(
        ops,
        "/api/v1/accounts",
        json!({"id": "a1", "account_number": "A1", "name": "A", "kind": "residential"}),
    )
    .await;
    for (site, der) in [("s1", "d1"), ("s2", "d2")] {
        ops_post(
            ops,
            "/api/v1/sites",
            json!({"id": site, "account_id": "a1", "territory": "T", "interconnection_type": "nem"}),
        )
        .await;
        ops_post(ops, "/api/v1/ders", json!({"id": der, "site_id": site, "der_class": "battery", "manufacturer": "M", "model": "B", "serial": der, "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"})).await;
    }
    ops_post(
        ops,
        "/api/v1/identities",
        json!({"kind": "aggregator", "certificate_pem": pki.aggregator.cert_pem}),
    )
    .await;
}

/// The stored readings of `source` around now.
async fn stored(db: &TestDb, source: &str) -> Vec<Reading> {
    let t = now();
    telemetry::query(&db.store, source, None, t - 86_400, t + 86_400)
        .await
        .unwrap()
}

fn validate_all(label: &str, docs: Vec<Doc>) {
    if let Some(schemas) = schemas() {
        validate(
            &schemas,
            schemas.csipaus(CsipAusVersion::V1_3),
            label,
            &docs,
        );
    }
}

fn posted_doc(name: &str, xml: &str) -> Doc {
    Doc {
        name: format!("posted-{name}"),
        xml: xml.to_string(),
    }
}

async fn device_mirrors_readings_into_telemetry(db: TestDb) {
    let pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    portfolio(&ops, &pki).await;
    let dev = Sep2::new(&pki, &pki.device, &base);
    let mut posted = Vec::new();

    // Five-minute boundaries in the recent past.
    let t0 = now() / 300 * 300 - 900;
    let power = reading_type(12, 1, 37, -2, 38);
    let imported = reading_type(3, 1, 12, 3, 72);
    let exported = reading_type(3, 19, 12, 0, 72);
    let exported_set = format!(
        "<MirrorReadingSet><mRID>0E01</mRID><timePeriod><duration>600</duration><start>{t0}</start></timePeriod><Reading><value>1000</value></Reading><Reading><value>1010</value></Reading></MirrorReadingSet>"
    );
    let mmrs = [
        meter_reading("01", &reading(t0, 150_025), Some(&power)),
        meter_reading("02", &reading(t0, 12_345), Some(&imported)),
        meter_reading("03", &exported_set, Some(&exported)),
    ]
    .concat();
    let mup = usage_point("0A1B2C3D", &pki.device.lfdi, &mmrs);
    posted.push(posted_doc("mup", &mup));

    // Not registered yet: the usage point has no EndDevice to belong to.
    let r = dev.post("/mup", mup.clone()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("/edev"));

    let edev = register(&dev, &pki.device.lfdi).await;
    let (_, dcap) = dev.get("/dcap").await;
    assert_eq!(href_of(&dcap, "MirrorUsagePointListLink"), "/mup");
    assert!(
        dcap.contains("<MirrorUsagePointListLink href=\"/mup\" all=\"0\""),
        "{dcap}"
    );

    // Created with its readings: 201 and a Location.
    let r = dev.post("/mup", mup.clone()).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location.strip_prefix("/mup/").unwrap().to_string();

    // In the telemetry store, in SI units, import positive.
    let mut got: Vec<(Measurand, i64, f64)> = stored(&db, &id)
        .await
        .iter()
        .map(|r| (r.measurand, r.instant, r.value))
        .collect();
    got.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    assert_eq!(
        got,
        [
            (Measurand::ActivePower, t0, 1500.25),
            (Measurand::EnergyExported, t0, 1000.0),
            (Measurand::EnergyExported, t0 + 300, 1010.0),
            (Measurand::EnergyImported, t0, 12_345_000.0),
        ]
    );
    assert!(
        stored(&db, &id)
            .await
            .iter()
            .all(|r| { r.source_kind == SourceKind::Sep2Mirror && r.quality == Quality::Measured })
    );

    // Posting the same usage point again finds it (204, same Location); nothing doubles.
    let r = dev.post("/mup", mup.clone()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["location"].to_str().unwrap(), location);
    assert_eq!(stored(&db, &id).await.len(), 4);

    // Readings posted to the usage point: known MirrorMeterReadings need no ReadingType.
    // The repeated ones are not double-counted; the new one is added.
    let again = meter_reading_list(&[
        meter_reading("01", &reading(t0, 150_025), None),
        meter_reading("01", &reading(t0 + 300, -20_000), None),
        meter_reading("02", &reading(t0, 12_345), Some(&imported)),
    ]);
    posted.push(posted_doc("mmr-list", &again));
    let r = dev.post(&location, again.clone()).await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    let r = dev.post(&location, again).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let all = stored(&db, &id).await;
    assert_eq!(all.len(), 5);
    assert!(all.iter().any(|r| r.instant == t0 + 300
        && r.measurand == Measurand::ActivePower
        && r.value == -200.0));

    // A new MirrorMeterReading on its own: 201, voltage in millivolts becomes volts.
    let volts = as_root(&meter_reading(
        "05",
        &reading(t0, 230_125),
        Some(&reading_type(12, 0, 0, -3, 29)),
    ));
    posted.push(posted_doc("mmr", &volts));
    let r = dev.post(&location, volts).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let v = telemetry::query(&db.store, &id, Some(Measurand::Voltage), t0, t0 + 1)
        .await
        .unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].value, 230.125);

    // An unknown unit is refused by code, and nothing of that post is stored, not even
    // its valid readings.
    let unknown = meter_reading_list(&[
        meter_reading("01", &reading(t0 + 600, 1), None),
        meter_reading("04", &reading(t0, 7), Some(&reading_type(12, 0, 0, 0, 61))),
    ]);
    let r = dev.post(&location, unknown).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let text = r.text().await.unwrap();
    assert!(text.contains("uom 61"), "{text}");
    assert_eq!(stored(&db, &id).await.len(), 6);
    // A changed unit under a known mRID, a new MirrorMeterReading without a ReadingType,
    // a reading from the far future: all refused, nothing stored.
    for (body, says) in [
        (
            as_root(&meter_reading(
                "01",
                &reading(t0 + 600, 1),
                Some(&reading_type(12, 0, 0, 0, 33)),
            )),
            "cannot change",
        ),
        (
            as_root(&meter_reading("06", &reading(t0 + 600, 1), None)),
            "needs a ReadingType",
        ),
        (
            as_root(&meter_reading("01", &reading(now() + 3 * 86_400, 1), None)),
            "device clock",
        ),
    ] {
        let r = dev.post(&location, body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(stored(&db, &id).await.len(), 6);

    // The usage point as served: its MirrorMeterReadings (not the refused one) and postRate.
    let (s, doc) = dev.get(&location).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc.contains("<postRate>300</postRate>"), "{doc}");
    assert!(doc.contains("<mRID>0A1B2C3D</mRID>"), "{doc}");
    assert_eq!(doc.matches("<MirrorMeterReading>").count(), 4, "{doc}");
    assert!(!doc.contains("<mRID>04</mRID>"), "{doc}");
    let (_, list) = dev.get("/mup?l=10").await;
    assert!(list.contains("all=\"1\" results=\"1\""), "{list}");
    let (_, dcap) = dev.get("/dcap").await;
    assert!(dcap.contains("<MirrorUsagePointListLink href=\"/mup\" all=\"1\""));
    let (s, _) = dev.get(&edev).await;
    assert_eq!(s, StatusCode::OK);

    // Another device: 404 on everything, an empty list, and it cannot claim the LFDI.
    let other = Sep2::new(&pki, &pki.other, &base);
    assert_eq!(other.get(&location).await.0, StatusCode::NOT_FOUND);
    let r = other
        .post(
            &location,
            as_root(&meter_reading("01", &reading(t0 + 900, 1), None)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = other
        .http
        .delete(format!("{base}{location}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    register(&other, &pki.other.lfdi).await;
    let (_, list) = other.get("/mup?l=10").await;
    assert!(list.contains("all=\"0\""), "{list}");
    let r = other.post("/mup", mup.clone()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("deviceLFDI"));
    assert_eq!(stored(&db, &id).await.len(), 6);

    // The operator lists the device's usage points and clears them; readings stay.
    let http = Client::new();
    let sfdi = pki.device.sfdi.value();
    let r = http
        .get(format!(
            "{ops}/api/v1/mirror-usage-points?end_device_id={sfdi}"
        ))
        .bearer_auth(READER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["id"], id.as_str());
    assert_eq!(page["items"][0]["device_lfdi"], pki.device.lfdi.to_hex());
    let r = http
        .post(format!("{ops}/api/v1/mirror-usage-points"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "devices create usage points, the operator does not"
    );
    let r = http
        .delete(format!("{ops}/api/v1/mirror-usage-points/{id}"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(dev.get(&location).await.0, StatusCode::NOT_FOUND);
    assert_eq!(stored(&db, &id).await.len(), 6);

    // The device deletes one it created again over 2030.5.
    let r = dev.post("/mup", mup).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["location"].to_str().unwrap(), location);
    let r = dev
        .http
        .delete(format!("{base}{location}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(dev.get(&location).await.0, StatusCode::NOT_FOUND);

    let mut docs = dev.take_docs();
    assert!(docs.len() >= 5, "{} documents", docs.len());
    docs.extend(other.take_docs());
    docs.extend(posted);
    validate_all("metering", docs);
    server.stop().await.unwrap();
}

async fn aggregator_sees_its_devices_mirrors(db: TestDb) {
    let pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    portfolio(&ops, &pki).await;
    let managed_cert = pki
        .ca
        .issue(&IssueRequest::new(CertKind::Device, "managed"))
        .unwrap();
    let agg = Sep2::new(&pki, &pki.aggregator, &base);
    let managed = Sep2::new(&pki, &managed_cert, &base);
    let dev = Sep2::new(&pki, &pki.device, &base);
    let t0 = now() / 300 * 300 - 300;
    let power = reading_type(12, 1, 37, 0, 38);

    // The aggregator registers the device it manages; the device posts its own meter.
    let r = agg.post("/edev", registration(&managed_cert.lfdi)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let own = usage_point(
        "01",
        &managed_cert.lfdi,
        &meter_reading("01", &reading(t0, 42), Some(&power)),
    );
    let r = managed.post("/mup", own).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();

    // The aggregator sees it, reads it and posts readings to it.
    let (_, list) = agg.get("/mup?l=10").await;
    assert!(list.contains("all=\"1\" results=\"1\""), "{list}");
    assert!(list.contains(&managed_cert.lfdi.to_hex()), "{list}");
    assert_eq!(agg.get(&location).await.0, StatusCode::OK);
    let r = agg
        .post(
            &location,
            as_root(&meter_reading("01", &reading(t0 + 300, 43), None)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let id = location.strip_prefix("/mup/").unwrap();
    assert_eq!(stored(&db, id).await.len(), 2);

    // It creates usage points for its device, never for someone else's.
    let r = agg
        .post(
            "/mup",
            usage_point(
                "02",
                &managed_cert.lfdi,
                &meter_reading("01", &reading(t0, 5), Some(&power)),
            ),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    register(&dev, &pki.device.lfdi).await;
    let r = agg
        .post("/mup", usage_point("03", &pki.device.lfdi, ""))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (_, list) = agg.get("/mup?l=10").await;
    assert!(list.contains("all=\"2\" results=\"2\""), "{list}");

    // An unrelated device sees neither.
    assert_eq!(dev.get(&location).await.0, StatusCode::NOT_FOUND);
    let (_, list) = dev.get("/mup?l=10").await;
    assert!(list.contains("all=\"0\""), "{list}");

    // Disabled by the operator, the device's usage points take no more readings.
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{}", managed_cert.sfdi.value()),
        json!({"enabled": false}),
    )
    .await;
    let r = managed
        .post(
            &location,
            as_root(&meter_reading("01", &reading(t0 + 600, 1), None)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(stored(&db, id).await.len(), 2);

    let mut docs = agg.take_docs();
    docs.extend(dev.take_docs());
    validate_all("aggregator", docs);
    server.stop().await.unwrap();
}

/// Sends JSON to the operator API with `token`; returns the status and the body.
async fn ops_send(
    ops: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Client::new()
        .request(method, format!("{ops}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

async fn operator_controls_the_mirror_and_access(db: TestDb) {
    let pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    portfolio(&ops, &pki).await;
    let dev = Sep2::new(&pki, &pki.device, &base);
    let other = Sep2::new(&pki, &pki.other, &base);
    let edev = register(&dev, &pki.device.lfdi).await;
    register(&other, &pki.other.lfdi).await;
    let t0 = now() / 300 * 300 - 600;
    let power = reading_type(12, 1, 37, 0, 38);
    let reactive = reading_type(12, 1, 37, 0, 63);

    let mup = usage_point(
        "0B01",
        &pki.device.lfdi,
        &meter_reading("11", &reading(t0, 100), Some(&power)),
    );
    let r = dev.post("/mup", mup).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location.strip_prefix("/mup/").unwrap().to_string();

    // The other client may not take the device's MirrorMeterReading or usage point mRID;
    // nothing of either attempt is stored.
    let clash_meter = usage_point(
        "0B02",
        &pki.other.lfdi,
        &meter_reading("11", &reading(t0, 5), Some(&power)),
    );
    let r = other.post("/mup", clash_meter).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("mRID 11"));
    let clash_point = usage_point(
        "0B01",
        &pki.other.lfdi,
        &meter_reading("12", &reading(t0, 5), Some(&power)),
    );
    assert_eq!(
        other.post("/mup", clash_point).await.status(),
        StatusCode::CONFLICT
    );
    let (_, list) = other.get("/mup?l=10").await;
    assert!(list.contains("all=\"0\""), "{list}");
    // Two clients claiming one new mRID at the same moment: exactly one gets it.
    for n in 0..5 {
        let mine = usage_point(
            &format!("0C{n:02}"),
            &pki.device.lfdi,
            &meter_reading(&format!("7{n}"), &reading(t0, 1), Some(&power)),
        );
        let theirs = usage_point(
            &format!("0D{n:02}"),
            &pki.other.lfdi,
            &meter_reading(&format!("7{n}"), &reading(t0, 2), Some(&power)),
        );
        let (a, b) = tokio::join!(dev.post("/mup", mine), other.post("/mup", theirs));
        let mut got = [a.status(), b.status()];
        got.sort();
        assert_eq!(
            got,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "round {n}"
        );
        // Removed again, so the counts below are about the rest of the test.
        let winner = if a.status() == StatusCode::CREATED {
            &a
        } else {
            &b
        };
        let href = winner.headers()["location"].to_str().unwrap().to_string();
        let r = Client::new()
            .delete(format!(
                "{ops}/api/v1/mirror-usage-points/{}",
                href.strip_prefix("/mup/").unwrap()
            ))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // The device itself may reuse its own mRIDs in another usage point.
    let own_again = usage_point(
        "0B03",
        &pki.device.lfdi,
        &meter_reading("11", &reading(t0, 7), Some(&power)),
    );
    assert_eq!(
        dev.post("/mup", own_again).await.status(),
        StatusCode::CREATED
    );

    // Re-posting the usage point redefines the MirrorMeterReading (now reactive power):
    // 204 at the same Location, one usage point, later readings in var.
    let redefined = usage_point(
        "0B01",
        &pki.device.lfdi,
        &meter_reading("11", &reading(t0 + 300, 40), Some(&reactive)),
    );
    let r = dev.post("/mup", redefined).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["location"].to_str().unwrap(), location);
    let (_, doc) = dev.get(&location).await;
    assert!(
        doc.contains("<uom>63</uom>") && !doc.contains("<uom>38</uom>"),
        "{doc}"
    );
    let got: Vec<(Measurand, i64)> = stored(&db, &id)
        .await
        .iter()
        .map(|r| (r.measurand, r.instant))
        .collect();
    assert!(got.contains(&(Measurand::ActivePower, t0)), "{got:?}");
    assert!(
        got.contains(&(Measurand::ReactivePower, t0 + 300)),
        "{got:?}"
    );
    // Posting readings is not redefining: another unit there is still refused.
    let r = dev
        .post(
            &location,
            as_root(&meter_reading("11", &reading(t0 + 600, 1), Some(&power))),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // postRate: the deployment default, then what the operator sets, then the default again.
    assert!(doc.contains("<postRate>300</postRate>"), "{doc}");
    let rate = format!("/api/v1/mirror-usage-points/{id}/post-rate");
    let (s, body) = ops_send(
        &ops,
        reqwest::Method::PUT,
        &rate,
        OPERATOR_TOKEN,
        Some(json!({"seconds": 60})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["post_rate"], 60);
    let (_, doc) = dev.get(&location).await;
    assert!(doc.contains("<postRate>60</postRate>"), "{doc}");
    for bad in [
        json!({"seconds": 0}),
        json!({"seconds": 100_000}),
        json!({}),
    ] {
        let (s, body) =
            ops_send(&ops, reqwest::Method::PUT, &rate, OPERATOR_TOKEN, Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], "seconds", "{body}");
    }
    let (s, _) = ops_send(
        &ops,
        reqwest::Method::PUT,
        &rate,
        READER_TOKEN,
        Some(json!({"seconds": 30})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "readers cannot set rates");
    let (s, _) = ops_send(
        &ops,
        reqwest::Method::PUT,
        "/api/v1/mirror-usage-points/00FF/post-rate",
        OPERATOR_TOKEN,
        Some(json!({"seconds": 30})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, doc) = dev.get(&location).await;
    assert!(
        doc.contains("<postRate>60</postRate>"),
        "refusals change nothing: {doc}"
    );
    let (s, _) = ops_send(
        &ops,
        reqwest::Method::PUT,
        &rate,
        OPERATOR_TOKEN,
        Some(json!({"seconds": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, doc) = dev.get(&location).await;
    assert!(doc.contains("<postRate>300</postRate>"), "{doc}");

    // Clearing the device's usage points: both go, the readings stay in telemetry, and the
    // mRIDs can be created again.
    let sfdi = pki.device.sfdi.value();
    let clear = format!("/api/v1/end-devices/{sfdi}/mirror-usage-points");
    let (s, body) = ops_send(&ops, reqwest::Method::DELETE, &clear, READER_TOKEN, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = ops_send(&ops, reqwest::Method::DELETE, &clear, OPERATOR_TOKEN, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["deleted"], 2);
    let (_, list) = dev.get("/mup?l=10").await;
    assert!(list.contains("all=\"0\""), "{list}");
    assert_eq!(dev.get(&location).await.0, StatusCode::NOT_FOUND);
    assert_eq!(stored(&db, &id).await.len(), 2);
    let (s, _) = ops_send(
        &ops,
        reqwest::Method::DELETE,
        "/api/v1/end-devices/12345/mirror-usage-points",
        OPERATOR_TOKEN,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Access withdrawn: the device's lists are refused, its EndDevice shows enabled false,
    // and the other client is unaffected. Restored, everything answers again.
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{sfdi}"),
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(dev.get("/edev").await.0, StatusCode::FORBIDDEN);
    assert_eq!(dev.get("/mup").await.0, StatusCode::FORBIDDEN);
    let again = usage_point(
        "0B04",
        &pki.device.lfdi,
        &meter_reading("14", &reading(t0, 1), Some(&power)),
    );
    assert_eq!(
        dev.post("/mup", again.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    let (s, doc) = dev.get(&edev).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc.contains("<enabled>false</enabled>"), "{doc}");
    assert_eq!(other.get("/edev").await.0, StatusCode::OK);
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{sfdi}"),
        json!({"enabled": true}),
    )
    .await;
    let (s, list) = dev.get("/edev").await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains(&pki.device.lfdi.to_hex()), "{list}");
    assert_eq!(dev.post("/mup", again).await.status(), StatusCode::CREATED);

    let mut docs = dev.take_docs();
    docs.extend(other.take_docs());
    validate_all("mirror operations", docs);
    server.stop().await.unwrap();
}

async fn responses_to_controls_are_stored_and_listed(db: TestDb) {
    let pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    portfolio(&ops, &pki).await;
    for (program, site) in [("doe", "s1"), ("other", "s2")] {
        ops_post(
            &ops,
            "/api/v1/control-programs",
            json!({"id": program, "name": program, "primacy": 1, "target_kind": "site", "target_id": site}),
        )
        .await;
    }
    let t = now();
    let control = ops_post(&ops, "/api/v1/controls", json!({"program_id": "doe", "start": t - 60, "duration_s": 3600, "response_required": true, "modes": {"exp_lim_w": 1500.0}})).await["id"].as_str().unwrap().to_string();
    let foreign = ops_post(&ops, "/api/v1/controls", json!({"program_id": "other", "start": t - 60, "duration_s": 3600, "response_required": true, "modes": {"exp_lim_w": 1000.0}})).await["id"].as_str().unwrap().to_string();

    let dev = Sep2::new(&pki, &pki.device, &base);
    let other = Sep2::new(&pki, &pki.other, &base);
    let edev = register(&dev, &pki.device.lfdi).await;
    let other_edev = register(&other, &pki.other.lfdi).await;
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{}", pki.device.sfdi.value()),
        json!({"der_id": "d1"}),
    )
    .await;
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{}", pki.other.sfdi.value()),
        json!({"site_id": "s2"}),
    )
    .await;

    // The device finds the response set and the control's replyTo.
    let (_, dcap) = dev.get("/dcap").await;
    assert_eq!(href_of(&dcap, "ResponseSetListLink"), "/rsps");
    let (_, sets) = dev.get("/rsps?l=10").await;
    assert!(sets.contains("all=\"1\" results=\"1\""), "{sets}");
    assert_eq!(href_of(&sets, "ResponseSet"), "/rsps/doe");
    let (s, set) = dev.get("/rsps/doe").await;
    assert_eq!(s, StatusCode::OK);
    let reply_to = href_of(&set, "ResponseListLink").to_string();
    assert_eq!(reply_to, "/rsps/doe/rsp");
    let (_, derc) = dev.get(&format!("{edev}/derp/doe/derc?l=10")).await;
    assert!(derc.contains(&format!("replyTo=\"{reply_to}\"")), "{derc}");
    assert!(derc.contains("responseRequired=\"03\""), "{derc}");
    let (s, one) = dev.get(&format!("{edev}/derp/doe/derc/{control}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(one.contains(&format!("replyTo=\"{reply_to}\"")), "{one}");

    // Received, started, completed: stored, each once however often it is posted.
    let mut locations = Vec::new();
    for status in [1, 2, 3] {
        let r = dev
            .post(&reply_to, response(&pki.device.lfdi, status, &control))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        locations.push(r.headers()["location"].to_str().unwrap().to_string());
    }
    let r = dev
        .post(&reply_to, response(&pki.device.lfdi, 1, &control))
        .await;
    assert_eq!(r.headers()["location"].to_str().unwrap(), locations[0]);
    // A plain Response document is accepted too (lower-case subject and all).
    let plain = response(&pki.device.lfdi, 3, &control.to_ascii_lowercase())
        .replace("DERControlResponse", "Response");
    let r = dev.post(&reply_to, plain.clone()).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(r.headers()["location"].to_str().unwrap(), locations[2]);
    let (_, list) = dev.get(&format!("{reply_to}?l=10")).await;
    assert!(list.contains("all=\"3\" results=\"3\""), "{list}");
    let (s, first) = dev.get(&locations[0]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(first.contains("<status>1</status>"), "{first}");

    // The operator lists them per control.
    let http = Client::new();
    let list_responses = |control: String| {
        let http = http.clone();
        let ops = ops.clone();
        async move {
            let r = http
                .get(format!("{ops}/api/v1/controls/{control}/responses"))
                .bearer_auth(READER_TOKEN)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, page) = list_responses(control.clone()).await;
    assert_eq!(s, StatusCode::OK);
    let items = page["items"].as_array().unwrap();
    let mut statuses: Vec<(u64, &str)> = items
        .iter()
        .map(|i| {
            (
                i["status"].as_u64().unwrap(),
                i["status_name"].as_str().unwrap(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (1, "event_received"),
            (2, "event_started"),
            (3, "event_completed")
        ]
    );
    assert!(
        items
            .iter()
            .all(|i| i["end_device_lfdi"] == pki.device.lfdi.to_hex())
    );

    // Refused, nothing stored: an undefined status, a response without a subject, another
    // device's LFDI, a control of another program.
    let refusals = [
        response(&pki.device.lfdi, 99, &control),
        response(&pki.device.lfdi, 1, &control)
            .replace(&format!("<subject>{control}</subject>"), ""),
        response(&pki.other.lfdi, 1, &control),
        response(&pki.device.lfdi, 1, &foreign),
        response(&pki.device.lfdi, 1, "ABCDEF"),
    ];
    for body in refusals {
        let r = dev.post(&reply_to, body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    // Someone else's program is not even visible.
    let r = dev
        .post("/rsps/other/rsp", response(&pki.device.lfdi, 1, &foreign))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(other.get("/rsps/doe").await.0, StatusCode::NOT_FOUND);
    assert_eq!(other.get(&reply_to).await.0, StatusCode::NOT_FOUND);
    assert_eq!(other.get(&locations[0]).await.0, StatusCode::NOT_FOUND);
    let r = other
        .post(&reply_to, response(&pki.other.lfdi, 1, &control))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The other device answers its own control.
    let (_, other_sets) = other.get("/rsps?l=10").await;
    assert_eq!(href_of(&other_sets, "ResponseSet"), "/rsps/other");
    let r = other
        .post("/rsps/other/rsp", response(&pki.other.lfdi, 252, &foreign))
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let (s, _) = other.get(&other_edev).await;
    assert_eq!(s, StatusCode::OK);

    let (_, page) = list_responses(control.clone()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3, "{page}");
    let (_, page) = list_responses(foreign.clone()).await;
    assert_eq!(page["items"][0]["status_name"], "rejected_not_applicable");
    let (s, _) = list_responses("0123456789ABCDEF0123456789ABCDEF".into()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let mut docs = dev.take_docs();
    assert!(docs.len() >= 7, "{} documents", docs.len());
    docs.extend(other.take_docs());
    docs.push(posted_doc(
        "response",
        &response(&pki.device.lfdi, 1, &control),
    ));
    docs.push(posted_doc("plain-response", &plain));
    validate_all("responses", docs);
    server.stop().await.unwrap();
}

fn der_status(inverter: u8, connect_hex: &str, storage: u8, soc: u16, t: i64) -> String {
    format!(
        "<DERStatus xmlns=\"{NS}\"><genConnectStatus><dateTime>{t}</dateTime><value>{connect_hex}</value></genConnectStatus><inverterStatus><dateTime>{t}</dateTime><value>{inverter}</value></inverterStatus><readingTime>{t}</readingTime><stateOfChargeStatus><dateTime>{t}</dateTime><value>{soc}</value></stateOfChargeStatus><storageModeStatus><dateTime>{t}</dateTime><value>{storage}</value></storageModeStatus></DERStatus>"
    )
}

async fn der_status_becomes_status_history(db: TestDb) {
    use switchyard::telemetry::status::{OperatingState, StorageState};
    let pki = pki();
    let (server, base, ops) = start_sep2_server(&db, &pki).await;
    portfolio(&ops, &pki).await;
    let dev = Sep2::new(&pki, &pki.device, &base);
    let other = Sep2::new(&pki, &pki.other, &base);
    let edev = register(&dev, &pki.device.lfdi).await;
    register(&other, &pki.other.lfdi).await;
    ops_patch(
        &ops,
        &format!("/api/v1/end-devices/{}", pki.device.sfdi.value()),
        json!({"der_id": "d1"}),
    )
    .await;
    let ders = format!("{edev}/der/1/ders");
    async fn put_to(who: &Sep2, path: &str, body: String) -> reqwest::Response {
        who.send(reqwest::Method::PUT, path, "application/sep+xml", body)
            .await
    }
    let put = async |who: &Sep2, body: String| put_to(who, &ders, body).await;
    let t = now() - 120;
    // Running, connected (bitmap 07: connected, available, operating), discharging, 61.5 %;
    // then a fault, disconnected (bit 0 clear), holding.
    let first = der_status(4, "07", 1, 6150, t);
    validate_all("DERStatus", vec![posted_doc("ders", &first)]);
    assert_eq!(put(&dev, first).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        put(&dev, der_status(7, "06", 2, 6100, t + 60))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let mut got: Vec<(Measurand, i64, f64)> = stored(&db, "d1")
        .await
        .iter()
        .map(|r| (r.measurand, r.instant - t, r.value))
        .collect();
    got.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    assert_eq!(
        got,
        [
            (Measurand::GridConnected, 0, 1.0),
            (Measurand::GridConnected, 60, 0.0),
            (Measurand::OperatingState, 0, OperatingState::Running.code()),
            (Measurand::OperatingState, 60, OperatingState::Fault.code()),
            (Measurand::StateOfCharge, 0, 61.5),
            (Measurand::StateOfCharge, 60, 61.0),
            (Measurand::StorageState, 0, StorageState::Discharging.code()),
            (Measurand::StorageState, 60, StorageState::Holding.code()),
        ]
    );
    assert!(
        stored(&db, "d1")
            .await
            .iter()
            .all(|r| r.source_kind == SourceKind::Sep2Der)
    );
    // The document is served back as written last.
    let (s, body) = dev.get(&ders).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("<value>7</value>"), "{body}");
    // Another device cannot write this device's status (it does not even see it): nothing
    // is stored.
    let r = put(&other, der_status(1, "00", 0, 0, t + 90)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A malformed document is refused and stores nothing either.
    let r = put(&dev, der_status(1, "zz", 0, 0, t + 90)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = put(
        &dev,
        "<DERStatus xmlns=\"urn:ieee:std:2030.5:ns\"><inverterStatus>".into(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(stored(&db, "d1").await.len(), 8);
    server.stop().await.unwrap();
}

async fn telemetry_store_deduplicates_and_validates(db: TestDb) {
    let t0 = now() / 60 * 60 - 86_400;
    let reading = |source: &str, measurand, instant, value| Reading {
        source_id: source.into(),
        source_kind: SourceKind::Sep2Mirror,
        measurand,
        instant,
        value,
        quality: Quality::Measured,
    };
    // More rows than one INSERT statement takes, with a duplicate inside the batch.
    let mut batch: Vec<Reading> = (0..2500)
        .map(|i| reading("m1", Measurand::ActivePower, t0 + i * 30, i as f64))
        .collect();
    batch.push(reading("m1", Measurand::ActivePower, t0, 99.0));
    batch.push(reading("m1", Measurand::Voltage, t0, 230.5));
    let out = telemetry::insert_batch(&db.store, &batch, now())
        .await
        .unwrap();
    assert_eq!((out.inserted, out.duplicates), (2501, 1));
    // The same batch again stores nothing; the first value of a key stays.
    let out = telemetry::insert_batch(&db.store, &batch, now())
        .await
        .unwrap();
    assert_eq!((out.inserted, out.duplicates), (0, 2502));
    let first = telemetry::query(&db.store, "m1", Some(Measurand::ActivePower), t0, t0 + 60)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|r| r.value).collect::<Vec<_>>(),
        [0.0, 1.0]
    );

    // Range queries: half-open, all measurands in time order, other sources apart.
    let both = telemetry::query(&db.store, "m1", None, t0, t0 + 1)
        .await
        .unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].measurand, Measurand::Voltage);
    assert_eq!(both[1].value, 230.5);
    assert!(
        telemetry::query(&db.store, "m2", None, t0, t0 + 86_400)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        telemetry::query(&db.store, "m1", None, t0, t0 - 1).await,
        Err(TelemetryError::EmptyRange { .. })
    ));

    // One bad reading and the whole batch is refused.
    let bad = vec![
        reading("m2", Measurand::Frequency, t0, 50.0),
        reading("m2", Measurand::Frequency, t0 + 60, f64::NAN),
    ];
    assert!(matches!(
        telemetry::insert_batch(&db.store, &bad, now()).await,
        Err(TelemetryError::NotFinite { .. })
    ));
    let future = vec![reading(
        "m2",
        Measurand::Frequency,
        now() + 2 * 86_400,
        50.0,
    )];
    assert!(matches!(
        telemetry::insert_batch(&db.store, &future, now()).await,
        Err(TelemetryError::InFuture { .. })
    ));
    assert!(
        telemetry::query(&db.store, "m2", None, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}
