//! The metric families: every name, type, help text, label set and bucket layout, and
//! their registration — in one place, so dashboards and tests check against [`EXPORTED`].

use prometheus::core::Collector;
use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use super::{Families, Metrics};

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
    ("tierwise_verifier_scores", "histogram", &["task", "verifier"]),
    ("tierwise_verifier_results_total", "counter", &["task", "verifier", "result"]),
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
    ("tierwise_cache_lookups_total", "counter", &["task", "result"]),
    ("tierwise_cache_evictions_total", "counter", &["task", "cause"]),
    ("tierwise_cache_bytes", "gauge", &["task"]),
    ("tierwise_cache_cost_avoided_usd_total", "counter", &["task"]),
    ("tierwise_cache_errors_total", "counter", &["operation"]),
    ("tierwise_state_up", "gauge", &[]),
    ("tierwise_state_errors_total", "counter", &["operation"]),
    ("tierwise_state_fallbacks_total", "counter", &["on_error"]),
    ("tierwise_spend_usd_total", "counter", &["scope", "name"]),
    ("tierwise_trace_spans_dropped_total", "counter", &[]),
    ("tierwise_budget_remaining_usd", "gauge", &["scope", "name", "period"]),
];

/// Seconds; LLM calls range from milliseconds to minutes.
pub(super) const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// Seconds; tierwise's own time per request is microseconds.
const OVERHEAD_BUCKETS: &[f64] =
    &[0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1];

/// Seconds; deterministic checks are microseconds, a judge is seconds.
const VERIFIER_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Scores are probabilities: tenths, with finer steps at both ends.
const SCORE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0];

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let m = Families {
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
            verifier_scores: histogram(
                "tierwise_verifier_scores",
                "Scores the scored verifiers gave answers (confidence, consistency, self_check, judge), 0 to 1",
                SCORE_BUCKETS,
                &["task", "verifier"],
            )?,
            verifier_results: counter(
                "tierwise_verifier_results_total",
                "Scored verifiers' results by verifier (accept, reject, error)",
                &["task", "verifier", "result"],
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
            state_up: IntGauge::new(
                "tierwise_state_up",
                "1 while the state backend answers (always 1 in memory), 0 during a Redis outage",
            )?,
            state_errors: counter(
                "tierwise_state_errors_total",
                "Redis commands that failed or timed out, by operation (admit, spend, budget, circuit)",
                &["operation"],
            )?,
            state_fallbacks: counter(
                "tierwise_state_fallbacks_total",
                "Requests decided without Redis during an outage, by state.on_error (local, deny)",
                &["on_error"],
            )?,
            spend: CounterVec::new(
                Opts::new(
                    "tierwise_spend_usd_total",
                    "USD spent at the configured prices by keys and profiles with a budget (scope key or profile, name from config)",
                ),
                &["scope", "name"],
            )?,
            trace_spans_dropped: IntCounter::new(
                "tierwise_trace_spans_dropped_total",
                "Spans whose OTLP export failed (the collector down or refusing): dropped, never retried",
            )?,
            budget_remaining: GaugeVec::new(
                Opts::new(
                    "tierwise_budget_remaining_usd",
                    "USD left in a key's or profile's budget in its current period (daily, monthly), as last seen",
                ),
                &["scope", "name", "period"],
            )?,
            upstream_in_flight: IntGaugeVec::new(
                Opts::new("tierwise_upstream_in_flight", "Calls to the upstream in progress (streams until they end)"),
                &["upstream"],
            )?,
            circuit_open: IntGaugeVec::new(
                Opts::new("tierwise_circuit_open", "Whether the upstream's circuit breaker is open or probing (1)"),
                &["upstream"],
            )?,
            cache_lookups: counter(
                "tierwise_cache_lookups_total",
                "Requests to tasks with a cache, by result: hit, miss, or bypass (not cacheable, or x-tierwise-cache: off)",
                &["task", "result"],
            )?,
            cache_evictions: counter(
                "tierwise_cache_evictions_total",
                "In-memory cache entries removed, by cause: size (to stay within max_bytes), expired, replaced",
                &["task", "cause"],
            )?,
            cache_bytes: IntGaugeVec::new(
                Opts::new("tierwise_cache_bytes", "Bytes held by the task's in-memory cache (entries, keys and overhead)"),
                &["task"],
            )?,
            cache_cost_avoided: CounterVec::new(
                Opts::new(
                    "tierwise_cache_cost_avoided_usd_total",
                    "What the answers served from the cache cost when they were made (every paid attempt and judge), USD",
                ),
                &["task"],
            )?,
            cache_errors: counter(
                "tierwise_cache_errors_total",
                "Cache reads and writes in Redis that failed or timed out (each read is then a miss), by operation",
                &["operation"],
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
            Box::new(m.verifier_scores.clone()),
            Box::new(m.verifier_results.clone()),
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
            Box::new(m.state_up.clone()),
            Box::new(m.state_errors.clone()),
            Box::new(m.state_fallbacks.clone()),
            Box::new(m.spend.clone()),
            Box::new(m.trace_spans_dropped.clone()),
            Box::new(m.budget_remaining.clone()),
            Box::new(m.cache_lookups.clone()),
            Box::new(m.cache_evictions.clone()),
            Box::new(m.cache_bytes.clone()),
            Box::new(m.cache_cost_avoided.clone()),
            Box::new(m.cache_errors.clone()),
        ];
        for collector in collectors {
            m.names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            m.registry.register(collector)?;
        }
        Ok(Metrics(std::sync::Arc::new(m)))
    }
}
