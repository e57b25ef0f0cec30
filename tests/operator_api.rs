//! The operator API over a real socket: CRUD, roles, every bad-input case, the OpenAPI
//! document, and that refused requests change nothing. Runs on SQLite and PostgreSQL.

mod common;

use common::api::ApiClient;
use common::{OPERATOR_TOKEN, READER_TOKEN, TestDb, start_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    crud_over_http,
    authentication_and_roles,
    bad_input_gets_precise_errors_and_changes_nothing,
    openapi_describes_every_served_route,
    csv_import_and_inventory_export_over_http,
);

async fn setup(db: &TestDb, body_limit: usize) -> (switchyard::app::RunningServer, ApiClient) {
    let (server, base) = start_server(db, body_limit).await;
    (server, ApiClient::new(base))
}

async fn seed(api: &ApiClient) {
    let (s, _) = api
        .call(Method::POST, "/api/v1/accounts", Some(json!({"id": "a1", "account_number": "ACC-1", "name": "Alice", "kind": "residential"})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .call(Method::POST, "/api/v1/sites", Some(json!({"id": "s1", "account_id": "a1", "connection_point_id": "NMI0001", "territory": "NORTH", "interconnection_type": "nem", "grid_location": {"substation": "SUB", "feeder": "F1"}})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = api
        .call(Method::POST, "/api/v1/ders", Some(json!({"id": "d1", "site_id": "s1", "der_class": "battery", "manufacturer": "Acme", "model": "B", "serial": "SN1", "rated_kw": 5.0, "storage_kwh": 13.5, "status": "active"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

async fn der_count(api: &ApiClient) -> usize {
    let (s, body) = api.call(Method::GET, "/api/v1/ders?limit=1000", None).await;
    assert_eq!(s, StatusCode::OK);
    body["items"].as_array().unwrap().len()
}

fn problem(body: &Value) -> (&str, u64) {
    (
        body["field"].as_str().unwrap_or(""),
        body["status"].as_u64().unwrap_or(0),
    )
}

async fn crud_over_http(db: TestDb) {
    let (server, api) = setup(&db, 64 * 1024).await;
    seed(&api).await;
    let resp = api
        .http
        .post(format!("{}/api/v1/meters", api.base))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"site_id": "s1", "mpid": "MP1", "revenue_grade": true, "interval_seconds": 900}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/meters/{}", created["id"].as_str().unwrap())
    );
    let (s, got) = api.call(Method::GET, &location, None).await;
    assert_eq!((s, got["mpid"].as_str()), (StatusCode::OK, Some("MP1")));

    // Merge patch: change one nested field, keep the rest.
    let (s, _, patched) = api
        .send_bytes(
            Method::PATCH,
            "/api/v1/sites/s1",
            "application/merge-patch+json",
            br#"{"grid_location": {"feeder": "F2"}, "address": "1 Main St"}"#.to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["grid_location"],
        json!({"substation": "SUB", "feeder": "F2", "feeder_section": null, "transformer": null})
    );
    assert_eq!(patched["address"], "1 Main St");

    let (s, list) = api.call(Method::GET, "/api/v1/sites?feeder=F2", None).await;
    assert_eq!(
        (s, list["items"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (_, list) = api.call(Method::GET, "/api/v1/sites?feeder=F1", None).await;
    assert!(list["items"].as_array().unwrap().is_empty());

    // Groups and their aggregate over HTTP.
    let (s, _) = api.call(Method::POST, "/api/v1/groups", Some(json!({"id": "g", "name": "F2 batteries", "der_class": "battery", "grid_location": {"feeder": "F2"}}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, agg) = api
        .call(Method::GET, "/api/v1/groups/g/aggregate", None)
        .await;
    assert_eq!(
        agg,
        json!({"group_id": "g", "der_count": 1, "rated_kw": 5.0, "storage_kwh": 13.5})
    );
    let (_, members) = api
        .call(Method::GET, "/api/v1/groups/g/members", None)
        .await;
    assert_eq!(members["items"][0]["id"], "d1");

    let (s, _) = api.call(Method::DELETE, &location, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = api.call(Method::GET, &location, None).await;
    assert_eq!(
        (s, body["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    server.stop().await.unwrap();
}

async fn authentication_and_roles(db: TestDb) {
    let (server, api) = setup(&db, 64 * 1024).await;
    seed(&api).await;
    let (s, body) = api.send(None, Method::GET, "/api/v1/ders", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["type"], "urn:switchyard:problem:unauthorized");
    let (s, _) = api
        .send(Some("not-a-token"), Method::GET, "/api/v1/ders", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .send(Some(READER_TOKEN), Method::GET, "/api/v1/ders", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = api
        .send(Some(READER_TOKEN), Method::DELETE, "/api/v1/ders/d1", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, _) = api
        .send(
            Some(READER_TOKEN),
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"account_number": "X", "name": "X", "kind": "residential"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        der_count(&api).await,
        1,
        "the read-only delete changed nothing"
    );
    // Health and the API document are public.
    let (s, _) = api.send(None, Method::GET, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    server.stop().await.unwrap();
}

async fn bad_input_gets_precise_errors_and_changes_nothing(db: TestDb) {
    let (server, api) = setup(&db, 4096).await;
    seed(&api).await;
    let good = json!({"site_id": "s1", "der_class": "battery", "manufacturer": "Acme", "model": "B", "serial": "SN2", "rated_kw": 5.0, "storage_kwh": 10.0, "status": "active"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };

    // Malformed JSON: 400.
    let (s, _, body) = api
        .send_bytes(
            Method::POST,
            "/api/v1/ders",
            "application/json",
            b"{\"site_id\": ".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // Unknown enum value: 422 naming der_class.
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("der_class", json!("fusion_reactor"))),
        )
        .await;
    assert_eq!(
        (s, problem(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, ("der_class", 422)),
        "{body}"
    );
    // Negative and absurd ratings.
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("rated_kw", json!(-5))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "rated_kw"),
        "{body}"
    );
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("rated_kw", json!(5.0e7))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "rated_kw"),
        "{body}"
    );
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("reserve_pct", json!(140))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "reserve_pct"),
        "{body}"
    );
    // Wrong type and unknown field.
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("rated_kw", json!("lots"))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "rated_kw"),
        "{body}"
    );
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("colour", json!("red"))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "colour"),
        "{body}"
    );
    // Duplicate identifiers: 409.
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("serial", json!("SN1"))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::CONFLICT, "serial"),
        "{body}"
    );
    let (s, body) = api
        .call(Method::POST, "/api/v1/ders", Some(with("id", json!("d1"))))
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::CONFLICT, "id"),
        "{body}"
    );
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"account_number": "ACC-1", "name": "Again", "kind": "residential"})),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::CONFLICT, "account_number"),
        "{body}"
    );
    // Reference to a missing object: 422.
    let (s, body) = api
        .call(
            Method::POST,
            "/api/v1/ders",
            Some(with("site_id", json!("nowhere"))),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "site_id"),
        "{body}"
    );
    // Oversized body: 413.
    let mut big = good.clone();
    big["model"] = json!("x".repeat(8000));
    let (s, _, body) = api
        .send_bytes(
            Method::POST,
            "/api/v1/ders",
            "application/json",
            serde_json::to_vec(&big).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Wrong content type: 415.
    let (s, _, _) = api
        .send_bytes(
            Method::POST,
            "/api/v1/ders",
            "text/plain",
            serde_json::to_vec(&good).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Bad list parameters: 400.
    let (s, body) = api
        .call(Method::GET, "/api/v1/ders?der_class=fusion", None)
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::BAD_REQUEST, "der_class")
    );
    let (s, body) = api.call(Method::GET, "/api/v1/ders?limit=0", None).await;
    assert_eq!((s, problem(&body).0), (StatusCode::BAD_REQUEST, "limit"));
    let (s, body) = api.call(Method::GET, "/api/v1/ders?colour=red", None).await;
    assert_eq!((s, problem(&body).0), (StatusCode::BAD_REQUEST, "colour"));
    // Deleting something still referenced: 409, and it stays.
    let (s, _) = api.call(Method::DELETE, "/api/v1/sites/s1", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api.call(Method::GET, "/api/v1/sites/s1", None).await;
    assert_eq!(s, StatusCode::OK);
    // A bad patch changes nothing; neither can a patch change the key.
    let (s, _, body) = api
        .send_bytes(
            Method::PATCH,
            "/api/v1/ders/d1",
            "application/merge-patch+json",
            br#"{"rated_kw": -1, "model": "changed"}"#.to_vec(),
        )
        .await;
    assert_eq!(
        (s, problem(&body).0),
        (StatusCode::UNPROCESSABLE_ENTITY, "rated_kw"),
        "{body}"
    );
    let (s, _, _) = api
        .send_bytes(
            Method::PATCH,
            "/api/v1/ders/d1",
            "application/merge-patch+json",
            br#"{"id": "d9"}"#.to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, d1) = api.call(Method::GET, "/api/v1/ders/d1", None).await;
    assert_eq!(
        (d1["rated_kw"].as_f64(), d1["model"].as_str()),
        (Some(5.0), Some("B"))
    );
    // Unknown routes and methods answer in problem+json too.
    let (s, body) = api.call(Method::GET, "/api/v1/nothing", None).await;
    assert_eq!(
        (s, body["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    let (s, _) = api
        .call(Method::PUT, "/api/v1/ders/d1", Some(good.clone()))
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    assert_eq!(
        der_count(&api).await,
        1,
        "no refused request wrote anything"
    );
    server.stop().await.unwrap();
}

async fn openapi_describes_every_served_route(db: TestDb) {
    let (server, api) = setup(&db, 64 * 1024).await;
    seed(&api).await;
    let (s, doc) = api.send(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    // The document parses as OpenAPI.
    let _: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("valid OpenAPI document");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let sample = |p: &str| -> String {
        let key = if p.contains("/groups/") {
            "g"
        } else if p.contains("/identities/") {
            "00"
        } else {
            "none"
        };
        p.replace("{key}", key)
    };
    api.call(
        Method::POST,
        "/api/v1/groups",
        Some(json!({"id": "g", "name": "g", "der_class": "battery"})),
    )
    .await;
    let mut checked = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let m: Method = method.to_uppercase().parse().unwrap();
            // Every documented operation is routed: never the 404 "no such endpoint" or 405.
            let resp = api
                .http
                .request(m.clone(), format!("{}{}", api.base, sample(path)))
                .bearer_auth(READER_TOKEN)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is documented but not served"
            );
            // Reads succeed or name a missing object; writes are refused for the reader.
            if m == Method::GET {
                assert!(
                    status.is_success()
                        || status == StatusCode::NOT_FOUND
                        || status == StatusCode::BAD_REQUEST,
                    "{method} {path}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 45, "only {checked} operations documented");
    // Something served but undocumented would show up here.
    for undocumented in ["/api/v1/ders/d1/anything", "/api/v2/ders"] {
        let (s, _) = api.call(Method::GET, undocumented, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    server.stop().await.unwrap();
}

async fn csv_import_and_inventory_export_over_http(db: TestDb) {
    let (server, api) = setup(&db, 64 * 1024).await;
    let bad = "account_number,account_name,connection_point_id,territory,interconnection_type,der_class,manufacturer,model,serial,rated_kw,storage_kwh\n\
               A1,One,NMI1,NORTH,nem,battery,Acme,B,S1,5,10\n\
               A2,Two,NMI2,NORTH,nem,battery,Acme,B,S2,abc,10\n";
    let (s, _, body) = api
        .send_bytes(
            Method::POST,
            "/api/v1/imports/assets",
            "text/csv",
            bad.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "row 3: rated_kw");
    assert_eq!(der_count(&api).await, 0);
    let (s, _, body) = api
        .send_bytes(
            Method::POST,
            "/api/v1/imports/assets",
            "text/csv",
            b"colour,size\nred,1\n".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let good = bad.replace("abc", "7");
    let (s, _, body) = api
        .send_bytes(
            Method::POST,
            "/api/v1/imports/assets",
            "text/csv",
            good.into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["ders_created"], 2);

    let resp = api
        .http
        .get(format!(
            "{}/api/v1/exports/iso-inventory?format=csv",
            api.base
        ))
        .bearer_auth(READER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("A1,,NORTH,nem,NMI1,"),
        "{text}"
    );
    let (s, rows) = api
        .call(Method::GET, "/api/v1/exports/iso-inventory", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows[1]["rated_kw"], 7.0);
    let (s, _) = api
        .call(
            Method::GET,
            "/api/v1/exports/iso-inventory?format=xml",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    server.stop().await.unwrap();
}
