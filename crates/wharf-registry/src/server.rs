//! Serving: TCP or TLS (rustls), HTTP/1.1 and HTTP/2, graceful shutdown, background upkeep.
//!
//! Blob downloads are streamed from a blocking reader thread in 512 KiB chunks. Zero-copy
//! `sendfile(2)` is not possible through hyper: a response body is a stream of in-memory
//! buffers written by hyper to its IO object, with no path to hand it a file descriptor (and TLS
//! needs the bytes in user space anyway).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::auth::Authorizer;
use crate::backend::open_storage;
use crate::body_pacing::{BodyPacing, PacedIo};
use crate::client_addr::TrustedProxies;
use crate::config::{Config, StorageLocation};
use crate::conn::{AcceptBackoff, Admission, Connection, ConnectionTable, GuardedBody, TrackedIo};
use crate::drain::call_keeping_connection;
use crate::metrics::Metrics;
use crate::proxy::Proxies;
use crate::proxy_header::{ProxyHeaderError, read_proxy_header};
use crate::routes::{AppState, router};
use crate::services::{Limits, Registry};
use crate::storage::StorageError;
use crate::throttle::LoginThrottle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening the storage: {0}")]
    Storage(#[from] StorageError),
    #[error("checking the storage server: {0}")]
    StorageServer(#[source] StorageError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(
        "refusing plain HTTP on {0}, which is not a loopback address: configure [tls] cert and key, or set allow_plain_http = true"
    )]
    PlainHttpNotLoopback(SocketAddr),
    #[error(
        "proxy_protocol = true needs trusted_proxies: the balancers whose PROXY protocol header is believed (--trusted-proxy ADDR|NET)"
    )]
    ProxyProtocolWithoutTrustedProxies,
}

/// Everything a running registry shares between requests.
pub fn app_state(config: &Config, authorizer: Arc<dyn Authorizer>) -> Result<AppState, ServeError> {
    let storage = open_storage(config)?;
    let limits = Limits {
        upload_expiry: config.upload_expiry,
        upload_sessions_per_subject: config.limits.upload_sessions_per_subject,
        upload_sessions_per_repository: config.limits.upload_sessions_per_repository,
        upload_sessions_total: config.limits.upload_sessions_total,
        ..Limits::default()
    };
    Ok(AppState {
        registry: Arc::new(Registry::new(storage, limits)),
        authorizer,
        metrics: Arc::new(Metrics::default()),
        proxy: Arc::new(Proxies::new(&config.proxy)),
        throttle: Arc::new(LoginThrottle::new(
            config.limits.login_failures_per_address,
            config.limits.login_failures_before_backoff,
        )),
        trusted_proxies: Arc::new(TrustedProxies::new(config.trusted_proxies.clone())),
    })
}

fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", tls.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| ServeError::Tls(format!("private key {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Serves the registry until `shutdown` completes, then stops accepting and lets in-flight
/// requests (uploads included) finish for up to `config.shutdown_timeout`.
pub async fn serve(
    config: Config,
    authorizer: Arc<dyn Authorizer>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // Before the connection cap is derived from it.
    crate::limits::raise_fd_limit();
    let state = app_state(&config, authorizer)?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
    serve_on(listener, config, state, extra, shutdown).await
}

/// [`serve`] on an already bound listener (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    config: Config,
    state: AppState,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.addr,
        source,
    })?;
    let tls = tls_acceptor(&config)?;
    if config.proxy_protocol && config.trusted_proxies.is_empty() {
        return Err(ServeError::ProxyProtocolWithoutTrustedProxies);
    }
    for net in state.trusted_proxies.everyone() {
        tracing::warn!(
            %net,
            "trusted_proxies trusts every address: any client can choose the address the limits count it under by sending X-Forwarded-For; list only the balancers"
        );
    }
    // Connections from these must start with a PROXY protocol header.
    let proxy_protocol_from = config.proxy_protocol.then(|| state.trusted_proxies.clone());
    if tls.is_none() && !local.ip().is_loopback() && !config.allow_plain_http {
        return Err(ServeError::PlainHttpNotLoopback(local));
    }
    // Before the first request: a storage server that lacks what replicas rely on is refused
    // at start, with the fix, not found out by a lost race later.
    state
        .registry
        .storage()
        .check_server()
        .await
        .map_err(ServeError::StorageServer)?;
    let registry = state.registry.clone();
    let proxy = state.proxy.clone();
    let app = if config.metrics {
        router(state, extra)
    } else {
        router(state, extra).route(
            "/metrics",
            axum::routing::get(|| async { http::StatusCode::NOT_FOUND }),
        )
    };
    let limits = &config.limits;

    // Upkeep: expire idle upload sessions and old temporary files.
    let upkeep = {
        let registry = registry.clone();
        let expiry = config.upload_expiry;
        let every = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(300));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = SystemTime::now();
                if let Err(e) = registry.expire_uploads(now).await {
                    tracing::warn!(error = %e, "expiring upload sessions");
                }
                let stale = now.checked_sub(expiry).unwrap_or(SystemTime::UNIX_EPOCH);
                if let Err(e) = registry.storage().clean_temporary(stale).await {
                    tracing::warn!(error = %e, "cleaning temporary files");
                }
            }
        })
    };

    let table = Arc::new(ConnectionTable::new(
        limits.connection_cap(),
        limits.header_timeout,
        limits.idle_timeout,
    ));
    let reaper = {
        let table = table.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(table.reap_every());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                table.reap();
            }
        })
    };
    let timing = Timing {
        header: limits.header_timeout,
        idle: limits.idle_timeout,
    };

    tracing::info!(
        addr = %local,
        tls = tls.is_some(),
        storage = %config.storage_location().unwrap_or(StorageLocation::File(config.root.clone())),
        max_connections = table.cap(),
        header_timeout_s = timing.header.as_secs(),
        idle_timeout_s = timing.idle.as_secs(),
        trusted_proxies = ?config.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        proxy_protocol = config.proxy_protocol,
        "registry listening"
    );
    let stopping = CancellationToken::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut backoff = AcceptBackoff::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    backoff.on_success();
                    conn
                }
                Err(e) => {
                    let wait = backoff.on_error(&e, std::time::Instant::now());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let (id, conn) = match table.admit(peer) {
            Admission::Admitted { id, conn } => (id, conn),
            Admission::Refused => continue,
        };
        let _ = stream.set_nodelay(true);
        let task = ConnectionTask {
            app: app.clone(),
            builder: builder.clone(),
            conn,
            timing,
            stopping: stopping.clone(),
        };
        let table = table.clone();
        let tls = tls.clone();
        let proxy_protocol_from = proxy_protocol_from.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            if proxy_protocol_from
                .as_ref()
                .is_some_and(|trusted| trusted.trusts(peer.ip()))
                && !take_proxy_header(&mut stream, &task.conn, timing.header).await
            {
                table.remove(id);
                return;
            }
            match tls {
                Some(acceptor) => {
                    let io = TrackedIo::new(stream, task.conn.clone());
                    let handshake = tokio::time::timeout(timing.header, acceptor.accept(io));
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => Some(stream),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake not done within the header timeout");
                                None
                            }
                        },
                        () = task.conn.closed().cancelled() => None,
                    };
                    if let Some(stream) = stream {
                        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            task.conn.set_http2();
                        }
                        task.run(stream, None).await;
                    }
                }
                None => {
                    let pacing = Arc::new(BodyPacing::default());
                    let io =
                        TrackedIo::new(PacedIo::new(stream, pacing.clone()), task.conn.clone());
                    task.run(io, Some(pacing)).await;
                }
            }
            table.remove(id);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    stopping.cancel();
    let deadline = tokio::time::Instant::now() + config.shutdown_timeout;
    tokio::select! {
        () = table.wait_empty() => tracing::info!("all connections closed"),
        () = tokio::time::sleep_until(deadline) => tracing::warn!("shutdown timeout: closing remaining connections"),
    }
    // Answers already given may still be being stored (a pull-through manifest): within the
    // same timeout, they are.
    if !proxy.finish_background_writes(deadline).await {
        tracing::warn!(
            "shutdown timeout: pull-through cache writes still running are dropped (fetched again on their next pull)"
        );
    }
    reaper.abort();
    upkeep.abort();
    Ok(())
}

/// Reads the PROXY protocol header a trusted balancer starts `stream` with, within `timeout`,
/// and makes the client it names the connection's; `false` when the connection is to be closed.
async fn take_proxy_header(stream: &mut TcpStream, conn: &Connection, timeout: Duration) -> bool {
    let peer = conn.peer;
    let read = tokio::select! {
        read = tokio::time::timeout(timeout, read_proxy_header(stream)) => read,
        () = conn.closed().cancelled() => return false,
    };
    match read {
        Ok(Ok(Some(client))) => conn.set_proxied_client(client),
        Ok(Ok(None)) => {}
        // A TCP health check: connected and closed.
        Ok(Err(ProxyHeaderError::ClosedBeforeHeader)) => return false,
        Ok(Err(e)) => {
            // Only a trusted balancer gets here: a misconfigured one (without send-proxy)
            // must not fail silently.
            tracing::warn!(%peer, error = %e, "closed a connection from a trusted proxy");
            return false;
        }
        Err(_) => {
            tracing::warn!(%peer, "no PROXY protocol header within the header timeout: closed");
            return false;
        }
    }
    true
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    header: Duration,
    idle: Duration,
}

/// One accepted connection and what serving it needs.
struct ConnectionTask {
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    conn: Arc<Connection>,
    timing: Timing,
    stopping: CancellationToken,
}

impl ConnectionTask {
    /// Serves HTTP/1 or HTTP/2 on `io` until the client leaves, the table closes the
    /// connection (timeouts, eviction), or the server stops (gracefully: requests finish).
    /// `pacing`: the plain TCP connection's [`BodyPacing`], offered to HTTP/1 requests.
    async fn run<I>(self, io: I, pacing: Option<Arc<BodyPacing>>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self.conn.clone();
        let app = self.app.clone();
        let timing = self.timing;
        let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let conn = conn.clone();
            // HTTP/2 multiplexes bodies on one socket: its reads are never paced.
            let pacing = pacing
                .clone()
                .filter(|_| req.version() <= http::Version::HTTP_11);
            async move {
                let handling = conn.begin_request();
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(conn.client()));
                if let Some(pacing) = pacing {
                    req.extensions_mut().insert(pacing);
                }
                let response = call_keeping_connection(app, req, timing.idle, timing.header).await;
                let streaming = conn.begin_response();
                drop(handling);
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| axum::body::Body::new(GuardedBody::new(body, streaming))),
                )
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
        let mut connection = std::pin::pin!(connection);
        let peer = self.conn.peer;
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = self.conn.closed().cancelled() => return,
            () = self.stopping.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    result = connection.as_mut() => result,
                    () = self.conn.closed().cancelled() => return,
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
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
        () = ctrl_c => {},
        () = term => {},
    }
}
