//! The metering simulator against the DNV study grid, and `switchyard sim metering` and
//! `switchyard accounts consolidate` as a user runs them.

use std::process::Command;
use switchyard::aggregation::EstimatorKind;
use switchyard::aggregation::sim::{
    CellResult, Scenario, published_latest_sum, run_grid, study_grid,
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Large enough that the random read phases barely move the maximum error, small enough
/// for a debug build.
fn scenario(non_compliance: f64) -> Scenario {
    Scenario {
        assets: 3000,
        runs: 3,
        seed: 7,
        non_compliance,
        ..Scenario::default()
    }
}

fn score(cell: &CellResult, kind: EstimatorKind) -> f64 {
    cell.scores
        .iter()
        .find(|s| s.estimator == kind)
        .unwrap()
        .max_error_pct
}

#[test]
fn latest_sum_reproduces_the_study_and_schedule_aware_stays_within_one_percent() {
    let kinds = [EstimatorKind::LatestSum, EstimatorKind::ScheduleAware];
    let cells = run_grid(&scenario(0.0), &study_grid(), &kinds).unwrap();
    assert_eq!(cells.len(), 9);
    for c in &cells {
        let published = published_latest_sum(c.ramp, c.read_s).unwrap();
        let ours = score(c, EstimatorKind::LatestSum);
        assert!(
            (ours - published).abs() <= 2.0,
            "{} read {} s: latest-sum {ours:.2}% vs published {published}%",
            c.ramp,
            c.read_s
        );
        let sa = score(c, EstimatorKind::ScheduleAware);
        assert!(
            sa <= 1.0,
            "{} read {} s: schedule-aware {sa:.2}%",
            c.ramp,
            c.read_s
        );
    }
}

#[test]
fn schedule_aware_degrades_boundedly_with_non_compliance() {
    let kinds = [EstimatorKind::LatestSum, EstimatorKind::ScheduleAware];
    for p in [0.05, 0.2] {
        let sc = Scenario {
            runs: 2,
            ..scenario(p)
        };
        // Which devices comply is random: the unavoidable error is the spread of the
        // compliant share, sqrt(p (1 - p) / n); allow five of those on top of the 1% target.
        let bound = 1.0 + 5.0 * 100.0 * (p * (1.0 - p) / sc.assets as f64).sqrt();
        for c in run_grid(&sc, &study_grid(), &kinds).unwrap() {
            let sa = score(&c, EstimatorKind::ScheduleAware);
            let ls = score(&c, EstimatorKind::LatestSum);
            assert!(
                sa <= bound,
                "{p}: {} read {} s: {sa:.2}% > {bound:.2}%",
                c.ramp,
                c.read_s
            );
            assert!(
                sa * 4.0 < ls,
                "{p}: {} read {} s: {sa:.2}% vs latest-sum {ls:.2}%",
                c.ramp,
                c.read_s
            );
        }
    }
}

#[test]
fn cli_prints_json_lines_and_writes_the_svg() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("errors.svg");
    let out = Command::new(BIN)
        .args([
            "sim", "metering", "--assets", "200", "--runs", "1", "--read-s", "10,30",
        ])
        .args(["--ramp", "staggered:60", "--seed", "3", "--json", "--svg"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * EstimatorKind::ALL.len());
    assert!(lines.iter().all(|l| l["ramp_s"] == 60.0));
    assert_eq!(
        lines.iter().filter(|l| l["read_s"] == 30.0).count(),
        EstimatorKind::ALL.len()
    );
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(doc.starts_with("<svg"));
    assert_eq!(doc.matches("<path ").count(), 2 * EstimatorKind::ALL.len());

    // Same seed, same numbers.
    let again = Command::new(BIN)
        .args([
            "sim", "metering", "--assets", "200", "--runs", "1", "--read-s", "10,30",
        ])
        .args(["--ramp", "staggered:60", "--seed", "3", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
}

#[test]
fn cli_refuses_bad_options_with_a_precise_message() {
    let cases: [(&[&str], &str); 6] = [
        (&["--assets", "10", "--ramp", "staggered:x"], "staggered:x"),
        (
            &["--assets", "10", "--non-compliance", "1.5"],
            "non-compliance must be between 0 and 1",
        ),
        (
            &["--assets", "10", "--estimators", "median"],
            "unknown estimator \"median\"",
        ),
        (
            &["--assets", "10", "--read-s", "0"],
            "read interval must be a finite number > 0",
        ),
        (
            &["--assets", "10", "--ramp", "staggered:1"],
            "shorter than one device's ramp",
        ),
        (&["--assets", "0"], "assets must be a finite number > 0"),
    ];
    for (args, message) in cases {
        let out = Command::new(BIN)
            .args(["sim", "metering", "--runs", "1"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed results");
    }
}

/// `switchyard accounts consolidate`: the audit per interval, recorded with revisions.
#[test]
fn accounts_cli_allocates_and_records_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("garden.json");
    std::fs::write(
        &account,
        r#"{"id": "garden", "interval_s": 900, "credit_rate_millicents_per_kwh": 10000,
            "rule": "fixed_shares",
            "members": [
              {"id": "array", "role": "facility"},
              {"id": "bob", "role": "subscriber", "fixed_share": 1},
              {"id": "alice", "role": "subscriber", "fixed_share": 2}
            ]}"#,
    )
    .unwrap();
    let readings = dir.path().join("readings.csv");
    let write_readings = |array_wh: u32| {
        let csv = format!(
            "member,start,load_wh,generation_wh\narray,0,0,{array_wh}\nalice,0,300,0\nbob,0,100,0\narray,900,0,50\n"
        );
        std::fs::write(&readings, csv).unwrap();
    };
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["accounts", "consolidate", "--account"])
            .arg(&account)
            .arg("--readings")
            .arg(&readings)
            .args(extra)
            .env("SWITCHYARD_DATA_DIR", dir.path())
            .env("SWITCHYARD_LOG", "warn")
            .output()
            .unwrap()
    };
    write_readings(1000);
    let out = run(&["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audits: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audits.len(), 2);
    // 1000 Wh by 2:1 = 666.67 and 333.33: alice takes the left-over Wh; 10 c by 2:1.
    let credits: Vec<(String, i64, i64)> = audits[0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["member"].as_str().unwrap().to_string(),
                l["credit_wh"].as_i64().unwrap(),
                l["credit_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        credits,
        vec![
            ("alice".into(), 667, 7),
            ("array".into(), 0, 0),
            ("bob".into(), 333, 3)
        ]
    );

    let recorded = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(recorded(run(&["--record"])).contains("recorded: 2 new, 0 revised, 0 unchanged"));
    assert!(recorded(run(&["--record"])).contains("recorded: 0 new, 0 revised, 2 unchanged"));
    write_readings(1300);
    assert!(recorded(run(&["--record"])).contains("recorded: 0 new, 1 revised, 1 unchanged"));

    // A bad row: an error naming the line, nothing printed.
    std::fs::write(
        &readings,
        "member,start,load_wh,generation_wh\nalice,0,-3,0\n",
    )
    .unwrap();
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("readings CSV line 2: load_wh must be a whole number")
    );
    assert!(out.stdout.is_empty());
}
