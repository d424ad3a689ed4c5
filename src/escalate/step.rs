//! One step of a run: what may skip it before any call (the privacy backstop, a missing
//! key, too cold for the deadline, an open circuit, no place at the upstream), and its
//! call with retries — exponential backoff with full jitter, honouring `Retry-After`,
//! never past the deadline or an opened circuit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, error, Instrument};

use super::{Guard, RunContext, Trail, Verdict};
use crate::config::{Price, UpstreamConfig};
use crate::openai::responses::native;
use crate::policy::{ContentClass, Plan, PlannedStep, Step, Tier, Why};
use crate::state::budgets::{micro_usd, Hold};
use crate::upstream::{Endpoint, Failure, Reply, Slot, Upstream, UpstreamError};
use crate::warmth::cold_start_fits;

/// A step that may be called now.
pub struct Ready<'a> {
    pub step: &'a Step,
    pub upstream: &'a Arc<Upstream>,
    /// The request as this step's upstream gets it, feedback included.
    pub body: Bytes,
    /// Where it goes: the run's endpoint, or the upstream's own Responses endpoint.
    pub endpoint: Endpoint,
    /// Whether the model was loaded, if known.
    pub warm: Option<bool>,
    /// Whether its answer is verified: its tier is, and a later step could still answer.
    pub verified: bool,
}

/// The call was made (and maybe retried): when its last try started, and what came back.
pub struct Called {
    pub started: Instant,
    pub reply: Result<Reply, UpstreamError>,
    /// The attempt's trace span (disabled without traces): the verdict and usage go on it.
    pub span: tracing::Span,
}

/// Whether `planned` may be called now, or why it is skipped. `later` are the steps after
/// it; `feedback` is what earlier steps' rejections said.
pub fn ready<'a>(
    ctx: &'a RunContext<'_>,
    plan: &Plan,
    planned: &'a PlannedStep,
    guard: &Guard<'_>,
    later: &[&PlannedStep],
    feedback: &[String],
) -> Result<Ready<'a>, Why> {
    let step = &planned.step;
    if let crate::policy::Action::Skip(why) = &planned.action {
        return Err(why.clone());
    }
    // The backstop, again, where bytes leave: whatever the plan says, sensitive content
    // — or a request a model's words made sensitive — never leaves this machine.
    if guard.is_sensitive() && step.tier > Tier::Local {
        if plan.class == ContentClass::Sensitive {
            error!(task = %plan.task, model = %step.model, "plan would send sensitive content off this machine; refused");
        }
        return Err(guard.privacy_why());
    }
    let Some(upstream) = ctx.upstreams.get(&step.upstream) else {
        return Err(Why::Failed { upstream: step.upstream.clone(), error: "not configured".into(), said: None });
    };
    if let (Some(env), None) = (&upstream.config.api_key_env, &upstream.config.api_key) {
        return Err(Why::MissingKey { env: env.clone(), upstream: step.upstream.clone() });
    }
    // A later step can still answer: the only case where skipping a cold model for time,
    // or verifying an answer, makes sense. Plan steps are already within the privacy
    // ceiling, so this never escalates past it.
    let later = later.iter().any(|s| guard.may_run(s));
    let warm = ctx.warmth.is_warm(&step.upstream, &step.upstream_model);
    if later {
        let remaining = ctx.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if let Err(cold) = cold_start_fits(warm, ctx.warmth.expected_load(&step.model), remaining) {
            return Err(Why::TooCold { expected_load: cold.expected_load, remaining: cold.remaining });
        }
    }
    if let Err(open) = upstream.allows_call() {
        return Err(Why::CircuitOpen {
            upstream: step.upstream.clone(),
            remaining: open.remaining,
            failures: open.failures,
        });
    }
    let verify = ctx.verify(plan).filter(|v| later && v.applies_to(step.tier));
    let verified = verify.is_some();
    let logprobs = verify.is_some_and(|v| v.confidence.is_some());
    // A verified answer is read as a chat completion, so only an unverified one may come
    // from the upstream's own Responses endpoint.
    let native = ctx.responses.filter(|_| !verified && upstream.serves_responses());
    let (endpoint, body) = match native {
        Some(request) => {
            (Endpoint::Responses, native::body(request, &step.upstream_model, feedback, ctx.request.is_stream()))
        }
        None if ctx.endpoint == Endpoint::Embeddings => {
            (ctx.endpoint, ctx.request.embeddings_body(&step.upstream_model))
        }
        None => (ctx.endpoint, ctx.request.body_with(&step.upstream_model, feedback, logprobs)),
    };
    let body = body.map_err(|err| Why::Failed {
        upstream: step.upstream.clone(),
        error: format!("cannot encode the request: {err}"),
        said: None,
    })?;
    Ok(Ready { step, upstream, body, endpoint, warm, verified })
}

/// A paid step's estimated cost, reserved against the request's budgets: the prompt's
/// text at 4 bytes a token, and `max_tokens` (else 1,024) of completion. `Ok(Some(hold))`
/// when reserved, `Ok(None)` when the step is free or the request has no budget.
async fn reserve_budget<'a>(ctx: &RunContext<'a>, ready: &Ready<'_>) -> Result<Option<&'a Hold>, Why> {
    let Some(hold) = ctx.budget else { return Ok(None) };
    let Some(price) = ctx.config.price_of(&ready.step.model).filter(Price::is_paid) else {
        return Ok(None);
    };
    let prompt = ctx.request.texts().map(|(_, text)| text.len() as u64).sum::<u64>() / 4;
    let completion = ["/max_completion_tokens", "/max_tokens", "/max_output_tokens"]
        .iter()
        .find_map(|field| ctx.request.field(field).and_then(serde_json::Value::as_u64))
        .unwrap_or(DEFAULT_COMPLETION_ESTIMATE);
    hold.reserve(&ready.step.model, micro_usd(price.cost(prompt, completion))).await?;
    Ok(Some(hold))
}

/// Completion tokens a paid step reserves for when the request sets no `max_tokens`.
const DEFAULT_COMPLETION_ESTIMATE: u64 = 1_024;

/// Waits for a place at the upstream, then calls it, retrying what may succeed on a
/// second try; each failed try is an attempt in the trail. `Err` when no place freed up.
pub async fn call(ctx: &RunContext<'_>, plan: &Plan, ready: &Ready<'_>, trail: &mut Trail) -> Result<Called, Why> {
    let Ready { step, upstream, .. } = ready;
    if let Some(reply) = upstream.replayed(ready.endpoint, &ready.body, ctx.request.is_stream()).await {
        return Ok(Called { started: Instant::now(), reply: Ok(reply), span: tracing::Span::none() });
    }
    let budgeted = reserve_budget(ctx, ready).await?;
    let slot = match upstream.reserve(ctx.deadline).await {
        Ok(slot) => slot,
        Err(busy) => {
            budgeted.inspect(|hold| hold.spent(&step.model, 0));
            return Err(Why::Busy { upstream: step.upstream.clone(), max: busy.max, waited: busy.waited });
        }
    };
    let span = crate::telemetry::attempt_span(step, upstream, ready.warm);
    let called = with_retries(ctx, plan, ready, &slot, trail).instrument(span).await;
    // A stream holds its own clone of the slot until it ends.
    drop(slot);
    if let (Some(hold), Err(_)) = (budgeted, &called.reply) {
        // No answer, nothing to pay for.
        hold.spent(&step.model, 0);
    }
    if called.reply.is_ok() {
        ctx.warmth.mark_warm(&step.upstream, &step.upstream_model);
    }
    Ok(called)
}

async fn with_retries(ctx: &RunContext<'_>, plan: &Plan, ready: &Ready<'_>, slot: &Slot, trail: &mut Trail) -> Called {
    let Ready { step, upstream, body, endpoint, warm, .. } = ready;
    let mut retries_left = upstream.config.retries;
    loop {
        let started = Instant::now();
        let reply = match endpoint {
            Endpoint::Chat => upstream.chat(slot, body.clone(), ctx.request.is_stream()).await,
            Endpoint::Embeddings => upstream.embed(slot, body.clone()).await,
            Endpoint::Responses => upstream.respond(slot, body.clone(), ctx.request.is_stream()).await,
        };
        upstream.record(&reply);
        ctx.warmth.record_attempt(&step.model, *warm, started.elapsed());
        let span = tracing::Span::current();
        let Err(err) = &reply else { return Called { started, reply, span } };
        if !err.retryable() || retries_left == 0 {
            return Called { started, reply, span };
        }
        let retry = upstream.config.retries - retries_left;
        let Some(wait) = backoff(&upstream.config, retry, err.retry_after) else {
            return Called { started, reply, span };
        };
        let fits = ctx.deadline.is_none_or(|d| Instant::now() + wait < d);
        // A circuit that opened on this failure ends the retries too.
        if !fits || upstream.circuit_open() {
            return Called { started, reply, span };
        }
        tracing::event!(
            target: "tierwise::trace",
            tracing::Level::DEBUG,
            tierwise.retry = retry + 1,
            error.type = %err.summary(),
            tierwise.wait_ms = wait.as_millis() as u64,
            "retry"
        );
        trail.called(step, started.elapsed(), Verdict::Error, Some(why_failed(step, upstream, err)), *warm);
        trail.retried(wait);
        ctx.publish(trail, step);
        debug!(task = %plan.task, model = %step.model, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::time::sleep(wait).await;
        retries_left -= 1;
    }
}

/// Why a call failed, for the trail: unreachable (`not_ready`) or failed (`runtime_error`).
pub fn why_failed(step: &Step, upstream: &Upstream, err: &UpstreamError) -> Why {
    match &err.failure {
        Failure::Connect(detail) => Why::Unreachable {
            upstream: step.upstream.clone(),
            base_url: upstream.config.base_url.to_string(),
            error: detail.clone(),
        },
        _ => Why::Failed { upstream: step.upstream.clone(), error: err.summary(), said: err.said() },
    }
}

/// The wait before retry number `retry` (0-based): exponential backoff with full jitter,
/// at least the upstream's `Retry-After`. `None` when the `Retry-After` is longer than
/// `retry_backoff_max_ms` allows.
fn backoff(config: &UpstreamConfig, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let cap = config.retry_backoff.saturating_mul(1u32 << retry.min(16)).min(config.retry_backoff_max);
    let jittered = cap.mul_f64(random_fraction());
    match retry_after {
        Some(asked) if asked > config.retry_backoff_max => None,
        Some(asked) => Some(jittered.max(asked)),
        None => Some(jittered),
    }
}

/// A uniformly random number in [0, 1), from the standard library's hash seeding.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
