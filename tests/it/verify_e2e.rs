//! Verification with the real local model (llama-server + SmolLM2) as the first step and
//! as the judge, escalating to cloud doubles, through the official OpenAI Python SDK.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::sdk::run_python;
use crate::support::llama::LlamaServer;
use crate::support::*;

fn completion(content: &str) -> Bytes {
    Bytes::from(
        json!({"id": "chatcmpl-c", "object": "chat.completion", "created": 1, "model": "gpt",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        .to_string(),
    )
}

fn stream_of(deltas: &[serde_json::Value], finish: &str) -> Bytes {
    let chunk = |delta: &serde_json::Value, finish: serde_json::Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null})
    };
    let mut body: String = deltas.iter().map(|d| format!("data: {}\n\n", chunk(d, serde_json::Value::Null))).collect();
    body.push_str(&format!("data: {}\n\n", chunk(&json!({}), json!(finish))));
    body.push_str(&format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    ));
    body.push_str("data: [DONE]\n\n");
    Bytes::from(body)
}

fn sse(body: Bytes) -> Behaviour {
    Behaviour::Sse { body, gap: Duration::ZERO, cut_after: None }
}

#[tokio::test]
async fn verification_with_the_real_model_through_the_python_sdk() {
    let llama = LlamaServer::start().await;
    let cloud_json = UpstreamDouble::start(Behaviour::Json(completion("ZX-1234"))).await;
    let cloud_sse = UpstreamDouble::start(sse(stream_of(
        &[json!({"role": "assistant", "content": ""}), json!({"content": "ZX-5678"})],
        "stop",
    )))
    .await;
    let tool_stream = stream_of(
        &[
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}),
        ],
        "tool_calls",
    );
    let local_tools = UpstreamDouble::start(sse(tool_stream)).await;
    let toml = format!(
        r#"
        [upstreams.local]
        tier = "local"
        base_url = "{llama}"
        [upstreams.tools]
        tier = "local"
        base_url = "{tools}"
        [upstreams.cloudjson]
        tier = "cloud"
        base_url = "{json}"
        [upstreams.cloudsse]
        tier = "cloud"
        base_url = "{sse}"
        [models]
        smollm2 = {{ upstream = "local" }}
        toolmodel = {{ upstream = "tools" }}
        gptjson = {{ upstream = "cloudjson" }}
        gptsse = {{ upstream = "cloudsse" }}
        [tasks.code-json]
        chain = ["smollm2", "gptjson"]
        verify = {{ checks = ["non_empty", "regex"], regex = "^ZX-\\d{{4}}$" }}
        [tasks.code-sse]
        chain = ["smollm2", "gptsse"]
        verify = {{ checks = ["non_empty", "regex"], regex = "^ZX-\\d{{4}}$" }}
        [tasks.judged]
        chain = ["smollm2", "gptjson"]
        verify = {{ checks = ["non_empty"], judge = "smollm2" }}
        [tasks.tools]
        chain = ["toolmodel", "gptsse"]
        verify = {{ checks = ["non_empty", "tool_call_valid"] }}
        [profiles.default]
        cloud_consent = true
        "#,
        llama = llama.base_url(),
        tools = local_tools.base_url(),
        json = cloud_json.base_url(),
        sse = cloud_sse.base_url(),
    );
    let app = TestApp::start(&toml).await;
    run_python("openai_verify_test.py", &app, 4).await;

    // The rejected real answers escalated with their feedback.
    let sent = cloud_json.received()[0].body["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(sent.starts_with("Give me a ticket code.\n\nPrior attempt feedback: the answer does not match"), "{sent}");
    assert_eq!(cloud_sse.calls(), 1, "only the regex task escalated to it; the accepted tool stream did not");
    assert_eq!(local_tools.calls(), 1);
}
