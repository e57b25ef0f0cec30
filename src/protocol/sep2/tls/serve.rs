//! Serving an axum `Router` over mutual TLS.
//!
//! axum's own `serve` only speaks plain TCP, and the 2030.5 handlers need
//! something it cannot give them: the client certificate of the connection a
//! request arrived on. [`serve_tls`] accepts TCP connections, runs the TLS
//! handshake (with a deadline, so that a peer that opens a socket and stalls
//! cannot hold it forever), and then serves HTTP/1.1 or HTTP/2 with hyper,
//! attaching the connection's [`PeerIdentity`](super::PeerIdentity) to every request.
//!
//! A failed handshake is the normal result of an unknown or expired
//! certificate, a port scan or a health check, so it is logged at debug
//! level and the loop carries on; nothing a peer sends can end the loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::identity::peer_identity;

/// Limits and timeouts of [`serve_tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Longest time a TLS handshake may take before the connection is
    /// dropped. Defends against peers that connect and then send nothing.
    pub handshake_timeout: Duration,
    /// Longest time an HTTP/1.1 client may take to send a request's headers
    /// (also bounds how long an idle keep-alive connection waits).
    pub header_read_timeout: Duration,
    /// After shutdown is signalled, how long open connections get to finish
    /// the requests they are serving before they are cut.
    pub drain_timeout: Duration,
    /// Most connections open at once (handshaking or serving). When the
    /// limit is reached, new connections wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    /// 10 s handshake timeout, 30 s header timeout, 30 s drain, 10 000
    /// connections.
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// How often an idle HTTP/2 connection is pinged; a peer that does not
/// answer within hyper's default 20 s is disconnected.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// Pause after an accept error that is not about one connection (such as
/// running out of file descriptors), so that the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` over TLS on `listener` until `shutdown` completes.
///
/// Use a `config` from [`super::server_config`], which requires client
/// certificates. Every request reaches the router with two extensions: the
/// connection's [`PeerIdentity`](super::PeerIdentity) (extract it with
/// `axum::Extension<PeerIdentity>`) and the remote address as
/// `axum::extract::ConnectInfo<SocketAddr>`.
///
/// When `shutdown` completes the listener is closed, handshakes in progress
/// are abandoned, and open connections get at most
/// [`ServeOptions::drain_timeout`] to finish their current requests
/// (HTTP/1.1 closes after the response in progress, HTTP/2 sends GOAWAY);
/// then the function returns.
pub async fn serve_tls<F>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    options: ServeOptions,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let acceptor = TlsAcceptor::from(config);
    let http = HttpBuilders::new(&options);
    let limit = Arc::new(Semaphore::new(
        options.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    // Dropping the sender tells every connection task to wind down.
    let (stop_tx, stop_rx) = watch::channel(());
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_task_end(joined),
            (accepted, permit) = accept_with_permit(&listener, &limit) => match accepted {
                Ok((tcp, remote)) => {
                    let conn = Connection {
                        acceptor: acceptor.clone(),
                        router: router.clone(),
                        http: http.clone(),
                        stop: stop_rx.clone(),
                        handshake_timeout: options.handshake_timeout,
                        remote,
                        _permit: permit,
                    };
                    tasks.spawn(conn.run(tcp));
                }
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(%error, "accepting a TCP connection failed");
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting TCP connections failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }

    drop(listener);
    drop(stop_tx);
    let open = tasks.len();
    tracing::info!(open, "TLS listener closed; draining connections");
    let drained = tokio::time::timeout(options.drain_timeout, async {
        while let Some(joined) = tasks.join_next().await {
            log_task_end(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = tasks.len(),
            "connections still open after the drain timeout; closing them"
        );
        tasks.shutdown().await;
    }
}

/// hyper connection settings, one builder per HTTP version.
///
/// The version is decided by ALPN, as RFC 9113 section 3.2 requires for
/// HTTP/2 over TLS, rather than by hyper-util sniffing the first bytes:
/// while sniffing, no timeout applies, so a client that completed the
/// handshake and then sent nothing would hold its connection forever.
#[derive(Clone)]
struct HttpBuilders {
    http1: Arc<auto::Builder<TokioExecutor>>,
    http2: Arc<auto::Builder<TokioExecutor>>,
}

impl HttpBuilders {
    fn new(options: &ServeOptions) -> HttpBuilders {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The timer is what makes hyper enforce the header read timeout.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout);
        // Pings find HTTP/2 peers that vanished without closing.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL);
        HttpBuilders {
            http1: Arc::new(builder.clone().http1_only()),
            http2: Arc::new(builder.http2_only()),
        }
    }

    /// The builder for the protocol ALPN settled on; HTTP/1.1 when the
    /// client offered no ALPN.
    fn for_alpn(&self, alpn: Option<&[u8]>) -> Arc<auto::Builder<TokioExecutor>> {
        if alpn == Some(b"h2") {
            self.http2.clone()
        } else {
            self.http1.clone()
        }
    }
}

/// Waits for a free connection slot, then for a connection.
async fn accept_with_permit(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> (io::Result<(TcpStream, SocketAddr)>, OwnedSemaphorePermit) {
    let permit = limit
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    (listener.accept().await, permit)
}

/// Accept errors that concern only the connection being accepted, after
/// which accepting the next one can go on at once.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Connection tasks handle their own errors; only a panic gets here.
fn log_task_end(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(%error, "a TLS connection task panicked");
    }
}

/// Everything one connection task needs.
struct Connection {
    acceptor: TlsAcceptor,
    router: Router,
    http: HttpBuilders,
    stop: watch::Receiver<()>,
    handshake_timeout: Duration,
    remote: SocketAddr,
    /// Held for the life of the task, so that it counts against
    /// [`ServeOptions::max_connections`].
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream) {
        let remote = self.remote;
        // Small request/response exchanges: do not wait to fill segments.
        let _ = tcp.set_nodelay(true);

        let handshake = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            result = handshake => match result {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.stop.changed() => return,
        };

        let (_, session) = tls.get_ref();
        let Some(identity) = peer_identity(session) else {
            // Only possible with a ServerConfig that does not require client
            // certificates; refuse rather than serve an anonymous client.
            tracing::warn!(%remote, "TLS client presented no certificate; closing");
            return;
        };
        tracing::debug!(
            %remote,
            lfdi = %identity.lfdi(),
            version = ?session.protocol_version(),
            suite = ?session.negotiated_cipher_suite().map(|s| s.suite()),
            "TLS client authenticated"
        );
        let http = self.http.for_alpn(session.alpn_protocol());

        let service = TowerToHyperService::new(self.router.map_request(
            move |mut request: Request<Incoming>| {
                let extensions = request.extensions_mut();
                extensions.insert(identity.clone());
                extensions.insert(ConnectInfo(remote));
                request
            },
        ));
        let connection = http.serve_connection(TokioIo::new(tls), service);
        let mut connection = std::pin::pin!(connection);

        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = self.stop.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%remote, %error, "HTTP connection ended with an error");
        }
    }
}
