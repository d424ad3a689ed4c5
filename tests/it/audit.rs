//! The audit log: a line for every request, under concurrent load and across shutdown.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tierwise-it-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn every_request_under_concurrent_load_has_one_line() {
    let dir = temp_dir("load");
    let path = dir.join("audit.jsonl");
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let extra = format!("[audit]\npath = \"{}\"\n", path.display());
    let mut app =
        TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[("chat", &["local-model"])], &extra)).await;
    let url = app.url("/v1/chat/completions");
    // 30 concurrent clients, 10 requests each.
    let mut handles = Vec::new();
    for worker in 0..30 {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let http = client();
            let mut ids = Vec::new();
            for n in 0..10 {
                let text = format!("secret question {}", worker * 10 + n);
                let body = json!({"model": "chat", "messages": [{"role": "user", "content": text}]});
                let response = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 200);
                ids.push(header(&response, "x-request-id").to_string());
            }
            ids
        }));
    }
    let mut ids = BTreeSet::new();
    for handle in handles {
        ids.extend(handle.await.unwrap());
    }
    app.begin_shutdown();
    app.server.take().unwrap().await.unwrap().unwrap();

    let records = lines(&path);
    let logged: BTreeSet<String> = records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(records.len(), 300);
    assert_eq!(logged, ids);
    let record = &records[0];
    assert_eq!(record["task"], "chat");
    assert_eq!(record["outcome"], "answered");
    assert_eq!(record["tier"], "local");
    assert_eq!(record["plan"][0]["action"], "run");
    assert_eq!(record["attempts"][0]["verdict"], "accept");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("secret question"), "no message content unless include_content");
}

#[tokio::test]
async fn include_content_logs_messages_and_answers() {
    let dir = temp_dir("content");
    let path = dir.join("audit.jsonl");
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let extra = format!("[audit]\npath = \"{}\"\ninclude_content = true\n", path.display());
    let mut app = TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[], &extra)).await;
    app.chat(json!({"model": "local-model", "messages": [{"role": "user", "content": "What is in the image?"}]})).await;
    app.chat(json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]})).await;
    app.begin_shutdown();
    app.server.take().unwrap().await.unwrap().unwrap();
    let records = lines(&path);
    assert_eq!(records[0]["messages"][0]["content"], "What is in the image?");
    assert!(records[0]["answer"].as_str().unwrap().starts_with("The image shows a wooden boardwalk"));
    assert_eq!(records[1]["status"], 404);
    assert_eq!(records[1]["error"], "model_not_found");
}

#[tokio::test]
async fn sigterm_during_load_loses_no_completed_request() {
    let dir = temp_dir("sigterm");
    let path = dir.join("audit.jsonl");
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let port = dead_address().await.port();
    let config = dir.join("tierwise.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{}\n[audit]\npath = \"{}\"\n",
            config_for(&[("local", "local", &up.base_url())], &[("chat", &["local-model"])], ""),
            path.display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tierwise"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client().get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "tierwise did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Steady load from 16 clients; SIGTERM in the middle of it, once answers flow.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let url = url.clone();
        let answered = answered.clone();
        workers.push(tokio::spawn(async move {
            let mut completed = Vec::new();
            for _ in 0..200 {
                match client().post(&url).json(&chat_body("chat")).send().await {
                    Ok(response) if response.status() == 200 => {
                        let id = header(&response, "x-request-id").to_string();
                        if response.bytes().await.is_ok() {
                            completed.push(id);
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    _ => break,
                }
            }
            completed
        }));
    }
    let flowing = tokio::time::Instant::now() + Duration::from_secs(30);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 64 {
        assert!(tokio::time::Instant::now() < flowing, "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut completed = BTreeSet::new();
    for worker in workers {
        completed.extend(worker.await.unwrap());
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success());
    assert!(
        !completed.is_empty() && completed.len() < 16 * 200,
        "SIGTERM landed mid-load ({} completed)",
        completed.len()
    );
    let logged: BTreeSet<String> = lines(&path).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    let missing: Vec<&String> = completed.difference(&logged).collect();
    assert!(missing.is_empty(), "{} completed requests are not in the audit log", missing.len());
}
