//! The whole OpenADR 3.1 API fuzzed by schemathesis (PyPI) against the document the
//! server serves (`/openadr3/3.1.0/openapi.json`), once as the BL and once as a VEN, with
//! every schemathesis check: no server errors, documented status codes and content types,
//! response bodies valid against the schemas, schema-valid requests accepted and invalid
//! ones refused. Zero failures are required.
//!
//! schemathesis is an external tool: `.ci/run` installs it. Without it the test prints a
//! loud SKIPPED line, unless `CI` is set, in which case it fails.
//! `SWITCHYARD_SCHEMATHESIS_SECONDS` (default 60) is the time budget of the BL run; the VEN
//! run gets half.

mod common;

use common::TestDb;
use common::openadr3::*;

fn schemathesis_available() -> bool {
    std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

async fn run(base: &str, token: &str, seconds: u64) -> (bool, String) {
    // schemathesis keeps a cache in its working directory; keep it out of the checkout.
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::new("schemathesis")
        .current_dir(scratch.path())
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--max-time",
            &seconds.to_string(),
            "--workers",
            "2",
            "--checks",
            "all",
            "--no-color",
        ])
        .output()
        .await
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    if !schemathesis_available() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "schemathesis is required in CI (CI is set) but is not installed; .ci/run installs it"
            );
        }
        eprintln!(
            "SKIPPED: schemathesis is not installed (pip install schemathesis); the OpenADR 3 API was NOT fuzzed"
        );
        return;
    }
    let seconds: u64 = std::env::var("SWITCHYARD_SCHEMATHESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let db = TestDb::sqlite().await;
    let (server, base) = start(&db, |c| {
        // Fuzzed subscriptions point anywhere; do not spend time retrying them.
        c.openadr3.notifications.max_attempts = 1;
        c.openadr3.notifications.timeout_seconds = 1;
    })
    .await;
    let record = Record::default();
    let w = world(&base, &record).await;
    for (who, token, budget) in [
        ("BL", &w.bl.token, seconds),
        ("VEN", &w.ven1.token, seconds / 2),
    ] {
        let (ok, text) = run(&base, token, budget.max(5)).await;
        let summary: String = text
            .lines()
            .skip_while(|l| !l.contains("SUMMARY"))
            .collect::<Vec<_>>()
            .join("\n");
        eprintln!("schemathesis as the {who}:\n{summary}");
        assert!(ok, "schemathesis as the {who} found failures:\n{text}");
    }
    server.stop().await.unwrap();
}
