//! Graders: whether an answer is right. Each reads the model's final message text;
//! `numeric` and `choice` first find the final answer in it (after `####` or
//! `answer:`, else the last one in the text), the way the task sets write theirs.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::escalate::score::extract::{final_choice, final_number, format_number, parse_number};

/// How a dataset line's answer is graded (`"grader": {"type": ...}`, or just the name).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Grader {
    /// The trimmed answer equals `expected`.
    Exact {
        #[serde(default)]
        ignore_case: bool,
    },
    /// The answer's final number is within `tolerance` of `expected`.
    Numeric {
        #[serde(default = "default_tolerance")]
        tolerance: f64,
    },
    /// The answer matches `pattern` (default: `expected` as a pattern).
    Regex {
        #[serde(default)]
        pattern: Option<String>,
        #[serde(skip)]
        compiled: Option<Regex>,
    },
    /// The answer contains `expected` (a string, or every string of a list).
    Contains {
        #[serde(default)]
        ignore_case: bool,
    },
    /// The answer's final choice, one of `choices`, is `expected` (case ignored).
    Choice { choices: Vec<String> },
    /// An external program grades: see `command.rs`.
    Command {
        argv: Vec<String>,
        #[serde(default = "default_command_timeout_ms")]
        timeout_ms: u64,
    },
}

fn default_tolerance() -> f64 {
    1e-6
}

fn default_command_timeout_ms() -> u64 {
    10_000
}

/// The verdict on one answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grade {
    pub correct: bool,
    /// What the grader took as the answer (the number, the choice), when it extracts one.
    pub extracted: Option<String>,
    /// The grader could not grade (a command that crashed or timed out); counted wrong.
    pub error: Option<String>,
}

impl Grade {
    fn of(correct: bool, extracted: Option<String>) -> Self {
        Grade { correct, extracted, error: None }
    }

    pub fn failed(error: String) -> Self {
        Grade { correct: false, extracted: None, error: Some(error) }
    }
}

impl Grader {
    /// Reads a grader from a dataset line: an object with `type`, or a bare name.
    pub fn parse(value: &Value, expected: &Value) -> Result<Self, String> {
        let value = match value {
            Value::String(name) => serde_json::json!({ "type": name }),
            other => other.clone(),
        };
        let mut grader: Grader = serde_json::from_value(value).map_err(|e| format!("`grader`: {e}"))?;
        grader.check(expected)?;
        Ok(grader)
    }

    /// What `expected` must be for this grader; compiles a regex.
    fn check(&mut self, expected: &Value) -> Result<(), String> {
        match self {
            Grader::Exact { .. } => text_of(expected).map(drop).ok_or("`expected` must be a string or a number")?,
            Grader::Numeric { tolerance } => {
                if !(tolerance.is_finite() && *tolerance >= 0.0) {
                    return Err("`grader.tolerance` must be a non-negative number".into());
                }
                number_of(expected).ok_or("`expected` must be a number (or a string holding one)")?;
            }
            Grader::Regex { pattern, compiled } => {
                let source = match pattern {
                    Some(p) => p.clone(),
                    None => text_of(expected).ok_or("`expected` must be the pattern, or set `grader.pattern`")?,
                };
                *compiled = Some(Regex::new(&source).map_err(|e| format!("`grader.pattern`: {e}"))?);
            }
            Grader::Contains { .. } => {
                expected_texts(expected).ok_or("`expected` must be a string or a list of strings")?;
            }
            Grader::Choice { choices } => {
                if choices.is_empty() {
                    return Err("`grader.choices` must not be empty".into());
                }
                let expected = text_of(expected).ok_or("`expected` must be one of `grader.choices`")?;
                if !choices.iter().any(|c| c.eq_ignore_ascii_case(&expected)) {
                    return Err(format!("`expected` \"{expected}\" is not one of `grader.choices`"));
                }
            }
            Grader::Command { argv, timeout_ms } => {
                if argv.is_empty() {
                    return Err("`grader.argv` must name a program".into());
                }
                if *timeout_ms == 0 {
                    return Err("`grader.timeout_ms` must be positive".into());
                }
            }
        }
        Ok(())
    }

    /// Grades `answer` against `expected` (every grader but `command`, which runs a
    /// program and lives in `command.rs`).
    pub fn grade(&self, answer: &str, expected: &Value) -> Grade {
        match self {
            Grader::Exact { ignore_case } => {
                let (answer, expected) = (answer.trim(), text_of(expected).unwrap_or_default());
                let same =
                    if *ignore_case { answer.to_lowercase() == expected.to_lowercase() } else { answer == expected };
                Grade::of(same, None)
            }
            Grader::Numeric { tolerance } => {
                let Some(found) = final_number(answer) else { return Grade::of(false, None) };
                let right = number_of(expected).is_some_and(|e| (found - e).abs() <= *tolerance);
                Grade::of(right, Some(format_number(found)))
            }
            Grader::Regex { compiled, .. } => Grade::of(compiled.as_ref().is_some_and(|r| r.is_match(answer)), None),
            Grader::Contains { ignore_case } => {
                let wanted = expected_texts(expected).unwrap_or_default();
                let haystack = if *ignore_case { answer.to_lowercase() } else { answer.to_string() };
                let all =
                    wanted.iter().all(|w| haystack.contains(&if *ignore_case { w.to_lowercase() } else { w.clone() }));
                Grade::of(all, None)
            }
            Grader::Choice { choices } => {
                let found = final_choice(answer, choices);
                let expected = text_of(expected).unwrap_or_default();
                Grade::of(found.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(&expected)), found)
            }
            Grader::Command { .. } => Grade::failed("a command grader runs through eval::command".into()),
        }
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn expected_texts(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s.trim()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grader(spec: Value, expected: &Value) -> Grader {
        Grader::parse(&spec, expected).unwrap()
    }

    #[test]
    fn numeric_reads_the_marked_answer_else_the_last_number() {
        let g = grader(json!({"type": "numeric"}), &json!(42));
        assert!(g.grade("3 apples and 39 more make 42.", &json!(42)).correct);
        assert!(g.grade("First 7, then 12.\n#### 42\nCheck: 6*7", &json!(42)).correct);
        assert!(g.grade("The answer is: $1,042", &json!(1042)).correct);
        assert!(!g.grade("It is 42 or so, so the answer: 41", &json!(42)).correct);
        assert_eq!(g.grade("Answer: 41", &json!(42)).extracted.as_deref(), Some("41"));
        assert!(!g.grade("no number here", &json!(42)).correct);
        let loose = grader(json!({"type": "numeric", "tolerance": 0.01}), &json!("2.5"));
        assert!(loose.grade("about 2.505", &json!("2.5")).correct);
        assert!(!loose.grade("about 2.52", &json!("2.5")).correct);
        assert!(g.grade("-.5 then -3", &json!(-3)).correct);
    }

    #[test]
    fn choice_exact_contains_and_regex() {
        let choice = grader(json!({"type": "choice", "choices": ["A", "B", "C", "D"]}), &json!("C"));
        assert!(choice.grade("Between A and B... Answer: C", &json!("C")).correct);
        assert!(choice.grade("I think it's (c)", &json!("C")).correct);
        assert!(choice.grade("It's a trick; C holds", &json!("C")).correct);
        assert!(!choice.grade("A Bad choice: Answer: B", &json!("C")).correct);
        assert_eq!(choice.grade("no letter", &json!("C")).extracted, None);
        let exact = grader(json!("exact"), &json!("Paris"));
        assert!(exact.grade("  Paris\n", &json!("Paris")).correct);
        assert!(!exact.grade("paris", &json!("Paris")).correct);
        assert!(
            grader(json!({"type": "exact", "ignore_case": true}), &json!("Paris"))
                .grade("paris", &json!("Paris"))
                .correct
        );
        let contains = grader(json!("contains"), &json!(["def", "return"]));
        assert!(contains.grade("def f():\n    return 1", &json!(["def", "return"])).correct);
        assert!(!contains.grade("def f(): pass", &json!(["def", "return"])).correct);
        let regex = grader(json!({"type": "regex", "pattern": "^\\d{3}$"}), &json!(null));
        assert!(regex.grade("123", &json!(null)).correct);
        assert!(!regex.grade("1234", &json!(null)).correct);
    }

    #[test]
    fn a_grader_that_cannot_work_is_refused_with_its_reason() {
        let bad = |spec: Value, expected: Value| Grader::parse(&spec, &expected).unwrap_err();
        assert!(bad(json!("numeric"), json!("many")).contains("must be a number"));
        assert!(bad(json!({"type": "regex", "pattern": "("}), json!(null)).contains("grader.pattern"));
        assert!(bad(json!({"type": "choice", "choices": ["A"]}), json!("B")).contains("not one of"));
        assert!(bad(json!({"type": "command", "argv": []}), json!(null)).contains("argv"));
        assert!(bad(json!("fuzzy"), json!(1)).contains("unknown variant"));
        assert!(bad(json!({"type": "exact", "typo": 1}), json!("x")).contains("unknown field"));
    }
}
