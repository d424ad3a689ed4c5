//! The official OpenAI SDKs pointed at tierwise, with the real local model behind it.

use std::process::Stdio;

use crate::support::llama::{self, LlamaServer};
use crate::support::*;

#[tokio::test]
async fn the_official_python_sdk_works_through_tierwise() {
    let llama = LlamaServer::start().await;
    let app = TestApp::start(&llama::config(&llama)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_python_test.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = tokio::process::Command::new(&python)
        .arg(script)
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
    assert!(report.contains("Ran 7 tests"), "{report}");
}
