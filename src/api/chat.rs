//! `POST /v1/chat/completions`: identify the caller, parse, resolve the task, classify
//! the content, plan, run, respond — with the trail in the response headers on every
//! path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::{HeaderMap, HeaderName};

use super::auth;
use super::extract::JsonBody;
use super::respond;
use super::wire::ChatRequest;
use crate::app::{AppState, ResponseDeadline, Runtime};
use crate::config::{Config, KeyLimits};
use crate::error::ApiError;
use crate::escalate::{self, Progress, RunContext, RunError, Trail};
use crate::metrics::InFlight;
use crate::policy::{self, Classification, Locale, Plan, PlanRequest, Source};

pub const TASK_HEADER: HeaderName = HeaderName::from_static("x-tierwise-task");
pub const CLASS_HEADER: HeaderName = HeaderName::from_static("x-tierwise-content-class");
pub const DEADLINE_HEADER: HeaderName = HeaderName::from_static("x-tierwise-deadline-ms");

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    cut_off: Option<Extension<ResponseDeadline>>,
    JsonBody(mut request): JsonBody<ChatRequest>,
) -> Response {
    let started = Instant::now();
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let runtime = state.runtime();
    let config = &runtime.config;
    let early = |err: ApiError, task: Option<&str>| {
        respond::audit_early(&state, &request_id, task, &err);
        err.into_response()
    };
    let caller = match auth::identify(config, &headers) {
        Ok(caller) => caller,
        Err(err) => return early(err, None),
    };
    if let Some(key) = caller.key {
        if let Err(limited) = state.rate_limits.admit(key, started) {
            state.metrics.rate_limited(&caller.profile.name, limited.limit.as_str());
            return early(limited.into_error(&caller.profile.name), None);
        }
    }
    let permit = match state.admission.admit().await {
        Ok(permit) => permit,
        Err(err) => {
            state.metrics.shed(None);
            return early(err, None);
        }
    };
    let in_flight = state.metrics.request_started();
    let locale = auth::locale(&headers, caller.profile);
    let Prepared { resolved, classification, deadline } = match prepare(config, &headers, &mut request) {
        Ok(prepared) => prepared,
        Err(err) => return early(err, None),
    };
    let plan_request = PlanRequest { resolved: &resolved, profile: caller.profile, class: &classification };
    let plan = match policy::plan(config, &plan_request) {
        Ok(plan) => plan,
        Err(refusal) => {
            state.metrics.request_refused(&resolved.task, refusal.code());
            let err = ApiError::Forbidden { code: refusal.code(), message: refusal.explain(locale) };
            let mut response = early(err, Some(&resolved.task));
            respond::set_headers(response.headers_mut(), &resolved.task, None, &Trail::default(), &classification);
            return response;
        }
    };
    let rate_key = caller.key.filter(|k| k.limits.tokens_per_minute.is_some()).map(|k| (k.digest, k.limits));
    // Read only if the request is dropped mid-run: for its audit line and its tokens.
    let progress = (state.audit.enabled() || rate_key.is_some()).then(Progress::default);
    let may_buffer = request.is_stream() && (0..plan.steps.len()).any(|i| escalate::is_verified(config, &plan, i));
    let job = Job {
        request_id,
        state: state.clone(),
        runtime: runtime.clone(),
        request: Arc::new(request),
        plan: Arc::new(plan),
        profile: caller.profile.name.clone(),
        deadline: deadline.map(|d| started + d),
        classification,
        locale,
        started,
        cut_off: cut_off.map(|Extension(ResponseDeadline(at))| at),
        recorded: AtomicBool::new(false),
        rate_key,
        progress,
        guards: Some(Guards { _in_flight: in_flight, _permit: permit }),
    };
    let mut running = Box::pin(job.clone_inputs().run());
    if may_buffer {
        // A verified stream is buffered: if it takes long, start the response with
        // keep-alive comments rather than leave the client waiting for headers.
        match tokio::time::timeout(runtime.config.server.sse_keepalive, &mut running).await {
            Ok(outcome) => respond::finish(job, outcome),
            Err(_) => respond::delayed(job, running),
        }
    } else {
        let outcome = running.await;
        respond::finish(job, outcome)
    }
}

/// Everything a request's run and response need, owned, so a delayed stream can carry
/// it past the handler.
pub struct Job {
    pub request_id: String,
    pub state: AppState,
    /// The config and upstreams this request started with (a reload does not touch it).
    pub runtime: Arc<Runtime>,
    pub request: Arc<ChatRequest>,
    pub plan: Arc<Plan>,
    pub profile: String,
    /// When the request must be answered by.
    pub deadline: Option<Instant>,
    pub classification: Classification,
    pub locale: Locale,
    pub started: Instant,
    /// When `server.request_timeout_ms` cuts the response off, if it applies.
    pub cut_off: Option<Instant>,
    /// Whether the request's metrics and audit line are recorded: a job dropped before
    /// (the client left, or the request deadline passed) writes its audit line on drop.
    pub recorded: AtomicBool,
    /// The key whose `tokens_per_minute` the tokens this request uses are charged to.
    pub rate_key: Option<([u8; 32], KeyLimits)>,
    /// The run's trail so far, when a dropped request would need it.
    pub progress: Option<Progress>,
    /// Held until the response is done — for a stream, until its body ends.
    pub guards: Option<Guards>,
}

/// What a request holds until its response is done: its place in
/// `in_flight_requests` and under `server.max_concurrent_requests`.
pub struct Guards {
    _in_flight: InFlight,
    _permit: Option<crate::slots::Slot>,
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.recorded.load(Ordering::Relaxed) {
            respond::abandoned(self);
        }
    }
}

/// The inputs of the run, detached from the response side.
struct RunInputs {
    runtime: Arc<Runtime>,
    request: Arc<ChatRequest>,
    plan: Arc<Plan>,
    profile: String,
    deadline: Option<Instant>,
    progress: Option<Progress>,
}

impl Job {
    fn clone_inputs(&self) -> RunInputs {
        RunInputs {
            runtime: self.runtime.clone(),
            request: self.request.clone(),
            plan: self.plan.clone(),
            profile: self.profile.clone(),
            deadline: self.deadline,
            progress: self.progress.clone(),
        }
    }
}

impl RunInputs {
    async fn run(self) -> escalate::Outcome {
        let Some(profile) = self.runtime.config.profiles.get(&self.profile) else {
            return escalate::Outcome { trail: Trail::default(), result: Err(RunError::Exhausted { last: None }) };
        };
        let ctx = RunContext {
            config: &self.runtime.config,
            upstreams: &self.runtime.upstreams,
            request: &self.request,
            profile,
            warmth: &self.runtime.warmth,
            deadline: self.deadline,
            progress: self.progress.as_ref(),
        };
        escalate::run(&ctx, &self.plan).await
    }
}

struct Prepared {
    resolved: policy::Resolved,
    classification: Classification,
    /// How long the request may take: `x-tierwise-deadline-ms`, else the task's.
    deadline: Option<Duration>,
}

/// Everything about the request that needs no upstream: its task and content class.
fn prepare(config: &Config, headers: &HeaderMap, request: &mut ChatRequest) -> Result<Prepared, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::invalid("`messages` must contain at least one message", Some("messages".into())));
    }
    let name = task_name(headers, request)?.to_string();
    let resolved = policy::resolve(config, &name)
        .map_err(|unknown| ApiError::ModelNotFound { name: unknown.name, known: unknown.known })?;
    let classification = classify(config, &resolved, headers, request)?;
    let deadline = match headers.get(&DEADLINE_HEADER) {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "x-tierwise-deadline-ms must be a positive number of milliseconds",
                        Some("x-tierwise-deadline-ms".into()),
                    )
                })?,
        ),
        None if resolved.direct => None,
        None => config.tasks.get(&resolved.task).and_then(|t| t.deadline),
    };
    Ok(Prepared { resolved, classification, deadline })
}

/// The request's content class: the highest of the task's, every value of every
/// `x-tierwise-content-class` header, the body's `metadata.content_class` (removed before
/// forwarding) and the detector's finding in everything the request forwards.
pub fn classify(
    config: &Config,
    resolved: &policy::Resolved,
    headers: &HeaderMap,
    request: &mut ChatRequest,
) -> Result<Classification, ApiError> {
    let from_body = request.take_content_class().map_err(|_| {
        ApiError::invalid("`metadata.content_class` must be a string", Some("metadata.content_class".into()))
    })?;
    let mut stated = Vec::new();
    for value in headers.get_all(&CLASS_HEADER) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::invalid("the x-tierwise-content-class header is not valid text", None))?;
        // Two headers and one folded into a list say the same: every value counts.
        stated.extend(value.split(',').map(|v| (Source::Header, Some(v))));
    }
    stated.push((Source::Metadata, from_body.as_deref()));
    let task = config.tasks.get(&resolved.task).filter(|_| !resolved.direct);
    let task_class = task.map_or(policy::ContentClass::Normal, |t| t.content_class);
    let without_scan = policy::classify(task_class, &stated, None).map_err(|bad| {
        let param = match bad.source {
            Source::Header => "x-tierwise-content-class",
            Source::Metadata => "metadata.content_class",
        };
        ApiError::invalid(
            format!("unknown content class \"{}\" in {}: use normal or sensitive", bad.value, bad.source.label()),
            Some(param.into()),
        )
    })?;
    if without_scan.class == policy::ContentClass::Sensitive {
        return Ok(without_scan);
    }
    let detect = task.map_or(config.detect, |t| t.detect);
    let scanner = policy::Scanner { detector: &config.detector, opaque: detect.opaque };
    Ok(match request.scan(&scanner) {
        Some(finding) => policy::classify(without_scan.class, &[], Some(finding)).unwrap_or(without_scan),
        None => without_scan,
    })
}

/// `x-tierwise-task` if present, else `model`.
pub fn task_name<'a>(headers: &'a HeaderMap, request: &'a ChatRequest) -> Result<&'a str, ApiError> {
    match headers.get(&TASK_HEADER) {
        Some(value) => {
            value.to_str().map_err(|_| ApiError::invalid("the x-tierwise-task header is not valid text", None))
        }
        None => request.model.as_deref().ok_or_else(|| {
            ApiError::invalid(
                "missing `model`: name a tierwise task or model alias (or send the x-tierwise-task header)",
                Some("model".into()),
            )
        }),
    }
}
