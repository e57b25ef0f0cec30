//! The poller's live state per device, as a utility engineer needs to see it: when the
//! device last answered, how and when it last failed, how many failures in a row, how long
//! the backoff is, when the next poll is due, the status the device reported and how many
//! readings the last poll stored.
//!
//! A [`PollStatus`] board is created with every configured device (so a device that has
//! never answered is listed too) and fed the poller's [`PollEvent`]s by
//! [`super::poller::record_with_status`], after their readings are stored. Readers (the
//! operator API) take copies; the lock is held only to copy or update one entry, never
//! across I/O, so a slow reader cannot hold up the poller.

use super::poller::{DeviceSpec, FailureKind, PollEvent};
use super::readings::DeviceStatus;
use crate::domain::EpochSeconds;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use utoipa::ToSchema;

/// What became of a successful poll's readings.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// The store took the batch; this many readings were new.
    Inserted(u64),
    /// The store refused the batch (the error text).
    Refused(String),
}

/// The device's health as of its last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not polled yet since the server started.
    Pending,
    /// The last poll succeeded.
    Ok,
    /// The last poll failed; the poller is backing off.
    Failing,
}

/// The last failed poll of a device.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LastFailure {
    /// `refused` (a Modbus exception), `link` (no connection, I/O error or no answer in
    /// time) or `device` (it answered, but not with usable SunSpec).
    pub kind: FailureKind,
    /// The error, naming the address, unit and request.
    pub error: String,
    /// When it failed, epoch seconds.
    pub at: EpochSeconds,
}

/// One polled device: its configuration and its live state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeviceState {
    /// The telemetry source id its readings are stored under.
    pub source_id: String,
    /// The Modbus TCP address of the device or its gateway, `IP:PORT`.
    pub gateway: String,
    /// Its unit id behind that address.
    pub unit: u8,
    /// Time between polls while they succeed, milliseconds.
    pub interval_ms: u64,
    /// Up to this much random delay is added to each wait, milliseconds.
    pub jitter_ms: u64,
    /// Bound on connecting and on each Modbus request, milliseconds.
    pub timeout_ms: u64,
    pub health: Health,
    /// When a poll last succeeded, epoch seconds (null: never since the server started).
    pub last_success: Option<EpochSeconds>,
    /// The last failed poll, kept after the device recovers (null: none yet).
    pub last_failure: Option<LastFailure>,
    /// Failures in a row; 0 once a poll succeeds.
    pub consecutive_failures: u32,
    /// The backoff after the last failure (the interval doubled per failure in a row,
    /// capped), milliseconds, without jitter; null while polls succeed.
    pub backoff_ms: Option<u64>,
    /// When the next poll is due, epoch seconds, jitter included (null before the first).
    pub next_poll_due: Option<EpochSeconds>,
    /// The status reported by the last successful poll.
    pub status: Option<DeviceStatus>,
    /// Readings the last successful poll produced (points the device does not implement
    /// produce none).
    pub last_readings: Option<u64>,
    /// Of those, how many the store newly stored (a reading already stored is not
    /// stored again); 0 when the store refused the batch.
    pub last_stored: Option<u64>,
    /// Why the store refused the last successful poll's readings (null when it took them).
    pub store_error: Option<String>,
    /// Successful polls since the server started.
    pub polls_ok: u64,
    /// Failed polls since the server started.
    pub polls_failed: u64,
}

impl DeviceState {
    fn new(spec: &DeviceSpec) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        DeviceState {
            source_id: spec.source_id.clone(),
            gateway: spec.gateway.to_string(),
            unit: spec.unit,
            interval_ms: ms(spec.interval),
            jitter_ms: ms(spec.jitter),
            timeout_ms: ms(spec.timeout),
            health: Health::Pending,
            last_success: None,
            last_failure: None,
            consecutive_failures: 0,
            backoff_ms: None,
            next_poll_due: None,
            status: None,
            last_readings: None,
            last_stored: None,
            store_error: None,
            polls_ok: 0,
            polls_failed: 0,
        }
    }

    fn observe(&mut self, event: &PollEvent, stored: Option<Stored>) {
        match event {
            PollEvent::Polled {
                instant,
                readings,
                status,
                next_due,
                ..
            } => {
                self.health = Health::Ok;
                self.last_success = Some(*instant);
                self.consecutive_failures = 0;
                self.backoff_ms = None;
                self.next_poll_due = Some(*next_due);
                self.status = Some(status.clone());
                self.last_readings = Some(readings.len() as u64);
                let (count, error) = match stored {
                    Some(Stored::Inserted(n)) => (Some(n), None),
                    Some(Stored::Refused(e)) => (Some(0), Some(e)),
                    // Nothing said what became of them: do not claim any were stored.
                    None => (None, None),
                };
                self.last_stored = count;
                self.store_error = error;
                self.polls_ok += 1;
            }
            PollEvent::Failed {
                instant,
                kind,
                error,
                consecutive,
                retry_in,
                next_due,
                ..
            } => {
                self.health = Health::Failing;
                self.last_failure = Some(LastFailure {
                    kind: *kind,
                    error: error.clone(),
                    at: *instant,
                });
                self.consecutive_failures = *consecutive;
                self.backoff_ms = Some(u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX));
                self.next_poll_due = Some(*next_due);
                self.polls_failed += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Board {
    /// In configuration order, which is the order the API lists them in.
    devices: Vec<DeviceState>,
    index: HashMap<String, usize>,
}

/// The live state of every configured device; cheap to clone (one shared board).
#[derive(Debug, Clone, Default)]
pub struct PollStatus {
    board: Arc<Mutex<Board>>,
}

impl PollStatus {
    /// A board listing `devices`, none polled yet.
    pub fn new(devices: &[DeviceSpec]) -> Self {
        let mut board = Board::default();
        for spec in devices {
            // The configuration refuses duplicate source ids; keep the first regardless.
            if !board.index.contains_key(&spec.source_id) {
                board
                    .index
                    .insert(spec.source_id.clone(), board.devices.len());
                board.devices.push(DeviceState::new(spec));
            }
        }
        PollStatus {
            board: Arc::new(Mutex::new(board)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // A panic while holding the lock leaves at worst one entry half-updated; showing
        // it beats taking the status endpoint down for good.
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one poll outcome and what became of its readings. An event for a device
    /// the board does not list is ignored.
    pub fn observe(&self, event: &PollEvent, stored: Option<Stored>) {
        let mut board = self.lock();
        if let Some(&i) = board.index.get(event.source_id()) {
            board.devices[i].observe(event, stored);
        }
    }

    /// Every device, in configuration order.
    pub fn devices(&self) -> Vec<DeviceState> {
        self.lock().devices.clone()
    }

    /// One device by its source id.
    pub fn device(&self, source_id: &str) -> Option<DeviceState> {
        let board = self.lock();
        board
            .index
            .get(source_id)
            .map(|&i| board.devices[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(id: &str) -> DeviceSpec {
        DeviceSpec {
            source_id: id.into(),
            gateway: "127.0.0.1:1502".parse().unwrap(),
            unit: 3,
            interval: Duration::from_secs(10),
            jitter: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
        }
    }

    fn failed(id: &str, n: u32, at: EpochSeconds) -> PollEvent {
        PollEvent::Failed {
            source_id: id.into(),
            instant: at,
            kind: FailureKind::Link,
            error: "link to 127.0.0.1:1502 failed".into(),
            consecutive: n,
            retry_in: Duration::from_secs(10 << n),
            next_due: at + (10 << n),
        }
    }

    fn polled(id: &str, at: EpochSeconds) -> PollEvent {
        PollEvent::Polled {
            source_id: id.into(),
            instant: at,
            readings: Vec::new(),
            status: DeviceStatus {
                operating_state: Some("MPPT".into()),
                connected: Some(true),
                charge_status: None,
            },
            next_due: at + 10,
        }
    }

    #[test]
    fn failures_count_up_and_a_success_resets_them_but_keeps_the_last_failure() {
        let board = PollStatus::new(&[spec("a"), spec("b")]);
        let a = board.device("a").unwrap();
        assert_eq!(a.health, Health::Pending);
        assert_eq!(
            (a.interval_ms, a.jitter_ms, a.timeout_ms),
            (10_000, 500, 2000)
        );
        assert_eq!((a.gateway.as_str(), a.unit), ("127.0.0.1:1502", 3));

        board.observe(&failed("a", 1, 100), None);
        board.observe(&failed("a", 2, 120), None);
        let a = board.device("a").unwrap();
        assert_eq!(a.health, Health::Failing);
        assert_eq!(a.consecutive_failures, 2);
        assert_eq!(a.backoff_ms, Some(40_000));
        assert_eq!(a.next_poll_due, Some(160));
        assert_eq!(a.last_failure.as_ref().unwrap().at, 120);
        assert_eq!(a.last_failure.as_ref().unwrap().kind, FailureKind::Link);
        assert_eq!((a.polls_ok, a.polls_failed), (0, 2));

        board.observe(&polled("a", 170), Some(Stored::Inserted(0)));
        let a = board.device("a").unwrap();
        assert_eq!(a.health, Health::Ok);
        assert_eq!(a.consecutive_failures, 0);
        assert_eq!(a.backoff_ms, None);
        assert_eq!(a.last_success, Some(170));
        assert_eq!(a.next_poll_due, Some(180));
        assert_eq!(
            a.status.as_ref().unwrap().operating_state.as_deref(),
            Some("MPPT")
        );
        assert_eq!((a.last_readings, a.last_stored), (Some(0), Some(0)));
        assert_eq!(
            a.last_failure.unwrap().at,
            120,
            "the last failure stays visible"
        );

        // A refused batch is shown as such, and the other device is untouched.
        board.observe(&polled("a", 180), Some(Stored::Refused("disk full".into())));
        let a = board.device("a").unwrap();
        assert_eq!(a.store_error.as_deref(), Some("disk full"));
        assert_eq!(a.last_stored, Some(0));
        assert_eq!(board.device("b").unwrap().health, Health::Pending);
    }

    #[test]
    fn unknown_devices_are_neither_listed_nor_created_by_events() {
        let board = PollStatus::new(&[spec("a")]);
        board.observe(&failed("ghost", 1, 100), None);
        assert!(board.device("ghost").is_none());
        let ids: Vec<String> = board.devices().into_iter().map(|d| d.source_id).collect();
        assert_eq!(ids, ["a"]);
        assert!(PollStatus::default().devices().is_empty());
    }
}
