//! A task's response cache (`[tasks.NAME] cache = { ... }`), validated, and the version
//! of the task's config its entries are keyed on.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::raw::{RawConfig, RawTask};
use super::validate::Problems;
use crate::canonical::Digest;

/// `[tasks.NAME] cache`, validated (docs/caching.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is served again.
    pub ttl: Duration,
    /// The in-memory store's bound: entries are evicted (TinyLFU) to stay within it.
    pub max_bytes: u64,
    /// Only requests at temperature 0 or with a `seed` are cached.
    pub deterministic_only: bool,
    /// Entries are namespaced by client key too, not only by profile.
    pub per_key: bool,
    /// A digest of everything in the config that shapes the task's answers — its
    /// section, its chain's and judge's models, their upstreams and `[detect]` — so a
    /// reload that changes any of it changes every key.
    pub version: [u8; 32],
}

const DAY_S: u64 = 86_400;

pub(super) fn task_cache(
    path: &str,
    raw_task: &RawTask,
    raw: &RawConfig,
    problems: &mut Problems,
) -> Option<CacheConfig> {
    let cache = raw_task.cache.as_ref()?;
    let ttl_s = cache.ttl_s.unwrap_or(3_600);
    if ttl_s == 0 || ttl_s > 30 * DAY_S {
        problems.hint(format!("{path}.cache.ttl_s"), format!("{ttl_s} is out of range"), "1 to 2592000 (30 days)");
    }
    let max_bytes = cache.max_bytes.unwrap_or(64 << 20);
    if !(4_096..=(16 << 30)).contains(&max_bytes) {
        problems.hint(
            format!("{path}.cache.max_bytes"),
            format!("{max_bytes} is out of range"),
            "4096 (4 KiB) to 17179869184 (16 GiB)",
        );
    }
    Some(CacheConfig {
        ttl: Duration::from_secs(ttl_s.clamp(1, 30 * DAY_S)),
        max_bytes,
        deterministic_only: cache.deterministic_only.unwrap_or(true),
        per_key: cache.per_key.unwrap_or(false),
        version: version(raw_task, raw),
    })
}

/// The digest of the task's section (without its `cache` settings), the models of its
/// chain and judge, their upstreams, and `[detect]`.
fn version(raw_task: &RawTask, raw: &RawConfig) -> [u8; 32] {
    let mut task = raw_task.clone();
    task.cache = None;
    let judge = task.verify.as_ref().and_then(|v| v.judge.clone());
    let aliases = task.chain.iter().cloned().chain(judge);
    let models: BTreeMap<String, _> = aliases.filter_map(|a| Some((a.clone(), raw.models.get(&a)?.clone()))).collect();
    let upstreams: BTreeMap<String, _> = models
        .values()
        .filter_map(|m| m.upstream.as_ref())
        .filter_map(|u| Some((u.clone(), raw.upstreams.get(u)?.clone())))
        .collect();
    let described = json!({"task": task, "models": models, "upstreams": upstreams, "detect": raw.detect});
    let mut digest = Digest::default();
    digest.text("tierwise task config v1").json(&described);
    digest.finish()
}
