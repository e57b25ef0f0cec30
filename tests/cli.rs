//! The `switchyard` binary as a user runs it: the demo (the README's first command) serving
//! its fleet, graceful shutdown on SIGTERM, the development PKI, and CSV import.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard::domain::identity::Lfdi;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Sends SIGKILL to a process when dropped (a no-op once it has exited).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[tokio::test]
async fn demo_serves_the_fleet_and_shuts_down_on_sigterm() {
    // reqwest is built without a default rustls provider (the 2030.5 code brings its own),
    // so one must be installed before the first client; before the demo starts, so that a
    // failure here cannot leave the demo running and holding its ports.
    let _ = switchyard::protocol::sep2::tls::crypto_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("demo")
        .env("SWITCHYARD_DATA_DIR", dir.path())
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_SEP2_LISTEN", "127.0.0.1:0")
        .env("SWITCHYARD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // Kill the demo if an assertion fails before the orderly SIGTERM below.
    let pid = child.id();
    let _reaper = KillOnDrop(pid);
    let (mut token, mut base, mut sep2) = (String::new(), String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(t) = line.trim().strip_prefix("Operator token:") {
            token = t.trim().to_string();
        }
        if let Some(u) = line.trim().strip_prefix("IEEE 2030.5:") {
            sep2 = u
                .trim()
                .trim_end_matches(" (mutual TLS)")
                .trim_end_matches("/dcap")
                .to_string();
        }
        if let Some(u) = line.trim().strip_prefix("OpenAPI:") {
            base = u.trim().trim_end_matches("/openapi.json").to_string();
        }
        if line.contains("Stop with Ctrl-C") || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        !token.is_empty() && !base.is_empty(),
        "demo printed no token or URL"
    );
    let _ = switchyard::protocol::sep2::tls::crypto_provider().install_default();
    let client = reqwest::Client::new();
    let agg: serde_json::Value = client
        .get(format!("{base}/api/v1/groups/grp-feeder-f1/aggregate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Feeder F1: four sites, each with a 5 kW battery and a 6 kW PV inverter, two with 11 kW
    // EV chargers.
    assert_eq!(agg["der_count"], 10, "{agg}");
    assert_eq!(agg["rated_kw"], 66.0, "{agg}");
    let aggregator_devices: serde_json::Value = client
        .get(format!("{base}/api/v1/identities?kind=aggregator"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(aggregator_devices["items"].as_array().unwrap().len(), 1);

    // The demo battery polls its envelope over IEEE 2030.5 with the demo certificate.
    let pki = dir.path().join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let tls = switchyard::protocol::sep2::tls::client_config(
        &read("ca.pem"),
        &read("demo-battery-1.pem"),
        &read("demo-battery-1.key"),
    )
    .unwrap();
    let device = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let edev = device
        .get(format!("{sep2}/edev"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let href = edev
        .split("<EndDevice href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let derc = device
        .get(format!("{sep2}{href}/derp/doe-site-0001/derc"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        derc.contains("<csipaus:opModExpLimW><multiplier>-1</multiplier><value>15000</value>"),
        "{derc}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("store closed"), "{stderr}");
    assert!(dir.path().join("pki/demo-battery-1.pem").exists());
}

#[test]
fn certs_prints_the_lfdi_of_each_written_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--device", "meter-7", "--aggregator", "agg-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let pem = std::fs::read_to_string(dir.path().join("meter-7.pem")).unwrap();
    let der = switchyard::registry::entity::certificate_der_from_pem(&pem).unwrap();
    let lfdi = Lfdi::from_certificate_der(&der);
    let line = printed
        .lines()
        .find(|l| l.starts_with("meter-7"))
        .unwrap_or_else(|| panic!("no meter-7 row in:\n{printed}"));
    assert!(line.contains(&lfdi.to_hex()), "{line}");
    assert!(line.contains(&lfdi.sfdi().to_string()), "{line}");
    assert!(dir.path().join("agg-1.key").exists());
    let bad = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--device", "../escape"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn import_cli_reports_every_bad_row_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("assets.csv");
    std::fs::write(
        &csv,
        "account_number,account_name,connection_point_id,territory,interconnection_type,der_class,manufacturer,model,serial,rated_kw,storage_kwh\n\
         A1,One,NMI1,NORTH,nem,battery,Acme,B,S1,5,10\n\
         A2,Two,NMI2,NORTH,nem,toaster,Acme,B,S2,5,10\n\
         A3,Three,NMI3,NORTH,nem,battery,Acme,B,S3,-1,10\n",
    )
    .unwrap();
    let run = || {
        Command::new(BIN)
            .args(["import", "assets"])
            .arg(&csv)
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 3: der_class"), "{stderr}");
    assert!(stderr.contains("line 4: rated_kw"), "{stderr}");
    assert!(
        stderr.contains("2 of 3 rows rejected; nothing was imported"),
        "{stderr}"
    );

    let fixed = std::fs::read_to_string(&csv)
        .unwrap()
        .replace("toaster", "pv_inverter")
        .replace(",-1,", ",4,");
    std::fs::write(&csv, fixed).unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 DERs created"));
    let export = Command::new(BIN)
        .args(["export", "inventory", "--format", "csv"])
        .env("SWITCHYARD_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&export.stdout).lines().count(), 4);
}

#[test]
fn import_greenbutton_cli_prints_json_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let feed = format!(
        "{}/tests/fixtures/greenbutton/abridged_electric_containerized.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    // No meter for the UsagePoint yet: refused, naming it.
    let out = run(&["import", "greenbutton", &feed, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("urn:uuid:C4B46B5D-D4AC-4CD3-9E29-13717DD04140"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was imported"), "{stderr}");

    let csv = dir.path().join("assets.csv");
    std::fs::write(
        &csv,
        "account_number,account_name,connection_point_id,territory,interconnection_type,meter_mpid,meter_revenue_grade,meter_interval_seconds,der_class,manufacturer,model,serial,rated_kw,storage_kwh\n\
         A1,One,NMI1,NORTH,nem,C4B46B5D-D4AC-4CD3-9E29-13717DD04140,true,3600,battery,Acme,B,S1,5,10\n",
    )
    .unwrap();
    let out = run(&["import", "assets", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for _ in 0..2 {
        let out = run(&["import", "greenbutton", &feed, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            v["usage_point"],
            "urn:uuid:C4B46B5D-D4AC-4CD3-9E29-13717DD04140"
        );
        assert_eq!(v["intervals"], 8);
        assert_eq!(v["first_start"], 1_293_868_800);
        assert_eq!(v["wh_received"], 0.0);
        assert!(v["wh_delivered"].as_f64().unwrap() > 0.0);
        assert!(v["gaps"].is_u64() && v["last_end"].is_i64());
    }
    // The table form says that the second and third imports found everything present.
    let out = run(&["import", "greenbutton", &feed]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 readings stored, 8 already present"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
