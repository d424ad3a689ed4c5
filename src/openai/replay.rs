//! A complete `chat.completion` replayed as a valid OpenAI SSE stream: role chunk,
//! content, tool calls, finish reason, the usage chunk when asked, `[DONE]`. Used for
//! answers tierwise produces itself (rules replies).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};

/// The `chat.completion` a rules reply is.
pub fn rules_completion(reply: &str) -> Value {
    json!({
        "id": format!("chatcmpl-rules-{}", now()),
        "object": "chat.completion",
        "created": now(),
        "model": crate::policy::RULES,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

/// The SSE events a client would have received had `completion` been streamed.
pub fn to_sse(completion: &Value, include_usage: bool) -> Bytes {
    to_sse_with(completion, include_usage, None)
}

/// As [`to_sse`], with an SSE comment line (`trailer`) just before `data: [DONE]`.
pub fn to_sse_with(completion: &Value, include_usage: bool, trailer: Option<&[u8]>) -> Bytes {
    let id = completion.get("id").cloned().unwrap_or(Value::Null);
    let created = completion.get("created").cloned().unwrap_or(Value::Null);
    let model = completion.get("model").cloned().unwrap_or(Value::Null);
    let usage_field = if include_usage { Some(Value::Null) } else { None };
    let chunk = |choices: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices});
        if let Some(u) = &usage_field {
            c["usage"] = u.clone();
        }
        c
    };
    let mut events = Vec::new();
    for choice in completion.get("choices").and_then(Value::as_array).into_iter().flatten() {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let role = message.get("role").cloned().unwrap_or(json!("assistant"));
        events.push(chunk(
            json!([{"index": index, "delta": {"role": role, "content": ""}, "logprobs": null, "finish_reason": null}]),
        ));
        if let Some(content) = message.get("content").filter(|c| !c.is_null()) {
            // The answer's token log-probabilities, when it kept them, ride with its text.
            let logprobs = choice.get("logprobs").cloned().unwrap_or(Value::Null);
            events.push(chunk(
                json!([{"index": index, "delta": {"content": content}, "logprobs": logprobs, "finish_reason": null}]),
            ));
        }
        for (i, call) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let mut delta_call = call.clone();
            delta_call["index"] = json!(i);
            events.push(chunk(json!([{"index": index, "delta": {"tool_calls": [delta_call]}, "logprobs": null, "finish_reason": null}])));
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(json!("stop"));
        events.push(chunk(json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}])));
    }
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = completion.get("usage").cloned().unwrap_or(Value::Null);
        events.push(last);
    }
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(event.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    if let Some(trailer) = trailer {
        out.extend_from_slice(trailer);
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Bytes::from(out)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(sse: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(sse).unwrap();
        text.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn replays_text_with_usage() {
        let sse = to_sse(&rules_completion("Not now."), true);
        assert!(sse.ends_with(b"data: [DONE]\n\n"));
        let chunks = data(&sse);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Not now.");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["total_tokens"], 0);
        assert!(chunks[..3].iter().all(|c| c["usage"].is_null() && c["object"] == "chat.completion.chunk"));
    }

    #[test]
    fn replays_tool_calls_with_indexes() {
        let completion: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/openai/chat_completion_tool_call.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let chunks = data(&to_sse(&completion, false));
        let call = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert_eq!(call["function"]["name"], "get_current_weather");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }
}
