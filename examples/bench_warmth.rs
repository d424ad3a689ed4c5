//! Benchmark: what warmth costs the request path.
//!
//! `cargo run --release --example bench_warmth`
//!
//! 1. `Warmth::is_warm` lookups, median ns of 15 batches: an upstream without warmth
//!    (`none`), one with a probed llama-swap snapshot, and the same while another thread
//!    marks models warm (writes to the same `watch` channel) as fast as it can.
//! 2. A whole chat completion through tierwise against a local double, warmth `none`
//!    versus `llama-swap` probed every 50 ms (25 times the default rate), rounds
//!    alternating; median and p99 µs.
#![expect(clippy::expect_used, reason = "a benchmark that cannot run stops, saying why")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use tierwise::app::AppState;
use tierwise::config;
use tierwise::metrics::Metrics;
use tierwise::warmth::{Observation, Warmth};

const COMPLETION: &[u8] = include_bytes!("../tests/fixtures/openai/chat_completion.json");

fn config_text(base_url: &str, warmth: &str) -> String {
    let mut toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{base_url}\"\nwarmth = \"{warmth}\"\nrefresh_ms = 50\nprobe_timeout_ms = 50\n\n"
    );
    for i in 0..8 {
        toml.push_str(&format!("[models.m{i}]\nupstream = \"local\"\nname = \"model-{i}\"\n\n"));
    }
    toml.push_str("[tasks.chat]\nchain = [\"m0\"]\n");
    toml
}

fn warmth_for(warmth: &str) -> Warmth {
    let config = config::load_from_str(&config_text("http://127.0.0.1:9/v1", warmth), &|_| None)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let warmth = Warmth::new(&config, Metrics::new().expect("metrics")).expect("warmth");
    let loaded = (0..8).map(|i| format!("model-{i}")).collect();
    warmth.set_observation("local", Observation::Loaded(loaded));
    warmth
}

fn lookups(name: &str, warmth: &Warmth) {
    let iterations = 200_000;
    let mut ns: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            for i in 0..iterations {
                let model = if i % 2 == 0 { "model-3" } else { "model-9" };
                std::hint::black_box(warmth.is_warm(std::hint::black_box("local"), std::hint::black_box(model)));
            }
            started.elapsed().as_secs_f64() * 1e9 / iterations as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    println!("is_warm, {name}: median {:.0} ns (min {:.0}, max {:.0})", ns[7], ns[0], ns[14]);
}

async fn double() -> SocketAddr {
    let app = Router::new()
        .route("/v1/chat/completions", post(|| async { ([("content-type", "application/json")], COMPLETION) }))
        .route("/running", get(|| async { r#"{"running":[{"model":"model-0","state":"ready"}]}"# }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Starts tierwise, sends `n` requests one after another, returns µs per request.
async fn round(upstream: SocketAddr, warmth: &str, n: usize) -> Vec<f64> {
    let config = config::load_from_str(&config_text(&format!("http://{upstream}/v1"), warmth), &|_| None)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let state = AppState::new(config).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/chat/completions", listener.local_addr().expect("addr"));
    let stop = state.shutdown.clone();
    let server = tokio::spawn(tierwise::server::serve(listener, state));
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let body = serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "Say hello."}]});
    let mut micros = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = client.post(&url).json(&body).send().await.expect("send");
        assert!(response.status().is_success(), "{}", response.status());
        response.bytes().await.expect("body");
        micros.push(started.elapsed().as_secs_f64() * 1e6);
    }
    stop.cancel();
    let _ = server.await;
    micros
}

fn summary(mut micros: Vec<f64>) -> String {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q) as usize];
    format!("median {:.0} µs, p99 {:.0} µs ({} requests)", at(0.5), at(0.99), micros.len())
}

#[tokio::main]
async fn main() {
    tierwise::upstream::install_crypto_provider();
    let off = warmth_for("none");
    let on = warmth_for("llama-swap");
    lookups("warmth none", &off);
    lookups("llama-swap snapshot", &on);
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (on, writing) = (on.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut marks = 0u64;
            while writing.load(Ordering::Relaxed) {
                on.mark_warm("local", "model-5");
                marks += 1;
            }
            marks
        })
    };
    lookups("llama-swap snapshot, concurrent marks", &on);
    writing.store(false, Ordering::Relaxed);
    let marks = writer.join().expect("writer");
    println!("  (the writer marked {marks} times meanwhile)");

    let upstream = double().await;
    round(upstream, "none", 200).await; // warm-up
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        without.extend(round(upstream, "none", 1000).await);
        with.extend(round(upstream, "llama-swap", 1000).await);
    }
    println!("chat completion, warmth none:                     {}", summary(without));
    println!("chat completion, llama-swap probed every 50 ms:   {}", summary(with));
    tokio::time::sleep(Duration::from_millis(10)).await;
}
