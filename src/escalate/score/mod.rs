//! The scored verifiers: each turns an answer into a number in [0, 1] and accepts at or
//! above its threshold. `confidence` reads the answer's own token probabilities (no
//! call); `consistency` samples the same model again and measures agreement;
//! `self_check` asks the same model whether its answer is right. Every extra call goes
//! to the model that gave the answer — the step's own tier, which the plan already let
//! see the request — and is counted in the trail.

pub mod confidence;
pub mod consistency;
pub mod extract;
pub mod logprobs;
pub mod sampling;
pub mod self_check;

use serde::Serialize;

/// Which verifier gave a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scorer {
    Confidence,
    Consistency,
    SelfCheck,
    Judge,
}

impl Scorer {
    pub fn as_str(self) -> &'static str {
        match self {
            Scorer::Confidence => "confidence",
            Scorer::Consistency => "consistency",
            Scorer::SelfCheck => "self_check",
            Scorer::Judge => "judge",
        }
    }
}

/// What a verifier made of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub scorer: Scorer,
    /// `None` when it could not score (a verifier error, which escalates).
    pub score: Option<f64>,
    pub threshold: f64,
}

impl Scored {
    pub fn passed(&self) -> bool {
        self.score.is_some_and(|s| s >= self.threshold)
    }

    /// `accept`, `reject` or `error`: the metric's label.
    pub fn result(&self) -> &'static str {
        match self.score {
            None => "error",
            Some(_) if self.passed() => "accept",
            Some(_) => "reject",
        }
    }
}
