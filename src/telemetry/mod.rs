//! Telemetry: measured values from every source, in SI units, in one store.
//!
//! Protocols translate what devices report into [`Reading`]s at the edge (the 2030.5
//! metering mirror, SunSpec polls, MQTT messages, OpenADR reports, Green Button imports);
//! this module knows none of them. A reading is identified by its source, what it measures
//! and when (`source_id`, [`Measurand`], `instant`): the same reading delivered twice, by a
//! retried POST for example, is stored once, so nothing downstream double-counts it.
//! Device statuses are readings too, under the state measurands whose values are the codes
//! of [`status`].
//!
//! Readings are validated before anything is written ([`Reading::validate`]): a value that
//! is not a finite number (or, for a state, not one of its codes), or an instant that
//! cannot be right (before 2000, or more than a day ahead of the server's clock), is
//! refused with a [`TelemetryError`] that names the problem, and a batch with one bad
//! reading stores nothing.

pub mod align;
pub mod gaps;
pub mod revisions;
pub mod status;
pub mod store;
pub mod writer;

use crate::domain::{EpochSeconds, string_enum};
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use store::{InsertOutcome, insert_batch, insert_in, query};
pub use writer::{TelemetryWriter, WriterSettings, WriterStats};

/// How far ahead of the server's clock a reading may be stamped, seconds. Device clocks
/// drift and time zones get misconfigured, but a reading from more than a day in the future
/// is a wrong clock, not a measurement.
pub const MAX_FUTURE_SECONDS: EpochSeconds = 86_400;

/// The earliest instant a reading may carry: 2000-01-01T00:00:00Z. Devices that lost their
/// clock report times near 1970; such readings would land in the wrong place in every
/// series, so they are refused rather than stored.
pub const EARLIEST_INSTANT: EpochSeconds = 946_684_800;

string_enum!(
    /// What a reading measures, each in one SI unit so that values from different
    /// protocols can be compared and summed.
    Measurand, "measurand", {
        /// Active power in W; positive when power flows into the site (import), negative
        /// when it flows out (export).
        ActivePower => "active_power_w",
        /// Reactive power in var, with the same sign convention as active power.
        ReactivePower => "reactive_power_var",
        /// Energy imported into the site in Wh: the cumulative register, not an interval
        /// amount.
        EnergyImported => "energy_imported_wh",
        /// Energy exported from the site in Wh: the cumulative register.
        EnergyExported => "energy_exported_wh",
        /// Energy imported into the site during one interval, in Wh, stamped at the
        /// interval's start (revenue interval data, e.g. Green Button).
        IntervalEnergyImported => "interval_energy_imported_wh",
        /// Energy exported from the site during one interval, in Wh, stamped at the
        /// interval's start.
        IntervalEnergyExported => "interval_energy_exported_wh",
        /// Battery state of charge in percent (0-100).
        StateOfCharge => "state_of_charge_pct",
        /// RMS voltage in V.
        Voltage => "voltage_v",
        /// Frequency in Hz.
        Frequency => "frequency_hz",
        /// What the device is doing: the code of a [`status::OperatingState`] (1 `off` to
        /// 8 `standby`).
        OperatingState => "operating_state",
        /// Whether the device is connected to the grid: 1 connected, 0 disconnected.
        GridConnected => "grid_connected",
        /// What a storage device's energy is doing: the code of a
        /// [`status::StorageState`] (1 `off` to 7 `testing`).
        StorageState => "storage_state",
    }
);

impl Measurand {
    /// True for the measurands whose value codes a state (see [`status`]) rather than a
    /// quantity: they are held, not averaged, and never summed.
    pub fn is_state(self) -> bool {
        matches!(
            self,
            Measurand::OperatingState | Measurand::GridConnected | Measurand::StorageState
        )
    }
}

string_enum!(
    /// Which kind of ingest produced a reading.
    SourceKind, "source_kind", {
        /// An IEEE 2030.5 MirrorUsagePoint posted by a device or aggregator.
        Sep2Mirror => "sep2_mirror",
        /// An IEEE 2030.5 DERStatus written by a device.
        Sep2Der => "sep2_der",
        /// A SunSpec Modbus poll.
        SunSpec => "sunspec",
        /// An MQTT telemetry message.
        Mqtt => "mqtt",
        /// An OpenADR report.
        OpenAdr => "openadr",
        /// A Green Button (ESPI) import.
        GreenButton => "green_button",
    }
);

string_enum!(
    /// How far a value can be trusted.
    Quality, "quality", {
        /// Measured and passed the source's own checks.
        Measured => "measured",
        /// Computed from other data (interpolation, a reference day, a forecast).
        Estimated => "estimated",
        /// Replaced or edited by a person.
        Substituted => "substituted",
        /// The source said no value was available.
        Missing => "missing",
        /// Arrived after the time by which it was due.
        Late => "late",
        /// Failed a plausibility check at the source.
        OutOfRange => "out_of_range",
    }
);

/// One measured value, as the engine sees it whatever protocol delivered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reading {
    /// The device, meter or channel that measured it, unique across sources (each ingest
    /// chooses a stable scheme for its ids).
    pub source_id: String,
    /// Which ingest delivered it.
    pub source_kind: SourceKind,
    /// What was measured; fixes the unit of `value`.
    pub measurand: Measurand,
    /// When it was measured, epoch seconds UTC (the start of the interval for interval
    /// data).
    pub instant: EpochSeconds,
    /// The value in the measurand's SI unit.
    pub value: f64,
    /// How far it can be trusted.
    pub quality: Quality,
}

/// Why readings were refused or could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A reading without a source cannot be attributed or deduplicated.
    #[error("a {measurand} reading at {instant} has no source id")]
    NoSource {
        measurand: Measurand,
        instant: EpochSeconds,
    },
    /// NaN or an infinity: nothing can be computed from it.
    #[error("{measurand} of {source_id} at {instant}: value {value} is not a finite number")]
    NotFinite {
        source_id: String,
        measurand: Measurand,
        instant: EpochSeconds,
        value: f64,
    },
    /// A state measurand whose value is not one of its codes.
    #[error(
        "{measurand} of {source_id} at {instant}: {value} is not a state code (expected {})",
        status::expected_codes(*measurand)
    )]
    NotAState {
        source_id: String,
        measurand: Measurand,
        instant: EpochSeconds,
        value: f64,
    },
    /// Stamped more than [`MAX_FUTURE_SECONDS`] after the server's clock.
    #[error(
        "{measurand} of {source_id}: instant {instant} is more than {MAX_FUTURE_SECONDS} s after the server's time {now}; check the device clock"
    )]
    InFuture {
        source_id: String,
        measurand: Measurand,
        instant: EpochSeconds,
        now: EpochSeconds,
    },
    /// Stamped before [`EARLIEST_INSTANT`].
    #[error(
        "{measurand} of {source_id}: instant {instant} is before 2000-01-01T00:00:00Z ({EARLIEST_INSTANT}); check the device clock"
    )]
    BeforeEarliest {
        source_id: String,
        measurand: Measurand,
        instant: EpochSeconds,
    },
    /// A query whose range ends before it starts.
    #[error("time range ends ({to}) before it starts ({from})")]
    EmptyRange {
        from: EpochSeconds,
        to: EpochSeconds,
    },
    /// A report range longer than its limit.
    #[error("time range of {seconds} s is longer than the {max} s allowed")]
    RangeTooLong { seconds: i64, max: i64 },
    /// A setting that must be a positive number of seconds.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    /// Alignment refused its range or rules.
    #[error(transparent)]
    Align(#[from] align::AlignError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The telemetry writer's transaction failed; nothing of the job was stored.
    #[error("telemetry not stored: {0}")]
    WriteFailed(String),
    /// The telemetry writer has stopped (the server is shutting down).
    #[error("the telemetry writer has stopped")]
    WriterClosed,
}

impl From<sqlx::Error> for TelemetryError {
    fn from(e: sqlx::Error) -> Self {
        TelemetryError::Store(StoreError::Database(e))
    }
}

impl TelemetryError {
    /// True when the readings themselves were refused (the caller sent something wrong),
    /// false when storage failed.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(
            self,
            TelemetryError::Store(_)
                | TelemetryError::WriteFailed(_)
                | TelemetryError::WriterClosed
        )
    }
}

impl Reading {
    /// Checks that the reading can be stored, given the current time `now`.
    pub fn validate(&self, now: EpochSeconds) -> Result<(), TelemetryError> {
        if self.source_id.trim().is_empty() {
            return Err(TelemetryError::NoSource {
                measurand: self.measurand,
                instant: self.instant,
            });
        }
        if !self.value.is_finite() {
            return Err(TelemetryError::NotFinite {
                source_id: self.source_id.clone(),
                measurand: self.measurand,
                instant: self.instant,
                value: self.value,
            });
        }
        if !status::check_code(self.measurand, self.value) {
            return Err(TelemetryError::NotAState {
                source_id: self.source_id.clone(),
                measurand: self.measurand,
                instant: self.instant,
                value: self.value,
            });
        }
        if self.instant > now.saturating_add(MAX_FUTURE_SECONDS) {
            return Err(TelemetryError::InFuture {
                source_id: self.source_id.clone(),
                measurand: self.measurand,
                instant: self.instant,
                now,
            });
        }
        if self.instant < EARLIEST_INSTANT {
            return Err(TelemetryError::BeforeEarliest {
                source_id: self.source_id.clone(),
                measurand: self.measurand,
                instant: self.instant,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: EpochSeconds = 1_750_000_000;

    fn reading(value: f64, instant: EpochSeconds) -> Reading {
        Reading {
            source_id: "m1".into(),
            source_kind: SourceKind::Sep2Mirror,
            measurand: Measurand::ActivePower,
            instant,
            value,
            quality: Quality::Measured,
        }
    }

    #[test]
    fn accepts_plausible_readings() {
        reading(-1500.0, NOW).validate(NOW).unwrap();
        reading(0.0, NOW + MAX_FUTURE_SECONDS)
            .validate(NOW)
            .unwrap();
        reading(1.0, EARLIEST_INSTANT).validate(NOW).unwrap();
    }

    #[test]
    fn refuses_values_that_are_not_numbers() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = reading(v, NOW).validate(NOW).unwrap_err();
            assert!(matches!(err, TelemetryError::NotFinite { .. }), "{err}");
            assert!(err.to_string().contains("active_power_w of m1"), "{err}");
        }
    }

    #[test]
    fn refuses_absurd_instants() {
        let err = reading(1.0, NOW + MAX_FUTURE_SECONDS + 1)
            .validate(NOW)
            .unwrap_err();
        assert!(matches!(err, TelemetryError::InFuture { .. }), "{err}");
        assert!(err.to_string().contains("device clock"), "{err}");
        let err = reading(1.0, 0).validate(NOW).unwrap_err();
        assert!(
            matches!(err, TelemetryError::BeforeEarliest { .. }),
            "{err}"
        );
        // Arithmetic near the limits of the type does not wrap into acceptance.
        assert!(reading(1.0, i64::MAX).validate(i64::MAX).is_ok());
        assert!(reading(1.0, i64::MIN).validate(NOW).is_err());
    }

    #[test]
    fn refuses_state_readings_that_name_no_state() {
        let mut r = reading(7.0, NOW);
        r.measurand = Measurand::OperatingState;
        r.validate(NOW).unwrap();
        r.value = 0.0;
        let err = r.validate(NOW).unwrap_err();
        assert!(matches!(err, TelemetryError::NotAState { .. }), "{err}");
        assert!(err.to_string().contains("7 fault"), "{err}");
        r.measurand = Measurand::GridConnected;
        r.validate(NOW).unwrap();
        r.value = 2.0;
        assert!(r.validate(NOW).is_err());
    }

    #[test]
    fn refuses_readings_without_a_source() {
        let mut r = reading(1.0, NOW);
        r.source_id = " ".into();
        assert!(matches!(
            r.validate(NOW),
            Err(TelemetryError::NoSource { .. })
        ));
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(Measurand::EnergyExported.as_str(), "energy_exported_wh");
        assert_eq!(
            "out_of_range".parse::<Quality>().unwrap(),
            Quality::OutOfRange
        );
        assert!("watts".parse::<Measurand>().is_err());
    }
}
