//! Every Prometheus metric tierwise exports, with one typed function per event. Label
//! values come from config names and fixed enums only — never from request text.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::escalate::{Event, Trail};
use crate::policy::SkipReason;

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
    ("tierwise_upstream_up", "gauge", &["upstream"]),
    ("tierwise_model_load_seconds", "gauge", &["model"]),
    ("tierwise_cost_usd_total", "counter", &["tier", "model"]),
    ("tierwise_cost_avoided_usd_total", "counter", &["task"]),
    ("tierwise_audit_lost_total", "counter", &[]),
];

/// Seconds; LLM calls range from milliseconds to minutes.
const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Clone)]
pub struct Metrics {
    /// Owns every metric below; `/metrics` encodes it.
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    attempts: IntCounterVec,
    skips: IntCounterVec,
    privacy_blocked: IntCounterVec,
    in_flight: IntGauge,
    audit_lost: IntCounter,
}

/// How a request ended, as a metric label.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Answered,
    Refused,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
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

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("tierwise_requests_total", "Chat completion requests by task, answering tier and outcome"),
            &["task", "tier", "outcome"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tierwise_request_duration_seconds",
                "Time until the answer started, by task and answering tier",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["task", "tier"],
        )?;
        let attempts = IntCounterVec::new(
            Opts::new("tierwise_attempts_total", "Upstream calls by task, tier, model alias and verdict"),
            &["task", "tier", "model", "verdict"],
        )?;
        let skips = IntCounterVec::new(
            Opts::new("tierwise_skips_total", "Steps skipped without a call, by task, tier and reason"),
            &["task", "tier", "reason"],
        )?;
        let privacy_blocked = IntCounterVec::new(
            Opts::new("tierwise_privacy_blocked_total", "Requests refused by the tier policy, by task and reason"),
            &["task", "reason"],
        )?;
        let in_flight = IntGauge::new("tierwise_in_flight_requests", "Chat completion requests being handled")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(skips.clone()))?;
        let audit_lost =
            IntCounter::new("tierwise_audit_lost_total", "Audit records that could not be queued or written")?;
        registry.register(Box::new(privacy_blocked.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(audit_lost.clone()))?;
        Ok(Metrics { registry, requests, request_duration, attempts, skips, privacy_blocked, in_flight, audit_lost })
    }

    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A request's walk ended: its trail, the tier that answered (if any), how long.
    pub fn request_finished(&self, task: &str, trail: &Trail, tier: Option<&str>, outcome: Outcome, took: Duration) {
        let tier = tier.unwrap_or("none");
        self.requests.with_label_values(&[task, tier, outcome.as_str()]).inc();
        self.request_duration.with_label_values(&[task, tier]).observe(took.as_secs_f64());
        for event in &trail.events {
            match event {
                Event::Attempt(a) => {
                    self.attempts.with_label_values(&[task, a.tier.as_str(), &a.model, a.verdict.as_str()]).inc();
                }
                Event::Skip(s) => {
                    let reason = s.why.reason();
                    self.skips.with_label_values(&[task, s.tier.as_str(), reason.as_str()]).inc();
                    if reason == SkipReason::Privacy {
                        self.privacy_blocked.with_label_values(&[task, reason.as_str()]).inc();
                    }
                }
            }
        }
    }

    /// The policy refused the request before any step (`tier_too_low`, `privacy_blocked`).
    pub fn request_refused(&self, task: &str, code: &'static str) {
        self.requests.with_label_values(&[task, "none", "refused"]).inc();
        self.privacy_blocked.with_label_values(&[task, code]).inc();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escalate::Verdict;
    use crate::policy::{Step, Tier, Why};

    #[test]
    fn a_finished_request_emits_its_labels() {
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
        metrics.request_finished("chat", &trail, Some("local"), Outcome::Answered, Duration::from_millis(6));
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(text.contains(r#"tierwise_requests_total{outcome="answered",task="chat",tier="local"} 1"#), "{text}");
        assert!(text.contains(r#"tierwise_attempts_total{model="small",task="chat",tier="local",verdict="accept"} 1"#));
        assert!(text.contains(r#"tierwise_skips_total{reason="not_available",task="chat",tier="cloud"} 1"#));
    }
}
