//! `--sweep KEY=V1,V2,…`: one setting of the task, varied. Each value becomes TOML merged
//! over the config at `tasks.<task>.KEY`.

/// One setting and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// A dotted key under `tasks.<task>` (`verify.judge`).
    pub key: String,
    /// Each value as TOML.
    pub values: Vec<String>,
}

impl Sweep {
    pub fn parse(text: &str) -> Result<Sweep, String> {
        let (key, values) = text.split_once('=').ok_or("--sweep takes KEY=V1,V2,…")?;
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !valid_key {
            return Err(format!("--sweep: \"{key}\" is not a dotted config key (like verify.judge)"));
        }
        let values: Vec<String> = split_top_level(values).into_iter().map(|v| as_toml(v.trim())).collect();
        if values.iter().any(String::is_empty) || values.is_empty() {
            return Err("--sweep: a value is empty".into());
        }
        Ok(Sweep { key: key.to_string(), values })
    }

    /// The TOML that sets this sweep's key to `value` for `task`.
    pub fn overrides(&self, task: &str, value: &str) -> String {
        let task = serde_json::Value::String(task.to_string());
        format!("[tasks.{task}]\n{} = {value}\n", self.key)
    }

    /// `KEY=VALUE`, the setting's name in the report.
    pub fn label(&self, value: &str) -> String {
        format!("{}={value}", self.key)
    }
}

/// Splits on commas outside brackets, braces and quotes: `["a","b"],["c"]` is two values.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A value as TOML: booleans, numbers, lists, tables and quoted strings stay; any other
/// word becomes a string (`judge-model` → `"judge-model"`).
fn as_toml(value: &str) -> String {
    let literal =
        value == "true" || value == "false" || value.parse::<f64>().is_ok() || value.starts_with(['[', '{', '"', '\'']);
    if literal || value.is_empty() {
        value.to_string()
    } else {
        serde_json::Value::String(value.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_split_at_the_top_level_and_read_as_toml() {
        let sweep = Sweep::parse(r#"verify.checks=["non_empty"],["non_empty","finish_stop"]"#).unwrap();
        assert_eq!(sweep.key, "verify.checks");
        assert_eq!(sweep.values, [r#"["non_empty"]"#, r#"["non_empty","finish_stop"]"#]);
        let sweep = Sweep::parse("verify.judge=small-judge, big-judge").unwrap();
        assert_eq!(sweep.values, [r#""small-judge""#, r#""big-judge""#]);
        assert_eq!(Sweep::parse("deadline_ms=100,2.5,true").unwrap().values, ["100", "2.5", "true"]);
        assert_eq!(sweep.overrides("gsm", r#""x""#), "[tasks.\"gsm\"]\nverify.judge = \"x\"\n");
    }

    #[test]
    fn a_sweep_that_makes_no_sense_is_refused() {
        assert!(Sweep::parse("verify.judge").unwrap_err().contains("KEY=V1"));
        assert!(Sweep::parse("verify..judge=1").unwrap_err().contains("dotted config key"));
        assert!(Sweep::parse("verify.judge=a,,b").unwrap_err().contains("empty"));
    }
}
