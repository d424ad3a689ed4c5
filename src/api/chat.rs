//! `POST /v1/chat/completions`: parse, resolve the task, plan, run, respond — with the
//! trail in the response headers on every path.

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

use super::extract::JsonBody;
use super::wire::ChatRequest;
use crate::app::AppState;
use crate::error::ApiError;
use crate::escalate::{self, Answer, RunError, Trail};
use crate::metrics::Outcome;
use crate::policy;
use crate::upstream::{Reply, UpstreamError};

pub const TASK_HEADER: HeaderName = HeaderName::from_static("x-tierwise-task");
const TIER_HEADER: HeaderName = HeaderName::from_static("x-tierwise-tier");
const MODEL_HEADER: HeaderName = HeaderName::from_static("x-tierwise-model");
const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-tierwise-attempts");

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ChatRequest>,
) -> Response {
    let _in_flight = state.metrics.request_started();
    let started = Instant::now();
    if request.messages.is_empty() {
        return ApiError::invalid("`messages` must contain at least one message", Some("messages".into()))
            .into_response();
    }
    let name = match task_name(&headers, &request) {
        Ok(name) => name,
        Err(err) => return err.into_response(),
    };
    let resolved = match policy::resolve(&state.config, name) {
        Ok(resolved) => resolved,
        Err(unknown) => return ApiError::ModelNotFound { name: unknown.name, known: unknown.known }.into_response(),
    };
    let plan = policy::plan(&state.config, &resolved);
    let outcome = escalate::run(&state.upstreams, &plan, &request).await;
    let trail = outcome.trail;

    let (mut response, tier, model, result) = match outcome.result {
        Ok(answer) => {
            let tier = answer.step.tier.as_str();
            let model = answer.step.model.clone();
            (respond(answer), Some(tier), Some(model), Outcome::Answered)
        }
        Err(RunError::Refused(err)) => {
            let key = state
                .upstreams
                .get(&err.upstream)
                .and_then(|u| u.config.api_key.as_ref().map(|k| k.expose().to_string()));
            (ApiError::refused(&err, key.as_deref()).into_response(), None, None, Outcome::Refused)
        }
        Err(RunError::Exhausted { last }) => {
            (exhausted(&plan.task, &trail, last.as_ref()).into_response(), None, None, Outcome::Failed)
        }
    };
    state.metrics.request_finished(&plan.task, &trail, tier, result, started.elapsed());
    set_trail_headers(response.headers_mut(), &plan.task, tier, model.as_deref(), &trail);
    response
}

/// `x-tierwise-task` if present, else `model`.
fn task_name<'a>(headers: &'a HeaderMap, request: &'a ChatRequest) -> Result<&'a str, ApiError> {
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

fn respond(answer: Answer) -> Response {
    match answer.reply {
        Reply::Json(body) => {
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Reply::Stream { first, rest } => {
            let rest = rest.map(|event| match event {
                Ok(bytes) => Ok::<Bytes, Infallible>(bytes),
                Err(err) => {
                    warn!(error = %err, "upstream stream broke after the first event");
                    Ok(stream_error_event(&err))
                }
            });
            let body = stream::once(async move { Ok(first) }).chain(rest);
            let mut response = Response::new(Body::from_stream(body));
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
            response
        }
    }
}

/// An SSE event in the OpenAI error shape: the SDKs raise it as an `APIError`.
fn stream_error_event(err: &UpstreamError) -> Bytes {
    let api = ApiError::Exhausted {
        status: StatusCode::BAD_GATEWAY,
        code: "upstream_stream_error",
        message: err.to_string(),
    };
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(&api.envelope());
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// Every step was skipped or failed: 504 if the last failure was a timeout, 502 if an
/// upstream failed, 503 if nothing could even be called.
fn exhausted(task: &str, trail: &Trail, last: Option<&UpstreamError>) -> ApiError {
    let (status, code) = match last {
        None => (StatusCode::SERVICE_UNAVAILABLE, "no_tier_available"),
        Some(err) if err.is_timeout() => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        Some(err) if matches!(err.failure, crate::upstream::Failure::Connect(_)) => {
            (StatusCode::BAD_GATEWAY, "upstream_unreachable")
        }
        Some(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
    };
    let message = if trail.events.is_empty() {
        format!("task \"{task}\" has no step that can run")
    } else {
        format!("no step of task \"{task}\" produced an answer: {}", trail.describe())
    };
    ApiError::Exhausted { status, code, message }
}

fn set_trail_headers(headers: &mut HeaderMap, task: &str, tier: Option<&str>, model: Option<&str>, trail: &Trail) {
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
}
