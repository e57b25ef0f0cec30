//! Wiring: open the store, build the registry, serve the operator API, shut down cleanly.

use crate::api::{self, AppState, auth::Authenticator};
use crate::config::{Config, ConfigError};
use crate::protocol::sep2;
use crate::protocol::sep2::tls::{ServeOptions, serve_tls, server_config};
use crate::protocol::sep2::xml::CsipAusVersion;
use crate::registry::{Registry, RegistryError};
use crate::store::{Store, StoreError, redact};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("2030.5 TLS set-up: {0}")]
    Tls(String),
}

/// Opens the configured store (applying migrations) and the registry over it.
pub async fn open_registry(config: &Config) -> Result<Registry, AppError> {
    let url = config.store.resolved_url()?;
    tracing::info!(url = %redact(&url), "opening store");
    let store = Store::open(&url, config.store.max_connections).await?;
    Ok(Registry::open(store).await?)
}

/// A server running in the background.
pub struct RunningServer {
    /// Where the operator API listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where the 2030.5 server listens, when enabled.
    pub sep2_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), AppError>>,
}

impl RunningServer {
    /// Asks the servers to stop, waits for in-flight requests, and closes the store.
    pub async fn stop(self) -> Result<(), AppError> {
        let _ = self.shutdown.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(AppError::Serve(std::io::Error::other(e))))
    }
}

/// Completes when the shutdown flag is raised (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Reads a PEM file named in the 2030.5 configuration.
fn read_pem(path: &std::path::Path, what: &str) -> Result<String, AppError> {
    std::fs::read_to_string(path)
        .map_err(|e| AppError::Tls(format!("cannot read the {what} at {}: {e}", path.display())))
}

/// Binds the 2030.5 mutual-TLS listener and spawns its accept loop.
async fn start_sep2(
    config: &Config,
    registry: Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), AppError> {
    let s = &config.sep2;
    let tls = server_config(
        &read_pem(&s.ca_cert, "CA certificate")?,
        &read_pem(&s.server_cert, "server certificate")?,
        &read_pem(&s.server_key, "server key")?,
    )
    .map_err(|e| AppError::Tls(e.to_string()))?;
    let csipaus = match s.csipaus.as_str() {
        "v1.3" => Some(CsipAusVersion::V1_3),
        "v1.2" => Some(CsipAusVersion::V1_2),
        "none" => None,
        other => {
            return Err(AppError::Tls(format!(
                "sep2.csipaus must be v1.3, v1.2 or none, got '{other}'"
            )));
        }
    };
    let listener = TcpListener::bind(s.listen)
        .await
        .map_err(|e| AppError::Bind {
            addr: s.listen,
            source: e,
        })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    let router = sep2::server::router(sep2::server::Sep2State {
        registry,
        settings: Arc::new(sep2::server::Sep2Settings {
            poll_rate: s.poll_rate_seconds,
            post_rate: s.post_rate_seconds,
            csipaus,
            body_limit: s.body_limit_bytes,
            seed: crate::api::envelopes::RANDOMIZATION_SEED,
        }),
    });
    let task = tokio::spawn(serve_tls(
        listener,
        Arc::new(tls),
        router,
        ServeOptions::default(),
        stopped(shutdown),
    ));
    tracing::info!(%addr, "IEEE 2030.5 server listening (mutual TLS)");
    Ok((addr, task))
}

/// Starts serving `registry` per `config`; stops when `stop()` is called.
pub async fn start(config: &Config, registry: Registry) -> Result<RunningServer, AppError> {
    let (tx, rx) = watch::channel(false);
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| AppError::Bind {
            addr: config.server.listen,
            source: e,
        })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    let (sep2_addr, sep2_task) = if config.sep2.enabled {
        let (a, t) = start_sep2(config, registry.clone(), rx.clone()).await?;
        (Some(a), Some(t))
    } else {
        (None, None)
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let state = AppState {
        registry: registry.clone(),
        auth: Arc::new(Authenticator::new(&config.api.tokens)),
        body_limit: config.server.body_limit_bytes,
        import_limit: config.server.import_limit_bytes,
    };
    let router = api::router(state);
    let task = tokio::spawn(async move {
        let (drained_tx, drained_rx) = oneshot::channel::<()>();
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            stopped(rx).await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = drained_tx.send(());
        });
        // Requests still running after the grace period are abandoned rather than holding
        // the process forever.
        let served = tokio::select! {
            r = serve => r.map_err(AppError::Serve),
            _ = async {
                let _ = drained_rx.await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("grace period over; abandoning unfinished requests");
                Ok(())
            }
        };
        if let Some(t) = sep2_task {
            let _ = t.await;
        }
        registry.store().close().await;
        tracing::info!("store closed");
        served
    });
    tracing::info!(%addr, "operator API listening");
    Ok(RunningServer {
        addr,
        sep2_addr,
        shutdown: tx,
        task,
    })
}

/// Runs until `signal` completes, then shuts down gracefully.
pub async fn run_until(
    config: &Config,
    registry: Registry,
    signal: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let server = start(config, registry).await?;
    signal.await;
    server.stop().await
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
