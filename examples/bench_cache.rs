//! Benchmark: what the response cache costs a request that misses — the canonical key
//! (parse-free: the request is already parsed) and a lookup in a full in-memory store —
//! and what a store costs, by request size.
//!
//! `cargo run --release --example bench_cache` — prints the median µs of 15 batches for:
//!
//! - `key`: the SHA-256 of the canonical request (messages, tools, sampling fields);
//! - `get (miss)`: a lookup in a store holding 10,000 entries that does not find it;
//! - `get (hit)`: a lookup that does;
//! - `put`: storing an answer of 1 KiB (and settling the store's byte bound).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tierwise::cache::key::{self, Namespace};
use tierwise::cache::{Entry, ResponseCache, Slot};
use tierwise::config::CacheConfig;
use tierwise::metrics::Metrics;
use tierwise::openai::ChatRequest;
use tierwise::policy::{ContentClass, Tier};

fn request(words: usize) -> Result<ChatRequest, serde_json::Error> {
    let text: String = (0..words).map(|i| format!("word{i} ")).collect();
    let body = json!({"model": "chat", "temperature": 0, "max_tokens": 256,
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object",
            "properties": {"q": {"type": "string"}}}}}]});
    serde_json::from_value(body)
}

fn median_us(batch: usize, mut op: impl FnMut(usize)) -> f64 {
    let mut times: Vec<f64> = (0..15)
        .map(|b| {
            let started = Instant::now();
            for i in 0..batch {
                op(b * batch + i);
            }
            started.elapsed().as_secs_f64() * 1e6 / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[7]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CacheConfig {
        ttl: Duration::from_secs(3600),
        max_bytes: 64 << 20,
        deterministic_only: true,
        per_key: false,
        version: [1; 32],
    };
    let namespace = Namespace { task: "chat", profile: "default", key: None, class: ContentClass::Normal };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let metrics = Metrics::new()?;
    let cache = ResponseCache::new(None, Tier::Local, metrics);
    let slot = |key: [u8; 32]| Slot { task: "chat".into(), key, config: config.clone(), local_only: false };
    let answer = Bytes::from(vec![b'a'; 1024]);
    for i in 0..10_000u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        cache.put(&slot(key), Entry::new(answer.clone(), Tier::Local, "m", 0.0), false);
    }
    println!("{:<28} {:>10}", "operation", "µs (median)");
    for words in [10, 200, 2_000] {
        let req = request(words)?;
        let bytes = serde_json::to_vec(&req.messages).map_or(0, |v| v.len());
        let us = median_us(2_000, |_| {
            std::hint::black_box(key::key(&config, &namespace, &req));
        });
        println!("{:<28} {:>10.2}", format!("key ({bytes} B of messages)"), us);
    }
    let missing = slot([9; 32]);
    let us = median_us(20_000, |_| {
        std::hint::black_box(runtime.block_on(cache.get(&missing)).is_some());
    });
    println!("{:<28} {:>10.2}", "get (miss)", us);
    let mut present = [0u8; 32];
    present[..4].copy_from_slice(&7u32.to_le_bytes());
    let present = slot(present);
    let us = median_us(20_000, |_| {
        std::hint::black_box(runtime.block_on(cache.get(&present)).is_some());
    });
    println!("{:<28} {:>10.2}", "get (hit)", us);
    let us = median_us(2_000, |i| {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(u64::MAX - i as u64).to_le_bytes());
        cache.put(&slot(key), Entry::new(answer.clone(), Tier::Local, "m", 0.0), false);
    });
    println!("{:<28} {:>10.2}", "put (1 KiB answer)", us);
    Ok(())
}
