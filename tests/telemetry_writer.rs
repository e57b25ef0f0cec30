//! The durable telemetry writer on both backends: answers after the commit with exact
//! per-job counts (also when several jobs share a statement and some readings were already
//! stored), backpressure when its queue is full, invalid readings refused before queueing,
//! and a clean close that writes what was queued.

mod common;

use common::TestDb;
use sqlx::Executor;
use std::time::Duration;
use switchyard::store::Backend;
use switchyard::telemetry::{
    self, Measurand, Quality, Reading, SourceKind, TelemetryError, TelemetryWriter, WriterSettings,
};

fn reading(source: &str, instant: i64, value: f64) -> Reading {
    Reading {
        source_id: source.into(),
        source_kind: SourceKind::Mqtt,
        measurand: Measurand::ActivePower,
        instant,
        value,
        quality: Quality::Measured,
    }
}

fn base() -> i64 {
    switchyard::domain::now_epoch() - 10_000
}

async fn count(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(db.store.pool())
        .await
        .unwrap()
}

async fn jobs_sharing_a_transaction_get_exact_counts(db: TestDb) {
    let t = base();
    let writer = TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap();
    // Already stored: instants t..t+10 of "a".
    let first: Vec<Reading> = (0..10).map(|i| reading("a", t + i, i as f64)).collect();
    let o = writer.submit(first).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (10, 0));

    // Queued together so that they share statements: a job of new readings, a job that
    // overlaps what is stored, a job repeating a reading of an earlier job in the batch.
    let new = writer
        .enqueue((0..5).map(|i| reading("b", t + i, 1.0)).collect())
        .await
        .unwrap();
    let overlap = writer
        .enqueue((5..15).map(|i| reading("a", t + i, -1.0)).collect())
        .await
        .unwrap();
    let repeat = writer
        .enqueue(vec![reading("b", t, 2.0), reading("c", t, 3.0)])
        .await
        .unwrap();
    let outcomes = (
        new.committed().await.unwrap(),
        overlap.committed().await.unwrap(),
        repeat.committed().await.unwrap(),
    );
    assert_eq!(
        [outcomes.0, outcomes.1, outcomes.2].map(|o| (o.inserted, o.duplicates)),
        [(5, 0), (5, 5), (1, 1)]
    );
    assert_eq!(count(&db).await, 10 + 5 + 5 + 1);
    // The first value stored for a key wins: the overlap did not overwrite "a".
    let a = telemetry::query(&db.store, "a", None, t, t + 15)
        .await
        .unwrap();
    assert_eq!(a[5].value, 5.0);
    assert_eq!(a[12].value, -1.0);
    let b = telemetry::query(&db.store, "b", None, t, t + 1)
        .await
        .unwrap();
    assert_eq!(b[0].value, 1.0);
    let s = writer.stats();
    assert_eq!((s.inserted, s.duplicates, s.failed_jobs), (21, 6, 0));

    // Many small concurrent producers: every reading stored once.
    let mut tasks = Vec::new();
    for p in 0..20 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..10 {
                let rs = (0..7)
                    .map(|i| reading(&format!("p{p}"), t + k * 7 + i, 0.5))
                    .collect();
                let o = w.submit(rs).await.unwrap();
                assert_eq!(o.inserted, 7);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(count(&db).await, 21 + 20 * 70);
    writer.close().await;
}

async fn invalid_readings_are_refused_before_queueing(db: TestDb) {
    let t = base();
    let writer = TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap();
    let free = writer.available();
    let bad = vec![reading("x", t, 1.0), reading("x", t + 1, f64::NAN)];
    let err = writer.submit(bad).await.unwrap_err();
    assert!(matches!(err, TelemetryError::NotFinite { .. }), "{err}");
    assert!(err.is_invalid_input());
    let future = vec![reading("x", t, 1.0), reading("x", i64::MAX / 2, 1.0)];
    let err = writer.submit(future).await.unwrap_err();
    assert!(err.to_string().contains("device clock"), "{err}");
    assert_eq!(writer.available(), free, "nothing queued");
    assert_eq!(count(&db).await, 0, "nothing of a refused job is stored");
    writer.close().await;
}

async fn a_full_queue_holds_producers_back(db: TestDb) {
    let t = base();
    let writer = TelemetryWriter::start(
        &db.store,
        WriterSettings {
            queue_readings: 100,
            max_batch_readings: 1000,
        },
    )
    .await
    .unwrap();
    // Another writer holds the database: the telemetry writer's transaction waits.
    let mut blocker = db.store.pool().acquire().await.unwrap();
    match db.store.backend() {
        Backend::Sqlite => blocker.execute("BEGIN IMMEDIATE").await.unwrap(),
        Backend::Postgres => {
            blocker.execute("BEGIN").await.unwrap();
            blocker
                .execute("LOCK TABLE readings IN EXCLUSIVE MODE")
                .await
                .unwrap()
        }
    };
    let first = writer
        .enqueue((0..60).map(|i| reading("q", t + i, 1.0)).collect())
        .await
        .unwrap();
    assert_eq!(writer.available(), 40);
    // 60 more do not fit: the producer waits instead of growing the queue.
    let w = writer.clone();
    let second = tokio::spawn(async move {
        w.submit((60..120).map(|i| reading("q", t + i, 1.0)).collect())
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "a full queue must hold the producer");
    // The waiting producer holds the 40 free places (fair queueing: a big job is not
    // starved by small ones), so nothing else gets in either.
    assert_eq!(writer.available(), 0);
    assert_eq!(
        count_on(&mut blocker, &db).await,
        0,
        "nothing committed yet"
    );

    blocker.execute("COMMIT").await.unwrap();
    drop(blocker);
    assert_eq!(first.committed().await.unwrap().inserted, 60);
    assert_eq!(second.await.unwrap().unwrap().inserted, 60);
    assert_eq!(count(&db).await, 120);
    assert_eq!(
        writer.available(),
        100,
        "the budget is returned after the commit"
    );

    // Closing writes what is queued, then refuses more.
    let last = writer
        .enqueue(vec![reading("q", t + 500, 2.0)])
        .await
        .unwrap();
    writer.close().await;
    assert_eq!(last.committed().await.unwrap().inserted, 1);
    let err = writer
        .submit(vec![reading("q", t + 501, 2.0)])
        .await
        .unwrap_err();
    assert!(matches!(err, TelemetryError::WriterClosed), "{err}");
    assert!(!err.is_invalid_input());
    assert_eq!(count(&db).await, 121);
}

async fn count_on(conn: &mut sqlx::pool::PoolConnection<sqlx::Any>, db: &TestDb) -> i64 {
    // Inside the blocking transaction on SQLite (the pool's other connections would wait
    // for the lock only to read), on the pool for PostgreSQL (readers are not blocked).
    match db.store.backend() {
        Backend::Sqlite => sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&mut **conn)
            .await
            .unwrap(),
        Backend::Postgres => count(db).await,
    }
}

on_both_backends!(
    jobs_sharing_a_transaction_get_exact_counts,
    invalid_readings_are_refused_before_queueing,
    a_full_queue_holds_producers_back,
);
