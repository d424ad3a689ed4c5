//! The response cache's metrics (docs/caching.md).

use super::Metrics;

impl Metrics {
    /// A request to a task with a cache: `hit`, `miss` or `bypass`.
    pub fn cache_lookup(&self, task: &str, result: &str) {
        self.cache_lookups.with_label_values(&[task, result]).inc();
    }

    /// A hit served an answer that cost `usd` when it was made.
    pub fn cache_cost_avoided(&self, task: &str, usd: f64) {
        if usd > 0.0 {
            self.cache_cost_avoided.with_label_values(&[task]).inc_by(usd);
        }
    }

    /// An entry left the task's in-memory store (`size`, `expired`, `replaced`).
    pub fn cache_evicted(&self, task: &str, cause: &str) {
        self.cache_evictions.with_label_values(&[task, cause]).inc();
    }

    /// The task's in-memory store now holds `bytes`.
    pub fn cache_bytes(&self, task: &str, bytes: u64) {
        self.cache_bytes.with_label_values(&[task]).set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A Redis cache read or write failed (`get`, `put`).
    pub fn cache_error(&self, operation: &str) {
        self.cache_errors.with_label_values(&[operation]).inc();
    }
}
