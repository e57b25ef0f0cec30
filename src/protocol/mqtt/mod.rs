//! MQTT: telemetry from device fleets in, engine commands out (docs/mqtt.md).
//!
//! - [`payload`]: the wire format (serde types): telemetry messages, commands, acks.
//! - [`decode`]: payloads to engine readings, with units converted to SI at the edge and a
//!   precise reason for every refusal.
//! - [`topics`]: the topic scheme.
//! - [`quarantine`]: the table of refused messages.
//! - [`config`]: the `[mqtt]` configuration and the client options it makes.
//! - [`failure`]: why the broker connection failed (TLS, refused login, network).
//! - [`ingest`]: the broker connection (rumqttc), the batched writer, command publishing.

pub mod config;
pub mod decode;
pub mod failure;
pub mod ingest;
pub mod payload;
pub mod quarantine;
pub mod topics;

pub use config::{MqttConfig, MqttTlsConfig};
pub use failure::{ConnectionFailure, FailureKind};
pub use ingest::{IngestMonitor, IngestStats, MqttError, MqttIngest, PendingCommand, ReadingSink};
