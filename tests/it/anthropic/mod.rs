//! `kind = "anthropic"` upstreams through tierwise: docs/providers.md's Anthropic snippet
//! pointed at a double serving the recorded and documented Messages bodies
//! (`tests/fixtures/anthropic/`), and at the real llama-server's `/v1/messages`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::providers::{app_for, doc_snippet, pointed_at, with_fallback_step};
use crate::support::llama::LlamaServer;
use crate::support::*;

mod real;

/// The `data:` payloads of an SSE body.
fn data_lines(body: &str) -> Vec<&str> {
    body.lines().filter_map(|l| l.strip_prefix("data: ")).collect()
}

/// The chunks of a finished OpenAI stream, checking it ends in `[DONE]`.
fn chunks(body: &str) -> Vec<Value> {
    let data = data_lines(body);
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect()
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|ch| ch["delta"]["content"].as_str())).collect()
}

/// A Messages double, and tierwise on docs/providers.md's Anthropic snippet pointed at it.
async fn anthropic(behaviour: Behaviour) -> (UpstreamDouble, TestApp) {
    let double = UpstreamDouble::start(behaviour).await;
    let app = app_for("anthropic", &double, "").await;
    (double, app)
}

/// The Anthropic step first, an OpenAI double answering JSON as the chain's next step.
async fn anthropic_then_openai(behaviour: Behaviour) -> (UpstreamDouble, UpstreamDouble, TestApp) {
    anthropic_then(behaviour, Behaviour::json("openai/chat_completion.json")).await
}

async fn anthropic_then(behaviour: Behaviour, next: Behaviour) -> (UpstreamDouble, UpstreamDouble, TestApp) {
    let double = UpstreamDouble::start(behaviour).await;
    let next = UpstreamDouble::start(next).await;
    let app = app_for("anthropic", &double, &with_fallback_step(&next, "claude")).await;
    (double, next, app)
}

#[tokio::test]
async fn a_messages_answer_comes_back_as_a_chat_completion() {
    let (double, app) = anthropic(Behaviour::json("anthropic/text_end_turn.json")).await;
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-secret-must-not-travel")
        .json(&json!({"model": "claude", "messages": [
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"}
        ], "temperature": 0, "seed": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    assert_eq!(header(&response, "x-tierwise-model"), "claude");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": "The capital of France is Paris."})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"], json!({"prompt_tokens": 27, "completion_tokens": 8, "total_tokens": 35}));

    let sent = &double.received()[0];
    assert_eq!(sent.uri.path(), "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-upstream");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none(), "the client's key must not travel");
    assert_eq!(
        sent.body,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "system": "Answer in one short sentence.",
               "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}],
               "temperature": 0}),
        "seed is dropped, max_tokens defaulted"
    );
}

#[tokio::test]
async fn max_tokens_default_is_per_upstream_and_the_request_wins() {
    let double = UpstreamDouble::start(Behaviour::json("anthropic/text_max_tokens.json")).await;
    let snippet =
        pointed_at(&doc_snippet("anthropic"), &double).replace("max_tokens_default = 4096", "max_tokens_default = 99");
    let app = TestApp::start_with_env(
        &format!("{snippet}\n[profiles.default]\ncloud_consent = true\n"),
        &[("ANTHROPIC_API_KEY", "k")],
    )
    .await;
    let response = app.chat(chat_body("claude")).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let mut capped = chat_body("claude");
    capped["max_completion_tokens"] = json!(7);
    assert_eq!(app.chat(capped).await.status(), 200);
    let sent: Vec<Value> = double.received().iter().map(|r| r.body["max_tokens"].clone()).collect();
    assert_eq!(sent, [json!(99), json!(7)]);
}

#[tokio::test]
async fn tools_go_out_as_anthropic_tools_and_tool_use_comes_back_as_tool_calls() {
    let (double, app) = anthropic(Behaviour::json("anthropic/tool_use.json")).await;
    let parameters = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let response = app
        .chat(json!({"model": "claude", "tool_choice": "required",
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": parameters}}]}))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "vkODvvMj6phFsQx3QENuyLUpuvu13r1Z", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    let sent = &double.received()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{"name": "get_weather", "description": "Get the weather", "input_schema": parameters}])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "any"}));
}

#[tokio::test]
async fn a_messages_stream_comes_back_as_chunks_with_usage_and_done() {
    let (double, app) = anthropic(Behaviour::sse("anthropic/stream_text.sse")).await;
    let response = app
        .chat(json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                     "messages": [{"role": "user", "content": "What is the capital of France?"}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let chunks = chunks(&response.text().await.unwrap());
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(streamed_text(&chunks), "The capital of France is Paris.");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-yCD4WzgLynqOapaWmJFdOWtI4JYmpiLo");
    }
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 27, "completion_tokens": 8, "total_tokens": 35,
               "prompt_tokens_details": {"cached_tokens": 26}})
    );
    assert_eq!(double.received()[0].body["stream"], true);
    assert!(double.received()[0].body.get("stream_options").is_none());
}

#[tokio::test]
async fn a_streamed_tool_use_comes_back_as_tool_call_deltas() {
    let (_double, app) = anthropic(Behaviour::sse("anthropic/stream_docs_tool_use.sse")).await;
    let response = app
        .chat(json!({"model": "claude", "stream": true,
            "messages": [{"role": "user", "content": "Weather in San Francisco?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}))
        .await;
    let chunks = chunks(&response.text().await.unwrap());
    assert_eq!(streamed_text(&chunks), "Okay, let's check the weather for San Francisco:");
    let calls: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).map(|t| &t[0]).collect();
    assert_eq!(calls[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls.iter().map(|c| c["function"]["arguments"].as_str().unwrap()).collect();
    assert_eq!(arguments, "{\"location\": \"San Francisco, CA\"}");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
}

#[tokio::test]
async fn overloaded_rate_limited_failing_and_malformed_answers_go_to_the_next_step() {
    for behaviour in [
        Behaviour::status(529, "anthropic/error_529_overloaded.json"),
        Behaviour::status(429, "anthropic/error_429_rate_limit.json"),
        Behaviour::status(500, "anthropic/error_500_api.json"),
        Behaviour::status(500, "anthropic/llama_server_error_500.json"),
        Behaviour::json("openai/chat_completion.json"),
    ] {
        let label = format!("{behaviour:?}").chars().take(60).collect::<String>();
        let (double, next, app) = anthropic_then_openai(behaviour).await;
        let response = app.chat(chat_body("chat")).await;
        assert_eq!(response.status(), 200, "{label}");
        assert_eq!(header(&response, "x-tierwise-model"), "next-model", "{label}");
        let attempts = header(&response, "x-tierwise-attempts").to_string();
        assert!(
            attempts.starts_with("cloud/claude:error(runtime_error):") && attempts.contains("cloud/next-model:accept"),
            "{label}: {attempts}"
        );
        assert_eq!(strip_trail(&response.bytes().await.unwrap()), fixture("openai/chat_completion.json"));
        // Overloaded, rate-limited and failing answers are retried twice first (the
        // default for cloud upstreams); a malformed answer is not.
        let tries = if label.starts_with("Json") { 1 } else { 3 };
        assert_eq!((double.calls(), next.calls()), (tries, 1), "{label}");
    }
}

#[tokio::test]
async fn a_529_on_the_last_step_is_a_502_naming_the_overload() {
    let (_double, app) = anthropic(Behaviour::status(529, "anthropic/error_529_overloaded.json")).await;
    let response = app.chat(chat_body("claude")).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("answered 503 (type server_error, code overloaded_error): Overloaded"), "{body}");
}

#[tokio::test]
async fn a_4xx_goes_back_to_the_client_in_the_openai_envelope() {
    for (status, fixture_path, code, kind) in [
        (400, "anthropic/error_400_invalid_request.json", json!("invalid_request_error"), "invalid_request_error"),
        (400, "anthropic/error_400_prompt_too_long.json", json!("context_length_exceeded"), "invalid_request_error"),
        (401, "anthropic/error_401_authentication.json", json!("invalid_api_key"), "invalid_request_error"),
        (404, "anthropic/error_404_not_found.json", json!("model_not_found"), "invalid_request_error"),
        (
            400,
            "anthropic/llama_server_error_400_context.json",
            json!("context_length_exceeded"),
            "invalid_request_error",
        ),
    ] {
        let (double, next, app) = anthropic_then_openai(Behaviour::status(status, fixture_path)).await;
        let response = app.chat(chat_body("chat")).await;
        assert_eq!(response.status(), status, "{fixture_path}");
        assert_eq!(header(&response, "content-type"), "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{fixture_path}: {body}");
        assert_eq!(body["error"]["type"], kind, "{fixture_path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("upstream \"anthropic\": "), "{body}");
        assert!(!body.to_string().contains("sk-ant-upstream"));
        assert_eq!((double.calls(), next.calls()), (1, 0), "{fixture_path}: a 4xx must not be retried elsewhere");
    }
}

#[tokio::test]
async fn a_content_filter_block_goes_back_to_the_client_and_the_next_step_is_not_called() {
    let (double, next, app) =
        anthropic_then_openai(Behaviour::status(400, "anthropic/error_400_content_filtering.json")).await;
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(response.status(), 400);
    assert!(header(&response, "x-tierwise-attempts").starts_with("cloud/claude:error(runtime_error):"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_filter");
    assert_eq!(body["error"]["message"], "upstream \"anthropic\": Output blocked by content filtering policy");
    assert_eq!((double.calls(), next.calls()), (1, 0));
}

#[tokio::test]
async fn a_request_anthropic_cannot_serve_skips_to_the_next_step_without_a_call() {
    for (field, value) in [("n", json!(2)), ("logprobs", json!(true))] {
        let (double, next, app) = anthropic_then_openai(Behaviour::json("anthropic/text_end_turn.json")).await;
        let mut body = chat_body("chat");
        body[field] = value.clone();
        let response = app.chat(body).await;
        assert_eq!(response.status(), 200, "{field}");
        assert_eq!(header(&response, "x-tierwise-model"), "next-model");
        assert!(header(&response, "x-tierwise-attempts").starts_with("cloud/claude:error(runtime_error):"));
        assert_eq!((double.calls(), next.calls()), (0, 1), "{field}: nothing may be sent to Anthropic");
        assert_eq!(next.received()[0].body[field], value, "the next step gets the request as it came");
    }

    // Alone, the step's failure names the field.
    let (_double, app) = anthropic(Behaviour::json("anthropic/text_end_turn.json")).await;
    let mut body = chat_body("claude");
    body["n"] = json!(3);
    let response = app.chat(body).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("cannot serve this request"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`n`"), "{body}");
}

#[tokio::test]
async fn a_request_the_translation_finds_malformed_is_a_400_naming_the_field() {
    let (double, next, app) = anthropic_then_openai(Behaviour::json("anthropic/text_end_turn.json")).await;
    let mut body = chat_body("chat");
    body["stop"] = json!(5);
    let response = app.chat(body).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "stop");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!((double.calls(), next.calls()), (0, 0));
}

/// A stream that ends with an error event: the whole SSE text, the text streamed before
/// the error, and the error.
async fn broken_stream(app: &TestApp) -> (String, String, Value) {
    let response =
        app.chat(json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let data = data_lines(&text);
    let (error, chunks) = data.split_last().unwrap();
    let chunks: Vec<Value> = chunks.iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let error: Value = serde_json::from_str(error).unwrap();
    let streamed = streamed_text(&chunks);
    (text, streamed, error)
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_sse_error_event() {
    let (_double, app) = anthropic(Behaviour::sse("anthropic/stream_cut.sse")).await;
    let (text, streamed, error) = broken_stream(&app).await;
    assert_eq!(streamed, "The capital of");
    assert_eq!(error["error"]["code"], "upstream_stream_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("without message_stop"), "{error}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn a_connection_broken_midway_ends_with_an_sse_error_event() {
    let (_double, app) = anthropic(Behaviour::Sse {
        body: fixture("anthropic/stream_text.sse"),
        gap: Duration::from_millis(5),
        cut_after: Some(4),
    })
    .await;
    let (text, streamed, error) = broken_stream(&app).await;
    assert_eq!(streamed, "The capital");
    assert_eq!(error["error"]["code"], "upstream_stream_error", "{text}");
    assert!(error["error"]["message"].as_str().unwrap().contains("stream broke"), "{error}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn an_error_event_midway_ends_with_an_sse_error_event() {
    let (_double, app) = anthropic(Behaviour::Sse {
        body: fixture("anthropic/stream_error_overloaded.sse"),
        gap: Duration::from_millis(5),
        cut_after: None,
    })
    .await;
    let (_, streamed, error) = broken_stream(&app).await;
    assert_eq!(streamed, "Once upon");
    assert_eq!(error["error"]["code"], "upstream_stream_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("Overloaded"), "{error}");
}

#[tokio::test]
async fn an_error_event_before_any_output_goes_to_the_next_step() {
    let overloaded = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (double, next, app) = anthropic_then(
        Behaviour::Sse { body: overloaded.into(), gap: Duration::ZERO, cut_after: None },
        Behaviour::sse("openai/chat_stream_usage.sse"),
    )
    .await;
    let mut body = chat_body("chat");
    body["stream"] = json!(true);
    let response = app.chat(body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-model"), "next-model");
    assert!(header(&response, "x-tierwise-attempts").starts_with("cloud/claude:error(runtime_error):"));
    assert_eq!(response.bytes().await.unwrap(), fixture("openai/chat_stream_usage.sse"));
    // An overloaded error event is retryable: one try and the default two retries.
    assert_eq!((double.calls(), next.calls()), (3, 1));
}

// ── The real thing: llama-server's Anthropic endpoint, `/v1/messages` ──────────────
