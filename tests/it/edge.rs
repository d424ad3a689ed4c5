//! The HTTP edge: models list, health, request ids, graceful shutdown.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use tierwise::app::AppState;

use crate::support::*;

#[tokio::test]
async fn models_lists_tasks_then_direct_models() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = config_for(
        &[("local", "local", &up.base_url())],
        &[("summarize", &["local-model"]), ("chat", &["local-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let body: Value = client().get(app.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["chat", "summarize", "local-model"]);
    for model in body["data"].as_array().unwrap() {
        assert_eq!(model["object"], "model");
        assert_eq!(model["owned_by"], "tierwise");
        assert!(model["created"].as_u64().unwrap() > 1_700_000_000);
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::start(&config_for(&[("local", "local", "http://127.0.0.1:9/v1")], &[], "")).await;
    let health = client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = client().get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["upstreams"], 1);
}

#[tokio::test]
async fn request_ids_are_made_or_propagated() {
    let app = TestApp::start(&config_for(&[("local", "local", "http://127.0.0.1:9/v1")], &[], "")).await;
    let a = client().get(app.url("/healthz")).send().await.unwrap();
    let b = client().get(app.url("/healthz")).send().await.unwrap();
    let (id_a, id_b) = (header(&a, "x-request-id").to_string(), header(&b, "x-request-id").to_string());
    assert!(id_a.starts_with("tw-") && id_b.starts_with("tw-"));
    assert_ne!(id_a, id_b);
    let mine = client().get(app.url("/nope")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(header(&mine, "x-request-id"), "trace-42", "also on errors");
}

#[tokio::test]
async fn metrics_count_requests_by_task_tier_and_outcome() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app =
        TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[("chat", &["local-model"])], "")).await;
    for _ in 0..3 {
        assert_eq!(app.chat(chat_body("chat")).await.status(), 200);
    }
    let text = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"tierwise_requests_total{outcome="answered",task="chat",tier="local"} 3"#), "{text}");
    assert!(text.contains("tierwise_in_flight_requests 0"), "{text}");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish_and_refuses_new_connections() {
    let up = UpstreamDouble::start(Behaviour::slow_stream(Duration::from_millis(60))).await;
    let mut app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], "")).await;
    let body = json!({"model": "local-model", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let response = app.chat(body).await;
    let mut stream = response.bytes_stream();
    let mut received = stream.next().await.unwrap().unwrap().to_vec();

    app.begin_shutdown();
    // Waits for the event (the listener closing), not for a guessed time.
    let mut refused = false;
    for _ in 0..100 {
        if client().get(app.url("/healthz")).timeout(Duration::from_secs(1)).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections were still accepted two seconds after shutdown began");

    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received, fixture("openai/chat_stream_usage.sse"), "the in-flight stream was cut");
    let server = app.server.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let up = UpstreamDouble::start(Behaviour::Stall).await;
    let toml = config_for(&[("local", "local", &up.base_url())], &[], "[server]\nshutdown_grace_ms = 300\n")
        .replace("first_byte_timeout_ms = 2000", "first_byte_timeout_ms = 60000");
    let state = AppState::new(tierwise::config::load_from_str(&toml, &|_| None).unwrap()).unwrap();
    let stop = state.shutdown.clone();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    // As in the binary: tierwise on its own runtime, dropped (with every connection)
    // as soon as `serve` returns.
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tierwise::server::serve(listener, state).await.unwrap();
        });
    });
    let addr = addr_rx.await.unwrap();
    let url = format!("http://{addr}/v1/chat/completions");
    let pending = tokio::spawn(async move { client().post(url).json(&chat_body("local-model")).send().await });
    // In flight once the upstream has it (on a loaded machine that can take a while).
    let arrived = async {
        while up.calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), arrived).await.expect("the request reached the upstream");

    let stopping = Instant::now();
    stop.cancel();
    let joined = tokio::task::spawn_blocking(move || server.join());
    tokio::time::timeout(Duration::from_secs(5), joined)
        .await
        .expect("shutdown waited past its grace period")
        .unwrap()
        .unwrap();
    let took = stopping.elapsed();
    assert!(took >= Duration::from_millis(250), "in-flight request was not given its grace period ({took:?})");
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert!(outcome.is_err(), "the stalled request ends when the grace period is over");
}
