//! OpenADR 3 test clients: a VTN started with one BL and three VEN clients, and a small
//! JSON client that records every exchange (the schema-conformance test replays the record
//! against the official document).

use super::{TestDb, install_tls_provider};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use switchyard::app::{self, RunningServer};
use switchyard::config::Config;
use switchyard::protocol::openadr3::PREFIX;
use switchyard::protocol::openadr3::config::{ClientConfig, ClientRole};

pub const SECRET: &str = "test-openadr3-signing-key";
pub const BL: (&str, &str) = ("bl-utility", "bl-secret");
pub const VEN1: (&str, &str) = ("ven-one", "ven1-secret");
pub const VEN2: (&str, &str) = ("ven-two", "ven2-secret");
pub const VEN3: (&str, &str) = ("ven-three", "ven3-secret");

/// One recorded exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: Method,
    /// The path below the prefix, without the query.
    pub path: String,
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

pub type Record = Arc<Mutex<Vec<Exchange>>>;

/// The test's OpenADR 3 configuration.
pub fn configure(config: &mut Config) {
    config.openadr3.enabled = true;
    config.openadr3.token_secret = SECRET.into();
    config.openadr3.body_limit_bytes = 64 * 1024;
    config.openadr3.notifications.initial_backoff_ms = 50;
    config.openadr3.notifications.timeout_seconds = 5;
    config.openadr3.clients = [
        (BL, ClientRole::Bl),
        (VEN1, ClientRole::Ven),
        (VEN2, ClientRole::Ven),
        (VEN3, ClientRole::Ven),
    ]
    .into_iter()
    .map(|((id, secret), role)| ClientConfig {
        client_id: id.into(),
        client_secret: secret.into(),
        role,
    })
    .collect();
}

/// Starts a server with the VTN enabled; returns it and the API base URL (with prefix).
pub async fn start(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> (RunningServer, String) {
    start_with(db.registry().await, adjust).await
}

/// As [`start`], over a fresh pool on `db` (a stopped server closes the pool it had).
pub async fn restart(db: &TestDb) -> (RunningServer, String) {
    let store = switchyard::store::Store::open(&db.url, 4)
        .await
        .expect("reopen store");
    let registry = switchyard::registry::Registry::open(store)
        .await
        .expect("registry");
    start_with(registry, |_| {}).await
}

async fn start_with(
    registry: switchyard::registry::Registry,
    adjust: impl FnOnce(&mut Config),
) -> (RunningServer, String) {
    install_tls_provider();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace_seconds = 5;
    configure(&mut config);
    adjust(&mut config);
    let server = app::start(&config, registry).await.expect("start server");
    let base = format!("http://{}{PREFIX}", server.addr);
    (server, base)
}

/// A client of the API holding one access token.
#[derive(Clone)]
pub struct Oadr {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub record: Record,
}

impl Oadr {
    /// Obtains a token for `(id, secret)` at the token endpoint.
    pub async fn login(base: &str, creds: (&str, &str), record: &Record) -> Oadr {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds.0),
                ("client_secret", creds.1),
            ]))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "token for {}: {body}", creds.0);
        record.lock().unwrap().push(Exchange {
            method: Method::POST,
            path: "/auth/token".into(),
            status,
            content_type: "application/json".into(),
            body: body.clone(),
        });
        Oadr {
            http,
            base: base.into(),
            token: body["access_token"].as_str().unwrap().into(),
            record: record.clone(),
        }
    }
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl Oadr {
    /// The same client with another bearer token.
    pub fn with_token(&self, token: &str) -> Oadr {
        Oadr {
            token: token.into(),
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(method, path, req).await
    }

    /// Sends a raw body with the given content type.
    pub async fn send_raw(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body);
        self.finish(method, path, req).await
    }

    async fn finish(
        &self,
        method: Method,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.record.lock().unwrap().push(Exchange {
            method,
            path: path.split('?').next().unwrap().into(),
            status,
            content_type,
            body: body.clone(),
        });
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    /// GET that must succeed.
    pub async fn ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// POST that must create.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.send(Method::POST, path, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
        v
    }
}

/// The ids of a JSON array of objects.
pub fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// A small world: a program, three VENs (VEN1 in group "north" with resource "battery-1",
/// VEN2 in group "south", VEN3 with no targets), and the clients to act as each.
pub struct World {
    pub bl: Oadr,
    pub ven1: Oadr,
    pub ven2: Oadr,
    pub ven3: Oadr,
    pub program: Value,
    pub ven1_obj: Value,
    pub ven2_obj: Value,
    pub resource1: Value,
}

pub async fn world(base: &str, record: &Record) -> World {
    let bl = Oadr::login(base, BL, record).await;
    let ven1 = Oadr::login(base, VEN1, record).await;
    let ven2 = Oadr::login(base, VEN2, record).await;
    let ven3 = Oadr::login(base, VEN3, record).await;
    let program = bl
        .create(
            "/programs",
            serde_json::json!({
                "programName": "ResTOU",
                "intervalPeriod": {"start": "2030-01-01T00:00:00Z", "duration": "P1Y"},
                "programDescriptions": [{"URL": "https://utility.example/restou"}],
                "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "PRICE", "units": "KWH", "currency": "USD"}]
            }),
        )
        .await;
    // Each VEN registers itself; the BL then assigns its group.
    let v1 = ven1
        .create(
            "/vens",
            serde_json::json!({"objectType": "VEN_VEN_REQUEST", "venName": "ven-north"}),
        )
        .await;
    let v2 = ven2
        .create(
            "/vens",
            serde_json::json!({"objectType": "VEN_VEN_REQUEST", "venName": "ven-south"}),
        )
        .await;
    ven3.create(
        "/vens",
        serde_json::json!({"objectType": "VEN_VEN_REQUEST", "venName": "ven-none"}),
    )
    .await;
    let (s, ven1_obj) = bl
        .send(
            Method::PUT,
            &format!("/vens/{}", v1["id"].as_str().unwrap()),
            Some(
                serde_json::json!({"objectType": "BL_VEN_REQUEST", "clientID": VEN1.0,
                "venName": "ven-north", "targets": ["north"]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ven1_obj}");
    let (s, ven2_obj) = bl
        .send(
            Method::PUT,
            &format!("/vens/{}", v2["id"].as_str().unwrap()),
            Some(
                serde_json::json!({"objectType": "BL_VEN_REQUEST", "clientID": VEN2.0,
                "venName": "ven-south", "targets": ["south"]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{ven2_obj}");
    let resource1 = ven1
        .create(
            "/resources",
            serde_json::json!({"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "battery-1",
                "venID": ven1_obj["id"], "attributes": [{"type": "STORAGE_MAX_DISCHARGE_POWER", "values": [5.0]}]}),
        )
        .await;
    World {
        bl,
        ven1,
        ven2,
        ven3,
        program,
        ven1_obj,
        ven2_obj,
        resource1,
    }
}

/// An event body for `program_id` aimed at `targets` (None: untargeted).
pub fn event_body(program_id: &Value, name: &str, targets: Option<&[&str]>) -> Value {
    let mut e = serde_json::json!({
        "programID": program_id,
        "eventName": name,
        "intervalPeriod": {"start": "2030-06-01T16:00:00Z", "duration": "PT1H"},
        "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "EXPORT_CAPACITY_LIMIT", "units": "KW"}],
        "reportDescriptors": [{"payloadType": "USAGE", "readingType": "DIRECT_READ", "units": "KWH"}],
        "intervals": [
            {"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [3.5]}]},
            {"id": 1, "payloads": [{"type": "SIMPLE", "values": [1]}]}
        ]
    });
    if let Some(t) = targets {
        e["targets"] = serde_json::json!(t);
    }
    e
}

/// A report body for `event_id`.
pub fn report_body(event_id: &Value, client_name: &str) -> Value {
    serde_json::json!({
        "eventID": event_id,
        "clientName": client_name,
        "reportName": "usage",
        "payloadDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "readingType": "DIRECT_READ", "units": "KWH", "confidence": 90}],
        "resources": [{
            "resourceName": "battery-1",
            "intervalPeriod": {"start": "2030-06-01T16:00:00Z", "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [1.25]}]}]
        }]
    })
}
