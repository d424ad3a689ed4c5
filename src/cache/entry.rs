//! A cached answer: the `chat.completion` as the client got it (without tierwise's
//! trail), who made it, what it cost, and when.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::policy::Tier;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The `chat.completion` JSON.
    pub body: Bytes,
    /// The tier and model alias whose answer it is.
    pub tier: Tier,
    pub model: String,
    /// What making it cost at the configured prices (every paid attempt and judge), USD.
    pub cost_usd: f64,
    /// When it was stored, in ms since the Unix epoch.
    pub stored_ms: u64,
}

/// Per-entry bookkeeping counted against `max_bytes` besides the body and model name:
/// the key, the entry's fields and the store's own node.
const OVERHEAD_BYTES: usize = 160;

impl Entry {
    pub fn new(body: Bytes, tier: Tier, model: &str, cost_usd: f64) -> Self {
        Entry { body, tier, model: model.to_string(), cost_usd, stored_ms: now_ms() }
    }

    /// What the entry counts against the store's `max_bytes`.
    pub fn weight(&self) -> u64 {
        (self.body.len() + self.model.len() + OVERHEAD_BYTES) as u64
    }

    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.stored_ms))
    }

    /// The form kept in Redis: one JSON object.
    pub fn encode(&self) -> Vec<u8> {
        let body = String::from_utf8_lossy(&self.body);
        json!({
            "v": 1,
            "tier": self.tier.as_str(),
            "model": self.model,
            "cost_usd": self.cost_usd,
            "stored_ms": self.stored_ms,
            "body": body,
        })
        .to_string()
        .into_bytes()
    }

    /// An entry read back from Redis; `None` for anything else (a miss).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        if value.get("v")?.as_u64()? != 1 {
            return None;
        }
        Some(Entry {
            body: Bytes::from(value.get("body")?.as_str()?.to_string()),
            tier: value.get("tier")?.as_str()?.parse().ok()?,
            model: value.get("model")?.as_str()?.to_string(),
            cost_usd: value.get("cost_usd")?.as_f64()?,
            stored_ms: value.get("stored_ms")?.as_u64()?,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_the_trip_through_redis_and_refuses_anything_else() {
        let entry =
            Entry::new(Bytes::from(r#"{"choices":[{"message":{"content":"ü \"q\""}}]}"#), Tier::Cloud, "gpt", 0.25);
        assert_eq!(Entry::decode(&entry.encode()), Some(entry.clone()));
        assert_eq!(Entry::decode(b"not json"), None);
        assert_eq!(Entry::decode(br#"{"v":2,"body":"{}"}"#), None);
        assert!(entry.weight() > entry.body.len() as u64);
    }
}
