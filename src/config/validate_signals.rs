//! Validation of the scored verifiers: `verify.confidence`, `verify.consistency`,
//! `verify.self_check`, and `verify.judge_threshold`.

use std::time::Duration;

use super::raw::{RawConfidence, RawConsistency, RawSelfCheck};
use super::validate::Problems;
use super::verify::{Confidence, ConfidenceScore, Consistency, Extract, Sampling, SelfCheck};
use crate::escalate::score;

/// The most samples a verifier may ask for: each is a model call.
const MAX_SAMPLES: usize = 20;

/// A score threshold: a number in [0, 1].
pub(super) fn threshold(path: String, value: Option<f64>, default: f64, problems: &mut Problems) -> f64 {
    match value {
        None => default,
        Some(t) if (0.0..=1.0).contains(&t) => t,
        Some(t) => {
            problems.hint(path, format!("{t} is not a score"), "a threshold is a number from 0 to 1");
            default
        }
    }
}

fn temperature(path: String, value: Option<f64>, problems: &mut Problems) -> f64 {
    match value {
        None => 0.7,
        Some(t) if (0.0..=2.0).contains(&t) => t,
        Some(t) => {
            problems.hint(path, format!("{t} is out of range"), "a temperature from 0 to 2");
            0.7
        }
    }
}

fn samples(path: String, value: Option<usize>, least: usize, default: usize, problems: &mut Problems) -> usize {
    match value {
        None => default,
        Some(n) if (least..=MAX_SAMPLES).contains(&n) => n,
        Some(n) => {
            problems.hint(path, format!("{n} samples"), format!("from {least} to {MAX_SAMPLES}"));
            default
        }
    }
}

fn timeout(value: Option<u64>, default_ms: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default_ms).max(1))
}

pub(super) fn confidence(path: &str, raw: &RawConfidence, problems: &mut Problems) -> Confidence {
    let path = format!("{path}.confidence");
    let k = match raw.k {
        None => 5,
        Some(0) => {
            problems.hint(format!("{path}.k"), "0 tokens", "at least 1");
            5
        }
        Some(k) => k,
    };
    if raw.k.is_some() && raw.score.as_deref() != Some("lowest_k") {
        problems.hint(
            format!("{path}.k"),
            "is only read by score = \"lowest_k\"",
            "set score = \"lowest_k\" or drop k",
        );
    }
    let score = match raw.score.as_deref().unwrap_or("mean") {
        "mean" => ConfidenceScore::Mean,
        "min" => ConfidenceScore::Min,
        "lowest_k" => ConfidenceScore::LowestMean(k),
        other => {
            problems.hint(format!("{path}.score"), format!("unknown score \"{other}\""), "mean, min or lowest_k");
            ConfidenceScore::Mean
        }
    };
    Confidence { threshold: threshold(format!("{path}.threshold"), raw.threshold, 0.5, problems), score }
}

pub(super) fn consistency(path: &str, raw: &RawConsistency, problems: &mut Problems) -> Consistency {
    let path = format!("{path}.consistency");
    let extract = match raw.extract.as_deref().unwrap_or("text") {
        "number" => Extract::Number,
        "text" => Extract::Text,
        "choice" => match &raw.choices {
            Some(choices) if !choices.is_empty() => Extract::Choice(choices.clone()),
            _ => {
                problems.hint(
                    format!("{path}.choices"),
                    "extract = \"choice\" needs its choices",
                    "choices = [\"A\", \"B\", \"C\", \"D\"]",
                );
                Extract::Text
            }
        },
        "json" => match &raw.pointer {
            Some(pointer) if pointer.is_empty() || pointer.starts_with('/') => Extract::Json(pointer.clone()),
            Some(pointer) => {
                problems.hint(
                    format!("{path}.pointer"),
                    format!("\"{pointer}\" is not a JSON pointer"),
                    "like \"/answer\"",
                );
                Extract::Text
            }
            None => {
                problems.hint(
                    format!("{path}.pointer"),
                    "extract = \"json\" needs a pointer",
                    "pointer = \"/answer\" (\"\" for the whole value)",
                );
                Extract::Text
            }
        },
        other => {
            problems.hint(
                format!("{path}.extract"),
                format!("unknown extract \"{other}\""),
                "number, choice, text or json",
            );
            Extract::Text
        }
    };
    if raw.choices.is_some() && !matches!(extract, Extract::Choice(_)) {
        problems.hint(
            format!("{path}.choices"),
            "is only read by extract = \"choice\"",
            "set extract = \"choice\" or drop choices",
        );
    }
    if raw.pointer.is_some() && !matches!(extract, Extract::Json(_)) {
        problems.hint(
            format!("{path}.pointer"),
            "is only read by extract = \"json\"",
            "set extract = \"json\" or drop pointer",
        );
    }
    let sampling = match raw.sampling.as_deref().unwrap_or("auto") {
        "auto" => Sampling::Auto,
        "n" => Sampling::N,
        "calls" => Sampling::Calls,
        other => {
            problems.hint(format!("{path}.sampling"), format!("unknown sampling \"{other}\""), "auto, n or calls");
            Sampling::Auto
        }
    };
    Consistency {
        samples: samples(format!("{path}.samples"), raw.samples, 2, 5, problems),
        temperature: temperature(format!("{path}.temperature"), raw.temperature, problems),
        extract,
        threshold: threshold(format!("{path}.threshold"), raw.threshold, 0.6, problems),
        sampling,
        timeout: timeout(raw.timeout_ms, 60_000),
    }
}

pub(super) fn self_check(path: &str, raw: &RawSelfCheck, problems: &mut Problems) -> SelfCheck {
    let path = format!("{path}.self_check");
    if let Some(prompt) = &raw.prompt {
        if !prompt.contains("{answer}") {
            problems.hint(
                format!("{path}.prompt"),
                "does not contain {answer}",
                "the model must see the answer it checks",
            );
        }
    }
    SelfCheck {
        prompt: raw.prompt.clone().unwrap_or_else(|| score::self_check::DEFAULT_PROMPT.to_string()),
        samples: samples(format!("{path}.samples"), raw.samples, 1, 1, problems),
        temperature: temperature(format!("{path}.temperature"), raw.temperature, problems),
        threshold: threshold(format!("{path}.threshold"), raw.threshold, 0.5, problems),
        timeout: timeout(raw.timeout_ms, 30_000),
    }
}
