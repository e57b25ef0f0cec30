//! Decoded SunSpec models to the engine's telemetry readings (and a status summary).
//!
//! The IEEE 1547 measurement model 701 is preferred to the legacy inverter models
//! 101/102/103; state of charge comes from 802, else 713, else 124. Signs follow the
//! telemetry convention (positive into the site): SunSpec reports generation as positive,
//! so active and reactive power are negated. A point the device does not implement yields
//! no reading at all, never a zero.
//!
//! The status symbols (`InvSt` of 701 or `St` of 101-103, `ConnSt` of 701, `ChaSt` of 802
//! or 124) become readings of the telemetry state measurands, so a device's status history
//! is stored beside its measurements; `MPPT` is the engine's `running`.

use super::decode::DecodedModel;
use crate::domain::EpochSeconds;
use crate::telemetry::status::{self, OperatingState, StorageState};
use crate::telemetry::{Measurand, Quality, Reading, SourceKind};
use serde::Serialize;

/// The models readings and status are taken from; a poll reads only these.
pub const MEASURED_MODELS: [u16; 7] = [701, 101, 102, 103, 802, 713, 124];

/// The device's state as the poll saw it, in SunSpec's own symbols (the readings carry the
/// engine's state codes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// The operating state symbol (`MPPT`, `THROTTLED`, `RUNNING`, ...), null when the
    /// device does not report one.
    pub operating_state: Option<String>,
    /// Whether the device reports itself connected to the grid.
    pub connected: Option<bool>,
    /// The battery's charge status symbol (`CHARGING`, `HOLDING`, ...).
    pub charge_status: Option<String>,
}

fn find(models: &[DecodedModel], ids: &[u16]) -> Option<usize> {
    ids.iter()
        .find_map(|id| models.iter().position(|m| m.id == *id))
}

/// The readings of one poll of `source_id` at `instant`.
pub fn normalize(models: &[DecodedModel], source_id: &str, instant: EpochSeconds) -> Vec<Reading> {
    let mut out = Vec::new();
    let mut push = |measurand, value: Option<f64>| {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            out.push(Reading {
                source_id: source_id.to_string(),
                source_kind: SourceKind::SunSpec,
                measurand,
                instant,
                value,
                quality: Quality::Measured,
            });
        }
    };
    if let Some(i) = find(models, &[701]) {
        let m = &models[i];
        push(Measurand::ActivePower, m.number("W").map(|w| -w));
        push(Measurand::ReactivePower, m.number("Var").map(|v| -v));
        push(Measurand::Voltage, m.number("LNV"));
        push(Measurand::Frequency, m.number("Hz"));
        push(Measurand::EnergyExported, m.number("TotWhInj"));
        push(Measurand::EnergyImported, m.number("TotWhAbs"));
    } else if let Some(i) = find(models, &[103, 102, 101]) {
        let m = &models[i];
        push(Measurand::ActivePower, m.number("W").map(|w| -w));
        push(Measurand::ReactivePower, m.number("VAr").map(|v| -v));
        push(Measurand::Voltage, m.number("PhVphA"));
        push(Measurand::Frequency, m.number("Hz"));
        push(Measurand::EnergyExported, m.number("WH"));
    }
    if let Some(i) = find(models, &[802, 713]) {
        push(Measurand::StateOfCharge, models[i].number("SoC"));
    } else if let Some(i) = find(models, &[124]) {
        push(Measurand::StateOfCharge, models[i].number("ChaState"));
    }
    let s = status(models);
    push(
        Measurand::OperatingState,
        s.operating_state
            .as_deref()
            .and_then(operating_state)
            .map(OperatingState::code),
    );
    push(
        Measurand::GridConnected,
        s.connected.map(status::connected_code),
    );
    push(
        Measurand::StorageState,
        s.charge_status
            .as_deref()
            .and_then(storage_state)
            .map(StorageState::code),
    );
    out
}

/// The engine's operating state for an `InvSt` (701) or `St` (101-103) symbol.
pub fn operating_state(symbol: &str) -> Option<OperatingState> {
    match symbol {
        // 103 names the normal state after what a PV inverter does in it; 701 says RUNNING.
        "MPPT" | "RUNNING" => Some(OperatingState::Running),
        other => other.to_ascii_lowercase().parse().ok(),
    }
}

/// The engine's storage state for a `ChaSt` (124, 802) symbol.
pub fn storage_state(symbol: &str) -> Option<StorageState> {
    symbol.to_ascii_lowercase().parse().ok()
}

/// The status summary of one poll.
pub fn status(models: &[DecodedModel]) -> DeviceStatus {
    let symbol = |m: &DecodedModel, p: &str| m.point(p).and_then(|p| p.symbol.clone());
    let mut s = DeviceStatus::default();
    if let Some(i) = find(models, &[701]) {
        s.operating_state = symbol(&models[i], "InvSt");
        s.connected = models[i].number("ConnSt").map(|c| c == 1.0);
    }
    if s.operating_state.is_none()
        && let Some(i) = find(models, &[103, 102, 101])
    {
        s.operating_state = symbol(&models[i], "St");
    }
    if let Some(i) = find(models, &[802, 124]) {
        s.charge_status = symbol(&models[i], "ChaSt");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::decode::decode_model;
    use super::super::layout::ModelLayout;
    use super::super::model::definition;
    use super::*;

    /// Model `id` with every point "not implemented" except those given as
    /// (point, raw register).
    fn model(id: u16, set: &[(&str, u16)]) -> DecodedModel {
        let l = ModelLayout::natural(definition(id).unwrap(), &|_| 0).unwrap();
        let mut regs = Vec::new();
        for s in l.slots() {
            regs.extend(super::super::decode::not_implemented(s.def));
        }
        for (p, v) in set {
            regs[l.slot(p).unwrap().offset as usize] = *v;
        }
        decode_model(&l, 40002, &regs)
    }

    #[test]
    fn generation_is_negative_and_absent_points_give_no_reading() {
        let inv = model(103, &[("W", 1500), ("W_SF", 0), ("St", 5)]);
        let r = normalize(std::slice::from_ref(&inv), "inv", 1_750_000_000);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].measurand, Measurand::ActivePower);
        assert_eq!(r[0].value, -1500.0);
        assert_eq!(r[0].source_kind, SourceKind::SunSpec);
        assert_eq!(r[1].measurand, Measurand::OperatingState);
        assert_eq!(r[1].value, OperatingState::Throttled.code());
        assert_eq!(status(&[inv]).operating_state.as_deref(), Some("THROTTLED"));
    }

    #[test]
    fn the_1547_models_win_over_the_legacy_ones() {
        let legacy = model(103, &[("W", 100), ("W_SF", 0)]);
        let der = model(701, &[("W", 200), ("W_SF", 0), ("ConnSt", 1)]);
        let storage = model(124, &[("ChaState", 500), ("ChaState_SF", 0xFFFF)]);
        let battery = model(802, &[("SoC", 423), ("SoC_SF", 0xFFFF)]);
        let models = [legacy, der, storage, battery];
        let r = normalize(&models, "inv", 1_750_000_000);
        let w: Vec<f64> = r
            .iter()
            .filter(|r| r.measurand == Measurand::ActivePower)
            .map(|r| r.value)
            .collect();
        assert_eq!(w, vec![-200.0]);
        let soc: Vec<f64> = r
            .iter()
            .filter(|r| r.measurand == Measurand::StateOfCharge)
            .map(|r| r.value)
            .collect();
        assert_eq!(soc, vec![42.3]);
        assert_eq!(status(&models).connected, Some(true));
        let state = |m: Measurand| r.iter().find(|r| r.measurand == m).map(|r| r.value);
        assert_eq!(state(Measurand::GridConnected), Some(1.0));
        // 701 InvSt is "not implemented" here (0xFFFF), so no operating state at all; the
        // legacy model's St is not consulted for it either (it is not implemented there).
        assert_eq!(state(Measurand::OperatingState), None);
    }

    #[test]
    fn every_status_symbol_maps_to_an_engine_state() {
        for id in [701u16, 101, 102, 103, 124, 802] {
            let def = definition(id).unwrap();
            let mut points = Vec::new();
            let mut stack = vec![&def.group];
            while let Some(g) = stack.pop() {
                points.extend(g.points.iter());
                stack.extend(g.groups.iter());
            }
            for p in points {
                let map: fn(&str) -> bool = match p.name.as_str() {
                    "InvSt" => |s| operating_state(s).is_some(),
                    "St" if id != 701 => |s| operating_state(s).is_some(),
                    "ChaSt" => |s| storage_state(s).is_some(),
                    _ => continue,
                };
                for sym in &p.symbols {
                    assert!(map(&sym.name), "model {id} {} symbol {}", p.name, sym.name);
                }
            }
        }
        assert_eq!(operating_state("MPPT"), Some(OperatingState::Running));
        assert_eq!(
            operating_state("SHUTTING_DOWN"),
            Some(OperatingState::ShuttingDown)
        );
        assert_eq!(storage_state("HOLDING"), Some(StorageState::Holding));
        assert_eq!(operating_state("WARP"), None);
    }
}
