//! An OpenAI chat completion request → a Messages request body.

use serde_json::{json, Map, Value};

use super::content::conversation;
use super::{Options, TranslateError};

/// The instruction added to `system` for `response_format` (the Messages API has no JSON
/// mode; this is best effort, and the answer is not checked).
const JSON_INSTRUCTION: &str = "Respond with a single JSON object only: no prose, no code fences.";

/// Whether the client asked for a usage chunk at the end of a stream
/// (`stream_options.include_usage`).
pub fn include_usage(openai: &Value) -> bool {
    openai.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false)
}

/// Translates an OpenAI chat request (its `model` already the upstream's model name)
/// into a `/v1/messages` body.
///
/// - `system`/`developer` messages → top-level `system`, joined by blank lines, plus the
///   `response_format` instruction (`json_object`, or `json_schema` with its schema).
/// - Turns → alternating `messages` of content blocks (see [`conversation`]).
/// - `tools`, `tool_choice`, `parallel_tool_calls: false` → `tools`, `tool_choice`,
///   `disable_parallel_tool_use`; a `tool_choice` without tools is dropped.
/// - `max_completion_tokens` or else `max_tokens` or else `options.default_max_tokens`
///   → `max_tokens`; `temperature`, `top_p`, `stream` as they are (the API rejects a
///   temperature above 1); `stop` → `stop_sequences`; `user` → `metadata.user_id`.
/// - Rejected as [`TranslateError::Unsupported`]: `n` > 1, `logprobs: true`,
///   `top_logprobs`, the legacy `functions`/`function_call`, non-function tools.
/// - Dropped: every other field, among them `seed`, `frequency_penalty`,
///   `presence_penalty`, `logit_bias`, `stream_options` (read it with
///   [`include_usage`]), `store`, `metadata`, `service_tier`, `reasoning_effort`.
pub fn to_messages_request(openai: &Value, options: &Options) -> Result<Value, TranslateError> {
    let request = openai
        .as_object()
        .ok_or_else(|| TranslateError::Invalid { message: "the request must be a JSON object".into(), param: None })?;
    reject_unsupported(request)?;
    let field = |name: &str| request.get(name).filter(|v| !v.is_null());

    let model = field("model")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("`model` must be a string", "model"))?;
    let conversation = conversation(field("messages"))?;
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert("max_tokens".into(), max_tokens(request, options)?.into());

    let mut system = conversation.system;
    system.extend(response_format_instruction(field("response_format"))?);
    if !system.is_empty() {
        body.insert("system".into(), system.join("\n\n").into());
    }
    body.insert("messages".into(), conversation.messages.into());

    for name in ["temperature", "top_p"] {
        if let Some(value) = field(name) {
            if !value.is_number() {
                return Err(TranslateError::invalid(format!("`{name}` must be a number"), name));
            }
            body.insert(name.into(), value.clone());
        }
    }
    if let Some(stop) = stop_sequences(field("stop"))? {
        body.insert("stop_sequences".into(), stop);
    }
    if let Some(stream) = field("stream") {
        let stream = stream.as_bool().ok_or_else(|| TranslateError::invalid("`stream` must be a boolean", "stream"))?;
        body.insert("stream".into(), stream.into());
    }
    if let Some(user) = field("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }

    let tools = tools(field("tools"))?;
    if !tools.is_empty() {
        body.insert("tools".into(), tools.into());
        let parallel = field("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(true);
        if let Some(choice) = tool_choice(field("tool_choice"), parallel)? {
            body.insert("tool_choice".into(), choice);
        }
    }
    Ok(Value::Object(body))
}

/// Fields asking for what the Messages API cannot do.
fn reject_unsupported(request: &Map<String, Value>) -> Result<(), TranslateError> {
    if request.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::unsupported("this upstream returns one choice per request: `n` must be 1", "n"));
    }
    if request.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(TranslateError::unsupported("this upstream does not return log probabilities", "logprobs"));
    }
    if request.get("top_logprobs").is_some_and(|v| !v.is_null()) {
        return Err(TranslateError::unsupported("this upstream does not return log probabilities", "top_logprobs"));
    }
    for legacy in ["functions", "function_call"] {
        if request.get(legacy).is_some_and(|v| !v.is_null()) {
            return Err(TranslateError::unsupported(
                format!("`{legacy}` (the legacy function calling) is not supported; use `tools`"),
                legacy,
            ));
        }
    }
    Ok(())
}

fn max_tokens(request: &Map<String, Value>, options: &Options) -> Result<u64, TranslateError> {
    for name in ["max_completion_tokens", "max_tokens"] {
        match request.get(name) {
            None | Some(Value::Null) => continue,
            Some(value) => {
                return value
                    .as_u64()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| TranslateError::invalid(format!("`{name}` must be a positive integer"), name))
            }
        }
    }
    Ok(u64::from(options.default_max_tokens))
}

fn stop_sequences(stop: Option<&Value>) -> Result<Option<Value>, TranslateError> {
    let invalid = || TranslateError::invalid("`stop` must be a string or an array of strings", "stop");
    match stop {
        None => Ok(None),
        Some(Value::String(one)) => Ok(Some(json!([one]))),
        Some(Value::Array(many)) if many.iter().all(Value::is_string) => {
            Ok((!many.is_empty()).then(|| Value::Array(many.clone())))
        }
        Some(_) => Err(invalid()),
    }
}

fn response_format_instruction(format: Option<&Value>) -> Result<Option<String>, TranslateError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JSON_INSTRUCTION.to_string())),
        Some("json_schema") => {
            let schema = format.pointer("/json_schema/schema").ok_or_else(|| {
                TranslateError::invalid("`json_schema` needs a `schema`", "response_format.json_schema.schema")
            })?;
            let pretty = serde_json::to_string_pretty(schema).map_err(|e| {
                TranslateError::invalid(format!("unreadable schema ({e})"), "response_format.json_schema.schema")
            })?;
            Ok(Some(format!("{JSON_INSTRUCTION} It must match this JSON schema:\n{pretty}")))
        }
        _ => Err(TranslateError::unsupported(
            "`response_format.type` must be text, json_object or json_schema",
            "response_format.type",
        )),
    }
}

/// OpenAI function tools → `{name, description, input_schema}`.
fn tools(tools: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let tools = tools.as_array().ok_or_else(|| TranslateError::invalid("`tools` must be an array", "tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(TranslateError::unsupported("only `function` tools are supported", format!("tools[{i}].type")));
        }
        let function = tool.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid("a tool needs a function name", format!("tools[{i}].function.name"))
        })?;
        let mut anthropic = Map::new();
        anthropic.insert("name".into(), name.into());
        if let Some(description) = function.and_then(|f| f.get("description")).and_then(Value::as_str) {
            anthropic.insert("description".into(), description.into());
        }
        // The API requires a schema; OpenAI allows none for a function without arguments.
        let schema = function
            .and_then(|f| f.get("parameters"))
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        anthropic.insert("input_schema".into(), schema);
        out.push(Value::Object(anthropic));
    }
    Ok(out)
}

/// `auto`/`required`/`none`/a named function → `auto`/`any`/`none`/`tool`. With
/// `parallel_tool_calls: false` and no choice, `auto` carries the flag.
fn tool_choice(choice: Option<&Value>, parallel: bool) -> Result<Option<Value>, TranslateError> {
    let invalid = || {
        TranslateError::invalid(
            "`tool_choice` must be auto, required, none or {\"type\": \"function\", \"function\": {\"name\"}}",
            "tool_choice",
        )
    };
    let mut anthropic = match choice {
        None if parallel => return Ok(None),
        None => json!({"type": "auto"}),
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => return Ok(Some(json!({"type": "none"}))),
            _ => return Err(invalid()),
        },
        Some(object) => {
            if object.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid());
            }
            let name = object.pointer("/function/name").and_then(Value::as_str).ok_or_else(invalid)?;
            json!({"type": "tool", "name": name})
        }
    };
    if !parallel {
        if let Some(fields) = anthropic.as_object_mut() {
            fields.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    Ok(Some(anthropic))
}
