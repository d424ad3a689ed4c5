//! Turning a run's outcome into the client's response: JSON (with the trail spliced in),
//! a passed-through or replayed SSE stream, or an OpenAI error — with the trail headers
//! on every path, and, for a stream whose headers went out before the answer was known,
//! keep-alive comments and a final trail comment. Each path writes the request's one
//! record (see `Job::record`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};
use tracing::warn;

use super::failure;
use super::headers;
use super::job::{Guards, Job, Wire};
use crate::error::ApiError;
use crate::escalate::{Answer, Outcome, Produced, Trail};
use crate::metrics;
use crate::openai::{replay, responses};
use crate::policy::Tier;
use crate::record::Ending;
use crate::state::buckets::StreamCharge;
use crate::upstream::{usage, Reply, UpstreamError};

type Running = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The response once the outcome is known, headers and all.
pub fn finish(mut job: Job, outcome: Outcome) -> Response {
    let guards = job.guards.take();
    let Outcome { mut trail, result } = outcome;
    match &result {
        Ok(Answer { produced: Produced::Upstream(Reply::Json(body)), .. }) => trail.fill_tokens(usage::of_body(body)),
        Ok(Answer { produced: Produced::Upstream(Reply::Response(body)), .. }) => {
            trail.fill_tokens(usage::of_response(body))
        }
        _ => {}
    }
    trail.cache = job.cache.as_ref().map(|c| c.note.clone());
    let answered = result.as_ref().ok().map(|a| (a.step.tier, a.step.model.clone()));
    let applied = job.applied_class(&trail);
    let mut response = match result {
        Ok(answer) => {
            job.record(&trail, Some(&answer), responded(StatusCode::OK, None));
            super::cached::keep(&job, &trail, &answer);
            answer_response(&job, &trail, answer, guards)
        }
        Err(err) => {
            let error = failure::of_run(&job.caller.generation, &job.plan.task, &trail, err, job.caller.locale);
            job.record(&trail, None, responded(error.status(), error.code_str()));
            error.into_response()
        }
    };
    let answered = answered.as_ref().map(|(tier, model)| (*tier, model.as_str()));
    headers::set_trail(response.headers_mut(), &job.plan.task, answered, &trail, &applied);
    super::cached::set_header(response.headers_mut(), &trail);
    response
}

/// How a response that went out with `status` ended, for the record.
pub(super) fn responded(status: StatusCode, error: Option<String>) -> Ending {
    let outcome = if error.is_none() {
        metrics::Outcome::Answered
    } else if status.is_client_error() {
        metrics::Outcome::Refused
    } else {
        metrics::Outcome::Failed
    };
    Ending::Responded { status: status.as_u16(), outcome, error }
}

/// The response when a verified stream takes longer than `sse_keepalive`: headers now,
/// keep-alive comments while the run goes on, then the answer (or an error event) and
/// a comment with the trail. Dropping the body drops the run, cancelling its calls.
pub fn delayed(job: Job, running: Running) -> Response {
    let interval = job.caller.generation.config.server.sse_keepalive;
    let (task, class) = (job.plan.task.clone(), job.classification.class);
    let cache_only = Trail { cache: job.cache.as_ref().map(|c| c.note.clone()), ..Trail::default() };
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
    .boxed();
    let mut response = sse_response(body);
    // Only what is known before the first byte; the rest is in the trailing comment.
    headers::try_set(response.headers_mut(), headers::TASK, &task);
    headers::try_set(response.headers_mut(), headers::CONTENT_CLASS, class.as_str());
    super::cached::set_header(response.headers_mut(), &cache_only);
    response
}

enum Phase {
    Waiting(Running, Box<Job>),
    Passing(BoxStream<'static, Bytes>),
}

/// The rest of a delayed stream, once the outcome is known. Its status line went out
/// before the answer was known: 200, whatever follows.
fn deliver(mut job: Job, outcome: Outcome) -> BoxStream<'static, Bytes> {
    let guards = job.guards.take();
    let Outcome { mut trail, result } = outcome;
    trail.cache = job.cache.as_ref().map(|c| c.note.clone());
    let answered = result.as_ref().ok().map(|a| (a.step.tier, a.step.model.clone()));
    let trailer = trailer_comment(&job, &trail, answered.as_ref().map(|(t, m)| (*t, m.as_str())));
    let include_usage = job.request.include_usage();
    let events = match result {
        Ok(answer) => {
            job.record(&trail, Some(&answer), responded(StatusCode::OK, None));
            super::cached::keep(&job, &trail, &answer);
            match answer.produced {
                Produced::Upstream(Reply::Stream { first, rest }) => {
                    let made_by = (answer.step.tier, answer.step.model.as_str());
                    let events = passthrough(&job, made_by, first, rest, usage::in_events);
                    let events = super::cached::tee(&job, &trail, made_by, events);
                    in_wire_shape(&job.wire, events.chain(stream::once(async move { trailer })).boxed())
                }
                // Already in the client's shape: the upstream's own Responses events.
                Produced::Upstream(Reply::ResponseStream { first, rest }) => {
                    let answered = (answer.step.tier, answer.step.model.as_str());
                    let events = passthrough(&job, answered, first, rest, usage::in_response_events);
                    events.chain(stream::once(async move { trailer })).boxed()
                }
                produced => {
                    let completion = completion_of(produced);
                    let replayed = replay::to_sse_with(&completion, include_usage, Some(&trailer));
                    in_wire_shape(&job.wire, once(replayed))
                }
            }
        }
        Err(err) => {
            let error = failure::of_run(&job.caller.generation, &job.plan.task, &trail, err, job.caller.locale);
            job.record(&trail, None, responded(StatusCode::OK, error.code_str()));
            in_wire_shape(&job.wire, stream::iter([failure::event(&error), trailer]).boxed())
        }
    };
    holding(events, guards).boxed()
}

/// The `chat.completion` an answer amounts to, for replaying it as SSE.
fn completion_of(produced: Produced) -> Value {
    match produced {
        Produced::Completion(completion) => completion,
        Produced::Rules(reply) => replay::rules_completion(&reply),
        Produced::Upstream(Reply::Json(bytes)) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Produced::Upstream(Reply::Response(bytes)) => {
            serde_json::from_slice(&bytes).map(|r| responses::native::to_completion(&r)).unwrap_or(Value::Null)
        }
        Produced::Upstream(Reply::Stream { .. } | Reply::ResponseStream { .. }) => Value::Null,
    }
}

/// `: tierwise {...}` — what the headers could not say when they went out.
pub(super) fn trailer_comment(job: &Job, trail: &Trail, answered: Option<(Tier, &str)>) -> Bytes {
    let summary = json!({
        "task": job.plan.task,
        "tier": answered.map_or("none", |a| a.0.as_str()),
        "model": answered.map(|a| a.1),
        "attempts": trail.header_value(),
        "cache": trail.cache.as_ref().map(|c| c.result.as_str()),
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
    let (tier, model) = (answer.step.tier, answer.step.model.clone());
    let trail_in_body = job.caller.generation.config.server.trail_in_body;
    match answer.produced {
        Produced::Upstream(Reply::Json(body)) => {
            let body = if trail_in_body { splice_trail(body, &trail_object(job, trail, tier, &model)) } else { body };
            json_response(in_wire_json(&job.wire, body))
        }
        Produced::Upstream(Reply::Stream { first, rest }) => {
            let events = passthrough(job, (tier, &model), first, rest, usage::in_events);
            let events = super::cached::tee(job, trail, (tier, &model), events);
            sse_response(in_wire_shape(&job.wire, holding(events, guards).boxed()))
        }
        // The upstream's own Responses answer: already in the client's shape.
        Produced::Upstream(Reply::Response(body)) => {
            let body = if trail_in_body { splice_trail(body, &trail_object(job, trail, tier, &model)) } else { body };
            json_response(body)
        }
        Produced::Upstream(Reply::ResponseStream { first, rest }) => {
            let events = passthrough(job, (tier, &model), first, rest, usage::in_response_events);
            sse_response(holding(events, guards).boxed())
        }
        Produced::Completion(completion) => {
            job.state.metrics.first_token(tier, &model, job.started.elapsed());
            let replayed = replay::to_sse(&completion, job.request.include_usage());
            sse_response(in_wire_shape(&job.wire, once(replayed)))
        }
        Produced::Rules(reply) => {
            let mut completion = replay::rules_completion(&reply);
            if job.request.is_stream() {
                let replayed = replay::to_sse(&completion, job.request.include_usage());
                sse_response(in_wire_shape(&job.wire, once(replayed)))
            } else {
                if trail_in_body {
                    completion["tierwise"] = trail_object(job, trail, tier, &model);
                }
                json_response(in_wire_json(&job.wire, Bytes::from(completion.to_string())))
            }
        }
    }
}

/// The upstream's events as they come; a break after the first ends the stream with an
/// OpenAI error event. Usage is read on the way (`read_usage`: chat's or the Responses
/// API's), for the token and cost metrics and the key's token limit.
fn passthrough(
    job: &Job,
    answered: (Tier, &str),
    first: Bytes,
    rest: impl futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static,
    read_usage: fn(&[u8]) -> Option<usage::Usage>,
) -> BoxStream<'static, Bytes> {
    let (tier, model) = (answered.0, answered.1.to_string());
    job.state.metrics.first_token(tier, &model, job.started.elapsed());
    let (metrics, task) = (job.state.metrics.clone(), job.plan.task.clone());
    let config = job.caller.generation.config.clone();
    let mut charge = job.caller.key.filter(|k| k.limits.tokens_per_minute.is_some()).map(|key| {
        let prompt_bytes = job.request.texts().map(|(_, text)| text.len()).sum();
        let limits = job.state.rate_limits.clone();
        StreamCharge::new(move |tokens| limits.spend_tokens(key, tokens), prompt_bytes)
    });
    // The stream's cost settles its budget reservation; the budget is held until it ends.
    let budget = job.budget.clone();
    let mut count_usage = move |events: &Bytes| {
        let usage = read_usage(events);
        if let Some(usage) = usage {
            metrics.tokens_used(&config, tier, &model, usage.prompt, usage.completion);
            let price = config.price_of(&model);
            if let (Some(budget), Some(price)) = (&budget, price) {
                budget.spent(&model, crate::state::budgets::micro_usd(price.cost(usage.prompt, usage.completion)));
            }
            if tier < Tier::Cloud {
                metrics.cost_avoided(&config, &task, usage.prompt, usage.completion);
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
            warn!(upstream = %err.upstream, error = %err.summary(), "upstream stream broke after the first event");
            failure::broken_stream_event(&err)
        }
    });
    stream::once(async move { first }).chain(rest).boxed()
}

/// The full trail, as the `tierwise` object of a JSON body.
pub(super) fn trail_object(job: &Job, trail: &Trail, tier: Tier, model: &str) -> Value {
    let mut object = json!({
        "task": job.plan.task,
        "profile": job.caller.profile.name,
        "tier": tier,
        "model": model,
        "content_class": job.applied_class(trail).class,
        "attempts": trail.views(job.caller.locale),
    });
    if let Some(cache) = &trail.cache {
        object["cache"] = cache.view();
    }
    object
}

/// Inserts `"tierwise": {...}` as the last member of a JSON object body, leaving every
/// other byte as the upstream sent it.
pub(super) fn splice_trail(body: Bytes, trail: &Value) -> Bytes {
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

fn once(bytes: Bytes) -> BoxStream<'static, Bytes> {
    stream::once(async move { bytes }).boxed()
}

/// A chat completion in the client's shape: as it came, or as a `response` object.
fn in_wire_json(wire: &Wire, body: Bytes) -> Bytes {
    match wire {
        Wire::Chat | Wire::Embeddings => body,
        Wire::Responses { echo, .. } => match serde_json::from_slice::<Value>(&body) {
            Ok(completion) => Bytes::from(responses::response::from_chat(&completion, echo).to_string()),
            Err(_) => body,
        },
    }
}

/// Chat completion events in the client's shape: as they come, or as Responses events.
fn in_wire_shape(wire: &Wire, events: BoxStream<'static, Bytes>) -> BoxStream<'static, Bytes> {
    match wire {
        Wire::Chat | Wire::Embeddings => events,
        Wire::Responses { echo, .. } => {
            let mut translator = responses::stream::Translator::new(echo.clone());
            events.map(move |chat| translator.feed(&chat)).boxed()
        }
    }
}

/// A JSON body response.
pub(super) fn json_of(body: Bytes) -> Response {
    json_response(body)
}

/// An SSE response of events known whole.
pub(super) fn sse_of(events: Bytes) -> Response {
    sse_response(once(events))
}

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn sse_response(events: BoxStream<'static, Bytes>) -> Response {
    let mut response = Response::new(Body::from_stream(events.map(Ok::<Bytes, Infallible>)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    response
}

/// An error before the request had a plan (auth, limits, a bad request, a policy
/// refusal): its record, then the error response.
pub fn early(job_id: &str, state: &crate::app::AppState, task: Option<&str>, err: ApiError) -> Response {
    let ending =
        Ending::Responded { status: err.status().as_u16(), outcome: metrics::Outcome::Refused, error: err.code_str() };
    let record = crate::record::RequestRecord { id: job_id, task, ending, planned: None };
    record.emit(&state.generation().config, &state.metrics, &state.audit);
    err.into_response()
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
