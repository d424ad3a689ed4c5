//! The record of a request's walk through its plan: every attempt and every skip, in
//! order. It feeds the `x-tierwise-attempts` header, error messages and metrics.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

mod cache;
mod view;
pub use cache::{CacheNote, CacheResult};
pub use view::EventView;

use super::Guarded;
use crate::escalate::score::Scored;
use crate::policy::{Detector, Locale, Step, Tier, Why};
use crate::upstream::usage::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The answer went to the client.
    Accept,
    /// The answer was not good enough; the next step was tried.
    Escalate,
    /// The call failed.
    Error,
    /// The request was dropped (its client left, or its deadline passed) while this call
    /// was in flight.
    Abandoned,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Escalate => "escalate",
            Verdict::Error => "error",
            Verdict::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub step: usize,
    pub tier: Tier,
    pub model: String,
    pub upstream: String,
    pub duration: Duration,
    pub verdict: Verdict,
    /// Why it failed, for `Verdict::Error`.
    pub failure: Option<Why>,
    /// Why it was rejected, for `Verdict::Escalate`.
    pub feedback: Option<String>,
    /// Time spent verifying the answer (checks and judge), if it was verified.
    pub verify_time: Option<Duration>,
    /// What the answer used, when it said.
    pub tokens: Option<Usage>,
    /// Whether the model was loaded when called; `None` when unknown.
    pub warm_start: Option<bool>,
    /// The same step was tried again after this wait.
    pub retried_after: Option<Duration>,
    /// What the guard did with what this step's model said (see `escalate::guard`).
    pub guarded: Vec<Guarded>,
    /// The calls verifying this attempt's answer made (a judge's), with their cost.
    pub verify_calls: Vec<VerifyCall>,
    /// What the scored verifiers made of its answer.
    pub scores: Vec<Scored>,
}

/// A call made to verify an answer: its own tier, model, time and tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyCall {
    pub kind: VerifyKind,
    pub tier: Tier,
    /// The model alias called.
    pub model: String,
    pub duration: Duration,
    pub tokens: Option<Usage>,
}

/// What a verification call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyKind {
    /// The task's LLM judge.
    Judge,
    /// More samples of the answering model (`consistency`).
    Consistency,
    /// The answering model checking its answer (`self_check`).
    SelfCheck,
}

#[derive(Debug, Clone)]
pub struct Skip {
    pub step: usize,
    pub tier: Tier,
    pub model: String,
    pub upstream: String,
    pub why: Why,
}

#[derive(Debug, Clone)]
pub enum Event {
    Attempt(Attempt),
    Skip(Skip),
}

/// Attempts and skips in the order they happened.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    pub events: Vec<Event>,
    /// Why the run made a normal request sensitive (a model's words held personal
    /// data), if it did.
    pub reclassified: Option<String>,
    /// What the response cache did, for a task with a cache.
    pub cache: Option<CacheNote>,
}

impl Trail {
    pub fn attempt(&mut self, step: &Step, duration: Duration, verdict: Verdict, failure: Option<Why>) {
        self.events.push(Event::Attempt(Attempt {
            step: step.index,
            tier: step.tier,
            model: step.model.clone(),
            upstream: step.upstream.clone(),
            duration,
            verdict,
            failure,
            feedback: None,
            verify_time: None,
            tokens: None,
            warm_start: None,
            retried_after: None,
            guarded: Vec::new(),
            verify_calls: Vec::new(),
            scores: Vec::new(),
        }));
    }

    /// The guard acted on what the last attempt's model said.
    pub fn guarded(&mut self, guarded: Option<Guarded>) {
        if let (Some(a), Some(g)) = (self.last_attempt(), guarded) {
            a.guarded.push(g);
        }
    }

    /// A call to `step` ended with `verdict` after `duration`; `warm` says whether its
    /// model was loaded.
    pub fn called(
        &mut self,
        step: &Step,
        duration: Duration,
        verdict: Verdict,
        failure: Option<Why>,
        warm: Option<bool>,
    ) {
        self.attempt(step, duration, verdict, failure);
        self.warm_start(warm);
    }

    /// The last attempt is retried after `wait`.
    pub fn retried(&mut self, wait: Duration) {
        if let Some(a) = self.last_attempt() {
            a.retried_after = Some(wait);
        }
    }

    fn last_attempt(&mut self) -> Option<&mut Attempt> {
        match self.events.last_mut() {
            Some(Event::Attempt(a)) => Some(a),
            _ => None,
        }
    }

    /// The last attempt was verified in `time`, with `calls` and `scores`; its answer
    /// used `tokens`.
    pub fn verified(&mut self, time: Duration, tokens: Option<Usage>, calls: Vec<VerifyCall>, scores: Vec<Scored>) {
        if let Some(a) = self.last_attempt() {
            a.verify_time = Some(time);
            a.tokens = tokens;
            a.verify_calls = calls;
            a.scores = scores;
        }
    }

    /// Whether the last attempt's model was loaded when it was called.
    pub fn warm_start(&mut self, warm: Option<bool>) {
        if let Some(a) = self.last_attempt() {
            a.warm_start = warm;
        }
    }

    /// Tokens of the last attempt, when it has none recorded yet.
    pub fn fill_tokens(&mut self, tokens: Option<Usage>) {
        if let Some(a) = self.last_attempt() {
            a.tokens = a.tokens.or(tokens);
        }
    }

    /// The last attempt's answer was rejected with `feedback`.
    pub fn rejected(&mut self, feedback: String) {
        if let Some(a) = self.last_attempt() {
            a.feedback = Some(feedback);
        }
    }

    /// Lines for attempts whose answers were rejected: `local (smollm2): rejected — <feedback>`.
    fn rejections(&self) -> impl Iterator<Item = String> + '_ {
        self.attempts().filter_map(|a| Some(format!("{} ({}): rejected — {}", a.tier, a.model, a.feedback.as_ref()?)))
    }

    pub fn skip(&mut self, step: &Step, why: Why) {
        tracing::event!(
            target: "tierwise::trace",
            tracing::Level::DEBUG,
            tierwise.step = step.index,
            tierwise.tier = step.tier.as_str(),
            tierwise.model = %step.model,
            tierwise.reason = why.reason().as_str(),
            "skip"
        );
        self.events.push(Event::Skip(Skip {
            step: step.index,
            tier: step.tier,
            model: step.model.clone(),
            upstream: step.upstream.clone(),
            why,
        }));
    }

    /// Prompt and completion tokens every attempt reported, summed (saturating).
    pub fn tokens(&self) -> Usage {
        self.attempts().filter_map(|a| a.tokens).fold(Usage::default(), |sum, t| Usage {
            prompt: sum.prompt.saturating_add(t.prompt),
            completion: sum.completion.saturating_add(t.completion),
        })
    }

    pub fn skips(&self) -> impl Iterator<Item = &Skip> {
        self.events.iter().filter_map(|e| match e {
            Event::Skip(s) => Some(s),
            Event::Attempt(_) => None,
        })
    }

    pub fn attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.events.iter().filter_map(|e| match e {
            Event::Attempt(a) => Some(a),
            Event::Skip(_) => None,
        })
    }

    /// The compact `x-tierwise-attempts` form:
    /// `local/smollm2:escalate:812ms:cold, cloud/gpt:skip(no_consent), server/qwen:accept:1430ms:warm`
    /// (`:warm` / `:cold` when the model's warmth was known).
    /// Names are config names (validated plain ASCII), so this is a valid header value.
    pub fn header_value(&self) -> String {
        let mut out = self.cache.as_ref().map(CacheNote::header_item).unwrap_or_default();
        for event in &self.events {
            if !out.is_empty() {
                out.push_str(", ");
            }
            // Writing to a String cannot fail.
            let _ = match event {
                Event::Attempt(a) => {
                    let _ = write!(out, "{}/{}:{}", a.tier, a.model, a.verdict.as_str());
                    if let Some(why) = &a.failure {
                        let _ = write!(out, "({})", why.reason().as_str());
                    }
                    let _ = write!(out, ":{}ms", a.duration.as_millis());
                    let _ = match a.warm_start {
                        Some(true) => write!(out, ":warm"),
                        Some(false) => write!(out, ":cold"),
                        None => Ok(()),
                    };
                    match a.retried_after {
                        Some(_) => write!(out, ":retried"),
                        None => Ok(()),
                    }
                }
                Event::Skip(s) => write!(out, "{}/{}:skip({})", s.tier, s.model, s.why.reason().as_str()),
            };
        }
        out
    }

    /// One line per step that did not answer: `cloud (gpt): cloud consent missing — ...`.
    pub fn lines(&self, locale: Locale) -> Vec<String> {
        let mut lines: Vec<String> = self
            .events
            .iter()
            .filter_map(|event| {
                let why = match event {
                    Event::Attempt(a) => a.failure.as_ref()?,
                    Event::Skip(s) => &s.why,
                };
                let (tier, model) = event.tier_and_model();
                Some(format!("{tier} ({model}): {}", why.explain(locale)))
            })
            .collect();
        lines.extend(self.rejections());
        lines
    }

    pub fn views(&self, locale: Locale) -> Vec<EventView> {
        self.events.iter().map(|e| e.view(locale)).collect()
    }

    /// The views an audit log without content keeps: no upstream's own words (which may
    /// echo the prompt), and personal data in messages and feedback redacted.
    pub fn views_without_content(&self, locale: Locale, detector: &Detector) -> Vec<EventView> {
        let redact = |text: String| detector.redact(&text).map_or(text, |r| r.text);
        self.events
            .iter()
            .map(|event| {
                let mut view = event.view(locale);
                let why = match event {
                    Event::Attempt(a) => a.failure.as_ref(),
                    Event::Skip(s) => Some(&s.why),
                };
                view.message = why.map(|w| redact(w.without_content().explain(locale)));
                view.feedback = view.feedback.map(redact);
                view
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: usize, tier: Tier, model: &str) -> Step {
        Step { index, model: model.into(), upstream_model: model.into(), upstream: "u".into(), tier }
    }

    #[test]
    fn header_lists_events_in_order_with_reasons() {
        let mut trail = Trail::default();
        let refused =
            Why::Unreachable { upstream: "u".into(), base_url: "http://x/v1".into(), error: "refused".into() };
        trail.attempt(&step(0, Tier::Local, "smollm2"), Duration::from_millis(812), Verdict::Error, Some(refused));
        trail.skip(&step(1, Tier::Cloud, "gpt"), Why::NoConsent { profile: "default".into() });
        trail.attempt(&step(2, Tier::Server, "qwen"), Duration::from_millis(1430), Verdict::Accept, None);
        assert_eq!(
            trail.header_value(),
            "local/smollm2:error(not_ready):812ms, cloud/gpt:skip(no_consent), server/qwen:accept:1430ms"
        );
        assert!(http::HeaderValue::try_from(trail.header_value()).is_ok());
        assert_eq!(
            trail.lines(Locale::En)[1],
            "cloud (gpt): cloud consent missing — set cloud_consent = true in profile \"default\""
        );
    }
}
