//! The MQTT transport: one broker connection that ingests telemetry into the engine's
//! readings and publishes engine commands, with acknowledgements correlated back.
//!
//! The connection speaks MQTT 5 so that it can announce a Receive Maximum
//! (`mqtt.receive_maximum`): acknowledging after the commit, the number of messages the
//! broker may have in flight to us, divided by the commit latency, is the ingest's ceiling,
//! and a 3.1.1 client gets only the broker's own limit (Mosquitto's default is 20).
//! One connection, not several with shared subscriptions: a shared subscription spreads
//! one device's messages over several consumers and loses their order.
//!
//! Three tasks share the connection. The connection task drives rumqttc's event loop,
//! (re)subscribes on every connect and reconnects with exponential backoff; it hands every
//! incoming message to the writer task in arrival order. The writer task drains what has
//! arrived (up to `max_batch` messages), decodes it and queues the readings in the durable
//! [`TelemetryWriter`] (group commit, shared with the other producers), without waiting.
//! The acker task waits for each batch's commit in order, stores the batch's quarantined
//! messages, and only then acknowledges the messages to the broker (manual acks, PUBACK
//! after commit). So a message is never lost between broker and database: if Switchyard
//! stops or the database fails before the commit, the broker delivers it again in the
//! persistent session, and the readings table's key makes the repeat a no-op. Messages of
//! one device are stored in the order the broker delivered them (the writer keeps its
//! queue's order), except that a batch whose transaction failed is written again after
//! the batches queued behind it.

use super::config::{MqttConfig, MqttConfigError};
use super::decode::decode_into;
use super::failure::ConnectionFailure;
use super::payload::{AckMessage, CommandMessage};
use super::quarantine::{self, Quarantined};
use super::topics::{Incoming, Topics, valid_segment};
use crate::domain::{EpochSeconds, now_epoch};
use crate::envelope::model::ControlModes;
use crate::store::Store;
use crate::telemetry::{self, Reading, TelemetryError, TelemetryWriter};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Why the MQTT ingest could not start or a command could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Config(#[from] MqttConfigError),
    /// The request could not be queued to the connection (it is shutting down).
    /// Boxed: the MQTT 5 client's error carries the whole request it could not queue.
    #[error("mqtt client: {0}")]
    Client(Box<rumqttc::v5::ClientError>),
    #[error("'{0}' cannot be a topic segment (no '/', '+', '#')")]
    BadDeviceId(String),
    #[error("no acknowledgement for command {command_id} within {timeout:?}")]
    AckTimeout {
        command_id: String,
        timeout: Duration,
    },
    #[error("the ingest stopped before command {0} was acknowledged")]
    Stopped(String),
    /// Not connected and subscribed in time; `cause` is why the last attempt failed
    /// (none when no attempt has failed yet: the connect or subscribe is still pending).
    #[error("not subscribed within {timeout:?}: {}", match cause {
        Some(c) => c.to_string(),
        None => "no answer from the broker; is it reachable?".to_string(),
    })]
    NotReady {
        timeout: Duration,
        cause: Option<ConnectionFailure>,
    },
}

impl From<rumqttc::v5::ClientError> for MqttError {
    fn from(e: rumqttc::v5::ClientError) -> Self {
        MqttError::Client(Box::new(e))
    }
}

/// Counters of the ingest since it started.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    messages: AtomicU64,
    readings_inserted: AtomicU64,
    readings_duplicate: AtomicU64,
    quarantined: AtomicU64,
    acks_matched: AtomicU64,
    commands_sent: AtomicU64,
    store_retries: AtomicU64,
    connection_errors: AtomicU64,
    connects: AtomicU64,
}

/// A snapshot of the ingest's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IngestStats {
    /// Messages received from the broker on the telemetry and ack topics, whether
    /// stored, quarantined or still waiting for their commit.
    pub received: u64,
    /// Telemetry messages stored (a gateway array counts once).
    pub messages: u64,
    /// Readings newly stored.
    pub readings_inserted: u64,
    /// Readings that were already stored (redeliveries).
    pub readings_duplicate: u64,
    /// Messages refused into the quarantine.
    pub quarantined: u64,
    /// Acknowledgements matched to a command sent by this process.
    pub acks_matched: u64,
    /// Commands published.
    pub commands_sent: u64,
    /// Store attempts that failed and were retried.
    pub store_retries: u64,
    /// Times the connection failed (each followed by a reconnect attempt).
    pub connection_errors: u64,
    /// Successful connections (CONNACK), the first included.
    pub connects: u64,
}

impl Counters {
    fn snapshot(&self) -> IngestStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IngestStats {
            received: g(&self.received),
            messages: g(&self.messages),
            readings_inserted: g(&self.readings_inserted),
            readings_duplicate: g(&self.readings_duplicate),
            quarantined: g(&self.quarantined),
            acks_matched: g(&self.acks_matched),
            commands_sent: g(&self.commands_sent),
            store_retries: g(&self.store_retries),
            connection_errors: g(&self.connection_errors),
            connects: g(&self.connects),
        }
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Commands waiting for their acknowledgement: command id -> (device, waiter).
type Pending = Arc<Mutex<HashMap<String, (String, oneshot::Sender<AckMessage>)>>>;

/// A published command whose acknowledgement has not been seen yet.
#[derive(Debug)]
pub struct PendingCommand {
    /// The id the device must echo in its acknowledgement.
    pub command_id: String,
    rx: oneshot::Receiver<AckMessage>,
    pending: Pending,
}

impl PendingCommand {
    /// Waits for the device's acknowledgement.
    pub async fn ack(self, timeout: Duration) -> Result<AckMessage, MqttError> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(_)) => Err(MqttError::Stopped(self.command_id)),
            Err(_) => {
                self.pending
                    .lock()
                    .expect("pending")
                    .remove(&self.command_id);
                Err(MqttError::AckTimeout {
                    command_id: self.command_id,
                    timeout,
                })
            }
        }
    }
}

/// Where the ingest puts the readings it decodes.
#[derive(Debug, Clone)]
pub enum ReadingSink {
    /// The durable telemetry writer: messages are acknowledged after its commit. What
    /// `switchyard serve` uses.
    Telemetry(TelemetryWriter),
    /// Drops the readings as if they were committed at once. It measures the MQTT path
    /// alone (broker, client, decoding, acknowledgements) without the database, as
    /// benches/mqtt.rs does; nothing is stored.
    Discard,
}

/// What [`MqttIngest::monitor`] hands out: connection state and counters, nothing that
/// can publish or stop.
#[derive(Clone)]
pub struct IngestMonitor {
    counters: Arc<Counters>,
    ready: watch::Receiver<bool>,
    last_error: LastError,
}

impl IngestMonitor {
    /// Whether the connection is up and subscribed.
    pub fn connected(&self) -> bool {
        *self.ready.borrow()
    }

    /// Why the last attempt to connect failed, until a connect succeeds.
    pub fn last_error(&self) -> Option<ConnectionFailure> {
        self.last_error.lock().expect("last_error").clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> IngestStats {
        self.counters.snapshot()
    }
}

/// The running MQTT ingest and command publisher.
pub struct MqttIngest {
    client: AsyncClient,
    topics: Topics,
    counters: Arc<Counters>,
    pending: Pending,
    ready: watch::Receiver<bool>,
    last_error: LastError,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Why the last connection attempt failed; cleared by a successful connect.
type LastError = Arc<Mutex<Option<ConnectionFailure>>>;

impl MqttIngest {
    /// Starts the connection and writer tasks. Returns at once: the connection is made
    /// (and remade) in the background, so an unreachable broker delays ingest but does not
    /// stop the server. [`MqttIngest::ready`] waits for the subscriptions.
    pub fn start(
        config: &MqttConfig,
        store: Store,
        telemetry: TelemetryWriter,
    ) -> Result<MqttIngest, MqttError> {
        Self::start_with_sink(config, store, ReadingSink::Telemetry(telemetry))
    }

    /// [`MqttIngest::start`] with the readings going to `sink`; quarantined messages are
    /// still stored in `store`.
    pub fn start_with_sink(
        config: &MqttConfig,
        store: Store,
        sink: ReadingSink,
    ) -> Result<MqttIngest, MqttError> {
        let mut options = config.options()?;
        // Acknowledgements go out one small packet each; without TCP_NODELAY, Nagle's
        // algorithm holds them back behind the peer's delayed ACK and the broker's in-flight
        // window stalls for tens of milliseconds per batch.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        options.set_network_options(net);
        let (client, eventloop) = AsyncClient::new(options, config.max_batch.max(1024) * 2);
        let topics = Topics::new(&config.topic_prefix);
        let counters = Arc::new(Counters::default());
        let pending: Pending = Arc::default();
        let (ready_tx, ready) = watch::channel(false);
        let last_error: LastError = Arc::default();
        let (shutdown, stop_rx) = watch::channel(false);
        // Unbounded: with acks after the store the broker sends at most its in-flight window
        // of unacknowledged messages, so the queue cannot outgrow that; with acks on
        // receipt the broker's queue limits apply instead (see docs/mqtt.md).
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = tokio::spawn(connection_task(
            eventloop,
            client.clone(),
            topics.clone(),
            ConnectionSettings {
                initial: Duration::from_millis(config.reconnect_initial_ms.max(1)),
                max: Duration::from_secs(config.reconnect_max_seconds.max(1)),
            },
            counters.clone(),
            ready_tx,
            last_error.clone(),
            tx,
            stop_rx.clone(),
            !config.ack_after_store,
        ));
        let writer = tokio::spawn(
            Writer {
                store,
                client: client.clone(),
                topics: topics.clone(),
                counters: counters.clone(),
                pending: pending.clone(),
                max_batch: config.max_batch.max(1),
                ack_after_store: config.ack_after_store,
                retention: i64::from(config.quarantine_retention_days) * 86_400,
                sink,
            }
            .run(rx, stop_rx),
        );
        Ok(MqttIngest {
            client,
            topics,
            counters,
            pending,
            ready,
            last_error,
            shutdown,
            tasks: vec![conn, writer],
        })
    }

    /// Waits until the broker has acknowledged the subscriptions (after a connect). Failed
    /// attempts are retried with backoff meanwhile; on timeout the error carries the
    /// reason the last one failed (TLS, refused login, network).
    pub async fn ready(&self, timeout: Duration) -> Result<(), MqttError> {
        let mut r = self.ready.clone();
        match tokio::time::timeout(timeout, r.wait_for(|ok| *ok)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(MqttError::NotReady {
                timeout,
                cause: self.last_error(),
            }),
        }
    }

    /// Why the last attempt to connect to the broker failed, until a connect succeeds:
    /// what an operator needs when the ingest stays disconnected.
    pub fn last_error(&self) -> Option<ConnectionFailure> {
        self.last_error.lock().expect("last_error").clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> IngestStats {
        self.counters.snapshot()
    }

    /// A read-only view of the connection state and counters, for the operator API: it
    /// can be held anywhere without keeping the ingest from stopping.
    pub fn monitor(&self) -> IngestMonitor {
        IngestMonitor {
            counters: self.counters.clone(),
            ready: self.ready.clone(),
            last_error: self.last_error.clone(),
        }
    }

    /// The topic scheme in use.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Publishes `modes` to the device's command topic (QoS 1, retained: the device's
    /// desired state, which it also receives when it reconnects later) and returns the
    /// handle to wait for its acknowledgement.
    pub async fn send_command(
        &self,
        device_id: &str,
        modes: ControlModes,
    ) -> Result<PendingCommand, MqttError> {
        if !valid_segment(device_id) {
            return Err(MqttError::BadDeviceId(device_id.to_string()));
        }
        let command_id = uuid::Uuid::new_v4().to_string();
        let msg = CommandMessage {
            command_id: command_id.clone(),
            device_id: device_id.to_string(),
            issued_at: now_epoch(),
            modes,
        };
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending")
            .insert(command_id.clone(), (device_id.to_string(), tx));
        let body = serde_json::to_vec(&msg).expect("a command serializes");
        if let Err(e) = self
            .client
            .publish(self.topics.command(device_id), QoS::AtLeastOnce, true, body)
            .await
        {
            self.pending.lock().expect("pending").remove(&command_id);
            return Err(e.into());
        }
        bump(&self.counters.commands_sent, 1);
        Ok(PendingCommand {
            command_id,
            rx,
            pending: self.pending.clone(),
        })
    }

    /// Clears the retained command of a device (an empty retained message), for a device
    /// leaving the fleet: it must not receive a stale command when it reappears.
    pub async fn clear_command(&self, device_id: &str) -> Result<(), MqttError> {
        if !valid_segment(device_id) {
            return Err(MqttError::BadDeviceId(device_id.to_string()));
        }
        self.client
            .publish(
                self.topics.command(device_id),
                QoS::AtLeastOnce,
                true,
                Vec::new(),
            )
            .await?;
        Ok(())
    }

    /// Stops both tasks: the batch being written is finished; messages not yet stored are
    /// left unacknowledged for the broker to deliver again next time.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.client.try_disconnect();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct ConnectionSettings {
    initial: Duration,
    max: Duration,
}

#[allow(clippy::too_many_arguments)]
async fn connection_task(
    mut eventloop: rumqttc::v5::EventLoop,
    client: AsyncClient,
    topics: Topics,
    settings: ConnectionSettings,
    counters: Arc<Counters>,
    ready: watch::Sender<bool>,
    last_error: LastError,
    tx: mpsc::UnboundedSender<Vec<Publish>>,
    mut stop: watch::Receiver<bool>,
    ack_on_receipt: bool,
) {
    let mut backoff = settings.initial;
    let mut arrived: Vec<Publish> = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                bump(&counters.received, 1);
                if ack_on_receipt && let Err(e) = client.try_ack(&p) {
                    tracing::debug!(error = %e, "MQTT ack not queued");
                }
                arrived.push(p);
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let receive_max = ack.properties.as_ref().and_then(|p| p.receive_max);
                backoff = settings.initial;
                bump(&counters.connects, 1);
                *last_error.lock().expect("last_error") = None;
                tracing::info!(
                    session_present = ack.session_present,
                    ?receive_max,
                    "MQTT connected"
                );
                // Subscribing on every connect costs one round trip and covers a broker
                // that lost the session (restarted without persistence, or expired it).
                let filters = [topics.telemetry_filter(), topics.ack_filter()]
                    .map(|f| Filter::new(f, QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "MQTT subscribe could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                let _ = ready.send(true);
            }
            Ok(_) => {}
            Err(e) => {
                // What arrived before the failure goes to the writer first, in order.
                if !arrived.is_empty() && tx.send(std::mem::take(&mut arrived)).is_err() {
                    break;
                }
                let _ = ready.send(false);
                bump(&counters.connection_errors, 1);
                // Kept for ready() and last_error(); retried all the same, since a broker
                // restarting or a certificate being replaced heals without a restart here.
                let failure = ConnectionFailure::of(&e);
                tracing::warn!(error = %failure, kind = ?failure.kind, retry_in = ?backoff, "MQTT connection failed");
                *last_error.lock().expect("last_error") = Some(failure);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(settings.max);
            }
        }
        // rumqttc reads a bunch of packets per socket read and hands them out one per
        // poll; the writer gets the bunch's messages together once the last is handed out:
        // one channel send and one wake-up of the writer per read, not per message.
        if !arrived.is_empty()
            && eventloop.state.events.is_empty()
            && tx.send(std::mem::take(&mut arrived)).is_err()
        {
            break;
        }
    }
    let _ = ready.send(false);
}

struct Writer {
    store: Store,
    client: AsyncClient,
    topics: Topics,
    counters: Arc<Counters>,
    pending: Pending,
    max_batch: usize,
    ack_after_store: bool,
    retention: i64,
    sink: ReadingSink,
}

/// What one batch decoded to.
#[derive(Default)]
struct Decoded {
    readings: Vec<Reading>,
    quarantine: Vec<Quarantined>,
    messages: u64,
    acks: Vec<(AckMessage, oneshot::Sender<AckMessage>)>,
}

/// A batch handed to the telemetry writer, waiting for its commit before the broker is
/// told. The readings themselves went to the writer; should its transaction fail, they
/// are decoded again from `messages` (cheaper than keeping a copy of every batch).
struct InFlight {
    committed: Option<telemetry::writer::Pending>,
    readings: usize,
    decoded: Decoded,
    messages: Vec<Publish>,
    now: EpochSeconds,
}

/// Batches queued in the telemetry writer but not yet acknowledged. Small: the broker's
/// in-flight window bounds unacknowledged messages anyway.
const IN_FLIGHT_BATCHES: usize = 64;

impl Writer {
    /// Takes what has arrived, decodes it and queues its readings in the telemetry writer
    /// without waiting for the commit: the acker waits, in order, while the next messages
    /// are already being decoded and queued, so the broker's in-flight window is not idle
    /// during a commit.
    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<Vec<Publish>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let (to_acker, acked) = mpsc::channel(IN_FLIGHT_BATCHES);
        let acker = tokio::spawn(
            Acker {
                store: self.store.clone(),
                client: self.client.clone(),
                topics: self.topics.clone(),
                counters: self.counters.clone(),
                sink: self.sink.clone(),
                ack_after_store: self.ack_after_store,
                retention: self.retention,
            }
            .run(acked, stop.clone()),
        );
        loop {
            let mut batch = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                p = rx.recv() => match p { Some(p) => p, None => break },
            };
            // Up to `max_batch` messages, give or take the rest of one network read.
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(mut more) => batch.append(&mut more),
                    Err(_) => break,
                }
            }
            let now = now_epoch();
            let mut decoded = self.decode(&batch, now);
            let readings = std::mem::take(&mut decoded.readings);
            let count = readings.len();
            let committed = match &self.sink {
                ReadingSink::Telemetry(w) if count > 0 => {
                    // Waits only when the writer's queue is full (backpressure up to the
                    // broker, which holds the unacknowledged messages).
                    match w.enqueue(readings).await {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::warn!(error = %e, "MQTT telemetry not queued; the broker will deliver it again");
                            break;
                        }
                    }
                }
                _ => None,
            };
            let flight = InFlight {
                committed,
                readings: count,
                decoded,
                messages: batch,
                now,
            };
            if to_acker.send(flight).await.is_err() {
                break;
            }
        }
        drop(to_acker);
        let _ = acker.await;
    }

    fn decode(&self, batch: &[Publish], now: EpochSeconds) -> Decoded {
        let mut d = Decoded::default();
        for p in batch {
            let Ok(topic) = std::str::from_utf8(&p.topic) else {
                d.quarantine.push(Quarantined::new(
                    &String::from_utf8_lossy(&p.topic),
                    &p.payload,
                    "topic is not UTF-8".to_string(),
                    now,
                ));
                continue;
            };
            let refused = match self.topics.classify(topic) {
                Incoming::Telemetry { .. } => match decode_into(&p.payload, now, &mut d.readings) {
                    Ok(_) => {
                        d.messages += 1;
                        None
                    }
                    Err(m) => Some(m.to_string()),
                },
                Incoming::Ack { device } => self.match_ack(device, &p.payload, &mut d).err(),
                Incoming::Other => Some("not a telemetry or ack topic".to_string()),
            };
            if let Some(reason) = refused {
                tracing::debug!(%topic, %reason, "MQTT message quarantined");
                d.quarantine
                    .push(Quarantined::new(topic, &p.payload, reason, now));
            }
        }
        d
    }

    fn match_ack(&self, device: &str, payload: &[u8], d: &mut Decoded) -> Result<(), String> {
        let ack: AckMessage =
            serde_json::from_slice(payload).map_err(|e| format!("invalid ack: {e}"))?;
        let mut pending = self.pending.lock().expect("pending");
        match pending.get(&ack.command_id) {
            None => Err(format!(
                "ack for unknown command {} (not sent by this process, or already timed out)",
                ack.command_id
            )),
            Some((for_device, _)) if for_device != device => Err(format!(
                "ack for command {} of device {for_device} arrived on the topic of device {device}",
                ack.command_id
            )),
            Some(_) => {
                let (_, waiter) = pending.remove(&ack.command_id).expect("present");
                d.acks.push((ack, waiter));
                Ok(())
            }
        }
    }
}

/// Waits for each batch's commit, in order, then stores its quarantined messages, answers
/// command waiters and acknowledges the messages to the broker.
struct Acker {
    store: Store,
    client: AsyncClient,
    topics: Topics,
    counters: Arc<Counters>,
    sink: ReadingSink,
    ack_after_store: bool,
    retention: i64,
}

impl Acker {
    async fn run(self, mut batches: mpsc::Receiver<InFlight>, mut stop: watch::Receiver<bool>) {
        while let Some(flight) = batches.recv().await {
            let InFlight {
                committed,
                readings,
                decoded,
                messages,
                now,
            } = flight;
            if !self
                .settle(committed, readings, &decoded, &messages, now, &mut stop)
                .await
            {
                // Stopping with the database failing: what is left stays unacknowledged
                // and the broker delivers it again next time.
                break;
            }
            bump(&self.counters.messages, decoded.messages);
            bump(&self.counters.quarantined, decoded.quarantine.len() as u64);
            for (ack, waiter) in decoded.acks {
                bump(&self.counters.acks_matched, 1);
                let _ = waiter.send(ack);
            }
            if self.ack_after_store {
                for p in &messages {
                    // Queued without an await while the client's request queue has room
                    // (it is sized for a full batch of acks); only a full queue waits.
                    // A failed ack is redelivered by the broker and deduplicated on store.
                    let queued = match self.client.try_ack(p) {
                        Err(rumqttc::v5::ClientError::TryRequest(_)) => self.client.ack(p).await,
                        other => other,
                    };
                    if let Err(e) = queued {
                        tracing::debug!(error = %e, "MQTT ack not queued");
                    }
                }
            }
        }
    }

    /// Waits for the readings' commit (resubmitting them, with backoff, when the writer's
    /// transaction failed) and stores the quarantine; false when asked to stop first.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        mut committed: Option<telemetry::writer::Pending>,
        readings: usize,
        d: &Decoded,
        messages: &[Publish],
        now: EpochSeconds,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut wait = Duration::from_millis(100);
        let writer = match &self.sink {
            ReadingSink::Telemetry(w) if readings > 0 => Some(w),
            _ => None,
        };
        let mut stored = writer.is_none().then(telemetry::InsertOutcome::default);
        loop {
            let failed = match (stored, writer) {
                (None, Some(writer)) => {
                    let result = match committed.take() {
                        Some(p) => p.committed().await,
                        None => writer.submit(self.redecode(messages, now)).await,
                    };
                    match result {
                        Ok(outcome) => {
                            bump(&self.counters.readings_inserted, outcome.inserted);
                            bump(&self.counters.readings_duplicate, outcome.duplicates);
                            stored = Some(outcome);
                            None
                        }
                        Err(e) => Some(e),
                    }
                }
                _ => None,
            };
            let failed = match failed {
                Some(e) => Some(e),
                None => self.store_quarantine(d, now).await.err(),
            };
            let Some(e) = failed else {
                return true;
            };
            bump(&self.counters.store_retries, 1);
            tracing::error!(error = %e, retry_in = ?wait, "storing MQTT telemetry failed");
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// The readings of a batch's telemetry messages, decoded again as they were the first
    /// time (same messages, same `now`), for resubmitting after a failed transaction.
    fn redecode(&self, messages: &[Publish], now: EpochSeconds) -> Vec<Reading> {
        let mut out = Vec::new();
        for p in messages {
            if let Ok(topic) = std::str::from_utf8(&p.topic)
                && let Incoming::Telemetry { .. } = self.topics.classify(topic)
            {
                // A message refused the first time is refused again and adds nothing.
                let _ = decode_into(&p.payload, now, &mut out);
            }
        }
        out
    }

    async fn store_quarantine(&self, d: &Decoded, now: EpochSeconds) -> Result<(), TelemetryError> {
        if d.quarantine.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.pool().begin().await?;
        quarantine::insert_in(&mut tx, &d.quarantine).await?;
        quarantine::expire_in(&mut tx, now - self.retention).await?;
        tx.commit().await?;
        Ok(())
    }
}
