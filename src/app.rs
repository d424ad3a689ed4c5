//! Application state, the route table, the tower stack (read top to bottom, outer layer
//! first), and serving with graceful shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::HeaderValue;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::{info, info_span, warn, Span};

use crate::api;
use crate::api::admission::Admission;
use crate::api::extract::BodyReadTimeout;
use crate::api::rate_limit::RateLimiter;
use crate::audit::Audit;
use crate::config::{self, Config, ConfigSource};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;
use crate::warmth::{Probers, Warmth};

/// What a config builds. Swapped whole on reload; a request keeps the one it started
/// with until it is done.
pub struct Runtime {
    pub config: Arc<Config>,
    /// One pooled client per upstream, shared by all requests.
    pub upstreams: Arc<Upstreams>,
    /// Which models are loaded, per upstream: read by requests, fed by the probers.
    pub warmth: Warmth,
    /// When this config was loaded (unix seconds): the `created` of `/v1/models`.
    pub loaded_at_unix: u64,
}

impl Runtime {
    fn build(config: Config, metrics: &Metrics) -> Result<Self, String> {
        let upstreams = Upstreams::from_config(&config)?;
        let warmth = Warmth::new(&config, metrics.clone())?;
        let loaded_at_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(Runtime { config: Arc::new(config), upstreams: Arc::new(upstreams), warmth, loaded_at_unix })
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The current runtime; replaced atomically by [`AppState::reload`].
    runtime: Arc<RwLock<Arc<Runtime>>>,
    pub metrics: Metrics,
    /// The audit log's sending side; closed (flushed) when `serve` ends.
    pub audit: Arc<Audit>,
    /// Load shedding for chat completions (`server.max_concurrent_requests`).
    pub admission: Arc<Admission>,
    /// Per-key rate limits; kept across reloads.
    pub rate_limits: Arc<RateLimiter>,
    /// The warmth probers of the current runtime; restarted on reload, stopped when
    /// `serve` ends.
    probers: Arc<tokio::sync::Mutex<Option<Probers>>>,
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, String> {
        let metrics = Metrics::new().map_err(|e| format!("cannot register metrics: {e}"))?;
        let audit = match &config.audit {
            None => Audit::disabled(),
            Some(audit) => Audit::start(audit)
                .map_err(|e| format!("cannot open the audit log {} (audit.path): {e}", audit.path.display()))?,
        };
        let server = &config.server;
        let admission = Admission::new(server.max_concurrent_requests, server.queue_limit, server.queue_wait);
        let runtime = Runtime::build(config, &metrics)?;
        Ok(AppState {
            runtime: Arc::new(RwLock::new(Arc::new(runtime))),
            admission: Arc::new(admission),
            rate_limits: Arc::new(RateLimiter::default()),
            metrics,
            audit: Arc::new(audit),
            probers: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// The current runtime: config, upstream clients, warmth.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the runtime with one built from `config`: new requests use it, requests
    /// in flight finish on the old one. `server` and `audit` settings need a restart and
    /// keep their old values (logged).
    pub async fn reload(&self, config: Config) -> Result<(), String> {
        let old = self.runtime();
        if format!("{:?}", old.config.server) != format!("{:?}", config.server)
            || format!("{:?}", old.config.audit) != format!("{:?}", config.audit)
        {
            warn!("the new config changes [server] or [audit]: those need a restart and keep their old values");
        }
        let mut config = config;
        config.server = old.config.server.clone();
        config.audit = old.config.audit.clone();
        let runtime = Arc::new(Runtime::build(config, &self.metrics)?);
        let mut probers = self.probers.lock().await;
        if let Some(old) = probers.take() {
            old.stop().await;
        }
        *probers = Some(runtime.warmth.start());
        *self.runtime.write().unwrap_or_else(|e| e.into_inner()) = runtime;
        info!("config reloaded");
        Ok(())
    }
}

/// Reloads the config from where it came from (its file, or the built-in default with
/// the current environment). A config that fails validation is refused with every
/// problem, counted, and the old one stays.
pub async fn reload_from_source(state: &AppState) -> Result<(), String> {
    let source = state.runtime().config.source.clone();
    let env = |name: &str| std::env::var(name).ok();
    let loaded = match &source {
        ConfigSource::File(path) => config::load(Some(path), &env).map_err(|e| e.to_string()),
        ConfigSource::BuiltIn => config::load(None, &env).map_err(|e| e.to_string()),
        ConfigSource::Inline => Err("this config was given inline and has no file to reload".to_string()),
    };
    let result = match loaded {
        Ok(config) => state.reload(config).await,
        Err(err) => Err(err),
    };
    match &result {
        Ok(()) => state.metrics.config_reload("applied"),
        Err(err) => {
            state.metrics.config_reload("rejected");
            warn!("config reload refused, the old config stays: {err}");
        }
    }
    result
}

pub fn build_router(state: AppState) -> Router {
    let runtime = state.runtime();
    let server = &runtime.config.server;
    let edge = ServiceBuilder::new()
        // Request id: keep the caller's x-request-id or make one, and echo it back.
        .layer(SetRequestIdLayer::x_request_id(RequestIds::default()))
        .layer(PropagateRequestIdLayer::x_request_id())
        // One span per request, carrying its id.
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // A panic becomes a 500 in the OpenAI envelope instead of a dropped connection.
        .layer(CatchPanicLayer::custom(panic_response))
        // Body limit, enforced where the body is read, so the 413 is in the envelope.
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        // Deadline until the response starts (streams then run on their own timeouts),
        // and the time a client has to send its body.
        .layer(middleware::from_fn_with_state((server.request_timeout, server.body_read_timeout), request_timeout));

    let routes = Router::new()
        .route("/v1/chat/completions", post(api::chat::chat_completions))
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

/// Starts the warmth probers and serves until `shutdown` resolves; then stops the
/// probers, stops accepting and lets in-flight requests (streams included) finish for up
/// to `server.shutdown_grace_ms`; then flushes and closes the audit log.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server_config = state.runtime().config.server.clone();
    let grace = server_config.shutdown_grace;
    let audit = state.audit.clone();
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = server_config.metrics_listen {
        let listener = TcpListener::bind(addr).await?;
        info!(%addr, "metrics listening");
        let router = metrics_router(state.clone());
        let mut stopped = metrics_stopped;
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::spawn(serve_connections(listener, router, server_config.clone(), stop));
    }
    let signalled = Arc::new(Notify::new());
    let notify = signalled.clone();
    *state.probers.lock().await = Some(state.runtime().warmth.start());
    let probers = state.probers.clone();
    let watcher = crate::reload::watch(state.clone());
    let stop = async move {
        shutdown.await;
        info!(grace_ms = grace.as_millis() as u64, "shutting down: no new connections, finishing in-flight requests");
        if let Some(probers) = probers.lock().await.take() {
            probers.stop().await;
        }
        notify.notify_one();
    };
    let server = serve_connections(listener, build_router(state), server_config, stop);
    tokio::select! {
        () = server => {}
        () = grace_expired(signalled, grace) => warn!("grace period over: dropping the requests still in flight"),
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let _ = stop_metrics.send(true);
    audit.close().await;
    if audit.lost() > 0 {
        warn!(lost = audit.lost(), "audit records were lost (see tierwise_audit_lost_total)");
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
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_header_size(server.max_header_bytes)
        .max_buf_size(server.max_header_bytes.max(MIN_READ_BUFFER));
    let connections = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
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

async fn grace_expired(signalled: Arc<Notify>, grace: Duration) {
    signalled.notified().await;
    tokio::time::sleep(grace).await;
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

fn request_span(request: &Request) -> Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    info_span!("request", id, method = %request.method(), path = request.uri().path())
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
