//! The response cache (issue "A response cache"), in memory: a repeated request is
//! answered from the cache as JSON or replayed SSE without calling a model; the key
//! ignores field order, whitespace and delivery fields; only accepted answers are kept;
//! `x-tierwise-cache` modes; namespaces by profile and key; a reload changes the key;
//! the store stays within `max_bytes`.

mod shared;

use serde_json::{json, Value};

use crate::support::upstream::split_events;
use crate::support::*;

const KEYS: &[(&str, &str)] = &[("KEY_A", "key-a"), ("KEY_B", "key-b"), ("KEY_C", "key-c")];

/// Task `cached` (cloud at $10 per million tokens, cached) and `plain` (not cached).
pub(crate) fn cached_config(cloud: &UpstreamDouble, cache: &str, extra: &str) -> String {
    config_for(
        &[("cloud", "cloud", &cloud.base_url())],
        &[("cached", &["cloud-model"]), ("plain", &["cloud-model"])],
        extra,
    )
    .replace(
        "name = \"cloud-upstream-model\"\n",
        "name = \"cloud-upstream-model\"\nprice = { input_usd_per_mtok = 10.0, output_usd_per_mtok = 10.0 }\n",
    )
    .replace("[tasks.\"cached\"]\n", &format!("[tasks.\"cached\"]\ncache = {{ {cache} }}\n"))
}

pub(crate) fn ask_body(text: &str) -> Value {
    json!({"model": "cached", "temperature": 0, "messages": [{"role": "user", "content": text}]})
}

pub(crate) async fn post(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client()
        .post(app.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

pub(crate) async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// The content and the usage chunk of an SSE body; panics unless it ends with `[DONE]`.
pub(crate) fn read_stream(body: &[u8]) -> (String, Option<Value>) {
    let events = split_events(body);
    let data: Vec<&str> = events
        .iter()
        .filter_map(|e| std::str::from_utf8(e).ok()?.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{}", String::from_utf8_lossy(body));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"), "{chunks:?}");
    let content = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    let usage = chunks.iter().find_map(|c| c.get("usage").filter(|u| !u.is_null()).cloned());
    (content, usage)
}

#[tokio::test]
async fn a_repeated_request_is_answered_from_the_cache_as_json_and_as_a_replayed_stream() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&cached_config(&cloud, "ttl_s = 60", "")).await;
    let first =
        post(&app, r#"{"model":"cached","temperature":0,"messages":[{"role":"user","content":"Describe it."}]}"#, &[])
            .await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-tierwise-cache"), "miss");
    assert_eq!(header(&first, "x-tierwise-attempts").split(", ").next(), Some("cache:miss"));
    let _ = first.bytes().await;

    // Another order, other whitespace, 0.0 for 0, and a user label: the same key.
    let again = "{ \"messages\" : [ {\"content\": \"Describe it.\", \"role\": \"user\"} ],\n  \"temperature\": 0.0, \"user\": \"u-7\", \"model\": \"cached\" }";
    let hit = post(&app, again, &[]).await;
    assert_eq!(hit.status(), 200);
    assert_eq!(header(&hit, "x-tierwise-cache"), "hit");
    assert_eq!(header(&hit, "x-tierwise-attempts"), "cache:hit");
    assert_eq!(header(&hit, "x-tierwise-tier"), "cloud", "the tier that made the answer");
    assert_eq!(header(&hit, "x-tierwise-model"), "cloud-model");
    let body: Value = hit.json().await.unwrap();
    let recorded: Value = serde_json::from_slice(&fixture("openai/chat_completion.json")).unwrap();
    assert_eq!(body["choices"], recorded["choices"]);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 1117, "every prompt token from the cache");
    assert_eq!(body["usage"]["prompt_tokens_details"]["audio_tokens"], 0, "the rest of usage as it was");
    assert_eq!(body["tierwise"]["cache"]["result"], "hit", "{body}");
    assert_eq!(body["tierwise"]["cache"]["store"], "memory");
    assert_eq!(body["tierwise"]["attempts"], json!([]), "no model was called");
    assert_eq!(cloud.calls(), 1);

    // The same request streamed: replayed as valid SSE, usage chunk marked, no call.
    let streamed = json!({"model": "cached", "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Describe it."}]});
    let replay = post(&app, &streamed.to_string(), &[]).await;
    assert_eq!(header(&replay, "x-tierwise-cache"), "hit");
    assert_eq!(header(&replay, "content-type"), "text/event-stream");
    let (content, usage) = read_stream(&replay.bytes().await.unwrap());
    assert_eq!(content, recorded["choices"][0]["message"]["content"].as_str().unwrap());
    let usage = usage.expect("the usage chunk the client asked for");
    assert_eq!(usage["prompt_tokens"], 1117);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 1117);
    assert_eq!(cloud.calls(), 1);

    // Hits are counted, cost nothing, and avoided what the answer cost: 1,163 tokens at $10/M.
    assert_eq!(metric(&app, "tierwise_cache_lookups_total{result=\"hit\",task=\"cached\"}").await, 2.0);
    assert_eq!(metric(&app, "tierwise_cache_lookups_total{result=\"miss\",task=\"cached\"}").await, 1.0);
    let avoided = metric(&app, "tierwise_cache_cost_avoided_usd_total{task=\"cached\"}").await;
    assert!((avoided - 2.0 * 0.01163).abs() < 1e-9, "avoided {avoided}");
    assert_eq!(metric(&app, "tierwise_requests_total{outcome=\"answered\",task=\"cached\",tier=\"cache\"}").await, 2.0);
    let spent = metric(&app, "tierwise_cost_usd_total{model=\"cloud-model\",tier=\"cloud\"}").await;
    assert!((spent - 0.01163).abs() < 1e-9, "only the first answer was paid for: {spent}");
    assert!(metric(&app, "tierwise_cache_bytes{task=\"cached\"}").await > 700.0);
}

#[tokio::test]
async fn a_passed_through_stream_is_kept_once_it_ended_whole_and_a_broken_one_is_not() {
    let cloud = UpstreamDouble::start(Behaviour::sse("openai/chat_stream_usage.sse")).await;
    let app = TestApp::start(&cached_config(&cloud, "ttl_s = 60", "")).await;
    let streamed =
        json!({"model": "cached", "seed": 7, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let first = post(&app, &streamed.to_string(), &[]).await;
    assert_eq!(header(&first, "x-tierwise-cache"), "miss");
    let (said, _) = read_stream(&first.bytes().await.unwrap());

    let as_json = json!({"model": "cached", "seed": 7, "messages": [{"role": "user", "content": "Hi"}]});
    let hit = post(&app, &as_json.to_string(), &[]).await;
    assert_eq!(header(&hit, "x-tierwise-cache"), "hit");
    let body: Value = hit.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], said.as_str());
    assert_eq!(body["usage"]["completion_tokens"], 9, "the stream's own usage");
    assert_eq!(cloud.calls(), 1);

    // A stream that breaks after three events reached the client broken: not kept.
    cloud.then(Behaviour::Sse {
        body: fixture("openai/chat_stream_usage.sse"),
        gap: std::time::Duration::ZERO,
        cut_after: Some(3),
    });
    let broken = json!({"model": "cached", "seed": 8, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let _ = post(&app, &broken.to_string(), &[]).await.bytes().await;
    let after = post(
        &app,
        &json!({"model": "cached", "seed": 8, "messages": [{"role": "user", "content": "Hi"}]}).to_string(),
        &[],
    )
    .await;
    assert_eq!(header(&after, "x-tierwise-cache"), "miss");
    assert_eq!(cloud.calls(), 3);
}

#[tokio::test]
async fn the_request_header_turns_the_cache_off_refreshes_it_or_asks_only_the_cache() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&cached_config(&cloud, "ttl_s = 60", "")).await;
    let body = ask_body("Modes.").to_string();

    let only = post(&app, &body, &[("x-tierwise-cache", "only")]).await;
    assert_eq!(only.status(), 504);
    assert_eq!(header(&only, "x-tierwise-cache"), "miss");
    let error: Value = only.json().await.unwrap();
    assert_eq!(error["error"]["code"], "cache_miss", "{error}");
    assert_eq!(cloud.calls(), 0, "only-if-cached never calls a model");

    let off = post(&app, &body, &[("x-tierwise-cache", "off")]).await;
    assert_eq!(header(&off, "x-tierwise-cache"), "bypass");
    assert!(header(&off, "x-tierwise-attempts").starts_with("cache:bypass(off), cloud/cloud-model:accept"));
    assert_eq!(post(&app, &body, &[]).await.headers()["x-tierwise-cache"], "miss", "off did not store");
    assert_eq!(post(&app, &body, &[("x-tierwise-cache", "only")]).await.headers()["x-tierwise-cache"], "hit");
    assert_eq!(cloud.calls(), 2);

    let refresh = post(&app, &body, &[("x-tierwise-cache", "refresh")]).await;
    assert_eq!(header(&refresh, "x-tierwise-cache"), "miss");
    assert_eq!(cloud.calls(), 3, "refresh asks the model again");
    assert_eq!(post(&app, &body, &[]).await.headers()["x-tierwise-cache"], "hit");

    let bad = post(&app, &body, &[("x-tierwise-cache", "sometimes")]).await;
    assert_eq!(bad.status(), 400);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["param"], "x-tierwise-cache", "{error}");
    let uncached_task = post(
        &app,
        &json!({"model": "plain", "temperature": 0, "messages": [{"role": "user", "content": "x"}]}).to_string(),
        &[("x-tierwise-cache", "only")],
    )
    .await;
    assert_eq!(uncached_task.status(), 504);
    let error: Value = uncached_task.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("task \"plain\" has no cache"), "{error}");
    assert_eq!(cloud.calls(), 3);
}

#[tokio::test]
async fn only_deterministic_requests_are_cached_unless_the_task_says_otherwise() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&cached_config(&cloud, "ttl_s = 60", "")).await;
    let sampled =
        json!({"model": "cached", "temperature": 0.7, "messages": [{"role": "user", "content": "Hi"}]}).to_string();
    for _ in 0..2 {
        let response = post(&app, &sampled, &[]).await;
        assert_eq!(header(&response, "x-tierwise-cache"), "bypass");
        assert!(header(&response, "x-tierwise-attempts").starts_with("cache:bypass(not_deterministic)"));
    }
    assert_eq!(cloud.calls(), 2);
    assert_eq!(metric(&app, "tierwise_cache_lookups_total{result=\"bypass\",task=\"cached\"}").await, 2.0);

    let any = TestApp::start(&cached_config(&cloud, "deterministic_only = false", "")).await;
    post(&any, &sampled, &[]).await;
    assert_eq!(header(&post(&any, &sampled, &[]).await, "x-tierwise-cache"), "hit");
    assert_eq!(cloud.calls(), 3);
}

#[tokio::test]
async fn one_namespace_never_reads_another_s_entries() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let keys = "[auth]\nrequired = true\n[profiles.other]\ncloud_consent = true\n\
        [[keys]]\nkey_env = \"KEY_A\"\nprofile = \"default\"\n[[keys]]\nkey_env = \"KEY_B\"\nprofile = \"default\"\n\
        [[keys]]\nkey_env = \"KEY_C\"\nprofile = \"other\"\n";
    let body = ask_body("Whose answer?").to_string();
    let as_key = |key: &'static str| {
        [(
            "authorization",
            if key == "a" {
                "Bearer key-a"
            } else if key == "b" {
                "Bearer key-b"
            } else {
                "Bearer key-c"
            },
        )]
    };

    let by_profile = TestApp::start_with_env(&cached_config(&cloud, "ttl_s = 60", keys), KEYS).await;
    assert_eq!(header(&post(&by_profile, &body, &as_key("a")).await, "x-tierwise-cache"), "miss");
    assert_eq!(header(&post(&by_profile, &body, &as_key("b")).await, "x-tierwise-cache"), "hit", "same profile");
    assert_eq!(header(&post(&by_profile, &body, &as_key("c")).await, "x-tierwise-cache"), "miss", "another profile");
    assert_eq!(cloud.calls(), 2);

    let by_key = TestApp::start_with_env(&cached_config(&cloud, "per_key = true", keys), KEYS).await;
    assert_eq!(header(&post(&by_key, &body, &as_key("a")).await, "x-tierwise-cache"), "miss");
    assert_eq!(header(&post(&by_key, &body, &as_key("b")).await, "x-tierwise-cache"), "miss", "another key");
    assert_eq!(header(&post(&by_key, &body, &as_key("a")).await, "x-tierwise-cache"), "hit", "the same key");
    assert_eq!(cloud.calls(), 4);
}

#[tokio::test]
async fn errors_and_rejected_answers_are_never_kept() {
    let local = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let cloud = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    // The local answer is too long for the check: rejected, and the cloud step answers.
    let toml = config_for(
        &[("local", "local", &local.base_url()), ("cloud", "cloud", &cloud.base_url())],
        &[("cached", &["local-model", "cloud-model"])],
        "[tasks.cached.verify]\nchecks = [\"max_chars\"]\nmax_chars = 5\n",
    )
    .replace("[tasks.\"cached\"]\n", "[tasks.\"cached\"]\ncache = { ttl_s = 60 }\n");
    let app = TestApp::start(&toml).await;
    let body = ask_body("Which is kept?").to_string();
    let failed = post(&app, &body, &[]).await;
    assert_eq!(failed.status(), 502, "the cloud step failed: {}", header(&failed, "x-tierwise-attempts"));
    assert_eq!(header(&failed, "x-tierwise-cache"), "miss");

    cloud.then(Behaviour::json("openai/chat_completion.json"));
    let answered = post(&app, &body, &[]).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(header(&answered, "x-tierwise-cache"), "miss", "the error was not kept");
    assert_eq!(header(&answered, "x-tierwise-tier"), "cloud");
    let calls = (local.calls(), cloud.calls());
    let hit = post(&app, &body, &[]).await;
    assert_eq!(header(&hit, "x-tierwise-cache"), "hit");
    assert_eq!(header(&hit, "x-tierwise-tier"), "cloud", "the accepted answer, not the rejected local one");
    assert_eq!((local.calls(), cloud.calls()), calls);
    assert_eq!(local.calls(), 2, "the rejected local answer was asked for twice");
}

#[tokio::test]
async fn a_reload_that_changes_the_task_changes_the_key() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let dir = std::env::temp_dir().join(format!("tierwise-it-cache-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tierwise.toml");
    let digest = tierwise::config::hex(&tierwise::config::sha256(b"key-a"));
    let admin = format!(
        "[server]\nconfig_poll_ms = 0\n[[keys]]\nkey_sha256 = \"{digest}\"\nprofile = \"default\"\nadmin = true\n"
    );
    let toml = cached_config(&cloud, "ttl_s = 60", &admin);
    std::fs::write(&path, &toml).unwrap();
    let app = TestApp::start_file(&path, &[]).await;
    let body = ask_body("Before and after.").to_string();
    let key = [("authorization", "Bearer key-a")];
    let post = |body: String| {
        let app = &app;
        async move { post(app, &body, &key).await }
    };
    post(body.clone()).await;
    assert_eq!(header(&post(body.clone()).await, "x-tierwise-cache"), "hit");

    let reload = || async { client().post(app.url("/v1/tierwise/reload")).bearer_auth("key-a").send().await.unwrap() };
    // Only the cache settings change: the same answers stay valid.
    std::fs::write(&path, toml.replace("ttl_s = 60", "ttl_s = 120")).unwrap();
    assert_eq!(reload().await.status(), 200);
    assert_eq!(header(&post(body.clone()).await, "x-tierwise-cache"), "miss", "a new store for new bounds");
    assert_eq!(header(&post(body.clone()).await, "x-tierwise-cache"), "hit");
    // The task's chain changes: its answers may change, so its keys do.
    let changed = toml
        .replace("ttl_s = 60", "ttl_s = 120")
        .replace("[tasks.\"cached\"]\n", "[tasks.\"cached\"]\nmin_tier = \"cloud\"\n");
    std::fs::write(&path, changed).unwrap();
    assert_eq!(reload().await.status(), 200);
    assert_eq!(header(&post(body.clone()).await, "x-tierwise-cache"), "miss");
    assert_eq!(cloud.calls(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_flood_of_unique_prompts_stays_within_max_bytes() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app = TestApp::start(&cached_config(&cloud, "max_bytes = 16384", "")).await;
    for i in 0..200 {
        let response = post(&app, &ask_body(&format!("Prompt number {i}")).to_string(), &[]).await;
        assert_eq!(response.status(), 200);
        let bytes = metric(&app, "tierwise_cache_bytes{task=\"cached\"}").await;
        assert!(bytes <= 16_384.0, "{bytes} bytes after {i} prompts");
    }
    assert!(metric(&app, "tierwise_cache_evictions_total{cause=\"size\",task=\"cached\"}").await >= 150.0);
    // Full, not emptied: TinyLFU admits and evicts by frequency, within the bound.
    assert!(metric(&app, "tierwise_cache_bytes{task=\"cached\"}").await > 8_192.0);
}

#[tokio::test]
async fn the_audit_line_records_the_hit() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let dir = std::env::temp_dir().join(format!("tierwise-it-cache-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let app =
        TestApp::start(&cached_config(&cloud, "ttl_s = 60", &format!("[audit]\npath = \"{}\"\n", path.display())))
            .await;
    let body = ask_body("Audited.").to_string();
    post(&app, &body, &[]).await;
    post(&app, &body, &[]).await;
    app.state.audit.close().await;
    let lines: Vec<Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["cache"]["result"], "miss");
    assert_eq!(lines[1]["cache"]["result"], "hit", "{}", lines[1]);
    assert_eq!(lines[1]["cache"]["tier"], "cloud");
    assert_eq!(lines[1]["outcome"], "answered");
    assert_eq!(lines[1]["attempts"], json!([]));
    assert_eq!(lines[1]["tokens"], json!({"prompt": 0, "completion": 0}), "a hit uses no tokens");
    let _ = std::fs::remove_dir_all(&dir);
}
