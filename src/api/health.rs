//! Liveness, readiness and the metrics exposition.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::HeaderValue;

use crate::app::AppState;

/// Alive: the process answers.
pub async fn healthz() -> Response {
    json_response(br#"{"status":"ok"}"#.to_vec())
}

/// Ready: a validated config is loaded and its upstream clients are built. `warmth`
/// shows each upstream's last probe and its warm and cold model aliases; a down
/// upstream does not make tierwise unready (the run loop escalates past it).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let runtime = state.generation();
    let body = serde_json::json!({
        "status": "ready",
        "config": runtime.config.source.to_string(),
        "tasks": runtime.config.tasks.len(),
        "models": runtime.config.models.len(),
        "upstreams": runtime.config.upstreams.len(),
        "warmth": runtime.warmth.report(),
    });
    json_response(body.to_string().into_bytes())
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.audit_lost(state.audit.lost());
    state.metrics.trace_spans_dropped(crate::telemetry::dropped_spans());
    state.metrics.observe_upstreams(&state.generation().upstreams);
    state.cache.observe();
    let mut response = state.metrics.encode().into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

pub fn json_response(body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `POST /v1/tierwise/reload` (admin key): reload the config, as SIGHUP does.
pub async fn reload(State(state): State<AppState>, _: super::caller::Admin) -> Response {
    match crate::reload::from_source(&state).await {
        Ok(()) => json_response(br#"{"status":"reloaded"}"#.to_vec()),
        Err(problems) => {
            crate::error::ApiError::invalid(format!("config reload refused: {problems}"), None).into_response()
        }
    }
}
