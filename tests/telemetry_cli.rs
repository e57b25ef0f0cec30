//! `switchyard telemetry gaps` as an operator runs it against the embedded SQLite store: the
//! table names the device with a gap and how many readings are missing, `--json` prints
//! the API's report, and a backwards range fails with the reason on stderr.

use serde_json::Value;
use std::process::Command;
use switchyard::store::Store;
use switchyard::telemetry::{Measurand, Quality, Reading, SourceKind, insert_batch};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const T0: i64 = 1_750_000_000 - 1_750_000_000 % 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    {
        let url = format!(
            "sqlite:{}?mode=rwc",
            dir.path().join("switchyard.db").display()
        );
        let store = Store::open(&url, 2).await.unwrap();
        // inv-7 every 5 minutes for an hour, but T0+1200 and T0+1500 never came; the
        // reading of T0+3000 arrived 20 minutes late.
        for k in 0..12 {
            let t = T0 + 300 * k;
            if t == T0 + 1200 || t == T0 + 1500 {
                continue;
            }
            let r = Reading {
                source_id: "inv-7".into(),
                source_kind: SourceKind::SunSpec,
                measurand: Measurand::ActivePower,
                instant: t,
                value: -2500.0,
                quality: Quality::Measured,
            };
            let arrived = if t == T0 + 3000 { t + 1200 } else { t + 3 };
            insert_batch(&store, &[r], arrived).await.unwrap();
        }
        store.close().await;
    }
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let (from, to) = (T0.to_string(), (T0 + 3600).to_string());

    let out = run(&["telemetry", "gaps", "--from", &from, "--to", &to]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("inv-7"))
        .unwrap_or_else(|| panic!("no row for inv-7:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // source, interval (inferred), readings, missing, gaps, late, max lateness
    assert_eq!(
        cols,
        vec!["inv-7", "~300", "10", "2", "1", "1", "1200"],
        "{text}"
    );
    assert!(
        text.contains(&format!("gap {} .. {}: 2 missing", T0 + 1200, T0 + 1800)),
        "{text}"
    );

    // RFC 3339 works as well as epoch seconds; --json is the API's report.
    let out = run(&[
        "telemetry",
        "gaps",
        "--from",
        "2025-06-15T15:00:00Z",
        "--to",
        &to,
        "--json",
        "--source",
        "inv-7",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from"], 1_750_000_000 - 1_750_000_000 % 3600);
    assert_eq!(v["sources"][0]["late"][0]["lateness_s"], 1200);
    assert_eq!(v["missing_readings"], 2);

    // A backwards range is refused with the reason.
    let out = run(&["telemetry", "gaps", "--from", &to, "--to", &from]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("before it starts"), "{err}");
    let out = run(&["telemetry", "gaps", "--from", "last tuesday", "--to", &to]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RFC 3339"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
