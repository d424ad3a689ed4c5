//! One warmth probe of one upstream over HTTP: which endpoints each source asks, with
//! the upstream's own headers and key. Never `/upstream/...` on llama-swap: that path
//! loads the model it names.

use futures_util::StreamExt;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use reqwest::Url;

use super::state::Observation;
use super::wire;
use crate::config::{UpstreamConfig, WarmthSource};
use crate::upstream::BuildError;

/// Largest probe answer read (a router's `/v1/models` repeats every model's arguments).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How to probe one upstream; cheap to clone (the client is a shared pool).
#[derive(Clone)]
pub struct Probe {
    source: WarmthSource,
    /// `base_url` without its `/v1` (see [`wire::server_root`]).
    root: Url,
    /// Its own small pool: probes never wait behind long chat calls for a connection.
    http: reqwest::Client,
    headers: HeaderMap,
}

/// What one GET got: the status and (for 200) the body.
enum Answer {
    Ok(Vec<u8>),
    Status(StatusCode),
}

impl Probe {
    /// `None` for sources that are not probed (`always`, `none`).
    pub fn new(config: &UpstreamConfig) -> Result<Option<Self>, BuildError> {
        if !config.warmth.is_probed() {
            return Ok(None);
        }
        crate::upstream::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.probe_timeout.min(config.connect_timeout))
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()
            .map_err(|source| BuildError::Client { upstream: config.name.clone(), source })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::try_from(format!("Bearer {}", key.expose()))
                .map_err(|_| BuildError::Key { upstream: config.name.clone() })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Some(Probe { source: config.warmth, root: wire::server_root(&config.base_url), http, headers }))
    }

    /// Asks the upstream once. Never fails: a failure is [`Observation::Down`] with the
    /// reason. The caller bounds the time.
    pub async fn observe(&self) -> Observation {
        let result = match self.source {
            WarmthSource::LlamaSwap => self.llama_swap().await,
            WarmthSource::LlamaServer => self.llama_server().await,
            WarmthSource::Ollama => self.ollama().await,
            WarmthSource::Always => Ok(Observation::Everything),
            WarmthSource::None => Err(ProbeError::NotProbed),
        };
        result.unwrap_or_else(|err| Observation::Down(err.to_string()))
    }

    /// `/running`; where that is missing (404), `/v1/models` with `status`.
    async fn llama_swap(&self) -> Result<Observation, ProbeError> {
        match self.get("running").await? {
            Answer::Ok(body) => return Ok(Observation::Loaded(wire::running_ready(&body)?)),
            Answer::Status(StatusCode::NOT_FOUND) => {}
            Answer::Status(status) => return Err(ProbeError::Status { path: "running", status }),
        }
        match self.get("v1/models").await? {
            Answer::Ok(body) => wire::models_loaded(&body)?.map(Observation::Loaded).ok_or(ProbeError::NoStatus),
            Answer::Status(status) => Err(ProbeError::Status { path: "v1/models", status }),
        }
    }

    /// Router mode lists each model's `status`; a single-model server is warm once its
    /// `/health` answers 200 (503 while it loads).
    async fn llama_server(&self) -> Result<Observation, ProbeError> {
        match self.get("v1/models").await? {
            Answer::Ok(body) => {
                if let Some(loaded) = wire::models_loaded(&body)? {
                    return Ok(Observation::Loaded(loaded));
                }
            }
            // Still loading its one model.
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE) => return Ok(Observation::Loaded(Default::default())),
            Answer::Status(status) => return Err(ProbeError::Status { path: "v1/models", status }),
        }
        match self.get("health").await? {
            Answer::Ok(_) => Ok(Observation::Everything),
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE) => Ok(Observation::Loaded(Default::default())),
            Answer::Status(status) => Err(ProbeError::Status { path: "health", status }),
        }
    }

    async fn ollama(&self) -> Result<Observation, ProbeError> {
        match self.get("api/ps").await? {
            Answer::Ok(body) => Ok(Observation::Loaded(wire::ollama_loaded(&body)?)),
            Answer::Status(status) => Err(ProbeError::Status { path: "api/ps", status }),
        }
    }

    async fn get(&self, path: &'static str) -> Result<Answer, ProbeError> {
        let url = self.root.join(path).map_err(|e| ProbeError::Url { path, reason: e.to_string() })?;
        let response = self
            .http
            .get(url)
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| ProbeError::Transport { path, reason: describe(&e) })?;
        let status = response.status();
        if status != StatusCode::OK {
            return Ok(Answer::Status(status));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| ProbeError::Transport { path, reason: describe(&e) })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ProbeError::TooLarge { path });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer::Ok(body))
    }
}

/// Why a probe could not tell which models are loaded: the reason of an
/// [`Observation::Down`].
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("warmth \"none\" is not probed")]
    NotProbed,
    #[error("cannot build the URL for /{path}: {reason}")]
    Url { path: &'static str, reason: String },
    #[error("GET /{path}: {reason}")]
    Transport { path: &'static str, reason: String },
    #[error("GET /{path}: answer larger than {MAX_BODY_BYTES} bytes")]
    TooLarge { path: &'static str },
    #[error("GET /{path} answered {status}{}", if matches!(*status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) { ": check the upstream's api_key_env" } else { "" })]
    Status { path: &'static str, status: StatusCode },
    #[error(
        "llama-swap has no /running and its /v1/models carries no status: upgrade llama-swap, or set warmth = \"none\""
    )]
    NoStatus,
    #[error(transparent)]
    Unexpected(#[from] wire::Unexpected),
}

/// The innermost cause ("Connection refused (os error 111)"), without the URL.
fn describe(err: &reqwest::Error) -> String {
    let mut deepest = None;
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    deepest.unwrap_or_else(|| "request failed".to_string())
}
