//! What a utility's OpenADR 2.0b event asks of the engine: the dispatch requests of one
//! event for the upstream VEN's group. Pure: no I/O, no clock.
//!
//! Signals Switchyard acts on (any other signal makes the whole event unmappable, and the
//! VEN opts out of it naming the reason):
//!
//! | signalName / signalType | request per interval |
//! |---|---|
//! | `SIMPLE` / `level` | level 0-3 (an integer) -> `simple_level_kw[level]` kW, discharge (shed) |
//! | `LOAD_DISPATCH` / `delta` | the change of the group's load in kW (by the signal's `power:powerReal` units and SI scale; kW when it has none): negative -> discharge (less load), positive -> charge (more load) |
//!
//! Each interval with a non-zero request becomes one request from the interval's start
//! (its own dtstart, else the end of the previous interval, the first from the event's
//! dtstart) for its duration. A LOAD_DISPATCH `setpoint` would need the group's baseline
//! and is not mapped.

use super::model::{EiEvent, EventSignal};
use crate::dispatch::{Direction, DispatchRequest, Pacing, Ramp, RequestSource, Target};
use crate::domain::EpochSeconds;
use crate::protocol::openadr3::duration::{parse_datetime, seconds};
use serde::{Deserialize, Serialize};

/// How signal values become kW.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalMapping {
    /// kW shed for SIMPLE levels 0, 1, 2 and 3.
    pub simple_level_kw: [f64; 4],
}

impl Default for SignalMapping {
    fn default() -> Self {
        SignalMapping {
            simple_level_kw: [0.0, 5.0, 10.0, 20.0],
        }
    }
}

/// Why an event cannot be dispatched; sent to the VTN as the opt-out's reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    #[error("the event has no signal")]
    NoSignal,
    #[error(
        "signal {signal}: {name}/{kind} is not dispatched by this VEN (SIMPLE level and LOAD_DISPATCH delta are)"
    )]
    Unsupported {
        signal: String,
        name: String,
        kind: String,
    },
    #[error("event dtstart '{0}' is not an RFC 3339 date-time")]
    BadStart(String),
    #[error("signal {signal} interval {index}: {what}")]
    BadInterval {
        signal: String,
        index: usize,
        what: String,
    },
    #[error("signal {signal}: units '{units}' (scale '{scale}') are not real power in W")]
    BadUnits {
        signal: String,
        units: String,
        scale: String,
    },
}

fn interval_error(signal: &EventSignal, index: usize, what: impl Into<String>) -> MapError {
    MapError::BadInterval {
        signal: signal.signal_id.clone(),
        index,
        what: what.into(),
    }
}

/// The power of one signal value as (direction, kW), or why it has none.
type Converter = Box<dyn Fn(f64) -> Result<Option<(Direction, f64)>, String>>;

fn converter(signal: &EventSignal, m: &SignalMapping) -> Result<Converter, MapError> {
    match (signal.signal_name.as_str(), signal.signal_type.as_str()) {
        ("SIMPLE", "level") => {
            let levels = m.simple_level_kw;
            Ok(Box::new(move |v: f64| {
                if v.fract() != 0.0 || !(0.0..=3.0).contains(&v) {
                    return Err(format!("a SIMPLE level is 0, 1, 2 or 3, got {v}"));
                }
                let kw = levels[v as usize];
                Ok((kw > 0.0).then_some((Direction::Discharge, kw)))
            }))
        }
        ("LOAD_DISPATCH", "delta") => {
            let kw_per_unit = match &signal.power_real {
                None => 1.0,
                Some(b) => {
                    let scale = match b.si_scale_code.as_deref().unwrap_or("none") {
                        "none" => 1e-3,
                        "k" => 1.0,
                        "M" => 1e3,
                        _ => f64::NAN,
                    };
                    if b.item_units != "W" || scale.is_nan() {
                        return Err(MapError::BadUnits {
                            signal: signal.signal_id.clone(),
                            units: b.item_units.clone(),
                            scale: b.si_scale_code.clone().unwrap_or_default(),
                        });
                    }
                    scale
                }
            };
            Ok(Box::new(move |v: f64| {
                let kw = v * kw_per_unit;
                Ok(if kw < 0.0 {
                    Some((Direction::Discharge, -kw))
                } else if kw > 0.0 {
                    Some((Direction::Charge, kw))
                } else {
                    None
                })
            }))
        }
        (name, kind) => Err(MapError::Unsupported {
            signal: signal.signal_id.clone(),
            name: name.to_string(),
            kind: kind.to_string(),
        }),
    }
}

fn instant(s: &str) -> Option<EpochSeconds> {
    parse_datetime(s).map(|t| t.unix_timestamp())
}

/// The dispatch requests of `event` for `group_id` (see the module documentation); every
/// signal must be mappable, or none of the event is.
pub fn map_event(
    event: &EiEvent,
    group_id: &str,
    m: &SignalMapping,
) -> Result<Vec<DispatchRequest>, MapError> {
    let d = &event.descriptor;
    let dtstart = &event.active_period.properties.dtstart.date_time;
    let start = instant(dtstart).ok_or_else(|| MapError::BadStart(dtstart.clone()))?;
    if event.signals.signals.is_empty() {
        return Err(MapError::NoSignal);
    }
    let priority = d.priority.unwrap_or(0).min(255) as u8;
    let mut out = Vec::new();
    for signal in &event.signals.signals {
        let convert = converter(signal, m)?;
        let mut cursor = start;
        for (i, iv) in signal.intervals.intervals.iter().enumerate() {
            let from = match &iv.dtstart {
                Some(t) => instant(&t.date_time)
                    .ok_or_else(|| interval_error(signal, i, "dtstart is not RFC 3339"))?,
                None => cursor,
            };
            let duration = iv
                .duration
                .as_ref()
                .and_then(|d| seconds(&d.duration))
                .ok_or_else(|| interval_error(signal, i, "no valid duration"))?;
            if !(duration > 0.0 && duration < u32::MAX as f64) {
                return Err(interval_error(
                    signal,
                    i,
                    format!("duration must be positive and finite, got {duration} s"),
                ));
            }
            let duration = duration.ceil() as i64;
            cursor = from + duration;
            let value = iv
                .signal_payload
                .as_ref()
                .map(|p| p.payload_float.value)
                .ok_or_else(|| interval_error(signal, i, "no signalPayload"))?;
            if !value.is_finite() {
                return Err(interval_error(signal, i, "value is not a finite number"));
            }
            let Some((direction, kw)) = convert(value).map_err(|w| interval_error(signal, i, w))?
            else {
                continue;
            };
            out.push(DispatchRequest {
                id: format!(
                    "oadr2:{}:{}:{}:{i}",
                    d.event_id, d.modification_number, signal.signal_id
                ),
                target: Target::Group {
                    group_id: group_id.to_string(),
                },
                direction,
                power_kw: kw,
                start: from,
                duration_s: duration,
                ramp: Ramp::Simultaneous,
                priority,
                source: RequestSource::OpenadrEvent {
                    event_id: d.event_id.clone(),
                },
                pacing: Pacing::default(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openadr2::model::*;

    fn event(name: &str, kind: &str, intervals: &[(&str, Option<f64>)]) -> EiEvent {
        EiEvent {
            descriptor: EventDescriptor {
                event_id: "ev".into(),
                modification_number: 2,
                modification_date_time: None,
                modification_reason: None,
                priority: Some(4),
                market_context: EiMarketContext {
                    market_context: "http://mc".into(),
                },
                created_date_time: "2030-01-01T00:00:00Z".into(),
                event_status: "far".into(),
                test_event: None,
                vtn_comment: None,
            },
            active_period: ActivePeriod {
                properties: ActiveProperties {
                    dtstart: DtStart {
                        date_time: "2030-01-01T12:00:00Z".into(),
                    },
                    duration: DurationProp {
                        duration: "PT1H".into(),
                    },
                    tolerance: None,
                    notification: None,
                    ramp_up: None,
                    recovery: None,
                },
                components: Components {},
            },
            signals: EventSignals {
                signals: vec![EventSignal {
                    intervals: Intervals {
                        intervals: intervals
                            .iter()
                            .map(|(d, v)| Interval {
                                dtstart: None,
                                duration: Some(DurationProp {
                                    duration: d.to_string(),
                                }),
                                uid: None,
                                signal_payload: v.map(|value| SignalPayload {
                                    payload_float: PayloadFloat { value },
                                }),
                                report_payloads: vec![],
                            })
                            .collect(),
                    },
                    target: None,
                    signal_name: name.into(),
                    signal_type: kind.into(),
                    signal_id: "s0".into(),
                    power_real: None,
                    current_value: None,
                }],
            },
            target: crate::protocol::openadr2::model::Target::default(),
        }
    }

    const T0: EpochSeconds = 1_893_499_200; // 2030-01-01T12:00:00Z

    #[test]
    fn simple_levels_become_discharge_requests_back_to_back() {
        let e = event(
            "SIMPLE",
            "level",
            &[
                ("PT15M", Some(2.0)),
                ("PT10M", Some(0.0)),
                ("PT5M", Some(3.0)),
            ],
        );
        let got = map_event(&e, "g", &SignalMapping::default()).unwrap();
        let brief: Vec<_> = got
            .iter()
            .map(|r| (r.start - T0, r.duration_s, r.direction, r.power_kw))
            .collect();
        assert_eq!(
            brief,
            vec![
                (0, 900, Direction::Discharge, 10.0),
                (1500, 300, Direction::Discharge, 20.0)
            ]
        );
        assert_eq!(got[0].priority, 4);
        assert_eq!(got[0].id, "oadr2:ev:2:s0:0");
        assert_eq!(
            got[0].source,
            RequestSource::OpenadrEvent {
                event_id: "ev".into()
            }
        );
        assert_eq!(
            got[0].target,
            crate::dispatch::Target::Group {
                group_id: "g".into()
            }
        );
    }

    #[test]
    fn load_dispatch_delta_uses_units_and_sign() {
        let mut e = event(
            "LOAD_DISPATCH",
            "delta",
            &[("PT1H", Some(-40.0)), ("PT1H", Some(2500.0))],
        );
        let got = map_event(&e, "g", &SignalMapping::default()).unwrap();
        assert_eq!(
            (got[0].direction, got[0].power_kw),
            (Direction::Discharge, 40.0)
        );
        e.signals.signals[0].power_real = Some(ItemBase {
            item_description: "RealPower".into(),
            item_units: "W".into(),
            si_scale_code: Some("none".into()),
            power_attributes: None,
        });
        let got = map_event(&e, "g", &SignalMapping::default()).unwrap();
        assert_eq!(
            (got[1].direction, got[1].power_kw),
            (Direction::Charge, 2.5)
        );
        e.signals.signals[0].power_real.as_mut().unwrap().item_units = "VAR".into();
        assert!(matches!(
            map_event(&e, "g", &SignalMapping::default()),
            Err(MapError::BadUnits { .. })
        ));
    }

    #[test]
    fn unmappable_events_name_the_reason() {
        let m = SignalMapping::default();
        let price = event("ELECTRICITY_PRICE", "price", &[("PT1H", Some(0.3))]);
        let e = map_event(&price, "g", &m).unwrap_err();
        assert!(e.to_string().contains("ELECTRICITY_PRICE/price"), "{e}");
        let setpoint = event("LOAD_DISPATCH", "setpoint", &[("PT1H", Some(10.0))]);
        assert!(matches!(
            map_event(&setpoint, "g", &m),
            Err(MapError::Unsupported { .. })
        ));
        for (d, v, want) in [
            ("PT1H", Some(7.0), "0, 1, 2 or 3"),
            ("PT1H", Some(1.5), "0, 1, 2 or 3"),
            ("PT0S", Some(1.0), "positive"),
            ("-PT1H", Some(1.0), "positive"),
            ("soon", Some(1.0), "no valid duration"),
            ("PT1H", None, "no signalPayload"),
            ("PT1H", Some(f64::NAN), "finite"),
        ] {
            let e = map_event(&event("SIMPLE", "level", &[(d, v)]), "g", &m).unwrap_err();
            assert!(e.to_string().contains(want), "{d} {v:?}: {e}");
        }
        let mut bad_start = event("SIMPLE", "level", &[("PT1H", Some(1.0))]);
        bad_start.active_period.properties.dtstart.date_time = "tomorrow".into();
        assert_eq!(
            map_event(&bad_start, "g", &m),
            Err(MapError::BadStart("tomorrow".into()))
        );
        let mut none = bad_start.clone();
        none.active_period.properties.dtstart.date_time = "2030-01-01T12:00:00Z".into();
        none.signals.signals.clear();
        assert_eq!(map_event(&none, "g", &m), Err(MapError::NoSignal));
    }
}
