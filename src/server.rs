//! Serving: the accept loop (header timeout and size, TCP_NODELAY), the metrics listener,
//! and graceful shutdown on the app state's shutdown token.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::app::{build_router, metrics_router, AppState};
use crate::shutdown::CancellationToken;

/// Starts the warmth probers and serves until `state.shutdown` is cancelled; then stops
/// the probers, stops accepting and lets in-flight requests (streams included) finish
/// for up to `server.shutdown_grace_ms`; then flushes and closes the audit log.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let server_config = state.generation().config.server.clone();
    let grace = server_config.shutdown_grace;
    let shutdown = state.shutdown.clone();
    if let Some(addr) = server_config.metrics_listen {
        let listener = TcpListener::bind(addr).await?;
        info!(%addr, "metrics listening");
        let router = metrics_router(state.clone());
        tokio::spawn(serve_connections(listener, router, server_config.clone(), shutdown.child_token()));
    }
    state.start_probers().await;
    state.start_fleet_listener();
    let watcher = crate::reload::watch(state.clone());
    let server = serve_connections(listener, build_router(state.clone()), server_config, shutdown.clone());
    let grace_over = async {
        shutdown.cancelled().await;
        info!(grace_ms = grace.as_millis() as u64, "shutting down: no new connections, finishing in-flight requests");
        state.stop_probers().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = server => {}
        () = grace_over => warn!("grace period over: dropping the requests still in flight"),
    }
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    state.stop_probers().await;
    state.audit.close().await;
    if state.audit.lost() > 0 {
        warn!(lost = state.audit.lost(), "audit records were lost (see tierwise_audit_lost_total)");
    }
    Ok(())
}

/// Accepts HTTP/1.1 connections and serves `router` on each until `stop` resolves; then
/// stops accepting and waits for open connections to finish their requests. A client
/// gets `server.header_read_timeout_ms` to send each request's head (also the idle
/// keep-alive limit) and `server.max_header_bytes` for it (larger: 431).
async fn serve_connections(
    listener: TcpListener,
    router: Router,
    server: crate::config::ServerConfig,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_header_size(server.max_header_bytes)
        .max_buf_size(server.max_header_bytes.max(MIN_READ_BUFFER));
    let connections = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        no_delay(&stream);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// hyper's smallest read buffer; `max_header_bytes` below it is refused by validation.
const MIN_READ_BUFFER: usize = 8 * 1024;

// Events must leave as they are written: without TCP_NODELAY, Nagle's algorithm holds a
// stream's small SSE writes back ~40 ms behind the client's delayed ACK.
fn no_delay(stream: &tokio::net::TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY on an accepted connection");
    }
}
