//! Application state, the route table, and the tower stack (read top to bottom, outer
//! layer first). Serving is in [`crate::server`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::HeaderValue;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::{info, warn};

use crate::api;
use crate::api::admission::Admission;
use crate::api::extract::BodyReadTimeout;
use crate::audit::Audit;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::shutdown::CancellationToken;
use crate::state::{Budgets, RateLimits, RedisStore, StoreError};
use crate::upstream::{BuildError, Replay, Upstreams};
use crate::warmth::{Probers, Warmth};

/// What one config builds: the config, its upstream clients, its warmth. Replaced whole
/// on reload; a request keeps the generation it started with until it is done.
pub struct Generation {
    pub config: Arc<Config>,
    /// One pooled client per upstream, shared by all requests.
    pub upstreams: Arc<Upstreams>,
    /// Which models are loaded, per upstream: read by requests, fed by the probers.
    pub warmth: Warmth,
    /// When this config was loaded (unix seconds): the `created` of `/v1/models`.
    pub loaded_at_unix: u64,
}

impl Generation {
    fn build(
        config: Config,
        metrics: &Metrics,
        replay: Option<&Arc<Replay>>,
        shared: Option<&Arc<RedisStore>>,
    ) -> Result<Self, BuildError> {
        let upstreams = Upstreams::replaying(&config, replay.cloned(), shared.cloned())?;
        let warmth = Warmth::new(&config, metrics.clone())?;
        let loaded_at_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(Generation { config: Arc::new(config), upstreams: Arc::new(upstreams), warmth, loaded_at_unix })
    }
}

/// tierwise cannot start with this config.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot open the audit log {path} (audit.path): {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot use the state backend (state.url): {0}")]
    State(#[from] StoreError),
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The current generation; replaced atomically by [`AppState::install`].
    generation: Arc<RwLock<Arc<Generation>>>,
    pub metrics: Metrics,
    /// The audit log's sending side; closed (flushed) when serving ends.
    pub audit: Arc<Audit>,
    /// Load shedding for chat completions (`server.max_concurrent_requests`).
    pub admission: Arc<Admission>,
    /// Per-key rate limits, in memory or in Redis (`[state]`); kept across reloads.
    pub rate_limits: Arc<RateLimits>,
    /// Spend budgets of keys and profiles, in memory or in Redis; kept across reloads.
    pub budgets: Arc<Budgets>,
    /// Accepted answers served again (`[tasks.NAME] cache`); kept across reloads (a
    /// changed task changes its keys).
    pub cache: Arc<crate::cache::ResponseCache>,
    /// The Redis of `[state] backend = "redis"`: rate limits, budgets, circuits.
    shared: Option<Arc<RedisStore>>,
    /// The root of the shutdown tree: cancelled on SIGINT or SIGTERM (or by a test).
    pub shutdown: CancellationToken,
    /// The warmth probers of the current generation: restarted on reload, stopped with
    /// the shutdown tree.
    probers: Arc<tokio::sync::Mutex<Option<Probers>>>,
    /// `tierwise eval`'s cache of upstream answers; kept across reloads.
    replay: Option<Arc<Replay>>,
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, StartError> {
        Self::replaying(config, None)
    }

    /// As [`Self::new`], answering upstream calls from `replay` when it has seen them
    /// (`tierwise eval`).
    pub fn replaying(config: Config, replay: Option<Arc<Replay>>) -> Result<Self, StartError> {
        let metrics = Metrics::new()?;
        let audit = match &config.audit {
            None => Audit::disabled(),
            Some(audit) => Audit::start(audit)
                .map_err(|source| StartError::Audit { path: audit.path.display().to_string(), source })?,
        };
        let server = &config.server;
        let admission = Admission::new(server.max_concurrent_requests, server.queue_limit, server.queue_wait);
        let shared = crate::state::connect(&config.state, &metrics)?;
        let rate_limits = RateLimits::new(shared.clone(), metrics.clone());
        let budgets = Budgets::new(shared.clone(), metrics.clone());
        let cache_tier = match &config.state {
            crate::config::StateConfig::Redis(redis) => redis.cache_tier,
            crate::config::StateConfig::Memory => crate::policy::Tier::Local,
        };
        let cache = Arc::new(crate::cache::ResponseCache::new(shared.clone(), cache_tier, metrics.clone()));
        let generation = Generation::build(config, &metrics, replay.as_ref(), shared.as_ref())?;
        Ok(AppState {
            generation: Arc::new(RwLock::new(Arc::new(generation))),
            admission: Arc::new(admission),
            rate_limits: Arc::new(rate_limits),
            budgets: Arc::new(budgets),
            cache,
            shared,
            metrics,
            audit: Arc::new(audit),
            shutdown: CancellationToken::new(),
            probers: Arc::new(tokio::sync::Mutex::new(None)),
            replay,
        })
    }

    /// The current generation: config, upstream clients, warmth.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts the current generation's warmth probers (once serving starts).
    pub async fn start_probers(&self) {
        let mut probers = self.probers.lock().await;
        if let Some(old) = probers.take() {
            old.stop().await;
        }
        *probers = Some(self.generation().warmth.start(self.shutdown.child_token()));
    }

    /// Listens, until shutdown, for what the other replicas say about circuits (shared
    /// state only).
    pub fn start_fleet_listener(&self) {
        let Some(shared) = self.shared.clone() else { return };
        let state = self.clone();
        tokio::spawn(shared.listen(self.shutdown.child_token(), move |upstream, news| {
            if let Some(upstream) = state.generation().upstreams.get(upstream) {
                upstream.fleet_said(news);
            }
        }));
    }

    /// Stops the warmth probers and waits until no probe is in flight.
    pub async fn stop_probers(&self) {
        if let Some(probers) = self.probers.lock().await.take() {
            probers.stop().await;
        }
    }

    /// Replaces the generation with one built from `config`: new requests use it,
    /// requests in flight finish on the old one. `server` and `audit` settings need a
    /// restart and keep their old values (logged).
    pub async fn install(&self, config: Config) -> Result<(), BuildError> {
        let old = self.generation();
        let restart_only = old.config.server != config.server
            || old.config.audit != config.audit
            || old.config.state != config.state
            || old.config.tracing != config.tracing;
        if restart_only {
            warn!(
                "the new config changes [server], [audit], [state] or [tracing]: those need a restart and keep their old values"
            );
        }
        let mut config = config;
        config.server = old.config.server.clone();
        config.audit = old.config.audit.clone();
        config.state = old.config.state.clone();
        config.tracing = old.config.tracing.clone();
        let generation =
            Arc::new(Generation::build(config, &self.metrics, self.replay.as_ref(), self.shared.as_ref())?);
        let mut probers = self.probers.lock().await;
        if let Some(old) = probers.take() {
            old.stop().await;
        }
        if !self.shutdown.is_cancelled() {
            *probers = Some(generation.warmth.start(self.shutdown.child_token()));
        }
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = generation;
        info!("config reloaded");
        Ok(())
    }
}

pub fn build_router(state: AppState) -> Router {
    let runtime = state.generation();
    let server = &runtime.config.server;
    let edge = ServiceBuilder::new()
        // Request id: keep the caller's x-request-id or make one, and echo it back.
        .layer(SetRequestIdLayer::x_request_id(RequestIds::default()))
        .layer(PropagateRequestIdLayer::x_request_id())
        // One span per request, carrying its id.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::telemetry::request_span)
                .on_response(crate::telemetry::on_response),
        )
        // A panic becomes a 500 in the OpenAI envelope instead of a dropped connection.
        .layer(CatchPanicLayer::custom(panic_response))
        // Body limit, enforced where the body is read, so the 413 is in the envelope.
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        // Deadline until the response starts (streams then run on their own timeouts),
        // and the time a client has to send its body.
        .layer(middleware::from_fn_with_state((server.request_timeout, server.body_read_timeout), request_timeout));

    let routes = Router::new()
        .route("/v1/chat/completions", post(api::chat::chat_completions))
        .route("/v1/responses", post(api::responses::create_response))
        .route("/v1/embeddings", post(api::embeddings::create_embeddings))
        .route("/v1/models", get(api::models::list_models))
        .route("/v1/tierwise/explain", post(api::explain::explain_request))
        .route("/v1/tierwise/reload", post(api::health::reload))
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz));
    let routes = match server.metrics_listen {
        None => routes.route("/metrics", get(api::health::metrics)),
        Some(_) => routes,
    };
    routes.fallback(api::unknown_url).method_not_allowed_fallback(api::method_not_allowed).with_state(state).layer(edge)
}

/// The router of `server.metrics_listen`: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(api::health::metrics)).fallback(api::unknown_url).with_state(state)
}

/// When `server.request_timeout_ms` cuts the request off: put in the request's extensions
/// by the deadline layer, so a chat request dropped unanswered can tell a timeout (the
/// client got a 504) from a client that left, in its audit line.
#[derive(Clone, Copy, Debug)]
pub struct ResponseDeadline(pub tokio::time::Instant);

async fn request_timeout(
    State((limit, body_read)): State<(Duration, Duration)>,
    mut request: Request,
    next: Next,
) -> Response {
    let deadline = tokio::time::Instant::now() + limit;
    request.extensions_mut().insert(ResponseDeadline(deadline));
    request.extensions_mut().insert(BodyReadTimeout(body_read));
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout(limit).into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::Internal("internal error in tierwise (the request was not completed)".into()).into_response()
}

/// Request ids unique per process: a start-time prefix and a counter.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    /// The next id's sequence number; shared by all connections.
    next: Arc<AtomicU64>,
}

impl Default for RequestIds {
    fn default() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let seed = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
        RequestIds { prefix: format!("tw-{:012x}", seed & 0xffff_ffff_ffff).into(), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{}-{n:x}", self.prefix)).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests;
