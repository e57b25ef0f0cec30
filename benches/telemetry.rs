//! Telemetry write benchmark: readings per second, sustained, into SQLite through the
//! durable batched writer (`telemetry::TelemetryWriter`), against the `insert_batch` path
//! it replaces, measured in the same run.
//!
//! Run with `cargo bench --bench telemetry`. `SWITCHYARD_BENCH_TELEMETRY_READINGS` (default
//! 5,000,000) sets how many readings go through the writer; the baseline writes a fifth of
//! that (it is slow). Readings come from `DEVICES` devices, each reporting active power once
//! a second, in time order, as a fleet does. Submitters send batches of `BATCH` readings and
//! each waits for its commit before sending its next batch (as the MQTT ingest and the bulk
//! API do), so every reading counted is acknowledged durable. The baseline runs
//! `PRODUCERS` submitters (one per pool connection); the writer runs as many as it takes
//! to keep its queue full (`SWITCHYARD_BENCH_TELEMETRY_INFLIGHT` submits in flight, default
//! the queue's size over `BATCH`): a writer that commits ~250k readings at a time is only
//! fed by that many readings awaiting their acknowledgement, as a large fleet of devices
//! each awaiting its own would. `SWITCHYARD_BENCH_TELEMETRY_TX` sets the writer's
//! `max_batch_readings` (the queue holds two of them).
//! Besides the average, the slowest window of `WINDOW` consecutive acknowledged readings is
//! reported: "sustained" means that rate, not a burst into an empty table.

#[path = "common/mod.rs"]
mod common;

use anyhow::{Context, Result, bail};
use common::{Table, thousands};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard::store::Store;
use switchyard::telemetry::{
    Measurand, Quality, Reading, SourceKind, TelemetryWriter, WriterSettings, insert_batch,
};

const DEVICES: u64 = 10_000;
const PRODUCERS: u64 = 8;
const BATCH: u64 = 1_000;
const WINDOW: u64 = 500_000;

/// Reading number `i` of the run: device `i % DEVICES`, one second after its previous one.
fn reading(i: u64, base: i64) -> Reading {
    let device = i % DEVICES;
    Reading {
        source_id: format!("bench-dev-{device:05}"),
        source_kind: SourceKind::Mqtt,
        measurand: Measurand::ActivePower,
        instant: base + (i / DEVICES) as i64,
        value: ((i * 7919) % 10_000) as f64 - 5_000.5,
        quality: Quality::Measured,
    }
}

/// Batch `b` of the run: readings `b * BATCH ..`.
fn batch(b: u64, n: u64, base: i64) -> Vec<Reading> {
    (b * BATCH..((b + 1) * BATCH).min(n))
        .map(|i| reading(i, base))
        .collect()
}

/// What a run measured.
struct Run {
    took: Duration,
    /// The slowest WINDOW of acknowledged readings, as a duration.
    slowest_window: Duration,
}

/// Runs PRODUCERS tasks that take batch numbers from a shared counter and submit them with
/// `submit`; records when each WINDOW of acknowledged readings completed.
async fn drive<F, Fut>(n: u64, submitters: u64, submit: F) -> Result<Run>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let batches = n.div_ceil(BATCH);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..submitters {
        let (next, acked, submit) = (next.clone(), acked.clone(), submit.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<_, anyhow::Error>(());
                }
                submit(b).await?;
                acked.fetch_add(BATCH.min(n - b * BATCH), Ordering::Relaxed);
            }
        }));
    }
    // Window boundaries are sampled every few milliseconds: precise enough at these sizes.
    let mut marks = vec![Duration::ZERO];
    let mut next_mark = WINDOW;
    while acked.load(Ordering::Relaxed) < n {
        if tasks.iter().all(|t| t.is_finished()) && acked.load(Ordering::Relaxed) < n {
            // Every producer ended without all readings acknowledged: one failed.
            for t in tasks {
                t.await??;
            }
            bail!("producers ended early");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        while acked.load(Ordering::Relaxed) >= next_mark {
            marks.push(started.elapsed());
            next_mark += WINDOW;
        }
    }
    let took = started.elapsed();
    for t in tasks {
        t.await??;
    }
    let slowest_window = marks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(took);
    Ok(Run {
        took,
        slowest_window,
    })
}

async fn count(store: &Store) -> Result<i64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(store.pool())
        .await?;
    Ok(n)
}

fn rate(n: u64, d: Duration) -> String {
    format!(
        "{} readings/s",
        thousands((n as f64 / d.as_secs_f64()) as usize)
    )
}

/// A count from the environment (underscores allowed), or `default`.
fn env_count(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.replace('_', "").parse().context(name.to_string()),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let n = env_count("SWITCHYARD_BENCH_TELEMETRY_READINGS", 5_000_000)?;
    let defaults = WriterSettings::default();
    let tx = env_count(
        "SWITCHYARD_BENCH_TELEMETRY_TX",
        defaults.max_batch_readings as u64,
    )?
    .max(1);
    let settings = WriterSettings {
        queue_readings: 2 * tx as usize,
        max_batch_readings: tx as usize,
    };
    let inflight = env_count(
        "SWITCHYARD_BENCH_TELEMETRY_INFLIGHT",
        (settings.queue_readings as u64 / BATCH).max(1),
    )?
    .max(1);
    let baseline_n = (n / 5).max(BATCH);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    // Every instant lies in the past: the newest is a few seconds before now.
    let base = switchyard::domain::now_epoch() - (n / DEVICES) as i64 - 10;
    let mut table = Table::new();
    println!(
        "Telemetry writes into SQLite: {n} readings via the writer ({baseline_n} via the baseline), {DEVICES} devices, {BATCH} readings per submit; baseline {PRODUCERS} submitters; writer {inflight} submits in flight, transactions of up to {tx} readings"
    );
    let mut baseline_rate = 0.0;
    rt.block_on(async {
        table.section(
            "baseline: insert_batch (sqlx Any, 1000-row statements, a transaction per submit)",
        );
        {
            let url = format!(
                "sqlite:{}?mode=rwc",
                dir.path().join("baseline.db").display()
            );
            let store = Store::open(&url, 8).await?;
            let s = store.clone();
            let run = drive(baseline_n, PRODUCERS, move |b| {
                let s = s.clone();
                async move {
                    let readings = batch(b, baseline_n, base);
                    insert_batch(&s, &readings, switchyard::domain::now_epoch()).await?;
                    Ok(())
                }
            })
            .await?;
            if count(&store).await? != baseline_n as i64 {
                bail!("baseline stored the wrong number of readings");
            }
            baseline_rate = baseline_n as f64 / run.took.as_secs_f64();
            table.add(
                "average",
                rate(baseline_n, run.took),
                &format!("{baseline_n} readings in {:.1} s", run.took.as_secs_f64()),
            );
            store.close().await;
        }

        table.section("TelemetryWriter (group commit, native SQLite connection)");
        {
            let url = format!("sqlite:{}?mode=rwc", dir.path().join("writer.db").display());
            let store = Store::open(&url, 8).await?;
            let writer = TelemetryWriter::start(&store, settings).await?;
            let w = writer.clone();
            let run = drive(n, inflight, move |b| {
                let w = w.clone();
                async move {
                    let outcome = w.submit(batch(b, n, base)).await?;
                    if outcome.duplicates != 0 {
                        bail!("unexpected duplicates: {outcome:?}");
                    }
                    Ok(())
                }
            })
            .await?;
            let stats = writer.stats();
            writer.close().await;
            if count(&store).await? != n as i64 {
                bail!("the writer stored the wrong number of readings");
            }
            table.add(
                "average",
                rate(n, run.took),
                &format!(
                    "{n} readings in {:.1} s ({:.2}x the baseline's average)",
                    run.took.as_secs_f64(),
                    (n as f64 / run.took.as_secs_f64()) / baseline_rate
                ),
            );
            table.add(
                &format!("slowest {} readings", thousands(WINDOW as usize)),
                rate(WINDOW.min(n), run.slowest_window),
                &format!(
                    "the sustained rate ({:.2}x the baseline's average)",
                    (WINDOW.min(n) as f64 / run.slowest_window.as_secs_f64()) / baseline_rate
                ),
            );
            table.add(
                "transactions",
                thousands(stats.commits as usize),
                &format!("{:.0} readings per commit", n as f64 / stats.commits as f64),
            );

            // Every reading again: all duplicates, nothing double-stored.
            let w = writer_again(&store).await?;
            let again = baseline_n.min(n);
            let started = Instant::now();
            let mut b = 0;
            while b * BATCH < again {
                let o = w.submit(batch(b, again, base)).await?;
                if o.inserted != 0 {
                    bail!("a redelivered reading was stored again: {o:?}");
                }
                b += 1;
            }
            let took = started.elapsed();
            w.close().await;
            if count(&store).await? != n as i64 {
                bail!("redelivery changed the number of readings");
            }
            table.add(
                "redelivery (all duplicates, one producer)",
                rate(again, took),
                "nothing stored twice",
            );
            store.close().await;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!();
    table.print();
    Ok(())
}

async fn writer_again(store: &Store) -> Result<TelemetryWriter> {
    Ok(TelemetryWriter::start(store, WriterSettings::default()).await?)
}
