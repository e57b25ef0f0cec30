//! What OpenADR 3 events mean to the engine: capacity limits become operating-envelope
//! controls, dispatch setpoints, SIMPLE levels and charge-state setpoints become dispatch
//! requests, for the registry sites and groups the event's targets link to.
//!
//! This is the protocol edge: it reads OpenADR types and produces engine types
//! ([`ControlModes`], [`DispatchRequest`]); the engine never sees an OpenADR object. The
//! translation is pure (time is an argument, the links are resolved by the caller), so an
//! event that cannot be translated is refused before anything is written. The rules are in
//! docs/openadr3.md ("What reaches the engine").

use super::duration::{INFINITE_SECONDS, parse_datetime, seconds};
use super::error::OadrError;
use super::model::{EventRequest, IntervalPeriod, Value};
use crate::dispatch::{Direction, DispatchRequest, Ramp, RequestSource, Target};
use crate::domain::EpochSeconds;
use crate::envelope::ControlModes;
use serde::{Deserialize, Serialize};

/// Target prefix naming a registry group: `group:<group id>`.
pub const GROUP_PREFIX: &str = "group:";
/// Target prefix naming a registry site: `site:<site id>`.
pub const SITE_PREFIX: &str = "site:";

/// How events are turned into engine requests (`[openadr3.engine]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Primacy of the control programs that carry events' capacity limits (lower values
    /// outrank higher ones, as in IEEE 2030.5).
    pub envelope_primacy: u8,
    /// Requested power, kW, for SIMPLE levels 0, 1, 2, 3 (index = level). A level whose
    /// power is zero asks for nothing.
    pub simple_level_kw: Vec<f64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            envelope_primacy: 1,
            simple_level_kw: vec![0.0, 10.0, 25.0, 50.0],
        }
    }
}

impl EngineConfig {
    /// Checks the configuration at start-up.
    pub fn check(&self) -> Result<(), String> {
        if self.simple_level_kw.len() != 4 {
            return Err(format!(
                "openadr3.engine.simple_level_kw: needs 4 values (levels 0-3), got {}",
                self.simple_level_kw.len()
            ));
        }
        if let Some(v) = self
            .simple_level_kw
            .iter()
            .find(|v| !v.is_finite() || **v < 0.0)
        {
            return Err(format!(
                "openadr3.engine.simple_level_kw: values are kW >= 0, got {v}"
            ));
        }
        Ok(())
    }
}

/// A registry object an event reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Link {
    Group(String),
    Site(String),
}

/// One operating-envelope control an event asks for, for every linked site and group.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitControl {
    pub interval_id: i32,
    pub start: EpochSeconds,
    pub duration_s: u32,
    pub modes: ControlModes,
}

/// Everything an event asks of the engine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translation {
    /// The registry objects the event reaches, sorted.
    pub links: Vec<Link>,
    pub controls: Vec<LimitControl>,
    pub requests: Vec<DispatchRequest>,
}

impl Translation {
    pub fn is_empty(&self) -> bool {
        self.controls.is_empty() && self.requests.is_empty()
    }
}

/// The payload types this module acts on.
pub fn is_engine_payload(kind: &str) -> bool {
    matches!(
        kind,
        "IMPORT_CAPACITY_LIMIT"
            | "EXPORT_CAPACITY_LIMIT"
            | "DISPATCH_SETPOINT"
            | "SIMPLE"
            | "CHARGE_STATE_SETPOINT"
    )
}

/// Scale from the given power units to W (default KW).
fn watts_per(units: Option<&str>) -> Option<f64> {
    match units.map(str::to_ascii_uppercase).as_deref() {
        None | Some("KW") => Some(1e3),
        Some("W") => Some(1.0),
        Some("MW") => Some(1e6),
        _ => None,
    }
}

/// Scale from the given energy units to kWh (default KWH).
fn kwh_per(units: Option<&str>) -> Option<f64> {
    match units.map(str::to_ascii_uppercase).as_deref() {
        None | Some("KWH") => Some(1.0),
        Some("WH") => Some(1e-3),
        Some("MWH") => Some(1e3),
        _ => None,
    }
}

fn start_of(p: Option<&IntervalPeriod>, now: EpochSeconds) -> Option<EpochSeconds> {
    let t = parse_datetime(p?.start.as_deref()?)?;
    // Year 1 stands for "now" (OpenADR 3 user guide).
    Some(if t.year() <= 1 {
        now
    } else {
        t.unix_timestamp()
    })
}

fn duration_of(p: Option<&IntervalPeriod>) -> Option<f64> {
    seconds(p?.duration.as_deref()?)
}

/// Translates `event` (id `event_id`) for `links` at `now`. With no links there is
/// nothing to act on and the translation is empty; otherwise every engine payload must be
/// translatable, or the whole event is refused.
pub fn translate(
    event_id: &str,
    event: &EventRequest,
    links: Vec<Link>,
    now: EpochSeconds,
    config: &EngineConfig,
) -> Result<Translation, OadrError> {
    let mut out = Translation {
        links,
        ..Translation::default()
    };
    out.links.sort();
    out.links.dedup();
    if out.links.is_empty() {
        return Ok(out);
    }
    let units_of = |kind: &str| {
        event
            .payload_descriptors
            .iter()
            .flatten()
            .find(|d| d.payload_type == kind)
            .and_then(|d| d.units.as_deref())
    };
    let base = event.interval_period.as_ref();
    let mut cursor = start_of(base, now);
    // SIMPLE levels and setpoints in OpenADR: a lower priority number is more important;
    // dispatch priorities are the other way round.
    let priority = 255 - event.priority.unwrap_or(255).min(255) as u8;
    let (groups, sites): (Vec<_>, Vec<_>) =
        out.links.iter().partition(|l| matches!(l, Link::Group(_)));
    let site_ids: Vec<String> = sites
        .iter()
        .filter_map(|l| match l {
            Link::Site(s) => Some(s.clone()),
            Link::Group(_) => None,
        })
        .collect();
    let mut targets: Vec<Target> = groups
        .iter()
        .filter_map(|l| match l {
            Link::Group(g) => Some(Target::Group {
                group_id: g.clone(),
            }),
            Link::Site(_) => None,
        })
        .collect();
    if !site_ids.is_empty() {
        targets.push(Target::Sites { site_ids });
    }

    for (i, iv) in event.intervals.iter().enumerate() {
        let own = iv.interval_period.as_ref();
        let start = start_of(own, now).or(cursor);
        let dur = duration_of(own).or_else(|| duration_of(base));
        if let (Some(s), Some(d)) = (start, dur) {
            cursor = Some(s.saturating_add(d as i64));
        } else {
            cursor = None;
        }
        let engine: Vec<_> = iv
            .payloads
            .iter()
            .enumerate()
            .filter(|(_, p)| is_engine_payload(&p.kind))
            .collect();
        if engine.is_empty() {
            continue;
        }
        let field = format!("intervals[{i}]");
        let (Some(start), Some(dur)) = (start, dur) else {
            return Err(OadrError::invalid(
                format!("{field}.intervalPeriod"),
                "an interval carrying limits or dispatch payloads needs a start and a duration (its own or the event's intervalPeriod)",
            ));
        };
        if dur >= INFINITE_SECONDS || dur > u32::MAX as f64 {
            return Err(OadrError::invalid(
                format!("{field}.intervalPeriod.duration"),
                "an interval carrying limits or dispatch payloads must have a finite duration",
            ));
        }
        let dur = dur.ceil() as i64;
        // Intervals that are over ask nothing of the engine any more.
        if start.saturating_add(dur) <= now {
            continue;
        }
        let mut modes = ControlModes::default();
        for (j, p) in engine {
            let pfield = format!("{field}.payloads[{j}].values");
            let value = match p.values.first() {
                Some(Value::Integer(v)) => *v as f64,
                Some(Value::Number(v)) if v.is_finite() => *v,
                _ => {
                    return Err(OadrError::invalid(
                        pfield,
                        format!("a {} payload needs a number as its first value", p.kind),
                    ));
                }
            };
            let units = units_of(&p.kind);
            let bad_units = |what: &str| {
                OadrError::invalid(
                    "payloadDescriptors",
                    format!(
                        "units '{}' of {} are not {what}",
                        units.unwrap_or_default(),
                        p.kind
                    ),
                )
            };
            let request = |kw: f64| DispatchRequest {
                id: format!("oadr3:{event_id}:{}:{}", iv.id, p.kind),
                target: Target::Sites { site_ids: vec![] },
                direction: if kw >= 0.0 {
                    Direction::Discharge
                } else {
                    Direction::Charge
                },
                power_kw: kw.abs(),
                start,
                duration_s: dur,
                ramp: Ramp::Simultaneous,
                priority,
                source: RequestSource::OpenadrEvent {
                    event_id: event_id.to_string(),
                },
                pacing: Default::default(),
            };
            let kw = match p.kind.as_str() {
                "IMPORT_CAPACITY_LIMIT" | "EXPORT_CAPACITY_LIMIT" => {
                    let scale = watts_per(units).ok_or_else(|| bad_units("W, KW or MW"))?;
                    if value < 0.0 {
                        return Err(OadrError::invalid(
                            pfield,
                            format!("a {} cannot be negative, got {value}", p.kind),
                        ));
                    }
                    if p.kind == "IMPORT_CAPACITY_LIMIT" {
                        modes.imp_lim_w = Some(value * scale);
                    } else {
                        modes.exp_lim_w = Some(value * scale);
                    }
                    continue;
                }
                "DISPATCH_SETPOINT" => {
                    value * watts_per(units).ok_or_else(|| bad_units("W, KW or MW"))? / 1e3
                }
                "SIMPLE" => {
                    let level = p.values.first().and_then(|v| match v {
                        Value::Integer(l) => usize::try_from(*l).ok(),
                        _ => None,
                    });
                    match level.and_then(|l| config.simple_level_kw.get(l)) {
                        Some(kw) => *kw,
                        None => {
                            return Err(OadrError::invalid(
                                pfield,
                                format!("a SIMPLE level is an integer 0-3, got {value}"),
                            ));
                        }
                    }
                }
                // CHARGE_STATE_SETPOINT: the energy to move into (positive) or out of
                // (negative) storage over the interval.
                _ => {
                    let scale = kwh_per(units).ok_or_else(|| bad_units("WH, KWH or MWH"))?;
                    -(value * scale) * 3600.0 / dur as f64
                }
            };
            if kw == 0.0 {
                continue;
            }
            for t in &targets {
                let mut r = request(kw);
                r.target = t.clone();
                if let Target::Group { group_id } = t {
                    r.id = format!("{}:{group_id}", r.id);
                }
                out.requests.push(r);
            }
        }
        if !modes.is_empty() {
            out.controls.push(LimitControl {
                interval_id: iv.id,
                start,
                duration_s: dur as u32,
                modes,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: serde_json::Value) -> EventRequest {
        serde_json::from_value(v).unwrap()
    }

    const T0: i64 = 1_907_107_200; // 2030-06-08T00:00:00Z

    #[test]
    fn engine_configuration_is_checked() {
        assert!(EngineConfig::default().check().is_ok());
        let short = EngineConfig {
            simple_level_kw: vec![0.0, 1.0],
            ..Default::default()
        };
        assert!(short.check().is_err());
        let negative = EngineConfig {
            simple_level_kw: vec![0.0, 1.0, -2.0, 3.0],
            ..Default::default()
        };
        assert!(negative.check().is_err());
    }

    #[test]
    fn limits_become_controls_and_setpoints_requests() {
        let e = event(serde_json::json!({
            "programID": "p", "priority": 0,
            "intervalPeriod": {"start": "2030-06-08T00:00:00Z", "duration": "PT1H"},
            "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "W"}],
            "intervals": [
                {"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [3.5]}, {"type": "IMPORT_CAPACITY_LIMIT", "values": [7000]}]},
                {"id": 1, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [-20]}, {"type": "PRICE", "values": [0.3]}]},
                {"id": 2, "payloads": [{"type": "SIMPLE", "values": [2]}, {"type": "CHARGE_STATE_SETPOINT", "values": [5]}]}
            ]
        }));
        let t = translate(
            "e1",
            &e,
            vec![
                Link::Site("s2".into()),
                Link::Group("g".into()),
                Link::Site("s1".into()),
            ],
            T0 - 10,
            &EngineConfig::default(),
        )
        .unwrap();
        assert_eq!(t.controls.len(), 1);
        assert_eq!(t.controls[0].start, T0);
        assert_eq!(t.controls[0].duration_s, 3600);
        assert_eq!(t.controls[0].modes.exp_lim_w, Some(3500.0));
        assert_eq!(t.controls[0].modes.imp_lim_w, Some(7000.0));
        // Three dispatch payloads, each for the group and for the two sites together.
        let got: Vec<_> = t
            .requests
            .iter()
            .map(|r| {
                (
                    r.start - T0,
                    r.direction,
                    r.power_kw,
                    r.target.clone(),
                    r.priority,
                )
            })
            .collect();
        let g = Target::Group {
            group_id: "g".into(),
        };
        let s = Target::Sites {
            site_ids: vec!["s1".into(), "s2".into()],
        };
        assert_eq!(
            got,
            vec![
                (3600, Direction::Charge, 20.0, g.clone(), 255),
                (3600, Direction::Charge, 20.0, s.clone(), 255),
                (7200, Direction::Discharge, 25.0, g.clone(), 255),
                (7200, Direction::Discharge, 25.0, s.clone(), 255),
                (7200, Direction::Charge, 5.0, g, 255),
                (7200, Direction::Charge, 5.0, s, 255),
            ]
        );
    }

    #[test]
    fn untranslatable_events_are_refused_and_unlinked_ones_ignored() {
        let bad = |payload: serde_json::Value, units: &str| {
            event(serde_json::json!({
                "programID": "p",
                "intervalPeriod": {"start": "2030-06-08T00:00:00Z", "duration": "PT1H"},
                "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "EXPORT_CAPACITY_LIMIT", "units": units}],
                "intervals": [{"id": 0, "payloads": [payload]}]
            }))
        };
        let links = || vec![Link::Site("s".into())];
        let cfg = EngineConfig::default();
        for (e, field) in [
            (
                bad(
                    serde_json::json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [-1]}),
                    "KW",
                ),
                "intervals[0].payloads[0].values",
            ),
            (
                bad(
                    serde_json::json!({"type": "EXPORT_CAPACITY_LIMIT", "values": ["x"]}),
                    "KW",
                ),
                "intervals[0].payloads[0].values",
            ),
            (
                bad(
                    serde_json::json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [1]}),
                    "KVAR",
                ),
                "payloadDescriptors",
            ),
            (
                bad(serde_json::json!({"type": "SIMPLE", "values": [7]}), "KW"),
                "intervals[0].payloads[0].values",
            ),
        ] {
            let err = translate("e", &e, links(), T0 - 10, &cfg).unwrap_err();
            assert_eq!(err.0.field.as_deref(), Some(field), "{e:?}");
            // Without a registry link the event asks nothing and nothing is checked.
            assert!(
                translate("e", &e, vec![], T0 - 10, &cfg)
                    .unwrap()
                    .is_empty()
            );
        }
        // Ended intervals are skipped.
        let e = bad(
            serde_json::json!({"type": "EXPORT_CAPACITY_LIMIT", "values": [1]}),
            "KW",
        );
        assert!(
            translate("e", &e, links(), T0 + 3600, &cfg)
                .unwrap()
                .is_empty()
        );
    }
}
