//! The sensitive-content detector on its corpus (`tests/fixtures/detector`, made by
//! `generate.py`): planted personal data of every family and variant must be found
//! (recall), and number-heavy ordinary text must not be flagged (false positives). The
//! numbers are printed; `docs/privacy.md` quotes them.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tierwise::policy::{Detector, Opaque, Scanner};

use crate::support::fixtures_dir;

/// The corpus: `tests/fixtures/detector`, or `TIERWISE_DETECTOR_CORPUS` (a directory with
/// the same two files, e.g. made by `generate.py` with another seed: a held-out check).
fn corpus(file: &str) -> String {
    let dir = std::env::var_os("TIERWISE_DETECTOR_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fixtures_dir().join("detector"));
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// Recall every family must reach, and the false-positive rate ordinary text must stay
/// under (the goals).
const MIN_RECALL: f64 = 0.995;
const MAX_FALSE_POSITIVES: f64 = 0.005;

/// Whether the detector finds the planted item, reading the line's text parts as the
/// content parts of one message (as a request's are read).
fn found(detector: &Detector, parts: &[Value]) -> bool {
    let scanner = Scanner { detector, opaque: Opaque::Normal };
    let content: Vec<Value> = parts.iter().map(|p| json!({"type": "text", "text": p})).collect();
    scanner.value(&mut Vec::new(), &json!({"content": content})).is_some()
}

#[test]
fn finds_planted_personal_data_in_every_family() {
    let detector = Detector::standard();
    let corpus = corpus("pii.jsonl");
    let mut families: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for line in corpus.lines() {
        let item: Value = serde_json::from_str(line).unwrap();
        let family = item["family"].as_str().unwrap().to_string();
        let entry = families.entry(family.clone()).or_default();
        entry.1 += 1;
        if found(&detector, item["parts"].as_array().unwrap()) {
            entry.0 += 1;
        } else {
            missed.push(format!("{family}: {}", item["parts"]));
        }
    }
    let mut low = Vec::new();
    for (family, (hit, total)) in &families {
        let recall = *hit as f64 / *total as f64;
        eprintln!("recall {family:<20} {hit:>4}/{total:<4} {:.1} %", recall * 100.0);
        if recall < MIN_RECALL {
            low.push(family.clone());
        }
    }
    assert!(families.len() >= 15, "every family is in the corpus: {families:?}");
    assert!(families.values().all(|(_, total)| *total >= 50), "at least 50 lines a family");
    assert!(low.is_empty(), "recall below {MIN_RECALL} in {low:?}; missed: {missed:#?}");
}

#[test]
fn flags_almost_no_ordinary_text() {
    let detector = Detector::standard();
    let corpus = corpus("plain.txt");
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tierwise.toml")).unwrap();
    let lines: Vec<&str> = corpus.lines().chain(config.lines()).collect();
    let flagged: Vec<(String, &str)> =
        lines.iter().filter_map(|line| detector.find(line).map(|what| (what, *line))).collect();
    let rate = flagged.len() as f64 / lines.len() as f64;
    eprintln!("false positives: {}/{} lines ({:.2} %)", flagged.len(), lines.len(), rate * 100.0);
    for (what, line) in &flagged {
        eprintln!("  {what}: {line}");
    }
    assert!(lines.len() >= 2000, "a corpus of at least 2,000 lines");
    assert!(rate <= MAX_FALSE_POSITIVES, "false positives above {MAX_FALSE_POSITIVES}: {flagged:#?}");
}
