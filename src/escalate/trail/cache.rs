//! The trail's `cache` entry: what the response cache did for the request.

use std::time::Duration;

use serde_json::{json, Value};

use crate::policy::Tier;

/// What the cache did: served the answer, looked and found none, or was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// The trail's `cache` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheNote {
    pub result: CacheResult,
    /// Why the cache was bypassed (`off`, `not_deterministic`, `endpoint`), or why a
    /// miss was not stored (`refresh` is a miss that skipped the read).
    pub reason: Option<&'static str>,
    /// Which store served a hit: `memory` or `redis`.
    pub store: Option<&'static str>,
    /// For a hit: the answer's age, and the tier and model that made it.
    pub age: Option<Duration>,
    pub made_by: Option<(Tier, String)>,
}

impl CacheNote {
    pub fn hit(store: &'static str, age: Duration, tier: Tier, model: &str) -> Self {
        CacheNote {
            result: CacheResult::Hit,
            reason: None,
            store: Some(store),
            age: Some(age),
            made_by: Some((tier, model.to_string())),
        }
    }

    pub fn miss(reason: Option<&'static str>) -> Self {
        CacheNote { result: CacheResult::Miss, reason, store: None, age: None, made_by: None }
    }

    pub fn bypass(reason: &'static str) -> Self {
        CacheNote { result: CacheResult::Bypass, reason: Some(reason), store: None, age: None, made_by: None }
    }

    /// `cache:hit`, `cache:miss`, `cache:bypass(not_deterministic)`: the first item of
    /// `x-tierwise-attempts`.
    pub fn header_item(&self) -> String {
        match (self.result, self.reason) {
            (CacheResult::Bypass, Some(reason)) => format!("cache:bypass({reason})"),
            (result, _) => format!("cache:{}", result.as_str()),
        }
    }

    /// The `cache` object of the trail in a JSON body and in the audit log.
    pub fn view(&self) -> Value {
        let mut view = json!({"result": self.result.as_str()});
        if let Some(reason) = self.reason {
            view["reason"] = json!(reason);
        }
        if let Some(store) = self.store {
            view["store"] = json!(store);
        }
        if let Some(age) = self.age {
            view["age_s"] = json!(age.as_secs());
        }
        if let Some((tier, model)) = &self.made_by {
            view["tier"] = json!(tier.as_str());
            view["model"] = json!(model);
        }
        view
    }
}
