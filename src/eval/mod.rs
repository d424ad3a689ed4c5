//! `tierwise eval`: runs a dataset through the task's chain and through each of its
//! models alone, grades every answer, and reports what the chain buys — accuracy with
//! its interval, where answers came from, calls, tokens, cost, latency, the verifier's
//! confusion matrix and the share of the quality gap recovered — with random routing at
//! the chain's escalation rate as the baseline and, with `--sweep`, a cost/quality curve.
//!
//! Requests go through tierwise's own run loop (in process, or a running tierwise with
//! `--url`); upstream answers are cached on disk (`upstream::replay`) so a model is asked
//! each request once across strategies, sweeps and runs.

mod client;
mod command;
mod dataset;
mod grade;
mod plot;
mod progress;
mod report;
mod rng;
mod stats;
mod strategy;
mod sweep;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde::Serialize;

use crate::config::{self, Config};
use crate::upstream::Replay;
use client::{Client, Fatal, InProcess};
use dataset::{Dataset, Item};
use grade::{Grade, Grader};
use progress::Progress;
use stats::{Context, Summary};
use strategy::{Outcome, Run, Strategy};
use sweep::Sweep;

pub use report::Report;

/// What `tierwise eval` is asked to do.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The dataset: JSONL, one item per line with `messages` (and any other request
    /// fields), `expected` and `grader` (see docs/eval.md).
    #[arg(long)]
    pub dataset: PathBuf,
    /// The task whose chain is evaluated (its models are also asked alone).
    #[arg(long)]
    pub task: String,
    /// Run this many items, sampled with --seed.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seeds the sample of items and random routing.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Where report.md, report.json, curve.svg and items.jsonl go.
    #[arg(long, default_value = "tierwise-eval")]
    pub out: PathBuf,
    /// The cache of upstream answers (default: $XDG_CACHE_HOME/tierwise/eval, or
    /// ~/.cache/tierwise/eval).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Give cached answers at once, not after the live call's recorded time: fills the
    /// cache as fast as the models answer; the report's latencies then mean nothing.
    #[arg(long)]
    pub no_replay_delay: bool,
    /// A running tierwise to ask instead of one in this process (with the same config,
    /// and trail.in_body on; no cache, no --sweep).
    #[arg(long)]
    pub url: Option<String>,
    /// The client key sent as a bearer token, when the config has [[keys]].
    #[arg(long, env = "TIERWISE_EVAL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Vary one setting of the task: KEY=V1,V2,… (KEY under tasks.<task>, e.g.
    /// verify.judge=small,big); each value is a chain run of its own.
    #[arg(long)]
    pub sweep: Option<String>,
    /// The share of the best model's accuracy a setting must reach to be chosen.
    #[arg(long, default_value_t = 0.95)]
    pub target: f64,
}

/// Runs the evaluation and writes its report under `options.out`; returns the report.
pub async fn run(
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
    command_line: String,
) -> Result<Report, String> {
    let started = Instant::now();
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if !(options.target > 0.0 && options.target <= 1.0) {
        return Err("--target must be a share of the best accuracy, in (0, 1]".into());
    }
    let dataset = Dataset::load(&options.dataset)?;
    let items = dataset.pick(options.limit, options.seed);
    let base = config::load_with(config_path, env, None).map_err(|e| e.to_string())?;
    let chain = chain_of(&base, &options.task)?;
    let sweep = options.sweep.as_deref().map(Sweep::parse).transpose()?;
    let mut variants = vec![(None, base.clone())];
    if let Some(sweep) = &sweep {
        if options.url.is_some() {
            return Err("--sweep changes the config, which a running tierwise (--url) does not take: drop --url".into());
        }
        for value in &sweep.values {
            let overrides = sweep.overrides(&options.task, value);
            let config = config::load_with(config_path, env, Some(&overrides))
                .map_err(|e| format!("--sweep {}: {e}", sweep.label(value)))?;
            variants.push((Some(sweep.label(value)), config));
        }
    }
    if items.iter().any(|i| matches!(i.grader, Grader::Command { .. })) {
        command::sandbox_available().await.map_err(|e| format!("a command grader needs its sandbox: {e}"))?;
    }
    let cache = options.cache.clone().unwrap_or_else(|| default_cache(env));
    let replay = Replay::new(cache.clone()).map_err(|e| format!("cannot use the cache {}: {e}", cache.display()))?;
    let replay = Arc::new(replay.instant(options.no_replay_delay));

    let asker = Asker { items: &items, dataset_dir: &dataset.dir, concurrency: usize::from(options.concurrency) };
    let mut runs = Vec::new();
    for (setting, config) in variants {
        let server = match &options.url {
            Some(_) => None,
            None => Some(InProcess::start(config, replay.clone()).await?),
        };
        let base_url = options.url.clone().or_else(|| server.as_ref().map(|s| s.base.clone())).unwrap_or_default();
        let client = Client::new(&base_url, options.api_key.clone())?;
        // The chain before its models alone: an answer the chain's verifier asked with
        // logprobs also serves the same request without (see upstream::replay).
        let alone = setting.is_none();
        let mut asked = vec![(Strategy::Chain { setting }, options.task.clone())];
        if alone {
            asked.extend(chain.iter().map(|model| (Strategy::Alone { model: model.clone() }, model.clone())));
        }
        let mut result = Ok(());
        for (strategy, model) in asked {
            match asker.run(&client, strategy, &model).await {
                Ok(run) => runs.push(run),
                Err(Fatal(message)) => {
                    result = Err(message);
                    break;
                }
            }
        }
        if let Some(server) = server {
            server.stop().await;
        }
        result?;
    }

    let alone: HashMap<String, &Run> = runs
        .iter()
        .filter_map(|r| match &r.strategy {
            Strategy::Alone { model } => Some((model.clone(), r)),
            _ => None,
        })
        .collect();
    let random: Vec<Run> = runs
        .iter()
        .filter(|r| matches!(r.strategy, Strategy::Chain { .. }))
        .filter_map(|r| strategy::random_like(r, &alone, &chain, options.seed))
        .collect();
    let context = Context { config: &base, chain: &chain, alone };
    let mut summaries: Vec<Summary> = runs.iter().chain(&random).map(|r| stats::summarize(r, &context)).collect();
    // The report reads: each model alone, the chains, random routing.
    summaries.sort_by_key(|s| match s.strategy {
        Strategy::Alone { .. } => 0,
        Strategy::Chain { .. } => 1,
        Strategy::Random { .. } => 2,
    });
    stats::gap_recovered(&mut summaries);
    let (from_cache, kept) = replay.counts();
    let report = Report::new(report::Facts {
        task: options.task.clone(),
        dataset: dataset.path.display().to_string(),
        dataset_items: dataset.items.len(),
        items: items.len(),
        seed: options.seed,
        concurrency: options.concurrency,
        command: command_line,
        chain: chain
            .iter()
            .map(|m| (m.clone(), context.tier_of(m), base.models.get(m).and_then(|m| m.price)))
            .collect(),
        summaries,
        target: options.target,
        calls_from_cache: from_cache,
        calls_live: kept,
        cache: options.url.is_none().then(|| cache.display().to_string()),
        started_unix,
        took_s: started.elapsed().as_secs_f64(),
    });
    write_out(&options.out, &report, &items, runs.iter().chain(&random))?;
    if let Some(dead) = runs.iter().find(|r| r.outcomes.iter().all(|o| o.reply.answer.is_none())) {
        let why = dead.outcomes.iter().find_map(|o| o.reply.error.as_deref()).unwrap_or("no answer");
        return Err(format!(
            "every request of \"{}\" failed (the report under {} says more); the first: {why}",
            dead.strategy.name(),
            options.out.display()
        ));
    }
    Ok(report)
}

/// The task's chain; a model that shares a task's name cannot be asked alone.
fn chain_of(config: &Config, task: &str) -> Result<Vec<String>, String> {
    let Some(task_config) = config.tasks.get(task) else {
        let known: Vec<&str> = config.tasks.keys().map(String::as_str).collect();
        return Err(format!("unknown task \"{task}\" (--task); tasks in the config: {}", known.join(", ")));
    };
    let mut chain: Vec<String> = Vec::new();
    for model in &task_config.chain {
        if config.tasks.contains_key(model) {
            return Err(format!("model \"{model}\" has a task's name, so eval cannot ask it alone: rename one"));
        }
        if !chain.contains(model) {
            chain.push(model.clone());
        }
    }
    Ok(chain)
}

fn default_cache(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tierwise").join("eval")
}

/// Sends every item under one strategy.
struct Asker<'a> {
    items: &'a [Item],
    dataset_dir: &'a Path,
    concurrency: usize,
}

impl Asker<'_> {
    async fn run(&self, client: &Client, strategy: Strategy, model: &str) -> Result<Run, Fatal> {
        let mut progress = Progress::start(strategy.name(), self.items.len());
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.items.len()];
        let asks = self.items.iter().enumerate().map(|(index, item)| async move {
            let reply = client.ask(model, item).await?;
            let grade = match &reply.answer {
                None => Grade::default(),
                Some(answer) => self.grade(item, answer).await,
            };
            Ok::<_, Fatal>((index, Outcome { reply, grade }))
        });
        let mut answers = futures_util::stream::iter(asks).buffer_unordered(self.concurrency);
        while let Some(answer) = answers.next().await {
            let (index, outcome) = answer?;
            progress.tick(outcome.grade.correct);
            outcomes[index] = Some(outcome);
        }
        progress.finish();
        Ok(Run { strategy, outcomes: outcomes.into_iter().map(Option::unwrap_or_default).collect() })
    }

    async fn grade(&self, item: &Item, answer: &str) -> Grade {
        match &item.grader {
            Grader::Command { argv, timeout_ms } => {
                let timeout = std::time::Duration::from_millis(*timeout_ms);
                command::grade(argv, timeout, answer, &item.raw, self.dataset_dir).await
            }
            grader => grader.grade(answer, &item.expected),
        }
    }
}

/// report.md, report.json, curve.svg, and items.jsonl (every answer and its grade).
fn write_out<'a>(
    out: &Path,
    report: &Report,
    items: &[Item],
    runs: impl Iterator<Item = &'a Run>,
) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot write {what} under {}: {e}", out.display());
    std::fs::create_dir_all(out).map_err(|e| fail("the report", e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(out.join("report.json"), json + "\n").map_err(|e| fail("report.json", e))?;
    std::fs::write(out.join("report.md"), report.markdown()).map_err(|e| fail("report.md", e))?;
    std::fs::write(out.join("curve.svg"), plot::curve(report)?).map_err(|e| fail("curve.svg", e))?;
    let mut lines = String::new();
    for run in runs {
        for (item, outcome) in items.iter().zip(&run.outcomes) {
            lines.push_str(&item_line(&run.strategy.name(), item, outcome).to_string());
            lines.push('\n');
        }
    }
    std::fs::write(out.join("items.jsonl"), lines).map_err(|e| fail("items.jsonl", e))
}

#[derive(Serialize)]
struct ItemLine<'a> {
    strategy: &'a str,
    id: &'a str,
    correct: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    extracted: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grader_error: Option<&'a str>,
    status: u16,
    tier: Option<&'a str>,
    model: Option<&'a str>,
    calls: usize,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    answer: Option<&'a str>,
}

fn item_line(strategy: &str, item: &Item, outcome: &Outcome) -> serde_json::Value {
    let reply = &outcome.reply;
    let line = ItemLine {
        strategy,
        id: &item.id,
        correct: outcome.grade.correct,
        extracted: outcome.grade.extracted.as_deref(),
        grader_error: outcome.grade.error.as_deref(),
        status: reply.status,
        tier: reply.tier.as_deref(),
        model: reply.model.as_deref(),
        calls: reply.trail.iter().filter(|s| s.called()).count(),
        latency_ms: (reply.latency.as_secs_f64() * 1e4).round() / 10.0,
        error: reply.error.as_deref(),
        answer: reply.answer.as_deref(),
    };
    serde_json::to_value(line).unwrap_or_default()
}
