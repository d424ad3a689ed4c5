//! Every Prometheus metric tierwise exports, with one typed function per event. Label
//! values come from config names and fixed enums only — never from request text.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Config;
use crate::escalate::{Event, Trail, Verdict};
use crate::policy::{SkipReason, Tier, Why};

/// Every metric family tierwise exports, with its type and labels. Dashboards and tests
/// check their queries against this list.
pub const EXPORTED: &[(&str, &str, &[&str])] = &[
    ("tierwise_requests_total", "counter", &["task", "tier", "outcome"]),
    ("tierwise_request_duration_seconds", "histogram", &["task", "tier"]),
    ("tierwise_attempts_total", "counter", &["task", "tier", "model", "verdict"]),
    ("tierwise_attempt_duration_seconds", "histogram", &["tier", "model"]),
    ("tierwise_skips_total", "counter", &["task", "tier", "reason"]),
    ("tierwise_escalations_total", "counter", &["task", "from_tier", "to_tier"]),
    ("tierwise_warm_starts_total", "counter", &["model", "warm"]),
    ("tierwise_verifier_duration_seconds", "histogram", &["task"]),
    ("tierwise_verifier_verdicts_total", "counter", &["task", "verdict"]),
    ("tierwise_tokens_total", "counter", &["tier", "model", "kind"]),
    ("tierwise_time_to_first_token_seconds", "histogram", &["tier", "model"]),
    ("tierwise_overhead_seconds", "histogram", &[]),
    ("tierwise_in_flight_requests", "gauge", &[]),
    ("tierwise_privacy_blocked_total", "counter", &["task", "reason"]),
    ("tierwise_local_output_guarded_total", "counter", &["task", "action"]),
    ("tierwise_upstream_up", "gauge", &["upstream"]),
    ("tierwise_model_load_seconds", "gauge", &["model"]),
    ("tierwise_cost_usd_total", "counter", &["tier", "model"]),
    ("tierwise_cost_avoided_usd_total", "counter", &["task"]),
    ("tierwise_audit_lost_total", "counter", &[]),
    ("tierwise_config_reloads_total", "counter", &["result"]),
    ("tierwise_rate_limited_total", "counter", &["profile", "limit"]),
    ("tierwise_shed_total", "counter", &["scope", "upstream"]),
    ("tierwise_upstream_in_flight", "gauge", &["upstream"]),
    ("tierwise_circuit_open", "gauge", &["upstream"]),
];

/// Seconds; LLM calls range from milliseconds to minutes.
const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// Seconds; tierwise's own time per request is microseconds.
const OVERHEAD_BUCKETS: &[f64] =
    &[0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1];

/// Seconds; deterministic checks are microseconds, a judge is seconds.
const VERIFIER_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone)]
pub struct Metrics {
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
    pub tier: Option<&'a str>,
    pub outcome: Outcome,
    /// Until the response (or, for a stream, its first byte) was ready.
    pub took: Duration,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let m = Metrics {
            registry: Registry::new(),
            requests: counter(
                "tierwise_requests_total",
                "Chat completion requests by task, answering tier and outcome",
                &["task", "tier", "outcome"],
            )?,
            request_duration: histogram(
                "tierwise_request_duration_seconds",
                "Time until the answer (a stream: its first byte), by task and answering tier",
                LATENCY_BUCKETS,
                &["task", "tier"],
            )?,
            attempts: counter(
                "tierwise_attempts_total",
                "Upstream calls by task, tier, model alias and verdict",
                &["task", "tier", "model", "verdict"],
            )?,
            attempt_duration: histogram(
                "tierwise_attempt_duration_seconds",
                "Duration of one upstream call (and its verification)",
                LATENCY_BUCKETS,
                &["tier", "model"],
            )?,
            skips: counter(
                "tierwise_skips_total",
                "Steps skipped without a call, by task, tier and reason",
                &["task", "tier", "reason"],
            )?,
            escalations: counter(
                "tierwise_escalations_total",
                "Moves from one attempt to the next after a rejection or failure",
                &["task", "from_tier", "to_tier"],
            )?,
            warm_starts: counter(
                "tierwise_warm_starts_total",
                "Attempts by whether the model was loaded (true, false, unknown)",
                &["model", "warm"],
            )?,
            verifier_duration: histogram(
                "tierwise_verifier_duration_seconds",
                "Time spent verifying one answer (checks and judge)",
                VERIFIER_BUCKETS,
                &["task"],
            )?,
            verifier_verdicts: counter(
                "tierwise_verifier_verdicts_total",
                "Verified answers by verdict (accept, escalate)",
                &["task", "verdict"],
            )?,
            tokens: counter(
                "tierwise_tokens_total",
                "Tokens by tier, model alias and kind (prompt, completion)",
                &["tier", "model", "kind"],
            )?,
            ttft: histogram(
                "tierwise_time_to_first_token_seconds",
                "Streams: time until the first event reached the client",
                LATENCY_BUCKETS,
                &["tier", "model"],
            )?,
            overhead: Histogram::with_opts(
                HistogramOpts::new(
                    "tierwise_overhead_seconds",
                    "Time spent in tierwise itself per request (not waiting on upstreams)",
                )
                .buckets(OVERHEAD_BUCKETS.to_vec()),
            )?,
            in_flight: IntGauge::new("tierwise_in_flight_requests", "Chat completion requests being handled")?,
            privacy_blocked: counter(
                "tierwise_privacy_blocked_total",
                "Requests refused or steps removed by the tier policy, by task and reason",
                &["task", "reason"],
            )?,
            local_output_guarded: counter(
                "tierwise_local_output_guarded_total",
                "Times personal data in what a model said was kept from a higher tier, by task and action \
                 (reclassified, feedback_redacted, judge_withheld)",
                &["task", "action"],
            )?,
            upstream_up: IntGaugeVec::new(
                Opts::new("tierwise_upstream_up", "Whether the upstream's warmth probe answers (1) or not (0)"),
                &["upstream"],
            )?,
            model_load: GaugeVec::new(
                Opts::new("tierwise_model_load_seconds", "Learned cold-start time of a model (seconds)"),
                &["model"],
            )?,
            cost: CounterVec::new(
                Opts::new("tierwise_cost_usd_total", "Spend at the configured model prices, USD"),
                &["tier", "model"],
            )?,
            cost_avoided: CounterVec::new(
                Opts::new(
                    "tierwise_cost_avoided_usd_total",
                    "What answers below cloud would have cost at the task's last priced cloud step, USD",
                ),
                &["task"],
            )?,
            audit_lost: IntCounter::new(
                "tierwise_audit_lost_total",
                "Audit records that could not be queued or written",
            )?,
            config_reloads: counter(
                "tierwise_config_reloads_total",
                "Config reloads by result (applied, rejected)",
                &["result"],
            )?,
            rate_limited: counter(
                "tierwise_rate_limited_total",
                "Requests refused with 429 by a client key's rate limit (requests or tokens per minute)",
                &["profile", "limit"],
            )?,
            shed: counter(
                "tierwise_shed_total",
                "Requests (scope server) or steps (scope upstream) shed by a concurrency limit",
                &["scope", "upstream"],
            )?,
            upstream_in_flight: IntGaugeVec::new(
                Opts::new("tierwise_upstream_in_flight", "Calls to the upstream in progress (streams until they end)"),
                &["upstream"],
            )?,
            circuit_open: IntGaugeVec::new(
                Opts::new("tierwise_circuit_open", "Whether the upstream's circuit breaker is open or probing (1)"),
                &["upstream"],
            )?,
            names: Vec::new(),
        };
        let mut m = m;
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.attempts.clone()),
            Box::new(m.attempt_duration.clone()),
            Box::new(m.skips.clone()),
            Box::new(m.escalations.clone()),
            Box::new(m.warm_starts.clone()),
            Box::new(m.verifier_duration.clone()),
            Box::new(m.verifier_verdicts.clone()),
            Box::new(m.tokens.clone()),
            Box::new(m.ttft.clone()),
            Box::new(m.overhead.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.privacy_blocked.clone()),
            Box::new(m.local_output_guarded.clone()),
            Box::new(m.upstream_up.clone()),
            Box::new(m.model_load.clone()),
            Box::new(m.cost.clone()),
            Box::new(m.cost_avoided.clone()),
            Box::new(m.audit_lost.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.rate_limited.clone()),
            Box::new(m.shed.clone()),
            Box::new(m.upstream_in_flight.clone()),
            Box::new(m.circuit_open.clone()),
        ];
        for collector in collectors {
            m.names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            m.registry.register(collector)?;
        }
        Ok(m)
    }

    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A request's walk ended: requests, attempts, skips, escalations, verifier,
    /// tokens, cost, overhead — all from its trail.
    pub fn request_finished(&self, config: &Config, finished: &Finished<'_>) {
        let Finished { task, trail, tier, outcome, took } = *finished;
        let answered_tier = tier.unwrap_or("none");
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
            if tier != "cloud" {
                self.cost_avoided(config, task, prompt, completion);
            }
        }
    }

    /// Tokens an upstream reported, and their cost at the model's configured price.
    pub fn tokens_used(&self, config: &Config, tier: Tier, model: &str, prompt: u64, completion: u64) {
        let tier = tier.as_str();
        self.tokens.with_label_values(&[tier, model, "prompt"]).inc_by(prompt);
        self.tokens.with_label_values(&[tier, model, "completion"]).inc_by(completion);
        if let Some(price) = config.models.get(model).and_then(|m| m.price) {
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
        );
        let finished = Finished {
            task: "chat",
            trail: &trail,
            tier: Some("local"),
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
