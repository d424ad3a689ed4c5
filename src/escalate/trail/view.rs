//! The trail as JSON: one object per attempt or skip (`error.skipped`, the `tierwise`
//! body object, explain, audit).

use serde::Serialize;

use super::{Event, Guarded, Verdict, VerifyCall, VerifyKind};
use crate::escalate::score::Scored;
use crate::policy::{Locale, SkipReason, Tier, Why};

/// One line of the trail as JSON (`error.skipped`, explain, audit).
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub kind: &'static str,
    pub step: usize,
    pub tier: Tier,
    pub model: String,
    pub upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SkipReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<bool>,
    /// Retried after this many ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// What the guard did with what this step's model said, without the data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_output: Vec<GuardView>,
    /// The calls verifying this answer made.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_calls: Vec<VerifyCallView>,
    /// The scored verifiers' scores, in the order they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<ScoreView>,
}

/// A verifier's score as JSON: `{"verifier": "confidence", "score": 0.42, "threshold":
/// 0.5, "result": "reject"}` (`score` absent when it could not score: `error`).
#[derive(Debug, Clone, Serialize)]
pub struct ScoreView {
    pub verifier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub threshold: f64,
    pub result: &'static str,
}

impl ScoreView {
    fn of(scored: &Scored) -> Self {
        ScoreView {
            verifier: scored.scorer.as_str(),
            score: scored.score.map(|s| (s * 1e4).round() / 1e4),
            threshold: scored.threshold,
            result: scored.result(),
        }
    }
}

/// A verification call as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyCallView {
    pub kind: VerifyKind,
    pub tier: Tier,
    pub model: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

impl VerifyCallView {
    fn of(call: &VerifyCall) -> Self {
        VerifyCallView {
            kind: call.kind,
            tier: call.tier,
            model: call.model.clone(),
            duration_ms: u64::try_from(call.duration.as_millis()).unwrap_or(u64::MAX),
            prompt_tokens: call.tokens.map(|t| t.prompt),
            completion_tokens: call.tokens.map(|t| t.completion),
        }
    }
}

/// One thing the guard did, as JSON: `{"action": "feedback_redacted", "kinds": ["email"]}`.
#[derive(Debug, Clone, Serialize)]
pub struct GuardView {
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    /// For `reclassified`: what was found where (`detected email address in the answer of local/m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl GuardView {
    fn of(guarded: &Guarded) -> Self {
        let action = guarded.action();
        match guarded {
            Guarded::Reclassified { found } => GuardView { action, kinds: None, found: Some(found.clone()) },
            Guarded::FeedbackRedacted { kinds } | Guarded::JudgeWithheld { kinds } => {
                GuardView { action, kinds: Some(kinds.clone()), found: None }
            }
        }
    }
}

impl Event {
    pub fn view(&self, locale: Locale) -> EventView {
        match self {
            Event::Attempt(a) => EventView {
                kind: "attempt",
                step: a.step,
                tier: a.tier,
                model: a.model.clone(),
                upstream: a.upstream.clone(),
                verdict: Some(a.verdict),
                duration_ms: Some(u64::try_from(a.duration.as_millis()).unwrap_or(u64::MAX)),
                reason: a.failure.as_ref().map(Why::reason),
                message: a.failure.as_ref().map(|w| w.explain(locale)),
                feedback: a.feedback.clone(),
                verify_ms: a.verify_time.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
                prompt_tokens: a.tokens.map(|t| t.prompt),
                completion_tokens: a.tokens.map(|t| t.completion),
                warm_start: a.warm_start,
                retry_after_ms: a.retried_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                local_output: a.guarded.iter().map(GuardView::of).collect(),
                verify_calls: a.verify_calls.iter().map(VerifyCallView::of).collect(),
                scores: a.scores.iter().map(ScoreView::of).collect(),
            },
            Event::Skip(s) => EventView {
                kind: "skip",
                step: s.step,
                tier: s.tier,
                model: s.model.clone(),
                upstream: s.upstream.clone(),
                verdict: None,
                duration_ms: None,
                reason: Some(s.why.reason()),
                message: Some(s.why.explain(locale)),
                feedback: None,
                verify_ms: None,
                prompt_tokens: None,
                completion_tokens: None,
                warm_start: None,
                retry_after_ms: None,
                local_output: Vec::new(),
                verify_calls: Vec::new(),
                scores: Vec::new(),
            },
        }
    }

    pub(super) fn tier_and_model(&self) -> (Tier, &str) {
        match self {
            Event::Attempt(a) => (a.tier, &a.model),
            Event::Skip(s) => (s.tier, &s.model),
        }
    }
}
