//! The run loop: walks a plan's steps, calls each step's upstream, verifies what it must,
//! escalates with feedback, and returns the first accepted answer — recording every
//! attempt and skip in a [`Trail`].

mod assemble;
mod guard;
pub mod judge;
mod order;
mod progress;
mod review;
pub mod score;
mod step;
mod trail;
mod verify;

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use crate::config::{Config, Profile, VerifyConfig};
use crate::openai::ChatRequest;
use crate::policy::{Action, Plan, PlannedStep, Step};
use crate::upstream::{usage, Endpoint, Reply, UpstreamError, Upstreams};
use crate::warmth::Warmth;
use review::Judged;

pub use assemble::assemble_events;
pub use guard::{Guard, Guarded, Screened};
pub use order::walk_order;
pub use progress::{Progress, RunSoFar};
pub use trail::{Attempt, CacheNote, CacheResult, Event, EventView, Skip, Trail, Verdict, VerifyCall, VerifyKind};
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
    Rejected(UpstreamError),
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
    /// Which API the steps call: chat completions (verified as the task says) or
    /// embeddings (never verified: a failure is what moves the run on).
    pub endpoint: Endpoint,
    /// A Responses request as the client sent it: a step on an upstream with
    /// `responses = "native"` whose answer is not verified gets it as it is.
    pub responses: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The spend budgets a paid step reserves its estimated cost against.
    pub budget: Option<&'a crate::state::budgets::Hold>,
}

impl RunContext<'_> {
    fn publish(&self, trail: &Trail, waiting_on: &Step) {
        if let Some(progress) = self.progress {
            progress.publish(trail, Some(waiting_on));
        }
    }

    fn verify(&self, plan: &Plan) -> Option<&VerifyConfig> {
        self.config.tasks.get(&plan.task).map(|t| &t.verify).filter(|_| self.endpoint == Endpoint::Chat)
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
    let mut walked = Walked::default();
    let prefer_warm = ctx.config.tasks.get(&plan.task).is_some_and(|t| t.prefer_warm);
    let order = walk_order(plan, prefer_warm, |s| ctx.warmth.is_warm(&s.upstream, &s.upstream_model));
    for (position, &index) in order.iter().enumerate() {
        let planned = &plan.steps[index];
        let later: Vec<&PlannedStep> = order[position + 1..].iter().map(|&i| &plan.steps[i]).collect();
        let ready = match step::ready(ctx, plan, planned, guard, &later, &walked.feedback) {
            Ok(ready) => ready,
            Err(why) => {
                walked.trail.skip(&planned.step, why);
                continue;
            }
        };
        // From here the run waits on this step: for a place, the call, retries, the judge.
        ctx.publish(&walked.trail, ready.step);
        let called = match step::call(ctx, plan, &ready, &mut walked.trail).await {
            Ok(called) => called,
            Err(why) => {
                walked.trail.skip(ready.step, why);
                continue;
            }
        };
        if let Some(result) = settle(ctx, plan, guard, &later, &ready, called, &mut walked).await {
            return Outcome { trail: walked.trail, result };
        }
    }
    match rules_answer(plan, &mut walked.trail) {
        Some(answer) => Outcome { trail: walked.trail, result: Ok(answer) },
        None => Outcome { trail: walked.trail, result: Err(RunError::Exhausted { last: walked.last }) },
    }
}

/// What the walk carries from step to step.
#[derive(Default)]
struct Walked {
    trail: Trail,
    /// The last failure, for the error when nothing answers.
    last: Option<UpstreamError>,
    /// Rejected steps' feedback, for the next steps' prompts.
    feedback: Vec<String>,
}

/// What a call's answer means: the run's result (accepted, refused by the upstream,
/// answered by the rules after a failure), or `None` to go on to the next step.
async fn settle(
    ctx: &RunContext<'_>,
    plan: &Plan,
    guard: &mut Guard<'_>,
    later: &[&PlannedStep],
    ready: &step::Ready<'_>,
    called: step::Called,
    walked: &mut Walked,
) -> Option<Result<Answer, RunError>> {
    let step::Ready { step, upstream, warm, verified, .. } = ready;
    let trail = &mut walked.trail;
    let took = || called.started.elapsed();
    let span = called.span;
    let failure = match called.reply {
        Ok(reply) if !verified => {
            span.record("tierwise.verdict", Verdict::Accept.as_str());
            if let Reply::Json(body) = &reply {
                if !span.is_disabled() {
                    crate::telemetry::record_completion(&span, &serde_json::from_slice(body).unwrap_or_default());
                }
            }
            trail.called(step, took(), Verdict::Accept, None, *warm);
            debug!(task = %plan.task, model = %step.model, tier = %step.tier, "answered");
            return Some(Ok(Answer { step: (*step).clone(), produced: Produced::Upstream(reply) }));
        }
        Ok(reply) => match review::review(ctx, plan, ready, reply, guard, later).instrument(span.clone()).await {
            Judged::Accept { produced, completion, notes } => {
                span.record("tierwise.verdict", Verdict::Accept.as_str());
                crate::telemetry::record_completion(&span, &completion);
                trail.called(step, took(), Verdict::Accept, None, *warm);
                trail.verified(notes.time, usage::of_completion(&completion), notes.calls, notes.scores);
                trail.guarded(notes.guarded);
                return Some(Ok(Answer { step: (*step).clone(), produced }));
            }
            Judged::Reject { feedback, completion, notes } => {
                span.record("tierwise.verdict", Verdict::Escalate.as_str());
                crate::telemetry::record_completion(&span, &completion);
                trail.called(step, took(), Verdict::Escalate, None, *warm);
                trail.verified(notes.time, usage::of_completion(&completion), notes.calls, notes.scores);
                trail.guarded(notes.guarded);
                let feedback = screen_feedback(guard, step, feedback, trail);
                trail.rejected(feedback.clone());
                debug!(task = %plan.task, model = %step.model, %feedback, "escalating");
                if ctx.verify(plan).is_some_and(|v| v.feedback) {
                    walked.feedback.push(feedback);
                }
                return None;
            }
            Judged::Broken(err) => err,
        },
        Err(err) => err,
    };
    span.record("tierwise.verdict", Verdict::Error.as_str());
    crate::telemetry::record_failure(&span, &failure);
    trail.called(step, took(), Verdict::Error, Some(step::why_failed(step, upstream, &failure)), *warm);
    if !failure.escalates() {
        return Some(Err(RunError::Rejected(failure)));
    }
    // The upstream's own words may echo the prompt: the WARN line names the failure
    // only; DEBUG has the message.
    warn!(task = %plan.task, model = %step.model, upstream = %failure.upstream, error = %failure.summary(), "step failed");
    debug!(task = %plan.task, model = %step.model, error = %failure, "step failed");
    walked.last = Some(failure);
    if ctx.profile.fallback_to_rules_on_error {
        return rules_answer(plan, &mut walked.trail).map(Ok);
    }
    None
}

/// A rejection's feedback goes to the next steps' prompts: screened like the answer.
fn screen_feedback(guard: &mut Guard<'_>, step: &Step, feedback: String, trail: &mut Trail) -> String {
    let source = format!("the feedback on the answer of {}/{}", step.tier, step.model);
    match guard.screen(&feedback, &source) {
        Screened::Clean => feedback,
        Screened::Reclassified => {
            let found = guard.reclassified().unwrap_or(&source).to_string();
            trail.guarded(Some(Guarded::Reclassified { found }));
            feedback
        }
        Screened::Redacted { text, kinds } => {
            trail.guarded(Some(Guarded::FeedbackRedacted { kinds }));
            text
        }
    }
}

fn rules_answer(plan: &Plan, trail: &mut Trail) -> Option<Answer> {
    let reply = plan.rules_reply.clone()?;
    let step = Step::rules(plan.steps.len());
    trail.attempt(&step, Duration::ZERO, Verdict::Accept, None);
    Some(Answer { step, produced: Produced::Rules(reply) })
}
