//! Shutdown is one `CancellationToken` tree. The root lives in the app state; SIGINT or
//! SIGTERM (or a test) cancels it. The server stops accepting, the metrics listener,
//! the config watcher and the warmth probers stop (each selects on a child token), and
//! in-flight requests get `server.shutdown_grace_ms` to finish.

pub use tokio_util::sync::CancellationToken;

/// Cancels `root` on SIGINT or SIGTERM.
pub async fn on_signal(root: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
        () = root.cancelled() => return,
    }
    root.cancel();
}
