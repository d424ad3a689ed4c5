//! The sensitive-content detector on a corpus: planted PII must be found (recall), and
//! ordinary text full of numbers must not be flagged (false positives).

use std::collections::BTreeMap;

use tierwise::policy::{Builtin, Detector};

use crate::support::fixtures_dir;

fn detector() -> Detector {
    Detector::new(&Builtin::ALL, Vec::new()).unwrap()
}

#[test]
fn finds_every_planted_item_of_every_kind() {
    let d = detector();
    let corpus = std::fs::read_to_string(fixtures_dir().join("detector/pii.txt")).unwrap();
    let mut found: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for line in corpus.lines() {
        let (kind, text) = line.split_once('\t').unwrap();
        let entry = found.entry(kind).or_default();
        entry.1 += 1;
        if d.find(text).is_some() {
            entry.0 += 1;
        } else {
            missed.push(text);
        }
    }
    for (kind, (hit, total)) in &found {
        eprintln!("recall {kind}: {hit}/{total}");
    }
    assert_eq!(found.len(), 4);
    assert!(missed.is_empty(), "missed {} of 400: {missed:#?}", missed.len());
}

#[test]
fn flags_no_ordinary_text() {
    let d = detector();
    let corpus = std::fs::read_to_string(fixtures_dir().join("detector/plain.txt")).unwrap();
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tierwise.toml")).unwrap();
    let lines: Vec<&str> = corpus.lines().chain(config.lines()).collect();
    let flagged: Vec<(String, &str)> = lines.iter().filter_map(|line| d.find(line).map(|what| (what, *line))).collect();
    eprintln!("false positives: {}/{} lines", flagged.len(), lines.len());
    assert!(flagged.is_empty(), "flagged ordinary text: {flagged:#?}");
}
