//! The client's error when a run produced no answer: an upstream's own 4xx passed on (its
//! key removed), or every step skipped, failed or rejected — one line per step, localized,
//! and the same machine-readable in `error.skipped` — and the SSE error events a stream
//! ends with.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::app::Generation;
use crate::error::ApiError;
use crate::escalate::{RunError, Trail};
use crate::policy::{self, Locale, SkipReason};
use crate::upstream::{Failure, UpstreamError};

/// The error a failed run answers with.
pub fn of_run(generation: &Generation, task: &str, trail: &Trail, err: RunError, locale: Locale) -> ApiError {
    match err {
        RunError::Rejected(err) => {
            let upstream = generation.upstreams.get(&err.upstream);
            let key = upstream.and_then(|u| u.config.api_key.as_ref().map(|k| k.expose().to_string()));
            ApiError::rejected(&err, key.as_deref())
        }
        RunError::Exhausted { last } => exhausted(task, trail, last.as_ref(), locale),
    }
}

/// Every step was skipped, failed or rejected: 503 if nothing could even be called, 504
/// if the last failure was a timeout, else 502 — or 429 with its `Retry-After` when the
/// last step said "later".
fn exhausted(task: &str, trail: &Trail, last: Option<&UpstreamError>, locale: Locale) -> ApiError {
    let called = trail.attempts().next().is_some();
    let (status, code) = match last {
        None if called => (StatusCode::BAD_GATEWAY, "upstream_error"),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no_tier_available"),
        Some(err) if err.is_timeout() => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        Some(err) if matches!(err.failure, Failure::Connect(_)) => (StatusCode::BAD_GATEWAY, "upstream_unreachable"),
        Some(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
    };
    let rate_limited = last.is_some_and(
        |e| matches!(e.failure, Failure::Status { status, .. } if status == StatusCode::TOO_MANY_REQUESTS),
    );
    let mut lines = vec![policy::nothing_answered(task, locale)];
    lines.extend(trail.lines(locale).into_iter().map(|l| format!("- {l}")));
    if trail.events.is_empty() {
        lines.push("- (no steps)".into());
    }
    if rate_limited {
        // The last step said "later": so does tierwise, with its Retry-After.
        let retry_after = last.and_then(|e| e.retry_after).or(Some(Duration::from_secs(1)));
        return ApiError::Overloaded {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limit_exceeded",
            message: lines.join("\n"),
            retry_after,
        };
    }
    let skipped = serde_json::to_value(trail.views(locale)).ok();
    // A paid step skipped for its budget: nothing is left until the budget resets.
    let over_budget =
        trail.skips().filter(|s| s.why.reason() == SkipReason::Budget).filter_map(|s| s.why.retry_after()).max();
    if let Some(resets_in) = over_budget {
        return ApiError::Exhausted {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "budget_exceeded",
            message: lines.join("\n"),
            skipped,
            retry_after: Some(resets_in),
        };
    }
    // A step skipped only for now (busy, circuit open): come back when it may run.
    let retry_after = trail.skips().filter_map(|s| s.why.retry_after()).min();
    ApiError::Exhausted { status, code, message: lines.join("\n"), skipped, retry_after }
}

/// An SSE event in the OpenAI error shape: the SDKs raise it as an `APIError`.
pub fn event(err: &ApiError) -> Bytes {
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(&err.envelope());
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// The event a passed-through stream ends with when its upstream breaks off.
pub fn broken_stream_event(err: &UpstreamError) -> Bytes {
    event(&ApiError::Exhausted {
        status: StatusCode::BAD_GATEWAY,
        code: "upstream_stream_error",
        message: err.to_string(),
        skipped: None,
        retry_after: None,
    })
}
