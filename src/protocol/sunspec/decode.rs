//! Point values: registers to values (scale factor applied, "not implemented" sentinels as
//! absent, units in SI) and values back to registers for writes and the simulator.
//!
//! SunSpec marks an unimplemented point with a per-type sentinel (0x8000 for int16,
//! 0xFFFF for uint16, 0 for accumulators, NaN for floats, all-zero strings). Those decode
//! to `None`: a missing value must never read as a measured zero.

use super::layout::{GroupLayout, ModelLayout, ScaleSource, Slot};
use super::model::{PointDef, PointType};
use serde::Serialize;
use serde_json::{Map, Value as Json};

/// A decoded point value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A scaled or unit-converted number.
    Number(f64),
    /// An integer with no scale factor (ids, counts, seconds).
    Int(i64),
    /// An unsigned integer too wide for `Int`.
    Uint(u64),
    /// Text (strings, addresses).
    Text(String),
}

impl Value {
    /// As a float, for anything numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            Value::Uint(v) => Some(*v as f64),
            Value::Text(_) => None,
        }
    }
}

/// One decoded point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// `None` when the device marks the point not implemented (or its scale factor is).
    pub value: Option<Value>,
    /// SI unit (`W`, `var`, `Wh`, `s`, `%`, ...), when the point has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    /// Enumeration symbol, or the set bits of a bitfield.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

/// A decoded model: its points by dotted path in register order, plus the JSON tree.
#[derive(Debug, Clone)]
pub struct DecodedModel {
    pub id: u16,
    /// The register address of its `ID` register.
    pub address: u16,
    pub points: Vec<(String, Point)>,
    /// Points keyed by name, groups as objects (single) or arrays (repeating).
    pub tree: Json,
}

impl DecodedModel {
    /// The point at `path`, e.g. `W` or `Crv[0].Pt[1].V`.
    pub fn point(&self, path: &str) -> Option<&Point> {
        self.points.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    /// The numeric value at `path`, if present and implemented.
    pub fn number(&self, path: &str) -> Option<f64> {
        self.point(path)?.value.as_ref()?.as_f64()
    }
}

/// Reads `n` registers at `offset` as one big-endian integer.
fn raw(regs: &[u16], offset: u16, n: u16) -> Option<u64> {
    let s = regs.get(offset as usize..(offset + n) as usize)?;
    Some(s.iter().fold(0u64, |acc, r| (acc << 16) | u64::from(*r)))
}

/// The scale exponent of a slot, `Ok(None)` when it has none, `Err(())` when the device
/// marks its scale factor not implemented (the value is then absent too).
fn exponent(regs: &[u16], slot: &Slot) -> Result<Option<i32>, ()> {
    match slot.scale {
        None => Ok(None),
        Some(ScaleSource::Fixed(e)) => Ok(Some(i32::from(e))),
        Some(ScaleSource::At(off)) => {
            let r = raw(regs, off, 1).ok_or(())? as u16;
            let e = i32::from(r as i16);
            // 0x8000 is "not implemented"; the schema bounds real factors to +-10.
            if r == 0x8000 || !(-10..=10).contains(&e) {
                Err(())
            } else {
                Ok(Some(e))
            }
        }
    }
}

/// `v` x 10^`e`, dividing for negative exponents so that 2396 x 10^-1 prints as 239.6
/// (0.1 has no exact binary form; 10 does).
fn scale(v: f64, e: i32) -> f64 {
    if e < 0 {
        v / 10f64.powi(-e)
    } else {
        v * 10f64.powi(e)
    }
}

/// A SunSpec unit name as (SI unit, multiplier into it).
pub fn si_unit(units: &str) -> (&'static str, f64) {
    let u = units.trim();
    match u {
        "W" => ("W", 1.0),
        "VA" => ("VA", 1.0),
        "var" | "Var" | "VAr" => ("var", 1.0),
        "Wh" | "WH" => ("Wh", 1.0),
        "VAh" => ("VAh", 1.0),
        "varh" | "Varh" | "VArh" => ("varh", 1.0),
        "V" => ("V", 1.0),
        "A" => ("A", 1.0),
        "Ah" | "AH" => ("Ah", 1.0),
        "Hz" => ("Hz", 1.0),
        "C" => ("°C", 1.0),
        "Secs" | "s" => ("s", 1.0),
        "mSecs" => ("s", 0.001),
        "Min" | "min" => ("s", 60.0),
        "ohms" | "Ohm" => ("Ω", 1.0),
        "S" => ("S", 1.0),
        "cos()" => ("", 1.0),
        _ if u.starts_with('%') || u.ends_with("Pct") => {
            if u.to_ascii_lowercase().ends_with("/sec") {
                ("%/s", 1.0)
            } else {
                ("%", 1.0)
            }
        }
        _ => ("", 1.0),
    }
}

fn unit_of(def: &PointDef) -> (Option<&'static str>, f64) {
    match def.units.as_deref() {
        None => (None, 1.0),
        Some(u) => {
            let (si, m) = si_unit(u);
            ((!si.is_empty()).then_some(si), m)
        }
    }
}

fn text(regs: &[u16], offset: u16, size: u16) -> Option<String> {
    let s = regs.get(offset as usize..(offset + size) as usize)?;
    let bytes: Vec<u8> = s.iter().flat_map(|r| r.to_be_bytes()).collect();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let t = String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string();
    (!t.is_empty()).then_some(t)
}

/// Decodes one slot of a model whose registers (from `ID` on) are `regs`.
pub fn decode_point(regs: &[u16], slot: &Slot) -> Point {
    let def = slot.def;
    let (unit, mult) = unit_of(def);
    let mut p = Point {
        value: None,
        unit,
        symbol: None,
    };
    let Some(bits) = raw(regs, slot.offset, def.size.min(4)) else {
        return p;
    };
    use PointType::*;
    let integer: Option<i128> = match def.kind {
        Int16 | Sunssf => (bits != 0x8000).then_some(i128::from(bits as u16 as i16)),
        Int32 => (bits != 0x8000_0000).then_some(i128::from(bits as u32 as i32)),
        Int64 => (bits != 0x8000_0000_0000_0000).then_some(i128::from(bits as i64)),
        Uint16 | Enum16 | Bitfield16 => (bits != 0xFFFF).then_some(i128::from(bits)),
        Uint32 | Enum32 | Bitfield32 | Ipaddr => {
            let na = if def.kind == Ipaddr { 0 } else { 0xFFFF_FFFF };
            (bits != na).then_some(i128::from(bits))
        }
        Uint64 | Bitfield64 => (bits != u64::MAX).then_some(i128::from(bits)),
        // Accumulators and counts use 0 for "not implemented".
        Acc16 | Acc32 | Acc64 => (bits != 0).then_some(i128::from(bits)),
        Count | Raw16 => Some(i128::from(bits)),
        Float32 => {
            let f = f32::from_bits(bits as u32);
            if !f.is_nan() {
                p.value = Some(Value::Number(f64::from(f) * mult));
            }
            return p;
        }
        Float64 => {
            let f = f64::from_bits(bits);
            if !f.is_nan() {
                p.value = Some(Value::Number(f * mult));
            }
            return p;
        }
        String => {
            p.value = text(regs, slot.offset, def.size).map(Value::Text);
            return p;
        }
        Ipv6addr | Eui48 => {
            let s = regs
                .get(slot.offset as usize..(slot.offset + def.size) as usize)
                .unwrap_or(&[]);
            if s.iter().any(|r| *r != 0) {
                let hex: Vec<std::string::String> = s.iter().map(|r| format!("{r:04x}")).collect();
                p.value = Some(Value::Text(hex.join(":")));
            }
            return p;
        }
        Pad => return p,
    };
    let Some(i) = integer else { return p };
    match def.kind {
        Enum16 | Enum32 => p.symbol = def.symbol(i as u64).map(str::to_string),
        Bitfield16 | Bitfield32 | Bitfield64 => {
            let set: Vec<&str> = def
                .symbols
                .iter()
                .filter(|s| s.value < 64 && (i as u64) & (1 << s.value) != 0)
                .map(|s| s.name.as_str())
                .collect();
            if !set.is_empty() {
                p.symbol = Some(set.join("|"));
            }
        }
        Ipaddr => {
            let b = (i as u32).to_be_bytes();
            p.value = Some(Value::Text(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])));
            return p;
        }
        _ => {}
    }
    p.value = match exponent(regs, slot) {
        Err(()) => None,
        Ok(Some(e)) => Some(Value::Number(scale(i as f64, e) * mult)),
        Ok(None) if mult != 1.0 => Some(Value::Number(i as f64 * mult)),
        Ok(None) => Some(match i64::try_from(i) {
            Ok(v) => Value::Int(v),
            Err(_) => Value::Uint(i as u64),
        }),
    };
    p
}

/// Decodes every point of a model at register `address` from its registers.
pub fn decode_model(layout: &ModelLayout, address: u16, regs: &[u16]) -> DecodedModel {
    fn group(
        g: &GroupLayout,
        regs: &[u16],
        flat: &mut Vec<(String, Point)>,
    ) -> Map<std::string::String, Json> {
        let mut obj = Map::new();
        for slot in &g.points {
            if slot.def.kind == PointType::Pad {
                continue;
            }
            let p = decode_point(regs, slot);
            obj.insert(
                slot.def.name.clone(),
                serde_json::to_value(&p).unwrap_or(Json::Null),
            );
            flat.push((slot.path.clone(), p));
        }
        for gs in &g.groups {
            let items: Vec<Json> = gs
                .instances
                .iter()
                .map(|inst| Json::Object(group(inst, regs, flat)))
                .collect();
            let v = if gs.repeating {
                Json::Array(items)
            } else {
                items.into_iter().next().unwrap_or(Json::Null)
            };
            obj.insert(gs.name.clone(), v);
        }
        obj
    }
    let mut points = Vec::new();
    let tree = Json::Object(group(&layout.root, regs, &mut points));
    DecodedModel {
        id: layout.def.id,
        address,
        points,
        tree,
    }
}

/// Why a value cannot be written to a point.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("{point}: {value} is outside what a {kind:?} register holds at scale 10^{exp}")]
    OutOfRange {
        point: std::string::String,
        value: f64,
        kind: PointType,
        exp: i32,
    },
    #[error("{point}: {kind:?} points cannot be written as numbers")]
    NotNumeric {
        point: std::string::String,
        kind: PointType,
    },
    #[error("{point}: the scale factor is not implemented by the device")]
    NoScale { point: std::string::String },
}

/// The registers that carry `value` (in the point's SI unit) for `slot`, given the model's
/// current registers (for its scale factor).
pub fn encode_point(regs: &[u16], slot: &Slot, value: f64) -> Result<Vec<u16>, EncodeError> {
    let def = slot.def;
    let exp = exponent(regs, slot)
        .map_err(|()| EncodeError::NoScale {
            point: slot.path.clone(),
        })?
        .unwrap_or(0);
    let (_, mult) = unit_of(def);
    let scaled = scale(value / mult, -exp).round();
    let out_of_range = || EncodeError::OutOfRange {
        point: slot.path.clone(),
        value,
        kind: def.kind,
        exp,
    };
    if !scaled.is_finite() {
        return Err(out_of_range());
    }
    use PointType::*;
    // Each range excludes the type's "not implemented" sentinel.
    let (lo, hi): (f64, f64) = match def.kind {
        Int16 | Sunssf => (-32767.0, 32767.0),
        Uint16 | Enum16 | Bitfield16 | Count | Raw16 | Acc16 => (0.0, 65534.0),
        Int32 => (-2_147_483_647.0, 2_147_483_647.0),
        Uint32 | Enum32 | Bitfield32 | Acc32 => (0.0, 4_294_967_294.0),
        Int64 => (-9.2e18, 9.2e18),
        Uint64 | Acc64 | Bitfield64 => (0.0, 1.8e19),
        Float32 => return Ok(split((value / mult) as f32).to_vec()),
        Float64 => {
            let b = (value / mult).to_bits();
            return Ok((0..4).rev().map(|i| (b >> (16 * i)) as u16).collect());
        }
        _ => {
            return Err(EncodeError::NotNumeric {
                point: slot.path.clone(),
                kind: def.kind,
            });
        }
    };
    if scaled < lo || scaled > hi {
        return Err(out_of_range());
    }
    let bits = if scaled < 0.0 {
        (scaled as i64) as u64
    } else {
        scaled as u64
    };
    let n = def.size as u32;
    Ok((0..n).rev().map(|i| (bits >> (16 * i)) as u16).collect())
}

fn split(f: f32) -> [u16; 2] {
    let b = f.to_bits();
    [(b >> 16) as u16, b as u16]
}

/// The registers of a string point (NUL padded; longer text is cut).
pub fn encode_text(slot: &Slot, text: &str) -> Vec<u16> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(slot.def.size as usize * 2, 0);
    bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// The "not implemented" registers of a point's type (what a device shows for a point it
/// does not support).
pub fn not_implemented(def: &PointDef) -> Vec<u16> {
    use PointType::*;
    let n = def.size as usize;
    match def.kind {
        Int16 | Sunssf | Int32 | Int64 => {
            let mut v = vec![0; n];
            v[0] = 0x8000;
            v
        }
        Uint16 | Enum16 | Bitfield16 | Uint32 | Enum32 | Bitfield32 | Uint64 | Bitfield64 => {
            vec![0xFFFF; n]
        }
        Float32 | Float64 => {
            let mut v = vec![0; n];
            v[0] = 0x7FC0;
            v
        }
        _ => vec![0; n],
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::definition;
    use super::*;

    fn layout(id: u16) -> ModelLayout {
        ModelLayout::natural(definition(id).unwrap(), &|_| 1).unwrap()
    }

    fn put(regs: &mut [u16], l: &ModelLayout, path: &str, words: &[u16]) {
        let o = l.slot(path).unwrap().offset as usize;
        regs[o..o + words.len()].copy_from_slice(words);
    }

    #[test]
    fn scale_factors_apply_and_sentinels_are_absent() {
        let l = layout(103);
        let mut regs = vec![0u16; l.len as usize];
        for s in l.slots() {
            let na = not_implemented(s.def);
            put(&mut regs, &l, &s.path, &na);
        }
        put(&mut regs, &l, "W", &[(-1234i16) as u16]);
        put(&mut regs, &l, "W_SF", &[(-1i16) as u16]);
        put(&mut regs, &l, "PhVphA", &[2301]);
        put(&mut regs, &l, "V_SF", &[(-1i16) as u16]);
        put(&mut regs, &l, "St", &[4]);
        let m = decode_model(&l, 40002, &regs);
        assert_eq!(m.number("W"), Some(-123.4));
        assert_eq!(m.point("W").unwrap().unit, Some("W"));
        assert_eq!(m.number("PhVphA"), Some(230.1));
        assert_eq!(m.point("St").unwrap().symbol.as_deref(), Some("MPPT"));
        // Not implemented: absent, never zero.
        assert_eq!(m.point("VAr").unwrap().value, None);
        assert_eq!(m.point("WH").unwrap().value, None);
        assert_eq!(m.point("PhVphB").unwrap().value, None);
        assert_eq!(m.tree["W"]["value"], serde_json::json!(-123.4));
        assert_eq!(m.tree["VAr"]["value"], Json::Null);
        // A point whose scale factor is not implemented is absent too.
        put(&mut regs, &l, "W_SF", &[0x8000]);
        assert_eq!(decode_model(&l, 40002, &regs).number("W"), None);
    }

    #[test]
    fn encoding_round_trips_through_the_scale_factor() {
        let l = layout(704);
        let mut regs = vec![0u16; l.len as usize];
        put(&mut regs, &l, "WMaxLimPct_SF", &[(-1i16) as u16]);
        put(&mut regs, &l, "WSet_SF", &[0]);
        let s = l.slot("WMaxLimPct").unwrap();
        let words = encode_point(&regs, s, 55.5).unwrap();
        assert_eq!(words, vec![555]);
        put(&mut regs, &l, "WMaxLimPct", &words);
        assert_eq!(decode_point(&regs, s).value, Some(Value::Number(55.5)));
        let ws = l.slot("WSet").unwrap();
        let words = encode_point(&regs, ws, -2500.0).unwrap();
        put(&mut regs, &l, "WSet", &words);
        assert_eq!(decode_point(&regs, ws).value, Some(Value::Number(-2500.0)));
        let err = encode_point(&regs, s, 1e9).unwrap_err();
        assert!(matches!(err, EncodeError::OutOfRange { .. }), "{err}");
        let err = encode_point(&regs, s, -1.0).unwrap_err();
        assert!(matches!(err, EncodeError::OutOfRange { .. }), "{err}");
    }

    #[test]
    fn strings_and_units() {
        let l = layout(1);
        let mut regs = vec![0u16; l.len as usize];
        let mn = l.slot("Mn").unwrap();
        let words = encode_text(mn, "Switchyard");
        put(&mut regs, &l, "Mn", &words);
        assert_eq!(
            decode_point(&regs, mn).value,
            Some(Value::Text("Switchyard".into()))
        );
        assert_eq!(decode_point(&regs, l.slot("SN").unwrap()).value, None);
        assert_eq!(si_unit("Secs"), ("s", 1.0));
        assert_eq!(si_unit("WH"), ("Wh", 1.0));
        assert_eq!(si_unit("% WChaMax/sec"), ("%/s", 1.0));
        assert_eq!(si_unit("%WHRtg"), ("%", 1.0));
        assert_eq!(si_unit("mSecs"), ("s", 0.001));
    }
}
