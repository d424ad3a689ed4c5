//! OpenAI `messages` → Anthropic `system` and alternating `messages` of content blocks.

use serde_json::{json, Map, Value};

use super::TranslateError;

/// A conversation as the Messages API takes it.
#[derive(Debug, Default)]
pub struct Conversation {
    /// The text of every `system` and `developer` message, in order, wherever it stood.
    pub system: Vec<String>,
    /// `{"role", "content": [blocks]}` turns, user and assistant alternating.
    pub messages: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

/// Translates OpenAI `messages`. Consecutive turns of one role are merged (the API
/// requires alternation); `tool` messages become `tool_result` blocks of a user turn,
/// placed before that turn's other blocks as the API requires; empty text is dropped,
/// and so is a turn left with no blocks.
pub fn conversation(messages: Option<&Value>) -> Result<Conversation, TranslateError> {
    let messages = messages
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::invalid("`messages` must be an array of messages", "messages"))?;
    let mut system = Vec::new();
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str);
        let content = message.get("content").filter(|c| !c.is_null());
        let (role, blocks) = match role {
            Some("system" | "developer") => {
                let text = text_of(content, &format!("{at}.content"))?;
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            Some("user") => {
                let content = content
                    .ok_or_else(|| TranslateError::invalid("a user message needs content", format!("{at}.content")))?;
                (Role::User, blocks_of(content, &format!("{at}.content"))?)
            }
            Some("assistant") => (Role::Assistant, assistant_blocks(message, content, &at)?),
            Some("tool") => (Role::User, vec![tool_result(message, content, &at)?]),
            Some("function") => {
                return Err(TranslateError::unsupported(
                    "`function` messages (the legacy function calling) are not supported; use tools",
                    format!("{at}.role"),
                ))
            }
            _ => {
                return Err(TranslateError::invalid(
                    "`role` must be system, developer, user, assistant or tool",
                    format!("{at}.role"),
                ))
            }
        };
        match turns.last_mut() {
            _ if blocks.is_empty() => {}
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }

    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            let role = match role {
                Role::User => {
                    // Stable: tool results keep their order, then everything else.
                    blocks.sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
                    "user"
                }
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": blocks})
        })
        .collect();
    Ok(Conversation { system, messages })
}

/// The text of a string or an array of text parts, parts joined by blank lines.
fn text_of(content: Option<&Value>, at: &str) -> Result<String, TranslateError> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match part.get("text").and_then(Value::as_str) {
                    Some(text) if part_type(part) == Some("text") => texts.push(text),
                    _ => return Err(TranslateError::invalid("only text parts are allowed here", format!("{at}[{j}]"))),
                }
            }
            Ok(texts.join("\n\n"))
        }
        Some(_) => Err(TranslateError::invalid("content must be a string or an array of parts", at)),
    }
}

/// Content blocks for user or tool content: text and images.
fn blocks_of(content: &Value, at: &str) -> Result<Vec<Value>, TranslateError> {
    match content {
        Value::String(text) => Ok(text_block(text).into_iter().collect()),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}[{j}]");
                match part_type(part) {
                    Some("text") => blocks.extend(text_block(part_text(part, &at)?)),
                    Some("image_url") => blocks.push(image_block(part, &at)?),
                    Some(other) => {
                        return Err(TranslateError::unsupported(
                            format!("content parts of type `{other}` are not supported by this upstream"),
                            format!("{at}.type"),
                        ))
                    }
                    None => return Err(TranslateError::invalid("a content part needs a `type`", at)),
                }
            }
            Ok(blocks)
        }
        _ => Err(TranslateError::invalid("content must be a string or an array of parts", at)),
    }
}

/// An assistant turn: its text, then a `tool_use` block per tool call.
fn assistant_blocks(message: &Value, content: Option<&Value>, at: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match content {
        None => {}
        Some(Value::String(text)) => blocks.extend(text_block(text)),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}.content[{j}]");
                match (part_type(part), part.get("refusal").and_then(Value::as_str)) {
                    (Some("text"), _) => blocks.extend(text_block(part_text(part, &at)?)),
                    (Some("refusal"), Some(refusal)) => blocks.extend(text_block(refusal)),
                    _ => return Err(TranslateError::invalid("assistant content parts must be text", at)),
                }
            }
        }
        Some(_) => {
            return Err(TranslateError::invalid(
                "content must be a string or an array of parts",
                format!("{at}.content"),
            ))
        }
    }
    if message.get("function_call").is_some_and(|f| !f.is_null()) {
        return Err(TranslateError::unsupported(
            "`function_call` (the legacy function calling) is not supported; use tool_calls",
            format!("{at}.function_call"),
        ));
    }
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => return Err(TranslateError::invalid("`tool_calls` must be an array", format!("{at}.tool_calls"))),
    };
    for (j, call) in calls.iter().enumerate() {
        blocks.push(tool_use(call, &format!("{at}.tool_calls[{j}]"))?);
    }
    Ok(blocks)
}

fn tool_use(call: &Value, at: &str) -> Result<Value, TranslateError> {
    let field = |name: &str| call.get(name).and_then(Value::as_str);
    if field("type").is_some_and(|t| t != "function") {
        return Err(TranslateError::unsupported("only `function` tool calls are supported", format!("{at}.type")));
    }
    let id = field("id").ok_or_else(|| TranslateError::invalid("a tool call needs an `id`", format!("{at}.id")))?;
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::invalid("a tool call needs a function name", format!("{at}.function.name")))?;
    let arguments_at = format!("{at}.function.arguments");
    let input = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(text)) if text.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(text)) => serde_json::from_str(text).map_err(|e| {
            TranslateError::invalid(format!("`arguments` is not valid JSON ({e})"), arguments_at.clone())
        })?,
        // Some clients send the arguments already parsed.
        Some(other) => other.clone(),
    };
    if !input.is_object() {
        return Err(TranslateError::invalid("`arguments` must encode a JSON object", arguments_at));
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result(message: &Value, content: Option<&Value>, at: &str) -> Result<Value, TranslateError> {
    let id = message.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        TranslateError::invalid("a tool message needs a `tool_call_id`", format!("{at}.tool_call_id"))
    })?;
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    let content = match content {
        None => None,
        Some(Value::String(text)) => (!text.is_empty()).then(|| Value::String(text.clone())),
        Some(parts) => {
            let blocks = blocks_of(parts, &format!("{at}.content"))?;
            (!blocks.is_empty()).then_some(Value::Array(blocks))
        }
    };
    if let (Some(content), Some(fields)) = (content, block.as_object_mut()) {
        fields.insert("content".into(), content);
    }
    Ok(block)
}

/// An `image_url` part: a `data:` URL becomes a base64 source, an http(s) URL a URL source.
fn image_block(part: &Value, at: &str) -> Result<Value, TranslateError> {
    let image = part.get("image_url");
    let url =
        image.and_then(|i| i.get("url")).or(image).and_then(Value::as_str).ok_or_else(|| {
            TranslateError::invalid("an image part needs `image_url.url`", format!("{at}.image_url.url"))
        })?;
    if let Some(data_url) = url.strip_prefix("data:") {
        let media_type = data_url.split_once(',').and_then(|(header, _)| header.strip_suffix(";base64"));
        let (Some(media_type), Some((_, data))) = (media_type, data_url.split_once(',')) else {
            return Err(TranslateError::invalid(
                "an image data URL must be `data:<media type>;base64,<data>`",
                format!("{at}.image_url.url"),
            ));
        };
        return Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(TranslateError::invalid("an image URL must be http(s) or a base64 data URL", format!("{at}.image_url.url")))
}

fn part_type(part: &Value) -> Option<&str> {
    part.get("type").and_then(Value::as_str)
}

fn part_text<'a>(part: &'a Value, at: &str) -> Result<&'a str, TranslateError> {
    part.get("text").and_then(Value::as_str).ok_or_else(|| TranslateError::invalid("a text part needs `text`", at))
}

/// A text block, or none for empty text: the API rejects empty text blocks.
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}
