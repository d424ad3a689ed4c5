//! The run loop: walks a plan's steps, calls each step's upstream, verifies what it must,
//! escalates with feedback, and returns the first accepted answer — recording every
//! attempt and skip in a [`Trail`].

mod assemble;
mod guard;
pub mod judge;
mod order;
mod progress;
mod trail;
mod verify;

use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tracing::{debug, error, warn};

use crate::api::wire::ChatRequest;
use crate::config::{Config, Profile, UpstreamConfig, VerifyConfig};
use crate::policy::{Action, ContentClass, Plan, PlannedStep, Step, Tier, Why};
use crate::upstream::{Failure, Reply, Upstream, UpstreamError, Upstreams};
use crate::warmth::{cold_start_fits, Warmth};

pub use guard::{Guard, Guarded, Screened};
pub use order::walk_order;
pub use progress::{Progress, Snapshot};
pub use trail::{Attempt, Event, EventView, Skip, Trail, Verdict};
pub use verify::{run_checks, Candidate, Check, DEFAULT_REFUSALS};

/// What answered.
pub enum Produced {
    /// Straight from the upstream: JSON bytes, or a stream to pass through.
    Upstream(Reply),
    /// A verified streamed answer, assembled; replayed to the client as SSE.
    Completion(Value),
    /// The task's rules reply (tier `none`).
    Rules(String),
}

/// The answer the client gets, and the step that produced it.
pub struct Answer {
    pub step: Step,
    pub produced: Produced,
}

pub enum RunError {
    /// An upstream refused the request itself (a 4xx, including a provider's
    /// content-policy block): it goes back to the client as it is and is never retried
    /// on another provider.
    Refused(UpstreamError),
    /// Every step was skipped, failed or rejected; the trail says why.
    Exhausted { last: Option<UpstreamError> },
}

/// What the loop did: the trail always, and the answer or the error.
pub struct Outcome {
    pub trail: Trail,
    pub result: Result<Answer, RunError>,
}

/// The per-request inputs besides the plan.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub upstreams: &'a Upstreams,
    pub request: &'a ChatRequest,
    pub profile: &'a Profile,
    /// Which models are loaded; read, never waited on.
    pub warmth: &'a Warmth,
    /// When the request must be answered by (`x-tierwise-deadline-ms` or the task's).
    pub deadline: Option<Instant>,
    /// Where the run publishes its trail before each wait, when someone reads it.
    pub progress: Option<&'a Progress>,
}

impl RunContext<'_> {
    fn publish(&self, trail: &Trail, waiting_on: &Step) {
        if let Some(progress) = self.progress {
            progress.publish(trail, Some(waiting_on));
        }
    }

    fn verify(&self, plan: &Plan) -> Option<&VerifyConfig> {
        self.config.tasks.get(&plan.task).map(|t| &t.verify)
    }
}

/// Whether step `index` of `plan` would be verified: its tier is verified by the task and
/// a later step could still answer (the last model step is never verified: there is
/// nothing to escalate to).
pub fn is_verified(config: &Config, plan: &Plan, index: usize) -> bool {
    let Some(verify) = config.tasks.get(&plan.task).map(|t| &t.verify) else { return false };
    let Some(planned) = plan.steps.get(index) else { return false };
    verify.applies_to(planned.step.tier) && plan.steps[index + 1..].iter().any(|s| s.action == Action::Run)
}

/// Walks `plan`: skips what the plan skips, calls the rest in order, verifies answers the
/// task verifies, and returns the first accepted one. Connection errors, timeouts, 5xx
/// and malformed answers go on to the next step — or, with the profile's
/// `fallback_to_rules_on_error`, straight to the rules reply. A rejected answer goes on
/// to the next step with its feedback.
pub async fn run(ctx: &RunContext<'_>, plan: &Plan) -> Outcome {
    let local_output =
        ctx.config.tasks.get(&plan.task).map_or(ctx.config.detect.local_output, |t| t.detect.local_output);
    let mut guard = Guard::new(&ctx.config.detector, plan.class, local_output);
    let mut outcome = walk(ctx, plan, &mut guard).await;
    outcome.trail.reclassified = guard.reclassified().map(str::to_string);
    outcome
}

async fn walk(ctx: &RunContext<'_>, plan: &Plan, guard: &mut Guard<'_>) -> Outcome {
    let mut trail = Trail::default();
    let mut last = None;
    let mut feedback: Vec<String> = Vec::new();
    let prefer_warm = ctx.config.tasks.get(&plan.task).is_some_and(|t| t.prefer_warm);
    let order = walk_order(plan, prefer_warm, |s| ctx.warmth.is_warm(&s.upstream, &s.upstream_model));
    for (position, &index) in order.iter().enumerate() {
        let planned = &plan.steps[index];
        let step = &planned.step;
        if let Action::Skip(why) = &planned.action {
            trail.skip(step, why.clone());
            continue;
        }
        // The backstop, again, where bytes leave: whatever the plan says, sensitive
        // content — or a request a model's words made sensitive — never leaves this machine.
        if guard.is_sensitive() && step.tier > Tier::Local {
            if plan.class == ContentClass::Sensitive {
                error!(task = %plan.task, model = %step.model, "plan would send sensitive content off this machine; refused");
            }
            trail.skip(step, guard.privacy_why());
            continue;
        }
        let Some(upstream) = ctx.upstreams.get(&step.upstream) else {
            let why = Why::Failed { upstream: step.upstream.clone(), error: "not configured".into(), said: None };
            trail.skip(step, why);
            continue;
        };
        if let (Some(env), None) = (&upstream.config.api_key_env, &upstream.config.api_key) {
            trail.skip(step, Why::MissingKey { env: env.clone(), upstream: step.upstream.clone() });
            continue;
        }
        // A later step can still answer: the only case where skipping a cold model for
        // time, or verifying an answer, makes sense. Plan steps are already within the
        // privacy ceiling, so this never escalates past it.
        let later_steps: Vec<&PlannedStep> = order[position + 1..].iter().map(|&i| &plan.steps[i]).collect();
        let later = later_steps.iter().any(|s| guard.may_run(s));
        let warm = ctx.warmth.is_warm(&step.upstream, &step.upstream_model);
        if later {
            let remaining = ctx.deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(cold) = cold_start_fits(warm, ctx.warmth.expected_load(&step.model), remaining) {
                trail.skip(step, Why::TooCold { expected_load: cold.expected_load, remaining: cold.remaining });
                continue;
            }
        }
        let body = match ctx.request.body_for(&step.upstream_model, &feedback) {
            Ok(body) => body,
            Err(err) => {
                let error = format!("cannot encode the request: {err}");
                let why = Why::Failed { upstream: step.upstream.clone(), error, said: None };
                trail.skip(step, why);
                continue;
            }
        };
        if let Err(open) = upstream.permit() {
            let why = Why::CircuitOpen {
                upstream: step.upstream.clone(),
                remaining: open.remaining,
                failures: open.failures,
            };
            trail.skip(step, why);
            continue;
        }
        // From here the run waits on this step: for a place, the call, retries, the judge.
        ctx.publish(&trail, step);
        let slot = match upstream.reserve(ctx.deadline).await {
            Ok(slot) => slot,
            Err(busy) => {
                let why = Why::Busy { upstream: step.upstream.clone(), max: busy.max, waited: busy.waited };
                trail.skip(step, why);
                continue;
            }
        };
        let verified = later && ctx.verify(plan).is_some_and(|v| v.applies_to(step.tier));
        let mut retries_left = upstream.config.retries;
        let (started, called) = loop {
            let started = Instant::now();
            let called = upstream.chat(&slot, body.clone(), ctx.request.is_stream()).await;
            upstream.record(&called);
            ctx.warmth.record_attempt(&step.model, warm, started.elapsed());
            let Err(err) = &called else { break (started, called) };
            if !err.retryable() || retries_left == 0 {
                break (started, called);
            }
            let retry = upstream.config.retries - retries_left;
            let Some(wait) = backoff(&upstream.config, retry, err.retry_after) else { break (started, called) };
            let fits = ctx.deadline.is_none_or(|d| Instant::now() + wait < d);
            // A circuit that opened on this failure ends the retries too.
            if !fits || upstream.circuit_open() {
                break (started, called);
            }
            trail.attempt(step, started.elapsed(), Verdict::Error, Some(why_failed(step, upstream, err)));
            trail.warm_start(warm);
            trail.retried(wait);
            ctx.publish(&trail, step);
            debug!(task = %plan.task, model = %step.model, error = %err, wait_ms = wait.as_millis() as u64, "retrying");
            tokio::time::sleep(wait).await;
            retries_left -= 1;
        };
        // A stream holds its own clone of the slot until it ends.
        drop(slot);
        if called.is_ok() {
            ctx.warmth.mark_warm(&step.upstream, &step.upstream_model);
        }
        let failure = match called {
            Ok(reply) if !verified => {
                trail.attempt(step, started.elapsed(), Verdict::Accept, None);
                trail.warm_start(warm);
                debug!(task = %plan.task, model = %step.model, tier = %step.tier, "answered");
                return Outcome {
                    trail,
                    result: Ok(Answer { step: step.clone(), produced: Produced::Upstream(reply) }),
                };
            }
            Ok(reply) => match judge_reply(ctx, plan, step, reply, guard, &later_steps).await {
                Judged::Accept { produced, completion, verify_time, guarded } => {
                    trail.attempt(step, started.elapsed(), Verdict::Accept, None);
                    trail.warm_start(warm);
                    trail.verified(verify_time, usage(&completion));
                    trail.guarded(guarded);
                    return Outcome { trail, result: Ok(Answer { step: step.clone(), produced }) };
                }
                Judged::Reject { feedback: said, completion, verify_time, guarded } => {
                    trail.attempt(step, started.elapsed(), Verdict::Escalate, None);
                    trail.warm_start(warm);
                    trail.verified(verify_time, usage(&completion));
                    trail.guarded(guarded);
                    // The feedback goes to the next steps' prompts: screened like the answer.
                    let source = format!("the feedback on the answer of {}/{}", step.tier, step.model);
                    let said = match guard.screen(&said, &source) {
                        Screened::Clean => said,
                        Screened::Reclassified => {
                            let found = guard.reclassified().unwrap_or(&source).to_string();
                            trail.guarded(Some(Guarded::Reclassified { found }));
                            said
                        }
                        Screened::Redacted { text, kinds } => {
                            trail.guarded(Some(Guarded::FeedbackRedacted { kinds }));
                            text
                        }
                    };
                    trail.rejected(said.clone());
                    debug!(task = %plan.task, model = %step.model, feedback = %said, "escalating");
                    if ctx.verify(plan).is_some_and(|v| v.feedback) {
                        feedback.push(said);
                    }
                    continue;
                }
                Judged::Broken(err) => err,
            },
            Err(err) => err,
        };
        let why = why_failed(step, upstream, &failure);
        trail.attempt(step, started.elapsed(), Verdict::Error, Some(why));
        trail.warm_start(warm);
        if !failure.escalates() {
            return Outcome { trail, result: Err(RunError::Refused(failure)) };
        }
        // The upstream's own words may echo the prompt: the WARN line names the failure
        // only; DEBUG has the message.
        warn!(task = %plan.task, model = %step.model, upstream = %failure.upstream, error = %failure.summary(), "step failed");
        debug!(task = %plan.task, model = %step.model, error = %failure, "step failed");
        if ctx.profile.fallback_to_rules_on_error {
            if let Some(answer) = rules_answer(plan, &mut trail) {
                return Outcome { trail, result: Ok(answer) };
            }
        }
        last = Some(failure);
    }
    match rules_answer(plan, &mut trail) {
        Some(answer) => Outcome { trail, result: Ok(answer) },
        None => Outcome { trail, result: Err(RunError::Exhausted { last }) },
    }
}

enum Judged {
    Accept {
        produced: Produced,
        completion: Value,
        verify_time: Duration,
        guarded: Option<Guarded>,
    },
    Reject {
        feedback: String,
        completion: Value,
        verify_time: Duration,
        guarded: Option<Guarded>,
    },
    /// The answer could not even be read (a broken stream, not a completion).
    Broken(UpstreamError),
}

/// Reads the whole answer (buffering a stream), then verifies it.
async fn judge_reply(
    ctx: &RunContext<'_>,
    plan: &Plan,
    step: &Step,
    reply: Reply,
    guard: &mut Guard<'_>,
    later: &[&PlannedStep],
) -> Judged {
    let (completion, produced) = match reply {
        Reply::Json(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(completion) => (completion, Produced::Upstream(Reply::Json(bytes))),
            Err(err) => return Judged::Broken(protocol("?", format!("not JSON: {err}"))),
        },
        Reply::Stream { first, rest } => match assemble::assemble(first, rest).await {
            Ok(completion) => (completion.clone(), Produced::Completion(completion)),
            Err(assemble::AssembleError::Upstream(err)) => return Judged::Broken(err),
            Err(assemble::AssembleError::Bad(msg)) => return Judged::Broken(protocol("?", msg)),
        },
    };
    let started = Instant::now();
    let mut guarded = None;
    let verdict = verify_answer(ctx, plan, step, &completion, guard, later, &mut guarded).await;
    let verify_time = started.elapsed();
    match verdict {
        Ok(()) => Judged::Accept { produced, completion, verify_time, guarded },
        Err(feedback) => Judged::Reject { feedback, completion, verify_time, guarded },
    }
}

/// Why a call failed, for the trail: unreachable (`not_ready`) or failed (`runtime_error`).
fn why_failed(step: &Step, upstream: &Upstream, err: &UpstreamError) -> Why {
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

fn protocol(upstream: &str, message: String) -> UpstreamError {
    UpstreamError::new(upstream, Failure::Protocol(message))
}

/// The task's checks, then its judge. `Err` is the feedback for the next step. Before a
/// judge above local sees the answer, the guard screens it: with personal data in it the
/// judge is not asked (`guarded` says what happened instead).
async fn verify_answer(
    ctx: &RunContext<'_>,
    plan: &Plan,
    step: &Step,
    completion: &Value,
    guard: &mut Guard<'_>,
    later: &[&PlannedStep],
    guarded: &mut Option<Guarded>,
) -> Result<(), String> {
    let Some(verify) = ctx.verify(plan) else { return Ok(()) };
    let candidate = Candidate::from_completion(completion);
    verify::run_checks(&verify.checks, &candidate, ctx.request)?;
    let Some(alias) = &verify.judge else { return Ok(()) };
    let upstream = ctx
        .config
        .models
        .get(alias)
        .and_then(|m| Some((m, ctx.upstreams.get(&m.upstream)?)))
        .ok_or_else(|| format!("verifier error: judge \"{alias}\" is not configured"))?;
    let (model, upstream) = upstream;
    let answer = if candidate.tool_calls.is_empty() {
        candidate.text.clone()
    } else {
        let calls: Vec<String> = candidate.tool_calls.iter().map(|(n, a)| format!("tool call {n}({a})")).collect();
        format!("{}\n{}", candidate.text, calls.join("\n"))
    };
    let judge_tier = upstream.config.tier;
    if judge_tier > Tier::Local {
        let source = format!("the answer of {}/{}", step.tier, step.model);
        match guard.screen(&answer, &source) {
            Screened::Clean => {}
            Screened::Reclassified => {
                *guarded = Some(Guarded::Reclassified { found: guard.reclassified().unwrap_or(&source).to_string() });
                // Nothing above local may run now: with no later step left, this answer is
                // the last one, and the last answer is never verified.
                if !later.iter().any(|s| guard.may_run(s)) {
                    return Ok(());
                }
            }
            Screened::Redacted { kinds, .. } => {
                let feedback = format!(
                    "the answer held personal data ({}), so the reviewer on tier {judge_tier} was not asked",
                    kinds.join(", ")
                );
                *guarded = Some(Guarded::JudgeWithheld { kinds });
                return Err(feedback);
            }
        }
    }
    let class = if guard.is_sensitive() { ContentClass::Sensitive } else { plan.class };
    if let Some(why) = judge_may_not_see(ctx.profile, class, judge_tier) {
        return Err(format!("verifier error: judge \"{alias}\" may not see this request ({why})"));
    }
    if let (Some(env), None) = (&upstream.config.api_key_env, &upstream.config.api_key) {
        return Err(format!("verifier error: judge \"{alias}\" has no API key ({env} is not set)"));
    }
    let prompt = judge::render(&verify.judge_prompt, ctx.request, &answer);
    match judge::ask(upstream, &model.name, prompt, verify.judge_timeout).await {
        Ok(verdict) if verdict.accept => Ok(()),
        Ok(verdict) if verdict.feedback.trim().is_empty() => Err("the reviewer rejected the answer".into()),
        Ok(verdict) => Err(verdict.feedback),
        Err(err) => Err(format!("verifier error: {err}")),
    }
}

/// The judge sees the whole request: the same privacy rules bind it as any step.
fn judge_may_not_see(profile: &Profile, class: ContentClass, tier: Tier) -> Option<String> {
    if class == ContentClass::Sensitive && tier > Tier::Local {
        return Some(format!("it runs on tier {tier} and the content is sensitive"));
    }
    if !profile.allowed_tiers.contains(&tier) {
        return Some(format!("tier {tier} is not allowed for profile \"{}\"", profile.name));
    }
    if tier == Tier::Cloud && !profile.cloud_consent {
        return Some(format!("profile \"{}\" has no cloud consent", profile.name));
    }
    None
}

fn usage(completion: &Value) -> Option<(u64, u64)> {
    let usage = completion.get("usage")?;
    Some((usage.get("prompt_tokens")?.as_u64()?, usage.get("completion_tokens")?.as_u64()?))
}

fn rules_answer(plan: &Plan, trail: &mut Trail) -> Option<Answer> {
    let reply = plan.rules_reply.clone()?;
    let step = Step::rules(plan.steps.len());
    trail.attempt(&step, Duration::ZERO, Verdict::Accept, None);
    Some(Answer { step, produced: Produced::Rules(reply) })
}
