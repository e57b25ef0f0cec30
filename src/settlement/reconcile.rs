//! Reconciliation of a settlement statement against computed performance. Pure: parsing
//! the statement CSV (format in docs/settlement.md) and matching its lines.
//!
//! Parsing is all or nothing: the first malformed line stops it with an error naming the
//! line (1-based, the header is line 1) and the column, so nothing of a broken statement
//! is stored or acted upon.
//!
//! Matching: each line names an event and a resource (a meter id, a site id when the site
//! has one metered resource in the event, or `*` / the event's target for the aggregate
//! total). A figure differs when `|statement - computed|` exceeds the larger of the
//! absolute tolerance (kWh) and the percentage tolerance of the computed figure. Computed
//! resources the statement does not mention are reported too (`not_in_statement`).

use super::performance::{AggregatePerformance, FailureKind};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Columns a statement must have.
pub const REQUIRED_COLUMNS: [&str; 3] = ["event_id", "resource_id", "delivered_kwh"];
/// Columns a statement may have; others are ignored (statements carry charges, rates...).
pub const OPTIONAL_COLUMNS: [&str; 2] = ["baseline_kwh", "metered_kwh"];

/// One statement line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatementLine {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    pub event_id: String,
    pub resource_id: String,
    pub baseline_kwh: Option<f64>,
    pub metered_kwh: Option<f64>,
    pub delivered_kwh: f64,
}

/// A statement that could not be read; nothing of it was used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", match (.line, .column) {
    (Some(l), Some(c)) => format!("line {l}, column {c}: "),
    (Some(l), None) => format!("line {l}: "),
    (None, Some(c)) => format!("column {c}: "),
    (None, None) => String::new(),
})]
pub struct StatementError {
    pub line: Option<u64>,
    /// The column's header name and 1-based position, e.g. `delivered_kwh (3)`.
    pub column: Option<String>,
    pub message: String,
}

/// Tolerances for "differs": the larger of the two applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Tolerance {
    /// Absolute tolerance, kWh (default 0.1).
    pub abs_kwh: f64,
    /// Relative tolerance, percent of the computed figure (default 1).
    pub pct: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            abs_kwh: 0.1,
            pct: 1.0,
        }
    }
}

impl Tolerance {
    /// Checks both are non-negative numbers; names the bad one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (name, v) in [("tolerance_kwh", self.abs_kwh), ("tolerance_pct", self.pct)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((name, format!("must be a non-negative number, got {v}")));
            }
        }
        Ok(())
    }

    fn allowed(&self, computed: f64) -> f64 {
        self.abs_kwh.max(self.pct / 100.0 * computed.abs())
    }
}

/// Why a line (or a computed resource) is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No performance has been computed for the event.
    EventUnknown,
    /// The event's performance has no such resource.
    UnknownResource,
    /// The resource is in the event but its meter data is incomplete.
    MissingMeterData,
    /// The resource is in the event but it has no baseline (not enough history).
    NoBaseline,
    BaselineDiffers,
    MeteredDiffers,
    DeliveredDiffers,
    /// Computed for the event, absent from the statement.
    NotInStatement,
}

/// Statement and computed figures side by side, kWh.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    pub baseline_kwh: Option<f64>,
    pub metered_kwh: Option<f64>,
    pub delivered_kwh: Option<f64>,
}

/// One flagged line or resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Discrepancy {
    /// The statement line; none for `not_in_statement`.
    pub line: Option<u64>,
    pub event_id: String,
    pub resource_id: String,
    pub reasons: Vec<Reason>,
    pub statement: Figures,
    pub computed: Figures,
    /// `statement - computed` delivered energy, kWh, when both exist.
    pub delivered_diff_kwh: Option<f64>,
    /// Human-readable account of the reasons.
    pub detail: String,
}

/// The outcome of a reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReconciliationReport {
    pub id: String,
    pub tolerance: Tolerance,
    pub lines: usize,
    /// Lines that agree within tolerance.
    pub matched: usize,
    pub flagged: usize,
    pub events: Vec<String>,
    pub discrepancies: Vec<Discrepancy>,
    pub created_at: i64,
}

fn column_name(headers: &[String], i: usize) -> String {
    format!(
        "{} ({})",
        headers.get(i).map(String::as_str).unwrap_or("?"),
        i + 1
    )
}

/// Parses a statement. See the module doc for the rules.
pub fn parse_statement(text: &[u8]) -> Result<Vec<StatementLine>, StatementError> {
    let err = |line: Option<u64>, column: Option<String>, message: String| StatementError {
        line,
        column,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| err(Some(1), None, format!("unreadable header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(err(Some(1), None, "the statement is empty".into()));
    }
    let mut index = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if index.insert(h.clone(), i).is_some()
            && (REQUIRED_COLUMNS.contains(&h.as_str()) || OPTIONAL_COLUMNS.contains(&h.as_str()))
        {
            return Err(err(
                Some(1),
                Some(column_name(&headers, i)),
                format!("column '{h}' appears twice"),
            ));
        }
    }
    for c in REQUIRED_COLUMNS {
        if !index.contains_key(c) {
            return Err(err(
                Some(1),
                None,
                format!(
                    "missing column '{c}' (required: {}; optional: {})",
                    REQUIRED_COLUMNS.join(", "),
                    OPTIONAL_COLUMNS.join(", ")
                ),
            ));
        }
    }
    let mut out = Vec::new();
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line());
            let message = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("{len} field(s), the header has {expected_len}"),
                csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                _ => e.to_string(),
            };
            err(line, None, message)
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let text_of = |c: &str| -> Result<String, StatementError> {
            let i = index[c];
            let v = rec.get(i).unwrap_or("");
            if v.is_empty() {
                return Err(err(
                    Some(line),
                    Some(column_name(&headers, i)),
                    "must not be empty".into(),
                ));
            }
            Ok(v.to_string())
        };
        let number = |c: &str| -> Result<Option<f64>, StatementError> {
            let Some(&i) = index.get(c) else {
                return Ok(None);
            };
            let v = rec.get(i).unwrap_or("");
            if v.is_empty() {
                return Ok(None);
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(err(
                    Some(line),
                    Some(column_name(&headers, i)),
                    format!("'{v}' is not a number of kWh"),
                )),
            }
        };
        let event_id = text_of("event_id")?;
        let resource_id = text_of("resource_id")?;
        let delivered_kwh = number("delivered_kwh")?.ok_or_else(|| {
            err(
                Some(line),
                Some(column_name(&headers, index["delivered_kwh"])),
                "must not be empty".into(),
            )
        })?;
        if let Some(first) = seen.insert((event_id.clone(), resource_id.clone()), line) {
            return Err(err(
                Some(line),
                None,
                format!("event '{event_id}' resource '{resource_id}' is already on line {first}"),
            ));
        }
        out.push(StatementLine {
            line,
            event_id,
            resource_id,
            baseline_kwh: number("baseline_kwh")?,
            metered_kwh: number("metered_kwh")?,
            delivered_kwh,
        });
    }
    if out.is_empty() {
        return Err(err(None, None, "the statement has no lines".into()));
    }
    Ok(out)
}

/// Matches `lines` against `performances` (by event id).
pub fn reconcile(
    id: &str,
    lines: &[StatementLine],
    performances: &HashMap<String, AggregatePerformance>,
    tolerance: Tolerance,
    now: i64,
) -> ReconciliationReport {
    let mut discrepancies = Vec::new();
    let mut matched = 0;
    let mut mentioned: HashSet<(String, String)> = HashSet::new();
    let mut events: Vec<String> = Vec::new();
    for l in lines {
        if !events.contains(&l.event_id) {
            events.push(l.event_id.clone());
        }
        let statement = Figures {
            baseline_kwh: l.baseline_kwh,
            metered_kwh: l.metered_kwh,
            delivered_kwh: Some(l.delivered_kwh),
        };
        let flag = |reasons: Vec<Reason>, computed: Figures, detail: String| Discrepancy {
            line: Some(l.line),
            event_id: l.event_id.clone(),
            resource_id: l.resource_id.clone(),
            reasons,
            statement,
            computed,
            delivered_diff_kwh: computed.delivered_kwh.map(|c| l.delivered_kwh - c),
            detail,
        };
        let Some(perf) = performances.get(&l.event_id) else {
            discrepancies.push(flag(
                vec![Reason::EventUnknown],
                Figures::default(),
                format!(
                    "no performance has been computed for event '{}'",
                    l.event_id
                ),
            ));
            continue;
        };
        let aggregate_line = l.resource_id == "*"
            || perf.target.split_once(':').map(|(_, t)| t) == Some(l.resource_id.as_str());
        let computed = if aggregate_line {
            mentioned.insert((l.event_id.clone(), "*".into()));
            Some(Figures {
                baseline_kwh: Some(perf.baseline_kwh),
                metered_kwh: Some(perf.metered_kwh),
                delivered_kwh: Some(perf.delivered_kwh),
            })
        } else {
            let by_meter = perf
                .resources
                .iter()
                .find(|r| r.resource_id == l.resource_id);
            let by_site: Vec<_> = perf
                .resources
                .iter()
                .filter(|r| r.site_id == l.resource_id)
                .collect();
            let found = by_meter.or(if by_site.len() == 1 {
                Some(by_site[0])
            } else {
                None
            });
            found.map(|r| {
                mentioned.insert((l.event_id.clone(), r.resource_id.clone()));
                Figures {
                    baseline_kwh: Some(r.baseline_kwh),
                    metered_kwh: Some(r.metered_kwh),
                    delivered_kwh: Some(r.delivered_kwh),
                }
            })
        };
        let Some(computed) = computed else {
            let failure = perf
                .failed
                .iter()
                .find(|f| f.resource_id == l.resource_id || f.site_id == l.resource_id);
            match failure {
                Some(f) => {
                    mentioned.insert((l.event_id.clone(), f.resource_id.clone()));
                    let reason = match f.kind {
                        FailureKind::MissingMeterData => Reason::MissingMeterData,
                        FailureKind::NoBaseline => Reason::NoBaseline,
                    };
                    discrepancies.push(flag(vec![reason], Figures::default(), f.detail.clone()))
                }
                None => discrepancies.push(flag(
                    vec![Reason::UnknownResource],
                    Figures::default(),
                    format!(
                        "event '{}' has no resource '{}' (its resources are meters of {})",
                        l.event_id, l.resource_id, perf.target
                    ),
                )),
            }
            continue;
        };
        let mut reasons = Vec::new();
        let mut details = Vec::new();
        for (reason, name, s, c) in [
            (
                Reason::BaselineDiffers,
                "baseline",
                l.baseline_kwh,
                computed.baseline_kwh,
            ),
            (
                Reason::MeteredDiffers,
                "metered",
                l.metered_kwh,
                computed.metered_kwh,
            ),
            (
                Reason::DeliveredDiffers,
                "delivered",
                Some(l.delivered_kwh),
                computed.delivered_kwh,
            ),
        ] {
            if let (Some(s), Some(c)) = (s, c) {
                let allowed = tolerance.allowed(c);
                if (s - c).abs() > allowed {
                    reasons.push(reason);
                    details.push(format!(
                        "{name}: statement {s:.3} kWh, computed {c:.3} kWh (difference {:+.3}, tolerance {allowed:.3})",
                        s - c
                    ));
                }
            }
        }
        if reasons.is_empty() {
            matched += 1;
        } else {
            discrepancies.push(flag(reasons, computed, details.join("; ")));
        }
    }
    // Computed resources of the statement's events that the statement leaves out.
    for e in &events {
        let Some(perf) = performances.get(e) else {
            continue;
        };
        for r in &perf.resources {
            if !mentioned.contains(&(e.clone(), r.resource_id.clone())) {
                discrepancies.push(Discrepancy {
                    line: None,
                    event_id: e.clone(),
                    resource_id: r.resource_id.clone(),
                    reasons: vec![Reason::NotInStatement],
                    statement: Figures::default(),
                    computed: Figures {
                        baseline_kwh: Some(r.baseline_kwh),
                        metered_kwh: Some(r.metered_kwh),
                        delivered_kwh: Some(r.delivered_kwh),
                    },
                    delivered_diff_kwh: None,
                    detail: format!(
                        "meter {} delivered {:.3} kWh in event '{e}' but is not on the statement",
                        r.resource_id, r.delivered_kwh
                    ),
                });
            }
        }
    }
    ReconciliationReport {
        id: id.to_string(),
        tolerance,
        lines: lines.len(),
        matched,
        flagged: discrepancies.len(),
        events,
        discrepancies,
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_statement_with_extra_columns() {
        let csv = "event_id,resource_id,baseline_kwh,metered_kwh,delivered_kwh,amount_usd\n\
                   ev1,m1,10.0,6.0,4.0,12.50\n\
                   ev1,m2,,,3.5,\n";
        let lines = parse_statement(csv.as_bytes()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[1].line, 3);
        assert_eq!(lines[0].baseline_kwh, Some(10.0));
        assert_eq!(lines[1].baseline_kwh, None);
        assert_eq!(lines[1].delivered_kwh, 3.5);
    }

    #[test]
    fn malformed_lines_are_named() {
        let check = |csv: &str, expect: &str| {
            let e = parse_statement(csv.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), expect);
        };
        check(
            "event_id,resource_id,delivered_kwh\nev1,m1,4.0\nev1,m2,four\n",
            "line 3, column delivered_kwh (3): 'four' is not a number of kWh",
        );
        check(
            "event_id,resource_id,delivered_kwh\nev1,m1\n",
            "line 2: 2 field(s), the header has 3",
        );
        check(
            "event_id,resource_id,delivered_kwh\nev1,,4\n",
            "line 2, column resource_id (2): must not be empty",
        );
        check(
            "event_id,meter,delivered_kwh\nev1,m1,4\n",
            "line 1: missing column 'resource_id' (required: event_id, resource_id, delivered_kwh; optional: baseline_kwh, metered_kwh)",
        );
        check(
            "event_id,resource_id,delivered_kwh\nev1,m1,4\nev1,m1,5\n",
            "line 3: event 'ev1' resource 'm1' is already on line 2",
        );
        check(
            "event_id,resource_id,delivered_kwh\nev1,m1,NaN\n",
            "line 2, column delivered_kwh (3): 'NaN' is not a number of kWh",
        );
        check(
            "event_id,resource_id,delivered_kwh\n",
            "the statement has no lines",
        );
    }

    /// An event with one meter delivering 1 kWh (baseline 3 kWh, metered 2 kWh).
    fn performances() -> HashMap<String, AggregatePerformance> {
        use crate::dispatch::Direction;
        use crate::settlement::baseline::{BaselineConfig, Window};
        use crate::settlement::performance::{EventSpec, ResourceData, aggregate, resource};
        const WED: i64 = 1_781_654_400;
        let series = (WED - 30 * 86_400..WED + 86_400)
            .step_by(3600)
            .map(|t| (t, if t == WED + 14 * 3600 { 2000.0 } else { 3000.0 }))
            .collect();
        let event = EventSpec {
            event_id: "ev".into(),
            window: Window {
                start: WED + 14 * 3600,
                end: WED + 15 * 3600,
            },
            direction: Direction::Discharge,
            requested_kw: None,
        };
        let cfg = BaselineConfig::default();
        let data = ResourceData {
            resource_id: "m1",
            site_id: "s1",
            interval_s: 3600,
            series: &series,
        };
        let r = resource(&data, &event, &Default::default(), &cfg);
        let agg = aggregate(&event, "event", "group:g1", vec![r], &cfg, 0);
        HashMap::from([("ev".to_string(), agg)])
    }

    #[test]
    fn each_figure_is_compared_within_tolerance() {
        let perf = performances();
        let csv = "event_id,resource_id,baseline_kwh,metered_kwh,delivered_kwh\n\
                   ev,m1,3.0,2.0,1.0\n\
                   ev,s1,3.5,2.0,1.0\n\
                   ev,g1,3.0,2.3,0.7\n\
                   ev,*,3.0,2.0,1.09\n";
        // The two lines naming m1 (by meter and by site) are distinct lines of the same
        // resource; the parser only refuses exact repeats.
        let lines = parse_statement(csv.as_bytes()).unwrap();
        let r = reconcile("r", &lines, &perf, Tolerance::default(), 0);
        assert_eq!((r.lines, r.matched, r.flagged), (4, 2, 2), "{r:?}");
        assert_eq!(r.discrepancies[0].line, Some(3));
        assert_eq!(r.discrepancies[0].reasons, vec![Reason::BaselineDiffers]);
        assert_eq!(r.discrepancies[1].line, Some(4));
        assert_eq!(
            r.discrepancies[1].reasons,
            vec![Reason::MeteredDiffers, Reason::DeliveredDiffers]
        );
        assert!(
            r.discrepancies[1]
                .detail
                .contains("metered: statement 2.300 kWh, computed 2.000 kWh"),
            "{}",
            r.discrepancies[1].detail
        );
        // A looser tolerance accepts everything.
        let loose = Tolerance {
            abs_kwh: 0.1,
            pct: 35.0,
        };
        assert_eq!(reconcile("r", &lines, &perf, loose, 0).flagged, 0);
    }

    #[test]
    fn tolerance_is_the_larger_of_absolute_and_relative() {
        let t = Tolerance {
            abs_kwh: 0.5,
            pct: 2.0,
        };
        assert_eq!(t.allowed(10.0), 0.5);
        assert_eq!(t.allowed(100.0), 2.0);
        assert!(
            Tolerance {
                abs_kwh: -1.0,
                pct: 1.0
            }
            .validate()
            .is_err()
        );
    }
}
