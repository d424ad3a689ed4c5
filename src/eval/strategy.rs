//! The strategies eval compares, and random routing built from the others' answers.

use std::collections::HashMap;

use serde::Serialize;

use super::client::Reply;
use super::grade::Grade;
use super::rng::Rng;

/// One way of answering the dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    /// One model of the chain, asked directly.
    Alone { model: String },
    /// The task's chain, as configured or with one setting changed (`--sweep`).
    Chain { setting: Option<String> },
    /// Each item sent to one chain model at random, in the shares the chain's requests
    /// ended at — the chain's escalation rate without its verifier.
    Random { like: String },
}

impl Strategy {
    pub fn name(&self) -> String {
        match self {
            Strategy::Alone { model } => format!("{model} alone"),
            Strategy::Chain { setting: None } => "chain".into(),
            Strategy::Chain { setting: Some(setting) } => format!("chain {setting}"),
            Strategy::Random { like } => format!("random like {like}"),
        }
    }
}

/// What one item got under a strategy, and its grade.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub reply: Reply,
    pub grade: Grade,
}

/// A strategy's outcomes, one per item, in the items' order.
#[derive(Debug, Clone)]
pub struct Run {
    pub strategy: Strategy,
    pub outcomes: Vec<Outcome>,
}

/// How far down the chain an item's request went: the position of the last chain model
/// it called (0 when it called none).
pub fn depth(outcome: &Outcome, chain: &[String]) -> usize {
    let called = outcome.reply.trail.iter().filter(|s| s.called());
    called.filter_map(|s| chain.iter().position(|m| *m == s.model)).max().unwrap_or(0)
}

/// Random routing at `chain`'s rates: as many items go to each model as the chain's
/// requests ended there (largest remainder), which ones is seeded; each gets what that
/// model said alone. `None` when a chain model has no run alone.
pub fn random_like(chain_run: &Run, alone: &HashMap<String, &Run>, chain: &[String], seed: u64) -> Option<Run> {
    let n = chain_run.outcomes.len();
    let mut ended = vec![0usize; chain.len()];
    for outcome in &chain_run.outcomes {
        ended[depth(outcome, chain)] += 1;
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let mut assigned = vec![0usize; n];
    let mut next = 0;
    for (position, count) in ended.iter().enumerate() {
        for &item in &order[next..next + count] {
            assigned[item] = position;
        }
        next += count;
    }
    let outcomes = (0..n)
        .map(|item| alone.get(&chain[assigned[item]]).map(|run| run.outcomes[item].clone()))
        .collect::<Option<Vec<_>>>()?;
    Some(Run { strategy: Strategy::Random { like: chain_run.strategy.name() }, outcomes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::client::TrailStep;

    fn outcome(models: &[&str], correct: bool) -> Outcome {
        let trail = models
            .iter()
            .map(|m| TrailStep {
                kind: "attempt".into(),
                tier: "local".into(),
                model: (*m).into(),
                verdict: None,
                verify_ms: None,
                prompt_tokens: None,
                completion_tokens: None,
                verify_calls: Vec::new(),
            })
            .collect();
        Outcome { reply: Reply { trail, ..Reply::default() }, grade: Grade { correct, ..Grade::default() } }
    }

    #[test]
    fn random_routing_sends_as_many_items_down_as_the_chain_did() {
        let chain = vec!["weak".to_string(), "strong".to_string()];
        let chain_outcomes: Vec<Outcome> = (0..10)
            .map(|i| if i < 3 { outcome(&["weak", "strong"], true) } else { outcome(&["weak"], false) })
            .collect();
        let chain_run = Run { strategy: Strategy::Chain { setting: None }, outcomes: chain_outcomes };
        let weak = Run {
            strategy: Strategy::Alone { model: "weak".into() },
            outcomes: (0..10).map(|_| outcome(&["weak"], false)).collect(),
        };
        let strong = Run {
            strategy: Strategy::Alone { model: "strong".into() },
            outcomes: (0..10).map(|_| outcome(&["strong"], true)).collect(),
        };
        let alone: HashMap<String, &Run> = [("weak".to_string(), &weak), ("strong".to_string(), &strong)].into();
        let random = random_like(&chain_run, &alone, &chain, 7).unwrap();
        assert_eq!(random.strategy.name(), "random like chain");
        assert_eq!(
            random.outcomes.iter().filter(|o| o.grade.correct).count(),
            3,
            "three items went to the strong model"
        );
        let again = random_like(&chain_run, &alone, &chain, 7).unwrap();
        let picks = |run: &Run| run.outcomes.iter().map(|o| o.grade.correct).collect::<Vec<_>>();
        assert_eq!(picks(&random), picks(&again), "the seed decides");
        assert!(random_like(&chain_run, &[("weak".to_string(), &weak)].into(), &chain, 7).is_none());
    }
}
