//! Through tierwise to the real local LLM (llama-server + SmolLM2): real generated text,
//! streamed and not.

use serde_json::{json, Value};

use crate::support::llama::{self, LlamaServer};
use crate::support::*;

#[tokio::test]
async fn a_real_model_answers_through_a_task() {
    let llama = LlamaServer::start().await;
    let app = TestApp::start(&llama::config(&llama)).await;
    let response = app
        .chat(
            json!({"model": "chat", "max_tokens": 24, "messages": [{"role": "user", "content": "Say hello to Ann."}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-tier"), "local");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    // llama-server started with --alias (as scripts/run does) names the model, not its file.
    assert_eq!(body["model"], "smollm2");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.split_whitespace().count() >= 2, "not generated text: {text:?}");
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_real_model_streams_through_a_task_with_usage() {
    let llama = LlamaServer::start().await;
    let app = TestApp::start(&llama::config(&llama)).await;
    let response = app
        .chat(json!({"model": "chat", "max_tokens": 24, "stream": true, "stream_options": {"include_usage": true},
                     "messages": [{"role": "user", "content": "Name three colours."}]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let body = response.text().await.unwrap();
    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let text: String =
        chunks.iter().filter_map(|c| c["choices"].get(0).and_then(|ch| ch["delta"]["content"].as_str())).collect();
    assert!(text.split_whitespace().count() >= 2, "not generated text: {text:?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]), "include_usage's final chunk");
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_dead_first_step_falls_through_to_the_real_model() {
    let llama = LlamaServer::start().await;
    let dead = dead_address().await;
    let toml = format!(
        "[upstreams.gone]\ntier = \"local\"\nbase_url = \"http://{dead}/v1\"\n[models.gone]\nupstream = \"gone\"\n{}",
        llama::config(&llama).replace("chain = [\"smollm2\"]", "chain = [\"gone\", \"smollm2\"]")
    );
    let app = TestApp::start(&toml).await;
    let response =
        app.chat(json!({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(response.status(), 200);
    let attempts = header(&response, "x-tierwise-attempts").to_string();
    assert!(
        attempts.starts_with("local/gone:error(not_ready):") && attempts.contains("local/smollm2:accept:"),
        "{attempts}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
}
