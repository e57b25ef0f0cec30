//! SunSpec over Modbus TCP against real sockets: the simulator as the device, plus a
//! listener that never answers and the simulator's endless-chain mode as broken devices.

mod common;

use common::TestDb;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard::protocol::sunspec::client::{DEFAULT_MAX_MODELS, Device};
use switchyard::protocol::sunspec::control::{Command, apply};
use switchyard::protocol::sunspec::poller::{
    DeviceSpec, FailureKind, PollEvent, Poller, PollerConfig, record,
};
use switchyard::protocol::sunspec::sim::{ChainMode, MODELS, SimConfig, Simulator};
use switchyard::protocol::sunspec::{ExceptionCode, SunSpecError};
use switchyard::telemetry::status::{OperatingState, StorageState};
use switchyard::telemetry::{self, Measurand};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(3);

async fn sim(cfg: SimConfig) -> SocketAddr {
    Simulator::new(&cfg)
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A TCP listener that accepts connections and never answers a request.
async fn silent() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test]
async fn discovery_walks_the_chain_of_every_unit_behind_one_gateway() {
    let addr = sim(SimConfig::default()).await;
    let mut d = Device::connect(addr, 1, T).await.unwrap();
    let map = d.discover().await.unwrap();
    assert_eq!(map.base, 40000);
    let ids: Vec<u16> = map.models.iter().map(|m| m.id).collect();
    assert_eq!(ids, MODELS.to_vec());
    // The common model follows 'SunS', each model after the previous one's length.
    assert_eq!(map.models[0].address, 40002);
    for w in map.models.windows(2) {
        assert_eq!(w[1].address, w[0].address + 2 + w[0].length);
    }
    // Every model decodes by its definition, the repeating volt-var curves included.
    let all = d.read_all(&map).await.unwrap();
    assert_eq!(all.len(), MODELS.len());
    // Unit 2 on the same connection is its own device.
    d.set_unit(2);
    let map2 = d.discover().await.unwrap();
    let common = d.read_model(&map2.models[0]).await.unwrap().unwrap();
    assert_eq!(
        common.tree["SN"]["value"],
        serde_json::json!("SIM-0002"),
        "{}",
        common.tree
    );
}

#[tokio::test]
async fn decoding_applies_scale_factors_and_leaves_unimplemented_points_absent() {
    let addr = sim(SimConfig::default()).await;
    let mut d = Device::connect(addr, 1, T).await.unwrap();
    let map = d.discover().await.unwrap();
    let inv = *map.find(103).unwrap();
    let m = d.read_model(&inv).await.unwrap().unwrap();
    // Raw registers read independently: the decoded value is raw x 10^sf.
    let (layout, _) = d.read_layout(&inv).await.unwrap();
    let raw = d.read(inv.address, inv.length + 2).await.unwrap();
    for (point, sf) in [("PhVphA", "V_SF"), ("Hz", "Hz_SF")] {
        let v = raw[layout.slot(point).unwrap().offset as usize];
        let e = raw[layout.slot(sf).unwrap().offset as usize] as i16;
        assert!(
            e != 0,
            "{sf} should be a real scale factor in the simulator"
        );
        let decoded = m.number(point).unwrap();
        assert!((decoded - f64::from(v) * 10f64.powi(i32::from(e))).abs() < 1e-6);
    }
    let v = m.number("PhVphA").unwrap();
    assert!((200.0..280.0).contains(&v), "voltage {v} V");
    let hz = m.number("Hz").unwrap();
    assert!((59.9..60.1).contains(&hz), "frequency {hz} Hz");
    assert_eq!(m.point("W").unwrap().unit, Some("W"));
    // Not implemented by the simulator: absent, not zero.
    for p in ["VAr", "PhVphB", "PF", "TmpCab"] {
        assert_eq!(m.point(p).unwrap().value, None, "{p}");
    }
    assert_eq!(m.tree["VAr"]["value"], serde_json::Value::Null);
    // The repeating volt-var curve of 705 is laid out from its counts.
    let vv = d.read_model(map.find(705).unwrap()).await.unwrap().unwrap();
    assert_eq!(vv.number("Crv[0].Pt[3].V"), Some(108.0));
    assert_eq!(
        vv.tree["Crv"][0]["Pt"][3]["Var"]["value"],
        serde_json::json!(-44.0)
    );
    assert_eq!(
        vv.tree["Crv"][0]["Pt"][3]["Var"]["unit"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_power_limit_is_written_to_704_and_read_back_and_lowers_output() {
    let addr = sim(SimConfig::default()).await;
    let mut d = Device::connect(addr, 1, T).await.unwrap();
    let map = d.discover().await.unwrap();
    let applied = apply(&mut d, &map, Command::LimitPct(20.0)).await.unwrap();
    let (lim, read) = &applied.writes[0];
    assert_eq!((lim.model, lim.point), (704, "WMaxLimPct"));
    assert_eq!(*read, 20.0);
    let ctl = d.read_model(map.find(704).unwrap()).await.unwrap().unwrap();
    assert_eq!(ctl.number("WMaxLimPct"), Some(20.0));
    assert_eq!(
        ctl.point("WMaxLimPctEna").unwrap().symbol.as_deref(),
        Some("ENABLED")
    );
    // The simulated inverter honours it: at most 20 % of 5000 W.
    let inv = d.read_model(map.find(103).unwrap()).await.unwrap().unwrap();
    let w = inv.number("W").unwrap();
    assert!(w <= 1000.0 + 10.0, "output {w} W above the limit");
    // Storage and connect controls go to 124 and 123.
    apply(&mut d, &map, Command::ChargeRatePct(50.0))
        .await
        .unwrap();
    let bat = d.read_model(map.find(802).unwrap()).await.unwrap().unwrap();
    assert!(bat.number("W").unwrap() < 0.0, "battery should charge");
    apply(&mut d, &map, Command::Connect(false)).await.unwrap();
    let inv = d.read_model(map.find(701).unwrap()).await.unwrap().unwrap();
    assert_eq!(inv.number("W"), Some(0.0));
    assert_eq!(
        inv.point("ConnSt").unwrap().symbol.as_deref(),
        Some("DISCONNECTED")
    );
}

#[tokio::test]
async fn exceptions_are_refusals_not_link_failures_and_change_nothing() {
    let addr = sim(SimConfig::default()).await;
    // A unit the gateway does not serve.
    let mut d = Device::connect(addr, 9, T).await.unwrap();
    let err = d.discover().await.unwrap_err();
    assert!(err.is_refusal() && !err.is_link_failure(), "{err}");
    assert!(
        matches!(
            err,
            SunSpecError::Refused {
                code: ExceptionCode::GatewayTargetDevice,
                unit: 9,
                ..
            }
        ),
        "{err}"
    );
    // A fixed power beyond the rating: the device refuses it, and the command's earlier
    // writes are undone.
    d.set_unit(1);
    let map = d.discover().await.unwrap();
    let ctl = *map.find(704).unwrap();
    let before = d.read_model(&ctl).await.unwrap().unwrap();
    let err = apply(&mut d, &map, Command::FixedW(1e6)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SunSpecError::Refused {
                code: ExceptionCode::IllegalDataValue,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refused"), "{err}");
    let after = d.read_model(&ctl).await.unwrap().unwrap();
    assert_eq!(before.point("WSetMod"), after.point("WSetMod"));
    assert_eq!(after.number("WSet"), before.number("WSet"));
    assert_eq!(
        after.point("WSetEna").unwrap().symbol.as_deref(),
        Some("DISABLED")
    );
    // A read-only register: refused with illegal data address.
    let inv = *map.find(103).unwrap();
    let err = d.write(inv.address + 2, &[1]).await.unwrap_err();
    assert!(
        matches!(
            err,
            SunSpecError::Refused {
                code: ExceptionCode::IllegalDataAddress,
                ..
            }
        ),
        "{err}"
    );
    // The connection still works after refusals.
    assert!(d.read_model(&inv).await.unwrap().is_some());
}

#[tokio::test]
async fn a_device_that_never_answers_times_out_as_a_link_failure() {
    let addr = silent().await;
    let mut d = Device::connect(addr, 1, Duration::from_millis(300))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = d.discover().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, SunSpecError::Timeout { .. }), "{err}");
    assert!(err.is_link_failure() && !err.is_refusal());
    // Nothing listening: a link failure too.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let err = Device::connect(closed, 1, T).await.unwrap_err();
    assert!(matches!(err, SunSpecError::Link { .. }), "{err}");
}

#[tokio::test]
async fn a_chain_that_never_ends_is_an_error_not_a_hang() {
    let addr = sim(SimConfig {
        chain: ChainMode::Endless,
        ..SimConfig::default()
    })
    .await;
    let mut d = Device::connect(addr, 1, T).await.unwrap();
    let err = d.discover().await.unwrap_err();
    match &err {
        SunSpecError::EndlessChain { limit, base, .. } => {
            assert_eq!((*limit, *base), (DEFAULT_MAX_MODELS, 40000));
        }
        other => panic!("expected an endless chain error, got {other}"),
    }
    assert!(err.to_string().contains("no end marker"), "{err}");
    d.set_max_models(20);
    let err = d.discover().await.unwrap_err();
    assert!(
        matches!(err, SunSpecError::EndlessChain { limit: 20, .. }),
        "{err}"
    );
    // Without a model bound the walk still stops, at the end of the register space.
    d.set_max_models(usize::MAX);
    let err = d.discover().await.unwrap_err();
    assert!(matches!(err, SunSpecError::ChainOverflow { .. }), "{err}");
    assert!(err.to_string().contains("past register 65535"), "{err}");
}

async fn poller_feeds_telemetry_and_keeps_running_past_failures(db: TestDb) {
    let addr = sim(SimConfig::default()).await;
    let dead = silent().await;
    let spec = |id: &str, gateway, unit| DeviceSpec {
        source_id: id.to_string(),
        gateway,
        unit,
        interval: Duration::from_millis(150),
        jitter: Duration::from_millis(20),
        timeout: Duration::from_millis(250),
    };
    let devices = vec![
        spec("inv-1", addr, 1),
        spec("inv-2", addr, 2),
        spec("inv-9", addr, 9),
        spec("dead", dead, 1),
    ];
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let (store_tx, store_rx) = tokio::sync::mpsc::channel(64);
    let store = db.store.clone();
    let recorder = tokio::spawn(async move { record(&store, store_rx).await });
    // Two connections for two gateways: the dead one cannot starve the live one.
    let poller = Poller::start(
        PollerConfig {
            max_connections: 2,
            max_backoff: Duration::from_secs(1),
        },
        devices,
        tx,
    );
    let (mut ok1, mut ok2, mut refused9, mut dead_retries) = (0, 0, 0, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (ok1 < 3 || ok2 < 3 || refused9 < 2 || dead_retries.len() < 3)
        && tokio::time::Instant::now() < deadline
    {
        let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await else {
            break;
        };
        match &e {
            PollEvent::Polled {
                source_id,
                readings,
                status,
                ..
            } => {
                assert!(
                    readings
                        .iter()
                        .any(|r| r.measurand == Measurand::ActivePower && r.value < 0.0),
                    "generation is negative in the site convention: {readings:?}"
                );
                assert!(
                    readings
                        .iter()
                        .any(|r| r.measurand == Measurand::StateOfCharge)
                );
                // The simulator does not implement TotWhAbs: no reading, never a zero stand-in.
                assert!(
                    !readings
                        .iter()
                        .any(|r| r.measurand == Measurand::EnergyImported)
                );
                assert_eq!(status.connected, Some(true));
                match source_id.as_str() {
                    "inv-1" => ok1 += 1,
                    "inv-2" => ok2 += 1,
                    other => panic!("{other} should not poll successfully"),
                }
            }
            PollEvent::Failed {
                source_id,
                kind,
                retry_in,
                ..
            } => match source_id.as_str() {
                "inv-9" => {
                    assert_eq!(*kind, FailureKind::Refused);
                    refused9 += 1;
                }
                "dead" => {
                    assert_eq!(*kind, FailureKind::Link);
                    dead_retries.push(*retry_in);
                }
                other => panic!("{other} failed: {e:?}"),
            },
        }
        store_tx.send(e).await.unwrap();
    }
    poller.stop().await;
    drop(store_tx);
    let stored = recorder.await.unwrap();
    assert!(ok1 >= 3 && ok2 >= 3, "polls: unit 1 {ok1}, unit 2 {ok2}");
    assert!(refused9 >= 2, "unit 9 refusals: {refused9}");
    assert!(
        dead_retries.len() >= 3,
        "dead link retries: {dead_retries:?}"
    );
    // Exponential backoff up to the ceiling.
    assert_eq!(dead_retries[0], Duration::from_millis(300));
    assert_eq!(dead_retries[1], Duration::from_millis(600));
    assert_eq!(dead_retries[2], Duration::from_secs(1));
    assert!(stored >= 6, "stored {stored} readings");
    let now = switchyard::domain::now_epoch();
    let rows = telemetry::query(&db.store, "inv-1", Some(Measurand::Voltage), 0, now + 10)
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| (200.0..280.0).contains(&r.value)),
        "{rows:?}"
    );
    // The status of each poll is stored beside the measurements, as state codes.
    let states = |m| telemetry::query(&db.store, "inv-1", Some(m), 0, now + 10);
    let connected = states(Measurand::GridConnected).await.unwrap();
    assert!(!connected.is_empty());
    assert!(connected.iter().all(|r| r.value == 1.0), "{connected:?}");
    let operating = states(Measurand::OperatingState).await.unwrap();
    assert!(!operating.is_empty());
    assert!(
        operating
            .iter()
            .all(|r| [OperatingState::Running, OperatingState::Throttled]
                .map(OperatingState::code)
                .contains(&r.value)),
        "{operating:?}"
    );
    let storage = states(Measurand::StorageState).await.unwrap();
    assert!(
        !storage.is_empty()
            && storage
                .iter()
                .all(|r| StorageState::from_code(r.value).is_some()),
        "{storage:?}"
    );
}

on_both_backends!(
    poller_feeds_telemetry_and_keeps_running_past_failures,
    serve_polls_configured_devices_into_telemetry,
);

#[tokio::test]
async fn one_connection_is_shared_in_turn_between_two_gateways() {
    let a = sim(SimConfig::default()).await;
    let b = sim(SimConfig {
        seed: 5,
        ..SimConfig::default()
    })
    .await;
    let spec = |id: &str, gateway| DeviceSpec {
        source_id: id.to_string(),
        gateway,
        unit: 1,
        interval: Duration::from_millis(50),
        jitter: Duration::ZERO,
        timeout: T,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let poller = Poller::start(
        PollerConfig {
            max_connections: 1,
            max_backoff: Duration::from_secs(1),
        },
        vec![spec("a", a), spec("b", b)],
        tx,
    );
    let (mut na, mut nb) = (0, 0);
    while na < 3 || nb < 3 {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("both gateways keep being polled")
            .unwrap();
        match e {
            PollEvent::Polled { source_id, .. } if source_id == "a" => na += 1,
            PollEvent::Polled { .. } => nb += 1,
            PollEvent::Failed { error, .. } => panic!("{error}"),
        }
    }
    poller.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Kills the child process when dropped, so a failed assertion leaves no simulator behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

#[test]
fn the_cli_reads_json_keyed_by_model_and_point_and_writes_a_verified_limit() {
    use std::io::{BufRead, BufReader};
    let mut sim = Child(
        std::process::Command::new(BIN)
            .args(["sim", "sunspec", "--listen", "127.0.0.1:0", "--seed", "9"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(sim.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let out = run(&["sunspec", "read", &addr, "--unit", "2", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(ids.len(), MODELS.len(), "{ids:?}");
    assert_eq!(json["1"]["SN"]["value"], "SIM-0002");
    assert_eq!(json["103"]["W"]["unit"], "W");
    assert!(json["103"]["W"]["value"].as_f64().unwrap() > 0.0);
    assert!(
        json["103"]["VAr"]["value"].is_null(),
        "not implemented reads as null"
    );
    assert_eq!(json["103"]["St"]["symbol"], "MPPT");
    assert_eq!(json["802"]["SoC"]["unit"], "%");
    assert_eq!(json["704"]["WMaxLimPctRvrtTms"]["unit"], "s");

    let out = run(&["sunspec", "write", &addr, "--limit-pct", "25"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified"));
    let out = run(&["sunspec", "read", &addr, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["704"]["WMaxLimPct"]["value"], 25.0);
    assert_eq!(json["704"]["WMaxLimPctEna"]["symbol"], "ENABLED");

    // A limit above 100 % is refused before anything is sent; the limit in force stays.
    let out = run(&["sunspec", "write", &addr, "--limit-pct", "130"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("between 0 and 100"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["sunspec", "read", &addr, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["704"]["WMaxLimPct"]["value"], 25.0);
    // A unit the gateway does not serve: the device's refusal, named as such.
    let out = run(&["sunspec", "read", &addr, "--unit", "7"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && err.contains("unit 7"), "{err}");
}

/// `switchyard serve` with a `[sunspec]` section polls the configured device and its
/// readings reach the telemetry store; a second, dead device does not stop that.
async fn serve_polls_configured_devices_into_telemetry(db: TestDb) {
    use switchyard::protocol::sunspec::config::{SunSpecConfig, SunSpecDevice};
    let live = sim(SimConfig::default()).await;
    let dead = silent().await;
    let device = |source_id: &str, address: SocketAddr| SunSpecDevice {
        source_id: source_id.into(),
        address,
        unit: 1,
        interval_seconds: 1,
        jitter_ms: 0,
        timeout_ms: 500,
    };
    let section = SunSpecConfig {
        enabled: true,
        devices: vec![device("served-inverter", live), device("served-dead", dead)],
        ..SunSpecConfig::default()
    };
    let (server, _) = common::start_server_with(&db, 64 * 1024, move |c| c.sunspec = section).await;
    let now = switchyard::domain::now_epoch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let stored = loop {
        let r = telemetry::query(&db.store, "served-inverter", None, now - 5, now + 60)
            .await
            .unwrap();
        if r.iter().any(|r| r.measurand == Measurand::ActivePower) {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SunSpec reading stored by the server within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(stored.iter().all(|r| r.value.is_finite()));
    assert!(
        telemetry::query(&db.store, "served-dead", None, now - 5, now + 60)
            .await
            .unwrap()
            .is_empty()
    );
    server.stop().await.unwrap();
}
