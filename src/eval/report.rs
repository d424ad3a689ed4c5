//! The report: every strategy's summary, the chain's verifier, the cost/quality curve
//! and the cheapest setting that reaches the target — as JSON and as Markdown.

use std::fmt::Write as _;

use serde::Serialize;

use super::stats::Summary;
use super::strategy::Strategy;
use crate::config::Price;
use crate::policy::Tier;

/// What a report is made from.
pub struct Facts {
    pub task: String,
    pub dataset: String,
    pub dataset_items: usize,
    pub items: usize,
    pub seed: u64,
    pub concurrency: u16,
    pub command: String,
    pub chain: Vec<(String, Tier, Option<Price>)>,
    pub summaries: Vec<Summary>,
    pub target: f64,
    pub calls_from_cache: u64,
    pub calls_live: u64,
    pub cache: Option<String>,
    pub started_unix: u64,
    pub took_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tierwise_version: &'static str,
    pub task: String,
    pub dataset: String,
    /// Items in the file, and how many were run.
    pub dataset_items: usize,
    pub items: usize,
    pub seed: u64,
    pub concurrency: u16,
    pub command: String,
    pub chain: Vec<ChainModel>,
    pub strategies: Vec<Summary>,
    pub curve: Curve,
    pub target: Target,
    /// Upstream answers taken from the cache, and live ones kept in it.
    pub calls_from_cache: u64,
    pub calls_live: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    pub started_unix: u64,
    pub took_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ChainModel {
    pub model: String,
    pub tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_usd_per_mtok: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_usd_per_mtok: Option<f64>,
}

/// Accuracy against cost: USD per 1000 requests when any chain model has a price, else
/// the share of requests that reached the strongest tier.
#[derive(Debug, Serialize)]
pub struct Curve {
    pub x: &'static str,
    pub points: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub strategy: String,
    pub kind: &'static str,
    pub x: f64,
    pub accuracy: f64,
}

#[derive(Debug, Serialize)]
pub struct Target {
    /// The share of the best alone accuracy asked for (`--target`).
    pub share: f64,
    pub best_alone: Option<String>,
    pub accuracy_needed: f64,
    /// The cheapest chain setting that reaches it.
    pub cheapest: Option<String>,
}

const COST: &str = "cost_per_1k_requests_usd";
const STRONGEST_SHARE: &str = "reached_strongest_tier";

impl Report {
    pub fn new(facts: Facts) -> Report {
        let priced = facts.chain.iter().any(|(_, _, price)| price.is_some_and(|p| p.is_paid()));
        let x_of = |s: &Summary| if priced { s.cost_per_1k_requests_usd } else { s.reached_strongest_tier };
        let points = facts
            .summaries
            .iter()
            .map(|s| Point {
                strategy: s.name.clone(),
                kind: match s.strategy {
                    Strategy::Alone { .. } => "alone",
                    Strategy::Chain { .. } => "chain",
                    Strategy::Random { .. } => "random",
                },
                x: x_of(s),
                accuracy: s.accuracy,
            })
            .collect();
        let alone = facts.summaries.iter().filter(|s| matches!(s.strategy, Strategy::Alone { .. }));
        let best = alone.max_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
        let needed = best.map_or(0.0, |b| b.accuracy * facts.target);
        // With no model right even once there is nothing to reach.
        let cheapest = facts
            .summaries
            .iter()
            .filter(|_| needed > 0.0)
            .filter(|s| matches!(s.strategy, Strategy::Chain { .. }) && s.accuracy >= needed - 1e-12)
            .min_by(|a, b| x_of(a).total_cmp(&x_of(b)).then(b.accuracy.total_cmp(&a.accuracy)))
            .map(|s| s.name.clone());
        Report {
            tierwise_version: env!("CARGO_PKG_VERSION"),
            task: facts.task,
            dataset: facts.dataset,
            dataset_items: facts.dataset_items,
            items: facts.items,
            seed: facts.seed,
            concurrency: facts.concurrency,
            command: facts.command,
            chain: facts
                .chain
                .into_iter()
                .map(|(model, tier, price)| ChainModel {
                    model,
                    tier,
                    input_usd_per_mtok: price.map(|p| p.input_usd_per_mtok),
                    output_usd_per_mtok: price.map(|p| p.output_usd_per_mtok),
                })
                .collect(),
            curve: Curve { x: if priced { COST } else { STRONGEST_SHARE }, points },
            target: Target {
                share: facts.target,
                best_alone: best.map(|b| b.name.clone()),
                accuracy_needed: needed,
                cheapest,
            },
            strategies: facts.summaries,
            calls_from_cache: facts.calls_from_cache,
            calls_live: facts.calls_live,
            cache: facts.cache,
            started_unix: facts.started_unix,
            took_s: facts.took_s,
        }
    }

    /// Whether the curve's x axis is money.
    pub fn priced(&self) -> bool {
        self.curve.x == COST
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# tierwise eval: task `{}`\n", self.task);
        let _ = writeln!(
            md,
            "{} of {} items of `{}` (seed {}), concurrency {}; tierwise {}; took {:.0} s.\n",
            self.items,
            self.dataset_items,
            self.dataset,
            self.seed,
            self.concurrency,
            self.tierwise_version,
            self.took_s
        );
        let chain: Vec<String> = self.chain.iter().map(describe_model).collect();
        let _ = writeln!(md, "Chain: {}.\n", chain.join(" → "));
        let _ = writeln!(md, "```\n{}\n```\n", self.command);
        self.strategies_table(&mut md);
        self.verifier_table(&mut md);
        self.curve_section(&mut md);
        let grader_errors: usize = self.strategies.iter().filter(|s| !is_random(s)).map(|s| s.grader_errors).sum();
        let failed: usize = self.strategies.iter().filter(|s| !is_random(s)).map(|s| s.failed).sum();
        let _ = writeln!(md, "## Calls\n");
        let _ = writeln!(
            md,
            "{} upstream answers came from the cache and {} were live calls{}. {} requests got no answer; {} answers could not be graded (both count as wrong; see items.jsonl).",
            self.calls_from_cache,
            self.calls_live,
            self.cache.as_deref().map(|c| format!(" (cache: `{c}`)")).unwrap_or_default(),
            failed,
            grader_errors
        );
        md
    }

    fn strategies_table(&self, md: &mut String) {
        let _ = writeln!(md, "## Strategies\n");
        let _ = writeln!(
            md,
            "| strategy | accuracy (95 % CI) | answered by tier | reached strongest tier | calls / request | tokens in / out | cost / 1k requests | p50 | p95 |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        for s in &self.strategies {
            let tiers: Vec<String> =
                s.answered_by_tier.iter().map(|(t, share)| format!("{t} {}", percent(*share))).collect();
            let _ = writeln!(
                md,
                "| {} | {} ({}–{}) | {} | {} | {:.2} | {} / {} | ${:.4} | {} | {} |",
                s.name,
                percent(s.accuracy),
                percent(s.accuracy_ci95[0]),
                percent(s.accuracy_ci95[1]),
                tiers.join(", "),
                percent(s.reached_strongest_tier),
                s.calls_per_request,
                s.prompt_tokens,
                s.completion_tokens,
                s.cost_per_1k_requests_usd,
                seconds(s.latency_p50_ms),
                seconds(s.latency_p95_ms)
            );
        }
        let _ = writeln!(
            md,
            "\nRandom routing sends each item to one chain model, in the shares the chain's requests ended at, and counts what that model said alone.\n"
        );
    }

    fn verifier_table(&self, md: &mut String) {
        let _ = writeln!(md, "## The chain's verifier\n");
        let _ = writeln!(
            md,
            "| chain | accepted right | accepted wrong | rejected right | rejected wrong | not verified | wrong among accepted | escalated | quality gap recovered | verifier calls |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for s in &self.strategies {
            let Some(c) = &s.chain else { continue };
            let m = c.confusion;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                m.accepted_right,
                m.accepted_wrong,
                m.rejected_right,
                m.rejected_wrong,
                m.not_verified,
                c.accepted_wrong_share.map_or("–".into(), percent),
                percent(c.escalation_rate),
                c.quality_gap_recovered.map_or("–".into(), percent),
                c.verify_calls
            );
        }
        let _ = writeln!(
            md,
            "\nThe matrix judges each item's first answer: the verifier's verdict on it, against whether the same model's answer to the same request (asked alone) was right. \"Wrong among accepted\" counts every verified answer the chain returned. The gap recovered is (chain − weakest alone) / (strongest alone − weakest alone), by accuracy.\n"
        );
    }

    fn curve_section(&self, md: &mut String) {
        let _ = writeln!(md, "## Cost and quality\n");
        let _ = writeln!(md, "![accuracy against {}](curve.svg)\n", self.x_label());
        let _ = writeln!(md, "| strategy | {} | accuracy |", self.x_label());
        let _ = writeln!(md, "|---|---|---|");
        let mut points: Vec<&Point> = self.curve.points.iter().collect();
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
        for p in points {
            let x = if self.priced() { format!("${:.4}", p.x) } else { percent(p.x) };
            let _ = writeln!(md, "| {} | {x} | {} |", p.strategy, percent(p.accuracy));
        }
        let target = &self.target;
        let best = target.best_alone.as_deref().unwrap_or("–");
        let verdict = match &target.cheapest {
            Some(name) => format!("the cheapest chain setting that reaches it is **{name}**"),
            None if target.accuracy_needed == 0.0 => {
                "no model alone answered any item right, so there is nothing to reach".into()
            }
            None => "no chain setting reaches it".into(),
        };
        let _ = writeln!(
            md,
            "\nTarget: {} of the best model alone ({best}), {} accuracy: {verdict}.\n",
            percent(target.share),
            percent(target.accuracy_needed)
        );
    }

    pub fn x_label(&self) -> &'static str {
        if self.priced() {
            "cost per 1000 requests (USD)"
        } else {
            "share of requests reaching the strongest tier"
        }
    }
}

fn is_random(s: &Summary) -> bool {
    matches!(s.strategy, Strategy::Random { .. })
}

fn describe_model(m: &ChainModel) -> String {
    match (m.input_usd_per_mtok, m.output_usd_per_mtok) {
        (Some(i), Some(o)) => format!("{} ({}, ${i}/${o} per Mtok)", m.model, m.tier.as_str()),
        _ => format!("{} ({})", m.model, m.tier.as_str()),
    }
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

fn seconds(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}
