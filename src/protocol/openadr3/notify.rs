//! Webhook notifications to subscribers' callback URLs.
//!
//! The API hands each delivery to [`Notifier::send`], which only queues it; a dispatcher
//! task starts one delivery task per notification (at most `max_concurrent_deliveries` at
//! a time), so a slow or dead callback delays nothing but its own retries. Each delivery
//! is a POST of the `notification` JSON with the bearer token the subscriber supplied,
//! retried with doubling backoff until a 2xx answer or the attempts run out.

use crate::config::NotificationConfig;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// One notification to one callback.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub bearer: Option<String>,
    pub body: Bytes,
}

/// The queue into the dispatcher.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::UnboundedSender<Delivery>,
}

impl Notifier {
    /// Queues a delivery; never waits.
    pub fn send(&self, d: Delivery) {
        // Fails only once the dispatcher has stopped at shutdown.
        let _ = self.tx.send(d);
    }
}

/// Retry and concurrency settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    pub max_concurrent: usize,
}

impl Settings {
    pub fn new(c: &NotificationConfig, max_concurrent: usize) -> Self {
        Settings {
            max_attempts: c.max_attempts.max(1),
            initial_backoff: Duration::from_millis(c.initial_backoff_ms),
            max_backoff: Duration::from_secs(c.max_backoff_seconds),
            timeout: Duration::from_secs(c.timeout_seconds.max(1)),
            max_concurrent: max_concurrent.max(1),
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
#[error("webhook HTTP client: {0}")]
pub struct NotifierError(#[from] reqwest::Error);

/// Starts the dispatcher; it stops when `shutdown` turns true, abandoning queued retries.
pub fn spawn(
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) -> Result<(Notifier, JoinHandle<()>), NotifierError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // Callbacks go where the subscriber said, not where a redirect or proxy would send them.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        .build()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(dispatch(client, settings, rx, shutdown));
    Ok((Notifier { tx }, task))
}

async fn dispatch(
    client: reqwest::Client,
    settings: Settings,
    mut rx: mpsc::UnboundedReceiver<Delivery>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.max_concurrent));
    let settings = Arc::new(settings);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            d = rx.recv() => {
                let Some(d) = d else { break };
                let client = client.clone();
                let settings = settings.clone();
                let permits = permits.clone();
                tasks.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else { return };
                    deliver(&client, &settings, d).await;
                });
                // Reap finished deliveries so the set does not grow without bound.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    tasks.abort_all();
}

async fn deliver(client: &reqwest::Client, s: &Settings, d: Delivery) {
    let mut wait = s.initial_backoff;
    for attempt in 1..=s.max_attempts {
        let mut req = client
            .post(&d.url)
            .header(CONTENT_TYPE, "application/json")
            .body(d.body.clone());
        if let Some(t) = &d.bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let outcome = match req.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        tracing::info!(url = %d.url, attempt, error = %outcome, "OpenADR 3 webhook not accepted");
        if attempt < s.max_attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(s.max_backoff);
        }
    }
    tracing::warn!(url = %d.url, attempts = s.max_attempts, "OpenADR 3 webhook given up");
}
