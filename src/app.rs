//! Wiring: open the store, build the registry, serve the operator API, shut down cleanly.

use crate::api::{self, AppState, auth::Authenticator};
use crate::config::{Config, ConfigError};
use crate::registry::{Registry, RegistryError};
use crate::store::{Store, StoreError, redact};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
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
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), AppError>>,
}

impl RunningServer {
    /// Asks the server to stop, waits for in-flight requests, and closes the store.
    pub async fn stop(mut self) -> Result<(), AppError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .unwrap_or_else(|e| Err(AppError::Serve(std::io::Error::other(e))))
    }
}

/// Starts serving `registry` per `config`; stops when `stop()` is called.
pub async fn start(config: &Config, registry: Registry) -> Result<RunningServer, AppError> {
    let (tx, rx) = oneshot::channel::<()>();
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| AppError::Bind {
            addr: config.server.listen,
            source: e,
        })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
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
            let _ = rx.await;
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
        registry.store().close().await;
        tracing::info!("store closed");
        served
    });
    tracing::info!(%addr, "operator API listening");
    Ok(RunningServer {
        addr,
        shutdown: Some(tx),
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
