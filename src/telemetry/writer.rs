//! The durable, batched telemetry writer: group commit behind a bounded queue.
//!
//! Producers (MQTT ingest, the operator API, pollers) hand readings to a
//! [`TelemetryWriter`] and are answered only once the transaction holding them has
//! committed. One task owns the writes: it takes every job waiting in the queue (up to
//! [`WriterSettings::max_batch_readings`]), writes them with large multi-row statements in
//! one transaction, commits, and then answers each job. So the cost of a commit and of
//! statement round trips is shared by everything that arrived while the previous batch was
//! being written, and no producer is told "stored" for a reading a crash could still lose
//! (SQLite in WAL mode keeps a committed transaction across a process crash; PostgreSQL
//! across a crash of the server too).
//!
//! Memory is bounded: a job holds permits for its readings from a semaphore of
//! [`WriterSettings::queue_readings`], taken before it is queued and returned after it is
//! answered; a producer that finds the queue full waits (backpressure) instead of
//! growing the queue. Readings are validated before they are queued, with the same
//! [`TelemetryError`]s as [`super::insert_batch`], so a refused job never reaches the
//! database and a job with one bad reading stores nothing.
//!
//! Duplicates stay idempotent: rows go in with `ON CONFLICT DO NOTHING` on the readings key,
//! so a reading delivered twice is stored once. Each job learns how many of its readings
//! were new: statements that mix several jobs' rows are counted per statement, and if such
//! a statement skipped a duplicate (which job's?) the transaction is rolled back and written
//! again with statements that each hold one job's rows. Duplicates are rare (redeliveries),
//! so the common case pays nothing for exact counts.
//!
//! On SQLite the writer uses its own native connection (not the shared `Any` pool): the
//! `Any` driver copies every bound value once more and was the limit of the MQTT ingest
//! (docs/benchmarks.md). PostgreSQL (and an in-memory SQLite database, which a second
//! connection could not see) use the shared pool with the `Any` multi-row statements of
//! [`super::store`].

use super::store::InsertOutcome;
use super::{Reading, TelemetryError};
use crate::domain::{EpochSeconds, now_epoch};
use crate::store::{Backend, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Sizes of the writer's queue and transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// Readings that may wait in the queue (and in the batch being written) before
    /// producers have to wait. A job larger than this is admitted alone.
    pub queue_readings: usize,
    /// Most readings written in one transaction. Larger transactions commit less often but
    /// hold SQLite's single write lock longer, delaying other writers.
    pub max_batch_readings: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        // Page writes, not statements, limit SQLite here: a transaction dirties about one
        // leaf page per source it touches, so the more readings per source a commit holds,
        // the fewer bytes per reading reach the disk (docs/telemetry.md). 256k readings
        // per transaction is ~25 per source for a fleet of 10,000 reporting each second,
        // about a second of SQLite's write lock at 200k readings/s. The queue holds two
        // such batches (~50 MiB of readings) so that one fills while the other is written.
        WriterSettings {
            queue_readings: 524_288,
            max_batch_readings: 262_144,
        }
    }
}

/// Counters since the writer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Readings newly stored.
    pub inserted: u64,
    /// Readings skipped because they were already stored.
    pub duplicates: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Jobs answered with a storage error.
    pub failed_jobs: u64,
}

#[derive(Default)]
struct Counters {
    inserted: AtomicU64,
    duplicates: AtomicU64,
    commits: AtomicU64,
    failed_jobs: AtomicU64,
}

type Answer = Result<InsertOutcome, String>;

/// Readings waiting to be written, and who to tell.
struct Job {
    readings: Vec<Reading>,
    done: oneshot::Sender<Answer>,
    // Returned to the queue's budget when the job is answered (dropped).
    _permit: OwnedSemaphorePermit,
}

struct Shared {
    queue: mpsc::UnboundedSender<Job>,
    budget: Arc<Semaphore>,
    capacity: usize,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// A handle to the telemetry writer; clones share one queue and one writing task.
#[derive(Clone)]
pub struct TelemetryWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TelemetryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryWriter")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

/// A queued job's answer, to be awaited: resolves once the job's transaction committed.
#[must_use = "a queued job is only durable once its commit has been awaited"]
pub struct Pending {
    rx: oneshot::Receiver<Answer>,
}

impl Pending {
    /// Waits for the commit. Ok means every reading of the job is stored (new or already
    /// there); an error means none of them was written by this job.
    pub async fn committed(self) -> Result<InsertOutcome, TelemetryError> {
        match self.rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(TelemetryError::WriteFailed(e)),
            Err(_) => Err(TelemetryError::WriterClosed),
        }
    }
}

impl TelemetryWriter {
    /// Starts the writing task over `store`. On a file-backed SQLite store this opens one
    /// more connection to the same database, used only by the writer.
    pub async fn start(store: &Store, settings: WriterSettings) -> Result<Self, TelemetryError> {
        let sink = Sink::open(store).await?;
        let capacity = settings.queue_readings.max(1);
        let (queue, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(
            Worker {
                sink,
                counters: counters.clone(),
                max_batch: settings.max_batch_readings.max(1),
                revisions_owed: true,
            }
            .run(rx, stop_rx),
        );
        Ok(TelemetryWriter {
            shared: Arc::new(Shared {
                queue,
                // Semaphore permits are u32-sized; far above any sensible queue.
                budget: Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS))),
                capacity: capacity.min(Semaphore::MAX_PERMITS),
                counters,
                stop,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// Validates `readings` and queues them, waiting while the queue is full; the returned
    /// [`Pending`] resolves after the commit. Invalid readings are refused here and nothing
    /// of the job is queued.
    pub async fn enqueue(&self, readings: Vec<Reading>) -> Result<Pending, TelemetryError> {
        let now = now_epoch();
        for r in &readings {
            r.validate(now)?;
        }
        let (done, rx) = oneshot::channel();
        if readings.is_empty() {
            let _ = done.send(Ok(InsertOutcome::default()));
            return Ok(Pending { rx });
        }
        let wanted = readings.len().min(self.shared.capacity) as u32;
        let permit = self
            .shared
            .budget
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| TelemetryError::WriterClosed)?;
        self.shared
            .queue
            .send(Job {
                readings,
                done,
                _permit: permit,
            })
            .map_err(|_| TelemetryError::WriterClosed)?;
        Ok(Pending { rx })
    }

    /// Validates, queues and waits for the commit of `readings`.
    pub async fn submit(&self, readings: Vec<Reading>) -> Result<InsertOutcome, TelemetryError> {
        self.enqueue(readings).await?.committed().await
    }

    /// Readings that producers could still queue before having to wait.
    pub fn available(&self) -> usize {
        self.shared.budget.available_permits()
    }

    /// The counters so far.
    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            inserted: g(&c.inserted),
            duplicates: g(&c.duplicates),
            commits: g(&c.commits),
            failed_jobs: g(&c.failed_jobs),
        }
    }

    /// Stops accepting readings, writes everything already queued, and waits for the task
    /// (and its connection) to end. Later calls, from any clone, return at once.
    pub async fn close(&self) {
        self.shared.budget.close();
        let _ = self.shared.stop.send(true);
        let task = self.shared.task.lock().expect("writer task").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Where the writer's rows go.
enum Sink {
    /// A connection of the writer's own, native driver; the store is kept for the
    /// late-data revisions, which are queued in the readings' transaction and worked off
    /// through the shared pool after the commit.
    Sqlite(Box<SqliteConnection>, Statements, Store),
    /// The shared `Any` pool (PostgreSQL, in-memory SQLite).
    Pool(Store),
}

/// Values bound per row in the SQLite statements.
const SQLITE_COLUMNS: usize = 7;
const _: () = assert!(SQLITE_SIZES[0] * SQLITE_COLUMNS <= 32_766);

/// Rows per SQLite statement, largest first: the largest stays under SQLite's limit of
/// 32766 bound parameters (4096 x 7 = 28672). Only a few sizes are used so that the
/// connection's prepared-statement cache always hits.
const SQLITE_SIZES: [usize; 5] = [4096, 512, 64, 8, 1];

impl Sink {
    async fn open(store: &Store) -> Result<Sink, TelemetryError> {
        match (store.backend(), store.url()) {
            (Backend::Sqlite, url) if !is_in_memory(url) => {
                let options = SqliteConnectOptions::from_str(url)?;
                let mut conn = options.connect().await?;
                // The same settings as the shared pool's connections (Store::open):
                // synchronous=NORMAL in WAL mode keeps every commit across a process crash.
                // A larger cache than theirs (256 MiB, a ceiling): the leaf pages where each
                // source's newest readings go are revisited by every transaction.
                conn.execute(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                     PRAGMA busy_timeout=10000; PRAGMA cache_size=-262144;",
                )
                .await?;
                Ok(Sink::Sqlite(
                    Box::new(conn),
                    Statements::new(),
                    store.clone(),
                ))
            }
            _ => Ok(Sink::Pool(store.clone())),
        }
    }

    /// Writes `jobs` in one transaction. With `per_job`, no statement mixes two jobs'
    /// rows, so every job's count of new readings is exact; without, a mixed statement
    /// that skipped a duplicate makes the whole call return `Ok(None)` after rolling back.
    /// Sets `owed` when the committed transaction queued late-data revisions.
    async fn write(
        &mut self,
        jobs: &[Job],
        now: EpochSeconds,
        per_job: bool,
        owed: &mut bool,
    ) -> Result<Option<Vec<u64>>, TelemetryError> {
        match self {
            Sink::Sqlite(conn, statements, _) => {
                // The write lock at once: the transaction reads (which sources have stored
                // aggregates) besides writing, and this is the only connection that uses it.
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let counts = sqlite_rows(&mut tx, statements, jobs, now, per_job).await?;
                if counts.is_some() {
                    let queued = queue_revisions(&mut tx, jobs, now).await?;
                    tx.commit().await?;
                    *owed |= queued > 0;
                } else {
                    tx.rollback().await?;
                }
                Ok(counts)
            }
            Sink::Pool(store) => {
                // The Any statements are per job already (insert_in counts exactly).
                let mut tx = store.pool().begin().await?;
                let mut counts = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let outcome = super::store::insert_in(&mut tx, &job.readings, now).await?;
                    counts.push(outcome.inserted);
                }
                tx.commit().await?;
                Ok(Some(counts))
            }
        }
    }
}

/// Late readings revise the stored aggregates they fall in (`telemetry::revisions`). On the
/// pool path that happens inside the insert transaction (`insert_in`). The native SQLite
/// connection cannot run the `Any` revision queries, and a second connection cannot write
/// while this one holds the lock; so, in the readings' own transaction, each (source,
/// measurand) of the batch whose source has stored aggregates gets a row in
/// `telemetry_revision_queue` (migration 0019), which [`super::revisions::work_off_queue`]
/// turns into revisions through the pool right after the commit. A reading is therefore
/// never acknowledged without its revision owed durably, whatever happens next.
async fn queue_revisions(
    conn: &mut SqliteConnection,
    jobs: &[Job],
    now: EpochSeconds,
) -> Result<u64, TelemetryError> {
    let sources: BTreeSet<&str> = jobs
        .iter()
        .flat_map(|j| j.readings.iter().map(|r| r.source_id.as_str()))
        .collect();
    let sources: Vec<&str> = sources.into_iter().collect();
    let mut with_aggregates: HashSet<String> = HashSet::new();
    for chunk in sources.chunks(SOURCES_PER_QUERY) {
        let marks = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "SELECT DISTINCT source_id FROM telemetry_aggregates WHERE source_id IN ({marks})"
        );
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q.bind(s.to_string());
        }
        with_aggregates.extend(q.fetch_all(&mut *conn).await?);
    }
    if with_aggregates.is_empty() {
        return Ok(0);
    }
    // The span of each (source, measurand) in the batch; the queue row stands for the
    // readings of that span received now.
    let mut spans: BTreeMap<(&str, &'static str), (EpochSeconds, EpochSeconds)> = BTreeMap::new();
    for r in jobs.iter().flat_map(|j| j.readings.iter()) {
        if !with_aggregates.contains(r.source_id.as_str()) {
            continue;
        }
        let span = spans
            .entry((r.source_id.as_str(), r.measurand.as_str()))
            .or_insert((r.instant, r.instant));
        span.0 = span.0.min(r.instant);
        span.1 = span.1.max(r.instant);
    }
    for ((source_id, measurand), (min, max)) in &spans {
        sqlx::query(
            "INSERT INTO telemetry_revision_queue (source_id, measurand, received_at, \
             min_instant, max_instant) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (source_id, measurand, received_at) DO UPDATE SET \
             min_instant = min(min_instant, excluded.min_instant), \
             max_instant = max(max_instant, excluded.max_instant)",
        )
        .bind(source_id.to_string())
        .bind(*measurand)
        .bind(now)
        .bind(*min)
        .bind(*max)
        .execute(&mut *conn)
        .await?;
    }
    Ok(spans.len() as u64)
}

/// Source ids per query of [`queue_revisions`]: well under SQLite's parameter limit.
const SOURCES_PER_QUERY: usize = 500;

/// The SQLite INSERT texts, one per size of [`SQLITE_SIZES`], built once.
struct Statements([Arc<str>; SQLITE_SIZES.len()]);

impl Statements {
    fn new() -> Self {
        Statements(SQLITE_SIZES.map(|rows| Arc::from(sqlite_insert(rows))))
    }

    fn for_rows(&self, rows: usize) -> Arc<str> {
        let i = SQLITE_SIZES
            .iter()
            .position(|s| *s == rows)
            .expect("a statement size");
        self.0[i].clone()
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The text of an SQLite INSERT of `rows` rows.
fn sqlite_insert(rows: usize) -> String {
    let mut sql = String::with_capacity(40 + rows * 18);
    sql.push_str(
        "INSERT INTO readings (source_id, source_kind, measurand, instant, value, quality, \
         received_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?)");
    }
    sql.push_str(" ON CONFLICT (source_id, measurand, instant) DO NOTHING");
    sql
}

/// Inserts the jobs' rows on `conn`; the new-row count of each job, or None when a
/// statement mixing jobs skipped a row (the caller rolls back and retries per job).
async fn sqlite_rows(
    conn: &mut SqliteConnection,
    statements: &Statements,
    jobs: &[Job],
    now: EpochSeconds,
    per_job: bool,
) -> Result<Option<Vec<u64>>, TelemetryError> {
    // The enum names are bound as shared strings: no copy per row. So are the source
    // ids, one copy per run of rows of the same source (the rows are sorted by source).
    let mut names = Names::default();
    let mut source = LastSource::default();
    let mut counts = vec![0u64; jobs.len()];
    // Each row carries its job's index, so that a statement's count can be attributed.
    let mut groups: Vec<Vec<(usize, &Reading)>> = if per_job {
        jobs.iter()
            .enumerate()
            .map(|(j, job)| job.readings.iter().map(|r| (j, r)).collect())
            .collect()
    } else {
        vec![
            jobs.iter()
                .enumerate()
                .flat_map(|(j, job)| job.readings.iter().map(move |r| (j, r)))
                .collect(),
        ]
    };
    // In the order of the clustered key (crate::store's SQLite schema step): each source's
    // readings then go into its leaf pages together, in one pass along the B-tree. The sort
    // is stable: of two readings with the same key, the one that arrived first must stay
    // first, since the insert keeps the first and counts the second as a duplicate (MQTT
    // relies on it for per-device order).
    for group in &mut groups {
        group.sort_by(|(_, a), (_, b)| {
            (a.source_id.as_str(), a.instant, a.measurand.as_str()).cmp(&(
                b.source_id.as_str(),
                b.instant,
                b.measurand.as_str(),
            ))
        });
    }
    for group in groups {
        let mut rest: &[(usize, &Reading)] = &group;
        while !rest.is_empty() {
            let size = SQLITE_SIZES
                .iter()
                .copied()
                .find(|s| *s <= rest.len())
                .unwrap_or(1);
            let (rows, tail) = rest.split_at(size);
            rest = tail;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(statements.for_rows(size)));
            for (_, r) in rows {
                q = q
                    .bind(source.get(&r.source_id))
                    .bind(names.get(r.source_kind.as_str()))
                    .bind(names.get(r.measurand.as_str()))
                    .bind(r.instant)
                    .bind(r.value)
                    .bind(names.get(r.quality.as_str()))
                    .bind(now);
            }
            let affected = q.execute(&mut *conn).await?.rows_affected();
            let first = rows[0].0;
            let last = rows[rows.len() - 1].0;
            if first == last {
                counts[first] += affected;
            } else if affected == rows.len() as u64 {
                for (j, _) in rows {
                    counts[*j] += 1;
                }
            } else {
                return Ok(None);
            }
        }
    }
    Ok(Some(counts))
}

/// Shared copies of the few enum names bound in every row.
#[derive(Default)]
struct Names(Vec<(&'static str, Arc<str>)>);

impl Names {
    fn get(&mut self, name: &'static str) -> Arc<str> {
        // A handful of names: a linear scan beats hashing.
        if let Some((_, a)) = self.0.iter().find(|(n, _)| *n == name) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(name);
        self.0.push((name, a.clone()));
        a
    }
}

/// The source id of the previous row as a shared string: the sorted rows of one source
/// follow each other, so most rows reuse it instead of copying their own.
#[derive(Default)]
struct LastSource(Option<Arc<str>>);

impl LastSource {
    fn get(&mut self, id: &str) -> Arc<str> {
        match &self.0 {
            Some(last) if **last == *id => last.clone(),
            _ => {
                let a: Arc<str> = Arc::from(id);
                self.0 = Some(a.clone());
                a
            }
        }
    }
}

struct Worker {
    sink: Sink,
    counters: Arc<Counters>,
    max_batch: usize,
    /// Rows may wait in `telemetry_revision_queue` (SQLite sink only). True at the start:
    /// a crash may have left rows that a commit queued but no revision worked off.
    revisions_owed: bool,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>, mut stop: watch::Receiver<bool>) {
        // What a crash of an earlier run left owed, before any new readings.
        self.revise().await;
        let mut batch: Vec<Job> = Vec::new();
        let mut stopping = false;
        loop {
            if !stopping {
                tokio::select! {
                    biased;
                    job = rx.recv() => match job {
                        Some(job) => batch.push(job),
                        None => break,
                    },
                    _ = stop.wait_for(|s| *s) => stopping = true,
                }
            }
            let mut readings: usize = batch.iter().map(|j| j.readings.len()).sum();
            while readings < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => {
                        readings += job.readings.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                if stopping {
                    break;
                }
                continue;
            }
            self.write(&mut batch).await;
            self.revise().await;
        }
        self.revise().await;
        if let Sink::Sqlite(conn, _, _) = self.sink {
            let _ = conn.close().await;
        }
    }

    /// Works off the queued late-data revisions, if any are owed, after the jobs that
    /// queued them were answered. A failure leaves the rows queued for the next attempt
    /// (after the next commit, or at the next start).
    async fn revise(&mut self) {
        if !self.revisions_owed {
            return;
        }
        // The pool path revises in the readings' transaction and queues nothing, but a
        // SQLite file may have been left with rows by a crash of an earlier run.
        let store = match &self.sink {
            Sink::Sqlite(_, _, store) | Sink::Pool(store) => store,
        };
        match super::revisions::work_off_queue(store).await {
            Ok(_) => self.revisions_owed = false,
            Err(e) => tracing::warn!(error = %e, "queued late-data revisions not worked off yet"),
        }
    }

    /// Writes and answers `batch` (emptying it). A failed transaction is retried once per
    /// job-aligned statements; if that fails too, every job of the batch is told so.
    async fn write(&mut self, batch: &mut Vec<Job>) {
        let now = now_epoch();
        let owed = &mut self.revisions_owed;
        let mut result = self.sink.write(batch, now, false, owed).await;
        if matches!(result, Ok(None)) {
            result = self.sink.write(batch, now, true, owed).await;
        }
        match result {
            Ok(Some(counts)) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                for (job, inserted) in batch.drain(..).zip(counts) {
                    let outcome = InsertOutcome {
                        inserted,
                        duplicates: job.readings.len() as u64 - inserted,
                    };
                    self.counters
                        .inserted
                        .fetch_add(outcome.inserted, Ordering::Relaxed);
                    self.counters
                        .duplicates
                        .fetch_add(outcome.duplicates, Ordering::Relaxed);
                    let _ = job.done.send(Ok(outcome));
                }
            }
            Ok(None) => unreachable!("per-job writes always count"),
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "telemetry batch not stored");
                let message = e.to_string();
                self.counters
                    .failed_jobs
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(message.clone()));
                }
                // A database that just failed is given a moment before the next batch.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
