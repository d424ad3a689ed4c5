//! A task's `verify` table, validated: the deterministic checks, the scored verifiers
//! (`confidence`, `consistency`, `self_check`) and the judge.

use std::time::Duration;

use crate::policy::Tier;

/// How a task's answers are checked. The default verifies nothing.
#[derive(Debug, Clone, Default)]
pub struct VerifyConfig {
    pub checks: Vec<crate::escalate::Check>,
    /// Score the answer from its token log-probabilities.
    pub confidence: Option<Confidence>,
    /// Sample the model again and accept when the answers agree.
    pub consistency: Option<Consistency>,
    /// Ask the answering model whether its answer is right.
    pub self_check: Option<SelfCheck>,
    /// A model alias; validation guarantees it exists (and is local for sensitive tasks).
    pub judge: Option<String>,
    pub judge_prompt: String,
    pub judge_timeout: Duration,
    /// Accept when the judge's score reaches this; without it, the judge's boolean rules.
    pub judge_threshold: Option<f64>,
    pub judge_score: JudgeScore,
    /// Tiers whose answers are verified.
    pub tiers: Vec<Tier>,
    /// Append the feedback to the next step's last user message.
    pub feedback: bool,
}

impl VerifyConfig {
    /// Whether an answer from `tier` is checked at all.
    pub fn applies_to(&self, tier: Tier) -> bool {
        let any = !self.checks.is_empty()
            || self.judge.is_some()
            || self.confidence.is_some()
            || self.consistency.is_some()
            || self.self_check.is_some();
        any && self.tiers.contains(&tier)
    }
}

/// How the judge is asked, and where its score comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JudgeScore {
    /// A JSON verdict: `accept`, `feedback`, and optionally `score`.
    #[default]
    Json,
    /// One token, Yes or No: the score is the probability of Yes.
    YesNo,
}

/// `verify.confidence`: the answer's token probabilities, reduced to one score in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Confidence {
    /// Accept at or above.
    pub threshold: f64,
    pub score: ConfidenceScore,
}

/// How token log-probabilities become a score: each is the exponential of a mean of
/// log-probabilities, so every score is a probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfidenceScore {
    /// The geometric mean of all token probabilities.
    Mean,
    /// The least likely token's probability.
    Min,
    /// The geometric mean of the k least likely tokens.
    LowestMean(usize),
}

/// `verify.consistency`: more samples from the same model; the answers' agreement.
#[derive(Debug, Clone, PartialEq)]
pub struct Consistency {
    /// Answers compared, the one being verified included (at least 2).
    pub samples: usize,
    pub temperature: f64,
    pub extract: Extract,
    /// The largest group's share of the samples needed to accept.
    pub threshold: f64,
    pub sampling: Sampling,
    pub timeout: Duration,
}

/// What of an answer is compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Extract {
    /// The final number (after `####`, `answer:`, … or the last one).
    Number,
    /// The final choice among these.
    Choice(Vec<String>),
    /// The whole text, lowercased, spaces collapsed, trailing punctuation dropped.
    Text,
    /// The JSON value at this pointer of the answer parsed as JSON.
    Json(String),
}

/// How the extra samples are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// One request with `n`; separate requests when the upstream refuses `n` (remembered).
    Auto,
    /// One request with `n`.
    N,
    /// One request per sample, each with its own `seed`.
    Calls,
}

/// `verify.self_check`: the answering model, asked whether its answer is right.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfCheck {
    /// `{system}`, `{user}`, `{answer}` are replaced.
    pub prompt: String,
    /// 1: the probability of "Yes" as the verdict's first token; more: the share of
    /// "Yes" among that many sampled verdicts.
    pub samples: usize,
    pub temperature: f64,
    /// Accept at or above.
    pub threshold: f64,
    pub timeout: Duration,
}
