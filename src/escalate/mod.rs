//! The run loop: walks a plan's steps, calls each step's upstream, and returns the first
//! answer, recording every attempt and skip in a [`Trail`].

mod trail;

use std::time::Instant;

use tracing::{info, warn};

use crate::api::wire::ChatRequest;
use crate::policy::{Plan, Step};
use crate::upstream::{Reply, UpstreamError, Upstreams};

pub use trail::{Attempt, Event, Skip, SkipReason, Trail, Verdict};

/// The answer the client gets, and the step that produced it.
pub struct Answer {
    pub step: Step,
    pub reply: Reply,
}

pub enum RunError {
    /// An upstream refused the request itself (4xx): it goes back to the client as it
    /// is, because another step would refuse it the same way.
    Refused(UpstreamError),
    /// Every step was skipped or failed; the trail says why.
    Exhausted { last: Option<UpstreamError> },
}

/// What the loop did: the trail always, and the answer or the error.
pub struct Outcome {
    pub trail: Trail,
    pub result: Result<Answer, RunError>,
}

/// Walks `plan`: returns the first successful answer; records every attempt in the
/// trail. Connection errors, timeouts, 5xx and malformed answers go on to the next step.
pub async fn run(upstreams: &Upstreams, plan: &Plan, request: &ChatRequest) -> Outcome {
    let mut trail = Trail::default();
    let mut last = None;
    for step in &plan.steps {
        let Some(upstream) = upstreams.get(&step.upstream) else {
            trail.skip(step, SkipReason::NotAvailable, format!("upstream \"{}\" is not configured", step.upstream));
            continue;
        };
        if let Some(why) = upstream.unavailable() {
            trail.skip(step, SkipReason::NotAvailable, format!("upstream \"{}\": {why}", step.upstream));
            continue;
        }
        let body = match request.body_for(&step.upstream_model) {
            Ok(body) => body,
            Err(err) => {
                trail.skip(step, SkipReason::NotAvailable, format!("request could not be encoded: {err}"));
                continue;
            }
        };
        let started = Instant::now();
        match upstream.chat(body, request.is_stream()).await {
            Ok(reply) => {
                trail.attempt(step, started.elapsed(), Verdict::Accept, None);
                info!(task = %plan.task, model = %step.model, tier = %step.tier, "answered");
                return Outcome { trail, result: Ok(Answer { step: step.clone(), reply }) };
            }
            Err(err) => {
                trail.attempt(step, started.elapsed(), Verdict::Error, Some(err.short()));
                if !err.escalates() {
                    return Outcome { trail, result: Err(RunError::Refused(err)) };
                }
                warn!(task = %plan.task, model = %step.model, error = %err, "step failed, trying the next");
                last = Some(err);
            }
        }
    }
    Outcome { trail, result: Err(RunError::Exhausted { last }) }
}
