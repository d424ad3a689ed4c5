//! `stream: true`: bytes pass through as they arrive; failures before the first byte go
//! to the next step, failures after it end the stream with an OpenAI error event; a
//! client that hangs up drops the upstream call.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::*;

fn stream_body(model: &str) -> Value {
    json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": "Say hello."}]})
}

/// The `data:` payloads of an SSE body.
fn data_lines(body: &str) -> Vec<&str> {
    body.lines().filter_map(|l| l.strip_prefix("data: ")).collect()
}

#[tokio::test]
async fn streams_the_upstream_bytes_unchanged_with_usage_and_done() {
    let up = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let app =
        TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[("chat", &["local-model"])], "")).await;
    let response = app.chat(stream_body("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    assert_eq!(header(&response, "x-tierwise-model"), "local-model");
    assert!(header(&response, "x-tierwise-attempts").starts_with("local/local-model:accept:"));
    let body = response.bytes().await.unwrap();
    assert_eq!(body, fixture("openai/chat_stream_usage.sse"));

    let text = std::str::from_utf8(&body).unwrap();
    let data = data_lines(text);
    assert_eq!(*data.last().unwrap(), "[DONE]");
    let usage: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 18);
    assert_eq!(up.received()[0].body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn events_reach_the_client_as_they_arrive() {
    let gap = Duration::from_millis(150);
    let up =
        UpstreamDouble::start(Behaviour::Sse { body: fixture("openai/chat_stream_usage.sse"), gap, cut_after: None })
            .await;
    let app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], "")).await;
    let response = app.chat(stream_body("local-model")).await;
    let started = tokio::time::Instant::now();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(std::str::from_utf8(&first).unwrap().contains("\"role\":\"assistant\""));
    // The whole stream takes 11 gaps (1.65 s); the first event must not wait for it.
    assert!(first_at < gap * 5, "first event after {first_at:?}: the stream was buffered");
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8(rest).unwrap().ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_failing_before_its_first_byte_goes_to_the_next_step() {
    let cut_at_once = UpstreamDouble::start(Behaviour::Sse {
        body: fixture("openai/chat_stream_usage.sse"),
        gap: Duration::ZERO,
        cut_after: Some(0),
    })
    .await;
    let erroring = UpstreamDouble::start(Behaviour::status(502, "openai/error_500_server.json")).await;
    let good = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let toml = config_for(
        &[
            ("a", "local", &cut_at_once.base_url()),
            ("b", "server", &erroring.base_url()),
            ("c", "cloud", &good.base_url()),
        ],
        &[("chat", &["a-model", "b-model", "c-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(stream_body("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-model"), "c-model");
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    assert!(
        attempts.starts_with("local/a-model:error(not_ready):")
            && attempts.contains("server/b-model:error(runtime_error):"),
        "{attempts}"
    );
    assert_eq!(response.bytes().await.unwrap(), fixture("openai/chat_stream_usage.sse"));
    // The server step's 502 is retried twice (the default for server upstreams).
    assert_eq!((cut_at_once.calls(), erroring.calls(), good.calls()), (1, 3, 1));
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_openai_error_event() {
    let up = UpstreamDouble::start(Behaviour::Sse {
        body: fixture("openai/chat_stream_usage.sse"),
        gap: Duration::from_millis(5),
        cut_after: Some(4),
    })
    .await;
    let app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], "")).await;
    let response = app.chat(stream_body("local-model")).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let data = data_lines(&text);
    assert_eq!(data.len(), 5, "four upstream events, then the error: {text}");
    for event in &data[..4] {
        assert_eq!(serde_json::from_str::<Value>(event).unwrap()["object"], "chat.completion.chunk");
    }
    let error: Value = serde_json::from_str(data[4]).unwrap();
    assert_eq!(error["error"]["code"], "upstream_stream_error");
    assert_eq!(error["error"]["type"], "upstream_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("upstream \"local\" stream broke"));
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn a_stream_that_ends_without_done_is_reported() {
    let mut body = fixture("openai/chat_stream_usage.sse").to_vec();
    body.truncate(body.len() - "data: [DONE]\n\n".len());
    let up = UpstreamDouble::start(Behaviour::Sse { body: body.into(), gap: Duration::ZERO, cut_after: None }).await;
    let app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], "")).await;
    let text = app.chat(stream_body("local-model")).await.text().await.unwrap();
    let last: Value = serde_json::from_str(data_lines(&text).last().unwrap()).unwrap();
    assert!(last["error"]["message"].as_str().unwrap().contains("without data: [DONE]"), "{text}");
}

#[tokio::test]
async fn a_client_hanging_up_drops_the_upstream_stream() {
    // A long stream: 12 events, 200 ms apart.
    let up = UpstreamDouble::start(Behaviour::slow_stream(Duration::from_millis(200))).await;
    let app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], "")).await;
    let response = app.chat(stream_body("local-model")).await;
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    assert!(
        up.wait_abandoned_stream(Duration::from_secs(2)).await,
        "the upstream still streams after the client went away"
    );
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_not_passed_off_as_sse() {
    let json_only = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let good = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let toml = config_for(
        &[("a", "local", &json_only.base_url()), ("b", "cloud", &good.base_url())],
        &[("chat", &["a-model", "b-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(stream_body("chat")).await;
    assert_eq!(header(&response, "x-tierwise-model"), "b-model");
    assert_eq!(response.bytes().await.unwrap(), fixture("openai/chat_stream_usage.sse"));
}
