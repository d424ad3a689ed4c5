//! A task's in-memory store: moka's TinyLFU cache, bounded by bytes (each entry weighs
//! its body, model name and bookkeeping), entries expiring after the task's `ttl_s`.
//! Evictions and the bytes held are exported per task.

use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::entry::Entry;
use crate::config::CacheConfig;
use crate::metrics::Metrics;

pub struct MemoryStore {
    entries: Cache<[u8; 32], Arc<Entry>>,
    /// The settings it was built with: a reload that changes them builds a new store.
    pub ttl: std::time::Duration,
    pub max_bytes: u64,
    task: String,
    metrics: Metrics,
}

impl MemoryStore {
    pub fn new(task: &str, config: &CacheConfig, metrics: &Metrics) -> Self {
        let (listener_task, listener_metrics) = (task.to_string(), metrics.clone());
        let entries = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &[u8; 32], entry: &Arc<Entry>| u32::try_from(entry.weight()).unwrap_or(u32::MAX))
            .time_to_live(config.ttl)
            .eviction_listener(move |_key, _entry, cause| {
                let cause = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Replaced => "replaced",
                    RemovalCause::Explicit => return,
                };
                listener_metrics.cache_evicted(&listener_task, cause);
            })
            .build();
        MemoryStore {
            entries,
            ttl: config.ttl,
            max_bytes: config.max_bytes,
            task: task.to_string(),
            metrics: metrics.clone(),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    /// Stores `entry`, then evicts what no longer fits: the store is within `max_bytes`
    /// when this returns. An entry larger than the whole store is not kept.
    pub fn put(&self, key: [u8; 32], entry: Entry) {
        if entry.weight() > self.max_bytes {
            return;
        }
        self.entries.insert(key, Arc::new(entry));
        // Stores follow upstream calls (milliseconds): settling the bound now is cheap.
        self.entries.run_pending_tasks();
        self.metrics.cache_bytes(&self.task, self.bytes());
    }

    /// Removes expired entries and exports the bytes held (at each scrape).
    pub fn observe(&self) {
        self.entries.run_pending_tasks();
        self.metrics.cache_bytes(&self.task, self.bytes());
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Tier;
    use bytes::Bytes;
    use std::time::Duration;

    fn config(max_bytes: u64, ttl: Duration) -> CacheConfig {
        CacheConfig { ttl, max_bytes, deterministic_only: true, per_key: false, version: [0; 32] }
    }

    fn entry(size: usize) -> Entry {
        Entry::new(Bytes::from(vec![b'x'; size]), Tier::Local, "m", 0.0)
    }

    #[test]
    fn a_flood_of_unique_entries_stays_within_max_bytes() {
        let metrics = Metrics::new().unwrap();
        let store = MemoryStore::new("t", &config(64 * 1024, Duration::from_secs(60)), &metrics);
        for i in 0..5_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            store.put(key, entry(900));
            assert!(store.bytes() <= 64 * 1024, "{} bytes after {i} entries", store.bytes());
        }
        assert!(store.bytes() > 32 * 1024, "the store is used, not emptied: {}", store.bytes());
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(text.contains("tierwise_cache_evictions_total{cause=\"size\",task=\"t\"}"), "{text}");
    }

    #[test]
    fn entries_expire_and_oversized_ones_are_not_kept() {
        let metrics = Metrics::new().unwrap();
        let store = MemoryStore::new("t", &config(8_192, Duration::from_millis(50)), &metrics);
        store.put([1; 32], entry(100));
        assert!(store.get(&[1; 32]).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(store.get(&[1; 32]).is_none(), "expired after ttl");
        store.observe();
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(text.contains("tierwise_cache_bytes{task=\"t\"} 0"), "a scrape sees the expired entry gone: {text}");
        store.put([2; 32], entry(10_000));
        assert!(store.get(&[2; 32]).is_none(), "larger than the store");
    }
}
