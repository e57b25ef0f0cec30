//! `[greenbutton]`: Switchyard as a Green Button Connect My Data Third Party. The Data
//! Custodian registers Switchyard and hands out a client id and secret, and names its
//! OAuth2 endpoints; everything else has a working default (docs/configuration.md).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The Green Button Connect client (`[greenbutton]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreenButtonConfig {
    /// The client id the Data Custodian registered for Switchyard.
    pub client_id: String,
    /// Its client secret (better set with SWITCHYARD_GREENBUTTON_CLIENT_SECRET).
    pub client_secret: Option<String>,
    /// The Data Custodian's OAuth2 authorization endpoint (the customer's browser goes here).
    pub authorization_endpoint: String,
    /// The Data Custodian's OAuth2 token endpoint.
    pub token_endpoint: String,
    /// Base URL of the Data Custodian's resource server, up to and without `/espi/1_1/...`
    /// (for Batch/Bulk and ApplicationInformation; subscriptions use the resourceURI the
    /// token response names).
    pub resource_server: String,
    /// The redirect URI registered with the Data Custodian.
    pub redirect_uri: String,
    /// The scope asked for (ESPI function blocks and durations, as the Data Custodian lists
    /// them in its ApplicationInformation).
    pub scope: String,
    /// The scope of client-credentials tokens (Bulk, ApplicationInformation).
    pub client_credentials_scope: Option<String>,
    /// Extra PEM trust anchors for the Data Custodian's TLS certificate, beside the public
    /// web roots.
    pub ca_file: Option<PathBuf>,
    /// CSV of `usage_point,meter` rows (as for `switchyard import greenbutton --mapping`).
    pub mapping: Option<PathBuf>,
    /// Query parameter of incremental fetches: `updated-min` (also picks up corrected data)
    /// or `published-min`.
    pub incremental_parameter: String,
    /// Entries asked for per page (`max-results`).
    pub page_size: u32,
    /// Retries of one request after HTTP 429, 5xx or a broken connection.
    pub max_retries: u32,
    /// First wait after a failure, milliseconds; doubled on each further failure.
    pub initial_backoff_ms: u64,
    /// Longest wait Switchyard accepts (a longer Retry-After ends the fetch), seconds.
    pub max_retry_wait_seconds: u64,
    /// Refresh an access token when it expires within this many seconds.
    pub refresh_margin_seconds: i64,
    /// Timeout of one HTTP request, seconds.
    pub request_timeout_seconds: u64,
    /// Largest feed page accepted, bytes.
    pub max_page_bytes: usize,
    /// `switchyard serve` fetches every stored authorization this often (0: never).
    pub fetch_interval_seconds: u64,
    /// How long an authorization started with `authorize` (or the API) waits for the
    /// customer's browser to come back to the redirect URI, seconds.
    pub authorization_timeout_seconds: u64,
    /// Serve the redirect URI's path on the operator listener (`switchyard serve`), so that
    /// the customer's browser completes the authorization without the operator.
    pub serve_redirect: bool,
    /// Path of the notification endpoint on the operator listener, the Third Party notify
    /// URI registered with the Data Custodian (served only with `notification_token`).
    pub notification_path: String,
    /// The bearer token the Data Custodian sends on notifications (better set with
    /// SWITCHYARD_GREENBUTTON_NOTIFICATION_TOKEN). Unset: no notification endpoint.
    pub notification_token: Option<String>,
    /// Largest notification (BatchList) body accepted, bytes.
    pub notification_body_limit_bytes: usize,
}

impl Default for GreenButtonConfig {
    fn default() -> Self {
        GreenButtonConfig {
            client_id: String::new(),
            client_secret: None,
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            resource_server: String::new(),
            redirect_uri: String::new(),
            scope: String::new(),
            client_credentials_scope: None,
            ca_file: None,
            mapping: None,
            incremental_parameter: "updated-min".into(),
            page_size: 500,
            max_retries: 5,
            initial_backoff_ms: 1000,
            max_retry_wait_seconds: 300,
            refresh_margin_seconds: 60,
            request_timeout_seconds: 60,
            max_page_bytes: 256 * 1024 * 1024,
            fetch_interval_seconds: 0,
            authorization_timeout_seconds: 900,
            serve_redirect: true,
            notification_path: "/greenbutton/notify".into(),
            notification_token: None,
            notification_body_limit_bytes: 64 * 1024,
        }
    }
}
