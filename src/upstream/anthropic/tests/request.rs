use serde_json::{json, Value};

use crate::upstream::anthropic::{include_usage, to_messages_request, Options, TranslateError};

const OPTIONS: Options = Options { default_max_tokens: 4096 };

fn translate(request: Value) -> Value {
    to_messages_request(&request, &OPTIONS).unwrap()
}

fn error(request: Value) -> TranslateError {
    to_messages_request(&request, &OPTIONS).unwrap_err()
}

fn chat(messages: Value) -> Value {
    json!({"model": "claude-haiku-4-5", "messages": messages})
}

#[test]
fn translates_a_plain_request_with_the_default_max_tokens() {
    let body = translate(chat(json!([{"role": "user", "content": "Hi"}])));
    assert_eq!(
        body,
        json!({
            "model": "claude-haiku-4-5",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        })
    );
}

#[test]
fn hoists_system_and_developer_messages_into_system() {
    let body = translate(chat(json!([
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}, {"type": "text", "text": "No emoji."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "system", "content": "Answer in French."},
        {"role": "assistant", "content": "Il pleut."},
    ])));
    assert_eq!(body["system"], "You are terse.\n\nUse metric units.\n\nNo emoji.\n\nAnswer in French.");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Il pleut."}]},
        ])
    );
}

#[test]
fn merges_consecutive_turns_of_one_role() {
    let body = translate(chat(json!([
        {"role": "user", "content": "One"},
        {"role": "user", "content": [{"type": "text", "text": "Two"}]},
        {"role": "assistant", "content": "Three"},
        {"role": "assistant", "content": "Four"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "Five"},
    ])));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Three"}, {"type": "text", "text": "Four"}]},
            {"role": "user", "content": [{"type": "text", "text": "Five"}]},
        ])
    );
}

#[test]
fn turns_tool_calls_into_tool_use_and_tool_messages_into_tool_results() {
    let body = translate(chat(json!([
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 20C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Snow, -3C"}]},
        {"role": "user", "content": "Thanks. Which is warmer?"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "now", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_3", "content": ""},
    ])));
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Oslo"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny, 20C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "Snow, -3C"}]},
                {"type": "text", "text": "Thanks. Which is warmer?"},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_3", "name": "now", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_3"}]},
        ])
    );
}

#[test]
fn puts_tool_results_before_other_blocks_of_their_turn() {
    let body = translate(chat(json!([
        {"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "By the way: hurry."},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ])));
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_1", "content": "done"},
            {"type": "text", "text": "By the way: hurry."},
        ])
    );
}

#[test]
fn names_the_field_of_unparseable_tool_arguments() {
    let err = error(chat(json!([
        {"role": "user", "content": "Go"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]},
    ])));
    assert!(matches!(err, TranslateError::Invalid { .. }), "{err:?}");
    assert_eq!(err.param(), Some("messages[1].tool_calls[0].function.arguments"));
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    let err = error(chat(json!([
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1, 2]"}}]},
    ])));
    assert_eq!(err.param(), Some("messages[0].tool_calls[0].function.arguments"));
}

#[test]
fn translates_image_parts() {
    let body = translate(chat(json!([{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])));
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is in these?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );

    for url in ["data:image/png,rawbytes", "ftp://example.com/cat.jpg"] {
        let err = error(chat(json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])));
        assert_eq!(err.param(), Some("messages[0].content[0].image_url.url"), "{url}");
    }
    let err = error(chat(json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}])));
    assert!(matches!(err, TranslateError::Unsupported { .. }));
    assert_eq!(err.param(), Some("messages[0].content[0].type"));
}

#[test]
fn translates_tools() {
    let body = translate(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": true}},
            {"type": "function", "function": {"name": "now"}},
        ],
    }));
    assert_eq!(
        body["tools"],
        json!([
            {"name": "get_weather", "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ])
    );
    assert!(body.get("tool_choice").is_none());

    let err = error(json!({"model": "m", "messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]}));
    assert_eq!(err.param(), Some("tools[0].type"));
}

#[test]
fn translates_every_tool_choice() {
    let cases = [
        (json!("auto"), true, Some(json!({"type": "auto"}))),
        (json!("required"), true, Some(json!({"type": "any"}))),
        (json!("none"), true, Some(json!({"type": "none"}))),
        (json!({"type": "function", "function": {"name": "f"}}), true, Some(json!({"type": "tool", "name": "f"}))),
        (Value::Null, true, None),
        (Value::Null, false, Some(json!({"type": "auto", "disable_parallel_tool_use": true}))),
        (json!("required"), false, Some(json!({"type": "any", "disable_parallel_tool_use": true}))),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            false,
            Some(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})),
        ),
        (json!("none"), false, Some(json!({"type": "none"}))),
    ];
    for (choice, parallel, expected) in cases {
        let body = translate(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": choice,
            "parallel_tool_calls": parallel,
        }));
        assert_eq!(body.get("tool_choice"), expected.as_ref(), "{choice} parallel={parallel}");
    }

    // Without tools there is nothing to choose: the Messages API would refuse it.
    let body = translate(json!({"model": "m", "messages": [], "tool_choice": "none", "parallel_tool_calls": false}));
    assert!(body.get("tool_choice").is_none());

    let err = error(json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "sometimes"}));
    assert_eq!(err.param(), Some("tool_choice"));
}

#[test]
fn translates_stop_into_stop_sequences() {
    let stop =
        |stop: Value| translate(json!({"model": "m", "messages": [], "stop": stop})).get("stop_sequences").cloned();
    assert_eq!(stop(json!("\n\n")), Some(json!(["\n\n"])));
    assert_eq!(stop(json!(["END", "STOP"])), Some(json!(["END", "STOP"])));
    assert_eq!(stop(json!([])), None);
    assert_eq!(stop(Value::Null), None);
    assert_eq!(error(json!({"model": "m", "messages": [], "stop": 3})).param(), Some("stop"));
}

#[test]
fn takes_max_completion_tokens_then_max_tokens_then_the_default() {
    let max = |extra: Value| {
        let mut request = json!({"model": "m", "messages": []});
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        to_messages_request(&request, &Options { default_max_tokens: 1000 }).map(|b| b["max_tokens"].clone())
    };
    assert_eq!(max(json!({})).unwrap(), 1000);
    assert_eq!(max(json!({"max_tokens": 50})).unwrap(), 50);
    assert_eq!(max(json!({"max_tokens": 50, "max_completion_tokens": 70})).unwrap(), 70);
    assert_eq!(max(json!({"max_tokens": null})).unwrap(), 1000);
    assert_eq!(max(json!({"max_tokens": 0})).unwrap_err().param(), Some("max_tokens"));
    assert_eq!(max(json!({"max_completion_tokens": "many"})).unwrap_err().param(), Some("max_completion_tokens"));
}

#[test]
fn passes_sampling_stream_and_user_and_drops_what_has_no_equivalent() {
    let body = translate(json!({
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2, "top_p": 0.9, "stream": true, "stream_options": {"include_usage": true},
        "user": "user-42", "seed": 7, "frequency_penalty": 0.5, "presence_penalty": 0.1,
        "logit_bias": {"50256": -100}, "n": 1, "logprobs": false, "store": true, "metadata": {"k": "v"},
    }));
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "temperature": 0.2, "top_p": 0.9, "stream": true,
            "metadata": {"user_id": "user-42"},
        })
    );
}

#[test]
fn refuses_what_the_messages_api_cannot_do() {
    let cases = [
        (json!({"n": 2}), "n"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
    ];
    for (extra, param) in cases {
        let mut request = json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let err = error(request);
        assert!(matches!(err, TranslateError::Unsupported { .. }), "{err:?}");
        assert_eq!(err.param(), Some(param));
    }
}

#[test]
fn adds_a_json_instruction_for_response_format() {
    let body = translate(json!({
        "model": "m",
        "messages": [{"role": "system", "content": "Extract the city."}, {"role": "user", "content": "I live in Oslo."}],
        "response_format": {"type": "json_object"},
    }));
    assert_eq!(
        body["system"],
        "Extract the city.\n\nRespond with a single JSON object only: no prose, no code fences."
    );

    let body = translate(json!({
        "model": "m",
        "messages": [{"role": "user", "content": "I live in Oslo."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    }));
    // serde_json keeps object keys sorted: the schema reads in that order.
    assert_eq!(
        body["system"],
        "Respond with a single JSON object only: no prose, no code fences. It must match this JSON schema:\n\
         {\n  \"properties\": {\n    \"city\": {\n      \"type\": \"string\"\n    }\n  },\n  \"type\": \"object\"\n}"
    );

    let body = translate(json!({"model": "m", "messages": [], "response_format": {"type": "text"}}));
    assert!(body.get("system").is_none());
}

#[test]
fn rejects_malformed_requests_naming_the_field() {
    assert_eq!(error(json!({"messages": []})).param(), Some("model"));
    assert_eq!(error(json!({"model": "m"})).param(), Some("messages"));
    assert_eq!(error(chat(json!([{"role": "narrator", "content": "x"}]))).param(), Some("messages[0].role"));
    assert_eq!(error(chat(json!([{"role": "user"}]))).param(), Some("messages[0].content"));
    assert_eq!(error(chat(json!([{"role": "tool", "content": "x"}]))).param(), Some("messages[0].tool_call_id"));
    assert_eq!(error(chat(json!([{"role": "function", "content": "x"}]))).param(), Some("messages[0].role"));
    assert!(matches!(error(json!([])), TranslateError::Invalid { param: None, .. }));
}

#[test]
fn reads_include_usage_from_stream_options() {
    assert!(include_usage(&json!({"stream": true, "stream_options": {"include_usage": true}})));
    assert!(!include_usage(&json!({"stream": true, "stream_options": {"include_usage": false}})));
    assert!(!include_usage(&json!({"stream": true})));
}
