//! Calling upstreams: one pooled HTTP client per upstream, with the connect, first-byte
//! and total timeouts from its config. Answers come back whole (JSON) or as a stream of
//! whole SSE events whose first event has already arrived — always in OpenAI's shapes:
//! `kind = "openai"` upstreams pass through as they are, `kind = "anthropic"` ones are
//! translated ([`anthropic`], called from `messages`).

pub mod anthropic;
pub mod circuit;
mod embeddings;
mod error;
mod messages;
pub mod replay;
mod responses;
pub mod sse;
mod stream;
pub mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::config::{Config, KeyHeader, ResponsesApi, UpstreamConfig, UpstreamKind};

use crate::slots::Slots;
pub use crate::slots::{Busy, Slot};
use circuit::Breaker;
pub use error::{body_excerpt, BuildError, Failure, TimeoutPhase, UpstreamError};
pub use replay::Replay;
use stream::Decoder;
pub use stream::EventStream;

/// Largest error or JSON body read from an upstream.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// An upstream's answer to a chat completion, in OpenAI's shapes whatever the
/// upstream's kind.
pub enum Reply {
    /// A complete `chat.completion` JSON body, checked to be one.
    Json(Bytes),
    /// An SSE stream of `chat.completion.chunk` events; `first` holds its first whole
    /// event(s), `rest` yields the others (`Stream<Item = Result<Bytes, UpstreamError>>`).
    Stream { first: Bytes, rest: EventStream },
    /// A `response` object from `POST {base_url}/responses` (`responses = "native"`),
    /// checked to have `output`; only a Responses request gets one.
    Response(Bytes),
    /// The Responses stream events of a native upstream, as `Stream` is for chat.
    ResponseStream { first: Bytes, rest: EventStream },
}

impl Reply {
    /// A stream keeps `slot` taken until it ends.
    fn holding(self, slot: &Slot) -> Reply {
        match self {
            Reply::Stream { first, rest } => Reply::Stream { first, rest: rest.holding(slot.clone()) },
            Reply::ResponseStream { first, rest } => Reply::ResponseStream { first, rest: rest.holding(slot.clone()) },
            whole => whole,
        }
    }
}

/// One configured upstream and its connection pool.
pub struct Upstream {
    pub config: UpstreamConfig,
    /// Where every call goes: `{base_url}/chat/completions` (OpenAI) or
    /// `{base_url}/messages` (Anthropic), with the configured `query` appended.
    endpoint: reqwest::Url,
    /// Pooled connections, shared by every request to this upstream.
    http: reqwest::Client,
    /// Content type, protocol version, configured headers and the key.
    headers: HeaderMap,
    /// Opens after repeated failures; shared by every request to this upstream.
    breaker: Mutex<Breaker>,
    /// `max_concurrent`, its queue, and the count of calls in flight.
    slots: Slots,
    /// `{base_url}/embeddings` (with the query), for an OpenAI-compatible upstream.
    embeddings: Option<reqwest::Url>,
    /// `{base_url}/responses` (with the query), for `responses = "native"`.
    responses: Option<reqwest::Url>,
    /// `tierwise eval`'s cache of answers; `None` when serving.
    replay: Option<Arc<Replay>>,
    /// It refused a request with `n` > 1: verifiers sample with one call per answer.
    refuses_n: std::sync::atomic::AtomicBool,
    /// The shared state its circuit is counted in with the other replicas', if any.
    fleet: Option<Arc<crate::state::RedisStore>>,
}

/// Every upstream of a config, by name.
pub struct Upstreams {
    by_name: HashMap<String, Arc<Upstream>>,
}

impl Upstreams {
    pub fn from_config(config: &Config) -> Result<Self, BuildError> {
        Self::replaying(config, None, None)
    }

    /// As [`Self::from_config`], answering from `replay` what it has seen (`tierwise eval`),
    /// and counting circuit failures with the fleet's in `fleet` (shared state).
    pub fn replaying(
        config: &Config,
        replay: Option<Arc<Replay>>,
        fleet: Option<Arc<crate::state::RedisStore>>,
    ) -> Result<Self, BuildError> {
        let mut by_name = HashMap::new();
        for (name, up) in &config.upstreams {
            let mut upstream = Upstream::new(up.clone())?;
            upstream.replay = replay.clone();
            upstream.fleet = fleet.clone();
            by_name.insert(name.clone(), Arc::new(upstream));
        }
        Ok(Upstreams { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.by_name.values()
    }
}

/// Which OpenAI API a run calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Chat completions (Responses requests are translated to them, but for a step
    /// passed through natively).
    Chat,
    Embeddings,
    /// `POST /responses` of an upstream with `responses = "native"`.
    Responses,
}

/// The part of a completion body checked before it is passed on.
#[derive(Deserialize)]
struct CompletionShape {
    #[expect(dead_code, reason = "read only to check that it is there: a completion has choices")]
    choices: Vec<IgnoredAny>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, BuildError> {
        install_crypto_provider();
        let embeddings = match config.kind {
            UpstreamKind::OpenAi => Some(endpoint(&config, Some("embeddings"))?),
            UpstreamKind::Anthropic => None,
        };
        let responses = match config.responses {
            ResponsesApi::Native => Some(endpoint(&config, Some("responses"))?),
            ResponsesApi::Translate => None,
        };
        let endpoint = endpoint(&config, None)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            // A redirect is never followed: it would send the request — sensitive content
            // included — to a host the config never named. It is the upstream's error.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| BuildError::Client { upstream: config.name.clone(), source })?;
        let headers = headers(&config)?;
        let breaker = Mutex::new(Breaker::new(config.circuit_failures, config.circuit_cooldown));
        let slots = Slots::new(config.max_concurrent, config.queue_limit, config.queue_wait);
        Ok(Upstream {
            config,
            endpoint,
            embeddings,
            responses,
            http,
            headers,
            breaker,
            slots,
            replay: None,
            refuses_n: Default::default(),
            fleet: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether a call may start now: `Err` while the circuit is open.
    pub fn allows_call(&self) -> Result<(), circuit::OpenCircuit> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner()).allows_call(tokio::time::Instant::now())
    }

    /// Whether it refused `n` > 1 before (see `escalate::score::sampling`).
    pub fn refuses_n(&self) -> bool {
        self.refuses_n.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn refused_n(&self) {
        self.refuses_n.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Feeds a call's outcome to the circuit breaker — and, with shared state, to the
    /// fleet's count (in the background): a failure always, a success only after
    /// failures.
    pub fn record(&self, outcome: &Result<Reply, UpstreamError>) {
        let report = {
            let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            let had_failures = breaker.has_failures();
            match outcome {
                Ok(_) => {
                    breaker.succeeded();
                    had_failures.then_some(true)
                }
                Err(err) if err.unhealthy() => {
                    breaker.failed(tokio::time::Instant::now());
                    Some(false)
                }
                // The upstream answered; a 4xx says nothing about its health.
                Err(_) => {
                    breaker.succeeded();
                    had_failures.then_some(true)
                }
            }
        };
        if let (Some(ok), Some(fleet), Ok(runtime)) = (report, &self.fleet, tokio::runtime::Handle::try_current()) {
            let (fleet, name) = (fleet.clone(), self.config.name.clone());
            let (threshold, cooldown) = (self.config.circuit_failures, self.config.circuit_cooldown);
            runtime.spawn(async move {
                let _ = fleet.circuit_report(&name, ok, threshold, cooldown).await;
            });
        }
    }

    /// What another replica said about this upstream's circuit (shared state).
    pub fn fleet_said(&self, news: crate::state::CircuitNews) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match news {
            crate::state::CircuitNews::Opened { cooldown, failures } => {
                breaker.opened_by_fleet(tokio::time::Instant::now(), cooldown, failures);
            }
            crate::state::CircuitNews::Closed => breaker.succeeded(),
        }
    }

    /// Whether the circuit is open (or probing) now.
    pub fn circuit_open(&self) -> bool {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner()).is_open()
    }

    /// Why this upstream cannot be called at all right now, if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        match (&self.config.api_key_env, &self.config.api_key) {
            (Some(var), None) => Some(format!("its API key env var {var} is not set")),
            _ => None,
        }
    }

    /// A place for one call under `max_concurrent`: at once, after queueing, or `Busy`.
    pub async fn reserve(&self, deadline: Option<tokio::time::Instant>) -> Result<Slot, Busy> {
        self.slots.acquire(deadline).await
    }

    /// Calls holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// Sends one chat completion (`body`: the OpenAI request JSON tierwise forwards) in
    /// `slot`, which a stream keeps until it ends. A stream is returned only once its
    /// first event has arrived, so a failure before the first byte can still go to the
    /// next step.
    pub async fn chat(&self, slot: &Slot, body: Bytes, stream: bool) -> Result<Reply, UpstreamError> {
        let replay = self.replay.as_ref().filter(|_| !stream);
        let started = tokio::time::Instant::now();
        let reply = match self.config.kind {
            UpstreamKind::OpenAi => self.chat_openai(body.clone(), stream).await,
            UpstreamKind::Anthropic => messages::chat(self, body.clone(), stream).await,
        };
        if let (Some(replay), Ok(Reply::Json(answer))) = (replay, &reply) {
            replay.put(self.name(), self.endpoint.as_str(), &body, answer, started.elapsed());
        }
        reply.map(|reply| reply.holding(slot))
    }

    /// `tierwise eval`'s cached answer to `body`, if it has one: given after as long as
    /// the live call took, without a slot — only live calls queue for the upstream, so a
    /// cached answer's time is the model's, whatever runs beside it. Always `None` when
    /// serving.
    pub async fn replayed(&self, endpoint: Endpoint, body: &[u8], stream: bool) -> Option<Reply> {
        let replay = self.replay.as_ref().filter(|_| !stream)?;
        let url = match endpoint {
            Endpoint::Chat => &self.endpoint,
            Endpoint::Embeddings => self.embeddings.as_ref()?,
            Endpoint::Responses => self.responses.as_ref()?,
        };
        let (answer, took) = replay.get(self.name(), url.as_str(), body)?;
        tokio::time::sleep(took).await;
        Some(match endpoint {
            Endpoint::Responses => Reply::Response(answer),
            Endpoint::Chat | Endpoint::Embeddings => Reply::Json(answer),
        })
    }

    async fn chat_openai(&self, body: Bytes, stream: bool) -> Result<Reply, UpstreamError> {
        let response = self.succeeded(self.send(body).await?).await?;
        if !stream {
            let body = self.read_body(response).await?;
            if let Err(err) = serde_json::from_slice::<CompletionShape>(&body) {
                return Err(self.fail(Failure::Protocol(format!("not a chat completion ({err})"))));
            }
            return Ok(Reply::Json(body));
        }
        self.start_stream(response, Decoder::openai()).await
    }

    /// `response` when its status is a success; else the failure, with what the upstream
    /// said and its `Retry-After`.
    async fn succeeded(&self, response: reqwest::Response) -> Result<reqwest::Response, UpstreamError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            // Not followed (see the client): a misconfigured base_url, not the request's fault.
            let failure = format!(
                "answered {status}, a redirect, which tierwise does not follow: set base_url to the final address"
            );
            return Err(self.fail(Failure::Protocol(failure)));
        }
        let retry_after = error::retry_after_of(response.headers());
        let body = self.read_body(response).await.unwrap_or_default();
        Err(self.fail(Failure::Status { status, body }).with_retry_after(retry_after))
    }

    /// POSTs `body` to the endpoint; waits at most `first_byte_timeout` for the headers.
    async fn send(&self, body: Bytes) -> Result<reqwest::Response, UpstreamError> {
        self.send_to(self.endpoint.clone(), body).await
    }

    /// POSTs `body` to `url`. A pooled connection the upstream closed while it sat idle
    /// (llama-server drops keep-alive connections after 5 s) fails before any answer
    /// byte; that request is sent once more on a fresh connection, as the upstream never
    /// read it.
    async fn send_to(&self, url: reqwest::Url, body: Bytes) -> Result<reqwest::Response, UpstreamError> {
        let first_byte = self.config.first_byte_timeout;
        let deadline = tokio::time::Instant::now() + first_byte;
        let mut resent = false;
        loop {
            let mut headers = self.headers.clone();
            crate::telemetry::propagate(&mut headers);
            let request = self.http.post(url.clone()).headers(headers).body(body.clone());
            match tokio::time::timeout_at(deadline, request.send()).await {
                Err(_) => return Err(self.fail(Failure::Timeout { phase: TimeoutPhase::FirstByte, after: first_byte })),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(err)) if !resent && error::closed_before_answer(&err) => resent = true,
                Ok(Err(err)) => return Err(self.transport(&err)),
            }
        }
    }

    /// Checks that a 2xx answer to a stream request is SSE and waits (at most
    /// `first_byte_timeout`) for its first decoded event.
    async fn start_stream(&self, response: reqwest::Response, decoder: Decoder) -> Result<Reply, UpstreamError> {
        let first_byte = self.config.first_byte_timeout;
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !is_sse {
            return Err(
                self.fail(Failure::Protocol("a stream was asked for but the answer is not text/event-stream".into()))
            );
        }
        let mut rest = EventStream::new(self.name(), self.config.timeout, response.bytes_stream().boxed(), decoder);
        match tokio::time::timeout(first_byte, rest.next()).await {
            Err(_) => Err(self.fail(Failure::Timeout { phase: TimeoutPhase::FirstByte, after: first_byte })),
            Ok(None) => Err(self.fail(Failure::Protocol("the stream ended before its first event".into()))),
            Ok(Some(Err(mut err))) => {
                // Nothing reached the client yet: the next step may still answer.
                if let Failure::MidStream(msg) = err.failure {
                    err.failure = Failure::Connect(msg);
                }
                Err(err)
            }
            Ok(Some(Ok(first))) => Ok(Reply::Stream { first, rest }),
        }
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(self.fail(Failure::Protocol(format!("body larger than {MAX_BODY_BYTES} bytes"))));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.transport(&e))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(self.fail(Failure::Protocol(format!("body larger than {MAX_BODY_BYTES} bytes"))));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    fn transport(&self, err: &reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            self.fail(Failure::Timeout { phase: TimeoutPhase::Total, after: self.config.timeout })
        } else {
            self.fail(Failure::Connect(error::describe(err)))
        }
    }

    fn fail(&self, failure: Failure) -> UpstreamError {
        UpstreamError::new(self.name(), failure)
    }
}

/// rustls needs one process-wide crypto provider; `ring` builds fast and small.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider is installed already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The URL every call goes to: the kind's path under `base_url`, then `query`.
/// Where calls go: the kind's chat endpoint, or `path` under the base URL.
fn endpoint(config: &UpstreamConfig, path: Option<&str>) -> Result<reqwest::Url, BuildError> {
    let path = match (path, config.kind) {
        (Some(path), _) => path,
        (None, UpstreamKind::OpenAi) => "chat/completions",
        (None, UpstreamKind::Anthropic) => "messages",
    };
    let mut url = join_url(&config.base_url, path)
        .ok_or_else(|| BuildError::BaseUrl { upstream: config.name.clone(), url: config.base_url.to_string() })?;
    if !config.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &config.query {
            pairs.append_pair(name, value);
        }
    }
    Ok(url)
}

/// The headers of every call: content type, `anthropic-version` (Anthropic), the
/// configured `headers`, then the key in its header (marked sensitive, so it is never
/// logged). Nothing of the client's request travels.
fn headers(config: &UpstreamConfig) -> Result<HeaderMap, BuildError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if config.kind == UpstreamKind::Anthropic {
        headers.insert(HeaderName::from_static("anthropic-version"), config.anthropic_version.clone());
    }
    for (name, value) in &config.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(key) = &config.api_key {
        let value = match &config.key_header {
            KeyHeader::Bearer => format!("Bearer {}", key.expose()),
            KeyHeader::Plain(_) => key.expose().to_string(),
        };
        let mut value = HeaderValue::try_from(value).map_err(|_| BuildError::Key { upstream: config.name.clone() })?;
        value.set_sensitive(true);
        headers.insert(config.key_header.name(), value);
    }
    Ok(headers)
}

/// `base` + `path`, keeping the base's own path (`/v1`) and query; `None` for a URL
/// that cannot be a base (`mailto:…`).
fn join_url(base: &reqwest::Url, path: &str) -> Option<reqwest::Url> {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    (!url.cannot_be_a_base()).then_some(url)
}

#[cfg(test)]
mod tests;
