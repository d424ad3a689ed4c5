//! State shared by requests — and, with `[state] backend = "redis"`, by every replica
//! pointed at the same Redis: per-key rate limits and spend budgets. Memory keeps it in
//! this process.
//!
//! While Redis cannot be reached, `state.on_error` decides: `local` answers from this
//! process's own counters (a key then gets up to its limit per replica), `deny` refuses
//! with 503. The outage is logged once when it starts and once when it ends, and counted
//! (`tierwise_state_errors_total`, `tierwise_state_fallbacks_total`, `tierwise_state_up`).

pub mod buckets;
pub mod budgets;
pub(crate) mod period;
mod rate_limits;
mod redis;

use std::sync::Arc;

pub use buckets::KeyId;
pub use budgets::Budgets;
pub use period::{rfc3339_day, Period};
pub use rate_limits::{RateLimits, Refusal};
pub use redis::{CircuitNews, RedisStore, StoreError};

use crate::config::StateConfig;
use crate::metrics::Metrics;

/// The Redis store of `config`, if it has one (connected on its first command).
pub fn connect(config: &StateConfig, metrics: &Metrics) -> Result<Option<Arc<RedisStore>>, StoreError> {
    metrics.state_up(true);
    match config {
        StateConfig::Memory => Ok(None),
        StateConfig::Redis(redis) => Ok(Some(Arc::new(RedisStore::new(redis, metrics.clone())?))),
    }
}
