//! Every client-side error path answers in the OpenAI envelope.

use serde_json::{json, Value};

use crate::support::*;

async fn app_with_limit(limit: &str) -> (TestApp, UpstreamDouble) {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let extra = format!("[server]\nbody_limit_bytes = {limit}\n");
    let app =
        TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[("chat", &["local-model"])], &extra)).await;
    (app, up)
}

async fn post_raw(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(header(&response, "content-type"), "application/json");
    (status, response.json().await.unwrap())
}

fn assert_envelope(body: &Value) {
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(error["type"].is_string(), "{body}");
    assert!(error.get("param").is_some() && error.get("code").is_some(), "{body}");
}

#[tokio::test]
async fn malformed_json_names_line_and_column() {
    let (app, up) = app_with_limit("1048576").await;
    let (status, body) = post_raw(&app, "application/json", "{\"model\": \"chat\",\n \"messages\": [}").await;
    assert_eq!(status, 400);
    assert_envelope(&body);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 2 column"), "{body}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn wrong_types_missing_and_empty_messages_name_the_field() {
    let (app, _up) = app_with_limit("1048576").await;
    let cases = [
        (json!({"model": "chat", "messages": "hi"}), "messages"),
        (json!({"model": "chat", "messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
        (json!({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}), "messages[0].role"),
        (json!({"model": "chat", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}), "stream"),
        (json!({"model": 7, "messages": [{"role": "user", "content": "x"}]}), "model"),
        (json!({"model": "chat"}), "messages"),
        (json!({"model": "chat", "messages": []}), "messages"),
        (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
    ];
    for (request, param) in cases {
        let response = app.chat(request.clone()).await;
        assert_eq!(response.status(), 400, "{request}");
        let body: Value = response.json().await.unwrap();
        assert_envelope(&body);
        assert_eq!(body["error"]["param"], param, "{request} → {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(param), "{body}");
    }
}

#[tokio::test]
async fn an_unknown_model_is_a_404_listing_what_exists() {
    let (app, up) = app_with_limit("1048576").await;
    let response = app.chat(chat_body("gpt-5-turbo")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("gpt-5-turbo") && message.contains("chat, local-model"), "{message}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn wrong_content_type_is_refused() {
    let (app, _up) = app_with_limit("1048576").await;
    let (status, body) = post_raw(&app, "text/plain", chat_body("chat").to_string()).await;
    assert_eq!(status, 415);
    assert_envelope(&body);
    assert!(body["error"]["message"].as_str().unwrap().contains("application/json"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_in_the_envelope() {
    let (app, up) = app_with_limit("2048").await;
    let big = json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let (status, body) = post_raw(&app, "application/json", big.to_string()).await;
    assert_eq!(status, 413);
    assert_envelope(&body);
    assert_eq!(body["error"]["code"], "request_too_large");
    // Also without a Content-Length (chunked), where the limit bites while reading.
    let chunks = futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let (status, _) = post_raw(&app, "application/json", reqwest::Body::wrap_stream(chunks)).await;
    assert_eq!(status, 413);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_the_envelope() {
    let (app, _up) = app_with_limit("1048576").await;
    let response = client().post(app.url("/v1/images/generations")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
    assert_eq!(body["error"]["message"], "Unknown request URL: POST /v1/images/generations.");

    let response = client().get(app.url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn the_request_deadline_is_a_504_in_the_envelope() {
    let up = UpstreamDouble::start(Behaviour::Stall).await;
    let toml = config_for(&[("slow", "local", &up.base_url())], &[], "[server]\nrequest_timeout_ms = 300\n")
        .replace("first_byte_timeout_ms = 2000", "first_byte_timeout_ms = 60000");
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("slow-model")).await;
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(body["error"]["message"].as_str().unwrap().contains("300 ms"));
}
