//! Per-key rate limits in this process's memory (the memory backend, and the fallback
//! while Redis is out): `requests_per_minute` and `tokens_per_minute` on a `[[keys]]`
//! entry. Each limit is a token bucket that holds a minute's worth and refills
//! continuously, so a key may burst up to its limit and then runs at its rate.
//!
//! A request takes one from the request bucket when it is admitted. Tokens are known only
//! once upstreams answer, so the token bucket is charged afterwards (what the upstreams
//! reported in `usage`, or an estimate for a stream without it) and may go below zero:
//! a key that overdraws it waits until the bucket is above zero again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use crate::config::{ClientKey, KeyLimits};
use crate::error::ApiError;
use crate::upstream::sse;
use crate::upstream::usage::Usage;

/// A configured client key, as the rate limits know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId {
    pub digest: [u8; 32],
    pub limits: KeyLimits,
}

impl From<&ClientKey> for KeyId {
    fn from(key: &ClientKey) -> Self {
        KeyId { digest: key.digest, limits: key.limits }
    }
}

/// The buckets of every key that has limits, by key digest. Lives in the app state, so a
/// reload keeps what keys have used; the limits themselves are read from the key each time.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<[u8; 32], KeyBuckets>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Tokens,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Tokens => "tokens",
        }
    }
}

/// A request refused by a rate limit: which one, and when to come back.
#[derive(Debug, PartialEq)]
pub struct Limited {
    pub limit: Limit,
    pub per_minute: u64,
    pub retry_after: Duration,
}

impl Limited {
    pub fn into_error(self, profile: &str) -> ApiError {
        let seconds = self.retry_after.as_secs_f64().ceil().max(1.0);
        ApiError::Overloaded {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limit_exceeded",
            message: format!(
                "this API key (profile \"{profile}\") is over its limit of {} {} per minute \
                 ({}_per_minute in its [[keys]] entry); retry in {seconds} s",
                self.per_minute,
                self.limit.as_str(),
                self.limit.as_str(),
            ),
            retry_after: Some(self.retry_after),
        }
    }
}

struct KeyBuckets {
    requests: Bucket,
    tokens: Bucket,
}

/// How much of a per-minute limit is left; refills at `per_minute / 60` per second, up
/// to `per_minute`. May be negative (tokens spent beyond what was left).
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: u64, now: Instant) -> Self {
        Bucket { level: per_minute as f64, at: now }
    }

    fn refill(&mut self, per_minute: u64, now: Instant) {
        let rate = per_minute as f64 / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(per_minute as f64);
        self.at = now;
    }

    /// How long until the level reaches `wanted`.
    fn wait_for(&self, wanted: f64, per_minute: u64) -> Duration {
        let missing = (wanted - self.level).max(0.0);
        Duration::from_secs_f64(missing * 60.0 / per_minute as f64)
    }
}

impl RateLimiter {
    /// Admits one request from `key`, or says which limit it is over.
    pub fn admit(&self, key: KeyId, now: Instant) -> Result<(), Limited> {
        let limits = key.limits;
        if limits.is_unlimited() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = buckets.entry(key.digest).or_insert_with(|| KeyBuckets {
            requests: Bucket::full(limits.requests_per_minute.unwrap_or(0), now),
            tokens: Bucket::full(limits.tokens_per_minute.unwrap_or(0), now),
        });
        if let Some(per_minute) = limits.tokens_per_minute {
            buckets.tokens.refill(per_minute, now);
            if buckets.tokens.level <= 0.0 {
                // Wait for a little headroom, not just for zero.
                let retry_after = buckets.tokens.wait_for(1.0, per_minute);
                return Err(Limited { limit: Limit::Tokens, per_minute, retry_after });
            }
        }
        if let Some(per_minute) = limits.requests_per_minute {
            buckets.requests.refill(per_minute, now);
            if buckets.requests.level < 1.0 {
                let retry_after = buckets.requests.wait_for(1.0, per_minute);
                return Err(Limited { limit: Limit::Requests, per_minute, retry_after });
            }
            buckets.requests.level -= 1.0;
        }
        Ok(())
    }

    /// Charges `tokens` the upstreams used for a request of `key`.
    pub fn spend_tokens(&self, key: KeyId, tokens: u64, now: Instant) {
        let Some(per_minute) = key.limits.tokens_per_minute else { return };
        if tokens == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(buckets) = buckets.get_mut(&key.digest) {
            buckets.tokens.refill(per_minute, now);
            // Bounded below, so a single huge answer cannot lock a key out for ever.
            buckets.tokens.level = (buckets.tokens.level - tokens as f64).max(-(per_minute as f64) * 60.0);
        }
    }
}

/// Charges a passed-through stream's tokens to its key: from its usage event when it
/// has one, else, when the stream ends (or the client leaves), an estimate — a quarter of
/// the prompt's text bytes, plus one token per event.
pub struct StreamCharge {
    /// Charges tokens to the key (wherever its buckets live).
    spend: Box<dyn Fn(u64) + Send>,
    prompt_estimate: u64,
    events: u64,
    charged: bool,
}

impl StreamCharge {
    pub fn new(spend: impl Fn(u64) + Send + 'static, prompt_bytes: usize) -> Self {
        StreamCharge { spend: Box::new(spend), prompt_estimate: prompt_bytes as u64 / 4, events: 0, charged: false }
    }

    /// Some SSE events went to the client; `usage` is what they reported, if anything.
    pub fn passed(&mut self, events: &[u8], usage: Option<Usage>) {
        match usage {
            Some(usage) if !self.charged => {
                self.charged = true;
                (self.spend)(usage.total());
            }
            _ => self.events += sse::events(events).filter(|e| e.data.is_some()).count() as u64,
        }
    }
}

impl Drop for StreamCharge {
    fn drop(&mut self) {
        if !self.charged {
            let estimate = self.prompt_estimate.saturating_add(self.events);
            (self.spend)(estimate);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn key(requests: Option<u64>, tokens: Option<u64>) -> KeyId {
        KeyId { digest: [7; 32], limits: KeyLimits { requests_per_minute: requests, tokens_per_minute: tokens } }
    }

    #[test]
    fn a_key_without_limits_is_never_refused() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(limiter.admit(key(None, None), now).is_ok());
        }
        assert!(limiter.buckets.lock().unwrap().is_empty(), "no state for unlimited keys");
    }

    #[test]
    fn requests_burst_to_the_limit_then_refill_at_the_rate() {
        let limiter = RateLimiter::default();
        let key = key(Some(60), None);
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.admit(key, t0).unwrap();
        }
        let refused = limiter.admit(key, t0).unwrap_err();
        assert_eq!(refused.limit, Limit::Requests);
        assert_eq!(refused.retry_after, Duration::from_secs(1), "60/min refills one per second");
        // Half a second later: still half a request short.
        let refused = limiter.admit(key, t0 + Duration::from_millis(500)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        limiter.admit(key, t0 + Duration::from_secs(1)).unwrap();
        assert!(limiter.admit(key, t0 + Duration::from_secs(1)).is_err());
        // A long pause refills to the limit, never beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..60 {
            limiter.admit(key, later).unwrap();
        }
        assert!(limiter.admit(key, later).is_err());
    }

    #[test]
    fn tokens_are_charged_after_the_fact_and_an_overdraft_waits() {
        let limiter = RateLimiter::default();
        let key = key(None, Some(6_000));
        let t0 = Instant::now();
        limiter.admit(key, t0).unwrap();
        limiter.spend_tokens(key, 5_000, t0);
        limiter.admit(key, t0).unwrap();
        // This one overdraws the bucket by 3,000 tokens: 30 s at 100 tokens/s.
        limiter.spend_tokens(key, 4_000, t0);
        let refused = limiter.admit(key, t0).unwrap_err();
        assert_eq!(refused.limit, Limit::Tokens);
        assert_eq!(refused.per_minute, 6_000);
        assert!((refused.retry_after.as_secs_f64() - 30.01).abs() < 1e-6, "{:?}", refused.retry_after);
        assert!(limiter.admit(key, t0 + Duration::from_secs(30)).is_err());
        limiter.admit(key, t0 + Duration::from_millis(30_010)).unwrap();
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limiter = RateLimiter::default();
        let a = key(Some(1), None);
        let mut b = key(Some(1), None);
        b.digest = [8; 32];
        let now = Instant::now();
        limiter.admit(a, now).unwrap();
        assert!(limiter.admit(a, now).is_err());
        limiter.admit(b, now).unwrap();
    }

    #[test]
    fn a_huge_token_count_neither_overflows_nor_locks_a_key_out_for_ever() {
        let limiter = RateLimiter::default();
        let key = key(None, Some(60));
        let t0 = Instant::now();
        limiter.admit(key, t0).unwrap();
        limiter.spend_tokens(key, u64::MAX, t0);
        let refused = limiter.admit(key, t0).unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(3601), "{:?}", refused.retry_after);
    }

    #[test]
    fn a_stream_is_charged_its_usage_or_else_an_estimate_when_it_ends() {
        let limiter = Arc::new(RateLimiter::default());
        let key = key(None, Some(1_000));
        let t0 = Instant::now();
        limiter.admit(key, t0).unwrap();
        let level = |limiter: &RateLimiter| limiter.buckets.lock().unwrap()[&key.digest].tokens.level.round();
        {
            let limiter = limiter.clone();
            let mut charge = StreamCharge::new(move |tokens| limiter.spend_tokens(key, tokens, Instant::now()), 400);
            charge.passed(b"data: {\"choices\":[]}\n\n", None);
            charge.passed(b"data: {\"usage\":{}}\n\n", Some(Usage { prompt: 30, completion: 20 }));
            charge.passed(b"data: [DONE]\n\n", None);
        }
        assert!((950.0..=951.0).contains(&level(&limiter)), "charged the reported 50");
        {
            let limiter = limiter.clone();
            let mut charge = StreamCharge::new(move |tokens| limiter.spend_tokens(key, tokens, Instant::now()), 400);
            charge.passed(b"data: {}\n\ndata: {}\n\n", None);
            charge.passed(b"data: {}\n\n", None);
        }
        // 400 bytes of prompt ~ 100 tokens, and 3 events.
        assert!((847.0..=848.0).contains(&level(&limiter)), "{}", level(&limiter));
    }

    #[test]
    fn the_error_names_the_limit_and_the_wait() {
        let limited = Limited { limit: Limit::Tokens, per_minute: 1000, retry_after: Duration::from_millis(2_500) };
        let err = limited.into_error("team");
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        let text = String::from_utf8(err.envelope().to_vec()).unwrap();
        assert!(text.contains("over its limit of 1000 tokens per minute"), "{text}");
        assert!(text.contains("tokens_per_minute"), "{text}");
        assert!(text.contains("retry in 3 s"), "{text}");
        assert!(text.contains("\"type\":\"rate_limit_error\""), "{text}");
    }
}
