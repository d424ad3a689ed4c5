//! Every Prometheus metric tierwise exports, with one typed function per event. Label
//! values come from config names and fixed enums only — never from request text. The
//! families themselves (names, types, labels, buckets) are in `families`.

mod cache;
mod families;

use std::time::Duration;

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

use crate::config::Config;
use crate::escalate::{Event, Trail, Verdict};
use crate::policy::{SkipReason, Tier, Why};

pub use families::EXPORTED;

/// Every family, behind one `Arc`: the app state (and with it the metrics) is cloned
/// several times per request, and cloning some forty families' own `Arc`s and the names
/// was 15 % of a request's instructions.
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<Families>);

impl std::ops::Deref for Metrics {
    type Target = Families;

    fn deref(&self) -> &Families {
        &self.0
    }
}

pub struct Families {
    /// Owns every metric below; `/metrics` encodes it.
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    skips: IntCounterVec,
    escalations: IntCounterVec,
    warm_starts: IntCounterVec,
    verifier_duration: HistogramVec,
    verifier_verdicts: IntCounterVec,
    verifier_scores: HistogramVec,
    verifier_results: IntCounterVec,
    tokens: IntCounterVec,
    ttft: HistogramVec,
    overhead: Histogram,
    in_flight: IntGauge,
    privacy_blocked: IntCounterVec,
    local_output_guarded: IntCounterVec,
    upstream_up: IntGaugeVec,
    model_load: GaugeVec,
    cost: CounterVec,
    cost_avoided: CounterVec,
    audit_lost: IntCounter,
    config_reloads: IntCounterVec,
    rate_limited: IntCounterVec,
    shed: IntCounterVec,
    upstream_in_flight: IntGaugeVec,
    circuit_open: IntGaugeVec,
    state_up: IntGauge,
    state_errors: IntCounterVec,
    state_fallbacks: IntCounterVec,
    spend: CounterVec,
    trace_spans_dropped: IntCounter,
    budget_remaining: GaugeVec,
    cache_lookups: IntCounterVec,
    cache_evictions: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_cost_avoided: CounterVec,
    cache_errors: IntCounterVec,
    /// Every family's name, as registered.
    names: Vec<String>,
}

/// How a request ended, as a metric label and in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A step (or the rules reply) answered.
    Answered,
    /// tierwise or an upstream refused the request itself (a 4xx).
    Refused,
    /// Nothing answered.
    Failed,
    /// The client left before its response was complete.
    Abandoned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Decrements `in_flight_requests` when dropped, however the request ends.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A finished request, as the metrics see it.
pub struct Finished<'a> {
    pub task: &'a str,
    pub trail: &'a Trail,
    /// The tier that answered, if any.
    pub tier: Option<Tier>,
    pub outcome: Outcome,
    /// Until the response (or, for a stream, its first byte) was ready.
    pub took: Duration,
}
impl Metrics {
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A request's walk ended: requests, attempts, skips, escalations, verifier,
    /// tokens, cost, overhead — all from its trail.
    pub fn request_finished(&self, config: &Config, finished: &Finished<'_>) {
        let Finished { task, trail, tier, outcome, took } = *finished;
        let hit = trail.cache.as_ref().is_some_and(|c| c.result == crate::escalate::CacheResult::Hit);
        let answered_tier = if hit { "cache" } else { tier.unwrap_or(Tier::None).as_str() };
        self.requests.with_label_values(&[task, answered_tier, outcome.as_str()]).inc();
        self.request_duration.with_label_values(&[task, answered_tier]).observe(took.as_secs_f64());
        let mut upstream_time = Duration::ZERO;
        let mut previous: Option<(Tier, Verdict)> = None;
        let mut answer_tokens = None;
        for event in &trail.events {
            match event {
                Event::Attempt(a) => {
                    let tier = a.tier.as_str();
                    self.attempts.with_label_values(&[task, tier, &a.model, a.verdict.as_str()]).inc();
                    if a.tier != Tier::None {
                        self.attempt_duration.with_label_values(&[tier, &a.model]).observe(a.duration.as_secs_f64());
                        let warm = a.warm_start.map_or("unknown", |w| if w { "true" } else { "false" });
                        self.warm_starts.with_label_values(&[&a.model, warm]).inc();
                        upstream_time += a.duration.saturating_sub(a.verify_time.unwrap_or_default());
                    }
                    if let Some(verify) = a.verify_time {
                        self.verifier_duration.with_label_values(&[task]).observe(verify.as_secs_f64());
                        let verdict = if a.verdict == Verdict::Accept { "accept" } else { "escalate" };
                        self.verifier_verdicts.with_label_values(&[task, verdict]).inc();
                    }
                    if let Some(usage) = a.tokens {
                        self.tokens_used(config, a.tier, &a.model, usage.prompt, usage.completion);
                        if a.verdict == Verdict::Accept {
                            answer_tokens = Some((usage.prompt, usage.completion));
                        }
                    }
                    if let Some((from, verdict)) = previous {
                        if verdict != Verdict::Accept {
                            self.escalations.with_label_values(&[task, from.as_str(), tier]).inc();
                        }
                    }
                    previous = Some((a.tier, a.verdict));
                    for scored in &a.scores {
                        let verifier = scored.scorer.as_str();
                        if let Some(score) = scored.score {
                            self.verifier_scores.with_label_values(&[task, verifier]).observe(score);
                        }
                        self.verifier_results.with_label_values(&[task, verifier, scored.result()]).inc();
                    }
                    for call in &a.verify_calls {
                        if let Some(usage) = call.tokens {
                            self.tokens_used(config, call.tier, &call.model, usage.prompt, usage.completion);
                        }
                    }
                    for guarded in &a.guarded {
                        self.local_output_guarded.with_label_values(&[task, guarded.action()]).inc();
                    }
                }
                Event::Skip(s) => {
                    let reason = s.why.reason();
                    self.skips.with_label_values(&[task, s.tier.as_str(), reason.as_str()]).inc();
                    if let Why::Busy { upstream, .. } = &s.why {
                        self.shed(Some(upstream));
                    }
                    if reason == SkipReason::Privacy {
                        self.privacy_blocked.with_label_values(&[task, reason.as_str()]).inc();
                    }
                }
            }
        }
        self.overhead.observe(took.saturating_sub(upstream_time).as_secs_f64());
        if let (Some((prompt, completion)), Some(tier)) = (answer_tokens, tier) {
            if tier != Tier::Cloud {
                self.cost_avoided(config, task, prompt, completion);
            }
        }
    }

    /// Tokens an upstream reported, and their cost at the model's configured price.
    pub fn tokens_used(&self, config: &Config, tier: Tier, model: &str, prompt: u64, completion: u64) {
        let tier = tier.as_str();
        self.tokens.with_label_values(&[tier, model, "prompt"]).inc_by(prompt);
        self.tokens.with_label_values(&[tier, model, "completion"]).inc_by(completion);
        if let Some(price) = config.price_of(model) {
            self.cost.with_label_values(&[tier, model]).inc_by(price.cost(prompt, completion));
        }
    }

    /// An answer below cloud: what the task's last priced cloud step would have charged.
    pub fn cost_avoided(&self, config: &Config, task: &str, prompt: u64, completion: u64) {
        let Some(chain) = config.tasks.get(task).map(|t| &t.chain) else { return };
        let cloud_price = chain.iter().rev().find_map(|alias| {
            let model = config.models.get(alias)?;
            let upstream = config.upstream_of(model)?;
            (upstream.tier == Tier::Cloud).then_some(model.price).flatten()
        });
        if let Some(price) = cloud_price {
            self.cost_avoided.with_label_values(&[task]).inc_by(price.cost(prompt, completion));
        }
    }

    /// A stream's first event reached the client `after` the request arrived.
    pub fn first_token(&self, tier: Tier, model: &str, after: Duration) {
        self.ttft.with_label_values(&[tier.as_str(), model]).observe(after.as_secs_f64());
    }

    /// The policy refused the request before any step (`tier_too_low`, `privacy_blocked`).
    pub fn request_refused(&self, task: &str, code: &'static str) {
        self.requests.with_label_values(&[task, "none", "refused"]).inc();
        self.privacy_blocked.with_label_values(&[task, code]).inc();
    }

    /// The warmth probe of `upstream` answers, or not.
    pub fn upstream_up(&self, upstream: &str, up: bool) {
        self.upstream_up.with_label_values(&[upstream]).set(i64::from(up));
    }

    /// The learned cold-start time of `model`.
    pub fn model_load(&self, model: &str, seconds: f64) {
        self.model_load.with_label_values(&[model]).set(seconds);
    }

    /// A config reload was `applied` or `rejected`.
    pub fn config_reload(&self, result: &'static str) {
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// A client key's rate limit refused a request.
    pub fn rate_limited(&self, profile: &str, limit: &'static str) {
        self.rate_limited.with_label_values(&[profile, limit]).inc();
    }

    /// Whether the state backend answers now.
    pub fn state_up(&self, up: bool) {
        self.state_up.set(i64::from(up));
    }

    /// A Redis command failed or timed out.
    pub fn state_error(&self, operation: &'static str) {
        self.state_errors.with_label_values(&[operation]).inc();
    }

    /// A request under a budget spent `usd`.
    pub fn spend(&self, scope: &str, name: &str, usd: f64) {
        self.spend.with_label_values(&[scope, name]).inc_by(usd);
    }

    /// What is left of a budget in its period.
    pub fn budget_left(&self, scope: &str, name: &str, period: &str, usd: f64) {
        self.budget_remaining.with_label_values(&[scope, name, period]).set(usd);
    }

    /// A request was decided without Redis, by `state.on_error`.
    pub fn state_fallback(&self, on_error: &'static str) {
        self.state_fallbacks.with_label_values(&[on_error]).inc();
    }

    /// `server.max_concurrent_requests` shed a request (`upstream: None`), or an
    /// upstream's `max_concurrent` shed a step.
    pub fn shed(&self, upstream: Option<&str>) {
        match upstream {
            None => self.shed.with_label_values(&["server", ""]).inc(),
            Some(name) => self.shed.with_label_values(&["upstream", name]).inc(),
        }
    }

    /// The upstreams' state as of now, set just before a scrape: calls in flight and
    /// whether each circuit is open. Upstreams a reload removed disappear.
    pub fn observe_upstreams(&self, upstreams: &crate::upstream::Upstreams) {
        self.upstream_in_flight.reset();
        self.circuit_open.reset();
        for upstream in upstreams.iter() {
            let name = upstream.name();
            self.upstream_in_flight.with_label_values(&[name]).set(upstream.in_flight() as i64);
            self.circuit_open.with_label_values(&[name]).set(i64::from(upstream.circuit_open()));
        }
    }

    /// Brings `tierwise_trace_spans_dropped_total` up to the exporter's own count.
    pub fn trace_spans_dropped(&self, total: u64) {
        let seen = self.trace_spans_dropped.get();
        if total > seen {
            self.trace_spans_dropped.inc_by(total - seen);
        }
    }

    /// Brings `tierwise_audit_lost_total` up to the audit log's own count.
    pub fn audit_lost(&self, total: u64) {
        let seen = self.audit_lost.get();
        if total > seen {
            self.audit_lost.inc_by(total - seen);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding to a Vec only fails on a malformed metric, which `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// The names of every registered family, sorted (tests check them against
    /// [`EXPORTED`]).
    pub fn registered(&self) -> Vec<String> {
        let mut names = self.names.clone();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalate::Verdict;
    use crate::policy::{Step, Tier, Why};

    #[test]
    fn every_exported_family_is_registered() {
        let metrics = Metrics::new().unwrap();
        let mut exported: Vec<String> = EXPORTED.iter().map(|(name, _, _)| name.to_string()).collect();
        exported.sort();
        assert_eq!(metrics.registered(), exported);
    }

    #[test]
    fn a_finished_request_emits_its_labels() {
        let config = crate::config::load_from_str(
            "[upstreams.l]\ntier = \"local\"\nbase_url = \"http://x/v1\"\n[upstreams.c]\ntier = \"cloud\"\nbase_url = \"http://y/v1\"\n\
             [models.small]\nupstream = \"l\"\n[models.gpt]\nupstream = \"c\"\nprice = { input_usd_per_mtok = 2.0, output_usd_per_mtok = 8.0 }\n\
             [tasks.chat]\nchain = [\"small\", \"gpt\"]\n",
            &|_| None,
        )
        .unwrap();
        let metrics = Metrics::new().unwrap();
        let step = |tier, model: &str| Step {
            index: 0,
            model: model.into(),
            upstream_model: model.into(),
            upstream: "u".into(),
            tier,
        };
        let mut trail = Trail::default();
        trail.skip(&step(Tier::Cloud, "gpt"), Why::MissingKey { env: "K".into(), upstream: "u".into() });
        trail.attempt(&step(Tier::Local, "small"), Duration::from_millis(5), Verdict::Accept, None);
        trail.verified(
            Duration::from_micros(40),
            Some(crate::upstream::usage::Usage { prompt: 1_000_000, completion: 500_000 }),
            Vec::new(),
            Vec::new(),
        );
        let finished = Finished {
            task: "chat",
            trail: &trail,
            tier: Some(Tier::Local),
            outcome: Outcome::Answered,
            took: Duration::from_millis(6),
        };
        metrics.request_finished(&config, &finished);
        let text = String::from_utf8(metrics.encode()).unwrap();
        for line in [
            r#"tierwise_requests_total{outcome="answered",task="chat",tier="local"} 1"#,
            r#"tierwise_attempts_total{model="small",task="chat",tier="local",verdict="accept"} 1"#,
            r#"tierwise_skips_total{reason="not_available",task="chat",tier="cloud"} 1"#,
            r#"tierwise_tokens_total{kind="prompt",model="small",tier="local"} 1000000"#,
            r#"tierwise_verifier_verdicts_total{task="chat",verdict="accept"} 1"#,
            r#"tierwise_warm_starts_total{model="small",warm="unknown"} 1"#,
            // 1M prompt tokens at 2 USD + 0.5M completion tokens at 8 USD, had gpt answered.
            r#"tierwise_cost_avoided_usd_total{task="chat"} 6"#,
            "tierwise_overhead_seconds_count 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
