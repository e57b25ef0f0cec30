//! The `[mqtt]` configuration: broker address, credentials, TLS, topics and ingest limits,
//! and how it becomes rumqttc options (docs/configuration.md lists every key).

use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// MQTT telemetry ingest and command publishing (`[mqtt]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Whether `switchyard serve` connects to the broker.
    pub enabled: bool,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883 plain, usually 8883 with TLS).
    pub port: u16,
    /// MQTT client id. Fixed, because the broker keeps the persistent session (the
    /// subscriptions and the messages queued while Switchyard was away) under it; two
    /// Switchyard nodes must use different ids.
    pub client_id: String,
    /// User name, when the broker requires one.
    pub username: Option<String>,
    /// Password (or set `SWITCHYARD_MQTT_PASSWORD` rather than writing it in the file).
    pub password: Option<String>,
    /// First segment of every topic (see docs/mqtt.md).
    pub topic_prefix: String,
    /// MQTT keep-alive, seconds.
    pub keep_alive_seconds: u64,
    /// Wait before the first reconnect attempt, milliseconds; doubles up to the maximum.
    pub reconnect_initial_ms: u64,
    /// Longest wait between reconnect attempts, seconds.
    pub reconnect_max_seconds: u64,
    /// Most telemetry messages stored in one database transaction.
    pub max_batch: usize,
    /// MQTT 5 Receive Maximum announced to the broker: how many QoS 1 messages it may send
    /// before Switchyard has acknowledged them. With acknowledgements after the commit this
    /// window, divided by the commit latency, bounds the ingest rate; it also bounds the
    /// memory held by messages waiting for their commit (about this many payloads). The
    /// default is the protocol's largest, 65,535: the more messages wait for a commit, the
    /// more readings per device each commit holds, and SQLite's cost per commit grows with
    /// the devices it touches, not with their readings (docs/benchmarks.md, 2026-11-25).
    pub receive_maximum: u16,
    /// MQTT 5 Session Expiry Interval, seconds: how long the broker keeps the session (the
    /// subscriptions and the telemetry queued for Switchyard) after a disconnect.
    /// `4294967295` means it never expires, as an MQTT 3.1.1 persistent session.
    pub session_expiry_seconds: u32,
    /// Acknowledge messages to the broker only once they are stored (at-least-once from
    /// broker to database). When false, messages are acknowledged on receipt: faster with
    /// a broker's small in-flight window, but a crash loses the batch being written.
    pub ack_after_store: bool,
    /// Largest accepted MQTT packet, bytes (a gateway batch must fit).
    pub max_packet_bytes: usize,
    /// Quarantined messages older than this are deleted, days.
    pub quarantine_retention_days: u32,
    /// TLS to the broker.
    pub tls: MqttTlsConfig,
}

/// TLS to the broker (`[mqtt.tls]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttTlsConfig {
    /// Connect with TLS.
    pub enabled: bool,
    /// PEM file of the CA certificates the broker's certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for brokers that require client authentication.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "switchyard".into(),
            username: None,
            password: None,
            topic_prefix: "switchyard".into(),
            keep_alive_seconds: 30,
            reconnect_initial_ms: 100,
            reconnect_max_seconds: 30,
            max_batch: 5000,
            receive_maximum: u16::MAX,
            session_expiry_seconds: u32::MAX,
            ack_after_store: true,
            max_packet_bytes: 1024 * 1024,
            quarantine_retention_days: 30,
            tls: MqttTlsConfig::default(),
        }
    }
}

/// Why the MQTT configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MqttConfigError {
    #[error("mqtt.tls: cannot read {what} at {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mqtt.tls: {0}")]
    Tls(String),
    #[error("mqtt: {0}")]
    Invalid(String),
}

fn read(path: &PathBuf, what: &'static str) -> Result<Vec<u8>, MqttConfigError> {
    std::fs::read(path).map_err(|source| MqttConfigError::Read {
        what,
        path: path.clone(),
        source,
    })
}

impl MqttConfig {
    /// The rumqttc (MQTT 5) options: persistent session (clean start off, the configured
    /// session expiry) under the fixed client id, and manual acknowledgements so that a
    /// message is acknowledged to the broker only once it is stored.
    ///
    /// MQTT 5 rather than 3.1.1 for the Receive Maximum: a 3.1.1 client gets the broker's
    /// own in-flight limit (Mosquitto: 20 messages), which with acknowledgements after the
    /// commit caps the ingest at 20 messages per commit round trip.
    pub fn options(&self) -> Result<MqttOptions, MqttConfigError> {
        if self.client_id.is_empty() {
            return Err(MqttConfigError::Invalid(
                "client_id must not be empty".into(),
            ));
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.contains(['+', '#']) {
            return Err(MqttConfigError::Invalid(format!(
                "topic_prefix '{}' must be non-empty and free of wildcards",
                self.topic_prefix
            )));
        }
        if self.receive_maximum == 0 {
            return Err(MqttConfigError::Invalid(
                "receive_maximum must be at least 1".into(),
            ));
        }
        if self.max_batch == 0 {
            return Err(MqttConfigError::Invalid(
                "max_batch must be at least 1".into(),
            ));
        }
        let mut o = MqttOptions::new(&self.client_id, &self.host, self.port);
        let max_packet = u32::try_from(self.max_packet_bytes).unwrap_or(u32::MAX);
        o.set_clean_start(false)
            .set_session_expiry_interval(Some(self.session_expiry_seconds))
            .set_receive_maximum(Some(self.receive_maximum))
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(self.keep_alive_seconds.max(5)))
            .set_max_packet_size(Some(max_packet))
            // Room for one acknowledgement per message of a full batch, so the ingest never
            // waits on its own request queue.
            .set_request_channel_capacity(self.max_batch.max(1024) * 2);
        if let Some(user) = &self.username {
            o.set_credentials(user, self.password.clone().unwrap_or_default());
        }
        if self.tls.enabled {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(self.tls_client_config()?),
            )));
        }
        Ok(o)
    }

    fn tls_client_config(&self) -> Result<rustls::ClientConfig, MqttConfigError> {
        let t = &self.tls;
        let ca_path = t.ca_cert.as_ref().ok_or_else(|| {
            MqttConfigError::Tls("ca_cert is required when TLS is enabled".into())
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&read(ca_path, "CA certificate")?) {
            let cert = cert.map_err(|e| MqttConfigError::Tls(format!("ca_cert: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| MqttConfigError::Tls(format!("ca_cert: {e}")))?;
        }
        if roots.is_empty() {
            return Err(MqttConfigError::Tls("ca_cert holds no certificate".into()));
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots);
        match (&t.client_cert, &t.client_key) {
            (Some(c), Some(k)) => {
                let certs = CertificateDer::pem_slice_iter(&read(c, "client certificate")?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| MqttConfigError::Tls(format!("client_cert: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(&read(k, "client key")?)
                    .map_err(|e| MqttConfigError::Tls(format!("client_key: {e}")))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| MqttConfigError::Tls(e.to_string()))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(MqttConfigError::Tls(
                "client_cert and client_key go together".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_persistent_session_on_localhost() {
        let o = MqttConfig::default().options().unwrap();
        assert!(!o.clean_start());
        assert_eq!(o.session_expiry_interval(), Some(u32::MAX));
        assert_eq!(o.receive_maximum(), Some(65_535));
        assert_eq!(o.client_id(), "switchyard");
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
    }

    #[test]
    fn refuses_unusable_settings() {
        let c = MqttConfig {
            topic_prefix: "a/#".into(),
            ..Default::default()
        };
        assert!(c.options().unwrap_err().to_string().contains("wildcards"));
        let c = MqttConfig {
            receive_maximum: 0,
            ..Default::default()
        };
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .contains("receive_maximum must be at least 1")
        );
        let mut c = MqttConfig::default();
        c.tls.enabled = true;
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .contains("ca_cert is required")
        );
        c.tls.ca_cert = Some("/nonexistent/ca.pem".into());
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .contains("cannot read CA certificate")
        );
    }
}
