//! Configuration of the OpenADR 3 VTN (`[openadr3]` in the TOML file).

use crate::config::NotificationConfig;
use serde::{Deserialize, Serialize};

/// The OpenADR 3.1 VTN, served on the operator API listener under [`super::PREFIX`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAdr3Config {
    /// Whether to serve the VTN.
    pub enabled: bool,
    /// HMAC-SHA256 key that signs access tokens. Empty: a random key per process, so
    /// tokens do not survive a restart and several nodes cannot share them; set one for
    /// production.
    pub token_secret: String,
    /// Lifetime of issued access tokens, seconds.
    pub token_lifetime_seconds: u64,
    /// Largest accepted request body, bytes (413 above it).
    pub body_limit_bytes: usize,
    /// The OAuth2 clients allowed to obtain tokens at `/auth/token`.
    pub clients: Vec<ClientConfig>,
    /// Webhook delivery: attempts, backoff, timeout.
    pub notifications: NotificationConfig,
    /// Most webhook POSTs in flight at once; further deliveries wait their turn.
    pub max_concurrent_deliveries: usize,
    /// How events reach the engine (`[openadr3.engine]`).
    pub engine: super::events::EngineConfig,
    /// An external OAuth2 issuer whose tokens are accepted beside the built-in ones.
    pub external_issuer: super::jwks::ExternalIssuerConfig,
    /// MQTT notifications through a broker (`[openadr3.mqtt]`).
    pub mqtt: super::mqtt::MqttNotifierConfig,
}

impl Default for OpenAdr3Config {
    fn default() -> Self {
        OpenAdr3Config {
            enabled: false,
            token_secret: String::new(),
            token_lifetime_seconds: 3600,
            body_limit_bytes: 1024 * 1024,
            clients: Vec::new(),
            notifications: NotificationConfig::default(),
            max_concurrent_deliveries: 256,
            engine: Default::default(),
            external_issuer: Default::default(),
            mqtt: Default::default(),
        }
    }
}

/// One OAuth2 client (client credentials grant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_secret: String,
    pub role: ClientRole,
}

/// What a client is: the utility's business logic or a VEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRole {
    Bl,
    Ven,
}
