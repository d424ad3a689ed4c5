//! `to_messages_request` over any JSON value: an error or a body the Messages API takes
//! (positive `max_tokens`, alternating turns of non-empty blocks, tool results first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tierwise::upstream::anthropic::{include_usage, to_messages_request, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = include_usage(&request);
    let Ok(body) = to_messages_request(&request, &Options { default_max_tokens: 1024 }) else {
        return;
    };
    assert!(body["model"].is_string(), "no model: {body}");
    assert!(body["max_tokens"].as_u64().is_some_and(|n| n > 0), "no max_tokens: {body}");
    let messages = body["messages"].as_array().expect("messages is an array");
    for pair in messages.windows(2) {
        assert_ne!(pair[0]["role"], pair[1]["role"], "turns do not alternate: {body}");
    }
    for message in messages {
        let blocks = message["content"].as_array().expect("content is an array of blocks");
        assert!(!blocks.is_empty(), "a turn without blocks: {body}");
        for block in blocks {
            if block["type"] == "text" {
                assert!(block["text"].as_str().is_some_and(|t| !t.is_empty()), "an empty text block: {body}");
            }
        }
        if message["role"] == "user" {
            let is_result = |b: &Value| b["type"] == "tool_result";
            let first_other = blocks.iter().position(|b| !is_result(b)).unwrap_or(blocks.len());
            assert!(!blocks[first_other..].iter().any(is_result), "a tool result after other blocks: {body}");
        }
    }
    serde_json::to_vec(&body).expect("the body serializes");
});
