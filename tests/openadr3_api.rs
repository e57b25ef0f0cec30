//! The OpenADR 3.1 VTN over a real socket, driven by a BL and VENs written here: the
//! program/event/report cycle, targeting and scoping, pagination, persistence across a
//! restart, every refusal the issue lists, and the token endpoint. Runs on SQLite and
//! PostgreSQL.

mod common;

use common::TestDb;
use common::openadr3::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::protocol::openadr3::auth::{Claims, ISSUER};
use switchyard::protocol::openadr3::config::ClientRole;

on_both_backends!(
    bl_and_vens_cycle_with_scoping,
    bad_input_is_refused_and_changes_nothing,
    objects_survive_a_restart
);

async fn bl_and_vens_cycle_with_scoping(db: TestDb) {
    let (server, base) = start(&db, |_| {}).await;
    let record = Record::default();
    let w = world(&base, &record).await;
    let pid = &w.program["id"];
    assert_eq!(w.program["objectType"], "PROGRAM");
    assert!(
        w.program["createdDateTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let north =
        w.bl.create("/events", event_body(pid, "north", Some(&["north"])))
            .await;
    let by_resource =
        w.bl.create("/events", event_body(pid, "battery", Some(&["battery-1"])))
            .await;
    let south =
        w.bl.create("/events", event_body(pid, "south", Some(&["south"])))
            .await;
    let all = w.bl.create("/events", event_body(pid, "all", None)).await;
    assert_eq!(north["objectType"], "EVENT");
    assert_eq!(north["programID"], *pid);
    // The server fills the specification's defaults of report descriptors.
    assert_eq!(north["reportDescriptors"][0]["startInterval"], -1);
    assert_eq!(
        north["reportDescriptors"][0]["reportIntervals"],
        "INTERVALS"
    );

    // Each VEN sees what is aimed at it (by group, by VEN name or by resource) and what
    // is aimed at no one; the BL sees everything.
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    assert_eq!(
        ids(&w.ven1.ok("/events").await),
        [id(&north), id(&by_resource), id(&all)]
    );
    assert_eq!(ids(&w.ven2.ok("/events").await), [id(&south), id(&all)]);
    assert_eq!(ids(&w.ven3.ok("/events").await), [id(&all)]);
    // The BL moves VEN3 into the south group: what VEN3 reads follows at once, at every
    // page depth.
    let v3 = w.ven3.ok("/vens").await[0].clone();
    let (s, _) =
        w.bl.send(
            Method::PUT,
            &format!("/vens/{}", id(&v3)),
            Some(json!({"objectType": "BL_VEN_REQUEST", "clientID": VEN3.0,
                "venName": "ven-none", "targets": ["south"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&w.ven3.ok("/events").await), [id(&south), id(&all)]);
    assert_eq!(ids(&w.ven3.ok("/events?skip=1").await), [id(&all)]);
    assert_eq!(ids(&w.bl.ok("/events").await).len(), 4);
    assert_eq!(
        w.ven2.get(&format!("/events/{}", id(&north))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.ven1.ok(&format!("/events/{}", id(&north))).await, north);

    // Query filters and pagination.
    assert_eq!(
        ids(&w.bl.ok("/events?targets=south&targets=north").await),
        [id(&north), id(&south)]
    );
    assert_eq!(
        ids(&w.bl.ok("/events?skip=1&limit=2").await),
        [id(&by_resource), id(&south)]
    );
    assert_eq!(
        ids(&w
            .bl
            .ok(&format!("/events?programID={}", pid.as_str().unwrap()))
            .await)
        .len(),
        4
    );
    assert!(ids(&w.bl.ok("/events?programID=nope").await).is_empty());
    assert_eq!(w.bl.ok("/events?limit=0").await, json!([]));
    // The events are in 2030: all still active.
    assert_eq!(ids(&w.bl.ok("/events?active=true").await).len(), 4);

    // Reports: VENs write their own, BL reads all, no VEN reads another's.
    let report = w
        .ven1
        .create("/reports", report_body(&north["id"], "ven-north"))
        .await;
    assert_eq!(report["clientID"], VEN1.0);
    assert_eq!(report["objectType"], "REPORT");
    let rid = id(&report);
    assert_eq!(
        w.ven2.get(&format!("/reports/{rid}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(ids(&w.ven2.ok("/reports").await).is_empty());
    assert_eq!(
        ids(&w.ven1.ok("/reports").await),
        std::slice::from_ref(&rid)
    );
    assert_eq!(
        ids(&w.bl.ok(&format!("/reports?eventID={}", id(&north))).await),
        std::slice::from_ref(&rid)
    );
    assert_eq!(
        ids(&w.bl.ok("/reports?clientName=ven-north").await),
        std::slice::from_ref(&rid)
    );
    assert!(ids(&w.bl.ok(&format!("/reports?eventID={}", id(&south))).await).is_empty());
    assert_eq!(
        ids(&w
            .bl
            .ok(&format!("/reports?programID={}", pid.as_str().unwrap()))
            .await),
        std::slice::from_ref(&rid)
    );
    // A VEN cannot report on an event it cannot see.
    let (s, p) = w
        .ven1
        .send(
            Method::POST,
            "/reports",
            Some(report_body(&south["id"], "ven-north")),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::CONFLICT, Some("eventID"))
    );
    let mut changed = report_body(&north["id"], "ven-north");
    changed["reportName"] = json!("usage v2");
    let (s, upd) = w
        .ven1
        .send(
            Method::PUT,
            &format!("/reports/{rid}"),
            Some(changed.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{upd}");
    assert_eq!(
        (
            upd["reportName"].as_str(),
            upd["createdDateTime"] == report["createdDateTime"]
        ),
        (Some("usage v2"), true)
    );
    assert_eq!(
        w.ven2
            .send(Method::PUT, &format!("/reports/{rid}"), Some(changed))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // VENs and resources: each VEN sees only its own.
    assert_eq!(ids(&w.ven1.ok("/vens").await), [id(&w.ven1_obj)]);
    assert_eq!(ids(&w.bl.ok("/vens").await).len(), 3);
    assert_eq!(
        ids(&w.bl.ok("/vens?venName=ven-south").await),
        [id(&w.ven2_obj)]
    );
    assert_eq!(
        w.ven1.get(&format!("/vens/{}", id(&w.ven2_obj))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.ven2
            .get(&format!("/resources/{}", id(&w.resource1)))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(ids(&w.ven2.ok("/resources").await).is_empty());
    assert_eq!(w.resource1["clientID"], VEN1.0);
    assert_eq!(w.resource1["venID"], w.ven1_obj["id"]);
    assert_eq!(
        ids(&w
            .bl
            .ok(&format!("/resources?venID={}", id(&w.ven1_obj)))
            .await),
        [id(&w.resource1)]
    );
    // A VEN may rename itself but keeps the targets the BL gave it.
    let (s, v) = w
        .ven1
        .send(
            Method::PUT,
            &format!("/vens/{}", id(&w.ven1_obj)),
            Some(json!({"objectType": "VEN_VEN_REQUEST", "venName": "ven-north-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["targets"], json!(["north"]));
    // A VEN cannot add a resource to another VEN.
    let (s, _) = w
        .ven2
        .send(
            Method::POST,
            "/resources",
            Some(json!({"objectType": "VEN_RESOURCE_REQUEST",
        "resourceName": "sneaky", "venID": w.ven1_obj["id"]})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Deleting an event hides it; deleting a program takes its events with it.
    let (s, gone) =
        w.bl.send(Method::DELETE, &format!("/events/{}", id(&all)), None)
            .await;
    assert_eq!((s, gone["id"].clone()), (StatusCode::OK, all["id"].clone()));
    assert_eq!(ids(&w.ven3.ok("/events").await), [id(&south)]);
    assert_eq!(
        w.bl.send(
            Method::DELETE,
            &format!("/programs/{}", pid.as_str().unwrap()),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert!(ids(&w.bl.ok("/events").await).is_empty());
    assert_eq!(
        w.bl.get(&format!("/programs/{}", pid.as_str().unwrap()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    server.stop().await.unwrap();
}

fn token_signed(key: &str, client: &str, role: ClientRole, exp_offset: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = Claims {
        sub: client.into(),
        role,
        iat: now as u64,
        exp: (now + exp_offset) as u64,
        iss: ISSUER.into(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Counts of every object kind as the BL sees them.
async fn census(bl: &Oadr) -> Vec<usize> {
    let mut out = Vec::new();
    for p in [
        "/programs",
        "/events",
        "/reports",
        "/subscriptions",
        "/vens",
        "/resources",
    ] {
        out.push(bl.ok(p).await.as_array().unwrap().len());
    }
    out
}

async fn bad_input_is_refused_and_changes_nothing(db: TestDb) {
    let (server, base) = start(&db, |_| {}).await;
    let record = Record::default();
    let w = world(&base, &record).await;
    let pid = w.program["id"].clone();
    let ev =
        w.bl.create("/events", event_body(&pid, "e", Some(&["north"])))
            .await;
    let rep = w
        .ven1
        .create("/reports", report_body(&ev["id"], "ven-north"))
        .await;
    let sub = w.ven1.create("/subscriptions", json!({"clientName": "ven-north",
        "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "http://127.0.0.1:9/cb"}]})).await;
    let before = census(&w.bl).await;

    let expect = |what: &str, got: (StatusCode, Value), status: StatusCode, field: Option<&str>| {
        assert_eq!(got.0, status, "{what}: {}", got.1);
        assert_eq!(
            got.1["status"],
            status.as_u16(),
            "{what}: problem body {}",
            got.1
        );
        if let Some(f) = field {
            assert_eq!(got.1["field"].as_str(), Some(f), "{what}: {}", got.1);
        }
    };

    // Malformed JSON, wrong shapes, unknown enum values.
    expect(
        "malformed",
        w.bl.send_raw(Method::POST, "/events", b"{\"programID\": ".to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        None,
    );
    expect(
        "missing programName",
        w.bl.send(
            Method::POST,
            "/programs",
            Some(json!({"intervalPeriod": {}})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("programName"),
    );
    expect("unknown operation", w.ven1.send(Method::POST, "/subscriptions", Some(json!({"clientName": "c",
        "objectOperations": [{"objects": ["EVENT"], "operations": ["EXPLODE"], "callbackUrl": "http://x.example/cb"}]}))).await,
        StatusCode::BAD_REQUEST, Some("objectOperations[0].operations[0]"));
    expect("unknown object type", w.ven1.send(Method::POST, "/subscriptions", Some(json!({"clientName": "c",
        "objectOperations": [{"objects": ["WIDGET"], "operations": ["CREATE"], "callbackUrl": "http://x.example/cb"}]}))).await,
        StatusCode::BAD_REQUEST, Some("objectOperations[0].objects[0]"));
    expect(
        "unknown ven objectType",
        w.ven1
            .send(
                Method::POST,
                "/vens",
                Some(json!({"objectType": "VEN", "venName": "x"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        Some("objectType"),
    );
    expect(
        "unknown objects filter",
        w.bl.get("/subscriptions?objects=WIDGET").await,
        StatusCode::BAD_REQUEST,
        Some("objects"),
    );
    expect(
        "limit above 50",
        w.bl.get("/events?limit=51").await,
        StatusCode::BAD_REQUEST,
        Some("limit"),
    );
    expect(
        "negative skip",
        w.bl.get("/events?skip=-1").await,
        StatusCode::BAD_REQUEST,
        Some("skip"),
    );
    expect(
        "bad path id",
        w.bl.get("/events/a%20b").await,
        StatusCode::BAD_REQUEST,
        Some("eventID"),
    );

    // Inverted and zero-length intervals, bad durations and date-times.
    for (period, field) in [
        (
            json!({"start": "2030-06-01T16:00:00Z", "duration": "-PT1H"}),
            "intervalPeriod.duration",
        ),
        (
            json!({"start": "2030-06-01T16:00:00Z", "duration": "PT0S"}),
            "intervalPeriod.duration",
        ),
        (
            json!({"start": "2030-06-01T16:00:00Z", "duration": "an hour"}),
            "intervalPeriod.duration",
        ),
        (
            json!({"start": "June 1st", "duration": "PT1H"}),
            "intervalPeriod.start",
        ),
    ] {
        let mut e = event_body(&pid, "bad", None);
        e["intervalPeriod"] = period;
        expect(
            field,
            w.bl.send(Method::POST, "/events", Some(e)).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }
    let mut e = event_body(&pid, "bad", None);
    e["intervals"][1]["intervalPeriod"] = json!({"duration": "PT0S"});
    expect(
        "zero interval",
        w.bl.send(Method::POST, "/events", Some(e)).await,
        StatusCode::BAD_REQUEST,
        Some("intervals[1].intervalPeriod.duration"),
    );
    // Targets that match no VEN or resource.
    expect(
        "targets match nothing",
        w.bl.send(
            Method::POST,
            "/events",
            Some(event_body(&pid, "x", Some(&["atlantis"]))),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("targets"),
    );
    // An event for a program that does not exist.
    expect(
        "unknown program",
        w.bl.send(
            Method::POST,
            "/events",
            Some(event_body(&json!("nope"), "x", None)),
        )
        .await,
        StatusCode::CONFLICT,
        Some("programID"),
    );

    // Wrong roles: 403.
    expect(
        "VEN creates program",
        w.ven1
            .send(
                Method::POST,
                "/programs",
                Some(json!({"programName": "mine"})),
            )
            .await,
        StatusCode::FORBIDDEN,
        None,
    );
    expect(
        "VEN creates event",
        w.ven1
            .send(Method::POST, "/events", Some(event_body(&pid, "x", None)))
            .await,
        StatusCode::FORBIDDEN,
        None,
    );
    expect(
        "VEN deletes event",
        w.ven1
            .send(
                Method::DELETE,
                &format!("/events/{}", ev["id"].as_str().unwrap()),
                None,
            )
            .await,
        StatusCode::FORBIDDEN,
        None,
    );
    expect(
        "BL writes report",
        w.bl.send(Method::POST, "/reports", Some(report_body(&ev["id"], "bl")))
            .await,
        StatusCode::FORBIDDEN,
        None,
    );
    expect("VEN sets its own targets", w.ven1.send(Method::PUT, &format!("/vens/{}", w.ven1_obj["id"].as_str().unwrap()),
        Some(json!({"objectType": "BL_VEN_REQUEST", "clientID": VEN1.0, "venName": "ven-north", "targets": ["south"]}))).await, StatusCode::FORBIDDEN, None);

    // Another VEN's objects: 404, whether read, changed or deleted.
    let other = |p: &str, id: &Value| format!("{p}/{}", id.as_str().unwrap());
    for path in [
        other("/vens", &w.ven1_obj["id"]),
        other("/resources", &w.resource1["id"]),
        other("/reports", &rep["id"]),
        other("/subscriptions", &sub["id"]),
    ] {
        expect(&path, w.ven2.get(&path).await, StatusCode::NOT_FOUND, None);
        expect(
            &path,
            w.ven2.send(Method::DELETE, &path, None).await,
            StatusCode::NOT_FOUND,
            None,
        );
    }

    // Tokens: missing, expired, signed with another key, garbage: 401.
    let anon = w.bl.with_token("");
    let (s, _) = anon.get("/events").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let expired =
        w.bl.with_token(&token_signed(SECRET, BL.0, ClientRole::Bl, -10));
    expect(
        "expired",
        expired.get("/events").await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    let forged =
        w.bl.with_token(&token_signed("another-key", BL.0, ClientRole::Bl, 3600));
    expect(
        "wrong key",
        forged
            .send(
                Method::POST,
                "/programs",
                Some(json!({"programName": "forged"})),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    expect(
        "garbage token",
        w.bl.with_token("abc.def.ghi").get("/programs").await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    // A token signed with our key still works, which shows the two above failed for the
    // reason tested.
    assert_eq!(
        w.bl.with_token(&token_signed(SECRET, BL.0, ClientRole::Bl, 3600))
            .get("/programs")
            .await
            .0,
        StatusCode::OK
    );

    // Oversized body: 413.
    let mut big = json!({"programName": "big"});
    big["attributes"] = json!([{"type": "NOTE", "values": ["x".repeat(70 * 1024)]}]);
    expect(
        "oversized",
        w.bl.send(Method::POST, "/programs", Some(big)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        None,
    );

    // Duplicate names: 409.
    expect(
        "duplicate program",
        w.bl.send(
            Method::POST,
            "/programs",
            Some(json!({"programName": "ResTOU"})),
        )
        .await,
        StatusCode::CONFLICT,
        Some("programName"),
    );
    expect(
        "duplicate ven",
        w.ven3
            .send(
                Method::POST,
                "/vens",
                Some(json!({"objectType": "VEN_VEN_REQUEST", "venName": "ven-south"})),
            )
            .await,
        StatusCode::CONFLICT,
        Some("venName"),
    );
    expect(
        "duplicate resource",
        w.ven1
            .send(
                Method::POST,
                "/resources",
                Some(json!({"objectType": "VEN_RESOURCE_REQUEST",
        "resourceName": "battery-1", "venID": w.ven1_obj["id"]})),
            )
            .await,
        StatusCode::CONFLICT,
        Some("resourceName"),
    );
    let other_prog =
        w.bl.create("/programs", json!({"programName": "Other"}))
            .await;
    expect(
        "rename onto existing",
        w.bl.send(
            Method::PUT,
            &other("/programs", &other_prog["id"]),
            Some(json!({"programName": "ResTOU"})),
        )
        .await,
        StatusCode::CONFLICT,
        Some("programName"),
    );
    let (s, _) =
        w.bl.send(Method::DELETE, &other("/programs", &other_prog["id"]), None)
            .await;
    assert_eq!(s, StatusCode::OK);

    // None of it changed anything.
    assert_eq!(census(&w.bl).await, before);
    assert_eq!(
        w.ven1.ok(&other("/vens", &w.ven1_obj["id"])).await["targets"],
        json!(["north"])
    );
    server.stop().await.unwrap();
}

async fn objects_survive_a_restart(db: TestDb) {
    let (server, base) = start(&db, |_| {}).await;
    let record = Record::default();
    let w = world(&base, &record).await;
    let ev =
        w.bl.create(
            "/events",
            event_body(&w.program["id"], "kept", Some(&["north"])),
        )
        .await;
    let rep = w
        .ven1
        .create("/reports", report_body(&ev["id"], "ven-north"))
        .await;
    server.stop().await.unwrap();

    let (server, base) = restart(&db).await;
    let ven1 = Oadr::login(&base, VEN1, &record).await;
    let ven2 = Oadr::login(&base, VEN2, &record).await;
    assert_eq!(ven1.ok("/events").await, json!([ev]));
    // Targets are rebuilt from the stored VENs: VEN2 still does not see VEN1's event.
    assert_eq!(ven2.ok("/events").await, json!([]));
    assert_eq!(
        ven1.ok(&format!("/reports/{}", rep["id"].as_str().unwrap()))
            .await,
        rep
    );
    // Names stay unique across the restart.
    let bl = Oadr::login(&base, BL, &record).await;
    assert_eq!(
        bl.send(
            Method::POST,
            "/programs",
            Some(json!({"programName": "ResTOU"}))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn token_endpoint_follows_oauth2() {
    let db = TestDb::sqlite().await;
    let (server, base) = start(&db, |_| {}).await;
    let http = reqwest::Client::new();
    let form = |pairs: &[(&str, &str)]| {
        http.post(format!("{base}/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(common::openadr3::form(pairs))
            .send()
    };
    let r = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", BL.0),
        ("client_secret", "wrong"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let r = form(&[
        ("grant_type", "password"),
        ("client_id", BL.0),
        ("client_secret", BL.1),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    let r = form(&[("client_id", BL.0)]).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // HTTP Basic client authentication (RFC 6749 section 2.3.1).
    let r = http
        .post(format!("{base}/auth/token"))
        .basic_auth(VEN1.0, Some(VEN1.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(common::openadr3::form(&[(
            "grant_type",
            "client_credentials",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        (t["token_type"].as_str(), t["expires_in"].as_u64()),
        (Some("Bearer"), Some(3600))
    );
    let info: Value = http
        .get(format!("{base}/auth/server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["tokenURL"].as_str(),
        Some(format!("{base}/auth/token").as_str())
    );
    // The served document is the one implemented: no MQTT paths, servers pointing here.
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/events"].is_object());
    assert!(
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("/notifiers/mqtt"))
    );
    assert_eq!(doc["servers"][0]["url"], "/openadr3/3.1.0");
    server.stop().await.unwrap();
}
