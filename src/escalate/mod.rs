//! The run loop: walks a plan's steps, calls each step's upstream, and returns the first
//! answer, recording every attempt and skip in a [`Trail`].

mod trail;

use std::time::Instant;

use tracing::{debug, error, warn};

use crate::api::wire::ChatRequest;
use crate::policy::{Action, ContentClass, Plan, Step, Tier, Why};
use crate::upstream::{Failure, Reply, UpstreamError, Upstreams};

pub use trail::{Attempt, Event, Skip, Trail, Verdict};

/// What answered.
pub enum Produced {
    Upstream(Reply),
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
    /// Every step was skipped or failed; the trail says why.
    Exhausted { last: Option<UpstreamError> },
}

/// What the loop did: the trail always, and the answer or the error.
pub struct Outcome {
    pub trail: Trail,
    pub result: Result<Answer, RunError>,
}

/// The per-request inputs besides the plan.
pub struct RunContext<'a> {
    pub upstreams: &'a Upstreams,
    pub request: &'a ChatRequest,
    /// The profile's `fallback_to_rules_on_error`.
    pub fallback_to_rules: bool,
}

/// Walks `plan`: skips what the plan skips, calls the rest in order, returns the first
/// answer. Connection errors, timeouts, 5xx and malformed answers go on to the next step
/// — or, with `fallback_to_rules`, straight to the rules reply. Every attempt and skip is
/// in the trail.
pub async fn run(ctx: &RunContext<'_>, plan: &Plan) -> Outcome {
    let mut trail = Trail::default();
    let mut last = None;
    for planned in &plan.steps {
        let step = &planned.step;
        if let Action::Skip(why) = &planned.action {
            trail.skip(step, why.clone());
            continue;
        }
        // The backstop, again, where bytes leave: whatever the plan says, sensitive
        // content is never sent past this machine.
        if plan.class == ContentClass::Sensitive && step.tier > Tier::Local {
            error!(task = %plan.task, model = %step.model, "plan would send sensitive content off this machine; refused");
            trail.skip(step, Why::Privacy { because: "sensitive content".into() });
            continue;
        }
        let Some(upstream) = ctx.upstreams.get(&step.upstream) else {
            let why = Why::Failed { upstream: step.upstream.clone(), error: "not configured".into() };
            trail.skip(step, why);
            continue;
        };
        if let (Some(env), None) = (&upstream.config.api_key_env, &upstream.config.api_key) {
            trail.skip(step, Why::MissingKey { env: env.clone(), upstream: step.upstream.clone() });
            continue;
        }
        let body = match ctx.request.body_for(&step.upstream_model) {
            Ok(body) => body,
            Err(err) => {
                let why =
                    Why::Failed { upstream: step.upstream.clone(), error: format!("cannot encode the request: {err}") };
                trail.skip(step, why);
                continue;
            }
        };
        let started = Instant::now();
        match upstream.chat(body, ctx.request.is_stream()).await {
            Ok(reply) => {
                trail.attempt(step, started.elapsed(), Verdict::Accept, None);
                debug!(task = %plan.task, model = %step.model, tier = %step.tier, "answered");
                return Outcome {
                    trail,
                    result: Ok(Answer { step: step.clone(), produced: Produced::Upstream(reply) }),
                };
            }
            Err(err) => {
                let why = match &err.failure {
                    Failure::Connect(detail) => Why::Unreachable {
                        upstream: step.upstream.clone(),
                        base_url: upstream.config.base_url.to_string(),
                        error: detail.clone(),
                    },
                    _ => Why::Failed { upstream: step.upstream.clone(), error: err.short() },
                };
                trail.attempt(step, started.elapsed(), Verdict::Error, Some(why));
                if !err.escalates() {
                    return Outcome { trail, result: Err(RunError::Refused(err)) };
                }
                warn!(task = %plan.task, model = %step.model, error = %err, "step failed");
                if ctx.fallback_to_rules {
                    if let Some(answer) = rules_answer(plan, &mut trail) {
                        return Outcome { trail, result: Ok(answer) };
                    }
                }
                last = Some(err);
            }
        }
    }
    match rules_answer(plan, &mut trail) {
        Some(answer) => Outcome { trail, result: Ok(answer) },
        None => Outcome { trail, result: Err(RunError::Exhausted { last }) },
    }
}

fn rules_answer(plan: &Plan, trail: &mut Trail) -> Option<Answer> {
    let reply = plan.rules_reply.clone()?;
    let step = Step::rules(plan.steps.len());
    trail.attempt(&step, std::time::Duration::ZERO, Verdict::Accept, None);
    Some(Answer { step, produced: Produced::Rules(reply) })
}
