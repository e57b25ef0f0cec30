//! Telemetry quality benchmarks (docs/benchmarks.md, "Telemetry quality"): what the
//! late-data hook costs the insert path, alignment throughput, and the gap report over a
//! fleet-hour, each beside a baseline measured in the same run.
//!
//! `cargo bench --bench telemetry_quality` (SQLite in a temporary directory).

mod common;

use common::{Table, thousands};
use std::time::Instant;
use switchyard::store::Store;
use switchyard::telemetry::align::{Grid, Kind, Point, Rules, align};
use switchyard::telemetry::gaps::{GapQuery, report};
use switchyard::telemetry::revisions::{ComputeRequest, compute, revise_in};
use switchyard::telemetry::{Measurand, Quality, Reading, SourceKind, insert_batch};

const T0: i64 = 1_750_000_000 - 1_750_000_000 % 3600;
const SOURCES: usize = 1000;
const MINUTES: i64 = 60;

fn batch(minute: i64) -> Vec<Reading> {
    (0..SOURCES)
        .map(|s| Reading {
            source_id: format!("der-{s:05}"),
            source_kind: SourceKind::Mqtt,
            measurand: Measurand::ActivePower,
            instant: T0 + 60 * minute + (s as i64 % 7),
            value: 1000.0 + s as f64,
            quality: Quality::Measured,
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut table = Table::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("b.db").display());
    let store = Store::open(&url, 4).await.unwrap();

    table.section("Insert path: late-data hook");
    let batches: Vec<Vec<Reading>> = (0..MINUTES).map(batch).collect();
    let now = T0 + 7200;
    let start = Instant::now();
    for b in &batches {
        insert_batch(&store, b, now).await.unwrap();
    }
    let insert_s = start.elapsed().as_secs_f64();
    let n = SOURCES * MINUTES as usize;
    table.add(
        "insert_batch, 1,000 readings per batch (baseline: includes the hook)",
        format!("{} readings/s", thousands((n as f64 / insert_s) as usize)),
        &format!("{} batches, no aggregates stored", MINUTES),
    );
    let mut conn = store.pool().acquire().await.unwrap();
    let start = Instant::now();
    for b in &batches {
        revise_in(&mut conn, b, now).await.unwrap();
    }
    let hook_s = start.elapsed().as_secs_f64();
    table.add(
        "revise_in alone, no aggregates stored",
        format!("{:.0} us/batch", hook_s / MINUTES as f64 * 1e6),
        &format!(
            "{:.1}% of the insert time",
            100.0 * hook_s / insert_s.max(1e-9)
        ),
    );
    drop(conn);
    // Ten of the thousand sources have 1-minute aggregates; their late readings are
    // recomputed and audited.
    for s in 0..10 {
        compute(
            &store,
            &ComputeRequest {
                source_id: format!("der-{s:05}"),
                measurand: Measurand::ActivePower,
                grid: Grid::OneMinute,
                from: T0,
                to: T0 + 3600,
                max_gap_s: 900,
            },
            now,
        )
        .await
        .unwrap();
    }
    let late: Vec<Vec<Reading>> = (0..MINUTES)
        .map(|m| {
            let mut b = batch(m);
            for r in &mut b {
                r.instant += 30;
            }
            b
        })
        .collect();
    let start = Instant::now();
    for b in &late {
        insert_batch(&store, b, now + 60).await.unwrap();
    }
    let late_s = start.elapsed().as_secs_f64();
    let revisions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM telemetry_revisions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    table.add(
        "insert_batch, late readings, 10 of 1,000 sources with stored aggregates",
        format!("{} readings/s", thousands((n as f64 / late_s) as usize)),
        &format!("{} revisions audited", thousands(revisions as usize)),
    );

    table.section("Alignment (pure)");
    let day: Vec<Point> = (0..86_400)
        .map(|i| Point {
            instant: T0 + i,
            value: (i as f64 / 600.0).sin() * 5000.0,
        })
        .collect();
    let start = Instant::now();
    let mut copy = day.clone();
    copy.sort_by_key(|p| p.instant);
    copy.dedup_by_key(|p| p.instant);
    let base_s = start.elapsed().as_secs_f64();
    table.add(
        "baseline: copy, sort, dedup 86,400 points",
        format!("{:.2} ms", base_s * 1e3),
        "the input pass every alignment makes",
    );
    for (g, kind) in [
        (Grid::OneSecond, Kind::Instantaneous),
        (Grid::OneMinute, Kind::Instantaneous),
        (Grid::FifteenMinutes, Kind::Instantaneous),
        (Grid::FifteenMinutes, Kind::Cumulative),
    ] {
        let start = Instant::now();
        let a = align(kind, &day, g, T0, T0 + 86_400, Rules::default()).unwrap();
        let s = start.elapsed().as_secs_f64();
        table.add(
            &format!("1 day of 1 s readings to {g} ({kind:?})"),
            format!("{:.2} ms", s * 1e3),
            &format!(
                "{} intervals; {} points/s",
                thousands(a.len()),
                thousands((86_400.0 / s) as usize)
            ),
        );
    }

    table.section("Gap report");
    let start = Instant::now();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let base_s = start.elapsed().as_secs_f64();
    table.add(
        "baseline: COUNT(*) over the readings table",
        format!("{:.1} ms", base_s * 1e3),
        &format!("{} readings", thousands(count as usize)),
    );
    let q = GapQuery {
        from: T0,
        to: T0 + 3600,
        ..Default::default()
    };
    let start = Instant::now();
    let r = report(&store, &q, now).await.unwrap();
    let s = start.elapsed().as_secs_f64();
    table.add(
        "gap report, 1,000 sources x 1 h",
        format!("{:.0} ms", s * 1e3),
        &format!("{} sources reported", thousands(r.sources.len())),
    );
    store.close().await;
    table.print();
}
