//! The `tierwise` binary itself: check-config, serve, SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_tierwise");

fn example_config() -> String {
    format!("{}/config/tierwise.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_summarises_a_valid_file() {
    let output =
        Command::new(BIN).args(["check-config", &example_config()]).env_remove("OPENAI_API_KEY").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("config OK"), "{text}");
    assert!(text.contains("chat: smollm2 -> gpt"), "{text}");
    assert!(text.contains("key from $OPENAI_API_KEY (NOT SET"), "{text}");
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = std::env::temp_dir().join(format!("tierwise-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[upstreams.a]\ntier = \"moon\"\nbase_url = \"http://x/v1\"\n[tasks.t]\nchain = [\"nope\"]\n",
    )
    .unwrap();
    let output = Command::new(BIN).arg("check-config").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stderr).unwrap();
    assert!(text.contains("has 2 problems"), "{text}");
    assert!(text.contains("upstreams.a.tier: unknown tier \"moon\""), "{text}");
    assert!(text.contains("tasks.t.chain[0]: unknown model \"nope\""), "{text}");
    assert!(text.contains(&file.display().to_string()), "names the file: {text}");
}

#[test]
fn serve_refuses_a_bad_config_naming_its_path() {
    let output = Command::new(BIN).args(["--config", "/nonexistent/tierwise.toml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr).unwrap().contains("/nonexistent/tierwise.toml"));
}

#[tokio::test]
async fn serve_answers_and_exits_cleanly_on_sigterm() {
    let port = dead_address().await.port();
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .env("TIERWISE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("TIERWISE_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let models: serde_json::Value = loop {
        if let Ok(response) = client().get(&url).send().await {
            break response.json().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "tierwise did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(models["data"][0]["id"], "chat", "the built-in default config");

    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
