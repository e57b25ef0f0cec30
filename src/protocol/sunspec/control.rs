//! Engine commands as SunSpec register writes: pick the model the device has (IEEE 1547
//! model 704 before the legacy 123 for power, 124 for storage rates, 123 or 802 for
//! connect/disconnect), scale each value by the device's own scale factor, write, then
//! read the model back and compare register for register.
//!
//! A command whose later write is refused has its earlier writes restored, so a refusal
//! leaves the device as it was (as far as the device lets us).

use super::SunSpecError;
use super::client::{Device, DeviceMap};
use super::decode::{decode_point, encode_point};
use super::layout::Slot;
use crate::envelope::model::ControlModes;

/// What the engine asks a device to do. Powers follow the engine's convention: positive is
/// power flowing out of the device to the grid (generation, discharge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Limit active power output to this percent (0-100) of the device's maximum.
    LimitPct(f64),
    /// Hold active power at this many W.
    FixedW(f64),
    /// Charge the battery at this percent (0-100) of its maximum charge rate.
    ChargeRatePct(f64),
    /// Discharge the battery at this percent (0-100) of its maximum rate.
    DischargeRatePct(f64),
    /// Connect to (true) or disconnect from (false) the grid.
    Connect(bool),
    /// End the power limit and the fixed set point (the device returns to its default).
    Release,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::LimitPct(p) => write!(f, "limit output to {p} %"),
            Command::FixedW(w) => write!(f, "set active power to {w} W"),
            Command::ChargeRatePct(p) => write!(f, "charge at {p} %"),
            Command::DischargeRatePct(p) => write!(f, "discharge at {p} %"),
            Command::Connect(true) => f.write_str("connect"),
            Command::Connect(false) => f.write_str("disconnect"),
            Command::Release => f.write_str("release power controls"),
        }
    }
}

impl Command {
    /// Checks the argument before anything is sent.
    pub fn validate(&self) -> Result<(), SunSpecError> {
        let pct = |p: f64, what: &str| {
            if p.is_finite() && (0.0..=100.0).contains(&p) {
                Ok(())
            } else {
                Err(SunSpecError::InvalidCommand(format!(
                    "{what} must be between 0 and 100 %, got {p}"
                )))
            }
        };
        match *self {
            Command::LimitPct(p) => pct(p, "a power limit"),
            Command::ChargeRatePct(p) => pct(p, "a charge rate"),
            Command::DischargeRatePct(p) => pct(p, "a discharge rate"),
            Command::FixedW(w) if !w.is_finite() => Err(SunSpecError::InvalidCommand(format!(
                "a fixed power must be a finite number of W, got {w}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The commands that carry a set of engine control modes to a SunSpec device of rated
/// power `rated_w` (the engine expresses limits in W; SunSpec's limit is a percentage).
pub fn commands_for(modes: &ControlModes, rated_w: f64) -> Vec<Command> {
    let mut out = Vec::new();
    if let Some(c) = modes.connect {
        out.push(Command::Connect(c));
    }
    if let Some(w) = modes.max_lim_w.or(modes.gen_lim_w)
        && rated_w > 0.0
    {
        out.push(Command::LimitPct((w / rated_w * 100.0).clamp(0.0, 100.0)));
    }
    if let Some(w) = modes.fixed_w.or(modes.storage_target_w) {
        out.push(Command::FixedW(w));
    }
    out
}

/// One register write of a plan: a point of a model and its value in SI units.
#[derive(Debug, Clone, PartialEq)]
pub struct PointWrite {
    pub model: u16,
    pub point: &'static str,
    pub value: f64,
}

/// The writes that carry `command` to a device with `map`, in the order to send them
/// (values before the switch that enables them).
pub fn plan(
    map: &DeviceMap,
    command: Command,
    device: (std::net::SocketAddr, u8),
) -> Result<Vec<PointWrite>, SunSpecError> {
    command.validate()?;
    let has = |id| map.find(id).is_some();
    let w = |model, point, value| PointWrite {
        model,
        point,
        value,
    };
    let unsupported = |needs: Vec<u16>| SunSpecError::Unsupported {
        addr: device.0,
        unit: device.1,
        command: command.to_string(),
        needs,
    };
    Ok(match command {
        Command::LimitPct(p) if has(704) => {
            vec![w(704, "WMaxLimPct", p), w(704, "WMaxLimPctEna", 1.0)]
        }
        Command::LimitPct(p) if has(123) => {
            vec![w(123, "WMaxLimPct", p), w(123, "WMaxLim_Ena", 1.0)]
        }
        Command::LimitPct(_) => return Err(unsupported(vec![704, 123])),
        Command::FixedW(v) if has(704) => vec![
            w(704, "WSetMod", 1.0),
            w(704, "WSet", v),
            w(704, "WSetEna", 1.0),
        ],
        Command::FixedW(_) => return Err(unsupported(vec![704])),
        Command::ChargeRatePct(p) if has(124) => {
            vec![w(124, "InWRte", p), w(124, "StorCtl_Mod", 1.0)]
        }
        Command::DischargeRatePct(p) if has(124) => {
            vec![w(124, "OutWRte", p), w(124, "StorCtl_Mod", 2.0)]
        }
        Command::ChargeRatePct(_) | Command::DischargeRatePct(_) => {
            return Err(unsupported(vec![124]));
        }
        Command::Connect(c) if has(123) => vec![w(123, "Conn", if c { 1.0 } else { 0.0 })],
        Command::Connect(c) if has(802) => vec![w(802, "SetOp", if c { 1.0 } else { 2.0 })],
        Command::Connect(_) => return Err(unsupported(vec![123, 802])),
        Command::Release if has(704) => vec![w(704, "WMaxLimPctEna", 0.0), w(704, "WSetEna", 0.0)],
        Command::Release if has(123) => vec![w(123, "WMaxLim_Ena", 0.0)],
        Command::Release => return Err(unsupported(vec![704, 123])),
    })
}

/// What a verified command did: each point written, with the value read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub writes: Vec<(PointWrite, f64)>,
}

/// Sends `command` to the device and verifies it by reading back every point written.
/// A refused or failed write restores the points already written in this command.
pub async fn apply(
    device: &mut Device,
    map: &DeviceMap,
    command: Command,
) -> Result<Applied, SunSpecError> {
    let writes = plan(map, command, (device.addr(), device.unit()))?;
    // Encode everything before the first write, so a value the point cannot hold changes
    // nothing.
    let mut encoded: Vec<(u16, Slot, Vec<u16>, Vec<u16>)> = Vec::new();
    for pw in &writes {
        let entry = *map.find(pw.model).expect("planned models are in the map");
        let (layout, regs) = device.read_layout(&entry).await?;
        let slot = layout
            .slot(pw.point)
            .cloned()
            .ok_or_else(|| SunSpecError::Unsupported {
                addr: device.addr(),
                unit: device.unit(),
                command: format!("{command} (point {} missing)", pw.point),
                needs: vec![pw.model],
            })?;
        let words = encode_point(&regs, &slot, pw.value)?;
        let start = slot.offset as usize;
        let before = regs[start..start + slot.def.size as usize].to_vec();
        encoded.push((entry.address.wrapping_add(slot.offset), slot, words, before));
    }
    for (i, (address, _, words, _)) in encoded.iter().enumerate() {
        if let Err(e) = device.write(*address, words).await {
            if e.is_refusal() {
                for (a, _, _, before) in encoded[..i].iter().rev() {
                    // Best effort: the refusal is the error to report.
                    let _ = device.write(*a, before).await;
                }
            }
            return Err(e);
        }
    }
    let mut applied = Vec::with_capacity(writes.len());
    for (pw, (_, slot, words, _)) in writes.into_iter().zip(&encoded) {
        let entry = *map.find(pw.model).expect("planned models are in the map");
        let (_, regs) = device.read_layout(&entry).await?;
        let start = slot.offset as usize;
        let now = &regs[start..start + slot.def.size as usize];
        let read = decode_point(&regs, slot).value.and_then(|v| v.as_f64());
        if now != words.as_slice() {
            return Err(SunSpecError::NotApplied {
                addr: device.addr(),
                unit: device.unit(),
                model: pw.model,
                point: pw.point.to_string(),
                wrote: pw.value.to_string(),
                read: read.map_or("not implemented".into(), |v| v.to_string()),
            });
        }
        applied.push((pw, read.unwrap_or(f64::NAN)));
    }
    Ok(Applied { writes: applied })
}

#[cfg(test)]
mod tests {
    use super::super::client::ModelEntry;
    use super::*;

    fn map(ids: &[u16]) -> DeviceMap {
        DeviceMap {
            base: 40000,
            models: ids
                .iter()
                .map(|id| ModelEntry {
                    id: *id,
                    address: 0,
                    length: 0,
                })
                .collect(),
        }
    }

    const DEV: (std::net::SocketAddr, u8) = (
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 502),
        1,
    );

    #[test]
    fn the_1547_model_is_preferred_and_the_legacy_one_used_otherwise() {
        let p = plan(&map(&[1, 123, 704]), Command::LimitPct(40.0), DEV).unwrap();
        assert_eq!(p[0].model, 704);
        assert_eq!(p.last().unwrap().point, "WMaxLimPctEna");
        let p = plan(&map(&[1, 103, 123]), Command::LimitPct(40.0), DEV).unwrap();
        assert_eq!((p[0].model, p[0].point), (123, "WMaxLimPct"));
        let p = plan(&map(&[1, 802]), Command::Connect(false), DEV).unwrap();
        assert_eq!((p[0].model, p[0].point, p[0].value), (802, "SetOp", 2.0));
    }

    #[test]
    fn commands_a_device_cannot_take_or_that_make_no_sense_are_refused() {
        let err = plan(&map(&[1, 103]), Command::ChargeRatePct(10.0), DEV).unwrap_err();
        assert!(err.to_string().contains("[124]"), "{err}");
        for c in [
            Command::LimitPct(101.0),
            Command::LimitPct(f64::NAN),
            Command::DischargeRatePct(-1.0),
            Command::FixedW(f64::INFINITY),
        ] {
            let err = plan(&map(&[704, 124]), c, DEV).unwrap_err();
            assert!(matches!(err, SunSpecError::InvalidCommand(_)), "{err}");
        }
    }

    #[test]
    fn engine_modes_become_commands() {
        let modes = ControlModes {
            connect: Some(true),
            max_lim_w: Some(2500.0),
            ..Default::default()
        };
        assert_eq!(
            commands_for(&modes, 5000.0),
            vec![Command::Connect(true), Command::LimitPct(50.0)]
        );
    }
}
