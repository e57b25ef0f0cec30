//! The 2030.5 server behind a TLS-terminating proxy: the client certificate arrives in a
//! header, believed only from configured proxy addresses and still checked against the CA.

mod common;

use common::{TestDb, start_server_with};
use reqwest::{Client, StatusCode};
use switchyard::pki::{CertKind, CertificateAuthority, IssueRequest};

fn encoded(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn run(
    trusted: &str,
) -> (
    switchyard::app::RunningServer,
    String,
    CertificateAuthority,
    TestDb,
    tempfile::TempDir,
) {
    let db = TestDb::sqlite().await;
    let ca = CertificateAuthority::generate("proxy test CA").unwrap();
    let server_cert = ca
        .issue(&IssueRequest::new(
            CertKind::Server {
                dns_names: vec!["localhost".into()],
                ip_addresses: vec![],
            },
            "server",
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), &server_cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &server_cert.key_pem).unwrap();
    let trusted = trusted.parse().unwrap();
    let (server, _) = start_server_with(&db, 64 * 1024, |c| {
        c.sep2.enabled = true;
        c.sep2.listen = "127.0.0.1:0".parse().unwrap();
        c.sep2.proxy_listen = Some("127.0.0.1:0".parse().unwrap());
        c.sep2.trusted_proxies = vec![trusted];
        c.sep2.ca_cert = dir.path().join("ca.pem");
        c.sep2.server_cert = dir.path().join("server.pem");
        c.sep2.server_key = dir.path().join("server.key");
    })
    .await;
    let base = format!("http://{}", server.sep2_proxy_addr.unwrap());
    (server, base, ca, db, dir)
}

#[tokio::test]
async fn forwarded_certificates_from_a_trusted_proxy() {
    let (server, base, ca, _db, _dir) = run("127.0.0.1").await;
    let http = Client::new();
    let device = ca
        .issue(&IssueRequest::new(CertKind::Device, "dev"))
        .unwrap();
    // Register through the proxy: the identity is the forwarded certificate's.
    let body = format!(
        "<EndDevice xmlns=\"urn:ieee:std:2030.5:ns\"><sFDI>{}</sFDI><changedTime>0</changedTime></EndDevice>",
        device.sfdi.value()
    );
    let r = http
        .post(format!("{base}/edev"))
        .header("x-client-cert", encoded(&device.cert_pem))
        .header("content-type", "application/sep+xml")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .get(format!("{base}/edev?l=5"))
        .header("x-client-cert", encoded(&device.cert_pem))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains(&device.lfdi.to_hex()), "{text}");

    // No header, a header that is no certificate, a certificate from another CA, and an
    // expired one.
    let r = http.get(format!("{base}/dcap")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("{base}/dcap"))
        .header("x-client-cert", "garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let stranger = CertificateAuthority::generate("other")
        .unwrap()
        .issue(&IssueRequest::new(CertKind::Device, "x"))
        .unwrap();
    let r = http
        .get(format!("{base}/dcap"))
        .header("x-client-cert", encoded(&stranger.cert_pem))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut old = IssueRequest::new(CertKind::Device, "old");
    old.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    old.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = ca.issue(&old).unwrap();
    let r = http
        .get(format!("{base}/dcap"))
        .header("x-client-cert", encoded(&expired.cert_pem))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_header_is_ignored_from_untrusted_addresses() {
    let (server, base, ca, _db, _dir) = run("192.0.2.10").await;
    let device = ca
        .issue(&IssueRequest::new(CertKind::Device, "dev"))
        .unwrap();
    let r = Client::new()
        .get(format!("{base}/dcap"))
        .header("x-client-cert", encoded(&device.cert_pem))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    server.stop().await.unwrap();
}
