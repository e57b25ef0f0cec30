//! MQTT ingest benchmark: telemetry messages per second from the broker into the engine's
//! readings table, end to end, against the Mosquitto at 127.0.0.1:1883.
//!
//! Run with `cargo bench --bench mqtt`. `SWITCHYARD_BENCH_MQTT_MESSAGES` (default 200,000)
//! sets how many messages are published. Each message is one device's power and state of
//! charge (two readings), as a device publishes it. Three figures, measured in the same
//! run so that they can be compared:
//!
//! 1. decode only: payload bytes to validated readings, in process (the codec's ceiling);
//! 2. broker only: a bare rumqttc subscriber that counts messages (the broker's and the
//!    client library's ceiling on this machine);
//! 3. end to end: published through Mosquitto, stored by `MqttIngest` in SQLite, counted
//!    when committed and acknowledged.
//!
//! The publisher keeps at most `WINDOW` messages ahead of the consumer: Mosquitto drops
//! QoS 1 messages beyond `max_queued_messages` (1000 by default) per subscriber, so an
//! unpaced publisher would measure the broker's drops, not the ingest.

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchyard::protocol::mqtt::decode::decode_into;
use switchyard::protocol::mqtt::{MqttConfig, MqttIngest};
use switchyard::store::Store;
use switchyard::telemetry::{TelemetryWriter, WriterSettings};

const DEVICES: usize = 1000;
const WINDOW: u64 = 400;
const BROKER: (&str, u16) = ("127.0.0.1", 1883);

fn payload(i: usize, base: i64) -> String {
    let dev = i % DEVICES;
    let ts = base + (i / DEVICES) as i64;
    format!(
        r#"{{"device_id":"dev-{dev}","ts":{ts},"measurements":[{{"measurand":"active_power","value":{:.3},"unit":"kW"}},{{"measurand":"state_of_charge","value":{},"unit":"%"}}]}}"#,
        (i % 97) as f64 / 10.0,
        i % 100
    )
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0} msg/s", n as f64 / d.as_secs_f64())
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

/// Publishes `payloads` to `topic`, never more than WINDOW ahead of `done`.
async fn publish_paced(
    client: &AsyncClient,
    topic: &str,
    payloads: &[String],
    done: impl Fn() -> u64,
) -> Result<()> {
    for (i, p) in payloads.iter().enumerate() {
        while i as u64 >= done() + WINDOW {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        client
            .publish(topic, QoS::AtLeastOnce, false, p.clone().into_bytes())
            .await?;
    }
    Ok(())
}

async fn wait_for(n: u64, done: impl Fn() -> u64, what: &str) -> Result<()> {
    let mut last = (done(), Instant::now());
    while done() < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let d = done();
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(20) {
            bail!("{what}: stuck at {d} of {n} messages");
        }
    }
    Ok(())
}

async fn broker_only(payloads: &[String], tag: &str) -> Result<Duration> {
    let count = Arc::new(AtomicU64::new(0));
    let topic = format!("sy-bench/{tag}/raw/telemetry/x");
    let mut o = MqttOptions::new(format!("sy-bench-{tag}-raw"), BROKER.0, BROKER.1);
    o.set_clean_session(true);
    let (sub, mut ev) = AsyncClient::new(o, 10_000);
    sub.subscribe(&topic, QoS::AtLeastOnce).await?;
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
    let pubc = publisher(&format!("sy-bench-{tag}-rawpub")).await;
    let started = Instant::now();
    let done = || count.load(Ordering::Relaxed);
    publish_paced(&pubc, &topic, payloads, done).await?;
    wait_for(payloads.len() as u64, done, "broker only").await?;
    let took = started.elapsed();
    sub.disconnect().await.ok();
    task.abort();
    Ok(took)
}

/// Device messages per publish in the gateway variant.
const GATEWAY_BATCH: usize = 20;

/// Groups single-device payloads into gateway arrays of GATEWAY_BATCH messages.
fn gateway_payloads(payloads: &[String]) -> Vec<String> {
    payloads
        .chunks(GATEWAY_BATCH)
        .map(|c| format!("[{}]", c.join(",")))
        .collect()
}

async fn end_to_end(
    payloads: &[String],
    devices_per_publish: usize,
    ack_after_store: bool,
    tag: &str,
    dir: &std::path::Path,
) -> Result<(Duration, Store)> {
    let url = format!(
        "sqlite:{}?mode=rwc",
        dir.join(format!("mqtt-{devices_per_publish}-{ack_after_store}.db"))
            .display()
    );
    let store = Store::open(&url, 4).await?;
    let cfg = MqttConfig {
        enabled: true,
        client_id: format!("sy-bench-{tag}-{devices_per_publish}-{ack_after_store}"),
        topic_prefix: format!("sy-bench/{tag}/{devices_per_publish}/{ack_after_store}"),
        ack_after_store,
        ..Default::default()
    };
    let writer = TelemetryWriter::start(&store, WriterSettings::default()).await?;
    let ingest = MqttIngest::start(&cfg, store.clone(), writer.clone())?;
    ingest.ready(Duration::from_secs(10)).await?;
    let pubc = publisher(&format!(
        "sy-bench-{tag}-pub-{devices_per_publish}-{ack_after_store}"
    ))
    .await;
    let topic = ingest.topics().telemetry("gw-bench");
    let started = Instant::now();
    let done = || ingest.stats().messages + ingest.stats().quarantined;
    publish_paced(&pubc, &topic, payloads, done).await?;
    wait_for(payloads.len() as u64, done, "end to end").await?;
    let took = started.elapsed();
    let s = ingest.stats();
    if s.quarantined > 0 || s.readings_inserted != 2 * (payloads.len() * devices_per_publish) as u64
    {
        bail!("unexpected outcome: {s:?}");
    }
    ingest.stop().await;
    writer.close().await;
    // Leave no persistent session behind on the shared broker.
    let mut o = MqttOptions::new(&cfg.client_id, BROKER.0, BROKER.1);
    o.set_clean_session(true);
    let (c, mut ev) = AsyncClient::new(o, 10);
    let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    c.try_disconnect().ok();
    let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    Ok((took, store))
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
        "MQTT ingest: {n} messages, {} bytes each on average, {DEVICES} devices",
        bytes / n
    );

    let now = switchyard::domain::now_epoch();
    let started = Instant::now();
    let mut out = Vec::with_capacity(2 * n);
    for p in &payloads {
        decode_into(p.as_bytes(), now, &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let decode = started.elapsed();
    std::hint::black_box(&out);
    drop(out);

    let tag = uuid::Uuid::new_v4().simple().to_string();
    let dir = tempfile::tempdir()?;
    rt.block_on(async {
        if tokio::net::TcpStream::connect(BROKER).await.is_err() {
            bail!("no MQTT broker at 127.0.0.1:1883: start Mosquitto (see .ci/run)");
        }
        // Store only: the decoded readings written as the ingest writes them, in
        // transactions of WINDOW messages, with no broker involved.
        let store_only = {
            let url = format!("sqlite:{}?mode=rwc", dir.path().join("store-only.db").display());
            let store = Store::open(&url, 4).await?;
            let now = switchyard::domain::now_epoch();
            let mut readings = Vec::with_capacity(2 * WINDOW as usize);
            let started = Instant::now();
            for chunk in payloads.chunks(WINDOW as usize) {
                readings.clear();
                for p in chunk {
                    decode_into(p.as_bytes(), now, &mut readings)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                switchyard::telemetry::insert_batch(&store, &readings, now).await?;
            }
            let took = started.elapsed();
            store.close().await;
            took
        };
        let raw = broker_only(&payloads, &tag).await?;
        let (e2e, store) = end_to_end(&payloads, 1, true, &tag, dir.path()).await?;
        store.close().await;
        let (on_receipt, store) = end_to_end(&payloads, 1, false, &tag, dir.path()).await?;
        store.close().await;
        let batched = gateway_payloads(&payloads);
        let (gw, store) = end_to_end(&batched, GATEWAY_BATCH, true, &tag, dir.path()).await?;
        store.close().await;
        println!();
        println!("| Measurement | Rate | Time |");
        println!("|---|---:|---:|");
        println!(
            "| decode only (codec, in process) | {} | {:.3} s |",
            rate(n as u64, decode),
            decode.as_secs_f64()
        );
        println!(
            "| store only (decode + insert_batch of {WINDOW} messages per transaction, SQLite) | {} | {:.3} s |",
            rate(n as u64, store_only),
            store_only.as_secs_f64()
        );
        println!(
            "| broker only (bare subscriber, auto ack) | {} | {:.3} s |",
            rate(n as u64, raw),
            raw.as_secs_f64()
        );
        println!(
            "| end to end (broker -> MqttIngest -> SQLite, ack after commit) | {} | {:.3} s |",
            rate(n as u64, e2e),
            e2e.as_secs_f64()
        );
        println!(
            "| end to end, acknowledged on receipt (`ack_after_store = false`) | {} | {:.3} s |",
            rate(n as u64, on_receipt),
            on_receipt.as_secs_f64()
        );
        println!(
            "| end to end, gateways batching {GATEWAY_BATCH} device messages per publish | {} device msg/s ({} publishes/s) | {:.3} s |",
            rate(n as u64, gw).trim_end_matches(" msg/s"),
            rate(batched.len() as u64, gw).trim_end_matches(" msg/s"),
            gw.as_secs_f64()
        );
        println!();
        println!(
            "end to end reaches {:.0}% of the broker-only rate",
            100.0 * raw.as_secs_f64() / e2e.as_secs_f64()
        );
        Ok(())
    })
}
