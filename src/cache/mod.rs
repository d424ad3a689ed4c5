//! The response cache (docs/caching.md): an accepted answer kept under a canonical key
//! of its request and served again — as JSON or replayed as SSE — without calling a
//! model. Opt-in per task (`cache = { ... }`) and per request (`x-tierwise-cache`).
//!
//! Stores have a tier. This process's memory is `local`; Redis is what
//! `state.cache_tier` says (`server` by default). A sensitive request — or an answer
//! that holds personal data — is read from and written to a `local` store only, so
//! neither it nor a digest of it reaches a server. A store that fails is a miss.

mod entry;
pub mod key;
mod memory;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub use entry::Entry;
use memory::MemoryStore;

use crate::config::CacheConfig;
use crate::metrics::Metrics;
use crate::policy::Tier;
use crate::state::RedisStore;

/// Where a request's answer is looked up and kept.
#[derive(Debug, Clone)]
pub struct Slot {
    pub task: String,
    pub key: [u8; 32],
    pub config: CacheConfig,
    /// Only a `local` store may hold it (a sensitive request).
    pub local_only: bool,
}

/// A cached answer and the store it came from (`memory`, `redis`).
pub struct Hit {
    pub entry: Arc<Entry>,
    pub store: &'static str,
}

pub struct ResponseCache {
    /// Per task, built on first use and rebuilt when its ttl or size changes.
    memory: RwLock<HashMap<String, Arc<MemoryStore>>>,
    shared: Option<Arc<RedisStore>>,
    /// The shared store's tier (`state.cache_tier`).
    shared_tier: Tier,
    metrics: Metrics,
}

impl ResponseCache {
    pub fn new(shared: Option<Arc<RedisStore>>, shared_tier: Tier, metrics: Metrics) -> Self {
        ResponseCache { memory: RwLock::new(HashMap::new()), shared, shared_tier, metrics }
    }

    /// The Redis store a slot may use: none for a `local_only` slot unless Redis is local.
    fn shared_for(&self, local_only: bool) -> Option<&Arc<RedisStore>> {
        self.shared.as_ref().filter(|_| !local_only || self.shared_tier == Tier::Local)
    }

    fn memory(&self, slot: &Slot) -> Arc<MemoryStore> {
        let fits = |store: &MemoryStore| store.ttl == slot.config.ttl && store.max_bytes == slot.config.max_bytes;
        if let Some(store) = self.memory.read().ok().and_then(|m| m.get(&slot.task).cloned()).filter(|s| fits(s)) {
            return store;
        }
        let mut stores = self.memory.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = stores
            .entry(slot.task.clone())
            .or_insert_with(|| Arc::new(MemoryStore::new(&slot.task, &slot.config, &self.metrics)));
        if !fits(store) {
            *store = Arc::new(MemoryStore::new(&slot.task, &slot.config, &self.metrics));
        }
        store.clone()
    }

    /// Exports every task store's bytes, expired entries removed first (at each scrape).
    pub fn observe(&self) {
        let stores: Vec<Arc<MemoryStore>> =
            self.memory.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for store in stores {
            store.observe();
        }
    }

    /// The answer kept for `slot`: this process's memory first, then Redis when the slot
    /// may use it. Redis failing (or known to be down) is a miss.
    pub async fn get(&self, slot: &Slot) -> Option<Hit> {
        if let Some(entry) = self.memory(slot).get(&slot.key) {
            return Some(Hit { entry, store: "memory" });
        }
        let shared = self.shared_for(slot.local_only)?;
        if shared.is_down() {
            return None;
        }
        match shared.cache_get(&slot.key).await {
            Ok(Some(bytes)) => Entry::decode(&bytes).map(|entry| Hit { entry: Arc::new(entry), store: "redis" }),
            Ok(None) => None,
            Err(_) => {
                self.metrics.cache_error("get");
                None
            }
        }
    }

    /// Keeps `entry` for `slot`: in Redis when the slot and the entry may go there (the
    /// write happens in the background), else in this process's memory.
    pub fn put(&self, slot: &Slot, entry: Entry, local_only: bool) {
        match self.shared_for(slot.local_only || local_only) {
            Some(shared) => {
                let (shared, key, ttl, metrics) = (shared.clone(), slot.key, slot.config.ttl, self.metrics.clone());
                let value = entry.encode();
                if value.len() as u64 > slot.config.max_bytes {
                    return;
                }
                tokio::spawn(async move {
                    if shared.cache_put(&key, value, ttl).await.is_err() {
                        metrics.cache_error("put");
                    }
                });
            }
            None => self.memory(slot).put(slot.key, entry),
        }
    }
}
