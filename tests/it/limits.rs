//! Limits: per-key rate limits (requests and tokens per minute) and per-upstream
//! concurrency (a busy upstream's step is skipped — never past the privacy ceiling).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Two keys for profile `default`: `key-a` with `limits`, `key-b` without.
fn with_keys(toml: String, limits: &str) -> String {
    format!(
        "{toml}\n[[keys]]\nkey_env = \"KEY_A\"\nprofile = \"default\"\n{limits}\n\
         [[keys]]\nkey_env = \"KEY_B\"\nprofile = \"default\"\n"
    )
}

const KEYS: &[(&str, &str)] = &[("KEY_A", "key-a"), ("KEY_B", "key-b")];

async fn chat_as(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    client().post(app.url("/v1/chat/completions")).bearer_auth(key).json(body).send().await.unwrap()
}

/// tierwise with one upstream double (`local-model`) and the two keys.
async fn limited_app(up: &UpstreamDouble, limits: &str) -> TestApp {
    TestApp::start_with_env(&with_keys(config_for(&[("local", "local", &up.base_url())], &[], ""), limits), KEYS).await
}

/// Asserts a 429 from a key's limit with a `Retry-After` in `seconds`; its error.
async fn assert_limited(response: reqwest::Response, seconds: std::ops::RangeInclusive<u64>) -> Value {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!(seconds.contains(&retry_after), "Retry-After {retry_after}");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    error
}

async fn metrics(app: &TestApp) -> String {
    client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_key_over_its_requests_per_minute_gets_429_with_retry_after_and_other_keys_do_not() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = limited_app(&up, "requests_per_minute = 2").await;
    let body = chat_body("local-model");
    assert_eq!(chat_as(&app, "key-a", &body).await.status(), 200);
    assert_eq!(chat_as(&app, "key-a", &body).await.status(), 200);
    // 2 per minute refill one every 30 s.
    let error = assert_limited(chat_as(&app, "key-a", &body).await, 29..=30).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 requests per minute") && message.contains("requests_per_minute"), "{message}");
    assert_eq!(up.calls(), 2, "the limited request never reached the upstream");
    for _ in 0..5 {
        assert_eq!(chat_as(&app, "key-b", &body).await.status(), 200, "a key without limits is not limited");
    }
    let text = metrics(&app).await;
    assert!(text.contains(r#"tierwise_rate_limited_total{limit="requests",profile="default"} 1"#), "{text}");
}

#[tokio::test]
async fn tokens_per_minute_counts_the_usage_upstreams_report_json_and_streamed() {
    // Each JSON answer reports 1,163 tokens: with 2,000 per minute the second request is
    // admitted (837 left) and overdraws; the third waits.
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = limited_app(&up, "tokens_per_minute = 2000").await;
    let body = chat_body("local-model");
    assert_eq!(chat_as(&app, "key-a", &body).await.status(), 200);
    assert_eq!(chat_as(&app, "key-a", &body).await.status(), 200);
    // 326 tokens overdrawn at 2,000 a minute: about 10 s.
    let error = assert_limited(chat_as(&app, "key-a", &body).await, 9..=10).await;
    assert!(error["error"]["message"].as_str().unwrap().contains("2000 tokens per minute"), "{error}");
    assert_eq!(up.calls(), 2);

    // A stream's usage event (18 tokens) is charged when it passes.
    let streaming = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let app = limited_app(&streaming, "tokens_per_minute = 20").await;
    let body = serde_json::json!({"model": "local-model", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let response = chat_as(&app, "key-a", &body).await;
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    }
    // 18 + 18 of 20: 16 overdrawn at 20 a minute, about 51 s.
    assert_limited(chat_as(&app, "key-a", &body).await, 49..=52).await;
    assert_eq!(streaming.calls(), 2);
    let text = metrics(&app).await;
    assert!(text.contains(r#"tierwise_rate_limited_total{limit="tokens",profile="default"} 1"#), "{text}");
}

#[tokio::test]
async fn a_per_minute_limit_of_zero_is_a_config_error() {
    let problems = tierwise::config::load_from_str(
        &format!("[[keys]]\nkey_sha256 = \"{}\"\nprofile = \"default\"\nrequests_per_minute = 0\n", "ab".repeat(32)),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(problems.contains("keys[0].requests_per_minute: must be at least 1"), "{problems}");
}

/// `local` (max_concurrent = 1; streams slowly, and only streams) then `server`.
async fn busy_setup(queue: &str) -> (UpstreamDouble, UpstreamDouble, TestApp) {
    let local = UpstreamDouble::start(Behaviour::slow_stream(Duration::from_millis(60))).await;
    let server = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let mut toml = config_for(
        &[("local", "local", &local.base_url()), ("server", "server", &server.base_url())],
        &[("chat", &["local-model", "server-model"])],
        "",
    );
    toml = toml.replace("[upstreams.local]\n", &format!("[upstreams.local]\nmax_concurrent = 1\n{queue}\n"));
    let app = TestApp::start(&toml).await;
    (local, server, app)
}

fn stream_body(model: &str) -> Value {
    serde_json::json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_busy_upstream_is_skipped_to_the_next_step_but_sensitive_content_gets_503_never_the_server() {
    let (local, server, app) = busy_setup("queue_limit = 0").await;
    let holding = app.chat(stream_body("chat")).await;
    assert_eq!(holding.status(), 200);
    assert_eq!(header(&holding, "x-tierwise-tier"), "local");
    let text = metrics(&app).await;
    assert!(text.contains(r#"tierwise_upstream_in_flight{upstream="local"} 1"#), "the stream holds its slot\n{text}");

    // The only slot is taken and nothing may queue: the step is skipped, the next answers.
    let escalated = app.chat(chat_body("chat")).await;
    assert_eq!(escalated.status(), 200);
    assert_eq!(header(&escalated, "x-tierwise-tier"), "server");
    let attempts = header(&escalated, "x-tierwise-attempts").to_string();
    assert!(attempts.starts_with("local/local-model:skip(not_available), server/server-model:accept"), "{attempts}");
    let body: Value = escalated.json().await.unwrap();
    let why = body["tierwise"]["attempts"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("busy") && why.contains("upstreams.local.max_concurrent"), "{body}");

    // Sensitive content may not go to `server`: with local busy, nothing can run now.
    let mut sensitive = chat_body("chat");
    sensitive["metadata"] = serde_json::json!({"content_class": "sensitive"});
    let refused = app.chat(sensitive).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), "1");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "no_tier_available");
    assert!(error["error"]["message"].as_str().unwrap().contains("busy"), "{error}");
    assert_eq!(server.calls(), 1, "the sensitive request never reached the server tier");
    assert!(server.received().iter().all(|r| r.body["metadata"].is_null()));

    assert!(holding.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    let text = metrics(&app).await;
    assert!(text.contains(r#"tierwise_shed_total{scope="upstream",upstream="local"} 2"#), "{text}");
    assert!(text.contains(r#"tierwise_upstream_in_flight{upstream="local"} 0"#), "the slot was freed\n{text}");
    let again = app.chat(stream_body("chat")).await;
    assert_eq!(header(&again, "x-tierwise-tier"), "local", "the slot is free again");
    assert!(again.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(local.calls(), 2);
}

#[tokio::test]
async fn a_call_waits_in_the_queue_for_a_free_slot_within_its_budget() {
    let (local, server, app) = busy_setup("queue_limit = 4\nqueue_wait_ms = 10000").await;
    let holding = app.chat(stream_body("chat")).await;
    assert_eq!(holding.status(), 200);
    let started = Instant::now();
    let (waited, rest) = tokio::join!(app.chat(stream_body("chat")), holding.text());
    assert!(rest.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(waited.status(), 200);
    assert_eq!(header(&waited, "x-tierwise-tier"), "local", "it waited for local rather than escalate");
    assert!(waited.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert!(started.elapsed() >= Duration::from_millis(200), "it did wait for the stream to end");
    assert_eq!(local.calls(), 2);
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn the_queue_wait_ends_at_its_budget_then_the_next_step_answers() {
    let (_local, server, app) = busy_setup("queue_limit = 4\nqueue_wait_ms = 150").await;
    let holding = app.chat(stream_body("chat")).await;
    assert_eq!(holding.status(), 200);
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(header(&response, "x-tierwise-tier"), "server");
    let body: Value = response.json().await.unwrap();
    let why = body["tierwise"]["attempts"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("no place freed up within 15"), "{body}");
    assert_eq!(server.calls(), 1);
    drop(holding);
}

#[tokio::test]
async fn the_python_sdk_raises_its_rate_limit_error() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = limited_app(&up, "requests_per_minute = 2").await;
    crate::sdk::run_python("openai_limits_test.py", &app, 2).await;
    assert_eq!(up.calls(), 6, "2 for key-a, 4 for key-b; the limited call was never made");
}
