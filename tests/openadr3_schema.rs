//! Schema conformance of the OpenADR 3.1 VTN: a BL and VENs exercise every endpoint,
//! success and failure, and every response body (and every webhook notification) is
//! validated against the schema the official 3.1.0 OpenAPI document gives for that
//! operation and status.
//!
//! The document's schemas are OpenAPI 3.0 dialect; they become JSON Schema draft 4 by
//! turning `nullable: true` into a `null` alternative. One defect of the document is
//! patched, and said so here and in docs/openadr3.md: `ven` is `allOf` objectMetadata and
//! BlVenRequest, whose `objectType` enums (`[PROGRAM, ..., VEN, RESOURCE]` and
//! `[BL_VEN_REQUEST]`) exclude each other, so no ven object could ever validate; likewise
//! `resource`. The server answers `objectType: "VEN"` / `"RESOURCE"` (objectMetadata's
//! reading), and the test adds those values to the request enums. Notifications are
//! checked with the document's discriminator applied (see the comment there).

mod common;

use axum::routing::post;
use common::TestDb;
use common::openadr3::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tokio::sync::mpsc;

fn document() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/openadr3/openadr3-3.1.0.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

use switchyard::protocol::openadr3::schema::denullable;

struct Spec {
    doc: Value,
    components: Value,
}

impl Spec {
    fn load() -> Spec {
        let doc = document();
        let mut components = doc["components"].clone();
        denullable(&mut components);
        // The document defect described at the top of this file.
        for (schema, value) in [("BlVenRequest", "VEN"), ("BlResourceRequest", "RESOURCE")] {
            components["schemas"][schema]["properties"]["objectType"]["enum"]
                .as_array_mut()
                .unwrap()
                .push(json!(value));
        }
        Spec { doc, components }
    }

    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut schema = schema.clone();
        denullable(&mut schema);
        let root = json!({"allOf": [schema], "components": self.components});
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The path template of the document that `path` falls under.
    fn template(&self, path: &str) -> Option<String> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.doc["paths"]
            .as_object()?
            .keys()
            .find(|t| {
                let ts: Vec<&str> = t.trim_matches('/').split('/').collect();
                ts.len() == segs.len()
                    && ts
                        .iter()
                        .zip(&segs)
                        .all(|(a, b)| a.starts_with('{') || a == b)
            })
            .cloned()
    }

    /// The response schema for (method, path, status), or why there is none.
    fn response_schema(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
    ) -> Result<Value, String> {
        let t = self
            .template(path)
            .ok_or_else(|| format!("no path of the document matches {path}"))?;
        let op = &self.doc["paths"][&t][method.as_str().to_ascii_lowercase()];
        if op.is_null() {
            return Err(format!("{method} {t} is not in the document"));
        }
        let mut resp = op["responses"][status.as_str()].clone();
        if resp.is_null() {
            return Err(format!("{method} {t} documents no {status}"));
        }
        if let Some(r) = resp["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            resp = self.doc["components"]["responses"][name].clone();
        }
        let schema = resp["content"]["application/json"]["schema"].clone();
        if schema.is_null() {
            return Err(format!(
                "{method} {t} {status} has no application/json schema"
            ));
        }
        Ok(schema)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_matches_the_official_schemas() {
    let db = TestDb::sqlite().await;
    // MQTT notifiers on, so that `/notifiers` and the topic endpoints are checked too (the
    // responses do not need the broker to be up).
    let (server, base) = start(&db, |c| {
        c.openadr3.mqtt.enabled = true;
        c.openadr3.mqtt.client_id = format!("sy-schema-{}", uuid::Uuid::new_v4().simple());
        c.openadr3.mqtt.topic_prefix = format!("sy-test/{}/", uuid::Uuid::new_v4().simple());
    })
    .await;
    let spec = Spec::load();

    // A receiver for notifications of everything.
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let app = axum::Router::new().route(
        "/cb",
        post(move |body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(serde_json::from_str(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let record = Record::default();
    let w = world(&base, &record).await;
    let everything = json!({"clientName": "bl", "objectOperations": [{
        "objects": ["PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"],
        "operations": ["CREATE", "UPDATE", "DELETE"], "callbackUrl": cb, "bearerToken": "x"}]});
    let sub = w.bl.create("/subscriptions", everything.clone()).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let pid = w.program["id"].clone();
    w.ven1.ok("/notifiers").await;
    w.ven1.ok("/notifiers/mqtt/topics/programs").await;
    w.bl.ok("/notifiers/mqtt/topics/events").await;
    w.bl.ok("/notifiers/mqtt/topics/resources").await;
    w.ven1
        .ok(&format!(
            "/notifiers/mqtt/topics/programs/{}/events",
            pid.as_str().unwrap()
        ))
        .await;
    let v1 = w.ven1_obj["id"].as_str().unwrap();
    w.ven1
        .ok(&format!("/notifiers/mqtt/topics/vens/{v1}"))
        .await;
    w.ven1
        .ok(&format!("/notifiers/mqtt/topics/vens/{v1}/events"))
        .await;

    // Every operation, as the role that may do it.
    w.bl.create("/programs", json!({"programName": "Extra", "attributes": [{"type": "NOTE", "values": ["a", 1, 2.5, true, {"x": 1.0, "y": 2.0}]}]})).await;
    let ev =
        w.bl.create("/events", event_body(&pid, "north", Some(&["north"])))
            .await;
    let rep = w
        .ven1
        .create("/reports", report_body(&ev["id"], "ven-north"))
        .await;
    let vsub = w.ven1.create("/subscriptions", json!({"clientName": "ven-north", "programID": pid,
        "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE"], "callbackUrl": "http://127.0.0.1:9/x"}],
        "targets": ["north"]})).await;
    for (who, path) in [
        (&w.bl, "/programs".to_string()),
        (&w.ven1, "/programs".into()),
        (&w.bl, format!("/programs/{}", id(&w.program))),
        (&w.bl, "/events".into()),
        (&w.ven1, "/events?active=true".into()),
        (&w.bl, format!("/events/{}", id(&ev))),
        (&w.bl, "/reports".into()),
        (&w.ven1, format!("/reports/{}", id(&rep))),
        (&w.bl, "/subscriptions".into()),
        (&w.ven1, format!("/subscriptions/{}", id(&vsub))),
        (&w.bl, "/vens".into()),
        (&w.ven1, format!("/vens/{}", id(&w.ven1_obj))),
        (&w.bl, "/resources".into()),
        (&w.ven1, format!("/resources/{}", id(&w.resource1))),
        (&w.ven1, "/notifiers".into()),
    ] {
        who.ok(&path).await;
    }
    let put = |who: &Oadr, path: String, body: Value| {
        let who = who.clone();
        async move {
            let (s, v) = who.send(Method::PUT, &path, Some(body)).await;
            assert_eq!(s, StatusCode::OK, "PUT {path}: {v}");
        }
    };
    put(
        &w.bl,
        format!("/programs/{}", id(&w.program)),
        json!({"programName": "ResTOU", "targets": ["north"]}),
    )
    .await;
    put(
        &w.bl,
        format!("/events/{}", id(&ev)),
        event_body(&pid, "north v2", Some(&["north"])),
    )
    .await;
    put(
        &w.ven1,
        format!("/reports/{}", id(&rep)),
        report_body(&ev["id"], "ven-north"),
    )
    .await;
    put(&w.bl, format!("/subscriptions/{}", id(&sub)), everything).await;
    put(&w.ven1, format!("/resources/{}", id(&w.resource1)),
        json!({"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "battery-1", "venID": w.ven1_obj["id"]})).await;

    // Failures of every documented kind.
    w.bl.send_raw(Method::POST, "/programs", b"{".to_vec())
        .await; // 400
    w.bl.get("/events?limit=99").await; // 400
    w.bl.with_token("nope").get("/events").await; // 401
    w.ven1
        .send(Method::POST, "/programs", Some(json!({"programName": "x"})))
        .await; // 403
    w.ven2.get(&format!("/reports/{}", id(&rep))).await; // 404
    w.ven2.get(&format!("/vens/{}", id(&w.ven1_obj))).await; // 404
    w.bl.send(
        Method::POST,
        "/programs",
        Some(json!({"programName": "ResTOU"})),
    )
    .await; // 409
    w.bl.send(
        Method::POST,
        "/programs",
        Some(json!({"programName": "x".repeat(100_000)})),
    )
    .await; // 413
    w.ven3
        .send(
            Method::POST,
            "/vens",
            Some(json!({"objectType": "VEN_VEN_REQUEST", "venName": "ven-north"})),
        )
        .await; // 409

    // Deletes last.
    for (who, path) in [
        (&w.ven1, format!("/reports/{}", id(&rep))),
        (&w.ven1, format!("/subscriptions/{}", id(&vsub))),
        (&w.ven1, format!("/resources/{}", id(&w.resource1))),
        (&w.bl, format!("/vens/{}", id(&w.ven2_obj))),
        (&w.bl, format!("/events/{}", id(&ev))),
        (&w.bl, format!("/programs/{}", id(&w.program))),
    ] {
        let (s, v) = who.send(Method::DELETE, &path, None).await;
        assert_eq!(s, StatusCode::OK, "DELETE {path}: {v}");
    }

    // Validate the record.
    let exchanges = record.lock().unwrap().clone();
    let mut failures = Vec::new();
    let mut statuses = BTreeSet::new();
    let mut undocumented = BTreeSet::new();
    for x in &exchanges {
        statuses.insert(x.status.as_u16());
        if !x.content_type.starts_with("application/json") {
            failures.push(format!(
                "{} {} {}: content type {}",
                x.method, x.path, x.status, x.content_type
            ));
        }
        let schema = match spec.response_schema(&x.method, &x.path, x.status) {
            Ok(s) => s,
            // 413 is not in the document (the issue asks for it), nor is 409 on POST /vens
            // although venName "is expected to be unique within the scope of a VTN"; such
            // errors must still be the document's problem shape.
            Err(why)
                if x.status == StatusCode::PAYLOAD_TOO_LARGE
                    || (x.status == StatusCode::CONFLICT && x.path == "/vens") =>
            {
                undocumented.insert(why);
                json!({"$ref": "#/components/schemas/problem"})
            }
            Err(why) => {
                failures.push(why);
                continue;
            }
        };
        if let Err(e) = spec.validate(&schema, &x.body) {
            failures.push(format!(
                "{} {} {}: {e}\n  body: {}",
                x.method, x.path, x.status, x.body
            ));
        }
    }
    // And the notifications that reached the receiver.
    let mut notifications = 0;
    // `notification.object` is a oneOf told apart by its discriminator (objectType); as
    // plain JSON Schema the oneOf is ambiguous (a subscription with a programID also
    // satisfies `event`), so the envelope is checked with the object left open and the
    // object against the schema its objectType names, as OpenAPI's discriminator means.
    let mut envelope = spec.components["schemas"]["notification"].clone();
    envelope["properties"]["object"] = json!({"type": "object"});
    let mut kinds = BTreeSet::new();
    while let Ok(Some(n)) = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv()).await
    {
        notifications += 1;
        let kind = n["objectType"].as_str().unwrap().to_string();
        kinds.insert(format!("{kind} {}", n["operation"].as_str().unwrap()));
        let object = json!({"$ref": format!("#/components/schemas/{}", kind.to_ascii_lowercase())});
        for (schema, instance) in [(&envelope, &n), (&object, &n["object"])] {
            if let Err(e) = spec.validate(schema, instance) {
                failures.push(format!("notification: {e}\n  body: {n}"));
            }
        }
        assert_eq!(n["object"]["objectType"], n["objectType"]);
    }
    assert!(
        failures.is_empty(),
        "{} of {} responses fail the schemas:\n{}",
        failures.len(),
        exchanges.len(),
        failures.join("\n")
    );
    assert_eq!(
        statuses,
        BTreeSet::from([200, 201, 400, 401, 403, 404, 409, 413]),
        "statuses exercised"
    );
    for k in [
        "PROGRAM CREATE",
        "PROGRAM UPDATE",
        "PROGRAM DELETE",
        "EVENT CREATE",
        "EVENT UPDATE",
        "EVENT DELETE",
        "REPORT CREATE",
        "REPORT UPDATE",
        "REPORT DELETE",
        "SUBSCRIPTION CREATE",
        "SUBSCRIPTION UPDATE",
        "SUBSCRIPTION DELETE",
        "VEN DELETE",
        "RESOURCE UPDATE",
        "RESOURCE DELETE",
    ] {
        assert!(kinds.contains(k), "no {k} notification; got {kinds:?}");
    }
    eprintln!(
        "{} responses and {notifications} notifications valid; undocumented statuses: {undocumented:?}",
        exchanges.len()
    );
    server.stop().await.unwrap();
}

/// The schema check itself must catch a wrong body, or passing means nothing.
#[test]
fn the_check_rejects_bodies_that_break_the_schema() {
    let spec = Spec::load();
    let program = json!({"$ref": "#/components/schemas/program"});
    let good = json!({"id": "p1", "createdDateTime": "2030-01-01T00:00:00Z",
        "modificationDateTime": "2030-01-01T00:00:00Z", "objectType": "PROGRAM", "programName": "x"});
    spec.validate(&program, &good).unwrap();
    for (field, bad) in [
        ("programName", json!(7)),
        ("createdDateTime", json!("yesterday")),
        ("objectType", json!("WIDGET")),
        ("targets", json!([""])),
    ] {
        let mut b = good.clone();
        b[field] = bad;
        assert!(spec.validate(&program, &b).is_err(), "{field} should fail");
    }
    // nullable became a null alternative.
    let mut b = good.clone();
    b["targets"] = Value::Null;
    spec.validate(&program, &b).unwrap();
    // The YAML copy in schemas/ is the official file, byte for byte.
    let ours = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/openadr3/openadr3-3.1.0.yaml"
    ))
    .unwrap();
    if let Ok(official) = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/standards/openadr3/openadr3-3.1.0.yaml"
    )) {
        assert_eq!(ours, official);
    }
}
