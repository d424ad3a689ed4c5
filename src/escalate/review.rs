//! Reviewing one answer before it is accepted: read it whole (buffering a stream), run
//! the task's checks, then its scored verifiers — `confidence`, `consistency`,
//! `self_check` — then screen it before a judge above local sees it, and ask the judge.
//! A rejection is the feedback for the next step. An accepted answer loses the token
//! log-probabilities a verifier asked for, unless the client asked for them too.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::score::sampling::{self, Ask, Call};
use super::score::{confidence, consistency, logprobs, self_check, Scored, Scorer};
use super::step::Ready;
use super::trail::{VerifyCall, VerifyKind};
use super::{assemble, judge, verify, Candidate, Guard, Guarded, Produced, RunContext, Screened};
use crate::config::{JudgeScore, Profile, VerifyConfig};
use crate::policy::{ContentClass, Plan, PlannedStep, Step, Tier};
use crate::state::budgets::micro_usd;
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
    /// How long the review took (checks, scoring, screening, calls).
    pub time: Duration,
    /// What the guard did with the answer, if anything.
    pub guarded: Option<Guarded>,
    /// The calls the review made (samples, a self-check, a judge's), with their cost.
    pub calls: Vec<VerifyCall>,
    /// What the scored verifiers made of the answer.
    pub scores: Vec<Scored>,
}

impl Notes {
    fn called(&mut self, kind: VerifyKind, step: &Step, calls: Vec<Call>) {
        let model = step.model.clone();
        self.calls.extend(calls.into_iter().map(|c| VerifyCall {
            kind,
            tier: step.tier,
            model: model.clone(),
            duration: c.duration,
            tokens: c.tokens,
        }));
    }
}

/// Reads the whole answer (buffering a stream), then verifies it.
pub async fn review(
    ctx: &RunContext<'_>,
    plan: &Plan,
    ready: &Ready<'_>,
    reply: Reply,
    guard: &mut Guard<'_>,
    later: &[&PlannedStep],
) -> Judged {
    let (mut completion, bytes) = match reply {
        Reply::Json(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(completion) => (completion, Some(bytes)),
            Err(err) => return Judged::Broken(protocol("?", format!("not JSON: {err}"))),
        },
        Reply::Stream { first, rest } => match assemble::assemble(first, rest).await {
            Ok(completion) => (completion, None),
            Err(assemble::AssembleError::Upstream(err)) => return Judged::Broken(err),
            Err(assemble::AssembleError::Bad(msg)) => return Judged::Broken(protocol("?", msg)),
        },
        // `step::ready` never sends a verified step to an upstream's own Responses endpoint.
        Reply::Response(_) | Reply::ResponseStream { .. } => {
            return Judged::Broken(protocol("?", "a Responses API answer cannot be verified".into()))
        }
    };
    let started = Instant::now();
    let mut notes = Notes::default();
    let verdict = verify_answer(ctx, plan, ready, &completion, guard, later, &mut notes).await;
    notes.time = started.elapsed();
    let replacement = match verdict {
        Ok(replacement) => replacement,
        Err(feedback) => return Judged::Reject { feedback, completion, notes },
    };
    // The upstream's bytes go out as they came, unless the answer changed.
    let mut changed = false;
    if let Some(mut choice) = replacement {
        choice["index"] = Value::from(0);
        completion["choices"][0] = choice;
        changed = true;
    }
    if !ctx.request.wants_logprobs() {
        changed |= logprobs::strip(&mut completion);
    }
    let produced = match bytes {
        None => Produced::Completion(completion.clone()),
        Some(bytes) if !changed => Produced::Upstream(Reply::Json(bytes)),
        Some(_) => Produced::Upstream(Reply::Json(completion.to_string().into())),
    };
    Judged::Accept { produced, completion, notes }
}

fn protocol(upstream: &str, message: String) -> UpstreamError {
    UpstreamError::new(upstream, Failure::Protocol(message))
}

/// The task's checks, its scored verifiers, then its judge. `Ok` may carry the choice to
/// answer with instead (a sample `consistency` preferred); `Err` is the feedback for the
/// next step.
async fn verify_answer(
    ctx: &RunContext<'_>,
    plan: &Plan,
    ready: &Ready<'_>,
    completion: &Value,
    guard: &mut Guard<'_>,
    later: &[&PlannedStep],
    notes: &mut Notes,
) -> Result<Option<Value>, String> {
    let Some(verify) = ctx.verify(plan) else { return Ok(None) };
    let candidate = Candidate::from_completion(completion);
    verify::run_checks(&verify.checks, &candidate, ctx.request)?;
    let replacement = scored_verifiers(ctx, verify, ready, completion, &candidate, notes).await?;
    let text = match &replacement {
        Some(choice) => Candidate::from_completion(&serde_json::json!({"choices": [choice]})).text,
        None => candidate.text.clone(),
    };
    let answer = if candidate.tool_calls.is_empty() || replacement.is_some() {
        text
    } else {
        let calls: Vec<String> = candidate.tool_calls.iter().map(|(n, a)| format!("tool call {n}({a})")).collect();
        format!("{text}\n{}", calls.join("\n"))
    };
    ask_judge(ctx, plan, verify, ready.step, &answer, guard, later, notes).await?;
    Ok(replacement)
}

/// `confidence`, `consistency`, `self_check`, in that order (cheapest first); each
/// records its score. The extra calls go to the step's own model.
async fn scored_verifiers(
    ctx: &RunContext<'_>,
    verify: &VerifyConfig,
    ready: &Ready<'_>,
    completion: &Value,
    candidate: &Candidate,
    notes: &mut Notes,
) -> Result<Option<Value>, String> {
    let step = ready.step;
    if let Some(config) = &verify.confidence {
        let score = confidence::score(completion, config.score);
        notes.scores.push(Scored {
            scorer: Scorer::Confidence,
            score: score.as_ref().ok().copied(),
            threshold: config.threshold,
        });
        match score {
            Err(err) => return Err(format!("verifier error: confidence: {err}")),
            Ok(score) if score < config.threshold => return Err(confidence::feedback(score, config.threshold)),
            Ok(_) => {}
        }
    }
    let mut replacement = None;
    if let Some(config) = &verify.consistency {
        let body: Value =
            serde_json::from_slice(&ready.body).map_err(|e| format!("verifier error: consistency: {e}"))?;
        let ask = Ask {
            upstream: ready.upstream,
            body,
            count: config.samples - 1,
            temperature: config.temperature,
            sampling: config.sampling,
            timeout: config.timeout,
        };
        let samples = match sampling::sample(ask).await {
            Ok(sampled) => {
                notes.called(VerifyKind::Consistency, step, sampled.calls);
                sampled.choices
            }
            Err((message, calls)) => {
                notes.called(VerifyKind::Consistency, step, calls);
                notes.scores.push(Scored { scorer: Scorer::Consistency, score: None, threshold: config.threshold });
                return Err(format!("verifier error: consistency: {message}"));
            }
        };
        let agreement = consistency::agree(&candidate.text, &samples, config);
        notes.scores.push(Scored {
            scorer: Scorer::Consistency,
            score: Some(agreement.score),
            threshold: config.threshold,
        });
        if agreement.score < config.threshold {
            return Err(consistency::feedback(&agreement, config.threshold));
        }
        replacement = agreement.replacement.and_then(|i| samples.get(i).cloned());
    }
    if let Some(config) = &verify.self_check {
        let text = replacement.as_ref().map_or(candidate.text.as_str(), consistency::text_of);
        let prompt = judge::render(&config.prompt, ctx.request, text);
        let (score, calls) = self_check::check(ready.upstream, &step.upstream_model, prompt, config).await;
        notes.called(VerifyKind::SelfCheck, step, calls);
        notes.scores.push(Scored {
            scorer: Scorer::SelfCheck,
            score: score.as_ref().ok().copied(),
            threshold: config.threshold,
        });
        match score {
            Err(err) => return Err(format!("verifier error: self_check: {err}")),
            Ok(score) if score < config.threshold => return Err(self_check::feedback(score, config.threshold)),
            Ok(_) => {}
        }
    }
    Ok(replacement)
}

/// The judge, when the task names one. Before a judge above local sees the answer, the
/// guard screens it: with personal data in it the judge is not asked (`guarded` says
/// what happened instead).
#[expect(clippy::too_many_arguments, reason = "the run's context, the step and what the review has noted so far")]
async fn ask_judge(
    ctx: &RunContext<'_>,
    plan: &Plan,
    verify: &VerifyConfig,
    step: &Step,
    answer: &str,
    guard: &mut Guard<'_>,
    later: &[&PlannedStep],
    notes: &mut Notes,
) -> Result<(), String> {
    let Some(alias) = &verify.judge else { return Ok(()) };
    let upstream = ctx
        .config
        .models
        .get(alias)
        .and_then(|m| Some((m, ctx.upstreams.get(&m.upstream)?)))
        .ok_or_else(|| format!("verifier error: judge \"{alias}\" is not configured"))?;
    let (model, upstream) = upstream;
    let judge_tier = upstream.config.tier;
    if judge_tier > Tier::Local {
        let source = format!("the answer of {}/{}", step.tier, step.model);
        match guard.screen(answer, &source) {
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
    let prompt = judge::render(&verify.judge_prompt, ctx.request, answer);
    // A priced judge is a paid call: its prompt and 256 completion tokens are reserved
    // against the request's budgets, and settled to what it used.
    let budgeted = match (ctx.budget, model.price.filter(crate::config::Price::is_paid)) {
        (Some(hold), Some(price)) => {
            let estimate = micro_usd(price.cost(prompt.len() as u64 / 4, judge::MAX_TOKENS));
            if let Err(why) = hold.reserve(alias, estimate).await {
                return Err(format!("verifier error: judge \"{alias}\" skipped: {}", why.explain(ctx.profile.locale)));
            }
            Some((hold, price))
        }
        _ => None,
    };
    let asked = Instant::now();
    let (verdict, tokens) = match verify.judge_score {
        JudgeScore::Json => {
            let (ruling, tokens) = judge::ask(upstream, &model.name, prompt, verify.judge_timeout).await;
            (ruling.map(|r| (r.score.unwrap_or(if r.accept { 1.0 } else { 0.0 }), r)), tokens)
        }
        JudgeScore::YesNo => {
            let (score, tokens) = judge::ask_yes_no(upstream, &model.name, prompt, verify.judge_timeout).await;
            let ruling =
                |score: f64| judge::Ruling { accept: score >= 0.5, feedback: String::new(), score: Some(score) };
            (score.map(|s| (s, ruling(s))), tokens)
        }
    };
    if let Some((hold, price)) = budgeted {
        hold.spent(alias, tokens.map_or(0, |t| micro_usd(price.cost(t.prompt, t.completion))));
    }
    notes.calls.push(VerifyCall {
        kind: VerifyKind::Judge,
        tier: judge_tier,
        model: alias.clone(),
        duration: asked.elapsed(),
        tokens,
    });
    let (score, ruling) = match verdict {
        Ok(verdict) => verdict,
        Err(err) => {
            if let Some(threshold) = verify.judge_threshold {
                notes.scores.push(Scored { scorer: Scorer::Judge, score: None, threshold });
            }
            return Err(format!("verifier error: {err}"));
        }
    };
    // With a threshold the score decides: the judge's own, its Yes probability, or (a
    // JSON verdict without a score) its boolean as 0 or 1.
    let accept = match verify.judge_threshold {
        None => ruling.accept,
        Some(threshold) => {
            notes.scores.push(Scored { scorer: Scorer::Judge, score: Some(score), threshold });
            score >= threshold
        }
    };
    match (accept, ruling.feedback.trim().is_empty(), verify.judge_threshold) {
        (true, _, _) => Ok(()),
        (false, true, None) => Err("the reviewer rejected the answer".into()),
        (false, true, Some(threshold)) => {
            Err(format!("the reviewer rejected the answer (score {score:.2} < {threshold:.2})"))
        }
        (false, false, _) => Err(ruling.feedback),
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
