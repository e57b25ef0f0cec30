//! The durable telemetry writer on both backends: answers after the commit with exact
//! per-job counts (also when several jobs share a statement and some readings were already
//! stored), backpressure when its queue is full, invalid readings refused before queueing,
//! and a clean close that writes what was queued; late data submitted through the writer
//! revises an earlier stored aggregate with an audit record, also when the revision was
//! only queued when the process died; rows of interleaved sources each keep their own id.

mod common;

use common::TestDb;
use sqlx::Executor;
use std::time::Duration;
use switchyard::store::Backend;
use switchyard::telemetry::revisions::{self, ComputeRequest, Revision, RevisionQuery};
use switchyard::telemetry::{
    self, Measurand, Quality, Reading, SourceKind, TelemetryError, TelemetryWriter, WriterSettings,
    align::Grid,
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

/// A fixed past hour, so that every interval of it is closed.
const T0: i64 = 1_750_000_000 - 1_750_000_000 % 3600;

/// d1 reads 1000 W every minute for half an hour, without T0+360..=T0+1020; the 5-minute
/// aggregates of that half hour are stored.
async fn stored_aggregates_with_a_hole(db: &TestDb, writer: Option<&TelemetryWriter>) {
    let on_time: Vec<Reading> = (0..30)
        .map(|k| T0 + 60 * k)
        .filter(|t| !(T0 + 360..=T0 + 1020).contains(t))
        .map(|t| reading("d1", t, 1000.0))
        .collect();
    match writer {
        Some(w) => assert_eq!(w.submit(on_time).await.unwrap().inserted, 18),
        None => {
            telemetry::insert_batch(&db.store, &on_time, T0 + 3600)
                .await
                .unwrap();
        }
    }
    let req = ComputeRequest {
        source_id: "d1".into(),
        measurand: Measurand::ActivePower,
        grid: Grid::FiveMinutes,
        from: T0,
        to: T0 + 1800,
        max_gap_s: 120,
    };
    let rows = revisions::compute(&db.store, &req, switchyard::domain::now_epoch())
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!((rows[1].value, rows[1].samples), (Some(1000.0), 1));
    assert!(rows.iter().all(|r| r.revision == 0));
}

/// Four readings of 4000 W from T0+360, arriving late.
fn late_readings() -> Vec<Reading> {
    (0..4)
        .map(|k| reading("d1", T0 + 360 + 60 * k, 4000.0))
        .collect()
}

/// The revisions of d1, once there are any (the writer works them off right after the
/// commit that acknowledged the readings), or none after a few seconds.
async fn revisions_of_d1(db: &TestDb) -> Vec<Revision> {
    let q = RevisionQuery {
        source_id: Some("d1".into()),
        from: None,
        to: None,
        after: None,
        limit: 100,
    };
    for _ in 0..100 {
        let items = revisions::revisions(&db.store, &q).await.unwrap();
        if !items.is_empty() {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

/// The revision the late readings make: 300..360 ramps 1000 -> 4000 W and 360..540 holds
/// 4000 W, 3625 W over the 240 s covered, from 5 samples instead of 1.
fn assert_the_late_revision(items: &[Revision]) {
    assert_eq!(items.len(), 1, "{items:?}");
    let r = &items[0];
    assert_eq!((r.interval_start, r.grid), (T0 + 300, Grid::FiveMinutes));
    assert_eq!(r.revision, 1);
    assert_eq!(r.old_value, Some(1000.0));
    assert!((r.new_value.unwrap() - 3625.0).abs() < 1e-6, "{r:?}");
    assert_eq!((r.old_samples, r.new_samples), (1, 5));
    assert_eq!((r.cause_instant, r.cause_value), (T0 + 360, 4000.0));
    assert_eq!(r.cause_readings, 4);
}

async fn queued(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM telemetry_revision_queue")
        .fetch_one(db.store.pool())
        .await
        .unwrap()
}

async fn late_data_through_the_writer_revises_an_earlier_aggregate(db: TestDb) {
    let writer = TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap();
    stored_aggregates_with_a_hole(&db, Some(&writer)).await;
    // On-time data of another source revises nothing.
    writer
        .submit(vec![reading("d2", T0 + 400, 5.0)])
        .await
        .unwrap();

    let o = writer.submit(late_readings()).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (4, 0));
    let items = revisions_of_d1(&db).await;
    assert_the_late_revision(&items);
    let stored = revisions::query(
        &db.store,
        "d1",
        Measurand::ActivePower,
        Grid::FiveMinutes,
        T0 + 300,
        T0 + 600,
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].revision, stored[0].samples), (1, 5));
    assert!((stored[0].value.unwrap() - 3625.0).abs() < 1e-6);

    // Delivered again: stored once, revised once.
    let o = writer.submit(late_readings()).await.unwrap();
    assert_eq!((o.inserted, o.duplicates), (0, 4));
    writer.close().await;
    assert_eq!(revisions_of_d1(&db).await.len(), 1);
    assert_eq!(queued(&db).await, 0, "nothing left owed");
}

async fn revisions_queued_before_a_crash_are_made_at_the_next_start(db: TestDb) {
    stored_aggregates_with_a_hole(&db, None).await;
    // What the writer's SQLite transaction leaves when the process dies right after its
    // commit: the late readings and the revision they owe, not yet made.
    let received = T0 + 4000;
    let mut tx = db.store.begin_write().await.unwrap();
    for r in late_readings() {
        sqlx::query(
            "INSERT INTO readings (source_id, source_kind, measurand, instant, value, quality, \
             received_at) VALUES ($1, 'mqtt', 'active_power_w', $2, $3, 'measured', $4)",
        )
        .bind(r.source_id)
        .bind(r.instant)
        .bind(r.value)
        .bind(received)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO telemetry_revision_queue (source_id, measurand, received_at, min_instant, \
         max_instant) VALUES ('d1', 'active_power_w', $1, $2, $3)",
    )
    .bind(received)
    .bind(T0 + 360)
    .bind(T0 + 540)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(revisions_of_d1_now(&db).await.is_empty());

    let writer = TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap();
    let items = revisions_of_d1(&db).await;
    assert_the_late_revision(&items);
    assert_eq!(
        (items[0].cause_received_at, items[0].revised_at),
        (received, received)
    );
    writer.close().await;
    assert_eq!(queued(&db).await, 0);
}

async fn revisions_of_d1_now(db: &TestDb) -> Vec<Revision> {
    let q = RevisionQuery {
        source_id: Some("d1".into()),
        from: None,
        to: None,
        after: None,
        limit: 100,
    };
    revisions::revisions(&db.store, &q).await.unwrap()
}

/// Of two readings with the same key queued in one transaction, the one queued first is
/// stored: the writer sorts each batch by the table's key, and that sort must keep arrival
/// order (per-device order over MQTT depends on it).
async fn the_first_of_two_readings_with_one_key_is_kept(db: TestDb) {
    let t = base();
    let writer = TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap();
    // One submission holding, for many sources, the originals and then corrections with
    // the same keys (as an MQTT batch of several messages per device does); enough rows
    // that an unstable sort would reorder equal keys.
    let sources: Vec<String> = (0..500).map(|i| format!("dup-{i}")).collect();
    let mut batch = Vec::new();
    for v in [1.0, 2.0] {
        for i in 0..40 {
            batch.extend(sources.iter().map(|s| reading(s, t + i, v)));
        }
    }
    let o = writer.submit(batch).await.unwrap();
    let (inserted, duplicates) = (o.inserted, o.duplicates);
    assert_eq!((inserted, duplicates), (20_000, 20_000));
    for s in &sources {
        let stored = telemetry::query(&db.store, s, None, t, t + 40)
            .await
            .unwrap();
        assert_eq!(stored.len(), 40, "{s}");
        assert!(
            stored.iter().all(|r| r.value == 1.0),
            "{s}: a later reading replaced the first: {stored:?}"
        );
    }
    writer.close().await;
}

/// Every row is stored under its own source id: the SQLite path binds one shared copy of
/// the id for each run of rows of the same source, so rows of sources whose ids share a
/// prefix, interleaved in the submission, must not end up under a neighbour's id.
async fn interleaved_sources_keep_their_own_ids(db: TestDb) {
    let t = base();
    let writer = TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap();
    let sources = ["s-1", "s-10", "s-1x", "s-", "s-100", "S-1", "s-1 "];
    let mut batch = Vec::new();
    for i in 0..30 {
        for (k, s) in sources.iter().enumerate() {
            batch.push(reading(s, t + i, k as f64));
        }
    }
    let o = writer.submit(batch).await.unwrap();
    assert_eq!(o.inserted, 30 * sources.len() as u64);
    for (k, s) in sources.iter().enumerate() {
        let stored = telemetry::query(&db.store, s, None, t, t + 30)
            .await
            .unwrap();
        assert_eq!(stored.len(), 30, "{s:?}");
        assert!(
            stored
                .iter()
                .all(|r| r.value == k as f64 && r.source_id == *s),
            "{s:?} holds another source's rows: {stored:?}"
        );
    }
    writer.close().await;
}

on_both_backends!(
    interleaved_sources_keep_their_own_ids,
    the_first_of_two_readings_with_one_key_is_kept,
    jobs_sharing_a_transaction_get_exact_counts,
    invalid_readings_are_refused_before_queueing,
    a_full_queue_holds_producers_back,
    late_data_through_the_writer_revises_an_earlier_aggregate,
    revisions_queued_before_a_crash_are_made_at_the_next_start,
);
