//! MQTT notifications as OpenADR 3.1 defines them: the VTN publishes the notification
//! object of every create, update and delete to broker topics, and clients learn the topic
//! names from `GET /notifiers` and `GET /notifiers/mqtt/topics/...`.
//!
//! The document fixes the endpoints and the payload (the `notification` object, JSON) but
//! leaves topic names to the VTN, suggesting `{objectType}s/{operation}`. Ours follow that
//! shape under a configured prefix (default `OpenADR/3.1.0/`), lower-case operations:
//!
//! | endpoint | topics (`<op>` = create, update, delete; `+` = all) |
//! |---|---|
//! | `programs` | `programs/<op>` |
//! | `programs/{programID}` | `programs/{programID}/<op>` (update, delete) |
//! | `events` | `events/<op>` |
//! | `programs/{programID}/events` | `programs/{programID}/events/<op>` |
//! | `reports`, `subscriptions`, `vens`, `resources` | `reports/<op>`, ... |
//! | `vens/{venID}` | `vens/{venID}/<op>` (update, delete) |
//! | `vens/{venID}/events`, `/programs`, `/resources` | `vens/{venID}/events/<op>`, ... |
//!
//! Publishing never waits: messages go to the MQTT client's queue (QoS 1) and a full queue
//! drops the message with a warning, so a slow or absent broker never holds up the API.
//! Who may subscribe to what is the broker's to enforce (its ACLs); the VTN only names
//! topics, and answers the topic endpoints with the same scoping as the objects.

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `[openadr3.mqtt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttNotifierConfig {
    /// Whether to publish notifications and offer the MQTT notifier.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Prepended to every topic name.
    pub topic_prefix: String,
    /// The broker URIs clients are told to connect to (`GET /notifiers`); default
    /// `mqtt://<host>:<port>`.
    pub uris: Vec<String>,
    /// Messages waiting for the broker before new ones are dropped.
    pub queue_capacity: usize,
}

impl Default for MqttNotifierConfig {
    fn default() -> Self {
        MqttNotifierConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "switchyard-openadr3-vtn".into(),
            username: None,
            password: None,
            topic_prefix: "OpenADR/3.1.0/".into(),
            uris: Vec::new(),
            queue_capacity: 10_000,
        }
    }
}

impl MqttNotifierConfig {
    /// The URIs announced to clients.
    pub fn announced_uris(&self) -> Vec<String> {
        if self.uris.is_empty() {
            vec![format!("mqtt://{}:{}", self.host, self.port)]
        } else {
            self.uris.clone()
        }
    }

    /// Checks the configuration at start-up.
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.host.is_empty() || self.client_id.is_empty() {
            return Err("openadr3.mqtt: host and client_id are required".into());
        }
        if self.topic_prefix.contains(['+', '#']) {
            return Err("openadr3.mqtt.topic_prefix: must not contain MQTT wildcards".into());
        }
        Ok(())
    }
}

/// Publishes notifications.
#[derive(Clone)]
pub struct MqttNotifier {
    client: AsyncClient,
    prefix: String,
}

/// Starts the MQTT connection; the task keeps it up (reconnecting after a second) until
/// `shutdown`.
pub fn spawn(
    config: &MqttNotifierConfig,
    mut shutdown: watch::Receiver<bool>,
) -> (MqttNotifier, JoinHandle<()>) {
    let mut o = MqttOptions::new(&config.client_id, &config.host, config.port);
    o.set_keep_alive(Duration::from_secs(30));
    if let (Some(u), Some(p)) = (&config.username, &config.password) {
        o.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(o, config.queue_capacity.max(16));
    let closing = client.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    let _ = closing.try_disconnect();
                    return;
                }
                e = eventloop.poll() => {
                    if let Err(e) = e {
                        tracing::warn!(error = %e, "OpenADR 3 MQTT notifier: broker connection lost; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    (
        MqttNotifier {
            client,
            prefix: config.topic_prefix.clone(),
        },
        task,
    )
}

impl MqttNotifier {
    /// Queues `body` on the topic `suffix` (below the prefix).
    pub fn publish(&self, suffix: &str, body: &[u8]) {
        let topic = format!("{}{suffix}", self.prefix);
        if let Err(e) = self
            .client
            .try_publish(&topic, QoS::AtLeastOnce, false, body.to_vec())
        {
            tracing::warn!(topic, error = %e, "OpenADR 3 MQTT notification dropped");
        }
    }
}

/// The lower-case operation name used in topics.
pub fn op_name(op: super::model::Operation) -> &'static str {
    use super::model::Operation;
    match op {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        // READ is never published.
        _ => "read",
    }
}

/// The `notifierTopicsResponse` for the topics below `path` (no trailing slash).
pub fn topics(prefix: &str, path: &str, with_create: bool) -> serde_json::Value {
    let t = |op: &str| format!("{prefix}{path}/{op}");
    let mut topics = serde_json::json!({
        "UPDATE": t("update"),
        "DELETE": t("delete"),
        "ALL": t("+"),
    });
    if with_create {
        topics["CREATE"] = t("create").into();
    }
    serde_json::json!({ "topics": topics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_configuration() {
        assert_eq!(
            topics("P/", "vens/v1", false),
            serde_json::json!({"topics": {"UPDATE": "P/vens/v1/update",
                "DELETE": "P/vens/v1/delete", "ALL": "P/vens/v1/+"}})
        );
        let mut c = MqttNotifierConfig {
            enabled: true,
            ..Default::default()
        };
        assert!(c.check().is_ok());
        assert_eq!(c.announced_uris(), ["mqtt://127.0.0.1:1883"]);
        c.topic_prefix = "a/#/".into();
        assert!(c.check().is_err());
    }
}
