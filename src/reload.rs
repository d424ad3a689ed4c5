//! Reloading the config: from its source on SIGHUP, `POST /v1/tierwise/reload`, or when
//! its file changes. The file is read every `server.config_poll_ms`, and when its bytes
//! differ from what was last seen (and then stay the same for one more period) it is
//! reloaded exactly as on SIGHUP. A config that fails validation is refused (logged
//! with every problem, counted), the old one stays, and the same bytes are not tried
//! again until the file changes.

use std::path::Path;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::app::AppState;
use crate::config::{self, ConfigError, ConfigSource};
use crate::upstream::BuildError;

/// Why a reload was refused; the old config stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("this config was given inline and has no file to reload")]
    Inline,
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Reloads the config from where it came from (its file, or the built-in default with
/// the current environment).
pub async fn from_source(state: &AppState) -> Result<(), ReloadError> {
    let result = load_and_install(state).await;
    match &result {
        Ok(()) => state.metrics.config_reload("applied"),
        Err(err) => {
            state.metrics.config_reload("rejected");
            warn!("config reload refused, the old config stays: {err}");
        }
    }
    result
}

async fn load_and_install(state: &AppState) -> Result<(), ReloadError> {
    let source = state.generation().config.source.clone();
    let env = |name: &str| std::env::var(name).ok();
    let config = match &source {
        ConfigSource::File(path) => config::load(Some(path), &env)?,
        ConfigSource::BuiltIn => config::load(None, &env)?,
        ConfigSource::Inline => return Err(ReloadError::Inline),
    };
    state.install(config).await?;
    Ok(())
}

/// Reloads on SIGHUP until shutdown.
pub fn on_sighup(state: AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                signal = hangup.recv() => if signal.is_none() { break },
                () = state.shutdown.cancelled() => break,
            }
            info!("SIGHUP: reloading the config");
            let _ = from_source(&state).await;
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

/// Starts the file watcher when the config came from a file and polling is on; it stops
/// with the shutdown tree.
pub fn watch(state: AppState) -> Option<JoinHandle<()>> {
    let generation = state.generation();
    let ConfigSource::File(path) = &generation.config.source else { return None };
    let period = generation.config.server.config_poll?;
    let path = path.clone();
    let stop = state.shutdown.child_token();
    Some(tokio::spawn(async move {
        // A change is acted on once it has stayed the same for one period, so a file
        // read half-written (truncated, then filled) is never loaded.
        let mut settling: Option<Option<[u8; 32]>> = None;
        // The last change refused (or unreadable): not retried until the file changes.
        let mut refused: Option<Option<[u8; 32]>> = None;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => break,
            }
            let now = digest(&path).await;
            if now == state.generation().config.file_digest || refused == Some(now) {
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
            refused = from_source(&state).await.err().map(|_| now);
        }
    }))
}

/// SHA-256 of the file's bytes, or `None` while it cannot be read (e.g. mid-replace).
async fn digest(path: &Path) -> Option<[u8; 32]> {
    let path = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path).ok()).await.ok().flatten()?;
    Some(crate::config::sha256(&bytes))
}
