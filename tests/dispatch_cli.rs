//! `switchyard dispatch plan` and `switchyard dispatch forecast` as an operator runs them,
//! against the embedded SQLite store: a plan over imported batteries, a refused request
//! (non-zero exit, the reason on stderr), and a forecast with no history yet.

use serde_json::{Value, json};
use std::process::Command;
use switchyard::domain::now_epoch;
use switchyard::registry::Registry;
use switchyard::registry::model::Group;
use switchyard::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_forecast_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("assets.csv");
    std::fs::write(
        &csv,
        "account_number,account_name,connection_point_id,territory,interconnection_type,der_class,manufacturer,model,serial,rated_kw,storage_kwh\n\
         A1,One,NMI1,NORTH,nem,battery,Acme,B,S1,5,10\n\
         A2,Two,NMI2,NORTH,nem,battery,Acme,B,S2,5,10\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["import", "assets", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let url = format!("sqlite:{}", dir.path().join("switchyard.db").display());
        let registry = Registry::open(Store::open(&url, 2).await.unwrap())
            .await
            .unwrap();
        let group: Group = serde_json::from_value(
            json!({"id": "batteries", "name": "All batteries", "der_class": "battery"}),
        )
        .unwrap();
        registry.create(group).await.unwrap();
        registry.store().close().await;
    }

    let now = now_epoch();
    let request = |group: &str| {
        json!({
            "request": {
                "id": "cli-1",
                "target": {"kind": "group", "group_id": group},
                "direction": "discharge",
                "power_kw": 4.0,
                "start": now + 120,
                "duration_s": 3600,
                "ramp": {"kind": "simultaneous"},
                "priority": 1,
                "source": {"kind": "operator"}
            },
            "assumptions": {"self_consumption": 0.0, "default_soc_pct": 90.0}
        })
    };
    let file = dir.path().join("req.json");
    std::fs::write(&file, request("batteries").to_string()).unwrap();
    let out = run(&["dispatch", "plan", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["feasible"], true, "{v}");
    assert_eq!(v["loaded"]["ders"], 2);
    let schedules = v["schedules"].as_array().unwrap();
    assert_eq!(schedules.len(), 2);
    for s in schedules {
        assert!((s["commands"][0]["setpoint_kw"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    }

    std::fs::write(&file, request("nope").to_string()).unwrap();
    let out = run(&["dispatch", "plan", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown group 'nope'"), "{stderr}");

    let out = run(&[
        "dispatch",
        "forecast",
        "--group",
        "batteries",
        "--step-s",
        "1800",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["steps"].as_array().unwrap().len(),
        8,
        "4 hours of 30 minutes"
    );
    assert_eq!(v["steps"][0]["days_with_data"], 0);
    // Two batteries at the assumed 50% SoC with no reserve: 10 kWh down, 10 kWh up.
    assert!(
        (v["flex_down_kwh"]["p50"].as_f64().unwrap() - 10.0).abs() < 1e-6,
        "{v}"
    );
    assert!(
        (v["flex_up_kwh"]["p50"].as_f64().unwrap() - 10.0).abs() < 1e-6,
        "{v}"
    );
}
