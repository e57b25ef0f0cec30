//! MQTT ingest and commands against the real Mosquitto at 127.0.0.1:1883, on SQLite and
//! PostgreSQL. When the broker is unreachable the tests print SKIPPED, unless CI=true, in
//! which case they fail: `.ci/run` starts Mosquitto.

mod common;

use common::api::ApiClient;
use common::{READER_TOKEN, TestDb};
use reqwest::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::time::Duration;
use switchyard::envelope::model::ControlModes;
use switchyard::protocol::mqtt::payload::{AckMessage, AckStatus, CommandMessage};
use switchyard::protocol::mqtt::{MqttConfig, MqttError, MqttIngest, quarantine};
use switchyard::telemetry::status::OperatingState;
use switchyard::telemetry::{
    self, Measurand, Quality, SourceKind, TelemetryWriter, WriterSettings,
};
use tokio::sync::mpsc;

const BROKER: (&str, u16) = ("127.0.0.1", 1883);
const WAIT: Duration = Duration::from_secs(20);

/// Whether the broker is there; panics under CI when it is not.
async fn broker_up() -> bool {
    match tokio::net::TcpStream::connect(BROKER).await {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("Mosquitto at 127.0.0.1:1883 is required under CI but unreachable: {e}");
            }
            eprintln!(
                "SKIPPED: no MQTT broker at 127.0.0.1:1883 ({e}); start Mosquitto or run .ci/run"
            );
            false
        }
    }
}

/// A configuration with a prefix and client id of its own, so tests do not see each
/// other's messages or sessions.
fn config() -> MqttConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    MqttConfig {
        enabled: true,
        client_id: format!("sy-test-{tag}"),
        topic_prefix: format!("sy-test/{tag}"),
        reconnect_initial_ms: 50,
        reconnect_max_seconds: 1,
        ..Default::default()
    }
}

/// A plain client standing in for devices and gateways; incoming messages go to the
/// returned receiver.
async fn peer(
    id: &str,
    subscribe: &[String],
) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let mut o = MqttOptions::new(id, BROKER.0, BROKER.1);
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = sub_tx.send(());
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub_tx.send(());
                }
                Ok(_) => {}
                // Every handle to the client is gone: the peer is finished.
                Err(rumqttc::ConnectionError::RequestsDone) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    for f in subscribe {
        client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
    }
    // The CONNACK, then one SUBACK per filter.
    for _ in 0..=subscribe.len() {
        tokio::time::timeout(WAIT, sub_rx.recv())
            .await
            .expect("peer connects");
    }
    (client, rx)
}

/// Drops the persistent session the test created on the shared broker.
async fn forget_session(client_id: &str) {
    let mut o = MqttOptions::new(client_id, BROKER.0, BROKER.1);
    o.set_clean_session(true);
    let (client, mut ev) = AsyncClient::new(o, 10);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.disconnect().await;
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                _ => {}
            }
        }
    })
    .await;
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn writer(db: &TestDb) -> TelemetryWriter {
    TelemetryWriter::start(&db.store, WriterSettings::default())
        .await
        .unwrap()
}

fn now() -> i64 {
    switchyard::domain::now_epoch()
}

async fn telemetry_single_and_gateway_batches_are_stored_in_si(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let t = now() - 60;
    let topics = ingest.topics().clone();
    let single = format!(
        r#"{{"device_id":"inv-1","ts":{t},"measurements":[{{"measurand":"active_power","value":-3.5,"unit":"kW"}},{{"measurand":"state_of_charge","value":80,"unit":"%"}}]}}"#
    );
    pubc.publish(
        topics.telemetry("inv-1"),
        QoS::AtLeastOnce,
        false,
        single.clone(),
    )
    .await
    .unwrap();
    let batch = format!(
        r#"[{{"device_id":"bat-1","ts":{t},"measurements":[{{"measurand":"energy_imported","value":1.25,"unit":"MWh"}}]}},
            {{"device_id":"bat-2","ts":{t},"quality":"estimated","measurements":[{{"measurand":"reactive_power","value":2,"unit":"kvar"}}]}}]"#
    );
    pubc.publish(topics.telemetry("gw-7"), QoS::AtLeastOnce, false, batch)
        .await
        .unwrap();
    eventually("both messages stored", async || {
        ingest.stats().messages == 2
    })
    .await;

    let inv = telemetry::query(&db.store, "inv-1", None, t, t + 1)
        .await
        .unwrap();
    let got: Vec<(Measurand, f64)> = inv.iter().map(|r| (r.measurand, r.value)).collect();
    assert_eq!(
        got,
        vec![
            (Measurand::ActivePower, -3500.0),
            (Measurand::StateOfCharge, 80.0)
        ]
    );
    assert!(inv.iter().all(|r| r.source_kind == SourceKind::Mqtt));
    let b1 = telemetry::query(&db.store, "bat-1", None, t, t + 1)
        .await
        .unwrap();
    assert_eq!(b1[0].value, 1_250_000.0);
    let b2 = telemetry::query(&db.store, "bat-2", None, t, t + 1)
        .await
        .unwrap();
    assert_eq!(
        (b2[0].measurand, b2[0].value, b2[0].quality),
        (Measurand::ReactivePower, 2000.0, Quality::Estimated)
    );

    // A redelivered message (a device retrying after a lost PUBACK) is stored once.
    pubc.publish(topics.telemetry("inv-1"), QoS::AtLeastOnce, false, single)
        .await
        .unwrap();
    eventually("the repeat processed", async || {
        ingest.stats().messages == 3
    })
    .await;
    let s = ingest.stats();
    assert_eq!((s.readings_inserted, s.readings_duplicate), (4, 2));
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn malformed_messages_are_quarantined_and_ingest_continues(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let topic = ingest.topics().telemetry("bad-dev");
    let t = now() - 10;
    let bad = [
        ("hello".to_string(), "not JSON"),
        (
            r#"{"device_id":"d","measurements":[]}"#.to_string(),
            "missing field `ts`",
        ),
        (
            format!(
                r#"{{"device_id":"d","ts":{t},"measurements":[{{"measurand":"active_power","value":1,"unit":"hp"}}]}}"#
            ),
            "unknown unit 'hp'",
        ),
        (
            format!(
                r#"{{"device_id":"d","ts":{t},"measurements":[{{"measurand":"voltage","value":NaN,"unit":"V"}}]}}"#
            ),
            "not JSON",
        ),
        (
            format!(
                r#"[{{"device_id":"d","ts":{t},"measurements":[{{"measurand":"voltage","value":230,"unit":"V"}}]}},{{"device_id":"e","ts":{t},"measurements":[{{"measurand":"volume","value":1,"unit":"l"}}]}}]"#
            ),
            "[1] device e: unknown measurand 'volume'",
        ),
    ];
    for (payload, _) in &bad {
        pubc.publish(&topic, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let good = format!(
        r#"{{"device_id":"ok-dev","ts":{t},"measurements":[{{"measurand":"frequency","value":50.02,"unit":"Hz"}}]}}"#
    );
    pubc.publish(&topic, QoS::AtLeastOnce, false, good)
        .await
        .unwrap();
    eventually("all six processed", async || {
        let s = ingest.stats();
        s.quarantined == 5 && s.messages == 1
    })
    .await;
    let rows = quarantine::list(&db.store, 100).await.unwrap();
    assert_eq!(rows.len(), 5);
    // Newest first, so reverse to publication order.
    for (row, (payload, reason)) in rows.iter().rev().zip(&bad) {
        assert!(
            row.reason.contains(reason),
            "{} does not contain {reason}",
            row.reason
        );
        assert_eq!(&row.payload, payload);
        assert_eq!(row.topic, topic);
    }
    // The half-good gateway batch stored nothing; the good message after the bad ones did.
    assert!(
        telemetry::query(&db.store, "d", None, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        telemetry::query(&db.store, "ok-dev", None, 0, i64::MAX)
            .await
            .unwrap()[0]
            .value,
        50.02
    );
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn command_round_trip_with_ack_and_retained_state(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let topics = ingest.topics().clone();
    let (device, mut inbox) = peer(
        &format!("{}-dev", cfg.client_id),
        &[topics.command("inv-5")],
    )
    .await;
    // The device: applies whatever it is told and acknowledges it.
    let ack_topic = topics.ack("inv-5");
    let responder = tokio::spawn(async move {
        let p = inbox.recv().await.expect("a command");
        let cmd: CommandMessage = serde_json::from_slice(&p.payload).unwrap();
        let ack = AckMessage {
            command_id: cmd.command_id.clone(),
            status: AckStatus::Applied,
            reason: None,
        };
        device
            .publish(
                ack_topic,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&ack).unwrap(),
            )
            .await
            .unwrap();
        (cmd, device)
    });
    let modes = ControlModes {
        max_lim_w: Some(3000.0),
        connect: Some(true),
        ..Default::default()
    };
    let pending = ingest.send_command("inv-5", modes.clone()).await.unwrap();
    let id = pending.command_id.clone();
    let ack = pending.ack(WAIT).await.unwrap();
    assert_eq!(
        (ack.command_id.as_str(), ack.status),
        (id.as_str(), AckStatus::Applied)
    );
    let (cmd, device) = responder.await.unwrap();
    assert_eq!((cmd.device_id.as_str(), &cmd.modes), ("inv-5", &modes));

    // A device that connects later receives the last command, retained by the broker.
    let (_late, mut late_inbox) = peer(
        &format!("{}-late", cfg.client_id),
        &[topics.command("inv-5")],
    )
    .await;
    let retained = tokio::time::timeout(WAIT, late_inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(retained.retain);
    let again: CommandMessage = serde_json::from_slice(&retained.payload).unwrap();
    assert_eq!(again.command_id, id);

    // An ack nobody waits for is quarantined, and a command nobody answers times out.
    device
        .publish(
            topics.ack("inv-5"),
            QoS::AtLeastOnce,
            false,
            r#"{"command_id":"nope","status":"applied"}"#,
        )
        .await
        .unwrap();
    eventually("the stray ack quarantined", async || {
        ingest.stats().quarantined == 1
    })
    .await;
    let rows = quarantine::list(&db.store, 10).await.unwrap();
    assert!(
        rows[0].reason.contains("unknown command nope"),
        "{}",
        rows[0].reason
    );
    let silent = ingest
        .send_command("inv-6", ControlModes::default())
        .await
        .unwrap();
    let err = silent.ack(Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, MqttError::AckTimeout { .. }), "{err}");
    assert!(matches!(
        ingest.send_command("a/b", ControlModes::default()).await,
        Err(MqttError::BadDeviceId(_))
    ));
    ingest.clear_command("inv-5").await.unwrap();
    ingest.clear_command("inv-6").await.unwrap();
    assert_eq!(ingest.stats().acks_matched, 1);
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn reconnects_and_keeps_the_session(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let topics = ingest.topics().clone();
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let msg = |dev: &str| {
        format!(
            r#"{{"device_id":"{dev}","ts":{},"measurements":[{{"measurand":"active_power","value":1,"unit":"W"}}]}}"#,
            now() - 5
        )
    };

    // Another client taking the same client id makes the broker drop our connection.
    let mut o = MqttOptions::new(&cfg.client_id, BROKER.0, BROKER.1);
    o.set_clean_session(false);
    let (intruder, mut ev) = AsyncClient::new(o, 10);
    loop {
        if let Ok(Event::Incoming(Packet::ConnAck(_))) = ev.poll().await {
            break;
        }
    }
    intruder.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    drop(ev);
    eventually("a reconnect", async || {
        let s = ingest.stats();
        s.connection_errors >= 1 && s.connects >= 2
    })
    .await;
    ingest.ready(WAIT).await.unwrap();
    pubc.publish(topics.telemetry("r1"), QoS::AtLeastOnce, false, msg("r1"))
        .await
        .unwrap();
    eventually("telemetry after the reconnect", async || {
        ingest.stats().messages == 1
    })
    .await;
    ingest.stop().await;

    // Published while Switchyard is away: the broker keeps it in the persistent session
    // and delivers it when the same client id comes back.
    pubc.publish(topics.telemetry("r2"), QoS::AtLeastOnce, false, msg("r2"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    eventually("the message queued while away", async || {
        ingest.stats().messages == 1
    })
    .await;
    assert_eq!(
        telemetry::query(&db.store, "r2", None, 0, i64::MAX)
            .await
            .unwrap()
            .len(),
        1
    );
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn acknowledging_on_receipt_still_stores_everything(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = MqttConfig {
        ack_after_store: false,
        ..config()
    };
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let t = now() - 100;
    for i in 0..50 {
        let m = format!(
            r#"{{"device_id":"fast","ts":{},"measurements":[{{"measurand":"voltage","value":{i},"unit":"V"}}]}}"#,
            t + i
        );
        pubc.publish(
            ingest.topics().telemetry("fast"),
            QoS::AtLeastOnce,
            false,
            m,
        )
        .await
        .unwrap();
    }
    eventually("all 50 stored", async || ingest.stats().messages == 50).await;
    let stored = telemetry::query(&db.store, "fast", None, t, t + 50)
        .await
        .unwrap();
    let values: Vec<f64> = stored.iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        (0..50).map(f64::from).collect::<Vec<_>>(),
        "in order, none lost"
    );
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn serve_starts_the_ingest_when_configured(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let mqtt = cfg.clone();
    let (server, base) = common::start_server_with(&db, 64 * 1024, move |c| c.mqtt = mqtt).await;
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let topic = switchyard::protocol::mqtt::topics::Topics::new(&cfg.topic_prefix).telemetry("srv");
    let t = now() - 30;
    let m = format!(
        r#"{{"device_id":"srv-dev","ts":{t},"measurements":[{{"measurand":"active_power","value":2,"unit":"kW"}}]}}"#
    );
    // The server subscribes in the background; publish until the reading shows up.
    eventually("the served ingest stores telemetry", async || {
        pubc.publish(&topic, QoS::AtLeastOnce, false, m.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        !telemetry::query(&db.store, "srv-dev", None, t, t + 1)
            .await
            .unwrap()
            .is_empty()
    })
    .await;

    // The operator sees the connection, the counters and what was refused, page by page.
    let api = ApiClient::new(base);
    for payload in ["one", "two", "three"] {
        pubc.publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    eventually("three quarantined", async || {
        api.ok_as(READER_TOKEN, "/api/v1/mqtt/status").await["stats"]["quarantined"] == 3
    })
    .await;
    let status = api.ok_as(READER_TOKEN, "/api/v1/mqtt/status").await;
    assert_eq!(status["enabled"], true, "{status}");
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["last_error"], Value::Null, "{status}");
    assert!(
        status["stats"]["messages"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let first = api
        .ok_as(READER_TOKEN, "/api/v1/mqtt/quarantine?limit=2")
        .await;
    let payloads = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["payload"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(payloads(&first), ["three", "two"], "{first}");
    assert!(
        first["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{first}"
    );
    assert_eq!(first["items"][0]["topic"], topic.as_str());
    let after = first["next_after"].as_str().unwrap();
    let second = api
        .ok_as(
            READER_TOKEN,
            &format!("/api/v1/mqtt/quarantine?limit=2&after={after}"),
        )
        .await;
    assert_eq!(payloads(&second), ["one"], "{second}");
    assert_eq!(second["next_after"], Value::Null);
    for (path, status) in [
        ("/api/v1/mqtt/quarantine?limit=0", StatusCode::BAD_REQUEST),
        ("/api/v1/mqtt/quarantine?topic=x", StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = api.send(Some(READER_TOKEN), Method::GET, path, None).await;
        assert_eq!(s, status, "{path}: {v}");
    }
    let (s, _) = api
        .send(None, Method::GET, "/api/v1/mqtt/status", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    server.stop().await.unwrap();
    forget_session(&cfg.client_id).await;
}

async fn without_mqtt_the_status_says_so_and_the_quarantine_is_listed(db: TestDb) {
    // No broker needed: the ingest is off and the quarantine row is written directly.
    let row = quarantine::Quarantined::new("t/x", b"{bad", "not JSON: EOF".into(), now());
    let mut conn = db.store.pool().acquire().await.unwrap();
    quarantine::insert_in(&mut conn, std::slice::from_ref(&row))
        .await
        .unwrap();
    drop(conn);
    let (server, base) = common::start_server(&db, 64 * 1024).await;
    let api = ApiClient::new(base);
    let status = api.ok_as(READER_TOKEN, "/api/v1/mqtt/status").await;
    assert_eq!(
        (&status["enabled"], &status["connected"], &status["stats"]),
        (&json!(false), &json!(false), &Value::Null)
    );
    let all = api.ok_as(READER_TOKEN, "/api/v1/mqtt/quarantine").await;
    assert_eq!(all["items"][0]["payload"], "{bad", "{all}");
    assert_eq!(all["items"][0]["reason"], "not JSON: EOF");
    assert_eq!(all["items"][0]["payload_bytes"], 4);
    assert_eq!(all["next_after"], Value::Null);
    server.stop().await.unwrap();
}

/// Holds the database's write lock (SQLite) or a lock on the readings table that blocks
/// inserts (PostgreSQL) until `release`, so that the telemetry writer cannot commit.
struct WriteBlock(sqlx::pool::PoolConnection<sqlx::Any>);

impl WriteBlock {
    async fn hold(db: &TestDb) -> WriteBlock {
        use switchyard::store::Backend;
        use switchyard::store::record::dynamic;
        let mut conn = db.store.pool().acquire().await.unwrap();
        let statements: &[&str] = match db.store.backend() {
            Backend::Sqlite => &["BEGIN IMMEDIATE"],
            Backend::Postgres => &["BEGIN", "LOCK TABLE readings IN EXCLUSIVE MODE"],
        };
        for sql in statements {
            dynamic(sql.to_string()).execute(&mut *conn).await.unwrap();
        }
        WriteBlock(conn)
    }

    async fn release(mut self) {
        switchyard::store::record::dynamic("ROLLBACK".to_string())
            .execute(&mut *self.0)
            .await
            .unwrap();
    }
}

/// Takes over the ingest's client id (the broker then drops the ingest's connection and
/// hands the session to us) and returns what the broker delivers within `listen`: the
/// messages of the session that were never acknowledged. Acknowledges nothing, so they
/// stay in the session.
async fn take_over_session(client_id: &str, listen: Duration) -> Vec<rumqttc::Publish> {
    let mut o = MqttOptions::new(client_id, BROKER.0, BROKER.1);
    o.set_clean_session(false).set_manual_acks(true);
    let (client, mut ev) = AsyncClient::new(o, 10);
    let mut got = Vec::new();
    let _ = tokio::time::timeout(listen, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => got.push(p),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), ev.poll()).await;
    got
}

async fn puback_waits_for_the_commit(db: TestDb) {
    if !broker_up().await {
        return;
    }
    // A slow reconnect leaves time to look at the session while the ingest is away.
    let cfg = MqttConfig {
        reconnect_initial_ms: 3000,
        reconnect_max_seconds: 3,
        ..config()
    };
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let t = now() - 20;
    let m = format!(
        r#"{{"device_id":"held","ts":{t},"measurements":[{{"measurand":"active_power","value":7,"unit":"W"}}]}}"#
    );

    let block = WriteBlock::hold(&db).await;
    pubc.publish(
        ingest.topics().telemetry("held"),
        QoS::AtLeastOnce,
        false,
        m.clone(),
    )
    .await
    .unwrap();
    eventually("the message received", async || {
        ingest.stats().received == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ingest.stats().messages,
        0,
        "not stored while the database is locked"
    );

    // Received but not committed: the broker still holds it as unacknowledged and
    // delivers it again to whoever resumes the session.
    let redelivered = take_over_session(&cfg.client_id, Duration::from_millis(1500)).await;
    assert_eq!(
        redelivered.len(),
        1,
        "the uncommitted message is still in the session"
    );
    assert_eq!(redelivered[0].payload, m.as_bytes());

    block.release().await;
    // The original commits once the lock is gone; the ingest reconnects, receives the
    // redelivered copy and stores it as a duplicate.
    eventually("both copies settled", async || ingest.stats().messages == 2).await;
    let s = ingest.stats();
    assert_eq!((s.readings_inserted, s.readings_duplicate), (1, 1), "{s:?}");
    let stored = telemetry::query(&db.store, "held", None, t, t + 1)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].value, 7.0);

    // Committed, so acknowledged: nothing is left in the session.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = take_over_session(&cfg.client_id, Duration::from_millis(1000)).await;
    assert!(left.is_empty(), "acknowledged after the commit: {left:?}");
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn each_device_keeps_its_order_across_publishers(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    const PUBLISHERS: usize = 4;
    const DEVICES_EACH: usize = 5;
    const INSTANTS: i64 = 40;
    let t = now() - 1000;
    // Each device sends two values for every instant, the original and then a correction;
    // the readings key keeps the first one stored. So if any device's messages were
    // stored out of order, some instant would show the correction.
    let mut tasks = Vec::new();
    for k in 0..PUBLISHERS {
        let (pubc, _rx) = peer(&format!("{}-pub{k}", cfg.client_id), &[]).await;
        let topic = ingest.topics().telemetry(&format!("gw{k}"));
        tasks.push(tokio::spawn(async move {
            for i in 0..INSTANTS {
                for v in [1.0, 2.0] {
                    for d in 0..DEVICES_EACH {
                        let m = format!(
                            r#"{{"device_id":"ord-{k}-{d}","ts":{},"measurements":[{{"measurand":"active_power","value":{},"unit":"W"}}]}}"#,
                            t + i,
                            v * 1000.0 + i as f64
                        );
                        pubc.publish(&topic, QoS::AtLeastOnce, false, m).await.unwrap();
                    }
                }
            }
            pubc
        }));
    }
    let mut keep = Vec::new();
    for task in tasks {
        keep.push(task.await.unwrap());
    }
    let total = (PUBLISHERS * DEVICES_EACH) as u64 * INSTANTS as u64 * 2;
    eventually("every message settled", async || {
        ingest.stats().messages == total
    })
    .await;
    let s = ingest.stats();
    assert_eq!(s.readings_inserted, total / 2, "{s:?}");
    assert_eq!(s.readings_duplicate, total / 2, "{s:?}");
    for k in 0..PUBLISHERS {
        for d in 0..DEVICES_EACH {
            let stored =
                telemetry::query(&db.store, &format!("ord-{k}-{d}"), None, t, t + INSTANTS)
                    .await
                    .unwrap();
            let values: Vec<f64> = stored.iter().map(|r| r.value).collect();
            let expected: Vec<f64> = (0..INSTANTS).map(|i| 1000.0 + i as f64).collect();
            assert_eq!(
                values, expected,
                "device ord-{k}-{d}: the first value of each instant"
            );
        }
    }
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

async fn device_status_is_stored_as_state_codes(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let cfg = config();
    let ingest = MqttIngest::start(&cfg, db.store.clone(), writer(&db).await).unwrap();
    ingest.ready(WAIT).await.unwrap();
    let (pubc, _rx) = peer(&format!("{}-dev", cfg.client_id), &[]).await;
    let topics = ingest.topics().clone();
    let t = now() - 30;
    let status = |ts: i64, state: &str, connected: bool| {
        format!(
            r#"{{"device_id":"chg-1","ts":{ts},"measurements":[{{"measurand":"operating_state","value":"{state}"}},{{"measurand":"grid_connected","value":{connected}}},{{"measurand":"active_power","value":7.2,"unit":"kW"}}]}}"#
        )
    };
    let bad = format!(
        r#"{{"device_id":"chg-1","ts":{},"measurements":[{{"measurand":"operating_state","value":"exploded"}},{{"measurand":"active_power","value":1,"unit":"W"}}]}}"#,
        t + 5
    );
    for payload in [
        status(t, "running", true),
        bad,
        status(t + 10, "fault", false),
    ] {
        pubc.publish(topics.telemetry("chg-1"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    eventually("two stored, one quarantined", async || {
        let s = ingest.stats();
        s.messages == 2 && s.quarantined == 1
    })
    .await;
    let rows = telemetry::query(&db.store, "chg-1", None, t, t + 11)
        .await
        .unwrap();
    let got: Vec<(i64, Measurand, f64)> = rows
        .iter()
        .map(|r| (r.instant - t, r.measurand, r.value))
        .collect();
    for want in [
        (0, Measurand::OperatingState, OperatingState::Running.code()),
        (0, Measurand::GridConnected, 1.0),
        (0, Measurand::ActivePower, 7200.0),
        (10, Measurand::OperatingState, OperatingState::Fault.code()),
        (10, Measurand::GridConnected, 0.0),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
    // The message with an unknown state stored nothing, not even its power.
    assert!(got.iter().all(|(dt, _, _)| *dt != 5), "{got:?}");
    let q = quarantine::list(&db.store, 10).await.unwrap();
    assert!(
        q[0].reason
            .contains("operating_state must be one of off, sleeping"),
        "{}",
        q[0].reason
    );
    ingest.stop().await;
    forget_session(&cfg.client_id).await;
}

on_both_backends!(
    without_mqtt_the_status_says_so_and_the_quarantine_is_listed,
    device_status_is_stored_as_state_codes,
    serve_starts_the_ingest_when_configured,
    acknowledging_on_receipt_still_stores_everything,
    telemetry_single_and_gateway_batches_are_stored_in_si,
    malformed_messages_are_quarantined_and_ingest_continues,
    command_round_trip_with_ack_and_retained_state,
    reconnects_and_keeps_the_session,
    puback_waits_for_the_commit,
    each_device_keeps_its_order_across_publishers,
);
