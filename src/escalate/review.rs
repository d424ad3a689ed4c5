//! Reviewing one answer before it is accepted: read it whole (buffering a stream), run
//! the task's checks, screen it before a judge above local sees it, then ask the judge.
//! A rejection is the feedback for the next step.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::trail::{VerifyCall, VerifyKind};
use super::{assemble, judge, verify, Candidate, Guard, Guarded, Produced, RunContext, Screened};
use crate::config::Profile;
use crate::policy::{ContentClass, Plan, PlannedStep, Step, Tier};
use crate::upstream::{Failure, Reply, UpstreamError};

pub enum Judged {
    Accept {
        produced: Produced,
        completion: Value,
        notes: Notes,
    },
    Reject {
        feedback: String,
        completion: Value,
        notes: Notes,
    },
    /// The answer could not even be read (a broken stream, not a completion).
    Broken(UpstreamError),
}

/// What reviewing an answer did besides deciding.
#[derive(Debug, Default)]
pub struct Notes {
    /// How long the review took (checks, screening, calls).
    pub time: Duration,
    /// What the guard did with the answer, if anything.
    pub guarded: Option<Guarded>,
    /// The calls the review made (a judge's), with their cost.
    pub calls: Vec<VerifyCall>,
}

/// Reads the whole answer (buffering a stream), then verifies it.
pub async fn review(
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
    let mut notes = Notes::default();
    let verdict = verify_answer(ctx, plan, step, &completion, guard, later, &mut notes).await;
    notes.time = started.elapsed();
    match verdict {
        Ok(()) => Judged::Accept { produced, completion, notes },
        Err(feedback) => Judged::Reject { feedback, completion, notes },
    }
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
    notes: &mut Notes,
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
                notes.guarded =
                    Some(Guarded::Reclassified { found: guard.reclassified().unwrap_or(&source).to_string() });
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
                notes.guarded = Some(Guarded::JudgeWithheld { kinds });
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
    let asked = Instant::now();
    let (ruling, tokens) = judge::ask(upstream, &model.name, prompt, verify.judge_timeout).await;
    notes.calls.push(VerifyCall {
        kind: VerifyKind::Judge,
        tier: judge_tier,
        model: alias.clone(),
        duration: asked.elapsed(),
        tokens,
    });
    match ruling {
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
