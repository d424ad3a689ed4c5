//! `consistency`: the model is asked again, at a temperature, and its answers compared by
//! their final answer (a number, a choice, the normalized text, a JSON value). When the
//! largest group of agreeing answers reaches the threshold share, the answer is
//! accepted — replaced by one from that group if it was not in it. Otherwise the answer
//! escalates, and the feedback names the disagreement.

use serde_json::Value;

use crate::config::Consistency;

use super::extract;

/// How far one key of the feedback may run.
const SHOWN_KEY: usize = 60;

/// How the answers agreed.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// The largest group's share of all answers (the verified one included).
    pub score: f64,
    /// Each group's key and size, largest first; answers without a final answer are not
    /// in a group.
    pub groups: Vec<(String, usize)>,
    pub unanswered: usize,
    /// When the verified answer is not in the largest group: the sample (by index) to
    /// answer with instead.
    pub replacement: Option<usize>,
}

/// The text of a choice's message.
pub fn text_of(choice: &Value) -> &str {
    choice.pointer("/message/content").and_then(Value::as_str).unwrap_or("")
}

/// Compares `answer` (the verified text) with the `samples` (choices).
pub fn agree(answer: &str, samples: &[Value], config: &Consistency) -> Agreement {
    let original = extract::key(answer, &config.extract);
    let keys: Vec<Option<String>> = samples.iter().map(|s| extract::key(text_of(s), &config.extract)).collect();
    // Groups in order of first appearance; the verified answer's first.
    let mut groups: Vec<(String, usize)> = Vec::new();
    for key in std::iter::once(&original).chain(&keys).flatten() {
        match groups.iter_mut().find(|(k, _)| k == key) {
            Some((_, count)) => *count += 1,
            None => groups.push((key.clone(), 1)),
        }
    }
    // A stable sort keeps the earlier group (the verified answer's) first among equals.
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    let total = samples.len() + 1;
    let unanswered = total - groups.iter().map(|g| g.1).sum::<usize>();
    let largest = groups.first().cloned();
    let score = largest.as_ref().map_or(0.0, |(_, n)| *n as f64 / total as f64);
    let replacement = match (&largest, &original) {
        (Some((key, _)), Some(own)) if key == own => None,
        (Some((key, _)), _) => keys.iter().position(|k| k.as_ref() == Some(key)),
        (None, _) => None,
    };
    Agreement { score, groups, unanswered, replacement }
}

/// The feedback for the next step: how the answers split.
pub fn feedback(agreement: &Agreement, threshold: f64) -> String {
    let total = agreement.groups.iter().map(|g| g.1).sum::<usize>() + agreement.unanswered;
    let mut parts: Vec<String> = agreement
        .groups
        .iter()
        .map(|(key, n)| {
            let shown: String = key.chars().take(SHOWN_KEY).collect();
            let cut = if shown.len() < key.len() { "…" } else { "" };
            format!("{shown}{cut} ×{n}")
        })
        .collect();
    if agreement.unanswered > 0 {
        parts.push(format!("no final answer ×{}", agreement.unanswered));
    }
    format!(
        "{total} answers of a smaller model disagreed ({:.0} % agree, {:.0} % needed): {}; work it out carefully",
        agreement.score * 100.0,
        threshold * 100.0,
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Extract, Sampling};
    use serde_json::json;
    use std::time::Duration;

    fn config(extract: Extract) -> Consistency {
        Consistency {
            samples: 5,
            temperature: 0.7,
            extract,
            threshold: 0.6,
            sampling: Sampling::Calls,
            timeout: Duration::from_secs(1),
        }
    }

    fn choices(texts: &[&str]) -> Vec<Value> {
        texts.iter().map(|t| json!({"index": 0, "message": {"role": "assistant", "content": t}})).collect()
    }

    #[test]
    fn the_largest_group_decides_and_replaces_an_outlier() {
        let numbers = config(Extract::Number);
        let agreed = agree("So #### 42", &choices(&["42", "It is 42.", "41", "#### 42"]), &numbers);
        assert_eq!(agreed.score, 0.8);
        assert_eq!(agreed.groups, [("42".to_string(), 4), ("41".to_string(), 1)]);
        assert_eq!(agreed.replacement, None);

        let outvoted = agree("#### 40", &choices(&["42", "42", "42", "nothing"]), &numbers);
        assert_eq!((outvoted.score, outvoted.unanswered), (0.6, 1));
        assert_eq!(outvoted.replacement, Some(0), "answer with a sample of the largest group");

        let split = agree("#### 1", &choices(&["2", "3", "2", "1"]), &numbers);
        assert_eq!(split.score, 0.4);
        assert_eq!(split.replacement, None, "a tie keeps the verified answer's group first");
        assert_eq!(
            feedback(&split, 0.6),
            "5 answers of a smaller model disagreed (40 % agree, 60 % needed): 1 ×2, 2 ×2, 3 ×1; work it out carefully"
        );
    }

    #[test]
    fn choices_text_and_json_group_by_their_own_keys() {
        let abc = config(Extract::Choice(vec!["A".into(), "B".into(), "C".into()]));
        assert_eq!(agree("Answer: B", &choices(&["(b)", "B.", "C", "I pick B"]), &abc).score, 0.8);
        let text = config(Extract::Text);
        assert_eq!(agree("Paris.", &choices(&["paris", " Paris ", "Lyon", "PARIS!"]), &text).score, 0.8);
        let json = config(Extract::Json("/city".into()));
        let agreed = agree(r#"{"city": "Paris"}"#, &choices(&[r#"{"city":"Paris","n":1}"#, "oops"]), &json);
        assert_eq!((agreed.score, agreed.unanswered), (2.0 / 3.0, 1));
    }
}
