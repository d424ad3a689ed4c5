//! The final answer in a model's text: what `consistency` compares and what
//! `tierwise eval`'s `numeric` and `choice` graders grade. The final answer stands after
//! the last answer marker (`####`, `answer:`, `final answer`, `\boxed{`), else it is the
//! last one in the text.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::config::Extract;

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    #[expect(clippy::unwrap_used, reason = "a constant pattern")]
    Regex::new(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+").unwrap()
});

static ANSWER_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    #[expect(clippy::unwrap_used, reason = "a constant pattern")]
    Regex::new(r"(?i)####|final answer\s*(?:is)?\s*:?|answer\s*(?:is)?\s*:|\\boxed\{").unwrap()
});

/// The key an answer is grouped by, or `None` when it has no such answer.
pub fn key(text: &str, how: &Extract) -> Option<String> {
    match how {
        Extract::Number => final_number(text).map(format_number),
        Extract::Choice(choices) => final_choice(text, choices),
        Extract::Text => Some(normalized(text)).filter(|t| !t.is_empty()),
        Extract::Json(pointer) => {
            let value: Value = serde_json::from_str(strip_fence(text)).ok()?;
            value.pointer(pointer).map(Value::to_string)
        }
    }
}

/// `1,234.5` → 1234.5; `$12` → 12.
pub fn parse_number(text: &str) -> Option<f64> {
    let cleaned: String = text.chars().filter(|c| *c != ',' && *c != '$').collect();
    cleaned.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The text where the final answer is: after the last answer marker, else all of it.
fn answer_part(answer: &str) -> (&str, bool) {
    match ANSWER_MARKER.find_iter(answer).last() {
        Some(marker) => (&answer[marker.end()..], true),
        None => (answer, false),
    }
}

/// The final answer's number: the first after the last marker, else the text's last.
pub fn final_number(answer: &str) -> Option<f64> {
    let (part, marked) = answer_part(answer);
    let numbers = |text: &str| NUMBER.find_iter(text).filter_map(|m| parse_number(m.as_str())).collect::<Vec<_>>();
    if marked {
        numbers(part).first().copied().or_else(|| numbers(answer).last().copied())
    } else {
        numbers(answer).last().copied()
    }
}

pub fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

/// The final answer's choice: the first standalone choice after the last marker, else
/// the text's last standalone choice. Case counts first (so the article "a" is not
/// choice "A" when a "C" stands elsewhere), and is ignored only when that finds none.
pub fn final_choice(answer: &str, choices: &[String]) -> Option<String> {
    let alternatives: Vec<String> = choices.iter().map(|c| regex::escape(c)).collect();
    let body = format!(r"(?:^|[^\p{{L}}\p{{N}}])({})(?:$|[^\p{{L}}\p{{N}}])", alternatives.join("|"));
    let exact = Regex::new(&body).ok()?;
    let loose = Regex::new(&format!("(?i){body}")).ok()?;
    let pick = |finder: &Regex, text: &str, first: bool| {
        let mut found = finder.captures_iter(text).filter_map(|c| c.get(1).map(|m| m.as_str().to_string()));
        if first {
            found.next()
        } else {
            found.last()
        }
    };
    let (part, marked) = answer_part(answer);
    let found = [&exact, &loose].into_iter().find_map(|finder| {
        if marked {
            pick(finder, part, true).or_else(|| pick(finder, answer, false))
        } else {
            pick(finder, answer, false)
        }
    });
    found.and_then(|f| choices.iter().find(|c| c.eq_ignore_ascii_case(&f)).cloned())
}

/// Lowercased, whitespace collapsed, trailing punctuation dropped.
fn normalized(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").to_lowercase().trim_end_matches(['.', '!', '?', ';', ':', ',']).to_string()
}

/// A JSON answer may come in a Markdown fence.
fn strip_fence(text: &str) -> &str {
    let text = text.trim();
    let Some(inner) = text.strip_prefix("```") else { return text };
    let inner = inner.trim_start_matches(|c: char| c.is_alphanumeric());
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_after_the_marker_else_the_last() {
        assert_eq!(final_number("3 apples and 39 more make 42."), Some(42.0));
        assert_eq!(final_number("First 7, then 12.\n#### 42\nCheck: 6*7"), Some(42.0));
        assert_eq!(final_number("The answer is: $1,042"), Some(1042.0));
        assert_eq!(final_number("Answer: none"), None);
        assert_eq!(final_number("It was 5. Answer: unknown"), Some(5.0), "a marker without a number: the last one");
        assert_eq!(key("#### 12.0", &Extract::Number).as_deref(), Some("12"));
    }

    #[test]
    fn choices_text_and_json_keys() {
        let abcd: Vec<String> = ["A", "B", "C", "D"].map(String::from).to_vec();
        assert_eq!(final_choice("Between A and B... Answer: C", &abcd).as_deref(), Some("C"));
        assert_eq!(final_choice("I think it's (c)", &abcd).as_deref(), Some("C"));
        assert_eq!(final_choice("It's a trick; C holds", &abcd).as_deref(), Some("C"));
        assert_eq!(key("  The  Answer is Paris. ", &Extract::Text).as_deref(), Some("the answer is paris"));
        let json = Extract::Json("/answer".into());
        assert_eq!(key("```json\n{\"answer\": 42, \"why\": \"x\"}\n```", &json).as_deref(), Some("42"));
        assert_eq!(key("{\"other\": 1}", &json), None);
        assert_eq!(key("not json", &json), None);
    }
}
