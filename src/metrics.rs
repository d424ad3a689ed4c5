//! Every Prometheus metric tierwise exports, with one typed function per event. Label
//! values come from config names and fixed enums only — never from request text.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::escalate::{Event, Trail};
use crate::policy::SkipReason;

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
    upstream_up: IntGaugeVec,
    warm_starts: IntCounterVec,
    model_load: GaugeVec,
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
        let upstream_up = IntGaugeVec::new(
            Opts::new("tierwise_upstream_up", "Whether the upstream's last warmth probe answered (1) or failed (0)"),
            &["upstream"],
        )?;
        let warm_starts = IntCounterVec::new(
            Opts::new("tierwise_warm_starts_total", "Upstream calls by model alias and whether the model was warm"),
            &["model", "warm"],
        )?;
        let model_load = GaugeVec::new(
            Opts::new("tierwise_model_load_seconds", "Learned extra time of a cold start, by model alias"),
            &["model"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(skips.clone()))?;
        registry.register(Box::new(privacy_blocked.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(upstream_up.clone()))?;
        registry.register(Box::new(warm_starts.clone()))?;
        registry.register(Box::new(model_load.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            attempts,
            skips,
            privacy_blocked,
            in_flight,
            upstream_up,
            warm_starts,
            model_load,
        })
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

    /// A warmth probe of `upstream` answered (`up`) or failed.
    pub fn upstream_up(&self, upstream: &str, up: bool) {
        self.upstream_up.with_label_values(&[upstream]).set(i64::from(up));
    }

    /// An attempt on model alias `model` started warm, cold, or with its warmth unknown.
    pub fn warm_start(&self, model: &str, warm: Option<bool>) {
        let warm = match warm {
            Some(true) => "true",
            Some(false) => "false",
            None => "unknown",
        };
        self.warm_starts.with_label_values(&[model, warm]).inc();
    }

    /// The learned cold-start time of model alias `model` changed.
    pub fn model_load(&self, model: &str, expected: Duration) {
        self.model_load.with_label_values(&[model]).set(expected.as_secs_f64());
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

    #[test]
    fn warmth_events_emit_their_labels() {
        let metrics = Metrics::new().unwrap();
        metrics.upstream_up("local", true);
        metrics.upstream_up("swap", true);
        metrics.upstream_up("swap", false);
        metrics.warm_start("small", Some(true));
        metrics.warm_start("small", Some(false));
        metrics.warm_start("small", None);
        metrics.warm_start("small", None);
        metrics.model_load("small", Duration::from_millis(6100));
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(text.contains(r#"tierwise_upstream_up{upstream="local"} 1"#), "{text}");
        assert!(text.contains(r#"tierwise_upstream_up{upstream="swap"} 0"#), "{text}");
        assert!(text.contains(r#"tierwise_warm_starts_total{model="small",warm="true"} 1"#), "{text}");
        assert!(text.contains(r#"tierwise_warm_starts_total{model="small",warm="false"} 1"#), "{text}");
        assert!(text.contains(r#"tierwise_warm_starts_total{model="small",warm="unknown"} 2"#), "{text}");
        assert!(text.contains(r#"tierwise_model_load_seconds{model="small"} 6.1"#), "{text}");
    }
}
