//! What OpenADR 3 reports mean to the engine: USAGE, DEMAND and STORAGE_CHARGE_LEVEL
//! report payloads become telemetry [`Reading`]s (source kind `openadr`).
//!
//! Each report resource is one source, `openadr3:<clientID>:<resourceName>`. An interval's
//! time is its own intervalPeriod, or the resource's intervalPeriod advanced by the
//! interval's position times its duration. Units come from the report's payload
//! descriptor for the payload type (defaults: KWH, KW, PERCENT). Values that cannot be
//! placed in time, are not numbers, carry units we do not convert, or would be refused by
//! telemetry validation (for example forecasts beyond a day ahead) are not mapped; the
//! report itself is still stored as sent.

use super::duration::{parse_datetime, seconds};
use super::model::{IntervalPeriod, Report};
use crate::domain::EpochSeconds;
use crate::telemetry::{Measurand, Quality, Reading, SourceKind};

/// The measurand and SI scale of a payload type in the given units.
fn measurand(payload_type: &str, units: Option<&str>) -> Option<(Measurand, f64)> {
    let units = units.map(str::to_ascii_uppercase);
    match (payload_type, units.as_deref()) {
        ("USAGE", None | Some("KWH")) => Some((Measurand::EnergyImported, 1000.0)),
        ("USAGE", Some("WH")) => Some((Measurand::EnergyImported, 1.0)),
        ("USAGE", Some("MWH")) => Some((Measurand::EnergyImported, 1e6)),
        ("DEMAND", None | Some("KW")) => Some((Measurand::ActivePower, 1000.0)),
        ("DEMAND", Some("W")) => Some((Measurand::ActivePower, 1.0)),
        ("DEMAND", Some("MW")) => Some((Measurand::ActivePower, 1e6)),
        ("STORAGE_CHARGE_LEVEL", None | Some("PERCENT")) => Some((Measurand::StateOfCharge, 1.0)),
        _ => None,
    }
}

fn start_of(p: Option<&IntervalPeriod>) -> Option<f64> {
    p.and_then(|p| p.start.as_deref())
        .and_then(parse_datetime)
        .filter(|t| t.year() > 1)
        .map(|t| t.unix_timestamp() as f64)
}

fn duration_of(p: Option<&IntervalPeriod>) -> Option<f64> {
    p.and_then(|p| p.duration.as_deref()).and_then(seconds)
}

/// The telemetry readings a report carries, valid at `now`.
pub fn readings(report: &Report, now: EpochSeconds) -> Vec<Reading> {
    let units_of = |payload_type: &str| {
        report
            .body
            .payload_descriptors
            .iter()
            .flatten()
            .find(|d| d.payload_type == payload_type)
            .and_then(|d| d.units.as_deref())
    };
    let mut out = Vec::new();
    for res in &report.body.resources {
        let source_id = format!("openadr3:{}:{}", report.client_id, res.resource_name);
        let base = res.interval_period.as_ref();
        for (i, iv) in res.intervals.iter().enumerate() {
            let own = iv.interval_period.as_ref();
            let start = start_of(own)
                .or_else(|| Some(start_of(base)? + i as f64 * duration_of(base).unwrap_or(0.0)));
            let Some(start) = start else { continue };
            for p in &iv.payloads {
                let Some((m, scale)) = measurand(&p.kind, units_of(&p.kind)) else {
                    continue;
                };
                let Some(v) = p.values.first().and_then(|v| v.as_f64()) else {
                    continue;
                };
                // Negative usage is energy sent to the grid.
                let (m, v) = if m == Measurand::EnergyImported && v < 0.0 {
                    (Measurand::EnergyExported, -v)
                } else {
                    (m, v)
                };
                let r = Reading {
                    source_id: source_id.clone(),
                    source_kind: SourceKind::OpenAdr,
                    measurand: m,
                    instant: start as EpochSeconds,
                    value: v * scale,
                    quality: Quality::Measured,
                };
                if r.validate(now).is_ok() {
                    out.push(r);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_demand_and_charge_become_readings() {
        let report: Report = serde_json::from_value(serde_json::json!({
            "id": "r", "createdDateTime": "2024-01-01T00:00:00Z", "modificationDateTime": "2024-01-01T00:00:00Z",
            "objectType": "REPORT", "clientID": "ven1", "eventID": "e", "clientName": "v",
            "payloadDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "units": "WH"}],
            "resources": [{"resourceName": "bat", "intervalPeriod": {"start": "2024-01-01T00:00:00Z", "duration": "PT15M"},
                "intervals": [
                    {"id": 0, "payloads": [{"type": "USAGE", "values": [250]}, {"type": "STORAGE_CHARGE_LEVEL", "values": [80.5]}]},
                    {"id": 1, "payloads": [{"type": "USAGE", "values": [-100]}, {"type": "DEMAND", "values": [1.5]}, {"type": "PRICE", "values": [0.2]}]}
                ]}]
        }))
        .unwrap();
        let t0 = parse_datetime("2024-01-01T00:00:00Z")
            .unwrap()
            .unix_timestamp();
        let got: Vec<_> = readings(&report, t0 + 86_400)
            .into_iter()
            .map(|r| (r.source_id, r.measurand, r.instant - t0, r.value))
            .collect();
        let src = "openadr3:ven1:bat".to_string();
        assert_eq!(
            got,
            vec![
                (src.clone(), Measurand::EnergyImported, 0, 250.0),
                (src.clone(), Measurand::StateOfCharge, 0, 80.5),
                (src.clone(), Measurand::EnergyExported, 900, 100.0),
                (src, Measurand::ActivePower, 900, 1500.0),
            ]
        );
    }
}
