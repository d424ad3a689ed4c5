//! Turning a run's outcome into the client's response: JSON (with the trail spliced in),
//! a passed-through or replayed SSE stream, or an OpenAI error — with the trail headers
//! on every path, and, for a stream whose headers went out before the answer was known,
//! keep-alive comments and a final trail comment.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};
use tracing::warn;

use super::chat::{Guards, Job, CLASS_HEADER, TASK_HEADER};
use super::rate_limit::StreamCharge;
use super::replay;
use crate::error::ApiError;
use crate::escalate::{Answer, Outcome, Produced, RunError, Trail};
use crate::metrics;
use crate::policy::{self, Classification, Locale, Tier};
use crate::upstream::{Failure, Reply, UpstreamError};

const TIER_HEADER: HeaderName = HeaderName::from_static("x-tierwise-tier");
const MODEL_HEADER: HeaderName = HeaderName::from_static("x-tierwise-model");
const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-tierwise-attempts");

type Running = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The response once the outcome is known, headers and all.
pub fn finish(mut job: Job, outcome: Outcome) -> Response {
    let guards = job.guards.take();
    let Outcome { mut trail, result } = outcome;
    if let Ok(Answer { produced: Produced::Upstream(Reply::Json(body)), .. }) = &result {
        trail.fill_tokens(usage_of_body(body));
    }
    let answered = result.as_ref().ok().map(|a| (a.step.tier.as_str(), a.step.model.clone()));
    let answer_text = result.as_ref().ok().and_then(|a| answer_text(&job, a));
    let (mut response, error) = match result {
        Ok(answer) => (answer_response(&job, &trail, answer, guards), None),
        Err(err) => {
            let err = error_of(&job, &trail, err);
            let code = err.code_str();
            (err.into_response(), code)
        }
    };
    let tier_model = answered.as_ref().map(|(t, m)| (*t, m.as_str()));
    record(&job, &trail, tier_model, response.status(), error.as_deref(), answer_text);
    let (tier, model) = answered.unzip();
    let applied = applied_class(&job, &trail);
    set_headers(response.headers_mut(), &job.plan.task, tier.zip(model.as_deref()), &trail, &applied);
    response
}

/// The class the request ended with: as classified, or sensitive when a model's words
/// made it so during the run.
fn applied_class(job: &Job, trail: &Trail) -> Classification {
    let mut applied = job.classification.clone();
    if let Some(because) = &trail.reclassified {
        applied.class = policy::ContentClass::Sensitive;
        applied.because.push(because.clone());
    }
    applied
}

/// The response when a verified stream takes longer than `sse_keepalive`: headers now,
/// keep-alive comments while the run goes on, then the answer (or an error event) and
/// a comment with the trail. Dropping the body drops the run, cancelling its calls.
pub fn delayed(job: Job, running: Running) -> Response {
    let interval = job.runtime.config.server.sse_keepalive;
    let (task, class) = (job.plan.task.clone(), job.classification.class);
    let body = stream::unfold(Phase::Waiting(running, Box::new(job)), move |phase| async move {
        match phase {
            Phase::Waiting(mut running, job) => {
                tokio::select! {
                    outcome = &mut running => {
                        let mut rest = deliver(*job, outcome);
                        let first = rest.next().await?;
                        Some((first, Phase::Passing(rest)))
                    }
                    () = tokio::time::sleep(interval) => {
                        Some((Bytes::from_static(b": keep-alive\n\n"), Phase::Waiting(running, job)))
                    }
                }
            }
            Phase::Passing(mut rest) => rest.next().await.map(|bytes| (bytes, Phase::Passing(rest))),
        }
    })
    .map(Ok::<Bytes, Infallible>);
    let mut response = sse_response(Body::from_stream(body));
    // Only what is known before the first byte; the rest is in the trailing comment.
    let headers = response.headers_mut();
    let _ = try_set(headers, TASK_HEADER, &task);
    let _ = try_set(headers, CLASS_HEADER, class.as_str());
    response
}

enum Phase {
    Waiting(Running, Box<Job>),
    Passing(BoxStream<'static, Bytes>),
}

/// The rest of a delayed stream, once the outcome is known.
fn deliver(mut job: Job, outcome: Outcome) -> BoxStream<'static, Bytes> {
    let guards = job.guards.take();
    holding(deliver_events(job, outcome), guards).boxed()
}

fn deliver_events(job: Job, outcome: Outcome) -> BoxStream<'static, Bytes> {
    let Outcome { trail, result } = outcome;
    let answered = result.as_ref().ok().map(|a| (a.step.tier.as_str(), a.step.model.clone()));
    let answer_text = result.as_ref().ok().and_then(|a| answer_text(&job, a));
    let error = match &result {
        Ok(_) => None,
        Err(RunError::Refused(_)) => Some("upstream_refused".to_string()),
        Err(RunError::Exhausted { .. }) => Some("no_answer".to_string()),
    };
    // The status line went out before the answer was known: 200.
    let tier_model = answered.as_ref().map(|(t, m)| (*t, m.as_str()));
    record(&job, &trail, tier_model, StatusCode::OK, error.as_deref(), answer_text);
    let trailer = trailer_comment(&job, &trail, answered.as_ref().map(|(t, m)| (*t, m.as_str())));
    let include_usage = job.request.include_usage();
    match result {
        Ok(Answer { step, produced: Produced::Upstream(Reply::Stream { first, rest }) }) => {
            passthrough(&job, (step.tier, &step.model), first, rest).chain(stream::once(async move { trailer })).boxed()
        }
        Ok(Answer { produced: Produced::Completion(completion), .. }) => {
            stream::once(async move { replay::to_sse_with(&completion, include_usage, Some(&trailer)) }).boxed()
        }
        Ok(Answer { produced: Produced::Rules(reply), .. }) => {
            let completion = replay::rules_completion(&reply);
            stream::once(async move { replay::to_sse_with(&completion, include_usage, Some(&trailer)) }).boxed()
        }
        Ok(Answer { produced: Produced::Upstream(Reply::Json(bytes)), .. }) => {
            let completion: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            stream::once(async move { replay::to_sse_with(&completion, include_usage, Some(&trailer)) }).boxed()
        }
        Err(err) => {
            let event = error_event(&error_of(&job, &trail, err));
            stream::iter([event, trailer]).boxed()
        }
    }
}

/// `: tierwise {...}` — what the headers could not say when they went out.
fn trailer_comment(job: &Job, trail: &Trail, answered: Option<(&str, &str)>) -> Bytes {
    let summary = json!({
        "task": job.plan.task,
        "tier": answered.map(|a| a.0).unwrap_or("none"),
        "model": answered.map(|a| a.1),
        "attempts": trail.header_value(),
    });
    Bytes::from(format!(": tierwise {summary}\n\n"))
}

/// Keeps `guards` alive until `events` ends (or the client goes away).
fn holding<S: futures_util::Stream + Send + 'static>(
    events: S,
    guards: Option<Guards>,
) -> impl futures_util::Stream<Item = S::Item> + Send {
    events.map(move |item| {
        let _ = &guards;
        item
    })
}

fn answer_response(job: &Job, trail: &Trail, answer: Answer, guards: Option<Guards>) -> Response {
    let (tier, model) = (answer.step.tier.as_str(), answer.step.model.clone());
    match answer.produced {
        Produced::Upstream(Reply::Json(body)) => {
            let body = if job.runtime.config.server.trail_in_body {
                splice_trail(body, &trail_object(job, trail, tier, &model))
            } else {
                body
            };
            json_response(body)
        }
        Produced::Upstream(Reply::Stream { first, rest }) => {
            let events = passthrough(job, (answer.step.tier, &model), first, rest);
            sse_response(Body::from_stream(holding(events, guards).map(Ok::<Bytes, Infallible>)))
        }
        Produced::Completion(completion) => {
            job.state.metrics.first_token(answer.step.tier, &model, job.started.elapsed());
            sse_response(Body::from(replay::to_sse(&completion, job.request.include_usage())))
        }
        Produced::Rules(reply) => {
            let mut completion = replay::rules_completion(&reply);
            if job.request.is_stream() {
                sse_response(Body::from(replay::to_sse(&completion, job.request.include_usage())))
            } else {
                if job.runtime.config.server.trail_in_body {
                    completion["tierwise"] = trail_object(job, trail, tier, &model);
                }
                json_response(Bytes::from(completion.to_string()))
            }
        }
    }
}

/// The upstream's events as they come; a break after the first ends the stream with an
/// OpenAI error event. Usage is read on the way, for the token and cost metrics.
fn passthrough(
    job: &Job,
    answered: (Tier, &str),
    first: Bytes,
    rest: impl futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static,
) -> BoxStream<'static, Bytes> {
    let (tier, model) = (answered.0, answered.1.to_string());
    job.state.metrics.first_token(tier, &model, job.started.elapsed());
    let (metrics, config, task) = (job.state.metrics.clone(), job.runtime.config.clone(), job.plan.task.clone());
    let mut charge = job.rate_key.map(|key| {
        let prompt_bytes = job.request.texts().map(|(_, text)| text.len()).sum();
        StreamCharge::new(job.state.rate_limits.clone(), key, prompt_bytes)
    });
    let mut count_usage = move |events: &Bytes| {
        let usage = usage_in_events(events);
        if let Some((prompt, completion)) = usage {
            metrics.tokens_used(&config, tier, &model, prompt, completion);
            if tier < Tier::Cloud {
                metrics.cost_avoided(&config, &task, prompt, completion);
            }
        }
        if let Some(charge) = &mut charge {
            charge.passed(events, usage);
        }
    };
    count_usage(&first);
    let rest = rest.map(move |event| match event {
        Ok(bytes) => {
            count_usage(&bytes);
            bytes
        }
        Err(err) => {
            warn!(error = %err, "upstream stream broke after the first event");
            stream_error_event(&err)
        }
    });
    stream::once(async move { first }).chain(rest).boxed()
}

#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<UsageCounts>,
}

#[derive(serde::Deserialize)]
struct UsageCounts {
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// `(prompt, completion)` tokens of a completion body.
fn usage_of_body(body: &[u8]) -> Option<(u64, u64)> {
    let usage = serde_json::from_slice::<UsageOnly>(body).ok()?.usage?;
    Some((usage.prompt_tokens, usage.completion_tokens))
}

/// `(prompt, completion)` tokens in SSE events, if one of them carries usage.
fn usage_in_events(events: &[u8]) -> Option<(u64, u64)> {
    if !events.windows(9).any(|w| w == b"\"usage\":{") {
        return None;
    }
    let text = std::str::from_utf8(events).ok()?;
    text.lines().filter_map(|l| l.strip_prefix("data:")).find_map(|data| usage_of_body(data.trim().as_bytes()))
}

/// The full trail, as the `tierwise` object of a JSON body.
fn trail_object(job: &Job, trail: &Trail, tier: &str, model: &str) -> Value {
    json!({
        "task": job.plan.task,
        "profile": job.profile,
        "tier": tier,
        "model": model,
        "content_class": applied_class(job, trail).class,
        "attempts": trail.views(job.locale),
    })
}

/// Inserts `"tierwise": {...}` as the last member of a JSON object body, leaving every
/// other byte as the upstream sent it.
fn splice_trail(body: Bytes, trail: &Value) -> Bytes {
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace());
    let Some(end) = end.filter(|&i| body[i] == b'}') else { return body };
    let empty = body[..end].iter().rposition(|b| !b.is_ascii_whitespace()).is_some_and(|i| body[i] == b'{');
    let mut out = Vec::with_capacity(body.len() + 512);
    out.extend_from_slice(&body[..end]);
    out.extend_from_slice(if empty { b"\"tierwise\":" } else { b",\"tierwise\":" });
    out.extend_from_slice(trail.to_string().as_bytes());
    out.extend_from_slice(&body[end..]);
    Bytes::from(out)
}

fn error_of(job: &Job, trail: &Trail, err: RunError) -> ApiError {
    match err {
        RunError::Refused(err) => {
            let key = job
                .runtime
                .upstreams
                .get(&err.upstream)
                .and_then(|u| u.config.api_key.as_ref().map(|k| k.expose().to_string()));
            ApiError::refused(&err, key.as_deref())
        }
        RunError::Exhausted { last } => exhausted(&job.plan.task, trail, last.as_ref(), job.locale),
    }
}

/// Metrics and the audit line for a finished request.
fn record(
    job: &Job,
    trail: &Trail,
    answered: Option<(&str, &str)>,
    status: StatusCode,
    error: Option<&str>,
    answer: Option<String>,
) {
    job.recorded.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcome = if answered.is_some() {
        metrics::Outcome::Answered
    } else if status.is_client_error() {
        metrics::Outcome::Refused
    } else {
        metrics::Outcome::Failed
    };
    charge_tokens(job, trail);
    let took = job.started.elapsed();
    let finished = metrics::Finished { task: &job.plan.task, trail, tier: answered.map(|a| a.0), outcome, took };
    job.state.metrics.request_finished(&job.runtime.config, &finished);
    let audit = &job.state.audit;
    if !audit.enabled() {
        return;
    }
    let outcome = match outcome {
        metrics::Outcome::Answered => "answered",
        metrics::Outcome::Refused => "refused",
        metrics::Outcome::Failed => "failed",
    };
    let mut line = audit_line(job, trail, answered, Some(status), outcome, error);
    if audit.include_content {
        line["messages"] = serde_json::to_value(&job.request.messages).unwrap_or(Value::Null);
        line["answer"] = answer.map(Value::String).unwrap_or(Value::Null);
    }
    audit.record(line);
}

/// The audit line of a request dropped before its response was complete: cut off by
/// `server.request_timeout_ms` (the client got a 504), or given up by its client (or by
/// shutdown, when its grace period ran out). What the run had done by then is lost with it.
pub fn abandoned(job: &Job) {
    let done = job.progress.as_ref().map(|p| p.snapshot()).unwrap_or_default();
    // What the attempts that finished used; the call cut off reported nothing.
    charge_tokens(job, &done.trail);
    if !job.state.audit.enabled() {
        return;
    }
    let timed_out = job.cut_off.is_some_and(|at| tokio::time::Instant::now() >= at);
    let mut line = if timed_out {
        audit_line(job, &done.trail, None, Some(StatusCode::GATEWAY_TIMEOUT), "failed", Some("request_timeout"))
    } else {
        audit_line(job, &done.trail, None, None, "abandoned", Some("client_gone"))
    };
    if let (Some(step), Some(attempts)) = (&done.waiting_on, line["attempts"].as_array_mut()) {
        attempts.push(json!({
            "kind": "attempt",
            "step": step.index,
            "tier": step.tier,
            "model": step.model,
            "upstream": step.upstream,
            "verdict": "abandoned",
        }));
    }
    job.state.audit.record(line);
}

/// Charges the tokens `trail`'s attempts reported to the key's `tokens_per_minute`.
fn charge_tokens(job: &Job, trail: &Trail) {
    if let Some((digest, limits)) = &job.rate_key {
        let (prompt, completion) = trail.tokens();
        let used = prompt.saturating_add(completion);
        job.state.rate_limits.spend_tokens(digest, *limits, used, tokio::time::Instant::now());
    }
}

/// One audit line (DESIGN §9), without content.
fn audit_line(
    job: &Job,
    trail: &Trail,
    answered: Option<(&str, &str)>,
    status: Option<StatusCode>,
    outcome: &str,
    error: Option<&str>,
) -> Value {
    let took = job.started.elapsed();
    let plan: Vec<Value> = job
        .plan
        .steps
        .iter()
        .map(|s| {
            let (action, reason) = match &s.action {
                crate::policy::Action::Run => ("run", None),
                crate::policy::Action::Skip(why) => ("skip", Some(why.reason())),
            };
            json!({"step": s.step.index, "tier": s.step.tier, "model": s.step.model, "action": action, "reason": reason})
        })
        .collect();
    let (prompt, completion) = trail.tokens();
    let applied = applied_class(job, trail);
    let attempts = if job.state.audit.include_content {
        trail.views(Locale::En)
    } else {
        trail.views_without_content(Locale::En, &job.runtime.config.detector)
    };
    json!({
        "id": job.request_id,
        "time": crate::audit::timestamp(std::time::SystemTime::now()),
        "task": job.plan.task,
        "profile": job.profile,
        "content_class": applied.class,
        "class_because": applied.because,
        "stream": job.request.is_stream(),
        "status": status.map(|s| s.as_u16()),
        "outcome": outcome,
        "error": error,
        "tier": answered.map(|a| a.0),
        "model": answered.map(|a| a.1),
        "plan": plan,
        "attempts": attempts,
        "rules_reply": job.plan.rules_reply.is_some(),
        "duration_ms": (took.as_secs_f64() * 1e6).round() / 1e3,
        "tokens": {"prompt": prompt, "completion": completion},
    })
}

/// The answer's text, when the audit log keeps content and it is known without reading
/// a stream.
fn answer_text(job: &Job, answer: &Answer) -> Option<String> {
    if !job.state.audit.include_content {
        return None;
    }
    let completion = match &answer.produced {
        Produced::Upstream(Reply::Json(bytes)) => serde_json::from_slice(bytes).ok()?,
        Produced::Completion(completion) => completion.clone(),
        Produced::Rules(reply) => return Some(reply.clone()),
        Produced::Upstream(Reply::Stream { .. }) => return None,
    };
    Some(crate::escalate::Candidate::from_completion(&completion).text)
}

/// The audit line of a request refused before it had a plan (bad request, auth, policy).
pub fn audit_early(state: &crate::app::AppState, request_id: &str, task: Option<&str>, err: &ApiError) {
    if !state.audit.enabled() {
        return;
    }
    state.audit.record(json!({
        "id": request_id,
        "time": crate::audit::timestamp(std::time::SystemTime::now()),
        "task": task,
        "status": err.status().as_u16(),
        "outcome": "refused",
        "error": err.code_str(),
    }));
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
fn error_event(err: &ApiError) -> Bytes {
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(&err.envelope());
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

fn stream_error_event(err: &UpstreamError) -> Bytes {
    error_event(&ApiError::Exhausted {
        status: StatusCode::BAD_GATEWAY,
        code: "upstream_stream_error",
        message: err.to_string(),
        skipped: None,
        retry_after: None,
    })
}

/// Every step was skipped, failed or rejected: 503 if nothing could even be called, 504
/// if the last failure was a timeout, else 502. One line per step, localized, and the
/// same machine-readable in `error.skipped`.
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
        let retry_after = last.and_then(|e| e.retry_after).or(Some(std::time::Duration::from_secs(1)));
        return ApiError::Overloaded {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limit_exceeded",
            message: lines.join("\n"),
            retry_after,
        };
    }
    let skipped = serde_json::to_value(trail.views(locale)).ok();
    // A step skipped only for now (busy, circuit open): come back when it may run.
    let retry_after = trail.skips().filter_map(|s| s.why.retry_after()).min();
    ApiError::Exhausted { status, code, message: lines.join("\n"), skipped, retry_after }
}

fn try_set(headers: &mut HeaderMap, name: HeaderName, value: &str) -> Option<()> {
    headers.insert(name, HeaderValue::try_from(value).ok()?);
    Some(())
}

/// The trail headers. Config names are validated plain ASCII, so these succeed.
pub fn set_headers(
    headers: &mut HeaderMap,
    task: &str,
    answered: Option<(&str, &str)>,
    trail: &Trail,
    classification: &Classification,
) {
    let _ = try_set(headers, TASK_HEADER, task);
    let _ = try_set(headers, TIER_HEADER, answered.map(|a| a.0).unwrap_or("none"));
    if let Some((_, model)) = answered {
        let _ = try_set(headers, MODEL_HEADER, model);
    }
    let _ = try_set(headers, ATTEMPTS_HEADER, &trail.header_value());
    let _ = try_set(headers, CLASS_HEADER, classification.class.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trail_is_spliced_in_as_the_last_member() {
        let trail = json!({"tier": "local"});
        let spliced = splice_trail(Bytes::from("{\"id\":\"x\",\"choices\":[]}\n"), &trail);
        assert_eq!(spliced, &b"{\"id\":\"x\",\"choices\":[],\"tierwise\":{\"tier\":\"local\"}}\n"[..]);
        assert_eq!(splice_trail(Bytes::from("{ }"), &trail), &b"{ \"tierwise\":{\"tier\":\"local\"}}"[..]);
        assert_eq!(splice_trail(Bytes::from("[1]"), &trail), &b"[1]"[..], "not an object: untouched");
    }
}
