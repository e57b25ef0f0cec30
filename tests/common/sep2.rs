//! IEEE 2030.5 test fixtures: a throw-away PKI, mutual-TLS clients for devices and
//! aggregators that keep every document they GET for schema validation, the server started
//! with its 2030.5 listener, and small helpers for reading hrefs out of documents.

use super::xsd::Doc;
use super::{OPERATOR_TOKEN, TestDb, start_server_with};
use reqwest::{Client, StatusCode};
use std::net::{IpAddr, Ipv4Addr};
use switchyard::app::RunningServer;
use switchyard::domain::identity::Lfdi;
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest, IssuedCertificate};
use switchyard::protocol::sep2::tls::{client_config, crypto_provider};

/// A CA with a server certificate (written to `dir` for the server's configuration) and
/// three client certificates: two devices and an aggregator.
pub struct Pki {
    pub ca: CertificateAuthority,
    pub dir: tempfile::TempDir,
    pub device: IssuedCertificate,
    pub other: IssuedCertificate,
    pub aggregator: IssuedCertificate,
}

pub fn pki() -> Pki {
    let ca = CertificateAuthority::generate("Switchyard test CA").unwrap();
    let server = ca
        .issue(&IssueRequest::new(
            CertKind::Server {
                dns_names: vec!["localhost".into()],
                ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            },
            "sep2 server",
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &server.key_pem).unwrap();
    let device = ca
        .issue(&IssueRequest::new(CertKind::Device, "inverter-1"))
        .unwrap();
    let other = ca
        .issue(&IssueRequest::new(CertKind::Device, "inverter-2"))
        .unwrap();
    let aggregator = ca
        .issue(&IssueRequest::new(CertKind::Aggregator, "agg"))
        .unwrap();
    Pki {
        ca,
        dir,
        device,
        other,
        aggregator,
    }
}

/// An HTTPS client presenting `cert`, trusting `ca_pem`.
pub fn client(ca_pem: &str, cert: &IssuedCertificate) -> Client {
    // reqwest wants a process-wide provider even with a preconfigured TLS config; ours is
    // the one the server uses (an error only means another test installed it first).
    let _ = crypto_provider().install_default();
    let tls = client_config(ca_pem, &cert.cert_pem, &cert.key_pem).unwrap();
    Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

/// A 2030.5 client that keeps every document it reads, for schema validation at the end.
pub struct Sep2 {
    pub http: Client,
    pub base: String,
    pub docs: std::sync::Mutex<Vec<Doc>>,
}

impl Sep2 {
    /// A client for `cert` against the 2030.5 server at `base`.
    pub fn new(pki: &Pki, cert: &IssuedCertificate, base: &str) -> Sep2 {
        Sep2 {
            http: client(pki.ca.cert_pem(), cert),
            base: base.to_string(),
            docs: Default::default(),
        }
    }

    /// GETs a document, checks its media type, and keeps it for schema validation.
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        if status == StatusCode::OK {
            assert_eq!(
                resp.headers()["content-type"],
                "application/sep+xml",
                "{path}"
            );
        }
        let body = resp.text().await.unwrap();
        if status == StatusCode::OK {
            let name = path
                .trim_start_matches('/')
                .replace(['/', '?', '=', '&'], "_");
            self.docs.lock().unwrap().push(Doc {
                name,
                xml: body.clone(),
            });
        }
        (status, body)
    }

    /// Sends `body` with `method` and `content_type`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> reqwest::Response {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a 2030.5 document.
    pub async fn post(&self, path: &str, body: String) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, "application/sep+xml", body)
            .await
    }

    /// The documents read so far (and forgets them).
    pub fn take_docs(&self) -> Vec<Doc> {
        std::mem::take(&mut *self.docs.lock().unwrap())
    }
}

/// The text between `open` and the next `close` in `doc`.
pub fn between<'a>(doc: &'a str, open: &str, close: &str) -> &'a str {
    let start = doc
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in {doc}"))
        + open.len();
    let end = doc[start..].find(close).unwrap() + start;
    &doc[start..end]
}

/// The href of the first `element` in `doc`.
pub fn href_of<'a>(doc: &'a str, element: &str) -> &'a str {
    between(doc, &format!("<{element} href=\""), "\"")
}

/// An EndDevice registration document for `lfdi`.
pub fn registration(lfdi: &Lfdi) -> String {
    format!(
        "<EndDevice xmlns=\"urn:ieee:std:2030.5:ns\"><lFDI>{}</lFDI><sFDI>{}</sFDI><changedTime>0</changedTime></EndDevice>",
        lfdi.to_hex(),
        lfdi.sfdi().value()
    )
}

/// Starts the server with its 2030.5 listener (4 KiB body limit) over `db`; returns it with
/// the 2030.5 base URL and the operator API base URL.
pub async fn start_sep2_server(db: &TestDb, pki: &Pki) -> (RunningServer, String, String) {
    let (server, base) = start_server_with(db, 64 * 1024, |c| {
        c.sep2.enabled = true;
        c.sep2.listen = "127.0.0.1:0".parse().unwrap();
        c.sep2.ca_cert = pki.dir.path().join("ca.pem");
        c.sep2.server_cert = pki.dir.path().join("server.pem");
        c.sep2.server_key = pki.dir.path().join("server.key");
        c.sep2.body_limit_bytes = 4096;
    })
    .await;
    let sep2_base = format!("https://127.0.0.1:{}", server.sep2_addr.unwrap().port());
    (server, sep2_base, base)
}

/// POSTs JSON to the operator API as the operator and expects 201; returns the created
/// object.
pub async fn ops_post(base: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The current time, epoch seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// PATCHes an operator API object with a JSON merge patch as the operator and expects 200.
pub async fn ops_patch(base: &str, path: &str, body: serde_json::Value) {
    let r = Client::new()
        .patch(format!("{base}{path}"))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        r.text().await.unwrap()
    );
}
