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
async fn the_privacy_backstop_holds_through_the_python_sdk() {
    let local = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let toml = format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\n[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\n\
         [models.smollm2]\nupstream = \"local\"\n[models.gpt]\nupstream = \"cloud\"\n\
         [tasks.chat]\nchain = [\"smollm2\", \"gpt\"]\n[profiles.default]\ncloud_consent = true\n",
        local.base_url(),
        cloud.base_url()
    );
    let app = TestApp::start(&toml).await;
    run_python("openai_privacy_test.py", &app, 3).await;
    // Four sensitive requests failed on the local step; only the normal one went out.
    assert_eq!(local.calls(), 5);
    assert_eq!(cloud.calls(), 1);
    assert!(cloud.received().iter().all(|r| !r.body.to_string().contains("example.it")));
}
