//! The official OpenAI SDKs pointed at tierwise, with the real local model behind it.

use std::process::Stdio;

use crate::support::llama::{self, LlamaServer};
use crate::support::*;

/// Runs a Python unittest script against `app`; returns its report, asserting success.
pub async fn run_python(script: &str, app: &TestApp, tests: usize) -> String {
    let script = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .env("TIERWISE_BASE_URL", app.url("/v1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let report = String::from_utf8_lossy(&output.stderr);
    eprintln!("{report}");
    assert!(!report.contains("No module named 'openai'"), "the openai package is missing: pip install openai");
    assert!(output.status.success(), "the OpenAI Python SDK tests failed:\n{report}");
    assert!(report.contains(&format!("Ran {tests} tests")), "{report}");
    report.into_owned()
}

#[tokio::test]
async fn the_official_python_sdk_works_through_tierwise() {
    let llama = LlamaServer::start().await;
    let app = TestApp::start(&llama::config(&llama)).await;
    run_python("openai_python_test.py", &app, 7).await;
}

#[tokio::test]
async fn the_python_sdk_reads_cached_answers_as_json_and_streams() {
    let llama = LlamaServer::start().await;
    let toml = llama::config(&llama);
    assert!(toml.contains("[tasks.chat]\n"), "{toml}");
    let app = TestApp::start(&toml.replace("[tasks.chat]\n", "[tasks.chat]\ncache = { ttl_s = 60 }\n")).await;
    run_python("openai_cache_test.py", &app, 3).await;
}

#[tokio::test]
async fn the_privacy_backstop_holds_through_the_python_sdk() {
    let local = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\ncircuit_failures = 0\n[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\n\
         [models.smollm2]\nupstream = \"local\"\n[models.gpt]\nupstream = \"cloud\"\n\
         [tasks.chat]\nchain = [\"smollm2\", \"gpt\"]\n[profiles.default]\ncloud_consent = true\n",
        local.base_url(),
        cloud.base_url()
    );
    let app = TestApp::start(&toml).await;
    run_python("openai_privacy_test.py", &app, 4).await;
    // Six sensitive requests failed on the local step; only the normal one went out.
    assert_eq!(local.calls(), 7);
    assert_eq!(cloud.calls(), 1);
    assert_eq!(cloud.saw("example.it") + cloud.saw("iVBORw0KGgo") + cloud.saw("DE89"), 0);
}

#[tokio::test]
async fn the_official_node_sdk_works_through_tierwise() {
    use std::time::Duration;

    use serde_json::json;

    let good = UpstreamDouble::start(Behaviour::Json(bytes::Bytes::from(
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "A good answer."}, "finish_reason": "stop"}]})
        .to_string(),
    )))
    .await;
    let stream = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let empty = "data: {\"id\":\"e\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let empty =
        UpstreamDouble::start(Behaviour::Sse { body: empty.into(), gap: Duration::ZERO, cut_after: None }).await;
    let tools = concat!(
        "data: {\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"t\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n",
        "data: [DONE]\n\n"
    );
    let tools =
        UpstreamDouble::start(Behaviour::Sse { body: tools.into(), gap: Duration::ZERO, cut_after: None }).await;
    let toml = config_for(
        &[
            ("good", "local", &good.base_url()),
            ("stream", "cloud", &stream.base_url()),
            ("empty", "local", &empty.base_url()),
            ("tools", "local", &tools.base_url()),
        ],
        &[
            ("chat", &["good-model"]),
            ("passthrough", &["stream-model"]),
            ("verified", &["empty-model", "stream-model"]),
            ("tools", &["tools-model", "stream-model"]),
        ],
        "[tasks.verified.verify]\nchecks = [\"non_empty\"]\n[tasks.tools.verify]\nchecks = [\"non_empty\", \"tool_call_valid\"]\n",
    );
    let app = TestApp::start(&toml).await;
    let dir = format!("{}/tests/sdk", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/openai")).exists(),
        "the openai npm package is missing: (cd tests/sdk && npm ci), as scripts/test does"
    );
    let output = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "openai_node_test.mjs"])
        .current_dir(&dir)
        .env("TIERWISE_BASE_URL", app.url("/v1"))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{report}");
    assert!(output.status.success(), "the OpenAI Node SDK tests failed:\n{report}");
    assert!(report.contains("pass 5") && report.contains("fail 0"), "{report}");
    assert_eq!((empty.calls(), tools.calls()), (1, 1));
    assert_eq!(stream.calls(), 2, "passthrough + the escalation from the empty stream; not the tool task");
}
