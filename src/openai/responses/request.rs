//! A Responses API request (`POST /v1/responses`) as the chat completion request it
//! amounts to: `instructions` become the system message, `input` (a string, or items —
//! messages, function calls, function call outputs) becomes `messages`, function `tools`,
//! `tool_choice`, `max_output_tokens`, `text.format` and sampling fields map to their chat
//! names. What chat completions cannot say — built-in tools, reasoning items, stored
//! conversations — is refused by name rather than dropped.

use serde_json::{json, Map, Value};

use super::Echo;

/// Fields a Responses request may carry that mean nothing once translated: read, then
/// dropped.
const IGNORED: [&str; 6] =
    ["include", "truncation", "prompt_cache_key", "safety_identifier", "reasoning", "stream_options"];

/// Fields that keep their name and meaning in chat completions.
const SAME: [&str; 7] = ["model", "stream", "temperature", "top_p", "user", "metadata", "parallel_tool_calls"];

/// Why a Responses request cannot be translated: the message, and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub message: String,
    pub param: String,
}

fn refuse(param: impl Into<String>, message: impl Into<String>) -> Untranslatable {
    Untranslatable { message: message.into(), param: param.into() }
}

/// The chat completion request body for `body`, and what the response must echo.
pub fn to_chat(body: &Map<String, Value>) -> Result<(Value, Echo), Untranslatable> {
    let mut chat = Map::new();
    let mut messages = Vec::new();
    for (key, value) in body {
        match key.as_str() {
            "input" => messages.extend(input(value)?),
            "instructions" => match value {
                Value::String(text) => messages.insert(0, json!({"role": "system", "content": text})),
                Value::Null => {}
                _ => return Err(refuse("instructions", "`instructions` must be a string")),
            },
            "tools" => {
                chat.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                chat.insert("tool_choice".into(), tool_choice(value)?);
            }
            "max_output_tokens" => {
                if !value.is_null() {
                    chat.insert("max_tokens".into(), value.clone());
                }
            }
            "text" => {
                if let Some(format) = response_format(value)? {
                    chat.insert("response_format".into(), format);
                }
            }
            "store" => {
                if value.as_bool() == Some(true) {
                    // Nothing is stored: `store` is answered `false`, and a later
                    // `previous_response_id` is refused with a message that says why.
                }
            }
            "previous_response_id" if !value.is_null() => {
                return Err(refuse(
                    "previous_response_id",
                    "tierwise keeps no responses, so `previous_response_id` cannot be followed: send the whole conversation in `input`",
                ))
            }
            "previous_response_id" => {}
            "background" if value.as_bool() == Some(true) => {
                return Err(refuse("background", "background responses are not supported: tierwise answers in the request"))
            }
            "background" => {}
            "conversation" if !value.is_null() => {
                return Err(refuse("conversation", "tierwise keeps no conversations: send the whole conversation in `input`"))
            }
            "prompt" if !value.is_null() => {
                return Err(refuse("prompt", "stored prompt templates are not supported: send `instructions` and `input`"))
            }
            "service_tier" | "top_logprobs" | "seed" => {
                chat.insert(key.clone(), value.clone());
            }
            other if SAME.contains(&other) => {
                chat.insert(key.clone(), value.clone());
            }
            other if IGNORED.contains(&other) || value.is_null() => {}
            other => return Err(refuse(other, format!("`{other}` is not supported by tierwise's Responses translation"))),
        }
    }
    if !body.contains_key("input") {
        return Err(refuse("input", "`input` is required"));
    }
    if chat.get("stream").and_then(Value::as_bool) == Some(true) {
        // response.completed carries usage: ask for the chat stream's usage chunk.
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    chat.insert("messages".into(), Value::Array(messages));
    let echo = Echo::of(body);
    Ok((Value::Object(chat), echo))
}

/// `input`: a string (one user message) or a list of items.
fn input(value: &Value) -> Result<Vec<Value>, Untranslatable> {
    let items = match value {
        Value::String(text) => return Ok(vec![json!({"role": "user", "content": text})]),
        Value::Array(items) => items,
        _ => return Err(refuse("input", "`input` must be a string or a list of items")),
    };
    let mut messages: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("input[{i}].{field}");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role = match item.get("role").and_then(Value::as_str) {
                    Some("developer" | "system") => "system",
                    Some(role @ ("user" | "assistant")) => role,
                    Some(other) => return Err(refuse(at("role"), format!("unknown role \"{other}\""))),
                    None => return Err(refuse(at("role"), "a message needs a `role`")),
                };
                let content = content(item.get("content").unwrap_or(&Value::Null), &at("content"))?;
                messages.push(json!({"role": role, "content": content}));
            }
            "function_call" => {
                let text = |field: &str| item.get(field).and_then(Value::as_str).ok_or_else(|| refuse(at(field), format!("a function call needs `{field}`")));
                let call = json!({"id": text("call_id")?, "type": "function", "function": {"name": text("name")?, "arguments": text("arguments")?}});
                // Calls in a row are one assistant turn, as chat completions write them.
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                        if let Some(calls) = last["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    Some(last) if last["role"] == "assistant" => last["tool_calls"] = json!([call]),
                    _ => messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let call_id = item.get("call_id").and_then(Value::as_str).ok_or_else(|| refuse(at("call_id"), "a function call output needs `call_id`"))?;
                let output = match item.get("output") {
                    Some(Value::String(text)) => Value::String(text.clone()),
                    Some(Value::Array(parts)) => Value::Array(parts.iter().map(|p| part(p, &at("output"))).collect::<Result<_, _>>()?),
                    _ => return Err(refuse(at("output"), "a function call output needs `output`")),
                };
                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            other => {
                return Err(refuse(
                    at("type"),
                    format!("input items of type \"{other}\" are not supported (tierwise speaks chat completions to its upstreams)"),
                ))
            }
        }
    }
    Ok(messages)
}

/// A message's content: a string, or parts.
fn content(value: &Value, at: &str) -> Result<Value, Untranslatable> {
    match value {
        Value::String(text) => Ok(Value::String(text.clone())),
        Value::Array(parts) => {
            let parts: Vec<Value> = parts.iter().map(|p| part(p, at)).collect::<Result<_, _>>()?;
            // One text part is just text: what every chat template reads.
            match parts.as_slice() {
                [only] if only["type"] == "text" => Ok(only["text"].clone()),
                _ => Ok(Value::Array(parts)),
            }
        }
        _ => Err(refuse(at, "content must be a string or a list of parts")),
    }
}

fn part(value: &Value, at: &str) -> Result<Value, Untranslatable> {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "input_text" | "output_text" | "text" => {
            let text =
                value.get("text").and_then(Value::as_str).ok_or_else(|| refuse(at, "a text part needs `text`"))?;
            Ok(json!({"type": "text", "text": text}))
        }
        "refusal" => Ok(json!({"type": "text", "text": value.get("refusal").cloned().unwrap_or_default()})),
        "input_image" => {
            let Some(url) = value.get("image_url").and_then(Value::as_str) else {
                return Err(refuse(at, "an image part needs `image_url` (uploaded files are not supported)"));
            };
            let mut image = json!({"url": url});
            if let Some(detail) = value.get("detail").filter(|d| !d.is_null()) {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        "input_file" => {
            let mut file = Map::new();
            for field in ["file_data", "file_id", "filename"] {
                if let Some(v) = value.get(field).filter(|v| !v.is_null()) {
                    file.insert(field.into(), v.clone());
                }
            }
            Ok(json!({"type": "file", "file": file}))
        }
        other => Err(refuse(at, format!("content parts of type \"{other}\" are not supported"))),
    }
}

/// Function tools; built-in tools (web search, file search, computer use, …) need
/// OpenAI's servers and are refused.
fn tools(value: &Value) -> Result<Value, Untranslatable> {
    let Value::Array(tools) = value else { return Err(refuse("tools", "`tools` must be a list")) };
    let mut chat = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut function = Map::new();
                for field in ["name", "description", "parameters", "strict"] {
                    if let Some(v) = tool.get(field).filter(|v| !v.is_null()) {
                        function.insert(field.into(), v.clone());
                    }
                }
                if !function.contains_key("name") {
                    return Err(refuse(format!("tools[{i}].name"), "a function tool needs a `name`"));
                }
                chat.push(json!({"type": "function", "function": function}));
            }
            Some(other) => {
                return Err(refuse(
                    format!("tools[{i}].type"),
                    format!("built-in tool \"{other}\" is not supported: only function tools"),
                ))
            }
            None => return Err(refuse(format!("tools[{i}].type"), "a tool needs a `type`")),
        }
    }
    Ok(Value::Array(chat))
}

fn tool_choice(value: &Value) -> Result<Value, Untranslatable> {
    match value {
        Value::String(_) => Ok(value.clone()),
        Value::Object(choice) if choice.get("type").and_then(Value::as_str) == Some("function") => {
            let name = choice.get("name").cloned().unwrap_or(Value::Null);
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(refuse("tool_choice", "`tool_choice` must be auto, none, required, or a function")),
    }
}

/// `text.format` as the chat `response_format`; `None` for plain text.
fn response_format(value: &Value) -> Result<Option<Value>, Untranslatable> {
    let Some(format) = value.get("format").filter(|f| !f.is_null()) else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for field in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(field).filter(|v| !v.is_null()) {
                    schema.insert(field.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(refuse("text.format.type", "`text.format.type` must be text, json_object or json_schema")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, Untranslatable> {
        let Value::Object(body) = body else { panic!() };
        to_chat(&body).map(|(chat, _)| chat)
    }

    #[test]
    fn a_string_input_with_instructions_is_a_system_and_a_user_message() {
        let chat = translate(json!({"model": "t", "instructions": "Be brief.", "input": "Hi", "max_output_tokens": 30,
            "temperature": 0.2, "store": true, "reasoning": {"effort": "low"}}))
        .unwrap();
        assert_eq!(
            chat,
            json!({"model": "t", "temperature": 0.2, "max_tokens": 30,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})
        );
    }

    #[test]
    fn items_become_messages_with_tool_calls_and_results() {
        let chat = translate(json!({"model": "t", "stream": true, "input": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"},
                {"type": "input_image", "image_url": "https://x/a.png", "detail": "low"}]},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "4 C"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 4 C."}]}],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}}}))
        .unwrap();
        assert_eq!(
            chat["messages"],
            json!([
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"},
                {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "4 C"},
            {"role": "assistant", "content": "It is 4 C."}])
        );
        assert_eq!(
            chat["tools"],
            json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(chat["tool_choice"], json!({"type": "function", "function": {"name": "weather"}}));
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(chat["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn what_chat_completions_cannot_say_is_refused_by_name() {
        let refused = |body: Value| translate(body).unwrap_err();
        let err = refused(json!({"model": "t", "input": "x", "previous_response_id": "resp_1"}));
        assert_eq!(err.param, "previous_response_id");
        assert!(err.message.contains("send the whole conversation in `input`"));
        assert_eq!(
            refused(json!({"model": "t", "input": "x", "tools": [{"type": "web_search"}]})).param,
            "tools[0].type"
        );
        assert_eq!(
            refused(json!({"model": "t", "input": [{"type": "reasoning", "summary": []}]})).param,
            "input[0].type"
        );
        assert_eq!(refused(json!({"model": "t", "input": "x", "frobnicate": 1})).param, "frobnicate");
        assert_eq!(refused(json!({"model": "t"})).param, "input");
        assert_eq!(
            refused(
                json!({"model": "t", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]})
            )
            .param,
            "input[0].content"
        );
    }
}
