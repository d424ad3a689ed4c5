use serde_json::{json, Value};

use super::{fixture, CREATED};
use crate::upstream::anthropic::response::{from_messages_response_at, unix_now};
use crate::upstream::anthropic::{from_messages_response, TranslateError};

fn translate(body: &[u8]) -> Value {
    serde_json::from_slice(&from_messages_response_at(body, CREATED).unwrap()).unwrap()
}

#[test]
fn translates_a_recorded_text_answer_byte_for_byte() {
    let out = from_messages_response_at(fixture!("text_end_turn.json"), CREATED).unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"id":"chatcmpl-jip1IPEuUgEq06uav2y16wg8duOfnMLv","object":"chat.completion","created":1700000000,"model":"SmolLM2-135M-Instruct","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of France is Paris."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":27,"completion_tokens":8,"total_tokens":35}}"#
    );
}

#[test]
fn maps_max_tokens_to_length() {
    let out = translate(fixture!("text_max_tokens.json"));
    assert_eq!(out["choices"][0]["finish_reason"], "length");
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "I'm excited to help with the new math textbook. It's called \"Math for Young Learners\""
    );
    assert_eq!(out["usage"], json!({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}));
}

#[test]
fn translates_a_recorded_tool_call() {
    let out = translate(fixture!("tool_use.json"));
    assert_eq!(
        out["choices"][0],
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [{
                "id": "vkODvvMj6phFsQx3QENuyLUpuvu13r1Z",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            }]},
            "logprobs": null,
            "finish_reason": "tool_calls",
        })
    );
    assert_eq!(out["usage"], json!({"prompt_tokens": 282, "completion_tokens": 31, "total_tokens": 313}));
}

#[test]
fn translates_text_and_several_tool_calls() {
    let out = translate(fixture!("text_and_tool_uses.json"));
    let message = &out["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check both cities");
    assert_eq!(
        message["tool_calls"],
        json!([
            {"id": "4IBFFMWHKsXKnCvcDuQXNPRiJznOOLSP", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "MNGDbIl2VhAMCWuels7S7ADsYelFk8pY", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        ])
    );
    assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    // llama-server reports the cached part of the prompt apart, as Anthropic does.
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 357, "completion_tokens": 66, "total_tokens": 423,
            "prompt_tokens_details": {"cached_tokens": 178}})
    );
}

#[test]
fn token_counts_past_u64_saturate() {
    // The sums overflowed: a panic in debug builds, wrong totals in release. The input is
    // fuzz/corpus/anthropic_stream/regression-usage-overflow-response.
    let body = json!({"id": "m", "model": "x", "content": [], "usage": {
        "input_tokens": u64::MAX, "cache_read_input_tokens": 1, "cache_creation_input_tokens": 1,
        "output_tokens": u64::MAX}});
    let out = translate(body.to_string().as_bytes());
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX, "total_tokens": u64::MAX,
            "prompt_tokens_details": {"cached_tokens": 1}})
    );
}

#[test]
fn drops_thinking_blocks() {
    let out = translate(fixture!("thinking_and_text.json"));
    assert_eq!(out["choices"][0]["message"], json!({"role": "assistant", "content": "27 * 453 = 12,231."}));
    assert_eq!(out["model"], "claude-sonnet-4-5");
    assert_eq!(out["id"], "msg_01Aq9w938a90dw8q");
}

#[test]
fn maps_a_refusal_to_content_filter() {
    let out = translate(fixture!("refusal.json"));
    assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
}

#[test]
fn counts_cache_reads_and_writes_as_prompt_tokens() {
    let out = translate(fixture!("stop_sequence_cached.json"));
    assert_eq!(out["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 3090, "completion_tokens": 12, "total_tokens": 3102,
            "prompt_tokens_details": {"cached_tokens": 2048}})
    );
}

#[test]
fn refuses_what_is_not_a_message() {
    for body in [fixture!("error_529_overloaded.json"), b"<html>Bad gateway</html>", b"{\"id\":\"x\"}"] {
        let err = from_messages_response(body).unwrap_err();
        assert!(matches!(err, TranslateError::Response(_)), "{err:?}");
    }
}

#[test]
fn stamps_the_current_time() {
    let before = unix_now();
    let out: Value = serde_json::from_slice(&from_messages_response(fixture!("text_end_turn.json")).unwrap()).unwrap();
    let created = out["created"].as_u64().unwrap();
    assert!(created >= before && created <= unix_now(), "{created}");
}
