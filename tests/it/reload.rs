//! Hot reload: SIGHUP or the admin endpoint swap the config atomically; requests in
//! flight finish on the config they started with; a bad config is refused and the old
//! one stays.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A config whose admin key is `admin-key`, given by digest so a reload (which reads
/// the real environment) finds it. The file is not watched: these tests reload explicitly.
fn config_with(base_url: &str, model_name: &str) -> String {
    watched_config(base_url, model_name, 0)
}

/// The same, with the file checked for changes every `poll_ms` (0: never).
fn watched_config(base_url: &str, model_name: &str, poll_ms: u64) -> String {
    let digest: String = tierwise::config::sha256(b"admin-key").iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "[server]\nconfig_poll_ms = {poll_ms}\n[upstreams.up]\ntier = \"local\"\nbase_url = \"{base_url}\"\n[models.m]\nupstream = \"up\"\nname = \"{model_name}\"\n\
         [tasks.chat]\nchain = [\"m\"]\n[[keys]]\nkey_sha256 = \"{digest}\"\nprofile = \"default\"\nadmin = true\n"
    )
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tierwise-reload-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tierwise.toml")
}

async fn reload(app: &TestApp, key: &str) -> reqwest::Response {
    client().post(app.url("/v1/tierwise/reload")).bearer_auth(key).send().await.unwrap()
}

#[tokio::test]
async fn a_reload_under_load_fails_no_request_and_new_requests_use_the_new_config() {
    let up = UpstreamDouble::start(Behaviour::slow_stream(Duration::from_millis(20))).await;
    let path = temp_file("load");
    std::fs::write(&path, config_with(&up.base_url(), "first")).unwrap();
    let app = TestApp::start_file(&path, &[]).await;
    let url = app.url("/v1/chat/completions");
    let mut load = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        load.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                let body = serde_json::json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
                let response = client().post(&url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                statuses.push((status, text.ends_with("data: [DONE]\n\n")));
            }
            statuses
        }));
    }
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        std::fs::write(&path, config_with(&up.base_url(), if i % 2 == 0 { "second" } else { "first" })).unwrap();
        assert_eq!(reload(&app, "admin-key").await.status(), 200);
    }
    for worker in load {
        for (status, complete) in worker.await.unwrap() {
            assert_eq!(status, 200);
            assert!(complete, "a stream in flight during a reload was cut");
        }
    }
    std::fs::write(&path, config_with(&up.base_url(), "third")).unwrap();
    assert_eq!(reload(&app, "admin-key").await.status(), 200);
    let body = serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]});
    app.chat(body).await;
    assert_eq!(up.received().last().unwrap().body["model"], "third");
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"tierwise_config_reloads_total{result="applied"} 7"#), "{metrics}");
}

#[tokio::test]
async fn a_bad_config_is_refused_with_every_problem_and_the_old_one_stays() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let path = temp_file("bad");
    std::fs::write(&path, config_with(&up.base_url(), "good")).unwrap();
    let app = TestApp::start_file(&path, &[]).await;
    std::fs::write(&path, "[upstreams.up]\ntier = \"moon\"\nbase_url = \"x\"\n[tasks.chat]\nchain = [\"nope\"]\n")
        .unwrap();
    let response = reload(&app, "admin-key").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    for problem in ["upstreams.up.tier", "upstreams.up.base_url", "tasks.chat.chain[0]"] {
        assert!(message.contains(problem), "{message}");
    }
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(response.status(), 200, "the old config still serves");
    assert_eq!(up.received()[0].body["model"], "good");
    let metrics = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"tierwise_config_reloads_total{result="rejected"} 1"#), "{metrics}");
}

#[tokio::test]
async fn only_an_admin_key_may_reload() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let path = temp_file("admin");
    let team: String = tierwise::config::sha256(b"team-key").iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        &path,
        format!(
            "{}[profiles.team]\n[[keys]]\nkey_sha256 = \"{team}\"\nprofile = \"team\"\n",
            config_with(&up.base_url(), "m")
        ),
    )
    .unwrap();
    let app = TestApp::start_file(&path, &[]).await;
    assert_eq!(reload(&app, "team-key").await.status(), 403);
    let anonymous = client().post(app.url("/v1/tierwise/reload")).send().await.unwrap();
    assert_eq!(anonymous.status(), 403);
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    let first = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let port = dead_address().await.port();
    let path = temp_file("sighup");
    let write = |model: &str| {
        std::fs::write(
            &path,
            config_with(&first.base_url(), model)
                .replace("[server]\n", &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")),
        )
        .unwrap()
    };
    write("before");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tierwise"))
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client().post(&url).json(&chat_body("chat")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "tierwise did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write("after");
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        client().post(&url).json(&chat_body("chat")).send().await.unwrap();
        if first.received().last().unwrap().body["model"] == "after" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "SIGHUP did not reload the config");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
}

/// Polls `check` every 20 ms for up to 5 s.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_a_bad_change_is_refused_once() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let path = temp_file("watched");
    std::fs::write(&path, watched_config(&up.base_url(), "first", 50)).unwrap();
    let app = TestApp::start_file(&path, &[]).await;
    let model_name = |app: &TestApp| app.state.generation().config.models["m"].name.clone();
    let reloads = |app: &TestApp, result: &str| {
        let text = String::from_utf8(app.state.metrics.encode()).unwrap();
        let line = format!("tierwise_config_reloads_total{{result=\"{result}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(line.as_str())).map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!(model_name(&app), "first");

    std::fs::write(&path, watched_config(&up.base_url(), "second", 50)).unwrap();
    assert!(eventually(|| model_name(&app) == "second").await, "the changed file was not reloaded");
    app.chat(chat_body("chat")).await;
    assert_eq!(up.received().last().unwrap().body["model"], "second");
    assert_eq!(reloads(&app, "applied"), 1);

    // A broken edit: refused, counted once however long it stays, and the config stays.
    std::fs::write(&path, "[upstreams.up]\ntier = \"moon\"\n").unwrap();
    assert!(eventually(|| reloads(&app, "rejected") == 1).await, "the bad change was not noticed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reloads(&app, "rejected"), 1, "an unchanged bad file is not retried");
    assert_eq!(model_name(&app), "second");
    assert_eq!(app.chat(chat_body("chat")).await.status(), 200, "the old config still serves");

    std::fs::write(&path, watched_config(&up.base_url(), "third", 50)).unwrap();
    assert!(eventually(|| model_name(&app) == "third").await, "the fixed file was not reloaded");
    assert_eq!(reloads(&app, "applied"), 2);
}
