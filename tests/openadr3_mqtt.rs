//! OpenADR 3.1 MQTT notifiers against the real Mosquitto at 127.0.0.1:1883, on SQLite and
//! PostgreSQL: `GET /notifiers` offers MQTT, the topic endpoints name topics with the
//! scoping of the objects (a VEN lists its own VEN's topics, not another's, and not the
//! BL-only collections), and a subscriber (rumqttc) that subscribes to the topics the VTN
//! named receives the specification's notification object for each create, update and
//! delete, and a VEN's event topic carries only the events aimed at it. Without the broker
//! the test prints SKIPPED, unless CI=true.

mod common;

use common::TestDb;
use common::openadr3::*;
use reqwest::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

on_both_backends!(mqtt_notifications_reach_a_subscriber);

const BROKER: (&str, u16) = ("127.0.0.1", 1883);
const WAIT: Duration = Duration::from_secs(20);

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

/// A subscriber; messages arrive on the receiver as (topic, JSON payload).
async fn subscriber(filters: &[String]) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Value)>) {
    let id = format!("sy-oadr3-sub-{}", uuid::Uuid::new_v4().simple());
    let mut o = MqttOptions::new(id, BROKER.0, BROKER.1);
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut ev) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    let _ = tx.send((p.topic.clone(), v));
                }
                Ok(Event::Incoming(Packet::SubAck(_) | Packet::ConnAck(_))) => {
                    let _ = ack_tx.send(());
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::RequestsDone) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    for f in filters {
        client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
    }
    for _ in 0..=filters.len() {
        tokio::time::timeout(WAIT, ack_rx.recv())
            .await
            .expect("subscriber connects and subscribes");
    }
    (client, rx)
}

/// The next message, or a failure after [`WAIT`].
async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a notification arrives")
        .unwrap()
}

async fn mqtt_notifications_reach_a_subscriber(db: TestDb) {
    if !broker_up().await {
        return;
    }
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("sy-test/{tag}/OpenADR/3.1.0/");
    let p = prefix.clone();
    let (server, base) = start(&db, |c| {
        c.openadr3.mqtt.enabled = true;
        c.openadr3.mqtt.client_id = format!("sy-oadr3-vtn-{tag}");
        c.openadr3.mqtt.topic_prefix = p;
    })
    .await;
    let record = Record::default();
    let w = world(&base, &record).await;

    // The notifier is offered, and its topics are listed as the document defines.
    let n = w.ven1.ok("/notifiers").await;
    assert_eq!(n["WEBHOOK"], true);
    assert_eq!(n["MQTT"]["URIS"], json!(["mqtt://127.0.0.1:1883"]));
    assert_eq!(n["MQTT"]["serialization"], "JSON");
    assert_eq!(n["MQTT"]["authentication"]["method"], "ANONYMOUS");
    let all_events = w.bl.ok("/notifiers/mqtt/topics/events").await;
    assert_eq!(
        all_events,
        json!({"topics": {"CREATE": format!("{prefix}events/create"),
            "UPDATE": format!("{prefix}events/update"), "DELETE": format!("{prefix}events/delete"),
            "ALL": format!("{prefix}events/+")}})
    );
    assert_eq!(
        w.ven1.ok("/notifiers/mqtt/topics/programs").await["topics"]["CREATE"],
        format!("{prefix}programs/create")
    );
    let ven1_id = w.ven1_obj["id"].as_str().unwrap();
    let ven1_events = w
        .ven1
        .ok(&format!("/notifiers/mqtt/topics/vens/{ven1_id}/events"))
        .await;
    let one_ven = w
        .ven1
        .ok(&format!("/notifiers/mqtt/topics/vens/{ven1_id}"))
        .await;
    // No CREATE for one object: it exists already.
    assert!(one_ven["topics"].get("CREATE").is_none());
    assert_eq!(
        one_ven["topics"]["UPDATE"],
        format!("{prefix}vens/{ven1_id}/update")
    );
    // Scoping: the BL-only collections are 403 to a VEN, another VEN's topics 404.
    assert_eq!(
        w.ven1.get("/notifiers/mqtt/topics/events").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        w.ven2
            .get(&format!("/notifiers/mqtt/topics/vens/{ven1_id}/events"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let pid = w.program["id"].as_str().unwrap();
    assert_eq!(
        w.ven1
            .ok(&format!("/notifiers/mqtt/topics/programs/{pid}/events"))
            .await["topics"]["ALL"],
        format!("{prefix}programs/{pid}/events/+")
    );

    // The BL's subscriber listens to every event; VEN1's to its own event topic.
    let (_bl_sub, mut bl_rx) =
        subscriber(&[all_events["topics"]["ALL"].as_str().unwrap().to_string()]).await;
    let (_ven_sub, mut ven_rx) =
        subscriber(&[ven1_events["topics"]["ALL"].as_str().unwrap().to_string()]).await;

    let south =
        w.bl.create(
            "/events",
            event_body(&w.program["id"], "south", Some(&["south"])),
        )
        .await;
    let north =
        w.bl.create(
            "/events",
            event_body(&w.program["id"], "north", Some(&["north"])),
        )
        .await;
    let nid = north["id"].as_str().unwrap();
    let mut changed = event_body(&w.program["id"], "north-2", Some(&["north"]));
    changed["priority"] = json!(1);
    let (s, updated) =
        w.bl.send(Method::PUT, &format!("/events/{nid}"), Some(changed))
            .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        w.bl.send(Method::DELETE, &format!("/events/{nid}"), None)
            .await;
    assert_eq!(s, StatusCode::OK);

    // The BL's subscriber hears all four changes, in order, as notification objects.
    for (op, obj) in [
        ("create", &south),
        ("create", &north),
        ("update", &updated),
        ("delete", &updated),
    ] {
        let (topic, body) = next(&mut bl_rx).await;
        assert_eq!(topic, format!("{prefix}events/{op}"));
        assert_eq!(body["objectType"], "EVENT");
        assert_eq!(body["operation"], op.to_uppercase());
        assert_eq!(body["object"], *obj);
        assert_eq!(body["targets"], obj["targets"]);
    }
    // VEN1 hears of the north event only.
    for op in ["create", "update", "delete"] {
        let (topic, body) = next(&mut ven_rx).await;
        assert_eq!(topic, format!("{prefix}vens/{ven1_id}/events/{op}"));
        assert_eq!(body["object"]["id"], nid);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), ven_rx.recv())
            .await
            .is_err(),
        "VEN1 heard of an event not aimed at it"
    );
    server.stop().await.unwrap();
}
