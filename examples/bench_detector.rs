//! Benchmark: the sensitive-content detector's cost per KiB of message text.
//!
//! `cargo run --release --example bench_detector` — scans 4 KiB of ordinary prose (the
//! worst case: nothing found, every detector runs over all of it) and 4 KiB with one
//! planted item at the end, many times, and prints the median µs per KiB of 15 batches.

use std::time::Instant;

use tierwise::policy::{Builtin, Detector};

fn main() {
    let corpus = include_str!("../tests/fixtures/detector/plain.txt");
    let mut plain = String::new();
    for line in corpus.lines().cycle() {
        if plain.len() + line.len() + 1 > 4096 {
            break;
        }
        plain.push_str(line);
        plain.push(' ');
    }
    let planted = format!("{} write to anna@example.org", &plain[..plain.len() - 40]);
    let detector = match Detector::new(&Builtin::ALL, Vec::new()) {
        Ok(d) => d,
        Err(e) => panic!("detector: {e}"),
    };
    for (name, text) in [("plain 4 KiB (no finding)", plain.as_str()), ("4 KiB, email at the end", planted.as_str())] {
        let kib = text.len() as f64 / 1024.0;
        let iterations = 2000;
        let mut per_kib: Vec<f64> = (0..15)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..iterations {
                    std::hint::black_box(detector.scan([("messages[0].content", std::hint::black_box(text))]));
                }
                started.elapsed().as_secs_f64() * 1e6 / iterations as f64 / kib
            })
            .collect();
        per_kib.sort_by(f64::total_cmp);
        println!("{name}: median {:.2} µs/KiB (min {:.2}, max {:.2})", per_kib[7], per_kib[0], per_kib[14]);
    }
}
