//! SunSpec over Modbus TCP: the Modbus client side of Switchyard's plant-network adapter.
//!
//! - [`model`]: the official SunSpec model definitions, embedded from `schemas/sunspec/`.
//! - [`layout`]: register offsets computed from a definition (groups, counts, sizes).
//! - [`decode`]: registers to values with scale factors, sentinels as absent, SI units.
//! - [`client`]: discovery of the SunSpec map and reads of whole models over Modbus TCP.
//! - [`control`]: engine commands as register writes, verified by reading back.
//! - [`poller`]: the poll scheduler (intervals, jitter, timeouts, backoff, bounded
//!   connections) emitting telemetry readings.
//! - [`readings`]: decoded models to normalized telemetry readings.
//! - [`status`]: each polled device's live state (last success, last failure, backoff,
//!   next poll), fed by the poller's events, read by the operator API.
//! - [`sim`]: a SunSpec device simulator serving Modbus TCP, for tests, the demo and
//!   installers without hardware.

pub mod client;
pub mod config;
pub mod control;
pub mod decode;
pub mod layout;
pub mod model;
pub mod poller;
pub mod readings;
pub mod sim;
pub mod status;

pub use client::{Device, DeviceMap, ModelEntry};
pub use decode::{DecodedModel, Point, Value};

use std::net::SocketAddr;
use std::time::Duration;
pub use tokio_modbus::ExceptionCode;

/// Why talking to a SunSpec device failed. The device refusing a request (a Modbus
/// exception) is kept apart from the link failing (connect, I/O, timeout): the first is
/// an answer, the second is silence, and a poller treats them differently.
#[derive(Debug, thiserror::Error)]
pub enum SunSpecError {
    /// The device answered with a Modbus exception.
    #[error("{addr} unit {unit} refused {request}: Modbus exception {code}")]
    Refused {
        addr: SocketAddr,
        unit: u8,
        request: String,
        code: ExceptionCode,
    },
    /// Connecting or talking to the device failed (I/O, framing).
    #[error("link to {addr} failed ({context}): {reason}")]
    Link {
        addr: SocketAddr,
        context: String,
        reason: String,
    },
    /// No answer in time.
    #[error("{addr} unit {unit} did not answer {request} within {timeout:?}")]
    Timeout {
        addr: SocketAddr,
        unit: u8,
        request: String,
        timeout: Duration,
    },
    /// The 'SunS' marker is at none of the standard base addresses.
    #[error("{addr} unit {unit}: no SunSpec map ('SunS' not found at 40000, 0 or 50000)")]
    NotSunSpec { addr: SocketAddr, unit: u8 },
    /// The model chain did not reach its end marker within the bound.
    #[error(
        "{addr} unit {unit}: the model chain from {base} has no end marker within {limit} models (last model {last_id} at {last_address})"
    )]
    EndlessChain {
        addr: SocketAddr,
        unit: u8,
        base: u16,
        limit: usize,
        last_id: u16,
        last_address: u32,
    },
    /// The model chain runs past the end of the register space.
    #[error(
        "{addr} unit {unit}: model {id} at {address} with length {length} runs past register 65535"
    )]
    ChainOverflow {
        addr: SocketAddr,
        unit: u8,
        id: u16,
        address: u16,
        length: u16,
    },
    /// A model's registers do not fit its definition.
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    /// A value cannot be written as asked.
    #[error(transparent)]
    Encode(#[from] decode::EncodeError),
    /// The device has none of the models a control needs.
    #[error("{addr} unit {unit}: cannot {command}: the device has none of models {needs:?}")]
    Unsupported {
        addr: SocketAddr,
        unit: u8,
        command: String,
        needs: Vec<u16>,
    },
    /// A command argument outside what it means.
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// The write was acknowledged but reading back shows a different value.
    #[error(
        "{addr} unit {unit}: wrote {point} = {wrote} to model {model} but the device reads back {read}"
    )]
    NotApplied {
        addr: SocketAddr,
        unit: u8,
        model: u16,
        point: String,
        wrote: String,
        read: String,
    },
}

impl SunSpecError {
    /// True when the link failed (no answer, I/O error): retry with backoff, reconnect.
    pub fn is_link_failure(&self) -> bool {
        matches!(
            self,
            SunSpecError::Link { .. } | SunSpecError::Timeout { .. }
        )
    }

    /// True when the device answered with a Modbus exception.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SunSpecError::Refused { .. })
    }
}
