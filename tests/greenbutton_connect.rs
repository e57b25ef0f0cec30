//! Green Button Connect My Data client against a Data Custodian written here: a real HTTPS
//! server (axum over rustls, certificate from a test CA made with `switchyard::pki`) with
//! the OAuth2 authorization and token endpoints and the ESPI resource endpoints
//! (`Batch/Subscription/{id}`, `Batch/Bulk/{id}`, `ApplicationInformation/{id}`), serving
//! the GBA 15-day sample feed entry by entry, with `updated-min`, `max-results` and
//! `start-index`, and on demand 429s, 5xx, truncated pages and revoked tokens. On SQLite and
//! PostgreSQL, through the library and through the `switchyard greenbutton connect` CLI.
//! Then `switchyard serve` as the Third Party's web side: the redirect URI the customer's
//! browser returns to (single-use, expiring state) and the notify URI the Data Custodian
//! POSTs a BatchList to.

mod common;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::TestDb;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard::domain::{AccountKind, GridLocation, InterconnectionType, now_epoch};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest};
use switchyard::protocol::greenbutton::config::GreenButtonConfig;
use switchyard::protocol::greenbutton::connect::{Client, ConnectError, load_authorization};
use switchyard::registry::model::{Account, Meter, Site};
use switchyard::telemetry;

const CLIENT_ID: &str = "third-party-7";
const SECRET: &str = "s3cret-of-the-third-party";
const REDIRECT: &str = "https://switchyard.example/greenbutton/callback";
/// The Data Custodian's clock when the first half of the data is published.
const T1: i64 = 1_780_000_000;
/// ... and when the second half is.
const T2: i64 = T1 + 86_400;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/greenbutton/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn parse_rfc3339(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

// ---------------------------------------------------------------------------------------
// The Data Custodian
// ---------------------------------------------------------------------------------------

/// One Atom entry of the subscription, with the time the Data Custodian published it.
struct Entry {
    xml: String,
    updated: i64,
    visible: bool,
    readings: usize,
}

/// What a resource request gets instead of data, once each, in order.
#[derive(Debug, Clone, Copy)]
enum Failure {
    TooMany { retry_after: u64 },
    ServerError,
    Truncated,
}

#[derive(Default)]
struct Dc {
    header: String,
    entries: Vec<Entry>,
    clock: i64,
    access_ttl: i64,
    codes: HashMap<String, String>,
    /// Access tokens of the customer's authorization, with their expiry.
    access: HashMap<String, i64>,
    refresh: HashSet<String>,
    client_tokens: HashSet<String>,
    /// Planned failures, consumed by resource requests in order once `fail_after` more
    /// requests have been answered normally.
    failures: VecDeque<Failure>,
    fail_after: usize,
    /// Every resource request: path and query.
    log: Vec<String>,
    /// Entries served per resource request.
    served: Vec<usize>,
    /// Bodies served (for schema validation).
    bodies: Vec<String>,
    grants: Vec<String>,
    next_id: u64,
    /// After this many more successful pages, the customer revokes the authorization.
    revoke_after: Option<usize>,
    base: String,
}

type Shared = Arc<Mutex<Dc>>;

impl Dc {
    fn new() -> Dc {
        let xml = fixture("gba_electric_15min_cost_15days.xml");
        let first = xml.find("<entry").unwrap();
        let header = xml[..first].to_string();
        let mut entries = Vec::new();
        let mut rest = &xml[first..];
        while let Some(s) = rest.find("<entry") {
            let e = s + rest[s..].find("</entry>").unwrap() + "</entry>".len();
            let text = &rest[s..e];
            entries.push(Entry {
                xml: text.to_string(),
                updated: T1,
                visible: true,
                readings: text.matches("<IntervalReading>").count(),
            });
            rest = &rest[e..];
        }
        // The second half of the IntervalBlocks is published a day later.
        let blocks: Vec<usize> = (0..entries.len())
            .filter(|i| entries[*i].readings > 0)
            .collect();
        for i in &blocks[blocks.len() / 2..] {
            entries[*i].visible = false;
        }
        Dc {
            header,
            entries,
            clock: T1 + 60,
            access_ttl: 3600,
            ..Default::default()
        }
    }

    fn publish_rest(&mut self) {
        for e in self.entries.iter_mut().filter(|e| !e.visible) {
            e.visible = true;
            e.updated = T2;
        }
        self.clock = T2 + 60;
    }

    fn readings(&self, only_visible: bool) -> usize {
        self.entries
            .iter()
            .filter(|e| e.visible || !only_visible)
            .map(|e| e.readings)
            .sum()
    }

    fn token(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}-{}-{}",
            self.next_id,
            uuid::Uuid::new_v4().simple()
        )
    }

    fn issue(&mut self) -> serde_json::Value {
        let access = self.token("at");
        let refresh = self.token("rt");
        self.access
            .insert(access.clone(), now_epoch() + self.access_ttl);
        self.refresh.insert(refresh.clone());
        serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "refresh_token": refresh,
            "scope": "FB=4_5_15;IntervalDuration=900;BlockDuration=daily;HistoryLength=13",
            "resourceURI": format!("{}/DataCustodian/espi/1_1/resource/Batch/Subscription/5", self.base()),
            "authorizationURI": format!("{}/DataCustodian/espi/1_1/resource/Authorization/5", self.base()),
        })
    }

    fn base(&self) -> String {
        self.base.clone()
    }

    /// The page of visible entries updated at or after `min`.
    fn page(&self, query: &HashMap<String, String>, path: &str) -> (String, usize) {
        let min = query
            .get("updated-min")
            .or_else(|| query.get("published-min"))
            .map(|s| parse_rfc3339(s));
        let start: usize = query.get("start-index").map_or(1, |s| s.parse().unwrap());
        let max: usize = query
            .get("max-results")
            .map_or(usize::MAX, |s| s.parse().unwrap());
        let chosen: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.visible && min.is_none_or(|m| e.updated >= m))
            .collect();
        let from = (start - 1).min(chosen.len());
        let to = from.saturating_add(max).min(chosen.len());
        let updated_open = self.header.find("<updated>").unwrap();
        let updated_close = self.header.find("</updated>").unwrap() + "</updated>".len();
        let mut out = String::new();
        out.push_str(&self.header[..updated_open]);
        out.push_str(&format!("<updated>{}</updated>", rfc3339(self.clock)));
        out.push_str(&self.header[updated_close..]);
        if to < chosen.len() {
            let mut q: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| *k != "start-index")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            q.push(("start-index".into(), (to + 1).to_string()));
            let qs = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q)
                .finish();
            out.push_str(&format!(
                "<link rel=\"next\" href=\"{}{path}?{}\"/>\n",
                self.base(),
                qs.replace('&', "&amp;")
            ));
        }
        for e in &chosen[from..to] {
            let o = e.xml.find("<updated>").unwrap();
            let c = e.xml.find("</updated>").unwrap() + "</updated>".len();
            out.push_str(&e.xml[..o]);
            out.push_str(&format!("<updated>{}</updated>", rfc3339(e.updated)));
            out.push_str(&e.xml[c..]);
            out.push('\n');
        }
        out.push_str("</feed>\n");
        (out, to - from)
    }
}

async fn authorize(State(dc): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let ok = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("redirect_uri").map(String::as_str) == Some(REDIRECT)
        && q.get("scope").is_some_and(|s| s.starts_with("FB="));
    if !ok {
        return (StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    // The customer logged in and approved: back to the Third Party with a code.
    let mut dc = dc.lock().unwrap();
    let code = dc.token("code");
    dc.codes.insert(code.clone(), REDIRECT.to_string());
    let state = q.get("state").cloned().unwrap_or_default();
    let location = format!(
        "{REDIRECT}?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &state)
            .finish()
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

async fn token(State(dc): State<Shared>, headers: HeaderMap, body: String) -> Response {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut dc = dc.lock().unwrap();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    dc.grants.push(grant.clone());
    match grant.as_str() {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            match dc.codes.remove(&code) {
                Some(r) if Some(&r) == form.get("redirect_uri") => {
                    axum::Json(dc.issue()).into_response()
                }
                _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        "refresh_token" => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if !dc.refresh.contains(&rt) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let access = dc.token("at");
            let ttl = dc.access_ttl;
            dc.access.insert(access.clone(), now_epoch() + ttl);
            axum::Json(serde_json::json!({
                "access_token": access, "token_type": "Bearer", "expires_in": ttl,
            }))
            .into_response()
        }
        "client_credentials" => {
            let access = dc.token("cc");
            dc.client_tokens.insert(access.clone());
            axum::Json(serde_json::json!({
                "access_token": access, "token_type": "Bearer", "expires_in": 3600,
                "scope": "FB=34_35",
            }))
            .into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

/// Logs the request and applies the next planned failure, if one is due.
fn planned_failure(dc: &mut Dc, log: String) -> Option<Failure> {
    dc.log.push(log);
    if dc.fail_after > 0 {
        dc.fail_after -= 1;
        return None;
    }
    dc.failures.pop_front()
}

fn atom(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/atom+xml")], body).into_response()
}

async fn subscription(
    State(dc): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
) -> Response {
    let mut dc = dc.lock().unwrap();
    let token = bearer(&headers);
    match dc.access.get(&token) {
        Some(exp) if *exp > now_epoch() => {}
        _ => {
            dc.log.push(format!("401 {uri}"));
            return (StatusCode::UNAUTHORIZED, "invalid_token").into_response();
        }
    }
    if id != "5" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let failure = planned_failure(&mut dc, uri.to_string());
    let (body, n) = dc.page(&q, uri.path());
    match failure {
        Some(Failure::TooMany { retry_after }) => {
            dc.served.push(0);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry_after.to_string())],
                "slow down",
            )
                .into_response()
        }
        Some(Failure::ServerError) => {
            dc.served.push(0);
            (StatusCode::BAD_GATEWAY, "MDMS unavailable").into_response()
        }
        Some(Failure::Truncated) => {
            dc.served.push(0);
            atom(body[..body.len() / 2].to_string())
        }
        None => {
            dc.served.push(n);
            dc.bodies.push(body.clone());
            match dc.revoke_after {
                Some(1) => {
                    dc.access.clear();
                    dc.refresh.clear();
                    dc.revoke_after = None;
                }
                Some(k) => dc.revoke_after = Some(k - 1),
                None => {}
            }
            atom(body)
        }
    }
}

async fn bulk(
    State(dc): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let mut dc = dc.lock().unwrap();
    if !dc.client_tokens.contains(&bearer(&headers)) {
        return (StatusCode::UNAUTHORIZED, "invalid_token").into_response();
    }
    dc.log.push(uri.to_string());
    if id != "1" {
        return StatusCode::NOT_FOUND.into_response();
    }
    atom(fixture("abridged_electric_containerized.xml"))
}

async fn application_information(State(dc): State<Shared>, headers: HeaderMap) -> Response {
    let dc = dc.lock().unwrap();
    if !dc.client_tokens.contains(&bearer(&headers)) {
        return (StatusCode::UNAUTHORIZED, "invalid_token").into_response();
    }
    atom(fixture("gba_ApplicationInformation_entry.xml"))
}

struct TestCa {
    ca: CertificateAuthority,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let ca = CertificateAuthority::generate(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        TestCa { ca, dir }
    }
    fn pem_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// Starts the Data Custodian over HTTPS with a server certificate issued by `ca`.
async fn start_dc(ca: &TestCa) -> (Shared, String) {
    let cert = ca
        .ca
        .issue(&IssueRequest::new(
            CertKind::Server {
                dns_names: vec!["localhost".into()],
                ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            },
            "datacustodian.test",
        ))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let dc: Shared = Arc::new(Mutex::new(Dc {
        base: base.clone(),
        ..Dc::new()
    }));
    let router = Router::new()
        .route("/DataCustodian/oauth/authorize", get(authorize))
        .route("/DataCustodian/oauth/token", post(token))
        .route(
            "/DataCustodian/espi/1_1/resource/Batch/Subscription/{id}",
            get(subscription),
        )
        .route(
            "/DataCustodian/espi/1_1/resource/Batch/Bulk/{id}",
            get(bulk),
        )
        .route(
            "/DataCustodian/espi/1_1/resource/ApplicationInformation/{id}",
            get(application_information),
        )
        .with_state(dc.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = TowerToHyperService::new(router);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (dc, base)
}

fn config(base: &str, ca: &TestCa) -> GreenButtonConfig {
    GreenButtonConfig {
        client_id: CLIENT_ID.into(),
        client_secret: Some(SECRET.into()),
        authorization_endpoint: format!("{base}/DataCustodian/oauth/authorize"),
        token_endpoint: format!("{base}/DataCustodian/oauth/token"),
        resource_server: format!("{base}/DataCustodian"),
        redirect_uri: REDIRECT.into(),
        scope: "FB=4_5_15;IntervalDuration=900;BlockDuration=daily;HistoryLength=13".into(),
        client_credentials_scope: Some("FB=34_35".into()),
        ca_file: Some(ca.pem_path()),
        page_size: 5,
        max_retries: 2,
        initial_backoff_ms: 20,
        max_retry_wait_seconds: 5,
        refresh_margin_seconds: 0,
        request_timeout_seconds: 10,
        ..Default::default()
    }
}

/// The customer's side of the authorization: the browser follows the authorization URL,
/// the Data Custodian redirects to our redirect URI; returns the code (state checked).
async fn customer_approves(client: &Client, ca: &TestCa) -> String {
    let url = client.authorization_url("state-42").unwrap();
    let tls = switchyard::protocol::greenbutton::connect::tls_config(Some(
        &std::fs::read_to_string(ca.pem_path()).unwrap(),
    ))
    .unwrap();
    let browser = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND, "{url}");
    let location = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.starts_with(REDIRECT), "{location}");
    let q: HashMap<String, String> = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["state"], "state-42");
    q["code"].clone()
}

async fn meter_for(db: &TestDb, mpid: &str) -> String {
    let reg = db.registry().await;
    let n = uuid::Uuid::new_v4().simple().to_string();
    let acct = reg
        .create(Account {
            id: format!("acct-{n}"),
            account_number: format!("A-{n}"),
            subscriber_id: None,
            name: "Utility customer".into(),
            kind: AccountKind::Residential,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let site = reg
        .create(Site {
            id: format!("site-{n}"),
            account_id: acct.id,
            connection_point_id: None,
            territory: "NORTH".into(),
            interconnection_type: InterconnectionType::Nem,
            address: None,
            grid_location: GridLocation::default(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    reg.create(Meter {
        id: format!("meter-{n}"),
        site_id: site.id,
        mpid: mpid.into(),
        revenue_grade: true,
        interval_seconds: 900,
        created_at: 0,
        updated_at: 0,
    })
    .await
    .unwrap()
    .id
}

/// The meter of the GBA sample's UsagePoint (mapped by MPID).
async fn gba_meter(db: &TestDb) -> String {
    let xml = fixture("gba_electric_15min_cost_15days.xml");
    let feed = switchyard::protocol::greenbutton::parse_feed(xml.as_bytes()).unwrap();
    let up = feed.usage_points[0].id.clone();
    meter_for(db, up.trim_start_matches("urn:uuid:")).await
}

async fn stored(db: &TestDb, meter: &str) -> usize {
    telemetry::query(&db.store, meter, None, 0, i64::MAX)
        .await
        .unwrap()
        .len()
}

async fn authorized(db: &TestDb, dc_ca: &TestCa, base: &str) -> Client {
    let client = Client::new(config(base, dc_ca), db.store.clone()).unwrap();
    let code = customer_approves(&client, dc_ca).await;
    let auth = client
        .exchange_code("home-1", &code, now_epoch())
        .await
        .unwrap();
    assert!(
        auth.resource_uri
            .ends_with("/espi/1_1/resource/Batch/Subscription/5"),
        "{auth:?}"
    );
    client
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// authorize -> token -> paged fetch -> import; a restart needs no new authorization; the
/// second fetch asks only for what was updated since the first and gets only that.
async fn authorize_fetch_import_and_incremental(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    let client = authorized(&db, &ca, &base).await;

    let first = client.fetch("home-1").await.unwrap();
    let half = dc.lock().unwrap().readings(true);
    assert!(half > 0 && half < dc.lock().unwrap().readings(false));
    assert_eq!(first.outcome.inserted as usize, half);
    assert_eq!(stored(&db, &meter).await, half);
    assert_eq!(first.since, None);
    assert_eq!(first.next_since, T1 + 60, "the Data Custodian's clock");
    assert!(first.pages > 1, "paged by max-results=5: {first:?}");
    assert_eq!(first.usage_points[0].1, meter);
    {
        let dc = dc.lock().unwrap();
        assert!(
            dc.log.iter().all(|l| !l.contains("updated-min")),
            "{:?}",
            dc.log
        );
        assert_eq!(dc.served.iter().sum::<usize>() as u64, first.entries);
    }

    // Every page served is valid ESPI.
    if let Some(schema) = common::espi::espi_schema() {
        let bodies = dc.lock().unwrap().bodies.clone();
        for (i, b) in bodies.iter().enumerate() {
            schema.validate(&format!("page-{i}"), b);
        }
    }

    // A day later the rest is published. A new process (new client, same database) fetches
    // without a new authorization.
    drop(client);
    dc.lock().unwrap().publish_rest();
    let requests_before = dc.lock().unwrap().log.len();
    let client = Client::new(config(&base, &ca), db.store.clone()).unwrap();
    let second = client.fetch("home-1").await.unwrap();
    let all = dc.lock().unwrap().readings(true);
    assert_eq!(second.since, Some(T1 + 60));
    assert_eq!((second.outcome.inserted as usize), all - half);
    assert_eq!(
        second.outcome.duplicates, 0,
        "only the new data was asked for"
    );
    assert_eq!(stored(&db, &meter).await, all);
    {
        let dc = dc.lock().unwrap();
        let new: Vec<&String> = dc.log[requests_before..].iter().collect();
        assert!(
            new.iter().all(|l| l.contains(&format!(
                "updated-min={}",
                rfc3339(T1 + 60).replace(':', "%3A")
            ))),
            "{new:?}"
        );
        let served: usize = dc.served[requests_before..].iter().sum();
        assert_eq!(
            served,
            dc.entries.iter().filter(|e| e.updated == T2).count(),
            "only the entries published since: {:?} {:?}",
            dc.log,
            dc.served
        );
        assert_eq!(
            dc.grants,
            vec!["authorization_code"],
            "no new authorization or refresh was needed"
        );
    }
    // The readings are the feed's: the stored total is the series total.
    let expected = switchyard::protocol::greenbutton::series::build(
        &switchyard::protocol::greenbutton::parse_feed(
            fixture("gba_electric_15min_cost_15days.xml").as_bytes(),
        )
        .unwrap(),
    )
    .unwrap()[0]
        .summary()
        .wh_delivered;
    let total: f64 = telemetry::query(&db.store, &meter, None, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| r.value)
        .sum();
    assert_eq!(total, expected);

    // Nothing new: nothing stored, the watermark moves to the Data Custodian's clock.
    let third = client.fetch("home-1").await.unwrap();
    assert_eq!((third.outcome.inserted, third.entries), (0, 0));
    assert_eq!(third.next_since, T2 + 60);

    // Bulk and ApplicationInformation with a client-credentials token.
    let bulk_meter = meter_for(&db, "C4B46B5D-D4AC-4CD3-9E29-13717DD04140").await;
    let bulk = client.fetch_bulk("1").await.unwrap();
    assert_eq!(bulk.outcome.inserted, 8);
    assert_eq!(stored(&db, &bulk_meter).await, 8);
    let again = client.fetch_bulk("1").await.unwrap();
    assert_eq!((again.outcome.inserted, again.outcome.duplicates), (0, 8));
    let info = client.application_information("1").await.unwrap();
    assert!(info.contains("ApplicationInformation"), "{info}");
    assert_eq!(
        dc.lock()
            .unwrap()
            .grants
            .iter()
            .filter(|g| *g == "client_credentials")
            .count(),
        1,
        "the client-credentials token is reused"
    );
}

/// A page that keeps failing ends the fetch with nothing stored and the watermark kept; the
/// next fetch gets everything exactly once. A 429 is waited out for its Retry-After.
async fn failures_rate_limits_and_resume(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    let client = authorized(&db, &ca, &base).await;
    let half = dc.lock().unwrap().readings(true);

    // Page 1 is fine, page 2 fails more often than max_retries (2) allows.
    {
        let mut dc = dc.lock().unwrap();
        dc.fail_after = 1;
        dc.failures = VecDeque::from(vec![Failure::ServerError; 3]);
    }
    let err = client.fetch("home-1").await.unwrap_err();
    assert!(
        matches!(err, ConnectError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was imported"), "{err}");
    assert_eq!(stored(&db, &meter).await, 0, "page 1 was not stored alone");

    // A page that fails twice then succeeds is retried within the same fetch.
    {
        let mut dc = dc.lock().unwrap();
        dc.fail_after = 1;
        dc.failures = VecDeque::from(vec![Failure::ServerError; 2]);
    }
    let ok = client.fetch("home-1").await.unwrap();
    assert_eq!(
        ok.since, None,
        "the failed fetch did not move the watermark"
    );
    assert_eq!(
        (ok.outcome.inserted as usize, ok.outcome.duplicates),
        (half, 0)
    );
    assert_eq!(stored(&db, &meter).await, half);

    // Rate limited: the client waits the Retry-After (1 s), then carries on.
    dc.lock().unwrap().publish_rest();
    {
        let mut dc = dc.lock().unwrap();
        dc.fail_after = 0;
        dc.failures = VecDeque::from(vec![Failure::TooMany { retry_after: 1 }]);
    }
    let before = dc.lock().unwrap().log.len();
    let t = Instant::now();
    let next = client.fetch("home-1").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    let all = dc.lock().unwrap().readings(true);
    assert_eq!(next.outcome.inserted as usize, all - half);
    assert_eq!(stored(&db, &meter).await, all);
    {
        let dc = dc.lock().unwrap();
        assert_eq!(
            dc.log[before],
            dc.log[before + 1],
            "the same page asked again"
        );
    }

    // A Retry-After longer than the configured limit ends the fetch at once.
    dc.lock().unwrap().failures = VecDeque::from(vec![Failure::TooMany { retry_after: 3600 }]);
    let t = Instant::now();
    let err = client.fetch("home-1").await.unwrap_err();
    assert!(
        matches!(err, ConnectError::RateLimited { wait_s: 3600, .. }),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// Access tokens are refreshed when expired (before the request) and when refused (401);
/// a revoked authorization is reported as such, and nothing of that fetch is stored.
async fn token_refresh_and_revocation(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    dc.lock().unwrap().access_ttl = 1;
    let client = authorized(&db, &ca, &base).await;
    let first_token = load_authorization(&db.store, "home-1")
        .await
        .unwrap()
        .unwrap()
        .access_token;

    // The access token (1 s) has expired: refreshed before the first request.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    dc.lock().unwrap().access_ttl = 3600;
    client.fetch("home-1").await.unwrap();
    let half = dc.lock().unwrap().readings(true);
    assert_eq!(stored(&db, &meter).await, half);
    {
        let dc = dc.lock().unwrap();
        assert_eq!(dc.grants, vec!["authorization_code", "refresh_token"]);
        assert!(!dc.log.iter().any(|l| l.starts_with("401")), "{:?}", dc.log);
    }
    let stored_auth = load_authorization(&db.store, "home-1")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        stored_auth.access_token, first_token,
        "the new token is persisted"
    );
    assert!(stored_auth.expires_at > now_epoch() + 3000);

    // The Data Custodian drops access tokens early (the refresh token stays valid): a 401,
    // one refresh, the same request again.
    dc.lock().unwrap().access.clear();
    let r = client.fetch("home-1").await.unwrap();
    assert_eq!((r.outcome.inserted, r.entries), (0, 0));
    {
        let dc = dc.lock().unwrap();
        assert_eq!(
            dc.grants,
            vec!["authorization_code", "refresh_token", "refresh_token"]
        );
        let last = dc.log.len() - 1;
        assert!(dc.log[last - 1].starts_with("401 "), "{:?}", dc.log);
        assert_eq!(dc.log[last - 1], format!("401 {}", dc.log[last]));
    }

    // New data is published; the customer revokes the authorization after the first page
    // was served: access and refresh tokens are refused from then on.
    {
        let mut dc = dc.lock().unwrap();
        dc.publish_rest();
        dc.revoke_after = Some(1);
    }
    let err = client.fetch("home-1").await.unwrap_err();
    assert!(matches!(err, ConnectError::Revoked { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("revoked") && msg.contains("authorize again") && msg.contains("home-1"),
        "{msg}"
    );
    assert_eq!(
        stored(&db, &meter).await,
        half,
        "nothing of the first page was stored"
    );

    // Authorized again, the same data arrives completely.
    let code = customer_approves(&client, &ca).await;
    client
        .exchange_code("home-1", &code, now_epoch())
        .await
        .unwrap();
    let r = client.fetch("home-1").await.unwrap();
    assert_eq!(r.since, Some(T1 + 60), "the watermark survived the failure");
    assert_eq!(stored(&db, &meter).await, dc.lock().unwrap().readings(true));

    // Unknown authorization name: a clear error.
    let err = client.fetch("nobody").await.unwrap_err();
    assert!(
        err.to_string().contains("no authorization named 'nobody'"),
        "{err}"
    );
}

/// A Data Custodian whose certificate does not chain to the configured CA is refused before
/// any token or data is exchanged; truncated or unusable feeds store nothing.
async fn wrong_certificate_and_bad_feeds(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let impostor_ca = TestCa::new("Impostor CA");
    let (impostor, impostor_base) = start_dc(&impostor_ca).await;
    let client = Client::new(config(&impostor_base, &ca), db.store.clone()).unwrap();
    let err = client
        .exchange_code("home-1", "stolen-code", now_epoch())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Http { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(
        impostor.lock().unwrap().grants.is_empty(),
        "no request got through"
    );
    assert!(
        load_authorization(&db.store, "home-1")
            .await
            .unwrap()
            .is_none()
    );

    // A wrong client secret: the token endpoint's answer is reported.
    let (dc, base) = start_dc(&ca).await;
    let mut bad = config(&base, &ca);
    bad.client_secret = Some("wrong".into());
    let err = Client::new(bad, db.store.clone())
        .unwrap()
        .exchange_code("home-1", "x", now_epoch())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_client"), "{err}");

    // A truncated page: refused with the parser's reason; nothing stored.
    let meter = gba_meter(&db).await;
    let client = authorized(&db, &ca, &base).await;
    {
        let mut dc = dc.lock().unwrap();
        dc.fail_after = 2;
        dc.failures = VecDeque::from(vec![Failure::Truncated]);
    }
    let err = client.fetch("home-1").await.unwrap_err();
    assert!(matches!(err, ConnectError::Feed { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(stored(&db, &meter).await, 0);

    // Energy in an unknown unit: refused by name; nothing stored.
    {
        let mut dc = dc.lock().unwrap();
        for e in dc.entries.iter_mut() {
            e.xml = e.xml.replace("<uom>72</uom>", "<uom>9999</uom>");
        }
    }
    let err = client.fetch("home-1").await.unwrap_err();
    assert!(matches!(err, ConnectError::Series { .. }), "{err}");
    assert!(err.to_string().contains("uom 9999"), "{err}");
    assert_eq!(stored(&db, &meter).await, 0);

    // Fixed at the source, the same fetch goes through completely.
    {
        let mut dc = dc.lock().unwrap();
        for e in dc.entries.iter_mut() {
            e.xml = e.xml.replace("<uom>9999</uom>", "<uom>72</uom>");
        }
    }
    let ok = client.fetch("home-1").await.unwrap();
    assert_eq!(
        ok.outcome.inserted as usize,
        dc.lock().unwrap().readings(true)
    );
}

/// The operator's commands against the same Data Custodian: `authorize` prints the URL,
/// `authorize --code` stores the tokens, `fetch --json` stores the data and prints one JSON
/// summary per UsagePoint; a second `fetch` stores nothing more.
async fn cli_authorize_and_fetch(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    // The secret comes from the environment, as docs/configuration.md recommends.
    let mut gb = config(&base, &ca);
    gb.client_secret = None;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\nurl = {:?}\n\n[greenbutton]\n{}",
            db.url,
            toml::to_string(&gb).unwrap()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("--config")
            .arg(&file)
            .args(args)
            .env("SWITCHYARD_GREENBUTTON_CLIENT_SECRET", SECRET)
            .env_remove("SWITCHYARD_DATABASE_URL");
        async move { cmd.output().await.unwrap() }
    };

    let out = run(&[
        "greenbutton",
        "connect",
        "authorize",
        "--name",
        "home-1",
        "--state",
        "s-1",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with(&format!("{base}/DataCustodian/oauth/authorize?")),
        "{url}"
    );
    assert!(
        url.contains("state=s-1") && url.contains("response_type=code"),
        "{url}"
    );
    assert!(
        switchyard::protocol::greenbutton::pending::is_pending(&db.store, "s-1")
            .await
            .unwrap(),
        "the state is remembered for the redirect endpoint"
    );

    // The customer's browser at that URL, then the code from the redirect.
    let tls = switchyard::protocol::greenbutton::connect::tls_config(Some(
        &std::fs::read_to_string(ca.pem_path()).unwrap(),
    ))
    .unwrap();
    let browser = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser.get(&url).send().await.unwrap();
    let location = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let code: String = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    let out = run(&[
        "greenbutton",
        "connect",
        "authorize",
        "--name",
        "home-1",
        "--code",
        &code,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Batch/Subscription/5"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = run(&["greenbutton", "connect", "fetch", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let half = dc.lock().unwrap().readings(true);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(line["intervals"], half);
    assert_eq!(stored(&db, &meter).await, half);

    let out = run(&["greenbutton", "connect", "fetch"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 readings stored"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A wrong code: the token endpoint's refusal, exit status 1, nothing stored.
    let out = run(&[
        "greenbutton",
        "connect",
        "authorize",
        "--name",
        "home-2",
        "--code",
        "forged",
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_grant"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        load_authorization(&db.store, "home-2")
            .await
            .unwrap()
            .is_none()
    );
}

/// `switchyard serve` with `greenbutton.fetch_interval_seconds`: every stored authorization
/// is fetched on the schedule, and newly published data arrives without anyone asking.
async fn serve_fetches_on_a_schedule(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    drop(authorized(&db, &ca, &base).await);
    let mut gb = config(&base, &ca);
    gb.fetch_interval_seconds = 1;
    let (server, _) = common::start_server_with(&db, 64 * 1024, |c| c.greenbutton = gb).await;
    let half = dc.lock().unwrap().readings(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&db, &meter).await < half && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored(&db, &meter).await, half);
    dc.lock().unwrap().publish_rest();
    let all = dc.lock().unwrap().readings(true);
    while stored(&db, &meter).await < all && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored(&db, &meter).await,
        all,
        "the next round picked up the new data"
    );
    server.stop().await.unwrap();
    let dc = dc.lock().unwrap();
    assert!(
        dc.log.iter().any(|l| l.contains("updated-min")),
        "later rounds are incremental: {:?}",
        dc.log
    );
}

// ---------------------------------------------------------------------------------------
// The redirect URI and notifications, served by `switchyard serve`
// ---------------------------------------------------------------------------------------

const NOTIFY_TOKEN: &str = "dc-notification-token-0123456789";

fn browser(ca: &TestCa) -> reqwest::Client {
    let tls = switchyard::protocol::greenbutton::connect::tls_config(Some(
        &std::fs::read_to_string(ca.pem_path()).unwrap(),
    ))
    .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The customer's browser: to the Data Custodian's authorization URL, then on to the
/// redirect it answers with. The registered redirect URI's host (switchyard.example) is
/// where the deployment's proxy forwards to the operator listener: here, `server`.
async fn browser_round_trip(ca: &TestCa, url: &str, server: &str) -> (StatusCode, String) {
    let b = browser(ca);
    let resp = b.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND, "{url}");
    let location = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let back = location.strip_prefix("https://switchyard.example").unwrap();
    get_text(&format!("{server}{back}")).await
}

async fn get_text(url: &str) -> (StatusCode, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn authorization_names(db: &TestDb) -> Vec<String> {
    switchyard::protocol::greenbutton::connect::authorization_names(&db.store)
        .await
        .unwrap()
}

fn code_grants(dc: &Shared) -> usize {
    dc.lock()
        .unwrap()
        .grants
        .iter()
        .filter(|g| *g == "authorization_code")
        .count()
}

/// authorize -> the Data Custodian redirects the browser -> `serve` takes the code, stores
/// the authorization and answers a page -> fetch works. The state is single use, expires,
/// and an unknown one is refused; a customer who declines leaves nothing behind.
async fn redirect_uri_served(db: TestDb) {
    use switchyard::protocol::greenbutton::pending;
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    let gb = config(&base, &ca);
    let (server, api) =
        common::start_server_with(&db, 64 * 1024, |c| c.greenbutton = gb.clone()).await;
    let client = Client::new(gb.clone(), db.store.clone()).unwrap();

    let (url, state) = client
        .start_authorization("home-1", None, now_epoch())
        .await
        .unwrap();
    assert_eq!(state.len(), 64, "256 random bits, hex: {state}");
    assert!(url.contains(&format!("state={state}")), "{url}");
    assert!(pending::is_pending(&db.store, &state).await.unwrap());
    let (status, page) = browser_round_trip(&ca, &url, &api).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("authorization 'home-1' stored"), "{page}");
    assert!(!pending::is_pending(&db.store, &state).await.unwrap());
    let auth = load_authorization(&db.store, "home-1")
        .await
        .unwrap()
        .unwrap();
    assert!(
        auth.resource_uri.ends_with("/Batch/Subscription/5"),
        "{auth:?}"
    );
    let report = client.fetch("home-1").await.unwrap();
    let half = dc.lock().unwrap().readings(true);
    assert_eq!(report.outcome.inserted as usize, half);
    assert_eq!(stored(&db, &meter).await, half);
    assert_eq!(code_grants(&dc), 1);

    // The same redirect again (a reload, or someone replaying it): refused, nothing traded.
    let redirect = format!("{api}/greenbutton/callback?code=whatever&state={state}");
    let (status, page) = get_text(&redirect).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("unknown or was already used"), "{page}");
    // A state never issued.
    let (status, page) = get_text(&format!(
        "{api}/greenbutton/callback?code=c&state={}",
        "ab".repeat(32)
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("unknown or was already used"), "{page}");
    // No state or no code at all.
    let (status, page) = get_text(&format!("{api}/greenbutton/callback?code=c")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("no state"), "{page}");
    assert_eq!(
        code_grants(&dc),
        1,
        "no code was traded for a refused redirect"
    );

    // Expired: the customer took longer than authorization_timeout_seconds.
    let mut slow = gb.clone();
    slow.authorization_timeout_seconds = 0;
    let (url, state2) = Client::new(slow, db.store.clone())
        .unwrap()
        .start_authorization("home-2", None, now_epoch())
        .await
        .unwrap();
    let (status, page) = browser_round_trip(&ca, &url, &api).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("expired"), "{page}");
    assert!(page.contains("home-2"), "{page}");
    assert!(!pending::is_pending(&db.store, &state2).await.unwrap());
    assert_eq!(code_grants(&dc), 1);

    // The customer declines at the Data Custodian.
    let (_, state3) = client
        .start_authorization("home-3", None, now_epoch())
        .await
        .unwrap();
    let (status, page) = get_text(&format!(
        "{api}/greenbutton/callback?error=access_denied&state={state3}"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("'home-3': the customer declined"), "{page}");
    assert!(!pending::is_pending(&db.store, &state3).await.unwrap());
    // ... and that state cannot be used afterwards either.
    let (status, _) = get_text(&format!("{api}/greenbutton/callback?code=c&state={state3}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert_eq!(authorization_names(&db).await, vec!["home-1".to_string()]);
    assert_eq!(code_grants(&dc), 1);

    // Started from the operator API instead of the CLI: operator token only.
    let start = |token: &'static str, body: serde_json::Value| {
        let url = format!("{api}/api/v1/greenbutton/authorizations");
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                resp.status(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let body = serde_json::json!({"name": "home-4"});
    assert_eq!(
        start("wrong", body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        start(common::READER_TOKEN, body.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, bad) = start(common::OPERATOR_TOKEN, serde_json::json!({"name": "a b<"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let (status, started) = start(common::OPERATOR_TOKEN, body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["name"], "home-4");
    assert!(
        started["expires_at"].as_i64().unwrap() >= now_epoch() + 899,
        "{started}"
    );
    let (status, page) =
        browser_round_trip(&ca, started["authorization_url"].as_str().unwrap(), &api).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("authorization 'home-4' stored"), "{page}");
    assert_eq!(
        authorization_names(&db).await,
        vec!["home-1".to_string(), "home-4".to_string()]
    );
    server.stop().await.unwrap();
}

fn batch_list(resources: &[String]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<espi:BatchList xmlns:espi=\"http://naesb.org/espi\">\n",
    );
    for r in resources {
        xml.push_str(&format!("  <espi:resources>{r}</espi:resources>\n"));
    }
    xml.push_str("</espi:BatchList>\n");
    xml
}

async fn notify(api: &str, token: Option<&str>, body: String) -> (StatusCode, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{api}/greenbutton/notify"))
        .header(header::CONTENT_TYPE, "application/xml")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The Data Custodian's BatchList POST makes `serve` fetch the authorization it names
/// (in the background, coalesced); URIs of no authorization or of another host, bad tokens
/// and bodies that are not a BatchList fetch nothing.
async fn notifications_start_fetches(db: TestDb) {
    let ca = TestCa::new("Test Data Custodian CA");
    let (dc, base) = start_dc(&ca).await;
    let meter = gba_meter(&db).await;
    drop(authorized(&db, &ca, &base).await);
    let mut gb = config(&base, &ca);
    gb.notification_token = Some(NOTIFY_TOKEN.into());
    gb.notification_body_limit_bytes = 4096;
    let (server, api) = common::start_server_with(&db, 64 * 1024, |c| c.greenbutton = gb).await;
    let subscription = format!("{base}/DataCustodian/espi/1_1/resource/Batch/Subscription/5");
    let list = batch_list(std::slice::from_ref(&subscription));
    let foreign = batch_list(&[
        "https://evil.example/DataCustodian/espi/1_1/resource/Batch/Subscription/5".into(),
        format!("{base}/DataCustodian/espi/1_1/resource/Batch/Subscription/99"),
        format!("{base}/Elsewhere/espi/1_1/resource/Batch/Subscription/5"),
    ]);
    let declined = batch_list(&[]);
    if let Some(schema) = common::espi::espi_schema() {
        schema.validate("batchlist", &list);
        schema.validate("batchlist-foreign", &foreign);
        schema.validate("batchlist-empty", &declined);
    }
    let requests = || dc.lock().unwrap().log.len();

    // Refused before anything else: no token, a wrong token, not a BatchList, too large.
    let (status, _) = notify(&api, None, list.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = notify(&api, Some("not-the-token-at-all-000"), list.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad: Vec<(String, &str)> = vec![
        ("this is not xml <".into(), "notification refused"),
        (fixture("gba_electric_15min_cost_15days.xml")[..2000].to_string(), "root element is <feed>"),
        (list[..list.len() - 20].to_string(), "notification refused"),
        (
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"{subscription}\">]><BatchList xmlns=\"http://naesb.org/espi\"><resources>&a;</resources></BatchList>"
            ),
            "DOCTYPE",
        ),
        (
            "<BatchList xmlns=\"http://naesb.org/espi\"><resources>/relative</resources></BatchList>".into(),
            "not an absolute",
        ),
    ];
    for (body, want) in bad {
        let (status, text) = notify(&api, Some(NOTIFY_TOKEN), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
    let huge = batch_list(&vec![subscription.clone(); 100]);
    assert!(huge.len() > 4096);
    let (status, _) = notify(&api, Some(NOTIFY_TOKEN), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // URIs of no stored authorization, or not under the resource server: ignored, counted.
    let (status, text) = notify(&api, Some(NOTIFY_TOKEN), foreign).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let out: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out["ignored"], 3, "{out}");
    assert_eq!(out["fetching"], serde_json::json!([]), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        requests(),
        0,
        "nothing was fetched: {:?}",
        dc.lock().unwrap().log
    );
    assert_eq!(stored(&db, &meter).await, 0);

    // The real notification: answered at once, the fetch runs in the background.
    let (status, text) = notify(&api, Some(NOTIFY_TOKEN), list.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let out: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out["fetching"], serde_json::json!(["home-1"]), "{out}");
    let half = dc.lock().unwrap().readings(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&db, &meter).await < half && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&db, &meter).await, half);

    // New data, and notifications arriving while a fetch runs (held up by a 429 asking
    // for one second): the later ones are queued into one more round, not fetched each.
    // Let the first fetch's task finish (it stored, and now ends).
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let mut d = dc.lock().unwrap();
        d.publish_rest();
        d.failures.push_back(Failure::TooMany { retry_after: 1 });
    }
    let first_pages = |d: &Dc| {
        d.log
            .iter()
            .filter(|l| !l.starts_with("401") && l.split(['?', '&']).any(|p| p == "start-index=1"))
            .count()
    };
    let before = first_pages(&dc.lock().unwrap());
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let (status, text) = notify(&api, Some(NOTIFY_TOKEN), list.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        let out: serde_json::Value = serde_json::from_str(&text).unwrap();
        kinds.push(if out["queued"] == serde_json::json!(["home-1"]) {
            "queued"
        } else {
            "fetching"
        });
    }
    assert_eq!(kinds, ["fetching", "queued", "queued"]);
    let all = dc.lock().unwrap().readings(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&db, &meter).await < all && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&db, &meter).await, all, "the notified data arrived");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rounds = first_pages(&dc.lock().unwrap()) - before;
    // The 429'd request and its retry, then one more round for the two queued.
    assert_eq!(rounds, 3, "{:?}", dc.lock().unwrap().log);
    server.stop().await.unwrap();
}

on_both_backends!(
    authorize_fetch_import_and_incremental,
    failures_rate_limits_and_resume,
    token_refresh_and_revocation,
    wrong_certificate_and_bad_feeds,
    cli_authorize_and_fetch,
    serve_fetches_on_a_schedule,
    redirect_uri_served,
    notifications_start_fetches
);
