//! OpenAI bodies the doubles serve, written by the tests: a `chat.completion` saying
//! something, and the SSE stream that says the same.

use bytes::Bytes;
use serde_json::{json, Value};

use super::Behaviour;

/// A `chat.completion` body with `content` and `finish_reason`.
pub fn completion(content: &str, finish: &str) -> Bytes {
    Bytes::from(
        json!({"id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
        .to_string(),
    )
}

/// 200 with a completion saying `content`.
pub fn answer(content: &str) -> Behaviour {
    Behaviour::Json(completion(content, "stop"))
}

/// An SSE stream saying `content`, with usage.
pub fn sse(content: &str) -> Bytes {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null})
    };
    let events = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": content}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
    ];
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    Bytes::from(body)
}

/// 200 with the SSE stream saying `content`.
pub fn streaming(content: &str) -> Behaviour {
    Behaviour::Sse { body: sse(content), gap: std::time::Duration::ZERO, cut_after: None }
}
