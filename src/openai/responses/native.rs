//! A Responses request passed through to an upstream that serves the API itself
//! (`responses = "native"`): the client's body as that upstream gets it, and what its
//! `response` object amounts to as a chat completion (for the audit log and a delayed
//! stream's replay).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::openai::feedback;

/// The client's Responses body for the upstream: its model, `store: false` (tierwise
/// keeps no state, and asks the upstream to keep none), `stream` as the step calls, and
/// the earlier steps' feedback appended to the last user text, as for chat.
pub fn body(
    request: &Map<String, Value>,
    upstream_model: &str,
    feedback: &[String],
    stream: bool,
) -> Result<Bytes, serde_json::Error> {
    let mut body = request.clone();
    body.insert("model".into(), json!(upstream_model));
    body.insert("store".into(), json!(false));
    if stream {
        body.insert("stream".into(), json!(true));
    } else {
        body.remove("stream");
    }
    if !feedback.is_empty() {
        inject(&mut body, &feedback::suffix(feedback));
    }
    serde_json::to_vec(&body).map(Bytes::from)
}

/// Appends `suffix` to the last user text of `input` (a string, or a list of items).
fn inject(body: &mut Map<String, Value>, suffix: &str) {
    match body.get_mut("input") {
        Some(Value::String(text)) => text.push_str(suffix),
        Some(Value::Array(items)) => {
            let last_user =
                items.iter_mut().rev().find(|item| item.get("role").and_then(Value::as_str) == Some("user"));
            match last_user {
                Some(item) => append_to(item, suffix),
                None => items.push(json!({"role": "user", "content": suffix.trim_start()})),
            }
        }
        _ => {
            body.insert("input".into(), json!(suffix.trim_start()));
        }
    }
}

/// Appends `suffix` to a message item's content: its text, or its last text part (a new
/// `input_text` part when it has none).
fn append_to(item: &mut Value, suffix: &str) {
    match item.get_mut("content") {
        Some(Value::String(text)) => text.push_str(suffix),
        Some(Value::Array(parts)) => {
            let last_text = parts.iter_mut().rev().find_map(|part| match part.get_mut("text") {
                Some(Value::String(text)) => Some(text),
                _ => None,
            });
            match last_text {
                Some(text) => text.push_str(suffix),
                None => parts.push(json!({"type": "input_text", "text": suffix.trim_start()})),
            }
        }
        _ => item["content"] = json!(suffix.trim_start()),
    }
}

/// The chat completion a `response` object amounts to: its output text as the message,
/// its function calls as tool calls, `length` when it is incomplete, its usage.
pub fn to_completion(response: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in response.get("output").and_then(Value::as_array).into_iter().flatten() {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
                    if part.get("type").and_then(Value::as_str) == Some("output_text") {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                }
            }
            Some("function_call") => calls.push(json!({
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            })),
            _ => {}
        }
    }
    let finish_reason = match response.get("status").and_then(Value::as_str) {
        Some("incomplete") => "length",
        _ if !calls.is_empty() => "tool_calls",
        _ => "stop",
    };
    let mut message = json!({"role": "assistant", "content": (!text.is_empty() || calls.is_empty()).then_some(text)});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = response.get("usage").filter(|u| u.is_object()).map(|u| {
        json!({"prompt_tokens": u.get("input_tokens"), "completion_tokens": u.get("output_tokens"),
               "total_tokens": u.get("total_tokens")})
    });
    json!({
        "id": response.get("id"),
        "object": "chat.completion",
        "created": response.get("created_at"),
        "model": response.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(request: Value, feedback: &[&str], stream: bool) -> Value {
        let feedback: Vec<String> = feedback.iter().map(|f| f.to_string()).collect();
        let Value::Object(request) = request else { panic!("an object") };
        serde_json::from_slice(&body(&request, "up-model", &feedback, stream).unwrap()).unwrap()
    }

    #[test]
    fn the_body_gets_the_upstream_model_no_store_and_the_feedback() {
        let body = sent(json!({"model": "alias", "input": "Q?", "store": true, "stream": true}), &["too short"], false);
        assert_eq!(
            body,
            json!({"model": "up-model", "input": "Q?\n\nPrior attempt feedback: too short", "store": false})
        );
        let items = json!({"model": "a", "instructions": "be brief", "input": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": [{"type": "input_text", "text": "Q?"}, {"type": "input_image", "image_url": "u"}]},
        ]});
        let body = sent(items, &["a", "b"], true);
        assert_eq!(body["stream"], true);
        assert_eq!(body["instructions"], "be brief");
        assert_eq!(body["input"][0]["content"], "first");
        assert_eq!(
            body["input"][2]["content"][0]["text"],
            "Q?\n\nPrior attempt feedback: a\n\nPrior attempt feedback: b"
        );
        let calls_only = json!({"input": [{"type": "function_call_output", "call_id": "c", "output": "4"}]});
        let body = sent(calls_only, &["again"], false);
        assert_eq!(body["input"][1], json!({"role": "user", "content": "Prior attempt feedback: again"}));
        assert_eq!(sent(json!({"input": "Q?"}), &[], false)["input"], "Q?", "no feedback: untouched");
    }

    #[test]
    fn a_response_object_reads_as_the_chat_completion_it_amounts_to() {
        let response = json!({"id": "resp_1", "created_at": 7, "model": "m", "status": "completed",
            "output": [
                {"type": "reasoning", "summary": []},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Hello", "annotations": []},
                    {"type": "output_text", "text": " there", "annotations": []}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}});
        let completion = to_completion(&response);
        assert_eq!(completion["choices"][0]["message"], json!({"role": "assistant", "content": "Hello there"}));
        assert_eq!(completion["choices"][0]["finish_reason"], "stop");
        assert_eq!(completion["usage"], json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}));

        let call = json!({"status": "completed", "output": [{"type": "function_call", "call_id": "c1",
            "name": "add", "arguments": "{\"a\":1}"}]});
        let completion = to_completion(&call);
        assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(completion["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(completion["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "add");
        let cut = json!({"status": "incomplete", "output": []});
        assert_eq!(to_completion(&cut)["choices"][0]["finish_reason"], "length");
    }
}
