//! What a strategy's run adds up to: accuracy with its interval, where answers came
//! from, calls, tokens, cost and latency — and, for a chain, how its verifier judged.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::strategy::{Run, Strategy};
use crate::config::Config;
use crate::policy::Tier;

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub strategy: Strategy,
    pub items: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Wilson score interval.
    pub accuracy_ci95: [f64; 2],
    /// Items that got no answer (an error), counted wrong.
    pub failed: usize,
    /// Answers a grader could not grade, counted wrong.
    pub grader_errors: usize,
    /// Share of items answered by each tier (`none`: no answer).
    pub answered_by_tier: BTreeMap<String, f64>,
    pub answered_by_model: BTreeMap<String, f64>,
    /// Upstream calls made, answering and verifying, per tier.
    pub calls_by_tier: BTreeMap<String, u64>,
    pub calls_per_request: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// At the configured prices (models without a price cost nothing).
    pub cost_usd: f64,
    pub cost_per_1k_requests_usd: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    /// Share of items that called a model of the chain's strongest tier.
    pub reached_strongest_tier: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainStats>,
}

/// How the chain's verifier did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainStats {
    /// Share of items whose request went past the first model it called.
    pub escalation_rate: f64,
    /// The verdict on the first answer each item got, against whether that model's answer
    /// (the same request, asked alone) was right.
    pub confusion: Confusion,
    /// Of the verified answers the chain returned, the share that were wrong.
    pub accepted_wrong_share: Option<f64>,
    /// (chain − weakest alone) / (strongest alone − weakest alone), by accuracy.
    pub quality_gap_recovered: Option<f64>,
    /// Calls its verifiers made (a judge's).
    pub verify_calls: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub accepted_right: usize,
    pub accepted_wrong: usize,
    pub rejected_right: usize,
    pub rejected_wrong: usize,
    /// First answers that were not verified (a tier the verifier skips, or no verifier).
    pub not_verified: usize,
}

/// What summaries are computed against: prices, the chain, and each model's run alone.
pub struct Context<'a> {
    pub config: &'a Config,
    pub chain: &'a [String],
    pub alone: HashMap<String, &'a Run>,
}

impl Context<'_> {
    pub fn tier_of(&self, model: &str) -> Tier {
        let upstream = self.config.models.get(model).and_then(|m| self.config.upstreams.get(&m.upstream));
        upstream.map_or(Tier::None, |u| u.tier)
    }

    /// The highest tier of the chain's models.
    pub fn strongest_tier(&self) -> Tier {
        self.chain.iter().map(|m| self.tier_of(m)).max().unwrap_or(Tier::None)
    }

    fn cost(&self, model: &str, prompt: Option<u64>, completion: Option<u64>) -> f64 {
        let price = self.config.price_of(model);
        price.map_or(0.0, |p| p.cost(prompt.unwrap_or(0), completion.unwrap_or(0)))
    }
}

pub fn summarize(run: &Run, context: &Context<'_>) -> Summary {
    let n = run.outcomes.len();
    let share = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
    let correct = run.outcomes.iter().filter(|o| o.grade.correct).count();
    let strongest = context.strongest_tier().as_str();
    let mut by_tier: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_model: BTreeMap<String, usize> = BTreeMap::new();
    let mut calls_by_tier: BTreeMap<String, u64> = BTreeMap::new();
    let (mut prompt, mut completion, mut cost, mut reached) = (0, 0, 0.0, 0);
    for outcome in &run.outcomes {
        let reply = &outcome.reply;
        *by_tier.entry(reply.tier.clone().unwrap_or_else(|| "none".into())).or_default() += 1;
        *by_model.entry(reply.model.clone().unwrap_or_else(|| "none".into())).or_default() += 1;
        let mut reached_here = false;
        for step in reply.trail.iter().filter(|s| s.called()) {
            *calls_by_tier.entry(step.tier.clone()).or_default() += 1;
            reached_here |= step.tier == strongest;
            prompt += step.prompt_tokens.unwrap_or(0);
            completion += step.completion_tokens.unwrap_or(0);
            cost += context.cost(&step.model, step.prompt_tokens, step.completion_tokens);
            for call in &step.verify_calls {
                *calls_by_tier.entry(call.tier.clone()).or_default() += 1;
                prompt += call.prompt_tokens.unwrap_or(0);
                completion += call.completion_tokens.unwrap_or(0);
                cost += context.cost(&call.model, call.prompt_tokens, call.completion_tokens);
            }
        }
        reached += usize::from(reached_here);
    }
    let mut latencies: Vec<Duration> = run.outcomes.iter().map(|o| o.reply.latency).collect();
    latencies.sort_unstable();
    let calls: u64 = calls_by_tier.values().sum();
    Summary {
        name: run.strategy.name(),
        strategy: run.strategy.clone(),
        items: n,
        correct,
        accuracy: share(correct),
        accuracy_ci95: wilson(correct, n),
        failed: run.outcomes.iter().filter(|o| o.reply.answer.is_none()).count(),
        grader_errors: run.outcomes.iter().filter(|o| o.grade.error.is_some()).count(),
        answered_by_tier: by_tier.into_iter().map(|(k, v)| (k, share(v))).collect(),
        answered_by_model: by_model.into_iter().map(|(k, v)| (k, share(v))).collect(),
        calls_per_request: if n == 0 { 0.0 } else { calls as f64 / n as f64 },
        calls_by_tier,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_usd: cost,
        cost_per_1k_requests_usd: if n == 0 { 0.0 } else { cost * 1000.0 / n as f64 },
        latency_p50_ms: percentile_ms(&latencies, 0.50),
        latency_p95_ms: percentile_ms(&latencies, 0.95),
        reached_strongest_tier: share(reached),
        chain: matches!(run.strategy, Strategy::Chain { .. }).then(|| chain_stats(run, context)),
    }
}

fn chain_stats(run: &Run, context: &Context<'_>) -> ChainStats {
    let n = run.outcomes.len();
    let mut confusion = Confusion::default();
    let (mut escalated, mut accepted, mut accepted_wrong, mut verify_calls) = (0, 0, 0, 0);
    for (item, outcome) in run.outcomes.iter().enumerate() {
        let called: Vec<_> = outcome.reply.trail.iter().filter(|s| s.called()).collect();
        escalated += usize::from(called.len() > 1);
        verify_calls += called.iter().map(|s| s.verify_calls.len() as u64).sum::<u64>();
        if let Some(answering) = called.iter().find(|s| s.verdict.as_deref() == Some("accept")) {
            if answering.verify_ms.is_some() {
                accepted += 1;
                accepted_wrong += usize::from(!outcome.grade.correct);
            }
        }
        let Some(first) = called.first() else { continue };
        let right = context.alone.get(&first.model).map(|alone| alone.outcomes[item].grade.correct);
        match (first.verify_ms.is_some(), first.verdict.as_deref(), right) {
            (false, _, _) => confusion.not_verified += 1,
            (true, Some("accept"), Some(true)) => confusion.accepted_right += 1,
            (true, Some("accept"), Some(false)) => confusion.accepted_wrong += 1,
            (true, Some("escalate"), Some(true)) => confusion.rejected_right += 1,
            (true, Some("escalate"), Some(false)) => confusion.rejected_wrong += 1,
            _ => {}
        }
    }
    ChainStats {
        escalation_rate: if n == 0 { 0.0 } else { escalated as f64 / n as f64 },
        confusion,
        accepted_wrong_share: (accepted > 0).then(|| accepted_wrong as f64 / accepted as f64),
        quality_gap_recovered: None,
        verify_calls,
    }
}

/// Fills in each chain's share of the quality gap, once every strategy is summarized.
pub fn gap_recovered(summaries: &mut [Summary]) {
    let alone = summaries.iter().filter(|s| matches!(s.strategy, Strategy::Alone { .. }));
    let accuracies: Vec<f64> = alone.map(|s| s.accuracy).collect();
    let weakest = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
    let strongest = accuracies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for summary in summaries.iter_mut() {
        let accuracy = summary.accuracy;
        if let Some(chain) = &mut summary.chain {
            chain.quality_gap_recovered = (strongest > weakest).then(|| (accuracy - weakest) / (strongest - weakest));
        }
    }
}

/// The Wilson score interval for `k` of `n` at 95 %.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = Z95 * Z95;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    // At 0 and n the bounds are exactly 0 and 1; floating point would miss by an ulp.
    let low = if k == 0 { 0.0 } else { (center - half).max(0.0) };
    let high = if p == 1.0 { 1.0 } else { (center + half).min(1.0) };
    [low, high]
}

/// Nearest-rank percentile of sorted durations, in ms.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 9/20: 0.2582–0.6579 (Newcombe 1998's method 3, recomputed).
        let [lo, hi] = wilson(9, 20);
        assert!((lo - 0.2582).abs() < 1e-4 && (hi - 0.6579).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0), [0.0, 1.0]);
        let [lo, hi] = wilson(10, 10);
        assert!((lo - 0.7225).abs() < 1e-4 && hi == 1.0, "{lo} {hi}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&ms, 0.5), 10.0);
        assert_eq!(percentile_ms(&ms, 0.95), 19.0);
        assert_eq!(percentile_ms(&ms[..1], 0.95), 1.0);
    }
}
