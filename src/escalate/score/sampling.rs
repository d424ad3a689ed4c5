//! More answers from the model that gave one, for `consistency` and a sampled
//! `self_check`: one request with `n` where the upstream takes it, else one request per
//! answer, each with its own `seed` (so no two requests are the same, and a cache of
//! answers cannot hand back one sample for all).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Sampling;
use crate::upstream::usage::{self, Usage};
use crate::upstream::{Endpoint, Failure, Reply, Upstream};

/// One call made for samples.
#[derive(Debug, Clone)]
pub struct Call {
    pub duration: Duration,
    pub tokens: Option<Usage>,
}

/// The samples' choices (`{"message": ...}` objects), and the calls that made them.
#[derive(Debug, Default)]
pub struct Sampled {
    pub choices: Vec<Value>,
    pub calls: Vec<Call>,
}

/// What to ask for.
pub struct Ask<'a> {
    pub upstream: &'a Upstream,
    /// The request body (JSON object) the samples are drawn for.
    pub body: Value,
    pub count: usize,
    pub temperature: f64,
    pub sampling: Sampling,
    pub timeout: Duration,
}

/// Draws `count` samples. `Err` says why not, with the calls made so far.
pub async fn sample(ask: Ask<'_>) -> Result<Sampled, (String, Vec<Call>)> {
    let mut sampled = Sampled::default();
    let started = Instant::now();
    let remaining = |sampled: &Sampled| ask.count.saturating_sub(sampled.choices.len());
    let use_n = match ask.sampling {
        Sampling::Calls => false,
        Sampling::N => true,
        Sampling::Auto => !ask.upstream.refuses_n(),
    };
    if use_n && ask.count > 1 {
        let body = with(&ask.body, ask.temperature, &[("n", json!(ask.count))]);
        match tokio::time::timeout(ask.timeout, call(ask.upstream, body)).await {
            Err(_) => return Err((timed_out(ask.timeout), sampled.calls)),
            Ok(Ok((choices, call))) => {
                sampled.calls.push(call);
                sampled.choices.extend(choices.into_iter().take(ask.count));
                if remaining(&sampled) > 0 && ask.sampling == Sampling::Auto {
                    ask.upstream.refused_n();
                }
            }
            Ok(Err(CallError { message, call, refused })) => {
                sampled.calls.extend(call);
                if !(refused && ask.sampling == Sampling::Auto) {
                    return Err((format!("sampling failed: {message}"), sampled.calls));
                }
                ask.upstream.refused_n();
            }
        }
    }
    let missing = remaining(&sampled);
    if missing > 0 {
        let left = ask.timeout.saturating_sub(started.elapsed());
        let first_seed = sampled.choices.len();
        let calls = (0..missing).map(|i| {
            let seed = json!(first_seed + i + 1);
            call(ask.upstream, with(&ask.body, ask.temperature, &[("seed", seed)]))
        });
        let Ok(results) = tokio::time::timeout(left, join_all(calls)).await else {
            return Err((timed_out(ask.timeout), sampled.calls));
        };
        let mut failed = None;
        for result in results {
            match result {
                Ok((choices, call)) => {
                    sampled.calls.push(call);
                    sampled.choices.extend(choices.into_iter().take(1));
                }
                Err(CallError { message, call, .. }) => {
                    sampled.calls.extend(call);
                    failed.get_or_insert(message);
                }
            }
        }
        if let Some(message) = failed {
            return Err((format!("sampling failed: {message}"), sampled.calls));
        }
    }
    Ok(sampled)
}

fn timed_out(timeout: Duration) -> String {
    format!("sampling took longer than {} ms", timeout.as_millis())
}

/// `body` as a non-streaming sample request at `temperature`, with `extra` fields.
fn with(body: &Value, temperature: f64, extra: &[(&str, Value)]) -> Value {
    let mut body = body.clone();
    if let Some(fields) = body.as_object_mut() {
        for field in ["stream", "stream_options", "n", "seed", "logprobs", "top_logprobs"] {
            fields.remove(field);
        }
        fields.insert("temperature".into(), json!(temperature));
        for (key, value) in extra {
            fields.insert((*key).to_string(), value.clone());
        }
    }
    body
}

pub(super) struct CallError {
    pub message: String,
    pub call: Option<Call>,
    /// The upstream refused the request itself (a 400: it may not take `n`).
    pub refused: bool,
}

pub(super) async fn call(upstream: &Upstream, body: Value) -> Result<(Vec<Value>, Call), CallError> {
    let fail = |message: String, call: Option<Call>, refused: bool| CallError { message, call, refused };
    let body = Bytes::from(body.to_string());
    let started = Instant::now();
    let (reply, duration) = match upstream.replayed(Endpoint::Chat, &body, false).await {
        Some(reply) => (Ok(reply), started.elapsed()),
        None => {
            let slot =
                upstream.reserve(None).await.map_err(|busy| fail(format!("the upstream is {busy}"), None, false))?;
            let started = Instant::now();
            let span = match crate::telemetry::enabled() {
                true => crate::telemetry::call_span(upstream, &upstream_model(&body), "sampling"),
                false => tracing::Span::none(),
            };
            let reply = upstream.chat(&slot, body, false).instrument(span.clone()).await;
            match &reply {
                Ok(Reply::Json(answer)) if !span.is_disabled() => {
                    crate::telemetry::record_completion(&span, &serde_json::from_slice(answer).unwrap_or_default());
                }
                Err(err) => crate::telemetry::record_failure(&span, err),
                _ => {}
            }
            upstream.record(&reply);
            (reply, started.elapsed())
        }
    };
    let bytes = match reply {
        Ok(Reply::Json(bytes)) => bytes,
        Ok(Reply::Stream { .. } | Reply::ResponseStream { .. }) => {
            return Err(fail("the upstream streamed".into(), None, false))
        }
        Ok(Reply::Response(_)) => return Err(fail("the upstream answered a Responses request".into(), None, false)),
        Err(err) => {
            let refused = matches!(&err.failure, Failure::Status { status, .. } if status.as_u16() == 400);
            return Err(fail(err.summary(), Some(Call { duration, tokens: None }), refused));
        }
    };
    let completion: Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("an answer is not JSON: {e}"), Some(Call { duration, tokens: None }), false))?;
    let call = Call { duration, tokens: usage::of_completion(&completion) };
    let choices = completion.get("choices").and_then(Value::as_array).cloned().unwrap_or_default();
    Ok((choices, call))
}

/// The `model` a sampling request names, for its span.
fn upstream_model(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Named {
        model: String,
    }
    serde_json::from_slice::<Named>(body).map(|n| n.model).unwrap_or_default()
}
