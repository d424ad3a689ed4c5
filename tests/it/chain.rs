//! Walking a task's chain: fallthrough on failures, passthrough of fields and refusals,
//! header rules.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn forwards_unknown_fields_and_rewrites_the_model() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app =
        TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[("chat", &["local-model"])], "")).await;
    let body = json!({
        "model": "chat",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "n": 2, "seed": 42, "logprobs": true, "top_logprobs": 3,
        "response_format": {"type": "json_object"}, "x_vendor_flag": {"nested": [1, 2, 3]}
    });
    let response = app.chat(body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "application/json");
    let bytes = response.bytes().await.unwrap();
    // The upstream body byte for byte, with the trail as one more member at the end.
    let original = fixture("openai/chat_completion.json");
    let cut = original.iter().rposition(|&b| b == b'}').unwrap();
    assert_eq!(&bytes[..cut], &original[..cut], "the upstream body is passed on byte for byte");
    let parsed: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed["tierwise"]["tier"], "local");
    assert_eq!(parsed["tierwise"]["attempts"][0]["verdict"], "accept");

    let sent = &up.received()[0].body;
    let mut expected = body;
    expected["model"] = json!("local-upstream-model");
    assert_eq!(sent, &expected);
}

#[tokio::test]
async fn never_forwards_the_clients_key_and_sends_the_upstreams_own() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = format!(
        "[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\napi_key_env = \"TEST_CLOUD_KEY\"\nheaders = {{ \"x-extra\" = \"yes\" }}\n\
         [models.big]\nupstream = \"cloud\"\nname = \"gpt-test\"\n[profiles.default]\ncloud_consent = true\n",
        up.base_url()
    );
    let app = TestApp::start_with_env(&toml, &[("TEST_CLOUD_KEY", "sk-upstream-secret")]).await;
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("authorization", "Bearer client-key-must-not-travel")
        .header("x-api-key", "client-key-2")
        .header("cookie", "session=abc")
        .json(&chat_body("big"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = &up.received()[0].headers;
    assert_eq!(headers.get("authorization").unwrap(), "Bearer sk-upstream-secret");
    assert_eq!(headers.get("x-extra").unwrap(), "yes");
    assert!(headers.get("x-api-key").is_none());
    assert!(headers.get("cookie").is_none());
}

#[tokio::test]
async fn falls_through_5xx_unreachable_and_garbage_to_the_first_success() {
    let failing = UpstreamDouble::start(Behaviour::status(500, "openai/error_500_server.json")).await;
    let garbage =
        UpstreamDouble::start(Behaviour::Raw { content_type: "text/html", body: "<html>oops</html>".into() }).await;
    let good = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let dead = format!("http://{}/v1", dead_address().await);
    let toml = config_for(
        &[
            ("a", "local", &failing.base_url()),
            ("b", "local", &dead),
            ("c", "server", &garbage.base_url()),
            ("d", "cloud", &good.base_url()),
        ],
        &[("chat", &["a-model", "b-model", "c-model", "d-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-task"), "chat");
    assert_eq!(header(&response, "x-tierwise-tier"), "cloud");
    assert_eq!(header(&response, "x-tierwise-model"), "d-model");
    let attempts: Vec<&str> = header(&response, "x-tierwise-attempts").split(", ").collect();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert!(attempts[0].starts_with("local/a-model:error(runtime_error):"));
    assert!(attempts[1].starts_with("local/b-model:error(not_ready):"));
    assert!(attempts[2].starts_with("server/c-model:error(runtime_error):"));
    assert!(attempts[3].starts_with("cloud/d-model:accept:"));
    assert_eq!((failing.calls(), garbage.calls(), good.calls()), (1, 1, 1));
}

#[tokio::test]
async fn a_stalled_upstream_times_out_and_the_next_step_answers() {
    let stalled = UpstreamDouble::start(Behaviour::Stall).await;
    let good = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = config_for(
        &[("slow", "local", &stalled.base_url()), ("ok", "cloud", &good.base_url())],
        &[("chat", &["slow-model", "ok-model"])],
        "",
    )
    .replace("first_byte_timeout_ms = 2000", "first_byte_timeout_ms = 300");
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-model"), "ok-model");
    assert_eq!((stalled.calls(), good.calls()), (1, 1));
}

#[tokio::test]
async fn an_upstream_4xx_goes_back_to_the_client_and_stops_the_chain() {
    let refusing = UpstreamDouble::start(Behaviour::status(400, "openai/error_400_context_length.json")).await;
    let next = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = config_for(
        &[("a", "local", &refusing.base_url()), ("b", "cloud", &next.base_url())],
        &[("chat", &["a-model", "b-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(response.status(), 400);
    assert!(header(&response, "x-tierwise-attempts").starts_with("local/a-model:error(runtime_error):"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["param"], "messages");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("upstream \"a\": This model's maximum context length"));
    assert_eq!(next.calls(), 0, "a refusal must not be retried elsewhere");
}

#[tokio::test]
async fn an_upstream_auth_failure_never_echoes_the_key() {
    let up = UpstreamDouble::start(Behaviour::Status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-live-abcdef123456.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.into(),
    ))
    .await;
    let toml = format!(
        "[upstreams.c]\ntier = \"cloud\"\nbase_url = \"{}\"\napi_key_env = \"K\"\n[models.m]\nupstream = \"c\"\n[profiles.default]\ncloud_consent = true\n",
        up.base_url()
    );
    let app = TestApp::start_with_env(&toml, &[("K", "sk-live-abcdef123456")]).await;
    let response = app.chat(chat_body("m")).await;
    assert_eq!(response.status(), 401);
    let text = response.text().await.unwrap();
    assert!(!text.contains("sk-live-abcdef123456"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

#[tokio::test]
async fn when_every_step_fails_the_error_names_each_upstream() {
    let failing = UpstreamDouble::start(Behaviour::status(503, "openai/error_500_server.json")).await;
    let dead = format!("http://{}/v1", dead_address().await);
    let toml = config_for(
        &[("gpu", "server", &failing.base_url()), ("laptop", "local", &dead)],
        &[("chat", &["laptop-model", "gpu-model"])],
        "",
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("chat")).await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "x-tierwise-tier"), "none");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(body["error"]["skipped"][0]["reason"], "not_ready");
    assert_eq!(body["error"]["skipped"][1]["reason"], "runtime_error");
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], "no tier could answer task \"chat\":");
    assert!(
        lines[1].starts_with("- local (laptop-model): not reachable (") && lines[1].contains("is upstream \"laptop\""),
        "{message}"
    );
    assert!(
        lines[2].starts_with("- server (gpu-model): failed: answered 503") && lines[2].contains("upstream \"gpu\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_timeout_on_the_last_step_is_a_504() {
    let stalled = UpstreamDouble::start(Behaviour::Stall).await;
    let toml = config_for(&[("slow", "local", &stalled.base_url())], &[], "")
        .replace("first_byte_timeout_ms = 2000", "first_byte_timeout_ms = 200");
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("slow-model")).await;
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(body["error"]["message"].as_str().unwrap().contains("no first byte within 200 ms"));
}

#[tokio::test]
async fn a_step_whose_key_is_unset_is_skipped_with_a_reason() {
    let cloud = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let local = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = format!(
        "[upstreams.cloud]\ntier = \"cloud\"\nbase_url = \"{}\"\napi_key_env = \"UNSET_KEY_FOR_TEST\"\n\
         [upstreams.local]\ntier = \"local\"\nbase_url = \"{}\"\n\
         [models.gpt]\nupstream = \"cloud\"\n[models.small]\nupstream = \"local\"\n\
         [tasks.cloud-first]\nchain = [\"gpt\", \"small\"]\n[tasks.cloud-only]\nchain = [\"gpt\"]\n[profiles.default]\ncloud_consent = true\n",
        cloud.base_url(),
        local.base_url()
    );
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("cloud-first")).await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "x-tierwise-attempts").starts_with("cloud/gpt:skip(not_available), local/small:accept:"));

    let response = app.chat(chat_body("cloud-only")).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_tier_available");
    assert!(body["error"]["message"].as_str().unwrap().contains("set the environment variable UNSET_KEY_FOR_TEST"));
    assert_eq!(body["error"]["skipped"][0]["reason"], "not_available");
    assert_eq!(cloud.calls(), 0);
}

#[tokio::test]
async fn the_task_header_wins_over_model() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let app =
        TestApp::start(&config_for(&[("local", "local", &up.base_url())], &[("summarize", &["local-model"])], ""))
            .await;
    let response = client()
        .post(app.url("/v1/chat/completions"))
        .header("x-tierwise-task", "summarize")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-tierwise-task"), "summarize");
    assert_eq!(up.received()[0].body["model"], "local-upstream-model");
}

#[tokio::test]
async fn without_the_trail_in_the_body_it_is_byte_for_byte() {
    let up = UpstreamDouble::start(Behaviour::json("openai/chat_completion.json")).await;
    let toml = config_for(&[("local", "local", &up.base_url())], &[], "[trail]\nin_body = false\n");
    let app = TestApp::start(&toml).await;
    let response = app.chat(chat_body("local-model")).await;
    assert_eq!(response.bytes().await.unwrap(), fixture("openai/chat_completion.json"));
}
