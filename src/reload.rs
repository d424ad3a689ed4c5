//! Reload on a changed config file: the file is read every `server.config_poll_ms`, and
//! when its bytes differ from what was last seen (and then stay the same for one more
//! period) it is reloaded exactly as on SIGHUP. A
//! change that fails validation is refused once (logged with every problem, counted) and
//! not retried until the file changes again.

use std::path::Path;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::app::{reload_from_source, AppState};
use crate::config::ConfigSource;

/// Starts the watcher when the config came from a file and polling is on.
pub fn watch(state: AppState) -> Option<JoinHandle<()>> {
    let runtime = state.runtime();
    let ConfigSource::File(path) = &runtime.config.source else { return None };
    let period = runtime.config.server.config_poll?;
    let path = path.clone();
    Some(tokio::spawn(async move {
        // A change is acted on once it has stayed the same for one period, so a file
        // read half-written (truncated, then filled) is never loaded.
        let mut settling: Option<Option<[u8; 32]>> = None;
        // The last change refused (or unreadable): not retried until the file changes.
        let mut refused: Option<Option<[u8; 32]>> = None;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = digest(&path).await;
            if now == state.runtime().config.file_digest || refused == Some(now) {
                settling = None;
                continue;
            }
            if settling != Some(now) {
                settling = Some(now);
                continue;
            }
            settling = None;
            if now.is_none() {
                warn!(path = %path.display(), "the config file cannot be read; the current config stays");
                refused = Some(now);
                continue;
            }
            info!(path = %path.display(), "the config file changed: reloading");
            refused = reload_from_source(&state).await.err().map(|_| now);
        }
    }))
}

/// SHA-256 of the file's bytes, or `None` while it cannot be read (e.g. mid-replace).
async fn digest(path: &Path) -> Option<[u8; 32]> {
    let path = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path).ok()).await.ok().flatten()?;
    Some(crate::config::sha256(&bytes))
}
