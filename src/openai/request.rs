//! The OpenAI chat completion request as tierwise reads it. The fields tierwise uses are
//! typed; every other field is kept as it came and forwarded untouched.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::strict::Strict;
use crate::policy::{Scanner, Segment};

/// A chat completion request. A key written twice, at the top or anywhere in the fields
/// kept as they are (`metadata` among them), is an error rather than "the last one
/// wins": a duplicated `metadata.content_class` must not lower a class.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// A task or model alias; may be absent when `x-tierwise-task` names the task.
    pub model: Option<String>,
    pub messages: Vec<Message>,
    pub stream: Option<bool>,
    /// Everything else (`tools`, `n`, `response_format`, vendor fields...), untouched.
    pub rest: Map<String, Value>,
}

impl<'de> Deserialize<'de> for ChatRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequestVisitor;

        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = ChatRequest;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chat completion request (a JSON object)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
                let (mut model, mut messages, mut stream) = (None, None, None);
                let mut rest = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let twice = match key.as_str() {
                        "model" => model.replace(map.next_value::<Option<String>>()?).is_some(),
                        "messages" => messages.replace(map.next_value::<Vec<Message>>()?).is_some(),
                        "stream" => stream.replace(map.next_value::<Option<bool>>()?).is_some(),
                        _ => {
                            let Strict(value) = map.next_value()?;
                            rest.insert(key.clone(), value).is_some()
                        }
                    };
                    if twice {
                        return Err(de::Error::custom(format_args!("the key `{key}` is written twice")));
                    }
                }
                let messages = messages.ok_or_else(|| de::Error::missing_field("messages"))?;
                Ok(ChatRequest { model: model.flatten(), messages, stream: stream.flatten(), rest })
            }
        }

        deserializer.deserialize_map(RequestVisitor)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// Message content: a string, or an array of parts (text, images, audio...), kept as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_string()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element::<Value>()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

/// The request as sent to one upstream: `model` rewritten, all else as received.
#[derive(Serialize)]
struct Outgoing<'a> {
    model: &'a str,
    /// `None` for an embeddings request (kept as a chat request without messages: its
    /// fields are all in `rest`). A chat request's are sent as they are, even empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    /// Set when a verifier needs the answer's token probabilities.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

/// A field that must be a string is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAString;

/// Where a piece of message text sits, for messages a person reads.
#[derive(Debug, Clone, Copy)]
pub enum TextAt {
    Content(usize),
    Part(usize, usize),
    ToolArguments(usize, usize),
}

impl fmt::Display for TextAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextAt::Content(m) => write!(f, "messages[{m}].content"),
            TextAt::Part(m, p) => write!(f, "messages[{m}].content[{p}].text"),
            TextAt::ToolArguments(m, c) => write!(f, "messages[{m}].tool_calls[{c}].function.arguments"),
        }
    }
}

impl ChatRequest {
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether the client asked for the final usage chunk of a stream.
    pub fn include_usage(&self) -> bool {
        self.rest.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true)
    }

    /// The first piece of personal data (or opaque payload, when those count) in what
    /// this request forwards: every message and every other field, as
    /// `detected email address in messages[1].content`.
    pub fn scan(&self, scanner: &Scanner<'_>) -> Option<String> {
        if !scanner.is_enabled() {
            return None;
        }
        let mut path = Vec::new();
        for (m, message) in self.messages.iter().enumerate() {
            path.extend([Segment::Key("messages"), Segment::Index(m)]);
            path.push(Segment::Key("content"));
            let found = match &message.content {
                Some(Content::Text(text)) => scanner.text(&path, text),
                Some(Content::Parts(parts)) => scanner.array(&mut path, parts),
                None => None,
            };
            path.pop();
            let found = found.or_else(|| scanner.object(&mut path, &message.rest));
            if found.is_some() {
                return found;
            }
            path.clear();
        }
        scanner.object(&mut path, &self.rest)
    }

    /// Every piece of text in the messages: contents, text parts, tool-call arguments.
    pub fn texts(&self) -> impl Iterator<Item = (TextAt, &str)> {
        self.messages.iter().enumerate().flat_map(|(m, message)| {
            let content: Vec<(TextAt, &str)> = match &message.content {
                Some(Content::Text(text)) => vec![(TextAt::Content(m), text.as_str())],
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .enumerate()
                    .filter_map(|(p, part)| Some((TextAt::Part(m, p), part.get("text")?.as_str()?)))
                    .collect(),
                None => Vec::new(),
            };
            let calls = message.rest.get("tool_calls").and_then(Value::as_array);
            let arguments = calls.into_iter().flatten().enumerate().filter_map(move |(c, call)| {
                Some((TextAt::ToolArguments(m, c), call.pointer("/function/arguments")?.as_str()?))
            });
            content.into_iter().chain(arguments)
        })
    }

    /// Removes and returns `metadata.content_class` (tierwise's own field, never
    /// forwarded). Err if it is not a string.
    pub fn take_content_class(&mut self) -> Result<Option<String>, NotAString> {
        let Some(Value::Object(metadata)) = self.rest.get_mut("metadata") else {
            return Ok(None);
        };
        let class = match metadata.remove("content_class") {
            None => None,
            Some(Value::String(class)) => Some(class),
            Some(_) => return Err(NotAString),
        };
        if metadata.is_empty() {
            self.rest.remove("metadata");
        }
        Ok(class)
    }

    /// The JSON body for an upstream that knows the model as `upstream_model`, with
    /// earlier steps' `feedback` appended to the last user message, in order (see
    /// [`super::feedback`]).
    pub fn body_for(&self, upstream_model: &str, feedback: &[String]) -> Result<Bytes, serde_json::Error> {
        self.body_with(upstream_model, feedback, false)
    }

    /// Whether the client asked for the answer's token log-probabilities.
    pub fn wants_logprobs(&self) -> bool {
        self.rest.get("logprobs").and_then(Value::as_bool) == Some(true)
    }

    /// As [`Self::body_for`]; with `logprobs`, the upstream is asked for the answer's token
    /// log-probabilities (for the `confidence` verifier) whatever the client asked.
    pub fn body_with(
        &self,
        upstream_model: &str,
        feedback: &[String],
        logprobs: bool,
    ) -> Result<Bytes, serde_json::Error> {
        let with_feedback;
        let messages = if feedback.is_empty() {
            &self.messages
        } else {
            with_feedback = super::feedback::inject(&self.messages, feedback);
            &with_feedback
        };
        let without_logprobs;
        let rest = if logprobs && self.rest.contains_key("logprobs") {
            without_logprobs =
                self.rest.iter().filter(|(k, _)| *k != "logprobs").map(|(k, v)| (k.clone(), v.clone())).collect();
            &without_logprobs
        } else {
            &self.rest
        };
        let logprobs = logprobs.then_some(true);
        let outgoing =
            Outgoing { model: upstream_model, messages: Some(messages), stream: self.stream, logprobs, rest };
        serde_json::to_vec(&outgoing).map(Bytes::from)
    }

    /// The body of an embeddings request (no messages) for an upstream that knows the
    /// model as `upstream_model`.
    pub fn embeddings_body(&self, upstream_model: &str) -> Result<Bytes, serde_json::Error> {
        let outgoing =
            Outgoing { model: upstream_model, messages: None, stream: None, logprobs: None, rest: &self.rest };
        serde_json::to_vec(&outgoing).map(Bytes::from)
    }

    /// A field of the request body by JSON pointer (`/response_format/type`).
    pub fn field(&self, pointer: &str) -> Option<&Value> {
        let rest = pointer.strip_prefix('/')?;
        let (first, tail) = rest.split_once('/').map_or((rest, ""), |(f, t)| (f, t));
        let value = self.rest.get(first)?;
        if tail.is_empty() {
            Some(value)
        } else {
            value.pointer(&format!("/{tail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_conversation_is_sent_as_one_and_an_embeddings_body_has_none() {
        // Found by the chat_request fuzz target: `messages: []` was left out of the
        // forwarded body, which then no longer parsed as a chat request.
        let request: ChatRequest = serde_json::from_value(json!({"model": "chat", "messages": []})).unwrap();
        let body: Value = serde_json::from_slice(&request.body_for("m", &[String::new()]).unwrap()).unwrap();
        assert_eq!(body["messages"], json!([]));
        let embeddings = ChatRequest { model: None, messages: Vec::new(), stream: None, rest: Map::new() };
        let body: Value = serde_json::from_slice(&embeddings.embeddings_body("e").unwrap()).unwrap();
        assert_eq!(body, json!({"model": "e"}));
    }

    #[test]
    fn forwards_unknown_fields_and_rewrites_model() {
        let body = json!({
            "model": "chat",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ann"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "n": 2, "seed": 7, "logprobs": true, "x_vendor": {"a": [1, 2]},
            "stream": true
        });
        let req: ChatRequest = serde_json::from_value(body.clone()).unwrap();
        let sent: Value = serde_json::from_slice(&req.body_for("smollm2", &[]).unwrap()).unwrap();
        let mut expected = body;
        expected["model"] = json!("smollm2");
        assert_eq!(sent, expected);
    }

    #[test]
    fn content_must_be_text_or_parts() {
        let err =
            serde_json::from_value::<ChatRequest>(json!({"messages": [{"role": "user", "content": 5}]})).unwrap_err();
        assert!(err.to_string().contains("a string or an array of content parts"), "{err}");
    }
}
