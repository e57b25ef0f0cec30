//! `[sunspec]`: the SunSpec devices `switchyard serve` polls, and the poller's limits.
//!
//! Each `[[sunspec.devices]]` entry becomes one [`DeviceSpec`]; the readings go to the
//! telemetry store under the entry's `source_id`. The configuration is checked when the
//! server starts, so a typo in an address is an error at start, not a silent device.

use super::poller::{DeviceSpec, PollerConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The SunSpec poller (`[sunspec]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SunSpecConfig {
    /// Whether `switchyard serve` polls the devices below.
    pub enabled: bool,
    /// The most Modbus TCP connections open at once, over all gateways.
    pub max_connections: usize,
    /// The longest wait between attempts after repeated failures, seconds.
    pub max_backoff_seconds: u64,
    /// The devices to poll.
    pub devices: Vec<SunSpecDevice>,
}

impl Default for SunSpecConfig {
    fn default() -> Self {
        let p = PollerConfig::default();
        SunSpecConfig {
            enabled: false,
            max_connections: p.max_connections,
            max_backoff_seconds: p.max_backoff.as_secs(),
            devices: Vec::new(),
        }
    }
}

/// One polled device (`[[sunspec.devices]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SunSpecDevice {
    /// Telemetry source id of its readings (for example the DER's id in the registry).
    pub source_id: String,
    /// Modbus TCP address of the device or its gateway, `IP:PORT`.
    pub address: SocketAddr,
    /// Modbus unit id behind that address.
    #[serde(default = "default_unit")]
    pub unit: u8,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Up to this many milliseconds of random delay added to each wait.
    #[serde(default = "default_jitter")]
    pub jitter_ms: u64,
    /// Bound on connecting and on each Modbus request, milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_unit() -> u8 {
    1
}
fn default_interval() -> u64 {
    10
}
fn default_jitter() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    3000
}

/// Why a `[sunspec]` section cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SunSpecConfigError {
    #[error("sunspec.max_connections must be at least 1")]
    NoConnections,
    #[error("sunspec.devices[{0}]: source_id must not be empty")]
    EmptySourceId(usize),
    #[error("sunspec.devices[{0}]: source_id '{1}' is already used by another device")]
    DuplicateSourceId(usize, String),
    #[error("sunspec.devices[{0}]: interval_seconds and timeout_ms must be at least 1")]
    ZeroPeriod(usize),
}

impl SunSpecConfig {
    /// The poller's limits and devices, or the first problem with them.
    pub fn poller(&self) -> Result<(PollerConfig, Vec<DeviceSpec>), SunSpecConfigError> {
        if self.max_connections == 0 {
            return Err(SunSpecConfigError::NoConnections);
        }
        let mut seen = std::collections::HashSet::new();
        let mut devices = Vec::with_capacity(self.devices.len());
        for (i, d) in self.devices.iter().enumerate() {
            if d.source_id.trim().is_empty() {
                return Err(SunSpecConfigError::EmptySourceId(i));
            }
            if !seen.insert(d.source_id.as_str()) {
                return Err(SunSpecConfigError::DuplicateSourceId(
                    i,
                    d.source_id.clone(),
                ));
            }
            if d.interval_seconds == 0 || d.timeout_ms == 0 {
                return Err(SunSpecConfigError::ZeroPeriod(i));
            }
            devices.push(DeviceSpec {
                source_id: d.source_id.clone(),
                gateway: d.address,
                unit: d.unit,
                interval: Duration::from_secs(d.interval_seconds),
                jitter: Duration::from_millis(d.jitter_ms),
                timeout: Duration::from_millis(d.timeout_ms),
            });
        }
        let limits = PollerConfig {
            max_connections: self.max_connections,
            max_backoff: Duration::from_secs(self.max_backoff_seconds.max(1)),
        };
        Ok((limits, devices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> SunSpecDevice {
        toml::from_str(&format!(
            "source_id = \"{id}\"\naddress = \"127.0.0.1:1502\""
        ))
        .unwrap()
    }

    #[test]
    fn defaults_fill_a_device_and_bad_sections_are_named() {
        let d = device("inv-1");
        assert_eq!((d.unit, d.interval_seconds, d.timeout_ms), (1, 10, 3000));
        let mut c = SunSpecConfig {
            enabled: true,
            devices: vec![d.clone(), device("inv-2")],
            ..SunSpecConfig::default()
        };
        let (limits, specs) = c.poller().unwrap();
        assert_eq!(limits.max_connections, 8);
        assert_eq!(specs[1].source_id, "inv-2");
        assert_eq!(specs[0].interval, Duration::from_secs(10));

        c.devices.push(d);
        assert_eq!(
            c.poller().unwrap_err(),
            SunSpecConfigError::DuplicateSourceId(2, "inv-1".into())
        );
        c.devices.pop();
        c.devices[1].interval_seconds = 0;
        assert_eq!(c.poller().unwrap_err(), SunSpecConfigError::ZeroPeriod(1));
        c.devices[1].interval_seconds = 5;
        c.devices[0].source_id = " ".into();
        assert_eq!(
            c.poller().unwrap_err(),
            SunSpecConfigError::EmptySourceId(0)
        );
        c.devices[0].source_id = "x".into();
        c.max_connections = 0;
        assert_eq!(c.poller().unwrap_err(), SunSpecConfigError::NoConnections);
    }

    #[test]
    fn an_address_that_is_not_ip_and_port_is_refused_when_read() {
        let r: Result<SunSpecDevice, _> =
            toml::from_str("source_id = \"a\"\naddress = \"inverter.local\"");
        assert!(r.is_err());
    }
}
