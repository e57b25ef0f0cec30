//! What 2.0b report data means to the engine: the values of an `oadrUpdateReport` become
//! telemetry [`Reading`]s (source kind `openadr`), using what the VEN registered about each
//! data point (rID) in its `oadrRegisterReport`.
//!
//! Source ids are `openadr2:<venID>:<resourceID or rID>`. The item base the VEN registered
//! fixes the measurand (powerReal -> active power, powerReactive -> reactive power,
//! energyReal -> energy, voltage, frequency), `siScaleCode` the multiplier to SI units.
//! Energy with readingType `Direct Read` is a register (cumulative); any other reading type
//! is an interval amount. Values of unknown or unmapped data points are stored with the
//! report but not as telemetry.

use super::model::OadrReport;
use crate::domain::EpochSeconds;
use crate::telemetry::{Measurand, Quality, Reading, SourceKind};

/// A registered data point.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPoint {
    pub r_id: String,
    pub resource_id: Option<String>,
    /// The item base element's local name (`powerReal`, `energyReal`, ...).
    pub item: Option<String>,
    pub units: Option<String>,
    pub si_scale: Option<String>,
    pub reading_type: String,
}

/// The multiplier of an SI scale code.
pub fn scale_factor(code: Option<&str>) -> Option<f64> {
    Some(match code.unwrap_or("none") {
        "p" => 1e-12,
        "n" => 1e-9,
        "micro" => 1e-6,
        "m" => 1e-3,
        "c" => 1e-2,
        "d" => 1e-1,
        "none" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => return None,
    })
}

fn measurand(p: &ReportPoint, value: f64) -> Option<(Measurand, f64)> {
    let direct = p.reading_type.eq_ignore_ascii_case("Direct Read");
    Some(match p.item.as_deref()? {
        "powerReal" => (Measurand::ActivePower, value),
        "powerReactive" => (Measurand::ReactivePower, value),
        "energyReal" if direct && value >= 0.0 => (Measurand::EnergyImported, value),
        "energyReal" if direct => (Measurand::EnergyExported, -value),
        "energyReal" if value >= 0.0 => (Measurand::IntervalEnergyImported, value),
        "energyReal" => (Measurand::IntervalEnergyExported, -value),
        "voltage" => (Measurand::Voltage, value),
        "frequency" => (Measurand::Frequency, value),
        _ => return None,
    })
}

fn parse_time(s: &str) -> Option<EpochSeconds> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// What an update report carried: the readings, the number of values, and the last
/// online flag of a TELEMETRY_STATUS report.
#[derive(Debug, Default, PartialEq)]
pub struct Mapped {
    pub readings: Vec<Reading>,
    pub values: usize,
    pub online: Option<bool>,
}

/// Maps one `oadrReport` of VEN `ven_id`, given its registered points, at `now`.
/// Errors name an rID the VEN never registered or an interval without a valid time.
pub fn map_report(
    ven_id: &str,
    report: &OadrReport,
    points: &[ReportPoint],
) -> Result<Mapped, String> {
    let mut out = Mapped::default();
    let report_start = report
        .dtstart
        .as_ref()
        .and_then(|d| parse_time(&d.date_time));
    for iv in report.intervals.iter().flat_map(|i| &i.intervals) {
        let start = match &iv.dtstart {
            Some(d) => parse_time(&d.date_time)
                .ok_or_else(|| format!("interval dtstart '{}' is not a date-time", d.date_time))?,
            None => report_start.ok_or("interval without dtstart")?,
        };
        for p in &iv.report_payloads {
            let point = points
                .iter()
                .find(|x| x.r_id == p.r_id)
                .ok_or_else(|| format!("rID '{}' was not registered", p.r_id))?;
            out.values += 1;
            if let Some(s) = &p.resource_status {
                out.online = Some(s.online);
            }
            let Some(v) = p.payload_float.as_ref().map(|f| f.value) else {
                continue;
            };
            if !v.is_finite() {
                return Err(format!(
                    "rID '{}' carries a value that is not finite",
                    p.r_id
                ));
            }
            let Some((m, v)) = measurand(point, v) else {
                continue;
            };
            let Some(scale) = scale_factor(point.si_scale.as_deref()) else {
                continue;
            };
            let quality = match p.data_quality.as_deref() {
                Some(q) if q.contains("Estimated") => Quality::Estimated,
                Some(q) if q.contains("No Quality") || q.contains("Unknown") => Quality::Measured,
                Some(q) if q.contains("Missing") || q.contains("No Value") => Quality::Missing,
                _ => Quality::Measured,
            };
            let source = point.resource_id.as_deref().unwrap_or(&point.r_id);
            out.readings.push(Reading {
                source_id: format!("openadr2:{ven_id}:{source}"),
                source_kind: SourceKind::OpenAdr,
                measurand: m,
                instant: start,
                value: v * scale,
                quality,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openadr2::model::{
        DtStart, Interval, Intervals, PayloadFloat, ReportPayload,
    };

    #[test]
    fn power_in_kilowatts_becomes_watts_and_unknown_rid_is_refused() {
        let points = vec![ReportPoint {
            r_id: "r1".into(),
            resource_id: Some("meter1".into()),
            item: Some("powerReal".into()),
            units: Some("W".into()),
            si_scale: Some("k".into()),
            reading_type: "Direct Read".into(),
        }];
        let payload = |r: &str| ReportPayload {
            r_id: r.into(),
            confidence: None,
            accuracy: None,
            payload_float: Some(PayloadFloat { value: 1.5 }),
            resource_status: None,
            data_quality: None,
        };
        let mut report = OadrReport {
            dtstart: None,
            duration: None,
            intervals: Some(Intervals {
                intervals: vec![Interval {
                    dtstart: Some(DtStart {
                        date_time: "2024-01-01T00:00:00Z".into(),
                    }),
                    duration: None,
                    uid: None,
                    signal_payload: None,
                    report_payloads: vec![payload("r1")],
                }],
            }),
            report_id: None,
            descriptions: vec![],
            report_request_id: "rr".into(),
            report_specifier_id: "rs".into(),
            report_name: Some("TELEMETRY_USAGE".into()),
            created_date_time: "2024-01-01T00:00:00Z".into(),
        };
        let m = map_report("ven1", &report, &points).unwrap();
        assert_eq!(m.readings.len(), 1);
        assert_eq!(m.readings[0].source_id, "openadr2:ven1:meter1");
        assert_eq!(m.readings[0].value, 1500.0);
        assert_eq!(m.readings[0].instant, 1_704_067_200);
        report.intervals.as_mut().unwrap().intervals[0].report_payloads = vec![payload("nope")];
        assert!(map_report("ven1", &report, &points).is_err());
    }
}
