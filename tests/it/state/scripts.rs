//! The Redis scripts' arithmetic, run in a real redis-server with the clock given (their
//! test-only `now` argument): the same decisions and waits as the memory backend for the
//! same sequence of requests and charges, both limits consumed all or nothing, the
//! overdraft bounded, and buckets expiring only once full again.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Script;
use tierwise::config::KeyLimits;
use tierwise::state::buckets::{KeyId, Limit, RateLimiter};
use tokio::time::Instant;

use crate::support::redis::RedisServer;

const ADMIT: &str = include_str!("../../../src/state/lua/rate_admit.lua");
const SPEND: &str = include_str!("../../../src/state/lua/rate_spend.lua");

struct Buckets {
    connection: MultiplexedConnection,
    key: &'static str,
    limits: KeyLimits,
}

impl Buckets {
    /// `(verdict, wait_ms)`: 0 admitted, 1 over requests, 2 over tokens.
    async fn admit(&mut self, now_ms: u64) -> (i64, i64) {
        let arg = |l: Option<u64>| l.map_or(-1, |l| l as i64);
        Script::new(ADMIT)
            .key(self.key)
            .arg(arg(self.limits.requests_per_minute))
            .arg(arg(self.limits.tokens_per_minute))
            .arg(now_ms)
            .invoke_async(&mut self.connection)
            .await
            .unwrap()
    }

    async fn spend(&mut self, tokens: u64, now_ms: u64) -> i64 {
        Script::new(SPEND)
            .key(self.key)
            .arg(self.limits.tokens_per_minute.unwrap())
            .arg(tokens)
            .arg(now_ms)
            .invoke_async(&mut self.connection)
            .await
            .unwrap()
    }

    async fn field(&mut self, name: &str) -> Option<f64> {
        redis::cmd("HGET").arg(self.key).arg(name).query_async(&mut self.connection).await.unwrap()
    }

    async fn pttl(&mut self) -> i64 {
        redis::cmd("PTTL").arg(self.key).query_async(&mut self.connection).await.unwrap()
    }
}

async fn buckets(redis: &RedisServer, key: &'static str, requests: Option<u64>, tokens: Option<u64>) -> Buckets {
    let limits = KeyLimits { requests_per_minute: requests, tokens_per_minute: tokens };
    Buckets { connection: redis.connection().await.unwrap(), key, limits }
}

#[tokio::test]
async fn the_scripts_decide_as_the_memory_backend_does_for_the_same_sequence() {
    let redis = RedisServer::start().await;
    let mut shared = buckets(&redis, "parity", Some(7), Some(1999)).await;
    let memory = RateLimiter::default();
    let key = KeyId { digest: [3; 32], limits: shared.limits };
    let t0 = Instant::now();
    // A fixed-seed sequence: the same every run.
    let mut seed: u64 = 0x5eed_7e57;
    let mut next = |bound: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % bound
    };
    let (mut now_ms, mut admitted, mut refused) = (1_000_000u64, 0, 0);
    for step in 0..400 {
        now_ms += match next(10) {
            0 => 60_000 + next(600_000),
            1..=3 => 0,
            _ => 1 + next(4_000),
        };
        let at = t0 + Duration::from_millis(now_ms - 1_000_000);
        if next(10) < 7 {
            let (verdict, wait_ms) = shared.admit(now_ms).await;
            match memory.admit(key, at) {
                Ok(()) => {
                    assert_eq!(verdict, 0, "step {step}: memory admitted, the script refused (wait {wait_ms} ms)");
                    admitted += 1;
                }
                Err(limited) => {
                    let expected = if limited.limit == Limit::Requests { 1 } else { 2 };
                    assert_eq!(verdict, expected, "step {step}: memory refused by {:?}", limited.limit);
                    let memory_ms = limited.retry_after.as_secs_f64() * 1000.0;
                    assert!(
                        (wait_ms as f64 - 1.0..=wait_ms as f64 + 1e-6).contains(&memory_ms),
                        "step {step}: waits {wait_ms} ms (script) and {memory_ms} ms (memory)"
                    );
                    refused += 1;
                }
            }
        } else {
            let tokens = next(1_500);
            shared.spend(tokens, now_ms).await;
            memory.spend_tokens(key, tokens, at);
        }
    }
    assert!(
        admitted > 50 && refused > 50,
        "the sequence exercises both outcomes: {admitted} admitted, {refused} refused"
    );
}

#[tokio::test]
async fn both_limits_are_consumed_all_or_nothing() {
    let redis = RedisServer::start().await;
    let mut b = buckets(&redis, "both", Some(2), Some(100)).await;
    assert_eq!(b.admit(0).await, (0, 0));
    assert_eq!(b.field("req").await, Some(1.0));
    b.spend(150, 0).await;
    // Over the token limit: refused, and the request bucket is not charged for it.
    assert_eq!(
        b.admit(0).await,
        (2, 30_600),
        "at -50, one token of headroom is 51 tokens away: 30.6 s at 100 a minute"
    );
    assert_eq!(b.field("req").await, Some(1.0));
    // 30.6 s later the tokens are back and the request bucket has refilled to 2: two
    // requests, then the request limit holds.
    assert_eq!(b.admit(30_600).await, (0, 0));
    assert_eq!(b.admit(30_600).await, (0, 0));
    assert_eq!(b.admit(30_600).await, (1, 30_000), "the request bucket is empty: 30 s for one at 2 a minute");
}

#[tokio::test]
async fn requests_burst_to_the_limit_then_refill_at_the_rate() {
    let redis = RedisServer::start().await;
    let mut b = buckets(&redis, "burst", Some(60), None).await;
    for _ in 0..60 {
        assert_eq!(b.admit(0).await, (0, 0));
    }
    assert_eq!(b.admit(0).await, (1, 1_000), "60 a minute refill one a second");
    assert_eq!(b.admit(500).await, (1, 500));
    assert_eq!(b.admit(1_000).await, (0, 0));
    let later = 3_600_000;
    for _ in 0..60 {
        assert_eq!(b.admit(later).await, (0, 0), "a long pause refills to the limit");
    }
    assert_eq!(b.admit(later).await.0, 1, "never beyond it");
}

#[tokio::test]
async fn an_overdraft_is_bounded_to_an_hour_and_buckets_expire_once_full_again() {
    let redis = RedisServer::start().await;
    let mut b = buckets(&redis, "overdraft", None, Some(60)).await;
    assert_eq!(b.admit(0).await, (0, 0));
    assert_eq!(b.spend(u64::MAX / 2, 0).await, -3_600, "at most an hour of tokens below zero");
    assert_eq!(b.admit(0).await, (2, 3_601_000));
    // Kept while it is not full: 61 minutes to refill from -3,600 at 60 a minute.
    let ttl = b.pttl().await;
    assert!((3_600_000..=3_661_000).contains(&ttl), "PTTL {ttl}");

    let mut requests = buckets(&redis, "expiry", Some(600), None).await;
    requests.admit(0).await;
    let ttl = requests.pttl().await;
    // One request taken: full again after 100 ms, plus the script's 1 s margin.
    assert!((1_000..=1_100).contains(&ttl), "PTTL {ttl}");
}
