//! Routing with warmth, end to end: warm starts in the trail, `prefer_warm`, and the
//! cold-start budget — never past the privacy ceiling.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::llama_swap::{LlamaSwapDouble, SwapOptions};
use crate::support::*;

/// Two models on a llama-swap double (tier local) and a server double after them. The
/// probe period is long enough that a snapshot cannot go stale (three periods) between
/// a test seeing it and its request, on a loaded machine.
async fn setup(extra_task: &str) -> (LlamaSwapDouble, UpstreamDouble, TestApp) {
    let swap = LlamaSwapDouble::start(&["qwen", "llama"], SwapOptions::default()).await;
    let server = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = format!(
        r#"
        [upstreams.swap]
        tier = "local"
        base_url = "{}"
        warmth = "llama-swap"
        refresh_ms = 1000
        [upstreams.lan]
        tier = "server"
        base_url = "{}"
        [models]
        qwen = {{ upstream = "swap" }}
        llama = {{ upstream = "swap" }}
        big = {{ upstream = "lan" }}
        [tasks.chat]
        chain = ["qwen", "llama", "big"]
        {extra_task}
        "#,
        swap.base_url(),
        server.base_url()
    );
    let app = TestApp::start(&toml).await;
    (swap, server, app)
}

/// Waits (bounded) until the prober's snapshot says `model` is `warm`.
async fn until_warmth(app: &TestApp, model: &str, warm: Option<bool>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.state.generation().warmth.is_warm("swap", model) != warm {
        assert!(tokio::time::Instant::now() < deadline, "the prober never saw {model} as {warm:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ask() -> Value {
    json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn attempts_say_whether_their_model_was_warm() {
    let (swap, _server, app) = setup("").await;
    swap.set_state("llama", Some("ready"));
    until_warmth(&app, "llama", Some(true)).await;
    until_warmth(&app, "qwen", Some(false)).await;
    let response = app.chat(ask()).await;
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    assert!(attempts.starts_with("local/qwen:accept:") && attempts.ends_with(":cold"), "{attempts}");
    // Serving it marked it warm at once, before the next probe.
    assert_eq!(app.state.generation().warmth.is_warm("swap", "qwen"), Some(true));
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"tierwise_warm_starts_total{model="qwen",warm="false"} 1"#), "{metrics}");
    assert_eq!(swap.calls_under("/upstream"), 0, "never probed through /upstream");
}

#[tokio::test]
async fn prefer_warm_tries_the_loaded_model_of_the_same_tier_first() {
    let (swap, server, app) = setup("prefer_warm = true").await;
    swap.set_state("llama", Some("ready"));
    until_warmth(&app, "llama", Some(true)).await;
    until_warmth(&app, "qwen", Some(false)).await;
    let response = app.chat(ask()).await;
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    assert!(attempts.starts_with("local/llama:accept:") && attempts.ends_with(":warm"), "{attempts}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tierwise"]["attempts"][0]["step"], 1, "the trail shows the reordered step");
    assert_eq!(body["tierwise"]["attempts"][0]["warm_start"], true);
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn a_cold_model_that_cannot_load_in_time_is_skipped_but_never_past_the_privacy_ceiling() {
    let (_swap, server, app) = setup("").await;
    until_warmth(&app, "qwen", Some(false)).await;
    until_warmth(&app, "llama", Some(false)).await;
    // What tierwise learned from earlier attempts: loading takes about 6.1 s.
    for model in ["qwen", "llama"] {
        app.state.generation().warmth.record_attempt(model, Some(false), Duration::from_millis(6100));
    }
    let with_deadline = |body: Value| {
        client().post(app.url("/v1/chat/completions")).header("x-tierwise-deadline-ms", "2000").json(&body).send()
    };
    let response = with_deadline(ask()).await.unwrap();
    assert_eq!(header(&response, "x-tierwise-tier"), "server");
    assert!(
        header(&response, "x-tierwise-attempts").starts_with("local/qwen:skip(not_ready), local/llama:skip(not_ready)")
    );
    let body: Value = response.json().await.unwrap();
    let message = body["tierwise"]["attempts"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("cold, expected load 6.1 s exceeds the remaining 2.0 s")
            || message.starts_with("cold, expected load 6.1 s exceeds the remaining 1.9 s"),
        "{message}"
    );
    assert_eq!(server.calls(), 1);

    // Sensitive content may not go to the server: qwen may still give way to llama (also
    // local), but llama, the last step within the ceiling, runs cold rather than escalate.
    let response =
        with_deadline(json!({"model": "chat", "messages": [{"role": "user", "content": "mail ann@example.org"}]}))
            .await
            .unwrap();
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    assert!(
        attempts.starts_with("local/qwen:skip(not_ready), local/llama:accept:") && attempts.contains(":cold"),
        "{attempts}"
    );
    assert_eq!(server.calls(), 1, "the sensitive request never reached the server");

    // Without a deadline nothing is skipped for time.
    let response = app.chat(ask()).await;
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
}

#[tokio::test]
async fn a_bad_deadline_header_is_a_400() {
    let (_swap, _server, app) = setup("").await;
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("x-tierwise-deadline-ms", "soon")
        .json(&ask())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "x-tierwise-deadline-ms");
}
