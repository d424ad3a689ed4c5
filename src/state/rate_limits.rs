//! Per-key rate limits wherever they live: [`RateLimiter`]'s buckets in this process, or
//! the same buckets in Redis (`[state] backend = "redis"`), with this process's buckets as
//! the fallback while Redis is out (`on_error = "local"`).

use std::sync::Arc;

use http::StatusCode;
use tokio::time::Instant;

use super::buckets::{KeyId, Limit, Limited, RateLimiter};
use super::redis::{Admitted, RedisStore};
use crate::config::OnStateError;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Why a request was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// Over one of the key's limits.
    Limited(Limited),
    /// Redis is out and `state.on_error = "deny"`.
    StateDown,
}

impl Refusal {
    pub fn into_error(self, profile: &str) -> ApiError {
        match self {
            Refusal::Limited(limited) => limited.into_error(profile),
            Refusal::StateDown => ApiError::Overloaded {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "state_unavailable",
                message: "this API key has rate limits, and the shared state that keeps them (Redis, [state]) \
                          cannot be reached; state.on_error = \"deny\" refuses until it is back"
                    .to_string(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            },
        }
    }
}

pub struct RateLimits {
    /// The memory backend, and the fallback while Redis is out.
    local: RateLimiter,
    shared: Option<Arc<RedisStore>>,
    metrics: Metrics,
}

impl RateLimits {
    /// Limits kept in `shared` (Redis), or in this process when it is `None`.
    pub fn new(shared: Option<Arc<RedisStore>>, metrics: Metrics) -> Self {
        RateLimits { local: RateLimiter::default(), shared, metrics }
    }

    /// Admits one request from `key`: at most one Redis round trip, none for a key
    /// without limits.
    pub async fn admit(&self, key: KeyId) -> Result<(), Refusal> {
        if key.limits.is_unlimited() {
            return Ok(());
        }
        let Some(store) = &self.shared else {
            return self.local.admit(key, Instant::now()).map_err(Refusal::Limited);
        };
        match store.admit(&key.digest, key.limits).await {
            Ok(Admitted::Yes) => Ok(()),
            Ok(Admitted::OverRequests(retry_after)) => Err(Refusal::Limited(Limited {
                limit: Limit::Requests,
                per_minute: key.limits.requests_per_minute.unwrap_or(0),
                retry_after,
            })),
            Ok(Admitted::OverTokens(retry_after)) => Err(Refusal::Limited(Limited {
                limit: Limit::Tokens,
                per_minute: key.limits.tokens_per_minute.unwrap_or(0),
                retry_after,
            })),
            Err(_) => {
                let policy = store.on_error();
                self.metrics.state_fallback(policy.as_str());
                match policy {
                    OnStateError::Local => self.local.admit(key, Instant::now()).map_err(Refusal::Limited),
                    OnStateError::Deny => Err(Refusal::StateDown),
                }
            }
        }
    }

    /// Charges `tokens` the upstreams used for a request of `key`. With Redis the charge
    /// is sent in the background (the answer does not wait for it); it goes to this
    /// process's buckets instead while Redis is out and `on_error = "local"`.
    pub fn spend_tokens(self: &Arc<Self>, key: KeyId, tokens: u64) {
        let Some(per_minute) = key.limits.tokens_per_minute else { return };
        if tokens == 0 {
            return;
        }
        let (Some(store), Ok(runtime)) = (&self.shared, tokio::runtime::Handle::try_current()) else {
            self.local.spend_tokens(key, tokens, Instant::now());
            return;
        };
        let (store, limits) = (store.clone(), self.clone());
        runtime.spawn(async move {
            if store.spend(&key.digest, per_minute, tokens).await.is_err() && store.on_error() == OnStateError::Local {
                limits.local.spend_tokens(key, tokens, Instant::now());
            }
        });
    }
}
