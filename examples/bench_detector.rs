//! Benchmark: the sensitive-content detector's cost per KiB of text.
//!
//! `cargo run --release --example bench_detector` — scans texts where nothing is found
//! (the worst case: every detector runs over all of it), many times each, and prints the
//! median µs per KiB of 15 batches:
//!
//! - the number-heavy corpus `tests/fixtures/detector/plain.txt` (dates, logs, tracking
//!   numbers, ISBNs…: many candidate numbers to check), in 4 KiB pieces;
//! - prose in scripts other than Latin (every character goes through normalization);
//! - the same 4 KiB with an email address at the end.

use std::time::Instant;

use tierwise::policy::Detector;

/// About `size` bytes of `lines`, whole lines only.
fn piece(lines: &[&str], size: usize) -> String {
    let mut out = String::new();
    for line in lines.iter().cycle() {
        if out.len() + line.len() + 1 > size {
            break;
        }
        out.push_str(line);
        out.push(' ');
    }
    out
}

fn median_us_per_kib(detector: &Detector, texts: &[String]) -> (f64, f64, f64) {
    let bytes: usize = texts.iter().map(String::len).sum();
    let kib = bytes as f64 / 1024.0;
    let rounds = (2_000_000 / bytes).max(3);
    let mut per_kib: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds {
                for text in texts {
                    std::hint::black_box(detector.find(std::hint::black_box(text)));
                }
            }
            started.elapsed().as_secs_f64() * 1e6 / rounds as f64 / kib
        })
        .collect();
    per_kib.sort_by(f64::total_cmp);
    (per_kib[7], per_kib[0], per_kib[14])
}

fn main() {
    let corpus = include_str!("../tests/fixtures/detector/plain.txt");
    let lines: Vec<&str> = corpus.lines().collect();
    let pieces: Vec<String> = lines.chunks(40).map(|chunk| piece(chunk, 4096)).collect();
    let prose = [
        "东京的天气今天很好，我们在公园里散步，然后去咖啡馆喝茶聊天。",
        "Погода сегодня хорошая, мы гуляли в парке и потом пили чай в кафе.",
        "الطقس جميل اليوم، مشينا في الحديقة ثم شربنا الشاي في المقهى.",
        "आज मौसम अच्छा है, हम पार्क में घूमे और फिर कैफ़े में चाय पी।",
        "今日は天気が良いので、公園を散歩してからカフェでお茶を飲みました。",
    ];
    let scripts = vec![piece(&prose, 4096)];
    let planted = vec![format!("{} write to anna@example.org", pieces[0])];
    let detector = Detector::standard();
    for (name, texts) in [
        ("number-heavy corpus, 4 KiB pieces", &pieces),
        ("non-Latin prose, 4 KiB (nothing found)", &scripts),
        ("4 KiB, email at the end", &planted),
    ] {
        let (median, min, max) = median_us_per_kib(&detector, texts);
        println!("{name}: median {median:.2} µs/KiB (min {min:.2}, max {max:.2})");
    }
}
