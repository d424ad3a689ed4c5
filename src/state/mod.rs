//! State shared by requests — and, with `[state] backend = "redis"`, by every replica
//! pointed at the same Redis: per-key rate limits. Memory keeps it in this process.
//!
//! While Redis cannot be reached, `state.on_error` decides: `local` answers from this
//! process's own counters (a key then gets up to its limit per replica), `deny` refuses
//! with 503. The outage is logged once when it starts and once when it ends, and counted
//! (`tierwise_state_errors_total`, `tierwise_state_fallbacks_total`, `tierwise_state_up`).

mod rate_limits;
mod redis;

pub use rate_limits::{RateLimits, Refusal};
pub use redis::{RedisStore, StoreError};
