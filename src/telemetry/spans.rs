//! The spans, with the OpenTelemetry GenAI semantic conventions' attribute names: a
//! SERVER span per request, a CLIENT span per attempt (`chat {gen_ai.request.model}`) and
//! per judge or verifier call. tierwise's own attributes are `tierwise.*`. Prompts and
//! answers never go into a span; keys never do.

use axum::extract::Request;
use serde_json::Value;
use tracing::field::Empty;
use tracing::{debug_span, info_span, Span};

use crate::config::UpstreamKind;
use crate::policy::Step;
use crate::upstream::{Upstream, UpstreamError};

/// The span of one request: today's log span, and with traces on a SERVER span that
/// continues the client's trace.
pub fn request_span(request: &Request) -> Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let (method, path) = (request.method().as_str(), request.uri().path());
    if !super::enabled() {
        return info_span!("request", id, method, path);
    }
    let span = info_span!(
        "request",
        id,
        method,
        path,
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        url.path = path,
        http.response.status_code = Empty,
        tierwise.request_id = id,
        tierwise.task = Empty,
        tierwise.profile = Empty,
        tierwise.content_class = Empty,
        tierwise.tier = Empty,
        tierwise.model = Empty,
        tierwise.outcome = Empty,
    );
    super::continue_trace(&span, request.headers());
    span
}

/// Logs the response at DEBUG (tower-http's default) and, with traces on, puts its status
/// on the request span.
pub fn on_response<B>(response: &http::Response<B>, latency: std::time::Duration, span: &Span) {
    tower_http::trace::OnResponse::<B>::on_response(
        tower_http::trace::DefaultOnResponse::new(),
        response,
        latency,
        span,
    );
    if super::enabled() {
        span.record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The request's end, on its span: task, profile, class, who answered, the outcome.
pub fn record_request(span: &Span, fields: &RequestFields<'_>) {
    if !super::enabled() || span.is_disabled() {
        return;
    }
    span.record("tierwise.task", fields.task);
    span.record("tierwise.profile", fields.profile);
    span.record("tierwise.content_class", fields.class);
    if let Some((tier, model)) = fields.answered {
        span.record("tierwise.tier", tier);
        span.record("tierwise.model", model);
    }
    span.record("tierwise.outcome", fields.outcome);
}

/// What [`record_request`] puts on a request's span.
pub struct RequestFields<'a> {
    pub task: &'a str,
    pub profile: &'a str,
    pub class: &'a str,
    pub answered: Option<(&'a str, &'a str)>,
    pub outcome: &'a str,
}

/// The CLIENT span of one attempt on `step` (its retries are events on it).
pub fn attempt_span(step: &Step, upstream: &Upstream, warm: Option<bool>) -> Span {
    debug_span!(
        target: "tierwise::trace",
        "attempt",
        otel.name = %format_args!("chat {}", step.upstream_model),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider(upstream),
        gen_ai.request.model = %step.upstream_model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
        server.address = upstream_host(upstream),
        error.type = Empty,
        tierwise.step = step.index,
        tierwise.tier = step.tier.as_str(),
        tierwise.model = %step.model,
        tierwise.upstream = upstream.name(),
        tierwise.warm = ?warm,
        tierwise.verdict = Empty,
    )
}

/// The CLIENT span of a call a verifier makes: `role` is `judge`, or `sampling` (the
/// extra answers of `consistency` and `self_check`). Its fields repeat the attempt's: a
/// span's fields are fixed where it is created.
pub fn call_span(upstream: &Upstream, model: &str, role: &'static str) -> Span {
    debug_span!(
        target: "tierwise::trace",
        "verify_call",
        otel.name = %format_args!("chat {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = provider(upstream),
        gen_ai.request.model = model,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
        server.address = upstream_host(upstream),
        error.type = Empty,
        tierwise.role = role,
        tierwise.upstream = upstream.name(),
        tierwise.verdict = Empty,
    )
}

/// What a completion says about the call: its model, usage and finish reasons.
pub fn record_completion(span: &Span, completion: &Value) {
    if span.is_disabled() {
        return;
    }
    if let Some(model) = completion.get("model").and_then(Value::as_str) {
        span.record("gen_ai.response.model", model);
    }
    let usage = completion.get("usage");
    for (field, names) in [
        ("gen_ai.usage.input_tokens", ["prompt_tokens", "input_tokens"]),
        ("gen_ai.usage.output_tokens", ["completion_tokens", "output_tokens"]),
    ] {
        if let Some(tokens) = names.iter().find_map(|n| usage?.get(n)?.as_u64()) {
            span.record(field, tokens);
        }
    }
    let reasons: Vec<&str> = completion
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("finish_reason")?.as_str())
        .collect();
    if !reasons.is_empty() {
        span.record("gen_ai.response.finish_reasons", format!("{reasons:?}"));
    }
}

/// The call failed: `error.type` is what failed, never the upstream's own words.
pub fn record_failure(span: &Span, err: &UpstreamError) {
    if span.is_disabled() {
        return;
    }
    span.record("error.type", err.summary());
    span.record("otel.status_code", "ERROR");
}

fn provider(upstream: &Upstream) -> &'static str {
    match upstream.config.kind {
        UpstreamKind::OpenAi => "openai",
        UpstreamKind::Anthropic => "anthropic",
    }
}

fn upstream_host(upstream: &Upstream) -> String {
    upstream.config.base_url.host_str().unwrap_or_default().to_string()
}
