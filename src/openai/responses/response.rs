//! A chat completion as a `response` object: the assistant's text as a `message` item
//! with one `output_text` part, each tool call as a `function_call` item, usage in the
//! Responses shape, `status: incomplete` when the answer hit its token limit.

use serde_json::{json, Value};

use super::{response_id, usage, Echo};

/// The `response` object for `completion` (its first choice).
pub fn from_chat(completion: &Value, echo: &Echo) -> Value {
    let id = response_id(completion.get("id").and_then(Value::as_str).unwrap_or("tierwise"));
    let choice = completion.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut output = Vec::new();
    let text = message.get("content").and_then(Value::as_str);
    let calls = message.get("tool_calls").and_then(Value::as_array).cloned().unwrap_or_default();
    if text.is_some_and(|t| !t.is_empty()) || calls.is_empty() {
        output.push(message_item(
            &format!("msg_{}", id.trim_start_matches("resp_")),
            text.unwrap_or_default(),
            "completed",
        ));
    }
    for call in &calls {
        output.push(function_call_item(call, "completed"));
    }
    let status = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("length") => "incomplete",
        _ => "completed",
    };
    let created = completion.get("created").cloned().unwrap_or(json!(0));
    let model = completion.get("model").cloned().unwrap_or(Value::Null);
    let mut response = echo.response(&id, created, model, status, output, usage(completion.get("usage")));
    // tierwise's trail, when the answer carries it.
    if let Some(trail) = completion.get("tierwise") {
        response["tierwise"] = trail.clone();
    }
    response
}

/// A finished assistant message item.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

/// A function call item from a chat tool call.
pub fn function_call_item(call: &Value, status: &str) -> Value {
    let call_id = call.get("id").and_then(Value::as_str).unwrap_or_default();
    json!({"type": "function_call", "id": format!("fc_{call_id}"), "call_id": call_id,
           "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
           "arguments": call.pointer("/function/arguments").cloned().unwrap_or(json!("")),
           "status": status})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(body: Value) -> Echo {
        let Value::Object(body) = body else { panic!() };
        Echo::of(&body)
    }

    #[test]
    fn text_answers_become_a_message_item_with_usage() {
        let completion = json!({"id": "chatcmpl-abc", "created": 1700000000, "model": "smollm2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}});
        let response = from_chat(&completion, &echo(json!({"instructions": "Be brief.", "max_output_tokens": 20})));
        assert_eq!(response["id"], "resp_abc");
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        assert_eq!(
            response["output"],
            json!([{"type": "message", "id": "msg_abc", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris.", "annotations": [], "logprobs": []}]}])
        );
        assert_eq!(response["usage"]["input_tokens"], 12);
        assert_eq!(response["usage"]["total_tokens"], 15);
        assert_eq!(
            (response["instructions"].as_str(), response["max_output_tokens"].as_u64()),
            (Some("Be brief."), Some(20))
        );
        assert_eq!(response["text"], json!({"format": {"type": "text"}}));
        assert_eq!(response["store"], false);
    }

    #[test]
    fn tool_calls_become_function_call_items_and_a_cut_answer_is_incomplete() {
        let completion = json!({"id": "chatcmpl-t", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}]});
        let response = from_chat(&completion, &Echo::default());
        assert_eq!(
            response["output"],
            json!([{"type": "function_call", "id": "fc_call_1", "call_id": "call_1",
            "name": "weather", "arguments": "{\"city\":\"Oslo\"}", "status": "completed"}])
        );
        let cut = json!({"id": "x", "choices": [{"index": 0, "message": {"content": "Once upon"}, "finish_reason": "length"}]});
        let response = from_chat(&cut, &Echo::default());
        assert_eq!(
            (response["status"].as_str(), response["incomplete_details"]["reason"].as_str()),
            (Some("incomplete"), Some("max_output_tokens"))
        );
    }
}
