//! The OpenADR 2.0b VTN over real sockets (mutual TLS and the test-lab plain-HTTP
//! listener), on SQLite and PostgreSQL: registration, polling, events and opt-ins, opts,
//! reports into telemetry, push mode, and bad input refused with nothing written. Every
//! payload the VTN answers with is validated against oadr_20b.xsd with xmllint.

mod common;

use common::openadr2::{Ven, code, start, validate_all};
use common::sep2::pki;
use common::{OPERATOR_TOKEN, TestDb};
use serde_json::{Value, json};
use switchyard::domain::now_epoch;
use switchyard::protocol::openadr2::model::*;
use switchyard::protocol::openadr2::{fingerprint, xml};
use switchyard::telemetry::Measurand;

fn sv() -> Option<String> {
    Some(SCHEMA_VERSION.into())
}

fn query() -> Message {
    Message::QueryRegistration(QueryRegistration {
        schema_version: sv(),
        request_id: "q1".into(),
    })
}

fn register(ven_id: Option<&str>, pull: bool, address: Option<&str>) -> Message {
    Message::CreatePartyRegistration(CreatePartyRegistration {
        schema_version: sv(),
        request_id: "r1".into(),
        registration_id: None,
        ven_id: ven_id.map(str::to_string),
        profile_name: "2.0b".into(),
        transport_name: "simpleHttp".into(),
        transport_address: address.map(str::to_string),
        report_only: false,
        xml_signature: false,
        ven_name: Some("test VEN".into()),
        http_pull_model: Some(pull),
    })
}

fn poll(ven: &str) -> Message {
    Message::Poll(Poll {
        schema_version: sv(),
        ven_id: Some(ven.into()),
    })
}

fn created_event(ven: &str, event_id: &str, opt: &str) -> Message {
    Message::CreatedEvent(CreatedEvent {
        schema_version: sv(),
        ei_created_event: EiCreatedEvent {
            response: EiResponse::new(200, "OK", "d1"),
            event_responses: Some(EventResponses {
                responses: vec![EventResponse {
                    response_code: "200".into(),
                    response_description: Some("OK".into()),
                    request_id: "d1".into(),
                    qualified_event_id: QualifiedEventId {
                        event_id: event_id.into(),
                        modification_number: 0,
                    },
                    opt_type: opt.into(),
                }],
            }),
            ven_id: Some(ven.into()),
        },
    })
}

fn register_report(ven: &str) -> Message {
    let item = |d: &str, u: &str, s: &str| ItemBase {
        item_description: d.into(),
        item_units: u.into(),
        si_scale_code: Some(s.into()),
        // The schema wants power attributes on power items only.
        power_attributes: (u == "W").then_some(PowerAttributes {
            hertz: 50.0,
            voltage: 230.0,
            ac: true,
        }),
    };
    let desc = |rid: &str, resource: &str| ReportDescription {
        r_id: rid.into(),
        data_source: Some(Target {
            resource_ids: vec![resource.into()],
            ..Target::default()
        }),
        report_type: "reading".into(),
        power_real: (rid == "p").then(|| item("RealPower", "W", "k")),
        power_reactive: None,
        energy_real: (rid == "e").then(|| item("RealEnergy", "Wh", "none")),
        voltage: None,
        frequency: None,
        custom_unit: None,
        reading_type: "Direct Read".into(),
        market_context: None,
        sampling_rate: Some(SamplingRate {
            min_period: "PT10S".into(),
            max_period: "PT1M".into(),
            on_change: false,
        }),
    };
    Message::RegisterReport(RegisterReport {
        schema_version: sv(),
        request_id: "rr1".into(),
        reports: vec![OadrReport {
            dtstart: None,
            duration: Some(DurationProp {
                duration: "PT1H".into(),
            }),
            intervals: None,
            report_id: None,
            descriptions: vec![desc("p", "meter1"), desc("e", "meter1")],
            report_request_id: "0".into(),
            report_specifier_id: "spec1".into(),
            report_name: Some("METADATA_TELEMETRY_USAGE".into()),
            created_date_time: "2024-01-01T00:00:00Z".into(),
        }],
        ven_id: Some(ven.into()),
        report_request_id: None,
    })
}

fn update_report(ven: &str, request: &str, at: i64, kw: f64) -> Message {
    let t = time::OffsetDateTime::from_unix_timestamp(at)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    Message::UpdateReport(UpdateReport {
        schema_version: sv(),
        request_id: "u1".into(),
        reports: vec![OadrReport {
            dtstart: Some(DtStart {
                date_time: t.clone(),
            }),
            duration: None,
            intervals: Some(Intervals {
                intervals: vec![Interval {
                    dtstart: Some(DtStart {
                        date_time: t.clone(),
                    }),
                    duration: None,
                    uid: None,
                    signal_payload: None,
                    report_payloads: vec![ReportPayload {
                        r_id: "p".into(),
                        confidence: None,
                        accuracy: None,
                        payload_float: Some(PayloadFloat { value: kw }),
                        resource_status: None,
                        data_quality: None,
                    }],
                }],
            }),
            report_id: Some("rep1".into()),
            descriptions: vec![],
            report_request_id: request.into(),
            report_specifier_id: "spec1".into(),
            report_name: Some("TELEMETRY_USAGE".into()),
            created_date_time: t,
        }],
        ven_id: Some(ven.into()),
    })
}

fn create_opt(ven: &str, opt_id: &str, opt_type: &str, event: Option<&str>) -> Message {
    Message::CreateOpt(CreateOpt {
        schema_version: sv(),
        opt_id: opt_id.into(),
        opt_type: opt_type.into(),
        opt_reason: "participating".into(),
        market_context: None,
        ven_id: Some(ven.into()),
        created_date_time: "2024-01-01T00:00:00Z".into(),
        request_id: "o1".into(),
        qualified_event_id: event.map(|e| QualifiedEventId {
            event_id: e.into(),
            modification_number: 0,
        }),
        target: Target {
            ven_ids: vec![ven.into()],
            ..Target::default()
        },
    })
}

async fn ops(method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut r = match method {
        "GET" => c.get(url),
        _ => c.post(url),
    }
    .bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn event_body(id: &str, ven: &str, start: i64) -> Value {
    json!({"event_id": id, "signal_name": "SIMPLE", "signal_type": "level", "start": start,
           "intervals": [{"duration_seconds": 600, "value": 1.0}, {"duration_seconds": 600, "value": 2.0}],
           "ven_ids": [ven]})
}

fn registered_ids(m: &Message) -> (String, String) {
    let Message::CreatedPartyRegistration(r) = m else {
        panic!("{m:?}")
    };
    assert_eq!(r.response.response_code, "200");
    (
        r.ven_id.clone().unwrap(),
        r.registration_id.clone().unwrap(),
    )
}

async fn ven_lifecycle_over_mutual_tls(db: TestDb) {
    let pki = pki();
    let (server, base, vtn) = start(&db, &pki, true).await;
    let ven = Ven::tls(&pki, &pki.device, &vtn);

    // Before registering, a query answers with the VTN's offer and no ids.
    let Message::CreatedPartyRegistration(q) = ven.send("EiRegisterParty", &query()).await else {
        panic!()
    };
    assert_eq!(q.vtn_id, "SWITCHYARD-VTN");
    assert!(q.ven_id.is_none());
    let (ven_id, reg_id) = registered_ids(
        &ven.send("EiRegisterParty", &register(None, true, None))
            .await,
    );
    let (_, vens) = ops("GET", format!("{base}/api/v1/openadr2/vens"), None).await;
    assert_eq!(vens[0]["ven_id"], ven_id.as_str());
    assert_eq!(
        vens[0]["fingerprint"],
        fingerprint(&pki.device.cert_der).as_str()
    );

    // Reports: registering TELEMETRY_USAGE gets a report request back.
    let Message::RegisteredReport(rr) = ven.send("EiReport", &register_report(&ven_id)).await
    else {
        panic!()
    };
    assert_eq!(rr.report_requests.len(), 1);
    let request_id = rr.report_requests[0].report_request_id.clone();
    assert_eq!(
        rr.report_requests[0].specifier.granularity.duration,
        "PT10S"
    );

    // Nothing waiting yet.
    assert!(matches!(
        ven.send("OadrPoll", &poll(&ven_id)).await,
        Message::Response(_)
    ));

    // The operator creates an event for this VEN; the next poll delivers it, once.
    let start_at = now_epoch() + 60;
    let (s, e) = ops(
        "POST",
        format!("{base}/api/v1/openadr2/events"),
        Some(event_body("ev1", &ven_id, start_at)),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let Message::DistributeEvent(d) = ven.send("OadrPoll", &poll(&ven_id)).await else {
        panic!()
    };
    assert_eq!(d.events.len(), 1);
    let ev = &d.events[0].event;
    assert_eq!(ev.descriptor.event_id, "ev1");
    assert_eq!(ev.descriptor.event_status, "far");
    assert_eq!(ev.signals.signals[0].intervals.intervals.len(), 2);
    assert_eq!(ev.target.ven_ids, vec![ven_id.clone()]);
    assert!(matches!(
        ven.send("OadrPoll", &poll(&ven_id)).await,
        Message::Response(_)
    ));
    // oadrRequestEvent always answers with the current events.
    let req = Message::RequestEvent(RequestEvent {
        schema_version: sv(),
        ei_request_event: EiRequestEvent {
            request_id: "re1".into(),
            ven_id: Some(ven_id.clone()),
            reply_limit: None,
        },
    });
    let Message::DistributeEvent(d2) = ven.send("EiEvent", &req).await else {
        panic!()
    };
    assert_eq!(d2.events.len(), 1);

    // Opt in; the operator sees it.
    assert_eq!(
        code(
            &ven.send("EiEvent", &created_event(&ven_id, "ev1", "optIn"))
                .await
        ),
        "200"
    );
    let (_, view) = ops("GET", format!("{base}/api/v1/openadr2/events/ev1"), None).await;
    assert_eq!(view["responses"][0]["opt_type"], "optIn");
    assert_eq!(view["responses"][0]["ven_id"], ven_id.as_str());

    // EiOpt: create then cancel.
    let Message::CreatedOpt(co) = ven
        .send("EiOpt", &create_opt(&ven_id, "opt1", "optOut", Some("ev1")))
        .await
    else {
        panic!()
    };
    assert_eq!(co.opt_id, "opt1");
    let cancel = Message::CancelOpt(CancelOpt {
        schema_version: sv(),
        request_id: "c1".into(),
        opt_id: "opt1".into(),
        ven_id: Some(ven_id.clone()),
    });
    assert_eq!(code(&ven.send("EiOpt", &cancel).await), "200");
    let (_, opts) = ops(
        "GET",
        format!("{base}/api/v1/openadr2/vens/{ven_id}/opts"),
        None,
    )
    .await;
    assert_eq!(opts[0]["opt_type"], "optOut");
    assert_eq!(opts[0]["cancelled"], true);

    // A TELEMETRY_USAGE update becomes a telemetry reading in W.
    let at = now_epoch() - 30;
    assert_eq!(
        code(
            &ven.send("EiReport", &update_report(&ven_id, &request_id, at, 2.5))
                .await
        ),
        "200"
    );
    let readings = switchyard::telemetry::query(
        &db.store,
        &format!("openadr2:{ven_id}:meter1"),
        Some(Measurand::ActivePower),
        at - 1,
        at + 1,
    )
    .await
    .unwrap();
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0].value, 2500.0);

    // Cancelling the event reaches the VEN at its next poll.
    let (s, _) = ops(
        "POST",
        format!("{base}/api/v1/openadr2/events/ev1/cancel"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let Message::DistributeEvent(d3) = ven.send("OadrPoll", &poll(&ven_id)).await else {
        panic!()
    };
    assert_eq!(d3.events[0].event.descriptor.event_status, "cancelled");
    assert_eq!(d3.events[0].event.descriptor.modification_number, 1);

    // Cancel the registration; the VEN is gone.
    let cancel_reg = Message::CancelPartyRegistration(CancelPartyRegistration {
        schema_version: sv(),
        request_id: "x1".into(),
        registration_id: reg_id,
        ven_id: Some(ven_id.clone()),
    });
    assert!(matches!(
        ven.send("EiRegisterParty", &cancel_reg).await,
        Message::CanceledPartyRegistration(_)
    ));
    assert_eq!(code(&ven.send("OadrPoll", &poll(&ven_id)).await), "463");

    validate_all(&ven.answers.lock().unwrap());
    // What the tests sent as a VEN is schema-valid too (the codec's VEN side).
    validate_all(&ven.sent.lock().unwrap());
    server.stop().await.unwrap();
}

async fn count(db: &TestDb, table: &str) -> i64 {
    use sqlx::Row;
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) AS n FROM {table}"
    )))
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    r.try_get::<i64, _>("n").unwrap()
}

async fn bad_input_is_refused_and_nothing_written(db: TestDb) {
    let pki = pki();
    let (server, base, vtn) = start(&db, &pki, true).await;
    let ven = Ven::tls(&pki, &pki.device, &vtn);
    let other = Ven::tls(&pki, &pki.other, &vtn);
    let (ven_id, _) = registered_ids(
        &ven.send("EiRegisterParty", &register(None, true, None))
            .await,
    );
    let Message::RegisteredReport(rr) = ven.send("EiReport", &register_report(&ven_id)).await
    else {
        panic!()
    };
    let request_id = rr.report_requests[0].report_request_id.clone();
    let start_at = now_epoch() + 60;
    assert_eq!(
        ops(
            "POST",
            format!("{base}/api/v1/openadr2/events"),
            Some(event_body("ev1", &ven_id, start_at))
        )
        .await
        .0,
        201
    );

    // Transport level: malformed XML, DOCTYPE with entities, oversized, wrong root.
    let (s, body) = ven.raw("EiEvent", "<oadrPayload").await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("<ei:responseCode>454</ei:responseCode>"),
        "{body}"
    );
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07"><oadr:oadrSignedObject>&b;</oadr:oadrSignedObject></oadr:oadrPayload>"#;
    let (s, body) = ven.raw("EiEvent", bomb).await;
    assert_eq!(s, 400);
    assert!(body.contains("DOCTYPE"), "{body}");
    let (s, _) = ven.raw("EiEvent", vec![b' '; 70 * 1024]).await;
    assert_eq!(s, 413);
    let (s, body) = ven.raw("EiEvent", "<foo/>").await;
    assert_eq!(s, 400);
    assert!(body.contains("root element"), "{body}");
    let (s, _) = ven.raw("NoSuchService", xml::encode(&poll(&ven_id))).await;
    assert_eq!(s, 404);

    // A message posted to the wrong service: 453.
    assert_eq!(code(&ven.send("EiOpt", &poll(&ven_id)).await), "453");
    // Another certificate, not registered: 463; claiming the first VEN's id changes nothing.
    assert_eq!(code(&other.send("OadrPoll", &poll(&ven_id)).await), "463");
    assert_eq!(
        code(
            &other
                .send("EiEvent", &created_event(&ven_id, "ev1", "optIn"))
                .await
        ),
        "463"
    );
    registered_ids(
        &other
            .send("EiRegisterParty", &register(None, true, None))
            .await,
    );
    assert_eq!(
        code(
            &other
                .send("EiEvent", &created_event(&ven_id, "ev1", "optIn"))
                .await
        ),
        "452"
    );
    // Registering under someone else's venID.
    assert_eq!(
        code(
            &other
                .send("EiRegisterParty", &register(Some(&ven_id), true, None))
                .await
        ),
        "452"
    );
    // Unknown event, bad optType, unknown report request, unregistered rID, foreign opt.
    assert_eq!(
        code(
            &ven.send("EiEvent", &created_event(&ven_id, "nope", "optIn"))
                .await
        ),
        "452"
    );
    assert_eq!(
        code(
            &ven.send("EiEvent", &created_event(&ven_id, "ev1", "maybe"))
                .await
        ),
        "454"
    );
    assert_eq!(
        code(
            &ven.send(
                "EiReport",
                &update_report(&ven_id, "nope", now_epoch(), 1.0)
            )
            .await
        ),
        "452"
    );
    let Message::UpdateReport(mut bad) = update_report(&ven_id, &request_id, now_epoch(), 1.0)
    else {
        panic!()
    };
    bad.reports[0].intervals.as_mut().unwrap().intervals[0].report_payloads[0].r_id = "zz".into();
    assert_eq!(
        code(&ven.send("EiReport", &Message::UpdateReport(bad)).await),
        "454"
    );
    // A reading a day and more in the future.
    assert_eq!(
        code(
            &ven.send(
                "EiReport",
                &update_report(&ven_id, &request_id, now_epoch() + 3 * 86_400, 1.0)
            )
            .await
        ),
        "454"
    );
    assert_eq!(
        code(
            &ven.send("EiOpt", &create_opt(&ven_id, "o1", "sometimes", None))
                .await
        ),
        "454"
    );
    assert_eq!(
        code(
            &ven.send("EiOpt", &create_opt(&ven_id, "o1", "optIn", Some("nope")))
                .await
        ),
        "452"
    );
    let cancel = Message::CancelOpt(CancelOpt {
        schema_version: sv(),
        request_id: "c".into(),
        opt_id: "never".into(),
        ven_id: Some(ven_id.clone()),
    });
    assert_eq!(code(&ven.send("EiOpt", &cancel).await), "452");
    // Profile and push address.
    let Message::CreatePartyRegistration(mut r) = register(None, false, None) else {
        panic!()
    };
    assert_eq!(
        code(
            &ven.send(
                "EiRegisterParty",
                &Message::CreatePartyRegistration(r.clone())
            )
            .await
        ),
        "454"
    );
    r.profile_name = "2.0a".into();
    r.http_pull_model = Some(true);
    assert_eq!(
        code(
            &ven.send("EiRegisterParty", &Message::CreatePartyRegistration(r))
                .await
        ),
        "451"
    );

    assert_eq!(count(&db, "oadr2_event_responses").await, 0);
    assert_eq!(count(&db, "oadr2_opts").await, 0);
    assert_eq!(count(&db, "oadr2_report_updates").await, 0);
    assert_eq!(count(&db, "readings").await, 0);
    assert_eq!(count(&db, "oadr2_vens").await, 2);

    // Operator API: inverted/zero intervals, unknown enums, targets matching nothing,
    // duplicates, oversized, wrong role.
    let url = format!("{base}/api/v1/openadr2/events");
    let mut zero = event_body("e2", &ven_id, start_at);
    zero["intervals"][0]["duration_seconds"] = json!(0);
    assert_eq!(ops("POST", url.clone(), Some(zero)).await.0, 422);
    let mut neg = event_body("e2", &ven_id, start_at);
    neg["intervals"][1]["duration_seconds"] = json!(-600);
    assert_eq!(ops("POST", url.clone(), Some(neg)).await.0, 422);
    let mut name = event_body("e2", &ven_id, start_at);
    name["signal_name"] = json!("NOT_A_SIGNAL");
    assert_eq!(ops("POST", url.clone(), Some(name)).await.0, 422);
    assert_eq!(
        ops(
            "POST",
            url.clone(),
            Some(event_body("e2", "ghost", start_at))
        )
        .await
        .0,
        422
    );
    assert_eq!(
        ops(
            "POST",
            url.clone(),
            Some(event_body("e2", &ven_id, now_epoch() - 7200))
        )
        .await
        .0,
        422
    );
    assert_eq!(
        ops(
            "POST",
            url.clone(),
            Some(event_body("ev1", &ven_id, start_at))
        )
        .await
        .0,
        409
    );
    assert_eq!(
        ops("POST", url.clone(), Some(json!({"signal_name": 1})))
            .await
            .0,
        400
    );
    let huge = json!({"x": "a".repeat(100 * 1024)});
    assert_eq!(ops("POST", url.clone(), Some(huge)).await.0, 413);
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(common::READER_TOKEN)
        .json(&event_body("e3", &ven_id, start_at))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(count(&db, "oadr2_events").await, 1);
    assert_eq!(count(&db, "oadr2_event_targets").await, 1);

    let mut docs = ven.answers.lock().unwrap().clone();
    docs.extend(other.answers.lock().unwrap().iter().cloned());
    validate_all(&docs);
    server.stop().await.unwrap();
}

async fn test_lab_mode_identifies_by_ven_id(db: TestDb) {
    let pki = pki();
    let (server, base, vtn) = start(&db, &pki, false).await;
    let ven = Ven::plain(&vtn);
    let (ven_id, _) = registered_ids(
        &ven.send("EiRegisterParty", &register(None, true, None))
            .await,
    );
    assert!(matches!(
        ven.send("OadrPoll", &poll(&ven_id)).await,
        Message::Response(_)
    ));
    assert_eq!(
        code(&ven.send("OadrPoll", &poll("someone-else")).await),
        "452"
    );
    assert_eq!(
        code(
            &ven.send(
                "OadrPoll",
                &Message::Poll(Poll {
                    schema_version: sv(),
                    ven_id: None
                })
            )
            .await
        ),
        "463"
    );
    let (_, vens) = ops("GET", format!("{base}/api/v1/openadr2/vens"), None).await;
    assert_eq!(vens[0]["fingerprint"], Value::Null);
    validate_all(&ven.answers.lock().unwrap());
    server.stop().await.unwrap();
}

async fn push_mode_delivers_events_to_the_transport_address(db: TestDb) {
    use axum::routing::post;
    use std::sync::Arc;
    use tokio::sync::Mutex;
    let pki = pki();
    let (server, base, vtn) = start(&db, &pki, false).await;
    // A push-mode VEN: receives oadrDistributeEvent at {address}/EiEvent and opts in in the
    // HTTP answer.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let ven_id_cell: Arc<std::sync::Mutex<String>> = Arc::default();
    let (r2, id2) = (received.clone(), ven_id_cell.clone());
    let app = axum::Router::new().route(
        "/ven/EiEvent",
        post(move |body: String| {
            let r2 = r2.clone();
            let id = id2.lock().unwrap().clone();
            async move {
                r2.lock().await.push(body.clone());
                let m = xml::decode(body.as_bytes(), 1 << 20).unwrap();
                let Message::DistributeEvent(d) = m else {
                    panic!()
                };
                let event_id = d.events[0].event.descriptor.event_id.clone();
                xml::encode(&created_event(&id, &event_id, "optIn"))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ven = Ven::plain(&vtn);
    let address = format!("http://{addr}/ven");
    let (ven_id, _) = registered_ids(
        &ven.send("EiRegisterParty", &register(None, false, Some(&address)))
            .await,
    );
    *ven_id_cell.lock().unwrap() = ven_id.clone();
    let (s, _) = ops(
        "POST",
        format!("{base}/api/v1/openadr2/events"),
        Some(event_body("push1", &ven_id, now_epoch() + 60)),
    )
    .await;
    assert_eq!(s, 201);
    let mut opted = false;
    for _ in 0..50 {
        let (_, view) = ops("GET", format!("{base}/api/v1/openadr2/events/push1"), None).await;
        if view["responses"][0]["opt_type"] == "optIn" {
            opted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(opted, "the pushed event was not answered");
    let pushed = received.lock().await.clone();
    assert_eq!(pushed.len(), 1);
    let mut docs = ven.answers.lock().unwrap().clone();
    docs.extend(pushed);
    validate_all(&docs);
    server.stop().await.unwrap();
}

on_both_backends!(
    ven_lifecycle_over_mutual_tls,
    bad_input_is_refused_and_nothing_written,
    test_lab_mode_identifies_by_ven_id,
    push_mode_delivers_events_to_the_transport_address,
);
