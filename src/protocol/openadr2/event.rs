//! Events as the operator defines them (`POST /api/v1/openadr2/events`), their checks, and
//! how one becomes an `oadr:oadrEvent` for a VEN at a given time.

use super::model::{
    ActivePeriod, ActiveProperties, Components, DtStart, DurationProp, EiEvent, EiMarketContext,
    EventDescriptor, EventSignal, EventSignals, Interval, Intervals, OadrEvent, PayloadFloat,
    SignalPayload, Target, Uid,
};
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};

/// Signal names of the 2.0b profile B schema (`eiEventSignal/signalName`).
pub const SIGNAL_NAMES: &[&str] = &[
    "SIMPLE",
    "simple",
    "ELECTRICITY_PRICE",
    "ENERGY_PRICE",
    "DEMAND_CHARGE",
    "BID_PRICE",
    "BID_LOAD",
    "BID_ENERGY",
    "CHARGE_STATE",
    "LOAD_DISPATCH",
    "LOAD_CONTROL",
];

/// Signal types of the schema (`signalTypeEnumeratedType`).
pub const SIGNAL_TYPES: &[&str] = &[
    "delta",
    "level",
    "multiplier",
    "price",
    "priceMultiplier",
    "priceRelative",
    "setpoint",
    "x-loadControlCapacity",
    "x-loadControlLevelOffset",
    "x-loadControlPercentOffset",
    "x-loadControlSetpoint",
];

/// One interval of an event's signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInterval {
    /// Length, seconds (> 0).
    pub duration_seconds: i64,
    /// The signal's value during the interval.
    pub value: f64,
}

/// What the operator sends to create an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDefinition {
    /// Unique id; generated when absent.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The program's market context URI; the configured default when absent.
    #[serde(default)]
    pub market_context: Option<String>,
    /// `SIMPLE`, `ELECTRICITY_PRICE`, `LOAD_DISPATCH`, ... (2.0b signalName).
    pub signal_name: String,
    /// `level`, `price`, `setpoint`, ... (2.0b signalType).
    pub signal_type: String,
    /// Start of the first interval, epoch seconds UTC.
    pub start: EpochSeconds,
    /// Consecutive intervals from `start`.
    pub intervals: Vec<EventInterval>,
    /// venIDs of the targeted VENs; empty or absent: every registered VEN.
    #[serde(default)]
    pub ven_ids: Vec<String>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub test_event: bool,
    /// `always` (default) or `never`.
    #[serde(default)]
    pub response_required: Option<String>,
}

/// Why an event definition was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("an event needs at least one interval")]
    NoIntervals,
    #[error("interval {0} has a duration of {1} s; intervals must last longer than zero")]
    BadDuration(usize, i64),
    #[error("interval {0} has a value that is not a finite number")]
    NotFinite(usize),
    #[error("unknown signalName '{0}'")]
    SignalName(String),
    #[error("unknown signalType '{0}'")]
    SignalType(String),
    #[error("responseRequired must be 'always' or 'never', got '{0}'")]
    ResponseRequired(String),
    #[error("start {0} is before 2000-01-01")]
    Start(EpochSeconds),
    #[error("event_id must be 1-128 characters without whitespace")]
    EventId,
}

impl EventDefinition {
    /// Checks everything that does not need the store.
    pub fn validate(&self) -> Result<(), EventError> {
        if let Some(id) = &self.event_id
            && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace))
        {
            return Err(EventError::EventId);
        }
        if self.intervals.is_empty() {
            return Err(EventError::NoIntervals);
        }
        for (i, iv) in self.intervals.iter().enumerate() {
            if iv.duration_seconds <= 0 {
                return Err(EventError::BadDuration(i, iv.duration_seconds));
            }
            if !iv.value.is_finite() {
                return Err(EventError::NotFinite(i));
            }
        }
        if !SIGNAL_NAMES.contains(&self.signal_name.as_str()) {
            return Err(EventError::SignalName(self.signal_name.clone()));
        }
        if !SIGNAL_TYPES.contains(&self.signal_type.as_str()) {
            return Err(EventError::SignalType(self.signal_type.clone()));
        }
        if let Some(r) = &self.response_required
            && r != "always"
            && r != "never"
        {
            return Err(EventError::ResponseRequired(r.clone()));
        }
        if self.start < crate::telemetry::EARLIEST_INSTANT {
            return Err(EventError::Start(self.start));
        }
        Ok(())
    }

    /// Total length, seconds.
    pub fn duration(&self) -> i64 {
        self.intervals.iter().map(|i| i.duration_seconds).sum()
    }

    /// When the last interval ends.
    pub fn end(&self) -> EpochSeconds {
        self.start + self.duration()
    }
}

/// A stored event: the definition with the VTN's bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub event_id: String,
    pub modification_number: u32,
    /// `active` or `cancelled`.
    pub status: String,
    pub created_at: EpochSeconds,
    pub market_context: String,
    pub definition: EventDefinition,
}

/// An ISO 8601 duration of whole seconds (`PT900S`).
pub fn iso_duration(seconds: i64) -> String {
    format!("PT{seconds}S")
}

/// RFC 3339 UTC with a `Z`, as the schema's date-time wants.
pub fn datetime(t: EpochSeconds) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The 2.0b eventStatus of `e` at `now`.
pub fn status_at(e: &StoredEvent, now: EpochSeconds) -> &'static str {
    if e.status == "cancelled" {
        "cancelled"
    } else if now < e.definition.start {
        "far"
    } else if now < e.definition.end() {
        "active"
    } else {
        "completed"
    }
}

/// The `oadr:oadrEvent` for `e` at `now`.
pub fn to_oadr(e: &StoredEvent, now: EpochSeconds) -> OadrEvent {
    let d = &e.definition;
    let intervals = d
        .intervals
        .iter()
        .enumerate()
        .map(|(i, iv)| Interval {
            dtstart: None,
            duration: Some(DurationProp {
                duration: iso_duration(iv.duration_seconds),
            }),
            uid: Some(Uid {
                text: i.to_string(),
            }),
            signal_payload: Some(SignalPayload {
                payload_float: PayloadFloat { value: iv.value },
            }),
            report_payloads: Vec::new(),
        })
        .collect();
    let current = if status_at(e, now) == "active" {
        let mut t = d.start;
        d.intervals.iter().find_map(|iv| {
            t += iv.duration_seconds;
            (now < t).then_some(iv.value)
        })
    } else {
        None
    };
    OadrEvent {
        event: EiEvent {
            descriptor: EventDescriptor {
                event_id: e.event_id.clone(),
                modification_number: e.modification_number,
                modification_date_time: None,
                modification_reason: None,
                priority: d.priority,
                market_context: EiMarketContext {
                    market_context: e.market_context.clone(),
                },
                created_date_time: datetime(e.created_at),
                event_status: status_at(e, now).into(),
                test_event: d.test_event.then(|| "true".into()),
                vtn_comment: None,
            },
            active_period: ActivePeriod {
                properties: ActiveProperties {
                    dtstart: DtStart {
                        date_time: datetime(d.start),
                    },
                    duration: DurationProp {
                        duration: iso_duration(d.duration()),
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
                    intervals: Intervals { intervals },
                    target: None,
                    signal_name: d.signal_name.clone(),
                    signal_type: d.signal_type.clone(),
                    signal_id: format!("{}-0", e.event_id),
                    power_real: None,
                    current_value: current.map(|v| super::model::CurrentValue {
                        payload_float: PayloadFloat { value: v },
                    }),
                }],
            },
            target: Target {
                ven_ids: d.ven_ids.clone(),
                ..Target::default()
            },
        },
        response_required: d
            .response_required
            .clone()
            .unwrap_or_else(|| "always".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> EventDefinition {
        EventDefinition {
            event_id: None,
            market_context: None,
            signal_name: "SIMPLE".into(),
            signal_type: "level".into(),
            start: 1_700_000_000,
            intervals: vec![
                EventInterval {
                    duration_seconds: 600,
                    value: 1.0,
                },
                EventInterval {
                    duration_seconds: 300,
                    value: 2.0,
                },
            ],
            ven_ids: vec![],
            priority: None,
            test_event: false,
            response_required: None,
        }
    }

    #[test]
    fn validation_refuses_inverted_and_zero_intervals_and_unknown_enums() {
        assert_eq!(def().validate(), Ok(()));
        let mut d = def();
        d.intervals[1].duration_seconds = 0;
        assert_eq!(d.validate(), Err(EventError::BadDuration(1, 0)));
        d.intervals[1].duration_seconds = -5;
        assert_eq!(d.validate(), Err(EventError::BadDuration(1, -5)));
        let mut d = def();
        d.signal_name = "FOO".into();
        assert!(matches!(d.validate(), Err(EventError::SignalName(_))));
        let mut d = def();
        d.intervals.clear();
        assert_eq!(d.validate(), Err(EventError::NoIntervals));
    }

    #[test]
    fn status_and_current_value_follow_the_clock() {
        let e = StoredEvent {
            event_id: "e1".into(),
            modification_number: 0,
            status: "active".into(),
            created_at: 1_699_999_000,
            market_context: "http://mc".into(),
            definition: def(),
        };
        assert_eq!(status_at(&e, 1_699_999_999), "far");
        let o = to_oadr(&e, 1_700_000_700);
        assert_eq!(o.event.descriptor.event_status, "active");
        assert_eq!(
            o.event.signals.signals[0]
                .current_value
                .as_ref()
                .unwrap()
                .payload_float
                .value,
            2.0
        );
        assert_eq!(status_at(&e, 1_700_000_900), "completed");
        assert_eq!(o.event.active_period.properties.duration.duration, "PT900S");
    }
}
