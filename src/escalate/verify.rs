//! Deterministic checks on an answer, cheap, run before any judge. A failed check
//! becomes the feedback the next step is given.

use regex::Regex;
use serde_json::Value;

use crate::openai::ChatRequest;

/// Phrases that mark an answer as a refusal, when the task lists none (lowercase).
pub const DEFAULT_REFUSALS: &[&str] = &[
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i'm unable to",
    "i am unable to",
    "i cannot comply",
    "i can't comply",
    "as an ai language model",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
];

#[derive(Debug, Clone)]
pub enum Check {
    /// Some text or a tool call.
    NonEmpty,
    /// Not cut off at the token limit (`finish_reason` other than `length`).
    FinishStop,
    /// Valid JSON when the request's `response_format` asks for JSON.
    Json,
    /// Valid against the request's `response_format.json_schema.schema`.
    JsonSchema,
    MaxChars(usize),
    /// The text must match.
    Regex(Regex),
    /// None of these (lowercase) phrases.
    NoRefusal(Vec<String>),
    /// Tool calls' arguments are JSON objects and name a tool the request offered.
    ToolCallValid,
}

impl Check {
    pub fn name(&self) -> &'static str {
        match self {
            Check::NonEmpty => "non_empty",
            Check::FinishStop => "finish_stop",
            Check::Json => "json",
            Check::JsonSchema => "json_schema",
            Check::MaxChars(_) => "max_chars",
            Check::Regex(_) => "regex",
            Check::NoRefusal(_) => "no_refusal",
            Check::ToolCallValid => "tool_call_valid",
        }
    }
}

/// The parts of a `chat.completion` the checks look at (its first choice).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Candidate {
    pub text: String,
    pub finish_reason: Option<String>,
    /// `(name, arguments)` per tool call.
    pub tool_calls: Vec<(String, String)>,
}

impl Candidate {
    pub fn from_completion(completion: &Value) -> Candidate {
        let choice = completion.pointer("/choices/0");
        let message = choice.and_then(|c| c.get("message"));
        let text = match message.and_then(|m| m.get("content")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
            }
            _ => String::new(),
        };
        let tool_calls = message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
                        let args = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
                        (name.to_string(), args.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let finish_reason = choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str).map(str::to_string);
        Candidate { text, finish_reason, tool_calls }
    }
}

/// Runs `checks` in order; the first failure's feedback, if any.
pub fn run_checks(checks: &[Check], candidate: &Candidate, request: &ChatRequest) -> Result<(), String> {
    checks.iter().try_for_each(|check| {
        let result = run_check(check, candidate, request);
        let verdict = if result.is_ok() { "pass" } else { "fail" };
        tracing::event!(target: "tierwise::trace", tracing::Level::DEBUG, tierwise.check = check.name(), tierwise.verdict = verdict, "check");
        result
    })
}

fn run_check(check: &Check, c: &Candidate, request: &ChatRequest) -> Result<(), String> {
    match check {
        Check::NonEmpty if c.text.trim().is_empty() && c.tool_calls.is_empty() => Err("the answer was empty".into()),
        Check::FinishStop if c.finish_reason.as_deref() == Some("length") => {
            Err("the answer was cut off at the token limit; answer more concisely".into())
        }
        Check::Json if wants_json(request) => serde_json::from_str::<Value>(strip_fences(&c.text))
            .map(drop)
            .map_err(|e| format!("the answer is not valid JSON ({e}); reply with JSON only")),
        Check::JsonSchema => match request.field("/response_format/json_schema/schema") {
            None => Ok(()),
            Some(schema) => check_schema(schema, &c.text),
        },
        Check::MaxChars(max) => {
            let len = c.text.chars().count();
            if len > *max {
                Err(format!("the answer is {len} characters long; keep it under {max}"))
            } else {
                Ok(())
            }
        }
        Check::Regex(regex) if !regex.is_match(&c.text) => {
            Err(format!("the answer does not match the required pattern {}", regex.as_str()))
        }
        Check::NoRefusal(phrases) => {
            let lower = c.text.to_lowercase();
            match phrases.iter().find(|p| lower.contains(p.as_str())) {
                Some(p) => Err(format!("the answer refused (\"{p}\"); answer the request")),
                None => Ok(()),
            }
        }
        Check::ToolCallValid => check_tool_calls(&c.tool_calls, request),
        _ => Ok(()),
    }
}

fn wants_json(request: &ChatRequest) -> bool {
    matches!(request.field("/response_format/type").and_then(Value::as_str), Some("json_object") | Some("json_schema"))
}

/// Models often wrap JSON in a Markdown fence; the content inside is what counts.
fn strip_fences(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else { return trimmed };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn check_schema(schema: &Value, text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(strip_fences(text))
        .map_err(|e| format!("the answer is not valid JSON ({e}); reply with JSON matching the schema only"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the request's json_schema cannot be used to check the answer: {e}"))?;
    let errors: Vec<String> =
        validator.iter_errors(&value).take(3).map(|e| format!("at {}: {e}", e.instance_path())).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("the JSON does not match the schema: {}", errors.join("; ")))
    }
}

fn check_tool_calls(calls: &[(String, String)], request: &ChatRequest) -> Result<(), String> {
    let offered: Vec<&str> = request
        .rest
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    for (name, arguments) in calls {
        if !offered.contains(&name.as_str()) {
            return Err(format!(
                "the tool call names \"{name}\", which is not one of the offered tools: {}",
                offered.join(", ")
            ));
        }
        let args = if arguments.trim().is_empty() { "{}" } else { arguments.as_str() };
        match serde_json::from_str::<Value>(args) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return Err(format!("the arguments of tool call \"{name}\" are not a JSON object")),
            Err(e) => return Err(format!("the arguments of tool call \"{name}\" are not valid JSON ({e})")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(extra: Value) -> ChatRequest {
        let mut body = json!({"model": "t", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn answer(text: &str, finish: &str) -> Candidate {
        Candidate { text: text.into(), finish_reason: Some(finish.into()), tool_calls: vec![] }
    }

    #[test]
    fn each_check_fails_with_its_own_feedback() {
        let plain = request(json!({}));
        let all = |c: Check| run_checks(&[c], &answer("", "stop"), &plain);
        assert_eq!(all(Check::NonEmpty).unwrap_err(), "the answer was empty");
        assert!(run_checks(&[Check::FinishStop], &answer("abc", "length"), &plain).unwrap_err().contains("cut off"));
        assert!(run_checks(&[Check::MaxChars(3)], &answer("abcd", "stop"), &plain)
            .unwrap_err()
            .contains("4 characters"));
        let regex = Check::Regex(Regex::new(r"^\d+$").unwrap());
        assert!(run_checks(&[regex], &answer("twelve", "stop"), &plain).unwrap_err().contains("pattern"));
        let refusal = Check::NoRefusal(DEFAULT_REFUSALS.iter().map(|s| s.to_string()).collect());
        assert!(run_checks(&[refusal], &answer("I'm sorry, but I can't do that.", "stop"), &plain)
            .unwrap_err()
            .contains("refused"));
    }

    #[test]
    fn json_checks_apply_only_when_json_was_asked_for() {
        let plain = request(json!({}));
        assert!(run_checks(&[Check::Json], &answer("not json", "stop"), &plain).is_ok());
        let wants = request(json!({"response_format": {"type": "json_object"}}));
        assert!(run_checks(&[Check::Json], &answer("not json", "stop"), &wants)
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(run_checks(&[Check::Json], &answer("```json\n{\"a\": 1}\n```", "stop"), &wants).is_ok());
    }

    #[test]
    fn json_schema_names_what_is_wrong() {
        let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"], "additionalProperties": false});
        let req = request(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": true, "schema": schema}}}),
        );
        assert!(run_checks(&[Check::JsonSchema], &answer("{\"age\": 41}", "stop"), &req).is_ok());
        let err = run_checks(&[Check::JsonSchema], &answer("{\"age\": \"old\"}", "stop"), &req).unwrap_err();
        assert!(err.starts_with("the JSON does not match the schema: at /age"), "{err}");
        assert!(run_checks(&[Check::JsonSchema], &answer("{}", "stop"), &req).unwrap_err().contains("age"));
    }

    #[test]
    fn tool_calls_must_name_offered_tools_with_json_arguments() {
        let req = request(json!({"tools": [{"type": "function", "function": {"name": "get_weather"}}]}));
        let call = |name: &str, args: &str| Candidate {
            text: String::new(),
            finish_reason: Some("tool_calls".into()),
            tool_calls: vec![(name.into(), args.into())],
        };
        assert!(run_checks(
            &[Check::ToolCallValid, Check::NonEmpty],
            &call("get_weather", "{\"city\":\"Oslo\"}"),
            &req
        )
        .is_ok());
        assert!(run_checks(&[Check::ToolCallValid], &call("delete_all", "{}"), &req)
            .unwrap_err()
            .contains("not one of the offered"));
        assert!(run_checks(&[Check::ToolCallValid], &call("get_weather", "{city"), &req)
            .unwrap_err()
            .contains("not valid JSON"));
    }

    #[test]
    fn reads_the_first_choice_of_a_completion() {
        let completion: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/openai/chat_completion_tool_call.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let c = Candidate::from_completion(&completion);
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.tool_calls[0].0, "get_current_weather");
    }
}
