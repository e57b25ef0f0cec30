//! One typed configuration: a TOML file plus environment overrides, with documented
//! defaults (docs/configuration.md lists every key).

use crate::api::auth::{Role, TokenConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
    pub sep2: Sep2Config,
    pub openadr3: crate::protocol::openadr3::config::OpenAdr3Config,
    pub mqtt: crate::protocol::mqtt::MqttConfig,
    pub sunspec: crate::protocol::sunspec::config::SunSpecConfig,
    pub dispatch: crate::dispatch::execute::ExecutorConfig,
    pub greenbutton: crate::protocol::greenbutton::config::GreenButtonConfig,
    pub openadr2: crate::protocol::openadr2::OpenAdr2Config,
}

/// The IEEE 2030.5 server (mutual TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sep2Config {
    /// Whether to run the 2030.5 listener.
    pub enabled: bool,
    /// Address of the 2030.5 listener.
    pub listen: SocketAddr,
    /// PEM file of the CA certificates that client certificates must chain to.
    pub ca_cert: PathBuf,
    /// PEM file of the server certificate (ECDSA P-256).
    pub server_cert: PathBuf,
    /// PEM file of the server's private key.
    pub server_key: PathBuf,
    /// pollRate announced to clients, seconds.
    pub poll_rate_seconds: u32,
    /// postRate announced on MirrorUsagePoints: how often clients should post readings,
    /// seconds.
    pub post_rate_seconds: u32,
    /// CSIP-AUS namespace to write: `v1.3`, `v1.2`, or `none` for plain CSIP.
    pub csipaus: String,
    /// Largest accepted 2030.5 request body, bytes.
    pub body_limit_bytes: usize,
    /// Whether clients may register EndDevices in band (POST /edev). `false` for
    /// deployments that register out of band only (through the operator API); a POST to
    /// the EndDeviceList is then refused with 403.
    pub in_band_registration: bool,
    /// Plain-HTTP listener for deployments behind a TLS-terminating proxy; off when unset.
    pub proxy_listen: Option<SocketAddr>,
    /// Header in which the proxy forwards the client certificate (URL-encoded or plain PEM).
    pub proxy_header: String,
    /// Proxy addresses allowed to send that header; requests from anywhere else are refused.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Delivery of notifications to subscribers.
    pub notifications: NotificationConfig,
    /// Longest time a rendered poll document (DERControlList, DERProgramList, ...) is
    /// served from memory, seconds; writes through this server invalidate it at once, this
    /// bounds how late writes by other processes are seen. 0 turns the cache off.
    pub poll_cache_seconds: u32,
    /// Memory for cached poll documents, bytes.
    pub poll_cache_bytes: usize,
}

/// How the 2030.5 server delivers notifications (`[sep2.notifications]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    /// Attempts per notification, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry, milliseconds; each further retry waits twice as long.
    pub initial_backoff_ms: u64,
    /// Longest wait between retries, seconds.
    pub max_backoff_seconds: u64,
    /// Longest time one POST may take (connecting included), seconds.
    pub timeout_seconds: u64,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            max_attempts: 12,
            initial_backoff_ms: 1000,
            max_backoff_seconds: 60,
            timeout_seconds: 10,
        }
    }
}

impl Default for Sep2Config {
    fn default() -> Self {
        Sep2Config {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            ca_cert: PathBuf::from("certs/dev/ca.pem"),
            server_cert: PathBuf::from("certs/dev/server.pem"),
            server_key: PathBuf::from("certs/dev/server.key"),
            poll_rate_seconds: 900,
            post_rate_seconds: 300,
            csipaus: "v1.3".into(),
            body_limit_bytes: 64 * 1024,
            in_band_registration: true,
            proxy_listen: None,
            proxy_header: "x-client-cert".into(),
            trusted_proxies: Vec::new(),
            notifications: NotificationConfig::default(),
            poll_cache_seconds: 60,
            poll_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The operator API listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the operator API.
    pub listen: SocketAddr,
    /// Largest JSON request body, bytes.
    pub body_limit_bytes: usize,
    /// Largest CSV import body, bytes.
    pub import_limit_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal, seconds.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            import_limit_bytes: 256 * 1024 * 1024,
            shutdown_grace_seconds: 30,
        }
    }
}

/// The database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` or `postgres://...`; empty means `sqlite:<data_dir>/switchyard.db`.
    pub url: String,
    /// Directory for the embedded database and generated files.
    pub data_dir: PathBuf,
    /// Pool size.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            data_dir: PathBuf::from("data"),
            max_connections: 8,
        }
    }
}

impl StoreConfig {
    /// The database URL to open, creating the data directory for the SQLite default.
    pub fn resolved_url(&self) -> Result<String, ConfigError> {
        if !self.url.is_empty() {
            return Ok(self.url.clone());
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|e| ConfigError::Io {
            path: self.data_dir.clone(),
            source: e,
        })?;
        Ok(format!(
            "sqlite:{}?mode=rwc",
            self.data_dir.join("switchyard.db").display()
        ))
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` env-filter directive, e.g. `info,switchyard=debug`.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Operator API access.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub tokens: Vec<TokenConfig>,
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
}

/// Environment variables that override the file, in the order they are applied.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("SWITCHYARD_LISTEN", "server.listen"),
    ("SWITCHYARD_BODY_LIMIT_BYTES", "server.body_limit_bytes"),
    ("SWITCHYARD_DATABASE_URL", "store.url"),
    ("SWITCHYARD_DATA_DIR", "store.data_dir"),
    ("SWITCHYARD_MAX_CONNECTIONS", "store.max_connections"),
    ("SWITCHYARD_LOG", "log.filter"),
    ("SWITCHYARD_LOG_FORMAT", "log.format"),
    ("SWITCHYARD_SEP2_LISTEN", "sep2.listen"),
    ("SWITCHYARD_MQTT_PASSWORD", "mqtt.password"),
    (
        "SWITCHYARD_GREENBUTTON_CLIENT_SECRET",
        "greenbutton.client_secret",
    ),
    (
        "SWITCHYARD_GREENBUTTON_NOTIFICATION_TOKEN",
        "greenbutton.notification_token",
    ),
    (
        "SWITCHYARD_OPERATOR_TOKEN",
        "adds an operator token named 'env-operator'",
    ),
    (
        "SWITCHYARD_READONLY_TOKEN",
        "adds a read-only token named 'env-readonly'",
    ),
];

impl Config {
    /// Reads `path` (or starts from defaults) and applies overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Io {
                    path: p.to_path_buf(),
                    source: e,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                message: format!("'{v}': {e}"),
            })
        }
        if let Some(v) = env("SWITCHYARD_LISTEN") {
            self.server.listen = parse("SWITCHYARD_LISTEN", &v)?;
        }
        if let Some(v) = env("SWITCHYARD_BODY_LIMIT_BYTES") {
            self.server.body_limit_bytes = parse("SWITCHYARD_BODY_LIMIT_BYTES", &v)?;
        }
        if let Some(v) = env("SWITCHYARD_SEP2_LISTEN") {
            self.sep2.listen = parse("SWITCHYARD_SEP2_LISTEN", &v)?;
        }
        if let Some(v) = env("SWITCHYARD_MQTT_PASSWORD") {
            self.mqtt.password = Some(v);
        }
        if let Some(v) = env("SWITCHYARD_GREENBUTTON_CLIENT_SECRET") {
            self.greenbutton.client_secret = Some(v);
        }
        if let Some(v) = env("SWITCHYARD_GREENBUTTON_NOTIFICATION_TOKEN") {
            self.greenbutton.notification_token = Some(v);
        }
        if let Some(v) = env("SWITCHYARD_DATABASE_URL") {
            self.store.url = v;
        }
        if let Some(v) = env("SWITCHYARD_DATA_DIR") {
            self.store.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("SWITCHYARD_MAX_CONNECTIONS") {
            self.store.max_connections = parse("SWITCHYARD_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = env("SWITCHYARD_LOG") {
            self.log.filter = v;
        }
        if let Some(v) = env("SWITCHYARD_LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: "SWITCHYARD_LOG_FORMAT",
                        message: format!("'{v}': expected text or json"),
                    });
                }
            };
        }
        for (var, name, role) in [
            ("SWITCHYARD_OPERATOR_TOKEN", "env-operator", Role::Operator),
            ("SWITCHYARD_READONLY_TOKEN", "env-readonly", Role::ReadOnly),
        ] {
            if let Some(token) = env(var).filter(|t| !t.is_empty()) {
                self.api.tokens.push(TokenConfig {
                    name: name.into(),
                    token,
                    role,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"0.0.0.0:9000\"\n[[api.tokens]]\nname = \"a\"\ntoken = \"t\"\nrole = \"read_only\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("SWITCHYARD_DATABASE_URL", "postgres://x/y"),
            ("SWITCHYARD_OPERATOR_TOKEN", "op"),
        ]
        .into();
        let c = Config::load(Some(&path), |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.store.url, "postgres://x/y");
        assert_eq!(c.api.tokens.len(), 2);
        assert_eq!(c.api.tokens[1].role, Role::Operator);
        assert_eq!(
            c.server.body_limit_bytes,
            1024 * 1024,
            "defaults fill the rest"
        );
    }

    #[test]
    fn mqtt_section_and_password_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[mqtt]\nenabled = true\nhost = \"broker.example\"\nport = 8883\nusername = \"sy\"\n[mqtt.tls]\nenabled = true\nca_cert = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), |k| {
            (k == "SWITCHYARD_MQTT_PASSWORD").then(|| "s3cret".into())
        })
        .unwrap();
        assert!(c.mqtt.enabled && c.mqtt.tls.enabled);
        assert_eq!(
            (c.mqtt.host.as_str(), c.mqtt.port),
            ("broker.example", 8883)
        );
        assert_eq!(c.mqtt.password.as_deref(), Some("s3cret"));
        assert!(c.mqtt.ack_after_store, "defaults fill the rest");
        std::fs::write(&path, "[mqtt]\nbroker = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("broker"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisten_addr = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err =
            Config::load(None, |k| (k == "SWITCHYARD_LISTEN").then(|| "nope".into())).unwrap_err();
        assert!(err.to_string().contains("SWITCHYARD_LISTEN"), "{err}");
    }
}
