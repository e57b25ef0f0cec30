//! Wiring: open the store, build the registry, serve the operator API (and the 2030.5
//! server with its notifier, when enabled), shut down cleanly.

use crate::api::{self, AppState, auth::Authenticator};
use crate::config::{Config, ConfigError};
use crate::protocol::sep2;
use crate::protocol::sep2::notifier::{self, NotifierError, NotifierSettings};
use crate::protocol::sep2::tls::{ServeOptions, client_config, serve_tls, server_config};
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
    #[error("2030.5 notifier: {0}")]
    Notifier(#[from] NotifierError),
    #[error("OpenADR 3 VTN: {0}")]
    OpenAdr3(#[from] crate::protocol::openadr3::VtnError),
    #[error("MQTT: {0}")]
    Mqtt(#[from] crate::protocol::mqtt::MqttError),
    #[error("SunSpec: {0}")]
    SunSpec(#[from] crate::protocol::sunspec::config::SunSpecConfigError),
    #[error("Green Button: {0}")]
    GreenButton(#[from] crate::protocol::greenbutton::connect::ConnectError),
    #[error("OpenADR 2.0b VTN: {0}")]
    OpenAdr2(String),
    #[error("telemetry writer: {0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
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
    /// Where the 2030.5 proxy listener listens, when configured.
    pub sep2_proxy_addr: Option<SocketAddr>,
    /// Where the OpenADR 2.0b VTN listens, when enabled.
    pub openadr2_addr: Option<SocketAddr>,
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

/// The 2030.5 listeners once started.
struct Sep2Running {
    addr: SocketAddr,
    proxy_addr: Option<SocketAddr>,
    task: JoinHandle<()>,
}

/// Binds the 2030.5 mutual-TLS listener (and the proxy listener when configured) and spawns
/// their accept loops and the notifier; the returned task ends when all have stopped.
async fn start_sep2(
    config: &Config,
    registry: Registry,
    shutdown: watch::Receiver<bool>,
) -> Result<Sep2Running, AppError> {
    let s = &config.sep2;
    let ca = read_pem(&s.ca_cert, "CA certificate")?;
    let cert = read_pem(&s.server_cert, "server certificate")?;
    let key = read_pem(&s.server_key, "server key")?;
    let tls = server_config(&ca, &cert, &key).map_err(|e| AppError::Tls(e.to_string()))?;
    // Notifications to https endpoints go out with the server's own certificate and trust
    // the same CAs as the listener: the one PKI of the deployment.
    let notify_tls = client_config(&ca, &cert, &key).map_err(|e| AppError::Tls(e.to_string()))?;
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
    // Taken before the listener serves, so no write a client can cause is missed.
    let changes = registry.subscribe_changes();
    let state = sep2::server::Sep2State::new(
        registry,
        sep2::server::Sep2Settings {
            poll_rate: s.poll_rate_seconds,
            post_rate: s.post_rate_seconds,
            csipaus,
            body_limit: s.body_limit_bytes,
            seed: crate::api::envelopes::RANDOMIZATION_SEED,
            in_band_registration: s.in_band_registration,
        },
        s.poll_cache_seconds,
        s.poll_cache_bytes,
    );
    let notifier = notifier::spawn(
        state.clone(),
        notify_tls,
        NotifierSettings::from(&s.notifications),
        changes,
        shutdown.clone(),
    )?;
    let router = sep2::server::router(state);
    let proxy = match s.proxy_listen {
        Some(proxy_addr) => {
            let auth = sep2::proxy::ProxyAuth::new(
                &s.proxy_header,
                s.trusted_proxies.clone(),
                &read_pem(&s.ca_cert, "CA certificate")?,
            )
            .map_err(|e| AppError::Tls(e.to_string()))?;
            let proxied = router.clone().layer(axum::middleware::from_fn_with_state(
                auth,
                sep2::proxy::require_forwarded_certificate,
            ));
            let proxy_listener =
                TcpListener::bind(proxy_addr)
                    .await
                    .map_err(|e| AppError::Bind {
                        addr: proxy_addr,
                        source: e,
                    })?;
            let proxy_addr = proxy_listener.local_addr().map_err(AppError::Serve)?;
            tracing::info!(addr = %proxy_addr, "IEEE 2030.5 proxy listener (certificate from header)");
            let stop = stopped(shutdown.clone());
            Some((
                proxy_addr,
                tokio::spawn(async move {
                    let served = axum::serve(
                        proxy_listener,
                        proxied.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(stop)
                    .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "2030.5 proxy listener failed");
                    }
                }),
            ))
        }
        None => None,
    };
    let proxy_addr = proxy.as_ref().map(|(a, _)| *a);
    let tls_task = tokio::spawn(serve_tls(
        listener,
        Arc::new(tls),
        router,
        ServeOptions::default(),
        stopped(shutdown),
    ));
    let task = tokio::spawn(async move {
        let _ = tls_task.await;
        if let Some((_, p)) = proxy {
            let _ = p.await;
        }
        let _ = notifier.await;
    });
    tracing::info!(%addr, "IEEE 2030.5 server listening (mutual TLS)");
    Ok(Sep2Running {
        addr,
        proxy_addr,
        task,
    })
}

/// Binds the OpenADR 2.0b listener (mutual TLS, or plain HTTP in test-lab mode) and spawns
/// it; returns its address, its task, and the operator endpoints to merge into the
/// operator API (behind its token check).
async fn start_openadr2(
    config: &Config,
    store: Store,
    app_state: AppState,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>, axum::Router), AppError> {
    use crate::protocol::openadr2;
    let c = &config.openadr2;
    let tls = if c.tls {
        let ca = read_pem(&c.ca_cert, "OpenADR 2.0b CA certificate")?;
        let cert = read_pem(&c.server_cert, "OpenADR 2.0b server certificate")?;
        let key = read_pem(&c.server_key, "OpenADR 2.0b server key")?;
        let server = server_config(&ca, &cert, &key).map_err(|e| AppError::Tls(e.to_string()))?;
        let client = client_config(&ca, &cert, &key).map_err(|e| AppError::Tls(e.to_string()))?;
        Some((server, client))
    } else {
        tracing::warn!(
            "OpenADR 2.0b VTN in plain-HTTP test-lab mode: VENs are identified by the venID they send; never use this outside a lab"
        );
        None
    };
    let state = openadr2::state(c, store, tls.as_ref().map(|(_, c)| c.clone()))
        .map_err(AppError::OpenAdr2)?;
    let listener = TcpListener::bind(c.listen)
        .await
        .map_err(|e| AppError::Bind {
            addr: c.listen,
            source: e,
        })?;
    let addr = listener.local_addr().map_err(AppError::Serve)?;
    let router = openadr2::router(state.clone());
    let task = match tls {
        Some((server, _)) => tokio::spawn(serve_tls(
            listener,
            Arc::new(server),
            router,
            ServeOptions::default(),
            stopped(shutdown),
        )),
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(stopped(shutdown))
                .await
            {
                tracing::error!(error = %e, "OpenADR 2.0b listener failed");
            }
        }),
    };
    let operator = openadr2::operator_router(state).layer(axum::middleware::from_fn_with_state(
        app_state,
        crate::api::auth::require_token,
    ));
    tracing::info!(%addr, tls = c.tls, "OpenADR 2.0b VTN listening");
    Ok((addr, task, operator))
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
    let (sep2_addr, sep2_proxy_addr, sep2_task) = if config.sep2.enabled {
        let r = start_sep2(config, registry.clone(), rx.clone()).await?;
        (Some(r.addr), r.proxy_addr, Some(r.task))
    } else {
        (None, None, None)
    };
    // One durable writer for all telemetry producers (bulk API, MQTT): group commit, and
    // an answer only after the commit.
    let telemetry = crate::telemetry::TelemetryWriter::start(
        registry.store(),
        crate::telemetry::WriterSettings::default(),
    )
    .await?;
    // The MQTT ingest connects in the background: an unreachable broker is retried with
    // backoff rather than keeping the operator API down.
    let mqtt = if config.mqtt.enabled {
        tracing::info!(host = %config.mqtt.host, port = config.mqtt.port, "MQTT ingest starting");
        Some(Arc::new(crate::protocol::mqtt::MqttIngest::start(
            &config.mqtt,
            registry.store().clone(),
            telemetry.clone(),
        )?))
    } else {
        None
    };
    // Each configured SunSpec device is polled on its own schedule; readings go to the
    // telemetry store. A device that does not answer is retried with backoff and does not
    // hold up the others or the server.
    let sunspec = if config.sunspec.enabled {
        use crate::protocol::sunspec::poller::{Poller, record_with_status};
        use crate::protocol::sunspec::status::PollStatus;
        let (limits, devices) = config.sunspec.poller()?;
        tracing::info!(devices = devices.len(), "SunSpec poller starting");
        let (events, received) = tokio::sync::mpsc::channel(1024);
        let store = registry.store().clone();
        // The operator API reads this board; the recorder updates it after each store.
        let board = PollStatus::new(&devices);
        let recorder = {
            let board = board.clone();
            tokio::spawn(async move { record_with_status(&store, received, &board).await })
        };
        Some((Poller::start(limits, devices, events), recorder, board))
    } else {
        None
    };
    // The dispatch executor hands running plans to the devices' channels: SunSpec for
    // configured Modbus devices, 2030.5 for DERs with an EndDevice, MQTT otherwise.
    let executor = if config.dispatch.enabled {
        let mut channels = crate::protocol::delivery::ProtocolChannels::new(
            registry.clone(),
            config.dispatch.sep2_primacy,
        );
        if let Some(m) = &mqtt {
            channels = channels.with_mqtt(
                m.clone(),
                Duration::from_millis(config.dispatch.ack_timeout_ms.max(1)),
            );
        }
        if config.sunspec.enabled {
            for d in &config.sunspec.devices {
                channels = channels.with_sunspec(
                    &d.source_id,
                    d.address,
                    d.unit,
                    Duration::from_millis(d.timeout_ms.max(1)),
                );
            }
        }
        let executor = crate::dispatch::execute::Executor::new(
            registry.store().clone(),
            Arc::new(channels),
            config.dispatch.clone(),
        );
        let task = executor.spawn();
        Some((executor, task))
    } else {
        None
    };
    // Green Button Connect: every stored authorization is fetched on a schedule.
    let greenbutton = if config.greenbutton.fetch_interval_seconds > 0 {
        use crate::protocol::greenbutton::connect::{Client, run_schedule};
        let client = Client::new(config.greenbutton.clone(), registry.store().clone())?;
        let every = Duration::from_secs(config.greenbutton.fetch_interval_seconds);
        tracing::info!(
            every_s = every.as_secs(),
            "Green Button Connect fetches scheduled"
        );
        Some(tokio::spawn(run_schedule(
            client,
            every,
            stopped(rx.clone()),
        )))
    } else {
        None
    };
    // The upstream OpenADR 2.0b VEN: a utility's events become plans for the executor.
    let upstream_ven = match &config.openadr2.upstream {
        Some(u) => Some(
            crate::protocol::openadr2::upstream::spawn(
                u.clone(),
                registry.clone(),
                executor.as_ref().map(|(e, _)| e.clone()),
                rx.clone(),
            )
            .map_err(|e| AppError::OpenAdr2(e.to_string()))?,
        ),
        None => None,
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let state = AppState {
        registry: registry.clone(),
        auth: Arc::new(Authenticator::new(&config.api.tokens)),
        body_limit: config.server.body_limit_bytes,
        import_limit: config.server.import_limit_bytes,
        dispatch: executor.as_ref().map(|(e, _)| e.clone()),
        telemetry: telemetry.clone(),
        sunspec: sunspec.as_ref().map(|(_, _, board)| board.clone()),
        mqtt: mqtt.as_ref().map(|m| m.monitor()),
    };
    let app_state = state.clone();
    let mut router = api::router(state);
    let mut oadr3_task = None;
    if config.openadr3.enabled {
        let (vtn, task) =
            crate::protocol::openadr3::start(&config.openadr3, registry.clone(), rx.clone())
                .await?;
        oadr3_task = Some(task);
        router = axum::Router::new()
            .nest(
                crate::protocol::openadr3::PREFIX,
                crate::protocol::openadr3::router(vtn),
            )
            .merge(router);
        tracing::info!(
            prefix = crate::protocol::openadr3::PREFIX,
            "OpenADR 3.1 VTN enabled"
        );
    }
    let (openadr2_addr, oadr2_task) = if config.openadr2.enabled {
        let (addr, task, operator) = start_openadr2(
            config,
            registry.store().clone(),
            app_state.clone(),
            rx.clone(),
        )
        .await?;
        router = operator.merge(router);
        (Some(addr), Some(task))
    } else {
        (None, None)
    };
    if upstream_ven.is_some() {
        router = crate::protocol::openadr2::upstream::operator_router(registry.store().clone())
            .layer(axum::middleware::from_fn_with_state(
                app_state.clone(),
                crate::api::auth::require_token,
            ))
            .merge(router);
    }
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
        if let Some(t) = oadr3_task {
            let _ = t.await;
        }
        if let Some(t) = upstream_ven {
            let _ = t.await;
        }
        // The executor goes first: its deliveries use the MQTT client and the store.
        if let Some((_, task)) = executor {
            task.stop().await;
        }
        if let Some(t) = oadr2_task {
            let _ = t.await;
        }
        if let Some(m) = mqtt {
            match Arc::try_unwrap(m) {
                Ok(m) => m.stop().await,
                Err(_) => tracing::warn!("MQTT ingest still shared at shutdown; not stopped"),
            }
        }
        if let Some(t) = greenbutton {
            let _ = t.await;
        }
        if let Some((poller, recorder, _)) = sunspec {
            // Stopping the poller closes the channel; the recorder stores what is queued
            // and ends, before the store closes.
            poller.stop().await;
            let _ = recorder.await;
        }
        // Every producer has stopped: what is queued is written before the store closes.
        telemetry.close().await;
        registry.store().close().await;
        tracing::info!("store closed");
        served
    });
    tracing::info!(%addr, "operator API listening");
    Ok(RunningServer {
        addr,
        sep2_addr,
        sep2_proxy_addr,
        openadr2_addr,
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
