//! Telemetry payload bytes to engine [`Reading`]s: JSON parsing, unit conversion at the
//! edge (kW to W and so on) and validation. A message either yields all its readings or is
//! refused whole with a [`Malformed`] reason for the quarantine; it is never half-used.

use super::payload::{Measurement, TelemetryMessage, Value};
use crate::domain::EpochSeconds;
use crate::telemetry::status::{self, OperatingState, StorageState};
use crate::telemetry::{Measurand, Quality, Reading, SourceKind, TelemetryError};

/// Why a telemetry message was quarantined instead of ingested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Malformed {
    /// The payload is not JSON (or not UTF-8).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not the documented shape: a missing or mistyped field.
    #[error("invalid message at {path}: {message}")]
    Shape { path: String, message: String },
    /// A message that carries no measurement (or a batch that carries no message).
    #[error("{0}: no measurements")]
    Empty(String),
    /// A measurand name outside the documented list.
    #[error("{at}: unknown measurand '{name}'")]
    UnknownMeasurand { at: String, name: String },
    /// A unit that does not fit the measurand, or that Switchyard does not know.
    #[error("{at}: unknown unit '{unit}' for {measurand} (expected one of {expected})")]
    UnknownUnit {
        at: String,
        measurand: String,
        unit: String,
        expected: &'static str,
    },
    /// A quantity without a number, a status with a unit, or a status value that names no
    /// state.
    #[error("{at}: {measurand} {problem}")]
    BadValue {
        at: String,
        measurand: String,
        problem: String,
    },
    /// A quality name outside the telemetry module's list.
    #[error("{at}: unknown quality '{quality}'")]
    UnknownQuality { at: String, quality: String },
    /// A value the telemetry module refuses: not finite, or stamped at an impossible time.
    #[error("{at}: {reason}")]
    Refused { at: String, reason: String },
}

/// Units a measurand accepts, each with its factor to the SI unit.
type Units = &'static [(&'static str, f64)];

/// The measurand named `name` in the payload, the units it accepts and their list for
/// messages.
fn measurand_units(name: &str) -> Option<(Measurand, Units, &'static str)> {
    const POWER: &[(&str, f64)] = &[("W", 1.0), ("kW", 1e3), ("MW", 1e6)];
    const REACTIVE: &[(&str, f64)] = &[("var", 1.0), ("kvar", 1e3), ("Mvar", 1e6)];
    const ENERGY: &[(&str, f64)] = &[("Wh", 1.0), ("kWh", 1e3), ("MWh", 1e6)];
    const PERCENT: &[(&str, f64)] = &[("%", 1.0)];
    const VOLT: &[(&str, f64)] = &[("V", 1.0), ("kV", 1e3)];
    const HERTZ: &[(&str, f64)] = &[("Hz", 1.0)];
    Some(match name {
        "active_power" => (Measurand::ActivePower, POWER, "W, kW, MW"),
        "reactive_power" => (Measurand::ReactivePower, REACTIVE, "var, kvar, Mvar"),
        "energy_imported" => (Measurand::EnergyImported, ENERGY, "Wh, kWh, MWh"),
        "energy_exported" => (Measurand::EnergyExported, ENERGY, "Wh, kWh, MWh"),
        "state_of_charge" => (Measurand::StateOfCharge, PERCENT, "%"),
        "voltage" => (Measurand::Voltage, VOLT, "V, kV"),
        "frequency" => (Measurand::Frequency, HERTZ, "Hz"),
        _ => return None,
    })
}

/// The status measurand named `name` in the payload.
fn state_measurand(name: &str) -> Option<Measurand> {
    Some(match name {
        "operating_state" => Measurand::OperatingState,
        "grid_connected" => Measurand::GridConnected,
        "storage_state" => Measurand::StorageState,
        _ => return None,
    })
}

/// Converts one measurement to its measurand and SI value (a status to its state code).
pub fn to_si(m: &Measurement, at: &str) -> Result<(Measurand, f64), Malformed> {
    let bad = |problem: String| Malformed::BadValue {
        at: at.to_string(),
        measurand: m.measurand.clone(),
        problem,
    };
    if let Some(measurand) = state_measurand(&m.measurand) {
        if let Some(unit) = &m.unit {
            return Err(bad(format!("is a state and has no unit (got '{unit}')")));
        }
        let code = match (measurand, &m.value) {
            (Measurand::GridConnected, Value::Flag(c)) => Some(status::connected_code(*c)),
            (Measurand::OperatingState, Value::Name(n)) => {
                n.parse::<OperatingState>().ok().map(OperatingState::code)
            }
            (Measurand::StorageState, Value::Name(n)) => {
                n.parse::<StorageState>().ok().map(StorageState::code)
            }
            _ => None,
        };
        return code.map(|c| (measurand, c)).ok_or_else(|| {
            bad(match measurand {
                Measurand::GridConnected => "must be true or false".to_string(),
                _ => format!(
                    "must be one of {}",
                    status::state_names(measurand).join(", ")
                ),
            })
        });
    }
    let (measurand, units, expected) =
        measurand_units(&m.measurand).ok_or_else(|| Malformed::UnknownMeasurand {
            at: at.to_string(),
            name: m.measurand.clone(),
        })?;
    let Value::Number(value) = m.value else {
        return Err(bad("must be a number".to_string()));
    };
    let unit = m
        .unit
        .as_deref()
        .ok_or_else(|| bad(format!("needs a unit (one of {expected})")))?;
    let factor = units
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, f)| *f)
        .ok_or_else(|| Malformed::UnknownUnit {
            at: at.to_string(),
            measurand: m.measurand.clone(),
            unit: unit.to_string(),
            expected,
        })?;
    Ok((measurand, value * factor))
}

/// Parses a telemetry payload: one message object, or an array of them from a gateway.
pub fn parse(payload: &[u8]) -> Result<Vec<TelemetryMessage>, Malformed> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace()).copied();
    // Distinguishing "not JSON" from "JSON of the wrong shape" gives operators the reason
    // they need: a broken device firmware versus a schema mismatch.
    let shape = |e: serde_path_to_error::Error<serde_json::Error>| {
        if e.inner().is_syntax() || e.inner().is_eof() {
            Malformed::NotJson(e.inner().to_string())
        } else {
            Malformed::Shape {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            }
        }
    };
    // Well-formed messages, nearly all of them, are parsed without tracking the path;
    // only a refused one is parsed again with it, for the quarantine's reason.
    let with_path = |payload: &[u8]| -> Malformed {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let parsed = if first == Some(b'[') {
            serde_path_to_error::deserialize::<_, Vec<TelemetryMessage>>(&mut de).map(drop)
        } else {
            serde_path_to_error::deserialize::<_, TelemetryMessage>(&mut de).map(drop)
        };
        match parsed {
            Err(e) => shape(e),
            Ok(()) => match de.end() {
                Err(e) => Malformed::NotJson(e.to_string()),
                Ok(()) => Malformed::NotJson("refused, then accepted on a second parse".into()),
            },
        }
    };
    match first {
        Some(b'[') => {
            let v: Vec<TelemetryMessage> =
                serde_json::from_slice(payload).map_err(|_| with_path(payload))?;
            if v.is_empty() {
                return Err(Malformed::Empty("batch".into()));
            }
            Ok(v)
        }
        Some(b'{') => {
            let m: TelemetryMessage =
                serde_json::from_slice(payload).map_err(|_| with_path(payload))?;
            Ok(vec![m])
        }
        Some(_) => Err(Malformed::NotJson("expected a JSON object or array".into())),
        None => Err(Malformed::NotJson("empty payload".into())),
    }
}

/// Decodes a telemetry payload into readings, appending to `out`; `now` is the server's
/// time for validation. On error nothing is appended.
pub fn decode_into(
    payload: &[u8],
    now: EpochSeconds,
    out: &mut Vec<Reading>,
) -> Result<usize, Malformed> {
    let messages = parse(payload)?;
    let start = out.len();
    let batch = messages.len() > 1;
    let result = (|| {
        for (i, msg) in messages.iter().enumerate() {
            let at = if batch {
                format!("[{i}] device {}", msg.device_id)
            } else {
                format!("device {}", msg.device_id)
            };
            if msg.measurements.is_empty() {
                return Err(Malformed::Empty(at));
            }
            let quality = match &msg.quality {
                None => Quality::Measured,
                Some(q) => q.parse().map_err(|_| Malformed::UnknownQuality {
                    at: at.clone(),
                    quality: q.clone(),
                })?,
            };
            for m in &msg.measurements {
                let (measurand, value) = to_si(m, &at)?;
                let r = Reading {
                    source_id: msg.device_id.clone(),
                    source_kind: SourceKind::Mqtt,
                    measurand,
                    instant: msg.ts,
                    value,
                    quality,
                };
                r.validate(now)
                    .map_err(|e: TelemetryError| Malformed::Refused {
                        at: at.clone(),
                        reason: e.to_string(),
                    })?;
                out.push(r);
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(out.len() - start),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: EpochSeconds = 1_750_000_000;

    fn decode(p: &str) -> Result<Vec<Reading>, Malformed> {
        let mut out = Vec::new();
        decode_into(p.as_bytes(), NOW, &mut out).map(|_| out)
    }

    #[test]
    fn converts_units_to_si() {
        let r = decode(
            r#"{"device_id":"inv-1","ts":1749999990,"measurements":[
                {"measurand":"active_power","value":-4.2,"unit":"kW"},
                {"measurand":"reactive_power","value":0.5,"unit":"kvar"},
                {"measurand":"energy_exported","value":12.5,"unit":"MWh"},
                {"measurand":"state_of_charge","value":55,"unit":"%"},
                {"measurand":"voltage","value":0.23,"unit":"kV"}]}"#,
        )
        .unwrap();
        let v: Vec<(Measurand, f64)> = r.iter().map(|r| (r.measurand, r.value)).collect();
        assert_eq!(
            v,
            vec![
                (Measurand::ActivePower, -4200.0),
                (Measurand::ReactivePower, 500.0),
                (Measurand::EnergyExported, 12_500_000.0),
                (Measurand::StateOfCharge, 55.0),
                (Measurand::Voltage, 230.0),
            ]
        );
        assert!(r.iter().all(|r| r.source_id == "inv-1"
            && r.instant == 1_749_999_990
            && r.source_kind == SourceKind::Mqtt
            && r.quality == Quality::Measured));
    }

    #[test]
    fn statuses_become_state_codes() {
        let r = decode(
            r#"{"device_id":"bat-1","ts":1749999990,"measurements":[
                {"measurand":"operating_state","value":"fault"},
                {"measurand":"grid_connected","value":false},
                {"measurand":"storage_state","value":"charging"},
                {"measurand":"state_of_charge","value":40,"unit":"%"}]}"#,
        )
        .unwrap();
        let v: Vec<(Measurand, f64)> = r.iter().map(|r| (r.measurand, r.value)).collect();
        assert_eq!(
            v,
            vec![
                (Measurand::OperatingState, OperatingState::Fault.code()),
                (Measurand::GridConnected, 0.0),
                (Measurand::StorageState, StorageState::Charging.code()),
                (Measurand::StateOfCharge, 40.0),
            ]
        );
    }

    #[test]
    fn gateway_batches_are_arrays() {
        let r = decode(
            r#"[{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"frequency","value":50.01,"unit":"Hz"}]},
                {"device_id":"b","ts":1749999991,"quality":"estimated","measurements":[{"measurand":"active_power","value":10,"unit":"W"}]}]"#,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].source_id, "b");
        assert_eq!(r[1].quality, Quality::Estimated);
    }

    #[test]
    fn each_malformed_case_has_its_reason() {
        let cases: &[(&str, &str)] = &[
            ("not json", "not JSON"),
            ("{\"device_id\":\"a\",", "not JSON"),
            ("", "not JSON"),
            (
                r#"{"device_id":"a","measurements":[]}"#,
                "missing field `ts`",
            ),
            (r#"{"device_id":"a","ts":"x","measurements":[]}"#, "at ts"),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[]}"#,
                "no measurements",
            ),
            ("[]", "batch: no measurements"),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"power","value":1,"unit":"W"}]}"#,
                "unknown measurand 'power'",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":1,"unit":"hp"}]}"#,
                "unknown unit 'hp' for active_power (expected one of W, kW, MW)",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":NaN,"unit":"W"}]}"#,
                "not JSON",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":1e400,"unit":"W"}]}"#,
                "not JSON",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":1e308,"unit":"MW"}]}"#,
                "not a finite number",
            ),
            (
                r#"{"device_id":"a","ts":12,"measurements":[{"measurand":"active_power","value":1,"unit":"W"}]}"#,
                "device clock",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":1}]}"#,
                "active_power needs a unit (one of W, kW, MW)",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":"high","unit":"W"}]}"#,
                "active_power must be a number",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"operating_state","value":"dancing"}]}"#,
                "operating_state must be one of off, sleeping, starting, running",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"operating_state","value":7}]}"#,
                "operating_state must be one of",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"grid_connected","value":"yes"}]}"#,
                "grid_connected must be true or false",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"storage_state","value":"full","unit":"%"}]}"#,
                "storage_state is a state and has no unit (got '%')",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"active_power","value":[1],"unit":"W"}]}"#,
                "a number, a state name or true/false",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"quality":"great","measurements":[{"measurand":"active_power","value":1,"unit":"W"}]}"#,
                "unknown quality 'great'",
            ),
        ];
        for (payload, reason) in cases {
            let err = decode(payload).unwrap_err().to_string();
            assert!(err.contains(reason), "{payload}: {err}");
        }
    }

    /// Valid messages take a parse without path tracking; the refused ones are parsed
    /// again for a reason that still names where the message went wrong.
    #[test]
    fn refused_messages_keep_a_precise_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"[{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"voltage","value":230,"unit":"V"}]},
                    {"device_id":"b","ts":"late","measurements":[]}]"#,
                "invalid message at [1].ts",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":5,"value":230,"unit":"V"}]}"#,
                "invalid message at measurements[0].measurand",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"voltage","value":230,"unit":"V"}]} trailing"#,
                "not JSON: trailing characters",
            ),
            (
                r#"{"device_id":"a","ts":1749999990,"colour":"red","measurements":[]}"#,
                "invalid message at colour: unknown field `colour`",
            ),
        ];
        for (payload, reason) in cases {
            let err = decode(payload).unwrap_err().to_string();
            assert!(err.starts_with(reason), "{payload}: {err}");
        }
    }

    #[test]
    fn one_bad_message_refuses_the_whole_batch() {
        let mut out = vec![];
        let err = decode_into(
            br#"[{"device_id":"a","ts":1749999990,"measurements":[{"measurand":"voltage","value":230,"unit":"V"}]},
                 {"device_id":"b","ts":1749999990,"measurements":[{"measurand":"voltage","value":230,"unit":"mV"}]}]"#,
            NOW,
            &mut out,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("[1] device b"), "{err}");
        assert!(out.is_empty(), "nothing half-used");
    }
}
