//! The Responses API (`POST /v1/responses`), translated: the request to the chat
//! completion it amounts to ([`request`]), the chat answer back to a `response` object
//! ([`response`]) or to the Responses stream events ([`stream`]). The run loop in between
//! is chat completions' own: tiers, privacy, verification and the trail hold unchanged.

pub mod native;
pub mod request;
pub mod response;
pub mod stream;

use serde_json::{json, Map, Value};

pub use request::{to_chat, Untranslatable};

/// What a `response` object repeats from its request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Echo {
    pub fields: Map<String, Value>,
}

/// A field's value when the request did not set it.
type Fallback = fn() -> Value;

/// Request fields the response object repeats, with their defaults when absent.
const ECHOED: [(&str, Fallback); 9] = [
    ("instructions", || Value::Null),
    ("max_output_tokens", || Value::Null),
    ("metadata", || json!({})),
    ("parallel_tool_calls", || json!(true)),
    ("temperature", || Value::Null),
    ("tool_choice", || json!("auto")),
    ("tools", || json!([])),
    ("top_p", || Value::Null),
    ("user", || Value::Null),
];

impl Echo {
    pub fn of(body: &Map<String, Value>) -> Echo {
        let mut fields = Map::new();
        for (key, default) in ECHOED {
            fields.insert(key.into(), body.get(key).cloned().unwrap_or_else(default));
        }
        let format = body.pointer_text_format().unwrap_or_else(|| json!({"type": "text"}));
        fields.insert("text".into(), json!({"format": format}));
        Echo { fields }
    }

    /// A `response` object: `id`, `status`, `model`, `output`, `usage` and the rest, with
    /// the echoed request fields.
    pub fn response(
        &self,
        id: &str,
        created_at: Value,
        model: Value,
        status: &str,
        output: Vec<Value>,
        usage: Value,
    ) -> Value {
        let mut response = Map::new();
        response.insert("id".into(), json!(id));
        response.insert("object".into(), json!("response"));
        response.insert("created_at".into(), created_at);
        response.insert("status".into(), json!(status));
        response.insert("error".into(), Value::Null);
        let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
        response.insert("incomplete_details".into(), incomplete.unwrap_or(Value::Null));
        response.insert("model".into(), model);
        response.insert("output".into(), Value::Array(output));
        response.insert("previous_response_id".into(), Value::Null);
        response.insert("reasoning".into(), json!({"effort": null, "summary": null}));
        response.insert("store".into(), json!(false));
        response.insert("truncation".into(), json!("disabled"));
        response.insert("usage".into(), usage);
        for (key, value) in &self.fields {
            response.insert(key.clone(), value.clone());
        }
        Value::Object(response)
    }
}

trait TextFormat {
    fn pointer_text_format(&self) -> Option<Value>;
}

impl TextFormat for Map<String, Value> {
    fn pointer_text_format(&self) -> Option<Value> {
        self.get("text").and_then(|t| t.get("format")).filter(|f| !f.is_null()).cloned()
    }
}

/// Chat usage (`prompt_tokens`, `completion_tokens`) in the Responses shape.
pub fn usage(chat: Option<&Value>) -> Value {
    let Some(chat) = chat.filter(|u| !u.is_null()) else { return Value::Null };
    let count = |key: &str| chat.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (count("prompt_tokens"), count("completion_tokens"));
    let cached = chat.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": input + output})
}

/// The id of the response for a chat completion id (`chatcmpl-X` → `resp_X`).
pub fn response_id(chat_id: &str) -> String {
    let bare = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    format!("resp_{bare}")
}
