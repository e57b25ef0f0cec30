//! DERStatus (`/edev/{id}/der/1/ders`): the document a device PUTs about its own state,
//! stored as written and, in the same transaction, as telemetry readings, so that a 2030.5
//! inverter's fault shows in the same status history as a SunSpec or MQTT one.
//!
//! Each status element carries its own `dateTime`, which becomes the reading's instant:
//! `inverterStatus` is the engine's operating state, bit 0 of `genConnectStatus` (else of
//! `storConnectStatus`) grid connection, `storageModeStatus` the storage state and
//! `stateOfChargeStatus` (hundredths of a percent) state of charge. Codes with no engine
//! state (0 N/A, 9 test mode, 10 manufacturer-defined, reserved values) and elements the
//! telemetry module would refuse (stamped before 2000 or a day ahead) give no reading; the
//! document is still stored and served back as it was written.

use super::model::{ConnectStatus, DerStatus};
use super::records::{DerResource, EndDeviceRecord};
use super::server::{Result, Sep2State, get_der_info, put_der_info};
use super::tls::PeerIdentity;
use crate::domain::EpochSeconds;
use crate::telemetry::status::{self, OperatingState, StorageState};
use crate::telemetry::{Measurand, Quality, Reading, SourceKind};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

/// The engine's operating state for an `inverterStatus` code.
pub fn operating_state(code: u8) -> Option<OperatingState> {
    Some(match code {
        1 => OperatingState::Off,
        2 => OperatingState::Sleeping,
        3 => OperatingState::Starting,
        // "tracking MPPT power point": operating normally.
        4 => OperatingState::Running,
        // "forced power reduction/derating".
        5 => OperatingState::Throttled,
        6 => OperatingState::ShuttingDown,
        7 => OperatingState::Fault,
        8 => OperatingState::Standby,
        _ => return None,
    })
}

/// The engine's storage state for a `storageModeStatus` code.
pub fn storage_state(code: u8) -> Option<StorageState> {
    Some(match code {
        0 => StorageState::Charging,
        1 => StorageState::Discharging,
        2 => StorageState::Holding,
        _ => return None,
    })
}

/// Bit 0 ("connected") of a ConnectStatus bitmap; `None` when it is not HexBinary8.
fn connected(c: &ConnectStatus) -> Option<bool> {
    hex8(&c.value).map(|bits| bits & 1 == 1)
}

/// A HexBinary8 value: one or two hex digits.
fn hex8(v: &str) -> Option<u8> {
    let v = v.trim();
    (1..=2)
        .contains(&v.len())
        .then(|| u8::from_str_radix(v, 16).ok())
        .flatten()
}

/// What the schema's types say that serde's strings do not: the connect statuses are
/// HexBinary8 bitmaps.
pub fn check(s: &DerStatus) -> std::result::Result<(), String> {
    for (name, c) in [
        ("genConnectStatus", &s.gen_connect_status),
        ("storConnectStatus", &s.stor_connect_status),
    ] {
        if let Some(c) = c
            && hex8(&c.value).is_none()
        {
            return Err(format!(
                "{name} value '{}' is not HexBinary8 (one or two hex digits)",
                c.value
            ));
        }
    }
    Ok(())
}

/// The telemetry readings of a DERStatus for `source_id`, each at its own `dateTime`;
/// readings the telemetry module would refuse at `now` are left out.
pub fn readings(s: &DerStatus, source_id: &str, now: EpochSeconds) -> Vec<Reading> {
    let mut out = Vec::new();
    let mut push = |measurand, instant: i64, value: Option<f64>| {
        if let Some(value) = value {
            let r = Reading {
                source_id: source_id.to_string(),
                source_kind: SourceKind::Sep2Der,
                measurand,
                instant,
                value,
                quality: Quality::Measured,
            };
            if r.validate(now).is_ok() {
                out.push(r);
            }
        }
    };
    if let Some(c) = &s.inverter_status {
        let state = operating_state(c.value).map(OperatingState::code);
        push(Measurand::OperatingState, c.date_time, state);
    }
    if let Some(c) = s
        .gen_connect_status
        .as_ref()
        .or(s.stor_connect_status.as_ref())
    {
        let value = connected(c).map(status::connected_code);
        push(Measurand::GridConnected, c.date_time, value);
    }
    if let Some(c) = &s.storage_mode_status {
        let state = storage_state(c.value).map(StorageState::code);
        push(Measurand::StorageState, c.date_time, state);
    }
    if let Some(c) = &s.state_of_charge_status {
        let pct = f64::from(c.value) / 100.0;
        push(
            Measurand::StateOfCharge,
            c.date_time,
            Some(pct).filter(|p| *p <= 100.0),
        );
    }
    out
}

/// GET: the DERStatus as the device last wrote it.
pub(super) async fn get_ders(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response> {
    get_der_info(state, peer, id, DerResource::Status).await
}

/// PUT: stores the document and its readings together.
pub(super) async fn put_ders(
    State(state): State<Sep2State>,
    Extension(peer): Extension<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    put_der_info::<DerStatus>(
        state,
        peer,
        id,
        DerResource::Status,
        headers,
        body,
        status_readings,
    )
    .await
}

/// The readings' source is the DER the EndDevice is linked to in the registry (every
/// ingest keys device telemetry by DER id), else the EndDevice itself.
fn status_readings(
    doc: &DerStatus,
    ed: &EndDeviceRecord,
    now: EpochSeconds,
) -> std::result::Result<Vec<Reading>, String> {
    check(doc)?;
    Ok(readings(doc, ed.der_id.as_deref().unwrap_or(&ed.id), now))
}

#[cfg(test)]
mod tests {
    use super::super::model::{CodeStatus, StateOfChargeStatus};
    use super::*;

    const NOW: EpochSeconds = 1_750_000_000;

    fn code(value: u8) -> Option<CodeStatus> {
        Some(CodeStatus {
            date_time: NOW - 60,
            value,
        })
    }

    #[test]
    fn each_status_element_becomes_a_reading_at_its_own_time() {
        let s = DerStatus {
            inverter_status: code(7),
            gen_connect_status: Some(ConnectStatus {
                date_time: NOW - 30,
                value: "05".into(),
            }),
            storage_mode_status: code(1),
            state_of_charge_status: Some(StateOfChargeStatus {
                date_time: NOW - 10,
                value: 4250,
            }),
            reading_time: NOW,
            ..DerStatus::default()
        };
        let got: Vec<(Measurand, i64, f64)> = readings(&s, "der-1", NOW)
            .iter()
            .map(|r| (r.measurand, r.instant, r.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Measurand::OperatingState,
                    NOW - 60,
                    OperatingState::Fault.code()
                ),
                (Measurand::GridConnected, NOW - 30, 1.0),
                (
                    Measurand::StorageState,
                    NOW - 60,
                    StorageState::Discharging.code()
                ),
                (Measurand::StateOfCharge, NOW - 10, 42.5),
            ]
        );
    }

    #[test]
    fn codes_without_an_engine_state_and_impossible_times_give_nothing() {
        for c in [0u8, 9, 10, 11, 255] {
            assert_eq!(operating_state(c), None, "{c}");
        }
        assert_eq!(storage_state(3), None);
        assert_eq!(hex8("1F"), Some(31));
        assert_eq!(hex8("100"), None);
        assert_eq!(hex8("zz"), None);
        let s = DerStatus {
            // Test mode: no engine state.
            inverter_status: code(9),
            // Bit 0 clear: available but not connected.
            stor_connect_status: Some(ConnectStatus {
                date_time: NOW,
                value: "02".into(),
            }),
            // Stamped 1970: a device without a clock.
            storage_mode_status: Some(CodeStatus {
                date_time: 5,
                value: 0,
            }),
            reading_time: NOW,
            ..DerStatus::default()
        };
        let got: Vec<(Measurand, f64)> = readings(&s, "ed-1", NOW)
            .iter()
            .map(|r| (r.measurand, r.value))
            .collect();
        assert_eq!(got, vec![(Measurand::GridConnected, 0.0)]);
    }
}
