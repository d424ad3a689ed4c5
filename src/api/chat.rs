//! `POST /v1/chat/completions`: identify the caller, parse, resolve the task, classify
//! the content, plan, run, respond — with the trail in the response headers on every
//! path.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tracing::warn;

use super::auth;
use super::extract::JsonBody;
use super::replay;
use super::wire::ChatRequest;
use crate::app::AppState;
use crate::config::Config;
use crate::error::ApiError;
use crate::escalate::{self, Answer, Produced, RunContext, RunError, Trail};
use crate::metrics::Outcome;
use crate::policy::{self, Classification, Locale, PlanRequest, Source};
use crate::upstream::{Failure, Reply, UpstreamError};

pub const TASK_HEADER: HeaderName = HeaderName::from_static("x-tierwise-task");
pub const CLASS_HEADER: HeaderName = HeaderName::from_static("x-tierwise-content-class");
const TIER_HEADER: HeaderName = HeaderName::from_static("x-tierwise-tier");
const MODEL_HEADER: HeaderName = HeaderName::from_static("x-tierwise-model");
const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-tierwise-attempts");

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(mut request): JsonBody<ChatRequest>,
) -> Response {
    let _in_flight = state.metrics.request_started();
    let started = Instant::now();
    let config = &state.config;
    let caller = match auth::identify(config, &headers) {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    let locale = auth::locale(&headers, caller.profile);
    let prepared = match prepare(config, &headers, &mut request) {
        Ok(prepared) => prepared,
        Err(err) => return err.into_response(),
    };
    let Prepared { resolved, classification } = prepared;
    let plan_request = PlanRequest { resolved: &resolved, profile: caller.profile, class: &classification };
    let plan = match policy::plan(config, &plan_request) {
        Ok(plan) => plan,
        Err(refusal) => {
            state.metrics.request_refused(&resolved.task, refusal.code());
            let mut response =
                ApiError::Forbidden { code: refusal.code(), message: refusal.explain(locale) }.into_response();
            set_headers(response.headers_mut(), &resolved.task, None, None, &Trail::default(), &classification);
            return response;
        }
    };
    let ctx = RunContext {
        upstreams: &state.upstreams,
        request: &request,
        fallback_to_rules: caller.profile.fallback_to_rules_on_error,
    };
    let outcome = escalate::run(&ctx, &plan).await;
    let trail = outcome.trail;

    let (mut response, tier, model, result) = match outcome.result {
        Ok(answer) => {
            let tier = answer.step.tier.as_str();
            let model = answer.step.model.clone();
            (respond(answer, &request), Some(tier), Some(model), Outcome::Answered)
        }
        Err(RunError::Refused(err)) => {
            let key = state
                .upstreams
                .get(&err.upstream)
                .and_then(|u| u.config.api_key.as_ref().map(|k| k.expose().to_string()));
            (ApiError::refused(&err, key.as_deref()).into_response(), None, None, Outcome::Refused)
        }
        Err(RunError::Exhausted { last }) => {
            (exhausted(&plan.task, &trail, last.as_ref(), locale).into_response(), None, None, Outcome::Failed)
        }
    };
    state.metrics.request_finished(&plan.task, &trail, tier, result, started.elapsed());
    set_headers(response.headers_mut(), &plan.task, tier, model.as_deref(), &trail, &classification);
    response
}

struct Prepared {
    resolved: policy::Resolved,
    classification: Classification,
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
    Ok(Prepared { resolved, classification })
}

/// The request's content class: the highest of the task's, the header's, the body's
/// `metadata.content_class` (removed before forwarding) and the detector's finding.
pub fn classify(
    config: &Config,
    resolved: &policy::Resolved,
    headers: &HeaderMap,
    request: &mut ChatRequest,
) -> Result<Classification, ApiError> {
    let from_body = request.take_content_class().map_err(|_| {
        ApiError::invalid("`metadata.content_class` must be a string", Some("metadata.content_class".into()))
    })?;
    let from_header = match headers.get(&CLASS_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("the x-tierwise-content-class header is not valid text", None))?,
        ),
    };
    let task_class = if resolved.direct {
        policy::ContentClass::Normal
    } else {
        config.tasks.get(&resolved.task).map(|t| t.content_class).unwrap_or(policy::ContentClass::Normal)
    };
    let stated = [(Source::Header, from_header), (Source::Metadata, from_body.as_deref())];
    let without_scan = policy::classify(task_class, &stated, None).map_err(|bad| {
        let param =
            if bad.source.starts_with("header") { "x-tierwise-content-class" } else { "metadata.content_class" };
        ApiError::invalid(
            format!("unknown content class \"{}\" in {}: use normal or sensitive", bad.value, bad.source),
            Some(param.into()),
        )
    })?;
    if without_scan.class == policy::ContentClass::Sensitive {
        return Ok(without_scan);
    }
    let finding = config.detector.scan(request.texts());
    Ok(match finding {
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

fn respond(answer: Answer, request: &ChatRequest) -> Response {
    match answer.produced {
        Produced::Upstream(Reply::Json(body)) => json_response(body),
        Produced::Upstream(Reply::Stream { first, rest }) => {
            let rest = rest.map(|event| match event {
                Ok(bytes) => Ok::<Bytes, Infallible>(bytes),
                Err(err) => {
                    warn!(error = %err, "upstream stream broke after the first event");
                    Ok(stream_error_event(&err))
                }
            });
            sse_response(Body::from_stream(stream::once(async move { Ok(first) }).chain(rest)))
        }
        Produced::Rules(reply) => {
            let completion = replay::rules_completion(&reply);
            if request.is_stream() {
                sse_response(Body::from(replay::to_sse(&completion, request.include_usage())))
            } else {
                json_response(Bytes::from(completion.to_string()))
            }
        }
    }
}

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    response
}

/// An SSE event in the OpenAI error shape: the SDKs raise it as an `APIError`.
fn stream_error_event(err: &UpstreamError) -> Bytes {
    let api = ApiError::Exhausted {
        status: StatusCode::BAD_GATEWAY,
        code: "upstream_stream_error",
        message: err.to_string(),
        skipped: None,
    };
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(&api.envelope());
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// Every step was skipped or failed: 503 if nothing could even be called, 504 if the
/// last failure was a timeout, else 502. One line per step, localized, and the same
/// machine-readable in `error.skipped`.
fn exhausted(task: &str, trail: &Trail, last: Option<&UpstreamError>, locale: Locale) -> ApiError {
    let (status, code) = match last {
        None => (StatusCode::SERVICE_UNAVAILABLE, "no_tier_available"),
        Some(err) if err.is_timeout() => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        Some(err) if matches!(err.failure, Failure::Connect(_)) => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
        Some(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
    };
    let mut lines = vec![policy::nothing_answered(task, locale)];
    lines.extend(trail.lines(locale).into_iter().map(|l| format!("- {l}")));
    if trail.events.is_empty() {
        lines.push("- (no steps)".into());
    }
    let skipped = serde_json::to_value(trail.views(locale)).ok();
    ApiError::Exhausted { status, code, message: lines.join("\n"), skipped }
}

fn set_headers(
    headers: &mut HeaderMap,
    task: &str,
    tier: Option<&str>,
    model: Option<&str>,
    trail: &Trail,
    classification: &Classification,
) {
    // Config names are validated plain ASCII, so these conversions succeed.
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    };
    set(TASK_HEADER, task);
    set(TIER_HEADER, tier.unwrap_or("none"));
    if let Some(model) = model {
        set(MODEL_HEADER, model);
    }
    set(ATTEMPTS_HEADER, &trail.header_value());
    set(CLASS_HEADER, classification.class.as_str());
}
