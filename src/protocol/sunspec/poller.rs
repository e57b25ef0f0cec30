//! The SunSpec poll scheduler: each device (a unit id behind a gateway address) is polled
//! on its own interval with random jitter, every request bounded by the device's timeout;
//! failures back off exponentially up to a ceiling; units behind one gateway share one TCP
//! connection (taken in turn), and the number of open connections is bounded.
//!
//! Each poll produces one [`PollEvent`]: the normalized readings and status, or the failure
//! with its kind (the device refused, or the link failed). A failing device never stops
//! the others. [`record`] stores the readings of a stream of events in the telemetry
//! store; [`record_with_status`] also keeps a [`PollStatus`] board up to date for the
//! operator API.

use super::SunSpecError;
use super::client::{Device, DeviceMap};
use super::readings::{DeviceStatus, MEASURED_MODELS, normalize, status};
use super::status::{PollStatus, Stored};
use crate::domain::{EpochSeconds, now_epoch};
use crate::store::Store;
use crate::telemetry::{self, Reading};
use rand::RngExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One device to poll.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// The telemetry source id of its readings.
    pub source_id: String,
    /// The Modbus TCP address of the device or its gateway.
    pub gateway: SocketAddr,
    /// Its unit id behind that address.
    pub unit: u8,
    /// Time between polls.
    pub interval: Duration,
    /// Up to this much random delay is added to each wait, so that devices configured
    /// alike do not poll in lockstep.
    pub jitter: Duration,
    /// Bound on connecting and on each Modbus request.
    pub timeout: Duration,
}

/// The scheduler's limits.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// The most TCP connections open at once (over all gateways).
    pub max_connections: usize,
    /// The longest wait after repeated failures.
    pub max_backoff: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            max_connections: 8,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// How a poll failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The device answered with a Modbus exception.
    Refused,
    /// No connection, an I/O error or no answer in time.
    Link,
    /// The device answered, but what it presents is not usable SunSpec.
    Device,
}

impl From<&SunSpecError> for FailureKind {
    fn from(e: &SunSpecError) -> Self {
        if e.is_refusal() {
            FailureKind::Refused
        } else if e.is_link_failure() {
            FailureKind::Link
        } else {
            FailureKind::Device
        }
    }
}

/// The outcome of one poll.
#[derive(Debug, Clone)]
pub enum PollEvent {
    Polled {
        source_id: String,
        instant: EpochSeconds,
        readings: Vec<Reading>,
        status: DeviceStatus,
        /// When the next poll is due, jitter included (epoch seconds, rounded up).
        next_due: EpochSeconds,
    },
    Failed {
        source_id: String,
        instant: EpochSeconds,
        kind: FailureKind,
        error: String,
        /// Failures in a row, this one included.
        consecutive: u32,
        /// The wait before the next attempt (the backoff, without jitter).
        retry_in: Duration,
        /// When the next attempt is due, jitter included (epoch seconds, rounded up).
        next_due: EpochSeconds,
    },
}

impl PollEvent {
    pub fn source_id(&self) -> &str {
        match self {
            PollEvent::Polled { source_id, .. } | PollEvent::Failed { source_id, .. } => source_id,
        }
    }
}

/// One gateway address: its connection, used by one unit at a time.
struct Gateway {
    conn: Mutex<Option<(Device, OwnedSemaphorePermit)>>,
}

struct Shared {
    connections: Arc<Semaphore>,
    /// Polls waiting for a connection permit: when any wait, a connection is closed after
    /// its poll instead of being kept open.
    waiting: AtomicUsize,
    max_backoff: Duration,
}

/// A running poller; dropping it (or [`Poller::stop`]) stops every device task.
pub struct Poller {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Poller {
    /// Starts polling `devices`, sending each outcome to `events`.
    pub fn start(
        config: PollerConfig,
        devices: Vec<DeviceSpec>,
        events: mpsc::Sender<PollEvent>,
    ) -> Poller {
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            waiting: AtomicUsize::new(0),
            max_backoff: config.max_backoff,
        });
        let mut gateways: HashMap<SocketAddr, Arc<Gateway>> = HashMap::new();
        let mut tasks = JoinSet::new();
        for spec in devices {
            let gw = gateways
                .entry(spec.gateway)
                .or_insert_with(|| {
                    Arc::new(Gateway {
                        conn: Mutex::new(None),
                    })
                })
                .clone();
            tasks.spawn(run_device(
                spec,
                gw,
                shared.clone(),
                events.clone(),
                stopped.clone(),
            ));
        }
        Poller { stop, tasks }
    }

    /// Stops every device task and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(rand::rng().random_range(0.0..max.as_secs_f64()))
}

/// The epoch second by which a wait of `wait` from now has passed: rounded up, so a
/// status reader is never told a poll is due before it can have started.
fn due_after(wait: Duration) -> EpochSeconds {
    let at = std::time::SystemTime::now() + wait;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_secs() as EpochSeconds + EpochSeconds::from(since.subsec_nanos() > 0)
}

/// The wait after `failures` failures in a row: the interval doubled per failure, capped.
pub fn backoff(interval: Duration, failures: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(20));
    interval.saturating_mul(factor).min(max.max(interval))
}

async fn run_device(
    spec: DeviceSpec,
    gateway: Arc<Gateway>,
    shared: Arc<Shared>,
    events: mpsc::Sender<PollEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut map: Option<DeviceMap> = None;
    let mut failures = 0u32;
    let mut next = Instant::now() + jitter(spec.jitter);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stopped.changed() => return,
        }
        let result = tokio::select! {
            r = poll_once(&spec, &gateway, &shared, &mut map) => r,
            _ = stopped.changed() => return,
        };
        let instant = now_epoch();
        let event = match result {
            Ok(models) => {
                failures = 0;
                let wait = spec.interval + jitter(spec.jitter);
                next = Instant::now() + wait;
                PollEvent::Polled {
                    source_id: spec.source_id.clone(),
                    instant,
                    readings: normalize(&models, &spec.source_id, instant),
                    status: status(&models),
                    next_due: due_after(wait),
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // The map may have changed (a firmware update) or never been read.
                map = None;
                let retry_in = backoff(spec.interval, failures, shared.max_backoff);
                let wait = retry_in + jitter(spec.jitter);
                next = Instant::now() + wait;
                tracing::warn!(source = %spec.source_id, failures, ?retry_in, "sunspec poll failed: {e}");
                PollEvent::Failed {
                    source_id: spec.source_id.clone(),
                    instant,
                    kind: FailureKind::from(&e),
                    error: e.to_string(),
                    consecutive: failures,
                    retry_in,
                    next_due: due_after(wait),
                }
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

async fn poll_once(
    spec: &DeviceSpec,
    gateway: &Gateway,
    shared: &Shared,
    map: &mut Option<DeviceMap>,
) -> Result<Vec<super::DecodedModel>, SunSpecError> {
    let mut conn = gateway.conn.lock().await;
    if conn.is_none() {
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = shared.connections.clone().acquire_owned().await;
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.expect("the poller never closes its semaphore");
        let device = Device::connect(spec.gateway, spec.unit, spec.timeout).await?;
        *conn = Some((device, permit));
    }
    let (device, _) = conn.as_mut().expect("connected above");
    device.set_unit(spec.unit);
    device.set_timeout(spec.timeout);
    let result = async {
        if map.is_none() {
            *map = Some(device.discover().await?);
        }
        let m = map.as_ref().expect("discovered above");
        // Only the models readings come from: a poll stays a few requests long.
        let mut models = Vec::new();
        for entry in m.models.iter().filter(|e| MEASURED_MODELS.contains(&e.id)) {
            if let Some(decoded) = device.read_model(entry).await? {
                models.push(decoded);
            }
        }
        Ok::<_, SunSpecError>(models)
    }
    .await;
    let broken = matches!(&result, Err(e) if e.is_link_failure());
    if broken || shared.waiting.load(Ordering::SeqCst) > 0 {
        // A broken link is reconnected next time; a healthy one is given up when another
        // gateway is waiting for a connection.
        *conn = None;
    }
    result
}

/// Stores the readings of every `Polled` event in the telemetry store until the channel
/// closes; returns how many readings were stored. A batch the store refuses is logged and
/// skipped: one bad poll does not stop the ingest.
pub async fn record(store: &Store, events: mpsc::Receiver<PollEvent>) -> u64 {
    record_into(store, events, None).await
}

/// As [`record`], and every event (with what became of its readings) is also shown to
/// `board`, after the readings are stored: what the board says is in the store, is.
pub async fn record_with_status(
    store: &Store,
    events: mpsc::Receiver<PollEvent>,
    board: &PollStatus,
) -> u64 {
    record_into(store, events, Some(board)).await
}

async fn record_into(
    store: &Store,
    mut events: mpsc::Receiver<PollEvent>,
    board: Option<&PollStatus>,
) -> u64 {
    let mut stored = 0;
    while let Some(e) = events.recv().await {
        let outcome = match &e {
            PollEvent::Polled {
                source_id,
                readings,
                ..
            } => match telemetry::insert_batch(store, readings, now_epoch()).await {
                Ok(o) => {
                    stored += o.inserted;
                    Some(Stored::Inserted(o.inserted))
                }
                Err(err) => {
                    tracing::warn!(source = %source_id, "sunspec readings not stored: {err}");
                    Some(Stored::Refused(err.to_string()))
                }
            },
            PollEvent::Failed { .. } => None,
        };
        if let Some(b) = board {
            b.observe(&e, outcome);
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let i = Duration::from_secs(10);
        let max = Duration::from_secs(300);
        assert_eq!(backoff(i, 1, max), Duration::from_secs(20));
        assert_eq!(backoff(i, 3, max), Duration::from_secs(80));
        assert_eq!(backoff(i, 10, max), max);
        assert_eq!(backoff(i, u32::MAX, max), max);
        // A ceiling below the interval never makes a failing device poll faster.
        assert_eq!(backoff(i, 1, Duration::from_secs(1)), i);
    }
}
