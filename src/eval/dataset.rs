//! The dataset: JSONL, one item per line — `messages` and any other request fields, the
//! `expected` answer and its `grader`, and an optional `id`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::grade::Grader;
use super::rng::Rng;

/// Fields of a line that are not sent to the model.
const EVAL_FIELDS: [&str; 3] = ["id", "expected", "grader"];

/// Request fields eval sets itself.
const EVAL_SETS: [&str; 2] = ["model", "stream"];

/// How many problems a bad dataset's error lists.
const SHOWN_PROBLEMS: usize = 20;

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// What is sent: `messages` and the line's other request fields.
    pub request: Map<String, Value>,
    pub expected: Value,
    pub grader: Grader,
    /// The whole line, for a `command` grader.
    pub raw: Value,
}

#[derive(Debug)]
pub struct Dataset {
    pub path: PathBuf,
    /// The file's directory (`{dataset_dir}` in a command grader's argv).
    pub dir: PathBuf,
    pub items: Vec<Item>,
}

impl Dataset {
    /// Reads and checks every line; the error lists each bad line's problem.
    pub fn load(path: &Path) -> Result<Dataset, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the dataset {}: {e}", path.display()))?;
        let mut items = Vec::new();
        let mut problems = Vec::new();
        let mut ids = HashSet::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            match item(number, line) {
                Ok(item) if !ids.insert(item.id.clone()) => {
                    problems.push(format!("line {number}: the id \"{}\" is used twice", item.id));
                }
                Ok(item) => items.push(item),
                Err(problem) => problems.push(format!("line {number}: {problem}")),
            }
        }
        if items.is_empty() && problems.is_empty() {
            problems.push("no items".into());
        }
        if !problems.is_empty() {
            let total = problems.len();
            problems.truncate(SHOWN_PROBLEMS);
            let more = total - problems.len();
            let more = if more > 0 { format!("\n  - … and {more} more") } else { String::new() };
            return Err(format!(
                "the dataset {} has {total} problem{}:\n  - {}{more}",
                path.display(),
                if total == 1 { "" } else { "s" },
                problems.join("\n  - ")
            ));
        }
        let dir = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Dataset { path: path.to_path_buf(), dir, items })
    }

    /// The items to run: all of them in a seeded random order, then the first `limit`
    /// (a limit samples the set; the same seed picks the same items).
    pub fn pick(&self, limit: Option<usize>, seed: u64) -> Vec<Item> {
        let mut items = self.items.clone();
        Rng::new(seed).shuffle(&mut items);
        items.truncate(limit.unwrap_or(usize::MAX));
        items
    }
}

fn item(number: usize, line: &str) -> Result<Item, String> {
    let raw: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = &raw else { return Err("not a JSON object".into()) };
    let messages = fields.get("messages").ok_or("no `messages`")?;
    if messages.as_array().is_none_or(|m| m.is_empty()) {
        return Err("`messages` must be a non-empty list".into());
    }
    if let Some(field) = EVAL_SETS.iter().find(|f| fields.contains_key(**f)) {
        return Err(format!("`{field}` is set by eval (--task, and JSON answers that carry the trail)"));
    }
    let expected = fields.get("expected").cloned().unwrap_or(Value::Null);
    let grader = fields.get("grader").ok_or("no `grader`")?;
    let grader = Grader::parse(grader, &expected)?;
    if expected.is_null() && !matches!(grader, Grader::Command { .. } | Grader::Regex { .. }) {
        return Err("no `expected`".into());
    }
    let id = match fields.get("id") {
        None => number.to_string(),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        Some(_) => return Err("`id` must be a string or a number".into()),
    };
    let request = fields
        .iter()
        .filter(|(k, _)| !EVAL_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Item { id, request, expected, grader, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Dataset, String> {
        let path = std::env::temp_dir().join(format!("tierwise-dataset-{}-{}.jsonl", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let loaded = Dataset::load(&path);
        std::fs::remove_file(&path).unwrap();
        loaded
    }

    #[test]
    fn reads_items_keeping_request_fields_and_numbering_ids() {
        let text = concat!(
            r#"{"id": "a", "messages": [{"role": "user", "content": "2+2?"}], "expected": 4, "grader": "numeric", "temperature": 0}"#,
            "\n\n",
            r#"{"messages": [{"role": "user", "content": "Capital of France?"}], "expected": "Paris", "grader": {"type": "exact"}}"#,
            "\n"
        );
        let dataset = load(text).unwrap();
        assert_eq!(dataset.items.len(), 2);
        let first = &dataset.items[0];
        assert_eq!(first.id, "a");
        assert_eq!(first.request.keys().collect::<Vec<_>>(), ["messages", "temperature"]);
        assert_eq!(dataset.items[1].id, "3");
        assert!(dataset.dir.is_absolute());
    }

    #[test]
    fn every_bad_line_is_named_with_its_problem() {
        let text = concat!(
            "not json\n",
            r#"{"messages": [], "expected": 1, "grader": "numeric"}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "x"}], "grader": "numeric"}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "x"}], "expected": 1, "grader": "numeric", "model": "gpt"}"#,
            "\n",
            r#"{"id": 7, "messages": [{"role": "user", "content": "x"}], "expected": 1, "grader": "numeric"}"#,
            "\n",
            r#"{"id": "7", "messages": [{"role": "user", "content": "x"}], "expected": 1, "grader": "numeric"}"#,
            "\n",
        );
        let err = load(text).unwrap_err();
        assert!(err.contains("has 5 problems"), "{err}");
        for needle in [
            "line 1: not JSON",
            "line 2: `messages` must be a non-empty list",
            "line 3: `expected` must be a number",
            "line 4: `model` is set by eval",
            "line 6: the id \"7\" is used twice",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        assert!(load("\n").unwrap_err().contains("no items"));
    }

    #[test]
    fn a_limit_samples_the_same_items_for_the_same_seed() {
        let lines: String = (0..50)
            .map(|i| format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"{i}\"}}], \"expected\": {i}, \"grader\": \"numeric\"}}\n"))
            .collect();
        let dataset = load(&lines).unwrap();
        let ids = |seed| dataset.pick(Some(10), seed).into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(7), ids(7));
        assert_ne!(ids(7), ids(8));
        assert_eq!(dataset.pick(None, 7).len(), 50);
    }
}
