//! The MQTT wire format: plain serde types for telemetry in, commands out and
//! acknowledgements back. No I/O and no engine logic here; see docs/mqtt.md for the
//! documented scheme these types implement.

use crate::domain::EpochSeconds;
use crate::envelope::model::ControlModes;
use serde::{Deserialize, Serialize};

/// One telemetry message: what one device measured at one instant.
///
/// A gateway that batches publishes a JSON array of these in one MQTT message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMessage {
    /// The device that measured; becomes the reading's `source_id`.
    pub device_id: String,
    /// When it was measured, epoch seconds UTC.
    pub ts: EpochSeconds,
    /// The measured values, each with its unit.
    pub measurements: Vec<Measurement>,
    /// How far the values can be trusted (`measured` when absent); one of the telemetry
    /// quality names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
}

/// One measured value as the device reports it, in the device's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// What was measured: `active_power`, `reactive_power`, `energy_imported`,
    /// `energy_exported`, `state_of_charge`, `voltage` or `frequency`; or a status:
    /// `operating_state`, `grid_connected` or `storage_state`.
    pub measurand: String,
    /// The value in `unit`; for a status, the state's name (`"fault"`) or, for
    /// `grid_connected`, `true` or `false`.
    pub value: Value,
    /// The unit of `value`, e.g. `W`, `kW`, `kvar`, `kWh`, `%`, `V`, `Hz`. A status has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A measurement's value: a number for a quantity, a name or a flag for a status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Name(String),
    Flag(bool),
}

// By hand rather than `#[serde(untagged)]`: an untagged enum buffers every value into an
// intermediate tree before trying each variant, on the hottest path of the ingest, and
// its error ("data did not match any variant") would not say what was expected.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, a state name or true/false")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Name(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Flag(v))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Number(v)
    }
}

/// A command to one device, published on its command topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandMessage {
    /// Correlates the device's acknowledgement with this command (a UUID).
    pub command_id: String,
    /// The device the command is for (also the last segment of the topic).
    pub device_id: String,
    /// When the engine issued it, epoch seconds UTC.
    pub issued_at: EpochSeconds,
    /// The operating modes the device should apply, in the engine's units (W, %/s, Wh).
    pub modes: ControlModes,
}

/// What a device answers to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// The device applied the command.
    Applied,
    /// The device refused it (out of its capability, locked out locally, ...).
    Rejected,
}

/// A device's acknowledgement, published on its ack topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckMessage {
    /// The `command_id` of the command being acknowledged.
    pub command_id: String,
    pub status: AckStatus,
    /// Why the device refused, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
