//! MQTT ingest benchmark: telemetry messages per second from the broker into the engine's
//! readings table, end to end, against the Mosquitto at 127.0.0.1:1883 (default config).
//!
//! Run with `cargo bench --bench mqtt`. `SWITCHYARD_BENCH_MQTT_MESSAGES` (default 200,000)
//! sets how many messages are published. `SWITCHYARD_BENCH_MQTT_ROWS` (a comma-separated
//! list of `decode`, `writer`, `broker`, `mqtt-only`, `e2e`, `e2e-window20`,
//! `e2e-gateway`; all when unset) runs only those measurements, e.g. to profile one.
//! `SWITCHYARD_BENCH_MQTT_RECEIVE_MAXIMUM` replaces the ingest's default Receive Maximum
//! (and so the publishers' window, a quarter of it) in the rows that use the default. Each message is one device's power and state of
//! charge (two readings), as a device publishes it. All figures come from the same run, so
//! that they can be compared on a machine whose load changes:
//!
//! 1. decode only: payload bytes to validated readings, in process (the codec's ceiling);
//! 2. writer only: the same readings decoded and queued in the `TelemetryWriter` in jobs
//!    of `JOB` messages, as the ingest queues them, with no broker (the store's ceiling);
//! 3. broker only: a bare rumqttc subscriber that counts messages and acknowledges on
//!    receipt (the broker's and the client library's ceiling);
//! 4. MQTT path alone: `MqttIngest` with a sink that discards the readings and so
//!    acknowledges at once: broker, MQTT 5 client, decoding, batching and acks, no store;
//! 5. end to end: `MqttIngest` into SQLite through the `TelemetryWriter`, PUBACK after the
//!    commit (the default);
//! 6. the same with `receive_maximum = 20`, the window a 3.1.1 client gets from Mosquitto's
//!    default `max_inflight_messages`: what the ingest had before it spoke MQTT 5;
//! 7. end to end with gateways batching `GATEWAY_BATCH` device messages per publish.
//!
//! `PUBLISHERS` publisher connections share the devices (each device always publishes
//! through the same one, so its messages stay in order). The publishers keep at most a
//! window of messages ahead of what the consumer has finished: Mosquitto drops QoS 1
//! messages beyond its in-flight window plus `max_queued_messages` (1000) per subscriber,
//! so an unpaced publisher would measure the broker's drops, not the ingest. Each line
//! also gives the CPU seconds the bench process (publishers, ingest, writer) and the broker
//! used, read from /proc.

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard::protocol::mqtt::decode::decode_into;
use switchyard::protocol::mqtt::{MqttConfig, MqttIngest, ReadingSink};
use switchyard::store::Store;
use switchyard::telemetry::{TelemetryWriter, WriterSettings};

const DEVICES: usize = 1000;
const PUBLISHERS: usize = 4;
/// Messages per writer job in the writer-only line (a typical drain of the ingest).
const JOB: usize = 500;
/// How far the publishers run ahead of a bare subscriber (it acknowledges on receipt, so
/// Mosquitto's 3.1.1 window of 20 plus its queue of 1000 are enough).
const RAW_WINDOW: u64 = 400;
const BROKER: (&str, u16) = ("127.0.0.1", 1883);
/// Device messages per publish in the gateway variant.
const GATEWAY_BATCH: usize = 20;

fn payload(i: usize, base: i64) -> String {
    let dev = i % DEVICES;
    let ts = base + (i / DEVICES) as i64;
    format!(
        r#"{{"device_id":"dev-{dev}","ts":{ts},"measurements":[{{"measurand":"active_power","value":{:.3},"unit":"kW"}},{{"measurand":"state_of_charge","value":{},"unit":"%"}}]}}"#,
        (i % 97) as f64 / 10.0,
        i % 100
    )
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

fn broker_pid() -> Option<String> {
    let pid = std::fs::read_to_string("/run/mosquitto/mosquitto.pid").ok()?;
    Some(pid.trim().to_string())
}

/// Wall time and CPU seconds of the bench process and the broker for one measurement.
struct Measured {
    took: Duration,
    /// Device messages that arrived (fewer than published when the broker dropped some).
    messages: u64,
    own_cpu: Option<f64>,
    broker_cpu: Option<f64>,
}

struct CpuClock {
    started: Instant,
    own: Option<f64>,
    broker: Option<f64>,
}

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock {
            started: Instant::now(),
            own: cpu_seconds("self"),
            broker: broker_pid().and_then(|p| cpu_seconds(&p)),
        }
    }

    fn stop(self) -> Measured {
        let took = self.started.elapsed();
        let delta = |before: Option<f64>, now: Option<f64>| Some(now? - before?);
        Measured {
            took,
            messages: 0,
            own_cpu: delta(self.own, cpu_seconds("self")),
            broker_cpu: delta(self.broker, broker_pid().and_then(|p| cpu_seconds(&p))),
        }
    }
}

/// A publisher client whose event loop runs in the background.
async fn publisher(id: &str) -> AsyncClient {
    let mut o = MqttOptions::new(id, BROKER.0, BROKER.1);
    o.set_inflight(1000).set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(o, 10_000);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    ev.set_network_options(net);
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => break,
                Err(e) => {
                    eprintln!("publisher: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    client
}

/// The publisher connections, each with the payloads of its share of the devices, in
/// order. `per_publish` device messages make one payload (gateway arrays when above 1).
struct Publishers {
    clients: Vec<AsyncClient>,
    payloads: Vec<Vec<Vec<u8>>>,
}

impl Publishers {
    async fn new(tag: &str, payloads: &[String], per_publish: usize) -> Publishers {
        let mut shares: Vec<Vec<&String>> = vec![Vec::new(); PUBLISHERS];
        for (i, p) in payloads.iter().enumerate() {
            shares[(i % DEVICES) % PUBLISHERS].push(p);
        }
        let payloads = shares
            .iter()
            .map(|share| {
                if per_publish == 1 {
                    share.iter().map(|p| p.as_bytes().to_vec()).collect()
                } else {
                    share
                        .chunks(per_publish)
                        .map(|c| {
                            let inner: Vec<&str> = c.iter().map(|s| s.as_str()).collect();
                            format!("[{}]", inner.join(",")).into_bytes()
                        })
                        .collect()
                }
            })
            .collect();
        let mut clients = Vec::new();
        for k in 0..PUBLISHERS {
            clients.push(publisher(&format!("sy-bench-{tag}-pub{k}")).await);
        }
        Publishers { clients, payloads }
    }

    fn publishes(&self) -> u64 {
        self.payloads.iter().map(|p| p.len() as u64).sum()
    }

    /// Publishes everything, never more than `window` publishes ahead of `done`.
    async fn run(
        &self,
        topic: impl Fn(usize) -> String,
        window: u64,
        done: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<()> {
        let published = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (k, client) in self.clients.iter().enumerate() {
            let client = client.clone();
            let payloads = self.payloads[k].clone();
            let topic = topic(k);
            let published = published.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                for p in payloads {
                    // Reserve a place in the window atomically, so that the publishers
                    // together never overshoot it.
                    loop {
                        let cur = published.load(Ordering::Relaxed);
                        if cur < done() + window
                            && published
                                .compare_exchange(
                                    cur,
                                    cur + 1,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                )
                                .is_ok()
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    client.publish(&topic, QoS::AtLeastOnce, false, p).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    async fn close(self) {
        for c in self.clients {
            let _ = c.disconnect().await;
        }
    }
}

/// Waits until `done` reaches `n`, or stops growing for 5 s (messages the broker dropped:
/// it drops QoS 1 messages beyond its queue limit and says so only in its log). Returns
/// how many arrived and how long it waited in vain, to be left out of the time.
async fn wait_for(n: u64, done: impl Fn() -> u64, what: &str) -> (u64, Duration) {
    let mut last = (done(), Instant::now());
    while done() < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let d = done();
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "{what}: {} of {n} messages never arrived (dropped by the broker)",
                n - d
            );
            return (d, last.1.elapsed());
        }
    }
    (done(), Duration::ZERO)
}

fn finish(clock: CpuClock, (arrived, idle): (u64, Duration), per_publish: usize) -> Measured {
    let mut m = clock.stop();
    m.took = m.took.saturating_sub(idle);
    m.messages = arrived * per_publish as u64;
    m
}

async fn writer_only(payloads: &[String], dir: &std::path::Path) -> Result<Measured> {
    let url = format!("sqlite:{}?mode=rwc", dir.join("writer-only.db").display());
    let store = Store::open(&url, 4).await?;
    let writer = TelemetryWriter::start(&store, WriterSettings::default()).await?;
    let clock = CpuClock::start();
    let now = switchyard::domain::now_epoch();
    let mut pending = VecDeque::new();
    for chunk in payloads.chunks(JOB) {
        let mut readings = Vec::with_capacity(2 * chunk.len());
        for p in chunk {
            decode_into(p.as_bytes(), now, &mut readings).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        pending.push_back(writer.enqueue(readings).await?);
        // As many jobs in flight as the ingest's acker keeps.
        while pending.len() > 64 {
            pending.pop_front().expect("queued").committed().await?;
        }
    }
    for p in pending {
        p.committed().await?;
    }
    let mut m = clock.stop();
    m.messages = payloads.len() as u64;
    let stats = writer.stats();
    if stats.inserted != 2 * payloads.len() as u64 {
        bail!("writer only: unexpected outcome {stats:?}");
    }
    writer.close().await;
    store.close().await;
    Ok(m)
}

async fn broker_only(payloads: &[String], tag: &str) -> Result<Measured> {
    let count = Arc::new(AtomicU64::new(0));
    let prefix = format!("sy-bench/{tag}/raw/telemetry");
    let mut o = MqttOptions::new(format!("sy-bench-{tag}-raw"), BROKER.0, BROKER.1);
    o.set_clean_session(true);
    let (sub, mut ev) = AsyncClient::new(o, 10_000);
    sub.subscribe(format!("{prefix}/+"), QoS::AtLeastOnce)
        .await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = ev.poll().await? {
            break;
        }
    }
    let c = count.clone();
    let task = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(_)) = e {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let pubs = Publishers::new(&format!("{tag}-raw"), payloads, 1).await;
    let clock = CpuClock::start();
    let c = count.clone();
    let done = Arc::new(move || c.load(Ordering::Relaxed));
    pubs.run(|k| format!("{prefix}/p{k}"), RAW_WINDOW, done.clone())
        .await?;
    let waited = wait_for(payloads.len() as u64, &*done, "broker only").await;
    let m = finish(clock, waited, 1);
    pubs.close().await;
    sub.disconnect().await.ok();
    task.abort();
    Ok(m)
}

/// One ingest run: how the ingest is set up and fed.
struct Run<'a> {
    name: &'a str,
    per_publish: usize,
    receive_maximum: u16,
    store_readings: bool,
}

async fn ingest_run(
    run: &Run<'_>,
    payloads: &[String],
    tag: &str,
    dir: &std::path::Path,
) -> Result<Measured> {
    let url = format!(
        "sqlite:{}?mode=rwc",
        dir.join(format!("mqtt-{}.db", run.name)).display()
    );
    let store = Store::open(&url, 4).await?;
    let cfg = MqttConfig {
        enabled: true,
        client_id: format!("sy-bench-{tag}-{}", run.name),
        topic_prefix: format!("sy-bench/{tag}/{}", run.name),
        receive_maximum: run.receive_maximum,
        ..Default::default()
    };
    let writer = if run.store_readings {
        Some(TelemetryWriter::start(&store, WriterSettings::default()).await?)
    } else {
        None
    };
    let sink = match &writer {
        Some(w) => ReadingSink::Telemetry(w.clone()),
        None => ReadingSink::Discard,
    };
    let ingest = Arc::new(MqttIngest::start_with_sink(&cfg, store.clone(), sink)?);
    ingest.ready(Duration::from_secs(10)).await?;
    let pubs = Publishers::new(&format!("{tag}-{}", run.name), payloads, run.per_publish).await;
    let publishes = pubs.publishes();
    let topics = ingest.topics().clone();
    let i = ingest.clone();
    let done = Arc::new(move || {
        let s = i.stats();
        s.messages + s.quarantined
    });
    // The broker holds up to the Receive Maximum in flight plus `max_queued_messages`
    // (1000) queued. Messages counted here as settled may still have their PUBACK in the
    // client's request queue (up to 10,000), so most of the window is left for those.
    let window = (u64::from(run.receive_maximum) / 4).max(400);
    let clock = CpuClock::start();
    pubs.run(|k| topics.telemetry(&format!("p{k}")), window, done.clone())
        .await?;
    let waited = wait_for(publishes, &*done, run.name).await;
    let m = finish(clock, waited, run.per_publish);
    pubs.close().await;
    drop(done);
    let s = ingest.stats();
    let expected = if run.store_readings {
        2 * m.messages
    } else {
        0
    };
    if s.quarantined > 0 || s.readings_inserted != expected {
        bail!("{}: unexpected outcome: {s:?}", run.name);
    }
    Arc::into_inner(ingest)
        .context("ingest still shared")?
        .stop()
        .await;
    if let Some(w) = writer {
        w.close().await;
    }
    store.close().await;
    // Leave no persistent session behind on the shared broker.
    let mut o = MqttOptions::new(&cfg.client_id, BROKER.0, BROKER.1);
    o.set_clean_session(true);
    let (c, mut ev) = AsyncClient::new(o, 10);
    let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    c.try_disconnect().ok();
    let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    Ok(m)
}

fn row(what: &str, n: usize, m: &Measured) -> String {
    let cpu = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("{c:.1} s"));
    format!(
        "| {what}{} | {:.0} msg/s | {:.3} s | {} | {} |",
        if (m.messages as usize) < n {
            format!(" ({} of {n} arrived)", m.messages)
        } else {
            String::new()
        },
        m.messages as f64 / m.took.as_secs_f64(),
        m.took.as_secs_f64(),
        cpu(m.own_cpu),
        cpu(m.broker_cpu)
    )
}

fn main() -> Result<()> {
    let n: usize = match std::env::var("SWITCHYARD_BENCH_MQTT_MESSAGES") {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .context("SWITCHYARD_BENCH_MQTT_MESSAGES")?,
        Err(_) => 200_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let base = switchyard::domain::now_epoch() - (n / DEVICES) as i64 - 10;
    let payloads: Vec<String> = (0..n).map(|i| payload(i, base)).collect();
    let bytes: usize = payloads.iter().map(String::len).sum();
    println!(
        "MQTT ingest: {n} messages, {} bytes each on average, {DEVICES} devices, {PUBLISHERS} publisher connections",
        bytes / n
    );

    let wanted: Option<Vec<String>> = std::env::var("SWITCHYARD_BENCH_MQTT_ROWS")
        .ok()
        .map(|v| v.split(',').map(|r| r.trim().to_string()).collect());
    let wants = |row: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|r| r == row));
    let mut lines: Vec<String> = Vec::new();
    if wants("decode") {
        let clock = CpuClock::start();
        let now = switchyard::domain::now_epoch();
        let mut out = Vec::with_capacity(2 * n);
        for p in &payloads {
            decode_into(p.as_bytes(), now, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        std::hint::black_box(&out);
        let mut m = clock.stop();
        m.messages = n as u64;
        lines.push(row("decode only (codec, in process)", n, &m));
    }

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir()?;
    rt.block_on(async {
        if tokio::net::TcpStream::connect(BROKER).await.is_err() {
            bail!("no MQTT broker at 127.0.0.1:1883: start Mosquitto (see .ci/run)");
        }
        let default_window = match std::env::var("SWITCHYARD_BENCH_MQTT_RECEIVE_MAXIMUM") {
            Ok(v) => v.parse().context("SWITCHYARD_BENCH_MQTT_RECEIVE_MAXIMUM")?,
            Err(_) => MqttConfig::default().receive_maximum,
        };
        let mut writer = None;
        if wants("writer") {
            let m = writer_only(&payloads, dir.path()).await?;
            lines.push(row(
                &format!("writer only (decode + TelemetryWriter in jobs of {JOB} messages, SQLite, no broker)"),
                n,
                &m,
            ));
            writer = Some(m);
        }
        if wants("broker") {
            let m = broker_only(&payloads, &tag).await?;
            lines.push(row("broker only (bare 3.1.1 subscriber, ack on receipt)", n, &m));
        }
        let runs = [
            (Run { name: "mqtt-only", per_publish: 1, receive_maximum: default_window, store_readings: false },
             format!("MQTT path alone (MqttIngest, discarding sink, receive maximum {default_window})")),
            (Run { name: "e2e", per_publish: 1, receive_maximum: default_window, store_readings: true },
             format!("end to end (MqttIngest -> TelemetryWriter -> SQLite, PUBACK after commit, receive maximum {default_window})")),
            (Run { name: "e2e-window20", per_publish: 1, receive_maximum: 20, store_readings: true },
             "end to end, receive maximum 20 (a 3.1.1 client's window)".to_string()),
            (Run { name: "e2e-gateway", per_publish: GATEWAY_BATCH, receive_maximum: default_window, store_readings: true },
             format!("end to end, gateways batching {GATEWAY_BATCH} device messages per publish (device msg/s)")),
        ];
        let mut measured = std::collections::HashMap::new();
        for (run, what) in &runs {
            if wants(run.name) {
                let m = ingest_run(run, &payloads, &tag, dir.path()).await?;
                lines.push(row(what, n, &m));
                measured.insert(run.name, m);
            }
        }
        println!();
        println!("| Measurement | Rate | Time | CPU, bench process | CPU, broker |");
        println!("|---|---:|---:|---:|---:|");
        for line in &lines {
            println!("{line}");
        }
        println!();
        let rate = |m: &Measured| m.messages as f64 / m.took.as_secs_f64();
        if let Some(e2e) = measured.get("e2e") {
            if let Some(alone) = measured.get("mqtt-only") {
                println!("end to end: {:.0}% of the MQTT path alone", 100.0 * rate(e2e) / rate(alone));
            }
            if let Some(w) = &writer {
                println!("end to end: {:.0}% of the writer alone", 100.0 * rate(e2e) / rate(w));
            }
            if let Some(w20) = measured.get("e2e-window20") {
                println!("end to end: {:.1}x the 20-message window", rate(e2e) / rate(w20));
            }
            if let (Some(own), Some(broker)) = (e2e.own_cpu, e2e.broker_cpu) {
                println!(
                    "end to end: {:.1} us CPU per message in the bench process, {:.1} us in the broker",
                    1e6 * own / e2e.messages as f64,
                    1e6 * broker / e2e.messages as f64
                );
            }
        }
        Ok(())
    })
}
