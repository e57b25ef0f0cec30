//! OpenADR 2.0b test fixtures: the server with its 2.0b VTN (mutual TLS or test-lab plain
//! HTTP), a VEN client that posts payloads and keeps every answer, and xmllint validation
//! of those answers against oadr_20b.xsd (read from ../shared/standards/openadr2b, whose
//! terms do not let the project republish it).

use super::sep2::{Pki, client};
use super::{TestDb, start_server_with};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use switchyard::app::RunningServer;
use switchyard::pki::IssuedCertificate;
use switchyard::protocol::openadr2::model::Message;
use switchyard::protocol::openadr2::{PREFIX, xml};

/// Starts the server with the 2.0b VTN; `tls` picks mutual TLS (with `pki`) or test-lab.
/// Returns the server, the operator API base URL and the 2.0b base URL.
pub async fn start(db: &TestDb, pki: &Pki, tls: bool) -> (RunningServer, String, String) {
    let dir = pki.dir.path().to_path_buf();
    let (server, base) = start_server_with(db, 1024 * 1024, |c| {
        c.openadr2.enabled = true;
        c.openadr2.listen = "127.0.0.1:0".parse().unwrap();
        c.openadr2.tls = tls;
        c.openadr2.ca_cert = dir.join("ca.pem");
        c.openadr2.server_cert = dir.join("server.pem");
        c.openadr2.server_key = dir.join("server.key");
        c.openadr2.poll_freq_seconds = 1;
        c.openadr2.body_limit_bytes = 64 * 1024;
    })
    .await;
    let addr = server.openadr2_addr.expect("2.0b listener");
    let scheme = if tls { "https" } else { "http" };
    let vtn = format!("{scheme}://localhost:{}{PREFIX}", addr.port());
    (server, base, vtn)
}

/// A VEN posting 2.0b payloads; every answer is kept for schema validation.
pub struct Ven {
    http: reqwest::Client,
    vtn: String,
    pub answers: Mutex<Vec<String>>,
    /// Every well-formed payload sent (the VEN side of the codec).
    pub sent: Mutex<Vec<String>>,
}

impl Ven {
    pub fn tls(pki: &Pki, cert: &IssuedCertificate, vtn: &str) -> Ven {
        Ven {
            http: client(pki.ca.cert_pem(), cert),
            vtn: vtn.to_string(),
            answers: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
        }
    }

    pub fn plain(vtn: &str) -> Ven {
        super::install_tls_provider();
        Ven {
            http: reqwest::Client::new(),
            vtn: vtn.to_string(),
            answers: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// POSTs raw bytes to a service; returns status and body.
    pub async fn raw(&self, service: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/{service}", self.vtn))
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await
            .expect("POST to the VTN");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.answers.lock().unwrap().push(text.clone());
        (status, text)
    }

    /// POSTs `m` and decodes the answer (which must be HTTP 200).
    pub async fn send(&self, service: &str, m: &Message) -> Message {
        let doc = xml::encode(m);
        self.sent.lock().unwrap().push(doc.clone());
        let (status, text) = self.raw(service, doc).await;
        assert_eq!(status, 200, "{text}");
        xml::decode(text.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// The response code of an answer's eiResponse.
pub fn code(m: &Message) -> String {
    use Message as M;
    match m {
        M::Response(x) => x.response.response_code.clone(),
        M::CreatedPartyRegistration(x) => x.response.response_code.clone(),
        M::CanceledPartyRegistration(x) => x.response.response_code.clone(),
        M::RegisteredReport(x) => x.response.response_code.clone(),
        M::UpdatedReport(x) => x.response.response_code.clone(),
        M::CreatedOpt(x) => x.response.response_code.clone(),
        M::CanceledOpt(x) => x.response.response_code.clone(),
        M::DistributeEvent(x) => x
            .response
            .as_ref()
            .map(|r| r.response_code.clone())
            .unwrap_or_default(),
        other => panic!("no eiResponse in {}", other.name()),
    }
}

/// oadr_20b.xsd, or None after saying why (failing when CI=true).
pub fn schema() -> Option<PathBuf> {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/standards/openadr2b/oadr_20b.xsd");
    let xsd = if shared.is_file() {
        shared
    } else {
        super::xsd::missing(&format!("{} not found", shared.display()));
        return None;
    };
    if Command::new("xmllint").arg("--version").output().is_err() {
        super::xsd::missing("xmllint not found on PATH (apt-get install -y libxml2-utils)");
        return None;
    }
    Some(xsd)
}

/// Validates every document in `docs` against oadr_20b.xsd with xmllint.
pub fn validate_all(docs: &[String]) {
    let Some(xsd) = schema() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let p = dir.path().join(format!("doc{i}.xml"));
        std::fs::write(&p, d).unwrap();
        files.push(p);
    }
    assert!(!files.is_empty());
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .args(&files)
        .output()
        .expect("run xmllint");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let mut shown = String::new();
        for (i, d) in docs.iter().enumerate() {
            if stderr.contains(&format!("doc{i}.xml"))
                && !stderr.contains(&format!("doc{i}.xml validates"))
            {
                shown.push_str(&format!("--- doc{i}.xml\n{d}\n"));
            }
        }
        panic!("xmllint refused documents:\n{stderr}\n{shown}");
    }
}
