//! Retries within a step, circuit breakers, and rate limits passed on with Retry-After.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Upstream `a` (server) with `knobs`, and optionally `b` (cloud) after it. Backoff
/// defaults to 20 ms up to 2 s unless `knobs` sets it.
fn retry_config(up: &UpstreamDouble, next: Option<&UpstreamDouble>, knobs: &str) -> String {
    let mut knobs = knobs.to_string();
    if !knobs.contains("retry_backoff_ms") {
        knobs.push_str("\nretry_backoff_ms = 20\nretry_backoff_max_ms = 2000");
    }
    let mut toml = format!(
        "[upstreams.a]\ntier = \"server\"\nbase_url = \"{}\"\n{knobs}\n[models.a]\nupstream = \"a\"\n",
        up.base_url()
    );
    match next {
        Some(next) => toml.push_str(&format!(
            "[upstreams.b]\ntier = \"cloud\"\nbase_url = \"{}\"\n[models.b]\nupstream = \"b\"\n[tasks.t]\nchain = [\"a\", \"b\"]\n",
            next.base_url()
        )),
        None => toml.push_str("[tasks.t]\nchain = [\"a\"]\n"),
    }
    toml.push_str("[profiles.default]\ncloud_consent = true\n");
    toml
}

#[tokio::test]
async fn a_step_is_retried_on_5xx_and_each_retry_is_in_the_trail() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    up.then(Behaviour::status(503, "openai/error_500_server.json"))
        .then(Behaviour::status(500, "openai/error_500_server.json"));
    let app = TestApp::start(&retry_config(&up, None, "retries = 2")).await;
    let response = app.chat(chat_body("t")).await;
    assert_eq!(response.status(), 200);
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    let parts: Vec<&str> = attempts.split(", ").collect();
    assert_eq!(parts.len(), 3, "{attempts}");
    assert!(parts[0].starts_with("server/a:error(runtime_error):") && parts[0].ends_with(":retried"), "{attempts}");
    assert!(parts[1].ends_with(":retried") && parts[2].starts_with("server/a:accept:"), "{attempts}");
    let body: Value = response.json().await.unwrap();
    assert!(body["tierwise"]["attempts"][0]["retry_after_ms"].as_u64().unwrap() <= 20);
    assert_eq!(up.calls(), 3);
}

#[tokio::test]
async fn retries_are_bounded_then_the_next_step_answers() {
    let failing = UpstreamDouble::start(Behaviour::status(502, "openai/error_500_server.json")).await;
    let next = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&retry_config(&failing, Some(&next), "retries = 1")).await;
    let response = app.chat(chat_body("t")).await;
    assert_eq!(header(&response, "x-tierwise-model"), "b");
    assert_eq!((failing.calls(), next.calls()), (2, 1), "one try and one retry");
}

#[tokio::test]
async fn a_4xx_is_never_retried() {
    let refusing = UpstreamDouble::start(Behaviour::status(400, "openai/error_400_context_length.json")).await;
    let app = TestApp::start(&retry_config(&refusing, None, "retries = 3")).await;
    assert_eq!(app.chat(chat_body("t")).await.status(), 400);
    assert_eq!(refusing.calls(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_last_429_reaches_the_client_with_it() {
    let limited = UpstreamDouble::start(Behaviour::RateLimited { retry_after: 1 }).await;
    let app = TestApp::start(&retry_config(&limited, None, "retries = 1")).await;
    let response = app.chat(chat_body("t")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "retry-after"), "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(limited.calls(), 2);
    // The trail says how long the retry waited: at least the Retry-After.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.matches("answered 429").count() == 2, "{message}");
    let waited = limited.received()[1].at.duration_since(limited.received()[0].at);
    assert!(waited >= Duration::from_millis(1000), "Retry-After: 1 was not waited for ({waited:?})");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_backoff_cap_is_not_waited_for_and_the_next_step_answers() {
    let limited = UpstreamDouble::start(Behaviour::RateLimited { retry_after: 60 }).await;
    let next = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&retry_config(&limited, Some(&next), "retries = 3")).await;
    let response = app.chat(chat_body("t")).await;
    assert_eq!(header(&response, "x-tierwise-model"), "b", "a rate-limited step escalates");
    let attempts = header(&response, "x-tierwise-attempts");
    assert!(attempts.starts_with("server/a:error(runtime_error)") && !attempts.contains("retried"), "{attempts}");
    assert_eq!(limited.calls(), 1);
}

#[tokio::test]
async fn retries_stop_at_the_request_deadline() {
    let failing = UpstreamDouble::start(Behaviour::status(503, "openai/error_500_server.json")).await;
    let app = TestApp::start(&retry_config(
        &failing,
        None,
        "retries = 10\nretry_backoff_ms = 400\nretry_backoff_max_ms = 400",
    ))
    .await;
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("x-tierwise-deadline-ms", "300")
        .json(&chat_body("t"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    // No backoff sleep may cross the deadline, whatever the jitter drew (short draws
    // allow more tries within it): the waits the trail lists fit in the 300 ms.
    let body: Value = response.json().await.unwrap();
    let waits: u64 =
        body["error"]["skipped"].as_array().unwrap().iter().filter_map(|a| a["retry_after_ms"].as_u64()).sum();
    assert!(waits < 300, "retries waited {waits} ms, past the deadline: {body}");
    assert!(failing.calls() < 11, "it gave up before its ten retries");
}

#[tokio::test]
async fn a_circuit_opens_after_repeated_failures_and_skips_without_calling() {
    let failing = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let next = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let knobs = "retries = 0\ncircuit_failures = 3\ncircuit_cooldown_ms = 400";
    let app = TestApp::start(&retry_config(&failing, Some(&next), knobs)).await;
    for _ in 0..3 {
        assert_eq!(app.chat(chat_body("t")).await.status(), 200);
    }
    assert_eq!(failing.calls(), 3);
    let response = app.chat(chat_body("t")).await;
    assert!(header(&response, "x-tierwise-attempts").starts_with("server/a:skip(not_available), cloud/b:accept"));
    let body: Value = response.json().await.unwrap();
    let message = body["tierwise"]["attempts"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("circuit open for 1 s after 3 failures"), "{message}");
    assert_eq!(failing.calls(), 3, "no call while open");
    let circuit = |text: &str, upstream: &str| {
        let line = format!("tierwise_circuit_open{{upstream=\"{upstream}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(line.as_str()).map(str::to_string))
    };
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(circuit(&metrics, "a").as_deref(), Some("1"), "{metrics}");
    assert_eq!(circuit(&metrics, "b").as_deref(), Some("0"), "{metrics}");

    // After the cooldown one request probes it; a success closes it.
    tokio::time::sleep(Duration::from_millis(450)).await;
    failing.then(Behaviour::json("openai/chat_completion.json"));
    let response = app.chat(chat_body("t")).await;
    assert_eq!(header(&response, "x-tierwise-model"), "a", "the probe went through and answered");
    assert_eq!(failing.calls(), 4);
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(circuit(&metrics, "a").as_deref(), Some("0"), "closed again\n{metrics}");
}

#[tokio::test]
async fn beyond_capacity_requests_get_503_with_retry_after_and_then_service_resumes() {
    let slow = UpstreamDouble::start(Behaviour::slow_stream(Duration::from_millis(100))).await;
    let extra = "[server]\nmax_concurrent_requests = 1\nqueue_limit = 0\n";
    let app = TestApp::start(&config_for(&[("local", "local", &slow.base_url())], &[], extra)).await;
    let body =
        serde_json::json!({"model": "local-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let holding = app.chat(body.clone()).await;
    assert_eq!(holding.status(), 200);
    // The first stream holds the only place until its body is done.
    let shed = app.chat(body.clone()).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(header(&shed, "retry-after"), "1");
    let error: Value = shed.json().await.unwrap();
    assert_eq!(error["error"]["code"], "overloaded");
    assert_eq!(error["error"]["type"], "overloaded_error");
    assert!(holding.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(app.chat(body).await.status(), 200, "service resumes once the place is free");
    assert_eq!(slow.calls(), 2, "the shed request never reached the upstream");
}

#[tokio::test]
async fn a_client_that_hangs_up_while_queued_gives_its_place_back() {
    let slow = UpstreamDouble::start(Behaviour::slow_stream(Duration::from_millis(60))).await;
    let extra = "[server]\nmax_concurrent_requests = 1\nqueue_limit = 1\nqueue_wait_ms = 10000\n";
    let app = TestApp::start(&config_for(&[("local", "local", &slow.base_url())], &[], extra)).await;
    let body =
        serde_json::json!({"model": "local-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let holding = app.chat(body.clone()).await;
    assert_eq!(holding.status(), 200);
    // Queued behind the stream, then its client gives up.
    let gave_up = tokio::time::timeout(Duration::from_millis(150), app.chat(body.clone())).await;
    assert!(gave_up.is_err(), "it was queued, not answered");
    // Its place is free again: this one queues too, and is served once the stream ends.
    let started = Instant::now();
    let (queued, rest) = tokio::join!(app.chat(body.clone()), holding.text());
    assert!(rest.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(queued.status(), 200, "refused: the gone client still held its place in the queue");
    assert!(started.elapsed() > Duration::from_millis(100), "it waited for the stream");
    assert!(queued.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(slow.calls(), 2, "the gone client's request never reached the upstream");
}
